//! Watches and stores for every kind the analysis reads, and the snapshot built from them.
//!
//! Stores keep only what the analysis reads, as compact JSON text with `apiVersion` and `kind`
//! (`SnapshotBuilder::add_json`; a `serde_json::Value` tree of the same object is 3-4× larger,
//! README "The operator at scale"): `managedFields`, the last-applied annotation and
//! `status` are dropped as objects arrive, and a Pod, ReplicaSet or Job that a controller owns
//! is not kept at all: the snapshot builder skips it (it is analysed through its controller's
//! template), so at scale (50k pods, nearly all owned by ReplicaSets) the stores hold the
//! workloads' controllers, not their pods. An event that changes nothing kept (an owned pod's
//! status) marks nothing dirty.
//!
//! After one event, only the touched namespaces are re-analysed, from a snapshot of those
//! namespaces' Services and workloads plus everything cluster-wide ([`snapshot_in`]): findings in
//! a namespace read that namespace's Services and workloads, the Namespaces, and the Istio
//! config, mesh config and istiod of the whole cluster (see `analysis::dependencies` and
//! [`per_namespace`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::sync::{Mutex, Notify, watch};

use super::sync::SyncStates;
use crate::error::Source;
use crate::snapshot::{Snapshot, SnapshotBuilder, SnapshotOptions};

/// Namespaces that changed since the last reconcile (`all` after a cluster-wide change).
#[derive(Default, Debug)]
pub struct Dirty {
    pub namespaces: BTreeSet<String>,
    pub all: bool,
}

/// Shared between the watchers (which mark) and the reconcile loop (which takes).
#[derive(Default)]
pub struct Changes {
    pub dirty: Mutex<Dirty>,
    pub notify: Notify,
}

impl Changes {
    pub async fn mark(&self, namespace: Option<&str>, all: bool) {
        let mut d = self.dirty.lock().await;
        match namespace {
            _ if all => d.all = true,
            Some(ns) => {
                d.namespaces.insert(ns.to_string());
            }
            None => d.all = true,
        }
        drop(d);
        self.notify.notify_one();
    }

    pub async fn take(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().await)
    }
}

/// Objects of one kind by namespace (`""` for cluster-scoped ones) and name.
type ByNamespace = HashMap<String, HashMap<String, Arc<str>>>;

/// What the analysis keeps of one watched kind (see the module's doc).
#[derive(Clone)]
pub struct ObjectStore {
    objects: Arc<RwLock<ByNamespace>>,
    ready: watch::Receiver<bool>,
}

impl ObjectStore {
    /// Returns once the kind's first complete list is in the store.
    pub async fn wait_until_ready(&self) -> Result<(), watch::error::RecvError> {
        self.ready.clone().wait_for(|r| *r).await.map(|_| ())
    }

