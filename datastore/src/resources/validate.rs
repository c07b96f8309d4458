//! The one path every kind's `KindInfo::validate` takes, as `calicoctl apply` checks a document: the envelope
//! (kind, apiVersion, metadata.name and namespace), a strict typed decode whose errors carry the JSON path of
//! the field (unknown fields refused, as Calico's strict decode refuses them), the metadata rules, then the
//! kind's own rules and defaults ([`Spec::check`]); what comes back is the resource as it is to be stored.
use super::kinds::KindInfo;
use super::values::check_name;
use super::{Resource, API_VERSION};
use crate::ModelError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A rule broken at one field: `field` is the JSON path from the document's root (`spec.asNumber`,
/// `spec.communities[1].value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), reason: reason.into() }
    }
}

/// What a kind's module supplies: its spec and status types and Calico's rules for them.
pub trait Spec: Serialize + DeserializeOwned {
    type Status: Serialize + DeserializeOwned;
    const KIND: &'static KindInfo;

    /// Calico's rules for the kind (its validator, its CRD schema and the client's checks that need no other
    /// resource), filling in the defaults Calico stores. The envelope and metadata are already checked.
    fn check(res: &mut Resource<Self, Self::Status>) -> Result<(), FieldError>;
}

fn invalid(info: &KindInfo, name: &str, err: FieldError) -> ModelError {
    ModelError::Invalid { kind: info.kind, name: name.to_string(), field: err.field, reason: err.reason }
}

/// The document as a checked resource of kind `S`, Calico's defaults filled in.
pub fn parse<S: Spec>(doc: &Value) -> Result<Resource<S, S::Status>, ModelError> {
    let info = S::KIND;
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    envelope(info, doc).map_err(|e| invalid(info, name, e))?;
    let mut doc = doc.clone();
    if let Some(obj) = doc.as_object_mut() {
        // Go decodes a missing spec as the zero spec; the kind's rules say whether that is enough.
        obj.entry("spec").or_insert_with(|| Value::Object(Default::default()));
    }
    let mut res: Resource<S, S::Status> = serde_path_to_error::deserialize(&doc).map_err(|e| invalid(info, name, decode_error(e)))?;
    if info.namespaced && res.metadata.namespace.is_empty() {
        // calicoctl's default for namespaced kinds.
        res.metadata.namespace = "default".into();
    }
    res.metadata.check().map_err(|e| invalid(info, name, e))?;
    S::check(&mut res).map_err(|e| invalid(info, name, e))?;
    Ok(res)
}

/// `KindInfo::validate` for kind `S`: [`parse`], written back as JSON.
pub fn validate<S: Spec>(doc: &Value) -> Result<Value, ModelError> {
    let res = parse::<S>(doc)?;
    serde_json::to_value(&res).map_err(|e| ModelError::Encode(e.to_string()))
}

fn envelope(info: &KindInfo, doc: &Value) -> Result<(), FieldError> {
    let Some(obj) = doc.as_object() else {
        return Err(FieldError::new("(document)", "must be a JSON object"));
    };
    match obj.get("kind") {
        Some(Value::String(k)) if k == info.kind => {}
        Some(Value::String(k)) => return Err(FieldError::new("kind", format!("is {k:?}, this is a {}", info.kind))),
        Some(_) => return Err(FieldError::new("kind", "must be a string")),
        None => return Err(FieldError::new("kind", "is required")),
    }
    match obj.get("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(v) => return Err(FieldError::new("apiVersion", format!("{v} is not {API_VERSION}"))),
        None => return Err(FieldError::new("apiVersion", format!("is required ({API_VERSION})"))),
    }
    let meta = match obj.get("metadata") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(FieldError::new("metadata", "must be an object")),
        None => return Err(FieldError::new("metadata", "is required")),
    };
    match meta.get("name") {
        Some(Value::String(n)) => check_name(n).map_err(|e| FieldError::new("metadata.name", e))?,
        Some(_) => return Err(FieldError::new("metadata.name", "must be a string")),
        None => return Err(FieldError::new("metadata.name", "is required")),
    }
    if !info.namespaced {
        if let Some(ns) = meta.get("namespace").filter(|ns| !matches!(ns, Value::Null) && ns.as_str() != Some("")) {
            return Err(FieldError::new("metadata.namespace", format!("{ns} given, but {} is not namespaced", info.kind)));
        }
    }
    if obj.get("spec").is_some_and(|s| !s.is_object()) {
        return Err(FieldError::new("spec", "must be an object"));
    }
    Ok(())
}

/// A decode error as the field it is about (the path names an unknown field itself, but a missing field's
/// parent, so its name is appended).
fn decode_error(e: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = e.path().to_string();
    let msg = e.inner().to_string();
    if msg.starts_with("unknown field `") {
        return FieldError::new(path, "unknown field");
    }
    if let Some(name) = msg.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
        return FieldError::new(if path == "." { name.to_string() } else { format!("{path}.{name}") }, "is required");
    }
    FieldError::new(if path == "." { "(document)".to_string() } else { path }, msg)
}
