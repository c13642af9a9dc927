//! Kubernetes and Flux naming rules the spec must follow.

/// RFC 1123 DNS label: 1-63 of `a-z0-9-`, starting and ending alphanumeric.
/// Pod hostnames and Flux hostnames must be such labels.
pub fn dns_label_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > 63 {
        return Some(format!(
            "is {} characters long; at most 63 are allowed",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "contains {c:?}; only lowercase letters, digits and '-' are allowed"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// RFC 1035 label (Service names): a DNS label that starts with a letter.
pub fn dns1035_label_problem(s: &str) -> Option<String> {
    dns_label_problem(s).or_else(|| {
        (!s.starts_with(|c: char| c.is_ascii_lowercase()))
            .then(|| "must start with a lowercase letter".into())
    })
}

/// RFC 1123 subdomain (object names such as Secrets and PVCs): dot-separated DNS labels, ≤ 253.
pub fn dns_subdomain_problem(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some(format!(
            "is {} characters long; at most 253 are allowed",
            s.len()
        ));
    }
    s.split('.').find_map(dns_label_problem)
}

/// An environment variable name: non-empty, no '=' and no NUL (what execve accepts).
pub fn env_name_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        Some("is empty".into())
    } else if s.contains(['=', '\0']) {
        Some("contains '=' or NUL".into())
    } else {
        None
    }
}

/// A Kubernetes quantity (`2`, `500m`, `1.5Gi`, `1e3`).
pub fn quantity_problem(s: &str) -> Option<String> {
    const SUFFIXES: [&str; 17] = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "e",
    ];
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    let suffix_ok = SUFFIXES.contains(&suffix)
        || (suffix.starts_with(['e', 'E'])
            && suffix[1..]
                .trim_start_matches(['+', '-'])
                .chars()
                .all(|c| c.is_ascii_digit())
            && suffix.len() > 1);
    if num.is_empty() || num.parse::<f64>().is_err() || !suffix_ok {
        Some(format!(
            "{s:?} is not a Kubernetes quantity (examples: 2, 500m, 1.5Gi)"
        ))
    } else {
        None
    }
}

/// A Flux Standard Duration (RFC 23): a number with an optional unit `ms`, `s`, `m`, `h`, `d`,
/// or `inf`/`infinity`. Returns seconds.
pub fn parse_fsd(s: &str) -> Option<f64> {
    if matches!(s, "inf" | "infinity" | "INF" | "INFINITY") {
        return Some(f64::INFINITY);
    }
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86400.0)
    } else {
        (s, 1.0)
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert_eq!(dns_label_problem("flux-sample-0"), None);
        assert!(dns_label_problem("Flux").unwrap().contains("'F'"));
        assert!(dns_label_problem("-a").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).unwrap().contains("64"));
        assert!(dns1035_label_problem("0abc").unwrap().contains("letter"));
        assert_eq!(dns_subdomain_problem("my.secret-1"), None);
    }

    #[test]
    fn quantities() {
        for ok in ["1", "500m", "1.5Gi", "2e3", "100Mi", "0.5"] {
            assert_eq!(quantity_problem(ok), None, "{ok}");
        }
        for bad in ["", "lots", "1GB", "Gi"] {
            assert!(quantity_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn flux_standard_durations() {
        assert_eq!(parse_fsd("5s"), Some(5.0));
        assert_eq!(parse_fsd("1m"), Some(60.0));
        assert_eq!(parse_fsd("0.5h"), Some(1800.0));
        assert_eq!(parse_fsd("250ms"), Some(0.25));
        assert_eq!(parse_fsd("10"), Some(10.0));
        assert_eq!(parse_fsd("inf"), Some(f64::INFINITY));
        assert_eq!(parse_fsd("5 s"), None);
        assert_eq!(parse_fsd("-1s"), None);
        assert_eq!(parse_fsd("soon"), None);
    }
}
