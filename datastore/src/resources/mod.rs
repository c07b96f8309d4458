//! The `projectcalico.org/v3` resources: the envelope every stored resource shares (`apiVersion`, `kind`,
//! `metadata`, `spec`, and `status` for the kinds that have one), as `calicoctl get -o json` prints it and
//! Calico stores it under `/calico/resources/v3/`; the kinds table; one module per kind with its spec types
//! and Calico's rules; the value types the kinds share; the validation path they all take.
pub mod bgpconfig;
pub mod bgppeer;
pub mod ipamconfig;
pub mod ippool;
pub mod kinds;
pub mod metadata;
pub mod node;
pub mod validate;
pub mod values;
pub mod workloadendpoint;

#[cfg(test)]
mod tests;

pub use kinds::{kind_by_plural, kind_named, KindInfo, KINDS};
pub use metadata::{new_uid, parse_resource_version, set_resource_version, strip_resource_version, Metadata};
pub use validate::{FieldError, Spec};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const API_VERSION: &str = "projectcalico.org/v3";

/// A resource of spec `S` and status `T` (kinds without a status refuse one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>, T: Deserialize<'de>"))]
pub struct Resource<S, T = NoStatus> {
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<T>,
}

fn api_version() -> String {
    API_VERSION.into()
}

impl<S, T> Resource<S, T> {
    pub fn new(kind: &str, metadata: Metadata, spec: S) -> Resource<S, T> {
        Resource { api_version: api_version(), kind: kind.to_string(), metadata, spec, status: None }
    }
}

/// The status of a kind that has none: any `status` in a document is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStatus {}

impl Serialize for NoStatus {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

impl<'de> Deserialize<'de> for NoStatus {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<NoStatus, D::Error> {
        Err(serde::de::Error::custom("this kind has no status"))
    }
}
