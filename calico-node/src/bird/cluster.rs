//! The cluster as confd's v1 cache sees it: each node's BGP addresses, AS, route reflector cluster ID, listen
//! port (from its `node.<name>` BGPConfiguration) and labels, plus the cluster-wide AS and listen port. Nodes
//! are in name order, so wherever Calico walks a Go map (and its output depends on the order) calico-rs
//! walks names.
use super::error::PlanError;
use super::snapshot::BgpSnapshot;
use datastore::resources::bgpconfig::{BgpConfigurationSpec, DEFAULT_AS_NUMBER, DEFAULT_NAME};
use datastore::resources::values::{AsNumber, ClusterId, Selector};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Prefix of a node's own BGPConfiguration.
pub const NODE_CONFIG_PREFIX: &str = "node.";

#[derive(Debug, Clone)]
pub struct ClusterNode<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub ipv4: Option<Ipv4Addr>,
    /// The subnet of `ipv4Address` (`network_v4`), for CrossSubnet.
    pub ipv4_net: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Addr>,
    pub as_number: Option<AsNumber>,
    pub cluster_id: Option<ClusterId>,
    /// Its `node.<name>` BGPConfiguration's `listenPort`.
    pub listen_port: Option<u16>,
    pub config: Option<&'a BgpConfigurationSpec>,
}

impl ClusterNode<'_> {
    pub fn address(&self, v4: bool) -> Option<IpAddr> {
        if v4 {
            self.ipv4.map(IpAddr::V4)
        } else {
            self.ipv6.map(IpAddr::V6)
        }
    }
}

pub struct Cluster<'a> {
    /// By name.
    pub nodes: Vec<ClusterNode<'a>>,
    /// Index of this node in `nodes`.
    pub me: usize,
    /// BGPConfiguration `default` (empty when there is none: every field at its default).
    pub global: &'a BgpConfigurationSpec,
    pub global_as: AsNumber,
    pub global_listen_port: Option<u16>,
}

fn empty_spec() -> &'static BgpConfigurationSpec {
    static EMPTY: std::sync::OnceLock<BgpConfigurationSpec> = std::sync::OnceLock::new();
    EMPTY.get_or_init(BgpConfigurationSpec::default)
}

impl<'a> Cluster<'a> {
    pub fn new(s: &'a BgpSnapshot) -> Result<Cluster<'a>, PlanError> {
        let config =
            |name: &str| -> Option<&'a BgpConfigurationSpec> { s.bgp_configurations.iter().find(|c| c.metadata.name == name).map(|c| &c.spec) };
        let global: &'a BgpConfigurationSpec = config(DEFAULT_NAME).unwrap_or_else(|| empty_spec());
        let nonzero = |p: u16| (p != 0).then_some(p);
        let mut nodes: Vec<ClusterNode<'a>> = s
            .nodes
            .iter()
            .map(|n| {
                let bgp = n.spec.bgp.as_ref();
                let v4 = bgp.and_then(|b| b.ipv4_address);
                let own = config(&format!("{NODE_CONFIG_PREFIX}{}", n.metadata.name));
                ClusterNode {
                    name: &n.metadata.name,
                    labels: &n.metadata.labels,
                    ipv4: v4.and_then(|c| match c.addr() {
                        IpAddr::V4(a) => Some(a),
                        IpAddr::V6(_) => None,
                    }),
                    ipv4_net: v4.and_then(|c| match c.net() {
                        ipnet::IpNet::V4(n) => Some(n.trunc()),
                        ipnet::IpNet::V6(_) => None,
                    }),
                    ipv6: bgp.and_then(|b| b.ipv6_address).and_then(|c| match c.addr() {
                        IpAddr::V6(a) => Some(a),
                        IpAddr::V4(_) => None,
                    }),
                    as_number: bgp.and_then(|b| b.as_number),
                    cluster_id: bgp.and_then(|b| b.route_reflector_cluster_id),
                    listen_port: own.and_then(|c| nonzero(c.listen_port)),
                    config: own,
                }
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        let me = nodes.iter().position(|n| n.name == s.node_name).ok_or_else(|| PlanError::NoSuchNode(s.node_name.clone()))?;
        Ok(Cluster { nodes, me, global, global_as: global.as_number.unwrap_or(DEFAULT_AS_NUMBER), global_listen_port: nonzero(global.listen_port) })
    }

    pub fn me(&self) -> &ClusterNode<'a> {
        &self.nodes[self.me]
    }

    pub fn node(&self, name: &str) -> Option<&ClusterNode<'a>> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn matching<'s>(&'s self, selector: &'s Selector) -> impl Iterator<Item = &'s ClusterNode<'a>> + 's {
        self.nodes.iter().filter(move |n| selector.matches(n.labels))
    }

    /// A node's AS, else the cluster's.
    pub fn as_of(&self, n: &ClusterNode) -> AsNumber {
        n.as_number.unwrap_or(self.global_as)
    }

    /// The port sessions to a node use: its own listen port, else the cluster's.
    pub fn port_of(&self, n: &ClusterNode) -> Option<u16> {
        n.listen_port.or(self.global_listen_port)
    }

    /// Whether `ip` is one of some node's BGP addresses (confd's `nodeIPs`).
    pub fn is_node_ip(&self, ip: IpAddr) -> bool {
        self.nodes.iter().any(|n| n.address(true) == Some(ip) || n.address(false) == Some(ip))
    }

    /// confd's `nodesWithIPPortAndAS`: the nodes a peer address (and AS, and port when given) stands for.
    /// The port test is Calico's as written: a node whose own listen port matches is still passed over when
    /// the cluster-wide port is set and differs.
    pub fn nodes_with(&self, ip: IpAddr, as_number: AsNumber, port: Option<u16>) -> Vec<&ClusterNode<'a>> {
        let wanted = if as_number.is_zero() { self.global_as } else { as_number };
        let global = self.global_listen_port;
        self.nodes
            .iter()
            .filter(|n| n.address(true) == Some(ip) || n.address(false) == Some(ip))
            .filter(|n| self.as_of(n) == wanted)
            .filter(|n| match port {
                None => true,
                Some(p) => match n.listen_port {
                    Some(np) if np != p => false,
                    _ => global.is_none_or(|g| g == p),
                },
            })
            .collect()
    }
}
