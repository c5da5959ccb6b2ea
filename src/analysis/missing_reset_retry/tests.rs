use serde_json::json;

use super::{merged_retry_on, only_non_idempotent};
use crate::analysis::test_support::{
    assert_patch_consistent, findings_of, has_evidence, none_of, only_of, snapshot, snapshot_with,
};
use crate::analysis::{Code, Finding, Severity};
use crate::model::istio::HttpRoute;
use crate::remediation::Action;
use crate::snapshot::{Snapshot, SnapshotOptions};

const FQDN: &str = "cart.shop.svc.cluster.local";
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// An injected Deployment `cart` behind the Service `cart` (http 80 → 8080).
const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec: {containers: [{name: app, image: "example/cart:1", ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {selector: {app: cart}, ports: [{name: http, port: 80, targetPort: 8080}]}
"#;

/// MESH with its Service's ports replaced by `ports` (a flow sequence).
fn with_ports(ports: &str) -> String {
    let yaml = MESH.replace("[{name: http, port: 80, targetPort: 8080}]", ports);
    assert!(yaml.contains(ports), "{ports}");
    yaml
}

fn with(extra: &str) -> String {
    format!("{MESH}---\n{extra}")
}

fn mesh_config(mesh: &str) -> String {
    let indented: String = mesh.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n{indented}"
    )
}

/// A VirtualService in `shop` with the given spec lines (indented by two spaces).
fn vs(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}"
    )
}

const CODE: Code = Code::MissingResetRetry;

fn findings(snap: &Snapshot) -> Vec<Finding> {
    findings_of(snap, CODE)
}

fn only(snap: &Snapshot) -> Finding {
    only_of(snap, CODE)
}

fn none(yaml: &str) {
    none_of(yaml, CODE)
}

fn new_virtual_service(retries: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "cart-retries",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/managed-by": "meshmedic"},
        },
        "spec": {
            "hosts": [FQDN],
            "http": [{"route": [{"destination": {"host": FQDN}}], "retries": retries}],
        },
    })
}

#[test]
fn no_virtual_service_and_no_mesh_default_gets_a_new_one() {
    let snap = snapshot(MESH);
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.namespace, "shop");
    assert_eq!(f.service.as_deref(), Some("cart"));
    assert!(has_evidence(
        &f,
        &format!("no VirtualService routes {FQDN}; Istio 1.31 default retry policy applies")
    ));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Create);
    assert!(r.safe_to_auto_apply);
    assert!(r.patch.is_none());
    assert_eq!(
        (r.target.kind.as_str(), r.target.name.as_str()),
        ("VirtualService", "cart-retries")
    );
    assert_eq!(
        r.resource,
        new_virtual_service(json!({
            "attempts": 2,
            "retryOn": format!("{DEFAULT_RETRY_ON},reset,503"),
        }))
    );
    assert_patch_consistent(&snap, &f);
}

/// An HTTPRoute in `ns` whose parent reference is `parent` (flow YAML).
fn http_route(ns: &str, parent: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: cart-canary, namespace: {ns}}}\nspec:\n  parentRefs: [{parent}]\n  rules: [{{backendRefs: [{{name: cart, port: 80, weight: 90}}, {{name: cart-v2, port: 80, weight: 10}}]}}]\n"
    )
}

#[test]
fn a_service_an_http_route_attaches_to_for_mesh_traffic_gets_no_new_virtual_service() {
    // Istio routes the host from the HTTPRoute: a second route for it would take one of the two.
    none(&with(&http_route(
        "shop",
        "{group: '', kind: Service, name: cart}",
    )));
    // A consumer route in another namespace attaches to the same Service.
    none(&with(&http_route(
        "web",
        "{group: '', kind: Service, name: cart, namespace: shop}",
    )));
    // A route for a Gateway (ingress), one for another Service, or one whose group is not the
    // core group, as Istio reads them: the sidecars still use the mesh default, and the new
    // VirtualService is proposed.
    for parent in [
        "{name: ingress}",
        "{group: '', kind: Service, name: orders}",
        "{group: core, kind: Service, name: cart}",
        "{group: '', kind: Service, name: cart, namespace: web}",
    ] {
        let snap = snapshot(&with(&http_route("shop", parent)));
        assert_eq!(only(&snap).remediation.action, Action::Create, "{parent}");
    }
}

#[test]
fn istio_1_23_default_also_retried_503() {
    let version = |v: &str| SnapshotOptions {
        istio_version: Some(v.into()),
        ..Default::default()
    };
    let snap = snapshot_with(MESH, version("1.23"));
    let f = only(&snap);
    assert!(has_evidence(&f, "Istio 1.23 default retry policy"));
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 2, "retryOn": format!("{DEFAULT_RETRY_ON},503,reset")}),
        "503 is already there and kept in place; only reset is added"
    );

    let snap = snapshot_with(MESH, version("1.24"));
    let f = only(&snap);
    assert!(has_evidence(&f, "Istio 1.24 default retry policy"));
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"]["retryOn"],
        format!("{DEFAULT_RETRY_ON},reset,503")
    );
}

#[test]
fn a_mesh_default_with_reset_is_enough() {
    none(&with(&mesh_config(
        "defaultHttpRetryPolicy:\n  attempts: 3\n  retryOn: connect-failure,reset",
    )));
}

#[test]
fn a_mesh_default_with_attempts_0_turns_retries_off_on_purpose() {
    none(&with(&mesh_config(
        "defaultHttpRetryPolicy:\n  attempts: 0\n  retryOn: connect-failure",
    )));
}

