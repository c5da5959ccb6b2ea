//! Every fix removes its own finding and brings no new one (pure: no cluster). For each example
//! and fixture directory, each safe remediation is applied on its own to the input, which is then
//! analysed again. A fix that did not stick would make the operator re-plan forever.

use std::path::{Path, PathBuf};

use meshmedic::remediation::simulate::check_fixes;
use meshmedic::snapshot::SnapshotOptions;
use meshmedic::snapshot::load::read_paths;

fn documents(dir: &Path) -> Vec<(meshmedic::error::Source, serde_json::Value)> {
    let input = read_paths(&[dir.to_path_buf()]).expect("readable");
    input
        .objects
        .into_iter()
        .map(|o| {
            let value = o.value().clone();
            (o.source, value)
        })
        .collect()
}

/// Input sets: each example directory, and the fixtures that are meant to analyse cleanly.
fn inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    for fixture in ["cluster", "repo", "profile"] {
        dirs.push(root.join("tests/fixtures").join(fixture));
    }
    dirs.sort();
    dirs
}

#[test]
fn every_safe_fix_removes_its_finding_and_adds_none() {
    let mut problems = Vec::new();
    let mut fixes = 0;
    for dir in inputs() {
        let docs = documents(&dir);
        let found = check_fixes(&docs, &SnapshotOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        fixes += found.checked;
        problems.extend(
            found
                .problems
                .into_iter()
                .map(|p| format!("{}: {p}", dir.display())),
        );
    }
    assert!(fixes >= 6, "only {fixes} fixes checked");
    assert!(
        problems.is_empty(),
        "fixes that do not stick:\n{}",
        problems.join("\n")
    );
}
