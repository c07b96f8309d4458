//! A cluster bed for the node agent's tests (issue 13): node hosts (`crate::host::Host`: own netns, mount and UTS
//! namespaces, private /etc/calico, /var/lib/calico, /var/run/calico) whose `eth0` sits on a Linux bridge in a
//! "fabric" netns; a router host on every fabric that knows only the node subnets (no pool) and is every host's
//! default route, as a real host has one (the proxy ARP of a pod's gateway 169.254.1.1 answers only when the
//! node has a route for it), and joins the subnets when there are several; extra hosts on a fabric (a ToR);
//! one etcd on unix sockets, reachable from every host through the file system; pods on a node through
//! cni-calico, run as a runtime runs it. Every piece has a guard.
//!
//! Addresses: subnet `s` is 10.250.s.0/24 and fd00:250:s::/64; node `n` (1-based, numbered across subnets) is
//! 10.250.s.n and fd00:250:s::n (host name `node-n`); the router is .254 / ::254 on every subnet and the nodes'
//! default route; extra host `i` is .20i / ::20i.
use crate::etcd::Etcd;
use crate::host::{Host, NETNS_DIR};
use crate::Outcome;
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A node's private dirs: Calico's state paths.
pub const NODE_DIRS: [&str; 3] = ["/etc/calico", "/var/lib/calico", "/var/run/calico"];

/// What to build.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Nodes per subnet.
    pub subnets: Vec<usize>,
    pub etcd: bool,
}

impl Spec {
    /// `n` nodes on one subnet, no etcd.
    pub fn nodes(n: usize) -> Spec {
        Spec { subnets: vec![n], etcd: false }
    }

    /// Nodes in several subnets behind a router: `Spec::subnets(&[2, 1])`.
    pub fn subnets(counts: &[usize]) -> Spec {
        Spec { subnets: counts.to_vec(), etcd: false }
    }

    pub fn with_etcd(mut self) -> Spec {
        self.etcd = true;
        self
    }
}

pub fn subnet_v4(s: usize) -> String {
    format!("10.250.{s}.0/24")
}

pub fn subnet_v6(s: usize) -> String {
    format!("fd00:250:{s}::/64")
}

/// The router's address on subnet `s` (the nodes' gateway there).
pub fn router_ip(s: usize) -> (String, String) {
    (format!("10.250.{s}.254"), format!("fd00:250:{s}::254"))
}

pub struct Cluster {
    /// Prefix of every netns name of this bed (`crs-bed-<pid>-<seq>`).
    pub prefix: String,
    pub nodes: Vec<ClusterNode>,
    /// Hosts added with `add_host` (a ToR...).
    pub hosts: Vec<Attached>,
    /// The default route of every host; routes between the subnets.
    pub router: Host,
    pub etcd: Option<Etcd>,
    // Last: the bridges go once every host is gone.
    fabrics: Vec<Fabric>,
}

impl Cluster {
    /// Builds the bed of `spec`: fabrics, nodes (forwarding on, v4 and v6 addresses), router, etcd.
    pub fn new(spec: &Spec) -> Cluster {
        let n = crate::SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("crs-bed-{}-{n}", std::process::id());
        let fabrics: Vec<Fabric> = (0..spec.subnets.len()).map(|s| Fabric::new(&format!("{prefix}-f{s}"))).collect();
        let router = Host::new(&format!("{prefix}-r"), "router", &[]);
        for (s, fabric) in fabrics.iter().enumerate() {
            let (v4, v6) = router_ip(s);
            plug(&router, &format!("eth{s}"), &fabric.netns, "r", &v4, &v6);
        }
        forwarding(&router);
        let mut cluster = Cluster { prefix, nodes: Vec::new(), hosts: Vec::new(), router, etcd: None, fabrics };
        let mut number = 0;
        for (s, count) in spec.subnets.iter().enumerate() {
            for _ in 0..*count {
                number += 1;
                let node = ClusterNode::new(&cluster.prefix, number, s, &cluster.fabrics[s].netns);
                cluster.nodes.push(node);
            }
        }
        if spec.etcd {
            cluster.etcd = Some(Etcd::start(1));
        }
        cluster
    }

    /// A host on subnet `subnet` with `eth0` at 10.250.s.20i (i counts the added hosts from 1), host name `tag`,
    /// private dirs `binds` (e.g. `crate::frr::DIRS` for a ToR), forwarding on, default route via the router.
    pub fn add_host(&mut self, tag: &str, subnet: usize, binds: &[&str]) -> &Attached {
        let i = self.hosts.len() + 1;
        let host = Host::new(&format!("{}-{tag}", self.prefix), tag, binds);
        let (ip, ip6) = (format!("10.250.{subnet}.{}", 200 + i), format!("fd00:250:{subnet}::{}", 200 + i));
        plug(&host, "eth0", &self.fabrics[subnet].netns, &format!("x{i}"), &ip, &ip6);
        default_route(&host, subnet);
        // A ToR routes what it learns.
        forwarding(&host);
        self.hosts.push(Attached { host, subnet, ip, ip6 });
        self.hosts.last().expect("just pushed")
    }

