//! Gateway API's `HTTPRoute` (`gateway.networking.k8s.io`), as far as the analysis reads it: the
//! Services it attaches to for mesh traffic. A parent reference of kind `Service` (Gateway API's
//! mesh support, GAMMA) makes istiod route that Service's host for sidecars from the route, as
//! it would from a VirtualService (istio/istio `pilot/pkg/config/kube/gateway`): a VirtualService
//! meshmedic created for the same host would be a second one, and Istio takes one of the two.
//! The rules, filters and backends are left to serde's ignoring.

use serde::Deserialize;

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
}

/// One `spec.parentRefs[]`: a Gateway (ingress), or a Service (mesh traffic to it).
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// `""` names the core group; absent is Gateway API's default, `gateway.networking.k8s.io`.
    pub group: Option<String>,
    /// Gateway API's default is `Gateway`.
    pub kind: Option<String>,
    /// The route's own namespace when absent.
    pub namespace: Option<String>,
    pub name: String,
}

impl ParentReference {
    /// The Service this reference attaches the route to for mesh traffic, as (namespace, name):
    /// kind `Service` in the core group, `""`. Istio reads the group as written, so `core`
    /// (which other meshes accept) names no Service there (`toInternalParentReference`).
    pub fn mesh_service<'a>(&'a self, route_namespace: &'a str) -> Option<(&'a str, &'a str)> {
        let core = self.group.as_deref() == Some("");
        (core && self.kind.as_deref() == Some("Service")).then(|| {
            (
                self.namespace.as_deref().unwrap_or(route_namespace),
                self.name.as_str(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(group: Option<&str>, kind: Option<&str>, namespace: Option<&str>) -> ParentReference {
        ParentReference {
            group: group.map(str::to_string),
            kind: kind.map(str::to_string),
            namespace: namespace.map(str::to_string),
            name: "reviews".into(),
        }
    }

    #[test]
    fn only_a_core_service_parent_is_mesh_traffic() {
        assert_eq!(
            parent(Some(""), Some("Service"), None).mesh_service("shop"),
            Some(("shop", "reviews"))
        );
        assert_eq!(
            parent(Some(""), Some("Service"), Some("other")).mesh_service("shop"),
            Some(("other", "reviews"))
        );
        assert_eq!(
            parent(Some("core"), Some("Service"), None).mesh_service("shop"),
            None
        );
        // A Gateway (the default kind and group), and an absent group with kind Service, which
        // Gateway API reads as its own group: no Service of that name.
        assert_eq!(parent(None, None, None).mesh_service("shop"), None);
        assert_eq!(
            parent(None, Some("Service"), None).mesh_service("shop"),
            None
        );
        assert_eq!(
            parent(Some("networking.istio.io"), Some("ServiceEntry"), None).mesh_service("shop"),
            None
        );
    }
}
