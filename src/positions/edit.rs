//! Writing fixes into the user's YAML: each RFC 6902 operation of a remediation becomes an
//! edit of the node at its path in the lossless tree (`yaml-edit`), so comments, key order,
//! quoting, indentation, flow or block style and document separators stay as they were and
//! only the changed values are touched.
//!
//! Every edited document is read back with meshmedic's own loader and must equal the original
//! document with the patch applied; an edit that would mean anything else is refused (then a
//! second, more conservative rendering — every new string double-quoted — is tried).

use std::str::FromStr;

use serde_json::Value;
use yaml_edit::{AsYaml, Document, Mapping, YamlFile, YamlNode};

use super::{ParsedChunk, document_chunks, pointer_tokens};
use crate::error::Source;

/// The patch of one object.
#[derive(Clone, Debug)]
pub struct ObjectPatch {
    pub source: Source,
    /// `Kind namespace/name`, for messages.
    pub object: String,
    /// RFC 6902 operations against the object as the file has it.
    pub ops: Vec<Value>,
}

/// How new values are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// Plain scalars where YAML reads them back as the same string, the old quoting kept.
    Natural,
    /// Every new string double-quoted.
    Quoted,
    /// A JSON document: new values in JSON, so that it stays JSON.
    Json,
}

/// How a document lays out its blocks, for new ones to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// The indentation step (see [`indent_unit`]).
    unit: usize,
    /// Whether a list under a key has its dashes at the key's column (`kubectl`, `istioctl`
    /// and Helm write them so), not one step in (see [`lists_indentless`]).
    indentless_lists: bool,
}

impl Layout {
    fn of(text: &str) -> Layout {
        let lines = content_lines(text);
        Layout {
            unit: indent_unit(&lines),
            indentless_lists: lists_indentless(&lines),
        }
    }
}

/// Applies patches to the text of one file; returns the new text. All or nothing per file.
pub fn edit_text(file: &str, text: &str, patches: &[ObjectPatch]) -> Result<String, String> {
    let chunks = document_chunks(text);
    let mut out = String::with_capacity(text.len() + 256);
    let mut copied = 0;
    let mut documents: Vec<usize> = patches.iter().map(|p| p.source.document).collect();
    documents.sort_unstable();
    documents.dedup();
    for document in documents {
        let Some(chunk) = chunks.get(document) else {
            return Err(format!("{file}: no document {document}"));
        };
        let old = &text[chunk.start..chunk.end];
        let mine: Vec<&ObjectPatch> = patches
            .iter()
            .filter(|p| p.source.document == document)
            .collect();
        let new = edit_document(file, document, old, &mine)?;
        out.push_str(&text[copied..chunk.start]);
        out.push_str(&new);
        copied = chunk.end;
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

/// One document: apply, read back, compare; with the conservative style if needed.
fn edit_document(
    file: &str,
    document: usize,
    old: &str,
    patches: &[&ObjectPatch],
) -> Result<String, String> {
    let at = format!("{file} (document {document})");
    let before = read_back(file, old)
        .ok_or_else(|| format!("{at}: the document does not read as one object"))?;
    let mut expected = before.clone();
    for p in patches {
        let prefix = p
            .source
            .item
            .map(|i| format!("/items/{i}"))
            .unwrap_or_default();
        let ops: Vec<Value> = p
            .ops
            .iter()
            .map(|op| {
                let mut op = op.clone();
                if let Some(path) = op.get("path").and_then(Value::as_str) {
                    op["path"] = Value::String(format!("{prefix}{path}"));
                }
                op
            })
            .collect();
        crate::remediation::apply(&mut expected, &ops)
            .map_err(|e| format!("{at}: {}: the fix does not apply: {e}", p.object))?;
    }
    let mut last_error = String::new();
    let json = old
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with('{') || l.starts_with('['));
    let styles: &[Style] = if json {
        &[Style::Json]
    } else {
        &[Style::Natural, Style::Quoted]
    };
    for &style in styles {
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            apply_in_tree(old, patches, style)
        }))
        .unwrap_or_else(|_| Err("the YAML editor failed on this document".to_string()));
        match applied {
            Ok(new) => {
                if read_back(file, &new).as_ref() == Some(&expected) {
                    return Ok(new);
                }
                last_error = "the edited YAML would not read back as the fixed object".to_string();
            }
            Err(e) => last_error = e,
        }
    }
    let objects: Vec<&str> = patches.iter().map(|p| p.object.as_str()).collect();
    Err(format!("{at}: {}: {last_error}", objects.join(", ")))
}

