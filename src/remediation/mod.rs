//! From a finding to a concrete change: an RFC 6902 JSON patch whose `test` operations pin what
//! it assumes, or a whole new object; in both cases also the corrected full resource.
//!
//! Detectors describe a change as [`Edit`]s (set this value at this path). The patch is derived
//! from the edits against the object as it is, so several findings on one object compose (the
//! `yaml` output applies them one after another), and the inverse patch (rollback) is exact.

use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::model::ObjectRef;

mod borrowed;
pub mod simulate;
pub mod template;

/// The tokens of an escaped JSON pointer (`/metadata/annotations/a~1b`), unescaped (`a/b`,
/// RFC 6901: `~1` first, then `~0`). A token without `~`, nearly every one, is copied as it is:
/// two `replace` calls a token were 2% of the instructions of a run at 5,000 services.
pub fn pointer_tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| {
            if t.contains('~') {
                t.replace("~1", "/").replace("~0", "~")
            } else {
                t.to_owned()
            }
        })
        .collect()
}

/// One change: put `value` at `path` (JSON pointer tokens, unescaped), or, with `rebuild`, the
/// value at `path` rebuilt from what is there when the patch is planned (so the change composes
/// with others on the same list), or, with `moved_from`, the list item at that index moved to
/// the index `path` ends with (a reorder written as a move, not the list rewritten).
#[derive(Clone, Debug, PartialEq)]
pub struct Edit {
    pub path: Vec<String>,
    pub value: Value,
    pub rebuild: Option<template::Rebuild>,
    pub moved_from: Option<usize>,
}

impl Edit {
    /// `pointer` is an escaped JSON pointer such as `/spec/template/metadata/annotations`; `key`
    /// is appended unescaped (annotation keys contain `/`).
    pub fn at(pointer: &str, key: Option<&str>, value: Value) -> Edit {
        let mut path = pointer_tokens(pointer);
        if let Some(key) = key {
            path.push(key.to_string());
        }
        Edit::at_path(path, value)
    }

    /// `value` at `path` (tokens, unescaped).
    fn at_path(path: Vec<String>, value: Value) -> Edit {
        Edit {
            path,
            value,
            rebuild: None,
            moved_from: None,
        }
    }

    /// The item at index `from` of the list at `list` moved to index `to`.
    fn moved(list: &[String], from: usize, to: usize) -> Edit {
        let mut path = list.to_vec();
        path.push(to.to_string());
        Edit {
            moved_from: Some(from),
            ..Edit::at_path(path, Value::Null)
        }
    }

    /// The value at `pointer` rebuilt ([`template::Rebuild`]) from the object being patched.
    pub fn rebuilt(pointer: &str, rebuild: template::Rebuild) -> Edit {
        Edit {
            rebuild: Some(rebuild),
            ..Edit::at(pointer, None, Value::Null)
        }
    }

    /// A rebuilt edit worked out against `doc`: the value at its path rebuilt, as the least
    /// edits that make it (a probe replaced, an item appended, not the whole list), so the patch
    /// shows, writes and tests only what changes, and a rollback is refused only when someone
    /// changed those fields.
    fn rebuilt_against(
        &self,
        doc: &Value,
        rebuild: &template::Rebuild,
    ) -> Result<Vec<Edit>, String> {
        let value = rebuild
            .apply_in(doc, &self.path)
            .map_err(|e| format!("{}: {e}", pointer(&self.path)))?;
        let mut current = doc;
        for token in &self.path {
            current = child(current, token)
                .ok_or_else(|| format!("{} does not exist", pointer(&self.path)))?;
        }
        let mut edits = Vec::new();
        least_edits(&mut self.path.clone(), current, &value, &mut edits);
        Ok(edits)
    }
}

/// The edits that turn `old` into `new` at `path`: into a mapping that keeps all its keys, and a
/// list of named items (containers, env) that keeps its items, in their order or moved (each
/// move one edit, as the proxy moved first), and may grow at its end; otherwise the value whole
/// (a key removed, an item removed).
fn least_edits(path: &mut Vec<String>, old: &Value, new: &Value, out: &mut Vec<Edit>) {
    if old == new {
        return;
    }
    // Into the child at `token`: edited where it was, set where it is new.
    fn descend(
        path: &mut Vec<String>,
        token: String,
        before: Option<&Value>,
        value: &Value,
        out: &mut Vec<Edit>,
    ) {
        path.push(token);
        match before {
            Some(before) => least_edits(path, before, value, out),
            None => out.push(Edit::at_path(path.clone(), value.clone())),
        }
        path.pop();
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) if o.keys().all(|k| n.contains_key(k)) => {
            for (key, value) in n {
                descend(path, key.clone(), o.get(key), value, out);
            }
        }
        (Value::Array(o), Value::Array(n))
            if n.len() >= o.len()
                && o.iter().zip(n).all(|(a, b)| a.get("name") == b.get("name")) =>
        {
            for (i, value) in n.iter().enumerate() {
                descend(path, i.to_string(), o.get(i), value, out);
            }
        }
        (Value::Array(o), Value::Array(n)) => match moves_between(o, n) {
            Some(moves) => {
                for &(from, to) in &moves {
                    out.push(Edit::moved(path, from, to));
                }
                // Then each item edited where it now is (an old one, found by its name).
                for (i, value) in n.iter().enumerate() {
                    let before = (i < o.len())
                        .then(|| o.iter().find(|item| item.get("name") == value.get("name")))
                        .flatten();
                    descend(path, i.to_string(), before, value, out);
                }
            }
            None => out.push(Edit::at_path(path.clone(), new.clone())),
        },
        _ => out.push(Edit::at_path(path.clone(), new.clone())),
    }
}

