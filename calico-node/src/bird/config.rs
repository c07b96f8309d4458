//! The intermediate representation between the datastore and BIRD's text: everything one node's BIRD 2 must
//! do, decided (peer names, passive sides, route reflection, filters' rules) but not yet written. Shaped like
//! confd's `BirdBGPConfig`/`BirdBGPPeer` (`confd/pkg/backends/types/bird_bgp_config.go`), for both address
//! families at once since one BIRD 2 daemon does both. `plan` builds it, `render` prints it.
use datastore::resources::values::{AsNumber, ClusterId};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct BirdConfig {
    pub node_name: String,
    /// Where BIRD logs (the agent's choice, not the datastore's).
    pub log: BirdLog,
    pub router_id: Ipv4Addr,
    /// The node's AS: its `spec.bgp.asNumber`, else BGPConfiguration `default`'s, else 64512.
    pub as_number: AsNumber,
    /// From `logSeverityScreen` (the node's `node.<name>` BGPConfiguration first).
    pub debug: DebugLevel,
    pub listen: Listen,
    /// The direct protocol's interface patterns, in order (`ignoredInterfaces`, then Calico's own).
    pub direct_interfaces: Vec<InterfacePattern>,
    /// `protocol static` routes, sorted: blackholes for own blocks, routes to peers (`reachableBy`).
    pub static_routes: Vec<StaticRoute>,
    /// `calico_aggr()`: this node's blocks, sorted.
    pub aggregation: Vec<AggregateBlock>,
    /// `apply_communities()`: `prefixAdvertisements`, in the resource's order.
    pub communities: Vec<CommunityRule>,
    /// `calico_export_to_bgp_peers()`.
    pub export: ExportPolicy,
    /// `calico_kernel_programming`.
    pub kernel: KernelPolicy,
    /// Sorted by name, as Calico sorts them (byte order).
    pub peers: Vec<Peer>,
    /// What Calico would log and carry on past (a missing secret, a field calico-rs does not implement); not
    /// rendered. The agent logs them.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BirdLog {
    /// `log stderr all;` (the agent's supervisor collects it).
    #[default]
    Stderr,
    Syslog,
    File(PathBuf),
}

/// Calico keeps three levels: `debug` → `debug all`, `info` → `debug { states }`, anything else nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugLevel {
    None,
    States,
    All,
}

