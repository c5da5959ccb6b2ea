//! What Flagger writes for a `Canary` routed with Istio (see [`crate::model::flagger`]), so that
//! a release Flagger manages is analysed like any other service, offline as well: the apex
//! Service (when the input has none of that name), its VirtualService and a DestinationRule.
//! They are not in the input, so a fix of one is turned into the same change of the Canary
//! field Flagger copies ([`canary_path`]).
//!
//! One simplification, which changes nothing the analysis reads: Flagger's VirtualService
//! routes to the `-primary` and `-canary` Services (pods of the primary Deployment, a copy of
//! the target's template, and of the target), each with a DestinationRule holding the same
//! `trafficPolicy`. Here the route goes to the apex Service, which selects the target's pods,
//! and one DestinationRule (named as Flagger's primary one) holds that policy for the apex host.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Obj, Raw, Snapshot};
use crate::model::flagger::CanarySpec;
use crate::model::{Labels, ObjectRef};
use crate::remediation::{Edit, PlanError, Remediation};

/// The version of Istio's API Flagger writes its rules in.
pub(super) const ISTIO_API_VERSION: &str = "networking.istio.io/v1beta1";

/// The labels Flagger picks the pods' label from, in its order (its `-selector-labels` flag's
/// default).
const SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];

/// Flagger's VirtualService for `spec` (`pkg/router/istio.go`, `reconcileVirtualService`).
pub(super) fn virtual_service(namespace: &str, spec: &CanarySpec) -> Value {
    let apex = spec.apex_name();
    let service = &spec.service;
    let mut hosts = service.hosts.clone();
    if !hosts.iter().any(|h| h == apex || h == "*") {
        hosts.push(apex.to_string());
    }
    let mut gateways = service.gateways.clone();
    if gateways.is_empty() {
        gateways.push("mesh".to_string());
    }
    if service.delegation {
        hosts.clear();
        gateways.clear();
    }
    let destination = json!([{"destination": {"host": apex}, "weight": 100}]);
    let mut vs = json!({
        "apiVersion": ISTIO_API_VERSION,
        "kind": "VirtualService",
        "metadata": {"name": apex, "namespace": namespace},
        "spec": {"hosts": hosts, "gateways": gateways},
    });
    if service
        .app_protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
    {
        vs["spec"]["tcp"] = json!([{"route": destination}]);
        return vs;
    }
    let route = |match_: Option<&Value>| {
        let mut r = serde_json::Map::new();
        let fields = [
            ("match", match_),
            ("rewrite", service.rewrite.as_ref()),
            ("corsPolicy", service.cors_policy.as_ref()),
            ("headers", service.headers.as_ref()),
            ("retries", service.retries.as_ref()),
        ];
        for (key, value) in fields {
            if let Some(v) = value.filter(|v| !v.is_null()) {
                r.insert(key.to_string(), v.clone());
            }
        }
        if let Some(t) = &service.timeout {
            r.insert("timeout".to_string(), json!(t));
        }
        r.insert("route".to_string(), destination.clone());
        Value::Object(r)
    };
    // A/B testing: a first route for the analysis' match (Flagger merges it with the
    // service's; only its methods matter here), then the service's own.
    let mut http = Vec::new();
    if let Some(m) = spec.analysis_match() {
        http.push(route(Some(m)));
    }
    http.push(route(service.match_.as_ref()));
    vs["spec"]["http"] = Value::Array(http);
    vs
}

/// Flagger's DestinationRules (`reconcileDestinationRule`), as one for the apex host.
pub(super) fn destination_rule(namespace: &str, spec: &CanarySpec) -> Value {
    let apex = spec.apex_name();
    let mut dr = json!({
        "apiVersion": ISTIO_API_VERSION,
        "kind": "DestinationRule",
        "metadata": {"name": format!("{apex}-primary"), "namespace": namespace},
        "spec": {"host": apex},
    });
    if let Some(p) = spec
        .service
        .traffic_policy
        .as_ref()
        .filter(|p| !p.is_null())
    {
        dr["spec"]["trafficPolicy"] = p.clone();
    }
    dr
}