#[test]
fn a_mesh_default_without_reset_is_kept_and_extended() {
    let snap = snapshot(&with(&mesh_config(
        "defaultHttpRetryPolicy:\n  attempts: 4\n  perTryTimeout: 2s\n  retryOn: connect-failure,refused-stream",
    )));
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "mesh config defaultHttpRetryPolicy applies"
    ));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Create);
    assert_eq!(
        r.resource,
        new_virtual_service(json!({
            "attempts": 4,
            "perTryTimeout": "2s",
            "retryOn": "connect-failure,refused-stream,reset,503",
        }))
    );
}

#[test]
fn route_retries_without_reset_keep_their_conditions() {
    let yaml = with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - name: primary\n    route: [{destination: {host: cart}}]\n    retries: {attempts: 3, perTryTimeout: 1s, retryOn: \"connect-failure,refused-stream\"}\n",
    ));
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "http[0] (primary): the route's retries: retryOn \"connect-failure,refused-stream\", without reset"
    ));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert!(r.safe_to_auto_apply);
    assert_eq!(
        (r.target.kind.as_str(), r.target.name.as_str()),
        ("VirtualService", "cart")
    );
    let ops = r.patch.as_ref().unwrap();
    assert!(ops.contains(&json!({
        "op": "test",
        "path": "/spec/http/0/retries/retryOn",
        "value": "connect-failure,refused-stream",
    })));
    assert_eq!(
        r.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 3, "perTryTimeout": "1s", "retryOn": "connect-failure,refused-stream,reset,503"})
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_route_without_retries_gets_the_default_plus_reset() {
    let yaml = with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart}}]\n    timeout: 10s\n",
    ));
    let snap = snapshot(&yaml);
    let f = only(&snap);
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert_eq!(
        r.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 2, "retryOn": format!("{DEFAULT_RETRY_ON},reset,503")})
    );
    assert_eq!(r.resource["spec"]["http"][0]["timeout"], "10s");
    assert_patch_consistent(&snap, &f);

    // With a mesh default, the route inherits it, and the fix keeps its perTryTimeout.
    let snap = snapshot(&format!(
        "{yaml}---\n{}",
        mesh_config(
            "defaultHttpRetryPolicy:\n  attempts: 5\n  perTryTimeout: 3s\n  retryOn: connect-failure"
        )
    ));
    let f = only(&snap);
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 5, "perTryTimeout": "3s", "retryOn": "connect-failure,reset,503"})
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_route_that_already_retries_reset_is_fine() {
    none(&with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart}}]\n    retries: {attempts: 2, retryOn: \"connect-failure,reset\"}\n",
    )));
}

#[test]
fn explicit_attempts_0_is_a_choice() {
    none(&with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart}}]\n    retries: {attempts: 0}\n",
    )));
}

#[test]
fn retries_without_attempts_are_off_and_get_attempts() {
    let yaml = with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart}}]\n    retries: {retryOn: connect-failure}\n",
    ));
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "http[0]: retries has no attempts, which Istio reads as 0 (retries off); attempts 2 added"
    ));
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 2, "retryOn": "connect-failure,reset,503"})
    );
    assert_patch_consistent(&snap, &f);

    // Even when retryOn already has reset, the missing attempts leave retries off.
    let yaml = with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart}}]\n    retries: {retryOn: reset}\n",
    ));
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 2, "retryOn": "reset,503"})
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_post_only_route_gets_reset_before_request() {
    let yaml = with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - name: checkout\n    match: [{method: {exact: POST}}]\n    route: [{destination: {host: cart}}]\n",
    ));
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "without reset or reset-before-request (non-idempotent route)"
    ));
    assert!(has_evidence(&f, "duplicate operations"));
    let r = &f.remediation;
    assert!(r.safe_to_auto_apply);
    let retry_on = r.resource["spec"]["http"][0]["retries"]["retryOn"]
        .as_str()
        .unwrap();
    assert_eq!(retry_on, format!("{DEFAULT_RETRY_ON},reset-before-request"));
    assert_patch_consistent(&snap, &f);
}

#[test]
fn post_and_other_routes_in_one_virtual_service() {
    let yaml = with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - match: [{method: {regex: \"^(POST|PATCH)$\"}}]\n    route: [{destination: {host: cart}}]\n  - route: [{destination: {host: cart}}]\n",
    ));
    let snap = snapshot(&yaml);
    let f = only(&snap);
    let http = &f.remediation.resource["spec"]["http"];
    assert_eq!(
        http[0]["retries"]["retryOn"],
        format!("{DEFAULT_RETRY_ON},reset-before-request")
    );
    assert_eq!(
        http[1]["retries"]["retryOn"],
        format!("{DEFAULT_RETRY_ON},reset,503")
    );
    assert!(
        !has_evidence(&f, "duplicate operations"),
        "the note is for all-non-idempotent fixes"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_non_idempotent_workload_gets_reset_before_request() {
    let yaml = MESH.replace(
        "metadata: {labels: {app: cart}}",
        "metadata: {labels: {app: cart}, annotations: {meshmedic.io/non-idempotent: \"true\"}}",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(&f, "duplicate operations"));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Create);
    assert!(r.safe_to_auto_apply);
    assert_eq!(
        r.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 2, "retryOn": format!("{DEFAULT_RETRY_ON},reset-before-request")})
    );

    // reset-before-request already there: nothing to do for a non-idempotent workload.
    none(&format!(
        "{yaml}---\n{}",
        vs(
            "cart",
            "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart}}]\n    retries: {attempts: 2, retryOn: \"connect-failure,reset-before-request\"}\n",
        )
    ));
}