    /// How many objects are kept.
    pub fn len(&self) -> usize {
        self.read().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many objects each namespace holds (`""` for cluster-scoped ones).
    pub fn namespace_sizes(&self) -> Vec<(String, usize)> {
        self.read()
            .iter()
            .map(|(ns, m)| (ns.clone(), m.len()))
            .collect()
    }

    /// The names kept (for a cluster-scoped kind, e.g. Namespaces).
    pub fn names(&self) -> Vec<String> {
        self.read()
            .values()
            .flat_map(|m| m.keys().cloned())
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ByNamespace> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The objects of the namespaces in `scope` (all when `None`), and those elsewhere whose
    /// name `also` accepts.
    pub fn objects(
        &self,
        scope: Option<&BTreeSet<String>>,
        also: impl Fn(&str) -> bool,
    ) -> Vec<Arc<str>> {
        let map = self.read();
        let Some(scope) = scope else {
            return map.values().flat_map(|m| m.values().cloned()).collect();
        };
        let mut out: Vec<Arc<str>> = scope
            .iter()
            .filter_map(|ns| map.get(ns))
            .flat_map(|m| m.values().cloned())
            .collect();
        for (_, m) in map.iter().filter(|(ns, _)| !scope.contains(*ns)) {
            out.extend(m.iter().filter(|(n, _)| also(n)).map(|(_, v)| v.clone()));
        }
        out
    }
}

/// The watcher's side of an [`ObjectStore`]: a relist fills a buffer that replaces the store
/// once complete, so the store never shows half a list.
struct StoreWriter {
    objects: Arc<RwLock<ByNamespace>>,
    ready: watch::Sender<bool>,
    relist: Option<ByNamespace>,
}

impl StoreWriter {
    fn new() -> (StoreWriter, ObjectStore) {
        let objects = Arc::new(RwLock::new(ByNamespace::new()));
        let (ready, rx) = watch::channel(false);
        let store = ObjectStore {
            objects: objects.clone(),
            ready: rx,
        };
        (
            StoreWriter {
                objects,
                ready,
                relist: None,
            },
            store,
        )
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ByNamespace> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts (or, for `None`, removes) one object; whether what is kept changed.
    fn set(&mut self, ns: &str, name: &str, value: Option<Value>) -> bool {
        if let Some(buffer) = self.relist.as_mut() {
            // A change during a relist: only the complete list counts (it is swapped in whole).
            put(buffer, ns, name, value);
            return false;
        }
        put(&mut self.write(), ns, name, value)
    }

    fn relist_started(&mut self) {
        self.relist = Some(ByNamespace::new());
    }

    fn relist_done(&mut self) {
        if let Some(buffer) = self.relist.take() {
            *self.write() = buffer;
        }
        self.ready.send_replace(true);
    }
}

fn put(map: &mut ByNamespace, ns: &str, name: &str, value: Option<Value>) -> bool {
    match value {
        Some(v) => {
            // Serialized from a `Value`, so equal objects are equal texts.
            let text = v.to_string();
            let slot = map.entry(ns.to_string()).or_default();
            if slot.get(name).is_some_and(|old| **old == *text) {
                return false;
            }
            slot.insert(name.to_string(), Arc::from(text));
            true
        }
        None => {
            let Some(slot) = map.get_mut(ns) else {
                return false;
            };
            let removed = slot.remove(name).is_some();
            if slot.is_empty() {
                map.remove(ns);
            }
            removed
        }
    }
}

/// Whether only the findings of its own namespace read an object of this kind (Services and
/// workloads). Everything else
/// (Namespaces, Nodes, the root namespace's ConfigMaps, Istio config, which applies across
/// namespaces through `exportTo`, the root namespace and hosts) is read cluster-wide; so is
/// istiod's Deployment ([`is_istiod`]), whose image decides the Istio version.
pub fn per_namespace(kind: &str) -> bool {
    kind == "Service" || crate::analysis::dependencies::WORKLOAD_KINDS.contains(&kind)
}

/// The Deployments the snapshot builder reads as istiod (see `SnapshotBuilder`'s `note_istiod`).
pub fn is_istiod(kind: &str, name: &str) -> bool {
    kind == "Deployment" && (name == "istiod" || name.starts_with("istiod-"))
}

/// The object as the snapshot builder takes it, or `None` when the builder would skip it: a
/// Pod, ReplicaSet or Job that a controller owns is analysed through its controller.
pub fn project(resource: &ApiResource, mut obj: DynamicObject) -> Option<Value> {
    if matches!(resource.kind.as_str(), "Pod" | "ReplicaSet" | "Job")
        && obj
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true))
    {
        return None;
    }
    strip(&mut obj);
    let mut raw = serde_json::to_value(&obj).ok()?;
    if let Some(map) = raw.as_object_mut() {
        // List responses may omit the type; the watch knows it.
        map.insert(
            "apiVersion".into(),
            Value::String(resource.api_version.clone()),
        );
        map.insert("kind".into(), Value::String(resource.kind.clone()));
    }
    Some(raw)
}

/// One watched kind.
pub struct Watched {
    pub resource: ApiResource,
    pub store: ObjectStore,
    /// Istio kinds may be absent (no CRD); core kinds must sync before the operator is ready.
    pub optional: bool,
}

/// The kinds meshmedic watches: (group, version, kind, plural, optional). `analyze --cluster`
/// lists the same.
pub const KINDS: [(&str, &str, &str, &str, bool); 18] = [
    ("", "v1", "Namespace", "namespaces", false),
    // Kubelet versions decide native sidecars (the mesh profile); optional: a cluster may not
    // grant nodes, and then the profile says the version was assumed.
    ("", "v1", "Node", "nodes", true),
    ("", "v1", "Service", "services", false),
    ("", "v1", "Pod", "pods", false),
    ("apps", "v1", "Deployment", "deployments", false),
    ("apps", "v1", "StatefulSet", "statefulsets", false),
    ("apps", "v1", "DaemonSet", "daemonsets", false),
    // Bare ReplicaSets and Jobs, and CronJobs, are workloads too (owned ones are analysed
    // through their owner's template).
    ("apps", "v1", "ReplicaSet", "replicasets", false),
    ("batch", "v1", "Job", "jobs", false),
    ("batch", "v1", "CronJob", "cronjobs", false),
    // Argo Rollouts' workload; a cluster without its CRD has none (see `none_without_crd`).
    ("argoproj.io", "v1alpha1", "Rollout", "rollouts", true),
    (
        "networking.istio.io",
        "v1",
        "DestinationRule",
        "destinationrules",
        true,
    ),
    (
        "networking.istio.io",
        "v1",
        "VirtualService",
        "virtualservices",
        true,
    ),
    ("networking.istio.io", "v1", "Sidecar", "sidecars", true),
    (
        "networking.istio.io",
        "v1alpha3",
        "EnvoyFilter",
        "envoyfilters",
        true,
    ),
    (
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        true,
    ),
    ("telemetry.istio.io", "v1", "Telemetry", "telemetries", true),
    // Gateway API's HTTPRoute: routes a Service's host for the mesh when attached to it; a
    // cluster without its CRD has none (see `none_without_crd`).
    (
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
        true,
    ),
];

pub fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Drops what the analysis never reads, so stores (and `analyze --cluster`) stay small at scale.
pub fn strip(obj: &mut DynamicObject) {
    obj.metadata.managed_fields = None;
    if let Some(a) = obj.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    if let Some(map) = obj.data.as_object_mut() {
        // A pod's IP is kept: the sidecar-metrics evidence reads it. A node's kubelet version is
        // kept: the mesh profile reads it. The rest of status (conditions, images) is not.
        let status = map.remove("status");
        let pod_ip = status.as_ref().and_then(|s| s.get("podIP")).cloned();
        let kubelet = status
            .as_ref()
            .and_then(|s| s.pointer("/nodeInfo/kubeletVersion"))
            .cloned();
        if let Some(ip) = pod_ip {
            map.insert("status".into(), serde_json::json!({"podIP": ip}));
        } else if let Some(v) = kubelet {
            map.insert(
                "status".into(),
                serde_json::json!({"nodeInfo": {"kubeletVersion": v}}),
            );
        }
    }
}

/// The namespaces, other than its own, of the Services an HTTPRoute attaches to for mesh
/// traffic.
fn mesh_parents_elsewhere(obj: &DynamicObject) -> Vec<String> {
    let own = obj.namespace().unwrap_or_default();
    let parents: Vec<crate::model::gateway_api::ParentReference> = obj
        .data
        .pointer("/spec/parentRefs")
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or_default();
    let mut out: Vec<String> = parents
        .iter()
        .filter_map(|p| p.mesh_service(&own).map(|(ns, _)| ns.to_string()))
        .filter(|ns| *ns != own)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A Namespace's `meshmedic.io/mode` annotation, as written.
fn mode_annotation(obj: &DynamicObject) -> Option<String> {
    obj.annotations().get(crate::model::keys::MODE).cloned()
}

/// Kinds that exist only where their CRD is installed and that the analysis can do without:
/// a cluster that does not serve them has none (Argo Rollouts' Rollout, Gateway API's
/// HTTPRoute). Istio's kinds are not among them: without Istio's CRDs, the findings that read
/// them are withheld.
pub fn none_without_crd(kind: &str) -> bool {
    matches!(kind, "Rollout" | "HTTPRoute")
}

/// How often a kind that is not served (see [`none_without_crd`]) is listed again.
const NOT_SERVED_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// The API server does not serve the resource (404 on list or watch: no CRD).
fn not_served(e: &watcher::Error) -> bool {
    matches!(
        e,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 404
    ) || matches!(e, watcher::Error::WatchError(s) if s.code == 404)
}

/// Starts a watcher per kind (and one for ConfigMaps in the root namespace); every change marks
/// its namespace dirty. Returns the stores; the watchers run until the process ends.
/// Each watcher records in `sync` whether its kind has synced (see [`super::sync`]).
pub fn start(
    client: &Client,
    root_namespace: &str,
    changes: Arc<Changes>,
    sync: Arc<SyncStates>,
) -> Vec<Watched> {
    let mut watched = Vec::new();
    for (group, version, kind, plural, optional) in KINDS {
        let ar = api_resource(group, version, kind, plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        watched.push(spawn(
            api,
            ar,
            optional,
            root_namespace,
            changes.clone(),
            sync.clone(),
        ));
    }
    // Mesh config and injector values live in ConfigMaps of the root namespace only: meshmedic
    // reads no other ConfigMap (its RBAC grants none).
    let ar = api_resource("", "v1", "ConfigMap", "configmaps");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), root_namespace, &ar);
    watched.push(spawn(api, ar, true, root_namespace, changes, sync));
    watched
}

fn spawn(
    api: Api<DynamicObject>,
    ar: ApiResource,
    optional: bool,
    root: &str,
    changes: Arc<Changes>,
    sync: Arc<SyncStates>,
) -> Watched {
    let (mut writer, store) = StoreWriter::new();
    let kind = ar.kind.clone();
    let root = root.to_string();
    let is_namespace = kind == "Namespace";
    let is_node = kind == "Node";
    let is_http_route = kind == "HTTPRoute";
    // A Node's status is rewritten by its kubelet all the time; only a new kubelet version
    // changes the analysis (it changes the mesh profile, so every namespace).
    let mut kubelets: std::collections::HashMap<String, Option<Value>> = Default::default();
    let mut modes: std::collections::HashMap<String, Option<String>> = Default::default();
    let mut route_parents: std::collections::HashMap<(String, String), Vec<String>> =
        Default::default();
    sync.register(&kind, optional);
    let seed = kind
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let resource = ar.clone();
    tokio::spawn(async move {
        let mut delay = std::time::Duration::from_millis(200);
        let mut not_served_now = false;
        loop {
            // A fresh watcher lists first, so the kind is synced again only after a complete
            // list (its InitDone); the store is kept across restarts and swapped on InitDone.
            // Lists in pages of 100 objects rather than `any_semantic`'s resourceVersion=0,
            // which the API server answers from its cache in one response, ignoring the limit:
            // a page is decoded whole (as JSON trees, ~50 KiB per injected pod) before the
            // objects are trimmed, so the page size bounds the operator's peak RSS: the kinds
            // whose objects are large and mostly dropped (pods and what owns them) in pages of 25.
            let page = if matches!(kind.as_str(), "Pod" | "ReplicaSet" | "Job") {
                25
            } else {
                100
            };
            let stream = watcher(api.clone(), watcher::Config::default().page_size(page))
                .backoff(super::sync::RetryBackoff::new(seed));
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Delete(obj)) if is_node => {
                        writer.set("", &obj.name_any(), None);
                        if kubelets.remove(&obj.name_any()).is_some() {
                            changes.mark(None, true).await;
                        }
                    }
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) if is_node => {
                        let name = obj.name_any();
                        let version = obj.data.pointer("/status/nodeInfo/kubeletVersion").cloned();
                        writer.set("", &name, project(&resource, obj));
                        if kubelets.insert(name, version.clone()) != Some(version) {
                            changes.mark(None, true).await;
                        }
                    }
                    Ok(watcher::Event::InitApply(obj)) => {
                        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
                        if is_namespace {
                            modes.insert(name.clone(), mode_annotation(&obj));
                        }
                        if is_http_route {
                            let parents = mesh_parents_elsewhere(&obj);
                            if parents.is_empty() {
                                route_parents.remove(&(ns.clone(), name.clone()));
                            } else {
                                route_parents.insert((ns.clone(), name.clone()), parents);
                            }
                        }
                        writer.set(&ns, &name, project(&resource, obj));
                    }
                    Ok(event @ (watcher::Event::Apply(_) | watcher::Event::Delete(_))) => {
                        let (obj, deleted) = match event {
                            watcher::Event::Delete(obj) => (obj, true),
                            watcher::Event::Apply(obj) => (obj, false),
                            _ => continue,
                        };
                        let (ns, name) = (obj.namespace(), obj.name_any());
                        // A route attached to a Service of another namespace (a consumer route)
                        // changes what that Service's findings read: that namespace is
                        // re-analysed too, before and after the change.
                        let parents_elsewhere = if is_http_route {
                            let key = (ns.clone().unwrap_or_default(), name.clone());
                            let now = if deleted {
                                Vec::new()
                            } else {
                                mesh_parents_elsewhere(&obj)
                            };
                            let mut touched = route_parents.remove(&key).unwrap_or_default();
                            touched.extend(now.iter().cloned());
                            if !now.is_empty() {
                                route_parents.insert(key, now);
                            }
                            touched.sort();
                            touched.dedup();
                            touched
                        } else {
                            Vec::new()
                        };
                        // A namespace's mode decides what may be written there for Remediations
                        // of every namespace (a target can be in another): a new mode is a full
                        // pass, anything else about a namespace only its own.
                        let mode_changed = is_namespace && {
                            let mode = if deleted { None } else { mode_annotation(&obj) };
                            // (A namespace not seen before had no mode.)
                            modes.insert(name.clone(), mode.clone()).flatten() != mode
                        };
                        let value = if deleted {
                            None
                        } else {
                            project(&resource, obj)
                        };
                        // Unchanged (an owned pod's status, a resend): nothing to re-analyse.
                        if !writer.set(ns.as_deref().unwrap_or_default(), &name, value) {
                            continue;
                        }
                        let ns = if is_namespace { Some(name) } else { ns };
                        let all =
                            (ns.as_deref() == Some(root.as_str()) && !is_namespace) || mode_changed;
                        changes.mark(ns.as_deref(), all).await;
                        for parent_ns in parents_elsewhere {
                            changes.mark(Some(&parent_ns), false).await;
                        }
                    }
                    Ok(watcher::Event::Init) => writer.relist_started(),
                    // A complete list: the store is the truth again (swapped in whole, so every
                    // namespace may have changed); findings withheld for want of this kind are
                    // re-examined everywhere.
                    Ok(watcher::Event::InitDone) => {
                        writer.relist_done();
                        delay = std::time::Duration::from_millis(200);
                        if sync.synced(&kind) {
                            tracing::info!(kind, "synced");
                        }
                        changes.mark(None, true).await;
                    }
                    // A watch connection that drops mid-stream (the API server ends watches
                    // every few minutes, proxies cut idle ones) is routine: the watcher resumes
                    // from its resourceVersion and the store stays complete.
                    Err(watcher::Error::WatchFailed(e)) => {
                        tracing::debug!(kind, error = %e, "watch interrupted; resuming");
                    }
                    // A kind that exists only with its CRD, and the CRD is absent: there are
                    // none, which is the truth the analysis needs (not a gap to withhold on).
                    // Listed again now and then, so installing the CRD later is noticed.
                    Err(e) if none_without_crd(&kind) && not_served(&e) => {
                        writer.relist_started();
                        writer.relist_done();
                        not_served_now = true;
                        if sync.synced(&kind) {
                            tracing::info!(kind, "not served (CRD absent): there are none");
                            changes.mark(None, true).await;
                        }
                        break;
                    }
                    // A missing CRD (404), a forbidden kind, the API server down, a watch too
                    // old (410): reported once. Until a fresh list completes, findings that read
                    // this kind are withheld (an empty or stale store is not "there is none").
                    Err(e) => {
                        if sync.failed(&kind, &e.to_string()) {
                            tracing::warn!(kind, error = %e, "cannot watch; withholding the findings that read it until it syncs");
                            changes.mark(None, true).await;
                            // Once it has been missing a while, the Remediations are told.
                            let changes = changes.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(super::sync::CONDITION_GRACE).await;
                                changes.mark(None, true).await;
                            });
                        }
                        break;
                    }
                }
            }
            if std::mem::take(&mut not_served_now) {
                tokio::time::sleep(NOT_SERVED_RECHECK).await;
                continue;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(5));
        }
    });
    Watched {
        resource: ar,
        store,
        optional,
    }
}

