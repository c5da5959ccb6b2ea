//! YAML as kubectl reads it.
//!
//! kubectl (and istiod, for mesh config) turn YAML into JSON with `sigs.k8s.io/yaml`, which
//! parses with go-yaml v2: plain scalars resolve by YAML 1.1 rules (`0400` is the octal 256,
//! `yes`/`on`/`y` are `true`, `1_000` is 1000, `0x1F` is 31), map keys become strings (`y:` is
//! the key `"true"`), and the JSON that reaches the API server reads integral floats as integers.
//! YAML 1.2 parsers (serde-saphyr's defaults among them) read some of these differently, so this
//! module parses the event stream itself and resolves every scalar as go-yaml v2 does:
//! `resolve.go` of go.yaml.in/yaml/v2 v2.4 and `yaml.go` of sigs.k8s.io/yaml v1.6. Quoted and
//! block scalars are strings; `!!str`, `!!int`, `!!float`, `!!bool`, `!!null` and `!!binary`
//! are honoured; other tags leave the text as a string. Anchors, aliases and `<<` merge keys
//! behave as go-yaml v2's (a merge sets the merged keys where `<<` stands: later keys win).
//!
//! What kubectl rejects is an error here too: `.inf` and `.nan` (JSON has neither), null or
//! collection map keys, an explicitly tagged scalar that does not resolve to its tag.

use std::collections::HashMap;

mod block;
mod borrowed;
pub(crate) mod flow;

pub use borrowed::Borrowed;

pub(crate) use block::{RawLines, after_dash, key_end, strip_comment, without_cr};

use granit_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// A parse error with the 1-based line (relative to the text given) where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A document read as JSON, with the line each field starts on (keys as
/// `serde_path_to_error` prints paths: `spec.template.spec.containers[0].ports`).
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub value: Value,
    pub lines: HashMap<String, usize>,
    /// The document's text, when `lines` were not recorded ([`Document::lazy`]): they are
    /// computed again from it only if an error needs one.
    pub text: Option<super::raw::DocText>,
}

impl Document {
    /// Reads a document without recording the lines of its fields; [`Document::line_of`] finds
    /// them from the kept text when asked. Recording every field path costs more time and
    /// memory than the value itself, and only an invalid field needs its line.
    pub fn lazy(text: &str) -> Result<Document, YamlError> {
        Document::lazy_in(None, text)
    }

    /// [`Document::lazy`] of a document of `file`: its text is kept as a range of the file's
    /// when it is a slice of it.
    pub fn lazy_in(
        file: Option<&std::sync::Arc<String>>,
        text: &str,
    ) -> Result<Document, YamlError> {
        let value = from_str(text)?;
        Ok(Document {
            value,
            lines: HashMap::new(),
            text: Some(super::raw::DocText::of(file, text)),
        })
    }

    /// The line of a field path, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        if self.lines.is_empty()
            && let Some(text) = &self.text
        {
            return line_in(text, path);
        }
        let mut p = path;
        loop {
            if let Some(&l) = self.lines.get(p) {
                return Some(l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// The line of a field path in the document `text`, or of its nearest ancestor that has one,
/// read again with the lines of its fields (only an error needs one).
pub fn line_in(text: &str, path: &str) -> Option<usize> {
    parse_document(text).ok()?.line_of(path)
}

/// Reads the first document of `text` as kubectl would send it. Empty text is `null`.
pub fn from_str(text: &str) -> Result<Value, YamlError> {
    // Plain block YAML without events or a tree (`block`): the same value, several times faster.
    if let Some(value) = block::parse(text) {
        return Ok(value);
    }
    from_str_full(text)
}

/// The first document of `text` as the tree typed objects are decoded from ([`Borrowed`]),
/// when it is plain block YAML; `None` when [`from_str`] must read it.
pub fn borrowed(text: &str) -> Option<Borrowed<'_>> {
    block::parse_borrowed(text)
}

/// [`from_str`] by the parser's events, for every document.
fn from_str_full(text: &str) -> Result<Value, YamlError> {
    match build_tree(text)? {
        None => Ok(Value::Null),
        Some(node) => to_json(node, &mut String::new(), None),
    }
}

/// Reads the first document of `text` (kubectl reads one document per `---` chunk) with the
/// line of every field. [`from_str`] is the same without the lines (much less work and memory:
/// the lines are only needed to place an error).
pub fn parse_document(text: &str) -> Result<Document, YamlError> {
    let node = build_tree(text)?;
    let mut doc = Document::default();
    match node {
        None => Ok(doc),
        Some(node) => {
            let mut path = String::new();
            doc.value = to_json(node, &mut path, Some(&mut doc.lines))?;
            Ok(doc)
        }
    }
}

/// Upper bound on nesting: the tree is walked recursively.
const MAX_DEPTH: usize = 512;

/// Upper bound on nodes built, aliases expanded: an alias bomb must not exhaust memory.
const MAX_NODES: usize = 2_000_000;

#[derive(Debug, Clone)]
enum Node {
    Scalar {
        value: String,
        plain: bool,
        tag: Option<String>,
        line: usize,
    },
    Seq(Vec<Node>, usize),
    Map(Vec<(Node, Node)>, usize),
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } | Node::Seq(_, line) | Node::Map(_, line) => *line,
        }
    }

