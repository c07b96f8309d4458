//! One container meeting more than one CNI call: an attachment is (network, container ID, interface). A second
//! interface beside the first, DEL of an interface never added, a late DEL of an old sandbox meeting the new
//! one in a reused netns, refused ADDs that must give back exactly what they took, CHECK and GC by interface.
//! Each runs through the built cni-calico with cni-ipam in-process and exec'd on the local store, and on etcd.
mod support;
use common::attachment::{Attachment, Pod};
use serde_json::{json, Value};
use std::time::Duration;
use support::*;
use testbed::etcd::{self, Etcd};

const NET: &str = "crs-att";
const POOL: &str = "10.131.0.0/24";

/// Where the network's IPAM keeps its records.
#[derive(Clone)]
enum Store {
    InProcess,
    Exec,
    Etcd(String),
}

struct Net<'a> {
    node: &'a Node,
    store: Store,
    conf: Value,
}

fn k8s(pod: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}")
}

impl<'a> Net<'a> {
    fn new(node: &'a Node, store: Store) -> Net<'a> {
        let mut conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "cni-calico",
            "ipam": {"type": "cni-ipam", "nodename": "node-a", "ipv4_pools": ["att"]}});
        match &store {
            Store::InProcess => conf["ipam"]["local_store_dir"] = node.path("store").display().to_string().into(),
            Store::Exec => {
                conf["ipam"]["local_store_dir"] = node.path("store").display().to_string().into();
                conf["exec_ipam"] = true.into();
            }
            Store::Etcd(eps) => {
                conf["datastore_type"] = "etcdv3".into();
                conf["etcd_endpoints"] = eps.clone().into();
                conf["ipam"]["ipam_lock_file"] = node.path("ipam.lock").display().to_string().into();
            }
        }
        let net = Net { node, store, conf };
        net.cli(&["pool", "add", "--name", "att", "--cidr", POOL, "--block-size", "26"]);
        net
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_raw(args);
        assert!(out.status.success(), "cni-ipam {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cli_raw(&self, args: &[&str]) -> std::process::Output {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.node.name]).arg(target_dir().join("cni-ipam"));
        match &self.store {
            Store::InProcess | Store::Exec => c.arg("--store").arg(self.node.path("store")),
            Store::Etcd(eps) => c.args(["--etcd-endpoints", eps]),
        };
        c.args(args).output().expect("cni-ipam")
    }

    fn run(&self, cmd: &str, cid: &str, pod: &str, ifname: &str, args: &str, prev: Option<&Value>) -> Outcome {
        let mut conf = self.conf.clone();
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        self.node.run("cni-calico", cmd, cid, Some(pod), ifname, &[("CNI_ARGS", args)], &conf)
    }

    /// The handle holding `ip`, if any.
    fn holder(&self, ip: &str) -> Option<String> {
        let out = self.cli(&["show", "--ip", ip, "-o", "json"]);
        serde_json::from_str::<Value>(&out).ok().and_then(|v| v["handle"].as_str().map(str::to_string))
    }

    fn in_use(&self) -> u64 {
        let v: Value = serde_json::from_str(&self.cli(&["show", "-o", "json"])).expect("show json");
        v["pools"].as_array().unwrap().iter().map(|p| p["inUse"].as_str().unwrap().parse::<u64>().unwrap()).sum()
    }

    /// `cni-ipam check --links` in the node's namespace: no problem, and what is unfinished.
    fn check(&self) -> Value {
        let out = self.cli_raw(&["check", "--node", "node-a", "--links", "-o", "json"]);
        let report: Value = serde_json::from_slice(&out.stdout).expect("check report");
        assert!(out.status.success(), "check found problems: {report:#}");
        report
    }
}

fn addr(result: &Value) -> String {
    result["ips"][0]["address"].as_str().unwrap().trim_end_matches("/32").to_string()
}

fn handle(cid: &str, ifname: &str) -> String {
    Attachment { network: NET.into(), container_id: cid.into(), ifname: ifname.into(), pod: None }.handle_id()
}

fn host_veth(cid: &str, ifname: &str, pod: Option<&str>) -> String {
    let pod = pod.map(|p| Pod { namespace: "default".into(), name: p.into() });
    Attachment { network: NET.into(), container_id: cid.into(), ifname: ifname.into(), pod }.host_veth_with("cali")
}

