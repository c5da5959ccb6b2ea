//! Durations as Istio and Kubernetes write them (Go's `time.ParseDuration` format: `1h`, `30m`,
//! `1.5s`, `100ms`). Parsing is kube-core's; this module adds the checks Istio adds (no negative
//! values, no empty string) and a formatter that writes what Istio's CRD validation accepts.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative Go-format duration read from an Istio or meshmedic field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

/// Parses a Go-format duration, rejecting what Istio rejects: empty, negative, unknown units
/// (`1hh`), missing units (`30`).
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration; write it like 30s, 5m or 1h".to_string());
    }
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let parsed: kube::core::Duration = trimmed
        .parse()
        .map_err(|e| format!("invalid duration {text:?}: {e}"))?;
    if parsed.is_negative() {
        return Err(format!("invalid duration {text:?}: negative"));
    }
    Ok(parsed.into())
}

/// Writes a duration the way a person would (`75s`, `67500ms`), in a form that both Go's
/// `time.ParseDuration` and Istio's CEL `duration()` accept.
pub fn format(d: Duration) -> String {
    let millis = d.as_millis();
    if millis.is_multiple_of(1000) {
        let secs = millis / 1000;
        if secs != 0 && secs.is_multiple_of(3600) {
            format!("{}h", secs / 3600)
        } else if secs != 0 && secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    } else {
        format!("{millis}ms")
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text)
            .map(GoDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_what_istio_rejects() {
        for bad in ["1hh", "30", "", "-5s", "abc", "5 s"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_round_trip() {
        for d in [1, 59, 60, 61, 3600, 5400, 67] {
            let d = Duration::from_secs(d);
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
        assert_eq!(format(Duration::from_millis(67500)), "67500ms");
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_secs(90)), "90s");
    }
}
