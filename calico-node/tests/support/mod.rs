//! What the agent's bed tests share: the mesh bed (etcd, a pool, an agent per node, sessions up), resources
//! to apply, block routes in every node's kernel, pod-to-pod pings, calicoctl as an operator runs it, Node
//! documents read back from etcd, the BGP sessions' "since" times, a continuous ping that counts what it
//! lost, and one-shot agent runs that must exit.
#![allow(dead_code)] // each test file uses its own part
use datastore::resources::kinds::NODE;
use datastore::store::{Datastore, Key};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use testbed::agent::Agent;
pub use testbed::bird::Session;
use testbed::cluster::{Cluster, ClusterNode, Pod, Spec};
use testbed::daemon::Daemon;
pub use testbed::ping::Pinger;

pub const TIMEOUT: Duration = Duration::from_secs(30);
pub const POOL: &str = "10.244.0.0/16";

pub fn available(test: &str) -> bool {
    testbed::bird::available(test) && testbed::etcd::available(test)
}

/// The /26 holding an IPv4 address.
pub fn block_of(ip: &str) -> String {
    let a: std::net::Ipv4Addr = ip.parse().expect("pod IPv4");
    format!("{}/26", std::net::Ipv4Addr::from(u32::from(a) & !0x3f))
}

/// `nodes` nodes on one subnet with etcd, a /26-block pool, an agent on each (ready, full mesh Established).
pub fn mesh(nodes: usize) -> (Cluster, Vec<Agent>) {
    let cluster = Cluster::new(&Spec::nodes(nodes).with_etcd());
    cluster.ipam(&["pool", "add", "--name", "bed", "--cidr", POOL, "--block-size", "26"]);
    let mut agents: Vec<Agent> = cluster.nodes.iter().map(|n| Agent::start(&cluster, n, &[])).collect();
    for a in &mut agents {
        a.wait_ready(TIMEOUT);
    }
    for a in &mut agents {
        a.wait_sessions(nodes - 1, TIMEOUT);
    }
    (cluster, agents)
}

/// Waits until every node has `block` of node `owner` (0-based): a blackhole there, `via <owner> dev eth0
/// proto bird` elsewhere; returns the longest wait.
pub fn wait_block_everywhere(cluster: &Cluster, owner: usize, block: &str) -> Duration {
    let mut longest = Duration::ZERO;
    for (i, n) in cluster.nodes.iter().enumerate() {
        let expect = if i == owner { "blackhole".to_string() } else { format!("via {} dev eth0 proto bird", cluster.nodes[owner].ip) };
        let (_, took) = n.wait_route(block, &expect, TIMEOUT);
        longest = longest.max(took);
    }
    longest
}

/// A pod on node-1 ("a") and one on node-2 ("b"), their blocks routed on every node; returns the pods and
/// their blocks.
pub fn two_pods(cluster: &mut Cluster) -> (Pod, Pod, [String; 2]) {
    let conf = cluster.calico_conf();
    let p1 = cluster.nodes[0].add_pod(&conf, "a");
    let p2 = cluster.nodes[1].add_pod(&conf, "b");
    let blocks = [block_of(&p1.ip), block_of(&p2.ip)];
    wait_block_everywhere(cluster, 0, &blocks[0]);
    wait_block_everywhere(cluster, 1, &blocks[1]);
    (p1, p2, blocks)
}

/// Checks (now, no waiting) that every node still has `block` of `owner`.
pub fn block_everywhere_now(cluster: &Cluster, owner: usize, block: &str) -> Result<(), String> {
    for (i, n) in cluster.nodes.iter().enumerate() {
        let want = if i == owner { "blackhole".to_string() } else { format!("via {} dev eth0 proto bird", cluster.nodes[owner].ip) };
        let r = n.route(block);
        if !r.contains(&want) {
            return Err(format!("{}: route {block} is {r:?}, wanted {want:?}", n.name));
        }
    }
    Ok(())
}

/// An IPPool resource (no encapsulation, as the bed routes natively).
pub fn pool(name: &str, cidr: &str, block_size: u8) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
           "spec": {"cidr": cidr, "blockSize": block_size, "ipipMode": "Never", "vxlanMode": "Never", "natOutgoing": false}})
}

pub fn bgp_peer(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec})
}

pub fn bgp_configuration(spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"}, "spec": spec})
}

