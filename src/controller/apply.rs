//! Writing to the API server: Remediation resources (server-side apply), fixes (JSON patch after
//! a server-side dry-run, or a new object), rollbacks, status and events.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::metrics::Metrics;
use super::stores::api_resource;
use crate::model::ObjectRef;
use crate::model::remediation::{Phase, Remediation, RemediationAction};
use crate::remediation::rollback_patch;

pub const FIELD_MANAGER: &str = "meshmedic";

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
    pub message: String,
    pub status: Value,
}

fn is_conflict(e: &kube::Error) -> bool {
    // A failed `test` operation is 422 (Invalid) on JSON patch; 409 is a write conflict.
    matches!(e, kube::Error::Api(s) if s.code == 422 || s.code == 409)
}

fn json_patch(ops: &[Value]) -> Result<json_patch::Patch, String> {
    serde_json::from_value(Value::Array(ops.to_vec())).map_err(|e| e.to_string())
}

/// Applies a Remediation's fix: dry-run first, then for real.
pub async fn apply_fix(client: &Client, rem: &Remediation, metrics: &Metrics) -> Outcome {
    let target = &rem.spec.target;
    let Some(api) = target_api(client, target) else {
        return failed(format!("meshmedic does not write {} objects", target.kind));
    };
    match rem.spec.action {
        RemediationAction::Patch => {
            let Some(ops) = rem.spec.patch.as_deref() else {
                return failed("the Remediation has no patch".to_string());
            };
            let before = match api.get(&target.name).await {
                Ok(o) => o,
                Err(e) => {
                    metrics.api_error("get_target");
                    return failed(format!("cannot read {target}: {e}"));
                }
            };
            let patch = match json_patch(ops) {
                Ok(p) => p,
                Err(e) => return failed(format!("the patch is not RFC 6902: {e}")),
            };
            let dry = PatchParams {
                dry_run: true,
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            if let Err(e) = api
                .patch(&target.name, &dry, &Patch::<()>::Json(patch.clone()))
                .await
            {
                return if is_conflict(&e) {
                    stale(format!(
                        "{target} changed since the fix was planned ({e}); re-analysing"
                    ))
                } else {
                    metrics.api_error("dry_run_patch");
                    failed(format!("the API server rejects the fix (dry run): {e}"))
                };
            }
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match api
                .patch(&target.name, &params, &Patch::<()>::Json(patch))
                .await
            {
                Ok(after) => {
                    let before_value = serde_json::to_value(&before).unwrap_or(Value::Null);
                    let rollback = rollback_patch(&before_value, ops).ok();
                    Outcome {
                        phase: Phase::Applied,
                        message: format!("patched {target}"),
                        status: json!({
                            "appliedPatch": ops,
                            "rollbackPatch": rollback,
                            "targetResourceVersionBefore": before.resource_version(),
                            "targetResourceVersionAfter": after.resource_version(),
                            "lastError": null,
                        }),
                    }
                }
                Err(e) if is_conflict(&e) => {
                    stale(format!("{target} changed underneath ({e}); re-analysing"))
                }
                Err(e) => {
                    metrics.api_error("patch_target");
                    failed(format!("cannot patch {target}: {e}"))
                }
            }
        }
        RemediationAction::Create => {
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
                Err(e) => return failed(format!("the new object is not valid: {e}")),
            };
            let dry = PostParams {
                dry_run: true,
                field_manager: Some(FIELD_MANAGER.into()),
            };
            if let Err(e) = api.create(&dry, &obj).await {
                metrics.api_error("dry_run_create");
                return failed(format!("the API server rejects {target} (dry run): {e}"));
            }
            let params = PostParams {
                dry_run: false,
                field_manager: Some(FIELD_MANAGER.into()),
            };
            match api.create(&params, &obj).await {
                Ok(created) => Outcome {
                    phase: Phase::Applied,
                    message: format!("created {target}"),
                    status: json!({
                        "appliedPatch": null,
                        "rollbackPatch": null,
                        "targetResourceVersionBefore": null,
                        "targetResourceVersionAfter": created.resource_version(),
                        "lastError": null,
                    }),
                },
                Err(e) => {
                    metrics.api_error("create_target");
                    failed(format!("cannot create {target}: {e}"))
                }
            }
        }
    }
}

