//! A partial view is not the truth. Which watched kinds have synced, and what that means for
//! the findings: a finding whose detector reads a kind that has not synced (its CRD missing,
//! RBAC forbidding it, the apiserver down) is withheld — no Remediation is proposed, re-planned,
//! applied or resolved from it — and the Remediations it would touch say which kinds are
//! missing. Pure apart from the small shared table the watchers write into.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::analysis::Code;
use crate::analysis::dependencies::missing_for;

/// The condition type meshmedic sets on a Remediation about the completeness of its view.
pub const CONDITION: &str = "Synced";

/// How long a kind must stay unsynced before Remediations are told (the findings are withheld
/// at once): a relist after `410 Gone` or a brief apiserver restart is not worth two status
/// writes per Remediation.
pub const CONDITION_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Where one kind's watch stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindState {
    /// Listing for the first time.
    Syncing,
    /// The store holds a complete list, kept current by the watch.
    Synced,
    /// The last list or watch failed (CRD missing, forbidden, apiserver down); the store may
    /// be empty or stale until the next list succeeds.
    Failed(String),
}

#[derive(Clone, Debug)]
struct Entry {
    optional: bool,
    state: KindState,
    /// Since when it has not been synced.
    since: Option<std::time::Instant>,
}

/// The table the watchers write and the reconcile loop, `/readyz` and `/metrics` read.
#[derive(Default, Debug)]
pub struct SyncStates {
    kinds: Mutex<BTreeMap<String, Entry>>,
}

/// What `/readyz` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Optional (Istio) kinds are missing: the rest works, findings reading them are withheld.
    Degraded(Vec<String>),
    /// A core kind is missing: every finding is withheld.
    NotReady(Vec<String>),
}

impl SyncStates {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.kinds.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(&self, kind: &str, optional: bool) {
        self.lock().insert(
            kind.to_string(),
            Entry {
                optional,
                state: KindState::Syncing,
                since: Some(std::time::Instant::now()),
            },
        );
    }

    /// Records that `kind` listed completely. True if it was not synced before.
    pub fn synced(&self, kind: &str) -> bool {
        self.set(kind, KindState::Synced)
    }

    /// Records a list or watch failure. True if the kind was synced before (or failed
    /// otherwise): the caller reports a change once, not on every retry.
    pub fn failed(&self, kind: &str, error: &str) -> bool {
        let mut kinds = self.lock();
        let entry = kinds.entry(kind.to_string()).or_insert(Entry {
            optional: true,
            state: KindState::Syncing,
            since: None,
        });
        let was_failed = matches!(entry.state, KindState::Failed(_));
        entry.state = KindState::Failed(short(error));
        entry.since.get_or_insert_with(std::time::Instant::now);
        !was_failed
    }

    fn set(&self, kind: &str, state: KindState) -> bool {
        let mut kinds = self.lock();
        let entry = kinds.entry(kind.to_string()).or_insert(Entry {
            optional: true,
            state: KindState::Syncing,
            since: None,
        });
        let changed = entry.state != state;
        if state == KindState::Synced {
            entry.since = None;
        } else {
            entry.since.get_or_insert_with(std::time::Instant::now);
        }
        entry.state = state;
        changed
    }

    /// Every kind and whether it is synced, for the `store_synced` gauge.
    pub fn states(&self) -> Vec<(String, bool)> {
        self.lock()
            .iter()
            .map(|(k, e)| (k.clone(), e.state == KindState::Synced))
            .collect()
    }

    /// The kinds not synced now.
    pub fn unsynced(&self) -> BTreeSet<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.state != KindState::Synced)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The kinds not synced for at least `min`.
    pub fn unsynced_for(&self, min: std::time::Duration) -> BTreeSet<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.since.is_some_and(|at| at.elapsed() >= min))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn readiness(&self) -> Readiness {
        let kinds = self.lock();
        readiness(
            kinds
                .iter()
                .map(|(k, e)| (k.as_str(), e.optional, &e.state)),
        )
    }
}

/// `Kind (why)` for each kind not synced; core kinds make the operator not ready.
pub fn readiness<'a>(kinds: impl Iterator<Item = (&'a str, bool, &'a KindState)>) -> Readiness {
    let mut core = Vec::new();
    let mut optional = Vec::new();
    for (kind, is_optional, state) in kinds {
        let why = match state {
            KindState::Synced => continue,
            KindState::Syncing => format!("{kind} (listing)"),
            KindState::Failed(e) => format!("{kind} ({e})"),
        };
        if is_optional {
            optional.push(why);
        } else {
            core.push(why);
        }
    }
    if !core.is_empty() {
        core.extend(optional);
        Readiness::NotReady(core)
    } else if !optional.is_empty() {
        Readiness::Degraded(optional)
    } else {
        Readiness::Ready
    }
}

