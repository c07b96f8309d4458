//! cni-calico test helpers over the shared namespace bed (crate `testbed`).
#![allow(dead_code)]
use serde_json::Value;
pub use testbed::*;

/// A network config for cni-calico with Debian's host-local as IPAM.
pub fn host_local_conf(node: &Node, version: &str, ranges: Value) -> Value {
    serde_json::json!({
        "cniVersion": version,
        "name": "crs-test",
        "type": "cni-calico",
        "mtu": 1400,
        "log_level": "debug",
        "log_file_path": node.path("cni.log"),
        "ipam": { "type": "host-local", "ranges": ranges, "dataDir": node.path("ipam") }
    })
}

pub fn v4_range(subnet: &str) -> Value {
    serde_json::json!([[{ "subnet": subnet }]])
}

/// The config a runtime sends for DEL/CHECK: the ADD config plus the ADD result as prevResult.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}
