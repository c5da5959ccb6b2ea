//! `missing-reset-retry`: an HTTP route whose effective retry policy lacks `reset`. A connection
//! reset is reported as 503 UC but matches only `reset` (not `503`), and Istio's default policy
//! (`connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`) does not
//! include it, so those 503s reach the caller.
//!
//! The effective policy of a route is its own `retries`, else mesh config
//! `defaultHttpRetryPolicy`, else Istio's default. `attempts: 0` is an explicit choice and never
//! a finding. The fix keeps every existing condition, attempts and `perTryTimeout`, and adds
//! `reset` and `503` as the ASM guide does. Routes that only non-idempotent methods reach (POST,
//! PATCH), and workloads annotated `meshmedic.io/non-idempotent: "true"`, get
//! `reset-before-request` instead: it retries only requests that never reached the app.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::HashMap;

use crate::model::service::ServiceSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::{
    Code, Finding, Protocol, Severity, Sink, app_ports, port_protocol, service_port_protocol,
};
use crate::model::istio::{HttpRetry, HttpRoute, VirtualServiceSpec};
use crate::model::keys;
use crate::remediation::{Edit, PlanError, Remediation, creation_labels};
use crate::snapshot::{Obj, Snapshot};

/// Istio's outbound retry conditions when nothing configures retries. Until 1.23 the default
/// also retried status 503 (`retriable_status_codes: [503]`); from 1.24 it does not.
pub fn istio_default_retry_on(snapshot: &Snapshot) -> &'static str {
    if snapshot.istio_version.at_least(1, 24) {
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    } else {
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,503"
    }
}

pub const DEFAULT_ATTEMPTS: i64 = 2;

const NON_IDEMPOTENT: [&str; 2] = ["POST", "PATCH"];

/// The retry policy in force for a route and where it comes from.
#[derive(Clone, Debug)]
pub struct EffectiveRetry {
    pub attempts: i64,
    pub retry_on: String,
    pub per_try_timeout: Option<String>,
    pub source: String,
}

pub fn effective_retry(snapshot: &Snapshot, route: Option<&HttpRoute>) -> EffectiveRetry {
    let from = |r: &HttpRetry, source: String| EffectiveRetry {
        // proto3: an unset `attempts` reads as 0, which Istio takes as "retries off".
        attempts: r.attempts.unwrap_or(0),
        retry_on: r
            .retry_on
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| istio_default_retry_on(snapshot).to_string()),
        per_try_timeout: r.per_try_timeout.map(|d| d.to_string()),
        source,
    };
    if let Some(r) = route.and_then(|r| r.retries.as_ref()) {
        return from(r, "the route's retries".to_string());
    }
    if let Some(r) = &snapshot.mesh.default_http_retry_policy {
        return from(r, "mesh config defaultHttpRetryPolicy".to_string());
    }
    EffectiveRetry {
        attempts: DEFAULT_ATTEMPTS,
        retry_on: istio_default_retry_on(snapshot).to_string(),
        per_try_timeout: None,
        source: format!(
            "Istio {}.{} default retry policy",
            snapshot.istio_version.major, snapshot.istio_version.minor
        ),
    }
}