/// The fewest moves (from, to; each on the list as the moves before it left it, as RFC 6902
/// applies them) that put the named items of `old` in the order the first `old.len()` items of
/// `new` have: the items already in order among themselves stay (a longest run of them, in
/// order though not side by side) and each other one goes right after the item that precedes it
/// in `new`. `None` unless those are the same items (each name a string, given once).
pub fn moves_between(old: &[Value], new: &[Value]) -> Option<Vec<(usize, usize)>> {
    let names = |items: &[Value]| -> Option<Vec<String>> {
        let names: Vec<String> = items
            .iter()
            .map(|item| item.get("name")?.as_str().map(str::to_string))
            .collect::<Option<_>>()?;
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        (sorted.len() == names.len()).then_some(names)
    };
    let old_names = names(old)?;
    let wanted = names(new.get(..old.len())?)?;
    // Each old item's place in the new order.
    let target: Vec<usize> = old_names
        .iter()
        .map(|n| wanted.iter().position(|w| w == n))
        .collect::<Option<_>>()?;
    // A longest increasing run of targets (quadratic: lists of containers are short).
    let count = target.len();
    let mut length = vec![1usize; count];
    let mut previous = vec![None; count];
    for i in 0..count {
        for j in 0..i {
            if target[j] < target[i] && length[j] + 1 > length[i] {
                length[i] = length[j] + 1;
                previous[i] = Some(j);
            }
        }
    }
    let mut stays = vec![false; count];
    let mut at = (0..count).max_by_key(|&i| (length[i], std::cmp::Reverse(i)));
    while let Some(i) = at {
        stays[i] = true;
        at = previous[i];
    }
    let mut current = target.clone();
    let mut moved: Vec<usize> = (0..count)
        .filter(|&i| !stays[i])
        .map(|i| target[i])
        .collect();
    moved.sort_unstable();
    let mut moves = Vec::with_capacity(moved.len());
    for t in moved {
        let from = current.iter().position(|&c| c == t)?;
        current.remove(from);
        let to = match t.checked_sub(1) {
            None => 0,
            Some(before) => current.iter().position(|&c| c == before)? + 1,
        };
        current.insert(to, t);
        moves.push((from, to));
    }
    (current.iter().enumerate().all(|(i, &t)| i == t)).then_some(moves)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Patch,
    Create,
}

/// The fix attached to a finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Remediation {
    pub action: Action,
    pub target: ObjectRef,
    /// RFC 6902 operations (`action: patch`), or null for a new object.
    pub patch: Option<Patch>,
    /// The corrected (or new) resource in full.
    pub resource: Resource,
    pub safe_to_auto_apply: bool,
    /// Whether applying this fix removes its own finding. `false` marks a mitigation whose real
    /// cure is in the app (the operator then neither expects the finding to go away nor
    /// re-plans it in a loop).
    pub resolves: bool,
    /// The edits behind `patch`, kept to compose fixes on one object.
    #[serde(skip)]
    pub edits: Vec<Edit>,
    /// [`Remediation::changed_field`], noted as the patch is planned: reading it back from the
    /// patch's text for each finding's place was 1.4% of `analyze` (README, Benchmarks).
    #[serde(skip)]
    changed: Option<Box<str>>,
}

/// A fix's corrected (or new) resource, or its patch, held as compact JSON text: every finding
/// carries both, and as `serde_json` trees they were about 45 of the 137 MB peak heap of
/// `analyze` at 10,000 services (README, Benchmarks). It serializes as the tree it was made
/// from (transcoded from the text as it is written, without a tree); reading it through `Deref`
/// (tests) parses it once and keeps the tree, [`Compact::to_value`] parses it without keeping
/// it. A tree nested too deeply for the JSON parser to read back stays a tree.
pub struct Compact<T>(CompactInner<T>);

enum CompactInner<T> {
    /// A `RawValue` rather than a string: serde_json writes it as one fragment without
    /// checking it again (`RawValue`'s only unchecked constructor is `to_raw_value`, which
    /// writes it). Checking each fix's text as it was written out was 2% of `analyze`.
    Text {
        json: Box<RawValue>,
        tree: OnceLock<T>,
    },
    Tree(T),
}

/// The corrected (or new) resource in full.
pub type Resource = Compact<Value>;

/// RFC 6902 operations.
pub type Patch = Compact<Vec<Value>>;

/// What a [`Compact`] holds.
pub trait CompactForm: Serialize + DeserializeOwned + Default + Clone {
    /// Whether its JSON text reads back: serde_json reads 128 levels.
    fn reads_back(&self) -> bool;
}

/// Nesting the text form is used up to, below serde_json's 128.
const TEXT_DEPTH: usize = 100;

impl CompactForm for Value {
    fn reads_back(&self) -> bool {
        depth_at_most(self, TEXT_DEPTH)
    }
}