fn read_back(file: &str, text: &str) -> Option<Value> {
    let docs = crate::snapshot::load::parse_documents(file, text).ok()?;
    match docs.len() {
        0 => Some(Value::Null),
        1 => docs.into_iter().next().map(|(_, v)| v),
        _ => None,
    }
}

fn apply_in_tree(old: &str, patches: &[&ObjectPatch], style: Style) -> Result<String, String> {
    let layout = Layout::of(old);
    let unit = layout.unit;
    let mut text = old.to_string();
    for p in patches {
        for op in &p.ops {
            let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
            let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
            let value = op.get("value").cloned().unwrap_or(Value::Null);
            match kind {
                "test" => continue,
                "replace" | "add" => {}
                "move" => {
                    let from = op.get("from").and_then(Value::as_str).unwrap_or_default();
                    text = move_item(&text, p.source.item, from, path)
                        .map_err(|e| format!("{}: {from} → {path}: {e}", p.object))?;
                    continue;
                }
                other => return Err(format!("{}: operation {other} is not written", p.object)),
            }
            // One operation at a time on a fresh tree, so that byte offsets (quoting, the
            // re-indentation below) always refer to the text as it now is.
            let parsed = ParsedChunk::parse(&text)
                .ok_or("the YAML editor cannot read this document losslessly")?;
            let object = parsed
                .object(p.source.item)
                .ok_or_else(|| format!("{}: not found in its document", p.object))?;
            let tokens = pointer_tokens(path);
            let block = put(&object, &tokens, &value, style, &text, layout)
                .map_err(|e| format!("{}: {path}: {e}", p.object))?;
            text = parsed.file.to_string();
            // The editor puts a new block two spaces below its key; the document may put a
            // mapping's keys further in, and a list's dashes at the key's own column.
            // (A step under two, seen in a few files, is left as the editor writes it.)
            let shift = if value.is_array() && layout.indentless_lists {
                -2
            } else {
                unit.saturating_sub(2) as isize
            };
            if block && shift != 0 {
                text = reindent_inserted(&text, p.source.item, &tokens, shift)
                    .ok_or_else(|| format!("{}: {path}: cannot indent the new block", p.object))?;
            }
        }
    }
    Ok(text)
}

/// Moves item `from` of a block list to index `to` of the same list (RFC 6902 `move`: taken out,
/// then put at `to` in the shorter list) by moving its lines, so the item keeps its text as the
/// file has it: comments (those right above its dash go with it), quoting, block scalars, the
/// list's own style. A flow list is refused.
fn move_item(text: &str, item: Option<usize>, from: &str, to: &str) -> Result<String, String> {
    let (from_tokens, to_tokens) = (pointer_tokens(from), pointer_tokens(to));
    let (Some((i, list)), Some((j, to_list))) = (from_tokens.split_last(), to_tokens.split_last())
    else {
        return Err("not list items".to_string());
    };
    if list != to_list {
        return Err("an item is moved within its list only".to_string());
    }
    let index = |token: &String| {
        token
            .parse::<usize>()
            .map_err(|_| format!("{token} is not an index"))
    };
    let (i, j) = (index(i)?, index(j)?);
    let parsed = ParsedChunk::parse(text).ok_or("the YAML editor cannot read this document")?;
    let mut node = parsed
        .object(item)
        .ok_or("the object is not in its document")?;
    for token in list {
        node = if let Some(m) = node.as_mapping() {
            m.get(token.as_str())
        } else if let Some(s) = node.as_sequence() {
            token.parse().ok().and_then(|k| s.get(k))
        } else {
            None
        }
        .ok_or_else(|| format!("no {token} on the path"))?;
    }
    let sequence = node.as_sequence().ok_or("not a list")?;
    if sequence.is_flow_style() {
        return Err("the items of a flow-style list are not moved in place".to_string());
    }
    let count = sequence.len();
    if i >= count || j >= count {
        return Err(format!("the list has {count} items"));
    }
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |n| n + 1);
    // Where each item's lines begin: its dash's line, and the comment lines right above it.
    let mut begins = Vec::with_capacity(count);
    let mut last_end = 0;
    for k in 0..count {
        let range = sequence.get(k).ok_or("an item is missing")?.byte_range();
        let (start, end) = (range.start as usize, range.end as usize);
        let before = text[..start].trim_end_matches([' ', '\n', '\r']);
        let dash = before
            .strip_suffix('-')
            .map(str::len)
            .ok_or("an item without its dash")?;
        let mut begin = line_start(dash);
        if !text[begin..dash].chars().all(|c| c == ' ') {
            return Err("an item that does not start its line".to_string());
        }
        while begin > 0 {
            let above = line_start(begin - 1);
            if !text[above..begin].trim_start().starts_with('#') {
                break;
            }
            begin = above;
        }
        begins.push(begin);
        last_end = end;
    }
    // The end of the last item's last line.
    let end_of_list = if text[..last_end].ends_with('\n') {
        last_end
    } else {
        text[last_end..]
            .find('\n')
            .map_or(text.len(), |n| last_end + n + 1)
    };
    let span = |k: usize| begins[k]..begins.get(k + 1).copied().unwrap_or(end_of_list);
    let mut piece = text[span(i)].to_string();
    if !piece.ends_with('\n') {
        piece.push('\n');
    }
    let moved = span(i);
    let mut out = String::with_capacity(text.len() + 1);
    if j < i {
        let at = begins[j];
        out.push_str(&text[..at]);
        out.push_str(&piece);
        out.push_str(&text[at..moved.start]);
        out.push_str(&text[moved.end..]);
    } else {
        // After the item now at `j` in the shorter list: the one at `j` in the list as it is.
        let at = span(j).end;
        out.push_str(&text[..moved.start]);
        out.push_str(&text[moved.end..at]);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&piece);
        out.push_str(&text[at..]);
    }
    Ok(out)
}

