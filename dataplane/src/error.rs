//! The crate's one error type: each variant says what failed and carries the kernel's or the tool's answer.
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request failed; `what` names the request (`ip` form).
    #[error("{what}: {source}")]
    Kernel { what: String, source: io::Error },
    /// No interface holds this node's address, so there is no uplink to tunnel over or route by.
    #[error("no interface has this node's address {0}: no uplink")]
    NoUplink(std::net::IpAddr),
    /// `nft` refused the ruleset or could not run.
    #[error("nft -f: {0}")]
    Nft(String),
    /// Writing the MTU file failed.
    #[error("writing the MTU file {path}: {source}")]
    MtuFile { path: PathBuf, source: io::Error },
    /// A setting the agent read is not one Calico knows; `field` names it.
    #[error("{field}: {reason}")]
    Config { field: String, reason: String },
}

/// Wraps an `io::Error` of a netlink request with the request's description.
pub(crate) trait Ctx<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Kernel { what: what(), source })
    }
}
