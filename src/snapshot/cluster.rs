//! Reading a live cluster for `meshmedic analyze --cluster`: the kinds the operator watches,
//! listed (read-only, paginated) through the kubeconfig, optionally overlaid with local files.

use std::collections::HashSet;

use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use super::load::{Input, ObjectDocument};
use super::yaml::Document;
use crate::controller::stores::{KINDS, api_resource, strip};
use crate::error::{Error, Result, Source};

/// Which namespaces to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `-A`: every namespace.
    All,
    /// `-n NS` (or the context's namespace), plus the mesh root namespace for its rules, mesh
    /// config and istiod.
    Namespace(String),
}

/// How to reach the cluster.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub context: Option<String>,
}

/// A client from the kubeconfig (`--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`), and
/// the context's namespace.
pub async fn connect(connection: &Connection) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: connection.context.clone(),
        ..KubeConfigOptions::default()
    };
    let bad = |e: kube::config::KubeconfigError| Error::InvalidArgument {
        flag: "--kubeconfig/--context".to_string(),
        message: format!("cannot use the kubeconfig: {e}"),
    };
    let config = match &connection.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(bad)?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(bad)?
        }
        None => Config::from_kubeconfig(&options).await.map_err(bad)?,
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config)?;
    Ok((client, namespace))
}

/// Lists every kind the operator reads, in the scope, `page_size` objects per request, as
/// documents for the snapshot builder.
/// Kinds the API server does not serve (no Istio CRDs) or the user may not list are reported
/// through `progress` and left out. `progress` gets one line per kind.
pub async fn read(
    client: &Client,
    scope: &Scope,
    root_namespace: &str,
    page_size: u32,
    progress: &mut dyn FnMut(String),
) -> Result<Vec<ObjectDocument>> {
    let mut out = Vec::new();
    let namespaces: Vec<Option<&str>> = match scope {
        Scope::All => vec![None],
        Scope::Namespace(ns) if ns == root_namespace => vec![Some(ns.as_str())],
        Scope::Namespace(ns) => vec![Some(ns.as_str()), Some(root_namespace)],
    };
    let config_maps = ("", "v1", "ConfigMap", "configmaps", true);
    for (group, version, kind, plural, optional) in KINDS.iter().copied().chain([config_maps]) {
        let ar = api_resource(group, version, kind, plural);
        let mut count = 0usize;
        let cluster_scoped = kind == "Namespace" || kind == "Node";
        // Mesh config and injector values: ConfigMaps of the root namespace only, as the operator.
        let targets: Vec<Option<&str>> = if cluster_scoped {
            vec![None]
        } else if kind == "ConfigMap" {
            vec![Some(root_namespace)]
        } else {
            namespaces.clone()
        };
        let mut note = String::new();
        for ns in targets {
            let api: Api<DynamicObject> = match ns {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let mut params = ListParams::default().limit(page_size.max(1));
            loop {
                let page = match api.list(&params).await {
                    Ok(page) => page,
                    Err(kube::Error::Api(s)) if s.code == 404 && optional => {
                        note = " (not served: CRD absent)".to_string();
                        break;
                    }
                    Err(kube::Error::Api(s)) if s.code == 403 => {
                        note = format!(" (forbidden: {})", s.message);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                for mut obj in page.items {
                    if kind == "Namespace"
                        && let Scope::Namespace(ns) = scope
                    {
                        let name = obj.metadata.name.as_deref().unwrap_or_default();
                        if name != ns && name != root_namespace {
                            continue;
                        }
                    }
                    strip(&mut obj);
                    let Ok(mut value) = serde_json::to_value(&obj) else {
                        continue;
                    };
                    if let Some(map) = value.as_object_mut() {
                        map.insert("apiVersion".into(), Value::String(ar.api_version.clone()));
                        map.insert("kind".into(), Value::String(ar.kind.clone()));
                    }
                    out.push(ObjectDocument::of_value(
                        Source::new("cluster", 0),
                        1,
                        Document {
                            value,
                            lines: Default::default(),
                            text: None,
                        },
                    ));
                    count += 1;
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => {
                        progress(format!("{kind}: {count} so far…"));
                        params = params.continue_token(&token);
                    }
                    None => break,
                }
            }
        }
        progress(format!("{kind}: {count}{note}"));
    }
    Ok(out)
}

/// `(kind, namespace, name)` of an object; `namespace` empty for a Namespace.
fn key(value: &Value) -> Option<(String, String, String)> {
    let kind = value.get("kind")?.as_str()?.to_string();
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_string();
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((kind, namespace, name))
}

/// Puts local objects over the cluster's: a local object replaces the cluster object of the same
/// kind, namespace and name. Local objects without a namespace go to `namespace`, as
/// `kubectl apply -n` would put them. Returns how many cluster objects were replaced.
pub fn overlay(cluster: Vec<ObjectDocument>, local: &mut Input, namespace: &str) -> usize {
    let mut local_keys = HashSet::new();
    for obj in &mut local.objects {
        let Some(value) = obj.value_mut() else {
            continue;
        };
        let is_list = value.get("items").is_some_and(Value::is_array)
            && value
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"));
        let items: Vec<&mut Value> = if is_list {
            value
                .get_mut("items")
                .and_then(Value::as_array_mut)
                .map(|a| a.iter_mut().collect())
                .unwrap_or_default()
        } else {
            vec![value]
        };
        for item in items {
            let namespaced = item.get("kind").and_then(Value::as_str) != Some("Namespace");
            if namespaced
                && let Some(meta) = item.get_mut("metadata").and_then(Value::as_object_mut)
                && !meta.contains_key("namespace")
            {
                meta.insert("namespace".into(), Value::String(namespace.to_string()));
            }
            local_keys.extend(key(item));
        }
    }
    let before = cluster.len();
    let kept: Vec<ObjectDocument> = cluster
        .into_iter()
        .filter(|o| key(o.value()).is_none_or(|k| !local_keys.contains(&k)))
        .collect();
    let replaced = before - kept.len();
    let mut objects = super::load::Documents::default();
    objects.push_part(kept);
    objects.append(&mut local.objects);
    local.objects = objects;
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(file: &str, value: Value) -> ObjectDocument {
        ObjectDocument::of_value(
            Source::new(file, 0),
            1,
            Document {
                value,
                ..Default::default()
            },
        )
    }

    #[test]
    fn local_objects_replace_cluster_objects_of_the_same_key() {
        let cluster = vec![
            doc(
                "cluster",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "shop"}}),
            ),
            doc(
                "cluster",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "namespace": "shop"}}),
            ),
            doc(
                "cluster",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            ),
        ];
        let mut local = Input::default();
        local.objects.push(doc(
            "a.yaml",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}),
        ));
        local.objects.push(doc(
            "list.yaml",
            json!({"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"x": "y"}}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c", "namespace": "other"}},
            ]}),
        ));
        let replaced = overlay(cluster, &mut local, "shop");
        assert_eq!(replaced, 2);
        let files: Vec<&str> = local.objects.iter().map(|o| &*o.source.file).collect();
        assert_eq!(files, ["cluster", "a.yaml", "list.yaml"]);
        assert_eq!(local.objects[1].value()["metadata"]["namespace"], "shop");
        let items = &local.objects[2].value()["items"];
        assert!(items[0]["metadata"].get("namespace").is_none());
        assert_eq!(items[1]["metadata"]["namespace"], "other");
    }
}
