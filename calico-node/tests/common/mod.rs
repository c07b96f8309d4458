//! What the BGP topology tests share: the bed's prerequisites, agents on every node, the block of a pod,
//! pod-to-pod pings and route checks in every node's kernel.
#![allow(dead_code)] // each test file uses its own part
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testbed::agent::Agent;
use testbed::cluster::{Cluster, Pod};

pub const TIMEOUT: Duration = Duration::from_secs(30);

pub fn available(test: &str) -> bool {
    testbed::bird::available(test) && testbed::etcd::available(test)
}

/// The block of `size` holding an IPv4 address.
pub fn block_of(ip: &str, size: u8) -> String {
    let a: std::net::Ipv4Addr = ip.parse().expect("pod IPv4");
    let mask = if size == 0 { 0 } else { u32::MAX << (32 - u32::from(size)) };
    format!("{}/{size}", std::net::Ipv4Addr::from(u32::from(a) & mask))
}

/// An IPPool resource (no encapsulation, as the bed routes natively).
pub fn pool(name: &str, cidr: &str, block_size: u8) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
           "spec": {"cidr": cidr, "blockSize": block_size, "ipipMode": "Never", "vxlanMode": "Never", "natOutgoing": false}})
}

pub fn bgp_peer(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec})
}

pub fn bgp_configuration(spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"}, "spec": spec})
}

/// Starts an agent on every node with `env`, then waits until each is ready; returns them and the time from
/// the first start to the last ready.
pub fn start_agents(cluster: &Cluster, env: &[(&str, &str)]) -> (Vec<Agent>, Instant) {
    let started = Instant::now();
    let mut agents: Vec<Agent> = cluster.nodes.iter().map(|n| Agent::start(cluster, n, env)).collect();
    for a in &mut agents {
        a.wait_ready(TIMEOUT);
    }
    (agents, started)
}

/// `cni-calico` conf restricted to the pools named (`ipam.ipv4_pools`).
pub fn conf_with_pools(cluster: &Cluster, pools: &[&str]) -> Value {
    let mut conf = cluster.calico_conf();
    conf["ipam"]["ipv4_pools"] = json!(pools);
    conf
}

/// Every pod reaches every other pod.
pub fn ping_all(pods: &[(usize, &Pod)]) {
    for (i, from) in pods {
        for (j, to) in pods {
            if i != j {
                assert!(testbed::ping(&from.netns, &to.ip, TIMEOUT), "pod on node {} cannot reach pod {} on node {}", i + 1, to.ip, j + 1);
            }
        }
    }
}

/// Waits until `block` (of node index `owner`) is a blackhole on its owner and `via <owner> dev eth0 proto
/// bird` on every other node; returns the longest wait.
pub fn wait_block_everywhere(cluster: &Cluster, block: &str, owner: usize) -> Duration {
    let mut longest = Duration::ZERO;
    for (i, n) in cluster.nodes.iter().enumerate() {
        let expect = if i == owner { "blackhole".to_string() } else { format!("via {} dev eth0 proto bird", cluster.nodes[owner].ip) };
        let (_, took) = n.wait_route(block, &expect, TIMEOUT);
        longest = longest.max(took);
    }
    longest
}

/// Asserts that the route to `prefix` on `node` keeps containing `expect` for `window` (checked every 10 ms).
pub fn route_holds(node: &testbed::cluster::ClusterNode, prefix: &str, expect: &str, window: Duration) {
    let start = Instant::now();
    while start.elapsed() < window {
        let r = node.route(prefix);
        assert!(r.lines().any(|l| l.contains(expect)), "{prefix} on {} changed: {r:?} (expected {expect:?})", node.name);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A protocol name of a session with `ip` (`Mesh_10_250_0_2`).
pub fn session_name(prefix: &str, ip: &str) -> String {
    format!("{prefix}_{}", ip.replace(['.', ':'], "_"))
}
