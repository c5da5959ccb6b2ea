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
/// Everything else in the object is left as it is. Named items that only changed places (the
/// proxy moved first) are moved back, each pinned by its name, and then compared by name: an
/// item someone edited since keeps the edit where meshmedic did not write.
pub fn restore_ops(prefix: &str, original: &Value, written: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    restore(prefix, Some(original), Some(written), &mut ops);
    ops
}

fn restore(path: &str, old: Option<&Value>, new: Option<&Value>, ops: &mut Vec<Value>) {
    match (old, new) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            for (k, v) in x {
                restore(&format!("{path}/{}", escape(k)), Some(v), y.get(k), ops);
            }
            for (k, v) in y {
                if !x.contains_key(k) {
                    restore(&format!("{path}/{}", escape(k)), None, Some(v), ops);
                }
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            let moves = crate::remediation::moves_between(y, x).filter(|m| !m.is_empty());
            let Some(moves) = moves else {
                for (i, (v, w)) in x.iter().zip(y).enumerate() {
                    restore(&format!("{path}/{i}"), Some(v), Some(w), ops);
                }
                return;
            };
            // The written order, moved item by item into the original one.
            let mut order: Vec<&Value> = y.iter().collect();
            for (from, to) in moves {
                let item = order.remove(from);
                ops.push(json!({"op": "test", "path": format!("{path}/{from}/name"),
                                "value": item.get("name")}));
                ops.push(json!({"op": "move", "from": format!("{path}/{from}"),
                                "path": format!("{path}/{to}")}));
                order.insert(to, item);
            }
            for (i, (v, w)) in x.iter().zip(order).enumerate() {
                restore(&format!("{path}/{i}"), Some(v), Some(w), ops);
            }
        }
        (old, new) if old != new => {
            if let Some(new) = new {
                ops.push(json!({"op": "test", "path": path, "value": new}));
            }
            match (old, new) {
                (Some(old), Some(_)) => {
                    ops.push(json!({"op": "replace", "path": path, "value": old}))
                }
                (None, Some(_)) => ops.push(json!({"op": "remove", "path": path})),
                (Some(old), None) => ops.push(json!({"op": "add", "path": path, "value": old})),
                (None, None) => {}
            }
        }
        _ => {}
    }
}

fn overlaps(a: &str, b: &str) -> bool {
    let within = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
    within(a, b) || within(b, a)
}

fn value_at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    doc.pointer(path)
}

/// Whether every field meshmedic owns still holds the last value meshmedic wrote there (a field
/// written by several writes is judged by the last one). Err: the first path someone changed.
/// The undo's moves are made on a copy as they come, so the fields after them are read where
/// the undo finds them.
pub fn intact(spec: &Value, undos: &[Vec<Value>]) -> Result<(), String> {
    let mut doc = json!({ "spec": spec });
    let mut covered: Vec<String> = Vec::new();
    for ops in undos.iter().rev() {
        let mut touched = Vec::new();
        for op in ops {
            let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
            touched.push(path.to_string());
            match op.get("op").and_then(Value::as_str) {
                Some("move") => {
                    if let Some(from) = op.get("from").and_then(Value::as_str) {
                        touched.push(from.to_string());
                    }
                    crate::remediation::apply(&mut doc, std::slice::from_ref(op))
                        .map_err(|_| path.to_string())?;
                    continue;
                }
                Some("test") => {}
                _ => continue,
            }
            if covered.iter().any(|c| overlaps(c, path)) {
                continue;
            }
            if value_at(&doc, path) != op.get("value") {
                return Err(path.to_string());
            }
        }
        covered.extend(touched);
    }
    Ok(())
}

