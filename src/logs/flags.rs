//! Envoy response flags (`%RESPONSE_FLAGS%`, or `%RESPONSE_FLAGS_LONG%`), as a bit set.
//!
//! A flags field is `-` when empty, or several codes joined by commas (`UF,URX`). Short codes and
//! long names follow Envoy's access-log documentation; a code Envoy adds later is kept as
//! "unknown" (counted, never fatal).

/// One known response flag: short code, long name, one-line meaning.
pub struct FlagInfo {
    pub short: &'static str,
    pub long: &'static str,
    pub meaning: &'static str,
}

/// Every flag Envoy documents, in a fixed order: a flag's bit is its index here.
pub const FLAGS: &[FlagInfo] = &[
    FlagInfo {
        short: "UH",
        long: "NoHealthyUpstream",
        meaning: "no healthy upstream host",
    },
    FlagInfo {
        short: "UF",
        long: "UpstreamConnectionFailure",
        meaning: "upstream connection failure",
    },
    FlagInfo {
        short: "UO",
        long: "UpstreamOverflow",
        meaning: "upstream overflow (circuit breaking)",
    },
    FlagInfo {
        short: "NR",
        long: "NoRouteFound",
        meaning: "no route or no matching filter chain",
    },
    FlagInfo {
        short: "URX",
        long: "UpstreamRetryLimitExceeded",
        meaning: "upstream retry limit exceeded",
    },
    FlagInfo {
        short: "NC",
        long: "NoClusterFound",
        meaning: "upstream cluster not found",
    },
    FlagInfo {
        short: "DT",
        long: "DurationTimeout",
        meaning: "max stream/connection duration reached",
    },
    FlagInfo {
        short: "DC",
        long: "DownstreamConnectionTermination",
        meaning: "downstream connection termination",
    },
    FlagInfo {
        short: "LH",
        long: "FailedLocalHealthCheck",
        meaning: "local service failed health check",
    },
    FlagInfo {
        short: "UT",
        long: "UpstreamRequestTimeout",
        meaning: "upstream request timeout",
    },
    FlagInfo {
        short: "LR",
        long: "LocalReset",
        meaning: "connection local reset",
    },
    FlagInfo {
        short: "UR",
        long: "UpstreamRemoteReset",
        meaning: "upstream remote reset",
    },
    FlagInfo {
        short: "UC",
        long: "UpstreamConnectionTermination",
        meaning: "upstream connection termination",
    },
    FlagInfo {
        short: "DI",
        long: "DelayInjected",
        meaning: "delay injected by fault injection",
    },
    FlagInfo {
        short: "FI",
        long: "FaultInjected",
        meaning: "aborted by fault injection",
    },
    FlagInfo {
        short: "RL",
        long: "RateLimited",
        meaning: "rate limited locally",
    },
    FlagInfo {
        short: "UAEX",
        long: "UnauthorizedExternalService",
        meaning: "denied by external authorization",
    },
    FlagInfo {
        short: "RLSE",
        long: "RateLimitServiceError",
        meaning: "rate limit service error",
    },
    FlagInfo {
        short: "IH",
        long: "InvalidEnvoyRequestHeaders",
        meaning: "invalid x-envoy-* request header",
    },
    FlagInfo {
        short: "SI",
        long: "StreamIdleTimeout",
        meaning: "stream idle timeout",
    },
    FlagInfo {
        short: "DPE",
        long: "DownstreamProtocolError",
        meaning: "downstream HTTP protocol error",
    },
    FlagInfo {
        short: "UPE",
        long: "UpstreamProtocolError",
        meaning: "upstream HTTP protocol error",
    },
    FlagInfo {
        short: "UMSDR",
        long: "UpstreamMaxStreamDurationReached",
        meaning: "upstream max stream duration reached",
    },
    FlagInfo {
        short: "RFCF",
        long: "ResponseFromCacheFilter",
        meaning: "response served from cache",
    },
    FlagInfo {
        short: "NFCF",
        long: "NoFilterConfigFound",
        meaning: "no filter config found (ECDS)",
    },
    FlagInfo {
        short: "OM",
        long: "OverloadManagerTerminated",
        meaning: "terminated by the overload manager",
    },
    FlagInfo {
        short: "DF",
        long: "DnsResolutionFailed",
        meaning: "DNS resolution failed",
    },
    FlagInfo {
        short: "DO",
        long: "DropOverload",
        meaning: "dropped by drop_overload",
    },
    FlagInfo {
        short: "DR",
        long: "DownstreamRemoteReset",
        meaning: "downstream remote reset",
    },
    FlagInfo {
        short: "UDO",
        long: "UnconditionalDropOverload",
        meaning: "dropped unconditionally by drop_overload",
    },
];

