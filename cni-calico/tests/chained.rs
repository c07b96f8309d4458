//! A conflist chain as libcni runs it: cni-calico, then Debian's tuning and portmap, prevResult flowing
//! through on ADD; CHECK forward and DEL in reverse order, all with the final result.
mod support;
use serde_json::{json, Value};
use support::*;

/// The per-plugin config libcni derives from a conflist: the plugin object plus name, cniVersion, prevResult.
fn plugin_conf(list: &Value, i: usize, prev: Option<&Value>) -> Value {
    let mut c = list["plugins"][i].clone();
    c["name"] = list["name"].clone();
    c["cniVersion"] = list["cniVersion"].clone();
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    c
}

#[test]
fn calico_then_tuning_then_portmap() {
    if !root_or_skip("chained") {
        return;
    }
    let mut node = Node::new("chain");
    let pod = node.pod();
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "crs-chain",
        "plugins": [
            {"type": "cni-calico", "mtu": 1450, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.101.0.0/24"}]], "dataDir": node.path("ipam")}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_ignore": "1"}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}}
        ]
    });
    let cid = "chain1";
    let mut prev: Option<Value> = None;
    for (i, plugin) in ["cni-calico", "tuning", "portmap"].iter().enumerate() {
        let conf = plugin_conf(&list, i, prev.as_ref());
        let out = node.run(plugin, "ADD", cid, Some(&pod), "eth0", &[], &conf).ok().json;
        if let Some(p) = &prev {
            // Chained plugins pass our interfaces and addresses through untouched.
            assert_eq!(out["ips"], p["ips"], "{plugin} changed ips");
            assert_eq!(out["interfaces"], p["interfaces"], "{plugin} changed interfaces");
        }
        prev = Some(out);
    }
    let fin = prev.expect("final result");
    assert_eq!(fin["ips"][0]["address"], "10.101.0.2/32");
    assert_eq!(node.sysctl(&pod, "net.ipv4.conf.eth0.arp_ignore"), "1", "tuning ran in the pod");
    let nat = String::from_utf8_lossy(
        &std::process::Command::new("ip").args(["netns", "exec", &node.name, "iptables", "-t", "nat", "-S"]).output().unwrap().stdout,
    )
    .into_owned();
    assert!(nat.contains("--dport 18080") && nat.contains("10.101.0.2:80"), "portmap DNAT for our address: {nat}");

    // Debian's portmap 1.1.1 fails its own CHECK on a v4-only result (it looks for its IPv6 chain), so it is left out.
    for (i, plugin) in ["cni-calico", "tuning"].iter().enumerate() {
        node.run(plugin, "CHECK", cid, Some(&pod), "eth0", &[], &plugin_conf(&list, i, Some(&fin))).ok();
    }
    for (i, plugin) in ["cni-calico", "tuning", "portmap"].iter().enumerate().rev() {
        node.run(plugin, "DEL", cid, Some(&pod), "eth0", &[], &plugin_conf(&list, i, Some(&fin))).ok();
    }
    let nat = String::from_utf8_lossy(
        &std::process::Command::new("ip").args(["netns", "exec", &node.name, "iptables", "-t", "nat", "-S"]).output().unwrap().stdout,
    )
    .into_owned();
    assert!(!nat.contains("18080"), "portmap rules left: {nat}");
    assert!(!try_ip(&["-n", &pod, "link", "show", "eth0"]));
    assert_eq!(node.ip_in(&node.name, &["-o", "link"]).lines().count(), 2);
}

/// A stand-in IPAM plugin that records what it was given and answers like an IPAM plugin.
fn recording_ipam(node: &Node) -> std::path::PathBuf {
    let log = node.path("ipam-calls.log");
    let script = format!(
        r#"#!/bin/sh
{{ printf '%s ' "$CNI_COMMAND"; cat; echo; }} >> {log}
case "$CNI_COMMAND" in
  ADD) echo '{{"cniVersion":"1.1.0","ips":[{{"address":"10.102.0.7/26"}}],"routes":[{{"dst":"10.102.0.0/26"}}]}}' ;;
  STATUS) [ -e {down} ] && {{ echo '{{"code":50,"msg":"store unreachable"}}'; exit 1; }} ;;
esac
exit 0
"#,
        log = log.display(),
        down = node.path("store-down").display()
    );
    let path = node.bin.join("rec-ipam");
    std::fs::write(&path, script).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    log
}

#[test]
fn gc_status_and_routes_are_delegated_to_the_ipam_plugin() {
    if !root_or_skip("delegation") {
        return;
    }
    let mut node = Node::new("deleg");
    let log = recording_ipam(&node);
    let conf = json!({"cniVersion": "1.1.0", "name": "crs-deleg", "type": "cni-calico", "ipam": {"type": "rec-ipam"}});

    // ADD: the IPAM plugin gets our exact stdin; its routes pass through; its block mask becomes /32.
    let pod = node.pod();
    let res = node.run("cni-calico", "ADD", "d1", Some(&pod), "eth0", &[], &conf).ok().json;
    assert_eq!(res["ips"][0]["address"], "10.102.0.7/32");
    assert_eq!(res["routes"], json!([{"dst": "10.102.0.0/26"}]));
    assert_eq!(res["interfaces"][1]["mtu"], 1500, "1.1 results carry the mtu");

    // STATUS: ready, then not ready with the IPAM plugin's code.
    node.run_raw("cni-calico", &[("CNI_COMMAND", "STATUS")], &[], conf.to_string().as_bytes()).ok();
    std::fs::write(node.path("store-down"), "").unwrap();
    let out = node.run_raw("cni-calico", &[("CNI_COMMAND", "STATUS")], &[], conf.to_string().as_bytes()).err(50);
    assert!(out.json["msg"].as_str().unwrap().contains("store unreachable"));

    // GC: the valid attachments reach the IPAM plugin unchanged, under either key name.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "d1", "ifname": "eth0"}]);
    node.run_raw("cni-calico", &[("CNI_COMMAND", "GC")], &[], gc.to_string().as_bytes()).ok();
    let mut gc_old = conf.clone();
    gc_old["cni.dev/attachments"] = json!([{"containerID": "d1", "ifname": "eth0"}]);
    node.run_raw("cni-calico", &[("CNI_COMMAND", "GC")], &[], gc_old.to_string().as_bytes()).ok();

    node.run("cni-calico", "DEL", "d1", Some(&pod), "eth0", &[], &with_prev(&conf, &res)).ok();
    let calls = std::fs::read_to_string(&log).unwrap();
    let verbs: Vec<&str> = calls.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(verbs, ["ADD", "STATUS", "STATUS", "GC", "GC", "DEL"], "{calls}");
    let gc_line = calls.lines().find(|l| l.starts_with("GC")).unwrap();
    let gc_in: Value = serde_json::from_str(gc_line.trim_start_matches("GC ")).unwrap();
    assert_eq!(gc_in["cni.dev/valid-attachments"][0]["containerID"], "d1");
}
