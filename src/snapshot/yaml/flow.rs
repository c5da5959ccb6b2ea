//! One-line YAML flow collections (`{app: web, ports: [80, 443]}`), read through a
//! [`FlowBuilder`]: the block parser ([`super::block`]) builds its values straight from them,
//! resolving each scalar; the block locator (`positions::block`) takes a tree of the offset of
//! each key and item ([`parse`]) to find a field in them.
//! Only what is plainly read: quoted keys, anchors, tags, comments, nested quotes, empty
//! entries, a key without a value or `:` without a space give `None` (the full parser's job).

/// A node of a one-line flow collection.
#[derive(Debug)]
pub(crate) enum Flow<'a> {
    /// Entries: the key's text, its offset, the value.
    Mapping(Vec<(&'a str, usize, Flow<'a>)>),
    /// Items with their offsets.
    Sequence(Vec<(usize, Flow<'a>)>),
    /// A plain or quoted scalar: the locator does not enter it, and the block parser reads
    /// scalars through its own [`FlowBuilder`].
    Scalar,
}

/// Deeper nesting is left to the full parser, which bounds it.
const MAX_DEPTH: usize = 64;

/// The bytes [`Parser::plain`] looks at: the ones that end a flow scalar or make it the full
/// parser's.
const PLAIN_STOP: [bool; 256] = super::byte_set(b",}]{[\"'#\t:");

/// What a flow collection is read into: the [`Flow`] tree, or straight into what the block parser
/// builds (no tree to build and walk again for each `{app: web}`).
pub(crate) trait FlowBuilder<'a> {
    type Node;
    type Map;
    type Seq;
    fn map(&self) -> Self::Map;
    /// A plain key (its text and offset) and its value; `None` for what the full parser reads.
    fn entry(&self, map: &mut Self::Map, key: &'a str, at: usize, value: Self::Node) -> Option<()>;
    fn end_map(&self, map: Self::Map) -> Option<Self::Node>;
    fn seq(&self) -> Self::Seq;
    fn item(&self, seq: &mut Self::Seq, at: usize, value: Self::Node);
    fn end_seq(&self, seq: Self::Seq) -> Self::Node;
    fn quoted(&self, value: String) -> Self::Node;
    /// A plain scalar's text, never empty; `None` for what the full parser reads.
    fn plain(&self, text: &'a str) -> Option<Self::Node>;
}

/// Builds the [`Flow`] tree.
struct Tree;

impl<'a> FlowBuilder<'a> for Tree {
    type Node = Flow<'a>;
    type Map = Vec<(&'a str, usize, Flow<'a>)>;
    type Seq = Vec<(usize, Flow<'a>)>;
    fn map(&self) -> Self::Map {
        Vec::new()
    }
    fn entry(&self, map: &mut Self::Map, key: &'a str, at: usize, value: Flow<'a>) -> Option<()> {
        map.push((key, at, value));
        Some(())
    }
    fn end_map(&self, map: Self::Map) -> Option<Flow<'a>> {
        Some(Flow::Mapping(map))
    }
    fn seq(&self) -> Self::Seq {
        Vec::new()
    }
    fn item(&self, seq: &mut Self::Seq, at: usize, value: Flow<'a>) {
        seq.push((at, value));
    }
    fn end_seq(&self, seq: Self::Seq) -> Flow<'a> {
        Flow::Sequence(seq)
    }
    fn quoted(&self, _value: String) -> Flow<'a> {
        Flow::Scalar
    }
    fn plain(&self, _text: &'a str) -> Option<Flow<'a>> {
        Some(Flow::Scalar)
    }
}

/// The flow collection starting at byte `start` of `text`, and where it ends; it must end on
/// its line.
pub(crate) fn parse(text: &str, start: usize) -> Option<(Flow<'_>, usize)> {
    parse_with(&Tree, text, start)
}

/// [`parse`] into what `builder` builds.
pub(crate) fn parse_with<'a, B: FlowBuilder<'a>>(
    builder: &B,
    text: &'a str,
    start: usize,
) -> Option<(B::Node, usize)> {
    // The memchr crate's search: the standard library's costs more per call than this short
    // line takes to scan.
    let end = memchr::memchr(b'\n', &text.as_bytes()[start..]).map_or(text.len(), |i| start + i);
    let mut parser = Parser {
        text: &text[..end],
        at: start,
        depth: 0,
    };
    if !matches!(parser.peek()?, b'{' | b'[') {
        return None;
    }
    let node = parser.node(builder)?;
    Some((node, parser.at))
}

/// A quoted scalar at the start of `text` (`"..."` with YAML's escapes, or `'...'` with `''`):
/// its value and the byte after its closing quote. `None` when it does not end on the line or
/// uses an escape this does not read.
pub(crate) fn quoted(text: &str) -> Option<(String, usize)> {
    let quote = *text.as_bytes().first()?;
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\n' => return None,
            '\'' if quote == b'\'' => {
                if text[i + 1..].starts_with('\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    return Some((out, i + 1));
                }
            }
            '"' if quote == b'"' => return Some((out, i + 1)),
            '\\' if quote == b'"' => {
                let (_, e) = chars.next()?;
                let mut hex = |n: usize| {
                    let digits: String = (0..n)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    (digits.len() == n)
                        .then(|| {
                            u32::from_str_radix(&digits, 16)
                                .ok()
                                .and_then(char::from_u32)
                        })
                        .flatten()
                };
                out.push(match e {
                    '\\' => '\\',
                    '"' => '"',
                    '/' => '/',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    ' ' => ' ',
                    'x' => hex(2)?,
                    'u' => hex(4)?,
                    'U' => hex(8)?,
                    _ => return None,
                });
            }
            _ => out.push(c),
        }
    }
    None
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn node<B: FlowBuilder<'a>>(&mut self, builder: &B) -> Option<B::Node> {
        self.spaces();
        match self.peek()? {
            open @ (b'{' | b'[') => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                self.at += 1;
                let node = if open == b'{' {
                    self.mapping(builder)
                } else {
                    self.sequence(builder)
                };
                self.depth -= 1;
                node
            }
            b'"' | b'\'' => {
                let (value, end) = quoted(&self.text[self.at..])?;
                self.at += end;
                Some(builder.quoted(value))
            }
            b'&' | b'*' | b'!' | b'?' | b'|' | b'>' | b'#' | b'%' | b'@' | b'`' => None,
            _ => {
                let text = self.plain(false)?;
                if text.is_empty() {
                    return None;
                }
                builder.plain(text)
            }
        }
    }

    fn mapping<B: FlowBuilder<'a>>(&mut self, builder: &B) -> Option<B::Node> {
        let mut entries = builder.map();
        loop {
            self.spaces();
            if self.peek()? == b'}' {
                self.at += 1;
                return builder.end_map(entries);
            }
            let key_at = self.at;
            let key = self.plain(true)?;
            // `{a:1}` is a key `a:1` with no value, `{a: }` a null: the full parser's job.
            if key.is_empty()
                || self.peek()? != b':'
                || self.text.as_bytes().get(self.at + 1) != Some(&b' ')
            {
                return None;
            }
            self.at += 1;
            let value = self.node(builder)?;
            builder.entry(&mut entries, key, key_at, value)?;
            if !self.separator(b'}')? {
                self.at += 1;
                return builder.end_map(entries);
            }
        }
    }

    fn sequence<B: FlowBuilder<'a>>(&mut self, builder: &B) -> Option<B::Node> {
        let mut items = builder.seq();
        loop {
            self.spaces();
            if self.peek()? == b']' {
                self.at += 1;
                return Some(builder.end_seq(items));
            }
            let item_at = self.at;
            let item = self.node(builder)?;
            builder.item(&mut items, item_at, item);
            if !self.separator(b']')? {
                self.at += 1;
                return Some(builder.end_seq(items));
            }
        }
    }

    /// After an entry: `true` at a `,` (consumed), `false` at the closing bracket.
    fn separator(&mut self, close: u8) -> Option<bool> {
        self.spaces();
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            b if b == close => Some(false),
            _ => None,
        }
    }

    /// A plain scalar: a key ends at `:` before a space, a value at `,` or a closing bracket.
    fn plain(&mut self, key: bool) -> Option<&'a str> {
        let start = self.at;
        let text: &'a str = self.text;
        let bytes = text.as_bytes();
        while let Some(&b) = bytes.get(self.at) {
            // Most bytes of a name or a host are none of those below: one table lookup each.
            if !PLAIN_STOP[usize::from(b)] {
                self.at += 1;
                continue;
            }
            let next = bytes.get(self.at + 1).copied();
            match b {
                b',' | b'}' | b']' => break,
                b'{' | b'[' | b'"' | b'\'' | b'#' | b'\t' => return None,
                b':' if matches!(next, None | Some(b' ' | b',' | b'}' | b']')) => {
                    if key {
                        break;
                    }
                    return None;
                }
                _ => {}
            }
            self.at += 1;
        }
        Some(text[start..self.at].trim_end_matches(' '))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte the table lets through is an ordinary byte of a flow scalar, key or value; the
    /// ones it stops at are exactly those `Parser::plain` treats otherwise.
    #[test]
    fn bytes_outside_the_stop_table_are_plain() {
        for byte in 0x20u8..0x7f {
            let c = char::from(byte);
            for text in [format!("{{a: x{c}y}}"), format!("{{x{c}y: a}}")] {
                let parsed = parse(&text, 0);
                if PLAIN_STOP[usize::from(byte)] {
                    continue;
                }
                match parsed {
                    Some((Flow::Mapping(entries), end)) => {
                        assert_eq!((entries.len(), end), (1, text.len()), "{text:?}");
                    }
                    other => panic!("{text:?}: {other:?}"),
                }
            }
        }
        for byte in [b',', b'}', b']', b'{', b'[', b'"', b'\'', b'#', b'\t', b':'] {
            assert!(PLAIN_STOP[usize::from(byte)], "{}", char::from(byte));
        }
        assert_eq!(PLAIN_STOP.iter().filter(|&&stop| stop).count(), 10);
    }
}