#[test]
fn a_grpc_service_gets_reset_before_request_not_reset() {
    // gRPC calls are POSTs: `reset` could replay one the app already processed.
    let yaml = MESH.replace(
        "ports: [{name: http, port: 80",
        "ports: [{name: grpc, port: 80",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(&f, "speak gRPC"));
    assert!(has_evidence(&f, "duplicate operations"));
    assert!(f.remediation.safe_to_auto_apply);
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 2, "retryOn": format!("{DEFAULT_RETRY_ON},reset-before-request")})
    );
    // The same by appProtocol.
    let yaml = MESH.replace(
        "ports: [{name: http, port: 80",
        "ports: [{name: api, appProtocol: grpc, port: 80",
    );
    assert!(has_evidence(&only(&snapshot(&yaml)), "speak gRPC"));
}

#[test]
fn an_http2_port_with_a_grpc_probe_behind_it_speaks_grpc() {
    // kubernetes-engine-samples' echo-grpc: port `http2-echo`, and the server's readiness probe
    // is a gRPC health check on the port it leads to.
    let grpc_server = |probe_port: u16, target: &str| {
        MESH.replace("ports: [{name: http, port: 80, targetPort: 8080}]", &format!("ports: [{{name: http2-echo, port: 80, targetPort: {target}}}]"))
            .replace(
                "ports: [{containerPort: 8080}]}",
                &format!("ports: [{{name: api, containerPort: 8080}}], readinessProbe: {{grpc: {{port: {probe_port}}}}}}}"),
            )
    };
    let yaml = grpc_server(8080, "8080");
    assert!(yaml.contains("http2-echo") && yaml.contains("grpc: {port: 8080}"));
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "port 80: readiness probe of Deployment shop/cart container app is gRPC on 8080"
    ));
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 2, "retryOn": format!("{DEFAULT_RETRY_ON},reset-before-request")})
    );
    // A named target port resolves the same way.
    assert!(has_evidence(
        &only(&snapshot(&grpc_server(8080, "api"))),
        "is gRPC on 8080"
    ));
    // A gRPC probe on another port says nothing about this one: `reset` as for any HTTP port.
    let f = only(&snapshot(&grpc_server(9090, "8080")));
    assert!(!has_evidence(&f, "speak gRPC"), "{:?}", f.evidence);
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"]["retryOn"],
        format!("{DEFAULT_RETRY_ON},reset,503")
    );
}

#[test]
fn a_service_of_metrics_ports_only_gets_no_new_virtual_service() {
    // argo-cd's argocd-metrics (`metrics`), sock-shop's rabbitmq (AMQP beside `exporter`):
    // scrapers reach the pods' own addresses, which no VirtualService for the host applies to.
    for ports in [
        "[{name: metrics, port: 8082, targetPort: 8080}]",
        "[{name: http-metrics, port: 8082, targetPort: 8080}]",
        "[{name: rabbitmq, port: 5672}, {name: exporter, port: 9090, targetPort: 8080}]",
        "[{name: Prometheus, port: 9090, targetPort: 8080}, {name: https, port: 443}]",
    ] {
        none_of(&with_ports(ports), CODE);
    }
    // An app port beside the metrics one: judged.
    let both = with_ports(
        "[{name: http, port: 80, targetPort: 8080}, {name: metrics, port: 9090, targetPort: 8080}]",
    );
    assert_eq!(findings(&snapshot(&both)).len(), 1);
    // Names that only contain the word are not metrics ports.
    let api = MESH.replace("{name: http, port: 80", "{name: http-metricsapi, port: 80");
    assert!(api.contains("metricsapi"));
    assert_eq!(findings(&snapshot(&api)).len(), 1);
    // A VirtualService someone wrote for it is judged like any other.
    let metrics = MESH.replace("{name: http, port: 80", "{name: metrics, port: 80");
    let routed = format!(
        "{metrics}---\n{}",
        vs(
            "cart",
            "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart}}]\n"
        )
    );
    let f = only(&snapshot(&routed));
    assert_eq!(f.remediation.target.name, "cart");
}

#[test]
fn reset_before_request_is_not_enough_for_an_idempotent_route() {
    let snap = snapshot(&with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart}}]\n    retries: {attempts: 2, retryOn: reset-before-request}\n",
    )));
    let f = only(&snap);
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"]["retryOn"],
        "reset-before-request,reset,503"
    );
}

#[test]
fn several_virtual_services_for_one_host_are_each_patched() {
    let yaml = format!(
        "{}---\n{}",
        with(&vs(
            "cart-a",
            "  hosts: [cart]\n  http:\n  - match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: cart}}]\n",
        )),
        vs(
            "cart-b",
            "  hosts: [cart.shop.svc.cluster.local]\n  http:\n  - match: [{uri: {prefix: /b}}]\n    route: [{destination: {host: cart.shop.svc.cluster.local}}]\n    retries: {attempts: 3, retryOn: connect-failure}\n",
        )
    );
    let snap = snapshot(&yaml);
    let all = findings(&snap);
    let targets: Vec<&str> = all
        .iter()
        .map(|f| f.remediation.target.name.as_str())
        .collect();
    assert_eq!(targets, ["cart-a", "cart-b"]);
    assert_eq!(
        all[0].remediation.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 2, "retryOn": format!("{DEFAULT_RETRY_ON},reset,503")})
    );
    assert_eq!(
        all[1].remediation.resource["spec"]["http"][0]["retries"],
        json!({"attempts": 3, "retryOn": "connect-failure,reset,503"})
    );
    for f in &all {
        assert_eq!(f.remediation.action, Action::Patch);
        assert_patch_consistent(&snap, f);
    }
}