    /// The fabric netns of subnet `s` (bridge `br0`; node n's port is `n<n>`, the router's `r`, host i's `x<i>`).
    pub fn fabric(&self, s: usize) -> &str {
        &self.fabrics[s].netns
    }

    pub fn etcd(&self) -> &Etcd {
        self.etcd.as_ref().expect("this cluster has no etcd (Spec::with_etcd)")
    }

    /// A cni-calico network config over cni-ipam on the cluster's etcd, as a node's conflist holds it: no
    /// nodename, so the plugin finds it as Calico does (/var/lib/calico/nodename, else the host name).
    pub fn calico_conf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "cni-calico",
            "datastore_type": "etcdv3", "etcd_endpoints": self.etcd().endpoints_csv(),
            "ipam": {"type": "cni-ipam"}
        })
    }

    /// Runs the `cni-ipam` operator command on the cluster's etcd (`ipam(&["pool", "add", ...])`); returns stdout.
    pub fn ipam(&self, args: &[&str]) -> String {
        let out = Command::new(crate::target_dir().join("cni-ipam"))
            .env_clear()
            .args(["--etcd-endpoints", &self.etcd().endpoints_csv()])
            .args(args)
            .output()
            .expect("run cni-ipam");
        assert!(out.status.success(), "cni-ipam {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs calicoctl on the cluster's etcd, `stdin` fed to it (for `apply -f -`), as an operator runs it from a
    /// machine of the cluster: a config file naming the etcd (so no /etc/calico/calicoctl.cfg of the machine
    /// is read), nothing else of the environment but PATH.
    pub fn calicoctl(&self, args: &[&str], stdin: &str) -> Outcome {
        let cfg = self.etcd().dir.path().join("calicoctl.cfg");
        if !cfg.exists() {
            let spec = json!({"apiVersion": "projectcalico.org/v3", "kind": "CalicoAPIConfig",
                "spec": {"datastoreType": "etcdv3", "etcdEndpoints": self.etcd().endpoints_csv()}});
            std::fs::write(&cfg, spec.to_string()).expect("write calicoctl.cfg");
        }
        let mut c = Command::new(crate::target_dir().join("calicoctl"));
        c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").arg("--config").arg(&cfg).args(args);
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let start = Instant::now();
        let child = c.spawn().expect("run calicoctl (cargo build -p calicoctl)");
        crate::finish_plugin(start, child, stdin.as_bytes())
    }

    /// `calicoctl` that must succeed; returns its stdout.
    pub fn calicoctl_ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.calicoctl(args, stdin);
        assert_eq!(out.code, 0, "calicoctl {args:?} failed: {}{}", out.stdout, out.stderr);
        out.stdout
    }

    /// `calicoctl apply -f -` of `docs` (JSON documents, one resource each).
    pub fn apply(&self, docs: &[Value]) -> String {
        let text: Vec<String> = docs.iter().map(Value::to_string).collect();
        self.calicoctl_ok(&["apply", "-f", "-"], &text.join("\n---\n"))
    }

    /// What this bed holds on the machine right now, to check after the drop that all of it is gone.
    pub fn footprint(&self) -> Footprint {
        let mut netns: Vec<String> = list_netns().into_iter().filter(|n| n.starts_with(&format!("{}-", self.prefix))).collect();
        netns.sort();
        let net_inodes = netns.iter().filter_map(|n| std::fs::metadata(Path::new(NETNS_DIR).join(n)).ok()).map(|m| m.ino()).collect();
        let hosts = self.nodes.iter().map(|n| &n.host).chain(self.hosts.iter().map(|h| &h.host)).chain([&self.router]);
        let (mut mnt_inodes, mut dirs) = (Vec::new(), Vec::new());
        for h in hosts {
            mnt_inodes.push(h.mount_ns_inode());
            dirs.push(h.dir.path().to_path_buf());
        }
        dirs.extend(self.etcd.as_ref().map(|e| e.dir.path().to_path_buf()));
        Footprint { prefix: self.prefix.clone(), netns, net_inodes, mnt_inodes, dirs, taken: boot_ticks() }
    }
}

/// A fabric netns with bridge `br0`; deleted on drop.
struct Fabric {
    netns: String,
    cleanup: usize,
}

