//! `localhost-binding`: the app listens on 127.0.0.1 (or ::1) only. Since Istio 1.10 the sidecar
//! forwards inbound traffic to the pod IP, so every request from another pod answers 503. Read
//! from command, args and env (`--host`, `--bind`, `-b`, `--listen`, `host:port` forms, `HOST`,
//! `BIND_ADDRESS`, `SERVER_ADDRESS`, `LISTEN_ADDR`, …) for ports a Service targets.
//!
//! Fix: an Istio `Sidecar` selecting the workload whose `ingress[].defaultEndpoint` sends those
//! ports to loopback again, plus the advice to bind 0.0.0.0. A Sidecar with ingress listeners
//! replaces the automatic ones, so it lists every port a Service targets (the others go to
//! `0.0.0.0:<port>`, the pod IP, as before), and it copies egress from the namespace's default
//! Sidecar, which it replaces for this workload.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::workload::Container;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::app_servers::{flag_value, words};
use super::{
    Code, Finding, Severity, Sink, WorkloadRef, app_ports, first_service, joined_ports,
    sidecar_listener_protocol,
};
use crate::model::workload::Workload;
use crate::remediation::{Edit, Remediation, creation_labels};
use crate::snapshot::Snapshot;

const ADDRESS_FLAGS: [&str; 9] = [
    "--host",
    "--bind",
    "-b",
    "--listen",
    "--address",
    "--addr",
    "--bind-address",
    "--http-address",
    "--server.address",
];
const ADDRESS_ENV: [&str; 13] = [
    "HOST",
    "BIND_ADDRESS",
    "BIND_ADDR",
    "BIND",
    "SERVER_ADDRESS",
    "SERVER_HOST",
    "LISTEN_ADDR",
    "LISTEN_ADDRESS",
    "APP_HOST",
    "FLASK_RUN_HOST",
    "UVICORN_HOST",
    "ASPNETCORE_URLS",
    "HTTP_ADDR",
];
const PORT_FLAGS: [&str; 3] = ["--port", "-p", "--server.port"];
const PORT_ENV: [&str; 3] = ["PORT", "SERVER_PORT", "FLASK_RUN_PORT"];

/// A loopback bind: the address family and the port when it is written next to it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopbackBind {
    pub ipv6: bool,
    pub port: Option<i32>,
    pub why: String,
}

/// Reads `127.0.0.1`, `localhost`, `::1`, `[::1]:8080`, `http://localhost:5000`, `127.0.0.1:80`.
fn parse_address(value: &str) -> Option<(bool, Option<i32>)> {
    let v = value.trim().trim_matches(|c| c == '"' || c == '\'');
    let v = v.split_once("://").map_or(v, |(_, rest)| rest);
    let v = v.trim_end_matches('/');
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else if v == "::1" {
        (v, None)
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (v, None),
        }
    };
    let ipv6 = match host {
        "127.0.0.1" | "localhost" => false,
        "::1" => true,
        h if h.starts_with("127.") && h.split('.').count() == 4 => false,
        _ => return None,
    };
    Some((ipv6, port.and_then(|p| p.parse().ok())))
}

