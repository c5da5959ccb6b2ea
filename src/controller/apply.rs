//! Writing to the API server: Remediation resources (server-side apply), fixes (JSON patch after
//! a server-side dry-run, or a new object), exact rollbacks, status and events. What to write is
//! decided by `lifecycle`; this module only does it and reports what happened.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::metrics::Metrics;
use super::restore::{self, restore_ops, undo, undo_patch};
use super::stores::api_resource;
use crate::model::ObjectRef;
use crate::model::remediation::{
    Phase, Remediation, RemediationAction, RemediationStatus, TargetRecord,
};

pub const FIELD_MANAGER: &str = "meshmedic";

/// Why meshmedic writes no object of the target's kind, for the person who approved it.
pub fn not_written(target: &ObjectRef) -> String {
    match target.kind.as_str() {
        // A Pod of its own: a patch of its annotations would change nothing (and a re-analysis
        // of the object would call it verified); its probes cannot be changed at all.
        "Pod" => format!(
            "meshmedic does not write Pod objects: a Pod reads its containers, probes and the \
             annotations the injector and the proxy read only when it is created; fix the \
             manifest {} is created from (`meshmedic fix` writes it) and create it again",
            target.name
        ),
        kind => format!("meshmedic does not write {kind} objects"),
    }
}

/// The resource of a target kind meshmedic may patch or create.
pub fn target_api(client: &Client, target: &ObjectRef) -> Option<Api<DynamicObject>> {
    let (group, version) = target
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", &target.api_version));
    let plural = match target.kind.as_str() {
        "Deployment" => "deployments",
        "StatefulSet" => "statefulsets",
        "DaemonSet" => "daemonsets",
        "Rollout" => "rollouts",
        "DestinationRule" => "destinationrules",
        "VirtualService" => "virtualservices",
        "Sidecar" => "sidecars",
        _ => return None,
    };
    let ar = api_resource(group, version, &target.kind, plural);
    Some(Api::namespaced_with(client.clone(), &target.namespace, &ar))
}

/// What happened to an apply or rollback, for the status.
pub struct Outcome {
    pub phase: Phase,
    pub reason: &'static str,
    pub message: String,
    /// The status after the write (records included).
    pub status: RemediationStatus,
    /// The target's resourceVersion after meshmedic's write, when it wrote.
    pub wrote: Option<String>,
}

