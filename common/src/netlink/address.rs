//! Interface addresses: add, delete, list per link.
use super::{family, Netlink};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope};
use netlink_packet_route::RouteNetlinkMessage;
use std::io;

impl Netlink {
    /// `ip addr add <addr> dev <index>` (IPv6 with `nodad`); EEXIST if it is there already.
    pub fn add_address(&mut self, index: u32, addr: IpNet) -> io::Result<()> {
        let mut msg = address_message(index, addr);
        if addr.addr().is_ipv6() {
            // Without it an IPv6 address is tentative (unusable as a source) until the kernel's DAD job, a
            // workqueue job that needs rtnl, has run: also with DAD off, when that job only clears the flag.
            msg.header.flags = AddressHeaderFlags::Nodad;
        }
        self.request(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// `ip addr del <addr> dev <index>`
    pub fn del_address(&mut self, index: u32, addr: IpNet) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelAddress(address_message(index, addr)), 0).map(drop)
    }

    /// `ip addr show dev <index>`: the addresses on link `index` (all families).
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<IpNet>> {
        Ok(self.all_addresses()?.into_iter().filter(|(i, _)| *i == index).map(|(_, a)| a).collect())
    }

    /// `ip addr show`: every address of the namespace with the ifindex of its link, from one dump.
    pub fn all_addresses(&mut self) -> io::Result<Vec<(u32, IpNet)>> {
        let replies = self.request(RouteNetlinkMessage::GetAddress(AddressMessage::default()), NLM_F_DUMP)?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) => {
                    let ip = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let ip = ip.or_else(|| a.attributes.iter().find_map(|at| if let AddressAttribute::Address(ip) = at { Some(*ip) } else { None }));
                    ip.and_then(|ip| IpNet::new(ip, a.header.prefix_len).ok()).map(|net| (a.header.index, net))
                }
                _ => None,
            })
            .collect())
    }
}

fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(addr.addr());
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    msg.header.scope = AddressScope::Universe;
    msg.attributes.push(AddressAttribute::Local(addr.addr()));
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    msg
}