fn conditions(retry_on: &str) -> Vec<String> {
    retry_on
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// `retryOn` with `add` appended where missing, existing order and conditions kept.
pub fn merged_retry_on(retry_on: &str, add: &[&str]) -> String {
    let mut all = conditions(retry_on);
    for a in add {
        if !all.iter().any(|c| c == a) {
            all.push((*a).to_string());
        }
    }
    all.join(",")
}

/// Whether only non-idempotent methods (POST, PATCH) can reach this route.
pub fn only_non_idempotent(route: &HttpRoute) -> bool {
    !route.matches.is_empty()
        && route.matches.iter().all(|m| {
            m.method.as_ref().is_some_and(|sm| {
                let exact = sm.exact.as_deref().or(sm.prefix.as_deref());
                match (exact, sm.regex.as_deref()) {
                    (Some(e), _) => NON_IDEMPOTENT.contains(&e.to_ascii_uppercase().as_str()),
                    (None, Some(re)) => {
                        // Anchors and groups on each alternative: `^(POST|PATCH)$`, `^POST$|^PATCH$`.
                        let alts: Vec<&str> = re
                            .split('|')
                            .map(|a| {
                                a.trim_matches(|c| c == '^' || c == '$' || c == '(' || c == ')')
                            })
                            .collect();
                        alts.iter()
                            .all(|a| NON_IDEMPOTENT.contains(&a.to_ascii_uppercase().as_str()))
                    }
                    (None, None) => false,
                }
            })
        })
}

/// A service is in scope when it has an injected workload and a port that can carry an app's
/// HTTP (not only the proxy's own health and telemetry endpoints).
fn in_scope(snapshot: &Snapshot, s: usize) -> bool {
    app_ports(&snapshot.services[s].spec)
        .any(|p| service_port_protocol(snapshot, s, p) != Protocol::Tcp)
        && snapshot.workloads_of(s).any(|w| snapshot.is_injected(w))
}

fn service_non_idempotent(snapshot: &Snapshot, s: usize) -> bool {
    let yes = |a: &crate::model::Labels| a.get(keys::NON_IDEMPOTENT).is_some_and(|v| v == "true");
    yes(&snapshot.services[s].meta.annotations)
        || snapshot.workloads_of(s).any(|w| yes(&w.pod_annotations))
        || grpc_only(snapshot, s).is_some()
}

/// Whether every HTTP port of the Service speaks gRPC, and how that is known (the evidence to
/// show): its `appProtocol`, else its name's prefix, or a gRPC health probe of its pods on the
/// port it leads to (an `http2-*` port of a gRPC server, as kubernetes-engine-samples'
/// `echo-grpc`). Each call is an HTTP POST, as non-idempotent to the proxy as a POST-only route
/// (a payment's `Charge` replayed after a reset is a second charge).
fn grpc_only(snapshot: &Snapshot, s: usize) -> Option<String> {
    let service = &snapshot.services[s];
    let ports: Vec<_> = app_ports(&service.spec)
        .filter(|p| port_protocol(p) == Protocol::Http)
        .collect();
    if ports.is_empty() {
        return None;
    }
    let mut probed = Vec::new();
    for port in ports {
        if super::declared_protocol(port).starts_with("grpc") {
            continue;
        }
        probed.push(grpc_probe(snapshot, s, port)?);
    }
    Some(if probed.is_empty() {
        "the Service's ports speak gRPC: every call is an HTTP POST".to_string()
    } else {
        format!(
            "the Service's ports speak gRPC ({}): every call is an HTTP POST",
            probed.join("; ")
        )
    })
}

/// A gRPC health probe of a pod behind `port` on the container port it leads to: the server
/// there speaks gRPC. Says which.
fn grpc_probe(
    snapshot: &Snapshot,
    s: usize,
    port: &k8s_openapi::api::core::v1::ServicePort,
) -> Option<String> {
    snapshot.workloads_of(s).find_map(|w| {
        let number = match &port.target_port {
            Some(target) => w.resolve_port(target)?,
            None => port.port,
        };
        w.app_containers().find_map(|c| {
            [
                ("readiness", &c.readiness_probe),
                ("liveness", &c.liveness_probe),
                ("startup", &c.startup_probe),
            ]
            .into_iter()
            .find(|(_, probe)| {
                probe
                    .as_ref()
                    .and_then(|p| p.grpc.as_ref())
                    .is_some_and(|g| g.port == number)
            })
            .map(|(kind, _)| {
                format!(
                    "port {}: {kind} probe of {} {}/{} container {} is gRPC on {number}",
                    port.port, w.kind, w.meta.namespace, w.meta.name, c.name
                )
            })
        })
    })
}

/// What to add for a route, and the words for it.
fn additions(non_idempotent: bool) -> &'static [&'static str] {
    if non_idempotent {
        &["reset-before-request"]
    } else {
        &["reset", "503"]
    }
}

