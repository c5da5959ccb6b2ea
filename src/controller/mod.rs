//! The operator (`meshmedic run`): watches opted-in namespaces, keeps one Remediation per
//! (finding code, target), and applies the approved (or, in `apply` mode, the safe) fixes.
//!
//! Shape: watchers fill reflector stores and mark the namespaces an event touched; one loop
//! takes those marks, builds a snapshot from the stores, re-analyses only those namespaces with
//! the same pure analysis as `meshmedic analyze`, plans one change per target object
//! ([`plan::plan_targets`]), and lets [`lifecycle::decide`] (pure, property-tested) choose the
//! one step for each; this module only executes it. Only the leader writes.

pub mod apply;
pub mod evidence;
pub mod gitops;
pub mod lifecycle;
pub mod metrics;
pub mod plan;
pub mod restore;
pub mod stores;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::analysis::analyze_in;
use crate::error::{Error, Result};
use crate::model::remediation::{Phase, Remediation, RemediationAction};
use crate::model::{ObjectRef, keys};
use crate::snapshot::{Snapshot, SnapshotOptions};
use lifecycle::{Decision, PlanView, Reason, TargetView};
use metrics::{FindingLabels, Health, Metrics, PhaseLabels};
use plan::{Mode, gitops_owner};
use serde_json::Value;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "meshmedic")]
    pub lease_namespace: String,
    #[arg(long, default_value = "meshmedic-leader")]
    pub lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "meshmedic")]
    pub identity: String,
    /// Seconds a leader holds the Lease without renewing it before another replica takes over.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// Istio's root namespace (mesh config ConfigMaps are read there).
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,
    /// Istio version whose defaults apply (default: istiod's image tag, else the newest known).
    #[arg(long)]
    pub istio_version: Option<String>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Full re-analysis this often even without events.
    #[arg(long, default_value_t = 300)]
    pub resync_seconds: u64,
    /// Prometheus to ask for observed 503s (e.g. http://prometheus.istio-system:9090); they are
    /// attached to findings as evidence and raise their severity. Off by default.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Window of the Prometheus query.
    #[arg(long, default_value = "1h")]
    pub prometheus_window: String,
    /// Without Prometheus: read 503 counters from a pod's sidecar (merged metrics on this port,
    /// `/stats/prometheus`), where reachable. Off by default.
    #[arg(long, value_name = "PORT")]
    pub sidecar_metrics_port: Option<u16>,
    /// A pass over many namespaces (startup, resync, a cluster-wide change) analyses them in
    /// groups of about this many Services and workloads, so its memory follows this number, not
    /// the cluster's size (each namespace's findings are the same in any group). Each group
    /// converts the cluster-wide objects (Istio config, Namespaces) again: with thousands of
    /// those, a larger number makes full passes faster at the cost of memory.
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub full_pass_objects: usize,
    /// In apply mode, a safe plan is written only once it has stood, published and unchanged,
    /// this many seconds: a namespace being applied object by object (`kubectl apply -f DIR`, a
    /// GitOps sync) shows findings half-way that go away by themselves, and meshmedic must not
    /// create objects for them. An approved plan is written at once (a person reviewed it). In
    /// every mode, a first proposal nobody touched whose cause goes away within this time is
    /// withdrawn (deleted) instead of kept as Resolved.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub apply_settle_seconds: u64,
}

impl RunArgs {
    fn evidence_source(&self) -> Option<evidence::EvidenceSource> {
        match (&self.prometheus_url, self.sidecar_metrics_port) {
            (Some(url), _) => Some(evidence::EvidenceSource::Prometheus {
                url: url.clone(),
                window: self.prometheus_window.clone(),
            }),
            (None, Some(port)) => Some(evidence::EvidenceSource::Sidecars { port }),
            (None, None) => None,
        }
    }
}

/// Everything the reconcile loop needs.
pub struct Context {
    pub client: Client,
    pub args: RunArgs,
    pub watched: Vec<stores::Watched>,
    pub remediations: Store<Remediation>,
    pub changes: Arc<stores::Changes>,
    pub metrics: Arc<Metrics>,
    /// Which watched kinds have synced: findings reading one that has not are withheld.
    pub sync: Arc<sync::SyncStates>,
    /// Confirms the lease before writes (see [`sync::Fence`]).
    pub fence: sync::Fence,
    pub recorder: Recorder,
    /// Data-plane evidence is fetched at most once a minute, however often events come: an
    /// unreachable Prometheus must not slow every pass.
    pub evidence: tokio::sync::Mutex<Option<(Instant, evidence::Observed)>>,
    /// The Remediations as meshmedic last wrote them: the watch may not have delivered them yet
    /// when the next pass runs, and a pass must never act on an older status than its own.
    pub latest: std::sync::Mutex<BTreeMap<(String, String), Remediation>>,
    /// Targets meshmedic wrote whose write the watch has not shown yet (key, resourceVersion
    /// after the write, when): the lifecycle waits for them instead of judging a stale view.
    pub pending: std::sync::Mutex<BTreeMap<String, (Option<u64>, Instant)>>,
    /// Meaningless annotation values already told with an Event (namespace, annotation, value):
    /// told once per value, not on every pass.
    pub told_annotations: std::sync::Mutex<BTreeSet<(String, String, String)>>,
    /// Objects the analysis could not read, already told with an Event (object, error).
    pub told_objects: std::sync::Mutex<BTreeSet<(ObjectRef, String)>>,
    /// Opted-in namespaces already told that nothing in them runs in the mesh.
    pub told_nothing_meshed: std::sync::Mutex<BTreeSet<String>>,
    /// When this replica first saw each Remediation's current plan published ((namespace,
    /// name) → (plan digest, when)): apply mode writes a plan only once it has settled.
    pub published_since: std::sync::Mutex<BTreeMap<(String, String), (String, Instant)>>,
    /// Namespaces with a pass already scheduled after a failed write ([`Context::retry_failed`]).
    pub retrying: Arc<std::sync::Mutex<BTreeSet<String>>>,
}

/// What [`Context::settle_clock`] tells of one Remediation's published plan.
#[derive(Clone, Copy, Default)]
struct SettleClock {
    young: bool,
    settled: bool,
}

/// How long a write may take to reach the watch before the view is trusted again.
const PENDING_TTL: Duration = Duration::from_secs(20);

impl Context {
    fn remember(&self, r: Remediation) {
        let key = (r.namespace().unwrap_or_default(), r.name_any());
        if let Ok(mut m) = self.latest.lock() {
            m.insert(key, r);
        }
    }