/// A VirtualService bound to a gateway only does not configure the sidecars (they get a
/// VirtualService of their own), and its routes to the service are retried by the gateway's
/// proxy: they get their own fix.
#[test]
fn a_gateway_only_virtual_service_gets_its_own_fix_beside_the_sidecars_one() {
    let snap = snapshot(&with(&vs(
        "cart-public",
        "  hosts: [cart.example.com, cart]\n  gateways: [istio-system/public]\n  http:\n  - route: [{destination: {host: cart}}]\n",
    )));
    let found = findings(&snap);
    assert_eq!(found.len(), 2, "{found:#?}");
    let of = |name: &str| {
        found
            .iter()
            .find(|f| f.remediation.target.name == name)
            .unwrap_or_else(|| panic!("no fix of {name}: {found:#?}"))
    };
    assert_eq!(of("cart-retries").remediation.action, Action::Create);
    let gateway = of("cart-public");
    assert_eq!(gateway.remediation.action, Action::Patch);
    assert!(
        gateway.message.contains("503 UC at the gateway"),
        "{}",
        gateway.message
    );
    assert!(has_evidence(
        gateway,
        "bound to gateway(s) istio-system/public"
    ));
    assert_patch_consistent(&snap, gateway);

    // Bound to the mesh as well: patched.
    let snap = snapshot(&with(&vs(
        "cart-public",
        "  hosts: [cart.example.com, cart]\n  gateways: [istio-system/public, mesh]\n  http:\n  - route: [{destination: {host: cart}}]\n",
    )));
    let f = only(&snap);
    assert_eq!(f.remediation.action, Action::Patch);
    assert_eq!(f.remediation.target.name, "cart-public");
    assert_patch_consistent(&snap, &f);
}

/// Without a sidecar the gateway's proxy is the app's only client in the mesh: its routes are
/// judged, and nothing else is (there are no sidecar routes, so no VirtualService is created).
#[test]
fn a_gateway_route_to_a_service_without_a_sidecar_is_judged() {
    let uninjected = MESH.replace("labels: {istio-injection: enabled}", "labels: {}");
    let gateway_vs = vs(
        "cart-public",
        "  hosts: [cart.example.com]\n  gateways: [istio-system/public]\n  http:\n  - route: [{destination: {host: cart}}]\n",
    );
    let snap = snapshot(&format!("{uninjected}---\n{gateway_vs}"));
    let f = only(&snap);
    assert_eq!(f.remediation.action, Action::Patch);
    assert_eq!(f.remediation.target.name, "cart-public");
    assert!(f.message.contains("503 UC at the gateway"), "{}", f.message);
    assert!(
        has_evidence(&f, "Service shop/cart has no sidecar"),
        "{:#?}",
        f.evidence
    );
    assert_eq!(
        f.remediation.resource["spec"]["http"][0]["retries"]["retryOn"],
        format!("{DEFAULT_RETRY_ON},reset,503")
    );
    assert_patch_consistent(&snap, &f);

    // Already retried on reset at the gateway: nothing to do.
    none(&format!(
        "{uninjected}---\n{}",
        gateway_vs.replace(
            "  - route: [{destination: {host: cart}}]\n",
            "  - route: [{destination: {host: cart}}]\n    retries: {attempts: 2, retryOn: reset}\n"
        )
    ));
    // Ambient pods reach the gateway through ztunnel, and a TCP-only Service has no HTTP route.
    none(&format!(
        "{}---\n{gateway_vs}",
        MESH.replace(
            "labels: {istio-injection: enabled}",
            "labels: {istio.io/dataplane-mode: ambient}"
        )
    ));
    none(&format!(
        "{}---\n{gateway_vs}",
        uninjected.replace("name: http, port: 80", "name: tcp-cart, port: 80")
    ));
    // Only routes bound to a gateway: whether any client of an app without a sidecar has one
    // is not in the files (a gateway is a proxy by definition), so mesh routes are not judged.
    none(&format!(
        "{uninjected}---\n{}",
        vs(
            "cart",
            "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart}}]\n"
        )
    ));
}

#[test]
fn a_virtual_service_exported_elsewhere_is_not_visible() {
    let snap = snapshot(&with(&vs(
        "cart",
        "  hosts: [cart]\n  exportTo: [other]\n  http:\n  - route: [{destination: {host: cart}}]\n    retries: {attempts: 2, retryOn: reset}\n",
    )));
    let f = only(&snap);
    assert_eq!(f.remediation.action, Action::Create);
    assert_eq!(f.remediation.target.name, "cart-retries");
}

#[test]
fn redirect_routes_are_skipped() {
    let yaml = with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - match: [{uri: {prefix: /old}}]\n    redirect: {uri: /new}\n  - route: [{destination: {host: cart}}]\n",
    ));
    let snap = snapshot(&yaml);
    let f = only(&snap);
    let r = &f.remediation;
    assert!(r.resource["spec"]["http"][0].get("retries").is_none());
    assert_eq!(
        r.resource["spec"]["http"][0]["redirect"],
        json!({"uri": "/new"})
    );
    assert!(r.resource["spec"]["http"][1]["retries"].is_object());
    assert!(
        r.patch
            .as_ref()
            .unwrap()
            .iter()
            .all(|op| !op["path"].as_str().unwrap().starts_with("/spec/http/0")),
        "{:?}",
        r.patch
    );
    assert_patch_consistent(&snap, &f);

    // Only redirects: nothing to retry.
    none(&with(&vs(
        "cart",
        "  hosts: [cart]\n  http:\n  - redirect: {uri: /new}\n",
    )));
}

#[test]
fn the_ignore_annotation_suppresses_the_finding() {
    none(&MESH.replace(
        "metadata: {labels: {app: cart}}",
        "metadata: {labels: {app: cart}, annotations: {meshmedic.io/ignore: \"idle-timeout-mismatch,missing-reset-retry\"}}",
    ));
    none(&MESH.replace(
        "metadata: {name: cart, namespace: shop}\nspec: {selector",
        "metadata: {name: cart, namespace: shop, annotations: {meshmedic.io/ignore: missing-reset-retry}}\nspec: {selector",
    ));
    // Another code in the list does not suppress this one.
    let snap = snapshot(&MESH.replace(
        "metadata: {labels: {app: cart}}",
        "metadata: {labels: {app: cart}, annotations: {meshmedic.io/ignore: sidecar-lifecycle}}",
    ));
    only(&snap);
}

