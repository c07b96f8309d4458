//! The attachment record: Calico's `projectcalico.org/v3` WorkloadEndpoint, one per (network, container ID,
//! interface), written in the same commit as the attachment's last address and deleted in the commit that
//! releases them. DEL, CHECK and GC read it to tell whose an interface and an address are; a pod's record is
//! per interface, not per sandbox, so a late DEL of an old sandbox finds the new sandbox's container ID in it.
use super::kinds::WORKLOAD_ENDPOINT;
use super::validate::{FieldError, Spec};
use super::values::{check_name, MacAddr};
use super::{Metadata, NoStatus, Resource};
use crate::store::Key;
use common::attachment::Attachment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Annotations of ours on the record (Calico keeps the network only in the profile name).
pub const NETWORK_ANNOTATION: &str = "calico-rs/network";
pub const NETNS_ANNOTATION: &str = "calico-rs/netns";

pub type WorkloadEndpoint = Resource<EndpointSpec>;

pub const KIND: &str = "WorkloadEndpoint";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub orchestrator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    pub node: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The interface inside the container (`CNI_IFNAME`).
    pub endpoint: String,
    #[serde(rename = "ipNetworks", default)]
    pub ip_networks: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// The host end of the veth.
    #[serde(rename = "interfaceName")]
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

pub fn endpoint_key(att: &Attachment, node: &str) -> Key {
    Key::Resource { kind: &WORKLOAD_ENDPOINT, namespace: att.endpoint_namespace().to_string(), name: att.endpoint_name(node) }
}

impl Resource<EndpointSpec> {
    /// The record of `att` on `node`, before its addresses are known.
    pub fn draft(att: &Attachment, node: &str, netns: Option<&str>, created: &str) -> WorkloadEndpoint {
        let orchestrator = if att.pod.is_some() { "k8s" } else { "cni" };
        let mut labels = BTreeMap::new();
        labels.insert("projectcalico.org/namespace".to_string(), att.endpoint_namespace().to_string());
        labels.insert("projectcalico.org/orchestrator".to_string(), orchestrator.to_string());
        let mut annotations = BTreeMap::new();
        annotations.insert(NETWORK_ANNOTATION.to_string(), att.network.clone());
        if let Some(ns) = netns.filter(|n| !n.is_empty()) {
            annotations.insert(NETNS_ANNOTATION.to_string(), ns.to_string());
        }
        let metadata = Metadata {
            name: att.endpoint_name(node),
            namespace: att.endpoint_namespace().to_string(),
            creation_timestamp: created.to_string(),
            labels,
            annotations,
            ..Default::default()
        };
        Resource::new(
            KIND,
            metadata,
            EndpointSpec {
                orchestrator: orchestrator.into(),
                workload: String::new(),
                node: node.to_string(),
                container_id: att.container_id.clone(),
                pod: att.pod.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
                endpoint: att.ifname.clone(),
                ip_networks: Vec::new(),
                // What Calico's plugin writes when no policy type is configured: a profile named for the network.
                profiles: vec![att.network.clone()],
                interface_name: att.host_veth(),
                mac: String::new(),
            },
        )
    }

    pub fn network(&self) -> &str {
        self.metadata.annotations.get(NETWORK_ANNOTATION).map(String::as_str).unwrap_or("")
    }

    pub fn netns(&self) -> Option<&str> {
        self.metadata.annotations.get(NETNS_ANNOTATION).map(String::as_str)
    }

    /// The attachment the record is of (its pod, if any, is not needed to name its handle).
    pub fn attachment(&self) -> Attachment {
        Attachment {
            network: self.network().to_string(),
            container_id: self.spec.container_id.clone(),
            ifname: self.spec.endpoint.clone(),
            pod: None,
        }
    }

    /// Whether this record is `att`'s own: same network, container and interface.
    pub fn belongs_to(&self, att: &Attachment) -> bool {
        self.network() == att.network && self.spec.container_id == att.container_id && self.spec.endpoint == att.ifname
    }

    /// Whether `att` may take this record over: the same workload and interface (a new sandbox of the pod).
    /// Anything else means two attachments map to one record name, which must not silently overwrite.
    pub fn same_slot(&self, att: &Attachment) -> bool {
        let pod = att.pod.as_ref().map(|p| p.name.as_str()).unwrap_or("");
        self.spec.endpoint == att.ifname && self.spec.pod == pod && (att.pod.is_some() || self.spec.container_id == att.container_id)
    }
}

/// The spec here is calico-rs's subset of Calico's, so fields beyond it are not refused (the spec is read
/// leniently); the envelope and metadata are checked as for every kind.
impl Spec for EndpointSpec {
    type Status = NoStatus;
    const KIND: &'static super::KindInfo = &WORKLOAD_ENDPOINT;

    fn check(res: &mut WorkloadEndpoint) -> Result<(), FieldError> {
        let s = &res.spec;
        check_name(&s.node).map_err(|e| FieldError::new("spec.node", e))?;
        let iface_ok = (1..=15).contains(&s.interface_name.len())
            && s.interface_name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !iface_ok {
            return Err(FieldError::new("spec.interfaceName", format!("{:?} must be 1-15 letters, digits, '_', '.' or '-'", s.interface_name)));
        }
        if !s.mac.is_empty() {
            s.mac.parse::<MacAddr>().map_err(|e| FieldError::new("spec.mac", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::attachment::Pod;
    use serde_json::json;

    #[test]
    fn record_is_calicos_workload_endpoint() {
        let att = Attachment {
            network: "k8s-pod-network".into(),
            container_id: "abc".into(),
            ifname: "eth0".into(),
            pod: Some(Pod { namespace: "default".into(), name: "nginx".into() }),
        };
        let mut wep = WorkloadEndpoint::draft(&att, "node-1", Some("/run/netns/x"), "2026-12-01T00:00:00Z");
        wep.spec.ip_networks.push("10.244.1.5/32".parse().unwrap());
        let v = serde_json::to_value(&wep).unwrap();
        assert_eq!(v["kind"], "WorkloadEndpoint");
        assert_eq!(v["apiVersion"], "projectcalico.org/v3");
        assert_eq!(v["metadata"]["name"], "node--1-k8s-nginx-eth0");
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["spec"]["interfaceName"], "calic440f455693");
        assert_eq!(v["spec"]["containerID"], "abc");
        assert_eq!(v["spec"]["ipNetworks"], json!(["10.244.1.5/32"]));
        assert_eq!(endpoint_key(&att, "node-1").path(), "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node--1-k8s-nginx-eth0");
        assert!(wep.belongs_to(&att));
        let next = Attachment { container_id: "def".into(), ..att.clone() };
        assert!(!wep.belongs_to(&next) && wep.same_slot(&next), "a new sandbox of the pod takes the record over");
        let eth1 = Attachment { ifname: "eth1".into(), ..att };
        assert!(!wep.same_slot(&eth1));
    }
}
