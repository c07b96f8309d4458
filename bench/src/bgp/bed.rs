//! What the BGP benchmarks do to a cluster bed besides timing: agents started and stopped together,
//! resources applied with the built calicoctl, a route announced to an agent's BIRD by hand (the floor),
//! BIRD alone with hand-written mesh configs (testbed/tests/bird_mesh.rs's), and a process's memory and CPU
//! from /proc.
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testbed::agent::Agent;
use testbed::bird::{mesh_config, Bird};
use testbed::cluster::{Cluster, ClusterNode};

/// Calico's overrides of BIRD's BGP timers (bird.cfg.template's bgp_template); BIRD's own are 5 s, 120 s, 60,300.
/// Where the agent keeps BIRD's config, as the node sees it (CALICO_CONF_DIR's default).
const AGENT_CONF: &str = "/etc/calico/calico-node/bird.conf";

/// One agent per node, started back to back (the agent logs at info, as a deployment does).
pub fn start_agents(cluster: &Cluster) -> Vec<Agent> {
    cluster.nodes.iter().map(|n| Agent::start(cluster, n, &[("CALICO_LOG_LEVEL", "info")])).collect()
}

/// SIGTERM to every agent at once, then each guard waits for its own.
pub fn stop_agents(agents: Vec<Agent>) {
    for a in &agents {
        a.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    }
    drop(agents);
}

/// BGP sessions Established in `show protocols` (0 when BIRD does not answer yet).
pub fn established(ctl: &std::path::Path) -> usize {
    let protos = testbed::bird::try_birdc(ctl, &["show", "protocols"]).map(|t| testbed::bird::parse_protocols(&t)).unwrap_or_default();
    protos.iter().filter(|p| p.proto == "BGP" && p.info.starts_with("Established")).count()
}

/// Polls every control socket in `ctls` until each shows `want[i]` sessions Established; returns when each
/// got there, measured from `since`.
pub fn wait_established(ctls: &[std::path::PathBuf], want: &[usize], since: Instant, timeout: Duration) -> Vec<Duration> {
    let mut done: Vec<Option<Duration>> = vec![None; ctls.len()];
    while done.iter().any(Option::is_none) {
        assert!(since.elapsed() < timeout, "sessions not Established within {timeout:?}: {done:?}");
        for (i, ctl) in ctls.iter().enumerate() {
            if done[i].is_none() && established(ctl) == want[i] {
                done[i] = Some(since.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done.into_iter().flatten().collect()
}

/// `calicoctl apply -f -` of `yaml` against the cluster's etcd.
pub fn apply(cluster: &Cluster, yaml: &str) {
    let mut c = Command::new(testbed::target_dir().join("calicoctl"));
    c.env_clear().env("ETCD_ENDPOINTS", cluster.etcd().endpoints_csv()).args(["apply", "-f", "-"]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run calicoctl");
    child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("write to calicoctl");
    let out = child.wait_with_output().expect("calicoctl");
    assert!(out.status.success(), "calicoctl apply: {}{}\n{yaml}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// One route reflector (node-1, cluster ID 244.0.0.1), every node peering with it, the mesh off: the
/// resources an operator applies before the agents start.
pub fn route_reflector(cluster: &Cluster) {
    let rr = &cluster.nodes[0];
    apply(
        cluster,
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {}\n  labels:\n    route-reflector: \"true\"\n\
             spec:\n  bgp:\n    ipv4Address: {}/24\n    routeReflectorClusterID: 244.0.0.1\n",
            rr.name, rr.ip
        ),
    );
    apply(
        cluster,
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: peer-with-route-reflectors\n\
         spec:\n  nodeSelector: all()\n  peerSelector: route-reflector == 'true'\n",
    );
    apply(cluster, "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: false\n");
}

/// Adds `route <prefix> blackhole;` to the agent's own static protocol and loads it the way the agent loads
/// a config: staged file, `bird -p`, rename, `configure "<file>"` on the control socket.
pub fn announce_by_hand(node: &ClusterNode, agent: &Agent, prefix: &str) {
    let path = node.path(AGENT_CONF);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let marker = "protocol static static4 {\n  ipv4;\n";
    let at = text.find(marker).unwrap_or_else(|| panic!("no static4 in {}", path.display())) + marker.len();
    let edited = format!("{}  route {prefix} blackhole;\n{}", &text[..at], &text[at..]);
    let staged = format!("{AGENT_CONF}.new");
    std::fs::write(node.path(&staged), edited).expect("write staged config");
    let check = node.command(testbed::bird::BIRD).args(["-p", "-c", &staged]).output().expect("bird -p");
    assert!(check.status.success(), "bird -p: {}", String::from_utf8_lossy(&check.stderr));
    std::fs::rename(node.path(&staged), &path).expect("rename config");
    let reply = agent.birdc(&["configure", &format!("\"{AGENT_CONF}\"")]).unwrap_or_else(|e| panic!("birdc configure: {e}"));
    assert!(reply.contains("Reconfigur"), "birdc configure: {reply}");
}

/// Starts BIRD alone on every node (node i announcing `blocks[i]`) with `timers`; returns the birds and when
/// the first was started.
pub fn start_birds(cluster: &Cluster, blocks: &[String], timers: &str) -> (Vec<Bird>, Instant) {
    let start = Instant::now();
    let birds = cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let peers: Vec<&ClusterNode> = cluster.nodes.iter().filter(|p| p.ip != n.ip).collect();
            Bird::start(n, &mesh_config(n, &peers, &blocks[i..=i], timers))
        })
        .collect();
    (birds, start)
}

/// A process's resident set, KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// VmHWM: the peak.
    pub peak: u64,
    /// VmRSS: now.
    pub now: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok());
    Some(Memory { peak: field("VmHWM:")?, now: field("VmRSS:")? })
}

/// A process's CPU so far (utime + stime).
pub fn cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // utime and stime are the 14th and 15th fields; those after the parenthesised name start at the 3rd.
    let mut f = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks: u64 = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// Gives every node a permanent neighbour entry for every other node's eth0. The kernel's ARP table limit
/// (net.ipv4.neigh.default.gc_thresh3, 1024) is one for the whole machine, all namespaces together: a 50-node
/// mesh needs 2450 entries, and past the limit new ones fail ("neighbor table overflow"), so SYNs wait for
/// ARP and sessions back off for minutes. Permanent entries are not counted against it (and a real cluster
/// has one table per host).
pub fn static_neighbours(cluster: &Cluster) {
    let macs: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| {
            let out = n.ip(&["-br", "link", "show", "eth0"]);
            out.split_whitespace().nth(2).unwrap_or_else(|| panic!("{}: no MAC in {out:?}", n.name)).to_string()
        })
        .collect();
    for n in &cluster.nodes {
        let batch: String = cluster
            .nodes
            .iter()
            .zip(&macs)
            .filter(|(p, _)| p.ip != n.ip)
            .map(|(p, mac)| format!("neigh replace {} lladdr {mac} dev eth0 nud permanent\n", p.ip))
            .collect();
        let mut child = n.command("ip").args(["-batch", "-"]).stdin(Stdio::piped()).spawn().expect("ip -batch");
        child.stdin.take().expect("stdin").write_all(batch.as_bytes()).expect("write batch");
        assert!(child.wait().expect("ip -batch").success(), "{}: ip -batch of neighbours failed", n.name);
    }
}
