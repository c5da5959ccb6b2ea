//! An object as the user wrote it, kept only as its YAML text until something asks for it.
//!
//! Every object of a snapshot keeps its raw form: fixes are patches against it. Holding it as a
//! `serde_json::Value` tree (the generic tree of the whole document, beside the typed view) was
//! most of `meshmedic analyze`'s memory (README, Benchmarks): a tree costs ~10× the text it was
//! read from, and only the few objects a fix targets are ever read raw. Objects read from files
//! therefore keep their document's text (shared) and parse it again, once, when first asked;
//! objects from the API server keep the compact JSON the operator's stores hold
//! (`SnapshotBuilder::add_json`), read the same way; `SnapshotBuilder::add` keeps a value.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

/// A document's text: a range of its file's text, which every document of the file shares
/// (one copy of a 13 MB file instead of two), or text of its own.
#[derive(Clone)]
pub struct DocText(DocInner);

#[derive(Clone)]
enum DocInner {
    Shared(Arc<String>, std::ops::Range<usize>),
    Own(Arc<str>),
}

impl DocText {
    /// `part` of `file`, shared when it is a slice of it, else copied.
    pub fn of(file: Option<&Arc<String>>, part: &str) -> DocText {
        if let Some(file) = file {
            let start = (part.as_ptr() as usize).wrapping_sub(file.as_ptr() as usize);
            if start <= file.len() && file.len() - start >= part.len() {
                return DocText(DocInner::Shared(file.clone(), start..start + part.len()));
            }
        }
        DocText::from(part)
    }
}

impl From<&str> for DocText {
    fn from(text: &str) -> DocText {
        DocText(DocInner::Own(text.into()))
    }
}

impl From<Arc<str>> for DocText {
    fn from(text: Arc<str>) -> DocText {
        DocText(DocInner::Own(text))
    }
}

impl Deref for DocText {
    type Target = str;
    fn deref(&self) -> &str {
        match &self.0 {
            DocInner::Shared(file, range) => &file[range.clone()],
            DocInner::Own(text) => text,
        }
    }
}

impl std::fmt::Debug for DocText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// The raw object: a `Value`, read from its text on first use. Dereferences to `&Value`.
#[derive(Clone)]
pub struct Raw(Inner);

#[derive(Clone)]
enum Inner {
    /// Boxed, like the value read from a text: only tests and the few objects meshmedic builds
    /// hold one, and a `Raw` stays the size of its text's reference.
    Value(Box<Value>),
    /// Not boxed: every object read from a file or the operator's stores holds one (a box each
    /// was 40,000 allocations and 5 MB at 10,000 services; README, Benchmarks).
    Text(Text),
}

#[derive(Clone)]
struct Text {
    /// The document's text, as `snapshot::load` split it from its file.
    text: DocText,
    /// The object's index in the document's `items` (a `kind: List`).
    item: Option<usize>,
    /// JSON written by meshmedic itself (the operator's stores), read with serde_json; a
    /// user's file is always read as YAML, as kubectl reads it (JSON included).
    json: bool,
    value: OnceLock<Box<Value>>,
}

impl Raw {
    /// An object that is the document `text` (or its `items[item]`), read when first asked.
    /// The text must be one that `yaml::from_str` read without error.
    pub fn from_text(text: DocText, item: Option<usize>) -> Raw {
        Raw(Inner::Text(Text {
            text,
            item,
            json: false,
            value: OnceLock::new(),
        }))
    }

    /// An object serialized by meshmedic (`serde_json::to_string` of a `Value`), read when
    /// first asked.
    pub fn from_json(text: Arc<str>) -> Raw {
        Raw(Inner::Text(Text {
            text: text.into(),
            item: None,
            json: true,
            value: OnceLock::new(),
        }))
    }

    pub fn value(&self) -> &Value {
        match &self.0 {
            Inner::Value(v) => v,
            Inner::Text(t) => t.value.get_or_init(|| Box::new(t.read())),
        }
    }

    /// The value, owned, without keeping it: a fix that copies the object to patch it reads its
    /// text again instead of leaving a second tree in the snapshot.
    pub fn to_value(&self) -> Value {
        match &self.0 {
            Inner::Text(t) if t.value.get().is_none() => t.read(),
            _ => self.value().clone(),
        }
    }

