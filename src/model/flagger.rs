//! Flagger's `Canary` (`flagger.app/v1beta1`), as far as the analysis reads it. With the Istio
//! provider, Flagger owns the routing of the service it releases: it writes a VirtualService
//! named after the service whose HTTP route takes `spec.service.retries`, `timeout`, `match`,
//! `headers`, `corsPolicy` and `rewrite`, and DestinationRules for the primary and canary hosts
//! with `spec.service.trafficPolicy` (flagger `pkg/router/istio.go`). A change made to those
//! objects is undone at Flagger's next reconcile, so a fix belongs in the Canary.
//!
//! The fields Flagger copies into Istio's objects are kept as JSON: they are decoded as the
//! Istio objects they become (and refused with the Canary's field named).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: CanarySpec,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// The router: absent for the one Flagger was started with (Istio by default).
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub target_ref: TargetRef,
    #[serde(default)]
    pub service: CanaryService,
    /// The analysis, as far as it changes the routes: its `match` (A/B testing) adds a route.
    #[serde(default)]
    pub analysis: Option<CanaryAnalysis>,
    /// The name `analysis` had before Flagger 1.0; still read by Flagger.
    #[serde(default)]
    pub canary_analysis: Option<CanaryAnalysis>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryService {
    /// The apex Service's name; the target's name when absent.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: i32,
    #[serde(default)]
    pub port_name: Option<String>,
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    #[serde(default)]
    pub app_protocol: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    /// A delegate VirtualService: no hosts, no gateways (a root VirtualService names it).
    #[serde(default)]
    pub delegation: bool,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<Value>,
    #[serde(default, rename = "match")]
    pub match_: Option<Value>,
    #[serde(default)]
    pub rewrite: Option<Value>,
    #[serde(default)]
    pub headers: Option<Value>,
    #[serde(default)]
    pub cors_policy: Option<Value>,
    #[serde(default)]
    pub traffic_policy: Option<Value>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAnalysis {
    #[serde(default, rename = "match")]
    pub match_: Option<Value>,
}

impl CanarySpec {
    /// Whether Flagger routes this Canary through Istio's VirtualServices (the only router
    /// meshmedic models): `istio`, no provider (Flagger's default), and a name Flagger does not
    /// know, for which it logs a warning and uses Istio (flagger `pkg/router/factory.go`).
    /// `smi:...:istio` goes through an SMI TrafficSplit, not a VirtualService.
    pub fn routes_with_istio(&self) -> bool {
        const OTHERS: [&str; 11] = [
            "linkerd",
            "contour",
            "knative",
            "nginx",
            "skipper",
            "traefik",
            "apisix",
            "osm",
            "kuma",
            "kubernetes",
            "appmesh",
        ];
        const OTHER_PREFIXES: [&str; 4] = ["appmesh:", "smi:", "gloo", "gatewayapi:"];
        match self.provider.as_deref() {
            None | Some("") => true,
            Some(p) => !OTHERS.contains(&p) && !OTHER_PREFIXES.iter().any(|o| p.starts_with(o)),
        }
    }

    /// The apex Service's name (the one clients call), as Flagger names it.
    pub fn apex_name(&self) -> &str {
        match self.service.name.as_deref() {
            Some(n) if !n.is_empty() => n,
            _ => &self.target_ref.name,
        }
    }

    /// The analysis' `match`, under either of its names.
    pub fn analysis_match(&self) -> Option<&Value> {
        self.analysis
            .as_ref()
            .or(self.canary_analysis.as_ref())
            .and_then(|a| a.match_.as_ref())
            .filter(|m| m.as_array().is_some_and(|a| !a.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::CanarySpec;

    #[test]
    fn istio_routes_as_flaggers_router_factory_picks_it() {
        let with = |p: Option<&str>| CanarySpec {
            provider: p.map(str::to_string),
            ..CanarySpec::default()
        };
        for p in [None, Some(""), Some("istio"), Some("no-such-router")] {
            assert!(with(p).routes_with_istio(), "{p:?}");
        }
        for p in [
            "linkerd",
            "kubernetes",
            "appmesh:v1beta2",
            "smi:v1alpha3:istio",
            "gloo:v1",
            "gatewayapi:v1",
        ] {
            assert!(!with(Some(p)).routes_with_istio(), "{p}");
        }
    }
}
