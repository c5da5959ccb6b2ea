//! The cluster as the analysis sees it: typed objects with their raw form, and indexes from a
//! service host to the rules and workloads that shape its traffic. Built from files (`load`) or
//! from the controller's reflector stores; the analysis cannot tell the two apart.

pub mod app_config;
pub mod build;
pub mod cluster;
pub mod flagger;
pub mod hosts;
pub mod injection;
pub mod install;
pub mod load;
pub mod lookup;
pub mod profile;
pub mod raw;
pub mod yaml;

use std::collections::BTreeMap;

// foldhash, not std's SipHash: these are hashed once per object and per lookup, and hold no
// attacker-chosen keys an in-process run would need to defend against.
use hashbrown::HashMap;

use serde_json::Value;

use crate::error::Source;
use crate::model::istio::{
    DestinationRuleSpec, EnvoyFilterSpec, MeshConfig, PeerAuthenticationSpec, SidecarSpec,
    TelemetrySpec, VirtualServiceSpec,
};
use crate::model::service::ServiceSpec;
use crate::model::workload::Workload;
use crate::model::{Meta, ObjectRef};

pub use build::SnapshotBuilder;
pub use injection::Dataplane;
pub use profile::MeshProfile;
pub use raw::Raw;

/// One object: where it came from, what the user wrote, and the typed view of it.
#[derive(Clone, Debug)]
pub struct Obj<T> {
    pub api_version: crate::model::TypeName,
    pub kind: crate::model::TypeName,
    pub meta: Meta,
    pub source: Source,
    /// The object as the user wrote it (read from its text on first use).
    pub raw: Raw,
    pub spec: T,
}

impl<T> Obj<T> {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version.to_string(),
            kind: self.kind.to_string(),
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

