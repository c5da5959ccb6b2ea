use std::time::Duration;

use serde_json::{Value, json};

use super::app_shutdown;
use crate::analysis::test_support::{
    assert_patch_consistent, findings_of, has_evidence, none_of, only_of, snapshot, snapshot_with,
};
use crate::analysis::{Code, Finding, Severity, WorkloadRef};
use crate::remediation::Action;
use crate::snapshot::Snapshot;
use crate::snapshot::SnapshotOptions;

/// The injected namespace, in a cluster with one kubelet below 1.33: istiod's default
/// `ENABLE_NATIVE_SIDECARS=auto` injects classic sidecars there, so the races exist.
const NS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Node
metadata: {name: pool-a-1}
status: {nodeInfo: {kubeletVersion: v1.32.6}}
"#;

const SERVICE: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec: {selector: {app: orders}, ports: [{name: http, port: 80, targetPort: 8080}]}
"#;

const PRE_STOP_15: &str = r#"{name: app, image: "example/orders:1", lifecycle: {preStop: {exec: {command: [sh, -c, "sleep 15"]}}}}"#;
const NO_PRE_STOP: &str = r#"{name: app, image: "example/orders:1"}"#;

/// The namespace, a Deployment `orders` with pod-template `annotations` (a flow mapping) and
/// `container` (a flow mapping), and its Service.
fn mesh(annotations: &str, container: &str) -> String {
    format!(
        r#"{NS}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: orders, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: orders}}}}
  template:
    metadata: {{labels: {{app: orders}}, annotations: {annotations}}}
    spec:
      containers:
      - {container}
{SERVICE}"#
    )
}

fn mesh_config(default_config: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    defaultConfig: {default_config}\n"
    )
}

const CODE: Code = Code::SidecarLifecycle;

fn only(snap: &Snapshot) -> Finding {
    only_of(snap, CODE)
}

fn none(yaml: &str) {
    none_of(yaml, CODE)
}

/// The `proxy.istio.io/config` annotation of the corrected Deployment, parsed.
fn proxy_config(f: &Finding) -> Value {
    let text = f.remediation.resource["spec"]["template"]["metadata"]["annotations"]
        ["proxy.istio.io/config"]
        .as_str()
        .expect("proxy.istio.io/config annotation");
    serde_saphyr::from_str(text).expect("annotation is YAML")
}

