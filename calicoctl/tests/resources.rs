//! Calico's example resources (`testdata/resources/`) through the built calicoctl, on the local store and on
//! etcd: applied, read back with `get -o yaml` and compared field by field, listed in calicoctl's tables;
//! on etcd each record sits at Calico's path in Calico's JSON (read with etcdctl). Then the documented patch
//! commands, and the writes' compare-and-swap: create of an existing resource, a stale resourceVersion on
//! replace and patch, labels.
mod support;
use serde_json::{json, Value};
use support::*;
use testbed::etcd::{available, Etcd};

const FILES: &[&str] = &[
    "bgppeer-global.yaml",
    "bgppeer-rack.yaml",
    "bgppeer-node.yaml",
    "bgppeer-route-reflectors.yaml",
    "ippool-ipip.yaml",
    "ippool-ipv6.yaml",
    "node.yaml",
    "bgpconfiguration.yaml",
    "ipamconfiguration.yaml",
    "route-reflector-topology.yaml",
    "pools-and-config.json",
];

fn kind_and_name(v: &Value) -> (String, String) {
    (v["kind"].as_str().unwrap_or_default().to_lowercase(), v["metadata"]["name"].as_str().unwrap_or_default().to_string())
}

fn apply_and_read_back(ctl: &Ctl) {
    for file in FILES {
        let path = testdata(file);
        let wanted = resources(&path);
        let out = ctl.ok(&["apply", "-f", path.to_str().unwrap_or_default()]);
        let kinds: std::collections::BTreeSet<&str> = wanted.iter().filter_map(|w| w["kind"].as_str()).collect();
        let summary = match kinds.iter().next() {
            Some(k) if kinds.len() == 1 => format!("Successfully applied {} '{k}' resource(s)\n", wanted.len()),
            _ => format!("Successfully applied {} resource(s)\n", wanted.len()),
        };
        assert_eq!(out, summary, "{file}");
        for want in &wanted {
            let (kind, name) = kind_and_name(want);
            let got = yaml(&ctl.ok(&["get", &kind, &name, "-o", "yaml"]));
            assert_fields(want, &got, &format!("{file}: {kind}/{name}"));
            let rv = got["metadata"]["resourceVersion"].as_str().unwrap_or_default();
            assert!(rv.parse::<u64>().is_ok_and(|r| r > 0), "{file}: resourceVersion {rv:?}");
            assert_eq!(got["metadata"]["uid"].as_str().map(str::len), Some(36), "{file}: uid");
            assert!(got["metadata"]["creationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{file}");
            // The JSON form says the same.
            assert_fields(want, &ctl.get(&kind, &name), &format!("{file} (json)"));
        }
    }
    // Applied again: an update, same uid.
    let before = ctl.get("bgppeer", "my-global-peer");
    ctl.ok(&["apply", "-f", testdata("bgppeer-global.yaml").to_str().unwrap_or_default()]);
    let after = ctl.get("bgppeer", "my-global-peer");
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    assert_ne!(before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"]);

    // calicoctl's tables (tabwriter: each column its widest cell plus 3, at least 5; then an empty line).
    let peers = ctl.ok(&["get", "bgppeers"]);
    let want = [
        "NAME                         PEERIP         NODE                    ASN     ",
        "my-global-peer               192.20.30.40   (global)                64567   ",
        "peer-with-route-reflectors                  !has(route-reflector)   0       ",
        "rack1-host1-peer             192.20.30.41   rack1-host1             64514   ",
        "rack1-tor                    192.20.30.40   rack == 'rack-1'        64567   ",
        "",
    ];
    assert_eq!(peers, want.join("\n") + "\n", "{peers}");
    let nodes = ctl.ok(&["get", "nodes", "-o", "wide"]);
    assert_eq!(nodes, "NAME     ASN       IPV4            IPV6               \nnode-1   64513     10.10.0.1/24    fd00:10:10::1/64   \nrr-1     (64512)   10.10.0.10/24                      \n\n");
    assert_eq!(ctl.ok(&["get", "nodes"]), "NAME     \nnode-1   \nrr-1     \n\n");
    let pools = ctl.ok(&["get", "ippools", "-o", "wide"]);
    assert!(
        pools.starts_with(
            "NAME         CIDR               NAT     IPIPMODE   VXLANMODE     DISABLED   DISABLEBGPEXPORT   SELECTOR           ASSIGNMENTMODE   \n"
        ),
        "{pools}"
    );
    assert!(
        pools.contains(
            "ipip-pool    10.245.0.0/16      true    Always     Never         false      false              all()              Automatic        \n"
        ),
        "{pools}"
    );
    let cfg = ctl.ok(&["get", "bgpconfig"]);
    // route-reflector-topology.yaml replaced the documented spec; the default object gets Calico's CRD default
    // logSeverityScreen: Info.
    assert_eq!(cfg, "NAME      LOGSEVERITY   MESHENABLED   ASNUMBER   \ndefault   Info          false         64512      \n\n");
    // Lists print as calicoctl's list resources.
    let list: Value = serde_json::from_str(&ctl.ok(&["get", "ippools", "-o", "json"])).expect("json");
    assert_eq!((list["kind"].as_str(), list["items"].as_array().map(Vec::len)), (Some("IPPoolList"), Some(3)));
    let two = ctl.ok(&["get", "bgpp", "rack1-tor", "my-global-peer", "-o", "yaml"]);
    assert!(two.starts_with("- apiVersion: projectcalico.org/v3\n  kind: BGPPeer\n"), "{two}");
    let json_text = ctl.ok(&["get", "bgpp", "rack1-tor", "-o", "json"]);
    assert!(
        json_text
            .starts_with("{\n  \"kind\": \"BGPPeer\",\n  \"apiVersion\": \"projectcalico.org/v3\",\n  \"metadata\": {\n    \"name\": \"rack1-tor\","),
        "{json_text}"
    );

    // The IPAMConfiguration and the IPAM config the allocator reads are one: `ipam configure` changes both.
    let show = ctl.ok(&["ipam", "show", "--show-configuration", "-o", "json"]);
    let cfg: Value = serde_json::from_str(&show).expect("json");
    assert_eq!((cfg["strict_affinity"].as_bool(), cfg["maxBlocksPerHost"].as_u64()), (Some(false), Some(0)), "from pools-and-config.json");
    ctl.ok(&["ipam", "configure", "--strictaffinity=true", "--max-blocks-per-host", "5"]);
    let res = ctl.get("ipamconfig", "default");
    assert_eq!((res["spec"]["strictAffinity"].as_bool(), res["spec"]["maxBlocksPerHost"].as_u64()), (Some(true), Some(5)), "{res}");

    // Deleting by name; then it is gone.
    assert_eq!(ctl.ok(&["delete", "bgppeer", "rack1-host1-peer"]), "Successfully deleted 1 'BGPPeer' resource(s)\n");
    let out = ctl.run(&["get", "bgppeer", "rack1-host1-peer"]);
    assert_eq!((out.rc, out.stderr.trim()), (1, "resource does not exist: BGPPeer(rack1-host1-peer)"), "{out}");
    let out = ctl.run(&["delete", "bgppeer", "rack1-host1-peer"]);
    assert_eq!(out.rc, 1, "{out}");
    assert!(out.stderr.contains("Failed to delete 'BGPPeer' resource") && out.stderr.contains("resource does not exist"), "{out}");
    assert_eq!(ctl.ok(&["delete", "bgppeer", "rack1-host1-peer", "--skip-not-exists"]), "Successfully deleted 1 'BGPPeer' resource(s)\n");
    // delete -f takes the file's resources.
    ctl.ok(&["delete", "-f", testdata("ippool-ipv6.yaml").to_str().unwrap_or_default()]);
    assert_eq!(ctl.run(&["get", "ippool", "ipv6-rack1"]).rc, 1);
}

/// Calico's documented patch commands, and what they change.
fn documented_patches(ctl: &Ctl) {
    ctl.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: my-node\nspec:\n  bgp:\n    ipv4Address: 10.10.0.3/24\n",
    );
    let out = ctl.ok(&["patch", "bgpconfiguration", "default", "-p", r#"{"spec": {"nodeToNodeMeshEnabled": false}}"#]);
    assert_eq!(out, "Successfully patched 1 'BGPConfiguration' resource\n");
    assert_eq!(ctl.get("bgpconfig", "default")["spec"]["nodeToNodeMeshEnabled"], json!(false));
    ctl.ok(&["patch", "node", "node-1", "-p", r#"{"spec": {"bgp": {"asNumber": "64514"}}}"#]);
    let nodes = ctl.ok(&["get", "nodes", "-o", "wide"]);
    assert!(nodes.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()[..2] == ["node-1", "64514"]), "{nodes}");
    assert_eq!(ctl.get("node", "node-1")["spec"]["bgp"]["ipv4Address"], "10.10.0.1/24", "the rest of spec.bgp stays");
    ctl.ok(&["patch", "node", "my-node", "-p", r#"{"spec": {"bgp": {"routeReflectorClusterID": "244.0.0.1"}}}"#]);
    let node = ctl.get("node", "my-node");
    assert_eq!(
        (node["spec"]["bgp"]["routeReflectorClusterID"].as_str(), node["spec"]["bgp"]["ipv4Address"].as_str()),
        (Some("244.0.0.1"), Some("10.10.0.3/24"))
    );
    // merge and json patch types; null removes.
    ctl.ok(&["patch", "node", "my-node", "-t", "merge", "-p", r#"{"spec": {"bgp": {"routeReflectorClusterID": null}}}"#]);
    assert!(ctl.get("node", "my-node")["spec"]["bgp"].get("routeReflectorClusterID").is_none());
    ctl.ok(&["patch", "node", "my-node", "-t", "json", "-p", r#"[{"op": "add", "path": "/metadata/labels", "value": {"rack": "rack-2"}}]"#]);
    assert_eq!(ctl.get("node", "my-node")["metadata"]["labels"], json!({"rack": "rack-2"}));
    let out = ctl.run(&["patch", "node", "nobody", "-p", "{}"]);
    assert_eq!((out.rc, out.stderr.trim()), (1, "hit error: resource does not exist: Node(nobody)"));
}

/// create refuses an existing resource; replace and patch refuse a stale resourceVersion; labels.
fn compare_and_swap(ctl: &Ctl) {
    let before = ctl.snapshot();
    let out = ctl.run(&["create", "-f", testdata("bgppeer-rack.yaml").to_str().unwrap_or_default()]);
    assert_eq!(out.rc, 1, "{out}");
    assert_eq!(
        out.stderr.trim(),
        format!("failed to create 'BGPPeer' resource: {}: resource already exists: BGPPeer(rack1-tor)", testdata("bgppeer-rack.yaml").display())
    );
    assert_eq!(ctl.snapshot(), before, "create of an existing resource changed the store");

    // A copy read now, then changed by someone else: replacing from the copy is refused.
    let stale = ctl.ok(&["get", "bgppeer", "rack1-tor", "-o", "yaml"]);
    ctl.ok(&["label", "bgppeers", "rack1-tor", "zone=a"]);
    let before = ctl.snapshot();
    let out = ctl.run_with(&["replace", "-f", "-"], Some(&stale.replace("asNumber: 64567", "asNumber: 64999")));
    assert_eq!(out.rc, 1, "{out}");
    assert!(out.stderr.contains("update conflict: BGPPeer(rack1-tor): resource version '") && out.stderr.contains("is out of date"), "{out}");
    assert_eq!(ctl.snapshot(), before, "a stale replace changed the store");
    let patch = format!(
        r#"{{"metadata": {{"resourceVersion": {}}}, "spec": {{"asNumber": 64999}}}}"#,
        serde_json::to_string(&yaml(&stale)["metadata"]["resourceVersion"]).unwrap_or_default()
    );
    let out = ctl.run(&["patch", "bgppeer", "rack1-tor", "-p", &patch]);
    assert!(out.rc == 1 && out.stderr.contains("is out of date"), "{out}");
    assert_eq!(ctl.snapshot(), before, "a stale patch changed the store");
    // The current one is taken; without a resourceVersion, replace takes the latest.
    let current = ctl.ok(&["get", "bgppeer", "rack1-tor", "-o", "yaml"]);
    assert_eq!(
        ctl.ok_stdin(&["replace", "-f", "-"], &current.replace("asNumber: 64567", "asNumber: 64999")),
        "Successfully replaced 1 'BGPPeer' resource(s)\n"
    );
    let got = ctl.get("bgppeer", "rack1-tor");
    assert_eq!((got["spec"]["asNumber"].as_u64(), got["metadata"]["labels"]["zone"].as_str()), (Some(64999), Some("a")), "{got}");
    let out = ctl.run_with(
        &["replace", "-f", "-"],
        Some("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: nobody\nspec:\n  peerIP: 192.0.2.9\n  asNumber: 64999\n"),
    );
    assert!(
        out.rc == 1 && out.stderr.contains("failed to replace 'BGPPeer' resource") && out.stderr.contains("resource does not exist: BGPPeer(nobody)"),
        "{out}"
    );

    // Labels: set, refuse to overwrite without --overwrite, overwrite, remove (key- and --remove).
    assert_eq!(ctl.ok(&["label", "nodes", "node-1", "route-reflector=true"]), "Successfully set label route-reflector on nodes node-1\n");
    let before = ctl.snapshot();
    let out = ctl.run(&["label", "nodes", "node-1", "route-reflector=false"]);
    assert_eq!(out.rc, 1);
    assert_eq!(
        out.stderr.trim(),
        "failed to update label of nodes node-1, key route-reflector is already present. please use '--overwrite' to set a new value"
    );
    assert_eq!(ctl.snapshot(), before);
    assert_eq!(
        ctl.ok(&["label", "nodes", "node-1", "route-reflector=false", "--overwrite"]),
        "Successfully updated label route-reflector on nodes node-1\n"
    );
    assert_eq!(ctl.get("node", "node-1")["metadata"]["labels"], json!({"rack": "rack-1", "route-reflector": "false"}));
    assert_eq!(ctl.ok(&["label", "nodes", "node-1", "route-reflector-"]), "Successfully removed label route-reflector from nodes node-1\n");
    assert_eq!(ctl.ok(&["label", "nodes", "node-1", "rack", "--remove"]), "Successfully removed label rack from nodes node-1\n");
    assert!(ctl.get("node", "node-1")["metadata"].get("labels").is_none());
    let out = ctl.run(&["label", "nodes", "node-1", "rack-"]);
    assert_eq!(out.stderr.trim(), "cannot remove label of nodes node-1, key rack does not exist");
    let out = ctl.run(&["label", "nodes", "node-1", "bad key=x"]);
    assert!(out.rc == 1 && out.stderr.contains("not a valid label key"), "{out}");
}

/// A file whose later document cannot be written changes nothing, and says which document.
fn files_are_taken_whole(ctl: &Ctl) {
    let before = ctl.snapshot();
    let file = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: new-peer\nspec:\n  peerIP: 192.0.2.9\n  asNumber: 65001\n---\n\
                apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: my-global-peer\nspec:\n  peerIP: 192.20.30.40\n  asNumber: 64567\n";
    let out = ctl.run_with(&["create", "-f", "-"], Some(file));
    assert_eq!(out.rc, 1, "{out}");
    assert_eq!(out.stderr.trim(), "failed to create any 'BGPPeer' resources: stdin: document 2: resource already exists: BGPPeer(my-global-peer)");
    assert_eq!(ctl.snapshot(), before, "the first document was written");
    assert_eq!(ctl.run(&["get", "bgppeer", "new-peer"]).rc, 1);
    // --skip-exists creates the new one and leaves the existing one.
    assert_eq!(ctl.ok_stdin(&["create", "-f", "-", "--skip-exists"], file), "Successfully created 2 'BGPPeer' resource(s)\n");
    assert_eq!(ctl.get("bgppeer", "new-peer")["spec"]["asNumber"], 65001);
    assert_eq!(ctl.get("bgppeer", "my-global-peer")["spec"]["asNumber"], 64567);
    // validate checks offline.
    assert_eq!(
        ctl.ok(&["validate", "-f", testdata("route-reflector-topology.yaml").to_str().unwrap_or_default()]),
        "Successfully validated 3 resource(s)\n"
    );
}

#[test]
fn examples_patches_and_writes_on_the_local_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctl = Ctl::local(&tmp.path().join("store"));
    apply_and_read_back(&ctl);
    documented_patches(&ctl);
    compare_and_swap(&ctl);
    files_are_taken_whole(&ctl);
}

#[test]
fn examples_patches_and_writes_on_etcd_at_calicos_paths() {
    if !available("examples_patches_and_writes_on_etcd_at_calicos_paths") {
        return;
    }
    let etcd = Etcd::start(1);
    let eps = etcd.endpoints_csv();
    let ctl = Ctl::etcd(&eps);
    apply_and_read_back(&ctl);
    // Each record at /calico/resources/v3/projectcalico.org/<plural>/<name>, in Calico's JSON: the whole
    // object, kind and apiVersion first, no resourceVersion (the revision is etcd's).
    for (path, kind, name) in [
        ("bgppeers/my-global-peer", "BGPPeer", "my-global-peer"),
        ("bgppeers/rack1-tor", "BGPPeer", "rack1-tor"),
        ("ippools/ipip-pool", "IPPool", "ipip-pool"),
        ("nodes/node-1", "Node", "node-1"),
        ("bgpconfigurations/default", "BGPConfiguration", "default"),
        ("ipamconfigurations/default", "IPAMConfiguration", "default"),
    ] {
        let key = format!("/calico/resources/v3/projectcalico.org/{path}");
        let text = etcdctl(&eps, &["get", &key, "--print-value-only"]);
        // `ipam configure` rewrote the IPAMConfiguration through cni-ipam's records (key order is not
        // Calico's there; JSON does not care).
        assert!(
            kind == "IPAMConfiguration"
                || text.starts_with(&format!(
                    "{{\"kind\":\"{kind}\",\"apiVersion\":\"projectcalico.org/v3\",\"metadata\":{{\"name\":\"{name}\",\"uid\":"
                )),
            "{key}: {text}"
        );
        let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{key}: {e}: {text}"));
        assert!(v["metadata"].get("resourceVersion").is_none(), "{key}: {v}");
        assert!(v["metadata"]["creationTimestamp"].is_string() && v["spec"].is_object(), "{key}: {v}");
    }
    let peer: Value =
        serde_json::from_str(etcdctl(&eps, &["get", "/calico/resources/v3/projectcalico.org/bgppeers/rack1-tor", "--print-value-only"]).trim())
            .expect("json");
    assert_eq!(peer["spec"], json!({"peerIP": "192.20.30.40", "asNumber": 64567, "nodeSelector": "rack == 'rack-1'"}));
    // The IPAM config record the allocator reads, beside the resource.
    let cfg: Value = serde_json::from_str(etcdctl(&eps, &["get", "/calico/ipam/v2/config", "--print-value-only"]).trim()).expect("json");
    assert_eq!((cfg["strict_affinity"].as_bool(), cfg["maxBlocksPerHost"].as_u64()), (Some(true), Some(5)), "{cfg}");
    // resourceVersion is etcd's mod_revision.
    let rv = ctl.get("bgppeer", "rack1-tor")["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    let kv: Value =
        serde_json::from_str(&etcdctl(&eps, &["get", "/calico/resources/v3/projectcalico.org/bgppeers/rack1-tor", "-w", "json"])).expect("json");
    assert_eq!(kv["kvs"][0]["mod_revision"].to_string(), rv);
    documented_patches(&ctl);
    compare_and_swap(&ctl);
    files_are_taken_whole(&ctl);
}
