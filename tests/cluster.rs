//! The test control plane is real: a kube-apiserver with etcd, RBAC and Istio's own CRDs
//! judges what meshmedic reads and writes. Needs `eval "$(scripts/k8s-test-env.sh)"` first.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Target, control_plane, error_message};

#[tokio::test]
async fn identities_authenticate_and_rbac_is_enforced() {
    let cp = control_plane();

    for (client, user) in [
        (cp.admin(), support::ADMIN_USER),
        (cp.meshmedic(), support::MESHMEDIC_USER),
    ] {
        let review: SelfSubjectReview = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
        }))
        .expect("a SelfSubjectReview");
        let review = Api::<SelfSubjectReview>::all(client)
            .create(&PostParams::default(), &review)
            .await
            .expect("SelfSubjectReview is open to every authenticated user");
        let info = review.status.and_then(|s| s.user_info).expect("user info");
        assert_eq!(info.username.as_deref(), Some(user));
        if user == support::MESHMEDIC_USER {
            let groups = info.groups.unwrap_or_default();
            for group in support::MESHMEDIC_GROUPS {
                assert!(groups.iter().any(|g| g == group), "{group} in {groups:?}");
            }
        }
    }

    // The admin may do anything; a user nobody granted anything may not even list.
    let ns = support::namespace(&cp.admin(), "rbac").await;
    let resource = kube::discovery::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("networking.istio.io", "v1", "DestinationRule"),
        "destinationrules",
    );
    let dr_api = |client| Api::<DynamicObject>::namespaced_with(client, &ns, &resource);
    dr_api(cp.admin())
        .list(&ListParams::default())
        .await
        .expect("the admin lists DestinationRules");
    let denied = dr_api(cp.impersonating("nobody", &["system:authenticated"]))
        .list(&ListParams::default())
        .await
        .expect_err("RBAC denies a user without bindings");
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "expected 403 Forbidden, got {}",
        error_message(&denied)
    );
}

#[tokio::test]
async fn istio_crds_are_installed_with_their_schemas() {
    let cp = control_plane();
    let crds = Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(cp.admin());
    for name in [
        "destinationrules.networking.istio.io",
        "virtualservices.networking.istio.io",
        "sidecars.networking.istio.io",
        "envoyfilters.networking.istio.io",
        "peerauthentications.security.istio.io",
        "telemetries.telemetry.istio.io",
    ] {
        let crd = crds.get(name).await.unwrap_or_else(|e| {
            panic!("CRD {name} is installed: {}", error_message(&e));
        });
        let served = crd.spec.versions.iter().filter(|v| v.served).count();
        assert!(served > 0, "{name} serves a version");
        assert!(
            crd.spec.versions.iter().all(|v| v.schema.is_some()),
            "{name} carries its OpenAPI schema"
        );
    }
}

#[tokio::test]
async fn fixture_objects_are_created_and_stored() {
    let cp = control_plane();
    let client = cp.admin();
    let ns = support::namespace(&client, "fixture").await;
    let dir = support::repo_path("tests/fixtures/cluster");
    let failures = support::apply_all(&client, &dir, &ns).await;
    assert!(failures.is_empty(), "rejected:\n{}", failures.join("\n"));

    for (_, obj) in support::manifests_under(&dir) {
        let (api, _, _) = support::dynamic_api(
            &client,
            obj["apiVersion"].as_str().expect("apiVersion"),
            obj["kind"].as_str().expect("kind"),
            Some(&ns),
        )
        .await
        .expect("discovery");
        let name = obj["metadata"]["name"].as_str().expect("name");
        let stored = api.get(name).await.expect("stored object");
        assert!(stored.metadata.uid.is_some());
    }
}

#[tokio::test]
async fn every_example_is_accepted_by_the_api_server() {
    let cp = control_plane();
    let client = cp.admin();
    let dir = support::repo_path("examples");
    let count = support::manifests_under(&dir).len();
    eprintln!("{count} objects under {}", dir.display());
    let failures = support::apply_all(&client, &dir, "default").await;
    assert!(
        failures.is_empty(),
        "the API server rejected examples:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn pods_can_be_created_and_their_status_set() {
    let cp = control_plane();
    let client = cp.admin();
    let ns = support::namespace(&client, "pods").await;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }))
    .expect("a Pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating a Pod");
    let status = json!({"status": {"phase": "Running", "podIP": "10.1.2.3",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("app", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("setting the Pod's status");
    let stored = pods.get("app").await.expect("the Pod");
    let status = stored.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.1.2.3"));
}

fn destination_rule(ns: &str, name: &str, http_idle_timeout: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "host": format!("{name}.{ns}.svc.cluster.local"),
            "trafficPolicy": {"connectionPool": {"http": {"idleTimeout": http_idle_timeout}}},
        },
    })
}

