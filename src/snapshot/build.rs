//! Turns raw objects (from files or from the API server) into a typed, indexed [`Snapshot`].

use std::collections::{BTreeMap, HashSet};

use hashbrown::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::app_config::AppConfigMap;
use super::profile::{InjectorSettings, IstiodSeen, MeshProfile, ProfileInputs, ProfileOverrides};
use super::{NamespaceIndex, Obj, Raw, Snapshot, SnapshotOptions, hosts, yaml};
use crate::analysis::Code;
use crate::error::{Error, Result, Source};
use crate::model::flagger::{Canary, CanarySpec};
use crate::model::gateway_api::HttpRouteSpec;
use crate::model::istio::ProxyConfig;
use crate::model::istio::{
    DestinationRuleSpec, EnvoyFilterSpec, MeshConfig, PeerAuthenticationSpec, SidecarSpec,
    TelemetrySpec, VirtualServiceSpec,
};
use crate::model::rollout::Rollout;
use crate::model::workload::Workload;
use crate::model::{Meta, duration, keys, selects};

/// Collects objects one at a time; [`SnapshotBuilder::build`] indexes them.
#[derive(Default)]
pub struct SnapshotBuilder {
    options: SnapshotOptions,
    snapshot_parts: Parts,
}

/// Boxed as [`Snapshot`]'s lists are (the boxes `Decoded` holds, kept).
#[allow(clippy::vec_box)]
#[derive(Default)]
struct Parts {
    namespaces: BTreeMap<String, Meta>,
    services: Vec<Box<Obj<crate::model::service::ServiceSpec>>>,
    workloads: Vec<Box<Workload>>,
    destination_rules: Vec<Box<Obj<DestinationRuleSpec>>>,
    virtual_services: Vec<Box<Obj<VirtualServiceSpec>>>,
    sidecars: Vec<Box<Obj<SidecarSpec>>>,
    peer_authentications: Vec<Box<Obj<PeerAuthenticationSpec>>>,
    envoy_filters: Vec<Box<Obj<EnvoyFilterSpec>>>,
    telemetries: Vec<Box<Obj<TelemetrySpec>>>,
    http_routes: Vec<Box<Obj<HttpRouteSpec>>>,
    /// Flagger Canaries routed with Istio, with what Flagger writes for each.
    canaries: Vec<Box<CanaryRouting>>,
    /// (source, `ns/name`, mesh config).
    mesh_configs: Vec<(Source, String, MeshConfig)>,
    /// The same from installation specs (`snapshot::install`), read when no ConfigMap has one.
    /// (source, `Kind ns/name`, the field it is at, mesh config).
    install_mesh_configs: Vec<(Source, String, &'static str, MeshConfig)>,
    profile: ProfileInputs,
    skipped: BTreeMap<String, usize>,
    config_maps: super::app_config::AppConfigMaps,
}

impl Parts {
    /// Counts an object of a kind the analysis does not read.
    fn skip(&mut self, api_version: &str, kind: &str) {
        self.count_skipped(skipped_key(api_version, kind));
    }

    fn count_skipped(&mut self, key: String) {
        *self.skipped.entry(key).or_default() += 1;
    }
}

const DEFAULT_NAMESPACE: &str = "default";

fn describe(kind: &str, value: &impl Fields) -> String {
    let name = value.str_at(&["metadata", "name"]).unwrap_or("<unnamed>");
    let namespace = value.str_at(&["metadata", "namespace"]);
    // One allocation of the right size (`format!` grew it twice), for every object read.
    let mut out =
        String::with_capacity(kind.len() + 2 + namespace.map_or(0, str::len) + name.len());
    out.push_str(kind);
    out.push(' ');
    if let Some(namespace) = namespace {
        out.push_str(namespace);
        out.push('/');
    }
    out.push_str(name);
    out
}

/// A document as JSON or as the borrowed tree ([`yaml::Borrowed`]): what is read of it before
/// it is decoded.
pub trait Fields {
    /// The string at `path` (keys of nested mappings).
    fn str_at(&self, path: &[&str]) -> Option<&str>;
    fn is_mapping(&self) -> bool;
    /// Whether the mapping has `key` (`Some(true)`: as a sequence).
    fn has(&self, key: &str) -> Option<bool>;

    /// A `kind: List` (or `...List`) of objects in `items`, as kubectl reads one.
    fn is_list(&self) -> bool {
        self.str_at(&["apiVersion"]).is_some()
            && self
                .str_at(&["kind"])
                .is_some_and(|k| k == "List" || k.ends_with("List"))
            && self.has("items") == Some(true)
    }
}

impl Fields for Value {
    fn str_at(&self, path: &[&str]) -> Option<&str> {
        path.iter().try_fold(self, |v, key| v.get(key))?.as_str()
    }
    fn is_mapping(&self) -> bool {
        self.is_object()
    }
    fn has(&self, key: &str) -> Option<bool> {
        self.get(key).map(Value::is_array)
    }
}

impl Fields for yaml::Borrowed<'_> {
    fn str_at(&self, path: &[&str]) -> Option<&str> {
        path.iter().try_fold(self, |v, key| v.get(key))?.as_str()
    }
    fn is_mapping(&self) -> bool {
        matches!(self, yaml::Borrowed::Map(_))
    }
    fn has(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| matches!(v, yaml::Borrowed::Seq(_)))
    }
}

/// What a typed object is decoded from: JSON, or the borrowed tree, which decodes the same
/// (same values, same errors) without building the JSON.
trait Decodable<'de>: serde::Deserializer<'de, Error = serde_json::Error> + Sized {
    fn into_value(self) -> Value;
}

impl<'de> Decodable<'de> for Value {
    fn into_value(self) -> Value {
        self
    }
}

impl<'de> Decodable<'de> for yaml::Borrowed<'de> {
    fn into_value(self) -> Value {
        yaml::Borrowed::into_value(self)
    }
}

/// Deserializes with the path of the failing field, so the message can name it.
fn decode<T: DeserializeOwned>(at: &Source, object: &str, value: &Value) -> Result<T> {
    decode_with(at, object, value)
}

