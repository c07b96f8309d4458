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
    let dst4: ipnet::IpNet = out["routes"][0]["dst"].as_str().unwrap_or_default().parse().expect("v4 route");
    let dst6: ipnet::IpNet = out["routes"][1]["dst"].as_str().unwrap_or_default().parse().expect("v6 route");
    assert_eq!(dst4, v4.parse::<ipnet::IpNet>().expect("v4").trunc(), "route = block network");
    assert_eq!(dst6, v6.parse::<ipnet::IpNet>().expect("v6").trunc());
    assert_eq!(assert_consistent(&store).allocations, 2);

    assert_eq!(net.run("CHECK", "c1", "").0, 0);
    assert_eq!(net.run("DEL", "c1", "").0, 0);
    assert_eq!(assert_consistent(&store).allocations, 0);
    assert_eq!(net.run("DEL", "c1", "").0, 0, "DEL again is fine");
    assert_ne!(net.run("CHECK", "c1", "").0, 0, "CHECK after DEL fails");
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
