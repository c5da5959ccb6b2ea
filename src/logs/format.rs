//! Envoy access-log format strings, compiled to a matcher for TEXT lines.
//!
//! A format string is literal text with `%OPERATOR%`, `%OPERATOR(ARGS)%` or
//! `%OPERATOR(ARGS):MAX_LEN%` command operators in it. meshmedic reads only the operators in
//! [`Field`]; every other operator is an opaque field, skipped. A field ends where the literal text
//! that follows it in the format begins (its first occurrence), or at the end of the line. That is
//! how Envoy's own output can be split back: values that could hold the separator are quoted in
//! Istio's format, and Envoy replaces whitespace in the details operators with `_`.

use std::fmt;

/// The values meshmedic reads from a line. The discriminant indexes [`Record::vals`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    StartTime,
    Method,
    Path,
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    UpstreamTransportFailureReason,
    UpstreamCluster,
    UpstreamHost,
    Authority,
    Duration,
    RouteName,
}

pub const N_FIELDS: usize = 14;

/// Fields the aggregation uses; parsing a TEXT line stops after the last of these.
pub const WANTED: [Field; 9] = [
    Field::StartTime,
    Field::Method,
    Field::ResponseCode,
    Field::ResponseFlags,
    Field::ResponseCodeDetails,
    Field::ConnectionTerminationDetails,
    Field::UpstreamTransportFailureReason,
    Field::UpstreamCluster,
    Field::Authority,
];

/// One parsed line: a byte slice per field, empty when the format lacks it or the value is `-`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Record<'a> {
    pub vals: [&'a [u8]; N_FIELDS],
}

impl<'a> Record<'a> {
    pub fn get(&self, f: Field) -> &'a [u8] {
        self.vals[f as usize]
    }

    /// Store a value; Envoy's `-` for "not set" becomes empty.
    pub fn set(&mut self, f: Field, v: &'a [u8]) {
        self.vals[f as usize] = if v == b"-" { b"" } else { v };
    }
}

/// Istio's default TEXT access-log format (istio/istio `pilot/pkg/model/telemetry_logging.go`).
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Lit(Vec<u8>),
    /// `None`: an operator meshmedic does not read.
    Op(Option<Field>),
}