/// Counts the attempt and claims the target for this replica in the Remediation's status, in one
/// optimistic update, so two replicas never write one target: `Ok(false)` when another writer
/// holds it or the Remediation changed since the decision was made.
async fn claim_target(
    api: &Api<Remediation>,
    rem: &Remediation,
    status: &mut RemediationStatus,
    identity: &str,
) -> Result<bool, kube::Error> {
    status.write_attempts += 1;
    if writing(rem).is_some() {
        return Ok(false);
    }
    status.writer = Some(identity.to_string());
    status.writer_since = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    match claim(api, rem, status).await {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The write found the object changed since it was read: a precondition or a `test` failed.
pub fn is_conflict(e: &kube::Error) -> bool {
    // A failed `test` operation is 422 (Invalid) on JSON patch; 409 is a write conflict.
    matches!(e, kube::Error::Api(s) if s.code == 422 || s.code == 409)
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn json_patch(ops: &[Value]) -> Result<json_patch::Patch, String> {
    serde_json::from_value(Value::Array(ops.to_vec())).map_err(|e| e.to_string())
}

fn spec_of(obj: &DynamicObject) -> Value {
    obj.data.get("spec").cloned().unwrap_or_else(|| json!({}))
}

/// Writes a Remediation's plan to its target: records the target's original state before the
/// first write for this Remediation (in the status, so it survives restarts), then dry-runs and
/// writes. The caller has decided (see `lifecycle`) that this write is allowed.
pub async fn apply_fix(
    client: &Client,
    api: &Api<Remediation>,
    rem: &Remediation,
    metrics: &Metrics,
    identity: &str,
) -> Outcome {
    let target = &rem.spec.target;
    let mut status = rem.status.clone().unwrap_or_default();
    let digest = rem.spec.plan_digest.clone();
    let fail = |status: &RemediationStatus, phase, reason, message: String| {
        let mut status = status.clone();
        // Not retried automatically: a new plan, or a new approval, tries again.
        status.failed_digest = digest.clone();
        if status.written.is_none() {
            // Nothing was written: the next first write records the original anew.
            status.original = None;
        }
        status.last_error = Some(message.clone());
        Outcome {
            phase,
            reason,
            message,
            status,
            wrote: None,
        }
    };
    let Some(tapi) = target_api(client, target) else {
        return fail(&status, Phase::Failed, "Unsupported", not_written(target));
    };
    let live = match tapi.get_opt(&target.name).await {
        Ok(o) => o,
        Err(e) => {
            metrics.api_error("get_target");
            return fail(
                &status,
                Phase::Failed,
                "Failed",
                format!("cannot read {target}: {e}"),
            );
        }
    };
    // 1. Claim the write and record the original before the first write (never overwritten by
    //    later writes), in one optimistic update: if the Remediation changed since this
    //    decision was made (another writer, a new approval), nothing is written.
    if status.original.is_none() {
        status.original = Some(TargetRecord {
            existed: live.is_some(),
            spec: live.as_ref().map(spec_of).unwrap_or_else(|| json!({})),
        });
    }
    match claim_target(api, rem, &mut status, identity).await {
        Ok(true) => {}
        Ok(false) => return busy(status),
        Err(e) => {
            metrics.api_error("record_original");
            return fail(
                &status,
                Phase::Failed,
                "Failed",
                format!("cannot record {target}'s original state, so nothing was written: {e}"),
            );
        }
    }
    // 2. The approval is for this change from the spec the plan was made from. If the target
    //    changed since (the watch has not shown it yet), a write would overwrite what a person
    //    did after the review: nothing is written; the next pass re-plans from the new spec. Checked once the
    //    claim is ours: only the replica that writes records the outcome.
    if let (Some(base), Some(obj)) = (rem.spec.base_digest.as_deref(), live.as_ref()) {
        let now = super::plan::spec_digest(&obj.data);
        if now != base {
            return fail(
                &status,
                Phase::Proposed,
                "TargetChanged",
                format!(
                    "{target} changed since this plan was made (its spec is no longer the one reviewed): nothing was written; the plan is made again from the new spec for review"
                ),
            );
        }
    }
    // 3. The write.
    let result = match rem.spec.action {
        RemediationAction::Patch => {
            let Some(before) = live.as_ref() else {
                return fail(
                    &status,
                    Phase::Stale,
                    "TargetDeleted",
                    format!(
                        "{target} does not exist (deleted since the fix was planned); nothing was written"
                    ),
                );
            };
            let Some(ops) = rem.spec.patch.as_deref() else {
                return fail(
                    &status,
                    Phase::Failed,
                    "Failed",
                    "the Remediation has no patch".into(),
                );
            };
            // Pinned to the version whose spec was just recorded as the original (when it is).
            let mut pinned = vec![
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": before.resource_version()}),
            ];
            pinned.extend(ops.iter().cloned());
            let patch = match json_patch(&pinned) {
                Ok(p) => p,
                Err(e) => {
                    return fail(
                        &status,
                        Phase::Failed,
                        "Failed",
                        format!("the patch is not RFC 6902: {e}"),
                    );
                }
            };
            let dry = PatchParams {
                dry_run: true,
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            let r = match tapi
                .patch(&target.name, &dry, &Patch::<()>::Json(patch.clone()))
                .await
            {
                Ok(_) => {
                    tapi.patch(&target.name, &params, &Patch::<()>::Json(patch))
                        .await
                }
                Err(e) => Err(e),
            };
            r.map(|after| (before.resource_version(), after))
        }
        RemediationAction::Create => {
            if live.is_some() {
                return fail(
                    &status,
                    Phase::Stale,
                    "Conflict",
                    format!(
                        "{target} already exists (created by someone else since the fix was planned); nothing was written"
                    ),
                );
            }
            let mut resource = rem.spec.resource.clone();
            // The new object belongs to its Remediation: deleting the Remediation deletes it.
            if let (Some(uid), Some(meta)) =
                (rem.metadata.uid.as_ref(), resource.get_mut("metadata"))
            {
                meta["ownerReferences"] = json!([{
                    "apiVersion": Remediation::api_version(&()),
                    "kind": Remediation::kind(&()),
                    "name": rem.name_any(),
                    "uid": uid,
                }]);
            }
            let obj: DynamicObject = match serde_json::from_value(resource) {
                Ok(o) => o,
                Err(e) => {
                    return fail(
                        &status,
                        Phase::Failed,
                        "Failed",
                        format!("the new object is not valid: {e}"),
                    );
                }
            };
            let dry = PostParams {
                dry_run: true,
                field_manager: Some(FIELD_MANAGER.into()),
            };
            let params = PostParams {
                dry_run: false,
                field_manager: Some(FIELD_MANAGER.into()),
            };
            let r = match tapi.create(&dry, &obj).await {
                Ok(_) => tapi.create(&params, &obj).await,
                Err(e) => Err(e),
            };
            r.map(|after| (None, after))
        }
    };
    match result {
        Ok((before_rv, after)) => {
            let written = spec_of(&after);
            // This write's own undo: from what it found (others' changes included) to what it
            // left. For a new object, from nothing.
            let found = live.as_ref().map(spec_of).unwrap_or_else(|| json!({}));
            status.undo.push(restore_ops("/spec", &found, &written));
            status.rollback_patch = Some(undo_patch(&status.undo));
            status.applied_patch = rem.spec.patch.clone();
            status.target_resource_version_before = before_rv;
            status.target_resource_version_after = after.resource_version();
            status.written = Some(TargetRecord {
                existed: true,
                spec: written,
            });
            status.writes += 1;
            status.applied_digest = digest.clone();
            status.failed_digest = None;
            status.reverted = false;
            status.last_error = None;
            let verb = match rem.spec.action {
                RemediationAction::Patch => "patched",
                RemediationAction::Create => "created",
            };
            Outcome {
                phase: Phase::Applied,
                reason: "Applied",
                message: format!(
                    "{verb} {target} with plan {} (write {} of at most {}); verifying",
                    digest.as_deref().unwrap_or("?"),
                    status.writes,
                    super::lifecycle::MAX_WRITES
                ),
                wrote: after.resource_version(),
                status,
            }
        }
        Err(e) if is_not_found(&e) => fail(
            &status,
            Phase::Stale,
            "TargetDeleted",
            format!("{target} was deleted while the fix was applied; nothing was written ({e})"),
        ),
        Err(e) if is_conflict(&e) => fail(
            &status,
            Phase::Stale,
            "Conflict",
            format!(
                "{target} changed since the fix was planned ({e}); nothing was written, re-analysing"
            ),
        ),
        Err(e) => {
            metrics.api_error("write_target");
            fail(
                &status,
                Phase::Failed,
                "Failed",
                format!("the API server rejects the fix to {target}: {e}"),
            )
        }
    }
}

/// Restores the target to the original recorded before meshmedic's first write: puts back the
/// old value of every field meshmedic changed (or deletes the object it created). Refuses, and
/// writes nothing, when someone else has changed any of those fields since.
pub async fn rollback_fix(
    client: &Client,
    api: &Api<Remediation>,
    rem: &Remediation,
    metrics: &Metrics,
    identity: &str,
) -> Outcome {
    let target = &rem.spec.target;
    let mut status = rem.status.clone().unwrap_or_default();
    let refuse = |status: &RemediationStatus, reason, message: String| {
        let mut status = status.clone();
        status.last_error = Some(message.clone());
        Outcome {
            phase: Phase::Refused,
            reason,
            message,
            status,
            wrote: None,
        }
    };
    let written = status.written.clone();
    let (Some(original), Some(_)) = (status.original.clone(), written.as_ref()) else {
        return refuse(
            &status,
            "NothingWritten",
            "meshmedic has not written this target".into(),
        );
    };
    match claim_target(api, rem, &mut status, identity).await {
        Ok(true) => {}
        Ok(false) => return busy(status),
        Err(e) => {
            metrics.api_error("claim");
            return refuse(
                &status,
                "Failed",
                format!("cannot update the Remediation, so nothing was written: {e}"),
            );
        }
    }
    let Some(tapi) = target_api(client, target) else {
        return refuse(&status, "Unsupported", not_written(target));
    };
    let done = |mut status: RemediationStatus, message: String, rv: Option<String>| {
        status.original = None;
        status.written = None;
        status.undo = Vec::new();
        status.writes = 0;
        status.applied_digest = None;
        status.reverted = false;
        status.last_error = None;
        if rv.is_some() {
            status.target_resource_version_after = rv.clone();
        }
        // The write that was verified is undone: the condition says so instead of standing as
        // a stale True beside RolledBack (seen by hand on the istio-tutorial's retries).
        if status.conditions.iter().any(|c| c.type_ == "Verified") {
            set_condition(
                &mut status,
                rem.metadata.generation,
                "Verified",
                false,
                "RolledBack",
                "the fix that was verified is rolled back: it is no longer in place",
            );
        }
        Outcome {
            phase: Phase::RolledBack,
            reason: "RolledBack",
            message,
            status,
            wrote: rv,
        }
    };
    let live = match tapi.get_opt(&target.name).await {
        Ok(o) => o,
        Err(e) => {
            metrics.api_error("get_target");
            let mut s = status.clone();
            s.last_error = Some(format!("cannot read {target}: {e}"));
            return Outcome {
                phase: Phase::Failed,
                reason: "Failed",
                message: format!("cannot read {target}: {e}"),
                status: s,
                wrote: None,
            };
        }
    };
    let Some(live) = live else {
        return if original.existed {
            refuse(
                &status,
                "TargetDeleted",
                format!(
                    "{target} was deleted by someone else; nothing to restore, nothing written"
                ),
            )
        } else {
            done(
                status,
                format!("{target}, which meshmedic created, is already gone"),
                None,
            )
        };
    };
    let current = spec_of(&live);
    let refused = |path: String| {
        format!(
            "rollback refused, nothing written: someone changed {target} at {path} after meshmedic wrote it; restore meshmedic's value there (or edit the target by hand), then request the rollback again"
        )
    };
    // An object meshmedic created goes if it is exactly as meshmedic last left it.
    let as_left = written.map(|w| w.spec == current).unwrap_or(false);
    let restored = match undo(&current, &status.undo) {
        Ok(spec) => spec,
        Err(_) if !original.existed && as_left => json!({}),
        Err(path) => return refuse(&status, "TargetChanged", refused(path)),
    };
    if !original.existed && restored.as_object().is_some_and(|m| !m.is_empty()) {
        let keys: Vec<String> = restored
            .as_object()
            .map(|m| m.keys().map(|k| format!("/spec/{k}")).collect())
            .unwrap_or_default();
        return refuse(&status, "TargetChanged", refused(keys.join(", ")));
    }
    if !original.existed {
        // Marked by someone else since (see `restore::others_marks`): theirs now, not deleted.
        let live_value = serde_json::to_value(&live).unwrap_or_default();
        let marks = restore::others_marks(&live_value, rem.metadata.uid.as_deref());
        if !marks.is_empty() {
            return refuse(
                &status,
                "TargetChanged",
                format!(
                    "rollback refused, nothing written: someone changed {target}, which meshmedic created, at {}; it is theirs now and meshmedic does not delete it. Delete it by hand if it should go, or undo those changes and request the rollback again",
                    marks.join(", ")
                ),
            );
        }
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: live.resource_version(),
                uid: None,
            }),
            ..Default::default()
        };
        return match tapi.delete(&target.name, &dp).await {
            Ok(_) => done(
                status,
                format!("deleted {target}, which meshmedic had created"),
                None,
            ),
            Err(e) if is_not_found(&e) => done(status, format!("{target} is already gone"), None),
            Err(e) if is_conflict(&e) => refuse(
                &status,
                "TargetChanged",
                format!(
                    "rollback refused: {target} changed while it was being deleted ({e}); nothing written"
                ),
            ),
            Err(e) => {
                metrics.api_error("rollback_delete");
                let mut s = status.clone();
                s.last_error = Some(format!("cannot delete {target}: {e}"));
                Outcome {
                    phase: Phase::Failed,
                    reason: "Failed",
                    message: format!("cannot delete {target}: {e}"),
                    status: s,
                    wrote: None,
                }
            }
        };
    }
    // The restored spec, as one patch pinned to the version just checked.
    let mut ops = vec![
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": live.resource_version()}),
    ];
    ops.extend(restore_ops("/spec", &restored, &current));
    if ops.len() == 1 {
        return done(
            status,
            format!("{target} already holds its original values"),
            None,
        );
    }
    let patch = match json_patch(&ops) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                &status,
                "Failed",
                format!("the rollback patch is not RFC 6902: {e}"),
            );
        }
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    status.rollback_patch = Some(ops);
    match tapi
        .patch(&target.name, &params, &Patch::<()>::Json(patch))
        .await
    {
        Ok(after) => done(
            status,
            format!("restored {target} to its state before meshmedic's first write"),
            after.resource_version(),
        ),
        Err(e) if is_conflict(&e) => refuse(
            &status,
            "TargetChanged",
            format!("rollback refused: {target} changed meanwhile ({e}); nothing written"),
        ),
        Err(e) if is_not_found(&e) => refuse(
            &status,
            "TargetDeleted",
            format!("{target} was deleted by someone else; nothing written"),
        ),
        Err(e) => {
            metrics.api_error("rollback_patch");
            let mut s = status.clone();
            s.last_error = Some(format!("cannot roll back {target}: {e}"));
            Outcome {
                phase: Phase::Failed,
                reason: "Failed",
                message: format!("cannot roll back {target}: {e}"),
                status: s,
                wrote: None,
            }
        }
    }
}

