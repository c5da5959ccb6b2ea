//! `listener-change-503`: a metric customisation (an EnvoyFilter patching `istio.stats`, or a
//! Telemetry resource that customises metrics) is delivered over LDS and rewrites listeners;
//! in-flight requests on the reset connections answer 503 UC. Every service whose workloads the
//! change reaches and whose routes still lack `reset` retries gets a finding, with the same fix
//! as `missing-reset-retry`.

use std::collections::BTreeSet;

use hashbrown::HashMap;

use super::missing_reset_retry::{GatewayRoutes, retry_findings};
use super::{Code, Sink};
use crate::model::selects;
use crate::snapshot::{SelectorIndex, Snapshot};

/// A metric change: where it applies (namespace, optional workload labels) and what it is.
struct MetricChange {
    namespace: String,
    labels: Option<crate::model::Labels>,
    description: String,
}

/// The stats filter's name in Istio's listeners (its metric customisation patches it).
const STATS_FILTER: &str = "istio.stats";

/// Whether one of an EnvoyFilter's `configPatches` changes Istio's stats filter on sidecars:
/// its value is that filter (inserted, added, or replacing another), or it merges into,
/// replaces or removes the filter its match names. A patch that names `istio.stats` only as
/// the place to insert another filter (Istio's egress SNI example) changes no metrics, and one
/// for gateways alone (`context: GATEWAY`) rewrites the listeners clients outside the mesh
/// connect to, whose requests no route's retry replays.
fn changes_stats(patch: &serde_json::Value) -> bool {
    if patch.pointer("/match/context").and_then(|c| c.as_str()) == Some("GATEWAY") {
        return false;
    }
    if patch.pointer("/patch/value/name").and_then(|n| n.as_str()) == Some(STATS_FILTER) {
        return true;
    }
    let filter = patch.pointer("/match/listener/filterChain/filter");
    let target = filter
        .and_then(|f| f.pointer("/subFilter/name").or_else(|| f.get("name")))
        .and_then(|n| n.as_str());
    let operation = patch.pointer("/patch/operation").and_then(|o| o.as_str());
    target == Some(STATS_FILTER) && matches!(operation, Some("MERGE" | "REPLACE" | "REMOVE"))
}

fn metric_changes(snapshot: &Snapshot) -> Vec<MetricChange> {
    let mut out = Vec::new();
    for ef in &snapshot.envoy_filters {
        if ef.spec.config_patches.iter().any(changes_stats) {
            out.push(MetricChange {
                namespace: ef.meta.namespace.clone(),
                labels: ef
                    .spec
                    .workload_selector
                    .as_ref()
                    .map(|s| s.labels().clone()),
                description: format!("{} patches {STATS_FILTER}", ef.describe()),
            });
        }
    }
    for t in &snapshot.telemetries {
        if !t.spec.metrics.is_empty() {
            out.push(MetricChange {
                namespace: t.meta.namespace.clone(),
                labels: t.spec.selector.as_ref().map(|s| s.labels().clone()),
                description: format!("{} customises metrics", t.describe()),
            });
        }
    }
    out
}

