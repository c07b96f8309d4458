//! calico-node with VXLAN (issue 14), end to end: nodes in two subnets behind a router that knows no pool,
//! the agent (CALICO_NETWORKING_BACKEND=vxlan, no BIRD) allocating each node's tunnel address, recording its
//! VTEP in the Node resource and programming the routes, neighbours and FDB entries; the pod MTU the agent
//! writes; VXLAN over IPv6 for IPv6 pods; natOutgoing from the pool; and an agent killed and restarted without
//! touching the kernel state.
//! Needs root, etcd and nft (scripts/deps.sh --all).
use std::process::Command;
use std::time::Duration;
use testbed::agent::Agent;
use testbed::cluster::{Cluster, ClusterNode, Pod, Spec};
use testbed::probe::{counter, nft, ping_df};

const TIMEOUT: Duration = Duration::from_secs(30);
const VXLAN: &[(&str, &str)] = &[("CALICO_NETWORKING_BACKEND", "vxlan")];

fn available(test: &str) -> bool {
    testbed::etcd::available(test) && std::path::Path::new("/usr/sbin/nft").exists()
}

fn block_of(ip: &str) -> String {
    let a: std::net::Ipv4Addr = ip.parse().expect("pod IPv4");
    format!("{}/26", std::net::Ipv4Addr::from(u32::from(a) & !0x3f))
}

fn calicoctl(cluster: &Cluster, args: &[&str]) -> String {
    let out = Command::new(testbed::target_dir().join("calicoctl"))
        .env_clear()
        .env("ETCD_ENDPOINTS", cluster.etcd().endpoints_csv())
        .args(args)
        .output()
        .expect("run calicoctl");
    assert!(out.status.success(), "calicoctl {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_ping(ns: &str, ip: &str) {
    testbed::probe::wait_ping(ns, ip, TIMEOUT);
}

/// Agents on every node, ready; then one pod per node.
fn start(cluster: &mut Cluster, env: &[(&str, &str)]) -> (Vec<Agent>, Vec<Pod>) {
    let mut agents: Vec<Agent> = cluster.nodes.iter().map(|n| Agent::start(cluster, n, env)).collect();
    for a in &mut agents {
        a.wait_ready(TIMEOUT);
    }
    let conf = cluster.calico_conf();
    let pods = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web")).collect();
    (agents, pods)
}

/// The VTEP address node `n` recorded in its Node resource.
fn vtep_of(cluster: &Cluster, n: &ClusterNode) -> String {
    testbed::wait_for(&format!("{}'s VTEP in its Node", n.name), TIMEOUT, || {
        let node: serde_json::Value =
            serde_json::from_str(&calicoctl(cluster, &["get", "node", &n.name, "-o", "json"])).map_err(|e| e.to_string())?;
        let (ip, mac) = (node["spec"]["ipv4VXLANTunnelAddr"].as_str(), node["spec"]["vxlanTunnelMACAddr"].as_str());
        match (ip, mac) {
            (Some(ip), Some(_)) => Ok(ip.to_string()),
            _ => Err(format!("spec now: {}", node["spec"])),
        }
    })
}

#[test]
fn vxlan_agents_route_pods_across_subnets_as_udp_4789_only() {
    if !available("vxlan_agents_route_pods_across_subnets_as_udp_4789_only") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::subnets(&[1, 1]).with_etcd());
    cluster.ipam(&["pool", "add", "--name", "bed", "--cidr", "10.244.0.0/16", "--block-size", "26", "--vxlan-mode", "Always"]);
    // A one-second route refresh (Felix's default is 90 s), for the repair at the end.
    let env: Vec<(&str, &str)> = VXLAN.iter().copied().chain([("FELIX_ROUTEREFRESHINTERVAL", "1")]).collect();
    let (agents, pods) = start(&mut cluster, &env);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (p1, p2) = (&pods[0], &pods[1]);
    for a in &agents {
        assert!(a.bird_pid().is_none() && !a.ctl().exists(), "backend vxlan runs no BIRD");
    }
    let vtep2 = vtep_of(&cluster, n2);
    assert!(vtep2.starts_with("10.244."), "the tunnel address comes from the pool: {vtep2}");
    let handles = calicoctl(&cluster, &["ipam", "show", "--ip", &vtep2]);
    assert!(handles.contains("vxlan-tunnel-addr-node-2") || handles.contains("in use"), "{handles}");
    n1.wait_route(&block_of(&p2.ip), &format!("via {vtep2} dev vxlan.calico proto 80 onlink"), TIMEOUT);
    assert!(n1.route(&block_of(&p1.ip)).starts_with("blackhole"), "own block: {}", n1.route(&block_of(&p1.ip)));
    let neigh = n1.ip(&["neigh", "show", "dev", "vxlan.calico"]);
    assert!(neigh.contains(&vtep2) && neigh.contains("PERMANENT"), "{neigh}");
    let fdb = n1.exec("bridge", &["fdb", "show", "dev", "vxlan.calico"]);
    assert!(fdb.contains(&format!("dst {}", n2.ip)), "{fdb}");

    let mtu = std::fs::read_to_string(n1.path("/var/lib/calico/mtu")).expect("the agent wrote the MTU file");
    assert_eq!(mtu, "1450", "host MTU 1500 less VXLAN's 50");
    let eth0 = testbed::ip(&["-n", &p1.netns, "link", "show", "eth0"]);
    assert!(eth0.contains("mtu 1450"), "the pod got the agent's MTU: {eth0}");

    nft(
        &cluster.router,
        "table inet crs-test {\n chain forwarding {\n  type filter hook forward priority 0; policy accept;\n\
         ip saddr 10.244.0.0/16 counter comment \"pod-src\"\n\
         ip daddr 10.244.0.0/16 counter comment \"pod-dst\"\n\
         ip saddr 10.250.0.0/16 ip daddr 10.250.0.0/16 udp dport 4789 counter comment \"vxlan\"\n }\n}\n",
    );
    wait_ping(&p1.netns, &p2.ip);
    assert!(ping_df(&p1.netns, &p2.ip, 56, 5) && ping_df(&p2.netns, &p1.ip, 56, 5));
    assert!(ping_df(&p1.netns, &p2.ip, 1450 - 28, 3), "a full-size DF ping crosses");
    assert!(!ping_df(&p1.netns, &p2.ip, 1450 - 27, 1), "one byte more does not leave the pod");
    let (src, dst, vxlan) = (counter(&cluster.router, "pod-src"), counter(&cluster.router, "pod-dst"), counter(&cluster.router, "vxlan"));
    eprintln!("FIGURE router: {vxlan} UDP 4789 packets between nodes, {src} from and {dst} to pod addresses");
    assert_eq!((src, dst), (0, 0), "no pod address crosses the router");
    assert!(vxlan >= 26, "{vxlan}");

    // What someone else removes comes back at the next refresh, with no datastore change; a route of
    // someone else's is left alone.
    let remote = block_of(&p2.ip);
    n1.ip(&["route", "add", "192.0.2.0/24", "dev", "eth0", "proto", "static"]);
    n1.ip(&["route", "del", &remote]);
    n1.ip(&["neigh", "del", &vtep2, "dev", "vxlan.calico"]);
    n1.exec("bridge", &["fdb", "del", &vxlan_mac(&cluster, n2), "dev", "vxlan.calico"]);
    n1.wait_route(&remote, &format!("via {vtep2} dev vxlan.calico proto 80 onlink"), TIMEOUT);
    testbed::wait_for("the neighbour and FDB entry back", TIMEOUT, || {
        let neigh = n1.ip(&["neigh", "show", "dev", "vxlan.calico"]);
        let fdb = n1.exec("bridge", &["fdb", "show", "dev", "vxlan.calico"]);
        if neigh.contains(&vtep2) && fdb.contains(&format!("dst {}", n2.ip)) {
            Ok(())
        } else {
            Err(format!("neigh: {neigh}; fdb: {fdb}"))
        }
    });
    assert!(n1.route("192.0.2.0/24").contains("proto static"), "{}", n1.ip(&["route"]));
    wait_ping(&p1.netns, &p2.ip);
}

