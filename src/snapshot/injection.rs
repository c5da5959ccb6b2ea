//! Which proxy, if any, handles a workload's traffic, decided as Istio decides it.
//!
//! Sidecar injection follows the injector's MutatingWebhookConfiguration
//! (`manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml`) and its
//! policy check (`injectRequired`, `pkg/kube/inject/inject.go`):
//! - a namespace labelled `istio-injection` takes precedence over `istio.io/rev`: `enabled` injects
//!   with the default revision, any other value injects nothing, whatever the pod says;
//! - a namespace labelled `istio.io/rev=<revision or tag>` injects with that revision;
//! - in an unlabelled namespace a pod injects with its own `istio.io/rev` label, or with the
//!   default revision when it carries the label `sidecar.istio.io/inject: "true"` (the
//!   annotation alone matches no webhook), or when `enableNamespacesByDefault` is on;
//! - the pod label `sidecar.istio.io/inject: "false"` is excluded by every webhook; then the
//!   label (else the annotation) `"true"`/`"false"` decides, else the injector's `policy`;
//! - `hostNetwork` pods and the system namespaces (`kube-system`, `kube-public`,
//!   `kube-node-lease`, `local-path-storage`) are never injected.
//!
//! Gateways run the proxy as the pod's only process; ambient pods (`istio.io/dataplane-mode:
//! ambient` on the namespace or the pod; the CNI skips pods that have a sidecar,
//! `cni/pkg/util/podutil.go`) have no sidecar at all: ztunnel on the node carries L4, and a
//! waypoint (`istio.io/use-waypoint`) is the Envoy that applies L7 rules.

use super::Snapshot;
use crate::model::keys;
use crate::model::workload::Workload;

const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
const USE_WAYPOINT: &str = "istio.io/use-waypoint";
const INJECT_TEMPLATES: &str = "inject.istio.io/templates";
const GATEWAY_API_NAME: &str = "gateway.networking.k8s.io/gateway-name";
const ISTIO_GATEWAY_NAME: &str = "istio.io/gateway-name";
const SIDECAR_STATUS: &str = "sidecar.istio.io/status";
use crate::model::workload::PROXY_CONTAINER as PROXY;

/// Namespaces Istio never injects (`IgnoredNamespaces`, `pkg/kube/inject/initializer.go`).
pub const IGNORED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// The proxy that handles a workload's traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dataplane {
    /// No Istio proxy.
    None,
    /// A sidecar beside the app: `native` when it runs as a Kubernetes native sidecar (an init
    /// container with `restartPolicy: Always`), which starts before and stops after the app.
    Sidecar {
        native: bool,
        /// The revision (or tag) that injects it.
        revision: String,
        /// Why native or not, for evidence.
        why: String,
    },
    /// A gateway: the proxy is the pod's only process, there is no app behind it.
    Gateway { why: String },
    /// Ambient mode: no sidecar; `waypoint` when a waypoint proxy applies L7 rules.
    Ambient { waypoint: bool },
}

impl Dataplane {
    /// A sidecar sits beside an app container (the only case the sidecar-only causes apply to).
    pub fn is_sidecar(&self) -> bool {
        matches!(self, Dataplane::Sidecar { .. })
    }
}

fn proxy_in_containers(w: &Workload) -> Option<&crate::model::workload::Container> {
    w.pod_spec.containers.iter().find(|c| c.name == PROXY)
}

fn native_proxy_in_init_containers(w: &Workload) -> bool {
    w.pod_spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == PROXY && c.restart_policy.as_deref() == Some("Always"))
}

/// An `istio-proxy` container written into the pod (not injected) sees the app's traffic only
/// where something redirects it there: the injector's `sidecar.istio.io/status` annotation
/// (`istioctl kube-inject` writes it; Istio's CNI redirects only pods that carry it, "excluded
/// due to not containing sidecar annotation" in `cni/pkg/plugin`), or an init container that runs
/// `istio-iptables` (`istio-init`). Without either, the proxy is a bystander: Istio 1.5's
/// Prometheus ran one only to fetch certificates for scraping, next to
/// `sidecar.istio.io/inject: "false"`.
fn iptables_init_container(w: &Workload) -> bool {
    w.pod_spec.init_containers.iter().flatten().any(|c| {
        c.name == "istio-init"
            || c.command
                .iter()
                .chain(c.args.iter())
                .flatten()
                .any(|a| a == "istio-iptables")
    })
}

