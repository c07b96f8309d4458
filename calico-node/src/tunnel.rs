//! The node's VXLAN tunnel endpoints in the datastore, as calico-node's tunnel address allocator
//! (`node/pkg/allocateip/allocateip.go`) keeps them, one per family: while an enabled pool of that family with
//! `vxlanMode` other than Never selects this node and allows the `Tunnel` use, the node holds one address of
//! such a pool under the IPAM handle `vxlan-tunnel-addr-<node>` (IPv6: `vxlan-v6-tunnel-addr-<node>`;
//! attributes `node` and `type: vxlanTunnelAddress` / `vxlanV6TunnelAddress`), recorded with the VTEP's MAC in
//! its Node resource (`spec.ipv4VXLANTunnelAddr` + `spec.vxlanTunnelMACAddr`, `spec.ipv6VXLANTunnelAddr` +
//! `spec.vxlanTunnelMACAddrV6`). When no such pool is left, the address is released and both fields are
//! cleared. The MACs are derived from the node name (locally administered, unicast, one per family), so a
//! restarted agent and its peers agree on them without a write.
use cni_ipam::ipam::{Ipam, Node as IpamNode, Owner, Pool};
use datastore::resources::ippool::{AllowedUse, EncapMode};
use datastore::resources::kinds::NODE;
use datastore::store::{Datastore, Json, Key};
use std::collections::BTreeMap;
use std::net::IpAddr;
use tracing::info;

/// Calico's handle prefix and attribute values (`libcalico-go/lib/ipam/ipam.go`, allocateip.go).
pub const VXLAN_HANDLE_PREFIX: &str = "vxlan-tunnel-addr-";
pub const VXLAN_V6_HANDLE_PREFIX: &str = "vxlan-v6-tunnel-addr-";
pub const VXLAN_ATTR_TYPE: &str = "vxlanTunnelAddress";
pub const VXLAN_V6_ATTR_TYPE: &str = "vxlanV6TunnelAddress";

/// What differs between the two families' VTEPs.
struct Family {
    v6: bool,
    attr_type: &'static str,
    addr_field: &'static str,
    mac_field: &'static str,
}

const FAMILIES: [Family; 2] = [
    Family { v6: false, attr_type: VXLAN_ATTR_TYPE, addr_field: "ipv4VXLANTunnelAddr", mac_field: "vxlanTunnelMACAddr" },
    Family { v6: true, attr_type: VXLAN_V6_ATTR_TYPE, addr_field: "ipv6VXLANTunnelAddr", mac_field: "vxlanTunnelMACAddrV6" },
];

pub fn vxlan_handle(node: &str, v6: bool) -> String {
    format!("{}{node}", if v6 { VXLAN_V6_HANDLE_PREFIX } else { VXLAN_HANDLE_PREFIX })
}

/// The VTEP MAC of `node` for a family: six bytes of SHA-256 of its name (the first six for IPv4, the next six
/// for IPv6), locally administered and unicast.
pub fn vtep_mac(node: &str, v6: bool) -> [u8; 6] {
    let h = hmac_sha256::Hash::hash(node.as_bytes());
    let at = if v6 { 6 } else { 0 };
    let mut mac = [h[at], h[at + 1], h[at + 2], h[at + 3], h[at + 4], h[at + 5]];
    mac[0] = (mac[0] | 0x02) & !0x01;
    mac
}

/// What one of the node's VTEPs is in its Node resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vtep {
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// The pools of a family a VXLAN tunnel address may come from for a node with `labels`.
fn vxlan_pools(pools: &[Pool], labels: &BTreeMap<String, String>, v6: bool) -> Vec<Pool> {
    pools
        .iter()
        .filter(|p| {
            p.is_v6() == v6 && !p.disabled && p.vxlan_mode != EncapMode::Never && p.allows(AllowedUse::Tunnel) && p.node_selector.matches(labels)
        })
        .cloned()
        .collect()
}

/// Whether the recorded VTEPs (`recorded[0]` IPv4, `[1]` IPv6) are what the pools call for (so nothing
/// needs writing).
pub fn is_settled(pools: &[Pool], labels: &BTreeMap<String, String>, recorded: [Option<Vtep>; 2], node: &str) -> bool {
    FAMILIES.iter().zip(recorded).all(|(f, recorded)| {
        let wanted = vxlan_pools(pools, labels, f.v6);
        match recorded {
            None => wanted.is_empty(),
            Some(v) => v.mac == vtep_mac(node, f.v6) && wanted.iter().any(|p| p.cidr.contains(&v.ip)),
        }
    })
}

