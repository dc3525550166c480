//! Objects back into manifest text: YAML in block style, as `kubectl get -o yaml` writes it.

use std::fmt::Write as _;

use serde_json::Value;

/// Writes `value` as one YAML document (no `---`), in block style with two-space indents.
///
/// Strings are written plain when that reads back as the same string (in Kubernetes' YAML 1.1
/// reading: `yes`, `on`, `0x10` or `1e3` are quoted), double-quoted with JSON escapes otherwise,
/// so that [`parse`](super::parse) gives back exactly `value`.
///
/// # Examples
///
/// ```
/// use orchestra_core::manifest::{encode_yaml, parse_all};
/// use serde_json::json;
///
/// let object = json!({"kind": "ConfigMap", "data": {"enabled": "yes", "list": "a,b"}});
/// let text = encode_yaml(&object);
/// assert_eq!(text, "data:\n  enabled: \"yes\"\n  list: a,b\nkind: ConfigMap\n");
/// assert_eq!(parse_all(&text)?[0].value, object);
/// # Ok::<(), orchestra_core::manifest::SyntaxError>(())
/// ```
pub fn encode_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_mapping(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => write_sequence(items, 0, &mut out),
        scalar => {
            write_inline(scalar, &mut out);
            out.push('\n');
        }
    }
    out
}

/// Writes several objects as a YAML stream, separated by `---` lines.
pub fn encode_yaml_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&encode_yaml(value));
    }
    out
}

fn indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_mapping(map: &serde_json::Map<String, Value>, level: usize, out: &mut String) {
    for (key, value) in map {
        indent(level, out);
        write_string(key, out);
        out.push(':');
        write_value_after_key(value, level, out);
    }
}

fn write_value_after_key(value: &Value, level: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_mapping(map, level + 1, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_sequence(items, level, out);
        }
        scalar => {
            out.push(' ');
            write_inline(scalar, out);
            out.push('\n');
        }
    }
}

fn write_sequence(items: &[Value], level: usize, out: &mut String) {
    for item in items {
        indent(level, out);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first entry goes on the dash's line, the rest under it.
                let mut first = true;
                for (key, value) in map {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        indent(level + 1, out);
                    }
                    write_string(key, out);
                    out.push(':');
                    write_value_after_key(value, level + 1, out);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_sequence(inner, level + 1, out);
            }
            scalar => {
                out.push(' ');
                write_inline(scalar, out);
                out.push('\n');
            }
        }
    }
}

fn write_inline(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// Whether a string can be written as a plain scalar and read back as the same string.
fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '_' || first == '/') {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ',' | '='))
    {
        return false;
    }
    !matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
            | "null"
            | "Null"
            | "NULL"
    )
}

fn write_string(s: &str, out: &mut String) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else {
        // A JSON string is a valid YAML double-quoted scalar with the same meaning.
        out.push_str(&Value::String(s.to_owned()).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_all;
    use serde_json::json;

    #[test]
    fn nested_collections_read_back() {
        let value = json!({
            "spec": {
                "containers": [
                    {"name": "web", "ports": [{"containerPort": 80}], "args": [], "env": {}},
                    {"name": "sidecar", "command": ["sh", "-c", "echo 'hi' && exit 0"]},
                ],
                "nested": [[1, 2], [], [{"a": null}]],
                "text": "line one\nline two\ttabbed \"quoted\" # not a comment",
                "specials": ["yes", "0x10", "1e3", "", " padded ", "- dash", "a: b", "~", "@at"],
                "numbers": [0, -1, 1.5, 18_446_744_073_709_551_615_u64],
            }
        });
        let text = encode_yaml(&value);
        assert_eq!(parse_all(&text).unwrap()[0].value, value, "{text}");
    }

    #[test]
    fn streams_separate_documents() {
        let values = [json!({"a": 1}), json!({"b": [1]})];
        let text = encode_yaml_stream(&values);
        let parsed: Vec<Value> = parse_all(&text)
            .unwrap()
            .into_iter()
            .map(|d| d.value)
            .collect();
        assert_eq!(parsed, values);
    }
}