/// The VTEP MAC node `n` recorded in its Node resource.
fn vxlan_mac(cluster: &Cluster, n: &ClusterNode) -> String {
    let node: serde_json::Value = serde_json::from_str(&calicoctl(cluster, &["get", "node", &n.name, "-o", "json"])).expect("node JSON");
    node["spec"]["vxlanTunnelMACAddr"].as_str().expect("a VTEP MAC").to_string()
}

#[test]
fn cross_subnet_and_nat_outgoing_follow_the_pool() {
    if !available("cross_subnet_and_nat_outgoing_follow_the_pool") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::subnets(&[2, 1]).with_etcd());
    let internet = cluster.add_host("internet", 1, &[]).ip.clone();
    cluster.ipam(&["pool", "add", "--name", "bed", "--cidr", "10.244.0.0/16", "--block-size", "26", "--vxlan-mode", "CrossSubnet", "--nat-outgoing"]);
    // An operator's VXLAN MTU (Calico's veth_mtu), in place of the host's less 50.
    let (_agents, pods) = start(&mut cluster, &[VXLAN[0], ("FELIX_VXLANMTU", "1400")]);
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let (p1, p2, p3) = (&pods[0], &pods[1], &pods[2]);
    let vtep3 = vtep_of(&cluster, n3);
    assert_eq!(std::fs::read_to_string(n1.path("/var/lib/calico/mtu")).expect("MTU file"), "1400");
    let device = n1.ip(&["link", "show", "vxlan.calico"]);
    assert!(device.contains("mtu 1400"), "{device}");
    let eth0 = testbed::ip(&["-n", &p1.netns, "link", "show", "eth0"]);
    assert!(eth0.contains("mtu 1400"), "{eth0}");
    n1.wait_route(&block_of(&p2.ip), &format!("via {} dev eth0 proto 80", n2.ip), TIMEOUT);
    n1.wait_route(&block_of(&p3.ip), &format!("via {vtep3} dev vxlan.calico proto 80 onlink"), TIMEOUT);
    wait_ping(&p1.netns, &p2.ip);
    wait_ping(&p1.netns, &p3.ip);

    // natOutgoing: the outside host has no route to the pool, so only a masqueraded ping comes back.
    let table = n1.exec("nft", &["list", "table", "ip", "calico-rs"]);
    assert!(table.contains("masquerade"), "{table}");
    wait_ping(&p1.netns, &internet);
    // Pod to pod keeps the pod's source: node-2 sees p1's own address.
    nft(n2, &format!("table inet crs-test {{\n chain pre {{\n  type filter hook prerouting priority -300; policy accept;\n ip saddr {} counter comment \"pod1\"\n }}\n}}\n", p1.ip));
    assert!(ping_df(&p1.netns, &p2.ip, 56, 2));
    assert!(counter(n2, "pod1") >= 2, "pod-to-pod traffic is not masqueraded");

    calicoctl(&cluster, &["patch", "ippool", "bed", "-p", r#"{"spec":{"natOutgoing":false}}"#]);
    testbed::wait_for("the nat table gone on node-1", TIMEOUT, || {
        let tables = n1.exec("nft", &["list", "tables"]);
        if tables.contains("calico-rs") {
            Err(tables)
        } else {
            Ok(())
        }
    });
    assert!(!ping_df(&p1.netns, &internet, 56, 1), "without natOutgoing the outside cannot answer a pod address");
}

#[test]
fn a_killed_agent_restarts_without_touching_routes_neighbours_or_fdb() {
    if !available("a_killed_agent_restarts_without_touching_routes_neighbours_or_fdb") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::subnets(&[1, 1]).with_etcd());
    cluster.ipam(&["pool", "add", "--name", "bed", "--cidr", "10.244.0.0/16", "--block-size", "26", "--vxlan-mode", "Always"]);
    let (mut agents, pods) = start(&mut cluster, VXLAN);
    let n1 = &cluster.nodes[0];
    let vtep2 = vtep_of(&cluster, &cluster.nodes[1]);
    n1.wait_route(&block_of(&pods[1].ip), &format!("via {vtep2} dev vxlan.calico"), TIMEOUT);
    wait_ping(&pods[0].netns, &pods[1].ip);
    let state_file = agents[0].run_dir.join("calico-node.json");
    let ((), routes) = n1.monitored(&["ip", "monitor", "route", "neigh", "link"], || {
        let ((), fdb) = n1.monitored(&["bridge", "monitor", "fdb"], || {
            agents[0].kill();
            let _ = std::fs::remove_file(agents[0].lib_dir.join("nodename"));
            let _ = std::fs::remove_file(&state_file);
            agents[0].restart();
            agents[0].wait_ready(TIMEOUT);
            // The first pass is done once the state file is back.
            testbed::wait_for("the restarted agent's first pass", TIMEOUT, || std::fs::metadata(&state_file).map(|_| ()).map_err(|e| e.to_string()));
            assert!(ping_df(&pods[0].netns, &pods[1].ip, 56, 3));
            // A change of someone else's, so the monitor is seen to see changes.
            n1.ip(&["route", "add", "192.0.2.1/32", "dev", "lo", "proto", "static"]);
            n1.ip(&["route", "del", "192.0.2.1/32", "dev", "lo", "proto", "static"]);
        });
        assert!(!fdb.lines().any(|l| l.contains("vxlan.calico")), "the restart touched the FDB:\n{fdb}");
    });
    assert!(routes.contains("192.0.2.1"), "the monitor saw the probe route:\n{routes}");
    let touched: Vec<&str> = routes.lines().filter(|l| l.contains("vxlan.calico") || l.contains("proto 80") || l.contains("blackhole")).collect();
    assert!(touched.is_empty(), "the restart touched the agent's routes, neighbours or device:\n{routes}");
}

