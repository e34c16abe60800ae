//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant
//! whitespace. Written out here rather than relying on `serde_json::Value`'s
//! map order, which changes if any crate in the build enables
//! `preserve_order`.

use serde_json::Value;

pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push_str(&Value::String(s.to_string()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_canonical_form() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).unwrap();
        let b: Value =
            serde_json::from_str("{ \"a\" : { \"x\" : \"s\", \"y\" : [ 1, 2 ] },\n \"b\" : 1 }")
                .unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
    }

    #[test]
    fn array_order_is_significant() {
        let a: Value = serde_json::from_str("[1,2]").unwrap();
        let b: Value = serde_json::from_str("[2,1]").unwrap();
        assert_ne!(canonical_json(&a), canonical_json(&b));
    }

    #[test]
    fn strings_are_escaped() {
        let v: Value = serde_json::from_str(r#"{"q":"a\"b\n"}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"q":"a\"b\n"}"#);
    }
}
