//! The Istio installation a repository describes instead of holding it rendered: an
//! `IstioOperator` (`istioctl install -f`) or the Sail operator's `Istio` (OpenShift Service
//! Mesh 3). Each sets the mesh config, the injector's values and often the version; istioctl or
//! the operator turns them into the `istio` and `istio-sidecar-injector` ConfigMaps and istiod's
//! Deployment that the analysis otherwise reads. Rendered objects in the input win over these.

use serde_json::Value;

use super::profile::{InjectorSettings, IstiodSeen};
use crate::error::{Error, Result, Source};
use crate::snapshot::IstioVersion;

/// What an installation spec says, as the builder takes it.
#[derive(Debug)]
pub struct Install {
    /// istiod as the spec installs it: its revision, version and `ENABLE_NATIVE_SIDECARS`.
    pub istiod: IstiodSeen,
    pub injector: InjectorSettings,
    /// The mesh config and the field it is at (`spec.meshConfig`).
    pub mesh_config: Option<(Value, &'static str)>,
}

/// The kinds read here.
pub fn is_install(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("install.istio.io", "IstioOperator") | ("sailoperator.io", "Istio")
    )
}

/// Where the mesh config is in an installation spec of `kind`.
pub fn mesh_config_field(kind: &str) -> &'static str {
    if kind == "IstioOperator" {
        "spec.meshConfig"
    } else {
        "spec.values.meshConfig"
    }
}

/// The mesh config an installation spec of `kind` holds, as written (at [`mesh_config_field`]).
pub fn mesh_config_of<'v>(kind: &str, value: &'v Value) -> Option<&'v Value> {
    let spec = value.get("spec")?;
    if kind == "IstioOperator" {
        spec.get("meshConfig")
    } else {
        spec.get("values")?.get("meshConfig")
    }
}

/// Reads an `IstioOperator` or a Sail `Istio` (`object` names it, `Kind ns/name (file)`).
/// `None` for an IstioOperator that installs no istiod (`profile: empty` or `remote` without
/// `components.pilot.enabled`, or pilot disabled): a gateway's or a CNI's, which sets nothing
/// istiod reads.
pub fn read(at: &Source, object: &str, kind: &str, value: &Value) -> Result<Option<Install>> {
    let invalid = |field: &str, message: &str| Error::InvalidField {
        at: at.clone(),
        object: object.to_string(),
        field: field.to_string(),
        message: message.to_string(),
    };
    let spec = match value.get("spec") {
        None | Some(Value::Null) => &Value::Null,
        Some(spec @ Value::Object(_)) => spec,
        Some(_) => return Err(invalid("spec", "expected a mapping")),
    };
    let values = match spec.get("values") {
        None | Some(Value::Null) => &Value::Null,
        Some(values @ Value::Object(_)) => values,
        Some(_) => return Err(invalid("spec.values", "expected a mapping")),
    };
    let text = |field: &str, v: Option<&Value>| -> Result<Option<String>> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(invalid(field, "expected a string")),
        }
    };
    let flag = |pointer: &str| values.pointer(pointer).and_then(Value::as_bool);
    if kind == "IstioOperator" {
        let pilot = spec
            .pointer("/components/pilot/enabled")
            .and_then(Value::as_bool);
        let profile = spec
            .get("profile")
            .and_then(Value::as_str)
            .unwrap_or("default");
        if pilot == Some(false) || (pilot.is_none() && matches!(profile, "empty" | "remote")) {
            return Ok(None);
        }
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let is_operator = kind == "IstioOperator";
    let version_key = if is_operator { "tag" } else { "version" };
    let version_field = format!("spec.{version_key}");
    let version = text(&version_field, spec.get(version_key))?;
    // `tag: 1.20` unquoted is the number 1.2: which release was meant, the value cannot say.
    let numeric = spec.get(version_key).is_some_and(Value::is_number);
    let named_revision = text("spec.revision", spec.get("revision"))?
        .or(text("spec.values.revision", values.get("revision"))?)
        .filter(|r| !r.is_empty());
    let revision = match named_revision {
        Some(r) => r,
        None if is_operator => "default".to_string(),
        // Sail names the revision after the resource; with the RevisionBased strategy, after
        // the resource and the version (`default-v1-24-4`).
        None => {
            let revision_based = value
                .pointer("/spec/updateStrategy/type")
                .and_then(Value::as_str)
                == Some("RevisionBased");
            match (&version, revision_based) {
                (Some(v), true) => format!("{name}-{}", v.replace('.', "-")),
                _ => name.to_string(),
            }
        }
    };
    // `latest` or `default` parse as no version.
    let version = version
        .filter(|_| !numeric)
        .and_then(|v| IstioVersion::parse(&v, &format!("{object} {version_field} {v}")));
    // istiod's env in the operator's component overlay (`components.pilot.k8s.env`).
    let component_env = spec
        .pointer("/components/pilot/k8s/env")
        .and_then(Value::as_array)
        .and_then(|env| {
            env.iter()
                .find(|e| e.get("name").and_then(Value::as_str) == Some("ENABLE_NATIVE_SIDECARS"))
        })
        .and_then(|e| e.get("value"))
        .and_then(setting);
    let auto_inject = values
        .pointer("/global/proxy/autoInject")
        .and_then(Value::as_str);
    let mesh_field = mesh_config_field(kind);
    let mesh_config = match mesh_config_of(kind, value) {
        None | Some(Value::Null) => None,
        Some(mesh @ Value::Object(_)) => Some((mesh.clone(), mesh_field)),
        Some(_) => return Err(invalid(mesh_field, "expected a mapping")),
    };
    Ok(Some(Install {
        istiod: IstiodSeen {
            revision: revision.clone(),
            image: None,
            version,
            native_sidecars: component_env,
            object: object.to_string(),
        },
        injector: InjectorSettings {
            enable_namespaces_by_default: flag("/sidecarInjectorWebhook/enableNamespacesByDefault"),
            // The chart writes `policy: {{ .Values.global.proxy.autoInject }}`.
            policy_enabled: auto_inject.map(|p| p != "disabled"),
            hold_application_until_proxy_starts: flag(
                "/global/proxy/holdApplicationUntilProxyStarts",
            ),
            rewrite_app_http_probe: flag("/sidecarInjectorWebhook/rewriteAppHTTPProbe"),
            native_sidecars: values
                .pointer("/pilot/env/ENABLE_NATIVE_SIDECARS")
                .and_then(setting),
            source: object.to_string(),
        },
        mesh_config,
    }))
}

