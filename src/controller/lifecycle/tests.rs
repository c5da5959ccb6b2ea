use proptest::prelude::*;

use super::*;

fn plan(digest: &str, safe: bool) -> PlanView {
    PlanView {
        digest: digest.into(),
        safe,
        resolves: true,
        noop: false,
        settled: true,
        target_mode: None,
    }
}

fn proposed(digest: &str) -> RemView {
    RemView {
        published: Some(digest.into()),
        resolves: true,
        reason: "Proposed".into(),
        ..Default::default()
    }
}

#[test]
fn a_new_finding_is_published_and_nothing_is_written_in_off_namespaces() {
    let p = plan("d1", true);
    assert_eq!(
        decide(Mode::Propose, Some(&p), None, None, TargetView::Present),
        Decision::Publish {
            first: true,
            rolled_back: false
        }
    );
    assert_eq!(
        decide(Mode::Off, Some(&p), None, None, TargetView::Present),
        Decision::Nothing
    );
}

#[test]
fn apply_mode_writes_a_safe_plan_only_once_it_has_settled_an_approval_at_once() {
    let mut p = plan("d1", true);
    p.settled = false;
    let mut r = proposed("d1");
    assert_eq!(
        decide(Mode::Apply, Some(&p), None, Some(&r), TargetView::Present),
        Decision::Nothing,
        "a plan of a namespace still being applied may go away by itself"
    );
    r.approved = Some("d1".into());
    assert_eq!(
        decide(Mode::Apply, Some(&p), None, Some(&r), TargetView::Present),
        Decision::Apply { auto: false },
        "a person reviewed it"
    );
    r.approved = None;
    p.settled = true;
    assert_eq!(
        decide(Mode::Apply, Some(&p), None, Some(&r), TargetView::Present),
        Decision::Apply { auto: true }
    );
}

#[test]
fn a_young_untouched_proposal_whose_cause_went_away_is_withdrawn_anything_else_is_kept() {
    let mut r = proposed("d1");
    r.phase = Phase::Proposed;
    r.young = true;
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&r), TargetView::Present),
        Decision::Withdraw
    );
    let kept = |r: &RemView| decide(Mode::Propose, None, None, Some(r), TargetView::Present);
    let cause_gone = Decision::Set {
        phase: Phase::Resolved,
        reason: Reason::CauseGone,
    };
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&r), TargetView::Absent),
        Decision::Set {
            phase: Phase::Stale,
            reason: Reason::TargetDeleted
        },
        "a deleted target is recorded, not withdrawn"
    );
    let mut old = r.clone();
    old.young = false;
    assert_eq!(kept(&old), cause_gone, "it stood: a record");
    let mut approved = r.clone();
    approved.approved = Some("d1".into());
    assert_eq!(kept(&approved), cause_gone, "a person approved it");
    let mut consented = r.clone();
    consented.allow_live_patch = true;
    assert_eq!(kept(&consented), cause_gone, "a person touched it");
    let mut replanned = r.clone();
    replanned.reason = "PlanChanged".into();
    assert_eq!(kept(&replanned), cause_gone, "not a first proposal");
    let mut wrote = r.clone();
    wrote.wrote = true;
    wrote.phase = Phase::Applied;
    wrote.reason = "Applied".into();
    assert_eq!(
        kept(&wrote),
        Decision::Nothing,
        "a write is never forgotten"
    );
}