/// Number of known flags; the bit set holds them in a `u32`.
pub const N_FLAGS: usize = FLAGS.len();
const _: () = assert!(N_FLAGS <= 32);

/// A set of known flags, plus whether the field held a code this table does not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlagSet {
    pub bits: u32,
    pub unknown: bool,
}

/// Bit of a known flag by short code; `const` so the rules read as flag names.
pub const fn bit(short: &str) -> u32 {
    let mut i = 0;
    while i < FLAGS.len() {
        if const_eq(FLAGS[i].short.as_bytes(), short.as_bytes()) {
            return 1 << i;
        }
        i += 1;
    }
    panic!("unknown flag in a constant")
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

pub const UC: u32 = bit("UC");
pub const UF: u32 = bit("UF");
pub const URX: u32 = bit("URX");
pub const UH: u32 = bit("UH");
pub const NR: u32 = bit("NR");
pub const UO: u32 = bit("UO");
pub const UR: u32 = bit("UR");
pub const LR: u32 = bit("LR");
pub const DC: u32 = bit("DC");

impl FlagSet {
    /// Parse a flags field. `-` and the empty string are the empty set.
    pub fn parse(field: &[u8]) -> FlagSet {
        let mut set = FlagSet::default();
        // Fast path: most lines carry `-` or one short code.
        if field.is_empty() || field == b"-" {
            return set;
        }
        for code in field.split(|&b| b == b',') {
            let code = trim_ascii(code);
            if code.is_empty() {
                continue;
            }
            match lookup(code) {
                Some(i) => set.bits |= 1 << i,
                None => set.unknown = true,
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0 && !self.unknown
    }

    pub fn has(&self, bits: u32) -> bool {
        self.bits & bits != 0
    }

    /// Short codes of the set, in table order, joined by commas; `-` when empty.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, f) in FLAGS.iter().enumerate() {
            if self.bits & (1 << i) != 0 {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(f.short);
            }
        }
        if self.unknown {
            if !out.is_empty() {
                out.push(',');
            }
            out.push('?');
        }
        if out.is_empty() {
            out.push('-');
        }
        out
    }
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// Index of a flag by short code or long name.
pub fn lookup(code: &[u8]) -> Option<usize> {
    FLAGS
        .iter()
        .position(|f| f.short.as_bytes() == code || f.long.as_bytes() == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_multiple_long_and_unknown() {
        assert!(FlagSet::parse(b"-").is_empty());
        assert_eq!(FlagSet::parse(b"UC").bits, UC);
        let s = FlagSet::parse(b"UF,URX");
        assert_eq!(s.bits, UF | URX);
        assert_eq!(s.render(), "UF,URX");
        assert_eq!(FlagSet::parse(b"UpstreamConnectionTermination").bits, UC);
        let u = FlagSet::parse(b"UC,ZZZ");
        assert!(u.unknown && u.has(UC));
        assert_eq!(u.render(), "UC,?");
        for f in FLAGS {
            assert_eq!(FlagSet::parse(f.short.as_bytes()).render(), f.short);
        }
    }
}