/// Undoes an applied fix with the stored rollback patch (or deletes the object it created).
pub async fn rollback_fix(client: &Client, rem: &Remediation, metrics: &Metrics) -> Outcome {
    let target = &rem.spec.target;
    let Some(api) = target_api(client, target) else {
        return failed(format!("meshmedic does not write {} objects", target.kind));
    };
    let status = rem.status.clone().unwrap_or_default();
    match rem.spec.action {
        RemediationAction::Patch => {
            let Some(ops) = status.rollback_patch.as_deref() else {
                return failed("no rollback patch was recorded".to_string());
            };
            let patch = match json_patch(ops) {
                Ok(p) => p,
                Err(e) => return failed(format!("the rollback patch is not RFC 6902: {e}")),
            };
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match api
                .patch(&target.name, &params, &Patch::<()>::Json(patch))
                .await
            {
                Ok(after) => Outcome {
                    phase: Phase::RolledBack,
                    message: format!("restored {target}"),
                    status: json!({"targetResourceVersionAfter": after.resource_version(), "lastError": null}),
                },
                Err(e) => {
                    metrics.api_error("rollback_patch");
                    failed(format!(
                        "cannot roll back {target}: {e} (it changed since the fix; nothing was overwritten)"
                    ))
                }
            }
        }
        RemediationAction::Create => match api.delete(&target.name, &DeleteParams::default()).await
        {
            Ok(_) => Outcome {
                phase: Phase::RolledBack,
                message: format!("deleted {target}, which meshmedic had created"),
                status: json!({"lastError": null}),
            },
            Err(kube::Error::Api(s)) if s.code == 404 => Outcome {
                phase: Phase::RolledBack,
                message: format!("{target} is already gone"),
                status: json!({"lastError": null}),
            },
            Err(e) => {
                metrics.api_error("rollback_delete");
                failed(format!("cannot delete {target}: {e}"))
            }
        },
    }
}

fn failed(message: String) -> Outcome {
    Outcome {
        phase: Phase::Failed,
        status: json!({"lastError": message}),
        message,
    }
}

fn stale(message: String) -> Outcome {
    Outcome {
        phase: Phase::Stale,
        status: json!({"lastError": message}),
        message,
    }
}

/// Server-side apply of the spec meshmedic owns (never `approved` or `rollback`).
pub async fn upsert(
    api: &Api<Remediation>,
    name: &str,
    namespace: &str,
    spec: &Value,
) -> kube::Result<Remediation> {
    let body = json!({
        "apiVersion": Remediation::api_version(&()),
        "kind": Remediation::kind(&()),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {crate::model::keys::MANAGED_BY_LABEL: crate::model::keys::MANAGED_BY_VALUE},
        },
        "spec": spec,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(body)).await
}

/// Writes the status: phase, the condition for it (with `observedGeneration`), and `extra`.
pub async fn set_status(
    api: &Api<Remediation>,
    rem: &Remediation,
    phase: Phase,
    reason: &str,
    message: &str,
    extra: Value,
) -> kube::Result<Remediation> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let generation = rem.metadata.generation;
    let ok = matches!(
        phase,
        Phase::Applied | Phase::Resolved | Phase::RolledBack | Phase::Proposed
    );
    let mut status = json!({
        "phase": phase,
        "observedGeneration": generation,
        "conditions": [{
            "type": "Ready",
            "status": if ok { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": now,
        }],
    });
    if let (Some(s), Some(extra)) = (status.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    let params = PatchParams::default();
    api.patch_status(
        &rem.name_any(),
        &params,
        &Patch::Merge(json!({"status": status})),
    )
    .await
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
