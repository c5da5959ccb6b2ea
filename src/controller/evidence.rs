//! Evidence from the data plane: 503s observed for a finding's service, from Prometheus
//! (`istio_requests_total{response_code="503"}` by flag, service and reporter) or, without
//! Prometheus, from the sidecars' merged metrics (`:15020/stats/prometheus`). Attached to the
//! findings as evidence, raising the severity of findings whose service answers 503 now. Off
//! by default; a failure to reach either is reported, never fatal.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::analysis::{Finding, Severity};
use crate::logs::prometheus::FlagCount;
use crate::snapshot::{Snapshot, hosts};

/// 503s by response flag for one destination service.
pub type Observed = BTreeMap<String, BTreeMap<String, f64>>;

/// Folds samples into per-service counts by flag. The same request is counted by the client's
/// sidecar (`reporter="source"`) and the server's (`"destination"`): the larger of the two is
/// taken, not their sum.
pub fn observed(samples: &[FlagCount]) -> Observed {
    let mut by_reporter: BTreeMap<(&str, &str, &str), f64> = BTreeMap::new();
    for s in samples {
        *by_reporter
            .entry((
                s.destination_service.as_str(),
                s.response_flags.as_str(),
                s.reporter.as_str(),
            ))
            .or_default() += s.value;
    }
    let mut out: Observed = BTreeMap::new();
    for ((service, flags, _), value) in by_reporter {
        let slot = out
            .entry(service.to_string())
            .or_default()
            .entry(flags.to_string())
            .or_default();
        *slot = slot.max(value);
    }
    out
}

fn raise(s: Severity) -> Severity {
    match s {
        Severity::Info => Severity::Warning,
        Severity::Warning | Severity::Error => Severity::Error,
    }
}

/// Adds "observed N 503s" evidence to every finding whose service answered 503 in the window,
/// and raises its severity one step.
pub fn attach(findings: &mut [Finding], observed: &Observed, cluster_domain: &str, window: &str) {
    for f in findings {
        let mut seen = false;
        // A finding about several services (a gateway's routes to them) gets a line for each.
        for service in f.service.iter().chain(&f.services) {
            let host = hosts::service_fqdn(service, &f.namespace, cluster_domain);
            let Some(flags) = observed.get(&host) else {
                continue;
            };
            let total: f64 = flags.values().sum();
            if total < 0.5 {
                continue;
            }
            let by_flag: Vec<String> = flags
                .iter()
                .filter(|(_, v)| **v >= 0.5)
                .map(|(flag, v)| format!("{flag}: {}", v.round()))
                .collect();
            f.evidence.push(format!(
                "observed {} HTTP 503 responses for {host} in the last {window} ({})",
                total.round(),
                by_flag.join(", ")
            ));
            seen = true;
        }
        if seen {
            f.severity = raise(f.severity);
        }
    }
}

/// Where the evidence comes from.
#[derive(Clone, Debug)]
pub enum EvidenceSource {
    Prometheus {
        url: String,
        window: String,
    },
    /// Each pod's merged metrics at `http://<podIP>:<port>/stats/prometheus`. Counters since the
    /// proxy started, not over a window.
    Sidecars {
        port: u16,
    },
}

/// Collects 503 counts for the services of `findings`. Errors come back as words for the log.
pub async fn collect(
    source: &EvidenceSource,
    snapshot: &Snapshot,
    findings: &[Finding],
    timeout: Duration,
) -> (Observed, Vec<String>) {
    use crate::logs::prometheus::{query_prometheus, scrape_sidecar};
    let mut errors = Vec::new();
    let samples = match source {
        EvidenceSource::Prometheus { url, window } => {
            match query_prometheus(url, window, timeout).await {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("Prometheus at {url}: {e}"));
                    Vec::new()
                }
            }
        }
        EvidenceSource::Sidecars { port } => {
            let mut all = Vec::new();
            // One pod per service with a finding is enough: every sidecar of the service reports
            // the requests it served, and the counts are evidence, not an inventory.
            let mut seen = std::collections::BTreeSet::new();
            for (f, service) in findings
                .iter()
                .flat_map(|f| f.service.iter().chain(&f.services).map(move |s| (f, s)))
            {
                if !seen.insert((f.namespace.clone(), service.clone())) {
                    continue;
                }
                let Some(s) = snapshot.service_index(&f.namespace, service) else {
                    continue;
                };
                let Some(ip) = snapshot.workloads_of(s).find_map(|w| pod_ip(&w.raw)) else {
                    continue;
                };
                let url = format!("http://{ip}:{port}/stats/prometheus");
                match scrape_sidecar(&url, timeout).await {
                    Ok(s) => all.extend(s),
                    Err(e) => errors.push(format!("sidecar metrics at {url}: {e}")),
                }
            }
            all
        }
    };
    (observed(&samples), errors)
}

