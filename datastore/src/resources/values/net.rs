//! Addresses as Calico's validator reads them: a BGP peer's `IP[:port]` (`processIPPort`), a CIDR or bare IP
//! (`cnet.ParseCIDROrIP`), a route reflector cluster ID (an IPv4 address), a MAC (`net.ParseMAC`) and a
//! WireGuard public key (base64 of 32 bytes).
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// A BGPPeer's `peerIP`: an address and an optional port, written `IP`, `IPv4:port` or `[IPv6]:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerIp {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

fn port(s: &str) -> Option<u16> {
    // Go's ParseUint(s, 10, 16) on digits only; port 0 is refused.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

impl FromStr for PeerIp {
    type Err = String;

    fn from_str(s: &str) -> Result<PeerIp, String> {
        let bad = || format!("{s:?} is not an IP address, \"IPv4:port\" or \"[IPv6]:port\" (port 1-65535)");
        if let Some(rest) = s.strip_prefix('[') {
            let (host, p) = rest.split_once("]:").ok_or_else(bad)?;
            let ip = host.parse::<IpAddr>().map_err(|_| bad())?;
            return Ok(PeerIp { ip, port: Some(port(p).ok_or_else(bad)?) });
        }
        if let Some((host, p)) = s.split_once(':').filter(|(h, _)| h.contains('.')) {
            let ip = host.parse::<Ipv4Addr>().map_err(|_| bad())?;
            return Ok(PeerIp { ip: IpAddr::V4(ip), port: Some(port(p).ok_or_else(bad)?) });
        }
        Ok(PeerIp { ip: s.parse().map_err(|_| bad())?, port: None })
    }
}

impl fmt::Display for PeerIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (ip, None) => write!(f, "{ip}"),
            (IpAddr::V4(ip), Some(p)) => write!(f, "{ip}:{p}"),
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
        }
    }
}

super::via_str!(PeerIp);

/// A CIDR or a bare address (`cnet.ParseCIDROrIP`): host bits may be set (a node's `ipv4Address` is the
/// node's address and its subnet); a bare address means the full prefix and is printed back bare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: IpNet,
    bare: bool,
}

impl Cidr {
    pub fn net(&self) -> IpNet {
        self.net
    }

    pub fn addr(&self) -> IpAddr {
        self.net.addr()
    }

    pub fn is_ipv4(&self) -> bool {
        self.net.addr().is_ipv4()
    }

    /// No host bits set ("strictly masked", Calico's `net` validator).
    pub fn is_masked(&self) -> bool {
        self.net.addr() == self.net.network()
    }
}

impl From<IpNet> for Cidr {
    fn from(net: IpNet) -> Cidr {
        Cidr { net, bare: false }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?} is not a CIDR (address/prefix length) or an IP address");
        if s.contains('/') {
            return s.parse::<IpNet>().map(Cidr::from).map_err(|_| bad());
        }
        let ip = s.parse::<IpAddr>().map_err(|_| bad())?;
        Ok(Cidr { net: IpNet::from(ip), bare: true })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bare {
            write!(f, "{}", self.net.addr())
        } else {
            write!(f, "{}", self.net)
        }
    }
}

super::via_str!(Cidr);

/// A node's `routeReflectorClusterID`: a 32-bit BGP cluster ID, written as an IPv4 address (`244.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub Ipv4Addr);

impl FromStr for ClusterId {
    type Err = String;

