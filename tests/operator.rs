//! The operator on a real control plane (kube-apiserver + etcd + Istio's CRDs, see
//! tests/support), running under meshmedic's ServiceAccount identity with the RBAC of
//! `deploy/`. Needs `eval "$(scripts/k8s-test-env.sh)"` first.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use meshmedic::model::remediation::{Phase, Remediation};
use serde_json::json;
use support::control_plane;
use support::operator::*;

#[tokio::test]
async fn the_operator_proposes_applies_rolls_back_and_respects_opt_in() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let opted = shop(&admin, "shop-propose", Some("propose")).await;
    let ignored = shop(&admin, "shop-unannotated", None).await;
    let off = shop(&admin, "shop-off", Some("off")).await;

    let operator = Replica::start(cp.meshmedic_config(), "lease-main", "replica-a");

    // Every cause in the examples yields a Remediation, one per target object (the two causes
    // on ratings-route share one).
    let all = eventually(
        Duration::from_secs(60),
        "7 Remediations in the opted-in namespace",
        || async {
            let rs = remediations(&admin, &opted).await;
            (rs.len() == 7 && rs.iter().all(|r| r.status.is_some())).then_some(rs)
        },
    )
    .await;
    let codes: std::collections::BTreeSet<&str> = all
        .iter()
        .flat_map(|r| r.spec.causes.iter().map(|c| c.code.as_str()))
        .collect();
    assert_eq!(codes.len(), 6, "{codes:?}");
    assert!(all.iter().all(|r| r.spec.plan_digest.is_some()));
    assert!(all.iter().all(|r| phase(r) == Phase::Proposed));
    // `kubectl get rem` shows Code, Target, Phase, Age.
    assert!(all.iter().all(|r| r.spec.target_display.contains('/')));

    // Opt-in: nothing is written in namespaces without the annotation or with mode off.
    for ns in [&ignored, &off] {
        assert!(
            remediations(&admin, ns).await.is_empty(),
            "Remediations written in {ns}"
        );
    }

    // Approving one patches the target; the result is what `analyze` proposed, and Istio's CRD
    // schema accepted it (the API server stored it).
    let idle = remediation_for(&admin, &opted, "idle-timeout-mismatch", "DestinationRule").await;
    let name = idle.metadata.name.clone().expect("name");
    let before = get_target(&admin, &idle).await;
    // The old boolean approval applies nothing: an approval names the digest of the plan.
    set_spec(&admin, &opted, &name, json!({"approved": true})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        get_target(&admin, &idle).await.metadata.resource_version,
        before.metadata.resource_version
    );
    approve(&admin, &opted, &name).await;
    let applied = eventually(Duration::from_secs(30), "the fix applied", || async {
        let r = Api::<Remediation>::namespaced(admin.clone(), &opted)
            .get(&name)
            .await
            .ok()?;
        matches!(phase(&r), Phase::Applied | Phase::Resolved)
            .then_some(r)
            .filter(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.target_resource_version_after.is_some())
            })
    })
    .await;
    let after = get_target(&admin, &idle).await;
    assert_eq!(
        after.data["spec"], idle.spec.resource["spec"],
        "the patched target is what analyze proposed"
    );
    let status = applied.status.clone().expect("status");
    assert_eq!(
        status.target_resource_version_before.as_deref(),
        before.metadata.resource_version.as_deref()
    );
    assert!(status.rollback_patch.is_some());
    // The cause is gone once the write is seen and re-analysed: Resolved, Verified.
    let resolved = wait_phase(&admin, &opted, &name, Phase::Resolved).await;
    assert_eq!(reason(&resolved, "Verified").as_deref(), Some("Verified"));
    assert!(
        resolved.spec.approved_digest.is_none(),
        "the approval was used up"
    );

    // Rollback restores the original spec exactly.
    set_spec(&admin, &opted, &name, json!({"rollback": true})).await;
    wait_phase(&admin, &opted, &name, Phase::RolledBack).await;
    let restored = get_target(&admin, &idle).await;
    assert_eq!(restored.data["spec"], before.data["spec"]);

    // A concurrent edit between proposal and apply is never overwritten: a person changes the
    // cart route's timeout; meshmedic re-plans on top of it; the approved fix keeps the edit.
    let cart = eventually(Duration::from_secs(10), "the cart Remediation", || async {
        remediations(&admin, &opted)
            .await
            .into_iter()
            .find(|r| answers(r, "missing-reset-retry") && r.spec.target.name == "cart")
    })
    .await;
    let cart_name = cart.metadata.name.clone().expect("name");
    let (vs_api, _, _) = support::dynamic_api(
        &admin,
        "networking.istio.io/v1",
        "VirtualService",
        Some(&opted),
    )
    .await
    .expect("api");
    vs_api
        .patch("cart", &PatchParams::apply("a-person").force(), &Patch::Apply(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "cart", "namespace": opted},
            "spec": {"http": [{"name": "default", "timeout": "7s", "route": [{"destination": {"host": "cart"}}],
                     "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "connect-failure,refused-stream,unavailable"}}], "hosts": ["cart"]}
        })))
        .await
        .expect("a person edits the VirtualService");
    // The edit re-plans the fix (a new digest), which is what gets approved.
    eventually(
        Duration::from_secs(30),
        "the cart fix re-planned",
        || async {
            let r = get_remediation(&admin, &opted, &cart_name).await;
            (r.spec.plan_digest != cart.spec.plan_digest).then_some(())
        },
    )
    .await;
    approve(&admin, &opted, &cart_name).await;
    eventually(
        Duration::from_secs(30),
        "the cart fix applied on top of the edit",
        || async {
            let vs = vs_api.get("cart").await.ok()?;
            let route = &vs.data["spec"]["http"][0];
            (route["retries"]["retryOn"].as_str()?.contains("reset")).then_some(())
        },
    )
    .await;
    let vs = vs_api.get("cart").await.expect("cart");
    assert_eq!(
        vs.data["spec"]["http"][0]["timeout"], "7s",
        "the person's edit survived"
    );

    // Restarting the controller creates no duplicates and re-applies nothing.
    let count = remediations(&admin, &opted).await.len();
    let dr_version = get_target(&admin, &idle).await.metadata.resource_version;
    operator.stop();
    let operator = Replica::start(cp.meshmedic_config(), "lease-main", "replica-b");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        remediations(&admin, &opted).await.len(),
        count,
        "duplicates after a restart"
    );
    assert_eq!(
        get_target(&admin, &idle).await.metadata.resource_version,
        dr_version,
        "a rolled-back fix was re-applied"
    );
    assert!(remediations(&admin, &ignored).await.is_empty());
    operator.stop();
}

