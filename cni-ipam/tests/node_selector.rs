//! Pool `nodeSelector`s in Calico's whole selector language, through the built binary: the node's labels come
//! from the network config's `ipam.node_labels`, and only pools whose selector matches them are used.
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
    let (_, out, err) = operator(&store, &["pool", "list"]);
    assert!(out.contains("rack == 'r1' || projectcalico.org/rack in {\"r2\", 'r3',}"), "stored as written: {out} {err}");

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

#[test]
fn an_invalid_selector_names_the_pool_and_the_position() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    load(&store, tmp.path(), vec![pool("good-pool", "10.73.0.0/24", 28)]);
    let before = snapshot(&store);
    for (selector, at) in [("rack == 'r1' | rack == 'r2'", "expected '||' at 13"), ("has(rack", "at 8"), ("rack in {r1}", "at 9")] {
        let file = write_pools(tmp.path(), json!([pool_with_selector("bad-sel", "10.74.0.0/24", selector)]));
        let (rc, out, err) = operator(&store, &["pool", "load", "--file", file.to_str().unwrap_or_default()]);
        assert_ne!(rc, 0, "{selector}: {out}");
        assert!(err.contains("\"bad-sel\"") && err.contains("nodeSelector") && err.contains(at), "{selector}: {err}");
        assert_eq!(snapshot(&store), before, "{selector}: store changed");
    }
    let (rc, _, err) = operator(&store, &["pool", "add", "--name", "x", "--cidr", "10.75.0.0/24", "--node-selector", "a in {'x' 'y'}"]);
    assert_ne!(rc, 0);
    assert!(err.contains("expected ',' or '}' at 10"), "{err}");
    assert_eq!(snapshot(&store), before);
}
