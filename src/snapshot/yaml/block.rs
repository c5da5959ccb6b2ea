//! Plain block YAML straight to JSON, without the parser's events or a node tree.
//!
//! Most manifests are plain block YAML (kubectl's output, Helm's and kustomize's): keys and `- `
//! items by indentation, single-line plain or quoted scalars, one-line flow collections such as
//! `{app: web}`, literal block scalars (`|`). For those, the value follows from each line's
//! indentation and text, several times faster than granit-parser's events, and every scalar is
//! resolved by the same functions as the full path ([`super::scalar_value`],
//! [`super::map_key`]). Anything else gives `None` and the caller uses the full path: anchors,
//! aliases, tags, merge keys, quoted or complex keys, folded (`>`) or indented (`|2`) block
//! scalars, multi-line plain, quoted or flow scalars, tabs, top-level scalars or sequences,
//! and any text the full parser would refuse as far as this can tell. A test compares both on
//! every document the tests hold, and the README names the public repositories compared.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::borrowed::Borrowed;
use super::flow::{self, quoted};
use super::{Node, Scalar};

/// What the parser builds: JSON, or the tree typed objects are decoded from without it
/// ([`Borrowed`]). Both resolve every scalar and key by the same functions.
pub(super) trait Build<'a>: Sized {
    type Key;
    /// A plain mapping key; `None` for what the full parser must read (a merge key).
    fn key(text: &'a str, line: usize) -> Option<Self::Key>;
    /// A plain scalar, resolved as go-yaml v2 resolves it.
    fn plain(text: &'a str, line: usize) -> Option<Self>;
    /// A quoted or block scalar.
    fn string(text: String) -> Self;
    fn null() -> Self;
    /// `None` for what only the full parser reads as kubectl does (a key given twice).
    fn map(entries: Vec<(Self::Key, Self)>) -> Option<Self>;
    fn seq(items: Vec<Self>) -> Self;
}

impl<'a> Build<'a> for Value {
    type Key = String;
    fn key(text: &'a str, line: usize) -> Option<String> {
        super::map_key(plain(text, line)).ok()?
    }
    fn plain(text: &'a str, line: usize) -> Option<Value> {
        super::scalar_value(plain(text, line)).ok()
    }
    fn string(text: String) -> Value {
        Value::String(text)
    }
    fn null() -> Value {
        Value::Null
    }
    fn map(entries: Vec<(String, Value)>) -> Option<Value> {
        // Entries first, then a map of the right size: growing a map by doubling rehashes and
        // copies it (a fifth of this parser's time).
        let mut map = Map::with_capacity(entries.len());
        for (key, value) in entries {
            map.insert(key, value);
        }
        Some(Value::Object(map))
    }
    fn seq(items: Vec<Value>) -> Value {
        Value::Array(items)
    }
}

impl<'a> Build<'a> for Borrowed<'a> {
    type Key = Cow<'a, str>;
    fn key(text: &'a str, line: usize) -> Option<Cow<'a, str>> {
        match super::resolve_plain(text) {
            Scalar::Same => Some(Cow::Borrowed(text)),
            _ => Some(Cow::Owned(<Value as Build>::key(text, line)?)),
        }
    }
    fn plain(text: &'a str, line: usize) -> Option<Borrowed<'a>> {
        match super::resolve_plain(text) {
            Scalar::Same => Some(Borrowed::Str(Cow::Borrowed(text))),
            _ => Some(Borrowed::Scalar(<Value as Build>::plain(text, line)?)),
        }
    }
    fn string(text: String) -> Borrowed<'a> {
        Borrowed::Str(Cow::Owned(text))
    }
    fn null() -> Borrowed<'a> {
        Borrowed::Scalar(Value::Null)
    }
    fn map(entries: Vec<(Cow<'a, str>, Borrowed<'a>)>) -> Option<Borrowed<'a>> {
        // JSON keeps the last of a key given twice; a typed object would refuse it.
        let twice = if entries.len() <= 16 {
            entries
                .iter()
                .enumerate()
                .any(|(i, (k, _))| entries[..i].iter().any(|(earlier, _)| earlier == k))
        } else {
            let mut seen = std::collections::HashSet::with_capacity(entries.len());
            !entries.iter().all(|(k, _)| seen.insert(k.as_ref()))
        };
        (!twice).then_some(Borrowed::Map(entries))
    }
    fn seq(items: Vec<Borrowed<'a>>) -> Borrowed<'a> {
        Borrowed::Seq(items)
    }
}

