#!/usr/bin/env bash
# Throughput of `meshmedic logs` beside `wc -l` and an awk pipeline counting the same
# (status, flags) pairs, on one generated Istio TEXT log (default ~1 GB), measured in one run.
# Usage: benches/logs.sh [SIZE_MB]   (env KEEP=1 keeps the log, LOG=path reuses one,
# AWK=gawk picks the awk that counts, RUNS=n best of n, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1024}
export LC_ALL=C
tmp=$(mktemp -d "${TMPDIR:-/tmp}/meshmedic-bench.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT

log=${LOG:-$tmp/access.log}
if [ ! -s "$log" ]; then
    # About 275 bytes a line on average.
    lines=$(( size_mb * 1024 * 1024 / 275 ))
    echo "generating $log ($lines lines)..."
    awk -v lines="$lines" -f benches/logs-gen.awk > "$log"
fi
bytes=$(stat -c %s "$log")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')

echo "building release binary..."
cargo build --release --quiet --bin meshmedic
bin=${CARGO_TARGET_DIR:-target}/release/meshmedic

# Warm the page cache so every contender reads from memory.
cat "$log" > /dev/null

# Best of N runs: wall seconds and peak RSS (KiB) via GNU time.
runs=${RUNS:-3}
measure() {
    local name=$1; shift
    local best="" rss=""
    for _ in $(seq "$runs"); do
        /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" > "$tmp/$name.out"
        read -r secs kib < "$tmp/time"
        if [ -z "$best" ] || awk -v a="$secs" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$secs; rss=$kib; fi
    done
    echo "$best $rss"
}

read -r wc_s wc_rss < <(measure wc wc -l "$log")
# shellcheck disable=SC2016 # the awk program is meant literally
read -r awk_s awk_rss < <(measure awk "${AWK:-awk}" '{ c[$5 " " $6]++ } END { for (k in c) print k, c[k] }' "$log")
read -r mm_s mm_rss < <(measure meshmedic "$bin" logs -o json "$log")

rate() { awk -v mb="$mb" -v s="$1" 'BEGIN { printf "%.0f", (s > 0 ? mb / s : 0) }'; }
wc_r=$(rate "$wc_s"); awk_r=$(rate "$awk_s"); mm_r=$(rate "$mm_s")

# The counts must agree: awk's (status, flags) pairs against meshmedic's status_flags.
sort "$tmp/awk.out" > "$tmp/awk.sorted"
python3 - "$tmp/meshmedic.out" > "$tmp/mm.sorted" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for row in r["status_flags"]:
    print(row["code"], row["flags"], row["count"])
PY
sort -o "$tmp/mm.sorted" "$tmp/mm.sorted"
if cmp -s "$tmp/awk.sorted" "$tmp/mm.sorted"; then agree=yes; else agree=NO; diff "$tmp/awk.sorted" "$tmp/mm.sorted" || true; fi

echo
echo "input: $mb MiB, $(awk '{print $1}' "$tmp/wc.out") lines; $(nproc) cores; awk is $(readlink -f "$(command -v "${AWK:-awk}")")"
printf "%-22s %8s %10s %12s\n" tool seconds "MiB/s" "peak RSS MiB"
printf "%-22s %8s %10s %12s\n" "wc -l" "$wc_s" "$wc_r" "$(( wc_rss / 1024 ))"
printf "%-22s %8s %10s %12s\n" "awk (status, flags)" "$awk_s" "$awk_r" "$(( awk_rss / 1024 ))"
printf "%-22s %8s %10s %12s\n" "meshmedic logs" "$mm_s" "$mm_r" "$(( mm_rss / 1024 ))"
awk -v m="$mm_s" -v w="$wc_s" -v a="$awk_s" 'BEGIN {
    printf "meshmedic / wc -l throughput: %.2f (target >= 0.33)\n", w / m
    printf "meshmedic / awk throughput:   %.1fx (target >= 10x)\n", a / m
}'
echo "counts agree with awk: $agree"
