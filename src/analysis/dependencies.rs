//! Which kinds of object each detector reads. A finding is only as true as the stores it was
//! computed from: when one of these kinds has not synced (its CRD missing, RBAC forbidding it,
//! the apiserver down), an empty store reads as "there is none", and the finding (and the fix
//! planned from it) may be false. The operator withholds such findings (see
//! `controller::sync`).
//!
//! Read from the detectors themselves (keep in step when a detector starts reading a kind):
//! - every detector reads Namespaces (opt-in, injection labels), the workloads (and istiod's
//!   Deployment for the Istio version), the mesh config and injector values (ConfigMaps in the
//!   root namespace), and Services (which workloads a finding is about, the `service` field);
//! - `idle-timeout-mismatch`: DestinationRules (`destination_rule_for`, `destination_rules_naming`)
//!   and Sidecars (`inbound_pool_levels`, `sidecar_for`) — an empty DestinationRule store would
//!   propose creating a DestinationRule that exists;
//! - `missing-reset-retry`: VirtualServices (`virtual_services_for`) and HTTPRoutes
//!   (`mesh_routes_of`: no VirtualService is proposed for a Service a route attaches to);
//! - `listener-change-503`: EnvoyFilters and Telemetries (the metric changes), VirtualServices and
//!   HTTPRoutes (the same retry analysis as `missing-reset-retry`);
//! - `sidecar-lifecycle`: nothing more (the mesh profile, from the common kinds);
//! - `localhost-binding`: Sidecars (ingress listeners, `sidecar_for`);
//! - `mtls-probe-failure`: PeerAuthentications (`mtls_mode`).

use std::collections::BTreeSet;

use super::Code;

/// Workload kinds (a bare Pod, ReplicaSet or Job is a workload too; so is Argo Rollouts'
/// Rollout).
pub const WORKLOAD_KINDS: [&str; 8] = [
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Rollout",
];

/// Kinds every detector reads besides the workloads.
pub const COMMON_KINDS: [&str; 3] = ["Namespace", "Service", "ConfigMap"];

/// The kinds `code`'s detector reads, beyond the common ones.
pub fn specific_kinds(code: Code) -> &'static [&'static str] {
    match code {
        Code::IdleTimeoutMismatch => &["DestinationRule", "Sidecar"],
        Code::MissingResetRetry => &["VirtualService", "HTTPRoute"],
        Code::ListenerChange503 => &["VirtualService", "HTTPRoute", "EnvoyFilter", "Telemetry"],
        Code::SidecarLifecycle => &[],
        Code::LocalhostBinding => &["Sidecar"],
        Code::MtlsProbeFailure => &["PeerAuthentication"],
    }
}

/// Every kind `code`'s detector reads.
pub fn kinds_read(code: Code) -> BTreeSet<&'static str> {
    COMMON_KINDS
        .iter()
        .chain(WORKLOAD_KINDS.iter())
        .chain(specific_kinds(code).iter())
        .copied()
        .collect()
}

/// The kinds `code` reads that are among `unsynced`, sorted; empty when its view is whole.
pub fn missing_for(code: Code, unsynced: &BTreeSet<String>) -> Vec<String> {
    kinds_read(code)
        .into_iter()
        .filter(|k| unsynced.contains(*k))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kinds: &[&str]) -> BTreeSet<String> {
        kinds.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn idle_timeout_reads_destination_rules_and_sidecars() {
        let k = kinds_read(Code::IdleTimeoutMismatch);
        assert!(k.contains("DestinationRule") && k.contains("Sidecar"));
        assert!(!k.contains("VirtualService"));
    }

    #[test]
    fn a_missing_destination_rule_store_touches_only_idle_timeout() {
        let unsynced = set(&["DestinationRule"]);
        let hit: Vec<Code> = Code::ALL
            .into_iter()
            .filter(|c| !missing_for(*c, &unsynced).is_empty())
            .collect();
        assert_eq!(hit, vec![Code::IdleTimeoutMismatch]);
    }

    #[test]
    fn a_missing_core_kind_touches_every_code() {
        for kind in ["Pod", "Service", "Namespace", "Deployment", "ConfigMap"] {
            let unsynced = set(&[kind]);
            for c in Code::ALL {
                assert_eq!(missing_for(c, &unsynced), vec![kind.to_string()], "{c}");
            }
        }
    }

    #[test]
    fn listener_change_reads_what_its_retry_analysis_reads() {
        let ours = kinds_read(Code::ListenerChange503);
        assert!(kinds_read(Code::MissingResetRetry).is_subset(&ours));
        assert_eq!(
            missing_for(
                Code::ListenerChange503,
                &set(&["Telemetry", "EnvoyFilter", "Other"])
            ),
            vec!["EnvoyFilter".to_string(), "Telemetry".to_string()]
        );
    }

    #[test]
    fn nothing_unsynced_withholds_nothing() {
        for c in Code::ALL {
            assert!(missing_for(c, &BTreeSet::new()).is_empty());
        }
    }
}
