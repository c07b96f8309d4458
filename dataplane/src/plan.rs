//! The route plan: from the nodes, pools, blocks and backend, what the agent programs on this node (routes,
//! VXLAN neighbour and FDB entries, tunnel devices) and which pools BIRD must keep out of the kernel. Pure: no
//! I/O, so every rule is a unit test. The rules are Felix's (`felix/calc/l3_route_resolver.go` turns blocks
//! into routes, `felix/dataplane/linux/route_mgr.go`, `vxlan_mgr.go` and `ipip_mgr.go` program them):
//!
//! * a pool's encapsulation is VXLAN if `vxlanMode` is not Never, else IPIP if `ipipMode` is not Never, else
//!   none; the agent programs VXLAN and IPIP pools always, unencapsulated pools only without BIRD;
//! * a block owned by this node gets `blackhole <block>` unless it is a /32 (/128): that would shadow the CNI
//!   plugin's route to the one pod (`route_mgr.go routeIsLocalBlock`, calico#2624);
//! * a block owned by another node goes `via <its VTEP IP> dev vxlan.calico onlink` (VXLAN) or `via <its
//!   address> dev tunl0 onlink` (IPIP); with CrossSubnet, a node in this node's subnet is reached directly,
//!   `via <its address> dev <uplink>` (`route_mgr.go noEncapRoute`, `SameSubnet` of the resolver);
//! * an address of a block used by a node that does not own the block (borrowed) gets a /32 (/128) of its own
//!   to that node, which wins over the block route by prefix length (`NonAffineAllocations`; `Borrowed`);
//! * a remote VTEP address outside its node's own blocks (borrowed, or in a /32 block) is routed `dev
//!   vxlan.calico` directly: it *is* the tunnel endpoint (`route_mgr.go isRemoteTunnelRoute/isBorrowedRoute`);
//! * each remote VTEP gets a permanent neighbour entry (its tunnel IP at its MAC) and an FDB entry (its MAC
//!   behind its node address) on the VXLAN device (`vxlan_mgr.go updateNeighborsAndAllowedSources`).
use crate::inputs::{Backend, BlockInfo, NodeInfo, Vtep};
use datastore::resources::ippool::{AllowedUse, EncapMode, Pool};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

#[cfg(test)]
mod tests;

/// Felix's route protocol (`dataplanedefs.DefaultRouteProto`): every route the agent writes carries it, and
/// the reconciler deletes no route without it.
pub const ROUTE_PROTOCOL: u8 = 80;
/// Felix's device names (`dataplanedefs.VXLANIfaceNameV4/V6`, `IPIPIfaceName`).
pub const VXLAN_DEVICE: &str = "vxlan.calico";
pub const VXLAN_DEVICE_V6: &str = "vxlan-v6.calico";
pub const IPIP_DEVICE: &str = "tunl0";
/// Felix's defaults (`felix/config/config_params.go` VXLANVNI, VXLANPort).
pub const DEFAULT_VXLAN_VNI: u32 = 4096;
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// Felix's `vxlanVNI` and `vxlanPort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanConfig {
    pub vni: u32,
    pub port: u16,
}

impl Default for VxlanConfig {
    fn default() -> VxlanConfig {
        VxlanConfig { vni: DEFAULT_VXLAN_VNI, port: DEFAULT_VXLAN_PORT }
    }
}

/// Everything the plan is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// This node's name.
    pub node: &'a str,
    /// Every node, this one included.
    pub nodes: &'a [NodeInfo],
    pub pools: &'a [Pool],
    pub blocks: &'a [BlockInfo],
    pub backend: Backend,
    pub vxlan: VxlanConfig,
}

/// A pool's encapsulation, as Felix classifies pools (`IPPoolType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    None,
    Vxlan { cross_subnet: bool },
    Ipip { cross_subnet: bool },
}