/// [`decode`] from a borrowed or an owned value (the same messages).
fn decode_with<'de, T: DeserializeOwned, D>(at: &Source, object: &str, value: D) -> Result<T>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
{
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        Error::InvalidField {
            at: at.clone(),
            object: object.to_string(),
            field: if field == "." {
                "(object)".to_string()
            } else {
                field
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// [`decode`], and what the object keeps as its raw form: its document's text when it has
/// one (the value is then decoded by move: its strings are not copied), else the value.
///
/// Decoded first without tracking the path: `serde_path_to_error` copies every key it passes
/// into a string of its own, and again for each value (1.1 of the 7.4 million allocations
/// at 10,000 services). Only an object that fails is decoded again, from its raw form, with
/// the path, for the message.
fn decode_keep<'de, T: DeserializeOwned>(
    at: &Source,
    object: &str,
    value: impl Decodable<'de>,
    raw: Option<Raw>,
) -> Result<(T, Raw)> {
    match raw {
        Some(raw) => match T::deserialize(value) {
            Ok(decoded) => Ok((decoded, raw)),
            Err(plain) => Err(decode_again::<T>(at, object, &raw.to_value(), plain)),
        },
        None => {
            let value = value.into_value();
            match T::deserialize(&value) {
                Ok(decoded) => Ok((decoded, Raw::from(value))),
                Err(plain) => Err(decode_again::<T>(at, object, &value, plain)),
            }
        }
    }
}

/// The error of an object that did not decode, with the path of the failing field: the same
/// value decoded again, tracking it. The raw form is what was decoded, so it fails the same
/// way; should it not, the first error is given, for the whole object.
fn decode_again<T: DeserializeOwned>(
    at: &Source,
    object: &str,
    value: &Value,
    plain: serde_json::Error,
) -> Error {
    match decode_with::<T, _>(at, object, value) {
        Err(e) => e,
        Ok(_) => Error::InvalidField {
            at: at.clone(),
            object: object.to_string(),
            field: "(object)".to_string(),
            message: plain.to_string(),
        },
    }
}

pub(crate) fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

impl SnapshotBuilder {
    pub fn new(options: SnapshotOptions) -> SnapshotBuilder {
        SnapshotBuilder {
            options,
            snapshot_parts: Parts::default(),
        }
    }

    /// Adds one document: an object, or a `kind: List` of objects. Documents of kinds the
    /// analysis does not read are counted in `skipped`; objects of known kinds whose fields have
    /// the wrong type are errors naming the field.
    pub fn add(&mut self, at: Source, value: Value) -> Result<()> {
        self.add_read(at, value, None)
    }

    /// [`SnapshotBuilder::add`] for a document read from `text` (the whole document, also for
    /// an item of a `kind: List`, which `at.item` names): the objects keep the text instead of
    /// `value`, and build their raw value again only if a fix reads it ([`super::Raw`]).
    pub fn add_with_text(&mut self, at: Source, value: Value, text: Arc<str>) -> Result<()> {
        let text = super::raw::DocText::from(text);
        let raw = Raw::from_text(text, at.item);
        self.add_read(at, value, Some(raw))
    }

    /// [`SnapshotBuilder::add`] for an object kept as compact JSON (the operator's stores):
    /// decoded from a transient value, and raw read again from the text only if a fix reads it.
    pub fn add_json(&mut self, at: Source, text: Arc<str>) -> Result<()> {
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::InvalidField {
            at: at.clone(),
            object: "(object)".to_string(),
            field: "(object)".to_string(),
            message: format!("not JSON: {e}"),
        })?;
        self.add_read(at, value, Some(Raw::from_json(text)))
    }

    fn add_read(&mut self, at: Source, value: Value, raw: Option<Raw>) -> Result<()> {
        if value.is_null() {
            return Ok(());
        }
        let Some(map) = value.as_object() else {
            return Err(Error::InvalidField {
                at,
                object: "(document)".to_string(),
                field: "(document)".to_string(),
                message: "expected a Kubernetes object (a mapping with apiVersion and kind)"
                    .to_string(),
            });
        };
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_version = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind.is_empty() || api_version.is_empty() {
            let field = if kind.is_empty() {
                "kind"
            } else {
                "apiVersion"
            };
            return Err(Error::InvalidField {
                object: describe(if kind.is_empty() { "(object)" } else { kind }, &value),
                at,
                field: field.to_string(),
                message: "missing; every Kubernetes object needs apiVersion and kind".to_string(),
            });
        }
        if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
            let items = match map.get("items") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => {
                    return Err(Error::InvalidField {
                        at,
                        object: kind.to_string(),
                        field: "items".to_string(),
                        message: "expected a list of objects".to_string(),
                    });
                }
            };
            for (i, item) in items.into_iter().enumerate() {
                let mut item_at = at.clone();
                item_at.item = Some(i);
                // Items of a list inside the document keep their value (rare).
                self.add_read(item_at, item, None)?;
            }
            return Ok(());
        }
        let object = describe(kind, &value);
        let api_version = api_version.to_string();
        let kind = kind.to_string();
        self.add_object(at, &api_version, &kind, &object, value, raw)
    }

    fn add_object(
        &mut self,
        at: Source,
        api_version: &str,
        kind: &str,
        object: &str,
        value: Value,
        raw: Option<Raw>,
    ) -> Result<()> {
        match decode_object(at, api_version, kind, object, value, raw) {
            Ok(decoded) => self.insert(decoded?),
            Err((at, value)) => self.add_other(at, api_version, kind, object, value),
        }
    }

    /// Decodes a document away from the builder (on any thread: it is pure): the kinds that are
    /// most of a large input (workloads, Services, Istio rules) become their typed objects, and
    /// the document's `Value` can be dropped at once; anything else is kept for
    /// [`SnapshotBuilder::add_prepared`]. `text` as for [`SnapshotBuilder::add_with_text`].
    pub fn prepare(at: Source, value: Value, raw: Option<Raw>) -> Prepared {
        Self::prepare_doc(at, value, raw)
    }

    /// [`SnapshotBuilder::prepare`] of a document read as the borrowed tree (`yaml::borrowed`)
    /// from the text `raw` keeps: the same result, without the document's JSON.
    pub fn prepare_borrowed(at: Source, node: yaml::Borrowed<'_>, raw: Raw) -> Prepared {
        Self::prepare_doc(at, node, Some(raw))
    }

    fn prepare_doc<'de, D: Decodable<'de> + Fields>(
        at: Source,
        doc: D,
        raw: Option<Raw>,
    ) -> Prepared {
        let kind = doc.str_at(&["kind"]).unwrap_or_default();
        let api_version = doc.str_at(&["apiVersion"]).unwrap_or_default();
        let is_list = kind == "List" || (kind.ends_with("List") && doc.has("items").is_some());
        if !doc.is_mapping()
            || kind.is_empty()
            || api_version.is_empty()
            || is_list
            || !decoded_early(group_of(api_version), kind)
        {
            // Only counted: its tree and text are not kept (a repository's
            // CustomResourceDefinitions are most of its bytes; README, Benchmarks).
            if !is_list
                && doc.is_mapping()
                && !kind.is_empty()
                && !api_version.is_empty()
                && !read_later(group_of(api_version), kind)
            {
                return Prepared(PreparedInner::Skipped(skipped_key(api_version, kind)));
            }
            return Prepared(PreparedInner::Later(Box::new((at, doc.into_value(), raw))));
        }
        let object = describe(kind, &doc);
        let (api_version, kind) = (api_version.to_string(), kind.to_string());
        match decode_known(at, &api_version, &kind, &object, doc, raw) {
            Ok(decoded) => Prepared(PreparedInner::Decoded(decoded)),
            Err(e) => Prepared(PreparedInner::Refused(Box::new(e))),
        }
    }

    /// Adds what [`SnapshotBuilder::prepare`] made: the same result, in the same order, as
    /// [`SnapshotBuilder::add_with_text`] (or `add`) of the document.
    pub fn add_prepared(&mut self, prepared: Prepared) -> Result<()> {
        match prepared.0 {
            PreparedInner::Decoded(decoded) => self.insert(decoded),
            PreparedInner::Refused(e) => Err(*e),
            PreparedInner::Later(later) => {
                let (at, value, raw) = *later;
                self.add_read(at, value, raw)
            }
            PreparedInner::Skipped(key) => {
                self.snapshot_parts.count_skipped(key);
                Ok(())
            }
        }
    }

    fn insert(&mut self, decoded: Decoded) -> Result<()> {
        let parts = &mut self.snapshot_parts;
        match decoded {
            Decoded::Service(o) => parts.services.push(o),
            Decoded::Workload(w, istiod) => {
                parts.profile.istiods.extend(istiod.map(|i| *i));
                parts.workloads.push(w);
            }
            Decoded::DestinationRule(o) => parts.destination_rules.push(o),
            Decoded::VirtualService(o) => parts.virtual_services.push(o),
            Decoded::Sidecar(o) => parts.sidecars.push(o),
            Decoded::EnvoyFilter(o) => parts.envoy_filters.push(o),
            Decoded::PeerAuthentication(o) => parts.peer_authentications.push(o),
            Decoded::Telemetry(o) => parts.telemetries.push(o),
            Decoded::HttpRoute(o) => parts.http_routes.push(o),
            Decoded::Canary(o) => parts.canaries.push(o),
            Decoded::IstiodThenError(istiod, e) => {
                parts.profile.istiods.push(*istiod);
                return Err(*e);
            }
            Decoded::Nothing => {}
        }
        Ok(())
    }

    /// The kinds [`decode_object`] leaves: few per mesh, and they change the builder's state.
    fn add_other(
        &mut self,
        at: Source,
        api_version: &str,
        kind: &str,
        object: &str,
        value: Value,
    ) -> Result<()> {
        let parts = &mut self.snapshot_parts;
        let group = group_of(api_version);
        // The same test as the one that skips a document while it is read (`prepare_doc`).
        if !read_later(group, kind) {
            parts.skip(api_version, kind);
            return Ok(());
        }
        match (group, kind) {
            ("", "Namespace") => {
                let ns: Namespace = decode(&at, object, &value)?;
                let meta = Meta::from_owned_meta(ns.metadata, "");
                parts.namespaces.insert(meta.name.clone(), meta);
            }
            ("", "ConfigMap") => {
                let cm: ConfigMap = decode(&at, object, &value)?;
                self.add_config_map(at, object, cm)?;
            }
            (group, kind) if super::install::is_install(group, kind) => {
                // Unnamed as often as not: the file says which one.
                let named = format!("{object} ({at})");
                let Some(install) = super::install::read(&at, &named, kind, &value)? else {
                    parts.skip(api_version, kind);
                    return Ok(());
                };
                if let Some((mesh, field)) = install.mesh_config {
                    let mesh_config: MeshConfig = decode(&at, object, &mesh)
                        .map_err(|e| prefix_field(e, &format!("{field}.")))?;
                    parts
                        .install_mesh_configs
                        .push((at, object.to_string(), field, mesh_config));
                }
                parts
                    .profile
                    .installs
                    .push((install.istiod, install.injector));
            }
            // Kubelet versions decide whether istiod injects native sidecars.
            ("", "Node") => {
                let name = value
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("<unnamed>");
                match value.pointer("/status/nodeInfo/kubeletVersion") {
                    Some(Value::String(v)) => {
                        parts.profile.nodes.push((name.to_string(), v.clone()))
                    }
                    None | Some(Value::Null) => {}
                    Some(_) => {
                        return Err(Error::InvalidField {
                            at,
                            object: object.to_string(),
                            field: "status.nodeInfo.kubeletVersion".to_string(),
                            message: "expected a string such as v1.33.2".to_string(),
                        });
                    }
                }
            }
            // `istioctl tag set` writes `istio-revision-tag-<tag>` webhooks labelled with the tag
            // and the revision it points to.
            ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
                let labels = |key: &str| {
                    value
                        .pointer("/metadata/labels")
                        .and_then(|l| l.get(key))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                match (labels("istio.io/tag"), labels(keys::NS_REV)) {
                    (Some(tag), Some(rev)) => {
                        parts.profile.tags.insert(tag, rev);
                    }
                    _ => {
                        parts.skip(api_version, kind);
                    }
                }
            }
            _ => {
                parts.skip(api_version, kind);
            }
        }
        Ok(())
    }

    fn add_config_map(&mut self, at: Source, object: &str, cm: ConfigMap) -> Result<()> {
        let name = cm.metadata.name.as_deref().unwrap_or_default();
        let data = cm.data.unwrap_or_default();
        if (name == "istio" || name.starts_with("istio-"))
            && let Some(mesh) = data.get("mesh")
        {
            let value: Value = super::yaml::from_str(mesh).map_err(|e| Error::InvalidField {
                at: at.clone(),
                object: object.to_string(),
                field: "data.mesh".to_string(),
                message: format!("not valid YAML: {e}"),
            })?;
            let mesh_config: MeshConfig =
                decode(&at, object, &value).map_err(|e| prefix_field(e, "data.mesh."))?;
            self.snapshot_parts
                .mesh_configs
                .push((at, object.to_string(), mesh_config));
            return Ok(());
        }
        if name.starts_with("istio-sidecar-injector")
            && let Some(values) = data.get("values")
        {
            let value: Value = serde_json::from_str(values).map_err(|e| Error::InvalidField {
                at: at.clone(),
                object: object.to_string(),
                field: "data.values".to_string(),
                message: format!("not valid JSON: {e}"),
            })?;
            let flag = |pointer: &str| value.pointer(pointer).and_then(Value::as_bool);
            let revision = value
                .get("revision")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .or_else(|| {
                    name.strip_prefix("istio-sidecar-injector-")
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "default".to_string());
            // `config.policy`: a top-level key of the injector config (YAML with Go templates in
            // block strings, so it is read by line, not parsed).
            let policy_enabled = data.get("config").and_then(|c| {
                c.lines().find_map(|l| {
                    let v = l.strip_prefix("policy:")?.trim().trim_matches('"');
                    Some(v != "disabled")
                })
            });
            self.snapshot_parts.profile.injectors.insert(
                revision,
                InjectorSettings {
                    enable_namespaces_by_default: flag(
                        "/sidecarInjectorWebhook/enableNamespacesByDefault",
                    ),
                    policy_enabled,
                    hold_application_until_proxy_starts: flag(
                        "/global/proxy/holdApplicationUntilProxyStarts",
                    ),
                    rewrite_app_http_probe: flag("/sidecarInjectorWebhook/rewriteAppHTTPProbe"),
                    native_sidecars: value.pointer("/pilot/env/ENABLE_NATIVE_SIDECARS").and_then(
                        |v| match v {
                            Value::String(s) => Some(s.clone()),
                            Value::Bool(b) => Some(b.to_string()),
                            _ => None,
                        },
                    ),
                    source: object.to_string(),
                },
            );
            return Ok(());
        }
        // Counted as skipped at the end unless a workload mounts it.
        let namespace = cm
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let binary = cm.binary_data.unwrap_or_default();
        let read = AppConfigMap::read(&data, binary.keys());
        self.snapshot_parts
            .config_maps
            .insert((namespace, name.to_string()), read);
        Ok(())
    }

    pub fn build(self) -> Result<Snapshot> {
        let SnapshotBuilder {
            options,
            snapshot_parts: mut parts,
        } = self;
        let mut generated = HashMap::new();
        let mut canaries = add_canary_routing(&mut parts, &mut generated);

        // `istio` (the default revision) wins over `istio-<rev>`; `--mesh-config` over both.
        parts.mesh_configs.sort_by(|a, b| {
            (!a.1.ends_with("/istio"), &a.0).cmp(&(!b.1.ends_with("/istio"), &b.0))
        });
        parts.install_mesh_configs.sort_by(|a, b| a.0.cmp(&b.0));
        let (mesh_source, mesh) = match options.mesh_config {
            Some((source, mesh)) => {
                parts.profile.mesh_config = Some(format!("--mesh-config {}", source.file));
                (Some(source), mesh)
            }
            None => match parts.mesh_configs.into_iter().next() {
                Some((source, object, mesh)) => {
                    parts.profile.mesh_config = Some(format!("{object} ({source})"));
                    (Some(source), mesh)
                }
                // From an installation spec only when it is the one: several are overlays or
                // variants, and which is installed the input does not say.
                None => match <[_; 1]>::try_from(parts.install_mesh_configs) {
                    Ok([(source, object, field, mesh)]) => {
                        parts.profile.mesh_config = Some(format!("{field} of {object} ({source})"));
                        (Some(source), mesh)
                    }
                    Err(several) if !several.is_empty() => {
                        parts.profile.mesh_config = Some(format!(
                            "Istio defaults ({} installation specs in the input set one, the \
                             first {} ({}): none is read; give the installed one with \
                             --mesh-config)",
                            several.len(),
                            several[0].1,
                            several[0].0
                        ));
                        (None, MeshConfig::default())
                    }
                    Err(_) => (None, MeshConfig::default()),
                },
            },
        };
        let overrides = ProfileOverrides {
            istio_version: options.istio_version.clone(),
            kubernetes_version: options.kubernetes_version.clone(),
            assume_injected: options.assume_injected,
            file: options.profile.clone(),
        };
        let profile = MeshProfile::build(std::mem::take(&mut parts.profile), &overrides)?;
        let istio_version = profile.istio.clone();

        // Istio breaks ties between rules by age, then name: keep that order everywhere.
        fn order<T>(objs: &mut [Box<Obj<T>>]) {
            objs.sort_by(|a, b| {
                (
                    &a.meta.namespace,
                    a.meta.creation_timestamp.is_none(),
                    &a.meta.creation_timestamp,
                    &a.meta.name,
                )
                    .cmp(&(
                        &b.meta.namespace,
                        b.meta.creation_timestamp.is_none(),
                        &b.meta.creation_timestamp,
                        &b.meta.name,
                    ))
            });
        }
        order(&mut parts.services);
        order(&mut parts.destination_rules);
        order(&mut parts.virtual_services);
        order(&mut parts.sidecars);
        order(&mut parts.peer_authentications);
        order(&mut parts.envoy_filters);
        order(&mut parts.telemetries);
        order(&mut parts.http_routes);
        order(&mut canaries);
        parts.workloads.sort_by(|a, b| {
            (&a.meta.namespace, &a.kind, &a.meta.name).cmp(&(
                &b.meta.namespace,
                &b.kind,
                &b.meta.name,
            ))
        });

        // A ConfigMap is read when a workload mounts it; the others are skipped unread.
        let mounted: HashSet<(&str, &str)> = parts
            .workloads
            .iter()
            .flat_map(|w| {
                w.pod_spec.volumes.iter().filter_map(|v| {
                    let cm = v.config_map.as_ref()?;
                    Some((w.meta.namespace.as_str(), cm.name.as_str()))
                })
            })
            .collect();
        let unread = parts
            .config_maps
            .keys()
            .filter(|(ns, name)| !mounted.contains(&(ns.as_str(), name.as_str())))
            .count();
        if unread > 0 {
            *parts.skipped.entry("v1/ConfigMap".to_string()).or_default() += unread;
        }

        let mut snapshot = Snapshot {
            objects: Default::default(),
            rules_by_host: Default::default(),
            cluster_domain: options.cluster_domain,
            namespaces: parts.namespaces,
            services: parts.services,
            workloads: parts.workloads,
            destination_rules: parts.destination_rules,
            virtual_services: parts.virtual_services,
            sidecars: parts.sidecars,
            peer_authentications: parts.peer_authentications,
            envoy_filters: parts.envoy_filters,
            telemetries: parts.telemetries,
            http_routes: parts.http_routes,
            canaries,
            generated,
            mesh_route_parents: HashMap::new(),
            mesh,
            mesh_source,
            rewrite_probes_by_default: profile.rewrite_app_http_probe,
            istio_version,
            profile,
            skipped: parts.skipped,
            config_maps: parts.config_maps,
            service_workloads: Vec::new(),
            workload_services: Vec::new(),
            by_namespace: BTreeMap::new(),
        };
        // The indexes read the lists and not each other: which Service selects which workload
        // on one core, the others on another (this phase ran on one core, about a tenth of a
        // large run's time; README, Benchmarks). Halves of about 14 and 12 ms at 10,000
        // services.
        let two_cores =
            Snapshot::worth_two_cores(snapshot.services.len(), snapshot.workloads.len());
        let view = &snapshot;
        let ((selection, by_namespace), (rules_by_host, objects)) = if two_cores {
            std::thread::scope(|scope| {
                let half = scope.spawn(|| (select_workloads(view), namespace_index(view)));
                let rest = (host_index(view), view.index_objects());
                let half = half.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                (half, rest)
            })
        } else {
            (
                (select_workloads(view), namespace_index(view)),
                (host_index(view), view.index_objects()),
            )
        };
        (snapshot.service_workloads, snapshot.workload_services) = selection;
        snapshot.by_namespace = by_namespace;
        snapshot.rules_by_host = rules_by_host;
        snapshot.objects = objects;
        snapshot.mesh_route_parents = mesh_route_parents(&snapshot);
        Ok(snapshot)
    }
}

