//! Calico's data model, shared by every binary: the record `store` (a trait, the local file store and etcd v3),
//! the `projectcalico.org/v3` `resources` (envelope, kinds, each kind's spec and validation) and the `ipam`
//! records (blocks, handles, affinities, the IPAM config and calico-rs's indexes), each defined once.
pub mod config;
pub mod error;
pub mod ipam;
pub mod resources;
pub mod store;

pub use error::ModelError;
