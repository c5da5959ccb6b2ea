//! The mesh profile: which Istio and Kubernetes the analysed manifests run on, as far as the input
//! shows it, completed by flags (`--istio-version`, `--kubernetes-version`, `--profile FILE`) and,
//! where nothing is known, by documented defaults. Detectors read it through
//! [`Snapshot::profile`](super::Snapshot::profile); they never read globals.
//!
//! What decides a pod's sidecar (checked against istio/istio):
//! - `ENABLE_NATIVE_SIDECARS` on istiod is a bool defaulting to `false` up to 1.26
//!   (`pilot/pkg/features/experimental.go`, tag 1.26.0) and a string defaulting to `auto` since
//!   1.27 (`pilot/pkg/features/pilot.go`, tag 1.27.0): `true` / `false` force it, `auto` enables
//!   native sidecars when every Node's kubelet is at least 1.33, and any other value disables them.
//! - `auto` is resolved by `DetectNativeSidecar` (`pkg/kube/inject/webhook.go`): one kubelet below
//!   1.33 (the release where sidecar containers went GA) turns it off for the whole cluster.
//! - The pod annotation `sidecar.istio.io/nativeSidecar` overrides the env since 1.24
//!   (`injection-template.yaml`, tag 1.24.0: `"true"` turns it on, `"false"` off).
//! - A native sidecar is an init container with `restartPolicy: Always`: the kubelet starts it
//!   before the app and stops it after; the template then drops the `pilot-agent wait` hold and
//!   drains the proxy from a preStop hook instead (`injection-template.yaml`, `$holdProxy`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::IstioVersion;
use crate::error::{Error, Result};

/// The Kubernetes release meshmedic assumes for kubelets when the input has no Node and no flag
/// says otherwise: a release current in 2026, which every supported Istio runs on.
pub const ASSUMED_KUBERNETES: (u32, u32) = (1, 34);

/// Kubelet minor from which `ENABLE_NATIVE_SIDECARS=auto` injects native sidecars.
pub const NATIVE_SIDECAR_KUBELET: (u32, u32) = (1, 33);

/// The Istio minor from which `ENABLE_NATIVE_SIDECARS` defaults to `auto` (before: `false`).
pub const NATIVE_SIDECAR_AUTO_SINCE: (u32, u32) = (1, 27);

/// The Istio minor from which the pod annotation `sidecar.istio.io/nativeSidecar` is read.
pub const NATIVE_ANNOTATION_SINCE: (u32, u32) = (1, 24);

/// A Kubernetes version: the oldest kubelet among the Nodes, a flag, or the assumption.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubernetesVersion {
    pub major: u32,
    pub minor: u32,
    /// `--kubernetes-version`, `profile <file>`, `Node <name> (oldest of N)`, or `assumed (...)`.
    pub source: String,
}

impl KubernetesVersion {
    pub fn assumed() -> KubernetesVersion {
        KubernetesVersion {
            major: ASSUMED_KUBERNETES.0,
            minor: ASSUMED_KUBERNETES.1,
            source: "assumed (no Node objects, no flag)".to_string(),
        }
    }

    /// Parses `1.33`, `v1.33.2`, `v1.33.2-eks-1234`, `1.34.1+k3s1`.
    pub fn parse(text: &str, source: &str) -> Option<KubernetesVersion> {
        let v = IstioVersion::parse(text, source)?;
        Some(KubernetesVersion {
            major: v.major,
            minor: v.minor,
            source: v.source,
        })
    }

    pub fn at_least(&self, (major, minor): (u32, u32)) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}, {}", self.major, self.minor, self.source)
    }
}

/// istiod's `ENABLE_NATIVE_SIDECARS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NativeSidecarMode {
    /// `true`: always a native sidecar.
    Enabled,
    /// `false` (and any unknown value): always a classic container.
    Disabled,
    /// `auto`: native when every kubelet is ≥ 1.33.
    Auto,
}