/// Starts an agent on every node with `env`, then waits until each is ready; returns them and the time from
/// the first start to the last ready.
pub fn start_agents(cluster: &Cluster, env: &[(&str, &str)]) -> (Vec<Agent>, Instant) {
    let started = Instant::now();
    let mut agents: Vec<Agent> = cluster.nodes.iter().map(|n| Agent::start(cluster, n, env)).collect();
    for a in &mut agents {
        a.wait_ready(TIMEOUT);
    }
    (agents, started)
}

/// `cni-calico` conf restricted to the pools named (`ipam.ipv4_pools`).
pub fn conf_with_pools(cluster: &Cluster, pools: &[&str]) -> Value {
    let mut conf = cluster.calico_conf();
    conf["ipam"]["ipv4_pools"] = json!(pools);
    conf
}

/// Every pod reaches every other pod.
pub fn ping_all(pods: &[(usize, &Pod)]) {
    for (i, from) in pods {
        for (j, to) in pods {
            if i != j {
                assert!(testbed::ping(&from.netns, &to.ip, TIMEOUT), "pod on node {} cannot reach pod {} on node {}", i + 1, to.ip, j + 1);
            }
        }
    }
}

/// Asserts that the route to `prefix` on `node` keeps containing `expect` for `window` (checked every 10 ms).
pub fn route_holds(node: &testbed::cluster::ClusterNode, prefix: &str, expect: &str, window: Duration) {
    let start = Instant::now();
    while start.elapsed() < window {
        let r = node.route(prefix);
        assert!(r.lines().any(|l| l.contains(expect)), "{prefix} on {} changed: {r:?} (expected {expect:?})", node.name);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The built calicoctl on the cluster's etcd; `stdin` for `apply -f -`. Returns (success, stdout + stderr).
pub fn calicoctl(cluster: &Cluster, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut c = Command::new(testbed::target_dir().join("calicoctl"));
    c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("ETCD_ENDPOINTS", cluster.etcd().endpoints_csv());
    c.envs(env.iter().copied()).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("run calicoctl");
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("calicoctl output");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `calicoctl node status` for an agent's node (its run dir; BIRD's socket is a file there).
pub fn node_status(cluster: &Cluster, agent: &Agent) -> String {
    let dir = agent.run_dir.display().to_string();
    calicoctl(cluster, &["node", "status"], "", &[("CALICO_RUN_DIR", &dir)]).1
}

/// A Node resource as stored (None when absent).
pub fn node_doc(cluster: &Cluster, name: &str) -> Option<Value> {
    let store = cluster.etcd().store();
    let session = store.lock().expect("etcd session");
    session.get(&Key::resource(&NODE, name)).expect("read node").map(|r| r.value.to_value())
}

/// The BGP sessions of an agent's BIRD, by name.
pub fn since(agent: &Agent) -> BTreeMap<String, Session> {
    testbed::bird::bgp_sessions(agent.protocols())
}

/// The BIRD protocol name of a mesh peer.
pub fn mesh_name(ip: &str) -> String {
    session_name("Mesh", ip)
}

/// A protocol name of a session with `ip` (`Mesh_10_250_0_2`).
pub fn session_name(prefix: &str, ip: &str) -> String {
    format!("{prefix}_{}", ip.replace(['.', ':'], "_"))
}

/// Peak RSS (VmHWM, KiB) of a process.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Whether `pid` is a live `bird`.
pub fn bird_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "bird")
}

/// `ping -i 0.01` from a pod netns to `to`, flowing (20 replies) before it returns.
pub fn pinger(netns: &str, to: &str) -> Pinger {
    let p = Pinger::start(netns, to, Duration::from_millis(10));
    p.wait_replies(20, TIMEOUT);
    p
}

/// Runs calico-node once on `node` with the environment `Agent::start` gives plus `env` (an empty value
/// unsets), for a run that must end by itself; returns its exit status and log.
pub fn run_to_exit(cluster: &Cluster, node: &ClusterNode, env: &[(&str, &str)], timeout: Duration) -> (ExitStatus, String) {
    let all = testbed::agent::environment(cluster, node, env);
    let mut c = node.command(testbed::target_dir().join("calico-node"));
    c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").envs(all);
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let log = node.log_dir().join(format!("calico-node-once-{n}.log"));
    let mut d = Daemon::spawn("calico-node", c, &log);
    let start = Instant::now();
    let status = testbed::wait_for(&format!("calico-node on {} with {env:?} to exit", node.name), timeout, || {
        d.exited().ok_or_else(|| format!("still running after {:?}: {}", start.elapsed(), d.log_tail(10)))
    });
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

/// The agent's whole log (every run on this node so far).
pub fn full_log(agent: &Agent) -> String {
    std::fs::read_to_string(&agent.daemon.log).unwrap_or_default()
}
