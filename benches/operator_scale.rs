//! The operator at scale, on the project's real control plane (issue 11; run by
//! `benches/operator-scale.sh`, not a criterion bench).
//!
//! One run = one cluster size. It starts etcd + kube-apiserver with the Istio CRDs and
//! meshmedic's (tests/support), measures the operator's RSS on the empty cluster (the baseline),
//! creates `PODS / 100` opted-in namespaces, each with 10 Services (headless: the test
//! apiserver's service range has 254 addresses), 10 Deployments, a ReplicaSet owned by each and
//! 10 injected-looking Pods owned by that (an app container and an istio-proxy container with the
//! injector's env, volumes and annotations; no nodes, so they stay Pending), with a fast
//! concurrent client. Service 0 of every namespace runs nginx behind Istio's default 1 h idle
//! timeout (one idle-timeout-mismatch finding per namespace, so the first pass writes
//! Remediations), the others a healthy app.
//!
//! Then it starts `meshmedic run` (the release binary given in `MESHMEDIC_BIN`) and prints:
//! - time from start to the first full analysis (the first reconcile pass) and to the seeded
//!   Remediations all existing;
//! - the mean cost of one re-analysis after one event (Δsum/Δcount of the operator's
//!   `reconcile_duration_seconds` over 20 single-namespace events, a quiet cluster otherwise);
//! - event → Remediation p50/p99 under churn: `CHURN` updates per second (Deployment and Pod
//!   annotation patches in random namespaces) while, every 250 ms, a healthy Deployment is
//!   switched to nginx and the time from that patch to its Remediation appearing (watched) is
//!   taken;
//! - peak RSS (VmHWM) above the baseline, per pod.
//!
//! Usage: `MESHMEDIC_BIN=target/release/meshmedic cargo bench --bench operator-scale -- PODS`
//! (env: CHURN=60 updates/s, CHURN_SECONDS=20, CONCURRENCY=48).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const PODS_PER_DEPLOYMENT: usize = 10;

/// Services (each with a Deployment, a ReplicaSet and 10 pods) per namespace:
/// `SERVICES_PER_NAMESPACE`, 10 unless set. A large one measures a pass over a large namespace.
fn services_per_ns() -> usize {
    (env_num("SERVICES_PER_NAMESPACE", 10) as usize).max(2)
}

fn pods_per_ns() -> usize {
    services_per_ns() * PODS_PER_DEPLOYMENT
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The DestinationRule an idle-timeout-mismatch Remediation for service `s` creates.
fn idle_target(s: usize) -> String {
    format!("{}-idle-timeout", svc_name(s))
}

fn ns_name(i: usize) -> String {
    format!("bench-{i:04}")
}

fn svc_name(i: usize) -> String {
    format!("svc-{i:02}")
}

fn api(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    ns: &str,
) -> Api<DynamicObject> {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, version, kind),
        plural,
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("a generated object")
}

/// The pod-template-hash of service `s`'s ReplicaSet in namespace `n`.
fn rs_hash(n: usize, s: usize) -> String {
    format!(
        "{:010x}",
        (n * 1000 + s) as u64 * 2654435761 % 0xff_ffff_ffff
    )
}

fn pod_name(n: usize, s: usize, i: usize) -> String {
    format!("{}-{}-{i:05x}", svc_name(s), rs_hash(n, s))
}

fn deployment(ns: &str, name: &str, nginx: bool) -> Value {
    let image = if nginx {
        "nginx:1.27"
    } else {
        "registry.example/app:1.0"
    };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name, "version": "v1"}},
        "spec": {
            "replicas": PODS_PER_DEPLOYMENT,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "version": "v1"}},
                "spec": {"containers": [{
                    "name": "app", "image": image,
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}
                }]}
            }
        }
    })
}

fn owner(kind: &str, api_version: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
            "controller": true, "blockOwnerDeletion": true}])
}

