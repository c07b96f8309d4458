//! `calicoctl ipam show`: pool usage (`--show-blocks`: and each block's), borrowed addresses
//! (`--show-borrowed`), one address's owner (`--ip`), the IPAM configuration (`--show-configuration`), in
//! calicoctl's tables; `-o json` (calico-rs) gives the same as JSON.
use super::{allocations, Snapshot};
use crate::args::Args;
use crate::commands::open;
use crate::error::{CtlError, Result};
use crate::output::table::{boxed, Align};
use cni_ipam::ipam::admin::ipam_config;
use cni_ipam::ipam::Block;
use datastore::ipam::block::Attribute;
use datastore::ipam::records::IpamConfig;
use serde_json::json;
use std::net::IpAddr;

pub fn run(args: &Args) -> Result<()> {
    args.allow("ipam show", &["config", "ip", "show-blocks", "show-borrowed", "show-configuration", "output"])?;
    let as_json = match args.get("output") {
        None => false,
        Some("json") => true,
        Some(other) => return Err(CtlError::Usage(format!("-o {other:?}: ipam show prints a table, or JSON with -o json"))),
    };
    let opened = open(args)?;
    let mut session = opened.datastore().lock()?;
    if let Some(ip) = args.get("ip") {
        let ip: IpAddr = ip.parse().map_err(|_| CtlError::Usage(format!("invalid IP address specified: {ip}")))?;
        return show_ip(&Snapshot::read(&mut *session)?, ip, as_json);
    }
    if args.on("show-blocks") {
        return usage(&Snapshot::read(&mut *session)?, true, as_json);
    }
    if args.on("show-borrowed") {
        return borrowed(&Snapshot::read(&mut *session)?, as_json);
    }
    if args.on("show-configuration") {
        return configuration(&ipam_config(&*session)?, as_json);
    }
    usage(&Snapshot::read(&mut *session)?, false, as_json)
}

/// Go's `%.5g` of a whole number: five significant digits, exponent form from 1e5 on (`1.6777e+07`).
pub fn go_g5(n: u128) -> String {
    let digits = n.to_string();
    if digits.len() <= 5 {
        return digits;
    }
    // Round to five digits, half to even, as strconv does.
    let (head, tail) = digits.split_at(5);
    let mut kept: u64 = head.parse().unwrap_or(0);
    let first = tail.as_bytes()[0];
    let rest_zero = tail[1..].bytes().all(|b| b == b'0');
    if first > b'5' || (first == b'5' && (!rest_zero || kept % 2 == 1)) {
        kept += 1;
    }
    let mut exp = digits.len() - 1;
    if kept == 100_000 {
        kept = 10_000;
        exp += 1;
    }
    let s = kept.to_string();
    let mantissa = s.trim_end_matches('0');
    let mantissa = if mantissa.len() > 1 { format!("{}.{}", &mantissa[..1], &mantissa[1..]) } else { mantissa.to_string() };
    format!("{mantissa}e+{exp:02}")
}

/// `%.5g (%.f%%)`, calicoctl's count with its share of the capacity.
fn share(n: u128, capacity: u128) -> String {
    let pct = if capacity == 0 { 0.0 } else { n as f64 * 100.0 / capacity as f64 };
    format!("{} ({pct:.0}%)", go_g5(n))
}

fn usage(snap: &Snapshot, show_blocks: bool, as_json: bool) -> Result<()> {
    let mut rows = Vec::new();
    let mut pools_json = Vec::new();
    for pool in &snap.pools {
        let total = 1u128 << (pool.cidr.max_prefix_len() - pool.cidr.prefix_len());
        let in_pool: Vec<&Block> = snap.blocks.iter().filter(|b| pool.contains_block(&b.cidr)).collect();
        let used: u128 = in_pool.iter().map(|b| b.in_use() as u128).sum();
        rows.push(vec!["IP Pool".into(), pool.cidr.to_string(), go_g5(total), share(used, total), share(0, total), share(total - used, total)]);
        let mut blocks_json = Vec::new();
        for b in &in_pool {
            let (size, used) = (b.size() as u128, b.in_use() as u128);
            if show_blocks {
                rows.push(vec!["Block".into(), b.cidr.to_string(), go_g5(size), share(used, size), share(0, size), share(size - used, size)]);
            }
            blocks_json.push(json!({"cidr": b.cidr, "affinity": b.affinity, "total": size, "inUse": used, "free": size - used}));
        }
        pools_json.push(json!({"name": pool.name, "cidr": pool.cidr, "total": total.to_string(), "inUse": used.to_string(),
                               "free": (total - used).to_string(), "blocks": blocks_json}));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({"pools": pools_json})).unwrap_or_default());
        return Ok(());
    }
    let right = [Align::Left, Align::Left, Align::Right, Align::Right, Align::Right, Align::Right];
    print!("{}", boxed(&["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS RESERVED", "IPS FREE"], &rows, &right));
    Ok(())
}

