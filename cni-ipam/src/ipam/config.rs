//! The `ipam` section of the network config (Calico's key names) and the CNI_ARGS the plugin reads, parsed
//! once into typed values. Unknown keys are ignored; a known key with a malformed value is an error naming it.
use super::allocator::{Node, PoolRef};
use crate::error::IpamError;
use datastore::resources::ippool::validate_pool_name;
use datastore::store::etcd::TlsFiles;
use datastore::store::EtcdOptions;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_STORE_DIR: &str = datastore::config::DEFAULT_LOCAL_DIR;
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";
/// Calico's node-wide IPAM lock (used with the etcd store; the local store locks its own directory).
pub const DEFAULT_LOCK_FILE: &str = "/var/run/calico/ipam.lock";
pub const DEFAULT_ETCD_TIMEOUT_SECS: f64 = 5.0;

/// Where allocations live.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConf {
    /// `datastore_type: "local"`: one directory on this node.
    Local(PathBuf),
    /// `datastore_type: "etcdv3"`: a cluster shared by every node.
    Etcd(EtcdOptions),
}

/// The etcd keys, accepted at the top level (as Calico's netconf has them) or inside `ipam` (which wins).
/// Kept as raw values (flattened fields lose serde's error path), typed in `options` with the key named.
#[derive(Debug, Default, Deserialize)]
struct RawEtcd {
    #[serde(default)]
    etcd_endpoints: Option<serde_json::Value>,
    #[serde(default)]
    etcd_key_file: Option<serde_json::Value>,
    #[serde(default)]
    etcd_cert_file: Option<serde_json::Value>,
    #[serde(default)]
    etcd_ca_cert_file: Option<serde_json::Value>,
    #[serde(default)]
    etcd_timeout: Option<serde_json::Value>,
    #[serde(default)]
    ipam_lock_file: Option<serde_json::Value>,
}

/// A string-valued key (null = absent).
fn string(key: &str, v: Option<serde_json::Value>) -> Result<Option<String>, IpamError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(IpamError::Config(format!("{key} must be a string, got {other}"))),
    }
}

impl RawEtcd {
    fn or(self, top: RawEtcd) -> RawEtcd {
        RawEtcd {
            etcd_endpoints: self.etcd_endpoints.or(top.etcd_endpoints),
            etcd_key_file: self.etcd_key_file.or(top.etcd_key_file),
            etcd_cert_file: self.etcd_cert_file.or(top.etcd_cert_file),
            etcd_ca_cert_file: self.etcd_ca_cert_file.or(top.etcd_ca_cert_file),
            etcd_timeout: self.etcd_timeout.or(top.etcd_timeout),
            ipam_lock_file: self.ipam_lock_file.or(top.ipam_lock_file),
        }
    }

