//! Exact rollback, decided without the API server: which fields meshmedic changed (the
//! difference between the target before its first write and after its last one), whether
//! someone else has changed them since, and the JSON patch that puts the old values back.

use serde_json::{Value, json};

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The JSON pointers (under `prefix`) where `a` and `b` differ, as deep as both sides are objects
/// (or lists of the same length). A key present on one side only is one path.
pub fn changed_paths(prefix: &str, a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(prefix, Some(a), Some(b), &mut out);
    out
}

fn diff(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            for (k, v) in x {
                diff(&format!("{path}/{}", escape(k)), Some(v), y.get(k), out);
            }
            for (k, v) in y {
                if !x.contains_key(k) {
                    diff(&format!("{path}/{}", escape(k)), None, Some(v), out);
                }
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}/{i}"), Some(v), Some(w), out);
            }
        }
        (a, b) if a != b => out.push(path.to_string()),
        _ => {}
    }
}

fn at<'a>(doc: &'a Value, prefix: &str, path: &str) -> Option<&'a Value> {
    doc.pointer(path.strip_prefix(prefix).unwrap_or(path))
}

/// The paths meshmedic changed (original → written) that no longer hold what it wrote in
/// `current`: someone else's edits, which a rollback must not overwrite.
pub fn conflicts(prefix: &str, original: &Value, written: &Value, current: &Value) -> Vec<String> {
    changed_paths(prefix, original, written)
        .into_iter()
        .filter(|p| at(written, prefix, p) != at(current, prefix, p))
        .collect()
}

/// RFC 6902 operations that take every path meshmedic changed from its written value back to the
/// original one. Each is pinned with a `test` of the written value where there is one, so a
/// concurrent edit makes the whole patch fail (nothing written) instead of being overwritten.
/// Everything else in the object is left as it is.
pub fn restore_ops(prefix: &str, original: &Value, written: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    for path in changed_paths(prefix, original, written) {
        let old = at(original, prefix, &path);
        let new = at(written, prefix, &path);
        if let Some(new) = new {
            ops.push(json!({"op": "test", "path": path, "value": new}));
        }
        match (old, new) {
            (Some(old), Some(_)) => ops.push(json!({"op": "replace", "path": path, "value": old})),
            (None, Some(_)) => ops.push(json!({"op": "remove", "path": path})),
            (Some(old), None) => ops.push(json!({"op": "add", "path": path, "value": old})),
            (None, None) => {}
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remediation::apply;

    fn vs() -> Value {
        json!({"hosts": ["cart"], "http": [{"route": [{"destination": {"host": "cart"}}], "timeout": "5s"}]})
    }

    #[test]
    fn restore_puts_back_exactly_what_meshmedic_changed() {
        let original = vs();
        let mut written = vs();
        written["http"][0]["retries"] = json!({"attempts": 3, "retryOn": "reset"});
        written["http"][0]["timeout"] = json!("10s");
        let ops = restore_ops("/spec", &original, &written);
        let mut obj = json!({"metadata": {"name": "cart"}, "spec": written});
        apply(&mut obj, &ops).unwrap();
        assert_eq!(obj["spec"], original);
    }

    #[test]
    fn another_field_edited_by_someone_is_kept_and_meshmedics_fields_are_restored() {
        let original = vs();
        let mut written = vs();
        written["http"][0]["retries"] = json!({"attempts": 3});
        let mut current = written.clone();
        current["hosts"] = json!(["cart", "cart.shop"]);
        assert!(conflicts("/spec", &original, &written, &current).is_empty());
        let mut obj = json!({"spec": current});
        apply(&mut obj, &restore_ops("/spec", &original, &written)).unwrap();
        assert_eq!(obj["spec"]["hosts"], json!(["cart", "cart.shop"]));
        assert!(obj["spec"]["http"][0].get("retries").is_none());
    }

    #[test]
    fn an_edit_of_meshmedics_fields_is_a_conflict_and_the_patch_fails_whole() {
        let original = vs();
        let mut written = vs();
        written["http"][0]["retries"] = json!({"attempts": 3});
        let mut current = written.clone();
        current["http"][0]["retries"]["attempts"] = json!(5);
        assert_eq!(
            conflicts("/spec", &original, &written, &current),
            vec!["/spec/http/0/retries".to_string()]
        );
        let mut obj = json!({"spec": current.clone()});
        assert!(apply(&mut obj, &restore_ops("/spec", &original, &written)).is_err());
        assert_eq!(obj["spec"], current, "nothing written");
    }
}
