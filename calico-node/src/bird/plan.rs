//! `plan`: a snapshot of the datastore to this node's `BirdConfig`, as confd's `GetBirdBGPConfig` and its
//! templates decide it: the node's identity (router id, AS, listen port, log level), the routes it originates
//! (a blackhole per affine block, routes to `reachableBy` gateways), the filters (aggregation of own blocks,
//! communities, what goes to BGP peers and to the kernel per IP pool) and the sessions (`peers`). Every
//! resource is checked first with calicoctl's rules, so one that slipped in around calicoctl is an error
//! naming it, never a half-rendered config.
use super::cluster::{Cluster, NODE_CONFIG_PREFIX};
use super::config::*;
use super::error::PlanError;
use super::peers::{self, rounded_secs, Passwords};
use super::snapshot::{BgpSnapshot, RouterIdSource, SecretRef};
use datastore::resources::bgpconfig::{self, BgpConfigurationSpec, BindMode, ProgramClusterRoutes};
use datastore::resources::bgppeer::{self, BgpPeer, BgpPeerSpec};
use datastore::resources::ippool::{self, EncapMode, Pool};
use datastore::resources::node::{self, NodeSpec};
use datastore::resources::Spec;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// BIRD's BGP hold time (240 s, never changed by Calico): a keepalive must not exceed it.
const HOLD_TIME: u64 = 240;
/// The graceful restart capability carries the restart time in 12 bits.
const MAX_RESTART_TIME: u64 = 4095;
/// Linux's `TCP_MD5SIG_MAXKEYLEN`.
const MAX_PASSWORD_LEN: usize = 80;

