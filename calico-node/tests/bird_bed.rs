//! The rendered config run for real: three nodes of the cluster bed, each with BIRD 2 started on
//! `render(plan(snapshot))` for that node (nothing hand-written), form the mesh in both families; each node
//! owns `blackhole <own block> proto bird` and routes the others' blocks via their nodes, and no interface
//! route of BIRD's lands in a kernel; a borrowed /32 (the CNI's route on the borrowing node) reaches every
//! other node, its block's owner included, while a /32 inside the node's own block stays home; a block claimed
//! later reaches the other kernels on reconfigure without resetting a session. Needs root and bird2.
use calico_node::bird::{self, BgpSnapshot, BlockAffinity};
use datastore::ipam::records::Affinity;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use testbed::bird::{bgp_sessions, same_sessions, Bird, Session};
use testbed::cluster::{Cluster, ClusterNode, Spec};

const TIMEOUT: Duration = Duration::from_secs(30);

fn v4_block(n: usize) -> String {
    format!("10.244.{n}.0/26")
}

fn v6_block(n: usize) -> String {
    format!("fd00:244::{n}:0/122")
}

fn resources(cluster: &Cluster) -> Vec<Value> {
    let mut docs = vec![
        json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"}, "spec": {}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "v4"}, "spec": {"cidr": "10.244.0.0/16"}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "v6"}, "spec": {"cidr": "fd00:244::/64"}}),
    ];
    for n in &cluster.nodes {
        docs.push(json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": n.name},
            "spec": {"bgp": {"ipv4Address": format!("{}/24", n.ip), "ipv6Address": format!("{}/64", n.ip6)}}}));
    }
    docs
}

fn config(node: &ClusterNode, docs: &[Value], blocks: &[String]) -> (String, Vec<String>) {
    let mut s = BgpSnapshot::new(node.name.clone());
    for d in docs {
        s.add_document(d).expect("resource");
    }
    for b in blocks {
        s.affinities.push(BlockAffinity { cidr: b.parse().expect("block"), affinity: Affinity::confirmed() });
    }
    let c = bird::plan(&s).expect("plan");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    (bird::render(&c), c.peers.iter().map(|p| p.name.clone()).collect())
}

/// An address as `ip route` prints it.
fn canonical(ip: &str) -> String {
    ip.parse::<std::net::IpAddr>().expect("address").to_string()
}

fn bgp_since(b: &Bird) -> BTreeMap<String, Session> {
    bgp_sessions(b.protocols())
}

#[test]
fn rendered_configs_route_blocks_and_borrowed_addresses_across_a_mesh() {
    let test = "rendered_configs_route_blocks_and_borrowed_addresses_across_a_mesh";
    if !testbed::bird::available(test) {
        return;
    }
    let cluster = Cluster::new(&Spec::nodes(3));
    let docs = resources(&cluster);
    let mut blocks: Vec<Vec<String>> = (1..=3).map(|n| vec![v4_block(n), v6_block(n)]).collect();
    let mut birds = Vec::new();
    let mut sessions = Vec::new();
    for (i, n) in cluster.nodes.iter().enumerate() {
        let (text, names) = config(n, &docs, &blocks[i]);
        assert_eq!(names.len(), 4, "two peers, two families: {names:?}");
        birds.push(Bird::start(n, &text));
        sessions.push(names);
    }
    for (b, names) in birds.iter_mut().zip(&sessions) {
        b.wait_established(&names.iter().map(String::as_str).collect::<Vec<_>>(), TIMEOUT);
    }
    for (i, n) in cluster.nodes.iter().enumerate() {
        for (fam, own) in blocks[i].iter().enumerate() {
            // IPv6 blackholes print as `blackhole <net> dev lo proto bird`.
            let (line, _) = n.wait_route(own, "proto bird", TIMEOUT);
            assert!(line.starts_with(&format!("blackhole {own} ")), "{}: {line}", n.name);
            for (j, other) in cluster.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
                let via = if fam == 0 { other.ip.clone() } else { canonical(&other.ip6) };
                n.wait_route(&blocks[j][fam], &format!("via {via} dev eth0 proto bird"), TIMEOUT);
            }
        }
        for fam in ["-4", "-6"] {
            let bird_routes = n.ip(&[fam, "route", "show", "proto", "bird"]);
            assert_eq!(bird_routes.lines().count(), 3, "{}: only the three blocks are BIRD's: {bird_routes}", n.name);
        }
    }

    // node-2 borrowed 10.244.1.5 from node-1's block, and has a pod of its own block: the CNI's /32 routes.
    let node2 = &cluster.nodes[1];
    // A veth pair stands for each pod's (the kernel here has no dummy links).
    for (link, addr) in [("calihome0", "10.244.2.5/32"), ("caliborrow0", "10.244.1.5/32")] {
        let pod_end = format!("{link}p");
        node2.ip(&["link", "add", link, "type", "veth", "peer", "name", &pod_end]);
        node2.ip(&["link", "set", &pod_end, "up"]);
        node2.ip(&["link", "set", link, "up"]);
        node2.ip(&["route", "add", addr, "dev", link, "scope", "link", "proto", "boot"]);
    }
    for n in [&cluster.nodes[0], &cluster.nodes[2]] {
        n.wait_route("10.244.1.5", &format!("via {} dev eth0 proto bird", node2.ip), TIMEOUT);
        assert_eq!(n.route("10.244.2.5"), "", "{}: a /32 inside its node's block is not announced", n.name);
    }

    // node-1 claims another block: a reconfigure, the other kernels get it, no session restarts.
    let before: Vec<_> = birds.iter().map(bgp_since).collect();
    blocks[0].push("10.244.100.0/26".into());
    let (text, _) = config(&cluster.nodes[0], &docs, &blocks[0]);
    birds[0].reconfigure(&cluster.nodes[0], &text);
    for n in &cluster.nodes[1..] {
        n.wait_route("10.244.100.0/26", &format!("via {} dev eth0 proto bird", cluster.nodes[0].ip), TIMEOUT);
    }
    let after: Vec<_> = birds.iter().map(bgp_since).collect();
    same_sessions(&before, &after).expect("sessions kept across the reconfigure");

    let footprint = cluster.footprint();
    drop(birds);
    drop(cluster);
    footprint.assert_gone();
}