/// Undoes meshmedic's writes on `spec` (the target's current spec), last write first: each
/// field goes back to the value it had before the write that changed it. A field already back
/// at that value (someone reverted it) is left alone; a field holding anything else is someone
/// else's edit: Err with its path, and nothing is to be written.
pub fn undo(spec: &Value, undos: &[Vec<Value>]) -> Result<Value, String> {
    let mut doc = json!({ "spec": spec });
    // The moves made so far, to name a conflict where the target has it now.
    let mut moved: Vec<(String, String)> = Vec::new();
    for ops in undos.iter().rev() {
        let mut k = 0;
        while k < ops.len() {
            let op = &ops[k];
            let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
            let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
            let (expected, restore) = if kind == "test" {
                k += 1;
                (op.get("value"), ops.get(k))
            } else {
                (None, Some(op))
            };
            k += 1;
            let Some(restore) = restore else { break };
            let before = match restore.get("op").and_then(Value::as_str) {
                Some("remove") => None,
                _ => restore.get("value"),
            };
            let now = value_at(&doc, path);
            if now == before {
                continue; // already as it was before this write
            }
            if now != expected {
                return Err(as_it_is_now(path, &moved));
            }
            crate::remediation::apply(&mut doc, std::slice::from_ref(restore))
                .map_err(|e| format!("{} ({e})", as_it_is_now(path, &moved)))?;
            if restore.get("op").and_then(Value::as_str) == Some("move") {
                let from = restore
                    .get("from")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let to = restore
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                moved.push((from.to_string(), to.to_string()));
            }
        }
    }
    Ok(doc.get("spec").cloned().unwrap_or(Value::Null))
}

/// `path`, read after the `moved` list items were moved (from, to), as it is in the target
/// before them: the path a person finds the field at.
fn as_it_is_now(path: &str, moved: &[(String, String)]) -> String {
    let mut path = path.to_string();
    for (from, to) in moved.iter().rev() {
        let (Some((list, f)), Some((_, t))) = (from.rsplit_once('/'), to.rsplit_once('/')) else {
            continue;
        };
        let (Ok(f), Ok(t)) = (f.parse::<usize>(), t.parse::<usize>()) else {
            continue;
        };
        let Some(rest) = path.strip_prefix(&format!("{list}/")) else {
            continue;
        };
        let (index, tail) = rest.split_once('/').map_or((rest, ""), |(i, r)| (i, r));
        let Ok(i) = index.parse::<usize>() else {
            continue;
        };
        // The move took the item at `f` out and put it at `t`: the items between shifted.
        let before = if i == t {
            f
        } else if f < t && (f..t).contains(&i) {
            i + 1
        } else if t < f && (t + 1..=f).contains(&i) {
            i - 1
        } else {
            i
        };
        path = if tail.is_empty() {
            format!("{list}/{before}")
        } else {
            format!("{list}/{before}/{tail}")
        };
    }
    path
}

/// The undo log as one RFC 6902 patch (last write first): atomic on the API server.
pub fn undo_patch(undos: &[Vec<Value>]) -> Vec<Value> {
    undos.iter().rev().flatten().cloned().collect()
}