#[tokio::test]
async fn apply_mode_applies_safe_fixes_and_gitops_targets_get_proposals_only() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "shop-apply", Some("apply")).await;
    // The catalog DestinationRule is managed by Argo CD.
    let (dr_api, _, _) = support::dynamic_api(
        &admin,
        "networking.istio.io/v1",
        "DestinationRule",
        Some(&ns),
    )
    .await
    .expect("api");
    dr_api
        .patch(
            "catalog",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"argocd.argoproj.io/instance": "shop"}}})),
        )
        .await
        .expect("label");
    let operator = Replica::start(cp.meshmedic_config(), "lease-apply", "replica-apply");

    // The localhost-binding fix (a new Sidecar) is safe: it is created, owned by its Remediation.
    let sidecar = remediation_for(&admin, &ns, "localhost-binding", "Sidecar").await;
    let (sc_api, _, _) =
        support::dynamic_api(&admin, "networking.istio.io/v1", "Sidecar", Some(&ns))
            .await
            .expect("api");
    let created = eventually(Duration::from_secs(30), "the Sidecar created", || async {
        sc_api.get(&sidecar.spec.target.name).await.ok()
    })
    .await;
    assert_eq!(
        created
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str),
        Some("meshmedic")
    );
    assert_eq!(
        created
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].kind.as_str()),
        Some("Remediation")
    );

    // Unsafe fixes wait (pod-template changes restart pods).
    let lifecycle = remediation_for(&admin, &ns, "sidecar-lifecycle", "Deployment").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lifecycle = Api::<Remediation>::namespaced(admin.clone(), &ns)
        .get(&lifecycle.metadata.name.clone().expect("name"))
        .await
        .expect("get");
    assert_eq!(phase(&lifecycle), Phase::Proposed);

    // The GitOps-managed target is not patched, and the status says why.
    let idle = remediation_for(&admin, &ns, "idle-timeout-mismatch", "DestinationRule").await;
    let held = eventually(
        Duration::from_secs(30),
        "the GitOps hold to be recorded",
        || async {
            let r = Api::<Remediation>::namespaced(admin.clone(), &ns)
                .get(&idle.metadata.name.clone()?)
                .await
                .ok()?;
            r.status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.reason == "GitOpsManaged")
                .then_some(r)
        },
    )
    .await;
    assert_eq!(phase(&held), Phase::Proposed);
    let dr = dr_api.get("catalog").await.expect("catalog");
    assert!(
        dr.data["spec"]["trafficPolicy"]["connectionPool"]
            .get("http")
            .is_none(),
        "a GitOps target was patched"
    );
    operator.stop();
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_other_takes_over_when_it_dies() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let a = Replica::start(cp.meshmedic_config(), "lease-ha", "replica-1");
    let b = Replica::start(cp.meshmedic_config(), "lease-ha", "replica-2");
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "meshmedic");
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    let first = eventually(Duration::from_secs(30), "a leader", || async {
        holder(leases.get("lease-ha").await.ok()?)
    })
    .await;
    // Only the leader writes: a new namespace's Remediations appear once, not twice.
    let ns = shop(&admin, "shop-ha", Some("propose")).await;
    eventually(
        Duration::from_secs(60),
        "Remediations from the leader",
        || async { (remediations(&admin, &ns).await.len() == 7).then_some(()) },
    )
    .await;
    let (leader, follower) = if first == "replica-1" { (a, b) } else { (b, a) };
    let killed_at = Instant::now();
    leader.kill();
    let second = eventually(Duration::from_secs(30), "a new leader", || async {
        holder(leases.get("lease-ha").await.ok()?).filter(|h| *h != first)
    })
    .await;
    let handover = killed_at.elapsed();
    eprintln!("leader {first} killed; {second} took over after {handover:?} (lease duration 4s)");
    assert!(
        handover < Duration::from_secs(4 + 4),
        "handover took {handover:?}"
    );
    follower.stop();
}

