//! Links: look-ups and dumps, veth pairs (CNI), the VXLAN and IPIP devices (node agent), state, MTU, alias.
use super::events::{LinkEvent, LinkEvents};
use super::{is_not_found, Netlink};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State};
use netlink_packet_route::RouteNetlinkMessage;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::Instant;

/// What we need to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    /// Operationally up (IFLA_OPERSTATE): the kernel's link watch has seen the carrier.
    pub oper_up: bool,
    pub kind: Option<String>,
    /// For a veth: the peer's ifindex (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// `ip link set ... alias`: the plugin writes the owning container ID here.
    pub alias: Option<String>,
    /// For a VXLAN device: its parameters (IFLA_VXLAN_*).
    pub vxlan: Option<VxlanInfo>,
}

/// A VXLAN device's parameters as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VxlanInfo {
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<IpAddr>,
    /// The device the tunnel's packets leave by (`dev <parent>`).
    pub parent: Option<u32>,
    pub learning: Option<bool>,
}

/// A VXLAN device to create: `ip link add <name> address <mac> mtu <mtu> type vxlan id <vni> dstport <port>
/// [local <local>] [dev <parent>] [no]learning`. Calico's `vxlan.calico`: VNI 4096, port 4789, no learning
/// (the agent writes every FDB and neighbour entry), local = the node's address, parent = its uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub local: Option<IpAddr>,
    pub parent: Option<u32>,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub learning: bool,
}

/// An IPIP device to create: `ip link add <name> mtu <mtu> type ipip`. With the `ipip` module loaded the
/// kernel makes `tunl0` in every namespace by itself, so Calico's `tunl0` usually exists already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipSpec {
    pub name: String,
    pub mtu: u32,
}

