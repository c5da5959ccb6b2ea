//! A real Kubernetes control plane for meshmedic's integration tests.
//!
//! Every integration test file does `mod support;` and calls [`control_plane()`]. The first call
//! in a test binary starts etcd and kube-apiserver (built by `scripts/k8s-test-env.sh`, found
//! through `MESHMEDIC_ETCD` and `MESHMEDIC_KUBE_APISERVER`) on free loopback ports in a fresh
//! temporary directory, with RBAC authorization on, waits for `/readyz`, installs Istio's CRDs
//! (`MESHMEDIC_ISTIO_CRDS`) and every YAML file in the repository's `crds/`, and waits until they
//! are Established. Later calls return the same control plane: one per test binary. Tests keep
//! out of each other's way by working in their own namespace ([`namespace`]).
//!
//! Identities (static bearer tokens, made anew for each run):
//! - [`ControlPlane::admin`]: user `meshmedic-test-admin` in `system:masters`;
//! - [`ControlPlane::meshmedic`]: user `system:serviceaccount:meshmedic:meshmedic` with the groups
//!   Kubernetes gives that ServiceAccount, so that only the RBAC in `deploy/` grants it anything;
//! - [`ControlPlane::impersonating`]: any user and groups, through the admin's impersonation.
//!
//! Each `#[tokio::test]` has a runtime of its own, and a kube `Client` lives on the runtime it was
//! built in, so the control plane keeps only a `Config` and builds a fresh `Client` per call:
//! call these from inside the test's runtime.
//!
//! No process outlives the test binary: both children are started from a thread that lives as
//! long as the test process, with `PR_SET_PDEATHSIG` = SIGKILL, so the kernel kills them when the
//! test process ends in any way (normal exit, panic, abort, SIGKILL). On a normal exit an
//! `atexit` handler also kills and reaps them and removes the temporary directory; a directory
//! left by a killed run is removed by the next run. `MESHMEDIC_TEST_KEEP_DIR=1` keeps the
//! directory (logs, kubeconfig) for a look after the run.
#![allow(dead_code)] // each test binary uses a part of this module

pub mod lag;
pub mod operator;

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::AuthInfo;
use kube::core::GroupVersionKind;
use kube::discovery::{self, ApiResource, Scope};
use kube::{Client, Config};
use serde_json::{Value, json};

/// The field manager of everything the test support writes.
pub const FIELD_MANAGER: &str = "meshmedic-tests";
/// The admin user (group `system:masters`).
pub const ADMIN_USER: &str = "meshmedic-test-admin";
/// The user name Kubernetes gives meshmedic's ServiceAccount `meshmedic/meshmedic`.
pub const MESHMEDIC_USER: &str = "system:serviceaccount:meshmedic:meshmedic";
/// The groups Kubernetes gives that ServiceAccount.
pub const MESHMEDIC_GROUPS: [&str; 3] = [
    "system:serviceaccounts",
    "system:serviceaccounts:meshmedic",
    "system:authenticated",
];

const ENV_APISERVER: &str = "MESHMEDIC_KUBE_APISERVER";
const ENV_ETCD: &str = "MESHMEDIC_ETCD";
const ENV_ISTIO_CRDS: &str = "MESHMEDIC_ISTIO_CRDS";
const ENV_KEEP_DIR: &str = "MESHMEDIC_TEST_KEEP_DIR";
const DIR_PREFIX: &str = "meshmedic-k8s-";
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const START_ATTEMPTS: u32 = 3;

/// A running etcd + kube-apiserver, shared by the tests of one test binary.
pub struct ControlPlane {
    url: http::Uri,
    ca_der: Vec<u8>,
    admin_token: String,
    meshmedic_token: String,
    dir: PathBuf,
    kubeconfig: PathBuf,
    pids: Vec<u32>,
}

impl ControlPlane {
    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &http::Uri {
        &self.url
    }