/// A full pass over a large cluster goes a group of namespaces at a time (`--full-pass-objects`);
/// with one namespace per group, every namespace still gets exactly its Remediations, and
/// namespaces not opted in none.
#[tokio::test]
async fn a_full_pass_in_namespace_groups_writes_what_a_whole_pass_writes() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let a = shop(&admin, "shop-group-a", Some("propose")).await;
    let b = shop(&admin, "shop-group-b", Some("propose")).await;
    let off = shop(&admin, "shop-group-off", None).await;
    let operator =
        Replica::start_with(cp.meshmedic_config(), "lease-groups", "replica-g", |args| {
            args.full_pass_objects = 1;
        });
    for ns in [&a, &b] {
        let rs = eventually(
            Duration::from_secs(60),
            "7 Remediations in each opted-in namespace",
            || async {
                let rs = remediations(&admin, ns).await;
                (rs.len() == 7 && rs.iter().all(|r| r.status.is_some())).then_some(rs)
            },
        )
        .await;
        assert!(rs.iter().all(|r| phase(r) == Phase::Proposed), "{ns}");
    }
    assert!(remediations(&admin, &off).await.is_empty());
    operator.stop();
}

/// Time from creating a misconfigured VirtualService to its Remediation existing. Printed (the
/// figures in the README come from here); asserted only loosely, since CI machines vary.
#[tokio::test]
async fn latency_from_misconfiguration_to_remediation() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "shop-latency", Some("propose")).await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-latency", "replica-latency");
    eventually(
        Duration::from_secs(60),
        "the initial Remediations",
        || async { (remediations(&admin, &ns).await.len() == 7).then_some(()) },
    )
    .await;
    let (vs_api, _, _) = support::dynamic_api(
        &admin,
        "networking.istio.io/v1",
        "VirtualService",
        Some(&ns),
    )
    .await
    .expect("api");
    let mut samples = Vec::new();
    for i in 0..20 {
        let name = format!("inventory-{i}");
        let started = Instant::now();
        vs_api
            .patch(&name, &PatchParams::apply("a-person"), &Patch::Apply(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"hosts": ["inventory"], "http": [{"route": [{"destination": {"host": "inventory"}}],
                         "retries": {"attempts": 2, "retryOn": "connect-failure"}}]}
            })))
            .await
            .expect("create VS");
        eventually(
            Duration::from_secs(30),
            "the new VirtualService's Remediation",
            || async {
                remediations(&admin, &ns)
                    .await
                    .into_iter()
                    .find(|r| r.spec.target.name == name)
                    .map(|_| ())
            },
        )
        .await;
        samples.push(started.elapsed());
        // Gone before the next: of VirtualServices for one host the sidecars use only the
        // oldest, and meshmedic patches only that one (its findings say the others are ignored).
        vs_api
            .delete(&name, &Default::default())
            .await
            .expect("delete VS");
    }
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() - 1];
    eprintln!(
        "misconfigured VirtualService → Remediation: p50 {p50:?}, p99 {p99:?} over {} samples",
        samples.len()
    );
    assert!(p99 < Duration::from_secs(10), "p99 {p99:?}");
    operator.stop();
}

