//! Which GitOps tool owns an object, read from the labels and annotations each tool writes, or
//! which controller generates it (its controlling owner reference). A live patch of such an
//! object is reverted by the tool's next sync or the controller's next reconcile (or starts a tug
//! of war with it), so the fix belongs in the source and the operator only proposes it.

use std::collections::BTreeMap;
use std::fmt;

/// The tool that applied an object, with what names the source to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitOpsOwner {
    /// `argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>`, Argo CD's
    /// default tracking since 3.0 (`<app-namespace>_<app>` for apps in other namespaces), or the
    /// custom tracking label `argocd.argoproj.io/instance`.
    ArgoCd { application: String },
    /// `kustomize.toolkit.fluxcd.io/name` and `/namespace` labels.
    FluxKustomization {
        name: String,
        namespace: Option<String>,
    },
    /// `helm.toolkit.fluxcd.io/name` and `/namespace` labels.
    FluxHelmRelease {
        name: String,
        namespace: Option<String>,
    },
    /// `app.kubernetes.io/managed-by: Helm`, release from `meta.helm.sh/release-name`.
    Helm {
        release: Option<String>,
        namespace: Option<String>,
    },
    /// An owner reference with `controller: true`: another controller generates the object from
    /// its own resource (Flagger's Canary its VirtualServices, DestinationRules and primary
    /// Deployment; Knative's Ingress its VirtualServices and Revision its Deployment; an
    /// operator's custom resource its Deployments) and writes it back on its next reconcile.
    Controller {
        api_version: String,
        kind: String,
        name: String,
    },
}

impl GitOpsOwner {
    /// Where the change belongs, in words for a Remediation's condition.
    pub fn advice(&self) -> &'static str {
        match self {
            GitOpsOwner::ArgoCd { .. } => {
                "change the manifest in the Application's source repository; Argo CD reverts a live patch on its next sync"
            }
            GitOpsOwner::FluxKustomization { .. } | GitOpsOwner::FluxHelmRelease { .. } => {
                "change the source Flux applies (Git repository or chart values); Flux reverts a live patch on its next reconciliation"
            }
            GitOpsOwner::Helm { .. } => {
                "change the chart or its values and upgrade the release; the next `helm upgrade` overwrites a live patch"
            }
            GitOpsOwner::Controller { .. } => {
                "change the resource that generates it (a Flagger Canary's `service.retries`, a Knative Service's annotations, the operator's custom resource); its controller rewrites a live patch"
            }
        }
    }
}

fn qualified(namespace: &Option<String>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

impl fmt::Display for GitOpsOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitOpsOwner::ArgoCd { application } => write!(f, "Argo CD Application {application}"),
            GitOpsOwner::FluxKustomization { name, namespace } => {
                write!(f, "Flux Kustomization {}", qualified(namespace, name))
            }
            GitOpsOwner::FluxHelmRelease { name, namespace } => {
                write!(f, "Flux HelmRelease {}", qualified(namespace, name))
            }
            GitOpsOwner::Helm { release, namespace } => match release {
                Some(r) => write!(f, "Helm release {}", qualified(namespace, r)),
                None => write!(f, "Helm (app.kubernetes.io/managed-by: Helm)"),
            },
            GitOpsOwner::Controller {
                api_version,
                kind,
                name,
            } => write!(f, "the controller of {kind} {name} ({api_version})"),
        }
    }
}

