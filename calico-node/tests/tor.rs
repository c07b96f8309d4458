//! Top-of-rack routers (FRR, each on a host of the bed's fabric, in an AS of its own) peering with the
//! calico-node agents: a global BGPPeer makes every node peer with the ToR, which learns every node's block
//! and whose prefix every node installs; a rack-scoped BGPPeer (`nodeSelector: rack == 'a'`) peers only the
//! labelled nodes with a second ToR; a BGPPeer with a password (`secretKeyRef`, read from the node's
//! /etc/calico/secrets/<secret>/<key>) Establishes with the ToR that has the same TCP MD5 key and never with a
//! wrong one or none, and comes up once the node's secret file is put right. Needs root, bird2, etcd and frr.
mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::*;
use testbed::cluster::{Cluster, Pod, Spec};
use testbed::frr::{self, Frr};

/// How long a session that must not come up is watched.
const NEVER: Duration = Duration::from_secs(8);

fn available_with_frr(test: &str) -> bool {
    available(test) && frr::available(test)
}

/// bgpd.conf of a ToR in `asn` announcing `prefix`, with a neighbour per node address (`password` for each,
/// if given).
fn tor_conf(name: &str, ip: &str, asn: u32, prefix: &str, nodes: &[(&str, Option<&str>)]) -> String {
    let mut c = format!(
        "frr defaults datacenter\nhostname {name}\n!\nrouter bgp {asn}\n bgp router-id {ip}\n no bgp ebgp-requires-policy\n no bgp network import-check\n"
    );
    for (n, pw) in nodes {
        c.push_str(&format!(" neighbor {n} remote-as 64512\n"));
        if let Some(pw) = pw {
            c.push_str(&format!(" neighbor {n} password {pw}\n"));
        }
    }
    c.push_str(&format!(" !\n address-family ipv4 unicast\n  network {prefix}\n exit-address-family\n"));
    c
}

/// The next hops of FRR's paths to `prefix`.
fn frr_next_hops(frr: &Frr, prefix: &str) -> Vec<String> {
    let t = frr.bgp_table();
    let paths = t["routes"][prefix].as_array().cloned().unwrap_or_default();
    paths.iter().filter_map(|p| p["nexthops"][0]["ip"].as_str().map(str::to_string)).collect()
}

