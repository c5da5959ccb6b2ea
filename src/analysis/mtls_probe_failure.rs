//! `mtls-probe-failure`: kubelet probes an app port that the sidecar captures, probe rewrite is
//! off, and the effective PeerAuthentication for that port is STRICT. The kubelet has no
//! Istio-issued certificate, so HTTP and gRPC probes fail (503) and the pod never becomes ready;
//! a TCP probe is answered by the proxy itself and passes even when the app is down. The
//! kubelet sends a container's HTTP lifecycle hooks the same way: a failing `postStart` kills
//! the container, a failing `preStop` skips the app's own shutdown step. Since Istio 1.25 the
//! injector rewrites hooks with the probes (before, it leaves them as written, whatever the
//! setting, so they are judged only from 1.25 on).
//!
//! Fix: when the probe has a port of its own, keep that port out of capture
//! (`traffic.sidecar.istio.io/excludeInboundPorts`, merged with what is there). When the probe
//! shares the serving port, re-enable probe rewrite instead: excluding the serving port would
//! also take real traffic out of mTLS. For a proxy written into the template (kube-inject output
//! no webhook injects again) both annotations act only at injection, so the fix rewrites the
//! probes in the template as the injector does (`remediation::template`).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::workload::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::{Code, Finding, Severity, Sink, WorkloadRef, app_ports, first_service, joined_ports};
use crate::model::istio::MtlsMode;
use crate::model::keys;
use crate::model::workload::{Container, Workload};
use crate::remediation::template::{APP_PROBERS_ENV, Rebuild};
use crate::remediation::{Edit, Remediation};
use crate::snapshot::Snapshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ProbeKind {
    Http,
    Grpc,
    Tcp,
    /// An HTTP `postStart` hook: when it fails, the kubelet kills the container.
    PostStartHook,
    /// An HTTP `preStop` hook: when it fails, the kubelet goes on to stop the container.
    PreStopHook,
}

impl ProbeKind {
    fn hook(self) -> bool {
        matches!(self, ProbeKind::PostStartHook | ProbeKind::PreStopHook)
    }

    /// Whether it keeps the pod from serving (an error), not only from being checked or
    /// stopped as written (a warning).
    fn keeps_pod_from_serving(self) -> bool {
        matches!(
            self,
            ProbeKind::Http | ProbeKind::Grpc | ProbeKind::PostStartHook
        )
    }
}

/// Istio's injector rewrites lifecycle hooks with the probes from 1.25 on
/// (`convertAppLifecycleHandler`), and that version's agent serves `/app-lifecycle/`.
const HOOKS_REWRITTEN_SINCE: (u32, u32) = (1, 25);

/// A port as the kubelet resolves it: a named port among the ports of the probe's or hook's own
/// container (a name only another container declares is one that never runs, and not one the
/// injector rewrites either).
fn resolve(container: &Container, port: &IntOrString) -> Option<i32> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
        }),
    }
}

/// The port a probe reaches.
fn probe_port(container: &Container, probe: &Probe) -> Option<(ProbeKind, i32)> {
    if let Some(h) = &probe.http_get {
        return resolve(container, &h.port).map(|p| (ProbeKind::Http, p));
    }
    if let Some(g) = &probe.grpc {
        return Some((ProbeKind::Grpc, g.port));
    }
    if let Some(t) = &probe.tcp_socket {
        return resolve(container, &t.port).map(|p| (ProbeKind::Tcp, p));
    }
    None
}

/// A container's HTTP lifecycle hooks and the ports they reach. (A `tcpSocket` hook is one the
/// kubelet does not run, "invalid handler", mesh or not.)
fn hook_ports(container: &Container) -> Vec<(&'static str, ProbeKind, i32)> {
    let Some(lifecycle) = &container.lifecycle else {
        return Vec::new();
    };
    [
        (
            "lifecycle.postStart",
            ProbeKind::PostStartHook,
            &lifecycle.post_start,
        ),
        (
            "lifecycle.preStop",
            ProbeKind::PreStopHook,
            &lifecycle.pre_stop,
        ),
    ]
    .into_iter()
    .filter_map(|(name, kind, hook)| {
        let port = resolve(container, &hook.as_ref()?.http_get.as_ref()?.port)?;
        Some((name, kind, port))
    })
    .collect()
}

