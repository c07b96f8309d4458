//! `calicoctl ipam release --ip IP` (repeatable here) and `--from-report REPORT.json` (repeatable: only what
//! every report found leaked): each address is released only if it is unchanged since the report (its
//! sequence number), each handle only if it still holds nothing (its revision). `--force` is accepted; it
//! has nothing to override, since calico-rs has no datastore lock and no report versions to compare.
use super::allocations;
use crate::args::Args;
use crate::commands::open;
use crate::error::{CtlError, Result};
use cni_ipam::ipam::{Block, Ipam};
use datastore::ipam::records::{load, Handle};
use datastore::store::{Key, Op, Store};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Leaked addresses, each with the sequence number it had when the report was made.
type Leaked = BTreeMap<IpAddr, Option<u64>>;

/// The leaked addresses and handles of one report.
fn read_report(file: &str) -> Result<(Leaked, BTreeSet<String>)> {
    let text = std::fs::read_to_string(file).map_err(|e| CtlError::Input(format!("reading {file}: {e}")))?;
    let r: Value = serde_json::from_str(&text).map_err(|e| CtlError::Input(format!("{file} is not an ipam check report: {e}")))?;
    let mut ips = BTreeMap::new();
    for a in r["allocations"].as_object().map(|m| m.values().collect::<Vec<_>>()).unwrap_or_default() {
        if a["inUse"] == Value::Bool(false) {
            let ip: IpAddr =
                a["ip"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| CtlError::Input(format!("{file}: allocations: bad entry {a}")))?;
            ips.insert(ip, a["sequenceNumber"].as_u64());
        }
    }
    let handles = r["leakedHandles"].as_array().map(|h| h.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default();
    Ok((ips, handles))
}

/// Releases one address, retrying conflicts with other writers; the number released (0: it was free).
fn release_one(session: &mut dyn Store, ip: IpAddr, seq: Option<u64>) -> Result<usize> {
    let mut last = None;
    for _ in 0..20 {
        match Ipam::new(session).and_then(|mut ipam| ipam.release_ips(&[(ip, seq)])) {
            Ok(n) => return Ok(n),
            Err(e) if e.is_conflict() => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| CtlError::Conflict(ip.to_string()), CtlError::from))
}

pub fn run(args: &Args) -> Result<()> {
    args.allow("ipam release", &["config", "ip", "from-report", "force"])?;
    let reports = args.all("from-report");
    let ips = args.all("ip");
    if reports.is_empty() && ips.is_empty() {
        return Err(CtlError::Usage("calicoctl ipam release needs --ip IP or --from-report REPORT".into()));
    }
    let opened = open(args)?;
    let mut session = opened.datastore().lock()?;
    if reports.is_empty() {
        for ip in ips {
            let parsed: IpAddr = ip.parse().map_err(|_| CtlError::Usage(format!("invalid IP address specified: {ip}")))?;
            if release_one(&mut *session, parsed, None)? == 0 {
                return Err(CtlError::Failed(format!("IP address {parsed} is not assigned")));
            }
            println!("Successfully released IP address {parsed}");
        }
        return Ok(());
    }
    // Only what every report calls leaked.
    let mut leaked: Option<Leaked> = None;
    let mut handles: Option<BTreeSet<String>> = None;
    for file in reports {
        let (ips, hs) = read_report(file)?;
        leaked = Some(match leaked {
            None => ips,
            Some(prev) => prev.into_iter().filter(|(ip, seq)| ips.get(ip) == Some(seq)).collect(),
        });
        handles = Some(match handles {
            None => hs,
            Some(prev) => prev.intersection(&hs).cloned().collect(),
        });
    }
    let (leaked, handles) = (leaked.unwrap_or_default(), handles.unwrap_or_default());
    if leaked.is_empty() {
        println!("Report didn't contain any leaked IPs to clean up.");
    } else {
        println!("Releasing {} old IPs...", leaked.len());
        let mut released = 0;
        let mut refused = None;
        let mut refusals = 0;
        // One address at a time, so a refusal (re-assigned since the report) does not hold back the others.
        for (ip, seq) in &leaked {
            match release_one(&mut *session, *ip, *seq) {
                Ok(n) => released += n,
                Err(e) => {
                    eprintln!("not released: {ip}: {e}");
                    refusals += 1;
                    refused.get_or_insert(e);
                }
            }
        }
        println!("Released {released} IPs successfully");
        let gone = leaked.len() - released - refusals;
        if gone > 0 {
            println!("{gone} addresses marked as leaked in the report had already been cleaned up.");
        }
        if let Some(e) = refused {
            return Err(e);
        }
    }
    if handles.is_empty() {
        println!("Report didn't contain any handles to clean up.");
        return Ok(());
    }
    let mut removed = 0;
    for h in &handles {
        let key = Key::Handle(h.clone());
        let Some((handle, rev)) = load::<Handle>(&*session, &key).map_err(CtlError::from)? else { continue };
        // Still without addresses? Look at the blocks it names (a handle and its addresses are committed together).
        let mut holds = false;
        for cidr in handle.block.keys() {
            let Ok(net) = cidr.parse() else { continue };
            if let Some((b, _)) = load::<Block>(&*session, &Key::Block(net)).map_err(CtlError::from)? {
                holds |= allocations(&b).any(|(_, _, a)| a.handle_id.as_deref() == Some(h.as_str()));
            }
        }
        if !holds && session.commit(&[Op::Delete { key, rev }]).is_ok() {
            removed += 1;
        }
    }
    println!("Released {removed} leaked handles");
    Ok(())
}
