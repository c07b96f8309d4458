//! Pool `nodeSelector`s in Calico's whole selector language, through the built binary: the node's labels come
//! from the network config's `ipam.node_labels`, and only pools whose selector matches them are used. (An
//! invalid selector is refused by `calicoctl apply`: calicoctl/tests/bad_input.rs.)
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