/// Why a workload is a gateway, if it is one.
pub fn gateway_reason(w: &Workload) -> Option<String> {
    let labels = |key: &str| {
        w.pod_labels
            .get(key)
            .or_else(|| w.meta.labels.get(key))
            .map(str::to_string)
    };
    if let Some(t) = w.annotation(INJECT_TEMPLATES)
        && t.split(',').any(|t| t.trim() == "gateway")
    {
        return Some(format!("{INJECT_TEMPLATES}: {t}"));
    }
    for key in [GATEWAY_API_NAME, ISTIO_GATEWAY_NAME] {
        if let Some(name) = labels(key) {
            return Some(format!(
                "label {key}: {name} (a gateway deployed by istiod)"
            ));
        }
    }
    if let Some(v) = labels("istio").filter(|v| v.ends_with("gateway"))
        && w.app_containers().count() <= 1
    {
        return Some(format!("label istio: {v}"));
    }
    if let Some(c) = proxy_in_containers(w) {
        if c.image.as_deref() == Some("auto") && w.pod_spec.containers.len() == 1 {
            return Some("its only container is istio-proxy with image: auto".to_string());
        }
        let args: Vec<&str> = c.args.iter().flatten().map(String::as_str).collect();
        if args.starts_with(&["proxy", "router"]) {
            return Some("istio-proxy runs `proxy router`".to_string());
        }
    }
    None
}

/// Why a sidecar is native or not, kept as the decision until its words are asked for: most
/// callers only ask whether there is a sidecar, and building the sentence for each of them was
/// most of the strings the detectors made for workloads (150,000 at 10,000 services).
#[derive(Clone, Copy)]
enum NativeBy {
    InitContainer,
    RegularContainer,
    /// The pod's annotation, `true` or `false`.
    Annotation(bool),
    /// The injecting control plane's setting.
    ControlPlane,
}

/// [`Dataplane`] without its words: the decision itself.
enum Plane<'a> {
    None,
    Sidecar {
        native: bool,
        revision: &'a str,
        by: NativeBy,
    },
    Gateway {
        why: String,
    },
    Ambient {
        waypoint: bool,
    },
}

impl Snapshot {
    /// The proxy that handles this workload's traffic.
    pub fn dataplane(&self, w: &Workload) -> Dataplane {
        match self.plane(w) {
            Plane::None => Dataplane::None,
            Plane::Sidecar {
                native,
                revision,
                by,
            } => Dataplane::Sidecar {
                native,
                why: self.native_why(revision, by),
                revision: revision.to_string(),
            },
            Plane::Gateway { why } => Dataplane::Gateway { why },
            Plane::Ambient { waypoint } => Dataplane::Ambient { waypoint },
        }
    }

    fn plane<'a>(&'a self, w: &'a Workload) -> Plane<'a> {
        if let Some(why) = gateway_reason(w) {
            return Plane::Gateway { why };
        }
        let revision = self.injecting_revision(w);
        // An `istio-proxy` with no app beside it is not a sidecar: ztunnel's DaemonSet names its
        // only container `istio-proxy` (`proxy ztunnel`) and is no Envoy at all.
        let beside_an_app = w.app_containers().next().is_some();
        if beside_an_app && native_proxy_in_init_containers(w) {
            return Plane::Sidecar {
                native: true,
                revision: revision.unwrap_or("default"),
                by: NativeBy::InitContainer,
            };
        }
        if beside_an_app
            && proxy_in_containers(w).is_some()
            && (w.pod_annotations.contains_key(SIDECAR_STATUS)
                || (revision.is_none() && iptables_init_container(w)))
        {
            return Plane::Sidecar {
                native: false,
                revision: revision.unwrap_or("default"),
                by: NativeBy::RegularContainer,
            };
        }
        if let Some(revision) = revision {
            let (native, by) = self.native_for(w, revision);
            return Plane::Sidecar {
                native,
                revision,
                by,
            };
        }
        if self.is_ambient(w) {
            return Plane::Ambient {
                waypoint: self.uses_waypoint(w),
            };
        }
        Plane::None
    }

    /// Whether an Envoy that Istio configures handles this workload's traffic: a sidecar, a
    /// gateway, or (ambient) a waypoint. The L7 causes (timeouts, retries, listener drains)
    /// apply exactly there.
    pub fn is_injected(&self, w: &Workload) -> bool {
        match self.plane(w) {
            Plane::Sidecar { .. } | Plane::Gateway { .. } => true,
            Plane::Ambient { waypoint } => waypoint,
            Plane::None => false,
        }
    }

    /// Whether no Istio proxy at all handles this workload's traffic.
    pub fn has_no_proxy(&self, w: &Workload) -> bool {
        matches!(self.plane(w), Plane::None)
    }

    /// Whether a sidecar sits beside the app ([`Snapshot::sidecar`] without its words).
    pub fn has_sidecar(&self, w: &Workload) -> bool {
        matches!(self.plane(w), Plane::Sidecar { .. })
    }