/// The document's value, or `None` when the full parser must read it.
pub(super) fn parse(text: &str) -> Option<Value> {
    parse_as(text)
}

/// [`parse`] as the tree typed objects are decoded from.
pub(super) fn parse_borrowed(text: &str) -> Option<Borrowed<'_>> {
    parse_as(text)
}

fn parse_as<'a, B: Build<'a>>(text: &'a str) -> Option<B> {
    // Characters the full parser refuses or treats specially (controls, a byte order mark).
    let unusual = |c: char| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}')
    };
    if has_control_byte(text.as_bytes()) || (!text.is_ascii() && text.chars().any(unusual)) {
        return None;
    }
    let lines = lines(text)?;
    let first = lines.first()?;
    if first.indent != 0 || !matches!(first.kind, Kind::Key(..)) {
        return None;
    }
    let parser = Parser {
        lines: &lines,
        out: std::marker::PhantomData,
    };
    let (map, next) = parser.mapping(0, 0)?;
    (next == lines.len()).then_some(map)
}

/// Whether `bytes` holds a control byte other than tab, line feed and carriage return (or DEL).
/// In blocks without an early exit, which the compiler turns into vector code: the byte-by-byte
/// search was 1% of `analyze`.
fn has_control_byte(bytes: &[u8]) -> bool {
    let control = |b: u8| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f;
    let mut blocks = bytes.chunks_exact(64);
    for block in blocks.by_ref() {
        if block
            .iter()
            .fold(0u8, |seen, &b| seen | u8::from(control(b)))
            != 0
        {
            return true;
        }
    }
    blocks.remainder().iter().any(|&b| control(b))
}

#[derive(Debug)]
struct Line<'a> {
    indent: usize,
    /// 1-based, for the scalars' resolution (only their errors read it).
    number: usize,
    kind: Kind<'a>,
}

#[derive(Debug)]
enum Kind<'a> {
    Dash,
    /// `key:` and what follows on the line (comment removed, trimmed).
    Key(&'a str, Inline<'a>),
    /// A value on a line of its own (after a dash).
    Value(Inline<'a>),
}

#[derive(Debug)]
enum Inline<'a> {
    Empty,
    Scalar(&'a str),
    /// A literal block scalar: its header (`|`, `|-`, `|+`) and its lines.
    Literal(&'a str, Vec<&'a str>),
}

/// Deeper than this, the full parser decides: it bounds nesting, and this parser recurses once
/// a level.
const MAX_INDENT: usize = 1024;

/// The lines of a text without their `\n`, as `split_inclusive('\n')` with the `\n` stripped
/// gives them, found with the memchr crate's search: the standard library's byte search per
/// line was a twentieth of `analyze`.
pub(crate) struct RawLines<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> RawLines<'a> {
    pub(crate) fn new(text: &'a str) -> RawLines<'a> {
        RawLines { text, at: 0 }
    }
}

impl<'a> Iterator for RawLines<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let rest = self.text.get(self.at..).filter(|rest| !rest.is_empty())?;
        match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(n) => {
                self.at += n + 1;
                Some(&rest[..n])
            }
            None => {
                self.at = self.text.len();
                Some(rest)
            }
        }
    }
}

/// A line of [`RawLines`] without the `\r` of a `\r\n` ending; `None` when a carriage return
/// stands elsewhere in it (a line break for YAML, which the line scans do not make). `has_cr`:
/// whether the text has one at all (most have none, and then no line is searched).
pub(crate) fn without_cr(raw: &str, has_cr: bool) -> Option<&str> {
    if !has_cr {
        return Some(raw);
    }
    let line = raw.strip_suffix('\r').unwrap_or(raw);
    (!line.contains('\r')).then_some(line)
}

