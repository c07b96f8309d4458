//! Operator commands, used when `cni-ipam` runs with arguments instead of as a CNI plugin: the flags, which
//! store to open (local directory, etcd, or whatever a network config names), and the pool / config commands.
//! `show` lives in `show.rs`, `check` and `release` in `leaks.rs`.
mod leaks;
mod show;
mod table;

use crate::backend::Backend;
use crate::error::IpamError;
use crate::ipam::admin::{self, apply, delete_pool, parse_resources, rebuild_indexes, stored_pools, update_config, Resources};
use crate::ipam::config::{IpamConf, StoreConf, DEFAULT_STORE_DIR};
use crate::ipam::Pool;
use datastore::ipam::records::IpamConfig;
use datastore::resources::ippool::{PoolResource, PoolSpec};
use datastore::store::etcd::TlsFiles;
use datastore::store::{Datastore, EtcdOptions};
use std::collections::BTreeMap;
use std::time::Duration;
use table::Table;

pub const USAGE: &str = "\
cni-ipam: calico-rs IPAM plugin (CNI_COMMAND set) and operator commands (arguments given).

usage: cni-ipam [STORE] COMMAND [-o json]
  show [--show-blocks] [--show-borrowed] [--show-configuration]
                               pool and block usage (like calicoctl ipam show); --blocks = --show-blocks
  show --ip IP                 who holds an address
  check [--node N] [--valid-ids FILE] [--network NET] [--links] [-o REPORT.json]
                               consistency and leaks: allocations of node N whose container is not in FILE
                               (one ID per line) or whose recorded netns is gone, handles without addresses,
                               blocks affine to no node, attachment records whose addresses their handle
                               does not hold; --links (run in the node's network namespace): records
                               against the veths here; exit 1 when problems are found
  release --ip IP [--ip IP...] | --from-report REPORT.json
  configure [--strict-affinity BOOL] [--max-blocks-per-host N] [--auto-allocate-blocks BOOL]
                               (alias: config set; config show prints it)
  pool add --name NAME --cidr CIDR [--block-size N] [--node-selector SEL] [--ipip-mode M]
           [--vxlan-mode M] [--nat-outgoing] [--disabled]
  pool list | pool delete --name NAME [--force] | pool load --file FILE
  index rebuild                rebuild the pool/host indexes from the blocks
STORE (default: --store /var/lib/calico-rs/ipam, the plugin's local_store_dir default):
  --store DIR                  the local store
  --etcd-endpoints URLS        etcd v3 (comma list); with --etcd-ca-cert-file F --etcd-cert-file F
                               --etcd-key-file F --etcd-timeout SECS
  --config FILE                the store a network config (.conf or .conflist) names, as the plugin reads it
";

/// Flags (`--name value`, `-o value`, or `--flag` alone) and the words before them. Repeated flags keep
/// every value (`--ip a --ip b`).
pub(crate) struct Args {
    words: Vec<String>,
    flags: BTreeMap<String, Vec<Option<String>>>,
}

const SWITCHES: &[&str] =
    &["--nat-outgoing", "--disabled", "--blocks", "--show-blocks", "--show-borrowed", "--show-configuration", "--force", "--links"];

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut words = Vec::new();
    let mut flags: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a.starts_with("--") || a == "-o" {
            let (k, v) = match a.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None if SWITCHES.contains(&a.as_str()) => (a.clone(), None),
                None => (a.clone(), Some(it.next().ok_or(format!("{a} needs a value"))?.clone())),
            };
            // calicoctl spells it --strictaffinity.
            let k = if k == "--strictaffinity" { "--strict-affinity".to_string() } else { k };
            flags.entry(k).or_default().push(v);
        } else {
            words.push(a.clone());
        }
    }
    Ok(Args { words, flags })
}

impl Args {
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.flags.get(k).and_then(|v| v.last()).and_then(|v| v.as_deref())
    }
    pub(crate) fn all(&self, k: &str) -> Vec<&str> {
        self.flags.get(k).map(|v| v.iter().filter_map(|x| x.as_deref()).collect()).unwrap_or_default()
    }
    pub(crate) fn has(&self, k: &str) -> bool {
        self.flags.contains_key(k)
    }
    fn bool(&self, k: &str) -> Result<Option<bool>, IpamError> {
        self.get(k).map(|v| v.parse::<bool>().map_err(|_| IpamError::Config(format!("{k} must be true or false, got {v:?}")))).transpose()
    }
    /// `-o json`.
    pub(crate) fn json(&self) -> bool {
        self.get("-o") == Some("json")
    }
}