/// The namespaces of `only` (every namespace when `None`: those with a Namespace object and
/// those holding objects), in groups that hold at most about `budget` Services and workloads
/// each (a namespace larger than that is a group of its own). A pass over many namespaces (a
/// full pass; the pass after one that wrote a Remediation in each) analyses one group at a time
/// ([`snapshot_in`]), so its peak memory follows the budget, not the cluster: the findings of a
/// namespace are the same in any group (see the module's doc).
pub fn namespace_groups(
    watched: &[Watched],
    budget: usize,
    only: Option<&BTreeSet<String>>,
) -> Vec<BTreeSet<String>> {
    // Cluster-scoped objects (`""`) go with the first group, as they went with the whole pass.
    let mut sizes: BTreeMap<String, usize> = match only {
        Some(only) => only.iter().map(|ns| (ns.clone(), 0)).collect(),
        None => [(String::new(), 0)].into(),
    };
    let wanted = |ns: &str| only.is_none_or(|o| o.contains(ns));
    for w in watched {
        if w.resource.kind == "Namespace" {
            for name in w.store.names().into_iter().filter(|n| wanted(n)) {
                sizes.entry(name).or_default();
            }
        } else if per_namespace(&w.resource.kind) {
            for (ns, n) in w
                .store
                .namespace_sizes()
                .into_iter()
                .filter(|(ns, _)| wanted(ns))
            {
                *sizes.entry(ns).or_default() += n;
            }
        }
    }
    group_namespaces(sizes, budget)
}