/// Whether the conditions already retry a reset connection. Envoy counts an upstream reset as a
/// 5xx (`wouldRetryFromReset`), so `5xx` and `gateway-error` cover it as `reset` does.
fn has_reset(retry_on: &str, non_idempotent: bool) -> bool {
    conditions(retry_on).iter().any(|c| {
        matches!(c.as_str(), "reset" | "5xx" | "gateway-error")
            || (non_idempotent && c == "reset-before-request")
    })
}

/// The findings of one cause (`missing-reset-retry`, or `listener-change-503` with its own
/// evidence) for one service's sidecar routes: one per VirtualService it patches, or one new
/// VirtualService. Its gateway routes are gathered in `gateways`, whose findings come once every
/// service has been seen ([`GatewayRoutes::findings`]).
pub fn retry_findings(
    snapshot: &Snapshot,
    s: usize,
    code: Code,
    cause: &[String],
    claimed: &mut BTreeSet<usize>,
    gateways: &mut GatewayRoutes,
) -> Vec<Result<Finding, PlanError>> {
    if !in_scope(snapshot, s) {
        // No sidecar: the gateway's proxy connects to the app itself, pools those connections,
        // and meets the app's resets first hand. Its routes are judged; there are no sidecar
        // routes to judge.
        if code == Code::MissingResetRetry && super::reached_without_sidecar(snapshot, s) {
            let service = &snapshot.services[s];
            let why = format!(
                "{} has no sidecar: the gateway's proxy connects to its pods directly and pools \
                 those connections, so a connection the app closes as a request is sent is a \
                 reset at the gateway",
                service.describe()
            );
            gateways.add(snapshot, s, code, &[why]);
        }
        return Vec::new();
    }
    gateways.add(snapshot, s, code, cause);
    sidecar_findings(snapshot, s, code, cause, claimed)
}

/// Services whose requests come through gateway-bound VirtualServices, gathered over one
/// detector's pass: one finding per VirtualService and namespace of the services it routes to.
/// A gateway VirtualService often fronts many services, and one finding per service, each with
/// the whole corrected object, grew with the square of its routes (1,000 routes to 1,000
/// services: 1,000 findings, 2 GiB and 8 s to analyse).
#[derive(Default)]
pub struct GatewayRoutes {
    /// (VirtualService position, services' namespace) → the services there.
    groups: BTreeMap<(usize, String), Vec<Member>>,
}

/// A service (by position) whose requests come through a gateway, and the cause's evidence.
type Member = (usize, Vec<String>);

impl GatewayRoutes {
    fn add(&mut self, snapshot: &Snapshot, s: usize, code: Code, cause: &[String]) {
        // A service that ignores this code keeps its routes out of the fix, as it kept its own
        // finding out of the report.
        if super::service_ignores(snapshot, s, code) {
            return;
        }
        let service = &snapshot.services[s];
        let host = snapshot.service_host(service);
        for vs in snapshot.gateway_virtual_services_to(&host) {
            self.groups
                .entry((vs, service.meta.namespace.clone()))
                .or_default()
                .push((s, cause.to_vec()));
        }
    }

    /// The findings: for each gateway VirtualService and namespace, the fix of its routes to
    /// the services there that need one. With one such service the finding is that service's.
    pub fn findings(self, snapshot: &Snapshot, code: Code) -> Vec<Result<Finding, PlanError>> {
        let mut out = Vec::new();
        for ((v, ns), members) in self.groups {
            let hosts: Vec<String> = members
                .iter()
                .map(|&(s, _)| {
                    snapshot
                        .service_host(&snapshot.services[s])
                        .to_ascii_lowercase()
                })
                .collect();
            let needing: Vec<usize> = if members.len() == 1 {
                vec![0]
            } else {
                // Only the services with a route that needs the fix.
                let vs = &snapshot.virtual_services[v];
                let route_hosts = snapshot.gateway_route_hosts(v);
                let all: Vec<&Member> = members.iter().collect();
                let by_host = members_by_host(snapshot, &all, &hosts);
                let edits = route_edits(
                    snapshot,
                    vs,
                    |i| routes_to_any(route_hosts, i, &by_host, false),
                    &mut Vec::new(),
                    |i| routes_to_any(route_hosts, i, &by_host, true),
                );
                let mut needing: Vec<usize> = edits
                    .routes
                    .iter()
                    .flat_map(|&i| route_hosts.get(i).into_iter().flatten())
                    .filter_map(|h| by_host.get(h.as_str()).map(|&(m, _)| m))
                    .collect();
                needing.sort_unstable();
                needing.dedup();
                needing
            };
            match needing.as_slice() {
                [] => {}
                &[m] => {
                    let (s, cause) = &members[m];
                    out.extend(gateway_finding(snapshot, v, *s, code, cause));
                }
                _ => {
                    let chosen: Vec<&Member> = needing.iter().map(|&m| &members[m]).collect();
                    out.extend(gateway_group_finding(snapshot, v, &ns, &chosen, code));
                }
            }
        }
        out
    }
}