#[test]
fn a_pre_stop_longer_than_the_drain_keeps_existing_proxy_config_keys() {
    let yaml = mesh(
        r#"{proxy.istio.io/config: "concurrency: 2\nproxyMetadata: {FOO: bar}\n", prometheus.io/scrape: "true"}"#,
        PRE_STOP_15,
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.service.as_deref(), Some("orders"));
    assert_eq!(
        f.workload,
        Some(WorkloadRef {
            kind: "Deployment".into(),
            name: "orders".into()
        })
    );
    assert!(has_evidence(&f, "preStop sleeps 15s"));
    assert!(has_evidence(&f, "the proxy drains for 5s"));
    assert!(
        !has_evidence(&f, "terminationGracePeriodSeconds"),
        "30s grace is enough for 20s"
    );
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert!(!r.safe_to_auto_apply, "it restarts pods");
    assert_eq!(
        (r.target.kind.as_str(), r.target.name.as_str()),
        ("Deployment", "orders")
    );
    assert_eq!(
        proxy_config(&f),
        json!({
            "concurrency": 2,
            "proxyMetadata": {"FOO": "bar"},
            "terminationDrainDuration": "20s",
            "holdApplicationUntilProxyStarts": true,
        })
    );
    assert_eq!(
        r.resource["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_pod_without_annotations_gets_the_annotation() {
    let yaml = mesh("{}", PRE_STOP_15).replace(", annotations: {}", "");
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(
        proxy_config(&f),
        json!({"terminationDrainDuration": "20s", "holdApplicationUntilProxyStarts": true})
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_long_enough_drain_leaves_only_the_startup_advice() {
    let yaml = mesh(
        r#"{proxy.istio.io/config: "terminationDrainDuration: 30s"}"#,
        PRE_STOP_15,
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Info);
    assert!(!has_evidence(&f, "preStop"));
    assert!(has_evidence(
        &f,
        "holdApplicationUntilProxyStarts is not set"
    ));
    assert!(!f.remediation.safe_to_auto_apply);
    assert_eq!(
        proxy_config(&f),
        json!({"terminationDrainDuration": "30s", "holdApplicationUntilProxyStarts": true})
    );
    assert_patch_consistent(&snap, &f);

    // And nothing at all once the mesh holds the app until the proxy starts.
    none(&format!(
        "{yaml}{}",
        mesh_config("{holdApplicationUntilProxyStarts: true}")
    ));
}

#[test]
fn exit_on_zero_active_connections_covers_the_shutdown() {
    let yaml = mesh(
        r#"{proxy.istio.io/config: "proxyMetadata: {EXIT_ON_ZERO_ACTIVE_CONNECTIONS: \"true\"}"}"#,
        PRE_STOP_15,
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Info, "startup advice only");
    assert!(!has_evidence(&f, "preStop"));
    assert!(proxy_config(&f).get("terminationDrainDuration").is_none());
    assert_patch_consistent(&snap, &f);

    // From mesh defaultConfig too, with the hold set there: no finding.
    none(&format!(
        "{}{}",
        mesh("{}", PRE_STOP_15),
        mesh_config(
            "{holdApplicationUntilProxyStarts: true, proxyMetadata: {EXIT_ON_ZERO_ACTIVE_CONNECTIONS: \"true\"}}"
        )
    ));
}

#[test]
fn a_native_sidecar_starts_first_and_stops_last() {
    let yaml = mesh("{}", PRE_STOP_15).replace(
        "      containers:\n",
        "      initContainers:\n      - {name: istio-proxy, image: \"docker.io/istio/proxyv2:1.28.0\", restartPolicy: Always}\n      containers:\n",
    );
    none(&yaml);
}

#[test]
fn a_mesh_wide_hold_removes_only_the_startup_part() {
    let yaml = format!(
        "{}{}",
        mesh("{}", PRE_STOP_15),
        mesh_config("{holdApplicationUntilProxyStarts: true}")
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Warning);
    assert!(!has_evidence(&f, "holdApplicationUntilProxyStarts"));
    assert_eq!(proxy_config(&f), json!({"terminationDrainDuration": "20s"}));
    assert_patch_consistent(&snap, &f);

    none(&format!(
        "{}{}",
        mesh("{}", NO_PRE_STOP),
        mesh_config("{holdApplicationUntilProxyStarts: true}")
    ));
}

#[test]
fn a_mesh_wide_drain_counts() {
    none(&format!(
        "{}{}",
        mesh("{}", PRE_STOP_15),
        mesh_config("{holdApplicationUntilProxyStarts: true, terminationDrainDuration: 20s}")
    ));
}

#[test]
fn uvicorn_graceful_shutdown() {
    let yaml = mesh(
        r#"{proxy.istio.io/config: "holdApplicationUntilProxyStarts: true"}"#,
        r#"{name: app, image: "python:3.12", command: [uvicorn, "main:app", --host, 0.0.0.0, --timeout-graceful-shutdown, "20"]}"#,
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Warning);
    assert!(has_evidence(&f, "uvicorn --timeout-graceful-shutdown 20s"));
    assert_eq!(
        proxy_config(&f),
        json!({"holdApplicationUntilProxyStarts": true, "terminationDrainDuration": "25s"})
    );
    assert!(!f.remediation.safe_to_auto_apply);
    assert_patch_consistent(&snap, &f);
}

#[test]
fn pre_stop_and_graceful_shutdown_add_up_and_the_grace_period_is_checked() {
    let yaml = mesh(
        r#"{proxy.istio.io/config: "holdApplicationUntilProxyStarts: true"}"#,
        r#"{name: app, image: "python:3.12", command: [gunicorn, --graceful-timeout, "30", "app:app"], lifecycle: {preStop: {sleep: {seconds: 10}}}}"#,
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "preStop sleeps 10s + gunicorn --graceful-timeout 30s"
    ));
    assert!(has_evidence(
        &f,
        "terminationGracePeriodSeconds is 30s: raise it to at least 45"
    ));
    assert_eq!(proxy_config(&f)["terminationDrainDuration"], json!("45s"));
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_short_pre_stop_with_the_hold_set_is_fine() {
    none(&mesh(
        r#"{proxy.istio.io/config: "holdApplicationUntilProxyStarts: true"}"#,
        r#"{name: app, image: "example/orders:1", lifecycle: {preStop: {exec: {command: [sleep, "3"]}}}}"#,
    ));
}

#[test]
fn workloads_without_a_sidecar_are_not_checked() {
    none(&mesh("{}", PRE_STOP_15).replace("labels: {istio-injection: enabled}", "labels: {}"));
}

#[test]
fn app_shutdown_reads_hooks_and_flags() {
    let container = |value: Value| -> crate::model::workload::Container {
        serde_json::from_value(value).expect("container")
    };
    assert_eq!(app_shutdown(&container(json!({"name": "a"})), None), None);
    let (d, _) = app_shutdown(
        &container(json!({"name": "a", "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 5s; nginx -s quit"]}}}})),
        None,
    )
    .unwrap();
    assert_eq!(d, Duration::from_secs(5));
    let (d, why) = app_shutdown(
        &container(json!({"name": "a", "env": [{"name": "SERVER_SHUTDOWN", "value": "graceful"}]})),
        None,
    )
    .unwrap();
    assert_eq!(d, Duration::from_secs(30));
    assert!(why.contains("Spring Boot"));
    let (d, _) = app_shutdown(&container(json!({"name": "a"})), Some("12s")).unwrap();
    assert_eq!(d, Duration::from_secs(12));
}

