//! The tunnel devices: `vxlan.calico` (and `vxlan-v6.calico`) made to match the plan, recreated when a
//! parameter that cannot be changed in place differs (Felix's `vxlanLinksIncompat`), its MTU, its one address
//! and its state kept right (`route_mgr.go configureTunnelDevice`); `tunl0` likewise, where the kernel has IPIP.
use crate::error::{Ctx, Error};
use crate::plan::{IpipDevice, VxlanDevice, IPIP_DEVICE};
use common::netlink::{is_exists, is_not_supported, IpipSpec, Link, Netlink, VxlanSpec};
use ipnet::IpNet;
use std::net::IpAddr;

/// What became of `tunl0`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IpipStatus {
    /// No IPIP pool: nothing asked for.
    #[default]
    NotNeeded,
    /// The device is there and configured.
    Ready { index: u32 },
    /// The kernel cannot make IPIP devices (no `ipip` module): routes through `tunl0` are left out, nothing
    /// else is refused. `reason` is the kernel's answer.
    Unavailable { reason: String },
}

/// The link holding `addr` (Felix's `detectParentIface`): where tunnels leave and same-subnet routes go.
pub fn uplink_of(nl: &mut Netlink, addr: IpAddr) -> Result<Option<Link>, Error> {
    let addrs = nl.all_addresses().ctx(|| "ip addr show".into())?;
    match addrs.iter().find(|(_, a)| a.addr() == addr) {
        Some((index, _)) => nl.link_by_index(*index).ctx(|| format!("ip link show {index}")),
        None => Ok(None),
    }
}

/// Makes the VXLAN device of `dev` exist with its parameters, MAC, `mtu` (0: leave it), its VTEP address as
/// its only address, and up. Returns the device and whether anything had to change.
pub fn ensure_vxlan(nl: &mut Netlink, dev: &VxlanDevice, mtu: u32) -> Result<(Link, bool), Error> {
    let uplink = uplink_of(nl, dev.local)?.ok_or(Error::NoUplink(dev.local))?;
    let spec = VxlanSpec {
        name: dev.name.into(),
        vni: dev.vni,
        port: dev.port,
        local: Some(dev.local),
        parent: Some(uplink.index),
        mac: dev.mac,
        mtu: if mtu == 0 { uplink.mtu } else { mtu },
        learning: false,
    };
    let mut changed = false;
    let existing = nl.link_by_name(dev.name).ctx(|| format!("ip link show {}", dev.name))?;
    if let Some(link) = &existing {
        if let Some(why) = vxlan_incompatible(link, &spec) {
            tracing::warn!(device = dev.name, %why, "VXLAN device does not match: recreating it");
            nl.del_link(link.index).ctx(|| format!("ip link del {}", dev.name))?;
        }
    }
    let mut link = match existing.filter(|l| vxlan_incompatible(l, &spec).is_none()) {
        Some(link) => link,
        None => {
            match nl.add_vxlan(&spec) {
                Ok(()) => {}
                // Someone made it meanwhile; it is checked next time round.
                Err(e) if is_exists(&e) => {}
                Err(e) => {
                    return Err(Error::Kernel {
                        what: format!(
                            "ip link add {} type vxlan id {} dstport {} local {} dev {}",
                            dev.name, dev.vni, dev.port, dev.local, uplink.name
                        ),
                        source: e,
                    })
                }
            }
            changed = true;
            nl.link_by_name(dev.name).ctx(|| format!("ip link show {}", dev.name))?.ok_or_else(|| vanished(dev.name))?
        }
    };
    changed |= configure(nl, &mut link, mtu, Some(IpNet::from(dev.address)))?;
    Ok((link, changed))
}

