use std::time::Duration;

use serde_json::json;

use super::proposed_timeout;
use crate::analysis::test_support::{
    assert_patch_consistent, has_evidence, none_of, only_of, snapshot,
};
use crate::analysis::{Code, Finding, Severity, WorkloadRef};
use crate::remediation::Action;
use crate::snapshot::Snapshot;

const FQDN: &str = "web.shop.svc.cluster.local";

const NS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
"#;

const SERVICE: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
"#;

/// The namespace, a Deployment `web` whose only container is `container` (a flow mapping) with
/// pod-template `annotations` (a flow mapping), and the Service `web` (80 → 8080).
fn mesh_with(container: &str, annotations: &str) -> String {
    format!(
        r#"{NS}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}, annotations: {annotations}}}
    spec:
      containers:
      - {container}
{SERVICE}"#
    )
}

/// nginx: keep-alive idle timeout 65s (the image's nginx.conf).
fn nginx() -> String {
    mesh_with(
        r#"{name: nginx, image: "nginx:1.27", ports: [{containerPort: 8080}]}"#,
        "{}",
    )
}

fn with(base: &str, extra: &str) -> String {
    format!("{base}---\n{extra}")
}

const CODE: Code = Code::IdleTimeoutMismatch;

fn only(snap: &Snapshot) -> Finding {
    only_of(snap, CODE)
}

fn none(yaml: &str) {
    none_of(yaml, CODE)
}

fn dr(name: &str, host: &str, traffic_policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  host: {host}\n  trafficPolicy: {traffic_policy}\n"
    )
}

#[test]
fn no_destination_rule_creates_one_against_the_1h_default() {
    let snap = snapshot(&nginx());
    let f = only(&snap);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.namespace, "shop");
    assert_eq!(f.service.as_deref(), Some("web"));
    assert_eq!(
        f.workload,
        Some(WorkloadRef {
            kind: "Deployment".into(),
            name: "web".into()
        })
    );
    assert!(has_evidence(&f, "Istio default (1h)"));
    assert!(has_evidence(&f, "65s"));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Create);
    assert!(r.safe_to_auto_apply);
    assert!(r.patch.is_none());
    assert_eq!(r.target.kind, "DestinationRule");
    assert_eq!(r.target.namespace, "shop");
    assert_eq!(r.target.name, "web-idle-timeout");
    assert_eq!(
        r.resource,
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {
                "name": "web-idle-timeout",
                "namespace": "shop",
                "labels": {"app.kubernetes.io/managed-by": "meshmedic"},
            },
            "spec": {
                "host": FQDN,
                "trafficPolicy": {"connectionPool": {"http": {"idleTimeout": "58s"}}},
            },
        })
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn tcp_idle_timeout_longer_than_the_app_gets_an_http_idle_timeout() {
    let yaml = with(
        &nginx(),
        &dr(
            "web",
            "web",
            "{connectionPool: {tcp: {idleTimeout: 2h, maxConnections: 100}}, tls: {mode: ISTIO_MUTUAL}}",
        ),
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(&f, "tcp.idleTimeout (no http.idleTimeout) 2h"));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert!(r.safe_to_auto_apply);
    assert_eq!(
        (r.target.kind.as_str(), r.target.name.as_str()),
        ("DestinationRule", "web")
    );
    assert_eq!(
        r.resource["spec"]["trafficPolicy"],
        json!({
            "connectionPool": {
                "tcp": {"idleTimeout": "2h", "maxConnections": 100},
                "http": {"idleTimeout": "58s"},
            },
            "tls": {"mode": "ISTIO_MUTUAL"},
        })
    );
    assert_patch_consistent(&snap, &f);
}

