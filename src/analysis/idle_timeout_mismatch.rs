//! `idle-timeout-mismatch`: the server's sidecar keeps idle upstream connections to the app
//! longer than the app does. The app closes one first, the proxy reuses it, and the request
//! fails with 503 UC. Fix: an idle timeout slightly shorter than the app's, at the level that is
//! in force today (so that it wins), on the DestinationRule or Sidecar Istio applies, or on a new
//! DestinationRule when none applies. An app with no sidecar behind a gateway VirtualService
//! races the gateway's Envoy the same way, through its outbound pool (`gateway_problems`).
//!
//! The value written is `app − max(1s, 10% of app)`, in whole seconds from 2s up (a 5s app gets
//! 4s, 75s gets 67s); an app at 1s or less gets half of it.
//!
//! Only ports the proxy handles as HTTP (declared so, or sniffed) are judged. On a TCP port
//! (declared `tcp`, `tls`, `https`, ..., or a well-known non-HTTP server's) the sidecar is a TCP
//! proxy: each client connection gets its own connection to the app, none is pooled or reused,
//! and when the app closes one the proxy closes the client's side; no request is answered 503,
//! and a shorter `tcp.idleTimeout` would not change what the client sees. Found on
//! GoogleCloudPlatform/kubernetes-engine-samples: an Envoy behind a TLS port 443 got a finding.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::app_servers::{AppIdle, MountedFiles, ShownFiles, app_idle};
use super::{
    Code, Finding, Protocol, Severity, Sink, WorkloadRef, app_ports, service_port_protocol,
};
use crate::model::service::ServiceSpec;
use crate::model::workload::{Container, Workload};
use crate::model::{ObjectRef, duration, keys};
use crate::remediation::{Edit, Remediation, creation_labels};
use crate::snapshot::Obj;
use crate::snapshot::lookup::{AppliedDestinationRule, PoolLevel, dr_pool_levels};
use crate::snapshot::{Snapshot, hosts};
use k8s_openapi::api::core::v1::ServicePort;

/// Envoy's and Istio's default idle timeout for upstream connections.
pub const PROXY_DEFAULT: Duration = Duration::from_secs(3600);

/// The idle timeout meshmedic proposes for an app that closes idle connections after `app`.
pub fn proposed_timeout(app: Duration) -> Duration {
    if app <= Duration::from_secs(1) {
        return app / 2;
    }
    let margin = std::cmp::max(Duration::from_secs(1), app / 10);
    let value = app - margin;
    if value >= Duration::from_secs(2) {
        Duration::from_secs(value.as_secs())
    } else {
        Duration::from_millis(value.as_millis() as u64)
    }
}

/// The proxy's effective idle timeout for an HTTP port from the level in force (`None` when
/// `0s` disables it).
fn effective(level: Option<&PoolLevel>) -> (Option<Duration>, String) {
    let Some(level) = level else {
        return (
            Some(PROXY_DEFAULT),
            "Istio default (1h): no connection pool sets one".to_string(),
        );
    };
    let http = level.pool.http.as_ref().and_then(|h| h.idle_timeout);
    let tcp = level.pool.tcp.as_ref().and_then(|t| t.idle_timeout);
    let (value, field) = match (http, tcp) {
        (Some(h), _) => (h.0, "http.idleTimeout"),
        (None, Some(t)) => (t.0, "tcp.idleTimeout (no http.idleTimeout)"),
        (None, None) => (PROXY_DEFAULT, "no idleTimeout, default"),
    };
    let shown = if value.is_zero() {
        "0s (disabled: never times out)".to_string()
    } else {
        duration::format(value)
    };
    // `0s` disables the timeout for http (Envoy `idle_timeout: 0`) as for tcp.
    let value = if value.is_zero() { None } else { Some(value) };
    (value, format!("{}: {field} {shown}", level.description))
}

/// The proxy that keeps the idle connections to the app.
#[derive(Clone, Copy, PartialEq)]
enum Client {
    /// The server's own sidecar (its inbound pool).
    Sidecar,
    /// A gateway's Envoy, when the app has no sidecar (its outbound pool for the host).
    Gateway,
}

struct PortProblem {
    client: Client,
    service_port: i32,
    app: Duration,
    app_why: String,
    proxy_why: String,
    workload: String,
    level: Option<PoolLevel>,
}

