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

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ServiceSpec;
use serde_json::json;

use super::{Code, Finding, Protocol, Severity, Sink, app_ports, port_protocol};
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
    app_ports(&snapshot.services[s].spec).any(|p| port_protocol(p) != Protocol::Tcp)
        && snapshot.workloads_of(s).any(|w| snapshot.is_injected(w))
}

fn service_non_idempotent(snapshot: &Snapshot, s: usize) -> bool {
    let yes = |a: &crate::model::Labels| a.get(keys::NON_IDEMPOTENT).is_some_and(|v| v == "true");
    yes(&snapshot.services[s].meta.annotations)
        || snapshot.workloads_of(s).any(|w| yes(&w.pod_annotations))
        || grpc_only(&snapshot.services[s].spec)
}

/// Every HTTP port of the Service speaks gRPC (its `appProtocol`, else its name's prefix): each
/// call is an HTTP POST, as non-idempotent to the proxy as a POST-only route (a payment's
/// `Charge` replayed after a reset is a second charge).
fn grpc_only(spec: &ServiceSpec) -> bool {
    let ports: Vec<_> = app_ports(spec)
        .filter(|p| port_protocol(p) == Protocol::Http)
        .collect();
    !ports.is_empty()
        && ports.iter().all(|p| {
            let named = p
                .app_protocol
                .as_deref()
                .or(p.name.as_deref())
                .unwrap_or_default();
            named.to_ascii_lowercase().starts_with("grpc")
        })
}

fn grpc_note() -> String {
    "the Service's ports speak gRPC: every call is an HTTP POST".to_string()
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
/// evidence) for one service: one per VirtualService it patches, or one new VirtualService, for
/// the sidecars; and one per gateway-bound VirtualService whose routes lead to it.
pub fn retry_findings(
    snapshot: &Snapshot,
    s: usize,
    code: Code,
    cause: &[String],
    claimed: &mut BTreeSet<usize>,
) -> Vec<Result<Finding, PlanError>> {
    if !in_scope(snapshot, s) {
        return Vec::new();
    }
    let mut out = sidecar_findings(snapshot, s, code, cause, claimed);
    out.extend(gateway_findings(snapshot, s, code, cause));
    out
}

/// [`retry_findings`] for the routes the sidecars use: the mesh-bound VirtualServices of the
/// service's host (each claimed once), or a new one.
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
        if eff.attempts == 0 || has_reset(&eff.retry_on, svc_non_idempotent) {
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
            non_idempotent_notes(&mut evidence, service);
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
    let same_host: Vec<String> = virtual_services
        .iter()
        .filter(|(_, vs)| snapshot.names_host(vs, &host))
        .map(|(_, vs)| format!("{}/{}", vs.meta.namespace, vs.meta.name))
        .collect();
    let shadow_note = (same_host.len() > 1).then(|| {
        format!(
            "VirtualServices {} all route {host} for the sidecars: Istio uses one (the one created first) and ignores the others' routes (istioctl IST0109); keep one",
            same_host.join(", ")
        )
    });
    for (v, vs) in virtual_services {
        if !claimed.insert(v) {
            continue;
        }
        let mut evidence = cause.to_vec();
        if snapshot.names_host(vs, &host) {
            evidence.extend(shadow_note.clone());
        }
        let (edits, all_non_idempotent) =
            route_edits(snapshot, vs, svc_non_idempotent, &mut evidence, |_| true);
        if edits.is_empty() {
            continue;
        }
        if all_non_idempotent {
            non_idempotent_notes(&mut evidence, service);
        }
        let message = format!(
            "{}routes of {} to {host} are not retried on connection reset (503 UC)",
            lead(code),
            vs.describe()
        );
        out.push(
            Remediation::patch(vs.object_ref(), vs.raw.to_value(), edits, true).map(
                |remediation| finding(code, severity, service, message, evidence, remediation),
            ),
        );
    }
    out
}

/// The findings for routes of gateway-bound VirtualServices that send requests to service `s`:
/// there the gateway's Envoy is the client, and a reset connection to the service is a 503 UC
/// for the caller outside the mesh unless that route retries on `reset`. One finding per
/// VirtualService, patching only the routes to `s` (the routes to other services are theirs; the
/// operator and `analyze -o yaml` compose the fixes on one object).
fn gateway_findings(
    snapshot: &Snapshot,
    s: usize,
    code: Code,
    cause: &[String],
) -> Vec<Result<Finding, PlanError>> {
    let service = &snapshot.services[s];
    let host = snapshot.service_host(service);
    let svc_non_idempotent = service_non_idempotent(snapshot, s);
    let mut out = Vec::new();
    let lower = host.to_ascii_lowercase();
    for (vs, route_hosts) in snapshot.gateway_virtual_services_to(&host) {
        let mut evidence = cause.to_vec();
        evidence.push(format!(
            "bound to gateway(s) {}: the gateway's proxy is the client of {host}",
            vs.spec.gateways.join(", ")
        ));
        let wanted = |i: usize| route_hosts.get(i).is_some_and(|hs| hs.contains(&lower));
        let (edits, all_non_idempotent) =
            route_edits(snapshot, vs, svc_non_idempotent, &mut evidence, wanted);
        if edits.is_empty() {
            continue;
        }
        if all_non_idempotent {
            non_idempotent_notes(&mut evidence, service);
        }
        let message = format!(
            "{}routes of {} (gateway) to {host} are not retried on connection reset (503 UC at the gateway)",
            lead(code),
            vs.describe()
        );
        out.push(
            Remediation::patch(vs.object_ref(), vs.raw.to_value(), edits, true).map(
                |remediation| {
                    finding(
                        code,
                        Severity::Warning,
                        service,
                        message,
                        evidence,
                        remediation,
                    )
                },
            ),
        );
    }
    out
}

/// The edits that add `reset` (or `reset-before-request`) to the retries of `vs`'s HTTP routes
/// that `wanted` picks (by index), with a line of evidence each; and whether every route edited is
/// non-idempotent.
fn route_edits(
    snapshot: &Snapshot,
    vs: &Obj<VirtualServiceSpec>,
    svc_non_idempotent: bool,
    evidence: &mut Vec<String>,
    wanted: impl Fn(usize) -> bool,
) -> (Vec<Edit>, bool) {
    let mut edits = Vec::new();
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
        let non_idempotent = svc_non_idempotent || only_non_idempotent(route);
        if has_reset(&eff.retry_on, non_idempotent) && eff.attempts > 0 {
            continue;
        }
        all_non_idempotent &= non_idempotent;
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
    (edits, all_non_idempotent)
}

/// Why the retries added skip requests that reached the app.
fn non_idempotent_notes(evidence: &mut Vec<String>, service: &Obj<ServiceSpec>) {
    if grpc_only(&service.spec) {
        evidence.push(grpc_note());
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
    for s in 0..snapshot.services.len() {
        if !sink.wants(&snapshot.services[s].meta.namespace) {
            continue;
        }
        for f in retry_findings(snapshot, s, Code::MissingResetRetry, &[], &mut claimed) {
            sink.push(f);
        }
    }
}

#[cfg(test)]
mod tests;
