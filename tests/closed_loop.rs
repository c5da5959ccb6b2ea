//! The closed loop on a real control plane (kube-apiserver + etcd + Istio's CRDs, see
//! tests/support): an approval covers exactly the plan reviewed, a write is verified, a person's
//! edit is never silently overwritten, and rollback restores the original exactly (or refuses).
//! Needs `eval "$(scripts/k8s-test-env.sh)"` first.

mod support;

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};
use meshmedic::model::remediation::{Phase, Remediation};
use serde_json::{Value, json};
use support::control_plane;
use support::operator::*;

async fn target_api(admin: &Client, r: &Remediation) -> Api<DynamicObject> {
    let t = &r.spec.target;
    support::dynamic_api(admin, &t.api_version, &t.kind, Some(&t.namespace))
        .await
        .expect("api")
        .0
}

async fn wait_for(
    admin: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Remediation) -> bool,
) -> Remediation {
    wait_within(admin, ns, name, what, Duration::from_secs(45), check).await
}

/// `analyze` of the shop example's files, as the CLI reads them.
fn shop_report() -> meshmedic::analysis::Report {
    let files = support::yaml_files_under(&support::repo_path("examples/shop"));
    let mut builder = meshmedic::snapshot::SnapshotBuilder::new(Default::default());
    for f in &files {
        let text = std::fs::read_to_string(f).expect("example");
        for (source, doc) in
            meshmedic::snapshot::load::parse_documents("example", &text).expect("yaml")
        {
            builder.add(source, doc).expect("object");
        }
    }
    meshmedic::analysis::analyze(&builder.build().expect("snapshot"))
}

fn written(r: &Remediation) -> bool {
    r.status.as_ref().is_some_and(|s| s.written.is_some())
}

#[tokio::test]
async fn an_approval_racing_a_re_plan_never_applies_the_new_plan() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-race", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-race", "replica-race");
    let rem = find(&admin, &ns, "DestinationRule", "catalog").await;
    let name = rem.name_any();
    let reviewed = rem.spec.plan_digest.clone().expect("digest");
    let api = target_api(&admin, &rem).await;

    // While the reviewer looks at plan 1, a person changes the DestinationRule; the operator
    // re-plans. The reviewer's approval of plan 1 then lands.
    api.patch(
        "catalog",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}}),
        ),
    )
    .await
    .expect("a person edits the DestinationRule");
    // Back to Proposed, with a condition saying what changed.
    let replanned = wait_for(&admin, &ns, &name, "the re-plan", |r| {
        r.spec.plan_digest.as_deref() != Some(reviewed.as_str())
            && reason(r, "Ready").as_deref() == Some("PlanChanged")
    })
    .await;
    let said = replanned
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .expect("Ready");
    assert_eq!(phase(&replanned), Phase::Proposed);
    assert!(
        said.message.contains(&reviewed) && said.message.contains("/spec/trafficPolicy"),
        "{}",
        said.message
    );
    let edited_version = api
        .get("catalog")
        .await
        .expect("catalog")
        .resource_version();

    // `meshmedic approve --digest <reviewed>` refuses: the plan is not what was reviewed.
    let refused =
        meshmedic::cli::approve::approve(&admin, &ns, &name, Some(&reviewed), false).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("the plan changed")),
        "{refused:?}"
    );
    // An approval written with the resourceVersion the reviewer read is rejected by the API.
    let stale = Api::<Remediation>::namespaced(admin.clone(), &ns)
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"resourceVersion": rem.resource_version()},
                                 "spec": {"approvedDigest": reviewed}}),
            ),
        )
        .await;
    assert!(
        matches!(&stale, Err(kube::Error::Api(s)) if s.code == 409),
        "{stale:?}"
    );
    // Even an approval of the old digest that gets through applies nothing.
    set_spec(&admin, &ns, &name, json!({"approvedDigest": reviewed})).await;
    let outdated = wait_for(&admin, &ns, &name, "ApprovalOutdated", |r| {
        reason(r, "Ready").as_deref() == Some("ApprovalOutdated")
    })
    .await;
    assert_eq!(phase(&outdated), Phase::Proposed);
    // And it is withdrawn: should the plan return to the old digest (the person's edit undone),
    // an approval given while it was stale does not come back to life.
    wait_for(&admin, &ns, &name, "the outdated approval removed", |r| {
        r.spec.approved_digest.is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        api.get("catalog")
            .await
            .expect("catalog")
            .resource_version(),
        edited_version,
        "the old approval wrote something"
    );
    assert!(!written(&get_remediation(&admin, &ns, &name).await));

    // What `meshmedic approve` shows: the plan's digest and the change as a diff of the target.
    let shown = meshmedic::cli::approve::approve(&admin, &ns, &name, None, true)
        .await
        .expect("dry run");
    assert!(
        shown.contains(replanned.spec.plan_digest.as_deref().expect("digest"))
            && shown
                .lines()
                .any(|l| l.starts_with("+ ") && l.contains("http"))
            && shown.contains("nothing approved"),
        "{shown}"
    );
    // Approving what is shown now applies exactly that plan, on top of the person's edit.
    let digest = approve(&admin, &ns, &name).await;
    assert_eq!(Some(&digest), replanned.spec.plan_digest.as_ref());
    let applied = wait_for(&admin, &ns, &name, "the approved plan written", written).await;
    assert_eq!(
        applied
            .status
            .as_ref()
            .and_then(|s| s.applied_digest.clone()),
        Some(digest)
    );
    let dr = api.get("catalog").await.expect("catalog");
    assert_eq!(
        dr.data["spec"]["trafficPolicy"]["loadBalancer"]["simple"],
        "ROUND_ROBIN"
    );
    operator.stop();
}

#[tokio::test]
async fn a_human_revert_becomes_a_new_proposal_never_a_silent_re_apply() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let propose = shop(&admin, "loop-revert", Some("propose")).await;
    let auto = shop(&admin, "loop-revert-auto", Some("apply")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-revert", "replica-revert");

    for (ns, approve_first) in [(&propose, true), (&auto, false)] {
        let rem = find(&admin, ns, "DestinationRule", "catalog").await;
        let name = rem.name_any();
        if approve_first {
            approve(&admin, ns, &name).await;
        }
        let verified = wait_for(&admin, ns, &name, "the fix verified", |r| {
            phase(r) == Phase::Resolved && reason(r, "Verified").as_deref() == Some("Verified")
        })
        .await;
        let status = verified.status.clone().expect("status");
        assert_eq!(status.writes, 1);
        let original = status.original.expect("original recorded").spec;

        // A person puts the DestinationRule back as it was.
        let api = target_api(&admin, &rem).await;
        let mut dr = api.get("catalog").await.expect("catalog");
        dr.data["spec"] = original.clone();
        dr.metadata.managed_fields = None;
        let reverted = api
            .replace("catalog", &Default::default(), &dr)
            .await
            .expect("a person reverts the fix");
        let r = wait_for(&admin, ns, &name, "a new proposal", |r| {
            phase(r) == Phase::Proposed && r.status.as_ref().is_some_and(|s| s.reverted)
        })
        .await;
        assert_eq!(reason(&r, "Ready").as_deref(), Some("Reverted"), "{ns}");
        // The earlier verification no longer holds: not a stale Verified=True.
        assert_eq!(reason(&r, "Verified").as_deref(), Some("Reverted"), "{ns}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            api.get("catalog")
                .await
                .expect("catalog")
                .resource_version(),
            reverted.resource_version(),
            "the fix was silently re-applied in {ns}"
        );
        let r = get_remediation(&admin, ns, &name).await;
        assert_eq!(r.status.as_ref().map(|s| s.writes), Some(1));
        // A rollback now has nothing left to undo: RolledBack, the person's spec untouched.
        meshmedic::cli::rollback::rollback(&admin, ns, &name)
            .await
            .expect("rollback");
        wait_phase(&admin, ns, &name, Phase::RolledBack).await;
        let now = api.get("catalog").await.expect("catalog");
        assert_eq!(now.data["spec"], original, "{ns}");
    }
    operator.stop();
}

