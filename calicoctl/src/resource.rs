//! Resources between documents and the store, the same for every kind (the kinds table says what a kind
//! is; `KindInfo::validate` checks its spec): reading sets `metadata.resourceVersion` from the record's
//! revision; a document is checked (envelope, metadata, the kind's own rules) into a `Prepared` write; the
//! writes are calicoctl's create, update (`replace`, `apply`, `patch`, `label`) and delete, each one
//! compare-and-swap commit on the record's revision, so a stale `resourceVersion` is refused and nothing
//! is changed. What IPAM keeps beside a resource (a pool's index entry, the IPAM config record) comes from
//! `cni_ipam::ipam::admin::resource_ops` and goes into the same commit.
use crate::error::{CtlError, Result};
use crate::input::Item;
use crate::output;
use cni_ipam::ipam::admin;
use datastore::resources::kinds::{kind_named, KindInfo, NODE};
use datastore::resources::API_VERSION;
use datastore::store::{Json, Key, Kind, Revision, Store, StoreError};
use serde_json::{Map, Value};

/// Kubernetes' `ObjectMeta` fields in their struct order: what calicoctl accepts in `metadata` (the server sets
/// the others), and the order `-o json` writes them in.
pub const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];
const ENVELOPE: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// A stored resource as read, `metadata.resourceVersion` set to its revision.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: Key,
    pub value: Value,
    pub rev: Revision,
}

/// `BGPPeer(name)`, `WorkloadEndpoint(namespace/name)`: how Calico's errors name a resource.
pub fn identifier(key: &Key) -> String {
    match key {
        Key::Resource { kind, namespace, name } if !namespace.is_empty() => format!("{}({namespace}/{name})", kind.kind),
        Key::Resource { kind, name, .. } => format!("{}({name})", kind.kind),
        other => other.to_string(),
    }
}

pub fn kind_of(key: &Key) -> &'static KindInfo {
    match key {
        Key::Resource { kind, .. } => kind,
        _ => unreachable!("only resource keys are made here"),
    }
}

fn with_version(key: Key, value: &Json, rev: Revision) -> Result<Stored> {
    let mut v: Value = value.decode().map_err(|e| CtlError::Store(StoreError::Corrupt { path: key.path(), reason: e.to_string() }))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(CtlError::Store(StoreError::Corrupt { path: key.path(), reason: "not a resource".into() }));
    };
    let kind = kind_of(&key);
    obj.entry("kind").or_insert_with(|| kind.kind.into());
    obj.entry("apiVersion").or_insert_with(|| API_VERSION.into());
    let meta = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = meta.as_object_mut() {
        m.insert("resourceVersion".into(), rev.to_string().into());
    }
    Ok(Stored { key, value: v, rev })
}

pub fn get(store: &dyn Store, key: &Key) -> Result<Option<Stored>> {
    match store.get(key)? {
        None => Ok(None),
        Some(r) => with_version(key.clone(), &r.value, r.rev).map(Some),
    }
}

/// Every resource of a kind (of one namespace when `namespace` is given), by namespace and name.
pub fn list(store: &dyn Store, kind: &'static KindInfo, namespace: Option<&str>) -> Result<Vec<Stored>> {
    let mut out = Vec::new();
    for (key, rec) in store.list(Kind::Resource(kind))? {
        if let (Some(ns), Key::Resource { namespace: k, .. }) = (namespace, &key) {
            if k != ns {
                continue;
            }
        }
        out.push(with_version(key, &rec.value, rec.rev)?);
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// A resource from a document, checked in full and ready to be written.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub key: Key,
    /// The document as it is to be stored: the kind's validated form, metadata reduced to what calicoctl
    /// keeps (name, namespace, labels, annotations), no `resourceVersion`.
    pub value: Value,
    /// The document's `metadata.resourceVersion`: the revision it must still be at.
    pub rv: Option<Revision>,
    pub place: String,
}

impl Prepared {
    pub fn kind(&self) -> &'static KindInfo {
        kind_of(&self.key)
    }
}

/// Kubernetes' DNS-1123 subdomain: Calico's rule for resource names (no `/`, no `..`, at most 253).
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("is required".into());
    }
    if name.len() > 253 {
        return Err(format!("{} characters; at most 253", name.len()));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && l.starts_with(|c: char| c.is_ascii_alphanumeric())
            && l.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if !name.split('.').all(label_ok) {
        return Err(format!("{name:?} is not a valid name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"));
    }
    Ok(())
}