/// For services (by their position among `members`): host (lower case) → (position, whether
/// the service is non-idempotent).
fn members_by_host<'a>(
    snapshot: &Snapshot,
    members: &[&Member],
    hosts: &'a [String],
) -> HashMap<&'a str, (usize, bool)> {
    members
        .iter()
        .zip(hosts)
        .enumerate()
        .map(|(m, (&&(s, _), host))| (host.as_str(), (m, service_non_idempotent(snapshot, s))))
        .collect()
}

/// Whether HTTP route `i` sends requests to one of the services of `by_host` (with
/// `non_idempotent_only`: to one that is non-idempotent).
fn routes_to_any(
    route_hosts: &[Vec<String>],
    i: usize,
    by_host: &HashMap<&str, (usize, bool)>,
    non_idempotent_only: bool,
) -> bool {
    route_hosts.get(i).is_some_and(|to| {
        to.iter().any(|h| {
            by_host
                .get(h.as_str())
                .is_some_and(|&(_, n)| n || !non_idempotent_only)
        })
    })
}

/// [`retry_findings`] for the routes the sidecars use: the mesh-bound VirtualServices of the
/// service's host (each claimed once), or a new one. Not a new one where an HTTPRoute attaches
/// to the service for mesh traffic (Gateway API's mesh support): istiod routes the host from
/// that route as from a VirtualService, and with two for one host it takes only one, so a
/// VirtualService meshmedic created could silently replace the route's rules (its backends and
/// weights) or be ignored. Nor is the route patched: Istio gives an HTTPRoute `retry` exactly
/// `connect-failure,refused-stream,unavailable,cancelled` and the codes it names, never `reset`
/// (istio/istio `pilot/pkg/config/kube/gateway/conversion.go`), so its services' resets are
/// retried only by a mesh-wide `defaultHttpRetryPolicy` that has `reset` (README).
fn sidecar_findings(
    snapshot: &Snapshot,
    s: usize,
    code: Code,
    cause: &[String],
    claimed: &mut BTreeSet<usize>,
) -> Vec<Result<Finding, PlanError>> {
    let mut out = Vec::new();
    let service = &snapshot.services[s];
    let ns = &service.meta.namespace;
    let host = snapshot.service_host(service);
    let svc_non_idempotent = service_non_idempotent(snapshot, s);
    let severity = Severity::Warning;
    let virtual_services = snapshot.virtual_services_for(&host, ns);

    if virtual_services.is_empty() {
        let eff = effective_retry(snapshot, None);
        if eff.attempts == 0
            || has_reset(&eff.retry_on, svc_non_idempotent)
            || only_gateways_behind(snapshot, s)
            || only_metrics_ports(&service.spec)
            || external_twin(snapshot, s)
            || snapshot.mesh_routes_of(s).next().is_some()
        {
            return out;
        }
        let add = additions(svc_non_idempotent);
        let mut retries =
            json!({"attempts": eff.attempts, "retryOn": merged_retry_on(&eff.retry_on, add)});
        if let Some(t) = &eff.per_try_timeout {
            retries["perTryTimeout"] = json!(t);
        }
        let resource = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": format!("{}-retries", service.meta.name), "namespace": ns, "labels": creation_labels()},
            "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}], "retries": retries}]},
        });
        let mut evidence = cause.to_vec();
        evidence.push(format!(
            "no VirtualService routes {host}; {} applies: retryOn {:?}, no reset",
            eff.source, eff.retry_on
        ));
        if svc_non_idempotent {
            non_idempotent_notes(&mut evidence, snapshot, s);
        }
        let message = format!(
            "{}requests to {host} are not retried on connection reset (503 UC); a VirtualService adds {}",
            lead(code),
            add.join(",")
        );
        let remediation = Remediation::create(resource, true);
        out.push(Ok(finding(
            code,
            severity,
            service,
            message,
            evidence,
            remediation,
        )));
        return out;
    }

    // Two or more naming the host itself: only one takes effect, whatever meshmedic patches.
    let same_host: Vec<usize> = virtual_services
        .iter()
        .filter(|(_, vs)| snapshot.names_host(vs, &host))
        .map(|(v, _)| *v)
        .collect();
    let pick = snapshot.sidecars_pick(&same_host);
    let shadow_note = (same_host.len() > 1).then(|| {
        let names: Vec<String> = same_host
            .iter()
            .map(|&v| {
                let vs = &snapshot.virtual_services[v];
                format!("{}/{}", vs.meta.namespace, vs.meta.name)
            })
            .collect();
        let used = match pick {
            Some(p) => format!(
                "Istio uses {}/{} (created first) and ignores the others' routes, which are not patched",
                snapshot.virtual_services[p].meta.namespace,
                snapshot.virtual_services[p].meta.name
            ),
            None => "Istio uses one (the one created first) and ignores the others' routes".into(),
        };
        format!(
            "VirtualServices {} all route {host} for the sidecars: {used} (istioctl IST0109); keep one",
            names.join(", ")
        )
    });
    for (v, vs) in virtual_services {
        // A patch to a rule the sidecars ignore would change nothing, and be "verified".
        if pick.is_some_and(|p| p != v) && vs.spec.hosts.len() == 1 && same_host.contains(&v) {
            continue;
        }
        if !claimed.insert(v) {
            continue;
        }
        let mut evidence = cause.to_vec();
        if snapshot.names_host(vs, &host) {
            evidence.extend(shadow_note.clone());
        }
        let RouteEdits {
            edits,
            all_non_idempotent,
            ..
        } = route_edits(
            snapshot,
            vs,
            |_| true,
            &mut evidence,
            |_| svc_non_idempotent,
        );
        if edits.is_empty() {
            continue;
        }
        if all_non_idempotent {
            non_idempotent_notes(&mut evidence, snapshot, s);
        }
        evidence.extend(snapshot.generated_note(&vs.kind, &vs.meta.namespace, &vs.meta.name));
        let message = format!(
            "{}routes of {} to {host} are not retried on connection reset (503 UC)",
            lead(code),
            vs.describe()
        );
        out.push(
            snapshot
                .plan_patch(vs.object_ref(), &vs.raw, edits, true)
                .map(|remediation| {
                    finding(code, severity, service, message, evidence, remediation)
                }),
        );
    }
    out
}