    /// Typed etcd options; every malformed value is an error naming its key.
    fn options(self) -> Result<EtcdOptions, IpamError> {
        let endpoints = string("etcd_endpoints", self.etcd_endpoints)?.filter(|e| !e.trim().is_empty()).ok_or_else(|| {
            IpamError::Config("datastore_type \"etcdv3\" needs etcd_endpoints (e.g. \"https://10.0.0.1:2379,https://10.0.0.2:2379\")".into())
        })?;
        let mut opts = EtcdOptions::new(&endpoints);
        for e in &opts.endpoints {
            datastore::store::etcd::Endpoint::parse(e).map_err(|m| IpamError::Config(format!("etcd_endpoints: {m}")))?;
        }
        let file = |key: &str, v: Option<serde_json::Value>| -> Result<Option<PathBuf>, IpamError> {
            match string(key, v)?.filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(p) if Path::new(&p).is_absolute() => Ok(Some(PathBuf::from(p))),
                Some(p) => Err(IpamError::Config(format!("{key} {p:?} must be an absolute path"))),
            }
        };
        opts.tls = TlsFiles {
            ca: file("etcd_ca_cert_file", self.etcd_ca_cert_file)?,
            cert: file("etcd_cert_file", self.etcd_cert_file)?,
            key: file("etcd_key_file", self.etcd_key_file)?,
        };
        let secs = match &self.etcd_timeout {
            None => DEFAULT_ETCD_TIMEOUT_SECS,
            Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(-1.0),
            Some(serde_json::Value::String(s)) => s.trim().trim_end_matches('s').parse::<f64>().unwrap_or(-1.0),
            Some(_) => -1.0,
        };
        if !(secs > 0.0 && secs <= 3600.0) {
            return Err(IpamError::Config(format!(
                "etcd_timeout {} must be a number of seconds between 0 and 3600",
                self.etcd_timeout.map(|v| v.to_string()).unwrap_or_default()
            )));
        }
        opts.timeout = Duration::from_secs_f64(secs);
        opts.lock_file = match string("ipam_lock_file", self.ipam_lock_file)? {
            None => Some(PathBuf::from(DEFAULT_LOCK_FILE)),
            Some(p) if p.is_empty() => None,
            Some(p) => file("ipam_lock_file", Some(serde_json::Value::String(p)))?,
        };
        Ok(opts)
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawNetConf {
    #[serde(default)]
    nodename: Option<String>,
    #[serde(default)]
    nodename_file: Option<String>,
    /// Deprecated in Calico for `nodename`; still honoured, after the nodename file.
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    datastore_type: Option<String>,
    #[serde(default)]
    ipam: Option<RawIpam>,
    #[serde(flatten)]
    etcd: RawEtcd,
}

#[derive(Debug, Default, Deserialize)]
struct RawIpam {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    assign_ipv4: Option<String>,
    #[serde(default)]
    assign_ipv6: Option<String>,
    #[serde(default)]
    ipv4_pools: Option<Vec<String>>,
    #[serde(default)]
    ipv6_pools: Option<Vec<String>>,
    #[serde(default)]
    nodename: Option<String>,
    #[serde(default)]
    nodename_file: Option<String>,
    #[serde(default)]
    datastore_type: Option<String>,
    #[serde(default)]
    local_store_dir: Option<String>,
    #[serde(default)]
    node_labels: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    etcd: RawEtcd,
}

/// Everything the plugin needs from the network config.
#[derive(Debug, Clone, PartialEq)]
pub struct IpamConf {
    pub assign_ipv4: bool,
    pub assign_ipv6: bool,
    pub ipv4_pools: Vec<PoolRef>,
    pub ipv6_pools: Vec<PoolRef>,
    pub node: Node,
    pub store: StoreConf,
}

impl IpamConf {
    /// IPv4 from every pool for `node`, with the store given separately: what benchmarks and tests that
    /// bring their own store use.
    pub fn v4_for_node(node: &str) -> IpamConf {
        IpamConf {
            assign_ipv4: true,
            assign_ipv6: false,
            ipv4_pools: vec![],
            ipv6_pools: vec![],
            node: Node { name: node.to_string(), labels: BTreeMap::new() },
            store: StoreConf::Local("/unused".into()),
        }
    }

