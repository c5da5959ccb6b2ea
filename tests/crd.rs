//! `crds/remediation.yaml` is generated from the Rust types. These tests fail when the checked-in
//! file and the types drift apart, and say how to regenerate it.

use std::path::Path;
use std::process::Command;

use meshmedic::model::remediation::crd_yaml;
use meshmedic::snapshot::load::parse_documents;
use serde_json::Value;

const CRD_FILE: &str = "crds/remediation.yaml";
const REGENERATE: &str =
    "regenerate it with `cargo run -- crd > crds/remediation.yaml` and review the diff";

/// The YAML stream as values; exactly one document is expected.
fn single_document(file: &str, text: &str) -> Value {
    let docs = parse_documents(file, text).unwrap_or_else(|e| panic!("{file} does not parse: {e}"));
    assert_eq!(
        docs.len(),
        1,
        "{file} should hold exactly one document (the CRD), it has {}; {REGENERATE}",
        docs.len()
    );
    docs.into_iter().next().unwrap().1
}

fn generated() -> Value {
    let yaml = crd_yaml().expect("the Remediation CRD renders");
    single_document("meshmedic::model::remediation::crd_yaml()", &yaml)
}

fn checked_in() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {REGENERATE}", path.display()));
    single_document(CRD_FILE, &text)
}

/// The first place (a JSON pointer) where two values differ, with both sides, or None if equal.
fn first_difference(path: &str, expected: &Value, actual: &Value) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let here = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                match a.get(key) {
                    Some(av) => {
                        if let Some(d) = first_difference(&here, ev, av) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{here}: only in the Rust types")),
                }
            }
            a.keys()
                .find(|key| !e.contains_key(*key))
                .map(|key| format!("{path}/{key}: only in {CRD_FILE}"))
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                if let Some(d) = first_difference(&format!("{path}/{i}"), ev, av) {
                    return Some(d);
                }
            }
            (e.len() != a.len()).then(|| {
                format!(
                    "{path}: {} items in the Rust types, {} in {CRD_FILE}",
                    e.len(),
                    a.len()
                )
            })
        }
        _ if expected == actual => None,
        _ => Some(format!(
            "{}: the Rust types say {expected}, {CRD_FILE} says {actual}",
            if path.is_empty() { "/" } else { path }
        )),
    }
}

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let generated = generated();
    let checked_in = checked_in();
    if let Some(difference) = first_difference("", &generated, &checked_in) {
        panic!(
            "{CRD_FILE} is out of date with the Remediation types (first difference at {difference}); {REGENERATE}"
        );
    }
}

#[test]
fn crd_subcommand_prints_the_generated_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshmedic"))
        .arg("crd")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("meshmedic runs");
    assert!(
        out.status.success(),
        "meshmedic crd failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("meshmedic crd prints UTF-8");
    // Byte for byte what the library renders, so `meshmedic crd > crds/remediation.yaml` is the
    // regeneration step...
    assert_eq!(stdout, crd_yaml().expect("the Remediation CRD renders"));
    // ...and equal in value to the checked-in file.
    let printed = single_document("meshmedic crd", &stdout);
    if let Some(difference) = first_difference("", &printed, &checked_in()) {
        panic!(
            "`meshmedic crd` and {CRD_FILE} differ (first difference at {difference}); {REGENERATE}"
        );
    }
}

/// The CRD is what the Remediation type says it is: the identity every client relies on.
#[test]
fn crd_identity_and_printer_columns() {
    let crd = checked_in();
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["metadata"]["name"], "remediations.meshmedic.io");
    assert_eq!(crd["spec"]["group"], "meshmedic.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "Remediation");
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["rem"])
    );
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    let v = &versions[0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert!(
        v["subresources"]["status"].is_object(),
        "the status subresource must be on: the controller writes remediations/status"
    );
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Code", "Target", "Phase", "Age"]);
}

#[test]
fn first_difference_names_the_path() {
    let a = serde_json::json!({"spec": {"names": {"kind": "Remediation"}, "v": [1, 2]}});
    let b = serde_json::json!({"spec": {"names": {"kind": "Other"}, "v": [1, 2]}});
    let d = first_difference("", &a, &b).expect("differs");
    assert!(d.starts_with("/spec/names/kind:"), "{d}");
    let c = serde_json::json!({"spec": {"names": {"kind": "Remediation"}, "v": [1]}});
    let d = first_difference("", &a, &c).expect("differs");
    assert!(d.starts_with("/spec/v:"), "{d}");
    assert_eq!(first_difference("", &a, &a.clone()), None);
}
