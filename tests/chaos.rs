//! The chaos run: two `meshmedic run` processes on a real control plane, a load generator
//! churning workloads, Services, DestinationRules and VirtualServices in opted-in namespaces,
//! a simulated reviewer approving and rolling back, a human editing the same targets — while
//! faults are injected: kube-apiserver `kill -9` (restarted with the same flags), etcd
//! `kill -9`, etcd history compaction every few seconds (so watches that fall behind see
//! `410 Gone`), API Priority and Fairness throttling of the operator's user (429s), the leader
//! SIGKILLed, the leader frozen (SIGSTOP) past its lease, the leader's apiserver connections
//! blocked past its lease while it runs (a network partition, through a relay per replica), bad
//! input (malformed annotations, a Remediation edited into an invalid shape) and an Istio CRD
//! removed and re-added.
//!
//! The kube-apiserver audit log is the witness: every write with its (impersonated) user and the
//! replica's group. Checked at the end: no panic, no duplicate Remediation, none missing, no
//! write to a target without a matching approval, no write by a replica that was not the
//! leader, no human edit overwritten, time to recovery per fault.
//!
//! Short by default (one round of faults, ~2-3 minutes; runs with the other tests). The full
//! run: `MESHMEDIC_CHAOS_ROUNDS=10 cargo test --release --test chaos -- --nocapture` (figures
//! printed as a Markdown table; `MESHMEDIC_CHAOS_REPORT=FILE` writes them to FILE too).
//! All traffic stays on 127.0.0.1.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::control_plane;
use support::operator::{eventually, install_once};

const LEASE: &str = "chaos-leader";
/// Set by [`compare`]: Remediations Resolved although their cause is present again.
static RESOLVED_BUT_PRESENT: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);
const LEASE_SECONDS: u64 = 4;
const REPLICAS: [&str; 2] = ["replica-a", "replica-b"];
const HUMAN: &str = "chaos-human";
/// Lost races (409s on Remediation writes) in any one second: a few are a race with the reviewer
/// or the other replica; a loop on a stale view makes dozens.
const MAX_LOST_RACES_PER_SECOND: usize = 10;

// ---------------------------------------------------------------------------------------------
// Processes

/// Starts `program` so that it dies with this thread (PR_SET_PDEATHSIG), output to `log`.
fn spawn(program: &Path, args: &[String], envs: &[(&str, &str)], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env_remove("KUBECONFIG");
    for (k, v) in envs {
        command.env(k, v);
    }
    // SAFETY: prctl only, in the forked child before exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn cmdline(pid: u32) -> (PathBuf, Vec<String>) {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline of a child");
    let mut parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let program = PathBuf::from(parts.remove(0));
    (program, parts)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A control-plane component we restart: its command line and its current process.
struct Component {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    pid: u32,
    starts: u32,
}

impl Component {
    fn adopt(name: &'static str, pid: u32, dir: &Path, extra: &[String]) -> Component {
        let (program, mut args) = cmdline(pid);
        args.extend(extra.iter().cloned());
        Component {
            name,
            program,
            args,
            dir: dir.to_path_buf(),
            child: None,
            pid,
            starts: 0,
        }
    }

    fn kill9(&mut self) {
        signal(self.pid, libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        } else {
            // The original child belongs to tests/support; wait until it is gone.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
                // A zombie of tests/support's child stays until reaped there; it has released
                // its ports once killed.
                if std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                    .is_ok_and(|s| s.contains(") Z "))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The loopback ports in its flags.
    fn ports(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for a in &self.args {
            for part in a.split("127.0.0.1:").skip(1) {
                let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(p) = digits.parse() {
                    out.push(p);
                }
            }
            if let Some(p) = a
                .strip_prefix("--secure-port=")
                .and_then(|p| p.parse().ok())
            {
                out.push(p);
            }
        }
        out
    }

    fn start(&mut self) {
        // A killed Go process releases its sockets when its last thread is gone.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline
            && self
                .ports()
                .iter()
                .any(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.starts += 1;
        let log = self.dir.join(format!("{}-{}.log", self.name, self.starts));
        let child = spawn(&self.program, &self.args, &[], &log);
        self.pid = child.id();
        self.child = Some(child);
    }
}

/// An operator replica: `meshmedic run` as a process, acting as meshmedic's ServiceAccount
/// (through impersonation, with an extra group naming the replica, so the audit log tells the
/// replicas apart).
struct Replica {
    identity: &'static str,
    /// Its only way to the apiserver (see [`Relay`]).
    relay: Relay,
    kubeconfig: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
    logs: Vec<PathBuf>,
    /// RSS samples (seconds since start, KiB) of the current process.
    rss: Vec<(f64, u64)>,
    /// The longest-lived process's samples.
    longest_rss: Vec<(f64, u64)>,
    started: Instant,
}

impl Replica {
    fn new(identity: &'static str, admin_kubeconfig: &Path, dir: &Path) -> Replica {
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(admin_kubeconfig).expect("kubeconfig"))
                .expect("the test kubeconfig is JSON");
        let mut groups: Vec<Value> = support::MESHMEDIC_GROUPS.iter().map(|g| json!(g)).collect();
        groups.push(json!(format!("chaos:{identity}")));
        for user in config["users"].as_array_mut().expect("users") {
            if user["name"] == "admin" {
                user["user"]["as"] = json!(support::MESHMEDIC_USER);
                user["user"]["as-groups"] = json!(groups);
            }
        }
        // Through a relay of its own, so its connections can be cut while it runs.
        let server = config["clusters"][0]["cluster"]["server"]
            .as_str()
            .expect("the test kubeconfig names its server")
            .to_string();
        let upstream = server
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        let relay = Relay::start(upstream);
        for cluster in config["clusters"].as_array_mut().expect("clusters") {
            cluster["cluster"]["server"] = json!(format!("https://127.0.0.1:{}", relay.port));
        }
        let kubeconfig = dir.join(format!("kubeconfig-{identity}"));
        std::fs::write(&kubeconfig, config.to_string()).expect("kubeconfig written");
        Replica {
            identity,
            relay,
            kubeconfig,
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
            logs: Vec::new(),
            rss: Vec::new(),
            longest_rss: Vec::new(),
            started: Instant::now(),
        }
    }

    fn start(&mut self) {
        self.starts += 1;
        let log = self
            .dir
            .join(format!("{}-{}.log", self.identity, self.starts));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let args: Vec<String> = [
            "run",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--identity",
            self.identity,
            "--lease-name",
            LEASE,
            "--lease-namespace",
            "meshmedic",
            "--lease-duration",
            &LEASE_SECONDS.to_string(),
            "--resync-seconds",
            "60",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let kubeconfig = self.kubeconfig.display().to_string();
        let child = spawn(
            Path::new(env!("CARGO_BIN_EXE_meshmedic")),
            &args,
            &[("KUBECONFIG", &kubeconfig), ("RUST_LOG", "info,kube=warn")],
            &log,
        );
        self.logs.push(log);
        self.child = Some(child);
        self.rss.clear();
        self.started = Instant::now();
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGKILL);
            let _ = c.wait();
        }
        if self.rss.len() > self.longest_rss.len() {
            self.longest_rss = std::mem::take(&mut self.rss);
        }
    }

    fn sample(&mut self) {
        if let Some(kib) = self.pid().and_then(rss_kib) {
            self.rss.push((self.started.elapsed().as_secs_f64(), kib));
        }
    }
}

/// A TCP relay between one replica and the kube-apiserver. Blocked, it holds every byte in both
/// directions and opens no new upstream connection, while the replica's connections stay open:
/// a network partition as the replica sees it (its lease cannot be renewed, it keeps running).
/// Healed, what was held is delivered, late, as TCP would after a partition.
struct Relay {
    port: u16,
    blocked: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(upstream: String) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("relay port");
        let port = listener.local_addr().expect("relay address").port();
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let b = blocked.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (b, upstream) = (b.clone(), upstream.clone());
                std::thread::spawn(move || {
                    Relay::hold(&b);
                    let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                        return;
                    };
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    let b2 = b.clone();
                    std::thread::spawn(move || Relay::pipe(client, s2, &b2));
                    Relay::pipe(server, c2, &b);
                });
            }
        });
        Relay { port, blocked }
    }

    fn hold(blocked: &std::sync::atomic::AtomicBool) {
        while blocked.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pipe(
        mut from: std::net::TcpStream,
        mut to: std::net::TcpStream,
        blocked: &std::sync::atomic::AtomicBool,
    ) {
        use std::io::{Read, Write};
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            Relay::hold(blocked);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    }

    fn block(&self, on: bool) {
        self.blocked.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Copies the run's logs and audit log to `target/tmp/chaos/` when the test ends, however it
/// ends: tests/support removes a dead run's directory.
struct KeepLogs(PathBuf);

impl Drop for KeepLogs {
    fn drop(&mut self) {
        let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos");
        let _ = std::fs::remove_dir_all(&keep);
        let _ = std::fs::create_dir_all(&keep);
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
                }
            }
        }
        eprintln!("logs and audit log copied to {}", keep.display());
    }
}

