//! VXLAN, CrossSubnet, a node leaving and natOutgoing on the cluster bed: node hosts in two subnets joined by
//! a router that knows no pool, pods added by cni-calico over cni-ipam on etcd, each node's VTEP address from
//! IPAM, the MTU file written before the pods come. Each node's plan is computed from the pools and blocks in
//! etcd and applied in the node's netns, as the agent will. Needs root, etcd and nft; `--nocapture` prints
//! the figures.
mod support;
use dataplane::plan::{self, VXLAN_DEVICE};
use dataplane::{mtu, nat, Backend, BlockInfo, Inputs, NodeInfo, Options, Report, VxlanConfig};
use datastore::resources::ippool::Pool;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use support::*;
use testbed::cluster::{Cluster, ClusterNode, Pod, Spec};

fn ready(test: &str) -> bool {
    testbed::root_or_skip(test) && testbed::etcd::available(test)
}

/// A bed with one pool (`cni-ipam pool add` arguments after the name and CIDR), a VTEP address per node
/// from IPAM, the pod MTU the pools call for in every node's /var/lib/calico/mtu, and one pod per node.
struct Bed {
    cluster: Cluster,
    vteps: Vec<Ipv4Addr>,
    pods: Vec<Pod>,
    pod_mtu: u32,
}

impl Bed {
    fn new(subnets: &[usize], pool_args: &[&str]) -> Bed {
        let mut cluster = Cluster::new(&Spec::subnets(subnets).with_etcd());
        let mut args = vec!["pool", "add", "--name", "pods", "--cidr", "10.244.0.0/16", "--block-size", "26"];
        args.extend_from_slice(pool_args);
        cluster.ipam(&args);
        let (pools, _) = snapshot(&cluster);
        let vteps: Vec<Ipv4Addr> = cluster.nodes.iter().map(|n| vtep_address(&cluster, n)).collect();
        let mut pod_mtu = 0;
        for n in &cluster.nodes {
            let host_mtu = with_netlink(n, |nl| mtu::host_mtu(&nl.links().expect("links")));
            pod_mtu = mtu::pod_mtu(host_mtu, &mtu::tunnels(&pools), &mtu::Configured::default());
            // What the agent does before the CNI plugin runs: cni-calico reads it on ADD (its config has no mtu).
            mtu::write_mtu_file(&n.path(mtu::MTU_FILE), pod_mtu).expect("write MTU file");
        }
        let conf = cluster.calico_conf();
        let pods = cluster.nodes.iter_mut().map(|n| n.add_pod(&conf, "web")).collect();
        Bed { cluster, vteps, pods, pod_mtu }
    }

    fn infos(&self) -> Vec<NodeInfo> {
        self.cluster.nodes.iter().zip(&self.vteps).map(|(n, v)| node_info(n, Some(*v))).collect()
    }

    /// Plans and applies on node `i` with `nodes`, `pools` and `blocks`; returns the report and how long it took.
    fn apply_with(&self, i: usize, nodes: &[NodeInfo], pools: &[Pool], blocks: &[BlockInfo]) -> (Report, Duration) {
        let node = &self.cluster.nodes[i];
        let inputs = Inputs { node: &node.name, nodes, pools, blocks, backend: Backend::Vxlan, vxlan: VxlanConfig::default() };
        let p = plan::plan(&inputs);
        let opts = Options::for_host_mtu(self.pod_mtu + mtu::VXLAN_OVERHEAD);
        let start = Instant::now();
        let report = with_netlink(node, |nl| dataplane::apply(nl, &p, &opts).expect("apply"));
        let took = start.elapsed();
        assert!(report.failed.is_empty() && report.skipped.is_empty(), "{}: {report:?}", node.name);
        (report, took)
    }

    /// Every node's plan from what etcd holds now, applied.
    fn apply_all(&self) -> Vec<(Report, Duration)> {
        let (pools, blocks) = snapshot(&self.cluster);
        let nodes = self.infos();
        (0..self.cluster.nodes.len()).map(|i| self.apply_with(i, &nodes, &pools, &blocks)).collect()
    }

    fn node(&self, i: usize) -> &ClusterNode {
        &self.cluster.nodes[i]
    }
}