/// The pod an istio-proxy injector would have produced from the Deployment's template.
fn pod(ns: &str, app: &str, rs: &str, rs_uid: &str, i: usize) -> Value {
    let name = format!("{rs}-{i:05x}"); // = pod_name(n, s, i)
    let env = |pairs: &[(&str, &str)]| -> Vec<Value> {
        pairs
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect()
    };
    let mut proxy_env = env(&[
        ("PILOT_CERT_PROVIDER", "istiod"),
        ("CA_ADDR", "istiod.istio-system.svc:15012"),
        ("ISTIO_CPU_LIMIT", "0"),
        ("PROXY_CONFIG", "{}\n"),
        (
            "ISTIO_META_POD_PORTS",
            "[\n    {\"containerPort\":8080,\"protocol\":\"TCP\"}\n]",
        ),
        ("ISTIO_META_APP_CONTAINERS", "app"),
        ("GOMEMLIMIT", "1073741824"),
        ("GOMAXPROCS", "2"),
        ("ISTIO_META_CLUSTER_ID", "Kubernetes"),
        ("ISTIO_META_NODE_NAME", ""),
        ("ISTIO_META_INTERCEPTION_MODE", "REDIRECT"),
        ("ISTIO_META_WORKLOAD_NAME", app),
        (
            "ISTIO_META_OWNER",
            &format!("kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{app}"),
        ),
        ("ISTIO_META_MESH_ID", "cluster.local"),
        ("TRUST_DOMAIN", "cluster.local"),
    ]);
    for (k, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("INSTANCE_IP", "status.podIP"),
        ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ("HOST_IP", "status.hostIP"),
    ] {
        proxy_env.push(
            json!({"name": k, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}),
        );
    }
    let status = json!({
        "initContainers": ["istio-init"], "containers": ["istio-proxy"],
        "volumes": ["workload-socket", "credential-socket", "workload-certs", "istio-envoy",
                    "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"],
        "imagePullSecrets": null, "revision": "default"
    });
    let mounts = json!([
        {"mountPath": "/var/run/secrets/workload-spiffe-uds", "name": "workload-socket"},
        {"mountPath": "/var/run/secrets/credential-uds", "name": "credential-socket"},
        {"mountPath": "/var/run/secrets/workload-spiffe-credentials", "name": "workload-certs"},
        {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
        {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
        {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
        {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
        {"mountPath": "/etc/istio/pod", "name": "istio-podinfo"}
    ]);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {
                "app": app, "version": "v1", "pod-template-hash": rs.rsplit('-').next(),
                "security.istio.io/tlsMode": "istio",
                "service.istio.io/canonical-name": app,
                "service.istio.io/canonical-revision": "v1"
            },
            "annotations": {
                "istio.io/rev": "default",
                "kubectl.kubernetes.io/default-container": "app",
                "kubectl.kubernetes.io/default-logs-container": "app",
                "prometheus.io/path": "/stats/prometheus",
                "prometheus.io/port": "15020",
                "prometheus.io/scrape": "true",
                "sidecar.istio.io/status": status.to_string()
            },
            "ownerReferences": owner("ReplicaSet", "apps/v1", rs, rs_uid)
        },
        "spec": {
            "serviceAccountName": "default",
            "initContainers": [{
                "name": "istio-init", "image": "docker.io/istio/proxyv2:1.24.0",
                "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
                         "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"],
                "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "40Mi"}},
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                                     "privileged": false, "readOnlyRootFilesystem": false, "runAsGroup": 0, "runAsNonRoot": false, "runAsUser": 0}
            }],
            "containers": [
                {
                    "name": "app", "image": "registry.example/app:1.0",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/app-health/app/readyz", "port": 15020}},
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}
                },
                {
                    "name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0",
                    "args": ["proxy", "sidecar", "--domain", format!("{ns}.svc.cluster.local"),
                             "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
                    "env": proxy_env,
                    "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
                    "readinessProbe": {"failureThreshold": 4, "httpGet": {"path": "/healthz/ready", "port": 15021},
                                        "periodSeconds": 15, "timeoutSeconds": 3},
                    "startupProbe": {"failureThreshold": 600, "httpGet": {"path": "/healthz/ready", "port": 15021},
                                      "periodSeconds": 1, "timeoutSeconds": 3},
                    "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "40Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                                         "privileged": false, "readOnlyRootFilesystem": true, "runAsGroup": 1337,
                                         "runAsNonRoot": true, "runAsUser": 1337},
                    "volumeMounts": mounts
                }
            ],
            "volumes": [
                {"name": "workload-socket", "emptyDir": {}},
                {"name": "credential-socket", "emptyDir": {}},
                {"name": "workload-certs", "emptyDir": {}},
                {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
                {"name": "istio-data", "emptyDir": {}},
                {"name": "istio-podinfo", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
                {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
                    "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
                {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}
            ]
        }
    })
}

/// Creates namespace `n` with its Services, Deployments, ReplicaSets and Pods.
async fn populate_namespace(client: Client, n: usize, concurrency: usize) {
    let ns = ns_name(n);
    let nsapi = Api::<DynamicObject>::all_with(
        client.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("", "v1", "Namespace"),
            "namespaces",
        ),
    );
    let nsobj = obj(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": ns, "labels": {"istio-injection": "enabled"},
        "annotations": {"meshmedic.io/mode": "propose"}}}),
    );
    create(&nsapi, &nsobj).await;
    let pods = api(&client, "", "v1", "Pod", "pods", &ns);
    let mut work = Vec::new();
    for s in 0..services_per_ns() {
        let name = svc_name(s);
        let svc = obj(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": "None", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        );
        create(&api(&client, "", "v1", "Service", "services", &ns), &svc).await;
        let d = create(
            &api(&client, "apps", "v1", "Deployment", "deployments", &ns),
            &obj(deployment(&ns, &name, s == 0)),
        )
        .await;
        let hash = rs_hash(n, s);
        let rs_name = format!("{name}-{hash}");
        let mut template = deployment(&ns, &name, s == 0)["spec"]["template"].clone();
        template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let rs = obj(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns, "labels": {"app": name, "pod-template-hash": hash},
                         "ownerReferences": owner("Deployment", "apps/v1", &name, &d.uid().unwrap_or_default())},
            "spec": {"replicas": PODS_PER_DEPLOYMENT, "selector": {"matchLabels": {"app": name, "pod-template-hash": hash}},
                     "template": template}}));
        let rs = create(
            &api(&client, "apps", "v1", "ReplicaSet", "replicasets", &ns),
            &rs,
        )
        .await;
        let uid = rs.uid().unwrap_or_default();
        for i in 0..PODS_PER_DEPLOYMENT {
            work.push(obj(pod(&ns, &name, &rs_name, &uid, i)));
        }
    }
    futures::stream::iter(work)
        .for_each_concurrent(concurrency, |p| {
            let pods = pods.clone();
            async move {
                create(&pods, &p).await;
            }
        })
        .await;
}