impl CompactForm for Vec<Value> {
    fn reads_back(&self) -> bool {
        self.iter().all(|v| depth_at_most(v, TEXT_DEPTH - 1))
    }
}

fn depth_at_most(v: &Value, limit: usize) -> bool {
    match v {
        _ if limit == 0 => false,
        Value::Array(items) => items.iter().all(|i| depth_at_most(i, limit - 1)),
        Value::Object(map) => map.values().all(|i| depth_at_most(i, limit - 1)),
        _ => true,
    }
}

/// The text was written from a tree the parser reads back, so it reads back; should it not,
/// it reads as empty (null, no operations) rather than taking the process down.
fn parse<T: CompactForm>(json: &str) -> T {
    serde_json::from_str(json).unwrap_or_default()
}

impl<T: CompactForm> Compact<T> {
    /// Compact JSON text written by `serde_json::value::to_raw_value` (as
    /// `serde_json::to_string` writes the tree), of a tree that reads back.
    fn of_text(json: Box<RawValue>) -> Compact<T> {
        Compact(CompactInner::Text {
            json,
            tree: OnceLock::new(),
        })
    }

    /// The tree, owned (parsed from the text, not kept).
    pub fn to_value(&self) -> T {
        match &self.0 {
            CompactInner::Text { json, tree } => match tree.get() {
                Some(v) => v.clone(),
                None => parse(json.get()),
            },
            CompactInner::Tree(v) => v.clone(),
        }
    }
}

impl<T: CompactForm> From<T> for Compact<T> {
    fn from(value: T) -> Compact<T> {
        if !value.reads_back() {
            return Compact(CompactInner::Tree(value));
        }
        match serde_json::value::to_raw_value(&value) {
            Ok(json) => Compact(CompactInner::Text {
                json,
                tree: OnceLock::new(),
            }),
            Err(_) => Compact(CompactInner::Tree(value)),
        }
    }
}

impl<T: CompactForm> std::ops::Deref for Compact<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.0 {
            CompactInner::Text { json, tree } => tree.get_or_init(|| parse(json.get())),
            CompactInner::Tree(v) => v,
        }
    }
}

impl<T: CompactForm> Clone for Compact<T> {
    fn clone(&self) -> Compact<T> {
        match &self.0 {
            CompactInner::Text { json, .. } => Compact(CompactInner::Text {
                json: json.clone(),
                tree: OnceLock::new(),
            }),
            CompactInner::Tree(v) => Compact(CompactInner::Tree(v.clone())),
        }
    }
}

impl<T: CompactForm + std::fmt::Debug> std::fmt::Debug for Compact<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_value().fmt(f)
    }
}

impl<T: CompactForm + PartialEq> PartialEq for Compact<T> {
    fn eq(&self, other: &Compact<T>) -> bool {
        match (&self.0, &other.0) {
            (CompactInner::Text { json: a, .. }, CompactInner::Text { json: b, .. })
                if a.get() == b.get() =>
            {
                true
            }
            _ => self.to_value() == other.to_value(),
        }
    }
}

impl<T: CompactForm + PartialEq> PartialEq<T> for Compact<T> {
    fn eq(&self, other: &T) -> bool {
        self.to_value() == *other
    }
}

impl PartialEq<Resource> for Value {
    fn eq(&self, other: &Resource) -> bool {
        *self == other.to_value()
    }
}

thread_local! {
    /// Set by [`with_raw_json_fragments`].
    static RAW_FRAGMENTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every [`Compact`] text serialized as one raw JSON fragment (serde_json's
/// `RawValue`) instead of token by token: for a serde_json serializer whose formatter lays the
/// fragment out itself (`cli::analyze`'s pretty writer). Transcoding each corrected resource
/// and patch, a parse and a serialization per token, was a seventh of `analyze` at 5,000
/// services. Any other serializer inside `f` would write the fragment's wrapper, so only
/// that writer calls this.
pub fn with_raw_json_fragments<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            RAW_FRAGMENTS.set(self.0);
        }
    }
    let _reset = Reset(RAW_FRAGMENTS.replace(true));
    f()
}

impl<T: CompactForm> Serialize for Compact<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            CompactInner::Text { json, tree } => match tree.get() {
                Some(v) => v.serialize(serializer),
                None if RAW_FRAGMENTS.get() => json.serialize(serializer),
                // Straight from the text to the output: no tree is built.
                None => serde_transcode::transcode(
                    &mut serde_json::Deserializer::from_str(json.get()),
                    serializer,
                ),
            },
            CompactInner::Tree(v) => v.serialize(serializer),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot plan a patch of {target}: {message}")]
pub struct PlanError {
    pub target: String,
    pub message: String,
}

/// The JSON pointer of `tokens` (RFC 6901 escapes), as json-patch's own type.
pub(crate) fn pointer(tokens: &[String]) -> json_patch::jsonptr::PointerBuf {
    json_patch::jsonptr::PointerBuf::from_tokens(tokens)
}

/// Builds the JSON patch for `edits` against `doc`. For each edit it pins the deepest value that
/// exists on the path with a `test` (the old value itself when the path exists, else the nearest
/// existing parent, so a concurrent edit anywhere the change relies on makes the patch fail
/// instead of being overwritten), then adds or replaces.
pub fn plan_patch(doc: &Value, edits: &[Edit]) -> Result<Vec<Value>, String> {
    plan_patch_owned(doc.clone(), edits).map(|(ops, _)| ops)
}