impl NativeSidecarMode {
    /// As istiod reads the env: unknown values disable (`pilot.go`: "defaulting to false").
    pub fn parse(text: &str) -> NativeSidecarMode {
        match text.trim() {
            "true" => NativeSidecarMode::Enabled,
            "auto" => NativeSidecarMode::Auto,
            _ => NativeSidecarMode::Disabled,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NativeSidecarMode::Enabled => "true",
            NativeSidecarMode::Disabled => "false",
            NativeSidecarMode::Auto => "auto",
        }
    }
}

/// One control plane (revision) as the input shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlane {
    /// `default` for istiod without a revision.
    pub revision: String,
    pub version: IstioVersion,
    pub native_sidecars: NativeSidecarMode,
    /// Where `native_sidecars` came from.
    pub native_sidecars_source: String,
}

/// The `--profile` file: what the input lacks, stated once for a repository.
///
/// ```yaml
/// istioVersion: "1.28"            # the istiod release (its defaults apply)
/// kubernetesVersion: "1.32"       # the oldest kubelet in the cluster
/// nativeSidecars: auto            # istiod's ENABLE_NATIVE_SIDECARS: "true", "false" or auto
/// enableNamespacesByDefault: false  # sidecarInjectorWebhook.enableNamespacesByDefault
/// holdApplicationUntilProxyStarts: false  # values.global.proxy.holdApplicationUntilProxyStarts
/// rewriteAppHTTPProbe: true       # sidecarInjectorWebhook.rewriteAppHTTPProbe
/// assumeInjected: true            # namespaces absent from the input are injected
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileFile {
    #[serde(default, deserialize_with = "version_text")]
    pub istio_version: Option<String>,
    #[serde(default, deserialize_with = "version_text")]
    pub kubernetes_version: Option<String>,
    #[serde(default, deserialize_with = "version_text")]
    pub native_sidecars: Option<String>,
    pub enable_namespaces_by_default: Option<bool>,
    pub hold_application_until_proxy_starts: Option<bool>,
    #[serde(rename = "rewriteAppHTTPProbe")]
    pub rewrite_app_http_probe: Option<bool>,
    pub assume_injected: Option<bool>,
    /// The file name, for the assumptions the report lists.
    #[serde(skip)]
    pub file: String,
}

/// `1.28` written unquoted is a YAML float: accept it as the text the user meant. `true`/`false`
/// (for `nativeSidecars`) are accepted as their text too.
fn version_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a version or word, got {other}"
            )));
        }
    })
}

