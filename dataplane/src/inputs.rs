//! What the route plan is computed from, reduced to what routing needs: nodes (address, subnet, VTEPs), blocks
//! (owner, borrowed addresses) and the networking backend. Pools are `datastore`'s validated `Pool`. Each type
//! has a constructor from the stored record, so the agent converts once and the plan never re-parses.
use crate::error::Error;
use datastore::ipam::block::Block;
use datastore::resources::node::Node;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// `CALICO_NETWORKING_BACKEND`: who moves pod traffic between nodes (calico-node's `rc.local` reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `bird` (the default): BIRD learns and programs the routes of pools without encapsulation; the agent
    /// programs VXLAN and IPIP pools (Calico's HEAD defaults: `programClusterRoutes` EnabledNoEncapOnly for
    /// BIRD, EnabledIPIPOnly for Felix).
    Bird,
    /// `vxlan`: no BIRD; the agent programs every pool's routes.
    Vxlan,
    /// `none`: nothing between nodes (policy-only Calico).
    None,
}

impl FromStr for Backend {
    type Err = Error;

    /// Calico's values; unset or empty means `bird`.
    fn from_str(s: &str) -> Result<Backend, Error> {
        match s {
            "" | "bird" => Ok(Backend::Bird),
            "vxlan" => Ok(Backend::Vxlan),
            "none" => Ok(Backend::None),
            other => Err(Error::Config { field: "CALICO_NETWORKING_BACKEND".into(), reason: format!("{other:?} is not one of bird, vxlan, none") }),
        }
    }
}

/// A VXLAN tunnel endpoint: the tunnel address and the MAC of a node's VXLAN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vtep {
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// A node as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// `spec.bgp.ipv4Address`: the node's address and its subnet (CrossSubnet compares against it).
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
    /// `spec.bgp.ipv4IPIPTunnelAddr`: the address of the node's `tunl0`.
    pub ipip_addr: Option<Ipv4Addr>,
    /// `spec.ipv4VXLANTunnelAddr` + `spec.vxlanTunnelMACAddr`.
    pub vtep_v4: Option<Vtep>,
    /// `spec.ipv6VXLANTunnelAddr` + `spec.vxlanTunnelMACAddrV6`.
    pub vtep_v6: Option<Vtep>,
}

impl NodeInfo {
    /// A node with an IPv4 address (`10.250.0.1/24`) and nothing else.
    pub fn new(name: &str, ipv4: Ipv4Net) -> NodeInfo {
        NodeInfo { name: name.into(), ipv4: Some(ipv4), ipv6: None, ipip_addr: None, vtep_v4: None, vtep_v6: None }
    }

    /// The same node with the IPv4 VTEP `ip`/`mac`.
    pub fn with_vtep(mut self, ip: Ipv4Addr, mac: [u8; 6]) -> NodeInfo {
        self.vtep_v4 = Some(Vtep { ip: ip.into(), mac });
        self
    }

    /// The routing view of a Node resource. A VTEP needs both its address and a MAC this crate can read
    /// (colon or dash separated octets), as Felix's VTEP needs both; otherwise the node has none.
    pub fn from_node(node: &Node) -> NodeInfo {
        let spec = &node.spec;
        let bgp = spec.bgp.as_ref();
        let ipv4 = bgp.and_then(|b| b.ipv4_address.as_ref()).and_then(|c| match c.net() {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        });
        let ipv6 = bgp.and_then(|b| b.ipv6_address.as_ref()).and_then(|c| match c.net() {
            IpNet::V6(n) => Some(n),
            IpNet::V4(_) => None,
        });
        let mac = |m: Option<&datastore::resources::values::MacAddr>| m.and_then(|m| common::netlink::parse_mac(&m.as_str().replace('-', ":")));
        let vtep = |ip: Option<IpAddr>, mac: Option<[u8; 6]>| ip.zip(mac).map(|(ip, mac)| Vtep { ip, mac });
        NodeInfo {
            name: node.metadata.name.clone(),
            ipv4,
            ipv6,
            ipip_addr: bgp.and_then(|b| b.ipv4_ipip_tunnel_addr),
            vtep_v4: vtep(spec.ipv4_vxlan_tunnel_addr.map(IpAddr::from), mac(spec.vxlan_tunnel_mac_addr.as_ref())),
            vtep_v6: vtep(spec.ipv6_vxlan_tunnel_addr.map(IpAddr::from), mac(spec.vxlan_tunnel_mac_addr_v6.as_ref())),
        }
    }

