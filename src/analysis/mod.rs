//! One pure detector per 503 cause. Each is a function from the [`Snapshot`] to findings: no I/O,
//! no clock, so every detector is tested with YAML fixtures alone. A detector lives in the file
//! named by its finding code.

pub mod app_servers;
pub mod dependencies;
pub mod explanations;
pub mod idle_timeout_mismatch;
pub mod listener_change_503;
pub mod localhost_binding;
pub mod missing_reset_retry;
pub mod mtls_probe_failure;
pub mod sidecar_lifecycle;

use crate::model::service::ServiceSpec;
use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use crate::model::keys;
use crate::remediation::Remediation;
use crate::snapshot::Snapshot;

/// Stable finding codes (the JSON output and the Remediation CRD use these strings).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    IdleTimeoutMismatch,
    MissingResetRetry,
    #[serde(rename = "listener-change-503")]
    ListenerChange503,
    SidecarLifecycle,
    LocalhostBinding,
    MtlsProbeFailure,
}

impl Code {
    pub const ALL: [Code; 6] = [
        Code::IdleTimeoutMismatch,
        Code::MissingResetRetry,
        Code::ListenerChange503,
        Code::SidecarLifecycle,
        Code::LocalhostBinding,
        Code::MtlsProbeFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::IdleTimeoutMismatch => "idle-timeout-mismatch",
            Code::MissingResetRetry => "missing-reset-retry",
            Code::ListenerChange503 => "listener-change-503",
            Code::SidecarLifecycle => "sidecar-lifecycle",
            Code::LocalhostBinding => "localhost-binding",
            Code::MtlsProbeFailure => "mtls-probe-failure",
        }
    }

    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == text.trim())
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; most apps survive it.
    Info,
    /// Intermittent 503s.
    Warning,
    /// Persistent 503s or failing pods.
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct WorkloadRef {
    pub kind: String,
    pub name: String,
}

impl WorkloadRef {
    pub fn of(w: &crate::model::workload::Workload) -> WorkloadRef {
        WorkloadRef {
            kind: w.kind.to_string(),
            name: w.meta.name.clone(),
        }
    }
}

/// The name of the first Service that selects workload `w`, for findings about a workload.
pub(crate) fn first_service(snapshot: &Snapshot, w: usize) -> Option<String> {
    snapshot
        .services_of(w)
        .next()
        .map(|(_, s)| s.meta.name.clone())
}

/// `8080,9090`, for messages.
pub(crate) fn joined_ports<'a>(ports: impl Iterator<Item = &'a i32>) -> String {
    ports.map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub namespace: String,
    /// The Service's name, or null for a finding about a workload alone, or about several
    /// Services (then named in `services`).
    pub service: Option<String>,
    /// The Services a finding about several is for (a gateway VirtualService's routes to the
    /// services of one namespace); empty, and left out of JSON, otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    pub workload: Option<WorkloadRef>,
    pub message: String,
    pub evidence: Vec<String>,
    pub remediation: Remediation,
}

/// Everything the analysis produced, ready to print.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub findings: Vec<Finding>,
    pub istio_version: crate::snapshot::IstioVersion,
    /// The mesh the findings assume: versions, native sidecars, injector settings, and the
    /// `assumptions` not read from the input.
    pub profile: crate::snapshot::MeshProfile,
    /// Documents of kinds meshmedic does not read, by `apiVersion/kind`.
    pub skipped: std::collections::BTreeMap<String, usize>,
    /// Fixes that could not be planned (never expected; reported rather than dropped).
    pub errors: Vec<String>,
    /// Input files that are not manifests (chart metadata, values, templates, ...), with why.
    pub skipped_files: Vec<crate::snapshot::load::SkippedFile>,
    /// Documents that could not be read, with file and line; the rest was analysed.
    pub invalid_documents: Vec<crate::snapshot::load::InvalidDocument>,
}