    /// The newer of the watched object and the one meshmedic last wrote.
    /// (Copied only when the remembered one is newer.)
    fn freshest<'a>(&self, r: &'a Remediation) -> std::borrow::Cow<'a, Remediation> {
        use std::borrow::Cow;
        let key = (r.namespace().unwrap_or_default(), r.name_any());
        let Ok(mut m) = self.latest.lock() else {
            return Cow::Borrowed(r);
        };
        let rv = |x: &Remediation| rv_number(x.metadata.resource_version.as_deref());
        match m.get(&key) {
            Some(mine) if rv(mine) > rv(r) => Cow::Owned(mine.clone()),
            Some(_) => {
                m.remove(&key);
                Cow::Borrowed(r)
            }
            None => Cow::Borrowed(r),
        }
    }

    /// The settle clock of the plan published on `ns/name` (`digest`, if it is the plan the
    /// analysis makes now), read and advanced in one lookup. `young`: the clock was running and
    /// is not out yet (read before it is reset). `settled`: `digest` has stood for the settle
    /// time. The first sighting of a digest starts the clock and schedules a pass for when it
    /// runs out (in apply mode, where it matters); another digest, or none, starts over.
    fn settle_clock(&self, ns: &str, name: &str, digest: Option<&str>, mode: Mode) -> SettleClock {
        let settle = Duration::from_secs(self.args.apply_settle_seconds);
        let key = (ns.to_string(), name.to_string());
        let Ok(mut m) = self.published_since.lock() else {
            return SettleClock::default();
        };
        let young = m.get(&key).is_some_and(|(_, at)| at.elapsed() < settle);
        let Some(digest) = digest else {
            m.remove(&key);
            return SettleClock {
                young,
                settled: false,
            };
        };
        let settled = match m.get(&key) {
            Some((d, at)) if d == digest => at.elapsed() >= settle,
            _ => {
                m.insert(key, (digest.to_string(), Instant::now()));
                drop(m);
                if !settle.is_zero() && mode == Mode::Apply {
                    self.pass_after_settle(ns);
                }
                settle.is_zero()
            }
        };
        SettleClock { young, settled }
    }

    /// Starts the settle clock of a plan this replica has just published, and schedules a pass
    /// for when it runs out (apply mode writes it then; a pass with nothing to do is cheap).
    fn published(&self, ns: &str, name: &str, digest: &str) {
        if let Ok(mut m) = self.published_since.lock() {
            m.insert(
                (ns.to_string(), name.to_string()),
                (digest.to_string(), Instant::now()),
            );
        }
        self.pass_after_settle(ns);
    }

    fn pass_after_settle(&self, ns: &str) {
        self.pass_after(ns, Duration::from_secs(self.args.apply_settle_seconds));
    }

    /// Schedules a pass over `ns` once `delay` has passed.
    fn pass_after(&self, ns: &str, delay: Duration) {
        let (changes, ns) = (self.changes.clone(), ns.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            changes.mark(Some(&ns), false).await;
        });
    }

    /// Schedules a pass over `ns` after a failed write ([`RETRY_FAILED_WRITE`]), unless one is
    /// scheduled already: a write refused for good (a webhook that denies it) is tried again
    /// every few seconds, not once more for every event the namespace sees meanwhile, each of
    /// which would start another retry of its own.
    fn retry_failed(&self, ns: &str) {
        let scheduled = self
            .retrying
            .lock()
            .map_or(true, |mut r| r.insert(ns.to_string()));
        if !scheduled {
            return;
        }
        let (changes, retrying, ns) = (self.changes.clone(), self.retrying.clone(), ns.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(RETRY_FAILED_WRITE).await;
            if let Ok(mut r) = retrying.lock() {
                r.remove(&ns);
            }
            changes.mark(Some(&ns), false).await;
        });
    }

    fn set_pending(&self, key: String, rv: Option<u64>) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(key, (rv, Instant::now()));
        }
    }

    /// Whether a write to `key` is still on its way; `seen` is the resourceVersion the watch
    /// shows (None: the object is absent from it).
    fn is_pending(&self, key: &str, seen: Option<u64>) -> bool {
        let Ok(mut p) = self.pending.lock() else {
            return false;
        };
        let Some((rv, at)) = p.get(key).copied() else {
            return false;
        };
        let arrived = match (rv, seen) {
            (Some(rv), Some(seen)) => seen >= rv,
            // A delete: done once the object is gone from the watch.
            (None, None) => true,
            _ => false,
        };
        if arrived || at.elapsed() > PENDING_TTL {
            p.remove(key);
            return false;
        }
        true
    }
}

const EVIDENCE_TTL: Duration = Duration::from_secs(60);

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> Result<()> {
    let client = Client::try_default().await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    run_with(client, args, stop_rx).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs the operator with a given client until `stop` turns true (tests drive it this way).
pub async fn run_with(
    client: Client,
    args: RunArgs,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let sync = Arc::new(sync::SyncStates::default());
    let health = Arc::new(Health {
        metrics: metrics.clone(),
        ready: false.into(),
        sync: sync.clone(),
    });
    let changes = Arc::new(stores::Changes::default());
    let watched = stores::start(&client, &args.root_namespace, changes.clone(), sync.clone());
    let remediations = watch_remediations(&client, changes.clone());

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| Error::Other(format!("cannot listen on {}: {e}", args.metrics_addr)))?;
    let server_stop = stop.clone();
    let server = tokio::spawn(
        axum::serve(listener, metrics::router(health.clone()))
            .with_graceful_shutdown(wait_for(server_stop))
            .into_future(),
    );

    let reporter = Reporter {
        controller: "meshmedic".into(),
        instance: Some(args.identity.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context {
        client: client.clone(),
        args: args.clone(),
        watched,
        remediations,
        changes,
        metrics,
        sync,
        fence: sync::Fence::new(
            &client,
            &args.lease_namespace,
            &args.lease_name,
            &args.identity,
            Duration::from_secs(std::cmp::max(1, args.lease_duration / 3)),
        ),
        recorder,
        evidence: tokio::sync::Mutex::new(None),
        latest: Default::default(),
        pending: Default::default(),
        told_annotations: Default::default(),
        told_nothing_meshed: Default::default(),
        retrying: Default::default(),
        told_objects: Default::default(),
        published_since: Default::default(),
    });

    // Ready once the core kinds (and Remediations) have synced; Istio kinds may be absent.
    for w in ctx.watched.iter().filter(|w| !w.optional) {
        tokio::select! {
            r = w.store.wait_until_ready() => r.map_err(|e| Error::Other(format!("{} store: {e}", w.resource.kind)))?,
            _ = wait_for(stop.clone()) => return Ok(()),
        }
    }
    tokio::select! {
        r = ctx.remediations.wait_until_ready() => r.map_err(|e| Error::Other(format!("Remediation store: {e}")))?,
        _ = wait_for(stop.clone()) => return Ok(()),
    }
    health.ready.store(true, Ordering::Relaxed);

    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&args.identity)
        .with_duration(args.lease_duration)
        .with_grace(std::cmp::max(1, args.lease_duration / 3))
        .build()
        .await
        .map_err(|e| Error::Other(format!("leader election: {e}")))?;
    let (mut leader, lease_task) = lease.watch().await;
    tracing::info!(identity = %args.identity, "started; waiting for the lease");

    let resync = Duration::from_secs(args.resync_seconds.max(10));
    let mut was_leader = false;
    loop {
        tokio::select! {
            _ = ctx.changes.notify.notified() => {}
            _ = leader.changed() => {}
            _ = tokio::time::sleep(resync) => ctx.changes.mark(None, true).await,
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        let is_leader = *leader.borrow();
        ctx.metrics.leader.set(i64::from(is_leader));
        if is_leader != was_leader {
            tracing::info!(leader = is_leader, "leadership changed");
            was_leader = is_leader;
            if is_leader {
                ctx.changes.mark(None, true).await;
            }
        }
        if !is_leader {
            continue;
        }
        // Let a burst of events settle into one pass.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Fence: a replica that was frozen or cut off past its lease still believes it leads
        // until its lease task notices; it must not write meanwhile (the chaos run caught one).
        if !ctx.fence.holds(true).await {
            tracing::info!("the lease is not (or no longer visibly) ours; skipping this pass");
            tokio::time::sleep(Duration::from_millis(500)).await;
            ctx.changes.notify.notify_one();
            continue;
        }
        let dirty = ctx.changes.take().await;
        let started = Instant::now();
        if let Err(e) = reconcile(&ctx, dirty).await {
            tracing::warn!(error = %e, "reconcile failed; retrying on the next change");
            ctx.changes.mark(None, true).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        ctx.metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    // Hand the lease over at once instead of making the other replica wait it out.
    drop(leader);
    if let Ok(Ok(manager)) = lease_task.await {
        let _ = manager.release().await;
    }
    let _ = server.await;
    Ok(())
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

fn watch_remediations(client: &Client, changes: Arc<stores::Changes>) -> Store<Remediation> {
    let api: Api<Remediation> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let stream = watcher(
        api,
        watcher::Config::default().labels(&format!(
            "{}={}",
            keys::MANAGED_BY_LABEL,
            keys::MANAGED_BY_VALUE
        )),
    )
    // kube's default backoff grows to 30 s and resets only after two quiet minutes: after an
    // apiserver outage the Remediations stayed stale for a minute while every write built on
    // them lost its race (the chaos run saw 600 conflicts in ten seconds). Same as the stores.
    .backoff(sync::RetryBackoff::new(0x5eed_4e3d))
    .reflect(writer)
    .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(r) => changes.mark(r.namespace().as_deref(), false).await,
                Err(e) => tracing::warn!(error = %e, "watching Remediations"),
            }
        }
    });
    store
}