    /// The node's address in the family of `v6`, with its subnet.
    pub fn address(&self, v6: bool) -> Option<IpNet> {
        if v6 {
            self.ipv6.map(IpNet::V6)
        } else {
            self.ipv4.map(IpNet::V4)
        }
    }

    pub fn vtep(&self, v6: bool) -> Option<Vtep> {
        if v6 {
            self.vtep_v6
        } else {
            self.vtep_v4
        }
    }
}

/// An IPAM block as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    pub cidr: IpNet,
    /// The node the block is affine to (its `affinity: host:<node>`), if any.
    pub owner: Option<String>,
    /// Addresses of the block in use by another node than the owner (strictAffinity off lets a node borrow
    /// from a full neighbour's block), with that node: each needs a /32 (/128) route of its own.
    pub borrowed: Vec<(IpAddr, String)>,
}

impl BlockInfo {
    pub fn new(cidr: IpNet, owner: Option<&str>) -> BlockInfo {
        BlockInfo { cidr, owner: owner.map(str::to_string), borrowed: Vec::new() }
    }

    /// The routing view of a stored block, as libcalico-go's `AllocationBlock.NonAffineAllocations` reads it:
    /// every allocation whose `node` attribute is not the block's host (all of them when the block has none);
    /// an allocation without a `node` attribute cannot be routed and is left out.
    pub fn from_block(b: &Block) -> BlockInfo {
        let owner = b.affine_host().map(str::to_string);
        let mut borrowed = Vec::new();
        for ordinal in 0..b.size() as u32 {
            let Some(attr) = b.owner_of(ordinal) else { continue };
            let host = attr.secondary.get("node").map(String::as_str).unwrap_or("");
            if host.is_empty() {
                tracing::warn!(ip = %b.ip(ordinal), block = %b.cidr, "allocation without a node attribute: no route for it");
                continue;
            }
            if owner.as_deref() != Some(host) {
                borrowed.push((b.ip(ordinal), host.to_string()));
            }
        }
        BlockInfo { cidr: b.cidr, owner, borrowed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datastore::ipam::block::{Now, Owner};

    fn owner(handle: &str, node: &str) -> Owner {
        Owner { handle: handle.into(), attrs: [("node".to_string(), node.to_string())].into() }
    }

    #[test]
    fn a_block_lists_the_addresses_other_nodes_use() {
        let mut b = Block::new("10.244.1.0/26".parse().unwrap(), "node-1", &Now::at(0, 0));
        b.assign_next(&owner("k8s-pod-network.a", "node-1")).unwrap();
        b.assign_next(&owner("k8s-pod-network.b", "node-2")).unwrap();
        b.assign_next(&Owner { handle: "nobody".into(), attrs: Default::default() }).unwrap();
        let info = BlockInfo::from_block(&b);
        assert_eq!(info.owner.as_deref(), Some("node-1"));
        assert_eq!(info.borrowed, [("10.244.1.1".parse().unwrap(), "node-2".to_string())]);
        // Without affinity every allocation is someone's borrowed address.
        b.affinity = None;
        assert_eq!(BlockInfo::from_block(&b).borrowed.len(), 2);
    }

    #[test]
    fn a_node_resource_gives_addresses_and_vteps() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "node-1"},
            "spec": {
                "bgp": {"ipv4Address": "10.250.0.1/24", "ipv6Address": "fd00:250::1/64", "ipv4IPIPTunnelAddr": "10.244.1.1"},
                "ipv4VXLANTunnelAddr": "10.244.1.0", "vxlanTunnelMACAddr": "66:0A:00:00:00:01",
                "ipv6VXLANTunnelAddr": "fd00:244::1"
            }
        }))
        .unwrap();
        let info = NodeInfo::from_node(&node);
        assert_eq!(info.name, "node-1");
        assert_eq!(info.ipv4, Some("10.250.0.1/24".parse().unwrap()));
        assert_eq!(info.ipv6, Some("fd00:250::1/64".parse().unwrap()));
        assert_eq!(info.ipip_addr, Some("10.244.1.1".parse().unwrap()));
        assert_eq!(info.vtep_v4, Some(Vtep { ip: "10.244.1.0".parse().unwrap(), mac: [0x66, 0x0a, 0, 0, 0, 1] }));
        assert_eq!(info.vtep_v6, None, "an IPv6 tunnel address without its MAC is no VTEP");
    }
}