#[test]
fn tor_peers_learn_every_block_and_rack_peers_only_their_rack() {
    if !available_with_frr("tor_peers_learn_every_block_and_rack_peers_only_their_rack") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(3).with_etcd());
    let ips: Vec<String> = cluster.nodes.iter().map(|n| n.ip.clone()).collect();
    let all: Vec<(&str, Option<&str>)> = ips.iter().map(|ip| (ip.as_str(), None)).collect();
    let (tor, tor_b) = ("192.0.2.0/24", "203.0.113.0/24");
    let tor_ip = cluster.add_host("tor", 0, &frr::DIRS).ip.clone();
    let tor_b_ip = cluster.add_host("tor-b", 0, &frr::DIRS).ip.clone();
    let mut frr_a = Frr::start(&cluster.hosts[0], &tor_conf("tor", &tor_ip, 65000, tor, &all));
    // The second ToR would take any node: only the BGPPeer decides who peers.
    let mut frr_b = Frr::start(&cluster.hosts[1], &tor_conf("tor-b", &tor_b_ip, 65001, tor_b, &all));

    cluster.apply(&[pool("bed", "10.244.0.0/16", 26), bgp_peer("tor", json!({"peerIP": tor_ip, "asNumber": 65000}))]);
    let (mut agents, started) = start_agents(&cluster, &[]);
    let global = session_name("Global", &tor_ip);
    for (i, a) in agents.iter_mut().enumerate() {
        let mut want: Vec<String> = (0..3).filter(|j| *j != i).map(|j| session_name("Mesh", &ips[j])).collect();
        want.push(global.clone());
        a.wait_session_set(&want.iter().map(String::as_str).collect::<Vec<_>>(), TIMEOUT);
    }
    for ip in &ips {
        frr_a.wait_established(ip, TIMEOUT);
    }
    eprintln!("FIGURE ToR: 3 nodes and the ToR all Established {:.0} ms after the first agent started", started.elapsed().as_secs_f64() * 1e3);

    let conf = cluster.calico_conf();
    let pods: Vec<Pod> = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web")).collect();
    for (j, p) in pods.iter().enumerate() {
        let block = block_of(&p.ip);
        frr_a.wait_prefix(&block, TIMEOUT);
        // With the mesh on, every node announces every block to the ToR (calico#3810); one path is the owner's.
        testbed::wait_for(&format!("a path to {block} via its owner on the ToR"), TIMEOUT, || {
            let hops = frr_next_hops(&frr_a, &block);
            if hops.contains(&ips[j]) {
                Ok(())
            } else {
                Err(format!("{hops:?}"))
            }
        });
        // zebra installs it; the ToR reaches the pod (through whichever node it picked).
        cluster.hosts[0].wait_route(&block, "proto bgp", TIMEOUT);
        assert!(testbed::ping(&cluster.hosts[0].netns, &p.ip, TIMEOUT), "the ToR cannot reach pod {} on node {}", p.ip, j + 1);
    }
    for n in &cluster.nodes {
        n.wait_route(tor, &format!("via {tor_ip} dev eth0 proto bird"), TIMEOUT);
    }

    // A rack: nodes 1 and 2 are labelled and peer with the second ToR; node 3 does not.
    for n in ["node-1", "node-2"] {
        cluster.calicoctl_ok(&["label", "node", n, "rack=a"], "");
    }
    cluster.apply(&[bgp_peer("rack-a-tor", json!({"nodeSelector": "rack == 'a'", "peerIP": tor_b_ip, "asNumber": 65001}))]);
    let rack = session_name("Node", &tor_b_ip);
    for (i, a) in agents.iter_mut().enumerate().take(2) {
        let mut want: Vec<String> = (0..3).filter(|j| *j != i).map(|j| session_name("Mesh", &ips[j])).collect();
        want.extend([global.clone(), rack.clone()]);
        a.wait_session_set(&want.iter().map(String::as_str).collect::<Vec<_>>(), TIMEOUT);
        frr_b.wait_established(&ips[i], TIMEOUT);
        cluster.nodes[i].wait_route(tor_b, &format!("via {tor_b_ip} dev eth0 proto bird"), TIMEOUT);
    }
    let start = Instant::now();
    while start.elapsed() < NEVER {
        let state = frr_b.neighbor_state(&ips[2]).unwrap_or_default();
        assert_ne!(state, "Established", "node 3 (no rack label) peered with the rack's ToR");
        assert!(agents[2].session(&rack).is_none(), "node 3 has a session {rack}");
        assert_eq!(cluster.nodes[2].route(tor_b), "", "node 3 routes the rack ToR's prefix");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The rack ToR learns the blocks from its rack's nodes only.
    for p in &pods {
        let block = block_of(&p.ip);
        frr_b.wait_prefix(&block, TIMEOUT);
        let hops = frr_next_hops(&frr_b, &block);
        assert!(!hops.is_empty() && hops.iter().all(|h| h == &ips[0] || h == &ips[1]), "rack ToR's next hops for {block}: {hops:?}");
    }
}