/// `text` without its leading spaces. By bytes: `trim_start_matches(' ')` decodes a character
/// at a time, on every line of every file.
fn skip_spaces(text: &str) -> &str {
    let n = text.bytes().take_while(|&b| b == b' ').count();
    &text[n..]
}

/// `text` without its trailing spaces (see [`skip_spaces`]).
fn drop_trailing_spaces(text: &str) -> &str {
    let n = text.bytes().rev().take_while(|&b| b == b' ').count();
    &text[..text.len() - n]
}

/// The block lines of a document, or `None` when it is not plain block YAML.
fn lines(text: &str) -> Option<Vec<Line<'_>>> {
    // Sized once: a line is one entry, or two when it starts with a dash. Growing by doubling
    // was three reallocations a document.
    let newlines = memchr::memchr_iter(b'\n', text.as_bytes()).count();
    let mut out: Vec<Line> = Vec::with_capacity(newlines + newlines / 4 + 1);
    let mut raw_lines = RawLines::new(text).enumerate().peekable();
    // Most documents have no `\r` at all: then no line is searched for one.
    let has_cr = memchr::memchr(b'\r', text.as_bytes()).is_some();
    while let Some((i, raw)) = raw_lines.next() {
        let line = without_cr(raw, has_cr)?;
        let content = skip_spaces(line);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.starts_with(['\t', '%']) || content == "---" || content == "..." {
            return None;
        }
        let mut indent = line.len() - content.len();
        if indent > MAX_INDENT {
            return None;
        }
        let mut rest = content;
        if rest == "-" || rest.starts_with("- ") {
            out.push(Line {
                indent,
                number: i + 1,
                kind: Kind::Dash,
            });
            let Some(after) = after_dash(rest)? else {
                continue;
            };
            let dash_indent = indent;
            indent += rest.len() - after.len();
            rest = after;
            if key_end(rest).is_none() {
                let inline = inline(rest, dash_indent, &mut raw_lines)?;
                out.push(Line {
                    indent,
                    number: i + 1,
                    kind: Kind::Value(inline),
                });
                continue;
            }
        }
        let end = key_end(rest)?;
        let key = &rest[..end];
        // `key_end` stops at a ` #` before the colon, so the key holds no comment.
        if !plain_key_text(key) {
            return None;
        }
        let value = inline(&rest[end + 1..], indent, &mut raw_lines)?;
        out.push(Line {
            indent,
            number: i + 1,
            kind: Kind::Key(key, value),
        });
    }
    Some(out)
}

/// What follows the dash of a `- ` item line: `Some(None)` for nothing (or a comment), `None`
/// for what only the full parser reads (a second dash, a tab).
pub(crate) fn after_dash(line: &str) -> Option<Option<&str>> {
    let after = skip_spaces(&line[1..]);
    if after.is_empty() || after.starts_with('#') {
        return Some(None);
    }
    if after == "-" || after.starts_with("- ") || after.starts_with('\t') {
        return None;
    }
    Some(Some(after))
}

/// What follows a key or a dash; a literal block scalar takes its lines (those indented more
/// than `parent`, and blank ones) from `raw_lines`.
fn inline<'a, I>(
    text: &'a str,
    parent: usize,
    raw_lines: &mut std::iter::Peekable<I>,
) -> Option<Inline<'a>>
where
    I: Iterator<Item = (usize, &'a str)>,
{
    let text = skip_spaces(text);
    let value = match text.as_bytes().first() {
        None | Some(b'#') => "",
        Some(b'"' | b'\'') => {
            // The quoted scalar, then nothing but spaces and a comment.
            let (_, end) = quoted(text)?;
            let rest = &text[end..];
            let after = skip_spaces(rest);
            let comment = after.starts_with('#') && after.len() < rest.len();
            if !(after.is_empty() || comment) {
                return None;
            }
            &text[..end]
        }
        Some(b'{' | b'[') => drop_trailing_spaces(strip_comment(text)),
        // In a plain scalar, quotes are text: a comment is any ` #`.
        _ => drop_trailing_spaces(comment_start(text).map_or(text, |i| &text[..i])),
    };
    if value.is_empty() {
        return Some(Inline::Empty);
    }
    if !value.starts_with('|') {
        return Some(Inline::Scalar(value));
    }
    if !matches!(value, "|" | "|-" | "|+") {
        // An indentation indicator, or a comment after the header: the full parser's job.
        return None;
    }
    let mut body = Vec::new();
    while let Some(&(_, raw)) = raw_lines.peek() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let content = line.trim_start_matches(' ');
        if !content.is_empty() && line.len() - content.len() <= parent {
            break;
        }
        body.push(line);
        raw_lines.next();
    }
    Some(Inline::Literal(value, body))
}

