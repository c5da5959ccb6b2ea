//! `meshmedic analyze`: the offline analysis of manifests, for people (table), for tools (json)
//! and for `kubectl apply -f -` (yaml).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use crate::analysis::{Finding, Report, Severity, analyze};
use crate::error::{Error, Result, Source};
use crate::model::ObjectRef;
use crate::model::istio::MeshConfig;
use crate::positions::Location;
use crate::remediation::{Action, apply, plan_patch};
use crate::snapshot::load::{parse_documents, snapshot_from_paths};
use crate::snapshot::{Snapshot, SnapshotOptions};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
    /// SARIF 2.1.0, for code scanning (see `cli::sarif`).
    Sarif,
}

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// Manifest files or directories (searched for *.yaml, *.yml, *.json); `-` reads stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// table for people; json (stable fields) for tools; yaml: the corrected and new Istio
    /// resources, ready for `kubectl apply -f -`; sarif: SARIF 2.1.0 for code scanning.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Istio mesh config (the `mesh` key of the `istio` ConfigMap, or the ConfigMap itself);
    /// wins over a ConfigMap among the manifests.
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,
    /// Exit 1 when a finding at or above this severity exists.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
    /// Istio version whose defaults apply (e.g. 1.23); default: the istiod image's tag in the
    /// input, else the newest known.
    #[arg(long, value_name = "VERSION")]
    pub istio_version: Option<String>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

