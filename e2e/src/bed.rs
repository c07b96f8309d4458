//! The bed a runtime test stands on: a node netns with an uplink (testbed::Node), a private mount namespace
//! whose /etc/cni/net.d, /usr/lib/cni (+ /opt/cni/bin) and /var/lib/cni are this test's temp dirs, our
//! plugins behind call recorders, and our conflist (testdata/calico-local.conflist with test paths).
use crate::ipam::Ipam;
use crate::mountns::MountNs;
use crate::recorder::Recorder;
use crate::{built, proc, read_json, testdata};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testbed::{Node, Outcome};

pub struct Bed {
    // Field order is drop order: leave the mount namespace before the node's netns and temp dir go.
    pub mnt: MountNs,
    pub node: Node,
    pub rec: Recorder,
    pub ipam: Ipam,
    /// The conf dir, seen as /etc/cni/net.d inside `mnt`.
    pub netd: PathBuf,
    /// The network config list as written to `netd`.
    pub conflist: Value,
}

pub const NET: &str = "calico-e2e";

impl Bed {
    /// testdata/calico-local.conflist, allocating from the IPv4 `pool`.
    pub fn new(tag: &str, pool: &str) -> Bed {
        Bed::with_conflist(tag, "calico-local.conflist", &[pool])
    }

    /// `conflist` from testdata/ (our plugin first), allocating from `pools` (IPv4 and/or IPv6 CIDRs).
    pub fn with_conflist(tag: &str, conflist: &str, pools: &[&str]) -> Bed {
        let node = Node::new(tag);
        let rec = Recorder::new(node.path("calls.jsonl"));
        let ipam = Ipam::for_test(node.dir.path(), pools);
        ipam.prepare();

        // The bin dir gets bind-mounted over /usr/lib/cni: symlinks into /usr/lib/cni would then point at
        // themselves, so Debian's plugins are copied in, ours wrapped by the recorder.
        for entry in std::fs::read_dir(&node.bin).expect("bin dir").flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        for p in ["loopback", "host-local", "portmap", "tuning"] {
            let from = Path::new("/usr/lib/cni").join(p);
            if from.exists() {
                std::fs::copy(&from, node.bin.join(p)).unwrap_or_else(|e| panic!("copy {p}: {e}"));
            }
        }
        rec.install(&node.bin, "cni-calico", &built("cni-calico"));
        // Chained after us in testdata/calico-portmap.conflist: recorded too, to see its prevResult.
        std::fs::rename(node.bin.join("portmap"), node.bin.join("portmap.real")).expect("rename portmap");
        rec.install(&node.bin, "portmap", &node.bin.join("portmap.real"));
        if let Ipam::Calico { .. } = ipam {
            rec.install(&node.bin, "cni-ipam", &built("cni-ipam"));
        } else {
            // Debian's host-local, recorded too; the copy keeps its real name for CNI_PATH lookups.
            std::fs::rename(node.bin.join("host-local"), node.bin.join("host-local.real")).expect("rename");
            rec.install(&node.bin, "host-local", &node.bin.join("host-local.real"));
        }

        let mut conflist = read_json(&testdata(conflist));
        conflist["name"] = NET.into();
        let plugin = &mut conflist["plugins"][0];
        plugin["log_level"] = "debug".into();
        plugin["log_file_path"] = node.path("cni-calico.log").to_string_lossy().into();
        ipam.apply(plugin);
        let netd = node.path("net.d");
        std::fs::create_dir(&netd).expect("net.d");
        std::fs::write(netd.join(format!("10-{NET}.conflist")), serde_json::to_string_pretty(&conflist).expect("json")).expect("write conflist");
        let var_lib_cni = node.path("var-lib-cni");
        std::fs::create_dir(&var_lib_cni).expect("var-lib-cni");

        // A real node forwards (Felix and kube-proxy turn it on); our plugin enables forwarding only on the
        // cali interfaces, so traffic from the uplink to a pod (published ports) needs it here.
        let mut fwd = std::process::Command::new("nsenter");
        fwd.arg(format!("--net=/run/netns/{}", node.name)).args(["--", "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        proc::run(&mut fwd, Duration::from_secs(10)).ok();

        let mut mnt = MountNs::new();
        mnt.bind(&netd, Path::new("/etc/cni/net.d"));
        mnt.bind(&node.bin, Path::new("/usr/lib/cni"));
        if Path::new("/opt/cni/bin").exists() {
            mnt.bind(&node.bin, Path::new("/opt/cni/bin"));
        }
        mnt.bind(&var_lib_cni, Path::new("/var/lib/cni"));
        // Runtimes drop scratch files in /var/tmp (podman's image copies): ours is a temp dir too.
        let var_tmp = node.path("var-tmp");
        std::fs::create_dir(&var_tmp).expect("var-tmp");
        mnt.bind(&var_tmp, Path::new("/var/tmp"));
        Bed { mnt, node, rec, ipam, netd, conflist }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.node.path(rel)
    }

    /// Builds the busybox image (rootfs.tar, bb-docker.tar) into the temp dir.
    pub fn image(&self) -> PathBuf {
        let dir = self.path("image");
        let script = crate::script("mk-busybox-image.sh");
        proc::run(std::process::Command::new("bash").arg(script).arg(&dir), Duration::from_secs(60)).ok();
        dir
    }

    /// Runs `program args` in the node netns and the private mount namespace.
    pub fn run(&self, program: &str, args: &[&str], deadline: Duration) -> proc::Out {
        self.mnt.run(Some(&self.node.name), program, args, deadline)
    }

    /// Our plugin's config as a runtime would send it for one plugin of the list, at `version`.
    pub fn plugin_conf(&self, version: &str) -> Value {
        let mut c = self.conflist["plugins"][0].clone();
        c["cniVersion"] = version.into();
        c["name"] = NET.into();
        c
    }

    /// A CNI GC (spec 1.1) straight to our plugin: every attachment not in `valid` (container id, ifname)
    /// is garbage. ctr never sends one; this is what a 1.1 runtime would do after losing DELs.
    pub fn gc(&self, valid: &[(&str, &str)]) -> Outcome {
        let mut conf = self.plugin_conf("1.1.0");
        conf["cni.dev/valid-attachments"] = Value::Array(valid.iter().map(|(cid, ifname)| json!({ "containerID": cid, "ifname": ifname })).collect());
        self.node.run_raw("cni-calico", &[("CNI_COMMAND", "GC")], &[], conf.to_string().as_bytes())
    }

    /// Where the plugin logged (for failure messages).
    pub fn plugin_log(&self) -> String {
        std::fs::read_to_string(self.path("cni-calico.log")).unwrap_or_default()
    }
}
