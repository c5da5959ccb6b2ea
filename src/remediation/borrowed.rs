//! A fix planned on the borrowed tree of its target's YAML ([`Borrowed`]) instead of a
//! `serde_json` tree: the same operations and the same corrected resource, written straight
//! from the tree. Parsing every fixed object into a `Value` (a map with hashed, owned keys for
//! each of its mappings) and writing it out again was a seventh of `meshmedic analyze` at 5,000
//! services (README, Benchmarks). Only the common cases are planned here; anything else (an
//! edit through a scalar, a list index past the end or not written as JSON Patch writes one, a
//! document nested deeper than its compact text is kept for) answers `None`, and the caller
//! plans on the `Value`, which gives the canonical result or error.

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Edit, TEXT_DEPTH, pointer};
use crate::snapshot::yaml::Borrowed;

/// A planned patch: its operations and the patched document as compact JSON, and the path of
/// its first operation that is not a `test`.
pub(super) struct Planned {
    pub ops: Box<RawValue>,
    pub json: Box<RawValue>,
    pub changed: Option<Box<str>>,
}

/// The patch for `edits` and the patched document, as compact JSON: what
/// [`super::plan_patch_owned`] gives for the same document, written by `serde_json::to_string`.
/// The operations are written as they are planned, not built as `Value`s first.
pub(super) fn plan(mut doc: Borrowed<'_>, edits: &[Edit]) -> Option<Planned> {
    // A value rebuilt from the document is worked out on the `Value` (rare: pod templates).
    if edits.iter().any(|e| e.rebuild.is_some()) {
        return None;
    }
    let mut ops = Ops(Vec::with_capacity(2 * edits.len()));
    let mut changed: Option<Box<str>> = None;
    for edit in edits {
        let mut depth = 0;
        let mut node = &doc;
        for token in &edit.path {
            match child(node, token)? {
                Some(next) => {
                    node = next;
                    depth += 1;
                }
                None => break,
            }
        }
        if depth == edit.path.len() {
            if node.equals(&edit.value) {
                continue;
            }
            let path = pointer(&edit.path);
            let new = Borrowed::from_value(edit.value.clone());
            ops.push("test", path.as_str(), node)?;
            ops.push("replace", path.as_str(), &new)?;
            changed.get_or_insert_with(|| path.as_str().into());
            *walk_mut(&mut doc, &edit.path)? = new;
        } else {
            if !matches!(node, Borrowed::Map(_) | Borrowed::Seq(_)) {
                return None;
            }
            let mut value = edit.value.clone();
            for token in edit.path[depth + 1..].iter().rev() {
                let mut map = serde_json::Map::with_capacity(1);
                map.insert(token.clone(), value);
                value = Value::Object(map);
            }
            let new = Borrowed::from_value(value);
            ops.push("test", pointer(&edit.path[..depth]).as_str(), node)?;
            let path = pointer(&edit.path[..=depth]);
            ops.push("add", path.as_str(), &new)?;
            changed.get_or_insert_with(|| path.as_str().into());
            // `child` found no such key, or the index is the end of the list (or `-`).
            match walk_mut(&mut doc, &edit.path[..depth])? {
                Borrowed::Map(entries) => entries.push((edit.path[depth].clone().into(), new)),
                Borrowed::Seq(items) => items.push(new),
                _ => return None,
            }
        }
    }
    if doc.levels() > TEXT_DEPTH {
        return None;
    }
    let ops = serde_json::value::to_raw_value(&ops.0).ok()?;
    let json = serde_json::value::to_raw_value(&doc).ok()?;
    Some(Planned { ops, json, changed })
}

/// A JSON Patch as compact JSON, written operation by operation (the list is written as
/// `[`, the operations' texts and `,` between them).
struct Ops(Vec<Box<RawValue>>);

impl Ops {
    /// `{"op":..,"path":..,"value":..}`, as `serde_json` writes such a `Value` (keys in that
    /// order). `None` for a value nested deeper than a patch's text is kept for.
    fn push(&mut self, op: &str, path: &str, value: &Borrowed<'_>) -> Option<()> {
        #[derive(serde::Serialize)]
        struct Operation<'a, 'b> {
            op: &'a str,
            path: &'a str,
            value: &'a Borrowed<'b>,
        }
        // An operation is one level above its value, and a patch's text is kept for
        // operations of up to `TEXT_DEPTH - 1` levels (`CompactForm for Vec<Value>`).
        if value.levels() + 1 > TEXT_DEPTH - 1 {
            return None;
        }
        // Writing to a `String` cannot fail (and keys are strings).
        let text = serde_json::value::to_raw_value(&Operation { op, path, value }).ok()?;
        self.0.push(text);
        Some(())
    }
}

/// `Some(Some(child))`, `Some(None)` where an `add` would put it (a key not there, the end of a
/// list), or `None` where JSON Patch and the planner on a `Value` might disagree.
fn child<'t, 'a>(node: &'t Borrowed<'a>, token: &str) -> Option<Option<&'t Borrowed<'a>>> {
    match node {
        Borrowed::Map(entries) => Some(
            entries
                .iter()
                .find(|(k, _)| k.as_ref() == token)
                .map(|(_, v)| v),
        ),
        Borrowed::Seq(items) => {
            if token == "-" {
                return Some(None);
            }
            let i = index(token)?;
            match i.cmp(&items.len()) {
                std::cmp::Ordering::Less => Some(items.get(i)),
                std::cmp::Ordering::Equal => Some(None),
                std::cmp::Ordering::Greater => None,
            }
        }
        // Through a scalar: the planner on a `Value` says what is wrong.
        _ => Some(None),
    }
}

