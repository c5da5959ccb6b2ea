//! Envoy access-log diagnosis: `meshmedic logs`.
//!
//! Lines are read in large blocks, split with memchr and parsed as byte slices: Istio's TEXT
//! format (or any Envoy format string), and JSON lines, told apart per line by their first byte.
//! Only the fields the aggregation needs are extracted, and nothing is allocated per line except
//! a map key seen for the first time. The aggregate ([`stats::Stats`]) has bounded memory;
//! [`diagnose::diagnose`] maps it to meshmedic's finding codes.

pub mod cluster;
pub mod diagnose;
pub mod flags;
pub mod format;
pub mod fuzzing;
pub mod json;
mod parallel;
pub mod prometheus;
pub mod report;
pub mod stats;
pub mod time;

use std::io::{self, Read};

use format::Format;
use stats::{Limits, Location, Stats};

/// Turns lines into an aggregate.
pub struct Analyzer {
    format: Format,
    pub stats: Stats,
    scratch: Vec<u8>,
    threads: usize,
    block: usize,
}

impl Analyzer {
    /// `format`: the TEXT format (JSON lines are recognised whatever it is).
    pub fn new(format: Format, limits: Limits) -> Analyzer {
        Analyzer {
            format,
            stats: Stats::new(limits),
            scratch: Vec::new(),
            threads: 1,
            block: BLOCK,
        }
    }

    /// Parse on `n` worker threads (blocks of lines go round-robin; the aggregates are merged).
    pub fn with_threads(mut self, n: usize) -> Analyzer {
        self.threads = n.max(1);
        self
    }

    /// Bytes read at a time (and handed to a worker); small values exercise block edges in tests.
    pub fn with_block_size(mut self, bytes: usize) -> Analyzer {
        self.block = bytes.max(16);
        self
    }

    /// Count one line (without its `\n`).
    pub fn line(&mut self, line: &[u8], at: Location) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.stats.lines += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            self.stats.blank += 1;
            return;
        }
        if self.record(line) {
            return;
        }
        // `kubectl logs --timestamps` puts an RFC 3339 time and a space before each line.
        if line[0].is_ascii_digit()
            && let Some(sp) = memchr::memchr(b' ', line)
            && sp >= 19
            && time::parse_secs(&line[..sp]).is_some()
            && self.record(&line[sp + 1..])
        {
            return;
        }
        if looks_like_proxy_log(line) {
            self.stats.non_access += 1;
        } else {
            self.stats.note_malformed(at);
        }
    }

    fn record(&mut self, line: &[u8]) -> bool {
        let Analyzer {
            format,
            stats,
            scratch,
            ..
        } = self;
        if line.first() == Some(&b'{') && !format.starts_with_brace() {
            match json::parse(line, scratch) {
                Some(r) if stats.add(&r) => {
                    stats.json_records += 1;
                    true
                }
                _ => false,
            }
        } else {
            let mut rec = format::Record::default();
            if format.parse_into(line, &mut rec) {
                return stats.add(&rec);
            }
            // A JSON-shaped custom format that did not match: maybe Istio's JSON after all.
            if line.first() == Some(&b'{')
                && let Some(r) = json::parse(line, scratch)
                && stats.add(&r)
            {
                stats.json_records += 1;
                return true;
            }
            false
        }
    }
}

/// pilot-agent (`2024-05-01T10:00:00.000000Z\tinfo\t...`) and Envoy
/// (`[2024-05-01 10:00:00.000][15][warning][config] ...`) write their own logs to the same stream.
fn looks_like_proxy_log(line: &[u8]) -> bool {
    let head = &line[..line.len().min(64)];
    let levels: [&[u8]; 5] = [
        b"\tinfo\t",
        b"\twarn\t",
        b"\twarning\t",
        b"\terror\t",
        b"\tdebug\t",
    ];
    (line[0].is_ascii_digit()
        && levels
            .iter()
            .any(|l| memchr::memmem::find(head, l).is_some()))
        || (line[0] == b'['
            && memchr::memmem::find(head, b"][").is_some()
            && memchr::memchr(b'"', head).is_none())
}

/// Why reading an input failed.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {source}")]
pub struct InputError {
    pub name: String,
    #[source]
    pub source: io::Error,
}

const BLOCK: usize = 1 << 20;
/// Longest line kept whole; a longer one is counted as malformed.
const MAX_LINE: usize = 1 << 24;

/// Feed every line of a reader (gzip recognised by its magic bytes) to the analyzer.
pub fn feed<R: Read + Send>(analyzer: &mut Analyzer, mut r: R, input: usize) -> io::Result<()> {
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let prefix = io::Cursor::new(head[..got].to_vec());
    let r: Box<dyn Read + Send + '_> = if got == 2 && head == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(prefix.chain(r)))
    } else {
        Box::new(prefix.chain(r))
    };
    if analyzer.threads > 1 {
        parallel::feed(analyzer, r, input)
    } else {
        feed_plain(analyzer, r, input)
    }
}

fn feed_plain<R: Read>(analyzer: &mut Analyzer, mut r: R, input: usize) -> io::Result<()> {
    let mut buf = vec![0u8; analyzer.block];
    let mut filled = 0usize;
    let mut line_no = 0u64;
    // Skipping the rest of an over-long line.
    let mut skipping = false;
    loop {
        if filled == buf.len() {
            if buf.len() < MAX_LINE {
                buf.resize(buf.len() * 2, 0);
            } else {
                // One line fills the largest buffer: count it once, drop it, skip to its end.
                if !skipping {
                    line_no += 1;
                    analyzer.stats.lines += 1;
                    analyzer.stats.note_malformed(Location {
                        input,
                        line: line_no,
                    });
                }
                skipping = true;
                filled = 0;
            }
        }
        let n = match r.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if filled > 0 && !skipping {
                line_no += 1;
                analyzer.line(
                    &buf[..filled],
                    Location {
                        input,
                        line: line_no,
                    },
                );
            }
            return Ok(());
        }
        let end = filled + n;
        let mut start = 0;
        let mut from = filled;
        while let Some(p) = memchr::memchr(b'\n', &buf[from..end]) {
            let nl = from + p;
            if skipping {
                skipping = false;
            } else {
                line_no += 1;
                analyzer.line(
                    &buf[start..nl],
                    Location {
                        input,
                        line: line_no,
                    },
                );
            }
            start = nl + 1;
            from = start;
        }
        if skipping {
            filled = 0;
        } else {
            buf.copy_within(start..end, 0);
            filled = end - start;
        }
    }
}
