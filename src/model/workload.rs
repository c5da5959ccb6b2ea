//! A workload: anything with a pod template (or a bare Pod), seen the same way by every detector.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

use super::{Meta, ObjectRef};
use crate::error::Source;

#[derive(Clone, Debug)]
pub struct Workload {
    pub api_version: String,
    pub kind: String,
    pub meta: Meta,
    pub source: Source,
    /// The object as the user wrote it; patches are computed against this.
    pub raw: crate::snapshot::Raw,
    /// JSON pointer to the pod template in `raw` (`""` for a bare Pod).
    pub template_pointer: &'static str,
    pub pod_labels: BTreeMap<String, String>,
    pub pod_annotations: BTreeMap<String, String>,
    pub pod_spec: PodSpec,
    /// Labels that select exactly this workload's pods (the controller's `matchLabels`, or the
    /// pod's labels for a bare Pod).
    pub selector_labels: BTreeMap<String, String>,
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
                    m.labels.unwrap_or_default(),
                    m.annotations.unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        let selector_labels = match_labels.unwrap_or_else(|| pod_labels.clone());
        Workload {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            meta,
            source,
            raw,
            template_pointer,
            pod_labels,
            pod_annotations,
            pod_spec: template.spec.unwrap_or_default(),
            selector_labels,
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// Application containers (the injected proxy is not one of them).
    pub fn app_containers(&self) -> impl Iterator<Item = &Container> {
        self.pod_spec
            .containers
            .iter()
            .filter(|c| c.name != "istio-proxy")
    }

    pub fn proxy_container(&self) -> Option<&Container> {
        self.pod_spec
            .containers
            .iter()
            .chain(self.pod_spec.init_containers.iter().flatten())
            .find(|c| c.name == "istio-proxy")
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
