//! `meshmedic analyze`: the offline analysis of manifests, for people (table), for tools (json)
//! and for `kubectl apply -f -` (yaml).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use crate::analysis::{Finding, Report, Severity, analyze_in, analyze_without_edits};
use crate::error::{Error, Result, Source};
use crate::model::ObjectRef;
use crate::model::istio::MeshConfig;
use crate::positions::Location;
use crate::remediation::{Action, apply, plan_patch};
use crate::snapshot::cluster::{self, Connection, Scope};
use crate::snapshot::load::{Input, parse_documents, read_paths, read_paths_prepared};
use crate::snapshot::profile::ProfileFile;
use crate::snapshot::{Snapshot, yaml};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// Manifest files or directories (searched for *.yaml, *.yml, *.json; files that are not
    /// manifests are skipped and listed); `-` reads stdin. With --cluster, local changes laid
    /// over the cluster's objects.
    #[arg(required_unless_present = "cluster")]
    pub paths: Vec<PathBuf>,
    /// table for people; json (stable fields) for tools; yaml: the corrected and new Istio
    /// resources, ready for `kubectl apply -f -`; sarif: SARIF 2.1.0 for code scanning.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub mesh: super::mesh_args::MeshArgs,
    /// Exit 1 when a finding at or above this severity exists.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
    /// Exit 2 when any document cannot be read (by default it is reported and the rest is
    /// analysed; exit 2 only when nothing could be read).
    #[arg(long)]
    pub strict: bool,
    /// Analyse the live cluster (read-only, through the kubeconfig); PATHS, if given, replace
    /// the cluster's objects of the same kind, namespace and name.
    #[arg(long)]
    pub cluster: bool,
    /// The kubeconfig context to use with --cluster.
    #[arg(long, requires = "cluster")]
    pub context: Option<String>,
    /// The kubeconfig file to use with --cluster (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, requires = "cluster", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// With --cluster: the namespace to analyse (default: the context's namespace).
    #[arg(short, long, requires = "cluster", conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// With --cluster: analyse every namespace.
    #[arg(short = 'A', long, requires = "cluster")]
    pub all_namespaces: bool,
    /// With --cluster: the mesh root namespace (its rules, mesh config and istiod are read too).
    #[arg(long, requires = "cluster", default_value = "istio-system")]
    pub root_namespace: String,
    /// With --cluster: objects per list request (tests use small pages).
    #[arg(long, hide = true, default_value_t = 500)]
    pub page_size: u32,
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
    let options = args.mesh.options()?;
    purge_freed_memory_soon();
    let mut phases = Phases::from_env();
    let (mut input, scope) = if args.cluster {
        read_cluster(args)?
    } else {
        (read_paths_prepared(&args.paths)?, None)
    };
    phases.done("read (split, YAML parse)");
    let (snapshot, read) = input.build(options)?;
    phases.done("build (typed objects, indexes)");
    // Where each finding is in the files (issue 13 §1): `path:line:col`.
    let mut locator = crate::positions::Locator::with_texts(std::mem::take(&mut input.texts));
    let mut rest = Report::without_findings(&snapshot);
    rest.skipped_files = std::mem::take(&mut input.skipped_files);
    rest.invalid_documents = std::mem::take(&mut input.invalid_documents);
    eprint!("{}", render_input_problems(&rest));
    if let Some(first) = input.duplicates.first() {
        eprintln!(
            "meshmedic: note: {} object(s) defined more than once; the last definition of each is \
             analysed, as `kubectl apply -f` would leave it (e.g. {first})",
            input.duplicates.len()
        );
    }
    if let Some(note) = unmeshed_input_note(&snapshot, args.cluster) {
        eprintln!("{note}");
    }
    if read == 0 {
        eprintln!(
            "meshmedic: nothing to analyse: no Kubernetes object could be read from the input"
        );
        return Ok(ExitCode::from(2));
    }
    if args.output == Output::Json {
        // Streamed: written as it is serialized. A closed pipe (`| head`) is not an error
        // worth a message; any other failure to serialize is.
        let out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let written = write_json_by_groups(
            &snapshot,
            scope,
            &mut locator,
            rest,
            GROUP_OBJECTS,
            args.fail_on,
            out,
        )?;
        // Flushed; stdout's lock given back.
        drop(written.out);
        phases.done("detectors, fixes, locate, render and write, by groups of namespaces");
        let code = exit_code(args, &written.rest, written.failed);
        // As the snapshot below: freed by the exit.
        std::mem::forget((snapshot, locator, input));
        return Ok(code);
    }
    // A fix's edits are kept to compose fixes on one object; only `-o yaml` does that here.
    let mut report = if args.output == Output::Yaml {
        analyze_in(&snapshot, scope)
    } else {
        analyze_without_edits(&snapshot, scope)
    };
    phases.done("detectors and fixes");
    let locations = crate::positions::locate(&mut locator, &snapshot, &report.findings);
    phases.done("locate findings");
    report.skipped_files = rest.skipped_files;
    report.invalid_documents = rest.invalid_documents;
    let text = match args.output {
        Output::Table => render_table_at(&report, &locations),
        // Written above, by groups; the whole report's text here only for the match.
        Output::Json => render_json(&report, &locations)?,
        Output::Yaml => {
            render_assumptions_comment(&report)
                + &render_yaml(&snapshot, &report.findings, &mut locator)?
        }
        Output::Sarif => super::sarif::render(&snapshot, &report, &locations, &mut locator)?,
    };
    phases.done("render");
    // The process ends after this: freeing the snapshot's millions of small allocations one by
    // one took ~10% of a large run (README, Benchmarks). The OS takes the memory back at exit.
    std::mem::forget(snapshot);
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = out.write_all(text.as_bytes());
    phases.done("write");
    let failed = fails(args.fail_on, &report.findings);
    Ok(exit_code(args, &report, failed))
}

