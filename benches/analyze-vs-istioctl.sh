#!/usr/bin/env bash
# `meshmedic analyze` beside `istioctl analyze --use-kube=false` on the same generated files
# (benches/gen-mesh.py), one table: services, objects, MB, each tool's wall time and peak RSS
# (best of RUNS, GNU time), and the ratio. istioctl is built once from the istio.io/istio Go module
# into the same cache as the Kubernetes test binaries.
# Usage: benches/analyze-vs-istioctl.sh [SERVICES...]      (default: 1000 5000 10000)
#   NO_ISTIOCTL=1  meshmedic only (the test command's tiny run)
#   PER_NAMESPACE=n, POLICIES=1, GATEWAY=1  the mesh's shape (see benches/gen-mesh.py)
#   SPLIT=1        one object per file (100 files per directory), as a repository holds them
#   RUNS=n         best of n runs (default 3)
#   MESHMEDIC_BIN  a meshmedic binary to use instead of building the release one
#   --build-only   just build (or find) istioctl and print its path
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

# The module proxy has no semver tags for istio.io/istio: a pseudo-version pins the commit.
istio_module_version=v0.0.0-20260827124520-eed52ebb66ad
assets="${MESHMEDIC_TEST_ASSETS:-${HOME}/.cache/meshmedic/test-assets}"
istioctl_dir="$assets/istioctl-$istio_module_version"
istioctl="$istioctl_dir/istioctl"

build_istioctl() {
    if [ ! -x "$istioctl" ]; then
        echo "building istioctl $istio_module_version (first time; several minutes)..." >&2
        mkdir -p "$istioctl_dir.tmp"
        GOBIN="$istioctl_dir.tmp" CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" \
            nice -n 10 go install "istio.io/istio/istioctl/cmd/istioctl@$istio_module_version" >&2
        rm -rf "$istioctl_dir" && mv "$istioctl_dir.tmp" "$istioctl_dir"
    fi
    echo "$istioctl"
}

if [ "${1:-}" = --build-only ]; then build_istioctl; exit 0; fi

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 5000 10000)
runs=${RUNS:-3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/meshmedic-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

[ "${NO_ISTIOCTL:-0}" = 1 ] || build_istioctl > /dev/null
if [ -n "${MESHMEDIC_BIN:-}" ]; then
    bin=$MESHMEDIC_BIN
else
    echo "building release binary..." >&2
    cargo build --release --quiet --bin meshmedic
    bin=${CARGO_TARGET_DIR:-target}/release/meshmedic
fi

# Best of N: "seconds KiB". Exit codes are the tools' verdicts (findings), not failures; a tool
# that stops on an error (istioctl opens every file at once: "too many open files" past the
# limit) gives "error" and its message on stderr.
measure() {
    local best="" rss=""
    for _ in $(seq "$runs"); do
        /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" > "$tmp/out" 2> "$tmp/err" || true
        if grep -q '^Error:' "$tmp/err"; then
            echo "$1: $(grep -m1 '^Error:' "$tmp/err")" >&2
            echo "error error"
            return
        fi
        read -r secs kib < <(tail -n 1 "$tmp/time")
        if [ -z "$best" ] || awk -v a="$secs" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$secs; rss=$kib; fi
    done
    echo "$best $rss"
}

per_ns=${PER_NAMESPACE:-50}
[ "${POLICIES:-0}" = 1 ] && policies=", a Sidecar and a PeerAuthentication per service" || policies=""
[ "${GATEWAY:-0}" = 1 ] && policies="$policies, a gateway VirtualService routing to each namespace's services"
[ "${SPLIT:-0}" = 1 ] && policies="$policies, one object per file"
echo "# ${per_ns} services per namespace${policies}"
printf '%-9s %-8s %-7s %-22s %-22s %s\n' services objects MB "meshmedic s / MiB" "istioctl s / MiB" ratio
for n in "${sizes[@]}"; do
    file="$tmp/mesh-$n.yaml"
    python3 benches/gen-mesh.py "$n" "$file"
    objects=$(grep -c '^kind:' "$file")
    mb=$(awk -v b="$(stat -c %s "$file")" 'BEGIN { printf "%.1f", b / 1048576 }')
    input=("$file")
    if [ "${SPLIT:-0}" = 1 ]; then
        # A repository's shape: one object per file, 100 files per directory.
        python3 - "$file" "$tmp/mesh-$n" <<'PY'
import os, sys
docs = [d for d in open(sys.argv[1]).read().split("\n---\n") if d.strip("-\n")]
for i, d in enumerate(docs):
    sub = os.path.join(sys.argv[2], f"d{i // 100:04d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i:06d}.yaml"), "w") as f:
        f.write(d.strip("-\n") + "\n")
PY
        input=("$tmp/mesh-$n")
        find "$tmp/mesh-$n" -type f -exec cat {} + > /dev/null
    fi
    cat "$file" > /dev/null
    read -r mm_s mm_kib < <(measure "$bin" analyze -o json "${input[@]}")
    "$bin" analyze -o json "${input[@]}" > "$tmp/findings.json" || [ $? -eq 1 ]
    findings=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["findings"]))' "$tmp/findings.json")
    [ "$findings" -gt 0 ] || { echo "meshmedic found nothing in $file: the generator is wrong" >&2; exit 1; }
    mm="$mm_s / $((mm_kib / 1024))"
    if [ "${NO_ISTIOCTL:-0}" = 1 ]; then
        ic="-"; ratio="-"
    else
        read -r ic_s ic_kib < <(measure "$istioctl" analyze --use-kube=false "${input[@]}")
        if [ "$ic_s" = error ]; then
            ic="error (see above)"; ratio="-"
        else
            ic="$ic_s / $((ic_kib / 1024))"
            ratio=$(awk -v a="$ic_s" -v b="$mm_s" 'BEGIN { printf "%.1fx", (b > 0 ? a / b : 0) }')
        fi
    fi
    printf '%-9s %-8s %-7s %-22s %-22s %s\n' "$n" "$objects" "$mb" "$mm" "$ic" "$ratio"
done