/// For each Service an HTTPRoute attaches to for mesh traffic, those HTTPRoutes (few: read
/// whole, without the halves above).
fn mesh_route_parents(snapshot: &Snapshot) -> HashMap<(String, String), Vec<usize>> {
    let mut out: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, route) in snapshot.http_routes.iter().enumerate() {
        for parent in &route.spec.parent_refs {
            if let Some((ns, name)) = parent.mesh_service(&route.meta.namespace) {
                let routes = out.entry((ns.to_string(), name.to_string())).or_default();
                if routes.last() != Some(&i) {
                    routes.push(i);
                }
            }
        }
    }
    out
}

/// For each Service the workloads it selects, and for each workload the Services selecting it.
fn select_workloads(snapshot: &Snapshot) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let (services, workloads) = (&snapshot.services, &snapshot.workloads);
    let mut workloads_by_ns: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, w) in workloads.iter().enumerate() {
        workloads_by_ns
            .entry(&w.meta.namespace)
            .or_default()
            .push(i);
    }
    // Workloads by namespace and pod label: a Service's selector is tried only on the
    // workloads that carry the rarest of its labels, not on every workload of its namespace
    // (quadratic: about a third of the 3.9 s 10,000 services in one namespace took; README,
    // Benchmarks).
    let mut by_label: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
    for (i, w) in workloads.iter().enumerate() {
        for (k, v) in w.pod_labels.iter() {
            by_label
                .entry((&w.meta.namespace, k, v))
                .or_default()
                .push(i);
        }
    }
    let mut service_workloads = Vec::with_capacity(services.len());
    let mut workload_services = vec![Vec::new(); workloads.len()];
    for (s, svc) in services.iter().enumerate() {
        let mut picked = Vec::new();
        if let Some(selector) = svc.spec.selector.as_ref().filter(|s| !s.is_empty()) {
            let ns = svc.meta.namespace.as_str();
            // A Rollout's revision label is not on its template (see `selects_pods_of`),
            // so it cannot narrow the search.
            let rarest = selector
                .iter()
                .filter(|(k, _)| *k != crate::model::rollout::POD_TEMPLATE_HASH)
                .map(|(k, v)| {
                    by_label
                        .get(&(ns, k, v))
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                })
                .min_by_key(|list| list.len());
            let candidates = rarest.unwrap_or_else(|| {
                workloads_by_ns
                    .get(ns)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            });
            // The workload detectors do not see the Service Flagger writes for a Canary: their
            // fixes select pods by label, and Flagger's primary pods carry another value of
            // its label than the target's.
            let flaggers = snapshot.is_generated("Service", ns, &svc.meta.name);
            for &w in candidates {
                if selects_pods_of(selector, &workloads[w]) {
                    picked.push(w);
                    if !flaggers {
                        workload_services[w].push(s);
                    }
                }
            }
        }
        service_workloads.push(picked);
    }
    (service_workloads, workload_services)
}

