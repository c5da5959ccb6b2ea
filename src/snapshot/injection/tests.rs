//! Injection as Istio decides it, from YAML fixtures written for meshmedic.

use super::Dataplane;
use crate::analysis::test_support::{snapshot, snapshot_with};
use crate::snapshot::{Snapshot, SnapshotOptions};

/// A Deployment `app` in `namespace` with pod-template `labels` and `annotations` (flow mappings)
/// and an optional `spec` addition (e.g. `hostNetwork: true`).
fn deployment(namespace: &str, labels: &str, annotations: &str, extra_spec: &str) -> String {
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {labels}, annotations: {annotations}}}
    spec: {{containers: [{{name: app, image: "example/app:1"}}]{extra_spec}}}
"#
    )
}

fn namespace(name: &str, labels: &str) -> String {
    format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n")
}

fn plane(snap: &Snapshot) -> Dataplane {
    snap.dataplane(&snap.workloads[0])
}

fn injected(yaml: &str) -> bool {
    let snap = snapshot(yaml);
    snap.is_injected(&snap.workloads[0])
}

const APP: &str = "{app: app}";

#[test]
fn the_namespace_label_injects_unless_the_pod_says_false() {
    let ns = namespace("shop", "{istio-injection: enabled}");
    assert!(injected(&format!(
        "{ns}{}",
        deployment("shop", APP, "{}", "")
    )));
    assert!(!injected(&format!(
        "{ns}{}",
        deployment(
            "shop",
            r#"{app: app, sidecar.istio.io/inject: "false"}"#,
            "{}",
            ""
        )
    )));
    assert!(!injected(&format!(
        "{ns}{}",
        deployment("shop", APP, r#"{sidecar.istio.io/inject: "false"}"#, "")
    )));
    // The label wins over the annotation.
    assert!(injected(&format!(
        "{ns}{}",
        deployment(
            "shop",
            r#"{app: app, sidecar.istio.io/inject: "true"}"#,
            r#"{sidecar.istio.io/inject: "false"}"#,
            ""
        )
    )));
}

#[test]
fn istio_injection_disabled_wins_over_the_pod() {
    let ns = namespace("shop", "{istio-injection: disabled, istio.io/rev: canary}");
    assert!(!injected(&format!(
        "{ns}{}",
        deployment(
            "shop",
            r#"{app: app, sidecar.istio.io/inject: "true"}"#,
            "{}",
            ""
        )
    )));
}

#[test]
fn a_revision_label_injects_with_that_revision() {
    let ns = namespace("shop", "{istio.io/rev: canary}");
    let snap = snapshot(&format!("{ns}{}", deployment("shop", APP, "{}", "")));
    assert!(matches!(plane(&snap), Dataplane::Sidecar { revision, .. } if revision == "canary"));
}

#[test]
fn in_an_unlabelled_namespace_only_the_pod_label_injects() {
    let ns = namespace("shop", "{}");
    assert!(injected(&format!(
        "{ns}{}",
        deployment(
            "shop",
            r#"{app: app, sidecar.istio.io/inject: "true"}"#,
            "{}",
            ""
        )
    )));
    // The annotation alone matches no webhook.
    assert!(!injected(&format!(
        "{ns}{}",
        deployment("shop", APP, r#"{sidecar.istio.io/inject: "true"}"#, "")
    )));
    assert!(injected(&format!(
        "{ns}{}",
        deployment("shop", r#"{app: app, istio.io/rev: 1-28}"#, "{}", "")
    )));
    assert!(!injected(&format!(
        "{ns}{}",
        deployment("shop", APP, "{}", "")
    )));
}

const INJECTOR_BY_DEFAULT: &str = r#"---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  values: '{"sidecarInjectorWebhook":{"enableNamespacesByDefault":true}}'
  config: "policy: enabled\n"
"#;

#[test]
fn enable_namespaces_by_default_injects_everywhere_but_the_system_namespaces() {
    let ns = namespace("shop", "{}");
    assert!(injected(&format!(
        "{ns}{}{INJECTOR_BY_DEFAULT}",
        deployment("shop", APP, "{}", "")
    )));
    assert!(!injected(&format!(
        "{}{INJECTOR_BY_DEFAULT}",
        deployment("kube-system", APP, "{}", "")
    )));
    assert!(!injected(&format!(
        "{ns}{}{INJECTOR_BY_DEFAULT}",
        deployment("shop", APP, r#"{sidecar.istio.io/inject: "false"}"#, "")
    )));
}

#[test]
fn policy_disabled_injects_only_pods_that_ask() {
    let injector = INJECTOR_BY_DEFAULT
        .replace(
            "\"enableNamespacesByDefault\":true",
            "\"enableNamespacesByDefault\":false",
        )
        .replace("policy: enabled", "policy: disabled");
    let ns = namespace("shop", "{istio-injection: enabled}");
    assert!(!injected(&format!(
        "{ns}{}{injector}",
        deployment("shop", APP, "{}", "")
    )));
    assert!(injected(&format!(
        "{ns}{}{injector}",
        deployment("shop", APP, r#"{sidecar.istio.io/inject: "true"}"#, "")
    )));
}

#[test]
fn host_network_pods_are_never_injected() {
    let ns = namespace("shop", "{istio-injection: enabled}");
    assert!(!injected(&format!(
        "{ns}{}",
        deployment("shop", APP, "{}", ", hostNetwork: true")
    )));
}

#[test]
fn assume_injected_covers_namespaces_absent_from_the_input() {
    let yaml = deployment("shop", APP, "{}", "");
    assert!(!injected(&yaml), "nothing says it is injected");
    let assume = SnapshotOptions {
        assume_injected: true,
        ..SnapshotOptions::default()
    };
    let snap = snapshot_with(&yaml, assume.clone());
    assert!(snap.is_injected(&snap.workloads[0]));
    // A pod that opts out stays out, and a namespace the input shows keeps its labels.
    let snap = snapshot_with(
        &deployment(
            "shop",
            r#"{app: app, sidecar.istio.io/inject: "false"}"#,
            "{}",
            "",
        ),
        assume.clone(),
    );
    assert!(!snap.is_injected(&snap.workloads[0]));
    let snap = snapshot_with(
        &format!("{}{yaml}", namespace("shop", "{}")),
        assume.clone(),
    );
    assert!(!snap.is_injected(&snap.workloads[0]));
    // Istio's own namespace is not assumed injected.
    let snap = snapshot_with(&deployment("istio-system", APP, "{}", ""), assume);
    assert!(!snap.is_injected(&snap.workloads[0]));
}

#[test]
fn what_assume_injected_would_bring_into_the_mesh_is_counted_only_when_nothing_is_meshed() {
    let left_out = |yaml: &str| snapshot(yaml).left_out_for_want_of_namespace_labels();
    let shop = deployment("shop", APP, "{}", "");
    assert_eq!(left_out(&shop), 1, "its namespace is not in the input");
    // Istio's namespace, the system namespaces and hostNetwork pods are never injected.
    for ns in ["istio-system", "kube-system"] {
        assert_eq!(left_out(&deployment(ns, APP, "{}", "")), 0, "{ns}");
    }
    assert_eq!(
        left_out(&deployment("shop", APP, "{}", ", hostNetwork: true")),
        0
    );
    // A Namespace in the input says how it is labelled, even unlabelled.
    assert_eq!(left_out(&format!("{}{shop}", namespace("shop", "{}"))), 0);
    // One workload with a sidecar: the input says how it is meshed.
    let meshed = deployment(
        "cart",
        r#"{app: app, sidecar.istio.io/inject: "true"}"#,
        "{}",
        "",
    );
    assert_eq!(left_out(&format!("{shop}{meshed}")), 0);
    let ambient = format!(
        "{}{}",
        namespace("cart", r#"{istio.io/dataplane-mode: ambient}"#),
        deployment("cart", APP, "{}", "")
    );
    assert_eq!(left_out(&format!("{shop}{ambient}")), 0);
    // With the flag there is nothing left to suggest.
    let assume = SnapshotOptions {
        assume_injected: true,
        ..SnapshotOptions::default()
    };
    assert_eq!(
        snapshot_with(&shop, assume).left_out_for_want_of_namespace_labels(),
        0
    );
}

#[test]
fn namespaces_the_input_defines_with_no_mesh_label_are_named_when_nothing_is_meshed() {
    let left_out = |yaml: &str, assume_injected: bool| {
        let options = SnapshotOptions {
            assume_injected,
            ..SnapshotOptions::default()
        };
        snapshot_with(yaml, options)
            .left_out_by_unlabelled_namespaces()
            .into_iter()
            .map(|(ns, n)| (ns.to_string(), n))
            .collect::<Vec<_>>()
    };
    // kube-prometheus: `monitoring` is defined, unlabelled; the flag does not change it.
    let monitoring = format!(
        "{}{}",
        namespace(
            "monitoring",
            "{pod-security.kubernetes.io/warn: privileged}"
        ),
        deployment("monitoring", APP, "{}", "")
    );
    for assume in [false, true] {
        assert_eq!(
            left_out(&monitoring, assume),
            [("monitoring".to_string(), 1)]
        );
    }
    // Labelled out of the mesh on purpose, or in ambient: nothing to say.
    for labels in [
        "{istio-injection: disabled}",
        "{istio.io/rev: canary}",
        "{istio.io/dataplane-mode: none}",
    ] {
        let yaml = format!(
            "{}{}",
            namespace("monitoring", labels),
            deployment("monitoring", APP, "{}", "")
        );
        assert!(left_out(&yaml, false).is_empty(), "{labels}");
    }
    // A namespace absent from the input is the other note's; hostNetwork pods are never meshed.
    assert!(left_out(&deployment("shop", APP, "{}", ""), false).is_empty());
    let host = format!(
        "{}{}",
        namespace("monitoring", "{}"),
        deployment("monitoring", APP, "{}", ", hostNetwork: true")
    );
    assert!(left_out(&host, false).is_empty());
    // One workload with a sidecar: the input says how it is meshed.
    let meshed = format!(
        "{}{}",
        namespace("shop", "{istio-injection: enabled}"),
        deployment("shop", APP, "{}", "")
    );
    assert!(left_out(&format!("{monitoring}{meshed}"), false).is_empty());
}

/// Per namespace, for the operator: a namespace whose workloads are all out of the mesh is
/// named even when another namespace is meshed (the notes above speak of the whole input).
#[test]
fn namespaces_with_nothing_meshed_are_named_one_by_one() {
    let nothing = |yaml: &str| {
        snapshot(yaml)
            .namespaces_with_nothing_meshed()
            .into_iter()
            .map(|(ns, n)| (ns.to_string(), n))
            .collect::<Vec<_>>()
    };
    let meshed = format!(
        "{}{}",
        namespace("shop", "{istio-injection: enabled}"),
        deployment("shop", APP, "{}", "")
    );
    let off = format!(
        "{}{}",
        namespace("batch", "{istio-injection: disabled}"),
        deployment("batch", APP, "{}", "")
    );
    let unlabelled = format!(
        "{}{}",
        namespace("web", "{}"),
        deployment("web", APP, "{}", "")
    );
    assert_eq!(
        nothing(&format!("{meshed}{off}{unlabelled}")),
        [("batch".to_string(), 1), ("web".to_string(), 1)]
    );
    assert!(nothing(&meshed).is_empty());
    // A pod that asks for the sidecar in an unlabelled namespace is meshed: nothing to say.
    let asks = format!(
        "{}{}",
        namespace("web", "{}"),
        deployment(
            "web",
            "{app: app, sidecar.istio.io/inject: \"true\"}",
            "{}",
            ""
        )
    );
    assert!(nothing(&asks).is_empty());
    // Only hostNetwork pods (never meshed) or the system namespaces: nothing to say.
    let host = format!(
        "{}{}",
        namespace("web", "{}"),
        deployment("web", APP, "{}", ", hostNetwork: true")
    );
    assert!(nothing(&host).is_empty());
    assert!(nothing(&deployment("kube-system", APP, "{}", "")).is_empty());
}

#[test]
fn revision_tags_pick_their_revisions_control_plane() {
    let yaml = format!(
        "{}{}{}",
        namespace("shop", "{istio.io/rev: prod}"),
        deployment("shop", APP, "{}", ""),
        r#"---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: istio-revision-tag-prod, labels: {istio.io/tag: prod, istio.io/rev: 1-26}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod-1-26, namespace: istio-system, labels: {istio.io/rev: 1-26}}
spec:
  selector: {matchLabels: {app: istiod}}
  template:
    metadata: {labels: {app: istiod}}
    spec: {containers: [{name: discovery, image: "docker.io/istio/pilot:1.26.2"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod, namespace: istio-system}
spec:
  selector: {matchLabels: {app: istiod}}
  template:
    metadata: {labels: {app: istiod}}
    spec: {containers: [{name: discovery, image: "docker.io/istio/pilot:1.30.1"}]}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {nodeInfo: {kubeletVersion: v1.34.0}}
"#
    );
    let snap = snapshot(&yaml);
    let w = snap.workload("Deployment", "shop", "app").expect("app");
    match snap.dataplane(w) {
        Dataplane::Sidecar {
            native, revision, ..
        } => {
            assert_eq!(revision, "prod");
            assert!(!native, "the 1.26 control plane injects classic sidecars");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        snap.profile().istio.minor,
        30,
        "the default revision's version"
    );
    assert!(snap.profile().native_sidecars("default").0);
}

#[test]
fn gateways_and_ambient() {
    let ns = namespace("shop", "{istio-injection: enabled}");
    let snap = snapshot(&format!(
        "{ns}{}",
        deployment(
            "shop",
            "{istio: ingressgateway}",
            "{inject.istio.io/templates: gateway}",
            ""
        )
    ));
    assert!(matches!(plane(&snap), Dataplane::Gateway { .. }));
    assert!(
        snap.is_injected(&snap.workloads[0]),
        "a gateway's Envoy still applies L7 rules"
    );

    let ambient = namespace("shop", "{istio.io/dataplane-mode: ambient}");
    let snap = snapshot(&format!("{ambient}{}", deployment("shop", APP, "{}", "")));
    assert_eq!(plane(&snap), Dataplane::Ambient { waypoint: false });
    assert!(!snap.is_injected(&snap.workloads[0]));
    let with_waypoint = namespace(
        "shop",
        "{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}",
    );
    let snap = snapshot(&format!(
        "{with_waypoint}{}",
        deployment("shop", APP, "{}", "")
    ));
    assert_eq!(plane(&snap), Dataplane::Ambient { waypoint: true });
    assert!(
        snap.is_injected(&snap.workloads[0]),
        "the waypoint applies L7 rules"
    );
    // A pod that opts out of ambient.
    let snap = snapshot(&format!(
        "{ambient}{}",
        deployment(
            "shop",
            "{app: app, istio.io/dataplane-mode: none}",
            "{}",
            ""
        )
    ));
    assert_eq!(plane(&snap), Dataplane::None);
    // Sidecar injection wins over ambient (the CNI skips pods with a sidecar).
    let both = namespace(
        "shop",
        "{istio-injection: enabled, istio.io/dataplane-mode: ambient}",
    );
    let snap = snapshot(&format!("{both}{}", deployment("shop", APP, "{}", "")));
    assert!(plane(&snap).is_sidecar());
}

#[test]
fn ambient_keeps_the_l7_causes_only_behind_a_waypoint() {
    use crate::analysis::{Code, analyze};
    // Istio's default retry policy lacks `reset`: a missing-reset-retry wherever an Envoy routes.
    let service = r#"---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: shop}
spec: {selector: {app: app}, ports: [{name: http, port: 80, targetPort: 8080}]}
"#;
    let codes = |ns_labels: &str| -> Vec<Code> {
        let snap = snapshot(&format!(
            "{}{}{service}",
            namespace("shop", ns_labels),
            deployment("shop", APP, "{}", "")
        ));
        analyze(&snap).findings.iter().map(|f| f.code).collect()
    };
    assert_eq!(
        codes("{istio-injection: enabled}"),
        vec![Code::MissingResetRetry]
    );
    assert!(
        codes("{istio.io/dataplane-mode: ambient}").is_empty(),
        "ztunnel has no L7 retries"
    );
    assert_eq!(
        codes("{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}"),
        vec![Code::MissingResetRetry]
    );
}

/// `istio-proxy` beside an app is a sidecar already in place (`istioctl kube-inject` output);
/// `istio-proxy` alone is not: ztunnel's DaemonSet (Istio's `ztunnel` chart, as rendered in
/// kubeflow/manifests) names its only container so, runs `proxy ztunnel`, and opts out of
/// injection. It was read as a pod with a classic sidecar and got a sidecar-lifecycle finding.
#[test]
fn istio_proxy_is_a_sidecar_only_beside_an_app() {
    let snap = snapshot(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: shop}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata:
      labels: {app: app}
      annotations: {sidecar.istio.io/status: '{"containers":["istio-proxy"]}'}
    spec:
      containers:
      - {name: app, image: "example/app:1"}
      - {name: istio-proxy, image: "docker.io/istio/proxyv2:1.29.1", args: [proxy, sidecar]}
"#,
    );
    assert!(
        matches!(plane(&snap), Dataplane::Sidecar { native: false, .. }),
        "{:?}",
        plane(&snap)
    );

    let ztunnel = r#"---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ztunnel, namespace: istio-system}
spec:
  selector: {matchLabels: {app: ztunnel}}
  template:
    metadata:
      labels: {app: ztunnel, istio.io/dataplane-mode: none, sidecar.istio.io/inject: 'false'}
      annotations: {sidecar.istio.io/inject: 'false'}
    spec:
      containers:
      - {name: istio-proxy, image: "docker.io/istio/ztunnel:1.29.1", args: [proxy, ztunnel]}
"#;
    let snap = snapshot(ztunnel);
    assert_eq!(plane(&snap), Dataplane::None);
    assert!(!snap.is_injected(&snap.workloads[0]));
    assert!(
        crate::analysis::analyze(&snap).findings.is_empty(),
        "no finding for ztunnel"
    );
    // The same pod in an injecting namespace, had it not opted out, would get a sidecar.
    let snap = snapshot(&format!(
        "{}{}",
        namespace("istio-system", "{istio-injection: enabled}"),
        ztunnel.replace("sidecar.istio.io/inject: 'false'", "tier: node")
    ));
    assert!(plane(&snap).is_sidecar(), "{:?}", plane(&snap));
}

/// An `istio-proxy` container written beside an app sees the app's traffic only where something
/// redirects it: the injector's status annotation (Istio's CNI acts on no other pod) or an
/// `istio-iptables` init container. Istio 1.5's Prometheus (christian-posta/istio-demos,
/// `istio-1.5.yaml`) ran one only to fetch certificates, with `sidecar.istio.io/inject: "false"`
/// and no init container; it got an mTLS probe finding at error level for probes that never
/// reach the proxy.
#[test]
fn a_proxy_written_into_the_pod_is_a_sidecar_only_where_traffic_is_redirected() {
    let pod = |annotations: &str, init: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: prometheus, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{app: prometheus}}}}
  template:
    metadata:
      labels: {{app: prometheus}}
      annotations: {annotations}
    spec:
      initContainers: {init}
      containers:
      - {{name: prometheus, image: "docker.io/prom/prometheus:v2.15.1", ports: [{{containerPort: 9090}}],
          readinessProbe: {{httpGet: {{path: /-/ready, port: 9090}}}}}}
      - {{name: istio-proxy, image: "docker.io/istio/proxyv2:1.5.0", args: [proxy, sidecar]}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec: {{mtls: {{mode: STRICT}}}}
"#
        )
    };
    let no_inject = r#"{sidecar.istio.io/inject: "false"}"#;
    let bystander = snapshot(&pod(no_inject, "[]"));
    assert_eq!(plane(&bystander), Dataplane::None);
    assert!(
        crate::analysis::analyze(&bystander).findings.is_empty(),
        "{:?}",
        crate::analysis::analyze(&bystander).findings
    );
    for init in [
        r#"[{name: istio-init, image: "docker.io/istio/proxyv2:1.5.0"}]"#,
        r#"[{name: mesh-init, image: "docker.io/istio/proxyv2:1.5.0", args: [istio-iptables, -p, "15001"]}]"#,
    ] {
        let snap = snapshot(&pod(no_inject, init));
        assert!(plane(&snap).is_sidecar(), "{init}: {:?}", plane(&snap));
    }
    let kube_injected = snapshot(&pod(
        r#"{sidecar.istio.io/status: '{"containers":["istio-proxy"]}'}"#,
        "[]",
    ));
    assert!(plane(&kube_injected).is_sidecar());
    assert!(
        !crate::analysis::analyze(&kube_injected).findings.is_empty(),
        "the same probes behind a sidecar that captures them are a finding"
    );
}