fn modes(snapshot: &Snapshot) -> BTreeMap<String, Mode> {
    snapshot
        .namespaces
        .iter()
        .map(|(name, meta)| {
            (
                name.clone(),
                Mode::from_annotation(meta.annotations.get(keys::MODE)),
            )
        })
        .collect()
}

/// A Warning Event on each Namespace whose meshmedic annotation means nothing (once per value):
/// the operator then does the safe thing (mode off, minimum severity warning), and says so.
async fn tell_annotation_problems(ctx: &Context, snapshot: &Snapshot) {
    let mut to_tell = Vec::new();
    if let Ok(mut told) = ctx.told_annotations.lock() {
        let mut now = BTreeSet::new();
        for (ns, meta) in &snapshot.namespaces {
            for (key, value, message) in plan::namespace_annotation_problems(&meta.annotations) {
                let problem = (ns.clone(), key.to_string(), value);
                if !told.contains(&problem) {
                    to_tell.push((ns.clone(), key, message));
                }
                now.insert(problem);
            }
        }
        // A value corrected and written wrong again is told again.
        *told = now;
    }
    for (ns, key, message) in to_tell {
        // One series per annotation: the recorder folds events with the same action.
        warn(
            ctx,
            &namespace_reference(ns),
            "InvalidAnnotation",
            format!("Read {key}"),
            message,
        )
        .await;
    }
}

/// A Warning Event on each opted-in namespace of this pass where workloads run but none with
/// an Istio proxy: the person who opted it in sees no Remediation for its sidecar causes and
/// should hear why. Told once; told again after the namespace had a meshed workload (or no
/// workload) in between.
async fn tell_nothing_meshed(ctx: &Context, snapshot: &Snapshot, scope: &BTreeSet<String>) {
    let nothing: BTreeMap<&str, usize> = snapshot
        .namespaces_with_nothing_meshed()
        .into_iter()
        .filter(|(ns, _)| scope.contains(*ns))
        .collect();
    let mut to_tell = Vec::new();
    if let Ok(mut told) = ctx.told_nothing_meshed.lock() {
        told.retain(|ns| !scope.contains(ns) || nothing.contains_key(ns.as_str()));
        for (ns, n) in &nothing {
            if told.insert(ns.to_string()) {
                to_tell.push((ns.to_string(), *n));
            }
        }
    }
    for (ns, n) in to_tell {
        let why = match snapshot
            .namespaces
            .get(&ns)
            .and_then(|m| m.labels.get(keys::NS_INJECTION))
        {
            Some(v) => format!("its label istio-injection={v} keeps the injector away"),
            None => "it has no istio-injection or istio.io/rev label, and no pod template asks for a sidecar".to_string(),
        };
        let message = format!(
            "namespace {ns} is opted in to meshmedic, but none of its {n} workload(s) runs with an Istio proxy ({why}): meshmedic judges them only as the upstreams of mesh gateways, and looks for no sidecar cause here; label the namespace istio-injection=enabled (or istio.io/rev=<revision>) if it belongs in the mesh"
        );
        let reference = namespace_reference(ns);
        warn(ctx, &reference, "NothingMeshed", "Analyse".into(), message).await;
    }
}

/// A Namespace as an Event's subject, the Event recorded in the namespace itself, where its
/// users look (`kubectl get events -n`).
fn namespace_reference(ns: String) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Namespace".into()),
        name: Some(ns.clone()),
        namespace: Some(ns),
        ..Default::default()
    }
}

/// A Warning Event on each object the analysis could not read (once per object and error).
/// Only the objects of the `touched` namespaces were read this pass.
async fn tell_rejected(
    ctx: &Context,
    rejected: &[stores::Rejected],
    touched: &dyn Fn(&str) -> bool,
) {
    let mut to_tell = Vec::new();
    if let Ok(mut told) = ctx.told_objects.lock() {
        let mut now = BTreeSet::new();
        for r in rejected {
            let key = (r.object.clone(), r.error.clone());
            if !told.contains(&key) && now.insert(key) {
                to_tell.push(r.clone());
            }
        }
        told.retain(|(o, _): &(ObjectRef, String)| !touched(&o.namespace));
        told.extend(rejected.iter().map(|r| (r.object.clone(), r.error.clone())));
    }
    for r in to_tell {
        let t = &r.object;
        let message = format!(
            "{t}: {}; meshmedic leaves it out of the analysis and resolves nothing in namespace {} until it reads again",
            r.error, t.namespace
        );
        let reference = ObjectReference {
            api_version: Some(t.api_version.clone()),
            kind: Some(t.kind.clone()),
            name: Some(t.name.clone()),
            namespace: Some(t.namespace.clone()),
            uid: r.uid.clone(),
            ..Default::default()
        };
        warn(ctx, &reference, "InvalidField", "Analyse".into(), message).await;
    }
}

/// Logs `note` and records it as a Warning Event on `reference`.
async fn warn(
    ctx: &Context,
    reference: &ObjectReference,
    reason: &str,
    action: String,
    note: String,
) {
    tracing::warn!("{note}");
    let ev = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action,
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, reference).await {
        tracing::debug!(error = %e, "event not recorded");
    }
}