/// Runs `f` once per store: cni-ipam in-process and exec'd on the local store, and exec'd on etcd.
fn on_every_store(test: &str, f: impl Fn(&mut Node, Store)) {
    if !root_or_skip(test) {
        return;
    }
    for store in [Store::InProcess, Store::Exec] {
        f(&mut Node::new("att"), store);
    }
    if etcd::available(test) {
        let etcd = Etcd::start(1);
        f(&mut Node::new("atte"), Store::Etcd(etcd.endpoints_csv()));
    }
}

#[test]
fn a_second_interface_works_beside_the_first() {
    on_every_store("a_second_interface_works_beside_the_first", |node, store| {
        let pod = node.pod();
        let net = Net::new(node, store);
        let args = k8s("web");
        let eth0 = net.run("ADD", "c1", &pod, "eth0", &args, None).ok().json;
        let eth1 = net.run("ADD", "c1", &pod, "eth1", &args, None).ok().json;
        let (a0, a1) = (addr(&eth0), addr(&eth1));
        assert_ne!(a0, a1, "each interface its own address");
        let (h0, h1) = (host_veth("c1", "eth0", Some("web")), host_veth("c1", "eth1", Some("web")));
        assert_eq!(eth0["interfaces"][0]["name"], h0.as_str());
        assert_eq!(eth1["interfaces"][0]["name"], h1.as_str());
        for (ifname, a) in [("eth0", &a0), ("eth1", &a1)] {
            assert!(node.ip_in(&pod, &["-o", "addr", "show", "dev", ifname]).contains(&format!("{a}/32")), "{ifname} lost {a}");
            assert!(node.ping(&node.name, a, Duration::from_secs(3)), "{a} ({ifname}) not reachable");
        }
        // eth0 keeps the main table; eth1 answers from its own table, chosen by its address.
        let rules = node.ip_in(&pod, &["rule"]);
        assert!(rules.contains(&format!("from {a1} lookup")) && !rules.contains(&format!("from {a0} ")), "{rules}");
        net.run("CHECK", "c1", &pod, "eth0", &args, Some(&eth0)).ok();
        net.run("CHECK", "c1", &pod, "eth1", &args, Some(&eth1)).ok();
        assert_eq!(net.check()["attachments"], 2);

        // DEL of an interface that was never added takes nothing.
        net.run("DEL", "c1", &pod, "eth2", &args, None).ok();
        assert_eq!(net.in_use(), 2);

        net.run("DEL", "c1", &pod, "eth1", &args, Some(&eth1)).ok();
        assert!(!try_ip(&["-n", &pod, "link", "show", "eth1"]) && !try_ip(&["-n", &node.name, "link", "show", &h1]));
        assert!(!node.ip_in(&pod, &["rule"]).contains(&format!("from {a1} ")), "eth1's rule outlived it");
        assert!(node.ip_in(&pod, &["-o", "addr", "show", "dev", "eth0"]).contains(&format!("{a0}/32")), "eth0 lost its address");
        assert!(node.ping(&node.name, &a0, Duration::from_secs(3)), "eth0 unreachable after DEL of eth1");
        assert_eq!(net.holder(&a0), Some(handle("c1", "eth0")));
        assert_eq!(net.holder(&a1), None, "eth1's address released");
        net.run("CHECK", "c1", &pod, "eth0", &args, Some(&eth0)).ok();

        // Again DEL of eth1 (idempotent) and then eth0: nothing left.
        net.run("DEL", "c1", &pod, "eth1", &args, Some(&eth1)).ok();
        net.run("DEL", "c1", &pod, "eth0", &args, Some(&eth0)).ok();
        assert_eq!(net.in_use(), 0);
        assert_eq!(net.check()["attachments"], 0);
    });
}