#[test]
fn only_an_approval_of_the_current_digest_applies() {
    let p = plan("d2", false);
    let mut r = proposed("d2");
    r.approved = Some("d1".into());
    assert_eq!(
        decide(Mode::Propose, Some(&p), None, Some(&r), TargetView::Present),
        Decision::Set {
            phase: Phase::Proposed,
            reason: Reason::ApprovalOutdated
        }
    );
    // Recorded already (by an earlier version, which left the approval in place): recorded
    // again, which withdraws it.
    r.reason = Reason::ApprovalOutdated.as_str().into();
    assert_eq!(
        decide(Mode::Propose, Some(&p), None, Some(&r), TargetView::Present),
        Decision::Set {
            phase: Phase::Proposed,
            reason: Reason::ApprovalOutdated
        }
    );
    r.reason = "Proposed".into();
    r.approved = Some("d2".into());
    assert_eq!(
        decide(Mode::Propose, Some(&p), None, Some(&r), TargetView::Present),
        Decision::Apply { auto: false }
    );
    // A re-plan the reviewer has not seen is published first, whatever was approved.
    let p3 = plan("d3", false);
    assert_eq!(
        decide(
            Mode::Propose,
            Some(&p3),
            None,
            Some(&r),
            TargetView::Present
        ),
        Decision::Publish {
            first: false,
            rolled_back: false
        }
    );
}

#[test]
fn a_reverted_fix_becomes_a_proposal_in_both_modes() {
    let p = plan("d1", true);
    let mut r = proposed("d1");
    r.wrote = true;
    r.applied_digest = Some("d1".into());
    r.phase = Phase::Resolved;
    r.reason = "Verified".into();
    r.writes = 1;
    for mode in [Mode::Propose, Mode::Apply] {
        assert_eq!(
            decide(mode, Some(&p), None, Some(&r), TargetView::Changed),
            Decision::Set {
                phase: Phase::Proposed,
                reason: Reason::Reverted
            }
        );
    }
    r.reverted = true;
    r.phase = Phase::Proposed;
    r.reason = "Reverted".into();
    assert_eq!(
        decide(Mode::Apply, Some(&p), None, Some(&r), TargetView::Changed),
        Decision::Nothing
    );
}

#[test]
fn rollback_refuses_over_someone_elses_edit() {
    let mut r = proposed("d1");
    r.wrote = true;
    r.rollback = true;
    r.phase = Phase::Resolved;
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&r), TargetView::AsWritten),
        Decision::Rollback
    );
    // The executor judges a changed target field by field (and refuses, writing nothing).
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&r), TargetView::Changed),
        Decision::Rollback
    );
    r.phase = Phase::Refused;
    r.reason = "TargetChanged".into();
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&r), TargetView::Changed),
        Decision::Nothing
    );
}

#[test]
fn a_target_changed_after_its_rollback_shows_its_new_plan_and_writes_only_on_approval() {
    let mut r = proposed("d1");
    r.rollback = true;
    r.phase = Phase::RolledBack;
    r.reason = "RolledBack".into();
    // Restored, and the target as it was: the plan shown is still the plan.
    let p1 = plan("d1", true);
    for mode in [Mode::Propose, Mode::Apply] {
        assert_eq!(
            decide(mode, Some(&p1), None, Some(&r), TargetView::Present),
            Decision::Nothing
        );
    }
    // Someone changed it since: the new plan is shown, and the phase stays RolledBack.
    let p2 = plan("d2", true);
    assert_eq!(
        decide(Mode::Apply, Some(&p2), None, Some(&r), TargetView::Present),
        Decision::Publish {
            first: false,
            rolled_back: true
        }
    );
    // Not from a view that has yet to show meshmedic's restore.
    assert_eq!(
        decide(Mode::Apply, Some(&p2), None, Some(&r), TargetView::Pending),
        Decision::Nothing
    );
    // Published: nothing more while the request stands, in apply mode too.
    r.published = Some("d2".into());
    r.reason = "PlanChanged".into();
    for mode in [Mode::Propose, Mode::Apply] {
        assert_eq!(
            decide(mode, Some(&p2), None, Some(&r), TargetView::Present),
            Decision::Nothing
        );
    }
    // An approval of the shown plan (which withdraws the request) writes it.
    r.rollback = false;
    r.approved = Some("d2".into());
    assert_eq!(
        decide(
            Mode::Propose,
            Some(&p2),
            None,
            Some(&r),
            TargetView::Present
        ),
        Decision::Apply { auto: false }
    );
}