/// One pass: re-analyse the touched namespaces and sync their Remediations. A pass over many
/// namespaces goes a group at a time ([`stores::namespace_groups`]).
pub async fn reconcile(ctx: &Context, dirty: stores::Dirty) -> Result<()> {
    // A pass over many namespaces goes a group at a time: a full pass, and also the pass after
    // one that wrote a Remediation in every namespace (each write marks its namespace).
    let only = (!dirty.all).then_some(&dirty.namespaces);
    let groups = stores::namespace_groups(&ctx.watched, ctx.args.full_pass_objects.max(1), only);
    if groups.len() < 2 {
        return reconcile_in(ctx, dirty).await;
    }
    for namespaces in groups {
        let group = stores::Dirty {
            namespaces,
            all: false,
        };
        reconcile_in(ctx, group).await?;
    }
    Ok(())
}

async fn reconcile_in(ctx: &Context, dirty: stores::Dirty) -> Result<()> {
    let options = SnapshotOptions {
        cluster_domain: ctx.args.cluster_domain.clone(),
        istio_version: ctx.args.istio_version.clone(),
        mesh_config: None,
        ..SnapshotOptions::default()
    };
    // After one event, a snapshot of the touched namespaces (and what they read cluster-wide),
    // not of the whole cluster: the cost of a pass follows what changed, not the cluster's size.
    let mut rejected = Vec::new();
    let scope_in = (!dirty.all).then_some(&dirty.namespaces);
    let snapshot = stores::snapshot_in(&ctx.watched, options, scope_in, &mut rejected)?;
    let modes = modes(&snapshot);
    tell_annotation_problems(ctx, &snapshot).await;
    // An object the analysis cannot read is left out of it, and a namespace missing one of its
    // objects is a partial view: there, nothing is resolved (the cause may only seem gone
    // because the object is missing) and a Remediation of the object itself is left as it is,
    // until the object reads again. The person is told which object and field.
    let unreadable: BTreeSet<String> = rejected
        .iter()
        .map(|r| r.object.namespace.clone())
        .collect();
    let rejected_targets: BTreeSet<(String, String, String)> = rejected
        .iter()
        .map(|r| {
            let o = &r.object;
            (o.kind.clone(), o.namespace.clone(), o.name.clone())
        })
        .collect();
    let touched = |ns: &str| dirty.all || dirty.namespaces.contains(ns);
    tell_rejected(ctx, &rejected, &touched).await;
    let opted_in = |ns: &str| modes.get(ns).is_some_and(|m| *m != Mode::Off);
    let scope: BTreeSet<String> = if dirty.all {
        modes.keys().filter(|ns| opted_in(ns)).cloned().collect()
    } else {
        dirty
            .namespaces
            .iter()
            .filter(|ns| opted_in(ns))
            .cloned()
            .collect()
    };
    if scope.is_empty() {
        update_phase_gauge(ctx);
        return Ok(());
    }
    tell_nothing_meshed(ctx, &snapshot, &scope).await;
    let mut report = analyze_in(&snapshot, Some(scope.clone()));
    if let Some(source) = ctx.args.evidence_source() {
        let mut cache = ctx.evidence.lock().await;
        let observed = match cache.as_ref() {
            Some((at, observed)) if at.elapsed() < EVIDENCE_TTL => observed.clone(),
            _ => {
                let (observed, errors) =
                    evidence::collect(&source, &snapshot, &report.findings, Duration::from_secs(3))
                        .await;
                for e in errors {
                    ctx.metrics.api_error("evidence");
                    tracing::warn!(error = %e, "no 503 evidence from the data plane (analysis goes on without it)");
                }
                *cache = Some((Instant::now(), observed.clone()));
                observed
            }
        };
        drop(cache);
        let window = match &source {
            evidence::EvidenceSource::Prometheus { window, .. } => window.clone(),
            evidence::EvidenceSource::Sidecars { .. } => "proxy's lifetime".to_string(),
        };
        evidence::attach(
            &mut report.findings,
            &observed,
            &ctx.args.cluster_domain,
            &window,
        );
    }
    for e in &report.errors {
        tracing::warn!(error = %e, "a fix could not be planned");
    }
    // A partial view is not the truth: findings that read a kind not synced are withheld.
    let withheld = sync::withheld(&ctx.sync.unsynced());
    let told = sync::withheld(&ctx.sync.unsynced_for(sync::CONDITION_GRACE));
    for code in crate::analysis::Code::ALL {
        let n = report.findings.iter().filter(|f| f.code == code).count();
        let n = if withheld.contains_key(&code) { n } else { 0 };
        ctx.metrics
            .findings_withheld
            .get_or_create(&metrics::CodeLabels {
                code: code.to_string(),
            })
            .set(n as i64);
    }
    let existing = ctx.remediations.state();
    for ns in &scope {
        let mode = modes.get(ns).copied().unwrap_or(Mode::Off);
        let findings: Vec<_> = report
            .findings
            .iter()
            .filter(|f| &f.namespace == ns && !withheld.contains_key(&f.code))
            .collect();
        for code in crate::analysis::Code::ALL {
            let n = findings.iter().filter(|f| f.code == code).count();
            ctx.metrics
                .findings
                .get_or_create(&FindingLabels {
                    code: code.to_string(),
                    namespace: ns.clone(),
                })
                .set(n as i64);
        }
        // Below the namespace's minimum severity: in the findings metric, no Remediation.
        let min = plan::min_severity(
            snapshot
                .namespaces
                .get(ns)
                .and_then(|m| m.annotations.get(plan::MIN_SEVERITY)),
        );
        let eligible: Vec<&crate::analysis::Finding> = findings
            .iter()
            .copied()
            .filter(|f| f.severity >= min)
            .collect();
        let base = |t: &ObjectRef| snapshot.raw_object(t).map(plan::spec_digest);
        let (planned, errors) = plan::plan_targets(&eligible, &base);
        for e in errors {
            tracing::warn!(namespace = %ns, error = %e, "findings on one object could not be merged");
        }
        // A Remediation that answers a withheld finding is left as it is (not resolved because
        // a store is empty); it only gets a condition naming the missing kinds, below.
        let (held, mine): (Vec<&Remediation>, Vec<&Remediation>) = existing
            .iter()
            .map(|r| &**r)
            .filter(|r| r.namespace().as_deref() == Some(ns))
            .partition(|r| withheld_kinds(&withheld, r).is_some());
        let held_names: BTreeSet<String> = held.iter().map(|r| r.name_any()).collect();
        let mine: BTreeMap<String, Remediation> = mine
            .into_iter()
            .map(|r| (r.name_any(), ctx.freshest(r).into_owned()))
            .collect();
        let planned: BTreeMap<String, plan::Planned> = planned
            .into_iter()
            .filter(|p| !held_names.contains(&p.name))
            .map(|p| (p.name.clone(), p))
            .collect();
        let gitops = |t: &crate::model::ObjectRef| {
            let raw = snapshot.raw_object(t)?;
            let map = |p: &str| -> BTreeMap<String, String> {
                raw.pointer(p)
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default()
            };
            gitops_owner(
                &map("/metadata/labels"),
                &map("/metadata/annotations"),
                raw.pointer("/metadata/ownerReferences"),
            )
        };
        let api: Api<Remediation> = Api::namespaced(ctx.client.clone(), ns);
        let names: BTreeSet<&String> = planned.keys().chain(mine.keys()).collect();
        for name in names {
            let plan = planned.get(name);
            let rem = mine.get(name);
            let Some(target) = plan.map(|p| &p.target).or(rem.map(|r| &r.spec.target)) else {
                continue;
            };
            if let Some(writer) = rem.and_then(apply::writing) {
                // Another replica (e.g. the previous leader) is writing this target: wait.
                tracing::debug!(remediation = %name, %writer, "being written; deciding later");
                ctx.pass_after(ns, Duration::from_secs(1));
                continue;
            }
            let mut view = target_view(ctx, &snapshot, target, rem);
            let published = plan
                .zip(rem)
                .filter(|(p, r)| r.spec.plan_digest.as_deref() == Some(p.view.digest.as_str()))
                .map(|(p, _)| p.view.digest.as_str());
            let clock = ctx.settle_clock(ns, name, published, mode);
            let rem_view = rem.map(|r| {
                let view = rem_view(r);
                lifecycle::RemView {
                    young: clock.young,
                    beside: if view.created {
                        snapshot.created_object_beside(target)
                    } else {
                        None
                    },
                    ..view
                }
            });
            let plan_view = plan.map(|p| PlanView {
                settled: clock.settled,
                target_mode: (target.namespace != *ns)
                    .then(|| modes.get(&target.namespace).copied().unwrap_or(Mode::Off)),
                ..p.view.clone()
            });
            let decide = |view| {
                lifecycle::decide(
                    mode,
                    plan_view.as_ref(),
                    gitops(target).as_deref(),
                    rem_view.as_ref(),
                    view,
                )
            };
            let mut decision = decide(view);
            if concludes_from_absence_of_own_write(view, rem_view.as_ref(), &decision)
                && !absent_on_the_apiserver(ctx, ns, target).await
            {
                view = TargetView::Pending;
                decision = decide(view);
            }
            let own_object_unreadable = rejected_targets.contains(&(
                target.kind.clone(),
                target.namespace.clone(),
                target.name.clone(),
            ));
            let concludes_from_absence = matches!(
                decision,
                Decision::Set {
                    phase: Phase::Resolved | Phase::Stale,
                    ..
                } | Decision::Withdraw
            );
            if unreadable.contains(ns) && (own_object_unreadable || concludes_from_absence) {
                tracing::debug!(remediation = %name, "partial view (an object cannot be read): left as it is");
                continue;
            }
            // A replica that lost its lease (frozen, partitioned) must not write: the Lease is
            // read again before every write.
            if !ctx.fence.holds(false).await {
                return Err(Error::Other(
                    "the lease is no longer ours; pass abandoned".into(),
                ));
            }
            if let Err(e) = execute(
                ctx,
                &api,
                ns,
                name,
                decision,
                Seen {
                    view,
                    beside: rem_view.as_ref().and_then(|v| v.beside.clone()),
                },
                plan,
                rem,
                &gitops,
            )
            .await
            {
                ctx.metrics.api_error("remediation");
                tracing::warn!(namespace = %ns, remediation = %name, error = %e, "writing a Remediation failed; trying again shortly");
                // Nothing else may bring this namespace up again before the resync (minutes):
                // a write refused for a moment would leave its record half told that long.
                ctx.retry_failed(ns);
            }
        }
        // Withheld Remediations say which kinds they wait for (and nothing else happens to
        // them); the others drop a `Synced=False` they carried.
        for rem in held.iter().copied().chain(mine.values()) {
            // As this pass left it: a status it wrote above is newer than the one it read.
            let rem = &*ctx.freshest(rem);
            let missing = match (
                withheld_kinds(&withheld, rem).is_some(),
                withheld_kinds(&told, rem),
            ) {
                (true, Some(missing)) => missing.as_slice(),
                (true, None) => continue, // briefly: not worth a write
                (false, _) => &[],
            };
            if !ctx.fence.holds(false).await {
                return Err(Error::Other(
                    "the lease is no longer ours; pass abandoned".into(),
                ));
            }
            match sync::write_condition(&api, rem, missing).await {
                Ok(Some(updated)) => ctx.remember(updated),
                Ok(None) => {}
                Err(e) => {
                    ctx.metrics.api_error("remediation");
                    tracing::warn!(namespace = %ns, error = %e, "writing a Remediation's Synced condition failed");
                }
            }
        }
    }
    update_phase_gauge(ctx);
    Ok(())
}