#[tokio::test]
async fn dry_run_apply_accepts_a_valid_destination_rule_and_stores_nothing() {
    let cp = control_plane();
    let client = cp.admin();
    let ns = support::namespace(&client, "dry-run-valid").await;
    let dr = destination_rule(&ns, "ratings", "55s");
    let answer = support::dry_run_apply(&client, &dr)
        .await
        .unwrap_or_else(|e| panic!("a valid DestinationRule passes: {}", error_message(&e)));
    assert_eq!(
        answer.data["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "55s"
    );
    let (api, _, _) = support::dynamic_api(
        &client,
        "networking.istio.io/v1",
        "DestinationRule",
        Some(&ns),
    )
    .await
    .expect("discovery");
    let stored = api.get_opt("ratings").await.expect("a get");
    assert!(stored.is_none(), "dryRun=All must store nothing");
}

#[tokio::test]
async fn dry_run_apply_rejects_an_invalid_destination_rule() {
    let cp = control_plane();
    let client = cp.admin();
    let ns = support::namespace(&client, "dry-run-invalid").await;

    // Istio's CRD checks http.idleTimeout with CEL: duration(self) >= duration('1ms').
    let bad_duration = destination_rule(&ns, "ratings", "1hh");
    let error = support::dry_run_apply(&client, &bad_duration)
        .await
        .expect_err("a DestinationRule with idleTimeout \"1hh\" must be rejected");
    let message = error_message(&error);
    assert!(
        matches!(&error, kube::Error::Api(s) if s.code == 422),
        "expected 422 Invalid, got {message}"
    );
    assert!(message.contains("idleTimeout"), "{message}");

    // A field the schema does not declare.
    let mut unknown_field = destination_rule(&ns, "ratings", "55s");
    unknown_field["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeoutSeconds"] =
        json!(55);
    let error = support::dry_run_apply(&client, &unknown_field)
        .await
        .expect_err("an undeclared field must be rejected");
    assert!(
        error_message(&error).contains("idleTimeoutSeconds"),
        "{}",
        error_message(&error)
    );

    // A wrong type.
    let mut wrong_type = destination_rule(&ns, "ratings", "55s");
    wrong_type["spec"]["trafficPolicy"]["connectionPool"]["http"]["maxRetries"] = json!("three");
    let error = support::dry_run_apply(&client, &wrong_type)
        .await
        .expect_err("a string where the schema wants an integer must be rejected");
    assert!(
        error_message(&error).contains("maxRetries"),
        "{}",
        error_message(&error)
    );
}

/// What the API server does not judge: Istio 1.31's CRD has no CEL rule on
/// `connectionPool.tcp.idleTimeout` (nor on VirtualService `retries.retryOn`), so a server-side
/// dry run accepts a malformed value there; only istiod would refuse it. meshmedic must write
/// those fields right by itself. If a later Istio adds the rule, this test says so.
#[tokio::test]
async fn api_server_does_not_validate_tcp_idle_timeout() {
    let cp = control_plane();
    let client = cp.admin();
    let ns = support::namespace(&client, "tcp-idle").await;
    let mut dr = destination_rule(&ns, "ratings", "55s");
    dr["spec"]["trafficPolicy"]["connectionPool"]["tcp"] = json!({"idleTimeout": "1hh"});
    support::dry_run_apply(&client, &dr)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Istio's CRD now validates tcp.idleTimeout ({}); update this test and the docs",
                error_message(&e)
            )
        });
}

