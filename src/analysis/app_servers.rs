//! What an application server does with idle keep-alive connections, learned from the pod
//! template: meshmedic's annotation, a server's own flag or env var, or the known default of the
//! server detected from image, command and args. When nothing is known the answer is
//! [`AppIdle::Unknown`] and no finding follows: meshmedic never guesses.

use std::time::Duration;

use crate::model::workload::Container;
use crate::snapshot::app_config::Directives;

use crate::model::{duration, keys};

#[derive(Clone, Debug, PartialEq)]
pub enum AppIdle {
    /// The app closes idle connections after this long.
    Closes {
        after: Duration,
        why: String,
    },
    /// The app keeps no idle connections, or never times them out: it cannot race the proxy.
    NoRace {
        why: String,
    },
    Unknown,
}

/// Splits command and args into words, so `sh -c "gunicorn -k gevent app"` is read too. A
/// shell comment (a word that starts with `#`, to the end of its line) runs nothing: the
/// CockroachDB StatefulSet of kubernetes/examples, whose `bash -c` script says "a node
/// attempting to join itself" in a comment, was read as running Node.js.
pub fn words(container: &Container) -> Vec<String> {
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .flat_map(|a| a.lines())
        .flat_map(|line| line.split_whitespace().take_while(|w| !w.starts_with('#')))
        .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
        .collect()
}

/// The value of `--flag VALUE` or `--flag=VALUE` among words.
pub fn flag_value<'a>(words: &'a [String], names: &[&str]) -> Option<&'a str> {
    for (i, w) in words.iter().enumerate() {
        for name in names {
            if w == name {
                return words.get(i + 1).map(String::as_str);
            }
            if let Some(v) = w.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
        }
    }
    None
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

fn runs(words: &[String], program: &str) -> bool {
    words
        .iter()
        .any(|w| w.rsplit('/').next() == Some(program) || w.starts_with(&format!("{program}:")))
}

/// `registry/path/name:tag@digest` → (`path/name`, tag).
pub fn image_name_and_tag(image: &str) -> (String, Option<String>) {
    let image = image.split('@').next().unwrap_or(image);
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
        _ => (image, None),
    };
    // Drop a registry host (it has a dot or a port, or is localhost).
    let name = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => name,
    };
    (name.trim_start_matches("library/").to_string(), tag)
}

fn major_version(tag: Option<&str>) -> Option<u32> {
    let tag = tag?.trim_start_matches('v');
    tag.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn secs(n: &str) -> Option<Duration> {
    n.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .map(Duration::from_secs_f64)
}

/// A volume a container mounts, with what the input shows of its files.
#[derive(Clone, Debug)]
pub struct MountedFiles<'a> {
    /// `mountPath`.
    pub path: &'a str,
    /// `None` when the input does not show the files: not a ConfigMap volume, or a ConfigMap
    /// the input does not have.
    pub files: Option<ShownFiles<'a>>,
}

/// The files of a mounted ConfigMap the input has.
#[derive(Clone, Debug)]
pub struct ShownFiles<'a> {
    /// `ConfigMap ns/name`.
    pub source: String,
    /// By full path in the container, what each file sets.
    pub files: Vec<(String, &'a Directives)>,
}

