//! Block-YAML emission of a `serde_json::Value`, written so that no quoting bug is possible.
//!
//! Every key and every string is written as a JSON double-quoted string (serde_json does the
//! escaping), which YAML 1.2 reads as a double-quoted scalar with the same value; numbers,
//! booleans and null are written as JSON writes them, which YAML reads as the same type. Only
//! the structure (indentation, `key:` and `- `) is ours, and it is small. On top of JSON's
//! escaping, the characters that a YAML 1.1 reader (go-yaml, which k3s, RKE2 and kubeadm use)
//! treats as line breaks or refuses as non-printable are written as `\uXXXX` escapes, which
//! both YAML versions read back as the same character.
//!
//! Why not a YAML serializer crate: `serde_yaml` is archived, and the forks add a dependency tree
//! for what is ~80 lines here. Tests parse every rendered file back with `yaml-rust2` (a
//! dev-dependency) and compare it with the value that was meant.

use serde_json::Value;

/// Renders `docs` as a YAML stream: one document per value, each started by `---`, with a
/// top-level `apiVersion` and `kind` written first (Kubernetes' habit; the rest is in key order).
pub fn documents(docs: &[Value]) -> String {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        match doc {
            Value::Object(map) => {
                let mut rest = map.clone();
                for key in ["apiVersion", "kind"] {
                    if let Some(value) = rest.remove(key) {
                        let mut head = serde_json::Map::new();
                        head.insert(key.to_owned(), value);
                        out.push_str(&document(&Value::Object(head)));
                    }
                }
                if !rest.is_empty() {
                    out.push_str(&document(&Value::Object(rest)));
                }
            }
            other => out.push_str(&document(other)),
        }
    }
    out
}

/// Renders one value as a block-YAML document (without the `---` marker), ending in a newline.
pub fn document(value: &Value) -> String {
    let mut lines = Vec::new();
    if inline(value).is_some() {
        lines.push(scalar(value));
    } else {
        block(value, 0, &mut lines);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The inline form of a value that needs no block: scalars and empty collections.
fn inline(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) if items.is_empty() => Some("[]".to_owned()),
        Value::Object(map) if map.is_empty() => Some("{}".to_owned()),
        Value::Array(_) | Value::Object(_) => None,
        _ => Some(scalar(value)),
    }
}

/// Appends the block lines of a non-empty collection at `indent` spaces.
fn block(value: &Value, indent: usize, lines: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let key = quote(key);
                match inline(item) {
                    Some(text) => lines.push(format!("{pad}{key}: {text}")),
                    None => {
                        lines.push(format!("{pad}{key}:"));
                        block(item, indent + 2, lines);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match inline(item) {
                    Some(text) => lines.push(format!("{pad}- {text}")),
                    None => {
                        // The item's block at indent + 2, its first line's indentation
                        // replaced by the dash: `- key: value` / `  key: value`.
                        let first = lines.len();
                        block(item, indent + 2, lines);
                        if let Some(line) = lines.get_mut(first) {
                            *line = format!("{pad}- {}", &line[indent + 2..]);
                        }
                    }
                }
            }
        }
        _ => lines.push(format!("{pad}{}", scalar(value))),
    }
}

/// A scalar as JSON writes it (strings through [`quote`]).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// A string as a JSON double-quoted string, with YAML 1.1 line breaks and non-printable
/// characters escaped as well.
pub fn quote(s: &str) -> String {
    let json = Value::String(s.to_owned()).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters JSON leaves raw that a YAML reader may not: DEL and the C1 controls (NEL, U+0085,
/// is a line break in YAML 1.1), the line and paragraph separators (line breaks in YAML 1.1),
/// the byte-order mark and the non-characters U+FFFE / U+FFFF.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_and_lists_are_indented_by_two() {
        let v = json!({"a": {"b": 1, "c": ["x", {"d": true, "e": null}]}, "f": [], "g": {}});
        let text = document(&v);
        assert_eq!(
            text,
            "\"a\":\n  \"b\": 1\n  \"c\":\n    - \"x\"\n    - \"d\": true\n      \"e\": null\n\"f\": []\n\"g\": {}\n"
        );
    }

    #[test]
    fn lists_of_lists_put_the_dashes_on_one_line() {
        let v = json!([["a", "b"], "c"]);
        assert_eq!(document(&v), "- - \"a\"\n  - \"b\"\n- \"c\"\n");
    }

    #[test]
    fn yaml_1_1_breaks_and_controls_are_escaped() {
        assert_eq!(
            quote("a\u{2028}b\u{85}c\u{7f}"),
            "\"a\\u2028b\\u0085c\\u007f\""
        );
        assert_eq!(quote("tab\there\n"), "\"tab\\there\\n\"");
    }

    #[test]
    fn a_stream_marks_every_document() {
        let text = documents(&[json!({"a": 1}), json!({"b": 2})]);
        assert_eq!(text, "---\n\"a\": 1\n---\n\"b\": 2\n");
    }
}