#[tokio::test]
async fn dry_run_json_patch_is_judged_by_the_schema_and_test_operations() {
    let cp = control_plane();
    let client = cp.admin();
    let ns = support::namespace(&client, "json-patch").await;
    support::apply(&client, &destination_rule(&ns, "reviews", "1h"))
        .await
        .expect("creating the DestinationRule");
    let target = Target {
        api_version: "networking.istio.io/v1".into(),
        kind: "DestinationRule".into(),
        namespace: Some(ns.clone()),
        name: "reviews".into(),
    };
    let path = "/spec/trafficPolicy/connectionPool/http/idleTimeout";

    let good = json!([
        {"op": "test", "path": path, "value": "1h"},
        {"op": "replace", "path": path, "value": "4s"},
    ]);
    let patched = support::dry_run_json_patch(&client, &target, &good)
        .await
        .unwrap_or_else(|e| panic!("a valid patch passes: {}", error_message(&e)));
    assert_eq!(
        patched.data["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "4s"
    );
    let (api, _, _) = support::dynamic_api(&client, &target.api_version, &target.kind, Some(&ns))
        .await
        .expect("discovery");
    let stored = api.get("reviews").await.expect("the DestinationRule");
    assert_eq!(
        stored.data["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"], "1h",
        "dryRun=All must change nothing"
    );

    let stale = json!([
        {"op": "test", "path": path, "value": "30m"},
        {"op": "replace", "path": path, "value": "4s"},
    ]);
    let error = support::dry_run_json_patch(&client, &target, &stale)
        .await
        .expect_err("a failing test operation must reject the patch");
    assert!(
        matches!(&error, kube::Error::Api(s) if s.code == 422),
        "{}",
        error_message(&error)
    );

    let invalid = json!([{"op": "replace", "path": path, "value": "4ss"}]);
    let error = support::dry_run_json_patch(&client, &target, &invalid)
        .await
        .expect_err("a patch to an invalid duration must be rejected");
    assert!(
        matches!(&error, kube::Error::Api(s) if s.code == 422),
        "{}",
        error_message(&error)
    );
}

/// Every fix `meshmedic analyze examples -o json` proposes must be accepted by the API server
/// with Istio's CRD schemas and CEL rules: a rejected fix is a bug in meshmedic.
#[tokio::test]
async fn analyze_proposals_pass_server_side_dry_run() {
    let cp = control_plane();
    let client = cp.admin();
    let examples = support::repo_path("examples");
    let failures = support::apply_all(&client, &examples, "default").await;
    assert!(
        failures.is_empty(),
        "examples rejected:\n{}",
        failures.join("\n")
    );

    let output = Command::new(env!("CARGO_BIN_EXE_meshmedic"))
        .args(["analyze", "examples", "-o", "json"])
        .current_dir(support::repo_path(""))
        .output()
        .expect("running meshmedic analyze");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "meshmedic analyze examples -o json gave no JSON ({e}); status {}, stderr:\n{}\nstdout:\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let findings = report["findings"]
        .as_array()
        .expect("a findings array in the JSON report");

    let mut checked = 0;
    let mut rejected = Vec::new();
    for finding in findings {
        let remediation = &finding["remediation"];
        if remediation.is_null() {
            continue;
        }
        let target: Target = serde_json::from_value(remediation["target"].clone())
            .expect("remediation.target is {apiVersion, kind, namespace, name}");
        let result = match remediation["action"].as_str() {
            Some("patch") => support::dry_run_json_patch(&client, &target, &remediation["patch"])
                .await
                .map(|_| ()),
            Some("create") => support::dry_run_apply(&client, &remediation["resource"])
                .await
                .map(|_| ()),
            other => panic!("unknown remediation action {other:?} in {remediation}"),
        };
        checked += 1;
        if let Err(e) = result {
            rejected.push(format!(
                "{} {}/{}: {}\n  remediation: {remediation}",
                target.kind,
                target.namespace.as_deref().unwrap_or("-"),
                target.name,
                error_message(&e)
            ));
        }
    }
    eprintln!("dry-ran {checked} proposals");
    assert!(checked > 0, "meshmedic proposed no fix for examples/");
    assert!(
        rejected.is_empty(),
        "the API server rejected {} of {checked} proposals:\n{}",
        rejected.len(),
        rejected.join("\n")
    );
}

const ABORT_HELPER_ENV: &str = "MESHMEDIC_TEST_ABORT_HELPER";

/// Helper of `control_plane_dies_with_the_test_process`, run by it in a child test process:
/// starts a control plane, reports its pids, and aborts (no unwinding, no atexit handlers).
#[test]
#[ignore = "run by control_plane_dies_with_the_test_process"]
fn abort_helper_starts_control_plane_then_aborts() {
    if std::env::var_os(ABORT_HELPER_ENV).is_none() {
        return;
    }
    let cp = control_plane();
    let pids: Vec<String> = cp.pids().iter().map(|p| p.to_string()).collect();
    println!("PIDS {} DIR {}", pids.join(" "), cp.dir().display());
    std::process::abort();
}

fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for its new parent to reap it is dead too.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn control_plane_dies_with_the_test_process() {
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "abort_helper_starts_control_plane_then_aborts",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(ABORT_HELPER_ENV, "1")
        .output()
        .expect("running the helper test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PIDS "))
        .unwrap_or_else(|| {
            panic!(
                "the helper reported no pids; status {}, stdout:\n{stdout}\nstderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(!output.status.success(), "the helper aborts");
    let (pids, dir) = line.split_once(" DIR ").expect("PIDS ... DIR ...");
    let pids: Vec<u32> = pids
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver");

    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids.iter().all(|&pid| process_is_gone(pid)) {
        assert!(
            Instant::now() < deadline,
            "etcd/kube-apiserver {pids:?} outlived their aborted test process"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The aborted run could not clean up; the next start would. Do it now.
    let _ = std::fs::remove_dir_all(dir);
}