/// Flagger's apex Service (`pkg/router/kubernetes_default.go`, `reconcileService`), selecting
/// the target's pods by the label Flagger picks from its selector (`target_selector`, the
/// target's `matchLabels`); none when the target is not in the input.
pub(super) fn service(
    namespace: &str,
    spec: &CanarySpec,
    target_selector: Option<&Labels>,
) -> Value {
    let port = spec.service.port;
    let mut service_port = json!({
        "name": spec.service.port_name.as_deref().filter(|n| !n.is_empty()).unwrap_or("http"),
        "protocol": "TCP",
        "port": port,
        "targetPort": port,
    });
    if let Some(t) = &spec.service.target_port {
        let zero = matches!(
            t,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0)
        );
        if !zero {
            service_port["targetPort"] = json!(t);
        }
    }
    if let Some(p) = spec
        .service
        .app_protocol
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        service_port["appProtocol"] = json!(p);
    }
    let mut svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.apex_name(), "namespace": namespace},
        "spec": {"type": "ClusterIP", "ports": [service_port]},
    });
    if let Some(selector) = target_selector {
        svc["spec"]["selector"] = json!(apex_selector(selector));
    }
    svc
}

/// The apex Service's selector, for a target selecting its pods by `target_selector`: the first
/// of Flagger's labels it has, or all of it when it has none of them (Flagger itself refuses
/// such a target).
pub(super) fn apex_selector(target_selector: &Labels) -> Labels {
    match SELECTOR_LABELS
        .iter()
        .find_map(|k| target_selector.get(k).map(|v| (*k, v)))
    {
        Some((k, v)) => Labels::from(BTreeMap::from([(k.to_string(), v.to_string())])),
        None => target_selector.clone(),
    }
}

/// The Canary field that becomes the field at `path` (tokens) of the object of `kind` Flagger
/// writes, if it is one: the route's retries and timeout, the rule's traffic policy.
pub fn canary_path(kind: &str, path: &[String]) -> Option<Vec<String>> {
    let tokens: Vec<&str> = path.iter().map(String::as_str).collect();
    let (field, rest): (&[&str], &[&str]) = match (kind, tokens.as_slice()) {
        (
            "VirtualService",
            [
                "spec",
                "http",
                i,
                field @ ("retries" | "timeout"),
                rest @ ..,
            ],
        ) if i.parse::<usize>().is_ok() => (std::slice::from_ref(field), rest),
        ("DestinationRule", ["spec", "trafficPolicy", rest @ ..]) => (&["trafficPolicy"], rest),
        _ => return None,
    };
    let mut out = vec!["spec".to_string(), "service".to_string()];
    out.extend(field.iter().chain(rest).map(|t| t.to_string()));
    Some(out)
}

/// The Canary field (dotted, as errors name fields) that becomes `field` of the object of
/// `kind` Flagger writes: a field of what Flagger copies is named where the user wrote it.
pub(super) fn canary_field(kind: &str, field: &str) -> String {
    let in_route = |rest: &str| {
        // `http[0].retries.attempts` → `retries.attempts`
        rest.split_once("].")
            .map(|(_, f)| f.to_string())
            .unwrap_or_default()
    };
    let mapped = match kind {
        "VirtualService" => match field.strip_prefix("spec.http[") {
            Some(rest) => Some(in_route(rest)).filter(|f| !f.is_empty()),
            None if field.starts_with("spec.hosts") || field.starts_with("spec.gateways") => {
                field.strip_prefix("spec.").map(str::to_string)
            }
            None => None,
        },
        "DestinationRule" => field
            .strip_prefix("spec.")
            .filter(|f| f.starts_with("trafficPolicy"))
            .map(str::to_string),
        _ => None,
    };
    match mapped {
        Some(f) => format!("spec.service.{f}"),
        None => "spec.service".to_string(),
    }
}

