//! A workload: anything with a pod template (or a bare Pod), seen the same way by every detector.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerPort, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

use super::{Labels, Meta, ObjectRef};
use crate::error::Source;

/// The name Istio gives its proxy container, injected or written into a template.
pub const PROXY_CONTAINER: &str = "istio-proxy";

/// The parts of a pod spec the analysis reads. An object is decoded (and so checked) whole as
/// k8s-openapi's type, then moved into this and the rest dropped: k8s-openapi's `PodSpec` is
/// 1.5 KB and each `Container` 2.3 KB before any string, most of `analyze`'s and a full
/// pass's memory at 10k workloads (README, Benchmarks).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
    pub host_network: Option<bool>,
    pub termination_grace_period_seconds: Option<i64>,
    /// The pod's volumes, kept only for where a ConfigMap is mounted: an app server's config
    /// file in a ConfigMap replaces the defaults of its image (nginx's keepalive_timeout).
    pub volumes: Vec<Volume>,
}

/// A pod volume: its name, and the ConfigMap it projects, if it is a `configMap` volume.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Volume {
    pub name: String,
    pub config_map: Option<ConfigMapVolume>,
}

/// A `configMap` volume: which ConfigMap, and which of its keys under which file names
/// (`items`; every key under its own name when there are none).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMapVolume {
    pub name: String,
    pub items: Option<Vec<KeyToPath>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
}

/// Where a container mounts a volume.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
}

/// The parts of a container the analysis reads (see [`PodSpec`]). Probes and lifecycle hooks
/// are boxed: most containers have none or one of them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<EnvVar>>,
    pub ports: Option<Vec<ContainerPort>>,
    pub lifecycle: Option<Box<Lifecycle>>,
    pub readiness_probe: Option<Box<Probe>>,
    pub liveness_probe: Option<Box<Probe>>,
    pub startup_probe: Option<Box<Probe>>,
    /// `Always` on an init container: a native sidecar.
    pub restart_policy: Option<String>,
    pub volume_mounts: Vec<VolumeMount>,
}

/// The parts of a probe the analysis reads: the port it reaches, and how. k8s-openapi's `Probe`
/// is 328 bytes, and nearly every app container has one to three (README, Benchmarks).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Probe {
    pub http_get: Option<PortAction>,
    pub tcp_socket: Option<PortAction>,
    pub grpc: Option<GrpcAction>,
}

/// An `httpGet` or `tcpSocket` action: its port, a number or a container port's name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PortAction {
    pub port: IntOrString,
}

/// A `grpc` probe: its port (a number only).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GrpcAction {
    pub port: i32,
}

/// An environment variable: its name and literal value. What `valueFrom` names is not known
/// offline, and the analysis does not read it (k8s-openapi's `EnvVar`, with it, is 360 bytes a
/// variable; 48 here).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
}

/// A container's lifecycle hooks (k8s-openapi's `Lifecycle` is 488 bytes).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Lifecycle {
    pub post_start: Option<LifecycleHandler>,
    pub pre_stop: Option<LifecycleHandler>,
}