#[test]
fn the_native_sidecar_annotation_counts_too() {
    none(&mesh(
        r#"{sidecar.istio.io/nativeSidecar: "true"}"#,
        PRE_STOP_15,
    ));
}

#[test]
fn the_ignore_annotation_suppresses_the_finding() {
    none(&mesh(
        r#"{meshmedic.io/ignore: "sidecar-lifecycle"}"#,
        PRE_STOP_15,
    ));
}

// --- The mesh profile: which sidecar istiod injects --------------------------------------------

/// The Deployment with a 15s preStop in an injected namespace, with nothing about the cluster.
fn workload_only(annotations: &str) -> String {
    mesh(annotations, PRE_STOP_15).replace(
        "---\napiVersion: v1\nkind: Node\nmetadata: {name: pool-a-1}\nstatus: {nodeInfo: {kubeletVersion: v1.32.6}}\n",
        "",
    )
}

fn istiod(version: &str, env: Option<&str>) -> String {
    let env = env
        .map(|v| format!(", env: [{{name: ENABLE_NATIVE_SIDECARS, value: \"{v}\"}}]"))
        .unwrap_or_default();
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: istiod, namespace: istio-system, labels: {{app: istiod}}}}
spec:
  selector: {{matchLabels: {{app: istiod}}}}
  template:
    metadata: {{labels: {{app: istiod}}}}
    spec: {{containers: [{{name: discovery, image: "docker.io/istio/pilot:{version}"{env}}}]}}
"#
    )
}

fn nodes(versions: &[&str]) -> String {
    versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-{i}}}\nstatus: {{nodeInfo: {{kubeletVersion: {v}}}}}\n"
            )
        })
        .collect()
}

fn lifecycle(yaml: &str) -> Vec<Finding> {
    findings_of(&snapshot(yaml), CODE)
}