/// What the app in `container` does with idle connections. `annotation` is the
/// `meshmedic.io/app-idle-timeout` value from the pod template or the Service, already validated
/// when the snapshot was built; `mounts` are the container's volume mounts.
pub fn app_idle(
    container: &Container,
    annotation: Option<(&str, &str)>,
    mounts: &[MountedFiles<'_>],
) -> AppIdle {
    if let Some((value, owner)) = annotation
        && let Ok(after) = duration::parse(value)
    {
        return AppIdle::Closes {
            after,
            why: format!("{} {value:?} on {owner}", keys::APP_IDLE_TIMEOUT),
        };
    }
    let words = words(container);
    let image = container.image.as_deref().unwrap_or_default();
    let (image_name, tag) = image_name_and_tag(image);
    let base = image_name.rsplit('/').next().unwrap_or_default();

    // gunicorn (docs.gunicorn.org, settings: `keepalive` default 2s; the default `sync` worker
    // closes every connection after the response, so only other worker classes keep them).
    if runs(&words, "gunicorn") {
        let mut gunicorn_words = words.clone();
        if let Some(extra) = env(container, "GUNICORN_CMD_ARGS") {
            gunicorn_words.extend(extra.split_whitespace().map(str::to_string));
        }
        let worker = flag_value(&gunicorn_words, &["-k", "--worker-class"]).unwrap_or("sync");
        if worker == "sync" {
            return AppIdle::NoRace {
                why: "gunicorn's default sync worker does not keep connections alive".to_string(),
            };
        }
        if let Some(after) =
            flag_value(&gunicorn_words, &["--keep-alive", "--keepalive"]).and_then(secs)
        {
            return AppIdle::Closes {
                after,
                why: format!("gunicorn --keep-alive with worker {worker}"),
            };
        }
        return AppIdle::Closes {
            after: Duration::from_secs(2),
            why: format!("gunicorn default keepalive (2s) with worker {worker}"),
        };
    }
    // uvicorn (uvicorn.org/settings: `--timeout-keep-alive`, default 5s).
    if runs(&words, "uvicorn") {
        let flag = flag_value(&words, &["--timeout-keep-alive"])
            .or_else(|| env(container, "UVICORN_TIMEOUT_KEEP_ALIVE"));
        return match flag.and_then(secs) {
            Some(after) => AppIdle::Closes {
                after,
                why: "uvicorn --timeout-keep-alive".to_string(),
            },
            None => AppIdle::Closes {
                after: Duration::from_secs(5),
                why: "uvicorn default --timeout-keep-alive (5s)".to_string(),
            },
        };
    }
    // hypercorn (hypercorn docs, configuration: `keep_alive_timeout` default 5s).
    if runs(&words, "hypercorn") {
        return match flag_value(&words, &["--keep-alive"]).and_then(secs) {
            Some(after) => AppIdle::Closes {
                after,
                why: "hypercorn --keep-alive".to_string(),
            },
            None => AppIdle::Closes {
                after: Duration::from_secs(5),
                why: "hypercorn default keep_alive_timeout (5s)".to_string(),
            },
        };
    }
    // Puma (puma.io, `persistent_timeout`: 20s; 65s from Puma 7). The image does not tell the
    // Puma version, so the shorter value is used: a fix for it is also right for Puma 7.
    if runs(&words, "puma") {
        return AppIdle::Closes {
            after: Duration::from_secs(20),
            why: "Puma default persistent_timeout (20s before Puma 7, 65s from 7; the shorter is assumed)"
                .to_string(),
        };
    }
    // Node.js (nodejs.org/api/http.html, `server.keepAliveTimeout`: 5s; 65s from Node 26).
    if base == "node" || runs(&words, "node") || runs(&words, "npm") {
        let major = if base == "node" {
            major_version(tag.as_deref())
        } else {
            None
        };
        return match major {
            Some(v) if v >= 26 => AppIdle::Closes {
                after: Duration::from_secs(65),
                why: format!("Node.js {v} default server.keepAliveTimeout (65s)"),
            },
            Some(v) => AppIdle::Closes {
                after: Duration::from_secs(5),
                why: format!("Node.js {v} default server.keepAliveTimeout (5s)"),
            },
            None => AppIdle::Closes {
                after: Duration::from_secs(5),
                why: "Node.js default server.keepAliveTimeout (5s before Node 26; version unknown, the shorter is assumed)".to_string(),
            },
        };
    }
    let known = |secs: u64, why: &str| AppIdle::Closes {
        after: Duration::from_secs(secs),
        why: format!("{why} (image {image})"),
    };
    match base {
        "nginx" | "nginx-unprivileged" | "openresty" => nginx_idle(image, &words, mounts),
        // httpd.apache.org/docs/2.4/mod/core.html#keepalivetimeout: 5s.
        "httpd" => httpd_idle(image, mounts),
        // The official tomcat image's conf/server.xml sets connectionTimeout="20000", and
        // keepAliveTimeout defaults to connectionTimeout (tomcat.apache.org/tomcat-10.1-doc/config/http.html).
        // (Embedded Tomcat without server.xml, as in Spring Boot, uses the attribute default 60s.)
        // A server.xml mounted over the image's is not read: then nothing is known.
        "tomcat" if config_mounted(mounts, &["/usr/local/tomcat/conf"]) => AppIdle::Unknown,
        "tomcat" => known(
            20,
            "Tomcat image server.xml connectionTimeout 20s (keepAliveTimeout defaults to it)",
        ),
        // eclipse.dev/jetty documentation: connector idleTimeout 30000ms, set with the
        // `jetty.http.idleTimeout` property (milliseconds) as an argument or a `-D` in
        // JAVA_OPTIONS; a start.d or etc/ configuration mounted over the image's is not read.
        "jetty" => {
            let property = words
                .iter()
                .map(String::as_str)
                .chain(
                    env(container, "JAVA_OPTIONS")
                        .into_iter()
                        .flat_map(str::split_whitespace),
                )
                .find_map(|w| {
                    w.trim_start_matches("-D")
                        .strip_prefix("jetty.http.idleTimeout=")
                });
            match property {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) => AppIdle::Closes {
                        after: Duration::from_millis(ms),
                        why: format!("jetty.http.idleTimeout={ms} (image {image})"),
                    },
                    Err(_) => AppIdle::Unknown,
                },
                None if config_mounted(
                    mounts,
                    &[
                        "/var/lib/jetty/start.d",
                        "/var/lib/jetty/start.ini",
                        "/var/lib/jetty/etc",
                        "/usr/local/jetty/etc",
                    ],
                ) =>
                {
                    AppIdle::Unknown
                }
                None => known(30, "Jetty default connector idleTimeout 30s"),
            }
        }
        // learn.microsoft.com, KestrelServerLimits.KeepAliveTimeout: 130s.
        "aspnet" if image_name.contains("dotnet") => {
            known(130, "Kestrel default KeepAliveTimeout 130s")
        }
        // Envoy's own HTTP connection manager idle_timeout default: 1h.
        "envoy" | "envoy-distroless" => known(3600, "Envoy default idle_timeout 1h"),
        _ => AppIdle::Unknown,
    }
}

