//! The workload's wiring (as Calico's `DoNetworking`, projectcalico/calico
//! cni-plugin/pkg/dataplane/linux/dataplane_linux.go): the veth pair, sysctls on both ends, the link-local gateway
//! routes in the container and the /32 (/128) route to it on the host. Also its teardown and verification.
use crate::error::{Context, Error};
use common::cni::CniError;
use common::netlink::{format_mac, is_exists, Link, LinkEvents, Netlink, RouteSpec, RuleSpec};
use common::netns::NetNs;
use common::sysctl;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every host veth carries this MAC; the container only ever ARPs for the gateway.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The link-local address the kernel derives from HOST_MAC (EUI-64).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// How long ADD waits for the kernel to activate each veth end (see `await_active`). Past it the pod's
/// first ARP may be lost, which costs a second (its retransmit timer): no worse than waiting longer.
const ACTIVATION_DEADLINE: Duration = Duration::from_secs(1);

/// What to wire for one workload.
#[derive(Debug, Clone)]
pub struct Plan {
    pub host_if: String,
    pub ifname: String,
    /// The container ID, written as the alias of both ends: a DEL or CHECK of another container leaves
    /// the interface alone.
    pub owner: String,
    /// Whether IPv6 may be assigned (known before IPAM answers): the host end's IPv6 gateway is then made
    /// before the link comes up.
    pub maybe_v6: bool,
    pub mtu: u32,
    pub ips: Vec<IpAddr>,
    pub allow_ip_forwarding: bool,
}

impl Plan {
    fn has_v4(&self) -> bool {
        self.ips.iter().any(|ip| ip.is_ipv4())
    }

    fn has_v6(&self) -> bool {
        self.ips.iter().any(|ip| ip.is_ipv6())
    }
}

/// Host-masked address: /32 or /128.
pub fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// Wires the workload for the addresses in `plan`; on failure nothing it created is left behind.
pub fn setup(container_ns: &NetNs, plan: &Plan) -> Result<Link, Error> {
    let ips = plan.ips.clone();
    setup_with(container_ns, plan, || Ok(|| Ok(ips))).map(|(link, _)| link)
}

/// Wires the workload. `allocate` is called once the kernel is making the veth pair (the critical path) and
/// starts address allocation (the IPAM plugin) beside it; the waiter it returns is asked for the addresses
/// once the pair exists. The container side (on a thread in its namespace) and the host side (on this
/// thread) are then configured at the same time.
/// `base.ips` is ignored. Returns the container link and the plan as wired. On failure nothing it
/// created is left behind (what `addresses` took is the caller's to give back).
pub fn setup_with<W>(container_ns: &NetNs, base: &Plan, allocate: impl FnOnce() -> Result<W, CniError>) -> Result<(Link, Plan), Error>
where
    W: FnOnce() -> Result<Vec<IpAddr>, CniError>,
{
    let host_ns = NetNs::current().ctx(|| "opening host namespace".into())?;
    let host = Netlink::open().ctx(|| "opening netlink in host namespace".into())?;
    let host_fd = host_ns.fd();
    // The worker makes the pair and hands the host handle back with the host end's index; then it waits
    // for the plan. A closed channel on either side means the other side failed.
    let (pair_tx, pair_rx) = mpsc::channel::<(u32, Netlink)>();
    let (plan_tx, plan_rx) = mpsc::channel::<Plan>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || -> Result<Link, Error> {
            let mut host = host;
            container_ns.enter_for_this_thread().ctx(|| "entering container namespace".into())?;
            let link = create_pair(&mut host, base, host_fd)?;
            let Some(peer) = link.peer_index else {
                let _ = Netlink::open().and_then(|mut nl| nl.del_link(link.index));
                return Err(Error::Setup(format!("veth {} reports no peer", base.ifname)));
            };
            let _ = pair_tx.send((peer, host));
            let configured = match plan_rx.recv() {
                // The host end is up once the plan comes (the other thread sent it after `bring_up_host`).
                Ok(plan) => configure_container(&link, &plan).and_then(|()| await_active(link.index, &base.ifname)),
                Err(_) => Err(Error::Setup("host side failed".into())),
            };
            if let Err(e) = configured {
                // Deleting the container end takes the host end (and its routes) with it.
                let _ = Netlink::open().and_then(|mut nl| nl.del_link(link.index));
                return Err(e);
            }
            Ok(link)
        });
        let joined = |w: std::thread::ScopedJoinHandle<'_, Result<Link, Error>>| {
            w.join().unwrap_or_else(|_| Err(Error::Setup("namespace worker thread panicked".into())))
        };
        let addresses = allocate();
        let Ok((peer, mut host)) = pair_rx.recv() else {
            return joined(worker).map(|link| (link, base.clone()));
        };
        // The host end goes up second, so the kernel activates it at once (no wait for it, unlike the
        // container end's in the worker).
        let host_side = bring_up_host(&mut host, peer, base).and_then(|()| {
            let ips = addresses.and_then(|wait| wait())?;
            let plan = Plan { ips, ..base.clone() };
            let _ = plan_tx.send(plan.clone());
            configure_host(&mut host, peer, &plan).map(|()| plan)
        });
        drop(plan_tx);
        match (host_side, joined(worker)) {
            (Ok(plan), Ok(link)) => Ok((link, plan)),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), _) => {
                let _ = host.del_link(peer);
                Err(e)
            }
        }
    })
}