/// Each namespace's rules, Sidecars and PeerAuthentications, the last two by their selectors.
fn namespace_index(snapshot: &Snapshot) -> BTreeMap<String, NamespaceIndex> {
    let mut by_namespace: BTreeMap<String, NamespaceIndex> = BTreeMap::new();
    fn index<T>(
        objs: &[Box<Obj<T>>],
        by_ns: &mut BTreeMap<String, NamespaceIndex>,
        field: fn(&mut NamespaceIndex) -> &mut Vec<usize>,
    ) {
        for (i, o) in objs.iter().enumerate() {
            field(by_ns.entry(o.meta.namespace.clone()).or_default()).push(i);
        }
    }
    index(&snapshot.destination_rules, &mut by_namespace, |n| {
        &mut n.destination_rules
    });
    index(&snapshot.virtual_services, &mut by_namespace, |n| {
        &mut n.virtual_services
    });
    index(&snapshot.sidecars, &mut by_namespace, |n| &mut n.sidecars);
    for (i, sc) in snapshot.sidecars.iter().enumerate() {
        let selector = sc.spec.workload_selector.as_ref().map(|s| s.labels());
        let n = by_namespace.entry(sc.meta.namespace.clone()).or_default();
        n.sidecar_selectors.add(i, selector);
    }
    for (i, pa) in snapshot.peer_authentications.iter().enumerate() {
        let selector = pa.spec.selector.as_ref().map(|s| s.labels());
        let n = by_namespace.entry(pa.meta.namespace.clone()).or_default();
        n.peer_authentication_selectors.add(i, selector);
    }

    by_namespace
}

