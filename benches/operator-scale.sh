#!/usr/bin/env bash
# The operator at scale on the real control plane (issue 11). For each size (pods; 100 per
# namespace: 10 Services, 10 Deployments, 10 ReplicaSets, 100 injected-looking Pods), a fresh
# etcd + kube-apiserver, the objects created by benches/operator_scale.rs (a concurrent kube
# client), `meshmedic run` (release build) measured: peak RSS per pod above the empty-cluster
# baseline, time to the first full analysis, the cost of one re-analysis after one event, and
# event -> Remediation p50/p99 under churn. Prints one table.
#
# Usage: benches/operator-scale.sh [PODS...]        (default: 2000 20000)
# Env: CHURN (updates/s, default 60), CHURN_SECONDS (20), CONCURRENCY (48), SERVICES_PER_NAMESPACE
#      (10; each with 10 pods), FULL_PASS_OBJECTS
#      (the operator's --full-pass-objects; its default otherwise),
#      MESHMEDIC_BIN (default: target/release/meshmedic, built here).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2000 20000)

exports="$(bash scripts/k8s-test-env.sh)" && eval "$exports"
if [ -z "${MESHMEDIC_BIN:-}" ]; then
  nice -n 10 cargo build --release --bin meshmedic >&2
  export MESHMEDIC_BIN="$repo/target/release/meshmedic"
fi
nice -n 10 cargo bench --bench operator-scale --no-run >&2

results=()
for n in "${sizes[@]}"; do
  echo "operator-scale: $n pods" >&2
  line="$(cargo bench --bench operator-scale -- "$n" | grep '^RESULT')"
  echo "$line" >&2
  results+=("$line")
done

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
echo
echo "| pods | services | namespaces | peak RSS (baseline) | per pod above baseline | RSS at end | first full analysis | all seeded Remediations | one re-analysis | churn | event → Remediation p50 / p99 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for r in "${results[@]}"; do
  printf '| %s | %s | %s | %s MiB (%s MiB) | %s KiB | %s MiB | %s s | %s s | %s ms | %s/s | %s s / %s s (%s probes, %s missing) |\n' \
    "$(get pods "$r")" "$(get services "$r")" "$(get namespaces "$r")" \
    "$(( $(get peak_kib "$r") / 1024 ))" "$(( $(get baseline_kib "$r") / 1024 ))" \
    "$(get per_pod_kib "$r")" "$(( $(get rss_kib "$r") / 1024 ))" "$(get first_analysis_s "$r")" "$(get seeded_remediations_s "$r")" \
    "$(get reanalysis_ms "$r")" "$(get churn_per_s "$r")" "$(get p50_s "$r")" "$(get p99_s "$r")" \
    "$(get probes "$r")" "$(get missing "$r")"
done
