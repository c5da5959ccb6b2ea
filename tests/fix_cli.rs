//! `meshmedic fix` end to end, and the positions of findings: on a hand-written multi-document
//! manifest full of comments (tests/fixtures/fix/commented.yaml) and on a copy of examples/.
//! The diff touches only the fixed lines; re-analysis finds nothing left to fix; a second run
//! changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const COMMENTED: &str = "tests/fixtures/fix/commented.yaml";
const FLAGGER: &str = "tests/fixtures/fix/flagger.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn meshmedic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshmedic"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("meshmedic runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn analyze_json(path: &str) -> Value {
    let out = meshmedic(&["analyze", path, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// A copy of `from` (a file or a directory) in a fresh temporary directory.
fn copy_of(from: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = root().join(from);
    let dst = dir.path().join(src.file_name().expect("name"));
    copy_tree(&src, &dst);
    (dir, dst)
}

fn copy_tree(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).expect("mkdir");
        for e in std::fs::read_dir(src).expect("read dir") {
            let e = e.expect("entry");
            copy_tree(&e.path(), &dst.join(e.file_name()));
        }
    } else {
        std::fs::copy(src, dst).expect("copy");
    }
}

/// 1-based number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}"))
        + 1
}

#[test]
fn positions_on_a_multi_document_file_name_object_and_field() {
    let source = std::fs::read_to_string(root().join(COMMENTED)).expect("fixture");
    let report = analyze_json(COMMENTED);
    let findings = report["findings"].as_array().expect("findings");
    let by_code = |code: &str| {
        findings
            .iter()
            .find(|f| f["code"] == code)
            .unwrap_or_else(|| panic!("no {code} finding"))["location"]
            .clone()
    };
    // The DestinationRule: 6th document (index 5), four-space indentation.
    let dr = by_code("idle-timeout-mismatch");
    assert_eq!(dr["document"], 5);
    assert_eq!(dr["object"], "DestinationRule store/web");
    let dr_line = line_of(&source, "kind: DestinationRule") - 1;
    assert_eq!(dr["at"], format!("{COMMENTED}:{dr_line}:1"));
    let field_line = line_of(&source, "idleTimeout: \"1h\"");
    assert_eq!(dr["field"]["exists"], true);
    assert_eq!(
        dr["field"]["path"],
        "/spec/trafficPolicy/connectionPool/http/idleTimeout"
    );
    assert_eq!(dr["field"]["at"], format!("{COMMENTED}:{field_line}:17"));
    // The VirtualService: item 0 of a List, after a `...` end marker earlier in the file.
    let vs = by_code("missing-reset-retry");
    assert_eq!(vs["item"], 0);
    let item_line = line_of(&source, "- apiVersion: networking.istio.io/v1");
    assert_eq!(vs["at"], format!("{COMMENTED}:{item_line}:3"));
    let retry_line = line_of(&source, "retryOn: 'connect-failure");
    assert_eq!(vs["field"]["at"], format!("{COMMENTED}:{retry_line}:9"));
    // A field the fix adds: the position of its nearest parent that exists.
    let dep = by_code("sidecar-lifecycle");
    assert_eq!(dep["field"]["exists"], false);
    assert_eq!(dep["object"], "Deployment store/web");
    let meta_line = line_of(&source, "labels: {app: web}") - 1;
    assert_eq!(dep["field"]["line"], meta_line);

    // The table shows the same positions; the YAML stream names them in its comments.
    let table = text(&meshmedic(&["analyze", COMMENTED]).stdout);
    assert!(table.contains("LOCATION"), "{table}");
    assert!(
        table.contains(&format!("{COMMENTED}:{field_line}:17")),
        "{table}"
    );
    let yaml = text(&meshmedic(&["analyze", COMMENTED, "-o", "yaml"]).stdout);
    assert!(
        yaml.contains(&format!("at {COMMENTED}:{retry_line}:9")),
        "{yaml}"
    );
}

/// Lines the diff removes and adds (without the `---`/`+++` headers).
fn changed_lines(diff: &str) -> (Vec<&str>, Vec<&str>) {
    let removed = diff
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .collect();
    let added = diff
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .collect();
    (removed, added)
}

