//! The node's VXLAN tunnel endpoint in the datastore, as calico-node's tunnel address allocator
//! (`node/pkg/allocateip/allocateip.go`) keeps it: while an enabled IPv4 pool with `vxlanMode` other than
//! Never selects this node and allows the `Tunnel` use, the node holds one address of such a pool under the
//! IPAM handle `vxlan-tunnel-addr-<node>` (attributes `node` and `type: vxlanTunnelAddress`), recorded with
//! the VTEP's MAC in its Node resource (`spec.ipv4VXLANTunnelAddr`, `spec.vxlanTunnelMACAddr`). When no such
//! pool is left, the address is released and both fields are cleared. The MAC is derived from the node name
//! (locally administered, unicast), so a restarted agent and its peers agree on it without a write.
use cni_ipam::ipam::{Ipam, Node as IpamNode, Owner, Pool};
use datastore::resources::ippool::{AllowedUse, EncapMode};
use datastore::resources::kinds::NODE;
use datastore::store::{Datastore, Json, Key};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use tracing::info;

/// Calico's handle prefix and attribute values (`libcalico-go/lib/ipam/ipam.go`).
pub const VXLAN_HANDLE_PREFIX: &str = "vxlan-tunnel-addr-";
pub const VXLAN_ATTR_TYPE: &str = "vxlanTunnelAddress";

pub fn vxlan_handle(node: &str) -> String {
    format!("{VXLAN_HANDLE_PREFIX}{node}")
}

/// The VTEP MAC of `node`: the first six bytes of SHA-256 of its name, locally administered and unicast.
pub fn vtep_mac(node: &str) -> [u8; 6] {
    let h = hmac_sha256::Hash::hash(node.as_bytes());
    let mut mac = [h[0], h[1], h[2], h[3], h[4], h[5]];
    mac[0] = (mac[0] | 0x02) & !0x01;
    mac
}

/// What the node's VTEP is in its Node resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vtep {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// The pools a VXLAN tunnel address may come from for a node with `labels`.
fn vxlan_pools(pools: &[Pool], labels: &BTreeMap<String, String>) -> Vec<Pool> {
    pools
        .iter()
        .filter(|p| !p.is_v6() && !p.disabled && p.vxlan_mode != EncapMode::Never && p.allows(AllowedUse::Tunnel) && p.node_selector.matches(labels))
        .cloned()
        .collect()
}

/// Whether the recorded VTEP is what the pools call for (so nothing needs writing).
pub fn is_settled(pools: &[Pool], labels: &BTreeMap<String, String>, recorded: Option<Vtep>, node: &str) -> bool {
    let wanted = vxlan_pools(pools, labels);
    match recorded {
        None => wanted.is_empty(),
        Some(v) => v.mac == vtep_mac(node) && wanted.iter().any(|p| p.cidr.contains(&IpAddr::V4(v.ip))),
    }
}

/// Makes the datastore hold what the pools call for: allocates (or releases) the tunnel address and writes
/// the Node's VTEP fields. Returns the VTEP now recorded.
pub fn reconcile_vxlan(store: &dyn Datastore, node: &str) -> Result<Option<Vtep>, String> {
    let err = |e: &dyn std::fmt::Display| format!("VXLAN tunnel address of {node}: {e}");
    let mut session = store.lock().map_err(|e| err(&e))?;
    let key = Key::resource(&NODE, node);
    let Some(record) = session.get(&key).map_err(|e| err(&e))? else {
        return Err(err(&"the node has no Node resource"));
    };
    let mut doc = record.value.to_value();
    let labels: BTreeMap<String, String> = serde_json::from_value(doc["metadata"]["labels"].clone()).unwrap_or_default();
    let recorded = doc["spec"]["ipv4VXLANTunnelAddr"].as_str().and_then(|a| a.parse::<Ipv4Addr>().ok());
    let handle = vxlan_handle(node);
    let mut ipam = Ipam::new(&mut *session).map_err(|e| err(&e))?;
    ipam.purpose = AllowedUse::Tunnel;
    let pools = vxlan_pools(&ipam.pools().map_err(|e| err(&e))?, &labels);
    let keep = recorded.filter(|ip| pools.iter().any(|p| p.cidr.contains(&IpAddr::V4(*ip))));
    let ip = match (keep, pools.is_empty()) {
        (Some(ip), _) => Some(ip),
        (None, true) => {
            if ipam.release_by_handle(&handle).map_err(|e| err(&e))? > 0 {
                info!(node, "VXLAN tunnel address released: no VXLAN pool left");
            }
            None
        }
        (None, false) => {
            // An address recorded outside every VXLAN pool (a pool went away) is given back first.
            ipam.release_by_handle(&handle).map_err(|e| err(&e))?;
            let owner = Owner {
                handle: handle.clone(),
                attrs: BTreeMap::from([("node".to_string(), node.to_string()), ("type".to_string(), VXLAN_ATTR_TYPE.to_string())]),
            };
            let ipam_node = IpamNode { name: node.to_string(), labels: labels.clone() };
            let a = ipam.auto_assign(false, &pools, &ipam_node, &owner).map_err(|e| err(&e))?;
            let IpAddr::V4(ip) = a.ip else { return Err(err(&"an IPv4 pool gave an IPv6 address")) };
            info!(node, %ip, "VXLAN tunnel address allocated");
            Some(ip)
        }
    };
    let mac = common::netlink::format_mac(&vtep_mac(node));
    let spec = doc["spec"].as_object_mut().ok_or_else(|| err(&"the Node has no spec"))?;
    let before = spec.clone();
    match ip {
        Some(ip) => {
            spec.insert("ipv4VXLANTunnelAddr".into(), ip.to_string().into());
            spec.insert("vxlanTunnelMACAddr".into(), mac.into());
        }
        None => {
            spec.remove("ipv4VXLANTunnelAddr");
            spec.remove("vxlanTunnelMACAddr");
        }
    }
    if *spec != before {
        let value = Json::encode(&doc).map_err(|e| err(&e))?;
        // A conflict (the Node changed meanwhile) is retried at the next sync, which sees the change.
        ipam.store().update(&key, value, record.rev).map_err(|e| err(&e))?;
    }
    Ok(ip.map(|ip| Vtep { ip, mac: vtep_mac(node) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast_and_stable() {
        let m = vtep_mac("node-1");
        assert_eq!(m[0] & 0x03, 0x02);
        assert_eq!(m, vtep_mac("node-1"));
        assert_ne!(m, vtep_mac("node-2"));
    }
}
