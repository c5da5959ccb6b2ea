//! Prometheus evidence: 503 counts per (destination service, response flag, reporter), from the
//! Prometheus HTTP API or from a sidecar's merged metrics (`:15020/stats/prometheus`).
//!
//! Pure parsers plus one async fetch; every failure is an [`PromError`] value, never a panic, so
//! the operator can report "Prometheus unreachable" and carry on.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

/// 503 count for one (destination service, response flags, reporter).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlagCount {
    pub destination_service: String,
    pub response_flags: String,
    /// `source` (client sidecar) or `destination` (server sidecar).
    pub reporter: String,
    pub value: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("invalid URL {0:?}: {1}")]
    InvalidUrl(String, String),
    #[error("only http:// URLs are supported, got {0:?}")]
    UnsupportedScheme(String),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("request to {0} failed: {1}")]
    Http(String, String),
    #[error("{0} answered HTTP {1}: {2}")]
    Status(String, u16, String),
    #[error("Prometheus query failed ({0}): {1}")]
    Api(String, String),
    #[error("cannot parse the answer: {0}")]
    Parse(String),
}

/// The PromQL query for 503s by flag over a window such as `1h`.
pub fn query_503_by_flag(window: &str) -> String {
    format!(
        "sum by (response_flags, destination_service, reporter) (increase(istio_requests_total{{response_code=\"503\"}}[{window}]))"
    )
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<ApiSample>,
}

#[derive(Deserialize)]
struct ApiSample {
    metric: BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

fn label(m: &BTreeMap<String, String>, k: &str) -> String {
    m.get(k).cloned().unwrap_or_else(|| "unknown".to_string())
}

fn sorted(mut v: Vec<FlagCount>) -> Vec<FlagCount> {
    v.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.destination_service.cmp(&b.destination_service))
            .then_with(|| a.response_flags.cmp(&b.response_flags))
            .then_with(|| a.reporter.cmp(&b.reporter))
    });
    v
}

/// Parse an instant-query answer (`resultType: vector`) of [`query_503_by_flag`].
pub fn parse_query_response(body: &[u8]) -> Result<Vec<FlagCount>, PromError> {
    let r: ApiResponse =
        serde_json::from_slice(body).map_err(|e| PromError::Parse(e.to_string()))?;
    if r.status != "success" {
        return Err(PromError::Api(
            r.error_type.unwrap_or_else(|| r.status.clone()),
            r.error.unwrap_or_default(),
        ));
    }
    let data = r.data.ok_or_else(|| PromError::Parse("no data".into()))?;
    if data.result_type != "vector" {
        return Err(PromError::Parse(format!(
            "expected a vector, got {}",
            data.result_type
        )));
    }
    let mut out = Vec::with_capacity(data.result.len());
    for s in data.result {
        let value: f64 = s
            .value
            .1
            .parse()
            .map_err(|_| PromError::Parse(format!("bad sample value {:?}", s.value.1)))?;
        out.push(FlagCount {
            destination_service: label(&s.metric, "destination_service"),
            response_flags: label(&s.metric, "response_flags"),
            reporter: label(&s.metric, "reporter"),
            value,
        });
    }
    Ok(sorted(out))
}

/// Labels and value of one exposition sample line; `None` when the line is not a sample.
fn parse_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut end = None;
        loop {
            while chars
                .next_if(|(_, c)| c.is_whitespace() || *c == ',')
                .is_some()
            {}
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(i + 1);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
                key.push(c);
            }
            chars.next_if(|(_, c)| *c == '=')?;
            chars.next_if(|(_, c)| *c == '"')?;
            let mut val = String::new();
            loop {
                match chars.next()? {
                    (_, '"') => break,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => val.push('\n'),
                        c => val.push(c),
                    },
                    (_, c) => val.push(c),
                }
            }
            labels.insert(key.trim().to_string(), val);
        }
        rest = &r[end?..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// Sum `istio_requests_total` samples with `response_code` = `code` from Prometheus text
/// exposition. These are counters since the proxy started, not an increase over a window.
/// Returns the counts and the number of lines that could not be read.
pub fn parse_exposition(text: &str, code: &str) -> (Vec<FlagCount>, usize) {
    let mut sums: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    let mut bad = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.starts_with("istio_requests_total") {
            continue;
        }
        let Some((name, labels, value)) = parse_sample(line) else {
            bad += 1;
            continue;
        };
        if name != "istio_requests_total"
            || labels.get("response_code").map(String::as_str) != Some(code)
        {
            continue;
        }
        *sums
            .entry((
                label(&labels, "destination_service"),
                label(&labels, "response_flags"),
                label(&labels, "reporter"),
            ))
            .or_default() += value;
    }
    let v = sums
        .into_iter()
        .map(
            |((destination_service, response_flags, reporter), value)| FlagCount {
                destination_service,
                response_flags,
                reporter,
                value,
            },
        )
        .collect();
    (sorted(v), bad)
}

/// Percent-encode a query-string value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Largest body read; a Prometheus answer or a sidecar's metrics are far smaller.
const MAX_BODY: usize = 64 << 20;

/// GET a URL (http only) within `timeout`; the body of a 2xx answer.
pub async fn fetch(url: &str, timeout: Duration) -> Result<Bytes, PromError> {
    let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| {
        PromError::InvalidUrl(url.into(), e.to_string())
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        other => {
            return Err(PromError::UnsupportedScheme(
                other.unwrap_or("").to_string(),
            ));
        }
    }
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let work = async {
        let resp = client
            .get(uri)
            .await
            .map_err(|e| PromError::Http(url.into(), e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| PromError::Http(url.into(), e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(PromError::Status(url.into(), status.as_u16(), snippet));
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| PromError::Timeout(url.into(), timeout))?
}

/// Ask a Prometheus server (e.g. `http://prometheus.istio-system:9090`) for 503s by flag over
/// `window` (e.g. `1h`).
pub async fn query_prometheus(
    base: &str,
    window: &str,
    timeout: Duration,
) -> Result<Vec<FlagCount>, PromError> {
    let url = format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        encode(&query_503_by_flag(window))
    );
    let body = fetch(&url, timeout).await?;
    parse_query_response(&body)
}

/// Read a sidecar's merged metrics (e.g. `http://10.0.0.5:15020/stats/prometheus`).
pub async fn scrape_sidecar(url: &str, timeout: Duration) -> Result<Vec<FlagCount>, PromError> {
    let body = fetch(url, timeout).await?;
    let text = String::from_utf8_lossy(&body);
    Ok(parse_exposition(&text, "503").0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_text_and_encoding() {
        assert!(query_503_by_flag("1h").contains("[1h]"));
        assert_eq!(encode("a b{c=\"5\"}"), "a%20b%7Bc%3D%225%22%7D");
    }

    #[test]
    fn sample_lines() {
        let (n, l, v) = parse_sample(r#"istio_requests_total{a="x\"y",b="1"} 3 1700000000000"#)
            .expect("sample");
        assert_eq!((n, v), ("istio_requests_total", 3.0));
        assert_eq!(l.get("a").map(String::as_str), Some("x\"y"));
        assert!(parse_sample(r#"istio_requests_total{a="x} 3"#).is_none());
        assert!(parse_sample("istio_requests_total 1").is_some());
    }
}
