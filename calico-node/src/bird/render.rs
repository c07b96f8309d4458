//! `render`: a `BirdConfig` as BIRD 2's configuration text, one file, byte for byte the same for the same
//! config (everything is in the IR's sorted order; no time, no host state), so an unchanged snapshot gives an
//! unchanged file and the agent skips the reload. One file rather than confd's three (`bird.cfg` including
//! `bird_aggr.cfg` and `bird_ipam.cfg`): one atomic rename replaces all of it, `bird -p -c` checks exactly what
//! BIRD will load, and BIRD can never read new filters next to old protocols.
//!
//! Calico's BIRD 1.6 directives in BIRD 2's syntax: each session is one `protocol bgp` with one `ipv4 {}` or
//! `ipv6 {}` channel (BIRD 2 does both families in one daemon; confd rendered `bird.cfg` and `bird6.cfg`);
//! `listen bgp` (gone in BIRD 2) becomes `local port` and `strict bind` on every session; `gateway recursive`
//! and `add paths` are channel options; static and kernel protocols are per family.
use super::config::*;
use std::fmt::Write;

pub fn render(c: &BirdConfig) -> String {
    let mut o = String::new();
    header(&mut o, c);
    filters(&mut o, c);
    protocols(&mut o, c);
    bgp(&mut o, c);
    o
}

/// `writeln!` into a String cannot fail.
macro_rules! line {
    ($o:expr) => {
        $o.push('\n')
    };
    ($o:expr, $($arg:tt)*) => {
        let _ = writeln!($o, $($arg)*);
    };
}

fn header(o: &mut String, c: &BirdConfig) {
    line!(o, "# BIRD 2 configuration of node {}, rendered by calico-node from the datastore.", c.node_name);
    line!(o, "# Do not edit: calico-node replaces it on every change.");
    let target = match &c.log {
        BirdLog::Stderr => "stderr".to_string(),
        BirdLog::Syslog => "syslog".to_string(),
        BirdLog::File(p) => format!("\"{}\"", p.display()),
    };
    line!(o, "log {target} all;");
    line!(o, "router id {};", c.router_id);
    line!(o);
}

fn debug_line(o: &mut String, level: DebugLevel) {
    match level {
        DebugLevel::None => {}
        DebugLevel::States => {
            line!(o, "  debug {{ states }};");
        }
        DebugLevel::All => {
            line!(o, "  debug all;");
        }
    }
}

