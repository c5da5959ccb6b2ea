//! Changes to a pod template's containers that Istio's injector makes when it injects a pod, for
//! a proxy written into the template (`istioctl kube-inject` output kept in Git) that no webhook
//! injects again: there, annotations the injector reads change nothing, and the fix is the
//! template the injector would have written.
//!
//! Each is a [`Rebuild`] of the containers list, worked out from the list as it is when the fix
//! is planned, not as it was analysed: two fixes on one template (the proxy moved first, the
//! probes rewritten) then compose in either order, and neither undoes the other.

use serde_json::{Map, Value, json};

use crate::model::workload::PROXY_CONTAINER;

/// A containers list worked out again from the list the fix is planned on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rebuild {
    /// `istio-proxy` first, with a postStart hook `pilot-agent wait` (the kubelet starts the
    /// next container only when it returns): what `holdApplicationUntilProxyStarts` injects.
    ProxyFirstHoldingTheApp,
    /// Every app container's HTTP, TCP and gRPC probe sent to the agent on `status_port`
    /// (`/app-health/<container>/livez`, `readyz`, `startupz`), with `lifecycle_hooks` its HTTP
    /// and TCP `preStop` and `postStart` hooks too (`/app-lifecycle/<container>/prestopz`,
    /// `poststartz`), and, when `istio-proxy` is in the list, the probes and hooks as they were
    /// given to the agent in `ISTIO_KUBE_APP_PROBERS`, which it then sends to the app past the
    /// sidecar: what the injector writes with probe rewrite on (Istio's
    /// `pkg/kube/inject/app_probe.go`; hooks since Istio 1.25, whose agent serves
    /// `/app-lifecycle/`).
    AppProbesThroughTheAgent {
        status_port: i32,
        lifecycle_hooks: bool,
    },
    /// The init containers with `ISTIO_KUBE_APP_PROBERS` on a native-sidecar `istio-proxy`,
    /// from the probes (and hooks) of the app containers beside them (the list at the same
    /// level): planned before [`Rebuild::AppProbesThroughTheAgent`] rewrites those.
    AgentToldTheAppProbes {
        status_port: i32,
        lifecycle_hooks: bool,
    },
}

/// The environment variable the agent reads the app's own probes from.
pub const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";

impl Rebuild {
    /// The list at `path` in `doc` rebuilt; an error names what is not as expected.
    pub fn apply_in(&self, doc: &Value, path: &[String]) -> Result<Value, String> {
        let at = |tokens: &[String]| {
            tokens.iter().try_fold(doc, |node, token| match node {
                Value::Object(map) => map.get(token),
                Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            })
        };
        let current = at(path).ok_or("it does not exist")?;
        let Rebuild::AgentToldTheAppProbes {
            status_port,
            lifecycle_hooks,
        } = self
        else {
            return self.apply(current);
        };
        let mut list = list_with_proxy(current)?;
        let apps = path
            .split_last()
            .and_then(|(_, parent)| at(parent))
            .and_then(|spec| spec.get("containers"))
            .and_then(Value::as_array)
            .ok_or("no containers beside it")?;
        let mut apps = apps.clone();
        let probers = app_probes_through_the_agent(&mut apps, *status_port, *lifecycle_hooks);
        if !probers.is_empty() {
            set_app_probers(&mut list.0[list.1], probers)?;
        }
        Ok(Value::Array(list.0))
    }

    /// The containers list `current` rebuilt (a rebuild that reads only its own list).
    pub fn apply(&self, current: &Value) -> Result<Value, String> {
        match self {
            Rebuild::ProxyFirstHoldingTheApp => {
                let (mut containers, proxy) = list_with_proxy(current)?;
                let mut proxy = containers.remove(proxy);
                let lifecycle = proxy
                    .as_object_mut()
                    .map(|fields| fields.entry("lifecycle").or_insert_with(|| json!({})));
                if let Some(lifecycle) = lifecycle {
                    if !lifecycle.is_object() {
                        *lifecycle = json!({});
                    }
                    lifecycle["postStart"] = json!({"exec": {"command": ["pilot-agent", "wait"]}});
                }
                containers.insert(0, proxy);
                Ok(Value::Array(containers))
            }
            Rebuild::AppProbesThroughTheAgent {
                status_port,
                lifecycle_hooks,
            } => {
                // A native-sidecar proxy is among the init containers, told by
                // `AgentToldTheAppProbes`.
                let (mut containers, proxy) = list_maybe_with_proxy(current)?;
                let probers =
                    app_probes_through_the_agent(&mut containers, *status_port, *lifecycle_hooks);
                if let Some(proxy) = proxy
                    && !probers.is_empty()
                {
                    set_app_probers(&mut containers[proxy], probers)?;
                }
                Ok(Value::Array(containers))
            }
            Rebuild::AgentToldTheAppProbes { .. } => {
                Err("the init containers are rebuilt beside their pod's containers".into())
            }
        }
    }
}