/// A pool that sets other limits but no idle timeout keeps Istio's 1h, said once (the evidence
/// read "no idleTimeout, default 1h 1h" on christian-posta/istio-demos' httpbin rule).
#[test]
fn a_pool_without_an_idle_timeout_is_the_1h_default() {
    let yaml = with(
        &nginx(),
        &dr(
            "web",
            "web",
            "{connectionPool: {http: {maxRequestsPerConnection: 10}}}",
        ),
    );
    let f = only(&snapshot(&yaml));
    let said = f.evidence.join("\n");
    assert!(
        said.contains("connectionPool: no idleTimeout, default 1h"),
        "{said}"
    );
    assert!(!said.contains("1h 1h"), "{said}");
}

#[test]
fn a_5s_app_gets_4s() {
    let yaml = with(
        &mesh_with(
            r#"{name: httpd, image: "httpd:2.4", ports: [{containerPort: 8080}]}"#,
            "{}",
        ),
        &dr("web", "web", "{connectionPool: {http: {idleTimeout: 30s}}}"),
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert_eq!(
        r.resource["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "4s"
    );
    assert!(
        r.patch.as_ref().unwrap().contains(&json!({
            "op": "test",
            "path": "/spec/trafficPolicy/connectionPool/http/idleTimeout",
            "value": "30s",
        })),
        "the patch pins the old value"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_shorter_proxy_timeout_is_no_finding() {
    none(&with(
        &nginx(),
        &dr("web", "web", "{connectionPool: {http: {idleTimeout: 30s}}}"),
    ));
    // tcp.idleTimeout counts when http.idleTimeout is unset.
    none(&with(
        &nginx(),
        &dr("web", "web", "{connectionPool: {tcp: {idleTimeout: 60s}}}"),
    ));
    // http.idleTimeout wins over a longer tcp one.
    none(&with(
        &nginx(),
        &dr(
            "web",
            "web",
            "{connectionPool: {http: {idleTimeout: 60s}, tcp: {idleTimeout: 2h}}}",
        ),
    ));
}

#[test]
fn an_http_idle_timeout_of_0s_disables_it_and_is_a_finding() {
    // Envoy: "To disable idle timeouts explicitly set this to 0"; the proxy never closes them.
    let yaml = with(
        &nginx(),
        &dr("web", "web", "{connectionPool: {http: {idleTimeout: 0s}}}"),
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(&f, "disabled"));
    assert_eq!(
        f.remediation.resource["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "58s"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn port_level_settings_for_the_port_win_and_get_the_patch() {
    let yaml = with(
        &nginx(),
        &dr(
            "web",
            "web",
            "{connectionPool: {http: {idleTimeout: 30s}}, portLevelSettings: [{port: {number: 80}, connectionPool: {http: {idleTimeout: 2h}}}]}",
        ),
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(&f, "portLevelSettings[0] (port 80)"));
    let r = &f.remediation;
    assert_eq!(r.target.name, "web");
    let ops = r.patch.as_ref().unwrap();
    assert!(ops.contains(&json!({
        "op": "replace",
        "path": "/spec/trafficPolicy/portLevelSettings/0/connectionPool/http/idleTimeout",
        "value": "58s",
    })));
    let policy = &r.resource["spec"]["trafficPolicy"];
    assert_eq!(
        policy["portLevelSettings"][0]["connectionPool"]["http"]["idleTimeout"],
        "58s"
    );
    assert_eq!(
        policy["connectionPool"]["http"]["idleTimeout"], "30s",
        "top level untouched"
    );
    assert_patch_consistent(&snap, &f);

    // The reverse: a short port-level value wins over a long top-level one.
    none(&with(
        &nginx(),
        &dr(
            "web",
            "web",
            "{connectionPool: {http: {idleTimeout: 2h}}, portLevelSettings: [{port: {number: 80}, connectionPool: {http: {idleTimeout: 30s}}}]}",
        ),
    ));
}

#[test]
fn port_level_settings_for_another_port_do_not_apply() {
    none(&with(
        &nginx(),
        &dr(
            "web",
            "web",
            "{connectionPool: {http: {idleTimeout: 30s}}, portLevelSettings: [{port: {number: 9090}, connectionPool: {http: {idleTimeout: 2h}}}]}",
        ),
    ));
}

#[test]
fn a_subset_idle_timeout_does_not_fix_the_inbound_side() {
    let yaml = with(
        &nginx(),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: shop}\nspec:\n  host: web\n  subsets:\n  - {name: v1, labels: {version: v1}, trafficPolicy: {connectionPool: {http: {idleTimeout: 30s}}}}\n",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert_eq!(r.target.name, "web");
    assert_eq!(
        r.resource["spec"]["trafficPolicy"],
        json!({"connectionPool": {"http": {"idleTimeout": "58s"}}})
    );
    assert_eq!(
        r.resource["spec"]["subsets"][0]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "30s",
        "subsets are kept as they are"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_rule_exported_only_to_another_namespace_is_not_applied() {
    let yaml = with(
        &nginx(),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: shop}\nspec:\n  host: web\n  exportTo: [other]\n  trafficPolicy: {connectionPool: {http: {idleTimeout: 30s}}}\n",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "DestinationRule shop/web is not visible from namespace shop"
    ));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Create);
    assert_eq!(r.target.name, "web-idle-timeout");
    assert_eq!(
        r.resource["spec"],
        json!({"host": FQDN, "trafficPolicy": {"connectionPool": {"http": {"idleTimeout": "58s"}}}})
    );
    assert_patch_consistent(&snap, &f);

    // Exported to its own namespace: applied, and 30s is already shorter.
    none(&with(
        &nginx(),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: shop}\nspec:\n  host: web\n  exportTo: [\".\"]\n  trafficPolicy: {connectionPool: {http: {idleTimeout: 30s}}}\n",
    ));
}

#[test]
fn short_and_full_host_names_both_name_the_service() {
    for host in ["web", FQDN] {
        let yaml = with(
            &nginx(),
            &dr(
                "web-dr",
                host,
                "{connectionPool: {http: {idleTimeout: 2h}}}",
            ),
        );
        let snap = snapshot(&yaml);
        let f = only(&snap);
        let r = &f.remediation;
        assert_eq!(r.action, Action::Patch, "host {host}");
        assert_eq!(r.target.name, "web-dr", "host {host}");
        assert_eq!(r.resource["spec"]["host"], host, "host kept as written");
        assert_eq!(
            r.resource["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
            "58s"
        );
        assert_patch_consistent(&snap, &f);
    }
}

#[test]
fn name_dot_namespace_is_not_expanded_and_applies_to_nothing() {
    let yaml = with(
        &nginx(),
        &dr(
            "web-dr",
            "web.shop",
            "{connectionPool: {http: {idleTimeout: 30s}}}",
        ),
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "has host \"web.shop\", which Istio does not expand"
    ));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Create);
    assert_eq!(r.target.name, "web-idle-timeout");
    assert_eq!(r.resource["spec"]["host"], FQDN);
    assert_patch_consistent(&snap, &f);
}

#[test]
fn a_wildcard_rule_in_the_root_namespace_applies_and_is_copied() {
    let root_rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: mesh-defaults, namespace: istio-system}\nspec:\n  host: \"*.cluster.local\"\n  exportTo: [\"*\"]\n  trafficPolicy:\n    connectionPool: {http: {idleTimeout: 2h, maxRequestsPerConnection: 10}}\n    tls: {mode: ISTIO_MUTUAL}\n";
    let snap = snapshot(&with(&nginx(), root_rule));
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "DestinationRule istio-system/mesh-defaults applies to web.shop.svc.cluster.local but is shared"
    ));
    assert!(has_evidence(
        &f,
        "mesh-defaults trafficPolicy.connectionPool"
    ));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Create);
    assert!(r.safe_to_auto_apply);
    assert_eq!(
        (r.target.namespace.as_str(), r.target.name.as_str()),
        ("shop", "web-idle-timeout")
    );
    assert_eq!(
        r.resource["spec"],
        json!({
            "host": FQDN,
            "trafficPolicy": {
                "connectionPool": {"http": {"idleTimeout": "58s", "maxRequestsPerConnection": 10}},
                "tls": {"mode": "ISTIO_MUTUAL"},
            },
        }),
        "trafficPolicy copied, host narrowed, exportTo dropped"
    );
    assert_patch_consistent(&snap, &f);

    // The same rule with a short timeout already covers the service.
    none(&with(
        &nginx(),
        &root_rule.replace("idleTimeout: 2h", "idleTimeout: 30s"),
    ));
}

