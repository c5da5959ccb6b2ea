//! ConfigMaps an application may read its server configuration from, kept only as what the
//! analysis reads of them: for each key, the `keepalive_timeout` directives of nginx
//! configuration in its text. The text itself is not kept.

use std::collections::HashMap;

/// What the analysis read of one ConfigMap.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppConfigMap {
    /// Its keys (`data` and `binaryData` names), each with what its text sets.
    pub keys: Vec<(String, Directives)>,
}

/// The idle keep-alive settings a configuration file sets, as written, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Directives {
    /// nginx `keepalive_timeout` arguments (outside `upstream` blocks).
    pub nginx_keepalive_timeout: Vec<String>,
    /// Apache httpd `KeepAliveTimeout` arguments.
    pub httpd_keepalive_timeout: Vec<String>,
    /// Apache httpd `KeepAlive Off`.
    pub httpd_keepalive_off: bool,
}

impl Directives {
    pub fn read(text: &str) -> Directives {
        let (httpd_keepalive_timeout, httpd_keepalive_off) = httpd_keepalive(text);
        Directives {
            nginx_keepalive_timeout: nginx_keepalive_timeouts(text),
            httpd_keepalive_timeout,
            httpd_keepalive_off,
        }
    }
}

impl AppConfigMap {
    pub fn read<'a>(
        data: impl IntoIterator<Item = (&'a String, &'a String)>,
        binary_keys: impl IntoIterator<Item = &'a String>,
    ) -> AppConfigMap {
        let mut keys: Vec<(String, Directives)> = data
            .into_iter()
            .map(|(k, text)| (k.clone(), Directives::read(text)))
            .collect();
        keys.extend(
            binary_keys
                .into_iter()
                .map(|k| (k.clone(), Directives::default())),
        );
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        AppConfigMap { keys }
    }

    pub fn key(&self, key: &str) -> Option<&Directives> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Apache httpd's `KeepAliveTimeout` arguments and whether `KeepAlive Off` is set (directive
/// names are case-insensitive; `#` starts a comment line).
pub fn httpd_keepalive(text: &str) -> (Vec<String>, bool) {
    // Without a copy of the text: ConfigMaps can be large (Grafana dashboards).
    if !text
        .as_bytes()
        .windows(9)
        .any(|w| w.eq_ignore_ascii_case(b"keepalive"))
    {
        return (Vec::new(), false);
    }
    let mut timeouts = Vec::new();
    let mut off = false;
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some(d), Some(v)) if d.eq_ignore_ascii_case("KeepAliveTimeout") => {
                timeouts.push(v.to_string())
            }
            (Some(d), Some(v)) if d.eq_ignore_ascii_case("KeepAlive") => {
                off |= v.eq_ignore_ascii_case("off")
            }
            _ => {}
        }
    }
    (timeouts, off)
}

/// ConfigMaps by (namespace, name).
pub type AppConfigMaps = HashMap<(String, String), AppConfigMap>;

/// The first argument of every `keepalive_timeout` directive in an nginx configuration text,
/// except in `upstream` blocks (there it is the idle timeout of nginx's own connections to its
/// upstreams, not of the connections clients make to it).
pub fn nginx_keepalive_timeouts(text: &str) -> Vec<String> {
    if !text.contains("keepalive_timeout") {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let end_word = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' if word.is_empty() => {
                let quote = c;
                let mut quoted = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(next) = chars.next() {
                                quoted.push(next);
                            }
                        }
                        c if c == quote => break,
                        c => quoted.push(c),
                    }
                }
                words.push(quoted);
            }
            c if c.is_whitespace() => end_word(&mut word, &mut words),
            ';' => {
                end_word(&mut word, &mut words);
                if words.first().is_some_and(|w| w == "keepalive_timeout")
                    && !blocks.iter().any(|b| b == "upstream")
                    && let Some(value) = words.get(1)
                {
                    out.push(value.clone());
                }
                words.clear();
            }
            '{' => {
                end_word(&mut word, &mut words);
                blocks.push(words.first().cloned().unwrap_or_default());
                words.clear();
            }
            '}' => {
                end_word(&mut word, &mut words);
                blocks.pop();
                words.clear();
            }
            c => word.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_directives_outside_upstreams() {
        let conf = r#"
# keepalive_timeout 1s; (a comment)
events { worker_connections 1024; }
http {
    upstream app { server 127.0.0.1:8080; keepalive 16; keepalive_timeout 60s; }
    keepalive_timeout  65;
    proxy_read_timeout 10s;
    server {
        listen 80;
        keepalive_timeout "30s" 20s;
        location / { proxy_pass http://app; }
    }
}
"#;
        assert_eq!(nginx_keepalive_timeouts(conf), ["65", "30s"]);
        assert!(nginx_keepalive_timeouts("worker_processes 1;").is_empty());
        // Not nginx: a YAML key with the same name is no directive.
        assert!(nginx_keepalive_timeouts("keepalive_timeout: 30\n").is_empty());
        // httpd: case-insensitive names, comment lines left out.
        assert_eq!(
            httpd_keepalive("KeepAlive On\n# KeepAliveTimeout 1\nkeepalivetimeout 15\n"),
            (vec!["15".to_string()], false)
        );
        assert_eq!(httpd_keepalive("KeepAlive Off\n"), (Vec::new(), true));
        // An unterminated block or quote does not panic.
        assert_eq!(
            nginx_keepalive_timeouts("http { keepalive_timeout 5s; server { \"x"),
            ["5s"]
        );
    }
}
