//! Tests across kinds, through the kinds table as calicoctl and the agent reach them: every example resource
//! in `testdata/resources/*.json` (Calico's documented examples and bgp.md's) is accepted, stored with every
//! field it was given, and validates to itself; issue 12's bad-input list is refused naming the field; and no
//! document, however mangled, makes a validate panic.
use super::kinds::{kind_named, KindInfo, KINDS};
use super::values::{AsNumber, Duration};
use crate::ModelError;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

fn fixtures() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/resources");
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("testdata/resources").filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read fixture")).unwrap_or_else(|e| panic!("{name}: {e}"));
        match doc.get("items").and_then(Value::as_array) {
            Some(items) => out.extend(items.iter().enumerate().map(|(i, d)| (format!("{name}[{i}]"), d.clone()))),
            None => out.push((name, doc)),
        }
    }
    assert!(out.len() >= 19, "fixtures missing from {}", dir.display());
    out
}

fn kind_of(doc: &Value) -> &'static KindInfo {
    doc["kind"].as_str().and_then(kind_named).unwrap_or_else(|| panic!("unknown kind in {doc}"))
}

/// Whether `stored` holds what `given` said: the same value, or the same AS number or duration in its
/// stored form (a number; Go's printing).
fn same_value(given: &Value, stored: &Value) -> bool {
    if given == stored {
        return true;
    }
    match (given, stored) {
        (Value::String(g), Value::Number(_)) => g.parse::<AsNumber>().ok().map(|a| json!(a.0)) == Some(stored.clone()),
        (Value::String(g), Value::String(s)) => matches!((g.parse::<Duration>(), s.parse::<Duration>()), (Ok(a), Ok(b)) if a == b),
        (Value::Object(g), Value::Object(s)) => {
            g.iter().all(|(k, v)| s.get(k).is_some_and(|sv| same_value(v, sv)) || (is_zero(v) && !s.contains_key(k)))
        }
        (Value::Array(g), Value::Array(s)) => g.len() == s.len() && g.iter().zip(s).all(|(a, b)| same_value(a, b)),
        _ => false,
    }
}

/// Go's `omitempty` drops zero values, so a given `false` may be absent from what is stored.
fn is_zero(v: &Value) -> bool {
    matches!(v, Value::Bool(false)) || v.as_str() == Some("") || v.as_u64() == Some(0)
}

