//! The operator commands cni-ipam had (`show`, `check`, `release`, `configure`, `config`, `pool`, `index`)
//! are calicoctl's now (`calicoctl ipam ...`, `calicoctl apply|get|delete ippool`). Each old command line
//! still works: it prints one line on stderr naming the calicoctl command, and runs it (found as `$CALICOCTL`,
//! next to this binary, or on PATH), with the store the old flags named written to a temporary calicoctl
//! config file.
use crate::ipam::config::{IpamConf, StoreConf, DEFAULT_STORE_DIR};
use datastore::store::EtcdOptions;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const USAGE: &str = "\
cni-ipam: the calico-rs IPAM plugin; a container runtime runs it with CNI_COMMAND set.

The operator commands moved to calicoctl (installed next to the plugins):
  calicoctl ipam show [--show-blocks|--show-borrowed|--show-configuration|--ip IP]
  calicoctl ipam check [--node N --valid-ids FILE] [--links] [-o REPORT.json]
  calicoctl ipam release --ip IP | --from-report REPORT.json
  calicoctl ipam configure --strictaffinity=true|false [--max-blocks-per-host N]
  calicoctl apply -f pools.yaml, calicoctl get ippools, calicoctl delete ippool NAME
The old spellings (cni-ipam [--store DIR | --etcd-endpoints URLS | --config NETCONF] show|check|release|
configure|config|pool|index ...) still run them, with a note.
";

/// Old flags that take no value.
const SWITCHES: &[&str] =
    &["--nat-outgoing", "--disabled", "--blocks", "--show-blocks", "--show-borrowed", "--show-configuration", "--force", "--links"];

struct Old {
    words: Vec<String>,
    flags: BTreeMap<String, Vec<Option<String>>>,
}

impl Old {
    fn parse(argv: &[String]) -> Result<Old, String> {
        let mut old = Old { words: Vec::new(), flags: BTreeMap::new() };
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            if a.starts_with("--") || a == "-o" {
                let (k, v) = match a.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None if SWITCHES.contains(&a.as_str()) => (a.clone(), None),
                    None => (a.clone(), Some(it.next().ok_or(format!("{a} needs a value"))?.clone())),
                };
                let k = if k == "--strictaffinity" { "--strict-affinity".to_string() } else { k };
                old.flags.entry(k).or_default().push(v);
            } else {
                old.words.push(a.clone());
            }
        }
        Ok(old)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.flags.get(k).and_then(|v| v.last()).and_then(|v| v.as_deref())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.flags.get(k).map(|v| v.iter().filter_map(|x| x.as_deref()).collect()).unwrap_or_default()
    }
    fn has(&self, k: &str) -> bool {
        self.flags.contains_key(k)
    }
}

