//! The pod MTU: the host's uplink MTU less the encapsulation's overhead, written where the CNI plugin reads it
//! on every ADD. Felix's rules (`felix/dataplane/linux/int_dataplane.go`: `findHostMTU`, `ConfigureDefaultMTUs`,
//! `determinePodMTU`, `writeMTUFile`); WireGuard is not supported here.
use crate::error::Error;
use crate::plan::Encap;
use common::netlink::Link;
use datastore::resources::ippool::Pool;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where Calico writes the pod MTU (and cni-calico reads it: `cni-calico/src/config.rs`).
pub const MTU_FILE: &str = "/var/lib/calico/mtu";
/// Felix's overheads: an outer IPv4 header (IPIP); outer IPv4 + UDP + VXLAN + inner Ethernet (VXLAN), 70
/// with an outer IPv6 header.
pub const IPIP_OVERHEAD: u32 = 20;
pub const VXLAN_OVERHEAD: u32 = 50;
pub const VXLAN_V6_OVERHEAD: u32 = 70;
/// Felix's MTU when no interface matches: the smallest of the common clouds'.
pub const FALLBACK_HOST_MTU: u32 = 1460;

/// An encapsulation in use on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    Vxlan,
    VxlanV6,
    Ipip,
}

impl Tunnel {
    pub fn overhead(self) -> u32 {
        match self {
            Tunnel::Vxlan => VXLAN_OVERHEAD,
            Tunnel::VxlanV6 => VXLAN_V6_OVERHEAD,
            Tunnel::Ipip => IPIP_OVERHEAD,
        }
    }

    /// The MTU of this tunnel's device on a host whose uplink MTU is `host_mtu` (Felix's `vxlanMTU`, `ipipMTU`).
    pub fn device_mtu(self, host_mtu: u32) -> u32 {
        host_mtu.saturating_sub(self.overhead())
    }
}

