use serde_json::json;

use super::*;
use crate::analysis::test_support::{NGINX_WEB, snapshot};
use crate::analysis::{Finding, analyze};
use crate::model::remediation::{RemediationAction, RemediationStatus};

/// The nginx service plus a mesh config under which idle-timeout-mismatch is its only finding.
const MESH_CONFIG: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig: {holdApplicationUntilProxyStarts: true}
    defaultHttpRetryPolicy: {attempts: 2, retryOn: "reset,503"}
"#;

fn findings() -> Vec<Finding> {
    analyze(&snapshot(&format!("{NGINX_WEB}---\n{MESH_CONFIG}"))).findings
}

/// A Remediation as the API server would hold it after meshmedic wrote it for `f`.
fn existing(f: &Finding, phase: Option<Phase>, approved: bool) -> Remediation {
    let mut spec: RemediationSpec = serde_json::from_value(desired_spec(f)).expect("spec");
    spec.approved = approved;
    let mut r = Remediation::new(&remediation_name(f.code, &f.remediation.target), spec);
    r.metadata.namespace = Some("shop".into());
    r.metadata.generation = Some(1);
    r.status = phase.map(|phase| RemediationStatus {
        phase,
        observed_generation: Some(1),
        ..Default::default()
    });
    r
}

fn no_gitops(_: &ObjectRef) -> Option<String> {
    None
}

#[test]
fn names_are_stable_valid_and_distinct() {
    let t = ObjectRef {
        api_version: "networking.istio.io/v1".into(),
        kind: "DestinationRule".into(),
        namespace: "shop".into(),
        name: "Web.V1".into(),
    };
    let a = remediation_name(Code::IdleTimeoutMismatch, &t);
    assert_eq!(a, remediation_name(Code::IdleTimeoutMismatch, &t));
    assert!(
        a.starts_with("idle-timeout-mismatch-destinationrule-web-v1-"),
        "{a}"
    );
    assert!(
        a.len() <= 63
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    );
    assert_ne!(a, remediation_name(Code::MissingResetRetry, &t));
    let long = ObjectRef {
        name: "x".repeat(200),
        ..t.clone()
    };
    assert!(remediation_name(Code::IdleTimeoutMismatch, &long).len() <= 63);
}

#[test]
fn off_namespaces_get_nothing() {
    let fs = findings();
    let refs: Vec<&Finding> = fs.iter().collect();
    assert!(plan_namespace(Mode::Off, &refs, &[], &no_gitops).is_empty());
    assert_eq!(Mode::from_annotation(None), Mode::Off);
    assert_eq!(Mode::from_annotation(Some("bogus")), Mode::Off);
    assert_eq!(Mode::from_annotation(Some("apply")), Mode::Apply);
}

#[test]
fn new_findings_are_upserted_and_not_applied_in_the_same_pass() {
    let fs = findings();
    let refs: Vec<&Finding> = fs.iter().collect();
    let steps = plan_namespace(Mode::Apply, &refs, &[], &no_gitops);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(
        matches!(&steps[0], Step::Upsert { name, spec } if name.starts_with("idle-timeout-mismatch-") && spec["safeToAutoApply"] == json!(true))
    );
    assert!(steps.iter().all(|s| !matches!(s, Step::Apply { .. })));
}

#[test]
fn unchanged_proposals_cause_no_writes_in_propose_mode() {
    let fs = findings();
    let refs: Vec<&Finding> = fs.iter().collect();
    let r = existing(&fs[0], Some(Phase::Proposed), false);
    assert!(plan_namespace(Mode::Propose, &refs, &[&r], &no_gitops).is_empty());
}

#[test]
fn safe_fixes_apply_in_apply_mode_and_approved_ones_in_any() {
    let fs = findings();
    let refs: Vec<&Finding> = fs.iter().collect();
    let r = existing(&fs[0], Some(Phase::Proposed), false);
    assert!(matches!(
        plan_namespace(Mode::Apply, &refs, &[&r], &no_gitops).as_slice(),
        [Step::Apply { .. }]
    ));
    let r = existing(&fs[0], Some(Phase::Proposed), true);
    assert!(matches!(
        plan_namespace(Mode::Propose, &refs, &[&r], &no_gitops).as_slice(),
        [Step::Apply { .. }]
    ));
}

#[test]
fn unsafe_fixes_wait_for_approval_even_in_apply_mode() {
    let fs = findings();
    let mut f = fs[0].clone();
    f.remediation.safe_to_auto_apply = false;
    let r = existing(&f, Some(Phase::Proposed), false);
    assert!(plan_namespace(Mode::Apply, &[&f], &[&r], &no_gitops).is_empty());
}