/// Runs in the container namespace: the veth pair with its host end born in the host namespace, the container
/// end up (the host end goes up in the host namespace: `bring_up_host`).
fn create_pair(host: &mut Netlink, plan: &Plan, host_fd: i32) -> Result<Link, Error> {
    let mut nl = Netlink::open().ctx(|| "opening netlink in container namespace".into())?;
    let create = |nl: &mut Netlink| nl.add_veth(&plan.ifname, plan.mtu, &plan.host_if, host_fd, HOST_MAC);
    let what = || format!("creating veth {} with peer {} in the host namespace", plan.ifname, plan.host_if);
    match create(&mut nl) {
        Ok(()) => {}
        Err(e) if is_exists(&e) => {
            if let Some(existing) = nl.link_by_name(&plan.ifname).ctx(|| format!("looking up {}", plan.ifname))? {
                return Err(Error::IfExists { ifname: plan.ifname.clone(), owner: existing.alias });
            }
            // A stale host end from an earlier sandbox of the same pod holds the name we need.
            if let Some(stale) = host.link_by_name(&plan.host_if).ctx(|| format!("looking up {}", plan.host_if))? {
                tracing::info!(link = %plan.host_if, "deleting stale host link");
                // An old sandbox's netns being torn down takes its veth with it meanwhile: gone is fine.
                match host.del_link(stale.index) {
                    Err(e) if !common::netlink::is_not_found(&e) => {
                        return Err(Error::Kernel { what: format!("deleting stale link {}", plan.host_if), source: e })
                    }
                    _ => {}
                }
            }
            create(&mut nl).ctx(what)?;
        }
        Err(e) => return Err(Error::Kernel { what: what(), source: e }),
    }
    let link = nl
        .link_by_name(&plan.ifname)
        .ctx(|| format!("looking up {}", plan.ifname))?
        .ok_or_else(|| Error::Setup(format!("veth {} vanished after creation", plan.ifname)))?;
    let mut up = || -> Result<(), Error> {
        // Before link up, or DAD holds IPv6 addresses tentative for a second. The address family is not
        // known yet; without IPv6 in the kernel the key is missing, which only matters if IPv6 is asked for.
        let _ = sysctl::write(&format!("net/ipv6/conf/{}/accept_dad", plan.ifname), "0");
        let owner = Some(plan.owner.as_str()).filter(|o| !o.is_empty());
        nl.set_up_with_alias(link.index, owner).ctx(|| format!("setting {} up", plan.ifname))
    };
    if let Err(e) = up() {
        let _ = nl.del_link(link.index);
        return Err(e);
    }
    Ok(link)
}

