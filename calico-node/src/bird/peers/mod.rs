//! Which BGP sessions a node has, as confd computes them: the node-to-node mesh (`processMeshPeers`), then the
//! BGPPeers in three passes (`updatePeersV1`: peerings for every node, then for selected nodes, then the
//! automatic reverse peerings, the first peering of a key winning and a node's peering giving way to a
//! cluster-wide one to the same address and port), each made this node's session per address family
//! (`buildPeerFromData`: names, passive side, iBGP or eBGP, route reflection, next hop).
use super::cluster::{Cluster, ClusterNode};
use super::config::{peer_name, NextHop, Peer, PeerKind, PeerOrigin};
use super::snapshot::SecretRef;
use datastore::resources::bgppeer::{BgpPeer, NextHopMode, ReversePeering, SourceAddress};
use datastore::resources::values::{AsNumber, ClusterId, Duration};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One peering in confd's v1 model (`backends.BGPPeer`), before it is a session of a particular node.
#[derive(Debug, Clone)]
struct Peering<'a> {
    ip: IpAddr,
    port: Option<u16>,
    as_number: AsNumber,
    local_as: Option<AsNumber>,
    source: SourceAddress,
    ttl_security: Option<u8>,
    /// `keepOriginalNextHop`, honoured for eBGP only.
    keep_next_hop: bool,
    next_hop_mode: Option<NextHopMode>,
    /// The address is a Calico node's, so the passive rule applies to a `Global_` session.
    calico_node: bool,
    allow_local_as: Option<u32>,
    reachable_by: Option<IpAddr>,
    /// The peer node's cluster ID (peerings to Calico nodes).
    cluster_id: Option<ClusterId>,
    password: Option<SecretRef>,
    restart_time: Option<u32>,
    keepalive_time: Option<u32>,
    from: &'a str,
    reverse: bool,
}

/// The peerings' key: address and port (`model.GlobalBGPPeerKey`, or `NodeBGPPeerKey` of this node).
type PeeringKey = (IpAddr, Option<u16>);

/// Go's `int(math.Round(d.Seconds()))` for a non-negative duration.
pub fn rounded_secs(d: Duration) -> u64 {
    let n = u64::try_from(d.nanos()).unwrap_or(0);
    n / 1_000_000_000 + u64::from(n % 1_000_000_000 >= 500_000_000)
}

/// Seconds for a BIRD timer; saturates (plan refuses what BIRD would).
fn secs(d: Option<Duration>) -> Option<u32> {
    d.map(|d| u32::try_from(rounded_secs(d)).unwrap_or(u32::MAX))
}

/// Fields every peering of a BGPPeer gets from it (`setPeerConfigFieldsFromV3Resource`).
fn with_resource_fields<'a>(mut p: Peering<'a>, peer: &'a BgpPeer) -> Peering<'a> {
    p.password = peer.spec.password.as_ref().and_then(SecretRef::of);
    p.source = peer.spec.source_address.unwrap_or(SourceAddress::UseNodeIp);
    p.restart_time = secs(peer.spec.max_restart_time);
    p.keepalive_time = secs(peer.spec.keepalive_time);
    p
}

/// `getNextHopMode`: a `nextHopMode` overrides the deprecated `keepOriginalNextHop`.
fn next_hop_fields(peer: &BgpPeer) -> (bool, Option<NextHopMode>) {
    match peer.spec.next_hop_mode {
        Some(m) => (false, Some(m)),
        None => (peer.spec.keep_original_next_hop, None),
    }
}