/// VirtualServices and DestinationRules by the hosts they name, and gateway routes by the
/// hosts they send requests to.
fn host_index(snapshot: &Snapshot) -> super::HostIndex {
    let domain = &snapshot.cluster_domain;
    let mut rules_by_host = super::HostIndex::default();
    for (i, vs) in snapshot.virtual_services.iter().enumerate() {
        if !super::lookup::mesh_bound(&vs.spec) {
            let per_route = super::lookup::route_destinations(vs, domain);
            let mut to: Vec<&String> = per_route.iter().flatten().collect();
            to.sort_unstable();
            to.dedup();
            for host in to {
                rules_by_host
                    .gateway_routes_to
                    .entry(host.clone())
                    .or_default()
                    .push(i);
            }
            rules_by_host.gateway_route_hosts.insert(i, per_route);
        }
        for h in &vs.spec.hosts {
            by_host(
                &mut rules_by_host.virtual_services,
                &mut rules_by_host.virtual_services_wildcard,
                hosts::resolve(h, &vs.meta.namespace, domain),
                i,
            );
        }
    }
    for (i, dr) in snapshot.destination_rules.iter().enumerate() {
        by_host(
            &mut rules_by_host.destination_rules,
            &mut rules_by_host.destination_rules_wildcard,
            hosts::resolve(&dr.spec.host, &dr.meta.namespace, domain),
            i,
        );
    }
    rules_by_host
}

/// A rule at position `i` under the host it names (resolved), or with the wildcards.
fn by_host(
    exact: &mut hashbrown::HashMap<String, Vec<usize>>,
    wildcard: &mut Vec<usize>,
    resolved: String,
    i: usize,
) {
    if resolved.starts_with('*') {
        wildcard.push(i);
    } else {
        exact
            .entry(resolved.to_ascii_lowercase())
            .or_default()
            .push(i);
    }
}

/// meshmedic's hints and the proxy config annotation are user input: a value that does not parse
/// is an error naming the field, not a silently ignored hint. The object's name and the field's
/// prefix are made only for an error (most objects carry none of these annotations).
fn validate_annotations(
    at: &Source,
    object: impl Fn() -> String,
    field_prefix: impl Fn() -> String,
    annotations: &crate::model::Labels,
) -> Result<()> {
    let bad = |key: &str, message: String| Error::InvalidField {
        at: at.clone(),
        object: object(),
        field: format!("{}[{key:?}]", field_prefix()),
        message,
    };
    for key in [keys::APP_IDLE_TIMEOUT, keys::APP_SHUTDOWN_TIMEOUT] {
        if let Some(v) = annotations.get(key) {
            duration::parse(v).map_err(|e| bad(key, e))?;
        }
    }
    if let Some(v) = annotations.get(keys::PROXY_CONFIG) {
        let value: Value = super::yaml::from_str(v)
            .map_err(|e| bad(keys::PROXY_CONFIG, format!("not valid YAML: {e}")))?;
        serde_path_to_error::deserialize::<_, ProxyConfig>(&value)
            .map_err(|e| bad(keys::PROXY_CONFIG, format!("{}: {}", e.path(), e.inner())))?;
    }
    if let Some(v) = annotations.get(keys::IGNORE) {
        for code in v.split(',').filter(|c| !c.trim().is_empty()) {
            if Code::parse(code).is_none() {
                return Err(bad(
                    keys::IGNORE,
                    format!("unknown finding code {:?}", code.trim()),
                ));
            }
        }
    }
    Ok(())
}

fn has_controller(meta: &ObjectMeta) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true))
}

fn prefix_field(e: Error, prefix: &str) -> Error {
    match e {
        Error::InvalidField {
            at,
            object,
            field,
            message,
        } => Error::InvalidField {
            at,
            object,
            field: format!("{prefix}{field}"),
            message,
        },
        other => other,
    }
}

/// Decodes an Istio object: metadata through k8s-openapi, spec through meshmedic's typed view.
fn istio_obj<'de, T: DeserializeOwned + Default>(
    at: Source,
    api_version: &str,
    kind: &str,
    object: &str,
    value: impl Decodable<'de>,
    raw: Option<Raw>,
) -> Result<Obj<T>> {
    #[derive(serde::Deserialize)]
    struct Shape<T> {
        #[serde(default)]
        metadata: ObjectMeta,
        spec: Option<T>,
    }
    let (shape, raw): (Shape<T>, Raw) = decode_keep(&at, object, value, raw)?;
    Ok(Obj {
        api_version: crate::model::type_name(api_version),
        kind: crate::model::type_name(kind),
        meta: Meta::from_owned_meta(shape.metadata, DEFAULT_NAMESPACE),
        source: at,
        raw,
        spec: shape.spec.unwrap_or_default(),
    })
}