#[test]
fn tcp_only_and_uninjected_services_are_out_of_scope() {
    none(&MESH.replace("name: http, port: 80", "name: tcp-cart, port: 80"));
    none(&MESH.replace("labels: {istio-injection: enabled}", "labels: {}"));
}

#[test]
fn merged_retry_on_keeps_order_and_appends_what_is_missing() {
    assert_eq!(
        merged_retry_on("connect-failure,refused-stream", &["reset", "503"]),
        "connect-failure,refused-stream,reset,503"
    );
    assert_eq!(
        merged_retry_on(" 503 , connect-failure,", &["reset", "503"]),
        "503,connect-failure,reset"
    );
    assert_eq!(merged_retry_on("reset,503", &["reset", "503"]), "reset,503");
    assert_eq!(merged_retry_on("", &["reset", "503"]), "reset,503");
    assert_eq!(
        merged_retry_on("connect-failure", &["reset-before-request"]),
        "connect-failure,reset-before-request"
    );
}

fn route(value: serde_json::Value) -> HttpRoute {
    serde_json::from_value(value).expect("route")
}

#[test]
fn only_non_idempotent_reads_method_matches() {
    let m = |method: serde_json::Value| route(json!({"match": [{"method": method}]}));
    assert!(
        !only_non_idempotent(&route(json!({}))),
        "no match: any method"
    );
    assert!(!only_non_idempotent(&route(
        json!({"match": [{"uri": {"prefix": "/"}}]})
    )));
    assert!(only_non_idempotent(&m(json!({"exact": "POST"}))));
    assert!(only_non_idempotent(&m(json!({"exact": "patch"}))));
    assert!(only_non_idempotent(&m(json!({"prefix": "POST"}))));
    assert!(!only_non_idempotent(&m(json!({"exact": "GET"}))));
    assert!(
        !only_non_idempotent(&m(json!({"exact": "PUT"}))),
        "PUT is idempotent"
    );
    assert!(only_non_idempotent(&m(json!({"regex": "^(POST|PATCH)$"}))));
    assert!(only_non_idempotent(&m(json!({"regex": "^POST$|^PATCH$"}))));
    assert!(only_non_idempotent(&m(json!({"regex": "(POST)|(PATCH)"}))));
    assert!(!only_non_idempotent(&m(json!({"regex": "POST|GET"}))));
    assert!(!only_non_idempotent(&m(json!({"regex": "^POST$|^GET$"}))));
    assert!(!only_non_idempotent(&m(json!({"regex": "P.*"}))));
    assert!(only_non_idempotent(&route(json!({"match": [
        {"method": {"exact": "POST"}},
        {"method": {"exact": "PATCH"}},
    ]}))));
    assert!(
        !only_non_idempotent(&route(json!({"match": [
            {"method": {"exact": "POST"}},
            {"uri": {"prefix": "/read"}},
        ]}))),
        "one alternative reaches every method"
    );
}

#[test]
fn retry_on_5xx_or_gateway_error_already_covers_resets() {
    // Envoy counts an upstream reset as a 5xx (`wouldRetryFromReset`).
    for cond in ["5xx", "gateway-error"] {
        none(&with(&vs(
            "cart",
            &format!(
                "  hosts: [cart]\n  http:\n  - route: [{{destination: {{host: cart}}}}]\n    retries: {{attempts: 2, retryOn: \"{cond}\"}}\n"
            ),
        )));
    }
}

#[test]
fn undeclared_ports_of_databases_and_caches_are_tcp_not_http() {
    // Redis and PostgreSQL behind unnamed ports (kubernetes-engine-samples): Istio sniffs them
    // and finds TCP, so no HTTP retry policy ever applies.
    // An admission webhook's only port, an unnamed 443 (kubeflow/manifests): clients speak TLS
    // there, which the sniffing passes through as TCP.
    for (image, port) in [
        ("redis:7", 6379),
        ("postgres:16", 5432),
        ("example/webhook:1", 443),
    ] {
        let yaml = MESH
            .replace("example/cart:1", image)
            .replace("containerPort: 8080", &format!("containerPort: {port}"))
            .replace(
                "{name: http, port: 80, targetPort: 8080}",
                &format!("{{port: {port}, targetPort: {port}}}"),
            );
        none_of(&yaml, CODE);
    }
    // Ports named for a non-HTTP protocol Istio does not parse (a MySQL Router's X Protocol
    // ports in kubernetes-engine-samples; PostgreSQL, AMQP): sniffed, and found TCP.
    for ports in [
        "[{name: mysqlx-rw, port: 64460}, {name: mysqlx-ro, port: 64470}]",
        "[{name: postgres, port: 6000}]",
        "[{name: amqp, port: 6000}]",
        "[{port: 33060}]",
        // kubernetes/examples: an NFS server, Hazelcast, Redis Sentinel, RethinkDB's driver
        // port, OpenShift's API.
        "[{name: nfs, port: 2049}, {name: mountd, port: 20048}, {name: rpcbind, port: 111}]",
        "[{port: 5701}]",
        "[{port: 26379, targetPort: 26379}]",
        "[{port: 28015, targetPort: 28015}]",
        "[{name: openshift, port: 8443, targetPort: 8443}]",
        // kustomize's LDAP example.
        "[{port: 389, targetPort: 389}]",
        "[{name: ldaps, port: 1636, targetPort: 1636}]",
        // AliyunContainerService/asm-labs: a Dubbo provider (Dubbo's binary RPC, not HTTP).
        "[{name: dubbo, port: 20880, targetPort: 20880}]",
        "[{port: 20880}]",
    ] {
        none_of(&with_ports(ports), CODE);
    }
    // An unnamed port elsewhere may carry HTTP: still in scope.
    let yaml = MESH.replace(
        "{name: http, port: 80, targetPort: 8080}",
        "{port: 80, targetPort: 8080}",
    );
    assert_eq!(findings_of(&snapshot(&yaml), CODE).len(), 1);
}

