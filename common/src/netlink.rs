//! A small synchronous rtnetlink client: one socket bound to the namespace of the thread that opened it.
//! Only what the plugin needs (veth, link state, addresses, routes), each request acknowledged before the next.
use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

/// What we need to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    pub kind: Option<String>,
    /// For a veth: the peer's ifindex (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// `ip link set ... alias`: the plugin writes the owning container ID here.
    pub alias: Option<String>,
}

/// A route as this crate reads and writes it (main table unless `table` says otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    pub scope: RouteScope,
    pub table: u32,
}

/// A policy-routing rule `from <from> lookup <table>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub from: IpNet,
    pub table: u32,
    pub priority: u32,
}

impl RouteSpec {
    /// The same route in routing table `table`.
    pub fn in_table(mut self, table: u32) -> RouteSpec {
        self.table = table;
        self
    }

    /// `dst dev <oif> scope link`
    pub fn link_scope(dst: IpNet, oif: u32) -> RouteSpec {
        RouteSpec { dst, gw: None, oif: Some(oif), scope: RouteScope::Link, table: RouteHeader::RT_TABLE_MAIN as u32 }
    }

    /// `dst via gw dev <oif>`
    pub fn via(dst: IpNet, gw: IpAddr, oif: u32) -> RouteSpec {
        RouteSpec { dst, gw: Some(gw), oif: Some(oif), scope: RouteScope::Universe, table: RouteHeader::RT_TABLE_MAIN as u32 }
    }
}

pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

pub fn is_not_found(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(nix::libc::ENODEV) | Some(nix::libc::ENOENT) | Some(nix::libc::ESRCH))
}

pub fn is_exists(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EEXIST)
}

impl Netlink {
    /// Opens a route socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended acks give the kernel's reason text on errors; harmless if unsupported.
        let _ = socket.set_ext_ack(true);
        // Capacity, not zeroed length: the kernel writes only what it sends, so a 36-byte ack touches one page
        // of this buffer instead of sixteen (three sockets per ADD: ~150 KiB of peak RSS).
        Ok(Netlink { socket, seq: 0, buf: Vec::with_capacity(1 << 16) })
    }

    /// Sends one request and collects every reply message until the ACK (or DONE for dumps).
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        // A dump interrupted by a concurrent change is retried, as the Go plugins' netlinksafe does.
        for _ in 0..5 {
            match self.request_once(msg.clone(), flags, dump)? {
                Some(replies) => return Ok(replies),
                None => continue,
            }
        }
        Err(io::Error::new(io::ErrorKind::Interrupted, "netlink dump interrupted 5 times"))
    }

    fn request_once(&mut self, msg: RouteNetlinkMessage, flags: u16, dump: bool) -> io::Result<Option<Vec<RouteNetlinkMessage>>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut out = vec![0u8; nl.header.length as usize];
        nl.serialize(&mut out);
        self.socket.send(&out, 0)?;

        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, 0)?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("netlink decode: {e}")))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "netlink message of length 0"));
                }
                off += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                if reply.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(Some(replies)),
                            Some(_) => Err(e.to_io()),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(if interrupted { None } else { Some(replies) }),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }

    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(&l)),
                _ => None,
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)?;
        Ok(replies.iter().filter_map(|r| if let RouteNetlinkMessage::NewLink(l) = r { Some(to_link(l)) } else { None }).collect())
    }

    /// Creates veth `name` here with its peer `peer_name` created directly in the namespace `peer_netns`
    /// (no link move: moving costs ~18 ms of kernel time), the peer's MAC set at birth.
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

    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), 0).map(drop)
    }

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

    pub fn add_address(&mut self, index: u32, addr: IpNet) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr.addr());
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        self.request(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// Addresses on link `index` (all families).
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<IpNet>> {
        let replies = self.request(RouteNetlinkMessage::GetAddress(AddressMessage::default()), NLM_F_DUMP)?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let ip = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let ip = ip.or_else(|| a.attributes.iter().find_map(|at| if let AddressAttribute::Address(ip) = at { Some(*ip) } else { None }));
                    ip.and_then(|ip| IpNet::new(ip, a.header.prefix_len).ok())
                }
                _ => None,
            })
            .collect())
    }

    /// Adds a route; fails with EEXIST if the same destination is already routed in that table.
    pub fn add_route(&mut self, r: &RouteSpec) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(r.dst.addr());
        msg.header.destination_prefix_length = r.dst.prefix_len();
        msg.header.table = if r.table < 256 { r.table as u8 } else { 252 };
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = r.scope;
        msg.header.kind = RouteType::Unicast;
        if r.dst.prefix_len() > 0 {
            msg.attributes.push(RouteAttribute::Destination(r.dst.network().into()));
        }
        if let Some(gw) = r.gw {
            msg.attributes.push(RouteAttribute::Gateway(gw.into()));
        }
        if let Some(oif) = r.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if r.table >= 256 {
            msg.attributes.push(RouteAttribute::Table(r.table));
        }
        self.request(RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// `ip rule add from <from> lookup <table> priority <priority>`
    pub fn add_rule(&mut self, rule: &RuleSpec) -> io::Result<()> {
        self.request(RouteNetlinkMessage::NewRule(rule_message(rule)), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    pub fn del_rule(&mut self, rule: &RuleSpec) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelRule(rule_message(rule)), 0).map(drop)
    }

    /// The `from ... lookup ...` rules of one family.
    pub fn rules(&mut self, v6: bool) -> io::Result<Vec<RuleSpec>> {
        let mut msg = RuleMessage::default();
        msg.header.family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let replies = self.request(RouteNetlinkMessage::GetRule(msg), NLM_F_DUMP)?;
        Ok(replies
            .iter()
            .filter_map(|r| {
                let RouteNetlinkMessage::NewRule(m) = r else { return None };
                let mut table = m.header.table as u32;
                let (mut from, mut priority) = (None, 0);
                for a in &m.attributes {
                    match a {
                        RuleAttribute::Source(ip) => from = IpNet::new(*ip, m.header.src_len).ok(),
                        RuleAttribute::Table(t) => table = *t,
                        RuleAttribute::Priority(p) => priority = *p,
                        _ => {}
                    }
                }
                Some(RuleSpec { from: from?, table, priority })
            })
            .collect())
    }

    /// Routes of one family in the main table (and others), as specs.
    pub fn routes(&mut self, v6: bool) -> io::Result<Vec<RouteSpec>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let replies = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        Ok(replies.iter().filter_map(|r| if let RouteNetlinkMessage::NewRoute(m) = r { to_route(m) } else { None }).collect())
    }
}

