//! cni-calico with our own cni-ipam, in namespaces: many runtimes at once on one node.
mod support;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;

fn ipam_cli(node: &Node, args: &[&str]) -> String {
    let store = node.path("store");
    let out = std::process::Command::new(target_dir().join("cni-ipam")).arg("--store").arg(&store).args(args).output().expect("cni-ipam");
    assert!(out.status.success(), "cni-ipam {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Addresses in use in the pool with this CIDR (`ipam show -o json`).
fn in_use(node: &Node, cidr: &str) -> u64 {
    let show: serde_json::Value = serde_json::from_str(&ipam_cli(node, &["show", "-o", "json"])).expect("show -o json");
    let pools = show["pools"].as_array().cloned().unwrap_or_default();
    let pool = pools.iter().find(|p| p["cidr"] == cidr).unwrap_or_else(|| panic!("no pool {cidr}: {show}"));
    pool["inUse"].as_str().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{show}"))
}

/// cni-calico over cni-ipam with this node's local store, drawing from pool `pool`.
fn ipam_conf(node: &Node, net: &str, pool: &str) -> serde_json::Value {
    json!({"cniVersion": "1.0.0", "name": net, "type": "cni-calico",
        "ipam": {"type": "cni-ipam", "nodename": "node-a", "local_store_dir": node.path("store"), "ipv4_pools": [pool]}})
}

/// Runs `f(i)` for i in 0..n from `runtimes` threads at once, as that many container runtimes would.
fn concurrently(n: usize, runtimes: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..runtimes {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                f(i);
            });
        }
    });
}

fn handles_in_store(node: &Node) -> Vec<String> {
    std::fs::read_dir(node.path("store"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains("handle")).collect())
        .unwrap_or_default()
}

#[test]
fn two_hundred_pods_from_eight_concurrent_runtimes() {
    if !root_or_skip("with_ipam_200") {
        return;
    }
    const PODS: usize = 200;
    const RUNTIMES: usize = 8;
    let mut node = Node::new("ipam");
    ipam_cli(&node, &["pool", "add", "--name", "crs-pool", "--cidr", "10.120.0.0/16", "--block-size", "26"]);
    let conf = ipam_conf(&node, "crs-ipam", "crs-pool");
    let pods: Vec<String> = (0..PODS).map(|_| node.pod()).collect();
    let results = std::sync::Mutex::new(vec![serde_json::Value::Null; PODS]);
    concurrently(PODS, RUNTIMES, |i| {
        let res = node.run("cni-calico", "ADD", &cid(i), Some(&pods[i]), "eth0", &[], &conf).ok().json;
        results.lock().unwrap()[i] = res;
    });
    let results = results.into_inner().unwrap();
    let addrs: BTreeSet<String> = results.iter().map(|r| r["ips"][0]["address"].as_str().unwrap().to_string()).collect();
    assert_eq!(addrs.len(), PODS, "every pod has its own address");
    assert!(addrs.iter().all(|a| a.starts_with("10.120.") && a.ends_with("/32")));
    // Every route handed back is in a block of the pool (calico-ipam's dst: the address with the block mask); a
    // node holds at most ceil(200/64) + borrowing slack blocks.
    let dst = |r: &serde_json::Value| r["routes"][0]["dst"].as_str().unwrap().parse::<ipnet::IpNet>().expect("route dst");
    let blocks: BTreeSet<ipnet::IpNet> = results.iter().map(|r| dst(r).trunc()).collect();
    assert!(blocks.iter().all(|b| b.prefix_len() == 26) && blocks.len() == PODS.div_ceil(64), "blocks: {blocks:?}");

    let unreachable: Vec<&String> = addrs.iter().filter(|a| !node.ping(&node.name, a.trim_end_matches("/32"), Duration::from_secs(3))).collect();
    assert!(unreachable.is_empty(), "not pingable from the node: {unreachable:?}");
    assert_eq!(handles_in_store(&node).len(), PODS);

    concurrently(PODS, RUNTIMES, |i| {
        node.run("cni-calico", "DEL", &cid(i), Some(&pods[i]), "eth0", &[], &with_prev(&conf, &results[i])).ok();
    });
    assert_eq!(handles_in_store(&node), Vec::<String>::new(), "handles left in the store");
    assert_eq!(in_use(&node, "10.120.0.0/16"), 0, "allocations left");
    ipam_cli(&node, &["check"]);
    assert_eq!(node.ip_in(&node.name, &["-o", "link"]).lines().count(), 2, "only lo and the uplink remain");
}