/// The kinds a Remediation waits for, when any finding it answers is withheld.
fn withheld_kinds<'a>(
    withheld: &'a BTreeMap<crate::analysis::Code, Vec<String>>,
    r: &Remediation,
) -> Option<&'a Vec<String>> {
    std::iter::once(r.spec.code)
        .chain(r.spec.causes.iter().map(|c| c.code))
        .find_map(|c| withheld.get(&c))
}

/// What the lifecycle reads from a Remediation.
pub fn rem_view(r: &Remediation) -> lifecycle::RemView {
    let status = r.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let reason = ready.map(|c| c.reason.clone()).unwrap_or_default();
    let ready_message = ready.map(|c| c.message.clone()).unwrap_or_default();
    lifecycle::RemView {
        published: r.spec.plan_digest.clone(),
        approved: r.spec.approved_digest.clone(),
        rollback: r.spec.rollback,
        allow_live_patch: r.spec.allow_live_patch,
        creates: r.spec.action == RemediationAction::Create,
        phase: status.phase,
        reason,
        applied_digest: status.applied_digest.clone(),
        failed_digest: status.failed_digest.clone(),
        resolves: r.spec.resolves,
        wrote: status.written.is_some(),
        created: status.original.as_ref().is_some_and(|o| !o.existed),
        writes: status.writes,
        reverted: status.reverted,
        spec_changed: match (r.metadata.generation, status.observed_generation) {
            (Some(generation), Some(observed)) => generation > observed,
            _ => false,
        },
        // Time is the controller's to judge (see `Context::settle_clock`), the snapshot's what
        // stands beside the target (see `Snapshot::created_object_beside`).
        young: false,
        beside: None,
        ready_message,
    }
}

fn rv_number(rv: Option<&str>) -> Option<u64> {
    rv?.parse().ok()
}

