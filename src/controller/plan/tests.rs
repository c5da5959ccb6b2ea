use serde_json::json;

use super::*;
use crate::analysis::test_support::snapshot;
use crate::analysis::{Finding, analyze};
use crate::snapshot::Snapshot;

/// The shop example, where two causes want to change the ratings VirtualService.
fn shop() -> Snapshot {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/shop")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let text: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("example"))
        .collect();
    snapshot(&text.join("\n---\n"))
}

fn findings(s: &Snapshot) -> Vec<Finding> {
    analyze(s).findings
}

#[test]
fn names_are_one_per_target_stable_and_valid() {
    let t = ObjectRef {
        api_version: "networking.istio.io/v1".into(),
        kind: "DestinationRule".into(),
        namespace: "shop".into(),
        name: "Web.V1".into(),
    };
    let a = target_name(&t);
    assert_eq!(a, target_name(&t));
    assert!(a.starts_with("destinationrule-web-v1-"), "{a}");
    assert!(
        a.len() <= 63
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    );
    let long = ObjectRef {
        name: "x".repeat(200),
        ..t.clone()
    };
    assert!(target_name(&long).len() <= 63);
    let other_ns = ObjectRef {
        namespace: "web".into(),
        ..t
    };
    assert_ne!(a, target_name(&other_ns));
}

#[test]
fn modes_and_min_severity_default_to_safe_values() {
    assert_eq!(Mode::from_annotation(None), Mode::Off);
    assert_eq!(Mode::from_annotation(Some("bogus")), Mode::Off);
    assert_eq!(Mode::from_annotation(Some("apply")), Mode::Apply);
    assert_eq!(min_severity(None), Severity::Warning);
    assert_eq!(min_severity(Some("bogus")), Severity::Warning);
    assert_eq!(min_severity(Some(" Info ")), Severity::Info);
    assert_eq!(min_severity(Some("error")), Severity::Error);
}

#[test]
fn the_digest_is_over_canonical_json_and_ignores_key_order() {
    assert_eq!(
        canonical_json(&json!({"b": [1, {"d": 1, "c": "x"}], "a": null})),
        r#"{"a":null,"b":[1,{"c":"x","d":1}]}"#
    );
    let a = json!({"action": "patch", "target": {"kind": "X"}, "patch": [], "resource": {"a": 1, "b": 2}, "message": "m"});
    let b = json!({"resource": {"b": 2, "a": 1}, "patch": [], "target": {"kind": "X"}, "action": "patch", "message": "other words"});
    let d = plan_digest(&a);
    assert_eq!(d, plan_digest(&b), "words are not the plan");
    assert!(d.starts_with("sha256:") && d.len() == 7 + 64, "{d}");
    let c = json!({"action": "patch", "target": {"kind": "X"}, "patch": [{"op": "add"}], "resource": {"a": 1, "b": 2}});
    assert_ne!(d, plan_digest(&c));
    // The same change planned from another starting point is another plan.
    let mut e = a.clone();
    e["baseDigest"] = json!(spec_digest(&json!({"spec": {"x": 1}})));
    assert_ne!(d, plan_digest(&e));
    assert_eq!(
        spec_digest(&json!({"spec": {"a": 1, "b": 2}})),
        spec_digest(&json!({"metadata": {"resourceVersion": "9"}, "spec": {"b": 2, "a": 1}})),
        "only the spec, in any key order"
    );
}

#[test]
fn findings_that_change_one_object_become_one_plan_listing_every_cause() {
    let s = shop();
    let fs = findings(&s);
    let refs: Vec<&Finding> = fs.iter().collect();
    let (planned, errors) = plan_targets(&refs, &|_| None);
    assert!(errors.is_empty(), "{errors:?}");
    let targets: std::collections::BTreeSet<&ObjectRef> =
        fs.iter().map(|f| &f.remediation.target).collect();
    assert_eq!(planned.len(), targets.len(), "one plan per target");
    let shared: Vec<&Planned> = planned.iter().filter(|p| p.codes.len() > 1).collect();
    assert!(
        !shared.is_empty(),
        "the shop has a target two causes change"
    );
    for p in &planned {
        assert_eq!(p.spec["planDigest"], json!(p.view.digest));
        assert_eq!(
            p.spec["causes"].as_array().map(Vec::len),
            Some(p.codes.len())
        );
        // The composed patch, applied to the object as it is, gives the planned resource.
        if let (Some(raw), Some(ops)) = (s.raw_object(&p.target), p.spec["patch"].as_array()) {
            let mut doc = raw.clone();
            apply(&mut doc, ops).expect("the merged patch applies");
            assert_eq!(doc["spec"], p.spec["resource"]["spec"], "{}", p.target);
            // Every cause's own change is in it.
            for f in fs.iter().filter(|f| f.remediation.target == p.target) {
                for e in &f.remediation.edits {
                    let ptr: String = e
                        .path
                        .iter()
                        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
                        .collect();
                    assert_eq!(doc.pointer(&ptr), Some(&e.value), "{} {ptr}", f.code);
                }
            }
        }
    }
}

#[test]
fn a_change_is_described_by_what_changed() {
    let s = shop();
    let fs = findings(&s);
    let refs: Vec<&Finding> = fs.iter().collect();
    let (planned, _) = plan_targets(&refs, &|_| None);
    let p = planned
        .iter()
        .find(|p| p.spec["action"] == "patch")
        .expect("a patch");
    let old: RemediationSpec = serde_json::from_value(p.spec.clone()).expect("spec decodes");
    assert!(same_owned_spec(&old, &p.spec));
    let mut new = p.spec.clone();
    new["resource"]["spec"]["extra"] = json!(1);
    new["planDigest"] = json!(plan_digest(&new));
    let said = describe_change(&old, &new);
    assert!(said.contains("resource at /spec/extra"), "{said}");
    assert!(said.contains(new["planDigest"].as_str().unwrap()), "{said}");
}

#[test]
fn meaningless_namespace_annotations_are_named_with_what_applies_instead() {
    let ann = |pairs: &[(&str, &str)]| -> crate::model::Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let fine = ann(&[
        ("meshmedic.io/mode", " propose"),
        ("meshmedic.io/min-severity", "Error"),
    ]);
    assert!(namespace_annotation_problems(&fine).is_empty());
    let bad = ann(&[
        ("meshmedic.io/mode", "sometimes!"),
        ("meshmedic.io/min-severity", "loud"),
    ]);
    let problems = namespace_annotation_problems(&bad);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].0, "meshmedic.io/mode");
    assert!(problems[0].2.contains("\"sometimes!\"") && problems[0].2.contains("is off"));
    assert_eq!(problems[1].0, "meshmedic.io/min-severity");
    assert!(problems[1].2.contains("warning applies"));
    // What the operator does matches what it says.
    assert_eq!(Mode::from_annotation(Some("sometimes!")), Mode::Off);
    assert_eq!(min_severity(Some("loud")), Severity::Warning);
}
