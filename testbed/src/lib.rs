//! Test and benchmark bed: a "node" netns playing the host (with an uplink, as a real host has), pod netns
//! as containers, and plugin runs exactly as a runtime does them (env + stdin, IPAM found through CNI_PATH).
//! Every namespace and temp dir is removed by a guard, also when the test fails. Needs root.
//! `cluster` builds several such hosts on a shared fabric, with BGP daemons (`bird`, `frr`) for issue 13;
//! `ping::Pinger` counts what a continuous ping loses while a test changes the network.
pub mod agent;
pub mod bird;
pub mod cluster;
pub mod daemon;
pub mod etcd;
pub mod frr;
pub mod host;
pub mod ping;
pub mod probe;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

type Undo = Box<dyn Fn() + Send>;

/// What the live guards would undo on drop, for a panic that aborts instead of unwinding (the release profile
/// sets `panic = "abort"`, so the bench's guards never drop on a panic).
static LIVE: Mutex<BTreeMap<usize, Undo>> = Mutex::new(BTreeMap::new());

fn arm(undo: Undo) -> usize {
    static IDS: AtomicUsize = AtomicUsize::new(0);
    let id = IDS.fetch_add(1, Ordering::SeqCst);
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).insert(id, undo);
    id
}

fn disarm(id: usize) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
}

/// Makes a panic anywhere in this process first print its message, then undo every live guard (namespaces,
/// etcd members and their dirs). For binaries built with `panic = "abort"`; tests unwind and need not call it.
pub fn clean_up_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        // try_lock: the panic may have struck while this thread held the lock; skipping beats deadlocking.
        if let Ok(live) = LIVE.try_lock() {
            // Newest first, as the guards would drop: daemons before the hosts they run on.
            for undo in live.values().rev() {
                undo();
            }
        }
    }));
}

/// An environment of `pairs` for code that reads variables through a `Fn(&str) -> Option<String>` (settings
/// parsers under test).
pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: std::collections::BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| m.get(k).cloned()
}

/// True when the tests may build namespaces; in CI a missing privilege is a failure, not a skip.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test} needs root and CI must run it");
    eprintln!("SKIP {test}: needs root (network namespaces)");
    false
}

/// Polls `probe` (every 10 ms) until it returns `Ok`, for at most `timeout`; panics naming `what` and the
/// probe's last `Err` (the state it saw) on timeout. The way to wait for a session or a route: never a sleep.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(state) if start.elapsed() >= timeout => panic!("timed out after {timeout:?} waiting for {what}: {state}{}", neighbour_table_note()),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// When the kernel's IPv4 neighbour table is (nearly) full, a note saying so: the table is one for all network
/// namespaces (`gc_thresh3`, 1024 by default), so a large bed running beside this one (50 nodes in a mesh)
/// leaves no room for new ARP entries here, and sessions and pings fail with "No route to host" for tens of
/// seconds. Raising `net.ipv4.neigh.default.gc_thresh3` (and `gc_thresh2`) on the machine cures it.
pub fn neighbour_table_note() -> String {
    let entries = std::fs::read_to_string("/proc/net/stat/arp_cache")
        .ok()
        .and_then(|t| t.lines().nth(1).and_then(|l| l.split_whitespace().next()).and_then(|h| u64::from_str_radix(h, 16).ok()));
    let limit = std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3").ok().and_then(|t| t.trim().parse::<u64>().ok());
    match (entries, limit) {
        (Some(e), Some(l)) if e + 16 >= l => format!(
            " (note: the kernel's neighbour table, shared by every netns on the machine, holds {e} entries of gc_thresh3 = {l}: \
             new ARP entries may fail; another bed may be filling it)"
        ),
        _ => String::new(),
    }
}

pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn try_ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Where the workspace's binaries are: CRS_BIN_DIR when set (scripts/release.sh's output), else CARGO_TARGET_DIR or
/// ./target, debug unless CRS_PROFILE says.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let base =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    base.join(std::env::var("CRS_PROFILE").unwrap_or_else(|_| "debug".into()))
}

/// A node netns with an uplink netns (default route through it), pods, a temp dir and a CNI bin dir.
pub struct Node {
    pub name: String,
    pub uplink: String,
    pub pods: Vec<String>,
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    cleanup: usize,
}