/// A stand-in for Prometheus and for a sidecar's merged metrics, on loopback, answering with
/// 503 counts for services of namespace `ns`.
async fn data_plane_server(ns: String) -> u16 {
    use axum::routing::get;
    let query = json!({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"destination_service": format!("ratings.{ns}.svc.cluster.local"), "response_flags": "UC", "reporter": "destination"},
         "value": [1_764_000_000.0, "42"]},
        {"metric": {"destination_service": format!("ratings.{ns}.svc.cluster.local"), "response_flags": "UC", "reporter": "source"},
         "value": [1_764_000_000.0, "40"]}
    ]}});
    let exposition = format!(
        "# TYPE istio_requests_total counter\nistio_requests_total{{reporter=\"destination\",destination_service=\"catalog.{ns}.svc.cluster.local\",response_code=\"503\",response_flags=\"UC\"}} 7\nistio_requests_total{{reporter=\"destination\",destination_service=\"catalog.{ns}.svc.cluster.local\",response_code=\"200\",response_flags=\"-\"}} 900\n"
    );
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            get(move || {
                let q = query.to_string();
                async move { ([("content-type", "application/json")], q) }
            }),
        )
        .route(
            "/stats/prometheus",
            get(move || {
                let e = exposition.clone();
                async move { e }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    port
}

#[tokio::test]
async fn observed_503s_from_prometheus_or_sidecars_become_evidence() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();

    // From Prometheus.
    let ns = shop(&admin, "shop-prometheus", Some("propose")).await;
    let port = data_plane_server(ns.clone()).await;
    let operator = Replica::start_with(cp.meshmedic_config(), "lease-prom", "replica-prom", |a| {
        a.prometheus_url = Some(format!("http://127.0.0.1:{port}"));
    });
    let ratings = eventually(
        Duration::from_secs(60),
        "the ratings Remediation with evidence",
        || async {
            remediations(&admin, &ns).await.into_iter().find(|r| {
                answers(r, "missing-reset-retry")
                    && r.spec.target.name == "ratings-route"
                    && r.spec
                        .evidence
                        .iter()
                        .any(|e| e.contains("observed 42 HTTP 503"))
            })
        },
    )
    .await;
    assert_eq!(
        ratings.spec.severity,
        meshmedic::analysis::Severity::Error,
        "warning raised by observed 503s"
    );
    // A service without observed 503s keeps its severity.
    let cart = remediations(&admin, &ns)
        .await
        .into_iter()
        .find(|r| r.spec.target.name == "cart")
        .expect("cart");
    assert_eq!(cart.spec.severity, meshmedic::analysis::Severity::Warning);
    operator.stop();

    // Without Prometheus, from a pod's sidecar metrics (the pod's IP is loopback here).
    let ns2 = shop(&admin, "shop-sidecar", Some("propose")).await;
    let port2 = data_plane_server(ns2.clone()).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(admin.clone(), &ns2);
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "catalog-0", "labels": {"app": "catalog"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
    }))
    .expect("pod");
    pods.create(&Default::default(), &pod)
        .await
        .expect("create pod");
    pods.patch_status(
        "catalog-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"podIP": "127.0.0.1"}})),
    )
    .await
    .expect("pod IP");
    let operator = Replica::start_with(
        cp.meshmedic_config(),
        "lease-sidecar",
        "replica-sidecar",
        |a| {
            a.sidecar_metrics_port = Some(port2);
        },
    );
    eventually(
        Duration::from_secs(60),
        "the catalog Remediation with sidecar evidence",
        || async {
            remediations(&admin, &ns2).await.into_iter().find(|r| {
                answers(r, "idle-timeout-mismatch")
                    && r.spec
                        .evidence
                        .iter()
                        .any(|e| e.contains("observed 7 HTTP 503"))
            })
        },
    )
    .await;
    operator.stop();

    // An unreachable Prometheus is reported, never fatal: Remediations still come.
    let ns3 = shop(&admin, "shop-no-prometheus", Some("propose")).await;
    let operator = Replica::start_with(
        cp.meshmedic_config(),
        "lease-noprom",
        "replica-noprom",
        |a| {
            a.prometheus_url = Some("http://127.0.0.1:9".into());
        },
    );
    eventually(
        Duration::from_secs(60),
        "Remediations without Prometheus",
        || async { (remediations(&admin, &ns3).await.len() >= 7).then_some(()) },
    )
    .await;
    operator.stop();
}

