//! The same binary installed as `kubectl-meshmedic` is a kubectl plugin: `kubectl meshmedic …`
//! finds it on the PATH and passes it the rest of the command line. Run through the real kubectl
//! against the real apiserver, with kubectl's `--kubeconfig`, `--context` and `-n`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use support::control_plane;
use support::operator::{Replica, eventually, install_once, remediations, shop};

/// A PATH with `kubectl-meshmedic` (a link to the test's meshmedic binary) in front.
fn plugin_path() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_meshmedic"),
        dir.path().join("kubectl-meshmedic"),
    )
    .expect("link");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (dir, path)
}

fn kubectl(path: &str, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl is installed")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn kubectl_finds_the_plugin_and_it_honours_kubectls_flags() {
    let cp = control_plane();
    let (_dir, path) = plugin_path();
    let kubeconfig: PathBuf = cp.kubeconfig().to_path_buf();

    let list = kubectl(&path, &kubeconfig, &["plugin", "list"]);
    assert!(text(&list).contains("kubectl-meshmedic"), "{}", text(&list));

    // Offline: a finding code.
    let out = kubectl(
        &path,
        &kubeconfig,
        &["meshmedic", "explain", "localhost-binding"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("binds 127.0.0.1"), "{}", text(&out));

    // From the cluster: a Remediation the operator wrote.
    install_once().await;
    let admin = cp.admin();
    let ns = shop(&admin, "plugin", Some("propose")).await;
    let replica = Replica::start(cp.meshmedic_config(), "meshmedic-plugin-test", "plugin-0");
    let name = eventually(Duration::from_secs(60), "a Remediation", || {
        let admin = admin.clone();
        let ns = ns.clone();
        async move {
            remediations(&admin, &ns)
                .await
                .into_iter()
                .find(|r| r.spec.code.as_str() == "localhost-binding")
                .and_then(|r| r.metadata.name)
        }
    })
    .await;
    let out = kubectl(
        &path,
        &kubeconfig,
        &[
            "meshmedic",
            "explain",
            &name,
            "-n",
            &ns,
            "--context",
            "admin",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    for needle in [
        "Finding:   localhost-binding (error)",
        "Target:    Sidecar",
        "Why it is a 503:",
        "Planned change (create",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing in:\n{shown}");
    }

    // Errors are plain words with kubectl's vocabulary: a missing object, an unknown context.
    let out = kubectl(
        &path,
        &kubeconfig,
        &["meshmedic", "explain", "nope", "-n", &ns],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains(&format!("no Remediation nope in namespace {ns}")),
        "{}",
        text(&out)
    );
    let out = kubectl(
        &path,
        &kubeconfig,
        &[
            "meshmedic",
            "explain",
            &name,
            "-n",
            &ns,
            "--context",
            "missing",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--context"), "{}", text(&out));

    // analyze --cluster, approve (the diff shown, then exactly that plan), rollback.
    let out = kubectl(
        &path,
        &kubeconfig,
        &[
            "meshmedic",
            "analyze",
            "--cluster",
            "-n",
            &ns,
            "--context",
            "admin",
        ],
    );
    assert!(text(&out).contains("localhost-binding"), "{}", text(&out));
    let out = kubectl(
        &path,
        &kubeconfig,
        &["meshmedic", "approve", &name, "-n", &ns],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("+++ Sidecar") && shown.contains("approved sha256:"),
        "{shown}"
    );
    let sidecar = Api::<DynamicObject>::namespaced_with(
        cp.admin(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "Sidecar",
        )),
    );
    eventually(Duration::from_secs(30), "the approved Sidecar", || async {
        sidecar
            .list(&Default::default())
            .await
            .ok()
            .filter(|l| !l.items.is_empty())
    })
    .await;
    let out = kubectl(
        &path,
        &kubeconfig,
        &["meshmedic", "rollback", &name, "-n", &ns],
    );
    assert!(out.status.success(), "{}", text(&out));
    eventually(
        Duration::from_secs(30),
        "the Sidecar deleted by the rollback",
        || async {
            sidecar
                .list(&Default::default())
                .await
                .ok()
                .filter(|l| l.items.is_empty())
        },
    )
    .await;
    replica.stop();
}
