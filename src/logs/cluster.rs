//! Istio upstream cluster names: `outbound|8080|v1|ratings.prod.svc.cluster.local`,
//! `inbound|8080||` (Istio ≥1.10; older ones carried a port name and host), and the fixed
//! `PassthroughCluster`, `BlackHoleCluster`, `InboundPassthroughCluster*`.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    Passthrough,
    Blackhole,
    /// Not an Istio cluster name (a gateway's own cluster, or none at all: `-`).
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterName {
    pub direction: Direction,
    pub port: Option<u16>,
    pub subset: Option<String>,
    /// The service host, e.g. `ratings.prod.svc.cluster.local`.
    pub host: Option<String>,
    /// `ratings` of `ratings.prod.svc.cluster.local`.
    pub service: Option<String>,
    pub namespace: Option<String>,
}

impl ClusterName {
    pub fn parse(raw: &str) -> ClusterName {
        let mut parts = raw.split('|');
        let head = parts.next().unwrap_or("");
        let direction = match head {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            "PassthroughCluster"
            | "InboundPassthroughClusterIpv4"
            | "InboundPassthroughClusterIpv6"
            | "InboundPassthroughCluster" => Direction::Passthrough,
            "BlackHoleCluster" => Direction::Blackhole,
            _ => Direction::Other,
        };
        let mut name = ClusterName {
            direction,
            port: None,
            subset: None,
            host: None,
            service: None,
            namespace: None,
        };
        if !matches!(direction, Direction::Inbound | Direction::Outbound) {
            return name;
        }
        let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        name.port = parts.next().and_then(|p| p.parse().ok());
        name.subset = nonempty(parts.next());
        name.host = nonempty(parts.next());
        if let Some(host) = &name.host {
            let labels: Vec<&str> = host.split('.').collect();
            name.service = labels.first().map(|s| s.to_string());
            if labels.len() >= 3 && labels[2] == "svc" {
                name.namespace = Some(labels[1].to_string());
            }
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_cluster_names() {
        let c = ClusterName::parse("outbound|8080|v1|ratings.prod.svc.cluster.local");
        assert_eq!(c.direction, Direction::Outbound);
        assert_eq!(c.port, Some(8080));
        assert_eq!(c.subset.as_deref(), Some("v1"));
        assert_eq!(c.service.as_deref(), Some("ratings"));
        assert_eq!(c.namespace.as_deref(), Some("prod"));
        let i = ClusterName::parse("inbound|9080||");
        assert_eq!(
            (i.direction, i.port, i.host),
            (Direction::Inbound, Some(9080), None)
        );
        let old = ClusterName::parse("inbound|9080|http|reviews.default.svc.cluster.local");
        assert_eq!(old.service.as_deref(), Some("reviews"));
        assert_eq!(
            ClusterName::parse("PassthroughCluster").direction,
            Direction::Passthrough
        );
        assert_eq!(ClusterName::parse("").direction, Direction::Other);
        assert_eq!(ClusterName::parse("outbound|x").port, None);
    }
}