#[tokio::test]
async fn a_meaningless_annotation_is_told_once_with_an_event_and_the_safe_reading_applies() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::events::v1::Event;
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "bad-annotations", Some("sometimes!")).await;
    Api::<Namespace>::all(admin.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"meshmedic.io/min-severity": "loud"}}}),
            ),
        )
        .await
        .expect("annotated");
    let operator = Replica::start(
        cp.meshmedic_config(),
        "lease-bad-annotations",
        "replica-bad",
    );

    let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
    let told = |evs: &[Event], key: &str| {
        namespace_warnings(evs, "replica-bad", "InvalidAnnotation", &[key])
    };
    eventually(
        Duration::from_secs(30),
        "an Event for each annotation",
        || async {
            let evs = events.list(&Default::default()).await.ok()?.items;
            (told(&evs, "meshmedic.io/mode") == 1 && told(&evs, "meshmedic.io/min-severity") == 1)
                .then_some(())
        },
    )
    .await;
    // Mode off is the safe reading: nothing proposed. Later passes (touch the namespace's
    // objects) tell nothing again; corrected, the namespace is analysed as asked.
    told_once_then_proposed_when(
        &admin,
        &ns,
        |evs| told(evs, "meshmedic.io/mode"),
        json!({"metadata": {"annotations": {"meshmedic.io/mode": "propose"}}}),
    )
    .await;
    operator.stop();
}

#[tokio::test]
async fn an_unreadable_object_is_told_with_an_event_and_nothing_in_its_namespace_is_resolved() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::events::v1::Event;
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = shop(&admin, "unreadable", Some("propose")).await;
    let operator = Replica::start(
        cp.meshmedic_config(),
        "lease-unreadable",
        "replica-unreadable",
    );
    let before = eventually(Duration::from_secs(60), "7 Remediations", || async {
        let rs = remediations(&admin, &ns).await;
        (rs.len() == 7 && rs.iter().all(|r| r.status.is_some())).then_some(rs)
    })
    .await;

    // A pod template annotation that means nothing: the Deployment cannot be analysed.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    deployments
        .patch(
            "catalog",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {"meshmedic.io/ignore": ",,not-a-code,,"}}}}})),
        )
        .await
        .expect("annotated");
    let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
    let note = eventually(
        Duration::from_secs(30),
        "an Event on the Deployment",
        || async {
            let evs = events.list(&Default::default()).await.ok()?.items;
            evs.into_iter().find_map(|e| {
                (e.reporting_instance.as_deref() == Some("replica-unreadable")
                    && e.reason.as_deref() == Some("InvalidField")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("catalog"))
                .then_some(e.note.unwrap_or_default())
            })
        },
    )
    .await;
    assert!(
        note.contains("meshmedic.io/ignore") && note.contains("not-a-code"),
        "{note}"
    );
    // A partial view resolves nothing: the Remediations stand as they were.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = remediations(&admin, &ns).await;
    assert_eq!(now.len(), before.len());
    for (a, b) in before.iter().zip(&now) {
        assert_eq!(
            phase(a),
            phase(b),
            "{}",
            a.metadata.name.clone().unwrap_or_default()
        );
    }
    operator.stop();
}