/// A repository rarely holds its Namespace objects: when that alone leaves every workload out
/// of the mesh, say so and name the flag, rather than let "0 findings" speak for itself. The
/// same when the input defines their namespaces with no mesh label (then no flag helps); that
/// one also on a `cluster`, whose namespaces are all there.
pub(super) fn unmeshed_input_note(
    snapshot: &crate::snapshot::Snapshot,
    cluster: bool,
) -> Option<String> {
    let left_out = if cluster {
        0
    } else {
        snapshot.left_out_for_want_of_namespace_labels()
    };
    let mut notes = Vec::new();
    if left_out > 0 {
        notes.push(format!(
            "meshmedic: note: no workload here runs with an Istio proxy: {left_out} workload(s) \
             are in namespaces the input has no Namespace object for, read as not injected; if \
             they are deployed into injected namespaces, add --assume-injected"
        ));
    }
    let unlabelled = snapshot.left_out_by_unlabelled_namespaces();
    if !unlabelled.is_empty() {
        let count: usize = unlabelled.iter().map(|(_, n)| n).sum();
        let names: Vec<&str> = unlabelled.iter().map(|(ns, _)| *ns).collect();
        notes.push(format!(
            "meshmedic: note: no workload here runs with an Istio proxy: {count} workload(s) are \
             in namespaces the input defines with no mesh label ({}), so not injected; label a \
             namespace istio-injection=enabled (or istio.io/rev) to judge it as meshed",
            super::first_names(&names)
        ));
    }
    (!notes.is_empty()).then(|| notes.join("\n"))
}

/// `--fail-on`: whether a finding is at least that severe.
fn fails(threshold: Option<Severity>, findings: &[Finding]) -> bool {
    threshold.is_some_and(|threshold| findings.iter().any(|f| f.severity >= threshold))
}

