//! `meshmedic fix`: writes the safe fixes into the user's manifest files as minimal edits
//! (`positions::edit`), new objects into a file of their own, or prints it all as a diff.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

use crate::analysis::{Code, Finding, analyze};
use crate::error::{Error, Result};
use crate::model::ObjectRef;
use crate::positions::edit::{ObjectPatch, edit_text};
use crate::positions::{self, Locator};
use crate::remediation::{Action, plan_patch};
use crate::snapshot::Snapshot;
use crate::snapshot::load::{parse_documents, read_paths};

#[derive(clap::Args, Debug)]
pub struct FixArgs {
    /// Manifest files or directories (searched for *.yaml, *.yml, *.json).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print a unified diff of what would change and write nothing; exit 1 when something
    /// would change.
    #[arg(long)]
    pub diff: bool,
    /// Only fixes of these finding codes (repeat or comma-separate).
    #[arg(long = "code", value_name = "CODE", value_delimiter = ',')]
    pub codes: Vec<String>,
    /// Also write the proposal-only fixes of these codes (they restart pods, or change
    /// non-idempotent routes); never written otherwise.
    #[arg(long = "include-unsafe", value_name = "CODE", value_delimiter = ',')]
    pub include_unsafe: Vec<String>,
    /// Where new objects go; default: `<file>.meshmedic-new.yaml` beside the file of the
    /// workload or Service the finding is about.
    #[arg(long, value_name = "FILE")]
    pub new_objects: Option<PathBuf>,
    #[command(flatten)]
    pub mesh: super::mesh_args::MeshArgs,
}

pub fn run(args: FixArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshmedic: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_codes(flag: &str, texts: &[String]) -> Result<BTreeSet<Code>> {
    texts
        .iter()
        .map(|t| {
            Code::parse(t).ok_or_else(|| Error::InvalidArgument {
                flag: flag.to_string(),
                message: format!(
                    "unknown finding code {t:?}; known: {}",
                    Code::ALL.map(Code::as_str).join(", ")
                ),
            })
        })
        .collect()
}

/// What `fix` will do: the new text of each file it changes.
#[derive(Debug, Default)]
pub struct Plan {
    /// File → (old text, new text); old is empty for a new file.
    pub files: BTreeMap<PathBuf, (String, String)>,
    /// One line per fix written (`path:line:col: code: object`).
    pub applied: Vec<String>,
    /// Fixes left out, with the reason.
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
    /// The files new objects are added to.
    pub new_object_files: BTreeSet<PathBuf>,
}

/// Which fixes are written.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// Empty: every code.
    pub codes: BTreeSet<Code>,
    pub include_unsafe: BTreeSet<Code>,
    pub new_objects: Option<PathBuf>,
}

impl Selection {
    fn wants(&self, f: &Finding) -> Result<(), String> {
        if !self.codes.is_empty() && !self.codes.contains(&f.code) {
            return Err(String::new());
        }
        if !f.remediation.safe_to_auto_apply && !self.include_unsafe.contains(&f.code) {
            return Err(format!(
                "a proposal (restarts pods or changes non-idempotent routes); write it with --include-unsafe {}",
                f.code
            ));
        }
        Ok(())
    }
}

