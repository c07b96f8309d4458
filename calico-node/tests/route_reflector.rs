//! From the full mesh to route reflectors without an outage, as Calico documents it: node 1 gets a cluster ID
//! and the `route-reflector=true` label, a BGPPeer `peer-with-route-reflectors` (every node with the
//! reflectors) comes up, and only then is the mesh turned off. A ping every 10 ms between pods on two
//! non-reflector nodes runs through all of it and loses nothing, and the clients' routes keep the
//! originating node as next hop (a reflector does not put itself in the path). Then a second reflector with
//! the same cluster ID; the first one crashes (agent and BIRD killed): the clients' routes stay, through the
//! second. Needs root, bird2 and etcd.
mod support;

use serde_json::json;
use std::time::Duration;
use support::*;
use testbed::agent::Agent;
use testbed::cluster::{Cluster, Pod, Spec};
use testbed::ping::Pinger;

const CLUSTER_ID: &str = "244.0.0.1";

/// Makes node `name` a route reflector: its cluster ID, then the label the BGPPeer selects.
fn make_reflector(cluster: &Cluster, name: &str) {
    let patch = json!({"spec": {"bgp": {"routeReflectorClusterID": CLUSTER_ID}}}).to_string();
    cluster.calicoctl_ok(&["patch", "node", name, "-p", &patch], "");
    cluster.calicoctl_ok(&["label", "node", name, "route-reflector=true"], "");
}

/// The paths BIRD on `agent`'s node has for `prefix`, one line each (`... [<protocol> <since> from <ip>] ...`).
fn bird_paths(agent: &Agent, prefix: &str) -> Vec<String> {
    let text = agent.birdc(&["show", "route", prefix]).unwrap_or_default();
    text.lines().filter(|l| l.contains(" [")).map(str::to_string).collect()
}