    /// The version in an image's tag: `docker.io/istio/pilot:1.28.1`,
    /// `gcr.io/istio-release/proxyv2:1.28.1-distroless`; none for a digest
    /// (`...@sha256:...`) or no tag. `source` is told the image without its digest.
    pub fn of_image(image: &str, source: impl FnOnce(&str) -> String) -> Option<IstioVersion> {
        let image = image.split('@').next().unwrap_or(image);
        let tag = image.rsplit_once(':')?.1;
        if tag.contains('/') {
            return None;
        }
        IstioVersion::parse(tag, &source(image))
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

/// The objects of each kind are boxed: each is decoded on the thread that parsed it into a box
/// of its own, kept as it is. A list of the objects themselves was one more copy of them all,
/// in large blocks of fresh memory (15 MB at 10,000 services; README, Benchmarks).
#[allow(clippy::vec_box)]
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub cluster_domain: String,
    pub namespaces: BTreeMap<String, Meta>,
    pub services: Vec<Box<Obj<ServiceSpec>>>,
    pub workloads: Vec<Box<Workload>>,
    pub destination_rules: Vec<Box<Obj<DestinationRuleSpec>>>,
    pub virtual_services: Vec<Box<Obj<VirtualServiceSpec>>>,
    pub sidecars: Vec<Box<Obj<SidecarSpec>>>,
    pub peer_authentications: Vec<Box<Obj<PeerAuthenticationSpec>>>,
    pub envoy_filters: Vec<Box<Obj<EnvoyFilterSpec>>>,
    pub telemetries: Vec<Box<Obj<TelemetrySpec>>>,
    /// Gateway API HTTPRoutes (see [`crate::model::gateway_api`]).
    pub http_routes: Vec<Box<Obj<crate::model::gateway_api::HttpRouteSpec>>>,
    /// Flagger Canaries routed with Istio (see [`flagger`]).
    pub canaries: Vec<Box<Obj<crate::model::flagger::CanarySpec>>>,
    /// The objects Flagger writes for those Canaries, which the input does not hold:
    /// (kind, namespace, name) → the Canary's name (same namespace).
    pub(crate) generated: HashMap<(&'static str, String, String), String>,
    /// Index: Service (namespace, name) → the HTTPRoutes attached to it for mesh traffic.
    pub(crate) mesh_route_parents: HashMap<(String, String), Vec<usize>>,
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
    /// ConfigMaps other than Istio's, as far as an app server's configuration in them is read
    /// (nginx's `keepalive_timeout`). The operator reads none (its RBAC grants no application
    /// ConfigMap), so there an app whose server config is mounted from one is not judged.
    pub config_maps: app_config::AppConfigMaps,
    /// Index: for each service, the workloads its selector picks.
    pub(crate) service_workloads: Vec<Vec<usize>>,
    /// Index: for each workload, the services that select it.
    pub(crate) workload_services: Vec<Vec<usize>>,
    /// Index: rule objects by namespace, so lookups touch one namespace at a time.
    pub(crate) by_namespace: BTreeMap<String, NamespaceIndex>,
    /// Index: (kind, namespace, name) → position in that kind's list.
    pub(crate) objects: ObjectIndex,
    /// Index: resolved host → VirtualServices / DestinationRules naming it exactly; wildcard
    /// hosts are kept apart and always checked.
    pub(crate) rules_by_host: HostIndex,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct HostIndex {
    pub virtual_services: HashMap<String, Vec<usize>>,
    pub virtual_services_wildcard: Vec<usize>,
    /// VirtualServices bound to gateways only, by the hosts their HTTP routes send requests to.
    pub gateway_routes_to: HashMap<String, Vec<usize>>,
    /// For each of those (by position): per HTTP route, the hosts it sends requests to.
    pub gateway_route_hosts: HashMap<usize, Vec<Vec<String>>>,
    pub destination_rules: HashMap<String, Vec<usize>>,
    pub destination_rules_wildcard: Vec<usize>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct NamespaceIndex {
    pub destination_rules: Vec<usize>,
    pub virtual_services: Vec<usize>,
    pub sidecars: Vec<usize>,
    /// The same Sidecars, and the namespace's PeerAuthentications, by their workload selectors.
    pub sidecar_selectors: SelectorIndex,
    pub peer_authentication_selectors: SelectorIndex,
}

/// Objects of one kind in one namespace by their workload selector, so that finding the ones
/// that pick a workload does not try every object of a namespace for every workload: a Sidecar
/// or a PeerAuthentication per workload is a common pattern, and 10,000 of each in one namespace
/// took 1.6 s instead of 0.4 s (README, Benchmarks).
#[derive(Clone, Debug, Default)]
pub(crate) struct SelectorIndex {
    /// Objects whose selector has labels, by the first of them (key, then value): a selector
    /// picks a workload only if the workload carries that label.
    first_label: HashMap<String, HashMap<String, Vec<usize>>>,
    /// Objects with a selector without labels.
    empty: Vec<usize>,
    /// Objects without a selector.
    none: Vec<usize>,
}

impl SelectorIndex {
    /// Adds the object at position `i` (positions are added in increasing order).
    pub fn add(&mut self, i: usize, selector: Option<&crate::model::Labels>) {
        match selector.and_then(|s| s.iter().next()) {
            Some((k, v)) => self
                .first_label
                .entry(k.to_string())
                .or_default()
                .entry(v.to_string())
                .or_default()
                .push(i),
            None if selector.is_some() => self.empty.push(i),
            None => self.none.push(i),
        }
    }

    /// In increasing position: the objects with a selector that may pick a workload with
    /// these labels (every one that does is among them; the caller checks the whole selector).
    pub fn may_select(&self, labels: &crate::model::Labels) -> Vec<usize> {
        let mut out = self.empty.clone();
        for (k, v) in labels.iter() {
            if let Some(list) = self.first_label.get(k).and_then(|by_value| by_value.get(v)) {
                out.extend_from_slice(list);
            }
        }
        out.sort_unstable();
        out
    }

    /// In increasing position: the objects without a selector or with one without labels.
    pub fn without_labels(&self) -> Vec<usize> {
        let mut out = [self.none.as_slice(), self.empty.as_slice()].concat();
        out.sort_unstable();
        out
    }
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
            .map(|&w| &*self.workloads[w])
    }

    pub fn services_of(&self, workload: usize) -> impl Iterator<Item = (usize, &Obj<ServiceSpec>)> {
        self.workload_services[workload]
            .iter()
            .map(|&s| (s, &*self.services[s]))
    }

    /// The raw object a remediation targets, if it is in the snapshot.
    pub fn raw_object(&self, target: &ObjectRef) -> Option<&Value> {
        self.raw_of(target).map(Raw::value)
    }

    /// The raw form of the object `target` names, as the snapshot keeps it.
    pub fn raw_of(&self, target: &ObjectRef) -> Option<&Raw> {
        self.object(target).map(|o| o.raw)
    }

    /// The object `target` names, whatever its kind's list.
    pub(crate) fn object(&self, target: &ObjectRef) -> Option<ObjectParts<'_>> {
        let i = self.object_position(&target.kind, &target.namespace, &target.name)?;
        self.parts_at(Slot::of(&target.kind), i)
    }

    /// A workload by kind, namespace and name.
    pub fn workload(&self, kind: &str, namespace: &str, name: &str) -> Option<&Workload> {
        self.object_position(kind, namespace, name)
            .and_then(|i| self.workloads.get(i))
            .map(|w| &**w)
    }

    /// A Service's position by namespace and name.
    pub fn service_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.object_position("Service", namespace, name)
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

/// Index: objects by (kind, namespace, name), without a copy of the three strings (120,000
/// allocations at 10,000 services, and three more for every lookup): positions hashed by the
/// three, compared with the object itself. The first object of a key is kept.
#[derive(Clone, Default)]
pub(crate) struct ObjectIndex {
    table: hashbrown::HashTable<(Slot, usize)>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl std::fmt::Debug for ObjectIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectIndex({} objects)", self.table.len())
    }
}

/// Which list of the snapshot a position is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Service,
    DestinationRule,
    VirtualService,
    Sidecar,
    PeerAuthentication,
    EnvoyFilter,
    Telemetry,
    Canary,
    Workload,
}

impl Slot {
    fn of(kind: &str) -> Slot {
        match kind {
            "Service" => Slot::Service,
            "DestinationRule" => Slot::DestinationRule,
            "VirtualService" => Slot::VirtualService,
            "Sidecar" => Slot::Sidecar,
            "PeerAuthentication" => Slot::PeerAuthentication,
            "EnvoyFilter" => Slot::EnvoyFilter,
            "Telemetry" => Slot::Telemetry,
            "Canary" => Slot::Canary,
            _ => Slot::Workload,
        }
    }
}

/// What every object of a snapshot has, whichever list it is in.
pub(crate) struct ObjectParts<'a> {
    pub kind: &'a str,
    pub meta: &'a Meta,
    pub source: &'a Source,
    pub raw: &'a Raw,
}

