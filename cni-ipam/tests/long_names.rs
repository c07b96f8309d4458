//! Names as long as validation accepts them, on both stores: a 253-character node name (what Kubernetes
//! allows), 253-character pool names and a long container ID, dual-stack, through ADD, CHECK and DEL of the
//! binary and the operator commands (`show`, `check`, `release`, through the old command lines, which run
//! calicoctl) over what they wrote.
mod support;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use support::*;
use testbed::etcd::{available, Etcd};

/// A 253-character DNS subdomain (four labels, none over 63), as long as `validate_nodename` accepts.
fn long_node() -> String {
    let label = |c: char, n: usize| format!("{c}{}{c}", "x-y_".repeat(n).chars().take(n - 2).collect::<String>());
    let name = [label('a', 63), label('b', 63), label('c', 63), label('d', 61)].join(".");
    assert_eq!(name.len(), 253);
    name
}

/// Pool names as long as Kubernetes object names get (`validate_pool_name` accepts up to 253).
fn long_pool(family: &str) -> String {
    let name = format!("{family}-{}", "pool.".repeat(60)).chars().take(252).collect::<String>() + "z";
    assert_eq!(name.len(), 253);
    name
}

fn cli(store: &[String], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).env_clear().args(store).args(args).output().expect("run cni-ipam");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// The `IPS IN USE` count of a row of `ipam show`'s table (`| IP Pool  | CIDR | total | in use (%) | ...`).
fn in_use(row: &str) -> Option<&str> {
    row.split('|').nth(4).and_then(|c| c.split_whitespace().next())
}

fn ok(store: &[String], args: &[&str]) -> String {
    let (rc, out, err) = cli(store, args);
    assert_eq!(rc, 0, "cni-ipam {args:?}: {out} {err}");
    out
}

