//! A Service as the analysis reads it.

use k8s_openapi::api::core::v1::ServicePort;

use super::Labels;

/// The parts of a Service's spec the analysis reads: the pods it selects and its ports. The
/// object is decoded (and so checked) whole as k8s-openapi's `Service`, then moved into this:
/// k8s-openapi's `ServiceSpec` is about 600 bytes, and its selector a `BTreeMap` that takes a
/// ~550-byte node for a single label (README, Benchmarks).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceSpec {
    pub selector: Option<Labels>,
    pub ports: Option<Vec<ServicePort>>,
    /// `type: LoadBalancer` or `NodePort`: clients outside the cluster reach its pods through
    /// it, with no sidecar of theirs on the way.
    pub external: bool,
}

impl From<k8s_openapi::api::core::v1::ServiceSpec> for ServiceSpec {
    fn from(spec: k8s_openapi::api::core::v1::ServiceSpec) -> ServiceSpec {
        ServiceSpec {
            selector: spec.selector.map(Labels::from),
            ports: spec.ports,
            external: matches!(spec.type_.as_deref(), Some("LoadBalancer" | "NodePort")),
        }
    }
}
