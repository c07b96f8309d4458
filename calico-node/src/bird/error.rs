//! Why no BIRD config could be planned: a resource that does not make sense (it slipped into the datastore
//! around calicoctl), this node missing, or a setting of the agent's. Each names what it is about, so the
//! agent can report it and keep the last good config running.
use datastore::resources::FieldError;
use datastore::ModelError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A resource breaks Calico's rules, or one BIRD would refuse.
    #[error("{kind} {name:?}: {field}: {reason}")]
    Resource { kind: &'static str, name: String, field: String, reason: String },
    /// A stored document that is not a resource at all.
    #[error("{0}")]
    Document(String),
    #[error("node {0:?} is not in the datastore (no Node resource of that name)")]
    NoSuchNode(String),
    #[error("node {0:?} has no IPv4 address (spec.bgp.ipv4Address) for BIRD's router id: give the agent one (CALICO_ROUTER_ID=<IPv4> or hash)")]
    NoRouterId(String),
    /// A resolved secret BIRD cannot carry.
    #[error("secret {name}/{key}: {reason}")]
    Secret { name: String, key: String, reason: String },
    #[error("agent setting {setting}: {reason}")]
    Setting { setting: &'static str, reason: String },
}

impl PlanError {
    pub fn resource(kind: &'static str, name: &str, e: FieldError) -> PlanError {
        PlanError::Resource { kind, name: name.to_string(), field: e.field, reason: e.reason }
    }

    pub fn field(kind: &'static str, name: &str, field: &str, reason: impl Into<String>) -> PlanError {
        PlanError::Resource { kind, name: name.to_string(), field: field.to_string(), reason: reason.into() }
    }
}

impl From<ModelError> for PlanError {
    fn from(e: ModelError) -> PlanError {
        match e {
            ModelError::Invalid { kind, name, field, reason } => PlanError::Resource { kind, name, field, reason },
            other => PlanError::Document(other.to_string()),
        }
    }
}