// ---------------------------------------------------------------------------------------------
// The world the operator works on

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn remediation_ar() -> ApiResource {
    ar("meshmedic.io", "v1alpha1", "Remediation", "remediations")
}

/// The kinds the analysis reads (for the expected findings at the end).
fn read_kinds() -> Vec<ApiResource> {
    vec![
        ar("", "v1", "Service", "services"),
        ar("", "v1", "Pod", "pods"),
        ar("apps", "v1", "Deployment", "deployments"),
        ar("apps", "v1", "StatefulSet", "statefulsets"),
        ar("apps", "v1", "DaemonSet", "daemonsets"),
        ar("apps", "v1", "ReplicaSet", "replicasets"),
        ar("batch", "v1", "Job", "jobs"),
        ar("batch", "v1", "CronJob", "cronjobs"),
        ar(
            "networking.istio.io",
            "v1",
            "DestinationRule",
            "destinationrules",
        ),
        ar(
            "networking.istio.io",
            "v1",
            "VirtualService",
            "virtualservices",
        ),
        ar("networking.istio.io", "v1", "Sidecar", "sidecars"),
        ar(
            "networking.istio.io",
            "v1alpha3",
            "EnvoyFilter",
            "envoyfilters",
        ),
        ar(
            "security.istio.io",
            "v1",
            "PeerAuthentication",
            "peerauthentications",
        ),
        ar("telemetry.istio.io", "v1", "Telemetry", "telemetries"),
    ]
}

/// The shop example's documents for namespace `ns` (hosts rewritten), by kind/name.
fn shop_docs(ns: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for file in support::yaml_files_under(&support::repo_path("examples/shop")) {
        let text = std::fs::read_to_string(&file)
            .expect("example")
            .replace("namespace: shop", &format!("namespace: {ns}"))
            .replace(
                ".shop.svc.cluster.local",
                &format!(".{ns}.svc.cluster.local"),
            );
        for (_, doc) in meshmedic::snapshot::load::parse_documents("example", &text).expect("yaml")
        {
            let kind = doc["kind"].as_str().unwrap_or_default();
            if kind != "Namespace" && kind != "ConfigMap" {
                out.push(doc);
            }
        }
    }
    out
}

/// Probe `k`: a Service with a route lacking `reset` retries (a missing-reset-retry finding on
/// VirtualService `probe-k`). The operator is current again once its Remediation exists.
fn probe_docs(ns: &str, k: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(support::repo_path(
        "examples/shop/cart-missing-reset-retry.yaml",
    ))
    .expect("example")
    .replace("namespace: shop", &format!("namespace: {ns}"))
    .replace("cart", &format!("probe-{k}"));
    meshmedic::snapshot::load::parse_documents("probe", &text)
        .expect("yaml")
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

async fn opted_in_namespace(admin: &Client, hint: &str) -> String {
    let ns = support::namespace(admin, hint).await;
    Api::<Namespace>::all(admin.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {
                "labels": {"istio-injection": "enabled"},
                "annotations": {"meshmedic.io/mode": "propose"}}})),
        )
        .await
        .expect("namespace opted in");
    ns
}

