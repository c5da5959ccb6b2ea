//! Streaming aggregation with bounded memory.
//!
//! Every map has a cap on distinct keys; a record whose key does not fit is counted under an
//! "other" entry, so totals stay exact while memory stays constant. Time series keep at most
//! `max_buckets` buckets: when a log spans more, the bucket width doubles and buckets merge.

use std::hash::Hash;

use hashbrown::HashMap;
use hashbrown::hash_map::{Entry, EntryRef};

use super::flags::{self, FlagSet, N_FLAGS};
use super::format::{Field, Record};
use super::time;

/// Caps on memory; the defaults keep a run well under 100 MiB whatever the input.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Distinct keys per map (clusters, authorities, methods, status/flag pairs).
    pub max_keys: usize,
    /// Clusters that keep a time series (the busiest first come; the rest only totals).
    pub max_series: usize,
    /// Buckets per time series before the width doubles.
    pub max_buckets: usize,
    /// Initial bucket width in seconds.
    pub bucket_secs: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_keys: 10_000,
            max_series: 1_000,
            max_buckets: 1_440,
            bucket_secs: 60,
        }
    }
}

/// A map with a cap on distinct keys; overflow goes to `other`.
#[derive(Clone, Debug)]
pub struct Bounded<K, V> {
    pub map: HashMap<K, V>,
    pub other: V,
    /// Records counted under `other` because the map was full.
    pub overflowed: u64,
    cap: usize,
}

impl<K: Eq + Hash, V: Default> Bounded<K, V> {
    pub fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            other: V::default(),
            overflowed: 0,
            cap,
        }
    }

    pub fn entry(&mut self, key: K) -> &mut V {
        let room = self.map.len() < self.cap;
        match self.map.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) if room => v.insert(V::default()),
            Entry::Vacant(_) => {
                self.overflowed += 1;
                &mut self.other
            }
        }
    }
}

impl<V: Default> Bounded<Box<[u8]>, V> {
    /// Look up by slice: one hash, and no allocation when the key exists.
    pub fn slot(&mut self, key: &[u8]) -> &mut V {
        let room = self.map.len() < self.cap;
        match self.map.entry_ref(key) {
            EntryRef::Occupied(o) => o.into_mut(),
            EntryRef::Vacant(v) if room => v.insert(V::default()),
            EntryRef::Vacant(_) => {
                self.overflowed += 1;
                &mut self.other
            }
        }
    }
}

/// Request counts in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub requests: u32,
    /// Answered by the app: status 100..=499.
    pub answered: u32,
    pub s503: u32,
    pub uc503: u32,
    pub connfail503: u32,
}

impl Bucket {
    fn add(&mut self, o: &Bucket) {
        self.requests += o.requests;
        self.answered += o.answered;
        self.s503 += o.s503;
        self.uc503 += o.uc503;
        self.connfail503 += o.connfail503;
    }
}

/// A time series: sorted (bucket start in Unix seconds, counts).
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub buckets: Vec<(i64, Bucket)>,
    last: usize,
}

impl Series {
    fn bump(&mut self, start: i64) -> &mut Bucket {
        if let Some((k, _)) = self.buckets.get(self.last)
            && *k == start
        {
            return &mut self.buckets[self.last].1;
        }
        let i = match self.buckets.binary_search_by_key(&start, |(k, _)| *k) {
            Ok(i) => i,
            Err(i) => {
                self.buckets.insert(i, (start, Bucket::default()));
                i
            }
        };
        self.last = i;
        &mut self.buckets[i].1
    }

    /// Re-key to a wider bucket, merging neighbours.
    fn rekey(&mut self, width: i64) {
        let mut out: Vec<(i64, Bucket)> = Vec::with_capacity(self.buckets.len() / 2 + 1);
        for (k, b) in self.buckets.drain(..) {
            let nk = k - k.rem_euclid(width);
            match out.last_mut() {
                Some((lk, lb)) if *lk == nk => lb.add(&b),
                _ => out.push((nk, b)),
            }
        }
        self.buckets = out;
        self.last = 0;
    }

    fn merge(&mut self, o: &Series) {
        for (k, b) in &o.buckets {
            self.bump(*k).add(b);
        }
    }
}

/// Counts for one key of a breakdown (authority, method).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub answered: u64,
    pub s5xx: u64,
    pub s503: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.answered += o.answered;
        self.s5xx += o.s5xx;
        self.s503 += o.s503;
    }
}