/// A document made ready off the builder ([`SnapshotBuilder::prepare`]).
pub struct Prepared(PreparedInner);

// Every large part is boxed on its own, at its own size: one box the size of the largest
// variant (a Service, 688 bytes) for every object was 32 MB of the 105 MB held after reading
// 10,000 services (heaptrack), and a box per document's entry list is held until the build.
enum PreparedInner {
    Decoded(Decoded),
    /// A known kind whose fields have the wrong type.
    Refused(Box<Error>),
    /// Decoded by the builder (the kinds [`read_later`] names, lists; few per mesh).
    Later(Box<(Source, Value, Option<Raw>)>),
    /// A kind the analysis does not read, as `skipped` counts it.
    Skipped(String),
}

impl Prepared {
    /// A kind the analysis does not read: nothing of it is kept but its count.
    pub fn is_skipped(&self) -> bool {
        matches!(self.0, PreparedInner::Skipped(_))
    }
}

/// The kinds [`SnapshotBuilder::add_other`] reads; it counts every other one in `skipped`.
fn read_later(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Namespace" | "ConfigMap" | "Node")
            | (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration"
            )
    ) || super::install::is_install(group, kind)
}

/// How `skipped` names a kind.
fn skipped_key(api_version: &str, kind: &str) -> String {
    format!("{api_version}/{kind}")
}

/// Whether a Service's selector picks the pods of `w`. A Rollout's pods also carry the
/// revision label its controller adds (and puts on the canary and stable Services' selectors).
fn selects_pods_of(selector: &crate::model::Labels, w: &Workload) -> bool {
    if w.kind != "Rollout" {
        return selects(selector, &w.pod_labels);
    }
    selector
        .iter()
        .filter(|(k, _)| *k != crate::model::rollout::POD_TEMPLATE_HASH)
        .all(|(k, v)| w.pod_labels.get(k) == Some(v))
}

/// A typed object, ready to be added.
enum Decoded {
    Service(Box<Obj<crate::model::service::ServiceSpec>>),
    /// With the istiod it shows, if it is one.
    Workload(Box<Workload>, Option<Box<IstiodSeen>>),
    DestinationRule(Box<Obj<DestinationRuleSpec>>),
    VirtualService(Box<Obj<VirtualServiceSpec>>),
    Sidecar(Box<Obj<SidecarSpec>>),
    EnvoyFilter(Box<Obj<EnvoyFilterSpec>>),
    PeerAuthentication(Box<Obj<PeerAuthenticationSpec>>),
    Telemetry(Box<Obj<TelemetrySpec>>),
    HttpRoute(Box<Obj<HttpRouteSpec>>),
    Canary(Box<CanaryRouting>),
    /// An istiod Deployment whose template is refused (the error), though its version counts.
    IstiodThenError(Box<IstiodSeen>, Box<Error>),
    /// Left out: a pod (or ReplicaSet, Job) that a controller made.
    Nothing,
}

/// The kinds [`decode_known`] decodes: they need nothing but their document, and they are
/// most of a large input.
fn decoded_early(group: &str, kind: &str) -> bool {
    served_version(group, kind).is_some()
        || matches!(
            (group, kind),
            ("argoproj.io", "Rollout")
                | ("flagger.app", "Canary")
                | (
                    "networking.istio.io",
                    "DestinationRule" | "VirtualService" | "Sidecar" | "EnvoyFilter"
                )
                | ("security.istio.io", "PeerAuthentication")
                | ("telemetry.istio.io", "Telemetry")
                | ("gateway.networking.k8s.io", "HTTPRoute")
        )
}

/// [`decode_known`] for the kinds it decodes; the document back for the others.
#[allow(clippy::result_large_err)]
fn decode_object(
    at: Source,
    api_version: &str,
    kind: &str,
    object: &str,
    value: Value,
    raw: Option<Raw>,
) -> std::result::Result<Result<Decoded>, (Source, Value)> {
    if !decoded_early(group_of(api_version), kind) {
        return Err((at, value));
    }
    Ok(decode_known(at, api_version, kind, object, value, raw))
}

/// The Kubernetes kinds read early, with the one version of each that k8s-openapi decodes; the
/// others (`apps/v1beta1`, `batch/v1beta1`, ...) were removed from Kubernetes. So was the
/// `extensions` group's workloads (Kubernetes 1.16): named as such, not skipped unread as an
/// unknown kind (twelve Deployments of redhat-scholars/istio-tutorial were).
fn served_version(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("", "Service" | "Pod") => Some("v1"),
        ("apps" | "extensions", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => {
            Some("apps/v1")
        }
        ("batch", "Job" | "CronJob") => Some("batch/v1"),
        _ => None,
    }
}