    /// The directory with the logs (`etcd.log`, `kube-apiserver.log`), keys and kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kubeconfig for the admin, e.g. for `kubectl --kubeconfig` while debugging a test.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Process ids of etcd and kube-apiserver.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    fn base_config(&self) -> Config {
        let mut config = Config::new(self.url.clone());
        config.root_cert = Some(vec![self.ca_der.clone()]);
        config.read_timeout = Some(Duration::from_secs(60));
        config.reset_reader_on_write = true;
        config
    }

    /// A client `Config` that authenticates with `token`.
    pub fn config_with_token(&self, token: &str) -> Config {
        let mut config = self.base_config();
        config.auth_info = AuthInfo {
            token: Some(token.to_string().into()),
            ..AuthInfo::default()
        };
        config
    }

    /// The admin's client `Config` (group `system:masters`).
    pub fn admin_config(&self) -> Config {
        self.config_with_token(&self.admin_token)
    }

    /// The client `Config` of meshmedic's ServiceAccount identity.
    pub fn meshmedic_config(&self) -> Config {
        self.config_with_token(&self.meshmedic_token)
    }

    /// A client for the admin. Call from inside the test's tokio runtime.
    pub fn admin(&self) -> Client {
        client(self.admin_config())
    }

    /// A client for `system:serviceaccount:meshmedic:meshmedic`. Call from inside the test's
    /// tokio runtime.
    pub fn meshmedic(&self) -> Client {
        client(self.meshmedic_config())
    }

    /// A client acting as `user` in `groups`, by the admin's impersonation.
    pub fn impersonating(&self, user: &str, groups: &[&str]) -> Client {
        let mut config = self.admin_config();
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        client(config)
    }
}

fn client(config: Config) -> Client {
    Client::try_from(config).expect("a kube Client from the test control plane's Config")
}

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());
static RUN_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The test binary's control plane, started on first use (that call blocks while it starts,
/// some seconds). Panics with the reason if it cannot start, e.g. when
/// `scripts/k8s-test-env.sh` has not provided the binaries.
pub fn control_plane() -> &'static ControlPlane {
    let started = CONTROL_PLANE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel();
        // The children's PR_SET_PDEATHSIG fires when the thread that forked them ends, so they
        // are forked from this thread, which stays (parked) until the process ends.
        std::thread::Builder::new()
            .name("meshmedic-control-plane".into())
            .spawn(move || {
                let started = Instant::now();
                let result = start_with_retries();
                if let Ok(cp) = &result {
                    eprintln!(
                        "test control plane: kube-apiserver at {} ready with CRDs in {:.1}s (files in {})",
                        cp.url,
                        started.elapsed().as_secs_f64(),
                        cp.dir.display()
                    );
                }
                let _ = sender.send(result);
                loop {
                    std::thread::park();
                }
            })
            .expect("a thread for the test control plane");
        receiver
            .recv()
            .unwrap_or_else(|_| Err("the control-plane thread ended without an answer".into()))
    });
    match started {
        Ok(control_plane) => control_plane,
        Err(message) => panic!("the test control plane did not start: {message}"),
    }
}

fn start_with_retries() -> Result<ControlPlane, String> {
    let binaries = Binaries::from_env()?;
    remove_stale_dirs();
    // SAFETY: registering a plain `extern "C" fn` with no captured state.
    if unsafe { libc::atexit(stop_children_at_exit) } != 0 {
        return Err("atexit() refused the clean-up handler".into());
    }
    let mut errors = Vec::new();
    for attempt in 1..=START_ATTEMPTS {
        match start(&binaries) {
            Ok(control_plane) => return Ok(control_plane),
            Err(e) => {
                kill_children();
                // A free port that someone else took between our probe and the child's bind
                // is worth another try on new ports; anything else would fail again.
                let port_taken = e.contains("address already in use");
                errors.push(format!("attempt {attempt}: {e}"));
                if !port_taken {
                    break;
                }
            }
        }
    }
    Err(errors.join("\n\n"))
}

struct Binaries {
    kube_apiserver: PathBuf,
    etcd: PathBuf,
    istio_crds: PathBuf,
}

impl Binaries {
    fn from_env() -> Result<Self, String> {
        let get = |name: &str| -> Result<PathBuf, String> {
            match std::env::var_os(name) {
                Some(value) if !value.is_empty() => {
                    let path = PathBuf::from(value);
                    if path.is_file() {
                        Ok(path)
                    } else {
                        Err(format!(
                            "{name}={} is not a file; run `eval \"$(scripts/k8s-test-env.sh)\"` again",
                            path.display()
                        ))
                    }
                }
                _ => Err(format!(
                    "{name} is not set. The integration tests run against a real kube-apiserver \
                     and etcd built by the project: run `eval \"$(scripts/k8s-test-env.sh)\"` \
                     in this shell first (the first run builds them, minutes; later runs reuse \
                     the cache), then run the tests again"
                )),
            }
        };
        Ok(Self {
            kube_apiserver: get(ENV_APISERVER)?,
            etcd: get(ENV_ETCD)?,
            istio_crds: get(ENV_ISTIO_CRDS)?,
        })
    }
}