/// The calicoctl command line (and its stdin) that does what an old one did.
fn translate(old: &Old) -> Result<(Vec<String>, Option<String>), String> {
    let words: Vec<&str> = old.words.iter().map(String::as_str).collect();
    let mut out: Vec<String> = Vec::new();
    let mut stdin = None;
    let pass = |out: &mut Vec<String>, from: &str, to: &str| {
        for v in old.all(from) {
            out.push(format!("{to}={v}"));
        }
        if old.all(from).is_empty() && old.has(from) {
            out.push(to.to_string());
        }
    };
    match words.as_slice() {
        ["show"] => {
            out.extend(["ipam", "show"].map(String::from));
            if old.has("--blocks") {
                out.push("--show-blocks".into());
            }
            for f in ["--show-blocks", "--show-borrowed", "--show-configuration", "--ip"] {
                pass(&mut out, f, f);
            }
            pass(&mut out, "-o", "--output");
        }
        ["check"] => {
            out.extend(["ipam", "check"].map(String::from));
            for f in ["--node", "--valid-ids", "--network", "--links"] {
                pass(&mut out, f, f);
            }
            if let Some(o) = old.get("-o") {
                out.push(format!("--output={}", if o == "json" { "-" } else { o }));
            }
        }
        ["release"] => {
            out.extend(["ipam", "release"].map(String::from));
            for f in ["--ip", "--from-report", "--force"] {
                pass(&mut out, f, f);
            }
        }
        ["configure"] | ["config", "set"] => {
            out.extend(["ipam", "configure"].map(String::from));
            pass(&mut out, "--strict-affinity", "--strictaffinity");
            pass(&mut out, "--max-blocks-per-host", "--max-blocks-per-host");
            pass(&mut out, "--auto-allocate-blocks", "--auto-allocate-blocks");
        }
        ["config", "show"] => {
            out.extend(["ipam", "show", "--show-configuration"].map(String::from));
            pass(&mut out, "-o", "--output");
        }
        ["pool", "add"] => {
            let need = |k: &str| old.get(k).map(str::to_string).ok_or_else(|| format!("pool add needs {k}"));
            let mut spec = json!({"cidr": need("--cidr")?});
            if let Some(b) = old.get("--block-size") {
                spec["blockSize"] = b.parse::<u64>().map(Into::into).map_err(|_| format!("--block-size {b:?} is not a number"))?;
            }
            for (flag, field) in [("--node-selector", "nodeSelector"), ("--ipip-mode", "ipipMode"), ("--vxlan-mode", "vxlanMode")] {
                if let Some(v) = old.get(flag) {
                    spec[field] = v.into();
                }
            }
            spec["natOutgoing"] = old.has("--nat-outgoing").into();
            spec["disabled"] = old.has("--disabled").into();
            let doc = json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": need("--name")?}, "spec": spec});
            stdin = Some(doc.to_string());
            out.extend(["apply", "-f", "-"].map(String::from));
        }
        ["pool", "list"] => {
            let o = if old.get("-o") == Some("json") { "json" } else { "wide" };
            out.extend(["get", "ippools", "-o", o].map(String::from));
        }
        ["pool", "delete"] => {
            if old.has("--force") {
                return Err("pool delete --force is gone: release the pool's addresses first (calicoctl ipam release)".into());
            }
            let name = old.get("--name").ok_or("pool delete needs --name NAME")?;
            out.extend(["delete", "ippool", name].map(String::from));
        }
        ["pool", "load"] => {
            let file = old.get("--file").ok_or("pool load needs --file FILE")?;
            out.extend(["apply", "-f", file].map(String::from));
        }
        ["index", "rebuild"] => out.extend(["ipam", "rebuild-index"].map(String::from)),
        _ => return Err(format!("unknown command {:?}\n\n{USAGE}", words.join(" "))),
    }
    Ok((out, stdin))
}

/// The calicoctl config (`CalicoAPIConfig`) for the store the old flags name.
fn api_config(old: &Old) -> Result<serde_json::Value, String> {
    let store = if let Some(file) = old.get("--config") {
        let text = std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?;
        let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{file} is not JSON: {e}"))?;
        // A conflist: the first plugin with an ipam section, with the list's name.
        if let Some(plugins) = v.get("plugins").and_then(|p| p.as_array()) {
            let mut p = plugins.iter().find(|p| p.get("ipam").is_some()).cloned().ok_or_else(|| format!("{file}: no plugin has an ipam section"))?;
            p["name"] = v["name"].clone();
            v = p;
        }
        IpamConf::parse(&v).map_err(|e| e.to_string())?.store
    } else if let Some(endpoints) = old.get("--etcd-endpoints") {
        let mut o = EtcdOptions::new(endpoints);
        let path = |k: &str| old.get(k).filter(|s| !s.is_empty()).map(PathBuf::from);
        o.tls = datastore::store::etcd::TlsFiles { ca: path("--etcd-ca-cert-file"), cert: path("--etcd-cert-file"), key: path("--etcd-key-file") };
        if let Some(t) = old.get("--etcd-timeout") {
            o.timeout = std::time::Duration::from_secs_f64(t.parse::<f64>().map_err(|_| format!("--etcd-timeout {t:?} is not a number"))?);
        }
        StoreConf::Etcd(o)
    } else {
        StoreConf::Local(old.get("--store").unwrap_or(DEFAULT_STORE_DIR).into())
    };
    let spec = match store {
        StoreConf::Local(dir) => json!({"datastoreType": "local", "localStoreDir": dir}),
        StoreConf::Etcd(o) => {
            let file = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            json!({"datastoreType": "etcdv3", "etcdEndpoints": o.endpoints.join(","), "etcdCACertFile": file(&o.tls.ca),
                   "etcdCertFile": file(&o.tls.cert), "etcdKeyFile": file(&o.tls.key), "etcdTimeout": o.timeout.as_secs_f64()})
        }
    };
    Ok(json!({"apiVersion": "projectcalico.org/v3", "kind": "CalicoAPIConfig", "metadata": {}, "spec": spec}))
}

