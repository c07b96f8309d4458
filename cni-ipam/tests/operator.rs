//! Operator commands against etcd and the local store: show (pools, blocks, borrowed, one address, config),
//! check (leaks by container ID and by vanished netns, handles without addresses, unaffine blocks, JSON
//! report), release (--ip, --from-report), configure, pool add/list/delete.
mod support;
use serde_json::{json, Value};
use std::process::Command;
use support::*;
use testbed::etcd::{available, Etcd};

/// `cni-ipam <store flags> <args>` → (exit code, stdout, stderr).
fn cli(store: &[String], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).env_clear().args(store).args(args).output().expect("run cni-ipam");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn ok(store: &[String], args: &[&str]) -> String {
    let (rc, out, err) = cli(store, args);
    assert_eq!(rc, 0, "cni-ipam {args:?}: {out} {err}");
    out
}

fn json_of(store: &[String], args: &[&str]) -> Value {
    serde_json::from_str(&ok(store, args)).expect("JSON output")
}

/// The whole operator flow on one store; `net_for(node)` gives a plugin config for that store.
fn operator_flow(store: &[String], net_for: &dyn Fn(&str) -> Net, tmp: &std::path::Path) {
    ok(store, &["pool", "add", "--name", "op-pool", "--cidr", "10.74.0.0/25", "--block-size", "26"]);
    let pools = json_of(store, &["pool", "list", "-o", "json"]);
    assert_eq!(pools["items"][0]["spec"]["cidr"], "10.74.0.0/25");
    assert!(ok(store, &["pool", "list"]).contains("op-pool"));

    // node-a fills its block (64) and one more comes from the second block; node-b then has no block to
    // claim and borrows.
    let a = net_for("node-a");
    let b = net_for("node-b");
    for i in 0..100 {
        a.add(&format!("a{i}"));
    }
    let (borrowed_ip, _) = b.add("b0");
    let show = ok(store, &["show", "--show-blocks"]);
    assert!(show.lines().any(|l| l.starts_with("IP Pool") && l.split_whitespace().nth(4) == Some("101")), "{show}");
    assert_eq!(show.lines().filter(|l| l.starts_with("Block")).count(), 2, "{show}");
    let usage = json_of(store, &["show", "-o", "json", "--show-borrowed"]);
    assert_eq!(usage["pools"][0]["inUse"], "101");
    let borrowed = usage["borrowed"].as_array().cloned().unwrap_or_default();
    assert_eq!(borrowed.len(), 1, "{usage}");
    assert_eq!(borrowed[0]["borrowingNode"], "node-b");
    assert_eq!(borrowed[0]["blockOwner"], "node-a");
    let table = ok(store, &["show", "--show-borrowed"]);
    assert!(table.contains("BORROWING-NODE") && table.contains("node-b"), "{table}");

    let ip = borrowed_ip.split('/').next().unwrap_or_default().to_string();
    let who = json_of(store, &["show", "--ip", &ip, "-o", "json"]);
    assert_eq!((who["inUse"].as_bool(), who["handle"].as_str()), (Some(true), Some("test-net.b0")), "{who}");
    // The last address of the block that is not full is free (which block filled first depends on the node name).
    let free = ["10.74.0.63", "10.74.0.127"].iter().filter(|ip| ok(store, &["show", "--ip", ip]).contains("is not assigned")).count();
    assert_eq!(free, 1);

    // Leaks: node-a's runtime knows only containers a0..a49; a50..a99 are leaked. node-b's netns path
    // (recorded at ADD) does not exist, so on node-b its allocation is leaked too.
    let ids = tmp.join("valid-ids");
    std::fs::write(&ids, (0..50).map(|i| format!("a{i}\n")).collect::<String>()).expect("write ids");
    let report_file = tmp.join("report.json");
    let (rc, out, err) =
        cli(store, &["check", "--node", "node-a", "--valid-ids", ids.to_str().unwrap_or_default(), "-o", report_file.to_str().unwrap_or_default()]);
    assert_eq!(rc, 1, "leaks are problems: {out} {err}");
    assert!(out.contains("Found 50 leaked allocations on node node-a"), "{out}");
    assert!(out.contains("Check complete; found 50 problems."), "{out}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_file).expect("report")).expect("report JSON");
    assert_eq!(report["leakedAllocations"].as_array().map(Vec::len), Some(50));
    let (rc, out, _) = cli(store, &["check", "--node", "node-b", "-o", "json"]);
    assert_eq!(rc, 1);
    let r: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(r["leakedAllocations"][0]["handle"], "test-net.b0", "{r}");

    // Releasing from the report frees exactly the leaked addresses.
    let out = ok(store, &["release", "--from-report", report_file.to_str().unwrap_or_default()]);
    assert!(out.contains("Released 50 IPs successfully"), "{out}");
    assert!(ok(store, &["show"]).lines().any(|l| l.starts_with("IP Pool") && l.split_whitespace().nth(4) == Some("51")));
    // The handles of released addresses are gone with them; the check is clean for node-a's valid list.
    let (rc, out, _) = cli(store, &["check", "--node", "node-a", "--valid-ids", ids.to_str().unwrap_or_default()]);
    assert_eq!(rc, 0, "{out}");
    let out = ok(store, &["release", "--ip", &ip]);
    assert!(out.contains("Released 1 IPs"), "{out}");
    assert!(ok(store, &["show", "--ip", &ip]).contains("is not assigned"));

    // configure (calicoctl's spelling too) and the strict-affinity rule it enforces.
    let cfg = json_of(store, &["configure", "--strictaffinity=true", "--max-blocks-per-host", "3", "-o", "json"]);
    assert_eq!((cfg["strict_affinity"].as_bool(), cfg["maxBlocksPerHost"].as_u64()), (Some(true), Some(3)), "{cfg}");
    let (rc, _, err) = cli(store, &["configure", "--strict-affinity", "false"]);
    assert_ne!(rc, 0, "maxBlocksPerHost > 0 needs strict affinity: {err}");
    assert!(ok(store, &["show", "--show-configuration"]).contains("StrictAffinity"));
    ok(store, &["config", "set", "--max-blocks-per-host", "0", "--strict-affinity", "false"]);

    // A pool in use is not deleted without --force; an empty one goes with its blocks and affinities.
    let (rc, _, err) = cli(store, &["pool", "delete", "--name", "op-pool"]);
    assert_ne!(rc, 0);
    assert!(err.contains("in use"), "{err}");
    for i in 0..50 {
        let (rc, out, err) = a.run("DEL", &format!("a{i}"), "");
        assert_eq!(rc, 0, "{out} {err}");
    }
    ok(store, &["pool", "delete", "--name", "op-pool"]);
    let usage = json_of(store, &["show", "-o", "json", "--show-blocks"]);
    assert_eq!(usage["pools"][0]["name"], "default-ipv4-ippool", "only the implicit default is left: {usage}");
    let (rc, out, _) = cli(store, &["check"]);
    assert_eq!(rc, 0, "{out}");
}

#[test]
fn operator_commands_on_etcd() {
    if !available("operator_commands_on_etcd") {
        return;
    }
    let etcd = Etcd::start(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = vec!["--etcd-endpoints".to_string(), etcd.endpoints_csv()];
    let eps = etcd.endpoints_csv();
    let lock = tmp.path().join("ipam.lock");
    let net_for = |node: &str| {
        let mut n = Net::new(tmp.path(), node);
        n.ipam_extra = json!({"datastore_type": "etcdv3", "etcd_endpoints": eps, "ipam_lock_file": lock});
        n
    };
    operator_flow(&store, &net_for, tmp.path());
    // --config reads the store from a network config file, as the plugin would.
    let conf = tmp.path().join("net.conflist");
    std::fs::write(
        &conf,
        json!({"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "cni-calico",
        "datastore_type": "etcdv3", "etcd_endpoints": eps, "ipam": {"type": "cni-ipam", "nodename": "n"}}]})
        .to_string(),
    )
    .expect("write conf");
    let out = ok(&["--config".to_string(), conf.display().to_string()], &["show"]);
    assert!(out.contains("192.168.0.0/16"), "{out}");
}

#[test]
fn operator_commands_on_the_local_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let store = vec!["--store".to_string(), dir.display().to_string()];
    let net_for = |node: &str| Net::new(&dir, node);
    operator_flow(&store, &net_for, tmp.path());
}
