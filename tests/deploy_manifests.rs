//! The manifests in `deploy/`, checked without a cluster: the Deployment meets the Pod Security
//! "restricted" profile and has requests and limits; the RBAC is least-privilege (exactly the
//! grants the controller needs, no Secrets, no wildcards, ConfigMaps only in istio-system, Leases
//! only in meshmedic). `kubectl apply -k deploy/` against a real API server is tested elsewhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use meshmedic::snapshot::load::parse_documents;
use serde_json::Value;

const NAMESPACE: &str = "meshmedic";
const SERVICE_ACCOUNT: &str = "meshmedic";
const MESH_NAMESPACE: &str = "istio-system";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The YAML files of deploy/ (sorted), kustomization.yaml excluded.
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| {
            matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

fn parse_file(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_documents(&path.display().to_string(), &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// Every object in deploy/ (the CRD comes from crds/ and is tested in tests/crd.rs).
fn objects() -> Vec<Value> {
    let objects: Vec<Value> = manifest_files()
        .iter()
        .flat_map(|p| parse_file(p))
        .collect();
    assert!(!objects.is_empty(), "deploy/ holds no objects");
    objects
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn the_one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "deploy/ should hold exactly one {kind}");
    found[0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

// ---- kustomization -------------------------------------------------------------------------

#[test]
fn kustomization_includes_every_manifest_and_the_crd() {
    let kustomization = parse_file(&deploy_dir().join("kustomization.yaml"));
    assert_eq!(kustomization.len(), 1);
    let resources = strings(&kustomization[0]["resources"]);
    for file in manifest_files() {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            resources.contains(&name),
            "deploy/kustomization.yaml does not list {name}: `kubectl apply -k deploy/` would skip it"
        );
    }
    assert!(
        resources.contains(&"../crds"),
        "deploy/kustomization.yaml must include the CRD directory ../crds"
    );
    let crds = parse_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/kustomization.yaml"));
    assert_eq!(
        strings(&crds[0]["resources"]),
        ["remediation.yaml"],
        "crds/kustomization.yaml must list remediation.yaml"
    );
}

#[test]
fn every_namespaced_object_lives_in_meshmedic_or_is_the_mesh_config_role() {
    for o in objects() {
        let kind = o["kind"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        match kind {
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" => {
                assert!(
                    o["metadata"]["namespace"].is_null(),
                    "{kind} {name} is cluster-scoped"
                )
            }
            "Role" | "RoleBinding" => {
                let ns = o["metadata"]["namespace"].as_str();
                assert!(
                    ns == Some(NAMESPACE) || ns == Some(MESH_NAMESPACE),
                    "{kind} {name} is in {ns:?}"
                )
            }
            _ => assert_eq!(
                o["metadata"]["namespace"], NAMESPACE,
                "{kind} {name} must be in namespace {NAMESPACE}"
            ),
        }
    }
}

// ---- namespace, service account, service ------------------------------------------------------

#[test]
fn namespace_enforces_pod_security_restricted() {
    let objects = objects();
    let ns = the_one(&objects, "Namespace");
    assert_eq!(ns["metadata"]["name"], NAMESPACE);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn service_account_exists() {
    let objects = objects();
    let sa = the_one(&objects, "ServiceAccount");
    assert_eq!(sa["metadata"]["name"], SERVICE_ACCOUNT);
    assert_eq!(sa["metadata"]["namespace"], NAMESPACE);
}

#[test]
fn metrics_service_selects_the_controller_pods() {
    let objects = objects();
    let service = the_one(&objects, "Service");
    let deployment = the_one(&objects, "Deployment");
    let ports = service["spec"]["ports"].as_array().expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "http-metrics" && p["port"] == 8080),
        "the Service exposes port 8080 named http-metrics"
    );
    let selector = service["spec"]["selector"].as_object().expect("selector");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&labels[k], v, "the Service selects pod label {k}={v}");
    }
}

// ---- deployment --------------------------------------------------------------------------------

fn deployment() -> Value {
    the_one(&objects(), "Deployment").clone()
}

/// Every container of the pod, init containers included, with its name.
fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod[*k].as_array())
        .flatten()
        .collect()
}

/// A container's effective security setting: the container's own, else the pod's.
fn effective<'a>(pod: &'a Value, container: &'a Value, field: &str) -> &'a Value {
    let own = &container["securityContext"][field];
    if own.is_null() {
        &pod["securityContext"][field]
    } else {
        own
    }
}

#[test]
fn deployment_shape() {
    let d = deployment();
    assert_eq!(d["metadata"]["name"], "meshmedic");
    assert_eq!(d["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        d["spec"]["replicas"], 2,
        "two replicas: a leader and a standby"
    );
    let selector = d["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector");
    for (k, v) in selector {
        assert_eq!(&d["spec"]["template"]["metadata"]["labels"][k], v);
    }
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], SERVICE_ACCOUNT);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_ne!(
        pod["automountServiceAccountToken"], false,
        "the controller needs its token"
    );

    let c = &pod["containers"][0];
    assert_eq!(pod["containers"].as_array().map(Vec::len), Some(1));
    assert_eq!(c["image"], "meshmedic:0.1.0");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        strings(&c["args"]),
        [
            "run",
            "--metrics-addr",
            "0.0.0.0:8080",
            "--log-format",
            "json"
        ]
    );
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let env = c["env"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["name"] == name))
            .unwrap_or_else(|| panic!("env {name} missing"));
        assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], field, "{name}");
    }
    let port = c["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "http-metrics"))
        .expect("port http-metrics");
    assert_eq!(port["containerPort"], 8080);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(
            get["port"] == "http-metrics" || get["port"] == 8080,
            "{probe} checks the metrics port"
        );
    }
}

