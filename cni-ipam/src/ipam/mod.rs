//! Calico block IPAM over the model's records (crate `datastore`): the allocator, the plugin's config, operator
//! writes and the consistency check.
pub mod admin;
pub mod allocator;
pub mod check;
pub mod config;

pub use allocator::{Assignment, Ipam, Node, PoolRef};
pub use datastore::ipam::{Block, Now, Owner};
pub use datastore::resources::ippool::Pool;
