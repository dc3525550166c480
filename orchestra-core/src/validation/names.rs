//! The name syntaxes of Kubernetes: DNS labels and subdomains, qualified names (label keys), label
//! values, IANA service (port) names, environment variable names, config keys, IP addresses.
//!
//! Each check returns the problems it found as Kubernetes words them (an empty list when the value
//! is valid), so that callers can attach them to a field path.
//!
//! # Examples
//!
//! ```
//! use orchestra_core::validation::names;
//!
//! assert!(names::dns1123_label("web-1").is_empty());
//! assert!(!names::dns1123_label("Web_1").is_empty());
//! assert!(names::qualified_name("app.kubernetes.io/name").is_empty());
//! assert!(names::label_value("").is_empty());
//! ```

use std::net::IpAddr;

/// Longest DNS-1123 (and DNS-1035) label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest name part of a qualified name.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Longest IANA service (port) name.
pub const IANA_SVC_NAME_MAX_LENGTH: usize = 15;
/// Longest config map or secret key.
pub const CONFIG_KEY_MAX_LENGTH: usize = 253;

const DNS1123_LABEL_ERROR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_ERROR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_ERROR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_ERROR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_ERROR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_ERROR: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

fn max_length_message(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn matches_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && bytes.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// An RFC 1123 label: namespace names, container and volume names (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`,
/// at most 63 characters).
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_length_message(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        errors.push(DNS1123_LABEL_ERROR.to_owned());
    }
    errors
}

/// An RFC 1123 subdomain: most object names (dot-separated labels, at most 253 characters).
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_length_message(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(matches_dns1123_label) {
        errors.push(DNS1123_SUBDOMAIN_ERROR.to_owned());
    }
    errors
}

/// An RFC 1035 label: Service names (like a DNS-1123 label, but starting with a letter).
pub fn dns1035_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_length_message(DNS1123_LABEL_MAX_LENGTH));
    }
    let starts_with_letter = value.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !starts_with_letter || !matches_dns1123_label(value) {
        errors.push(DNS1035_LABEL_ERROR.to_owned());
    }
    errors
}

fn matches_qualified_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A qualified name: label and annotation keys, finalizers (`[prefix/]name`, the prefix a DNS
/// subdomain, the name at most 63 characters of `[-A-Za-z0-9_.]` starting and ending alphanumeric).
pub fn qualified_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                errors.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|message| format!("prefix part {message}")),
                );
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {QUALIFIED_NAME_ERROR} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errors.push(format!(
            "name part {}",
            max_length_message(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !name.is_empty() && !matches_qualified_name_part(name) {
        errors.push(format!("name part {QUALIFIED_NAME_ERROR}"));
    }
    errors
}

/// A label value: empty, or at most 63 characters of `[-A-Za-z0-9_.]` starting and ending
/// alphanumeric.
pub fn label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_length_message(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errors.push(LABEL_VALUE_ERROR.to_owned());
    }
    errors
}

/// An IANA service name: named container and service ports (at most 15 lower-case alphanumerics
/// and hyphens, at least one letter, no leading, trailing or doubled hyphen).
pub fn port_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > IANA_SVC_NAME_MAX_LENGTH {
        errors.push(max_length_message(IANA_SVC_NAME_MAX_LENGTH));
    }
    if !value.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        errors
            .push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if value.contains("--") {
        errors.push("must not contain consecutive hyphens".into());
    }
    if !value.bytes().any(|c| c.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".into());
    }
    if value.starts_with('-') || value.ends_with('-') {
        errors.push("must not begin or end with a hyphen".into());
    }
    errors
}

/// An environment variable name: printable ASCII other than `=` (Kubernetes' relaxed rule, the
/// default since 1.32).
pub fn env_var_name(value: &str) -> Vec<String> {
    if !value.is_empty()
        && value
            .bytes()
            .all(|c| (b' '..=b'~').contains(&c) && c != b'=')
    {
        Vec::new()
    } else {
        vec![
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .into(),
        ]
    }
}