#[test]
fn a_written_fix_is_verified_or_ineffective_and_mitigations_never_claim_success() {
    let mut r = proposed("d1");
    r.wrote = true;
    r.phase = Phase::Applied;
    r.reason = "Applied".into();
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&r), TargetView::AsWritten),
        Decision::Set {
            phase: Phase::Resolved,
            reason: Reason::Verified
        }
    );
    let p = plan("d9", false);
    assert_eq!(
        decide(
            Mode::Propose,
            Some(&p),
            None,
            Some(&r),
            TargetView::AsWritten
        ),
        Decision::Set {
            phase: Phase::Applied,
            reason: Reason::Ineffective
        }
    );
    r.resolves = false;
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&r), TargetView::AsWritten),
        Decision::Set {
            phase: Phase::Applied,
            reason: Reason::Mitigation
        }
    );
    // Waiting for the watch: nothing is concluded from a stale view.
    r.resolves = true;
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&r), TargetView::Pending),
        Decision::Nothing
    );
}

#[test]
fn gitops_targets_wait_unless_the_reviewer_allows_a_live_patch() {
    let p = plan("d1", true);
    let mut r = proposed("d1");
    assert_eq!(
        decide(
            Mode::Apply,
            Some(&p),
            Some("label x"),
            Some(&r),
            TargetView::Present
        ),
        Decision::Set {
            phase: Phase::Proposed,
            reason: Reason::GitOpsManaged
        }
    );
    r.allow_live_patch = true;
    assert_eq!(
        decide(
            Mode::Apply,
            Some(&p),
            Some("label x"),
            Some(&r),
            TargetView::Present
        ),
        Decision::Apply { auto: true }
    );
}

// ---- Property test against a small reference model -------------------------------------------
//
// The world: one target whose spec is {fix, other} (or absent). The "analysis" reports a finding
// while `fix != 1` (patch) or while the object is absent (create); the plan's digest is derived
// from the target's state, as the real digest covers the planned patch and resource. A person
// approves (the published digest, or an old one), edits either field, deletes the target, asks
// for a rollback or withdraws it; the controller runs passes. The executor below does what the
// real one does, and the model checks every write.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Spec {
    fix: i32,
    other: i32,
}

#[derive(Clone, Debug)]
enum Act {
    /// A controller pass; `true`: the watch has caught up with the cluster before it.
    Pass(bool),
    ApproveShown,
    ApproveOld,
    EditFix(i32),
    EditOther(i32),
    Delete,
    RequestRollback,
    WithdrawRollback,
    /// A person's object that configures what meshmedic's created target does appears (true)
    /// or goes (false).
    PersonsObject(bool),
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => any::<bool>().prop_map(Act::Pass),
        2 => Just(Act::ApproveShown),
        1 => Just(Act::ApproveOld),
        1 => (0..3i32).prop_map(Act::EditFix),
        1 => (0..3i32).prop_map(Act::EditOther),
        1 => Just(Act::Delete),
        1 => Just(Act::RequestRollback),
        1 => Just(Act::WithdrawRollback),
        1 => any::<bool>().prop_map(Act::PersonsObject),
    ]
}

struct World {
    mode: Mode,
    creates: bool,
    safe: bool,
    target: Option<Spec>,
    rem: Option<RemView>,
    original: Option<Option<Spec>>,
    written: Option<Spec>,
    /// Someone changed `other` since meshmedic's first write.
    foreign_other: bool,
    approvals: u32,
    approved_writes: u32,
    old_digests: Vec<String>,
    /// The target as the controller's watch shows it (it lags behind `target`).
    seen: Option<Spec>,
    /// meshmedic wrote (or deleted) the target and the watch has not shown it yet.
    unseen_write: bool,
    /// A person's object configures the same thing as the target (see `Act::PersonsObject`).
    persons: bool,
}

