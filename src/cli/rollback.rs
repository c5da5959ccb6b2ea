//! `meshmedic rollback NAME [-n NS]`: asks the operator to restore a Remediation's target to
//! exactly what it was before meshmedic first wrote it (`spec.rollback: true`). The operator
//! refuses, and writes nothing, if someone else changed the fields meshmedic wrote since.

use std::process::ExitCode;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::model::remediation::Remediation;

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// The Remediation's name (`kubectl get remediations`).
    pub name: String,
    #[command(flatten)]
    pub kube: super::kube_args::KubeArgs,
}

pub async fn rollback(client: &Client, namespace: &str, name: &str) -> Result<String, String> {
    let api: Api<Remediation> = Api::namespaced(client.clone(), namespace);
    let rem = api
        .get(name)
        .await
        .map_err(|e| super::approve::unreadable(namespace, name, &e))?;
    let written = rem.status.as_ref().is_some_and(|s| s.written.is_some());
    let set = |value: bool| {
        let api = api.clone();
        async move {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"rollback": value}})),
            )
            .await
            .map_err(|e| format!("cannot request the rollback of {namespace}/{name}: {e}"))
        }
    };
    // Requested before (and refused, say, over someone's edit since put back): withdrawn and
    // renewed, so the spec changes and the operator tries again; writing `true` over `true`
    // would change nothing it can see.
    let again = rem.spec.rollback;
    if again {
        set(false).await?;
    }
    set(true).await?;
    if again && written {
        return Ok(format!(
            "rollback of {} requested again: the operator tries once more to restore it to its state before meshmedic's first write (or refuses again if those fields still differ); watch `kubectl get remediation {name} -n {namespace}`\n",
            rem.spec.target
        ));
    }
    Ok(if written {
        format!(
            "rollback of {} requested: the operator restores it to its state before meshmedic's first write (or refuses if someone changed those fields); watch `kubectl get remediation {name} -n {namespace}`\n",
            rem.spec.target
        )
    } else {
        format!(
            "rollback of {namespace}/{name} requested; meshmedic has written nothing to {}\n",
            rem.spec.target
        )
    })
}

pub fn run(args: RollbackArgs) -> ExitCode {
    super::approve::block_on(async move {
        let conn = args.kube.connect().await.map_err(|e| e.to_string())?;
        rollback(&conn.client, &conn.namespace, &args.name).await
    })
}