/// Every workload behind service `s` is a gateway (an ingress, egress or internal gateway's own
/// Service). A sidecar picks a VirtualService by the request's Host, and requests through a
/// gateway do not carry the gateway's own host name: ingress clients are outside the mesh,
/// egress traffic is routed by the external host's VirtualService, and Knative's
/// `knative-local-gateway` is reached through its services' ExternalName hosts. A new
/// VirtualService for the gateway's host would change nothing (and a re-analysis would call it
/// verified), so none is proposed; one that already routes to the gateway is judged like any
/// other.
fn only_gateways_behind(snapshot: &Snapshot, s: usize) -> bool {
    let mut workloads = snapshot.workloads_of(s).peekable();
    workloads.peek().is_some()
        && workloads.all(|w| crate::snapshot::injection::gateway_reason(w).is_some())
}

/// Every port of the Service that can carry HTTP is a metrics port (its name, split at `-`,
/// has `metrics`, `metric`, `prometheus`, `exporter` or `monitoring`): what calls it is a
/// scraper, and Prometheus scrapes the pods' own addresses (a ServiceMonitor's endpoints,
/// Istio's merged metrics), which no VirtualService for the Service's host applies to. A new
/// VirtualService would change nothing while a re-analysis called it verified, and a reset
/// scrape is a missed sample, not a 503 to a caller. Found on argo-cd's install.yaml (three of
/// its seven Services are `argocd-*-metrics`) and sock-shop's rabbitmq (AMQP beside its
/// exporter). One that a VirtualService already routes is judged like any other.
fn only_metrics_ports(spec: &ServiceSpec) -> bool {
    const METRICS: [&str; 5] = ["metrics", "metric", "prometheus", "exporter", "monitoring"];
    let mut http = app_ports(spec)
        .filter(|p| port_protocol(p) != Protocol::Tcp)
        .peekable();
    http.peek().is_some()
        && http.all(|p| {
            p.name.as_deref().is_some_and(|name| {
                name.to_ascii_lowercase()
                    .split('-')
                    .any(|part| METRICS.contains(&part))
            })
        })
}