#[tokio::test]
async fn a_refused_rollback_runs_when_asked_again_after_the_edit_is_undone() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-foreign", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-foreign", "replica-foreign");
    let rem = find(&admin, &ns, "VirtualService", "cart").await;
    let name = rem.name_any();
    approve(&admin, &ns, &name).await;
    let applied = wait_for(&admin, &ns, &name, "the fix written", written).await;
    let status = applied.status.clone().expect("status");
    let (original, mine) = (
        status.original.expect("original").spec,
        status.written.expect("written").spec,
    );
    let paths = meshmedic::controller::restore::changed_paths("/spec", &original, &mine);
    assert!(!paths.is_empty());

    // A person changes a field meshmedic wrote (here: removes it).
    let api = target_api(&admin, &rem).await;
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": paths[0]}])).expect("patch");
    let edited = api
        .patch("cart", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .expect("a person edits meshmedic's field");

    meshmedic::cli::rollback::rollback(&admin, &ns, &name)
        .await
        .expect("rollback requested");
    let refused = wait_for(&admin, &ns, &name, "the rollback refused", |r| {
        phase(r) == Phase::Refused
    })
    .await;
    assert_eq!(reason(&refused, "Ready").as_deref(), Some("TargetChanged"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = api.get("cart").await.expect("cart");
    assert_eq!(
        now.resource_version(),
        edited.resource_version(),
        "nothing written"
    );
    assert_eq!(now.data["spec"], edited.data["spec"]);

    // The person puts meshmedic's value back and asks again: this time it rolls back, exactly.
    // (A second `meshmedic rollback` withdraws and renews the request; `true` over `true` would
    // change nothing the operator can see.)
    let value = mine
        .pointer(paths[0].trim_start_matches("/spec"))
        .cloned()
        .expect("meshmedic's value");
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": paths[0], "value": value}]))
            .expect("patch");
    api.patch("cart", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .expect("the person restores meshmedic's value");
    let said = meshmedic::cli::rollback::rollback(&admin, &ns, &name)
        .await
        .expect("rollback requested again");
    assert!(said.contains("requested again"), "{said}");
    wait_for(
        &admin,
        &ns,
        &name,
        "rolled back on the renewed request",
        |r| phase(r) == Phase::RolledBack,
    )
    .await;
    let now = api.get("cart").await.expect("cart");
    assert_eq!(now.data["spec"], original, "restored exactly");

    // The request stands, and a person changes the target again: the Remediation stays
    // RolledBack, nothing is written, and it shows the plan for the target as it is now, which
    // `meshmedic approve` approves (withdrawing the request) and the operator then writes.
    let before = wait_for(&admin, &ns, &name, "RolledBack", |r| {
        phase(r) == Phase::RolledBack
    })
    .await;
    let edited = api
        .patch(
            "cart",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"http": [{
                "name": "default",
                "route": [{"destination": {"host": "cart"}}],
                "timeout": "15s",
                "retries": {"attempts": 3, "perTryTimeout": "2s",
                            "retryOn": "connect-failure,refused-stream,unavailable"},
            }]}})),
        )
        .await
        .expect("a person changes the timeout");
    let replanned = wait_for(
        &admin,
        &ns,
        &name,
        "a new plan shown, still RolledBack",
        |r| r.spec.plan_digest != before.spec.plan_digest,
    )
    .await;
    assert_eq!(phase(&replanned), Phase::RolledBack);
    assert!(replanned.spec.rollback);
    assert!(!written(&replanned));
    assert_eq!(
        api.get("cart").await.expect("cart").resource_version(),
        edited.resource_version(),
        "nothing written while the request stands"
    );
    let digest = approve(&admin, &ns, &name).await;
    assert_eq!(Some(digest.as_str()), replanned.spec.plan_digest.as_deref());
    let fixed = wait_for(
        &admin,
        &ns,
        &name,
        "the new plan written and verified",
        |r| reason(r, "Ready").as_deref() == Some("Verified"),
    )
    .await;
    assert!(!fixed.spec.rollback);
    let now = api.get("cart").await.expect("cart");
    assert_eq!(
        now.data["spec"]["http"][0]["timeout"], "15s",
        "the person's edit kept"
    );
    operator.stop();
}

#[tokio::test]
async fn a_target_deleted_mid_apply_gets_a_clear_condition_and_the_operator_goes_on() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-deleted", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-deleted", "replica-deleted");
    let rem = find(&admin, &ns, "DestinationRule", "catalog").await;
    let name = rem.name_any();
    let api = target_api(&admin, &rem).await;
    // Approve (the digest shown) and delete at once: whichever wins, the Remediation says what
    // happened. (`meshmedic approve` itself refuses once the target is gone.)
    let digest = rem.spec.plan_digest.clone().expect("digest");
    let dp = DeleteParams::default();
    let ((), deleted) = tokio::join!(
        set_spec(&admin, &ns, &name, json!({"approvedDigest": digest})),
        api.delete("catalog", &dp)
    );
    deleted.expect("deleted");
    let r = wait_for(&admin, &ns, &name, "TargetDeleted", |r| {
        reason(r, "Ready").as_deref() == Some("TargetDeleted")
    })
    .await;
    assert_eq!(phase(&r), Phase::Stale);
    let message = r.status.as_ref().expect("status").conditions[0]
        .message
        .clone();
    assert!(
        message.contains("catalog") && message.contains("deleted"),
        "{message}"
    );

    // The operator is still working: another fix applies.
    let cart = find(&admin, &ns, "VirtualService", "cart").await;
    approve(&admin, &ns, &cart.name_any()).await;
    wait_for(&admin, &ns, &cart.name_any(), "the cart fix", written).await;
    operator.stop();
}

#[tokio::test]
async fn a_create_then_patch_chain_rolls_back_to_the_original() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-chain", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-chain", "replica-chain");
    let rem = remediation_for(&admin, &ns, "localhost-binding", "Sidecar").await;
    let name = rem.name_any();
    let api = target_api(&admin, &rem).await;
    let sidecar = rem.spec.target.name.clone();
    assert!(api.get_opt(&sidecar).await.expect("get").is_none());

    // Step 1: create.
    approve(&admin, &ns, &name).await;
    wait_for(&admin, &ns, &name, "the Sidecar created", written).await;
    let created = api.get(&sidecar).await.expect("created");
    // A person breaks the Sidecar's listener; meshmedic proposes a patch of the same object.
    let mut broken = created.clone();
    broken.data["spec"]["ingress"][0]["defaultEndpoint"] = json!("0.0.0.0:8080");
    broken.metadata.managed_fields = None;
    api.replace(&sidecar, &Default::default(), &broken)
        .await
        .expect("a person edits the Sidecar");
    let proposal = wait_for(&admin, &ns, &name, "a patch proposed", |r| {
        phase(r) == Phase::Proposed
            && r.spec.action == meshmedic::model::remediation::RemediationAction::Patch
    })
    .await;
    // Step 2: patch, approved anew.
    approve(&admin, &ns, &name).await;
    let twice = wait_for(&admin, &ns, &name, "the patch written", |r| {
        r.status.as_ref().is_some_and(|s| s.writes == 2)
    })
    .await;
    assert_ne!(proposal.spec.plan_digest, rem.spec.plan_digest);
    assert!(
        twice
            .status
            .as_ref()
            .and_then(|s| s.original.as_ref())
            .is_some_and(|o| !o.existed),
        "the original is the state before the first write"
    );
    // Rollback: the object did not exist before meshmedic's first write.
    meshmedic::cli::rollback::rollback(&admin, &ns, &name)
        .await
        .expect("rollback");
    wait_phase(&admin, &ns, &name, Phase::RolledBack).await;
    assert!(api.get_opt(&sidecar).await.expect("get").is_none());
    operator.stop();
}

#[tokio::test]
async fn two_causes_on_one_virtual_service_are_one_remediation_and_roll_back_byte_identical() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-shared", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-shared", "replica-shared");
    let rem = find(&admin, &ns, "VirtualService", "ratings-route").await;
    let codes: Vec<&str> = rem.spec.causes.iter().map(|c| c.code.as_str()).collect();
    assert!(
        codes.contains(&"missing-reset-retry") && codes.contains(&"listener-change-503"),
        "{codes:?}"
    );
    assert_eq!(
        remediations(&admin, &ns)
            .await
            .iter()
            .filter(|r| r.spec.target.name == "ratings-route")
            .count(),
        1
    );
    let name = rem.name_any();
    let api = target_api(&admin, &rem).await;
    let before = api.get("ratings-route").await.expect("vs");
    approve(&admin, &ns, &name).await;
    let applied = wait_for(&admin, &ns, &name, "the fix written and checked", |r| {
        written(r) && matches!(phase(r), Phase::Resolved)
            || reason(r, "Ready").as_deref() == Some("Ineffective")
    })
    .await;
    assert_eq!(
        applied.status.as_ref().map(|s| s.writes),
        Some(1),
        "one write for both causes"
    );
    meshmedic::cli::rollback::rollback(&admin, &ns, &name)
        .await
        .expect("rollback");
    wait_phase(&admin, &ns, &name, Phase::RolledBack).await;
    let after = api.get("ratings-route").await.expect("vs");
    assert_eq!(
        serde_json::to_vec(&after.data["spec"]).expect("json"),
        serde_json::to_vec(&before.data["spec"]).expect("json"),
        "spec byte-identical to the original"
    );
    operator.stop();
}