/// The lines that hold YAML (not blank, not a comment): (indentation, trimmed text).
fn content_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .map(|l| (l.len() - l.trim_start_matches(' ').len(), l.trim()))
        .filter(|(_, t)| !t.is_empty() && !t.starts_with('#'))
        .collect()
}

/// The indentation step of a document: the smallest indentation a block mapping's entries
/// have beyond their parent key (2 when the document has no nesting to tell).
fn indent_unit(lines: &[(usize, &str)]) -> usize {
    lines
        .windows(2)
        .filter(|w| w[0].1.ends_with(':') && !w[1].1.starts_with('-'))
        .filter_map(|w| {
            w[1].0
                .checked_sub(w[0].0 + usize::from(w[0].1.starts_with("- ")) * 2)
        })
        .filter(|&d| d > 0)
        .min()
        .unwrap_or(2)
}

/// Whether the document's lists under keys are mostly written with their dashes at the key's
/// column (`containers:` then `- name: app` below its `c`); no list under a key: no.
fn lists_indentless(lines: &[(usize, &str)]) -> bool {
    let (mut at_key, mut deeper) = (0, 0);
    for w in lines.windows(2) {
        let ((key_indent, key), (item_indent, item)) = (w[0], w[1]);
        if !key.ends_with(':') || !(item == "-" || item.starts_with("- ")) {
            continue;
        }
        // The key's own column: after the dash of a `- key:` line.
        let column = key_indent + if key.starts_with("- ") { 2 } else { 0 };
        match item_indent.cmp(&column) {
            std::cmp::Ordering::Equal => at_key += 1,
            std::cmp::Ordering::Greater => deeper += 1,
            std::cmp::Ordering::Less => {}
        }
    }
    at_key > deeper
}

