//! What the IPAM plugin has allocated, read from its store as a user would check it: cni-ipam's local
//! store (Calico's block records, one JSON file per key) or, for comparison runs, host-local's data dir.
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Ipam {
    /// cni-ipam with `local_store_dir`.
    Calico { store: PathBuf, nodename: String, pool: String },
    /// Debian's host-local with `dataDir` (E2E_IPAM=host-local).
    HostLocal { data_dir: PathBuf, subnet: String },
}

impl Ipam {
    /// cni-ipam unless E2E_IPAM=host-local asks for Debian's host-local (to tell plugin bugs from IPAM bugs).
    pub fn for_test(dir: &Path, pool: &str) -> Ipam {
        if std::env::var("E2E_IPAM").as_deref() == Ok("host-local") {
            Ipam::HostLocal { data_dir: dir.join("host-local"), subnet: pool.to_string() }
        } else {
            Ipam::Calico { store: dir.join("ipam-store"), nodename: "e2e-node".into(), pool: pool.to_string() }
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
            Ipam::Calico { store, nodename, pool } => {
                plugin_conf["ipam"]["type"] = "cni-ipam".into();
                plugin_conf["ipam"]["local_store_dir"] = store.to_string_lossy().into();
                plugin_conf["ipam"]["ipv4_pools"] = serde_json::json!([pool]);
                plugin_conf["ipam"]["nodename"] = nodename.as_str().into();
                plugin_conf["nodename"] = nodename.as_str().into();
            }
            Ipam::HostLocal { data_dir, subnet } => {
                plugin_conf["ipam"] = serde_json::json!({
                    "type": "host-local", "dataDir": data_dir, "ranges": [[{ "subnet": subnet }]]
                });
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