pub fn detect(snapshot: &Snapshot, sink: &mut Sink) {
    let changes = metric_changes(snapshot);
    if changes.is_empty() {
        return;
    }
    let root = snapshot.root_namespace();
    // The changes of each namespace by their workload selector: a Telemetry per workload is a
    // common pattern, and trying each on every service of a namespace grew with the square of
    // it (4,000 of each in one namespace: 3.2 s instead of 0.4).
    let mut by_namespace: HashMap<&str, SelectorIndex> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        by_namespace
            .entry(&c.namespace)
            .or_default()
            .add(i, c.labels.as_ref());
    }
    let mut claimed = BTreeSet::new();
    let mut gateways = GatewayRoutes::default();
    let code = Code::ListenerChange503;
    for (s, service) in snapshot.services.iter().enumerate() {
        if !sink.wants(&service.meta.namespace) {
            continue;
        }
        let ns = service.meta.namespace.as_str();
        let injected: Vec<_> = snapshot
            .workloads_of(s)
            .filter(|w| snapshot.is_injected(w))
            .collect();
        let mut applying = Vec::new();
        if !injected.is_empty() {
            let mut namespaces = vec![ns, root];
            namespaces.dedup();
            for index in namespaces.iter().filter_map(|n| by_namespace.get(n)) {
                applying.extend(index.without_labels());
                for w in &injected {
                    applying.extend(index.may_select(&w.pod_labels).into_iter().filter(|&i| {
                        changes[i]
                            .labels
                            .as_ref()
                            .is_none_or(|l| selects(l, &w.pod_labels))
                    }));
                }
            }
        }
        // In the order the changes were found, each once.
        applying.sort_unstable();
        applying.dedup();
        let cause: Vec<String> = applying
            .into_iter()
            .map(|i| &changes[i])
            .map(|c| {
                format!(
                    "{}: each change is pushed over LDS and resets in-flight requests on the listeners it rewrites",
                    c.description
                )
            })
            .collect();
        if cause.is_empty() {
            continue;
        }
        for f in retry_findings(snapshot, s, code, &cause, &mut claimed, &mut gateways) {
            sink.push(f);
        }
    }
    for f in gateways.findings(snapshot, code) {
        sink.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::analysis::test_support::{assert_patch_consistent, snapshot};
    use crate::analysis::{Code, analyze};

    const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec: {containers: [{name: app, image: example/cart:1, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {selector: {app: cart}, ports: [{name: http, port: 80, targetPort: 8080}]}
"#;

    const STATS_ENVOY_FILTER: &str = r#"
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: stats-custom, namespace: istio-system}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: istio.stats}}}}}
    patch: {operation: MERGE, value: {name: istio.stats}}