/// Shifts the lines of the node at `path` by `by` spaces, right or (negative) left: the editor
/// indents a new block two spaces below its key, the document may use another step. `None`
/// when a line has fewer spaces than a left shift takes.
fn reindent_inserted(
    text: &str,
    item: Option<usize>,
    path: &[String],
    by: isize,
) -> Option<String> {
    let parsed = ParsedChunk::parse(text)?;
    let mut node = parsed.object(item)?;
    for token in path {
        node = if let Some(m) = node.as_mapping() {
            m.get(token.as_str())?
        } else if let Some(s) = node.as_sequence() {
            s.get(token.parse().ok()?)?
        } else {
            return None;
        };
    }
    let range = node.byte_range();
    let (start, end) = (range.start as usize, range.end as usize);
    let first_line = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let pad = " ".repeat(by.max(0).unsigned_abs());
    let cut = by.min(0).unsigned_abs();
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&text[..first_line]);
    for line in text[first_line..end].split_inclusive('\n') {
        if line.trim().is_empty() {
            out.push_str(line);
        } else if cut > 0 {
            out.push_str(
                line.get(..cut)
                    .filter(|s| s.bytes().all(|b| b == b' '))
                    .and(line.get(cut..))?,
            );
        } else {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out.push_str(&text[end..]);
    Some(out)
}

/// Puts `value` at `path` below `object` (the parent must exist, as RFC 6902 requires).
fn put(
    object: &YamlNode,
    path: &[String],
    value: &Value,
    style: Style,
    old_text: &str,
    layout: Layout,
) -> Result<bool, String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("the whole object cannot be replaced in place".to_string());
    };
    let mut node = object.clone();
    for token in parents {
        let next = if let Some(m) = node.as_mapping() {
            m.get(token.as_str())
        } else if let Some(s) = node.as_sequence() {
            token.parse::<usize>().ok().and_then(|i| s.get(i))
        } else {
            None
        };
        node = next.ok_or_else(|| format!("no {token} on the path"))?;
    }
    if let Some(mapping) = node.as_mapping() {
        let quote = mapping
            .get(last.as_str())
            .and_then(|old| quote_of(&old, old_text));
        let flow = mapping.is_flow_style();
        let snippet = Snippet::new(value, style, quote, flow, layout)?;
        set_in_mapping(mapping, last, &snippet);
        return Ok(!flow && is_block_collection(value));
    }
    if let Some(sequence) = node.as_sequence() {
        let flow = sequence.is_flow_style();
        if last == "-" {
            let snippet = Snippet::new(value, style, None, flow, layout)?;
            snippet.with(|v| sequence.push(v));
            return Ok(false);
        }
        let i: usize = last
            .parse()
            .map_err(|_| format!("{last} is not an index"))?;
        let quote = sequence.get(i).and_then(|old| quote_of(&old, old_text));
        let snippet = Snippet::new(value, style, quote, flow, layout)?;
        if i < sequence.len() {
            snippet.with(|v| {
                sequence.set(i, v);
            });
        } else if i == sequence.len() {
            snippet.with(|v| sequence.push(v));
        } else {
            return Err(format!("index {i} is past the end of the list"));
        }
        return Ok(false);
    }
    Err("the parent is not a mapping or a list".to_string())
}

fn set_in_mapping(mapping: &Mapping, key: &str, snippet: &Snippet) {
    match Snippet::key(key, snippet.style) {
        Some(k) => snippet.with(|v| k.with(|kv| mapping.set(kv, v))),
        None => snippet.with(|v| mapping.set(key, v)),
    }
}

/// The quote character of a scalar as the file writes it.
fn quote_of(node: &YamlNode, text: &str) -> Option<char> {
    let scalar = node.as_scalar()?;
    if !scalar.is_quoted() {
        return None;
    }
    let start = node.byte_range().start as usize;
    text[start..]
        .chars()
        .next()
        .filter(|c| *c == '"' || *c == '\'')
}

/// A value rendered as YAML and parsed by the editor, so that it goes into the tree as a node
/// in the style chosen here (quoting, block or flow).
struct Snippet {
    file: YamlFile,
    style: Style,
}

impl Snippet {
    fn new(
        value: &Value,
        style: Style,
        quote: Option<char>,
        flow: bool,
        layout: Layout,
    ) -> Result<Snippet, String> {
        let text = match value {
            Value::Object(_) | Value::Array(_) if flow || is_empty_collection(value) => {
                flow_text(value, style)
            }
            Value::Object(_) | Value::Array(_) => block_text(value, 0, layout, style),
            // A comma ends a plain scalar in a flow collection.
            Value::String(s) if flow && s.contains(',') => json_string(s),
            Value::String(s) => scalar_text(s, style, quote),
            other => other.to_string(),
        };
        let file = YamlFile::from_str(&text).map_err(|e| format!("cannot render {text:?}: {e}"))?;
        Ok(Snippet { file, style })
    }

    /// A mapping key: `None` when it is written plain.
    fn key(key: &str, style: Style) -> Option<Snippet> {
        if style != Style::Json && is_plain_safe(key) {
            return None;
        }
        let file = YamlFile::from_str(&json_string(key)).ok()?;
        Some(Snippet { file, style })
    }

    fn with<R>(&self, f: impl FnOnce(&dyn AsYaml) -> R) -> R {
        let Some(document): Option<Document> = self.file.document() else {
            return f(&"");
        };
        if let Some(m) = document.as_mapping() {
            return f(&m);
        }
        if let Some(s) = document.as_sequence() {
            return f(&s);
        }
        if let Some(s) = document.as_scalar() {
            return f(&s);
        }
        f(&"")
    }
}

fn is_block_collection(v: &Value) -> bool {
    (v.is_object() || v.is_array()) && !is_empty_collection(v)
}

fn is_empty_collection(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty()) || matches!(v, Value::Array(a) if a.is_empty())
}