/// How long a claim holds: a replica that died mid-write does not block the Remediation longer.
const CLAIM_SECONDS: i64 = 30;

/// The other replica writing this Remediation's target right now, if any.
pub fn writing(rem: &Remediation) -> Option<String> {
    let s = rem.status.as_ref()?;
    let since = s.writer_since.as_ref()?;
    let age = k8s_openapi::jiff::Timestamp::now().as_second() - since.0.as_second();
    (age < CLAIM_SECONDS).then(|| s.writer.clone()).flatten()
}

/// Another writer changed the Remediation since the decision: nothing done, decide again.
pub const BUSY: &str = "Busy";

fn busy(status: RemediationStatus) -> Outcome {
    Outcome {
        phase: status.phase,
        reason: BUSY,
        message: "the Remediation changed meanwhile; deciding again".into(),
        status,
        wrote: None,
    }
}

/// Replaces the status only if the Remediation is still at the resourceVersion the decision
/// was made on (409 otherwise).
async fn claim(
    api: &Api<Remediation>,
    rem: &Remediation,
    status: &RemediationStatus,
) -> kube::Result<Remediation> {
    let mut obj = rem.clone();
    obj.status = Some(status.clone());
    api.replace_status(&rem.name_any(), &PostParams::default(), &obj)
        .await
}