/// The peerings with a Calico node, per family it has an address of (`nodeAsBGPPeers`).
fn node_as_peerings<'a>(cluster: &Cluster, node: &ClusterNode, v4: bool, v6: bool, peer: &'a BgpPeer, reverse: bool) -> Vec<Peering<'a>> {
    let (keep_next_hop, next_hop_mode) = next_hop_fields(peer);
    let families = [(true, v4), (false, v6)];
    families
        .iter()
        .filter(|(_, wanted)| *wanted)
        .filter_map(|(is_v4, _)| node.address(*is_v4))
        .map(|ip| {
            let p = Peering {
                ip,
                port: cluster.port_of(node),
                as_number: cluster.as_of(node),
                local_as: None,
                source: SourceAddress::UseNodeIp,
                ttl_security: peer.spec.ttl_security,
                keep_next_hop,
                next_hop_mode,
                calico_node: false,
                allow_local_as: None,
                reachable_by: peer.spec.reachable_by,
                cluster_id: node.cluster_id,
                password: None,
                restart_time: None,
                keepalive_time: None,
                from: &peer.metadata.name,
                reverse,
            };
            with_resource_fields(p, peer)
        })
        .collect()
}

/// The peering of a BGPPeer with `peerIP` (the branch of `updatePeersV1` without a selector).
fn address_peering<'a>(cluster: &Cluster, peer: &'a BgpPeer) -> Option<Peering<'a>> {
    let peer_ip = peer.spec.peer_ip?;
    // A peer that is a Calico node is reached on its listen port when the BGPPeer gives none.
    let port = peer_ip.port.or_else(|| {
        let nodes = cluster.nodes_with(peer_ip.ip, peer.spec.as_number, None);
        nodes.first().and_then(|n| cluster.port_of(n))
    });
    let (keep_next_hop, next_hop_mode) = next_hop_fields(peer);
    let p = Peering {
        ip: peer_ip.ip,
        port,
        as_number: peer.spec.as_number,
        local_as: peer.spec.local_as_number,
        source: SourceAddress::UseNodeIp,
        ttl_security: peer.spec.ttl_security,
        keep_next_hop,
        next_hop_mode,
        calico_node: cluster.is_node_ip(peer_ip.ip),
        allow_local_as: peer.spec.num_allowed_local_as_numbers.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0),
        reachable_by: peer.spec.reachable_by,
        cluster_id: None,
        password: None,
        restart_time: None,
        keepalive_time: None,
        from: &peer.metadata.name,
        reverse: false,
    };
    Some(with_resource_fields(p, peer))
}

/// The nodes a BGPPeer's `node`/`nodeSelector` picks (`None`: a cluster-wide BGPPeer).
fn local_nodes<'c, 'a>(cluster: &'c Cluster<'a>, peer: &BgpPeer) -> Option<Vec<&'c ClusterNode<'a>>> {
    if let Some(sel) = &peer.spec.node_selector {
        Some(cluster.nodes.iter().filter(|n| sel.matches(n.labels)).collect())
    } else {
        peer.spec.node.as_ref().map(|name| cluster.node(name.as_str()).into_iter().collect())
    }
}

/// The BGPPeers' peerings that concern this node: the cluster-wide ones, and this node's own.
struct Peerings<'a> {
    global: BTreeMap<PeeringKey, Peering<'a>>,
    mine: BTreeMap<PeeringKey, Peering<'a>>,
}

impl<'a> Peerings<'a> {
    fn emit_global(&mut self, p: Peering<'a>) {
        self.global.entry((p.ip, p.port)).or_insert(p);
    }

    /// A peering of `node`: kept only if it is this node's, is the first for its key, and no cluster-wide
    /// peering has that address and port.
    fn emit_node(&mut self, cluster: &Cluster, node: &str, p: Peering<'a>) {
        let key = (p.ip, p.port);
        if node == cluster.me().name && !self.global.contains_key(&key) {
            self.mine.entry(key).or_insert(p);
        }
    }
}

