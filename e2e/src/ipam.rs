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
    /// the operator command a user runs: `cni-ipam --store DIR pool add --name NAME --cidr CIDR`.
    pub fn prepare(&self) {
        if let Ipam::Calico { store, pools, .. } = self {
            for (i, pool) in pools.iter().enumerate() {
                let mut c = std::process::Command::new(crate::built("cni-ipam"));
                c.arg("--store").arg(store).args(["pool", "add", "--name", &format!("e2e-pool-{i}"), "--cidr", pool]);
                crate::proc::run(&mut c, std::time::Duration::from_secs(30)).ok();
            }
        }
    }

    /// `cni-ipam show --blocks`, the operator's view of the store (None for host-local).
    pub fn show(&self) -> Option<String> {
        let Ipam::Calico { store, .. } = self else { return None };
        let mut c = std::process::Command::new(crate::built("cni-ipam"));
        c.arg("--store").arg(store).args(["show", "--blocks"]);
        Some(crate::proc::run(&mut c, std::time::Duration::from_secs(30)).ok())
    }

    /// Addresses in use according to `cni-ipam show` (its "IP Pool" lines), to cross-check `allocations`.
    pub fn in_use_per_show(&self) -> Option<u64> {
        let text = self.show()?;
        let mut total = 0;
        for l in text.lines().filter(|l| l.starts_with("IP Pool")) {
            let n = l.split_whitespace().nth(4).and_then(|t| t.parse::<u64>().ok());
            total += n.unwrap_or_else(|| panic!("unexpected `cni-ipam show` line: {l}"));
        }
        Some(total)
    }

    /// Asserts that the store and `cni-ipam show` agree on how many addresses are in use, and returns it.
    pub fn assert_in_use(&self, n: usize) {
        let allocs = self.allocations();
        assert_eq!(allocs.len(), n, "allocations in the store: {allocs:?}");
        if let Some(shown) = self.in_use_per_show() {
            assert_eq!(shown as usize, n, "cni-ipam show disagrees:\n{}", self.show().unwrap_or_default());
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