/// `istioVersion: 1.30` is the float 1.3 to a YAML parser: quote version values before parsing,
/// so that what the user wrote is what is read.
fn quote_versions(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        let quoted = ["istioVersion:", "kubernetesVersion:"]
            .iter()
            .find_map(|key| {
                let rest = line.strip_prefix(key)?;
                let value = rest.split('#').next().unwrap_or_default().trim();
                (value.starts_with(|c: char| c.is_ascii_digit() || c == 'v'))
                    .then(|| format!("{key} \"{value}\""))
            });
        out.push_str(quoted.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

impl ProfileFile {
    /// Parses a profile file's text; errors name the file and the field.
    pub fn parse(file: &str, text: &str) -> Result<ProfileFile> {
        let at = crate::error::Source::new(file, 0);
        let text = quote_versions(text);
        let value: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            // Comments unread: with their events on, a long commented-out block where the reader
            // looks ahead was "too many buffered comments" (see `snapshot::yaml`).
            serde_saphyr::from_str_with_options(
                &text,
                serde_saphyr::options! { emit_comments: false },
            )
            .map_err(|e| Error::Syntax {
                at: at.clone(),
                message: e.to_string().lines().next().unwrap_or_default().to_string(),
            })?
        };
        let mut profile: ProfileFile =
            serde_path_to_error::deserialize(&value).map_err(|e| Error::InvalidField {
                at: at.clone(),
                object: "mesh profile".to_string(),
                field: e.path().to_string(),
                message: e.into_inner().to_string(),
            })?;
        profile.file = file.to_string();
        let bad = |field: &str, message: String| Error::InvalidField {
            at: at.clone(),
            object: "mesh profile".to_string(),
            field: field.to_string(),
            message,
        };
        if let Some(v) = &profile.istio_version
            && IstioVersion::parse(v, "").is_none()
        {
            return Err(bad(
                "istioVersion",
                format!("{v:?} is not a version like 1.28"),
            ));
        }
        if let Some(v) = &profile.kubernetes_version
            && KubernetesVersion::parse(v, "").is_none()
        {
            return Err(bad(
                "kubernetesVersion",
                format!("{v:?} is not a version like 1.33"),
            ));
        }
        if let Some(v) = &profile.native_sidecars
            && !matches!(v.as_str(), "true" | "false" | "auto")
        {
            return Err(bad(
                "nativeSidecars",
                format!("{v:?}: expected true, false or auto"),
            ));
        }
        Ok(profile)
    }
}

/// What the input says about the injector (the `istio-sidecar-injector` ConfigMap's `values` and
/// `config`), per revision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InjectorSettings {
    pub enable_namespaces_by_default: Option<bool>,
    /// `config.policy`: `enabled` (the default) or `disabled` (only pods that ask are injected).
    pub policy_enabled: Option<bool>,
    pub hold_application_until_proxy_starts: Option<bool>,
    pub rewrite_app_http_probe: Option<bool>,
    /// `values.pilot.env.ENABLE_NATIVE_SIDECARS`, the Helm value that sets istiod's env.
    pub native_sidecars: Option<String>,
    /// Where these came from (`ConfigMap ns/name`).
    pub source: String,
}

/// istiod as the input shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct IstiodSeen {
    pub revision: String,
    pub image: Option<String>,
    /// The version an installation spec states (`snapshot::install`); an image's tag wins.
    pub version: Option<IstioVersion>,
    pub native_sidecars: Option<String>,
    /// `Deployment ns/name` (or the installation spec, `IstioOperator ns/name`).
    pub object: String,
}

/// Everything the builder collected for the profile.
#[derive(Clone, Debug, Default)]
pub struct ProfileInputs {
    pub istiods: Vec<IstiodSeen>,
    /// istiods and their injectors as installation specs describe them (`snapshot::install`):
    /// read for a revision only when one spec describes it; an istiod Deployment or an injector
    /// ConfigMap of the revision wins.
    pub installs: Vec<(IstiodSeen, InjectorSettings)>,
    /// (node name, kubelet version text).
    pub nodes: Vec<(String, String)>,
    /// revision → injector settings.
    pub injectors: BTreeMap<String, InjectorSettings>,
    /// revision tag → revision (from `istio-revision-tag-*` MutatingWebhookConfigurations).
    pub tags: BTreeMap<String, String>,
    /// `ConfigMap ns/name (file)` of the mesh config in use, if any.
    pub mesh_config: Option<String>,
}

/// Statements that win over the input: flags first, then the profile file.
#[derive(Clone, Debug, Default)]
pub struct ProfileOverrides {
    pub istio_version: Option<String>,
    pub kubernetes_version: Option<String>,
    pub assume_injected: bool,
    pub file: Option<ProfileFile>,
}

