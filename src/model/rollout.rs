//! Argo Rollouts' `Rollout` (`argoproj.io/v1alpha1`), as far as the analysis reads it: a
//! Deployment-like workload (its pods come from `spec.template`, or from the Deployment
//! `spec.workloadRef` names), common beside Istio for canary and blue-green releases. The rest
//! of its spec (strategy, traffic routing, analysis) is left to serde's ignoring.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;

/// The label the Rollout controller puts on the pods of each revision and adds to the
/// selectors of its canary and stable Services (and to DestinationRule subsets), so a Service
/// read from a live cluster selects on it although the template does not carry it.
pub const POD_TEMPLATE_HASH: &str = "rollouts-pod-template-hash";

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: RolloutSpec,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    #[serde(default)]
    pub template: Option<PodTemplateSpec>,
    /// The Deployment whose template the Rollout uses instead of its own.
    #[serde(default)]
    pub workload_ref: Option<WorkloadRef>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}
