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
use std::ops::Range;

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

/// Labels or annotations: string keys to string values, sorted by key, held as one string.
///
/// Each pair is its key and its value, each after its length: one block a set, where a slice of
/// `(String, String)` took 48 bytes a pair and a block for each string (five such sets a
/// workload; README, Benchmarks). A length up to 65,535 is one `char` (`length_char`); a longer
/// one, which only an annotation holds, is `LONG` and four `char`s of 16 bits each. Serialized
/// as a map, in key order, as before.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<str>);

/// Lengths at or above the surrogates (`U+D800`) are written this far up.
const LENGTH_SKIP: u32 = 0x800;

/// Stands before a length too long for one `char`.
const LONG: char = '\u{10FFFF}';

/// A number up to 65,535 as the `char` that stands for it (past the surrogates).
fn length_char(n: u16) -> char {
    let n = u32::from(n);
    char::from_u32(if n < 0xD800 { n } else { n + LENGTH_SKIP }).unwrap_or(LONG)
}

/// The number a `char` of [`length_char`] stands for.
fn char_length(c: char) -> usize {
    let n = c as u32;
    (if n < 0xD800 { n } else { n - LENGTH_SKIP }) as usize
}

/// Writes `len` as [`Labels`] reads it.
fn push_length(text: &mut String, len: usize) {
    match u16::try_from(len) {
        Ok(n) => text.push(length_char(n)),
        Err(_) => {
            text.push(LONG);
            let len = len as u64;
            for shift in [48, 32, 16, 0] {
                text.push(length_char((len >> shift) as u16));
            }
        }
    }
}

/// The length written at `at` in a packed set, and where its string starts. Nearly every
/// length is below 128, one byte: read as such, without decoding a `char`.
#[inline(always)]
fn length_at(text: &str, at: usize) -> Option<(usize, usize)> {
    let byte = *text.as_bytes().get(at)?;
    if byte < 0x80 {
        return Some((usize::from(byte), at + 1));
    }
    long_length_at(text, at)
}

/// [`length_at`] of a length of 128 or more: a `char` of several bytes, or [`LONG`] and four.
/// Kept out of line, so that the one-byte case inlines small into every lookup.
#[cold]
#[inline(never)]
fn long_length_at(text: &str, at: usize) -> Option<(usize, usize)> {
    let mut chars = text.get(at..)?.chars();
    let c = chars.next()?;
    if c != LONG {
        return Some((char_length(c), at + c.len_utf8()));
    }
    let mut len: u64 = 0;
    let mut end = at + c.len_utf8();
    for _ in 0..4 {
        let part = chars.next()?;
        len = (len << 16) | char_length(part) as u64;
        end += part.len_utf8();
    }
    Some((usize::try_from(len).ok()?, end))
}

/// Where each key and value of a packed set lies in its text, in order: what both
/// [`Labels::get`] and [`LabelsIter`] walk.
#[derive(Clone)]
struct Spans<'a> {
    text: &'a str,
    at: usize,
}

impl Iterator for Spans<'_> {
    type Item = (Range<usize>, Range<usize>);
    #[inline(always)]
    fn next(&mut self) -> Option<(Range<usize>, Range<usize>)> {
        let (key_len, key_start) = length_at(self.text, self.at)?;
        let key_end = key_start + key_len;
        let (value_len, value_start) = length_at(self.text, key_end)?;
        let value_end = value_start + value_len;
        self.at = value_end;
        Some((key_start..key_end, value_start..value_end))
    }
}

/// The pairs of a packed set, in order.
#[derive(Clone)]
pub struct LabelsIter<'a>(Spans<'a>);

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a str, &'a str);
    #[inline]
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let text = self.0.text;
        let (key, value) = self.0.next()?;
        Some((text.get(key)?, text.get(value)?))
    }
}

impl Labels {
    fn spans(&self) -> Spans<'_> {
        Spans {
            text: &self.0,
            at: 0,
        }
    }

    /// The value of `key`. Keys are compared as bytes, after their lengths: every detector
    /// asks for several keys of every workload.
    pub fn get(&self, key: &str) -> Option<&str> {
        let bytes = self.0.as_bytes();
        for (k, value) in self.spans() {
            if k.len() == key.len() && bytes.get(k) == Some(key.as_bytes()) {
                return self.0.get(value);
            }
        }
        None
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter(self.spans())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The set of `pairs`, which must be sorted by key and unique (a `BTreeMap`'s order).
    fn from_sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Labels {
        let size: usize = pairs.clone().map(|(k, v)| k.len() + v.len() + 8).sum();
        let mut text = String::with_capacity(size);
        for (k, v) in pairs {
            for part in [k, v] {
                push_length(&mut text, part.len());
                text.push_str(part);
            }
        }
        Labels(text.into_boxed_str())
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Labels {
        Labels::from_sorted(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Labels {
        Labels::from(iter.into_iter().collect::<BTreeMap<_, _>>())
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = LabelsIter<'a>;
    fn into_iter(self) -> LabelsIter<'a> {
        self.iter()
    }
}

/// Read as a `BTreeMap<String, String>` is, by reading one (the same values and error
/// messages; a key given twice keeps its last value): the map is dropped at once, only the
/// packed text is kept.
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
    selector: impl IntoIterator<Item = (&'a str, &'a str)>,
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

    /// A set holds any strings: empty ones, multi-byte characters, a NUL, lengths on both
    /// sides of the surrogates' numbers and past one `char` (annotations of 60,000 and
    /// 200,000 bytes); it gives back what the map held, in its order, and serializes as the
    /// map does.
    #[test]
    fn a_packed_set_gives_back_any_strings_in_order() {
        let long = "é".repeat(30_000);
        let map: BTreeMap<String, String> = [
            ("", "empty key"),
            ("app", ""),
            ("über", "grüße 🚀"),
            ("nul", "a\0b"),
            ("edge", &"x".repeat(0xD7FF)),
            ("past", &"y".repeat(0xD800)),
            ("long", &long),
            ("longer", &"z".repeat(200_000)),
            ("max", &"m".repeat(0xFFFF)),
            ("past-max", &"n".repeat(0x10000)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let labels = Labels::from(map.clone());
        assert_eq!(
            labels.iter().collect::<Vec<_>>(),
            map.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>()
        );
        assert_eq!(labels.len(), map.len());
        for (k, v) in &map {
            assert_eq!(labels.get(k), Some(v.as_str()), "{k}");
        }
        assert_eq!(
            serde_json::to_string(&labels).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        assert!(Labels::default().is_empty());
        assert_eq!(Labels::default().iter().count(), 0);
    }

    /// `get` finds what a map finds, in small sets and large ones.
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
                assert_eq!(
                    labels.get(&probe),
                    map.get(&probe).map(String::as_str),
                    "{size} {probe}"
                );
            }
            assert_eq!(labels.get(""), None);
            assert_eq!(labels.get("k"), None);
        }
    }
}