/// The whole shop: every Remediation approved with the plan it shows, each written once,
/// verified, the live objects re-analysed, then everything rolled back in a shuffled order and
/// every target's spec compared with the original.
#[tokio::test]
async fn the_shop_end_to_end_approve_verify_roll_back() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-e2e", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-e2e", "replica-e2e");
    // Parity with `analyze` of the same files: one Remediation per target it changes.
    let report = shop_report();
    let mut expected: Vec<(String, String)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.remediation.target.kind.clone(),
                f.remediation.target.name.clone(),
            )
        })
        .collect();
    expected.sort();
    expected.dedup();
    let all = eventually_showing(Duration::from_secs(60), "every Remediation", || async {
        let rs = remediations(&admin, &ns).await;
        if rs.len() == expected.len() && rs.iter().all(|r| r.status.is_some()) {
            return Ok(rs);
        }
        let seen: Vec<String> = rs
            .iter()
            .map(|r| {
                let t = &r.spec.target;
                let status = r.status.as_ref().map(|s| format!("{:?}", s.phase));
                let status = status.as_deref().unwrap_or("no status yet");
                format!("  {} {}/{}: {status}", r.name_any(), t.kind, t.name)
            })
            .collect();
        Err(format!(
            "expected targets {expected:?}\n{} Remediations:\n{}",
            rs.len(),
            seen.join("\n")
        ))
    })
    .await;
    let mut got: Vec<(String, String)> = all
        .iter()
        .map(|r| (r.spec.target.kind.clone(), r.spec.target.name.clone()))
        .collect();
    got.sort();
    assert_eq!(got, expected);
    // Steady state before any approval: no write loops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let versions = |rs: Vec<Remediation>| -> Vec<Option<String>> {
        rs.iter().map(|r| r.resource_version()).collect()
    };
    let settled = versions(remediations(&admin, &ns).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        versions(remediations(&admin, &ns).await),
        settled,
        "Remediations keep changing"
    );

    // Every Remediation, the safe ones and the pod-template patches of Deployments alike.
    let safe: Vec<Remediation> = all;
    let mut originals: Vec<(Remediation, Option<Value>)> = Vec::new();
    for r in &safe {
        let api = target_api(&admin, r).await;
        let spec = api
            .get_opt(&r.spec.target.name)
            .await
            .expect("get")
            .map(|o| o.data["spec"].clone());
        originals.push((r.clone(), spec));
        approve(&admin, &ns, &r.name_any()).await;
    }
    let mut verified = 0;
    for (r, _) in &originals {
        let done = wait_for(&admin, &ns, &r.name_any(), "verified or ineffective", |x| {
            matches!(
                reason(x, "Verified").as_deref(),
                Some("Verified" | "Ineffective" | "Mitigation")
            )
        })
        .await;
        let status = done.status.clone().expect("status");
        assert_eq!(
            status.writes, 1,
            "{}: one write per approval",
            r.spec.target
        );
        if reason(&done, "Verified").as_deref() == Some("Verified") {
            verified += 1;
        } else {
            // Every fix removes its own finding (issue 9 §2; tests/fixes_stick.rs proves it
            // without a cluster); only a declared mitigation may stay, and never as Resolved.
            assert_eq!(
                reason(&done, "Verified").as_deref(),
                Some("Mitigation"),
                "{}: {:?}",
                r.spec.target,
                done.status
            );
            assert_ne!(phase(&done), Phase::Resolved);
        }
    }
    eprintln!("{verified} of {} fixes verified", originals.len());
    // Re-read the live objects (as the operator does, through watches) and analyse them: no
    // finding left on a verified target, and no new finding anywhere.
    let watched = meshmedic::controller::stores::start(
        &admin,
        "istio-system",
        std::sync::Arc::new(meshmedic::controller::stores::Changes::default()),
        std::sync::Arc::new(meshmedic::controller::sync::SyncStates::default()),
    );
    for w in &watched {
        let _ = tokio::time::timeout(Duration::from_secs(20), w.store.wait_until_ready()).await;
    }
    let options = meshmedic::snapshot::SnapshotOptions {
        cluster_domain: "cluster.local".into(),
        ..Default::default()
    };
    let snap = meshmedic::controller::stores::snapshot(&watched, options).expect("live snapshot");
    // The live snapshot does hold the namespace's objects.
    for (r, _) in &originals {
        if r.spec.action == meshmedic::model::remediation::RemediationAction::Patch {
            assert!(
                snap.raw_object(&r.spec.target).is_some(),
                "{}",
                r.spec.target
            );
        }
    }
    let live = meshmedic::analysis::analyze_in(&snap, Some([ns.clone()].into()));
    let key = |f: &meshmedic::analysis::Finding| {
        (
            f.code.to_string(),
            f.remediation.target.kind.clone(),
            f.remediation.target.name.clone(),
        )
    };
    let before: std::collections::BTreeSet<_> = report.findings.iter().map(key).collect();

    for f in &live.findings {
        assert!(
            before.contains(&key(f)),
            "a new finding after the fixes: {}",
            f.message
        );
    }
    for (r, _) in &originals {
        let done = get_remediation(&admin, &ns, &r.name_any()).await;
        if reason(&done, "Verified").as_deref() == Some("Verified") {
            assert!(
                !live
                    .findings
                    .iter()
                    .any(|f| f.remediation.target == r.spec.target),
                "{} verified but a finding is left on it",
                r.spec.target
            );
        }
    }
    // Roll back in a shuffled (seeded by the namespace name) order.
    let seed = ns
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let n = originals.len();
    for i in 0..n {
        originals.swap(i, (seed as usize).wrapping_add(i * 7) % n);
    }
    for (r, _) in &originals {
        meshmedic::cli::rollback::rollback(&admin, &ns, &r.name_any())
            .await
            .expect("rollback");
    }
    for (r, original) in &originals {
        let start = std::time::Instant::now();
        loop {
            let now = get_remediation(&admin, &ns, &r.name_any()).await;
            if phase(&now) == Phase::RolledBack {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} not rolled back: {:#?}",
                r.spec.target,
                (now.spec.rollback, now.status)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let api = target_api(&admin, r).await;
        let now = api
            .get_opt(&r.spec.target.name)
            .await
            .expect("get")
            .map(|o| o.data["spec"].clone());
        assert_eq!(&now, original, "{} restored exactly", r.spec.target);
    }
    operator.stop();
}

/// `meshmedic.io/min-severity` keeps the review queue to what matters: below it, no Remediation
/// (the finding stays in `analyze` and in the findings metric).
#[tokio::test]
async fn the_namespace_minimum_severity_filters_remediations() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    // Opted in and given a minimum in one write (other tests' operators watch every namespace).
    let ns = shop(&admin, "loop-severity", None).await;
    patch_namespace(
        &admin,
        &ns,
        json!({"metadata": {"annotations": {
                "meshmedic.io/mode": "propose", "meshmedic.io/min-severity": "error"}}}),
    )
    .await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-severity", "replica-severity");
    let all = eventually(
        Duration::from_secs(60),
        "the error-level Remediations",
        || async {
            let rs = remediations(&admin, &ns).await;
            (rs.len() == 2 && rs.iter().all(|r| r.status.is_some())).then_some(rs)
        },
    )
    .await;
    assert!(
        all.iter()
            .all(|r| r.spec.severity == meshmedic::analysis::Severity::Error)
    );
    // Steady state: no write loops (every Remediation keeps its resourceVersion).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let versions = |rs: Vec<Remediation>| -> Vec<Option<String>> {
        rs.iter().map(|r| r.resource_version()).collect()
    };
    let settled = versions(remediations(&admin, &ns).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        versions(remediations(&admin, &ns).await),
        settled,
        "Remediations keep changing"
    );
    assert_eq!(settled.len(), 2);
    let (code, body) = http_get(operator.metrics_port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(
        body.lines().any(|l| l.starts_with("meshmedic_findings{")
            && l.contains("missing-reset-retry")
            && l.contains(&ns)
            && !l.ends_with(" 0")),
        "warning findings still counted"
    );
    operator.stop();
}

