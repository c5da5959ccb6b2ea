//! Kubelet versions come from the cluster's Node objects: with Istio >= 1.27 they decide whether
//! sidecars are native, and so whether the classic shutdown race (sidecar-lifecycle) exists. On
//! the real apiserver, for `analyze --cluster` and for the operator.

mod support;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;
use support::control_plane;
use support::operator::{Replica, answers, eventually, install_once, remediations};

/// The profile example without its opt-out annotation: classic or native is the cluster's call.
fn profile_workload(ns: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(support::repo_path(
        "examples/shop/profile-sidecar-lifecycle.yaml",
    ))
    .expect("example")
    .replace("namespace: shop", &format!("namespace: {ns}"))
    .replace("        sidecar.istio.io/nativeSidecar: \"false\"\n", "");
    meshmedic::snapshot::load::parse_documents("example", &text)
        .expect("yaml")
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

fn analyze_cluster(ns: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meshmedic"))
        .args(["analyze", "--cluster", "-n", ns, "--kubeconfig"])
        .arg(control_plane().kubeconfig())
        .output()
        .expect("meshmedic runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn an_old_kubelet_brings_back_the_classic_sidecar_race() {
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = support::namespace(&admin, "nodes").await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    namespaces
        .patch(
            &ns,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {
                "labels": {"istio-injection": "enabled"},
                "annotations": {"meshmedic.io/mode": "propose"},
            }})),
        )
        .await
        .expect("opt in");
    for doc in profile_workload(&ns) {
        support::apply(&admin, &doc).await.expect("apply");
    }
    let operator = Replica::start(cp.meshmedic_config(), "lease-nodes", "replica-nodes");

    // No Node: kubelets assumed current, sidecars native, no race.
    let out = analyze_cluster(&ns);
    assert!(!out.contains("sidecar-lifecycle"), "{out}");
    assert!(out.contains("Kubernetes 1.34: assumed"), "{out}");
    // Nor does the operator propose anything (it has had time to analyse the namespace).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        remediations(&admin, &ns).await.is_empty(),
        "a Remediation although sidecars are native"
    );

    // One node with kubelet 1.32: Istio's `auto` injects classic sidecars everywhere.
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("{ns}-old")},
        "status": {"nodeInfo": {
            "kubeletVersion": "v1.32.4", "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": "amd64",
        }},
    }))
    .expect("node");
    let nodes: Api<Node> = Api::all(admin.clone());
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("node created");
    let out = analyze_cluster(&ns);
    assert!(out.contains("sidecar-lifecycle"), "{out}");
    assert!(out.contains("Kubernetes 1.32"), "{out}");

    // The operator watches Nodes too (deploy/ grants it list and watch).
    eventually(
        Duration::from_secs(30),
        "a sidecar-lifecycle Remediation",
        || async {
            remediations(&admin, &ns)
                .await
                .into_iter()
                .find(|r| answers(r, "sidecar-lifecycle"))
        },
    )
    .await;
    nodes
        .delete(&format!("{ns}-old"), &Default::default())
        .await
        .expect("node deleted");
    operator.stop();
}