#[test]
fn istio_before_1_27_injects_classic_sidecars_even_on_new_kubelets() {
    let yaml = format!(
        "{}{}{}",
        workload_only("{}"),
        istiod("1.26.4", None),
        nodes(&["v1.34.1", "v1.33.0"])
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        has_evidence(
            &f,
            "ENABLE_NATIVE_SIDECARS=false (Istio 1.26 default (false))"
        ),
        "{:?}",
        f.evidence
    );
    assert_eq!(snap.profile().istio.minor, 26);
}

#[test]
fn istio_1_27_and_every_kubelet_at_1_33_inject_native_sidecars() {
    let yaml = format!(
        "{}{}{}",
        workload_only("{}"),
        istiod("1.31.0", None),
        nodes(&["v1.34.1", "v1.33.2-eks-4f9e"])
    );
    assert!(
        lifecycle(&yaml).is_empty(),
        "native: no startup or shutdown race"
    );
    let yaml = format!(
        "{}{}{}",
        workload_only("{}"),
        istiod("1.27.0", None),
        nodes(&["v1.33.0"])
    );
    assert!(lifecycle(&yaml).is_empty());
}

#[test]
fn one_older_kubelet_turns_auto_off_for_the_whole_cluster() {
    let yaml = format!(
        "{}{}{}",
        workload_only("{}"),
        istiod("1.31.0", None),
        nodes(&["v1.34.1", "v1.32.9", "v1.34.1"])
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(
        has_evidence(&f, "ENABLE_NATIVE_SIDECARS=auto"),
        "{:?}",
        f.evidence
    );
    assert!(has_evidence(&f, "1.32"), "{:?}", f.evidence);
    assert!(has_evidence(&f, "node-1"), "{:?}", f.evidence);
}

#[test]
fn the_env_forces_it_off_or_on() {
    let off = format!(
        "{}{}{}",
        workload_only("{}"),
        istiod("1.31.0", Some("false")),
        nodes(&["v1.34.1"])
    );
    let snap = snapshot(&off);
    let f = only(&snap);
    assert!(
        has_evidence(
            &f,
            "env ENABLE_NATIVE_SIDECARS=false on Deployment istio-system/istiod"
        ),
        "{:?}",
        f.evidence
    );

    let on = format!(
        "{}{}{}",
        workload_only("{}"),
        istiod("1.25.2", Some("true")),
        nodes(&["v1.30.1"])
    );
    assert!(lifecycle(&on).is_empty());
}

#[test]
fn the_pod_annotation_wins_both_ways() {
    // Native mesh, pod opts out: classic, so the race is back.
    let native_mesh = format!("{}{}", istiod("1.31.0", None), nodes(&["v1.34.1"]));
    let yaml = format!(
        "{}{native_mesh}",
        workload_only(r#"{sidecar.istio.io/nativeSidecar: "false"}"#)
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "pod annotation sidecar.istio.io/nativeSidecar: \"false\""
    ));

    // Classic mesh, pod opts in: native.
    let classic_mesh = format!("{}{}", istiod("1.28.0", None), nodes(&["v1.31.0"]));
    let yaml = format!(
        "{}{classic_mesh}",
        workload_only(r#"{sidecar.istio.io/nativeSidecar: "true"}"#)
    );
    assert!(lifecycle(&yaml).is_empty());

    // Istio 1.23 did not read the annotation yet.
    let yaml = format!(
        "{}{}",
        workload_only(r#"{sidecar.istio.io/nativeSidecar: "true"}"#),
        istiod("1.23.1", None)
    );
    assert_eq!(lifecycle(&yaml).len(), 1);
}

#[test]
fn a_template_already_carrying_a_native_proxy_in_a_classic_mesh() {
    let yaml = format!("{}{}", mesh("{}", PRE_STOP_15), istiod("1.26.0", None)).replace(
        "      containers:\n",
        "      initContainers:\n      - {name: istio-proxy, image: \"docker.io/istio/proxyv2:1.26.0\", restartPolicy: Always}\n      containers:\n",
    );
    none(&yaml);
}

#[test]
fn nothing_known_assumes_the_documented_default_a_native_mesh() {
    let snap = snapshot(&workload_only("{}"));
    assert!(findings_of(&snap, CODE).is_empty());
    let p = snap.profile();
    assert!(
        p.assumptions
            .iter()
            .any(|a| a.starts_with("Kubernetes 1.34")),
        "{:?}",
        p.assumptions
    );
    // Flags state what the input lacks.
    let snap = snapshot_with(
        &workload_only("{}"),
        SnapshotOptions {
            kubernetes_version: Some("1.32".into()),
            ..SnapshotOptions::default()
        },
    );
    assert_eq!(findings_of(&snap, CODE).len(), 1);
    let snap = snapshot_with(
        &workload_only("{}"),
        SnapshotOptions {
            istio_version: Some("1.26".into()),
            ..SnapshotOptions::default()
        },
    );
    assert_eq!(findings_of(&snap, CODE).len(), 1);
}

/// Before Istio 1.8 a pod's proxy config cannot ask for the hold (1.7 read it only from the
/// injector's values, 1.5 and 1.6 had none), so the annotation fix would change nothing: the
/// startup race is not judged there. Found on christian-posta/istio-demos, whose istiod is
/// `pilot:1.5.0-beta.5`.
#[test]
fn the_startup_race_is_judged_where_a_hold_can_be_asked_for() {
    let found = |version: &str| {
        let snap = snapshot_with(
            &mesh("{}", NO_PRE_STOP),
            SnapshotOptions {
                istio_version: Some(version.into()),
                ..SnapshotOptions::default()
            },
        );
        findings_of(&snap, CODE).len()
    };
    assert_eq!(found("1.5"), 0);
    assert_eq!(found("1.7"), 0);
    assert_eq!(found("1.8"), 1);
}

#[test]
fn the_injector_values_hold_the_app() {
    let yaml = format!(
        "{}{}",
        mesh("{}", NO_PRE_STOP),
        r#"---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  values: '{"global":{"proxy":{"holdApplicationUntilProxyStarts":true}}}'
"#
    );
    none(&yaml);
}

// --- Gateways and ambient have no sidecar beside an app ------------------------------------------

#[test]
fn gateways_get_no_lifecycle_finding() {
    // The gateway Helm chart: the injection template `gateway`, an `image: auto` proxy.
    let chart = format!(
        "{NS}{}",
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istio-ingressgateway, namespace: shop}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  template:
    metadata:
      labels: {istio: ingressgateway, sidecar.istio.io/inject: "true"}
      annotations: {inject.istio.io/templates: gateway}
    spec:
      containers:
      - {name: istio-proxy, image: auto, lifecycle: {preStop: {exec: {command: [sleep, "30"]}}}}
"#
    );
    none(&chart);
    // Without the annotation: the image-auto proxy alone, or the istio label.
    none(&chart.replace(
        "annotations: {inject.istio.io/templates: gateway}",
        "annotations: {}",
    ));
    none(
        &chart
            .replace(
                "annotations: {inject.istio.io/templates: gateway}",
                "annotations: {}",
            )
            .replace("image: auto", "image: docker.io/istio/proxyv2:1.26.0"),
    );
    // A Gateway API gateway deployed by istiod.
    none(&format!(
        "{NS}{}",
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-istio, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: web}}
spec:
  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: web}}
  template:
    metadata: {labels: {gateway.networking.k8s.io/gateway-name: web, sidecar.istio.io/inject: "false"}}
    spec: {containers: [{name: istio-proxy, image: "docker.io/istio/proxyv2:1.26.0", args: [proxy, router]}]}
"#
    ));
}