async fn wait_apiserver(admin: &Client, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if Api::<Namespace>::all(admin.clone())
            .list(&ListParams::default().limit(1))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Small deterministic PRNG (xorshift): reproducible runs from `MESHMEDIC_CHAOS_SEED`.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

// ---------------------------------------------------------------------------------------------
// What the actors did (checked against the audit log at the end)

#[derive(Default)]
struct Record {
    /// (resource plural, namespace, name) → times a reviewer approved a fix of that target
    /// (or asked for its rollback).
    approvals: BTreeMap<(String, String, String), Vec<Timestamp>>,
    approved: usize,
    rollbacks: usize,
    /// Human edits: (resource plural, namespace, name, uid, annotation key).
    human_edits: Vec<(String, String, String, String, String)>,
    /// Human edits of a field a Remediation's patch changes: the target, its uid, the field
    /// (JSON pointer), the value the person wrote and the resourceVersion of their write.
    human_fields: Vec<HumanField>,
    /// Approvals given while the target was as the plan saw it (`spec.baseDigest` equal to the
    /// digest of the live spec): when, and the digest of the spec the reviewer looked at.
    informed: BTreeMap<(String, String, String), Vec<(Timestamp, String)>>,
    load_ops: usize,
    load_errors: usize,
    /// Lease holder samples.
    lease: Vec<(Timestamp, String)>,
    rejected_bad_input: usize,
    /// A person's server-side apply (not forced) of a field meshmedic wrote: 409 conflicts.
    ssa_conflicts: usize,
    /// Malformed `meshmedic.io/mode` values written, and those told with a Warning Event.
    bad_annotations: usize,
    bad_annotations_told: usize,
    accepted_bad_input: usize,
}

/// (resource plural, namespace, name).
type TargetKey = (String, String, String);

struct HumanField {
    target: TargetKey,
    uid: String,
    path: String,
    value: Value,
    rv: u64,
}

type Shared = Arc<Mutex<Record>>;

fn rv_of(obj: &DynamicObject) -> u64 {
    obj.resource_version()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn plural(kind: &str) -> String {
    format!("{}s", kind.to_ascii_lowercase())
}

/// The load generator: churns the shop objects of the chaos namespaces.
async fn load(
    admin: Client,
    namespaces: Vec<String>,
    record: Shared,
    mut rng: Rng,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let dr = ar(
        "networking.istio.io",
        "v1",
        "DestinationRule",
        "destinationrules",
    );
    let vs = ar(
        "networking.istio.io",
        "v1",
        "VirtualService",
        "virtualservices",
    );
    let dep = ar("apps", "v1", "Deployment", "deployments");
    let svc = ar("", "v1", "Service", "services");
    let pp = PatchParams::apply("chaos-load").force();
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let ns = &namespaces[rng.below(namespaces.len())];
        let docs = shop_docs(ns);
        let doc_of = |kind: &str, name: &str| {
            docs.iter()
                .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
                .cloned()
        };
        let result: Result<(), kube::Error> = async {
            match rng.below(6) {
                0 => {
                    let t = ["30m", "5m", "60s", "20s", "2h"][rng.below(5)];
                    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &dr);
                    api.patch("catalog", &PatchParams::default(), &Patch::Merge(json!({"spec": {"trafficPolicy": {"connectionPool": {"tcp": {"idleTimeout": t}}}}}))).await?;
                }
                1 => {
                    // Target deleted (perhaps mid-apply), and back a moment later.
                    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &dr);
                    api.delete("catalog", &DeleteParams::default()).await?;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if let Some(d) = doc_of("DestinationRule", "catalog") {
                        api.patch("catalog", &pp, &Patch::Apply(d)).await?;
                    }
                }
                2 => {
                    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &dep);
                    api.patch(["catalog", "cart", "legacy"][rng.below(3)], &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {"chaos.meshmedic.io/rev": n.to_string()}}}}}))).await?;
                }
                3 => {
                    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &svc);
                    api.delete("cart", &DeleteParams::default()).await?;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if let Some(d) = doc_of("Service", "cart") {
                        api.patch("cart", &pp, &Patch::Apply(d)).await?;
                    }
                }
                4 => {
                    let retry_on = ["connect-failure,refused-stream,unavailable", "gateway-error", "connect-failure,reset"][rng.below(3)];
                    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &vs);
                    let name = ["cart", "checkout"][rng.below(2)];
                    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(json!([
                        {"op": "replace", "path": "/spec/http/0/retries/retryOn", "value": retry_on}])).expect("patch"))).await?;
                }
                _ => {
                    // Re-apply a whole document as written (undoes drift, recreates deletions).
                    let d = &docs[rng.below(docs.len())];
                    support::apply(&admin, d).await?;
                }
            }
            Ok(())
        }
        .await;
        {
            let mut r = record.lock().unwrap();
            r.load_ops += 1;
            if result.is_err() {
                r.load_errors += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The reviewer: approves proposed fixes (digest contract when the CRD has it: copies
/// `spec.planDigest` into `spec.approvedDigest`; otherwise `spec.approved: true`) and rolls some
/// applied ones back; the human: edits the same targets (an annotation of their own).
async fn reviewer(
    admin: Client,
    namespaces: Vec<String>,
    record: Shared,
    mut rng: Rng,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let rem = remediation_ar();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for ns in &namespaces {
            let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &rem);
            let Ok(list) = api.list(&ListParams::default()).await else {
                continue;
            };
            for r in list.items {
                let name = r.name_any();
                let spec = &r.data["spec"];
                let phase = r.data["status"]["phase"].as_str().unwrap_or_default();
                let target = &spec["target"];
                let key = (
                    plural(target["kind"].as_str().unwrap_or_default()),
                    target["namespace"].as_str().unwrap_or_default().to_string(),
                    target["name"].as_str().unwrap_or_default().to_string(),
                );
                let digest = spec["planDigest"].as_str();
                let approved = match digest {
                    Some(d) => spec["approvedDigest"].as_str() == Some(d),
                    None => spec["approved"].as_bool() == Some(true),
                };
                if phase == "Proposed" && !approved && rng.chance(40) {
                    let patch = match digest {
                        Some(d) => json!({"spec": {"approvedDigest": d}}),
                        None => json!({"spec": {"approved": true}}),
                    };
                    // Did the reviewer see the target as the plan saw it? (The witness of
                    // same-field edits below tells informed approvals from stale ones.)
                    let looked = match support::dynamic_api(
                        &admin,
                        target["apiVersion"].as_str().unwrap_or_default(),
                        target["kind"].as_str().unwrap_or_default(),
                        Some(&key.1),
                    )
                    .await
                    {
                        Ok((tapi, _, _)) => tapi.get_opt(&key.2).await.ok().flatten(),
                        Err(_) => None,
                    };
                    let informed = looked.filter(|live| {
                        spec["baseDigest"].as_str()
                            == Some(meshmedic::controller::plan::spec_digest(&live.data).as_str())
                    });
                    let at = Timestamp::now();
                    // Optimistic: approve exactly the version looked at.
                    let mut patch = patch;
                    patch["metadata"] = json!({"resourceVersion": r.resource_version()});
                    if api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .is_ok()
                    {
                        let mut rec = record.lock().unwrap();
                        rec.approvals.entry(key.clone()).or_default().push(at);
                        rec.approved += 1;
                        if let Some(live) = &informed {
                            rec.informed
                                .entry(key.clone())
                                .or_default()
                                .push((at, meshmedic::controller::plan::spec_digest(&live.data)));
                        }
                    }
                } else if phase == "Applied" && rng.chance(15) {
                    let at = Timestamp::now();
                    let patch = json!({"metadata": {"resourceVersion": r.resource_version()}, "spec": {"rollback": true}});
                    if api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .is_ok()
                    {
                        let mut rec = record.lock().unwrap();
                        rec.approvals.entry(key.clone()).or_default().push(at);
                        rec.rollbacks += 1;
                    }
                }
                // The human edits the target too, now and then.
                if rng.chance(10)
                    && let Ok((tapi, _, _)) = support::dynamic_api(
                        &admin,
                        target["apiVersion"].as_str().unwrap_or_default(),
                        target["kind"].as_str().unwrap_or_default(),
                        Some(&key.1),
                    )
                    .await
                {
                    // Half the time, the very field the Remediation's patch changes, to a
                    // value of the person's own (a conflict on the same field).
                    let ops: Vec<String> = spec["patch"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|op| op["path"].as_str().map(str::to_string))
                        .collect();
                    let field = match key.0.as_str() {
                        "destinationrules" => Some((
                            "/spec/trafficPolicy/connectionPool/http/idleTimeout",
                            json!(format!("{}s", 1000 + rng.below(1000))),
                        )),
                        "virtualservices" => Some((
                            "/spec/http/0/retries/retryOn",
                            json!(
                                [
                                    "connect-failure,refused-stream",
                                    "gateway-error,connect-failure",
                                    "5xx"
                                ][rng.below(3)]
                            ),
                        )),
                        _ => None,
                    }
                    .filter(|(path, _)| {
                        ops.iter()
                            .any(|p| path.starts_with(p.as_str()) || p.starts_with(path))
                    });
                    let before = match &field {
                        Some((path, _)) => tapi
                            .get_opt(&key.2)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|o| o.data.pointer(path).cloned()),
                        None => None,
                    };
                    if rng.chance(50)
                        && let Some((path, value)) = field
                        // Writing the value that is already there changes nothing.
                        && before.as_ref() != Some(&value)
                    {
                        let params = PatchParams {
                            field_manager: Some(HUMAN.into()),
                            ..PatchParams::default()
                        };
                        let written = if key.0 == "destinationrules" && rng.chance(50) {
                            // Server-side apply, not forced: a field meshmedic wrote is a
                            // conflict for the person (409), never a silent takeover.
                            let ssa = PatchParams::apply(HUMAN);
                            let doc = json!({"apiVersion": target["apiVersion"], "kind": "DestinationRule",
                                "metadata": {"name": key.2, "namespace": key.1},
                                "spec": {"trafficPolicy": {"connectionPool": {"http": {"idleTimeout": value.clone()}}}}});
                            let r = tapi.patch(&key.2, &ssa, &Patch::Apply(doc)).await;
                            if matches!(&r, Err(kube::Error::Api(e)) if e.code == 409) {
                                record.lock().unwrap().ssa_conflicts += 1;
                            }
                            r
                        } else if key.0 == "destinationrules" {
                            let patch = json!({"spec": {"trafficPolicy": {"connectionPool": {"http": {"idleTimeout": value.clone()}}}}});
                            tapi.patch(&key.2, &params, &Patch::Merge(patch)).await
                        } else {
                            let ops: json_patch::Patch = serde_json::from_value(
                                json!([{"op": "add", "path": path, "value": value.clone()}]),
                            )
                            .expect("patch");
                            tapi.patch(&key.2, &params, &Patch::<()>::Json(ops)).await
                        };
                        if let Ok(obj) = written {
                            record.lock().unwrap().human_fields.push(HumanField {
                                target: key.clone(),
                                uid: obj.uid().unwrap_or_default(),
                                path: path.to_string(),
                                value,
                                rv: rv_of(&obj),
                            });
                        }
                    } else {
                        let annotation =
                            format!("chaos.meshmedic.io/human-{}", rng.next() % 1_000_000);
                        let patch =
                            json!({"metadata": {"annotations": {annotation.clone(): "kept"}}});
                        let params = PatchParams {
                            field_manager: Some(HUMAN.into()),
                            ..PatchParams::default()
                        };
                        if let Ok(obj) = tapi.patch(&key.2, &params, &Patch::Merge(&patch)).await {
                            record.lock().unwrap().human_edits.push((
                                key.0.clone(),
                                key.1.clone(),
                                key.2.clone(),
                                obj.uid().unwrap_or_default(),
                                annotation,
                            ));
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn lease_watch(admin: Client, record: Shared, stop: Arc<std::sync::atomic::AtomicBool>) {
    let api: Api<Lease> = Api::namespaced(admin, "meshmedic");
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok(Some(l)) = api.get_opt(LEASE).await {
            let holder = l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
            record
                .lock()
                .unwrap()
                .lease
                .push((Timestamp::now(), holder));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn leader(admin: &Client) -> Option<String> {
    Api::<Lease>::namespaced(admin.clone(), "meshmedic")
        .get_opt(LEASE)
        .await
        .ok()??
        .spec?
        .holder_identity
}

// ---------------------------------------------------------------------------------------------
// Faults

const APF: &str = r#"[
 {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
  "metadata": {"name": "chaos-tiny"},
  "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 0, "lendablePercent": 0, "borrowingLimitPercent": 0,
           "limitResponse": {"type": "Reject"}}}},
 {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
  "metadata": {"name": "chaos-meshmedic"},
  "spec": {"priorityLevelConfiguration": {"name": "chaos-tiny"}, "matchingPrecedence": 100,
           "distinguisherMethod": {"type": "ByUser"},
           "rules": [{"subjects": [{"kind": "User", "user": {"name": "system:serviceaccount:meshmedic:meshmedic"}}],
                      "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true}],
                      "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}}
]"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    ApiserverKill,
    EtcdKill,
    Throttle,
    LeaderKill,
    Freeze,
    Partition,
    BadInput,
    CrdRemoved,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::ApiserverKill,
        Fault::EtcdKill,
        Fault::Throttle,
        Fault::LeaderKill,
        Fault::Freeze,
        Fault::Partition,
        Fault::BadInput,
        Fault::CrdRemoved,
    ];
    fn describe(self) -> &'static str {
        match self {
            Fault::ApiserverKill => "kube-apiserver kill -9, restarted with the same flags",
            Fault::EtcdKill => "etcd kill -9, restarted",
            Fault::Throttle => {
                "APF: operator's user on a zero-share, reject-on-overload priority level (15 s)"
            }
            Fault::LeaderKill => "leader replica SIGKILLed (restarted 2 s later)",
            Fault::Freeze => "leader frozen (SIGSTOP) past its lease, then resumed",
            Fault::Partition => {
                "leader's apiserver connections blocked past its lease (it keeps running), then healed"
            }
            Fault::BadInput => "malformed annotations; Remediation edited into invalid shapes",
            Fault::CrdRemoved => "Sidecar CRD removed and re-added",
        }
    }
}

struct Outcome {
    fault: Fault,
    /// From injecting the fault to healing it (the fault's own length).
    outage: Duration,
    /// From healing to the operator being current again (probe Remediation present).
    recovery: Option<Duration>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn slope_kib_per_min(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 3.0 {
        return f64::NAN;
    }
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let num: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 as f64 - my)).sum();
    let den: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den * 60.0 }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn chaos() {
    let rounds: usize = std::env::var("MESHMEDIC_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let soak: u64 = std::env::var("MESHMEDIC_CHAOS_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let seed: u64 = std::env::var("MESHMEDIC_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe);
    let run_started = Instant::now();
    install_once().await;
    let cp = control_plane();
    let admin = cp.admin();
    let dir = cp.dir().to_path_buf();
    let _keep = KeepLogs(dir.clone());

    // The apiserver again, now with an audit log (the witness) and etcd compaction every 5 s
    // (watches that fall behind get 410 Gone); from here on every restart uses these flags.
    std::fs::write(
        dir.join("audit-policy.json"),
        json!({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
               "rules": [
                 {"level": "None", "verbs": ["get", "list", "watch"], "users": [support::ADMIN_USER]},
                 {"level": "None", "verbs": ["watch"]},
                 {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
                 {"level": "RequestResponse", "verbs": ["patch", "update", "create"],
                  "resources": [{"group": "networking.istio.io"}]},
                 {"level": "Metadata"}]})
        .to_string(),
    )
    .expect("audit policy");
    let audit_log = dir.join("audit.log");
    let mut etcd = Component::adopt("etcd", cp.pids()[0], &dir, &[]);
    let mut apiserver = Component::adopt(
        "kube-apiserver",
        cp.pids()[1],
        &dir,
        &[
            format!("--audit-log-path={}", audit_log.display()),
            format!(
                "--audit-policy-file={}",
                dir.join("audit-policy.json").display()
            ),
            "--etcd-compaction-interval=5s".into(),
        ],
    );
    apiserver.kill9();
    apiserver.start();
    assert!(
        wait_apiserver(&admin, Duration::from_secs(60)).await,
        "the apiserver came back with an audit log"
    );

    // The world: opted-in shop namespaces, a probe namespace, two replicas.
    let size = if rounds > 1 { 4 } else { 2 };
    let mut namespaces = Vec::new();
    for i in 0..size {
        let ns = opted_in_namespace(&admin, &format!("chaos-{i}")).await;
        for d in shop_docs(&ns) {
            support::apply(&admin, &d).await.expect("shop applied");
        }
        namespaces.push(ns);
    }
    let probe_ns = opted_in_namespace(&admin, "chaos-probe").await;
    let mut replicas: Vec<Replica> = REPLICAS
        .iter()
        .map(|id| Replica::new(id, cp.kubeconfig(), &dir))
        .collect();
    for r in &mut replicas {
        r.start();
    }

    let record: Shared = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut rng = Rng(seed);
    let tasks = vec![
        tokio::spawn(load(
            admin.clone(),
            namespaces.clone(),
            record.clone(),
            Rng(rng.next() | 1),
            stop.clone(),
        )),
        tokio::spawn(reviewer(
            admin.clone(),
            namespaces.clone(),
            record.clone(),
            Rng(rng.next() | 1),
            stop.clone(),
        )),
        tokio::spawn(lease_watch(admin.clone(), record.clone(), stop.clone())),
    ];

    let rem_ar = remediation_ar();
    let mut probes = 0usize;
    // Probe: current again once a fresh cause has its Remediation.
    let probe = |k: usize| {
        let admin = admin.clone();
        let probe_ns = probe_ns.clone();
        let rem_ar = rem_ar.clone();
        async move {
            let start = Instant::now();
            let deadline = start + Duration::from_secs(120);
            for d in probe_docs(&probe_ns, k) {
                while support::apply(&admin, &d).await.is_err() {
                    if Instant::now() > deadline {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &probe_ns, &rem_ar);
            while Instant::now() < deadline {
                if let Ok(list) = api.list(&ListParams::default()).await
                    && list.items.iter().any(|r| {
                        r.data["spec"]["target"]["name"] == format!("probe-{k}")
                            && r.data["status"]["phase"].is_string()
                    })
                {
                    return Some(start.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
    };
    // Warm-up: the operator is current before the first fault.
    let warm = probe(probes).await;
    probes += 1;
    assert!(warm.is_some(), "the operator never became current");

    let mut outcomes = Vec::new();
    let mut sampler = Instant::now();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for round in 0..rounds {
        for fault in Fault::ALL {
            let injected = Instant::now();
            match fault {
                Fault::ApiserverKill => {
                    apiserver.kill9();
                    tokio::time::sleep(Duration::from_secs(1 + rng.below(3) as u64)).await;
                    apiserver.start();
                    assert!(
                        wait_apiserver(&admin, Duration::from_secs(90)).await,
                        "apiserver back"
                    );
                }
                Fault::EtcdKill => {
                    etcd.kill9();
                    tokio::time::sleep(Duration::from_secs(1 + rng.below(2) as u64)).await;
                    etcd.start();
                    assert!(
                        wait_apiserver(&admin, Duration::from_secs(90)).await,
                        "etcd back"
                    );
                }
                Fault::Throttle => {
                    let docs: Vec<Value> = serde_json::from_str(APF).expect("APF objects");
                    for d in &docs {
                        support::apply(&admin, d).await.expect("APF object");
                    }
                    tokio::time::sleep(Duration::from_secs(15)).await;
                    let fs = ar(
                        "flowcontrol.apiserver.k8s.io",
                        "v1",
                        "FlowSchema",
                        "flowschemas",
                    );
                    let _ = Api::<DynamicObject>::all_with(admin.clone(), &fs)
                        .delete("chaos-meshmedic", &DeleteParams::default())
                        .await;
                }
                Fault::LeaderKill => {
                    let holder = leader(&admin).await.unwrap_or_default();
                    if let Some(r) = replicas.iter_mut().find(|r| r.identity == holder) {
                        r.kill9();
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        r.start();
                    }
                }
                Fault::Partition => {
                    let holder = leader(&admin).await.unwrap_or_default();
                    if let Some(r) = replicas.iter().find(|r| r.identity == holder) {
                        r.relay.block(true);
                        tokio::time::sleep(Duration::from_secs(LEASE_SECONDS + 3)).await;
                        r.relay.block(false);
                    }
                }
                Fault::Freeze => {
                    let holder = leader(&admin).await.unwrap_or_default();
                    if let Some(pid) = replicas
                        .iter()
                        .find(|r| r.identity == holder)
                        .and_then(Replica::pid)
                    {
                        signal(pid, libc::SIGSTOP);
                        tokio::time::sleep(Duration::from_secs(LEASE_SECONDS + 3)).await;
                        signal(pid, libc::SIGCONT);
                    }
                }
                Fault::BadInput => {
                    let ns = &namespaces[rng.below(namespaces.len())];
                    let nsapi = Api::<Namespace>::all(admin.clone());
                    let _ = nsapi.patch(ns, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"meshmedic.io/mode": "sometimes!"}}}))).await;
                    let dep = Api::<DynamicObject>::namespaced_with(
                        admin.clone(),
                        ns,
                        &ar("apps", "v1", "Deployment", "deployments"),
                    );
                    let _ = dep.patch("catalog", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {"meshmedic.io/ignore": ",,not-a-code,,"}}}}}))).await;
                    let rapi: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &rem_ar);
                    if let Ok(list) = rapi.list(&ListParams::default()).await
                        && let Some(r) = list.items.first()
                    {
                        let mut rec_rejected = 0;
                        let mut rec_accepted = 0;
                        for bad in [
                            json!({"spec": {"patch": "not a list"}}),
                            json!({"spec": {"target": {"kind": 5}}}),
                            json!({"spec": {"action": "explode"}}),
                            json!({"status": {"phase": "Nonsense"}}),
                        ] {
                            match rapi
                                .patch(&r.name_any(), &PatchParams::default(), &Patch::Merge(bad))
                                .await
                            {
                                Ok(_) => rec_accepted += 1,
                                Err(_) => rec_rejected += 1,
                            }
                        }
                        let mut rec = record.lock().unwrap();
                        rec.rejected_bad_input += rec_rejected;
                        rec.accepted_bad_input += rec_accepted;
                    }
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    // The person is told: a Warning Event on the namespace names the annotation.
                    let events: Api<k8s_openapi::api::events::v1::Event> =
                        Api::namespaced(admin.clone(), ns);
                    let told = events.list(&ListParams::default()).await.is_ok_and(|l| {
                        l.items.iter().any(|e| {
                            e.reason.as_deref() == Some("InvalidAnnotation")
                                && e.note.as_deref().is_some_and(|n| n.contains("sometimes!"))
                        })
                    });
                    {
                        let mut rec = record.lock().unwrap();
                        rec.bad_annotations += 1;
                        rec.bad_annotations_told += usize::from(told);
                    }
                    let _ = nsapi.patch(ns, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"meshmedic.io/mode": "propose"}}}))).await;
                }
                Fault::CrdRemoved => {
                    let name = "sidecars.networking.istio.io";
                    if let Ok(original) = crds.get(name).await {
                        let _ = crds.delete(name, &DeleteParams::default()).await;
                        let _ = eventually(Duration::from_secs(60), "the CRD gone", || async {
                            crds.get_opt(name).await.ok()?.is_none().then_some(())
                        })
                        .await;
                        let mut crd = original.clone();
                        crd.metadata = kube::api::ObjectMeta {
                            name: Some(name.into()),
                            ..Default::default()
                        };
                        crd.status = None;
                        let _ = crds.create(&PostParams::default(), &crd).await;
                        eventually(Duration::from_secs(60), "the CRD established", || async {
                            crds.get(name)
                                .await
                                .ok()?
                                .status?
                                .conditions?
                                .iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                                .then_some(())
                        })
                        .await;
                    }
                }
            }
            let outage = injected.elapsed();
            let recovery = probe(probes).await;
            probes += 1;
            eprintln!(
                "chaos round {round}: {fault:?}: outage {:.1}s, recovery {}",
                outage.as_secs_f64(),
                recovery.map_or("none".to_string(), |d| format!("{:.1}s", d.as_secs_f64()))
            );
            outcomes.push(Outcome {
                fault,
                outage,
                recovery,
            });
            if sampler.elapsed() > Duration::from_secs(2) {
                for r in &mut replicas {
                    r.sample();
                }
                sampler = Instant::now();
            }
        }
    }
    // Soak: load only, RSS sampled.
    let soak_end = Instant::now() + Duration::from_secs(soak);
    while Instant::now() < soak_end {
        for r in &mut replicas {
            r.sample();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    for r in &mut replicas {
        r.sample();
    }

    // Quiesce, then compare with what a whole view finds.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let quiet_from = Timestamp::now();
    let mut all_ns = namespaces.clone();
    all_ns.push(probe_ns.clone());
    let (missing, duplicates, expected, present) = {
        let mut last = (usize::MAX, 0, 0, 0);
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            last = compare(&admin, &all_ns).await;
            let resolved_but_present =
                RESOLVED_BUT_PRESENT.load(std::sync::atomic::Ordering::Relaxed);
            if last.0 == 0 && last.1 == 0 && resolved_but_present == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        last
    };

    // The witness.
    let audit = std::fs::read_to_string(&audit_log).unwrap_or_default();
    let rec = std::mem::take(&mut *record.lock().unwrap());
    let mut target_writes = 0usize;
    let mut unapproved = Vec::new();
    let mut not_leader = Vec::new();
    // (when, replica) of each of those writes, to count the actions they belong to.
    let mut not_leader_at = Vec::new();
    let mut throttled = 0usize;
    // The operator's Remediation writes answered 409 (another writer was first), by second.
    let mut lost_races: BTreeMap<String, usize> = BTreeMap::new();
    let mut status_writes: BTreeMap<String, usize> = BTreeMap::new();
    // Writes more than 20 s into the quiet period (no load, no reviewer, no faults): a loop.
    let settled = quiet_from
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(20))
        .unwrap_or(quiet_from);
    let mut quiet_writes: BTreeMap<String, usize> = BTreeMap::new();
    let mut all_writes: BTreeMap<TargetKey, Vec<u64>> = BTreeMap::new();
    // (target, resourceVersion it was written on, resourceVersion after, object after).
    let mut meshmedic_patches: Vec<(TargetKey, u64, u64, Value, Timestamp)> = Vec::new();
    // The digest of each version's spec, from the bodies the audit log keeps.
    let mut spec_at: BTreeMap<(TargetKey, u64), String> = BTreeMap::new();
    for line in audit.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        // A dry run (meshmedic checks each patch with one first) changes nothing.
        if e["requestURI"]
            .as_str()
            .is_some_and(|u| u.contains("dryRun="))
        {
            continue;
        }
        // Every write to an Istio object, whoever made it, with its resulting version (the
        // audit policy keeps their bodies).
        let ok = (200..300).contains(&e["responseStatus"]["code"].as_i64().unwrap_or(0));
        if ok
            && let Some(rv) = e["responseObject"]["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
        {
            let o = &e["objectRef"];
            let key = (
                o["resource"].as_str().unwrap_or_default().to_string(),
                o["namespace"].as_str().unwrap_or_default().to_string(),
                o["name"].as_str().unwrap_or_default().to_string(),
            );
            all_writes.entry(key.clone()).or_default().push(rv);
            spec_at.insert(
                (key.clone(), rv),
                meshmedic::controller::plan::spec_digest(&e["responseObject"]),
            );
            if e["impersonatedUser"]["username"] == support::MESHMEDIC_USER
                && e["verb"] == "patch"
                && let Some(base) = e["requestObject"].as_array().and_then(|ops| {
                    ops.iter().find_map(|op| {
                        (op["op"] == "test" && op["path"] == "/metadata/resourceVersion")
                            .then(|| op["value"].as_str()?.parse::<u64>().ok())
                            .flatten()
                    })
                })
            {
                let at: Timestamp = e["stageTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .unwrap_or_default();
                meshmedic_patches.push((key, base, rv, e["responseObject"].clone(), at));
            }
        }
        if e["impersonatedUser"]["username"] != support::MESHMEDIC_USER {
            continue;
        }
        let code = e["responseStatus"]["code"].as_i64().unwrap_or(0);
        if code == 429 {
            throttled += 1;
        }
        if code == 409 && e["objectRef"]["resource"] == "remediations" {
            let second = e["stageTimestamp"].as_str().unwrap_or_default();
            *lost_races
                .entry(second.get(..19).unwrap_or(second).to_string())
                .or_default() += 1;
        }
        let verb = e["verb"].as_str().unwrap_or_default();
        if !matches!(verb, "create" | "update" | "patch" | "delete") || !(200..300).contains(&code)
        {
            continue;
        }
        let obj = &e["objectRef"];
        let resource = obj["resource"].as_str().unwrap_or_default();
        let ns = obj["namespace"].as_str().unwrap_or_default();
        let name = obj["name"].as_str().unwrap_or_default();
        let at: Timestamp = e["stageTimestamp"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or_default();
        let replica = e["impersonatedUser"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|g| g.strip_prefix("chaos:"))
            .unwrap_or_default()
            .to_string();
        // Leader check: the Lease samples on either side of the write both name another replica.
        let before = rec
            .lease
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map(|(_, h)| h.as_str());
        let after = rec
            .lease
            .iter()
            .find(|(t, _)| *t >= at)
            .map(|(_, h)| h.as_str());
        if resource != "events"
            && before.is_some_and(|h| h != replica)
            && after.is_some_and(|h| h != replica)
        {
            not_leader.push(format!(
                "{at} {replica} {verb} {resource} {ns}/{name} (lease: {before:?} → {after:?})"
            ));
            not_leader_at.push((at, replica.to_string()));
        }
        if at > settled && resource != "events" {
            *quiet_writes
                .entry(format!(
                    "{resource} {ns}/{name} {}",
                    obj["subresource"].as_str().unwrap_or_default()
                ))
                .or_default() += 1;
        }
        match resource {
            "remediations" => {
                if obj["subresource"] == "status" {
                    *status_writes.entry(format!("{ns}/{name}")).or_default() += 1;
                }
            }
            "events" | "leases" => {}
            _ => {
                target_writes += 1;
                let key = (resource.to_string(), ns.to_string(), name.to_string());
                let ok = rec
                    .approvals
                    .get(&key)
                    .is_some_and(|ts| ts.iter().any(|t| *t <= at));
                if !ok {
                    unapproved.push(format!("{at} {replica} {verb} {resource} {ns}/{name}"));
                }
            }
        }
    }
    // Human edits still there (unless the object was deleted or re-created since).
    let mut overwritten = Vec::new();
    for (resource, ns, name, uid, annotation) in &rec.human_edits {
        let kind = read_kinds().into_iter().find(|a| &a.plural == resource);
        let Some(kind) = kind else { continue };
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &kind);
        if let Ok(Some(obj)) = api.get_opt(name).await
            && obj.uid().as_deref() == Some(uid.as_str())
            && !obj.annotations().contains_key(annotation)
        {
            overwritten.push(format!("{resource} {ns}/{name} lost {annotation}"));
        }
    }
    // Same-field edits: a person's value that was still there when meshmedic wrote (no write
    // between the person's and the version meshmedic's patch was pinned to), changed by that
    // write, when no reviewer had approved with that very spec in front of them.
    let mut same_field_overwritten = Vec::new();
    for (target, base, after_rv, after, written_at) in &meshmedic_patches {
        for h in rec.human_fields.iter().filter(|h| &h.target == target) {
            let still_there = h.rv <= *base
                && all_writes
                    .get(target)
                    .is_none_or(|rvs| !rvs.iter().any(|rv| *rv > h.rv && rv <= base));
            let same_object = after["metadata"]["uid"].as_str() == Some(h.uid.as_str());
            if !still_there || !same_object || after.pointer(&h.path) == Some(&h.value) {
                continue;
            }
            let seen = spec_at.get(&(target.clone(), *base));
            let reviewed = rec.informed.get(target).is_some_and(|approvals| {
                approvals
                    .iter()
                    .any(|(at, digest)| at <= written_at && Some(digest) == seen)
            });
            if !reviewed {
                same_field_overwritten.push(format!(
                    "{} {}/{} {}: {} (rv {}) changed by meshmedic's write rv {} → {after_rv}",
                    target.0, target.1, target.2, h.path, h.value, h.rv, base
                ));
            }
        }
    }
    let mut panics = 0usize;
    let mut gone_410 = 0usize;
    for r in &replicas {
        for log in &r.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panics += text.matches("panicked at").count();
            gone_410 += text
                .lines()
                .filter(|l| {
                    l.contains("410")
                        || l.contains("too old resource version")
                        || l.contains("Expired")
                })
                .count();
        }
    }
    let max_status_writes = status_writes.values().copied().max().unwrap_or(0);
    let mut by_fault: BTreeMap<Fault, Vec<&Outcome>> = BTreeMap::new();
    for o in &outcomes {
        by_fault.entry(o.fault).or_default().push(o);
    }
    let mut table = String::new();
    table.push_str("| Fault | Injected | Outage p50 (s) | Recovery p50 (s) | Recovery p99 (s) | Not recovered |\n|---|---|---|---|---|---|\n");
    for (fault, os) in &by_fault {
        let mut outage: Vec<f64> = os.iter().map(|o| o.outage.as_secs_f64()).collect();
        outage.sort_by(f64::total_cmp);
        let mut rec_s: Vec<f64> = os
            .iter()
            .filter_map(|o| o.recovery)
            .map(|d| d.as_secs_f64())
            .collect();
        rec_s.sort_by(f64::total_cmp);
        table.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} |\n",
            fault.describe(),
            os.len(),
            percentile(&outage, 0.5),
            percentile(&rec_s, 0.5),
            percentile(&rec_s, 0.99),
            os.len() - rec_s.len()
        ));
    }
    let longest: Vec<(f64, u64)> = replicas
        .iter()
        .map(|r| {
            if r.rss.len() > r.longest_rss.len() {
                r.rss.clone()
            } else {
                r.longest_rss.clone()
            }
        })
        .max_by_key(Vec::len)
        .unwrap_or_default();
    let not_recovered = outcomes.iter().filter(|o| o.recovery.is_none()).count();
    let most_lost_races = lost_races.values().copied().max().unwrap_or(0);
    let figures = [
        (
            "Duration of the run (s)",
            format!("{:.0}", run_started.elapsed().as_secs_f64()),
        ),
        ("Faults injected", outcomes.len().to_string()),
        (
            "Load operations (errors while faulted)",
            format!("{} ({})", rec.load_ops, rec.load_errors),
        ),
        (
            "Approvals / rollbacks by the reviewer",
            format!("{} / {}", rec.approved, rec.rollbacks),
        ),
        ("Human edits of targets", rec.human_edits.len().to_string()),
        (
            "Remediations expected (whole-view analysis) / present",
            format!("{expected} / {present}"),
        ),
        ("Missing", missing.to_string()),
        ("Duplicates", duplicates.to_string()),
        (
            "Resolved although the cause is back (not re-proposed)",
            RESOLVED_BUT_PRESENT
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        ),
        ("Operator writes to targets", target_writes.to_string()),
        (
            "Writes to targets without a matching approval",
            unapproved.len().to_string(),
        ),
        (
            "Writes by a replica that was not leader",
            not_leader.len().to_string(),
        ),
        ("Human edits overwritten", overwritten.len().to_string()),
        (
            "Human edits of a field meshmedic changes / overwritten without review",
            format!(
                "{} / {}",
                rec.human_fields.len(),
                same_field_overwritten.len()
            ),
        ),
        ("429s answered to the operator", throttled.to_string()),
        (
            "Remediation writes that lost a race (409): all / most in one second",
            format!("{} / {most_lost_races}", lost_races.values().sum::<usize>()),
        ),
        (
            "Watch errors logged (410 Gone / expired)",
            gone_410.to_string(),
        ),
        (
            "A person's server-side apply of a field meshmedic wrote: 409 conflicts",
            rec.ssa_conflicts.to_string(),
        ),
        (
            "Malformed mode annotations / told with a Warning Event (in 3 s)",
            format!("{} / {}", rec.bad_annotations, rec.bad_annotations_told),
        ),
        (
            "Bad Remediation edits rejected by the schema / accepted",
            format!("{} / {}", rec.rejected_bad_input, rec.accepted_bad_input),
        ),
        (
            "Most status writes to one Remediation",
            max_status_writes.to_string(),
        ),
        (
            "Writes after 20 s of quiet (loops)",
            quiet_writes.values().sum::<usize>().to_string(),
        ),
        ("Panics", panics.to_string()),
        (
            "Faults not recovered from (in 120 s)",
            not_recovered.to_string(),
        ),
        (
            "RSS of the longest-lived replica: first / last (MiB), slope (KiB/min)",
            format!(
                "{:.1} / {:.1}, {:.0} over {} samples",
                longest.first().map_or(0.0, |s| s.1 as f64 / 1024.0),
                longest.last().map_or(0.0, |s| s.1 as f64 / 1024.0),
                slope_kib_per_min(&longest),
                longest.len()
            ),
        ),
    ];
    let mut summary = String::from("| Figure | Value |\n|---|---|\n");
    for (k, v) in &figures {
        summary.push_str(&format!("| {k} | {v} |\n"));
    }
    let report = format!("{summary}\n{table}");
    eprintln!("\n{report}");
    for w in unapproved.iter().take(10) {
        eprintln!("unapproved write: {w}");
    }
    for w in not_leader.iter().take(10) {
        eprintln!("write by a non-leader: {w}");
    }
    for (w, n) in quiet_writes.iter().take(10) {
        eprintln!("written {n} times with nothing going on: {w}");
    }
    for w in overwritten.iter().take(10) {
        eprintln!("human edit overwritten: {w}");
    }
    for w in same_field_overwritten.iter().take(10) {
        eprintln!("human same-field edit overwritten: {w}");
    }
    if let Ok(path) = std::env::var("MESHMEDIC_CHAOS_REPORT") {
        let _ = std::fs::write(path, &report);
    }
    drop(rec);
    drop(replicas);
    assert_eq!(panics, 0, "panics (logs in {})", dir.display());
    assert_eq!(duplicates, 0, "duplicate Remediations");
    assert_eq!(missing, 0, "missing Remediations");
    assert_eq!(
        RESOLVED_BUT_PRESENT.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "Remediations Resolved although their cause is back"
    );
    assert!(
        unapproved.is_empty(),
        "writes without approval: {unapproved:#?}"
    );
    // A write already past its fence when the process froze still lands on resume: at most one
    // per freeze (closing that needs a fence in the API server, which has none across objects).
    // The same holds for a partitioned leader: bytes it sent before the partition are
    // delivered when it heals.
    let freezes = outcomes
        .iter()
        .filter(|o| matches!(o.fault, Fault::Freeze | Fault::Partition))
        .count();
    // One action (a claim, the target write, the status) is a few writes within moments; a
    // new action by the same replica more than 2 s later counts apart.
    not_leader_at.sort();
    let mut actions = 0;
    let mut last: BTreeMap<String, k8s_openapi::jiff::Timestamp> = BTreeMap::new();
    for (at, replica) in &not_leader_at {
        let new_action = last.get(replica).is_none_or(|prev| {
            at.duration_since(*prev) > k8s_openapi::jiff::SignedDuration::from_secs(2)
        });
        if new_action {
            actions += 1;
        }
        last.insert(replica.clone(), *at);
    }
    assert!(
        actions <= freezes,
        "actions by a non-leader beyond one in-flight action per freeze ({actions} > {freezes}): {not_leader:#?}"
    );
    // A lost race is decided again on the Remediation read afresh, not on the same stale view
    // in a loop (which once made 100 conflicting writes a second while a watch relisted).
    assert!(
        most_lost_races <= MAX_LOST_RACES_PER_SECOND,
        "a conflict loop: {most_lost_races} Remediation writes lost their race in one second"
    );
    let quiet: usize = quiet_writes.values().sum();
    assert_eq!(
        quiet, 0,
        "writes with nothing going on (a loop): {quiet_writes:#?}"
    );
    assert!(
        overwritten.is_empty(),
        "human edits overwritten: {overwritten:#?}"
    );
    assert!(
        same_field_overwritten.is_empty(),
        "human same-field edits overwritten without review: {same_field_overwritten:#?}"
    );
    assert_eq!(not_recovered, 0, "faults the operator did not recover from");
}

