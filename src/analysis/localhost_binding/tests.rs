use serde_json::{Value, json};

use super::loopback_binds;
use crate::analysis::test_support::{
    assert_patch_consistent, has_evidence, none_of, only_of, snapshot,
};
use crate::analysis::{Code, Finding, Severity, WorkloadRef};
use crate::remediation::Action;
use crate::snapshot::Snapshot;

const NS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
"#;

/// The namespace, a Deployment `api` whose only container is `container` (a flow mapping), and
/// the Service `api` with `ports` (a flow sequence).
fn mesh_with(container: &str, ports: &str) -> String {
    format!(
        r#"{NS}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api, version: v1}}}}
    spec:
      containers:
      - {container}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec: {{selector: {{app: api}}, ports: {ports}}}
"#
    )
}

/// One container (image python) with these `args`, declaring port 8080; Service 80 → 8080.
fn mesh(args: &str) -> String {
    mesh_with(
        &format!(
            r#"{{name: app, image: "python:3.12", args: {args}, ports: [{{containerPort: 8080}}]}}"#
        ),
        "[{name: http, port: 80, targetPort: 8080}]",
    )
}

fn with(base: &str, extra: &str) -> String {
    format!("{base}---\n{extra}")
}

const CODE: Code = Code::LocalhostBinding;

fn only(snap: &Snapshot) -> Finding {
    only_of(snap, CODE)
}

fn none(yaml: &str) {
    none_of(yaml, CODE)
}

fn listener(port: i32, endpoint: &str) -> Value {
    json!({
        "port": {"number": port, "protocol": "HTTP", "name": format!("http-{port}")},
        "defaultEndpoint": endpoint,
    })
}

/// Asserts a new Sidecar `api-localhost` selecting the workload with exactly these listeners.
fn assert_new_sidecar(f: &Finding, ingress: Value) {
    let r = &f.remediation;
    assert_eq!(r.action, Action::Create);
    assert!(r.safe_to_auto_apply);
    assert!(r.patch.is_none());
    assert_eq!(
        (
            r.target.kind.as_str(),
            r.target.namespace.as_str(),
            r.target.name.as_str()
        ),
        ("Sidecar", "shop", "api-localhost")
    );
    assert_eq!(
        r.resource["metadata"]["labels"],
        json!({"app.kubernetes.io/managed-by": "meshmedic"})
    );
    assert_eq!(
        r.resource["spec"]["workloadSelector"],
        json!({"labels": {"app": "api"}}),
        "the controller's selector, not every pod label"
    );
    assert_eq!(r.resource["spec"]["ingress"], ingress);
}

#[test]
fn host_flag_with_port_flag() {
    let snap = snapshot(&mesh(
        r#"[uvicorn, "main:app", --host, 127.0.0.1, --port, "8080"]"#,
    ));
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
        "port 8080 is bound to loopback (container app: argument \"--host 127.0.0.1\")"
    ));
    assert!(has_evidence(&f, "bind 0.0.0.0"));
    assert_new_sidecar(&f, json!([listener(8080, "127.0.0.1:8080")]));
    assert_patch_consistent(&snap, &f);
}

