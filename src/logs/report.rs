//! The result of `meshmedic logs`, as JSON (stable field names, deterministic order) or as a
//! table for people.

use std::fmt::Write as _;

use serde::Serialize;

use super::cluster::ClusterName;
use super::diagnose::{self, Diagnosis};
use super::flags::FLAGS;
use super::stats::{Counts, METHODS, Stats};
use super::time::format_secs;

/// Rows shown per breakdown; the JSON keeps the same cut so its size stays bounded too.
pub const TOP: usize = 20;

#[derive(Debug, Serialize)]
pub struct Report {
    pub inputs: Vec<String>,
    pub lines: u64,
    pub records: u64,
    pub json_records: u64,
    pub blank_lines: u64,
    pub proxy_log_lines: u64,
    pub malformed: Malformed,
    pub time: TimeRange,
    pub status: Vec<StatusRow>,
    pub flags: Vec<FlagRow>,
    pub status_flags: Vec<StatusFlagRow>,
    pub clusters: Vec<ClusterRow>,
    pub authorities: Vec<KeyRow>,
    pub methods: Vec<KeyRow>,
    pub timeline: Vec<BucketRow>,
    pub diagnoses: Vec<Diagnosis>,
    pub cannot_tell: Vec<String>,
    pub overflow: Overflow,
}