/// Replaces the whole status, only if the Remediation is still at the resourceVersion the
/// decision was made on (409 otherwise: the caller decides again on the next pass). Fields
/// meshmedic removes disappear; records such as `original` are never merged with older ones.
pub async fn write_status(
    api: &Api<Remediation>,
    rem: &Remediation,
    status: &RemediationStatus,
) -> kube::Result<Remediation> {
    claim(api, rem, status).await
}

/// Records the status after a write to the target: it must not be lost, so a conflict (a
/// reviewer edited the spec meanwhile) re-reads the Remediation and writes the status again.
pub async fn record_status(
    api: &Api<Remediation>,
    name: &str,
    status: &RemediationStatus,
) -> kube::Result<Remediation> {
    let mut status = status.clone();
    status.writer = None;
    status.writer_since = None;
    let status = &status;
    for _ in 0..4 {
        let current = api.get(name).await?;
        match claim(api, &current, status).await {
            Err(e) if is_conflict(&e) => continue,
            r => return r,
        }
    }
    let current = api.get(name).await?;
    claim(api, &current, status).await
}

/// Whether a Remediation write lost a race with another writer.
pub fn lost_race(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// `status` with phase and Ready condition (and `observedGeneration`) set.
pub fn with_phase(
    rem: &Remediation,
    mut status: RemediationStatus,
    phase: Phase,
    reason: &str,
    message: &str,
) -> RemediationStatus {
    let ok = matches!(
        phase,
        Phase::Applied | Phase::Resolved | Phase::RolledBack | Phase::Proposed
    );
    status.phase = phase;
    status.observed_generation = rem.metadata.generation;
    set_condition(
        &mut status,
        rem.metadata.generation,
        "Ready",
        ok,
        reason,
        message,
    );
    status
}

/// Sets one condition by type (the transition time changes only with its status).
pub fn set_condition(
    status: &mut RemediationStatus,
    generation: Option<i64>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let value = if ok { "True" } else { "False" };
    let previous = status.conditions.iter().position(|c| c.type_ == type_);
    let transition = previous
        .map(|i| &status.conditions[i])
        .filter(|c| c.status == value)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    let condition = Condition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: reason.to_string(),
        message: message.chars().take(2000).collect(),
        observed_generation: generation,
        last_transition_time: transition,
    };
    match previous {
        Some(i) => status.conditions[i] = condition,
        None => status.conditions.push(condition),
    }
}

