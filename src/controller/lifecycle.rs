//! The Remediation lifecycle as one pure state machine: from what the analysis plans for a target
//! now, what the Remediation records, and what the target looks like, the one thing to do next.
//! The controller only executes these decisions (see `mod.rs`); nothing here talks to the API.
//!
//! ```text
//!            new finding                approvedDigest == planDigest
//!   (none) ─────────────▶ Proposed ─────────────────────────────────▶ (write) ─▶ Applied
//!                          ▲    │  (apply mode: safe plan, settled, each digest once)  │
//!          plan changed /  │    │ cause gone (nothing written)                         │ write seen,
//!          fix reverted    │    ▼                                                      │ re-analysed
//!                          │  Resolved(CauseGone), or      ┌───────────────────────────┤
//!                          │  deleted if it stood < settle │                           │
//!                          │                               ▼                           ▼
//!                          └──────────────── Applied + Verified=False        Resolved + Verified=True
//!                                            (Ineffective / Mitigation)
//!   rollback: true ─▶ target as meshmedic left it? ─ yes ─▶ restore original ─▶ RolledBack
//!                                                  └ no ──▶ Refused (nothing written)
//!   RolledBack, request standing, target changed since ─▶ new plan published, still RolledBack
//!                     (written only once approved; approving withdraws the request)
//!   created, and a person's object now configures the same thing, as left ─▶ delete it
//!                                                  ─▶ RolledBack (Superseded)
//!   write fails ─▶ Failed / Stale (not retried until the plan changes); write limit ─▶ Refused
//!   target in another namespace that is not opted in ─▶ Proposed (TargetNamespaceOff)
//! ```

use crate::model::remediation::Phase;

use super::plan::Mode;

/// At most this many writes to one target per Remediation (its first write, re-plans after a
/// change, re-approvals after a revert). Beyond it the Remediation is Refused until a person
/// looks: no tug-of-war with a person or another controller.
pub const MAX_WRITES: u32 = 3;

/// What the analysis plans for the target now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanView {
    pub digest: String,
    pub safe: bool,
    pub resolves: bool,
    /// The plan changes nothing (the fix is already in place).
    pub noop: bool,
    /// The plan has stood, published and unchanged, for the apply settle time: apply mode
    /// writes only settled plans (a half-applied namespace's findings go away by themselves).
    pub settled: bool,
    /// The mode of the target's namespace, when the target is in another namespace than the
    /// Remediation (a VirtualService or DestinationRule elsewhere that applies to the service):
    /// nothing is written in a namespace that is not opted in, and only an `apply` namespace
    /// gets automatic writes.
    pub target_mode: Option<Mode>,
}

/// What the Remediation records (spec and status).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RemView {
    /// `spec.planDigest`: the plan published for review.
    pub published: Option<String>,
    /// `spec.approvedDigest`.
    pub approved: Option<String>,
    pub rollback: bool,
    pub allow_live_patch: bool,
    /// `spec.action == create`.
    pub creates: bool,
    pub phase: Phase,
    /// The reason of the Ready condition.
    pub reason: String,
    pub applied_digest: Option<String>,
    pub failed_digest: Option<String>,
    /// `spec.resolves` of what was written.
    pub resolves: bool,
    /// meshmedic wrote the target and has not rolled it back (`status.written`).
    pub wrote: bool,
    /// The original was recorded as absent (meshmedic created the object).
    pub created: bool,
    pub writes: u32,
    pub reverted: bool,
    /// The spec changed since the status was last written (`metadata.generation` above
    /// `status.observedGeneration`): e.g. a rollback requested again after a refusal.
    pub spec_changed: bool,
    /// Its plan was published less than the settle time ago (see `PlanView::settled`).
    pub young: bool,
    /// meshmedic created the target and a person's object now configures the same thing
    /// (`Snapshot::created_object_beside`), named for messages.
    pub beside: Option<String>,
    /// The message of the Ready condition as last written.
    pub ready_message: String,
}