    /// The YAML text the object was read from, when it is its document whole (not an item of
    /// a `List`, not JSON the operator keeps): what a fix can be planned on without a tree.
    pub fn yaml_text(&self) -> Option<&str> {
        match &self.0 {
            Inner::Text(t) if !t.json && t.item.is_none() => Some(&t.text),
            _ => None,
        }
    }

    /// Whether the value has been built (for tests and measurements).
    pub fn is_read(&self) -> bool {
        match &self.0 {
            Inner::Value(_) => true,
            Inner::Text(t) => t.value.get().is_some(),
        }
    }
}

impl Text {
    fn read(&self) -> Value {
        if self.json {
            return serde_json::from_str(&self.text).unwrap_or(Value::Null);
        }
        read(&self.text, self.item)
    }
}

/// The document `text`, or its `items[item]`. The text was read once already, so this is the
/// same value; should it fail anyway, the object reads as null rather than taking the process
/// down.
fn read(text: &str, item: Option<usize>) -> Value {
    let Ok(mut doc) = super::yaml::from_str(text) else {
        return Value::Null;
    };
    match item {
        None => doc,
        Some(i) => match doc.get_mut("items").and_then(|v| v.get_mut(i)) {
            Some(v) => v.take(),
            None => Value::Null,
        },
    }
}

impl Deref for Raw {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

impl From<Value> for Raw {
    fn from(value: Value) -> Raw {
        Raw(Inner::Value(Box::new(value)))
    }
}

impl Default for Raw {
    fn default() -> Raw {
        Raw(Inner::Value(Box::new(Value::Null)))
    }
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value().fmt(f)
    }
}

impl PartialEq for Raw {
    fn eq(&self, other: &Raw) -> bool {
        self.value() == other.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_read_on_first_use_and_list_items_are_picked() {
        let doc: Arc<str> = Arc::from("apiVersion: v1\nkind: List\nitems:\n- {a: 1}\n- {b: yes}\n");
        let raw = Raw::from_text(doc.clone().into(), Some(1));
        assert_eq!(raw.to_value(), serde_json::json!({"b": true}));
        assert!(!raw.is_read());
        assert_eq!(raw.value(), &serde_json::json!({"b": true}));
        assert!(raw.is_read());
        let json = Raw::from_json(Arc::from(r#"{"a":"yes","b":1.0}"#));
        assert_eq!(json.to_value(), serde_json::json!({"a": "yes", "b": 1.0}));
        let whole = Raw::from_text(doc.clone().into(), None);
        let file = Arc::new(format!("# head\n{doc}"));
        let shared = DocText::of(Some(&file), &file[7..]);
        assert!(matches!(shared.0, DocInner::Shared(_, ref r) if *r == (7..file.len())));
        assert_eq!(&*shared, &*doc);
        assert!(matches!(
            DocText::of(Some(&file), "other").0,
            DocInner::Own(_)
        ));
        assert_eq!(whole["items"][0]["a"], 1);
        assert_eq!(
            Raw::from(serde_json::json!(3)).value(),
            &serde_json::json!(3)
        );
    }
}

#[cfg(test)]
mod sizes {
    #[test]
    #[ignore = "prints the sizes of the snapshot's types (README, Benchmarks)"]
    fn print_sizes() {
        use std::mem::size_of;
        eprintln!(
            "Workload {} PodSpec {} (k8s-openapi {}) Container {} (k8s-openapi {}) Probe {} (k8s-openapi {}) HttpRoute {} Obj<ServiceSpec> {} Obj<DR> {} Obj<VS> {} Meta {} Raw {} Value {}",
            size_of::<crate::model::workload::Workload>(),
            size_of::<crate::model::workload::PodSpec>(),
            size_of::<k8s_openapi::api::core::v1::PodSpec>(),
            size_of::<crate::model::workload::Container>(),
            size_of::<k8s_openapi::api::core::v1::Container>(),
            size_of::<crate::model::workload::Probe>(),
            size_of::<k8s_openapi::api::core::v1::Probe>(),
            size_of::<crate::model::istio::HttpRoute>(),
            size_of::<super::super::Obj<crate::model::service::ServiceSpec>>(),
            size_of::<super::super::Obj<crate::model::istio::DestinationRuleSpec>>(),
            size_of::<super::super::Obj<crate::model::istio::VirtualServiceSpec>>(),
            size_of::<crate::model::Meta>(),
            size_of::<super::Raw>(),
            size_of::<serde_json::Value>(),
        );
    }
}