impl Netlink {
    /// `ip link show <name>`; None if there is none.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(msg)
    }

    /// `ip link show <index>`: the link with ifindex `index`. On kernels with commit facd15dfd691 ("net: core: synchronize link-watch
    /// when carrier is queried"; 6.18 has it) this also runs the link-watch work still pending for the link, as
    /// `ethtool` and `/sys/class/net/*/carrier` do: see `await_oper_up`.
    pub fn link_by_index(&mut self, index: u32) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(msg)
    }

    /// One RTM_GETLINK for the link `msg` names; None if the kernel has no such link.
    fn get_link(&mut self, msg: LinkMessage) -> io::Result<Option<Link>> {
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(&l)),
                _ => None,
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until link `index` is operationally up, at most until `deadline`; false if it is not by then.
    ///
    /// A veth end set up before its peer has no carrier, and the kernel swaps its `noop` qdisc (which drops
    /// every packet) for the real one only in its link-watch work, run later on a workqueue under rtnl; the
    /// operational state turns UP in the same step (`ip link` shows `qdisc noqueue` all along). The GETLINK
    /// runs that work right here on kernels that sync link watch there, so usually this is one request; on
    /// older ones it subscribes to link changes, asks once more (a change before the subscription would be
    /// missed otherwise) and waits for link watch's RTM_NEWLINK.
    pub fn await_oper_up(&mut self, index: u32, deadline: Instant) -> io::Result<bool> {
        let gone = || io::Error::from_raw_os_error(nix::libc::ENODEV);
        match self.link_by_index(index)? {
            Some(link) if link.oper_up => return Ok(true),
            Some(_) => {}
            None => return Err(gone()),
        }
        let mut events = LinkEvents::open()?;
        loop {
            match self.link_by_index(index)? {
                Some(link) if link.oper_up => return Ok(true),
                Some(_) => {}
                None => return Err(gone()),
            }
            // Until a notification says so; lost ones send us back to asking.
            'read: loop {
                let Some(batch) = events.next(deadline)? else { return Ok(false) };
                for event in batch {
                    match event {
                        LinkEvent::Changed(link) if link.index == index && link.oper_up => return Ok(true),
                        LinkEvent::Removed(i) if i == index => return Err(gone()),
                        LinkEvent::Lost => break 'read,
                        _ => {}
                    }
                }
            }
        }
    }

    /// `ip link show`: every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)?;
        Ok(replies.iter().filter_map(|r| if let RouteNetlinkMessage::NewLink(l) = r { Some(to_link(l)) } else { None }).collect())
    }

    /// Creates veth `name` here with its peer `peer_name` created directly in the namespace `peer_netns`
    /// (no link move: moving costs ~18 ms of kernel time), the peer's MAC set at birth:
    /// `ip link add <name> mtu <mtu> type veth peer name <peer_name> address <peer_mac> netns <peer_netns>`.
    pub fn add_veth(&mut self, name: &str, mtu: u32, peer_name: &str, peer_netns: RawFd, peer_mac: [u8; 6]) -> io::Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(peer_name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::NetNsFd(peer_netns),
        ];
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer)))]),
        ];
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// Creates the VXLAN device of `spec` (down; `set_up` it once its address is on). EEXIST if the name is taken.
    pub fn add_vxlan(&mut self, spec: &VxlanSpec) -> io::Result<()> {
        let mut data = vec![InfoVxlan::Id(spec.vni), InfoVxlan::Port(spec.port), InfoVxlan::Learning(spec.learning)];
        match spec.local {
            Some(IpAddr::V4(ip)) => data.push(InfoVxlan::Local(ip)),
            Some(IpAddr::V6(ip)) => data.push(InfoVxlan::Local6(ip)),
            None => {}
        }
        data.extend(spec.parent.map(InfoVxlan::Link));
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(spec.name.clone()),
            LinkAttribute::Mtu(spec.mtu),
            LinkAttribute::Address(spec.mac.to_vec()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Vxlan), LinkInfo::Data(InfoData::Vxlan(data))]),
        ];
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// Creates the IPIP device of `spec`. A kernel without the `ipip` module answers EOPNOTSUPP
    /// (`super::is_not_supported`); one with it has made `tunl0` already (EEXIST).
    pub fn add_ipip(&mut self, spec: &IpipSpec) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(spec.name.clone()),
            LinkAttribute::Mtu(spec.mtu),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::IpIp)]),
        ];
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// `ip link del <index>`
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), 0).map(drop)
    }

    /// `ip link set <index> up`
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.set_up_with_alias(index, None)
    }

    /// `ip link set <index> up [alias <alias>]`, in one request.
    pub fn set_up_with_alias(&mut self, index: u32, alias: Option<&str>) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if let Some(a) = alias {
            msg.attributes.push(LinkAttribute::IfAlias(a.to_string()));
        }
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// `ip link set <index> mtu <mtu>`
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }
}

pub(super) fn to_link(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: [0; 6],
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
        kind: None,
        peer_index: None,
        alias: None,
        oper_up: false,
        vxlan: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(m) if m.len() == 6 => link.mac.copy_from_slice(m),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Link(i) => link.peer_index = Some(*i),
            LinkAttribute::IfAlias(a) if !a.is_empty() => link.alias = Some(a.clone()),
            LinkAttribute::OperState(s) => link.oper_up = *s == State::Up,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(data)) => link.vxlan = Some(vxlan_info(data)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn vxlan_info(data: &[InfoVxlan]) -> VxlanInfo {
    let mut info = VxlanInfo::default();
    for d in data {
        match d {
            InfoVxlan::Id(v) => info.vni = Some(*v),
            InfoVxlan::Port(p) => info.port = Some(*p),
            InfoVxlan::Local(ip) => info.local = Some((*ip).into()),
            InfoVxlan::Local6(ip) => info.local = Some((*ip).into()),
            InfoVxlan::Link(i) => info.parent = Some(*i),
            InfoVxlan::Learning(l) => info.learning = Some(*l),
            _ => {}
        }
    }
    info
}