fn run_inner(args: &FixArgs) -> Result<ExitCode> {
    let options = args.mesh.options()?;
    if args.paths.iter().any(|p| p.as_os_str() == "-") {
        return Err(Error::InvalidArgument {
            flag: "PATHS".to_string(),
            message: "fix edits files; stdin (-) cannot be written back".to_string(),
        });
    }
    let selection = Selection {
        codes: parse_codes("--code", &args.codes)?,
        include_unsafe: parse_codes("--include-unsafe", &args.include_unsafe)?,
        new_objects: args.new_objects.clone(),
    };
    // Read as `analyze` reads a repository: files that are not manifests are skipped, an
    // unreadable document is left out (and never edited).
    let mut input = read_paths(&args.paths)?;
    for bad in &input.invalid_documents {
        eprintln!("meshmedic: left out: {bad}");
    }
    let (snapshot, _) = input.build(options)?;
    if let Some(note) = super::analyze::unmeshed_input_note(&snapshot, false) {
        eprintln!("{note}");
    }
    let plan = plan(&snapshot, &selection);
    for line in &plan.skipped {
        eprintln!("meshmedic: not written: {line}");
    }
    for e in &plan.errors {
        eprintln!("meshmedic: {e}");
    }
    for note in unlisted_in_kustomizations(&plan) {
        eprintln!("meshmedic: note: {note}");
    }
    let changed: Vec<_> = plan
        .files
        .iter()
        .filter(|(_, (old, new))| old != new)
        .collect();
    if args.diff {
        let mut out = String::new();
        for (path, (old, new)) in &changed {
            out.push_str(&unified_diff(path, old, new));
        }
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    } else {
        for (path, (_, new)) in &changed {
            std::fs::write(path, new).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        for line in &plan.applied {
            eprintln!("meshmedic: fixed {line}");
        }
        eprintln!(
            "meshmedic: {} fix(es) written to {} file(s)",
            plan.applied.len(),
            changed.len()
        );
    }
    Ok(if !plan.errors.is_empty() {
        ExitCode::from(2)
    } else if args.diff && !changed.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `diff -u` of one file, with `a/` and `b/` headers as git prints them (`/dev/null` for a
/// file that does not exist yet).
pub fn unified_diff(path: &Path, old: &str, new: &str) -> String {
    let name = path.display().to_string();
    let name = name.trim_start_matches('/');
    let from = if path.exists() {
        format!("a/{name}")
    } else {
        "/dev/null".to_string()
    };
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&from, &format!("b/{name}"))
        .to_string()
}

/// Plans every selected fix of the snapshot's findings: patches into the files the targets
/// came from, new objects into their own file. Reads the files; writes nothing.
pub fn plan(snapshot: &Snapshot, selection: &Selection) -> Plan {
    let report = analyze(snapshot);
    let mut plan = Plan {
        errors: report.errors.clone(),
        ..Plan::default()
    };
    let mut locator = Locator::default();
    // Patches by target, edits in finding order (several findings on one object compose).
    let mut patches: BTreeMap<ObjectRef, Vec<&Finding>> = BTreeMap::new();
    let mut creates: Vec<&Finding> = Vec::new();
    for f in &report.findings {
        match selection.wants(f) {
            Ok(()) => {}
            Err(reason) if reason.is_empty() => continue,
            Err(reason) => {
                let at = locator
                    .locate(snapshot, f)
                    .map(|l| format!("{}: ", l.at))
                    .unwrap_or_default();
                plan.skipped.push(format!(
                    "{at}{}: {}: {reason}",
                    f.code, f.remediation.target
                ));
                continue;
            }
        }
        match f.remediation.action {
            Action::Patch => patches
                .entry(f.remediation.target.clone())
                .or_default()
                .push(f),
            Action::Create => creates.push(f),
        }
    }
    let mut by_file: BTreeMap<String, Vec<ObjectPatch>> = BTreeMap::new();
    for (target, findings) in &patches {
        let (Some(raw), Some(source)) = (
            snapshot.raw_object(target),
            positions::source_of(snapshot, target),
        ) else {
            plan.errors
                .push(format!("{target}: not found among the input objects"));
            continue;
        };
        if &*source.file == "-" || &*source.file == "cluster" {
            plan.skipped
                .push(format!("{target}: read from {}, not a file", source.file));
            continue;
        }
        let mut edits = Vec::new();
        for f in findings {
            for e in &f.remediation.edits {
                if !edits.contains(e) {
                    edits.push(e.clone());
                }
            }
        }
        let ops = match plan_patch(raw, &edits) {
            Ok(ops) => ops,
            Err(e) => {
                plan.errors.push(format!("{target}: {e}"));
                continue;
            }
        };
        if ops.is_empty() {
            continue;
        }
        for f in findings {
            let at = locator
                .locate(snapshot, f)
                .map(|l| l.field.map_or(l.at, |field| field.at))
                .unwrap_or_else(|| source.to_string());
            plan.applied.push(format!("{at}: {}: {target}", f.code));
        }
        by_file
            .entry(source.file.to_string())
            .or_default()
            .push(ObjectPatch {
                source: source.clone(),
                object: target.to_string(),
                ops,
            });
    }
    for (file, patches) in by_file {
        let Some(text) = locator.text(&file).map(str::to_string) else {
            plan.errors.push(format!("{file}: cannot be read again"));
            continue;
        };
        match edit_text(&file, &text, &patches) {
            Ok(new) => {
                plan.files.insert(PathBuf::from(&file), (text, new));
            }
            Err(e) => plan.errors.push(e),
        }
    }
    plan_creates(snapshot, selection, &creates, &mut locator, &mut plan);
    plan
}

/// New-object files that the kustomization of their directory does not list, one line per
/// kustomization: `kubectl apply -k` and `kustomize build` read only the resources a
/// kustomization names, so those objects would silently stay out of what is deployed
/// (microservices-demo's `kubernetes-manifests/kustomization.yaml` names each of its files).
/// Only the kustomization beside the file is read; one that lists the directory is the parent's.
pub fn unlisted_in_kustomizations(plan: &Plan) -> Vec<String> {
    use crate::snapshot::load::normalize;
    // By directory: each kustomization is read once, however many new files sit beside it.
    let mut by_dir: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
    for file in &plan.new_object_files {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Some(name) = file.file_name().and_then(|n| n.to_str()) {
            by_dir.entry(dir).or_default().push(name);
        }
    }
    let mut notes = Vec::new();
    for (dir, names) in by_dir {
        let Some((path, text)) = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
            .iter()
            .find_map(|k| {
                let path = dir.join(k);
                std::fs::read_to_string(&path).ok().map(|text| (path, text))
            })
        else {
            continue;
        };
        // One that does not read is reported when the kustomization itself is built.
        let Ok(kustomization) = crate::snapshot::yaml::from_str(&text) else {
            continue;
        };
        let listed: BTreeSet<PathBuf> = kustomization
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|r| normalize(Path::new(r)))
            .collect();
        let unlisted: Vec<&str> = names
            .into_iter()
            .filter(|name| !listed.contains(&normalize(Path::new(name))))
            .collect();
        if unlisted.is_empty() {
            continue;
        }
        notes.push(format!(
            "{} lists its resources, not {}: add {} to `resources`, or `kubectl apply -k` and \
             `kustomize build` leave the new objects out",
            path.display(),
            super::first_names(&unlisted),
            if unlisted.len() == 1 { "it" } else { "them" }
        ));
    }
    notes
}

/// The default file for new objects: `<stem>.meshmedic-new.yaml` beside `file`.
pub fn new_objects_file(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifests".to_string());
    let stem = stem.trim_end_matches(".meshmedic-new").to_string();
    file.with_file_name(format!("{stem}.meshmedic-new.yaml"))
}

fn object_ref_of(v: &Value) -> ObjectRef {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    ObjectRef {
        api_version: s("/apiVersion"),
        kind: s("/kind"),
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name"),
    }
}

/// Whether the object a finding is for was written without `metadata.namespace`: its files are
/// applied with `kubectl apply -n NS` (or a kustomization's namespace), and a new object beside
/// them must follow them there rather than name `default`, which kubectl would refuse with `-n`.
fn implicit_namespace(snapshot: &Snapshot, finding: &Finding) -> bool {
    positions::subject_object(snapshot, finding)
        .and_then(|object| snapshot.raw_object(&object))
        .is_some_and(|v| v.pointer("/metadata/namespace").is_none())
}

/// A new object for files without namespaces: no `metadata.namespace`, and each host of its own
/// namespace (`NAME.NS.svc.DOMAIN`) written short, as Istio reads a short host in the rule's
/// namespace, wherever it is applied. Hosts of other namespaces keep their full names.
fn without_namespace(resource: &mut Value, namespace: &str, cluster_domain: &str) {
    fn shorten(v: &mut Value, suffix: &str) {
        match v {
            Value::String(s) => {
                if let Some(name) = s.strip_suffix(suffix)
                    && !name.is_empty()
                    && !name.contains('.')
                {
                    *s = name.to_string();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| shorten(i, suffix)),
            Value::Object(map) => map.values_mut().for_each(|i| shorten(i, suffix)),
            _ => {}
        }
    }
    if let Some(meta) = resource.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("namespace");
    }
    if let Some(spec) = resource.get_mut("spec") {
        shorten(spec, &format!(".{namespace}.svc.{cluster_domain}"));
    }
}

fn plan_creates(
    snapshot: &Snapshot,
    selection: &Selection,
    creates: &[&Finding],
    locator: &mut Locator,
    plan: &mut Plan,
) {
    for f in creates {
        let r = &f.remediation;
        let anchor = locator.locate(snapshot, f);
        let file = match (&selection.new_objects, &anchor) {
            (Some(file), _) => file.clone(),
            (None, Some(l)) => new_objects_file(Path::new(&l.file)),
            (None, None) => {
                plan.skipped.push(format!(
                    "{}: {}: the finding's objects were not read from a file; name one with --new-objects",
                    f.code, r.target
                ));
                continue;
            }
        };
        let (old, mut new) = match plan.files.get(&file) {
            Some((old, new)) => (old.clone(), new.clone()),
            None => {
                let old = std::fs::read_to_string(&file).unwrap_or_default();
                (old.clone(), old)
            }
        };
        let implicit = implicit_namespace(snapshot, f);
        // Already there (an earlier run): nothing to add.
        let present = parse_documents(&file.display().to_string(), &new)
            .map(|docs| {
                docs.iter().any(|(_, v)| {
                    let mut found = object_ref_of(v);
                    if found.namespace.is_empty() && implicit {
                        found.namespace.clone_from(&r.target.namespace);
                    }
                    found == r.target
                })
            })
            .unwrap_or(false);
        if present || snapshot.raw_object(&r.target).is_some() {
            continue;
        }
        let mut resource: Value = (*r.resource).clone();
        if implicit {
            without_namespace(&mut resource, &r.target.namespace, &snapshot.cluster_domain);
        }
        let yaml = match serde_saphyr::to_string(&resource) {
            Ok(y) => y,
            Err(e) => {
                plan.errors.push(format!("{}: {e}", r.target));
                continue;
            }
        };
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        let about = anchor
            .as_ref()
            .map(|l| format!(" (for {}, {})", l.object, l.at))
            .unwrap_or_default();
        new.push_str(&format!("---\n# meshmedic fix: {}{about}\n{yaml}", f.code));
        if !new.ends_with('\n') {
            new.push('\n');
        }
        plan.applied
            .push(format!("{}: {}: new {}", file.display(), f.code, r.target));
        plan.new_object_files.insert(file.clone());
        plan.files.insert(file, (old, new));
    }
}