/// Whether an app container has a hook the injector sends to the agent (HTTP or TCP, judged
/// or not): then the template fix rewrites it too, and says so.
fn any_hook_for_the_agent(workload: &Workload) -> bool {
    workload.app_containers().any(|c| {
        c.lifecycle.as_ref().is_some_and(|l| {
            [&l.post_start, &l.pre_stop]
                .into_iter()
                .flatten()
                .any(|h| h.http_get.is_some() || h.tcp_socket.is_some())
        })
    })
}

fn port_list(value: Option<&str>) -> BTreeSet<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether the sidecar captures inbound traffic on this port.
fn captured(workload: &Workload, port: i32) -> bool {
    let p = port.to_string();
    if port_list(workload.annotation(keys::EXCLUDE_INBOUND_PORTS)).contains(&p) {
        return false;
    }
    match workload.annotation("traffic.sidecar.istio.io/includeInboundPorts") {
        None => true,
        Some(v) => v.trim() == "*" || port_list(Some(v)).contains(&p),
    }
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
        let rewrite_off = match workload.annotation(keys::REWRITE_PROBES) {
            Some(v) => v.trim() == "false",
            None => !snapshot.rewrite_probes_by_default,
        };
        // A proxy written into the template was injected once, and its probes were rewritten
        // then or never: whichever setting says so now, a probe still on the app's port is
        // not rewritten (one the injector rewrote is on the proxy's port, skipped below).
        let written_in = super::proxy_written_into_template(snapshot, workload);
        if !rewrite_off && !written_in {
            continue;
        }
        let serving: BTreeSet<i32> = snapshot
            .services_of(w)
            .flat_map(|(_, s)| app_ports(&s.spec))
            .filter_map(|p| {
                workload.resolve_port(&p.target_port.clone().unwrap_or(IntOrString::Int(p.port)))
            })
            .collect();
        // Probe port → (kinds, which probes, policy that makes it STRICT).
        let mut failing: BTreeMap<i32, (BTreeSet<ProbeKind>, Vec<String>, String)> =
            BTreeMap::new();
        let hooks =
            super::proxy_istio_at_least(snapshot, workload, written_in, HOOKS_REWRITTEN_SINCE);
        for c in workload.app_containers() {
            let probes = [
                ("livenessProbe", &c.liveness_probe),
                ("readinessProbe", &c.readiness_probe),
                ("startupProbe", &c.startup_probe),
            ]
            .into_iter()
            .filter_map(|(name, probe)| {
                let (kind, port) = probe_port(c, probe.as_deref()?)?;
                Some((name, kind, port))
            });
            let hooks = if hooks { hook_ports(c) } else { Vec::new() };
            for (name, kind, port) in probes.chain(hooks) {
                // The proxy's own ports are never captured, and a probe there is one the
                // injector already rewrote (`/app-health/…` on 15020, as `istioctl kube-inject`
                // writes it into a template): the kubelet reaches the proxy in plain HTTP.
                if super::ISTIO_PROXY_PORTS.contains(&port) {
                    continue;
                }
                if !captured(workload, port) {
                    continue;
                }
                let (mode, from) = snapshot.mtls_mode(workload, port);
                if mode != MtlsMode::Strict {
                    continue;
                }
                let entry = failing.entry(port).or_insert_with(|| {
                    (
                        BTreeSet::new(),
                        Vec::new(),
                        from.unwrap_or_else(|| "mesh".to_string()),
                    )
                });
                entry.0.insert(kind);
                entry.1.push(format!("{}.{name}", c.name));
            }
        }
        if failing.is_empty() {
            continue;
        }
        sink.push(finding(
            snapshot, w, workload, &serving, failing, written_in, hooks,
        ));
    }
}