/// A flow collection (`{a: b, c: [1, 2]}`); JSON in a JSON document.
fn flow_text(value: &Value, style: Style) -> String {
    let plain = |t: &str| style == Style::Natural && is_plain_safe(t) && !t.contains(',');
    match value {
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    let key = if plain(k) { k.clone() } else { json_string(k) };
                    format!("{key}: {}", flow_text(v, style))
                })
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| flow_text(v, style)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::String(s) if plain(s) => s.clone(),
        Value::String(s) => json_string(s),
        other => other.to_string(),
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A string that needs quotes, in the document's natural style: single-quoted when it holds
/// double quotes and nothing single quotes cannot (a line of printable text without `'`), as
/// `istioctl kube-inject` writes JSON into an env value; else double-quoted.
fn natural_quoted(s: &str) -> String {
    let single = s.contains('"') && !s.contains('\'') && !s.chars().any(char::is_control);
    if single {
        format!("'{s}'")
    } else {
        json_string(s)
    }
}

/// A string scalar: in the old quoting when there was one; else plain when YAML 1.1 and 1.2
/// both read it back as this string; else double-quoted.
fn scalar_text(s: &str, style: Style, quote: Option<char>) -> String {
    match (quote, style) {
        (Some('\''), Style::Natural) if !s.contains('\n') => format!("'{}'", s.replace('\'', "''")),
        (Some(_), _) | (None, Style::Quoted | Style::Json) => json_string(s),
        (None, Style::Natural) if is_plain_safe(s) => s.to_string(),
        (None, Style::Natural) if is_literal_safe(s) => block_literal(s, 2, 2),
        (None, Style::Natural) => natural_quoted(s),
    }
}

/// Multi-line text that a literal block scalar (`|`) holds as it is.
fn is_literal_safe(s: &str) -> bool {
    s.contains('\n') && s.ends_with('\n') && !s.contains('\t') && !s.contains('\r')
}

/// A literal block scalar whose lines sit at `indent`, `relative` deeper than its key.
fn block_literal(s: &str, indent: usize, relative: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = "|".to_string();
    if s.starts_with(' ') {
        out.push_str(&relative.to_string());
    }
    if s.ends_with("\n\n") {
        out.push('+');
    }
    out.push('\n');
    for line in s.trim_end_matches('\n').split('\n') {
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    if s.ends_with("\n\n") {
        for _ in 0..(s.len() - s.trim_end_matches('\n').len() - 1) {
            out.push('\n');
        }
    }
    out
}

/// Plain scalars that every YAML reader (1.1 and 1.2) reads back as this very string: no
/// indicator characters, not a bool/null word, and nothing a resolver could take for a number
/// or a date (whatever starts like a number needs a letter other than `e`, and no radix prefix).
/// A command-line flag (`--host=0.0.0.0`) and a Kubernetes variable reference (`$(POD_IP)`)
/// are plain, as people write them: a leading `-` is an indicator only before a space, and it
/// is kept from a number by refusing a digit or `.` after it.
fn is_plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let flag = first == '-'
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '-');
    // `---` at a line's start (a key) would end the document.
    if !(first.is_ascii_alphanumeric() || first == '/' || first == '$' || flag)
        || s.starts_with("---")
    {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./,=+@$()".contains(c))
    {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    if first.is_ascii_digit() {
        let radix = ["0x", "0o", "0b"].iter().any(|p| lower.starts_with(p));
        let letter = lower.chars().any(|c| c.is_ascii_alphabetic() && c != 'e');
        if radix || !letter {
            return false;
        }
    }
    !matches!(
        lower.as_str(),
        "y" | "n"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "true"
            | "false"
            | "null"
            | "nan"
            | ".nan"
            | "inf"
            | ".inf"
    )
}

/// Block YAML for a collection, `unit` spaces a level (the editor puts the first level below
/// its key itself).
fn block_text(value: &Value, indent: usize, layout: Layout, style: Style) -> String {
    let unit = layout.unit;
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if is_plain_safe(k) {
                    k.clone()
                } else {
                    json_string(k)
                };
                out.push_str(&format!("{pad}{key}:"));
                push_block_value(&mut out, v, indent, layout, style);
            }
        }
        Value::Array(items) => {
            let dash = format!("{pad}-{}", " ".repeat(unit.max(2) - 1));
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        let inner = block_text(item, indent + unit.max(2), layout, style);
                        out.push_str(&dash);
                        out.push_str(&inner[indent + unit.max(2)..]);
                    }
                    _ => {
                        out.push_str(&format!("{pad}-"));
                        push_block_value(&mut out, item, indent, layout, style);
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", inline_scalar(other, style))),
    }
    out
}