/// Runs one operator command; returns the exit code.
pub fn run(argv: &[String]) -> i32 {
    let args = match parse_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cni-ipam: {e}\n\n{USAGE}");
            return 2;
        }
    };
    let words: Vec<&str> = args.words.iter().map(String::as_str).collect();
    if matches!(words.as_slice(), ["help"] | []) || args.has("--help") {
        print!("{USAGE}");
        return 0;
    }
    let result = open(&args).and_then(|store| match words.as_slice() {
        ["pool", "add"] => pool_add(&store, &args),
        ["pool", "list"] => pool_list(&store, &args),
        ["pool", "delete"] => pool_delete(&store, &args),
        ["pool", "load"] => pool_load(&store, &args),
        ["config", "show"] => config_show(&store, &args),
        ["config", "set"] | ["configure"] => config_set(&store, &args),
        ["show"] => show::run(&store, &args),
        ["check"] => leaks::check(&store, &args),
        ["release"] => leaks::release(&store, &args),
        ["index", "rebuild"] => {
            let n = rebuild_indexes(&mut *store.lock()?)?;
            println!("indexes rebuilt from {n} blocks");
            Ok(0)
        }
        _ => Err(IpamError::Config(format!("unknown command {:?}\n\n{USAGE}", words.join(" ")))),
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cni-ipam: {e}");
            1
        }
    }
}

/// The store the flags name. Operator commands take no node lock on etcd: their writes are CAS like any other.
fn open(args: &Args) -> Result<Backend, IpamError> {
    if let Some(file) = args.get("--config") {
        let text = std::fs::read_to_string(file).map_err(|e| IpamError::Config(format!("reading {file}: {e}")))?;
        let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| IpamError::Config(format!("{file} is not JSON: {e}")))?;
        // A conflist: the first plugin with an ipam section, with the list's name and version.
        if let Some(plugins) = v.get("plugins").and_then(|p| p.as_array()) {
            let mut p = plugins
                .iter()
                .find(|p| p.get("ipam").is_some())
                .cloned()
                .ok_or_else(|| IpamError::Config(format!("{file}: no plugin has an ipam section")))?;
            p["name"] = v["name"].clone();
            v = p;
        }
        let mut conf = IpamConf::parse(&v)?;
        if let StoreConf::Etcd(o) = &mut conf.store {
            o.lock_file = None;
        }
        return Backend::open(&conf.store);
    }
    if let Some(endpoints) = args.get("--etcd-endpoints") {
        let mut o = EtcdOptions::new(endpoints);
        let path = |k: &str| args.get(k).filter(|s| !s.is_empty()).map(Into::into);
        o.tls = TlsFiles { ca: path("--etcd-ca-cert-file"), cert: path("--etcd-cert-file"), key: path("--etcd-key-file") };
        if let Some(t) = args.get("--etcd-timeout") {
            let secs: f64 = t.parse().map_err(|_| IpamError::Config(format!("--etcd-timeout {t:?} is not a number")))?;
            if !(secs > 0.0 && secs <= 3600.0) {
                return Err(IpamError::Config("--etcd-timeout must be between 0 and 3600 seconds".into()));
            }
            o.timeout = Duration::from_secs_f64(secs);
        }
        return Backend::open(&StoreConf::Etcd(o));
    }
    Backend::open(&StoreConf::Local(args.get("--store").unwrap_or(DEFAULT_STORE_DIR).into()))
}

fn pool_add(store: &dyn Datastore, args: &Args) -> Result<i32, IpamError> {
    let need = |k: &str| args.get(k).map(str::to_string).ok_or_else(|| IpamError::Config(format!("pool add needs {k}")));
    let block_size = args
        .get("--block-size")
        .map(|b| b.parse::<u8>().map_err(|_| IpamError::Config(format!("--block-size {b:?} is not a number"))))
        .transpose()?;
    let res = PoolResource::ippool(
        need("--name")?,
        PoolSpec {
            cidr: need("--cidr")?,
            block_size,
            ipip_mode: args.get("--ipip-mode").map(str::to_string),
            vxlan_mode: args.get("--vxlan-mode").map(str::to_string),
            nat_outgoing: args.has("--nat-outgoing"),
            node_selector: args.get("--node-selector").map(str::to_string),
            disabled: args.has("--disabled"),
            ..Default::default()
        },
    );
    let pool = Pool::from_resource(&res)?;
    apply(&mut *store.lock()?, &Resources { pools: vec![pool.clone()], config: None })?;
    println!("pool {} ({}, /{} blocks) saved", pool.name, pool.cidr, pool.block_size);
    Ok(0)
}

