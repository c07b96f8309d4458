//! The `projectcalico.org/v3` envelope every stored resource shares (`apiVersion`, `kind`, `metadata`, `spec`),
//! as `calicoctl get -o json` prints it and Calico stores it under `/calico/resources/v3/`: one type for every
//! kind, so each is read and written the same way.
pub mod ippool;
pub mod kinds;
pub mod workloadendpoint;

pub use kinds::{kind_by_plural, kind_named, KindInfo, KINDS};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "projectcalico.org/v3";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource<S> {
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(rename = "creationTimestamp", default, skip_serializing_if = "String::is_empty")]
    pub creation_timestamp: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn api_version() -> String {
    API_VERSION.into()
}

impl Metadata {
    pub fn named(name: impl Into<String>) -> Metadata {
        Metadata { name: name.into(), ..Default::default() }
    }
}

impl<S> Resource<S> {
    pub fn new(kind: &str, metadata: Metadata, spec: S) -> Resource<S> {
        Resource { api_version: api_version(), kind: kind.to_string(), metadata, spec }
    }
}