/// 2 for fixes that could not be planned or (`--strict`) unreadable documents, 1 for a finding
/// at `--fail-on` (`failed`: the report's findings are not read here), else 0.
fn exit_code(args: &AnalyzeArgs, report: &Report, failed: bool) -> ExitCode {
    if !report.errors.is_empty() {
        for e in &report.errors {
            eprintln!("meshmedic: {e}");
        }
        return ExitCode::from(2);
    }
    if args.strict && !report.invalid_documents.is_empty() {
        eprintln!(
            "meshmedic: --strict: {} document(s) could not be read",
            report.invalid_documents.len()
        );
        return ExitCode::from(2);
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Services and workloads analysed, located and written at a time by `analyze -o json`: the
/// findings of about 4,000 of them (about 3 MB) are held at once instead of all of them (17 MB
/// of findings and places at 10,000 services, the run's peak; README, Benchmarks). Every group
/// runs each detector over the snapshot's lists, skipping other namespaces, so fewer, larger
/// groups cost less time.
const GROUP_OBJECTS: usize = 4_000;

/// What [`write_json_by_groups`] wrote: the report's fields but its findings, whether a
/// finding failed the run (`--fail-on`), and the output (`None` once it closed).
struct WrittenJson<W> {
    rest: Report,
    failed: bool,
    out: Option<W>,
}

/// `analyze -o json`: the detectors run, the findings are located and written, a group of
/// namespaces at a time ([`crate::analysis::namespace_groups`] with `objects`); the same bytes as
/// [`write_json`] of the whole report. `rest` is the report without findings; its errors are
/// those of every group, sorted (as `analyze_in` sorts its own). A closed output stops the
/// writing, not the analysis (the exit code still counts every finding).
fn write_json_by_groups<W: Write>(
    snapshot: &crate::snapshot::Snapshot,
    scope: Option<std::collections::BTreeSet<String>>,
    locator: &mut crate::positions::Locator,
    mut rest: Report,
    objects: usize,
    fail_on: Option<Severity>,
    out: W,
) -> Result<WrittenJson<W>> {
    let groups = crate::analysis::namespace_groups(snapshot, scope.as_ref(), objects);
    // One group is the whole scope: no set of namespaces to look each object up in.
    let scopes: Vec<_> = if groups.len() < 2 {
        vec![scope]
    } else {
        groups.into_iter().map(Some).collect()
    };
    let serialize = |e: serde_json::Error| Error::Other(e.to_string());
    let mut writer = Some(JsonWriter::new(out, &rest).map_err(serialize)?);
    let mut failed = false;
    for scope in scopes {
        let part = analyze_without_edits(snapshot, scope);
        failed |= fails(fail_on, &part.findings);
        rest.errors.extend(part.errors);
        let Some(w) = writer.as_mut() else { continue };
        let locations = crate::positions::locate(locator, snapshot, &part.findings);
        match w.findings(&part.findings, &locations) {
            Ok(()) => {}
            Err(e) if e.is_io() => writer = None,
            Err(e) => return Err(serialize(e)),
        }
    }
    rest.errors.sort();
    let mut out = None;
    if let Some(w) = writer {
        match w.finish(&rest).and_then(|mut w| {
            w.flush().map_err(serde_json::Error::io)?;
            Ok(w)
        }) {
            Ok(w) => out = Some(w),
            Err(e) if !e.is_io() => return Err(serialize(e)),
            Err(_) => {}
        }
    }
    Ok(WrittenJson { rest, failed, out })
}

/// mimalloc gives pages freed in a thread back to the OS 1 s after they are freed, by default.
/// A run of `analyze` is shorter than that: what reading freed (each document's tree, the
/// worker threads' lists) stayed resident beside what the snapshot and the findings took next,
/// in other pages. Given back after 20 ms: peak RSS at 10,000 services 142 → 127 MiB (20,000:
/// 245 → 223; 10,000 behind gateways: 186 → 158), for 2–4% more CPU time (pages faulted in
/// again; README, Benchmarks). Only when the option is still mimalloc's default (an
/// environment's `MIMALLOC_PURGE_DELAY` wins), and never in the operator, which runs for days.
fn purge_freed_memory_soon() {
    use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};
    // `mi_option_purge_delay` in mimalloc v3's mimalloc.h (libmimalloc-sys 0.1.49 names only
    // v2's numbers); should a later mimalloc number its options differently, the default
    // (1000 ms) will not match and nothing is changed.
    const PURGE_DELAY: mi_option_t = 15;
    // SAFETY: plain option getters and setters of the linked mimalloc, thread-safe.
    unsafe {
        if mi_option_get(PURGE_DELAY) == 1000 {
            mi_option_set(PURGE_DELAY, 20);
        }
    }
}

/// `MESHMEDIC_PHASES=1`: each phase's wall time and the process's memory (resident now and its
/// peak so far) on stderr, to see where a large run's time and memory go (README, Benchmarks).
struct Phases(Option<std::time::Instant>);

impl Phases {
    fn from_env() -> Phases {
        Phases(
            std::env::var_os("MESHMEDIC_PHASES")
                .is_some_and(|v| v == "1")
                .then(std::time::Instant::now),
        )
    }

    fn done(&mut self, phase: &str) {
        let Some(start) = self.0 else { return };
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map_or(0, |v| {
                    v.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0) / 1024
                })
        };
        // Resident memory in two parts: anonymous (the heap, stacks) and mapped from files (the
        // binary's code, which grows with the code a run goes through, not with its input:
        // 12–14 MiB for any full run; README, Benchmarks).
        eprintln!(
            "meshmedic: phase {phase}: {:.3} s, RSS {} MiB (peak {} MiB; now {} MiB anonymous, \
             {} MiB from files)",
            start.elapsed().as_secs_f64(),
            field("VmRSS:"),
            field("VmHWM:"),
            field("RssAnon:"),
            field("RssFile:")
        );
        self.0 = Some(std::time::Instant::now());
    }
}

/// Reads `--profile`: a small YAML file stating what the input lacks.
pub fn read_profile(path: &PathBuf) -> Result<ProfileFile> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    ProfileFile::parse(&path.display().to_string(), &text)
}

/// The profile as YAML comments ahead of the resources: `kubectl apply` ignores them, a reviewer
/// sees what the fixes assume.
pub fn render_assumptions_comment(report: &Report) -> String {
    let mut out = format!(
        "# meshmedic: Istio {}; {}\n",
        report.istio_version,
        report.profile.summary()
    );
    for a in &report.profile.assumptions {
        out.push_str(&format!("# meshmedic: assumed: {a}\n"));
    }
    out
}

