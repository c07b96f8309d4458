//! Calico block IPAM: pools, blocks, the allocator over the store trait, the plugin's config and the
//! consistency check.
pub mod admin;
pub mod allocator;
pub mod block;
pub mod check;
pub mod config;
pub mod endpoint;
pub mod pool;
pub mod records;
pub mod resource;

pub use allocator::{Assignment, Ipam, Node, PoolRef};
pub use block::{Block, Now, Owner};
pub use pool::Pool;
