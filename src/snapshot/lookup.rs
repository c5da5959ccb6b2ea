//! Which Istio rule applies where, as istiod decides it.

use super::{Obj, Snapshot, hosts};
use crate::model::istio::{
    ConnectionPool, DestinationRuleSpec, MtlsMode, PeerAuthenticationSpec, SidecarSpec,
    TrafficPolicy, VirtualServiceSpec,
};
use crate::model::workload::Workload;
use crate::model::{ObjectRef, keys, selects};

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
        // Only the rules naming this host or a wildcard, not every rule of each namespace: a
        // namespace with thousands of services made each lookup scan thousands of rules (10,000
        // services in one namespace took 4 s instead of 0.4 s; README, Benchmarks).
        let naming = self
            .rules_by_host
            .destination_rules
            .get(&host.to_ascii_lowercase());
        let mut seen = Vec::new();
        for (step, ns) in namespaces.iter().enumerate() {
            if namespaces[..step].contains(ns) {
                continue;
            }
            let mut candidates: Vec<usize> = naming
                .into_iter()
                .flatten()
                .chain(&self.rules_by_host.destination_rules_wildcard)
                .copied()
                .filter(|&i| self.destination_rules[i].meta.namespace == *ns)
                .collect();
            // In snapshot order, as the namespace's list was: the stable sort below keeps it
            // among equals.
            candidates.sort_unstable();
            candidates.retain(|&i| {
                let dr = &self.destination_rules[i];
                let rule_host = hosts::resolve(&dr.spec.host, ns, &self.cluster_domain);
                hosts::matches(&rule_host, host)
                    && hosts::visible(&dr.spec.export_to, ns, proxy_namespace)
                    && dr
                        .spec
                        .workload_selector
                        .as_ref()
                        .is_none_or(|s| selects(s.labels(), proxy_labels))
            });
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
            shadowed: rest.iter().map(|&i| &*self.destination_rules[i]).collect(),
        })
    }

    /// The Sidecar resource that configures a workload's proxy: one whose `workloadSelector`
    /// picks it, else its namespace's default, else the root namespace's default.
    pub fn sidecar_for(&self, workload: &Workload) -> Option<(usize, &Obj<SidecarSpec>)> {
        let in_ns = |ns: &str, with_selector: bool| {
            self.by_namespace.get(ns).and_then(|idx| {
                let candidates = if with_selector {
                    idx.sidecar_selectors.may_select(&workload.pod_labels)
                } else {
                    idx.sidecar_selectors.without_labels()
                };
                candidates.into_iter().find(|&i| {
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
            .map(|i| (i, &*self.sidecars[i]))
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

    /// Whether `vs` names `host` itself, not through a wildcard. Istio's sidecars take one
    /// VirtualService per host: of two that name the same host, the one created first is used
    /// (by name, then namespace, when created in the same second) and the other's routes are
    /// dropped; a wildcard host only applies where no exact one does.
    pub fn names_host(&self, vs: &Obj<VirtualServiceSpec>, host: &str) -> bool {
        vs.spec.hosts.iter().any(|h| {
            let h = hosts::resolve(h, &vs.meta.namespace, &self.cluster_domain);
            !h.starts_with('*') && h.eq_ignore_ascii_case(host)
        })
    }

    /// Of the VirtualServices naming one host exactly (`same`, by position), the one whose routes
    /// the sidecars use, when Istio's pick is known: every one exported everywhere (no `exportTo`,
    /// or `*`) and every one with a creation time (read from a cluster, or `kubectl get -o yaml`).
    /// Istio sorts them by creation time, then name, then namespace
    /// (`sortMergedVirtualServicesByCreationTime`), and the first to claim a host keeps it (later
    /// duplicate domains are dropped, `pilot/pkg/networking/core/httproute.go`). Without creation
    /// times (most files) or with `exportTo`, which makes the pick depend on the client's namespace,
    /// it is not known.
    pub fn sidecars_pick(&self, same: &[usize]) -> Option<usize> {
        if same.len() < 2 {
            return None;
        }
        let known = same.iter().all(|&v| {
            let vs = &self.virtual_services[v];
            vs.meta.creation_timestamp.is_some() && vs.spec.export_to.iter().all(|e| e == "*")
        });
        if !known {
            return None;
        }
        // The API server writes every creationTimestamp as `YYYY-MM-DDTHH:MM:SSZ`: as text, they
        // sort by time.
        same.iter().copied().min_by(|&a, &b| {
            let key = |v: usize| {
                let vs = &self.virtual_services[v];
                (
                    vs.meta.creation_timestamp.as_deref(),
                    vs.meta.name.as_str(),
                    vs.meta.namespace.as_str(),
                )
            };
            key(a).cmp(&key(b))
        })
    }

    /// VirtualServices bound to gateways only (by position) whose HTTP routes send requests to
    /// `host`: the gateway's Envoy is then the client that retries, or not.
    pub fn gateway_virtual_services_to(&self, host: &str) -> Vec<usize> {
        self.rules_by_host
            .gateway_routes_to
            .get(&host.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// For a gateway-bound VirtualService (by position): per HTTP route, the hosts it sends
    /// requests to, resolved and in lower case.
    pub fn gateway_route_hosts(&self, vs: usize) -> &[Vec<String>] {
        self.rules_by_host
            .gateway_route_hosts
            .get(&vs)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The HTTPRoutes attached to Service `s` for mesh traffic (Gateway API's mesh support):
    /// istiod routes its host from them, as from a VirtualService.
    pub fn mesh_routes_of(
        &self,
        s: usize,
    ) -> impl Iterator<Item = &Obj<crate::model::gateway_api::HttpRouteSpec>> {
        let service = &self.services[s];
        // Most inputs have no HTTPRoute: then no key is built.
        let routes = if self.mesh_route_parents.is_empty() {
            None
        } else {
            self.mesh_route_parents
                .get(&(service.meta.namespace.clone(), service.meta.name.clone()))
        };
        routes.into_iter().flatten().map(|&i| &*self.http_routes[i])
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
            .map(|i| (i, &*self.virtual_services[i]))
            .filter(|(_, vs)| {
                mesh_bound(&vs.spec)
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

    /// For an object meshmedic created (see `remediation::creation_labels`): a person's object
    /// that now configures the same thing, named for messages. meshmedic creates one only where
    /// nothing configured it; once a person's arrives, one of the two is lost: Istio's sidecars
    /// take one mesh VirtualService per host (the oldest; the others' routes are dropped),
    /// DestinationRules for one host in one namespace merge keeping the oldest's traffic policy,
    /// and two Sidecars selecting one workload leave its configuration undefined. So meshmedic's
    /// has to go; the fix, if still needed, is planned on the person's object.
    pub fn created_object_beside(&self, target: &ObjectRef) -> Option<String> {
        let ns = target.namespace.as_str();
        let i = self.object_position(&target.kind, ns, &target.name)?;
        let others = self.by_namespace.get(ns);
        match target.kind.as_str() {
            "VirtualService" => {
                let vs = &self.virtual_services[i];
                if !mesh_bound(&vs.spec) {
                    return None;
                }
                vs.spec
                    .hosts
                    .iter()
                    .map(|h| hosts::resolve(h, ns, &self.cluster_domain))
                    .filter(|h| !h.starts_with('*'))
                    .find_map(|host| {
                        self.virtual_services_for(&host, ns)
                            .into_iter()
                            .find(|&(j, other)| {
                                j != i
                                    && !created_by_meshmedic(&other.meta)
                                    && self.names_host(other, &host)
                            })
                            .map(|(_, other)| {
                                format!(
                                    "{} routes {host} too (Istio's sidecars take one mesh VirtualService per host, the oldest, and drop the other's routes)",
                                    other.describe()
                                )
                            })
                    })
            }
            "DestinationRule" => {
                let dr = &self.destination_rules[i];
                if dr.spec.workload_selector.is_some() {
                    return None;
                }
                let host = hosts::resolve(&dr.spec.host, ns, &self.cluster_domain);
                others?.destination_rules.iter().find_map(|&j| {
                    let other = &self.destination_rules[j];
                    (j != i
                        && other.spec.workload_selector.is_none()
                        && !created_by_meshmedic(&other.meta)
                        && hosts::resolve(&other.spec.host, ns, &self.cluster_domain) == host)
                        .then(|| {
                            format!(
                                "{} is a rule for {host} too (Istio merges them and keeps only the oldest's traffic policy)",
                                other.describe()
                            )
                        })
                })
            }
            "Sidecar" => {
                let mine = self.sidecars[i].spec.workload_selector.as_ref()?;
                others?.sidecars.iter().find_map(|&j| {
                    let other = &self.sidecars[j];
                    let theirs = other.spec.workload_selector.as_ref()?;
                    if j == i || created_by_meshmedic(&other.meta) {
                        return None;
                    }
                    self.workloads
                        .iter()
                        .find(|w| {
                            w.meta.namespace == ns
                                && selects(mine.labels(), &w.pod_labels)
                                && selects(theirs.labels(), &w.pod_labels)
                        })
                        .map(|w| {
                            format!(
                                "{} selects {} {} too (with two Sidecars selecting one workload, Istio leaves its proxy's configuration undefined)",
                                other.describe(),
                                w.kind,
                                w.meta.name
                            )
                        })
                })
            }
            _ => None,
        }
    }

    /// The effective PeerAuthentication mode for a workload port: a workload-selecting policy
    /// (its `portLevelMtls` first), then the namespace-wide one, then the root namespace's;
    /// `UNSET` inherits; PERMISSIVE when nothing says otherwise.
    pub fn mtls_mode(&self, workload: &Workload, port: i32) -> (MtlsMode, Option<String>) {
        // Each list holds every policy the `find` after it could pick, in order.
        let policies_in = |ns: &str, picking: Option<&crate::model::Labels>| {
            let Some(idx) = self.by_namespace.get(ns) else {
                return Vec::new();
            };
            let selectors = &idx.peer_authentication_selectors;
            match picking {
                Some(labels) => selectors.may_select(labels),
                None => selectors.without_labels(),
            }
            .into_iter()
            .map(|i| &*self.peer_authentications[i])
            .collect::<Vec<&Obj<PeerAuthenticationSpec>>>()
        };
        let ns_policies = policies_in(&workload.meta.namespace, None);
        let workload_policy = policies_in(&workload.meta.namespace, Some(&workload.pod_labels));
        let workload_policy = workload_policy.iter().find(|p| {
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
            policies_in(root, None).into_iter().find(|p| {
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

/// Per HTTP route of `vs` (by index), the hosts of its destinations, resolved in `vs`'s
/// namespace and in lower case. Read from the object itself, once, when the snapshot is built,
/// not from the typed spec: only gateway-bound VirtualServices need them, and keeping every
/// route's destinations typed cost about 8 MiB of peak memory at 10,000 services.
pub(crate) fn route_destinations(vs: &Obj<VirtualServiceSpec>, domain: &str) -> Vec<Vec<String>> {
    let value = vs.raw.to_value();
    let routes = value
        .pointer("/spec/http")
        .and_then(serde_json::Value::as_array);
    routes
        .into_iter()
        .flatten()
        .map(|route| {
            route
                .get("route")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|d| d.pointer("/destination/host")?.as_str())
                .map(|h| hosts::resolve(h, &vs.meta.namespace, domain).to_ascii_lowercase())
                .collect()
        })
        .collect()
}

/// Bound to the sidecars (no `gateways`, or `mesh` among them).
pub(crate) fn mesh_bound(spec: &VirtualServiceSpec) -> bool {
    spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh")
}

/// Carries the label meshmedic puts on what it creates.
fn created_by_meshmedic(meta: &crate::model::Meta) -> bool {
    meta.labels.get(keys::MANAGED_BY_LABEL) == Some(keys::MANAGED_BY_VALUE)
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

#[cfg(test)]
mod tests {
    use crate::analysis::test_support::snapshot;
    use crate::model::ObjectRef;

    const MINE: &str = "labels: {app.kubernetes.io/managed-by: meshmedic}";

    fn target(kind: &str, ns: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "networking.istio.io/v1".into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    /// An Istio networking object of `kind` as YAML, with `labels` in its metadata.
    fn rule(kind: &str, name: &str, ns: &str, labels: &str, spec: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}, {labels}}}\nspec: {spec}\n---\n"
        )
    }

    fn vs(name: &str, ns: &str, labels: &str, spec: &str) -> String {
        rule("VirtualService", name, ns, labels, spec)
    }

    #[test]
    fn a_persons_virtual_service_for_the_host_of_meshmedics_is_found_by_its_short_name() {
        let mine = vs(
            "travels-retries",
            "portal",
            MINE,
            "{hosts: [travels.portal.svc.cluster.local], http: [{route: [{destination: {host: travels}}]}]}",
        );
        let t = target("VirtualService", "portal", "travels-retries");
        assert_eq!(snapshot(&mine).created_object_beside(&t), None);
        // Bound to an ingress gateway only: the sidecars never see it, no conflict.
        let gateway_only = vs(
            "edge",
            "portal",
            "labels: {}",
            "{hosts: [travels], gateways: [portal/edge], http: [{route: [{destination: {host: travels}}]}]}",
        );
        assert_eq!(
            snapshot(&format!("{mine}{gateway_only}")).created_object_beside(&t),
            None
        );
        let persons = vs(
            "travels",
            "portal",
            "labels: {}",
            "{hosts: [travels], http: [{route: [{destination: {host: travels, subset: v1}}]}]}",
        );
        assert_eq!(
            snapshot(&format!("{mine}{persons}")).created_object_beside(&t),
            Some(
                "VirtualService portal/travels routes travels.portal.svc.cluster.local too (Istio's sidecars take one mesh VirtualService per host, the oldest, and drop the other's routes)".into()
            )
        );
        // The same short name in another namespace is another host.
        let elsewhere = persons.replace("namespace: portal", "namespace: agency");
        assert_eq!(
            snapshot(&format!("{mine}{elsewhere}")).created_object_beside(&t),
            None
        );
        // A person's object never counts as meshmedic's.
        let t = target("VirtualService", "portal", "travels");
        assert_eq!(
            snapshot(&format!("{mine}{persons}")).created_object_beside(&t),
            None
        );
    }

    #[test]
    fn a_persons_rule_for_the_same_host_in_the_namespace_stands_beside_meshmedics() {
        let dr = |name: &str, ns: &str, labels: &str, spec: &str| {
            rule("DestinationRule", name, ns, labels, spec)
        };
        let mine = dr(
            "web-idle-timeout",
            "a",
            MINE,
            "{host: web.a.svc.cluster.local, trafficPolicy: {connectionPool: {http: {idleTimeout: 60s}}}}",
        );
        let t = target("DestinationRule", "a", "web-idle-timeout");
        let persons = dr(
            "web",
            "a",
            "labels: {}",
            "{host: web, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}",
        );
        assert_eq!(
            snapshot(&format!("{mine}{persons}")).created_object_beside(&t),
            Some("DestinationRule a/web is a rule for web.a.svc.cluster.local too (Istio merges them and keeps only the oldest's traffic policy)".into())
        );
        // In the root namespace, or for some workloads only: Istio does not merge them.
        let root = dr(
            "web",
            "istio-system",
            "labels: {}",
            "{host: web.a.svc.cluster.local}",
        );
        let selecting = dr(
            "web",
            "a",
            "labels: {}",
            "{host: web, workloadSelector: {matchLabels: {app: client}}}",
        );
        for other in [root, selecting] {
            assert_eq!(
                snapshot(&format!("{mine}{other}")).created_object_beside(&t),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn a_persons_sidecar_selecting_the_same_workload_stands_beside_meshmedics() {
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: a}\n\
            spec: {selector: {matchLabels: {app: api}}, template: {metadata: {labels: {app: api, tier: back}}, spec: {containers: [{name: c, image: x}]}}}\n---\n";
        let sidecar = |name: &str, labels: &str, selector: &str| {
            let spec = format!("{{workloadSelector: {{labels: {selector}}}}}");
            rule("Sidecar", name, "a", labels, &spec)
        };
        let mine = sidecar("api-localhost", MINE, "{app: api}");
        let t = target("Sidecar", "a", "api-localhost");
        let persons = sidecar("back", "labels: {}", "{tier: back}");
        assert_eq!(
            snapshot(&format!("{deployment}{mine}{persons}")).created_object_beside(&t),
            Some("Sidecar a/back selects Deployment api too (with two Sidecars selecting one workload, Istio leaves its proxy's configuration undefined)".into())
        );
        let others = sidecar("front", "labels: {}", "{tier: front}");
        assert_eq!(
            snapshot(&format!("{deployment}{mine}{others}")).created_object_beside(&t),
            None
        );
    }
}
