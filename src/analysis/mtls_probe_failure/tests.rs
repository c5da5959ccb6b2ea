use serde_json::json;

use crate::analysis::test_support::{
    assert_patch_consistent, findings_of, has_evidence, none_of, only_of, snapshot, snapshot_with,
};
use crate::analysis::{Code, Finding, Severity, WorkloadRef};
use crate::remediation::Action;
use crate::snapshot::{Snapshot, SnapshotOptions};

const NS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
"#;

const REWRITE_OFF: &str = r#"{sidecar.istio.io/rewriteAppHTTPProbers: "false"}"#;
const HEALTH_PORT_PROBE: &str = "{httpGet: {path: /healthz, port: 8081}}";
const SERVING_PORT_PROBE: &str = "{httpGet: {path: /healthz, port: 8080}}";

/// The namespace, a Deployment `api` with pod-template `annotations` and a readiness `probe`
/// (flow mappings) on a container that serves 8080 and has a health port 8081, the Service
/// `api` (80 → 8080), and `extra` documents.
fn mesh(annotations: &str, probe: &str, extra: &str) -> String {
    format!(
        r#"{NS}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}, annotations: {annotations}}}
    spec:
      containers:
      - name: app
        image: "example/api:1"
        ports: [{{name: http, containerPort: 8080}}, {{name: health, containerPort: 8081}}]
        readinessProbe: {probe}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec: {{selector: {{app: api}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
{extra}"#
    )
}

fn peer_authentication(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )
}

fn strict() -> String {
    peer_authentication("shop", "default", "{mtls: {mode: STRICT}}")
}

const INJECTOR_REWRITE_OFF: &str = r#"---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  values: '{"sidecarInjectorWebhook":{"rewriteAppHTTPProbe":false}}'
  config: "policy: enabled"
"#;

const CODE: Code = Code::MtlsProbeFailure;

fn only(snap: &Snapshot) -> Finding {
    only_of(snap, CODE)
}

fn none(yaml: &str) {
    none_of(yaml, CODE)
}

/// With `f`'s fix applied to `yaml`, nothing of this code is left to find.
fn assert_fix_leaves_nothing(yaml: &str, f: &Finding) {
    let left = crate::analysis::test_support::findings_after_fix(yaml, &f.remediation, CODE);
    assert!(left.is_empty(), "{left:?}");
}

fn annotations(f: &Finding) -> &serde_json::Value {
    &f.remediation.resource["spec"]["template"]["metadata"]["annotations"]
}

#[test]
fn a_probe_on_its_own_port_is_excluded_from_capture() {
    let snap = snapshot(&mesh(REWRITE_OFF, HEALTH_PORT_PROBE, &strict()));
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.service.as_deref(), Some("api"));
    assert_eq!(
        f.workload,
        Some(WorkloadRef {
            kind: "Deployment".into(),
            name: "api".into()
        })
    );
    assert!(has_evidence(
        &f,
        "probe rewrite is off: pod annotation sidecar.istio.io/rewriteAppHTTPProbers: \"false\""
    ));
    assert!(has_evidence(
        &f,
        "port 8081: app.readinessProbe — STRICT mTLS from PeerAuthentication shop/default"
    ));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert!(!r.safe_to_auto_apply, "it rolls the pods");
    assert_eq!(
        (r.target.kind.as_str(), r.target.name.as_str()),
        ("Deployment", "api")
    );
    assert_eq!(
        *annotations(&f),
        json!({
            "sidecar.istio.io/rewriteAppHTTPProbers": "false",
            "traffic.sidecar.istio.io/excludeInboundPorts": "8081",
        }),
        "probe rewrite stays off: the user chose it"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn excluded_ports_are_merged_in_the_users_order() {
    let snap = snapshot(&mesh(
        r#"{sidecar.istio.io/rewriteAppHTTPProbers: "false", traffic.sidecar.istio.io/excludeInboundPorts: "9100, 3306"}"#,
        HEALTH_PORT_PROBE,
        &strict(),
    ));
    let f = only(&snap);
    assert!(f.remediation.patch.as_ref().unwrap().contains(&json!({
        "op": "test",
        "path": "/spec/template/metadata/annotations/traffic.sidecar.istio.io~1excludeInboundPorts",
        "value": "9100, 3306",
    })));
    assert_eq!(
        annotations(&f)["traffic.sidecar.istio.io/excludeInboundPorts"],
        "9100,3306,8081"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_probe_on_the_serving_port_re_enables_probe_rewrite() {
    let snap = snapshot(&mesh(REWRITE_OFF, SERVING_PORT_PROBE, &strict()));
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "port 8080 also serves traffic: excluding it from capture would switch mTLS off for real requests"
    ));
    let r = &f.remediation;
    assert!(!r.safe_to_auto_apply);
    assert!(r.patch.as_ref().unwrap().contains(&json!({
        "op": "replace",
        "path": "/spec/template/metadata/annotations/sidecar.istio.io~1rewriteAppHTTPProbers",
        "value": "true",
    })));
    assert_eq!(
        *annotations(&f),
        json!({"sidecar.istio.io/rewriteAppHTTPProbers": "true"}),
        "the serving port is never excluded"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_named_probe_port_is_resolved() {
    let snap = snapshot(&mesh(
        REWRITE_OFF,
        "{httpGet: {path: /healthz, port: health}}",
        &strict(),
    ));
    let f = only(&snap);
    assert_eq!(
        annotations(&f)["traffic.sidecar.istio.io/excludeInboundPorts"],
        "8081"
    );
}

#[test]
fn permissive_or_no_policy_is_fine() {
    none(&mesh(
        REWRITE_OFF,
        HEALTH_PORT_PROBE,
        &peer_authentication("shop", "default", "{mtls: {mode: PERMISSIVE}}"),
    ));
    none(&mesh(REWRITE_OFF, HEALTH_PORT_PROBE, ""));
}

#[test]
fn probe_rewrite_on_by_default_is_fine() {
    none(&mesh("{}", HEALTH_PORT_PROBE, &strict()));
    none(&mesh(
        r#"{sidecar.istio.io/rewriteAppHTTPProbers: "true"}"#,
        SERVING_PORT_PROBE,
        &strict(),
    ));
}

#[test]
fn probe_rewrite_off_mesh_wide() {
    let snap = snapshot(&mesh(
        "{}",
        SERVING_PORT_PROBE,
        &format!("{}{INJECTOR_REWRITE_OFF}", strict()),
    ));
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "probe rewrite is off mesh-wide (sidecarInjectorWebhook.rewriteAppHTTPProbe: false)"
    ));
    assert_eq!(
        *annotations(&f),
        json!({"sidecar.istio.io/rewriteAppHTTPProbers": "true"})
    );
    assert_patch_consistent(&snap, &f);

    // A pod that turns it back on is fine.
    none(&mesh(
        r#"{sidecar.istio.io/rewriteAppHTTPProbers: "true"}"#,
        SERVING_PORT_PROBE,
        &format!("{}{INJECTOR_REWRITE_OFF}", strict()),
    ));
}

#[test]
fn a_pod_template_without_annotations_gets_them() {
    let yaml = mesh(
        "{}",
        HEALTH_PORT_PROBE,
        &format!("{}{INJECTOR_REWRITE_OFF}", strict()),
    )
    .replace(", annotations: {}", "");
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(
        *annotations(&f),
        json!({"traffic.sidecar.istio.io/excludeInboundPorts": "8081"})
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_workload_port_level_disable_overrides_namespace_strict() {
    let workload_policy = peer_authentication(
        "shop",
        "api-health",
        "{selector: {matchLabels: {app: api}}, portLevelMtls: {\"8081\": {mode: DISABLE}}}",
    );
    none(&mesh(
        REWRITE_OFF,
        HEALTH_PORT_PROBE,
        &format!("{}{workload_policy}", strict()),
    ));
    // The port-level setting is for 8081 only: a probe on 8080 still meets STRICT.
    let snap = snapshot(&mesh(
        REWRITE_OFF,
        SERVING_PORT_PROBE,
        &format!("{}{workload_policy}", strict()),
    ));
    only(&snap);
}

#[test]
fn a_workload_policy_that_selects_other_pods_does_not_apply() {
    let other = peer_authentication(
        "shop",
        "other",
        "{selector: {matchLabels: {app: other}}, mtls: {mode: PERMISSIVE}}",
    );
    let snap = snapshot(&mesh(
        REWRITE_OFF,
        HEALTH_PORT_PROBE,
        &format!("{}{other}", strict()),
    ));
    only(&snap);
}

#[test]
fn root_namespace_strict_applies() {
    let root = peer_authentication("istio-system", "default", "{mtls: {mode: STRICT}}");
    let snap = snapshot(&mesh(REWRITE_OFF, HEALTH_PORT_PROBE, &root));
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "STRICT mTLS from PeerAuthentication istio-system/default"
    ));
    assert_patch_consistent(&snap, &f);

    // The namespace's own policy wins over the root one.
    none(&mesh(
        REWRITE_OFF,
        HEALTH_PORT_PROBE,
        &format!(
            "{root}{}",
            peer_authentication("shop", "default", "{mtls: {mode: PERMISSIVE}}")
        ),
    ));
}

#[test]
fn a_tcp_only_probe_is_a_warning() {
    let snap = snapshot(&mesh(REWRITE_OFF, "{tcpSocket: {port: 8081}}", &strict()));
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Warning);
    assert!(has_evidence(&f, "passes even when the app is down"));
    assert_eq!(
        annotations(&f)["traffic.sidecar.istio.io/excludeInboundPorts"],
        "8081"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_grpc_probe_is_an_error() {
    let snap = snapshot(&mesh(REWRITE_OFF, "{grpc: {port: 8081}}", &strict()));
    assert_eq!(only(&snap).severity, Severity::Error);
}

#[test]
fn an_already_excluded_port_is_fine() {
    none(&mesh(
        r#"{sidecar.istio.io/rewriteAppHTTPProbers: "false", traffic.sidecar.istio.io/excludeInboundPorts: "9100,8081"}"#,
        HEALTH_PORT_PROBE,
        &strict(),
    ));
    // Not in includeInboundPorts: not captured either.
    none(&mesh(
        r#"{sidecar.istio.io/rewriteAppHTTPProbers: "false", traffic.sidecar.istio.io/includeInboundPorts: "8080"}"#,
        HEALTH_PORT_PROBE,
        &strict(),
    ));
}

#[test]
fn workloads_without_a_sidecar_are_not_checked() {
    none(
        &mesh(REWRITE_OFF, HEALTH_PORT_PROBE, &strict())
            .replace("labels: {istio-injection: enabled}", "labels: {}"),
    );
}

#[test]
fn a_workload_strict_policy_overrides_a_permissive_namespace() {
    let snap = snapshot(&mesh(
        REWRITE_OFF,
        HEALTH_PORT_PROBE,
        &format!(
            "{}{}",
            peer_authentication("shop", "default", "{mtls: {mode: PERMISSIVE}}"),
            peer_authentication(
                "shop",
                "api-strict",
                "{selector: {matchLabels: {app: api}}, mtls: {mode: STRICT}}"
            ),
        ),
    ));
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "STRICT mTLS from PeerAuthentication shop/api-strict"
    ));
    assert_patch_consistent(&snap, &f);
}

// --- Gateways and ambient: no sidecar in front of an app -----------------------------------------

#[test]
fn gateways_and_ambient_workloads_are_not_checked() {
    let sidecar = mesh(REWRITE_OFF, HEALTH_PORT_PROBE, &strict());
    only(&snapshot(&sidecar));
    // Ambient: the CNI lets the kubelet's probes through (they are not captured).
    none(&sidecar.replace(
        "labels: {istio-injection: enabled}",
        "labels: {istio.io/dataplane-mode: ambient}",
    ));
    // A gateway deployed by istiod for a Gateway API Gateway.
    let gateway = sidecar.replace(
        "labels: {app: api}, annotations",
        "labels: {app: api, gateway.networking.k8s.io/gateway-name: api}, annotations",
    );
    assert!(gateway.contains("gateway-name"));
    none(&gateway);
}

/// A template `istioctl kube-inject` wrote keeps the probes it rewrote: `/app-health/<container>/
/// readyz` on the proxy's 15020, which is never captured. With probe rewrite off (the annotation
/// kube-inject leaves, or the injector's setting today) and STRICT mTLS, nothing fails there.
#[test]
fn a_probe_already_rewritten_to_the_proxy_is_fine() {
    none(&mesh(
        REWRITE_OFF,
        "{httpGet: {path: /app-health/app/readyz, port: 15020}}",
        &strict(),
    ));
    // The same probe on the app's own port still fails.
    let f = only(&snapshot(&mesh(REWRITE_OFF, HEALTH_PORT_PROBE, &strict())));
    assert!(has_evidence(&f, "port 8081"));
}

/// microservices-demo's adservice as `istioctl kube-inject` writes it with probe rewrite off
/// (the annotation kept, gRPC probes on the serving port, the proxy after the app), in a
/// namespace no webhook injects, under STRICT mTLS.
fn pre_injected(namespace_label: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{istio-injection: {namespace_label}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: adservice, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: adservice}}}}
  template:
    metadata:
      labels: {{app: adservice}}
      annotations:
        sidecar.istio.io/rewriteAppHTTPProbers: "false"
        sidecar.istio.io/status: '{{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"default"}}'
    spec:
      initContainers:
      - {{name: istio-init, image: "docker.io/istio/proxyv2:1.28.0", args: [istio-iptables, -p, "15001", -b, "*"]}}
      containers:
      - name: server
        image: "example/adservice:v0.10.6"
        ports: [{{containerPort: 9555}}]
        readinessProbe: {{grpc: {{port: 9555, service: null}}, periodSeconds: 15}}
        livenessProbe: {{grpc: {{port: 9555, service: null}}, initialDelaySeconds: 20}}
      - name: istio-proxy
        image: "docker.io/istio/proxyv2:1.28.0"
        args: [proxy, sidecar]
        env: [{{name: ISTIO_META_APP_CONTAINERS, value: server}}]