/// In `apply` mode a target that keeps needing the fix (here another controller keeps adding
/// routes without reset retries) is written at most 3 times per Remediation, counted in the
/// status, then Refused until a person looks; rollback undoes each write exactly and keeps the
/// other controller's routes.
#[tokio::test]
async fn apply_mode_re_applications_are_counted_capped_and_rolled_back_write_by_write() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-cap", Some("apply")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-cap", "replica-cap");
    let rem = find(&admin, &ns, "VirtualService", "cart").await;
    let name = rem.name_any();
    let api = target_api(&admin, &rem).await;
    let r = wait_for(&admin, &ns, &name, "the first write verified", |r| {
        reason(r, "Verified").as_deref() == Some("Verified")
    })
    .await;
    let original = r
        .status
        .clone()
        .and_then(|s| s.original)
        .expect("original")
        .spec;
    for i in 1..=3 {
        let route = json!({"name": format!("extra-{i}"), "match": [{"uri": {"prefix": format!("/extra{i}")}}],
                           "route": [{"destination": {"host": "cart"}}],
                           "retries": {"attempts": 2, "retryOn": "connect-failure"}});
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/spec/http/-", "value": route}]))
                .expect("patch");
        let edited = api
            .patch("cart", &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .expect("another controller adds a route");
        if i < 3 {
            wait_for(&admin, &ns, &name, "the re-application", |r| {
                r.status.as_ref().is_some_and(|s| s.writes == i + 1)
                    && reason(r, "Verified").as_deref() == Some("Verified")
            })
            .await;
        } else {
            let refused = wait_for(&admin, &ns, &name, "the write limit", |r| {
                reason(r, "Ready").as_deref() == Some("WriteLimit")
            })
            .await;
            assert_eq!(phase(&refused), Phase::Refused);
            assert_eq!(refused.status.as_ref().map(|s| s.writes), Some(3));
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(
                api.get("cart").await.expect("cart").resource_version(),
                edited.resource_version(),
                "a fourth write"
            );
        }
    }
    meshmedic::cli::rollback::rollback(&admin, &ns, &name)
        .await
        .expect("rollback");
    let rolled_back = wait_phase(&admin, &ns, &name, Phase::RolledBack).await;
    // The verification was of a write that is now undone: not a stale Verified=True.
    assert_eq!(
        reason(&rolled_back, "Verified").as_deref(),
        Some("RolledBack")
    );
    let now = api.get("cart").await.expect("cart").data["spec"].clone();
    assert_eq!(
        now["http"][0], original["http"][0],
        "meshmedic's first write undone"
    );
    let routes = now["http"].as_array().expect("routes");
    assert_eq!(routes.len(), 4, "the other controller's routes stay");
    for r in &routes[1..] {
        assert_eq!(r["retries"]["retryOn"], "connect-failure", "{r}");
    }
    operator.stop();
}

#[tokio::test]
async fn an_approval_never_overwrites_a_change_made_after_the_plan() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-same-field", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-same-field", "replica-sf");
    let rem = find(&admin, &ns, "DestinationRule", "catalog").await;
    let name = rem.name_any();
    operator.stop();
    let (before, paths) = {
        let patch = rem.spec.patch.clone().expect("a patch");
        let paths: Vec<String> = patch
            .iter()
            .filter_map(|op| op["path"].as_str().map(str::to_string))
            .collect();
        (rem.spec.base_digest.clone(), paths)
    };
    assert!(before.is_some(), "the plan records the spec it starts from");

    // A person changes the very field the plan changes, to another value; the reviewer then
    // approves the plan as published (its digest is what they were shown).
    let api = target_api(&admin, &rem).await;
    assert!(
        paths.iter().any(|p| p.contains("connectionPool")),
        "the catalog fix sets the connection pool: {paths:?}"
    );
    let idle = "/spec/trafficPolicy/connectionPool/http/idleTimeout";
    let edited = api
        .patch(
            "catalog",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"trafficPolicy": {"connectionPool": {"http": {"idleTimeout": "7h"}}}}})),
        )
        .await
        .expect("a person edits the field");
    // `meshmedic approve` will not show (or approve) a plan against a spec it was not made from.
    let refused = meshmedic::cli::approve::approve(&admin, &ns, &name, None, false)
        .await
        .expect_err("approve refuses a plan made from another spec");
    assert!(
        refused.contains("changed since this plan was made"),
        "{refused}"
    );
    // A reviewer who writes the digest by hand anyway.
    let digest = rem.spec.plan_digest.clone().expect("digest");
    set_spec(&admin, &ns, &name, json!({"approvedDigest": digest})).await;

    // The write as an operator whose watch has not shown the edit yet would attempt it: with
    // the Remediation as it saw it (other tests' operators share this apiserver and may have
    // re-planned the stored one already).
    let client = Client::try_from(cp.meshmedic_config()).expect("client");
    let rapi: Api<Remediation> = Api::namespaced(client.clone(), &ns);
    let metrics = meshmedic::controller::metrics::Metrics::default();
    let mut outcome = None;
    for _ in 0..10 {
        // The stored object's version (the write is claimed on it), the plan as first seen.
        let mut approved = rapi.get(&name).await.expect("remediation");
        approved.spec = rem.spec.clone();
        approved.spec.approved_digest = Some(digest.clone());
        let o =
            meshmedic::controller::apply::apply_fix(&client, &rapi, &approved, &metrics, "test")
                .await;
        if o.reason != meshmedic::controller::apply::BUSY {
            outcome = Some(o);
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let outcome = outcome.expect("the write was claimed");
    assert!(outcome.wrote.is_none(), "{}", outcome.message);
    assert_eq!(outcome.reason, "TargetChanged", "{}", outcome.message);
    let now = api.get("catalog").await.expect("catalog");
    assert_eq!(now.resource_version(), edited.resource_version());
    assert_eq!(now.data.pointer(idle), Some(&json!("7h")));

    // The operator, current again, publishes a new plan from the person's spec; the old
    // approval applies nothing.
    let operator = Replica::start(cp.meshmedic_config(), "lease-same-field", "replica-sf");
    let r = wait_for(&admin, &ns, &name, "a plan from the new spec", |r| {
        r.spec.plan_digest.as_ref() != Some(&digest)
    })
    .await;
    assert_ne!(r.spec.base_digest, before);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = api.get("catalog").await.expect("catalog");
    assert_eq!(now.resource_version(), edited.resource_version());
    operator.stop();
}

/// A pass decides from the Remediations it read when it started; under load another replica
/// (or a reviewer and the write that follows) can move a Remediation on before the pass gets to
/// it. Publishing from such a stale read must write nothing: found with ten operators on one
/// apiserver, where a late "first publish" set an Applied Remediation back to Proposed for good.
#[tokio::test]
async fn a_stale_pass_never_publishes_over_a_remediation_that_moved_on() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    // Not opted in: no operator of the other tests touches it.
    let ns = support::namespace(&admin, "loop-stale").await;
    let report = shop_report();
    let findings: Vec<_> = report.findings.iter().collect();
    let (planned, errors) = meshmedic::controller::plan::plan_targets(&findings, &|_| None);
    assert!(errors.is_empty(), "{errors:?}");
    let plan = planned
        .iter()
        .find(|p| p.target.kind == "DestinationRule")
        .expect("the catalog DestinationRule's plan");
    let api: Api<Remediation> = Api::namespaced(admin.clone(), &ns);
    let publish = |seen: Option<Remediation>, spec: Value| {
        let (api, ns, name) = (api.clone(), ns.clone(), plan.name.clone());
        async move {
            meshmedic::controller::apply::publish(
                &api,
                &name,
                &ns,
                &spec,
                seen.as_ref(),
                Phase::Proposed,
                "Proposed",
                "proposed",
            )
            .await
            .expect("publish")
        }
    };

    // First publish: created, Proposed.
    let first = publish(None, plan.spec.clone()).await.expect("created");
    assert_eq!(phase(&first), Phase::Proposed);
    // A second replica that had not seen it yet publishes too: nothing written.
    assert!(publish(None, plan.spec.clone()).await.is_none());

    // The Remediation moves on: approved, then written and verified (status as the writer
    // records it).
    // (`meshmedic approve` checks the target, which this namespace does not have.)
    let digest = first.spec.plan_digest.clone().expect("digest");
    set_spec(&admin, &ns, &plan.name, json!({"approvedDigest": digest})).await;
    let mut moved = get_remediation(&admin, &ns, &plan.name).await;
    let mut status = moved.status.clone().expect("status");
    status.phase = Phase::Resolved;
    status.applied_digest = moved.spec.plan_digest.clone();
    moved.status = Some(status);
    let moved = api
        .replace_status(&plan.name, &Default::default(), &moved)
        .await
        .expect("status written");

    // A slow pass that read nothing, or read the Remediation before it moved on, writes
    // nothing: not the spec (a changed plan), not the phase.
    let mut changed = plan.spec.clone();
    changed["message"] = json!("a plan from a stale snapshot");
    assert!(publish(None, changed.clone()).await.is_none());
    assert!(
        publish(Some(first.clone()), changed.clone())
            .await
            .is_none()
    );
    let now = get_remediation(&admin, &ns, &plan.name).await;
    assert_eq!(now.resource_version(), moved.resource_version());
    assert_eq!(phase(&now), Phase::Resolved);
    assert!(now.spec.approved_digest.is_some(), "the approval is kept");

    // A pass that read the current Remediation publishes its change.
    let republished = publish(Some(now), changed).await.expect("published");
    assert_eq!(republished.spec.message, "a plan from a stale snapshot");
    assert_eq!(phase(&republished), Phase::Proposed);
}