/// Collects findings from detectors, and the rare fix that cannot be planned.
#[derive(Default)]
pub struct Sink {
    pub findings: Vec<Finding>,
    pub errors: Vec<String>,
    /// Namespaces to analyse; `None` for all. The operator re-analyses only the namespaces an
    /// event touched.
    pub scope: Option<std::collections::BTreeSet<String>>,
    /// Drop each fix's edits as its finding arrives: only composing fixes on one object reads
    /// them (`fix`, `-o yaml`, the operator), and at 10,000 services they were 4 MB of the peak.
    pub drop_edits: bool,
    /// The namespace [`Sink::wants`] answered for last, and its answer (for `scope` as it is:
    /// a sink is made for one analysis, and its scope is not changed once detectors ran).
    last_wanted: std::cell::RefCell<(Option<String>, bool)>,
}

impl Sink {
    /// Whether the detectors should look at objects in this namespace.
    pub fn wants(&self, namespace: &str) -> bool {
        let Some(scope) = &self.scope else {
            return true;
        };
        // Every detector passes over all the services or workloads, once per group of
        // namespaces (`namespace_groups`): most in a row share a namespace (the order of their
        // files), and a group is a range of namespaces, so most of the others are told by two
        // comparisons.
        let mut last = self.last_wanted.borrow_mut();
        let (last_namespace, answer) = &mut *last;
        if last_namespace.as_deref() == Some(namespace) {
            return *answer;
        }
        let within = scope
            .first()
            .is_some_and(|first| namespace >= first.as_str())
            && scope.last().is_some_and(|last| namespace <= last.as_str());
        *answer = within && scope.contains(namespace);
        let kept = last_namespace.get_or_insert_with(String::new);
        kept.clear();
        kept.push_str(namespace);
        *answer
    }

    pub fn push(&mut self, finding: Result<Finding, crate::remediation::PlanError>) {
        match finding {
            Ok(mut f) => {
                if self.drop_edits {
                    f.remediation.edits = Vec::new();
                }
                self.findings.push(f)
            }
            Err(e) => self.errors.push(e.to_string()),
        }
    }
}

/// Every detector, on one core or (`two_cores`) split in two halves of about the same work.
/// Findings and errors are joined in the same order either way.
fn run_detectors(
    snapshot: &Snapshot,
    new_sink: &(dyn Fn() -> Sink + Sync),
    two_cores: bool,
) -> Sink {
    // In the order their findings (and errors) are joined.
    let timeouts = |sink: &mut Sink| idle_timeout_mismatch::detect(snapshot, sink);
    let retries = |sink: &mut Sink| {
        missing_reset_retry::detect(snapshot, sink);
        listener_change_503::detect(snapshot, sink);
    };
    if !two_cores {
        let mut sink = new_sink();
        timeouts(&mut sink);
        retries(&mut sink);
        sidecar_lifecycle::detect(snapshot, &mut sink);
        localhost_binding::detect(snapshot, &mut sink);
        mtls_probe_failure::detect(snapshot, &mut sink);
        return sink;
    }
    // Balanced by their times at 10,000 services: the retries (about 85 ms) and
    // `localhost-binding` (about 13) on one core; the idle timeouts (about 85) and the other
    // two workload detectors on the other.
    let (mut middle, mut localhost) = (new_sink(), new_sink());
    let (mut sink, mut lifecycle, mut mtls) = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            let (mut first, mut lifecycle, mut mtls) = (new_sink(), new_sink(), new_sink());
            timeouts(&mut first);
            sidecar_lifecycle::detect(snapshot, &mut lifecycle);
            mtls_probe_failure::detect(snapshot, &mut mtls);
            (first, lifecycle, mtls)
        });
        retries(&mut middle);
        localhost_binding::detect(snapshot, &mut localhost);
        other
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    let parts = [&mut middle, &mut lifecycle, &mut localhost, &mut mtls];
    // Grown once to the exact size: doubling left up to half of the largest list unused.
    sink.findings
        .reserve_exact(parts.iter().map(|p| p.findings.len()).sum());
    for part in parts {
        sink.findings.append(&mut part.findings);
        sink.errors.append(&mut part.errors);
    }
    sink
}

/// Runs every detector over the snapshot.
pub fn analyze(snapshot: &Snapshot) -> Report {
    analyze_in(snapshot, None)
}

/// Runs every detector over the services and workloads of some namespaces only (all when
/// `scope` is `None`). Rules elsewhere (root namespace, exported rules) still count.
pub fn analyze_in(
    snapshot: &Snapshot,
    scope: Option<std::collections::BTreeSet<String>>,
) -> Report {
    analyze_with(snapshot, scope, true)
}