---
apiVersion: v1
kind: Service
metadata: {{name: adservice, namespace: shop}}
spec: {{selector: {{app: adservice}}, ports: [{{name: grpc, port: 9555, targetPort: 9555}}]}}
{}"#,
        strict()
    )
}

/// The annotation acts only when a pod is injected: for a proxy written into the template, the
/// fix is the template the injector writes with probe rewrite on (checked against `istioctl
/// kube-inject` on microservices-demo: the same probes and the same `ISTIO_KUBE_APP_PROBERS`).
#[test]
fn a_proxy_written_into_the_template_gets_its_probes_rewritten_in_the_template() {
    let yaml = pre_injected("disabled");
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Error);
    assert!(
        has_evidence(&f, "istio-proxy is written into the pod template"),
        "{:?}",
        f.evidence
    );
    assert!(!f.remediation.safe_to_auto_apply);
    assert_patch_consistent(&snap, &f);
    let resource = f.remediation.resource.to_value();
    let containers = &resource["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0]["readinessProbe"],
        json!({"periodSeconds": 15, "httpGet": {"path": "/app-health/server/readyz", "port": 15020}})
    );
    assert_eq!(
        containers[0]["livenessProbe"]["httpGet"]["path"],
        "/app-health/server/livez"
    );
    assert_eq!(containers[1]["env"][1]["name"], "ISTIO_KUBE_APP_PROBERS");
    assert_eq!(
        containers[1]["env"][1]["value"],
        r#"{"/app-health/server/livez":{"grpc":{"port":9555,"service":null}},"/app-health/server/readyz":{"grpc":{"port":9555,"service":null}}}"#
    );
    assert_eq!(
        resource["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/rewriteAppHTTPProbers"],
        "true"
    );
    // With the fix applied, nothing is left to find.
    assert_fix_leaves_nothing(&yaml, &f);

    // Where the webhook injects the pod again, it does so with the annotation: the annotation fix.
    let f = only(&snapshot(&pre_injected("enabled")));
    assert!(!has_evidence(&f, "written into the pod template"));
    let resource = f.remediation.resource.to_value();
    assert_eq!(
        resource["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"],
        9555
    );
}