/// `$CALICOCTL`, else `calicoctl` next to this binary, else on PATH.
fn calicoctl() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CALICOCTL").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let sibling = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("calicoctl")));
    if let Some(s) = sibling.filter(|s| s.exists()) {
        return Some(s);
    }
    std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join("calicoctl")).find(|p| p.exists()))
}

/// Runs an old operator command line through calicoctl; returns the exit code.
pub fn run(argv: &[String]) -> i32 {
    match alias(argv) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cni-ipam: {e}");
            2
        }
    }
}

fn alias(argv: &[String]) -> Result<i32, String> {
    let old = Old::parse(argv)?;
    let (args, stdin) = translate(&old)?;
    let config = api_config(&old)?;
    let store = match config["spec"]["datastoreType"].as_str() {
        Some("local") => format!("local store {}", config["spec"]["localStoreDir"].as_str().unwrap_or_default()),
        _ => format!("etcd {}", config["spec"]["etcdEndpoints"].as_str().unwrap_or_default()),
    };
    eprintln!("cni-ipam {}: deprecated; this runs `calicoctl {}` on the {store}", old.words.join(" "), args.join(" "));
    let bin = calicoctl().ok_or("calicoctl was not found ($CALICOCTL, next to cni-ipam, or on PATH); scripts/install.sh installs it")?;
    let cfg_path = std::env::temp_dir().join(format!("cni-ipam-calicoctl-{}-{}.cfg", std::process::id(), nanos()));
    let _guard = TempFile::create(&cfg_path, config.to_string().as_bytes())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--config").arg(&cfg_path).args(&args);
    // calicoctl reads only the file given; the environment's datastore settings must not mix in.
    for k in ["DATASTORE_TYPE", "CALICO_DATASTORE_TYPE", "ETCD_ENDPOINTS", "CALICO_ETCD_ENDPOINTS", "CALICO_LOCAL_STORE_DIR"] {
        cmd.env_remove(k);
    }
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| format!("running {}: {e}", bin.display()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| format!("writing to calicoctl: {e}"))?;
    }
    let status = child.wait().map_err(|e| format!("waiting for calicoctl: {e}"))?;
    Ok(status.code().unwrap_or(1))
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// A private temporary file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn create(path: &Path, content: &[u8]) -> Result<TempFile, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        f.write_all(content).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(TempFile(path.to_path_buf()))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Vec<String> {
        translate(&Old::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()).unwrap().0
    }

    #[test]
    fn old_command_lines_become_calicoctls() {
        assert_eq!(t(&["show", "--blocks", "-o", "json"]), ["ipam", "show", "--show-blocks", "--output=json"]);
        assert_eq!(t(&["check", "--node", "n", "-o", "json"]), ["ipam", "check", "--node=n", "--output=-"]);
        assert_eq!(t(&["release", "--ip", "10.0.0.1", "--ip", "10.0.0.2"]), ["ipam", "release", "--ip=10.0.0.1", "--ip=10.0.0.2"]);
        assert_eq!(
            t(&["configure", "--strictaffinity=true", "--max-blocks-per-host", "3"]),
            ["ipam", "configure", "--strictaffinity=true", "--max-blocks-per-host=3"]
        );
        assert_eq!(t(&["pool", "delete", "--name", "p"]), ["delete", "ippool", "p"]);
        assert_eq!(t(&["pool", "load", "--file", "f.json"]), ["apply", "-f", "f.json"]);
        let old = Old::parse(&["pool", "add", "--name", "p", "--cidr", "10.0.0.0/24", "--block-size", "28"].map(String::from)).unwrap();
        let (args, stdin) = translate(&old).unwrap();
        assert_eq!(args, ["apply", "-f", "-"]);
        let doc: serde_json::Value = serde_json::from_str(&stdin.unwrap()).unwrap();
        assert_eq!((doc["metadata"]["name"].as_str(), doc["spec"]["blockSize"].as_u64()), (Some("p"), Some(28)));
        let cfg = api_config(&Old::parse(&["--store".into(), "/s".into(), "show".into()]).unwrap()).unwrap();
        assert_eq!(cfg["spec"], json!({"datastoreType": "local", "localStoreDir": "/s"}));
    }
}
