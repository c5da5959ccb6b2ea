//! The cluster as the analysis sees it: typed objects with their raw form, and indexes from a
//! service host to the rules and workloads that shape its traffic. Built from files (`load`) or
//! from the controller's reflector stores; the analysis cannot tell the two apart.

pub mod build;
pub mod cluster;
pub mod hosts;
pub mod injection;
pub mod load;
pub mod lookup;
pub mod profile;
pub mod raw;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::ServiceSpec;
use serde_json::Value;

use crate::error::Source;
use crate::model::istio::{
    DestinationRuleSpec, EnvoyFilterSpec, MeshConfig, PeerAuthenticationSpec, SidecarSpec,
    TelemetrySpec, VirtualServiceSpec,
};
use crate::model::workload::Workload;
use crate::model::{Meta, ObjectRef};

pub use build::SnapshotBuilder;
pub use injection::Dataplane;
pub use profile::MeshProfile;
pub use raw::Raw;

/// One object: where it came from, what the user wrote, and the typed view of it.
#[derive(Clone, Debug)]
pub struct Obj<T> {
    pub api_version: String,
    pub kind: String,
    pub meta: Meta,
    pub source: Source,
    /// The object as the user wrote it (read from its text on first use).
    pub raw: Raw,
    pub spec: T,
}

impl<T> Obj<T> {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// `Kind namespace/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.meta.namespace, self.meta.name)
    }
}

/// Istio's version decides defaults (the retry policy changed in 1.24).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IstioVersion {
    pub major: u32,
    pub minor: u32,
    /// Where it came from: `flag`, `istiod image <image>`, or `assumed (newest known)`.
    pub source: String,
}

impl IstioVersion {
    /// The newest Istio minor release meshmedic knows the defaults of.
    pub const NEWEST: (u32, u32) = (1, 31);

    pub fn assumed() -> IstioVersion {
        IstioVersion {
            major: Self::NEWEST.0,
            minor: Self::NEWEST.1,
            source: "assumed (newest known)".to_string(),
        }
    }

    /// Parses `1.24`, `1.24.2`, `1.24.2-distroless`, `v1.22.6.46-g...`.
    pub fn parse(text: &str, source: &str) -> Option<IstioVersion> {
        let text = text.trim().trim_start_matches('v');
        let mut parts = text.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(IstioVersion {
            major,
            minor,
            source: source.to_string(),
        })
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}, {}", self.major, self.minor, self.source)
    }
}