/// Keeps errors one line and bounded (they end up in /readyz and conditions).
fn short(error: &str) -> String {
    let line = error.lines().next().unwrap_or_default();
    let mut s: String = line.chars().take(160).collect();
    if line.chars().count() > 160 {
        s.push('…');
    }
    s
}

/// The codes whose findings are withheld while `unsynced` kinds are missing, with the kinds
/// each misses.
pub fn withheld(unsynced: &BTreeSet<String>) -> BTreeMap<Code, Vec<String>> {
    Code::ALL
        .into_iter()
        .filter_map(|c| {
            let missing = missing_for(c, unsynced);
            (!missing.is_empty()).then_some((c, missing))
        })
        .collect()
}

/// The message of the condition on a Remediation whose finding is withheld.
pub fn withheld_message(missing: &[String]) -> String {
    format!(
        "withheld: the analysis behind this Remediation reads {} which {} not synced (CRD missing, access forbidden or API server unreachable); it is neither re-planned, applied nor resolved until {} synced again",
        missing.join(", "),
        if missing.len() == 1 { "is" } else { "are" },
        if missing.len() == 1 {
            "it is"
        } else {
            "they are"
        },
    )
}

/// The conditions a Remediation should carry, given the kinds its finding misses (empty when
/// its view is whole), or `None` when its conditions already say so. A withheld Remediation
/// gets `Synced=False`; once the kinds are back, a `Synced=False` turns `Synced=True`; a
/// Remediation that never missed anything is left alone. Other conditions are kept.
pub fn conditions_for(
    existing: &[Condition],
    missing: &[String],
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Vec<Condition>> {
    let current = existing.iter().find(|c| c.type_ == CONDITION);
    let wanted = if missing.is_empty() {
        match current {
            Some(c) if c.status == "False" => (
                "True",
                "StoresSynced",
                "every kind the analysis reads is synced".to_string(),
            ),
            _ => return None,
        }
    } else {
        let message = withheld_message(missing);
        if current.is_some_and(|c| c.status == "False" && c.message == message) {
            return None;
        }
        ("False", "KindsNotSynced", message)
    };
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| c.type_ != CONDITION)
        .cloned()
        .collect();
    out.push(Condition {
        type_: CONDITION.to_string(),
        status: wanted.0.to_string(),
        reason: wanted.1.to_string(),
        message: wanted.2,
        observed_generation: generation,
        last_transition_time: Time(now),
    });
    Some(out)
}

/// How a watcher retries after an error: from 200 ms doubling to at most 5 s, with jitter, and
/// back to 200 ms after any success. kube's default grows to 30 s and only resets after two
/// quiet minutes, so after a 20-second apiserver outage some kinds stayed unsynced (and their
/// findings withheld) for a minute more (measured by the chaos run). A list every 5 s per kind
/// while the apiserver is down is cheap.
#[derive(Debug, Clone)]
pub struct RetryBackoff {
    next: std::time::Duration,
    seed: u64,
}

impl RetryBackoff {
    pub const FIRST: std::time::Duration = std::time::Duration::from_millis(200);
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(5);

    pub fn new(seed: u64) -> RetryBackoff {
        RetryBackoff {
            next: Self::FIRST,
            seed: seed | 1,
        }
    }
}

impl Iterator for RetryBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        // xorshift: spreads the retries of the watchers (one per kind) apart.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.8 + (self.seed % 401) as f64 / 1000.0; // 0.8 ..= 1.2
        let now = self.next.mul_f64(jitter).min(Self::MAX);
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for RetryBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Fences writes on the Lease. The lease task's view can lag by up to a renew period after a
/// freeze or a partition (the chaos run caught a resumed SIGSTOPped leader writing for 150 ms
/// after another replica took over). Before each write the holder is re-read from the API
/// server unless it was confirmed within `max_age` of the monotonic clock (which keeps running
/// while a process is frozen).
pub struct Fence {
    api: kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    name: String,
    identity: String,
    max_age: std::time::Duration,
    /// Until when the last confirmation holds.
    confirmed: Mutex<Option<std::time::Instant>>,
}