/// Where nginx images read their configuration: the official and unprivileged images
/// (`/etc/nginx/nginx.conf`, including `conf.d/*.conf`, written from `templates/`), OpenResty's
/// (`/usr/local/openresty/nginx/conf/nginx.conf`, including `/etc/nginx/conf.d`) and Bitnami's.
const NGINX_CONFIG_DIRS: [&str; 3] = [
    "/etc/nginx",
    "/usr/local/openresty/nginx/conf",
    "/opt/bitnami/nginx/conf",
];

/// The official httpd image's configuration (`httpd.conf`, and `extra/` it may include).
const HTTPD_CONFIG_DIR: &str = "/usr/local/apache2/conf";

/// What a container's mounts over an app server's configuration directories say.
struct MountedConfig<'m> {
    /// The setting's arguments, with the file and the ConfigMap each came from.
    values: Vec<Setting<'m>>,
    /// Where keep-alive is switched off (file, ConfigMap).
    off: Option<(&'m str, &'m str)>,
    /// A mount replaces the main configuration file: the server's built-in defaults apply.
    main_replaced: bool,
    /// The ConfigMaps read.
    sources: Vec<&'m str>,
}

/// One setting read from a mounted file: its argument, the file, the ConfigMap.
#[derive(Clone, Copy)]
struct Setting<'m> {
    arg: &'m str,
    file: &'m str,
    source: &'m str,
}