/// [`analyze_in`] for output that never composes fixes (`analyze` as JSON, a table or SARIF):
/// the findings come without their fixes' edits.
pub fn analyze_without_edits(
    snapshot: &Snapshot,
    scope: Option<std::collections::BTreeSet<String>>,
) -> Report {
    analyze_with(snapshot, scope, false)
}

fn analyze_with(
    snapshot: &Snapshot,
    scope: Option<std::collections::BTreeSet<String>>,
    keep_edits: bool,
) -> Report {
    let new_sink = || Sink {
        scope: scope.clone(),
        drop_edits: !keep_edits,
        ..Sink::default()
    };
    // The detectors only read the snapshot: on a large one, they run on two cores.
    let large = Snapshot::worth_two_cores(snapshot.services.len(), snapshot.workloads.len());
    let sink = run_detectors(snapshot, &new_sink, large);
    let mut findings: Vec<Finding> = sink
        .findings
        .into_iter()
        .filter(|f| !ignored(snapshot, f))
        .collect();
    sort_findings(&mut findings);
    let mut errors = sink.errors;
    // In one order however the work was split: by namespaces (`namespace_groups`) or not.
    errors.sort();
    Report {
        findings,
        errors,
        ..Report::without_findings(snapshot)
    }
}

impl Report {
    /// The report of `snapshot` before any detector ran: no findings, no errors.
    pub fn without_findings(snapshot: &Snapshot) -> Report {
        Report {
            findings: Vec::new(),
            istio_version: snapshot.istio_version.clone(),
            profile: snapshot.profile().clone(),
            skipped: snapshot.skipped.clone(),
            errors: Vec::new(),
            skipped_files: Vec::new(),
            invalid_documents: Vec::new(),
        }
    }
}

