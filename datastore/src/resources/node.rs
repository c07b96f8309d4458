//! Node (`libcalico-go/lib/apis/internalapi/node.go`, `projectcalico.org/v3` on the wire): a Calico node's
//! BGP identity (AS, addresses, route reflector cluster ID), tunnel addresses, orchestrator references and
//! status. Selectors (a pool's or a peer's `nodeSelector`, `peerSelector`) see only `metadata.labels`. Calico
//! always writes `spec` and `status`, even empty.
use super::kinds::NODE;
use super::validate::{FieldError, Spec};
use super::values::{empty_is_none, AsNumber, Cidr, ClusterId, MacAddr, ResourceName, WireguardKey};
use super::{Metadata, Resource};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

pub type Node = Resource<NodeSpec, NodeStatus>;

pub const KIND: &str = "Node";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    #[serde(rename = "ipv4VXLANTunnelAddr", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub ipv4_vxlan_tunnel_addr: Option<Ipv4Addr>,
    #[serde(rename = "vxlanTunnelMACAddr", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub vxlan_tunnel_mac_addr: Option<MacAddr>,
    #[serde(rename = "ipv6VXLANTunnelAddr", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub ipv6_vxlan_tunnel_addr: Option<Ipv6Addr>,
    #[serde(rename = "vxlanTunnelMACAddrV6", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub vxlan_tunnel_mac_addr_v6: Option<MacAddr>,
    #[serde(rename = "orchRefs", default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<NodeInterface>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBgpSpec {
    /// Unset means the cluster's (BGPConfiguration `default`, else 64512).
    #[serde(rename = "asNumber", default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// The node's IPv4 address and subnet (`10.250.0.1/24`; a bare address is accepted, as Calico does).
    #[serde(rename = "ipv4Address", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<Cidr>,
    #[serde(rename = "ipv6Address", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<Cidr>,
    #[serde(rename = "ipv4IPIPTunnelAddr", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub ipv4_ipip_tunnel_addr: Option<Ipv4Addr>,
    /// Set: the node is a route reflector of this cluster.
    #[serde(rename = "routeReflectorClusterID", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub route_reflector_cluster_id: Option<ClusterId>,
}

/// Which orchestrator knows this node, and by what name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchRef {
    #[serde(rename = "nodeName", default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(default)]
    pub orchestrator: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeWireguardSpec {
    #[serde(rename = "interfaceIPv4Address", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub interface_ipv4_address: Option<Ipv4Addr>,
    #[serde(rename = "interfaceIPv6Address", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub interface_ipv6_address: Option<Ipv6Addr>,
}

/// An address the node is reachable at, with its kind (`CalicoNodeIP`, `InternalIP`, `ExternalIP`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    pub address: Cidr,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInterface {
    #[serde(default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub name: Option<ResourceName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(rename = "wireguardPublicKey", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub wireguard_public_key: Option<WireguardKey>,
    #[serde(rename = "wireguardPublicKeyV6", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub wireguard_public_key_v6: Option<WireguardKey>,
    /// The Kubernetes node's `spec.podCIDRs`.
    #[serde(rename = "podCIDRs", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

const ADDRESS_TYPES: [&str; 3] = ["CalicoNodeIP", "InternalIP", "ExternalIP"];

impl Resource<NodeSpec, NodeStatus> {
    pub fn node(name: impl Into<String>, spec: NodeSpec) -> Node {
        let mut n: Node = Resource::new(KIND, Metadata::named(name), spec);
        n.status = Some(NodeStatus::default());
        n
    }
}

impl Spec for NodeSpec {
    type Status = NodeStatus;
    const KIND: &'static super::KindInfo = &NODE;