    fn from_str(s: &str) -> Result<ClusterId, String> {
        s.parse().map(ClusterId).map_err(|_| format!("{s:?} is not IPv4-formatted (a route reflector cluster ID is written like 244.0.0.1)"))
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

super::via_str!(ClusterId);

/// A MAC address in any form Go's `net.ParseMAC` reads (EUI-48, EUI-64 or 20-octet InfiniBand; `:`/`-`
/// separated octets or `.` separated groups of four hex digits), kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MacAddr(String);

impl MacAddr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn groups_ok(s: &str, sep: u8, width: usize) -> Option<usize> {
    let groups: Vec<&[u8]> = s.as_bytes().split(|b| *b == sep).collect();
    let ok = groups.iter().all(|g| g.len() == width && g.iter().all(u8::is_ascii_hexdigit));
    ok.then_some(groups.len() * width / 2)
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<MacAddr, String> {
        let b = s.as_bytes();
        let octets = match b.get(2).zip(b.get(4)) {
            Some((b':', _)) => groups_ok(s, b':', 2),
            Some((b'-', _)) => groups_ok(s, b'-', 2),
            Some((_, b'.')) => groups_ok(s, b'.', 4),
            _ => None,
        };
        match octets {
            Some(6 | 8 | 20) => Ok(MacAddr(s.to_string())),
            _ => Err(format!("{s:?} is not a MAC address (e.g. \"66:d1:22:33:44:55\")")),
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

super::via_str!(MacAddr);

/// A WireGuard public key: standard base64 of 32 bytes, kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WireguardKey(String);

impl FromStr for WireguardKey {
    type Err = String;

    fn from_str(s: &str) -> Result<WireguardKey, String> {
        match B64.decode(s) {
            Ok(k) if k.len() == 32 => Ok(WireguardKey(s.to_string())),
            _ => Err(format!("{s:?} is not a WireGuard public key (base64 of 32 bytes)")),
        }
    }
}

impl fmt::Display for WireguardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

super::via_str!(WireguardKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ips_with_and_without_ports() {
        for (input, ip, port, printed) in [
            ("192.20.30.40", "192.20.30.40", None, "192.20.30.40"),
            ("192.20.30.40:1179", "192.20.30.40", Some(1179), "192.20.30.40:1179"),
            ("2001:db8::1", "2001:db8::1", None, "2001:db8::1"),
            ("[2001:db8::1]:1179", "2001:db8::1", Some(1179), "[2001:db8::1]:1179"),
            ("[2001:DB8::1]:179", "2001:db8::1", Some(179), "[2001:db8::1]:179"),
            ("10.0.0.1:0179", "10.0.0.1", Some(179), "10.0.0.1:179"),
        ] {
            let p: PeerIp = input.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((p.ip, p.port), (ip.parse().unwrap(), port), "{input}");
            assert_eq!(p.to_string(), printed);
            assert_eq!(printed.parse::<PeerIp>(), Ok(p));
        }
        for bad in [
            "",
            ":179",
            "[]:179",
            "10.0.0.1:",
            "10.0.0.1:0",
            "10.0.0.1:65536",
            "10.0.0.1:abc",
            "[2001:db8::1]",
            "[2001:db8::1]:",
            "2001:db8::1:179x",
            "host.example:179",
            "10.0.0.256",
            "10.0.0.1/32",
            "[fe80::1%eth0]:179",
            " 10.0.0.1",
        ] {
            assert!(bad.parse::<PeerIp>().unwrap_err().contains("is not an IP address"), "{bad:?}");
        }
    }

    #[test]
    fn cidrs_keep_their_form() {
        let c: Cidr = "10.250.0.1/24".parse().unwrap();
        assert!(c.is_ipv4() && !c.is_masked());
        assert_eq!(c.to_string(), "10.250.0.1/24");
        let bare: Cidr = "10.250.0.1".parse().unwrap();
        assert_eq!((bare.to_string(), bare.net().prefix_len(), bare.is_masked()), ("10.250.0.1".to_string(), 32, true));
        let v6: Cidr = "2001:db8:85a3::8a2e:370:7334/120".parse().unwrap();
        assert!(!v6.is_ipv4());
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "fd00::/129", "x", "10.0.0.0/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cluster_ids_macs_and_keys() {
        assert_eq!("244.0.0.1".parse::<ClusterId>().map(|c| c.to_string()), Ok("244.0.0.1".into()));
        for bad in ["", "244.0.0", "fd00::1", "1234", "244.0.0.1/32"] {
            assert!(bad.parse::<ClusterId>().unwrap_err().contains("IPv4-formatted"), "{bad:?}");
        }
        for good in [
            "66:d1:22:33:44:55",
            "66-D1-22-33-44-55",
            "66d1.2233.4455",
            "00:00:00:00:fe:80:00:00",
            "0000.0000.fe80.0000.0000.0000.0200.5e10.0000.0001",
        ] {
            assert!(good.parse::<MacAddr>().is_ok(), "{good}");
        }
        for bad in ["", "66:d1:22:33:44", "66:d1-22:33:44:55", "66:d1:22:33:44:5g", "66d1.2233.445", "66:d1:22:33:44:55:66"] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
        }
        assert!(B64.encode([7u8; 32]).parse::<WireguardKey>().is_ok());
        assert!(B64.encode([7u8; 31]).parse::<WireguardKey>().is_err() && "not base64!".parse::<WireguardKey>().is_err());
    }
}
