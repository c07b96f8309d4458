//! libcni 1.1 (Debian's golang-github-appc-cni-dev), the library under containerd, podman and cri-o, driving our
//! conflist through minicnitool (a cnitool-like client built offline from e2e/minicnitool): ADD, CHECK, DEL
//! with its result cache, and CHECK failing, naming what is missing, after someone deletes the host route.
use e2e::bed::{Bed, NET};
use e2e::proc::{self, Out};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Builds minicnitool once per `cargo test` into the target dir (Go's build cache keeps rebuilds ~1 s).
fn minicnitool() -> PathBuf {
    let out = testbed::target_dir().join("e2e-go");
    let mut c = Command::new("bash");
    c.arg(e2e::script("build-minicnitool.sh")).arg(&out);
    proc::run(&mut c, Duration::from_secs(300)).ok();
    out.join("minicnitool")
}

struct Client<'a> {
    tool: PathBuf,
    bed: &'a Bed,
    cache: PathBuf,
}

impl Client<'_> {
    /// `minicnitool VERB calico-e2e /run/netns/POD` from the node netns, as a runtime there would run it.
    fn run(&self, verb: &str, pod: &str) -> Out {
        self.run_as(verb, pod, "libcni-e2e-0001")
    }

    fn run_as(&self, verb: &str, pod: &str, container_id: &str) -> Out {
        self.run_if(verb, pod, container_id, "eth0")
    }

    fn run_if(&self, verb: &str, pod: &str, container_id: &str, ifname: &str) -> Out {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.bed.node.name))
            .arg("--")
            .arg(&self.tool)
            .args([verb, NET, &format!("/run/netns/{pod}")])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NETCONFPATH", &self.bed.netd)
            .env("CNI_PATH", &self.bed.node.bin)
            .env("CNI_CACHEDIR", &self.cache)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_IFNAME", ifname)
            // As kubelet-style runtimes send it; the host veth name derives from namespace + pod name.
            .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-{container_id}"));
        proc::run(&mut c, T)
    }
}

fn can_run(test: &str) -> bool {
    if !testbed::root_or_skip(test) || !e2e::have_tools(test, &["go", "nsenter", "unshare", "jq"]) {
        return false;
    }
    if !Path::new("/usr/share/gocode/src/github.com/containernetworking/cni/libcni").is_dir() {
        assert!(std::env::var_os("CI").is_none(), "golang-github-appc-cni-dev missing and CI must run {test}");
        eprintln!("SKIP {test}: golang-github-appc-cni-dev not installed (bash scripts/deps.sh --all)");
        return false;
    }
    true
}

fn addrs(res: &serde_json::Value) -> Vec<String> {
    let ips = res["ips"].as_array().cloned().unwrap_or_default();
    ips.iter().filter_map(|ip| ip["address"].as_str()).map(|a| a.split('/').next().unwrap_or(a).to_string()).collect()
}