impl Fence {
    pub fn new(
        client: &kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        max_age: std::time::Duration,
    ) -> Fence {
        Fence {
            api: kube::Api::namespaced(client.clone(), namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            max_age,
            confirmed: Mutex::new(None),
        }
    }

    /// Whether this replica still holds the Lease (re-read if `force` or the last
    /// confirmation is no longer valid; an unreachable API server means no). A confirmation is
    /// valid for `max_age`, and never past the moment the Lease read would expire: a replica
    /// whose lease task stopped renewing must not write on a confirmation older than that.
    pub async fn holds(&self, force: bool) -> bool {
        let valid = self
            .confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| std::time::Instant::now() < until);
        if valid && !force {
            return true;
        }
        let asked = std::time::Instant::now();
        let left = match self.api.get(&self.name).await {
            Ok(lease) => lease
                .spec
                .and_then(|s| lease_time_left(&s, &self.identity, Timestamp::now())),
            Err(_) => None,
        };
        let until = left.map(|left| {
            // The lease as read was taken a round trip ago at most: count from before asking.
            asked + std::cmp::min(self.max_age, left.saturating_sub(FENCE_MARGIN))
        });
        *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = until;
        until.is_some()
    }
}

/// Kept off the end of a Lease's term: a write takes a moment to land.
const FENCE_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// How long the Lease is still ours (`None`: it names someone else, or has expired).
pub fn lease_time_left(
    spec: &k8s_openapi::api::coordination::v1::LeaseSpec,
    identity: &str,
    now: Timestamp,
) -> Option<std::time::Duration> {
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = i64::from(spec.lease_duration_seconds?);
    let expires = renewed
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
        .ok()?;
    std::time::Duration::try_from(expires.duration_since(now)).ok()
}

/// A Lease is ours while it names us and has not expired. An expired Lease still naming us is
/// not: after an API server outage longer than the lease, the Lease object is unchanged (nobody
/// could write it) but the other replica may take it at any moment; the chaos run saw a replica
/// write for 300 ms on such a Lease before its lease task noticed.
pub fn lease_is_ours(
    spec: &k8s_openapi::api::coordination::v1::LeaseSpec,
    identity: &str,
    now: Timestamp,
) -> bool {
    lease_time_left(spec, identity, now).is_some_and(|left| !left.is_zero())
}