#[test]
fn ipam_failure_leaves_no_veth_and_exhaustion_is_reported() {
    if !root_or_skip("with_ipam_exhausted") {
        return;
    }
    let mut node = Node::new("exh");
    // A /30 pool with /30 blocks: exactly four addresses.
    ipam_cli(&node, &["pool", "add", "--name", "tiny", "--cidr", "10.121.0.0/30", "--block-size", "30"]);
    // cni-ipam as a separate process here (elsewhere it runs inside cni-calico).
    let mut conf = ipam_conf(&node, "crs-exh", "tiny");
    conf["exec_ipam"] = true.into();
    for i in 0..4 {
        let pod = node.pod();
        node.run("cni-calico", "ADD", &format!("full{i}"), Some(&pod), "eth0", &[], &conf).ok();
    }
    let pod = node.pod();
    let out = node.run("cni-calico", "ADD", "one-too-many", Some(&pod), "eth0", &[], &conf);
    assert_ne!(out.code, 0);
    assert!(out.json["msg"].as_str().unwrap_or("").to_lowercase().contains("exhausted") || out.json["code"] == 100, "{}", out.stdout);
    assert!(!try_ip(&["-n", &pod, "link", "show", "eth0"]), "veth left after IPAM failure");
    assert!(!try_ip(&["-n", &node.name, "link", "show", "calione-too-ma"]), "host veth left after IPAM failure");
    assert_eq!(handles_in_store(&node).len(), 4);
}

/// 64 hex characters as runtimes make them, distinct in the first 11 (which name the host veth).
fn cid(i: usize) -> String {
    format!("{:011x}{}", i * 0x9e37_79b9 % 0xfff_ffff_ffff, "c".repeat(53))
}

#[test]
fn a_repeated_add_fails_without_taking_the_live_address() {
    if !root_or_skip("with_ipam_repeat") {
        return;
    }
    let mut node = Node::new("rep");
    ipam_cli(&node, &["pool", "add", "--name", "rep", "--cidr", "10.122.0.0/24", "--block-size", "26"]);
    let conf = ipam_conf(&node, "crs-rep", "rep");
    let pod = node.pod();
    let first = node.run("cni-calico", "ADD", "again", Some(&pod), "eth0", &[], &conf).ok().json;
    let out = node.run("cni-calico", "ADD", "again", Some(&pod), "eth0", &[], &conf).err(999);
    assert!(out.json["msg"].as_str().unwrap().contains("eth0 already exists"), "{}", out.stdout);
    // The first attachment still works and its address is still allocated to it.
    let addr = first["ips"][0]["address"].as_str().unwrap().trim_end_matches("/32").to_string();
    assert!(node.ping(&node.name, &addr, Duration::from_secs(3)));
    assert_eq!(in_use(&node, "10.122.0.0/24"), 1, "the live address was released");
    node.run("cni-calico", "DEL", "again", Some(&pod), "eth0", &[], &with_prev(&conf, &first)).ok();
    assert_eq!(handles_in_store(&node), Vec::<String>::new());
}

/// A 253-character DNS subdomain (four labels, none over 63): the longest node name Kubernetes allows.
fn long_node() -> String {
    let label = |c: char, n: usize| format!("{c}{}{c}", "x-y_".repeat(n).chars().take(n - 2).collect::<String>());
    let name = [label('a', 63), label('b', 63), label('c', 63), label('d', 61)].join(".");
    assert_eq!(name.len(), 253);
    name
}

