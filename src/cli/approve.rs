//! `meshmedic approve NAME [-n NS] [--digest D]`: shows the change a Remediation would make (a
//! diff of its target), then approves exactly that plan by writing its digest to
//! `spec.approvedDigest` — with the Remediation's resourceVersion as a precondition, so a re-plan
//! that lands between showing and approving makes the approval fail instead of covering a plan
//! nobody saw.

use std::process::ExitCode;

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::controller::apply::target_api;
use crate::model::remediation::{Remediation, RemediationAction};

#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The Remediation's name (`kubectl get remediations`).
    pub name: String,
    #[command(flatten)]
    pub kube: super::kube_args::KubeArgs,
    /// Approve only if the plan still has this digest (what you reviewed earlier).
    #[arg(long)]
    pub digest: Option<String>,
    /// Show the change without approving it.
    #[arg(long)]
    pub dry_run: bool,
}

/// The parts of an object a reviewer reads: no server-set metadata, no status.
fn reviewable(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let mut m = serde_json::Map::new();
    for k in ["name", "namespace", "labels", "annotations"] {
        if let Some(v) = meta.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    let mut out = json!({
        "apiVersion": obj.get("apiVersion").cloned().unwrap_or_default(),
        "kind": obj.get("kind").cloned().unwrap_or_default(),
        "metadata": m,
    });
    if let Some(spec) = obj.get("spec") {
        out["spec"] = spec.clone();
    }
    out
}

fn yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// A line diff of the target: ` ` kept, `-` removed, `+` added (the `similar` crate's Myers diff).
pub fn line_diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .iter_all_changes()
        .map(|c| {
            let sign = match c.tag() {
                similar::ChangeTag::Equal => ' ',
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
            };
            format!("{sign} {}", c.value().trim_end_matches('\n')) + "\n"
        })
        .collect()
}

/// The change a Remediation would make, as a diff of its target (current → planned).
pub async fn show(client: &Client, rem: &Remediation) -> Result<String, String> {
    let target = &rem.spec.target;
    let api =
        target_api(client, target).ok_or_else(|| crate::controller::apply::not_written(target))?;
    let live = api
        .get_opt(&target.name)
        .await
        .map_err(|e| format!("cannot read {target}: {e}"))?;
    let before = match &live {
        Some(o) => yaml(&reviewable(
            &serde_json::to_value(o).map_err(|e| e.to_string())?,
        )),
        None => String::new(),
    };
    // The plan is a change from one spec; shown against another it would be a diff nobody
    // approves (and the operator would refuse to write it).
    if let (Some(base), Some(o)) = (rem.spec.base_digest.as_deref(), &live)
        && crate::controller::plan::spec_digest(&o.data) != base
    {
        // The operator re-plans a rolled-back Remediation too (its phase stays RolledBack
        // while the request stands); approving the new plan withdraws the request.
        let next = if rem.spec.rollback {
            "wait for the operator to re-plan (it publishes a new digest; the Remediation stays RolledBack while its rollback request stands), then review again: approving the new plan withdraws the request"
        } else {
            "wait for the operator to re-plan (it publishes a new digest), then review again"
        };
        return Err(format!(
            "{target} changed since this plan was made; nothing approved: {next}"
        ));
    }
    let after = match (rem.spec.action, &live, rem.spec.patch.as_deref()) {
        (RemediationAction::Patch, Some(o), Some(ops)) => {
            let mut doc = serde_json::to_value(o).map_err(|e| e.to_string())?;
            crate::remediation::apply(&mut doc, ops).map_err(|e| {
                format!("the plan no longer applies to {target} as it is now ({e}); wait for the operator to re-plan")
            })?;
            yaml(&reviewable(&doc))
        }
        (RemediationAction::Patch, None, _) => {
            return Err(format!("{target} does not exist"));
        }
        _ => yaml(&reviewable(&rem.spec.resource)),
    };
    let causes: Vec<String> = if rem.spec.causes.is_empty() {
        vec![format!(
            "{} ({}): {}",
            rem.spec.code, rem.spec.severity, rem.spec.message
        )]
    } else {
        rem.spec
            .causes
            .iter()
            .map(|c| format!("{} ({}): {}", c.code, c.severity, c.message))
            .collect()
    };
    Ok(format!(
        "Remediation {}/{} — {} {target}\nplan {}{}\ncauses:\n{}\n--- {target} (now)\n+++ {target} (planned)\n{}",
        rem.namespace().unwrap_or_default(),
        rem.name_any(),
        match rem.spec.action {
            RemediationAction::Patch => "patch",
            RemediationAction::Create => "create",
        },
        rem.spec.plan_digest.as_deref().unwrap_or("(none yet)"),
        if rem.spec.resolves {
            ""
        } else {
            "\nnote: a mitigation; the finding stays until the app is fixed"
        },
        causes
            .iter()
            .map(|c| format!("  - {c}"))
            .collect::<Vec<_>>()
            .join("\n"),
        line_diff(&before, &after)
    ))
}