fn pool_list(store: &dyn Datastore, args: &Args) -> Result<i32, IpamError> {
    let session = store.lock()?;
    let pools = stored_pools(&*session)?;
    if args.json() {
        let list: Vec<PoolResource> = pools.iter().map(Pool::to_resource).collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"kind": "IPPoolList", "items": list})).unwrap_or_default());
        return Ok(0);
    }
    let mut t = Table::new(&["NAME", "CIDR", "BLOCK SIZE", "IPIP", "VXLAN", "NAT", "DISABLED", "SELECTOR"]);
    for p in &pools {
        t.row(vec![
            p.name.clone(),
            p.cidr.to_string(),
            p.block_size.to_string(),
            p.ipip_mode.to_string(),
            p.vxlan_mode.to_string(),
            p.nat_outgoing.to_string(),
            p.disabled.to_string(),
            p.node_selector.source.clone(),
        ]);
    }
    if pools.is_empty() {
        let p = Pool::default_v4();
        t.row(vec![p.name, p.cidr.to_string(), p.block_size.to_string(), "(implicit default: no pools configured)".into()]);
    }
    print!("{t}");
    Ok(0)
}

fn pool_delete(store: &dyn Datastore, args: &Args) -> Result<i32, IpamError> {
    let name = args.get("--name").ok_or_else(|| IpamError::Config("pool delete needs --name NAME".into()))?;
    let changed = delete_pool(&mut *store.lock()?, name, args.has("--force"))?;
    println!("pool {name} deleted ({changed} records changed)");
    Ok(0)
}

fn pool_load(store: &dyn Datastore, args: &Args) -> Result<i32, IpamError> {
    let file = args.get("--file").ok_or_else(|| IpamError::Config("pool load needs --file FILE".into()))?;
    let text = std::fs::read_to_string(file).map_err(|e| IpamError::Config(format!("reading {file}: {e}")))?;
    let res = parse_resources(&text)?;
    apply(&mut *store.lock()?, &res)?;
    println!("loaded {} pool(s){}", res.pools.len(), if res.config.is_some() { " and the IPAM configuration" } else { "" });
    Ok(0)
}

pub(crate) fn ipam_config(store: &dyn Datastore) -> Result<IpamConfig, IpamError> {
    admin::ipam_config(&*store.lock()?)
}

pub(crate) fn config_table(cfg: &IpamConfig) -> Table {
    let mut t = Table::new(&["PROPERTY", "VALUE"]);
    t.row(vec!["StrictAffinity".into(), cfg.strict_affinity.to_string()]);
    t.row(vec!["AutoAllocateBlocks".into(), cfg.auto_allocate_blocks.to_string()]);
    t.row(vec!["MaxBlocksPerHost".into(), format!("{} (effective {})", cfg.max_blocks_per_host, cfg.block_limit())]);
    t
}

fn config_show(store: &dyn Datastore, args: &Args) -> Result<i32, IpamError> {
    let cfg = ipam_config(store)?;
    if args.json() {
        println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
    } else {
        print!("{}", config_table(&cfg));
    }
    Ok(0)
}

fn config_set(store: &dyn Datastore, args: &Args) -> Result<i32, IpamError> {
    let strict = args.bool("--strict-affinity")?;
    let auto = args.bool("--auto-allocate-blocks")?;
    let max = args
        .get("--max-blocks-per-host")
        .map(|v| v.parse::<u32>().map_err(|_| IpamError::Config(format!("--max-blocks-per-host {v:?} is not a number"))))
        .transpose()?;
    update_config(&mut *store.lock()?, |cfg| {
        if let Some(v) = strict {
            cfg.strict_affinity = v;
        }
        if let Some(v) = auto {
            cfg.auto_allocate_blocks = v;
        }
        if let Some(v) = max {
            cfg.max_blocks_per_host = v;
        }
    })?;
    config_show(store, args)
}