/// ADD, CHECK and DEL of a dual-stack pod on a node with a 253-character name, cni-ipam inside cni-calico
/// (or exec'd, for etcd when cni-calico is built without it), on the store `store` names (cni-ipam flags).
fn long_node_name_dual_stack(node: &mut Node, store: &[String], conf: serde_json::Value) {
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(target_dir().join("cni-ipam")).args(store).args(args).output().expect("cni-ipam");
        assert!(out.status.success(), "cni-ipam {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(&["pool", "add", "--name", "long-v4", "--cidr", "10.123.0.0/24", "--block-size", "26"]);
    cli(&["pool", "add", "--name", "long-v6", "--cidr", "fd00:123::/64", "--block-size", "122"]);
    let pod = node.pod();
    let res = node.run("cni-calico", "ADD", &cid(1), Some(&pod), "eth0", &[], &conf).ok().json;
    let (a4, a6) = (res["ips"][0]["address"].as_str().unwrap_or(""), res["ips"][1]["address"].as_str().unwrap_or(""));
    assert!(a4.starts_with("10.123.0.") && a6.starts_with("fd00:123::"), "{res}");
    let in_pod = node.ip_in(&pod, &["-o", "addr", "show", "dev", "eth0"]);
    assert!(in_pod.contains(a4) && in_pod.contains(a6), "{in_pod}");
    assert!(node.ping(&node.name, a4.trim_end_matches("/32"), Duration::from_secs(3)), "v4 from the node");
    node.run("cni-calico", "CHECK", &cid(1), Some(&pod), "eth0", &[], &with_prev(&conf, &res)).ok();
    let show =
        |args: &[&str]| -> serde_json::Value { serde_json::from_str(&cli(&[&["show", "-o", "json"][..], args].concat())).expect("show -o json") };
    let in_use = |v: &serde_json::Value| -> Vec<String> {
        v["pools"].as_array().cloned().unwrap_or_default().iter().map(|p| p["inUse"].as_str().unwrap_or("").to_string()).collect()
    };
    let usage = show(&["--show-blocks"]);
    assert_eq!(in_use(&usage), ["1", "1"], "{usage}");
    let affine: Vec<serde_json::Value> =
        usage["pools"].as_array().cloned().unwrap_or_default().iter().flat_map(|p| p["blocks"].as_array().cloned().unwrap_or_default()).collect();
    assert_eq!(affine.iter().filter(|b| b["affinity"] == format!("host:{}", long_node())).count(), 2, "{usage}");
    cli(&["check", "--node", &long_node()]);
    node.run("cni-calico", "DEL", &cid(1), Some(&pod), "eth0", &[], &with_prev(&conf, &res)).ok();
    let usage = show(&[]);
    assert_eq!(in_use(&usage), ["0", "0"], "{usage}");
    cli(&["check"]);
    assert_eq!(node.ip_in(&node.name, &["-o", "link"]).lines().count(), 2, "only lo and the uplink remain");
}

#[test]
fn a_253_character_node_name_dual_stack_on_the_local_store() {
    if !root_or_skip("with_ipam_long_node_local") {
        return;
    }
    let mut node = Node::new("lnl");
    let store = vec!["--store".to_string(), node.path("store").display().to_string()];
    let conf = json!({"cniVersion": "1.0.0", "name": "crs-long", "type": "cni-calico", "nodename": long_node(),
        "ipam": {"type": "cni-ipam", "local_store_dir": node.path("store"), "assign_ipv6": "true",
                 "ipv4_pools": ["long-v4"], "ipv6_pools": ["long-v6"]}});
    long_node_name_dual_stack(&mut node, &store, conf);
}

#[test]
fn a_253_character_node_name_dual_stack_on_etcd() {
    if !testbed::etcd::available("with_ipam_long_node_etcd") {
        return;
    }
    let etcd = testbed::etcd::Etcd::start(1);
    let mut node = Node::new("lne");
    let store = vec!["--etcd-endpoints".to_string(), etcd.endpoints_csv()];
    let conf = json!({"cniVersion": "1.0.0", "name": "crs-long", "type": "cni-calico", "nodename": long_node(),
        "datastore_type": "etcdv3", "etcd_endpoints": etcd.endpoints_csv(),
        "ipam": {"type": "cni-ipam", "ipam_lock_file": node.path("ipam.lock"), "assign_ipv6": "true",
                 "ipv4_pools": ["long-v4"], "ipv6_pools": ["long-v6"]}});
    long_node_name_dual_stack(&mut node, &store, conf);
}

/// The CNI `ips` capability (`runtimeConfig.ips`, what podman sends for several static addresses) and the args
/// convention (`args.cni.ips`) reach cni-ipam in our stdin, in-process and exec'd alike: the pod gets exactly
/// the address asked for. Requests that disagree are refused and leave nothing behind.
#[test]
fn runtime_config_ips_are_honoured_in_process_and_exec() {
    if !root_or_skip("with_ipam_runtime_ips") {
        return;
    }
    let mut node = Node::new("rtips");
    ipam_cli(&node, &["pool", "add", "--name", "rtips", "--cidr", "10.126.0.0/24", "--block-size", "26"]);
    let cases = [
        (false, "runtimeConfig", json!({"ips": ["10.126.0.77/24"]}), "10.126.0.77"),
        (true, "runtimeConfig", json!({"ips": ["10.126.0.78"]}), "10.126.0.78"),
        (false, "args", json!({"cni": {"ips": ["10.126.0.79"]}}), "10.126.0.79"),
        (true, "args", json!({"cni": {"ips": ["10.126.0.80"]}}), "10.126.0.80"),
    ];
    for (i, (exec_ipam, key, value, want)) in cases.into_iter().enumerate() {
        let mut conf = ipam_conf(&node, "crs-rtips", "rtips");
        conf["exec_ipam"] = exec_ipam.into();
        conf["capabilities"] = json!({"ips": true});
        conf[key] = value;
        let pod = node.pod();
        let cid = format!("rtips{i}");
        let res = node.run("cni-calico", "ADD", &cid, Some(&pod), "eth0", &[], &conf).ok().json;
        assert_eq!(res["ips"][0]["address"], format!("{want}/32"), "exec_ipam={exec_ipam} {key}: {res}");
        let caddr = node.ip_in(&pod, &["-o", "-4", "addr", "show", "dev", "eth0"]);
        assert!(caddr.contains(&format!("inet {want}/32")), "exec_ipam={exec_ipam} {key}: {caddr}");
        assert!(node.ping(&node.name, want, Duration::from_secs(3)), "{want} not reachable from the node");
        node.run("cni-calico", "DEL", &cid, Some(&pod), "eth0", &[], &with_prev(&conf, &res)).ok();
    }
    assert_eq!(handles_in_store(&node), Vec::<String>::new());

    // IP= and runtimeConfig.ips asking for two IPv4 addresses: refused, no veth, nothing allocated.
    for exec_ipam in [false, true] {
        let mut conf = ipam_conf(&node, "crs-rtips", "rtips");
        conf["exec_ipam"] = exec_ipam.into();
        conf["runtimeConfig"] = json!({"ips": ["10.126.0.81"]});
        let pod = node.pod();
        let out = node.run("cni-calico", "ADD", "rtips-bad", Some(&pod), "eth0", &[("CNI_ARGS", "IP=10.126.0.82")], &conf).err(7);
        let msg = out.json["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("IP=10.126.0.82") && msg.contains("runtimeConfig.ips[0]"), "exec_ipam={exec_ipam}: {msg}");
        assert!(!try_ip(&["-n", &pod, "link", "show", "eth0"]), "veth left after a refused ADD");
        assert_eq!(handles_in_store(&node), Vec::<String>::new(), "exec_ipam={exec_ipam}");
    }
}
