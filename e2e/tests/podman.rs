//! podman 4.3 with its CNI backend (`network_backend = "cni"`) running containers on our conflist.
//! podman calls VERSION before every ADD/DEL, passes `IgnoreUnknown=1;K8S_POD_NAME=<name>` and converts our
//! result to 0.4.0 (it parses the container interface's `mac`); a recorder in front of our plugins shows it.
//! All podman state lives in the test's temp dir; podman runs in the node netns and a private mount ns.
use e2e::bed::{Bed, NET};
use e2e::proc::{self, Out};
use e2e::recorder::Call;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const IMAGE: &str = "localhost/bb:latest";
const T: Duration = Duration::from_secs(90);

struct Podman<'a> {
    bed: &'a Bed,
    dir: PathBuf,
    /// cgroup parent of this test's containers and conmons (default /libpod_parent would be shared).
    cgroup: String,
    started: std::sync::Mutex<Vec<String>>,
}

impl<'a> Podman<'a> {
    fn new(bed: &'a mut Bed) -> Podman<'a> {
        let dir = bed.path("podman");
        for d in ["storage", "runroot", "tmp", "home"] {
            std::fs::create_dir_all(dir.join(d)).expect("podman dir");
        }
        // No CAP_SYS_RESOURCE in this sandbox: podman's default rlimits would fail in runc.
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin}"]
network_config_dir = "{netd}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{dir}/events.log"
runtime = "runc"
tmp_dir = "{dir}/tmp"
image_copy_tmp_dir = "{dir}/tmp"
"#,
            bin = bed.node.bin.display(),
            netd = bed.netd.display(),
            dir = dir.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).expect("containers.conf");
        // podman's locks live in /dev/shm: an empty tmpfs of our own there, gone with the namespace.
        bed.mnt.tmpfs(Path::new("/dev/shm"));
        // `podman load` keeps a blob-info cache in /var/lib/containers whatever --root says.
        std::fs::create_dir(dir.join("var-lib-containers")).expect("dir");
        bed.mnt.bind(&dir.join("var-lib-containers"), Path::new("/var/lib/containers"));
        // ... and runc keeps container state in /run/runc (podman does not pass its runroot to it).
        std::fs::create_dir(dir.join("run-runc")).expect("dir");
        bed.mnt.bind(&dir.join("run-runc"), Path::new("/run/runc"));
        let bed: &'a Bed = bed;
        Podman { bed, dir, cgroup: format!("/crs-e2e-podman-{}", std::process::id()), started: Default::default() }
    }

    fn podman(&self, args: &[&str]) -> Out {
        proc::run(&mut self.command(args), T)
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.bed.mnt.command(Some(&self.bed.node.name), "podman");
        // HOME too: podman creates ~/.config/containers/podman even when run as root with --root.
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("HOME", self.dir.join("home"))
            .env("TMPDIR", self.dir.join("tmp"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"])
            .args(args);
        c
    }

    /// `podman run -d`, remembered so that a failing test still removes it.
    fn run_detached(&self, name: &str, args: &[&str]) -> Out {
        self.started.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_string());
        let mut a = vec!["run", "-d", "--cgroup-parent", &self.cgroup, "--name", name];
        a.extend_from_slice(args);
        self.podman(&a)
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        for name in self.started.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = proc::try_run(&mut self.command(&["rm", "--force", "--time", "0", name]), T);
        }
        // Storage is overlay mounts inside our mount namespace; unmount them before the namespace goes.
        let _ = proc::try_run(&mut self.command(&["system", "reset", "--force"]), T);
        e2e::remove_cgroup_tree(&self.cgroup);
    }
}

fn addr_of(call: &Call) -> IpAddr {
    let a = call.stdout["ips"][0]["address"].as_str().unwrap_or_else(|| panic!("ADD result has no address: {:?}", call.stdout));
    a.split('/').next().unwrap_or(a).parse().expect("address")
}

