//! One-line YAML flow collections (`{app: web, ports: [80, 443]}`), as a tree of their plain
//! text with the offset of each key and item. The block parser ([`super::block`]) resolves the
//! scalars into JSON; the block locator (`positions::block`) finds a field's offset in them.
//! Only what is plainly read: quoted keys, anchors, tags, comments, nested quotes, empty
//! entries, a key without a value or `:` without a space give `None` (the full parser's job).

/// A node of a one-line flow collection.
#[derive(Debug)]
pub(crate) enum Flow<'a> {
    /// Entries: the key's text, its offset, the value.
    Mapping(Vec<(&'a str, usize, Flow<'a>)>),
    /// Items with their offsets.
    Sequence(Vec<(usize, Flow<'a>)>),
    /// A plain scalar's text (resolved by the reader).
    Plain(&'a str),
    /// A quoted scalar's value.
    Quoted(String),
}

/// Deeper nesting is left to the full parser, which bounds it.
const MAX_DEPTH: usize = 64;

/// The flow collection starting at byte `start` of `text`, and where it ends; it must end on
/// its line.
pub(crate) fn parse(text: &str, start: usize) -> Option<(Flow<'_>, usize)> {
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
    let node = parser.node()?;
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

    fn node(&mut self) -> Option<Flow<'a>> {
        self.spaces();
        match self.peek()? {
            open @ (b'{' | b'[') => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                self.at += 1;
                let node = if open == b'{' {
                    self.mapping()
                } else {
                    self.sequence()
                };
                self.depth -= 1;
                node
            }
            b'"' | b'\'' => {
                let (value, end) = quoted(&self.text[self.at..])?;
                self.at += end;
                Some(Flow::Quoted(value))
            }
            b'&' | b'*' | b'!' | b'?' | b'|' | b'>' | b'#' | b'%' | b'@' | b'`' => None,
            _ => {
                let text = self.plain(false)?;
                (!text.is_empty()).then_some(Flow::Plain(text))
            }
        }
    }

    fn mapping(&mut self) -> Option<Flow<'a>> {
        let mut entries = Vec::new();
        loop {
            self.spaces();
            if self.peek()? == b'}' {
                self.at += 1;
                return Some(Flow::Mapping(entries));
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
            let value = self.node()?;
            entries.push((key, key_at, value));
            if !self.separator(b'}')? {
                self.at += 1;
                return Some(Flow::Mapping(entries));
            }
        }
    }

    fn sequence(&mut self) -> Option<Flow<'a>> {
        let mut items = Vec::new();
        loop {
            self.spaces();
            if self.peek()? == b']' {
                self.at += 1;
                return Some(Flow::Sequence(items));
            }
            let item_at = self.at;
            items.push((item_at, self.node()?));
            if !self.separator(b']')? {
                self.at += 1;
                return Some(Flow::Sequence(items));
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
