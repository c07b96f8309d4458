//! Applying a plan: the kernel's routes of protocol 80, the VXLAN devices' neighbour and FDB entries and the
//! tunnel devices are made what the plan says by changing only the difference. A route of another protocol
//! is never replaced or deleted, also when it holds a destination the plan wants (that is reported as a
//! conflict); neighbour and FDB entries are read and written only on the agent's own devices. A restarted
//! agent that computes the same plan changes nothing: no flush, no re-add, no gap in traffic.
//!
//! Order within a pass: devices; neighbour and FDB entries set (so a new route has its next hop already);
//! routes added or replaced (`ip route replace`, one request: the destination is never unrouted); stale
//! routes deleted; stale neighbour and FDB entries deleted.
use crate::device::{self, IpipStatus};
use crate::error::{Ctx, Error};
use crate::plan::{vxlan_device, Plan, Target, IPIP_DEVICE, ROUTE_PROTOCOL};
use common::netlink::{is_exists, is_not_found, FdbEntry, Neighbour, Netlink, Route, RouteFilter, MAIN_TABLE};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The device MTUs (0: leave the device's MTU as it is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub vxlan_mtu: u32,
    pub vxlan_v6_mtu: u32,
    pub ipip_mtu: u32,
}

impl Options {
    /// Felix's defaults on a host whose uplink MTU is `host_mtu`.
    pub fn for_host_mtu(host_mtu: u32) -> Options {
        Options::with(host_mtu, &crate::mtu::Configured::default())
    }