#[test]
fn applied_fixes_are_not_applied_again() {
    let fs = findings();
    let refs: Vec<&Finding> = fs.iter().collect();
    for phase in [Phase::Applied, Phase::RolledBack, Phase::Resolved] {
        let r = existing(&fs[0], Some(phase), true);
        let steps = plan_namespace(Mode::Apply, &refs, &[&r], &no_gitops);
        assert!(
            !steps.iter().any(|s| matches!(s, Step::Apply { .. })),
            "{phase:?}: {steps:?}"
        );
    }
}

#[test]
fn a_changed_plan_is_upserted_before_it_can_be_applied() {
    let fs = findings();
    let mut r = existing(&fs[0], Some(Phase::Stale), true);
    r.spec.message = "an older plan".into();
    let refs: Vec<&Finding> = fs.iter().collect();
    let steps = plan_namespace(Mode::Propose, &refs, &[&r], &no_gitops);
    assert!(
        matches!(steps.as_slice(), [Step::Upsert { .. }]),
        "{steps:?}"
    );
}

#[test]
fn a_re_planned_stale_fix_is_applied_again() {
    let fs = findings();
    let refs: Vec<&Finding> = fs.iter().collect();
    let mut r = existing(&fs[0], Some(Phase::Stale), true);
    r.metadata.generation = Some(2); // the spec was re-planned after the status was written
    assert!(matches!(
        plan_namespace(Mode::Propose, &refs, &[&r], &no_gitops).as_slice(),
        [Step::Apply { .. }]
    ));
}

#[test]
fn gitops_targets_get_proposals_only() {
    let fs = findings();
    let refs: Vec<&Finding> = fs.iter().collect();
    let r = existing(&fs[0], Some(Phase::Proposed), true);
    let argo = |_: &ObjectRef| Some("label argocd.argoproj.io/instance".to_string());
    let steps = plan_namespace(Mode::Apply, &refs, &[&r], &argo);
    assert!(
        matches!(&steps[..], [Step::Hold { reason, .. }] if reason.contains("GitOps")),
        "{steps:?}"
    );
    let labels = BTreeMap::from([(
        "kustomize.toolkit.fluxcd.io/name".to_string(),
        "apps".to_string(),
    )]);
    assert!(gitops_owner(&labels, &BTreeMap::new()).is_some());
    assert!(gitops_owner(&BTreeMap::new(), &BTreeMap::new()).is_none());
}

#[test]
fn a_vanished_cause_is_resolved_once() {
    let fs = findings();
    let r = existing(&fs[0], Some(Phase::Proposed), false);
    let steps = plan_namespace(Mode::Propose, &[], &[&r], &no_gitops);
    assert!(matches!(steps.as_slice(), [Step::Resolve { .. }]));
    let r = existing(&fs[0], Some(Phase::Resolved), false);
    assert!(plan_namespace(Mode::Propose, &[], &[&r], &no_gitops).is_empty());
}

#[test]
fn rollback_of_an_applied_fix_even_after_its_cause_is_gone() {
    let fs = findings();
    let refs: Vec<&Finding> = fs.iter().collect();
    let mut r = existing(&fs[0], Some(Phase::Applied), true);
    r.spec.rollback = true;
    assert!(matches!(
        plan_namespace(Mode::Propose, &refs, &[&r], &no_gitops).as_slice(),
        [Step::Rollback { .. }]
    ));
    let mut r = existing(&fs[0], Some(Phase::Resolved), true);
    r.spec.rollback = true;
    if let Some(s) = r.status.as_mut() {
        s.target_resource_version_after = Some("42".into());
    }
    assert!(matches!(
        plan_namespace(Mode::Propose, &[], &[&r], &no_gitops).as_slice(),
        [Step::Rollback { .. }]
    ));
    // A Resolved one that was never applied has nothing to roll back.
    let mut r = existing(&fs[0], Some(Phase::Resolved), false);
    r.spec.rollback = true;
    assert!(plan_namespace(Mode::Propose, &[], &[&r], &no_gitops).is_empty());
    assert_eq!(r.spec.action, RemediationAction::Create);
}

#[test]
fn a_failed_rollback_of_a_vanished_cause_is_not_retried_in_a_loop() {
    let fs = findings();
    for phase in [Phase::Failed, Phase::Stale] {
        let mut r = existing(&fs[0], Some(phase), true);
        r.spec.rollback = true;
        if let Some(s) = r.status.as_mut() {
            s.target_resource_version_after = Some("42".into());
        }
        assert!(
            plan_namespace(Mode::Propose, &[], &[&r], &no_gitops).is_empty(),
            "{phase:?}"
        );
    }
}