/// What to say when a Remediation cannot be read. A missing one is most often a proposal the
/// operator withdrew: its cause went away within the settle time, untouched, nothing written.
pub fn unreadable(namespace: &str, name: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 => format!(
            "Remediation {namespace}/{name} does not exist: a proposal whose cause went away within the operator's settle time (--apply-settle-seconds) is withdrawn, with nothing written; `kubectl get remediations -n {namespace}` lists the current ones"
        ),
        e => format!("cannot read Remediation {namespace}/{name}: {e}"),
    }
}

/// Shows the plan, then approves the digest shown, only if the Remediation has not changed since
/// it was read. Returns what to print.
pub async fn approve(
    client: &Client,
    namespace: &str,
    name: &str,
    expected: Option<&str>,
    dry_run: bool,
) -> Result<String, String> {
    let api: Api<Remediation> = Api::namespaced(client.clone(), namespace);
    let rem = api
        .get(name)
        .await
        .map_err(|e| unreadable(namespace, name, &e))?;
    let digest = rem.spec.plan_digest.clone().ok_or_else(|| {
        format!("Remediation {namespace}/{name} has no plan digest yet (is the operator running?)")
    })?;
    if let Some(expected) = expected
        && expected != digest
    {
        return Err(format!(
            "the plan changed since you reviewed it: it is now {digest}, not {expected}; nothing approved. Run `meshmedic approve {name} -n {namespace}` to review the new plan"
        ));
    }
    // Already written and still in place: there is nothing left to approve (and the target no
    // longer has the spec the plan was made from, so a diff would mislead). Once a person has
    // undone it (`reverted`: deleted the object meshmedic created, or put their values back),
    // the same plan is the fix again, and the Remediation asks for a new approval.
    if let Some(status) = rem.status.as_ref()
        && status.applied_digest.as_deref() == Some(digest.as_str())
        && status.written.is_some()
        && !status.reverted
    {
        return Err(format!(
            "plan {digest} was already written (phase {}); nothing approved",
            status.phase.as_str()
        ));
    }
    let mut out = show(client, &rem).await?;
    if dry_run {
        out.push_str("(dry run: nothing approved)\n");
        return Ok(out);
    }
    // The precondition is the Remediation as read. The operator writes its status often, which
    // moves the resourceVersion without changing the plan: then read again and, if the plan is
    // still the one shown (same digest), approve on the new version. A changed plan is refused.
    let mut version = rem.resource_version();
    for _ in 0..5 {
        let patch = json!({
            "metadata": {"resourceVersion": version},
            "spec": {"approvedDigest": digest, "rollback": false},
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                out.push_str(&format!("approved {digest}\n"));
                return Ok(out);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let now = api
                    .get(name)
                    .await
                    .map_err(|e| unreadable(namespace, name, &e))?;
                if now.spec.plan_digest.as_deref() != Some(digest.as_str()) {
                    return Err(format!(
                        "Remediation {namespace}/{name} was re-planned while you reviewed it (the plan is now {}); nothing approved. Run `meshmedic approve {name} -n {namespace}` again",
                        now.spec.plan_digest.as_deref().unwrap_or("(none)")
                    ));
                }
                version = now.resource_version();
            }
            Err(e) => return Err(format!("cannot approve {namespace}/{name}: {e}")),
        }
    }
    Err(format!(
        "Remediation {namespace}/{name} kept changing while approving; nothing approved. Try again"
    ))
}

pub fn block_on<F: std::future::Future<Output = Result<String, String>>>(f: F) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshmedic: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(f) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meshmedic: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn run(args: ApproveArgs) -> ExitCode {
    block_on(async move {
        let conn = args.kube.connect().await.map_err(|e| e.to_string())?;
        let (client, ns) = (conn.client, conn.namespace);
        approve(
            &client,
            &ns,
            &args.name,
            args.digest.as_deref(),
            args.dry_run,
        )
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_remediation_is_explained_other_errors_are_passed_on() {
        let api_error = |message: &str, reason: &str, code: u16| {
            kube::Error::Api(
                kube::core::Status::failure(message, reason)
                    .with_code(code)
                    .boxed(),
            )
        };
        let gone = api_error("not found", "NotFound", 404);
        let said = unreadable("shop", "virtualservice-cart-1", &gone);
        assert!(
            said.contains("shop/virtualservice-cart-1 does not exist")
                && said.contains("withdrawn")
                && said.contains("kubectl get remediations -n shop"),
            "{said}"
        );
        let forbidden = api_error("forbidden", "Forbidden", 403);
        let said = unreadable("shop", "x", &forbidden);
        assert!(
            said.starts_with("cannot read Remediation shop/x:") && said.contains("forbidden"),
            "{said}"
        );
    }

    #[test]
    fn the_diff_marks_added_and_removed_lines() {
        let d = line_diff("a\nb\nc\n", "a\nx\nc\nd\n");
        assert_eq!(d, "  a\n- b\n+ x\n  c\n+ d\n");
    }
}