/// An env value as Helm writes it: a string or a bare boolean.
fn setting(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        crate::snapshot::yaml::from_str(text).unwrap()
    }

    #[test]
    fn an_istio_operator_gives_its_revision_version_values_and_mesh_config() {
        let iop = yaml(
            "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: canary, namespace: istio-system}\nspec:\n  revision: 1-24\n  tag: 1.24.3\n  meshConfig:\n    defaultHttpRetryPolicy: {attempts: 3, retryOn: reset}\n  values:\n    global:\n      proxy: {holdApplicationUntilProxyStarts: true, autoInject: disabled}\n    sidecarInjectorWebhook: {rewriteAppHTTPProbe: false, enableNamespacesByDefault: true}\n  components:\n    pilot:\n      k8s:\n        env:\n        - {name: PILOT_X, value: \"1\"}\n        - {name: ENABLE_NATIVE_SIDECARS, value: \"true\"}\n",
        );
        let object = "IstioOperator istio-system/canary";
        let install = read(&Source::new("iop.yaml", 0), object, "IstioOperator", &iop)
            .unwrap()
            .unwrap();
        assert_eq!(install.istiod.revision, "1-24");
        let version = install.istiod.version.unwrap();
        assert_eq!((version.major, version.minor), (1, 24));
        assert_eq!(
            version.source,
            "IstioOperator istio-system/canary spec.tag 1.24.3"
        );
        assert_eq!(install.istiod.native_sidecars.as_deref(), Some("true"));
        assert_eq!(
            install.injector.hold_application_until_proxy_starts,
            Some(true)
        );
        assert_eq!(install.injector.policy_enabled, Some(false));
        assert_eq!(install.injector.rewrite_app_http_probe, Some(false));
        assert_eq!(install.injector.enable_namespaces_by_default, Some(true));
        let (mesh, field) = install.mesh_config.unwrap();
        assert_eq!(field, "spec.meshConfig");
        assert_eq!(mesh["defaultHttpRetryPolicy"]["retryOn"], "reset");
    }

    #[test]
    fn a_sail_istio_names_its_revision_after_itself_and_its_strategy() {
        let text = |strategy: &str| {
            yaml(&format!(
                "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {{name: default}}\nspec:\n  version: v1.28-latest\n  updateStrategy: {{type: {strategy}}}\n  values:\n    pilot:\n      env: {{ENABLE_NATIVE_SIDECARS: false}}\n    meshConfig: {{accessLogFile: /dev/stdout}}\n"
            ))
        };
        let read_as = |strategy| {
            read(
                &Source::new("istio.yml", 0),
                "Istio /default",
                "Istio",
                &text(strategy),
            )
            .unwrap()
            .unwrap()
        };
        let in_place = read_as("InPlace");
        assert_eq!(in_place.istiod.revision, "default");
        let version = in_place.istiod.version.as_ref().unwrap();
        assert_eq!((version.major, version.minor), (1, 28));
        assert_eq!(in_place.injector.native_sidecars.as_deref(), Some("false"));
        assert_eq!(
            in_place.mesh_config.as_ref().unwrap().1,
            "spec.values.meshConfig"
        );
        assert_eq!(
            read_as("RevisionBased").istiod.revision,
            "default-v1-28-latest"
        );
    }

    /// What the cluster runs wins over what a spec says, in either order in the input: istiod's
    /// Deployment over the spec's tag, the rendered injector ConfigMap over its values.
    #[test]
    fn rendered_objects_win_over_the_spec_in_either_order() {
        let iop = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: m, namespace: istio-system}\nspec:\n  tag: 1.22.1\n  values:\n    sidecarInjectorWebhook: {rewriteAppHTTPProbe: false}\n";
        let istiod = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: istiod, namespace: istio-system, labels: {app: istiod}}\nspec:\n  selector: {matchLabels: {app: istiod}}\n  template:\n    metadata: {labels: {app: istiod}}\n    spec:\n      containers:\n      - {name: discovery, image: docker.io/istio/pilot:1.26.2}\n";
        let injector = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-sidecar-injector, namespace: istio-system}\ndata:\n  values: '{\"sidecarInjectorWebhook\": {\"rewriteAppHTTPProbe\": true}}'\n";
        let alone = crate::analysis::test_support::snapshot(iop);
        assert_eq!(alone.profile.istio.minor, 22);
        assert!(!alone.profile.rewrite_app_http_probe);
        for text in [
            format!("{iop}---\n{istiod}---\n{injector}"),
            format!("{injector}---\n{istiod}---\n{iop}"),
        ] {
            let s = crate::analysis::test_support::snapshot(&text);
            assert_eq!(s.profile.istio.minor, 26, "{}", s.profile.istio.source);
            assert!(s.profile.rewrite_app_http_probe);
        }
    }

    /// Several specs (overlays for `istioctl install -f a -f b`, or variants of a demo) leave
    /// the version and the mesh config unread, and say so, rather than pick one.
    #[test]
    fn several_specs_are_none_of_them_read() {
        let spec = |name: &str, tag: &str| {
            format!(
                "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {{name: {name}}}\nspec:\n  tag: {tag}\n  meshConfig: {{accessLogFile: /dev/stdout}}\n"
            )
        };
        let gateway = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: gw}\nspec:\n  profile: empty\n  tag: 1.20.0\n  meshConfig: {accessLogFile: /dev/null}\n";
        let one = crate::analysis::test_support::snapshot(&format!(
            "{}---\n{gateway}",
            spec("a", "1.23.1")
        ));
        assert_eq!(one.profile.istio.minor, 23);
        assert!(
            one.profile
                .mesh_config
                .starts_with("spec.meshConfig of IstioOperator")
        );
        let two = crate::analysis::test_support::snapshot(&format!(
            "{}---\n{}",
            spec("a", "1.23.1"),
            spec("b", "1.24.0")
        ));
        assert_eq!(two.profile.istio.source, "assumed (newest known)");
        assert!(
            two.profile
                .mesh_config
                .starts_with("Istio defaults (2 installation specs"),
            "{}",
            two.profile.mesh_config
        );
        assert!(
            two.profile
                .assumptions
                .iter()
                .any(|a| a.starts_with("2 installation specs for revision default")),
            "{:?}",
            two.profile.assumptions
        );
    }

    #[test]
    fn fields_of_the_wrong_type_are_named_and_an_unknown_version_is_none() {
        let at = Source::new("iop.yaml", 0);
        let iop = |spec: &str| yaml(&format!("kind: IstioOperator\nspec: {spec}\n"));
        for (spec, field) in [
            ("[1]", "spec"),
            ("{values: 3}", "spec.values"),
            ("{tag: [1]}", "spec.tag"),
            ("{meshConfig: on}", "spec.meshConfig"),
        ] {
            let e = read(&at, "IstioOperator /x", "IstioOperator", &iop(spec)).unwrap_err();
            assert!(e.to_string().contains(&format!("`{field}`")), "{spec}: {e}");
        }
        let read_ok =
            |spec: &str| read(&at, "IstioOperator /x", "IstioOperator", &iop(spec)).unwrap();
        let latest = read_ok("{tag: latest}").unwrap();
        assert!(latest.istiod.version.is_none());
        // Unquoted, 1.20 is the number 1.2: not read as a version at all.
        assert!(read_ok("{tag: 1.20}").unwrap().istiod.version.is_none());
        assert_eq!(
            read_ok("{tag: '1.20'}")
                .unwrap()
                .istiod
                .version
                .unwrap()
                .minor,
            20
        );
        // A gateway's IstioOperator installs no istiod.
        assert!(read_ok("{profile: empty, components: {ingressGateways: []}}").is_none());
        assert!(read_ok("{components: {pilot: {enabled: false}}}").is_none());
        assert!(read_ok("{profile: empty, components: {pilot: {enabled: true}}}").is_some());
    }
}