/// The /122 holding an IPv6 address.
fn block6_of(ip: &str) -> String {
    let a: std::net::Ipv6Addr = ip.parse().expect("pod IPv6");
    format!("{}/122", std::net::Ipv6Addr::from(u128::from(a) & !0x3f))
}

/// VXLAN over IPv6: an IPv6 pool with `vxlanMode: Always` gives each node a VTEP of that family (its tunnel
/// address from the pool under `vxlan-v6-tunnel-addr-<node>`, a MAC of its own, both in the Node resource),
/// `vxlan-v6.calico` carries IPv6 pods across the router, and the pod MTU is the host's less 70.
#[test]
fn vxlan_over_ipv6_carries_ipv6_pods_across_subnets() {
    if !available("vxlan_over_ipv6_carries_ipv6_pods_across_subnets") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::subnets(&[1, 1]).with_etcd());
    cluster.ipam(&["pool", "add", "--name", "bed6", "--cidr", "fd00:244::/112", "--block-size", "122", "--vxlan-mode", "Always"]);
    let mut agents: Vec<Agent> = cluster
        .nodes
        .iter()
        .map(|n| {
            let ip6 = format!("{}/64", n.ip6);
            Agent::start(&cluster, n, &[VXLAN[0], ("IP6", &ip6)])
        })
        .collect();
    for a in &mut agents {
        a.wait_ready(TIMEOUT);
    }
    let mut conf = cluster.calico_conf();
    conf["ipam"]["assign_ipv4"] = "false".into();
    conf["ipam"]["assign_ipv6"] = "true".into();
    let pods: Vec<Pod> = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web6")).collect();
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (p1, p2) = (&pods[0], &pods[1]);
    assert!(p2.ip.contains(':'), "an IPv6-only pod: {}", p2.ip);

    let (vtep2, mac2) = testbed::wait_for("node-2's IPv6 VTEP in its Node", TIMEOUT, || {
        let node: serde_json::Value =
            serde_json::from_str(&calicoctl(&cluster, &["get", "node", &n2.name, "-o", "json"])).map_err(|e| e.to_string())?;
        match (node["spec"]["ipv6VXLANTunnelAddr"].as_str(), node["spec"]["vxlanTunnelMACAddrV6"].as_str()) {
            (Some(ip), Some(mac)) => Ok((ip.to_string(), mac.to_string())),
            _ => Err(format!("spec now: {}", node["spec"])),
        }
    });
    assert!(vtep2.starts_with("fd00:244::"), "the tunnel address comes from the pool: {vtep2}");
    let who = calicoctl(&cluster, &["ipam", "show", "--ip", &vtep2]);
    assert!(who.contains("vxlan-v6-tunnel-addr-node-2"), "{who}");
    let node2: serde_json::Value = serde_json::from_str(&calicoctl(&cluster, &["get", "node", &n2.name, "-o", "json"])).expect("node JSON");
    assert!(node2["spec"]["ipv4VXLANTunnelAddr"].is_null(), "no IPv4 VXLAN pool, no IPv4 VTEP: {}", node2["spec"]);

    // IPv6 routes print their metric before `onlink`.
    let (route, _) = n1.wait_route(&block6_of(&p2.ip), &format!("via {vtep2} dev vxlan-v6.calico proto 80"), TIMEOUT);
    assert!(route.contains(" onlink"), "{route}");
    let fdb = n1.exec("bridge", &["fdb", "show", "dev", "vxlan-v6.calico"]);
    assert!(fdb.contains(&mac2) && fdb.contains(&format!("dst {}", n2.ip6)), "{fdb}");
    let mtu = std::fs::read_to_string(n1.path("/var/lib/calico/mtu")).expect("the agent wrote the MTU file");
    assert_eq!(mtu, "1430", "host MTU 1500 less VXLAN-over-IPv6's 70");

    nft(
        &cluster.router,
        "table inet crs-test {\n chain forwarding {\n  type filter hook forward priority 0; policy accept;\n\
         ip6 saddr fd00:244::/112 counter comment \"pod-src\"\n\
         ip6 daddr fd00:244::/112 counter comment \"pod-dst\"\n\
         ip6 saddr fd00:250::/32 ip6 daddr fd00:250::/32 udp dport 4789 counter comment \"vxlan\"\n }\n}\n",
    );
    testbed::probe::wait_ping(&p1.netns, &p2.ip, TIMEOUT);
    assert!(ping_df(&p1.netns, &p2.ip, 56, 5) && ping_df(&p2.netns, &p1.ip, 56, 5));
    assert!(ping_df(&p1.netns, &p2.ip, 1430 - 48, 3), "a full-size ping (IPv6 + ICMPv6 headers: 48) crosses");
    assert!(!ping_df(&p1.netns, &p2.ip, 1430 - 47, 1), "one byte more does not leave the pod");
    let (src, dst, vxlan) = (counter(&cluster.router, "pod-src"), counter(&cluster.router, "pod-dst"), counter(&cluster.router, "vxlan"));
    eprintln!("FIGURE router (IPv6): {vxlan} UDP 4789 packets between nodes, {src} from and {dst} to pod addresses");
    assert_eq!((src, dst), (0, 0), "no pod address crosses the router");
    assert!(vxlan >= 20, "{vxlan}");
}