/// Everything seen for one upstream cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterStats {
    pub counts: Counts,
    pub uc503: u64,
    /// UC 503s that also carry URX: the caller did retry them.
    pub uc_urx503: u64,
    pub connfail503: u64,
    /// Connection failures whose details say the connection was refused (ECONNREFUSED).
    pub refused503: u64,
    /// 503 with URX and neither UC nor a connection failure: retries exhausted on 503 answers.
    pub urx_only503: u64,
    pub flags503: [u64; N_FLAGS],
    pub series: Option<Box<Series>>,
    /// `RESPONSE_CODE_DETAILS` of 503s, at most a few distinct ones.
    pub details503: Vec<(Box<[u8]>, u64)>,
}

const MAX_DETAILS: usize = 8;

impl ClusterStats {
    fn add(&mut self, o: &ClusterStats) {
        self.counts.add(&o.counts);
        self.uc503 += o.uc503;
        self.uc_urx503 += o.uc_urx503;
        self.connfail503 += o.connfail503;
        self.refused503 += o.refused503;
        self.urx_only503 += o.urx_only503;
        for (a, b) in self.flags503.iter_mut().zip(o.flags503.iter()) {
            *a += b;
        }
        for (d, n) in &o.details503 {
            add_detail(&mut self.details503, d, *n);
        }
        if let Some(os) = &o.series {
            self.series.get_or_insert_with(Default::default).merge(os);
        }
    }
}

fn add_detail(v: &mut Vec<(Box<[u8]>, u64)>, d: &[u8], n: u64) {
    if let Some(e) = v.iter_mut().find(|(k, _)| &**k == d) {
        e.1 += n;
    } else if v.len() < MAX_DETAILS {
        v.push((d.into(), n));
    }
}

/// Where a line came from, for messages: input index and 1-based line number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub input: usize,
    pub line: u64,
}

pub const MAX_MALFORMED_EXAMPLES: usize = 5;

/// HTTP methods counted without a map lookup.
pub const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS", b"CONNECT", b"TRACE",
];

/// The aggregate of any number of lines.
#[derive(Clone, Debug)]
pub struct Stats {
    pub limits: Limits,
    /// Current bucket width (starts at `limits.bucket_secs`, doubles as needed).
    pub bucket_secs: i64,
    pub lines: u64,
    pub records: u64,
    pub json_records: u64,
    pub blank: u64,
    /// The proxy's own log lines (pilot-agent / Envoy), which share the container's output.
    pub non_access: u64,
    pub malformed: u64,
    pub malformed_at: Vec<Location>,
    /// Records without a usable start time (no time bucket).
    pub untimed: u64,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    /// Index = status code (0..=999).
    pub status: Vec<u64>,
    pub flags: [u64; N_FLAGS],
    pub unknown_flags: u64,
    /// Records without flags by status (most lines: kept out of the map to save a hash).
    pub status_unflagged: Vec<u64>,
    /// Records with flags by (status, flags).
    pub status_flags: Bounded<(u16, FlagSet), u64>,
    pub clusters: Bounded<Box<[u8]>, ClusterStats>,
    pub authorities: Bounded<Box<[u8]>, Counts>,
    /// The standard methods ([`METHODS`]) in an array, others in the map.
    pub methods_known: [Counts; METHODS.len()],
    pub methods: Bounded<Box<[u8]>, Counts>,
    pub timeline: Series,
    /// Connections that matched no filter chain (`filter_chain_not_found`): e.g. plain-text
    /// clients such as kubelet probes on an mTLS-STRICT port.
    pub filter_chain_not_found: u64,
    series_count: usize,
    time_cache: Option<([u8; 19], i64)>,
}

impl Stats {
    pub fn new(limits: Limits) -> Stats {
        Stats {
            limits,
            bucket_secs: limits.bucket_secs.max(1),
            lines: 0,
            records: 0,
            json_records: 0,
            blank: 0,
            non_access: 0,
            malformed: 0,
            malformed_at: Vec::new(),
            untimed: 0,
            first_ts: None,
            last_ts: None,
            status: vec![0; 1000],
            flags: [0; N_FLAGS],
            unknown_flags: 0,
            status_unflagged: vec![0; 1000],
            status_flags: Bounded::new(limits.max_keys),
            clusters: Bounded::new(limits.max_keys),
            authorities: Bounded::new(limits.max_keys),
            methods_known: [Counts::default(); METHODS.len()],
            methods: Bounded::new(limits.max_keys),
            timeline: Series::default(),
            filter_chain_not_found: 0,
            series_count: 0,
            time_cache: None,
        }
    }