fn decode_known<'de>(
    at: Source,
    api_version: &str,
    kind: &str,
    object: &str,
    value: impl Decodable<'de>,
    raw: Option<Raw>,
) -> Result<Decoded> {
    // k8s-openapi refuses another version as the whole object ("field `(object)`", found in
    // GoogleCloudPlatform/istio-samples): the field is named, and why.
    if let Some(served) = served_version(group_of(api_version), kind)
        && api_version != served
    {
        return Err(Error::InvalidField {
            at,
            object: object.to_string(),
            field: "apiVersion".to_string(),
            message: format!(
                "{api_version} is not served by Kubernetes any more, so kubectl apply refuses \
                 it and meshmedic leaves it out: {kind} is served as {served}"
            ),
        });
    }
    let workload = |w: Result<Workload>, istiod: Option<IstiodSeen>| match (w, istiod) {
        (Ok(w), istiod) => Ok(Decoded::Workload(Box::new(w), istiod.map(Box::new))),
        // istiod is seen even when its Deployment is then refused.
        (Err(e), Some(istiod)) => Ok(Decoded::IstiodThenError(Box::new(istiod), Box::new(e))),
        (Err(e), None) => Err(e),
    };
    // The kinds whose pod template is at `spec.template`.
    let templated = |metadata: ObjectMeta, at: Source, raw: Raw, template, labels| {
        new_workload(
            api_version,
            kind,
            metadata,
            at,
            raw,
            "/spec/template",
            template,
            labels,
        )
    };
    // An Istio kind: its spec typed, kept as its `Decoded` variant.
    macro_rules! istio {
        ($variant:ident) => {
            Decoded::$variant(Box::new(istio_obj(
                at,
                api_version,
                kind,
                object,
                value,
                raw,
            )?))
        };
    }
    Ok(match (group_of(api_version), kind) {
        ("", "Service") => {
            let (svc, raw): (Service, Raw) = decode_keep(&at, object, value, raw)?;
            let meta = Meta::from_owned_meta(svc.metadata, DEFAULT_NAMESPACE);
            validate_annotations(
                &at,
                || object.to_string(),
                || "metadata.annotations".into(),
                &meta.annotations,
            )?;
            Decoded::Service(Box::new(Obj {
                api_version: crate::model::type_name(api_version),
                kind: crate::model::type_name(kind),
                meta,
                source: at,
                raw,
                spec: svc.spec.map(Into::into).unwrap_or_default(),
            }))
        }
        ("", "Pod") => {
            let (pod, raw): (Pod, Raw) = decode_keep(&at, object, value, raw)?;
            // A pod that a controller made is analysed through its controller's template.
            if has_controller(&pod.metadata) {
                return Ok(Decoded::Nothing);
            }
            let meta = Meta::from_object_meta(&pod.metadata, DEFAULT_NAMESPACE);
            validate_annotations(
                &at,
                || object.to_string(),
                || "metadata.annotations".into(),
                &meta.annotations,
            )?;
            let template = PodTemplateSpec {
                metadata: Some(pod.metadata),
                spec: pod.spec,
            };
            let w = Workload::from_template(api_version, kind, meta, at, raw, "", template, None);
            return workload(Ok(w), None);
        }
        ("apps", "Deployment") => {
            let (d, raw): (Deployment, Raw) = decode_keep(&at, object, value, raw)?;
            let istiod = istiod_of(&d);
            let (template, labels) = (d.spec.template, d.spec.selector.match_labels);
            return workload(templated(d.metadata, at, raw, template, labels), istiod);
        }
        ("apps", "StatefulSet") => {
            let (o, raw): (StatefulSet, Raw) = decode_keep(&at, object, value, raw)?;
            let (template, labels) = (o.spec.template, o.spec.selector.match_labels);
            return workload(templated(o.metadata, at, raw, template, labels), None);
        }
        ("apps", "DaemonSet") => {
            let (o, raw): (DaemonSet, Raw) = decode_keep(&at, object, value, raw)?;
            let (template, labels) = (o.spec.template, o.spec.selector.match_labels);
            return workload(templated(o.metadata, at, raw, template, labels), None);
        }
        ("apps", "ReplicaSet") => {
            let (s, raw): (ReplicaSet, Raw) = decode_keep(&at, object, value, raw)?;
            if has_controller(&s.metadata) {
                return Ok(Decoded::Nothing);
            }
            let template = s.spec.template.unwrap_or_default();
            let labels = s.spec.selector.match_labels;
            return workload(templated(s.metadata, at, raw, template, labels), None);
        }
        ("batch", "Job") => {
            let (j, raw): (Job, Raw) = decode_keep(&at, object, value, raw)?;
            if has_controller(&j.metadata) {
                return Ok(Decoded::Nothing);
            }
            let spec = j.spec.unwrap_or_default();
            let labels = spec.selector.and_then(|s| s.match_labels);
            return workload(templated(j.metadata, at, raw, spec.template, labels), None);
        }
        ("batch", "CronJob") => {
            let (c, raw): (CronJob, Raw) = decode_keep(&at, object, value, raw)?;
            let template = c
                .spec
                .job_template
                .spec
                .map(|s| s.template)
                .unwrap_or_default();
            let w = new_workload(
                api_version,
                kind,
                c.metadata,
                at,
                raw,
                "/spec/jobTemplate/spec/template",
                template,
                None,
            );
            return workload(w, None);
        }
        ("argoproj.io", "Rollout") => {
            let (r, raw): (Rollout, Raw) = decode_keep(&at, object, value, raw)?;
            // With `workloadRef` (and no template of its own) the pods are the named
            // Deployment's template, which is read as that Deployment.
            let Some(template) = r.spec.template else {
                return Ok(Decoded::Nothing);
            };
            let labels = r.spec.selector.and_then(|s| s.match_labels);
            return workload(templated(r.metadata, at, raw, template, labels), None);
        }
        ("flagger.app", "Canary") => {
            let (c, raw): (Canary, Raw) = decode_keep(&at, object, value, raw)?;
            // Another provider's Canary (Linkerd, Gateway API, ...) writes no Istio rule.
            if !c.spec.routes_with_istio() {
                return Ok(Decoded::Nothing);
            }
            Decoded::Canary(Box::new(canary_routing(at, api_version, object, c, raw)?))
        }
        ("networking.istio.io", "DestinationRule") => istio!(DestinationRule),
        ("networking.istio.io", "VirtualService") => istio!(VirtualService),
        ("networking.istio.io", "Sidecar") => istio!(Sidecar),
        ("networking.istio.io", "EnvoyFilter") => istio!(EnvoyFilter),
        ("security.istio.io", "PeerAuthentication") => istio!(PeerAuthentication),
        ("telemetry.istio.io", "Telemetry") => istio!(Telemetry),
        ("gateway.networking.k8s.io", "HTTPRoute") => istio!(HttpRoute),
        // decoded_early() names no other kind.
        _ => Decoded::Nothing,
    })
}

/// A Canary and the Istio objects Flagger writes for it (see [`super::flagger`]); the Service
/// is finished (its selector) by [`SnapshotBuilder::build`], once the target is known.
pub(super) struct CanaryRouting {
    canary: Obj<CanarySpec>,
    virtual_service: Obj<VirtualServiceSpec>,
    destination_rule: Obj<DestinationRuleSpec>,
    service: Obj<crate::model::service::ServiceSpec>,
}

/// Decodes what Flagger writes for `c` as Istio and Kubernetes objects, with the Canary's
/// place: a field of them that is refused is named as the Canary's field it comes from.
fn canary_routing(
    at: Source,
    api_version: &str,
    object: &str,
    c: Canary,
    raw: Raw,
) -> Result<CanaryRouting> {
    let missing = |field: &str, message: &str| Error::InvalidField {
        at: at.clone(),
        object: object.to_string(),
        field: field.to_string(),
        message: message.to_string(),
    };
    if c.spec.target_ref.name.is_empty() {
        return Err(missing(
            "spec.targetRef.name",
            "missing: Flagger needs the workload it releases",
        ));
    }
    if c.spec.service.port == 0 {
        return Err(missing(
            "spec.service.port",
            "missing: Flagger needs the port of the Service it writes",
        ));
    }
    let meta = Meta::from_owned_meta(c.metadata, DEFAULT_NAMESPACE);
    let ns = meta.namespace.as_str();
    // A field of what Flagger writes that is refused is named as the Canary's field.
    let from_canary = |kind: &str, e: Error| match e {
        Error::InvalidField { field, message, .. } => Error::InvalidField {
            at: at.clone(),
            object: object.to_string(),
            field: super::flagger::canary_field(kind, &field),
            message,
        },
        other => other,
    };
    fn rule<T: DeserializeOwned + Default>(
        at: &Source,
        kind: &str,
        value: Value,
        from_canary: &dyn Fn(&str, Error) -> Error,
    ) -> Result<Obj<T>> {
        let name = describe(kind, &value);
        let version = super::flagger::ISTIO_API_VERSION;
        istio_obj(at.clone(), version, kind, &name, value, None).map_err(|e| from_canary(kind, e))
    }
    let vs = super::flagger::virtual_service(ns, &c.spec);
    let virtual_service = rule(&at, "VirtualService", vs, &from_canary)?;
    let dr = super::flagger::destination_rule(ns, &c.spec);
    let destination_rule = rule(&at, "DestinationRule", dr, &from_canary)?;
    let svc = super::flagger::service(ns, &c.spec, None);
    let (decoded, svc_raw): (Service, Raw) =
        decode_keep(&at, &describe("Service", &svc), svc, None)
            .map_err(|e| from_canary("Service", e))?;
    let service = Obj {
        api_version: crate::model::type_name("v1"),
        kind: crate::model::type_name("Service"),
        meta: Meta::from_owned_meta(decoded.metadata, DEFAULT_NAMESPACE),
        source: at.clone(),
        raw: svc_raw,
        spec: decoded.spec.map(Into::into).unwrap_or_default(),
    };
    Ok(CanaryRouting {
        canary: Obj {
            api_version: crate::model::type_name(api_version),
            kind: crate::model::type_name("Canary"),
            meta,
            source: at,
            raw,
            spec: c.spec,
        },
        virtual_service,
        destination_rule,
        service,
    })
}

