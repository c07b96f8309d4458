//! BIRD 2 on the cluster bed with hand-written configs, as the node agent will render them: an iBGP full mesh
//! (AS 64512) of three nodes, each announcing its pod block as a blackhole; pods added with cni-calico on
//! etcd reach each other across nodes over the BGP routes. Measures the time to Established with BIRD's
//! default timers and with Calico's, and how long a new block takes to reach the other kernels.
//! Needs root, bird2, etcd; run with `--nocapture` to see the figures.
use datastore::store::{Datastore, Key, Kind};
use std::time::{Duration, Instant};
use testbed::bird::{self, mesh_config, mesh_name, Bird, CALICO_TIMERS};
use testbed::cluster::{Cluster, ClusterNode, Spec};

const TIMEOUT: Duration = Duration::from_secs(30);

fn others(cluster: &Cluster, me: usize) -> Vec<&ClusterNode> {
    cluster.nodes.iter().enumerate().filter(|(i, _)| *i != me).map(|(_, n)| n).collect()
}

/// Starts one BIRD per node (announcing `blocks[i]`) and waits for the whole mesh; returns the birds and the
/// time from the first start to the last session Established.
fn start_mesh(cluster: &Cluster, blocks: &[Vec<String>], timers: &str) -> (Vec<Bird>, Duration) {
    let start = Instant::now();
    let mut birds: Vec<Bird> =
        cluster.nodes.iter().enumerate().map(|(i, n)| Bird::start(n, &mesh_config(n, &others(cluster, i), &blocks[i], timers))).collect();
    for (i, b) in birds.iter_mut().enumerate() {
        let names: Vec<String> = others(cluster, i).iter().map(|p| mesh_name(&p.ip)).collect();
        b.wait_established(&names.iter().map(String::as_str).collect::<Vec<_>>(), TIMEOUT);
    }
    (birds, start.elapsed())
}

