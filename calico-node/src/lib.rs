//! The calico-node agent: one per node, it makes the node a BGP router that announces the node's IP blocks
//! with BIRD 2. `bird` turns a datastore snapshot into BIRD's configuration.
pub mod bird;