impl PortProblem {
    /// The app behind `port` of `workload` closes idle connections after `app.0` (why: `app.1`);
    /// `client` keeps them for as long as `proxy_why` says, from `level`.
    fn at(
        client: Client,
        port: &ServicePort,
        app: (Duration, String),
        proxy_why: String,
        workload: &Workload,
        level: Option<PoolLevel>,
    ) -> PortProblem {
        PortProblem {
            client,
            service_port: port.port,
            app: app.0,
            app_why: app.1,
            proxy_why,
            workload: describe(workload),
            level,
        }
    }
}

pub fn detect(snapshot: &Snapshot, sink: &mut Sink) {
    for (s, service) in snapshot.services.iter().enumerate() {
        if !sink.wants(&service.meta.namespace) {
            continue;
        }
        let host = snapshot.service_host(service);
        let ns = &service.meta.namespace;
        // Problems grouped by the object the fix patches (or a new DR when none applies).
        let mut by_target: BTreeMap<Option<ObjectRef>, (Option<usize>, Vec<PortProblem>)> =
            BTreeMap::new();
        let mut evidence_extra = Vec::new();
        let mut any_injected = false;
        let pooled = pooled_ports(snapshot, s);
        for workload in snapshot.workloads_of(s) {
            if !snapshot.is_injected(workload) {
                continue;
            }
            any_injected = true;
            let applied = snapshot.destination_rule_for(&host, ns, ns, &workload.pod_labels);
            for &port in &pooled {
                let Some((target_port, after, why)) = app_closes(snapshot, workload, service, port)
                else {
                    continue;
                };
                let levels = snapshot.inbound_pool_levels(
                    workload,
                    target_port,
                    applied.as_ref(),
                    port.port,
                );
                let level = levels.first().cloned();
                let (proxy, proxy_why) = effective(level.as_ref());
                if proxy.is_some_and(|p| p < after) {
                    continue;
                }
                // Which object the fix goes to: the Sidecar whose level is in force; else the DR
                // Istio applies when it is this service's own (same namespace, exact host); else a
                // new DR for this host.
                let (target, dr_index) = match &level {
                    Some(l)
                        if l.pointer.starts_with("/spec/ingress")
                            || l.pointer.starts_with("/spec/inboundConnectionPool") =>
                    {
                        (
                            snapshot
                                .sidecar_for(workload)
                                .map(|(_, sc)| sc.object_ref()),
                            None,
                        )
                    }
                    _ => match &applied {
                        Some(a) if is_services_own(snapshot, a, ns, &host) => {
                            (Some(a.rule.object_ref()), Some(a.index))
                        }
                        Some(a) => {
                            evidence_extra.push(format!(
                                "{} applies to {host} but is shared (another namespace or a wildcard host); \
                                 a DestinationRule for this host alone is proposed, copying its trafficPolicy",
                                a.rule.describe()
                            ));
                            (None, Some(a.index))
                        }
                        None => (None, None),
                    },
                };
                let entry = by_target.entry(target).or_insert((dr_index, Vec::new()));
                entry.1.push(PortProblem::at(
                    Client::Sidecar,
                    port,
                    (after, why),
                    proxy_why,
                    workload,
                    level,
                ));
            }
        }
        // Only a service none of whose pods has a proxy can be reached without one.
        if !any_injected && super::reached_without_sidecar(snapshot, s) {
            gateway_problems(snapshot, s, &host, &mut by_target, &mut evidence_extra);
        }
        for dr in snapshot
            .destination_rules_naming(&host)
            .map(|i| &snapshot.destination_rules[i])
        {
            let rule_host =
                hosts::resolve(&dr.spec.host, &dr.meta.namespace, &snapshot.cluster_domain);
            if hosts::matches(&rule_host, &host)
                && !hosts::visible(&dr.spec.export_to, &dr.meta.namespace, ns)
            {
                evidence_extra.push(format!(
                    "{} is not visible from namespace {ns} (exportTo {:?}), so the server's sidecar does not apply it",
                    dr.describe(),
                    dr.spec.export_to
                ));
            }
        }
        // `name.namespace` is not expanded by Istio: such a rule applies to nothing.
        let short = format!("{}.{ns}", service.meta.name);
        for dr in snapshot
            .destination_rules_naming(&short)
            .map(|i| &snapshot.destination_rules[i])
        {
            if hosts::looks_like_unexpanded_short_name(&dr.spec.host)
                && dr.spec.host.eq_ignore_ascii_case(&short)
            {
                evidence_extra.push(format!(
                    "{} has host {:?}, which Istio does not expand to {host}: it applies to nothing",
                    dr.describe(),
                    dr.spec.host
                ));
            }
        }
        for (target, (dr_index, problems)) in by_target {
            sink.push(finding(
                snapshot,
                s,
                &host,
                target,
                dr_index,
                problems,
                &evidence_extra,
            ));
        }
    }
}