async fn create(api: &Api<DynamicObject>, o: &DynamicObject) -> DynamicObject {
    let mut delay = Duration::from_millis(100);
    loop {
        match api.create(&PostParams::default(), o).await {
            Ok(created) => return created,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return api.get(&o.name_any()).await.expect("an existing object");
            }
            Err(kube::Error::Api(e)) if e.code != 429 && e.code < 500 => {
                panic!("create {}: {}", o.name_any(), e.message);
            }
            Err(e) => {
                eprintln!("create {}: {e}; retrying", o.name_any());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

struct Operator {
    child: Child,
    metrics: String,
}

impl Operator {
    fn start(
        bin: &str,
        kubeconfig: &std::path::Path,
        port: u16,
        log: &std::path::Path,
    ) -> Operator {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(bin);
        // SAFETY: prctl only, between fork and exec: the operator dies with the bench.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .args([
                "run",
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--lease-namespace",
                "meshmedic",
                "--identity",
                "bench",
                "--resync-seconds",
                "3600",
            ])
            // FULL_PASS_OBJECTS: the operator's --full-pass-objects (its default otherwise).
            .args(
                std::env::var("FULL_PASS_OBJECTS")
                    .ok()
                    .map(|n| vec!["--full-pass-objects".to_string(), n])
                    .unwrap_or_default(),
            )
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("operator log"))
            .spawn()
            .expect("meshmedic run");
        Operator {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// (count, sum) of reconcile passes.
    async fn passes(&self) -> Option<(f64, f64)> {
        let text = http_get(&self.metrics).await?;
        let find = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        };
        Some((
            find("meshmedic_reconcile_duration_seconds_count")?,
            find("meshmedic_reconcile_duration_seconds_sum")?,
        ))
    }

    fn stop(mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_get(url: &str) -> Option<String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let resp = client.get(url.parse().ok()?).await.ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until the operator has finished `n` passes; returns when it did.
async fn wait_passes(op: &Operator, n: f64, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some((count, _)) = op.passes().await
            && count >= n
        {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

type Seen = Arc<Mutex<HashMap<(String, String), Instant>>>;

/// Watches Remediations; records when one naming (namespace, service) first appears.
fn watch_remediations(client: Client) -> Seen {
    let seen: Seen = Default::default();
    let out = seen.clone();
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("meshmedic.io", "v1alpha1", "Remediation"),
        "remediations",
    );
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Ok(Some(r)) = stream.try_next().await {
            let ns = r.namespace().unwrap_or_default();
            let target = r
                .data
                .pointer("/spec/target/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            out.lock()
                .unwrap()
                .entry((ns, target))
                .or_insert_with(Instant::now);
        }
    });
    seen
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let pods: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let bin = std::env::var("MESHMEDIC_BIN").unwrap_or_else(|_| "target/release/meshmedic".into());
    let namespaces = pods.div_ceil(pods_per_ns()).max(1);
    let pods = namespaces * pods_per_ns();
    let churn = env_num("CHURN", 60);
    let churn_seconds = env_num("CHURN_SECONDS", 20);
    let concurrency = env_num("CONCURRENCY", 48) as usize;

    let cp = support::control_plane();
    let kubeconfig = cp.kubeconfig().to_path_buf();
    let logdir = std::env::temp_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = cp.admin();
        for ns in ["meshmedic", "istio-system"] {
            support::ensure_namespace(&client, ns).await.expect("namespace");
        }
        // Mesh-wide retries on reset (as examples/shop): services need no VirtualService of
        // their own to avoid missing-reset-retry, so the findings are the seeded ones.
        let mesh = obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": "rootNamespace: istio-system\ndefaultHttpRetryPolicy:\n  attempts: 2\n  retryOn: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,reset\n"}}));
        create(&api(&client, "", "v1", "ConfigMap", "configmaps", "istio-system"), &mesh).await;
        // Baseline: the operator on the empty cluster, after its first pass.
        let op = Operator::start(&bin, &kubeconfig, free_port(), &logdir.join("meshmedic-bench-baseline.log"));
        wait_passes(&op, 1.0, Duration::from_secs(120)).await.expect("a first pass on the empty cluster");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, baseline) = op.rss();
        op.stop();
        eprintln!("baseline: {baseline} KiB");

        let started = Instant::now();
        futures::stream::iter(0..namespaces)
            .for_each_concurrent(4, |n| populate_namespace(client.clone(), n, concurrency / 4 + 1))
            .await;
        let create_s = started.elapsed().as_secs_f64();
        eprintln!(
            "created {namespaces} namespaces, {} services, {} deployments, {pods} pods in {create_s:.1}s ({:.0} objects/s)",
            namespaces * services_per_ns(),
            namespaces * services_per_ns(),
            (pods + namespaces * (1 + 3 * services_per_ns())) as f64 / create_s
        );

        let seen = watch_remediations(client.clone());
        let op_log = logdir.join(format!("meshmedic-bench-{pods}.log"));
        let start = Instant::now();
        let op = Operator::start(&bin, &kubeconfig, free_port(), &op_log);
        let first = wait_passes(&op, 1.0, Duration::from_secs(600)).await.expect("a first full analysis");
        let first_s = (first - start).as_secs_f64();
        let all_seeded = loop {
            let n = seen.lock().unwrap().keys().filter(|(_, t)| *t == idle_target(0)).count();
            if n >= namespaces {
                break Instant::now();
            }
            if start.elapsed() > Duration::from_secs(900) {
                panic!("only {n} of {namespaces} seeded Remediations after 900 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let seeded_s = (all_seeded - start).as_secs_f64();
        let (_, hwm_first) = op.rss();
        eprintln!("first full analysis after {first_s:.2}s; all {namespaces} seeded Remediations after {seeded_s:.2}s; VmHWM {hwm_first} KiB");

        // One re-analysis after one event: single-namespace events on a quiet cluster.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (c0, s0) = op.passes().await.expect("metrics");
        for k in 0..20 {
            let ns = ns_name((k * 7919) % namespaces);
            let d = api(&client, "apps", "v1", "Deployment", "deployments", &ns);
            let patch = json!({"metadata": {"annotations": {"bench/tick": format!("q{k}")}}});
            d.patch(&svc_name(1 + k % (services_per_ns() - 1)), &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (c1, s1) = op.passes().await.expect("metrics");
        let reanalysis_ms = (s1 - s0) / (c1 - c0).max(1.0) * 1000.0;
        eprintln!("re-analysis after one event: {reanalysis_ms:.1} ms (mean of {} passes); VmHWM {} KiB", c1 - c0, op.rss().1);

        // Churn, with probes.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churned = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let churner = {
            let (client, stop, churned) = (client.clone(), stop.clone(), churned.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / churn as f64));
                let mut k: usize = 0;
                let inflight = Arc::new(tokio::sync::Semaphore::new(32));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    k += 1;
                    let (client, churned) = (client.clone(), churned.clone());
                    let permit = inflight.clone().acquire_owned().await.expect("semaphore");
                    tokio::spawn(async move {
                        let n = (k * 104729) % namespaces;
                        let ns = ns_name(n);
                        let patch = json!({"metadata": {"annotations": {"bench/churn": k.to_string()}}});
                        let s = 1 + k % (services_per_ns() - 1);
                        let r = if k.is_multiple_of(2) {
                            api(&client, "apps", "v1", "Deployment", "deployments", &ns)
                                .patch(&svc_name(s), &PatchParams::default(), &Patch::Merge(&patch)).await
                        } else {
                            api(&client, "", "v1", "Pod", "pods", &ns)
                                .patch(&pod_name(n, s, k % PODS_PER_DEPLOYMENT), &PatchParams::default(), &Patch::Merge(&patch)).await
                        };
                        if r.is_ok() {
                            churned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        drop(permit);
                    });
                }
            })
        };
        let churn_start = Instant::now();
        let mut probes: Vec<((String, String), Instant)> = Vec::new();
        let mut p = 0usize;
        while churn_start.elapsed() < Duration::from_secs(churn_seconds) {
            // Probe p: a healthy Deployment (services 1..) switched to nginx.
            let ns = ns_name(p % namespaces);
            let s = 1 + (p / namespaces) % (services_per_ns() - 1);
            let svc = svc_name(s);
            p += 1;
            if p > namespaces * (services_per_ns() - 1) {
                break;
            }
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}});
            let d = api(&client, "apps", "v1", "Deployment", "deployments", &ns);
            let sent = Instant::now();
            if d.patch(&svc, &PatchParams::default(), &Patch::Strategic(&patch)).await.is_ok() {
                probes.push(((ns, idle_target(s)), sent));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let churn_elapsed = churn_start.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = churner.await;
        let rate = churned.load(std::sync::atomic::Ordering::Relaxed) as f64 / churn_elapsed;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let seen_now = seen.lock().unwrap().clone();
        let mut lat: Vec<f64> = probes
            .iter()
            .filter_map(|(key, sent)| seen_now.get(key).map(|at| at.saturating_duration_since(*sent).as_secs_f64()))
            .collect();
        lat.sort_by(f64::total_cmp);
        let missing = probes.len() - lat.len();
        let (rss, hwm) = op.rss();
        eprintln!("after churn: VmRSS {rss} KiB, VmHWM {hwm} KiB");
        op.stop();
        let per_pod = (hwm.saturating_sub(baseline)) as f64 / pods as f64;
        eprintln!(
            "churn: {rate:.0} updates/s over {churn_elapsed:.0}s; {} probes, {missing} without a Remediation after 10 s",
            probes.len()
        );
        println!(
            "RESULT pods={pods} services={} namespaces={namespaces} baseline_kib={baseline} peak_kib={hwm} rss_kib={rss} per_pod_kib={per_pod:.2} first_analysis_s={first_s:.2} seeded_remediations_s={seeded_s:.2} reanalysis_ms={reanalysis_ms:.1} churn_per_s={rate:.0} probes={} missing={missing} p50_s={:.3} p99_s={:.3} create_s={create_s:.0}",
            namespaces * services_per_ns(),
            probes.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
        );
    });
}
