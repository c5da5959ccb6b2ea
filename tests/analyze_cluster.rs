//! YAML as kubectl reads it, judged by kubectl and the API server; and `meshmedic analyze
//! --cluster` against a real API server, read-only, with the operator's own identity. Needs
//! `eval "$(scripts/k8s-test-env.sh)"` first.

mod support;

use std::process::{Command, Output};

use kube::api::{Api, DynamicObject};
use meshmedic::snapshot::SnapshotOptions;
use meshmedic::snapshot::load::{parse_documents, read_paths};
use serde_json::{Value, json};
use support::control_plane;

fn kubectl(args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .arg("--kubeconfig")
        .arg(control_plane().kubeconfig())
        .output()
        .expect("kubectl is installed")
}

fn meshmedic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshmedic"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("meshmedic runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The scalars of a YAML 1.1 manifest, as kubectl sends them and the API server stores them,
/// against meshmedic's reading of the same file.
const SCALARS: &str = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: scalars
  namespace: NAMESPACE
spec:
  configPatches:
  - applyTo: CLUSTER
    patch:
      operation: MERGE
      value:
        octal: 0400
        notOctal: 08
        octalO: 0o17
        hex: 0x1F
        hexUpper: 0X1F
        binary: 0b101
        negativeHex: -0x1F
        plus: +12
        underscores: 1_000
        float: 1.5
        integralFloat: 400.0
        exponent: 1e3
        leadingDot: .5
        huge: 1e21
        sexagesimal: 1:20
        date: 2024-01-01
        bools: [y, Y, yes, Yes, YES, on, On, ON, true, True, TRUE, n, N, no, No, NO, off, Off, OFF, false, False, FALSE]
        notBools: [yES, tRUE, oN]
        nulls: [~, null, Null, NULL]
        quoted: "0400"
        single: 'yes'
        block: |
          on
        tagged: !!str 0x10
        taggedInt: !!int "12"
        y: n
        off: Yes
        0x11: hex key
        1.5: float key
        "0x12": quoted key
        base: &base {p: 1, q: 2}
        merged:
          q: 9
          <<: *base
          r: 3
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: scalars
  namespace: NAMESPACE
spec:
  replicas: 0x0
  revisionHistoryLimit: 0o12
  progressDeadlineSeconds: 6_00
  selector:
    matchLabels: {app: scalars}
  template:
    metadata:
      labels: {app: scalars, canary: "no"}
    spec:
      automountServiceAccountToken: no
      enableServiceLinks: Off
      terminationGracePeriodSeconds: 3e1
      containers:
      - name: app
        image: nginx:1.27
        ports:
        - containerPort: 0x1F90
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 10.0
        volumeMounts:
        - {name: config, mountPath: /etc/app, readOnly: yes}
      volumes:
      - name: config
        configMap: {name: scalars, defaultMode: 0400}
"#;

const DEPLOYMENT_FIELDS: [&str; 11] = [
    "/spec/replicas",
    "/spec/revisionHistoryLimit",
    "/spec/progressDeadlineSeconds",
    "/spec/template/metadata/labels",
    "/spec/template/spec/automountServiceAccountToken",
    "/spec/template/spec/enableServiceLinks",
    "/spec/template/spec/terminationGracePeriodSeconds",
    "/spec/template/spec/containers/0/ports/0/containerPort",
    "/spec/template/spec/containers/0/readinessProbe/periodSeconds",
    "/spec/template/spec/containers/0/volumeMounts/0/readOnly",
    "/spec/template/spec/volumes/0/configMap/defaultMode",
];

#[tokio::test]
async fn yaml_scalars_read_as_kubectl_and_the_api_server_read_them() {
    let cp = control_plane();
    let admin = cp.admin();
    let ns = support::namespace(&admin, "yaml11").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("scalars.yaml");
    let manifest = SCALARS.replace("NAMESPACE", &ns);
    std::fs::write(&file, &manifest).expect("write");

    let out = kubectl(&["apply", "-f", file.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "kubectl apply: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let ours = parse_documents("scalars.yaml", &manifest).expect("meshmedic reads it");

    let get = |kind: &str, api_version: &str| {
        let admin = admin.clone();
        let ns = ns.clone();
        let (kind, api_version) = (kind.to_string(), api_version.to_string());
        async move {
            let (api, _, _): (Api<DynamicObject>, _, _) =
                support::dynamic_api(&admin, &api_version, &kind, Some(&ns))
                    .await
                    .expect("kind is served");
            serde_json::to_value(api.get("scalars").await.expect("stored")).expect("json")
        }
    };
    let stored = get("EnvoyFilter", "networking.istio.io/v1alpha3").await;
    let pointer = "/spec/configPatches/0/patch/value";
    let server_value = stored.pointer(pointer).expect("stored value");
    let our_value = ours[0].1.pointer(pointer).expect("our value");
    assert_eq!(
        our_value,
        server_value,
        "meshmedic:\n{}\nAPI server:\n{}",
        serde_json::to_string_pretty(our_value).unwrap_or_default(),
        serde_json::to_string_pretty(server_value).unwrap_or_default()
    );
    // Spot checks that the comparison means what it says.
    assert_eq!(server_value["octal"], 256);
    assert_eq!(server_value["notOctal"], 8);
    assert_eq!(server_value["sexagesimal"], "1:20");
    assert_eq!(server_value["true"], false);
    assert_eq!(server_value["merged"], json!({"p": 1, "q": 2, "r": 3}));

    let stored = get("Deployment", "apps/v1").await;
    for field in DEPLOYMENT_FIELDS {
        assert_eq!(
            ours[1].1.pointer(field),
            stored.pointer(field),
            "{field}: meshmedic vs the API server"
        );
    }
    assert_eq!(
        stored.pointer("/spec/template/spec/volumes/0/configMap/defaultMode"),
        Some(&json!(256))
    );
}

/// What kubectl refuses, meshmedic refuses too, naming the document and line.
#[tokio::test]
async fn yaml_kubectl_rejects_is_reported_by_meshmedic() {
    let cp = control_plane();
    let ns = support::namespace(&cp.admin(), "yaml11-bad").await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body, message) in [
        (
            "bool-label.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: NS\n  labels:\n    canary: no\nspec:\n  ports: [{port: 80}]\n",
            "metadata.labels",
        ),
        (
            "infinity.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\n  namespace: NS\nspec:\n  ports: [{port: .inf}]\n",
            "kubectl rejects",
        ),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, body.replace("NS", &ns)).expect("write");
        let out = kubectl(&["apply", "-f", file.to_str().expect("utf-8")]);
        assert!(!out.status.success(), "kubectl accepted {name}");
        let mut input = read_paths(std::slice::from_ref(&file)).expect("reads");
        let (_, read) = input.build(SnapshotOptions::default()).expect("builds");
        assert_eq!(read, 0, "{name}");
        let bad = input.invalid_documents.first().expect("reported");
        assert!(bad.to_string().contains(message), "{name}: {bad}");
        assert!(bad.line > 1, "{name}: {bad}");
    }
}

