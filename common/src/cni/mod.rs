//! The CNI protocol: environment, versions, results, errors, the verb dispatcher and delegation.
pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod result;
pub mod skel;
pub mod version;

pub use env::{Command, Env};
pub use error::{code, CniError};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use skel::{Plugin, Request};