impl Encap {
    pub fn of(pool: &Pool) -> Encap {
        match (pool.vxlan_mode, pool.ipip_mode) {
            (EncapMode::Always, _) => Encap::Vxlan { cross_subnet: false },
            (EncapMode::CrossSubnet, _) => Encap::Vxlan { cross_subnet: true },
            (_, EncapMode::Always) => Encap::Ipip { cross_subnet: false },
            (_, EncapMode::CrossSubnet) => Encap::Ipip { cross_subnet: true },
            _ => Encap::None,
        }
    }
}

/// Where a planned route sends its traffic. Every one is written with `proto 80` in the main table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// `blackhole <dst>`: this node's own block; addresses not on a pod here are dropped, not sent on.
    Blackhole,
    /// `<dst> via <gw> dev <device> onlink`: through a tunnel, `gw` being the remote VTEP IP (VXLAN) or the
    /// remote node's address (IPIP).
    Tunnel { device: &'static str, gw: IpAddr },
    /// `<dst> dev <device> scope link`: a remote VTEP itself.
    Direct { device: &'static str },
    /// `<dst> via <gw> dev <uplink>`: a node in this node's subnet, no encapsulation; the uplink is the
    /// interface that holds this node's address (found when applying, as Felix's `detectParentIface`).
    Uplink { gw: IpAddr },
}

/// A permanent neighbour entry on a VXLAN device: `ip neigh replace <ip> lladdr <mac> dev <device> nud permanent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlannedNeighbour {
    pub device: &'static str,
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// A VXLAN FDB entry: `bridge fdb replace <mac> dev <device> dst <dst> self permanent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlannedFdb {
    pub device: &'static str,
    pub mac: [u8; 6],
    pub dst: IpAddr,
}

/// This node's VXLAN device: `ip link add <name> address <mac> type vxlan id <vni> dstport <port> local
/// <local> dev <uplink> nolearning`, with `<address>/32` (/128) on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanDevice {
    pub name: &'static str,
    pub vni: u32,
    pub port: u16,
    pub mac: [u8; 6],
    /// The VTEP IP.
    pub address: IpAddr,
    /// This node's address: the tunnel's source, and how the uplink is found.
    pub local: IpAddr,
}

/// This node's IPIP device (`tunl0`) and its address (`spec.bgp.ipv4IPIPTunnelAddr`), if the node has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpipDevice {
    pub address: Option<Ipv4Addr>,
    /// This node's address, to find the uplink by.
    pub local: Ipv4Addr,
}

/// What the agent programs on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// One route per destination.
    pub routes: BTreeMap<IpNet, Target>,
    pub neighbours: BTreeSet<PlannedNeighbour>,
    pub fdb: BTreeSet<PlannedFdb>,
    pub vxlan_v4: Option<VxlanDevice>,
    pub vxlan_v6: Option<VxlanDevice>,
    pub ipip: Option<IpipDevice>,
    /// This node's addresses: `Target::Uplink` routes leave by the interface that holds them.
    pub local_v4: Option<IpAddr>,
    pub local_v6: Option<IpAddr>,
    /// Pools whose routes BIRD must not write into the kernel (its `calico_kernel_programming` filter rejects
    /// them: "VXLAN routes are handled by Felix", and IPIP ones since the agent programs them). Empty
    /// without BIRD.
    pub bird_kernel_rejects: Vec<IpNet>,
    /// What could not be planned and why (a block of an unknown node, a node without a VTEP...).
    pub warnings: Vec<String>,
}

impl Plan {
    /// The VXLAN device of one family.
    pub fn vxlan(&self, v6: bool) -> Option<&VxlanDevice> {
        if v6 {
            self.vxlan_v6.as_ref()
        } else {
            self.vxlan_v4.as_ref()
        }
    }
}

/// The VXLAN device name of a family.
pub fn vxlan_device(v6: bool) -> &'static str {
    if v6 {
        VXLAN_DEVICE_V6
    } else {
        VXLAN_DEVICE
    }
}

