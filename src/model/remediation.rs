//! meshmedic's own resource: `Remediation` (`meshmedic.io/v1alpha1`), one per (finding code,
//! target). The operator writes the spec (except `approved` and `rollback`, which belong to a
//! reviewer) and the status; `crds/` holds the CRD generated from these types.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ObjectRef;
use crate::analysis::{Code, Severity};
use crate::remediation::Action;

/// A proposed fix for one finding, for a person to review and approve.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "meshmedic.io",
    version = "v1alpha1",
    kind = "Remediation",
    namespaced,
    shortname = "rem",
    status = "RemediationStatus",
    printcolumn = r#"{"name":"Code","type":"string","jsonPath":".spec.code"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetDisplay"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSpec {
    pub code: Code,
    pub severity: Severity,
    pub target: ObjectRef,
    /// `Kind/name` of the target, for `kubectl get remediations`.
    pub target_display: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub message: String,
    #[serde(default)]
    pub evidence: Vec<String>,
    pub action: RemediationAction,
    /// RFC 6902 operations against the target as it was analysed (`action: patch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_patch_schema")]
    pub patch: Option<Vec<Value>>,
    /// The corrected target, or the new object (`action: create`).
    #[schemars(schema_with = "any_object_schema")]
    pub resource: Value,
    pub safe_to_auto_apply: bool,
    /// Set by a reviewer: apply this fix.
    #[serde(default)]
    pub approved: bool,
    /// Set by a reviewer: undo an applied fix.
    #[serde(default)]
    pub rollback: bool,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RemediationAction {
    Patch,
    Create,
}

impl From<Action> for RemediationAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Patch => RemediationAction::Patch,
            Action::Create => RemediationAction::Create,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum Phase {
    /// Waiting for review (or for apply mode).
    #[default]
    Proposed,
    Applied,
    Failed,
    /// The target changed since the fix was planned; meshmedic re-analyses.
    Stale,
    /// The cause is gone.
    Resolved,
    RolledBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Proposed => "Proposed",
            Phase::Applied => "Applied",
            Phase::Failed => "Failed",
            Phase::Stale => "Stale",
            Phase::Resolved => "Resolved",
            Phase::RolledBack => "RolledBack",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The patch meshmedic applied (or, for `create`, null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_patch_schema")]
    pub applied_patch: Option<Vec<Value>>,
    /// The patch that restores the target exactly (for `create`: delete the object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_patch_schema")]
    pub rollback_patch: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resource_version_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resource_version_after: Option<String>,
    /// The last error, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn json_patch_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "nullable": true,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

fn any_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// The CRD as YAML, as `meshmedic crd` prints it and `crds/` stores it.
pub fn crd_yaml() -> Result<String, String> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&Remediation::crd()).map_err(|e| e.to_string())
}
