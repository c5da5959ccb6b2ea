//! `sidecar-lifecycle`: the proxy starts after, or stops before, the app, so requests fail with
//! 503 around every pod restart.
//!
//! Shutdown (severity warning): the app keeps serving after SIGTERM (a preStop hook, or a
//! graceful-shutdown setting) for longer than the proxy's `terminationDrainDuration` (5s by
//! default), and `EXIT_ON_ZERO_ACTIVE_CONNECTIONS` is not set. Startup (severity info, most apps
//! survive it): `holdApplicationUntilProxyStarts` is not on. Neither applies when the proxy runs
//! as a native sidecar, which Kubernetes starts first and stops last: the mesh profile decides
//! that per pod (istiod's `ENABLE_NATIVE_SIDECARS`, the kubelets, the pod annotation), and
//! gateways and ambient pods, which have no sidecar beside an app, are not checked. The fix merges the needed
//! keys into the pod template's `proxy.istio.io/config` annotation, keeping what is there; for a
//! proxy written into a template no webhook injects again, the startup part changes the
//! template as the injector would (see [`WrittenInProxy`]). It is never applied automatically
//! because it restarts pods.

use std::time::Duration;

use crate::model::workload::Container;
use serde_json::{Value, json};

use super::app_servers::{flag_value, words};
use super::{Code, Finding, Severity, Sink, WorkloadRef, first_service};
use crate::model::istio::ProxyConfig;
use crate::model::workload::{PROXY_CONTAINER as PROXY, Workload};
use crate::model::{duration, keys};
use crate::remediation::template::Rebuild;
use crate::remediation::{Edit, Remediation};
use crate::snapshot::Snapshot;

/// Istio's `terminationDrainDuration` default.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// Extra time the proposed drain gives the proxy beyond the app's shutdown.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// How long an app container keeps working after the pod is told to stop, and why.
pub fn app_shutdown(container: &Container, annotation: Option<&str>) -> Option<(Duration, String)> {
    let mut total = Duration::ZERO;
    let mut why = Vec::new();
    if let Some(pre_stop) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    {
        let sleep = pre_stop
            .sleep
            .as_ref()
            .map(|s| Duration::from_secs(s.seconds.max(0) as u64))
            .or_else(|| {
                let cmd = pre_stop.exec.as_ref()?.command.as_ref()?;
                let words: Vec<&str> = cmd.iter().flat_map(|c| c.split_whitespace()).collect();
                let at = words.iter().position(|w| *w == "sleep")?;
                words
                    .get(at + 1)?
                    .trim_end_matches(['s', ';', '&'])
                    .parse::<f64>()
                    .ok()
                    .map(Duration::from_secs_f64)
            });
        if let Some(sleep) = sleep {
            total += sleep;
            why.push(format!("preStop sleeps {}", duration::format(sleep)));
        }
    }
    let graceful = if let Some(value) = annotation.and_then(|v| duration::parse(v).ok()) {
        Some((
            value,
            format!("{} {}", keys::APP_SHUTDOWN_TIMEOUT, duration::format(value)),
        ))
    } else {
        let w = words(container);
        let secs = |v: &str| v.parse::<f64>().ok().map(Duration::from_secs_f64);
        flag_value(&w, &["--graceful-timeout"])
            .and_then(secs)
            .map(|d| {
                (
                    d,
                    format!("gunicorn --graceful-timeout {}", duration::format(d)),
                )
            })
            .or_else(|| {
                flag_value(&w, &["--timeout-graceful-shutdown"])
                    .and_then(secs)
                    .map(|d| {
                        (
                            d,
                            format!(
                                "uvicorn --timeout-graceful-shutdown {}",
                                duration::format(d)
                            ),
                        )
                    })
            })
            .or_else(|| spring_graceful(container))
    };
    if let Some((d, text)) = graceful {
        total += d;
        why.push(text);
    }
    (!why.is_empty()).then(|| (total, why.join(" + ")))
}