    pub fn note_malformed(&mut self, at: Location) {
        self.malformed += 1;
        if self.malformed_at.len() < MAX_MALFORMED_EXAMPLES {
            self.malformed_at.push(at);
        }
    }

    fn secs(&mut self, v: &[u8]) -> Option<i64> {
        // Consecutive lines mostly share the second: compare the first 19 bytes before parsing.
        let cacheable = v.len() >= 19 && v[19..].first().is_none_or(|&c| c == b'.' || c == b'Z');
        if cacheable
            && let Some((key, t)) = &self.time_cache
            && v[..19].iter().zip(key).all(|(a, b)| a == b)
        {
            return Some(*t);
        }
        let t = time::parse_secs(v)?;
        if cacheable {
            let mut key = [0u8; 19];
            key.copy_from_slice(&v[..19]);
            self.time_cache = Some((key, t));
        }
        Some(t)
    }

    /// Count one record. `false` when it is not a valid access-log record (bad status code).
    pub fn add(&mut self, rec: &Record<'_>) -> bool {
        let code = match parse_status(rec.get(Field::ResponseCode)) {
            Some(c) => c,
            None => return false,
        };
        self.records += 1;
        self.status[code as usize] += 1;
        let fl = FlagSet::parse(rec.get(Field::ResponseFlags));
        if !fl.is_empty() {
            let mut bits = fl.bits;
            while bits != 0 {
                self.flags[bits.trailing_zeros() as usize] += 1;
                bits &= bits - 1;
            }
            if fl.unknown {
                self.unknown_flags += 1;
            }
        }
        if fl.is_empty() {
            self.status_unflagged[code as usize] += 1;
        } else {
            *self.status_flags.entry((code, fl)) += 1;
        }

        let details = rec.get(Field::ResponseCodeDetails);
        if fl.has(flags::NR) && memchr::memmem::find(details, b"filter_chain_not_found").is_some() {
            self.filter_chain_not_found += 1;
        }
        let answered = (100..500).contains(&code);
        let is503 = code == 503;
        let mut uc = false;
        let mut connfail = false;
        let mut refused = false;
        if is503 {
            let reason = rec.get(Field::UpstreamTransportFailureReason);
            connfail = fl.has(flags::UF | flags::UH)
                || has_any(details, &[b"connection_failure", b"connect_error"]);
            uc = !connfail && (fl.has(flags::UC) || has_any(details, &[b"connection_termination"]));
            refused = connfail
                && (has_any(details, &[b"refused", b"_111"])
                    || has_any(reason, &[b"refused", b"111"]));
        }
        let delta = Counts {
            requests: 1,
            answered: answered as u64,
            s5xx: (500..600).contains(&code) as u64,
            s503: is503 as u64,
        };
        let bucket = Bucket {
            requests: 1,
            answered: answered as u32,
            s503: is503 as u32,
            uc503: uc as u32,
            connfail503: connfail as u32,
        };
        let ts = self.secs(rec.get(Field::StartTime));
        match ts {
            Some(t) => {
                self.first_ts = Some(self.first_ts.map_or(t, |f| f.min(t)));
                self.last_ts = Some(self.last_ts.map_or(t, |l| l.max(t)));
            }
            None => self.untimed += 1,
        }
        let width = self.bucket_secs;
        let start = ts.map(|t| t - t.rem_euclid(width));
        if let Some(s) = start {
            self.timeline.bump(s).add(&bucket);
        }
        let may_series = self.series_count < self.limits.max_series;
        let cs = self.clusters.slot(rec.get(Field::UpstreamCluster));
        cs.counts.add(&delta);
        let mut new_series = false;
        let mut series_len = 0;
        if is503 {
            cs.uc503 += uc as u64;
            cs.uc_urx503 += (uc && fl.has(flags::URX)) as u64;
            cs.connfail503 += connfail as u64;
            cs.refused503 += refused as u64;
            cs.urx_only503 += (fl.has(flags::URX) && !uc && !connfail) as u64;
            let mut bits = fl.bits;
            while bits != 0 {
                cs.flags503[bits.trailing_zeros() as usize] += 1;
                bits &= bits - 1;
            }
            add_detail(&mut cs.details503, details, 1);
        }
        if let Some(s) = start {
            if cs.series.is_none() && may_series {
                cs.series = Some(Box::default());
                new_series = true;
            }
            if let Some(series) = cs.series.as_mut() {
                series.bump(s).add(&bucket);
                series_len = series.buckets.len();
            }
        }
        self.series_count += new_series as usize;
        self.authorities.slot(rec.get(Field::Authority)).add(&delta);
        let method = rec.get(Field::Method);
        match METHODS.iter().position(|m| *m == method) {
            Some(i) => self.methods_known[i].add(&delta),
            None => self.methods.slot(method).add(&delta),
        }
        if series_len > self.limits.max_buckets
            || self.timeline.buckets.len() > self.limits.max_buckets
        {
            self.widen(self.bucket_secs * 2);
        }
        true
    }

