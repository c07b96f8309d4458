//! Resources as JSON text the way Go's `encoding/json` writes Calico's objects (calicoctl's `-o json`, and
//! the values Calico stores in etcd): the envelope in its struct order (`kind`, `apiVersion`, `metadata`,
//! `spec`, `status`; a list's `items` last), `metadata` in Kubernetes' `ObjectMeta` order, everything else
//! sorted by key, and strings escaped as Go escapes them (`<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`).
use crate::resource::OBJECT_META;
use serde_json::Value;
use std::fmt::Write;

const ENVELOPE: &[&str] = &["kind", "apiVersion", "metadata", "spec", "status", "items"];

#[derive(Clone, Copy)]
enum Ctx {
    Resource,
    Metadata,
    Plain,
}

/// Compact (`indent` false, as stored) or indented by two spaces (`json.MarshalIndent(v, "", "  ")`).
/// `v` is a resource, a list resource, or an array of resources.
pub fn to_string(v: &Value, indent: bool) -> String {
    let mut out = String::new();
    let ctx = Ctx::Resource;
    match v {
        Value::Array(items) => write_array(&mut out, items, indent, 0, ctx),
        _ => write(&mut out, v, indent, 0, ctx),
    }
    out
}

fn rank(order: &[&str], key: &str) -> usize {
    order.iter().position(|k| *k == key).unwrap_or(order.len())
}

fn write(out: &mut String, v: &Value, indent: bool, depth: usize, ctx: Ctx) {
    match v {
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = map.keys().collect();
            match ctx {
                Ctx::Resource => keys.sort_by_key(|k| (rank(ENVELOPE, k), k.as_str())),
                Ctx::Metadata => keys.sort_by_key(|k| (rank(OBJECT_META, k), k.as_str())),
                Ctx::Plain => {}
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                string(out, k);
                out.push(':');
                if indent {
                    out.push(' ');
                }
                let child = match (ctx, k.as_str()) {
                    (Ctx::Resource, "metadata") => Ctx::Metadata,
                    (Ctx::Resource, "items") => Ctx::Resource,
                    _ => Ctx::Plain,
                };
                match (&map[*k], child) {
                    (Value::Array(items), Ctx::Resource) => write_array(out, items, indent, depth + 1, Ctx::Resource),
                    (value, child) => write(out, value, indent, depth + 1, child),
                }
            }
            newline(out, indent, depth);
            out.push('}');
        }
        Value::Array(items) => write_array(out, items, indent, depth, Ctx::Plain),
        Value::String(s) => string(out, s),
        other => out.push_str(&other.to_string()),
    }
}

fn write_array(out: &mut String, items: &[Value], indent: bool, depth: usize, ctx: Ctx) {
    if items.is_empty() {
        out.push_str("[]");
        return;
    }
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(out, indent, depth + 1);
        write(out, item, indent, depth + 1, ctx);
    }
    newline(out, indent, depth);
    out.push(']');
}

fn newline(out: &mut String, indent: bool, depth: usize) {
    if indent {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    }
}

fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn resources_are_written_in_gos_order_and_escaping() {
        let v = json!({"spec": {"nodeSelector": "a == 'x' && b < 2", "asNumber": 64512}, "metadata": {"labels": {"z": "1"}, "name": "p",
                       "uid": "u", "creationTimestamp": "t"}, "apiVersion": "projectcalico.org/v3", "kind": "BGPPeer"});
        assert_eq!(
            super::to_string(&v, false),
            r#"{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"p","uid":"u","creationTimestamp":"t","labels":{"z":"1"}},"spec":{"asNumber":64512,"nodeSelector":"a == 'x' \u0026\u0026 b \u003c 2"}}"#
        );
        let list =
            json!({"items": [{"metadata": {"name": "a"}, "kind": "Node"}], "kind": "NodeList", "metadata": {}, "apiVersion": "projectcalico.org/v3"});
        assert_eq!(
            super::to_string(&list, true),
            "{\n  \"kind\": \"NodeList\",\n  \"apiVersion\": \"projectcalico.org/v3\",\n  \"metadata\": {},\n  \"items\": [\n    {\n      \"kind\": \"Node\",\n      \"metadata\": {\n        \"name\": \"a\"\n      }\n    }\n  ]\n}"
        );
    }
}
