//! BGPPeer (`api/pkg/apis/projectcalico/v3/bgppeer.go`): who peers with whom. `node`/`nodeSelector` pick
//! the Calico nodes that get the peering (neither: every node); `peerIP` + `asNumber` name an external peer,
//! `peerSelector` names Calico nodes instead, `localWorkloadSelector` local workloads. Rules: the CRD's CEL
//! rules and `validateBGPPeerSpec` (`libcalico-go/lib/validator/v3/validator.go`).
use super::kinds::BGP_PEER;
use super::validate::{FieldError, Spec};
use super::values::{empty_is_none, is_default, str_enum, AsNumber, Duration, PeerIp, ResourceName, Selector, MAX_SELECTOR_LEN};
use super::{Metadata, NoStatus, Resource};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub type BgpPeer = Resource<BgpPeerSpec>;

pub const KIND: &str = "BGPPeer";

str_enum! {
    /// How the next hop of routes sent to the peer is set (`next hop self` / `next hop keep` in BIRD).
    pub enum NextHopMode { Auto = "Auto", SelfNextHop = "Self", Keep = "Keep" }
}
str_enum! {
    pub enum SourceAddress { UseNodeIp = "UseNodeIP", None = "None" }
}
str_enum! {
    pub enum ReversePeering { Auto = "Auto", Manual = "Manual" }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpPeerSpec {
    #[serde(default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub node: Option<ResourceName>,
    #[serde(rename = "nodeSelector", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<Selector>,
    #[serde(rename = "peerIP", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<PeerIp>,
    /// The peer's AS; 0 (Go's zero value) means not set.
    #[serde(rename = "asNumber", default, skip_serializing_if = "AsNumber::is_zero")]
    pub as_number: AsNumber,
    #[serde(rename = "localASNumber", default, skip_serializing_if = "Option::is_none")]
    pub local_as_number: Option<AsNumber>,
    #[serde(rename = "peerSelector", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<Selector>,
    /// Deprecated for `nextHopMode`.
    #[serde(rename = "keepOriginalNextHop", default, skip_serializing_if = "is_default")]
    pub keep_original_next_hop: bool,
    #[serde(rename = "nextHopMode", default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BgpPassword>,
    /// Unset means `UseNodeIP`.
    #[serde(rename = "sourceAddress", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// Graceful restart time; unset means BIRD's 120 s.
    #[serde(rename = "maxRestartTime", default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<Duration>,
    /// Unset means BIRD's (a third of the hold time).
    #[serde(rename = "keepaliveTime", default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<Duration>,
    #[serde(rename = "numAllowedLocalASNumbers", default, skip_serializing_if = "Option::is_none")]
    pub num_allowed_local_as_numbers: Option<i32>,
    /// GTSM: the number of hops to the peer.
    #[serde(rename = "ttlSecurity", default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    /// A gateway to the peer: a static /32 (or /128) route to the peer goes through it.
    #[serde(rename = "reachableBy", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub reachable_by: Option<IpAddr>,
    /// BGPFilter names, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<ResourceName>,
    #[serde(rename = "localWorkloadSelector", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub local_workload_selector: Option<Selector>,
    /// Unset means `Auto`.
    #[serde(rename = "reversePeering", default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<ReversePeering>,
}

/// A BGP password, held in a Kubernetes secret (BGPConfiguration's `nodeMeshPassword` uses it too).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpPassword {
    #[serde(rename = "secretKeyRef", default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// Kubernetes' `SecretKeySelector`: a key of a secret in calico-node's namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeySelector {
    #[serde(default)]
    pub name: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl Resource<BgpPeerSpec> {
    pub fn bgp_peer(name: impl Into<String>, spec: BgpPeerSpec) -> BgpPeer {
        Resource::new(KIND, Metadata::named(name), spec)
    }
}

impl BgpPeerSpec {
    /// Neither `node` nor `nodeSelector`: every node gets the peering.
    pub fn is_global(&self) -> bool {
        self.node.is_none() && self.node_selector.is_none()
    }
}

fn check_selector_len(field: &str, s: &Option<Selector>) -> Result<(), FieldError> {
    match s {
        Some(s) if s.source.len() > MAX_SELECTOR_LEN => {
            Err(FieldError::new(field, format!("is {} characters long, at most {MAX_SELECTOR_LEN}", s.source.len())))
        }
        _ => Ok(()),
    }
}

impl Spec for BgpPeerSpec {
    type Status = NoStatus;
    const KIND: &'static super::KindInfo = &BGP_PEER;

    fn check(res: &mut BgpPeer) -> Result<(), FieldError> {
        let s = &res.spec;
        check_selector_len("spec.nodeSelector", &s.node_selector)?;
        check_selector_len("spec.peerSelector", &s.peer_selector)?;
        check_selector_len("spec.localWorkloadSelector", &s.local_workload_selector)?;
        if s.node.is_some() && s.node_selector.is_some() {
            return Err(FieldError::new("spec.nodeSelector", "node and nodeSelector cannot both be set"));
        }
        if s.peer_selector.is_some() {
            if s.peer_ip.is_some() {
                return Err(FieldError::new("spec.peerIP", "peerIP and peerSelector cannot both be set"));
            }
            if !s.as_number.is_zero() {
                return Err(FieldError::new("spec.asNumber", "must be empty when peerSelector is set (the peers' own AS numbers are used)"));
            }
        }
        if s.local_workload_selector.is_some() {
            if s.peer_ip.is_some() {
                return Err(FieldError::new("spec.peerIP", "must be empty when localWorkloadSelector is set"));
            }
            if s.peer_selector.is_some() {
                return Err(FieldError::new("spec.peerSelector", "must be empty when localWorkloadSelector is set"));
            }
            if s.as_number.is_zero() {
                return Err(FieldError::new("spec.asNumber", "is required when localWorkloadSelector is set"));
            }
        }
        if s.peer_selector.is_none() && s.local_workload_selector.is_none() {
            // calico-rs: a peering needs someone to peer with, and BIRD an AS for them.
            if s.peer_ip.is_none() {
                return Err(FieldError::new("spec.peerIP", "is required (an address, or set peerSelector or localWorkloadSelector)"));
            }
            if s.as_number.is_zero() {
                return Err(FieldError::new("spec.asNumber", "is required with peerIP (AS 0 is reserved)"));
            }
        }
        if s.local_as_number.is_some_and(|a| a.is_zero()) {
            return Err(FieldError::new("spec.localASNumber", "AS 0 is reserved"));
        }
        match (s.reachable_by, s.peer_ip) {
            (Some(_), None) => return Err(FieldError::new("spec.reachableBy", "must be empty when peerIP is empty")),
            (Some(gw), Some(peer)) if gw.is_ipv4() != peer.ip.is_ipv4() => {
                return Err(FieldError::new("spec.reachableBy", format!("{gw} and peerIP {} are of different address families", peer.ip)));
            }
            _ => {}
        }
        if s.keep_original_next_hop && s.next_hop_mode.is_some() {
            return Err(FieldError::new(
                "spec.nextHopMode",
                "keepOriginalNextHop and nextHopMode cannot both be set (keepOriginalNextHop is deprecated)",
            ));
        }
        for (field, d) in [("spec.maxRestartTime", s.max_restart_time), ("spec.keepaliveTime", s.keepalive_time)] {
            if d.is_some_and(|d| d.is_negative()) {
                return Err(FieldError::new(field, "must not be negative"));
            }
        }
        if s.num_allowed_local_as_numbers.is_some_and(|n| n < 0) {
            return Err(FieldError::new("spec.numAllowedLocalASNumbers", "must not be negative"));
        }
        if s.password.as_ref().is_some_and(|p| p.secret_key_ref.is_none()) {
            return Err(FieldError::new("spec.password", "needs a secretKeyRef"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::validate;
    use serde_json::{json, Value};

    fn doc(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec})
    }

    fn ok(spec: Value) -> BgpPeer {
        validate::parse::<BgpPeerSpec>(&doc("p", spec.clone())).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    fn err(spec: Value) -> (String, String) {
        match validate::parse::<BgpPeerSpec>(&doc("p", spec.clone())) {
            Err(crate::ModelError::Invalid { field, reason, .. }) => (field, reason),
            other => panic!("{spec}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn peers_of_every_shape_are_accepted() {
        let global = ok(json!({"peerIP": "192.20.30.40", "asNumber": 64567}));
        assert!(global.spec.is_global());
        assert_eq!(global.spec.as_number, AsNumber(64567));
        let rack = ok(json!({"peerIP": "192.20.30.40", "asNumber": "64567", "nodeSelector": "rack == 'rack-1'"}));
        assert!(rack.spec.node_selector.as_ref().is_some_and(|s| s.matches(&[("rack".to_string(), "rack-1".to_string())].into())));
        let rr = ok(json!({"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"}));
        assert!(rr.spec.peer_ip.is_none() && rr.spec.as_number.is_zero());
        let full = ok(json!({
            "node": "rack1-host1", "peerIP": "[2001:db8::1]:1179", "asNumber": "1.10", "localASNumber": 64000,
            "nextHopMode": "Self", "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "rr-password"}},
            "sourceAddress": "None", "maxRestartTime": "120s", "keepaliveTime": "10s", "numAllowedLocalASNumbers": 1,
            "ttlSecurity": 1, "reachableBy": "2001:db8::fe", "filters": ["export-filter"], "reversePeering": "Manual"
        }));
        let stored = serde_json::to_value(&full).unwrap();
        assert_eq!(stored["spec"]["asNumber"], json!(65546), "an AS number is stored as a number");
        assert_eq!(stored["spec"]["maxRestartTime"], json!("2m0s"), "a duration is stored as Go prints it");
        assert_eq!(stored["spec"]["peerIP"], json!("[2001:db8::1]:1179"));
        let lw = ok(json!({"localWorkloadSelector": "color == 'red'", "asNumber": 65001}));
        assert!(lw.spec.local_workload_selector.is_some());
        let empties = ok(json!({"peerIP": "10.0.0.1", "asNumber": 65000, "node": "", "nodeSelector": "", "peerSelector": "", "reachableBy": ""}));
        assert!(empties.spec.is_global() && empties.spec.peer_selector.is_none(), "empty strings are Go's unset");
    }

    #[test]
    fn calicos_peer_rules_name_the_field() {
        for (spec, field, reason) in [
            (json!({"node": "n1", "nodeSelector": "all()", "peerIP": "10.0.0.1", "asNumber": 65000}), "spec.nodeSelector", "both"),
            (json!({"peerSelector": "has(rr)", "peerIP": "10.0.0.1"}), "spec.peerIP", "peerSelector"),
            (json!({"peerSelector": "has(rr)", "asNumber": 65000}), "spec.asNumber", "peerSelector"),
            (json!({"localWorkloadSelector": "has(a)", "peerIP": "10.0.0.1", "asNumber": 1}), "spec.peerIP", "localWorkloadSelector"),
            (json!({"localWorkloadSelector": "has(a)", "peerSelector": "has(b)"}), "spec.peerSelector", "localWorkloadSelector"),
            (json!({"localWorkloadSelector": "has(a)"}), "spec.asNumber", "required"),
            (json!({"asNumber": 65000}), "spec.peerIP", "required"),
            (json!({"peerIP": "10.0.0.1"}), "spec.asNumber", "required"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 0}), "spec.asNumber", "required"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "localASNumber": 0}), "spec.localASNumber", "reserved"),
            (json!({"peerSelector": "has(rr)", "reachableBy": "10.0.0.254"}), "spec.reachableBy", "peerIP is empty"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "reachableBy": "fd00::1"}), "spec.reachableBy", "families"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "keepOriginalNextHop": true, "nextHopMode": "Keep"}), "spec.nextHopMode", "both"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "maxRestartTime": "-1s"}), "spec.maxRestartTime", "negative"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "password": {}}), "spec.password", "secretKeyRef"),
            (json!({"peerIP": ":179", "asNumber": 1}), "spec.peerIP", "not an IP address"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 4294967296u64}), "spec.asNumber", "larger than"),
            (json!({"peerIP": "10.0.0.1", "asNumber": "abc"}), "spec.asNumber", "not an AS number"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "nodeSelector": "rack == 'a' |"}), "spec.nodeSelector", "at 12"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "node": "Node_1"}), "spec.node", "lower case"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "filters": ["ok", "a/b"]}), "spec.filters[1]", "'/'"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "nextHopMode": "self"}), "spec.nextHopMode", "must be one of Auto, Self, Keep"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "ttlSecurity": 256}), "spec.ttlSecurity", ""),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "maxRestartTime": "2 minutes"}), "spec.maxRestartTime", "not a duration"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "peerIp": "10.0.0.2"}), "spec.peerIp", "unknown field"),
            (json!({"peerIP": "10.0.0.1", "asNumber": 1, "password": {"secretKeyRef": {"name": "s"}}}), "spec.password.secretKeyRef.key", "required"),
            (
                json!({"peerIP": "10.0.0.1", "asNumber": 1, "nodeSelector": format!("a == '{}'", "x".repeat(1020))}),
                "spec.nodeSelector",
                "at most 1024",
            ),
        ] {
            let (f, r) = err(spec.clone());
            assert_eq!(f, field, "{spec}: {r}");
            assert!(r.contains(reason), "{spec}: {r:?} should say {reason:?}");
        }
    }
}