/// Runs in the host namespace once the pair exists. The IPv6 gateway is the host end's link-local address,
/// which the kernel makes when the end comes up and holds tentative (answering no neighbour solicitation)
/// through DAD, or with DAD off until a workqueue job has cleared the flag: pods had no IPv6 gateway for 1-2 s
/// after ADD, or for some ms under load. Made here first without DAD, it is usable at once (the kernel's own
/// then finds it there). The family is not known yet: done when the config may assign IPv6 (`maybe_v6`), and
/// both fail harmlessly without IPv6 in the kernel.
fn bring_up_host(host: &mut Netlink, index: u32, plan: &Plan) -> Result<(), Error> {
    if plan.maybe_v6 {
        add_v6_gateway(host, index, plan);
    }
    let owner = Some(plan.owner.as_str()).filter(|o| !o.is_empty());
    host.set_up_with_alias(index, owner).ctx(|| format!("setting {} up", plan.host_if))
}

fn add_v6_gateway(host: &mut Netlink, index: u32, plan: &Plan) {
    let _ = sysctl::write(&format!("net/ipv6/conf/{}/accept_dad", plan.host_if), "0");
    if let Ok(gateway) = IpNet::new(GATEWAY_V6.into(), 64) {
        let _ = host.add_address(index, gateway);
    }
}

/// Waits, up to ACTIVATION_DEADLINE, until the kernel's link watch (a workqueue job that needs rtnl) has seen
/// the carrier of a veth end set up in this thread's namespace. The end set up first (the container's) sends
/// through the `noop` qdisc, dropping every packet, until then: under load that lasted past ADD's return and
/// a pod's first ARP for the gateway was lost. Usually no wait: the kernel runs the job in our GETLINK, or has
/// run it meanwhile.
fn await_active(index: u32, name: &str) -> Result<(), Error> {
    let mut nl = Netlink::open().ctx(|| "opening netlink".into())?;
    let start = Instant::now();
    let active = nl.await_oper_up(index, start + ACTIVATION_DEADLINE).ctx(|| format!("waiting for {name} to come up"))?;
    if !active {
        tracing::warn!(link = name, waited = ?start.elapsed(), "the kernel has not activated the link yet; its first packets may be lost");
    }
    Ok(())
}

/// Runs in the container namespace once the addresses are known: sysctls, gateway routes, addresses.
fn configure_container(link: &Link, plan: &Plan) -> Result<(), Error> {
    let mut nl = Netlink::open().ctx(|| "opening netlink in container namespace".into())?;
    let set = |key: String, value: &str| sysctl::write(&key, value).ctx(|| "container sysctl".into());
    let forward = if plan.allow_ip_forwarding { "1" } else { "0" };
    if plan.has_v6() {
        if sysctl::read(&format!("net/ipv6/conf/{}/accept_dad", plan.ifname)).ok().as_deref() != Some("0") {
            return Err(Error::Setup(format!("could not turn off DAD on {}: is IPv6 enabled?", plan.ifname)));
        }
        for scope in ["all", "default", "lo"] {
            set(format!("net/ipv6/conf/{scope}/disable_ipv6"), "0")?;
        }
    }
    let table = route_table(&plan.ifname, link.index);
    if plan.has_v4() {
        nl.add_route(&RouteSpec::link_scope(host_net(GATEWAY_V4.into()), link.index).in_table(table))
            .ctx(|| "adding route 169.254.1.1 dev scope link".into())?;
        nl.add_route(&RouteSpec::via(default_net(false), GATEWAY_V4.into(), link.index).in_table(table))
            .ctx(|| "adding default route via 169.254.1.1".into())?;
    }
    if plan.has_v6() {
        nl.add_route(&RouteSpec::via(default_net(true), GATEWAY_V6.into(), link.index).in_table(table))
            .ctx(|| format!("adding default route via {GATEWAY_V6}"))?;
    }
    if table != MAIN_TABLE {
        for ip in &plan.ips {
            nl.add_rule(&source_rule(*ip, table)).ctx(|| format!("adding rule from {ip} lookup {table}"))?;
        }
    }
    for ip in &plan.ips {
        nl.add_address(link.index, host_net(*ip)).ctx(|| format!("adding address {ip} to {}", plan.ifname))?;
    }
    if plan.has_v4() {
        set("net/ipv4/ip_forward".into(), forward)?;
    }
    if plan.has_v6() {
        set("net/ipv6/conf/all/forwarding".into(), forward)?;
    }
    Ok(())
}