/// (missing, duplicates, expected, present): Remediations against what a whole-view analysis
/// of the namespaces finds now.
async fn compare(admin: &Client, namespaces: &[String]) -> (usize, usize, usize, usize) {
    use meshmedic::snapshot::{SnapshotBuilder, SnapshotOptions};
    let mut builder = SnapshotBuilder::new(SnapshotOptions::default());
    let mut add = |ar: &ApiResource, items: Vec<DynamicObject>| {
        for obj in items {
            let Ok(mut raw) = serde_json::to_value(&obj) else {
                continue;
            };
            raw["apiVersion"] = json!(ar.api_version);
            raw["kind"] = json!(ar.kind);
            let _ = builder.add(meshmedic::error::Source::new("cluster", 0), raw);
        }
    };
    let nsar = ar("", "v1", "Namespace", "namespaces");
    let Ok(list) = Api::<DynamicObject>::all_with(admin.clone(), &nsar)
        .list(&ListParams::default())
        .await
    else {
        return (usize::MAX, 0, 0, 0);
    };
    add(&nsar, list.items);
    let cm = ar("", "v1", "ConfigMap", "configmaps");
    if let Ok(list) = Api::<DynamicObject>::namespaced_with(admin.clone(), "istio-system", &cm)
        .list(&ListParams::default())
        .await
    {
        add(&cm, list.items);
    }
    for kind in read_kinds() {
        match Api::<DynamicObject>::all_with(admin.clone(), &kind)
            .list(&ListParams::default())
            .await
        {
            Ok(list) => add(&kind, list.items),
            Err(_) => return (usize::MAX, 0, 0, 0),
        }
    }
    let Ok(snapshot) = builder.build() else {
        return (usize::MAX, 0, 0, 0);
    };
    let scope: BTreeSet<String> = namespaces.iter().cloned().collect();
    let report = meshmedic::analysis::analyze_in(&snapshot, Some(scope));
    // The operator proposes findings at or above the namespace's minimum severity (default
    // warning; the chaos namespaces set none).
    let expected: BTreeSet<(String, String, String, String)> = report
        .findings
        .iter()
        .filter(|f| f.severity >= meshmedic::analysis::Severity::Warning)
        .map(|f| {
            let t = &f.remediation.target;
            (
                f.code.to_string(),
                t.kind.clone(),
                t.namespace.clone(),
                t.name.clone(),
            )
        })
        .collect();
    let mut present: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    let mut all: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    let mut resolved_reason: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for ns in namespaces {
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &remediation_ar());
        let Ok(list) = api.list(&ListParams::default()).await else {
            return (usize::MAX, 0, 0, 0);
        };
        for r in list.items {
            let s = &r.data["spec"];
            let t = &s["target"];
            // One Remediation per target answers every cause that changes it.
            let mut codes: BTreeSet<String> =
                s["code"].as_str().map(str::to_string).into_iter().collect();
            for c in s["causes"].as_array().into_iter().flatten() {
                if let Some(code) = c["code"].as_str() {
                    codes.insert(code.to_string());
                }
            }
            if r.data["status"]["phase"] == "Resolved" {
                resolved_reason.insert(
                    (
                        t["kind"].as_str().unwrap_or_default().to_string(),
                        t["namespace"].as_str().unwrap_or_default().to_string(),
                        t["name"].as_str().unwrap_or_default().to_string(),
                    ),
                    r.data["status"]["conditions"].to_string(),
                );
            }
            for code in codes {
                let key = (
                    code,
                    t["kind"].as_str().unwrap_or_default().to_string(),
                    t["namespace"].as_str().unwrap_or_default().to_string(),
                    t["name"].as_str().unwrap_or_default().to_string(),
                );
                *all.entry(key.clone()).or_default() += 1;
                if r.data["status"]["phase"] != "Resolved" {
                    *present.entry(key).or_default() += 1;
                }
            }
        }
    }
    // Missing: no Remediation at all. A Resolved one while its cause is back is counted apart.
    let missing_keys: Vec<_> = expected.iter().filter(|k| !all.contains_key(*k)).collect();
    let resolved_keys: Vec<_> = expected
        .iter()
        .filter(|k| all.contains_key(*k) && !present.contains_key(*k))
        .collect();
    if !missing_keys.is_empty() || !resolved_keys.is_empty() {
        eprintln!(
            "missing now: {missing_keys:?}; Resolved while the cause is present: {resolved_keys:?}"
        );
        for k in &resolved_keys {
            let t = (k.1.clone(), k.2.clone(), k.3.clone());
            eprintln!(
                "  {t:?}: {}",
                resolved_reason.get(&t).map_or("", String::as_str)
            );
        }
    }
    let missing = missing_keys.len();
    RESOLVED_BUT_PRESENT.store(resolved_keys.len(), std::sync::atomic::Ordering::Relaxed);
    let duplicates = all.values().filter(|n| **n > 1).count();
    (missing, duplicates, expected.len(), present.values().sum())
}