/// https://kubernetes.io/docs/concepts/security/pod-security-standards/ ("Restricted", which
/// includes "Baseline").
#[test]
fn deployment_meets_pod_security_restricted() {
    let d = deployment();
    let pod = &d["spec"]["template"]["spec"];
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(
            pod[host].is_null() || pod[host] == false,
            "{host} must be unset or false: {}",
            pod[host]
        );
    }
    const ALLOWED_VOLUMES: [&str; 7] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
    ];
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let kinds: Vec<&String> = volume
            .as_object()
            .expect("volume")
            .keys()
            .filter(|k| *k != "name")
            .collect();
        assert!(
            kinds.iter().all(|k| ALLOWED_VOLUMES.contains(&k.as_str())),
            "volume {} uses {kinds:?} (no hostPath, and no Secret volumes either)",
            volume["name"]
        );
    }
    let all = containers(pod);
    assert!(!all.is_empty());
    for c in all {
        let name = c["name"].as_str().unwrap_or("?");
        assert_eq!(
            effective(pod, c, "runAsNonRoot"),
            true,
            "{name}: runAsNonRoot"
        );
        assert_eq!(effective(pod, c, "runAsUser"), 65532, "{name}: runAsUser");
        let sc = &c["securityContext"];
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{name}: allowPrivilegeEscalation"
        );
        assert_ne!(sc["privileged"], true, "{name}: privileged");
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{name}: readOnlyRootFilesystem"
        );
        assert!(
            strings(&sc["capabilities"]["drop"]).contains(&"ALL"),
            "{name}: capabilities must drop ALL"
        );
        let added = strings(&sc["capabilities"]["add"]);
        assert!(
            added.iter().all(|c| *c == "NET_BIND_SERVICE"),
            "{name}: restricted allows adding only NET_BIND_SERVICE, found {added:?}"
        );
        let seccomp = effective(pod, c, "seccompProfile");
        assert_eq!(seccomp["type"], "RuntimeDefault", "{name}: seccompProfile");
        assert!(
            c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|p| p["hostPort"].is_null() || p["hostPort"] == 0),
            "{name}: no hostPort"
        );
    }
}

#[test]
fn deployment_has_requests_and_limits() {
    let d = deployment();
    for c in containers(&d["spec"]["template"]["spec"]) {
        let name = c["name"].as_str().unwrap_or("?");
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    c["resources"][bound][resource].is_string()
                        || c["resources"][bound][resource].is_number(),
                    "{name}: resources.{bound}.{resource} must be set"
                );
            }
        }
    }
}

// ---- RBAC --------------------------------------------------------------------------------------

/// One permission: where it applies (`None` = cluster-wide), API group, resource, verb.
type Grant = (Option<String>, String, String, String);

/// Every grant the ServiceAccount actually gets: each rule of each Role/ClusterRole that a
/// binding gives to meshmedic/meshmedic, expanded to single (scope, group, resource, verb).
fn effective_grants(objects: &[Value]) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
    {
        let binds_us = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == SERVICE_ACCOUNT
                    && s["namespace"] == NAMESPACE
            });
        if !binds_us {
            continue;
        }
        let scope = (binding["kind"] == "RoleBinding").then(|| {
            binding["metadata"]["namespace"]
                .as_str()
                .expect("a RoleBinding has a namespace")
                .to_string()
        });
        let role_ref = &binding["roleRef"];
        let role = objects
            .iter()
            .find(|o| {
                o["kind"] == role_ref["kind"]
                    && o["metadata"]["name"] == role_ref["name"]
                    && (o["kind"] == "ClusterRole"
                        || o["metadata"]["namespace"] == binding["metadata"]["namespace"])
            })
            .unwrap_or_else(|| {
                panic!(
                    "binding {} refers to {} {}, which deploy/ does not define",
                    binding["metadata"]["name"], role_ref["kind"], role_ref["name"]
                )
            });
        for rule in role["rules"].as_array().expect("rules") {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        grants.insert((
                            scope.clone(),
                            group.to_string(),
                            resource.to_string(),
                            verb.to_string(),
                        ));
                    }
                }
            }
        }
    }
    grants
}

fn roles(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .collect()
}

