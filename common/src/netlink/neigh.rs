//! Neighbours (ARP/NDP entries) and bridge FDB entries: the two tables a VXLAN device with learning off needs
//! filled, one entry per remote VTEP (its MAC for its tunnel IP, and the node address behind that MAC).
use super::{family, Netlink};
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A neighbour entry: `<ip> lladdr <mac> dev <ifindex> nud <permanent|...>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: IpAddr,
    /// None for an entry still resolving (incomplete, failed).
    pub mac: Option<[u8; 6]>,
    /// NUD_PERMANENT: written by someone, never aged out or re-resolved.
    pub permanent: bool,
}

/// A bridge FDB entry of a device itself (NTF_SELF): `<mac> dev <ifindex> dst <ip> self [permanent]`. On a
/// VXLAN device `dst` is the underlay address the frames for `mac` are tunnelled to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub dst: Option<IpAddr>,
    pub permanent: bool,
}

impl Netlink {
    /// `ip neigh replace <ip> lladdr <mac> dev <ifindex> nud permanent` (the entry's `mac` must be set).
    pub fn replace_neighbour(&mut self, n: &Neighbour) -> io::Result<()> {
        let mac = n.mac.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("neighbour {} without a MAC", n.ip)))?;
        let mut msg = neighbour_message(family(n.ip), n.ifindex, NeighbourState::Permanent, NeighbourFlags::empty());
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(NeighbourAttribute::Destination(n.ip.into()));
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.request(RouteNetlinkMessage::NewNeighbour(msg), NLM_F_CREATE | NLM_F_REPLACE).map(drop)
    }

    /// `ip neigh del <ip> dev <ifindex>`; ENOENT if there is none.
    pub fn del_neighbour(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<()> {
        let mut msg = neighbour_message(family(ip), ifindex, NeighbourState::None, NeighbourFlags::empty());
        msg.attributes.push(NeighbourAttribute::Destination(ip.into()));
        self.request(RouteNetlinkMessage::DelNeighbour(msg), 0).map(drop)
    }

    /// `ip [-6] neigh show dev <ifindex>`: the neighbour entries of one link and family.
    pub fn neighbours(&mut self, ifindex: u32, v6: bool) -> io::Result<Vec<Neighbour>> {
        let fam = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let msg = neighbour_message(fam, ifindex, NeighbourState::None, NeighbourFlags::empty());
        let replies = self.request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_DUMP)?;
        Ok(replies
            .iter()
            .filter_map(|r| {
                let RouteNetlinkMessage::NewNeighbour(m) = r else { return None };
                if m.header.ifindex != ifindex || m.header.family != fam {
                    return None;
                }
                let ip = m.attributes.iter().find_map(|a| if let NeighbourAttribute::Destination(d) = a { neighbour_ip(d) } else { None })?;
                Some(Neighbour { ifindex, ip, mac: lladdr(&m.attributes), permanent: is_permanent(m) })
            })
            .collect())
    }

    /// `bridge fdb replace <mac> dev <ifindex> dst <dst> self permanent`: the MAC's one destination.
    pub fn replace_fdb(&mut self, e: &FdbEntry) -> io::Result<()> {
        self.request(RouteNetlinkMessage::NewNeighbour(fdb_message(e)), NLM_F_CREATE | NLM_F_REPLACE).map(drop)
    }

    /// `bridge fdb append <mac> dev <ifindex> dst <dst> self permanent`: one more destination for the MAC
    /// (a VXLAN device floods to all of them).
    pub fn append_fdb(&mut self, e: &FdbEntry) -> io::Result<()> {
        self.request(RouteNetlinkMessage::NewNeighbour(fdb_message(e)), NLM_F_CREATE | NLM_F_APPEND).map(drop)
    }

    /// `bridge fdb del <mac> dev <ifindex> [dst <dst>] self`; ENOENT if there is none.
    pub fn del_fdb(&mut self, e: &FdbEntry) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelNeighbour(fdb_message(e)), 0).map(drop)
    }

    /// `bridge fdb show dev <ifindex> self`: the device's own FDB entries (a bridge's learned ones are not).
    pub fn fdb(&mut self, ifindex: u32) -> io::Result<Vec<FdbEntry>> {
        let msg = neighbour_message(AddressFamily::Bridge, ifindex, NeighbourState::None, NeighbourFlags::empty());
        let replies = self.request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_DUMP)?;
        Ok(replies
            .iter()
            .filter_map(|r| {
                let RouteNetlinkMessage::NewNeighbour(m) = r else { return None };
                if m.header.ifindex != ifindex || !m.header.flags.contains(NeighbourFlags::Own) {
                    return None;
                }
                let dst = m.attributes.iter().find_map(|a| if let NeighbourAttribute::Destination(d) = a { neighbour_ip(d) } else { None });
                Some(FdbEntry { ifindex, mac: lladdr(&m.attributes)?, dst, permanent: is_permanent(m) })
            })
            .collect())
    }
}

fn neighbour_message(family: AddressFamily, ifindex: u32, state: NeighbourState, flags: NeighbourFlags) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    msg.header.ifindex = ifindex;
    msg.header.state = state;
    msg.header.flags = flags;
    msg
}

fn fdb_message(e: &FdbEntry) -> NeighbourMessage {
    let state = if e.permanent { NeighbourState::Permanent } else { NeighbourState::None };
    let mut msg = neighbour_message(AddressFamily::Bridge, e.ifindex, state, NeighbourFlags::Own);
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(e.mac.to_vec()));
    if let Some(dst) = e.dst {
        msg.attributes.push(NeighbourAttribute::Destination(dst.into()));
    }
    msg
}

fn is_permanent(m: &NeighbourMessage) -> bool {
    // The state is a bit set; a value the crate has no name for still carries the bit.
    u16::from(m.header.state) & 0x80 != 0
}

fn lladdr(attrs: &[NeighbourAttribute]) -> Option<[u8; 6]> {
    attrs.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) if m.len() == 6 => m.as_slice().try_into().ok(),
        _ => None,
    })
}

/// NDA_DST, also of an AF_BRIDGE entry, where the crate cannot know the family and hands over the bytes.
fn neighbour_ip(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(ip) => Some((*ip).into()),
        NeighbourAddress::Inet6(ip) => Some((*ip).into()),
        NeighbourAddress::Other(b) => match b.len() {
            4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(b.as_slice()).ok()?).into()),
            16 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(b.as_slice()).ok()?).into()),
            _ => None,
        },
        _ => None,
    }
}