/// BGP's listening socket. BIRD 2 has no global `listen bgp`: the port is every session's `local port` and
/// binding to the node's address is `strict bind` with every session's local address set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Listen {
    /// `listenPort` (the node's `node.<name>` BGPConfiguration first); `None` is BIRD's 179.
    pub port: Option<u16>,
    /// `bindMode: NodeIP`.
    pub strict_bind: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfacePattern {
    Exclude(String),
    Include(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StaticRoute {
    /// `route <block> blackhole;`: a block affine to this node, so BIRD owns `blackhole <block> proto bird` in
    /// the kernel and announces the block.
    Blackhole(IpNet),
    /// `route <peer>/32 via <gateway>;`: a BGPPeer's `reachableBy`, so the session's address stays reachable
    /// through that gateway whatever BGP learns.
    Via { dest: IpNet, gateway: IpAddr },
}

impl StaticRoute {
    pub fn dest(&self) -> IpNet {
        match self {
            StaticRoute::Blackhole(n) | StaticRoute::Via { dest: n, .. } => *n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateBlock {
    pub cidr: IpNet,
    pub state: BlockState,
}

/// An affinity's state as `calico_aggr` sees it (pending affinities never get this far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockState {
    Confirmed,
    /// No state: older data, "implicitly confirmed".
    Implicit,
    /// Any other state (`pendingDeletion`): blackholed, but nothing beneath it is held back.
    Other(String),
}

impl BlockState {
    /// Whether the block is announced by itself and what lies inside it held back.
    pub fn aggregates(&self) -> bool {
        matches!(self, BlockState::Confirmed | BlockState::Implicit)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommunityRule {
    pub cidr: IpNet,
    /// Sorted and de-duplicated, as Calico does.
    pub communities: Vec<Community>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Community {
    Standard(u16, u16),
    Large(u32, u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportPolicy {
    /// Pools with `disableBGPExport`: rejected before anything else.
    pub disabled_pools: Vec<IpNet>,
    /// Interface patterns whose routes never go to iBGP peers (Calico: VXLAN and WireGuard devices, and
    /// `tunl0` unless BIRD programs IPIP).
    pub ibgp_reject_interfaces: Vec<String>,
    /// Every other pool: accepted last (after `calico_aggr` held back what lies inside own blocks).
    pub pools: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelPolicy {
    /// Sorted by CIDR; routes outside every pool are programmed.
    pub pools: Vec<KernelPool>,
    /// The node's IPv4 subnet (of `ipv4Address`): CrossSubnet pools encapsulate only beyond it (issue 14).
    pub local_subnet: Option<ipnet::Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPool {
    pub cidr: IpNet,
    pub action: KernelAction,
}

/// What BIRD does with a pool's routes towards the kernel. Issue 14 (overlays) adds the IPIP case BIRD 2
/// can program itself, if it chooses to (Calico's fork sets `krt_tunnel`; mainline BIRD 2 has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelAction {
    /// BIRD programs them as they are: `<block> via <node>` (no encapsulation), its own blackholes.
    Program,
    /// BIRD leaves them alone: another part of the agent owns them.
    Leave(LeaveReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// VXLAN routes are the overlay's, never BIRD's (Felix's in Calico).
    Vxlan,
    /// IPIP routes need a tunnel device BIRD 2 cannot program (the overlay's: issue 14).
    Ipip,
    /// `programClusterRoutes` gives these pools' cluster routes to someone else.
    ProgramClusterRoutes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerKind {
    /// Node-to-node mesh (`Mesh_`).
    Mesh,
    /// A BGPPeer for every node (`Global_`).
    Global,
    /// A BGPPeer for some nodes, or a reverse peering (`Node_`).
    Node,
}

impl PeerKind {
    pub fn prefix(&self) -> &'static str {
        match self {
            PeerKind::Mesh => "Mesh",
            PeerKind::Global => "Global",
            PeerKind::Node => "Node",
        }
    }
}

/// Why a session exists: the mesh (with which node) or a BGPPeer (directly, or as the reverse of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOrigin {
    Mesh { node: String },
    BgpPeer { name: String, reverse: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// BIRD's rules: self for routes without a gateway and towards eBGP peers, kept towards iBGP peers.
    Auto,
    /// `next hop self`.
    SelfAddress,
    /// `next hop keep`.
    Keep,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// `Mesh_10_0_0_2`, `Global_fd00__1_port_1790`: Calico's names (`.` and `:` become `_`).
    pub name: String,
    pub kind: PeerKind,
    pub origin: PeerOrigin,
    pub address: IpAddr,
    /// `neighbor … port`; `None` is 179.
    pub port: Option<u16>,
    pub as_number: AsNumber,
    /// `localASNumber`.
    pub local_as: Option<AsNumber>,
    /// The peer's AS is this side's (effective) AS: iBGP, so tunnel routes are held back and it may be a
    /// route reflector client.
    pub internal: bool,
    pub source_address: Option<IpAddr>,
    /// GTSM with this many hops (`ttl security on; multihop N;`); `None`: `ttl security off; multihop;`.
    pub ttl_security: Option<u8>,
    /// Wait for the peer to connect.
    pub passive: bool,
    /// `graceful restart time` in seconds.
    pub graceful_restart_time: Option<u32>,
    /// `keepalive time` in seconds.
    pub keepalive_time: Option<u32>,
    /// `rr client; rr cluster id <id>;`: this node reflects routes to the peer.
    pub route_reflector_client: Option<ClusterId>,
    /// TCP MD5.
    pub password: Option<String>,
    pub next_hop: NextHop,
    /// `allow local as N`.
    pub allow_local_as: Option<u32>,
    /// `reachableBy`: a static route to the peer through this gateway.
    pub reachable_by: Option<IpAddr>,
}

impl Peer {
    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }
}

/// Calico's protocol name: prefix, the address with `.`/`:` as `_`, and `_port_<p>` when a port is given.
pub fn peer_name(prefix: &str, address: IpAddr, port: Option<u16>) -> String {
    let addr: String = address.to_string().chars().map(|c| if c == '.' || c == ':' { '_' } else { c }).collect();
    match port {
        Some(p) => format!("{prefix}_{addr}_port_{p}"),
        None => format!("{prefix}_{addr}"),
    }
}

/// The address of a session as `birdc`/`calicoctl node status` print it from the protocol name.
pub fn address_of_name(name: &str) -> Option<IpAddr> {
    let rest = name.strip_prefix("Mesh_").or_else(|| name.strip_prefix("Global_")).or_else(|| name.strip_prefix("Node_"))?;
    let rest = rest.split("_port_").next()?;
    let dotted = rest.replace('_', ".");
    dotted.parse().ok().or_else(|| rest.replace('_', ":").parse().ok())
}
