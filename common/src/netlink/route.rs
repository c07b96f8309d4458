//! Routes (the whole route: type, protocol, scope, table, `onlink`, metric, so an agent can recognise and delete
//! exactly its own) and policy-routing rules.
use super::{family, Netlink};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteScope, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The main routing table (`RT_TABLE_MAIN`).
pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;
/// `proto boot`, what `ip route add` writes and what the CNI plugin's routes carry.
pub const RTPROT_BOOT: u8 = 3;
/// IPv6 routes without a metric get this one from the kernel (`IP6_RT_PRIO_USER`).
const IPV6_DEFAULT_METRIC: u32 = 1024;

/// The route types this crate writes; anything else read from the kernel is `Other` (`rtm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    Unicast,
    /// `ip route add blackhole <dst>`: the kernel drops what matches.
    Blackhole,
    Other(u8),
}

/// A route as the kernel holds it: `[<kind>] <dst> [via <gw>] [dev <oif>] proto <protocol> scope <scope>
/// [table <table>] [metric <metric>] [onlink]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    pub kind: RouteKind,
    /// `rtm_protocol`: who owns the route (3 boot, 12 bird, 80 Felix and the calico-rs node agent).
    pub protocol: u8,
    pub scope: RouteScope,
    pub table: u32,
    /// RTNH_F_ONLINK: the gateway is on the link even though no address of the link covers it (tunnels).
    pub onlink: bool,
    /// `metric`/`priority`; 0 = none given (the kernel reads IPv6's as 1024).
    pub metric: u32,
}

/// The name cni-calico knows the route type by.
pub type RouteSpec = Route;

impl Route {
    fn new(dst: IpNet, kind: RouteKind, scope: RouteScope) -> Route {
        Route { dst, gw: None, oif: None, kind, protocol: RTPROT_BOOT, scope, table: MAIN_TABLE, onlink: false, metric: 0 }
    }

    /// `<dst> dev <oif> scope link` (proto boot, main table)
    pub fn link_scope(dst: IpNet, oif: u32) -> Route {
        Route { oif: Some(oif), ..Route::new(dst, RouteKind::Unicast, RouteScope::Link) }
    }

    /// `<dst> via <gw> dev <oif>` (proto boot, main table)
    pub fn via(dst: IpNet, gw: IpAddr, oif: u32) -> Route {
        Route { gw: Some(gw), oif: Some(oif), ..Route::new(dst, RouteKind::Unicast, RouteScope::Universe) }
    }

    /// `blackhole <dst>` (proto boot, main table)
    pub fn blackhole(dst: IpNet) -> Route {
        Route::new(dst, RouteKind::Blackhole, RouteScope::Universe)
    }

    /// The same route in routing table `table`.
    pub fn in_table(mut self, table: u32) -> Route {
        self.table = table;
        self
    }

    /// The same route with `proto <protocol>`.
    pub fn with_protocol(mut self, protocol: u8) -> Route {
        self.protocol = protocol;
        self
    }

    /// The same route with `onlink`.
    pub fn onlink(mut self) -> Route {
        self.onlink = true;
        self
    }

    /// Whether `kernel` (as dumped) is this route as it would be written: the kernel fills in what a request
    /// leaves out (the loopback device of an IPv6 blackhole, IPv6's default metric) and IPv6 routes have no
    /// scope (always reported as universe), which are no differences.
    pub fn is_same_route(&self, kernel: &Route) -> bool {
        let oif_matters = self.kind != RouteKind::Blackhole;
        let scope_matters = self.dst.addr().is_ipv4();
        self.dst == kernel.dst
            && self.kind == kernel.kind
            && self.gw == kernel.gw
            && (!oif_matters || self.oif == kernel.oif)
            && self.protocol == kernel.protocol
            && (!scope_matters || self.scope == kernel.scope)
            && self.table == kernel.table
            && self.onlink == kernel.onlink
            && self.effective_metric() == kernel.effective_metric()
    }

    /// Whether `other` holds the same slot (destination, table, metric): the route `replace_route` of this one
    /// would replace.
    pub fn same_slot(&self, other: &Route) -> bool {
        self.dst == other.dst && self.table == other.table && self.effective_metric() == other.effective_metric()
    }

    fn effective_metric(&self) -> u32 {
        if self.metric == 0 && self.dst.addr().is_ipv6() {
            IPV6_DEFAULT_METRIC
        } else {
            self.metric
        }
    }
}

/// Which routes `dump_routes` returns; `None` = any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteFilter {
    /// Some(false) IPv4 only, Some(true) IPv6 only.
    pub v6: Option<bool>,
    pub protocol: Option<u8>,
    pub table: Option<u32>,
}

impl Netlink {
    /// `ip route add <route>`: fails with EEXIST if the destination is already routed in that table (at that metric).
    pub fn add_route(&mut self, r: &Route) -> io::Result<()> {
        self.request(RouteNetlinkMessage::NewRoute(route_message(r)), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// `ip route replace <route>`: one request, so the destination is never unrouted in between. It replaces
    /// whatever route holds that destination, table and metric, whoever owns it: check first.
    pub fn replace_route(&mut self, r: &Route) -> io::Result<()> {
        self.request(RouteNetlinkMessage::NewRoute(route_message(r)), NLM_F_CREATE | NLM_F_REPLACE).map(drop)
    }

    /// `ip route del <route>`: the kernel deletes only a route that matches every given field, the protocol
    /// among them, so another owner's route to the same destination stays. ESRCH if there is none.
    pub fn del_route(&mut self, r: &Route) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelRoute(route_message(r)), 0).map(drop)
    }

