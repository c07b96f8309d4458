//! Without `mtu` in the config, cni-calico uses the MTU Calico's node agent wrote to /var/lib/calico/mtu.
//! Each run gets a /var/lib of its own: the plugin runs under `unshare --mount` with a tmpfs over /var/lib,
//! so the machine's /var/lib/calico is neither read nor written (and need not exist).
mod support;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use support::*;

/// Installs `cni-calico-mtu` on the node: cni-calico in a private mount namespace whose /var/lib/calico/mtu
/// holds `$CRS_MTU_FILE` (no file when the variable is unset). Gone when the plugin exits.
fn install_wrapper(node: &Node) -> &'static str {
    let script = format!(
        r#"#!/bin/sh
exec unshare --mount --propagation private sh -c '
mount -n -t tmpfs crs-mtu-test /var/lib || exit 97
mkdir /var/lib/calico || exit 97
if [ -n "${{CRS_MTU_FILE+set}}" ]; then printf "%s" "$CRS_MTU_FILE" > /var/lib/calico/mtu || exit 97; fi
exec "$0"' {}
"#,
        target_dir().join("cni-calico").display()
    );
    let path = node.bin.join("cni-calico-mtu");
    std::fs::write(&path, script).expect("write wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
    "cni-calico-mtu"
}

/// cni-calico without `mtu` over cni-ipam (its default pool); CNI 1.1, whose result carries the container
/// interface's MTU.
fn conf(node: &Node, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "crs-mtu", "type": "cni-calico", "log_level": "debug", "log_file_path": node.path("cni.log"),
        "ipam": {"type": "cni-ipam", "nodename": "node-mtu", "local_store_dir": node.path("store")}});
    for (k, v) in extra.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

fn link_mtu(node: &Node, ns: &str, link: &str) -> u32 {
    let out = node.ip_in(ns, &["-o", "link", "show", link]);
    let word = out.split_whitespace().skip_while(|w| *w != "mtu").nth(1);
    word.and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("no mtu in {out}"))
}

/// Handles in the IPAM store: one per container holding addresses.
fn allocated(node: &Node) -> usize {
    let handles = std::fs::read_dir(node.path("store")).map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().contains("handle")).count());
    handles.unwrap_or(0)
}

#[test]
fn mtu_comes_from_the_config_then_the_node_agents_file_then_1500() {
    if !root_or_skip("mtu_file") {
        return;
    }
    let mut node = Node::new("mtu");
    let plugin = install_wrapper(&node);
    // (config extra, file content or None for no file, expected MTU of both ends)
    let cases = [
        (json!({}), Some("1440\n"), 1440),
        (json!({}), None, 1500),
        (json!({"mtu": 1400}), Some("1440"), 1400),
        (json!({"require_mtu_file": true}), Some("9000"), 9000),
        (json!({}), Some("0"), 1500),
    ];
    for (i, (extra, file, want)) in cases.into_iter().enumerate() {
        let c = conf(&node, extra.clone());
        let pod = node.pod();
        let cid = format!("mtu{i}");
        let env: Vec<(&str, &str)> = file.map(|f| ("CRS_MTU_FILE", f)).into_iter().collect();
        let res = node.run(plugin, "ADD", &cid, Some(&pod), "eth0", &env, &c).ok().json;
        let host_if = res["interfaces"][0]["name"].as_str().expect("host interface").to_string();
        let what = format!("config {extra}, file {file:?}");
        assert_eq!(link_mtu(&node, &pod, "eth0"), want, "pod eth0, {what}");
        assert_eq!(link_mtu(&node, &node.name, &host_if), want, "host veth {host_if}, {what}");
        assert_eq!(res["interfaces"][1]["mtu"], want, "result, {what}: {res}");
        // DEL does not read the file: a broken one must not keep the runtime from cleaning up.
        node.run(plugin, "DEL", &cid, Some(&pod), "eth0", &[("CRS_MTU_FILE", "garbage")], &with_prev(&c, &res)).ok();
    }
    assert_eq!(allocated(&node), 0);

    // A file that holds no MTU is an error naming it; require_mtu_file without the file is "try again later".
    // Either way the ADD fails before anything is made or allocated.
    let refused = [
        (json!({}), Some("garbage"), 7, "/var/lib/calico/mtu: \"garbage\" is not an MTU"),
        (json!({}), Some("20"), 7, "/var/lib/calico/mtu: \"20\" is not an MTU"),
        (json!({"mtu": 1400}), Some("garbage"), 7, "/var/lib/calico/mtu"),
        (json!({"require_mtu_file": true}), None, 11, "MTU file /var/lib/calico/mtu does not exist and require_mtu_file is true"),
    ];
    for (extra, file, code, msg) in refused {
        let pod = node.pod();
        let env: Vec<(&str, &str)> = file.map(|f| ("CRS_MTU_FILE", f)).into_iter().collect();
        let out = node.run(plugin, "ADD", "mtu-bad", Some(&pod), "eth0", &env, &conf(&node, extra.clone())).err(code);
        assert!(out.json["msg"].as_str().unwrap_or_default().contains(msg), "config {extra}, file {file:?}: {}", out.stdout);
        assert!(!try_ip(&["-n", &pod, "link", "show", "eth0"]), "veth left: config {extra}, file {file:?}");
        assert_eq!(allocated(&node), 0, "address allocated: config {extra}, file {file:?}");
    }
    assert_eq!(node.ip_in(&node.name, &["-o", "link"]).lines().count(), 2, "only lo and the uplink remain");
}
