#!/usr/bin/env bash
# The chaos run at full size (tests/chaos.rs): faults and load on a real control plane, with the
# figures table printed at the end (and written to $MESHMEDIC_CHAOS_REPORT, default
# target/chaos-report.md). The short form (one round, no soak) runs with the other tests.
#
#   scripts/chaos.sh [ROUNDS] [SOAK_SECONDS]      # defaults: 5 rounds, 600 s soak
#
# Everything listens on 127.0.0.1; the control plane and operators die with the test process.
# Runs niced: the machine stays usable.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
exports="$(nice -n 10 bash scripts/k8s-test-env.sh)" && eval "$exports"
export MESHMEDIC_CHAOS_ROUNDS="${1:-5}"
export MESHMEDIC_CHAOS_SOAK_SECONDS="${2:-600}"
export MESHMEDIC_CHAOS_REPORT="${MESHMEDIC_CHAOS_REPORT:-$repo/target/chaos-report.md}"
export MESHMEDIC_TEST_KEEP_DIR="${MESHMEDIC_TEST_KEEP_DIR:-1}"
exec nice -n 10 cargo test --test chaos -- --nocapture