/// A LoadBalancer or NodePort Service beside a cluster-internal one for the same pods and
/// target ports (Online Boutique's `frontend-external` beside `frontend`): callers outside the
/// cluster reach the pods through it with no sidecar of theirs, so a VirtualService for its
/// host retries nothing they send, and callers in the mesh use the internal Service, whose own
/// finding covers them. A new VirtualService for it would change no request while a
/// re-analysis called it verified. Found on GoogleCloudPlatform/anthos-service-mesh-samples. One
/// that a VirtualService already routes is judged like any other.
fn external_twin(snapshot: &Snapshot, s: usize) -> bool {
    let service = &snapshot.services[s];
    if !service.spec.external {
        return false;
    }
    let targets = |spec: &ServiceSpec| -> BTreeSet<String> {
        app_ports(spec)
            .filter(|p| port_protocol(p) != Protocol::Tcp)
            .map(|p| match &p.target_port {
                Some(IntOrString::Int(n)) => n.to_string(),
                Some(IntOrString::String(name)) => name.clone(),
                None => p.port.to_string(),
            })
            .collect()
    };
    let own_targets = targets(&service.spec);
    let own_pods = &snapshot.service_workloads[s];
    !own_pods.is_empty()
        && snapshot.services.iter().enumerate().any(|(t, other)| {
            t != s
                && !other.spec.external
                && other.meta.namespace == service.meta.namespace
                && own_pods
                    .iter()
                    .all(|w| snapshot.service_workloads[t].contains(w))
                && own_targets.is_subset(&targets(&other.spec))
        })
}

/// The finding for the routes of gateway-bound VirtualService `v` that send requests to
/// service `s`: there the gateway's Envoy is the client, and a reset connection to the service
/// is a 503 UC for the caller outside the mesh unless that route retries on `reset`. Only the
/// routes to `s` are patched (the routes to services of other namespaces are theirs; the
/// operator and `analyze -o yaml` compose the fixes on one object).
fn gateway_finding(
    snapshot: &Snapshot,
    v: usize,
    s: usize,
    code: Code,
    cause: &[String],
) -> Option<Result<Finding, PlanError>> {
    let service = &snapshot.services[s];
    let host = snapshot.service_host(service);
    let svc_non_idempotent = service_non_idempotent(snapshot, s);
    let lower = host.to_ascii_lowercase();
    let vs = &snapshot.virtual_services[v];
    let route_hosts = snapshot.gateway_route_hosts(v);
    let mut evidence = cause.to_vec();
    evidence.push(format!(
        "bound to gateway(s) {}: the gateway's proxy is the client of {host}",
        vs.spec.gateways.join(", ")
    ));
    let wanted = |i: usize| route_hosts.get(i).is_some_and(|hs| hs.contains(&lower));
    let RouteEdits {
        edits,
        all_non_idempotent,
        ..
    } = route_edits(snapshot, vs, wanted, &mut evidence, |_| svc_non_idempotent);
    if edits.is_empty() {
        return None;
    }
    if all_non_idempotent {
        non_idempotent_notes(&mut evidence, snapshot, s);
    }
    evidence.extend(snapshot.generated_note(&vs.kind, &vs.meta.namespace, &vs.meta.name));
    let message = format!(
        "{}routes of {} (gateway) to {host} are not retried on connection reset (503 UC at the gateway)",
        lead(code),
        vs.describe()
    );
    Some(
        snapshot
            .plan_patch(vs.object_ref(), &vs.raw, edits, true)
            .map(|remediation| {
                finding(
                    code,
                    Severity::Warning,
                    service,
                    message,
                    evidence,
                    remediation,
                )
            }),
    )
}