/// istioinaction/book-source-code's TCP echo server: an unnamed Service port that Istio sniffs,
/// leading to a container port named `tcp-echo-port`. The app speaks TCP, so sniffing finds TCP
/// and no HTTP retry applies. Led to by name or by number; a container port named for HTTP, or
/// one pod of two with an unnamed port, leaves it in scope.
#[test]
fn an_unnamed_service_port_before_a_tcp_named_container_port_is_tcp() {
    let named = |container_port: &str, service_ports: &str| {
        with_ports(service_ports).replace("[{containerPort: 8080}]", container_port)
    };
    for name in ["tcp-echo-port", "redis", "http-web"] {
        for target in ["8080", name] {
            let yaml = named(
                &format!("[{{name: {name}, containerPort: 8080}}]"),
                &format!("[{{port: 2701, targetPort: {target}}}]"),
            );
            if name == "http-web" {
                assert_eq!(findings_of(&snapshot(&yaml), CODE).len(), 1, "{yaml}");
            } else {
                none_of(&yaml, CODE);
            }
        }
    }
    // The Service port's own name decides before the pods': Istio parses `http` as HTTP.
    let yaml = named(
        "[{name: tcp-echo-port, containerPort: 8080}]",
        "[{name: http, port: 80, targetPort: 8080}]",
    );
    assert_eq!(findings_of(&snapshot(&yaml), CODE).len(), 1);
    // A second workload behind the Service whose port is unnamed: it may serve HTTP.
    let second = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: cart-v2, namespace: shop}
spec:
  selector: {matchLabels: {app: cart, version: v2}}
  template:
    metadata: {labels: {app: cart, version: v2}}
    spec: {containers: [{name: app, image: "example/cart:2", ports: [{containerPort: 8080}]}]}
"#;
    let yaml = format!(
        "{}---\n{second}",
        named(
            "[{name: tcp-echo-port, containerPort: 8080}]",
            "[{port: 2701, targetPort: 8080}]"
        )
    );
    assert_eq!(findings_of(&snapshot(&yaml), CODE).len(), 1, "{yaml}");
}

/// An east-west gateway (sail-operator's docs, Istio's multi-network install): its ports are TLS
/// but for `status-port` 15021, the proxy's own health check for load balancers. No app's HTTP
/// goes through it, so no retry finding. With an `http2` port it gets none either: requests
/// through a gateway do not carry its own host name, so a new VirtualService for that host would
/// change nothing (whatever the Service's type). A VirtualService that already routes to it is
/// judged.
#[test]
fn a_gateways_own_host_gets_no_new_virtual_service() {
    let gateway = |ports: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: istio-eastwestgateway, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: eastwestgateway}}}}
  template:
    metadata:
      labels: {{istio: eastwestgateway}}
      annotations: {{inject.istio.io/templates: gateway}}
    spec: {{containers: [{{name: istio-proxy, image: auto}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: istio-eastwestgateway, namespace: istio-system}}
spec:
  type: LoadBalancer
  selector: {{istio: eastwestgateway}}
  ports: {ports}
"#
        )
    };
    let status = "{name: status-port, port: 15021, targetPort: 15021}";
    let tls = "{name: tls, port: 15443, targetPort: 15443}";
    none_of(&gateway(&format!("[{status}, {tls}]")), CODE);
    let http2 = "{name: http2, port: 80, targetPort: 8080}";
    let with_http = gateway(&format!("[{status}, {http2}, {tls}]"));
    none_of(&with_http, CODE);
    none_of(&with_http.replace("  type: LoadBalancer\n", ""), CODE);
    let routed = format!(
        "{with_http}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: to-gateway, namespace: istio-system}}\n\
         spec:\n  hosts: [istio-eastwestgateway]\n  http:\n  - route:\n    - destination: {{host: istio-eastwestgateway}}\n"
    );
    let found = findings(&snapshot(&routed));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].remediation.target.name, "to-gateway");
}

/// An ingress gateway's Service (anthos-service-mesh-samples' `asm-ingressgateway`: injected
/// with the `gateway` template, reached by a LoadBalancer) beside an app's: only the app's
/// Service is a finding.
#[test]
fn an_ingress_gateways_service_beside_an_app_is_left_out() {
    let yaml = with(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: asm-ingressgateway, namespace: shop}
spec:
  selector: {matchLabels: {asm: ingressgateway}}
  template:
    metadata:
      labels: {asm: ingressgateway}
      annotations: {inject.istio.io/templates: gateway}
    spec: {containers: [{name: istio-proxy, image: auto}]}
---
apiVersion: v1
kind: Service
metadata: {name: asm-ingressgateway, namespace: shop}
spec:
  type: LoadBalancer
  selector: {asm: ingressgateway}
  ports: [{name: http, port: 80}]
"#,
    );
    let found = findings(&snapshot(&yaml));
    let services: Vec<Option<&str>> = found.iter().map(|f| f.service.as_deref()).collect();
    assert_eq!(services, [Some("cart")], "{found:?}");
}