    /// Parses the whole network config as received on stdin.
    pub fn parse(config: &serde_json::Value) -> Result<IpamConf, IpamError> {
        let raw: RawNetConf = serde_path_to_error::deserialize(config).map_err(|e| IpamError::Config(format!("{}: {}", e.path(), e.inner())))?;
        let ipam = raw.ipam.ok_or_else(|| IpamError::Config("missing \"ipam\" section".into()))?;
        if ipam.kind.as_deref().is_none_or(str::is_empty) {
            return Err(IpamError::Config("ipam.type is missing".into()));
        }
        // Calico: IPv4 unless exactly "false"; IPv6 only if exactly "true".
        let assign_ipv4 = ipam.assign_ipv4.as_deref() != Some("false");
        let assign_ipv6 = ipam.assign_ipv6.as_deref() == Some("true");
        if !assign_ipv4 && !assign_ipv6 {
            return Err(IpamError::Config("assign_ipv4 and assign_ipv6 are both false: nothing to assign".into()));
        }
        let ipv4_pools = parse_pools("ipam.ipv4_pools", ipam.ipv4_pools.as_deref().unwrap_or(&[]), false)?;
        let ipv6_pools = parse_pools("ipam.ipv6_pools", ipam.ipv6_pools.as_deref().unwrap_or(&[]), true)?;

        let store = match ipam.datastore_type.as_deref().or(raw.datastore_type.as_deref()).unwrap_or("local") {
            "local" | "" => {
                let store_dir = PathBuf::from(ipam.local_store_dir.as_deref().unwrap_or(DEFAULT_STORE_DIR));
                if !store_dir.is_absolute() {
                    return Err(IpamError::Config(format!("ipam.local_store_dir {:?} must be an absolute path", store_dir)));
                }
                StoreConf::Local(store_dir)
            }
            "etcdv3" => StoreConf::Etcd(ipam.etcd.or(raw.etcd).options()?),
            other => return Err(IpamError::DatastoreNotSupported(other.to_string())),
        };
        let labels = ipam.node_labels.unwrap_or_default();
        if let Some(k) = labels.keys().find(|k| k.is_empty()) {
            return Err(IpamError::Config(format!("ipam.node_labels has an empty key (value {:?})", labels[k])));
        }
        let name = resolve_nodename(
            ipam.nodename.or(raw.nodename).filter(|n| !n.is_empty()),
            ipam.nodename_file.or(raw.nodename_file).as_deref().map(Path::new),
            raw.hostname.filter(|n| !n.is_empty()),
        )?;
        Ok(IpamConf { assign_ipv4, assign_ipv6, ipv4_pools, ipv6_pools, node: Node { name, labels }, store })
    }
}

fn parse_pools(key: &str, entries: &[String], v6: bool) -> Result<Vec<PoolRef>, IpamError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if e.contains('/') {
                let net: IpNet = e.parse().map_err(|_| IpamError::Config(format!("{key}[{i}]: {e:?} is neither a pool name nor a CIDR")))?;
                if net.addr().is_ipv6() != v6 {
                    return Err(IpamError::Config(format!("{key}[{i}]: {e:?} is not an IPv{} CIDR", if v6 { 6 } else { 4 })));
                }
                if net.addr() != net.network() {
                    return Err(IpamError::Config(format!("{key}[{i}]: {e:?} has host bits set")));
                }
                Ok(PoolRef::Cidr(net))
            } else {
                validate_pool_name(e).map_err(|err| IpamError::Config(format!("{key}[{i}]: {err}")))?;
                Ok(PoolRef::Name(e.clone()))
            }
        })
        .collect()
}

/// Calico's order: `nodename` in the config, else the nodename file, else the deprecated top-level `hostname`,
/// else the host name. A name that fails validation is an error naming where it came from.
fn resolve_nodename(configured: Option<String>, file: Option<&Path>, deprecated_hostname: Option<String>) -> Result<String, IpamError> {
    let file = file.unwrap_or(Path::new(DEFAULT_NODENAME_FILE));
    let from_file = || std::fs::read_to_string(file).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let (name, source) = if let Some(n) = configured {
        (n, "nodename".to_string())
    } else if let Some(n) = from_file() {
        (n, format!("nodename file {}", file.display()))
    } else if let Some(n) = deprecated_hostname {
        tracing::warn!("the config key 'hostname' is deprecated, use 'nodename'");
        (n, "hostname".to_string())
    } else {
        (hostname()?, "host name".to_string())
    };
    validate_nodename(&name).map_err(|e| match e {
        IpamError::Config(m) => IpamError::Config(format!("{source}: {m}")),
        other => other,
    })?;
    Ok(name)
}

fn hostname() -> Result<String, IpamError> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .map_err(|e| IpamError::Config(format!("no nodename configured and the host name is unreadable: {e}")))
}

/// Node names become parts of store keys: keep them to Kubernetes node-name characters.
pub fn validate_nodename(name: &str) -> Result<(), IpamError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(IpamError::Config(format!("nodename {name:?} is invalid: use letters, digits, '-', '.', '_' (at most 253, starting alphanumeric)")))
    }
}

