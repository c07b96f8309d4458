//! The plan's rules, one test each, on a cluster of three nodes: node-1 and node-2 share 10.250.0.0/24,
//! node-3 is on 10.250.1.0/24 behind a router.
use super::*;
use datastore::resources::ippool::PoolSpec;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mac(n: u8) -> [u8; 6] {
    [0x66, 0, 0, 0, 0, n]
}

fn pool(name: &str, cidr: &str, vxlan: &str, ipip: &str) -> Pool {
    let spec = PoolSpec { cidr: cidr.into(), vxlan_mode: Some(vxlan.into()), ipip_mode: Some(ipip.into()), ..Default::default() };
    Pool::from_spec(name, &spec).unwrap()
}

fn vxlan_pool(mode: &str) -> Pool {
    pool("p", "10.244.0.0/16", mode, "Never")
}

/// node-n at 10.250.s.n/24 with VTEP 10.244.n.0 (the first address of its block) and MAC 66:00:00:00:00:0n.
fn node(n: u8, subnet: u8) -> NodeInfo {
    NodeInfo::new(&format!("node-{n}"), format!("10.250.{subnet}.{n}/24").parse().unwrap())
        .with_vtep(format!("10.244.{n}.0").parse().unwrap(), mac(n))
}

fn nodes() -> Vec<NodeInfo> {
    vec![node(1, 0), node(2, 0), node(3, 1)]
}

/// One /26 per node: 10.244.n.0/26 owned by node-n.
fn blocks() -> Vec<BlockInfo> {
    (1..=3).map(|n| BlockInfo::new(net(&format!("10.244.{n}.0/26")), Some(&format!("node-{n}")))).collect()
}

fn plan_for(me: &str, nodes: &[NodeInfo], pools: &[Pool], blocks: &[BlockInfo], backend: Backend) -> Plan {
    plan(&Inputs { node: me, nodes, pools, blocks, backend, vxlan: VxlanConfig::default() })
}

fn tunnel(gw: &str) -> Target {
    Target::Tunnel { device: VXLAN_DEVICE, gw: ip(gw) }
}