/// Why `link` cannot serve as `spec` without being recreated, if it cannot.
fn vxlan_incompatible(link: &Link, spec: &VxlanSpec) -> Option<String> {
    let Some(info) = link.vxlan.as_ref().filter(|_| link.kind.as_deref() == Some("vxlan")) else {
        return Some(format!("kind {:?}, not vxlan", link.kind.as_deref().unwrap_or("")));
    };
    let diffs = [
        (info.vni != Some(spec.vni)).then(|| format!("vni {:?} vs {}", info.vni, spec.vni)),
        (info.port != Some(spec.port)).then(|| format!("port {:?} vs {}", info.port, spec.port)),
        (info.local != spec.local).then(|| format!("local {:?} vs {:?}", info.local, spec.local)),
        (info.parent != spec.parent).then(|| format!("parent {:?} vs {:?}", info.parent, spec.parent)),
        (info.learning != Some(spec.learning)).then(|| format!("learning {:?} vs {}", info.learning, spec.learning)),
        (link.mac != spec.mac).then(|| format!("mac {} vs {}", common::netlink::format_mac(&link.mac), common::netlink::format_mac(&spec.mac))),
    ];
    let diffs: Vec<String> = diffs.into_iter().flatten().collect();
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// Makes `tunl0` exist (where the kernel can), with `mtu`, the node's IPIP address as its only address, up.
pub fn ensure_ipip(nl: &mut Netlink, dev: &IpipDevice, mtu: u32) -> Result<(IpipStatus, bool), Error> {
    let mut changed = false;
    let mut link = match nl.link_by_name(IPIP_DEVICE).ctx(|| format!("ip link show {IPIP_DEVICE}"))? {
        Some(link) => link,
        None => {
            match nl.add_ipip(&IpipSpec { name: IPIP_DEVICE.into(), mtu: if mtu == 0 { 1480 } else { mtu } }) {
                Ok(()) => changed = true,
                Err(e) if is_not_supported(&e) => {
                    let reason = format!("ipip not available: the kernel cannot create {IPIP_DEVICE} ({e}; no ipip module?)");
                    tracing::warn!("{reason}; routes through {IPIP_DEVICE} are left out");
                    return Ok((IpipStatus::Unavailable { reason }, false));
                }
                Err(e) if is_exists(&e) => {}
                Err(e) => return Err(Error::Kernel { what: format!("ip link add {IPIP_DEVICE} type ipip"), source: e }),
            }
            nl.link_by_name(IPIP_DEVICE).ctx(|| format!("ip link show {IPIP_DEVICE}"))?.ok_or_else(|| vanished(IPIP_DEVICE))?
        }
    };
    changed |= configure(nl, &mut link, mtu, dev.address.map(|a| IpNet::from(IpAddr::from(a))))?;
    Ok((IpipStatus::Ready { index: link.index }, changed))
}

/// MTU, address (`want` the only one of its family, IPv6 link-local kept; Felix's `ensureAddressOnLink`), up.
fn configure(nl: &mut Netlink, link: &mut Link, mtu: u32, want: Option<IpNet>) -> Result<bool, Error> {
    let mut changed = false;
    let name = link.name.clone();
    if mtu != 0 && link.mtu != mtu {
        nl.set_mtu(link.index, mtu).ctx(|| format!("ip link set {name} mtu {mtu}"))?;
        link.mtu = mtu;
        changed = true;
    }
    let have = nl.addresses(link.index).ctx(|| format!("ip addr show dev {name}"))?;
    for a in &have {
        let link_local = matches!(a.addr(), IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        if Some(*a) != want && !link_local {
            tracing::info!(device = %name, address = %a, "removing an address the device should not have");
            nl.del_address(link.index, *a).ctx(|| format!("ip addr del {a} dev {name}"))?;
            changed = true;
        }
    }
    if let Some(want) = want.filter(|w| !have.contains(w)) {
        nl.add_address(link.index, want).ctx(|| format!("ip addr add {want} dev {name}"))?;
        changed = true;
    }
    if !link.up {
        nl.set_up(link.index).ctx(|| format!("ip link set {name} up"))?;
        link.up = true;
        changed = true;
    }
    Ok(changed)
}

/// Deletes the device `name` if it is there and a VXLAN device (its routes, neighbours and FDB entries go
/// with it); true if it was.
pub fn remove_vxlan(nl: &mut Netlink, name: &str) -> Result<bool, Error> {
    match nl.link_by_name(name).ctx(|| format!("ip link show {name}"))? {
        Some(link) if link.kind.as_deref() == Some("vxlan") => {
            nl.del_link(link.index).ctx(|| format!("ip link del {name}"))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A device made a moment ago is gone again (someone deleted it); the next pass makes it anew.
fn vanished(name: &str) -> Error {
    Error::Kernel { what: format!("ip link show {name}"), source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone right after it was made") }
}
