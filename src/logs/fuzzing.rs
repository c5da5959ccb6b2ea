//! One entry point for the fuzz target (`fuzz/`) and the random-input test
//! (`tests/logs_fuzz.rs`): every parser over arbitrary bytes, checking invariants that hold for
//! any input.

use super::cluster::ClusterName;
use super::flags::FlagSet;
use super::format::Format;
use super::stats::{Limits, Location};
use super::{Analyzer, json, prometheus, time};

/// Run every parser on `data`; panics only if an invariant breaks.
pub fn exercise(data: &[u8]) {
    let istio = Format::istio_text();
    let _ = istio.parse(data);
    let mut scratch = Vec::new();
    let _ = json::parse(data, &mut scratch);
    let _ = FlagSet::parse(data);
    let _ = time::parse_secs(data);
    let text = String::from_utf8_lossy(data);
    let _ = ClusterName::parse(&text);
    let _ = prometheus::parse_exposition(&text, "503");
    let _ = prometheus::parse_query_response(data);
    // The first line as a format string, the rest as lines in that format.
    let (fmt, rest) = match memchr::memchr(b'\n', data) {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(f) = Format::compile(&String::from_utf8_lossy(fmt)) {
        let mut a = Analyzer::new(
            f,
            Limits {
                max_keys: 8,
                max_buckets: 8,
                ..Limits::default()
            },
        );
        for (i, l) in rest.split(|&b| b == b'\n').enumerate() {
            a.line(
                l,
                Location {
                    input: 0,
                    line: i as u64 + 1,
                },
            );
        }
    }
    let mut a = Analyzer::new(
        Format::istio_text(),
        Limits {
            max_keys: 8,
            max_buckets: 8,
            ..Limits::default()
        },
    );
    if super::feed(&mut a, data, 0).is_ok() {
        let s = &a.stats;
        assert_eq!(
            s.lines,
            s.records + s.blank + s.non_access + s.malformed,
            "every line is counted once"
        );
        assert!(s.timeline.buckets.len() <= 8);
        let report = super::report::Report::build(s, &["fuzz".to_string()]);
        let _ = report.to_json();
        let _ = report.to_table();
    }
}