    /// The device MTUs on a host whose uplink MTU is `host_mtu`, with what the operator `configured`.
    pub fn with(host_mtu: u32, configured: &crate::mtu::Configured) -> Options {
        use crate::mtu::Tunnel;
        Options {
            vxlan_mtu: configured.device_mtu(Tunnel::Vxlan, host_mtu),
            vxlan_v6_mtu: configured.device_mtu(Tunnel::VxlanV6, host_mtu),
            ipip_mtu: configured.device_mtu(Tunnel::Ipip, host_mtu),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub devices_changed: usize,
    pub routes_added: usize,
    pub routes_replaced: usize,
    pub routes_deleted: usize,
    pub neighbours_set: usize,
    pub neighbours_deleted: usize,
    pub fdb_set: usize,
    pub fdb_deleted: usize,
    pub ipip: IpipStatus,
    /// Planned routes left out: their device is missing, or another owner holds the destination.
    pub skipped: Vec<String>,
    /// Requests the kernel refused (the pass went on with the rest; the next pass retries them).
    pub failed: Vec<String>,
}

impl Report {
    /// How many kernel objects the pass changed.
    pub fn changes(&self) -> usize {
        self.devices_changed
            + self.routes_added
            + self.routes_replaced
            + self.routes_deleted
            + self.neighbours_set
            + self.neighbours_deleted
            + self.fdb_set
            + self.fdb_deleted
    }
}

/// Makes the kernel of the calling thread's namespace what `plan` says. Fails only when the state cannot be
/// read; single requests that fail are listed in `Report::failed`. An empty plan removes everything the agent
/// owns (its protocol-80 routes, its VXLAN devices with their entries).
pub fn apply(nl: &mut Netlink, plan: &Plan, opts: &Options) -> Result<Report, Error> {
    let mut report = Report::default();
    let devices = devices(nl, plan, opts, &mut report)?;
    let want = kernel_routes(nl, plan, &devices, &mut report)?;
    for (device, v6) in [(vxlan_device(false), false), (vxlan_device(true), true)] {
        if let Some(&index) = devices.get(device) {
            set_neighbours(nl, plan, device, index, v6, &mut report)?;
            set_fdb(nl, plan, device, index, &mut report)?;
        }
    }
    routes(nl, &want, &mut report)?;
    for (device, v6) in [(vxlan_device(false), false), (vxlan_device(true), true)] {
        if let Some(&index) = devices.get(device) {
            delete_stale_neighbours(nl, plan, device, index, v6, &mut report)?;
            delete_stale_fdb(nl, plan, device, index, &mut report)?;
        }
    }
    Ok(report)
}

/// Ensures the planned devices, removes unplanned VXLAN devices; returns the ifindex of each usable device.
fn devices(nl: &mut Netlink, plan: &Plan, opts: &Options, report: &mut Report) -> Result<BTreeMap<&'static str, u32>, Error> {
    let mut index = BTreeMap::new();
    for (v6, mtu) in [(false, opts.vxlan_mtu), (true, opts.vxlan_v6_mtu)] {
        match plan.vxlan(v6) {
            Some(dev) => match device::ensure_vxlan(nl, dev, mtu) {
                Ok((link, changed)) => {
                    index.insert(dev.name, link.index);
                    report.devices_changed += usize::from(changed);
                }
                Err(e) => report.failed.push(e.to_string()),
            },
            None => report.devices_changed += usize::from(device::remove_vxlan(nl, vxlan_device(v6))?),
        }
    }
    if let Some(dev) = &plan.ipip {
        match device::ensure_ipip(nl, dev, opts.ipip_mtu) {
            Ok((status, changed)) => {
                if let IpipStatus::Ready { index: i } = status {
                    index.insert(IPIP_DEVICE, i);
                }
                report.ipip = status;
                report.devices_changed += usize::from(changed);
            }
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    Ok(index)
}

/// The plan's routes as the kernel will hold them; those whose device is missing go to `skipped`.
fn kernel_routes(nl: &mut Netlink, plan: &Plan, devices: &BTreeMap<&'static str, u32>, report: &mut Report) -> Result<Vec<Route>, Error> {
    // The uplink of each family, looked up only if a route needs it.
    let mut uplinks = [None, None];
    for (v6, local) in [(false, plan.local_v4), (true, plan.local_v6)] {
        let needed = plan.routes.iter().any(|(d, t)| matches!(t, Target::Uplink { .. }) && d.addr().is_ipv6() == v6);
        if let Some(addr) = local.filter(|_| needed) {
            uplinks[usize::from(v6)] = device::uplink_of(nl, addr)?.map(|l| l.index);
        }
    }
    let mut out = Vec::with_capacity(plan.routes.len());
    for (dst, target) in &plan.routes {
        let v6 = dst.addr().is_ipv6();
        let route = match target {
            Target::Blackhole => Some(Route::blackhole(*dst)),
            Target::Tunnel { device, gw } => devices.get(device).map(|i| Route::via(*dst, *gw, *i).onlink()),
            Target::Direct { device } => devices.get(device).map(|i| Route::link_scope(*dst, *i)),
            Target::Uplink { gw } => uplinks[usize::from(v6)].map(|i| Route::via(*dst, *gw, i)),
        };
        match route {
            Some(r) => out.push(r.with_protocol(ROUTE_PROTOCOL)),
            None => report.skipped.push(format!("{dst} ({target:?}): its device is missing")),
        }
    }
    Ok(out)
}

fn describe(r: &Route) -> String {
    let kind = if r.kind == common::netlink::RouteKind::Blackhole { "blackhole " } else { "" };
    let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
    let dev = r.oif.map(|i| format!(" dev #{i}")).unwrap_or_default();
    let onlink = if r.onlink { " onlink" } else { "" };
    format!("{kind}{}{via}{dev} proto {}{onlink}", r.dst, r.protocol)
}

fn routes(nl: &mut Netlink, want: &[Route], report: &mut Report) -> Result<(), Error> {
    let filter = RouteFilter { v6: None, protocol: Some(ROUTE_PROTOCOL), table: Some(MAIN_TABLE) };
    let have = nl.dump_routes(&filter).ctx(|| format!("ip route show proto {ROUTE_PROTOCOL}"))?;
    let mut ours: BTreeMap<IpNet, Vec<Route>> = BTreeMap::new();
    for r in have {
        ours.entry(r.dst).or_default().push(r);
    }
    for r in want {
        let mut existing = ours.remove(&r.dst).unwrap_or_default();
        if let Some(i) = existing.iter().position(|k| r.is_same_route(k)) {
            existing.swap_remove(i);
        } else if let Some(i) = existing.iter().position(|k| r.same_slot(k)) {
            // Ours, but different: replaced in place.
            existing.swap_remove(i);
            match nl.replace_route(r) {
                Ok(()) => report.routes_replaced += 1,
                Err(e) => report.failed.push(format!("ip route replace {}: {e}", describe(r))),
            }
        } else {
            // Exclusive: a route of another owner in that slot stays, and is reported.
            match nl.add_route(r) {
                Ok(()) => report.routes_added += 1,
                Err(e) if is_exists(&e) => report.skipped.push(format!("{}: the destination is another owner's route", describe(r))),
                Err(e) => report.failed.push(format!("ip route add {}: {e}", describe(r))),
            }
        }
        // What is left of ours for this destination (another metric, a duplicate) is stale.
        ours.insert(r.dst, existing);
    }
    for r in ours.into_values().flatten() {
        match nl.del_route(&r) {
            Ok(()) => report.routes_deleted += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => report.failed.push(format!("ip route del {}: {e}", describe(&r))),
        }
    }
    Ok(())
}

fn planned_neighbours(plan: &Plan, device: &str) -> BTreeMap<IpAddr, [u8; 6]> {
    plan.neighbours.iter().filter(|n| n.device == device).map(|n| (n.ip, n.mac)).collect()
}

fn set_neighbours(nl: &mut Netlink, plan: &Plan, device: &str, index: u32, v6: bool, report: &mut Report) -> Result<(), Error> {
    let have = nl.neighbours(index, v6).ctx(|| format!("ip neigh show dev {device}"))?;
    for (ip, mac) in planned_neighbours(plan, device) {
        if have.iter().any(|n| n.ip == ip && n.mac == Some(mac) && n.permanent) {
            continue;
        }
        let n = Neighbour { ifindex: index, ip, mac: Some(mac), permanent: true };
        match nl.replace_neighbour(&n) {
            Ok(()) => report.neighbours_set += 1,
            Err(e) => report.failed.push(format!("ip neigh replace {ip} lladdr {} dev {device}: {e}", common::netlink::format_mac(&mac))),
        }
    }
    Ok(())
}

fn delete_stale_neighbours(nl: &mut Netlink, plan: &Plan, device: &str, index: u32, v6: bool, report: &mut Report) -> Result<(), Error> {
    let want = planned_neighbours(plan, device);
    let have = nl.neighbours(index, v6).ctx(|| format!("ip neigh show dev {device}"))?;
    // Only permanent entries are anyone's writing; the kernel's own (incomplete, stale) it manages itself.
    for n in have.iter().filter(|n| n.permanent && !want.contains_key(&n.ip)) {
        match nl.del_neighbour(index, n.ip) {
            Ok(()) => report.neighbours_deleted += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => report.failed.push(format!("ip neigh del {} dev {device}: {e}", n.ip)),
        }
    }
    Ok(())
}

fn planned_fdb(plan: &Plan, device: &str) -> BTreeMap<[u8; 6], IpAddr> {
    plan.fdb.iter().filter(|f| f.device == device).map(|f| (f.mac, f.dst)).collect()
}

fn set_fdb(nl: &mut Netlink, plan: &Plan, device: &str, index: u32, report: &mut Report) -> Result<(), Error> {
    let have = nl.fdb(index).ctx(|| format!("bridge fdb show dev {device}"))?;
    for (mac, dst) in planned_fdb(plan, device) {
        let entries: Vec<&FdbEntry> = have.iter().filter(|e| e.mac == mac).collect();
        if entries.len() == 1 && entries[0].dst == Some(dst) && entries[0].permanent {
            continue;
        }
        let e = FdbEntry { ifindex: index, mac, dst: Some(dst), permanent: true };
        match nl.replace_fdb(&e) {
            Ok(()) => report.fdb_set += 1,
            Err(err) => report.failed.push(format!("bridge fdb replace {} dev {device} dst {dst}: {err}", common::netlink::format_mac(&mac))),
        }
    }
    Ok(())
}

fn delete_stale_fdb(nl: &mut Netlink, plan: &Plan, device: &str, index: u32, report: &mut Report) -> Result<(), Error> {
    let want = planned_fdb(plan, device);
    let have = nl.fdb(index).ctx(|| format!("bridge fdb show dev {device}"))?;
    for e in have.iter().filter(|e| e.permanent && want.get(&e.mac).is_none_or(|dst| e.dst != Some(*dst))) {
        match nl.del_fdb(e) {
            Ok(()) => report.fdb_deleted += 1,
            Err(err) if is_not_found(&err) => {}
            Err(err) => report.failed.push(format!("bridge fdb del {} dev {device}: {err}", common::netlink::format_mac(&e.mac))),
        }
    }
    Ok(())
}