fn start(binaries: &Binaries) -> Result<ControlPlane, String> {
    let dir = tempfile::Builder::new()
        .prefix(DIR_PREFIX)
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?
        .keep();
    RUN_DIRS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(dir.clone());
    write(
        &dir.join("owner.pid"),
        std::process::id().to_string().as_bytes(),
    )?;

    let pki = Pki::generate(&dir)?;
    let [etcd_client_port, etcd_peer_port, apiserver_port] = free_ports()?;

    let etcd_client = format!("http://127.0.0.1:{etcd_client_port}");
    let etcd_peer = format!("http://127.0.0.1:{etcd_peer_port}");
    let mut etcd = Command::new(&binaries.etcd);
    etcd.args([
        "--name=meshmedic-test",
        &format!("--data-dir={}", dir.join("etcd").display()),
        &format!("--listen-client-urls={etcd_client}"),
        &format!("--advertise-client-urls={etcd_client}"),
        &format!("--listen-peer-urls={etcd_peer}"),
        &format!("--initial-advertise-peer-urls={etcd_peer}"),
        &format!("--initial-cluster=meshmedic-test={etcd_peer}"),
        // Throwaway data: no fsync makes writes fast on a small machine.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]);
    let etcd_pid = spawn(etcd, &dir.join("etcd.log"))?;

    let mut apiserver = Command::new(&binaries.kube_apiserver);
    apiserver.args([
        &format!("--etcd-servers={etcd_client}"),
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        // The `kubernetes` Service's endpoints would have to name a non-loopback address, which
        // this machine-local control plane has no use for.
        "--endpoint-reconciler-type=none",
        &format!("--secure-port={apiserver_port}"),
        &format!("--cert-dir={}", dir.join("certs").display()),
        &format!("--tls-cert-file={}", pki.serving_cert.display()),
        &format!("--tls-private-key-file={}", pki.serving_key.display()),
        &format!("--token-auth-file={}", pki.tokens.display()),
        "--authorization-mode=RBAC",
        "--anonymous-auth=false",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        &format!(
            "--service-account-key-file={}",
            pki.service_account_public_key.display()
        ),
        &format!(
            "--service-account-signing-key-file={}",
            pki.service_account_key.display()
        ),
        "--service-cluster-ip-range=10.0.0.0/24",
        // No controller-manager runs here to create each namespace's `default`
        // ServiceAccount, which this admission plugin would demand of every Pod.
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
        "--profiling=false",
    ]);
    let apiserver_pid = spawn(apiserver, &dir.join("kube-apiserver.log"))?;

    let control_plane = ControlPlane {
        url: format!("https://127.0.0.1:{apiserver_port}")
            .parse()
            .map_err(|e| format!("API server URL: {e}"))?,
        ca_der: pki.ca_der,
        admin_token: pki.admin_token,
        meshmedic_token: pki.meshmedic_token,
        kubeconfig: dir.join("kubeconfig"),
        dir: dir.clone(),
        pids: vec![etcd_pid, apiserver_pid],
    };
    write_kubeconfig(&control_plane)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime
        .block_on(prepare(&control_plane, &binaries.istio_crds))
        .map_err(|e| format!("{e}\n{}", log_tails(&dir)))?;
    Ok(control_plane)
}

/// Waits for `/readyz`, then installs the CRDs and waits for them to be Established.
async fn prepare(control_plane: &ControlPlane, istio_crds: &Path) -> Result<(), String> {
    let client = control_plane.admin();
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error;
    loop {
        if let Some(exited) = exited_child() {
            return Err(format!("{exited} before the API server was ready"));
        }
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        match client.request_text(request).await {
            Ok(body) if body.trim() == "ok" => break,
            Ok(body) => last_error = body,
            Err(e) => last_error = e.to_string(),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "kube-apiserver not ready after {READY_TIMEOUT:?}: {last_error}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut files = vec![istio_crds.to_path_buf()];
    files.extend(yaml_files_under(&repo_path("crds")));
    let mut names = Vec::new();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for file in &files {
        // crds/ also holds its kustomization.yaml: only CRDs are installed.
        for crd in read_yaml_documents(file)?
            .into_iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
        {
            let name = crd["metadata"]["name"]
                .as_str()
                .ok_or_else(|| format!("{}: a CRD without metadata.name", file.display()))?
                .to_string();
            crds.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .map_err(|e| format!("installing CRD {name} from {}: {e}", file.display()))?;
            names.push(name);
        }
    }
    for name in &names {
        loop {
            let crd = crds
                .get(name)
                .await
                .map_err(|e| format!("reading CRD {name}: {e}"))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "CRD {name} not Established after {READY_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Starts `command` with its output in `log`, set to be killed when this process ends.
fn spawn(mut command: Command, log: &Path) -> Result<u32, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let parent = std::process::id() as libc::pid_t;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env_remove("KUBECONFIG");
    // SAFETY: the closure runs in the forked child before exec and calls only prctl, getppid
    // and _exit, which are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then nothing would kill us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("starting {program}: {e}"))?;
    let pid = child.id();
    CHILDREN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(child);
    Ok(pid)
}

/// Describes a child that has exited, if any.
fn exited_child() -> Option<String> {
    let mut children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    children
        .iter_mut()
        .find_map(|child| match child.try_wait() {
            Ok(Some(status)) => Some(format!("process {} exited ({status})", child.id())),
            _ => None,
        })
}

fn kill_children() {
    let mut children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    // kube-apiserver first, then etcd.
    for mut child in children.drain(..).rev() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

extern "C" fn stop_children_at_exit() {
    kill_children();
    if std::env::var_os(ENV_KEEP_DIR).is_none() {
        for dir in RUN_DIRS.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Removes the directories of earlier runs whose test process is gone (killed before its
/// atexit handler ran).
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        if !is_ours {
            continue;
        }
        let owner = fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if owner.is_some() && !alive {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// Three distinct free loopback ports (held together while choosing, so they differ).
fn free_ports() -> Result<[u16; 3], String> {
    let listeners = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| format!("finding a free port: {e}"))?;
    let mut ports = [0u16; 3];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
    }
    Ok(ports)
}

/// The keys and certificates kube-apiserver needs, made fresh for each run with rcgen.
struct Pki {
    ca_der: Vec<u8>,
    ca_pem: String,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    service_account_key: PathBuf,
    service_account_public_key: PathBuf,
    tokens: PathBuf,
    admin_token: String,
    meshmedic_token: String,
}

impl Pki {
    fn generate(dir: &Path) -> Result<Self, String> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let err = |e: rcgen::Error| format!("generating test certificates: {e}");
        let pki = dir.join("pki");
        fs::create_dir_all(&pki).map_err(|e| format!("{}: {e}", pki.display()))?;

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "meshmedic test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?)
            .map_err(err)?;

        let serving_key = KeyPair::generate().map_err(err)?;
        let mut serving_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .map_err(err)?;
        serving_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving_params.signed_by(&serving_key, &ca).map_err(err)?;

        // Signs (and, as its public half, verifies) ServiceAccount tokens. ECDSA P-256.
        let service_account_key = KeyPair::generate().map_err(err)?;

        let admin_token = random_token()?;
        let meshmedic_token = random_token()?;
        // token,user,uid,"group1,group2"
        let tokens = format!(
            "{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n\
             {meshmedic_token},{MESHMEDIC_USER},meshmedic-sa-uid,\"{}\"\n",
            MESHMEDIC_GROUPS.join(",")
        );

        let out = Self {
            ca_der: ca.der().to_vec(),
            ca_pem: ca.pem(),
            serving_cert: pki.join("serving.crt"),
            serving_key: pki.join("serving.key"),
            service_account_key: pki.join("service-account.key"),
            service_account_public_key: pki.join("service-account.pub"),
            tokens: pki.join("tokens.csv"),
            admin_token,
            meshmedic_token,
        };
        write(&pki.join("ca.crt"), out.ca_pem.as_bytes())?;
        write(
            &out.serving_cert,
            format!("{}{}", serving_cert.pem(), ca.pem()).as_bytes(),
        )?;
        write(&out.serving_key, serving_key.serialize_pem().as_bytes())?;
        write(
            &out.service_account_key,
            service_account_key.serialize_pem().as_bytes(),
        )?;
        // kube-apiserver reads a PKCS#8 private key for signing, but verifies only with a
        // public key (or an RSA/EC private key in the older formats).
        write(
            &out.service_account_public_key,
            service_account_key.public_key_pem().as_bytes(),
        )?;
        write(&out.tokens, tokens.as_bytes())?;
        Ok(out)
    }
}

fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write(path: &Path, contents: &[u8]) -> Result<(), String> {
    let mut file = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write_kubeconfig(control_plane: &ControlPlane) -> Result<(), String> {
    let ca = control_plane.dir.join("pki").join("ca.crt");
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "meshmedic-test", "cluster": {
            "server": control_plane.url.to_string(),
            "certificate-authority": ca,
        }}],
        "users": [
            {"name": "admin", "user": {"token": control_plane.admin_token}},
            {"name": "meshmedic", "user": {"token": control_plane.meshmedic_token}},
        ],
        "contexts": [
            {"name": "admin", "context": {"cluster": "meshmedic-test", "user": "admin"}},
            {"name": "meshmedic", "context": {"cluster": "meshmedic-test", "user": "meshmedic"}},
        ],
        "current-context": "admin",
    });
    // JSON is YAML: kubectl reads it as a kubeconfig.
    write(&control_plane.kubeconfig, kubeconfig.to_string().as_bytes())
}

fn log_tails(dir: &Path) -> String {
    ["etcd.log", "kube-apiserver.log"]
        .iter()
        .map(|name| {
            let text = fs::read_to_string(dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(25)..].join("\n");
            format!("--- last lines of {} ---\n{tail}", dir.join(name).display())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Helpers for tests

/// A path in the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Every `*.yaml` / `*.yml` file under `dir`, recursively, sorted; none if `dir` is missing.
pub fn yaml_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The non-empty documents of a (multi-document) YAML file.
pub fn read_yaml_documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let documents: Vec<Option<Value>> =
        serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(documents
        .into_iter()
        .flatten()
        .filter(|d| !d.is_null())
        .collect())
}

/// Objects from `dir` (recursively), Namespaces and CRDs first so the rest can land.
pub fn manifests_under(dir: &Path) -> Vec<(String, Value)> {
    let mut objects = Vec::new();
    for file in yaml_files_under(dir) {
        let documents = read_yaml_documents(&file).unwrap_or_else(|e| panic!("{e}"));
        for document in documents {
            objects.push((file.display().to_string(), document));
        }
    }
    let rank = |obj: &Value| match obj["kind"].as_str() {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    };
    objects.sort_by_key(|(_, obj)| rank(obj));
    objects
}

/// Server-side applies every object under `dir`, each in its own namespace (created if
/// missing) or, without one, in `default_namespace`. Returns what failed.
pub async fn apply_all(client: &Client, dir: &Path, default_namespace: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut applied = 0;
    for (file, mut obj) in manifests_under(dir) {
        let kind = obj["kind"].as_str().unwrap_or("?").to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("?").to_string();
        let (_, _, namespaced) = match dynamic_api(
            client,
            obj["apiVersion"].as_str().unwrap_or_default(),
            &kind,
            None,
        )
        .await
        {
            Ok(found) => found,
            Err(e) => {
                failures.push(format!("{file}: {kind} {name}: {}", error_message(&e)));
                continue;
            }
        };
        if namespaced {
            let ns = match obj["metadata"]["namespace"].as_str() {
                Some(ns) => ns.to_string(),
                None => default_namespace.to_string(),
            };
            ensure_namespace(client, &ns)
                .await
                .expect("creating the object's namespace");
            obj["metadata"]["namespace"] = json!(ns);
        }
        match apply(client, &obj).await {
            Ok(_) => applied += 1,
            Err(e) => failures.push(format!("{file}: {kind} {name}: {}", error_message(&e))),
        }
    }
    eprintln!("applied {applied} objects from {}", dir.display());
    failures
}

/// Creates a namespace named after `hint` plus a server-chosen suffix and returns its name.
pub async fn namespace(client: &Client, hint: &str) -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let mut base: String = hint
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    base.truncate(40);
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "test" } else { base };
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {
            "generateName": format!("{base}-{n}-"),
            "labels": {"meshmedic.io/test": "true"},
        }
    }))
    .expect("a Namespace");
    let created = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating the test namespace");
    created
        .metadata
        .name
        .expect("a created namespace has a name")
}

/// Makes sure the namespace `name` exists (for objects that name their own namespace).
pub async fn ensure_namespace(client: &Client, name: &str) -> Result<(), kube::Error> {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("a Namespace");
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The API of `api_version`/`kind` (found by discovery), in `namespace` when namespaced.
/// Returns the API and whether the kind is namespaced.
pub async fn dynamic_api(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Result<(Api<DynamicObject>, ApiResource, bool), kube::Error> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let (resource, capabilities) =
        discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await?;
    let namespaced = capabilities.scope == Scope::Namespaced;
    let api = match (namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (true, None) => Api::default_namespaced_with(client.clone(), &resource),
        (false, _) => Api::all_with(client.clone(), &resource),
    };
    Ok((api, resource, namespaced))
}

/// `(apiVersion, kind, name, namespace)` of an object; panics (naming it) if one is missing.
fn object_identity(obj: &Value) -> (&str, &str, &str, Option<&str>) {
    fn field<'a>(obj: &Value, value: &'a Value, what: &str) -> &'a str {
        value
            .as_str()
            .unwrap_or_else(|| panic!("object without {what}: {obj}"))
    }
    (
        field(obj, &obj["apiVersion"], "apiVersion"),
        field(obj, &obj["kind"], "kind"),
        field(obj, &obj["metadata"]["name"], "metadata.name"),
        obj["metadata"]["namespace"].as_str(),
    )
}

async fn server_side_apply(
    client: &Client,
    obj: &Value,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let (api_version, kind, name, namespace) = object_identity(obj);
    let (api, _, _) = dynamic_api(client, api_version, kind, namespace).await?;
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.dry_run = dry_run;
    api.patch(name, &params, &Patch::Apply(obj)).await
}

/// Server-side applies `obj` (created, or updated with this field manager's ownership forced).
/// A namespaced object without `metadata.namespace` goes to `default`.
pub async fn apply(client: &Client, obj: &Value) -> Result<DynamicObject, kube::Error> {
    server_side_apply(client, obj, false).await
}

/// Server-side apply with `dryRun=All`: the API server runs defaulting, the CRD's OpenAPI
/// schema, its CEL rules and admission on `obj`, and stores nothing. Ownership is forced, so a
/// field another manager owns is no conflict: only validity is judged.
pub async fn dry_run_apply(client: &Client, obj: &Value) -> Result<DynamicObject, kube::Error> {
    server_side_apply(client, obj, true).await
}

/// What a patch or a new object is for: `{apiVersion, kind, namespace, name}`, as in
/// `meshmedic analyze -o json`'s `remediation.target`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
}