/// Two VirtualServices naming one host: Istio's sidecars use one and drop the other's routes,
/// which the findings say (a wildcard one beside them is no such conflict).
#[test]
fn two_virtual_services_for_one_host_are_named_as_such() {
    let route = "  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: cart}\n";
    let wildcard = "  hosts: ['*.shop.svc.cluster.local']\n  http:\n  - route:\n    - destination: {host: cart}\n";
    let snap = snapshot(&with(&format!(
        "{}---\n{}---\n{}",
        vs("cart", route),
        vs("cart-canary", route),
        vs("everything", wildcard)
    )));
    let found = findings(&snap);
    assert_eq!(found.len(), 3);
    let note = "VirtualServices shop/cart, shop/cart-canary all route cart.shop.svc.cluster.local for the sidecars";
    for f in &found {
        let exact = f.remediation.target.name != "everything";
        assert_eq!(has_evidence(f, note), exact, "{:?}", f.evidence);
    }
    // One of them alone: no such note.
    let one = snapshot(&with(&vs("cart", route)));
    assert!(!has_evidence(&only(&one), "all route"));
}

/// With creation times (a cluster, `kubectl get -o yaml`) Istio's pick among VirtualServices for
/// one host is known: the oldest, then by name. Only that one is patched, since a patch to one
/// the sidecars ignore would change nothing and a re-analysis would call it verified. Without
/// creation times, or with an `exportTo` (the pick then depends on the client's namespace), each
/// is patched, as before.
#[test]
fn of_virtual_services_for_one_host_only_the_one_istio_uses_is_patched_when_known() {
    let route = "  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: cart}\n";
    let aged = |name: &str, at: &str, extra: &str| {
        vs(name, &format!("{route}{extra}")).replace(
            "namespace: shop}",
            &format!("namespace: shop, creationTimestamp: '{at}'}}"),
        )
    };
    let targets = |yaml: &str| -> Vec<String> {
        let mut t: Vec<String> = findings(&snapshot(&with(yaml)))
            .iter()
            .map(|f| f.remediation.target.name.clone())
            .collect();
        t.sort();
        t
    };
    let older_canary = format!(
        "{}---\n{}",
        aged("cart", "2026-03-02T10:00:00Z", ""),
        aged("cart-canary", "2026-03-01T09:00:00Z", "")
    );
    assert_eq!(targets(&older_canary), ["cart-canary"]);
    let found = findings(&snapshot(&with(&older_canary)));
    assert!(
        has_evidence(
            &found[0],
            "Istio uses shop/cart-canary (created first) and ignores the others' routes, which are not patched"
        ),
        "{:?}",
        found[0].evidence
    );
    // Created in the same second: by name.
    let same_second = format!(
        "{}---\n{}",
        aged("cart", "2026-03-01T09:00:00Z", ""),
        aged("cart-canary", "2026-03-01T09:00:00Z", "")
    );
    assert_eq!(targets(&same_second), ["cart"]);
    // One without a creation time, or one exported to one namespace: not known, both patched.
    let unknown = format!(
        "{}---\n{}",
        aged("cart", "2026-03-02T10:00:00Z", ""),
        vs("cart-canary", route)
    );
    assert_eq!(targets(&unknown), ["cart", "cart-canary"]);
    let exported = format!(
        "{}---\n{}",
        aged("cart", "2026-03-02T10:00:00Z", "  exportTo: ['.']\n"),
        aged("cart-canary", "2026-03-01T09:00:00Z", "")
    );
    assert_eq!(targets(&exported), ["cart", "cart-canary"]);
}

/// Of a gateway's routes, only those to the service are its finding's; a route to another
/// service, one that already retries on reset, and a redirect are left alone.
#[test]
fn a_gateway_route_to_another_service_is_not_this_services() {
    let snap = snapshot(&with(&vs(
        "edge",
        "  hosts: ['shop.example.com']\n  gateways: [istio-system/public]\n  http:\n\
         \x20 - match: [{uri: {prefix: /cart}}]\n    route: [{destination: {host: cart.shop.svc.cluster.local, port: {number: 80}}}]\n\
         \x20 - match: [{uri: {prefix: /basket}}]\n    route: [{destination: {host: cart}}]\n    retries: {attempts: 3, retryOn: 'reset,503'}\n\
         \x20 - match: [{uri: {prefix: /pay}}]\n    route: [{destination: {host: payments}}]\n\
         \x20 - redirect: {uri: /cart}\n",
    )));
    let found = findings(&snap);
    let gateway: Vec<_> = found
        .iter()
        .filter(|f| f.remediation.target.name == "edge")
        .collect();
    assert_eq!(gateway.len(), 1);
    let patch = serde_json::to_string(&gateway[0].remediation.patch).unwrap();
    assert!(patch.contains("/spec/http/0/retries"), "{patch}");
    for other in ["/spec/http/1", "/spec/http/2", "/spec/http/3"] {
        assert!(!patch.contains(other), "{patch}");
    }
    assert_patch_consistent(&snap, gateway[0]);
}