    /// Double the bucket width (or more) and re-key every series.
    fn widen(&mut self, width: i64) {
        self.bucket_secs = width;
        self.timeline.rekey(width);
        let rekey = |c: &mut ClusterStats| {
            if let Some(s) = c.series.as_mut() {
                s.rekey(width);
            }
        };
        self.clusters.map.values_mut().for_each(rekey);
        rekey(&mut self.clusters.other);
    }

    /// Fold another aggregate (of later lines) into this one.
    pub fn merge(&mut self, mut o: Stats) {
        if o.bucket_secs > self.bucket_secs {
            self.widen(o.bucket_secs);
        } else if o.bucket_secs < self.bucket_secs {
            o.widen(self.bucket_secs);
        }
        self.lines += o.lines;
        self.records += o.records;
        self.json_records += o.json_records;
        self.blank += o.blank;
        self.non_access += o.non_access;
        self.malformed += o.malformed;
        for at in o.malformed_at {
            if self.malformed_at.len() < MAX_MALFORMED_EXAMPLES {
                self.malformed_at.push(at);
            }
        }
        self.untimed += o.untimed;
        self.first_ts = min_opt(self.first_ts, o.first_ts, i64::min);
        self.last_ts = min_opt(self.last_ts, o.last_ts, i64::max);
        for (a, b) in self.status.iter_mut().zip(o.status.iter()) {
            *a += b;
        }
        for (a, b) in self.flags.iter_mut().zip(o.flags.iter()) {
            *a += b;
        }
        self.unknown_flags += o.unknown_flags;
        self.filter_chain_not_found += o.filter_chain_not_found;
        for (a, b) in self
            .status_unflagged
            .iter_mut()
            .zip(o.status_unflagged.iter())
        {
            *a += b;
        }
        for (a, b) in self.methods_known.iter_mut().zip(o.methods_known.iter()) {
            a.add(b);
        }
        for (k, v) in o.status_flags.map {
            *self.status_flags.entry(k) += v;
        }
        self.status_flags.other += o.status_flags.other;
        self.status_flags.overflowed += o.status_flags.overflowed;
        for (k, v) in o.clusters.map {
            self.clusters.slot(&k).add(&v);
        }
        self.clusters.other.add(&o.clusters.other);
        self.clusters.overflowed += o.clusters.overflowed;
        for (mine, theirs) in [
            (&mut self.authorities, o.authorities),
            (&mut self.methods, o.methods),
        ] {
            for (k, v) in theirs.map {
                mine.slot(&k).add(&v);
            }
            mine.other.add(&theirs.other);
            mine.overflowed += theirs.overflowed;
        }
        self.timeline.merge(&o.timeline);
        if self.timeline.buckets.len() > self.limits.max_buckets {
            self.widen(self.bucket_secs * 2);
        }
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>, f: fn(i64, i64) -> i64) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

fn has_any(hay: &[u8], needles: &[&[u8]]) -> bool {
    !hay.is_empty()
        && needles
            .iter()
            .any(|n| memchr::memmem::find(hay, n).is_some())
}

/// A status code: 0..=999 digits. `-` (TCP entries in some formats) counts as 0.
fn parse_status(v: &[u8]) -> Option<u16> {
    if v.is_empty() {
        return Some(0);
    }
    if v.len() > 3 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0')))
}