/// Every loopback bind a container declares.
pub fn loopback_binds(container: &Container) -> Vec<LoopbackBind> {
    let mut out = Vec::new();
    let w = words(container);
    let env = |n: &str| {
        container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    let explicit_port = flag_value(&w, &PORT_FLAGS)
        .and_then(|p| p.parse().ok())
        .or_else(|| PORT_ENV.iter().find_map(|n| env(n)?.parse().ok()));
    for (i, word) in w.iter().enumerate() {
        let value = ADDRESS_FLAGS.iter().find_map(|f| {
            if word == f {
                w.get(i + 1).map(String::as_str)
            } else {
                word.strip_prefix(f).and_then(|r| r.strip_prefix('='))
            }
        });
        let candidate = value
            .or_else(|| (word.contains(':') && !word.starts_with('-')).then_some(word.as_str()));
        if let Some((ipv6, port)) = candidate.and_then(parse_address) {
            let shown = match value {
                Some(v) if word != v && !word.contains('=') => format!("{word} {v}"),
                _ => word.clone(),
            };
            out.push(LoopbackBind {
                ipv6,
                port: port.or(explicit_port),
                why: format!("argument {shown:?}"),
            });
        }
    }
    let mut env_words: Vec<(String, String)> = Vec::new();
    for name in ADDRESS_ENV {
        if let Some(v) = env(name) {
            env_words.push((name.to_string(), v));
        }
    }
    for (name, value) in env_words {
        for part in value.split([';', ',']) {
            if let Some((ipv6, port)) = parse_address(part) {
                out.push(LoopbackBind {
                    ipv6,
                    port: port.or(explicit_port),
                    why: format!("env {name}={value}"),
                });
            }
        }
    }
    if let Some(args) = env("GUNICORN_CMD_ARGS") {
        let gw: Vec<String> = args.split_whitespace().map(str::to_string).collect();
        if let Some((ipv6, port)) = flag_value(&gw, &["-b", "--bind"]).and_then(parse_address) {
            out.push(LoopbackBind {
                ipv6,
                port,
                why: format!("env GUNICORN_CMD_ARGS={args}"),
            });
        }
    }
    out
}

pub fn detect(snapshot: &Snapshot, sink: &mut Sink) {
    for (w, workload) in snapshot.workloads.iter().enumerate() {
        if !sink.wants(&workload.meta.namespace) {
            continue;
        }
        // A sidecar-only cause: gateways and ambient pods have no sidecar in front of an app.
        if !snapshot.has_sidecar(workload) {
            continue;
        }
        // Container ports that a Service targets, with the protocol a listener for them declares.
        let mut targeted: BTreeMap<i32, &'static str> = BTreeMap::new();
        for (_, svc) in snapshot.services_of(w) {
            for port in app_ports(&svc.spec) {
                let target = port
                    .target_port
                    .clone()
                    .unwrap_or(IntOrString::Int(port.port));
                if let Some(p) = workload.resolve_port(&target) {
                    targeted.entry(p).or_insert(sidecar_listener_protocol(port));
                }
            }
        }
        if targeted.is_empty() {
            continue;
        }
        let single_app = workload.app_containers().count() == 1;
        let mut loopback: BTreeMap<i32, (bool, String)> = BTreeMap::new();
        for container in workload.app_containers() {
            let declared: BTreeSet<i32> = container
                .ports
                .iter()
                .flatten()
                .map(|p| p.container_port)
                .collect();
            for bind in loopback_binds(container) {
                let ports: Vec<i32> = match bind.port {
                    Some(p) => vec![p],
                    None if !declared.is_empty() => declared.iter().copied().collect(),
                    None if single_app => targeted.keys().copied().collect(),
                    None => Vec::new(),
                };
                for p in ports.into_iter().filter(|p| targeted.contains_key(p)) {
                    loopback.entry(p).or_insert((
                        bind.ipv6,
                        format!("container {}: {}", container.name, bind.why),
                    ));
                }
            }
        }
        // A Sidecar (meshmedic's fix or one written by hand) that already sends the port to the
        // address the app binds makes traffic flow: nothing to report for that port.
        if let Some((_, sc)) = snapshot.sidecar_for(workload) {
            loopback.retain(|&port, (ipv6, _)| {
                !sc.spec.ingress.iter().any(|l| {
                    l.port.as_ref().map(|p| p.number as i32) == Some(port)
                        && l.default_endpoint
                            .as_deref()
                            .and_then(parse_address)
                            .is_some_and(|(v6, p)| v6 == *ipv6 && p == Some(port))
                })
            });
        }
        if loopback.is_empty() {
            continue;
        }
        sink.push(finding(snapshot, w, workload, &targeted, &loopback));
    }
}

fn endpoint(ipv6: bool, loopback: bool, port: i32) -> String {
    match (loopback, ipv6) {
        (true, false) => format!("127.0.0.1:{port}"),
        (true, true) => format!("[::1]:{port}"),
        (false, _) => format!("0.0.0.0:{port}"),
    }
}

fn ingress_port(port: i32, protocol: &str) -> Value {
    json!({"number": port, "protocol": protocol, "name": format!("{}-{port}", protocol.to_ascii_lowercase())})
}

fn finding(
    snapshot: &Snapshot,
    w: usize,
    workload: &Workload,
    targeted: &BTreeMap<i32, &'static str>,
    loopback: &BTreeMap<i32, (bool, String)>,
) -> Result<Finding, crate::remediation::PlanError> {
    let mut evidence: Vec<String> = loopback
        .iter()
        .map(|(p, (_, why))| format!("port {p} is bound to loopback ({why}); the sidecar forwards to the pod IP since Istio 1.10"))
        .collect();
    evidence.push(
        "the lasting fix is to bind 0.0.0.0 (or ::); the Sidecar below restores traffic until then"
            .to_string(),
    );
    let ns = &workload.meta.namespace;
    let existing = snapshot
        .sidecar_for(workload)
        .filter(|(_, sc)| sc.meta.namespace == *ns);
    let remediation = match existing {
        // A Sidecar already selects this workload: set or add its ingress listeners.
        Some((_, sc)) if sc.spec.workload_selector.is_some() => {
            let mut edits = Vec::new();
            let mut next = sc.spec.ingress.len();
            let current = sc.spec.ingress.is_empty();
            for (&port, &protocol) in targeted {
                let is_loop = loopback.get(&port);
                let found = sc
                    .spec
                    .ingress
                    .iter()
                    .position(|i| i.port.as_ref().map(|p| p.number as i32) == Some(port));
                match (found, is_loop) {
                    (Some(i), Some((ipv6, _))) => edits.push(Edit::at(
                        &format!("/spec/ingress/{i}/defaultEndpoint"),
                        None,
                        json!(endpoint(*ipv6, true, port)),
                    )),
                    (None, l) if l.is_some() || current => {
                        let ipv6 = l.is_some_and(|(v, _)| *v);
                        let listener = json!({"port": ingress_port(port, protocol), "defaultEndpoint": endpoint(ipv6, l.is_some(), port)});
                        let edit = if current && next == 0 {
                            Edit::at("/spec/ingress", None, json!([listener]))
                        } else {
                            Edit::at(&format!("/spec/ingress/{next}"), None, listener)
                        };
                        edits.push(edit);
                        next += 1;
                    }
                    _ => {}
                }
            }
            evidence.push(format!(
                "{} already selects this workload; its ingress is patched",
                sc.describe()
            ));
            Remediation::patch_raw(sc.object_ref(), &sc.raw, edits, false)?
        }
        _ => {
            let ingress: Vec<Value> = targeted
                .iter()
                .map(|(&port, &protocol)| {
                    let l = loopback.get(&port);
                    json!({"port": ingress_port(port, protocol), "defaultEndpoint": endpoint(l.is_some_and(|(v, _)| *v), l.is_some(), port)})
                })
                .collect();
            let mut spec = json!({"workloadSelector": {"labels": workload.selector_labels}, "ingress": ingress});
            if let Some((_, default)) = existing {
                for key in ["egress", "outboundTrafficPolicy"] {
                    if let Some(v) = default.raw.pointer(&format!("/spec/{key}")) {
                        spec[key] = v.clone();
                    }
                }
                evidence.push(format!(
                    "egress copied from {}, which this Sidecar replaces for the workload",
                    default.describe()
                ));
            }
            Remediation::create(
                json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "Sidecar",
                    "metadata": {"name": format!("{}-localhost", workload.meta.name), "namespace": ns, "labels": creation_labels()},
                    "spec": spec,
                }),
                true,
            )
        }
    };
    Ok(Finding {
        code: Code::LocalhostBinding,
        severity: Severity::Error,
        namespace: ns.clone(),
        service: first_service(snapshot, w),
        services: Vec::new(),
        workload: Some(WorkloadRef::of(workload)),
        message: format!(
            "{} {} listens on loopback only (ports {}): every request from other pods answers 503",
            workload.kind,
            workload.meta.name,
            joined_ports(loopback.keys())
        ),
        evidence,
        remediation,
    })
}

#[cfg(test)]
mod tests;