#[test]
fn ambient_pods_have_no_sidecar() {
    let ambient_ns = mesh("{}", PRE_STOP_15).replace(
        "labels: {istio-injection: enabled}",
        "labels: {istio.io/dataplane-mode: ambient}",
    );
    none(&ambient_ns);
    let ambient_pod = mesh("{}", PRE_STOP_15)
        .replace("labels: {istio-injection: enabled}", "labels: {}")
        .replace(
            "labels: {app: orders}",
            "labels: {app: orders, istio.io/dataplane-mode: ambient}",
        );
    none(&ambient_pod);
}

/// A Deployment written out by `istioctl kube-inject` (the proxy a regular container after the
/// app, `sidecar.istio.io/status` set) in a namespace no webhook injects, as
/// stefanprodan/gitops-istio keeps its apps: `prod` is labelled `istio-injection: disabled`.
fn pre_injected(namespace_label: &str, proxy_first_with_hook: bool) -> String {
    let proxy = r#"{name: istio-proxy, image: "docker.io/istio/proxyv2:1.13.2", args: [proxy, sidecar], resources: {requests: {cpu: 10m}}}"#;
    let hooked = r#"{name: istio-proxy, image: "docker.io/istio/proxyv2:1.13.2", args: [proxy, sidecar], lifecycle: {postStart: {exec: {command: [pilot-agent, wait]}}}}"#;
    let app = r#"{name: backend, image: "ghcr.io/stefanprodan/podinfo:6.1.0", ports: [{containerPort: 8080}], volumeMounts: [{name: data, mountPath: /data}]}"#;
    let containers = if proxy_first_with_hook {
        format!("      - {hooked}\n      - {app}\n")
    } else {
        format!("      - {app}\n      - {proxy}\n")
    };
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{istio-injection: {namespace_label}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: orders, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: orders}}}}
  template:
    metadata:
      labels: {{app: orders}}
      annotations:
        sidecar.istio.io/status: '{{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"default"}}'
    spec:
      initContainers:
      - {{name: istio-init, image: "docker.io/istio/proxyv2:1.13.2", args: [istio-iptables]}}
      containers:
{containers}      volumes:
      - {{name: data, emptyDir: {{}}}}
{SERVICE}"#
    )
}

