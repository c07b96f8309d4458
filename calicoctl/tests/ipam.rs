//! `calicoctl ipam show|check|release|configure` over allocations the built cni-ipam made the way a runtime
//! does, on etcd and on the local store: pools and blocks, borrowed addresses, one address's owner, leaks
//! by container ID and by vanished netns, the JSON report and releasing from it, configure and its rules,
//! a pool in use that cannot be deleted, and what `delete node` takes with it.
mod support;
use serde_json::Value;
use support::*;
use testbed::etcd::{available, Etcd};

fn json_of(ctl: &Ctl, args: &[&str]) -> Value {
    serde_json::from_str(&ctl.ok(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The `IPS IN USE` cell of the `IP Pool` row of `ipam show` (go-pretty's box layout).
fn pool_in_use(show: &str) -> Option<String> {
    let row = show.lines().find(|l| l.starts_with("| IP Pool"))?;
    row.split('|').nth(4).map(|c| c.trim().to_string())
}

fn flow(ctl: &Ctl, net_for: &dyn Fn(&str) -> Net, tmp: &std::path::Path) {
    ctl.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: op-pool\nspec:\n  cidr: 10.74.0.0/25\n  blockSize: 26\n",
    );
    assert_eq!(json_of(ctl, &["get", "ippools", "-o", "json"])["items"][0]["spec"]["cidr"], "10.74.0.0/25");

    // node-a fills one block (64) and takes 36 of the second; node-b then has no block to claim and borrows.
    let (a, b) = (net_for("node-a"), net_for("node-b"));
    for i in 0..100 {
        a.add(&format!("a{i}"));
    }
    let borrowed_ip = b.add("b0");
    let show = ctl.ok(&["ipam", "show", "--show-blocks"]);
    assert!(
        show.starts_with("+----------+---------------+-----------+------------+--------------+----------+\n| GROUPING |     CIDR      | IPS TOTAL |"),
        "{show}"
    );
    assert_eq!(pool_in_use(&show).as_deref(), Some("101 (79%)"), "{show}");
    assert_eq!(show.lines().filter(|l| l.starts_with("| Block")).count(), 2, "{show}");
    assert!(show.contains("| IP Pool  | 10.74.0.0/25  |       128 |  101 (79%) |       0 (0%) | 27 (21%) |\n"), "{show}");
    assert_eq!(json_of(ctl, &["ipam", "show", "-o", "json"])["pools"][0]["inUse"], "101");
    let borrowed = json_of(ctl, &["ipam", "show", "--show-borrowed", "-o", "json"])["borrowed"].as_array().cloned().unwrap_or_default();
    assert_eq!(borrowed.len(), 1, "{borrowed:?}");
    assert_eq!((borrowed[0]["borrowingNode"].as_str(), borrowed[0]["blockOwner"].as_str()), (Some("node-b"), Some("node-a")));
    let table = ctl.ok(&["ipam", "show", "--show-borrowed"]);
    assert!(table.contains("|       IP       | BORROWING-NODE |") || table.contains("BORROWING-NODE"), "{table}");
    assert!(table.contains(&format!("| {borrowed_ip} ")) && table.contains("| node-b "), "{table}");

    let who = json_of(ctl, &["ipam", "show", "--ip", &borrowed_ip, "-o", "json"]);
    assert_eq!((who["inUse"].as_bool(), who["handle"].as_str()), (Some(true), Some("test-net.b0")), "{who}");
    let text = ctl.ok(&["ipam", "show", "--ip", &borrowed_ip]);
    assert!(text.starts_with(&format!("IP {borrowed_ip} is in use\nHandle ID: test-net.b0\nActive Owner Attributes:\n")), "{text}");
    assert!(text.contains("  node: node-b\n"), "{text}");
    let free = ["10.74.0.63", "10.74.0.127"].iter().filter(|ip| ctl.ok(&["ipam", "show", "--ip", ip]) == format!("{ip} is not assigned\n")).count();
    assert_eq!(free, 1, "the last address of the block that is not full is free");

    // Leaks: node-a's runtime knows only a0..a49; node-b's recorded netns does not exist.
    let ids = tmp.join("valid-ids");
    std::fs::write(&ids, (0..50).map(|i| format!("a{i}\n")).collect::<String>()).expect("write ids");
    let report = tmp.join("report.json");
    let (ids_s, report_s) = (ids.to_str().unwrap_or_default(), report.to_str().unwrap_or_default());
    let out = ctl.run(&["ipam", "check", "--node", "node-a", "--valid-ids", ids_s, "-o", report_s, "--show-problem-ips"]);
    assert_eq!(out.rc, 1, "leaks are problems: {out}");
    assert!(out.stdout.starts_with("Checking IPAM for inconsistencies...\n"), "{out}");
    assert!(out.stdout.contains("Found 50 leaked allocations on node node-a (allocated, container gone)."), "{out}");
    assert!(out.stdout.contains("leaked (container a99 is not among the valid IDs)"), "{out}");
    assert!(out.stdout.ends_with("Check complete; found 50 problems.\n"), "{out}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("report JSON");
    assert_eq!(r["leakedAllocations"].as_array().map(Vec::len), Some(50));
    let out = ctl.run(&["ipam", "check", "--node", "node-b", "-o", "-"]);
    assert_eq!(out.rc, 1, "{out}");
    let r: Value = serde_json::from_str(&out.stdout).expect("the report alone on stdout");
    assert_eq!(r["leakedAllocations"][0]["handle"], "test-net.b0", "{r}");

    // Releasing from the report frees exactly the leaked addresses (and their handles go with them).
    let out = ctl.ok(&["ipam", "release", "--from-report", report_s]);
    assert!(out.contains("Releasing 50 old IPs...\nReleased 50 IPs successfully\n"), "{out}");
    assert_eq!(pool_in_use(&ctl.ok(&["ipam", "show"])).as_deref(), Some("51 (40%)"));
    let out = ctl.run(&["ipam", "check", "--node", "node-a", "--valid-ids", ids_s]);
    assert_eq!(out.rc, 0, "{out}");
    // The same report again: nothing left to release, and nothing re-assigned since is touched.
    let out = ctl.ok(&["ipam", "release", "--from-report", report_s]);
    assert!(out.contains("Released 0 IPs successfully\n50 addresses marked as leaked in the report had already been cleaned up."), "{out}");
    assert_eq!(ctl.ok(&["ipam", "release", "--ip", &borrowed_ip]), format!("Successfully released IP address {borrowed_ip}\n"));
    let out = ctl.run(&["ipam", "release", "--ip", &borrowed_ip]);
    assert_eq!((out.rc, out.stderr.trim().to_string()), (1, format!("IP address {borrowed_ip} is not assigned")));

    // configure and the rules it enforces.
    assert_eq!(
        ctl.ok(&["ipam", "configure", "--strictaffinity=true", "--max-blocks-per-host", "3"]),
        "Successfully set StrictAffinity to: true\nSuccessfully set MaxBlocksPerHost to: 3\n"
    );
    let cfg = json_of(ctl, &["ipam", "show", "--show-configuration", "-o", "json"]);
    assert_eq!((cfg["strict_affinity"].as_bool(), cfg["maxBlocksPerHost"].as_u64()), (Some(true), Some(3)), "{cfg}");
    let table = ctl.ok(&["ipam", "show", "--show-configuration"]);
    assert!(table.contains("| StrictAffinity     | true  |\n| AutoAllocateBlocks | true  |\n| MaxBlocksPerHost   | 3     |\n"), "{table}");
    let out = ctl.run(&["ipam", "configure", "--strictaffinity=false"]);
    assert!(out.rc == 1 && out.stderr.contains("maxBlocksPerHost > 0 needs strictAffinity=true"), "{out}");
    let out = ctl.run(&["ipam", "configure", "--strictaffinity=maybe"]);
    assert_eq!(out.stderr.trim(), "invalid value. Use true or false to set strictaffinity");
    ctl.ok(&["ipam", "configure", "--max-blocks-per-host", "0", "--strictaffinity=false"]);

    // A pool in use is not deleted; an empty one goes with its blocks and affinities.
    let out = ctl.run(&["delete", "ippool", "op-pool"]);
    assert!(out.rc == 1 && out.stderr.contains("in use"), "{out}");
    for i in 0..50 {
        let (rc, out, err) = a.run("DEL", &format!("a{i}"));
        assert_eq!(rc, 0, "{out} {err}");
    }
    ctl.ok(&["delete", "ippool", "op-pool"]);
    assert_eq!(json_of(ctl, &["ipam", "show", "-o", "json"])["pools"][0]["name"], "default-ipv4-ippool", "only the implicit default is left");
    let out = ctl.run(&["ipam", "check"]);
    assert_eq!(out.rc, 0, "{out}");
    // The indexes rebuilt from the blocks agree with the check.
    assert!(ctl.ok(&["ipam", "rebuild-index"]).starts_with("Rebuilt the pool and host indexes from"));
    assert_eq!(ctl.run(&["ipam", "check"]).rc, 0);
}

/// `calicoctl delete node` as Calico's: the node's addresses, affinities, node-scoped BGPPeers and its
/// `node.<name>` BGPConfiguration go with it; a block it owned that holds another node's address stays.
fn node_delete(ctl: &Ctl, net_for: &dyn Fn(&str) -> Net) {
    ctl.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: del-pool\nspec:\n  cidr: 10.75.0.0/27\n  blockSize: 28\n",
    );
    // Two blocks of 16: node-d claims one; node-c fills the other and borrows from node-d's.
    let (c, d) = (net_for("node-c"), net_for("node-d"));
    let d0 = d.add("d0");
    let c_ips: Vec<String> = (0..17).map(|i| c.add(&format!("c{i}"))).collect();
    let lent = &c_ips[16];
    let block_of = |ip: &str| json_of(ctl, &["ipam", "show", "--ip", ip, "-o", "json"]);
    assert_eq!(block_of(lent)["block"], block_of(&d0)["block"], "c16 is borrowed from node-d's block");
    let mut docs = String::new();
    for (name, ip) in [("node-c", "192.0.2.3/24"), ("node-d", "192.0.2.4/24")] {
        docs += &format!("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  bgp:\n    ipv4Address: {ip}\n---\n");
    }
    docs += "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: d-tor\nspec:\n  node: node-d\n  peerIP: 192.0.2.254\n  asNumber: 64600\n---\n";
    docs += "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: all-tor\nspec:\n  peerIP: 192.0.2.253\n  asNumber: 64600\n---\n";
    docs += "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: node.node-d\nspec:\n  logSeverityScreen: Debug\n";
    ctl.ok_stdin(&["apply", "-f", "-"], &docs);

    assert_eq!(ctl.ok(&["delete", "node", "node-d"]), "Successfully deleted 1 'Node' resource(s)\n");
    assert_eq!(ctl.ok(&["ipam", "show", "--ip", &d0]), format!("{d0} is not assigned\n"), "node-d's pod address is released");
    assert_eq!(block_of(lent)["handle"], "test-net.c16", "node-c's borrowed address is kept");
    let peers = json_of(ctl, &["get", "bgppeers", "-o", "json"]);
    let names: Vec<&str> = peers["items"].as_array().into_iter().flatten().filter_map(|p| p["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["all-tor"], "only node-d's own peer goes");
    assert_eq!(ctl.run(&["get", "bgpconfiguration", "node.node-d"]).rc, 1);
    let out = ctl.run(&["ipam", "check"]);
    assert_eq!(out.rc, 0, "{out}");
    // No block is free: a node of the same name borrows from the unaffine block, as any node may.
    let d1 = d.add("d1");
    assert_eq!(block_of(&d1)["block"], block_of(lent)["block"], "{d1}");
    assert_eq!(d.run("DEL", "d1").0, 0);

    assert_eq!(ctl.ok(&["delete", "node", "node-c"]), "Successfully deleted 1 'Node' resource(s)\n");
    let pools = json_of(ctl, &["ipam", "show", "-o", "json"]);
    let pool = pools["pools"].as_array().into_iter().flatten().find(|p| p["name"] == "del-pool").cloned().unwrap_or_default();
    assert_eq!(pool["inUse"], "0", "{pools}");
    let out = ctl.run(&["ipam", "check"]);
    assert_eq!(out.rc, 0, "{out}");
    ctl.ok(&["delete", "ippool", "del-pool"]);
    let out = ctl.run(&["delete", "node", "node-c"]);
    assert_eq!(out.rc, 1, "{out}");
}

#[test]
fn ipam_commands_on_the_local_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let ctl = Ctl::local(&dir);
    flow(&ctl, &|node| Net::local(&dir, node), tmp.path());
    node_delete(&ctl, &|node| Net::local(&dir, node));
}

#[test]
fn ipam_commands_on_etcd() {
    if !available("ipam_commands_on_etcd") {
        return;
    }
    let etcd = Etcd::start(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let eps = etcd.endpoints_csv();
    let lock = tmp.path().join("ipam.lock");
    let ctl = Ctl::etcd(&eps);
    flow(&ctl, &|node| Net::etcd(&eps, &lock, node), tmp.path());
    node_delete(&ctl, &|node| Net::etcd(&eps, &lock, node));
}
