//! Typed views of the Istio resources meshmedic reads.
//!
//! These structs hold only the fields the analysis needs; serde ignores the rest. That is safe
//! because meshmedic never writes an Istio object back from these types: every change is a JSON
//! patch against the object exactly as the user wrote it (kept beside the typed view in the
//! snapshot), so nothing a user wrote is dropped.

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Labels;
use super::duration::GoDuration;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "DestinationRule",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    #[serde(default)]
    pub host: String,
    pub traffic_policy: Option<TrafficPolicy>,
    #[serde(default)]
    pub subsets: Vec<Subset>,
    #[serde(default)]
    pub export_to: Vec<String>,
    pub workload_selector: Option<WorkloadSelector>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub connection_pool: Option<ConnectionPool>,
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    pub port: Option<PortSelector>,
    pub connection_pool: Option<ConnectionPool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct PortSelector {
    #[serde(default)]
    pub number: u32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct ConnectionPool {
    pub tcp: Option<TcpSettings>,
    pub http: Option<HttpSettings>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    pub idle_timeout: Option<GoDuration>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    pub idle_timeout: Option<GoDuration>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `workloadSelector` of DestinationRule and Sidecar.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: Labels,
    /// DestinationRule spells it `matchLabels`.
    #[serde(default)]
    pub match_labels: Labels,
}

impl WorkloadSelector {
    pub fn labels(&self) -> &Labels {
        if self.match_labels.is_empty() {
            &self.labels
        } else {
            &self.match_labels
        }
    }
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "VirtualService",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub export_to: Vec<String>,
    #[serde(default)]
    pub http: Vec<HttpRoute>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    pub retries: Option<HttpRetry>,
    // Boxed: the analysis asks only whether they are there, and three `Value`s inline were
    // two thirds of every route's size (README, Benchmarks).
    pub redirect: Option<Box<Value>>,
    pub direct_response: Option<Box<Value>>,
    pub delegate: Option<Box<Value>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct HttpMatchRequest {
    pub method: Option<StringMatch>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// `HTTPRetry` of a VirtualService route, and mesh config's `defaultHttpRetryPolicy`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    pub attempts: Option<i64>,
    pub per_try_timeout: Option<GoDuration>,
    pub retry_on: Option<String>,
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "Sidecar",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub ingress: Vec<IstioIngressListener>,
    pub inbound_connection_pool: Option<ConnectionPool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IstioIngressListener {
    pub port: Option<SidecarPort>,
    pub default_endpoint: Option<String>,
    pub connection_pool: Option<ConnectionPool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct SidecarPort {
    #[serde(default)]
    pub number: u32,
    pub protocol: Option<String>,
    pub name: Option<String>,
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "security.istio.io",
    version = "v1",
    kind = "PeerAuthentication",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    pub selector: Option<WorkloadSelector>,
    pub mtls: Option<PeerMtls>,
    /// Keyed by the workload's (container) port number.
    #[serde(default)]
    pub port_level_mtls: BTreeMap<String, PeerMtls>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct PeerMtls {
    pub mode: Option<MtlsMode>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    Unset,
    Disable,
    Permissive,
    Strict,
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "networking.istio.io",
    version = "v1alpha3",
    kind = "EnvoyFilter",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyFilterSpec {
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub config_patches: Vec<Value>,
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "telemetry.istio.io",
    version = "v1",
    kind = "Telemetry",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySpec {
    pub selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub metrics: Vec<Value>,
}

/// The parts of Istio's MeshConfig (the `mesh` key of the `istio` ConfigMap) that change the
/// analysis.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    pub root_namespace: Option<String>,
    pub default_http_retry_policy: Option<HttpRetry>,
    pub default_config: Option<ProxyConfig>,
}

/// Istio's ProxyConfig: mesh `defaultConfig`, or a pod's `proxy.istio.io/config` annotation.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    pub hold_application_until_proxy_starts: Option<bool>,
    pub termination_drain_duration: Option<GoDuration>,
    #[serde(default)]
    pub proxy_metadata: BTreeMap<String, String>,
}

impl ProxyConfig {
    /// Later layers win, key by key, as Istio merges pod annotation over mesh default.
    pub fn overlay(&self, over: &ProxyConfig) -> ProxyConfig {
        let mut proxy_metadata = self.proxy_metadata.clone();
        proxy_metadata.extend(over.proxy_metadata.clone());
        ProxyConfig {
            hold_application_until_proxy_starts: over
                .hold_application_until_proxy_starts
                .or(self.hold_application_until_proxy_starts),
            termination_drain_duration: over
                .termination_drain_duration
                .or(self.termination_drain_duration),
            proxy_metadata,
        }
    }
}
