//! What the agent's bed tests share: the mesh bed (etcd, a pool, an agent per node, sessions up), calicoctl
//! as an operator runs it, Node documents read back from etcd, the BGP sessions' "since" times, a continuous
//! ping that counts what it lost, and one-shot agent runs that must exit.
#![allow(dead_code)] // each test file uses its own part
use datastore::resources::kinds::NODE;
use datastore::store::{Datastore, Key};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use testbed::agent::Agent;
pub use testbed::bird::Session;
use testbed::cluster::{Cluster, ClusterNode, Spec};
use testbed::daemon::Daemon;

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

/// Waits until every node has `block` of node `owner` (0-based): a blackhole there, via it elsewhere.
pub fn wait_block_everywhere(cluster: &Cluster, owner: usize, block: &str) {
    for (i, n) in cluster.nodes.iter().enumerate() {
        if i == owner {
            n.wait_route(block, "blackhole", TIMEOUT);
        } else {
            n.wait_route(block, &format!("via {} dev eth0 proto bird", cluster.nodes[owner].ip), TIMEOUT);
        }
    }
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
    format!("Mesh_{}", ip.replace(['.', ':'], "_"))
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

/// `ping -i 0.01` from a pod netns, running until `stop`; its output in a file.
pub struct Pinger {
    child: Option<Child>,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// What a `Pinger` saw.
#[derive(Debug)]
pub struct Loss {
    pub transmitted: u64,
    pub received: u64,
    /// Echo requests with no reply among those before the last answered one: the packets the fault lost.
    pub lost: u64,
    /// Requests after the last reply (in flight when ping stopped): not counted as lost.
    pub tail: u64,
}

impl Pinger {
    pub fn start(netns: &str, to: &str) -> Pinger {
        let dir = tempfile::tempdir().expect("ping dir");
        let out = dir.path().join("ping.out");
        let file = std::fs::File::create(&out).expect("ping output");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", netns, "ping", "-n", "-i", "0.01", to]).stdin(Stdio::null()).stdout(file).stderr(Stdio::null());
        // SAFETY: one prctl between fork and exec: the ping dies with the test thread.
        unsafe {
            c.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from));
        }
        let p = Pinger { child: Some(c.spawn().expect("start ping")), out, _dir: dir };
        // Flowing before the fault: a first run of replies.
        p.wait_replies(20);
        p
    }

    fn replies(&self) -> Vec<u64> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().filter_map(|l| l.split("icmp_seq=").nth(1)?.split_whitespace().next()?.parse().ok()).collect()
    }

    /// Waits until `more` replies beyond those seen now have come (traffic flows).
    pub fn wait_replies(&self, more: usize) {
        let now = self.replies().len();
        testbed::wait_for(&format!("{more} more ping replies"), TIMEOUT, || {
            let n = self.replies().len();
            if n >= now + more {
                Ok(())
            } else {
                Err(format!("{} new replies", n - now))
            }
        });
    }

    /// Stops the ping (SIGINT: it prints its summary) and counts.
    pub fn stop(mut self) -> Loss {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT);
        let _ = child.wait();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let transmitted = text.lines().find_map(|l| l.split(" packets transmitted").next().filter(|_| l.contains("packets transmitted")));
        let transmitted: u64 = transmitted.and_then(|t| t.trim().parse().ok()).expect("ping summary");
        let mut seqs = self.replies();
        seqs.sort_unstable();
        seqs.dedup();
        let last = seqs.last().copied().unwrap_or(0);
        Loss { transmitted, received: seqs.len() as u64, lost: last - seqs.len() as u64, tail: transmitted.saturating_sub(last) }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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