pub fn plan(s: &BgpSnapshot) -> Result<BirdConfig, PlanError> {
    check_resources(s)?;
    let pools = s
        .ip_pools
        .iter()
        .map(|p| Pool::from_spec(&p.metadata.name, &p.spec).map_err(|e| PlanError::resource(ippool::KIND, &p.metadata.name, e)))
        .collect::<Result<Vec<Pool>, PlanError>>()?;
    let cluster = Cluster::new(s)?;
    let me = cluster.me();
    let mut warnings = Vec::new();
    for c in &s.bgp_configurations {
        let name = &c.metadata.name;
        if name != bgpconfig::DEFAULT_NAME && !name.starts_with(NODE_CONFIG_PREFIX) {
            warnings.push(format!("BGPConfiguration {name:?}: ignored (only \"default\" and \"node.<node name>\" mean anything)"));
        }
    }

    let router_id = match s.settings.router_id {
        RouterIdSource::Fixed(ip) => ip,
        RouterIdSource::Hash => hashed_router_id(&s.node_name),
        RouterIdSource::NodeIp => me.ipv4.ok_or_else(|| PlanError::NoRouterId(s.node_name.clone()))?,
    };
    check_log(&s.settings.log)?;
    let global = cluster.global;
    // Of a node's own BGPConfiguration Calico honours listenPort, logSeverityScreen and prefixAdvertisements.
    let own = me.config;
    let severity = own.map(|c| c.log_severity_screen.as_str()).filter(|l| !l.is_empty()).unwrap_or(&global.log_severity_screen);
    let debug = match severity.to_ascii_lowercase().as_str() {
        "debug" => DebugLevel::All,
        "info" | "" => DebugLevel::States,
        _ => DebugLevel::None,
    };
    let listen = Listen { port: me.listen_port.or(cluster.global_listen_port), strict_bind: global.bind_mode_or_default() == BindMode::NodeIp };

    let mut direct_interfaces: Vec<InterfacePattern> = global.ignored_interfaces.iter().map(|i| InterfacePattern::Exclude(i.clone())).collect();
    direct_interfaces.push(InterfacePattern::Exclude("cali*".into()));
    // kube-proxy's IPVS mode gives kube-ipvs0 an address per service: not routes to announce.
    direct_interfaces.push(InterfacePattern::Exclude("kube-ipvs*".into()));
    direct_interfaces.push(InterfacePattern::Include("*".into()));

    let mut bgp_peers: Vec<BgpPeer> = s.bgp_peers.clone();
    bgp_peers.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mesh_ref = global.node_mesh_password.as_ref().and_then(SecretRef::of);
    let mesh_password = match &mesh_ref {
        Some(r) => match s.passwords.get(r) {
            Some(pw) => Some(pw.as_str()).filter(|p| !p.is_empty()),
            None => {
                warnings.push(format!("nodeMeshPassword: secret {}/{} not found; the mesh has no password", r.name, r.key));
                None
            }
        },
        None => None,
    };
    for (r, pw) in &s.passwords {
        check_password(r, pw)?;
    }
    let passwords = Passwords { mesh: mesh_password, secrets: &s.passwords };
    let peers = peers::sessions(&cluster, &bgp_peers, &passwords, listen.strict_bind, &mut warnings);

    let (blackholes, aggregation) = own_blocks(s);
    let mut static_routes: BTreeSet<StaticRoute> = blackholes.into_iter().map(StaticRoute::Blackhole).collect();
    let mut routed: BTreeMap<IpNet, std::net::IpAddr> = BTreeMap::new();
    for p in &peers {
        let Some(gateway) = p.reachable_by else { continue };
        let dest = IpNet::from(p.address);
        match routed.get(&dest) {
            Some(g) if *g != gateway => {
                warnings.push(format!("BGPPeers give {} two reachableBy gateways ({g} and {gateway}); the route goes via {g}", p.address))
            }
            Some(_) => {}
            None => {
                routed.insert(dest, gateway);
                static_routes.insert(StaticRoute::Via { dest, gateway });
            }
        }
    }

    let policy = ClusterRoutes::of(global);
    let (export, mut kernel) = pool_policies(&pools, policy, &mut warnings);
    kernel.local_subnet = me.ipv4_net;
    Ok(BirdConfig {
        node_name: s.node_name.clone(),
        log: s.settings.log.clone(),
        router_id,
        as_number: cluster.as_of(me),
        debug,
        listen,
        direct_interfaces,
        static_routes: static_routes.into_iter().collect(),
        aggregation,
        communities: communities(own.filter(|c| !c.prefix_advertisements.is_empty()).unwrap_or(global)),
        export,
        kernel,
        peers,
        warnings,
    })
}

/// calicoctl's rules for every resource (the checks `validate::parse` runs), and the limits BIRD has.
fn check_resources(s: &BgpSnapshot) -> Result<(), PlanError> {
    for n in &s.nodes {
        NodeSpec::check(&mut n.clone()).map_err(|e| PlanError::resource(node::KIND, &n.metadata.name, e))?;
    }
    for c in &s.bgp_configurations {
        BgpConfigurationSpec::check(&mut c.clone()).map_err(|e| PlanError::resource(bgpconfig::KIND, &c.metadata.name, e))?;
        if let Some(t) = c.spec.node_mesh_max_restart_time.filter(|t| rounded_secs(*t) > MAX_RESTART_TIME) {
            let why = format!("{t} is more than BGP's {MAX_RESTART_TIME} s");
            return Err(PlanError::field(bgpconfig::KIND, &c.metadata.name, "spec.nodeMeshMaxRestartTime", why));
        }
    }
    for p in &s.bgp_peers {
        let name = &p.metadata.name;
        BgpPeerSpec::check(&mut p.clone()).map_err(|e| PlanError::resource(bgppeer::KIND, name, e))?;
        if let Some(t) = p.spec.keepalive_time {
            let secs = rounded_secs(t);
            if !(1..=HOLD_TIME).contains(&secs) {
                let why = format!("{t} rounds to {secs} s; BIRD takes 1 to {HOLD_TIME} s (its hold time)");
                return Err(PlanError::field(bgppeer::KIND, name, "spec.keepaliveTime", why));
            }
        }
        if let Some(t) = p.spec.max_restart_time.filter(|t| rounded_secs(*t) > MAX_RESTART_TIME) {
            let why = format!("{t} is more than BGP's {MAX_RESTART_TIME} s");
            return Err(PlanError::field(bgppeer::KIND, name, "spec.maxRestartTime", why));
        }
    }
    Ok(())
}