impl Snapshot {
    /// Whether the object is one Flagger writes for a Canary (not in the input).
    pub fn is_generated(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.generator(kind, namespace, name).is_some()
    }

    /// The Canary Flagger writes this object for, if it is one (not in the input).
    fn generator(&self, kind: &str, namespace: &str, name: &str) -> Option<&Obj<CanarySpec>> {
        // Most inputs have no Canary: no key is made for them.
        if self.generated.is_empty() {
            return None;
        }
        let kind = ["Service", "VirtualService", "DestinationRule"]
            .into_iter()
            .find(|k| *k == kind)?;
        let canary = self
            .generated
            .get(&(kind, namespace.to_string(), name.to_string()))?;
        self.canaries
            .iter()
            .find(|c| c.meta.namespace == namespace && &c.meta.name == canary)
            .map(|c| &**c)
    }

    /// A line of evidence for a finding on an object, when Flagger writes it.
    pub fn generated_note(&self, kind: &str, namespace: &str, name: &str) -> Option<String> {
        let canary = self.generator(kind, namespace, name)?;
        Some(format!(
            "{kind} {namespace}/{name} is written by Flagger from Canary {namespace}/{} \
             (spec.service); the fix changes the Canary, since Flagger undoes a change made to \
             what it writes",
            canary.meta.name
        ))
    }

    /// [`Remediation::patch_raw`] of an object of the snapshot; for one Flagger writes, the
    /// same change made to the Canary field it comes from ([`canary_path`]), or an error
    /// naming the field when the Canary has none that becomes it.
    ///
    /// Edit by edit when the object's field holds what the Canary's does (always, for the
    /// objects modelled from the Canary; for Flagger's own, unless the Canary was changed
    /// since Flagger last wrote them); otherwise the Canary's field is set to the object's
    /// field as fixed, so that what Flagger writes next is the fix, not a mix of both.
    pub fn plan_patch(
        &self,
        target: ObjectRef,
        raw: &Raw,
        edits: Vec<Edit>,
        safe_to_auto_apply: bool,
    ) -> Result<Remediation, PlanError> {
        let Some(canary) = self.generator(&target.kind, &target.namespace, &target.name) else {
            return Remediation::patch_raw(target, raw, edits, safe_to_auto_apply);
        };
        let error = |message: String| PlanError {
            target: target.to_string(),
            message: format!(
                "written by Flagger from Canary {}/{}: {message}",
                canary.meta.namespace, canary.meta.name
            ),
        };
        let at = |tokens: &[String]| crate::remediation::pointer(tokens).to_string();
        let (object, canary_object) = (raw.value(), canary.raw.value());
        let root = source_root_len(&target.kind);
        let mut mapped: Vec<Edit> = Vec::with_capacity(edits.len());
        // (the object's field, the Canary's) where they differ.
        let mut whole: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for edit in &edits {
            let path = canary_path(&target.kind, &edit.path)
                .filter(|_| edit.moved_from.is_none())
                .ok_or_else(|| {
                    error(format!(
                        "no field of the Canary becomes {}; change it there by hand",
                        at(&edit.path)
                    ))
                })?;
            let field = (edit.path[..root].to_vec(), path[..3].to_vec());
            if object.pointer(&at(&field.0)) != canary_object.pointer(&at(&field.1)) {
                if !whole.contains(&field) {
                    whole.push(field);
                }
                continue;
            }
            let edit = Edit {
                path,
                ..edit.clone()
            };
            // Each route of an A/B Canary takes the same retries: one change of the Canary.
            if !mapped.contains(&edit) {
                mapped.push(edit);
            }
        }
        if !whole.is_empty() {
            let ops = crate::remediation::plan_patch(object, &edits).map_err(&error)?;
            let mut fixed = object.clone();
            crate::remediation::apply(&mut fixed, &ops).map_err(&error)?;
            for (field, canary_field) in whole {
                let value = fixed.pointer(&at(&field)).cloned().unwrap_or(Value::Null);
                mapped.retain(|e| !e.path.starts_with(&canary_field));
                let edit = Edit::at(&at(&canary_field), None, value);
                if !mapped.contains(&edit) {
                    mapped.push(edit);
                }
            }
        }
        Remediation::patch_raw(canary.object_ref(), &canary.raw, mapped, safe_to_auto_apply)
    }
}

