//! What the operator plans for a namespace, decided without the API server: its mode and minimum
//! severity, one plan per target object (findings that change the same object merged), each
//! with its digest. What to do with a plan is [`super::lifecycle`]'s decision.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::lifecycle::PlanView;
use crate::analysis::{Code, Finding, Severity};
use crate::model::ObjectRef;
use crate::model::remediation::RemediationSpec;
use crate::remediation::{Action, apply, plan_patch};

/// `meshmedic.io/mode` on a Namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    Propose,
    Apply,
}

impl Mode {
    /// Absent, `off` or anything unknown is off: nothing is ever written in such a namespace.
    pub fn from_annotation(value: Option<&str>) -> Mode {
        match value.map(str::trim) {
            Some("propose") => Mode::Propose,
            Some("apply") => Mode::Apply,
            _ => Mode::Off,
        }
    }
}

/// Labels and annotations that say a target belongs to a GitOps tool or Helm, or an owner
/// reference to the controller that generates it, any of which would revert an in-cluster
/// change: such targets get proposals only. See [`super::gitops`].
pub fn gitops_owner(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    owner_references: Option<&serde_json::Value>,
) -> Option<String> {
    super::gitops::owner(labels, annotations)
        .or_else(|| super::gitops::controller(owner_references))
        .map(|o| format!("{o}; {}", o.advice()))
}

/// The Remediation name for a target object: one per object, stable across restarts and
/// re-analysis. `<kind>-<name>`, cut to fit, with a hash of the full key so cut names stay unique.
pub fn target_name(target: &ObjectRef) -> String {
    let key = format!("{}/{}/{}", target.kind, target.namespace, target.name);
    let mut hash: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let readable: String = format!("{}-{}", target.kind, target.name)
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let readable = readable.chars().take(52).collect::<String>();
    format!("{}-{hash:08x}", readable.trim_end_matches('-'))
}

/// The meshmedic annotations on a Namespace whose value means nothing, as (annotation, value,
/// what meshmedic does instead). They are not errors that stop anything (the safe reading
/// applies), but a person who wrote them meant something: the operator tells them with an Event.
pub fn namespace_annotation_problems(
    annotations: &crate::model::Labels,
) -> Vec<(&'static str, String, String)> {
    let mut problems = Vec::new();
    if let Some(v) = annotations.get(crate::model::keys::MODE)
        && !matches!(v.trim(), "off" | "propose" | "apply")
    {
        problems.push((
            crate::model::keys::MODE,
            v.to_string(),
            format!(
                "annotation {}: {v:?} is not one of off, propose, apply; the namespace is off (nothing is proposed or written)",
                crate::model::keys::MODE
            ),
        ));
    }
    if let Some(v) = annotations.get(MIN_SEVERITY)
        && !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "info" | "warning" | "error"
        )
    {
        problems.push((
            MIN_SEVERITY,
            v.to_string(),
            format!(
                "annotation {MIN_SEVERITY}: {v:?} is not one of info, warning, error; warning applies"
            ),
        ));
    }
    problems
}

/// Namespace annotation: the least severe finding that gets a Remediation.
pub const MIN_SEVERITY: &str = "meshmedic.io/min-severity";

/// `meshmedic.io/min-severity` on a Namespace: findings below it get no Remediation (they stay in
/// `analyze` output and in the findings metric). Absent or unknown: `warning`.
pub fn min_severity(value: Option<&str>) -> Severity {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("info") => Severity::Info,
        Some("error") => Severity::Error,
        _ => Severity::Warning,
    }
}

/// JSON with object keys sorted and no whitespace: the bytes the plan digest is taken over.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// `sha256:<hex>` over the canonical JSON of {action, target, patch, resource, baseDigest} of a
/// spec.
pub fn plan_digest(spec: &Value) -> String {
    let mut subject = json!({
        "action": spec.get("action").cloned().unwrap_or(Value::Null),
        "target": spec.get("target").cloned().unwrap_or(Value::Null),
        "patch": spec.get("patch").cloned().unwrap_or(Value::Null),
        "resource": spec.get("resource").cloned().unwrap_or(Value::Null),
    });
    if let Some(base) = spec.get("baseDigest") {
        subject["baseDigest"] = base.clone();
    }
    sha256(&subject)
}

/// `sha256:<hex>` over the canonical JSON of an object's `spec` (an absent spec is `{}`).
pub fn spec_digest(object: &Value) -> String {
    sha256(object.get("spec").unwrap_or(&json!({})))
}

fn sha256(v: &Value) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, canonical_json(v).as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Metadata the API server changes on every write: left out of a planned resource, so a plan
/// (and its digest) changes only when what it would write changes.
fn without_volatile_metadata(mut resource: Value) -> Value {
    if let Some(meta) = resource.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(k);
        }
    }
    resource
}

/// The plan for one target object: every finding that changes it, as one change.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub name: String,
    pub target: ObjectRef,
    /// The spec meshmedic owns (never `approvedDigest`, `rollback`, `allowLivePatch`).
    pub spec: Value,
    pub view: PlanView,
    pub codes: Vec<Code>,
}