    fn size(&self) -> usize {
        match self {
            Node::Scalar { .. } => 1,
            Node::Seq(items, _) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Node::Map(pairs, _) => {
                1 + pairs
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }
}

enum Frame {
    Seq(Vec<Node>, usize, usize),
    Map(Vec<(Node, Node)>, Option<Node>, usize, usize),
}

fn tag_name(tag: Option<&granit_parser::Tag>) -> Option<String> {
    let tag = tag?;
    Some(match tag.core_suffix() {
        Some(core) => format!("!!{core}"),
        None if tag.handle() == "tag:yaml.org,2002:" => format!("!!{}", tag.suffix()),
        None => tag.original(),
    })
}

fn build_tree(text: &str) -> Result<Option<Node>, YamlError> {
    // Comments are not read here. With their events on (granit-parser's default), more than 96
    // comment lines in a row where the parser looks ahead (a commented-out block under a key)
    // were "too many buffered comments", a document kubectl reads refused.
    let mut options = granit_parser::Options::default();
    options.set_emit_comments(false);
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut built = 0usize;
    let mut in_document = false;
    let line_of = |span: &Span| span.start.line();
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| YamlError {
            line: e.marker().line(),
            message: e.info(),
        })?;
        let (node, anchor) = match event {
            Event::DocumentStart(..) => {
                in_document = true;
                continue;
            }
            Event::DocumentEnd | Event::StreamEnd => {
                if in_document {
                    // No content: an empty document.
                    return Ok(None);
                }
                continue;
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= MAX_DEPTH => {
                return Err(YamlError {
                    line: line_of(&span),
                    message: format!("nested deeper than {MAX_DEPTH} levels"),
                });
            }
            Event::SequenceStart(_, anchor, _) => {
                stack.push(Frame::Seq(Vec::new(), anchor, line_of(&span)));
                continue;
            }
            Event::MappingStart(_, anchor, _) => {
                stack.push(Frame::Map(Vec::new(), None, anchor, line_of(&span)));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items, anchor, line)) => (Node::Seq(items, line), anchor),
                _ => unreachable_event(line_of(&span))?,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(pairs, None, anchor, line)) => (Node::Map(pairs, line), anchor),
                _ => unreachable_event(line_of(&span))?,
            },
            Event::Scalar(value, style, anchor, tag) => (
                Node::Scalar {
                    value: value.into_owned(),
                    plain: style == ScalarStyle::Plain,
                    tag: tag_name(tag.as_deref()),
                    line: line_of(&span),
                },
                anchor,
            ),
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    line: line_of(&span),
                    message: "alias to an unknown anchor".to_string(),
                })?;
                built += node.size();
                if built > MAX_NODES {
                    return Err(YamlError {
                        line: line_of(&span),
                        message: format!("more than {MAX_NODES} nodes after expanding aliases"),
                    });
                }
                (node, 0)
            }
            Event::UnresolvedAlias(name) => {
                return Err(YamlError {
                    line: line_of(&span),
                    message: format!("unknown anchor {name:?}"),
                });
            }
            _ => continue,
        };
        built += 1;
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => return Ok(Some(node)),
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(pairs, key, ..)) => match key.take() {
                None => *key = Some(node),
                Some(k) => pairs.push((k, node)),
            },
        }
    }
    Ok(None)
}