    /// `ip [-6] route show table all [proto <p>] [table <t>]`, filtered here: the kernel filters dumps only for
    /// sockets in strict mode.
    pub fn dump_routes(&mut self, filter: &RouteFilter) -> io::Result<Vec<Route>> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            if filter.v6.is_some_and(|f| f != v6) {
                continue;
            }
            out.extend(
                self.routes(v6)?.into_iter().filter(|r| filter.protocol.is_none_or(|p| r.protocol == p) && filter.table.is_none_or(|t| r.table == t)),
            );
        }
        Ok(out)
    }

    /// `ip [-6] route show table all`: the routes of one family in every table.
    pub fn routes(&mut self, v6: bool) -> io::Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let replies = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        Ok(replies.iter().filter_map(|r| if let RouteNetlinkMessage::NewRoute(m) = r { to_route(m) } else { None }).collect())
    }

    /// `ip rule add from <from> lookup <table> priority <priority>`
    pub fn add_rule(&mut self, rule: &RuleSpec) -> io::Result<()> {
        self.request(RouteNetlinkMessage::NewRule(rule_message(rule)), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// `ip rule del from <from> lookup <table> priority <priority>`
    pub fn del_rule(&mut self, rule: &RuleSpec) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelRule(rule_message(rule)), 0).map(drop)
    }

    /// `ip [-6] rule show`: the `from ... lookup ...` rules of one family.
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
}

fn route_message(r: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(r.dst.addr());
    msg.header.destination_prefix_length = r.dst.prefix_len();
    // Tables past 255 go in RTA_TABLE; the header then says RT_TABLE_COMPAT, as iproute2 does.
    msg.header.table = if r.table < 256 { r.table as u8 } else { 252 };
    msg.header.protocol = r.protocol.into();
    msg.header.scope = r.scope;
    msg.header.kind = match r.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Other(t) => RouteType::from(t),
    };
    if r.onlink {
        msg.header.flags = RouteFlags::Onlink;
    }
    if r.dst.prefix_len() > 0 {
        msg.attributes.push(RouteAttribute::Destination(r.dst.network().into()));
    }
    if let Some(gw) = r.gw {
        msg.attributes.push(RouteAttribute::Gateway(gw.into()));
    }
    if let Some(oif) = r.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if r.metric != 0 {
        msg.attributes.push(RouteAttribute::Priority(r.metric));
    }
    if r.table >= 256 {
        msg.attributes.push(RouteAttribute::Table(r.table));
    }
    msg
}

fn to_route(m: &RouteMessage) -> Option<Route> {
    let mut dst_ip = None;
    let mut gw = None;
    let mut oif = None;
    let mut metric = 0;
    let mut table = m.header.table as u32;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst_ip = addr(d),
            RouteAttribute::Gateway(g) => gw = addr(g),
            RouteAttribute::Oif(o) => oif = Some(*o),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    let unspecified: IpAddr = match m.header.address_family {
        AddressFamily::Inet6 => Ipv6Addr::UNSPECIFIED.into(),
        _ => Ipv4Addr::UNSPECIFIED.into(),
    };
    let dst = IpNet::new(dst_ip.unwrap_or(unspecified), m.header.destination_prefix_length).ok()?;
    let kind = match m.header.kind {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::BlackHole => RouteKind::Blackhole,
        other => RouteKind::Other(other.into()),
    };
    Some(Route {
        dst,
        gw,
        oif,
        kind,
        protocol: m.header.protocol.into(),
        scope: m.header.scope,
        table,
        onlink: m.header.flags.contains(RouteFlags::Onlink),
        metric,
    })
}

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some((*v4).into()),
        RouteAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}

/// A policy-routing rule `from <from> lookup <table>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub from: IpNet,
    pub table: u32,
    pub priority: u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_message_carries_the_whole_route_and_reads_back() {
        let r = Route::via(net("10.244.1.0/26"), "10.244.1.0".parse().unwrap(), 7).with_protocol(80).onlink().in_table(1000);
        let m = route_message(&r);
        assert_eq!(m.header.table, 252);
        assert_eq!(to_route(&m), Some(r.clone()));
        let b = Route::blackhole(net("fd00:10::/122")).with_protocol(80);
        assert_eq!(to_route(&route_message(&b)), Some(b));
    }

    #[test]
    fn kernel_fill_ins_are_not_differences() {
        let ours = Route::blackhole(net("fd00:10::/122")).with_protocol(80);
        let kernel = Route { oif: Some(1), metric: 1024, ..ours.clone() };
        assert!(ours.is_same_route(&kernel));
        let direct6 = Route::link_scope(net("fd00:10::1/128"), 4);
        assert!(direct6.is_same_route(&Route { scope: RouteScope::Universe, metric: 1024, ..direct6.clone() }));
        assert!(!ours.is_same_route(&Route { protocol: 12, ..kernel.clone() }));
        let v4 = Route::via(net("10.244.1.0/26"), "10.250.0.2".parse().unwrap(), 2).with_protocol(80);
        assert!(!v4.is_same_route(&Route { oif: Some(3), ..v4.clone() }));
        assert!(!v4.is_same_route(&Route { metric: 1024, ..v4.clone() }));
        assert!(!v4.is_same_route(&v4.clone().onlink()));
    }
}