/// The addresses an ADD asks for, from every place a runtime may put them: CNI_ARGS `IP=a[,b]` (Calico's and
/// host-local's legacy argument), `runtimeConfig.ips` (the `ips` capability: podman with two or more static
/// addresses, Multus) and `args.cni.ips` (the args convention), each entry `addr[/prefix]` with the prefix
/// ignored. Like host-local, the sources add up and the same address named twice is one request; unlike
/// host-local's ranges, Calico assigns at most one address per family, so two different addresses of one
/// family are an error naming both. Malformed entries are errors naming their key (code 4 for CNI_ARGS, 7 for
/// the config).
pub fn requested_ips(config: &serde_json::Value, ip_arg: Option<&str>) -> Result<Vec<IpAddr>, IpamError> {
    // (address, where it came from, whether from CNI_ARGS)
    let mut wanted: Vec<(IpAddr, String, bool)> = Vec::new();
    if let Some(arg) = ip_arg.filter(|a| !a.is_empty()) {
        for part in arg.split(',') {
            let ip = parse_requested(part).ok_or_else(|| IpamError::Args(format!("IP={part:?} is not an IP address")))?;
            wanted.push((ip, format!("IP={}", part.trim()), true));
        }
    }
    let lists = [("runtimeConfig.ips", config.get("runtimeConfig").and_then(|r| r.get("ips"))), ("args.cni.ips", config.pointer("/args/cni/ips"))];
    for (key, list) in lists {
        let items = match list {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::Array(items)) => items,
            Some(other) => return Err(IpamError::Config(format!("{key} must be a list of addresses, got {other}"))),
        };
        for (i, item) in items.iter().enumerate() {
            let ip = item.as_str().and_then(parse_requested).ok_or_else(|| IpamError::Config(format!("{key}[{i}]: {item} is not an IP address")))?;
            wanted.push((ip, format!("{key}[{i}] {ip}"), false));
        }
    }
    let mut out: Vec<(IpAddr, String, bool)> = Vec::new();
    for (ip, source, from_args) in wanted {
        match out.iter().find(|(o, _, _)| o.is_ipv6() == ip.is_ipv6()) {
            Some((o, _, _)) if *o == ip => {}
            Some((_, first, first_from_args)) => {
                let msg = format!(
                    "{first} and {source} ask for more than one IPv{} address (one per family, as Calico assigns)",
                    if ip.is_ipv6() { 6 } else { 4 }
                );
                return Err(if from_args && *first_from_args { IpamError::Args(msg) } else { IpamError::Config(msg) });
            }
            None => out.push((ip, source, from_args)),
        }
    }
    Ok(out.into_iter().map(|(ip, _, _)| ip).collect())
}