#[test]
fn mesh_to_route_reflectors_without_losing_a_packet() {
    if !available("mesh_to_route_reflectors_without_losing_a_packet") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(4).with_etcd());
    cluster.apply(&[pool("bed", "10.244.0.0/16", 26)]);
    let (mut agents, _) = start_agents(&cluster, &[]);
    for a in &mut agents {
        a.wait_sessions(3, TIMEOUT);
    }
    let conf = cluster.calico_conf();
    let pods: Vec<Pod> = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web")).collect();
    let blocks: Vec<String> = pods.iter().map(|p| block_of(&p.ip)).collect();
    for (j, b) in blocks.iter().enumerate() {
        wait_block_everywhere(&cluster, j, b);
    }
    ping_all(&pods.iter().enumerate().collect::<Vec<_>>());
    let ips: Vec<String> = cluster.nodes.iter().map(|n| n.ip.clone()).collect();
    let node = |i: usize| session_name("Node", &ips[i]);
    let mesh = |i: usize| session_name("Mesh", &ips[i]);
    // The clients' routes to each other's blocks: via the originating node, whoever reflected them.
    let clients_route_directly = |cluster: &Cluster, clients: &[usize]| {
        for &i in clients {
            for &j in clients.iter().filter(|j| **j != i) {
                cluster.nodes[i].wait_route(&blocks[j], &format!("via {} dev eth0 proto bird", ips[j]), TIMEOUT);
            }
        }
    };

    // 1. Mesh to one reflector, pinging from node 3's pod to node 4's all the while.
    // Nodes 3 and 4's route and neighbour changes meanwhile are kept for the message if a ping is lost.
    let ping_started = datastore::resources::metadata::rfc3339_now();
    let pinger = Pinger::start(&pods[2].netns, &pods[3].ip, Duration::from_millis(10));
    let (((), on3), on4) = cluster.nodes[3].monitored(&["ip", "-ts", "monitor", "route", "neigh"], || {
        cluster.nodes[2].monitored(&["ip", "-ts", "monitor", "route", "neigh"], || {
            make_reflector(&cluster, "node-1");
            cluster.apply(&[bgp_peer(
                "peer-with-route-reflectors",
                // A short restart time, so a crashed reflector's routes go stale and leave within the test (below).
                json!({"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'", "maxRestartTime": "5s"}),
            )]);
            agents[0].wait_session_set(&[&node(1), &node(2), &node(3)], TIMEOUT);
            for (i, a) in agents.iter_mut().enumerate().skip(1) {
                let mut want: Vec<String> = (1..4).filter(|j| *j != i).map(mesh).collect();
                want.push(node(0));
                a.wait_session_set(&want.iter().map(String::as_str).collect::<Vec<_>>(), TIMEOUT);
            }
            // The reflector has left the mesh: its block reaches the others through the BGPPeer now.
            wait_block_everywhere(&cluster, 0, &blocks[0]);
            cluster.calicoctl_ok(&["patch", "bgpconfiguration", "default", "-p", r#"{"spec":{"nodeToNodeMeshEnabled":false}}"#], "");
            for a in agents.iter_mut().skip(1) {
                a.wait_session_set(&[&node(0)], TIMEOUT);
            }
            clients_route_directly(&cluster, &[1, 2, 3]);
            for b in [2, 3] {
                let other = 5 - b;
                route_holds(&cluster.nodes[b], &blocks[other], &format!("via {} dev eth0 proto bird", ips[other]), Duration::from_secs(2));
            }
        })
    });
    let count = pinger.finish();
    eprintln!(
        "FIGURE mesh -> route reflector: ping every 10 ms node 3 -> node 4: {} sent, {} received over {:.1} s",
        count.sent,
        count.received,
        count.elapsed.as_secs_f64()
    );
    assert!(
        count.lost.is_empty() && count.sent > 100,
        "lost during the switch to a route reflector: {count:?} (ping started {ping_started}, one every 10 ms)\nnode-3:\n{on3}\nnode-4:\n{on4}"
    );
    for (i, p) in bird_paths(&agents[2], &blocks[3]).iter().enumerate() {
        assert!(p.contains(&format!("[{} ", node(0))), "node 3's path {i} to node 4's block is not from the reflector: {p}");
    }
    ping_all(&pods.iter().enumerate().collect::<Vec<_>>());

    // 2. A second reflector in the same cluster; then the first one crashes.
    make_reflector(&cluster, "node-2");
    agents[0].wait_session_set(&[&node(1), &node(2), &node(3)], TIMEOUT);
    agents[1].wait_session_set(&[&node(0), &node(2), &node(3)], TIMEOUT);
    for i in [2, 3] {
        agents[i].wait_session_set(&[&node(0), &node(1)], TIMEOUT);
    }
    clients_route_directly(&cluster, &[2, 3]);
    for (i, other) in [(2, 3), (3, 2)] {
        testbed::wait_for(&format!("node {}'s path to node {}'s block from node 2", i + 1, other + 1), TIMEOUT, || {
            let paths = bird_paths(&agents[i], &blocks[other]);
            if paths.iter().any(|p| p.contains(&format!("[{} ", node(1)))) {
                Ok(())
            } else {
                Err(format!("{paths:?}"))
            }
        });
    }
    let pinger = Pinger::start(&pods[2].netns, &pods[3].ip, Duration::from_millis(10));
    let bird = agents[0].bird_pid().expect("node 1's BIRD");
    agents[0].kill();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(bird), nix::sys::signal::Signal::SIGKILL).expect("kill node 1's BIRD");
    for i in [2, 3] {
        testbed::wait_for(&format!("node {}'s session with the dead reflector down", i + 1), TIMEOUT, || match agents[i].session(&node(0)) {
            Some(s) if s.starts_with("Established") => Err(s),
            other => Ok(other),
        });
    }
    // Its routes stay (stale, graceful restart) for the 5 s restart time, then only the second reflector's.
    for (i, other) in [(2, 3), (3, 2)] {
        testbed::wait_for(&format!("node {}'s paths to node {}'s block only from node 2", i + 1, other + 1), TIMEOUT, || {
            let paths = bird_paths(&agents[i], &blocks[other]);
            if !paths.is_empty() && paths.iter().all(|p| p.contains(&format!("[{} ", node(1)))) {
                Ok(())
            } else {
                Err(format!("{paths:?}"))
            }
        });
    }
    clients_route_directly(&cluster, &[2, 3]);
    route_holds(&cluster.nodes[2], &blocks[3], &format!("via {} dev eth0 proto bird", ips[3]), Duration::from_secs(1));
    let count = pinger.finish();
    eprintln!(
        "FIGURE a reflector of two crashes: ping every 10 ms node 3 -> node 4: {} sent, {} received over {:.1} s",
        count.sent,
        count.received,
        count.elapsed.as_secs_f64()
    );
    assert!(count.lost.is_empty(), "lost when a reflector crashed: {count:?}");
    // The dead node's block goes from the clients once its stale routes have expired.
    for i in 1..4 {
        cluster.nodes[i].wait_no_route(&blocks[0], TIMEOUT);
    }
    ping_all(&[(1, &pods[1]), (2, &pods[2]), (3, &pods[3])]);
}
