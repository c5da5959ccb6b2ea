//! Helpers for tests that run the operator: installing `deploy/` with kubectl, operator
//! replicas on their own runtimes, the shop example in a fresh namespace, and polling.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Config};
use meshmedic::controller::{LogFormat, RunArgs, run_with};
use meshmedic::model::remediation::{Phase, Remediation};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::control_plane;

/// `deploy/` (Namespace, ServiceAccount, RBAC, CRD, Deployment, Service) applied once per
/// binary, as `kubectl apply -k deploy/` would, plus the examples' mesh config in istio-system.
pub async fn install_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return;
    }
    let cp = control_plane();
    let admin = cp.admin();
    // Istio is installed first in a real cluster; deploy/ has a Role in its root namespace.
    super::ensure_namespace(&admin, "istio-system")
        .await
        .expect("istio-system");
    // The real thing: kubectl renders the kustomization and applies it.
    let out = std::process::Command::new("kubectl")
        .args(["apply", "-k", "deploy/", "--server-side", "--kubeconfig"])
        .arg(cp.kubeconfig())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl apply -k deploy/ failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mesh = super::read_yaml_documents(&super::repo_path("examples/shop/01-mesh-config.yaml"))
        .expect("mesh config");
    for doc in mesh {
        super::apply(&admin, &doc)
            .await
            .expect("mesh config applied");
    }
    let _ = DONE.set(());
}

/// An operator replica on its own thread and runtime, like a separate pod: `stop` shuts it down
/// gracefully (it releases the lease), `kill` drops its runtime mid-flight (it does not).
pub struct Replica {
    /// Where its /metrics, /healthz and /readyz answer.
    pub metrics_port: u16,
    stop: watch::Sender<bool>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The apply settle time of every test operator (seconds).
pub const APPLY_SETTLE_SECONDS: u64 = 5;

impl Replica {
    pub fn start(config: Config, lease: &str, identity: &str) -> Replica {
        Replica::start_with(config, lease, identity, |_| {})
    }

    /// Starts a replica with its arguments adjusted by `adjust`.
    pub fn start_with(
        config: Config,
        lease: &str,
        identity: &str,
        adjust: impl FnOnce(&mut RunArgs),
    ) -> Replica {
        Replica::start_on(config, lease, identity, adjust, |config| {
            Client::try_from(config).expect("client")
        })
    }

    /// Starts a replica whose watches of `lag`'s resource lag behind the apiserver by what the
    /// test sets (see [`super::lag`]).
    pub fn start_lagging(
        config: Config,
        lease: &str,
        identity: &str,
        lag: super::lag::WatchLag,
    ) -> Replica {
        Replica::start_on(
            config,
            lease,
            identity,
            |_| {},
            move |config| {
                kube::client::ClientBuilder::try_from(config)
                    .expect("client")
                    .with_layer(&lag)
                    .build()
            },
        )
    }

    /// Starts a replica on the client `client` makes (inside the replica's runtime, where a
    /// client must be built).
    fn start_on(
        config: Config,
        lease: &str,
        identity: &str,
        adjust: impl FnOnce(&mut RunArgs),
        client: impl FnOnce(Config) -> Client + Send + 'static,
    ) -> Replica {
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut args = RunArgs {
            metrics_addr: ([127, 0, 0, 1], metrics_port).into(),
            log_format: LogFormat::Text,
            lease_namespace: "meshmedic".into(),
            lease_name: lease.into(),
            identity: identity.into(),
            lease_duration: 4,
            root_namespace: "istio-system".into(),
            istio_version: None,
            cluster_domain: "cluster.local".into(),
            resync_seconds: 300,
            prometheus_url: None,
            prometheus_window: "1h".into(),
            sidecar_metrics_port: None,
            full_pass_objects: 500,
            // The same for every test's operator (each watches every namespace): a test that
            // times the settle cannot be undercut by another test's operator.
            apply_settle_seconds: APPLY_SETTLE_SECONDS,
        };
        adjust(&mut args);
        let (stop, stop_rx) = watch::channel(false);
        let (kill, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let client = client(config);
                tokio::select! {
                    r = run_with(client, args, stop_rx) => if let Err(e) = r { eprintln!("operator stopped: {e}") },
                    _ = kill_rx => {}
                }
            });
            rt.shutdown_background();
        });
        Replica {
            metrics_port,
            stop,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn kill(mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }
}

