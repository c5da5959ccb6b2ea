//! Which Istio rule applies where, as istiod decides it.

use super::{Obj, Snapshot, hosts};
use crate::model::istio::{
    ConnectionPool, DestinationRuleSpec, MtlsMode, PeerAuthenticationSpec, SidecarSpec,
    TrafficPolicy, VirtualServiceSpec,
};
use crate::model::selects;
use crate::model::workload::Workload;

/// The DestinationRule a proxy applies for a host, and why.
#[derive(Clone, Debug)]
pub struct AppliedDestinationRule<'a> {
    pub index: usize,
    pub rule: &'a Obj<DestinationRuleSpec>,
    /// Rules that also match but lose (for the evidence).
    pub shadowed: Vec<&'a Obj<DestinationRuleSpec>>,
}

/// A connection pool in force, and where it is written (JSON pointer in the owning object).
#[derive(Clone, Debug, PartialEq)]
pub struct PoolLevel {
    pub pool: ConnectionPool,
    pub pointer: String,
    pub description: String,
}

impl Snapshot {
    /// The DestinationRule Istio applies for `host` on a proxy in `proxy_namespace` with
    /// `proxy_labels`: first the proxy's namespace, then the service's, then the root namespace;
    /// within one, a rule whose `workloadSelector` picks the proxy before one without, then the
    /// most specific host, then the oldest. `exportTo` decides what each namespace can see.
    pub fn destination_rule_for(
        &self,
        host: &str,
        service_namespace: &str,
        proxy_namespace: &str,
        proxy_labels: &crate::model::Labels,
    ) -> Option<AppliedDestinationRule<'_>> {
        let mut namespaces = vec![proxy_namespace, service_namespace, self.root_namespace()];
        namespaces.dedup();
        let mut seen = Vec::new();
        for (step, ns) in namespaces.iter().enumerate() {
            if namespaces[..step].contains(ns) {
                continue;
            }
            let Some(index) = self.by_namespace.get(*ns) else {
                continue;
            };
            let mut candidates: Vec<usize> = index
                .destination_rules
                .iter()
                .copied()
                .filter(|&i| {
                    let dr = &self.destination_rules[i];
                    let rule_host = hosts::resolve(&dr.spec.host, ns, &self.cluster_domain);
                    hosts::matches(&rule_host, host)
                        && hosts::visible(&dr.spec.export_to, ns, proxy_namespace)
                        && dr
                            .spec
                            .workload_selector
                            .as_ref()
                            .is_none_or(|s| selects(s.labels(), proxy_labels))
                })
                .collect();
            // Stable sort keeps age order among equals.
            candidates.sort_by_key(|&i| {
                let dr = &self.destination_rules[i];
                let rule_host = hosts::resolve(&dr.spec.host, ns, &self.cluster_domain);
                std::cmp::Reverse((
                    dr.spec.workload_selector.is_some(),
                    hosts::specificity(&rule_host),
                ))
            });
            seen.extend(candidates);
        }
        let (&first, rest) = seen.split_first()?;
        Some(AppliedDestinationRule {
            index: first,
            rule: &self.destination_rules[first],
            shadowed: rest.iter().map(|&i| &self.destination_rules[i]).collect(),
        })
    }

    /// The Sidecar resource that configures a workload's proxy: one whose `workloadSelector`
    /// picks it, else its namespace's default, else the root namespace's default.
    pub fn sidecar_for(&self, workload: &Workload) -> Option<(usize, &Obj<SidecarSpec>)> {
        let in_ns = |ns: &str, with_selector: bool| {
            self.by_namespace.get(ns).and_then(|idx| {
                idx.sidecars.iter().copied().find(|&i| {
                    let sc = &self.sidecars[i];
                    match (&sc.spec.workload_selector, with_selector) {
                        (Some(sel), true) => selects(sel.labels(), &workload.pod_labels),
                        (None, false) => true,
                        _ => false,
                    }
                })
            })
        };
        in_ns(&workload.meta.namespace, true)
            .or_else(|| in_ns(&workload.meta.namespace, false))
            .or_else(|| in_ns(self.root_namespace(), false))
            .map(|i| (i, &self.sidecars[i]))
    }

    /// The connection pool levels that shape a workload's *inbound* cluster for a port, highest
    /// precedence first: Sidecar `ingress[].connectionPool` for that port, Sidecar
    /// `inboundConnectionPool`, DestinationRule `portLevelSettings` for the service port, then the
    /// DestinationRule's top level. Each level replaces the whole pool of the ones below it.
    pub fn inbound_pool_levels(
        &self,
        workload: &Workload,
        target_port: i32,
        applied: Option<&AppliedDestinationRule<'_>>,
        service_port: i32,
    ) -> Vec<PoolLevel> {
        let mut levels = Vec::new();
        // The root namespace's default Sidecar applies where a namespace has none of its own.
        if let Some((_, sidecar)) = self.sidecar_for(workload) {
            for (i, ingress) in sidecar.spec.ingress.iter().enumerate() {
                if ingress.port.as_ref().map(|p| p.number as i32) == Some(target_port)
                    && let Some(pool) = &ingress.connection_pool
                {
                    levels.push(PoolLevel {
                        pool: pool.clone(),
                        pointer: format!("/spec/ingress/{i}/connectionPool"),
                        description: format!(
                            "{} ingress[{i}].connectionPool (port {target_port})",
                            sidecar.describe()
                        ),
                    });
                }
            }
            if let Some(pool) = &sidecar.spec.inbound_connection_pool {
                levels.push(PoolLevel {
                    pool: pool.clone(),
                    pointer: "/spec/inboundConnectionPool".to_string(),
                    description: format!("{} inboundConnectionPool", sidecar.describe()),
                });
            }
        }
        if let Some(applied) = applied {
            let policy = applied.rule.spec.traffic_policy.as_ref();
            levels.extend(dr_pool_levels(
                policy,
                "/spec/trafficPolicy",
                service_port,
                &applied.rule.describe(),
            ));
        }
        levels
    }

    /// Mesh-bound VirtualServices (no `gateways`, or `mesh` among them) for a host, visible from
    /// `from_namespace`.
    pub fn virtual_services_for(
        &self,
        host: &str,
        from_namespace: &str,
    ) -> Vec<(usize, &Obj<VirtualServiceSpec>)> {
        let mut candidates: Vec<usize> = self
            .rules_by_host
            .virtual_services
            .get(&host.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .chain(&self.rules_by_host.virtual_services_wildcard)
            .copied()
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .map(|i| (i, &self.virtual_services[i]))
            .filter(|(_, vs)| {
                (vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh"))
                    && hosts::visible(&vs.spec.export_to, &vs.meta.namespace, from_namespace)
                    && vs.spec.hosts.iter().any(|h| {
                        hosts::matches(
                            &hosts::resolve(h, &vs.meta.namespace, &self.cluster_domain),
                            host,
                        )
                    })
            })
            .collect()
    }

    /// The effective PeerAuthentication mode for a workload port: a workload-selecting policy
    /// (its `portLevelMtls` first), then the namespace-wide one, then the root namespace's;
    /// `UNSET` inherits; PERMISSIVE when nothing says otherwise.
    pub fn mtls_mode(&self, workload: &Workload, port: i32) -> (MtlsMode, Option<String>) {
        let policies_in = |ns: &str| -> Vec<&Obj<PeerAuthenticationSpec>> {
            self.by_namespace
                .get(ns)
                .map(|idx| {
                    idx.peer_authentications
                        .iter()
                        .map(|&i| &self.peer_authentications[i])
                        .collect()
                })
                .unwrap_or_default()
        };
        let ns_policies = policies_in(&workload.meta.namespace);
        let workload_policy = ns_policies.iter().find(|p| {
            p.spec.selector.as_ref().is_some_and(|s| {
                !s.labels().is_empty() && selects(s.labels(), &workload.pod_labels)
            })
        });
        let namespace_policy = ns_policies.iter().find(|p| {
            p.spec
                .selector
                .as_ref()
                .is_none_or(|s| s.labels().is_empty())
        });
        let root = self.root_namespace();
        let root_policy = if root == workload.meta.namespace {
            None
        } else {
            policies_in(root).into_iter().find(|p| {
                p.spec
                    .selector
                    .as_ref()
                    .is_none_or(|s| s.labels().is_empty())
            })
        };
        let explicit = |m: Option<MtlsMode>| m.filter(|m| *m != MtlsMode::Unset);
        if let Some(p) = workload_policy {
            if let Some(mode) = explicit(
                p.spec
                    .port_level_mtls
                    .get(&port.to_string())
                    .and_then(|m| m.mode),
            ) {
                return (
                    mode,
                    Some(format!("{} portLevelMtls[{port}]", p.describe())),
                );
            }
            if let Some(mode) = explicit(p.spec.mtls.as_ref().and_then(|m| m.mode)) {
                return (mode, Some(p.describe()));
            }
        }
        for p in namespace_policy.into_iter().chain(root_policy.as_ref()) {
            if let Some(mode) = explicit(p.spec.mtls.as_ref().and_then(|m| m.mode)) {
                return (mode, Some(p.describe()));
            }
        }
        (MtlsMode::Permissive, None)
    }
}

/// DestinationRule pool levels for one port: `portLevelSettings` for it, then the top level.
pub fn dr_pool_levels(
    policy: Option<&TrafficPolicy>,
    pointer: &str,
    port: i32,
    rule: &str,
) -> Vec<PoolLevel> {
    let mut levels = Vec::new();
    let Some(policy) = policy else {
        return levels;
    };
    for (i, pls) in policy.port_level_settings.iter().enumerate() {
        if pls.port.as_ref().map(|p| p.number as i32) == Some(port)
            && let Some(pool) = &pls.connection_pool
        {
            levels.push(PoolLevel {
                pool: pool.clone(),
                pointer: format!("{pointer}/portLevelSettings/{i}/connectionPool"),
                description: format!("{rule} portLevelSettings[{i}] (port {port})"),
            });
        }
    }
    if let Some(pool) = &policy.connection_pool {
        levels.push(PoolLevel {
            pool: pool.clone(),
            pointer: format!("{pointer}/connectionPool"),
            description: format!("{rule} trafficPolicy.connectionPool"),
        });
    }
    levels
}
