//! Positions in plain block-style YAML by indentation alone, without a syntax tree.
//!
//! Locating a finding parsed its document into a lossless tree (`yaml-edit`), a fifth of
//! `analyze`'s time on a large input (README, Benchmarks). Nearly every manifest is plain block
//! YAML (kubectl's own output, Helm's and kustomize's): keys at one indentation, values below
//! them, `- ` items. For such a document the same positions follow from the indentation of each
//! line. Anything else (anchors, aliases, tags, quoted, numeric or complex keys, multi-line
//! flow or quoted scalars, tabs) gives `None`, and the caller uses the tree. A test compares both on every field of every document the tests hold. One-line flow
//! collections are read by the YAML reader's own flow parser (`snapshot::yaml::flow`).

use crate::snapshot::yaml::flow::{self, Flow};
use crate::snapshot::yaml::{after_dash, key_end, strip_comment};

/// A line as the block structure sees it; a `- ` item line is two: the dash, and what follows
/// it one column further right (`- name: x` is a dash at 0 and a key line at 2).
#[derive(Clone, Copy, Debug)]
struct Line<'a> {
    indent: usize,
    /// Byte offset of the first character, in the document.
    offset: usize,
    kind: Kind<'a>,
}

#[derive(Clone, Copy, Debug)]
enum Kind<'a> {
    Dash,
    /// `key:` with what follows on the line (comment removed, trimmed) and where that starts
    /// (bytes from the key).
    Key(&'a str, &'a str, usize),
    /// A one-line flow collection as an item (`- {a: 1}`).
    Flow,
    /// Anything else: a scalar (or the continuation of one).
    Other,
}

/// Where the object (the document, or its `items[item]`) starts, and for `path` the deepest
/// node that exists on it: its offset (of the key, for a mapping entry) and how many tokens
/// exist. Offsets are bytes in `text`. `None`: not plain block YAML; use the tree.
pub fn locate(
    text: &str,
    item: Option<usize>,
    path: Option<&[String]>,
) -> Option<(usize, Option<(usize, usize)>)> {
    // A byte order mark: the tree places the object after it, as the YAML reader reads it.
    if text.starts_with('\u{feff}') {
        return None;
    }
    let lines = lines(text)?;
    let root = Node::Mapping(0, 0);
    let first = lines.first()?;
    if first.indent != 0 || !matches!(first.kind, Kind::Key(..)) {
        return None;
    }
    let (object, object_offset) = match item {
        None => (root, first.offset),
        Some(i) => {
            let (items, _) = entry(&lines, root, "items")?;
            let Step::Node(Node::Sequence(at, indent)) = value(&lines, items)? else {
                return None;
            };
            let (start, offset) = sequence_item(&lines, at, indent, i)?;
            (item_node(&lines, start, indent)?, offset)
        }
    };
    let Some(path) = path else {
        return Some((object_offset, None));
    };
    let (mut node, mut offset) = (object, object_offset);
    for (depth, token) in path.iter().enumerate() {
        let next = match node {
            Node::Mapping(..) => match entry(&lines, node, token) {
                Some((key, key_offset)) => Some((value(&lines, key)?, key_offset)),
                None => None,
            },
            Node::Sequence(at, indent) => match token.parse::<usize>() {
                Ok(i) => match sequence_item(&lines, at, indent, i) {
                    Some((start, item_offset)) => {
                        Some((Step::Node(item_node(&lines, start, indent)?), item_offset))
                    }
                    None => None,
                },
                Err(_) => None,
            },
            Node::Flow(start) => {
                let (inner, found) = find_in_flow(text, start, &path[depth..])?;
                let offset = if found == 0 { offset } else { inner };
                return Some((object_offset, Some((offset, depth + found))));
            }
            Node::Scalar => None,
        };
        match next {
            Some((Step::Node(n), at)) => (node, offset) = (n, at),
            Some((Step::Scalar, at)) => {
                offset = at;
                node = Node::Scalar;
            }
            Some((Step::Flow(start), at)) => {
                // A one-line flow collection: the rest of the path is looked up in it.
                let (inner, found) = find_in_flow(text, start, &path[depth + 1..])?;
                let offset = if found == 0 { at } else { inner };
                return Some((object_offset, Some((offset, depth + 1 + found))));
            }
            None => return Some((object_offset, Some((offset, depth)))),
        }
    }
    Some((object_offset, Some((offset, path.len()))))
}