fn pod_ip(raw: &serde_json::Value) -> Option<String> {
    if raw.get("kind").and_then(|k| k.as_str()) != Some("Pod") {
        return None;
    }
    let ip = raw.pointer("/status/podIP")?.as_str()?;
    Some(if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::test_support::{NGINX_WEB, snapshot};
    use crate::analysis::{Code, analyze};

    fn sample(service: &str, flags: &str, reporter: &str, value: f64) -> FlagCount {
        FlagCount {
            destination_service: service.into(),
            response_flags: flags.into(),
            reporter: reporter.into(),
            value,
        }
    }

    #[test]
    fn both_reporters_are_not_double_counted() {
        let o = observed(&[
            sample("a.ns.svc.cluster.local", "UC", "source", 40.0),
            sample("a.ns.svc.cluster.local", "UC", "destination", 42.0),
            sample("a.ns.svc.cluster.local", "URX", "source", 3.0),
        ]);
        assert_eq!(o["a.ns.svc.cluster.local"]["UC"], 42.0);
        assert_eq!(o["a.ns.svc.cluster.local"]["URX"], 3.0);
    }

    /// A gateway VirtualService's finding about several services gets the observed 503s of
    /// each of them.
    #[test]
    fn a_finding_about_several_services_gets_each_ones_503s() {
        let app = |name: &str| {
            format!(
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: shop}}\n\
                 spec: {{selector: {{matchLabels: {{app: {name}}}}}, template: {{metadata: {{labels: {{app: {name}}}}}, spec: {{containers: [{{name: app, image: x}}]}}}}}}\n\
                 ---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
                 spec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 80}}]}}\n"
            )
        };
        let yaml = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, labels: {{istio-injection: enabled}}}}\n{}{}\
             ---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: edge, namespace: shop}}\n\
             spec: {{hosts: [shop.example.com], gateways: [public], http: [{{route: [{{destination: {{host: a}}}}]}}, {{route: [{{destination: {{host: b}}}}]}}]}}\n",
            app("a"),
            app("b")
        );
        let mut findings = analyze(&snapshot(&yaml)).findings;
        let edge = findings
            .iter()
            .position(|f| f.remediation.target.name == "edge")
            .expect("gateway finding");
        assert_eq!(findings[edge].services, ["a", "b"]);
        let before = findings[edge].severity;
        let o = observed(&[sample("b.shop.svc.cluster.local", "UC", "destination", 9.0)]);
        attach(&mut findings, &o, "cluster.local", "1h");
        assert_eq!(findings[edge].severity, raise(before));
        assert!(
            findings[edge].evidence.iter().any(
                |e| e.starts_with("observed 9 HTTP 503 responses for b.shop.svc.cluster.local")
            ),
            "{:?}",
            findings[edge].evidence
        );
    }

    #[test]
    fn observed_503s_raise_the_severity_of_that_service_only() {
        let snap = snapshot(NGINX_WEB);
        let mut findings = analyze(&snap).findings;
        let idle = findings
            .iter()
            .position(|f| f.code == Code::IdleTimeoutMismatch)
            .expect("idle finding");
        let before = findings[idle].severity;
        let o = observed(&[
            sample("web.shop.svc.cluster.local", "UC", "destination", 17.4),
            sample("other.shop.svc.cluster.local", "UC", "destination", 5.0),
        ]);
        attach(&mut findings, &o, "cluster.local", "1h");
        assert_eq!(findings[idle].severity, raise(before));
        assert!(
            findings[idle].evidence.iter().any(|e| e == "observed 17 HTTP 503 responses for web.shop.svc.cluster.local in the last 1h (UC: 17)"),
            "{:?}",
            findings[idle].evidence
        );
        // Zero counts are no evidence.
        let mut again = analyze(&snap).findings;
        attach(
            &mut again,
            &observed(&[sample("web.shop.svc.cluster.local", "UC", "source", 0.0)]),
            "cluster.local",
            "1h",
        );
        assert_eq!(again[idle].severity, before);
    }
}
