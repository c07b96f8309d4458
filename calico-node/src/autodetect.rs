//! `IP_AUTODETECTION_METHOD` (and `IP6_...`), as calico-node's `autodetection` package reads it:
//! `first-found` (the first global address of an interface not excluded by Calico's default patterns),
//! `interface=REGEX[,REGEX]`, `skip-interface=REGEX[,REGEX]`, `can-reach=ADDRESS` (the source address the kernel
//! picks towards it), `cidr=CIDR[,CIDR]`. The address keeps its interface's prefix length (Calico stores
//! `spec.bgp.ipv4Address` as `ip/len`; CrossSubnet compares subnets with it).
use common::netlink::Netlink;
use ipnet::IpNet;
use regex_lite::Regex;
use std::net::{IpAddr, UdpSocket};
use std::str::FromStr;

/// Interfaces `first-found` never picks (`autodetection/filtered.go` DEFAULT_INTERFACES_TO_EXCLUDE).
const EXCLUDED: &[&str] = &[
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo$",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^vxlan.calico.*",
    "^vxlan-v6.calico.*",
    "^wireguard.cali.*",
    "^wg-v6.cali.*",
    "^nodelocaldns.*",
];

#[derive(Debug, Clone)]
pub enum Method {
    FirstFound,
    Interface(Vec<Regex>),
    SkipInterface(Vec<Regex>),
    CanReach(IpAddr),
    Cidr(Vec<IpNet>),
}

impl PartialEq for Method {
    fn eq(&self, other: &Method) -> bool {
        let pats = |r: &[Regex]| r.iter().map(|r| r.as_str().to_string()).collect::<Vec<_>>();
        match (self, other) {
            (Method::FirstFound, Method::FirstFound) => true,
            (Method::Interface(a), Method::Interface(b)) | (Method::SkipInterface(a), Method::SkipInterface(b)) => pats(a) == pats(b),
            (Method::CanReach(a), Method::CanReach(b)) => a == b,
            (Method::Cidr(a), Method::Cidr(b)) => a == b,
            _ => false,
        }
    }
}

fn regexes(list: &str) -> Result<Vec<Regex>, String> {
    list.split(',').map(|p| Regex::new(p.trim()).map_err(|e| format!("{p:?} is not a regular expression: {e}"))).collect()
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Method, String> {
        let (name, arg) = s.split_once('=').map_or((s, ""), |(n, a)| (n, a));
        let need = |what: &str| if arg.is_empty() { Err(format!("{name}= needs {what}")) } else { Ok(()) };
        match name {
            "first-found" => Ok(Method::FirstFound),
            "interface" => need("a regular expression").and_then(|_| regexes(arg).map(Method::Interface)),
            "skip-interface" => need("a regular expression").and_then(|_| regexes(arg).map(Method::SkipInterface)),
            "can-reach" => need("an address").and_then(|_| {
                arg.parse().map(Method::CanReach).map_err(|_| format!("can-reach={arg}: calico-rs needs an address here, not a host name"))
            }),
            "cidr" => need("a CIDR").and_then(|_| {
                arg.split(',')
                    .map(|c| c.trim().parse::<IpNet>().map_err(|_| format!("cidr={arg}: {c:?} is not a CIDR")))
                    .collect::<Result<_, _>>()
                    .map(Method::Cidr)
            }),
            other => Err(format!("{other:?} is not a method (first-found, interface=, skip-interface=, can-reach=, cidr=)")),
        }
    }
}

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub interface: String,
    pub address: IpNet,
}

/// Every global address of the calling thread's netns, in interface order.
pub fn candidates(nl: &mut Netlink) -> std::io::Result<Vec<Candidate>> {
    let links = nl.links()?;
    let mut out = Vec::new();
    let mut addrs = nl.all_addresses()?;
    addrs.sort_by_key(|(index, _)| *index);
    for (index, address) in addrs {
        let Some(link) = links.iter().find(|l| l.index == index) else { continue };
        if is_global(address.addr()) {
            out.push(Candidate { interface: link.name.clone(), address });
        }
    }
    Ok(out)
}

fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_loopback() && !a.is_link_local() && !a.is_unspecified(),
        IpAddr::V6(a) => !a.is_loopback() && !a.is_unspecified() && (a.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// The address `method` picks among `candidates` of one family; `None` when nothing qualifies.
pub fn choose(method: &Method, candidates: &[Candidate], v6: bool) -> Option<IpNet> {
    let family = candidates.iter().filter(|c| c.address.addr().is_ipv6() == v6);
    let excluded: Vec<Regex> = EXCLUDED.iter().filter_map(|p| Regex::new(p).ok()).collect();
    let matches = |rs: &[Regex], name: &str| rs.iter().any(|r| r.is_match(name));
    let mut picked = family.filter(|c| match method {
        Method::FirstFound => !matches(&excluded, &c.interface),
        Method::Interface(rs) => matches(rs, &c.interface),
        Method::SkipInterface(rs) => !matches(rs, &c.interface) && !matches(&excluded, &c.interface),
        Method::CanReach(_) => true,
        Method::Cidr(nets) => nets.iter().any(|n| n.contains(&c.address.addr())),
    });
    match method {
        Method::CanReach(dest) => {
            let source = source_towards(*dest)?;
            picked.find(|c| c.address.addr() == source).map(|c| c.address)
        }
        _ => picked.next().map(|c| c.address),
    }
}

/// The source address the kernel uses towards `dest` (a connected UDP socket sends nothing).
fn source_towards(dest: IpAddr) -> Option<IpAddr> {
    let bind: std::net::SocketAddr = if dest.is_ipv6() { "[::]:0".parse().ok()? } else { "0.0.0.0:0".parse().ok()? };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect((dest, 53)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(interface: &str, address: &str) -> Candidate {
        Candidate { interface: interface.into(), address: address.parse().unwrap() }
    }

    #[test]
    fn methods_pick_as_calico() {
        let all = [
            c("docker0", "172.17.0.1/16"),
            c("cali123", "10.9.9.9/32"),
            c("eth0", "10.250.0.1/24"),
            c("eth1", "192.168.5.2/24"),
            c("eth0", "fd00::1/64"),
        ];
        let m = |s: &str| s.parse::<Method>().unwrap();
        assert_eq!(choose(&m("first-found"), &all, false), Some("10.250.0.1/24".parse().unwrap()));
        assert_eq!(choose(&m("first-found"), &all, true), Some("fd00::1/64".parse().unwrap()));
        assert_eq!(choose(&m("interface=eth1"), &all, false), Some("192.168.5.2/24".parse().unwrap()));
        assert_eq!(choose(&m("interface=wlan.*,eth1"), &all, false), Some("192.168.5.2/24".parse().unwrap()));
        assert_eq!(choose(&m("skip-interface=eth0"), &all, false), Some("192.168.5.2/24".parse().unwrap()));
        assert_eq!(choose(&m("cidr=192.168.0.0/16"), &all, false), Some("192.168.5.2/24".parse().unwrap()));
        assert_eq!(choose(&m("interface=wlan0"), &all, false), None);
        for bad in ["sometimes", "interface=", "interface=(", "can-reach=example.com", "cidr=10.0.0.0/33"] {
            assert!(bad.parse::<Method>().is_err(), "{bad}");
        }
    }
}