impl Snapshot {
    /// The object at `i` of a list.
    fn parts_at(&self, slot: Slot, i: usize) -> Option<ObjectParts<'_>> {
        fn parts<T>(o: &Obj<T>) -> ObjectParts<'_> {
            ObjectParts {
                kind: &o.kind,
                meta: &o.meta,
                source: &o.source,
                raw: &o.raw,
            }
        }
        Some(match slot {
            Slot::Service => parts(self.services.get(i)?),
            Slot::DestinationRule => parts(self.destination_rules.get(i)?),
            Slot::VirtualService => parts(self.virtual_services.get(i)?),
            Slot::Sidecar => parts(self.sidecars.get(i)?),
            Slot::PeerAuthentication => parts(self.peer_authentications.get(i)?),
            Slot::EnvoyFilter => parts(self.envoy_filters.get(i)?),
            Slot::Telemetry => parts(self.telemetries.get(i)?),
            Slot::Canary => parts(self.canaries.get(i)?),
            Slot::Workload => {
                let w = self.workloads.get(i)?;
                ObjectParts {
                    kind: &w.kind,
                    meta: &w.meta,
                    source: &w.source,
                    raw: &w.raw,
                }
            }
        })
    }

    /// The (kind, namespace, name) of the object at `i` of a list.
    fn key_at(&self, slot: Slot, i: usize) -> Option<(&str, &str, &str)> {
        self.parts_at(slot, i)
            .map(|o| (o.kind, o.meta.namespace.as_str(), o.meta.name.as_str()))
    }

    /// Indexes every object, the lists in the order a lookup prefers them.
    fn index_objects(&self) -> ObjectIndex {
        let mut index = ObjectIndex::default();
        let lists = [
            (Slot::Service, self.services.len()),
            (Slot::DestinationRule, self.destination_rules.len()),
            (Slot::VirtualService, self.virtual_services.len()),
            (Slot::Sidecar, self.sidecars.len()),
            (Slot::PeerAuthentication, self.peer_authentications.len()),
            (Slot::EnvoyFilter, self.envoy_filters.len()),
            (Slot::Telemetry, self.telemetries.len()),
            (Slot::Canary, self.canaries.len()),
            (Slot::Workload, self.workloads.len()),
        ];
        index
            .table
            .reserve(lists.iter().map(|(_, n)| n).sum(), |_| 0);
        let hasher = index.hasher.clone();
        let hash = |slot: Slot, i: usize| {
            self.key_at(slot, i)
                .map_or(0, |key| std::hash::BuildHasher::hash_one(&hasher, key))
        };
        for (slot, len) in lists {
            for i in 0..len {
                let Some(key) = self.key_at(slot, i) else {
                    continue;
                };
                let h = std::hash::BuildHasher::hash_one(&hasher, key);
                let same = |&(s, j): &(Slot, usize)| s == slot && self.key_at(s, j) == Some(key);
                if index.table.find(h, same).is_none() {
                    index
                        .table
                        .insert_unique(h, (slot, i), |&(s, j)| hash(s, j));
                }
            }
        }
        index
    }

    /// Whether work over this snapshot is worth splitting across two cores: at least 2,000
    /// Services and workloads, on a machine with two. Small ones (the operator's passes over a
    /// few namespaces) stay on one.
    pub(crate) fn worth_two_cores(services: usize, workloads: usize) -> bool {
        services + workloads >= 2_000 && load::worker_threads() > 1
    }

    /// The position of an object in its kind's list (workloads: any workload kind).
    pub(crate) fn object_position(&self, kind: &str, namespace: &str, name: &str) -> Option<usize> {
        let slot = Slot::of(kind);
        let key = (kind, namespace, name);
        let h = std::hash::BuildHasher::hash_one(&self.objects.hasher, key);
        self.objects
            .table
            .find(h, |&(s, i)| s == slot && self.key_at(s, i) == Some(key))
            .map(|&(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::SelectorIndex;
    use crate::analysis::test_support::snapshot;
    use crate::model::{Labels, selects};

    fn labels_from(pairs: &[(u8, u8)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("k{k}"), format!("v{v}")))
            .collect()
    }

    proptest! {
        /// The index's candidates, in order, hold every object whose selector picks the labels,
        /// and the ones without labels are exactly those: the lookups that use it find what a
        /// scan of the whole namespace found.
        #[test]
        fn the_selector_index_misses_no_object_that_selects(
            selectors in proptest::collection::vec(
                proptest::option::of(proptest::collection::vec((0u8..4, 0u8..3), 0..3)),
                0..12,
            ),
            pod in proptest::collection::vec((0u8..4, 0u8..3), 0..4),
        ) {
            let selectors: Vec<Option<Labels>> = selectors
                .iter()
                .map(|s| s.as_deref().map(|s| Labels::from(labels_from(s))))
                .collect();
            let mut index = SelectorIndex::default();
            for (i, s) in selectors.iter().enumerate() {
                index.add(i, s.as_ref());
            }
            let pod = Labels::from(labels_from(&pod));
            let candidates = index.may_select(&pod);
            prop_assert!(candidates.is_sorted());
            let selecting: Vec<usize> = (0..selectors.len())
                .filter(|&i| selectors[i].as_ref().is_some_and(|s| selects(s, &pod)))
                .collect();
            let kept: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| selectors[i].as_ref().is_some_and(|s| selects(s, &pod)))
                .collect();
            prop_assert_eq!(kept, selecting);
            let without: Vec<usize> = (0..selectors.len())
                .filter(|&i| selectors[i].as_ref().is_none_or(Labels::is_empty))
                .collect();
            prop_assert_eq!(index.without_labels(), without);
        }
    }

    /// Through the index, the first Sidecar (in the snapshot's order) whose selector picks the
    /// workload wins even when another one, read later, is found through a different label; a
    /// PeerAuthentication selecting the workload wins over the namespace's.
    #[test]
    fn the_first_selecting_sidecar_and_policy_are_found_through_the_index() {
        let s = snapshot(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: a}\n\
             spec: {selector: {matchLabels: {app: api}}, template: {metadata: {labels: {app: api, tier: back}}, spec: {containers: [{name: c, image: x}]}}}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: a-default, namespace: a}\nspec: {}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: by-tier, namespace: a}\nspec: {workloadSelector: {labels: {tier: back}}}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: z-by-app, namespace: a}\nspec: {workloadSelector: {labels: {app: api}}}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: other, namespace: a}\nspec: {workloadSelector: {labels: {app: web}}}\n\
             ---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: a}\nspec: {mtls: {mode: STRICT}}\n\
             ---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: api, namespace: a}\nspec: {selector: {matchLabels: {tier: back}}, mtls: {mode: PERMISSIVE}}\n",
        );
        let api = s.workload("Deployment", "a", "api").expect("workload");
        let (_, sidecar) = s.sidecar_for(api).expect("sidecar");
        // Objects are ordered by name: `by-tier` is first, though `z-by-app` is found through
        // the workload's first label.
        assert_eq!(sidecar.meta.name, "by-tier");
        let (mode, from) = s.mtls_mode(api, 8080);
        assert_eq!(mode, crate::model::istio::MtlsMode::Permissive);
        assert_eq!(from.as_deref(), Some("PeerAuthentication a/api"));
    }

    #[test]
    fn objects_are_found_by_kind_namespace_and_name() {
        let s = snapshot(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: a}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n\
             ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: a}\n\
             spec: {selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, image: nginx}]}}}\n\
             ---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: b}\nspec: {host: web.a.svc.cluster.local}\n",
        );
        assert_eq!(s.object_position("Service", "a", "web"), Some(0));
        assert_eq!(s.object_position("Deployment", "a", "web"), Some(0));
        assert_eq!(s.object_position("DestinationRule", "b", "web"), Some(0));
        assert_eq!(s.service_index("a", "web"), Some(0));
        assert!(s.workload("Deployment", "a", "web").is_some());
        for (kind, ns, name) in [
            ("StatefulSet", "a", "web"),
            ("DestinationRule", "a", "web"),
            ("Service", "b", "web"),
            ("Service", "a", "we"),
        ] {
            assert_eq!(
                s.object_position(kind, ns, name),
                None,
                "{kind} {ns}/{name}"
            );
        }
    }

    /// Argo Rollouts' Rollout is a workload like a Deployment: its template is read, a live
    /// Service that selects on the revision label its controller adds still finds it, and the
    /// fix patches the Rollout. With `workloadRef` the Deployment it names is the workload.
    #[test]
    fn an_argo_rollout_is_a_workload_and_the_target_of_its_fix() {
        let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {istio-injection: enabled}}\n";
        let s = snapshot(&format!(
            "{ns}---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: pay, namespace: a}}\n\
             spec:\n  strategy: {{canary: {{canaryService: pay-canary, stableService: pay}}}}\n  selector: {{matchLabels: {{app: pay}}}}\n\
             \x20 template:\n    metadata:\n      labels: {{app: pay}}\n      annotations: {{sidecar.istio.io/rewriteAppHTTPProbers: 'false'}}\n\
             \x20   spec:\n      containers:\n      - name: pay\n        image: pay:1\n        ports: [{{name: health, containerPort: 8081}}]\n\
             \x20       readinessProbe: {{httpGet: {{path: /healthz, port: health}}}}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{name: pay, namespace: a}}\n\
             spec: {{selector: {{app: pay, rollouts-pod-template-hash: 6d4f8c}}, ports: [{{name: http, port: 80}}]}}\n\
             ---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: a}}\nspec: {{mtls: {{mode: STRICT}}}}\n\
             ---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: ref, namespace: a}}\n\
             spec: {{workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: ref}}}}\n"
        ));
        assert!(s.workload("Rollout", "a", "pay").is_some());
        assert!(s.workload("Rollout", "a", "ref").is_none());
        let service = s.service_index("a", "pay").expect("service");
        assert_eq!(
            s.workloads_of(service)
                .map(|w| w.meta.name.as_str())
                .collect::<Vec<_>>(),
            ["pay"]
        );
        let report = crate::analysis::analyze(&s);
        let fix = report
            .findings
            .iter()
            .find(|f| f.code == crate::analysis::Code::MtlsProbeFailure)
            .expect("the probe finding on the Rollout");
        assert_eq!(fix.remediation.target.kind, "Rollout");
        assert_eq!(fix.remediation.target.api_version, "argoproj.io/v1alpha1");
        let patch = serde_json::to_string(&fix.remediation.patch).expect("json");
        assert!(
            patch.contains("/spec/template/metadata/annotations"),
            "{patch}"
        );
    }
}
