//! Everything that can go wrong in cni-calico, each with the CNI error code it is reported with.
use common::cni::{code, CniError};
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Cni(#[from] CniError),
    #[error("container network namespace {path}: {source}")]
    Netns { path: String, source: io::Error },
    #[error("{what}: {source}")]
    Kernel { what: String, source: io::Error },
    /// `owner`: the container ID the existing interface is marked with, if any.
    #[error("interface {ifname} already exists in the container{}", owner.as_ref().map(|o| format!(" (attachment of container {o})")).unwrap_or_default())]
    IfExists { ifname: String, owner: Option<String> },
    /// Wiring a pod failed for a reason that is not a kernel error (those are `Kernel`).
    #[error("{0}")]
    Setup(String),
    #[error("route {dst} already exists for an interface other than {ours}: {other}")]
    RouteConflict { dst: String, ours: String, other: String },
    #[error("CHECK failed: {0}")]
    Check(String),
}

impl From<Error> for CniError {
    fn from(e: Error) -> CniError {
        match e {
            Error::Cni(c) => c,
            Error::Netns { ref source, .. } if source.kind() == io::ErrorKind::NotFound => CniError::new(code::UNKNOWN_CONTAINER, e.to_string()),
            Error::Netns { .. } => CniError::new(code::INVALID_NETNS, e.to_string()),
            other => CniError::internal(other.to_string()),
        }
    }
}

/// Names the operation behind a kernel error.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Kernel { what: what(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ADD's own failures read like: never "CHECK failed", which only CHECK reports.
    #[test]
    fn add_failures_do_not_read_as_check_failures() {
        for e in [
            Error::Setup("veth eth0 reports no peer".into()),
            Error::IfExists { ifname: "eth0".into(), owner: Some("abc".into()) },
            Error::RouteConflict { dst: "10.0.0.1/32".into(), ours: "cali1".into(), other: "up0".into() },
        ] {
            let msg = CniError::from(e).msg;
            assert!(!msg.contains("CHECK"), "{msg}");
        }
        assert!(CniError::from(Error::Check("host route missing".into())).msg.starts_with("CHECK failed"));
        let exists = CniError::from(Error::IfExists { ifname: "eth0".into(), owner: Some("abc".into()) }).msg;
        assert_eq!(exists, "interface eth0 already exists in the container (attachment of container abc)");
    }
}
