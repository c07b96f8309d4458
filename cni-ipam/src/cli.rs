//! Operator commands, used when `cni-ipam` runs with arguments instead of as a CNI plugin.
use crate::error::IpamError;
use crate::ipam::admin::{apply, parse_resources, rebuild_indexes, stored_pools, Resources};
use crate::ipam::check::check_store;
use crate::ipam::config::DEFAULT_STORE_DIR;
use crate::ipam::pool::{Metadata, PoolResource, PoolSpec};
use crate::ipam::records::{load, IpamConfig};
use crate::ipam::{Block, Ipam, Pool};
use common::store::{Datastore, FileStore, Key, Kind};
use std::collections::BTreeMap;

pub const USAGE: &str = "\
cni-ipam: calico-rs IPAM plugin (CNI_COMMAND set) and operator commands (arguments given).

usage: cni-ipam [--store DIR] COMMAND
  pool add --name NAME --cidr CIDR [--block-size N] [--node-selector SEL] [--ipip-mode M]
           [--vxlan-mode M] [--nat-outgoing] [--disabled]
  pool list
  pool load --file FILE        IPPool / IPAMConfiguration resources (JSON), all or nothing
  config show
  config set [--strict-affinity BOOL] [--auto-allocate-blocks BOOL] [--max-blocks-per-host N]
  show [--blocks]              pool and block usage
  check                        store consistency; exit 1 when problems are found
  index rebuild                rebuild the pool/host indexes from the blocks
--store defaults to /var/lib/calico-rs/ipam (the plugin's local_store_dir default).
";

/// Flags (`--name value`, or `--flag` alone) and the words before them.
struct Args {
    words: Vec<String>,
    flags: BTreeMap<String, Option<String>>,
}

const SWITCHES: &[&str] = &["--nat-outgoing", "--disabled", "--blocks"];

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut words = Vec::new();
    let mut flags = BTreeMap::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a.starts_with("--") {
            let (k, v) = match a.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None if SWITCHES.contains(&a.as_str()) => (a.clone(), None),
                None => (a.clone(), Some(it.next().ok_or(format!("{a} needs a value"))?.clone())),
            };
            flags.insert(k, v);
        } else {
            words.push(a.clone());
        }
    }
    Ok(Args { words, flags })
}

