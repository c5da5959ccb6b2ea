//! `meshmedic analyze` end to end: the golden output on the bundled examples, exit codes, the
//! YAML stream, and clear errors for bad input.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use meshmedic::analysis::analyze;
use meshmedic::remediation::apply;
use meshmedic::snapshot::SnapshotOptions;
use meshmedic::snapshot::load::snapshot_from_paths;
use serde_json::Value;

fn meshmedic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshmedic"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("meshmedic runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const GOLDEN: &str = "tests/fixtures/shop.golden.json";

/// The JSON contract on examples/shop. `MESHMEDIC_UPDATE_GOLDEN=1` rewrites the golden file;
/// review its diff like code.
#[test]
fn golden_json_on_the_shop_example() {
    let out = meshmedic(&["analyze", "examples/shop", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let actual: Value = serde_json::from_slice(&out.stdout).expect("json output");
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("MESHMEDIC_UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&actual).expect("serialise") + "\n";
        std::fs::write(&golden_path, text).expect("write golden");
    }
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).expect("golden file exists"))
            .expect("golden is json");
    assert_eq!(actual, golden, "analyze -o json differs from {GOLDEN}");
}

#[test]
fn shop_example_has_every_cause_and_no_finding_on_healthy_services() {
    let out = meshmedic(&["analyze", "examples/shop", "-o", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json output");
    let findings = report["findings"].as_array().expect("findings");
    let codes: std::collections::BTreeSet<&str> =
        findings.iter().filter_map(|f| f["code"].as_str()).collect();
    for code in [
        "idle-timeout-mismatch",
        "missing-reset-retry",
        "listener-change-503",
        "sidecar-lifecycle",
        "localhost-binding",
        "mtls-probe-failure",
    ] {
        assert!(codes.contains(code), "no {code} finding");
    }
    for healthy in ["frontend", "inventory", "search"] {
        assert!(
            !findings.iter().any(|f| f["service"] == healthy),
            "unexpected finding for {healthy}"
        );
    }
    // The contract's field names.
    for f in findings {
        for key in [
            "code",
            "severity",
            "namespace",
            "service",
            "workload",
            "message",
            "evidence",
            "remediation",
        ] {
            assert!(f.get(key).is_some(), "finding lacks {key}");
        }
        for key in ["action", "target", "patch", "resource", "safeToAutoApply"] {
            assert!(
                f["remediation"].get(key).is_some(),
                "remediation lacks {key}"
            );
        }
    }
}

#[test]
fn every_patch_applied_to_its_input_gives_the_corrected_resource() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let snapshot = snapshot_from_paths(&[dir], SnapshotOptions::default()).expect("examples load");
    let report = analyze(&snapshot);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mut patched = 0;
    for f in &report.findings {
        let Some(patch) = &f.remediation.patch else {
            continue;
        };
        let mut doc = snapshot
            .raw_object(&f.remediation.target)
            .expect("target is an input object")
            .clone();
        apply(&mut doc, patch).expect("patch applies to its input");
        assert_eq!(doc, f.remediation.resource, "{}", f.remediation.target);
        patched += 1;
    }
    assert!(patched >= 5, "only {patched} patches checked");
}

#[test]
fn fail_on_sets_the_exit_code() {
    assert_eq!(
        meshmedic(&["analyze", "examples/shop"]).status.code(),
        Some(0)
    );
    assert_eq!(
        meshmedic(&["analyze", "examples/shop", "--fail-on", "error"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        meshmedic(&["analyze", "examples/shop", "--fail-on", "warning"])
            .status
            .code(),
        Some(1)
    );
    let healthy = meshmedic(&[
        "analyze",
        "examples/shop/healthy.yaml",
        "examples/shop/00-namespaces.yaml",
        "examples/shop/01-mesh-config.yaml",
        "--fail-on",
        "info",
    ]);
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&healthy.stdout)
    );
}

#[test]
fn yaml_output_is_one_object_per_target_ready_for_kubectl() {
    let out = meshmedic(&["analyze", "examples/shop", "-o", "yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let docs =
        meshmedic::snapshot::load::parse_documents("out.yaml", &text).expect("valid yaml stream");
    let mut targets = std::collections::BTreeSet::new();
    for (_, doc) in &docs {
        let kind = doc["kind"].as_str().expect("kind");
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .expect("name");
        assert!(doc["apiVersion"].is_string());
        assert!(
            targets.insert(format!("{kind}/{name}")),
            "{kind}/{name} twice"
        );
    }
    // ratings-route carries both the missing-reset-retry and the listener-change fix once.
    assert!(targets.contains("VirtualService/ratings-route"));
    assert_eq!(docs.len(), 7, "{targets:?}");
}

#[test]
fn stdin_lists_and_unknown_kinds() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshmedic"))
        .args(["analyze", "-", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/list-and-unknown.yaml"),
    )
    .expect("fixture");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["skipped"]["cert-manager.io/v1/Certificate"], 1);
    assert_eq!(report["skipped"]["networking.k8s.io/v1/Ingress"], 1);
    let findings = report["findings"].as_array().expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["code"] == "localhost-binding" && f["service"] == "web"),
        "{findings:?}"
    );
}