/// Settings that do not come from objects.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    pub cluster_domain: String,
    /// `--istio-version`; wins over the istiod image.
    pub istio_version: Option<String>,
    /// `--mesh-config`; wins over an `istio` ConfigMap in the input.
    pub mesh_config: Option<(Source, MeshConfig)>,
    /// `--kubernetes-version`: the oldest kubelet; wins over Node objects.
    pub kubernetes_version: Option<String>,
    /// `--assume-injected`: namespaces absent from the input are `istio-injection=enabled`.
    pub assume_injected: bool,
    /// `--profile FILE`, parsed: wins over the input, loses to the flags.
    pub profile: Option<profile::ProfileFile>,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            cluster_domain: "cluster.local".to_string(),
            istio_version: None,
            mesh_config: None,
            kubernetes_version: None,
            assume_injected: false,
            profile: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub cluster_domain: String,
    pub namespaces: BTreeMap<String, Meta>,
    pub services: Vec<Obj<ServiceSpec>>,
    pub workloads: Vec<Workload>,
    pub destination_rules: Vec<Obj<DestinationRuleSpec>>,
    pub virtual_services: Vec<Obj<VirtualServiceSpec>>,
    pub sidecars: Vec<Obj<SidecarSpec>>,
    pub peer_authentications: Vec<Obj<PeerAuthenticationSpec>>,
    pub envoy_filters: Vec<Obj<EnvoyFilterSpec>>,
    pub telemetries: Vec<Obj<TelemetrySpec>>,
    pub mesh: MeshConfig,
    /// Where the mesh config came from, if anywhere.
    pub mesh_source: Option<Source>,
    /// Mesh-wide probe rewrite (`sidecarInjectorWebhook.rewriteAppHTTPProbe`), on by default.
    pub rewrite_probes_by_default: bool,
    /// The default revision's Istio version (the same as `profile.istio`).
    pub istio_version: IstioVersion,
    /// Which Istio and Kubernetes the analysis assumes, and where each fact came from.
    pub profile: MeshProfile,
    /// Documents of kinds meshmedic does not read, counted by `apiVersion/kind`.
    pub skipped: BTreeMap<String, usize>,
    /// Index: for each service, the workloads its selector picks.
    pub(crate) service_workloads: Vec<Vec<usize>>,
    /// Index: for each workload, the services that select it.
    pub(crate) workload_services: Vec<Vec<usize>>,
    /// Index: rule objects by namespace, so lookups touch one namespace at a time.
    pub(crate) by_namespace: BTreeMap<String, NamespaceIndex>,
    /// Index: (kind, namespace, name) → position in that kind's list.
    pub(crate) objects: HashMap<(String, String, String), usize>,
    /// Index: resolved host → VirtualServices / DestinationRules naming it exactly; wildcard
    /// hosts are kept apart and always checked.
    pub(crate) rules_by_host: HostIndex,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct HostIndex {
    pub virtual_services: HashMap<String, Vec<usize>>,
    pub virtual_services_wildcard: Vec<usize>,
    pub destination_rules: HashMap<String, Vec<usize>>,
    pub destination_rules_wildcard: Vec<usize>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct NamespaceIndex {
    pub destination_rules: Vec<usize>,
    pub virtual_services: Vec<usize>,
    pub sidecars: Vec<usize>,
    pub peer_authentications: Vec<usize>,
}

impl Snapshot {
    /// The mesh profile detectors read (versions, native sidecars, injector settings).
    pub fn profile(&self) -> &MeshProfile {
        &self.profile
    }

    pub fn root_namespace(&self) -> &str {
        self.mesh
            .root_namespace
            .as_deref()
            .unwrap_or("istio-system")
    }

    pub fn service_host(&self, service: &Obj<ServiceSpec>) -> String {
        hosts::service_fqdn(
            &service.meta.name,
            &service.meta.namespace,
            &self.cluster_domain,
        )
    }

    pub fn workloads_of(&self, service: usize) -> impl Iterator<Item = &Workload> {
        self.service_workloads[service]
            .iter()
            .map(|&w| &self.workloads[w])
    }

    pub fn services_of(&self, workload: usize) -> impl Iterator<Item = (usize, &Obj<ServiceSpec>)> {
        self.workload_services[workload]
            .iter()
            .map(|&s| (s, &self.services[s]))
    }

    /// The raw object a remediation targets, if it is in the snapshot.
    pub fn raw_object(&self, target: &ObjectRef) -> Option<&Value> {
        self.raw_of(target).map(Raw::value)
    }

    /// [`Snapshot::raw_object`], owned and not kept ([`Raw::to_value`]): for a fix that copies
    /// its target.
    pub fn raw_object_owned(&self, target: &ObjectRef) -> Option<Value> {
        self.raw_of(target).map(Raw::to_value)
    }

    fn raw_of(&self, target: &ObjectRef) -> Option<&Raw> {
        let key = (
            target.kind.clone(),
            target.namespace.clone(),
            target.name.clone(),
        );
        let &i = self.objects.get(&key)?;
        Some(match target.kind.as_str() {
            "DestinationRule" => &self.destination_rules[i].raw,
            "VirtualService" => &self.virtual_services[i].raw,
            "Sidecar" => &self.sidecars[i].raw,
            "PeerAuthentication" => &self.peer_authentications[i].raw,
            "EnvoyFilter" => &self.envoy_filters[i].raw,
            "Telemetry" => &self.telemetries[i].raw,
            "Service" => &self.services[i].raw,
            _ => &self.workloads[i].raw,
        })
    }

    /// A workload by kind, namespace and name.
    pub fn workload(&self, kind: &str, namespace: &str, name: &str) -> Option<&Workload> {
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        self.objects.get(&key).map(|&i| &self.workloads[i])
    }

    /// A Service's position by namespace and name.
    pub fn service_index(&self, namespace: &str, name: &str) -> Option<usize> {
        let key = (
            "Service".to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        self.objects.get(&key).copied()
    }

    /// DestinationRules whose host (resolved in their namespace) may match `host`.
    pub fn destination_rules_naming(&self, host: &str) -> impl Iterator<Item = usize> + '_ {
        self.rules_by_host
            .destination_rules
            .get(host)
            .into_iter()
            .flatten()
            .chain(&self.rules_by_host.destination_rules_wildcard)
            .copied()
    }
}
