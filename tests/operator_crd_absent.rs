//! An Istio kind whose CRD is absent is reported once and skipped; the operator keeps working
//! and picks the kind up when its CRD appears. In a test binary of its own: it deletes CRDs from
//! its control plane.

mod support;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::control_plane;
use support::operator::*;

const ENVOYFILTER_CRD: &str = "envoyfilters.networking.istio.io";

#[tokio::test]
async fn a_missing_istio_crd_is_skipped_and_picked_up_when_it_appears() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let original = crds
        .get(ENVOYFILTER_CRD)
        .await
        .expect("the Istio CRD is installed");
    crds.delete(ENVOYFILTER_CRD, &DeleteParams::default())
        .await
        .expect("delete the CRD");
    eventually(Duration::from_secs(30), "the CRD to be gone", || async {
        crds.get_opt(ENVOYFILTER_CRD)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // A namespace with a route lacking `reset` retries (and no EnvoyFilter: it cannot exist).
    let ns = support::namespace(&admin, "no-envoyfilter").await;
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(&ns, &PatchParams::default(), &Patch::Merge(json!({"metadata": {
            "labels": {"istio-injection": "enabled"}, "annotations": {"meshmedic.io/mode": "propose"}}})))
        .await
        .expect("namespace");
    let text = std::fs::read_to_string(support::repo_path(
        "examples/shop/ratings-listener-change-503.yaml",
    ))
    .expect("example")
    .replace("namespace: shop", &format!("namespace: {ns}"))
    .replace(
        ".shop.svc.cluster.local",
        &format!(".{ns}.svc.cluster.local"),
    );
    let docs = meshmedic::snapshot::load::parse_documents("ratings", &text).expect("yaml");
    let (filters, others): (Vec<_>, Vec<_>) = docs
        .into_iter()
        .map(|(_, d)| d)
        .partition(|d| d["kind"] == "EnvoyFilter");
    for doc in &others {
        support::apply(&admin, doc).await.expect("apply");
    }

    let operator = Replica::start(cp.meshmedic_config(), "lease-crd", "replica-crd");
    // It works without the kind...
    remediation_for(&admin, &ns, "missing-reset-retry", "VirtualService").await;
    assert!(
        !remediations(&admin, &ns)
            .await
            .iter()
            .any(|r| answers(r, "listener-change-503"))
    );

    // ...and picks it up when the CRD appears, without a restart.
    let mut crd = original.clone();
    crd.metadata = kube::api::ObjectMeta {
        name: Some(ENVOYFILTER_CRD.into()),
        ..Default::default()
    };
    crd.status = None;
    crds.patch(
        ENVOYFILTER_CRD,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD back");
    crd_established(&admin, ENVOYFILTER_CRD).await;
    for f in &filters {
        eventually(
            Duration::from_secs(30),
            "the EnvoyFilter accepted",
            || async { support::apply(&admin, f).await.ok() },
        )
        .await;
    }
    eventually(
        Duration::from_secs(90),
        "a listener-change-503 Remediation once EnvoyFilters are watched",
        || async {
            remediations(&admin, &ns)
                .await
                .into_iter()
                .find(|r| answers(r, "listener-change-503"))
        },
    )
    .await;
    operator.stop();
}