/// The ports of Service `s` whose connections a proxy pools as HTTP: its app ports that are not
/// TCP (worked out once per Service; what the pods say of a port is read across all of them).
fn pooled_ports(snapshot: &Snapshot, s: usize) -> Vec<&ServicePort> {
    app_ports(&snapshot.services[s].spec)
        .filter(|p| service_port_protocol(snapshot, s, p) != Protocol::Tcp)
        .collect()
}

/// What the app behind a Service port does with idle connections, when it closes them:
/// `(container port, after, why)`.
fn app_closes(
    snapshot: &Snapshot,
    workload: &Workload,
    service: &Obj<ServiceSpec>,
    port: &ServicePort,
) -> Option<(i32, Duration, String)> {
    let target = port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(port.port));
    let target_port = workload.resolve_port(&target)?;
    let container = container_for(workload, target_port)?;
    let annotation = workload
        .annotation(keys::APP_IDLE_TIMEOUT)
        .map(|v| (v, format!("{} pod template", describe(workload))))
        .or_else(|| {
            service
                .meta
                .annotations
                .get(keys::APP_IDLE_TIMEOUT)
                .map(|v| (v, service.describe()))
        });
    let mounts = mounted_files(snapshot, workload, container);
    match app_idle(
        container,
        annotation.as_ref().map(|(v, o)| (*v, o.as_str())),
        &mounts,
    ) {
        AppIdle::Closes { after, why } => Some((target_port, after, why)),
        _ => None,
    }
}

/// A container's volume mounts, with the files of each ConfigMap the snapshot has (by full
/// path in the container: a `subPath` mount is the one file; otherwise each key, or each of
/// `items`, under the mount path).
fn mounted_files<'a>(
    snapshot: &'a Snapshot,
    workload: &'a Workload,
    container: &'a Container,
) -> Vec<MountedFiles<'a>> {
    let ns = &workload.meta.namespace;
    container
        .volume_mounts
        .iter()
        .map(|mount| {
            let files = workload
                .pod_spec
                .volumes
                .iter()
                .find(|v| v.name == mount.name)
                .and_then(|v| v.config_map.as_ref())
                .and_then(|volume| {
                    let cm = snapshot
                        .config_maps
                        .get(&(ns.clone(), volume.name.clone()))?;
                    // File name in the volume → key.
                    let names: Vec<(&str, &str)> = match &volume.items {
                        Some(items) => items
                            .iter()
                            .map(|i| (i.path.as_str(), i.key.as_str()))
                            .collect(),
                        None => cm
                            .keys
                            .iter()
                            .map(|(k, _)| (k.as_str(), k.as_str()))
                            .collect(),
                    };
                    let dir = mount.mount_path.trim_end_matches('/');
                    let files = names
                        .into_iter()
                        .filter_map(|(name, key)| {
                            let directives = cm.key(key)?;
                            match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
                                Some(sub) if sub == name => Some((dir.to_string(), directives)),
                                Some(_) => None,
                                None => Some((format!("{dir}/{name}"), directives)),
                            }
                        })
                        .collect();
                    Some(ShownFiles {
                        source: format!("ConfigMap {ns}/{}", volume.name),
                        files,
                    })
                });
            MountedFiles {
                path: &mount.mount_path,
                files,
            }
        })
        .collect()
}