impl Args {
    fn get(&self, k: &str) -> Option<&str> {
        self.flags.get(k).and_then(|v| v.as_deref())
    }
    fn has(&self, k: &str) -> bool {
        self.flags.contains_key(k)
    }
    fn bool(&self, k: &str) -> Result<Option<bool>, String> {
        self.get(k).map(|v| v.parse::<bool>().map_err(|_| format!("{k} must be true or false, got {v:?}"))).transpose()
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
    if words == ["bench-alloc"] {
        return crate::bench::run(&args.flags);
    }
    let dir = args.get("--store").unwrap_or(DEFAULT_STORE_DIR).to_string();
    let result = FileStore::open(&dir).map_err(IpamError::from).and_then(|store| match words.as_slice() {
        ["pool", "add"] => pool_add(&store, &args),
        ["pool", "list"] => pool_list(&store),
        ["pool", "load"] => pool_load(&store, &args),
        ["config", "show"] => config_show(&store),
        ["config", "set"] => config_set(&store, &args),
        ["show"] => show(&store, args.has("--blocks")),
        ["check"] => check(&store),
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

fn pool_add(store: &FileStore, args: &Args) -> Result<i32, IpamError> {
    let need = |k: &str| args.get(k).map(str::to_string).ok_or_else(|| IpamError::Config(format!("pool add needs {k}")));
    let block_size = args
        .get("--block-size")
        .map(|b| b.parse::<u8>().map_err(|_| IpamError::Config(format!("--block-size {b:?} is not a number"))))
        .transpose()?;
    let res = PoolResource {
        api_version: "projectcalico.org/v3".into(),
        kind: "IPPool".into(),
        metadata: Metadata { name: need("--name")? },
        spec: PoolSpec {
            cidr: need("--cidr")?,
            block_size,
            ipip_mode: args.get("--ipip-mode").map(str::to_string),
            vxlan_mode: args.get("--vxlan-mode").map(str::to_string),
            nat_outgoing: args.has("--nat-outgoing"),
            node_selector: args.get("--node-selector").map(str::to_string),
            disabled: args.has("--disabled"),
            disable_bgp_export: false,
        },
    };
    let pool = Pool::from_resource(&res)?;
    apply(&mut *store.lock()?, &Resources { pools: vec![pool.clone()], config: None })?;
    println!("pool {} ({}, /{} blocks) saved", pool.name, pool.cidr, pool.block_size);
    Ok(0)
}

fn pool_list(store: &FileStore) -> Result<i32, IpamError> {
    let session = store.lock()?;
    let pools = stored_pools(&*session)?;
    println!("{:<24} {:<28} {:>5} {:<10} {:<12} {:<8} {:<8} SELECTOR", "NAME", "CIDR", "BLOCK", "IPIP", "VXLAN", "NAT", "DISABLED");
    if pools.is_empty() {
        let p = Pool::default_v4();
        println!("{:<24} {:<28} {:>5} (implicit default: no pools configured)", p.name, p.cidr.to_string(), p.block_size);
    }
    for p in pools {
        println!(
            "{:<24} {:<28} {:>5} {:<10} {:<12} {:<8} {:<8} {}",
            p.name,
            p.cidr.to_string(),
            p.block_size,
            p.ipip_mode,
            p.vxlan_mode,
            p.nat_outgoing,
            p.disabled,
            p.node_selector.source
        );
    }
    Ok(0)
}

fn pool_load(store: &FileStore, args: &Args) -> Result<i32, IpamError> {
    let file = args.get("--file").ok_or_else(|| IpamError::Config("pool load needs --file FILE".into()))?;
    let text = std::fs::read_to_string(file).map_err(|e| IpamError::Config(format!("reading {file}: {e}")))?;
    let res = parse_resources(&text)?;
    apply(&mut *store.lock()?, &res)?;
    println!("loaded {} pool(s){}", res.pools.len(), if res.config.is_some() { " and the IPAM configuration" } else { "" });
    Ok(0)
}

fn config_show(store: &FileStore) -> Result<i32, IpamError> {
    let session = store.lock()?;
    let cfg = load::<IpamConfig>(&*session, &Key::IpamConfig)?.map(|c| c.0).unwrap_or_default();
    println!("StrictAffinity      {}", cfg.strict_affinity);
    println!("AutoAllocateBlocks  {}", cfg.auto_allocate_blocks);
    println!("MaxBlocksPerHost    {} (effective {})", cfg.max_blocks_per_host, cfg.block_limit());
    Ok(0)
}

fn config_set(store: &FileStore, args: &Args) -> Result<i32, IpamError> {
    let mut session = store.lock()?;
    let mut cfg = load::<IpamConfig>(&*session, &Key::IpamConfig)?.map(|c| c.0).unwrap_or_default();
    if let Some(v) = args.bool("--strict-affinity").map_err(IpamError::Config)? {
        cfg.strict_affinity = v;
    }
    if let Some(v) = args.bool("--auto-allocate-blocks").map_err(IpamError::Config)? {
        cfg.auto_allocate_blocks = v;
    }
    if let Some(v) = args.get("--max-blocks-per-host") {
        cfg.max_blocks_per_host = v.parse().map_err(|_| IpamError::Config(format!("--max-blocks-per-host {v:?} is not a number")))?;
    }
    apply(&mut *session, &Resources { pools: vec![], config: Some(cfg) })?;
    drop(session);
    config_show(store)
}

fn show(store: &FileStore, blocks: bool) -> Result<i32, IpamError> {
    let mut session = store.lock()?;
    let pools = Ipam::new(&mut *session)?.pools()?;
    let mut all = Vec::new();
    for (key, rec) in session.list(Kind::Block)? {
        all.push(serde_json::from_value::<Block>(rec.value).map_err(|e| IpamError::Corrupt { key: key.path(), reason: e.to_string() })?);
    }
    let pct = |n: u128, total: u128| if total == 0 { 0.0 } else { n as f64 * 100.0 / total as f64 };
    println!("{:<10} {:<28} {:>12} {:>18} {:>18} AFFINITY", "GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE");
    for pool in &pools {
        let total = 1u128 << (pool.cidr.max_prefix_len() - pool.cidr.prefix_len());
        let in_pool: Vec<&Block> = all.iter().filter(|b| pool.contains_block(&b.cidr)).collect();
        let used: u128 = in_pool.iter().map(|b| b.in_use() as u128).sum();
        println!(
            "{:<10} {:<28} {:>12} {:>18} {:>18}",
            "IP Pool",
            pool.cidr.to_string(),
            total,
            format!("{used} ({:.0}%)", pct(used, total)),
            format!("{} ({:.0}%)", total - used, pct(total - used, total)),
        );
        if blocks {
            for b in in_pool {
                let (size, used) = (b.size() as u128, b.in_use() as u128);
                println!(
                    "{:<10} {:<28} {:>12} {:>18} {:>18} {}",
                    "Block",
                    b.cidr.to_string(),
                    size,
                    format!("{used} ({:.0}%)", pct(used, size)),
                    format!("{} ({:.0}%)", size - used, pct(size - used, size)),
                    b.affinity.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(0)
}

fn check(store: &FileStore) -> Result<i32, IpamError> {
    let session = store.lock()?;
    let report = check_store(&*session)?;
    println!("{} blocks, {} handles, {} allocations", report.blocks, report.handles, report.allocations);
    for p in &report.problems {
        println!("problem: {p}");
    }
    println!("Check complete; found {} problems.", report.problems.len());
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}