/// One hook: a command, an HTTP or TCP port, or a sleep.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LifecycleHandler {
    pub exec: Option<ExecAction>,
    pub http_get: Option<PortAction>,
    pub tcp_socket: Option<PortAction>,
    pub sleep: Option<SleepAction>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ExecAction {
    pub command: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SleepAction {
    pub seconds: i64,
}

impl From<k8s_openapi::api::core::v1::HTTPGetAction> for PortAction {
    fn from(a: k8s_openapi::api::core::v1::HTTPGetAction) -> PortAction {
        PortAction { port: a.port }
    }
}

impl From<k8s_openapi::api::core::v1::TCPSocketAction> for PortAction {
    fn from(a: k8s_openapi::api::core::v1::TCPSocketAction) -> PortAction {
        PortAction { port: a.port }
    }
}

impl From<k8s_openapi::api::core::v1::Probe> for Probe {
    fn from(p: k8s_openapi::api::core::v1::Probe) -> Probe {
        Probe {
            http_get: p.http_get.map(PortAction::from),
            tcp_socket: p.tcp_socket.map(PortAction::from),
            grpc: p.grpc.map(|a| GrpcAction { port: a.port }),
        }
    }
}

impl From<k8s_openapi::api::core::v1::LifecycleHandler> for LifecycleHandler {
    fn from(h: k8s_openapi::api::core::v1::LifecycleHandler) -> LifecycleHandler {
        LifecycleHandler {
            exec: h.exec.map(|e| ExecAction { command: e.command }),
            http_get: h.http_get.map(PortAction::from),
            tcp_socket: h.tcp_socket.map(PortAction::from),
            sleep: h.sleep.map(|s| SleepAction { seconds: s.seconds }),
        }
    }
}

impl From<k8s_openapi::api::core::v1::Lifecycle> for Lifecycle {
    fn from(l: k8s_openapi::api::core::v1::Lifecycle) -> Lifecycle {
        Lifecycle {
            post_start: l.post_start.map(LifecycleHandler::from),
            pre_stop: l.pre_stop.map(LifecycleHandler::from),
        }
    }
}

impl From<k8s_openapi::api::core::v1::Container> for Container {
    fn from(c: k8s_openapi::api::core::v1::Container) -> Container {
        Container {
            name: c.name,
            image: c.image,
            command: c.command,
            args: c.args,
            env: c.env.map(|list| {
                moved(list, |e| EnvVar {
                    name: e.name,
                    value: e.value,
                })
            }),
            ports: c.ports,
            lifecycle: c.lifecycle.map(|l| Box::new(Lifecycle::from(l))),
            readiness_probe: c.readiness_probe.map(|p| Box::new(Probe::from(p))),
            liveness_probe: c.liveness_probe.map(|p| Box::new(Probe::from(p))),
            startup_probe: c.startup_probe.map(|p| Box::new(Probe::from(p))),
            restart_policy: c.restart_policy,
            volume_mounts: moved(c.volume_mounts.unwrap_or_default(), |m| VolumeMount {
                name: m.name,
                mount_path: m.mount_path,
                sub_path: m.sub_path,
            }),
        }
    }
}

impl From<k8s_openapi::api::core::v1::PodSpec> for PodSpec {
    fn from(s: k8s_openapi::api::core::v1::PodSpec) -> PodSpec {
        let containers =
            |list: Vec<k8s_openapi::api::core::v1::Container>| moved(list, Container::from);
        PodSpec {
            containers: containers(s.containers),
            init_containers: s.init_containers.map(containers),
            host_network: s.host_network,
            termination_grace_period_seconds: s.termination_grace_period_seconds,
            volumes: config_map_volumes(s.volumes.unwrap_or_default()),
        }
    }
}

/// `list`'s items converted into a fresh vector, not by `collect()`: that reuses the source's
/// allocation in place and keeps all of it (2.3 KB a k8s-openapi container, 360 bytes an
/// environment variable) for much smaller items.
fn moved<T, U>(list: Vec<T>, convert: impl FnMut(T) -> U) -> Vec<U> {
    let mut out = Vec::with_capacity(list.len());
    out.extend(list.into_iter().map(convert));
    out
}

/// The pod's `configMap` volumes (see [`PodSpec::volumes`]), in a fresh vector as in
/// [`moved`].
fn config_map_volumes(volumes: Vec<k8s_openapi::api::core::v1::Volume>) -> Vec<Volume> {
    let mut out = Vec::new();
    out.extend(volumes.into_iter().filter_map(|v| {
        let config_map = v.config_map?;
        Some(Volume {
            name: v.name,
            config_map: Some(ConfigMapVolume {
                name: config_map.name,
                items: config_map.items.map(|items| {
                    moved(items, |i| KeyToPath {
                        key: i.key,
                        path: i.path,
                    })
                }),
            }),
        })
    }));
    out
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub api_version: super::TypeName,
    pub kind: super::TypeName,
    pub meta: Meta,
    pub source: Source,
    /// The object as the user wrote it; patches are computed against this.
    pub raw: crate::snapshot::Raw,
    /// JSON pointer to the pod template in `raw` (`""` for a bare Pod).
    pub template_pointer: &'static str,
    pub pod_labels: Labels,
    pub pod_annotations: Labels,
    pub pod_spec: PodSpec,
    /// Labels that select exactly this workload's pods (the controller's `matchLabels`, or the
    /// pod's labels for a bare Pod).
    pub selector_labels: Labels,
}

impl Workload {
    #[allow(clippy::too_many_arguments)]
    pub fn from_template(
        api_version: &str,
        kind: &str,
        meta: Meta,
        source: Source,
        raw: crate::snapshot::Raw,
        template_pointer: &'static str,
        template: PodTemplateSpec,
        match_labels: Option<BTreeMap<String, String>>,
    ) -> Workload {
        // Moved, not cloned: the template is the largest part of a decoded workload.
        let (pod_labels, pod_annotations) = template
            .metadata
            .map(|m| {
                (
                    m.labels.map(Labels::from).unwrap_or_default(),
                    m.annotations.map(Labels::from).unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        let selector_labels = match_labels
            .map(Labels::from)
            .unwrap_or_else(|| pod_labels.clone());
        Workload {
            api_version: super::type_name(api_version),
            kind: super::type_name(kind),
            meta,
            source,
            raw,
            template_pointer,
            pod_labels,
            pod_annotations,
            pod_spec: template.spec.map(PodSpec::from).unwrap_or_default(),
            selector_labels,
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version.to_string(),
            kind: self.kind.to_string(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// Application containers (the injected proxy is not one of them).
    pub fn app_containers(&self) -> impl Iterator<Item = &Container> {
        self.pod_spec
            .containers
            .iter()
            .filter(|c| c.name != PROXY_CONTAINER)
    }

    pub fn proxy_container(&self) -> Option<&Container> {
        self.pod_spec
            .containers
            .iter()
            .chain(self.pod_spec.init_containers.iter().flatten())
            .find(|c| c.name == PROXY_CONTAINER)
    }

    /// The pod-template annotation a user set, if any.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.pod_annotations.get(key)
    }

    /// JSON pointer to the pod template's annotations in `raw`.
    pub fn annotations_pointer(&self) -> String {
        format!("{}/metadata/annotations", self.template_pointer)
    }

    /// A container port by number or by name.
    pub fn resolve_port(&self, port: &IntOrString) -> Option<i32> {
        match port {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(name) => {
                if let Ok(n) = name.parse::<i32>() {
                    return Some(n);
                }
                self.pod_spec
                    .containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port)
            }
        }
    }
}