impl World {
    fn plan(&self) -> Option<PlanView> {
        let finding = match self.seen {
            // With a person's object there, the fix is planned on theirs (another target).
            None => self.creates && !self.persons,
            Some(s) => s.fix != 1,
        };
        finding.then(|| PlanView {
            digest: format!("{:?}", self.seen),
            safe: self.safe,
            resolves: true,
            noop: false,
            settled: true,
            target_mode: None,
        })
    }

    fn view(&self) -> TargetView {
        if self.unseen_write {
            return TargetView::Pending;
        }
        let Some(rem) = &self.rem else {
            return if self.seen.is_some() {
                TargetView::Present
            } else {
                TargetView::Absent
            };
        };
        match (rem.wrote, self.seen, self.written) {
            (_, None, _) => TargetView::Absent,
            (true, Some(t), Some(w)) => {
                let same = if rem.created { t == w } else { t.fix == w.fix };
                if same {
                    TargetView::AsWritten
                } else {
                    TargetView::Changed
                }
            }
            _ => TargetView::Present,
        }
    }

    /// One controller pass; returns whether it did anything.
    fn pass(&mut self) -> bool {
        let plan = self.plan();
        let view = self.view();
        let rem_view = self.rem.clone().map(|r| RemView {
            beside: (self.persons && r.created).then(|| "theirs".to_string()),
            ..r
        });
        let d = decide(self.mode, plan.as_ref(), None, rem_view.as_ref(), view);
        match d {
            Decision::Nothing => return false,
            Decision::Withdraw => {
                let rem = self.rem.as_ref().expect("withdraw without a Remediation");
                assert!(!rem.wrote && rem.approved.is_none(), "withdrew {rem:?}");
                self.rem = None;
            }
            Decision::Publish { first, rolled_back } => {
                let plan = plan.expect("publish without a plan");
                let rem = self.rem.get_or_insert_with(|| RemView {
                    creates: self.creates,
                    resolves: true,
                    ..Default::default()
                });
                assert_eq!(first, rem.published.is_none());
                // Published under a standing rollback request only once nothing of
                // meshmedic's is in place.
                if rolled_back {
                    assert!(rem.rollback && !rem.wrote && rem.phase == Phase::RolledBack);
                }
                if let Some(old) = rem.published.replace(plan.digest) {
                    self.old_digests.push(old);
                }
                if !rolled_back {
                    rem.phase = Phase::Proposed;
                }
                rem.reason = if first { "Proposed" } else { "PlanChanged" }.into();
            }
            Decision::Apply { auto } => {
                let plan = plan.expect("apply without a plan");
                let rem = self.rem.as_mut().expect("apply without a Remediation");
                // No write without a matching approval (or a safe plan in apply mode, once).
                assert_eq!(rem.published.as_deref(), Some(plan.digest.as_str()));
                if auto {
                    assert!(self.mode == Mode::Apply && plan.safe && !rem.reverted);
                    assert_ne!(rem.applied_digest.as_deref(), Some(plan.digest.as_str()));
                } else {
                    assert_eq!(rem.approved.as_deref(), Some(plan.digest.as_str()));
                    self.approved_writes += 1;
                }
                assert!(rem.writes < MAX_WRITES, "unbounded writes");
                // The plan was made on the watched state; the write's `test` operations (and
                // the create) fail if the live object differs where the plan relies on it.
                let holds = match (self.seen, self.target) {
                    (None, None) => true,
                    (Some(s), Some(t)) => s.fix == t.fix,
                    _ => false,
                };
                if !holds {
                    rem.approved = None; // used up by the attempt
                    rem.failed_digest = Some(plan.digest);
                    rem.phase = Phase::Stale;
                    rem.reason = "Conflict".into();
                    if !rem.wrote {
                        self.original = None;
                    }
                    return true;
                }
                if self.original.is_none() {
                    self.original = Some(self.target);
                    self.foreign_other = false;
                    rem.created = self.target.is_none();
                }
                let new = match self.target {
                    None => Spec { fix: 1, other: 0 },
                    Some(s) => Spec { fix: 1, ..s },
                };
                self.target = Some(new);
                self.written = Some(new);
                self.unseen_write = true;
                rem.failed_digest = None;
                rem.wrote = true;
                rem.writes += 1;
                rem.applied_digest = Some(plan.digest);
                rem.approved = None; // consumed
                rem.reverted = false;
                rem.phase = Phase::Applied;
                rem.reason = "Applied".into();
            }
            Decision::Rollback | Decision::Supersede { .. } => {
                let supersede = matches!(d, Decision::Supersede { .. });
                let rem = self.rem.as_mut().expect("rollback without a Remediation");
                // Unasked, meshmedic only ever deletes what it created, and a person's object
                // is there.
                assert!(
                    !supersede || (rem.created && self.persons),
                    "superseded {rem:?}"
                );
                let original = self.original.expect("rollback without an original");
                let written = self.written.expect("rollback without a write");
                // Restores or refuses (on the live object): only over meshmedic's own values,
                // or values already put back.
                let intact = match (self.target, original) {
                    (None, _) => rem.created,
                    (Some(t), _) if rem.created => t == written,
                    (Some(t), Some(o)) => t.fix == written.fix || t.fix == o.fix,
                    (Some(_), None) => false,
                };
                if !intact && supersede {
                    // Someone changed it: theirs, recorded as such, never retried.
                    rem.reverted = true;
                    rem.phase = if plan.is_some() {
                        Phase::Proposed
                    } else {
                        Phase::Resolved
                    };
                    rem.reason = Reason::Reverted.as_str().into();
                    return true;
                }
                if !intact {
                    rem.phase = Phase::Refused;
                    rem.reason = "TargetChanged".into();
                    return true;
                }
                self.target = match (original, self.target) {
                    (None, _) => None,
                    (Some(o), Some(t)) => Some(Spec { fix: o.fix, ..t }),
                    (Some(_), None) => unreachable!(),
                };
                if !self.foreign_other {
                    assert_eq!(self.target, original, "rollback is exact");
                }
                self.original = None;
                self.written = None;
                self.unseen_write = true;
                rem.wrote = false;
                rem.created = false;
                rem.writes = 0;
                rem.applied_digest = None;
                rem.phase = Phase::RolledBack;
                rem.reason = if supersede {
                    "Superseded"
                } else {
                    "RolledBack"
                }
                .into();
            }
            Decision::Set { phase, reason } => {
                let rem = self.rem.as_mut().expect("status without a Remediation");
                if reason == Reason::Reverted {
                    rem.reverted = true;
                    // The executor's message names the person's object beside one it created.
                    rem.ready_message = match (&rem_view, rem.created) {
                        (Some(v), true) => v.beside.clone().unwrap_or_default(),
                        _ => String::new(),
                    };
                }
                // The executor withdraws an approval of a replaced plan, and one its cause
                // outlived, before it records these.
                if matches!(reason, Reason::ApprovalOutdated | Reason::Reappeared) {
                    rem.approved = None;
                }
                rem.phase = phase;
                rem.reason = reason.as_str().into();
            }
        }
        true
    }