#[test]
fn every_example_resource_is_stored_field_by_field_and_validates_to_itself() {
    for (name, doc) in fixtures() {
        let info = kind_of(&doc);
        let stored = (info.validate)(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(same_value(&doc, &stored), "{name}: stored {stored} lost or changed a field of {doc}");
        assert_eq!((info.validate)(&stored).as_ref().ok(), Some(&stored), "{name}: the stored form validates to itself");
        let text = serde_json::to_string(&stored).unwrap_or_default();
        assert!(!text.contains("resourceVersion"), "{name}: never stored");
    }
}

#[test]
fn stored_forms_hold_calicos_defaults() {
    let stored = |file: &str| {
        let (_, doc) = fixtures().into_iter().find(|(n, _)| n == file).unwrap_or_else(|| panic!("{file}"));
        (kind_of(&doc).validate)(&doc).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let ipip = stored("ippool-ipip.json");
    assert_eq!(
        ipip["spec"],
        json!({"cidr": "10.244.0.0/16", "blockSize": 26, "ipipMode": "Always", "vxlanMode": "Never", "natOutgoing": true,
               "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic"})
    );
    let peer = stored("bgppeer-ipv6-port.json");
    assert_eq!(
        (&peer["spec"]["asNumber"], &peer["spec"]["localASNumber"], &peer["spec"]["maxRestartTime"]),
        (&json!(65546), &json!(64600), &json!("2m0s"))
    );
    let mesh = stored("bgpconfig-mesh-disabled.json");
    assert_eq!(mesh["spec"]["serviceLoadBalancerAggregation"], json!("Enabled"));
    let node = stored("node-sample.json");
    assert_eq!(node["status"], json!({}));
    let ipam = stored("ipamconfig-default.json");
    assert_eq!(ipam["spec"], json!({"strictAffinity": false, "maxBlocksPerHost": 4, "autoAllocateBlocks": true}));
}

fn envelope(kind: &str, name: Value, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

#[test]
fn issue_12_bad_input_is_refused_naming_the_field() {
    let peer = |spec: Value| envelope("BGPPeer", json!("p"), spec);
    let pool = |spec: Value| envelope("IPPool", json!("p"), spec);
    let node = |spec: Value| envelope("Node", json!("n"), spec);
    let ok_peer = json!({"peerIP": "10.0.0.1", "asNumber": 64512});
    let long = "a".repeat(254);
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("unknown field in spec", peer(json!({"peerIP": "10.0.0.1", "asNumber": 1, "colour": "red"})), "spec.colour", "unknown field"),
        (
            "unknown field in metadata",
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "n", "lables": {}}}),
            "metadata.lables",
            "unknown field",
        ),
        (
            "unknown top-level field",
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/16"}, "extra": 1}),
            "extra",
            "unknown field",
        ),
        (
            "a status on a kind without one",
            json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p"}, "spec": ok_peer.clone(), "status": {}}),
            "status",
            "no status",
        ),
        (
            "wrong apiVersion",
            json!({"apiVersion": "projectcalico.org/v1", "kind": "BGPPeer", "metadata": {"name": "p"}, "spec": ok_peer.clone()}),
            "apiVersion",
            "projectcalico.org/v3",
        ),
        ("missing apiVersion", json!({"kind": "BGPPeer", "metadata": {"name": "p"}, "spec": ok_peer.clone()}), "apiVersion", "required"),
        (
            "missing name",
            json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {}, "spec": ok_peer.clone()}),
            "metadata.name",
            "required",
        ),
        ("missing metadata", json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "spec": ok_peer.clone()}), "metadata", "required"),
        ("name with /", envelope("BGPPeer", json!("a/b"), ok_peer.clone()), "metadata.name", "'/'"),
        ("name with ..", envelope("BGPPeer", json!("a..b"), ok_peer.clone()), "metadata.name", "'..'"),
        ("name over 253", envelope("BGPPeer", json!(long), ok_peer.clone()), "metadata.name", "at most 253"),
        ("name not a string", envelope("BGPPeer", json!(5), ok_peer.clone()), "metadata.name", "string"),
        (
            "namespace on a cluster kind",
            json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "p", "namespace": "x"}, "spec": ok_peer.clone()}),
            "metadata.namespace",
            "not namespaced",
        ),
        (
            "bad label",
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "n", "labels": {"rack": "not ok"}}}),
            "metadata.labels.rack",
            "value",
        ),
        ("invalid CIDR", pool(json!({"cidr": "10.0.0.0/33"})), "spec.cidr", "not a CIDR"),
        ("blockSize out of range", pool(json!({"cidr": "10.0.0.0/16", "blockSize": 33})), "spec.blockSize", "outside 20..=32"),
        ("IPv4 block size on an IPv6 pool", pool(json!({"cidr": "fd00::/48", "blockSize": 26})), "spec.blockSize", "outside 116..=128"),
        ("AS number 0", node(json!({"bgp": {"asNumber": 0}})), "spec.bgp.asNumber", "reserved"),
        ("AS number 0 on a peer", peer(json!({"peerIP": "10.0.0.1", "asNumber": 0})), "spec.asNumber", "required"),
        ("AS number 0 in the configuration", envelope("BGPConfiguration", json!("default"), json!({"asNumber": 0})), "spec.asNumber", "reserved"),
        ("AS number 4294967296", peer(json!({"peerIP": "10.0.0.1", "asNumber": 4294967296u64})), "spec.asNumber", "larger than 4294967295"),
        ("AS number \"abc\"", node(json!({"bgp": {"asNumber": "abc"}})), "spec.bgp.asNumber", "not an AS number"),
        ("peerIP without address", peer(json!({"peerIP": ":179", "asNumber": 1})), "spec.peerIP", "not an IP address"),
        ("peerIP without address, v6", peer(json!({"peerIP": "[]:179", "asNumber": 1})), "spec.peerIP", "not an IP address"),
        (
            "both node and nodeSelector",
            peer(json!({"node": "n1", "nodeSelector": "all()", "peerIP": "10.0.0.1", "asNumber": 1})),
            "spec.nodeSelector",
            "both",
        ),
        ("peer selector syntax error", peer(json!({"peerSelector": "has(rr"})), "spec.peerSelector", "at 6"),
        ("node selector syntax error", peer(json!({"nodeSelector": "rack = 'a'", "peerIP": "10.0.0.1", "asNumber": 1})), "spec.nodeSelector", "at"),
        ("pool selector syntax error", pool(json!({"cidr": "10.0.0.0/16", "nodeSelector": "rack == a"})), "spec.nodeSelector", "at"),
        (
            "routeReflectorClusterID not IPv4",
            node(json!({"bgp": {"routeReflectorClusterID": "cluster-1"}})),
            "spec.bgp.routeReflectorClusterID",
            "IPv4-formatted",
        ),
        ("kind mismatch", json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "n"}}), "kind", "this is a BGPPeer"),
        ("spec not an object", envelope("BGPPeer", json!("p"), json!([1])), "spec", "object"),
        ("not an object", json!("BGPPeer"), "(document)", "object"),
    ];
    for (what, doc, field, reason) in cases {
        let info = if what == "kind mismatch" || what == "not an object" { kind_named("BGPPeer").unwrap() } else { kind_of(&doc) };
        match (info.validate)(&doc) {
            Err(ModelError::Invalid { kind, field: f, reason: r, .. }) => {
                assert_eq!(kind, info.kind, "{what}");
                assert_eq!(f, field, "{what}: {r}");
                assert!(r.contains(reason), "{what}: {r:?} should say {reason:?}");
            }
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
    }
    let err = (kind_named("BGPPeer").unwrap().validate)(&peer(json!({"peerIP": "10.0.0.1", "asNumber": "abc"}))).unwrap_err();
    assert_eq!(err.to_string(), r#"BGPPeer "p": spec.asNumber: "abc" is not an AS number (a number up to 4294967295, or asdot like "1.10")"#);
}

#[test]
fn workload_endpoints_are_checked_through_the_table() {
    use super::workloadendpoint::WorkloadEndpoint;
    use common::attachment::Attachment;
    let att = Attachment { network: "net".into(), container_id: "abc".into(), ifname: "eth0".into(), pod: None };
    let mut doc = serde_json::to_value(WorkloadEndpoint::draft(&att, "node-1", None, "2026-01-01T00:00:00Z")).unwrap_or_default();
    let wep = &super::kinds::WORKLOAD_ENDPOINT;
    assert_eq!((wep.validate)(&doc).ok().as_ref(), Some(&doc), "what cni-ipam writes is valid");
    doc["metadata"].as_object_mut().map(|m| m.remove("namespace"));
    assert_eq!((wep.validate)(&doc).map(|d| d["metadata"]["namespace"].clone()).ok(), Some(json!("default")), "calicoctl's default namespace");
    doc["spec"]["interfaceName"] = json!("a-much-too-long-name");
    assert!(matches!((wep.validate)(&doc), Err(ModelError::Invalid { field, .. }) if field == "spec.interfaceName"));
}

/// A small deterministic generator (xorshift64*), so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn junk(rng: &mut Rng, depth: u32) -> Value {
    const STRINGS: &[&str] = &[
        "",
        " ",
        "0",
        "-1",
        "1.10",
        "65535.65535",
        "4294967296",
        "abc",
        "all()",
        "global()",
        "has(",
        "a == 'b'",
        "!",
        "10.0.0.0/8",
        "10.0.0.1",
        "fd00::/48",
        "[fd00::1]:179",
        ":179",
        "120s",
        "-5m",
        "9999999999h",
        "Never",
        "Always",
        "LoadBalancer",
        "default",
        "a/b",
        "a..b",
        "\u{0}",
        "\u{b5}s",
        "\u{1F600}",
        "\t",
        "\n",
        "'",
        "\"",
        "{}",
        "aa:nn",
        "1:2:3",
        "244.0.0.1",
    ];
    match rng.below(if depth > 2 { 8 } else { 11 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!([0, 1, 26, 122, 128, 179, 65535, 65536, 4294967295u64, 4294967296u64][rng.below(10)]),
        4 => json!(-(rng.below(1000) as i64)),
        5 => json!(rng.below(1000) as f64 / 7.0),
        6 => json!(STRINGS[rng.below(STRINGS.len())]),
        7 => {
            let bytes: String = (0..rng.below(40)).map(|_| (b' ' + rng.below(95) as u8) as char).collect();
            json!(bytes)
        }
        8 => Value::Array((0..rng.below(4)).map(|_| junk(rng, depth + 1)).collect()),
        9 => {
            let keys = ["cidr", "asNumber", "peerIP", "bgp", "name", "secretKeyRef", "key", "x"];
            Value::Object((0..rng.below(4)).map(|_| (keys[rng.below(keys.len())].to_string(), junk(rng, depth + 1))).collect::<Map<_, _>>())
        }
        _ => json!(STRINGS[rng.below(STRINGS.len())].repeat(rng.below(300))),
    }
}

/// One random change somewhere in `v`: replace a value, drop a key, add a key, or change a list's length.
fn mutate(rng: &mut Rng, v: &mut Value, depth: u32) {
    let descend = rng.below(3) != 0 && depth < 6;
    match v {
        Value::Object(m) if !m.is_empty() && descend => {
            let k = m.keys().nth(rng.below(m.len())).cloned().unwrap_or_default();
            if let Some(child) = m.get_mut(&k) {
                mutate(rng, child, depth + 1);
            }
        }
        Value::Array(a) if !a.is_empty() && descend => {
            let i = rng.below(a.len());
            mutate(rng, &mut a[i], depth + 1);
        }
        Value::Object(m) => match rng.below(3) {
            0 if !m.is_empty() => {
                let k = m.keys().nth(rng.below(m.len())).cloned().unwrap_or_default();
                m.remove(&k);
            }
            1 => {
                let keys = ["spec", "status", "metadata", "kind", "name", "labels", "asNumber", "peerIP", "nodeSelector", "bgp", "blockSize", "zz"];
                m.insert(keys[rng.below(keys.len())].to_string(), junk(rng, depth));
            }
            _ => *v = junk(rng, depth),
        },
        Value::Array(a) if rng.below(2) == 0 => {
            let extra = junk(rng, depth);
            a.push(extra);
        }
        _ => *v = junk(rng, depth),
    }
}

#[test]
fn no_mangled_document_makes_a_validate_panic_and_what_passes_is_stable() {
    let docs = fixtures();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut accepted = 0;
    for round in 0..2000 {
        for (name, doc) in &docs {
            let mut d = doc.clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut rng, &mut d, 0);
            }
            for info in KINDS {
                let out = std::panic::catch_unwind(|| (info.validate)(&d));
                let out = out.unwrap_or_else(|_| panic!("round {round}, {name}: {} validate panicked on {d}", info.kind));
                if let Ok(stored) = out {
                    accepted += 1;
                    assert_eq!((info.validate)(&stored).ok().as_ref(), Some(&stored), "round {round}, {name}: {} not stable on {d}", info.kind);
                }
            }
        }
    }
    assert!(accepted > 100, "the mutations should leave many documents valid ({accepted})");
}