/// The `:` that ends a plain key: the first one followed by a space or the end of the line.
pub(crate) fn key_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => return Some(i),
            b' ' if bytes.get(i + 1) == Some(&b'#') => return None,
            b'"' | b'\'' | b'{' | b'[' if i == 0 => return None,
            _ => {}
        }
    }
    None
}

/// A key this parser reads as the full parser would: plain, starting with no indicator.
fn plain_key(key: &str) -> bool {
    plain_key_text(key) && comment_start(key).is_none()
}

/// [`plain_key`] for a key known to hold no ` #`.
fn plain_key_text(key: &str) -> bool {
    let bytes = key.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    // YAML limits an implicit key to 1024 characters.
    bytes.len() <= 1024
        && !matches!(last, b' ' | b'\t')
        && !matches!(
            first,
            b'&' | b'*'
                | b'!'
                | b'?'
                | b'|'
                | b'>'
                | b'"'
                | b'\''
                | b'%'
                | b'@'
                | b'`'
                | b'{'
                | b'['
                | b']'
                | b'}'
                | b','
                | b'#'
                | b'-'
                | b':'
        )
        && key != "<<"
}

/// Where the first ` #` is: a byte search for `#`, which few lines hold. `str::find` with a
/// two-byte pattern sets up a substring searcher per call, and these run on every key and
/// plain value of a file (README, Benchmarks).
fn comment_start(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    memchr::memchr_iter(b'#', bytes)
        .find(|&i| i > 0 && bytes[i - 1] == b' ')
        .map(|i| i - 1)
}

/// Whether `: ` or a tab is in `text`, which make a plain scalar the full parser's: one pass
/// (see [`comment_start`]) where a search for each was two, on every scalar of every document.
fn has_colon_space_or_tab(text: &str) -> bool {
    let bytes = text.as_bytes();
    memchr::memchr2_iter(b':', b'\t', bytes)
        .any(|i| bytes[i] == b'\t' || bytes.get(i + 1) == Some(&b' '))
}

/// ` #` starts a comment outside quotes.
pub(crate) fn strip_comment(text: &str) -> &str {
    let bytes = text.as_bytes();
    // Most values hold no `#` at all: then no quote needs following.
    if memchr::memchr(b'#', bytes).is_none() {
        return text;
    }
    let (mut single, mut double) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single && (i == 0 || bytes[i - 1] != b'\\') => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1] == b' ') => return &text[..i],
            _ => {}
        }
    }
    text
}

struct Parser<'a, 'b, B> {
    lines: &'b [Line<'a>],
    out: std::marker::PhantomData<B>,
}

impl<'a, B: Build<'a>> Parser<'a, '_, B> {
    /// The mapping whose keys are at `indent` from line `at`; and the line after it.
    fn mapping(&self, mut at: usize, indent: usize) -> Option<(B, usize)> {
        let mut entries = Vec::new();
        while let Some(line) = self.lines.get(at) {
            if line.indent < indent {
                break;
            }
            let Kind::Key(key, inline) = &line.kind else {
                return None;
            };
            if line.indent > indent {
                return None;
            }
            let key = B::key(key, line.number)?;
            let (value, next) = self.value(at, indent, inline)?;
            entries.push((key, value));
            at = next;
        }
        Some((B::map(entries)?, at))
    }

