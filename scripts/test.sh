#!/usr/bin/env bash
# Every test meshmedic has, in the order a failure is cheapest to see: formatting, lints, then
# the Kubernetes test control plane (built from Go modules on first use, cached after), then
# unit and integration tests, then a short fuzz run of the access-log parser.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A full disk shows up as a linker crash (lld: Bus error) minutes in; say it plainly up front.
# A clean run writes 3.6 GB under target/, plus 2.0 GB for the fuzz build and Go's caches when
# kube-apiserver and etcd are built the first time (measured 2026-11-30).
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
echo "== disk: $((free_kib / 1024 / 1024)) GiB free where target/ is"
if [ "$free_kib" -lt $((6 * 1024 * 1024)) ]; then
    echo "warning: under 6 GiB free; a clean build may fail at link time with 'Bus error'" >&2
fi

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "== provisioning the test control plane (scripts/k8s-test-env.sh)"
exports="$(scripts/k8s-test-env.sh)"
eval "$exports"

echo "== SARIF 2.1.0 schema for tests/sarif.rs (scripts/sarif-schema.sh)"
MESHMEDIC_SARIF_SCHEMA="$(scripts/sarif-schema.sh)"
export MESHMEDIC_SARIF_SCHEMA

echo "== cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --all-features 2>&1 | tee "$log"

echo "== the analyze benchmark runs (tiny size, meshmedic only; numbers in README)"
NO_ISTIOCTL=1 RUNS=1 MESHMEDIC_BIN=target/debug/meshmedic bash benches/analyze-vs-istioctl.sh 100
PER_NAMESPACE=100 POLICIES=1 GATEWAY=1 SPLIT=1 NO_ISTIOCTL=1 RUNS=1 MESHMEDIC_BIN=target/debug/meshmedic \
    bash benches/analyze-vs-istioctl.sh 100

if [ -x fuzz/run-short.sh ]; then
    echo "== short fuzz run (fuzz/run-short.sh)"
    fuzz/run-short.sh
fi

# One closing line for every test run above, in the plain form CI reads.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
