//! A partial view is not the truth: while meshmedic may not read DestinationRules (RBAC), the
//! idle-timeout finding (which reads them) is withheld — no false "create a DestinationRule"
//! Remediation, the existing one is not Resolved but says which kind is missing — and
//! `/readyz` and `meshmedic_store_synced` say so; once access is back, all is as before. In a
//! test binary of its own: it edits meshmedic's ClusterRole on its control plane.

mod support;

use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::Api;
use meshmedic::model::remediation::{Phase, Remediation};
use support::control_plane;
use support::operator::*;

const CODE: &str = "idle-timeout-mismatch";

fn synced_condition(r: &Remediation) -> Option<(String, String)> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Synced")
        .map(|c| (c.status.clone(), c.message.clone()))
}

/// The ClusterRole with `destinationrules` dropped from (or put back into) the rule that reads
/// Istio networking kinds.
async fn destination_rules_readable(admin: &kube::Client, readable: bool) {
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let mut role = roles.get("meshmedic").await.expect("meshmedic ClusterRole");
    for rule in role.rules.iter_mut().flatten() {
        let reads = rule.verbs.iter().any(|v| v == "list");
        let istio = rule
            .api_groups
            .iter()
            .flatten()
            .any(|g| g == "networking.istio.io");
        if reads && istio {
            let resources = rule.resources.get_or_insert_with(Vec::new);
            resources.retain(|r| r != "destinationrules");
            if readable {
                resources.push("destinationrules".into());
            }
        }
    }
    role.metadata.managed_fields = None;
    roles
        .replace("meshmedic", &Default::default(), &role)
        .await
        .expect("ClusterRole updated");
}

#[tokio::test]
async fn findings_reading_a_forbidden_kind_are_withheld_until_it_syncs() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "partial", Some("propose")).await;

    // Whole view: the DestinationRule's idle timeout is patched (one Remediation, Proposed).
    let a = Replica::start(cp.meshmedic_config(), "lease-partial", "replica-a");
    let existing = remediation_for(&admin, &ns, CODE, "DestinationRule").await;
    let name = existing.metadata.name.clone().expect("name");
    assert_eq!(phase(&existing), Phase::Proposed);
    a.stop();

    // DestinationRules forbidden; a new replica starts with an empty DestinationRule store.
    destination_rules_readable(&admin, false).await;
    let b = Replica::start(cp.meshmedic_config(), "lease-partial", "replica-b");
    let port = b.metrics_port;
    let held = eventually(
        Duration::from_secs(60),
        "the Remediation to say DestinationRule is not synced",
        || async {
            let r = Api::<Remediation>::namespaced(admin.clone(), &ns)
                .get(&name)
                .await
                .ok()?;
            let (status, message) = synced_condition(&r)?;
            (status == "False" && message.contains("DestinationRule")).then_some(r)
        },
    )
    .await;
    // Not resolved because the store is empty, and no false "create a DestinationRule".
    assert_eq!(phase(&held), Phase::Proposed);
    let (code, body) = http_get(port, "/readyz").expect("/readyz answers");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("degraded") && body.contains("DestinationRule"),
        "{body}"
    );
    let (_, metrics) = http_get(port, "/metrics").expect("/metrics answers");
    assert!(
        metrics.contains("meshmedic_store_synced{kind=\"DestinationRule\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshmedic_store_synced{kind=\"Service\"} 1"),
        "{metrics}"
    );
    // Other findings go on: a Remediation whose analysis does not read DestinationRules is
    // not held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = remediations(&admin, &ns).await;
    let idle: Vec<_> = all
        .iter()
        .filter(|r| r.spec.code.as_str() == CODE)
        .collect();
    assert_eq!(
        idle.len(),
        1,
        "no second idle-timeout Remediation: {idle:#?}"
    );
    assert_eq!(phase(idle[0]), Phase::Proposed);
    assert!(
        all.iter()
            .filter(|r| r.spec.code.as_str() == "missing-reset-retry")
            .all(|r| synced_condition(r).is_none()),
        "missing-reset-retry does not read DestinationRules"
    );

    // Access back: the watcher lists again (backoff), the condition clears, nothing else moves.
    destination_rules_readable(&admin, true).await;
    let back = eventually(
        Duration::from_secs(90),
        "the Synced condition to turn True",
        || async {
            let r = Api::<Remediation>::namespaced(admin.clone(), &ns)
                .get(&name)
                .await
                .ok()?;
            (synced_condition(&r)?.0 == "True").then_some(r)
        },
    )
    .await;
    assert_eq!(phase(&back), Phase::Proposed);
    let (code, body) = http_get(port, "/readyz").expect("/readyz answers");
    assert_eq!((code, body.as_str()), (200, "ok"));
    assert_eq!(
        remediations(&admin, &ns)
            .await
            .iter()
            .filter(|r| r.spec.code.as_str() == CODE)
            .count(),
        1
    );
    b.stop();
}
