//! meshmedic's own resource: `Remediation` (`meshmedic.io/v1alpha1`), one per (finding code,
//! target object (every finding that wants to change that object is one of its `causes`). The
//! operator writes the spec (except `approvedDigest`, `rollback` and `allowLivePatch`, which belong
//! to a reviewer) and the status; `crds/` holds the CRD generated from these types.
//!
//! Versioning: still `v1alpha1`. Every field added for the closed loop is optional with a default,
//! so objects written by earlier releases still decode and old clients keep working; the old
//! boolean `approved` is still accepted but no longer applies anything (an approval must name the
//! plan digest it approves).

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
    /// The most severe cause's code (every cause is listed in `causes`).
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
    /// Every finding this change answers (findings that change the same object share one
    /// Remediation, so one object has one owner of each field meshmedic changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
    /// false: a mitigation that cannot clear its finding (the cure is in the app); it is never
    /// reported as Verified and never re-planned in a loop.
    #[serde(default = "yes")]
    pub resolves: bool,
    /// `sha256:<hex>` over the canonical JSON of the target's `spec` as the plan was made from
    /// it (absent for a new object). The write happens only while the live target still has this
    /// spec: a change made since (by a person, at the same field or elsewhere) is never
    /// overwritten by an approval given before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<String>,
    /// `sha256:<hex>` over the canonical JSON of {action, target, patch, resource, baseDigest}:
    /// the plan a reviewer approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_digest: Option<String>,
    /// Set by a reviewer (`meshmedic approve`): apply the plan with this digest. An approval of
    /// any other digest applies nothing; it is consumed by the write it allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_digest: Option<String>,
    /// Deprecated (v1alpha1 before the closed loop): ignored; approve a digest instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approved: bool,
    /// Set by a reviewer: restore the target to what it was before meshmedic first wrote it.
    #[serde(default)]
    pub rollback: bool,
    /// Set by a reviewer: write this fix even though a GitOps tool manages the target.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_live_patch: bool,
}

fn yes() -> bool {
    true
}

/// One finding a Remediation answers.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cause {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    #[serde(default = "yes")]
    pub resolves: bool,
}

/// The part of a target meshmedic writes and restores: whether it exists, and its `spec`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRecord {
    /// false: the object did not exist (meshmedic created it; rollback deletes it).
    pub existed: bool,
    /// `{}` when it did not exist.
    #[serde(default)]
    #[schemars(schema_with = "any_object_schema")]
    pub spec: Value,
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
    /// Written; see the `Verified` condition for whether it worked.
    Applied,
    Failed,
    /// The target changed (or vanished) since the fix was planned; meshmedic re-analyses.
    Stale,
    /// The cause is gone: verified after meshmedic's write, or gone by itself (`CauseGone`).
    Resolved,
    RolledBack,
    /// meshmedic declined to write (rollback over someone else's edit, write limit reached).
    Refused,
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
            Phase::Refused => "Refused",
        }
    }

    pub const ALL: [Phase; 7] = [
        Phase::Proposed,
        Phase::Applied,
        Phase::Failed,
        Phase::Stale,
        Phase::Resolved,
        Phase::RolledBack,
        Phase::Refused,
    ];
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
    /// The digest of the plan meshmedic last wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
    /// The digest of the last write that failed (it is not retried until the plan changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_digest: Option<String>,
    /// The target before meshmedic's first write for this Remediation: rollback restores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<TargetRecord>,
    /// The target as meshmedic's last write left it (rollback refuses if the fields meshmedic
    /// changed no longer hold these values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<TargetRecord>,
    /// One RFC 6902 patch per write since `original`, each undoing exactly that write (with
    /// `test`s of what it wrote): rollback applies them last first, in one request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "undo_schema")]
    pub undo: Vec<Vec<Value>>,
    /// Writes to the target since `original` was recorded (capped; see the README).
    #[serde(default)]
    pub writes: u32,
    /// Writes meshmedic started (each claimed with an optimistic update of this status first, so
    /// two writers never act on one decision).
    #[serde(default)]
    pub write_attempts: u32,
    /// The replica writing the target right now (claimed before the write, cleared with the
    /// result): no other replica decides anything for this Remediation meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Someone changed the fields meshmedic wrote: only a new approval writes again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverted: bool,
}

fn json_patch_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "nullable": true,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

fn undo_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
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