/// Where someone else has marked an object meshmedic created as theirs, as JSON pointers: a
/// label other than meshmedic's own (see `remediation::creation_labels`, the only labels a
/// created object is given), meshmedic's label changed or removed, any annotation, or the owner
/// reference to its Remediation (`remediation_uid`) removed. Empty: the object carries only what
/// meshmedic gave it. A GitOps tool adopting the object, a person labelling it for their own
/// tooling or detaching it from its Remediation all show here; deleting it then would lose
/// what they wrote. `kubectl.kubernetes.io/last-applied-configuration` is not counted: kubectl
/// keeps it for itself, the stores drop it, and whatever the apply changed shows elsewhere.
pub fn others_marks(object: &Value, remediation_uid: Option<&str>) -> Vec<String> {
    use crate::model::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
    let mut out = Vec::new();
    let map = |key: &str| {
        object
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_object)
    };
    let labels = map("labels");
    for (k, v) in labels.into_iter().flatten() {
        if k != MANAGED_BY_LABEL || v.as_str() != Some(MANAGED_BY_VALUE) {
            out.push(format!("/metadata/labels/{}", escape(k)));
        }
    }
    if !labels.is_some_and(|l| l.contains_key(MANAGED_BY_LABEL)) {
        out.push(format!("/metadata/labels/{}", escape(MANAGED_BY_LABEL)));
    }
    for k in map("annotations").into_iter().flatten().map(|(k, _)| k) {
        if k != "kubectl.kubernetes.io/last-applied-configuration" {
            out.push(format!("/metadata/annotations/{}", escape(k)));
        }
    }
    if let Some(uid) = remediation_uid {
        let owned = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid));
        if !owned {
            out.push("/metadata/ownerReferences".into());
        }
    }
    out
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

    /// The proxy moved first, its hook added; then someone bumps the app's image. The rollback
    /// moves the proxy back and removes the hook, and keeps the image: the containers are
    /// compared by name, not by where they are.
    #[test]
    fn containers_moved_back_by_name_keep_a_later_edit_to_another_container() {
        let original = json!({"containers": [{"name": "app", "image": "a:1"},
                                            {"name": "worker", "image": "w:1"},
                                            {"name": "istio-proxy", "image": "p"}]});
        let written = json!({"containers": [
            {"name": "istio-proxy", "image": "p",
             "lifecycle": {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}},
            {"name": "app", "image": "a:1"},
            {"name": "worker", "image": "w:1"}]});
        let undos = vec![restore_ops("/spec", &original, &written)];
        assert_eq!(
            undos[0][..2],
            [
                json!({"op": "test", "path": "/spec/containers/0/name", "value": "istio-proxy"}),
                json!({"op": "move", "from": "/spec/containers/0", "path": "/spec/containers/2"}),
            ]
        );
        let mut current = written.clone();
        current["containers"][1]["image"] = json!("a:2");
        assert_eq!(intact(&written, &undos), Ok(()));
        assert_eq!(intact(&current, &undos), Ok(()));
        let restored = undo(&current, &undos).expect("undone");
        let mut expected = original.clone();
        expected["containers"][0]["image"] = json!("a:2");
        assert_eq!(restored, expected);
        // The patch the rollback sends: from the live spec to the restored one.
        let mut obj = json!({"spec": current.clone()});
        apply(&mut obj, &restore_ops("/spec", &restored, &current)).expect("applies");
        assert_eq!(obj["spec"], expected);
        // The hook meshmedic wrote, changed by someone: refused, naming it.
        let mut hook = written.clone();
        hook["containers"][0]["lifecycle"]["postStart"]["exec"]["command"] = json!(["x"]);
        // Named where it is in the target, the proxy still first (and the items it passed
        // one place further on).
        let moved = [(
            "/spec/containers/0".to_string(),
            "/spec/containers/2".to_string(),
        )];
        assert_eq!(
            as_it_is_now("/spec/containers/0/image", &moved),
            "/spec/containers/1/image"
        );
        assert_eq!(
            as_it_is_now("/spec/containers/2", &moved),
            "/spec/containers/0"
        );
        assert_eq!(as_it_is_now("/spec/other/2", &moved), "/spec/other/2");
        assert_eq!(
            undo(&hook, &undos),
            Err("/spec/containers/0/lifecycle".to_string())
        );
        assert!(intact(&hook, &undos).is_err());
        // The order changed by someone since: refused at the move.
        let mut reordered = written.clone();
        reordered["containers"]
            .as_array_mut()
            .expect("list")
            .swap(0, 1);
        assert_eq!(
            undo(&reordered, &undos),
            Err("/spec/containers/0/name".to_string())
        );
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
    fn a_chain_of_writes_with_someone_elses_change_between_them_is_undone_write_by_write() {
        // meshmedic fixes route 0; another controller appends route 1; meshmedic fixes route 1.
        let original = vs();
        let mut w1 = vs();
        w1["http"][0]["retries"] = json!({"retryOn": "reset"});
        let undo1 = restore_ops("/spec", &original, &w1);
        let mut before2 = w1.clone();
        before2["http"]
            .as_array_mut()
            .unwrap()
            .push(json!({"route": [{"destination": {"host": "b"}}]}));
        let mut w2 = before2.clone();
        w2["http"][1]["retries"] = json!({"retryOn": "reset"});
        let undo2 = restore_ops("/spec", &before2, &w2);
        let undos = vec![undo1, undo2];
        // Undone exactly: the other controller's route stays, meshmedic's retries go.
        assert_eq!(
            undo(&w2, &undos).unwrap(),
            before2_without_retries(&before2)
        );
        let mut obj = json!({"spec": w2.clone()});
        apply(&mut obj, &undo_patch(&undos)).unwrap();
        assert_eq!(obj["spec"], before2_without_retries(&before2));
        // Someone changed what the first write wrote: refused, naming the path.
        let mut edited = w2.clone();
        edited["http"][0]["retries"]["retryOn"] = json!("5xx");
        assert_eq!(
            undo(&edited, &undos),
            Err("/spec/http/0/retries".to_string())
        );
        // Nothing else happened: back to the original byte for byte.
        let undo_only = vec![restore_ops("/spec", &original, &w1)];
        assert_eq!(undo(&w1, &undo_only).unwrap(), original);
    }

    #[test]
    fn a_hand_revert_then_a_re_approved_write_still_rolls_back_and_a_revert_is_not_intact() {
        let original = vs();
        let mut w = vs();
        w["http"][0]["timeout"] = json!("10s");
        let first = restore_ops("/spec", &original, &w);
        // A person reverts: meshmedic's field no longer holds what it wrote.
        assert_eq!(
            intact(&original, std::slice::from_ref(&first)),
            Err("/spec/http/0/timeout".to_string())
        );
        // Re-approved, written again from the reverted state.
        let second = restore_ops("/spec", &original, &w);
        let undos = vec![first, second];
        assert_eq!(intact(&w, &undos), Ok(()));
        assert_eq!(undo(&w, &undos).unwrap(), original);
        // Someone edits a field meshmedic does not own: still intact, and kept by the undo.
        let mut other = w.clone();
        other["hosts"] = json!(["cart", "x"]);
        assert_eq!(intact(&other, &undos), Ok(()));
        assert_eq!(undo(&other, &undos).unwrap()["hosts"], json!(["cart", "x"]));
    }

    fn before2_without_retries(before2: &Value) -> Value {
        let mut v = before2.clone();
        v["http"][0].as_object_mut().unwrap().remove("retries");
        v
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

    fn created() -> Value {
        json!({"metadata": {"name": "cart-retries",
                            "labels": {"app.kubernetes.io/managed-by": "meshmedic"},
                            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                            "ownerReferences": [{"kind": "Remediation", "name": "r", "uid": "u-1"}]},
               "spec": vs()})
    }

    #[test]
    fn a_created_object_as_meshmedic_made_it_carries_no_one_elses_marks() {
        assert!(others_marks(&created(), Some("u-1")).is_empty());
        // What the analysis creates is exactly what is judged here.
        let made = json!({"metadata": {"labels": crate::remediation::creation_labels()}});
        assert!(others_marks(&made, None).is_empty());
    }

    #[test]
    fn labels_annotations_and_a_removed_owner_are_someone_elses_marks() {
        let mut o = created();
        o["metadata"]["labels"]["argocd.argoproj.io/instance"] = json!("shop");
        o["metadata"]["annotations"]["note"] = json!("keep");
        o["metadata"]["ownerReferences"] = json!([]);
        assert_eq!(
            others_marks(&o, Some("u-1")),
            vec![
                "/metadata/labels/argocd.argoproj.io~1instance",
                "/metadata/annotations/note",
                "/metadata/ownerReferences",
            ]
        );
        let mut adopted = created();
        adopted["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("Helm");
        assert_eq!(
            others_marks(&adopted, Some("u-1")),
            vec!["/metadata/labels/app.kubernetes.io~1managed-by"]
        );
        adopted["metadata"]["labels"] = json!({});
        assert_eq!(
            others_marks(&adopted, Some("u-1")),
            vec!["/metadata/labels/app.kubernetes.io~1managed-by"]
        );
    }
}