/// Apply mode on a namespace applied object by object, as `kubectl apply -f DIR` or a GitOps
/// sync does: a finding of the half-applied state (a Service whose DestinationRule has not
/// arrived yet) is proposed but never written, and the fixes that stand are written only once
/// they have settled.
#[tokio::test]
async fn apply_mode_writes_settled_plans_only_never_a_half_applied_namespace_finding() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-settle", Some("apply")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-settle", "replica-settle");

    // A fix that stands is written, but not before it has been proposed for the settle time
    // (whole seconds: the Remediation's creation and the target's write time).
    let rem = find(&admin, &ns, "VirtualService", "cart").await;
    let name = rem.name_any();
    wait_for(&admin, &ns, &name, "the settled fix verified", |r| {
        reason(r, "Verified").as_deref() == Some("Verified")
    })
    .await;
    let cart = target_api(&admin, &rem)
        .await
        .get("cart")
        .await
        .expect("cart");
    let written_at = cart
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some("meshmedic"))
        .filter_map(|m| m.time.as_ref())
        .map(|t| t.0.as_second())
        .max()
        .expect("meshmedic's write in managedFields");
    let proposed_at = rem
        .metadata
        .creation_timestamp
        .as_ref()
        .expect("created")
        .0
        .as_second();
    assert!(
        written_at - proposed_at >= APPLY_SETTLE_SECONDS as i64 - 1,
        "written {}s after it was proposed",
        written_at - proposed_at
    );

    // A new app arrives object by object: its Deployment and Service first (nginx closes idle
    // connections after 65s, no DestinationRule says otherwise yet: a finding whose fix creates
    // one), then its own DestinationRule, which ends the finding.
    let app = |kind: &str, body: Value| {
        let mut doc = body;
        doc["kind"] = json!(kind);
        doc["metadata"] = json!({"name": "gallery", "namespace": ns});
        doc
    };
    let deployment = app(
        "Deployment",
        json!({"apiVersion": "apps/v1", "spec": {
            "selector": {"matchLabels": {"app": "gallery"}},
            "template": {"metadata": {"labels": {"app": "gallery"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                                                  "ports": [{"containerPort": 80}]}]}}}}),
    );
    let service = app(
        "Service",
        json!({"apiVersion": "v1", "spec": {"selector": {"app": "gallery"},
               "ports": [{"name": "http", "port": 80, "targetPort": 80}]}}),
    );
    let rule = app(
        "DestinationRule",
        json!({"apiVersion": "networking.istio.io/v1", "spec": {
            "host": format!("gallery.{ns}.svc.cluster.local"),
            "trafficPolicy": {"connectionPool": {"http": {"idleTimeout": "60s"}}}}}),
    );
    for doc in [&deployment, &service] {
        support::apply(&admin, doc).await.expect("applied");
    }
    let passing = eventually(
        Duration::from_secs(30),
        "the proposal to create gallery's DestinationRule",
        || async {
            remediations(&admin, &ns).await.into_iter().find(|r| {
                r.spec.target.name == "gallery-idle-timeout" && phase(r) == Phase::Proposed
            })
        },
    )
    .await;
    // Long enough for an operator that did not wait to write it, well within the settle time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    support::apply(&admin, &rule).await.expect("applied");
    // An untouched first proposal whose cause went away within the settle time is withdrawn:
    // no trail of proposals for half-applied states.
    let rapi: Api<Remediation> = Api::namespaced(admin.clone(), &ns);
    let name = passing.name_any();
    eventually(
        Duration::from_secs(30),
        "the proposal withdrawn",
        || async {
            rapi.get_opt(&name)
                .await
                .expect("get")
                .is_none()
                .then_some(())
        },
    )
    .await;
    // Past the settle time of every operator: still nothing written, nothing proposed again.
    tokio::time::sleep(Duration::from_secs(APPLY_SETTLE_SECONDS + 2)).await;
    assert!(
        remediations(&admin, &ns)
            .await
            .iter()
            .all(|r| r.spec.target.name != "gallery-idle-timeout")
    );
    let created = destination_rule(&admin, &ns, "gallery-idle-timeout").await;
    assert!(created.is_none(), "meshmedic created {created:?}");
    operator.stop();
}

async fn destination_rule(admin: &Client, ns: &str, name: &str) -> Option<DynamicObject> {
    let (api, _, _) =
        support::dynamic_api(admin, "networking.istio.io/v1", "DestinationRule", Some(ns))
            .await
            .expect("api");
    api.get_opt(name).await.expect("get")
}

/// An approval belongs to the episode it was given in. The chaos run caught a reviewer approving
/// a plan whose cause a person had just removed; seconds later the person put the old spec back,
/// the cause and the very same plan returned, and the operator applied the old approval to a
/// spec nobody had reviewed it against. A Remediation whose cause comes back is a proposal again
/// (`Reappeared`) and the approval it carried is used up.
#[tokio::test]
async fn an_approval_the_cause_outlived_is_used_up_not_applied_when_the_cause_returns() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-outlived", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-outlived", "replica-outlived");
    let rem = find(&admin, &ns, "VirtualService", "cart").await;
    let name = rem.name_any();
    let digest = rem.spec.plan_digest.clone().expect("digest");
    // Touched by a person, so a young proposal whose cause goes away is kept as a record rather
    // than withdrawn (every test's operator watches this namespace, each with its own clock).
    set_spec(&admin, &ns, &name, json!({"allowLivePatch": true})).await;

    // A person fixes the cause by hand; the Remediation is resolved without a write.
    let api = target_api(&admin, &rem).await;
    let retry_on = "/spec/http/0/retries/retryOn";
    let original = api.get("cart").await.expect("cart");
    let mut fixed = original.clone();
    fixed.metadata.managed_fields = None;
    *fixed.data.pointer_mut(retry_on).expect("cart retries") =
        json!("connect-failure,refused-stream,unavailable,reset,503");
    api.replace("cart", &Default::default(), &fixed)
        .await
        .expect("a person fixes the cause");
    wait_for(&admin, &ns, &name, "the cause gone", |r| {
        phase(r) == Phase::Resolved && reason(r, "Ready").as_deref() == Some("CauseGone")
    })
    .await;

    // A reviewer approves the published plan anyway (by hand: `meshmedic approve` would refuse
    // a plan made from another spec), and the person then puts the old spec back.
    set_spec(&admin, &ns, &name, json!({"approvedDigest": digest})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut back = api.get("cart").await.expect("cart");
    back.metadata.managed_fields = None;
    back.data["spec"] = original.data["spec"].clone();
    let back = api
        .replace("cart", &Default::default(), &back)
        .await
        .expect("the old spec back");

    let r = wait_for(&admin, &ns, &name, "a proposal again", |r| {
        phase(r) == Phase::Proposed && reason(r, "Ready").as_deref() == Some("Reappeared")
    })
    .await;
    assert_eq!(
        r.spec.plan_digest.as_deref(),
        Some(digest.as_str()),
        "same plan"
    );
    let r = wait_for(&admin, &ns, &name, "the old approval used up", |r| {
        r.spec.approved_digest.is_none()
    })
    .await;
    assert!(!written(&r));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = api.get("cart").await.expect("cart");
    assert_eq!(
        now.resource_version(),
        back.resource_version(),
        "the old approval was applied: {}",
        now.data.pointer(retry_on).unwrap_or(&Value::Null)
    );

    // Approved again, with the spec in front of the reviewer: written and verified.
    approve(&admin, &ns, &name).await;
    wait_for(&admin, &ns, &name, "the fix verified", |r| {
        phase(r) == Phase::Resolved && reason(r, "Verified").as_deref() == Some("Verified")
    })
    .await;
    operator.stop();
}