/// The list, and where `istio-proxy` is in it.
fn list_with_proxy(current: &Value) -> Result<(Vec<Value>, usize), String> {
    match list_maybe_with_proxy(current)? {
        (list, Some(i)) => Ok((list, i)),
        (_, None) => Err(format!("no {PROXY_CONTAINER} container")),
    }
}

/// The list, and where `istio-proxy` is in it if it is.
fn list_maybe_with_proxy(current: &Value) -> Result<(Vec<Value>, Option<usize>), String> {
    let Value::Array(containers) = current else {
        return Err("the containers are not a list".to_string());
    };
    let proxy = containers
        .iter()
        .position(|c| c.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER));
    match proxy {
        Some(i) if !containers[i].is_object() => Err(format!("container {i} is not an object")),
        _ => Ok((containers.clone(), proxy)),
    }
}

/// Rewrites the probes (and with `lifecycle_hooks` the HTTP and TCP lifecycle hooks) of the app
/// containers in `containers` to go to the agent; what the agent is to be told of them, by URL.
fn app_probes_through_the_agent(
    containers: &mut [Value],
    status_port: i32,
    lifecycle_hooks: bool,
) -> Map<String, Value> {
    let mut probers = Map::new();
    for container in containers.iter_mut() {
        let Some(fields) = container.as_object_mut() else {
            continue;
        };
        let name = match fields.get("name").and_then(Value::as_str) {
            Some(n) if n != PROXY_CONTAINER => n.to_string(),
            _ => continue,
        };
        let named_ports = named_ports(fields);
        // Each probe or hook in `map` under `key`, to the agent at `url`.
        let mut through = |map: &mut Map<String, Value>, key: &str, url: String| {
            let Some(action) = map.get(key).and_then(Value::as_object) else {
                return;
            };
            let Some(prober) = prober(action, &named_ports, status_port) else {
                return;
            };
            let rewritten = through_the_agent(action, &url, status_port);
            map.insert(key.to_string(), rewritten);
            probers.insert(url, prober);
        };
        for (key, endpoint) in [
            ("readinessProbe", "readyz"),
            ("livenessProbe", "livez"),
            ("startupProbe", "startupz"),
        ] {
            through(fields, key, format!("/app-health/{name}/{endpoint}"));
        }
        if !lifecycle_hooks {
            continue;
        }
        let Some(hooks) = fields.get_mut("lifecycle").and_then(Value::as_object_mut) else {
            continue;
        };
        for (key, endpoint) in [("preStop", "prestopz"), ("postStart", "poststartz")] {
            // A hook is an HTTP GET, a TCP connection, a command or a sleep, without a
            // timeout; the last two run past no proxy and are left as they are (and `grpc` is
            // no hook's, so not read as one).
            if hooks
                .get(key)
                .is_some_and(|hook| hook.get("grpc").is_some())
            {
                continue;
            }
            through(hooks, key, format!("/app-lifecycle/{name}/{endpoint}"));
        }
    }
    probers
}

/// A container's named ports: a probe may name its port, and the agent needs the number.
fn named_ports(container: &Map<String, Value>) -> Vec<(String, i64)> {
    container
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p.get("name")?.as_str()?.to_string(),
                p.get("containerPort")?.as_i64()?,
            ))
        })
        .collect()
}