/// Adds what Flagger writes for each Canary that the input does not already hold under the
/// same name (Flagger adopts a Service of the apex's name; it is read as the input has it), and
/// notes each as the Canary's in `generated`.
#[allow(clippy::vec_box)]
fn add_canary_routing(
    parts: &mut Parts,
    generated: &mut HashMap<(&'static str, String, String), String>,
) -> Vec<Box<Obj<CanarySpec>>> {
    if parts.canaries.is_empty() {
        return Vec::new();
    }
    // The names taken in each list, looked up once per Canary.
    fn names<T>(list: &[Box<Obj<T>>]) -> HashSet<(String, String)> {
        list.iter()
            .map(|o| (o.meta.namespace.clone(), o.meta.name.clone()))
            .collect()
    }
    let mut taken_vs = names(&parts.virtual_services);
    let mut taken_dr = names(&parts.destination_rules);
    let mut taken_svc = names(&parts.services);
    let mut canaries = Vec::with_capacity(parts.canaries.len());
    for routing in std::mem::take(&mut parts.canaries) {
        let CanaryRouting {
            canary,
            virtual_service,
            destination_rule,
            mut service,
        } = *routing;
        let ns = &canary.meta.namespace;
        let mut note = |kind: &'static str, name: &str| {
            generated.insert(
                (kind, ns.clone(), name.to_string()),
                canary.meta.name.clone(),
            );
        };
        if taken_vs.insert((ns.clone(), virtual_service.meta.name.clone())) {
            note("VirtualService", &virtual_service.meta.name);
            parts.virtual_services.push(Box::new(virtual_service));
        }
        if taken_dr.insert((ns.clone(), destination_rule.meta.name.clone())) {
            note("DestinationRule", &destination_rule.meta.name);
            parts.destination_rules.push(Box::new(destination_rule));
        }
        if taken_svc.insert((ns.clone(), service.meta.name.clone())) {
            let target = &canary.spec.target_ref;
            let kind = if target.kind.is_empty() {
                "Deployment"
            } else {
                target.kind.as_str()
            };
            let selector = parts
                .workloads
                .iter()
                .find(|w| &w.meta.namespace == ns && w.kind == kind && w.meta.name == target.name)
                .map(|w| &w.selector_labels);
            // Without the target in the input the Service selects nothing: no pods are known.
            if let Some(selector) = selector {
                service.spec.selector = Some(super::flagger::apex_selector(selector));
                service.raw = Raw::from(super::flagger::service(ns, &canary.spec, Some(selector)));
            }
            note("Service", &service.meta.name);
            parts.services.push(Box::new(service));
        }
        canaries.push(Box::new(canary));
    }
    flaggers_own_objects(parts, &canaries, generated);
    canaries
}

/// Notes as the Canary's the VirtualServices and DestinationRules of the input that Flagger
/// wrote for it (a controller owner reference to it): a cluster's objects dumped with
/// `kubectl get -o yaml`. Flagger rewrites them from the Canary as it does the ones modelled
/// above.
#[allow(clippy::vec_box)]
fn flaggers_own_objects(
    parts: &Parts,
    canaries: &[Box<Obj<CanarySpec>>],
    generated: &mut HashMap<(&'static str, String, String), String>,
) {
    let namespaces: HashSet<&str> = canaries.iter().map(|c| c.meta.namespace.as_str()).collect();
    // The Canary that controls the object, as the GitOps check reads controllers.
    let owner = |raw: &Raw| match crate::controller::gitops::controller(
        raw.pointer("/metadata/ownerReferences"),
    ) {
        Some(crate::controller::gitops::GitOpsOwner::Controller {
            api_version,
            kind,
            name,
        }) if kind == "Canary" && group_of(&api_version) == "flagger.app" => Some(name),
        _ => None,
    };
    let mut mark = |kind: &'static str, meta: &Meta, raw: &Raw| {
        if !namespaces.contains(meta.namespace.as_str()) {
            return;
        }
        let Some(name) = owner(raw) else { return };
        let known = canaries
            .iter()
            .any(|c| c.meta.namespace == meta.namespace && c.meta.name == name);
        if known {
            generated.insert((kind, meta.namespace.clone(), meta.name.clone()), name);
        }
    };
    for o in &parts.virtual_services {
        mark("VirtualService", &o.meta, &o.raw);
    }
    for o in &parts.destination_rules {
        mark("DestinationRule", &o.meta, &o.raw);
    }
    // Not its Services: no fix changes a Service, and Flagger's select the primary's pods by
    // the primary's own labels, so the workload detectors judge them as any other.
}

#[allow(clippy::too_many_arguments)]
fn new_workload(
    api_version: &str,
    kind: &str,
    metadata: ObjectMeta,
    at: Source,
    raw: Raw,
    template_pointer: &'static str,
    template: PodTemplateSpec,
    match_labels: Option<BTreeMap<String, String>>,
) -> Result<Workload> {
    let meta = Meta::from_owned_meta(metadata, DEFAULT_NAMESPACE);
    let workload = Workload::from_template(
        api_version,
        kind,
        meta,
        at,
        raw,
        template_pointer,
        template,
        match_labels,
    );
    validate_annotations(
        &workload.source,
        || format!("{kind} {}/{}", workload.meta.namespace, workload.meta.name),
        || {
            format!(
                "{}.metadata.annotations",
                template_pointer.trim_start_matches('/').replace('/', ".")
            )
        },
        &workload.pod_annotations,
    )?;
    Ok(workload)
}

/// istiod's image tag tells which Istio version (and so which defaults) the mesh runs; its
/// env which sidecars it injects; its `istio.io/rev` label which revision it serves.
fn istiod_of(d: &Deployment) -> Option<IstiodSeen> {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    if name != "istiod" && !name.starts_with("istiod-") {
        return None;
    }
    let containers = d
        .spec
        .template
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let discovery = containers.iter().find(|c| c.name == "discovery")?;
    let revision = d
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(keys::NS_REV))
        .cloned()
        .or_else(|| name.strip_prefix("istiod-").map(str::to_string))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let native_sidecars = discovery
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "ENABLE_NATIVE_SIDECARS")
        .and_then(|e| e.value.clone());
    Some(IstiodSeen {
        revision,
        image: discovery.image.clone(),
        version: None,
        native_sidecars,
        object: format!(
            "Deployment {}/{name}",
            d.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
        ),
    })
}