/// An object meshmedic created never hides a person's. Seen on the Kiali travels demo: meshmedic
/// created a VirtualService with retries for a host nothing routed; a person then added their own
/// (a canary route), and Istio's sidecars, which take the oldest VirtualService per host, would
/// have ignored theirs. The same holds for a DestinationRule (Istio merges rules for one host and
/// keeps the oldest's traffic policy): meshmedic deletes its own, as it left it, and plans the
/// fix on the person's, whose own fields stay as they wrote them.
#[tokio::test]
async fn a_created_rule_steps_aside_for_a_persons_rule_for_the_same_host() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let (ns, operator, mine) =
        created_gallery_rule(&admin, "loop-beside", "lease-beside", "replica-beside").await;
    let mine_name = mine.name_any();
    assert!(
        destination_rule(&admin, &ns, "gallery-idle-timeout")
            .await
            .is_some()
    );

    // The person's own rule for the host, by its short name.
    let persons = object(
        &ns,
        "DestinationRule",
        "networking.istio.io/v1",
        "gallery",
        json!({"host": "gallery", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 7}}}),
    );
    support::apply(&admin, &persons).await.expect("applied");
    let superseded = wait_for(
        &admin,
        &ns,
        &mine_name,
        "meshmedic's rule superseded",
        |r| phase(r) == Phase::RolledBack,
    )
    .await;
    assert_eq!(
        reason(&superseded, "Ready").as_deref(),
        Some("Superseded"),
        "{:?}",
        superseded.status
    );
    assert!(
        destination_rule(&admin, &ns, "gallery-idle-timeout")
            .await
            .is_none(),
        "meshmedic's rule is gone"
    );
    // The fix now lands on the person's rule (apply mode), beside what they wrote.
    let theirs = find(&admin, &ns, "DestinationRule", "gallery").await;
    wait_for(
        &admin,
        &ns,
        &theirs.name_any(),
        "the fix on the person's rule verified",
        |r| reason(r, "Verified").as_deref() == Some("Verified"),
    )
    .await;
    let rule = destination_rule(&admin, &ns, "gallery")
        .await
        .expect("theirs");
    let spec = &rule.data["spec"];
    assert_eq!(spec["host"], json!("gallery"));
    assert_eq!(
        spec["trafficPolicy"]["outlierDetection"],
        json!({"consecutive5xxErrors": 7})
    );
    assert!(
        spec["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"].is_string(),
        "{spec}"
    );
    // Settled: meshmedic does not create its own again beside theirs.
    tokio::time::sleep(Duration::from_secs(APPLY_SETTLE_SECONDS + 2)).await;
    assert!(
        destination_rule(&admin, &ns, "gallery-idle-timeout")
            .await
            .is_none()
    );
    assert_eq!(
        phase(&get_remediation(&admin, &ns, &mine_name).await),
        Phase::RolledBack
    );
    operator.stop();
}

/// In a fresh `apply` namespace watched by a fresh operator, the rule meshmedic creates for
/// [`nginx_gallery`], verified; with its Remediation.
async fn created_gallery_rule(
    admin: &Client,
    hint: &str,
    lease: &str,
    identity: &str,
) -> (String, Replica, Remediation) {
    let ns = shop(admin, hint, Some("apply")).await;
    let operator = Replica::start(control_plane().meshmedic_config(), lease, identity);
    nginx_gallery(admin, &ns).await;
    let mine = find(admin, &ns, "DestinationRule", "gallery-idle-timeout").await;
    wait_for(
        admin,
        &ns,
        &mine.name_any(),
        "meshmedic's rule verified",
        |r| reason(r, "Verified").as_deref() == Some("Verified"),
    )
    .await;
    (ns, operator, mine)
}

/// Nothing a person wrote is lost: an object meshmedic created and someone then labelled (here
/// as Argo CD labels what it adopts) is theirs. It is recorded `Reverted`, and a rollback, which
/// would delete it, refuses and names the label.
#[tokio::test]
async fn a_created_object_someone_labelled_is_theirs_and_rollback_keeps_it() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let (ns, operator, mine) = created_gallery_rule(
        &admin,
        "loop-labelled",
        "lease-labelled",
        "replica-labelled",
    )
    .await;
    let name = mine.name_any();

    let api = target_api(&admin, &mine).await;
    let labelled = api
        .patch(
            "gallery-idle-timeout",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"argocd.argoproj.io/instance": "photos"}}}),
            ),
        )
        .await
        .expect("a person labels it");
    let theirs = wait_for(&admin, &ns, &name, "recorded as theirs", |r| {
        reason(r, "Ready").as_deref() == Some("Reverted")
    })
    .await;
    assert!(
        theirs.status.as_ref().is_some_and(|s| s.reverted),
        "{:?}",
        theirs.status
    );

    meshmedic::cli::rollback::rollback(&admin, &ns, &name)
        .await
        .expect("rollback requested");
    let refused = wait_for(&admin, &ns, &name, "the rollback refused", |r| {
        phase(r) == Phase::Refused
    })
    .await;
    assert_eq!(reason(&refused, "Ready").as_deref(), Some("TargetChanged"));
    let said = refused
        .status
        .as_ref()
        .and_then(|s| s.last_error.clone())
        .unwrap_or_default();
    assert!(
        said.contains("/metadata/labels/argocd.argoproj.io~1instance"),
        "{said}"
    );
    let kept = api.get("gallery-idle-timeout").await.expect("still there");
    assert_eq!(kept.resource_version(), labelled.resource_version());
    operator.stop();
}

/// A person deletes the object meshmedic created: recorded as theirs to decide ("not created
/// again … needs a new approval"), and that approval, given with `meshmedic approve`, creates it
/// again. The same plan as before (a create over nothing): `approve` once refused it as
/// "already written".
#[tokio::test]
async fn a_created_object_someone_deleted_is_created_again_only_on_a_new_approval() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let (ns, operator, mine) =
        created_gallery_rule(&admin, "loop-deleted", "lease-deleted", "replica-deleted").await;
    let name = mine.name_any();
    let api = target_api(&admin, &mine).await;
    api.delete("gallery-idle-timeout", &DeleteParams::default())
        .await
        .expect("a person deletes it");
    let theirs = wait_for(&admin, &ns, &name, "the delete recorded", |r| {
        reason(r, "Ready").as_deref() == Some("Reverted")
    })
    .await;
    assert_eq!(phase(&theirs), Phase::Proposed);
    // In `apply` mode too, nothing is created again on its own.
    tokio::time::sleep(Duration::from_secs(APPLY_SETTLE_SECONDS + 3)).await;
    assert!(
        api.get_opt("gallery-idle-timeout")
            .await
            .expect("read")
            .is_none()
    );

    let digest = approve(&admin, &ns, &name).await;
    assert_eq!(Some(digest.as_str()), theirs.spec.plan_digest.as_deref());
    let again = wait_for(&admin, &ns, &name, "created again and verified", |r| {
        reason(r, "Ready").as_deref() == Some("Verified")
    })
    .await;
    let status = again.status.expect("status");
    assert!(!status.reverted, "{status:?}");
    assert_eq!(status.writes, 2);
    assert!(
        api.get_opt("gallery-idle-timeout")
            .await
            .expect("read")
            .is_some()
    );
    operator.stop();
}