const MAIN_TABLE: u32 = netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN as u32;
/// Rules for the routing tables of non-default interfaces come before the main table's (32766).
const RULE_PRIORITY: u32 = 1000;
const TABLE_BASE: u32 = 1000;

/// The pod's routing table for `ifname`: the main table for the default interface (exactly Calico's
/// routes), a table of its own for any other, chosen by its addresses through `from <ip>` rules. A second
/// interface then neither fights the first for the default route nor answers out of the first's veth.
fn route_table(ifname: &str, index: u32) -> u32 {
    if ifname == common::attachment::DEFAULT_IFNAME {
        MAIN_TABLE
    } else {
        TABLE_BASE + index
    }
}

fn source_rule(ip: IpAddr, table: u32) -> RuleSpec {
    RuleSpec { from: host_net(ip), table, priority: RULE_PRIORITY }
}

/// The host-side sysctls Calico's `configureSysctls` writes (dataplane_linux.go): (key, value, must succeed).
fn host_sysctls(plan: &Plan) -> Vec<(String, &'static str, bool)> {
    let i = &plan.host_if;
    let mut v = Vec::new();
    if plan.has_v4() {
        v.push((format!("net/ipv4/conf/{i}/route_localnet"), "1", true));
        v.push((format!("net/ipv4/neigh/{i}/proxy_delay"), "0", false));
        v.push((format!("net/ipv4/conf/{i}/proxy_arp"), "1", true));
        v.push((format!("net/ipv4/conf/{i}/forwarding"), "1", true));
    }
    if plan.has_v6() {
        v.push((format!("net/ipv6/conf/{i}/accept_dad"), "0", true));
        v.push((format!("net/ipv6/conf/{i}/disable_ipv6"), "0", true));
        v.push((format!("net/ipv6/conf/{i}/proxy_ndp"), "1", true));
        v.push((format!("net/ipv6/conf/{i}/forwarding"), "1", true));
    }
    v.push((format!("net/ipv6/conf/{i}/accept_ra"), "0", false));
    v
}

fn configure_host(host: &mut Netlink, index: u32, plan: &Plan) -> Result<(), Error> {
    if plan.has_v6() && !plan.maybe_v6 {
        // The config gave no sign of IPv6: the gateway comes now, after the link (a short tentative window).
        add_v6_gateway(host, index, plan);
    }
    for (key, value, required) in host_sysctls(plan) {
        match sysctl::write(&key, value) {
            Ok(()) => {}
            Err(e) if required => return Err(Error::Kernel { what: "host sysctl".into(), source: e }),
            Err(e) => tracing::warn!(error = %e, "optional host sysctl not set"),
        }
    }
    for ip in &plan.ips {
        let route = RouteSpec::link_scope(host_net(*ip), index);
        match host.add_route(&route) {
            Ok(()) => {}
            Err(e) if is_exists(&e) => ensure_route_is_ours(host, &route, &plan.host_if)?,
            Err(e) => return Err(Error::Kernel { what: format!("adding host route {} dev {}", route.dst, plan.host_if), source: e }),
        }
    }
    Ok(())
}

/// An existing route to the workload's address is fine on our link (Felix got there first), a conflict elsewhere.
fn ensure_route_is_ours(host: &mut Netlink, route: &RouteSpec, host_if: &str) -> Result<(), Error> {
    let routes = host.routes(route.dst.addr().is_ipv6()).ctx(|| "listing host routes".into())?;
    let Some(existing) = routes.iter().find(|r| r.dst == route.dst && r.table == route.table) else {
        return Err(Error::Setup(format!("route {} reported as existing but not found", route.dst)));
    };
    if existing.oif == route.oif {
        return Ok(());
    }
    let other = match existing.oif {
        Some(idx) => {
            host.links().ok().and_then(|ls| ls.into_iter().find(|l| l.index == idx)).map(|l| l.name).unwrap_or_else(|| format!("ifindex {idx}"))
        }
        None => "a route without interface".into(),
    };
    Err(Error::RouteConflict { dst: route.dst.to_string(), ours: host_if.into(), other })
}

fn default_net(v6: bool) -> IpNet {
    if v6 {
        IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).unwrap_or_default()
    } else {
        IpNet::default()
    }
}

