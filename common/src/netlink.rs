//! A small synchronous rtnetlink client: one socket bound to the namespace of the thread that opened it.
//! Only what the plugin needs (veth, link state and its notifications, addresses, routes), each request acknowledged before the next.
use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
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

    /// The link with ifindex `index`. On kernels with commit facd15dfd691 ("net: core: synchronize link-watch
    /// when carrier is queried"; 6.18 has it) this also runs the link-watch work still pending for the link, as
    /// `ethtool` and `/sys/class/net/*/carrier` do: see `await_oper_up`.
    pub fn link_by_index(&mut self, index: u32) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
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
        if addr.addr().is_ipv6() {
            // Without it an IPv6 address is tentative (unusable as a source) until the kernel's DAD job, a
            // workqueue job that needs rtnl, has run: also with DAD off, when that job only clears the flag.
            msg.header.flags = AddressHeaderFlags::Nodad;
        }
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

/// rtnetlink's multicast group of link changes (`RTNLGRP_LINK` in linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;

/// A subscription to the link notifications of the namespace of the thread that opened it. The kernel queues
/// only what happens after `open`, so open it before making the change to wait for.
pub struct LinkEvents {
    socket: Socket,
    buf: Vec<u8>,
}

/// One link notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: the link as it is now.
    Changed(Link),
    /// RTM_DELLINK of this ifindex.
    Removed(u32),
    /// The socket's queue overflowed (ENOBUFS) and notifications were lost: ask for the state instead.
    Lost,
}

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.add_membership(RTNLGRP_LINK)?;
        socket.set_non_blocking(true)?;
        Ok(LinkEvents { socket, buf: Vec::with_capacity(1 << 16) })
    }

    /// The next batch of notifications, or None once `deadline` has passed without one.
    pub fn next(&mut self, deadline: Instant) -> io::Result<Option<Vec<LinkEvent>>> {
        self.next_unless(deadline, None)
    }

    /// `next`, also giving up (None) once `stop` is readable or closed, after what is queued was read.
    pub fn next_unless(&mut self, deadline: Instant, stop: Option<BorrowedFd<'_>>) -> io::Result<Option<Vec<LinkEvent>>> {
        let mut stopped = false;
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(n) => return Ok(Some(parse_link_events(&self.buf[..n]))),
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => return Ok(Some(vec![LinkEvent::Lost])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stopped {
                return Ok(None);
            }
            // Rounded up: a timeout of 0 ms would spin on the last fraction of a millisecond.
            let ms = PollTimeout::try_from(left.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX);
            let mut fds = vec![PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            fds.extend(stop.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
            match poll(&mut fds, ms) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            // Read once more before giving up: the stop may come with notifications already queued.
            stopped = fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        }
    }

    /// Waits until the kernel announces that link `index` is gone (RTM_DELLINK, sent once the link is
    /// unregistered: its addresses and routes are already removed, while the deleting call still waits out
    /// the teardown's RCU grace periods). False without the event if `stop` becomes readable (the deleting
    /// side finished or failed) or `timeout` passes.
    pub fn wait_deleted(&mut self, index: u32, stop: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        while let Some(batch) = self.next_unless(deadline, Some(stop))? {
            if batch.iter().any(|e| matches!(e, LinkEvent::Removed(i) if *i == index)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The link notifications in one read (other messages are skipped).
fn parse_link_events(mut buf: &[u8]) -> Vec<LinkEvent> {
    let mut events = Vec::new();
    while !buf.is_empty() {
        // A notification this crate cannot decode is one lost, not a failure of whoever waits.
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(buf) else {
            events.push(LinkEvent::Lost);
            break;
        };
        let len = (msg.header.length as usize + 3) & !3;
        if len == 0 {
            events.push(LinkEvent::Lost);
            break;
        }
        match &msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => events.push(LinkEvent::Changed(to_link(l))),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => events.push(LinkEvent::Removed(l.header.index)),
            _ => {}
        }
        buf = buf.get(len..).unwrap_or_default();
    }
    events
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
        oper_up: false,
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

/// `aa:bb:cc:dd:ee:ff`
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