fn filters(o: &mut String, c: &BirdConfig) {
    line!(o, "# Communities of BGPConfiguration prefixAdvertisements.");
    line!(o, "function apply_communities() {{");
    for r in &c.communities {
        line!(o, "  if ( net ~ {} ) then {{", r.cidr);
        for com in &r.communities {
            match com {
                Community::Standard(a, b) => {
                    line!(o, "    bgp_community.add(({a}, {b}));");
                }
                Community::Large(a, b, d) => {
                    line!(o, "    bgp_large_community.add(({a}, {b}, {d}));");
                }
            }
        }
        line!(o, "  }}");
    }
    line!(o, "}}");
    line!(o);

    line!(o, "# This node's blocks: each is announced as itself, nothing inside it is (a borrowed /32 lies in");
    line!(o, "# another node's block, so the pool rule exports it and it wins over that node's blackhole).");
    line!(o, "function calico_aggr() {{");
    for b in &c.aggregation {
        match &b.state {
            BlockState::Confirmed => {
                line!(o, "  # Block {} is confirmed.", b.cidr);
            }
            BlockState::Implicit => {
                line!(o, "  # Block {} is implicitly confirmed.", b.cidr);
            }
            BlockState::Other(s) => {
                line!(o, "  # Block {} is {s}.", b.cidr);
            }
        }
        if b.state.aggregates() {
            line!(o, "  if ( net = {} ) then {{ accept; }}", b.cidr);
            line!(o, "  if ( net ~ {} ) then {{ reject; }}", b.cidr);
        }
    }
    line!(o, "}}");
    line!(o);

    line!(o, "# Routes learned from BPF devices never leave the node.");
    line!(o, "function reject_local_routes() {{");
    line!(o, "  if (defined(ifname)) then {{");
    line!(o, "    if (ifname ~ \"bpf*.cali\") then {{ reject; }}");
    line!(o, "  }}");
    line!(o, "}}");
    line!(o);

    let e = &c.export;
    line!(o, "# What goes to BGP peers: the IP pools' routes, own blocks aggregated.");
    line!(o, "function calico_export_to_bgp_peers(bool internal_peer) {{");
    for p in &e.disabled_pools {
        line!(o, "  if ( net ~ {p} ) then {{ reject; }} # BGP export is disabled.");
    }
    if !e.ibgp_reject_interfaces.is_empty() {
        let cond: Vec<String> = e.ibgp_reject_interfaces.iter().map(|i| format!("(ifname ~ \"{i}\")")).collect();
        line!(o, "  if (internal_peer) then {{");
        line!(o, "    if (defined(ifname)) then {{");
        line!(o, "      if ({}) then {{ reject; }}", cond.join(" || "));
        line!(o, "    }}");
        line!(o, "  }}");
    }
    line!(o, "  reject_local_routes();");
    line!(o, "  apply_communities();");
    line!(o, "  calico_aggr();");
    for p in &e.pools {
        line!(o, "  if ( net ~ {p} ) then {{ accept; }}");
    }
    line!(o, "}}");
    line!(o);

    line!(o, "# What goes to the kernel.");
    line!(o, "filter calico_kernel_programming {{");
    line!(o, "  # Static and BGP routes only: BIRD 1.6 never exported interface routes, BIRD 2 would.");
    line!(o, "  if !(source ~ [ RTS_STATIC, RTS_BGP ]) then {{ reject; }}");
    for p in &c.kernel.pools {
        match p.action {
            KernelAction::Program => {
                line!(o, "  if ( net ~ {} ) then {{ accept; }}", p.cidr);
            }
            KernelAction::Leave(why) => {
                let why = match why {
                    LeaveReason::Vxlan => "VXLAN routes are not BIRD's.",
                    LeaveReason::Ipip => "IPIP routes are not BIRD's (BIRD 2 cannot program tunl0).",
                    LeaveReason::ProgramClusterRoutes => "Cluster routes are not BIRD's (programClusterRoutes).",
                };
                line!(o, "  if ( net ~ {} ) then {{ reject; }} # {why}", p.cidr);
            }
        }
    }
    line!(o, "  accept;");
    line!(o, "}}");
    line!(o);
}

fn protocols(o: &mut String, c: &BirdConfig) {
    line!(o, "# Interface up/down events.");
    line!(o, "protocol device {{");
    debug_line(o, c.debug);
    line!(o, "  scan time 2;");
    line!(o, "}}");
    line!(o);

    let ifaces: Vec<String> = c
        .direct_interfaces
        .iter()
        .map(|p| match p {
            InterfacePattern::Exclude(i) => format!("-\"{i}\""),
            InterfacePattern::Include(i) => format!("\"{i}\""),
        })
        .collect();
    line!(o, "# Connected routes, so BGP next hops resolve (gateway recursive); pod and IPVS devices left out.");
    line!(o, "protocol direct {{");
    debug_line(o, c.debug);
    line!(o, "  ipv4;");
    line!(o, "  ipv6;");
    line!(o, "  interface {};", ifaces.join(", "));
    line!(o, "}}");
    line!(o);

    line!(o, "# The kernel's routes are learned (pods' /32s among them); routes stay when BIRD stops; scan every 2 s.");
    for (name, family) in [("kernel4", "ipv4"), ("kernel6", "ipv6")] {
        line!(o, "protocol kernel {name} {{");
        line!(o, "  {family} {{");
        line!(o, "    import all;");
        line!(o, "    export filter calico_kernel_programming;");
        line!(o, "  }};");
        line!(o, "  learn;");
        line!(o, "  persist;");
        line!(o, "  scan time 2;");
        line!(o, "  graceful restart;");
        line!(o, "  merge paths on;");
        line!(o, "}}");
        line!(o);
    }

    for (name, family, v4) in [("static4", "ipv4", true), ("static6", "ipv6", false)] {
        let routes: Vec<&StaticRoute> = c.static_routes.iter().filter(|r| matches!(r.dest(), ipnet::IpNet::V4(_)) == v4).collect();
        if routes.is_empty() {
            continue;
        }
        line!(o, "# This node's blocks (blackholes BIRD owns in the kernel and announces), routes to peers.");
        line!(o, "protocol static {name} {{");
        line!(o, "  {family};");
        for r in routes {
            match r {
                StaticRoute::Blackhole(net) => {
                    line!(o, "  route {net} blackhole;");
                }
                StaticRoute::Via { dest, gateway } => {
                    line!(o, "  route {dest} via {gateway};");
                }
            }
        }
        line!(o, "}}");
        line!(o);
    }
}