/// The mesh the analysis assumes, with where each fact came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshProfile {
    /// The default revision's Istio version (also `Snapshot::istio_version`).
    pub istio: IstioVersion,
    /// The oldest kubelet: it decides `ENABLE_NATIVE_SIDECARS=auto`.
    pub kubernetes: KubernetesVersion,
    /// Control planes by revision; `default` is always present.
    pub revisions: BTreeMap<String, ControlPlane>,
    /// Revision tags → revision.
    pub tags: BTreeMap<String, String>,
    /// `sidecarInjectorWebhook.enableNamespacesByDefault` of the default revision.
    pub enable_namespaces_by_default: bool,
    /// The injector's `policy`: `false` when `disabled` (only pods that ask are injected).
    pub injection_policy_enabled: bool,
    /// `values.global.proxy.holdApplicationUntilProxyStarts`.
    pub hold_application_until_proxy_starts: bool,
    /// `sidecarInjectorWebhook.rewriteAppHTTPProbe` (on by default).
    #[serde(rename = "rewriteAppHTTPProbe")]
    pub rewrite_app_http_probe: bool,
    /// Namespaces absent from the input are treated as `istio-injection=enabled`.
    pub assume_injected: bool,
    /// The mesh config in use, or Istio's defaults.
    pub mesh_config: String,
    /// One line per fact that was not read from the input (flags, the profile file, defaults).
    pub assumptions: Vec<String>,
}

impl Default for MeshProfile {
    fn default() -> Self {
        MeshProfile::build(ProfileInputs::default(), &ProfileOverrides::default())
            .expect("defaults are valid")
    }
}

/// A fact's source as an assumption line says it: `from --flag`, `from profile f`, `assumed (...)`.
fn stated(source: &str) -> String {
    if source.starts_with("--") || source.starts_with("profile ") {
        format!("from {source}")
    } else {
        source.to_string()
    }
}

/// Whether a version was read from the input (an istiod image, an installation spec), not
/// stated by the user or assumed.
fn read_from_input(source: &str) -> bool {
    source.starts_with("istiod image")
        || source.starts_with("IstioOperator ")
        || source.starts_with("Istio ")
}

fn istiod_version(image: &str, object: &str) -> Option<IstioVersion> {
    IstioVersion::of_image(image, |image| format!("istiod image {image} ({object})"))
}

