//! calico-rs IPAM: the `cni-ipam` plugin's library. `ipam` holds the allocation logic over the store trait,
//! `plugin` the CNI verbs, `cli` the old operator command lines (run through calicoctl now); the binary only
//! dispatches.
pub mod backend;
pub mod cli;
pub mod embedded;
pub mod error;
pub mod ipam;
pub mod plugin;

pub use error::IpamError;