/// [`plan_patch`] of a document the caller gives up: the patch, and the document it makes
/// (each edit is applied to it as the patch is planned, so that is the patched document; no
/// copy is made and nothing is applied twice).
fn plan_patch_owned(mut working: Value, edits: &[Edit]) -> Result<(Vec<Value>, Value), String> {
    let mut ops = Vec::new();
    for edit in edits {
        match &edit.rebuild {
            Some(rebuild) => {
                for edit in edit.rebuilt_against(&working, rebuild)? {
                    plan_edit(&mut working, &edit, &mut ops)?;
                }
            }
            None => plan_edit(&mut working, edit, &mut ops)?,
        }
    }
    Ok((ops, working))
}

/// Plans one edit against `working` (the `test` and the change, pushed on `ops`) and applies it.
fn plan_edit(working: &mut Value, edit: &Edit, ops: &mut Vec<Value>) -> Result<(), String> {
    if let Some(from) = edit.moved_from {
        return plan_move(working, edit, from, ops);
    }
    {
        let mut depth = 0;
        let mut node = &*working;
        for (i, token) in edit.path.iter().enumerate() {
            match child(node, token) {
                // A key given with no value (`annotations:` and nothing under it) on the way
                // is as good as absent, as the API server reads it: set whole below.
                Some(Value::Null) if i + 1 < edit.path.len() => break,
                Some(next) => {
                    node = next;
                    depth += 1;
                }
                None => break,
            }
        }
        // The `test` pins the value just read, so only the change is applied to `working`,
        // built as the json-patch crate's own operation: converting both JSON operations
        // (the test holding a copy of what it pins) was a fifth of planning a fix.
        // Each pointer is built once, for the operations written and the one applied.
        let change = if depth == edit.path.len() {
            if *node == edit.value {
                return Ok(());
            }
            let path = pointer(&edit.path);
            ops.push(operation("test", path.as_str().to_owned(), node.clone()));
            ops.push(operation(
                "replace",
                path.as_str().to_owned(),
                edit.value.clone(),
            ));
            json_patch::PatchOperation::Replace(json_patch::ReplaceOperation {
                path,
                value: edit.value.clone(),
            })
        } else {
            let parent = pointer(&edit.path[..depth]);
            if !(node.is_object() || node.is_array()) {
                return Err(format!("{parent} is not an object or list"));
            }
            // Build the missing part of the path as nested objects around the value.
            let mut value = edit.value.clone();
            for token in edit.path[depth + 1..].iter().rev() {
                value = json!({ token: value });
            }
            let path = pointer(&edit.path[..=depth]);
            ops.push(operation("test", parent.as_str().to_owned(), node.clone()));
            ops.push(operation("add", path.as_str().to_owned(), value.clone()));
            json_patch::PatchOperation::Add(json_patch::AddOperation { path, value })
        };
        json_patch::patch(working, &[change]).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Plans a move within a list: a `test` of the moved item's name where it is, then the `move`
/// (its content is not pinned: the change is where it is, not what it holds).
fn plan_move(
    working: &mut Value,
    edit: &Edit,
    from: usize,
    ops: &mut Vec<Value>,
) -> Result<(), String> {
    let (_, list) = edit
        .path
        .split_last()
        .ok_or("a move needs a list item's path")?;
    let mut from_path = list.to_vec();
    from_path.push(from.to_string());
    let from_pointer = pointer(&from_path);
    let name_pointer = format!("{}/name", from_pointer.as_str());
    let name = working
        .pointer(&name_pointer)
        .cloned()
        .ok_or_else(|| format!("{from_pointer} has no name"))?;
    let to = pointer(&edit.path);
    ops.push(operation("test", name_pointer, name));
    ops.push(json!({"op": "move", "from": from_pointer.as_str(), "path": to.as_str()}));
    let change = json_patch::PatchOperation::Move(json_patch::MoveOperation {
        from: from_pointer,
        path: to,
    });
    json_patch::patch(working, &[change]).map_err(|e| e.to_string())
}

/// `{"op": .., "path": .., "value": ..}`, as `json!` writes it, without `json!`'s copy of the
/// value through the serializer.
fn operation(op: &str, path: String, value: Value) -> Value {
    let mut map = serde_json::Map::with_capacity(3);
    map.insert("op".to_string(), Value::from(op));
    map.insert("path".to_string(), Value::from(path));
    map.insert("value".to_string(), value);
    Value::Object(map)
}

fn child<'a>(node: &'a Value, token: &str) -> Option<&'a Value> {
    match node {
        Value::Object(map) => map.get(token),
        Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// Applies RFC 6902 operations (json-patch crate); all or nothing.
pub fn apply(doc: &mut Value, ops: &[Value]) -> Result<(), String> {
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops.to_vec())).map_err(|e| e.to_string())?;
    json_patch::patch(doc, &patch).map_err(|e| e.to_string())
}

