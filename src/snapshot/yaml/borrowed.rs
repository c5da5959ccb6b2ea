//! A document as the tree typed objects are decoded from, without its JSON.
//!
//! Reading a manifest into `serde_json::Value` and then into typed objects built a map (hashed
//! keys, an owned string per key) for every mapping, only to take it apart again: with the
//! freeing, a third of reading 10,000 services. [`Borrowed`] keeps keys and plain strings as
//! slices of the document's text, and decodes into typed objects exactly as a `Value` does:
//! every method of its `Deserializer` gives what `serde_json::Value`'s owned deserializer gives,
//! errors included (their messages name the field and the type, as before), and null, booleans
//! and numbers are that very `Value`. Strings a typed object does not keep are never copied.

use std::borrow::Cow;

use serde::de::{self, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde_json::{Error, Map, Value};

/// A document or part of one: its scalars resolved as `super::from_str` resolves them.
#[derive(Debug, Clone, PartialEq)]
pub enum Borrowed<'a> {
    /// Null, a boolean or a number, as JSON has it.
    Scalar(Value),
    Str(Cow<'a, str>),
    Seq(Vec<Borrowed<'a>>),
    /// In the document's order; no key twice (the parser leaves such a mapping to the full one).
    Map(Vec<(Cow<'a, str>, Borrowed<'a>)>),
}

impl<'a> Borrowed<'a> {
    /// The document as JSON: the value `super::from_str` gives for the same text.
    pub fn into_value(self) -> Value {
        match self {
            Borrowed::Scalar(v) => v,
            Borrowed::Str(s) => Value::String(s.into_owned()),
            Borrowed::Seq(items) => Value::Array(items.into_iter().map(Self::into_value).collect()),
            Borrowed::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    map.insert(k.into_owned(), v.into_value());
                }
                Value::Object(map)
            }
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Borrowed<'a>> {
        match self {
            Borrowed::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Borrowed::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `value` as a tree that owns its strings (a fix's new value, put into a document).
    pub fn from_value(value: Value) -> Borrowed<'static> {
        match value {
            Value::String(s) => Borrowed::Str(Cow::Owned(s)),
            Value::Array(items) => Borrowed::Seq(items.into_iter().map(Self::from_value).collect()),
            Value::Object(map) => Borrowed::Map(
                map.into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Self::from_value(v)))
                    .collect(),
            ),
            scalar => Borrowed::Scalar(scalar),
        }
    }

    /// Whether this is `value`, as `Value`'s own `==` decides: a mapping's keys in any order.
    pub fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Borrowed::Scalar(a), b) => a == b,
            (Borrowed::Str(a), Value::String(b)) => a == b,
            (Borrowed::Seq(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y))
            }
            (Borrowed::Map(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.get(k.as_ref()).is_some_and(|w| v.equals(w)))
            }
            _ => false,
        }
    }

    /// Its levels: a scalar or an empty collection 1, a collection 1 more than its deepest item.
    pub fn levels(&self) -> usize {
        match self {
            Borrowed::Scalar(_) | Borrowed::Str(_) => 1,
            Borrowed::Seq(items) => 1 + items.iter().map(Self::levels).max().unwrap_or(0),
            Borrowed::Map(entries) => {
                1 + entries.iter().map(|(_, v)| v.levels()).max().unwrap_or(0)
            }
        }
    }

    fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Borrowed::Scalar(Value::Null) => Unexpected::Unit,
            Borrowed::Scalar(Value::Bool(b)) => Unexpected::Bool(*b),
            Borrowed::Scalar(Value::Number(n)) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Unexpected::Unsigned(u),
                (None, Some(i), _) => Unexpected::Signed(i),
                (_, _, Some(f)) => Unexpected::Float(f),
                _ => Unexpected::Other("number"),
            },
            Borrowed::Scalar(_) => Unexpected::Other("value"),
            Borrowed::Str(s) => Unexpected::Str(s),
            Borrowed::Seq(_) => Unexpected::Seq,
            Borrowed::Map(_) => Unexpected::Map,
        }
    }

    fn invalid_type(&self, exp: &dyn de::Expected) -> Error {
        de::Error::invalid_type(self.unexpected(), exp)
    }
}

/// A scalar is decoded by its `Value` itself: the same visits and the same errors.
fn scalar(node: Borrowed<'_>) -> Option<Value> {
    match node {
        Borrowed::Scalar(v) => Some(v),
        Borrowed::Str(s) => Some(Value::String(s.into_owned())),
        Borrowed::Seq(_) | Borrowed::Map(_) => None,
    }
}