#[test]
fn md5_passwords_from_the_secret_dir_establish_only_when_they_match() {
    if !available_with_frr("md5_passwords_from_the_secret_dir_establish_only_when_they_match") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(3).with_etcd());
    let ips: Vec<String> = cluster.nodes.iter().map(|n| n.ip.clone()).collect();
    let tor_ip = cluster.add_host("tor", 0, &frr::DIRS).ip.clone();
    let keyed: Vec<(&str, Option<&str>)> = ips.iter().map(|ip| (ip.as_str(), Some("s3cret-Tor"))).collect();
    let mut frr = Frr::start(&cluster.hosts[0], &tor_conf("tor", &tor_ip, 65000, "192.0.2.0/24", &keyed));
    // Node 1 has the ToR's key, node 2 another, node 3 none at all (its session goes without a password).
    for (i, pw) in [(0, Some("s3cret-Tor\n")), (1, Some("wrong\n")), (2, None)] {
        if let Some(pw) = pw {
            let file = cluster.nodes[i].path("/etc/calico/secrets/bgp-secrets/tor");
            std::fs::create_dir_all(file.parent().expect("secret dir")).expect("make the secret dir");
            std::fs::write(&file, pw).expect("write the secret");
        }
    }
    cluster.apply(&[
        pool("bed", "10.244.0.0/16", 26),
        bgp_peer("tor", json!({"peerIP": tor_ip, "asNumber": 65000, "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "tor"}}})),
    ]);
    let (mut agents, _) = start_agents(&cluster, &[]);
    let global = session_name("Global", &tor_ip);
    let mut want: Vec<String> = ips[1..].iter().map(|ip| session_name("Mesh", ip)).collect();
    want.push(global.clone());
    agents[0].wait_session_set(&want.iter().map(String::as_str).collect::<Vec<_>>(), TIMEOUT);
    frr.wait_established(&ips[0], TIMEOUT);
    let conf = std::fs::read_to_string(cluster.nodes[0].path("/etc/calico/calico-node/bird.conf")).unwrap_or_default();
    assert!(conf.contains("password \"s3cret-Tor\";"), "node 1's BIRD config has no password for the ToR");
    let conf = std::fs::read_to_string(cluster.nodes[2].path("/etc/calico/calico-node/bird.conf")).unwrap_or_default();
    assert!(!conf.contains("password"), "node 3 has no secret, yet its config has a password");

    // The mesh needs no password: nodes 2 and 3 are up with everyone else.
    for i in [1, 2] {
        for j in (0..3).filter(|j| *j != i) {
            testbed::wait_for(&format!("node {}'s mesh session with node {}", i + 1, j + 1), TIMEOUT, || {
                match agents[i].session(&session_name("Mesh", &ips[j])) {
                    Some(s) if s.starts_with("Established") => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            });
        }
    }
    let start = Instant::now();
    while start.elapsed() < NEVER {
        for i in [1, 2] {
            let tor_side = frr.neighbor_state(&ips[i]).unwrap_or_default();
            let node_side = agents[i].session(&global).unwrap_or_default();
            assert!(
                tor_side != "Established" && !node_side.starts_with("Established"),
                "node {} Established with the ToR despite a {} key: ToR {tor_side}, node {node_side}",
                i + 1,
                if i == 1 { "wrong" } else { "missing" }
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The secret put right on the node (as a mounted secret volume is updated in place): the agent reads its
    // secret files again by itself, and the sessions come up with no change in the datastore.
    for i in [1, 2] {
        let file = cluster.nodes[i].path("/etc/calico/secrets/bgp-secrets/tor");
        std::fs::create_dir_all(file.parent().expect("secret dir")).expect("make the secret dir");
        std::fs::write(&file, "s3cret-Tor").expect("rotate the secret");
    }
    for i in [1, 2] {
        frr.wait_established(&ips[i], TIMEOUT);
    }
    // The keyed sessions carry routes as any other: node 1's block from each node (the mesh), one via node 1.
    let conf = cluster.calico_conf();
    let pod = cluster.nodes[0].add_pod(&conf, "web");
    let block = block_of(&pod.ip);
    testbed::wait_for(&format!("{block} from every node on the ToR"), TIMEOUT, || {
        let mut hops = frr_next_hops(&frr, &block);
        hops.sort();
        if hops == ips {
            Ok(())
        } else {
            Err(format!("{hops:?}"))
        }
    });
    cluster.nodes[0].wait_route("192.0.2.0/24", &format!("via {tor_ip} dev eth0 proto bird"), TIMEOUT);
}