fn unreachable_event<T>(line: usize) -> Result<T, YamlError> {
    Err(YamlError {
        line,
        message: "unbalanced YAML events".to_string(),
    })
}

/// A scalar as go-yaml v2 resolves it.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    /// A string: the scalar's text unchanged (moved, not copied, into the value).
    Same,
    Merge,
}

fn to_json(
    node: Node,
    path: &mut String,
    mut lines: Option<&mut HashMap<String, usize>>,
) -> Result<Value, YamlError> {
    if let Some(lines) = lines.as_deref_mut() {
        lines.entry(path.clone()).or_insert(node.line());
    }
    match node {
        Node::Scalar { .. } => scalar_value(node),
        Node::Seq(items, _) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                if lines.is_some() {
                    let len = path.len();
                    use std::fmt::Write;
                    let _ = write!(path, "[{i}]");
                    out.push(to_json(item, path, lines.as_deref_mut())?);
                    path.truncate(len);
                } else {
                    out.push(to_json(item, path, None)?);
                }
            }
            Ok(Value::Array(out))
        }
        Node::Map(ref pairs, _) => {
            let mut out = Map::with_capacity(pairs.len());
            merge_into(node, &mut out, path, lines, true)?;
            Ok(Value::Object(out))
        }
    }
}

/// Sets the keys of a mapping into `out` in order, as go-yaml v2 does (a later key replaces an
/// earlier one; `<<` sets the merged mapping's keys where it stands).
fn merge_into(
    node: Node,
    out: &mut Map<String, Value>,
    path: &mut String,
    mut lines: Option<&mut HashMap<String, usize>>,
    record: bool,
) -> Result<(), YamlError> {
    let pairs = match node {
        Node::Map(pairs, _) => pairs,
        other => {
            return Err(YamlError {
                line: other.line(),
                message: "map merge requires a mapping or a sequence of mappings".to_string(),
            });
        }
    };
    for (k, v) in pairs {
        let key_line = k.line();
        let key = match map_key(k)? {
            None => {
                match v {
                    Node::Seq(items, _) => {
                        // Earlier mappings take precedence: set them last.
                        for item in items.into_iter().rev() {
                            merge_into(item, out, path, None, false)?;
                        }
                    }
                    other => merge_into(other, out, path, None, false)?,
                }
                continue;
            }
            Some(key) => key,
        };
        let value = match lines.as_deref_mut() {
            Some(lines) if record => {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key);
                // A field's line is its key's (a nested mapping starts on the next line).
                lines.entry(path.clone()).or_insert(key_line);
                let value = to_json(v, path, Some(lines));
                path.truncate(len);
                value?
            }
            _ => to_json(v, path, None)?,
        };
        out.insert(key, value);
    }
    Ok(())
}

