//! A small synchronous rtnetlink client: one socket bound to the namespace of the thread that opened it, each
//! request acknowledged before the next. What the CNI plugin and the node agent need, one file per object:
//! `link` (veth, VXLAN and IPIP devices, state, MTU), `address`, `route` (routes and rules), `neigh`
//! (neighbours and bridge FDB entries), `events` (link notifications). Every request names its `ip` equivalent.
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;

mod address;
mod events;
mod link;
mod neigh;
mod route;

pub use events::{LinkEvent, LinkEvents};
pub use link::{IpipSpec, Link, VxlanInfo, VxlanSpec};
pub use neigh::{FdbEntry, Neighbour};
pub use netlink_packet_route::route::RouteScope;
pub use route::{Route, RouteFilter, RouteKind, RouteSpec, RuleSpec, MAIN_TABLE, RTPROT_BOOT};

pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// The object is not there (no such device, route, neighbour, process).
pub fn is_not_found(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(nix::libc::ENODEV) | Some(nix::libc::ENOENT) | Some(nix::libc::ESRCH))
}

pub fn is_exists(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EEXIST)
}

/// The kernel lacks what the request needs: a link kind whose module is not built (`ip link add tunl0 type
/// ipip` prints "Unknown device type" for it), or a feature it does not have.
pub fn is_not_supported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(nix::libc::EOPNOTSUPP) | Some(nix::libc::EPROTONOSUPPORT) | Some(nix::libc::EAFNOSUPPORT))
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
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// `aa:bb:cc:dd:ee:ff`
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The inverse of `format_mac` (either case); None unless it is six hex pairs separated by colons.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = [0x66, 0x0a, 0xff, 0x00, 0x01, 0xbc];
        assert_eq!(parse_mac(&format_mac(&mac)), Some(mac));
        assert_eq!(parse_mac("66:0A:FF:00:01:BC"), Some(mac));
        for bad in ["", "66:0a:ff:00:01", "66:0a:ff:00:01:bc:00", "660a:ff:00:01:bc", "6g:0a:ff:00:01:bc", "6:0a:ff:00:01:bcc"] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