/// The target as the watch shows it, relative to meshmedic's last write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetView {
    Absent,
    /// Exists; meshmedic has not written it (or nothing to compare).
    Present,
    /// The fields meshmedic changed hold the values it wrote, and the write has been seen.
    AsWritten,
    /// Someone changed the fields meshmedic wrote.
    Changed,
    /// meshmedic's last write has not reached the watch yet.
    Pending,
}

/// Why a status is what it is (the Ready condition's reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A proposal whose approval names another digest.
    ApprovalOutdated,
    GitOpsManaged,
    WriteLimit,
    Verified,
    Ineffective,
    Mitigation,
    CauseGone,
    Reverted,
    TargetChanged,
    TargetDeleted,
    NothingWritten,
    /// The finding came back after it had gone (nothing written meanwhile).
    Reappeared,
    /// meshmedic deleted an object it had created, as it left it, because a person's object
    /// now configures the same thing.
    Superseded,
    /// The target is in a namespace that is not opted in: nothing is written there.
    TargetNamespaceOff,
    /// A proposal again, waiting for an approval (that namespace has opted in since).
    Proposed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ApprovalOutdated => "ApprovalOutdated",
            Reason::GitOpsManaged => "GitOpsManaged",
            Reason::WriteLimit => "WriteLimit",
            Reason::Verified => "Verified",
            Reason::Ineffective => "Ineffective",
            Reason::Mitigation => "Mitigation",
            Reason::CauseGone => "CauseGone",
            Reason::Reverted => "Reverted",
            Reason::TargetChanged => "TargetChanged",
            Reason::TargetDeleted => "TargetDeleted",
            Reason::NothingWritten => "NothingWritten",
            Reason::Reappeared => "Reappeared",
            Reason::Superseded => "Superseded",
            Reason::TargetNamespaceOff => "TargetNamespaceOff",
            Reason::Proposed => "Proposed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Publish the current plan (and its digest) for review: phase Proposed, or, while a
    /// rollback request stands (`rolled_back`), phase RolledBack: the target changed after it was
    /// restored, and the plan shown is the one for it now, written only once approved (approving
    /// withdraws the request).
    Publish {
        first: bool,
        rolled_back: bool,
    },
    /// Write the current plan to the target. `auto`: apply mode, no approval.
    Apply {
        auto: bool,
    },
    /// Restore the target to `status.original`.
    Rollback,
    /// Delete the object meshmedic created, as it left it: `by` (a person's object) now
    /// configures the same thing.
    Supersede {
        by: String,
    },
    /// Record a phase and reason (no write to the target).
    Set {
        phase: Phase,
        reason: Reason,
    },
    /// Delete the Remediation: a first proposal, untouched by any person, whose cause went away
    /// within the settle time. A namespace applied object by object leaves no trail of
    /// proposals for its half-applied states.
    Withdraw,
}

