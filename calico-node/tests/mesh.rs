//! calico-node on a cluster bed over etcd, with real BIRD: the full mesh comes up by itself, each node's
//! block reaches every other node's kernel as `via <node> proto bird`, its own as a blackhole, and pods on
//! different nodes ping each other. Needs root, bird2 and etcd (scripts/deps.sh --all).
use std::time::Duration;
use testbed::agent::Agent;
use testbed::cluster::{Cluster, Spec};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The /26 holding an IPv4 address.
fn block_of(ip: &str) -> String {
    let a: std::net::Ipv4Addr = ip.parse().expect("pod IPv4");
    format!("{}/26", std::net::Ipv4Addr::from(u32::from(a) & !0x3f))
}

fn available(test: &str) -> bool {
    testbed::bird::available(test) && testbed::etcd::available(test)
}

#[test]
fn three_node_mesh_routes_pods_across_nodes() {
    if !available("three_node_mesh_routes_pods_across_nodes") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(3).with_etcd());
    cluster.ipam(&["pool", "add", "--name", "bed", "--cidr", "10.244.0.0/16", "--block-size", "26"]);
    let mut agents: Vec<Agent> = cluster.nodes.iter().map(|n| Agent::start(&cluster, n, &[])).collect();
    for a in &mut agents {
        a.wait_ready(TIMEOUT);
    }
    for a in &mut agents {
        a.wait_sessions(2, TIMEOUT);
    }
    let conf = cluster.calico_conf();
    let pods: Vec<_> = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web")).collect();
    for (i, n) in cluster.nodes.iter().enumerate() {
        for (j, p) in pods.iter().enumerate() {
            let block = block_of(&p.ip);
            if i == j {
                n.wait_route(&block, "blackhole", TIMEOUT);
            } else {
                n.wait_route(&block, &format!("via {} dev eth0 proto bird", cluster.nodes[j].ip), TIMEOUT);
            }
        }
    }
    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate() {
            if i != j {
                assert!(testbed::ping(&from.netns, &to.ip, TIMEOUT), "pod on node {} cannot reach pod on node {} ({})", i + 1, j + 1, to.ip);
            }
        }
    }
    drop(pods);
}