/// An object meshmedic created that a person has made theirs is not deleted to step aside for
/// another person's object for the same host, and the Remediation says that only one of the two
/// takes effect. The person's edit is made while no operator runs and recorded by the next
/// leader; the person's own rule comes after that record, which is written again to name it.
#[tokio::test]
async fn a_created_object_made_theirs_is_kept_beside_a_persons_and_the_record_says_so() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let (ns, operator, mine) = created_gallery_rule(
        &admin,
        "loop-theirs-beside",
        "lease-theirs",
        "replica-theirs",
    )
    .await;
    let name = mine.name_any();
    operator.stop();

    let api = target_api(&admin, &mine).await;
    api.patch(
        "gallery-idle-timeout",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "photos"}}})),
    )
    .await
    .expect("a person labels it");
    let operator = Replica::start(cp.meshmedic_config(), "lease-theirs", "replica-theirs-2");
    wait_for(&admin, &ns, &name, "recorded as theirs", |r| {
        reason(r, "Ready").as_deref() == Some("Reverted")
    })
    .await;

    // Then the person writes a rule of their own for the same host: the record, written
    // before, is written again to name it.
    let persons = object(
        &ns,
        "DestinationRule",
        "networking.istio.io/v1",
        "gallery",
        json!({"host": "gallery", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 7}}}),
    );
    support::apply(&admin, &persons).await.expect("applied");
    let ready_message = |r: &Remediation| {
        r.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let theirs = wait_for(&admin, &ns, &name, "the person's rule named", |r| {
        reason(r, "Ready").as_deref() == Some("Reverted")
            && ready_message(r).contains("configures the same thing")
    })
    .await;
    let said = ready_message(&theirs);
    assert!(said.contains("it is theirs now"), "{said}");
    assert!(said.contains("DestinationRule"), "{said}");
    assert!(
        said.contains("configures the same thing and only one of the two takes effect"),
        "{said}"
    );
    assert_eq!(
        theirs.status.as_ref().map(|s| s.reverted),
        Some(true),
        "still theirs"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        destination_rule(&admin, &ns, "gallery-idle-timeout")
            .await
            .is_some(),
        "kept"
    );
    operator.stop();
}

/// A namespace that is not opted in is never written, even through a Remediation of an opted-in
/// one: a VirtualService in another namespace that routes an `apply` namespace's service is
/// proposed there, and neither apply mode nor an approval writes it until its own namespace is
/// opted in.
#[tokio::test]
async fn a_target_in_a_namespace_not_opted_in_is_proposed_never_written() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-foreign", Some("apply")).await;
    let routing = support::namespace(&admin, "loop-foreign-routes").await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-foreign", "replica-foreign");
    nginx_gallery(&admin, &ns).await;
    // Routes for gallery kept in a routing namespace, retried without `reset`.
    let routes = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "gallery-routes", "namespace": routing},
        "spec": {"hosts": [format!("gallery.{ns}.svc.cluster.local")],
                 "http": [{"route": [{"destination": {"host": format!("gallery.{ns}.svc.cluster.local")}}],
                           "retries": {"attempts": 2, "retryOn": "connect-failure"}}]}});
    let before = support::apply(&admin, &routes).await.expect("applied");
    let rem = find(&admin, &ns, "VirtualService", "gallery-routes").await;
    let name = rem.name_any();
    assert_eq!(rem.spec.target.namespace, routing);
    wait_for(&admin, &ns, &name, "held back", |r| {
        reason(r, "Ready").as_deref() == Some("TargetNamespaceOff")
    })
    .await;
    approve(&admin, &ns, &name).await;
    tokio::time::sleep(Duration::from_secs(APPLY_SETTLE_SECONDS + 3)).await;
    let r = get_remediation(&admin, &ns, &name).await;
    assert!(!written(&r), "{:?}", r.status);
    assert_eq!(reason(&r, "Ready").as_deref(), Some("TargetNamespaceOff"));
    let api = target_api(&admin, &rem).await;
    assert_eq!(
        api.get("gallery-routes")
            .await
            .expect("vs")
            .resource_version(),
        before.resource_version(),
        "nothing written in {routing}"
    );

    // The routing namespace opts in (propose): the approval given is used.
    patch_namespace(
        &admin,
        &routing,
        json!({"metadata": {"annotations": {"meshmedic.io/mode": "propose"}}}),
    )
    .await;
    wait_for(&admin, &ns, &name, "the approved fix verified", |r| {
        reason(r, "Verified").as_deref() == Some("Verified")
    })
    .await;
    operator.stop();
}

/// A Deployment written out by `istioctl kube-inject`, in a namespace no webhook injects
/// (stefanprodan/gitops-istio keeps its apps so, with `istio-injection: disabled`): the proxy
/// runs as the template says, so the fix puts `istio-proxy` first with its `pilot-agent wait`
/// hook, as the injector would. Injected with probe rewrite off and under STRICT mTLS, its
/// readiness probe fails too, and that fix rewrites the probe in the template as the injector
/// does (the annotation would change nothing), and, the proxy image being 1.28 here, whose
/// agent serves lifecycle hooks, its HTTP preStop hook with it. Both fixes rebuild the
/// containers list, and one Remediation carries both. Approved, it is written once (the proxy
/// moved, not the list rewritten) and verified on the live object; the app's image bumped
/// since, the rollback moves the proxy back by its name and keeps the image: the template is
/// the original exactly but for that image.
#[tokio::test]
async fn a_pre_injected_template_is_fixed_in_its_containers_and_rolls_back_exactly() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = support::namespace(&admin, "loop-kube-inject").await;
    let deployment = object(
        &ns,
        "Deployment",
        "apps/v1",
        "orders",
        json!({"selector": {"matchLabels": {"app": "orders"}},
               "template": {
                   "metadata": {"labels": {"app": "orders"},
                                "annotations": {"sidecar.istio.io/status":
                                    "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"],\"revision\":\"default\"}",
                                    "sidecar.istio.io/rewriteAppHTTPProbers": "false"}},
                   "spec": {
                       "initContainers": [{"name": "istio-init", "image": "docker.io/istio/proxyv2:1.28.0",
                                           "args": ["istio-iptables", "-p", "15001"]}],
                       "containers": [
                           {"name": "orders", "image": "ghcr.io/stefanprodan/podinfo:6.1.0",
                            "ports": [{"name": "http", "containerPort": 9898}],
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                                               "periodSeconds": 5},
                            "lifecycle": {"preStop": {"httpGet": {"path": "/drain", "port": 9898}}},
                            "resources": {"requests": {"cpu": "10m"}}},
                           {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.28.0",
                            "args": ["proxy", "sidecar"],
                            "env": [{"name": "ISTIO_META_APP_CONTAINERS", "value": "orders"}]}]}}}),
    );
    support::apply(&admin, &deployment).await.expect("applied");
    strict_mtls(&admin, &ns).await;
    patch_namespace(
        &admin,
        &ns,
        json!({"metadata": {
                "labels": {"istio-injection": "disabled"},
                // The startup race alone is an `info` finding.
                "annotations": {"meshmedic.io/mode": "propose",
                                "meshmedic.io/min-severity": "info"}}}),
    )
    .await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-inject", "replica-inject");
    let rem = find(&admin, &ns, "Deployment", "orders").await;
    assert!(answers(&rem, "sidecar-lifecycle"), "{:?}", rem.spec.causes);
    assert!(answers(&rem, "mtls-probe-failure"), "{:?}", rem.spec.causes);
    let name = rem.name_any();
    let api = target_api(&admin, &rem).await;
    let before = api.get("orders").await.expect("deployment");
    approve(&admin, &ns, &name).await;
    let applied = wait_for(&admin, &ns, &name, "the fix written and verified", |r| {
        written(r) && reason(r, "Verified").as_deref() == Some("Verified")
    })
    .await;
    assert_eq!(applied.status.as_ref().map(|s| s.writes), Some(1));
    let live = api.get("orders").await.expect("deployment");
    let containers = &live.data["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["name"], "istio-proxy", "{containers:#}");
    assert_eq!(
        containers[0]["lifecycle"]["postStart"]["exec"]["command"],
        json!(["pilot-agent", "wait"])
    );
    assert_eq!(containers[1]["name"], "orders");
    assert_eq!(
        containers[1]["resources"],
        json!({"requests": {"cpu": "10m"}})
    );
    assert_eq!(
        containers[1]["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/orders/readyz", "port": 15020, "scheme": "HTTP"},
               "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1,
               "failureThreshold": 3})
    );
    // A 1.28 agent serves lifecycle hooks: the preStop hook goes to it too.
    assert_eq!(
        containers[1]["lifecycle"],
        json!({"preStop": {"httpGet": {"path": "/app-lifecycle/orders/prestopz", "port": 15020,
                                       "scheme": "HTTP"}}})
    );
    assert_eq!(
        containers[0]["env"][1],
        json!({"name": "ISTIO_KUBE_APP_PROBERS",
               "value": "{\"/app-health/orders/readyz\":{\"httpGet\":{\"path\":\"/readyz\",\"port\":9898,\"scheme\":\"HTTP\"},\"timeoutSeconds\":1},\"/app-lifecycle/orders/prestopz\":{\"httpGet\":{\"path\":\"/drain\",\"port\":9898,\"scheme\":\"HTTP\"}}}"})
    );
    // A release bumps the app's image after the approval (the app is second now): not a field
    // meshmedic wrote, so the rollback keeps it, the proxy moved back by its name.
    let bumped = "ghcr.io/stefanprodan/podinfo:6.2.0";
    let orders = support::Target {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some(ns.clone()),
        name: "orders".into(),
    };
    support::json_patch(
        &admin,
        &orders,
        &json!([
            {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "orders"},
            {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": bumped}
        ]),
    )
    .await
    .expect("image bumped");
    meshmedic::cli::rollback::rollback(&admin, &ns, &name)
        .await
        .expect("rollback");
    wait_phase(&admin, &ns, &name, Phase::RolledBack).await;
    let after = api.get("orders").await.expect("deployment");
    let mut expected = before.data["spec"]["template"].clone();
    expected["spec"]["containers"][0]["image"] = json!(bumped);
    assert_eq!(
        serde_json::to_vec(&after.data["spec"]["template"]).expect("json"),
        serde_json::to_vec(&expected).expect("json"),
        "the pod template as it was, with the new image"
    );
    operator.stop();
}

