//! ConfigMaps an application may read its server configuration from, kept only as what the
//! analysis reads of them: for each key, the `keepalive_timeout` directives of nginx
//! configuration in its text. The text itself is not kept.

use std::collections::HashMap;

/// What the analysis read of one ConfigMap.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppConfigMap {
    /// Its keys (`data` and `binaryData` names), each with the arguments of the nginx
    /// `keepalive_timeout` directives its text sets (outside `upstream` blocks), in order.
    pub keys: Vec<(String, Vec<String>)>,
}

impl AppConfigMap {
    pub fn read<'a>(
        data: impl IntoIterator<Item = (&'a String, &'a String)>,
        binary_keys: impl IntoIterator<Item = &'a String>,
    ) -> AppConfigMap {
        let mut keys: Vec<(String, Vec<String>)> = data
            .into_iter()
            .map(|(k, text)| (k.clone(), nginx_keepalive_timeouts(text)))
            .collect();
        keys.extend(binary_keys.into_iter().map(|k| (k.clone(), Vec::new())));
        keys.sort();
        AppConfigMap { keys }
    }

    pub fn key(&self, key: &str) -> Option<&[String]> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
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
        // An unterminated block or quote does not panic.
        assert_eq!(
            nginx_keepalive_timeouts("http { keepalive_timeout 5s; server { \"x"),
            ["5s"]
        );
    }
}