impl Node {
    pub fn new(tag: &str) -> Node {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("crs-{tag}-{}-{n}", std::process::id());
        let uplink = format!("{name}-up");
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin dir");
        let cleanup = arm(Box::new({
            let (name, uplink, dir) = (name.clone(), uplink.clone(), dir.path().to_path_buf());
            move || {
                // Pods are named after the node; list them rather than track them here.
                let pods = std::fs::read_dir("/run/netns").into_iter().flatten().flatten();
                let pods = pods.map(|e| e.file_name().to_string_lossy().into_owned()).filter(|p| p.starts_with(&format!("{name}-p")));
                for ns in pods.chain([uplink.clone(), name.clone()]) {
                    try_ip(&["netns", "del", &ns]);
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }));
        let node = Node { name, uplink, pods: Vec::new(), dir, bin, cleanup };
        ip(&["netns", "add", &node.name]);
        ip(&["netns", "add", &node.uplink]);
        ip(&["-n", &node.name, "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", &node.uplink]);
        ip(&["-n", &node.name, "addr", "add", "192.0.2.1/24", "dev", "up0"]);
        ip(&["-n", &node.name, "link", "set", "up0", "up"]);
        ip(&["-n", &node.name, "link", "set", "lo", "up"]);
        ip(&["-n", &node.uplink, "addr", "add", "192.0.2.2/24", "dev", "up1"]);
        ip(&["-n", &node.uplink, "link", "set", "up1", "up"]);
        ip(&["-n", &node.name, "route", "add", "default", "via", "192.0.2.2"]);
        // IPv6 forwarding is only global in the kernel; on a Calico node Felix turns it on, here the test does.
        ip(&["netns", "exec", &node.name, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"]);
        for p in ["cni-calico", "cni-ipam"] {
            node.install(p, &target_dir().join(p));
        }
        for p in ["host-local", "tuning", "portmap", "ptp"] {
            node.install(p, &Path::new("/usr/lib/cni").join(p));
        }
        node
    }

    /// Makes `from` available as plugin `name` in this node's CNI_PATH.
    pub fn install(&self, name: &str, from: &Path) {
        if from.exists() {
            std::os::unix::fs::symlink(from, self.bin.join(name)).expect("symlink plugin");
        }
    }

    /// A new pod netns; removed with the node.
    pub fn pod(&mut self) -> String {
        let name = format!("{}-p{}", self.name, self.pods.len());
        ip(&["netns", "add", &name]);
        self.pods.push(name.clone());
        name
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `plugin` from the node netns the way a runtime does.
    #[allow(clippy::too_many_arguments)] // the CNI parameters, one by one, as a runtime passes them
    pub fn run(&self, plugin: &str, cmd: &str, cid: &str, pod: Option<&str>, ifname: &str, extra_env: &[(&str, &str)], stdin: &Value) -> Outcome {
        let netns = pod.map(|p| format!("/run/netns/{p}")).unwrap_or_default();
        self.run_raw(
            plugin,
            &[("CNI_COMMAND", cmd), ("CNI_CONTAINERID", cid), ("CNI_NETNS", &netns), ("CNI_IFNAME", ifname)],
            extra_env,
            stdin.to_string().as_bytes(),
        )
    }

    pub fn run_raw(&self, plugin: &str, env: &[(&str, &str)], extra_env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        self.exec(plugin, false, env, extra_env, stdin)
    }

    /// Like `run`, but under GNU time, whose wait4 sees the plugin's own peak RSS. (A child spawned straight
    /// from this process inherits this process's peak RSS in the kernel's accounting, whether forked or
    /// vforked.) Slower: only for measuring process cost.
    pub fn run_for_rss(&self, plugin: &str, cmd: &str, cid: &str, pod: Option<&str>, ifname: &str, stdin: &Value) -> Outcome {
        let netns = pod.map(|p| format!("/run/netns/{p}")).unwrap_or_default();
        let env = [("CNI_COMMAND", cmd), ("CNI_CONTAINERID", cid), ("CNI_NETNS", netns.as_str()), ("CNI_IFNAME", ifname)];
        let mut out = self.exec(plugin, true, &env, &[], stdin.to_string().as_bytes());
        let line = out.stderr.lines().rev().find_map(|l| l.strip_prefix("CRS_RUSAGE ")).unwrap_or("").to_string();
        out.max_rss_kb = line.trim().parse().unwrap_or(-1);
        out
    }

    fn exec(&self, plugin: &str, under_time: bool, env: &[(&str, &str)], extra_env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        let node_ns = std::fs::File::open(format!("/run/netns/{}", self.name)).expect("node netns");
        let mut c = if under_time {
            let mut c = Command::new("/usr/bin/time");
            c.args(["-f", "CRS_RUSAGE %M"]).arg(self.bin.join(plugin));
            c
        } else {
            Command::new(self.bin.join(plugin))
        };
        plugin_env(&mut c, &self.bin, env, extra_env);
        // Spawned from a thread that has entered the node namespace: the child is born there, and std can use
        // posix_spawn (no fork of this process's memory, so the child's peak RSS is its own).
        let (start, child) = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&node_ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter node netns");
                let start = Instant::now();
                (start, c.spawn().expect("spawn plugin"))
            })
            .join()
            .expect("spawner thread")
        });
        finish_plugin(start, child, stdin)
    }

    /// Starts `plugin` from the node netns as `run` does, without waiting (to kill it mid-operation).
    pub fn spawn(&self, plugin: &str, cmd: &str, cid: &str, pod: Option<&str>, ifname: &str, stdin: &Value) -> std::process::Child {
        let node_ns = std::fs::File::open(format!("/run/netns/{}", self.name)).expect("node netns");
        let netns = pod.map(|p| format!("/run/netns/{p}")).unwrap_or_default();
        let mut c = Command::new(self.bin.join(plugin));
        plugin_env(&mut c, &self.bin, &[("CNI_COMMAND", cmd), ("CNI_CONTAINERID", cid), ("CNI_NETNS", &netns), ("CNI_IFNAME", ifname)], &[]);
        let mut child = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&node_ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter node netns");
                c.spawn().expect("spawn plugin")
            })
            .join()
            .expect("spawner thread")
        });
        // Small enough for the pipe buffer: written whole before the plugin reads it.
        let _ = child.stdin.take().expect("stdin").write_all(stdin.to_string().as_bytes());
        child
    }

    /// `ip -n <ns> ...` output.
    pub fn ip_in(&self, ns: &str, args: &[&str]) -> String {
        let mut a = vec!["-n", ns];
        a.extend_from_slice(args);
        ip(&a)
    }

    pub fn sysctl(&self, ns: &str, key: &str) -> String {
        let out = Command::new("ip").args(["netns", "exec", ns, "cat", &format!("/proc/sys/{}", key.replace('.', "/"))]).output().expect("sysctl");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// One ping from `ns` to `addr`, retried for at most `deadline` (the first ARP/ND may take a moment).
    pub fn ping(&self, ns: &str, addr: &str, deadline: Duration) -> bool {
        ping(ns, addr, deadline)
    }
}

