//! The node agent's routing half, what Calico's Felix does for the IP pools: the route plan (`plan`, pure),
//! its application to the kernel (`reconcile`, `device`), natOutgoing (`nat`, nftables) and the pod MTU
//! (`mtu`). The agent feeds it the datastore's nodes, pools and blocks (`inputs`) and calls `plan::plan`,
//! `reconcile::apply`, `nat::apply` and `mtu::write_mtu_file` on every change; it has no loop of its own.
pub mod device;
pub mod error;
pub mod inputs;
pub mod mtu;
pub mod nat;
pub mod plan;
pub mod reconcile;

pub use error::Error;
pub use inputs::{Backend, BlockInfo, NodeInfo, Vtep};
pub use plan::{plan, Inputs, Plan, Target, VxlanConfig};
pub use reconcile::{apply, Options, Report};