/// Kubernetes' label key (`[prefix/]name`) and value rules, which Calico applies to every resource.
fn check_label(key: &str, value: &str) -> std::result::Result<(), String> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 63
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if !name_ok(name) || prefix.is_some_and(|p| p.len() > 253 || check_name(p).is_err()) {
        return Err(format!("key {key:?} is not a valid label key"));
    }
    if !value.is_empty() && !name_ok(value) {
        return Err(format!("value {value:?} of label {key:?} is not a valid label value"));
    }
    Ok(())
}

/// Checks a document as `calicoctl apply` would (unknown fields refused, the kind's rules), before anything
/// is written. `namespace`: `-n`'s value (namespaced kinds default to `default`).
pub fn prepare(item: &Item, namespace: Option<&str>) -> Result<Prepared> {
    prepare_as(item, namespace, true)
}

/// `prepare`; with `full` false only the envelope and metadata are checked (what `delete -f` needs).
pub fn prepare_as(item: &Item, namespace: Option<&str>, full: bool) -> Result<Prepared> {
    let place = &item.place;
    let Some(doc) = item.value.as_object() else {
        return Err(CtlError::Input(format!("{place}: expected a resource (a mapping with apiVersion, kind, metadata and spec)")));
    };
    let kind_text = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = doc.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(kind) = kind_named(kind_text) else {
        let what = if kind_text.is_empty() { "kind: is required".to_string() } else { format!("kind: unknown resource type {kind_text:?}") };
        let known: Vec<&str> = datastore::resources::KINDS.iter().map(|k| k.kind).collect();
        return Err(CtlError::Invalid(format!("{place}: {what} (calico-rs knows {})", known.join(", "))));
    };
    let bad = |field: &str, reason: String| CtlError::Invalid(format!("{place}: {} {name:?}: {field}: {reason}", kind.kind));
    match doc.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => return Err(bad("apiVersion", format!("{other:?} is not {API_VERSION}"))),
        None => return Err(bad("apiVersion", format!("is required ({API_VERSION})"))),
    }
    if let Some(k) = doc.keys().find(|k| !ENVELOPE.contains(&k.as_str())) {
        return Err(bad(k, "field in document is not recognized or is in the wrong location".into()));
    }
    let meta = match doc.get("metadata") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("metadata", "must be a mapping".into())),
        None => return Err(bad("metadata.name", "is required".into())),
    };
    if let Some(k) = meta.keys().find(|k| !OBJECT_META.contains(&k.as_str())) {
        return Err(bad(&format!("metadata.{k}"), "field in document is not recognized or is in the wrong location".into()));
    }
    match meta.get("name") {
        Some(Value::String(_)) | None => {}
        Some(_) => return Err(bad("metadata.name", "must be a string".into())),
    }
    check_name(&name).map_err(|e| bad("metadata.name", e))?;
    let ns = match meta.get("namespace") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("metadata.namespace", "must be a string".into())),
    };
    let ns = if kind.namespaced {
        match (ns.as_str(), namespace) {
            ("", Some(cli)) => cli.to_string(),
            ("", None) => "default".to_string(),
            (doc_ns, Some(cli)) if doc_ns != cli => {
                return Err(bad("metadata.namespace", format!("resource namespace does not match client namespace. {doc_ns} != {cli}")));
            }
            (doc_ns, _) => doc_ns.to_string(),
        }
    } else if !ns.is_empty() {
        return Err(bad(
            "metadata.namespace",
            format!("namespace should not be specified for a non-namespaced resource. {} is not a namespaced resource", kind.kind),
        ));
    } else {
        String::new()
    };
    if kind.namespaced {
        check_name(&ns).map_err(|e| bad("metadata.namespace", e))?;
    }
    let mut kept = Map::new();
    kept.insert("name".into(), name.clone().into());
    if !ns.is_empty() {
        kept.insert("namespace".into(), ns.clone().into());
    }
    for field in ["labels", "annotations"] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let Some(v) = v.as_str() else {
                        return Err(bad(&format!("metadata.{field}.{k}"), "must be a string".into()));
                    };
                    if field == "labels" {
                        check_label(k, v).map_err(|e| bad("metadata.labels", e))?;
                    }
                }
                if !m.is_empty() {
                    kept.insert(field.into(), Value::Object(m.clone()));
                }
            }
            Some(_) => return Err(bad(&format!("metadata.{field}"), "must be a mapping of strings".into())),
        }
    }
    let rv = match meta.get("resourceVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(v) => {
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            Some(
                text.parse::<Revision>()
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or_else(|| bad("metadata.resourceVersion", format!("{text:?} is not a resource version")))?,
            )
        }
    };
    // The kind's own rules see the document as written, with the kind spelled as the table spells it.
    let mut checked = item.value.clone();
    checked["kind"] = kind.kind.into();
    let valid = if full { (kind.validate)(&checked).map_err(|e| CtlError::Invalid(format!("{place}: {e}")))? } else { checked };
    let mut value = Map::new();
    value.insert("kind".into(), kind.kind.into());
    value.insert("apiVersion".into(), API_VERSION.into());
    value.insert("metadata".into(), Value::Object(kept));
    for part in ["spec", "status"] {
        if let Some(v) = valid.get(part).filter(|v| !v.is_null()) {
            value.insert(part.into(), v.clone());
        }
    }
    value.entry("spec").or_insert_with(|| Value::Object(Map::new()));
    Ok(Prepared { key: Key::Resource { kind, namespace: ns, name }, value: Value::Object(value), rv, place: place.clone() })
}