impl Fabric {
    fn new(netns: &str) -> Fabric {
        let cleanup = crate::arm(Box::new({
            let netns = netns.to_string();
            move || {
                crate::try_ip(&["netns", "del", &netns]);
            }
        }));
        crate::ip(&["netns", "add", netns]);
        crate::ip(&["-n", netns, "link", "set", "lo", "up"]);
        // A plain switch: with MLD snooping, a port whose report the bridge missed gets no neighbour solicitations.
        crate::ip(&["-n", netns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
        crate::ip(&["-n", netns, "link", "set", "br0", "up"]);
        Fabric { netns: netns.to_string(), cleanup }
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        crate::try_ip(&["netns", "del", &self.netns]);
        crate::disarm(self.cleanup);
    }
}

/// Links `host` to the bridge of `fabric`: `ifname` on the host (addresses v4/24 and v6/64), `port` on the bridge.
fn plug(host: &Host, ifname: &str, fabric: &str, port: &str, v4: &str, v6: &str) {
    // The peer is made in the fabric directly: moving a link between namespaces costs ~18 ms.
    host.ip(&["link", "add", ifname, "type", "veth", "peer", "name", port, "netns", fabric]);
    crate::ip(&["-n", fabric, "link", "set", port, "master", "br0", "up"]);
    host.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
    // nodad: usable at once (DAD would hold the address "tentative" for a second).
    host.ip(&["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"]);
    host.ip(&["link", "set", ifname, "up"]);
}

fn default_route(host: &Host, subnet: usize) {
    let (v4, v6) = router_ip(subnet);
    host.ip(&["route", "add", "default", "via", &v4]);
    host.ip(&["-6", "route", "add", "default", "via", &v6]);
}

fn forwarding(host: &Host) {
    host.sysctl("net.ipv4.ip_forward", "1");
    host.sysctl("net.ipv6.conf.all.forwarding", "1");
}

/// A node: a host with Calico's private dirs, `eth0` on its subnet's fabric, forwarding on, a CNI bin dir.
pub struct ClusterNode {
    pub host: Host,
    /// 1-based, across subnets; the host name is `node-<number>`.
    pub number: usize,
    pub subnet: usize,
    /// eth0's addresses, without prefix length.
    pub ip: String,
    pub ip6: String,
    /// The node's CNI_PATH: cni-calico, cni-ipam and Debian's reference plugins.
    pub bin: PathBuf,
    pods: Vec<String>,
    cleanup: usize,
}

impl std::ops::Deref for ClusterNode {
    type Target = Host;
    fn deref(&self) -> &Host {
        &self.host
    }
}

/// A pod added with `ClusterNode::add_pod`.
#[derive(Clone, Debug)]
pub struct Pod {
    pub netns: String,
    pub cid: String,
    /// CNI_ARGS it was added with (the same go with DEL).
    pub args: String,
    /// Its first address, without prefix length.
    pub ip: String,
    pub result: Value,
}

impl ClusterNode {
    fn new(prefix: &str, number: usize, subnet: usize, fabric: &str) -> ClusterNode {
        let netns = format!("{prefix}-n{number}");
        let cleanup = crate::arm(Box::new({
            let pods = format!("{netns}-p");
            move || {
                for p in list_netns().into_iter().filter(|n| n.starts_with(&pods)) {
                    crate::try_ip(&["netns", "del", &p]);
                }
            }
        }));
        let host = Host::new(&netns, &format!("node-{number}"), &NODE_DIRS);
        let (ip, ip6) = (format!("10.250.{subnet}.{number}"), format!("fd00:250:{subnet}::{number}"));
        plug(&host, "eth0", fabric, &format!("n{number}"), &ip, &ip6);
        default_route(&host, subnet);
        forwarding(&host);
        let bin = host.dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        for p in ["cni-calico", "cni-ipam"] {
            let from = crate::target_dir().join(p);
            assert!(from.exists(), "{} missing: build it first (cargo build -p {p})", from.display());
            std::os::unix::fs::symlink(&from, bin.join(p)).expect("symlink plugin");
        }
        for p in ["host-local", "loopback", "ptp", "tuning", "portmap"] {
            let from = Path::new("/usr/lib/cni").join(p);
            if from.exists() {
                std::os::unix::fs::symlink(&from, bin.join(p)).expect("symlink plugin");
            }
        }
        ClusterNode { host, number, subnet, ip, ip6, bin, pods: Vec::new(), cleanup }
    }

    /// A new pod netns (`<node netns>-p<i>`); removed with the node.
    pub fn pod(&mut self) -> String {
        let name = format!("{}-p{}", self.netns, self.pods.len());
        crate::ip(&["netns", "add", &name]);
        self.pods.push(name.clone());
        name
    }

    /// Runs `plugin` on the node (its netns, mount and UTS namespaces) the way a runtime does: env + stdin,
    /// CNI_PATH = the node's bin dir.
    #[allow(clippy::too_many_arguments)] // the CNI parameters, one by one, as a runtime passes them
    pub fn run(&self, plugin: &str, cmd: &str, cid: &str, pod: Option<&str>, ifname: &str, extra_env: &[(&str, &str)], stdin: &Value) -> Outcome {
        let netns = pod.map(|p| format!("{NETNS_DIR}/{p}")).unwrap_or_default();
        let env = [("CNI_COMMAND", cmd), ("CNI_CONTAINERID", cid), ("CNI_NETNS", netns.as_str()), ("CNI_IFNAME", ifname)];
        let mut c = self.command(self.bin.join(plugin));
        crate::plugin_env(&mut c, &self.bin, &env, extra_env);
        let start = Instant::now();
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn {plugin} on {}: {e}", self.name));
        crate::finish_plugin(start, child, stdin.to_string().as_bytes())
    }

    /// ADDs pod `name` (namespace `default`) with cni-calico and `conf`; panics unless it succeeds.
    pub fn add_pod(&mut self, conf: &Value, name: &str) -> Pod {
        let netns = self.pod();
        let cid = format!("{}-{name}", self.name);
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}");
        let out = self.run("cni-calico", "ADD", &cid, Some(&netns), "eth0", &[("CNI_ARGS", &args)], conf).ok();
        let ip = out.json["ips"][0]["address"].as_str().unwrap_or_default().split('/').next().unwrap_or_default().to_string();
        assert!(!ip.is_empty(), "ADD {cid} on {}: no address in {}", self.name, out.stdout);
        Pod { netns, cid, args, ip, result: out.json }
    }

    /// DELs `pod` with `conf` (plus the ADD result as prevResult, as libcni sends it).
    pub fn del_pod(&self, conf: &Value, pod: &Pod) -> Outcome {
        let mut conf = conf.clone();
        conf["prevResult"] = pod.result.clone();
        self.run("cni-calico", "DEL", &pod.cid, Some(&pod.netns), "eth0", &[("CNI_ARGS", &pod.args)], &conf)
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        for p in &self.pods {
            crate::try_ip(&["netns", "del", p]);
        }
        crate::disarm(self.cleanup);
        // The host (netns, holder, dirs) goes after this.
    }
}

/// A host added to a fabric with `Cluster::add_host`.
pub struct Attached {
    pub host: Host,
    pub subnet: usize,
    pub ip: String,
    pub ip6: String,
}

impl std::ops::Deref for Attached {
    type Target = Host;
    fn deref(&self) -> &Host {
        &self.host
    }
}

fn list_netns() -> Vec<String> {
    let entries = std::fs::read_dir(NETNS_DIR).into_iter().flatten().flatten();
    entries.map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

/// Clock ticks since boot, the unit of a process's start time in /proc/<pid>/stat.
fn boot_ticks() -> u64 {
    let up: f64 = std::fs::read_to_string("/proc/uptime").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    (up * hz) as u64
}

/// A bed's netns, namespaces and dirs, taken before the drop; `leftovers` lists what is still there after it.
#[derive(Debug)]
pub struct Footprint {
    pub prefix: String,
    pub netns: Vec<String>,
    net_inodes: Vec<u64>,
    mnt_inodes: Vec<u64>,
    dirs: Vec<PathBuf>,
    taken: u64,
}

impl Footprint {
    /// What is left: netns files, processes in the bed's network or mount namespaces (started before the
    /// footprint was taken, so a namespace number reused since by someone else's process is not counted),
    /// mounts on the machine naming the bed, and its dirs.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> =
            list_netns().into_iter().filter(|n| n.starts_with(&format!("{}-", self.prefix))).map(|n| format!("netns {n}")).collect();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
            let ino = |ns: &str| std::fs::metadata(format!("/proc/{pid}/ns/{ns}")).ok().map(|m| m.ino());
            let ours = ino("net").is_some_and(|i| self.net_inodes.contains(&i)) || ino("mnt").is_some_and(|i| self.mnt_inodes.contains(&i));
            if ours && start_ticks(pid).is_some_and(|t| t <= self.taken) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                left.push(format!("process {pid} ({})", comm.trim()));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounts.lines() {
            if line.contains(&format!("{}-", self.prefix)) || self.dirs.iter().any(|d| line.contains(&*d.to_string_lossy())) {
                left.push(format!("mount {line}"));
            }
        }
        left.extend(self.dirs.iter().filter(|d| d.exists()).map(|d| format!("dir {}", d.display())));
        left
    }

    pub fn assert_gone(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "the bed left behind: {left:#?}");
    }
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // starttime is the 22nd field; the fields after the parenthesised command name start at the 3rd.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}