/// The namespaces of the snapshot's services and workloads (those in `scope`), in order, in
/// groups of at least `objects` services and workloads each (the last may have fewer). Every
/// detector looks at a service's or a workload's namespace (`Sink::wants`), and every finding is
/// its namespace's: the findings of `analyze_in` on each group, one after the other, are the
/// findings of the whole, in the report's order, and only one group's are held at a time. One
/// group (or none) when there is not more than `objects` in all.
pub fn namespace_groups(
    snapshot: &Snapshot,
    scope: Option<&std::collections::BTreeSet<String>>,
    objects: usize,
) -> Vec<std::collections::BTreeSet<String>> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    let namespaces = snapshot.services.iter().map(|s| s.meta.namespace.as_str());
    let namespaces = namespaces.chain(snapshot.workloads.iter().map(|w| w.meta.namespace.as_str()));
    for ns in namespaces {
        if scope.is_none_or(|s| s.contains(ns)) {
            *counts.entry(ns).or_default() += 1;
        }
    }
    let mut groups = Vec::new();
    let mut group = std::collections::BTreeSet::new();
    let mut size = 0;
    for (ns, n) in counts {
        group.insert(ns.to_string());
        size += n;
        if size >= objects {
            groups.push(std::mem::take(&mut group));
            size = 0;
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// In the order of the report: by namespace, Service, code, workload and target, stably.
/// Sorted as positions, then moved into place: a stable sort of the findings themselves
/// (456 bytes each) took a buffer of half of them and moved each several times.
fn sort_findings(findings: &mut [Finding]) {
    fn key(
        f: &Finding,
    ) -> (
        &String,
        &Option<String>,
        Code,
        &Option<WorkloadRef>,
        &crate::model::ObjectRef,
    ) {
        (
            &f.namespace,
            &f.service,
            f.code,
            &f.workload,
            &f.remediation.target,
        )
    }
    let mut order: Vec<usize> = (0..findings.len()).collect();
    order.sort_by(|&a, &b| key(&findings[a]).cmp(&key(&findings[b])));
    apply_order(findings, &mut order);
}

/// Puts `items[order[i]]` at `i`, in place, following each cycle of the permutation once;
/// `order` is left as the identity.
fn apply_order<T>(items: &mut [T], order: &mut [usize]) {
    for start in 0..items.len() {
        let mut at = start;
        // `order[at] == at` marks a place already filled.
        while order[at] != start {
            let from = order[at];
            items.swap(at, from);
            order[at] = at;
            at = from;
        }
        order[at] = at;
    }
}

/// `meshmedic.io/ignore: "code,code"` on the workload's pod template, or on the Service.
fn ignored(snapshot: &Snapshot, finding: &Finding) -> bool {
    let lists = |annotations: &crate::model::Labels| {
        annotations
            .get(keys::IGNORE)
            .is_some_and(|v| v.split(',').any(|c| Code::parse(c) == Some(finding.code)))
    };
    let ns = &finding.namespace;
    let by_workload = finding.workload.as_ref().is_some_and(|w| {
        snapshot
            .workload(&w.kind, ns, &w.name)
            .is_some_and(|x| lists(&x.pod_annotations))
    });
    let by_service = finding.service.as_ref().is_some_and(|s| {
        snapshot
            .service_index(ns, s)
            .is_some_and(|i| service_ignores(snapshot, i, finding.code))
    });
    by_workload || by_service
}

/// Whether service `s` (or a workload it selects) lists `code` in `meshmedic.io/ignore`.
pub(crate) fn service_ignores(snapshot: &Snapshot, s: usize, code: Code) -> bool {
    let lists = |annotations: &crate::model::Labels| {
        annotations
            .get(keys::IGNORE)
            .is_some_and(|v| v.split(',').any(|c| Code::parse(c) == Some(code)))
    };
    lists(&snapshot.services[s].meta.annotations)
        || snapshot.workloads_of(s).any(|w| lists(&w.pod_annotations))
}

/// The worst severity among findings (for `--fail-on`).
pub fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}

/// Ports of databases, caches, brokers and file servers whose clients never speak HTTP: on a
/// port Istio sniffs, their traffic is plain TCP (PostgreSQL, MySQL, Redis and its Sentinel,
/// MongoDB, Cassandra, Memcached, AMQP, Kafka, ZooKeeper, SQL Server, Oracle, NATS, Pulsar,
/// CockroachDB, Hazelcast, RethinkDB's driver port, NFS with rpcbind and mountd, LDAP, Apache
/// Dubbo's RPC 20880: AliyunContainerService/asm-labs' Dubbo provider). Found reading
/// the findings on GoogleCloudPlatform/kubernetes-engine-samples: unnamed Redis and PostgreSQL
/// ports were offered HTTP retries that their traffic never meets; the same on kubernetes/
/// examples' Hazelcast, Redis Sentinel, RethinkDB and NFS server, and kustomize's LDAP example.
/// And 443 and 8443: clients
/// speak TLS there, which sniffing passes through as TCP (kubeflow/manifests' admission
/// webhooks, whose only port is an unnamed 443, got HTTP retry findings; so did OpenShift's
/// API on 8443 in kubernetes/examples).
const NON_HTTP_PORTS: &[i32] = &[
    443, 8443, 5432, 3306, 33060, 6379, 26379, 27017, 9042, 11211, 5672, 9092, 2181, 1433, 1521,
    4222, 6650, 26257, 5701, 28015, 2049, 111, 20048, 389, 636, 20880,
];

/// Port names (their prefix, as Istio splits them) of the same non-HTTP protocols that Istio
/// does not parse: it sniffs such a port and finds TCP. Found on GoogleCloudPlatform/
/// kubernetes-engine-samples: a MySQL Router's X Protocol ports `mysqlx-rw` (64460) and
/// `mysqlx-ro` (64470) were offered HTTP retries (its `mysql-*` ports Istio reads as MySQL).
const NON_HTTP_NAMES: &[&str] = &[
    "mysqlx",
    "postgres",
    "postgresql",
    "amqp",
    "amqps",
    "kafka",
    "zookeeper",
    "memcached",
    "cql",
    "nats",
    "nfs",
    "mountd",
    "rpcbind",
    "ldap",
    "ldaps",
    "dubbo",
];

/// Ports the Istio proxy serves itself, not an app (Istio's "Ports used by Istio"): 15020 merged
/// Prometheus telemetry, 15021 health checks, 15090 Envoy's Prometheus telemetry. A gateway's
/// Service exposes `status-port` 15021 for load balancers' health checks; an east-west gateway,
/// whose other ports are TLS, got an HTTP retry finding for it, and an nginx Service exposing
/// 15020 an idle-timeout finding for a port nginx never serves.
pub(crate) const ISTIO_PROXY_PORTS: &[i32] = &[15020, 15021, 15090];

/// An `istio-proxy` container (regular, or a native sidecar among the init containers) written
/// into the pod template (the output of `istioctl kube-inject`, kept in Git) that no injection
/// webhook injects again: gitops-istio runs its
/// pre-injected Deployments in a namespace labelled `istio-injection: disabled`. What the
/// injector reads (annotations, its own settings) then changes nothing until someone injects
/// the template again; a fix changes the template itself, as the injector would have. (Where a
/// webhook does inject the pod, Istio injects an injected pod again with today's settings.)
pub(crate) fn proxy_written_into_template(
    snapshot: &Snapshot,
    workload: &crate::model::workload::Workload,
) -> bool {
    snapshot.injecting_revision(workload).is_none() && workload.proxy_container().is_some()
}

/// Whether the Istio that acts on `workload`'s proxy is `(major, minor)` or later: for a proxy
/// written into the template, its own image's version (that template runs as written); else,
/// or when the image has no version tag, istiod's.
pub(crate) fn proxy_istio_at_least(
    snapshot: &Snapshot,
    workload: &crate::model::workload::Workload,
    written_in: bool,
    (major, minor): (u32, u32),
) -> bool {
    let image = written_in
        .then(|| workload.proxy_container()?.image.as_deref())
        .flatten();
    match image.and_then(|i| crate::snapshot::IstioVersion::of_image(i, str::to_string)) {
        Some(version) => version.at_least(major, minor),
        None => snapshot.istio_version.at_least(major, minor),
    }
}

/// A Service with an HTTP port whose pods, all in the input, run with no Istio proxy at all
/// (not ambient, where ztunnel carries the gateway's connections): what a gateway's Envoy
/// reaches directly, pooling its own connections to the app.
pub(crate) fn reached_without_sidecar(snapshot: &Snapshot, s: usize) -> bool {
    let mut workloads = snapshot.workloads_of(s).peekable();
    workloads.peek().is_some()
        && app_ports(&snapshot.services[s].spec)
            .any(|p| service_port_protocol(snapshot, s, p) != Protocol::Tcp)
        && workloads.all(|w| snapshot.has_no_proxy(w))
}

/// The ports of a Service that lead to an app: every detector reads these, never the ones that
/// lead to the Istio proxy's own endpoints (the sidecar does not even capture those).
pub fn app_ports(spec: &ServiceSpec) -> impl Iterator<Item = &ServicePort> {
    spec.ports.iter().flatten().filter(|p| !serves_the_proxy(p))
}

/// Whether a Service port leads to the Istio proxy's own endpoints rather than to an app.
fn serves_the_proxy(port: &ServicePort) -> bool {
    match &port.target_port {
        None => ISTIO_PROXY_PORTS.contains(&port.port),
        Some(IntOrString::Int(n)) => ISTIO_PROXY_PORTS.contains(n),
        Some(IntOrString::String(_)) => false,
    }
}

/// Service port protocol as Istio infers it: `appProtocol`, else the port name's prefix; a port
/// named for a non-HTTP protocol Istio does not parse, or an undeclared port of a well-known
/// non-HTTP server, is TCP, as sniffing will find it.
pub fn port_protocol(port: &ServicePort) -> Protocol {
    match declared_protocol(port).as_str() {
        "http" | "http2" | "grpc" | "grpc-web" | "h2c" | "kubernetes.io/h2c" => Protocol::Http,
        "tcp" | "tls" | "https" | "mongo" | "mysql" | "redis" | "udp" => Protocol::Tcp,
        name if NON_HTTP_NAMES.contains(&name) => Protocol::Tcp,
        _ if port.protocol.as_deref().is_some_and(|p| p != "TCP") => Protocol::Tcp,
        _ if NON_HTTP_PORTS.contains(&port.port) => Protocol::Tcp,
        _ => Protocol::Unknown,
    }
}

/// [`port_protocol`] of a port of Service `s`, with what its pods say when Istio would sniff
/// it: when the container port it leads to, in every workload of the Service, is named for a
/// non-HTTP protocol (`tcp-echo-port`), the app speaks that and sniffing finds TCP. Istio reads
/// only the Service port's name, so this is evidence of the app, not of Istio's listener. Found
/// on istioinaction/book-source-code: an unnamed Service port 2701 before a container port
/// `tcp-echo-port` was offered HTTP retries.
pub(crate) fn service_port_protocol(snapshot: &Snapshot, s: usize, port: &ServicePort) -> Protocol {
    let declared = port_protocol(port);
    if declared != Protocol::Unknown {
        return declared;
    }
    let mut workloads = snapshot.workloads_of(s).peekable();
    let tcp_in_every_pod =
        workloads.peek().is_some() && workloads.all(|w| container_port_names_tcp(w, port));
    if tcp_in_every_pod {
        Protocol::Tcp
    } else {
        Protocol::Unknown
    }
}

/// Whether the container port a Service port leads to in `workload` is named (or declared)
/// for a protocol that is not HTTP.
fn container_port_names_tcp(
    workload: &crate::model::workload::Workload,
    port: &ServicePort,
) -> bool {
    let target = port.target_port.as_ref();
    workload
        .pod_spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| match target {
            None => p.container_port == port.port,
            Some(IntOrString::Int(n)) => p.container_port == *n,
            Some(IntOrString::String(name)) => p.name.as_deref() == Some(name.as_str()),
        })
        .is_some_and(|p| {
            let named = p.name.as_deref().unwrap_or_default().to_ascii_lowercase();
            let prefix = named.split('-').next().unwrap_or_default();
            matches!(prefix, "tcp" | "tls" | "mongo" | "mysql" | "redis" | "udp")
                || NON_HTTP_NAMES.contains(&prefix)
                || p.protocol.as_deref().is_some_and(|proto| proto != "TCP")
        })
}