/// Spring Boot with `server.shutdown=graceful` waits `spring.lifecycle.timeout-per-shutdown-phase`
/// (30s by default) for requests in flight.
fn spring_graceful(container: &Container) -> Option<(Duration, String)> {
    let env = |n: &str| {
        container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    let w = words(container);
    let graceful = env("SERVER_SHUTDOWN").as_deref() == Some("graceful")
        || w.iter()
            .any(|a| a == "--server.shutdown=graceful" || a == "-Dserver.shutdown=graceful");
    if !graceful {
        return None;
    }
    let timeout = env("SPRING_LIFECYCLE_TIMEOUT_PER_SHUTDOWN_PHASE")
        .or_else(|| {
            flag_value(&w, &["--spring.lifecycle.timeout-per-shutdown-phase"]).map(str::to_string)
        })
        .and_then(|v| duration::parse(&v).ok())
        .unwrap_or(Duration::from_secs(30));
    Some((
        timeout,
        format!(
            "Spring Boot graceful shutdown {}",
            duration::format(timeout)
        ),
    ))
}

/// The proxy config a pod gets: mesh `defaultConfig`, overlaid by its annotation.
pub fn proxy_config(snapshot: &Snapshot, workload: &Workload) -> ProxyConfig {
    let mesh = snapshot.mesh.default_config.clone().unwrap_or_default();
    let pod: ProxyConfig = workload
        .annotation(keys::PROXY_CONFIG)
        // Read as the injector reads it (YAML 1.1, like kubectl): `holdApplicationUntilProxyStarts: yes`.
        .and_then(|v| crate::snapshot::yaml::from_str(v).ok())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    mesh.overlay(&pod)
}

fn exit_on_zero(config: &ProxyConfig, workload: &Workload) -> bool {
    let truthy = |v: &str| v.eq_ignore_ascii_case("true");
    config
        .proxy_metadata
        .get("EXIT_ON_ZERO_ACTIVE_CONNECTIONS")
        .is_some_and(|v| truthy(v))
        || workload.proxy_container().is_some_and(|c| {
            c.env.iter().flatten().any(|e| {
                e.name == "EXIT_ON_ZERO_ACTIVE_CONNECTIONS"
                    && e.value.as_deref().is_some_and(truthy)
            })
        })
}

/// The agent has `pilot-agent wait` and the injector a hold (mesh-wide, in its values) from
/// Istio 1.7; before, no app can be held and the startup race has no fix to write.
const WAIT_SINCE: (u32, u32) = (1, 7);

/// A pod's proxy config (`proxy.istio.io/config`) asks for the hold from Istio 1.8
/// (`.ProxyConfig.HoldApplicationUntilProxyStarts` in the injection template; 1.7 read only the
/// injector's values), so the annotation fix is written from 1.8 on.
const HOLD_IN_PROXY_CONFIG_SINCE: (u32, u32) = (1, 8);

pub fn detect(snapshot: &Snapshot, sink: &mut Sink) {
    for (w, workload) in snapshot.workloads.iter().enumerate() {
        if !sink.wants(&workload.meta.namespace) {
            continue;
        }
        // Only a sidecar beside an app races it; gateways and ambient pods have none. A native
        // sidecar starts before the app and stops after it (the profile says which one istiod
        // injects), so neither race exists.
        if snapshot.native_sidecar(workload) != Some(false) {
            continue;
        }
        let config = proxy_config(snapshot, workload);
        let drain = config
            .termination_drain_duration
            .map(|d| d.0)
            .unwrap_or(DEFAULT_DRAIN);
        let shutdown = workload
            .app_containers()
            .filter_map(|c| app_shutdown(c, workload.annotation(keys::APP_SHUTDOWN_TIMEOUT)))
            .max_by_key(|(d, _)| *d);
        let shutdown_problem = shutdown
            .as_ref()
            .filter(|(d, _)| *d > drain && !exit_on_zero(&config, workload));
        // The injection template holds the app when the proxy config or the injector's
        // `values.global.proxy.holdApplicationUntilProxyStarts` says so. A proxy written into
        // the template that no webhook injects again runs as written: only the template holds
        // the app.
        let written = written_in_proxy(snapshot, workload);
        let startup_problem = match &written {
            Some(proxy) => {
                !proxy.holds_the_app
                    && !proxy.other_post_start
                    && super::proxy_istio_at_least(snapshot, workload, true, WAIT_SINCE)
            }
            None => {
                config.hold_application_until_proxy_starts != Some(true)
                    && !snapshot.profile().hold_application_until_proxy_starts
                    && snapshot
                        .istio_version
                        .at_least(HOLD_IN_PROXY_CONFIG_SINCE.0, HOLD_IN_PROXY_CONFIG_SINCE.1)
            }
        };
        if shutdown_problem.is_none() && !startup_problem {
            continue;
        }
        let mut evidence = Vec::new();
        let mut keys_to_set: Vec<(&str, Value)> = Vec::new();
        if let Some((app, why)) = shutdown_problem {
            let proposed = Duration::from_secs((*app + DRAIN_MARGIN).as_secs());
            evidence.push(format!(
                "the app keeps working {} after the pod is stopped ({why}); the proxy drains for {} and exits first, so requests in flight answer 503",
                duration::format(*app),
                duration::format(drain)
            ));
            let grace = workload
                .pod_spec
                .termination_grace_period_seconds
                .unwrap_or(30);
            if Duration::from_secs(grace.max(0) as u64) < proposed {
                evidence.push(format!(
                    "terminationGracePeriodSeconds is {grace}s: raise it to at least {} too, or the kubelet kills both first",
                    proposed.as_secs()
                ));
            }
            keys_to_set.push((
                "terminationDrainDuration",
                json!(duration::format(proposed)),
            ));
        }
        let mut hold_in_template = false;
        if startup_problem && written.is_some() {
            let ns = &workload.meta.namespace;
            let why = if snapshot.namespaces.contains_key(ns) {
                format!("no injection webhook injects namespace {ns} again")
            } else {
                format!(
                    "namespace {ns} is not in the input, so no webhook is taken to inject it again (--assume-injected says otherwise)"
                )
            };
            evidence.push(format!(
                "istio-proxy is written into the pod template (istioctl kube-inject) and {why}: holdApplicationUntilProxyStarts in the proxy config takes effect only when the template is injected again, so the fix changes the template as the injector would: istio-proxy first among the containers, with a postStart hook `pilot-agent wait` (the kubelet starts the next container only when it returns)"
            ));
            hold_in_template = true;
        } else if startup_problem {
            evidence.push(
                "holdApplicationUntilProxyStarts is not set (pod annotation or mesh defaultConfig): the app can start, and call out, before its proxy is ready"
                    .to_string(),
            );
            keys_to_set.push(("holdApplicationUntilProxyStarts", json!(true)));
        }
        if let Some((_, why)) = snapshot.sidecar(workload) {
            evidence.push(format!("classic sidecar: {why}"));
        }
        sink.push(finding(
            snapshot,
            w,
            workload,
            shutdown_problem.is_some(),
            keys_to_set,
            hold_in_template,
            evidence,
        ));
    }
}

/// A proxy written into the template ([`super::proxy_written_into_template`]): settings the
/// injector reads (holdApplicationUntilProxyStarts orders the containers and adds the proxy's
/// postStart hook) change nothing until someone injects the template again; settings the proxy
/// reads when it starts (terminationDrainDuration, from the annotations the downward API
/// mounts) still apply.
struct WrittenInProxy {
    /// The proxy is the first container and its postStart hook waits for it to be ready.
    holds_the_app: bool,
    /// The proxy has a postStart hook of someone else's: meshmedic does not replace it.
    other_post_start: bool,
}

fn written_in_proxy(snapshot: &Snapshot, workload: &Workload) -> Option<WrittenInProxy> {
    if !super::proxy_written_into_template(snapshot, workload) {
        return None;
    }
    let containers = &workload.pod_spec.containers;
    let index = containers.iter().position(|c| c.name == PROXY)?;
    let post_start = containers[index]
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref());
    let waits = post_start
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|w| w.rsplit('/').next() == Some("pilot-agent"))
                && c.iter().any(|w| w == "wait")
        });
    Some(WrittenInProxy {
        holds_the_app: index == 0 && waits,
        other_post_start: post_start.is_some() && !waits,
    })
}