/// The /26 holding an IPv4 address.
fn block_of(ip: &str) -> String {
    let a: Ipv4Addr = ip.parse().expect("IPv4");
    format!("{}/26", Ipv4Addr::from(u32::from(a) & !0x3f))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn vxlan_always_crosses_the_router_as_udp_4789_only() {
    if !ready("vxlan_always_crosses_the_router_as_udp_4789_only") {
        return;
    }
    let bed = Bed::new(&[1, 1], &["--vxlan-mode", "Always"]);
    let (a, b) = (&bed.pods[0], &bed.pods[1]);
    assert_eq!(bed.pod_mtu, 1450, "veth uplinks of 1500, VXLAN");
    let eth0 = testbed::ip(&["-n", &a.netns, "link", "show", "eth0"]);
    assert!(eth0.contains("mtu 1450"), "the pod got the MTU file's MTU: {eth0}");
    assert!(!ping_df(&a.netns, &b.ip, 56, 1), "before the plan the router cannot route pod addresses");
    nft(
        &bed.cluster.router,
        "table inet crs-test {\n chain forwarding {\n  type filter hook forward priority 0; policy accept;\n\
         ip saddr 10.244.0.0/16 counter comment \"pod-src\"\n\
         ip daddr 10.244.0.0/16 counter comment \"pod-dst\"\n\
         ip saddr 10.250.0.0/16 ip daddr 10.250.0.0/16 udp dport 4789 counter comment \"vxlan\"\n\
         counter comment \"all\"\n }\n}\n",
    );

    let first = bed.apply_all();
    let second = bed.apply_all();
    for (i, ((r1, t1), (r2, t2))) in first.iter().zip(&second).enumerate() {
        assert!(r1.changes() > 0, "{r1:?}");
        assert_eq!(r2.changes(), 0, "a second pass with the same plan changes nothing: {r2:?}");
        eprintln!("FIGURE node-{}: first pass {} ({} changes), same plan again {}", i + 1, ms(*t1), r1.changes(), ms(*t2));
    }
    let (n1, n2) = (bed.node(0), bed.node(1));
    let route = n1.route(&block_of(&b.ip));
    assert_eq!(route, format!("{} via {} dev {VXLAN_DEVICE} proto 80 onlink", block_of(&b.ip), bed.vteps[1]));
    assert!(n1.route(&block_of(&a.ip)).starts_with("blackhole"), "{}", n1.route(&block_of(&a.ip)));
    let neigh = n1.ip(&["neigh", "show", "dev", VXLAN_DEVICE]);
    assert!(neigh.contains(&format!("{} lladdr 66:00:00:00:00:02 PERMANENT", bed.vteps[1])), "{neigh}");
    let fdb = n1.exec("bridge", &["fdb", "show", "dev", VXLAN_DEVICE]);
    assert!(fdb.contains(&format!("66:00:00:00:00:02 dst {} self permanent", n2.ip)), "{fdb}");

    wait_ping(&a.netns, &b.ip);
    let start = Instant::now();
    assert!(ping_df(&a.netns, &b.ip, 56, 5) && ping_df(&b.netns, &a.ip, 56, 5));
    // Full size with DF: the pod MTU less the IPv4 and ICMP headers crosses; one byte more cannot leave the pod.
    let full = bed.pod_mtu as usize - 28;
    assert!(ping_df(&a.netns, &b.ip, full, 3), "a {full}-byte DF ping crosses");
    assert!(!ping_df(&a.netns, &b.ip, full + 1, 1), "a DF ping one byte too large does not");
    eprintln!("FIGURE pings (5+5 small, 3 of {full} bytes with DF) in {}", ms(start.elapsed()));

    let (pod_src, pod_dst, vxlan, all) = (
        counter(&bed.cluster.router, "pod-src"),
        counter(&bed.cluster.router, "pod-dst"),
        counter(&bed.cluster.router, "vxlan"),
        counter(&bed.cluster.router, "all"),
    );
    eprintln!("FIGURE router forwarded {all} packets: {vxlan} UDP 4789 between node addresses, {pod_src} from and {pod_dst} to pod addresses");
    assert_eq!((pod_src, pod_dst), (0, 0), "no pod address crosses the router");
    assert!(vxlan >= 26, "the pings crossed as VXLAN: {vxlan}");
    assert_eq!(all, vxlan, "nothing else crossed");
}

#[test]
fn cross_subnet_is_direct_within_a_subnet_and_vxlan_across() {
    if !ready("cross_subnet_is_direct_within_a_subnet_and_vxlan_across") {
        return;
    }
    let bed = Bed::new(&[2, 1], &["--vxlan-mode", "CrossSubnet"]);
    for (r, _) in bed.apply_all() {
        assert!(r.changes() > 0);
    }
    let (p1, p2, p3) = (&bed.pods[0], &bed.pods[1], &bed.pods[2]);
    let (n1, n2, n3) = (bed.node(0), bed.node(1), bed.node(2));
    assert_eq!(n1.route(&block_of(&p2.ip)), format!("{} via {} dev eth0 proto 80", block_of(&p2.ip), n2.ip));
    assert_eq!(n1.route(&block_of(&p3.ip)), format!("{} via {} dev {VXLAN_DEVICE} proto 80 onlink", block_of(&p3.ip), bed.vteps[2]));
    assert_eq!(n3.route(&block_of(&p2.ip)), format!("{} via {} dev {VXLAN_DEVICE} proto 80 onlink", block_of(&p2.ip), bed.vteps[1]));
    // What reaches node-2 from node-1's pod: plain packets on eth0, and no VXLAN at all.
    let watch = |n: &ClusterNode, src: &str| {
        nft(
            n,
            &format!(
                "table inet crs-test {{\n chain pre {{\n  type filter hook prerouting priority -300; policy accept;\n\
                 iifname \"eth0\" ip saddr {src} counter comment \"plain\"\n\
                 iifname \"eth0\" udp dport 4789 counter comment \"vxlan\"\n }}\n}}\n"
            ),
        )
    };
    watch(n2, &p1.ip);
    watch(n3, &n1.ip);
    wait_ping(&p1.netns, &p2.ip);
    wait_ping(&p1.netns, &p3.ip);
    assert!(ping_df(&p1.netns, &p2.ip, 56, 3) && ping_df(&p1.netns, &p3.ip, 56, 3));
    let (plain2, vxlan2, vxlan3) = (counter(n2, "plain"), counter(n2, "vxlan"), counter(n3, "vxlan"));
    eprintln!("FIGURE CrossSubnet: node-2 got {plain2} plain packets from the pod and {vxlan2} VXLAN; node-3 got {vxlan3} VXLAN");
    assert!(plain2 >= 4 && vxlan2 == 0, "same subnet: no encapsulation ({plain2} plain, {vxlan2} VXLAN)");
    assert!(vxlan3 >= 4, "other subnet: VXLAN ({vxlan3})");
}

#[test]
fn a_node_leaving_disappears_from_the_others() {
    if !ready("a_node_leaving_disappears_from_the_others") {
        return;
    }
    let bed = Bed::new(&[2, 1], &["--vxlan-mode", "Always"]);
    bed.apply_all();
    let (pools, blocks) = snapshot(&bed.cluster);
    let block3 = block_of(&bed.pods[2].ip);
    let seen = |n: &ClusterNode| {
        let neigh = n.ip(&["neigh", "show", "dev", VXLAN_DEVICE]);
        let fdb = n.exec("bridge", &["fdb", "show", "dev", VXLAN_DEVICE]);
        (!n.route(&block3).is_empty(), neigh.contains(&bed.vteps[2].to_string()), fdb.contains("66:00:00:00:00:03"))
    };
    for i in 0..2 {
        assert_eq!(seen(bed.node(i)), (true, true, true), "node-{} knows node-3", i + 1);
    }
    // node-3 is deleted from the datastore (its block is still stored until IPAM's GC releases it).
    let rest: Vec<NodeInfo> = bed.infos().into_iter().take(2).collect();
    for i in 0..2 {
        let (r, took) = bed.apply_with_warnings(i, &rest, &pools, &blocks);
        assert_eq!((r.routes_deleted, r.neighbours_deleted, r.fdb_deleted, r.changes()), (1, 1, 1, 3), "{r:?}");
        assert_eq!(seen(bed.node(i)), (false, false, false), "node-{} forgot node-3", i + 1);
        eprintln!("FIGURE node-{}: node-3 removed in {}", i + 1, ms(took));
    }
    // node-1 and node-2 still reach each other; node-3 comes back as it left.
    wait_ping(&bed.pods[0].netns, &bed.pods[1].ip);
    let all = bed.infos();
    for i in 0..2 {
        let (r, _) = bed.apply_with(i, &all, &pools, &blocks);
        assert_eq!((r.routes_added, r.neighbours_set, r.fdb_set), (1, 1, 1), "{r:?}");
    }
    wait_ping(&bed.pods[0].netns, &bed.pods[2].ip);
}

impl Bed {
    /// `apply_with` for a plan that names what it left out (a block of a node that is gone).
    fn apply_with_warnings(&self, i: usize, nodes: &[NodeInfo], pools: &[Pool], blocks: &[BlockInfo]) -> (Report, Duration) {
        let node = &self.cluster.nodes[i];
        let inputs = Inputs { node: &node.name, nodes, pools, blocks, backend: Backend::Vxlan, vxlan: VxlanConfig::default() };
        let p = plan::plan(&inputs);
        assert!(p.warnings.iter().any(|w| w.contains("node-3")), "{:?}", p.warnings);
        let start = Instant::now();
        let report = with_netlink(node, |nl| dataplane::apply(nl, &p, &Options::for_host_mtu(1500)).expect("apply"));
        (report, start.elapsed())
    }
}

#[test]
fn nat_outgoing_masquerades_only_traffic_leaving_the_pools() {
    if !ready("nat_outgoing_masquerades_only_traffic_leaving_the_pools") {
        return;
    }
    let mut bed = Bed::new(&[1, 1], &["--vxlan-mode", "Always", "--nat-outgoing"]);
    let internet = bed.cluster.add_host("internet", 1, &[]).ip.clone();
    bed.apply_all();
    let (mut pools, _) = snapshot(&bed.cluster);
    assert!(pools[0].nat_outgoing);
    let (p1, p2) = (&bed.pods[0], &bed.pods[1]);
    let (n1, n2) = (bed.node(0), bed.node(1));
    let inet = &bed.cluster.hosts[0];
    nft(
        inet,
        &format!(
            "table inet crs-test {{\n chain in {{\n  type filter hook input priority 0; policy accept;\n\
             ip saddr {} icmp type echo-request counter comment \"node-src\"\n\
             ip saddr 10.244.0.0/16 counter comment \"pod-src\"\n }}\n}}\n",
            n1.ip
        ),
    );
    nft(n2, &format!("table inet crs-test {{\n chain pre {{\n  type filter hook prerouting priority -300; policy accept;\n iifname \"{VXLAN_DEVICE}\" ip saddr {} counter comment \"pod1\"\n }}\n}}\n", p1.ip));
    assert!(!ping_df(&p1.netns, &internet, 56, 1), "without NAT the reply has no way back to a pod address");
    let before = counter(inet, "pod-src");
    assert_eq!((before, counter(inet, "node-src")), (1, 0), "without NAT the request arrived with the pod's address");

    for n in [n1, n2] {
        in_netns(&n.netns, || nat::apply(&pools)).expect("nat apply");
    }
    let table = n1.exec("nft", &["list", "table", "ip", nat::TABLE]);
    assert!(table.contains("ip saddr @masq-pools ip daddr != @pools counter packets"), "{table}");
    eprintln!("FIGURE nat table on node-1:\n{table}");
    wait_ping(&p1.netns, &internet);
    assert!(ping_df(&p1.netns, &internet, 56, 3));
    let (node_src, pod_src) = (counter(inet, "node-src"), counter(inet, "pod-src") - before);
    assert!(node_src >= 4 && pod_src == 0, "the outside saw the node's address ({node_src}), never the pod's ({pod_src})");
    eprintln!("FIGURE natOutgoing: {node_src} echo requests reached the outside from the node's address, {pod_src} from the pod's");
    // Pod to pod, across nodes: the pod source stays.
    wait_ping(&p1.netns, &p2.ip);
    assert!(counter(n2, "pod1") >= 1, "node-2 got the pod's own address through the tunnel");
    assert!(ping_df(&p2.netns, &p1.ip, 56, 1));

    // natOutgoing off: the rule and the table are gone, the outside unreachable again.
    pools[0].nat_outgoing = false;
    in_netns(&n1.netns, || nat::apply(&pools)).expect("nat apply");
    let tables = n1.exec("nft", &["list", "tables"]);
    assert!(!tables.contains(nat::TABLE), "{tables}");
    assert!(!ping_df(&p1.netns, &internet, 56, 1));
    // On, then removed as on shutdown: only the agent's table goes.
    pools[0].nat_outgoing = true;
    in_netns(&n1.netns, || nat::apply(&pools)).expect("nat apply");
    nft(n1, "table inet crs-test {\n chain c {\n  counter comment \"other\"\n }\n}\n");
    in_netns(&n1.netns, nat::remove).expect("nat remove");
    let tables = n1.exec("nft", &["list", "tables"]);
    assert!(!tables.contains(nat::TABLE) && tables.contains("table inet crs-test"), "{tables}");
}