#[test]
fn a_proxy_written_into_the_template_is_held_by_the_template_not_the_annotation() {
    let yaml = pre_injected("disabled", false);
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(
        has_evidence(&f, "istio-proxy is written into the pod template"),
        "{:?}",
        f.evidence
    );
    assert!(!f.remediation.safe_to_auto_apply);
    assert_patch_consistent(&snap, &f);
    // The fix is the template the injector would write: the proxy first with its wait hook,
    // every other field of both containers kept; no annotation that would change nothing.
    let containers = &f.remediation.resource["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["name"], "istio-proxy");
    assert_eq!(
        containers[0]["lifecycle"],
        json!({"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}})
    );
    assert_eq!(
        containers[0]["resources"],
        json!({"requests": {"cpu": "10m"}})
    );
    assert_eq!(containers[1]["name"], "backend");
    assert_eq!(containers[1]["volumeMounts"][0]["mountPath"], "/data");
    assert!(
        f.remediation.resource["spec"]["template"]["metadata"]["annotations"]
            .get("proxy.istio.io/config")
            .is_none()
    );
    // With the fix applied, nothing is left to find.
    assert!(
        crate::analysis::test_support::findings_after_fix(&yaml, &f.remediation, CODE).is_empty()
    );

    // The annotation alone does not hold a written-in proxy: still a finding.
    let annotated = yaml.replace(
        "        sidecar.istio.io/status",
        "        proxy.istio.io/config: 'holdApplicationUntilProxyStarts: true'\n        sidecar.istio.io/status",
    );
    assert!(has_evidence(
        &only(&snapshot(&annotated)),
        "written into the pod template"
    ));
    // Already first with the hook: held.
    none(&pre_injected("disabled", true));
    // A namespace the webhook injects re-injects the pod with the annotation: the annotation fix.
    let f = only(&snapshot(&pre_injected("enabled", false)));
    assert!(!has_evidence(&f, "written into the pod template"));
    assert_eq!(
        proxy_config(&f)["holdApplicationUntilProxyStarts"],
        json!(true)
    );
}
