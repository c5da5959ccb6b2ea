//! A workload: anything with a pod template (or a bare Pod), seen the same way by every detector.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, Lifecycle, PodTemplateSpec, Probe};
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

impl From<k8s_openapi::api::core::v1::Container> for Container {
    fn from(c: k8s_openapi::api::core::v1::Container) -> Container {
        Container {
            name: c.name,
            image: c.image,
            command: c.command,
            args: c.args,
            env: c.env,
            ports: c.ports,
            lifecycle: c.lifecycle.map(Box::new),
            readiness_probe: c.readiness_probe.map(Box::new),
            liveness_probe: c.liveness_probe.map(Box::new),
            startup_probe: c.startup_probe.map(Box::new),
            restart_policy: c.restart_policy,
            volume_mounts: c
                .volume_mounts
                .unwrap_or_default()
                .into_iter()
                .map(|m| VolumeMount {
                    name: m.name,
                    mount_path: m.mount_path,
                    sub_path: m.sub_path,
                })
                .collect(),
        }
    }
}

impl From<k8s_openapi::api::core::v1::PodSpec> for PodSpec {
    fn from(s: k8s_openapi::api::core::v1::PodSpec) -> PodSpec {
        // A fresh vector, not `collect()`: that would reuse the source's allocation (2.3 KB a
        // container) in place and keep all of it for 200-byte items.
        let containers = |list: Vec<k8s_openapi::api::core::v1::Container>| {
            let mut out = Vec::with_capacity(list.len());
            out.extend(list.into_iter().map(Container::from));
            out
        };
        PodSpec {
            containers: containers(s.containers),
            init_containers: s.init_containers.map(containers),
            host_network: s.host_network,
            termination_grace_period_seconds: s.termination_grace_period_seconds,
            volumes: s
                .volumes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| {
                    let config_map = v.config_map?;
                    Some(Volume {
                        name: v.name,
                        config_map: Some(ConfigMapVolume {
                            name: config_map.name,
                            items: config_map.items.map(|items| {
                                items
                                    .into_iter()
                                    .map(|i| KeyToPath {
                                        key: i.key,
                                        path: i.path,
                                    })
                                    .collect()
                            }),
                        }),
                    })
                })
                .collect(),
        }
    }
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
        self.pod_annotations.get(key).map(String::as_str)
    }

    /// JSON pointer to the pod template's annotations in `raw`.
    pub fn annotations_pointer(&self) -> String {
        format!("{}/metadata/annotations", self.template_pointer)
    }

    /// A container port by number or by name.
    pub fn resolve_port(
        &self,
        port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    ) -> Option<i32> {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
