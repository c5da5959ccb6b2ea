//! GitOps-managed targets on the real apiserver, labelled as each tool labels them: in `apply`
//! mode the operator never patches them, even when a reviewer approves; the Remediation names the
//! owner and where the change belongs; `spec.allowLivePatch: true` is the explicit override.

mod support;

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Client, ResourceExt};
use meshmedic::model::remediation::Remediation;
use serde_json::{Value, json};
use support::control_plane;
use support::operator::{
    Replica, answers, approve, eventually, get_remediation, get_target, install_once,
    remediation_for, remediations, set_spec, shop,
};

async fn mark(admin: &Client, ns: &str, kind: &str, name: &str, metadata: Value) {
    let (api, _, _) = support::dynamic_api(admin, "networking.istio.io/v1", kind, Some(ns))
        .await
        .expect("api");
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": metadata })),
    )
    .await
    .unwrap_or_else(|e| panic!("label {kind} {name}: {e}"));
}

/// The GitOpsManaged condition's message, once recorded.
async fn held(admin: &Client, ns: &str, r: &Remediation) -> String {
    let name = r.name_any();
    eventually(Duration::from_secs(30), &format!("{name} held"), || async {
        let r = get_remediation(admin, ns, &name).await;
        r.status?
            .conditions
            .into_iter()
            .find(|c| c.reason == "GitOpsManaged")
            .map(|c| c.message)
    })
    .await
}

#[tokio::test]
async fn gitops_managed_targets_are_never_live_patched_without_the_override() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "gitops", Some("apply")).await;
    // As each tool labels what it applies.
    mark(&admin, &ns, "DestinationRule", "catalog", json!({"annotations": {
        "argocd.argoproj.io/tracking-id": format!("shop:networking.istio.io/DestinationRule:{ns}/catalog"),
    }}))
    .await;
    mark(
        &admin,
        &ns,
        "VirtualService",
        "cart",
        json!({"labels": {
            "kustomize.toolkit.fluxcd.io/name": "apps",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
        }}),
    )
    .await;
    mark(
        &admin,
        &ns,
        "VirtualService",
        "ratings-route",
        json!({"labels": {
            "helm.toolkit.fluxcd.io/name": "ratings",
            "helm.toolkit.fluxcd.io/namespace": "flux-system",
            "app.kubernetes.io/managed-by": "Helm",
        }}),
    )
    .await;
    mark(&admin, &ns, "VirtualService", "checkout", json!({
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "checkout", "meta.helm.sh/release-namespace": ns},
    }))
    .await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-gitops", "replica-gitops");

    let cases = [
        (
            "idle-timeout-mismatch",
            "DestinationRule",
            "catalog",
            "Argo CD Application shop".to_string(),
        ),
        (
            "missing-reset-retry",
            "VirtualService",
            "cart",
            "Flux Kustomization flux-system/apps".to_string(),
        ),
        (
            "listener-change-503",
            "VirtualService",
            "ratings-route",
            "Flux HelmRelease flux-system/ratings".to_string(),
        ),
        (
            "missing-reset-retry",
            "VirtualService",
            "checkout",
            format!("Helm release {ns}/checkout"),
        ),
    ];
    let mut held_remediations = Vec::new();
    for (code, kind, name, owner) in &cases {
        let r = eventually(
            Duration::from_secs(30),
            &format!("{code} on {kind} {name}"),
            || async {
                remediations(&admin, &ns).await.into_iter().find(|r| {
                    answers(r, code)
                        && r.spec.target.kind == *kind
                        && r.spec.target.name == *name
                        && r.status.is_some()
                })
            },
        )
        .await;
        let before = get_target(&admin, &r).await.resource_version();
        // A reviewer's approval does not override the owner either.
        approve(&admin, &ns, &r.name_any()).await;
        let message = held(&admin, &ns, &r).await;
        assert!(message.contains(owner.as_str()), "{name}: {message}");
        assert!(message.contains("allowLivePatch"), "{message}");
        held_remediations.push((r, before));
    }
    // Meanwhile the operator does apply what no tool owns: the localhost-binding Sidecar.
    let sidecar = remediation_for(&admin, &ns, "localhost-binding", "Sidecar").await;
    eventually(Duration::from_secs(30), "the Sidecar created", || async {
        let (api, _, _) =
            support::dynamic_api(&admin, "networking.istio.io/v1", "Sidecar", Some(&ns))
                .await
                .ok()?;
        api.get(&sidecar.spec.target.name).await.ok()
    })
    .await;
    for (r, before) in &held_remediations {
        assert_eq!(
            get_target(&admin, r).await.resource_version(),
            *before,
            "{} was patched although {} owns it",
            r.spec.target,
            "a GitOps tool"
        );
    }

    // The explicit per-Remediation override: the approved plan is then written.
    let (catalog, before) = &held_remediations[0];
    set_spec(
        &admin,
        &ns,
        &catalog.name_any(),
        json!({"allowLivePatch": true}),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the overridden fix written",
        || async {
            (get_target(&admin, catalog).await.resource_version() != *before).then_some(())
        },
    )
    .await;
    let dr = get_target(&admin, catalog).await;
    assert!(
        dr.data
            .pointer("/spec/trafficPolicy/connectionPool/http/idleTimeout")
            .is_some(),
        "{:?}",
        dr.data
    );
    operator.stop();
}