/// The same template also gets `sidecar-lifecycle`'s fix (the proxy moved first): both rebuild
/// the containers from what they are planned on, so together they give one template in either
/// order, the probes rewritten and the proxy first.
#[test]
fn the_probe_rewrite_and_the_proxy_moved_first_compose_in_either_order() {
    let snap = snapshot(&pre_injected("disabled"));
    let probes = only(&snap);
    let lifecycle = crate::analysis::test_support::only_of(&snap, Code::SidecarLifecycle);
    let raw = snap
        .raw_object(&probes.remediation.target)
        .expect("target")
        .clone();
    let patched = |edits: Vec<crate::remediation::Edit>| {
        let ops = crate::remediation::plan_patch(&raw, &edits).expect("plans");
        let mut doc = raw.clone();
        crate::remediation::apply(&mut doc, &ops).expect("applies");
        doc
    };
    let one = patched(
        [&probes, &lifecycle]
            .iter()
            .flat_map(|f| f.remediation.edits.clone())
            .collect(),
    );
    let other = patched(
        [&lifecycle, &probes]
            .iter()
            .flat_map(|f| f.remediation.edits.clone())
            .collect(),
    );
    assert_eq!(one, other);
    let containers = &one["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["name"], "istio-proxy");
    assert_eq!(
        containers[0]["lifecycle"]["postStart"]["exec"]["command"],
        json!(["pilot-agent", "wait"])
    );
    assert_eq!(containers[0]["env"][1]["name"], "ISTIO_KUBE_APP_PROBERS");
    assert_eq!(containers[1]["readinessProbe"]["httpGet"]["port"], 15020);
}

/// `istioctl kube-inject` with native sidecars writes `istio-proxy` among the init containers
/// (`restartPolicy: Always`): the agent is told the probes there, and the app's probes are
/// rewritten in the containers (checked against kube-inject's output on microservices-demo).
#[test]
fn a_native_sidecar_written_into_the_template_is_told_the_probes_among_the_init_containers() {
    let classic = pre_injected("disabled");
    let proxy = r#"      - name: istio-proxy
        image: "docker.io/istio/proxyv2:1.28.0"
        args: [proxy, sidecar]
        env: [{name: ISTIO_META_APP_CONTAINERS, value: server}]
"#;
    assert!(classic.contains(proxy));
    let yaml = classic.replace(proxy, "").replace(
        "      containers:\n",
        "      - name: istio-proxy\n        restartPolicy: Always\n        image: \"docker.io/istio/proxyv2:1.28.0\"\n        env: [{name: ISTIO_META_APP_CONTAINERS, value: server}]\n      containers:\n",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "istio-proxy is written into the pod template"
    ));
    assert_patch_consistent(&snap, &f);
    let resource = f.remediation.resource.to_value();
    let spec = &resource["spec"]["template"]["spec"];
    assert_eq!(spec["initContainers"][1]["name"], "istio-proxy");
    assert_eq!(
        spec["initContainers"][1]["env"][1]["value"],
        r#"{"/app-health/server/livez":{"grpc":{"port":9555,"service":null}},"/app-health/server/readyz":{"grpc":{"port":9555,"service":null}}}"#
    );
    assert_eq!(
        spec["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/app-health/server/readyz"
    );
    assert_eq!(spec["containers"].as_array().map(Vec::len), Some(1));
    assert_fix_leaves_nothing(&yaml, &f);
}

/// The rebuilt containers are patched as the least edits: each probe replaced, the proxy's
/// variable appended, nothing else of the list written or pinned. So a reviewer (and `fix
/// --diff`) sees only those, and a later change elsewhere in the containers (an image) does not
/// stop the rollback.
#[test]
fn the_template_fix_patches_only_the_probes_and_the_variable() {
    let snap = snapshot(&pre_injected("disabled"));
    let f = only(&snap);
    let ops = f.remediation.operations();
    let paths: Vec<(&str, &str)> = ops
        .iter()
        .map(|op| {
            (
                op["op"].as_str().unwrap_or_default(),
                op["path"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("test", "/spec/template/spec/containers/0/readinessProbe"),
            ("replace", "/spec/template/spec/containers/0/readinessProbe"),
            ("test", "/spec/template/spec/containers/0/livenessProbe"),
            ("replace", "/spec/template/spec/containers/0/livenessProbe"),
            ("test", "/spec/template/spec/containers/1/env"),
            ("add", "/spec/template/spec/containers/1/env/1"),
            (
                "test",
                "/spec/template/metadata/annotations/sidecar.istio.io~1rewriteAppHTTPProbers"
            ),
            (
                "replace",
                "/spec/template/metadata/annotations/sidecar.istio.io~1rewriteAppHTTPProbers"
            ),
        ]
    );
    let before = snap
        .raw_object(&f.remediation.target)
        .expect("target")
        .clone();
    let mut live = before.clone();
    crate::remediation::apply(&mut live, &ops).expect("applies");
    let back = crate::remediation::rollback_patch(&before, &ops).expect("rollback");
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/adservice:v2");
    crate::remediation::apply(&mut live, &back).expect("rolls back past the image change");
    let mut expected = before;
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/adservice:v2");
    assert_eq!(live, expected);
}

/// The kubelet resolves a probe's named port among its own container's ports: a name only
/// another container declares is a probe that never reaches anything, not an mTLS failure (and
/// the injector would not rewrite it either).
#[test]
fn a_named_probe_port_is_its_own_containers() {
    let own = mesh(
        REWRITE_OFF,
        "{httpGet: {path: /healthz, port: health}}",
        &strict(),
    );
    assert!(has_evidence(&only(&snapshot(&own)), "port 8081"));
    let elsewhere = own
        .replace(
            "ports: [{name: http, containerPort: 8080}, {name: health, containerPort: 8081}]",
            "ports: [{name: http, containerPort: 8080}]",
        )
        .replace(
            "        readinessProbe: {httpGet: {path: /healthz, port: health}}\n",
            "        readinessProbe: {httpGet: {path: /healthz, port: health}}\n      - name: helper\n        image: \"example/helper:1\"\n        ports: [{name: health, containerPort: 8081}]\n",
        );
    assert!(elsewhere.contains("name: helper"), "{elsewhere}");
    none(&elsewhere);
}

/// `mesh` with `lifecycle` on the app container (a flow mapping), beside the probe `probe`.
fn mesh_with_hooks(annotations: &str, probe: &str, lifecycle: &str, extra: &str) -> String {
    let yaml = mesh(annotations, probe, extra);
    let probe_line = format!("        readinessProbe: {probe}\n");
    assert!(yaml.contains(&probe_line));
    yaml.replace(
        &probe_line,
        &format!("{probe_line}        lifecycle: {lifecycle}\n"),
    )
}

fn istio(version: &str) -> SnapshotOptions {
    SnapshotOptions {
        istio_version: Some(version.into()),
        ..SnapshotOptions::default()
    }
}

/// The kubelet sends a container's HTTP lifecycle hooks as it sends its probes: to the pod's
/// address, where the sidecar asks for a mesh certificate. A failing postStart kills the
/// container; Istio's injector rewrites hooks with the probes since 1.25, so the fixes are the
/// same as a probe's.
#[test]
fn an_http_lifecycle_hook_on_a_strict_port_is_judged_as_a_probe_is() {
    const EXEC_PROBE: &str = "{exec: {command: [/bin/true]}}";
    // The mesh under STRICT mTLS with `annotations` on the template, `probe` and `hooks`.
    let with = |annotations: &str, probe: &str, hooks: &str| {
        mesh_with_hooks(annotations, probe, hooks, &strict())
    };
    // postStart on the serving port: the container is killed; probe rewrite is re-enabled.
    let f = only(&snapshot(&with(
        REWRITE_OFF,
        EXEC_PROBE,
        "{postStart: {httpGet: {path: /warm, port: http}}}",
    )));
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message.starts_with("lifecycle hooks of Deployment api"),
        "{}",
        f.message
    );
    assert!(has_evidence(&f, "port 8080: app.lifecycle.postStart"));
    assert!(has_evidence(&f, "makes the kubelet kill the container"));
    assert_eq!(
        annotations(&f)["sidecar.istio.io/rewriteAppHTTPProbers"],
        "true"
    );

    // preStop on a port of its own, beside a failing probe: the port is kept out of capture,
    // and the finding is still an error for the probe.
    let pre_stop = "{preStop: {httpGet: {path: /drain, port: 8081}}}";
    let f = only(&snapshot(&with(REWRITE_OFF, SERVING_PORT_PROBE, pre_stop)));
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.starts_with("probes and lifecycle hooks of"));
    assert!(has_evidence(&f, "port 8081: app.lifecycle.preStop"));
    assert!(has_evidence(&f, "without the app's own shutdown step"));
    assert_eq!(
        annotations(&f)["traffic.sidecar.istio.io/excludeInboundPorts"],
        "8081"
    );
    // A preStop hook alone lets the pod serve: a warning.
    let f = only(&snapshot(&with(REWRITE_OFF, EXEC_PROBE, pre_stop)));
    assert_eq!(f.severity, Severity::Warning);

    // Exec and sleep hooks run past no proxy; with rewrite on the injector rewrites the hook.
    none(&with(
        REWRITE_OFF,
        EXEC_PROBE,
        "{postStart: {exec: {command: [warm]}}, preStop: {sleep: {seconds: 5}}}",
    ));
    none(&with(
        "{}",
        EXEC_PROBE,
        "{postStart: {httpGet: {path: /warm, port: 8080}}}",
    ));
}

/// Before Istio 1.25 the injector left hooks as written whatever the setting, and its agent
/// serves no `/app-lifecycle/`: no fix meshmedic can write, so hooks are not judged there.
#[test]
fn lifecycle_hooks_are_judged_from_istio_1_25() {
    let yaml = mesh_with_hooks(
        REWRITE_OFF,
        "{exec: {command: [/bin/true]}}",
        "{postStart: {httpGet: {path: /warm, port: 8080}}}",
        &strict(),
    );
    let found = |version: &str| findings_of(&snapshot_with(&yaml, istio(version)), CODE).len();
    assert_eq!(found("1.24"), 0);
    assert_eq!(found("1.25"), 1);
}

/// A proxy written into the template: its hooks are rewritten in the template beside its probes
/// (as `istioctl kube-inject` writes them with probe rewrite on: `/app-lifecycle/<container>/…`
/// on the agent's port, a TCP hook made an HTTP GET, the hooks as they were in
/// `ISTIO_KUBE_APP_PROBERS`), when the proxy image written there serves them.
#[test]
fn a_proxy_written_into_the_template_gets_its_hooks_rewritten_when_its_agent_serves_them() {
    let yaml = pre_injected("disabled").replace(
        "        livenessProbe: {grpc: {port: 9555, service: null}, initialDelaySeconds: 20}\n",
        "        livenessProbe: {grpc: {port: 9555, service: null}, initialDelaySeconds: 20}\n        lifecycle:\n          postStart: {tcpSocket: {port: 9555}}\n          preStop: {httpGet: {path: /drain, port: 9555, scheme: HTTPS}}\n",
    );
    assert!(yaml.contains("preStop"));
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(f.message.starts_with("probes and lifecycle hooks of"));
    assert!(has_evidence(&f, "server.lifecycle.preStop"));
    // The TCP hook is one the kubelet does not run: not judged, but rewritten as the injector
    // does.
    assert!(!has_evidence(&f, "server.lifecycle.postStart"));
    assert!(has_evidence(&f, "/app-lifecycle/<container>/prestopz"));
    assert_patch_consistent(&snap, &f);
    let resource = f.remediation.resource.to_value();
    let containers = &resource["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0]["lifecycle"],
        json!({
            "postStart": {"httpGet": {"path": "/app-lifecycle/server/poststartz", "port": 15020}},
            "preStop": {"httpGet": {"path": "/app-lifecycle/server/prestopz", "port": 15020, "scheme": "HTTP"}},
        })
    );
    assert_eq!(
        containers[1]["env"][1]["value"],
        concat!(
            r#"{"/app-health/server/livez":{"grpc":{"port":9555,"service":null}},"#,
            r#""/app-health/server/readyz":{"grpc":{"port":9555,"service":null}},"#,
            r#""/app-lifecycle/server/poststartz":{"tcpSocket":{"port":9555}},"#,
            r#""/app-lifecycle/server/prestopz":{"httpGet":{"path":"/drain","port":9555,"scheme":"HTTPS"}}}"#
        )
    );
    assert_fix_leaves_nothing(&yaml, &f);

    // A 1.24 proxy written in: its agent serves no hooks; the probes alone are rewritten.
    let old = yaml.replace("proxyv2:1.28.0", "proxyv2:1.24.3");
    let f = only(&snapshot(&old));
    assert!(f.message.starts_with("probes of"), "{}", f.message);
    let resource = f.remediation.resource.to_value();
    let containers = &resource["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0]["lifecycle"]["preStop"]["httpGet"]["path"],
        "/drain"
    );
    assert!(
        !containers[1]["env"][1]["value"]
            .as_str()
            .unwrap_or_default()
            .contains("app-lifecycle")
    );
}
