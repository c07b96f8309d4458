//! The crate's one error type. Every variant is printed as calicoctl prints its errors (one line on stderr,
//! exit 1); the variants say what went wrong so the commands can report each the way calicoctl does.
use cni_ipam::IpamError;
use datastore::store::StoreError;
use datastore::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A command line calicoctl would refuse (unknown command or flag, missing argument).
    #[error("{0}")]
    Usage(String),
    /// The datastore configuration (config file or environment) is unusable.
    #[error("{0}")]
    Config(String),
    /// An input file that cannot be read or parsed, or that holds no resource (calicoctl: "failed to execute
    /// command: ...").
    #[error("{0}")]
    Input(String),
    /// A resource the model refuses; the message names the resource and the field.
    #[error("{0}")]
    Invalid(String),
    #[error("resource does not exist: {0}")]
    NotFound(String),
    #[error("resource already exists: {0}")]
    Exists(String),
    /// A write raced another writer or carried a stale `metadata.resourceVersion`.
    #[error("update conflict: {0}")]
    Conflict(String),
    /// A verb calico-rs leaves out on purpose (the message says why and what to use).
    #[error("{0}")]
    Unsupported(String),
    /// A command's summary of what failed (calicoctl's "failed to apply ...", "hit error: ...").
    #[error("{0}")]
    Failed(String),
    /// `ipam check` found problems: it has said which; the exit code says that there are some.
    #[error("")]
    ProblemsFound,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Ipam(#[from] IpamError),
}

impl From<ModelError> for CtlError {
    fn from(e: ModelError) -> CtlError {
        match e {
            ModelError::Store(s) => CtlError::Store(s),
            other => CtlError::Invalid(other.to_string()),
        }
    }
}

impl CtlError {
    /// The datastore could not be reached (as opposed to refusing a request).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CtlError::Store(StoreError::Io { .. }) | CtlError::Ipam(IpamError::Store(StoreError::Io { .. })))
    }
}

pub type Result<T> = std::result::Result<T, CtlError>;