fn web(namespace: Option<&str>, listen: &str) -> Value {
    let mut metadata = json!({"name": "web"});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx:1.27",
                    "args": ["--listen", listen],
                    "ports": [{"containerPort": 8080}],
                }]},
            },
        },
    })
}

fn localhost_findings(out: &Output, ns: &str) -> usize {
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("json: {e}\n{}", text(&out.stderr)));
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "localhost-binding" && f["namespace"] == ns)
        .count()
}

#[tokio::test]
async fn analyze_cluster_reads_the_live_cluster_with_the_operators_permissions() {
    support::operator::install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let ns = support::namespace(&admin, "analyze-cluster").await;
    support::apply(
        &admin,
        &json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}}),
    )
    .await
    .expect("label the namespace");
    support::apply(&admin, &web(Some(&ns), "127.0.0.1:8080"))
        .await
        .expect("deployment");
    support::apply(
        &admin,
        &json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]}}),
    )
    .await
    .expect("service");
    let kubeconfig = cp.kubeconfig().to_str().expect("utf-8").to_string();
    let base = [
        "analyze",
        "--cluster",
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "meshmedic",
        "-o",
        "json",
    ];

    // The operator's ServiceAccount (deploy/ RBAC) may read everything analyze needs.
    let mut args = base.to_vec();
    args.extend(["-n", &ns]);
    let out = meshmedic(&args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(localhost_findings(&out, &ns), 1, "{err}");
    assert!(err.contains("reading the cluster"), "{err}");
    assert!(err.contains("Deployment: 1"), "{err}");
    assert!(!err.contains("forbidden"), "{err}");

    // A namespace the cluster defines with no mesh label: "0 findings" comes with the reason.
    let plain = support::namespace(&admin, "analyze-cluster-plain").await;
    support::apply(&admin, &web(Some(&plain), "127.0.0.1:8080"))
        .await
        .expect("deployment");
    let mut args = base.to_vec();
    args.extend(["-n", &plain]);
    let out = meshmedic(&args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(localhost_findings(&out, &plain), 0, "{err}");
    assert!(
        err.contains(&format!("defines with no mesh label ({plain})")),
        "{err}"
    );
    assert!(!err.contains("--assume-injected"), "{err}");

    // A local fix laid over the cluster: the object without a namespace lands in -n's.
    let dir = tempfile::tempdir().expect("tempdir");
    let fixed = dir.path().join("web.yaml");
    std::fs::write(
        &fixed,
        serde_json::to_string(&web(None, "0.0.0.0:8080")).expect("json"),
    )
    .expect("write");
    let mut args = base.to_vec();
    args.extend(["-n", &ns, fixed.to_str().expect("utf-8")]);
    let out = meshmedic(&args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(localhost_findings(&out, &ns), 0, "{err}");
    assert!(err.contains("replace 1 cluster object"), "{err}");

    // Every namespace; and the same in pages of 2 objects (list continue tokens).
    let mut args = base.to_vec();
    args.push("-A");
    let out = meshmedic(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(localhost_findings(&out, &ns), 1);
    args.extend(["--page-size", "2"]);
    let paged = meshmedic(&args);
    let err = text(&paged.stderr);
    assert_eq!(paged.status.code(), Some(0), "{err}");
    assert!(err.contains("so far"), "{err}");
    let findings =
        |o: &Output| serde_json::from_slice::<Value>(&o.stdout).expect("json")["findings"].clone();
    assert_eq!(findings(&paged), findings(&out));

    // Read-only: nothing was written (the web Deployment is as the admin left it).
    let (api, _, _) = support::dynamic_api(&admin, "apps/v1", "Deployment", Some(&ns))
        .await
        .expect("api");
    let stored = api.get("web").await.expect("web");
    assert_eq!(stored.metadata.generation, Some(1));

    // A context that does not exist is a clear error.
    let out = meshmedic(&[
        "analyze",
        "--cluster",
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("kubeconfig"),
        "{}",
        text(&out.stderr)
    );
}
