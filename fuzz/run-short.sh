#!/usr/bin/env bash
# Run the access-log parser fuzz target briefly: fuzz/run-short.sh [SECONDS] (default 45).
#
# cargo-fuzz needs nightly compiler features; with only a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks them (this is how it runs here). cargo-fuzz is installed from crates.io when missing.
# The fuzz build (the whole crate with sanitizer instrumentation, about 9 min on 2 cores the first
# time) goes to $MESHMEDIC_FUZZ_TARGET_DIR (default ~/.cache/meshmedic/fuzz-target), so later runs
# reuse it. If cargo-fuzz cannot be had, or MESHMEDIC_FUZZ=random, the seeded random-input test
# (tests/logs_fuzz.rs) runs with more iterations instead, so the step still checks something.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=${1:-45}

random_test() {
    echo "run-short: $1; running the seeded random-input test instead"
    cd ..
    MESHMEDIC_FUZZ_ITERATIONS=${MESHMEDIC_FUZZ_ITERATIONS:-100000} exec cargo test --test logs_fuzz
}

if [ "${MESHMEDIC_FUZZ:-}" = random ]; then
    random_test "MESHMEDIC_FUZZ=random"
fi
if ! cargo fuzz --version > /dev/null 2>&1; then
    echo "run-short: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet || random_test "cargo-fuzz could not be installed"
fi

# Seed corpus: single lines of every fixture, and the head of each whole file.
corpus=corpus/parse_line
mkdir -p "$corpus"
for f in ../tests/fixtures/logs/*.log ../tests/fixtures/logs/*.jsonl ../tests/fixtures/logs/*.txt ../tests/fixtures/logs/*.json; do
    base=$(basename "$f")
    head -n 8 "$f" | split -l 1 - "$corpus/$base."
    head -c 4000 "$f" > "$corpus/$base.head"
done
target_dir=${MESHMEDIC_FUZZ_TARGET_DIR:-$HOME/.cache/meshmedic/fuzz-target}
mkdir -p "$target_dir"
RUSTC_BOOTSTRAP=1 exec cargo fuzz run --target-dir "$target_dir" parse_line "$corpus" -- \
    -max_total_time="$secs" -max_len=4096 -timeout=10