#[test]
fn a_sidecar_ingress_pool_for_the_port_wins_over_the_destination_rule() {
    let sidecar = |timeout: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: web, namespace: shop}}\nspec:\n  workloadSelector: {{labels: {{app: web}}}}\n  ingress:\n  - port: {{number: 8080, protocol: HTTP, name: http}}\n    defaultEndpoint: \"0.0.0.0:8080\"\n    connectionPool: {{http: {{idleTimeout: {timeout}}}}}\n"
        )
    };
    let yaml = with(
        &with(
            &nginx(),
            &dr("web", "web", "{connectionPool: {http: {idleTimeout: 30s}}}"),
        ),
        &sidecar("2h"),
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "Sidecar shop/web ingress[0].connectionPool"
    ));
    let r = &f.remediation;
    assert_eq!(r.action, Action::Patch);
    assert!(r.safe_to_auto_apply);
    assert_eq!(
        (r.target.kind.as_str(), r.target.name.as_str()),
        ("Sidecar", "web")
    );
    assert!(r.patch.as_ref().unwrap().contains(&json!({
        "op": "replace",
        "path": "/spec/ingress/0/connectionPool/http/idleTimeout",
        "value": "58s",
    })));
    assert_eq!(
        r.resource["spec"]["ingress"][0]["defaultEndpoint"],
        "0.0.0.0:8080"
    );
    assert_patch_consistent(&snap, &f);

    // A short Sidecar value wins over a long DestinationRule one.
    none(&with(
        &with(
            &nginx(),
            &dr("web", "web", "{connectionPool: {http: {idleTimeout: 2h}}}"),
        ),
        &sidecar("30s"),
    ));
}

