//! `calicoctl` for calico-rs: Calico's command lines over the model crate (`datastore`) and cni-ipam's IPAM
//! domain. `args` reads the command line, `config` chooses the datastore, `input` reads resource files,
//! `resource` is the generic read/validate/write of every kind, `dryrun` tries a file's writes first,
//! `output` prints as calicoctl prints, `commands` has one module per command.
pub mod args;
pub mod commands;
pub mod config;
pub mod dryrun;
pub mod error;
pub mod input;
pub mod log;
pub mod output;
pub mod resource;

pub use error::CtlError;