fn under(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A mount at `path` covers something in `dir`, or all of it.
fn overlaps(path: &str, dir: &str) -> bool {
    under(path, dir) || under(dir, path)
}

/// Reads the mounts over `dirs` (`mains` are the main configuration files). `None` when what
/// configures the server cannot be read: a mount that `may_configure` says can hold
/// configuration whose files the input does not show.
fn mounted_config<'m>(
    mounts: &'m [MountedFiles<'_>],
    dirs: &[String],
    mains: &[String],
    may_configure: impl Fn(&str) -> bool,
    read: impl Fn(&'m Directives) -> (&'m [String], bool),
) -> Option<MountedConfig<'m>> {
    let mut out = MountedConfig {
        values: Vec::new(),
        off: None,
        main_replaced: false,
        sources: Vec::new(),
    };
    for mount in mounts {
        let path = mount.path.trim_end_matches('/');
        if !dirs.iter().any(|d| overlaps(path, d)) {
            continue;
        }
        let Some(shown) = &mount.files else {
            if may_configure(path) {
                return None;
            }
            continue;
        };
        out.main_replaced |= mains.iter().any(|m| under(m, path));
        out.sources.push(&shown.source);
        for (file, directives) in &shown.files {
            let (args, off) = read(directives);
            for arg in args {
                out.values.push(Setting {
                    arg,
                    file,
                    source: &shown.source,
                });
            }
            if off && out.off.is_none() {
                out.off = Some((file, &shown.source));
            }
        }
    }
    out.sources.dedup();
    Some(out)
}