    fn person(&mut self, a: &Act) {
        match a {
            Act::Pass(caught_up) => {
                if *caught_up {
                    self.seen = self.target;
                    self.unseen_write = false;
                }
            }
            Act::ApproveShown => {
                // As `meshmedic approve` does: the digest shown, and a standing rollback
                // request withdrawn in the same write.
                if let Some(rem) = self.rem.as_mut()
                    && let Some(d) = rem.published.clone()
                {
                    rem.approved = Some(d);
                    rem.rollback = false;
                    self.approvals += 1;
                }
            }
            Act::ApproveOld => {
                // An approval of a plan that is no longer current. The operator withdraws it
                // once a pass sees it outdated; should the target return to that state before
                // any pass did, the plan is exactly what was approved, so it counts as one.
                if let (Some(rem), Some(d)) = (self.rem.as_mut(), self.old_digests.first()) {
                    rem.approved = Some(d.clone());
                    self.approvals += 1;
                }
            }
            Act::EditFix(v) => {
                if let Some(t) = self.target.as_mut() {
                    t.fix = *v;
                }
            }
            Act::EditOther(v) => {
                if let Some(t) = self.target.as_mut() {
                    if t.other != *v {
                        self.foreign_other = true;
                    }
                    t.other = *v;
                }
            }
            Act::Delete => self.target = None,
            Act::RequestRollback => {
                if let Some(rem) = self.rem.as_mut() {
                    rem.rollback = true;
                }
            }
            Act::PersonsObject(there) => self.persons = *there,
            Act::WithdrawRollback => {
                if let Some(rem) = self.rem.as_mut() {
                    rem.rollback = false;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_lifecycle_matches_the_reference_model(
        apply_mode in any::<bool>(),
        creates in any::<bool>(),
        safe in any::<bool>(),
        acts in proptest::collection::vec(act(), 1..40),
    ) {
        let mut w = World {
            mode: if apply_mode { Mode::Apply } else { Mode::Propose },
            creates,
            safe,
            target: if creates { None } else { Some(Spec { fix: 0, other: 0 }) },
            rem: None,
            original: None,
            written: None,
            foreign_other: false,
            approvals: 0,
            approved_writes: 0,
            old_digests: Vec::new(),
            seen: None,
            unseen_write: false,
            persons: false,
        };
        w.seen = w.target;
        for a in &acts {
            w.person(a);
            if matches!(a, Act::Pass(_)) {
                // The controller settles within a few passes: no unbounded loop of writes.
                let mut n = 0;
                while w.pass() {
                    n += 1;
                    prop_assert!(n < 8, "no fixpoint after {a:?}");
                }
            }
            // Every approved write used up one approval.
            prop_assert!(w.approved_writes <= w.approvals);
            if let Some(rem) = &w.rem {
                prop_assert!(rem.writes <= MAX_WRITES);
            }
        }
    }
}

#[test]
fn a_cause_that_comes_back_is_proposed_again() {
    let p = plan("d1", false);
    let mut r = proposed("d1");
    r.phase = Phase::Resolved;
    r.reason = "CauseGone".into();
    assert_eq!(
        decide(Mode::Propose, Some(&p), None, Some(&r), TargetView::Present),
        Decision::Set {
            phase: Phase::Proposed,
            reason: Reason::Reappeared
        }
    );
}

#[test]
fn a_resolved_remediation_never_stands_beside_its_live_cause() {
    // The chaos run's case: a verified write, undone by a person who had reverted once already
    // while the finding was away (Resolved, reason Reverted); the cause is back with the plan
    // already published. A proposal again, nothing written, in both modes.
    let p = plan("d1", true);
    let mut r = proposed("d1");
    r.phase = Phase::Resolved;
    r.reason = "Reverted".into();
    r.wrote = true;
    r.reverted = true;
    r.writes = 1;
    r.applied_digest = Some("d1".into());
    for mode in [Mode::Propose, Mode::Apply] {
        assert_eq!(
            decide(mode, Some(&p), None, Some(&r), TargetView::Changed),
            Decision::Set {
                phase: Phase::Proposed,
                reason: Reason::Reappeared
            }
        );
    }
    r.phase = Phase::Proposed;
    r.reason = "Reappeared".into();
    assert_eq!(
        decide(Mode::Apply, Some(&p), None, Some(&r), TargetView::Changed),
        Decision::Nothing,
        "no silent re-apply of a reverted fix"
    );
}

#[test]
fn a_failed_write_is_not_retried_until_a_new_plan_or_a_new_approval() {
    let p = plan("d1", true);
    let mut r = proposed("d1");
    r.failed_digest = Some("d1".into());
    r.phase = Phase::Stale;
    r.reason = "Conflict".into();
    assert_eq!(
        decide(Mode::Apply, Some(&p), None, Some(&r), TargetView::Present),
        Decision::Nothing
    );
    r.approved = Some("d1".into());
    assert_eq!(
        decide(Mode::Apply, Some(&p), None, Some(&r), TargetView::Present),
        Decision::Apply { auto: false }
    );
}

#[test]
fn a_rollback_after_the_write_limit_still_runs_and_a_refused_one_waits_for_a_new_request() {
    let mut r = proposed("d1");
    r.wrote = true;
    r.rollback = true;
    r.writes = MAX_WRITES;
    r.phase = Phase::Refused;
    r.reason = "WriteLimit".into();
    assert_eq!(
        decide(Mode::Apply, None, None, Some(&r), TargetView::AsWritten),
        Decision::Rollback
    );
    r.reason = "TargetChanged".into();
    assert_eq!(
        decide(Mode::Apply, None, None, Some(&r), TargetView::AsWritten),
        Decision::Nothing
    );
    // Requested again (the spec changed since the refusal): tried again, field by field.
    r.spec_changed = true;
    assert_eq!(
        decide(Mode::Apply, None, None, Some(&r), TargetView::Changed),
        Decision::Rollback
    );
}

/// A Remediation whose fix created its target, written once.
fn created_and_written() -> RemView {
    RemView {
        published: Some("d1".into()),
        creates: true,
        created: true,
        wrote: true,
        writes: 1,
        resolves: true,
        applied_digest: Some("d1".into()),
        ..Default::default()
    }
}

#[test]
fn a_record_of_an_object_made_theirs_names_the_persons_object_seen_beside_it_later() {
    let by = "DestinationRule a/web configures web.a.svc.cluster.local too".to_string();
    let theirs = RemView {
        reverted: true,
        phase: Phase::Resolved,
        reason: "Reverted".into(),
        ready_message: "someone changed it: it is theirs now".into(),
        beside: Some(by.clone()),
        ..created_and_written()
    };
    assert_eq!(
        decide(
            Mode::Propose,
            None,
            None,
            Some(&theirs),
            TargetView::Changed
        ),
        Decision::Set {
            phase: Phase::Resolved,
            reason: Reason::Reverted
        },
        "written again to name it"
    );
    let said = RemView {
        ready_message: format!(
            "someone changed it: it is theirs now. {by} configures the same thing"
        ),
        ..theirs.clone()
    };
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&said), TargetView::Changed),
        Decision::Nothing,
        "named already"
    );
    let alone = RemView {
        beside: None,
        ..theirs.clone()
    };
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&alone), TargetView::Changed),
        Decision::Nothing
    );
    assert_eq!(
        decide(Mode::Propose, None, None, Some(&theirs), TargetView::Absent),
        Decision::Nothing,
        "deleted since: nothing beside to keep or delete"
    );
}