#[test]
fn broken_yaml_names_file_and_line_and_the_rest_is_analysed() {
    let out = meshmedic(&["analyze", "tests/fixtures/bad/broken.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tests/fixtures/bad/broken.yaml:9 (document 1)"),
        "{err}"
    );
    assert!(err.contains("not valid YAML"), "{err}");
    // --strict: any unreadable document fails the run.
    let out = meshmedic(&["analyze", "tests/fixtures/bad/broken.yaml", "--strict"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--strict"), "{}", stderr(&out));
}

#[test]
fn bad_duration_names_object_and_field() {
    let out = meshmedic(&["analyze", "tests/fixtures/bad/duration.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("DestinationRule prod/reviews"), "{err}");
    assert!(
        err.contains("spec.trafficPolicy.connectionPool.tcp.idleTimeout"),
        "{err}"
    );
    assert!(err.contains("1hh"), "{err}");
}

#[test]
fn wrong_type_names_object_and_field() {
    let out = meshmedic(&["analyze", "tests/fixtures/bad/wrong-type.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("Deployment prod/web"), "{err}");
    assert!(err.contains("spec.replicas"), "{err}");
}

#[test]
fn bad_hint_annotation_is_an_error_not_ignored() {
    let out = meshmedic(&["analyze", "tests/fixtures/bad/annotation.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("spec.template.metadata.annotations[\"meshmedic.io/app-idle-timeout\"]"),
        "{err}"
    );
}

#[test]
fn missing_file_and_bad_flags() {
    let out = meshmedic(&["analyze", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no/such/file.yaml"));
    let out = meshmedic(&["analyze", "examples/shop", "--istio-version", "latest"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--istio-version"));
}

#[test]
fn istio_version_and_mesh_config_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, "defaultHttpRetryPolicy:\n  attempts: 0\n").expect("write");
    let out = meshmedic(&[
        "analyze",
        "examples/shop",
        "-o",
        "json",
        "--istio-version",
        "1.23.4",
        "--mesh-config",
        mesh.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["istioVersion"]["minor"], 23);
    assert_eq!(report["istioVersion"]["source"], "--istio-version");
    // The --mesh-config replaces the ConfigMap's: holdApplicationUntilProxyStarts is gone, so
    // every injected workload now gets a startup (info) lifecycle finding.
    let lifecycle = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "sidecar-lifecycle")
        .count();
    assert!(lifecycle > 3, "{lifecycle}");

    std::fs::write(&mesh, "defaultHttpRetryPolicy:\n  perTryTimeout: 1hh\n").expect("write");
    let out = meshmedic(&[
        "analyze",
        "examples/shop",
        "--mesh-config",
        mesh.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("defaultHttpRetryPolicy.perTryTimeout"),
        "{}",
        stderr(&out)
    );
}

/// An IstioOperator (or a Sail Istio) in the input sets the mesh config, the injector's values
/// and the version istioctl installs; a rendered `istio` ConfigMap wins over it; `--mesh-config`
/// takes one too, and refuses any other object instead of reading it as Istio's defaults.
#[test]
fn installation_specs_are_read_and_rendered_config_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {istio-injection: enabled}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: web, image: example/web:1, ports: [{containerPort: 8080}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";
    let iop = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: mesh, namespace: istio-system}\nspec:\n  tag: 1.24.3\n  meshConfig:\n    defaultHttpRetryPolicy: {attempts: 2, retryOn: \"connect-failure,reset\"}\n  values:\n    global:\n      proxy: {holdApplicationUntilProxyStarts: true}\n";
    std::fs::write(dir.path().join("app.yaml"), app).expect("write");
    let install = dir.path().join("iop.yaml");
    std::fs::write(&install, iop).expect("write");
    let path = dir.path().to_str().expect("utf-8");
    let retries = |report: &Value| {
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["code"] == "missing-reset-retry")
            .count()
    };
    let report = json_of(&meshmedic(&["analyze", path, "-o", "json"]));
    assert_eq!(retries(&report), 0, "{report}");
    assert_eq!(report["istioVersion"]["minor"], 24);
    let source = report["istioVersion"]["source"].as_str().expect("source");
    assert!(
        source.starts_with("IstioOperator istio-system/mesh (")
            && source.ends_with("iop.yaml (document 0)) spec.tag 1.24.3"),
        "{source}"
    );
    let profile = &report["profile"];
    assert!(
        profile["meshConfig"]
            .as_str()
            .expect("meshConfig")
            .starts_with("spec.meshConfig of IstioOperator istio-system/mesh"),
        "{profile}"
    );
    assert_eq!(profile["holdApplicationUntilProxyStarts"], true);
    let assumptions = profile["assumptions"].to_string();
    assert!(!assumptions.contains("\"Istio 1.24:"), "{assumptions}");
    assert!(!assumptions.contains("injector:"), "{assumptions}");

    // The rendered ConfigMap, as `istioctl manifest generate` writes it, is what istiod reads.
    std::fs::write(
        dir.path().join("rendered.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    accessLogFile: /dev/stdout\n",
    )
    .expect("write");
    let report = json_of(&meshmedic(&["analyze", path, "-o", "json"]));
    assert_eq!(retries(&report), 1, "{report}");
    std::fs::remove_file(dir.path().join("rendered.yaml")).expect("remove");

    // The same spec given as --mesh-config, beside the app alone.
    let app_file = dir.path().join("app.yaml");
    let app_file = app_file.to_str().expect("utf-8");
    let report = json_of(&meshmedic(&["analyze", app_file, "-o", "json"]));
    assert_eq!(retries(&report), 1, "{report}");
    // And istiod's Helm values, whose `meshConfig` is the same.
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "global: {hub: docker.io/istio}\nmeshConfig:\n  defaultHttpRetryPolicy: {attempts: 2, retryOn: reset}\n",
    )
    .expect("write");
    for mesh_config in [&install, &values] {
        let mesh_config = mesh_config.to_str().expect("utf-8");
        let args = [
            "analyze",
            app_file,
            "-o",
            "json",
            "--mesh-config",
            mesh_config,
        ];
        let report = json_of(&meshmedic(&args));
        assert_eq!(retries(&report), 0, "{mesh_config}: {report}");
    }
    // Anything else is refused, naming what it is.
    let out = meshmedic(&[
        "analyze",
        "examples/shop",
        "--mesh-config",
        dir.path().join("app.yaml").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Namespace: field `kind`"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("IstioOperator"), "{}", stderr(&out));
}

// --- The mesh profile: flags, the profile file, and the assumptions in every output --------------

const PROFILE_REPO: &str = "tests/fixtures/profile/repo.yaml";

fn json_of(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("json output")
}

/// (code, workload) of every finding.
fn codes(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap_or_default().to_string(),
                f["workload"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The workloads with a sidecar-lifecycle finding.
fn lifecycle(report: &Value) -> Vec<String> {
    codes(report)
        .into_iter()
        .filter(|(c, _)| c == "sidecar-lifecycle")
        .map(|(_, w)| w)
        .collect()
}

/// kube-prometheus' manifests define `monitoring` with no mesh label: "0 findings" would read as
/// a healthy mesh, and `--assume-injected` does not change a namespace the input defines.
#[test]
fn namespaces_defined_without_a_mesh_label_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("monitoring.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: monitoring}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: grafana, namespace: monitoring}\n\
         spec:\n  selector: {matchLabels: {app: grafana}}\n  template:\n    metadata: {labels: {app: grafana}}\n\
         \x20   spec: {containers: [{name: grafana, image: grafana/grafana:12.0.0}]}\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    for flags in [&[][..], &["--assume-injected"][..]] {
        let out = meshmedic(&[&["analyze", path, "-o", "json"][..], flags].concat());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(codes(&json_of(&out)).is_empty());
        assert!(
            stderr(&out).contains(
                "1 workload(s) are in namespaces the input defines with no mesh label (monitoring)"
            ),
            "{flags:?}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("add --assume-injected"),
            "{}",
            stderr(&out)
        );
    }
    let out = meshmedic(&["fix", "--diff", path]);
    assert!(
        stderr(&out).contains("no mesh label (monitoring)"),
        "{}",
        stderr(&out)
    );

    // Ten such namespaces: the first eight are named, and how many more there are.
    let many: String = (0..10)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: team-{i}}}\n---\n\
                 apiVersion: v1\nkind: Pod\nmetadata: {{name: app, namespace: team-{i}}}\n\
                 spec: {{containers: [{{name: app, image: example/app:1}}]}}\n"
            )
        })
        .collect();
    std::fs::write(&file, many).expect("write");
    let out = meshmedic(&["analyze", path]);
    assert!(
        stderr(&out).contains(
            "10 workload(s) are in namespaces the input defines with no mesh label (team-0, \
             team-1, team-2, team-3, team-4, team-5, team-6, team-7, 2 more)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_repository_without_namespaces_needs_assume_injected() {
    let out = meshmedic(&["analyze", PROFILE_REPO, "-o", "json"]);
    let report = json_of(&out);
    assert!(
        codes(&report).is_empty(),
        "nothing says the namespace is injected"
    );
    // "0 findings" is not left to speak for itself: the note names the flag.
    assert!(
        stderr(&out).contains("add --assume-injected"),
        "{}",
        stderr(&out)
    );
    let assumptions = report["profile"]["assumptions"]
        .as_array()
        .expect("assumptions");
    assert!(
        assumptions.iter().any(|a| a
            .as_str()
            .unwrap_or_default()
            .starts_with("Kubernetes 1.34")),
        "{assumptions:?}"
    );

    // Injected, on the documented default (Istio 1.31, kubelets 1.34): native sidecars, so no
    // lifecycle race; the gateway is never a sidecar workload. Istio's default retry policy
    // lacks `reset`, which now matters.
    let report = json_of(&meshmedic(&[
        "analyze",
        PROFILE_REPO,
        "-o",
        "json",
        "--assume-injected",
    ]));
    assert_eq!(
        codes(&report),
        vec![("missing-reset-retry".to_string(), String::new())]
    );
    let out = meshmedic(&["analyze", PROFILE_REPO, "--assume-injected"]);
    assert!(!stderr(&out).contains("note:"), "{}", stderr(&out));
    // `fix` reads the same files the same way, and says the same.
    let out = meshmedic(&["fix", "--diff", PROFILE_REPO]);
    assert!(
        stderr(&out).contains("add --assume-injected"),
        "{}",
        stderr(&out)
    );
    assert!(
        report["profile"]["assumptions"]
            .as_array()
            .expect("assumptions")
            .iter()
            .any(|a| a.as_str().unwrap_or_default().contains("--assume-injected"))
    );

    // An older cluster: classic sidecars, so the app outlives its proxy.
    let report = json_of(&meshmedic(&[
        "analyze",
        PROFILE_REPO,
        "-o",
        "json",
        "--assume-injected",
        "--kubernetes-version",
        "v1.32.4",
    ]));
    assert_eq!(lifecycle(&report), vec!["orders".to_string()]);
    assert_eq!(report["profile"]["kubernetes"]["minor"], 32);
    assert_eq!(
        report["profile"]["kubernetes"]["source"],
        "--kubernetes-version"
    );
}

#[test]
fn the_profile_file_states_what_the_input_lacks_and_flags_win() {
    let profile = "tests/fixtures/profile/old-cluster.profile.yaml";
    let report = json_of(&meshmedic(&[
        "analyze",
        PROFILE_REPO,
        "-o",
        "json",
        "--profile",
        profile,
    ]));
    assert_eq!(lifecycle(&report), vec!["orders".to_string()]);
    assert_eq!(report["istioVersion"]["minor"], 28);
    assert!(
        report["istioVersion"]["source"]
            .as_str()
            .unwrap_or_default()
            .contains("old-cluster.profile.yaml")
    );
    // The flag wins over the file: kubelets 1.33 make `auto` native again.
    let report = json_of(&meshmedic(&[
        "analyze",
        PROFILE_REPO,
        "-o",
        "json",
        "--profile",
        profile,
        "--kubernetes-version",
        "1.33",
    ]));
    assert!(lifecycle(&report).is_empty(), "{:?}", codes(&report));

    let out = meshmedic(&[
        "analyze",
        PROFILE_REPO,
        "--profile",
        "tests/fixtures/profile/bad.profile.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bad.profile.yaml") && err.contains("nativeSidecars"),
        "{err}"
    );
    let out = meshmedic(&["analyze", PROFILE_REPO, "--kubernetes-version", "newest"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--kubernetes-version"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn table_and_yaml_outputs_state_the_assumptions() {
    let out = meshmedic(&[
        "analyze",
        PROFILE_REPO,
        "--assume-injected",
        "--kubernetes-version",
        "1.31",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        table.contains("profile: Kubernetes 1.31; ENABLE_NATIVE_SIDECARS=auto → classic sidecars"),
        "{table}"
    );
    assert!(
        table.contains("assumed: Istio 1.31: assumed (newest known)"),
        "{table}"
    );
    assert!(
        table.contains("assumed: namespaces absent from the input are injected"),
        "{table}"
    );

    let out = meshmedic(&[
        "analyze",
        PROFILE_REPO,
        "-o",
        "yaml",
        "--assume-injected",
        "--kubernetes-version",
        "1.31",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.starts_with("# meshmedic: Istio 1.31"), "{text}");
    assert!(
        text.contains("# meshmedic: assumed: Kubernetes 1.31: from --kubernetes-version"),
        "{text}"
    );
    let docs = meshmedic::snapshot::load::parse_documents("out.yaml", &text).expect("valid yaml");
    assert!(
        docs.iter()
            .any(|(_, d)| d["kind"] == "Deployment" && d["metadata"]["name"] == "orders"),
        "the corrected orders Deployment: {text}"
    );
}

const REPO: &str = "tests/fixtures/repo";

/// The repository-shaped fixture: every manifest read, every other file skipped with its reason,
/// the broken document reported with its line, and no exit 2.
#[test]
fn repository_tree_is_analysed_and_every_skip_has_its_reason() {
    let out = meshmedic(&["analyze", REPO, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json output");
    let skipped: std::collections::BTreeMap<String, String> = report["skippedFiles"]
        .as_array()
        .expect("skippedFiles")
        .iter()
        .map(|s| {
            let file = s["file"].as_str().expect("file");
            let file = file.strip_prefix(&format!("{REPO}/")).unwrap_or(file);
            (
                file.to_string(),
                s["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    let expected = [
        (".github/workflows/ci.yml", "no Kubernetes objects"),
        ("charts/orders/Chart.yaml", "Helm chart metadata"),
        ("charts/orders/templates/deployment.yaml", "template"),
        ("charts/orders/templates/service.yaml", "template"),
        ("charts/orders/templates/virtualservice.yaml", "template"),
        ("charts/orders/values-prod.yaml", "Helm values"),
        ("charts/orders/values.yaml", "Helm values"),
        (
            "kustomize/base/kustomization.yaml",
            "kustomize configuration",
        ),
        (
            "kustomize/overlays/prod/kustomization.yaml",
            "kustomize configuration",
        ),
        ("kustomize/overlays/prod/replicas.yaml", "kustomize patch"),
        ("kustomize/overlays/prod/resources.yaml", "kustomize patch"),
        ("renovate.json", "no Kubernetes objects"),
    ];
    assert_eq!(
        skipped.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
        "{skipped:#?}"
    );
    for (file, reason) in expected {
        assert!(skipped[file].contains(reason), "{file}: {}", skipped[file]);
    }
    let invalid = report["invalidDocuments"]
        .as_array()
        .expect("invalidDocuments");
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(invalid[0]["file"], format!("{REPO}/manifests/mixed.yaml"));
    assert_eq!(invalid[0]["document"], 1);
    let line = invalid[0]["line"].as_u64().expect("line");
    assert!((11..=14).contains(&line), "line {line}");
    // The YAML 1.1 manifest is analysed: its loopback-bound app is found.
    let findings = report["findings"].as_array().expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["code"] == "localhost-binding" && f["namespace"] == "ledger"),
        "{findings:#?}"
    );
    assert_eq!(
        report["skipped"]["monitoring.coreos.com/v1/PrometheusRule"],
        1
    );
    let err = stderr(&out);
    assert!(err.contains("SKIPPED FILE"), "{err}");
    assert!(err.contains("manifests/mixed.yaml:"), "{err}");

    // Under --strict the broken document fails the run.
    let strict = meshmedic(&["analyze", REPO, "--strict"]);
    assert_eq!(strict.status.code(), Some(2));
    // A directory with nothing readable is exit 2.
    let nothing = meshmedic(&["analyze", "tests/fixtures/repo/charts"]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        stderr(&nothing).contains("nothing to analyse"),
        "{}",
        stderr(&nothing)
    );
}

#[test]
fn repository_tree_reads_every_manifest_with_kubectl_values() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join(REPO);
    let mut input = meshmedic::snapshot::load::read_paths(&[repo]).expect("reads");
    let (snapshot, _) = input.build(SnapshotOptions::default()).expect("builds");
    let workloads: Vec<String> = snapshot
        .workloads
        .iter()
        .map(|w| format!("{} {}/{}", w.kind, w.meta.namespace, w.meta.name))
        .collect();
    assert_eq!(
        workloads,
        [
            "Deployment billing/invoices",
            "Deployment catalog/catalog",
            "Deployment ledger/audit",
            "Deployment ledger/ledger",
        ]
    );
    let services: Vec<String> = snapshot
        .services
        .iter()
        .map(|s| format!("{}/{}", s.meta.namespace, s.meta.name))
        .collect();
    assert_eq!(
        services,
        [
            "billing/invoices",
            "catalog/catalog",
            "ledger/audit",
            "ledger/ledger"
        ]
    );
    assert_eq!(
        snapshot.namespaces.keys().collect::<Vec<_>>(),
        ["billing", "ledger"]
    );
    let ledger = snapshot
        .workload("Deployment", "ledger", "ledger")
        .expect("ledger");
    let raw = &ledger.raw;
    for (pointer, want) in [
        ("/spec/replicas", serde_json::json!(3)),
        ("/spec/revisionHistoryLimit", serde_json::json!(10)),
        (
            "/spec/template/spec/automountServiceAccountToken",
            serde_json::json!(false),
        ),
        (
            "/spec/template/spec/enableServiceLinks",
            serde_json::json!(false),
        ),
        (
            "/spec/template/spec/terminationGracePeriodSeconds",
            serde_json::json!(30),
        ),
        ("/spec/template/spec/nodeSelector", Value::Null),
        (
            "/spec/template/spec/containers/0/ports/0/containerPort",
            serde_json::json!(8080),
        ),
        (
            "/spec/template/spec/containers/0/readinessProbe/periodSeconds",
            serde_json::json!(10),
        ),
        (
            "/spec/template/spec/containers/0/volumeMounts/0/readOnly",
            serde_json::json!(true),
        ),
        (
            "/spec/template/spec/volumes/0/configMap/defaultMode",
            serde_json::json!(256),
        ),
        ("/metadata/labels/canary", serde_json::json!("no")),
    ] {
        assert_eq!(raw.pointer(pointer), Some(&want), "{pointer}");
    }
    let service = &snapshot.services[snapshot.service_index("ledger", "ledger").expect("svc")];
    assert_eq!(
        service.raw.pointer("/spec/ports/0/targetPort"),
        Some(&serde_json::json!(8080))
    );
}