/// [`gateway_finding`] for several services of namespace `ns` at once: one fix of the routes to
/// all of them, named in the finding (which belongs to no single service).
fn gateway_group_finding(
    snapshot: &Snapshot,
    v: usize,
    ns: &str,
    members: &[&Member],
    code: Code,
) -> Option<Result<Finding, PlanError>> {
    let vs = &snapshot.virtual_services[v];
    let route_hosts = snapshot.gateway_route_hosts(v);
    let hosts: Vec<String> = members
        .iter()
        .map(|&&(s, _)| snapshot.service_host(&snapshot.services[s]))
        .collect();
    let lower: Vec<String> = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    let by_host = members_by_host(snapshot, members, &lower);
    let mut evidence: Vec<String> = Vec::new();
    for (_, cause) in members {
        for line in cause {
            if !evidence.contains(line) {
                evidence.push(line.clone());
            }
        }
    }
    evidence.push(format!(
        "bound to gateway(s) {}: the gateway's proxy is the client of {}",
        vs.spec.gateways.join(", "),
        hosts.join(", ")
    ));
    let RouteEdits {
        edits,
        all_non_idempotent,
        ..
    } = route_edits(
        snapshot,
        vs,
        |i| routes_to_any(route_hosts, i, &by_host, false),
        &mut evidence,
        |i| routes_to_any(route_hosts, i, &by_host, true),
    );
    if edits.is_empty() {
        return None;
    }
    if all_non_idempotent {
        for &&(s, _) in members {
            let service = &snapshot.services[s];
            if let Some(note) = grpc_only(snapshot, s) {
                evidence.push(format!("{}: {note}", service.meta.name));
            }
        }
        evidence.push(non_idempotent_note());
    }
    evidence.extend(snapshot.generated_note(&vs.kind, &vs.meta.namespace, &vs.meta.name));
    let names: Vec<&str> = members
        .iter()
        .map(|&&(s, _)| snapshot.services[s].meta.name.as_str())
        .collect();
    let shown = match names.len() {
        n if n > 4 => format!("{} and {} more", names[..3].join(", "), n - 3),
        _ => names.join(", "),
    };
    let message = format!(
        "{}routes of {} (gateway) to {} services in {ns} ({shown}) are not retried on connection reset (503 UC at the gateway)",
        lead(code),
        vs.describe(),
        names.len()
    );
    Some(
        snapshot
            .plan_patch(vs.object_ref(), &vs.raw, edits, true)
            .map(|remediation| Finding {
                code,
                severity: Severity::Warning,
                namespace: ns.to_string(),
                service: None,
                services: names.iter().map(|n| n.to_string()).collect(),
                workload: None,
                message,
                evidence,
                remediation,
            }),
    )
}

/// What [`route_edits`] changes.
struct RouteEdits {
    edits: Vec<Edit>,
    /// Whether every route edited is non-idempotent.
    all_non_idempotent: bool,
    /// The HTTP routes edited, by index.
    routes: Vec<usize>,
}

