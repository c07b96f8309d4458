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
    // Every route handed back is a block of the pool; a node holds at most ceil(200/64) + borrowing slack blocks.
    let blocks: BTreeSet<String> = results.iter().map(|r| r["routes"][0]["dst"].as_str().unwrap().to_string()).collect();
    assert!(blocks.iter().all(|b| b.ends_with("/26")) && blocks.len() == PODS.div_ceil(64), "blocks: {blocks:?}");

    let unreachable: Vec<&String> = addrs.iter().filter(|a| !node.ping(&node.name, a.trim_end_matches("/32"), Duration::from_secs(3))).collect();
    assert!(unreachable.is_empty(), "not pingable from the node: {unreachable:?}");
    assert_eq!(handles_in_store(&node).len(), PODS);

    concurrently(PODS, RUNTIMES, |i| {
        node.run("cni-calico", "DEL", &cid(i), Some(&pods[i]), "eth0", &[], &with_prev(&conf, &results[i])).ok();
    });
    assert_eq!(handles_in_store(&node), Vec::<String>::new(), "handles left in the store");
    let show = ipam_cli(&node, &["show"]);
    assert!(show.lines().any(|l| l.contains("10.120.0.0/16") && l.contains(" 0 (0%)")), "allocations left:\n{show}");
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
    let show = ipam_cli(&node, &["show"]);
    assert!(!show.lines().any(|l| l.contains("10.122.0.0/24") && l.contains(" 0 (0%)")), "the live address was released:\n{show}");
    node.run("cni-calico", "DEL", "again", Some(&pod), "eth0", &[], &with_prev(&conf, &first)).ok();
    assert_eq!(handles_in_store(&node), Vec::<String>::new());
}