#[test]
fn podman_cni_backend_runs_containers_on_our_network() {
    if !testbed::root_or_skip("podman_cni") || !e2e::have_tools("podman_cni", &["podman", "conmon", "runc", "nsenter", "unshare", "jq"]) {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let mut bed = Bed::new("pdm", "10.245.0.0/16");
    let image = bed.image();
    let pm = Podman::new(&mut bed);
    let bed = pm.bed;

    let version = pm.podman(&["version", "--format", "{{.Client.Version}}"]).ok();
    eprintln!("podman version {}", version.trim());
    let backend = pm.podman(&["info", "--format", "{{.Host.NetworkBackend}}"]).ok();
    assert_eq!(backend.trim(), "cni", "podman must use its CNI backend");
    let nets = pm.podman(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]).ok();
    assert!(nets.lines().any(|l| l.starts_with(NET)), "podman does not list our network: {nets}");
    pm.podman(&["load", "--input", &image.join("bb-docker.tar").to_string_lossy()]).ok();
    // podman validates its networks' configs (one VERSION per plugin) when it loads them.
    eprintln!("calls made by podman info/network ls/load: {}", bed.rec.calls().len());

    // A detached container: podman's 0.4.0 view of our result (address, MAC) is what we answered.
    pm.run_detached("web", &["--network", NET, IMAGE, "sleep", "600"]).ok();
    let calls = bed.rec.calls();
    let add = calls.iter().find(|c| c.plugin == "cni-calico" && c.command == "ADD").unwrap_or_else(|| panic!("no ADD:\n{}", bed.rec.transcript()));
    let web = addr_of(add);
    let mac = add.stdout["interfaces"][1]["mac"].as_str().expect("container mac").to_string();
    let field = |f: &str| format!("{{{{(index .NetworkSettings.Networks \"{NET}\").{f}}}}}");
    let inspect = pm.podman(&["inspect", "web", "--format", &format!("{} {}", field("IPAddress"), field("MacAddress"))]).ok();
    assert_eq!(inspect.trim(), format!("{web} {mac}"), "podman inspect");
    assert!(bed.ipam.owner(web).is_some(), "web's {web} not in the store: {:?}", bed.ipam.allocations());
    bed.ipam.assert_in_use(1);

    // podman run --rm: the container has its address and reaches web through the node.
    let script = format!("ip -o -4 addr show dev eth0; ip -4 route; for i in 1 2 3; do ping -c1 -W1 {web} >/dev/null && echo PING-OK && break; done");
    let out = pm.podman(&["run", "--rm", "--cgroup-parent", &pm.cgroup, "--name", "client", "--network", NET, IMAGE, "sh", "-c", &script]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0, "podman run --rm: {text}\nplugin log:\n{}", bed.plugin_log());
    assert!(text.contains("default via 169.254.1.1 dev eth0"), "{text}");
    assert!(text.contains("PING-OK"), "client could not ping web {web}:\n{text}");

    // podman stop sends DEL while the netns still exists; rm sends nothing more.
    pm.podman(&["stop", "--time", "0", "web"]).ok();
    pm.podman(&["rm", "web"]).ok();
    bed.ipam.assert_in_use(0);

    let calls: Vec<Call> = bed.rec.calls().into_iter().filter(|c| c.plugin == "cni-calico").collect();
    eprintln!("CNI calls seen ({NET}):\n{}", bed.rec.transcript());
    // podman asks the plugin's VERSION (libcni GetVersionInfo, netns/ifname "dummy") right before each ADD and DEL.
    let ops: Vec<usize> = (0..calls.len()).filter(|&i| calls[i].command != "VERSION").collect();
    let verbs: Vec<&str> = ops.iter().map(|&i| calls[i].command.as_str()).collect();
    assert_eq!(verbs, ["ADD", "ADD", "DEL", "DEL"], "{}", bed.rec.transcript());
    for &i in &ops {
        assert!(i > 0, "{}", bed.rec.transcript());
        let (version, op) = (&calls[i - 1], &calls[i]);
        assert_eq!(version.command, "VERSION", "no VERSION right before {}", op.line());
        assert_eq!(version.rc, 0, "{}", version.line());
        assert_eq!(version.netns, "dummy", "libcni's GetVersionInfo: {}", version.line());
        assert!(version.stdout["supportedVersions"].as_array().is_some_and(|v| v.iter().any(|x| x == "0.4.0")), "{:?}", version.stdout);
        assert_eq!(op.rc, 0, "{} -> {:?}", op.line(), op.stdout);
        assert!(op.netns.starts_with("/run/netns/netns-"), "podman's netns, present for ADD and DEL: {}", op.line());
        let name = if op.containerid == add.containerid { "web" } else { "client" };
        assert_eq!(op.args, format!("IgnoreUnknown=1;K8S_POD_NAME={name}"), "{}", op.line());
        assert_eq!(op.stdin.get("prevResult").is_some(), op.command == "DEL", "{}", op.line());
        if op.command == "ADD" {
            let mac = op.stdout["interfaces"][1]["mac"].as_str().unwrap_or("");
            assert_eq!(mac.len(), 17, "container interface needs a MAC for podman: {:?}", op.stdout);
        }
    }
    let links = bed.node.ip_in(&bed.node.name, &["-o", "link"]);
    assert!(!links.contains("cali"), "{links}");
}