/// A Service whose pods have no sidecar, behind gateway VirtualServices: each gateway's Envoy
/// pools its own connections to the app, with the idle timeout of the DestinationRule it
/// applies for the host (Envoy's 1 h when none sets one). Judged only where meshmedic's fix
/// takes effect for every such gateway: from each gateway's namespace the same rule applies,
/// and it is the service's own (patched) or none (a new one in the service's namespace then
/// applies); a rule with a `workloadSelector` for the host may pick the gateway's pods, whose
/// labels are not in the VirtualService, so then nothing is judged.
fn gateway_problems(
    snapshot: &Snapshot,
    s: usize,
    host: &str,
    by_target: &mut BTreeMap<Option<ObjectRef>, (Option<usize>, Vec<PortProblem>)>,
    evidence_extra: &mut Vec<String>,
) {
    let service = &snapshot.services[s];
    let ns = &service.meta.namespace;
    let mut gateways: Vec<String> = Vec::new();
    for v in snapshot.gateway_virtual_services_to(host) {
        let vs = &snapshot.virtual_services[v];
        for gateway in vs.spec.gateways.iter().filter(|g| g.as_str() != "mesh") {
            let named = if gateway.contains('/') {
                gateway.clone()
            } else {
                format!("{}/{gateway}", vs.meta.namespace)
            };
            if !gateways.contains(&named) {
                gateways.push(named);
            }
        }
    }
    if gateways.is_empty()
        || snapshot.destination_rules_naming(host).any(|i| {
            snapshot.destination_rules[i]
                .spec
                .workload_selector
                .is_some()
        })
    {
        return;
    }
    let no_labels = crate::model::Labels::default();
    let mut applied: Option<Option<usize>> = None;
    for gateway in &gateways {
        let gateway_ns = gateway.split('/').next().unwrap_or(ns);
        let own = match snapshot.destination_rule_for(host, ns, gateway_ns, &no_labels) {
            None => None,
            Some(a) if is_services_own(snapshot, &a, ns, host) => Some(a.index),
            Some(_) => return,
        };
        match applied {
            Some(before) if before != own => return,
            _ => applied = Some(own),
        }
    }
    let Some(dr_index) = applied else {
        return;
    };
    let rule = dr_index.map(|i| &snapshot.destination_rules[i]);
    let mut found = false;
    let pooled = pooled_ports(snapshot, s);
    for workload in snapshot.workloads_of(s) {
        for &port in &pooled {
            let Some((_, after, why)) = app_closes(snapshot, workload, service, port) else {
                continue;
            };
            let level = rule.and_then(|r| {
                dr_pool_levels(
                    r.spec.traffic_policy.as_ref(),
                    "/spec/trafficPolicy",
                    port.port,
                    &r.describe(),
                )
                .into_iter()
                .next()
            });
            let (proxy, proxy_why) = effective(level.as_ref());
            if proxy.is_some_and(|p| p < after) {
                continue;
            }
            found = true;
            by_target
                .entry(rule.map(|r| r.object_ref()))
                .or_insert((dr_index, Vec::new()))
                .1
                .push(PortProblem::at(
                    Client::Gateway,
                    port,
                    (after, why),
                    proxy_why,
                    workload,
                    level,
                ));
        }
    }
    if found {
        evidence_extra.push(format!(
            "{} has no sidecar: the Envoy of gateway(s) {} connects to its pods directly and keeps its own idle connections to them",
            service.describe(),
            gateways.join(", ")
        ));
    }
}

/// Whether the rule that applies is the service's own: in its namespace, for its host exactly
/// (not a wildcard), so a fix may patch it without changing other services.
fn is_services_own(
    snapshot: &Snapshot,
    applied: &AppliedDestinationRule<'_>,
    ns: &str,
    host: &str,
) -> bool {
    applied.rule.meta.namespace == ns
        && hosts::resolve(&applied.rule.spec.host, ns, &snapshot.cluster_domain) == host
}

fn describe(w: &Workload) -> String {
    format!("{} {}/{}", w.kind, w.meta.namespace, w.meta.name)
}

/// The app container that listens on a port (or the only app container).
fn container_for(workload: &Workload, port: i32) -> Option<&crate::model::workload::Container> {
    let mut apps = workload.app_containers();
    let by_port = workload
        .app_containers()
        .find(|c| c.ports.iter().flatten().any(|p| p.container_port == port));
    by_port.or_else(|| {
        let first = apps.next();
        if apps.next().is_none() { first } else { None }
    })
}