/// What a DEL found in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teardown {
    /// No such interface (already deleted, or never added).
    Absent,
    /// The interface is marked as another container's (a newer sandbox in a reused netns): left alone.
    Foreign(String),
    Deleted,
}

/// How long a DEL waits for the kernel's announcement that the interface is gone before it waits for the
/// whole deletion instead.
const DELETE_EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Deletes `ifname` in the container unless it is marked as another container's than `owner` (unmarked
/// interfaces, from before the marks, count as `owner`'s). `addresses_gone` runs as soon as the interface's
/// addresses can no longer be in use: right away when there is nothing to delete, else when the kernel
/// announces the link unregistered, while the deleting call still waits out the teardown (~20 ms): the
/// caller releases the addresses then, never while a live interface holds them. If the deletion fails,
/// `addresses_gone` is not called.
pub fn teardown(container_ns: &NetNs, ifname: &str, owner: &str, addresses_gone: impl FnOnce()) -> Result<Teardown, Error> {
    let (found_tx, found_rx) = mpsc::channel::<(LinkEvents, u32, std::os::fd::OwnedFd)>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || -> Result<Teardown, Error> {
            container_ns.enter_for_this_thread().ctx(|| "entering container namespace".into())?;
            let mut nl = Netlink::open().ctx(|| "opening netlink in container namespace".into())?;
            let Some(link) = nl.link_by_name(ifname).ctx(|| format!("looking up {ifname}"))? else { return Ok(Teardown::Absent) };
            if let Some(other) = link.alias.as_ref().filter(|a| a.as_str() != owner) {
                tracing::info!(ifname, owner = %other, "interface belongs to another container: left alone");
                return Ok(Teardown::Foreign(other.clone()));
            }
            // Its write end closes when the deletion returns, waking the wait below if no event came.
            let table = route_table(ifname, link.index);
            if table != MAIN_TABLE {
                // Rules outlive their interface; the table's routes go with it.
                for v6 in [false, true] {
                    for rule in nl.rules(v6).ctx(|| "listing rules".into())?.into_iter().filter(|r| r.table == table) {
                        nl.del_rule(&rule).ctx(|| format!("deleting rule from {} lookup {table}", rule.from))?;
                    }
                }
            }
            let (done_r, done_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from).ctx(|| "making a pipe".into())?;
            match LinkEvents::open() {
                Ok(events) => {
                    let _ = found_tx.send((events, link.index, done_r));
                }
                Err(e) => tracing::debug!(error = %e, "no link events: the release waits for the whole deletion"),
            }
            let deleted = nl.del_link(link.index);
            drop(done_w);
            match deleted {
                Err(e) if !common::netlink::is_not_found(&e) => Err(Error::Kernel { what: format!("deleting {ifname}"), source: e }),
                _ => Ok(Teardown::Deleted),
            }
        });
        let announced = match found_rx.recv() {
            Ok((mut events, index, done_r)) => {
                use std::os::fd::AsFd;
                events.wait_deleted(index, done_r.as_fd(), DELETE_EVENT_WAIT).unwrap_or(false)
            }
            Err(_) => false,
        };
        let mut addresses_gone = Some(addresses_gone);
        if announced {
            if let Some(f) = addresses_gone.take() {
                f();
            }
        }
        let result = worker.join().unwrap_or_else(|_| Err(Error::Setup("namespace worker thread panicked".into())));
        if result.is_ok() {
            if let Some(f) = addresses_gone.take() {
                f();
            }
        }
        result
    })
}

/// What CHECK expects to find, taken from the previous result.
#[derive(Debug, Clone)]
pub struct Expected {
    pub host_if: String,
    pub ifname: String,
    /// The container ID the interface must be marked with (unmarked interfaces predate the marks).
    pub owner: String,
    pub mac: Option<String>,
    pub ips: Vec<IpAddr>,
}