/// What the agent is told of a probe (its action, the port as a number, its timeout), or `None`
/// for one the injector leaves as it is: an `exec` probe, one already sent to the agent, or one
/// naming a port the container does not declare.
fn prober(probe: &Map<String, Value>, named: &[(String, i64)], status_port: i32) -> Option<Value> {
    let (kind, action) = ["httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .find_map(|kind| probe.get(kind).map(|action| (kind, action)))?;
    let mut action = action.as_object()?.clone();
    if kind != "grpc" {
        let port = match action.get("port")? {
            Value::Number(n) => n.as_i64()?,
            Value::String(s) => match s.parse::<i64>() {
                Ok(n) => n,
                Err(_) => named.iter().find(|(name, _)| name == s)?.1,
            },
            _ => return None,
        };
        if port == i64::from(status_port) {
            return None;
        }
        action.insert("port".to_string(), json!(port));
    }
    let mut prober = Map::new();
    prober.insert(kind.to_string(), Value::Object(action));
    if let Some(timeout) = probe
        .get("timeoutSeconds")
        .and_then(Value::as_i64)
        .filter(|t| *t != 0)
    {
        prober.insert("timeoutSeconds".to_string(), json!(timeout));
    }
    Some(Value::Object(prober))
}

/// The probe sent to the agent: an HTTP GET of `url` on `status_port` (an HTTP probe keeps its
/// host and headers; HTTPS becomes HTTP, the agent speaking TLS to the app), in the place of
/// the action it replaces; every other field (delays, periods, thresholds) as it was, in its
/// order.
fn through_the_agent(probe: &Map<String, Value>, url: &str, status_port: i32) -> Value {
    let mut out = Map::with_capacity(probe.len());
    for (key, value) in probe {
        if !matches!(key.as_str(), "httpGet" | "tcpSocket" | "grpc") {
            out.insert(key.clone(), value.clone());
            continue;
        }
        if out.contains_key("httpGet") {
            continue;
        }
        let mut get = match (key.as_str(), value) {
            ("httpGet", Value::Object(get)) => get.clone(),
            _ => Map::new(),
        };
        get.insert("path".to_string(), json!(url));
        get.insert("port".to_string(), json!(status_port));
        if get.get("scheme").and_then(Value::as_str) == Some("HTTPS") {
            get.insert("scheme".to_string(), json!("HTTP"));
        }
        out.insert("httpGet".to_string(), Value::Object(get));
    }
    Value::Object(out)
}

/// `ISTIO_KUBE_APP_PROBERS` on the proxy: the probers already there (a probe rewritten before)
/// with the new ones added, as JSON with sorted keys, as the injector writes it.
fn set_app_probers(proxy: &mut Value, mut probers: Map<String, Value>) -> Result<(), String> {
    let fields = proxy
        .as_object_mut()
        .ok_or_else(|| format!("{PROXY_CONTAINER} is not an object"))?;
    let env = fields.entry("env").or_insert_with(|| json!([]));
    let Value::Array(env) = env else {
        return Err(format!("{PROXY_CONTAINER}'s env is not a list"));
    };
    let existing = env
        .iter()
        .position(|e| e.get("name").and_then(Value::as_str) == Some(APP_PROBERS_ENV));
    if let Some(i) = existing {
        // Set some other way (`valueFrom`): the user's, not replaced.
        let before = env[i].get("value").and_then(Value::as_str).ok_or_else(|| {
            format!("{PROXY_CONTAINER}'s {APP_PROBERS_ENV} has no value of its own to add to")
        })?;
        let before: Map<String, Value> = serde_json::from_str(before).map_err(|e| {
            format!("{PROXY_CONTAINER}'s {APP_PROBERS_ENV} is not a JSON object: {e}")
        })?;
        for (url, prober) in before {
            probers.entry(url).or_insert(prober);
        }
    }
    let mut sorted: Vec<(String, Value)> = probers.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let text = serde_json::to_string(&sorted.into_iter().collect::<Map<_, _>>())
        .map_err(|e| e.to_string())?;
    let entry = json!({"name": APP_PROBERS_ENV, "value": text});
    match existing {
        Some(i) => env[i] = entry,
        None => env.push(entry),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn containers(yaml: &str) -> Value {
        crate::snapshot::yaml::from_str(yaml).expect("yaml")
    }

    /// What `istioctl kube-inject` wrote for microservices-demo's adservice, frontend and
    /// redis-cart with probe rewrite on, from the same Deployments injected with it off: gRPC,
    /// HTTP with headers and TCP probes, each on the app's own port.
    #[test]
    fn probes_go_to_the_agent_as_the_injector_sends_them() {
        let before = containers(
            r#"
- name: server
  ports: [{name: grpc, containerPort: 9555}]
  readinessProbe: {grpc: {port: 9555}, periodSeconds: 15}
  livenessProbe: {grpc: {port: 9555}, initialDelaySeconds: 20}
- name: web
  livenessProbe:
    httpGet:
      path: /_healthz
      port: http
      httpHeaders: [{name: Cookie, value: shop_session-id=x-liveness-probe}]
  ports: [{name: http, containerPort: 8080}]
- name: redis
  readinessProbe: {tcpSocket: {port: 6379}, timeoutSeconds: 2}
  startupProbe: {exec: {command: [redis-cli, ping]}}
- name: istio-proxy
  env: [{name: ISTIO_META_APP_CONTAINERS, value: "server,web,redis"}]
"#,
        );
        let after = Rebuild::AppProbesThroughTheAgent {
            status_port: 15020,
            lifecycle_hooks: true,
        }
        .apply(&before)
        .expect("rebuilt");
        assert_eq!(
            after[0]["readinessProbe"],
            json!({"periodSeconds": 15, "httpGet": {"path": "/app-health/server/readyz", "port": 15020}})
        );
        assert_eq!(
            after[0]["livenessProbe"]["httpGet"],
            json!({"path": "/app-health/server/livez", "port": 15020})
        );
        assert_eq!(after[0]["livenessProbe"]["initialDelaySeconds"], 20);
        assert_eq!(
            after[1]["livenessProbe"]["httpGet"],
            json!({"path": "/app-health/web/livez", "port": 15020,
                   "httpHeaders": [{"name": "Cookie", "value": "shop_session-id=x-liveness-probe"}]})
        );
        assert!(after[2]["readinessProbe"].get("tcpSocket").is_none());
        // An exec probe runs in the container, past no proxy: left as it is.
        assert_eq!(after[2]["startupProbe"], before[2]["startupProbe"]);
        let env = &after[3]["env"];
        assert_eq!(env[0], before[3]["env"][0]);
        assert_eq!(env[1]["name"], APP_PROBERS_ENV);
        let probers: Value =
            serde_json::from_str(env[1]["value"].as_str().expect("text")).expect("json");
        assert_eq!(
            probers,
            json!({
                "/app-health/redis/readyz": {"tcpSocket": {"port": 6379}, "timeoutSeconds": 2},
                "/app-health/server/livez": {"grpc": {"port": 9555}},
                "/app-health/server/readyz": {"grpc": {"port": 9555}},
                "/app-health/web/livez": {"httpGet": {"path": "/_healthz", "port": 8080,
                    "httpHeaders": [{"name": "Cookie", "value": "shop_session-id=x-liveness-probe"}]}},
            })
        );
        // Sorted as Go writes a map.
        assert!(
            env[1]["value"]
                .as_str()
                .is_some_and(|t| t.starts_with(r#"{"/app-health/redis/readyz""#))
        );
        // Applied again, nothing changes: every probe already goes to the agent.
        assert_eq!(
            Rebuild::AppProbesThroughTheAgent {
                status_port: 15020,
                lifecycle_hooks: true,
            }
            .apply(&after),
            Ok(after.clone())
        );
    }

    #[test]
    fn probers_already_given_to_the_agent_are_kept_and_https_becomes_http() {
        let before = containers(
            r#"
- name: app
  readinessProbe: {httpGet: {path: /ready, port: 8443, scheme: HTTPS}}
  livenessProbe: {httpGet: {path: /app-health/app/livez, port: 15020}}
- name: istio-proxy
  env:
  - name: ISTIO_KUBE_APP_PROBERS
    value: '{"/app-health/app/livez":{"httpGet":{"path":"/live","port":8080}}}'
"#,
        );
        let after = Rebuild::AppProbesThroughTheAgent {
            status_port: 15020,
            lifecycle_hooks: true,
        }
        .apply(&before)
        .expect("rebuilt");
        assert_eq!(after[0]["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(after[0]["livenessProbe"], before[0]["livenessProbe"]);
        let probers: Value =
            serde_json::from_str(after[1]["env"][0]["value"].as_str().expect("text"))
                .expect("json");
        assert_eq!(
            probers,
            json!({
                "/app-health/app/livez": {"httpGet": {"path": "/live", "port": 8080}},
                "/app-health/app/readyz": {"httpGet": {"path": "/ready", "port": 8443, "scheme": "HTTPS"}},
            })
        );
        // Not JSON: an error, never a guess.
        let broken = containers(
            "- {name: app, readinessProbe: {tcpSocket: {port: 80}}}\n- {name: istio-proxy, env: [{name: ISTIO_KUBE_APP_PROBERS, value: 'x'}]}\n",
        );
        let err = Rebuild::AppProbesThroughTheAgent {
            status_port: 15020,
            lifecycle_hooks: true,
        }
        .apply(&broken)
        .expect_err("not JSON");
        assert!(
            err.contains("ISTIO_KUBE_APP_PROBERS is not a JSON object"),
            "{err}"
        );
        let from_elsewhere = containers(
            "- {name: app, readinessProbe: {tcpSocket: {port: 80}}}\n- {name: istio-proxy, env: [{name: ISTIO_KUBE_APP_PROBERS, valueFrom: {configMapKeyRef: {name: p, key: k}}}]}\n",
        );
        let err = Rebuild::AppProbesThroughTheAgent {
            status_port: 15020,
            lifecycle_hooks: true,
        }
        .apply(&from_elsewhere)
        .expect_err("valueFrom");
        assert!(err.contains("has no value of its own"), "{err}");
    }

    /// Istio 1.25's injector (`convertAppLifecycleHandler`): an HTTP or TCP hook goes to the
    /// agent like a probe, its named port given to the agent as a number; a command is left as
    /// it is; an older agent serves no hooks, so with `lifecycle_hooks` off none is touched.
    #[test]
    fn lifecycle_hooks_go_to_the_agent_with_the_probes() {
        let before = containers(
            r#"
- name: app
  ports: [{name: admin, containerPort: 9000}]
  lifecycle:
    preStop: {httpGet: {path: /drain, port: admin, httpHeaders: [{name: X, value: z}]}}
    postStart: {exec: {command: [warm]}}
- name: istio-proxy
"#,
        );
        let rebuild = |lifecycle_hooks| Rebuild::AppProbesThroughTheAgent {
            status_port: 15021,
            lifecycle_hooks,
        };
        let after = rebuild(true).apply(&before).expect("rebuilt");
        assert_eq!(
            after[0]["lifecycle"],
            json!({
                "preStop": {"httpGet": {"path": "/app-lifecycle/app/prestopz", "port": 15021,
                    "httpHeaders": [{"name": "X", "value": "z"}]}},
                "postStart": {"exec": {"command": ["warm"]}},
            })
        );
        assert_eq!(
            after[1]["env"][0]["value"],
            r#"{"/app-lifecycle/app/prestopz":{"httpGet":{"path":"/drain","port":9000,"httpHeaders":[{"name":"X","value":"z"}]}}}"#
        );
        assert_eq!(rebuild(true).apply(&after), Ok(after.clone()));
        assert_eq!(rebuild(false).apply(&before), Ok(before.clone()));
    }

    #[test]
    fn the_proxy_moves_first_with_its_wait_hook() {
        let before = containers(
            "- {name: app, image: a}\n- {name: istio-proxy, lifecycle: {preStop: {exec: {command: [x]}}}}\n",
        );
        let after = Rebuild::ProxyFirstHoldingTheApp
            .apply(&before)
            .expect("rebuilt");
        assert_eq!(after[0]["name"], "istio-proxy");
        assert_eq!(
            after[0]["lifecycle"],
            json!({"preStop": {"exec": {"command": ["x"]}},
                   "postStart": {"exec": {"command": ["pilot-agent", "wait"]}}})
        );
        assert_eq!(after[1], before[0]);
        let none = containers("- {name: app}\n");
        assert_eq!(
            Rebuild::ProxyFirstHoldingTheApp.apply(&none),
            Err("no istio-proxy container".to_string())
        );
    }
}