/// The tunnels the pools call for (Felix turns VXLAN or IPIP on when a pool uses it).
pub fn tunnels(pools: &[Pool]) -> Vec<Tunnel> {
    let mut out = Vec::new();
    for p in pools {
        let t = match Encap::of(p) {
            Encap::Vxlan { .. } if p.cidr.addr().is_ipv6() => Tunnel::VxlanV6,
            Encap::Vxlan { .. } => Tunnel::Vxlan,
            Encap::Ipip { .. } => Tunnel::Ipip,
            Encap::None => continue,
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Tunnel MTUs an operator set (Felix's `VXLANMTU`, `VXLANMTUV6`, `IPIPMTU`: `FELIX_VXLANMTU`,
/// `FELIX_VXLANMTUV6`, `FELIX_IPINIPMTU`, which Calico's manifests fill from `veth_mtu`); None: the host's
/// MTU less the overhead (`ConfigureDefaultMTUs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Configured {
    pub vxlan: Option<u32>,
    pub vxlan_v6: Option<u32>,
    pub ipip: Option<u32>,
}

impl Configured {
    /// The MTU of `tunnel`'s device on a host whose uplink MTU is `host_mtu`.
    pub fn device_mtu(&self, tunnel: Tunnel, host_mtu: u32) -> u32 {
        let set = match tunnel {
            Tunnel::Vxlan => self.vxlan,
            Tunnel::VxlanV6 => self.vxlan_v6,
            Tunnel::Ipip => self.ipip,
        };
        set.unwrap_or_else(|| tunnel.device_mtu(host_mtu))
    }
}

/// The pod MTU: the smallest device MTU of the tunnels in use, or the host's when there is none
/// (`determinePodMTU`).
pub fn pod_mtu(host_mtu: u32, tunnels: &[Tunnel], configured: &Configured) -> u32 {
    tunnels.iter().map(|t| configured.device_mtu(*t, host_mtu)).min().unwrap_or(host_mtu)
}

/// Felix's default `mtuIfacePattern`, `^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)`: the names of
/// physical uplinks (predictable names and the classic ones), not veths, bridges or tunnels.
pub fn is_uplink_name(name: &str) -> bool {
    let predictable = ["en", "wl", "ww", "sl", "ib"]
        .iter()
        .any(|p| name.strip_prefix(p).and_then(|rest| rest.chars().next()).is_some_and(|c| "Pcopsvx".contains(c)));
    predictable || ["eth", "wlan", "wwan"].iter().any(|p| name.starts_with(p))
}

/// The host MTU: the smallest MTU of the operationally up links whose names `is_uplink_name` accepts, or
/// `FALLBACK_HOST_MTU` when none does (`findHostMTU`).
pub fn host_mtu(links: &[Link]) -> u32 {
    links.iter().filter(|l| l.oper_up && is_uplink_name(&l.name)).map(|l| l.mtu).min().unwrap_or(FALLBACK_HOST_MTU)
}

/// Writes `mtu` to `path` as Calico does (the decimal number, no newline, mode 0644, the directory made if
/// missing), but atomically: a temporary file in the same directory renamed over the old one, so an ADD that
/// reads the file meanwhile sees the old MTU or the new one, never a partial number.
pub fn write_mtu_file(path: &Path, mtu: u32) -> Result<(), Error> {
    let fail = |source| Error::MtuFile { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "mtu".into());
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
        f.write_all(mtu.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datastore::resources::ippool::PoolSpec;
    use std::os::unix::fs::PermissionsExt;

    fn link(name: &str, mtu: u32, up: bool) -> Link {
        Link { index: 1, name: name.into(), mac: [0; 6], mtu, up, oper_up: up, kind: None, peer_index: None, alias: None, vxlan: None }
    }

    fn pool(cidr: &str, vxlan: &str, ipip: &str) -> Pool {
        let spec = PoolSpec { cidr: cidr.into(), vxlan_mode: Some(vxlan.into()), ipip_mode: Some(ipip.into()), ..Default::default() };
        Pool::from_spec("p", &spec).unwrap()
    }

    #[test]
    fn pod_mtu_is_the_host_mtu_less_the_largest_overhead() {
        let auto = Configured::default();
        assert_eq!(pod_mtu(1500, &[], &auto), 1500);
        assert_eq!(pod_mtu(1500, &[Tunnel::Vxlan], &auto), 1450);
        assert_eq!(pod_mtu(1500, &[Tunnel::Ipip], &auto), 1480);
        assert_eq!(pod_mtu(9000, &[Tunnel::Ipip, Tunnel::Vxlan], &auto), 8950);
        assert_eq!(pod_mtu(1500, &[Tunnel::Vxlan, Tunnel::VxlanV6], &auto), 1430);
        assert_eq!(pod_mtu(10, &[Tunnel::Vxlan], &auto), 0, "no underflow");
    }

    #[test]
    fn configured_tunnel_mtus_replace_the_computed_ones() {
        let set = Configured { vxlan: Some(1400), ..Configured::default() };
        assert_eq!(pod_mtu(1500, &[Tunnel::Vxlan], &set), 1400);
        assert_eq!(pod_mtu(1500, &[Tunnel::Vxlan, Tunnel::VxlanV6], &set), 1400, "the smaller of 1400 and 1430");
        assert_eq!(pod_mtu(1500, &[Tunnel::Ipip], &set), 1480, "only the tunnels in use count");
        assert_eq!(pod_mtu(1500, &[], &set), 1500);
        let v6 = Configured { vxlan_v6: Some(1300), ..Configured::default() };
        assert_eq!(pod_mtu(1500, &[Tunnel::Vxlan, Tunnel::VxlanV6], &v6), 1300);
    }

    #[test]
    fn the_pools_say_which_tunnels() {
        let pools =
            [pool("10.244.0.0/16", "CrossSubnet", "Never"), pool("10.245.0.0/16", "Never", "Always"), pool("10.246.0.0/16", "Always", "Never")];
        assert_eq!(tunnels(&pools), [Tunnel::Vxlan, Tunnel::Ipip]);
        assert_eq!(tunnels(&[pool("fd00::/48", "Always", "Never")]), [Tunnel::VxlanV6]);
        assert_eq!(tunnels(&[pool("10.244.0.0/16", "Never", "Never")]), []);
    }

    #[test]
    fn host_mtu_takes_the_smallest_up_uplink() {
        let links =
            [link("lo", 65536, true), link("eth0", 1500, true), link("ens3", 9000, true), link("eth1", 1400, false), link("cali1", 1200, true)];
        assert_eq!(host_mtu(&links), 1500);
        assert_eq!(host_mtu(&[link("lo", 65536, true), link("br0", 1500, true)]), FALLBACK_HOST_MTU);
        for name in ["eth0", "ens3", "enp0s3", "eno1", "wlp2s0", "wlan0", "wwan0", "ibp1s0", "enx001122334455"] {
            assert!(is_uplink_name(name), "{name}");
        }
        for name in ["lo", "en", "enz", "cali123", "vxlan.calico", "tunl0", "docker0", "veth1", "br0"] {
            assert!(!is_uplink_name(name), "{name}");
        }
    }

    #[test]
    fn the_mtu_file_is_calicos_format_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/lib/calico/mtu");
        write_mtu_file(&path, 1450).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1450");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        write_mtu_file(&path, 8950).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "8950");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["mtu"], "no temporary file left behind");
        // A directory in the way is an error naming the file.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("mtu")).unwrap();
        let e = write_mtu_file(&blocked.join("mtu"), 1450).unwrap_err().to_string();
        assert!(e.contains("blocked/mtu"), "{e}");
    }
}
