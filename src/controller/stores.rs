//! Watches and reflector stores for every kind the analysis reads, and the snapshot built from
//! them. Stores keep only what analysis needs: `managedFields`, the last-applied annotation and
//! `status` are dropped as objects arrive.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::sync::{Mutex, Notify};

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

/// One watched kind.
pub struct Watched {
    pub resource: ApiResource,
    pub store: Store<DynamicObject>,
    /// Istio kinds may be absent (no CRD); core kinds must sync before the operator is ready.
    pub optional: bool,
}

/// The kinds meshmedic watches: (group, version, kind, plural, optional). `analyze --cluster`
/// lists the same.
pub const KINDS: [(&str, &str, &str, &str, bool); 16] = [
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
    let mut writer = reflector::store::Writer::new(ar.clone());
    let store = writer.as_reader();
    let kind = ar.kind.clone();
    let root = root.to_string();
    let is_namespace = kind == "Namespace";
    let is_node = kind == "Node";
    // A Node's status is rewritten by its kubelet all the time; only a new kubelet version
    // changes the analysis (it changes the mesh profile, so every namespace).
    let mut kubelets: std::collections::HashMap<String, Option<Value>> = Default::default();
    sync.register(&kind, optional);
    let seed = kind
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    tokio::spawn(async move {
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            // A fresh watcher lists first, so the kind is synced again only after a complete
            // list (its InitDone); the store is kept across restarts and swapped on InitDone.
            let stream = watcher(api.clone(), watcher::Config::default().any_semantic())
                .backoff(super::sync::RetryBackoff::new(seed))
                .modify(strip);
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Ok(event) = &event {
                    writer.apply_watcher_event(event);
                }
                match event {
                    Ok(watcher::Event::Delete(obj)) if is_node => {
                        if kubelets.remove(&obj.name_any()).is_some() {
                            changes.mark(None, true).await;
                        }
                    }
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) if is_node => {
                        let version = obj.data.pointer("/status/nodeInfo/kubeletVersion").cloned();
                        if kubelets.insert(obj.name_any(), version.clone()) != Some(version) {
                            changes.mark(None, true).await;
                        }
                    }
                    Ok(
                        watcher::Event::Apply(obj)
                        | watcher::Event::Delete(obj)
                        | watcher::Event::InitApply(obj),
                    ) => {
                        let ns = if is_namespace {
                            Some(obj.name_any())
                        } else {
                            obj.namespace()
                        };
                        let all = ns.as_deref() == Some(root.as_str()) && !is_namespace;
                        changes.mark(ns.as_deref(), all).await;
                    }
                    Ok(watcher::Event::Init) => {}
                    // A complete list: the store is the truth again; findings withheld for want
                    // of this kind are re-examined everywhere.
                    Ok(watcher::Event::InitDone) => {
                        delay = std::time::Duration::from_millis(200);
                        if sync.synced(&kind) {
                            tracing::info!(kind, "synced");
                            changes.mark(None, true).await;
                        }
                    }
                    // A watch connection that drops mid-stream (the API server ends watches
                    // every few minutes, proxies cut idle ones) is routine: the watcher resumes
                    // from its resourceVersion and the store stays complete.
                    Err(watcher::Error::WatchFailed(e)) => {
                        tracing::debug!(kind, error = %e, "watch interrupted; resuming");
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

/// The snapshot of everything in the stores. An object that does not decode is logged and left
/// out: one bad object must not stop the analysis of the rest.
pub fn snapshot(watched: &[Watched], options: SnapshotOptions) -> crate::Result<Snapshot> {
    let mut builder = SnapshotBuilder::new(options);
    for w in watched {
        for obj in w.store.state() {
            let Ok(mut raw) = serde_json::to_value(&*obj) else {
                continue;
            };
            if let Some(map) = raw.as_object_mut() {
                // List responses may omit the type; the watch knows it.
                map.insert(
                    "apiVersion".into(),
                    Value::String(w.resource.api_version.clone()),
                );
                map.insert("kind".into(), Value::String(w.resource.kind.clone()));
            }
            let source = Source::new("cluster", 0);
            if let Err(e) = builder.add(source, raw) {
                tracing::warn!(error = %e, "object left out of the analysis");
            }
        }
    }
    builder.build()
}