fn bgp(o: &mut String, c: &BirdConfig) {
    line!(o, "# Every BGP session; Calico's timers (BIRD's: connect delay 5 s, retry 120 s, error wait 60-300 s).");
    line!(o, "template bgp bgp_template {{");
    debug_line(o, c.debug);
    line!(o, "  local as {};", c.as_number);
    if let Some(p) = c.listen.port {
        line!(o, "  local port {p};");
    }
    if c.listen.strict_bind {
        line!(o, "  strict bind on;");
    }
    line!(o, "  graceful restart;");
    line!(o, "  connect delay time 2;");
    line!(o, "  connect retry time 5;");
    line!(o, "  error wait time 5,30;");
    line!(o, "}}");
    line!(o);
    for family in ["ipv4", "ipv6"] {
        line!(o, "template bgp bgp_{family} from bgp_template {{");
        line!(o, "  {family} {{");
        line!(o, "    gateway recursive;");
        line!(o, "    add paths on;");
        line!(o, "  }};");
        line!(o, "}}");
        line!(o);
    }
    if c.peers.is_empty() {
        line!(o, "# No BGP peers configured for this node.");
    }
    for p in &c.peers {
        peer(o, p);
    }
}

fn peer(o: &mut String, p: &Peer) {
    let family = if p.is_ipv4() { "ipv4" } else { "ipv6" };
    let description = match &p.origin {
        PeerOrigin::Mesh { node } => format!("node-to-node mesh with {node}"),
        PeerOrigin::BgpPeer { name, reverse: false } => format!("BGPPeer {name}"),
        PeerOrigin::BgpPeer { name, reverse: true } => format!("BGPPeer {name} (reverse peering)"),
    };
    line!(o, "protocol bgp {} from bgp_{family} {{", p.name);
    line!(o, "  description \"{description}\";");
    if let Some(a) = p.local_as {
        line!(o, "  local as {a};");
    }
    match p.port {
        Some(port) => {
            line!(o, "  neighbor {} port {port} as {};", p.address, p.as_number);
        }
        None => {
            line!(o, "  neighbor {} as {};", p.address, p.as_number);
        }
    }
    if let Some(src) = p.source_address {
        line!(o, "  source address {src};");
    }
    match p.ttl_security {
        Some(hops) => {
            line!(o, "  ttl security on;");
            line!(o, "  multihop {hops};");
        }
        None => {
            line!(o, "  ttl security off;");
            line!(o, "  multihop;");
        }
    }
    if p.passive {
        line!(o, "  passive on;");
    }
    if let Some(t) = p.graceful_restart_time {
        line!(o, "  graceful restart time {t};");
    }
    if let Some(t) = p.keepalive_time {
        line!(o, "  keepalive time {t};");
    }
    if let Some(id) = p.route_reflector_client {
        line!(o, "  rr client;");
        line!(o, "  rr cluster id {id};");
    }
    if let Some(pw) = &p.password {
        line!(o, "  password \"{pw}\";");
    }
    if let Some(n) = p.allow_local_as {
        line!(o, "  allow local as {n};");
    }
    line!(o, "  {family} {{");
    line!(o, "    import all;");
    line!(o, "    export filter {{ calico_export_to_bgp_peers({}); reject; }};", p.internal);
    match p.next_hop {
        NextHop::Auto => {}
        NextHop::SelfAddress => {
            line!(o, "    next hop self;");
        }
        NextHop::Keep => {
            line!(o, "    next hop keep;");
        }
    }
    line!(o, "  }};");
    line!(o, "}}");
    line!(o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn protocol_names_give_back_their_address() {
        for (ip, port) in [("10.0.0.2", None), ("fd00::2", Some(1790)), ("2001:db8:0:1::1", None)] {
            let ip: IpAddr = ip.parse().unwrap();
            let name = peer_name("Global", ip, port);
            assert_eq!(address_of_name(&name), Some(ip), "{name}");
        }
        assert_eq!(peer_name("Mesh", "10.0.0.10".parse().unwrap(), None), "Mesh_10_0_0_10");
        assert_eq!(peer_name("Node", "ac13::57".parse().unwrap(), Some(50)), "Node_ac13__57_port_50");
        assert_eq!(address_of_name("kernel4"), None);
    }
}
