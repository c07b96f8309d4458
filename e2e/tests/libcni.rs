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
            .env("CNI_CONTAINERID", "libcni-e2e-0001")
            .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod1");
        proc::run(&mut c, T)
    }
}

#[test]
fn libcni_add_check_del_and_check_names_a_deleted_host_route() {
    if !testbed::root_or_skip("libcni") || !e2e::have_tools("libcni", &["go", "nsenter", "unshare", "jq"]) {
        return;
    }
    if !Path::new("/usr/share/gocode/src/github.com/containernetworking/cni/libcni").is_dir() {
        assert!(std::env::var_os("CI").is_none(), "golang-github-appc-cni-dev missing and CI must run libcni");
        eprintln!("SKIP libcni: golang-github-appc-cni-dev not installed (bash scripts/deps.sh --all)");
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
