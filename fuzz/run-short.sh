#!/usr/bin/env bash
# Run the access-log parser fuzz target briefly: fuzz/run-short.sh [SECONDS] (default 45).
# cargo-fuzz needs nightly compiler features; with only a stable toolchain, RUSTC_BOOTSTRAP=1
# unlocks them. Without cargo-fuzz (cargo install cargo-fuzz) it runs the seeded random-input
# test (tests/logs_fuzz.rs) for longer instead, so the check still means something.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-45}
if ! cargo fuzz --version > /dev/null 2>&1; then
    echo "run-short: cargo-fuzz is not installed; running the seeded random-input test instead"
    cd ..
    MESHMEDIC_FUZZ_ITERATIONS=${MESHMEDIC_FUZZ_ITERATIONS:-300000} exec cargo test --release --test logs_fuzz
fi
# Seed corpus: single lines of every fixture, and a few whole small files.
corpus=corpus/parse_line
mkdir -p "$corpus"
for f in ../tests/fixtures/logs/*.log ../tests/fixtures/logs/*.jsonl ../tests/fixtures/logs/*.txt ../tests/fixtures/logs/*.json; do
    base=$(basename "$f")
    head -n 8 "$f" | split -l 1 - "$corpus/$base."
    head -c 4000 "$f" > "$corpus/$base.head"
done
RUSTC_BOOTSTRAP=1 exec cargo fuzz run parse_line "$corpus" -- -max_total_time="$secs" -max_len=4096 -timeout=10
