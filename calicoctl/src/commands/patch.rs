//! `calicoctl patch KIND NAME -p PATCH [-t strategic|merge|json]`: the stored resource (with its
//! `resourceVersion`) patched, checked like an applied document, and written back only if it is still at
//! the revision the patch was made on (a stale `resourceVersion`, also one the patch itself carries, is
//! refused). calicoctl's default type, `strategic`, is a strategic merge patch; these kinds have no list
//! merge keys, so it is the JSON merge patch (RFC 7386) here, as `merge` is. `json` is an RFC 6902 patch.
use super::open;
use crate::args::Args;
use crate::error::{CtlError, Result};
use crate::input::Item;
use crate::resource::{self, identifier};
use datastore::resources::kinds::kind_named;
use datastore::store::Key;
use serde_json::{Map, Value};

pub fn run(args: &Args) -> Result<()> {
    args.allow("patch", &["config", "namespace", "patch", "type"])?;
    let [kind, name] = args.rest(1) else {
        return Err(CtlError::Usage(format!("calicoctl patch takes KIND NAME (accepts 2 arg(s), received {})", args.rest(1).len())));
    };
    let kind = kind_named(kind).ok_or_else(|| CtlError::Usage(format!("resource type '{kind}' is not supported")))?;
    let patch_text = args.get("patch").ok_or_else(|| CtlError::Usage("-p/--patch is required".into()))?;
    let hit = |e: String| CtlError::Failed(format!("hit error: {e}"));
    let patch: Value = serde_json::from_str(patch_text).map_err(|e| hit(format!("the patch is not JSON: {e}")))?;
    let ty = args.get("type").unwrap_or("strategic");
    let namespace = if kind.namespaced { args.get("namespace").unwrap_or("default").to_string() } else { String::new() };
    let key = Key::Resource { kind, namespace, name: name.clone() };
    let opened = open(args)?;
    let mut session = opened.datastore().lock()?;
    let current = resource::get(&*session, &key)?.ok_or_else(|| hit(CtlError::NotFound(identifier(&key)).to_string()))?;
    let mut doc = current.value;
    match ty {
        "strategic" | "merge" => merge(&mut doc, &patch),
        "json" => json_patch(&mut doc, &patch).map_err(|e| hit(format!("applying the JSON patch: {e}")))?,
        other => return Err(CtlError::Usage(format!("-t {other:?}: the patch type is strategic, merge or json"))),
    }
    let updating = |e: CtlError| hit(format!("updating existing resource: {e}"));
    let item = Item { value: doc, place: format!("patched {}", identifier(&key)) };
    let prepared = resource::prepare(&item, (!key_namespace(&key).is_empty()).then(|| key_namespace(&key))).map_err(updating)?;
    if prepared.key != key {
        return Err(updating(CtlError::Invalid(format!("{}: the patch may not change the name or namespace", identifier(&key)))));
    }
    resource::update(&mut *session, &prepared).map_err(updating)?;
    println!("Successfully patched 1 '{}' resource", kind.kind);
    Ok(())
}

fn key_namespace(key: &Key) -> &str {
    match key {
        Key::Resource { namespace, .. } => namespace,
        _ => "",
    }
}

/// RFC 7386: objects merge recursively, `null` removes a member, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The reference tokens of an RFC 6901 pointer.
fn tokens(pointer: &str) -> std::result::Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| format!("path {pointer:?} does not start with '/'"))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn index(arr: &[Value], t: &str, for_add: bool) -> std::result::Result<usize, String> {
    if for_add && t == "-" {
        return Ok(arr.len());
    }
    let i: usize = t.parse().map_err(|_| format!("{t:?} is not an array index"))?;
    let max = if for_add { arr.len() } else { arr.len().saturating_sub(1) };
    if i > max || (!for_add && arr.is_empty()) {
        return Err(format!("index {i} is out of range"));
    }
    Ok(i)
}