#[test]
fn rbac_has_no_wildcards_secrets_or_escalation() {
    let objects = objects();
    for role in roles(&objects) {
        let name = format!(
            "{} {}",
            role["kind"].as_str().unwrap_or("?"),
            role["metadata"]["name"].as_str().unwrap_or("?")
        );
        assert!(
            role["aggregationRule"].is_null(),
            "{name}: no aggregation (it would pull in rules not reviewed here)"
        );
        for rule in role["rules"].as_array().expect("rules") {
            assert!(
                rule["nonResourceURLs"].is_null(),
                "{name}: no nonResourceURLs"
            );
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    strings(&rule[field]).iter().all(|s| !s.contains('*')),
                    "{name}: wildcard in {field}: {rule}"
                );
            }
            for resource in strings(&rule["resources"]) {
                assert!(
                    !resource.starts_with("secrets"),
                    "{name}: grants {resource}; meshmedic never reads Secrets"
                );
            }
            for verb in strings(&rule["verbs"]) {
                assert!(
                    !["escalate", "bind", "impersonate", "approve", "sign"].contains(&verb),
                    "{name}: grants {verb}"
                );
            }
        }
    }
}

#[test]
fn configmaps_only_in_istio_system_and_leases_only_in_meshmedic() {
    let objects = objects();
    for role in roles(&objects) {
        let name = format!(
            "{} {}",
            role["kind"].as_str().unwrap_or("?"),
            role["metadata"]["name"].as_str().unwrap_or("?")
        );
        let namespace = role["metadata"]["namespace"].as_str();
        for rule in role["rules"].as_array().expect("rules") {
            let resources = strings(&rule["resources"]);
            if resources.contains(&"configmaps") {
                assert_eq!(
                    role["kind"], "Role",
                    "{name}: configmaps never cluster-wide"
                );
                assert_eq!(namespace, Some(MESH_NAMESPACE), "{name}: configmaps");
                assert_eq!(strings(&rule["verbs"]), ["get", "list", "watch"], "{name}");
            }
            if resources.contains(&"leases") {
                assert_eq!(role["kind"], "Role", "{name}: leases never cluster-wide");
                assert_eq!(namespace, Some(NAMESPACE), "{name}: leases");
            }
        }
    }
    // And as the ServiceAccount receives them (a ClusterRole bound by a RoleBinding would pass the
    // checks above but is scoped by its binding).
    for (scope, group, resource, verb) in effective_grants(&objects) {
        if group.is_empty() && resource == "configmaps" {
            assert_eq!(scope.as_deref(), Some(MESH_NAMESPACE), "configmaps {verb}");
        }
        if group == "coordination.k8s.io" {
            assert_eq!(scope.as_deref(), Some(NAMESPACE), "{resource} {verb}");
        }
    }
}

/// Exactly what the controller needs: missing grants break it at run time, extra ones are
/// privilege nobody reviewed. Change both rbac.yaml and this table, on purpose.
#[test]
fn rbac_grants_exactly_what_the_controller_needs() {
    const READ: &[&str] = &["get", "list", "watch"];
    let cluster: &[(&str, &[&str], &[&str])] = &[
        ("", &["namespaces", "services", "pods", "nodes"], READ),
        (
            "apps",
            &["deployments", "statefulsets", "daemonsets", "replicasets"],
            READ,
        ),
        (
            "apps",
            &["deployments", "statefulsets", "daemonsets"],
            &["patch"],
        ),
        ("batch", &["jobs", "cronjobs"], READ),
        ("argoproj.io", &["rollouts"], READ),
        ("argoproj.io", &["rollouts"], &["patch"]),
        (
            "networking.istio.io",
            &[
                "destinationrules",
                "virtualservices",
                "sidecars",
                "envoyfilters",
            ],
            READ,
        ),
        (
            "networking.istio.io",
            &["destinationrules", "virtualservices", "sidecars"],
            &["create", "patch", "delete"],
        ),
        ("security.istio.io", &["peerauthentications"], READ),
        ("telemetry.istio.io", &["telemetries"], READ),
        ("gateway.networking.k8s.io", &["httproutes"], READ),
        (
            "meshmedic.io",
            &["remediations"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        (
            "meshmedic.io",
            &["remediations/status"],
            &["get", "patch", "update"],
        ),
        ("", &["events"], &["create", "patch"]),
        ("events.k8s.io", &["events"], &["create", "patch"]),
    ];
    let namespaced: &[(&str, &str, &[&str], &[&str])] = &[
        (MESH_NAMESPACE, "", &["configmaps"], READ),
        (
            NAMESPACE,
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update", "patch"],
        ),
    ];
    let mut expected: BTreeSet<Grant> = BTreeSet::new();
    let rows = cluster.iter().map(|(g, r, v)| (None, *g, *r, *v)).chain(
        namespaced
            .iter()
            .map(|(ns, g, r, v)| (Some(ns.to_string()), *g, *r, *v)),
    );
    for (scope, group, resources, verbs) in rows {
        for resource in resources {
            for verb in verbs {
                expected.insert((
                    scope.clone(),
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                ));
            }
        }
    }
    let actual = effective_grants(&objects());
    let missing: Vec<&Grant> = expected.difference(&actual).collect();
    let extra: Vec<&Grant> = actual.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "deploy/rbac.yaml differs from what the controller needs\n  missing (scope, group, resource, verb): {missing:?}\n  extra: {extra:?}"
    );
}