impl MeshProfile {
    pub fn build(inputs: ProfileInputs, overrides: &ProfileOverrides) -> Result<MeshProfile> {
        let file = overrides.file.as_ref();
        let file_source =
            |field: &str| format!("profile {} ({field})", file.map_or("", |f| &f.file));
        let mut assumptions = Vec::new();

        // Kubelets: the oldest Node decides `auto`, as DetectNativeSidecar checks every Node.
        let flag_k8s = match &overrides.kubernetes_version {
            Some(text) => Some(
                KubernetesVersion::parse(text, "--kubernetes-version").ok_or_else(|| {
                    Error::InvalidArgument {
                        flag: "--kubernetes-version".to_string(),
                        message: format!("{text:?} is not a version like 1.33 or v1.33.2"),
                    }
                })?,
            ),
            None => None,
        };
        let file_k8s = file
            .and_then(|f| f.kubernetes_version.as_deref())
            .and_then(|v| KubernetesVersion::parse(v, &file_source("kubernetesVersion")));
        let node_k8s = {
            let count = inputs.nodes.len();
            inputs
                .nodes
                .iter()
                .filter_map(|(name, v)| {
                    let text = if count == 1 {
                        format!("Node {name} kubelet {v}")
                    } else {
                        format!("Node {name} kubelet {v}, the oldest of {count}")
                    };
                    KubernetesVersion::parse(v, &text)
                })
                .min_by_key(|v| (v.major, v.minor))
        };
        let kubernetes = match (flag_k8s, file_k8s, node_k8s) {
            (Some(v), _, _) | (None, Some(v), _) | (None, None, Some(v)) => v,
            (None, None, None) => KubernetesVersion::assumed(),
        };
        if !kubernetes.source.starts_with("Node ") {
            assumptions.push(format!(
                "Kubernetes {}.{}: {}",
                kubernetes.major,
                kubernetes.minor,
                stated(&kubernetes.source)
            ));
        }

        // Control planes by revision. The flag and the profile file speak for the default one.
        let stated_istio = match &overrides.istio_version {
            Some(text) => Some(IstioVersion::parse(text, "--istio-version").ok_or_else(|| {
                Error::InvalidArgument {
                    flag: "--istio-version".to_string(),
                    message: format!("{text:?} is not a version like 1.24 or 1.24.2"),
                }
            })?),
            None => file
                .and_then(|f| f.istio_version.as_deref())
                .and_then(|v| IstioVersion::parse(v, &file_source("istioVersion"))),
        };
        let mut seen: BTreeMap<String, &IstiodSeen> = BTreeMap::new();
        for istiod in &inputs.istiods {
            seen.entry(istiod.revision.clone()).or_insert(istiod);
        }
        // Several specs of one revision are overlays (`istioctl install -f a -f b`) or variants
        // of a demo: which one is installed, the input does not say.
        let mut installs: BTreeMap<&str, Vec<&(IstiodSeen, InjectorSettings)>> = BTreeMap::new();
        for install in &inputs.installs {
            installs
                .entry(&install.0.revision)
                .or_default()
                .push(install);
        }
        let mut injectors = inputs.injectors.clone();
        for (revision, specs) in &installs {
            if let [(istiod, injector)] = specs.as_slice() {
                seen.entry(revision.to_string()).or_insert(istiod);
                injectors
                    .entry(revision.to_string())
                    .or_insert_with(|| injector.clone());
            } else {
                assumptions.push(format!(
                    "{} installation specs for revision {revision} in the input (the first {}): \
                     none is read; give the installed version with --istio-version and its mesh \
                     config with --mesh-config",
                    specs.len(),
                    specs[0].0.object
                ));
            }
        }
        // A single revisioned istiod and no default one: it serves `istio-injection=enabled`
        // through the `default` tag in most installs; the tags say so when they are present.
        let default_revision = inputs
            .tags
            .get("default")
            .cloned()
            .filter(|r| seen.contains_key(r))
            .or_else(|| seen.contains_key("default").then(|| "default".to_string()))
            .or_else(|| {
                (seen.len() == 1)
                    .then(|| seen.keys().next().cloned())
                    .flatten()
            })
            .unwrap_or_else(|| "default".to_string());
        let mut revisions = BTreeMap::new();
        let mut names: Vec<String> = seen.keys().cloned().collect();
        if !names.contains(&default_revision) {
            names.push(default_revision.clone());
        }
        for revision in names {
            let istiod = seen.get(&revision).copied();
            let is_default = revision == default_revision;
            let version = match (&stated_istio, istiod) {
                (Some(v), _) if is_default => v.clone(),
                (_, Some(d)) => d
                    .image
                    .as_deref()
                    .and_then(|i| istiod_version(i, &d.object))
                    .or_else(|| d.version.clone())
                    .or_else(|| stated_istio.clone())
                    .unwrap_or_else(IstioVersion::assumed),
                _ => stated_istio.clone().unwrap_or_else(IstioVersion::assumed),
            };
            let injector = injectors.get(&revision);
            let stated_native = if is_default {
                file.and_then(|f| f.native_sidecars.clone())
                    .map(|v| (v, file_source("nativeSidecars")))
            } else {
                None
            };
            let (native_sidecars, native_sidecars_source) = match (
                stated_native,
                istiod.and_then(|d| d.native_sidecars.clone().map(|v| (v, d))),
                injector.and_then(|i| i.native_sidecars.clone().map(|v| (v, i))),
            ) {
                (Some((v, src)), _, _) => (NativeSidecarMode::parse(&v), src),
                (None, Some((v, d)), _) => (
                    NativeSidecarMode::parse(&v),
                    format!("env ENABLE_NATIVE_SIDECARS={v} on {}", d.object),
                ),
                (None, None, Some((v, i))) => (
                    NativeSidecarMode::parse(&v),
                    format!(
                        "values.pilot.env.ENABLE_NATIVE_SIDECARS={v} in {}",
                        i.source
                    ),
                ),
                (None, None, None) if version.at_least(1, 27) => (
                    NativeSidecarMode::Auto,
                    format!("Istio {}.{} default (auto)", version.major, version.minor),
                ),
                (None, None, None) => (
                    NativeSidecarMode::Disabled,
                    format!("Istio {}.{} default (false)", version.major, version.minor),
                ),
            };
            revisions.insert(
                revision.clone(),
                ControlPlane {
                    revision,
                    version,
                    native_sidecars,
                    native_sidecars_source,
                },
            );
        }
        let default_plane = revisions[&default_revision].clone();
        // Revisions reach the default through the name `default` too.
        if default_revision != "default" {
            let mut alias = default_plane.clone();
            alias.revision = "default".to_string();
            revisions.insert("default".to_string(), alias);
        }
        let istio = default_plane.version.clone();
        if !read_from_input(&istio.source) {
            assumptions.push(format!(
                "Istio {}.{}: {}",
                istio.major,
                istio.minor,
                stated(&istio.source)
            ));
        }
        if !default_plane.native_sidecars_source.starts_with("env ")
            && !default_plane.native_sidecars_source.starts_with("values.")
        {
            assumptions.push(format!(
                "ENABLE_NATIVE_SIDECARS={}: {}",
                default_plane.native_sidecars.as_str(),
                stated(&default_plane.native_sidecars_source)
            ));
        }

        let injector = injectors
            .get(&default_revision)
            .or_else(|| injectors.get("default"))
            .cloned()
            .unwrap_or_default();
        let pick = |stated: Option<bool>, read: Option<bool>, default: bool| -> bool {
            stated.or(read).unwrap_or(default)
        };
        let enable_namespaces_by_default = pick(
            file.and_then(|f| f.enable_namespaces_by_default),
            injector.enable_namespaces_by_default,
            false,
        );
        let hold_application_until_proxy_starts = pick(
            file.and_then(|f| f.hold_application_until_proxy_starts),
            injector.hold_application_until_proxy_starts,
            false,
        );
        let rewrite_app_http_probe = pick(
            file.and_then(|f| f.rewrite_app_http_probe),
            injector.rewrite_app_http_probe,
            true,
        );
        let file_states_injector = file.is_some_and(|f| {
            f.enable_namespaces_by_default.is_some()
                || f.hold_application_until_proxy_starts.is_some()
                || f.rewrite_app_http_probe.is_some()
        });
        if injector.source.is_empty() && !file_states_injector {
            assumptions.push(
                "injector: Istio defaults (no istio-sidecar-injector ConfigMap): policy enabled, enableNamespacesByDefault false, rewriteAppHTTPProbe true"
                    .to_string(),
            );
        }
        let assume_injected =
            overrides.assume_injected || file.and_then(|f| f.assume_injected).unwrap_or(false);
        if assume_injected {
            assumptions.push(
                "namespaces absent from the input are injected (--assume-injected)".to_string(),
            );
        }
        let mesh_config = inputs
            .mesh_config
            .clone()
            .unwrap_or_else(|| "Istio defaults (no mesh config in the input)".to_string());
        if mesh_config.starts_with("Istio defaults") {
            assumptions.push(format!("mesh config: {mesh_config}"));
        }
        Ok(MeshProfile {
            istio,
            kubernetes,
            revisions,
            tags: inputs.tags,
            enable_namespaces_by_default,
            injection_policy_enabled: injector.policy_enabled.unwrap_or(true),
            hold_application_until_proxy_starts,
            rewrite_app_http_probe,
            assume_injected,
            mesh_config,
            assumptions,
        })
    }