/// The patch that undoes `forward` on the object it was applied to: each operation's inverse,
/// worked out on the object as the operations before it left it (a move shifts the paths after
/// it), last first; each pins with a `test` what its operation left there, so a change made
/// since makes the rollback fail instead of being overwritten.
pub fn rollback_patch(before: &Value, forward: &[Value]) -> Result<Vec<Value>, String> {
    let mut state = before.clone();
    let mut inverses: Vec<Vec<Value>> = Vec::with_capacity(forward.len());
    for op in forward {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let old = state.pointer(path).cloned();
        let into_list = path
            .rsplit_once('/')
            .and_then(|(parent, _)| state.pointer(parent))
            .is_some_and(Value::is_array);
        apply(&mut state, std::slice::from_ref(op))?;
        let new = state.pointer(path).cloned().unwrap_or(Value::Null);
        let test = json!({"op": "test", "path": path, "value": new});
        inverses.push(match (kind, old) {
            ("replace", Some(old)) => {
                vec![test, json!({"op": "replace", "path": path, "value": old})]
            }
            // An item added to a list is removed, whatever was at its index before.
            ("add", _) if into_list => vec![test, json!({"op": "remove", "path": path})],
            ("add", None) => vec![test, json!({"op": "remove", "path": path})],
            ("add", Some(old)) => {
                vec![test, json!({"op": "replace", "path": path, "value": old})]
            }
            // Moved back; what the later operations changed inside the item is undone before
            // this, so its name is pinned, not its content.
            ("move", _) => {
                let from = op.get("from").and_then(Value::as_str).unwrap_or_default();
                let name = format!("{path}/name");
                let mut ops = Vec::new();
                if let Some(n) = state.pointer(&name) {
                    ops.push(json!({"op": "test", "path": name, "value": n}));
                }
                ops.push(json!({"op": "move", "from": path, "path": from}));
                ops
            }
            _ => Vec::new(),
        });
    }
    Ok(inverses.into_iter().rev().flatten().collect())
}

impl Remediation {
    /// The patch's operations, read from its text (not kept); none for a new object.
    pub fn operations(&self) -> Vec<Value> {
        self.patch
            .as_ref()
            .map(Compact::to_value)
            .unwrap_or_default()
    }

    /// The path of the patch's first operation that is not a `test`: the field the fix
    /// changes.
    pub fn changed_field(&self) -> Option<&str> {
        self.changed.as_deref()
    }

    /// A patch of an existing object (`original`, as read).
    pub fn patch(
        target: ObjectRef,
        original: Value,
        edits: Vec<Edit>,
        safe_to_auto_apply: bool,
    ) -> Result<Remediation, PlanError> {
        let err = |message| PlanError {
            target: target.to_string(),
            message,
        };
        let (ops, resource) = plan_patch_owned(original, &edits).map_err(err)?;
        let changed = first_change(&ops).map(Box::from);
        Ok(Remediation {
            action: Action::Patch,
            target,
            patch: Some(ops.into()),
            resource: resource.into(),
            safe_to_auto_apply,
            resolves: true,
            edits,
            changed,
        })
    }

    /// [`Remediation::patch`] of an object as the snapshot keeps it: planned on the borrowed
    /// tree of its YAML when it has one ([`borrowed`]), else on its value. The same result.
    pub fn patch_raw(
        target: ObjectRef,
        raw: &crate::snapshot::Raw,
        edits: Vec<Edit>,
        safe_to_auto_apply: bool,
    ) -> Result<Remediation, PlanError> {
        let planned = raw
            .yaml_text()
            .and_then(crate::snapshot::yaml::borrowed)
            .and_then(|tree| borrowed::plan(tree, &edits));
        let Some(borrowed::Planned { ops, json, changed }) = planned else {
            return Remediation::patch(target, raw.to_value(), edits, safe_to_auto_apply);
        };
        Ok(Remediation {
            action: Action::Patch,
            target,
            patch: Some(Compact::of_text(ops)),
            resource: Compact::of_text(json),
            safe_to_auto_apply,
            resolves: true,
            edits,
            changed,
        })
    }

    /// A new object.
    pub fn create(resource: Value, safe_to_auto_apply: bool) -> Remediation {
        let target = ObjectRef {
            api_version: str_at(&resource, "/apiVersion"),
            kind: str_at(&resource, "/kind"),
            namespace: str_at(&resource, "/metadata/namespace"),
            name: str_at(&resource, "/metadata/name"),
        };
        Remediation {
            action: Action::Create,
            target,
            patch: None,
            resource: resource.into(),
            safe_to_auto_apply,
            resolves: true,
            edits: Vec::new(),
            changed: None,
        }
    }
}

/// The path of the first of `ops` that is not a `test`: the field a patch changes.
fn first_change(ops: &[Value]) -> Option<&str> {
    ops.iter()
        .find(|op| op.get("op").and_then(Value::as_str) != Some("test"))
        .and_then(|op| op.get("path")?.as_str())
}

fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The label every object meshmedic creates carries.
pub fn creation_labels() -> Value {
    json!({ crate::model::keys::MANAGED_BY_LABEL: crate::model::keys::MANAGED_BY_VALUE })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({"spec": {"a": {"b": 1}, "list": [{"x": 1}]}, "metadata": {"annotations": {"k/1": "v"}}})
    }

    /// RFC 6901's unescaping, `~1` before `~0` (`~01` is `~1`, not `/`), with and without `~`.
    #[test]
    fn pointer_tokens_are_unescaped_as_rfc_6901_says() {
        assert_eq!(pointer_tokens(""), Vec::<String>::new());
        assert_eq!(pointer_tokens("/"), [""]);
        assert_eq!(
            pointer_tokens("/metadata/annotations/sidecar.istio.io~1inject/a~0b/~01/0"),
            [
                "metadata",
                "annotations",
                "sidecar.istio.io/inject",
                "a~b",
                "~1",
                "0"
            ]
        );
    }

    /// What a rebuilt value is patched as: the changed leaves of mappings that keep their keys,
    /// items appended at the end; the value whole where a key goes or an item moves.
    #[test]
    fn least_edits_descend_only_where_nothing_is_removed_or_moved() {
        let edits = |old: Value, new: Value| {
            let mut out = Vec::new();
            least_edits(&mut vec!["c".to_string()], &old, &new, &mut out);
            out.into_iter()
                .map(|e| (e.path.join("/"), e.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(edits(json!({"a": 1}), json!({"a": 1})), []);
        assert_eq!(
            edits(
                json!({"a": 1, "b": {"x": 1}}),
                json!({"a": 2, "b": {"x": 1, "y": 2}})
            ),
            [("c/a".into(), json!(2)), ("c/b/y".into(), json!(2))]
        );
        // A key removed (a gRPC probe becoming an HTTP one): the mapping whole.
        assert_eq!(
            edits(json!({"grpc": {}, "p": 1}), json!({"httpGet": {}, "p": 1})),
            [("c".into(), json!({"httpGet": {}, "p": 1}))]
        );
        assert_eq!(
            edits(
                json!([{"name": "a"}]),
                json!([{"name": "a", "v": 1}, {"name": "b"}])
            ),
            [
                ("c/0/v".into(), json!(1)),
                ("c/1".into(), json!({"name": "b"}))
            ]
        );
        // A list that shrinks, or whose named items are not each given once: the list whole.
        assert_eq!(edits(json!([1, 2]), json!([1])), [("c".into(), json!([1]))]);
        let twice = json!([{"name": "b"}, {"name": "a", "x": 1}, {"name": "a"}]);
        assert_eq!(
            edits(
                json!([{"name": "a", "x": 1}, {"name": "a"}, {"name": "b"}]),
                twice.clone()
            ),
            [("c".into(), twice)]
        );
    }

    /// Named items moved (the proxy first) are moves, each on the list as the moves before left
    /// it, then the edits inside the items where they now are; the patch applies to the new list
    /// and its rollback to the old one.
    #[test]
    fn named_items_moved_are_moves_not_the_list_rewritten() {
        let old = json!({"c": [{"name": "a"}, {"name": "b"}, {"name": "p", "v": 1}]});
        let new =
            json!({"c": [{"name": "p", "v": 2}, {"name": "a"}, {"name": "b"}, {"name": "n"}]});
        let mut out = Vec::new();
        least_edits(&mut vec!["c".to_string()], &old["c"], &new["c"], &mut out);
        let shown: Vec<(String, Option<usize>, Value)> = out
            .iter()
            .map(|e| (e.path.join("/"), e.moved_from, e.value.clone()))
            .collect();
        assert_eq!(
            shown,
            [
                ("c/0".into(), Some(2), Value::Null),
                ("c/0/v".into(), None, json!(2)),
                ("c/3".into(), None, json!({"name": "n"})),
            ]
        );
        let ops = plan_patch(&old, &out).expect("planned");
        assert_eq!(
            ops[..2],
            [
                json!({"op": "test", "path": "/c/2/name", "value": "p"}),
                json!({"op": "move", "from": "/c/2", "path": "/c/0"}),
            ]
        );
        let mut doc = old.clone();
        apply(&mut doc, &ops).expect("applies");
        assert_eq!(doc, new);
        let back = rollback_patch(&old, &ops).expect("rollback");
        apply(&mut doc, &back).expect("rolls back");
        assert_eq!(doc, old);
        // Two items swapped past each other: two moves.
        let old = json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]);
        let new = json!([{"name": "c"}, {"name": "b"}, {"name": "a"}]);
        let mut out = Vec::new();
        least_edits(&mut vec!["l".to_string()], &old, &new, &mut out);
        let moves: Vec<_> = out
            .iter()
            .map(|e| (e.moved_from, e.path.join("/")))
            .collect();
        assert_eq!(moves, [(Some(2), "l/0".into()), (Some(2), "l/1".into())]);
        let mut doc = json!({"l": old.clone()});
        let ops = plan_patch(&doc, &out).expect("planned");
        apply(&mut doc, &ops).expect("applies");
        assert_eq!(doc["l"], new);
        let back = rollback_patch(&json!({"l": old.clone()}), &ops).expect("rollback");
        apply(&mut doc, &back).expect("rolls back");
        assert_eq!(doc["l"], old);
    }

    /// Every order of five named items: the moves make the new order, and there are as few as
    /// the items out of a longest in-order run.
    #[test]
    fn moves_between_every_order_of_five_are_right_and_fewest() {
        fn permutations(items: Vec<usize>) -> Vec<Vec<usize>> {
            if items.len() <= 1 {
                return vec![items];
            }
            let mut out = Vec::new();
            for i in 0..items.len() {
                let mut rest = items.clone();
                let first = rest.remove(i);
                for mut p in permutations(rest) {
                    p.insert(0, first);
                    out.push(p);
                }
            }
            out
        }
        let named = |order: &[usize]| -> Vec<Value> {
            order
                .iter()
                .map(|i| json!({"name": format!("c{i}")}))
                .collect()
        };
        let old = named(&[0, 1, 2, 3, 4]);
        for order in permutations(vec![0, 1, 2, 3, 4]) {
            let new = named(&order);
            let moves = moves_between(&old, &new).expect("same items");
            let mut list = Value::Array(old.clone());
            for (from, to) in &moves {
                let op =
                    json!({"op": "move", "from": format!("/{from}"), "path": format!("/{to}")});
                apply(&mut list, &[op]).expect("moves");
            }
            assert_eq!(list, Value::Array(new.clone()), "{order:?}");
            let longest_in_order = (0..order.len())
                .fold(vec![0usize; order.len()], |mut run, i| {
                    run[i] = 1
                        + (0..i)
                            .filter(|&j| order[j] < order[i])
                            .map(|j| run[j])
                            .max()
                            .unwrap_or(0);
                    run
                })
                .into_iter()
                .max()
                .unwrap_or(0);
            assert_eq!(moves.len(), order.len() - longest_in_order, "{order:?}");
        }
    }

    /// `annotations:` with nothing under it is null: an annotation is set by putting the whole
    /// mapping there (JSON Patch `add` replaces a key's value), its parent pinned. Found on
    /// christian-posta/istio-demos, whose Deployments have such templates: their fixes could
    /// not be planned and their findings were lost.
    #[test]
    fn a_key_given_with_no_value_on_the_way_is_set_whole() {
        let doc = json!({"spec": {"template": {"metadata": {"annotations": null, "labels": {"a": "b"}}}}});
        let ops = plan_patch(
            &doc,
            &[Edit::at(
                "/spec/template/metadata/annotations",
                Some("sidecar.istio.io/x"),
                json!("1"),
            )],
        )
        .expect("planned");
        assert_eq!(
            ops,
            [
                json!({"op": "test", "path": "/spec/template/metadata",
                       "value": {"annotations": null, "labels": {"a": "b"}}}),
                json!({"op": "add", "path": "/spec/template/metadata/annotations",
                       "value": {"sidecar.istio.io/x": "1"}}),
            ]
        );
        let mut patched = doc.clone();
        apply(&mut patched, &ops).expect("applies");
        assert_eq!(
            patched["spec"]["template"]["metadata"]["annotations"],
            json!({"sidecar.istio.io/x": "1"})
        );
        let back = rollback_patch(&doc, &ops).expect("rollback");
        apply(&mut patched, &back).expect("rolls back");
        assert_eq!(patched, doc);
    }

    #[test]
    fn replace_pins_the_old_value() {
        let ops = plan_patch(&doc(), &[Edit::at("/spec/a/b", None, json!(2))]).unwrap();
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/spec/a/b", "value": 1})
        );
        assert_eq!(
            ops[1],
            json!({"op": "replace", "path": "/spec/a/b", "value": 2})
        );
    }

    #[test]
    fn add_builds_missing_parents_and_pins_the_nearest_existing_one() {
        let ops = plan_patch(&doc(), &[Edit::at("/spec/c/d", None, json!("x"))]).unwrap();
        assert_eq!(ops[0]["op"], "test");
        assert_eq!(ops[0]["path"], "/spec");
        assert_eq!(
            ops[1],
            json!({"op": "add", "path": "/spec/c", "value": {"d": "x"}})
        );
    }

    #[test]
    fn the_planned_document_is_the_patch_applied() {
        let edits = [
            Edit::at("/spec/a/b", None, json!(2)),
            Edit::at("/spec/a/b", None, json!(2)),
            Edit::at("/spec/c/d/e", None, json!("x")),
            Edit::at("/spec/list/-", None, json!({"y": 2})),
            Edit::at("/spec/list/2", None, json!({"z": 3})),
            Edit::at("/spec/list/0/x", None, json!(5)),
            Edit::at("/metadata/annotations", Some("k/2"), json!("w")),
        ];
        for n in 1..=edits.len() {
            let (ops, planned) = plan_patch_owned(doc(), &edits[..n]).unwrap();
            let mut applied = doc();
            apply(&mut applied, &ops).unwrap();
            assert_eq!(planned, applied, "{:?}", &edits[..n]);
            assert_eq!(
                serde_json::to_string(&planned).unwrap(),
                serde_json::to_string(&applied).unwrap(),
                "key order"
            );
        }
        // An index past a list's end is refused, as RFC 6902 refuses it.
        assert!(plan_patch_owned(doc(), &[Edit::at("/spec/list/5", None, json!(1))]).is_err());
    }

    /// The field a fix changes is its patch's first operation that is no `test`: an edit that
    /// changes nothing writes no operation, a missing parent is added whole.
    #[test]
    fn the_changed_field_is_the_first_operation_that_changes() {
        let target = ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "ns".into(),
            name: "n".into(),
        };
        let first_change = |r: &Remediation| {
            r.operations()
                .iter()
                .find(|op| op["op"] != "test")
                .and_then(|op| op["path"].as_str())
                .map(str::to_string)
        };
        let cases = [
            (vec![Edit::at("/spec/a/b", None, json!(2))], "/spec/a/b"),
            (
                vec![
                    Edit::at("/spec/a/b", None, json!(1)),
                    Edit::at("/spec/c/d/e", None, json!("x")),
                ],
                "/spec/c",
            ),
            (
                vec![Edit::at("/metadata/annotations", Some("k/2"), json!("w"))],
                "/metadata/annotations/k~12",
            ),
        ];
        for (edits, changed) in cases {
            let r = Remediation::patch(target.clone(), doc(), edits.clone(), true).unwrap();
            assert_eq!(r.changed_field(), Some(changed), "{edits:?}");
            assert_eq!(first_change(&r).as_deref(), Some(changed));
            let yaml = serde_saphyr::to_string(&doc()).unwrap();
            let raw = crate::snapshot::Raw::from_text(yaml.as_str().into(), None);
            let r = Remediation::patch_raw(target.clone(), &raw, edits.clone(), true).unwrap();
            assert_eq!(r.changed_field(), Some(changed), "{edits:?} on the YAML");
        }
        let created = Remediation::create(json!({"kind": "ConfigMap"}), true);
        assert_eq!(created.changed_field(), None);
    }

    #[test]
    fn keys_with_slashes_are_escaped() {
        let edit = Edit::at("/metadata/annotations", Some("k/2"), json!("w"));
        let ops = plan_patch(&doc(), &[edit]).unwrap();
        assert_eq!(ops[1]["path"], "/metadata/annotations/k~12");
        let mut d = doc();
        apply(&mut d, &ops).unwrap();
        assert_eq!(d["metadata"]["annotations"]["k/2"], "w");
        assert_eq!(d["metadata"]["annotations"]["k/1"], "v");
    }

    #[test]
    fn a_changed_target_fails_the_test_operation() {
        let ops = plan_patch(&doc(), &[Edit::at("/spec/a/b", None, json!(2))]).unwrap();
        let mut changed = doc();
        changed["spec"]["a"]["b"] = json!(5);
        assert!(apply(&mut changed, &ops).is_err());
        assert_eq!(changed["spec"]["a"]["b"], 5, "nothing applied");
    }

    #[test]
    fn rollback_restores_the_original_exactly() {
        let edits = [
            Edit::at("/spec/a/b", None, json!(2)),
            Edit::at("/spec/c/d", None, json!("x")),
            Edit::at("/spec/list/0/y", None, json!(true)),
        ];
        let original = doc();
        let forward = plan_patch(&original, &edits).unwrap();
        let mut patched = original.clone();
        apply(&mut patched, &forward).unwrap();
        let back = rollback_patch(&original, &forward).unwrap();
        apply(&mut patched, &back).unwrap();
        assert_eq!(patched, original);
    }

    /// A resource or a patch held as text writes exactly what its tree wrote (pretty JSON, YAML),
    /// reads back as the same tree, and one nested past what the parser reads back stays a tree.
    #[test]
    fn a_resource_writes_and_reads_as_its_tree() {
        let mut deep = json!("leaf");
        for _ in 0..200 {
            deep = json!({ "a": [deep] });
        }
        for tree in [
            json!({"z": 1, "a": {"y": [1.5, -0.0, 1e300, 0.1, 18446744073709551615u64, -7]},
                   "s": "quote \" slash \\ tab \t é 日本 \u{1}", "n": null, "b": true,
                   "empty": {}, "list": []}),
            json!(2.5e-8),
            json!([]),
            deep,
        ] {
            let resource = Resource::from(tree.clone());
            assert_eq!(
                serde_json::to_string_pretty(&resource).unwrap(),
                serde_json::to_string_pretty(&tree).unwrap()
            );
            assert_eq!(
                serde_saphyr::to_string(&resource).unwrap(),
                serde_saphyr::to_string(&tree).unwrap()
            );
            assert_eq!(resource.to_value(), tree);
            assert_eq!(resource.clone(), resource);
            assert_eq!(*resource, tree, "read through Deref");
            assert_eq!(
                serde_json::to_string(&resource.to_value()).unwrap(),
                serde_json::to_string(&tree).unwrap(),
                "key order"
            );
        }
        let ops = vec![
            json!({"op": "test", "path": "/spec/a", "value": {"b": 1.25, "c": []}}),
            json!({"op": "add", "path": "/spec/a/d~1e", "value": "x"}),
        ];
        for ops in [ops, Vec::new()] {
            let patch = Patch::from(ops.clone());
            assert_eq!(
                serde_json::to_string_pretty(&Some(&patch)).unwrap(),
                serde_json::to_string_pretty(&Some(&ops)).unwrap()
            );
            assert_eq!(
                serde_saphyr::to_string(&patch).unwrap(),
                serde_saphyr::to_string(&ops).unwrap()
            );
            assert_eq!(patch.to_value(), ops);
            assert_eq!(&*patch, &ops);
        }
        let kept = Resource::from(json!({"a": 1}));
        assert!(matches!(kept.0, CompactInner::Text { .. }));
        let mut deep = json!(1);
        for _ in 0..TEXT_DEPTH {
            deep = json!([deep]);
        }
        assert!(matches!(Resource::from(deep).0, CompactInner::Tree(_)));
    }

    #[test]
    fn an_edit_that_changes_nothing_adds_no_operations() {
        let ops = plan_patch(&doc(), &[Edit::at("/spec/a/b", None, json!(1))]).unwrap();
        assert!(ops.is_empty());
    }
}