pub fn run(args: AnalyzeArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshmedic: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(args: &AnalyzeArgs) -> Result<ExitCode> {
    let mesh_config = args
        .mesh_config
        .as_ref()
        .map(read_mesh_config)
        .transpose()?;
    let options = SnapshotOptions {
        cluster_domain: args.cluster_domain.clone(),
        istio_version: args.istio_version.clone(),
        mesh_config,
    };
    let snapshot = snapshot_from_paths(&args.paths, options)?;
    let report = analyze(&snapshot);
    // Where each finding is in the files (issue 13 §1): `path:line:col`.
    let locations = crate::positions::locate(&snapshot, &report.findings);
    let text = match args.output {
        Output::Table => render_table_at(&report, &locations),
        Output::Json => render_json(&report, &locations)?,
        Output::Yaml => render_yaml(&snapshot, &report.findings)?,
        Output::Sarif => super::sarif::render(&snapshot, &report, &locations)?,
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = out.write_all(text.as_bytes());
    if !report.errors.is_empty() {
        for e in &report.errors {
            eprintln!("meshmedic: {e}");
        }
        return Ok(ExitCode::from(2));
    }
    let failed = args
        .fail_on
        .is_some_and(|threshold| report.findings.iter().any(|f| f.severity >= threshold));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads `--mesh-config`: MeshConfig YAML, or an `istio` ConfigMap holding it under `data.mesh`.
pub fn read_mesh_config(path: &PathBuf) -> Result<(Source, MeshConfig)> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let docs = parse_documents(&name, &text)?;
    let Some((source, value)) = docs.into_iter().next() else {
        return Ok((Source::new(name, 0), MeshConfig::default()));
    };
    let (value, prefix) = if value.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
        let mesh = value
            .pointer("/data/mesh")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let parsed: Value = serde_saphyr::from_str(mesh).map_err(|e| Error::InvalidField {
            at: source.clone(),
            object: "ConfigMap".to_string(),
            field: "data.mesh".to_string(),
            message: format!("not valid YAML: {e}"),
        })?;
        (parsed, "data.mesh.")
    } else {
        (value, "")
    };
    let mesh: MeshConfig =
        serde_path_to_error::deserialize(&value).map_err(|e| Error::InvalidField {
            at: source.clone(),
            object: "MeshConfig".to_string(),
            field: format!("{prefix}{}", e.path()),
            message: e.into_inner().to_string(),
        })?;
    Ok((source, mesh))
}

fn subject(f: &Finding) -> String {
    match (&f.service, &f.workload) {
        (Some(s), Some(w)) => format!("{s} ({}/{})", w.kind, w.name),
        (Some(s), None) => s.clone(),
        (None, Some(w)) => format!("{}/{}", w.kind, w.name),
        (None, None) => "-".to_string(),
    }
}

pub fn render_table(report: &Report) -> String {
    render_table_at(report, &[])
}

/// The JSON report; each finding read from a file also carries its `location`
/// (`positions::Location`: object and changed field, each with `at` = `path:line:col`).
pub fn render_json(report: &Report, locations: &[Option<Location>]) -> Result<String> {
    let mut value = serde_json::to_value(report).map_err(|e| Error::Other(e.to_string()))?;
    if let Some(findings) = value.get_mut("findings").and_then(Value::as_array_mut) {
        for (f, l) in findings.iter_mut().zip(locations) {
            if let (Some(map), Some(l)) = (f.as_object_mut(), l) {
                let l = serde_json::to_value(l).map_err(|e| Error::Other(e.to_string()))?;
                map.insert("location".to_string(), l);
            }
        }
    }
    serde_json::to_string_pretty(&value)
        .map(|s| s + "\n")
        .map_err(|e| Error::Other(e.to_string()))
}

/// Where to look: the changed field's position, else the object's.
fn location_cell(l: Option<&Location>) -> String {
    l.map_or_else(
        || "-".to_string(),
        |l| l.field.as_ref().map_or(l.at.clone(), |f| f.at.clone()),
    )
}

/// The table, with a LOCATION column (`path:line:col`) when any finding has a location.
pub fn render_table_at(report: &Report, locations: &[Option<Location>]) -> String {
    let located = locations.iter().any(Option::is_some);
    let mut headers = vec!["CODE", "SEVERITY", "NAMESPACE", "SERVICE/WORKLOAD"];
    if located {
        headers.push("LOCATION");
    }
    headers.push("MESSAGE");
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut row = vec![
                f.code.to_string(),
                f.severity.to_string(),
                f.namespace.clone(),
                subject(f),
            ];
            if located {
                row.push(location_cell(locations.get(i).and_then(Option::as_ref)));
            }
            row.push(f.message.clone());
            row
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let last = headers.len() - 1;
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(headers.clone(), &mut out);
    for row in &rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out.push_str(&format!(
        "\n{} finding(s); Istio {}\n",
        report.findings.len(),
        report.istio_version
    ));
    if !report.skipped.is_empty() {
        let skipped: Vec<String> = report
            .skipped
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        out.push_str(&format!(
            "skipped (not read by meshmedic): {}\n",
            skipped.join(", ")
        ));
    }
    out
}

/// The corrected and new resources as one multi-document stream. Several findings on one object
/// are applied one after another, each planned against the object as the previous left it.
pub fn render_yaml(snapshot: &Snapshot, findings: &[Finding]) -> Result<String> {
    let mut order: Vec<ObjectRef> = Vec::new();
    let mut objects: BTreeMap<ObjectRef, (Value, Vec<String>)> = BTreeMap::new();
    let mut locator = crate::positions::Locator::default();
    for f in findings {
        let r = &f.remediation;
        let at = locator
            .locate(snapshot, f)
            .map(|l| format!(" at {}", l.field.map_or(l.at, |field| field.at)))
            .unwrap_or_default();
        let note = format!("{} ({}){at}", f.code, f.severity);
        if let Some((doc, notes)) = objects.get_mut(&r.target) {
            if r.action == Action::Patch {
                let ops = plan_patch(doc, &r.edits)
                    .map_err(|e| Error::Other(format!("{}: {e}", r.target)))?;
                apply(doc, &ops).map_err(|e| Error::Other(format!("{}: {e}", r.target)))?;
            }
            if !notes.contains(&note) {
                notes.push(note);
            }
            continue;
        }
        let doc = match r.action {
            Action::Create => r.resource.clone(),
            Action::Patch => {
                let mut doc = snapshot
                    .raw_object(&r.target)
                    .cloned()
                    .unwrap_or_else(|| r.resource.clone());
                let ops = plan_patch(&doc, &r.edits)
                    .map_err(|e| Error::Other(format!("{}: {e}", r.target)))?;
                apply(&mut doc, &ops).map_err(|e| Error::Other(format!("{}: {e}", r.target)))?;
                doc
            }
        };
        order.push(r.target.clone());
        objects.insert(r.target.clone(), (doc, vec![note]));
    }
    let mut out = String::new();
    for target in order {
        let Some((doc, notes)) = objects.get(&target) else {
            continue;
        };
        let yaml = serde_saphyr::to_string(doc).map_err(|e| Error::Other(e.to_string()))?;
        out.push_str(&format!(
            "---\n# meshmedic: {target}: {}\n{yaml}",
            notes.join(", ")
        ));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}