#[derive(Debug, Serialize)]
pub struct Malformed {
    pub count: u64,
    /// `file:line` of the first few.
    pub first: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TimeRange {
    pub first: Option<String>,
    pub last: Option<String>,
    pub bucket_seconds: i64,
    pub untimed_records: u64,
}

#[derive(Debug, Serialize)]
pub struct StatusRow {
    pub code: u16,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct FlagRow {
    pub flag: &'static str,
    pub meaning: &'static str,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct StatusFlagRow {
    pub code: u16,
    pub flags: String,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct ClusterRow {
    pub cluster: String,
    #[serde(flatten)]
    pub name: ClusterName,
    pub requests: u64,
    pub answered: u64,
    pub status_5xx: u64,
    pub status_503: u64,
    pub uc_503: u64,
    pub connection_failure_503: u64,
    pub flags_503: Vec<(String, u64)>,
}

#[derive(Debug, Serialize)]
pub struct KeyRow {
    pub key: String,
    pub requests: u64,
    pub status_5xx: u64,
    pub status_503: u64,
}

#[derive(Debug, Serialize)]
pub struct BucketRow {
    pub start: String,
    pub requests: u32,
    pub status_503: u32,
    pub uc_503: u32,
    pub connection_failure_503: u32,
}

/// Records counted under "(other)" because a breakdown reached its key cap.
#[derive(Debug, Serialize)]
pub struct Overflow {
    pub clusters: u64,
    pub authorities: u64,
    pub methods: u64,
    pub status_flags: u64,
}

fn lossy(b: &[u8]) -> String {
    if b.is_empty() {
        "-".to_string()
    } else {
        String::from_utf8_lossy(b).into_owned()
    }
}

fn key_rows(
    map: &super::stats::Bounded<Box<[u8]>, Counts>,
    extra: &[(&[u8], Counts)],
) -> Vec<KeyRow> {
    let row = |k: &[u8], c: &Counts| KeyRow {
        key: lossy(k),
        requests: c.requests,
        status_5xx: c.s5xx,
        status_503: c.s503,
    };
    let mut rows: Vec<KeyRow> = map
        .map
        .iter()
        .map(|(k, c)| row(k, c))
        .chain(
            extra
                .iter()
                .filter(|(_, c)| c.requests > 0)
                .map(|(k, c)| row(k, c)),
        )
        .collect();
    if map.overflowed > 0 {
        rows.push(row(b"(other)", &map.other));
    }
    rows.sort_by(|a, b| {
        b.status_503
            .cmp(&a.status_503)
            .then(b.requests.cmp(&a.requests))
            .then_with(|| a.key.cmp(&b.key))
    });
    rows.truncate(TOP);
    rows
}

impl Report {
    pub fn build(stats: &Stats, inputs: &[String]) -> Report {
        let mut status: Vec<StatusRow> = stats
            .status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| StatusRow {
                code: c as u16,
                count: *n,
            })
            .collect();
        status.sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(&b.code)));
        let mut flags: Vec<FlagRow> = FLAGS
            .iter()
            .zip(stats.flags.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| FlagRow {
                flag: f.short,
                meaning: f.meaning,
                count: *n,
            })
            .collect();
        if stats.unknown_flags > 0 {
            flags.push(FlagRow {
                flag: "?",
                meaning: "a flag this version does not know",
                count: stats.unknown_flags,
            });
        }
        flags.sort_by(|a, b| b.count.cmp(&a.count).then(a.flag.cmp(b.flag)));
        let mut status_flags: Vec<StatusFlagRow> = stats
            .status_flags
            .map
            .iter()
            .map(|((c, f), n)| StatusFlagRow {
                code: *c,
                flags: f.render(),
                count: *n,
            })
            .chain(
                stats
                    .status_unflagged
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(c, n)| StatusFlagRow {
                        code: c as u16,
                        flags: "-".to_string(),
                        count: *n,
                    }),
            )
            .collect();
        status_flags.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.code.cmp(&b.code))
                .then_with(|| a.flags.cmp(&b.flags))
        });
        status_flags.truncate(TOP);
        let mut clusters: Vec<ClusterRow> = stats
            .clusters
            .map
            .iter()
            .map(|(k, c)| (lossy(k), c))
            .chain(
                (stats.clusters.overflowed > 0)
                    .then(|| ("(other)".to_string(), &stats.clusters.other)),
            )
            .map(|(name, c)| ClusterRow {
                name: ClusterName::parse(&name),
                cluster: name,
                requests: c.counts.requests,
                answered: c.counts.answered,
                status_5xx: c.counts.s5xx,
                status_503: c.counts.s503,
                uc_503: c.uc503,
                connection_failure_503: c.connfail503,
                flags_503: FLAGS
                    .iter()
                    .zip(c.flags503.iter())
                    .filter(|(_, n)| **n > 0)
                    .map(|(f, n)| (f.short.to_string(), *n))
                    .collect(),
            })
            .collect();
        clusters.sort_by(|a, b| {
            b.status_503
                .cmp(&a.status_503)
                .then(b.requests.cmp(&a.requests))
                .then_with(|| a.cluster.cmp(&b.cluster))
        });
        clusters.truncate(TOP);
        let timeline = stats
            .timeline
            .buckets
            .iter()
            .map(|(k, b)| BucketRow {
                start: format_secs(*k),
                requests: b.requests,
                status_503: b.s503,
                uc_503: b.uc503,
                connection_failure_503: b.connfail503,
            })
            .collect();
        Report {
            inputs: inputs.to_vec(),
            lines: stats.lines,
            records: stats.records,
            json_records: stats.json_records,
            blank_lines: stats.blank,
            proxy_log_lines: stats.non_access,
            malformed: Malformed {
                count: stats.malformed,
                first: stats
                    .malformed_at
                    .iter()
                    .map(|l| {
                        format!(
                            "{}:{}",
                            inputs.get(l.input).map_or("?", String::as_str),
                            l.line
                        )
                    })
                    .collect(),
            },
            time: TimeRange {
                first: stats.first_ts.map(format_secs),
                last: stats.last_ts.map(format_secs),
                bucket_seconds: stats.bucket_secs,
                untimed_records: stats.untimed,
            },
            status,
            flags,
            status_flags,
            clusters,
            authorities: key_rows(&stats.authorities, &[]),
            methods: key_rows(
                &stats.methods,
                &METHODS
                    .iter()
                    .zip(stats.methods_known.iter())
                    .map(|(m, c)| (*m, *c))
                    .collect::<Vec<_>>(),
            ),
            timeline,
            diagnoses: diagnose::diagnose(stats),
            cannot_tell: diagnose::cannot_tell(stats),
            overflow: Overflow {
                clusters: stats.clusters.overflowed,
                authorities: stats.authorities.overflowed,
                methods: stats.methods.overflowed,
                status_flags: stats.status_flags.overflowed,
            },
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The table for people.
    pub fn to_table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} lines: {} records ({} JSON), {} malformed, {} proxy log lines, {} blank",
            self.lines,
            self.records,
            self.json_records,
            self.malformed.count,
            self.proxy_log_lines,
            self.blank_lines
        );
        if !self.malformed.first.is_empty() {
            let _ = writeln!(o, "  first malformed: {}", self.malformed.first.join(", "));
        }
        if let (Some(f), Some(l)) = (&self.time.first, &self.time.last) {
            let _ = writeln!(
                o,
                "time: {f} .. {l} (buckets of {}s)",
                self.time.bucket_seconds
            );
        }
        let _ = writeln!(o, "\nSTATUS  FLAGS        COUNT");
        for r in &self.status_flags {
            let _ = writeln!(o, "{:<7} {:<12} {}", r.code, r.flags, r.count);
        }
        if !self.flags.is_empty() {
            let _ = writeln!(o, "\nFLAG   COUNT      MEANING");
            for r in &self.flags {
                let _ = writeln!(o, "{:<6} {:<10} {}", r.flag, r.count, r.meaning);
            }
        }
        let _ = writeln!(
            o,
            "\nCLUSTER                                                   REQUESTS   503    UC  CONNFAIL  FLAGS(503)"
        );
        for c in &self.clusters {
            let flags: Vec<String> = c
                .flags_503
                .iter()
                .map(|(f, n)| format!("{f}:{n}"))
                .collect();
            let _ = writeln!(
                o,
                "{:<57} {:>9} {:>5} {:>5} {:>9}  {}",
                c.cluster,
                c.requests,
                c.status_503,
                c.uc_503,
                c.connection_failure_503,
                flags.join(" ")
            );
        }
        for (title, rows) in [("AUTHORITY", &self.authorities), ("METHOD", &self.methods)] {
            let _ = writeln!(o, "\n{title:<45} REQUESTS   5XX   503");
            for r in rows.iter() {
                let _ = writeln!(
                    o,
                    "{:<45} {:>8} {:>5} {:>5}",
                    r.key, r.requests, r.status_5xx, r.status_503
                );
            }
        }
        let _ = writeln!(o, "\nDIAGNOSES");
        if self.diagnoses.is_empty() {
            let _ = writeln!(o, "  none: no 503 pattern matched one of the six causes");
        }
        for d in &self.diagnoses {
            let _ = writeln!(o, "  {} [{:?}] {}", d.code, d.confidence, d.cluster);
            let _ = writeln!(o, "    scenario: {}", d.scenario);
            let _ = writeln!(o, "    why: {}", d.why);
            for w in d.evidence.windows.iter().take(3) {
                let _ = writeln!(
                    o,
                    "    burst: {} .. {} ({} failures)",
                    w.start, w.end, w.failures
                );
            }
            for (det, n) in &d.evidence.top_details {
                let _ = writeln!(o, "    503 details: {det} ({n})");
            }
        }
        let _ = writeln!(o, "\nCANNOT TELL FROM LOGS");
        for n in &self.cannot_tell {
            let _ = writeln!(o, "  - {n}");
        }
        let ov = &self.overflow;
        if ov.clusters + ov.authorities + ov.methods + ov.status_flags > 0 {
            let _ = writeln!(
                o,
                "\nkey caps reached; records counted as (other): clusters {}, authorities {}, methods {}, status/flags {}",
                ov.clusters, ov.authorities, ov.methods, ov.status_flags
            );
        }
        o
    }
}