/// A Pod of its own (no controller) whose probes fail under STRICT mTLS with probe rewrite off:
/// a Pod reads its containers and annotations only when it is created, so a live patch would
/// change nothing (the annotation) or be refused (a probe). The Remediation is a proposal whose
/// approval is refused with the reason; the Pod is never written.
#[tokio::test]
async fn a_pod_of_its_own_gets_a_proposal_never_a_live_patch() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = support::namespace(&admin, "loop-bare-pod").await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "api", "namespace": ns, "labels": {"app": "api"},
                     "annotations": {"sidecar.istio.io/rewriteAppHTTPProbers": "false"}},
        "spec": {"containers": [{"name": "app", "image": "example/api:1",
                                 "ports": [{"containerPort": 8080}],
                                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}]}});
    let before = support::apply(&admin, &pod).await.expect("applied");
    strict_mtls(&admin, &ns).await;
    patch_namespace(
        &admin,
        &ns,
        json!({"metadata": {"labels": {"istio-injection": "enabled"},
                            "annotations": {"meshmedic.io/mode": "apply"}}}),
    )
    .await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-bare-pod", "replica-bare-pod");
    let rem = find(&admin, &ns, "Pod", "api").await;
    assert!(answers(&rem, "mtls-probe-failure"), "{:?}", rem.spec.causes);
    let name = rem.name_any();
    let refused = meshmedic::cli::approve::approve(&admin, &ns, &name, None, false)
        .await
        .expect_err("a Pod is not written");
    assert!(
        refused.contains("only when it is created") && refused.contains("meshmedic fix"),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_secs(APPLY_SETTLE_SECONDS + 3)).await;
    let r = get_remediation(&admin, &ns, &name).await;
    assert!(!written(&r), "{:?}", r.status);
    assert_eq!(r.status.as_ref().map(|s| s.phase), Some(Phase::Proposed));
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(admin.clone(), &ns);
    assert_eq!(
        pods.get("api").await.expect("pod").resource_version(),
        before.resource_version(),
        "the Pod is not written"
    );
    operator.stop();
}

/// A namespace-wide PeerAuthentication `default` with STRICT mTLS in `ns`.
async fn strict_mtls(admin: &kube::Client, ns: &str) {
    let strict = object(
        ns,
        "PeerAuthentication",
        "security.istio.io/v1",
        "default",
        json!({"mtls": {"mode": "STRICT"}}),
    );
    support::apply(admin, &strict).await.expect("applied");
}

/// An approval is used up by the write it allowed, even when its removal right after the write
/// fails (here refused by an admission policy, as an apiserver hiccup would fail it): the pass
/// that verifies the write removes it before recording Resolved, so a Remediation never reads
/// "Resolved" with an approval standing that a later change could put to use. Found in CI, where
/// another test's operator verified the write before the writer had removed the approval.
#[tokio::test]
async fn an_approval_whose_removal_fails_is_used_up_before_the_write_is_verified() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "loop-stuck-approval", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-stuck", "replica-stuck");
    let rem = find(&admin, &ns, "VirtualService", "cart").await;
    let name = rem.name_any();

    // While the policy stands, no one may remove an approval in this namespace (a Remediation's
    // status, a subresource, is still written). Its second rule lets the test see it in force.
    let policy = format!("{ns}-keep-approvals");
    let (policies, _, _) = support::dynamic_api(
        &admin,
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        None,
    )
    .await
    .expect("policies");
    let (bindings, _, _) = support::dynamic_api(
        &admin,
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        None,
    )
    .await
    .expect("bindings");
    support::apply(
        &admin,
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["meshmedic.io"], "apiVersions": ["*"],
                    "operations": ["UPDATE"], "resources": ["remediations"],
                }]},
                "validations": [
                    {"expression": "!has(oldObject.spec.approvedDigest) || has(object.spec.approvedDigest)",
                     "message": "approvals are kept for now"},
                    {"expression": "!has(object.metadata.labels) || !('policy-probe' in object.metadata.labels)",
                     "message": "probe"},
                ],
            },
        }),
    )
    .await
    .expect("the policy");
    support::apply(
        &admin,
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
            },
        }),
    )
    .await
    .expect("the binding");
    let api = Api::<Remediation>::namespaced(admin.clone(), &ns);
    eventually(Duration::from_secs(30), "the policy in force", || async {
        let probe = PatchParams {
            dry_run: true,
            ..Default::default()
        };
        let label = json!({"metadata": {"labels": {"policy-probe": "x"}}});
        api.patch(&name, &probe, &Patch::Merge(&label))
            .await
            .is_err()
            .then_some(())
    })
    .await;

    approve(&admin, &ns, &name).await;
    let applied = wait_for(&admin, &ns, &name, "the fix written", written).await;
    assert!(
        applied.spec.approved_digest.is_some(),
        "removal was refused"
    );
    // Time for the writer's retries and for a verification pass (the write is seen at once).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let held = api.get(&name).await.expect("the Remediation");
    assert!(
        !(phase(&held) == Phase::Resolved && held.spec.approved_digest.is_some()),
        "recorded Resolved with the used approval standing"
    );
    assert_eq!(phase(&held), Phase::Applied, "verification waits");
    // Refused though nothing changed, the write is tried again every few seconds, not in a
    // loop (a live run saw 159 refusals in ten seconds before).
    let port = operator.metrics_port;
    let refusals = || async move {
        let (_, body) = http_get(port, "/metrics").expect("metrics");
        body.lines()
            .find_map(|l| l.strip_prefix("meshmedic_api_errors_total{operation=\"remediation\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let refused = refusals().await;
    assert!(
        (1.0..=6.0).contains(&refused),
        "{refused} refused writes in 8 s"
    );
    // Nor does each event in the namespace start a retry of its own that outlives it: after four
    // changes to a Service, a quiet 10 s sees the write tried about twice, not twice per event.
    let services = Api::<k8s_openapi::api::core::v1::Service>::namespaced(admin.clone(), &ns);
    for n in 0..4 {
        let label = json!({"metadata": {"labels": {"touched": n.to_string()}}});
        services
            .patch("cart", &PatchParams::default(), &Patch::Merge(&label))
            .await
            .expect("a Service changed");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = refusals().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let quiet = refusals().await - before;
    assert!(quiet <= 3.0, "{quiet} refused writes in a quiet 10 s");

    // The apiserver accepts the removal again: the approval goes, then the write is verified.
    bindings
        .delete(&policy, &DeleteParams::default())
        .await
        .expect("binding deleted");
    policies
        .delete(&policy, &DeleteParams::default())
        .await
        .expect("policy deleted");
    let resolved = wait_for(&admin, &ns, &name, "the fix verified", |r| {
        phase(r) == Phase::Resolved && reason(r, "Verified").as_deref() == Some("Verified")
    })
    .await;
    assert!(
        resolved.spec.approved_digest.is_none(),
        "the approval was used up"
    );
    operator.stop();
}