/// The target as the watch shows it, relative to meshmedic's last write.
fn target_view(
    ctx: &Context,
    snapshot: &Snapshot,
    target: &crate::model::ObjectRef,
    rem: Option<&Remediation>,
) -> TargetView {
    let raw = snapshot.raw_object(target);
    let key = target.to_string();
    let seen = raw.and_then(|r| {
        rv_number(
            r.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str),
        )
    });
    if ctx.is_pending(&key, seen) {
        return TargetView::Pending;
    }
    let status = rem.and_then(|r| r.status.as_ref());
    if status.and_then(|s| s.written.as_ref()).is_none() {
        return if raw.is_some() {
            TargetView::Present
        } else {
            TargetView::Absent
        };
    }
    let Some(raw) = raw else {
        return TargetView::Absent;
    };
    // After a restart there is no pending entry: the recorded resourceVersion tells.
    let after = status.and_then(|s| s.target_resource_version_after.as_deref());
    if let (Some(seen), Some(after)) = (seen, rv_number(after))
        && seen < after
    {
        return TargetView::Pending;
    }
    let current = raw
        .get("spec")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let undos = status.map(|s| s.undo.as_slice()).unwrap_or_default();
    // An object meshmedic created is also someone else's once they mark it (a label, an
    // annotation, its owner reference to the Remediation removed): neither rewritten nor deleted.
    let created = status
        .and_then(|s| s.original.as_ref())
        .is_some_and(|o| !o.existed);
    let uid = rem.and_then(|r| r.metadata.uid.as_deref());
    if restore::intact(&current, undos).is_ok()
        && (!created || restore::others_marks(raw, uid).is_empty())
    {
        TargetView::AsWritten
    } else {
        TargetView::Changed
    }
}

/// Whether `decision` acts on the absence of a target meshmedic wrote (records it deleted by
/// someone, refuses a rollback, rolls back a create). The watch is only a view: under load, or
/// while it lists again, it can lag past [`PENDING_TTL`] behind meshmedic's own create, and
/// that create must not read as a person's delete. Such a decision is taken only once the
/// apiserver confirms the absence ([`absent_on_the_apiserver`]); other decisions on an absent
/// target (nothing to do) cost no request.
fn concludes_from_absence_of_own_write(
    view: TargetView,
    rem: Option<&lifecycle::RemView>,
    decision: &Decision,
) -> bool {
    view == TargetView::Absent && rem.is_some_and(|r| r.wrote) && *decision != Decision::Nothing
}

/// Reads `target` from the apiserver: true only when it answers that the object does not exist.
/// Found (the watch is behind) or unreadable: not absent, and the pass waits for the watch (an
/// arriving object is a watch event, which brings the next pass; a failed read is tried again
/// [`RETRY_UNREADABLE`] later, not sooner: a read that keeps failing, e.g. `get` no longer
/// granted, must not become a request a second).
async fn absent_on_the_apiserver(ctx: &Context, ns: &str, target: &ObjectRef) -> bool {
    let Some(api) = apply::target_api(&ctx.client, target) else {
        return true;
    };
    match api.get_opt(&target.name).await {
        Ok(None) => true,
        Ok(Some(live)) => {
            tracing::info!(
                %target,
                resource_version = live.metadata.resource_version.as_deref().unwrap_or(""),
                "the watch does not show this target yet, the apiserver does: waiting for the watch"
            );
            false
        }
        Err(e) => {
            ctx.metrics.api_error("get_target");
            tracing::warn!(%target, error = %e, "cannot read the target to confirm it is gone; deciding later");
            ctx.pass_after(ns, RETRY_UNREADABLE);
            false
        }
    }
}

/// What a pass saw of a Remediation's target, for the words of what it records.
struct Seen {
    view: TargetView,
    /// A person's object beside one meshmedic created (`Snapshot::created_object_beside`).
    beside: Option<String>,
}

/// Another writer changed the Remediation since this pass read it: decide again on fresh state.
/// The fresh state is read here rather than awaited from the watch, which can lag far behind
/// (while it lists again after an apiserver outage): a pass on the same stale view would lose
/// the same race again, in a loop. When there is nothing newer to read (deleted, or the read
/// failed, or not yet in the watch at all), the next pass waits a moment for the watch instead.
///
/// `read` is the Remediation the refused write was made on (and `error` the apiserver's answer,
/// when there is one to tell). Found again unchanged, nothing raced it: the apiserver refused
/// the write itself (an admission policy or webhook answers 409 or 422 as a failed
/// precondition does). Deciding again at once would send the same write in a loop (a live run
/// saw 159 in ten seconds), so the next pass waits, as after any failed write.
async fn retry_later(
    ctx: &Context,
    api: &Api<Remediation>,
    ns: &str,
    name: &str,
    read: Option<&Remediation>,
    error: Option<&kube::Error>,
) -> Result<()> {
    // A pass reads the Remediations the watch holds, each replaced by a newer one remembered:
    // one the watch has not shown yet cannot be remembered into the pass.
    let watched = ctx
        .remediations
        .get(&reflector::ObjectRef::new(name).within(ns))
        .is_some();
    match api.get_opt(name).await {
        Ok(Some(fresh))
            if read.is_some_and(|r| r.resource_version() == fresh.resource_version()) =>
        {
            ctx.metrics.api_error("remediation");
            let error = error.map(ToString::to_string).unwrap_or_default();
            tracing::warn!(remediation = %name, namespace = %ns, %error, "the apiserver refused a write of this Remediation although it had not changed (an admission policy or webhook?); trying again shortly");
            ctx.retry_failed(ns);
        }
        Ok(Some(fresh)) if watched => {
            ctx.remember(fresh);
            ctx.changes.mark(Some(ns), false).await;
        }
        outcome => {
            if let Err(e) = outcome {
                ctx.metrics.api_error("remediation");
                tracing::debug!(remediation = %name, namespace = %ns, error = %e, "reading a Remediation again after a conflict");
            }
            ctx.pass_after(ns, RETRY_UNSEEN);
        }
    }
    Ok(())
}