/// Verifies the wiring; the error names the first missing piece.
pub fn verify(container_ns: &NetNs, exp: &Expected) -> Result<(), Error> {
    let plan = Plan {
        host_if: exp.host_if.clone(),
        ifname: exp.ifname.clone(),
        owner: exp.owner.clone(),
        maybe_v6: false,
        mtu: 0,
        ips: exp.ips.clone(),
        allow_ip_forwarding: false,
    };
    container_ns.run(|| verify_container(&plan, exp)).ctx(|| "entering container namespace".into())??;
    verify_host(&plan)
}

fn verify_container(plan: &Plan, exp: &Expected) -> Result<(), Error> {
    let mut nl = Netlink::open().ctx(|| "opening netlink in container namespace".into())?;
    let link = nl
        .link_by_name(&plan.ifname)
        .ctx(|| format!("looking up {}", plan.ifname))?
        .ok_or_else(|| Error::Check(format!("container interface {} not found", plan.ifname)))?;
    if link.kind.as_deref() != Some("veth") {
        return Err(Error::Check(format!("container interface {} is not a veth", plan.ifname)));
    }
    if let Some(other) = link.alias.as_ref().filter(|a| **a != exp.owner) {
        return Err(Error::Check(format!("container interface {} belongs to container {other}", plan.ifname)));
    }
    if let Some(mac) = &exp.mac {
        if !mac.eq_ignore_ascii_case(&format_mac(&link.mac)) {
            return Err(Error::Check(format!("container interface {} has MAC {}, expected {mac}", plan.ifname, format_mac(&link.mac))));
        }
    }
    let addrs = nl.addresses(link.index).ctx(|| "listing container addresses".into())?;
    for ip in &plan.ips {
        if !addrs.contains(&host_net(*ip)) {
            return Err(Error::Check(format!("address {} missing on container interface {}", host_net(*ip), plan.ifname)));
        }
    }
    for v6 in [false, true] {
        if (v6 && !plan.has_v6()) || (!v6 && !plan.has_v4()) {
            continue;
        }
        let routes = nl.routes(v6).ctx(|| "listing container routes".into())?;
        let gw: IpAddr = if v6 { GATEWAY_V6.into() } else { GATEWAY_V4.into() };
        if !routes.iter().any(|r| r.dst.prefix_len() == 0 && r.gw == Some(gw) && r.oif == Some(link.index)) {
            return Err(Error::Check(format!("default route via {gw} dev {} missing in container", plan.ifname)));
        }
        if !v6 && !routes.iter().any(|r| r.dst == host_net(gw) && r.oif == Some(link.index)) {
            return Err(Error::Check(format!("route {gw} dev {} scope link missing in container", plan.ifname)));
        }
        let table = route_table(&plan.ifname, link.index);
        if table != MAIN_TABLE {
            let rules = nl.rules(v6).ctx(|| "listing container rules".into())?;
            for ip in plan.ips.iter().filter(|ip| ip.is_ipv6() == v6) {
                if !rules.contains(&source_rule(*ip, table)) {
                    return Err(Error::Check(format!("rule from {ip} lookup {table} missing in container")));
                }
            }
        }
    }
    Ok(())
}

fn verify_host(plan: &Plan) -> Result<(), Error> {
    let mut host = Netlink::open().ctx(|| "opening netlink in host namespace".into())?;
    let link = host
        .link_by_name(&plan.host_if)
        .ctx(|| format!("looking up {}", plan.host_if))?
        .ok_or_else(|| Error::Check(format!("host interface {} not found", plan.host_if)))?;
    if !link.up {
        return Err(Error::Check(format!("host interface {} is down", plan.host_if)));
    }
    for v6 in [false, true] {
        let ips: Vec<_> = plan.ips.iter().filter(|ip| ip.is_ipv6() == v6).collect();
        if ips.is_empty() {
            continue;
        }
        let routes = host.routes(v6).ctx(|| "listing host routes".into())?;
        for ip in ips {
            if !routes.iter().any(|r| r.dst == host_net(*ip) && r.oif == Some(link.index)) {
                return Err(Error::Check(format!("host route {} dev {} missing", host_net(*ip), plan.host_if)));
            }
        }
    }
    for (key, value, required) in host_sysctls(plan) {
        if required && sysctl::read(&key).ok().as_deref() != Some(value) {
            return Err(Error::Check(format!("host sysctl {} is not {value}", key.replace('/', "."))));
        }
    }
    Ok(())
}