/// Writes [`conditions_for`] to a Remediation's status, if it changes anything. Guarded by the
/// resourceVersion the decision was made on: a Remediation changed meanwhile is left for the
/// next pass (its watch event brings one). Returns the Remediation written, if it was.
pub async fn write_condition(
    api: &kube::Api<crate::model::remediation::Remediation>,
    rem: &crate::model::remediation::Remediation,
    missing: &[String],
) -> kube::Result<Option<crate::model::remediation::Remediation>> {
    use kube::ResourceExt;
    let existing = rem
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let Some(conditions) =
        conditions_for(existing, missing, rem.metadata.generation, Timestamp::now())
    else {
        return Ok(None);
    };
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": rem.resource_version()},
        "status": {"conditions": conditions},
    });
    match api
        .patch_status(
            &rem.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
    {
        Ok(updated) => Ok(Some(updated)),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_ours_while_it_names_us_and_has_not_expired() {
        use k8s_openapi::api::coordination::v1::LeaseSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let renewed: Timestamp = "2026-11-30T04:49:00Z".parse().unwrap();
        let lease = LeaseSpec {
            holder_identity: Some("a".into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(4),
            ..Default::default()
        };
        let at = |s: &str| -> Timestamp { s.parse().unwrap() };
        assert!(lease_is_ours(&lease, "a", at("2026-11-30T04:49:03Z")));
        assert!(!lease_is_ours(&lease, "b", at("2026-11-30T04:49:03Z")));
        // Unchanged through an outage, but expired: not ours any more.
        assert!(!lease_is_ours(&lease, "a", at("2026-11-30T04:49:05Z")));
        assert_eq!(
            lease_time_left(&lease, "a", at("2026-11-30T04:49:03Z")),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(
            lease_time_left(&lease, "a", at("2026-11-30T04:49:05Z")),
            None
        );
        let unrenewed = LeaseSpec {
            renew_time: None,
            ..lease
        };
        assert!(!lease_is_ours(&unrenewed, "a", at("2026-11-30T04:49:01Z")));
    }

    fn set(kinds: &[&str]) -> BTreeSet<String> {
        kinds.iter().map(|k| k.to_string()).collect()
    }

    fn now() -> Timestamp {
        "2026-11-30T02:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_unsynced_destination_rule_withholds_idle_timeout_only() {
        let w = withheld(&set(&["DestinationRule"]));
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[&Code::IdleTimeoutMismatch],
            vec!["DestinationRule".to_string()]
        );
    }

    #[test]
    fn an_unsynced_core_kind_withholds_everything() {
        assert_eq!(withheld(&set(&["Pod"])).len(), Code::ALL.len());
        assert!(withheld(&BTreeSet::new()).is_empty());
    }

    #[test]
    fn states_report_changes_once() {
        let s = SyncStates::default();
        s.register("Pod", false);
        s.register("DestinationRule", true);
        assert_eq!(
            s.readiness(),
            Readiness::NotReady(vec![
                "Pod (listing)".to_string(),
                "DestinationRule (listing)".to_string()
            ])
        );
        assert!(s.synced("Pod"));
        assert!(!s.synced("Pod"));
        assert!(s.failed("DestinationRule", "forbidden\nmore"));
        assert!(!s.failed("DestinationRule", "forbidden again"));
        assert_eq!(
            s.readiness(),
            Readiness::Degraded(vec!["DestinationRule (forbidden again)".to_string()])
        );
        assert_eq!(s.unsynced(), set(&["DestinationRule"]));
        assert_eq!(
            s.unsynced_for(std::time::Duration::ZERO),
            set(&["DestinationRule"])
        );
        assert!(
            s.unsynced_for(std::time::Duration::from_secs(60))
                .is_empty()
        );
        assert!(s.synced("DestinationRule"));
        assert_eq!(s.readiness(), Readiness::Ready);
        assert!(s.failed("Pod", "connection refused"));
        assert!(matches!(s.readiness(), Readiness::NotReady(_)));
    }

    #[test]
    fn a_withheld_remediation_gets_a_condition_once_and_it_clears() {
        let ready = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Planned".into(),
            message: "proposed".into(),
            observed_generation: Some(1),
            last_transition_time: Time(now()),
        };
        let missing = vec!["DestinationRule".to_string()];
        // Never withheld, nothing missing: left alone.
        assert_eq!(
            conditions_for(std::slice::from_ref(&ready), &[], Some(1), now()),
            None
        );
        let withheld =
            conditions_for(std::slice::from_ref(&ready), &missing, Some(1), now()).unwrap();
        assert_eq!(withheld.len(), 2);
        assert_eq!(withheld[0], ready);
        assert_eq!(withheld[1].type_, CONDITION);
        assert_eq!(withheld[1].status, "False");
        assert!(withheld[1].message.contains("DestinationRule"));
        // Saying it again is not a change (no write, no loop).
        assert_eq!(conditions_for(&withheld, &missing, Some(1), now()), None);
        // Another kind missing too: the message changes.
        let two = vec!["DestinationRule".to_string(), "Sidecar".to_string()];
        assert!(
            conditions_for(&withheld, &two, Some(1), now()).unwrap()[1]
                .message
                .contains("DestinationRule, Sidecar which are")
        );
        // Back: Synced=True, then nothing more.
        let back = conditions_for(&withheld, &[], Some(1), now()).unwrap();
        assert_eq!(back[1].status, "True");
        assert_eq!(conditions_for(&back, &[], Some(1), now()), None);
    }

    #[test]
    fn every_kind_a_detector_reads_is_watched() {
        let mut watched: BTreeSet<&str> = super::super::stores::KINDS
            .iter()
            .map(|(_, _, kind, _, _)| *kind)
            .collect();
        watched.insert("ConfigMap");
        for c in Code::ALL {
            for kind in crate::analysis::dependencies::kinds_read(c) {
                assert!(
                    watched.contains(kind),
                    "{c} reads {kind}, which is not watched"
                );
            }
        }
    }

    #[test]
    fn retries_grow_to_five_seconds_and_reset() {
        use kube::runtime::utils::Backoff;
        let mut b = RetryBackoff::new(42);
        let first: Vec<_> = (&mut b).take(8).collect();
        assert!(first[0] <= RetryBackoff::FIRST.mul_f64(1.2));
        assert!(first.iter().all(|d| *d <= RetryBackoff::MAX));
        assert!(first[7] >= RetryBackoff::MAX.mul_f64(0.8));
        b.reset();
        assert!(b.next().unwrap() <= RetryBackoff::FIRST.mul_f64(1.2));
    }

    #[test]
    fn errors_stay_one_short_line() {
        let long = "x".repeat(500) + "\nsecond";
        let s = short(&long);
        assert!(s.chars().count() <= 161 && !s.contains('\n'));
    }
}