#[test]
fn an_object_meshmedic_created_goes_as_it_left_it_once_a_persons_configures_the_same_thing() {
    let created = RemView {
        phase: Phase::Resolved,
        reason: "Verified".into(),
        beside: Some("VirtualService a/web routes web.a.svc.cluster.local too".into()),
        ..created_and_written()
    };
    let by = created.beside.clone().unwrap_or_default();
    for mode in [Mode::Propose, Mode::Apply] {
        assert_eq!(
            decide(mode, None, None, Some(&created), TargetView::AsWritten),
            Decision::Supersede { by: by.clone() },
            "{mode:?}: it would hide the person's routing, approved or not"
        );
    }
    assert_eq!(
        decide(Mode::Off, None, None, Some(&created), TargetView::AsWritten),
        Decision::Nothing
    );
    assert_eq!(
        decide(Mode::Apply, None, None, Some(&created), TargetView::Pending),
        Decision::Nothing,
        "decided once the watch shows the write"
    );
    // Edited by a person since: theirs now, a revert as any other.
    assert_eq!(
        decide(Mode::Apply, None, None, Some(&created), TargetView::Changed),
        Decision::Set {
            phase: Phase::Resolved,
            reason: Reason::Reverted
        }
    );
    // A patched object is the person's own: never deleted.
    let patched = RemView {
        created: false,
        creates: false,
        ..created.clone()
    };
    assert_eq!(
        decide(
            Mode::Apply,
            None,
            None,
            Some(&patched),
            TargetView::AsWritten
        ),
        Decision::Nothing
    );
    // Gone, and the person's object goes too: the cause is back, a proposal again.
    let superseded = RemView {
        wrote: false,
        created: false,
        writes: 0,
        applied_digest: None,
        phase: Phase::RolledBack,
        reason: "Superseded".into(),
        beside: None,
        ..created
    };
    assert_eq!(
        decide(
            Mode::Propose,
            None,
            None,
            Some(&superseded),
            TargetView::Absent
        ),
        Decision::Nothing
    );
    assert_eq!(
        decide(
            Mode::Propose,
            Some(&plan("d1", true)),
            None,
            Some(&superseded),
            TargetView::Absent
        ),
        Decision::Set {
            phase: Phase::Proposed,
            reason: Reason::Reappeared
        }
    );
}