/// The shortest positive of the mounted values, parsed by `parse`; zero with the first value
/// when every value is 0 (keep-alive off); `Err` when one cannot be parsed (a variable or a
/// placeholder, known only when the pod runs).
fn shortest<'m>(
    values: &[Setting<'m>],
    parse: impl Fn(&str) -> Option<Duration>,
) -> Result<Option<(Duration, Setting<'m>)>, ()> {
    let mut best: Option<(Duration, Setting<'m>)> = None;
    let mut all_zero = !values.is_empty();
    for &value in values {
        let after = parse(value.arg).ok_or(())?;
        if after.is_zero() {
            continue;
        }
        all_zero = false;
        if best.is_none_or(|(b, _)| after < b) {
            best = Some((after, value));
        }
    }
    if all_zero {
        return Ok(Some((Duration::ZERO, values[0])));
    }
    Ok(best)
}

/// nginx's idle keep-alive timeout. Its built-in default is 75s, but the `nginx.conf` every
/// common image ships (nginx.org's packages, so the official and unprivileged images, and
/// OpenResty's and Bitnami's) sets `keepalive_timeout 65`: 65s unless a mounted configuration
/// says otherwise. A mounted configuration is read when the input has its ConfigMap; when it
/// does not (or the volume is not a ConfigMap), the answer is unknown.
fn nginx_idle(image: &str, words: &[String], mounts: &[MountedFiles<'_>]) -> AppIdle {
    let trim = |p: &'_ str| -> String { p.trim_end_matches('/').to_string() };
    // `nginx -c FILE`: only after the word that runs nginx (`sh -c "…"` is a shell's flag).
    let nginx_args = words
        .iter()
        .position(|w| matches!(w.rsplit('/').next(), Some("nginx" | "openresty")))
        .map_or(&[][..], |i| &words[i + 1..]);
    let main_flag = flag_value(nginx_args, &["-c"]).map(trim);
    let mut dirs: Vec<String> = NGINX_CONFIG_DIRS.iter().map(|d| d.to_string()).collect();
    let mut mains: Vec<String> = dirs.iter().map(|d| format!("{d}/nginx.conf")).collect();
    if let Some(main) = &main_flag {
        if let Some((dir, _)) = main.rsplit_once('/') {
            dirs.push(dir.to_string());
        }
        mains = vec![main.clone()];
    }
    // A mount whose files the input does not show matters only where it can hold configuration:
    // a config directory, one above it, a `.conf` file, or a directory nginx includes from.
    let may_configure = |path: &str| {
        let last = path.rsplit('/').next().unwrap_or_default();
        dirs.iter().any(|d| path == d || under(d, path))
            || (dirs.iter().any(|d| under(path, d))
                && (last.ends_with(".conf")
                    || matches!(
                        last,
                        "conf.d"
                            | "templates"
                            | "sites-enabled"
                            | "http.d"
                            | "server_blocks"
                            | "context.d"
                    )))
    };
    let Some(mounted) = mounted_config(mounts, &dirs, &mains, may_configure, |d| {
        (&d.nginx_keepalive_timeout, false)
    }) else {
        return AppIdle::Unknown;
    };
    if main_flag.is_some() && !mounted.main_replaced {
        // `-c` names a file of the image meshmedic cannot read.
        return AppIdle::Unknown;
    }
    match shortest(&mounted.values, nginx_time) {
        Err(()) => return AppIdle::Unknown,
        Ok(Some((after, Setting { arg, file, source }))) => {
            let why = format!("keepalive_timeout {arg} in {file} from {source}");
            return if after.is_zero() {
                AppIdle::NoRace {
                    why: format!("{why}: nginx closes each connection after its response"),
                }
            } else {
                AppIdle::Closes {
                    after,
                    why: format!("{why} (image {image})"),
                }
            };
        }
        Ok(None) => {}
    }
    let sources = mounted.sources.join(", ");
    let (after, why) = match (mounted.main_replaced, sources.is_empty()) {
        (true, _) => (
            75,
            format!(
                "nginx built-in keepalive_timeout 75s: the nginx.conf from {sources} sets none"
            ),
        ),
        (false, true) => (
            65,
            "keepalive_timeout 65s of the image's nginx.conf".to_string(),
        ),
        (false, false) => (
            65,
            format!(
                "keepalive_timeout 65s of the image's nginx.conf; the config from {sources} sets none"
            ),
        ),
    };
    AppIdle::Closes {
        after: Duration::from_secs(after),
        why: format!("{why} (image {image})"),
    }
}

/// Apache httpd's idle keep-alive timeout: `KeepAliveTimeout` (5s built in, which the official
/// image's httpd.conf leaves as it is), or none with `KeepAlive Off`. A configuration mounted
/// over `conf/` decides, when the input has it.
fn httpd_idle(image: &str, mounts: &[MountedFiles<'_>]) -> AppIdle {
    let dirs = [HTTPD_CONFIG_DIR.to_string()];
    let mains = [format!("{HTTPD_CONFIG_DIR}/httpd.conf")];
    let Some(mounted) = mounted_config(
        mounts,
        &dirs,
        &mains,
        |_| true,
        |d| (&d.httpd_keepalive_timeout, d.httpd_keepalive_off),
    ) else {
        return AppIdle::Unknown;
    };
    // `KeepAliveTimeout 15` (seconds) or `KeepAliveTimeout 500ms`.
    let parse = |v: &str| match v.strip_suffix("ms") {
        Some(ms) => ms.parse().ok().map(Duration::from_millis),
        None => v.parse().ok().map(Duration::from_secs),
    };
    if let Some((file, source)) = mounted.off {
        return AppIdle::NoRace {
            why: format!(
                "KeepAlive Off in {file} from {source}: httpd closes each connection after its response"
            ),
        };
    }
    match shortest(&mounted.values, parse) {
        Err(()) => AppIdle::Unknown,
        Ok(Some((after, Setting { arg, file, source }))) if !after.is_zero() => AppIdle::Closes {
            after,
            why: format!("KeepAliveTimeout {arg} in {file} from {source} (image {image})"),
        },
        // httpd reads 0 as its default.
        Ok(_) => AppIdle::Closes {
            after: Duration::from_secs(5),
            why: format!("Apache httpd default KeepAliveTimeout 5s (image {image})"),
        },
    }
}

/// Whether a mount covers one of `dirs` (or a file in one): the image's configuration there,
/// which the defaults below describe, may be replaced.
fn config_mounted(mounts: &[MountedFiles<'_>], dirs: &[&str]) -> bool {
    mounts.iter().any(|m| {
        let path = m.path.trim_end_matches('/');
        dirs.iter().any(|d| overlaps(path, d))
    })
}

/// An nginx time (nginx.org/en/docs/syntax.html): a number with an optional unit (`ms`, `s`,
/// `m`, `h`, `d`, `w`, `M` = 30 days, `y` = 365 days; seconds without one), several summed
/// from the largest (`1m30s`, `1h 30m`).
pub fn nginx_time(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let millis: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "" | "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(Duration::from_millis(n.checked_mul(millis)?))?;
        rest = rest[unit_len..].trim_start();
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::workload::EnvVar;

    fn container(image: &str, args: &[&str]) -> Container {
        Container {
            name: "app".into(),
            image: Some(image.into()),
            args: Some(args.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn after(a: AppIdle) -> Option<Duration> {
        match a {
            AppIdle::Closes { after, .. } => Some(after),
            _ => None,
        }
    }

    #[test]
    fn annotation_wins() {
        let c = container("nginx:1.27", &[]);
        assert_eq!(
            after(app_idle(&c, Some(("10s", "Deployment a/b")), &[])),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn gunicorn_sync_cannot_race_but_other_workers_can() {
        let c = container("python:3.12", &["gunicorn", "app:app"]);
        assert!(matches!(app_idle(&c, None, &[]), AppIdle::NoRace { .. }));
        let c = container(
            "python:3.12",
            &["gunicorn -k gevent --keep-alive 7 app:app"],
        );
        assert_eq!(after(app_idle(&c, None, &[])), Some(Duration::from_secs(7)));
        let mut c = container("python:3.12", &["gunicorn", "app:app"]);
        c.env = Some(vec![EnvVar {
            name: "GUNICORN_CMD_ARGS".into(),
            value: Some("--worker-class=gthread".into()),
        }]);
        assert_eq!(after(app_idle(&c, None, &[])), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_shell_comment_runs_nothing() {
        // kubernetes/examples' CockroachDB: a `bash -ecx` script whose comment mentions a node.
        let mut c = container(
            "cockroachdb/cockroach:v1.1.0",
            &[
                "# avoid a node attempting\n# to join itself\nexec /cockroach/cockroach start  # not node\n",
            ],
        );
        c.command = Some(vec!["/bin/bash".into(), "-ecx".into()]);
        assert_eq!(app_idle(&c, None, &[]), AppIdle::Unknown);
        assert_eq!(
            words(&c),
            ["/bin/bash", "-ecx", "exec", "/cockroach/cockroach", "start"]
        );
        // The same program on a line of the script is read, and a `#` inside a word is not a
        // comment.
        let c = container(
            "example/app:1",
            &["# start the app\nnode server.js --color=#fff\n"],
        );
        assert!(matches!(app_idle(&c, None, &[]), AppIdle::Closes { .. }));
        assert_eq!(words(&c), ["node", "server.js", "--color=#fff"]);
    }

    #[test]
    fn uvicorn_flag_and_default() {
        let c = container(
            "python:3.12",
            &["uvicorn", "main:app", "--timeout-keep-alive=30"],
        );
        assert_eq!(
            after(app_idle(&c, None, &[])),
            Some(Duration::from_secs(30))
        );
        let c = container("python:3.12", &["python", "-m", "uvicorn", "main:app"]);
        assert_eq!(after(app_idle(&c, None, &[])), Some(Duration::from_secs(5)));
    }

    #[test]
    fn node_version_from_tag() {
        assert_eq!(
            after(app_idle(&container("node:20-alpine", &[]), None, &[])),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            after(app_idle(
                &container("docker.io/library/node:26", &[]),
                None,
                &[]
            )),
            Some(Duration::from_secs(65))
        );
        assert_eq!(
            after(app_idle(&container("node:lts", &[]), None, &[])),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn images_and_unknowns() {
        assert_eq!(
            after(app_idle(&container("nginx:1.27", &[]), None, &[])),
            Some(Duration::from_secs(65))
        );
        assert_eq!(
            after(app_idle(
                &container("registry.example.com:5000/httpd:2.4", &[]),
                None,
                &[]
            )),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            after(app_idle(
                &container("mcr.microsoft.com/dotnet/aspnet:8.0", &[]),
                None,
                &[]
            )),
            Some(Duration::from_secs(130))
        );
        assert_eq!(
            app_idle(&container("golang:1.23", &["/app"]), None, &[]),
            AppIdle::Unknown
        );
        assert_eq!(
            app_idle(&container("example/shop:1.0", &[]), None, &[]),
            AppIdle::Unknown
        );
    }

    fn dir<'a>(path: &'a str, files: Vec<(String, &'a Directives)>) -> MountedFiles<'a> {
        MountedFiles {
            path,
            files: Some(ShownFiles {
                source: "ConfigMap default/conf".to_string(),
                files,
            }),
        }
    }

    /// httpd's KeepAliveTimeout from a mounted httpd.conf; Tomcat's and Jetty's configuration
    /// mounted over the image's is not read, so nothing is known.
    #[test]
    fn other_servers_with_a_mounted_configuration() {
        let httpd = container("httpd:2.4", &[]);
        let set = |t: &[&str], off: bool| Directives {
            httpd_keepalive_timeout: t.iter().map(|a| a.to_string()).collect(),
            httpd_keepalive_off: off,
            ..Default::default()
        };
        let (fifteen, off, half) = (set(&["15"], false), set(&[], true), set(&["500ms"], false));
        let conf = "/usr/local/apache2/conf/httpd.conf";
        let mounted = |d| [dir(conf, vec![(conf.to_string(), d)])];
        assert_eq!(
            after(app_idle(&httpd, None, &mounted(&fifteen))),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            after(app_idle(&httpd, None, &mounted(&half))),
            Some(Duration::from_millis(500))
        );
        assert!(matches!(
            app_idle(&httpd, None, &mounted(&off)),
            AppIdle::NoRace { .. }
        ));
        let absent = [MountedFiles {
            path: "/usr/local/apache2/conf/extra",
            files: None,
        }];
        assert_eq!(app_idle(&httpd, None, &absent), AppIdle::Unknown);
        let html = [MountedFiles {
            path: "/usr/local/apache2/htdocs",
            files: None,
        }];
        assert_eq!(
            after(app_idle(&httpd, None, &html)),
            Some(Duration::from_secs(5))
        );

        let server_xml = [MountedFiles {
            path: "/usr/local/tomcat/conf/server.xml",
            files: None,
        }];
        let tomcat = container("tomcat:10.1", &[]);
        assert_eq!(app_idle(&tomcat, None, &server_xml), AppIdle::Unknown);
        let webapps = [MountedFiles {
            path: "/usr/local/tomcat/webapps/ROOT",
            files: None,
        }];
        assert_eq!(
            after(app_idle(&tomcat, None, &webapps)),
            Some(Duration::from_secs(20))
        );

        let jetty = container("jetty:12", &["jetty.http.idleTimeout=120000"]);
        assert_eq!(
            after(app_idle(&jetty, None, &[])),
            Some(Duration::from_secs(120))
        );
        let mut jetty = container("jetty:12", &[]);
        jetty.env = Some(vec![EnvVar {
            name: "JAVA_OPTIONS".into(),
            value: Some("-Xmx1g -Djetty.http.idleTimeout=45000".into()),
        }]);
        assert_eq!(
            after(app_idle(&jetty, None, &[])),
            Some(Duration::from_secs(45))
        );
        let start_d = [MountedFiles {
            path: "/var/lib/jetty/start.d",
            files: None,
        }];
        let jetty = container("jetty:12", &[]);
        assert_eq!(app_idle(&jetty, None, &start_d), AppIdle::Unknown);
        assert_eq!(
            after(app_idle(&jetty, None, &[])),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn nginx_times() {
        let t = |s: &str| nginx_time(s).map(|d| d.as_millis());
        assert_eq!(t("65"), Some(65_000));
        assert_eq!(t("30s"), Some(30_000));
        assert_eq!(t("500ms"), Some(500));
        assert_eq!(t("1m30s"), Some(90_000));
        assert_eq!(t("1h 30m"), Some(5_400_000));
        assert_eq!(t("0"), Some(0));
        assert_eq!(t("$timeout"), None);
        assert_eq!(t("${KEEPALIVE}"), None);
        assert_eq!(t("5x"), None);
        assert_eq!(t(""), None);
        assert_eq!(t("99999999999999999999"), None);
    }

    /// nginx's configuration mounted from a ConfigMap decides, not the image's: the asm-labs
    /// multi-buffer sample mounts its own nginx.conf over `/etc/nginx`.
    #[test]
    fn nginx_reads_a_mounted_configuration() {
        let nginx = container("nginx:1.27", &[]);
        let nginx_set = |args: &[&str]| Directives {
            nginx_keepalive_timeout: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        let (thirty, zero, none, var) = (
            nginx_set(&["30s", "90"]),
            nginx_set(&["0"]),
            nginx_set(&[]),
            nginx_set(&["${T}"]),
        );
        let (thirty, zero, none, var) = (&thirty, &zero, &none, &var);
        // The whole directory replaced, its nginx.conf setting no keepalive_timeout: nginx's
        // built-in 75s.
        let whole = [dir(
            "/etc/nginx",
            vec![("/etc/nginx/nginx.conf".into(), none)],
        )];
        let a = app_idle(&nginx, None, &whole);
        assert_eq!(after(a.clone()), Some(Duration::from_secs(75)));
        assert!(format!("{a:?}").contains("built-in"), "{a:?}");
        // A server block in conf.d: the shortest directive.
        let conf_d = [dir(
            "/etc/nginx/conf.d",
            vec![("/etc/nginx/conf.d/default.conf".into(), thirty)],
        )];
        let a = app_idle(&nginx, None, &conf_d);
        assert_eq!(after(a.clone()), Some(Duration::from_secs(30)));
        assert!(
            format!("{a:?}").contains("keepalive_timeout 30s in /etc/nginx/conf.d/default.conf from ConfigMap default/conf"),
            "{a:?}"
        );
        // Only conf.d, setting nothing: the image's nginx.conf still sets 65s.
        let empty = [dir(
            "/etc/nginx/conf.d",
            vec![("/etc/nginx/conf.d/a.conf".into(), none)],
        )];
        assert_eq!(
            after(app_idle(&nginx, None, &empty)),
            Some(Duration::from_secs(65))
        );
        // keepalive_timeout 0: no keep-alive, nothing to race.
        let off = [dir(
            "/etc/nginx/nginx.conf",
            vec![("/etc/nginx/nginx.conf".into(), zero)],
        )];
        assert!(matches!(
            app_idle(&nginx, None, &off),
            AppIdle::NoRace { .. }
        ));
        // A value only known when the pod runs, or a ConfigMap the input does not have.
        let templated = [dir(
            "/etc/nginx/templates",
            vec![("/etc/nginx/templates/t".into(), var)],
        )];
        assert_eq!(app_idle(&nginx, None, &templated), AppIdle::Unknown);
        let absent = [MountedFiles {
            path: "/etc/nginx/conf.d",
            files: None,
        }];
        assert_eq!(app_idle(&nginx, None, &absent), AppIdle::Unknown);
        // Certificates from a Secret next to the config, and content elsewhere, change nothing.
        let other = [
            MountedFiles {
                path: "/etc/nginx/certs",
                files: None,
            },
            MountedFiles {
                path: "/usr/share/nginx/html",
                files: None,
            },
        ];
        assert_eq!(
            after(app_idle(&nginx, None, &other)),
            Some(Duration::from_secs(65))
        );
        // `-c` names a file of the image: unknown, unless a mount gives it.
        let custom = container(
            "nginx:1.27",
            &["nginx", "-c", "/config/site.conf", "-g", "daemon off;"],
        );
        assert_eq!(app_idle(&custom, None, &[]), AppIdle::Unknown);
        // A shell's `-c` is not nginx's.
        let mut shell = container(
            "nginx:1.27",
            &["envsubst < /t > /etc/nginx/x && exec nginx -g 'daemon off;'"],
        );
        shell.command = Some(vec!["/bin/sh".into(), "-c".into()]);
        assert_eq!(
            after(app_idle(&shell, None, &[])),
            Some(Duration::from_secs(65))
        );
        let given = [dir("/config", vec![("/config/site.conf".into(), none)])];
        assert_eq!(
            after(app_idle(&custom, None, &given)),
            Some(Duration::from_secs(75))
        );
    }

    #[test]
    fn image_parsing() {
        assert_eq!(image_name_and_tag("nginx"), ("nginx".into(), None));
        assert_eq!(
            image_name_and_tag("localhost:5000/a/b:1@sha256:x"),
            ("a/b".into(), Some("1".into()))
        );
        assert_eq!(
            image_name_and_tag("docker.io/library/node:20"),
            ("node".into(), Some("20".into()))
        );
    }
}
