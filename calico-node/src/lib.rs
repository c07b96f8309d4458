//! The calico-node agent: one per node, it makes the node a BGP router that announces the node's IP blocks
//! with BIRD 2. `bird` turns a datastore snapshot into BIRD's configuration; `birdc` speaks to BIRD's control
//! socket; `state` is the file the agent leaves for `calicoctl node status`, `status` reads BIRD's sessions for it.
pub mod bird;
pub mod birdc;
pub mod state;
pub mod status;