/// An injected Deployment and its Service `name` in namespace `ns` (http 80 → 8080), with
/// `annotations` on the Service and `port_name` for its port.
fn service_in(ns: &str, name: &str, annotations: &str, port_name: &str) -> String {
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n\
         \x20   spec: {{containers: [{{name: app, image: \"example/{name}:1\", ports: [{{containerPort: 8080}}]}}]}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}, annotations: {{{annotations}}}}}\n\
         spec: {{selector: {{app: {name}}}, ports: [{{name: {port_name}, port: 80, targetPort: 8080}}]}}\n"
    )
}

/// A gateway VirtualService that fronts several services of a namespace gets one finding and
/// one fix of its routes to them, not one copy of itself per service (1,000 routes made 1,000
/// findings each with the whole corrected object). A service that ignores the code keeps its
/// route out of the fix; a gRPC service's route gets `reset-before-request`; services of
/// another namespace get a finding of their own.
#[test]
fn a_gateway_fronting_several_services_of_a_namespace_gets_one_fix_for_them() {
    let ns2 = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: pay, labels: {istio-injection: enabled}}\n";
    let services = [
        service_in("shop", "orders", "", "http"),
        service_in("shop", "search", "", "grpc-api"),
        service_in(
            "shop",
            "quiet",
            "meshmedic.io/ignore: missing-reset-retry",
            "http",
        ),
        service_in("pay", "payments", "", "http"),
    ]
    .concat();
    let edge = vs(
        "edge",
        "  hosts: ['shop.example.com']\n  gateways: [istio-system/public]\n  http:\n\
         \x20 - match: [{uri: {prefix: /cart}}]\n    route: [{destination: {host: cart}}]\n\
         \x20 - match: [{uri: {prefix: /orders}}]\n    route: [{destination: {host: orders.shop.svc.cluster.local}}]\n\
         \x20 - match: [{uri: {prefix: /search}}]\n    route: [{destination: {host: search}}]\n\
         \x20 - match: [{uri: {prefix: /quiet}}]\n    route: [{destination: {host: quiet}}]\n\
         \x20 - match: [{uri: {prefix: /pay}}]\n    route: [{destination: {host: payments.pay.svc.cluster.local}}]\n",
    );
    let snap = snapshot(&format!("{MESH}{ns2}{services}---\n{edge}"));
    let found = findings(&snap);
    let at_edge: Vec<&Finding> = found
        .iter()
        .filter(|f| f.remediation.target.name == "edge")
        .collect();
    assert_eq!(at_edge.len(), 2, "{at_edge:#?}");
    let shop = at_edge.iter().find(|f| f.namespace == "shop").unwrap();
    assert_eq!(shop.service, None);
    assert_eq!(shop.services, ["cart", "orders", "search"]);
    assert!(
        shop.message
            .contains("(gateway) to 3 services in shop (cart, orders, search)"),
        "{}",
        shop.message
    );
    let patch = serde_json::to_string(&shop.remediation.patch).unwrap();
    for edited in ["/spec/http/0/", "/spec/http/1/", "/spec/http/2/"] {
        assert!(patch.contains(edited), "{patch}");
    }
    for kept in ["/spec/http/3", "/spec/http/4"] {
        assert!(!patch.contains(kept), "{patch}");
    }
    let search = &shop.remediation.resource["spec"]["http"][2]["retries"]["retryOn"];
    assert!(
        search.as_str().unwrap().ends_with("reset-before-request"),
        "{search}"
    );
    let cart = &shop.remediation.resource["spec"]["http"][0]["retries"]["retryOn"];
    assert!(cart.as_str().unwrap().ends_with("reset,503"), "{cart}");
    assert_patch_consistent(&snap, shop);
    // Alone in its namespace, the payments route is the payments finding, as before.
    let pay = at_edge.iter().find(|f| f.namespace == "pay").unwrap();
    assert_eq!(pay.service.as_deref(), Some("payments"));
    assert!(
        pay.message
            .contains("to payments.pay.svc.cluster.local are not retried")
    );
    assert_patch_consistent(&snap, pay);
}

/// Of the services a gateway VirtualService fronts in a namespace, only the ones with a route
/// to fix are named; when that is one service, the finding is that service's.
#[test]
fn a_gateway_finding_names_only_the_services_whose_routes_it_fixes() {
    let edge = vs(
        "edge",
        "  hosts: ['shop.example.com']\n  gateways: [istio-system/public]\n  http:\n\
         \x20 - match: [{uri: {prefix: /cart}}]\n    route: [{destination: {host: cart}}]\n\
         \x20 - match: [{uri: {prefix: /orders}}]\n    route: [{destination: {host: orders}}]\n    retries: {attempts: 2, retryOn: 'reset,503'}\n",
    );
    let snap = snapshot(&format!(
        "{MESH}{}---\n{edge}",
        service_in("shop", "orders", "", "http")
    ));
    let found = findings(&snap);
    let at_edge: Vec<&Finding> = found
        .iter()
        .filter(|f| f.remediation.target.name == "edge")
        .collect();
    assert_eq!(at_edge.len(), 1, "{at_edge:#?}");
    assert_eq!(at_edge[0].service.as_deref(), Some("cart"));
    assert!(
        at_edge[0]
            .message
            .contains(&format!("to {FQDN} are not retried"))
    );
}

/// Online Boutique's `frontend-external` (anthos-service-mesh-samples): a LoadBalancer Service
/// for the pods the ClusterIP Service already serves. Outside callers reach the pods with no
/// sidecar of theirs, so only the internal Service gets a new VirtualService.
#[test]
fn a_load_balancer_beside_the_internal_service_gets_no_new_virtual_service() {
    let external = |kind: &str, target: &str| {
        with(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: cart-external, namespace: shop}}\nspec: {{type: {kind}, selector: {{app: cart}}, ports: [{{name: http, port: 80, targetPort: {target}}}]}}\n"
        ))
    };
    for kind in ["LoadBalancer", "NodePort"] {
        let found = findings(&snapshot(&external(kind, "8080")));
        assert_eq!(found.len(), 1, "{kind}: {found:?}");
        assert_eq!(found[0].service.as_deref(), Some("cart"));
    }
    // A ClusterIP twin is a second in-mesh name: both are judged.
    assert_eq!(findings(&snapshot(&external("ClusterIP", "8080"))).len(), 2);
    // A port the internal Service does not reach: the external one is the only way in.
    assert_eq!(
        findings(&snapshot(&external("LoadBalancer", "9090"))).len(),
        2
    );
    // Alone, a LoadBalancer Service is judged as before (mesh clients may call it).
    let alone = MESH.replace(
        "spec: {selector: {app: cart},",
        "spec: {type: LoadBalancer, selector: {app: cart},",
    );
    assert!(alone.contains("LoadBalancer"));
    assert_eq!(findings(&snapshot(&alone)).len(), 1);
}
