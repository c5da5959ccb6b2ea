//! From counts to meshmedic finding codes: the rules that map what access logs show to the
//! seed's scenarios (Alibaba Cloud ASM, "Troubleshoot HTTP 503 status codes in ASM").
//!
//! Terms, per upstream cluster:
//! - *UC 503*: status 503 with flag `UC`, or details `…{connection_termination}`, and no connection
//!   failure: the upstream closed a connection the proxy was using.
//! - *connection-failure 503*: status 503 with `UF` or `UH`, or details containing
//!   `connection_failure` / `connect_error` (e.g.
//!   `upstream_reset_before_response_started{connection_failure,delayed_connect_error:_111}`);
//!   *refused* when the details or transport failure reason say `refused` / errno 111.
//! - *answered*: status 100..=499, i.e. the application replied.
//! - *timing*: the cluster's time buckets (default 1 minute) that saw any request are its *active*
//!   buckets; a bucket is *hot* when it holds at least max(3, 4 × the mean per active bucket)
//!   failures. Failures are *bursty* when hot buckets hold ≥70% of them, *steady* when hot
//!   buckets hold <50% and failures show in ≥3 buckets. With fewer than 4 active buckets the
//!   timing is *unknown*. A *window* is a run of consecutive hot buckets.
//!
//! Rules (each needs at least [`MIN_EVENTS`] matching 503s on the cluster):
//! 1. `idle-timeout-mismatch`: UC 503s, steady. High confidence on an inbound cluster (the hop the
//!    seed names), medium on outbound; low when timing is unknown.
//! 2. `listener-change-503`: UC 503s, bursty. High when another cluster has a UC burst in the same
//!    bucket (a listener rewrite resets connections of many clusters at once), else medium.
//! 3. `missing-reset-retry`: with either of the above: these 503s reached the client, which a
//!    `retryOn` with `reset` would have retried. High on an outbound cluster whose UC 503s carry
//!    no `URX` (the client's policy did not retry them at all), else medium.
//! 4. `sidecar-lifecycle`: connection-failure 503s, bursty, with the app answering ≥50% of the
//!    cluster's requests and answering again after the last window. High with ≥2 windows
//!    (restarts), medium with one.
//! 5. `localhost-binding`: connection-failure 503s making ≥50% of the cluster's requests, the app
//!    answering ≤5%, not bursty. High when refused and on an inbound cluster, else medium.
//! 6. `mtls-probe-failure` (low, a hint only): 503 `UH` with ≤5% answered (no endpoint is ready,
//!    which failing probes cause), or connections closed with `NR filter_chain_not_found`
//!    (plain-text clients on an mTLS-STRICT port). Kubelet probes themselves never appear in
//!    access logs.
//!
//! What access logs cannot tell is listed by [`cannot_tell`].

use serde::Serialize;

use super::cluster::{ClusterName, Direction};
use super::flags;
use super::stats::{ClusterStats, Series, Stats};
use super::time::format_secs;

/// Fewest matching 503s on a cluster before a rule fires.
pub const MIN_EVENTS: u64 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

/// A window of consecutive hot buckets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: String,
    pub end: String,
    pub failures: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Timing {
    Steady,
    Bursty,
    Mixed,
    Unknown,
}

/// The evidence behind a diagnosis.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub requests: u64,
    pub answered: u64,
    pub status_503: u64,
    pub uc_503: u64,
    pub connection_failure_503: u64,
    pub refused_503: u64,
    pub timing: Timing,
    pub active_buckets: usize,
    pub buckets_with_failures: usize,
    pub hot_share: f64,
    pub windows: Vec<Window>,
    pub top_details: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    pub code: &'static str,
    pub scenario: &'static str,
    pub confidence: Confidence,
    pub cluster: String,
    #[serde(flatten)]
    pub name: ClusterName,
    pub why: String,
    pub evidence: Evidence,
}

const SC_IDLE: &str = "Intermittent 503 from idle connection timeout mismatch";
const SC_LISTENER: &str = "Brief 503 spike after a metric customization config change";
const SC_LIFECYCLE: &str =
    "Intermittent 503 during pod restarts due to sidecar lifecycle misconfiguration";