/// Consumes an approval: removes `spec.approvedDigest` only if it still names `digest` (a newer
/// approval given meanwhile is kept) and, with `at`, only if the Remediation is still at that
/// resourceVersion (an approval of the same digest given again since is kept too).
pub async fn consume_approval(
    api: &Api<Remediation>,
    name: &str,
    digest: &str,
    at: Option<&str>,
) -> kube::Result<Remediation> {
    let pinned =
        at.map(|rv| json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    let ops: Vec<Value> = pinned
        .into_iter()
        .chain([
            json!({"op": "test", "path": "/spec/approvedDigest", "value": digest}),
            json!({"op": "remove", "path": "/spec/approvedDigest"}),
        ])
        .collect();
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(kube::Error::SerdeError)?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
}

/// Server-side apply of the spec meshmedic owns (never `approvedDigest`, `rollback` or
/// `allowLivePatch`). With `seen`, the Remediation as the decision read it, the write is
/// conditional on its resourceVersion (409 Conflict if it changed since).
pub async fn upsert(
    api: &Api<Remediation>,
    name: &str,
    namespace: &str,
    spec: &Value,
    seen: Option<&Remediation>,
) -> kube::Result<Remediation> {
    let mut body = json!({
        "apiVersion": Remediation::api_version(&()),
        "kind": Remediation::kind(&()),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {crate::model::keys::MANAGED_BY_LABEL: crate::model::keys::MANAGED_BY_VALUE},
        },
        "spec": spec,
    });
    if let Some(rv) = seen.and_then(|r| r.resource_version()) {
        body["metadata"]["resourceVersion"] = json!(rv);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(body)).await
}

