//! Helpers for tests that run the built `cni-ipam` exactly as a runtime does: env + stdin in, JSON out.
#![allow(dead_code)]
use cni_ipam::ipam::check::{check_store, Report};
use datastore::store::{Datastore, FileStore};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_cni-ipam");

pub struct Net {
    pub name: String,
    pub node: String,
    pub store: PathBuf,
    pub ipam_extra: Value,
}

impl Net {
    pub fn new(store: &Path, node: &str) -> Net {
        Net { name: "test-net".into(), node: node.into(), store: store.to_path_buf(), ipam_extra: json!({}) }
    }

    pub fn config(&self) -> Value {
        let mut ipam = json!({"type": "cni-ipam", "nodename": self.node, "local_store_dir": self.store});
        if let (Some(o), Some(extra)) = (ipam.as_object_mut(), self.ipam_extra.as_object()) {
            for (k, v) in extra {
                o.insert(k.clone(), v.clone());
            }
        }
        json!({"cniVersion": "1.0.0", "name": self.name, "type": "cni-calico", "ipam": ipam})
    }

    pub fn command(&self, verb: &str, cid: &str, args: &str) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", format!("/var/run/netns/{cid}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .env("CNI_ARGS", args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts a verb with this config on stdin; the caller waits or kills.
    pub fn spawn(&self, verb: &str, cid: &str, args: &str, stdin: &[u8]) -> Child {
        let mut child = self.command(verb, cid, args).spawn().expect("spawn cni-ipam");
        if let Some(mut si) = child.stdin.take() {
            // A child killed early closes the pipe; that is fine.
            let _ = si.write_all(stdin);
        }
        child
    }

    pub fn run_raw(&self, verb: &str, cid: &str, args: &str, stdin: &[u8]) -> (i32, Value, String) {
        let out = self.spawn(verb, cid, args, stdin).wait_with_output().expect("wait cni-ipam");
        parse_output(out)
    }

    pub fn run(&self, verb: &str, cid: &str, args: &str) -> (i32, Value, String) {
        self.run_raw(verb, cid, args, self.config().to_string().as_bytes())
    }

    /// ADD that must succeed; returns the address (with block mask) and the route.
    pub fn add(&self, cid: &str) -> (String, String) {
        let (rc, out, err) = self.run("ADD", cid, "");
        assert_eq!(rc, 0, "ADD {cid} failed: {out} {err}");
        (out["ips"][0]["address"].as_str().unwrap_or_default().to_string(), out["routes"][0]["dst"].as_str().unwrap_or_default().to_string())
    }
}

pub fn parse_output(out: Output) -> (i32, Value, String) {
    let rc = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v = if stdout.trim().is_empty() { Value::Null } else { serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)) };
    (rc, v, String::from_utf8_lossy(&out.stderr).to_string())
}

/// An old operator command line against a store directory (cni-ipam runs calicoctl for it).
pub fn operator(store: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).env_clear().arg("--store").arg(store).args(args).output().expect("run cni-ipam");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

pub fn write_pools(dir: &Path, pools: Value) -> PathBuf {
    let path = dir.join("pools.json");
    std::fs::write(&path, pools.to_string()).expect("write pools file");
    path
}

pub fn pool(name: &str, cidr: &str, block_size: u8) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
           "spec": {"cidr": cidr, "blockSize": block_size}})
}

pub fn ipam_config(strict: bool, max_blocks: u32) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "IPAMConfiguration", "metadata": {"name": "default"},
           "spec": {"strictAffinity": strict, "autoAllocateBlocks": true, "maxBlocksPerHost": max_blocks}})
}

/// Loads pools and the IPAM config into a store (what `calicoctl apply -f` of them does, through the same
/// domain writes).
pub fn load(store: &Path, _tmp: &Path, items: Vec<Value>) {
    use cni_ipam::ipam::admin::{apply, parse_resources};
    let res = parse_resources(&json!({"kind": "List", "items": items}).to_string()).expect("resources");
    let fs = FileStore::open(store).expect("open store");
    apply(&mut *fs.lock().expect("lock store"), &res).expect("apply");
}

/// Opens the store (finishing any interrupted commit) and runs the consistency check.
pub fn check(store: &Path) -> Report {
    let fs = FileStore::open(store).expect("open store");
    let session = fs.lock().expect("lock store");
    check_store(&*session).expect("check store")
}

pub fn assert_consistent(store: &Path) -> Report {
    let r = check(store);
    assert!(r.problems.is_empty(), "store problems: {:#?}", r.problems);
    r
}

/// Every file in the directory and its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Small xorshift PRNG so the tests need no extra crate; seeded from the clock and printed for replay.
pub struct Rng(u64);

impl Rng {
    pub fn from_time() -> Rng {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
        eprintln!("rng seed {seed}");
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Stores one pool (and optionally the IPAM config) the way `cni-ipam pool add` does.
pub fn load_pool(store: &dyn datastore::store::Datastore, name: &str, cidr: &str, block_size: u8, cfg: Option<datastore::ipam::records::IpamConfig>) {
    use cni_ipam::ipam::admin::{apply, Resources};
    use datastore::resources::ippool::{PoolResource, PoolSpec};
    let res = PoolResource::ippool(name, PoolSpec { cidr: cidr.into(), block_size: Some(block_size), ..Default::default() });
    let pool = cni_ipam::ipam::Pool::from_resource(&res).expect("pool");
    apply(&mut *store.lock().expect("lock"), &Resources { pools: vec![pool], config: cfg }).expect("apply pool");
}