/// A password goes into a BIRD string (no `"`, no newline) and the kernel's MD5 key (at most 80 bytes).
fn check_password(r: &SecretRef, pw: &str) -> Result<(), PlanError> {
    let bad = |reason: String| PlanError::Secret { name: r.name.clone(), key: r.key.clone(), reason };
    if pw.contains(['"', '\n', '\r', '\0']) {
        return Err(bad("a BGP password cannot hold '\"', a newline or NUL (BIRD's strings have no escapes)".into()));
    }
    if pw.len() > MAX_PASSWORD_LEN {
        return Err(bad(format!("{} bytes; a TCP MD5 key is at most {MAX_PASSWORD_LEN}", pw.len())));
    }
    Ok(())
}

fn check_log(log: &BirdLog) -> Result<(), PlanError> {
    match log {
        BirdLog::File(p) if p.to_str().is_none_or(|s| s.is_empty() || s.contains(['"', '\n', '\r', '\0'])) => {
            Err(PlanError::Setting { setting: "BIRD log file", reason: format!("{} cannot be a BIRD string", p.display()) })
        }
        _ => Ok(()),
    }
}

/// `CALICO_ROUTER_ID=hash`: the first four bytes of the name's SHA-256, the first brought below 224 (class D
/// and E are no router ids), as Calico's `HashToIPv4`.
pub fn hashed_router_id(node_name: &str) -> Ipv4Addr {
    let h = hmac_sha256::Hash::hash(node_name.as_bytes());
    let first = if h[0] > 223 { h[0] - 32 } else { h[0] };
    Ipv4Addr::new(first, h[1], h[2], h[3])
}

/// The blackholes and `calico_aggr` blocks of this node's affinities: pending ones count for nothing (calico#6867:
/// a claim in flight is neither blackholed nor announced), deleted ones neither; a /32 (/128) block gets no
/// blackhole (it would shadow the pod's own route) but is still aggregated.
fn own_blocks(s: &BgpSnapshot) -> (Vec<IpNet>, Vec<AggregateBlock>) {
    let mut blocks: BTreeMap<IpNet, BlockState> = BTreeMap::new();
    for a in &s.affinities {
        if a.affinity.deleted {
            continue;
        }
        let state = match a.affinity.state.as_str() {
            "pending" => continue,
            "confirmed" => BlockState::Confirmed,
            "" => BlockState::Implicit,
            other => BlockState::Other(other.to_string()),
        };
        blocks.insert(a.cidr.trunc(), state);
    }
    let blackholes = blocks.keys().filter(|b| b.prefix_len() != b.max_prefix_len()).copied().collect();
    (blackholes, blocks.into_iter().map(|(cidr, state)| AggregateBlock { cidr, state }).collect())
}

/// `prefixAdvertisements`: each CIDR's communities, names resolved through `communities`, sorted as Calico
/// sorts them (as strings) and de-duplicated.
fn communities(spec: &BgpConfigurationSpec) -> Vec<CommunityRule> {
    let mut rules = Vec::new();
    for pa in &spec.prefix_advertisements {
        let Some(cidr) = pa.cidr else { continue };
        let values: BTreeSet<&str> = pa
            .communities
            .iter()
            .filter_map(|c| {
                if bgpconfig::check_community_value(c).is_ok() {
                    Some(c.as_str())
                } else {
                    spec.communities.iter().find(|d| d.name == *c).map(|d| d.value.as_str())
                }
            })
            .collect();
        let communities: Vec<Community> = values.into_iter().filter_map(parse_community).collect();
        if !communities.is_empty() {
            rules.push(CommunityRule { cidr: cidr.net().trunc(), communities });
        }
    }
    rules
}