/// The /26 holding `ip` (an IPv4 address).
fn block_of(ip: &str) -> String {
    let a: std::net::Ipv4Addr = ip.parse().expect("pod IPv4");
    let net = u32::from(a) & !0x3f;
    format!("{}/26", std::net::Ipv4Addr::from(net))
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn three_node_mesh_routes_pod_traffic_between_nodes() {
    let test = "three_node_mesh_routes_pod_traffic_between_nodes";
    if !bird::available(test) || !testbed::etcd::available(test) {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(3).with_etcd());
    cluster.ipam(&["pool", "add", "--name", "bed", "--cidr", "10.244.0.0/16", "--block-size", "26"]);
    let conf = cluster.calico_conf();
    // No nodename file and no nodename in the config: each node's IPAM goes by its host name, as Calico's does.
    let pods: Vec<_> = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web")).collect();
    let blocks: Vec<Vec<String>> = pods.iter().map(|p| vec![block_of(&p.ip)]).collect();
    let affinities: Vec<(String, String)> = {
        let store = cluster.etcd().store();
        let session = store.lock().expect("lock etcd");
        let keys = session.list(Kind::Affinity).expect("list affinities").into_iter().map(|(k, _)| k);
        keys.filter_map(|k| match k {
            Key::Affinity { host, cidr } => Some((host, cidr.to_string())),
            _ => None,
        })
        .collect()
    };
    for (n, b) in blocks.iter().enumerate() {
        let host = format!("node-{}", n + 1);
        assert!(affinities.contains(&(host.clone(), b[0].clone())), "{host} owns {} (by its host name): {affinities:?}", b[0]);
    }

    let (birds, established) = start_mesh(&cluster, &blocks, CALICO_TIMERS);
    eprintln!("FIGURE mesh of 3, Calico timers: all 6 sessions Established {} after the first start", ms(established));
    for (i, n) in cluster.nodes.iter().enumerate() {
        let own = &blocks[i][0];
        assert_eq!(n.route(own), format!("blackhole {own} proto bird metric 32"), "{}'s own block", n.name);
        for (j, other) in cluster.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
            let (line, _) = n.wait_route(&blocks[j][0], &format!("via {} dev eth0 proto bird", other.ip), TIMEOUT);
            assert!(line.starts_with(&blocks[j][0]), "{}: {line}", n.name);
        }
        let protos = birds[i].protocols();
        let up: Vec<&str> = protos.iter().filter(|p| p.proto == "BGP" && p.info == "Established").map(|p| p.name.as_str()).collect();
        assert_eq!(up.len(), 2, "{}: {protos:?}", n.name);
    }
    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate().filter(|(j, _)| *j != i) {
            let routes = |n: &ClusterNode| format!("{}: {}", n.name, n.ip(&["route"]));
            let (a, b) = (&cluster.nodes[i], &cluster.nodes[j]);
            assert!(
                testbed::ping(&from.netns, &to.ip, Duration::from_secs(5)),
                "pod {} on node-{} -> pod {} on node-{}; {}; {}",
                from.ip,
                i + 1,
                to.ip,
                j + 1,
                routes(a),
                routes(b)
            );
        }
    }

    // A new block on node-1 (config reload, as the agent will do on a claim) reaches the other kernels.
    let (mut arrivals, mut reloads) = (Vec::new(), Vec::new());
    let mut node1_blocks = blocks[0].clone();
    for k in 0..5 {
        let block = format!("10.244.{}.0/26", 200 + k);
        node1_blocks.push(block.clone());
        let cfg = mesh_config(&cluster.nodes[0], &others(&cluster, 0), &node1_blocks, CALICO_TIMERS);
        let t = Instant::now();
        birds[0].reconfigure(&cluster.nodes[0], &cfg);
        reloads.push(t.elapsed());
        for n in &cluster.nodes[1..] {
            n.wait_route(&block, "via 10.250.0.1 dev eth0 proto bird", TIMEOUT);
        }
        arrivals.push(t.elapsed());
    }
    let withdrawn = node1_blocks.pop().expect("a block");
    let t = Instant::now();
    birds[0].reconfigure(&cluster.nodes[0], &mesh_config(&cluster.nodes[0], &others(&cluster, 0), &node1_blocks, CALICO_TIMERS));
    for n in &cluster.nodes[1..] {
        n.wait_no_route(&withdrawn, TIMEOUT);
    }
    let withdrawal = t.elapsed();
    arrivals.sort();
    reloads.sort();
    eprintln!(
        "FIGURE new block on node-1 in both other kernels: median {}, max {} (5 runs; of which write config + bird -p + birdc configure: median {}); withdrawal {}",
        ms(arrivals[2]),
        ms(arrivals[4]),
        ms(reloads[2]),
        ms(withdrawal)
    );
    let since: Vec<String> = birds[1].protocols().iter().filter(|p| p.proto == "BGP").map(|p| p.since.clone()).collect();
    assert!(birds[1].protocols().iter().filter(|p| p.proto == "BGP").all(|p| p.info == "Established"), "reloads kept the sessions: {since:?}");

    let footprint = cluster.footprint();
    drop(birds);
    drop(cluster);
    footprint.assert_gone();
}

#[test]
fn calico_timers_establish_the_mesh_sooner_than_birds_defaults() {
    let test = "calico_timers_establish_the_mesh_sooner_than_birds_defaults";
    if !bird::available(test) {
        return;
    }
    let cluster = Cluster::new(&Spec::nodes(3));
    let blocks: Vec<Vec<String>> = (1..=3).map(|n| vec![format!("10.244.{n}.0/26")]).collect();
    let mut figures = Vec::new();
    for (label, timers) in [("BIRD defaults", ""), ("Calico timers", CALICO_TIMERS)] {
        let (birds, established) = start_mesh(&cluster, &blocks, timers);
        // The routes follow the sessions: measure until the last kernel has both remote blocks.
        let start = birds.iter().map(|b| b.started).min().expect("birds");
        for (i, n) in cluster.nodes.iter().enumerate() {
            for (j, other) in cluster.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
                n.wait_route(&blocks[j][0], &format!("via {} dev eth0 proto bird", other.ip), TIMEOUT);
            }
        }
        let routed = start.elapsed();
        eprintln!("FIGURE mesh of 3, {label}: all sessions Established {}, all routes in all kernels {}", ms(established), ms(routed));
        figures.push(established);
        drop(birds);
        for (i, n) in cluster.nodes.iter().enumerate() {
            n.wait_no_route(&blocks[i][0], TIMEOUT);
        }
    }
    // BIRD waits `connect delay time` before its first connect: 5 s by default, 2 s with Calico's.
    assert!(figures[0] >= Duration::from_millis(4000), "BIRD's 5 s connect delay: {figures:?}");
    assert!(figures[1] < figures[0] - Duration::from_millis(1500), "Calico's 2 s connect delay: {figures:?}");
}