/// A key of a ConfigMap or Secret: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..` and
/// not starting with `..`.
pub fn config_key(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > CONFIG_KEY_MAX_LENGTH {
        errors.push(max_length_message(CONFIG_KEY_MAX_LENGTH));
    }
    if value.is_empty()
        || !value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        errors.push(CONFIG_KEY_ERROR.to_owned());
    }
    if value == "." {
        errors.push("must not be '.'".into());
    } else if value == ".." {
        errors.push("must not be '..'".into());
    } else if value.starts_with("..") {
        errors.push("must not start with '..'".into());
    }
    errors
}

/// An IP address, v4 or v6, in canonical textual form.
pub fn ip_address(value: &str) -> Vec<String> {
    match value.parse::<IpAddr>() {
        Ok(_) => Vec::new(),
        Err(_) => vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()],
    }
}

/// A CIDR block (`10.244.0.0/24`, `fd00::/64`).
pub fn cidr(value: &str) -> Vec<String> {
    let valid = value.split_once('/').is_some_and(|(address, bits)| {
        match (address.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(bits)) => bits <= 32 && !bits_has_leading_zero(value),
            (Ok(IpAddr::V6(_)), Ok(bits)) => bits <= 128 && !bits_has_leading_zero(value),
            _ => false,
        }
    });
    if valid {
        Vec::new()
    } else {
        vec!["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".into()]
    }
}

fn bits_has_leading_zero(value: &str) -> bool {
    value
        .split_once('/')
        .is_some_and(|(_, bits)| bits.len() > 1 && bits.starts_with('0'))
}

/// A TCP, UDP or SCTP port number, 1 to 65535.
pub fn port_number(value: i64) -> Vec<String> {
    if (1..=65535).contains(&value) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".into()]
    }
}

/// A port number that may also be 0 (host ports, node ports: 0 means unset).
pub fn port_number_or_zero(value: i64) -> Vec<String> {
    if (0..=65535).contains(&value) {
        Vec::new()
    } else {
        vec!["must be between 0 and 65535, inclusive".into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "web", "web-1", "1abc", &"a".repeat(63)] {
            assert!(dns1123_label(good).is_empty(), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!dns1123_label(bad).is_empty(), "{bad}");
        }
        assert!(dns1035_label("web").is_empty());
        assert!(!dns1035_label("1web").is_empty());
    }

    #[test]
    fn dns_subdomains() {
        assert!(dns1123_subdomain("example.com").is_empty());
        assert!(dns1123_subdomain("a").is_empty());
        for bad in ["", ".a", "a.", "a..b", "Example.com", "a_b"] {
            assert!(!dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
    }

    #[test]
    fn qualified_names() {
        for good in ["app", "app.kubernetes.io/name", "a_b.c-D", "x/y"] {
            assert!(qualified_name(good).is_empty(), "{good}");
        }
        for bad in ["", "/a", "a/", "a/b/c", "-a", "Example.com/a", "a b"] {
            assert!(!qualified_name(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn port_names() {
        assert!(port_name("http").is_empty());
        assert!(port_name("h2-c").is_empty());
        for bad in [
            "",
            "80",
            "HTTP",
            "-http",
            "http-",
            "ht--tp",
            "a-very-long-port-name",
        ] {
            assert!(!port_name(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn config_keys_and_env_names() {
        assert!(config_key("app.properties").is_empty());
        assert!(!config_key("..data").is_empty());
        assert!(!config_key("a/b").is_empty());
        assert!(env_var_name("MY_VAR.1").is_empty());
        assert!(!env_var_name("A=B").is_empty());
        assert!(!env_var_name("").is_empty());
    }

    #[test]
    fn addresses() {
        assert!(ip_address("10.0.0.1").is_empty());
        assert!(ip_address("::1").is_empty());
        assert!(!ip_address("10.0.0.256").is_empty());
        assert!(cidr("10.244.0.0/16").is_empty());
        assert!(!cidr("10.244.0.0/33").is_empty());
        assert!(!cidr("10.244.0.0").is_empty());
    }
}