#[test]
fn a_sidecar_inbound_connection_pool_is_patched_where_it_is() {
    let yaml = with(
        &nginx(),
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec:\n  inboundConnectionPool: {http: {idleTimeout: 2h}}\n  egress: [{hosts: [\"./*\"]}]\n",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    let r = &f.remediation;
    assert_eq!(
        (r.target.kind.as_str(), r.target.name.as_str()),
        ("Sidecar", "default")
    );
    assert_eq!(
        r.resource["spec"]["inboundConnectionPool"]["http"]["idleTimeout"],
        "58s"
    );
    assert_eq!(r.resource["spec"]["egress"], json!([{"hosts": ["./*"]}]));
    assert_patch_consistent(&snap, &f);
}

#[test]
fn the_app_timeout_annotation_on_the_pod_template() {
    let yaml = mesh_with(
        r#"{name: app, image: "example/app:1", ports: [{containerPort: 8080}]}"#,
        r#"{meshmedic.io/app-idle-timeout: "10s"}"#,
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "meshmedic.io/app-idle-timeout \"10s\" on Deployment shop/web pod template"
    ));
    assert_eq!(
        f.remediation.resource["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "9s"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn the_app_timeout_annotation_on_the_service() {
    let yaml = mesh_with(
        r#"{name: app, image: "example/app:1", ports: [{containerPort: 8080}]}"#,
        "{}",
    )
    .replace(
        "metadata: {name: web, namespace: shop}\nspec: {selector",
        "metadata: {name: web, namespace: shop, annotations: {meshmedic.io/app-idle-timeout: \"5s\"}}\nspec: {selector",
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert!(has_evidence(
        &f,
        "meshmedic.io/app-idle-timeout \"5s\" on Service shop/web"
    ));
    assert_eq!(
        f.remediation.resource["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "4s"
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn the_pod_template_annotation_wins_over_the_server_default() {
    let yaml = mesh_with(
        r#"{name: nginx, image: "nginx:1.27", ports: [{containerPort: 8080}]}"#,
        r#"{meshmedic.io/app-idle-timeout: "20s"}"#,
    );
    let snap = snapshot(&yaml);
    let f = only(&snap);
    assert_eq!(
        f.remediation.resource["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "18s"
    );
}

#[test]
fn an_unknown_server_is_never_guessed() {
    none(&mesh_with(
        r#"{name: app, image: "example/app:1", ports: [{containerPort: 8080}]}"#,
        "{}",
    ));
}

#[test]
fn gunicorn_sync_workers_keep_no_idle_connections() {
    none(&mesh_with(
        r#"{name: app, image: "python:3.12", command: [gunicorn, "-b", "0.0.0.0:8080", "app:app"], ports: [{containerPort: 8080}]}"#,
        "{}",
    ));
    // Another worker class keeps them for gunicorn's 2s keepalive.
    let snap = snapshot(&mesh_with(
        r#"{name: app, image: "python:3.12", command: [gunicorn, "-k", gevent, "-b", "0.0.0.0:8080", "app:app"], ports: [{containerPort: 8080}]}"#,
        "{}",
    ));
    let f = only(&snap);
    assert_eq!(
        f.remediation.resource["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "1s"
    );
}

#[test]
fn workloads_without_a_sidecar_are_not_checked() {
    none(&nginx().replace("labels: {istio-injection: enabled}", "labels: {}"));
    none(&nginx().replace(
        "labels: {app: web}, annotations",
        "labels: {app: web, sidecar.istio.io/inject: \"false\"}, annotations",
    ));
}

/// A VirtualService in `shop` bound to gateway `istio-system/public`, routing to `web`.
fn gateway_route() -> String {
    "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web-public, namespace: shop}\nspec:\n  hosts: [web.example.com]\n  gateways: [istio-system/public]\n  http:\n  - route: [{destination: {host: web}}]\n".to_string()
}

/// Without a sidecar, a gateway's Envoy pools its own connections to the app, with the idle
/// timeout of the DestinationRule it applies for the host (1 h when none sets one).
#[test]
fn a_gateway_in_front_of_an_app_without_a_sidecar_pools_its_connections() {
    let uninjected = nginx().replace("labels: {istio-injection: enabled}", "labels: {}");
    let snap = snapshot(&with(&uninjected, &gateway_route()));
    let f = only(&snap);
    assert!(
        f.message
            .starts_with("gateway idle timeout to web.shop.svc.cluster.local"),
        "{}",
        f.message
    );
    assert!(f.message.contains("503 UC at the gateway"), "{}", f.message);
    assert!(
        has_evidence(
            &f,
            "Service shop/web has no sidecar: the Envoy of gateway(s) istio-system/public"
        ),
        "{:#?}",
        f.evidence
    );
    assert!(has_evidence(
        &f,
        "the gateway's proxy keeps them for Istio default (1h)"
    ));
    assert_eq!(f.remediation.action, Action::Create);
    assert_eq!(f.remediation.target.name, "web-idle-timeout");
    assert_eq!(
        f.remediation.resource["spec"],
        json!({"host": FQDN, "trafficPolicy": {"connectionPool": {"http": {"idleTimeout": "58s"}}}})
    );

    // The service's own rule is patched where its level is in force.
    let own = dr(
        "web",
        "web",
        "{connectionPool: {http: {idleTimeout: 2h}, tcp: {maxConnections: 10}}}",
    );
    let snap = snapshot(&with(&with(&uninjected, &gateway_route()), &own));
    let f = only(&snap);
    assert_eq!(f.remediation.action, Action::Patch);
    assert_eq!(f.remediation.target.name, "web");
    assert_eq!(
        f.remediation.resource["spec"]["trafficPolicy"]["connectionPool"],
        json!({"http": {"idleTimeout": "58s"}, "tcp": {"maxConnections": 10}})
    );
    assert_patch_consistent(&snap, &f);

    // Already shorter than the app's: nothing to do.
    none(&with(
        &with(&uninjected, &gateway_route()),
        &dr("web", "web", "{connectionPool: {http: {idleTimeout: 60s}}}"),
    ));
    // A rule in the gateway's namespace wins there: meshmedic's fix would not apply; a rule
    // with a workloadSelector may pick the gateway's pods. Neither is judged.
    none(&with(
        &with(&uninjected, &gateway_route()),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: istio-system}\nspec:\n  host: web.shop.svc.cluster.local\n",
    ));
    none(&with(
        &with(&uninjected, &gateway_route()),
        &dr("web", "web", "{connectionPool: {http: {idleTimeout: 2h}}}").replace(
            "spec:\n",
            "spec:\n  workloadSelector: {matchLabels: {istio: ingressgateway}}\n",
        ),
    ));
    // No gateway route: nothing proxies to the app.
    none(&uninjected);
}

#[test]
fn a_tcp_port_gets_no_finding() {
    // The sidecar proxies a TCP port connection for connection: nothing is pooled or reused, so
    // the app closing an idle connection answers no request 503, whatever tcp.idleTimeout says.
    let declared = [
        "name: tcp-web, port: 80",
        "name: https, port: 80",
        "name: web, appProtocol: tls, port: 80",
        "name: web, port: 443",
        "name: web, protocol: UDP, port: 80",
    ];
    for port in declared {
        let tcp = nginx().replace("name: http, port: 80", port);
        assert!(tcp.contains(port), "{port}");
        none(&tcp);
        none(&with(
            &tcp,
            &dr("web", "web", "{connectionPool: {tcp: {idleTimeout: 2h}}}"),
        ));
    }

    // Beside an HTTP port, only the HTTP port is judged, and the fix sets http.idleTimeout.
    let both = nginx().replace(
        "ports: [{name: http, port: 80, targetPort: 8080}]",
        "ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp-raw, port: 81, targetPort: 8080}]",
    );
    assert!(both.contains("tcp-raw"));
    let snap = snapshot(&both);
    let f = only(&snap);
    assert!(has_evidence(&f, "port 80:"));
    assert!(
        !f.evidence.iter().any(|e| e.starts_with("port 81")),
        "{:?}",
        f.evidence
    );
    assert_eq!(
        f.remediation.resource["spec"]["trafficPolicy"],
        json!({"connectionPool": {"http": {"idleTimeout": "58s"}}})
    );

    // An HTTP port with only tcp.idleTimeout 0s (disabled): a finding, fixed with http.
    let snap = snapshot(&with(
        &nginx(),
        &dr("web", "web", "{connectionPool: {tcp: {idleTimeout: 0s}}}"),
    ));
    let f = only(&snap);
    assert!(has_evidence(&f, "disabled"));
    assert_eq!(
        f.remediation.resource["spec"]["trafficPolicy"]["connectionPool"],
        json!({"http": {"idleTimeout": "58s"}, "tcp": {"idleTimeout": "0s"}})
    );
    assert_patch_consistent(&snap, &f);
}

#[test]
fn proposed_timeout_is_the_app_minus_a_margin() {
    let s = Duration::from_secs;
    assert_eq!(proposed_timeout(s(75)), s(67));
    assert_eq!(proposed_timeout(s(5)), s(4));
    assert_eq!(proposed_timeout(s(60)), s(54));
    assert_eq!(
        proposed_timeout(s(65)),
        s(58),
        "whole seconds, rounded down"
    );
    assert_eq!(proposed_timeout(s(130)), s(117));
    assert_eq!(proposed_timeout(s(3)), s(2));
    assert_eq!(proposed_timeout(s(2)), s(1));
    assert_eq!(
        proposed_timeout(Duration::from_millis(2500)),
        Duration::from_millis(1500)
    );
    assert_eq!(proposed_timeout(s(1)), Duration::from_millis(500));
    assert_eq!(
        proposed_timeout(Duration::from_millis(400)),
        Duration::from_millis(200)
    );
    for app in [1u64, 2, 5, 20, 75, 3600] {
        assert!(proposed_timeout(s(app)) < s(app), "{app}s");
    }
}

/// A Service that also exposes the proxy's merged telemetry (15020, as kyma and others do for
/// third-party scrapers): nginx does not serve that port, the sidecar does not even capture it,
/// so only port 80 is judged. Before, 15020 was judged as nginx's too and got its own problem.
#[test]
fn a_port_of_the_proxys_own_is_not_judged_as_the_apps() {
    let yaml = nginx().replace(
        "ports: [{name: http, port: 80, targetPort: 8080}]",
        "ports: [{name: http, port: 80, targetPort: 8080}, {name: http-status, port: 15020, targetPort: 15020}]",
    );
    let f = only(&snapshot(&yaml));
    assert!(!has_evidence(&f, "15020"), "{:?}", f.evidence);
    assert!(has_evidence(&f, "port 80:"), "{:?}", f.evidence);
}

/// nginx with its configuration mounted from a ConfigMap: the configuration decides, not the
/// image's default. (AliyunContainerService/asm-labs' multi-buffer sample mounts its own over
/// `/etc/nginx`; meshmedic judged it at nginx's 75s.)
fn nginx_with_config(config_map: Option<&str>) -> String {
    let deployment = format!(
        r#"{NS}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports: [{{containerPort: 8080}}]
        volumeMounts:
        - {{name: conf, mountPath: /etc/nginx/nginx.conf, subPath: nginx.conf}}
        - {{name: certs, mountPath: /etc/nginx/certs}}
      volumes:
      - {{name: conf, configMap: {{name: web-nginx}}}}
      - {{name: certs, secret: {{secretName: web-tls}}}}
{SERVICE}"#
    );
    match config_map {
        None => deployment,
        Some(text) => {
            let text = text.replace('\n', "\n    ");
            format!(
                "{deployment}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web-nginx, namespace: shop}}\ndata:\n  nginx.conf: |\n    {text}\n  unused.conf: |\n    keepalive_timeout 1s;\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: unmounted, namespace: shop}}\n"
            )
        }
    }
}

#[test]
fn nginx_configuration_mounted_from_a_config_map_decides() {
    let conf = "events {}\nhttp {\n  upstream app { server 127.0.0.1:9000; keepalive_timeout 5s; }\n  keepalive_timeout 20s;\n  server { listen 8080; }\n}";
    let snap = snapshot(&nginx_with_config(Some(conf)));
    let f = only(&snap);
    assert!(
        has_evidence(
            &f,
            "after 20s (keepalive_timeout 20s in /etc/nginx/nginx.conf from ConfigMap shop/web-nginx"
        ),
        "{:?}",
        f.evidence
    );
    assert_eq!(
        f.remediation
            .resource
            .pointer("/spec/trafficPolicy/connectionPool/http/idleTimeout"),
        Some(&json!("18s"))
    );
    assert_patch_consistent(&snap, &f);
    // The mounted ConfigMap is read; the other one is skipped unread.
    assert_eq!(snap.skipped.get("v1/ConfigMap"), Some(&1));

    // The same nginx.conf without the directive: nginx's built-in 75s, not the image's 65s.
    let snap = snapshot(&nginx_with_config(Some(
        "events {}\nhttp { server { listen 8080; } }",
    )));
    assert!(has_evidence(
        &only(&snap),
        "nginx built-in keepalive_timeout 75s"
    ));
    // keep-alive off: nothing is pooled across requests, no finding.
    none(&nginx_with_config(Some("http { keepalive_timeout 0; }")));
    // The ConfigMap is not in the input: what nginx does is unknown, no finding.
    none(&nginx_with_config(None));
}