/// A plain HTTP/1.1 GET on loopback: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// The shop example in a fresh namespace `ns` (its hosts rewritten to that namespace).
///
/// The namespace is opted in once every object is there: every test runs an operator watching
/// every namespace, and one that analyses a half-created shop proposes fixes for findings that
/// go away (a Service whose DestinationRule is not there yet), which tests comparing counts
/// with `analyze` would see.
pub async fn shop(admin: &Client, hint: &str, mode: Option<&str>) -> String {
    let ns = super::namespace(admin, hint).await;
    for file in super::yaml_files_under(&super::repo_path("examples/shop")) {
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
            if kind == "Namespace" || kind == "ConfigMap" {
                continue;
            }
            super::apply(admin, &doc)
                .await
                .unwrap_or_else(|e| panic!("{}: {}", file.display(), super::error_message(&e)));
        }
    }
    let mut ns_patch = json!({"metadata": {"labels": {"istio-injection": "enabled"}}});
    if let Some(mode) = mode {
        ns_patch["metadata"]["annotations"] = json!({"meshmedic.io/mode": mode});
    }
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&ns_patch))
        .await
        .expect("namespace labelled");
    ns
}

pub async fn remediations(client: &Client, ns: &str) -> Vec<Remediation> {
    Api::<Remediation>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list remediations")
        .items
}

/// Polls `check` until it returns Some, or fails the test after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Like `eventually`, but `check` says what it saw each time it is not yet satisfied, and a
/// timeout shows the last of it: a failure on a slower machine then says what was missing.
pub async fn eventually_showing<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let seen = match check().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last seen:\n{seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn phase(r: &Remediation) -> Phase {
    r.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// Whether a Remediation answers `code` (its main code or any of its causes).
pub fn answers(r: &Remediation, code: &str) -> bool {
    r.spec.code.as_str() == code || r.spec.causes.iter().any(|c| c.code.as_str() == code)
}

pub async fn remediation_for(client: &Client, ns: &str, code: &str, kind: &str) -> Remediation {
    eventually(
        Duration::from_secs(30),
        &format!("a {code} Remediation for a {kind}"),
        || async {
            remediations(client, ns)
                .await
                .into_iter()
                .find(|r| answers(r, code) && r.spec.target.kind == kind && r.status.is_some())
        },
    )
    .await
}

pub async fn get_remediation(client: &Client, ns: &str, name: &str) -> Remediation {
    Api::<Remediation>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get remediation")
}

/// Approves a Remediation's current plan as `meshmedic approve` does (digest shown, then
/// approved with a resourceVersion precondition). Returns the digest approved.
pub async fn approve(client: &Client, ns: &str, name: &str) -> String {
    let out = meshmedic::cli::approve::approve(client, ns, name, None, false)
        .await
        .unwrap_or_else(|e| panic!("approve {ns}/{name}: {e}"));
    out.lines()
        .last()
        .and_then(|l| l.strip_prefix("approved "))
        .unwrap_or_else(|| panic!("approve printed no digest:\n{out}"))
        .to_string()
}

/// The Ready (or another) condition's reason.
pub fn reason(r: &Remediation, type_: &str) -> Option<String> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.clone())
}

pub async fn set_spec(client: &Client, ns: &str, name: &str, spec: Value) {
    Api::<Remediation>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
        .expect("reviewer edits the Remediation");
}

pub async fn wait_phase(client: &Client, ns: &str, name: &str, want: Phase) -> Remediation {
    eventually(
        Duration::from_secs(30),
        &format!("{name} to be {want:?}"),
        || async {
            let r = Api::<Remediation>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .ok()?;
            (phase(&r) == want).then_some(r)
        },
    )
    .await
}

pub async fn get_target(client: &Client, r: &Remediation) -> DynamicObject {
    let t = &r.spec.target;
    let (api, _, _) = super::dynamic_api(client, &t.api_version, &t.kind, Some(&t.namespace))
        .await
        .expect("api");
    api.get(&t.name).await.expect("target")
}

