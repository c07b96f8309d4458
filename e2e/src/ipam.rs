//! What the IPAM plugin has allocated, read from its store as a user would check it: cni-ipam's local
//! store (Calico's block records, one JSON file per key) or, for comparison runs, host-local's data dir.
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Ipam {
    /// cni-ipam with `local_store_dir`.
    Calico { store: PathBuf, nodename: String, pools: Vec<String> },
    /// Debian's host-local with `dataDir` (E2E_IPAM=host-local).
    HostLocal { data_dir: PathBuf, subnets: Vec<String> },
}

impl Ipam {
    /// cni-ipam unless E2E_IPAM=host-local asks for Debian's host-local (to tell plugin bugs from IPAM bugs).
    /// `pools`: CIDRs to allocate from (IPv4 and/or IPv6).
    pub fn for_test(dir: &Path, pools: &[&str]) -> Ipam {
        let pools: Vec<String> = pools.iter().map(|p| p.to_string()).collect();
        if std::env::var("E2E_IPAM").as_deref() == Ok("host-local") {
            Ipam::HostLocal { data_dir: dir.join("host-local"), subnets: pools }
        } else {
            Ipam::Calico { store: dir.join("ipam-store"), nodename: "e2e-node".into(), pools }
        }
    }

    /// Creates the pool in the store (cni-ipam allocates only from pools that exist, as Calico does), with
    /// the command a user runs: `calicoctl apply -f -` of an IPPool, on the local store.
    pub fn prepare(&self) {
        if let Ipam::Calico { store, pools, .. } = self {
            for (i, pool) in pools.iter().enumerate() {
                let doc = format!("{{\"apiVersion\": \"projectcalico.org/v3\", \"kind\": \"IPPool\", \"metadata\": {{\"name\": \"e2e-pool-{i}\"}}, \"spec\": {{\"cidr\": \"{pool}\"}}}}");
                let file = store.with_extension(format!("pool-{i}.json"));
                std::fs::write(&file, doc).expect("write the pool file");
                let mut c = calicoctl(store);
                c.args(["apply", "-f"]).arg(&file);
                crate::proc::run(&mut c, std::time::Duration::from_secs(30)).ok();
            }
        }
    }

    /// `calicoctl ipam show --show-blocks -o json`, the operator's view of the store (None for host-local).
    pub fn show(&self) -> Option<String> {
        let Ipam::Calico { store, .. } = self else { return None };
        let mut c = calicoctl(store);
        c.args(["ipam", "show", "--show-blocks", "-o", "json"]);
        Some(crate::proc::run(&mut c, std::time::Duration::from_secs(30)).ok())
    }

