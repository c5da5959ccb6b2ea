//! Host names as Istio resolves them, and `exportTo` visibility.

/// `name.namespace.svc.<domain>`: the host a Kubernetes Service has in Istio's registry.
pub fn service_fqdn(name: &str, namespace: &str, domain: &str) -> String {
    // Joined by hand: `format!`'s machinery cost ten times as much, for every service and every
    // short host of every rule.
    let mut host = String::with_capacity(name.len() + namespace.len() + domain.len() + 6);
    host.push_str(name);
    host.push('.');
    host.push_str(namespace);
    host.push_str(".svc.");
    host.push_str(domain);
    host
}

/// Resolves a host written in an Istio rule the way istiod does (`ResolveShortnameToFQDN`): a
/// name without a dot is short for `name.<rule's namespace>.svc.<domain>`; anything with a dot
/// (including `name.namespace`) is taken as written, so `ratings.prod` does *not* name the
/// Service `ratings` in `prod`. Wildcards and IP addresses are left alone.
pub fn resolve(host: &str, rule_namespace: &str, domain: &str) -> String {
    if host == "*" || host.contains('.') || host.contains(':') || host.is_empty() {
        host.to_string()
    } else {
        service_fqdn(host, rule_namespace, domain)
    }
}

/// Whether a resolved rule host (possibly a wildcard such as `*.prod.svc.cluster.local` or `*`)
/// covers a service's host.
pub fn matches(rule_host: &str, service_host: &str) -> bool {
    if rule_host == "*" {
        return true;
    }
    match rule_host.strip_prefix('*') {
        Some(suffix) => service_host.ends_with(suffix) && service_host.len() > suffix.len(),
        None => rule_host.eq_ignore_ascii_case(service_host),
    }
}

/// How specific a matching rule host is: Istio prefers an exact host, then the longest wildcard.
pub fn specificity(rule_host: &str) -> (bool, usize) {
    (!rule_host.starts_with('*'), rule_host.len())
}

/// Whether an object with this `exportTo`, in namespace `own`, is visible from namespace `from`.
/// Empty means exported everywhere (Istio's default); `.` means its own namespace; `~` nowhere.
pub fn visible(export_to: &[String], own: &str, from: &str) -> bool {
    if export_to.is_empty() {
        return true;
    }
    export_to.iter().any(|e| match e.as_str() {
        "*" => true,
        "." => own == from,
        "~" => false,
        ns => ns == from,
    })
}

/// A likely mistake: a rule host of the form `name.namespace`, which Istio does not expand.
pub fn looks_like_unexpanded_short_name(host: &str) -> bool {
    !host.starts_with('*') && host.matches('.').count() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "cluster.local";

    #[test]
    fn short_names_expand_in_the_rules_namespace() {
        assert_eq!(
            resolve("ratings", "prod", D),
            "ratings.prod.svc.cluster.local"
        );
        assert_eq!(
            resolve("ratings.prod.svc.cluster.local", "other", D),
            "ratings.prod.svc.cluster.local"
        );
    }

    #[test]
    fn name_dot_namespace_is_taken_literally_as_istio_does() {
        assert_eq!(resolve("ratings.prod", "prod", D), "ratings.prod");
        assert!(!matches("ratings.prod", "ratings.prod.svc.cluster.local"));
        assert!(looks_like_unexpanded_short_name("ratings.prod"));
    }

    #[test]
    fn wildcards() {
        let svc = "ratings.prod.svc.cluster.local";
        assert!(matches("*", svc));
        assert!(matches("*.prod.svc.cluster.local", svc));
        assert!(matches("*.svc.cluster.local", svc));
        assert!(!matches("*.dev.svc.cluster.local", svc));
        assert!(specificity(svc) > specificity("*.prod.svc.cluster.local"));
        assert!(specificity("*.prod.svc.cluster.local") > specificity("*.svc.cluster.local"));
    }

    #[test]
    fn export_to() {
        assert!(visible(&[], "a", "b"));
        assert!(visible(&[".".into()], "a", "a"));
        assert!(!visible(&[".".into()], "a", "b"));
        assert!(visible(&["b".into()], "a", "b"));
        assert!(!visible(&["b".into()], "a", "a"));
        assert!(!visible(&["~".into()], "a", "a"));
        assert!(visible(&["*".into()], "a", "z"));
    }
}
