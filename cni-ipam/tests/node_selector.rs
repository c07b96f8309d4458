//! Pool `nodeSelector`s in Calico's whole selector language, through the built binary: the node's labels come
//! from its Node resource when it has one (as in Calico), else from the network config's `ipam.node_labels`,
//! and only pools whose selector matches them, which allow Workload use and are Automatic, are used. (An invalid
//! selector is refused by `calicoctl apply`: calicoctl/tests/bad_input.rs.)
mod support;
use serde_json::json;
use support::*;

fn pool_with_selector(name: &str, cidr: &str, selector: &str) -> serde_json::Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
           "spec": {"cidr": cidr, "blockSize": 28, "nodeSelector": selector}})
}

fn net(store: &std::path::Path, node: &str, labels: serde_json::Value) -> Net {
    let mut n = Net::new(store, node);
    n.ipam_extra = json!({"node_labels": labels});
    n
}

#[test]
fn pools_are_chosen_by_full_selectors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    load(
        &store,
        tmp.path(),
        vec![
            pool_with_selector("racks", "10.70.0.0/24", "rack == 'r1' || projectcalico.org/rack in {\"r2\", 'r3',}"),
            pool_with_selector("others", "10.71.0.0/24", "!has(rack) && projectcalico.org/rack not in {'r2', 'r3'}"),
            pool_with_selector("nowhere", "10.72.0.0/24", "rack in {}"),
        ],
    );
    let fs = datastore::store::FileStore::open(&store).expect("open store");
    let pools = cni_ipam::ipam::admin::stored_pools(&*datastore::store::Datastore::lock(&fs).expect("lock")).expect("pools");
    assert_eq!(pools[0].node_selector.source, "rack == 'r1' || projectcalico.org/rack in {\"r2\", 'r3',}", "stored as written");
    drop(fs);

    for (node, labels, want) in [
        ("node-1", json!({"rack": "r1"}), "10.70.0."),
        ("node-2", json!({"projectcalico.org/rack": "r3", "zone": "z"}), "10.70.0."),
        ("node-3", json!({"projectcalico.org/rack": "r9"}), "10.71.0."),
        ("node-4", json!({}), "10.71.0."),
    ] {
        let (ip, _) = net(&store, node, labels.clone()).add(&format!("c-{node}"));
        assert!(ip.starts_with(want), "{node} {labels}: got {ip}, want {want}*");
    }
    // A node both selectors exclude has no pool: Calico's "no configured Calico pools for node" (code 103).
    let (rc, out, err) = net(&store, "node-5", json!({"rack": "r7"})).run("ADD", "c-node-5", "");
    assert_ne!(rc, 0, "{out} {err}");
    assert_eq!(out["code"].as_u64(), Some(103), "{out}");
    assert!(out["msg"].as_str().unwrap_or_default().contains("node-5"), "{out}");
    assert_consistent(&store);
}

/// Pools for the model tests: one by rack label, one Manual, one for tunnels only, one for nodes without a rack.
fn model_pools() -> Vec<serde_json::Value> {
    let mut manual = pool_with_selector("manual", "10.81.0.0/24", "all()");
    manual["spec"]["assignmentMode"] = "Manual".into();
    let mut tunnels = pool_with_selector("tunnels", "10.82.0.0/24", "all()");
    tunnels["spec"]["allowedUses"] = json!(["Tunnel"]);
    vec![pool_with_selector("rack1", "10.80.0.0/24", "rack == 'r1'"), manual, tunnels, pool_with_selector("fallback", "10.83.0.0/24", "!has(rack)")]
}

fn node_resource(name: &str, labels: serde_json::Value) -> datastore::store::Json {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name, "labels": labels},
           "spec": {"bgp": {"ipv4Address": "10.250.0.1/24"}}, "status": {}})
    .into()
}

/// What both stores must do: Node resource labels win over the config's, which stay the fallback; Manual pools
/// only when named; a Tunnel-only pool never for a pod, and named for one, an error saying so.
fn pools_follow_the_model(store: &dyn datastore::store::Datastore, net: impl Fn(&str, serde_json::Value, serde_json::Value) -> Net) {
    use datastore::resources::kinds::NODE;
    use datastore::store::Key;
    let res = cni_ipam::ipam::admin::parse_resources(&json!({"kind": "List", "items": model_pools()}).to_string()).expect("pools");
    cni_ipam::ipam::admin::apply(&mut *store.lock().expect("lock"), &res).expect("apply pools");
    {
        let mut s = store.lock().expect("lock");
        s.create(&Key::resource(&NODE, "node-1"), node_resource("node-1", json!({"rack": "r1"}))).expect("node-1");
        s.create(&Key::resource(&NODE, "node-3"), node_resource("node-3", json!({"zone": "z"}))).expect("node-3");
    }
    for (node, conf_labels, want) in
        [("node-1", json!({}), "10.80.0."), ("node-2", json!({"rack": "r1"}), "10.80.0."), ("node-3", json!({"rack": "r1"}), "10.83.0.")]
    {
        let (ip, _) = net(node, conf_labels, json!({})).add(&format!("m-{node}"));
        assert!(ip.starts_with(want), "{node}: got {ip}, want {want}*");
    }
    let (ip, _) = net("node-3", json!({}), json!({"ipv4_pools": ["manual"]})).add("m-manual");
    assert!(ip.starts_with("10.81.0."), "a Manual pool when named: {ip}");
    let (rc, out, _) = net("node-3", json!({}), json!({"ipv4_pools": ["tunnels"]})).run("ADD", "m-tunnel", "");
    assert_ne!(rc, 0, "{out}");
    assert_eq!(out["code"].as_u64(), Some(103), "{out}");
    assert!(out["msg"].as_str().unwrap_or_default().contains("does not allow Workload"), "{out}");
}

#[test]
fn pools_follow_node_resources_and_pool_uses_on_the_local_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let store = datastore::store::FileStore::open(&dir).expect("store");
    pools_follow_the_model(&store, |node, labels, extra| {
        let mut n = net(&dir, node, labels);
        for (k, v) in extra.as_object().into_iter().flatten() {
            n.ipam_extra[k] = v.clone();
        }
        n
    });
    assert_consistent(&dir);
}

#[test]
fn pools_follow_node_resources_and_pool_uses_on_etcd() {
    if !testbed::etcd::available("pools_follow_node_resources_and_pool_uses_on_etcd") {
        return;
    }
    let etcd = testbed::etcd::Etcd::start(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("unused");
    let store = etcd.store();
    pools_follow_the_model(&store, |node, labels, extra| {
        let mut n = net(&dir, node, labels);
        n.ipam_extra["datastore_type"] = "etcdv3".into();
        n.ipam_extra["etcd_endpoints"] = etcd.endpoints_csv().into();
        n.ipam_extra["ipam_lock_file"] = tmp.path().join("ipam.lock").display().to_string().into();
        for (k, v) in extra.as_object().into_iter().flatten() {
            n.ipam_extra[k] = v.clone();
        }
        n
    });
}