/// `addr` or `addr/prefix` (a valid prefix for the family, otherwise ignored).
fn parse_requested(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    match entry.split_once('/') {
        None => entry.parse().ok(),
        Some(_) => entry.parse::<IpNet>().ok().map(|n| n.addr()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(ipam: serde_json::Value) -> Result<IpamConf, IpamError> {
        IpamConf::parse(&json!({"name": "net", "cniVersion": "1.0.0", "type": "calico", "nodename": "n1", "ipam": ipam}))
    }

    #[test]
    fn defaults_and_calico_string_flags() {
        let c = conf(json!({"type": "calico-ipam"})).unwrap();
        assert!(c.assign_ipv4 && !c.assign_ipv6);
        assert_eq!(c.node.name, "n1");
        assert_eq!(c.store, StoreConf::Local(PathBuf::from(DEFAULT_STORE_DIR)));
        let c = conf(json!({"type": "calico-ipam", "assign_ipv4": "False", "assign_ipv6": "TRUE"})).unwrap();
        assert!(c.assign_ipv4 && !c.assign_ipv6, "only exact strings count, as in Calico");
        let c = conf(json!({"type": "x", "assign_ipv6": "true", "ipv6_pools": ["fd00::/48", "v6pool"], "unknown": [1]})).unwrap();
        assert_eq!(c.ipv6_pools, vec![PoolRef::Cidr("fd00::/48".parse().unwrap()), PoolRef::Name("v6pool".into())]);
    }

    #[test]
    fn malformed_known_keys_name_the_key() {
        let cases = [
            (json!({"type": "x", "assign_ipv4": true}), "assign_ipv4"),
            (json!({"type": "x", "ipv4_pools": "p"}), "ipv4_pools"),
            (json!({"type": "x", "ipv4_pools": ["10.0.0.0/33"]}), "ipv4_pools[0]"),
            (json!({"type": "x", "ipv4_pools": ["fd00::/48"]}), "ipv4_pools[0]"),
            (json!({"type": "x", "ipv4_pools": ["Bad_Name"]}), "ipv4_pools[0]"),
            (json!({"type": "x", "local_store_dir": "relative"}), "local_store_dir"),
            (json!({"type": "x", "nodename": "../etc"}), "nodename"),
            (json!({"type": "x", "node_labels": {"a": 1}}), "node_labels"),
            (json!({"type": "x", "assign_ipv4": "false"}), "both false"),
            (json!({}), "ipam.type"),
        ];
        for (ipam, what) in cases {
            let err = conf(ipam.clone()).unwrap_err();
            assert_eq!(err.code(), 7, "{ipam}");
            assert!(err.to_string().contains(what), "{ipam}: {err}");
        }
        let err = conf(json!({"type": "x", "datastore_type": "kubernetes"})).unwrap_err();
        assert!(err.to_string().contains("not supported"));
        for (ipam, what) in [
            (json!({"type": "x", "datastore_type": "etcdv3"}), "etcd_endpoints"),
            (json!({"type": "x", "datastore_type": "etcdv3", "etcd_endpoints": "10.0.0.1:2379"}), "etcd_endpoints"),
            (json!({"type": "x", "datastore_type": "etcdv3", "etcd_endpoints": "http://h:1", "etcd_timeout": 0}), "etcd_timeout"),
            (json!({"type": "x", "datastore_type": "etcdv3", "etcd_endpoints": "http://h:1", "etcd_ca_cert_file": "ca.pem"}), "etcd_ca_cert_file"),
            (json!({"type": "x", "datastore_type": "etcdv3", "etcd_endpoints": 5}), "etcd_endpoints"),
            (json!({"type": "x", "datastore_type": "etcdv3", "etcd_endpoints": "http://h:1", "etcd_timeout": "soon"}), "etcd_timeout"),
        ] {
            let err = conf(ipam.clone()).unwrap_err();
            assert_eq!(err.code(), 7, "{ipam}");
            assert!(err.to_string().contains(what), "{ipam}: {err}");
        }
    }

    #[test]
    fn etcd_keys_at_top_level_or_in_ipam() {
        let c = IpamConf::parse(&json!({"name": "net", "nodename": "n1", "datastore_type": "etcdv3",
            "etcd_endpoints": "https://10.0.0.1:2379, https://10.0.0.2:2379", "etcd_ca_cert_file": "/etc/ca.pem",
            "ipam": {"type": "calico-ipam", "etcd_timeout": "2.5", "ipam_lock_file": ""}}))
        .unwrap();
        let StoreConf::Etcd(o) = c.store else { panic!("not etcd") };
        assert_eq!(o.endpoints, ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]);
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.tls.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(o.lock_file, None);
        let c = conf(json!({"type": "x", "datastore_type": "etcdv3", "etcd_endpoints": "unix:///run/e.sock"})).unwrap();
        let StoreConf::Etcd(o) = c.store else { panic!("not etcd") };
        assert_eq!((o.timeout, o.lock_file), (Duration::from_secs(5), Some(PathBuf::from(DEFAULT_LOCK_FILE))));
    }

    #[test]
    fn nodename_order_is_nodename_file_hostname_then_host_name() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, missing) = (tmp.path().join("nodename"), tmp.path().join("missing"));
        std::fs::write(&file, "from-file\n").unwrap();
        let parse = |top: serde_json::Value| {
            let mut c = json!({"name": "net", "ipam": {"type": "x"}});
            for (k, v) in top.as_object().unwrap() {
                c[k] = v.clone();
            }
            IpamConf::parse(&c).map(|c| c.node.name)
        };
        let (file, missing) = (file.to_str().unwrap(), missing.to_str().unwrap());
        assert_eq!(parse(json!({"nodename": "n1", "nodename_file": file, "hostname": "h1"})).unwrap(), "n1");
        assert_eq!(parse(json!({"nodename_file": file, "hostname": "h1"})).unwrap(), "from-file");
        assert_eq!(parse(json!({"nodename_file": missing, "hostname": "h1"})).unwrap(), "h1", "hostname before the OS host name");
        let os = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
        assert_eq!(parse(json!({"nodename_file": missing, "hostname": ""})).unwrap(), os, "an empty hostname is absent");
        assert_eq!(parse(json!({"nodename_file": missing})).unwrap(), os);
        let err = parse(json!({"nodename_file": missing, "hostname": "../x"})).unwrap_err();
        assert!(err.to_string().contains(": hostname: nodename \"../x\" is invalid"), "{err}");
        assert!(parse(json!({"nodename_file": missing, "hostname": 5})).unwrap_err().to_string().contains("hostname"));
    }

    #[test]
    fn requested_ip_args() {
        let none = json!({});
        assert_eq!(requested_ips(&none, Some("10.0.0.5")).unwrap(), vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(requested_ips(&none, Some("10.0.0.5/24,fd00::5")).unwrap().len(), 2);
        assert!(requested_ips(&none, Some("10.0.0.5,10.0.0.6")).unwrap_err().to_string().contains("more than one"));
        assert_eq!(requested_ips(&none, Some("10.0.0.5,10.0.0.6")).unwrap_err().code(), 4);
        assert_eq!(requested_ips(&none, Some("nope")).unwrap_err().code(), 4);
        assert_eq!(requested_ips(&none, Some("10.0.0.5/33")).unwrap_err().code(), 4, "a prefix must be valid");
        assert!(requested_ips(&none, None).unwrap().is_empty());
    }

    #[test]
    fn requested_ips_from_runtime_config_and_cni_args() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let rc = |ips: serde_json::Value| json!({"runtimeConfig": {"ips": ips}});
        assert_eq!(requested_ips(&rc(json!(["10.0.0.7/24", "fd00::7"])), None).unwrap(), vec![ip("10.0.0.7"), ip("fd00::7")]);
        assert_eq!(requested_ips(&json!({"args": {"cni": {"ips": ["10.0.0.8"]}}}), None).unwrap(), vec![ip("10.0.0.8")]);
        // Sources add up; the same address from several is one request.
        let both = json!({"runtimeConfig": {"ips": ["10.0.0.7"]}, "args": {"cni": {"ips": ["fd00::7", "10.0.0.7/16"]}}});
        assert_eq!(requested_ips(&both, Some("10.0.0.7")).unwrap(), vec![ip("10.0.0.7"), ip("fd00::7")]);
        // Disagreeing sources name both keys.
        let err = requested_ips(&rc(json!(["10.0.0.9"])), Some("10.0.0.7")).unwrap_err();
        assert_eq!(err.code(), 7);
        assert!(err.to_string().contains("IP=10.0.0.7") && err.to_string().contains("runtimeConfig.ips[0]"), "{err}");
        let err = requested_ips(&json!({"runtimeConfig": {"ips": ["fd00::1"]}, "args": {"cni": {"ips": ["fd00::2"]}}}), None).unwrap_err();
        assert!(err.to_string().contains("runtimeConfig.ips[0]") && err.to_string().contains("args.cni.ips[0]"), "{err}");
        // Malformed entries name their key; absent or null lists ask for nothing.
        for (conf, key) in [
            (rc(json!(["10.0.0.300"])), "runtimeConfig.ips[0]"),
            (rc(json!(["10.0.0.1", 5])), "runtimeConfig.ips[1]"),
            (rc(json!("10.0.0.1")), "runtimeConfig.ips"),
            (json!({"args": {"cni": {"ips": ["10.0.0.1/40"]}}}), "args.cni.ips[0]"),
        ] {
            let err = requested_ips(&conf, None).unwrap_err();
            assert_eq!(err.code(), 7, "{conf}");
            assert!(err.to_string().contains(key), "{conf}: {err}");
        }
        assert!(requested_ips(&rc(json!(null)), None).unwrap().is_empty());
        assert!(requested_ips(&json!({"runtimeConfig": {"portMappings": []}, "args": {"cni": {"labels": []}}}), None).unwrap().is_empty());
    }
}