#[test]
fn libcni_add_check_del_and_check_names_a_deleted_host_route() {
    if !can_run("libcni") {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let tool = minicnitool();
    let mut bed = Bed::new("lcni", "10.246.0.0/16");
    let pod = bed.node.pod();
    let cache = bed.path("cni-cache");
    let client = Client { tool, bed: &bed, cache: cache.clone() };

    // ADD: a 1.0.0 result with the host veth, the container eth0 (with its MAC) and a /32 from our pool.
    let res: serde_json::Value = serde_json::from_str(&client.run("add", &pod).ok()).expect("ADD result JSON");
    assert_eq!(res["cniVersion"], "1.0.0", "{res}");
    let host_if = res["interfaces"][0]["name"].as_str().expect("host interface").to_string();
    assert!(host_if.starts_with("cali"), "{res}");
    assert_eq!(res["interfaces"][1]["name"], "eth0");
    assert_eq!(res["interfaces"][1]["mac"].as_str().map(str::len), Some(17), "{res}");
    let cidr = res["ips"][0]["address"].as_str().expect("address").to_string();
    let addr = cidr.split('/').next().unwrap_or(&cidr).to_string();
    assert!(cidr.starts_with("10.246.") && cidr.ends_with("/32"), "{cidr}");
    assert!(bed.ipam.holds("libcni-e2e-0001"), "{:?}", bed.ipam.allocations());
    bed.ipam.assert_in_use(1);
    let cached = std::fs::read_dir(cache.join("results")).expect("libcni result cache").count();
    assert_eq!(cached, 1, "libcni caches the ADD result");
    // The pod reaches the node through the link-local gateway (proxy ARP on the host veth).
    assert!(bed.node.ping(&pod, "192.0.2.1", Duration::from_secs(5)), "pod cannot ping the node");

    // CHECK with the cached result as prevResult: everything is there.
    client.run("check", &pod).ok();

    // Someone deletes the host route by hand: CHECK fails and says which route on which interface.
    let route = bed.node.ip_in(&bed.node.name, &["route", "show", "dev", &host_if]);
    assert!(route.contains(&addr), "{route}");
    bed.node.ip_in(&bed.node.name, &["route", "del", &format!("{addr}/32"), "dev", &host_if]);
    let broken = client.run("check", &pod);
    assert!(broken.failed(), "CHECK passed without the host route");
    eprintln!("CHECK without the host route: {}", broken.stderr.trim());
    let want = format!("host route {addr}/32 dev {host_if} missing");
    assert!(broken.stderr.contains(&want), "CHECK should say {want:?}, said: {}", broken.stderr);

    // Put it back the way the plugin made it: CHECK is happy again.
    bed.node.ip_in(&bed.node.name, &["route", "add", &format!("{addr}/32"), "dev", &host_if, "scope", "link"]);
    client.run("check", &pod).ok();

    // DEL: address released, veth and route gone, cache entry gone; a second DEL (no cache) is fine too.
    client.run("del", &pod).ok();
    bed.ipam.assert_in_use(0);
    let links = bed.node.ip_in(&bed.node.name, &["-o", "link"]);
    assert!(!links.contains(&host_if), "{links}");
    assert_eq!(std::fs::read_dir(cache.join("results")).map(|d| d.count()).unwrap_or(0), 0, "cache entry left");
    client.run("del", &pod).ok();

    let calls = bed.rec.calls();
    eprintln!("CNI calls seen ({NET}):\n{}", bed.rec.transcript());
    let ours: Vec<&str> = calls.iter().filter(|c| c.plugin == "cni-calico").map(|c| c.command.as_str()).collect();
    assert_eq!(ours, ["ADD", "CHECK", "CHECK", "CHECK", "DEL", "DEL"], "{}", bed.rec.transcript());
    let del2 = calls.iter().filter(|c| c.plugin == "cni-calico" && c.command == "DEL").nth(1).expect("second DEL");
    assert!(del2.stdin.get("prevResult").is_none(), "no cache entry, so no prevResult: {}", del2.line());
}

/// testdata/calico-dual-stack.conflist through libcni: two pods get an IPv4 and an IPv6 address each and
/// reach each other over both through the node; CHECK passes, DEL frees all four addresses.
#[test]
fn libcni_dual_stack_pods_reach_each_other_over_both_families() {
    if !can_run("libcni_dual_stack") {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let tool = minicnitool();
    let mut bed = Bed::with_conflist("lcn6", "calico-dual-stack.conflist", &["10.247.0.0/16", "fd00:10:247::/48"]);
    let (p1, p2) = (bed.node.pod(), bed.node.pod());
    let client = Client { tool, bed: &bed, cache: bed.path("cni-cache") };

    let mut got = Vec::new();
    for (pod, cid) in [(&p1, "dual-1"), (&p2, "dual-2")] {
        let res: serde_json::Value = serde_json::from_str(&client.run_as("add", pod, cid).ok()).expect("ADD result JSON");
        let a = addrs(&res);
        assert_eq!(a.len(), 2, "one address per family: {res}");
        assert!(a[0].starts_with("10.247.") && a[1].starts_with("fd00:10:247:"), "{a:?}");
        let routes6 = bed.node.ip_in(pod, &["-6", "route"]);
        assert!(routes6.contains("default via fe80::"), "IPv6 default route via the host veth's link-local: {routes6}");
        got.push(a);
    }
    bed.ipam.assert_in_use(4);
    for (from, to) in [(&p1, &got[1]), (&p2, &got[0])] {
        for addr in to {
            if !bed.node.ping(from, addr, Duration::from_secs(10)) {
                let show = |ns: &str, a: &[&str]| bed.node.ip_in(ns, a);
                panic!(
                    "{from} cannot ping {addr}\nfrom addr:\n{}\nfrom routes:\n{}{}\nnode routes:\n{}{}\nnode neigh:\n{}",
                    show(from, &["addr"]),
                    show(from, &["route"]),
                    show(from, &["-6", "route"]),
                    show(&bed.node.name, &["route"]),
                    show(&bed.node.name, &["-6", "route"]),
                    show(&bed.node.name, &["neigh"])
                );
            }
        }
    }
    for (pod, cid) in [(&p1, "dual-1"), (&p2, "dual-2")] {
        client.run_as("check", pod, cid).ok();
        client.run_as("del", pod, cid).ok();
    }
    bed.ipam.assert_in_use(0);
    eprintln!("CNI calls seen (dual-stack):\n{}", bed.rec.transcript());
}

/// A second interface of one container on the same network through libcni, dual-stack: each attachment is
/// cached and CHECKed with its own prevResult, both answer over both families, and DEL of one leaves the
/// other working and allocated.
#[test]
fn libcni_two_interfaces_of_one_container_live_side_by_side() {
    if !can_run("libcni_two_interfaces") {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let tool = minicnitool();
    let mut bed = Bed::with_conflist("lcn2", "calico-dual-stack.conflist", &["10.248.0.0/16", "fd00:10:248::/48"]);
    let pod = bed.node.pod();
    let cache = bed.path("cni-cache");
    let client = Client { tool, bed: &bed, cache: cache.clone() };
    let mut got = Vec::new();
    for ifname in ["eth0", "eth1"] {
        let res: serde_json::Value = serde_json::from_str(&client.run_if("add", &pod, "two-if", ifname).ok()).expect("ADD result JSON");
        assert_eq!(res["interfaces"][1]["name"], ifname, "{res}");
        got.push(addrs(&res));
    }
    assert_eq!(std::fs::read_dir(cache.join("results")).expect("cache").count(), 2, "one cached result per attachment");
    bed.ipam.assert_in_use(4);
    for a in got.iter().flatten() {
        assert!(bed.node.ping(&bed.node.name, a, Duration::from_secs(10)), "{a} unreachable");
    }
    for ifname in ["eth0", "eth1"] {
        client.run_if("check", &pod, "two-if", ifname).ok();
    }
    client.run_if("del", &pod, "two-if", "eth1").ok();
    bed.ipam.assert_in_use(2);
    for a in &got[0] {
        assert!(bed.node.ping(&bed.node.name, a, Duration::from_secs(10)), "{a} (eth0) unreachable after DEL of eth1");
    }
    client.run_if("check", &pod, "two-if", "eth0").ok();
    client.run_if("del", &pod, "two-if", "eth0").ok();
    bed.ipam.assert_in_use(0);
    eprintln!("CNI calls seen (two interfaces):\n{}", bed.rec.transcript());
}
