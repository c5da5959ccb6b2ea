//! The operator (`meshmedic run`): watches opted-in namespaces, keeps one Remediation per
//! (finding code, target), and applies the approved (or, in `apply` mode, the safe) fixes.
//!
//! Shape: watchers fill reflector stores and mark the namespaces an event touched; one loop
//! takes those marks, builds a snapshot from the stores, re-analyses only those namespaces with
//! the same pure analysis as `meshmedic analyze`, and turns the result into writes through
//! [`plan::plan_namespace`] (pure, tested without a cluster). Only the leader writes.

pub mod apply;
pub mod evidence;
pub mod gitops;
pub mod metrics;
pub mod plan;
pub mod stores;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::analysis::analyze_in;
use crate::error::{Error, Result};
use crate::model::keys;
use crate::model::remediation::{Phase, Remediation};
use crate::snapshot::{Snapshot, SnapshotOptions};
use metrics::{FindingLabels, Health, Metrics, PhaseLabels};
use plan::{Mode, Step, gitops_owner, plan_namespace};

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
    .default_backoff()
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
                Mode::from_annotation(meta.annotations.get(keys::MODE).map(String::as_str)),
            )
        })
        .collect()
}

/// One pass: re-analyse the touched namespaces and sync their Remediations.
pub async fn reconcile(ctx: &Context, dirty: stores::Dirty) -> Result<()> {
    let options = SnapshotOptions {
        cluster_domain: ctx.args.cluster_domain.clone(),
        istio_version: ctx.args.istio_version.clone(),
        mesh_config: None,
        ..SnapshotOptions::default()
    };
    let snapshot = stores::snapshot(&ctx.watched, options)?;
    let modes = modes(&snapshot);
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
        let (held, mine): (Vec<&Remediation>, Vec<&Remediation>) = existing
            .iter()
            .map(|r| &**r)
            .filter(|r| r.namespace().as_deref() == Some(ns))
            .partition(|r| withheld.contains_key(&r.spec.code));
        let gitops = |t: &crate::model::ObjectRef| {
            let raw = snapshot.raw_object(t)?;
            let map = |p: &str| -> BTreeMap<String, String> {
                raw.pointer(p)
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default()
            };
            gitops_owner(&map("/metadata/labels"), &map("/metadata/annotations"))
        };
        let steps = plan_namespace(mode, &findings, &mine, &gitops);
        let api: Api<Remediation> = Api::namespaced(ctx.client.clone(), ns);
        for step in steps {
            if !ctx.fence.holds(false).await {
                return Err(Error::Other(
                    "the lease is no longer ours; pass abandoned".into(),
                ));
            }
            if let Err(e) = execute(ctx, &api, ns, &mine, step).await {
                ctx.metrics.api_error("remediation");
                tracing::warn!(namespace = %ns, error = %e, "writing a Remediation failed");
            }
        }
        // Withheld Remediations say which kinds they wait for (and nothing else happens to
        // them); the others drop a `Synced=False` they carried.
        for rem in held.iter().chain(&mine) {
            let missing = match (
                withheld.contains_key(&rem.spec.code),
                told.get(&rem.spec.code),
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
            if let Err(e) = sync::write_condition(&api, rem, missing).await {
                ctx.metrics.api_error("remediation");
                tracing::warn!(namespace = %ns, error = %e, "writing a Remediation's Synced condition failed");
            }
        }
    }
    update_phase_gauge(ctx);
    Ok(())
}

fn update_phase_gauge(ctx: &Context) {
    let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
    for p in [
        Phase::Proposed,
        Phase::Applied,
        Phase::Failed,
        Phase::Stale,
        Phase::Resolved,
        Phase::RolledBack,
    ] {
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

async fn execute(
    ctx: &Context,
    api: &Api<Remediation>,
    ns: &str,
    mine: &[&Remediation],
    step: Step,
) -> Result<()> {
    let find = |name: &str| {
        mine.iter()
            .find(|r| r.name_any() == name)
            .map(|r| (*r).clone())
    };
    match step {
        Step::Upsert { name, spec } => {
            let rem = apply::upsert(api, &name, ns, &spec).await?;
            let previous = find(&name).and_then(|r| r.status).map(|s| s.phase);
            // A new or re-planned fix waits for review again; RolledBack stays as the reviewer left it.
            if previous != Some(Phase::RolledBack) {
                let message = if previous.is_none() {
                    "proposed"
                } else {
                    "re-planned after a change"
                };
                apply::set_status(
                    api,
                    &rem,
                    Phase::Proposed,
                    "Planned",
                    message,
                    serde_json::json!({"lastError": null}),
                )
                .await?;
                if previous.is_none() {
                    apply::event(&ctx.recorder, &rem, false, "Proposed", &rem.spec.message).await;
                }
            }
        }
        Step::Resolve { name } => {
            if let Some(rem) = find(&name) {
                apply::set_status(
                    api,
                    &rem,
                    Phase::Resolved,
                    "CauseGone",
                    "the analysis no longer finds this cause",
                    serde_json::json!({}),
                )
                .await?;
                apply::event(&ctx.recorder, &rem, false, "Resolved", "the cause is gone").await;
            }
        }
        Step::Apply { name } => {
            if let Some(rem) = find(&name) {
                let outcome = apply::apply_fix(&ctx.client, &rem, &ctx.metrics).await;
                let warning = outcome.phase != Phase::Applied;
                apply::set_status(
                    api,
                    &rem,
                    outcome.phase,
                    outcome.phase.as_str(),
                    &outcome.message,
                    outcome.status,
                )
                .await?;
                apply::event(
                    &ctx.recorder,
                    &rem,
                    warning,
                    outcome.phase.as_str(),
                    &outcome.message,
                )
                .await;
                tracing::info!(remediation = %name, namespace = %ns, phase = outcome.phase.as_str(), "{}", outcome.message);
                if outcome.phase == Phase::Stale {
                    ctx.changes.mark(Some(ns), false).await;
                }
            }
        }
        Step::Rollback { name } => {
            if let Some(rem) = find(&name) {
                let outcome = apply::rollback_fix(&ctx.client, &rem, &ctx.metrics).await;
                let warning = outcome.phase != Phase::RolledBack;
                apply::set_status(
                    api,
                    &rem,
                    outcome.phase,
                    outcome.phase.as_str(),
                    &outcome.message,
                    outcome.status,
                )
                .await?;
                apply::event(&ctx.recorder, &rem, warning, "RolledBack", &outcome.message).await;
            }
        }
        Step::Hold { name, reason } => {
            if let Some(rem) = find(&name) {
                let said = rem
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.first())
                    .is_some_and(|c| c.message == reason);
                if !said {
                    apply::set_status(
                        api,
                        &rem,
                        Phase::Proposed,
                        "GitOpsManaged",
                        &reason,
                        serde_json::json!({}),
                    )
                    .await?;
                    apply::event(&ctx.recorder, &rem, true, "GitOpsManaged", &reason).await;
                }
            }
        }
    }
    Ok(())
}
