//! Prometheus metrics, and the HTTP endpoints `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
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

pub struct Metrics {
    pub registry: Registry,
    pub findings: Family<FindingLabels, Gauge>,
    pub remediations: Family<PhaseLabels, Gauge>,
    pub reconcile_seconds: Histogram,
    pub api_errors: Family<OperationLabels, Counter>,
    pub leader: Gauge,
    /// What happened to fixes: applied, verified, ineffective, mitigation, reverted,
    /// rolled_back, refused, failed.
    pub outcomes: Family<OutcomeLabels, Counter>,
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
            "Writes meshmedic made and what came of them (applied, verified, ineffective, mitigation, reverted, rolled_back, refused, failed)",
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
        Metrics {
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
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(h): State<Arc<Health>>) -> Result<String, StatusCode> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &h.metrics.registry)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(text)
}

async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches are syncing")
    }
}
