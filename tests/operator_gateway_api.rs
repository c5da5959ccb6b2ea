//! Gateway API's mesh support on the real control plane: a Service an HTTPRoute attaches to
//! (`parentRefs` of kind Service) has its host routed by istiod from that route, so meshmedic
//! never proposes a VirtualService of its own for it, whether the route is in the Service's
//! namespace or in a client's; the proposal comes once no route is attached any more. In a test
//! binary of its own: it installs Gateway API's HTTPRoute CRD and a mesh config without a
//! default retry on `reset` (so a Service without routes gets a new VirtualService proposed),
//! which the other tests' control planes do not have.
//! Needs `eval "$(scripts/k8s-test-env.sh)"` first (`MESHMEDIC_HTTPROUTE_CRD`).

mod support;

use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use meshmedic::model::remediation::{Phase, Remediation};
use serde_json::{Value, json};
use support::control_plane;
use support::operator::*;

/// An HTTPRoute `name` in `ns` attached to Service `service` of `service_ns` for mesh traffic.
fn http_route(ns: &str, name: &str, service_ns: &str, service: &str) -> Value {
    object(
        ns,
        "HTTPRoute",
        "gateway.networking.k8s.io/v1",
        name,
        json!({"parentRefs": [{"group": "", "kind": "Service", "name": service,
                               "namespace": service_ns, "port": 9080}],
               "rules": [{"backendRefs": [{"name": service, "namespace": service_ns,
                                           "port": 9080}]}]}),
    )
}

/// The Remediation proposing to create `<service>-retries` in `ns`, if one stands (not resolved).
async fn proposed_virtual_service(admin: &Client, ns: &str, service: &str) -> Option<Remediation> {
    let name = format!("{service}-retries");
    remediations(admin, ns).await.into_iter().find(|r| {
        answers(r, "missing-reset-retry")
            && r.spec.target.kind == "VirtualService"
            && r.spec.target.name == name
            && r.status.is_some()
            && phase(r) != Phase::Resolved
    })
}

#[tokio::test]
async fn a_service_an_http_route_attaches_to_gets_no_virtual_service_of_meshmedic() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    // Istio's own default retry policy (no `reset`): a Service without routes is proposed a
    // VirtualService that retries on it.
    let mesh = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "istio", "namespace": "istio-system"},
                      "data": {"mesh": "rootNamespace: istio-system\n"}});
    support::apply(&admin, &mesh).await.expect("mesh config");
    install_crd_from_env(
        &admin,
        "MESHMEDIC_HTTPROUTE_CRD",
        "httproutes.gateway.networking.k8s.io",
    )
    .await;

    let ns = support::namespace(&admin, "gamma").await;
    let clients = support::namespace(&admin, "gamma-clients").await;
    let opt_in = json!({"metadata": {"labels": {"istio-injection": "enabled"},
                                     "annotations": {"meshmedic.io/mode": "propose"}}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&opt_in))
        .await
        .expect("namespace opted in");
    app(&admin, &ns, "reviews", ("app", "example/app:1"), 9080).await;
    app(&admin, &ns, "ratings", ("app", "example/app:1"), 9080).await;
    // A producer route: reviews' host is routed from it (a canary split, say).
    support::apply(&admin, &http_route(&ns, "reviews", &ns, "reviews"))
        .await
        .unwrap_or_else(|e| panic!("HTTPRoute: {}", support::error_message(&e)));

    let operator = Replica::start(cp.meshmedic_config(), "lease-gamma", "replica-gamma");
    // ratings has no route: its VirtualService is proposed; reviews', analysed in the same
    // pass, is not.
    eventually(
        Duration::from_secs(60),
        "a VirtualService proposed for ratings",
        || proposed_virtual_service(&admin, &ns, "ratings"),
    )
    .await;
    assert!(
        proposed_virtual_service(&admin, &ns, "reviews")
            .await
            .is_none(),
        "no VirtualService beside the HTTPRoute attached to reviews"
    );

    // A consumer route in the clients' namespace, attached to ratings: the proposal goes. (Once
    // the operator has settled: the pass after its own writes would see the route anyway; this
    // checks that the route's own event re-analyses the Service's namespace.)
    tokio::time::sleep(Duration::from_secs(5)).await;
    support::apply(&admin, &http_route(&clients, "ratings", &ns, "ratings"))
        .await
        .unwrap_or_else(|e| panic!("HTTPRoute: {}", support::error_message(&e)));
    eventually(
        Duration::from_secs(60),
        "ratings' proposal gone once a route in another namespace attaches to it",
        || async {
            proposed_virtual_service(&admin, &ns, "ratings")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;

    // reviews' route deleted: its host is the sidecars' default again, and the VirtualService
    // is proposed.
    let (routes, _, _) = support::dynamic_api(
        &admin,
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        Some(&ns),
    )
    .await
    .expect("HTTPRoute api");
    routes
        .delete("reviews", &DeleteParams::default())
        .await
        .expect("route deleted");
    let rem = eventually(
        Duration::from_secs(60),
        "a VirtualService proposed for reviews once its route is gone",
        || proposed_virtual_service(&admin, &ns, "reviews"),
    )
    .await;
    assert_eq!(rem.spec.target.namespace, ns, "{}", rem.name_any());
    operator.stop();
}