fn group_namespaces(sizes: BTreeMap<String, usize>, budget: usize) -> Vec<BTreeSet<String>> {
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    let mut held = 0;
    for (ns, n) in sizes {
        match groups.last_mut() {
            Some(group) if held + n <= budget || group.is_empty() => {
                held += n;
                group.insert(ns);
            }
            _ => {
                held = n;
                groups.push([ns].into());
            }
        }
    }
    groups
}

/// The snapshot of everything in the stores. An object that does not decode is logged and left
/// out: one bad object must not stop the analysis of the rest.
pub fn snapshot(watched: &[Watched], options: SnapshotOptions) -> crate::Result<Snapshot> {
    snapshot_in(watched, options, None, &mut Vec::new())
}

/// An object the analysis could not read (a field of the wrong type, a meaningless meshmedic
/// annotation), and why: the error names the field.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub object: crate::model::ObjectRef,
    /// So that `kubectl describe` finds the Event on the object.
    pub uid: Option<String>,
    pub error: String,
}

/// The snapshot the findings of the namespaces in `scope` read (everything when `None`): their
/// Services and workloads, and every object read cluster-wide (see [`per_namespace`]). The
/// findings of those namespaces are the same as in the snapshot of everything.
pub fn snapshot_in(
    watched: &[Watched],
    options: SnapshotOptions,
    scope: Option<&BTreeSet<String>>,
    rejected: &mut Vec<Rejected>,
) -> crate::Result<Snapshot> {
    let mut builder = SnapshotBuilder::new(options);
    for w in watched {
        let kind = w.resource.kind.as_str();
        let local = scope.filter(|_| per_namespace(kind));
        for obj in w.store.objects(local, |name| is_istiod(kind, name)) {
            let source = Source::new("cluster", 0);
            if let Err(e) = builder.add_json(source, obj.clone()) {
                tracing::warn!(error = %e, "object left out of the analysis");
                // Read whole only here: an object the analysis could not take.
                let obj: Value = serde_json::from_str(&obj).unwrap_or_default();
                let object = crate::model::ObjectRef {
                    api_version: w.resource.api_version.clone(),
                    kind: w.resource.kind.clone(),
                    namespace: obj
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    name: obj
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                };
                let error = match e {
                    crate::Error::InvalidField { field, message, .. } => {
                        format!("field `{field}`: {message}")
                    }
                    other => other.to_string(),
                };
                let uid = obj
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                rejected.push(Rejected { object, uid, error });
            }
        }
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyze_in;
    use crate::snapshot::load::parse_documents;

    /// examples/shop, the same again in namespace `shop2`, and a DestinationRule in `shop2`
    /// for a host of `shop` (Istio config read across namespaces).
    fn cluster() -> Vec<(Source, Value)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("examples/shop")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        let mut text = String::new();
        for f in &files {
            let t = std::fs::read_to_string(f).expect("example");
            text.push_str("\n---\n");
            text.push_str(&t);
            if !f.ends_with("01-mesh-config.yaml") {
                text.push_str("\n---\n");
                text.push_str(
                    &t.replace("namespace: shop", "namespace: shop2")
                        .replace("name: shop\n", "name: shop2\n")
                        .replace(".shop.svc", ".shop2.svc")
                        .replace("name: istio-system", "name: istio-system-copy"),
                );
            }
        }
        text.push_str(
            "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: cross, namespace: shop2}\nspec:\n  host: catalog.shop.svc.cluster.local\n  exportTo: ['*']\n  trafficPolicy: {connectionPool: {http: {idleTimeout: 2h}}}\n",
        );
        parse_documents("cluster.yaml", &text).expect("examples parse")
    }

    fn build(docs: &[(Source, Value)], keep: impl Fn(&Value) -> bool) -> Snapshot {
        let mut b = SnapshotBuilder::new(SnapshotOptions::default());
        for (s, v) in docs.iter().filter(|(_, v)| keep(v)) {
            b.add(s.clone(), v.clone()).expect("object");
        }
        b.build().expect("snapshot")
    }

    #[test]
    fn a_namespace_has_the_same_findings_in_its_own_snapshot_as_in_the_whole_cluster() {
        let docs = cluster();
        let whole = build(&docs, |_| true);
        let mut seen = 0;
        for ns in ["shop", "shop2"] {
            let scope: BTreeSet<String> = [ns.to_string()].into();
            // What `snapshot_in` keeps.
            let own = build(&docs, |v| {
                let kind = v["kind"].as_str().unwrap_or_default();
                let name = v.pointer("/metadata/name").and_then(Value::as_str);
                let namespace = v
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                !per_namespace(kind)
                    || scope.contains(namespace)
                    || is_istiod(kind, name.unwrap_or_default())
            });
            assert!(own.workloads.len() < whole.workloads.len());
            let a = analyze_in(&whole, Some(scope.clone())).findings;
            let b = analyze_in(&own, Some(scope)).findings;
            seen += a.len();
            assert_eq!(a, b, "findings of {ns}");
        }
        assert!(seen >= 10, "the examples have findings in both namespaces");
    }

    #[test]
    fn owned_pods_are_not_kept_and_bare_ones_are() {
        let ar = api_resource("", "v1", "Pod", "pods");
        let pod = |owned: bool| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "a",
                    "managedFields": [{"manager": "x"}],
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r",
                        "uid": "u", "controller": owned}]},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
                "status": {"podIP": "10.0.0.1", "phase": "Pending"}
            }))
            .expect("pod")
        };
        assert_eq!(project(&ar, pod(true)), None);
        let kept = project(&ar, pod(false)).expect("a bare pod is a workload");
        assert_eq!(kept["kind"], "Pod");
        assert_eq!(kept["status"], serde_json::json!({"podIP": "10.0.0.1"}));
        assert!(kept.pointer("/metadata/managedFields").is_none());
    }

    #[test]
    fn namespaces_are_grouped_by_the_objects_they_hold_and_none_is_left_out() {
        let sizes: BTreeMap<String, usize> = [
            ("", 0),
            ("a", 1500),
            ("b", 600),
            ("c", 100),
            ("d", 5000),
            ("e", 0),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        let groups = group_namespaces(sizes.clone(), 2000);
        let names = |g: &BTreeSet<String>| g.iter().cloned().collect::<Vec<_>>().join(",");
        let got: Vec<String> = groups.iter().map(names).collect();
        assert_eq!(got, [",a", "b,c", "d", "e"]);
        let all: BTreeSet<String> = groups.into_iter().flatten().collect();
        assert_eq!(all, sizes.keys().cloned().collect());
        assert_eq!(group_namespaces(sizes, usize::MAX).len(), 1);
    }

    #[test]
    fn a_relist_replaces_the_store_whole_and_changes_are_reported_once() {
        let (mut w, store) = StoreWriter::new();
        let v = |x: i64| Some(serde_json::json!({"x": x}));
        w.relist_started();
        assert!(!w.set("a", "one", v(1)));
        assert!(store.is_empty(), "half a list is not shown");
        w.relist_done();
        assert_eq!(store.len(), 1);
        assert!(!w.set("a", "one", v(1)), "a resend changes nothing");
        assert!(w.set("a", "one", v(2)));
        assert!(w.set("b", "two", v(3)));
        assert!(w.set("a", "one", None));
        assert!(!w.set("a", "one", None));
        let scope: BTreeSet<String> = ["b".to_string()].into();
        assert_eq!(store.objects(Some(&scope), |_| false).len(), 1);
        w.relist_started();
        w.relist_done();
        assert!(store.is_empty());
    }
}