#[test]
fn fix_on_a_commented_manifest_touches_only_the_fixed_lines() {
    let (_dir, file) = copy_of(COMMENTED);
    let path = file.to_str().expect("utf-8 path");
    let before = std::fs::read_to_string(&file).expect("read");

    let diff = meshmedic(&["fix", path, "--diff"]);
    assert_eq!(diff.status.code(), Some(1), "changes pending: exit 1");
    let diff_text = text(&diff.stdout);
    let (removed, added) = changed_lines(&diff_text);
    assert_eq!(
        removed,
        vec![
            "-                idleTimeout: \"1h\"    # reviewed 2024",
            "-        retryOn: 'connect-failure,refused-stream'   # no reset yet",
        ],
        "{diff_text}"
    );
    assert_eq!(
        added,
        vec![
            "+                idleTimeout: \"58s\"    # reviewed 2024",
            "+        retryOn: 'connect-failure,refused-stream,reset,503'   # no reset yet",
        ],
        "quoting and comments kept: {diff_text}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        before,
        "--diff writes nothing"
    );
    // The proposal (sidecar-lifecycle restarts pods) is named, not written.
    assert!(
        text(&diff.stderr).contains("--include-unsafe sidecar-lifecycle"),
        "{}",
        text(&diff.stderr)
    );

    let out = meshmedic(&["fix", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = std::fs::read_to_string(&file).expect("read");
    // Exactly what --diff showed.
    let written = similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .header(
            &format!("a/{}", path.trim_start_matches('/')),
            &format!("b/{}", path.trim_start_matches('/')),
        )
        .to_string();
    assert_eq!(written, diff_text);

    // Nothing safe left to fix for the fixed targets.
    let report = analyze_json(path);
    let codes: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert_eq!(codes, vec!["sidecar-lifecycle"], "{report:#}");

    // Idempotent.
    let again = meshmedic(&["fix", path]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), after);
    let diff = meshmedic(&["fix", path, "--diff"]);
    assert_eq!(diff.status.code(), Some(0));
    assert!(diff.stdout.is_empty(), "{}", text(&diff.stdout));
}

#[test]
fn proposals_are_written_only_when_named_and_code_limits() {
    let (_dir, file) = copy_of(COMMENTED);
    let path = file.to_str().expect("utf-8 path");
    let before = std::fs::read_to_string(&file).expect("read");

    let out = meshmedic(&["fix", path, "--code", "missing-reset-retry", "--diff"]);
    let (removed, _) = changed_lines(std::str::from_utf8(&out.stdout).expect("utf-8"));
    assert_eq!(removed.len(), 1, "{}", text(&out.stdout));
    assert!(removed[0].contains("retryOn"));

    // `--code` alone does not write a proposal.
    let out = meshmedic(&["fix", path, "--code", "sidecar-lifecycle"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), before);

    let out = meshmedic(&[
        "fix",
        path,
        "--code",
        "sidecar-lifecycle",
        "--include-unsafe",
        "sidecar-lifecycle",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = std::fs::read_to_string(&file).expect("read");
    let (removed, added) = {
        let d = similar::TextDiff::from_lines(&before, &after)
            .unified_diff()
            .to_string();
        let (r, a) = changed_lines(&d);
        (
            r.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            a.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert!(removed.is_empty(), "only additions: {removed:?}");
    assert!(
        added.iter().any(|l| l.contains("annotations:"))
            && added.iter().any(|l| l.contains("proxy.istio.io/config")),
        "{added:?}"
    );
    let report = analyze_json(path);
    assert!(
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .all(|f| f["code"] != "sidecar-lifecycle"),
        "{report:#}"
    );

    let bad = meshmedic(&["fix", path, "--code", "no-such-code"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("unknown finding code"));
}

/// A release Flagger manages (tests/fixtures/fix/flagger.yaml): the findings on the routing
/// Flagger writes are placed at, and fixed in, the Canary's `spec.service`; the rest of the
/// file (the team's comment on its retries included) is untouched, and nothing is left.
#[test]
fn a_flagger_canarys_routing_is_fixed_in_the_canary() {
    let (_dir, file) = copy_of(FLAGGER);
    let path = file.to_str().expect("utf-8 path");
    let before = std::fs::read_to_string(&file).expect("read");
    let report = analyze_json(path);
    let findings = report["findings"].as_array().expect("findings");
    let mut codes: Vec<&str> = findings
        .iter()
        .map(|f| f["code"].as_str().expect("code"))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        ["idle-timeout-mismatch", "missing-reset-retry"],
        "{report:#}"
    );
    for f in findings {
        assert_eq!(f["remediation"]["target"]["kind"], "Canary", "{f:#}");
        assert_eq!(f["location"]["object"], "Canary shop/storefront", "{f:#}");
    }
    let retry = findings
        .iter()
        .find(|f| f["code"] == "missing-reset-retry")
        .expect("retry finding");
    assert_eq!(
        retry["location"]["field"]["line"],
        line_of(&before, "retryOn:"),
        "{retry:#}"
    );

    let out = meshmedic(&["fix", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = std::fs::read_to_string(&file).expect("read");
    let d = similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .to_string();
    let (removed, added) = changed_lines(&d);
    assert_eq!(
        removed,
        ["-      retryOn: connect-failure,refused-stream"],
        "{d}"
    );
    assert_eq!(
        added,
        [
            "+      retryOn: connect-failure,refused-stream,reset,503",
            "+      connectionPool:",
            "+        http:",
            "+          idleTimeout: 58s",
        ],
        "{d}"
    );
    assert!(after.contains("attempts: 3   # the team's own choice: kept"));
    let report = analyze_json(path);
    assert_eq!(report["findings"], serde_json::json!([]), "{report:#}");
}

#[test]
fn fix_on_a_copy_of_the_examples_clears_every_safe_finding_and_is_idempotent() {
    let (_dir, examples) = copy_of("examples");
    let path = examples.to_str().expect("utf-8 path");
    let out = meshmedic(&["fix", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The new Sidecar for localhost-binding sits beside the Deployment's file.
    let new_file = examples.join("shop/legacy-localhost-binding.meshmedic-new.yaml");
    let new_text = std::fs::read_to_string(&new_file).expect("new objects file");
    assert!(new_text.contains("kind: Sidecar"), "{new_text}");

    let report = analyze_json(path);
    for f in report["findings"].as_array().expect("findings") {
        assert_eq!(
            f["remediation"]["safeToAutoApply"], false,
            "a safe fix left a finding: {f:#}"
        );
    }
    let snapshot: Vec<(PathBuf, String)> = files_of(&examples);
    let again = meshmedic(&["fix", path]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(
        files_of(&examples),
        snapshot,
        "a second run changes nothing"
    );
}

#[test]
fn new_objects_go_to_the_named_file_once() {
    let (dir, examples) = copy_of("examples");
    let target = dir.path().join("new.yaml");
    let args = [
        "fix",
        examples.to_str().expect("utf-8"),
        "--code",
        "localhost-binding",
        "--new-objects",
        target.to_str().expect("utf-8"),
    ];
    assert_eq!(meshmedic(&args).status.code(), Some(0));
    let first = std::fs::read_to_string(&target).expect("written");
    assert_eq!(first.matches("kind: Sidecar").count(), 1, "{first}");
    // The file is outside the analysed paths: the second run still finds the finding, and
    // must not add the object twice.
    assert_eq!(meshmedic(&args).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&target).expect("read"), first);
}

/// microservices-demo's kubernetes-manifests/kustomization.yaml names each of its files: a new
/// file beside them is not deployed by `kubectl apply -k` until it is listed, and `fix` says so.
#[test]
fn a_kustomization_that_does_not_list_the_new_objects_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app");
    std::fs::create_dir(&app).expect("mkdir");
    std::fs::write(
        app.join("web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n\
         spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n\
         \x20   spec: {containers: [{name: web, image: example/web:1}]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
         spec: {selector: {app: web}, ports: [{name: http, port: 80}]}\n",
    )
    .expect("write");
    let kustomization = app.join("kustomization.yaml");
    std::fs::write(&kustomization, "resources:\n- ./web.yaml\n").expect("write");
    let path = app.to_str().expect("utf-8");
    let note =
        "kustomization.yaml lists its resources, not web.meshmedic-new.yaml: add it to `resources`";
    let out = meshmedic(&["fix", "--diff", "--assume-injected", path]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(note), "{}", text(&out.stderr));
    // Listed (as kustomize accepts it, with `./`): nothing to say.
    std::fs::write(
        &kustomization,
        "resources:\n- web.yaml\n- ./web.meshmedic-new.yaml\n",
    )
    .expect("write");
    let out = meshmedic(&["fix", "--diff", "--assume-injected", path]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("lists its resources"),
        "{}",
        text(&out.stderr)
    );
    // No kustomization: nothing to say either.
    std::fs::remove_file(&kustomization).expect("rm");
    let out = meshmedic(&["fix", "--assume-injected", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("lists its resources"),
        "{}",
        text(&out.stderr)
    );
    assert!(app.join("web.meshmedic-new.yaml").is_file());
}

fn files_of(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let t = std::fs::read_to_string(&p).expect("read");
                out.push((p, t));
            }
        }
    }
    out.sort();
    out
}

/// `fix --diff` is a patch `git apply` takes, and applying it gives what `fix` writes.
#[test]
fn the_diff_applies_with_git_apply_and_equals_the_written_fix() {
    let run_in = |dir: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_meshmedic"))
            .args(args)
            .current_dir(dir)
            .output()
            .expect("meshmedic runs")
    };
    let (a, _) = copy_of("examples");
    let (b, _) = copy_of("examples");
    let diff = run_in(a.path(), &["fix", "examples", "--diff"]);
    assert_eq!(diff.status.code(), Some(1));
    std::fs::write(a.path().join("fix.diff"), &diff.stdout).expect("write diff");
    let applied = Command::new("git")
        .args(["apply", "fix.diff"])
        .current_dir(a.path())
        .output()
        .expect("git runs");
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    std::fs::remove_file(a.path().join("fix.diff")).expect("rm");
    assert_eq!(
        run_in(b.path(), &["fix", "examples"]).status.code(),
        Some(0)
    );
    let strip = |dir: &Path| -> Vec<(PathBuf, String)> {
        files_of(dir)
            .into_iter()
            .map(|(p, t)| (p.strip_prefix(dir).expect("inside").to_path_buf(), t))
            .collect()
    };
    assert_eq!(strip(a.path()), strip(b.path()));
}

/// Manifests without namespaces are applied with `kubectl apply -n NS`: new objects beside them
/// name no namespace either (kubectl refuses `-n` with an object of another namespace), and
/// their hosts are short, as Istio reads a short host in the rule's own namespace. Found on a
/// public repository (PacktPublishing/Kubernetes-Service-Mesh-with-Istio), where the new objects
/// named `default`.
#[test]
fn new_objects_for_manifests_without_a_namespace_name_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app");
    std::fs::create_dir(&app).expect("mkdir");
    std::fs::write(
        app.join("web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n\
         spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n\
         \x20   spec: {containers: [{name: web, image: example/web:1}]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: web}\n\
         spec: {selector: {app: web}, ports: [{name: http, port: 80}]}\n",
    )
    .expect("write");
    let path = app.to_str().expect("utf-8");
    let out = meshmedic(&["fix", "--assume-injected", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let new = std::fs::read_to_string(app.join("web.meshmedic-new.yaml")).expect("new objects");
    let docs = meshmedic::snapshot::load::parse_documents("new", &new).expect("yaml");
    assert!(!docs.is_empty(), "{new}");
    for (_, doc) in &docs {
        assert!(doc.pointer("/metadata/namespace").is_none(), "{new}");
    }
    assert!(
        new.contains("- web\n") && !new.contains("svc.cluster.local"),
        "{new}"
    );
    // Read back (as `default`, like the manifests): nothing left to fix, nothing added twice.
    let out = meshmedic(&["fix", "--diff", "--assume-injected", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let report = meshmedic(&["analyze", "--assume-injected", "-o", "json", path]);
    let report: Value = serde_json::from_slice(&report.stdout).expect("json");
    assert_eq!(
        report["findings"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
}