/// How many tokens of a path [`canary_path`] maps name the field Flagger copies whole
/// (`spec/http/<i>/retries`, `spec/trafficPolicy`).
fn source_root_len(kind: &str) -> usize {
    if kind == "VirtualService" { 4 } else { 2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> CanarySpec {
        let value: Value = crate::snapshot::yaml::from_str(yaml).expect("test YAML");
        serde_json::from_value(value).expect("a Canary spec")
    }

    fn tokens(pointer: &str) -> Vec<String> {
        crate::remediation::pointer_tokens(pointer)
    }

    #[test]
    fn virtual_service_as_flagger_writes_it() {
        let s = spec(
            "targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}\n\
             service:\n  port: 9898\n  timeout: 5s\n  gateways: [public-gateway]\n  hosts: [app.example.com]\n  \
             retries: {attempts: 3, perTryTimeout: 1s, retryOn: \"gateway-error,connect-failure\"}\n",
        );
        let vs = virtual_service("test", &s);
        assert_eq!(
            vs["metadata"],
            json!({"name": "podinfo", "namespace": "test"})
        );
        // The apex host is added; `mesh` is not, since gateways are given.
        assert_eq!(vs["spec"]["hosts"], json!(["app.example.com", "podinfo"]));
        assert_eq!(vs["spec"]["gateways"], json!(["public-gateway"]));
        let http = vs["spec"]["http"].as_array().expect("http routes");
        assert_eq!(http.len(), 1);
        assert_eq!(
            http[0]["retries"]["retryOn"],
            "gateway-error,connect-failure"
        );
        assert_eq!(http[0]["timeout"], "5s");
        assert_eq!(http[0]["route"][0]["destination"]["host"], "podinfo");
    }

    #[test]
    fn mesh_gateway_delegation_tcp_and_ab_testing() {
        let s = spec("targetRef: {name: api}\nservice: {name: web, port: 80}\n");
        let vs = virtual_service("a", &s);
        assert_eq!(vs["metadata"]["name"], "web");
        assert_eq!(vs["spec"]["gateways"], json!(["mesh"]));
        assert_eq!(vs["spec"]["hosts"], json!(["web"]));
        let s = spec("targetRef: {name: api}\nservice: {port: 80, delegation: true}\n");
        let vs = virtual_service("a", &s);
        assert_eq!(vs["spec"]["hosts"], json!([]));
        assert_eq!(vs["spec"]["gateways"], json!([]));
        let s = spec("targetRef: {name: db}\nservice: {port: 5432, appProtocol: TCP}\n");
        let vs = virtual_service("a", &s);
        assert!(vs["spec"].get("http").is_none());
        assert_eq!(
            vs["spec"]["tcp"][0]["route"][0]["destination"]["host"],
            "db"
        );
        let s = spec(
            "targetRef: {name: api}\nservice: {port: 80, retries: {attempts: 2}}\n\
             analysis:\n  match: [{headers: {x-canary: {exact: insider}}}]\n",
        );
        let vs = virtual_service("a", &s);
        let http = vs["spec"]["http"].as_array().expect("http routes");
        assert_eq!(http.len(), 2);
        assert!(http[0]["match"][0]["headers"].is_object());
        assert!(http[1].get("match").is_none());
        assert_eq!(http[0]["retries"], http[1]["retries"]);
    }

    #[test]
    fn service_and_destination_rule() {
        let s = spec(
            "targetRef: {name: podinfo}\nservice:\n  port: 80\n  targetPort: http\n  portName: grpc\n  \
             appProtocol: grpc\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n",
        );
        let selector = crate::model::Labels::from(std::collections::BTreeMap::from([
            ("app".to_string(), "podinfo".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]));
        let svc = service("a", &s, Some(&selector));
        assert_eq!(svc["spec"]["selector"], json!({"app": "podinfo"}));
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "grpc", "protocol": "TCP", "port": 80, "targetPort": "http", "appProtocol": "grpc"}])
        );
        // Without one of Flagger's labels the whole selector stands (Flagger itself refuses it).
        let other = crate::model::Labels::from(std::collections::BTreeMap::from([(
            "tier".to_string(),
            "web".to_string(),
        )]));
        let svc = service("a", &s, Some(&other));
        assert_eq!(svc["spec"]["selector"], json!({"tier": "web"}));
        assert!(service("a", &s, None)["spec"].get("selector").is_none());
        let dr = destination_rule("a", &s);
        assert_eq!(dr["metadata"]["name"], "podinfo-primary");
        assert_eq!(dr["spec"]["host"], "podinfo");
        assert_eq!(dr["spec"]["trafficPolicy"]["tls"]["mode"], "ISTIO_MUTUAL");
    }

    #[test]
    fn fixes_and_errors_map_to_the_canary() {
        let vs = |p: &str| canary_path("VirtualService", &tokens(p));
        assert_eq!(
            vs("/spec/http/1/retries/retryOn"),
            Some(tokens("/spec/service/retries/retryOn"))
        );
        assert_eq!(
            vs("/spec/http/0/retries"),
            Some(tokens("/spec/service/retries"))
        );
        assert_eq!(
            vs("/spec/http/0/timeout"),
            Some(tokens("/spec/service/timeout"))
        );
        assert_eq!(vs("/spec/http/0/route"), None);
        assert_eq!(vs("/spec/http/x/retries"), None);
        assert_eq!(vs("/spec/hosts"), None);
        assert_eq!(
            canary_path(
                "DestinationRule",
                &tokens("/spec/trafficPolicy/connectionPool/http/idleTimeout")
            ),
            Some(tokens(
                "/spec/service/trafficPolicy/connectionPool/http/idleTimeout"
            ))
        );
        assert_eq!(
            canary_path("DestinationRule", &tokens("/spec/subsets")),
            None
        );
        assert_eq!(canary_path("Service", &tokens("/spec/ports")), None);

        assert_eq!(
            canary_field("VirtualService", "spec.http[0].retries.attempts"),
            "spec.service.retries.attempts"
        );
        assert_eq!(
            canary_field("VirtualService", "spec.gateways[1]"),
            "spec.service.gateways[1]"
        );
        assert_eq!(
            canary_field("DestinationRule", "spec.trafficPolicy.connectionPool"),
            "spec.service.trafficPolicy.connectionPool"
        );
        assert_eq!(canary_field("VirtualService", "spec"), "spec.service");
    }

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {istio-injection: enabled}}\n";

    /// A Deployment `web` in `a` (nginx: closes idle connections after 65s; its loopback
    /// binding below is for the workload detectors) and a Canary for it with `service`. Each
    /// fix is checked to remove its finding (`test_support::snapshot`).
    fn release(service: &str, extra: &str) -> Snapshot {
        crate::analysis::test_support::snapshot(&release_text(service, extra))
    }

    fn release_text(service: &str, extra: &str) -> String {
        format!(
            "{NS}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: a}}\n\
             spec:\n  selector: {{matchLabels: {{app: web, tier: front}}}}\n  template:\n    metadata: {{labels: {{app: web, tier: front}}}}\n\
             \x20   spec:\n      containers:\n      - name: nginx\n        image: nginx:1.27\n        args: [--bind, 127.0.0.1:8080]\n\
             \x20       ports: [{{containerPort: 8080}}]\n\
             ---\napiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata: {{name: web, namespace: a}}\n\
             spec:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  service: {service}\n{extra}"
        )
    }

    /// A snapshot of `text`, every document of which must be read.
    fn built(text: &str) -> Snapshot {
        let docs = crate::snapshot::load::parse_documents("t.yaml", text).expect("YAML");
        let mut builder = crate::snapshot::SnapshotBuilder::new(Default::default());
        for (at, value) in docs {
            builder.add(at, value).expect("a valid object");
        }
        builder.build().expect("a snapshot")
    }

    fn findings(s: &Snapshot) -> Vec<crate::analysis::Finding> {
        crate::analysis::analyze(s).findings
    }

    /// The retry and idle-timeout fixes of a Canary's routing change the Canary's fields,
    /// and a second run over the fixed Canary finds nothing left of them.
    #[test]
    fn fixes_of_flaggers_rules_change_the_canary() {
        let s = release(
            "{port: 80, targetPort: 8080, retries: {attempts: 3, retryOn: connect-failure}}",
            "",
        );
        assert!(s.is_generated("VirtualService", "a", "web"));
        assert!(s.is_generated("DestinationRule", "a", "web-primary"));
        assert!(s.is_generated("Service", "a", "web"));
        let svc = s.service_index("a", "web").expect("the apex Service");
        let picked: Vec<&str> = s.workloads_of(svc).map(|w| w.meta.name.as_str()).collect();
        assert_eq!(picked, ["web"]);
        let found = findings(&s);
        let retry = found
            .iter()
            .find(|f| f.code == crate::analysis::Code::MissingResetRetry)
            .expect("a retry finding");
        assert_eq!(retry.remediation.target.kind, "Canary");
        assert_eq!(retry.remediation.target.api_version, "flagger.app/v1beta1");
        assert_eq!(
            retry.remediation.changed_field(),
            Some("/spec/service/retries/retryOn")
        );
        assert!(
            retry
                .evidence
                .iter()
                .any(|e| e.contains("written by Flagger"))
        );
        let idle = found
            .iter()
            .find(|f| f.code == crate::analysis::Code::IdleTimeoutMismatch)
            .expect("an idle-timeout finding");
        assert_eq!(idle.remediation.target.kind, "Canary");
        assert_eq!(
            idle.remediation.changed_field(),
            Some("/spec/service/trafficPolicy")
        );
        // The workload detectors do not see Flagger's Service: a Sidecar selecting the
        // target's labels would miss the primary's pods.
        assert!(
            !found
                .iter()
                .any(|f| f.code == crate::analysis::Code::LocalhostBinding),
            "{found:?}"
        );

        let fixed = release(
            "{port: 80, targetPort: 8080, retries: {attempts: 3, retryOn: 'connect-failure,reset'}, \
             trafficPolicy: {connectionPool: {http: {idleTimeout: 58s}}}}",
            "",
        );
        assert!(findings(&fixed).is_empty(), "{:?}", findings(&fixed));
    }

    /// What the input holds under a name Flagger writes stays the input's; another
    /// provider's Canary writes no Istio rule.
    #[test]
    fn the_inputs_objects_and_other_providers_are_left_alone() {
        let own_vs = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: a}\n\
                      spec: {hosts: [web], http: [{route: [{destination: {host: web}}], retries: {attempts: 2, retryOn: reset}}]}\n";
        let s = release("{port: 80}", own_vs);
        assert!(!s.is_generated("VirtualService", "a", "web"));
        assert!(s.is_generated("Service", "a", "web"));
        let vs = &s.virtual_services[0];
        assert_eq!(vs.source.document, 3);
        let linkerd = release("{port: 80}", "  provider: linkerd\n");
        assert!(linkerd.canaries.is_empty());
        assert!(linkerd.virtual_services.is_empty());
        assert!(linkerd.services.is_empty());
        assert!(!linkerd.skipped.contains_key("flagger.app/v1beta1/Canary"));
    }

    /// A field Flagger copies into Istio's objects is refused as the Canary's field.
    #[test]
    fn a_bad_field_is_named_as_the_canarys() {
        let text = format!(
            "{NS}---\napiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata: {{name: web, namespace: a}}\n\
             spec:\n  targetRef: {{name: web}}\n  service:\n    port: 80\n    retries: {{attempts: three}}\n"
        );
        let docs = crate::snapshot::load::parse_documents("c.yaml", &text).expect("YAML");
        let mut builder = crate::snapshot::SnapshotBuilder::new(Default::default());
        let mut errors = docs
            .into_iter()
            .filter_map(|(at, v)| builder.add(at, v).err());
        let err = errors.next().expect("refused");
        assert!(
            err.to_string()
                .contains("Canary a/web: field `spec.service.retries.attempts`"),
            "{err}"
        );
    }

    /// A cluster's objects as read (`kubectl get -o yaml`, or live): Flagger's own
    /// VirtualService, owned by the Canary, is the Canary's too, and so is its fix; one owned
    /// by another Canary, or by nothing, is not.
    #[test]
    fn objects_flagger_wrote_are_the_canarys() {
        let owned = |canary: &str| {
            format!(
                "ownerReferences: [{{apiVersion: flagger.app/v1beta1, kind: Canary, name: {canary}, uid: u1, controller: true}}]"
            )
        };
        let vs = |canary: &str| {
            format!(
                "---\napiVersion: networking.istio.io/v1beta1\nkind: VirtualService\n\
                 metadata: {{name: web, namespace: a, {}}}\n\
                 spec:\n  hosts: [web]\n  gateways: [mesh]\n  http:\n  - retries: {{attempts: 2, retryOn: connect-failure}}\n    \
                 route:\n    - {{destination: {{host: web-primary}}, weight: 100}}\n    - {{destination: {{host: web-canary}}, weight: 0}}\n\
                 ---\napiVersion: v1\nkind: Service\nmetadata: {{name: web-primary, namespace: a, {}}}\n\
                 spec: {{selector: {{app: web}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n",
                owned(canary),
                owned(canary)
            )
        };
        // Not `release`: the fix, made to the Canary, shows in Flagger's VirtualService only
        // once Flagger has rewritten it, so the input analyses the same after it.
        let retry_of = |s: &Snapshot| {
            findings(s)
                .into_iter()
                .find(|f| f.code == crate::analysis::Code::MissingResetRetry)
                .expect("a retry finding")
                .remediation
        };
        let service =
            "{port: 80, targetPort: 8080, retries: {attempts: 2, retryOn: connect-failure}}";
        let s = built(&release_text(service, &vs("web")));
        assert!(s.is_generated("VirtualService", "a", "web"));
        // Flagger's Services select the primary's pods by the primary's labels: theirs.
        assert!(!s.is_generated("Service", "a", "web-primary"));
        let fix = retry_of(&s);
        assert_eq!(fix.target.kind, "Canary");
        assert_eq!(fix.changed_field(), Some("/spec/service/retries/retryOn"));
        // The Canary changed since Flagger wrote its VirtualService (no retries now): the
        // Canary's retries become the VirtualService's, fixed, not just a retryOn without
        // attempts (which Istio would read as no retries).
        let s = built(&release_text("{port: 80, targetPort: 8080}", &vs("web")));
        let fix = retry_of(&s);
        assert_eq!(fix.target.kind, "Canary");
        assert_eq!(fix.changed_field(), Some("/spec/service/retries"));
        assert_eq!(
            fix.resource.to_value()["spec"]["service"]["retries"],
            serde_json::json!({"attempts": 2, "retryOn": "connect-failure,reset,503"})
        );
        let other = release("{port: 80, targetPort: 8080}", &vs("api"));
        // The other Canary `api` is not in the input: nothing is the Canary's.
        assert!(!other.is_generated("VirtualService", "a", "web"));
        let retry = findings(&other)
            .into_iter()
            .find(|f| f.code == crate::analysis::Code::MissingResetRetry)
            .expect("a retry finding");
        assert_eq!(retry.remediation.target.kind, "VirtualService");
    }
}