/// A block node: a mapping whose entries are the key lines at `indent` from line `at` on, a
/// sequence whose items are the dash lines at `indent`, or a scalar (nothing to enter).
#[derive(Clone, Copy, Debug)]
enum Node {
    Mapping(usize, usize),
    Sequence(usize, usize),
    /// A one-line flow collection starting at this offset.
    Flow(usize),
    Scalar,
}

enum Step {
    Node(Node),
    Scalar,
    /// `{...}` or `[...]` on the key's line (its text and offset in the document).
    Flow(usize),
}

/// The entry `key` of a mapping: its line and the key's offset.
fn entry(lines: &[Line], node: Node, key: &str) -> Option<(usize, usize)> {
    let Node::Mapping(at, indent) = node else {
        return None;
    };
    for (i, line) in lines.iter().enumerate().skip(at) {
        if line.indent < indent || (i > at && line.indent == indent && !is_entry(line)) {
            return None;
        }
        if line.indent == indent
            && let Kind::Key(k, ..) = line.kind
            && k == key
        {
            return Some((i, line.offset));
        }
    }
    None
}

fn is_entry(line: &Line) -> bool {
    // A compact sequence (`key:` then `- x` at the key's indentation) is the key's value.
    matches!(line.kind, Kind::Key(..) | Kind::Dash)
}

/// The value of the key on line `key`.
fn value(lines: &[Line], key: usize) -> Option<Step> {
    let line = &lines[key];
    let Kind::Key(_, inline, _) = line.kind else {
        return None;
    };
    if !inline.is_empty() {
        // A flow collection can be entered by the tree; a scalar (block scalars included) not.
        if inline.starts_with(['{', '[']) {
            let Kind::Key(_, _, value_at) = line.kind else {
                return None;
            };
            return Some(Step::Flow(line.offset + value_at));
        }
        return Some(Step::Scalar);
    }
    let Some(next) = lines.get(key + 1) else {
        return Some(Step::Scalar);
    };
    Some(match next.kind {
        Kind::Dash if next.indent >= line.indent => {
            Step::Node(Node::Sequence(key + 1, next.indent))
        }
        Kind::Key(..) if next.indent > line.indent => {
            Step::Node(Node::Mapping(key + 1, next.indent))
        }
        // `command:` with `["sh", "-c", ...]` on the line below.
        Kind::Flow if next.indent > line.indent => Step::Flow(next.offset),
        _ => Step::Scalar,
    })
}

/// Item `i` of the sequence whose dashes are at `indent` from line `at`: the line after its
/// dash, and the offset of the item's node.
fn sequence_item(lines: &[Line], at: usize, indent: usize, i: usize) -> Option<(usize, usize)> {
    let mut seen = 0;
    for (n, line) in lines.iter().enumerate().skip(at) {
        if line.indent < indent || (line.indent == indent && !matches!(line.kind, Kind::Dash)) {
            return None;
        }
        if line.indent == indent && matches!(line.kind, Kind::Dash) {
            if seen == i {
                let content = lines.get(n + 1).filter(|l| l.indent > indent)?;
                return Some((n + 1, content.offset));
            }
            seen += 1;
        }
    }
    None
}

/// The node of a sequence item whose content starts on line `start`.
fn item_node(lines: &[Line], start: usize, dash_indent: usize) -> Option<Node> {
    let line = lines.get(start)?;
    if line.indent <= dash_indent {
        return None;
    }
    Some(match line.kind {
        Kind::Key(..) => Node::Mapping(start, line.indent),
        Kind::Dash => Node::Sequence(start, line.indent),
        Kind::Flow => Node::Flow(line.offset),
        Kind::Other => Node::Scalar,
    })
}

