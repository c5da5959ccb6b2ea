//! What the operator should do with Remediation resources, decided without the API server: from
//! the findings of one namespace, its mode and the Remediations already there, the list of
//! writes. Kept pure so it is tested without a cluster.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::analysis::{Code, Finding};
use crate::model::ObjectRef;
use crate::model::remediation::{Phase, Remediation, RemediationSpec};

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

/// The one Remediation name for a (code, target): stable across restarts and re-analysis.
/// `<code>-<kind>-<name>`, cut to fit, with a hash of the full key so cut names stay unique.
pub fn remediation_name(code: Code, target: &ObjectRef) -> String {
    let key = format!(
        "{}/{}/{}/{}",
        code.as_str(),
        target.kind,
        target.namespace,
        target.name
    );
    let mut hash: u32 = 0x811c_9dc5; // FNV-1a: small, stable across Rust versions.
    for b in key.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let readable: String = format!("{}-{}-{}", code.as_str(), target.kind, target.name)
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

/// The spec meshmedic owns for a finding (`approved` and `rollback` are the reviewer's and are
/// left out of what it applies).
pub fn desired_spec(f: &Finding) -> Value {
    let r = &f.remediation;
    json!({
        "code": f.code,
        "severity": f.severity,
        "target": r.target,
        "targetDisplay": format!("{}/{}", r.target.kind, r.target.name),
        "service": f.service,
        "message": f.message,
        "evidence": f.evidence,
        "action": r.action,
        "patch": r.patch,
        "resource": r.resource,
        "safeToAutoApply": r.safe_to_auto_apply,
    })
}

/// Labels and annotations that say a target belongs to a GitOps tool or Helm, which would revert
/// an in-cluster change: such targets get proposals only. See [`super::gitops`].
pub fn gitops_owner(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Option<String> {
    super::gitops::owner(labels, annotations).map(|o| format!("{o}; {}", o.advice()))
}

/// One write the operator should make.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Server-side apply this spec to the Remediation of that name.
    Upsert { name: String, spec: Value },
    /// The cause is gone: mark it Resolved.
    Resolve { name: String },
    /// Apply the fix to the target.
    Apply { name: String },
    /// Undo an applied fix.
    Rollback { name: String },
    /// Say in the status why an approved fix is not applied.
    Hold { name: String, reason: String },
}

/// Plans one namespace. `existing` are the Remediations meshmedic owns there; `gitops` tells
/// whether a target is GitOps-managed (and by what).
pub fn plan_namespace(
    mode: Mode,
    findings: &[&Finding],
    existing: &[&Remediation],
    gitops: &dyn Fn(&ObjectRef) -> Option<String>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if mode == Mode::Off {
        return steps;
    }
    let by_name: BTreeMap<String, &Remediation> = existing
        .iter()
        .map(|r| (r.metadata.name.clone().unwrap_or_default(), *r))
        .collect();
    let mut wanted = std::collections::BTreeSet::new();
    for f in findings {
        let name = remediation_name(f.code, &f.remediation.target);
        if !wanted.insert(name.clone()) {
            continue;
        }
        let spec = desired_spec(f);
        let current = by_name.get(&name);
        let unchanged = current.is_some_and(|r| same_owned_spec(&r.spec, &spec));
        if !unchanged {
            steps.push(Step::Upsert {
                name: name.clone(),
                spec,
            });
        }
        let Some(r) = current else { continue };
        let phase = r.status.as_ref().map(|s| s.phase).unwrap_or_default();
        let fresh = r.status.as_ref().and_then(|s| s.observed_generation) == r.metadata.generation;
        if r.spec.rollback {
            if matches!(phase, Phase::Applied) {
                steps.push(Step::Rollback { name });
            }
            continue;
        }
        let wants_apply = r.spec.approved || (mode == Mode::Apply && r.spec.safe_to_auto_apply);
        // Apply only what was reviewed as it is now: an unchanged spec, Proposed (or a Stale or
        // Failed one that has since been re-planned).
        let ready = unchanged
            && (phase == Phase::Proposed
                || (matches!(phase, Phase::Stale | Phase::Failed) && !fresh));
        if wants_apply && ready {
            match gitops(&r.spec.target) {
                Some(owner) => steps.push(Step::Hold {
                    name,
                    reason: format!(
                        "{} is managed by GitOps ({owner}): proposal only; commit the fix to Git, or the tool reverts it",
                        r.spec.target
                    ),
                }),
                None => steps.push(Step::Apply { name }),
            }
        }
    }
    for (name, r) in &by_name {
        if wanted.contains(name) {
            continue;
        }
        let phase = r.status.as_ref().map(|s| s.phase).unwrap_or_default();
        // A fix meshmedic applied removes its own cause, so an applied Remediation is usually
        // Resolved by the time a reviewer asks for a rollback.
        let was_applied = r
            .status
            .as_ref()
            .is_some_and(|s| s.target_resource_version_after.is_some());
        if r.spec.rollback && phase == Phase::Resolved && was_applied {
            steps.push(Step::Rollback { name: name.clone() });
        } else if r.spec.rollback && matches!(phase, Phase::Failed | Phase::Stale) {
            // A rollback that could not apply (the target changed since) stays as it is, its
            // status saying why: resolving it would ask for the same rollback again, a hot loop
            // of failed patches and status writes (found by the chaos run).
        } else if !matches!(phase, Phase::Resolved | Phase::RolledBack) {
            steps.push(Step::Resolve { name: name.clone() });
        }
    }
    steps
}

/// Compares the fields meshmedic owns, ignoring the reviewer's.
fn same_owned_spec(current: &RemediationSpec, desired: &Value) -> bool {
    let Ok(mut current) = serde_json::to_value(current) else {
        return false;
    };
    if let Some(map) = current.as_object_mut() {
        map.remove("approved");
        map.remove("rollback");
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