    /// The control plane serving a revision name (a revision or a tag); unknown names fall back to
    /// the default revision, whose settings are the best guess.
    pub fn control_plane(&self, revision: &str) -> &ControlPlane {
        let revision = self
            .tags
            .get(revision)
            .map(String::as_str)
            .unwrap_or(revision);
        self.revisions
            .get(revision)
            .unwrap_or_else(|| &self.revisions["default"])
    }

    /// Whether istiod of this revision injects native sidecars, and why (for evidence).
    pub fn native_sidecars(&self, revision: &str) -> (bool, String) {
        let on = self.native_sidecars_on(revision);
        let plane = self.control_plane(revision);
        match plane.native_sidecars {
            NativeSidecarMode::Enabled => (
                true,
                format!(
                    "ENABLE_NATIVE_SIDECARS=true ({})",
                    plane.native_sidecars_source
                ),
            ),
            NativeSidecarMode::Disabled => (
                false,
                format!(
                    "ENABLE_NATIVE_SIDECARS=false ({})",
                    plane.native_sidecars_source
                ),
            ),
            NativeSidecarMode::Auto => {
                let k = &self.kubernetes;
                (
                    on,
                    format!(
                        "ENABLE_NATIVE_SIDECARS=auto ({}) with the oldest kubelet {}.{} ({}): native sidecars {}",
                        plane.native_sidecars_source,
                        k.major,
                        k.minor,
                        k.source,
                        if on {
                            "on (every kubelet ≥ 1.33)"
                        } else {
                            "off (a kubelet below 1.33)"
                        }
                    ),
                )
            }
        }
    }

