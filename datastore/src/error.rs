//! The model's one error type: a resource that fails validation, a stored record that does not decode, or the
//! store itself. Each says which resource, field or key it is about; the plugins map it to their own codes.
use crate::store::{Key, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A resource document that fails validation: which resource, which field, why.
    #[error("{kind} {name:?}: {field}: {reason}")]
    Invalid { kind: &'static str, name: String, field: String, reason: String },
    #[error("invalid IP pool {name:?}: {reason}")]
    InvalidPool { name: String, reason: String },
    /// A resource name Calico would refuse (Kubernetes object-name rules).
    #[error("{0}")]
    InvalidName(String),
    #[error("invalid IPAM configuration: {0}")]
    InvalidIpamConfig(String),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("encoding record: {0}")]
    Encode(String),
    #[error("datastore: {0}")]
    Store(#[from] StoreError),
}

impl ModelError {
    /// The record at `key` is not what its kind must be.
    pub fn corrupt(key: &Key, reason: impl std::fmt::Display) -> ModelError {
        ModelError::Corrupt { key: key.path(), reason: reason.to_string() }
    }
}
