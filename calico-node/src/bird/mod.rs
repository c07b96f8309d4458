//! BIRD 2's configuration from the datastore: a `BgpSnapshot` (the resources, this node's affinities, the
//! agent's settings) is planned into a `BirdConfig` (`plan`, pure: the sessions in `peers`, the rest in
//! `plan`), which `render` prints as one BIRD 2 file. `secrets` resolves BGP passwords from a directory.
mod cluster;
pub mod config;
pub mod error;
mod peers;
pub mod plan;
pub mod render;
pub mod secrets;
pub mod snapshot;

pub use config::*;
pub use error::PlanError;
pub use plan::plan;
pub use render::render;
pub use snapshot::{AgentSettings, BgpSnapshot, BlockAffinity, RouterIdSource, SecretRef};
