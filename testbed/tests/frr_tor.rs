//! FRR as a top-of-rack router in its own host and AS 65000, peering eBGP with a node's BIRD 2 (AS 64512):
//! FRR learns the node's block (and zebra installs it in the ToR's kernel), the node learns and installs the
//! prefix FRR announces. FRR runs with its default paths inside the ToR's private dirs: the machine's
//! /etc/frr, /run/frr and /var/tmp are left as they were. Needs root, bird2, frr.
use std::path::Path;
use std::time::Duration;
use testbed::bird::{self, Bird};
use testbed::cluster::{Cluster, Spec};
use testbed::frr::{self, Frr};

const TIMEOUT: Duration = Duration::from_secs(30);
const BLOCK: &str = "10.244.1.0/26";
const TOR_PREFIX: &str = "198.51.100.0/24";

/// Names and modification times under `dir` (one level), to see that a run left it as it was.
fn snapshot(dir: &str) -> Vec<(String, Option<std::time::SystemTime>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().ok().and_then(|m| m.modified().ok())))
        .collect();
    v.sort();
    v
}

#[test]
fn frr_tor_and_a_node_exchange_routes_over_ebgp() {
    let test = "frr_tor_and_a_node_exchange_routes_over_ebgp";
    if !bird::available(test) || !frr::available(test) {
        return;
    }
    // /var/tmp is shared with everyone: only FRR's entry there counts.
    let machine = ["/etc/frr", "/run/frr", "/var/tmp/frr"].map(|d| (d, Path::new(d).exists(), snapshot(d)));
    let mut cluster = Cluster::new(&Spec::nodes(2));
    let tor = cluster.add_host("tor", 0, &frr::DIRS);
    let tor_ip = tor.ip.clone();
    let mut frr = Frr::start(
        tor,
        &format!(
            "frr defaults datacenter\nhostname tor\n!\nrouter bgp 65000\n bgp router-id {tor_ip}\n no bgp ebgp-requires-policy\n\
             no bgp network import-check\n neighbor 10.250.0.1 remote-as 64512\n !\n address-family ipv4 unicast\n  network {TOR_PREFIX}\n\
             exit-address-family\n"
        ),
    );
    let node = &cluster.nodes[0];
    let mut bird = Bird::start(
        node,
        &format!(
            "log stderr all;\nrouter id {ip};\nprotocol device {{ }}\n\
             protocol kernel {{ ipv4 {{ import none; export where source ~ [ RTS_STATIC, RTS_BGP ]; }}; }}\n\
             protocol static blocks {{ ipv4; route {BLOCK} blackhole; }}\n\
             protocol bgp Global_{peer} {{\n  local {ip} as 64512; neighbor {tor_ip} as 65000;\n\
               connect delay time 2; connect retry time 5; error wait time 5,30;\n\
               ipv4 {{ import all; export where proto = \"blocks\"; }};\n}}\n",
            ip = node.ip,
            peer = tor_ip.replace('.', "_")
        ),
    );
    let peer_name = format!("Global_{}", tor_ip.replace('.', "_"));
    let node_side = bird.wait_established(&[&peer_name], TIMEOUT);
    let tor_side = frr.wait_established(&node.ip, TIMEOUT);
    eprintln!(
        "FIGURE eBGP BIRD <-> FRR Established: {:.0} ms after BIRD's start (FRR sees it {:.0} ms after its start)",
        node_side.as_secs_f64() * 1e3,
        tor_side.as_secs_f64() * 1e3
    );

    assert_eq!(frr.wait_prefix(BLOCK, TIMEOUT), node.ip, "FRR's next hop for the node's block");
    cluster.hosts[0].wait_route(BLOCK, &format!("via {} dev eth0 proto bgp", node.ip), TIMEOUT);
    let (line, _) = node.wait_route(TOR_PREFIX, &format!("via {tor_ip} dev eth0 proto bird"), TIMEOUT);
    assert!(line.starts_with(TOR_PREFIX), "{line}");
    // The node's other routes are untouched: no route from FRR replaces its own subnet or default.
    assert_eq!(node.route("default"), "default via 10.250.0.254 dev eth0");
    let summary = frr.vtysh(&["show bgp summary"]);
    assert!(summary.contains("10.250.0.1") && summary.contains("64512"), "{summary}");

    let footprint = cluster.footprint();
    drop(bird);
    drop(frr);
    drop(cluster);
    footprint.assert_gone();
    for (d, existed, before) in machine {
        assert_eq!(Path::new(d).exists(), existed, "{d}");
        assert_eq!(snapshot(d), before, "{d} changed on the machine");
    }
}