/// As `serde_json`'s `visit_array`: the whole sequence must be taken.
fn visit_seq<'de, V: Visitor<'de>>(
    items: Vec<Borrowed<'de>>,
    visitor: V,
) -> Result<V::Value, Error> {
    let len = items.len();
    let mut access = SeqAccess(items.into_iter());
    // The visitor's result is returned as it is, not taken out of its `Result` and put in
    // another: a k8s-openapi struct is kilobytes, copied at each level (README, Benchmarks).
    let out = visitor.visit_seq(&mut access);
    if out.is_ok() && access.0.len() != 0 {
        drop(out);
        return Err(de::Error::invalid_length(len, &"fewer elements in array"));
    }
    out
}

/// As `serde_json`'s `visit_object`: the whole mapping must be taken.
fn visit_map<'de, V: Visitor<'de>>(
    entries: Vec<(Cow<'de, str>, Borrowed<'de>)>,
    visitor: V,
) -> Result<V::Value, Error> {
    let len = entries.len();
    let mut access = MapAccess {
        entries: entries.into_iter(),
        value: None,
    };
    let out = visitor.visit_map(&mut access);
    if out.is_ok() && access.entries.len() != 0 {
        drop(out);
        return Err(de::Error::invalid_length(len, &"fewer elements in map"));
    }
    out
}

/// A method that only scalars answer (a collection is the wrong type).
macro_rules! scalar_only {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self {
                    Borrowed::Seq(_) | Borrowed::Map(_) => Err(self.invalid_type(&visitor)),
                    node => scalar(node).unwrap_or(Value::Null).$method(visitor),
                }
            }
        )*
    };
}

/// Written as the `Value` it stands for is written (a mapping in its order; `serde_json` with
/// `preserve_order` writes a `Value`'s in insertion order, which is the document's).
impl serde::Serialize for Borrowed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Borrowed::Scalar(v) => v.serialize(serializer),
            Borrowed::Str(s) => serializer.serialize_str(s),
            Borrowed::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Borrowed::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserializer<'de> for Borrowed<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Borrowed::Seq(items) => visit_seq(items, visitor),
            Borrowed::Map(entries) => visit_map(entries, visitor),
            node => scalar(node).unwrap_or(Value::Null).deserialize_any(visitor),
        }
    }

    scalar_only! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_unit deserialize_identifier
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Borrowed::Seq(items) => visit_seq(items, visitor),
            Borrowed::Map(_) => Err(self.invalid_type(&visitor)),
            node => scalar(node)
                .unwrap_or(Value::Null)
                .deserialize_bytes(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Borrowed::Scalar(Value::Null) => visitor.visit_none(),
            node => visitor.visit_some(node),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Borrowed::Seq(items) => visit_seq(items, visitor),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Borrowed::Map(entries) => visit_map(entries, visitor),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Borrowed::Seq(items) => visit_seq(items, visitor),
            Borrowed::Map(entries) => visit_map(entries, visitor),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Borrowed::Map(entries) => {
                if entries.len() != 1 {
                    return Err(de::Error::invalid_value(
                        Unexpected::Map,
                        &"map with a single key",
                    ));
                }
                // Decoded by the value it would be in JSON (rare: no kind meshmedic reads
                // early has an enum written as a mapping).
                Borrowed::Map(entries)
                    .into_value()
                    .deserialize_enum(name, variants, visitor)
            }
            Borrowed::Seq(_) => Err(de::Error::invalid_type(Unexpected::Seq, &"string or map")),
            node => scalar(node)
                .unwrap_or(Value::Null)
                .deserialize_enum(name, variants, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        drop(self);
        visitor.visit_unit()
    }
}

struct SeqAccess<'de>(std::vec::IntoIter<Borrowed<'de>>);

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.next() {
            Some(item) => seed.deserialize(item).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct MapAccess<'de> {
    entries: std::vec::IntoIter<(Cow<'de, str>, Borrowed<'de>)>,
    value: Option<Borrowed<'de>>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(KeyDeserializer(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A mapping key: a string, as a JSON object's key is. Keys that a type reads as numbers or
/// booleans are read from the text (meshmedic's typed objects have none).
struct KeyDeserializer<'de>(Cow<'de, str>);

