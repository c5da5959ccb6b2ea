//! Istio's JSON access-log lines: one flat JSON object per line.
//!
//! A small scanner instead of a JSON library: it reads only the keys meshmedic needs, allocates
//! nothing unless a value holds escapes, and skips nested values. Keys follow Istio's JSON format
//! (`EnvoyJSONLogFormatIstio`); numbers (`"response_code": 503`) are read as their text and `null`
//! as "not set".

use super::format::{Field, N_FIELDS, Record};

fn field_of_key(key: &[u8]) -> Option<Field> {
    Some(match key {
        b"start_time" => Field::StartTime,
        b"method" => Field::Method,
        b"path" => Field::Path,
        b"protocol" => Field::Protocol,
        b"response_code" => Field::ResponseCode,
        b"response_flags" => Field::ResponseFlags,
        b"response_code_details" => Field::ResponseCodeDetails,
        b"connection_termination_details" => Field::ConnectionTerminationDetails,
        b"upstream_transport_failure_reason" => Field::UpstreamTransportFailureReason,
        b"upstream_cluster" => Field::UpstreamCluster,
        b"upstream_host" => Field::UpstreamHost,
        b"authority" => Field::Authority,
        b"duration" => Field::Duration,
        b"route_name" => Field::RouteName,
        _ => return None,
    })
}

#[derive(Clone, Copy, Default)]
struct Span {
    start: usize,
    end: usize,
    escaped: bool,
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string whose opening quote is at `i`: the span between the quotes.
    fn string(&mut self) -> Option<Span> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            let p = memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
            self.i += p;
            if self.b[self.i] == b'\\' {
                escaped = true;
                self.i += 2;
                if self.i > self.b.len() {
                    return None;
                }
            } else {
                let end = self.i;
                self.i += 1;
                return Some(Span {
                    start,
                    end,
                    escaped,
                });
            }
        }
    }

    /// Any value; a scalar's span (strings without quotes), or an empty span for
    /// null/objects/arrays, which meshmedic does not read.
    fn value(&mut self) -> Option<Span> {
        self.ws();
        let c = *self.b.get(self.i)?;
        match c {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                while let Some(&c) = self.b.get(self.i) {
                    match c {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(Span::default());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                None
            }
            _ => {
                let start = self.i;
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'
                    )
                {
                    self.i += 1;
                }
                let tok = &self.b[start..self.i];
                match tok {
                    b"null" | b"true" | b"false" => Some(Span::default()),
                    _ if !tok.is_empty()
                        && tok.iter().all(|c| {
                            c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                        }) =>
                    {
                        Some(Span {
                            start,
                            end: self.i,
                            escaped: false,
                        })
                    }
                    _ => None,
                }
            }
        }
    }
}

/// Parse one JSON line. `scratch` receives unescaped values (rarely needed).
pub fn parse<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<Record<'a>> {
    let mut spans: [Option<Span>; N_FIELDS] = [None; N_FIELDS];
    let mut s = Scan { b: line, i: 0 };
    s.eat(b'{')?;
    s.ws();
    if s.b.get(s.i) == Some(&b'}') {
        s.i += 1;
    } else {
        loop {
            s.ws();
            if s.b.get(s.i) != Some(&b'"') {
                return None;
            }
            let k = s.string()?;
            s.eat(b':')?;
            let v = s.value()?;
            if let Some(f) = field_of_key(&line[k.start..k.end]) {
                spans[f as usize] = Some(v);
            }
            s.ws();
            match s.b.get(s.i) {
                Some(b',') => s.i += 1,
                Some(b'}') => {
                    s.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    s.ws();
    if s.i != line.len() {
        return None;
    }
    // Unescape into scratch first, then hand out slices: all borrows start after the last write.
    scratch.clear();
    let mut at: [(usize, usize); N_FIELDS] = [(0, 0); N_FIELDS];
    for (i, sp) in spans.iter().enumerate() {
        if let Some(sp) = sp.filter(|sp| sp.escaped) {
            let st = scratch.len();
            unescape(&line[sp.start..sp.end], scratch);
            at[i] = (st, scratch.len());
        }
    }
    let scratch: &'a [u8] = scratch;
    let mut rec = Record::default();
    for (i, sp) in spans.iter().enumerate() {
        if let Some(sp) = sp {
            let v = if sp.escaped {
                &scratch[at[i].0..at[i].1]
            } else {
                &line[sp.start..sp.end]
            };
            rec.vals[i] = if v == b"-" { b"" } else { v };
        }
    }
    Some(rec)
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// JSON string unescape; invalid escapes and lone surrogates become U+FFFD.
fn unescape(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c != b'\\' || i + 1 >= s.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let e = s[i + 1];
        i += 2;
        let ch = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(&s[i..]);
                i += 4.min(s.len() - i);
                match hi {
                    Some(h @ 0xD800..=0xDBFF) if s[i..].starts_with(b"\\u") => {
                        match hex4(&s[i + 2..]) {
                            Some(l @ 0xDC00..=0xDFFF) => {
                                i += 6;
                                char::from_u32(0x10000 + ((h - 0xD800) << 10) + (l - 0xDC00))
                                    .unwrap_or('\u{FFFD}')
                            }
                            _ => '\u{FFFD}',
                        }
                    }
                    Some(h) => char::from_u32(h).unwrap_or('\u{FFFD}'),
                    None => '\u{FFFD}',
                }
            }
            _ => '\u{FFFD}',
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_json_line() {
        let line = br#"{"authority":"ratings:9080","bytes_received":0,"bytes_sent":95,"connection_termination_details":null,"downstream_local_address":"10.0.0.5:9080","duration":3,"method":"GET","path":"/ratings/0","protocol":"HTTP/1.1","request_id":"x","requested_server_name":"outbound_.9080_._.ratings.prod.svc.cluster.local","response_code":503,"response_code_details":"upstream_reset_before_response_started{connection_termination}","response_flags":"UC","route_name":"default","start_time":"2024-05-01T10:00:01.123Z","upstream_cluster":"inbound|9080||","upstream_host":"10.0.0.5:9080","upstream_service_time":null,"upstream_transport_failure_reason":null,"user_agent":"curl","x_forwarded_for":null,"nested":{"a":[1,"}"]}}"#;
        let mut scratch = Vec::new();
        let r = parse(line, &mut scratch).expect("parses");
        assert_eq!(r.get(Field::ResponseCode), b"503");
        assert_eq!(r.get(Field::ResponseFlags), b"UC");
        assert_eq!(r.get(Field::UpstreamCluster), b"inbound|9080||");
        assert_eq!(r.get(Field::ConnectionTerminationDetails), b"");
        assert_eq!(r.get(Field::StartTime), b"2024-05-01T10:00:01.123Z");
    }

    #[test]
    fn escapes_and_malformed() {
        let mut scratch = Vec::new();
        let r = parse(
            br#"{"path":"/a\"b\u00e9\ud83d\ude00","response_code":"200"}"#,
            &mut scratch,
        )
        .expect("parses");
        assert_eq!(r.get(Field::Path), "/a\"b\u{e9}\u{1F600}".as_bytes());
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"{\"a\":1",
            b"{\"a\":1} x",
            b"[1]",
            b"{\"a\":\"\\",
            b"{\"a\":nope}",
            b"{\"a\":\"\\u12\"}",
        ] {
            let mut scratch = Vec::new();
            let _ = parse(bad, &mut scratch);
        }
        assert!(parse(b"{\"a\":}", &mut scratch).is_none());
        assert!(parse(b"{\"a\":1} x", &mut scratch).is_none());
        assert!(parse(b"{}", &mut scratch).is_some());
    }
}
