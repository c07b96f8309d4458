//! calico-node on a cluster bed over etcd, with real BIRD: the full mesh comes up by itself, each node's
//! block reaches every other node's kernel as `via <node> proto bird`, its own as a blackhole, and pods on
//! different nodes ping each other; a block claimed later reaches every node, and one released (its pool
//! deleted, which takes the empty block and its affinity) is withdrawn from every node. Needs root, bird2 and
//! etcd (scripts/deps.sh --all).
mod support;

use std::time::{Duration, Instant};
use support::*;
use testbed::cluster::{Cluster, Pod, Spec};

#[test]
fn three_node_mesh_routes_pods_across_nodes() {
    if !available("three_node_mesh_routes_pods_across_nodes") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(3).with_etcd());
    cluster.ipam(&["pool", "add", "--name", "bed", "--cidr", "10.244.0.0/16", "--block-size", "26"]);
    let (mut agents, _) = start_agents(&cluster, &[]);
    for a in &mut agents {
        a.wait_sessions(2, TIMEOUT);
    }
    let conf = cluster.calico_conf();
    let pods: Vec<Pod> = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web")).collect();
    for (j, p) in pods.iter().enumerate() {
        wait_block_everywhere(&cluster, j, &block_of(&p.ip));
    }
    ping_all(&pods.iter().enumerate().collect::<Vec<_>>());

    // SIGTERM: the agent stops its BIRD (which must not have inherited the agent's blocked SIGTERM) and
    // exits 0 at once; the routes BIRD programmed stay (`persist`).
    let bird = agents[0].bird_pid().expect("node 1's BIRD");
    let t = Instant::now();
    let status = agents[0].stop();
    assert!(status.is_some_and(|s| s.success()), "calico-node on node 1 ended with {status:?}: {}", agents[0].log());
    assert!(t.elapsed() < Duration::from_secs(3), "calico-node took {:?} to stop", t.elapsed());
    assert!(!std::path::Path::new(&format!("/proc/{bird}")).exists(), "BIRD {bird} outlived its agent");
    assert!(agents[0].log().contains("Shutdown completed"), "BIRD did not shut down on SIGTERM: {}", agents[0].log());
    cluster.nodes[0].wait_route(&block_of(&pods[1].ip), &format!("via {} dev eth0 proto bird", cluster.nodes[1].ip), TIMEOUT);
}

#[test]
fn five_node_mesh_announces_new_blocks_and_withdraws_released_ones() {
    if !available("five_node_mesh_announces_new_blocks_and_withdraws_released_ones") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(5).with_etcd());
    cluster.apply(&[pool("bed", "10.244.0.0/16", 26)]);
    let (mut agents, started) = start_agents(&cluster, &[]);
    let ready = started.elapsed();
    for a in &mut agents {
        a.wait_sessions(4, TIMEOUT);
    }
    let established = started.elapsed();
    eprintln!(
        "FIGURE 5-node mesh: agents ready {:.0} ms, all 20 sessions Established {:.0} ms after the first agent started",
        ready.as_secs_f64() * 1e3,
        established.as_secs_f64() * 1e3
    );

    let conf = cluster.calico_conf();
    let pods: Vec<Pod> = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web")).collect();
    for (j, p) in pods.iter().enumerate() {
        wait_block_everywhere(&cluster, j, &block_of(&p.ip));
    }
    ping_all(&pods.iter().enumerate().collect::<Vec<_>>());

    // A new block: a second pool, and a pod on node 3 that may only use it, so node 3 claims a block there.
    cluster.apply(&[pool("extra", "10.245.0.0/24", 26)]);
    let extra = conf_with_pools(&cluster, &["extra"]);
    let t = Instant::now();
    let pod = cluster.nodes[2].add_pod(&extra, "extra");
    let block = block_of(&pod.ip);
    assert!(block.starts_with("10.245.0."), "{block}");
    wait_block_everywhere(&cluster, 2, &block);
    eprintln!("FIGURE 5-node mesh: a newly claimed block in every kernel {:.0} ms after the ADD began", t.elapsed().as_secs_f64() * 1e3);
    for (i, from) in pods.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert!(testbed::ping(&from.netns, &pod.ip, TIMEOUT), "pod on node {} cannot reach {} in the new block", i + 1, pod.ip);
    }

    // Released: the pod goes (the empty block stays affine to node 3, and announced), then the pool, which
    // takes the empty block and its affinity with it.
    cluster.nodes[2].del_pod(&extra, &pod).ok();
    wait_block_everywhere(&cluster, 2, &block);
    let t = Instant::now();
    cluster.calicoctl_ok(&["delete", "ippool", "extra"], "");
    for n in &cluster.nodes {
        n.wait_no_route(&block, TIMEOUT);
    }
    eprintln!("FIGURE 5-node mesh: a released block gone from every kernel {:.0} ms after the pool's delete", t.elapsed().as_secs_f64() * 1e3);
    // The rest is untouched: the first blocks are still everywhere, sessions stay up.
    for (j, p) in pods.iter().enumerate() {
        wait_block_everywhere(&cluster, j, &block_of(&p.ip));
    }
    for a in &mut agents {
        a.wait_sessions(4, TIMEOUT);
    }
    ping_all(&pods.iter().enumerate().collect::<Vec<_>>());
}

#[test]
fn nodes_in_their_own_ases_mesh_over_ebgp() {
    if !available("nodes_in_their_own_ases_mesh_over_ebgp") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(3).with_etcd());
    cluster.apply(&[pool("bed", "10.244.0.0/16", 26)]);
    let ases = ["64601", "64602", "64603"];
    let mut agents: Vec<_> = cluster.nodes.iter().zip(ases).map(|(n, asn)| testbed::agent::Agent::start(&cluster, n, &[("AS", asn)])).collect();
    for a in &mut agents {
        a.wait_ready(TIMEOUT);
    }
    for a in &mut agents {
        a.wait_sessions(2, TIMEOUT);
    }
    // Each mesh session is external: the peer's AS is its node's.
    for (i, a) in agents.iter().enumerate() {
        for (j, n) in cluster.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
            let text = a.birdc(&["show", "protocols", "all", &session_name("Mesh", &n.ip)]).expect("birdc");
            let field = |key: &str| text.lines().find_map(|l| l.trim().strip_prefix(key)).map(str::trim).unwrap_or_default().to_string();
            assert_eq!((field("Neighbor AS:"), field("Local AS:")), (ases[j].to_string(), ases[i].to_string()), "{text}");
        }
    }
    let conf = cluster.calico_conf();
    let pods: Vec<Pod> = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web")).collect();
    for (j, p) in pods.iter().enumerate() {
        let block = block_of(&p.ip);
        wait_block_everywhere(&cluster, j, &block);
        // The best path is the owner's own announcement (AS path of one), not the one through the third node.
        for (i, a) in agents.iter().enumerate().filter(|(i, _)| *i != j) {
            let best = a.birdc(&["show", "route", &block, "primary", "all"]).expect("birdc");
            let path = best.lines().find(|l| l.contains("BGP.as_path:")).unwrap_or_default();
            assert_eq!(path.split(':').nth(1).map(str::trim), Some(ases[j]), "node {}'s best path to node {}'s block: {best}", i + 1, j + 1);
        }
    }
    ping_all(&pods.iter().enumerate().collect::<Vec<_>>());
}
