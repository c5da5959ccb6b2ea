//! The operator's watches are a view that can lag behind the apiserver (a loaded apiserver, a
//! watch that lists again). This binary has a control plane of its own: its operator's
//! DestinationRule watch lags on purpose (tests/support/lag.rs), and every test operator acts on
//! every namespace, so in another binary it would propose fixes in other tests' namespaces from
//! its late view.

mod support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::control_plane;
use support::lag::WatchLag;
use support::operator::*;

/// meshmedic's own create, not yet shown by a watch that lags (a loaded apiserver, a watch that
/// lists again) past the time meshmedic waits for its writes, is not taken for a person's
/// delete: the apiserver is asked before a conclusion is drawn from an absence. Before this
/// test, a pass in that window recorded "someone deleted …, which meshmedic had created" and the
/// fix was never verified.
#[tokio::test]
async fn its_own_create_that_the_watch_has_not_shown_is_not_taken_for_a_delete() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-lagging", Some("apply")).await;
    let lag = WatchLag::of("destinationrules");
    let operator = Replica::start_lagging(
        cp.meshmedic_config(),
        "lease-lagging",
        "replica-lagging",
        lag.clone(),
    );
    // Longer than the 20 s meshmedic gives its own writes to reach the watch.
    let delay = Duration::from_secs(35);
    lag.set(delay);
    nginx_gallery(&admin, &ns).await;
    let mine = find(&admin, &ns, "DestinationRule", "gallery-idle-timeout").await;
    let name = mine.name_any();
    let applied = wait_within(
        &admin,
        &ns,
        &name,
        "meshmedic's rule created",
        Duration::from_secs(45),
        |r| r.status.as_ref().is_some_and(|s| s.written.is_some()),
    )
    .await;
    let created_at = std::time::Instant::now();
    // The apiserver has it; the operator's watch does not show it for another `delay`.
    get_target(&admin, &applied).await;

    // A pass after meshmedic stopped waiting for its write, while the watch still lags: any
    // event in the namespace brings one.
    tokio::time::sleep(Duration::from_secs(24)).await;
    assert!(
        created_at.elapsed() < delay,
        "the test was too slow to pass inside the lag"
    );
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(admin.clone(), &ns);
    services
        .patch(
            "gallery",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "to bring a pass"}}})),
        )
        .await
        .expect("touched");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let verified = wait_within(
        &admin,
        &ns,
        &name,
        "meshmedic's rule verified once the watch shows it",
        Duration::from_secs(60),
        |r| {
            reason(r, "Ready").as_deref() == Some("Verified")
                || r.status.as_ref().is_some_and(|s| s.reverted)
        },
    )
    .await;
    assert_eq!(
        reason(&verified, "Ready").as_deref(),
        Some("Verified"),
        "{:?}",
        verified.status
    );
    assert!(!verified.status.as_ref().is_some_and(|s| s.reverted));
    operator.stop();
}