    /// The value of the key (or the item) on line `at`, whose parent is at `indent`.
    fn value(&self, at: usize, indent: usize, inline: &Inline<'a>) -> Option<(B, usize)> {
        let number = self.lines[at].number;
        let next = self.lines.get(at + 1);
        match inline {
            Inline::Scalar(text) => {
                // A more indented line below a scalar continues it: the full parser's job.
                if next.is_some_and(|n| n.indent > indent) {
                    return None;
                }
                Some((scalar(text, number)?, at + 1))
            }
            Inline::Literal(header, body) => {
                Some((B::string(literal(header, body, indent)?), at + 1))
            }
            Inline::Empty => match next {
                Some(n) if matches!(n.kind, Kind::Dash) && n.indent >= indent => {
                    let (items, end) = self.sequence(at + 1, n.indent)?;
                    Some((B::seq(items), end))
                }
                Some(n) if n.indent > indent && matches!(n.kind, Kind::Key(..)) => {
                    self.mapping(at + 1, n.indent)
                }
                Some(n) if n.indent > indent => None,
                _ => Some((B::null(), at + 1)),
            },
        }
    }

    /// The sequence whose dashes are at `indent` from line `at`; and the line after it.
    fn sequence(&self, mut at: usize, indent: usize) -> Option<(Vec<B>, usize)> {
        let mut items = Vec::new();
        while let Some(line) = self.lines.get(at) {
            if line.indent < indent || (line.indent == indent && !matches!(line.kind, Kind::Dash)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let (item, next) = match self.lines.get(at + 1) {
                Some(content) if content.indent > indent => match &content.kind {
                    Kind::Key(..) => self.mapping(at + 1, content.indent)?,
                    Kind::Dash => return None,
                    Kind::Value(inline) => self.value(at + 1, indent, inline)?,
                },
                _ => (B::null(), at + 1),
            };
            items.push(item);
            at = next;
        }
        Some((items, at))
    }
}

fn plain(text: &str, line: usize) -> Node {
    Node::Scalar {
        value: text.to_string(),
        plain: true,
        tag: None,
        line,
    }
}

/// A single-line scalar or flow collection.
fn scalar<'a, B: Build<'a>>(text: &'a str, line: usize) -> Option<B> {
    match *text.as_bytes().first()? {
        b'{' | b'[' => {
            let (node, end) = flow::parse_with(&Resolved::<B>::new(line), text, 0)?;
            if !text[end..].trim_matches(' ').is_empty() {
                return None;
            }
            Some(node)
        }
        b'"' | b'\'' => {
            let (value, end) = quoted(text)?;
            text[end..]
                .trim_matches(' ')
                .is_empty()
                .then(|| B::string(value))
        }
        b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b']' | b'}' | b',' | b'#' => None,
        b'?' | b':' => None,
        b'-' if text.len() == 1 || text.as_bytes()[1] == b' ' => None,
        _ => {
            if has_colon_space_or_tab(text) || text.ends_with(':') {
                return None;
            }
            B::plain(text, line)
        }
    }
}

/// A literal block scalar (`|`, `|-`, `|+`) whose key or dash is at `parent`.
fn literal(header: &str, body: &[&str], parent: usize) -> Option<String> {
    let indent_of = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let first = body
        .iter()
        .find(|l| !l.trim_start_matches(' ').is_empty())?;
    let indent = indent_of(first);
    if indent <= parent {
        return None;
    }
    let mut text = String::new();
    let mut seen_content = false;
    for line in body {
        let blank = line.trim_start_matches(' ').is_empty();
        if blank {
            // Spaces beyond the indentation are text, except before the first line of text,
            // where the full parser decides (and may refuse).
            if !seen_content && line.len() > indent {
                return None;
            }
            text.push_str(line.get(indent..).unwrap_or(""));
        } else {
            if indent_of(line) < indent {
                return None;
            }
            if line[indent..].starts_with('\t') && !seen_content {
                return None;
            }
            seen_content = true;
            text.push_str(&line[indent..]);
        }
        text.push('\n');
    }
    let trimmed = text.trim_end_matches('\n').len();
    match header {
        "|-" => text.truncate(trimmed),
        "|" => {
            text.truncate(trimmed);
            text.push('\n');
        }
        _ => {}
    }
    Some(text)
}

/// A one-line flow collection read straight into `B`, its scalars resolved as the full parser
/// resolves them (on the 1-based `line`).
struct Resolved<B> {
    line: usize,
    out: std::marker::PhantomData<B>,
}

impl<B> Resolved<B> {
    fn new(line: usize) -> Resolved<B> {
        Resolved {
            line,
            out: std::marker::PhantomData,
        }
    }
}

impl<'a, B: Build<'a>> flow::FlowBuilder<'a> for Resolved<B> {
    type Node = B;
    type Map = Vec<(B::Key, B)>;
    type Seq = Vec<B>;
    fn map(&self) -> Self::Map {
        Vec::new()
    }
    fn entry(&self, map: &mut Self::Map, key: &'a str, _at: usize, value: B) -> Option<()> {
        if !plain_key(key) {
            return None;
        }
        map.push((B::key(key, self.line)?, value));
        Some(())
    }
    fn end_map(&self, map: Self::Map) -> Option<B> {
        B::map(map)
    }
    fn seq(&self) -> Self::Seq {
        Vec::new()
    }
    fn item(&self, seq: &mut Self::Seq, _at: usize, value: B) {
        seq.push(value);
    }
    fn end_seq(&self, seq: Self::Seq) -> B {
        B::seq(seq)
    }
    fn quoted(&self, value: String) -> B {
        B::string(value)
    }
    fn plain(&self, text: &'a str) -> Option<B> {
        scalar(text, self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_are_the_lines_split_inclusive_gives() {
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "a\nb",
            "a\n\nb\n",
            "\n\n",
            "a\r\nb\r\n",
            "é\nü",
        ] {
            let expected: Vec<&str> = text
                .split_inclusive('\n')
                .map(|l| l.strip_suffix('\n').unwrap_or(l))
                .collect();
            let got: Vec<&str> = RawLines { text, at: 0 }.collect();
            assert_eq!(got, expected, "{text:?}");
        }
    }

    /// The control-byte search in blocks and the comment search find what plain searches find,
    /// and a value without `#` is its own comment-free text.
    #[test]
    fn fast_scans_match_byte_by_byte_scans() {
        let alphabet = [
            b'a', b':', b' ', b'#', b'"', b'\'', b'{', b'\t', 0x7f, 0x01, b'\n',
        ];
        // Every string of up to five of these bytes, and longer ones around the 64-byte blocks.
        let mut texts: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last = texts.clone();
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|t| {
                    alphabet.iter().map(move |&b| {
                        let mut t = t.clone();
                        t.push(b);
                        t
                    })
                })
                .collect();
            texts.extend(last.iter().cloned());
        }
        for len in [31, 32, 33, 63, 64, 65, 127, 128, 129, 200] {
            for at in [0, len / 2, len - 1] {
                for bad in [0x01u8, 0x7f, b'\t', b'#'] {
                    let mut t = vec![b'a'; len];
                    t[at] = bad;
                    texts.push(t.clone());
                    if at > 0 {
                        t[at - 1] = b' ';
                        texts.push(t);
                    }
                }
            }
        }
        for t in &texts {
            let control = t
                .iter()
                .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') || b == 0x7f);
            assert_eq!(has_control_byte(t), control, "{t:?}");
            let text = std::str::from_utf8(t).unwrap();
            if !text.contains('#') {
                assert_eq!(strip_comment(text), text);
            }
            assert_eq!(comment_start(text), text.find(" #"), "{text:?}");
        }
    }

    #[test]
    fn pair_searches_find_what_str_find_finds() {
        for text in [
            "", "#", " #", "a #b", "a#b #c", "a: b", "a:b", "a::", ": ", "x:  #y", "é #", "#a #",
            "\t", "a\tb", "a:\tb", "a:b\t",
        ] {
            assert_eq!(comment_start(text), text.find(" #"), "{text:?}");
            assert_eq!(
                has_colon_space_or_tab(text),
                text.contains(": ") || text.contains('\t'),
                "{text:?}"
            );
        }
    }
}
