//! `cni-ipam show`: pool and block usage, borrowed addresses, one address's owner, the IPAM configuration,
//! laid out like `calicoctl ipam show`, or as JSON with `-o json`.
use super::table::Table;
use super::{config_table, ipam_config, Args};
use crate::error::IpamError;
use crate::ipam::{Block, Ipam, Pool};
use datastore::ipam::records::decode;
use datastore::store::{Datastore, Kind};
use serde_json::{json, Value};
use std::net::IpAddr;

/// Everything `show` and `check` look at, read once.
pub(crate) struct Snapshot {
    pub pools: Vec<Pool>,
    pub blocks: Vec<Block>,
}

impl Snapshot {
    pub fn read(store: &dyn Datastore) -> Result<Snapshot, IpamError> {
        let mut session = store.lock()?;
        let pools = Ipam::new(&mut *session)?.pools()?;
        let mut blocks = Vec::new();
        for (key, rec) in session.list(Kind::Block)? {
            let b: Block = decode(&key, &rec.value)?;
            if !b.deleted {
                blocks.push(b);
            }
        }
        Ok(Snapshot { pools, blocks })
    }
}

/// The node a block is affine to (`host:<node>`), if any.
pub(crate) fn owner(b: &Block) -> Option<&str> {
    b.affine_host()
}

/// (ip, block, attribute) of every allocation.
pub(crate) fn allocations(b: &Block) -> impl Iterator<Item = (IpAddr, u32, &datastore::ipam::block::Attribute)> + '_ {
    b.allocations.iter().enumerate().filter_map(move |(ord, idx)| idx.and_then(|i| b.attributes.get(i)).map(|a| (b.ip(ord as u32), ord as u32, a)))
}

fn pct(n: u128, total: u128) -> String {
    let p = if total == 0 { 0.0 } else { n as f64 * 100.0 / total as f64 };
    format!("{n} ({p:.0}%)")
}

fn allocated_to(a: &datastore::ipam::block::Attribute) -> String {
    match (a.secondary.get("namespace"), a.secondary.get("pod")) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
        _ => a.handle_id.clone().unwrap_or_default(),
    }
}

pub(crate) fn run(store: &dyn Datastore, args: &Args) -> Result<i32, IpamError> {
    if let Some(ip) = args.get("--ip") {
        return show_ip(store, ip, args.json());
    }
    if args.has("--show-configuration") {
        let cfg = ipam_config(store)?;
        if args.json() {
            println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
        } else {
            print!("{}", config_table(&cfg));
        }
        return Ok(0);
    }
    let snap = Snapshot::read(store)?;
    let show_blocks = args.has("--show-blocks") || args.has("--blocks");
    let mut usage = Table::new(&["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE", "AFFINITY"]);
    let mut pools_json = Vec::new();
    for pool in &snap.pools {
        let total = 1u128 << (pool.cidr.max_prefix_len() - pool.cidr.prefix_len());
        let in_pool: Vec<&Block> = snap.blocks.iter().filter(|b| pool.contains_block(&b.cidr)).collect();
        let used: u128 = in_pool.iter().map(|b| b.in_use() as u128).sum();
        usage.row(vec!["IP Pool".into(), pool.cidr.to_string(), total.to_string(), pct(used, total), pct(total - used, total), String::new()]);
        let mut blocks_json = Vec::new();
        for b in &in_pool {
            let (size, used) = (b.size() as u128, b.in_use() as u128);
            if show_blocks {
                usage.row(vec![
                    "Block".into(),
                    b.cidr.to_string(),
                    size.to_string(),
                    pct(used, size),
                    pct(size - used, size),
                    b.affinity.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            blocks_json.push(json!({"cidr": b.cidr, "affinity": b.affinity, "total": size, "inUse": used, "free": size - used}));
        }
        pools_json.push(json!({"name": pool.name, "cidr": pool.cidr, "total": total.to_string(), "inUse": used.to_string(),
                               "free": (total - used).to_string(), "blocks": blocks_json}));
    }
    let mut borrowed = Table::new(&["IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER", "TYPE", "ALLOCATED-TO"]);
    let mut borrowed_json = Vec::new();
    let mut no_node = 0;
    for b in &snap.blocks {
        for (ip, _, a) in allocations(b) {
            let Some(node) = a.secondary.get("node") else {
                no_node += 1;
                continue;
            };
            if owner(b) == Some(node.as_str()) {
                continue;
            }
            let kind =
                a.secondary.get("type").cloned().unwrap_or_else(|| if a.secondary.contains_key("pod") { "pod".into() } else { "workload".into() });
            borrowed.row(vec![ip.to_string(), node.clone(), b.cidr.to_string(), owner(b).unwrap_or("-").into(), kind.clone(), allocated_to(a)]);
            borrowed_json.push(
                json!({"ip": ip, "borrowingNode": node, "block": b.cidr, "blockOwner": owner(b), "type": kind, "allocatedTo": allocated_to(a)}),
            );
        }
    }
    if args.json() {
        let mut out = json!({"pools": pools_json});
        if args.has("--show-borrowed") {
            out["borrowed"] = Value::Array(borrowed_json);
        }
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(0);
    }
    if args.has("--show-borrowed") {
        print!("{borrowed}");
        if no_node > 0 {
            println!("{no_node} allocations carry no node attribute and could not be checked for borrowing.");
        }
    } else {
        print!("{usage}");
    }
    Ok(0)
}

fn show_ip(store: &dyn Datastore, ip: &str, as_json: bool) -> Result<i32, IpamError> {
    let ip: IpAddr = ip.parse().map_err(|_| IpamError::Config(format!("--ip {ip:?} is not an IP address")))?;
    let snap = Snapshot::read(store)?;
    let hit = snap.blocks.iter().find(|b| b.cidr.contains(&ip)).and_then(|b| {
        let ord = b.ordinal(ip)?;
        b.owner_of(ord).map(|a| (b, a, b.allocation_seq(ord)))
    });
    match hit {
        None => {
            if as_json {
                println!("{}", json!({"ip": ip, "inUse": false}));
            } else {
                println!("{ip} is not assigned");
            }
        }
        Some((b, a, seq)) => {
            if as_json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"ip": ip, "inUse": true, "handle": a.handle_id, "block": b.cidr,
                        "blockAffinity": b.affinity, "sequenceNumber": seq, "attributes": a.secondary}))
                    .unwrap_or_default()
                );
            } else {
                println!("IP {ip} is in use");
                println!("Handle ID: {}", a.handle_id.as_deref().unwrap_or("-"));
                println!("Block: {} (affinity {})", b.cidr, b.affinity.as_deref().unwrap_or("none"));
                println!("Attributes:");
                for (k, v) in &a.secondary {
                    println!("  {k}: {v}");
                }
            }
        }
    }
    Ok(0)
}
