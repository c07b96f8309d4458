//! The calico-node agent: one per node, it makes the node a BGP router that announces the node's IP blocks
//! with BIRD 2, and programs what Felix programs for encapsulated pools. `settings` reads the environment,
//! `autodetect` finds the node's address, `register` writes its Node resource, `agent` is the loop that
//! follows the datastore, `bird` turns a snapshot into BIRD's configuration, `supervisor` runs BIRD, `birdc`
//! speaks to BIRD's control socket, `routing` drives the `dataplane` crate, `tunnel` keeps the VXLAN tunnel address, `state` is the file the agent
//! leaves for `calicoctl node status`, and `status` reads BIRD's sessions for it.
pub mod agent;
pub mod autodetect;
pub mod bird;
pub mod birdc;
pub mod health;
pub mod pools;
pub mod register;
pub mod routing;
pub mod settings;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod tunnel;