fn parent<'v>(doc: &'v mut Value, toks: &[String]) -> std::result::Result<&'v mut Value, String> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t).ok_or_else(|| format!("member {t:?} does not exist"))?,
            Value::Array(a) => {
                let i = index(a, t, false)?;
                &mut a[i]
            }
            _ => return Err(format!("{t:?}: not an object or array")),
        };
    }
    Ok(cur)
}

fn remove(doc: &mut Value, path: &str) -> std::result::Result<Value, String> {
    let toks = tokens(path)?;
    let (last, up) = toks.split_last().ok_or("cannot remove the whole document")?;
    match parent(doc, up)? {
        Value::Object(m) => m.remove(last).ok_or_else(|| format!("member {last:?} does not exist")),
        Value::Array(a) => {
            let i = index(a, last, false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!("{path}: not an object or array")),
    }
}

fn add(doc: &mut Value, path: &str, value: Value) -> std::result::Result<(), String> {
    let toks = tokens(path)?;
    let Some((last, up)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, up)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = index(a, last, true)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("{path}: not an object or array")),
    }
}

/// RFC 6902: `add`, `remove`, `replace`, `move`, `copy`, `test`, in order; any failure leaves nothing done
/// (the caller patches a copy).
pub fn json_patch(doc: &mut Value, patch: &Value) -> std::result::Result<(), String> {
    let ops = patch.as_array().ok_or("a JSON patch is an array of operations")?;
    for (i, op) in ops.iter().enumerate() {
        let at = |e: String| format!("operation {i}: {e}");
        let field = |k: &str| op.get(k).and_then(Value::as_str).ok_or_else(|| at(format!("needs \"{k}\"")));
        let path = field("path")?;
        let value = || op.get("value").cloned().ok_or_else(|| at("needs \"value\"".into()));
        match field("op")? {
            "add" => add(doc, path, value()?).map_err(at)?,
            "remove" => remove(doc, path).map(drop).map_err(at)?,
            "replace" => {
                remove(doc, path).map_err(at)?;
                add(doc, path, value()?).map_err(at)?;
            }
            "move" => {
                let v = remove(doc, field("from")?).map_err(at)?;
                add(doc, path, v).map_err(at)?;
            }
            "copy" => {
                let from = field("from")?;
                let v = doc.pointer(from).cloned().ok_or_else(|| at(format!("{from} does not exist")))?;
                add(doc, path, v).map_err(at)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(at(format!("test of {path} failed")));
                }
            }
            other => return Err(at(format!("unknown op {other:?}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_is_rfc_7386() {
        // The RFC's own example.
        let mut doc =
            json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["example", "sample"], "content": "x"});
        merge(&mut doc, &json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": null}, "tags": ["example"]}));
        assert_eq!(
            doc,
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"], "content": "x", "phoneNumber": "+01-123-456-7890"})
        );
        let mut doc = json!({"a": 1});
        merge(&mut doc, &json!({"a": {"b": null, "c": 2}}));
        assert_eq!(doc, json!({"a": {"c": 2}}));
    }

    #[test]
    fn json_patch_is_rfc_6902() {
        let mut doc = json!({"spec": {"bgp": {"asNumber": 1}, "list": [1, 2]}});
        let ops = json!([{"op": "replace", "path": "/spec/bgp/asNumber", "value": 64514}, {"op": "add", "path": "/spec/list/-", "value": 3},
                         {"op": "remove", "path": "/spec/list/0"}, {"op": "copy", "from": "/spec/bgp", "path": "/spec/x"},
                         {"op": "test", "path": "/spec/x/asNumber", "value": 64514}, {"op": "move", "from": "/spec/x", "path": "/spec/y"}]);
        json_patch(&mut doc, &ops).unwrap();
        assert_eq!(doc, json!({"spec": {"bgp": {"asNumber": 64514}, "list": [2, 3], "y": {"asNumber": 64514}}}));
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&mut doc, &json!([{"op": "test", "path": "/spec/list/0", "value": 9}])).is_err());
    }
}