/// Publishes a plan for review: the spec meshmedic owns, then `phase` (Proposed, or RolledBack
/// while a rollback request stands) with `reason`.
///
/// The decision was made from `seen`, the Remediation as the pass read it (`None`: there was
/// none). A pass can be slow, and another replica may publish, or a reviewer approve and a write
/// follow, meanwhile: if the Remediation is no longer what was seen, nothing is written and
/// `Ok(None)` says to decide again on fresh state. A stale pass must never set a Remediation
/// that has moved on (Applied, Resolved) back to Proposed.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    api: &Api<Remediation>,
    name: &str,
    namespace: &str,
    spec: &Value,
    seen: Option<&Remediation>,
    phase: Phase,
    reason: &str,
    message: &str,
) -> kube::Result<Option<Remediation>> {
    // Server-side apply creates or updates alike; "must not exist yet" is checked here, and
    // again below by the status a newly created Remediation does not have.
    if seen.is_none() && api.get_opt(name).await?.is_some() {
        return Ok(None);
    }
    let updated = match upsert(api, name, namespace, spec, seen).await {
        Err(e) if lost_race(&e) => return Ok(None),
        r => r?,
    };
    if seen.is_none() && updated.status.is_some() {
        return Ok(None);
    }
    let status = updated.status.clone().unwrap_or_default();
    let status = with_phase(&updated, status, phase, reason, message);
    match write_status(api, &updated, &status).await {
        Err(e) if lost_race(&e) => Ok(None),
        r => r.map(Some),
    }
}

/// Deletes a Remediation only if it is still the version the decision read (`false`: it changed,
/// decide again). Already gone counts as done.
pub async fn withdraw(api: &Api<Remediation>, seen: &Remediation) -> kube::Result<bool> {
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: seen.uid(),
            resource_version: seen.resource_version(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&seen.name_any(), &params).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(true),
        Err(e) if lost_race(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Records an event on the Remediation and, where there is one, on the target.
pub async fn event(
    recorder: &Recorder,
    rem: &Remediation,
    warning: bool,
    reason: &str,
    note: &str,
) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.to_string(),
        secondary: None,
    };
    let mut refs: Vec<ObjectReference> = vec![rem.object_ref(&())];
    let t = &rem.spec.target;
    refs.push(ObjectReference {
        api_version: Some(t.api_version.clone()),
        kind: Some(t.kind.clone()),
        name: Some(t.name.clone()),
        namespace: Some(t.namespace.clone()),
        ..Default::default()
    });
    for r in refs {
        if let Err(e) = recorder.publish(&ev, &r).await {
            tracing::debug!(error = %e, "event not recorded");
        }
    }
}

/// The target's labels and annotations, for the GitOps check.
pub type Marks = (BTreeMap<String, String>, BTreeMap<String, String>);