const SC_LOCALHOST: &str = "Application listening on localhost";
const SC_MTLS: &str = "Health check failure after enabling mTLS";
const SC_RETRY: &str = "Retry policy without reset (remedy of the UC scenarios)";

const MAX_WINDOWS: usize = 10;

/// How one kind of failure is spread over a cluster's buckets.
struct Spread {
    timing: Timing,
    active: usize,
    with_failures: usize,
    hot_share: f64,
    /// (start, end, failures, last bucket index) of each window.
    windows: Vec<(i64, i64, u64)>,
    hot_buckets: Vec<i64>,
    answered_after_last_window: bool,
}

fn spread(series: Option<&Series>, width: i64, pick: fn(&super::stats::Bucket) -> u32) -> Spread {
    let empty = Spread {
        timing: Timing::Unknown,
        active: 0,
        with_failures: 0,
        hot_share: 0.0,
        windows: Vec::new(),
        hot_buckets: Vec::new(),
        answered_after_last_window: false,
    };
    let Some(series) = series else { return empty };
    let b = &series.buckets;
    let active = b.iter().filter(|(_, x)| x.requests > 0).count();
    let total: u64 = b.iter().map(|(_, x)| u64::from(pick(x))).sum();
    let with_failures = b.iter().filter(|(_, x)| pick(x) > 0).count();
    if active == 0 || total == 0 {
        return Spread { active, ..empty };
    }
    let mean = total as f64 / active as f64;
    let hot_min = (4.0 * mean).ceil().max(3.0) as u64;
    let mut hot_sum = 0u64;
    let mut windows: Vec<(i64, i64, u64)> = Vec::new();
    let mut hot_buckets = Vec::new();
    let mut last_hot_idx = None;
    for (i, (k, x)) in b.iter().enumerate() {
        let n = u64::from(pick(x));
        if n < hot_min {
            continue;
        }
        hot_sum += n;
        hot_buckets.push(*k);
        // Consecutive in time (neighbouring bucket starts) extends the window.
        match windows.last_mut() {
            Some(w) if *k - w.1 <= width => {
                w.1 = *k;
                w.2 += n;
            }
            _ => windows.push((*k, *k, n)),
        }
        last_hot_idx = Some(i);
    }
    let hot_share = hot_sum as f64 / total as f64;
    let answered_after_last_window = match last_hot_idx {
        Some(i) => b[i + 1..].iter().any(|(_, x)| x.answered > 0),
        None => false,
    };
    let timing = if active < 4 {
        Timing::Unknown
    } else if hot_share >= 0.7 {
        Timing::Bursty
    } else if hot_share < 0.5 && with_failures >= 3 {
        Timing::Steady
    } else {
        Timing::Mixed
    };
    Spread {
        timing,
        active,
        with_failures,
        hot_share,
        windows,
        hot_buckets,
        answered_after_last_window,
    }
}

fn evidence(cs: &ClusterStats, sp: &Spread, width: i64) -> Evidence {
    let mut details: Vec<(String, u64)> = cs
        .details503
        .iter()
        .map(|(d, n)| (String::from_utf8_lossy(d).into_owned(), *n))
        .collect();
    details.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    details.truncate(3);
    Evidence {
        requests: cs.counts.requests,
        answered: cs.counts.answered,
        status_503: cs.counts.s503,
        uc_503: cs.uc503,
        connection_failure_503: cs.connfail503,
        refused_503: cs.refused503,
        timing: sp.timing,
        active_buckets: sp.active,
        buckets_with_failures: sp.with_failures,
        hot_share: (sp.hot_share * 1000.0).round() / 1000.0,
        windows: sp
            .windows
            .iter()
            .take(MAX_WINDOWS)
            .map(|&(s, e, n)| Window {
                start: format_secs(s),
                end: format_secs(e + width),
                failures: n,
            })
            .collect(),
        top_details: details,
    }
}