#[test]
fn a_late_del_of_an_old_sandbox_leaves_the_new_one_alone() {
    on_every_store("a_late_del_of_an_old_sandbox_leaves_the_new_one_alone", |node, store| {
        let pod = node.pod();
        let net = Net::new(node, store);
        let args = k8s("db");
        let x = net.run("ADD", "sandbox-x", &pod, "eth0", &args, None).ok().json;
        // Sandbox x dies with its netns; the runtime makes sandbox y of the same pod at the same netns path.
        ip(&["netns", "del", &pod]);
        ip(&["netns", "add", &pod]);
        let y = net.run("ADD", "sandbox-y", &pod, "eth0", &args, None).ok().json;
        assert_eq!(x["interfaces"][0]["name"], y["interfaces"][0]["name"], "one pod, one host veth name");
        let (ax, ay) = (addr(&x), addr(&y));

        // x's DEL arrives late, with the netns path it was given.
        net.run("DEL", "sandbox-x", &pod, "eth0", &args, Some(&x)).ok();
        assert!(node.ip_in(&pod, &["-o", "addr", "show", "dev", "eth0"]).contains(&format!("{ay}/32")), "y's interface torn down");
        assert!(node.ping(&node.name, &ay, Duration::from_secs(3)), "y unreachable after x's DEL");
        assert_eq!(net.holder(&ay), Some(handle("sandbox-y", "eth0")), "y's address released");
        assert_eq!(net.holder(&ax), None, "x's address kept");
        net.run("CHECK", "sandbox-y", &pod, "eth0", &args, Some(&y)).ok();
        // A CHECK for the old sandbox is told whose the interface is now.
        let out = net.run("CHECK", "sandbox-x", &pod, "eth0", &args, Some(&x));
        assert_ne!(out.code, 0);
        assert!(out.stdout.contains("sandbox-y"), "{}", out.stdout);
        net.check();

        net.run("DEL", "sandbox-y", &pod, "eth0", &args, Some(&y)).ok();
        assert_eq!(net.in_use(), 0);
        assert_eq!(net.check()["attachments"], 0);
    });
}

#[test]
fn a_refused_add_gives_back_exactly_what_it_took() {
    on_every_store("a_refused_add_gives_back_exactly_what_it_took", |node, store| {
        let pod = node.pod();
        let net = Net::new(node, store);
        let first = net.run("ADD", "live", &pod, "eth0", "", None).ok().json;
        let a = addr(&first);
        // The same attachment again: refused, and the live one keeps its address and record.
        let again = net.run("ADD", "live", &pod, "eth0", "", None).err(999);
        assert!(again.stdout.contains("eth0 already exists"), "{}", again.stdout);
        assert_eq!(net.in_use(), 1, "a repeated ADD took an address");
        // Another container into the netns whose eth0 is live: refused, and only its own address goes back.
        let other = net.run("ADD", "intruder", &pod, "eth0", "", None).err(999);
        assert!(other.stdout.contains("container live"), "{}", other.stdout);
        assert_eq!(net.in_use(), 1, "the refused ADD kept its address");
        assert_eq!(net.holder(&a), Some(handle("live", "eth0")));
        assert!(node.ping(&node.name, &a, Duration::from_secs(3)));
        net.run("CHECK", "live", &pod, "eth0", "", Some(&first)).ok();
        net.check();
        // The intruder's DEL (a runtime cleaning up its failed ADD) leaves the live interface alone.
        net.run("DEL", "intruder", &pod, "eth0", "", None).ok();
        assert!(node.ping(&node.name, &a, Duration::from_secs(3)), "the intruder's DEL tore the live interface down");
        net.run("CHECK", "live", &pod, "eth0", "", Some(&first)).ok();
        net.run("DEL", "live", &pod, "eth0", "", Some(&first)).ok();
        assert_eq!(net.in_use(), 0);
    });
}

#[test]
fn gc_keeps_exactly_the_valid_interfaces() {
    on_every_store("gc_keeps_exactly_the_valid_interfaces", |node, store| {
        let (p1, p2) = (node.pod(), node.pod());
        let net = Net::new(node, store);
        let keep = net.run("ADD", "g1", &p1, "eth0", "", None).ok().json;
        let stale1 = net.run("ADD", "g1", &p1, "net1", "", None).ok().json;
        let stale2 = net.run("ADD", "g2", &p2, "eth0", "", None).ok().json;
        let mut conf = net.conf.clone();
        conf["cniVersion"] = "1.1.0".into();
        conf["cni.dev/valid-attachments"] = json!([{"containerID": "g1", "ifname": "eth0"}]);
        node.run_raw("cni-calico", &[("CNI_COMMAND", "GC")], &[], conf.to_string().as_bytes()).ok();
        assert_eq!(net.holder(&addr(&keep)), Some(handle("g1", "eth0")));
        assert_eq!(net.holder(&addr(&stale1)), None, "g1's net1 is not valid");
        assert_eq!(net.holder(&addr(&stale2)), None, "g2 is gone");
        assert_eq!(net.check()["attachments"], 1, "the stale attachments' records went with them");
        net.run("DEL", "g1", &p1, "eth0", "", Some(&keep)).ok();
        assert_eq!(net.in_use(), 0);
    });
}
