//! containerd 1.6 + runc, driven by `ctr run --cni`: ctr itself runs the CNI plugins (go-cni over libcni)
//! from the first conflist of /etc/cni/net.d, looking for plugins in /usr/lib/cni (Debian). Both are this
//! test's temp dirs (private mount namespace); containerd and ctr run in the test's node netns.
use e2e::bed::{Bed, NET};
use e2e::daemon::Daemon;
use e2e::proc::{self, wait_until, Out};
use e2e::recorder::Call;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const IMAGE: &str = "localhost/bb:latest";
const T: Duration = Duration::from_secs(60);

/// containerd with its root, state, sockets and runc state all under the test's temp dir.
struct Containerd<'a> {
    bed: &'a Bed,
    sock: PathBuf,
    /// The containerd namespace; also the cgroup parent runc uses, so it is unique per test run.
    ns: String,
    daemon: Daemon,
}

impl<'a> Containerd<'a> {
    fn start(bed: &'a mut Bed) -> Containerd<'a> {
        let dir = bed.path("containerd");
        std::fs::create_dir(&dir).expect("containerd dir");
        let sock = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{s}"
[ttrpc]
  address = "{s}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#,
            d = dir.display(),
            s = sock.display()
        );
        std::fs::write(dir.join("config.toml"), config).expect("config.toml");
        // Shim sockets and runc state go under /run/containerd whatever the config says: our own dir there.
        let run_dir = bed.path("run-containerd");
        std::fs::create_dir(&run_dir).expect("run dir");
        bed.mnt.bind(&run_dir, std::path::Path::new("/run/containerd"));
        let bed: &'a Bed = bed;
        let mut cmd = bed.mnt.command(Some(&bed.node.name), "containerd");
        cmd.arg("--config").arg(dir.join("config.toml"));
        let daemon = Daemon::spawn("containerd", cmd, dir.join("containerd.log"));
        let ns = format!("e2e-{}", std::process::id());
        let mut ctd = Containerd { bed, sock, ns, daemon };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !ctd.sock.exists() || proc::run(ctd.ctr_cmd().arg("version"), T).failed() {
            ctd.daemon.assert_alive();
            assert!(std::time::Instant::now() < deadline, "containerd not answering after 20 s:\n{}", ctd.daemon.log_tail());
            std::thread::sleep(Duration::from_millis(20));
        }
        ctd
    }

    fn ctr_cmd(&self) -> Command {
        let mut c = self.bed.mnt.command(Some(&self.bed.node.name), "ctr");
        c.arg("--address").arg(&self.sock).arg("--namespace").arg(&self.ns);
        c
    }

    fn ctr(&self, args: &[&str]) -> Out {
        proc::run(self.ctr_cmd().args(args), T)
    }

    fn try_ctr(&self, args: &[&str]) -> Option<Out> {
        proc::try_run(self.ctr_cmd().args(args), T).ok()
    }

    /// Kills a detached container's task and removes it the way a user would: no DEL is ever sent.
    fn kill_and_remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
        wait_until(&format!("task {id} to stop"), Duration::from_secs(20), || {
            let ls = self.ctr(&["task", "ls"]).stdout;
            !ls.lines().any(|l| l.split_whitespace().next() == Some(id) && l.contains("RUNNING"))
        });
        self.ctr(&["task", "rm", id]).ok();
        self.ctr(&["container", "rm", id]).ok();
    }
}

impl Drop for Containerd<'_> {
    fn drop(&mut self) {
        // After a failure containers may still run: stop them through containerd, then containerd itself.
        if let Some(out) = self.try_ctr(&["container", "ls", "-q"]) {
            for id in out.stdout.lines().filter(|l| !l.is_empty()) {
                self.try_ctr(&["task", "kill", "--signal", "SIGKILL", id]);
                self.try_ctr(&["task", "rm", "--force", id]);
                self.try_ctr(&["container", "rm", id]);
            }
        }
        self.daemon.stop();
        // runc's cgroupfs parents (/sys/fs/cgroup/<controller>/<namespace>) stay behind when empty.
        e2e::remove_cgroup_tree(&self.ns);
    }
}

fn addr_of(call: &Call) -> IpAddr {
    let a = call.stdout["ips"][0]["address"].as_str().unwrap_or_else(|| panic!("ADD result has no address: {:?}", call.stdout));
    a.split('/').next().unwrap_or(a).parse().expect("address")
}

fn find<'c>(calls: &'c [Call], plugin: &str, cmd: &str, cid: &str) -> Vec<&'c Call> {
    calls.iter().filter(|c| c.plugin == plugin && c.command == cmd && c.containerid == cid).collect()
}