/// Groups findings by the object their fix changes and composes their fixes into one plan per
/// object: patches are planned one after another on the object as the previous one left it
/// (as `analyze -o yaml` does), so the fields one Remediation changes have one owner.
///
/// `base_digest` gives the [`spec_digest`] of the target as analysed (what the plan starts
/// from); the plan records it so a write never lands on a target that changed since.
pub fn plan_targets(
    findings: &[&Finding],
    base_digest: &dyn Fn(&ObjectRef) -> Option<String>,
) -> (Vec<Planned>, Vec<String>) {
    let mut order: Vec<ObjectRef> = Vec::new();
    let mut groups: BTreeMap<ObjectRef, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        let t = &f.remediation.target;
        if !groups.contains_key(t) {
            order.push(t.clone());
        }
        groups.entry(t.clone()).or_default().push(f);
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for target in order {
        let mut causes = groups.remove(&target).unwrap_or_default();
        // The most severe first (stable: detectors' order otherwise).
        causes.sort_by_key(|f| std::cmp::Reverse(f.severity));
        let first = causes[0];
        let r0 = &first.remediation;
        let (action, patch, resource) = match r0.action {
            Action::Create => (Action::Create, None, r0.resource.to_value()),
            Action::Patch => {
                let mut ops = r0.operations();
                let mut doc = r0.resource.to_value();
                let mut ok = true;
                for f in &causes[1..] {
                    let r = &f.remediation;
                    if r.action != Action::Patch {
                        continue;
                    }
                    match plan_patch(&doc, &r.edits).and_then(|more| {
                        apply(&mut doc, &more)?;
                        Ok(more)
                    }) {
                        Ok(more) => ops.extend(more),
                        Err(e) => {
                            errors.push(format!("{target}: cannot compose {}: {e}", f.code));
                            ok = false;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                (Action::Patch, Some(ops), doc)
            }
        };
        let resource = without_volatile_metadata(resource);
        let noop = patch.as_ref().is_some_and(Vec::is_empty);
        let safe = causes.iter().all(|f| f.remediation.safe_to_auto_apply);
        let resolves = causes.iter().all(|f| f.remediation.resolves);
        let mut evidence: Vec<String> = Vec::new();
        for f in &causes {
            for e in &f.evidence {
                if !evidence.contains(e) {
                    evidence.push(e.clone());
                }
            }
        }
        let message = causes
            .iter()
            .map(|f| f.message.as_str())
            .collect::<Vec<_>>()
            .join(" — ");
        let cause_list: Vec<Value> = causes
            .iter()
            .map(|f| {
                json!({"code": f.code, "severity": f.severity, "message": f.message,
                       "resolves": f.remediation.resolves})
            })
            .collect();
        let mut spec = json!({
            "code": first.code,
            "severity": first.severity,
            "target": target,
            "targetDisplay": format!("{}/{}", target.kind, target.name),
            "service": first.service,
            "message": message,
            "evidence": evidence,
            "action": action,
            "patch": patch,
            "resource": resource,
            "safeToAutoApply": safe,
            "causes": cause_list,
            "resolves": resolves,
        });
        if let Some(b) = base_digest(&target) {
            spec["baseDigest"] = json!(b);
        }
        let digest = plan_digest(&spec);
        spec["planDigest"] = json!(digest);
        out.push(Planned {
            name: target_name(&target),
            codes: causes.iter().map(|f| f.code).collect(),
            target,
            spec,
            view: PlanView {
                digest,
                safe,
                resolves,
                noop,
                // Time is the controller's to judge (see `Context::settled`), and the target's
                // namespace its to read.
                settled: false,
                target_mode: None,
            },
        });
    }
    (out, errors)
}

/// In words, what differs between the published plan and a new one (for the condition a
/// re-plan sets).
pub fn describe_change(old: &RemediationSpec, new: &Value) -> String {
    let Ok(old_value) = serde_json::to_value(old) else {
        return "the plan changed".into();
    };
    let mut parts = Vec::new();
    for key in ["action", "patch", "resource"] {
        let a = old_value.get(key).unwrap_or(&Value::Null);
        let b = new.get(key).unwrap_or(&Value::Null);
        if a != b {
            let paths = super::restore::changed_paths("", a, b);
            let shown: Vec<&str> = paths.iter().take(3).map(String::as_str).collect();
            let more = paths.len().saturating_sub(3);
            parts.push(if paths.is_empty() || key == "action" {
                key.to_string()
            } else if more > 0 {
                format!("{key} at {} (+{more} more)", shown.join(", "))
            } else {
                format!("{key} at {}", shown.join(", "))
            });
        }
    }
    let old_codes: Vec<String> = old.causes.iter().map(|c| c.code.to_string()).collect();
    let new_codes: Vec<String> = new
        .get("causes")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("code").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if old_codes != new_codes {
        parts.push(format!(
            "causes {} → {}",
            old_codes.join(","),
            new_codes.join(",")
        ));
    }
    let old_digest = old.plan_digest.as_deref().unwrap_or("none");
    let new_digest = new
        .get("planDigest")
        .and_then(Value::as_str)
        .unwrap_or("none");
    format!(
        "the plan changed ({}) from {old_digest} to {new_digest}; an approval of the old plan applies nothing, approve the new digest to apply it",
        if parts.is_empty() {
            "metadata".to_string()
        } else {
            parts.join("; ")
        }
    )
}

/// Compares the fields meshmedic owns, ignoring the reviewer's.
pub fn same_owned_spec(current: &RemediationSpec, desired: &Value) -> bool {
    let Ok(mut current) = serde_json::to_value(current) else {
        return false;
    };
    if let Some(map) = current.as_object_mut() {
        for k in ["approved", "approvedDigest", "rollback", "allowLivePatch"] {
            map.remove(k);
        }
        map.retain(|_, v| !v.is_null());
    }
    let mut desired = desired.clone();
    if let Some(map) = desired.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    current == desired
}

#[cfg(test)]
mod tests;