/// Calicoctl's TYPE and ALLOCATED-TO of an allocation.
fn owner_columns(a: &Attribute) -> (String, String) {
    let ns = a.secondary.get("namespace").cloned().unwrap_or_default();
    if let Some(vmi) = a.secondary.get("vmi") {
        return ("vmi".into(), format!("{ns}/{vmi}"));
    }
    if let Some(pod) = a.secondary.get("pod") {
        return ("pod".into(), format!("{ns}/{pod}"));
    }
    (a.secondary.get("type").cloned().unwrap_or_default(), String::new())
}

fn borrowed(snap: &Snapshot, as_json: bool) -> Result<()> {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    let mut unclassified = 0;
    for b in &snap.blocks {
        let owner = b.affine_host().unwrap_or("");
        for (ip, _, a) in allocations(b) {
            let Some(node) = a.secondary.get("node") else {
                unclassified += 1;
                continue;
            };
            if node == owner {
                continue;
            }
            let (ty, to) = owner_columns(a);
            rows.push(vec![ip.to_string(), node.clone(), b.cidr.to_string(), owner.to_string(), ty.clone(), to.clone()]);
            out.push(json!({"ip": ip, "borrowingNode": node, "block": b.cidr, "blockOwner": owner, "type": ty, "allocatedTo": to}));
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({"borrowed": out, "unclassified": unclassified})).unwrap_or_default());
        return Ok(());
    }
    print!("{}", boxed(&["IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER", "TYPE", "ALLOCATED-TO"], &rows, &[]));
    if unclassified > 0 {
        println!("\nNote: found {unclassified} IP allocations without an explicit node association. Unable to determine if they are borrowed.");
    }
    Ok(())
}

fn show_ip(snap: &Snapshot, ip: IpAddr, as_json: bool) -> Result<()> {
    let hit = snap.blocks.iter().find(|b| b.cidr.contains(&ip)).and_then(|b| {
        let ord = b.ordinal(ip)?;
        b.owner_of(ord).map(|a| (b, a, b.allocation_seq(ord)))
    });
    match (hit, as_json) {
        (None, true) => println!("{}", json!({"ip": ip, "inUse": false})),
        (None, false) => println!("{ip} is not assigned"),
        (Some((b, a, seq)), true) => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"ip": ip, "inUse": true, "handle": a.handle_id, "block": b.cidr,
                "blockAffinity": b.affinity, "sequenceNumber": seq, "attributes": a.secondary}))
            .unwrap_or_default()
        ),
        (Some((_, a, _)), false) => {
            println!("IP {ip} is in use");
            println!("Handle ID: {}", a.handle_id.as_deref().unwrap_or("<none>"));
            if a.secondary.is_empty() {
                println!("No Active Owner attributes defined");
            } else {
                println!("Active Owner Attributes:");
                for (k, v) in &a.secondary {
                    println!("  {k}: {v}");
                }
            }
        }
    }
    Ok(())
}

fn configuration(cfg: &IpamConfig, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
        return Ok(());
    }
    let rows = vec![
        vec!["StrictAffinity".into(), cfg.strict_affinity.to_string()],
        vec!["AutoAllocateBlocks".into(), cfg.auto_allocate_blocks.to_string()],
        vec!["MaxBlocksPerHost".into(), cfg.max_blocks_per_host.to_string()],
    ];
    print!("{}", boxed(&["PROPERTY", "VALUE"], &rows, &[]));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_print_as_gos_percent_5g() {
        for (n, want) in [(0, "0"), (3, "3"), (256, "256"), (65536, "65536"), (100000, "1e+05"), (16777216, "1.6777e+07"), (123455, "1.2346e+05")] {
            assert_eq!(super::go_g5(n), want, "{n}");
        }
        assert_eq!(super::go_g5(1u128 << 80), "1.2089e+24");
        assert_eq!(super::share(101, 128), "101 (79%)");
    }
}