/// Removes the approval `digest` that a write just used, retrying what may be transient (the
/// apiserver unreachable for a moment). A failed `test` means a person approved anew meanwhile:
/// theirs is kept. `None` when not removed.
async fn consume_used_approval(
    ctx: &Context,
    api: &Api<Remediation>,
    ns: &str,
    name: &str,
    digest: &str,
) -> Option<Remediation> {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=CONSUME_ATTEMPTS {
        match apply::consume_approval(api, name, digest, None).await {
            Ok(u) => return Some(u),
            Err(e) if apply::is_conflict(&e) || apply::is_not_found(&e) => return None,
            Err(e) => {
                ctx.metrics.api_error("consume_approval");
                if attempt == CONSUME_ATTEMPTS {
                    tracing::warn!(remediation = %name, namespace = %ns, error = %e, "the approval this write used is still set; the pass that records the write's outcome removes it");
                    return None;
                }
                tracing::debug!(remediation = %name, namespace = %ns, error = %e, "removing a used approval; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    None
}

const CONSUME_ATTEMPTS: u32 = 4;

/// How long a pass that lost a race on a Remediation it cannot read waits for the watch.
const RETRY_UNSEEN: Duration = Duration::from_secs(1);

/// How long a pass whose write of a Remediation failed waits to decide again.
const RETRY_FAILED_WRITE: Duration = Duration::from_secs(5);

/// How long a pass that could not read a target to confirm its absence waits to try again.
const RETRY_UNREADABLE: Duration = Duration::from_secs(10);

/// Records an apply or rollback outcome in the Remediation's status; `None` when another replica
/// is writing the target (decided again later).
async fn record_outcome(
    ctx: &Context,
    api: &Api<Remediation>,
    ns: &str,
    name: &str,
    r: &Remediation,
    outcome: &apply::Outcome,
) -> Result<Option<Remediation>> {
    if outcome.reason == apply::BUSY {
        ctx.changes.mark(Some(ns), false).await;
        return Ok(None);
    }
    let status = apply::with_phase(
        r,
        outcome.status.clone(),
        outcome.phase,
        outcome.reason,
        &outcome.message,
    );
    let updated = apply::record_status(api, name, &status).await?;
    ctx.remember(updated.clone());
    Ok(Some(updated))
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    ctx: &Context,
    api: &Api<Remediation>,
    ns: &str,
    name: &str,
    decision: Decision,
    seen: Seen,
    plan: Option<&plan::Planned>,
    rem: Option<&Remediation>,
    gitops: &dyn Fn(&crate::model::ObjectRef) -> Option<String>,
) -> Result<()> {
    match decision {
        Decision::Nothing => {
            // Same plan, other words (evidence, message): refresh the spec quietly.
            if let (Some(p), Some(r)) = (plan, rem)
                && r.spec.plan_digest.as_deref() == Some(p.view.digest.as_str())
                && !plan::same_owned_spec(&r.spec, &p.spec)
            {
                match apply::upsert(api, name, ns, &p.spec, Some(r)).await {
                    Ok(updated) => ctx.remember(updated),
                    Err(e) if apply::lost_race(&e) => {
                        return retry_later(ctx, api, ns, name, Some(r), Some(&e)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Decision::Publish { first, rolled_back } => {
            let Some(p) = plan else { return Ok(()) };
            let message = match rem {
                Some(_) if rolled_back => format!(
                    "rolled back, and the target has changed since: this is the plan for it now ({}); the rollback request stands, so nothing is written unless you approve it (`meshmedic approve {name} -n {ns}`, which withdraws the request)",
                    p.view.digest
                ),
                Some(r) => plan::describe_change(&r.spec, &p.spec),
                None => format!(
                    "proposed plan {}; approve it with `meshmedic approve {name} -n {ns}`",
                    p.view.digest
                ),
            };
            let reason = if first { "Proposed" } else { "PlanChanged" };
            let phase = if rolled_back {
                Phase::RolledBack
            } else {
                Phase::Proposed
            };
            let Some(updated) =
                apply::publish(api, name, ns, &p.spec, rem, phase, reason, &message).await?
            else {
                return retry_later(ctx, api, ns, name, rem, None).await;
            };
            apply::event(&ctx.recorder, &updated, !first, reason, &message).await;
            ctx.published(ns, name, &p.view.digest);
            ctx.remember(updated);
        }
        Decision::Withdraw => {
            let Some(r) = rem else { return Ok(()) };
            if !apply::withdraw(api, r).await? {
                return retry_later(ctx, api, ns, name, Some(r), None).await;
            }
            ctx.metrics.outcome("withdrawn");
            tracing::info!(remediation = %name, namespace = %ns, "withdrawn: the cause went away within the settle time, untouched");
        }
        Decision::Apply { auto } => {
            let Some(r) = rem else { return Ok(()) };
            let outcome =
                apply::apply_fix(&ctx.client, api, r, &ctx.metrics, &ctx.args.identity).await;
            let Some(updated) = record_outcome(ctx, api, ns, name, r, &outcome).await? else {
                return Ok(());
            };
            let wrote = outcome.wrote.is_some();
            if let Some(rv) = outcome.wrote {
                ctx.set_pending(r.spec.target.to_string(), rv_number(Some(&rv)));
                ctx.metrics.outcome("applied");
            } else {
                ctx.metrics.outcome("failed");
            }
            if !auto && let Some(d) = r.spec.approved_digest.as_deref() {
                // The approval is used up by the attempt it allowed: a failed write is retried
                // only on a new approval (no retry loop). Should this fail for good, the pass
                // that records the write's outcome consumes it (`Decision::Set`).
                if let Some(u) = consume_used_approval(ctx, api, ns, name, d).await {
                    ctx.remember(u);
                }
            }
            apply::event(
                &ctx.recorder,
                &updated,
                !wrote,
                outcome.reason,
                &outcome.message,
            )
            .await;
            tracing::info!(remediation = %name, namespace = %ns, phase = outcome.phase.as_str(), "{}", outcome.message);
        }
        Decision::Rollback | Decision::Supersede { .. } => {
            let Some(r) = rem else { return Ok(()) };
            let mut outcome =
                apply::rollback_fix(&ctx.client, api, r, &ctx.metrics, &ctx.args.identity).await;
            if let Decision::Supersede { by } = &decision {
                if outcome.phase == Phase::RolledBack {
                    outcome.reason = Reason::Superseded.as_str();
                    outcome.message = format!(
                        "{}: {by}. Only one of the two could take effect, and the person's is the one to keep; the fix, if still needed, is planned on it",
                        outcome.message
                    );
                } else if outcome.reason == "TargetChanged" {
                    // Changed on the live object before the watch showed it: a person's edit,
                    // so theirs (as step 2 of `decide` records it once seen), never retried.
                    outcome.status.reverted = true;
                    outcome.phase = if plan.is_some() {
                        Phase::Proposed
                    } else {
                        Phase::Resolved
                    };
                    outcome.reason = Reason::Reverted.as_str();
                    outcome.message = format!(
                        "{}, which meshmedic created, is not deleted although {by} configures the same thing: someone changed it, so it is theirs now. Only one of the two takes effect: keep one and delete the other by hand ({})",
                        r.spec.target, outcome.message
                    );
                }
            }
            let Some(updated) = record_outcome(ctx, api, ns, name, r, &outcome).await? else {
                return Ok(());
            };
            let ok = outcome.phase == Phase::RolledBack;
            if ok {
                ctx.set_pending(
                    r.spec.target.to_string(),
                    outcome.wrote.as_deref().and_then(|rv| rv_number(Some(rv))),
                );
            }
            ctx.metrics
                .outcome(if ok { "rolled_back" } else { "refused" });
            apply::event(
                &ctx.recorder,
                &updated,
                !ok,
                outcome.reason,
                &outcome.message,
            )
            .await;
            tracing::info!(remediation = %name, namespace = %ns, phase = outcome.phase.as_str(), "{}", outcome.message);
        }
        Decision::Set { phase, reason } => {
            let Some(r) = rem else { return Ok(()) };
            let target = &r.spec.target;
            let mut status = r.status.clone().unwrap_or_default();
            let still: Vec<&str> = plan
                .map(|p| p.spec["message"].as_str().unwrap_or_default())
                .into_iter()
                .collect();
            let new_proposal = if plan.is_some() {
                "; the fix is a new proposal and needs a new approval"
            } else {
                ""
            };
            let message = match reason {
                Reason::ApprovalOutdated => format!(
                    "the approval names {} but the plan is {}: nothing is written and that approval is withdrawn; approve the current plan",
                    r.spec.approved_digest.as_deref().unwrap_or("?"),
                    r.spec.plan_digest.as_deref().unwrap_or("?")
                ),
                Reason::GitOpsManaged => format!(
                    "{target} is managed by {}: proposal only (set spec.allowLivePatch: true on this Remediation to apply it live anyway)",
                    gitops(target).unwrap_or_default()
                ),
                Reason::WriteLimit => format!(
                    "meshmedic wrote {target} {} times for this Remediation; it writes no more until a person looks (roll back, or fix by hand)",
                    status.writes
                ),
                Reason::Verified => format!(
                    "verified: after the write, the analysis no longer finds {} on {target}",
                    r.spec.code
                ),
                Reason::Ineffective => format!(
                    "ineffective: after the write the analysis still finds: {}",
                    still.join("; ")
                ),
                Reason::Mitigation => format!(
                    "applied as a mitigation: {} is not expected to clear (the cure is in the app)",
                    r.spec.code
                ),
                Reason::CauseGone => {
                    "the analysis no longer finds this cause (meshmedic wrote nothing)".to_string()
                }
                Reason::Reverted
                    if seen.view == TargetView::Absent
                        && status.original.as_ref().is_some_and(|o| !o.existed) =>
                {
                    format!(
                        "someone deleted {target}, which meshmedic had created: not created again{new_proposal}"
                    )
                }
                Reason::Reverted if status.original.as_ref().is_some_and(|o| !o.existed) => {
                    format!(
                        "someone changed {target}, which meshmedic created: it is theirs now, never rewritten or deleted by meshmedic (a rollback refuses){}{new_proposal}",
                        match &seen.beside {
                            Some(by) => format!(
                                ". {by} configures the same thing and only one of the two takes effect: keep one, delete the other by hand"
                            ),
                            None => String::new(),
                        }
                    )
                }
                Reason::Reverted => format!(
                    "someone changed the fields meshmedic wrote on {target}: not re-applied; the fix is a new proposal and needs a new approval"
                ),
                Reason::TargetChanged => format!(
                    "rollback refused, nothing written: someone changed the fields meshmedic wrote on {target} since"
                ),
                Reason::TargetDeleted => format!("{target} was deleted; nothing to do"),
                Reason::NothingWritten => {
                    "rollback requested; meshmedic had written nothing".to_string()
                }
                Reason::Proposed => format!(
                    "proposed plan {}; approve it with `meshmedic approve {name} -n {ns}`",
                    r.spec.plan_digest.as_deref().unwrap_or("?")
                ),
                Reason::TargetNamespaceOff => format!(
                    "{target} is in namespace {}, which is not opted in (meshmedic.io/mode: propose or apply on that Namespace): meshmedic writes nothing there. Apply the fix there by hand, or opt the namespace in; an approval given here is kept and used then",
                    target.namespace
                ),
                Reason::Superseded => format!(
                    "{target}, which meshmedic had created, was deleted: a person's object configures the same thing"
                ),
                Reason::Reappeared => format!(
                    "the cause is back; proposed plan {}{}",
                    r.spec.plan_digest.as_deref().unwrap_or("?"),
                    if r.spec.approved_digest.is_some() {
                        "; the approval given before it went away is used up: approve it again"
                    } else {
                        ""
                    }
                ),
            };
            // Counted once written: a write refused and tried again is one outcome.
            let mut outcomes: Vec<&'static str> = Vec::new();
            if reason == Reason::Reverted {
                // Counted once: a record written again to name an object beside is no new revert.
                if !status.reverted {
                    outcomes.push("reverted");
                }
                status.reverted = true;
            }
            let generation = r.metadata.generation;
            match reason {
                Reason::Verified => {
                    apply::set_condition(
                        &mut status,
                        generation,
                        "Verified",
                        true,
                        "Verified",
                        &message,
                    );
                    outcomes.push("verified");
                }
                Reason::Ineffective | Reason::Mitigation => {
                    apply::set_condition(
                        &mut status,
                        generation,
                        "Verified",
                        false,
                        reason.as_str(),
                        &message,
                    );
                    outcomes.push(if reason == Reason::Ineffective {
                        "ineffective"
                    } else {
                        "mitigation"
                    });
                }
                // The write that was verified is undone: the condition says so instead of
                // standing as a stale True.
                Reason::Reverted if status.conditions.iter().any(|c| c.type_ == "Verified") => {
                    apply::set_condition(
                        &mut status,
                        generation,
                        "Verified",
                        false,
                        "Reverted",
                        &message,
                    );
                }
                Reason::WriteLimit | Reason::TargetChanged => outcomes.push("refused"),
                _ => {}
            }
            // An approval belongs to the plan and the episode it was given in: one the cause
            // outlived is not carried over to its return, and one of a plan since replaced does
            // not come back to life if the plan returns to it (the person approved a plan that
            // was already stale, or weeks ago). It is removed before the status says Proposed,
            // so no pass can apply it in between; conditional on the version read, so an
            // approval given again since is kept.
            // Likewise an approval still standing beside the record of the write it allowed
            // (Applied for reason Applied, the approved plan written): the writer's own removal
            // failed, or another replica records the outcome first. Not after that record,
            // where the same digest may be a person's new approval (after a revert, say).
            let used = |d: &str| {
                r.status.as_ref().is_some_and(|s| {
                    s.phase == Phase::Applied
                        && s.applied_digest.as_deref() == Some(d)
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.reason == "Applied")
                })
            };
            let consumed;
            let r = match r.spec.approved_digest.as_deref() {
                Some(d)
                    if matches!(reason, Reason::Reappeared | Reason::ApprovalOutdated)
                        || used(d) =>
                {
                    match apply::consume_approval(api, name, d, r.resource_version().as_deref())
                        .await
                    {
                        Ok(u) => {
                            consumed = u;
                            &consumed
                        }
                        // A failed `test`: the Remediation changed since it was read.
                        Err(e) if apply::is_conflict(&e) => {
                            return retry_later(ctx, api, ns, name, Some(r), Some(&e)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => r,
            };
            let status = apply::with_phase(r, status, phase, reason.as_str(), &message);
            let updated = match apply::write_status(api, r, &status).await {
                Err(e) if apply::lost_race(&e) => {
                    return retry_later(ctx, api, ns, name, Some(r), Some(&e)).await;
                }
                r => r?,
            };
            for outcome in outcomes {
                ctx.metrics.outcome(outcome);
            }
            ctx.remember(updated.clone());
            let warning = matches!(
                reason,
                Reason::Ineffective
                    | Reason::Reverted
                    | Reason::TargetChanged
                    | Reason::WriteLimit
                    | Reason::GitOpsManaged
                    | Reason::ApprovalOutdated
            );
            apply::event(&ctx.recorder, &updated, warning, reason.as_str(), &message).await;
        }
    }
    Ok(())
}

fn update_phase_gauge(ctx: &Context) {
    let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
    for p in Phase::ALL {
        counts.insert(p.as_str(), 0);
    }
    for r in ctx.remediations.state() {
        let phase = r.status.as_ref().map(|s| s.phase).unwrap_or_default();
        *counts.entry(phase.as_str()).or_default() += 1;
    }
    for (phase, n) in counts {
        ctx.metrics
            .remediations
            .get_or_create(&PhaseLabels {
                phase: phase.to_string(),
            })
            .set(n);
    }
}