fn rule_message(rule: &RuleSpec) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = family(rule.from.addr());
    msg.header.src_len = rule.from.prefix_len();
    msg.header.action = RuleAction::ToTable;
    msg.header.table = if rule.table < 256 { rule.table as u8 } else { 252 };
    msg.attributes.push(RuleAttribute::Source(rule.from.addr()));
    msg.attributes.push(RuleAttribute::Table(rule.table));
    msg.attributes.push(RuleAttribute::Priority(rule.priority));
    msg
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn to_link(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: [0; 6],
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
        kind: None,
        peer_index: None,
        alias: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(m) if m.len() == 6 => link.mac.copy_from_slice(m),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Link(i) => link.peer_index = Some(*i),
            LinkAttribute::IfAlias(a) if !a.is_empty() => link.alias = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn to_route(m: &RouteMessage) -> Option<RouteSpec> {
    let mut dst_ip = None;
    let mut gw = None;
    let mut oif = None;
    let mut table = m.header.table as u32;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst_ip = addr(d),
            RouteAttribute::Gateway(g) => gw = addr(g),
            RouteAttribute::Oif(o) => oif = Some(*o),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    let unspecified: IpAddr = match m.header.address_family {
        AddressFamily::Inet6 => std::net::Ipv6Addr::UNSPECIFIED.into(),
        _ => std::net::Ipv4Addr::UNSPECIFIED.into(),
    };
    let dst = IpNet::new(dst_ip.unwrap_or(unspecified), m.header.destination_prefix_length).ok()?;
    Some(RouteSpec { dst, gw, oif, scope: m.header.scope, table })
}

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some((*v4).into()),
        RouteAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}

/// Link notifications (RTNLGRP_LINK) of the namespace of the thread that opened it. The socket can be read
/// from any thread.
pub struct LinkEvents {
    socket: Socket,
    buf: Vec<u8>,
}

const RTNLGRP_LINK: u32 = 1;

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.add_membership(RTNLGRP_LINK)?;
        Ok(LinkEvents { socket, buf: Vec::with_capacity(1 << 16) })
    }

    /// Waits until the kernel announces that link `index` is gone (RTM_DELLINK, sent once the link is
    /// unregistered: its addresses and routes are already removed, while the deleting call still waits
    /// for the teardown's RCU grace periods). Returns false without the event if `stop` becomes readable
    /// (the deleting side finished or failed) or `timeout` passes. Waits in poll(2): no busy polling.
    pub fn wait_deleted(&mut self, index: u32, stop: RawFd, timeout: std::time::Duration) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let mut fds = [
                nix::libc::pollfd { fd: self.socket.as_raw_fd(), events: nix::libc::POLLIN, revents: 0 },
                nix::libc::pollfd { fd: stop, events: nix::libc::POLLIN, revents: 0 },
            ];
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
            let n = unsafe { nix::libc::poll(fds.as_mut_ptr(), 2, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[0].revents != 0 && self.read_deleted(index)? {
                return Ok(true);
            }
            if fds[1].revents != 0 {
                // The delete finished: its event, if any, is queued already.
                return self.read_deleted_nonblocking(index);
            }
        }
    }

    fn read_deleted_nonblocking(&mut self, index: u32) -> io::Result<bool> {
        self.socket.set_non_blocking(true)?;
        let r = loop {
            match self.read_deleted(index) {
                Ok(true) => break Ok(true),
                Ok(false) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        self.socket.set_non_blocking(false)?;
        r
    }

    /// Reads one datagram; true if it announces the deletion of `index`.
    fn read_deleted(&mut self, index: u32) -> io::Result<bool> {
        self.buf.clear();
        let n = self.socket.recv(&mut self.buf, 0)?;
        let mut off = 0;
        while off < n {
            let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n]) else { break };
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) = msg.payload {
                if l.header.index == index {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// `aa:bb:cc:dd:ee:ff`
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