/// The whole flow on one store: `net` is a plugin config for that store (without node or pools yet).
fn long_names_flow(store: &[String], mut net: Net, tmp: &Path) {
    let node = long_node();
    let (v4, v6) = (long_pool("v4"), long_pool("v6"));
    let pools = write_pools(tmp, json!({"kind": "List", "items": [pool(&v4, "10.130.0.0/16", 26), pool(&v6, "fd00:130::/48", 122)]}));
    ok(store, &["pool", "load", "--file", pools.to_str().unwrap_or_default()]);
    assert!(ok(store, &["pool", "list"]).contains(&v6));
    net.node = node.clone();
    let extra = json!({"assign_ipv6": "true", "ipv4_pools": [v4], "ipv6_pools": [v6]});
    if let (Some(o), Some(e)) = (net.ipam_extra.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }

    let (rc, out, err) = net.run("ADD", "c1", "");
    assert_eq!(rc, 0, "ADD with a {}-character node name: {out} {err}", node.len());
    let addr = |out: &Value, i: usize| out["ips"][i]["address"].as_str().unwrap_or_default().to_string();
    let (a4, a6) = (addr(&out, 0), addr(&out, 1));
    assert!(a4.starts_with("10.130.") && a6.starts_with("fd00:130:"), "{out}");
    let (rc, out, err) = net.run("CHECK", "c1", "");
    assert_eq!(rc, 0, "CHECK: {out} {err}");
    // Container IDs have no length limit in the CNI spec: the handle key is as long as the ID.
    let long_cid = "f".repeat(300);
    let (rc, out, err) = net.run("ADD", &long_cid, "");
    assert_eq!(rc, 0, "ADD with a 300-character container ID: {out} {err}");
    let long_a4 = addr(&out, 0);
    assert_eq!(net.run("CHECK", &long_cid, "").0, 0);

    // The operator commands see both allocations, on this node's block of each pool.
    let show = ok(store, &["show", "--show-blocks"]);
    assert!(show.lines().any(|l| l.starts_with("| IP Pool") && l.contains("10.130.0.0/16") && in_use(l) == Some("2")), "{show}");
    assert_eq!(show.lines().filter(|l| l.starts_with("| Block")).count(), 2, "{show}");
    let who: Value = serde_json::from_str(&ok(store, &["show", "--ip", a6.split('/').next().unwrap_or_default(), "-o", "json"])).expect("JSON");
    assert_eq!((who["inUse"].as_bool(), who["handle"].as_str()), (Some(true), Some("test-net.c1")), "{who}");
    assert_eq!(who["attributes"]["node"].as_str(), Some(node.as_str()), "{who}");
    let ids = tmp.join("valid-ids");
    std::fs::write(&ids, "c1\n").expect("write ids");
    let report = tmp.join("report.json");
    let (rc, out, err) =
        cli(store, &["check", "--node", &node, "--valid-ids", ids.to_str().unwrap_or_default(), "-o", report.to_str().unwrap_or_default()]);
    assert_eq!(rc, 1, "the long container ID is not among the valid ones: {out} {err}");
    assert!(out.contains(&format!("Found 2 leaked allocations on node {node}")), "{out}");
    let out = ok(store, &["release", "--from-report", report.to_str().unwrap_or_default()]);
    assert!(out.contains("Released 2 IPs"), "{out}");
    assert!(ok(store, &["show", "--ip", long_a4.split('/').next().unwrap_or_default()]).contains("is not assigned"));
    let (rc, out, _) = cli(store, &["check", "--node", &node, "--valid-ids", ids.to_str().unwrap_or_default()]);
    assert_eq!(rc, 0, "{out}");

    let (rc, out, err) = net.run("DEL", "c1", "");
    assert_eq!(rc, 0, "DEL: {out} {err}");
    assert_ne!(net.run("CHECK", "c1", "").0, 0, "CHECK after DEL fails");
    assert_eq!(net.run("DEL", &long_cid, "").0, 0);
    let show = ok(store, &["show"]);
    assert!(show.lines().filter(|l| l.starts_with("| IP Pool")).all(|l| in_use(l) == Some("0")), "{show}");
    // The blocks stay affine to the node; a new ADD gets one of them again.
    let (rc, out, err) = net.run("ADD", "c2", "");
    assert_eq!(rc, 0, "{out} {err}");
    assert_eq!(ok(store, &["show", "--show-blocks"]).lines().filter(|l| l.starts_with("| Block")).count(), 2);
    assert_eq!(net.run("DEL", "c2", "").0, 0);
    let (rc, out, _) = cli(store, &["check"]);
    assert_eq!(rc, 0, "{out}");
}

#[test]
fn names_as_long_as_validation_accepts_on_the_local_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let store = vec!["--store".to_string(), dir.display().to_string()];
    long_names_flow(&store, Net::new(&dir, "unused"), tmp.path());
    assert_consistent(&dir);
    // Every record file name fits the filesystem, and the store's own files are the only dot files.
    assert!(snapshot(&dir).keys().all(|n| n.len() <= 255 && (n.starts_with("%2F") || n.starts_with('.'))));
}

#[test]
fn names_as_long_as_validation_accepts_on_etcd() {
    if !available("names_as_long_as_validation_accepts_on_etcd") {
        return;
    }
    let etcd = Etcd::start(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = vec!["--etcd-endpoints".to_string(), etcd.endpoints_csv()];
    let mut net = Net::new(tmp.path(), "unused");
    net.ipam_extra = json!({"datastore_type": "etcdv3", "etcd_endpoints": etcd.endpoints_csv(), "ipam_lock_file": tmp.path().join("ipam.lock")});
    long_names_flow(&store, net, tmp.path());
    // The affinity sits under Calico's key, node name and all.
    let out = Command::new("etcdctl")
        .args(["--endpoints", &etcd.endpoints_csv(), "get", "--prefix", "/calico/ipam/v2/host/", "--keys-only"])
        .output()
        .expect("etcdctl");
    let keys = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(keys.contains(&format!("/calico/ipam/v2/host/{}/ipv6/block/fd00:130:", long_node())), "{keys}");
}