"#;

    #[test]
    fn root_namespace_stats_filter_reaches_every_service_without_reset() {
        let snap = snapshot(&format!("{MESH}{STATS_ENVOY_FILTER}"));
        let report = analyze(&snap);
        let f = report
            .findings
            .iter()
            .find(|f| f.code == Code::ListenerChange503)
            .expect("listener finding");
        assert_eq!(f.service.as_deref(), Some("cart"));
        assert!(f.evidence[0].contains("EnvoyFilter istio-system/stats-custom"));
        assert_patch_consistent(&snap, f);
    }

    /// Seen on a public repository: Istio's egress example inserts an SNI filter before
    /// `istio.stats`, which changes no metrics; nor does a stats change for gateways alone.
    /// Each of the stats filter's own changes counts, whatever the operation.
    #[test]
    fn only_patches_that_change_the_stats_filter_on_sidecars_count() {
        let filter = |name: &str, patch: &str| {
            format!(
                "---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: {name}, namespace: istio-system}}\nspec:\n  configPatches:\n  - {patch}\n"
            )
        };
        let sni = "{applyTo: NETWORK_FILTER, match: {context: SIDECAR_OUTBOUND, listener: {portNumber: 443, filterChain: {filter: {name: istio.stats}}}}, patch: {operation: INSERT_BEFORE, value: {name: forward_downstream_sni, config: {}}}}";
        let gateway = "{applyTo: HTTP_FILTER, match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: istio.stats}}}}}, patch: {operation: MERGE, value: {name: istio.stats}}}";
        let found = |yaml: &str| {
            analyze(&snapshot(&format!("{MESH}{yaml}")))
                .findings
                .iter()
                .filter(|f| f.code == Code::ListenerChange503)
                .count()
        };
        assert_eq!(found(&filter("sni", sni)), 0, "an insertion point");
        assert_eq!(found(&filter("gw", gateway)), 0, "gateways alone");
        for (name, patch) in [
            (
                "merge-network",
                "{applyTo: NETWORK_FILTER, match: {listener: {filterChain: {filter: {name: istio.stats}}}}, patch: {operation: MERGE, value: {typed_config: {}}}}",
            ),
            (
                "remove",
                "{applyTo: HTTP_FILTER, match: {context: SIDECAR_INBOUND, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: istio.stats}}}}}, patch: {operation: REMOVE}}",
            ),
            (
                "insert-stats",
                "{applyTo: HTTP_FILTER, match: {context: ANY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}}}, patch: {operation: INSERT_BEFORE, value: {name: istio.stats}}}",
            ),
        ] {
            assert_eq!(found(&filter(name, patch)), 1, "{name}");
        }
        // The insertion point beside a change of the stats filter in one object: it counts.
        let both = filter("both", sni).replace(
            "  - {applyTo: NETWORK",
            &format!(
                "  - {}\n  - {{applyTo: NETWORK",
                gateway.replace("GATEWAY", "SIDECAR_INBOUND")
            ),
        );
        assert_eq!(found(&both), 1, "both");
    }

    #[test]
    fn telemetry_metrics_in_another_namespace_do_not_count() {
        let yaml = format!(
            "{MESH}---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: m, namespace: other}}\nspec: {{metrics: [{{providers: [{{name: prometheus}}]}}]}}\n"
        );
        let report = analyze(&snapshot(&yaml));
        assert!(
            !report
                .findings
                .iter()
                .any(|f| f.code == Code::ListenerChange503)
        );
    }

    #[test]
    fn no_finding_once_reset_is_retried() {
        let yaml = format!(
            "{MESH}{STATS_ENVOY_FILTER}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: cart, namespace: shop}}\nspec:\n  hosts: [cart]\n  http:\n  - route: [{{destination: {{host: cart}}}}]\n    retries: {{attempts: 2, retryOn: \"reset,503\"}}\n"
        );
        let report = analyze(&snapshot(&yaml));
        assert!(
            !report
                .findings
                .iter()
                .any(|f| f.code == Code::ListenerChange503)
        );
        assert!(
            !report
                .findings
                .iter()
                .any(|f| f.code == Code::MissingResetRetry)
        );
    }

    /// Every change that reaches the service's workload is its cause, in the order found, each
    /// once: the root namespace's filter, the namespace's Telemetry without a selector, one
    /// selecting the workload by a label that is not its first (found through the index by a
    /// selector label), and not one selecting another workload.
    #[test]
    fn every_change_that_reaches_the_workload_is_named_in_order() {
        let telemetry = |name: &str, selector: &str| {
            format!(
                "---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{{selector}metrics: [{{providers: [{{name: prometheus}}]}}]}}\n"
            )
        };
        let mesh = MESH.replace(
            "metadata: {labels: {app: cart}}",
            "metadata: {labels: {app: cart, tier: back}}",
        );
        let yaml = format!(
            "{mesh}{STATS_ENVOY_FILTER}{}{}{}",
            telemetry("a-all", ""),
            telemetry("b-other", "selector: {matchLabels: {app: other}}, "),
            telemetry("c-tier", "selector: {matchLabels: {tier: back}}, "),
        );
        let report = analyze(&snapshot(&yaml));
        let f = report
            .findings
            .iter()
            .find(|f| f.code == Code::ListenerChange503)
            .expect("listener finding");
        let named: Vec<&str> = f
            .evidence
            .iter()
            .filter_map(|e| e.split(':').next())
            .filter(|e| e.starts_with("EnvoyFilter") || e.starts_with("Telemetry"))
            .collect();
        assert_eq!(
            named,
            [
                "EnvoyFilter istio-system/stats-custom patches istio.stats",
                "Telemetry shop/a-all customises metrics",
                "Telemetry shop/c-tier customises metrics"
            ]
        );
    }

    #[test]
    fn telemetry_with_selector_reaches_only_selected_workloads() {
        let yaml = format!(
            "{MESH}---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: m, namespace: shop}}\nspec: {{selector: {{matchLabels: {{app: other}}}}, metrics: [{{providers: [{{name: prometheus}}]}}]}}\n"
        );
        let report = analyze(&snapshot(&yaml));
        assert!(
            !report
                .findings
                .iter()
                .any(|f| f.code == Code::ListenerChange503)
        );
    }
}