/// testdata/calico-portmap.conflist (our plugin, then Debian's portmap) with `podman run -p`: podman passes the
/// portMappings capability, portmap gets our result as prevResult and DNATs the node's port to the container.
/// The request comes from the uplink netns, as from another machine; all iptables rules are in the node netns.
#[test]
fn podman_publishes_a_port_through_chained_portmap() {
    if !testbed::root_or_skip("podman_portmap")
        || !e2e::have_tools("podman_portmap", &["podman", "conmon", "runc", "nsenter", "unshare", "jq", "iptables", "curl"])
    {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let mut bed = Bed::with_conflist("pdpm", "calico-portmap.conflist", &["10.248.0.0/16"]);
    let image = bed.image();
    let pm = Podman::new(&mut bed);
    let bed = pm.bed;
    pm.podman(&["load", "--input", &image.join("bb-docker.tar").to_string_lossy()]).ok();

    pm.run_detached("httpd", &["--network", NET, "-p", "18080:8080", IMAGE, "httpd", "-f", "-p", "8080", "-h", "/etc"]).ok();
    let calls = bed.rec.calls();
    let pmap =
        calls.iter().find(|c| c.plugin == "portmap" && c.command == "ADD").unwrap_or_else(|| panic!("portmap not called:\n{}", bed.rec.transcript()));
    assert_eq!(pmap.rc, 0, "portmap ADD: {:?}", pmap.stdout);
    assert_eq!(pmap.stdin["runtimeConfig"]["portMappings"][0]["hostPort"], 18080, "{}", pmap.stdin);
    let ours = calls.iter().find(|c| c.plugin == "cni-calico" && c.command == "ADD").expect("our ADD");
    assert_eq!(pmap.stdin["prevResult"]["ips"], ours.stdout["ips"], "portmap gets our result as prevResult");

    // From "another machine" (the uplink netns) to the node's address: DNAT to the container's httpd.
    let fetch = || {
        let mut c = std::process::Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", bed.node.uplink)).args(["--", "curl", "-sS", "--max-time", "3", "http://192.0.2.1:18080/passwd"]);
        proc::run(&mut c, T)
    };
    let start = std::time::Instant::now();
    let mut last = fetch();
    while !last.stdout.contains("root:x:0:0") && start.elapsed() < Duration::from_secs(15) {
        last = fetch();
    }
    if !last.stdout.contains("root:x:0:0") {
        let nat = bed.run("iptables", &["-t", "nat", "-S"], T).stdout;
        let direct = pm.podman(&["exec", "httpd", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/passwd"]);
        panic!("port 18080 not published: {last:?}\nnode nat table:\n{nat}\nin-container fetch: {direct:?}\ncalls:\n{}", bed.rec.transcript());
    }

    pm.podman(&["stop", "--time", "0", "httpd"]).ok();
    pm.podman(&["rm", "httpd"]).ok();
    bed.ipam.assert_in_use(0);
    let calls = bed.rec.calls();
    assert!(calls.iter().any(|c| c.plugin == "portmap" && c.command == "DEL" && c.rc == 0), "{}", bed.rec.transcript());
    eprintln!("CNI calls seen (portmap chain):\n{}", bed.rec.transcript());
}

/// `podman run --ip A`: podman sends `IP=A` in CNI_ARGS (and adds the `ips` capability to our plugin's
/// config); cni-ipam assigns exactly that address, as Calico's IPAM does for the IP argument.
#[test]
fn podman_static_ip_is_honoured() {
    if !testbed::root_or_skip("podman_static_ip") || !e2e::have_tools("podman_static_ip", &["podman", "conmon", "runc", "nsenter", "unshare", "jq"]) {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let mut bed = Bed::new("pdip", "10.249.0.0/16");
    let image = bed.image();
    let pm = Podman::new(&mut bed);
    let bed = pm.bed;
    pm.podman(&["load", "--input", &image.join("bb-docker.tar").to_string_lossy()]).ok();

    let out = pm.podman(&[
        "run",
        "--rm",
        "--cgroup-parent",
        &pm.cgroup,
        "--network",
        NET,
        "--ip",
        "10.249.3.77",
        IMAGE,
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ]);
    let text = format!("{}{}", out.stdout, out.stderr);
    let calls = bed.rec.calls();
    let add = calls.iter().find(|c| c.plugin == "cni-calico" && c.command == "ADD").unwrap_or_else(|| panic!("no ADD: {text}"));
    eprintln!("podman --ip: CNI_ARGS={:?} capabilities={} runtimeConfig={}", add.args, add.stdin["capabilities"], add.stdin["runtimeConfig"]);
    assert_eq!(out.code, 0, "{text}\n{}", bed.rec.transcript());
    assert!(add.args.split(';').any(|kv| kv == "IP=10.249.3.77"), "{}", add.line());
    assert!(text.contains("inet 10.249.3.77/32"), "container did not get the static address: {text}");
    bed.ipam.assert_in_use(0);
}

/// `podman run --ip A --ip6 B` on testdata/calico-dual-stack.conflist: with two static addresses podman sends no
/// `IP=` but the `ips` capability (`runtimeConfig.ips`); cni-ipam assigns exactly those, as it does `IP=`.
#[test]
fn podman_static_ips_through_the_ips_capability_are_honoured() {
    if !testbed::root_or_skip("podman_static_ips") || !e2e::have_tools("podman_static_ips", &["podman", "conmon", "runc", "nsenter", "unshare", "jq"])
    {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let mut bed = Bed::with_conflist("pdi6", "calico-dual-stack.conflist", &["10.252.0.0/16", "fd00:10:252::/48"]);
    let image = bed.image();
    let pm = Podman::new(&mut bed);
    let bed = pm.bed;
    pm.podman(&["load", "--input", &image.join("bb-docker.tar").to_string_lossy()]).ok();

    let args = ["--network", NET, "--ip", "10.252.3.77", "--ip6", "fd00:10:252::3:77", IMAGE, "ip", "-o", "addr", "show", "dev", "eth0"];
    let mut run = vec!["run", "--rm", "--cgroup-parent", &pm.cgroup];
    run.extend_from_slice(&args);
    let out = pm.podman(&run);
    let text = format!("{}{}", out.stdout, out.stderr);
    let calls = bed.rec.calls();
    let add = calls.iter().find(|c| c.plugin == "cni-calico" && c.command == "ADD").unwrap_or_else(|| panic!("no ADD: {text}"));
    eprintln!("podman --ip --ip6: CNI_ARGS={:?} runtimeConfig={}", add.args, add.stdin["runtimeConfig"]);
    assert_eq!(out.code, 0, "{text}\n{}", bed.rec.transcript());
    assert_eq!(add.stdin["runtimeConfig"]["ips"], serde_json::json!(["10.252.3.77", "fd00:10:252::3:77"]), "{}", add.line());
    assert!(!add.args.contains("IP="), "{}", add.line());
    assert_eq!(add.stdout["ips"][0]["address"], "10.252.3.77/32", "{:?}", add.stdout);
    assert_eq!(add.stdout["ips"][1]["address"], "fd00:10:252::3:77/128", "{:?}", add.stdout);
    assert!(
        text.contains("inet 10.252.3.77/32") && text.contains("inet6 fd00:10:252::3:77/128"),
        "container did not get the static addresses: {text}"
    );
    bed.ipam.assert_in_use(0);
}

/// A container whose command cannot start: podman has already run ADD, so its cleanup must DEL and the
/// address must go back to the pool.
#[test]
fn podman_failed_start_releases_the_address() {
    if !testbed::root_or_skip("podman_failed_start")
        || !e2e::have_tools("podman_failed_start", &["podman", "conmon", "runc", "nsenter", "unshare", "jq"])
    {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let mut bed = Bed::new("pdfs", "10.250.0.0/16");
    let image = bed.image();
    let pm = Podman::new(&mut bed);
    let bed = pm.bed;
    pm.podman(&["load", "--input", &image.join("bb-docker.tar").to_string_lossy()]).ok();

    let out = pm.podman(&["run", "--rm", "--cgroup-parent", &pm.cgroup, "--network", NET, IMAGE, "/no/such/command"]);
    assert!(out.failed(), "the container should not start: {out:?}");
    let calls = bed.rec.calls();
    eprintln!("CNI calls seen (failed start):\n{}", bed.rec.transcript());
    let ours = |cmd: &str| calls.iter().filter(|c| c.plugin == "cni-calico" && c.command == cmd).count();
    assert_eq!((ours("ADD"), ours("DEL")), (1, 1), "{}", bed.rec.transcript());
    bed.ipam.assert_in_use(0);
    let links = bed.node.ip_in(&bed.node.name, &["-o", "link"]);
    assert!(!links.contains("cali"), "{links}");
}

/// Several `podman run -d` at once: concurrent ADDs through our plugin into one cni-ipam store get distinct
/// addresses, and concurrent removals give them all back.
#[test]
fn podman_concurrent_runs_get_distinct_addresses() {
    if !testbed::root_or_skip("podman_concurrent") || !e2e::have_tools("podman_concurrent", &["podman", "conmon", "runc", "nsenter", "unshare", "jq"])
    {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let mut bed = Bed::new("pdcc", "10.251.0.0/16");
    let image = bed.image();
    let pm = Podman::new(&mut bed);
    let bed = pm.bed;
    pm.podman(&["load", "--input", &image.join("bb-docker.tar").to_string_lossy()]).ok();

    let names: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    std::thread::scope(|s| {
        for n in &names {
            let pm = &pm;
            s.spawn(move || pm.run_detached(n, &["--network", NET, IMAGE, "sleep", "600"]).ok());
        }
    });
    let mut seen = std::collections::BTreeSet::new();
    for n in &names {
        let ip = pm.podman(&["inspect", n, "--format", &format!("{{{{(index .NetworkSettings.Networks \"{NET}\").IPAddress}}}}")]).ok();
        assert!(seen.insert(ip.trim().to_string()), "{n} got a duplicate address {ip}");
    }
    bed.ipam.assert_in_use(names.len());
    let mut rm = vec!["rm", "--force", "--time", "0"];
    rm.extend(names.iter().map(String::as_str));
    pm.podman(&rm).ok();
    bed.ipam.assert_in_use(0);
    let links = bed.node.ip_in(&bed.node.name, &["-o", "link"]);
    assert!(!links.contains("cali"), "{links}");
}