/// A compiled format string.
#[derive(Clone, Debug)]
pub struct Format {
    segs: Vec<Seg>,
    /// Index one past the last segment holding a wanted field: matching stops there.
    stop: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Two operators with no literal text between them cannot be told apart in the output.
    AdjacentOperators(String, String),
    NoFields,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::AdjacentOperators(a, b) => write!(
                f,
                "operators %{a}% and %{b}% have no text between them, so a line cannot be split"
            ),
            FormatError::NoFields => write!(
                f,
                "the format has none of the operators meshmedic reads (RESPONSE_CODE, RESPONSE_FLAGS, UPSTREAM_CLUSTER, ...)"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

/// Map an operator and its argument to a field meshmedic reads.
fn field_of(name: &str, arg: Option<&str>) -> Option<Field> {
    let arg_up = arg.map(|a| a.to_ascii_uppercase());
    match (name, arg_up.as_deref()) {
        ("START_TIME", _) => Some(Field::StartTime),
        ("PROTOCOL", _) => Some(Field::Protocol),
        ("RESPONSE_CODE", _) => Some(Field::ResponseCode),
        ("RESPONSE_FLAGS" | "RESPONSE_FLAGS_LONG", _) => Some(Field::ResponseFlags),
        ("RESPONSE_CODE_DETAILS", _) => Some(Field::ResponseCodeDetails),
        ("CONNECTION_TERMINATION_DETAILS", _) => Some(Field::ConnectionTerminationDetails),
        ("UPSTREAM_TRANSPORT_FAILURE_REASON", _) => Some(Field::UpstreamTransportFailureReason),
        ("UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW", _) => Some(Field::UpstreamCluster),
        ("UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS", _) => Some(Field::UpstreamHost),
        ("DURATION", _) => Some(Field::Duration),
        ("ROUTE_NAME", _) => Some(Field::RouteName),
        ("METHOD", _) => Some(Field::Method),
        ("PATH", _) => Some(Field::Path),
        ("REQ", Some(a)) => {
            // `REQ(X?Y)`: header X, else Y. Classify by either name.
            let has = |want: &[&str]| a.split('?').any(|n| want.contains(&n));
            if has(&[":METHOD"]) {
                Some(Field::Method)
            } else if has(&[":PATH", "X-ENVOY-ORIGINAL-PATH"]) {
                Some(Field::Path)
            } else if has(&[":AUTHORITY", "HOST"]) {
                Some(Field::Authority)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Try to read one command operator at the start of `s` (just after a `%`). Returns the operator's
/// name, argument and the byte length up to and including the closing `%`.
fn read_operator(s: &str) -> Option<(&str, Option<&str>, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_uppercase() || b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if i == 0 {
        return None;
    }
    let name = &s[..i];
    let mut arg = None;
    if i < b.len() && b[i] == b'(' {
        let close = s[i..].find(')')? + i;
        arg = Some(&s[i + 1..close]);
        i = close + 1;
    }
    if i < b.len() && b[i] == b':' {
        let start = i + 1;
        let mut j = start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == start {
            return None;
        }
        i = j;
    }
    if i < b.len() && b[i] == b'%' {
        Some((name, arg, i + 1))
    } else {
        None
    }
}

impl Format {
    /// Compile a format string. A trailing newline is dropped (lines are split on it).
    pub fn compile(fmt: &str) -> Result<Format, FormatError> {
        let fmt = fmt.strip_suffix('\n').unwrap_or(fmt);
        let mut segs: Vec<Seg> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut lit = Vec::new();
        let mut rest = fmt;
        while let Some(p) = rest.find('%') {
            lit.extend_from_slice(&rest.as_bytes()[..p]);
            let after = &rest[p + 1..];
            match read_operator(after) {
                Some((name, arg, len)) => {
                    if !lit.is_empty() {
                        segs.push(Seg::Lit(std::mem::take(&mut lit)));
                    } else if let Some(Seg::Op(_)) = segs.last() {
                        let prev = names.last().cloned().unwrap_or_default();
                        return Err(FormatError::AdjacentOperators(prev, name.to_string()));
                    }
                    segs.push(Seg::Op(field_of(name, arg)));
                    names.push(name.to_string());
                    rest = &after[len..];
                }
                None => {
                    lit.push(b'%');
                    rest = after;
                }
            }
        }
        lit.extend_from_slice(rest.as_bytes());
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        let stop = segs
            .iter()
            .rposition(|s| matches!(s, Seg::Op(Some(f)) if WANTED.contains(f)))
            .map(|i| i + 1)
            .ok_or(FormatError::NoFields)?;
        Ok(Format { segs, stop })
    }

    /// Istio's default TEXT format.
    pub fn istio_text() -> Format {
        match Format::compile(ISTIO_TEXT_FORMAT) {
            Ok(f) => f,
            // The constant is known to compile; a test pins it.
            Err(e) => unreachable!("built-in format: {e}"),
        }
    }

    /// Whether lines of this format start with `{` (a JSON-shaped format string): such lines are
    /// then matched against the format before being read as Istio JSON.
    pub fn starts_with_brace(&self) -> bool {
        matches!(self.segs.first(), Some(Seg::Lit(l)) if l.first() == Some(&b'{'))
    }

    /// Whether the format has a given field.
    pub fn has(&self, f: Field) -> bool {
        self.segs.contains(&Seg::Op(Some(f)))
    }

    /// Match a line (without its newline). `None` when the literal text does not match. Matching
    /// stops after the last field the aggregation uses, so what follows it is not checked.
    pub fn parse<'a>(&self, line: &'a [u8]) -> Option<Record<'a>> {
        let mut rec = Record::default();
        self.parse_into(line, &mut rec).then_some(rec)
    }

    /// [`Format::parse`] into a record the caller owns (saves copying it out on the hot path).
    pub fn parse_into<'a>(&self, line: &'a [u8], rec: &mut Record<'a>) -> bool {
        let mut pos = 0usize;
        let segs = &self.segs[..self.stop];
        let mut i = 0;
        while i < segs.len() {
            match &segs[i] {
                Seg::Lit(l) => {
                    if !starts_with(&line[pos..], l) {
                        return false;
                    }
                    pos += l.len();
                }
                Seg::Op(f) => {
                    // A field is followed by a literal (found, so consumed here too), or ends
                    // the format.
                    let (end, next) = match self.segs.get(i + 1) {
                        Some(Seg::Lit(l)) => match find(&line[pos..], l) {
                            Some(p) => (pos + p, pos + p + l.len()),
                            None => return false,
                        },
                        _ => (line.len(), line.len()),
                    };
                    if let Some(f) = f {
                        rec.set(*f, &line[pos..end]);
                    }
                    pos = next;
                    i += 1;
                }
            }
            i += 1;
        }
        true
    }
}

/// Byte-wise equality: the slices compared here are a few bytes long, where a `memcmp` call
/// costs more than the comparison (it was the top of the profile).
#[inline(always)]
fn starts_with(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.iter().zip(needle).all(|(a, b)| a == b)
}

/// First occurrence of a byte. Fields are mostly short, where memchr's setup costs more than
/// the search: look at the first 64 bytes a word at a time (SWAR), then hand over to memchr.
#[inline(always)]
fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NEAR: usize = 64;
    let pattern = LO * u64::from(b);
    let head = &hay[..hay.len().min(NEAR)];
    let mut words = head.chunks_exact(8);
    let mut i = 0;
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a) ^ pattern;
        // The lowest flagged byte is always a real match (borrows only run upwards).
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(i + (t.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if let Some(p) = words.remainder().iter().position(|&c| c == b) {
        return Some(i + p);
    }
    if hay.len() <= NEAR {
        return None;
    }
    memchr::memchr(b, &hay[NEAR..]).map(|p| NEAR + p)
}

/// First occurrence of a short needle.
#[inline(always)]
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    let mut from = 0;
    loop {
        let at = from + find_byte(&hay[from..], first)?;
        if starts_with(&hay[at + 1..], tail) {
            return Some(at);
        }
        from = at + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &[u8] = b"[2020-11-25T21:26:18.409Z] \"GET /status/418 HTTP/1.1\" 418 - via_upstream - \"-\" 0 135 4 4 \"-\" \"curl/7.73.0-DEV\" \"84961386-6d84-929d-98bd-c5aee93b5c88\" \"httpbin:8000\" \"10.44.1.27:80\" outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 10.0.45.184:8000 10.44.1.23:46520 - default";

    #[test]
    fn istio_default_line() {
        let f = Format::istio_text();
        let r = f.parse(LINE).expect("parses");
        assert_eq!(r.get(Field::StartTime), b"2020-11-25T21:26:18.409Z");
        assert_eq!(r.get(Field::Method), b"GET");
        assert_eq!(r.get(Field::Path), b"/status/418");
        assert_eq!(r.get(Field::ResponseCode), b"418");
        assert_eq!(r.get(Field::ResponseFlags), b"");
        assert_eq!(r.get(Field::ResponseCodeDetails), b"via_upstream");
        assert_eq!(r.get(Field::Authority), b"httpbin:8000");
        assert_eq!(r.get(Field::UpstreamHost), b"10.44.1.27:80");
        assert_eq!(
            r.get(Field::UpstreamCluster),
            b"outbound|8000||httpbin.foo.svc.cluster.local"
        );
    }

    #[test]
    fn user_agent_with_spaces_and_garbage() {
        let f = Format::istio_text();
        let line = String::from_utf8_lossy(LINE)
            .replace("curl/7.73.0-DEV", "Mozilla/5.0 (X11; Linux x86_64)");
        assert_eq!(
            f.parse(line.as_bytes()).map(|r| r.get(Field::Authority)),
            Some(&b"httpbin:8000"[..])
        );
        assert!(f.parse(b"hello world").is_none());
        assert!(f.parse(b"").is_none());
        assert!(f.parse(&LINE[..60]).is_none());
    }

    #[test]
    fn custom_format_and_operator_syntax() {
        let f = Format::compile("%START_TIME(%s)% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_SENT% %UPSTREAM_CLUSTER% %REQ(:AUTHORITY):20%\n").expect("compiles");
        let r = f
            .parse(b"1700000000 503 UC 91 inbound|8080|| ratings:8080")
            .expect("parses");
        assert_eq!(r.get(Field::ResponseFlags), b"UC");
        assert_eq!(r.get(Field::UpstreamCluster), b"inbound|8080||");
        assert_eq!(r.get(Field::Authority), b"ratings:8080");
        assert!(f.has(Field::StartTime));
        // A lone percent sign is literal text.
        let g = Format::compile("100% %RESPONSE_CODE%").expect("compiles");
        assert_eq!(
            g.parse(b"100% 200").map(|r| r.get(Field::ResponseCode)),
            Some(&b"200"[..])
        );
    }

    #[test]
    fn rejects_unsplittable_and_empty_formats() {
        assert!(matches!(
            Format::compile("%RESPONSE_CODE%%RESPONSE_FLAGS%"),
            Err(FormatError::AdjacentOperators(..))
        ));
        assert_eq!(
            Format::compile("%BYTES_SENT% x").err(),
            Some(FormatError::NoFields)
        );
    }
}
