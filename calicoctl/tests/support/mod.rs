//! Running the built calicoctl as a user does, against a local store directory or a throw-away etcd, and
//! looking at the store itself (the directory's files and bytes; `etcdctl get`).
#![allow(dead_code)]
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_calicoctl");

pub struct Out {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rc {}\nstdout:\n{}\nstderr:\n{}", self.rc, self.stdout, self.stderr)
    }
}

pub enum Store {
    Local(PathBuf),
    Etcd(String),
}

/// calicoctl pointed at one store through a CalicoAPIConfig file (`-c`), so no file or environment of the
/// machine is read.
pub struct Ctl {
    pub store: Store,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ctl {
    fn with(store: Store, spec: Value) -> Ctl {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("calicoctl.cfg");
        let cfg = json!({"apiVersion": "projectcalico.org/v3", "kind": "CalicoAPIConfig", "metadata": {}, "spec": spec});
        std::fs::write(&config, cfg.to_string()).expect("write config");
        Ctl { store, config, _dir: dir }
    }

    pub fn local(dir: &Path) -> Ctl {
        Ctl::with(Store::Local(dir.to_path_buf()), json!({"datastoreType": "local", "localStoreDir": dir}))
    }

    pub fn etcd(endpoints: &str) -> Ctl {
        Ctl::with(Store::Etcd(endpoints.to_string()), json!({"datastoreType": "etcdv3", "etcdEndpoints": endpoints}))
    }

    pub fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut c = Command::new(BIN);
        c.env_clear().arg("--config").arg(&self.config).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = c.spawn().expect("run calicoctl");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A calicoctl that refuses the input early closes the pipe; that is fine.
            let _ = pipe.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().expect("wait calicoctl");
        Out {
            rc: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, None)
    }

    /// A command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.rc, 0, "calicoctl {args:?}: {out}");
        out.stdout
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run_with(args, Some(stdin));
        assert_eq!(out.rc, 0, "calicoctl {args:?}: {out}");
        out.stdout
    }

    /// `get KIND NAME -o json` as a value.
    pub fn get(&self, kind: &str, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["get", kind, name, "-o", "json"])).expect("get -o json is JSON")
    }

    /// The whole store as it is on disk (local: every file and its bytes) or in etcd (`etcdctl get --prefix /`).
    pub fn snapshot(&self) -> String {
        match &self.store {
            Store::Local(dir) => {
                let files: BTreeMap<String, Vec<u8>> = std::fs::read_dir(dir)
                    .map(|entries| {
                        entries
                            .filter_map(Result::ok)
                            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                files.iter().map(|(k, v)| format!("{k}: {} bytes, {:x}\n", v.len(), fnv(v))).collect()
            }
            Store::Etcd(endpoints) => etcdctl(endpoints, &["get", "--prefix", "/"]),
        }
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// `etcdctl --endpoints E ARGS` (v3 API): its stdout.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    let out = Command::new("etcdctl").env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoints}")).args(args).output().expect("run etcdctl");
    assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/resources").join(name)
}

/// The resources of a YAML or JSON file, as calicoctl reads them.
pub fn resources(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read testdata");
    calicoctl::input::items(&path.display().to_string(), &text).expect("testdata parses").into_iter().map(|i| i.value).collect()
}

/// YAML text (calicoctl's output) as a value.
pub fn yaml(text: &str) -> Value {
    let items = calicoctl::input::items("output", text).expect("calicoctl's YAML parses");
    assert_eq!(items.len(), 1, "one resource in {text}");
    items.into_iter().next().map(|i| i.value).unwrap_or(Value::Null)
}

/// Numbers Calico writes either way (an AS number as 64512 or "64512") compare as equal.
fn same(want: &Value, got: &Value) -> bool {
    let num = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    want == got || (num(want).is_some() && num(want) == num(got))
}

/// Every field of `want` is in `got` with the same value (`got` may have more: defaults, server fields).
pub fn assert_fields(want: &Value, got: &Value, path: &str) {
    match want {
        Value::Object(m) => {
            for (k, v) in m {
                // Calico's `omitempty`: a false, zero or empty field is stored and printed as absent.
                let empty = matches!(v, Value::Bool(false) | Value::Null)
                    || v.as_u64() == Some(0)
                    || v.as_str() == Some("")
                    || v.as_array().is_some_and(|a| a.is_empty())
                    || v.as_object().is_some_and(|o| o.is_empty());
                if empty && got.get(k).is_none() {
                    continue;
                }
                let g = got.get(k).unwrap_or_else(|| panic!("{path}.{k} missing in {got}"));
                assert_fields(v, g, &format!("{path}.{k}"));
            }
        }
        Value::Array(items) => {
            let g = got.as_array().unwrap_or_else(|| panic!("{path}: {got} is not a list"));
            assert_eq!(items.len(), g.len(), "{path}: {want} vs {got}");
            for (i, (w, g)) in items.iter().zip(g).enumerate() {
                assert_fields(w, g, &format!("{path}[{i}]"));
            }
        }
        _ => assert!(same(want, got), "{path}: want {want}, got {got}"),
    }
}

/// The cni-ipam binary of this workspace (built with it), for making allocations the way a runtime does.
pub fn cni_ipam() -> PathBuf {
    let bin = testbed::target_dir().join("cni-ipam");
    assert!(bin.exists(), "{} missing: build the workspace first (cargo build --workspace)", bin.display());
    bin
}

/// One node's plugin config over a store; `add` runs an ADD through the built cni-ipam.
pub struct Net {
    pub node: String,
    pub ipam: Value,
}

impl Net {
    pub fn local(store: &Path, node: &str) -> Net {
        Net { node: node.into(), ipam: json!({"type": "cni-ipam", "nodename": node, "local_store_dir": store}) }
    }

    pub fn etcd(endpoints: &str, lock: &Path, node: &str) -> Net {
        Net {
            node: node.into(),
            ipam: json!({"type": "cni-ipam", "nodename": node, "datastore_type": "etcdv3", "etcd_endpoints": endpoints, "ipam_lock_file": lock}),
        }
    }

    pub fn run(&self, verb: &str, cid: &str) -> (i32, Value, String) {
        let conf = json!({"cniVersion": "1.0.0", "name": "test-net", "type": "cni-calico", "ipam": self.ipam});
        let mut child = Command::new(cni_ipam())
            .env_clear()
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", format!("/var/run/netns/{cid}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cni-ipam");
        if let Some(mut si) = child.stdin.take() {
            let _ = si.write_all(conf.to_string().as_bytes());
        }
        let out = child.wait_with_output().expect("wait cni-ipam");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.code().unwrap_or(-1),
            serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// An ADD that must succeed; the address it gave.
    pub fn add(&self, cid: &str) -> String {
        let (rc, out, err) = self.run("ADD", cid);
        assert_eq!(rc, 0, "ADD {cid} on {}: {out} {err}", self.node);
        out["ips"][0]["address"].as_str().unwrap_or_default().split('/').next().unwrap_or_default().to_string()
    }
}