#[test]
fn bind_equals_localhost_with_port() {
    let snap = snapshot(&mesh(r#"[server, "--bind=localhost:8080"]"#));
    let f = only(&snap);
    assert!(has_evidence(&f, "argument \"--bind=localhost:8080\""));
    assert_new_sidecar(&f, json!([listener(8080, "127.0.0.1:8080")]));
}

#[test]
fn gunicorn_short_bind_flag() {
    let snap = snapshot(&mesh_with(
        r#"{name: app, image: "python:3.12", command: [gunicorn, -b, "127.0.0.1:8000", "app:app"]}"#,
        "[{name: http, port: 80, targetPort: 8000}]",
    ));
    let f = only(&snap);
    assert!(has_evidence(&f, "port 8000 is bound to loopback"));
    assert_new_sidecar(&f, json!([listener(8000, "127.0.0.1:8000")]));
}

#[test]
fn host_env_var_uses_the_declared_port() {
    let snap = snapshot(&mesh_with(
        r#"{name: app, image: "node:20", env: [{name: HOST, value: 127.0.0.1}], ports: [{containerPort: 8080}]}"#,
        "[{name: http, port: 80, targetPort: 8080}]",
    ));
    let f = only(&snap);
    assert!(has_evidence(&f, "env HOST=127.0.0.1"));
    assert_new_sidecar(&f, json!([listener(8080, "127.0.0.1:8080")]));
}

#[test]
fn ipv6_loopback_gets_an_ipv6_endpoint() {
    let snap = snapshot(&mesh(r#"[server, --listen, "[::1]:8080"]"#));
    let f = only(&snap);
    assert_new_sidecar(&f, json!([listener(8080, "[::1]:8080")]));
}

#[test]
fn all_interfaces_is_fine() {
    none(&mesh(
        r#"[uvicorn, "main:app", --host, 0.0.0.0, --port, "8080"]"#,
    ));
    none(&mesh(r#"[server, "--bind=0.0.0.0:8080"]"#));
    none(&mesh(r#"[server]"#));
}

#[test]
fn a_loopback_port_no_service_targets_is_fine() {
    none(&mesh(
        r#"[server, --host, 0.0.0.0, --port, "8080", --metrics-listen, "127.0.0.1:9090"]"#,
    ));
}

#[test]
fn other_targeted_ports_keep_going_to_the_pod_ip() {
    let snap = snapshot(&mesh_with(
        r#"{name: app, image: "python:3.12", args: [uvicorn, "main:app", --host, 127.0.0.1, --port, "8080"], ports: [{containerPort: 8080}, {containerPort: 9090}]}"#,
        "[{name: http, port: 80, targetPort: 8080}, {name: http-admin, port: 9090, targetPort: 9090}]",
    ));
    let f = only(&snap);
    assert!(f.message.contains("(ports 8080)"), "{}", f.message);
    assert_new_sidecar(
        &f,
        json!([
            listener(8080, "127.0.0.1:8080"),
            listener(9090, "0.0.0.0:9090"),
        ]),
    );
}

/// Found on GoogleCloudPlatform/istio-samples (grpc-greeter-go: `--address=127.0.0.1:8080`
/// behind a port named `grpc`): an `HTTP` listener's cluster speaks HTTP/1.1 to the app, which
/// a gRPC server refuses, so the fix would not have brought traffic back.
#[test]
fn grpc_and_h2c_ports_get_listeners_that_speak_http2() {
    for (port_name, app_protocol, protocol) in [
        ("grpc", None, "GRPC"),
        ("web", Some("grpc-web"), "GRPC-Web"),
        ("http2-api", None, "HTTP2"),
        ("api", Some("kubernetes.io/h2c"), "HTTP2"),
        ("http-api", None, "HTTP"),
    ] {
        let app_protocol = app_protocol.map_or(String::new(), |p| format!(", appProtocol: {p}"));
        let snap = snapshot(&mesh_with(
            r#"{name: app, image: "greeter", args: [--address=127.0.0.1:8080], ports: [{containerPort: 8080}]}"#,
            &format!("[{{name: {port_name}, port: 8080{app_protocol}}}]"),
        ));
        let f = only(&snap);
        assert_eq!(
            f.remediation.resource["spec"]["ingress"],
            json!([{
                "port": {
                    "number": 8080,
                    "protocol": protocol,
                    "name": format!("{}-8080", protocol.to_ascii_lowercase()),
                },
                "defaultEndpoint": "127.0.0.1:8080",
            }]),
            "port {port_name}"
        );
    }
}

#[test]
fn a_tcp_port_gets_a_tcp_listener() {
    let snap = snapshot(&mesh_with(
        r#"{name: app, image: "redis:7", args: [--bind, 127.0.0.1, --port, "6379"], ports: [{containerPort: 6379}]}"#,
        "[{name: tcp-redis, port: 6379}]",
    ));
    let f = only(&snap);
    assert_eq!(
        f.remediation.resource["spec"]["ingress"],
        json!([{
            "port": {"number": 6379, "protocol": "TCP", "name": "tcp-6379"},
            "defaultEndpoint": "127.0.0.1:6379",
        }])
    );
}

#[test]
fn the_namespace_default_sidecar_egress_is_copied() {
    let yaml = with(
        &mesh(r#"[uvicorn, "main:app", --host, 127.0.0.1, --port, "8080"]"#),
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec:\n  egress: [{hosts: [\"./*\", \"istio-system/*\"]}]\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "egress copied from Sidecar shop/default, which this Sidecar replaces for the workload"
    ));
    assert_new_sidecar(&f, json!([listener(8080, "127.0.0.1:8080")]));
    let spec = &f.remediation.resource["spec"];
    assert_eq!(
        spec["egress"],
        json!([{"hosts": ["./*", "istio-system/*"]}])
    );
    assert_eq!(
        spec["outboundTrafficPolicy"],
        json!({"mode": "REGISTRY_ONLY"})
    );
}

#[test]
fn an_existing_workload_sidecar_is_patched() {
    let yaml = with(
        &mesh(r#"[uvicorn, "main:app", --host, 127.0.0.1, --port, "8080"]"#),
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: api, namespace: shop}\nspec:\n  workloadSelector: {labels: {app: api}}\n  egress: [{hosts: [\"./*\"]}]\n",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "Sidecar shop/api already selects this workload; its ingress is patched"
    ));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert!(
        !r.safe_to_auto_apply,
        "an existing Sidecar needs a reviewer"
    );
    assert_eq!(
        (r.target.kind.as_str(), r.target.name.as_str()),
        ("Sidecar", "api")
    );
    assert_eq!(
        r.resource["spec"],
        json!({
            "workloadSelector": {"labels": {"app": "api"}},
            "egress": [{"hosts": ["./*"]}],
            "ingress": [listener(8080, "127.0.0.1:8080")],
        })
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn an_existing_ingress_listener_gets_its_endpoint_replaced() {
    let yaml = with(
        &mesh_with(
            r#"{name: app, image: "python:3.12", args: [uvicorn, "main:app", --host, 127.0.0.1, --port, "8080"], ports: [{containerPort: 8080}, {containerPort: 9090}]}"#,
            "[{name: http, port: 80, targetPort: 8080}, {name: http-admin, port: 9090, targetPort: 9090}]",
        ),
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: api, namespace: shop}\nspec:\n  workloadSelector: {labels: {app: api}}\n  ingress:\n  - {port: {number: 8080, protocol: HTTP, name: web}, defaultEndpoint: \"0.0.0.0:8080\"}\n",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert!(r.patch.as_ref().unwrap().contains(&json!({
        "op": "replace",
        "path": "/spec/ingress/0/defaultEndpoint",
        "value": "127.0.0.1:8080",
    })));
    assert_eq!(
        r.resource["spec"]["ingress"],
        json!([{"port": {"number": 8080, "protocol": "HTTP", "name": "web"}, "defaultEndpoint": "127.0.0.1:8080"}]),
        "listeners the user chose are kept as they are"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn workloads_without_a_sidecar_are_not_checked() {
    none(
        &mesh(r#"[uvicorn, "main:app", --host, 127.0.0.1, --port, "8080"]"#)
            .replace("labels: {istio-injection: enabled}", "labels: {}"),
    );
}

#[test]
fn loopback_binds_reads_the_usual_forms() {
    let c = |value: Value| -> crate::model::workload::Container {
        serde_json::from_value(value).expect("container")
    };
    let ports = |value: Value| -> Vec<(bool, Option<i32>)> {
        loopback_binds(&c(value))
            .into_iter()
            .map(|b| (b.ipv6, b.port))
            .collect()
    };
    assert_eq!(
        ports(json!({"name": "a", "args": ["--listen=127.0.0.1:9000"]})),
        [(false, Some(9000))]
    );
    assert_eq!(
        ports(
            json!({"name": "a", "command": ["sh", "-c", "flask run --host 127.0.0.1 --port 5000"]})
        ),
        [(false, Some(5000))]
    );
    assert_eq!(
        ports(
            json!({"name": "a", "env": [{"name": "ASPNETCORE_URLS", "value": "http://localhost:5000"}]})
        ),
        [(false, Some(5000))]
    );
    assert_eq!(
        ports(
            json!({"name": "a", "env": [{"name": "BIND_ADDRESS", "value": "::1"}, {"name": "PORT", "value": "3000"}]})
        ),
        [(true, Some(3000))]
    );
    assert_eq!(
        ports(
            json!({"name": "a", "env": [{"name": "GUNICORN_CMD_ARGS", "value": "--bind=127.0.0.1:8000 --workers 2"}]})
        ),
        [(false, Some(8000))]
    );
    assert!(ports(json!({"name": "a", "args": ["--host", "0.0.0.0"]})).is_empty());
    assert!(ports(json!({"name": "a", "args": ["--host", "::"]})).is_empty());
    assert!(
        ports(json!({"name": "a", "env": [{"name": "HOST", "value": "api.example.com"}]}))
            .is_empty()
    );
}

#[test]
fn a_sidecar_that_already_sends_the_port_to_loopback_ends_the_finding() {
    let app = mesh(r#"[uvicorn, "main:app", --host, 127.0.0.1, --port, "8080"]"#);
    // Written by hand, under another name than meshmedic's, with a different listener name.
    let by_hand = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: api-ingress, namespace: shop}\nspec:\n  workloadSelector: {labels: {app: api}}\n  ingress:\n  - {port: {number: 8080, protocol: HTTP, name: web}, defaultEndpoint: \"127.0.0.1:8080\"}\n";
    none(&with(&app, by_hand));
    // The wrong family or port does not restore traffic: still a finding.
    let v6 = by_hand
        .replace("127.0.0.1:8080", "\"[::1]:8080\"")
        .replace("\"\"", "\"");
    assert_eq!(only(&snapshot(&with(&app, &v6))).code, CODE);
    let other_port = by_hand.replace("127.0.0.1:8080", "127.0.0.1:9999");
    assert_eq!(only(&snapshot(&with(&app, &other_port))).code, CODE);
}

// --- Gateways and ambient: no sidecar in front of an app -----------------------------------------

const LOOPBACK_ARGS: &str = r#"[serve, --host, 127.0.0.1, --port, "8080"]"#;

#[test]
fn a_gateway_is_not_checked() {
    let yaml = mesh(LOOPBACK_ARGS).replace(
        "labels: {app: api, version: v1}}",
        "labels: {app: api, version: v1}, annotations: {inject.istio.io/templates: gateway}}",
    );
    assert!(yaml.contains("inject.istio.io/templates"));
    none(&yaml);
}

#[test]
fn ambient_workloads_are_not_checked() {
    let ambient = mesh(LOOPBACK_ARGS).replace(
        "labels: {istio-injection: enabled}",
        "labels: {istio.io/dataplane-mode: ambient}",
    );
    none(&ambient);
    // The same workload with a sidecar is reported.
    only(&snapshot(&mesh(LOOPBACK_ARGS)));
}