/// This node's sessions, sorted by name. `peers` are the BGPPeers in name order (Calico walks a map: when two
/// BGPPeers give the same key, which one wins is random there and the first by name here). `passwords` holds
/// the resolved secrets; with `strict_bind` every session gets the node's address as its local one, since BIRD 2
/// listens on each session's. `warnings` gets what Calico would log and carry on past.
pub fn sessions(cluster: &Cluster, peers: &[BgpPeer], passwords: &Passwords, strict_bind: bool, warnings: &mut Vec<String>) -> Vec<Peer> {
    let mut found = Peerings { global: BTreeMap::new(), mine: BTreeMap::new() };
    for global_pass in [true, false] {
        for peer in peers.iter().filter(|p| p.spec.is_global() == global_pass) {
            if peer.spec.local_workload_selector.is_some() {
                if global_pass {
                    warnings.push(format!("BGPPeer {:?}: localWorkloadSelector is not supported by calico-rs; no sessions", peer.metadata.name));
                }
                continue;
            }
            if !peer.spec.filters.is_empty() {
                warnings.push(format!("BGPPeer {:?}: BGPFilters are not supported by calico-rs; the peering has none", peer.metadata.name));
            }
            let peerings: Vec<Peering> = match &peer.spec.peer_selector {
                Some(sel) => cluster.matching(sel).flat_map(|n| node_as_peerings(cluster, n, true, true, peer, false)).collect(),
                None => address_peering(cluster, peer).into_iter().collect(),
            };
            match local_nodes(cluster, peer) {
                None => peerings.into_iter().for_each(|p| found.emit_global(p)),
                Some(nodes) => {
                    for p in peerings {
                        for n in &nodes {
                            found.emit_node(cluster, n.name, p.clone());
                        }
                    }
                }
            }
        }
    }
    // The reverse peerings: the nodes a BGPPeer peers with peer back with the nodes it is for.
    for peer in peers {
        if peer.spec.reverse_peering == Some(ReversePeering::Manual) || peer.spec.local_workload_selector.is_some() {
            continue;
        }
        let (targets, v4, v6): (Vec<&ClusterNode>, bool, bool) = match (&peer.spec.peer_selector, peer.spec.peer_ip) {
            (Some(sel), _) => (cluster.matching(sel).collect(), true, true),
            (None, Some(pip)) => (cluster.nodes_with(pip.ip, peer.spec.as_number, pip.port), pip.ip.is_ipv4(), pip.ip.is_ipv6()),
            (None, None) => continue,
        };
        if targets.is_empty() {
            continue;
        }
        let sources: Vec<&ClusterNode> = local_nodes(cluster, peer).unwrap_or_else(|| cluster.nodes.iter().collect());
        let peerings: Vec<Peering> = sources.iter().flat_map(|n| node_as_peerings(cluster, n, v4, v6, peer, true)).collect();
        for p in peerings {
            for t in &targets {
                found.emit_node(cluster, t.name, p.clone());
            }
        }
    }

    let me = cluster.me();
    let my_as = cluster.as_of(me);
    let mut out = Vec::new();
    for v4 in [true, false] {
        // "IPv4 disabled on this node" (or IPv6): no sessions of a family the node has no address of.
        let Some(my_ip) = me.address(v4) else { continue };
        out.extend(mesh(cluster, my_ip, passwords));
        let scoped = found.global.values().map(|p| (PeerKind::Global, p)).chain(found.mine.values().map(|p| (PeerKind::Node, p)));
        for (kind, p) in scoped.filter(|(_, p)| p.ip.is_ipv4() == v4) {
            if p.ip == my_ip {
                continue;
            }
            out.push(session(kind, p, my_ip, my_as, me.cluster_id, passwords, strict_bind, warnings));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Resolved secrets: the mesh's (`nodeMeshPassword`) and each referenced key's.
pub struct Passwords<'a> {
    pub mesh: Option<&'a str>,
    pub secrets: &'a BTreeMap<SecretRef, String>,
}

impl Passwords<'_> {
    fn get(&self, r: &SecretRef, peer: &str, warnings: &mut Vec<String>) -> Option<String> {
        match self.secrets.get(r) {
            Some(pw) if !pw.is_empty() => Some(pw.clone()),
            Some(_) => None,
            None => {
                let w = format!("BGPPeer {peer:?}: secret {}/{} not found; the session has no password", r.name, r.key);
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
                None
            }
        }
    }
}

/// This node's mesh sessions of one family (`processMeshPeers`): with every other node that has an address of
/// it, unless this node or that one is a route reflector.
fn mesh(cluster: &Cluster, my_ip: IpAddr, passwords: &Passwords) -> Vec<Peer> {
    let me = cluster.me();
    if me.cluster_id.is_some() || !cluster.global.mesh_enabled() {
        return Vec::new();
    }
    let my_as = cluster.as_of(me);
    let restart = secs(cluster.global.node_mesh_max_restart_time);
    let v4 = my_ip.is_ipv4();
    cluster
        .nodes
        .iter()
        .filter(|n| n.cluster_id.is_none())
        .filter_map(|n| Some((n, n.address(v4)?)))
        .filter(|(_, ip)| *ip != my_ip)
        .map(|(n, ip)| {
            let as_number = cluster.as_of(n);
            Peer {
                name: peer_name(PeerKind::Mesh.prefix(), ip, None),
                kind: PeerKind::Mesh,
                origin: PeerOrigin::Mesh { node: n.name.to_string() },
                address: ip,
                port: cluster.port_of(n),
                as_number,
                local_as: None,
                internal: as_number == my_as,
                source_address: Some(my_ip),
                ttl_security: None,
                // One side connects, the other waits, so a graceful restart is not cut short by a second
                // connection; the side with the greater address *string* waits ("10.0.0.10" < "10.0.0.9").
                passive: ip.to_string() > my_ip.to_string(),
                graceful_restart_time: restart,
                keepalive_time: None,
                route_reflector_client: None,
                password: passwords.mesh.map(str::to_string),
                next_hop: NextHop::Auto,
                allow_local_as: None,
                reachable_by: None,
            }
        })
        .collect()
}

/// A peering as this node's session (`buildPeerFromData`).
#[allow(clippy::too_many_arguments)]
fn session(
    kind: PeerKind,
    p: &Peering,
    my_ip: IpAddr,
    my_as: AsNumber,
    my_cluster_id: Option<ClusterId>,
    passwords: &Passwords,
    strict_bind: bool,
    warnings: &mut Vec<String>,
) -> Peer {
    let effective_as = p.local_as.unwrap_or(my_as);
    let internal = p.as_number == effective_as;
    let next_hop = match p.next_hop_mode {
        Some(NextHopMode::SelfNextHop) => NextHop::SelfAddress,
        Some(NextHopMode::Keep) => NextHop::Keep,
        _ if p.keep_next_hop && !internal => NextHop::Keep,
        _ => NextHop::Auto,
    };
    // A route reflector reflects to its iBGP peers, except those in its own cluster (BIRD refuses an eBGP
    // client: "Only internal neighbor can be RR client").
    let route_reflector_client = my_cluster_id.filter(|id| internal && p.cluster_id != Some(*id));
    // Calico makes a Global_ session to another Calico node one-way like the mesh; Node_ sessions never.
    let passive = kind == PeerKind::Global && p.calico_node && p.ip.to_string() > my_ip.to_string();
    // With `strict bind` BIRD 2 listens on each session's local address, so every session needs one.
    let source_address = (p.source == SourceAddress::UseNodeIp || strict_bind).then_some(my_ip);
    Peer {
        name: peer_name(kind.prefix(), p.ip, p.port),
        kind,
        origin: PeerOrigin::BgpPeer { name: p.from.to_string(), reverse: p.reverse },
        address: p.ip,
        port: p.port,
        as_number: p.as_number,
        local_as: p.local_as,
        internal,
        source_address,
        ttl_security: p.ttl_security.filter(|t| *t > 0),
        passive,
        graceful_restart_time: p.restart_time,
        keepalive_time: p.keepalive_time,
        route_reflector_client,
        password: p.password.as_ref().and_then(|r| passwords.get(r, p.from, warnings)),
        next_hop,
        allow_local_as: p.allow_local_as,
        reachable_by: p.reachable_by,
    }
}

#[cfg(test)]
mod tests;
