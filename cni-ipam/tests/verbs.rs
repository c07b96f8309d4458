//! Each CNI verb through the binary: result shape, DEL idempotence and the fallback handle, CHECK, STATUS
//! and GC with and without `cni.dev/valid-attachments`.
mod support;
use serde_json::json;
use support::*;

fn dual_stack_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    load(&store, tmp.path(), vec![pool("v4", "10.100.0.0/16", 26), pool("v6", "fd00:100::/48", 122)]);
    (tmp, store)
}

#[test]
fn dual_stack_add_result_and_idempotent_del() {
    let (_tmp, store) = dual_stack_store();
    let mut net = Net::new(&store, "node-1");
    net.ipam_extra = json!({"assign_ipv6": "true", "ipv4_pools": ["v4"], "ipv6_pools": ["fd00:100::/48"]});
    let (rc, out, err) = net.run("ADD", "c1", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;IgnoreUnknown=1");
    assert_eq!(rc, 0, "{out} {err}");
    assert_eq!(out["cniVersion"], "1.0.0");
    let v4 = out["ips"][0]["address"].as_str().unwrap_or_default();
    let v6 = out["ips"][1]["address"].as_str().unwrap_or_default();
    assert!(v4.starts_with("10.100.") && v4.ends_with("/26"), "{out}");
    assert!(v6.starts_with("fd00:100:") && v6.ends_with("/122"), "{out}");
    assert!(out["ips"][0].get("gateway").is_none() && out["ips"][0].get("interface").is_none());
    // Calico's IPAM: one route per address, its dst the address as in ips (block mask, host bits kept).
    assert_eq!(out["routes"], json!([{"dst": v4}, {"dst": v6}]), "{out}");
    assert_eq!(assert_consistent(&store).allocations, 2);

    assert_eq!(net.run("CHECK", "c1", "").0, 0);
    assert_eq!(net.run("DEL", "c1", "").0, 0);
    assert_eq!(assert_consistent(&store).allocations, 0);
    assert_eq!(net.run("DEL", "c1", "").0, 0, "DEL again is fine");
    assert_ne!(net.run("CHECK", "c1", "").0, 0, "CHECK after DEL fails");
}

/// What calico-ipam answers, per request kind (Calico's cni-plugin/pkg/ipamplugin/ipam_plugin.go): auto-assigned
/// addresses carry the block mask, requested ones /32 and /128; each address gets one route whose dst is
/// exactly that address.
#[test]
fn results_match_calico_for_every_request_kind() {
    let (_tmp, store) = dual_stack_store();
    let mut net = Net::new(&store, "node-1");
    net.ipam_extra = json!({"assign_ipv6": "true"});
    let result = |cid: &str, args: &str, stdin: serde_json::Value| {
        let (rc, out, err) = net.run_raw("ADD", cid, args, stdin.to_string().as_bytes());
        assert_eq!(rc, 0, "{cid}: {out} {err}");
        let ips: Vec<&str> = out["ips"].as_array().expect("ips").iter().map(|i| i["address"].as_str().unwrap_or_default()).collect();
        let routes: Vec<&str> = out["routes"].as_array().expect("routes").iter().map(|r| r["dst"].as_str().unwrap_or_default()).collect();
        assert_eq!(ips, routes, "{cid}: one route per address, dst = the address: {out}");
        ips.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let conf = net.config();
    // Twice, so the second pair is not its blocks' network addresses (which a block-network route would equal).
    result("auto", "", conf.clone());
    let auto = result("auto2", "", conf.clone());
    assert!(auto[0].starts_with("10.100.") && auto[0].ends_with("/26") && auto[1].ends_with("/122"), "{auto:?}");
    let v4: ipnet::IpNet = auto[0].parse().expect("v4");
    assert_ne!(v4, v4.trunc(), "route dst keeps the host bits, as calico-ipam's: {auto:?}");
    assert_eq!(result("ip-arg", "IP=10.100.7.7", conf.clone()), ["10.100.7.7/32"]);
    assert_eq!(result("ip-arg-prefix", "IP=10.100.7.8/16", conf.clone()), ["10.100.7.8/32"], "a given prefix is ignored");
    assert_eq!(result("ip-arg-dual", "IP=10.100.7.9,fd00:100::7:9", conf.clone()), ["10.100.7.9/32", "fd00:100::7:9/128"]);
    let mut rc = conf.clone();
    rc["runtimeConfig"] = json!({"ips": ["fd00:100::7:10/64", "10.100.7.10/24"]});
    assert_eq!(result("runtime-config", "", rc), ["fd00:100::7:10/128", "10.100.7.10/32"], "in the order asked");
    let mut args = conf.clone();
    args["args"] = json!({"cni": {"ips": ["10.100.7.11"]}});
    assert_eq!(result("cni-args", "", args), ["10.100.7.11/32"], "only what was asked, no IPv6 beside it");
    assert_eq!(assert_consistent(&store).allocations, 11);
}

/// The `ips` capability (`runtimeConfig.ips`) and the args convention (`args.cni.ips`) are honoured like `IP=`;
/// sources add up, disagreeing or malformed ones are errors naming the keys, and a refused ADD writes nothing.
#[test]
fn requested_addresses_from_runtime_config_and_cni_args() {
    let (_tmp, store) = dual_stack_store();
    let net = Net::new(&store, "node-1");
    let with = |extra: serde_json::Value| {
        let mut c = net.config();
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c.to_string()
    };
    let (rc, out, err) = net.run_raw("ADD", "c1", "", with(json!({"runtimeConfig": {"ips": ["10.100.9.1"]}})).as_bytes());
    assert_eq!(rc, 0, "{out} {err}");
    assert_eq!(out["ips"], json!([{"address": "10.100.9.1/32"}]));
    // The same address through every source at once is one request.
    let all = with(json!({"runtimeConfig": {"ips": ["10.100.9.2/26"]}, "args": {"cni": {"ips": ["10.100.9.2"]}}}));
    let (rc, out, err) = net.run_raw("ADD", "c2", "IgnoreUnknown=1;IP=10.100.9.2", all.as_bytes());
    assert_eq!(rc, 0, "{out} {err}");
    assert_eq!(out["ips"], json!([{"address": "10.100.9.2/32"}]));
    // DEL with the same runtimeConfig (podman sends it again) releases as usual.
    assert_eq!(net.run_raw("DEL", "c2", "IP=10.100.9.2", all.as_bytes()).0, 0);
    assert_eq!(assert_consistent(&store).allocations, 1);

    let before = snapshot(&store);
    let cases = [
        (with(json!({"runtimeConfig": {"ips": ["10.100.9.3"]}})), "IP=10.100.9.4", 7, "IP=10.100.9.4 and runtimeConfig.ips[0] 10.100.9.3"),
        (with(json!({"runtimeConfig": {"ips": ["fd00:100::1"]}, "args": {"cni": {"ips": ["fd00:100::2"]}}})), "", 7, "args.cni.ips[0]"),
        (with(json!({"runtimeConfig": {"ips": ["10.100.9.300"]}})), "", 7, "runtimeConfig.ips[0]"),
        (with(json!({"runtimeConfig": {"ips": "10.100.9.5"}})), "", 7, "runtimeConfig.ips must be a list"),
        (with(json!({"args": {"cni": {"ips": [42]}}})), "", 7, "args.cni.ips[0]"),
        (with(json!({"runtimeConfig": {"ips": ["10.100.9.1"]}})), "", 104, "already assigned"),
    ];
    for (stdin, args, code, msg) in cases {
        let (rc, out, err) = net.run_raw("ADD", "bad", args, stdin.as_bytes());
        assert_ne!(rc, 0, "{stdin}: should fail");
        assert_eq!(out["code"].as_u64(), Some(code), "{stdin}: {out} {err}");
        assert!(out["msg"].as_str().unwrap_or_default().contains(msg), "{stdin}: {out} should mention {msg:?}");
        assert_eq!(snapshot(&store), before, "{stdin}: store changed");
    }
}

#[test]
fn del_releases_the_pod_fallback_handle() {
    let (_tmp, store) = dual_stack_store();
    let net = Net::new(&store, "node-1");
    // An allocation made under the workload-ID handle `<namespace>.<pod>` (older Calico, or a CRI id change).
    let mut other = Net::new(&store, "node-1");
    other.name = "default".into();
    let (rc, out, _) = other.run("ADD", "web", "");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(assert_consistent(&store).allocations, 1);
    let (rc, out, _) = net.run("DEL", "new-sandbox", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(assert_consistent(&store).allocations, 0);
}

#[test]
fn gc_and_status() {
    let (_tmp, store) = dual_stack_store();
    let net = Net::new(&store, "node-1");
    for c in ["keep", "stale1", "stale2"] {
        net.add(c);
    }
    let other_node = Net::new(&store, "node-2");
    other_node.add("elsewhere");
    let gc = |extra: serde_json::Value| {
        let mut cfg = net.config();
        cfg["cniVersion"] = "1.1.0".into();
        if let (Some(o), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        net.run_raw("GC", "", "", cfg.to_string().as_bytes())
    };
    // No list: nothing is released (the safe reading of an absent key).
    assert_eq!(gc(json!({})).0, 0);
    assert_eq!(assert_consistent(&store).allocations, 4);
    let (rc, out, err) = gc(json!({"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}));
    assert_eq!(rc, 0, "{out} {err}");
    assert_eq!(assert_consistent(&store).allocations, 2, "stale1/stale2 released; keep and node-2's kept");
    let (rc, out, _) = gc(json!({"cni.dev/valid-attachments": "nope"}));
    assert_eq!((rc, out["code"].as_u64()), (1, Some(7)));

    let mut cfg = net.config();
    cfg["cniVersion"] = "1.1.0".into();
    assert_eq!(net.run_raw("STATUS", "", "", cfg.to_string().as_bytes()).0, 0);
    // A store path that cannot be a directory: not available.
    let file = store.join("..").join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    cfg["ipam"]["local_store_dir"] = file.to_string_lossy().to_string().into();
    let (rc, out, _) = net.run_raw("STATUS", "", "", cfg.to_string().as_bytes());
    assert_eq!((rc, out["code"].as_u64()), (1, Some(50)), "{out}");
}
