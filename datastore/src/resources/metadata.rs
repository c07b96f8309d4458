//! `metadata` of every v3 resource: Kubernetes' `ObjectMeta` fields as Calico stores them, the rules Calico
//! checks on them (`validateObjectMeta`), and the two steps the store applies around a write: Calico strips
//! `resourceVersion` before writing and sets it from the store revision on read
//! (`libcalico-go/lib/clientv3/resources.go` `resourceToKVPair`/`kvPairToResource`); create stamps `uid` and
//! `creationTimestamp`.
use super::values::{check_annotations, check_dns_label, check_label_key, check_label_value};
use super::FieldError;
use crate::store::Revision;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(rename = "generateName", default, deserialize_with = "null_is_default", skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    #[serde(default, deserialize_with = "null_is_default", skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(rename = "selfLink", default, deserialize_with = "null_is_default", skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    #[serde(default, deserialize_with = "null_is_default", skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The store revision the resource was read at, as a decimal string; never stored.
    #[serde(rename = "resourceVersion", default, deserialize_with = "null_is_default", skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, deserialize_with = "null_is_default", skip_serializing_if = "super::values::is_default")]
    pub generation: i64,
    /// RFC 3339, set on create (`null`, as Kubernetes prints an unset time, reads as unset).
    #[serde(rename = "creationTimestamp", default, deserialize_with = "null_is_default", skip_serializing_if = "String::is_empty")]
    pub creation_timestamp: String,
    #[serde(rename = "deletionTimestamp", default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(rename = "deletionGracePeriodSeconds", default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(default, deserialize_with = "null_is_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_is_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Kept as given: Calico does not interpret them.
    #[serde(rename = "ownerReferences", default, deserialize_with = "null_is_default", skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<Value>,
    #[serde(default, deserialize_with = "null_is_default", skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(rename = "managedFields", default, deserialize_with = "null_is_default", skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<Value>,
}

fn null_is_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Metadata {
    pub fn named(name: impl Into<String>) -> Metadata {
        Metadata { name: name.into(), ..Default::default() }
    }

    /// What a create sets when the document does not: a fresh `uid` and the creation time (RFC 3339, e.g.
    /// `datastore::ipam::block::Now::rfc3339`).
    pub fn stamp_created(&mut self, uid: impl Into<String>, created: &str) {
        if self.uid.is_empty() {
            self.uid = uid.into();
        }
        if self.creation_timestamp.is_empty() {
            self.creation_timestamp = created.to_string();
        }
    }

    /// Calico's rules on metadata beyond the name (checked with the envelope): the namespace a DNS label,
    /// label keys and values and annotation keys Kubernetes-valid, annotations at most 256 KiB.
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        if !self.namespace.is_empty() {
            check_dns_label(&self.namespace).map_err(|e| FieldError::new("metadata.namespace", e))?;
        }
        for (k, v) in &self.labels {
            check_label_key(k).map_err(|e| FieldError::new("metadata.labels", e))?;
            check_label_value(v).map_err(|e| FieldError::new(format!("metadata.labels.{k}"), e))?;
        }
        check_annotations(&self.annotations).map_err(|e| FieldError::new("metadata.annotations", e))?;
        if !self.resource_version.is_empty() {
            parse_resource_version(&self.resource_version).map_err(|e| FieldError::new("metadata.resourceVersion", e))?;
        }
        Ok(())
    }
}

/// The revision a `metadata.resourceVersion` names (calico-rs writes the store revision as a decimal).
pub fn parse_resource_version(s: &str) -> Result<Revision, String> {
    s.parse().map_err(|_| format!("{s:?} is not a resource version this store wrote (a decimal revision)"))
}

/// Before a write: removes `metadata.resourceVersion` from the document, as Calico never stores it, and
/// returns it (the revision a replace or patch expects to overwrite), or `None` when it had none.
pub fn strip_resource_version(doc: &mut Value) -> Option<String> {
    let meta = doc.get_mut("metadata")?.as_object_mut()?;
    match meta.remove("resourceVersion")? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// After a read: sets `metadata.resourceVersion` to the revision the record was read at.
pub fn set_resource_version(doc: &mut Value, rev: Revision) {
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// UTC now as `2006-01-02T15:04:05Z` (civil date from the Unix day count).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A random (version 4) UUID for `metadata.uid`, as Kubernetes' `uuid.NewUUID` makes them.
pub fn new_uid() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_version_is_stripped_before_a_write_and_set_on_read() {
        let mut doc = json!({"kind": "BGPPeer", "metadata": {"name": "p", "resourceVersion": "41"}, "spec": {}});
        assert_eq!(strip_resource_version(&mut doc).as_deref(), Some("41"));
        assert_eq!(doc["metadata"], json!({"name": "p"}));
        assert_eq!(strip_resource_version(&mut doc), None);
        set_resource_version(&mut doc, 42);
        assert_eq!(doc["metadata"]["resourceVersion"], "42");
        assert_eq!(parse_resource_version("42"), Ok(42));
        assert!(parse_resource_version("abc").is_err() && parse_resource_version("-1").is_err());
        let mut odd = json!([1]);
        assert_eq!(strip_resource_version(&mut odd), None);
        set_resource_version(&mut odd, 1);
        assert_eq!(odd, json!([1]));
    }

    #[test]
    fn metadata_round_trips_every_object_meta_field() {
        let m = json!({
            "name": "n", "generateName": "g-", "namespace": "ns", "selfLink": "/x", "uid": "u", "resourceVersion": "7",
            "generation": 2, "creationTimestamp": "2026-01-01T00:00:00Z", "deletionTimestamp": "2026-01-02T00:00:00Z",
            "deletionGracePeriodSeconds": 30, "labels": {"a": "b"}, "annotations": {"c": "d"},
            "ownerReferences": [{"kind": "X", "name": "y"}], "finalizers": ["f"], "managedFields": [{"manager": "m"}]
        });
        let parsed: Metadata = serde_json::from_value(m.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), m);
        let nulls: Metadata = serde_json::from_value(json!({"name": "n", "creationTimestamp": null, "labels": null})).unwrap();
        assert_eq!(nulls, Metadata::named("n"));
        assert!(serde_json::from_value::<Metadata>(json!({"name": "n", "colour": "red"})).is_err());
        let mut m = Metadata::named("n");
        m.stamp_created("uid-1", "2026-01-01T00:00:00Z");
        m.stamp_created("uid-2", "2027-01-01T00:00:00Z");
        assert_eq!((m.uid.as_str(), m.creation_timestamp.as_str()), ("uid-1", "2026-01-01T00:00:00Z"), "create stamps once");
    }

    #[test]
    fn uids_are_random_v4() {
        let (a, b) = (new_uid().unwrap(), new_uid().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