fn push_block_value(out: &mut String, v: &Value, indent: usize, layout: Layout, style: Style) {
    let unit = layout.unit;
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            out.push_str(&block_text(v, indent + unit, layout, style));
        }
        // A list under a key, with its dashes where the document puts them.
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            let at = if layout.indentless_lists {
                indent
            } else {
                indent + unit
            };
            out.push_str(&block_text(v, at, layout, style));
        }
        Value::String(s) if style == Style::Natural && is_literal_safe(s) => {
            out.push(' ');
            out.push_str(&block_literal(s, indent + unit, unit));
        }
        _ => {
            out.push(' ');
            out.push_str(&inline_scalar(v, style));
            out.push('\n');
        }
    }
}

fn inline_scalar(v: &Value, style: Style) -> String {
    match v {
        Value::String(s) if style == Style::Natural && is_plain_safe(s) => s.clone(),
        Value::String(s) if style == Style::Natural => natural_quoted(s),
        Value::String(s) => json_string(s),
        other => flow_text(other, style),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(document: usize, ops: Value) -> ObjectPatch {
        ObjectPatch {
            source: Source::new("f.yaml", document),
            object: "X ns/x".to_string(),
            ops: ops.as_array().unwrap().clone(),
        }
    }

    #[test]
    fn a_replaced_value_keeps_comments_and_quoting() {
        let text = "# head\na: 1\n---\nspec:\n  # keep\n  t: \"30m\"   # why\n  u: x\n";
        let p = patch(
            1,
            json!([{"op": "test", "path": "/spec/t", "value": "30m"},
                   {"op": "replace", "path": "/spec/t", "value": "60s"}]),
        );
        let out = edit_text("f.yaml", text, &[p]).unwrap();
        assert_eq!(
            out,
            "# head\na: 1\n---\nspec:\n  # keep\n  t: \"60s\"   # why\n  u: x\n"
        );
    }

    /// A moved list item keeps its text (a comment above its dash, a block scalar, quoting);
    /// an edit after the move lands in it where it now is, and a new list in it follows the
    /// document's dashes (at the key's column here).
    #[test]
    fn a_moved_item_keeps_its_lines_and_new_lists_follow_the_document() {
        let text = "spec:\n  containers:\n  # the app\n  - name: app\n    args:\n    - \"--x\"\n  - name: helper # side\n    image: h\n  # the proxy\n  - name: istio-proxy\n    env:\n    - name: PORTS\n      value: |-\n        [1,\n         2]\n";
        let p = patch(
            0,
            json!([{"op": "test", "path": "/spec/containers/2/name", "value": "istio-proxy"},
                   {"op": "move", "from": "/spec/containers/2", "path": "/spec/containers/0"},
                   {"op": "add", "path": "/spec/containers/0/lifecycle",
                    "value": {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}}]),
        );
        let out = edit_text("f.yaml", text, &[p]).unwrap();
        assert_eq!(
            out,
            "spec:\n  containers:\n  # the proxy\n  - name: istio-proxy\n    env:\n    - name: PORTS\n      value: |-\n        [1,\n         2]\n    lifecycle:\n      postStart:\n        exec:\n          command:\n          - pilot-agent\n          - wait\n  # the app\n  - name: app\n    args:\n    - \"--x\"\n  - name: helper # side\n    image: h\n"
        );
        // Forward past another item, the last one without a final newline.
        let text = "l:\n- name: a\n- name: b\n- name: c";
        let p = patch(0, json!([{"op": "move", "from": "/l/0", "path": "/l/1"}]));
        assert_eq!(
            edit_text("f.yaml", text, &[p]).unwrap(),
            "l:\n- name: b\n- name: a\n- name: c"
        );
        let p = patch(0, json!([{"op": "move", "from": "/l/2", "path": "/l/0"}]));
        assert_eq!(
            edit_text("f.yaml", text, &[p]).unwrap(),
            "l:\n- name: c\n- name: a\n- name: b\n"
        );
        // A flow list: refused, never rewritten some other way.
        let p = patch(0, json!([{"op": "move", "from": "/l/1", "path": "/l/0"}]));
        let err = edit_text("f.yaml", "l: [{name: a}, {name: b}]\n", &[p]).unwrap_err();
        assert!(err.contains("flow-style"), "{err}");
    }

    #[test]
    fn lists_under_keys_are_told_indentless_or_indented() {
        assert!(lists_indentless(&content_lines(
            "a:\n- 1\nb:\n  c:\n  - x\n  - y\n"
        )));
        assert!(!lists_indentless(&content_lines("a:\n  - 1\nb:\n  - 2\n")));
        assert!(lists_indentless(&content_lines(
            "- name: a\n  args:\n  - x\n"
        )));
        assert!(!lists_indentless(&content_lines("a: 1\n")));
    }

    /// JSON in a string (the agent's ISTIO_KUBE_APP_PROBERS) reads as kube-inject writes it:
    /// single-quoted; a string with both kinds of quote, or a control character, double-quoted.
    #[test]
    fn a_new_string_with_double_quotes_is_single_quoted() {
        let text = "env:\n- name: A\n  value: x\n";
        let probers = r#"{"/app-health/app/readyz":{"tcpSocket":{"port":80}}}"#;
        let p = patch(
            0,
            json!([{"op": "add", "path": "/env/1", "value": {"name": "P", "value": probers}},
                   {"op": "add", "path": "/env/2", "value": {"name": "Q", "value": "it's \"x\""}},
                   {"op": "add", "path": "/env/3", "value": {"name": "R", "value": "a\"\tb"}}]),
        );
        let out = edit_text("f.yaml", text, &[p]).unwrap();
        assert_eq!(
            out,
            format!(
                "env:\n- name: A\n  value: x\n- name: P\n  value: '{probers}'\n- name: Q\n  value: \"it's \\\"x\\\"\"\n- name: R\n  value: \"a\\\"\\tb\"\n"
            )
        );
    }

    #[test]
    fn an_added_mapping_goes_in_block_style_and_flow_stays_flow() {
        let text = "spec:\n  sel: {app: a}\n  x: 1\n";
        let p = patch(
            0,
            json!([{"op": "add", "path": "/spec/retries", "value": {"attempts": 2, "retryOn": "reset,connect-failure"}},
                   {"op": "add", "path": "/spec/sel/tier", "value": "web"}]),
        );
        let out = edit_text("f.yaml", text, &[p]).unwrap();
        assert_eq!(
            out,
            "spec:\n  sel: {app: a, tier: web}\n  x: 1\n  retries:\n    attempts: 2\n    retryOn: reset,connect-failure\n"
        );
    }

    #[test]
    fn strings_that_look_like_other_types_are_quoted() {
        let text = "metadata:\n  annotations:\n    a: b\n";
        let p = patch(
            0,
            json!([{"op": "add", "path": "/metadata/annotations/sidecar.istio.io~1rewriteAppHTTPProbers", "value": "true"},
                   {"op": "add", "path": "/metadata/annotations/ports", "value": "8080"}]),
        );
        let out = edit_text("f.yaml", text, &[p]).unwrap();
        let back = crate::snapshot::load::parse_documents("f", &out).unwrap();
        assert_eq!(
            back[0].1["metadata"]["annotations"]["sidecar.istio.io/rewriteAppHTTPProbers"],
            "true"
        );
        assert_eq!(back[0].1["metadata"]["annotations"]["ports"], "8080");
    }

    proptest::proptest! {
        /// A string written plain reads back as that string, in block and flow style, by
        /// kubectl's YAML 1.1 reading (meshmedic's own) and by a YAML 1.2 reader.
        #[test]
        fn plain_strings_read_back_as_themselves(s in "[-a-zA-Z0-9_./,=+@$():# ]{1,12}") {
            proptest::prop_assume!(is_plain_safe(&s));
            let mut texts = vec![format!("k: {s}\n"), format!("l:\n- {s}\n")];
            if !s.contains(',') {
                texts.push(format!("k: {{a: {s}}}\nl: [{s}]\n"));
            }
            for text in texts {
                let v11 = crate::snapshot::yaml::from_str(&text).unwrap();
                let v12: Value = serde_saphyr::from_str(&text).unwrap();
                for v in [&v11, &v12] {
                    let back = v.get("k").map(|k| k.get("a").unwrap_or(k)).or(v.get("l").map(|l| &l[0]));
                    proptest::prop_assert_eq!(back, Some(&Value::String(s.clone())), "{}", text);
                    if let Some(l) = v.get("l") {
                        proptest::prop_assert_eq!(&l[0], &Value::String(s.clone()), "{}", text);
                    }
                }
            }
        }
    }

    #[test]
    fn flags_and_variable_references_are_plain_numbers_are_not() {
        for s in [
            "--host=0.0.0.0",
            "-v",
            "$(POD_IP)",
            "--proxyLogLevel=warning",
            "/healthz",
        ] {
            assert!(is_plain_safe(s), "{s}");
        }
        for s in [
            "-1", "-.5", "-.inf", "- x", "-", "---x", "1e3", "0x1f", "yes", "a: b", "a #b",
        ] {
            assert!(!is_plain_safe(s), "{s}");
        }
        let text = "spec:\n  containers:\n  - name: app\n";
        let p = patch(
            0,
            json!([{"op": "add", "path": "/spec/containers/0/args",
                    "value": ["--host=0.0.0.0", "$(POD_IP)", "-1"]},
                   {"op": "add", "path": "/spec/containers/0/command", "value": "--x"}]),
        );
        assert_eq!(
            edit_text("f.yaml", text, &[p]).unwrap(),
            "spec:\n  containers:\n  - name: app\n    args:\n    - --host=0.0.0.0\n    - $(POD_IP)\n    - \"-1\"\n    command: --x\n"
        );
    }

    #[test]
    fn a_multi_line_string_is_a_block_literal() {
        let text = "metadata:\n  annotations:\n    a: b\n";
        let p = patch(
            0,
            json!([{"op": "add", "path": "/metadata/annotations/proxy.istio.io~1config", "value": "holdApplicationUntilProxyStarts: true\n"}]),
        );
        let out = edit_text("f.yaml", text, &[p]).unwrap();
        assert!(out.contains("proxy.istio.io/config: |\n"), "{out}");
    }

    #[test]
    fn list_items_are_edited_where_they_are() {
        let text = "kind: List\nitems:\n- kind: A\n- kind: B\n  spec:\n    p: 1\n";
        let mut p = patch(0, json!([{"op": "replace", "path": "/spec/p", "value": 2}]));
        p.source.item = Some(1);
        let out = edit_text("f.yaml", text, &[p]).unwrap();
        assert_eq!(
            out,
            "kind: List\nitems:\n- kind: A\n- kind: B\n  spec:\n    p: 2\n"
        );
    }

    #[test]
    fn new_blocks_follow_the_document_indentation_and_line_ends() {
        let text =
            "spec:\r\n    trafficPolicy:\r\n        loadBalancer:\r\n            simple: X\r\n";
        let p = patch(
            0,
            json!([{"op": "add", "path": "/spec/trafficPolicy/connectionPool", "value": {"http": {"idleTimeout": "67s"}}}]),
        );
        let out = edit_text("f.yaml", text, &[p]).unwrap();
        assert_eq!(
            out,
            "spec:\r\n    trafficPolicy:\r\n        loadBalancer:\r\n            simple: X\r\n        connectionPool:\r\n            http:\r\n                idleTimeout: 67s\r\n"
        );
    }

    #[test]
    fn a_flow_mapping_gets_flow_yaml() {
        let text = "metadata: {labels: {app: a}}\n";
        let p = patch(
            0,
            json!([{"op": "add", "path": "/metadata/annotations", "value": {"proxy.istio.io/config": "a: 1\n", "x": "y,z"}}]),
        );
        let out = edit_text("f.yaml", text, &[p]).unwrap();
        assert_eq!(
            out,
            "metadata: {labels: {app: a}, annotations: {proxy.istio.io/config: \"a: 1\\n\", x: \"y,z\"}}\n"
        );
    }

    #[test]
    fn json_stays_json() {
        let text = "{\"kind\": \"X\", \"spec\": {\"a\": \"b\"}}\n";
        let p = patch(
            0,
            json!([{"op": "replace", "path": "/spec/a", "value": "c"},
                   {"op": "add", "path": "/spec/n", "value": {"x": [1, "2"]}}]),
        );
        let out = edit_text("f.json", text, &[p]).unwrap();
        assert_eq!(
            out,
            "{\"kind\": \"X\", \"spec\": {\"a\": \"c\", \"n\": {\"x\": [1, \"2\"]}}}\n"
        );
        let back: Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(back["spec"], json!({"a": "c", "n": {"x": [1, "2"]}}));
    }

    #[test]
    fn a_fix_that_does_not_apply_writes_nothing() {
        let text = "spec:\n  a: 1\n";
        let p = patch(
            0,
            json!([{"op": "test", "path": "/spec/a", "value": 2},
                                {"op": "replace", "path": "/spec/a", "value": 3}]),
        );
        let err = edit_text("f.yaml", text, &[p]).unwrap_err();
        assert!(err.contains("f.yaml (document 0)"), "{err}");
    }
}