/// The edits that add `reset` (or `reset-before-request`) to the retries of `vs`'s HTTP routes
/// that `wanted` picks (by index), with a line of evidence each. `service_non_idempotent` says
/// whether a route (by index) leads to a service whose requests must not be replayed.
fn route_edits(
    snapshot: &Snapshot,
    vs: &Obj<VirtualServiceSpec>,
    wanted: impl Fn(usize) -> bool,
    evidence: &mut Vec<String>,
    service_non_idempotent: impl Fn(usize) -> bool,
) -> RouteEdits {
    let mut edits = Vec::new();
    let mut routes = Vec::new();
    let mut all_non_idempotent = true;
    for (i, route) in vs.spec.http.iter().enumerate() {
        if route.redirect.is_some()
            || route.direct_response.is_some()
            || route.delegate.is_some()
            || !wanted(i)
        {
            continue;
        }
        let eff = effective_retry(snapshot, Some(route));
        let explicit_zero = route
            .retries
            .as_ref()
            .is_some_and(|r| r.attempts == Some(0));
        if explicit_zero || (route.retries.is_none() && eff.attempts == 0) {
            continue;
        }
        let non_idempotent = service_non_idempotent(i) || only_non_idempotent(route);
        if has_reset(&eff.retry_on, non_idempotent) && eff.attempts > 0 {
            continue;
        }
        all_non_idempotent &= non_idempotent;
        routes.push(i);
        let name = route
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let new_retry_on = merged_retry_on(&eff.retry_on, additions(non_idempotent));
        let base = format!("/spec/http/{i}/retries");
        match &route.retries {
            Some(r) => {
                edits.push(Edit::at(
                    &format!("{base}/retryOn"),
                    None,
                    json!(new_retry_on),
                ));
                if r.attempts.is_none() {
                    evidence.push(format!(
                        "http[{i}]{name}: retries has no attempts, which Istio reads as 0 (retries off); attempts {DEFAULT_ATTEMPTS} added"
                    ));
                    edits.push(Edit::at(
                        &format!("{base}/attempts"),
                        None,
                        json!(DEFAULT_ATTEMPTS),
                    ));
                }
            }
            None => {
                let mut retries = json!({"attempts": eff.attempts, "retryOn": new_retry_on});
                if let Some(t) = &eff.per_try_timeout {
                    retries["perTryTimeout"] = json!(t);
                }
                edits.push(Edit::at(&base, None, retries));
            }
        }
        evidence.push(format!(
            "http[{i}]{name}: {}: retryOn {:?}, without {}",
            eff.source,
            eff.retry_on,
            if non_idempotent {
                "reset or reset-before-request (non-idempotent route)"
            } else {
                "reset"
            }
        ));
    }
    RouteEdits {
        edits,
        all_non_idempotent,
        routes,
    }
}

/// Why the retries added skip requests that reached the app.
fn non_idempotent_notes(evidence: &mut Vec<String>, snapshot: &Snapshot, s: usize) {
    if let Some(note) = grpc_only(snapshot, s) {
        evidence.push(note);
    }
    evidence.push(non_idempotent_note());
}

fn finding(
    code: Code,
    severity: Severity,
    service: &Obj<ServiceSpec>,
    message: String,
    evidence: Vec<String>,
    remediation: Remediation,
) -> Finding {
    Finding {
        code,
        severity,
        namespace: service.meta.namespace.clone(),
        service: Some(service.meta.name.clone()),
        services: Vec::new(),
        workload: None,
        message,
        evidence,
        remediation,
    }
}

/// A listener change is the cause the message leads with; a missing retry needs no preface.
fn lead(code: Code) -> &'static str {
    match code {
        Code::ListenerChange503 => {
            "metric changes rewrite listeners and reset in-flight requests; "
        }
        _ => "",
    }
}

fn non_idempotent_note() -> String {
    "non-idempotent: reset-before-request retries only requests that never reached the app, so it is safe; \
     `reset` would also retry requests the app may already have processed (duplicate operations) and needs a reviewer"
        .to_string()
}

pub fn detect(snapshot: &Snapshot, sink: &mut Sink) {
    let mut claimed = BTreeSet::new();
    let mut gateways = GatewayRoutes::default();
    let code = Code::MissingResetRetry;
    for s in 0..snapshot.services.len() {
        if !sink.wants(&snapshot.services[s].meta.namespace) {
            continue;
        }
        for f in retry_findings(snapshot, s, code, &[], &mut claimed, &mut gateways) {
            sink.push(f);
        }
    }
    for f in gateways.findings(snapshot, code) {
        sink.push(f);
    }
}

#[cfg(test)]
mod tests;