/// `--cluster`: the cluster's objects in scope, with the local files laid over them, and the
/// namespaces whose findings to report (`None` for all).
fn read_cluster(args: &AnalyzeArgs) -> Result<(Input, Option<BTreeSet<String>>)> {
    let mut local = if args.paths.is_empty() {
        Input::default()
    } else {
        read_paths(&args.paths)?
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
    let connection = Connection {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    let (objects, namespace, scope) = runtime.block_on(async {
        let (client, context_namespace) = cluster::connect(&connection).await?;
        let namespace = args.namespace.clone().unwrap_or(context_namespace);
        let scope = if args.all_namespaces {
            Scope::All
        } else {
            Scope::Namespace(namespace.clone())
        };
        eprintln!(
            "meshmedic: reading the cluster ({}), read-only",
            match &scope {
                Scope::All => "all namespaces".to_string(),
                Scope::Namespace(ns) => format!(
                    "namespace {ns}, and {} for mesh-wide config",
                    args.root_namespace
                ),
            }
        );
        let mut progress = |line: String| eprintln!("meshmedic:   {line}");
        let objects = cluster::read(
            &client,
            &scope,
            &args.root_namespace,
            args.page_size,
            &mut progress,
        )
        .await?;
        Ok::<_, Error>((objects, namespace, scope))
    })?;
    let replaced = cluster::overlay(objects, &mut local, &namespace);
    if !args.paths.is_empty() {
        eprintln!("meshmedic: local files replace {replaced} cluster object(s)");
    }
    let scope = match scope {
        Scope::All => None,
        Scope::Namespace(ns) => Some(BTreeSet::from([ns])),
    };
    Ok((local, scope))
}

/// The skipped files and unreadable documents, for stderr.
pub fn render_input_problems(report: &Report) -> String {
    let mut out = String::new();
    if !report.skipped_files.is_empty() {
        let width = report
            .skipped_files
            .iter()
            .map(|s| s.file.len())
            .max()
            .unwrap_or(0)
            .max("SKIPPED FILE".len());
        out.push_str(&format!("{:<width$}  REASON\n", "SKIPPED FILE"));
        for s in &report.skipped_files {
            out.push_str(&format!("{:<width$}  {}\n", s.file, s.reason));
        }
    }
    for bad in &report.invalid_documents {
        out.push_str(&format!("meshmedic: left out: {bad}\n"));
    }
    out
}

/// Reads `--mesh-config`: MeshConfig YAML, an `istio` ConfigMap holding it under `data.mesh`, an
/// installation spec holding it (`IstioOperator` `spec.meshConfig`, Sail `Istio`
/// `spec.values.meshConfig`), or the istiod chart's Helm values (`meshConfig`). Another object is
/// refused, not read as an empty mesh config.
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
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = crate::snapshot::build::group_of(
        value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    // A mesh config inside another document; absent or null is Istio's defaults.
    let embedded = |mesh: Option<&Value>| match mesh {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(mesh) => mesh.clone(),
    };
    let (value, prefix) = if kind == "ConfigMap" {
        let mesh = value
            .pointer("/data/mesh")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let parsed: Value = yaml::from_str(mesh).map_err(|e| Error::InvalidField {
            at: source.clone(),
            object: "ConfigMap".to_string(),
            field: "data.mesh".to_string(),
            message: format!("not valid YAML: {e}"),
        })?;
        (parsed, "data.mesh.".to_string())
    } else if crate::snapshot::install::is_install(group, kind) {
        // `istioctl install -f` and the Sail operator take the mesh config from these.
        let mesh = crate::snapshot::install::mesh_config_of(kind, &value);
        let field = crate::snapshot::install::mesh_config_field(kind);
        (embedded(mesh), format!("{field}."))
    } else if !kind.is_empty() {
        // Read as a mesh config, any other object would be Istio's defaults, silently.
        return Err(Error::InvalidField {
            at: source,
            object: kind.to_string(),
            field: "kind".to_string(),
            message: "--mesh-config takes the mesh config itself, the istio ConfigMap, an \
                      IstioOperator or a Sail operator Istio"
                .to_string(),
        });
    } else if let Some(mesh) = value.get("meshConfig") {
        // The istiod Helm chart's values (`helm install istiod -f values.yaml`): no field of a
        // mesh config is called `meshConfig`, so read as one, this file was Istio's defaults.
        (embedded(Some(mesh)), "meshConfig.".to_string())
    } else {
        (value, String::new())
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
    let mut out = Vec::with_capacity(4096 + report.findings.len() * 3072);
    write_json(report, locations, &mut out).map_err(|e| Error::Other(e.to_string()))?;
    String::from_utf8(out).map_err(|e| Error::Other(e.to_string()))
}

/// [`render_json`] written as it is made (the output of a large run is tens of MB: it is not
/// held in memory).
pub fn write_json(
    report: &Report,
    locations: &[Option<Location>],
    out: impl Write,
) -> std::result::Result<(), serde_json::Error> {
    // Every field but the findings, in the report's order.
    let rest = Report {
        findings: Vec::new(),
        istio_version: report.istio_version.clone(),
        profile: report.profile.clone(),
        skipped: report.skipped.clone(),
        errors: report.errors.clone(),
        skipped_files: report.skipped_files.clone(),
        invalid_documents: report.invalid_documents.clone(),
    };
    let mut writer = JsonWriter::new(out, &rest)?;
    writer.findings(&report.findings, locations)?;
    writer.finish(&rest).map(drop)
}

/// The JSON report written as its findings come, in parts (a group of namespaces at a time,
/// [`crate::analysis::namespace_groups`]), then the rest of the report: byte for byte what
/// `serde_json::to_writer_pretty` writes for the whole report.
pub struct JsonWriter<W: Write> {
    out: W,
    /// The report's text up to its findings' `[` (`findings` is the report's first field).
    head: String,
    /// Findings written so far.
    written: usize,
}

/// Where the findings go in a report serialized without them: a top-level key is the only text
/// after a newline and exactly two spaces.
const EMPTY_FINDINGS: &str = "\n  \"findings\": []";

/// `report` (without findings) as pretty JSON, and where its `"findings": []` starts.
fn report_text(report: &Report) -> std::result::Result<(String, usize), serde_json::Error> {
    use serde::ser::Error as _;
    let text = serde_json::to_string_pretty(report)?;
    match text.find(EMPTY_FINDINGS) {
        Some(at) => Ok((text, at)),
        None => Err(serde_json::Error::custom(
            "the report has no findings field",
        )),
    }
}

impl<W: Write> JsonWriter<W> {
    /// A writer for a report shaped as `rest` (without findings).
    pub fn new(out: W, rest: &Report) -> std::result::Result<JsonWriter<W>, serde_json::Error> {
        let (mut head, at) = report_text(rest)?;
        head.truncate(at + EMPTY_FINDINGS.len() - 1);
        Ok(JsonWriter {
            out,
            head,
            written: 0,
        })
    }

    /// Writes `findings` (after those written before), each with its place.
    pub fn findings(
        &mut self,
        findings: &[Finding],
        locations: &[Option<Location>],
    ) -> std::result::Result<(), serde_json::Error> {
        let io = serde_json::Error::io;
        if findings.is_empty() {
            return Ok(());
        }
        if self.written == 0 {
            self.out.write_all(self.head.as_bytes()).map_err(io)?;
        }
        // Written as it is serialized, a batch at a time, each batch spread over the cores: one
        // JSON tree of the whole report (20 MB of output at 10,000 services) was a sixth of the
        // peak memory, and a tree per finding copied its corrected resource (README,
        // Benchmarks). A batch's text is held until it is written: 256 findings are about 0.8
        // MB (1,024 were 3 MB of the peak at 10,000 services), still far more work than a
        // thread's start.
        const BATCH: usize = 256;
        let threads = crate::snapshot::load::worker_threads();
        for (b, batch) in findings.chunks(BATCH).enumerate() {
            let first = b * BATCH;
            let part = batch.len().div_ceil(threads);
            let render = |i: usize| {
                let end = (i + part).min(batch.len());
                let mut buf = Vec::with_capacity((end - i) * 3072);
                for (n, finding) in batch[i..end].iter().enumerate() {
                    let at = first + i + n;
                    let location = locations.get(at).and_then(Option::as_ref);
                    write_finding(&mut buf, finding, location, self.written + at)?;
                }
                Ok::<_, serde_json::Error>(buf)
            };
            let parts = if threads < 2 {
                vec![render(0)]
            } else {
                let starts = (0..batch.len()).step_by(part).collect();
                crate::snapshot::load::on_threads(starts, render)
            };
            for part in parts {
                self.out.write_all(&part?).map_err(io)?;
            }
        }
        self.written += findings.len();
        Ok(())
    }

    /// Writes the rest of the report (`rest`'s fields after its findings, which must be empty:
    /// those were written) and gives the output back.
    pub fn finish(mut self, rest: &Report) -> std::result::Result<W, serde_json::Error> {
        let io = serde_json::Error::io;
        let (text, at) = report_text(rest)?;
        if self.written == 0 {
            self.out.write_all(text.as_bytes()).map_err(io)?;
        } else {
            self.out.write_all(b"\n  ]").map_err(io)?;
            self.out
                .write_all(&text.as_bytes()[at + EMPTY_FINDINGS.len()..])
                .map_err(io)?;
        }
        self.out.write_all(b"\n").map_err(io)?;
        Ok(self.out)
    }
}

/// One element of the report's `findings`, as `serde_json::to_writer_pretty` writes it at that
/// depth: `,` before all but the first, then the finding's fields and its `location`.
fn write_finding(
    buf: &mut Vec<u8>,
    finding: &Finding,
    location: Option<&Location>,
    index: usize,
) -> std::result::Result<(), serde_json::Error> {
    use serde::Serialize;

    #[derive(Serialize)]
    struct Located<'a> {
        #[serde(flatten)]
        finding: &'a Finding,
        #[serde(skip_serializing_if = "Option::is_none")]
        location: Option<&'a Location>,
    }
    if index > 0 {
        buf.push(b',');
    }
    buf.extend_from_slice(b"\n    ");
    // Two levels in: the report's object and its `findings` array.
    let mut ser = serde_json::Serializer::with_formatter(&mut *buf, Pretty::at_depth(2));
    crate::remediation::with_raw_json_fragments(|| {
        Located { finding, location }.serialize(&mut ser)
    })
}

/// serde_json's `PrettyFormatter` (two spaces), started `depth` levels in, which also lays out
/// a raw fragment of compact JSON (a finding's corrected resource or patch,
/// [`crate::remediation::Compact`]) as it would have laid out the same value serialized token
/// by token: the fragment was written by serde_json, so its strings and numbers are already as
/// the formatter writes them, and only the layout between the tokens changes. Its own (not a
/// wrapped `PrettyFormatter`): that one always starts at the left margin, and indenting every
/// line of a finding again afterwards was a tenth of writing it.
struct Pretty {
    /// How many objects and arrays are open: the indentation of what follows a newline.
    depth: usize,
    /// Whether the innermost open object or array has a value yet (`{}` and `[]` otherwise).
    has_value: bool,
}

/// A newline and `depth` levels of two spaces.
fn newline_at(out: &mut (impl Write + ?Sized), depth: usize) -> std::io::Result<()> {
    const SPACES: &[u8] = &[b' '; 64];
    out.write_all(b"\n")?;
    let mut left = 2 * depth;
    while left > 0 {
        let n = left.min(SPACES.len());
        out.write_all(&SPACES[..n])?;
        left -= n;
    }
    Ok(())
}

impl Pretty {
    fn at_depth(depth: usize) -> Pretty {
        Pretty {
            depth,
            has_value: false,
        }
    }

    /// `{` or `[`: one level deeper, nothing in it yet.
    fn open<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    /// `}` or `]`, on a line of its own unless the object or array is empty.
    fn close<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            newline_at(w, self.depth)?;
        }
        w.write_all(bracket)
    }

    /// Before a key or an item: `,` after the first, then a new line.
    fn entry<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        newline_at(w, self.depth)
    }
}