macro_rules! key_from_text {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                // serde_json's object keys: the text as a JSON value, else the string.
                match serde_json::from_str::<Value>(&self.0) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_))) => v.$method(visitor),
                    _ => Err(de::Error::invalid_type(Unexpected::Str(&self.0), &visitor)),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for KeyDeserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
            Cow::Owned(s) => visitor.visit_string(s),
        }
    }

    key_from_text! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let key: de::value::StringDeserializer<Error> = self.0.into_owned().into_deserializer();
        key.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use crate::snapshot::yaml::block::parse_borrowed;
    use serde::de::DeserializeOwned;

    /// Decodes `yaml` through the borrowed tree and through JSON: the same result, or the
    /// same error message and field path.
    fn same<T: DeserializeOwned + std::fmt::Debug + PartialEq>(yaml: &str) {
        let tree = parse_borrowed(yaml).expect("plain block YAML");
        let value = crate::snapshot::yaml::from_str(yaml).unwrap();
        assert_eq!(tree.clone().into_value(), value, "{yaml}");
        let from_tree: Result<T, _> = serde_path_to_error::deserialize(tree);
        let from_value: Result<T, _> = serde_path_to_error::deserialize(value);
        match (from_tree, from_value) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{yaml}"),
            (Err(a), Err(b)) => {
                assert_eq!(a.path().to_string(), b.path().to_string(), "{yaml}");
                assert_eq!(a.inner().to_string(), b.inner().to_string(), "{yaml}");
            }
            (a, b) => panic!("{yaml}: tree {a:?}, value {b:?}"),
        }
    }

    #[test]
    fn typed_objects_decode_as_from_json() {
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::core::v1::Service;
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web, tier: \"1\"}\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      annotations:\n        a: yes\n    spec:\n      containers:\n      - name: app\n        image: nginx:1.27\n        args: [\"-c\", 0x1F]\n        ports:\n        - containerPort: 8080\n          protocol: TCP\n        resources:\n          limits: {cpu: 500m, memory: 1Gi}\n        readinessProbe:\n          httpGet: {path: /ready, port: http}\n";
        same::<Deployment>(deployment);
        same::<Service>(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n  - port: 81\n    targetPort: web\n",
        );
    }

    #[test]
    fn type_errors_name_the_same_field_and_type() {
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::core::v1::Service;
        for yaml in [
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: http\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: {port: 80}\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 99999999999\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 1.5\n",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: [a]\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: {a: 1}}\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: [a]}\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: 3\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: -1\n",
        ] {
            same::<Service>(yaml);
        }
        same::<Deployment>(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {}\n  template:\n    spec:\n      containers:\n      - name: a\n        ports:\n        - containerPort: x\n",
        );
        same::<Deployment>(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {}\n  template:\n    spec:\n      containers: {}\n",
        );
    }

    #[test]
    fn istio_kinds_decode_as_from_json() {
        use crate::model::istio::{DestinationRuleSpec, VirtualServiceSpec};
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Shape<T> {
            spec: Option<T>,
        }
        same::<Shape<DestinationRuleSpec>>(
            "spec:\n  host: a\n  trafficPolicy:\n    connectionPool:\n      http: {idleTimeout: 1h, maxRequestsPerConnection: 100}\n    tls: {mode: ISTIO_MUTUAL}\n  subsets:\n  - name: v1\n    labels: {version: v1}\n",
        );
        same::<Shape<DestinationRuleSpec>>("spec:\n  host: [a]\n");
        same::<Shape<VirtualServiceSpec>>(
            "spec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a, port: {number: 80}}\n    retries: {attempts: 3, retryOn: \"5xx,reset\"}\n    timeout: 10s\n",
        );
        same::<Shape<VirtualServiceSpec>>("spec:\n  hosts: a\n");
    }

    #[test]
    fn a_key_given_twice_is_left_to_the_full_parser() {
        assert!(parse_borrowed("a: 1\na: 2\n").is_none());
        assert!(parse_borrowed("a: {b: 1, b: 2}\n").is_none());
        assert!(parse_borrowed("a: 1\nb: 2\n").is_some());
    }

    #[test]
    fn non_string_keys_are_their_json_text() {
        let tree = parse_borrowed("y: 1\n0x10: 2\nplain: 3\n").unwrap();
        assert_eq!(
            tree.into_value(),
            crate::snapshot::yaml::from_str("y: 1\n0x10: 2\nplain: 3\n").unwrap()
        );
    }
}