fn finding(
    snapshot: &Snapshot,
    s: usize,
    host: &str,
    target: Option<ObjectRef>,
    dr_index: Option<usize>,
    problems: Vec<PortProblem>,
    evidence_extra: &[String],
) -> Result<Finding, crate::remediation::PlanError> {
    let service = &snapshot.services[s];
    let ns = &service.meta.namespace;
    let app = problems
        .iter()
        .map(|p| p.app)
        .min()
        .unwrap_or(PROXY_DEFAULT);
    let value = proposed_timeout(app);
    let value_text = duration::format(value);
    let mut evidence: Vec<String> = problems
        .iter()
        .map(|p| {
            format!(
                "port {}: {} closes idle connections after {} ({}); {} keeps them for {}",
                p.service_port,
                p.workload,
                duration::format(p.app),
                p.app_why,
                match p.client {
                    Client::Sidecar => "the server's sidecar",
                    Client::Gateway => "the gateway's proxy",
                },
                p.proxy_why
            )
        })
        .collect();
    evidence.extend(evidence_extra.iter().cloned());
    if let Some(t) = &target {
        evidence.extend(snapshot.generated_note(&t.kind, &t.namespace, &t.name));
    }
    evidence.sort();
    evidence.dedup();

    let remediation = match target {
        Some(target) => {
            let raw = snapshot.raw_of(&target);
            let mut edits = Vec::new();
            for p in &problems {
                let base = match &p.level {
                    Some(l)
                        if target.kind == "Sidecar"
                            || l.pointer.starts_with("/spec/trafficPolicy") =>
                    {
                        l.pointer.clone()
                    }
                    _ => "/spec/trafficPolicy/connectionPool".to_string(),
                };
                let edit = Edit::at(&format!("{base}/http/idleTimeout"), None, json!(value_text));
                if !edits.contains(&edit) {
                    edits.push(edit);
                }
            }
            // Lowering an idle timeout only opens a few more connections: safe to apply.
            match raw {
                Some(raw) => snapshot.plan_patch(target, raw, edits, true)?,
                None => Remediation::patch(target, Value::Null, edits, true)?,
            }
        }
        None => {
            let mut spec = match dr_index {
                Some(i) => snapshot.destination_rules[i]
                    .raw
                    .get("spec")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
                None => json!({}),
            };
            if let Some(map) = spec.as_object_mut() {
                map.insert("host".into(), json!(host));
                map.remove("exportTo");
            }
            let mut resource = json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {
                    "name": format!("{}-idle-timeout", service.meta.name),
                    "namespace": ns,
                    "labels": creation_labels(),
                },
                "spec": spec,
            });
            for p in &problems {
                let pointer = match &p.level {
                    Some(l) if l.pointer.starts_with("/spec/trafficPolicy") => l.pointer.clone(),
                    _ => "/spec/trafficPolicy/connectionPool".to_string(),
                };
                let path = format!("{pointer}/http/idleTimeout");
                set_pointer(&mut resource, &path, json!(value_text));
            }
            Remediation::create(resource, true)
        }
    };
    Ok(Finding {
        code: Code::IdleTimeoutMismatch,
        severity: Severity::Warning,
        namespace: ns.clone(),
        service: Some(service.meta.name.clone()),
        services: Vec::new(),
        workload: None,
        message: if problems.iter().all(|p| p.client == Client::Gateway) {
            format!(
                "gateway idle timeout to {host} is not shorter than the app's ({}): idle connections the app closes are reused and answer 503 UC at the gateway; set it to {value_text} on {}",
                duration::format(app),
                remediation.target
            )
        } else {
            format!(
                "sidecar idle timeout is not shorter than the app's ({}): idle connections the app closes are reused and answer 503 UC; set it to {value_text} on {}",
                duration::format(app),
                remediation.target
            )
        },
        evidence,
        remediation,
    })
    .map(|mut f| {
        if let [only] = problems.as_slice()
            && let Some(w) = snapshot.workloads_of(s).find(|w| describe(w) == only.workload)
        {
            f.workload = Some(WorkloadRef { kind: w.kind.to_string(), name: w.meta.name.clone() });
        }
        f
    })
}

/// Sets a value at a JSON pointer, creating objects on the way.
fn set_pointer(doc: &mut Value, pointer: &str, value: Value) {
    let mut node = doc;
    let tokens = crate::remediation::pointer_tokens(pointer);
    for (i, token) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        node = match node {
            Value::Array(items) => match token.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            {
                Some(n) => n,
                None => return,
            },
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                let Some(map) = other.as_object_mut() else {
                    return;
                };
                if last {
                    map.insert(token.clone(), value);
                    return;
                }
                map.entry(token.clone()).or_insert_with(|| json!({}))
            }
        };
    }
}

#[cfg(test)]
mod tests;
