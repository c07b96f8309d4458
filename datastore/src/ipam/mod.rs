//! The IPAM records as Calico stores them (`/calico/ipam/v2/...`): allocation blocks with their attributes,
//! handles, host affinities, the IPAM config, plus calico-rs's three indexes.
pub mod block;
pub mod records;

pub use block::{Attribute, Block, Now, Owner};