/// Sends the RFC 6902 JSON patch `patch` (a JSON array of operations) to `target` with
/// `dryRun=All` and returns the object as it would be stored. A failing `test` operation, a
/// schema or CEL violation, or a missing target comes back as the API server's error; a
/// `patch` that is no list of RFC 6902 operations, as `kube::Error::SerdeError`.
pub async fn dry_run_json_patch(
    client: &Client,
    target: &Target,
    patch: &Value,
) -> Result<DynamicObject, kube::Error> {
    json_patch_request(client, target, patch, true).await
}

/// Sends the RFC 6902 JSON patch `patch` to `target` for real.
pub async fn json_patch(
    client: &Client,
    target: &Target,
    patch: &Value,
) -> Result<DynamicObject, kube::Error> {
    json_patch_request(client, target, patch, false).await
}

async fn json_patch_request(
    client: &Client,
    target: &Target,
    patch: &Value,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let namespace = target.namespace.as_deref().unwrap_or("default");
    let (api, _, _) =
        dynamic_api(client, &target.api_version, &target.kind, Some(namespace)).await?;
    let operations: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(kube::Error::SerdeError)?;
    let mut params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    params.dry_run = dry_run;
    api.patch(&target.name, &params, &Patch::Json::<()>(operations))
        .await
}

/// The API server's message for a rejected request, for assertions and failure messages.
pub fn error_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({}): {}", status.reason, status.code, status.message)
        }
        other => other.to_string(),
    }
}