/// A target in another namespace: nothing is written where meshmedic is not opted in (the
/// approval waits), and apply mode writes on its own only into another `apply` namespace.
#[test]
fn a_target_in_a_namespace_not_opted_in_is_never_written() {
    let approved = RemView {
        approved: Some("d1".into()),
        ..proposed("d1")
    };
    let elsewhere = |m| PlanView {
        target_mode: Some(m),
        ..plan("d1", true)
    };
    for mode in [Mode::Propose, Mode::Apply] {
        assert_eq!(
            decide(
                mode,
                Some(&elsewhere(Mode::Off)),
                None,
                Some(&approved),
                TargetView::Present
            ),
            Decision::Set {
                phase: Phase::Proposed,
                reason: Reason::TargetNamespaceOff
            }
        );
        assert_eq!(
            decide(
                mode,
                Some(&elsewhere(Mode::Propose)),
                None,
                Some(&approved),
                TargetView::Present
            ),
            Decision::Apply { auto: false }
        );
    }
    let unapproved = proposed("d1");
    assert_eq!(
        decide(
            Mode::Apply,
            Some(&elsewhere(Mode::Propose)),
            None,
            Some(&unapproved),
            TargetView::Present
        ),
        Decision::Nothing
    );
    assert_eq!(
        decide(
            Mode::Apply,
            Some(&elsewhere(Mode::Apply)),
            None,
            Some(&unapproved),
            TargetView::Present
        ),
        Decision::Apply { auto: true }
    );
    let d = |mode, target, rem: &RemView| {
        decide(
            mode,
            Some(&elsewhere(target)),
            None,
            Some(rem),
            TargetView::Present,
        )
    };
    let held_back = Decision::Set {
        phase: Phase::Proposed,
        reason: Reason::TargetNamespaceOff,
    };
    // Apply mode says why it does not apply; propose mode has nothing to say until approved.
    assert_eq!(d(Mode::Apply, Mode::Off, &unapproved), held_back);
    assert_eq!(d(Mode::Propose, Mode::Off, &unapproved), Decision::Nothing);
    // Held back, then that namespace opts in: an ordinary proposal again.
    let held = RemView {
        reason: Reason::TargetNamespaceOff.as_str().into(),
        ..proposed("d1")
    };
    assert_eq!(
        d(Mode::Propose, Mode::Propose, &held),
        Decision::Set {
            phase: Phase::Proposed,
            reason: Reason::Proposed
        }
    );
    assert_eq!(
        d(Mode::Apply, Mode::Propose, &held),
        d(Mode::Propose, Mode::Propose, &held)
    );
    assert_eq!(d(Mode::Propose, Mode::Off, &held), Decision::Nothing);
}