fn finding(
    snapshot: &Snapshot,
    w: usize,
    workload: &Workload,
    serving: &BTreeSet<i32>,
    failing: BTreeMap<i32, (BTreeSet<ProbeKind>, Vec<String>, String)>,
    written_in: bool,
    hooks_rewritten: bool,
) -> Result<Finding, crate::remediation::PlanError> {
    let pod_says_off = workload.annotation(keys::REWRITE_PROBES).is_some();
    let mut evidence = vec![if written_in {
        "istio-proxy is written into the pod template (istioctl kube-inject) and no injector \
         injects it again: probes are rewritten only when a pod is injected, so these stay as \
         written"
            .to_string()
    } else if pod_says_off {
        format!(
            "probe rewrite is off: pod annotation {}: \"false\"",
            keys::REWRITE_PROBES
        )
    } else {
        "probe rewrite is off mesh-wide (sidecarInjectorWebhook.rewriteAppHTTPProbe: false)"
            .to_string()
    }];
    let mut own_ports = BTreeSet::new();
    let mut shared = false;
    let mut serious = false;
    let mut any_hook = false;
    let mut any_probe = false;
    for (port, (kinds, probes, policy)) in &failing {
        serious |= kinds.iter().any(|k| k.keeps_pod_from_serving());
        any_hook |= kinds.iter().any(|k| k.hook());
        any_probe |= kinds.iter().any(|k| !k.hook());
        let mut effect = if kinds.iter().all(|k| *k == ProbeKind::Tcp) {
            "the proxy accepts the TCP connection itself, so the probe passes even when the app is down"
                .to_string()
        } else if kinds.iter().all(|k| k.hook()) {
            "the kubelet has no mesh certificate, so the hook's request fails the mTLS handshake"
                .to_string()
        } else if kinds.iter().any(|k| k.hook()) {
            "the kubelet has no mesh certificate, so the probe and the hook fail the mTLS handshake"
                .to_string()
        } else {
            "the kubelet has no mesh certificate, so the probe fails the mTLS handshake".to_string()
        };
        if kinds.contains(&ProbeKind::PostStartHook) {
            effect.push_str(
                "; a postStart hook that fails makes the kubelet kill the container, which \
                 restarts into the same failure",
            );
        }
        if kinds.contains(&ProbeKind::PreStopHook) {
            effect.push_str(
                "; a preStop hook that fails is given up with an event and the container \
                 stopped at once, without the app's own shutdown step (requests in flight when \
                 a pod goes get 503)",
            );
        }
        evidence.push(format!(
            "port {port}: {} — STRICT mTLS from {policy}; {effect}",
            probes.join(", ")
        ));
        if written_in {
            continue;
        }
        if serving.contains(port) {
            shared = true;
            evidence.push(format!(
                "port {port} also serves traffic: excluding it from capture would switch mTLS off for real requests, so probe rewrite is re-enabled instead"
            ));
        } else {
            own_ports.insert(port.to_string());
        }
    }
    let edits = if written_in {
        let port = status_port(workload);
        evidence.push(format!(
            "the fix writes the template as the injector does with probe rewrite on: each HTTP, \
             TCP and gRPC probe of the app containers goes to the agent on port {port} \
             (/app-health/<container>/livez, readyz, startupz){}, and {APP_PROBERS_ENV} on \
             istio-proxy gives the agent the probes as they were, which it sends to the app past \
             the sidecar",
            if hooks_rewritten && any_hook_for_the_agent(workload) {
                ", each HTTP and TCP lifecycle hook too (/app-lifecycle/<container>/prestopz, \
                 poststartz)"
            } else {
                ""
            }
        ));
        edits_in_template(workload, port, hooks_rewritten)
    } else {
        annotation_edits(workload, &own_ports, shared)
    };
    // A pod-template change rolls the workload's pods: always a proposal.
    let remediation = Remediation::patch_raw(workload.object_ref(), &workload.raw, edits, false)?;
    Ok(Finding {
        code: Code::MtlsProbeFailure,
        severity: if serious {
            Severity::Error
        } else {
            Severity::Warning
        },
        namespace: workload.meta.namespace.clone(),
        service: first_service(snapshot, w),
        services: Vec::new(),
        workload: Some(WorkloadRef::of(workload)),
        message: format!(
            "{} of {} {} hit STRICT-mTLS ports the sidecar captures (ports {}){}",
            match (any_probe, any_hook) {
                (true, true) => "probes and lifecycle hooks",
                (false, true) => "lifecycle hooks",
                _ => "probes",
            },
            workload.kind,
            workload.meta.name,
            joined_ports(failing.keys()),
            if written_in {
                ", not rewritten when its proxy was written into the template"
            } else {
                " with probe rewrite off"
            }
        ),
        evidence,
        remediation,
    })
}