/// Diagnose every cluster. Ordered by cluster 503 count (descending), then cluster name, then the
/// rule order above, so output is deterministic.
pub fn diagnose(stats: &Stats) -> Vec<Diagnosis> {
    let width = stats.bucket_secs;
    let mut clusters: Vec<(&[u8], &ClusterStats)> = stats
        .clusters
        .map
        .iter()
        .map(|(k, v)| (&**k, v))
        .filter(|(_, v)| v.counts.s503 > 0)
        .collect();
    clusters.sort_by(|a, b| {
        b.1.counts
            .s503
            .cmp(&a.1.counts.s503)
            .then_with(|| a.0.cmp(b.0))
    });

    // Buckets holding a UC burst, per cluster, to spot bursts shared across clusters.
    let uc_spreads: Vec<Spread> = clusters
        .iter()
        .map(|(_, cs)| spread(cs.series.as_deref(), width, |b| b.uc503))
        .collect();

    let mut out = Vec::new();
    for (ci, (raw, cs)) in clusters.iter().enumerate() {
        let raw = String::from_utf8_lossy(raw).into_owned();
        let name = ClusterName::parse(&raw);
        let label = if raw.is_empty() {
            "(no cluster)".to_string()
        } else {
            raw.clone()
        };
        let inbound = name.direction == Direction::Inbound;
        let answered_ratio = cs.counts.answered as f64 / cs.counts.requests.max(1) as f64;
        let mut push = |code, scenario, confidence, why: String, ev: Evidence| {
            out.push(Diagnosis {
                code,
                scenario,
                confidence,
                cluster: label.clone(),
                name: name.clone(),
                why,
                evidence: ev,
            })
        };

        // UC rules.
        let uc = &uc_spreads[ci];
        if cs.uc503 >= MIN_EVENTS {
            let ev = evidence(cs, uc, width);
            match uc.timing {
                Timing::Steady | Timing::Unknown | Timing::Mixed => {
                    let conf = match (uc.timing, inbound) {
                        (Timing::Unknown | Timing::Mixed, _) => Confidence::Low,
                        (_, true) => Confidence::High,
                        (_, false) => Confidence::Medium,
                    };
                    let why = format!(
                        "{} of {} requests failed with 503 UC (upstream closed the connection) spread over {} of {} active buckets{}; the app's keep-alive idle timeout is likely shorter than the proxy's (1h by default){}",
                        cs.uc503,
                        cs.counts.requests,
                        uc.with_failures,
                        uc.active,
                        match uc.timing {
                            Timing::Unknown => " (too short a log to tell steady from a burst)",
                            Timing::Mixed => " (partly in bursts: see also listener-change-503)",
                            _ => "",
                        },
                        if inbound {
                            ""
                        } else {
                            "; seen on the client side: check the server's inbound cluster"
                        },
                    );
                    push("idle-timeout-mismatch", SC_IDLE, conf, why, ev.clone());
                }
                Timing::Bursty => {
                    let shared = uc_spreads.iter().enumerate().any(|(j, o)| {
                        j != ci && o.hot_buckets.iter().any(|k| uc.hot_buckets.contains(k))
                    });
                    let conf = if shared {
                        Confidence::High
                    } else {
                        Confidence::Medium
                    };
                    let why = format!(
                        "{} 503 UC in {} short window(s) ({:.0}% of them in hot buckets){}: in-flight requests reset at once, as when a listener is rewritten over LDS (e.g. an EnvoyFilter/Telemetry change to istio.stats); a restart of the upstream can look the same",
                        cs.uc503,
                        uc.windows.len(),
                        uc.hot_share * 100.0,
                        if shared {
                            ", at the same time as a UC burst on another cluster"
                        } else {
                            ""
                        },
                    );
                    push("listener-change-503", SC_LISTENER, conf, why, ev.clone());
                }
            }
            {
                let urx = cs.uc_urx503;
                let outbound = name.direction == Direction::Outbound;
                let conf = if outbound && urx == 0 {
                    Confidence::High
                } else {
                    Confidence::Medium
                };
                let why = format!(
                    "{} 503 UC reached the caller; a connection reset matches only retryOn `reset` (not `503`), which Istio's default retry policy lacks{}",
                    cs.uc503,
                    if outbound && urx == 0 {
                        "; none was retried (no URX)"
                    } else {
                        ""
                    },
                );
                push("missing-reset-retry", SC_RETRY, conf, why, ev);
            }
        }

        // Connection-failure rules.
        if cs.connfail503 >= MIN_EVENTS {
            let cf = spread(cs.series.as_deref(), width, |b| b.connfail503);
            let ev = evidence(cs, &cf, width);
            let share = cs.connfail503 as f64 / cs.counts.requests.max(1) as f64;
            if cf.timing == Timing::Bursty && answered_ratio >= 0.5 && cf.answered_after_last_window
            {
                let conf = if cf.windows.len() >= 2 {
                    Confidence::High
                } else {
                    Confidence::Medium
                };
                let why = format!(
                    "{} connection-failure 503s in {} burst(s) while the app answered {:.0}% of requests and recovered after each: the proxy was not ready, or already gone, while the app was (pod start/stop)",
                    cs.connfail503,
                    cf.windows.len(),
                    answered_ratio * 100.0,
                );
                push("sidecar-lifecycle", SC_LIFECYCLE, conf, why, ev);
            } else if share >= 0.5 && answered_ratio <= 0.05 && cf.timing != Timing::Bursty {
                let conf = if cs.refused503 > 0 && inbound {
                    Confidence::High
                } else {
                    Confidence::Medium
                };
                let why = format!(
                    "{} of {} requests failed to connect ({} refused) and only {} were answered, throughout the log: nothing accepts connections on the pod IP, as when the app listens on 127.0.0.1 only{}",
                    cs.connfail503,
                    cs.counts.requests,
                    cs.refused503,
                    cs.counts.answered,
                    if inbound {
                        ""
                    } else {
                        " (client side: the server's inbound log would show UF, connection refused)"
                    },
                );
                push("localhost-binding", SC_LOCALHOST, conf, why, ev);
            }
            let uh = cs.flags503[flags::lookup(b"UH").unwrap_or(0)];
            if uh >= MIN_EVENTS && answered_ratio <= 0.05 {
                let why = format!(
                    "{uh} 503 UH (no healthy upstream) with almost nothing answered: no endpoint is ready; failing readiness probes (e.g. kubelet probes on an mTLS-STRICT port without probe rewrite) do this, as does a service scaled to zero"
                );
                push(
                    "mtls-probe-failure",
                    SC_MTLS,
                    Confidence::Low,
                    why,
                    evidence(cs, &cf, width),
                );
            }
        }
    }
    out
}