/// Computes the plan. Never fails: what cannot be planned is left out and named in `warnings`.
pub fn plan(inputs: &Inputs) -> Plan {
    let mut plan = Plan::default();
    if inputs.backend == Backend::None {
        return plan;
    }
    let Some(me) = inputs.nodes.iter().find(|n| n.name == inputs.node) else {
        plan.warnings.push(format!("node {} is not among the nodes: nothing to plan", inputs.node));
        return plan;
    };
    plan.local_v4 = me.address(false).map(|a| a.addr());
    plan.local_v6 = me.address(true).map(|a| a.addr());
    let planner = Planner { inputs, me };
    planner.devices(&mut plan);
    for pool in inputs.pools {
        let encap = Encap::of(pool);
        if inputs.backend == Backend::Bird && encap != Encap::None {
            plan.bird_kernel_rejects.push(pool.cidr);
        }
        if !planner.programs(encap) {
            continue;
        }
        for block in inputs.blocks.iter().filter(|b| pool.cidr.contains(&b.cidr)) {
            planner.block_routes(&mut plan, pool, encap, block);
        }
    }
    planner.vteps(&mut plan);
    plan
}

struct Planner<'a> {
    inputs: &'a Inputs<'a>,
    me: &'a NodeInfo,
}

impl Planner<'_> {
    /// Whether the agent, not BIRD, programs the routes of pools with `encap`.
    fn programs(&self, encap: Encap) -> bool {
        encap != Encap::None || self.inputs.backend == Backend::Vxlan
    }

    /// Whether a pool of family `v6` with VXLAN (IPIP) exists: Felix turns the device on for it.
    fn has_pool(&self, v6: bool, vxlan: bool) -> bool {
        self.inputs.pools.iter().any(|p| {
            p.cidr.addr().is_ipv6() == v6
                && match Encap::of(p) {
                    Encap::Vxlan { .. } => vxlan,
                    Encap::Ipip { .. } => !vxlan,
                    Encap::None => false,
                }
        })
    }

    fn devices(&self, plan: &mut Plan) {
        for v6 in [false, true] {
            if !self.has_pool(v6, true) {
                continue;
            }
            match (self.me.vtep(v6), self.me.address(v6)) {
                (Some(vtep), Some(local)) => {
                    let device = VxlanDevice {
                        name: vxlan_device(v6),
                        vni: self.inputs.vxlan.vni,
                        port: self.inputs.vxlan.port,
                        mac: vtep.mac,
                        address: vtep.ip,
                        local: local.addr(),
                    };
                    *if v6 { &mut plan.vxlan_v6 } else { &mut plan.vxlan_v4 } = Some(device);
                }
                _ => plan.warnings.push(format!(
                    "this node has no {} VTEP (tunnel address, MAC and node address): no {} yet",
                    if v6 { "IPv6" } else { "IPv4" },
                    vxlan_device(v6)
                )),
            }
        }
        if self.has_pool(false, false) {
            match self.me.ipv4 {
                Some(local) => plan.ipip = Some(IpipDevice { address: self.me.ipip_addr, local: local.addr() }),
                None => plan.warnings.push(format!("this node has no IPv4 address: no {IPIP_DEVICE}")),
            }
        }
    }

    fn block_routes(&self, plan: &mut Plan, pool: &Pool, encap: Encap, block: &BlockInfo) {
        let own = block.owner.as_deref() == Some(self.me.name.as_str());
        if own && block.cidr.prefix_len() != block.cidr.max_prefix_len() {
            plan.routes.insert(block.cidr, Target::Blackhole);
        } else if let Some(owner) = block.owner.as_deref().filter(|_| !own) {
            if let Some(t) = self.to_node(plan, block.cidr, owner, pool, encap) {
                plan.routes.insert(block.cidr, t);
            }
        }
        for (ip, node) in &block.borrowed {
            if *node == self.me.name {
                // The CNI plugin's route to the pod's veth is the route.
                continue;
            }
            let dst = IpNet::from(*ip);
            if let Some(t) = self.to_node(plan, dst, node, pool, encap) {
                plan.routes.insert(dst, t);
            }
        }
    }

    /// How `dst` of pool `pool` reaches node `name`.
    fn to_node(&self, plan: &mut Plan, dst: IpNet, name: &str, pool: &Pool, encap: Encap) -> Option<Target> {
        let v6 = dst.addr().is_ipv6();
        let Some(node) = self.inputs.nodes.iter().find(|n| n.name == name) else {
            plan.warnings.push(format!("{dst} belongs to node {name}, which is not among the nodes: no route"));
            return None;
        };
        let Some(node_ip) = node.address(v6).map(|a| a.addr()) else {
            plan.warnings.push(format!("{dst}: node {name} has no {} address: no route", if v6 { "IPv6" } else { "IPv4" }));
            return None;
        };
        let same_subnet = self.me.address(v6).is_some_and(|mine| mine.contains(&node_ip));
        match encap {
            Encap::None if same_subnet => Some(Target::Uplink { gw: node_ip }),
            Encap::None => {
                plan.warnings.push(format!(
                    "{dst} of pool {} (no encapsulation) is on node {name} at {node_ip}, outside this node's subnet: no route",
                    pool.name
                ));
                None
            }
            Encap::Vxlan { cross_subnet: true } | Encap::Ipip { cross_subnet: true } if same_subnet => Some(Target::Uplink { gw: node_ip }),
            Encap::Vxlan { .. } => {
                // No device of our own yet: the warning about it says why.
                plan.vxlan(v6)?;
                match node.vtep(v6) {
                    Some(vtep) => Some(Target::Tunnel { device: vxlan_device(v6), gw: vtep.ip }),
                    None => {
                        plan.warnings.push(format!("{dst}: node {name} has no VTEP yet: no route"));
                        None
                    }
                }
            }
            Encap::Ipip { .. } if v6 => {
                plan.warnings.push(format!("{dst}: IPIP carries IPv4 only (pool {}): no route", pool.name));
                None
            }
            Encap::Ipip { .. } => Some(Target::Tunnel { device: IPIP_DEVICE, gw: node_ip }),
        }
    }

    /// Neighbour and FDB entries of every remote VTEP, and the direct routes of VTEP addresses that no block
    /// of their own node covers.
    fn vteps(&self, plan: &mut Plan) {
        for v6 in [false, true] {
            let Some(device) = plan.vxlan(v6).map(|d| d.name) else { continue };
            for node in self.inputs.nodes.iter().filter(|n| n.name != self.me.name) {
                let (Some(vtep), Some(addr)) = (node.vtep(v6), node.address(v6)) else { continue };
                plan.neighbours.insert(PlannedNeighbour { device, ip: vtep.ip, mac: vtep.mac });
                plan.fdb.insert(PlannedFdb { device, mac: vtep.mac, dst: addr.addr() });
                if self.vtep_needs_own_route(node, &vtep) {
                    plan.routes.insert(IpNet::from(vtep.ip), Target::Direct { device });
                }
            }
        }
    }

    /// Felix's remote-tunnel and borrowed-tunnel cases: the VTEP address is in a VXLAN pool and the most
    /// specific block holding it is not a larger block of the VTEP's own node.
    fn vtep_needs_own_route(&self, node: &NodeInfo, vtep: &Vtep) -> bool {
        let in_vxlan_pool = self.inputs.pools.iter().any(|p| p.cidr.contains(&vtep.ip) && matches!(Encap::of(p), Encap::Vxlan { .. }));
        let block = self.inputs.blocks.iter().filter(|b| b.cidr.contains(&vtep.ip)).max_by_key(|b| b.cidr.prefix_len());
        in_vxlan_pool && block.is_some_and(|b| b.owner.as_deref() != Some(node.name.as_str()) || b.cidr.prefix_len() == b.cidr.max_prefix_len())
    }
}

/// The pools natOutgoing and the BIRD filters count as "the pools" (Felix's `all-ipam-pools` set): every pool
/// but those only for LoadBalancer addresses, whose CIDRs hold no pod (`masq_mgr.go isLoadBalancerOnly`).
pub fn is_pod_pool(pool: &Pool) -> bool {
    !(pool.allowed_uses.len() == 1 && pool.allowed_uses[0] == AllowedUse::LoadBalancer)
}