fn finding(
    snapshot: &Snapshot,
    w: usize,
    workload: &Workload,
    shutdown: bool,
    keys_to_set: Vec<(&str, Value)>,
    hold_in_template: bool,
    evidence: Vec<String>,
) -> Result<Finding, crate::remediation::PlanError> {
    let plan_error = |message: String| crate::remediation::PlanError {
        target: workload.object_ref().to_string(),
        message,
    };
    let mut edits = Vec::new();
    if !keys_to_set.is_empty() {
        // Keep every key the user wrote in the annotation; add or replace only ours.
        let mut config: Value = workload
            .annotation(keys::PROXY_CONFIG)
            .and_then(|v| crate::snapshot::yaml::from_str(v).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        for (k, v) in keys_to_set {
            config[k] = v;
        }
        let text = serde_saphyr::to_string(&config).map_err(|e| plan_error(e.to_string()))?;
        edits.push(Edit::at(
            &workload.annotations_pointer(),
            Some(keys::PROXY_CONFIG),
            json!(text),
        ));
    }
    if hold_in_template {
        // Rebuilt from the containers the fix is planned on, so it composes with a probe
        // rewrite of the same template (`mtls-probe-failure`) in either order.
        edits.push(Edit::rebuilt(
            &format!("{}/spec/containers", workload.template_pointer),
            Rebuild::ProxyFirstHoldingTheApp,
        ));
    }
    let remediation = Remediation::patch_raw(workload.object_ref(), &workload.raw, edits, false)?;
    Ok(Finding {
        code: Code::SidecarLifecycle,
        severity: if shutdown {
            Severity::Warning
        } else {
            Severity::Info
        },
        namespace: workload.meta.namespace.clone(),
        service: first_service(snapshot, w),
        services: Vec::new(),
        workload: Some(WorkloadRef::of(workload)),
        message: if shutdown {
            format!(
                "the proxy of {} {} exits before the app finishes: 503s at every pod restart",
                workload.kind, workload.meta.name
            )
        } else {
            format!(
                "{} {} may start before its proxy is ready",
                workload.kind, workload.meta.name
            )
        },
        evidence,
        remediation,
    })
}

#[cfg(test)]
mod tests;
