//! The plugins being compared, all called the same way (env + stdin from the node netns), and the floor:
//! cni-calico's own netlink sequence run in-process, with no process start at all. The etcd contender brings
//! its own single-member etcd, fresh like the local store's directory, stopped when the contender drops.
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testbed::etcd::Etcd;
use testbed::{Node, Outcome};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    CalicoHostLocal,
    CalicoIpam,
    CalicoIpamEtcd,
    PtpHostLocal,
    Floor,
    /// One start of the plugin binary (CNI VERSION) through the same harness: what any exec'd plugin pays
    /// before it does anything, next to the in-process floor.
    ProcessStart,
    /// cni-calico + cni-ipam (local store) from another build (`CRS_BASELINE_DIR`), interleaved with this one:
    /// a before/after comparison under the same load.
    Baseline,
}

/// Where the baseline build's cni-calico is, if a baseline is wanted.
pub fn baseline_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("CRS_BASELINE_DIR").map(Into::into)
}

impl Kind {
    /// A reference row, not a plugin: no DEL, no RSS, no burst.
    pub fn is_reference(self) -> bool {
        matches!(self, Kind::Floor | Kind::ProcessStart)
    }
}

pub struct Contender {
    pub kind: Kind,
    pub label: &'static str,
    pub conf: Value,
    /// Second octet of this contender's addresses, so contenders never collide.
    pub octet: u8,
    /// The etcd serving `CalicoIpamEtcd`.
    pub etcd: Option<Etcd>,
}

pub fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::CalicoHostLocal => "cni-calico + host-local",
        Kind::CalicoIpam => "cni-calico + cni-ipam (local store)",
        Kind::CalicoIpamEtcd => "cni-calico + cni-ipam (etcd store)",
        Kind::PtpHostLocal => "ptp + host-local (Debian, reference)",
        Kind::Floor => "floor: cni-calico's netlink ops in-process",
        Kind::ProcessStart => "process start: cni-calico VERSION, same harness",
        Kind::Baseline => "baseline build: cni-calico + cni-ipam (local store)",
    }
}

/// One measured call.
pub struct Sample {
    pub elapsed: Duration,
    pub max_rss_kb: i64,
    pub cpu: Duration,
}

impl Contender {
    pub fn new(kind: Kind, node: &Node, octet: u8) -> Contender {
        let subnet = format!("10.{octet}.0.0/16");
        let host_local = |net: &str| json!({"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": node.path(&format!("ipam-{net}"))});
        let etcd = (kind == Kind::CalicoIpamEtcd).then(|| Etcd::start(1));
        let conf = match kind {
            Kind::CalicoHostLocal => json!({"cniVersion": "1.0.0", "name": "b-calico-hl", "type": "cni-calico", "ipam": host_local("calico")}),
            Kind::CalicoIpam => json!({"cniVersion": "1.0.0", "name": "b-calico-ipam", "type": "cni-calico",
                "ipam": {"type": "cni-ipam", "local_store_dir": node.path("store"), "nodename": "bench-node", "ipv4_pools": ["bench"]}}),
            // Calico's node-local lock (one plugin run at a time per node) is part of the etcd path: kept, in the
            // node's dir rather than /var/run/calico.
            Kind::CalicoIpamEtcd => json!({"cniVersion": "1.0.0", "name": "b-calico-etcd", "type": "cni-calico",
                "ipam": {"type": "cni-ipam", "datastore_type": "etcdv3", "etcd_endpoints": etcd.as_ref().map(Etcd::endpoints_csv),
                         "ipam_lock_file": node.path("ipam.lock"), "nodename": "bench-node", "ipv4_pools": ["bench"]}}),
            Kind::PtpHostLocal => {
                json!({"cniVersion": "1.0.0", "name": "b-ptp", "type": "ptp", "ipMasq": false, "mtu": 1500, "ipam": host_local("ptp")})
            }
            Kind::Baseline => {
                if let Some(dir) = baseline_dir() {
                    node.install("cni-calico-baseline", &dir.join("cni-calico"));
                }
                json!({"cniVersion": "1.0.0", "name": "b-calico-base", "type": "cni-calico-baseline",
                    "ipam": {"type": "cni-ipam", "local_store_dir": node.path("store-base"), "nodename": "bench-node", "ipv4_pools": ["bench"]}})
            }
            Kind::Floor => Value::Null,
            Kind::ProcessStart => json!({"cniVersion": "1.0.0"}),
        };
        let store = match &etcd {
            Some(etcd) => Some(vec!["--etcd-endpoints".into(), etcd.endpoints_csv()]),
            None if kind == Kind::CalicoIpam => Some(vec!["--store".into(), node.path("store").display().to_string()]),
            None if kind == Kind::Baseline => Some(vec!["--store".into(), node.path("store-base").display().to_string()]),
            None => None,
        };
        if let Some(store) = store {
            ipam_cli(&store, &["pool", "add", "--name", "bench", "--cidr", &subnet, "--block-size", "26"]);
            // Growth runs put up to 10k addresses on this one node: more blocks than the default 20.
            ipam_cli(&store, &["config", "set", "--strict-affinity", "true", "--max-blocks-per-host", "1000"]);
        }
        Contender { kind, label: label(kind), conf, octet, etcd }
    }