/// A list index as JSON Patch reads one: digits, no leading zero.
fn index(token: &str) -> Option<usize> {
    let canonical = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    canonical.then(|| token.parse().ok()).flatten()
}

fn walk_mut<'t, 'a>(doc: &'t mut Borrowed<'a>, path: &[String]) -> Option<&'t mut Borrowed<'a>> {
    let mut node = doc;
    for token in path {
        node = match node {
            Borrowed::Map(entries) => entries
                .iter_mut()
                .find(|(k, _)| k.as_ref() == token.as_str())
                .map(|(_, v)| v)?,
            Borrowed::Seq(items) => items.get_mut(index(token)?)?,
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Both planners on `yaml` with `edits`: the same operations and the same text, or the
    /// borrowed one declines.
    fn same(yaml: &str, edits: &[Edit]) -> bool {
        let tree = crate::snapshot::yaml::borrowed(yaml).expect("plain block YAML");
        let value = crate::snapshot::yaml::from_str(yaml).expect("yaml");
        let expected = super::super::plan_patch_owned(value, edits).map(|(ops, doc)| {
            (
                serde_json::to_string(&ops).expect("json"),
                serde_json::to_string(&doc).expect("json"),
                super::super::first_change(&ops).map(str::to_string),
            )
        });
        match plan(tree, edits) {
            Some(Planned { ops, json, changed }) => {
                let got = (
                    ops.get().to_string(),
                    json.get().to_string(),
                    changed.map(String::from),
                );
                assert_eq!(Ok(got), expected, "{yaml}\n{edits:?}");
                true
            }
            None => false,
        }
    }

    const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: cart
  namespace: shop
  annotations:
    note: \"tab\\there, quote \\\" and é\"
spec:
  hosts: [cart]
  http:
  - name: default
    route:
    - destination: {host: cart}
      weight: 100
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: connect-failure,refused-stream
  - route:
    - destination: {host: cart, subset: v2}
    fault: {delay: {percentage: {value: 0.1}, fixedDelay: 5s}}
";

    #[test]
    fn the_same_patch_and_resource_as_on_a_value() {
        let e = |p: &str, v: Value| Edit::at(p, None, v);
        let cases: Vec<Vec<Edit>> = vec![
            // Replace a string, the same value again (nothing), a number, a whole object.
            vec![e(
                "/spec/http/0/retries/retryOn",
                json!("reset,connect-failure"),
            )],
            vec![e(
                "/spec/http/0/retries/retryOn",
                json!("connect-failure,refused-stream"),
            )],
            vec![e("/spec/http/0/retries/attempts", json!(2))],
            vec![e("/spec/http/0/retries/attempts", json!(3.0))],
            vec![e(
                "/spec/http/0/retries",
                json!({"attempts": 2, "retryOn": "reset"}),
            )],
            // Add under a missing parent (built as objects), a new key, a list's end.
            vec![e(
                "/spec/http/1/retries",
                json!({"attempts": 2, "retryOn": "reset,503"}),
            )],
            vec![e(
                "/spec/trafficPolicy/connectionPool/http/idleTimeout",
                json!("50s"),
            )],
            vec![e("/spec/http/2", json!({"route": []}))],
            vec![e(
                "/spec/http/-",
                json!({"route": [{"destination": {"host": "x"}}]}),
            )],
            vec![e("/spec/hosts/1", json!("cart.shop.svc.cluster.local"))],
            // Keys with `/` and `~`, escaped in the pointer; a float pinned by a test.
            vec![Edit::at("/metadata/annotations", Some("a/b~c"), json!("v"))],
            vec![e("/spec/http/1/fault/delay/percentage/value", json!(50))],
            // Several edits, the second reading what the first wrote.
            vec![
                e("/spec/http/1/retries", json!({"attempts": 1})),
                e("/spec/http/1/retries/retryOn", json!("reset")),
                e("/spec/http/0/timeout", json!("20s")),
            ],
        ];
        for edits in &cases {
            assert!(same(VS, edits), "declined: {edits:?}");
        }
    }

    #[test]
    fn what_it_cannot_plan_is_left_to_the_value_planner() {
        let e = |p: &str, v: Value| Edit::at(p, None, v);
        for edits in [
            // Through a scalar, past a list's end, an index JSON Patch does not read.
            vec![e("/spec/http/0/timeout/x", json!(1))],
            vec![e("/spec/http/5/retries", json!({}))],
            vec![e("/spec/http/00/retries", json!({}))],
            vec![e("/spec/hosts/+1", json!("x"))],
        ] {
            assert!(!same(VS, &edits), "planned: {edits:?}");
        }
        // Nested deeper than the compact text is kept for.
        let deep: String = (0..120)
            .map(|i| format!("{}a:\n", "  ".repeat(i)))
            .collect();
        assert!(!same(
            &format!("{deep}{}b: 1\n", "  ".repeat(120)),
            &[e("/c", json!(1))]
        ));
    }
}