/// The deepest node on `path` in the one-line flow collection at byte `start` of `text`:
/// (offset, how many tokens exist; offset 0 when none does). `None` when the shared flow parser
/// leaves it to the tree.
fn find_in_flow(text: &str, start: usize, path: &[String]) -> Option<(usize, usize)> {
    let (flow, _) = flow::parse(text, start)?;
    let (mut node, mut offset) = (&flow, 0);
    for (depth, token) in path.iter().enumerate() {
        let next = match node {
            // A key YAML reads as a number or a boolean is not found by its text in the tree.
            Flow::Mapping(entries) => entries
                .iter()
                .find(|(k, ..)| *k == token.as_str() && string_key(k))
                .map(|(_, at, v)| (*at, v)),
            Flow::Sequence(items) => token
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .map(|(at, v)| (*at, v)),
            Flow::Scalar => None,
        };
        match next {
            Some((at, v)) => (offset, node) = (at, v),
            None => return Some((offset, depth)),
        }
    }
    Some((offset, path.len()))
}

/// The block lines of a document, or `None` when it is not plain block YAML.
fn lines(text: &str) -> Option<Vec<Line<'_>>> {
    let mut out = Vec::new();
    // Inside a block scalar (`|`, `>`): lines indented more than this are its text.
    let mut scalar_above: Option<usize> = None;
    // Lines found with the memchr crate, as the parser finds them (the standard library's
    // search per line was half of placing a finding); most documents have no `\r` at all.
    let has_cr = memchr::memchr(b'\r', text.as_bytes()).is_some();
    for raw in crate::snapshot::yaml::RawLines::new(text) {
        let start = raw.as_ptr() as usize - text.as_ptr() as usize;
        let line = crate::snapshot::yaml::without_cr(raw, has_cr)?;
        let content = line.trim_start_matches(' ');
        if let Some(above) = scalar_above {
            if content.is_empty() || line.len() - content.len() > above {
                continue;
            }
            scalar_above = None;
        }
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.starts_with(['\t', '%']) {
            return None;
        }
        let mut indent = line.len() - content.len();
        let mut at = start + indent;
        let mut rest = content;
        // `- ` items: a dash, then the rest one column further (two dashes: use the tree).
        if rest == "-" || rest.starts_with("- ") {
            out.push(Line {
                indent,
                offset: at,
                kind: Kind::Dash,
            });
            let Some(after) = after_dash(rest)? else {
                continue;
            };
            if after.starts_with(['|', '>']) {
                scalar_above = Some(indent);
            }
            indent += rest.len() - after.len();
            at += rest.len() - after.len();
            rest = after;
        }
        let kind = classify(rest)?;
        if let Kind::Key(_, value, _) = kind
            && value.starts_with(['|', '>'])
        {
            scalar_above = Some(indent);
        }
        out.push(Line {
            indent,
            offset: at,
            kind,
        });
    }
    // An empty item (`-` and nothing below it) is a null node only the tree places.
    let empty_item = out.iter().enumerate().any(|(i, l)| {
        matches!(l.kind, Kind::Dash) && out.get(i + 1).is_none_or(|next| next.indent <= l.indent)
    });
    (!empty_item).then_some(out)
}

/// A key line or a scalar; `None` for what only the tree reads right.
fn classify(text: &str) -> Option<Kind<'_>> {
    if memchr::memchr(b'\t', text.as_bytes()).is_some() {
        // A tab separates as a space does (`metadata:<tab>`, in argocd-example-apps), which
        // the key search here does not read.
        return None;
    }
    if text.starts_with(['"', '\'']) {
        // A quoted scalar that ends on its line (an item, a continuation); `"key": x` is not.
        return plain_line(text).then_some(Kind::Other);
    }
    if text.starts_with(['|', '>']) {
        // A block scalar item (`- |`); its lines are skipped by the caller.
        return Some(Kind::Other);
    }
    if text.starts_with(['{', '[']) {
        return plain_line(text).then_some(Kind::Flow);
    }
    if text.starts_with(['&', '*', '!', '?', '"', '\'', '@', '`']) {
        // Anchors, aliases, tags, complex or quoted keys, flow collections and quoted scalars
        // as whole lines: the tree reads these.
        return None;
    }
    let key_end = key_end(text);
    let Some(end) = key_end else {
        // A plain scalar line (a value's continuation).
        return plain_line(text).then_some(Kind::Other);
    };
    let key = &text[..end];
    if key.is_empty() || key.ends_with([' ', '\t']) || !string_key(key) {
        return None;
    }
    let after = strip_comment(&text[end + 1..]);
    let value = after.trim();
    if value.starts_with(['&', '*', '!']) || !plain_line(value) {
        return None;
    }
    let value_at = end + 1 + (after.len() - after.trim_start().len());
    Some(Kind::Key(key, value, value_at))
}