    /// Allocates `n` addresses through the IPAM plugin alone (no interfaces), as earlier pods of this node
    /// would have, with `workers` processes at a time.
    pub fn prefill(&self, node: &Node, n: usize, workers: usize) {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let stdin = self.conf.to_string();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let cid = format!("fill{i:07}");
                    let env = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", cid.as_str()), ("CNI_NETNS", "/nonexistent"), ("CNI_IFNAME", "eth0")];
                    let out = node.run_raw("cni-ipam", &env, &[], stdin.as_bytes());
                    assert_eq!(out.code, 0, "prefill {i}: {}", out.stdout);
                });
            }
        });
    }

    fn plugin(&self) -> &'static str {
        match self.kind {
            Kind::PtpHostLocal => "ptp",
            Kind::Baseline => "cni-calico-baseline",
            _ => "cni-calico",
        }
    }

    /// ADD for pod `i` in netns `pod`; returns the sample and the result (the prevResult of its DEL).
    pub fn add(&self, node: &Node, i: usize, pod: &str) -> (Sample, Value) {
        if self.kind == Kind::Floor {
            let ip: std::net::IpAddr = std::net::Ipv4Addr::new(10, self.octet, (i / 250) as u8, (i % 250 + 2) as u8).into();
            let d = floor_add(node, pod, ip, &self.host_if(i));
            return (Sample { elapsed: d, max_rss_kb: 0, cpu: Duration::ZERO }, Value::Null);
        }
        if self.kind == Kind::ProcessStart {
            let out = node.run(self.plugin(), "VERSION", &self.cid(i), Some(pod), "eth0", &[], &self.conf);
            return (checked(out, self.label, "VERSION").0, Value::Null);
        }
        let out = node.run(self.plugin(), "ADD", &self.cid(i), Some(pod), "eth0", &[], &self.conf);
        let res = checked(out, self.label, "ADD");
        (res.0, res.1)
    }

    /// Peak RSS (KiB) of the plugin processes for one ADD, measured under GNU time; then undone.
    pub fn add_rss(&self, node: &Node, i: usize, pod: &str) -> i64 {
        let out = node.run_for_rss(self.plugin(), "ADD", &self.cid(i), Some(pod), "eth0", &self.conf);
        let (sample, prev) = checked(out, self.label, "ADD");
        self.del(node, i, pod, &prev);
        sample.max_rss_kb
    }

    pub fn del(&self, node: &Node, i: usize, pod: &str, prev: &Value) -> Sample {
        if self.kind == Kind::Floor {
            let d = floor_del(node, pod);
            return Sample { elapsed: d, max_rss_kb: 0, cpu: Duration::ZERO };
        }
        if self.kind == Kind::ProcessStart {
            return Sample { elapsed: Duration::ZERO, max_rss_kb: 0, cpu: Duration::ZERO };
        }
        let mut conf = self.conf.clone();
        conf["prevResult"] = prev.clone();
        checked(node.run(self.plugin(), "DEL", &self.cid(i), Some(pod), "eth0", &[], &conf), self.label, "DEL").0
    }

    fn cid(&self, i: usize) -> String {
        format!("b{}x{i:05}", self.octet)
    }

    fn host_if(&self, i: usize) -> String {
        format!("cali{}", self.cid(i))
    }
}

/// The operator CLI against the contender's store (`store`: its store flags).
fn ipam_cli(store: &[String], args: &[&str]) {
    let out = std::process::Command::new(testbed::target_dir().join("cni-ipam")).args(store).args(args).output().expect("cni-ipam");
    assert!(out.status.success(), "cni-ipam {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn checked(out: Outcome, label: &str, verb: &str) -> (Sample, Value) {
    assert_eq!(out.code, 0, "{label} {verb} failed: {} {}", out.stdout, out.stderr);
    (Sample { elapsed: out.elapsed, max_rss_kb: out.max_rss_kb, cpu: out.cpu }, out.json)
}

fn node_ns(node: &Node) -> common::netns::NetNs {
    common::netns::NetNs::open(std::path::Path::new(&format!("/run/netns/{}", node.name))).expect("node netns")
}

fn floor_add(node: &Node, pod: &str, ip: std::net::IpAddr, host_if: &str) -> Duration {
    let pod_ns = common::netns::NetNs::open(std::path::Path::new(&format!("/run/netns/{pod}"))).expect("pod netns");
    let plan = cni_calico::dataplane::Plan {
        host_if: host_if.to_string(),
        ifname: "eth0".into(),
        owner: "floor".into(),
        maybe_v6: false,
        mtu: 1500,
        ips: vec![ip],
        allow_ip_forwarding: false,
    };
    node_ns(node)
        .run(|| {
            let t = Instant::now();
            cni_calico::dataplane::setup(&pod_ns, &plan).expect("floor setup");
            t.elapsed()
        })
        .expect("enter node netns")
}

fn floor_del(node: &Node, pod: &str) -> Duration {
    let pod_ns = common::netns::NetNs::open(std::path::Path::new(&format!("/run/netns/{pod}"))).expect("pod netns");
    node_ns(node)
        .run(|| {
            let t = Instant::now();
            cni_calico::dataplane::teardown(&pod_ns, "eth0", "floor", || {}).expect("floor teardown");
            t.elapsed()
        })
        .expect("enter node netns")
}
