//! Which sessions each node of a topology gets, checked on the IR (`plan(..).peers`), not on the text.
use crate::bird::{plan, BgpSnapshot, NextHop, Peer, PeerOrigin, PlanError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn node(name: &str, v4: Option<&str>, v6: Option<&str>, extra: Value, labels: Value) -> Value {
    let mut bgp = serde_json::Map::new();
    if let Some(a) = v4 {
        bgp.insert("ipv4Address".into(), json!(format!("{a}/24")));
    }
    if let Some(a) = v6 {
        bgp.insert("ipv6Address".into(), json!(format!("{a}/64")));
    }
    if let Value::Object(e) = extra {
        bgp.extend(e);
    }
    json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {"bgp": bgp}})
}

fn v4node(name: &str, ip: &str) -> Value {
    node(name, Some(ip), None, json!({}), json!({}))
}

fn peer(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec})
}

fn config(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": name}, "spec": spec})
}

fn snapshot(me: &str, docs: &[Value]) -> BgpSnapshot {
    let mut s = BgpSnapshot::new(me);
    for d in docs {
        s.add_document(d).unwrap_or_else(|e| panic!("{d}: {e}"));
    }
    s
}

/// Each node's sessions, by node name, then by session name.
fn sessions(docs: &[Value]) -> BTreeMap<String, BTreeMap<String, Peer>> {
    let names: Vec<String> = docs.iter().filter(|d| d["kind"] == "Node").map(|d| d["metadata"]["name"].as_str().unwrap().to_string()).collect();
    names
        .into_iter()
        .map(|n| {
            let c = plan(&snapshot(&n, docs)).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, c.peers.into_iter().map(|p| (p.name.clone(), p)).collect())
        })
        .collect()
}

fn names(s: &BTreeMap<String, Peer>) -> Vec<&str> {
    s.keys().map(String::as_str).collect()
}