/// The next step for one target. Pure; see the module docs for the diagram.
pub fn decide(
    mode: Mode,
    plan: Option<&PlanView>,
    gitops: Option<&str>,
    rem: Option<&RemView>,
    target: TargetView,
) -> Decision {
    use Decision::*;
    if mode == Mode::Off {
        return Nothing;
    }
    let Some(rem) = rem else {
        return if plan.is_some() {
            Publish {
                first: true,
                rolled_back: false,
            }
        } else {
            Nothing
        };
    };
    let set = |phase: Phase, reason: Reason| {
        if rem.phase == phase && rem.reason == reason.as_str() {
            Nothing
        } else {
            Set { phase, reason }
        }
    };

    // 1. A rollback request: restore exactly, or refuse and write nothing.
    if rem.rollback {
        if !rem.wrote {
            if rem.phase != Phase::RolledBack {
                return set(Phase::RolledBack, Reason::NothingWritten);
            }
            // Nothing of meshmedic's is in place, and the target has changed since (its plan is
            // no longer the one shown): the request stands, so nothing is written, but the
            // Remediation shows what approving would write now instead of a plan for a target
            // that is gone. Not while meshmedic's own restore has yet to reach the watch.
            return match plan {
                Some(p)
                    if rem.published.as_deref() != Some(p.digest.as_str())
                        && target != Target::Pending =>
                {
                    Publish {
                        first: false,
                        rolled_back: true,
                    }
                }
                _ => Nothing,
            };
        }
        // A refused rollback is not retried on its own (the view may lag behind the edit that
        // made it refuse), only once the request is renewed (`meshmedic rollback` again, which
        // withdraws and renews it): the spec has changed since the refusal was recorded.
        if rem.phase == Phase::Refused
            && matches!(rem.reason.as_str(), "TargetChanged" | "TargetDeleted")
            && !rem.spec_changed
        {
            return Nothing;
        }
        // Changed: the executor checks field by field on the live object (a field put back by
        // hand is fine; one changed to anything else refuses, nothing written).
        return match target {
            Target::Pending => Nothing,
            Target::AsWritten | Target::Changed => Rollback,
            Target::Absent if rem.created => Rollback,
            Target::Absent => set(Phase::Refused, Reason::TargetDeleted),
            Target::Present => set(Phase::Refused, Reason::TargetChanged),
        };
    }

    // 1b. An object meshmedic created, now beside a person's that configures the same thing:
    //     one of the two is lost (Istio keeps one VirtualService per host on sidecars, merges
    //     rules for one host keeping the oldest's policy). meshmedic's goes, approved or not, and
    //     only as meshmedic left it: one a person edited is theirs (step 2).
    if let Some(by) = &rem.beside
        && rem.created
        && rem.wrote
        && !rem.reverted
    {
        match target {
            Target::AsWritten => return Supersede { by: by.clone() },
            Target::Pending => return Nothing,
            _ => {}
        }
    }

    // 2. Someone else changed what meshmedic wrote: a new situation, never a silent re-apply.
    let undone = target == Target::Changed || (target == Target::Absent && rem.created);
    if rem.wrote && !rem.reverted && undone {
        return Set {
            phase: if plan.is_some() {
                Phase::Proposed
            } else {
                Phase::Resolved
            },
            reason: Reason::Reverted,
        };
    }
    if rem.wrote && target == Target::Absent && !rem.created {
        return set(Phase::Stale, Reason::TargetDeleted);
    }
    // 2b. Theirs already, and a person's object stands beside it that the record does not name
    //     (it was recorded before that object was seen, or another one stands there now): the
    //     record is written again, so it says which one to keep or delete.
    if rem.reverted
        && rem.created
        && rem.reason == Reason::Reverted.as_str()
        && target != Target::Absent
        && target != Target::Pending
        && rem
            .beside
            .as_ref()
            .is_some_and(|by| !rem.ready_message.contains(by.as_str()))
    {
        return Set {
            phase: rem.phase,
            reason: Reason::Reverted,
        };
    }

    // 3. Verify a write once the watch has shown it (this pass analysed the written target).
    if rem.wrote
        && target == Target::AsWritten
        && rem.phase == Phase::Applied
        && rem.reason == "Applied"
    {
        return if !rem.resolves {
            Set {
                phase: Phase::Applied,
                reason: Reason::Mitigation,
            }
        } else if plan.is_none() {
            Set {
                phase: Phase::Resolved,
                reason: Reason::Verified,
            }
        } else {
            Set {
                phase: Phase::Applied,
                reason: Reason::Ineffective,
            }
        };
    }

    // 4. No finding for the target any more.
    let Some(plan) = plan else {
        if !rem.wrote && !rem.creates && target == Target::Absent {
            return set(Phase::Stale, Reason::TargetDeleted);
        }
        // A deleted target is a person's act, recorded above; a cause that went away while the
        // rest of a namespace arrived leaves nothing to record.
        let untouched = !rem.wrote
            && rem.phase == Phase::Proposed
            && rem.reason == "Proposed"
            && rem.approved.is_none()
            && !rem.allow_live_patch;
        if rem.young && untouched {
            return Withdraw;
        }
        if !rem.wrote
            && !matches!(
                rem.phase,
                Phase::Resolved | Phase::RolledBack | Phase::Refused | Phase::Stale
            )
        {
            return set(Phase::Resolved, Reason::CauseGone);
        }
        return Nothing;
    };

    // 5. A mitigation already in place (its finding stays by design): no re-plan loop.
    if rem.wrote && !rem.resolves && plan.noop {
        return Nothing;
    }

    // 5b. A cause that went away and came back with the plan already published: a proposal
    //     again (a changed plan is published by step 6). Whatever resolved it before (it went
    //     away by itself, a verified write since undone by someone who had already reverted
    //     once): a Resolved Remediation never stands beside its live cause, and nothing is
    //     re-applied without a new approval (the executor removes an approval the cause
    //     outlived before it records `Reappeared`).
    let resolved_before = rem.phase == Phase::Resolved
        || (!rem.wrote
            && matches!(
                rem.reason.as_str(),
                "CauseGone" | "TargetDeleted" | "Superseded"
            ));
    if resolved_before
        && rem.published.as_deref() == Some(plan.digest.as_str())
        && target != Target::Pending
    {
        return set(Phase::Proposed, Reason::Reappeared);
    }

    // 6. A changed plan is published before anything can approve or apply it.
    if rem.published.as_deref() != Some(plan.digest.as_str()) {
        return Publish {
            first: false,
            rolled_back: false,
        };
    }
    if target == Target::Pending {
        return Nothing;
    }

    // 7. Apply only the plan approved by digest, or (apply mode) a safe plan never written nor
    //    failed yet. An approval is used up by the attempt it allows, successful or not.
    let approved = rem.approved.as_deref() == Some(plan.digest.as_str());
    let already = rem.applied_digest.as_deref() == Some(plan.digest.as_str());
    let failed = rem.failed_digest.as_deref() == Some(plan.digest.as_str());
    let target_mode = plan.target_mode.unwrap_or(mode);
    let auto_here =
        mode == Mode::Apply && plan.safe && plan.settled && !rem.reverted && !already && !failed;
    let auto = auto_here && target_mode == Mode::Apply;
    // The target's namespace has opted in since it held the plan back: an ordinary proposal
    // until approved (or applied, in two `apply` namespaces).
    if rem.reason == Reason::TargetNamespaceOff.as_str()
        && target_mode != Mode::Off
        && !approved
        && !auto
    {
        return set(Phase::Proposed, Reason::Proposed);
    }
    if approved && !(already && target == Target::AsWritten) || auto_here {
        // Neither apply mode nor an approval given in this namespace opens another that is not
        // opted in; the approval is kept, and used once that namespace is.
        if target_mode == Mode::Off {
            return set(Phase::Proposed, Reason::TargetNamespaceOff);
        }
        // A target namespace in `propose` mode: written once approved, never on its own.
        if !approved && !auto {
            return Nothing;
        }
        if gitops.is_some() && !rem.allow_live_patch {
            return set(Phase::Proposed, Reason::GitOpsManaged);
        }
        if rem.writes >= MAX_WRITES {
            return set(Phase::Refused, Reason::WriteLimit);
        }
        return Apply { auto: !approved };
    }
    // Not deduplicated like the others: the executor withdraws the outdated approval with this
    // status, so a Remediation still carrying one (recorded by an earlier version) loses it.
    if rem.approved.is_some() && !approved && !rem.wrote {
        return Set {
            phase: Phase::Proposed,
            reason: Reason::ApprovalOutdated,
        };
    }
    Nothing
}

use TargetView as Target;

#[cfg(test)]
mod tests;