/// A plain key that YAML reads as a string: not `<<`, and nothing that could resolve to a
/// number, a boolean or null (`200:`, `on:`), which the tree does not find by its text.
fn string_key(key: &str) -> bool {
    // Compared in any case without a lowercased copy: this runs for every key line located.
    const WORDS: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    !(key == "<<"
        || key.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | '~'))
        || WORDS.iter().any(|word| key.eq_ignore_ascii_case(word)))
}

/// A value that ends on its line: quotes closed, flow brackets balanced.
fn plain_line(value: &str) -> bool {
    let value = strip_comment(value).trim_end();
    if let Some(rest) = value.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => return rest[i + 1..].trim().is_empty(),
                _ => escaped = false,
            }
        }
        return false;
    }
    if let Some(rest) = value.strip_prefix('\'') {
        // '' is an escaped quote; the closing quote ends the value.
        let inner = rest.replace("''", "");
        return inner
            .find('\'')
            .is_some_and(|i| inner[i + 1..].trim().is_empty());
    }
    if value.starts_with(['{', '[']) {
        let mut depth = 0i32;
        let (mut single, mut double) = (false, false);
        for c in value.chars() {
            match c {
                '\'' if !double => single = !single,
                '"' if !single => double = !double,
                '{' | '[' if !single && !double => depth += 1,
                '}' | ']' if !single && !double => depth -= 1,
                _ => {}
            }
        }
        return depth == 0 && !single && !double;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, offset: usize) -> (usize, usize) {
        super::super::line_col(text, offset)
    }

    #[test]
    fn keys_items_and_missing_fields() {
        let text = "# c\nkind: X\nspec:\n  list:\n  - name: x\n    port: 80 # c\n  other: {a: 1}\n";
        let path: Vec<String> = ["spec", "list", "0", "port"].map(String::from).to_vec();
        let (object, field) = locate(text, None, Some(&path)).unwrap();
        assert_eq!(at(text, object), (2, 1));
        let (offset, depth) = field.unwrap();
        assert_eq!((at(text, offset), depth), ((6, 5), 4));
        let missing: Vec<String> = ["spec", "list", "0", "x", "y"].map(String::from).to_vec();
        let (_, field) = locate(text, None, Some(&missing)).unwrap();
        let (offset, depth) = field.unwrap();
        assert_eq!((at(text, offset), depth), ((5, 5), 3));
        // Into a one-line flow collection: the key inside it.
        let flow: Vec<String> = ["spec", "other", "a"].map(String::from).to_vec();
        let (_, field) = locate(text, None, Some(&flow)).unwrap();
        let (offset, depth) = field.unwrap();
        assert_eq!((at(text, offset), depth), ((7, 11), 3));
    }

    #[test]
    fn what_is_not_plain_block_yaml_is_left_to_the_tree() {
        for text in [
            "a: &x 1\n",
            "a: *x\n",
            "\"a\": 1\n",
            "a: !!str 1\n",
            "? a\n: 1\n",
            "a: \"one\n  two\"\n",
            "a: {b: 1,\n  c: 2}\n",
            "- - a\n",
            "{a: 1}\n",
            "\ta: 1\n",
        ] {
            assert!(
                locate(text, None, Some(&["a".to_string()])).is_none(),
                "{text:?}"
            );
        }
    }
}
