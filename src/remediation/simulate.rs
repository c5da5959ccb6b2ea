//! The mesh once a fix is in: the documents of an input with one remediation applied, as the API
//! server would then hold them. Used to check that every fix removes its own finding and brings
//! no new one (a fix that does not stick makes the operator re-plan forever).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Action, Remediation};
use crate::analysis::{Code, Finding};
use crate::error::Source;
use crate::snapshot::{SnapshotBuilder, SnapshotOptions};

/// The documents with `fix` applied: a patch is applied (with its `test` operations) to the
/// target's document, a new object is added.
pub fn with_fix(
    docs: &[(Source, Value)],
    fix: &Remediation,
) -> Result<Vec<(Source, Value)>, String> {
    let mut out = docs.to_vec();
    match fix.action {
        Action::Create => out.push((
            Source::new(format!("<fix {}>", fix.target), 0),
            fix.resource.to_value(),
        )),
        Action::Patch => {
            let t = &fix.target;
            let (_, doc) = out
                .iter_mut()
                .find(|(_, d)| {
                    d.pointer("/kind").and_then(Value::as_str) == Some(t.kind.as_str())
                        && d.pointer("/metadata/name").and_then(Value::as_str)
                            == Some(t.name.as_str())
                        && d.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .is_none_or(|ns| ns == t.namespace)
                })
                .ok_or_else(|| format!("{t} is not in the input"))?;
            super::apply(doc, &fix.operations())
                .map_err(|e| format!("the patch of {t} does not apply: {e}"))?;
        }
    }
    Ok(out)
}

/// What identifies a finding across re-analysis: the code, what it is about, and the object its
/// fix patches (a created object has no identity before it exists; once it exists a finding that
/// stays patches it, and so shows up as a new finding).
pub fn finding_key(f: &Finding) -> (Code, String, Option<String>, Option<String>, String) {
    let r = &f.remediation;
    (
        f.code,
        f.namespace.clone(),
        f.service.clone(),
        f.workload
            .as_ref()
            .map(|w| format!("{}/{}", w.kind, w.name)),
        match r.action {
            Action::Patch => r.target.to_string(),
            Action::Create => format!("new {}", r.target.kind),
        },
    )
}

/// What [`check_fixes`] found.
#[derive(Debug, Default)]
pub struct FixCheck {
    /// Fixes applied and re-analysed.
    pub checked: usize,
    /// A fix that does not apply, a finding that stays although its fix says it resolves it, or a
    /// finding that was not there before.
    pub problems: Vec<String>,
}

/// Applies each fix of the input's findings (safe to apply automatically or not) on its own to `docs` and re-analyses.
pub fn check_fixes(
    docs: &[(Source, Value)],
    options: &SnapshotOptions,
) -> Result<FixCheck, String> {
    let analyse = |docs: &[(Source, Value)]| -> Result<Vec<Finding>, String> {
        let mut builder = SnapshotBuilder::new(options.clone());
        for (source, value) in docs {
            builder
                .add(source.clone(), value.clone())
                .map_err(|e| e.to_string())?;
        }
        let snapshot = builder.build().map_err(|e| e.to_string())?;
        Ok(crate::analysis::analyze(&snapshot).findings)
    };
    let before = analyse(docs)?;
    let before_keys: BTreeSet<_> = before.iter().map(finding_key).collect();
    let mut check = FixCheck::default();
    let problems = &mut check.problems;
    for f in &before {
        let what = format!(
            "{} on {} (fix: {:?} {})",
            f.code, f.namespace, f.remediation.action, f.remediation.target
        );
        let fixed = match with_fix(docs, &f.remediation) {
            Ok(fixed) => fixed,
            Err(e) => {
                problems.push(format!("{what}: {e}"));
                continue;
            }
        };
        check.checked += 1;
        let after = analyse(&fixed)?;
        for g in &after {
            let key = finding_key(g);
            if key == finding_key(f) && f.remediation.resolves {
                problems.push(format!(
                    "{what}: the finding is still reported: {}",
                    g.message
                ));
            } else if !before_keys.contains(&key) {
                problems.push(format!(
                    "{what}: a new finding appears: {} {}",
                    g.code, g.message
                ));
            }
        }
    }
    Ok(check)
}
