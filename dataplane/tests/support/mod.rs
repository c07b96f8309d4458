//! What the dataplane tests share: running code inside a host's netns, the datastore's pools and blocks as
//! the agent would read them, a VTEP per node (its address from IPAM, as Calico allocates it), nft counters,
//! and a netlink monitor that proves a pass changed nothing.
#![allow(dead_code)] // each test file uses its own part
use common::netns::NetNs;
use dataplane::{BlockInfo, NodeInfo};
use datastore::ipam::block::Block;
use datastore::resources::ippool::{Pool, PoolResource};
use datastore::resources::kinds::IPPOOL;
use datastore::store::{Datastore, Kind};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use testbed::cluster::{Cluster, ClusterNode};
use testbed::host::Host;

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f` on a thread inside `netns` (a name under /run/netns).
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> T {
    NetNs::open(&Path::new("/run/netns").join(netns)).expect("open netns").run(f).expect("netns worker")
}

/// Runs `f` with a netlink socket in `host`'s netns.
pub fn with_netlink<T: Send>(host: &Host, f: impl FnOnce(&mut common::netlink::Netlink) -> T + Send) -> T {
    in_netns(&host.netns, || f(&mut common::netlink::Netlink::open().expect("netlink")))
}

/// The pools and blocks in the cluster's etcd, converted as the agent converts them.
pub fn snapshot(cluster: &Cluster) -> (Vec<Pool>, Vec<BlockInfo>) {
    let store = cluster.etcd().store();
    let session = store.lock().expect("lock etcd");
    let pools = session.list(Kind::Resource(&IPPOOL)).expect("list pools");
    let pools = pools.iter().map(|(_, r)| Pool::from_resource(&r.value.decode::<PoolResource>().expect("pool")).expect("valid pool")).collect();
    let blocks = session.list(Kind::Block).expect("list blocks");
    let blocks = blocks.iter().map(|(_, r)| BlockInfo::from_block(&r.value.decode::<Block>().expect("block"))).collect();
    (pools, blocks)
}

/// A VTEP address for `node` from IPAM, through cni-ipam run as a runtime runs it (handle
/// `k8s-pod-network.vxlan-tunnel-addr-<node>`): an address of the node's own block, as Calico's is.
pub fn vtep_address(cluster: &Cluster, node: &ClusterNode) -> Ipv4Addr {
    let conf = cluster.calico_conf();
    let cid = format!("vxlan-tunnel-addr-{}", node.name);
    // An IPAM plugin does not enter the netns it is given; the node's own stands in for a pod's.
    let out = node.run("cni-ipam", "ADD", &cid, Some(&node.netns), "eth0", &[], &conf).ok();
    let ip = out.json["ips"][0]["address"].as_str().expect("an address").split('/').next().expect("ip").to_string();
    ip.parse().expect("IPv4 VTEP")
}

/// `NodeInfo` of a bed node: `eth0`'s address in its /24, the VTEP `vtep` with MAC 66:00:00:00:00:<number>.
pub fn node_info(node: &ClusterNode, vtep: Option<Ipv4Addr>) -> NodeInfo {
    let info = NodeInfo::new(&node.name, format!("{}/24", node.ip).parse().expect("node address"));
    match vtep {
        Some(ip) => info.with_vtep(ip, vtep_mac(node)),
        None => info,
    }
}

pub fn vtep_mac(node: &ClusterNode) -> [u8; 6] {
    [0x66, 0, 0, 0, 0, node.number as u8]
}

// Not every test binary that includes this module uses them.
#[allow(unused_imports)]
pub use testbed::probe::{counter, nft, ping_df};

/// Pings until one reply comes; panics after TIMEOUT.
pub fn wait_ping(ns: &str, ip: &str) {
    testbed::probe::wait_ping(ns, ip, TIMEOUT);
}

/// A subscription to every route, neighbour, address and link notification of the calling thread's netns.
pub struct Monitor {
    socket: netlink_sys::Socket,
}

impl Monitor {
    pub fn open() -> Monitor {
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE).expect("socket");
        socket.bind_auto().expect("bind");
        // RTNLGRP_LINK 1, NEIGH 3, IPV4_IFADDR 5, IPV4_ROUTE 7, IPV6_IFADDR 9, IPV6_ROUTE 11.
        for group in [1, 3, 5, 7, 9, 11] {
            socket.add_membership(group).expect("membership");
        }
        socket.set_non_blocking(true).expect("non-blocking");
        Monitor { socket }
    }

    /// The message types queued so far (RTM_NEWROUTE 24, RTM_DELROUTE 25, RTM_NEWNEIGH 28, ...). The kernel
    /// queues a notification before it answers the request that caused it, so after a pass this is complete.
    pub fn drain(&mut self) -> Vec<u16> {
        let mut types = Vec::new();
        let mut buf = Vec::with_capacity(1 << 16);
        loop {
            buf.clear();
            match self.socket.recv(&mut buf, 0) {
                Ok(n) => {
                    let mut off = 0;
                    while off + 16 <= n {
                        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
                        types.push(u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes")));
                        if len == 0 {
                            break;
                        }
                        off += (len + 3) & !3;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return types,
                Err(e) => panic!("monitor: {e}"),
            }
        }
    }
}
