//! Startup's datastore half, as calico-node's `startup.go` does it: the node's Node resource created or
//! updated (its addresses and AS; labels, annotations and every other field kept), refused when another node
//! already has one of its addresses, and `bgpconfigurations/default` created when absent. Each write is a
//! compare-and-swap on the record's revision, retried when someone else wrote in between.
use crate::settings::{AddressSetting, Settings};
use datastore::resources::kinds::{BGP_CONFIGURATION, NODE};
use datastore::resources::metadata::{new_uid, rfc3339_now};
use datastore::resources::node::{Node, NodeSpec};
use datastore::resources::{validate, API_VERSION};
use datastore::store::{Datastore, Json, Key, Kind, StoreError};
use ipnet::IpNet;
use serde_json::{json, Value};

/// Writes racing another writer are retried this often before startup gives up.
const CAS_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("datastore: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Conflict(String),
    #[error("Node {name}: {reason}")]
    Invalid { name: String, reason: String },
}

/// The addresses startup settled on (`None`: the node has none of that family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub ipv4: Option<IpNet>,
    pub ipv6: Option<IpNet>,
}

/// Creates or updates this node's Node resource; returns it as stored.
pub fn register_node(store: &dyn Datastore, s: &Settings, addrs: Addresses) -> Result<Node, RegisterError> {
    let key = Key::resource(&NODE, s.node_name.clone());
    for _ in 0..CAS_ATTEMPTS {
        let mut session = store.lock()?;
        let current = session.get(&key)?;
        let nodes = session.list(Kind::Resource(&NODE))?;
        for (k, rec) in &nodes {
            if *k == key {
                continue;
            }
            let other: Value = rec.value.to_value();
            let name = other["metadata"]["name"].as_str().unwrap_or_default();
            for (field, mine) in [("ipv4Address", addrs.ipv4), ("ipv6Address", addrs.ipv6)] {
                let Some(mine) = mine else { continue };
                let theirs = other["spec"]["bgp"][field].as_str().and_then(|a| a.parse::<IpNet>().ok());
                if theirs.map(|t| t.addr()) == Some(mine.addr()) {
                    return Err(RegisterError::Conflict(format!(
                        "Calico node {name:?} is already using the IP address {}: refusing to start node {:?} with it",
                        mine.addr(),
                        s.node_name
                    )));
                }
            }
        }
        let mut doc = match &current {
            Some(rec) => rec.value.to_value(),
            None => {
                let uid = new_uid().unwrap_or_else(|_| format!("{}-{}", s.node_name, std::process::id()));
                json!({"apiVersion": API_VERSION, "kind": "Node", "metadata": {"name": s.node_name, "uid": uid, "creationTimestamp": rfc3339_now()}, "spec": {}})
            }
        };
        let before = doc.clone();
        set_addresses(&mut doc, s, addrs);
        let node: Node =
            validate::parse::<NodeSpec>(&doc).map_err(|e| RegisterError::Invalid { name: s.node_name.clone(), reason: e.to_string() })?;
        if current.is_some() && doc == before {
            return Ok(node);
        }
        let value = Json::encode(&doc).map_err(|e| RegisterError::Invalid { name: s.node_name.clone(), reason: e.to_string() })?;
        let written = match &current {
            Some(rec) => session.update(&key, value, rec.rev),
            None => session.create(&key, value),
        };
        match written {
            Ok(_) => return Ok(node),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RegisterError::Conflict(format!("Node {}: the record kept changing under startup ({CAS_ATTEMPTS} attempts)", s.node_name)))
}

/// The Node's `spec.bgp` as the settings say: `IP`/`IP6` (a fixed or detected address, or removed for `none`)
/// and `AS` (unset leaves the resource's own).
fn set_addresses(doc: &mut Value, s: &Settings, addrs: Addresses) {
    if !doc["spec"].is_object() {
        doc["spec"] = json!({});
    }
    let spec = &mut doc["spec"];
    if !spec["bgp"].is_object() {
        spec["bgp"] = json!({});
    }
    let bgp = spec["bgp"].as_object_mut().expect("made an object above");
    for (field, setting, addr) in [("ipv4Address", &s.ipv4, addrs.ipv4), ("ipv6Address", &s.ipv6, addrs.ipv6)] {
        match (setting, addr) {
            (_, Some(a)) => {
                bgp.insert(field.into(), json!(a.to_string()));
            }
            (AddressSetting::None, None) => {
                bgp.remove(field);
            }
            _ => {}
        }
    }
    if let Some(asn) = s.as_number {
        bgp.insert("asNumber".into(), json!(asn.0));
    }
    if bgp.is_empty() {
        spec.as_object_mut().expect("made an object above").remove("bgp");
    }
}

/// Creates `bgpconfigurations/default` (an empty spec: every field its default) unless it exists.
pub fn ensure_default_bgp_configuration(store: &dyn Datastore) -> Result<bool, RegisterError> {
    let key = Key::resource(&BGP_CONFIGURATION, "default");
    let mut session = store.lock()?;
    if session.get(&key)?.is_some() {
        return Ok(false);
    }
    let uid = new_uid().unwrap_or_else(|_| format!("default-{}", std::process::id()));
    let doc = json!({"apiVersion": API_VERSION, "kind": "BGPConfiguration", "metadata": {"name": "default", "uid": uid, "creationTimestamp": rfc3339_now()}, "spec": {}});
    let value = Json::encode(&doc).map_err(|e| RegisterError::Invalid { name: "default".into(), reason: e.to_string() })?;
    match session.create(&key, value) {
        Ok(_) => Ok(true),
        // Another node's agent made it first.
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `/var/lib/calico/nodename`: the CNI plugin's node name, written last so a pod never starts on a node the
/// datastore does not know yet.
pub fn write_nodename(s: &Settings) -> std::io::Result<()> {
    std::fs::create_dir_all(&s.lib_dir)?;
    let tmp = s.lib_dir.join(".nodename.tmp");
    std::fs::write(&tmp, &s.node_name)?;
    std::fs::rename(&tmp, s.lib_dir.join("nodename"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datastore::store::MemStore;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_env(&move |k| m.get(k).cloned(), "h").unwrap()
    }

    fn v4(a: &str) -> Addresses {
        Addresses { ipv4: Some(a.parse().unwrap()), ipv6: None }
    }

    #[test]
    fn creates_then_updates_keeping_labels() {
        let store = MemStore::default();
        let s = settings(&[("NODENAME", "node-1"), ("IP", "10.0.0.1/24"), ("AS", "65001")]);
        let n = register_node(&store, &s, v4("10.0.0.1/24")).unwrap();
        assert_eq!(n.spec.bgp.as_ref().and_then(|b| b.as_number).map(|a| a.0), Some(65001));
        let key = Key::resource(&NODE, "node-1");
        // An operator labels the node; a restart with a new address keeps the label.
        let mut session = store.lock().unwrap();
        let rec = session.get(&key).unwrap().unwrap();
        let mut doc = rec.value.to_value();
        doc["metadata"]["labels"] = json!({"rack": "r1"});
        session.update(&key, Json::encode(&doc).unwrap(), rec.rev).unwrap();
        drop(session);
        let n = register_node(&store, &s, v4("10.0.0.2/24")).unwrap();
        assert_eq!(n.metadata.labels.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(n.spec.bgp.unwrap().ipv4_address.unwrap().to_string(), "10.0.0.2/24");
        assert!(ensure_default_bgp_configuration(&store).unwrap());
        assert!(!ensure_default_bgp_configuration(&store).unwrap());
    }

    #[test]
    fn another_nodes_address_is_refused_and_nothing_written() {
        let store = MemStore::default();
        register_node(&store, &settings(&[("NODENAME", "node-1")]), v4("10.0.0.1/24")).unwrap();
        let e = register_node(&store, &settings(&[("NODENAME", "node-2")]), v4("10.0.0.1/24")).unwrap_err();
        assert!(e.to_string().contains("node-1"), "{e}");
        assert!(store.lock().unwrap().get(&Key::resource(&NODE, "node-2")).unwrap().is_none());
    }
}