/// What access logs cannot show, plus notes on what was seen but is outside the six causes.
pub fn cannot_tell(stats: &Stats) -> Vec<String> {
    let mut v = vec![
        "Kubelet probes never reach the access log under mTLS STRICT (the TLS handshake fails before any HTTP request): a `mtls-probe-failure` is confirmed by `meshmedic analyze` and pod events, not by these logs.".to_string(),
        "Logs show symptoms, not configuration: confirm each diagnosis with `meshmedic analyze` (idle timeouts, retry policies, pod lifecycle settings, bind addresses).".to_string(),
        "A log is one proxy's view: a 503 on a client's outbound cluster may have been produced by the server's sidecar, whose inbound log holds the cause.".to_string(),
        "Only the final attempt of a retried request is logged; URX means the retries ran out.".to_string(),
        "An app that starts before its proxy fails its own outbound calls before they reach Envoy, so those never appear here; only bursts on the callers' side or in the app's own logs show that half of `sidecar-lifecycle`.".to_string(),
    ];
    let get = |short: &str| flags::lookup(short.as_bytes()).map_or(0, |i| stats.flags[i]);
    let nr = get("NR");
    if nr > 0 {
        v.push(format!("{nr} request(s) had NR (no route, or no filter chain): a routing or port-naming problem, not one of the six causes."));
    }
    if stats.filter_chain_not_found > 0 {
        v.push(format!(
            "{} connection(s) matched no filter chain (filter_chain_not_found): plain-text clients on an mTLS-STRICT port; if these are kubelet probes, see `mtls-probe-failure`.",
            stats.filter_chain_not_found
        ));
    }
    let uo = get("UO");
    if uo > 0 {
        v.push(format!("{uo} request(s) had UO (circuit breaking / overflow): a connection-pool limit, not one of the six causes."));
    }
    let ut = get("UT");
    if ut > 0 {
        v.push(format!("{ut} request(s) had UT (upstream request timeout, 504): a route timeout, not one of the six causes."));
    }
    if stats.untimed > 0 {
        v.push(format!(
            "{} record(s) had no usable START_TIME: counted, but not in any time bucket.",
            stats.untimed
        ));
    }
    v
}
