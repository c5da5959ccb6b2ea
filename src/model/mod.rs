//! Typed Kubernetes and Istio objects (k8s-openapi for core kinds, `kube::CustomResource` views for
//! Istio kinds) and the small value types shared by every stage.

pub mod duration;
pub mod flagger;
pub mod gateway_api;
pub mod istio;
pub mod remediation;
pub mod rollout;
pub mod service;
pub mod workload;

pub use duration::GoDuration;

use std::collections::BTreeMap;

use serde::Serialize;

/// Annotations and labels meshmedic reads and writes.
pub mod keys {
    pub const MODE: &str = "meshmedic.io/mode";
    pub const APP_IDLE_TIMEOUT: &str = "meshmedic.io/app-idle-timeout";
    pub const APP_SHUTDOWN_TIMEOUT: &str = "meshmedic.io/app-shutdown-timeout";
    pub const NON_IDEMPOTENT: &str = "meshmedic.io/non-idempotent";
    pub const IGNORE: &str = "meshmedic.io/ignore";
    pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "meshmedic";

    pub const PROXY_CONFIG: &str = "proxy.istio.io/config";
    pub const INJECT: &str = "sidecar.istio.io/inject";
    pub const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
    pub const REWRITE_PROBES: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
    pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
    pub const NS_INJECTION: &str = "istio-injection";
    pub const NS_REV: &str = "istio.io/rev";
}

/// Labels or annotations: string keys to string values, sorted by key, held as one boxed slice.
/// A `BTreeMap` allocates a node of ~550 bytes for even one entry, and a workload carries five
/// such maps (README, Benchmarks); this holds exactly its entries. Serialized as a map, in key
/// order, as the `BTreeMap` was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(Box<[(String, String)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&String> {
        // Most label sets hold a few entries: a scan's string comparisons stop at a length that
        // differs (nearly every one), where a binary search compares bytes at each step (every
        // detector asks for several keys of every workload).
        if self.0.len() <= 8 {
            return self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        }
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Labels {
        // Already sorted by key, and unique.
        Labels(map.into_iter().collect::<Vec<_>>().into_boxed_slice())
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Labels {
        Labels::from(iter.into_iter().collect::<BTreeMap<_, _>>())
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// Read as a `BTreeMap<String, String>` is, by reading one (the same values and error
/// messages; a key given twice keeps its last value): the map is dropped at once, only the
/// slice is kept.
impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Labels::from)
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// The metadata fields the analysis reads, the same for every kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    pub annotations: Labels,
    /// RFC 3339, as the API server writes it; Istio breaks ties between rules by age.
    pub creation_timestamp: Option<String>,
}

impl Meta {
    pub fn from_object_meta(
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        default_namespace: &str,
    ) -> Meta {
        Meta::from_owned_meta(meta.clone(), default_namespace)
    }

    /// [`Meta::from_object_meta`] of metadata the caller gives up: its strings and maps are
    /// moved, not copied (six allocations an object, at 40,000 objects).
    pub fn from_owned_meta(
        meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        default_namespace: &str,
    ) -> Meta {
        Meta {
            name: meta.name.unwrap_or_default(),
            namespace: meta
                .namespace
                .unwrap_or_else(|| default_namespace.to_string()),
            labels: meta.labels.map(Labels::from).unwrap_or_default(),
            annotations: meta.annotations.map(Labels::from).unwrap_or_default(),
            creation_timestamp: meta.creation_timestamp.as_ref().map(|t| {
                serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }),
        }
    }
}

/// A reference to an object a remediation targets.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// An object's `apiVersion` or `kind`. The kinds meshmedic reads name a few strings, the same
/// for every object: those are shared, not allocated for each object (80,000 allocations at
/// 10,000 services; README, Benchmarks). Anything else is kept as written.
pub type TypeName = std::borrow::Cow<'static, str>;

/// `apiVersion`s and kinds of the objects meshmedic decodes, sorted (a test checks).
const TYPE_NAMES: &[&str] = &[
    "CronJob",
    "DaemonSet",
    "Deployment",
    "DestinationRule",
    "EnvoyFilter",
    "HTTPRoute",
    "Job",
    "PeerAuthentication",
    "Pod",
    "ReplicaSet",
    "Rollout",
    "Service",
    "Sidecar",
    "StatefulSet",
    "Telemetry",
    "VirtualService",
    "apps/v1",
    "argoproj.io/v1alpha1",
    "batch/v1",
    "gateway.networking.k8s.io/v1",
    "gateway.networking.k8s.io/v1beta1",
    "networking.istio.io/v1",
    "networking.istio.io/v1alpha3",
    "networking.istio.io/v1beta1",
    "security.istio.io/v1",
    "security.istio.io/v1beta1",
    "telemetry.istio.io/v1",
    "telemetry.istio.io/v1alpha1",
    "v1",
];

/// `name` as a [`TypeName`]: shared when it is one of [`TYPE_NAMES`].
pub fn type_name(name: &str) -> TypeName {
    match TYPE_NAMES.binary_search(&name) {
        Ok(i) => TypeName::Borrowed(TYPE_NAMES[i]),
        Err(_) => TypeName::Owned(name.to_string()),
    }
}

/// `true` when every label of `selector` is on `labels` (an empty selector selects everything).
pub fn selects<'a>(
    selector: impl IntoIterator<Item = (&'a String, &'a String)>,
    labels: &Labels,
) -> bool {
    selector.into_iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_shared_when_known_and_kept_otherwise() {
        assert!(
            TYPE_NAMES.windows(2).all(|w| w[0] < w[1]),
            "sorted, once each"
        );
        for name in TYPE_NAMES {
            assert!(matches!(type_name(name), TypeName::Borrowed(n) if n == *name));
        }
        let other = type_name("example.com/v2");
        assert!(matches!(other, TypeName::Owned(_)));
        assert_eq!(other, "example.com/v2");
    }

    /// `Labels` reads what a `BTreeMap<String, String>` reads, with the same errors.
    #[test]
    fn labels_read_as_a_string_map_does() {
        for json in [
            r#"{}"#,
            r#"{"b": "2", "a": "1"}"#,
            r#"{"a": "1", "b": "2", "a": "3"}"#,
            r#"{"z": "", "a": "x", "m": "y", "a": "w", "z": "v"}"#,
            r#"{"a": 1}"#,
            r#"{"a": null}"#,
            r#"["a"]"#,
            r#""a""#,
            r#"null"#,
        ] {
            let map = serde_json::from_str::<BTreeMap<String, String>>(json);
            let labels = serde_json::from_str::<Labels>(json);
            match (map, labels) {
                (Ok(map), Ok(labels)) => assert_eq!(Labels::from(map), labels, "{json}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{json}"),
                (a, b) => panic!("{json}: {a:?} against {b:?}"),
            }
        }
    }

    /// `get` finds what a map finds, in small sets (scanned) and large ones (searched).
    #[test]
    fn get_finds_what_a_map_finds_in_small_and_large_sets() {
        for size in [0, 1, 2, 8, 9, 40] {
            let map: BTreeMap<String, String> = (0..size)
                .map(|i| {
                    (
                        format!("k{}", "x".repeat(i % 5)) + &i.to_string(),
                        i.to_string(),
                    )
                })
                .collect();
            let labels = Labels::from(map.clone());
            for probe in (0..size + 3).map(|i| format!("k{}", "x".repeat(i % 5)) + &i.to_string()) {
                assert_eq!(labels.get(&probe), map.get(&probe), "{size} {probe}");
            }
            assert_eq!(labels.get(""), None);
            assert_eq!(labels.get("k"), None);
        }
    }
}
