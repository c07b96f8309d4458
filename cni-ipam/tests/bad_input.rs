//! Malformed configs, CIDRs, block sizes, pool names and args: each gives its CNI error (stdout JSON, right
//! code, a message naming the problem, non-zero exit) and leaves the store byte-for-byte unchanged. Bad pool
//! files are calicoctl's now (calicoctl/tests/bad_input.rs).
mod support;
use serde_json::json;
use support::*;

#[test]
fn bad_plugin_input_is_rejected_without_touching_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    load(&store, tmp.path(), vec![pool("good-pool", "10.80.0.0/24", 28)]);
    let net = Net::new(&store, "node-1");
    net.add("existing");
    let (_, out, _) = net.run("ADD", "existing2", "IP=10.80.0.200");
    assert!(out["ips"].is_array(), "{out}");
    let before = snapshot(&store);

    let with_ipam = |extra: serde_json::Value| {
        let mut n = Net::new(&store, "node-1");
        n.ipam_extra = extra;
        n.config().to_string()
    };
    let cases: Vec<(&str, String, &str, u64, &str)> = vec![
        ("not JSON", "{\"cniVersion\": ".into(), "", 6, ""),
        ("no ipam section", json!({"cniVersion": "1.0.0", "name": "n", "type": "x"}).to_string(), "", 7, "ipam"),
        ("assign_ipv4 not a string", with_ipam(json!({"assign_ipv4": true})), "", 7, "assign_ipv4"),
        ("pool CIDR prefix too long", with_ipam(json!({"ipv4_pools": ["10.80.0.0/33"]})), "", 7, "ipv4_pools[0]"),
        ("pool CIDR with host bits", with_ipam(json!({"ipv4_pools": ["10.80.0.1/24"]})), "", 7, "host bits"),
        ("IPv6 CIDR as IPv4 pool", with_ipam(json!({"ipv4_pools": ["fd00::/48"]})), "", 7, "not an IPv4"),
        ("malformed pool name", with_ipam(json!({"ipv4_pools": ["Bad_Pool!"]})), "", 7, "invalid pool name"),
        ("unknown pool", with_ipam(json!({"ipv4_pools": ["no-such-pool"]})), "", 103, "not found"),
        ("unknown pool CIDR", with_ipam(json!({"ipv4_pools": ["10.99.0.0/24"]})), "", 103, "not found"),
        ("no IPv6 pool", with_ipam(json!({"assign_ipv6": "true"})), "", 103, "no IPv6"),
        ("nothing to assign", with_ipam(json!({"assign_ipv4": "false"})), "", 7, "nothing to assign"),
        ("nodename with a slash", with_ipam(json!({"nodename": "../../etc"})), "", 7, "nodename"),
        ("relative store dir", with_ipam(json!({"local_store_dir": "store"})), "", 7, "absolute"),
        ("etcd without endpoints", with_ipam(json!({"datastore_type": "etcdv3"})), "", 7, "etcd_endpoints"),
        ("unknown datastore", with_ipam(json!({"datastore_type": "kubernetes"})), "", 7, "not supported"),
        ("etcd endpoint without scheme", with_ipam(json!({"datastore_type": "etcdv3", "etcd_endpoints": "10.0.0.1:2379"})), "", 7, "etcd_endpoints"),
        ("bad node labels", with_ipam(json!({"node_labels": ["a"]})), "", 7, "node_labels"),
        ("IP not an address", net.config().to_string(), "IP=10.80.0.300", 4, "IP="),
        ("IP outside every pool", net.config().to_string(), "IP=10.99.0.1", 105, "not in any enabled IP pool"),
        ("IP already taken", net.config().to_string(), "IP=10.80.0.200", 104, "already assigned"),
        ("two IPv4 addresses", net.config().to_string(), "IP=10.80.0.5,10.80.0.6", 4, "more than one"),
    ];
    for (what, stdin, args, code, msg) in cases {
        let (rc, out, err) = net.run_raw("ADD", "bad", args, stdin.as_bytes());
        assert_ne!(rc, 0, "{what}: should fail");
        assert_eq!(out["code"].as_u64(), Some(code), "{what}: {out} {err}");
        let text = out["msg"].as_str().unwrap_or_default();
        assert!(text.contains(msg), "{what}: message {text:?} should mention {msg:?}");
        assert_eq!(snapshot(&store), before, "{what}: store changed");
    }
    // No container ID: a missing variable, named, code 4 (not 3, "container unknown").
    for verb in ["ADD", "DEL", "CHECK"] {
        let (rc, out, _) = net.run_raw(verb, "", "", net.config().to_string().as_bytes());
        assert_ne!(rc, 0, "{verb} without CNI_CONTAINERID should fail");
        assert_eq!(out["code"].as_u64(), Some(4), "{verb}: {out}");
        assert!(out["msg"].as_str().unwrap_or_default().contains("CNI_CONTAINERID"), "{verb}: {out}");
    }
    assert_eq!(snapshot(&store), before, "store changed");
}
