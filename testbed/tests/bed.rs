//! The cluster bed itself (testbed::cluster): each node is its own machine (name, addresses, Calico's state
//! dirs, /run) on a fabric, nodes in two subnets reach each other through the router only, and the bed leaves
//! nothing behind. Needs root.
use std::time::Duration;
use testbed::cluster::{router_ip, Cluster, Spec};
use testbed::root_or_skip;

#[test]
fn each_node_is_its_own_machine_and_the_router_joins_two_subnets() {
    if !root_or_skip("each_node_is_its_own_machine_and_the_router_joins_two_subnets") {
        return;
    }
    let machine_had_calico_dirs: Vec<bool> =
        ["/etc/calico", "/var/lib/calico", "/run/calico"].iter().map(|d| std::path::Path::new(d).exists()).collect();
    let mut cluster = Cluster::new(&Spec::subnets(&[2, 1]));
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    assert_eq!((n1.ip.as_str(), n2.ip.as_str(), n3.ip.as_str()), ("10.250.0.1", "10.250.0.2", "10.250.1.3"));
    assert_eq!(n1.exec("hostname", &[]).trim(), "node-1");
    assert_eq!(n3.exec("hostname", &[]).trim(), "node-3");

    // Calico's state dirs are the node's own: written from outside, read on the node, absent elsewhere.
    std::fs::write(n1.path("/var/lib/calico/nodename"), "node-1").unwrap();
    std::fs::write(n1.path("/var/run/calico/marker"), "run").unwrap();
    assert_eq!(n1.exec("cat", &["/var/lib/calico/nodename"]), "node-1");
    assert_eq!(n1.exec("cat", &["/var/run/calico/marker"]), "run");
    assert!(!n2.exec_output("cat", &["/var/lib/calico/nodename"]).status.success(), "node-2 sees node-1's nodename");
    // A node's writes to /etc stay on the node (overlay).
    n2.exec("sh", &["-c", "echo x > /etc/crs-bed-probe"]);
    assert!(!std::path::Path::new("/etc/crs-bed-probe").exists(), "a node wrote the machine's /etc");
    assert!(n2.exec_output("cat", &["/etc/crs-bed-probe"]).status.success());
    assert!(!n1.exec_output("cat", &["/etc/crs-bed-probe"]).status.success());
    // /sys and /proc/sys/net are the node's: its eth0, its forwarding.
    let mac = n1.ip(&["-br", "link", "show", "eth0"]).split_whitespace().nth(2).unwrap_or_default().to_string();
    assert_eq!(n1.exec("cat", &["/sys/class/net/eth0/address"]).trim(), mac, "/sys shows the node's eth0");
    assert_eq!(n1.exec("cat", &["/proc/sys/net/ipv4/ip_forward"]).trim(), "1");
    assert_eq!(n1.exec("cat", &["/proc/sys/net/ipv6/conf/all/forwarding"]).trim(), "1");

    // A pod netns made on the machine after the node exists is usable on the node (one-way propagation).
    let pod = cluster.nodes[0].pod();
    let n1 = &cluster.nodes[0];
    n1.exec("ip", &["netns", "exec", &pod, "ip", "link", "set", "lo", "up"]);
    assert!(n1.exec("ip", &["netns", "list"]).contains(&pod));

    // Same subnet directly, the other subnet through the router, v4 and v6.
    let (n2, n3) = (&cluster.nodes[1], &cluster.nodes[2]);
    for (to, v4, v6) in [(n2, &n2.ip, &n2.ip6), (n3, &n3.ip, &n3.ip6)] {
        assert!(testbed::ping(&n1.netns, v4, Duration::from_secs(3)), "node-1 -> {} {v4}", to.name);
        // IPv6 through the router waits for neighbour discovery on both subnets, whose retries are a second
        // apart: a loaded machine has taken more than 3 s for the first answer.
        assert!(testbed::ping(&n1.netns, v6, Duration::from_secs(15)), "node-1 -> {} {v6}", to.name);
    }
    let router = &cluster.router;
    assert_eq!(router.exec("hostname", &[]).trim(), "router");
    let routes = router.ip(&["-4", "route", "show"]);
    assert!(routes.lines().all(|l| l.contains("proto kernel")), "the router knows only its subnets: {routes}");
    assert_eq!(n3.route("default"), format!("default via {} dev eth0", router_ip(1).0));

    let footprint = cluster.footprint();
    assert_eq!(footprint.netns.len(), 3 + 1 + 2 + 1, "3 nodes, 1 pod, 2 fabrics, the router: {:?}", footprint.netns);
    drop(cluster);
    footprint.assert_gone();
    for (d, had) in ["/etc/calico", "/var/lib/calico", "/run/calico"].iter().zip(machine_had_calico_dirs) {
        assert_eq!(std::path::Path::new(d).exists(), had, "{d} made on the machine");
    }
}

#[test]
fn a_failing_test_leaves_nothing_behind() {
    if !root_or_skip("a_failing_test_leaves_nothing_behind") {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = std::thread::spawn(move || {
        let mut cluster = Cluster::new(&Spec::nodes(2));
        cluster.nodes[1].pod();
        let mut cmd = cluster.nodes[0].command("sleep");
        cmd.arg("1000");
        let mut daemon = cluster.nodes[0].spawn("sleeper", cmd);
        assert!(daemon.running());
        // The daemon runs on the node: in its network and mount namespaces.
        let ns = |pid: u32, ns: &str| std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok();
        assert_eq!(ns(daemon.pid(), "mnt"), ns(cluster.nodes[0].holder_pid(), "mnt"));
        assert_eq!(ns(daemon.pid(), "net"), ns(cluster.nodes[0].holder_pid(), "net"));
        tx.send(cluster.footprint()).unwrap();
        panic!("a test failing with its bed and a daemon up");
    })
    .join();
    assert!(failed.is_err(), "the thread panicked");
    let footprint = rx.recv().expect("footprint");
    assert!(!footprint.netns.is_empty());
    footprint.assert_gone();
}