fn ip_of(docs: &[Value], node: &str) -> String {
    let d = docs.iter().find(|d| d["metadata"]["name"] == node).unwrap();
    d["spec"]["bgp"]["ipv4Address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

fn mesh_name(ip: &str) -> String {
    format!("Mesh_{}", ip.replace('.', "_"))
}

#[test]
fn a_mesh_has_one_session_per_pair_and_exactly_one_side_waits() {
    // 10.0.0.1 ..= 10.0.0.12: "10.0.0.10" < "10.0.0.9" as strings, so the passive side is not the larger number.
    let docs: Vec<Value> = (1..=12).map(|i| v4node(&format!("n{i:02}"), &format!("10.0.0.{i}"))).collect();
    let all = sessions(&docs);
    for (a, sa) in &all {
        assert_eq!(sa.len(), 11, "{a}: {:?}", names(sa));
        for b in all.keys().filter(|b| *b != a) {
            let (ia, ib) = (ip_of(&docs, a), ip_of(&docs, b));
            let ab = &sa[&mesh_name(&ib)];
            let ba = &all[b][&mesh_name(&ia)];
            assert!(ab.passive != ba.passive, "{a}-{b}: exactly one side passive");
            assert_eq!(ab.passive, ib > ia, "{a} waits for {b} iff {ib:?} > {ia:?} as strings");
            assert!(ab.internal && ab.route_reflector_client.is_none() && ab.source_address == ia.parse().ok());
            assert_eq!(ab.origin, PeerOrigin::Mesh { node: b.clone() });
        }
    }
    assert!(all["n10"]["Mesh_10_0_0_9"].passive && !all["n09"]["Mesh_10_0_0_10"].passive, "10.0.0.10 waits for 10.0.0.9");
}

#[test]
fn the_mesh_is_off_when_disabled_and_route_reflectors_stay_out_of_it() {
    let mut docs = vec![
        v4node("a", "10.0.0.1"),
        v4node("b", "10.0.0.2"),
        node("rr", Some("10.0.0.3"), None, json!({"routeReflectorClusterID": "224.0.0.1"}), json!({})),
    ];
    let all = sessions(&docs);
    assert_eq!(names(&all["a"]), ["Mesh_10_0_0_2"], "the reflector is skipped");
    assert!(all["rr"].is_empty(), "a reflector is in no mesh");
    docs.push(config("default", json!({"nodeToNodeMeshEnabled": false})));
    assert!(sessions(&docs).values().all(|s| s.is_empty()));
}

#[test]
fn peer_selectors_peer_both_ways_unless_reverse_peering_is_manual() {
    let rr = |n: &str, ip: &str, v6: &str| node(n, Some(ip), Some(v6), json!({}), json!({"rr": "yes"}));
    let client = |n: &str, ip: &str, v6: Option<&str>| node(n, Some(ip), v6, json!({}), json!({}));
    let mut docs = vec![
        config("default", json!({"nodeToNodeMeshEnabled": false})),
        rr("rr1", "10.0.0.1", "fd00::1"),
        client("c1", "10.0.0.11", Some("fd00::11")),
        client("c2", "10.0.0.12", None),
        peer("to-rr", json!({"nodeSelector": "!has(rr)", "peerSelector": "has(rr)"})),
    ];
    let all = sessions(&docs);
    assert_eq!(names(&all["c1"]), ["Node_10_0_0_1", "Node_fd00__1"], "both families where both ends have one");
    assert_eq!(names(&all["c2"]), ["Node_10_0_0_1"], "a v4-only client has no v6 session");
    assert_eq!(names(&all["rr1"]), ["Node_10_0_0_11", "Node_10_0_0_12", "Node_fd00__11"], "reverse peerings");
    assert_eq!(all["rr1"]["Node_10_0_0_11"].origin, PeerOrigin::BgpPeer { name: "to-rr".into(), reverse: true });
    assert!(all.values().flat_map(|s| s.values()).all(|p| !p.passive), "Node_ sessions are never passive");
    docs[4] = peer("to-rr", json!({"nodeSelector": "!has(rr)", "peerSelector": "has(rr)", "reversePeering": "Manual"}));
    let manual = sessions(&docs);
    assert!(manual["rr1"].is_empty() && manual["c1"].len() == 2);
}

#[test]
fn a_route_reflector_reflects_to_ibgp_peers_outside_its_cluster() {
    let rr = |n: &str, ip: &str| node(n, Some(ip), None, json!({"routeReflectorClusterID": "224.0.0.1"}), json!({"rr": ""}));
    let docs = vec![
        rr("rr1", "10.0.0.1"),
        rr("rr2", "10.0.0.2"),
        node("other-cluster", Some("10.0.0.3"), None, json!({"routeReflectorClusterID": "224.0.0.2"}), json!({"rr": ""})),
        v4node("c1", "10.0.0.11"),
        node("ebgp", Some("10.0.0.12"), None, json!({"asNumber": 65009}), json!({})),
        peer("clients", json!({"nodeSelector": "has(rr)", "peerSelector": "!has(rr)"})),
        peer("reflectors", json!({"nodeSelector": "has(rr)", "peerSelector": "has(rr)"})),
        peer("tor", json!({"nodeSelector": "has(rr)", "peerIP": "10.0.0.254", "asNumber": 64512})),
        peer("tor-local-as", json!({"nodeSelector": "has(rr)", "peerIP": "10.0.0.253", "asNumber": 64512, "localASNumber": 65000})),
    ];
    let all = sessions(&docs);
    let rr1 = &all["rr1"];
    let client = |name: &str| rr1[name].route_reflector_client.map(|c| c.to_string());
    assert_eq!(names(rr1), ["Node_10_0_0_11", "Node_10_0_0_12", "Node_10_0_0_2", "Node_10_0_0_253", "Node_10_0_0_254", "Node_10_0_0_3"]);
    assert_eq!(client("Node_10_0_0_11").as_deref(), Some("224.0.0.1"), "an iBGP client");
    assert_eq!(client("Node_10_0_0_12"), None, "eBGP: BIRD refuses an eBGP client");
    assert_eq!(client("Node_10_0_0_2"), None, "same cluster ID: plain iBGP");
    assert_eq!(client("Node_10_0_0_3").as_deref(), Some("224.0.0.1"), "another cluster's reflector is a client");
    assert_eq!(client("Node_10_0_0_254").as_deref(), Some("224.0.0.1"), "a non-Calico iBGP peer is a client");
    assert_eq!(client("Node_10_0_0_253"), None, "eBGP through localASNumber");
    let c1 = &all["c1"];
    assert_eq!(
        names(c1),
        ["Mesh_10_0_0_12", "Node_10_0_0_1", "Node_10_0_0_2", "Node_10_0_0_3"],
        "the mesh without reflectors, reverse peerings to them"
    );
    assert!(c1.values().all(|p| p.route_reflector_client.is_none()));
    assert!(!c1["Mesh_10_0_0_12"].internal, "the mesh to another AS is eBGP");
}

#[test]
fn a_cluster_wide_peering_wins_over_a_nodes_and_the_first_bgppeer_by_name_wins_a_key() {
    let docs = vec![
        config("default", json!({"nodeToNodeMeshEnabled": false})),
        v4node("a", "10.0.0.1"),
        peer("a-spine", json!({"node": "a", "peerIP": "10.0.0.254", "asNumber": 65001})),
        peer("a-spine-port", json!({"node": "a", "peerIP": "10.0.0.254:1179", "asNumber": 65001})),
        peer("spine", json!({"peerIP": "10.0.0.254", "asNumber": 65000})),
        peer("b-tor", json!({"node": "a", "peerIP": "10.0.0.250", "asNumber": 65002})),
        peer("a-tor", json!({"node": "a", "peerIP": "10.0.0.250", "asNumber": 65003})),
        peer("self", json!({"peerIP": "10.0.0.1", "asNumber": 64512})),
    ];
    let a = &sessions(&docs)["a"];
    assert_eq!(names(a), ["Global_10_0_0_254", "Node_10_0_0_250", "Node_10_0_0_254_port_1179"], "no session to itself");
    assert_eq!(a["Global_10_0_0_254"].as_number.0, 65000);
    assert_eq!(a["Node_10_0_0_250"].as_number.0, 65003, "a-tor sorts before b-tor");
}

#[test]
fn sessions_to_calico_nodes_use_their_listen_port_and_global_ones_follow_the_passive_rule() {
    let docs = vec![
        config("default", json!({"nodeToNodeMeshEnabled": false, "listenPort": 1790})),
        config("node.b", json!({"listenPort": 1791})),
        v4node("a", "10.0.0.10"),
        v4node("b", "10.0.0.9"),
        v4node("c", "10.0.0.1"),
        peer("to-b", json!({"peerIP": "10.0.0.9", "asNumber": 64512})),
        peer("to-c", json!({"peerIP": "10.0.0.1", "asNumber": 64512})),
        peer("a-to-b", json!({"node": "a", "peerIP": "10.0.0.9", "asNumber": 64512, "reversePeering": "Manual"})),
    ];
    let all = sessions(&docs);
    let a = &all["a"];
    assert_eq!(names(a), ["Global_10_0_0_1_port_1790", "Global_10_0_0_9_port_1791"], "a-to-b gives way to to-b");
    assert!(a["Global_10_0_0_9_port_1791"].passive, "\"10.0.0.9\" > \"10.0.0.10\"");
    assert!(!a["Global_10_0_0_1_port_1790"].passive);
    // to-b's reverse: b peers back with every node (no node/nodeSelector), on their ports.
    assert_eq!(names(&all["b"]), ["Global_10_0_0_1_port_1790", "Node_10_0_0_10_port_1790"]);
}

#[test]
fn keep_original_next_hop_is_for_ebgp_only_and_next_hop_mode_overrides_it() {
    let docs = vec![
        config("default", json!({"nodeToNodeMeshEnabled": false})),
        v4node("a", "10.0.0.1"),
        peer("e", json!({"peerIP": "192.0.2.1", "asNumber": 65000, "keepOriginalNextHop": true})),
        peer("i", json!({"peerIP": "192.0.2.2", "asNumber": 64512, "keepOriginalNextHop": true})),
        peer("s", json!({"peerIP": "192.0.2.3", "asNumber": 65000, "nextHopMode": "Self"})),
    ];
    let a = &sessions(&docs)["a"];
    let nh: Vec<NextHop> = a.values().map(|p| p.next_hop).collect();
    assert_eq!(nh, [NextHop::Keep, NextHop::Auto, NextHop::SelfAddress]);
}

#[test]
fn per_node_as_numbers_make_mesh_sessions_ebgp() {
    let docs = vec![
        config("default", json!({"asNumber": 64600})),
        node("a", Some("10.0.0.1"), None, json!({"asNumber": 65001}), json!({})),
        v4node("b", "10.0.0.2"),
        v4node("c", "10.0.0.3"),
    ];
    let all = sessions(&docs);
    let a = &all["a"];
    assert!(a.values().all(|p| !p.internal && p.as_number.0 == 64600), "{a:?}");
    assert_eq!(all["b"]["Mesh_10_0_0_1"].as_number.0, 65001);
    assert!(all["b"]["Mesh_10_0_0_3"].internal);
}

#[test]
fn nonsense_is_an_error_naming_the_resource() {
    let base = vec![v4node("a", "10.0.0.1")];
    // A selector that does not parse, written around calicoctl.
    let mut s = snapshot("a", &base);
    let bad = peer("broken", json!({"peerIP": "10.0.0.254", "asNumber": 1, "nodeSelector": "rack == 'a' |"}));
    match s.add_document(&bad) {
        Err(PlanError::Resource { kind: "BGPPeer", name, field, .. }) => assert_eq!((name.as_str(), field.as_str()), ("broken", "spec.nodeSelector")),
        other => panic!("{other:?}"),
    }
    // Rules between fields, on a typed resource that never went through validation.
    let mut p: datastore::resources::bgppeer::BgpPeer =
        serde_json::from_value(peer("both", json!({"node": "a", "nodeSelector": "all()", "peerIP": "10.0.0.254", "asNumber": 1}))).unwrap();
    s.bgp_peers.push(p.clone());
    assert!(
        matches!(plan(&s), Err(PlanError::Resource { kind: "BGPPeer", ref name, ref field, .. }) if name == "both" && field == "spec.nodeSelector")
    );
    p.spec.node_selector = None;
    p.spec.keepalive_time = Some("300s".parse().unwrap());
    s.bgp_peers = vec![p];
    let err = plan(&s).unwrap_err();
    assert!(matches!(&err, PlanError::Resource { field, .. } if field == "spec.keepaliveTime"), "{err}");
    assert!(err.to_string().contains("240"), "{err}");

    assert_eq!(plan(&snapshot("z", &base)).unwrap_err(), PlanError::NoSuchNode("z".into()));
    let v6only = snapshot("a", &[node("a", None, Some("fd00::1"), json!({}), json!({}))]);
    assert_eq!(plan(&v6only).unwrap_err(), PlanError::NoRouterId("a".into()));
    let mut pw = snapshot("a", &base);
    pw.passwords.insert(crate::bird::SecretRef { name: "s".into(), key: "k".into() }, "a\"b".into());
    assert!(matches!(plan(&pw), Err(PlanError::Secret { .. })));
}