/// The annotations the injector reads: the probe's own ports kept out of capture (merged with
/// the user's list, in its order), and probe rewrite on for a probe on a serving port.
fn annotation_edits(workload: &Workload, own_ports: &BTreeSet<String>, shared: bool) -> Vec<Edit> {
    let annotations = workload.annotations_pointer();
    let mut edits = Vec::new();
    if !own_ports.is_empty() {
        let written: Vec<String> = workload
            .annotation(keys::EXCLUDE_INBOUND_PORTS)
            .unwrap_or_default()
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        // Keep the user's order, then append the new ports.
        let mut value = written.clone();
        value.extend(own_ports.iter().filter(|p| !written.contains(p)).cloned());
        edits.push(Edit::at(
            &annotations,
            Some(keys::EXCLUDE_INBOUND_PORTS),
            json!(value.join(",")),
        ));
    }
    if shared {
        edits.push(Edit::at(
            &annotations,
            Some(keys::REWRITE_PROBES),
            json!("true"),
        ));
    }
    edits
}

/// The agent's port for the kubelet's probes: the pod's `status.sidecar.istio.io/port`, else
/// Istio's 15020.
fn status_port(workload: &Workload) -> i32 {
    workload
        .annotation("status.sidecar.istio.io/port")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(15020)
}

/// For a proxy written into the template (`istioctl kube-inject` output that no webhook injects
/// again): the annotations that turn probe rewrite on or keep a port out of capture act only
/// when a pod is injected (istio-init's iptables rules are in its arguments), so they would change
/// nothing while a re-analysis called the fix verified. The fix writes into the template what
/// the injector writes with probe rewrite on. Found by injecting microservices-demo with
/// `istioctl kube-inject` and probe rewrite off.
fn edits_in_template(workload: &Workload, port: i32, lifecycle_hooks: bool) -> Vec<Edit> {
    let mut edits = Vec::new();
    // A native sidecar is told the probes first, from the app containers as they are.
    if workload
        .pod_spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == crate::model::workload::PROXY_CONTAINER)
    {
        edits.push(Edit::rebuilt(
            &format!("{}/spec/initContainers", workload.template_pointer),
            Rebuild::AgentToldTheAppProbes {
                status_port: port,
                lifecycle_hooks,
            },
        ));
    }
    edits.push(Edit::rebuilt(
        &format!("{}/spec/containers", workload.template_pointer),
        Rebuild::AppProbesThroughTheAgent {
            status_port: port,
            lifecycle_hooks,
        },
    ));
    // A later injection of the template then rewrites its probes too.
    if workload
        .annotation(keys::REWRITE_PROBES)
        .is_some_and(|v| v.trim() == "false")
    {
        edits.push(Edit::at(
            &workload.annotations_pointer(),
            Some(keys::REWRITE_PROBES),
            json!("true"),
        ));
    }
    edits
}

#[cfg(test)]
mod tests;