impl serde_json::ser::Formatter for Pretty {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.entry(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.entry(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn write_raw_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        json: &str,
    ) -> std::io::Result<()> {
        pretty_fragment(w, json.as_bytes(), self.depth)
    }
}

/// Compact JSON `json` as [`Pretty`] writes the same value when `depth` objects and arrays are
/// already open: a newline and the indentation after `{`, `[` and `,` (none inside an empty
/// `{}` or `[]`), before a closing bracket, and `": "` between a key and its value. Strings
/// are copied as they are.
fn pretty_fragment(
    out: &mut (impl Write + ?Sized),
    json: &[u8],
    mut depth: usize,
) -> std::io::Result<()> {
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        match b {
            b'"' => {
                // To the closing quote: the first one no backslash escapes.
                let mut end = i + 1;
                while let Some(at) = json
                    .get(end..)
                    .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                {
                    end += at;
                    if json[end] == b'"' {
                        break;
                    }
                    end += 2;
                }
                let end = (end + 1).min(json.len());
                out.write_all(&json[i..end])?;
                i = end;
                continue;
            }
            b'{' | b'[' => {
                let close = if b == b'{' { b'}' } else { b']' };
                if json.get(i + 1) == Some(&close) {
                    out.write_all(&[b, close])?;
                    i += 2;
                    continue;
                }
                out.write_all(&[b])?;
                depth += 1;
                newline_at(out, depth)?;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline_at(out, depth)?;
                out.write_all(&[b])?;
            }
            b',' => {
                out.write_all(b",")?;
                newline_at(out, depth)?;
            }
            b':' => out.write_all(b": ")?,
            _ => {
                // A number or a literal, to the next structural byte.
                let end = json[i..]
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']'))
                    .map_or(json.len(), |n| i + n);
                out.write_all(&json[i..end])?;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    Ok(())
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
    out.push_str(&format!("profile: {}\n", report.profile.summary()));
    for a in &report.profile.assumptions {
        out.push_str(&format!("assumed: {a}\n"));
    }
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
    if !report.skipped_files.is_empty() || !report.invalid_documents.is_empty() {
        out.push_str(&format!(
            "{} file(s) skipped as not manifests, {} document(s) left out as unreadable (listed on stderr)\n",
            report.skipped_files.len(),
            report.invalid_documents.len()
        ));
    }
    out
}

/// The corrected and new resources as one multi-document stream. Several findings on one object
/// are applied one after another, each planned against the object as the previous left it.
pub fn render_yaml(
    snapshot: &Snapshot,
    findings: &[Finding],
    locator: &mut crate::positions::Locator,
) -> Result<String> {
    let mut order: Vec<ObjectRef> = Vec::new();
    let mut objects: BTreeMap<ObjectRef, (Value, Vec<String>)> = BTreeMap::new();
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
            Action::Create => r.resource.to_value(),
            Action::Patch => {
                let mut doc = snapshot
                    .raw_object(&r.target)
                    .cloned()
                    .unwrap_or_else(|| r.resource.to_value());
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::json;

    /// A mesh of `namespaces` × `services` (nginx behind a DestinationRule keeping idle
    /// connections an hour, a VirtualService without retries: two findings a service), the
    /// namespaces' objects interleaved and in reverse order, so no file order matches the
    /// report's.
    fn interleaved_mesh(namespaces: usize, services: usize) -> String {
        let mut out = String::new();
        for ns in (0..namespaces).rev() {
            out += &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{ns}\n  labels: \
                 {{istio-injection: enabled}}\n---\n"
            );
        }
        for s in 0..services {
            for ns in (0..namespaces).rev() {
                let host = format!("svc-{s}.ns-{ns}.svc.cluster.local");
                out += &format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: svc-{s}, \
                     namespace: ns-{ns}}}\nspec:\n  selector:\n    matchLabels: {{app: svc-{s}}}\n  \
                     template:\n    metadata:\n      labels: {{app: svc-{s}}}\n    spec:\n      \
                     containers:\n      - name: app\n        image: nginx:1.27\n        ports:\n        \
                     - containerPort: 8080\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: \
                     svc-{s}, namespace: ns-{ns}}}\nspec:\n  selector: {{app: svc-{s}}}\n  ports:\n  \
                     - {{name: http, port: 80, targetPort: 8080}}\n---\napiVersion: \
                     networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc-{s}, \
                     namespace: ns-{ns}}}\nspec:\n  host: {host}\n  trafficPolicy:\n    \
                     connectionPool:\n      http: {{idleTimeout: 1h}}\n---\napiVersion: \
                     networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc-{s}, \
                     namespace: ns-{ns}}}\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n    - \
                     destination: {{host: {host}}}\n---\n"
                );
            }
        }
        out
    }

    /// `analyze -o json` written by groups of namespaces, whatever their size, is byte for byte
    /// the whole report written at once: the bundled examples, a repository fixture of three
    /// namespaces, and a mesh whose file holds its namespaces out of order.
    #[test]
    fn the_report_written_by_groups_of_namespaces_is_the_whole_report() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mesh = dir.path().join("mesh.yaml");
        std::fs::write(&mesh, interleaved_mesh(7, 6)).expect("write");
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (examples, repo) = (here.join("examples"), here.join("tests/fixtures/repo"));
        for (paths, namespaces) in [(vec![examples], 1), (vec![repo], 3), (vec![mesh], 7)] {
            let mut input = read_paths_prepared(&paths).expect("reads");
            let (snapshot, _) = input
                .build(crate::snapshot::SnapshotOptions::default())
                .expect("builds");
            let mut locator = crate::positions::Locator::with_texts(input.texts.clone());
            let mut whole = analyze_without_edits(&snapshot, None);
            whole.skipped_files = input.skipped_files.clone();
            whole.invalid_documents = input.invalid_documents.clone();
            let locations = crate::positions::locate(&mut locator, &snapshot, &whole.findings);
            let expected = render_json(&whole, &locations).expect("renders");
            assert!(
                whole.findings.len() > 3,
                "{paths:?}: {}",
                whole.findings.len()
            );
            let groups = crate::analysis::namespace_groups(&snapshot, None, 1);
            assert_eq!(groups.len(), namespaces, "{groups:?}");
            for objects in [1, 5, 17, usize::MAX] {
                let mut rest = Report::without_findings(&snapshot);
                rest.skipped_files = input.skipped_files.clone();
                rest.invalid_documents = input.invalid_documents.clone();
                let mut locator = crate::positions::Locator::with_texts(input.texts.clone());
                let written = write_json_by_groups(
                    &snapshot,
                    None,
                    &mut locator,
                    rest,
                    objects,
                    Some(Severity::Warning),
                    Vec::new(),
                )
                .expect("writes");
                assert!(written.failed);
                let got = String::from_utf8(written.out.expect("written")).expect("utf-8");
                assert!(
                    got == expected,
                    "{paths:?} by groups of {objects} objects differs"
                );
            }
        }
    }

    /// Groups of namespaces: every namespace with a service or workload once, in order, each
    /// group at least the size asked but the last, and only those in scope.
    #[test]
    fn namespace_groups_cover_the_namespaces_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mesh = dir.path().join("mesh.yaml");
        std::fs::write(&mesh, interleaved_mesh(5, 3)).expect("write");
        let mut input = read_paths_prepared(&[mesh]).expect("reads");
        let (snapshot, _) = input
            .build(crate::snapshot::SnapshotOptions::default())
            .expect("builds");
        let names = |groups: Vec<std::collections::BTreeSet<String>>| -> Vec<Vec<String>> {
            groups
                .into_iter()
                .map(|g| g.into_iter().collect())
                .collect()
        };
        // Six services and workloads a namespace.
        let groups = crate::analysis::namespace_groups(&snapshot, None, 10);
        assert_eq!(
            names(groups),
            [vec!["ns-0", "ns-1"], vec!["ns-2", "ns-3"], vec!["ns-4"]]
        );
        let all = crate::analysis::namespace_groups(&snapshot, None, usize::MAX);
        assert_eq!(all.len(), 1);
        let scope = ["ns-1", "ns-3", "other"].map(String::from).into();
        let groups = crate::analysis::namespace_groups(&snapshot, Some(&scope), 1);
        assert_eq!(names(groups), [vec!["ns-1"], vec!["ns-3"]]);
    }

    /// Values whose layout has edge cases: empty containers at every level, strings that hold
    /// brackets, commas, colons, quotes and escapes, numbers at their limits.
    fn values() -> Vec<Value> {
        vec![
            json!({}),
            json!([]),
            json!(null),
            json!("a\"b\\c\n\u{1}é/\\"),
            json!(1.5e300),
            json!(-0.0),
            json!(0.1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!({"a": [], "b": {}, "c": [1, [2, {}], {"d": "x,y:}]\\\""}], "e": {"f": {"g": true}}}),
            json!([[[]], [{}], "]", ",", {"": ""}]),
        ]
    }

    /// serde_json's pretty layout of `v`, `depth` levels in.
    fn serde_json_pretty(v: &impl Serialize, depth: usize) -> String {
        let indent = format!("\n{}", "  ".repeat(depth));
        // JSON strings hold no raw newline: each one is the layout's.
        serde_json::to_string_pretty(v)
            .expect("serializes")
            .replace('\n', &indent)
    }

    #[test]
    fn a_compact_fragment_is_laid_out_as_serde_json_lays_out_its_value() {
        for v in values() {
            let compact = serde_json::to_string(&v).expect("serializes");
            for depth in [0, 1, 3, 40] {
                let mut out = Vec::new();
                pretty_fragment(&mut out, compact.as_bytes(), depth).expect("writes");
                assert_eq!(
                    String::from_utf8(out).expect("utf-8"),
                    serde_json_pretty(&v, depth),
                    "{compact} at depth {depth}"
                );
            }
        }
    }

    #[test]
    fn the_formatter_writes_what_serde_json_pretty_writes_with_fragments_or_without() {
        #[derive(Serialize)]
        struct Holder {
            name: &'static str,
            resource: crate::remediation::Resource,
            list: Vec<crate::remediation::Resource>,
            value: Value,
        }
        for v in values() {
            let holder = || Holder {
                name: "h",
                resource: v.clone().into(),
                list: vec![v.clone().into(), json!({}).into()],
                value: v.clone(),
            };
            for depth in [0, 2] {
                let expected = serde_json_pretty(&holder(), depth);
                let mut plain = Vec::new();
                let mut ser =
                    serde_json::Serializer::with_formatter(&mut plain, Pretty::at_depth(depth));
                holder().serialize(&mut ser).expect("serializes");
                assert_eq!(String::from_utf8(plain).expect("utf-8"), expected);
                let mut raw = Vec::new();
                let mut ser =
                    serde_json::Serializer::with_formatter(&mut raw, Pretty::at_depth(depth));
                crate::remediation::with_raw_json_fragments(|| holder().serialize(&mut ser))
                    .expect("serializes");
                assert_eq!(String::from_utf8(raw).expect("utf-8"), expected, "{v}");
            }
        }
    }
}
