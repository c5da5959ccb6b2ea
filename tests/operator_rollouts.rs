//! Argo Rollouts' Rollout as a workload, on the real control plane: a cluster without its CRD
//! has none and nothing waits for them; once the CRD is served, a Rollout's finding is proposed,
//! applied to the Rollout, verified and rolled back like a Deployment's. In a test binary of its
//! own: it installs the Rollout CRD, which the other tests' control planes do not have.
//! Needs `eval "$(scripts/k8s-test-env.sh)"` first (`MESHMEDIC_ROLLOUT_CRD`).

mod support;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use meshmedic::model::remediation::Phase;
use serde_json::{Value, json};
use support::control_plane;
use support::operator::*;

/// The payments example (a readiness probe the kubelet cannot pass under STRICT mTLS), as a
/// Rollout named `ledger` in `ns`.
fn ledger(ns: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(support::repo_path(
        "examples/shop/payments-mtls-probe-failure.yaml",
    ))
    .expect("example")
    .replace("namespace: shop", &format!("namespace: {ns}"))
    .replace("payments", "ledger");
    meshmedic::snapshot::load::parse_documents("ledger", &text)
        .expect("yaml")
        .into_iter()
        .map(|(_, mut doc)| {
            if doc["kind"] == "Deployment" {
                doc["apiVersion"] = json!("argoproj.io/v1alpha1");
                doc["kind"] = json!("Rollout");
                doc["spec"]["strategy"] =
                    json!({"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}});
            }
            doc
        })
        .collect()
}

#[tokio::test]
async fn a_rollout_is_a_workload_once_its_crd_is_served_and_nothing_waits_for_it_before() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    assert!(
        crds.get_opt("rollouts.argoproj.io")
            .await
            .expect("crds")
            .is_none(),
        "this control plane starts without Argo Rollouts"
    );
    let ns = shop(&admin, "rollouts", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-rollouts", "replica-rollouts");

    // No Rollout CRD: there are no Rollouts, and the workload findings are not withheld.
    let payments = remediation_for(&admin, &ns, "mtls-probe-failure", "Deployment").await;
    assert_eq!(payments.spec.target.name, "payments");

    // Argo Rollouts installed: its CRD, then a Rollout with the same probe problem.
    install_crd_from_env(&admin, "MESHMEDIC_ROLLOUT_CRD", "rollouts.argoproj.io").await;
    for doc in ledger(&ns) {
        support::apply(&admin, &doc)
            .await
            .unwrap_or_else(|e| panic!("{}: {}", doc["kind"], support::error_message(&e)));
    }

    // Picked up without a restart (the kind is listed again while not served).
    let rem = eventually(
        Duration::from_secs(90),
        "a mtls-probe-failure Remediation for the Rollout",
        || async {
            remediations(&admin, &ns).await.into_iter().find(|r| {
                answers(r, "mtls-probe-failure")
                    && r.spec.target.kind == "Rollout"
                    && r.status.is_some()
            })
        },
    )
    .await;
    assert_eq!(rem.spec.target.name, "ledger");
    assert_eq!(rem.spec.target.api_version, "argoproj.io/v1alpha1");
    let name = kube::ResourceExt::name_any(&rem);
    let before = get_target(&admin, &rem).await;

    approve(&admin, &ns, &name).await;
    let verified = eventually(Duration::from_secs(60), "the fix verified", || async {
        let r = get_remediation(&admin, &ns, &name).await;
        (reason(&r, "Verified").as_deref() == Some("Verified")).then_some(r)
    })
    .await;
    assert_eq!(phase(&verified), Phase::Resolved);
    let patched = get_target(&admin, &rem).await;
    assert_ne!(
        patched.data["spec"], before.data["spec"],
        "the Rollout was patched"
    );
    assert_eq!(
        patched.data["spec"]["strategy"], before.data["spec"]["strategy"],
        "only the pod template changes"
    );

    meshmedic::cli::rollback::rollback(&admin, &ns, &name)
        .await
        .expect("rollback requested");
    wait_phase(&admin, &ns, &name, Phase::RolledBack).await;
    let after = get_target(&admin, &rem).await;
    assert_eq!(after.data["spec"], before.data["spec"], "restored exactly");
    operator.stop();
}