/// A creation's stamp: Calico's `uid` and `creationTimestamp`.
pub struct Stamp {
    pub uid: String,
    pub created: String,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp { uid: uuid_v4(), created: datastore::resources::metadata::rfc3339_now() }
    }
}

fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    if b == [0; 16] {
        // No /dev/urandom: the clock and the pid still make it unique enough for a uid.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn encode(v: &Value) -> Result<Json> {
    Json::parse(output::json::to_string(v, false)).map_err(|e| CtlError::Invalid(format!("encoding: {e}")))
}

/// A store conflict on a write of `p`: the record itself changed (or appeared, or went), or IPAM's records
/// beside it did.
fn conflict(p_key: &Key, e: StoreError, rv: Option<Revision>) -> CtlError {
    match e {
        StoreError::Conflict { key, reason } if key == p_key.path() && reason == "already exists" => CtlError::Exists(identifier(p_key)),
        StoreError::Conflict { key, reason } if key == p_key.path() && reason == "does not exist" => CtlError::NotFound(identifier(p_key)),
        StoreError::Conflict { .. } => CtlError::Conflict(format!(
            "{}: changed by another writer{}",
            identifier(p_key),
            if rv.is_some() { "; read it again and retry" } else { "" }
        )),
        other => CtlError::Store(other),
    }
}

fn ipam_err(e: cni_ipam::IpamError) -> CtlError {
    match e {
        cni_ipam::IpamError::Store(s) => CtlError::Store(s),
        other => CtlError::Invalid(other.to_string()),
    }
}

/// Creates `p`; refuses one that exists (and a `resourceVersion`, as Calico does for a create).
pub fn create(store: &mut dyn Store, p: &Prepared, stamp: &Stamp) -> Result<Value> {
    if p.rv.is_some() {
        return Err(CtlError::Invalid(format!(
            "{}: metadata.resourceVersion: must not be set when creating a resource (apply or replace update one)",
            identifier(&p.key)
        )));
    }
    create_unchecked(store, p, stamp)
}

fn create_unchecked(store: &mut dyn Store, p: &Prepared, stamp: &Stamp) -> Result<Value> {
    if store.get(&p.key)?.is_some() {
        return Err(CtlError::Exists(identifier(&p.key)));
    }
    let mut value = p.value.clone();
    value["metadata"]["uid"] = stamp.uid.clone().into();
    value["metadata"]["creationTimestamp"] = stamp.created.clone().into();
    let ops = admin::resource_ops(store, &p.key, Some(encode(&value)?), None).map_err(ipam_err)?;
    store.commit(&ops).map_err(|e| conflict(&p.key, e, None))?;
    Ok(value)
}