    /// Addresses in use according to `calicoctl ipam show` (its pools' `inUse`), to cross-check `allocations`.
    pub fn in_use_per_show(&self) -> Option<u64> {
        let text = self.show()?;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("`calicoctl ipam show -o json`: {e}: {text}"));
        let pools = v["pools"].as_array().cloned().unwrap_or_default();
        Some(pools.iter().map(|p| p["inUse"].as_str().and_then(|n| n.parse::<u64>().ok()).unwrap_or_else(|| panic!("unexpected pool {p}"))).sum())
    }

    /// Asserts that the store and `calicoctl ipam show` agree on how many addresses are in use, and returns it.
    pub fn assert_in_use(&self, n: usize) {
        let allocs = self.allocations();
        assert_eq!(allocs.len(), n, "allocations in the store: {allocs:?}");
        if let Some(shown) = self.in_use_per_show() {
            assert_eq!(shown as usize, n, "calicoctl ipam show disagrees:\n{}", self.show().unwrap_or_default());
        }
    }

    pub fn plugin(&self) -> &'static str {
        match self {
            Ipam::Calico { .. } => "cni-ipam",
            Ipam::HostLocal { .. } => "host-local",
        }
    }

    /// Puts this IPAM into a cni-calico plugin config (replacing its `ipam` object).
    pub fn apply(&self, plugin_conf: &mut Value) {
        match self {
            Ipam::Calico { store, nodename, pools } => {
                let (v6, v4): (Vec<&String>, Vec<&String>) = pools.iter().partition(|p| p.contains(':'));
                plugin_conf["ipam"]["type"] = "cni-ipam".into();
                plugin_conf["ipam"]["local_store_dir"] = store.to_string_lossy().into();
                plugin_conf["ipam"]["ipv4_pools"] = serde_json::json!(v4);
                if !v6.is_empty() {
                    plugin_conf["ipam"]["ipv6_pools"] = serde_json::json!(v6);
                }
                plugin_conf["ipam"]["nodename"] = nodename.as_str().into();
                plugin_conf["nodename"] = nodename.as_str().into();
            }
            Ipam::HostLocal { data_dir, subnets } => {
                let ranges: Vec<Value> = subnets.iter().map(|s| serde_json::json!([{ "subnet": s }])).collect();
                plugin_conf["ipam"] = serde_json::json!({ "type": "host-local", "dataDir": data_dir, "ranges": ranges });
            }
        }
    }

    /// Allocated address -> owner (cni-ipam: the handle, `<network>.<container id>`; host-local: the container id).
    pub fn allocations(&self) -> BTreeMap<IpAddr, String> {
        match self {
            Ipam::Calico { store, .. } => calico_allocations(store),
            Ipam::HostLocal { data_dir, .. } => host_local_allocations(data_dir),
        }
    }

    /// The owner of `ip`, if allocated.
    pub fn owner(&self, ip: IpAddr) -> Option<String> {
        self.allocations().get(&ip).cloned()
    }

    /// True if some allocation belongs to this container id.
    pub fn holds(&self, container_id: &str) -> bool {
        self.allocations().values().any(|o| o == container_id || o.ends_with(&format!(".{container_id}")))
    }
}

/// Walks the block records (`/calico/ipam/v2/assignment/...`): an allocated ordinal points at an attribute
/// whose handle_id names the owner.
fn calico_allocations(store: &Path) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(store) else { return out };
    for e in entries.flatten() {
        // Dot files are the store's own (lock, write-ahead log, spare files holding superseded records).
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        let Ok(rec) = serde_json::from_str::<Value>(&text) else { continue };
        if !rec["key"].as_str().unwrap_or("").starts_with("/calico/ipam/v2/assignment/") {
            continue;
        }
        let block = &rec["value"];
        let Some(cidr) = block["cidr"].as_str() else { continue };
        let Some((base, _)) = cidr.split_once('/') else { continue };
        let Ok(base) = base.parse::<IpAddr>() else { continue };
        for (ordinal, a) in block["allocations"].as_array().into_iter().flatten().enumerate() {
            let Some(attr) = a.as_u64() else { continue };
            let owner = block["attributes"][attr as usize]["handle_id"].as_str().unwrap_or("").to_string();
            out.insert(nth(base, ordinal as u128), owner);
        }
    }
    out
}

fn nth(base: IpAddr, n: u128) -> IpAddr {
    match base {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + n as u32).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + n).into()),
    }
}

/// host-local keeps one file per address (named by it, holding "<container id>\n<ifname>") per network.
fn host_local_allocations(dir: &Path) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    for net in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(net.path()).into_iter().flatten().flatten() {
            if let Ok(ip) = f.file_name().to_string_lossy().parse::<IpAddr>() {
                let owner = std::fs::read_to_string(f.path()).unwrap_or_default();
                out.insert(ip, owner.lines().next().unwrap_or("").trim().to_string());
            }
        }
    }
    out
}

/// calicoctl on the local store at `store` (a config file beside it, so nothing of the machine's is read).
fn calicoctl(store: &std::path::Path) -> std::process::Command {
    let cfg = store.with_extension("calicoctl.cfg");
    let spec = format!("{{\"apiVersion\": \"projectcalico.org/v3\", \"kind\": \"CalicoAPIConfig\", \"spec\": {{\"datastoreType\": \"local\", \"localStoreDir\": \"{}\"}}}}", store.display());
    std::fs::write(&cfg, spec).expect("write the calicoctl config");
    let mut c = std::process::Command::new(crate::built("calicoctl"));
    c.arg("--config").arg(cfg);
    c
}