/// A namespace opted in without a mesh label (kube-prometheus' `monitoring`, sock-shop): nothing
/// in it runs with a proxy, so no sidecar cause is looked for there. The person who opted it in
/// is told once with a Warning Event on the Namespace, not on every pass; labelled for
/// injection, it is analysed as any other, and nothing more is told.
#[tokio::test]
async fn an_opted_in_namespace_with_nothing_meshed_is_told_once_with_an_event() {
    use k8s_openapi::api::events::v1::Event;
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = support::namespace(&admin, "nothing-meshed").await;
    nginx_gallery(&admin, &ns).await;
    patch_namespace(
        &admin,
        &ns,
        json!({"metadata": {"annotations": {"meshmedic.io/mode": "propose"}}}),
    )
    .await;
    let operator = Replica::start(cp.meshmedic_config(), "lease-nothing-meshed", "replica-nm");
    let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
    let told = |evs: &[Event]| {
        namespace_warnings(
            evs,
            "replica-nm",
            "NothingMeshed",
            &[
                "none of its 1 workload(s) runs with an Istio proxy",
                "no istio-injection or istio.io/rev label",
            ],
        )
    };
    eventually(
        Duration::from_secs(30),
        "the NothingMeshed Event",
        || async {
            let evs = events.list(&Default::default()).await.ok()?.items;
            (told(&evs) == 1).then_some(())
        },
    )
    .await;
    // Later passes over the namespace tell nothing again; labelled for injection, the
    // gallery's idle-timeout cause is proposed.
    told_once_then_proposed_when(
        &admin,
        &ns,
        told,
        json!({"metadata": {"labels": {"istio-injection": "enabled"}}}),
    )
    .await;
    operator.stop();
}

/// Warning Events on a Namespace from the operator replica `instance` (other tests' operators
/// watch every namespace too) with `reason`, whose note says each of `note_has`.
fn namespace_warnings(
    evs: &[k8s_openapi::api::events::v1::Event],
    instance: &str,
    reason: &str,
    note_has: &[&str],
) -> usize {
    evs.iter()
        .filter(|e| {
            e.reporting_instance.as_deref() == Some(instance)
                && e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Namespace")
                && e.note
                    .as_deref()
                    .is_some_and(|n| note_has.iter().all(|h| n.contains(h)))
        })
        .count()
}

/// After three more passes over `ns`, `told` still counts one Event and nothing is proposed;
/// once the Namespace is patched with `correction`, a Remediation appears.
async fn told_once_then_proposed_when(
    admin: &kube::Client,
    ns: &str,
    told: impl Fn(&[k8s_openapi::api::events::v1::Event]) -> usize,
    correction: serde_json::Value,
) {
    touch_three_times(admin, ns).await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), ns);
    let evs = events
        .list(&Default::default())
        .await
        .expect("events")
        .items;
    assert_eq!(told(&evs), 1);
    assert!(remediations(admin, ns).await.is_empty());
    patch_namespace(admin, ns, correction).await;
    eventually(
        Duration::from_secs(30),
        "a Remediation once corrected",
        || async { (!remediations(admin, ns).await.is_empty()).then_some(()) },
    )
    .await;
}

/// Three passes over `ns`: its Namespace relabelled, 700 ms apart.
async fn touch_three_times(admin: &kube::Client, ns: &str) {
    for i in 0..3 {
        patch_namespace(
            admin,
            ns,
            json!({"metadata": {"labels": {"touched": i.to_string()}}}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}