/// Calicoctl's update: the stored metadata stays (uid, creationTimestamp) but for labels and annotations,
/// which come from `p`. With a `resourceVersion` the record must still be at it; without, the latest
/// revision is used and a concurrent change retried (as calicoctl does, five times).
pub fn update(store: &mut dyn Store, p: &Prepared) -> Result<Value> {
    let mut last = None;
    for _ in 0..5 {
        let Some(cur) = get(store, &p.key)? else {
            return Err(CtlError::NotFound(identifier(&p.key)));
        };
        if let Some(rv) = p.rv.filter(|rv| *rv != cur.rev) {
            return Err(CtlError::Conflict(format!(
                "{}: resource version '{rv}' is out of date (latest: {}). Update the resource YAML/JSON in order to make changes",
                identifier(&p.key),
                cur.rev
            )));
        }
        let mut value = p.value.clone();
        let mut meta = cur.value.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        meta.remove("resourceVersion");
        for field in ["labels", "annotations"] {
            match p.value["metadata"].get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        value["metadata"] = Value::Object(meta);
        let ops = admin::resource_ops(store, &p.key, Some(encode(&value)?), Some(cur.rev)).map_err(ipam_err)?;
        match store.commit(&ops) {
            Ok(_) => return Ok(value),
            Err(e) if e.is_conflict() && p.rv.is_none() => last = Some(e),
            Err(e) => return Err(conflict(&p.key, e, p.rv)),
        }
    }
    Err(last.map_or_else(|| CtlError::Conflict(identifier(&p.key)), |e| conflict(&p.key, e, None)))
}

/// Create, or update if it exists (with the document's `resourceVersion`, if any).
pub fn apply(store: &mut dyn Store, p: &Prepared, stamp: &Stamp) -> Result<Value> {
    match create_unchecked(store, p, stamp) {
        Err(CtlError::Exists(_)) => update(store, p),
        other => other,
    }
}

/// Deletes the resource at `key` (at revision `rv`, when given); returns it as it was. A Node takes with it
/// what IPAM and the BGP resources hold for it (`admin::remove_node`).
pub fn delete(store: &mut dyn Store, key: &Key, rv: Option<Revision>) -> Result<Value> {
    let Some(cur) = get(store, key)? else {
        return Err(CtlError::NotFound(identifier(key)));
    };
    if let Some(rv) = rv.filter(|rv| *rv != cur.rev) {
        return Err(CtlError::Conflict(format!("{}: resource version '{rv}' is out of date (latest: {})", identifier(key), cur.rev)));
    }
    if let Key::Resource { kind, name, .. } = key {
        if **kind == NODE {
            // As Calico's: the node's addresses, affinities and node-scoped resources go first.
            let removed = admin::remove_node(store, name).map_err(ipam_err)?;
            tracing::info!(node = %name, ?removed, "released what the node held");
        }
    }
    let ops = admin::resource_ops(store, key, None, Some(cur.rev)).map_err(ipam_err)?;
    store.commit(&ops).map_err(|e| conflict(key, e, rv))?;
    Ok(cur.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Item {
        Item { value: v, place: "f".into() }
    }

    #[test]
    fn documents_are_checked_generically_before_their_kind() {
        let ok = prepare(
            &item(json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p", "labels": {"rack": "r1"},
                        "resourceVersion": "12", "uid": "x"}, "spec": {"peerIP": "192.0.2.1", "asNumber": 64512}})),
            None,
        )
        .unwrap();
        assert_eq!(ok.rv, Some(12));
        assert_eq!(ok.value["metadata"], json!({"name": "p", "labels": {"rack": "r1"}}), "server-set metadata is dropped");
        for (doc, msg) in [
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "Policy", "metadata": {"name": "p"}}), "kind: unknown resource type \"Policy\""),
            (json!({"apiVersion": "v1", "kind": "BGPPeer", "metadata": {"name": "p"}}), "apiVersion"),
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {}}), "metadata.name: is required"),
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "a/b"}}), "metadata.name"),
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "a..b"}}), "metadata.name"),
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "x".repeat(254)}}), "at most 253"),
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p"}, "extra": 1}), "extra: field in document"),
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p", "nme": "q"}}), "metadata.nme"),
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p", "namespace": "x"}}), "non-namespaced"),
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p", "labels": {"a b": "c"}}}), "label key"),
            (json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p", "resourceVersion": "x1"}}), "resourceVersion"),
            (
                json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/8", "blockSize": 40}}),
                "blockSize",
            ),
        ] {
            let err = prepare(&item(doc.clone()), None).unwrap_err().to_string();
            assert!(err.contains(msg), "{doc}: {err}");
        }
    }

    #[test]
    fn the_creation_stamp_is_calicos() {
        let s = Stamp::now();
        assert_eq!(s.uid.len(), 36);
        assert_eq!(s.uid.as_bytes()[14], b'4');
        assert!(s.created.len() == 20 && s.created.ends_with('Z') && s.created.as_bytes()[10] == b'T', "{}", s.created);
    }
}