/// The protocol a port declares, lowercase: its `appProtocol`, else its name's prefix
/// (Istio's protocol selection).
pub(crate) fn declared_protocol(port: &ServicePort) -> String {
    port.app_protocol
        .as_deref()
        .or_else(|| {
            port.name
                .as_deref()
                .map(|n| n.split('-').next().unwrap_or(n))
        })
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The protocol a Sidecar ingress listener for `port` declares, so that the proxy speaks to the
/// app as the app speaks: the listener's protocol sets its cluster's (Istio's
/// `buildInboundClustersFromSidecar`), and an `HTTP` one speaks HTTP/1.1, which a gRPC or h2c
/// server refuses. A port Istio sniffs, or one that is not HTTP, is passed through as TCP.
pub fn sidecar_listener_protocol(port: &ServicePort) -> &'static str {
    match port_protocol(port) {
        Protocol::Http => match declared_protocol(port).as_str() {
            "grpc" => "GRPC",
            "grpc-web" => "GRPC-Web",
            "http2" | "h2c" | "kubernetes.io/h2c" => "HTTP2",
            _ => "HTTP",
        },
        Protocol::Tcp | Protocol::Unknown => "TCP",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Tcp,
    /// Istio sniffs the protocol; HTTP traffic is handled as HTTP.
    Unknown,
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::snapshot::{Snapshot, SnapshotBuilder, SnapshotOptions, load::parse_documents};

    /// An injected nginx Deployment `web` behind the Service `web` in namespace `shop` (an
    /// idle-timeout-mismatch with Istio's defaults), for tests of the stages after analysis.
    pub const NGINX_WEB: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27", ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
"#;

    /// A snapshot from inline YAML documents.
    pub fn snapshot(yaml: &str) -> Snapshot {
        snapshot_with(yaml, SnapshotOptions::default())
    }

    /// Also checks, for every input a detector test uses, that each fix removes its own finding
    /// and brings no new one (`remediation::simulate`).
    pub fn snapshot_with(yaml: &str, options: SnapshotOptions) -> Snapshot {
        let docs = parse_documents("test.yaml", yaml).expect("valid yaml");
        let mut builder = SnapshotBuilder::new(options.clone());
        for (source, value) in docs.clone() {
            builder.add(source, value).expect("valid object");
        }
        let snapshot = builder.build().expect("snapshot builds");
        let check =
            crate::remediation::simulate::check_fixes(&docs, &options).expect("input analyses");
        assert!(
            check.problems.is_empty(),
            "fixes that do not stick:\n{}",
            check.problems.join("\n")
        );
        snapshot
    }

    /// The findings of one code.
    pub fn findings_of(snap: &Snapshot, code: super::Code) -> Vec<super::Finding> {
        super::analyze(snap)
            .findings
            .into_iter()
            .filter(|f| f.code == code)
            .collect()
    }

    /// The findings of one code in `yaml` with `fix` applied to it.
    pub fn findings_after_fix(
        yaml: &str,
        fix: &crate::remediation::Remediation,
        code: super::Code,
    ) -> Vec<super::Finding> {
        let docs = parse_documents("input.yaml", yaml).expect("parse");
        let fixed = crate::remediation::simulate::with_fix(&docs, fix).expect("applies");
        let mut builder = SnapshotBuilder::new(Default::default());
        for (at, value) in fixed {
            builder.add(at, value).expect("add");
        }
        findings_of(&builder.build().expect("build"), code)
    }

    /// The one finding of a code; fails the test when there is not exactly one.
    pub fn only_of(snap: &Snapshot, code: super::Code) -> super::Finding {
        let mut all = findings_of(snap, code);
        assert_eq!(all.len(), 1, "expected one {code} finding: {all:#?}");
        all.remove(0)
    }

    /// Fails the test when the manifests give any finding of a code.
    pub fn none_of(yaml: &str, code: super::Code) {
        let all = findings_of(&snapshot(yaml), code);
        assert!(all.is_empty(), "expected no {code} finding: {all:#?}");
    }

    pub fn has_evidence(f: &super::Finding, needle: &str) -> bool {
        f.evidence.iter().any(|e| e.contains(needle))
    }

    /// Applying the finding's patch to the input object gives exactly its `resource`.
    pub fn assert_patch_consistent(snapshot: &Snapshot, f: &super::Finding) {
        let r = &f.remediation;
        if let Some(patch) = &r.patch {
            let mut doc = snapshot
                .raw_object(&r.target)
                .expect("target in snapshot")
                .clone();
            crate::remediation::apply(&mut doc, patch).expect("patch applies");
            assert_eq!(doc, r.resource, "patch result differs from resource");
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Sink, apply_order, run_detectors};

    proptest! {
        /// Moving items into a sorted order in place gives what a stable sort of the items
        /// gives, ties included.
        #[test]
        fn items_put_in_order_in_place_are_a_stable_sort(
            keys in proptest::collection::vec(0u8..6, 0..60)
        ) {
            let items: Vec<(u8, usize)> = keys.iter().copied().zip(0..).collect();
            let mut expected = items.clone();
            expected.sort_by_key(|&(k, _)| k);
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by_key(|&i| items[i].0);
            let mut moved = items.clone();
            apply_order(&mut moved, &mut order);
            prop_assert_eq!(moved, expected);
            prop_assert!(order.iter().enumerate().all(|(i, &o)| i == o));
        }
    }

    #[test]
    fn findings_without_edits_are_the_findings_with_them() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut input = crate::snapshot::load::read_paths(&[examples]).expect("examples read");
        let (snapshot, _) = input.build(Default::default()).expect("examples build");
        let with = super::analyze_in(&snapshot, None);
        let without = super::analyze_without_edits(&snapshot, None);
        assert!(
            with.findings
                .iter()
                .any(|f| !f.remediation.edits.is_empty())
        );
        assert!(
            without
                .findings
                .iter()
                .all(|f| f.remediation.edits.is_empty())
        );
        let json = |r: &super::Report| serde_json::to_string(r).expect("report serializes");
        assert_eq!(json(&with), json(&without));
    }

    #[test]
    fn detectors_on_two_cores_give_the_findings_and_errors_of_one() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut input = crate::snapshot::load::read_paths(&[examples]).expect("examples read");
        let options = crate::snapshot::SnapshotOptions {
            assume_injected: true,
            ..Default::default()
        };
        let (snapshot, _) = input.build(options).expect("examples build");
        let new_sink = Sink::default;
        let one = run_detectors(&snapshot, &new_sink, false);
        let two = run_detectors(&snapshot, &new_sink, true);
        let codes: std::collections::BTreeSet<_> = one.findings.iter().map(|f| f.code).collect();
        assert!(codes.len() >= 5, "the examples give most causes: {codes:?}");
        let json = |sink: &Sink| serde_json::to_string(&sink.findings).expect("findings serialize");
        assert_eq!(json(&one), json(&two));
        assert_eq!(one.errors, two.errors);
    }
}
