//! `meshmedic analyze -o sarif` against the SARIF 2.1.0 JSON schema, and what code scanning
//! reads from it: one rule per code, physical locations, fixes that are edits of the file.
//!
//! The schema is not in the repository: `scripts/sarif-schema.sh` fetches it from a registry
//! package that ships it and caches it (scripts/test.sh exports MESHMEDIC_SARIF_SCHEMA; run
//! alone, this test calls the script itself).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sarif_of(path: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_meshmedic"))
        .args(["analyze", path, "-o", "sarif"])
        .current_dir(root())
        .output()
        .expect("meshmedic runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sarif is json")
}

fn schema() -> Value {
    let path = match std::env::var_os("MESHMEDIC_SARIF_SCHEMA") {
        Some(p) => PathBuf::from(p),
        None => {
            let out = Command::new("bash")
                .arg(root().join("scripts/sarif-schema.sh"))
                .output()
                .expect("scripts/sarif-schema.sh runs");
            assert!(
                out.status.success(),
                "scripts/sarif-schema.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    let text = std::fs::read_to_string(&path).expect("schema file");
    serde_json::from_str(&text).expect("schema is json")
}

fn validate(log: &Value) {
    let errors = schema_errors(log);
    assert!(
        errors.is_empty(),
        "not valid SARIF 2.1.0:\n{}",
        errors.join("\n")
    );
}

fn schema_errors(log: &Value) -> Vec<String> {
    let mut schema = schema();
    // The published schema's `language` patterns have a stray `]`, which ECMAScript regexes
    // read as a literal and the validator's meta-schema check rejects: escape it, in memory.
    escape_stray_brackets(&mut schema);
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the SARIF schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(log)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    errors
}

fn escape_stray_brackets(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match child {
                    Value::String(p) if k == "pattern" => *p = p.replace("}]?$", "}\\]?$"),
                    _ => escape_stray_brackets(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(escape_stray_brackets),
        _ => {}
    }
}

#[test]
fn sarif_of_the_examples_is_valid_sarif_2_1_0() {
    let log = sarif_of("examples/shop");
    validate(&log);
    // The validator does reject what is not SARIF.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = Value::from("fatal");
    assert!(
        !schema_errors(&broken).is_empty(),
        "an invalid level passes"
    );
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 6, "one rule per finding code");
    for rule in rules {
        assert!(
            rule["shortDescription"]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert!(
            rule["fullDescription"]["text"]
                .as_str()
                .is_some_and(|t| t.len() > 80)
        );
        assert!(
            rule["helpUri"]
                .as_str()
                .is_some_and(|u| u.ends_with("#finding-codes"))
        );
    }
    let results = run["results"].as_array().expect("results");
    assert_eq!(results.len(), 8, "one result per finding");
    for r in results {
        let id = r["ruleId"].as_str().expect("ruleId");
        let index = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[index]["id"], id);
        let physical = &r["locations"][0]["physicalLocation"];
        let uri = physical["artifactLocation"]["uri"].as_str().expect("uri");
        assert!(uri.starts_with("examples/shop/"), "{uri}");
        assert!(
            physical["region"]["startLine"]
                .as_u64()
                .is_some_and(|l| l > 0)
        );
    }
    // Safe patches carry their edit of the file; new objects (a Sidecar) do not.
    let fixes_of = |code: &str| {
        results
            .iter()
            .filter(|r| r["ruleId"] == code)
            .filter(|r| r.get("fixes").is_some())
            .count()
    };
    assert!(fixes_of("idle-timeout-mismatch") == 1);
    assert_eq!(fixes_of("missing-reset-retry"), 3);
    assert_eq!(fixes_of("localhost-binding"), 0);
}

/// The `fixes` entry, applied to the file as a SARIF consumer would, gives what `meshmedic
/// fix` writes for that finding.
#[test]
fn a_sarif_fix_is_the_edit_meshmedic_fix_writes() {
    let fixture = "tests/fixtures/fix/commented.yaml";
    let log = sarif_of(fixture);
    validate(&log);
    let results = log["runs"][0]["results"].as_array().expect("results");
    let result = results
        .iter()
        .find(|r| r["ruleId"] == "missing-reset-retry")
        .expect("a missing-reset-retry result");
    let change = &result["fixes"][0]["artifactChanges"][0];
    assert_eq!(change["artifactLocation"]["uri"], fixture);
    let original = std::fs::read_to_string(root().join(fixture)).expect("fixture");
    let mut lines: Vec<String> = original.split_inclusive('\n').map(str::to_string).collect();
    // Apply from the bottom up so earlier line numbers stay valid.
    let mut replacements: Vec<&Value> = change["replacements"]
        .as_array()
        .expect("replacements")
        .iter()
        .collect();
    replacements.sort_by_key(|r| std::cmp::Reverse(r["deletedRegion"]["startLine"].as_u64()));
    for r in replacements {
        let region = &r["deletedRegion"];
        assert_eq!(region["startColumn"], 1);
        assert_eq!(region["endColumn"], 1);
        let start = region["startLine"].as_u64().expect("startLine") as usize - 1;
        let end = region["endLine"].as_u64().expect("endLine") as usize - 1;
        let inserted = r["insertedContent"]["text"].as_str().unwrap_or_default();
        let new: Vec<String> = inserted.split_inclusive('\n').map(str::to_string).collect();
        lines.splice(start..end, new);
    }
    let fixed = lines.concat();

    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("commented.yaml");
    std::fs::write(&copy, &original).expect("copy");
    let out = Command::new(env!("CARGO_BIN_EXE_meshmedic"))
        .args([
            "fix",
            copy.to_str().expect("utf-8"),
            "--code",
            "missing-reset-retry",
        ])
        .output()
        .expect("meshmedic runs");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(fixed, std::fs::read_to_string(&copy).expect("read"));
}