/// Makes the datastore hold what the pools call for: allocates (or releases) each family's tunnel address
/// and writes the Node's VTEP fields. Returns the VTEPs now recorded (IPv4, IPv6).
pub fn reconcile_vxlan(store: &dyn Datastore, node: &str) -> Result<[Option<Vtep>; 2], String> {
    let err = |e: &dyn std::fmt::Display| format!("VXLAN tunnel address of {node}: {e}");
    let mut session = store.lock().map_err(|e| err(&e))?;
    let key = Key::resource(&NODE, node);
    let Some(record) = session.get(&key).map_err(|e| err(&e))? else {
        return Err(err(&"the node has no Node resource"));
    };
    let mut doc = record.value.to_value();
    let labels: BTreeMap<String, String> = serde_json::from_value(doc["metadata"]["labels"].clone()).unwrap_or_default();
    let mut ipam = Ipam::new(&mut *session).map_err(|e| err(&e))?;
    ipam.purpose = AllowedUse::Tunnel;
    let all_pools = ipam.pools().map_err(|e| err(&e))?;
    let spec = doc["spec"].as_object_mut().ok_or_else(|| err(&"the Node has no spec"))?;
    let before = spec.clone();
    let mut out = [None, None];
    for (f, slot) in FAMILIES.iter().zip(out.iter_mut()) {
        let recorded = spec.get(f.addr_field).and_then(|a| a.as_str()).and_then(|a| a.parse::<IpAddr>().ok()).filter(|ip| ip.is_ipv6() == f.v6);
        let handle = vxlan_handle(node, f.v6);
        let pools = vxlan_pools(&all_pools, &labels, f.v6);
        let keep = recorded.filter(|ip| pools.iter().any(|p| p.cidr.contains(ip)));
        let ip = match (keep, pools.is_empty()) {
            (Some(ip), _) => Some(ip),
            (None, true) => {
                if ipam.release_by_handle(&handle).map_err(|e| err(&e))? > 0 {
                    info!(node, family = f.addr_field, "VXLAN tunnel address released: no VXLAN pool left");
                }
                None
            }
            (None, false) => {
                // An address recorded outside every VXLAN pool (a pool went away) is given back first.
                ipam.release_by_handle(&handle).map_err(|e| err(&e))?;
                let owner = Owner {
                    handle: handle.clone(),
                    attrs: BTreeMap::from([("node".to_string(), node.to_string()), ("type".to_string(), f.attr_type.to_string())]),
                };
                let ipam_node = IpamNode { name: node.to_string(), labels: labels.clone() };
                let a = ipam.auto_assign(f.v6, &pools, &ipam_node, &owner).map_err(|e| err(&e))?;
                info!(node, ip = %a.ip, "VXLAN tunnel address allocated");
                Some(a.ip)
            }
        };
        let mac = vtep_mac(node, f.v6);
        match ip {
            Some(ip) => {
                spec.insert(f.addr_field.into(), ip.to_string().into());
                spec.insert(f.mac_field.into(), common::netlink::format_mac(&mac).into());
            }
            None => {
                spec.remove(f.addr_field);
                spec.remove(f.mac_field);
            }
        }
        *slot = ip.map(|ip| Vtep { ip, mac });
    }
    if doc["spec"].as_object() != Some(&before) {
        let value = Json::encode(&doc).map_err(|e| err(&e))?;
        // A conflict (the Node changed meanwhile) is retried at the next sync, which sees the change.
        ipam.store().update(&key, value, record.rev).map_err(|e| err(&e))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast_and_stable() {
        let m = vtep_mac("node-1", false);
        assert_eq!(m[0] & 0x03, 0x02);
        assert_eq!(m, vtep_mac("node-1", false));
        assert_ne!(m, vtep_mac("node-2", false));
        let m6 = vtep_mac("node-1", true);
        assert_eq!(m6[0] & 0x03, 0x02);
        assert_ne!(m6, m, "one MAC per family");
    }
}