    /// Whether the sidecar beside the app, if there is one, is native ([`Snapshot::sidecar`]
    /// without its words, which only a finding needs).
    pub fn native_sidecar(&self, w: &Workload) -> Option<bool> {
        match self.plane(w) {
            Plane::Sidecar { native, .. } => Some(native),
            _ => None,
        }
    }

    /// The sidecar beside the app, if there is one: `(native, why)`.
    pub fn sidecar(&self, w: &Workload) -> Option<(bool, String)> {
        match self.plane(w) {
            Plane::Sidecar {
                native,
                revision,
                by,
            } => Some((native, self.native_why(revision, by))),
            _ => None,
        }
    }

    /// Native or classic sidecar for a pod that the injector will inject.
    fn native_for(&self, w: &Workload, revision: &str) -> (bool, NativeBy) {
        let plane = self.profile.control_plane(revision);
        if plane.version.at_least(
            super::profile::NATIVE_ANNOTATION_SINCE.0,
            super::profile::NATIVE_ANNOTATION_SINCE.1,
        ) {
            match w.annotation(keys::NATIVE_SIDECAR).map(str::trim) {
                Some("true") => return (true, NativeBy::Annotation(true)),
                Some("false") => return (false, NativeBy::Annotation(false)),
                _ => {}
            }
        }
        (
            self.profile.native_sidecars_on(revision),
            NativeBy::ControlPlane,
        )
    }

    /// The words of a [`NativeBy`], for evidence.
    fn native_why(&self, revision: &str, by: NativeBy) -> String {
        match by {
            NativeBy::InitContainer => {
                "istio-proxy is already an init container with restartPolicy: Always".to_string()
            }
            NativeBy::RegularContainer => {
                "istio-proxy is already a regular container of the pod".to_string()
            }
            NativeBy::Annotation(on) => {
                format!("pod annotation {}: \"{on}\"", keys::NATIVE_SIDECAR)
            }
            NativeBy::ControlPlane => self.profile.native_sidecars(revision).1,
        }
    }