/// The owner of an object, if a GitOps tool or Helm applied it. Flux is checked before Helm,
/// since a Flux HelmRelease's objects carry Helm's labels too. The plain `app.kubernetes.io/instance`
/// label alone is not taken as Argo CD's: Helm charts and many manifests set it as well.
pub fn owner(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Option<GitOpsOwner> {
    let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
    if let Some(id) = annotations.get("argocd.argoproj.io/tracking-id") {
        // `<app>:<group>/<kind>:<namespace>/<name>`: the application is before the first `:`.
        let application = id.split(':').next().unwrap_or(id).replace('_', "/");
        return Some(GitOpsOwner::ArgoCd { application });
    }
    if let Some(application) = label("argocd.argoproj.io/instance") {
        return Some(GitOpsOwner::ArgoCd { application });
    }
    if let Some(name) = label("kustomize.toolkit.fluxcd.io/name") {
        return Some(GitOpsOwner::FluxKustomization {
            name,
            namespace: label("kustomize.toolkit.fluxcd.io/namespace"),
        });
    }
    if let Some(name) = label("helm.toolkit.fluxcd.io/name") {
        return Some(GitOpsOwner::FluxHelmRelease {
            name,
            namespace: label("helm.toolkit.fluxcd.io/namespace"),
        });
    }
    match labels
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
    {
        Some("Helm") => Some(GitOpsOwner::Helm {
            release: annotations.get("meta.helm.sh/release-name").cloned(),
            namespace: annotations.get("meta.helm.sh/release-namespace").cloned(),
        }),
        Some(m @ ("argocd" | "Argo CD")) => Some(GitOpsOwner::ArgoCd {
            application: label("app.kubernetes.io/instance")
                .unwrap_or_else(|| format!("(managed-by: {m})")),
        }),
        Some(m @ ("flux" | "fluxcd")) => Some(GitOpsOwner::FluxKustomization {
            name: format!("(managed-by: {m})"),
            namespace: None,
        }),
        _ => None,
    }
}

/// The controller that owns an object, from its `metadata.ownerReferences` (the one with
/// `controller: true`). meshmedic's own Remediation, which owns what meshmedic created, is none:
/// it writes nothing back.
pub fn controller(owner_references: Option<&serde_json::Value>) -> Option<GitOpsOwner> {
    let owners = owner_references?.as_array()?;
    owners.iter().find_map(|o| {
        let text = |k: &str| {
            o.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        };
        let api_version = text("apiVersion");
        let mine = text("kind") == "Remediation" && api_version.starts_with("meshmedic.io/");
        (o.get("controller").and_then(serde_json::Value::as_bool) == Some(true) && !mine).then(
            || GitOpsOwner::Controller {
                api_version: api_version.to_string(),
                kind: text("kind").to_string(),
                name: text("name").to_string(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn argo_cd_tracking_id_names_the_application() {
        let a = map(&[(
            "argocd.argoproj.io/tracking-id",
            "shop:networking.istio.io/VirtualService:shop/cart",
        )]);
        let o = owner(&map(&[]), &a).unwrap();
        assert_eq!(o.to_string(), "Argo CD Application shop");
        let a = map(&[(
            "argocd.argoproj.io/tracking-id",
            "argocd-apps_shop:apps/Deployment:shop/cart",
        )]);
        assert_eq!(
            owner(&map(&[]), &a).unwrap().to_string(),
            "Argo CD Application argocd-apps/shop"
        );
    }

    #[test]
    fn flux_before_helm() {
        let l = map(&[
            ("helm.toolkit.fluxcd.io/name", "podinfo"),
            ("helm.toolkit.fluxcd.io/namespace", "flux-system"),
            ("app.kubernetes.io/managed-by", "Helm"),
        ]);
        assert_eq!(
            owner(&l, &map(&[])).unwrap().to_string(),
            "Flux HelmRelease flux-system/podinfo"
        );
        let l = map(&[
            ("kustomize.toolkit.fluxcd.io/name", "apps"),
            ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
        ]);
        assert_eq!(
            owner(&l, &map(&[])).unwrap().to_string(),
            "Flux Kustomization flux-system/apps"
        );
    }

    #[test]
    fn helm_names_the_release() {
        let l = map(&[("app.kubernetes.io/managed-by", "Helm")]);
        let a = map(&[
            ("meta.helm.sh/release-name", "shop"),
            ("meta.helm.sh/release-namespace", "prod"),
        ]);
        assert_eq!(owner(&l, &a).unwrap().to_string(), "Helm release prod/shop");
    }

    #[test]
    fn the_instance_label_alone_is_not_ownership() {
        let l = map(&[
            ("app.kubernetes.io/instance", "shop"),
            ("app.kubernetes.io/managed-by", "kustomize"),
        ]);
        assert_eq!(owner(&l, &map(&[])), None);
    }

    #[test]
    fn a_controller_owner_is_named_and_meshmedics_own_is_none() {
        let refs = serde_json::json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1"},
            {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo", "uid": "2",
             "controller": true, "blockOwnerDeletion": true},
        ]);
        let o = controller(Some(&refs)).unwrap();
        assert_eq!(
            o.to_string(),
            "the controller of Canary podinfo (flagger.app/v1beta1)"
        );
        assert!(o.advice().contains("Flagger Canary"));
        let mine = serde_json::json!([{"apiVersion": "meshmedic.io/v1alpha1", "kind": "Remediation",
                                         "name": "r", "uid": "3", "controller": true}]);
        assert_eq!(controller(Some(&mine)), None);
        let not_controlling =
            serde_json::json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1"}]);
        assert_eq!(controller(Some(&not_controlling)), None);
        assert_eq!(controller(None), None);
    }
}