/// The Remediation for `kind/name` in `ns`, once it is published with a status.
pub async fn find(admin: &Client, ns: &str, kind: &str, name: &str) -> Remediation {
    eventually(
        Duration::from_secs(60),
        &format!("the Remediation for {kind}/{name}"),
        || async {
            remediations(admin, ns).await.into_iter().find(|r| {
                r.spec.target.kind == kind
                    && r.spec.target.name == name
                    && r.spec.plan_digest.is_some()
                    && r.status.is_some()
            })
        },
    )
    .await
}

/// Polls the Remediation `ns/name` until `check` holds; a timeout shows it as it stands.
pub async fn wait_within(
    admin: &Client,
    ns: &str,
    name: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&Remediation) -> bool,
) -> Remediation {
    // Not `eventually`: on a timeout, the Remediation as it stands says why.
    let deadline = std::time::Instant::now() + within;
    loop {
        let r = get_remediation(admin, ns, name).await;
        if check(&r) {
            return r;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "timed out after {}s waiting for {what}; {ns}/{name} is:\n{}",
                within.as_secs(),
                serde_json::to_string_pretty(&json!({"spec": r.spec, "status": r.status}))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// nginx closes idle connections after 65s and no rule says otherwise: meshmedic creates
/// `gallery-idle-timeout`.
pub async fn nginx_gallery(admin: &Client, ns: &str) {
    app(admin, ns, "gallery", ("nginx", "nginx:1.27"), 80).await;
}

/// A Deployment `name` of one container (`(name, image)`) listening on `port`, behind a
/// Service `name` whose port `http` is that port.
pub async fn app(admin: &Client, ns: &str, name: &str, container: (&str, &str), port: u16) {
    for doc in [
        object(
            ns,
            "Deployment",
            "apps/v1",
            name,
            json!({"selector": {"matchLabels": {"app": name}},
                   "template": {"metadata": {"labels": {"app": name}},
                                "spec": {"containers": [{"name": container.0, "image": container.1,
                                                         "ports": [{"containerPort": port}]}]}}}),
        ),
        object(
            ns,
            "Service",
            "v1",
            name,
            json!({"selector": {"app": name},
                   "ports": [{"name": "http", "port": port, "targetPort": port}]}),
        ),
    ] {
        super::apply(admin, &doc).await.expect("applied");
    }
}

/// A namespaced object with a `spec`, as JSON.
pub fn object(ns: &str, kind: &str, api_version: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind,
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Waits until the API server serves the CRD `name`: condition Established, and then a list of
/// its objects at every served version answers. Established comes a moment before the
/// resource's handler does; a create in between got `404 page not found` (seen once in CI, on
/// the Rollout test).
pub async fn crd_established(admin: &Client, name: &str) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd = eventually(
        Duration::from_secs(30),
        &format!("the CRD {name} established"),
        || async {
            let crd = crds.get_opt(name).await.ok()??;
            crd.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(crd)
        },
    )
    .await;
    for version in crd.spec.versions.iter().filter(|v| v.served) {
        let path = format!(
            "/apis/{}/{}/{}?limit=1",
            crd.spec.group, version.name, crd.spec.names.plural
        );
        eventually(
            Duration::from_secs(30),
            &format!("{path} served"),
            || async {
                let request = http::Request::get(path.as_str()).body(Vec::new()).ok()?;
                admin.request_text(request).await.ok().map(|_| ())
            },
        )
        .await;
    }
}

/// Installs the CRD in the file the environment variable `var` names (set by
/// `scripts/k8s-test-env.sh`) and waits until `name` is served.
pub async fn install_crd_from_env(admin: &Client, var: &str, name: &str) {
    let path = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} (run: eval \"$(scripts/k8s-test-env.sh)\")"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (_, crd) in meshmedic::snapshot::load::parse_documents(&path, &text).expect("yaml") {
        super::apply(admin, &crd).await.expect("CRD applied");
    }
    crd_established(admin, name).await;
}

/// Merge-patches the Namespace `ns` (labels, annotations), as `kubectl label`/`annotate` would.
pub async fn patch_namespace(admin: &Client, ns: &str, patch: Value) {
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching namespace {ns}: {e}"));
}