    /// The revision (or tag) whose injector injects this pod, if any.
    pub fn injecting_revision<'a>(&'a self, w: &'a Workload) -> Option<&'a str> {
        if w.pod_spec.host_network == Some(true) {
            return None;
        }
        let ns_name = w.meta.namespace.as_str();
        if IGNORED_NAMESPACES.contains(&ns_name) {
            return None;
        }
        let label = w.pod_labels.get(keys::INJECT).map(|v| v.trim());
        let pod_rev = w.pod_labels.get(keys::NS_REV);
        let profile = &self.profile;
        // The webhook for unlabelled namespaces: the pod's revision label, or its inject label.
        let by_object = || -> Option<&'a str> {
            if let Some(rev) = pod_rev {
                return (label != Some("false")).then_some(rev);
            }
            match label {
                Some("true") => Some("default"),
                None if profile.enable_namespaces_by_default => Some("default"),
                _ => None,
            }
        };
        let matched = match self.namespaces.get(ns_name) {
            Some(ns) => match (
                ns.labels.get(keys::NS_INJECTION),
                ns.labels.get(keys::NS_REV),
            ) {
                (Some(v), _) => {
                    (v.trim() == "enabled" && label != Some("false")).then_some("default")
                }
                (None, Some(rev)) => (label != Some("false")).then_some(rev),
                (None, None) => by_object(),
            },
            // Nothing in the input says how the namespace is labelled. Istio's own namespace is
            // not an application namespace: its installs leave it unlabelled (addons such as
            // Prometheus or Loki in samples/ run there without a sidecar).
            None if profile.assume_injected
                && ns_name != self.root_namespace()
                && w.pod_labels.get(DATAPLANE_MODE) != Some("ambient") =>
            {
                (label != Some("false")).then(|| pod_rev.unwrap_or("default"))
            }
            None => by_object(),
        }?;
        // injectRequired: the label wins over the annotation, then the injector's policy.
        let choice = label.or_else(|| w.pod_annotations.get(keys::INJECT).map(|v| v.trim()));
        let required = match choice {
            Some("true") => true,
            Some("false") => false,
            _ => profile.injection_policy_enabled,
        };
        required.then_some(matched)
    }

    fn is_ambient(&self, w: &Workload) -> bool {
        match w.pod_labels.get(DATAPLANE_MODE) {
            Some("ambient") => true,
            Some("none") => false,
            _ => self
                .namespaces
                .get(&w.meta.namespace)
                .and_then(|ns| ns.labels.get(DATAPLANE_MODE))
                .is_some_and(|m| m == "ambient"),
        }
    }

    /// The app workloads that run with no proxy and could: outside Istio's and the system
    /// namespaces, not `hostNetwork`, with an app container. `None` when any workload already
    /// has a sidecar or runs ambient: the input then says how it is meshed, and the rest is left
    /// out on purpose. Gateways say nothing about the app namespaces (istiod's own charts deploy
    /// them).
    fn unmeshed_app_workloads(&self) -> Option<Vec<&Workload>> {
        let mut unmeshed = Vec::new();
        for w in &self.workloads {
            match self.plane(w) {
                Plane::Sidecar { .. } | Plane::Ambient { .. } => return None,
                Plane::Gateway { .. } => {}
                Plane::None if self.could_be_meshed(w) => unmeshed.push(&**w),
                Plane::None => {}
            }
        }
        Some(unmeshed)
    }

    /// An app workload that a mesh could take in: outside Istio's and the system namespaces,
    /// not `hostNetwork`, with an app container.
    fn could_be_meshed(&self, w: &Workload) -> bool {
        let ns = w.meta.namespace.as_str();
        ns != self.root_namespace()
            && !IGNORED_NAMESPACES.contains(&ns)
            && w.pod_spec.host_network != Some(true)
            && w.app_containers().next().is_some()
    }

    /// What `--assume-injected` would bring into the mesh: the unmeshed app workloads (above)
    /// whose Namespace is not in the input. 0 when anything is meshed, or with the flag.
    pub fn left_out_for_want_of_namespace_labels(&self) -> usize {
        if self.profile.assume_injected {
            return 0;
        }
        self.unmeshed_app_workloads().map_or(0, |ws| {
            ws.iter()
                .filter(|w| !self.namespaces.contains_key(&w.meta.namespace))
                .count()
        })
    }

    /// The namespaces the input defines with no mesh label at all (neither `istio-injection`,
    /// `istio.io/rev` nor `istio.io/dataplane-mode`), with how many unmeshed app workloads
    /// (above) each holds; empty when anything is meshed. `--assume-injected` changes nothing
    /// here: it reads only namespaces absent from the input. A namespace labelled out of the
    /// mesh (`istio-injection: disabled`) is left out on purpose and not counted.
    /// kube-prometheus' manifests define `monitoring` unlabelled: "0 findings" alone read as a
    /// healthy mesh.
    pub fn left_out_by_unlabelled_namespaces(&self) -> Vec<(&str, usize)> {
        let mut left_out = std::collections::BTreeMap::new();
        for w in self.unmeshed_app_workloads().unwrap_or_default() {
            let ns = w.meta.namespace.as_str();
            let unlabelled = self.namespaces.get(ns).is_some_and(|n| {
                [keys::NS_INJECTION, keys::NS_REV, DATAPLANE_MODE]
                    .iter()
                    .all(|k| n.labels.get(k).is_none())
            });
            if unlabelled {
                *left_out.entry(ns).or_insert(0) += 1;
            }
        }
        left_out.into_iter().collect()
    }

    /// Namespaces where no workload is in the mesh (no sidecar, no gateway, not ambient) while
    /// at least one app workload is (root and system namespaces left out), with how many:
    /// opted in to the operator, such a namespace gets no Remediation however broken, and the
    /// person who opted it in should hear why (a Warning Event; see `controller`).
    pub fn namespaces_with_nothing_meshed(&self) -> Vec<(&str, usize)> {
        let mut by_namespace: std::collections::BTreeMap<&str, Option<usize>> =
            std::collections::BTreeMap::new();
        for w in &self.workloads {
            let ns = w.meta.namespace.as_str();
            let entry = by_namespace.entry(ns).or_insert(Some(0));
            match self.plane(w) {
                Plane::None => {
                    if let Some(n) = entry
                        && self.could_be_meshed(w)
                    {
                        *n += 1;
                    }
                }
                _ => *entry = None,
            }
        }
        by_namespace
            .into_iter()
            .filter_map(|(ns, n)| n.filter(|n| *n > 0).map(|n| (ns, n)))
            .collect()
    }

    /// A waypoint serves the pod, a Service selecting it, or its namespace.
    fn uses_waypoint(&self, w: &Workload) -> bool {
        let named = |labels: &crate::model::Labels| {
            labels
                .get(USE_WAYPOINT)
                .is_some_and(|v| !v.is_empty() && v != "none")
        };
        if named(&w.pod_labels) {
            return true;
        }
        if let Some(i) = self.object_position(&w.kind, &w.meta.namespace, &w.meta.name)
            && i < self.workloads.len()
            && self.services_of(i).any(|(_, s)| named(&s.meta.labels))
        {
            return true;
        }
        self.namespaces
            .get(&w.meta.namespace)
            .is_some_and(|ns| named(&ns.labels))
    }
}

#[cfg(test)]
mod tests;
