//! Prometheus metrics, and the HTTP endpoints `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;

use super::sync::{Readiness, SyncStates};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub code: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub findings: Family<FindingLabels, Gauge>,
    pub remediations: Family<PhaseLabels, Gauge>,
    pub reconcile_seconds: Histogram,
    pub api_errors: Family<OperationLabels, Counter>,
    pub leader: Gauge,
    /// What happened to fixes: applied, verified, ineffective, mitigation, reverted,
    /// rolled_back, refused, failed, withdrawn.
    pub outcomes: Family<OutcomeLabels, Counter>,
    /// 1 while a watched kind's store holds a complete list (set when scraped).
    pub store_synced: Family<KindLabels, Gauge>,
    /// Findings withheld because a kind they read has not synced, by code.
    pub findings_withheld: Family<CodeLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("meshmedic");
        let findings = Family::<FindingLabels, Gauge>::default();
        let remediations = Family::<PhaseLabels, Gauge>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let api_errors = Family::<OperationLabels, Counter>::default();
        let leader = Gauge::default();
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "remediation_outcomes",
            "Writes meshmedic made and what came of them (applied, verified, ineffective, mitigation, reverted, rolled_back, refused, failed, withdrawn)",
            outcomes.clone(),
        );
        registry.register(
            "findings",
            "Findings by code and namespace",
            findings.clone(),
        );
        registry.register(
            "remediations",
            "Remediations by phase",
            remediations.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to re-analyse and sync the namespaces an event touched",
            reconcile_seconds.clone(),
        );
        registry.register(
            "api_errors",
            "Kubernetes API errors by operation",
            api_errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease",
            leader.clone(),
        );
        let store_synced = Family::<KindLabels, Gauge>::default();
        let findings_withheld = Family::<CodeLabels, Gauge>::default();
        registry.register(
            "store_synced",
            "1 while the store of a watched kind holds a complete list; 0 while its CRD is missing, access is forbidden or the API server is unreachable",
            store_synced.clone(),
        );
        registry.register(
            "findings_withheld",
            "Findings withheld (neither proposed, applied nor resolved) because a kind they read has not synced",
            findings_withheld.clone(),
        );
        Metrics {
            store_synced,
            findings_withheld,
            registry,
            findings,
            remediations,
            reconcile_seconds,
            api_errors,
            leader,
            outcomes,
        }
    }
}

impl Metrics {
    pub fn outcome(&self, outcome: &str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn api_error(&self, operation: &str) {
        self.api_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }
}

/// What the HTTP endpoints read.
pub struct Health {
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    /// Which watched kinds have synced.
    pub sync: Arc<SyncStates>,
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(h): State<Arc<Health>>) -> Result<String, StatusCode> {
    for (kind, synced) in h.sync.states() {
        h.metrics
            .store_synced
            .get_or_create(&KindLabels { kind })
            .set(i64::from(synced));
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &h.metrics.registry)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(text)
}

/// 503 until the core kinds first synced, and while one is not synced; 200 `degraded` (with
/// the kinds) while only Istio kinds are missing: the rest of the analysis works.
async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, String) {
    let started = h.ready.load(Ordering::Relaxed);
    match h.sync.readiness() {
        Readiness::Ready if started => (StatusCode::OK, "ok".into()),
        Readiness::Degraded(kinds) if started => (
            StatusCode::OK,
            format!(
                "degraded: not synced: {}; findings that read them are withheld",
                kinds.join(", ")
            ),
        ),
        Readiness::NotReady(kinds) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not synced: {}", kinds.join(", ")),
        ),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "caches are syncing".into()),
    }
}