/// A mapping key as sigs.k8s.io/yaml turns it into a JSON key; `None` for the merge key `<<`.
fn map_key(node: Node) -> Result<Option<String>, YamlError> {
    let bad = |what: &str| YamlError {
        line: node.line(),
        message: format!("{what} cannot be a map key (kubectl rejects it)"),
    };
    let text = match &node {
        Node::Seq(..) | Node::Map(..) => {
            // go-yaml resolves a collection key to nothing special: not a merge.
            return Err(bad("a sequence or mapping"));
        }
        Node::Scalar { value, .. } => value,
    };
    Ok(Some(match resolve_node(&node)? {
        Scalar::Merge => return Ok(None),
        Scalar::Null => return Err(bad("null")),
        Scalar::UInt(_) => return Err(bad(&format!("the integer {text}"))),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => float_key(f),
        Scalar::Str(s) => s,
        Scalar::Same => match node {
            Node::Scalar { value, .. } => value,
            _ => String::new(),
        },
    }))
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)` for the float keys sigs.k8s.io/yaml converts.
fn float_key(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_string();
    }
    let f32v = f as f32;
    let exp = if f32v == 0.0 {
        0
    } else {
        f32v.abs().log10().floor() as i32
    };
    // Go uses %e when the exponent is < -4 or >= 6 (the shortest-precision rule).
    if (-4..6).contains(&exp) {
        format!("{f32v}")
    } else {
        let s = format!("{f32v:e}");
        // Go writes e+06 / e-05: a sign and at least two digits.
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    }
}

fn scalar_value(node: Node) -> Result<Value, YamlError> {
    let line = node.line();
    Ok(match resolve_node(&node)? {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(i) => Value::Number(i.into()),
        Scalar::UInt(u) => Value::Number(u.into()),
        Scalar::Float(f) => float_value(f).ok_or_else(|| YamlError {
            line,
            message: format!("{f} is not a JSON number (kubectl rejects .inf and .nan)"),
        })?,
        Scalar::Str(s) => Value::String(s),
        Scalar::Same => match node {
            Node::Scalar { value, .. } => Value::String(value),
            _ => Value::String(String::new()),
        },
        Scalar::Merge => Value::String("<<".to_string()),
    })
}

/// A float as it reaches the API server: Go's JSON writes an integral float below 1e21 without
/// a fraction, and Kubernetes reads that back as an integer.
fn float_value(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 1e21 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
        return Some(Value::Number((f as i64).into()));
    }
    Number::from_f64(f).map(Value::Number)
}

fn resolve_node(node: &Node) -> Result<Scalar, YamlError> {
    let Node::Scalar {
        value,
        plain,
        tag,
        line,
    } = node
    else {
        return Ok(Scalar::Str(String::new()));
    };
    let mismatch = |tag: &str, got: &Scalar| YamlError {
        line: *line,
        message: format!("cannot decode {} `{value}` as a {tag}", scalar_tag(got)),
    };
    match tag.as_deref() {
        None if *plain => Ok(resolve_plain(value)),
        None | Some("!!str") => Ok(Scalar::Same),
        Some("!!binary") => Ok(Scalar::Str(decode_base64(value).ok_or_else(|| {
            YamlError {
                line: *line,
                message: format!("!!binary value is not base64: {value:?}"),
            }
        })?)),
        Some(t @ ("!!int" | "!!bool" | "!!null")) => {
            let got = resolve_plain(value);
            if scalar_tag(&got) == t {
                Ok(got)
            } else {
                Err(mismatch(t, &got))
            }
        }
        Some("!!float") => match resolve_plain(value) {
            Scalar::Int(i) => Ok(Scalar::Float(i as f64)),
            Scalar::UInt(u) => Ok(Scalar::Float(u as f64)),
            f @ Scalar::Float(_) => Ok(f),
            other => Err(mismatch("!!float", &other)),
        },
        // Unknown and application tags leave the scalar's text.
        Some(_) => Ok(Scalar::Same),
    }
}

fn scalar_tag(s: &Scalar) -> &'static str {
    match s {
        Scalar::Null => "!!null",
        Scalar::Bool(_) => "!!bool",
        Scalar::Int(_) | Scalar::UInt(_) => "!!int",
        Scalar::Float(_) => "!!float",
        Scalar::Str(_) | Scalar::Same => "!!str",
        Scalar::Merge => "!!merge",
    }
}

/// A table of the bytes in `bytes`: one lookup a byte where a scanner tests each against several.
pub(crate) const fn byte_set(bytes: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        table[bytes[i] as usize] = true;
        i += 1;
    }
    table
}

/// go-yaml v2's resolution of an untagged plain scalar.
fn resolve_plain(s: &str) -> Scalar {
    // Every word below and every number starts with one of these bytes; most scalars (names,
    // hosts, images) do not, and skip the comparisons with each word.
    const WORD_OR_NUMBER_START: [bool; 256] = byte_set(b"yYtToOnNfF~.+-<0123456789");
    if let Some(&first) = s.as_bytes().first()
        && !WORD_OR_NUMBER_START[usize::from(first)]
    {
        return Scalar::Same;
    }
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Scalar::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false);
        }
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        "<<" => return Scalar::Merge,
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !matches!(first, b'.' | b'0'..=b'9' | b'+' | b'-') {
        return Scalar::Same;
    }
    // Copied only when there are underscores to drop: most numbers have none, and this runs
    // for every plain scalar that starts like one (a third of a million at 10,000 services).
    let plain: std::borrow::Cow<str> = if s.contains('_') {
        std::borrow::Cow::Owned(s.replace('_', ""))
    } else {
        std::borrow::Cow::Borrowed(s)
    };
    match first {
        b'.' => {
            // Here Go's ParseFloat sees the underscores: each must sit between two digits.
            if underscores_between_digits(s)
                && is_yaml_float(&plain)
                && let Ok(f) = plain.parse::<f64>()
                && f.is_finite()
            {
                return Scalar::Float(f);
            }
        }
        b'0'..=b'9' | b'+' | b'-' => {
            // Timestamps (`2024-01-02`) stay strings when decoded into an untyped value.
            if let Some(i) = go_parse_int(&plain) {
                return i;
            }
            if is_yaml_float(&plain)
                && let Ok(f) = plain.parse::<f64>()
                && f.is_finite()
            {
                return Scalar::Float(f);
            }
        }
        _ => {}
    }
    Scalar::Same
}

fn underscores_between_digits(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'_'
            || (i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit))
    })
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`: an optional sign (ParseInt
/// only), then `0x`/`0X`, `0o`/`0O`, `0b`/`0B` or a leading `0` (octal), or decimal.
fn go_parse_int(s: &str) -> Option<Scalar> {
    let (negative, signed, rest) = match s.as_bytes().first()? {
        b'-' => (true, true, &s[1..]),
        b'+' => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    // The prefix's letter in either case; `is_digit` and `from_str_radix` take hex digits in
    // either case too, so nothing is lowercased (copied).
    let (radix, digits) = match rest.as_bytes() {
        [b'0', b'x' | b'X', ..] => (16, &rest[2..]),
        [b'0', b'o' | b'O', ..] => (8, &rest[2..]),
        [b'0', b'b' | b'B', ..] => (2, &rest[2..]),
        [b'0', _, ..] => (8, &rest[1..]),
        _ => (10, rest),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::try_from(u128::from_str_radix(digits, radix).ok()?).ok()?;
    let value = if negative { -magnitude } else { magnitude };
    if let Ok(i) = i64::try_from(value) {
        return Some(Scalar::Int(i));
    }
    if !signed && let Ok(u) = u64::try_from(value) {
        return Some(Scalar::UInt(u));
    }
    None
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`, go-yaml v2's float syntax.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn decode_base64(text: &str) -> Option<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The block parser against the full one on every document below `dirs`: where it reads a
    /// document, the full parser reads the same JSON (keys in the same order); where the full
    /// parser refuses one, the block parser does not read it. Returns (documents, read).
    fn block_agrees_with_the_full_parser(dirs: &[std::path::PathBuf]) -> (usize, usize) {
        let files = crate::snapshot::load::expand_paths(dirs).expect("paths");
        let (mut documents, mut read) = (0, 0);
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for chunk in crate::positions::document_chunks(&text) {
                let doc = &text[chunk.start..chunk.end];
                documents += 1;
                let full = from_str_full(doc);
                let Some(fast) = block::parse(doc) else {
                    if std::env::var_os("MESHMEDIC_YAML_WHY").is_some()
                        && full.as_ref().is_ok_and(|v| !v.is_null())
                    {
                        eprintln!(
                            "full parser needed: {} at byte {}",
                            file.display(),
                            chunk.start
                        );
                    }
                    continue;
                };
                read += 1;
                let at = format!("{} at byte {}", file.display(), chunk.start);
                let full = full.unwrap_or_else(|e| panic!("{at}: the full parser refuses it: {e}"));
                assert_eq!(
                    serde_json::to_string(&fast).expect("json"),
                    serde_json::to_string(&full).expect("json"),
                    "{at}"
                );
                // The tree typed objects are decoded from holds the same document, or (a key
                // given twice) leaves it to the JSON path.
                if let Some(tree) = block::parse_borrowed(doc) {
                    assert_eq!(
                        serde_json::to_string(&tree.into_value()).expect("json"),
                        serde_json::to_string(&full).expect("json"),
                        "{at}: borrowed tree"
                    );
                }
            }
        }
        (documents, read)
    }

    #[test]
    fn the_block_parser_reads_what_the_full_parser_reads_in_the_bundled_manifests() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (documents, read) =
            block_agrees_with_the_full_parser(&[root.join("examples"), root.join("tests")]);
        eprintln!("block parser: {read} of {documents} documents");
        assert!(read >= 40, "{read} of {documents}");
    }

    /// `MESHMEDIC_YAML_DIRS=dir1:dir2 cargo test --lib block_parser_on -- --ignored
    /// --nocapture`: the same on other people's manifests.
    #[test]
    #[ignore = "reads the directories named in MESHMEDIC_YAML_DIRS"]
    fn block_parser_on_other_manifests() {
        let dirs = crate::snapshot::load::dirs_from_env("MESHMEDIC_YAML_DIRS");
        let (documents, read) = block_agrees_with_the_full_parser(&dirs);
        eprintln!("block parser: {read} of {documents} documents");
    }

    /// A commented-out block of more than 96 lines where the parser looks ahead (under a key,
    /// before its value) in a document only the full parser reads (an alias): kubectl reads it.
    /// Seen in JelenaRepac/serviceMeshIstio's docker-compose.yaml.
    #[test]
    fn long_runs_of_comment_lines_are_read() {
        let comments: String = (0..150).map(|i| format!("#  line {i}\n")).collect();
        let text = format!(
            "services:\n{comments}  web: &app\n    image: x\n{comments}  api: *app\n{comments}"
        );
        assert!(block::parse(&text).is_none());
        assert_eq!(
            from_str_full(&text).unwrap(),
            serde_json::json!({"services": {"web": {"image": "x"}, "api": {"image": "x"}}})
        );
    }

    #[test]
    fn the_block_parser_leaves_what_it_cannot_read_to_the_full_parser() {
        for text in [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "<<: {a: 1}\n",
            "\"a\": 1\n",
            "a: >\n  folded\n",
            "a: |2\n    x\n",
            "a: one\n  two\n",
            "a: \"one\n  two\"\n",
            "a: {b: 1,\n  c: 2}\n",
            "- a\n",
            "a: b: c\n",
            "a:\tb\n",
            "a: .inf\n",
            "~: 1\n",
        ] {
            assert!(block::parse(text).is_none(), "{text:?}");
        }
        for text in [
            "a: 1\nb: {c: [x, 'y''s', \"\\u00e9\"]}\nd:\n- e: |\n    l1\n\n    l2\n  f: yes\n- 0x1F\ng: it's # c\n",
            "a: |+\n  keep\n\n\n",
            "a: |+\n  keep\n\nb: 1\n",
            "a: |-\n  strip\n\n",
            "a: |\n  one\n    more\n   \n  two  \nb: |\n\n  after a blank\n",
            "x:\n- a\n- b: [1, 2.50, 1e3, 0o17, 012, 1_000, +5, -0, .5, 1.]\n",
            "k8s: {cpu: 100m, x: '', y: \"\", z: \"a\\tb\"}\nkey with spaces: v\n",
            "a:\n- name: x\n  ports:\n  - 80\n- name: y\nb: ~\nc: null\nd: Off\n",
        ] {
            let fast = block::parse(text);
            assert!(fast.is_some(), "{text:?}");
            assert_eq!(
                block::parse_borrowed(text).map(borrowed::Borrowed::into_value),
                fast,
                "{text:?}"
            );
            assert_eq!(
                serde_json::to_string(&fast).unwrap(),
                serde_json::to_string(&Some(from_str_full(text).unwrap())).unwrap(),
                "{text:?}"
            );
        }
    }

    fn read(text: &str) -> Value {
        from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// The first-byte filter in `resolve_plain` lets every word it knows through.
    #[test]
    fn every_word_passes_the_first_byte_filter() {
        for word in [
            "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N",
            "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "~", "null", "Null",
            "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
            "-.inf", "-.Inf", "-.INF", "<<", "0", "9", "+1", "-1", ".5",
        ] {
            assert!(!matches!(resolve_plain(word), Scalar::Same), "{word}");
        }
    }

    /// Each pair: a plain scalar and the JSON sigs.k8s.io/yaml v1.6 makes of it (checked with
    /// its YAMLToJSON; tests/yaml_kubectl.rs checks a set against kubectl and the API server).
    #[test]
    fn plain_scalars_resolve_as_go_yaml_v2() {
        let cases: &[(&str, Value)] = &[
            ("0400", json!(256)),
            ("08", json!(8)),
            ("0o17", json!(15)),
            ("0O17", json!(15)),
            ("0x1F", json!(31)),
            ("0X1F", json!(31)),
            ("-0x1F", json!(-31)),
            ("0b101", json!(5)),
            ("0B11", json!(3)),
            ("-0b101", json!(-5)),
            ("+12", json!(12)),
            ("-0", json!(0)),
            ("1_000", json!(1000)),
            ("12_", json!(12)),
            ("0_7", json!(7)),
            ("0x_1F", json!(31)),
            (".5", json!(0.5)),
            (".5_0", json!(0.5)),
            ("._8", json!("._8")),
            (".5__0", json!(".5__0")),
            ("-.5", json!(-0.5)),
            ("1e3", json!(1000)),
            ("1E3", json!(1000)),
            ("1e+3", json!(1000)),
            ("1.5e3", json!(1500)),
            ("1.e2", json!(100)),
            ("0.", json!(0)),
            ("1.0", json!(1)),
            ("400.0", json!(400)),
            ("1_000_000.5", json!(1000000.5)),
            ("0.1_5", json!(0.15)),
            ("1e21", json!(1e21)),
            ("9223372036854775808", json!(9223372036854775808u64)),
            ("1e400", json!("1e400")),
            ("1:20", json!("1:20")),
            ("190:20:30", json!("190:20:30")),
            ("0x1p4", json!("0x1p4")),
            ("0o8", json!("0o8")),
            ("1.5.5", json!("1.5.5")),
            ("12e", json!("12e")),
            ("2024-01-01", json!("2024-01-01")),
            (
                "2001-12-14t21:59:43.10-05:00",
                json!("2001-12-14t21:59:43.10-05:00"),
            ),
            ("~", Value::Null),
            ("null", Value::Null),
            ("Null", Value::Null),
            ("NULL", Value::Null),
            ("nULL", json!("nULL")),
            ("y", json!(true)),
            ("Y", json!(true)),
            ("yes", json!(true)),
            ("Yes", json!(true)),
            ("YES", json!(true)),
            ("yES", json!("yES")),
            ("on", json!(true)),
            ("On", json!(true)),
            ("ON", json!(true)),
            ("True", json!(true)),
            ("tRUE", json!("tRUE")),
            ("n", json!(false)),
            ("N", json!(false)),
            ("no", json!(false)),
            ("NO", json!(false)),
            ("off", json!(false)),
            ("Off", json!(false)),
            ("FALSE", json!(false)),
            ("_1", json!("_1")),
            ("+", json!("+")),
            (".", json!(".")),
            (".iNf", json!(".iNf")),
            ("nginx:1.25", json!("nginx:1.25")),
            ("80%", json!("80%")),
        ];
        for (text, want) in cases {
            let got = read(&format!("v: {text}\n"));
            assert_eq!(&got["v"], want, "plain scalar {text}");
        }
    }

    #[test]
    fn quoted_block_and_tagged_scalars() {
        let v = read(
            "a: \"0400\"\nb: 'yes'\nc: |\n  0400\nd: >-\n  on\ne: !!str 12\nf: !!int \"12\"\n\
             g: !!float 1\nh: !custom 0400\ni: !!binary aGVsbG8=\nj: !!bool \"yes\"\n",
        );
        assert_eq!(
            v,
            json!({"a": "0400", "b": "yes", "c": "0400\n", "d": "on", "e": "12", "f": 12,
                   "g": 1, "h": "0400", "i": "hello", "j": true})
        );
        let err = from_str("a: !!int x\n").unwrap_err();
        assert!(err.message.contains("as a !!int"), "{err}");
    }

    #[test]
    fn keys_become_strings_as_kubectl_makes_them() {
        let v = read("y: 1\nn: 2\non: 3\n1: 4\n0x10: 5\n1.5: 6\n\"yes\": 7\n");
        assert_eq!(
            v,
            json!({"true": 3, "false": 2, "1": 4, "16": 5, "1.5": 6, "yes": 7})
        );
        assert!(from_str("~: 1\n").is_err());
        assert!(from_str("? [a]\n: b\n").is_err());
        assert_eq!(float_key(1e6), "1e+06");
        assert_eq!(float_key(0.5), "0.5");
    }

    #[test]
    fn infinities_and_nan_are_rejected_as_kubectl_rejects_them() {
        for text in ["a: .inf", "a: -.Inf", "a: .NaN", "a: [1, .inf]"] {
            let err = from_str(text).unwrap_err();
            assert!(err.message.contains("kubectl rejects"), "{text}: {err}");
            assert_eq!(err.line, 1);
        }
        assert_eq!(read(".inf: 1\n"), json!({".inf": 1}));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_as_go_yaml_v2() {
        let v = read("base: &b {x: 1, w: 2}\nm:\n  x: 9\n  <<: *b\n  z: 3\nl: *b\n");
        // go-yaml v2 sets merged keys where `<<` stands: x: 9 before it is replaced.
        assert_eq!(v["m"], json!({"x": 1, "w": 2, "z": 3}));
        assert_eq!(v["l"], json!({"x": 1, "w": 2}));
        let v = read("a: &a {x: 1}\nb: &b {x: 2, w: 2}\nc:\n  <<: [*a, *b]\n");
        assert_eq!(v["c"], json!({"x": 1, "w": 2}));
        let v = read("a: 1\na: 2\n");
        assert_eq!(v, json!({"a": 2}));
        assert!(from_str("a: *nope\n").is_err());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        assert!(from_str(&"[".repeat(100_000)).is_err());
        let deep = format!("{}{}", "[".repeat(600), "]".repeat(600));
        let err = from_str(&deep).unwrap_err();
        assert!(
            err.message.contains("deeper") || err.message.contains("recursion"),
            "{err}"
        );
        for text in [
            "a: -0x80000000000000000000000000000000",
            "a: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
            "a: !!binary \"@@\"",
            "a: [",
            "\u{0}",
            "? : :",
            "--- !!map\n",
        ] {
            let _ = from_str(text);
        }
        assert_eq!(
            read("a: -0x80000000000000000000000000000000\n")["a"],
            json!("-0x80000000000000000000000000000000")
        );
    }

    /// `analyze -o yaml` writes with serde-saphyr for `kubectl apply -f -`: every string that
    /// kubectl would read as something else must come out quoted.
    #[test]
    fn yaml_we_write_reads_back_unchanged_under_kubectls_rules() {
        let strings = [
            "no",
            "yes",
            "on",
            "Off",
            "y",
            "N",
            "~",
            "null",
            "0400",
            "08",
            "0o17",
            "0x1F",
            "0b101",
            "1_000",
            "+12",
            ".5",
            "1e3",
            "1:20",
            "2024-01-01",
            "true",
            "<<",
            "",
            " x",
            "a: b",
            "- a",
            "#x",
            "{a}",
            "[a]",
            "*a",
            "&a",
            "!a",
            "%a",
            "@a",
            "`a",
            "|",
            ">",
        ];
        let value: Value = strings
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("k{i}"), json!(s)))
            .collect::<Map<String, Value>>()
            .into();
        let text = serde_saphyr::to_string(&value).expect("serialises");
        assert_eq!(read(&text), value, "{text}");
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = from_str(&text).unwrap_err();
        assert!(err.message.contains("aliases"), "{err}");
    }

    #[test]
    fn lines_of_fields_and_errors() {
        let doc = parse_document(
            "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 0400\n  template:\n    spec:\n      containers:\n      - name: a\n        ports:\n        - containerPort: 80\n",
        )
        .expect("parses");
        assert_eq!(doc.value["spec"]["replicas"], 256);
        assert_eq!(doc.line_of("spec.replicas"), Some(4));
        assert_eq!(
            doc.line_of("spec.template.spec.containers[0].ports[0].containerPort"),
            Some(10)
        );
        assert_eq!(doc.line_of("spec.template.spec.nothing"), Some(6));
        let err = parse_document("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
        assert!(parse_document("").expect("empty").value.is_null());
        assert!(
            parse_document("# only a comment\n")
                .expect("empty")
                .value
                .is_null()
        );
    }
}