#[test]
fn vxlan_always_routes_every_remote_block_through_its_vtep_and_blackholes_its_own() {
    let p = plan_for("node-1", &nodes(), &[vxlan_pool("Always")], &blocks(), Backend::Vxlan);
    let want: BTreeMap<IpNet, Target> =
        [(net("10.244.1.0/26"), Target::Blackhole), (net("10.244.2.0/26"), tunnel("10.244.2.0")), (net("10.244.3.0/26"), tunnel("10.244.3.0"))]
            .into();
    assert_eq!(p.routes, want);
    let neigh: Vec<_> = p.neighbours.iter().map(|n| (n.device, n.ip, n.mac)).collect();
    assert_eq!(neigh, [(VXLAN_DEVICE, ip("10.244.2.0"), mac(2)), (VXLAN_DEVICE, ip("10.244.3.0"), mac(3))]);
    let fdb: Vec<_> = p.fdb.iter().map(|f| (f.mac, f.dst)).collect();
    assert_eq!(fdb, [(mac(2), ip("10.250.0.2")), (mac(3), ip("10.250.1.3"))]);
    let dev = p.vxlan_v4.expect("device");
    assert_eq!(
        (dev.name, dev.vni, dev.port, dev.mac, dev.address, dev.local),
        (VXLAN_DEVICE, 4096, 4789, mac(1), ip("10.244.1.0"), ip("10.250.0.1"))
    );
    assert!(p.vxlan_v6.is_none() && p.ipip.is_none());
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn vxlan_cross_subnet_reaches_same_subnet_nodes_directly() {
    let p = plan_for("node-1", &nodes(), &[vxlan_pool("CrossSubnet")], &blocks(), Backend::Bird);
    assert_eq!(p.routes[&net("10.244.2.0/26")], Target::Uplink { gw: ip("10.250.0.2") });
    assert_eq!(p.routes[&net("10.244.3.0/26")], tunnel("10.244.3.0"));
    // Seen from the other subnet, both are across the router.
    let p3 = plan_for("node-3", &nodes(), &[vxlan_pool("CrossSubnet")], &blocks(), Backend::Bird);
    assert_eq!(p3.routes[&net("10.244.1.0/26")], tunnel("10.244.1.0"));
    assert_eq!(p3.routes[&net("10.244.2.0/26")], tunnel("10.244.2.0"));
    // The FDB still knows every VTEP (a same-subnet VTEP may be the gateway of a borrowed address).
    assert_eq!(p.fdb.len(), 2);
}

#[test]
fn bird_keeps_unencapsulated_pools_and_is_told_to_reject_the_others() {
    let pools = [
        pool("plain", "10.244.0.0/16", "Never", "Never"),
        pool("vx", "10.245.0.0/16", "Always", "Never"),
        pool("ip", "10.246.0.0/16", "Never", "Always"),
    ];
    let p = plan_for("node-1", &nodes(), &pools, &blocks(), Backend::Bird);
    assert_eq!(p.bird_kernel_rejects, [net("10.245.0.0/16"), net("10.246.0.0/16")]);
    // The blocks are in the plain pool: BIRD's (blackhole and remote routes), none of the agent's.
    assert!(p.routes.is_empty(), "{:?}", p.routes);
    assert!(p.vxlan_v4.is_some(), "a VXLAN pool exists, so the device does");
}

#[test]
fn without_bird_the_agent_routes_unencapsulated_pools_within_the_subnet() {
    let plain = [pool("plain", "10.244.0.0/16", "Never", "Never")];
    let p = plan_for("node-1", &nodes(), &plain, &blocks(), Backend::Vxlan);
    assert_eq!(p.routes[&net("10.244.1.0/26")], Target::Blackhole);
    assert_eq!(p.routes[&net("10.244.2.0/26")], Target::Uplink { gw: ip("10.250.0.2") });
    assert!(!p.routes.contains_key(&net("10.244.3.0/26")), "node-3 is behind a router: no route without encapsulation");
    assert!(p.warnings.iter().any(|w| w.contains("10.244.3.0/26") && w.contains("outside this node's subnet")), "{:?}", p.warnings);
    assert!(p.bird_kernel_rejects.is_empty() && p.vxlan_v4.is_none());
}

#[test]
fn backend_none_programs_nothing() {
    let p = plan_for("node-1", &nodes(), &[vxlan_pool("Always")], &blocks(), Backend::None);
    assert_eq!(p, Plan::default());
}

#[test]
fn single_address_blocks_get_no_blackhole() {
    let mut b = blocks();
    b.push(BlockInfo::new(net("10.244.9.7/32"), Some("node-1")));
    let p = plan_for("node-1", &nodes(), &[vxlan_pool("Always")], &b, Backend::Vxlan);
    assert!(!p.routes.contains_key(&net("10.244.9.7/32")));
    assert_eq!(p.routes[&net("10.244.1.0/26")], Target::Blackhole);
}

#[test]
fn borrowed_addresses_get_their_own_route_to_the_borrower() {
    let mut b = blocks();
    // node-2's block lends .10 to node-3 and .11 to node-1 (this node).
    b[1].borrowed = vec![(ip("10.244.2.10"), "node-3".into()), (ip("10.244.2.11"), "node-1".into())];
    // node-1's own block lends .5 to node-2: the /32 wins over node-1's blackhole.
    b[0].borrowed = vec![(ip("10.244.1.5"), "node-2".into())];
    let p = plan_for("node-1", &nodes(), &[vxlan_pool("Always")], &b, Backend::Vxlan);
    assert_eq!(p.routes[&net("10.244.2.10/32")], tunnel("10.244.3.0"));
    assert!(!p.routes.contains_key(&net("10.244.2.11/32")), "the CNI plugin routes this node's own pods");
    assert_eq!(p.routes[&net("10.244.1.5/32")], tunnel("10.244.2.0"));
    assert_eq!(p.routes[&net("10.244.1.0/26")], Target::Blackhole);
}

#[test]
fn a_block_without_owner_routes_only_its_allocations() {
    let mut b = blocks();
    b.push(BlockInfo { cidr: net("10.244.8.0/26"), owner: None, borrowed: vec![(ip("10.244.8.1"), "node-3".into())] });
    let p = plan_for("node-1", &nodes(), &[vxlan_pool("Always")], &b, Backend::Vxlan);
    assert!(!p.routes.contains_key(&net("10.244.8.0/26")));
    assert_eq!(p.routes[&net("10.244.8.1/32")], tunnel("10.244.3.0"));
}

#[test]
fn a_vtep_outside_its_own_block_is_routed_directly() {
    let mut n = nodes();
    // node-3's VTEP address was borrowed from node-2's block.
    n[2].vtep_v4 = Some(Vtep { ip: ip("10.244.2.30"), mac: mac(3) });
    let mut b = blocks();
    b[1].borrowed = vec![(ip("10.244.2.30"), "node-3".into())];
    let p = plan_for("node-1", &n, &[vxlan_pool("Always")], &b, Backend::Vxlan);
    assert_eq!(p.routes[&net("10.244.2.30/32")], Target::Direct { device: VXLAN_DEVICE });
    assert_eq!(p.routes[&net("10.244.3.0/26")], tunnel("10.244.2.30"));
    // A VTEP inside its own /26 needs nothing more than the block route.
    assert!(!p.routes.contains_key(&net("10.244.2.0/32")));
}

#[test]
fn ipip_routes_onlink_through_tunl0_to_the_node_address() {
    let pools = [pool("ip", "10.244.0.0/16", "Never", "CrossSubnet")];
    let mut n = nodes();
    n[0].ipip_addr = Some("10.244.1.1".parse().unwrap());
    let p = plan_for("node-1", &n, &pools, &blocks(), Backend::Bird);
    assert_eq!(p.routes[&net("10.244.3.0/26")], Target::Tunnel { device: IPIP_DEVICE, gw: ip("10.250.1.3") });
    assert_eq!(p.routes[&net("10.244.2.0/26")], Target::Uplink { gw: ip("10.250.0.2") });
    assert_eq!(p.routes[&net("10.244.1.0/26")], Target::Blackhole);
    assert_eq!(p.ipip, Some(IpipDevice { address: Some("10.244.1.1".parse().unwrap()), local: "10.250.0.1".parse().unwrap() }));
    assert_eq!(p.bird_kernel_rejects, [net("10.244.0.0/16")]);
    assert!(p.neighbours.is_empty() && p.fdb.is_empty() && p.vxlan_v4.is_none());
}

#[test]
fn a_node_leaving_takes_its_routes_neighbour_and_fdb_entry_along() {
    let all = plan_for("node-1", &nodes(), &[vxlan_pool("Always")], &blocks(), Backend::Vxlan);
    let two = plan_for("node-1", &nodes()[..2], &[vxlan_pool("Always")], &blocks()[..2], Backend::Vxlan);
    assert!(all.routes.contains_key(&net("10.244.3.0/26")) && !two.routes.contains_key(&net("10.244.3.0/26")));
    assert!(!two.neighbours.iter().any(|n| n.ip == ip("10.244.3.0")));
    assert!(!two.fdb.iter().any(|f| f.dst == ip("10.250.1.3")));
    // Gone from the nodes but its block still stored: no route, and the plan says why.
    let orphan = plan_for("node-1", &nodes()[..2], &[vxlan_pool("Always")], &blocks(), Backend::Vxlan);
    assert!(!orphan.routes.contains_key(&net("10.244.3.0/26")));
    assert!(orphan.warnings.iter().any(|w| w.contains("node-3")), "{:?}", orphan.warnings);
}

#[test]
fn no_vtep_yet_means_no_device_and_no_tunnel_routes() {
    let mut n = nodes();
    n[0].vtep_v4 = None;
    let p = plan_for("node-1", &n, &[vxlan_pool("CrossSubnet")], &blocks(), Backend::Vxlan);
    assert!(p.vxlan_v4.is_none() && p.neighbours.is_empty());
    assert_eq!(p.routes[&net("10.244.1.0/26")], Target::Blackhole);
    assert_eq!(p.routes[&net("10.244.2.0/26")], Target::Uplink { gw: ip("10.250.0.2") });
    assert!(!p.routes.contains_key(&net("10.244.3.0/26")));
    assert!(p.warnings.iter().any(|w| w.contains("no IPv4 VTEP")), "{:?}", p.warnings);
    // A remote node without one: no route to it, no neighbour.
    let mut n = nodes();
    n[2].vtep_v4 = None;
    let p = plan_for("node-1", &n, &[vxlan_pool("Always")], &blocks(), Backend::Vxlan);
    assert!(!p.routes.contains_key(&net("10.244.3.0/26")) && p.neighbours.len() == 1);
}

#[test]
fn ipv6_vxlan_uses_its_own_device() {
    let pools = [pool("v6", "fd00:244::/48", "Always", "Never")];
    let mut n = nodes();
    for (i, node) in n.iter_mut().enumerate() {
        let k = i + 1;
        node.ipv6 = Some(format!("fd00:250:{}::{k}/64", if k == 3 { 1 } else { 0 }).parse().unwrap());
        node.vtep_v6 = Some(Vtep { ip: ip(&format!("fd00:244:0:{k}::")), mac: mac(0x10 + k as u8) });
    }
    let b: Vec<_> = (1..=3).map(|k| BlockInfo::new(net(&format!("fd00:244:0:{k}::/122")), Some(&format!("node-{k}")))).collect();
    let p = plan_for("node-1", &n, &pools, &b, Backend::Vxlan);
    assert_eq!(p.routes[&net("fd00:244:0:3::/122")], Target::Tunnel { device: VXLAN_DEVICE_V6, gw: ip("fd00:244:0:3::") });
    assert_eq!(p.routes[&net("fd00:244:0:1::/122")], Target::Blackhole);
    assert_eq!(p.vxlan_v6.map(|d| d.name), Some(VXLAN_DEVICE_V6));
    assert!(p.vxlan_v4.is_none());
    assert!(p.fdb.iter().all(|f| f.device == VXLAN_DEVICE_V6 && f.dst.is_ipv6()));
}

#[test]
fn blocks_outside_agent_pools_and_unknown_me_are_left_alone() {
    let p = plan_for("node-9", &nodes(), &[vxlan_pool("Always")], &blocks(), Backend::Vxlan);
    assert!(p.routes.is_empty() && p.warnings.iter().any(|w| w.contains("node-9")));
    let b = [BlockInfo::new(net("10.99.0.0/26"), Some("node-2"))];
    let p = plan_for("node-1", &nodes(), &[vxlan_pool("Always")], &b, Backend::Vxlan);
    assert!(p.routes.is_empty(), "a block in no pool is nobody's to route: {:?}", p.routes);
}

#[test]
fn backend_names_are_calicos() {
    assert_eq!("".parse::<Backend>().unwrap(), Backend::Bird);
    assert_eq!("bird".parse::<Backend>().unwrap(), Backend::Bird);
    assert_eq!("vxlan".parse::<Backend>().unwrap(), Backend::Vxlan);
    assert_eq!("none".parse::<Backend>().unwrap(), Backend::None);
    let e = "gobgp".parse::<Backend>().unwrap_err().to_string();
    assert!(e.contains("CALICO_NETWORKING_BACKEND") && e.contains("gobgp"), "{e}");
}

#[test]
fn load_balancer_pools_are_not_pod_pools() {
    let mut lb = pool("lb", "192.0.2.0/24", "Never", "Never");
    assert!(is_pod_pool(&lb));
    lb.allowed_uses = vec![AllowedUse::LoadBalancer];
    assert!(!is_pod_pool(&lb));
}
