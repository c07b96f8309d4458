//! What `plan` reads: the datastore's BGP-relevant resources as one consistent snapshot (all Nodes, all
//! BGPConfigurations, BGPPeers, IPPools, this node's block affinities), plus what only the agent knows (its
//! router id choice, where BIRD logs, the passwords it resolved from its secret directory), so `plan` stays a
//! pure function.
use super::error::PlanError;
use super::BirdLog;
use datastore::ipam::records::Affinity;
use datastore::resources::bgpconfig::{self, BgpConfiguration, BgpConfigurationSpec};
use datastore::resources::bgppeer::{self, BgpPassword, BgpPeer, BgpPeerSpec};
use datastore::resources::ippool::{self, PoolResource, PoolSpec};
use datastore::resources::node::{self, Node, NodeSpec};
use datastore::resources::validate;
use ipnet::IpNet;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Default)]
pub struct BgpSnapshot {
    /// This node's name (its Node resource's).
    pub node_name: String,
    pub nodes: Vec<Node>,
    /// `default` and every `node.<name>` (other nodes' listen ports decide the ports of sessions to them).
    pub bgp_configurations: Vec<BgpConfiguration>,
    pub bgp_peers: Vec<BgpPeer>,
    pub ip_pools: Vec<PoolResource>,
    /// This node's block affinities (`/calico/ipam/v2/host/<node>/ipv*/block/*`).
    pub affinities: Vec<BlockAffinity>,
    /// Secrets the agent resolved (`secrets::load`); a reference missing here renders no password.
    pub passwords: BTreeMap<SecretRef, String>,
    pub settings: AgentSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlockAffinity {
    pub cidr: IpNet,
    pub affinity: Affinity,
}

/// A key of a secret: `password.secretKeyRef` of a BGPPeer or of BGPConfiguration's `nodeMeshPassword`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    pub name: String,
    pub key: String,
}

impl SecretRef {
    pub fn of(p: &BgpPassword) -> Option<SecretRef> {
        p.secret_key_ref.as_ref().map(|r| SecretRef { name: r.name.clone(), key: r.key.clone() })
    }
}

/// The agent's own settings that shape BIRD's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentSettings {
    pub router_id: RouterIdSource,
    pub log: BirdLog,
}

/// `CALICO_ROUTER_ID`: unset (the node's IPv4 address), `hash` (from the node name, for IPv6-only nodes), or
/// an address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RouterIdSource {
    #[default]
    NodeIp,
    Hash,
    Fixed(Ipv4Addr),
}

impl std::str::FromStr for RouterIdSource {
    type Err = String;

    fn from_str(s: &str) -> Result<RouterIdSource, String> {
        match s {
            "" => Ok(RouterIdSource::NodeIp),
            "hash" => Ok(RouterIdSource::Hash),
            ip => ip.parse().map(RouterIdSource::Fixed).map_err(|_| format!("{ip:?} is neither an IPv4 address nor \"hash\"")),
        }
    }
}

impl BgpSnapshot {
    pub fn new(node_name: impl Into<String>) -> BgpSnapshot {
        BgpSnapshot { node_name: node_name.into(), ..Default::default() }
    }

    /// Adds one stored resource document (Node, BGPConfiguration, BGPPeer or IPPool), decoded and checked as
    /// calicoctl checks it; one that fails is an error naming it. Documents of other kinds are not BGP's and
    /// are ignored.
    pub fn add_document(&mut self, doc: &Value) -> Result<(), PlanError> {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        match kind {
            node::KIND => self.nodes.push(validate::parse::<NodeSpec>(doc)?),
            bgpconfig::KIND => self.bgp_configurations.push(validate::parse::<BgpConfigurationSpec>(doc)?),
            bgppeer::KIND => self.bgp_peers.push(validate::parse::<BgpPeerSpec>(doc)?),
            ippool::KIND => self.ip_pools.push(validate::parse::<PoolSpec>(doc)?),
            "" => return Err(PlanError::Document(format!("a document without a kind: {}", abbreviated(doc)))),
            _ => {}
        }
        Ok(())
    }

    /// The secrets the snapshot's peerings refer to, for the agent to resolve.
    pub fn secret_refs(&self) -> Vec<SecretRef> {
        let mut refs: Vec<SecretRef> = self.bgp_peers.iter().filter_map(|p| p.spec.password.as_ref().and_then(SecretRef::of)).collect();
        let mesh = self.bgp_configurations.iter().filter(|c| c.metadata.name == bgpconfig::DEFAULT_NAME);
        refs.extend(mesh.filter_map(|c| c.spec.node_mesh_password.as_ref().and_then(SecretRef::of)));
        refs.sort();
        refs.dedup();
        refs
    }
}

fn abbreviated(doc: &Value) -> String {
    let s = doc.to_string();
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}