#[test]
fn ctr_run_cni_gets_an_address_pings_a_neighbour_releases_on_exit_and_gc_frees_leaks() {
    if !testbed::root_or_skip("ctr_run_cni") || !e2e::have_tools("ctr_run_cni", &["containerd", "ctr", "runc", "nsenter", "unshare", "jq"]) {
        return;
    }
    let _one_at_a_time = e2e::exclusive();
    let mut bed = Bed::new("ctd", "10.244.0.0/16");
    let image = bed.image();
    let ctd = Containerd::start(&mut bed);
    let bed = ctd.bed;
    ctd.ctr(&["images", "import", &image.join("bb-docker.tar").to_string_lossy()]).ok();
    let ver = ctd.ctr(&["version"]).ok();
    eprintln!("ctr version:\n{ver}");
    let cid = |id: &str| format!("{}-{id}", ctd.ns);
    let plugin = "cni-calico";

    // A detached neighbour that the next container pings; a second one that stays until after the first GC.
    ctd.ctr(&["run", "-d", "--cni", IMAGE, "web", "sleep", "600"]).ok();
    ctd.ctr(&["run", "-d", "--cni", IMAGE, "db", "sleep", "600"]).ok();
    let calls = bed.rec.calls();
    let web = addr_of(find(&calls, plugin, "ADD", &cid("web")).first().unwrap_or_else(|| panic!("no ADD for web:\n{}", bed.rec.transcript())));
    let db = addr_of(find(&calls, plugin, "ADD", &cid("db")).first().expect("ADD for db"));
    assert!(bed.ipam.owner(web).is_some_and(|o| o.contains(&cid("web"))), "web's {web} not in the store: {:?}", bed.ipam.allocations());
    bed.ipam.assert_in_use(2);

    // ctr run --rm: address from our IPAM, reaches its neighbour through the node, DEL on exit frees it.
    let script = format!("ip -o -4 addr show dev eth0; ip -4 route; for i in 1 2 3; do ping -c1 -W1 {web} >/dev/null && echo PING-OK && break; done");
    let out = ctd.ctr(&["run", "--rm", "--cni", IMAGE, "client", "sh", "-c", &script]);
    let out_text = format!("{}{}", out.stdout, out.stderr);
    let calls = bed.rec.calls();
    let add = find(&calls, plugin, "ADD", &cid("client"));
    assert_eq!(add.len(), 1, "one ADD for client:\n{}", bed.rec.transcript());
    let client = addr_of(add[0]);
    assert!(out_text.contains(&format!("inet {client}/32")), "client sees its address {client}: {out_text}");
    assert!(out_text.contains("default via 169.254.1.1 dev eth0"), "{out_text}");
    assert!(out_text.contains("PING-OK"), "client {client} could not ping web {web}:\n{out_text}\nplugin log:\n{}", bed.plugin_log());
    assert_eq!(out.code, 0, "{out_text}");
    let del = find(&calls, plugin, "DEL", &cid("client"));
    assert_eq!(del.len(), 1, "ctr --rm sends one DEL:\n{}", bed.rec.transcript());
    assert_eq!(del[0].rc, 0, "DEL failed: {:?}", del[0].stdout);
    assert_eq!(del[0].netns, "", "ctr deletes the netns before DEL");
    assert!(del[0].stdin.get("prevResult").is_some(), "libcni sends the cached result with DEL");
    assert!(bed.ipam.owner(client).is_none(), "client's {client} still allocated after DEL: {:?}", bed.ipam.allocations());
    assert!(!bed.ipam.holds(&cid("client")), "{:?}", bed.ipam.allocations());
    bed.ipam.assert_in_use(2);

    // ctr run -d + kill + rm: ctr sends no DEL, the address leaks ...
    ctd.kill_and_remove("web");
    let calls = bed.rec.calls();
    assert!(find(&calls, plugin, "DEL", &cid("web")).is_empty(), "ctr sent a DEL for web after all:\n{}", bed.rec.transcript());
    assert!(bed.ipam.owner(web).is_some(), "web's address should have leaked: {:?}", bed.ipam.allocations());

    // ... until a CNI GC that lists what is still valid frees it, and only it.
    if bed.ipam.plugin() == "cni-ipam" {
        let db_cid = cid("db");
        bed.gc(&[(&db_cid, "eth0")]).ok();
        assert!(bed.ipam.owner(web).is_none(), "GC left web's {web}: {:?}", bed.ipam.allocations());
        assert!(bed.ipam.owner(db).is_some(), "GC freed db's {db}, which is valid: {:?}", bed.ipam.allocations());
        bed.ipam.assert_in_use(1);
        ctd.kill_and_remove("db");
        bed.gc(&[]).ok();
        bed.ipam.assert_in_use(0);
        eprintln!("{}", bed.ipam.show().unwrap_or_default());
    } else {
        eprintln!("E2E_IPAM=host-local: no GC check (host-local has no GC)");
        ctd.kill_and_remove("db");
    }

    let transcript = bed.rec.transcript();
    eprintln!("CNI calls seen ({NET}):\n{transcript}");
    for c in bed.rec.calls() {
        assert_eq!(c.args, "", "ctr sends empty CNI_ARGS: {}", c.line());
    }
    // Nothing of ours is left on the node: no cali interfaces, no /32 routes.
    let links = bed.node.ip_in(&bed.node.name, &["-o", "link"]);
    assert!(!links.contains("cali"), "{links}");
}