fn parse_community(v: &str) -> Option<Community> {
    let parts: Vec<&str> = v.split(':').collect();
    match parts[..] {
        [a, b] => Some(Community::Standard(a.parse().ok()?, b.parse().ok()?)),
        [a, b, c] => Some(Community::Large(a.parse().ok()?, b.parse().ok()?, c.parse().ok()?)),
        _ => None,
    }
}

/// Which pools' cluster routes BIRD programs (`programClusterRoutes`, default `EnabledNoEncapOnly`).
#[derive(Debug, Clone, Copy)]
struct ClusterRoutes {
    ipip: bool,
    no_encap: bool,
}

impl ClusterRoutes {
    fn of(global: &BgpConfigurationSpec) -> ClusterRoutes {
        let (ipip, no_encap) = match global.program_cluster_routes_or_default() {
            ProgramClusterRoutes::Enabled => (true, true),
            ProgramClusterRoutes::Disabled => (false, false),
            ProgramClusterRoutes::EnabledIpipOnly => (true, false),
            ProgramClusterRoutes::EnabledNoEncapOnly => (false, true),
        };
        ClusterRoutes { ipip, no_encap }
    }
}

/// The export and kernel filters' per-pool rules (`processIPPools`). Every pool is exported unless it has
/// `disableBGPExport` (VXLAN pools too: the blocks still say which node an address is on). Towards the
/// kernel, the pool's encapsulation decides: this is the hook issue 14 (IPIP, CrossSubnet) extends.
fn pool_policies(pools: &[Pool], policy: ClusterRoutes, warnings: &mut Vec<String>) -> (ExportPolicy, KernelPolicy) {
    let mut export = ExportPolicy { ibgp_reject_interfaces: vec!["*.cali".into(), "*.calico".into()], ..Default::default() };
    if !policy.ipip {
        // Someone else programs IPIP routes over tunl0: they are not this node's to announce over iBGP.
        export.ibgp_reject_interfaces.push("tunl0".into());
    }
    let mut kernel = KernelPolicy::default();
    let mut sorted: Vec<&Pool> = pools.iter().collect();
    sorted.sort_by_key(|p| p.cidr);
    for p in sorted {
        if p.disable_bgp_export {
            export.disabled_pools.push(p.cidr);
        } else {
            export.pools.push(p.cidr);
        }
        let action = if p.vxlan_mode != EncapMode::Never {
            KernelAction::Leave(LeaveReason::Vxlan)
        } else if p.ipip_mode != EncapMode::Never {
            if policy.ipip {
                warnings.push(format!(
                    "IPPool {:?}: programClusterRoutes asks BIRD to program IPIP routes, which BIRD 2 cannot (no krt_tunnel); they are left to the overlay",
                    p.name
                ));
            }
            KernelAction::Leave(LeaveReason::Ipip)
        } else if policy.no_encap {
            KernelAction::Program
        } else {
            KernelAction::Leave(LeaveReason::ProgramClusterRoutes)
        };
        kernel.pools.push(KernelPool { cidr: p.cidr, action });
    }
    (export, kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_router_ids_are_calicos() {
        // confd/tests/compiled_templates/mesh/hash (CALICO_ROUTER_ID=hash on node kube-master).
        assert_eq!(hashed_router_id("kube-master"), Ipv4Addr::new(25, 79, 212, 8));
        let high = (0..1000).map(|i| hashed_router_id(&format!("node-{i}"))).find(|id| id.octets()[0] >= 192);
        assert!(high.is_some_and(|id| id.octets()[0] < 224), "{high:?}");
    }

    #[test]
    fn rounding_is_gos() {
        use datastore::resources::values::Duration;
        for (d, s) in [("1.5s", 2), ("1.4s", 1), ("2m0s", 120), ("0s", 0), ("499ms", 0), ("500ms", 1)] {
            assert_eq!(rounded_secs(d.parse::<Duration>().unwrap()), s, "{d}");
        }
    }
}