    fn check(res: &mut Node) -> Result<(), FieldError> {
        let s = &res.spec;
        if let Some(bgp) = &s.bgp {
            if *bgp == NodeBgpSpec::default() {
                return Err(FieldError::new("spec.bgp", "should not be empty (leave it out instead)"));
            }
            if bgp.as_number.is_some_and(|a| a.is_zero()) {
                return Err(FieldError::new("spec.bgp.asNumber", "AS 0 is reserved"));
            }
            if let Some(a) = bgp.ipv4_address.filter(|a| !a.is_ipv4()) {
                return Err(FieldError::new("spec.bgp.ipv4Address", format!("{a} is not an IPv4 address")));
            }
            if let Some(a) = bgp.ipv6_address.filter(|a| a.is_ipv4()) {
                return Err(FieldError::new("spec.bgp.ipv6Address", format!("{a} is not an IPv6 address")));
            }
        }
        for (i, a) in s.addresses.iter().enumerate() {
            if !a.kind.is_empty() && !ADDRESS_TYPES.contains(&a.kind.as_str()) {
                return Err(FieldError::new(
                    format!("spec.addresses[{i}].type"),
                    format!("{:?} must be one of {}", a.kind, ADDRESS_TYPES.join(", ")),
                ));
            }
        }
        // Calico always writes the status, if only `{}`.
        res.status.get_or_insert_with(NodeStatus::default);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::validate;
    use serde_json::{json, Value};

    fn doc(spec: Value) -> Value {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "node-1", "labels": {"rack": "r1"}}, "spec": spec})
    }

    fn err(spec: Value) -> (String, String) {
        match validate::parse::<NodeSpec>(&doc(spec.clone())) {
            Err(crate::ModelError::Invalid { field, reason, .. }) => (field, reason),
            other => panic!("{spec}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_node_is_stored_as_calico_stores_it() {
        let spec = json!({
            "bgp": {"ipv4Address": "10.250.0.1/24", "asNumber": "64513", "routeReflectorClusterID": "224.0.0.1", "ipv4IPIPTunnelAddr": "192.168.0.1", "ipv6Address": "2001:db8:85a3::8a2e:370:7334/120"},
            "orchRefs": [{"nodeName": "node-1", "orchestrator": "k8s"}],
            "ipv4VXLANTunnelAddr": "10.244.0.1", "vxlanTunnelMACAddr": "66:d1:22:33:44:55",
            "wireguard": {"interfaceIPv4Address": "10.244.0.2"},
            "addresses": [{"address": "10.250.0.1/24", "type": "CalicoNodeIP"}, {"address": "10.250.0.1", "type": "InternalIP"}],
            "interfaces": [{"name": "eth0", "addresses": ["10.250.0.1"]}]
        });
        let stored = validate::validate::<NodeSpec>(&doc(spec)).unwrap();
        assert_eq!(stored["spec"]["bgp"]["asNumber"], json!(64513));
        assert_eq!(stored["spec"]["bgp"]["ipv4Address"], json!("10.250.0.1/24"), "host bits kept: the node's own address");
        assert_eq!(stored["spec"]["addresses"][1]["address"], json!("10.250.0.1"), "a bare address stays bare");
        assert_eq!(stored["status"], json!({}), "Calico always writes the status");
        let node: Node = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(node.spec.bgp.as_ref().and_then(|b| b.route_reflector_cluster_id).map(|c| c.to_string()).as_deref(), Some("224.0.0.1"));
        assert_eq!(validate::validate::<NodeSpec>(&stored).unwrap(), stored, "what is stored validates to itself");
        let bare = validate::validate::<NodeSpec>(&json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "n"}})).unwrap();
        assert_eq!(bare["spec"], json!({}));
    }

    #[test]
    fn calicos_node_rules_name_the_field() {
        for (spec, field, reason) in [
            (json!({"bgp": {}}), "spec.bgp", "not be empty"),
            (json!({"bgp": {"routeReflectorClusterID": "not-an-ip"}}), "spec.bgp.routeReflectorClusterID", "IPv4-formatted"),
            (json!({"bgp": {"routeReflectorClusterID": "fd00::1"}}), "spec.bgp.routeReflectorClusterID", "IPv4-formatted"),
            (json!({"bgp": {"ipv4Address": "fd00::1/64"}}), "spec.bgp.ipv4Address", "not an IPv4"),
            (json!({"bgp": {"ipv6Address": "10.0.0.1/24"}}), "spec.bgp.ipv6Address", "not an IPv6"),
            (json!({"bgp": {"ipv4Address": "10.0.0.300/24"}}), "spec.bgp.ipv4Address", "not a CIDR"),
            (json!({"bgp": {"asNumber": 0}}), "spec.bgp.asNumber", "reserved"),
            (json!({"bgp": {"asNumber": 4294967296u64}}), "spec.bgp.asNumber", "larger than"),
            (json!({"bgp": {"ipv4IPIPTunnelAddr": "10.0.0.1/32"}}), "spec.bgp.ipv4IPIPTunnelAddr", ""),
            (json!({"vxlanTunnelMACAddr": "zz:zz"}), "spec.vxlanTunnelMACAddr", "not a MAC"),
            (json!({"ipv6VXLANTunnelAddr": "10.0.0.1"}), "spec.ipv6VXLANTunnelAddr", ""),
            (json!({"addresses": [{"address": "10.0.0.1", "type": "Public"}]}), "spec.addresses[0].type", "must be one of"),
            (json!({"addresses": [{"type": "InternalIP"}]}), "spec.addresses[0].address", "required"),
            (json!({"interfaces": [{"name": "Eth_0"}]}), "spec.interfaces[0].name", "lower case"),
            (json!({"bgp": {"asNumber": 1, "asn": 2}}), "spec.bgp.asn", "unknown field"),
        ] {
            let (f, r) = err(spec.clone());
            assert_eq!(f, field, "{spec}: {r}");
            assert!(r.contains(reason), "{spec}: {r:?} should say {reason:?}");
        }
        let bad_key =
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "n"}, "status": {"wireguardPublicKey": "short"}});
        assert!(
            matches!(validate::parse::<NodeSpec>(&bad_key), Err(crate::ModelError::Invalid { field, .. }) if field == "status.wireguardPublicKey")
        );
    }
}