/// A plugin's environment as a runtime sets it: nothing inherited but PATH, CNI_PATH = `bin`, then `env`.
pub(crate) fn plugin_env(c: &mut Command, bin: &Path, env: &[(&str, &str)], extra_env: &[(&str, &str)]) {
    c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("CNI_PATH", bin);
    for (k, v) in env.iter().chain(extra_env) {
        c.env(k, v);
    }
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
}

/// Feeds a spawned plugin its stdin, collects its output and reaps it with its resource usage.
pub(crate) fn finish_plugin(start: Instant, mut child: std::process::Child, stdin: &[u8]) -> Outcome {
    // A plugin that rejects its env exits before reading stdin: a broken pipe here is its answer, not ours.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    // Plugins print little on stderr, so reading stdout to its end first cannot fill the stderr pipe.
    let _ = child.stdout.take().expect("stdout").read_to_string(&mut stdout);
    let _ = child.stderr.take().expect("stderr").read_to_string(&mut stderr);
    let (status, usage) = wait4(child.id() as i32);
    Outcome {
        code: status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr,
        elapsed: start.elapsed(),
        max_rss_kb: usage.ru_maxrss,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    }
}

/// One ping from netns `ns` to `addr`, retried for at most `deadline` (the first ARP/ND may take a moment).
pub fn ping(ns: &str, addr: &str, deadline: Duration) -> bool {
    let start = Instant::now();
    let v6 = addr.contains(':');
    for _ in 0..20 {
        let ok = Command::new("ip")
            .args(["netns", "exec", ns, "ping", if v6 { "-6" } else { "-4" }, "-c1", "-W1", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return true;
        }
        if start.elapsed() > deadline {
            break;
        }
    }
    false
}

impl Drop for Node {
    fn drop(&mut self) {
        for p in self.pods.iter().chain([&self.uplink, &self.name]) {
            let _ = try_ip(&["netns", "del", p]);
        }
        disarm(self.cleanup);
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// Peak RSS from the kernel's accounting: only meaningful from `run_for_rss` (see there).
    pub max_rss_kb: i64,
    /// User + system CPU time of the plugin and its children.
    pub cpu: Duration,
}

/// Reaps `pid` with its resource usage (which includes the children it reaped itself).
fn wait4(pid: i32) -> (std::process::ExitStatus, nix::libc::rusage) {
    let mut status = 0;
    // SAFETY: rusage is plain old data, zero is a valid value; wait4 fills it in.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child; status and usage point to live locals.
        let r = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid || std::io::Error::last_os_error().raw_os_error() != Some(nix::libc::EINTR) {
            break;
        }
    }
    (std::process::ExitStatus::from_raw(status), usage)
}

fn tv(t: nix::libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

impl Outcome {
    pub fn ok(self) -> Outcome {
        assert_eq!(self.code, 0, "plugin failed: stdout={} stderr={}", self.stdout, self.stderr);
        self
    }

    pub fn err(self, code: u64) -> Outcome {
        assert_ne!(self.code, 0, "plugin should fail: {}", self.stdout);
        assert_eq!(self.json["code"].as_u64(), Some(code), "wrong error: {} stderr={}", self.stdout, self.stderr);
        assert!(!self.json["msg"].as_str().unwrap_or("").is_empty(), "error without msg: {}", self.stdout);
        self
    }
}