    /// [`MeshProfile::native_sidecars`] without the words.
    pub fn native_sidecars_on(&self, revision: &str) -> bool {
        match self.control_plane(revision).native_sidecars {
            NativeSidecarMode::Enabled => true,
            NativeSidecarMode::Disabled => false,
            NativeSidecarMode::Auto => self.kubernetes.at_least(NATIVE_SIDECAR_KUBELET),
        }
    }

    /// One line for the table footer.
    pub fn summary(&self) -> String {
        let (native, _) = self.native_sidecars("default");
        let plane = self.control_plane("default");
        format!(
            "Kubernetes {}.{}; ENABLE_NATIVE_SIDECARS={} → {} sidecars; mesh config: {}",
            self.kubernetes.major,
            self.kubernetes.minor,
            plane.native_sidecars.as_str(),
            if native { "native" } else { "classic" },
            self.mesh_config
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn istiod(revision: &str, image: &str, env: Option<&str>) -> IstiodSeen {
        IstiodSeen {
            revision: revision.to_string(),
            image: Some(image.to_string()),
            version: None,
            native_sidecars: env.map(str::to_string),
            object: format!("Deployment istio-system/istiod-{revision}"),
        }
    }

    fn nodes(versions: &[&str]) -> Vec<(String, String)> {
        versions
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("node-{i}"), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_known_gives_the_documented_defaults() {
        let p = MeshProfile::default();
        assert_eq!((p.istio.major, p.istio.minor), IstioVersion::NEWEST);
        assert_eq!((p.kubernetes.major, p.kubernetes.minor), ASSUMED_KUBERNETES);
        let (native, why) = p.native_sidecars("default");
        assert!(native, "{why}");
        assert!(
            p.assumptions
                .iter()
                .any(|a| a.starts_with("Kubernetes 1.34"))
        );
        assert!(p.assumptions.iter().any(|a| a.starts_with("Istio 1.31")));
        assert!(!p.assume_injected);
    }

    #[test]
    fn auto_needs_every_kubelet_at_1_33() {
        let inputs = ProfileInputs {
            istiods: vec![istiod("default", "docker.io/istio/pilot:1.28.2", None)],
            nodes: nodes(&["v1.34.1", "v1.32.9-eks-1"]),
            ..Default::default()
        };
        let p = MeshProfile::build(inputs, &ProfileOverrides::default()).unwrap();
        assert_eq!(p.kubernetes.minor, 32);
        assert!(p.kubernetes.source.contains("node-1"));
        let (native, why) = p.native_sidecars("default");
        assert!(!native);
        assert!(why.contains("auto"), "{why}");
    }

    #[test]
    fn env_and_version_decide_the_mode() {
        let old = ProfileInputs {
            istiods: vec![istiod("default", "istio/pilot:1.26.3", None)],
            nodes: nodes(&["v1.34.0"]),
            ..Default::default()
        };
        let p = MeshProfile::build(old, &ProfileOverrides::default()).unwrap();
        assert_eq!(
            p.control_plane("default").native_sidecars,
            NativeSidecarMode::Disabled
        );

        let forced = ProfileInputs {
            istiods: vec![istiod("default", "istio/pilot:1.26.3", Some("true"))],
            nodes: nodes(&["v1.30.0"]),
            ..Default::default()
        };
        let p = MeshProfile::build(forced, &ProfileOverrides::default()).unwrap();
        assert!(p.native_sidecars("default").0);
    }

    #[test]
    fn flags_win_over_the_file_and_the_input() {
        let inputs = ProfileInputs {
            istiods: vec![istiod("default", "istio/pilot:1.28.0", None)],
            nodes: nodes(&["v1.34.0"]),
            ..Default::default()
        };
        let file = ProfileFile::parse(
            "p.yaml",
            "istioVersion: 1.25\nkubernetesVersion: 1.30\nassumeInjected: true\n",
        )
        .unwrap();
        let overrides = ProfileOverrides {
            kubernetes_version: Some("1.32".into()),
            file: Some(file),
            ..Default::default()
        };
        let p = MeshProfile::build(inputs, &overrides).unwrap();
        assert_eq!(p.kubernetes.minor, 32);
        assert_eq!(p.kubernetes.source, "--kubernetes-version");
        assert_eq!(p.istio.minor, 25, "the file's istioVersion");
        assert!(p.assume_injected);
    }

    /// A profile file with a long commented-out block is read (the YAML reader's lookahead
    /// limit on comments, see `snapshot::yaml`).
    #[test]
    fn a_profile_file_with_long_comments_is_read() {
        let comments: String = (0..150).map(|i| format!("#  line {i}\n")).collect();
        let file = ProfileFile::parse(
            "p.yaml",
            &format!(
                "{comments}istioVersion:\n{comments}  1.25\nassumeInjected:\n{comments}  true\n"
            ),
        )
        .unwrap();
        let overrides = ProfileOverrides {
            file: Some(file),
            ..Default::default()
        };
        let p = MeshProfile::build(ProfileInputs::default(), &overrides).unwrap();
        assert_eq!(p.istio.minor, 25);
        assert!(p.assume_injected);
    }

    #[test]
    fn revisions_and_tags() {
        let inputs = ProfileInputs {
            istiods: vec![
                istiod("1-26", "istio/pilot:1.26.1", None),
                istiod("1-28", "istio/pilot:1.28.1", None),
            ],
            tags: [("prod".to_string(), "1-26".to_string())].into(),
            nodes: nodes(&["v1.33.0"]),
            ..Default::default()
        };
        let p = MeshProfile::build(inputs, &ProfileOverrides::default()).unwrap();
        assert_eq!(p.control_plane("prod").version.minor, 26);
        assert!(!p.native_sidecars("prod").0);
        assert!(p.native_sidecars("1-28").0);
    }

    #[test]
    fn profile_file_errors_name_the_field() {
        let err = ProfileFile::parse("p.yaml", "nativeSidecars: maybe\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.yaml") && err.contains("nativeSidecars"),
            "{err}"
        );
        let err = ProfileFile::parse("p.yaml", "istioVersoin: 1.28\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("istioVersoin"), "{err}");
        let ok = ProfileFile::parse("p.yaml", "nativeSidecars: false\n").unwrap();
        assert_eq!(ok.native_sidecars.as_deref(), Some("false"));
        // `1.30` unquoted is the float 1.3 to YAML: read as written.
        let ok = ProfileFile::parse(
            "p.yaml",
            "istioVersion: 1.30  # the release\nkubernetesVersion: v1.33.2\n",
        )
        .unwrap();
        assert_eq!(ok.istio_version.as_deref(), Some("1.30"));
        assert_eq!(ok.kubernetes_version.as_deref(), Some("v1.33.2"));
    }
}
