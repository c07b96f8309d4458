//! `cni-ipam check` (consistency + leaks, JSON report with `-o FILE`) and `cni-ipam release` (`--ip`, or
//! `--from-report`, which releases only what the report found leaked and only if unchanged since: each
//! address is guarded by its sequence number, each handle by its revision).
use super::show::{allocations, owner, Snapshot};
use super::Args;
use crate::error::IpamError;
use crate::ipam::check::check_store;
use crate::ipam::{Block, Ipam};
use datastore::ipam::block::Attribute;
use datastore::ipam::records::{load, Handle};
use datastore::resources::workloadendpoint::WorkloadEndpoint;
use datastore::store::{Datastore, Key, Kind, Op};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

/// Container ID of a handle `<network>.<container id>[:<ifname>]`.
fn container_id<'a>(handle: &'a str, network: Option<&str>) -> Option<&'a str> {
    common::attachment::split_handle(handle, network).map(|(cid, _)| cid)
}

/// Why an allocation on the checked node looks leaked, if it does.
fn leak_reason(a: &Attribute, node: Option<&str>, valid: Option<&BTreeSet<String>>, network: Option<&str>) -> Option<String> {
    let node = node?;
    if a.secondary.get("node").map(String::as_str) != Some(node) {
        return None;
    }
    let handle = a.handle_id.as_deref()?;
    let cid = container_id(handle, network)?;
    if let Some(valid) = valid {
        return (!valid.contains(cid)).then(|| format!("container {cid} is not among the valid IDs"));
    }
    let netns = a.secondary.get("netns").filter(|n| !n.is_empty())?;
    (!Path::new(netns).exists()).then(|| format!("netns {netns} no longer exists"))
}

fn read_ids(file: &str) -> Result<BTreeSet<String>, IpamError> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| IpamError::Config(format!("reading stdin: {e}")))?
    } else {
        std::fs::read_to_string(file).map_err(|e| IpamError::Config(format!("reading {file}: {e}")))?
    };
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

pub(crate) fn check(store: &dyn Datastore, args: &Args) -> Result<i32, IpamError> {
    let consistency = {
        let session = store.lock()?;
        check_store(&*session)?
    };
    let snap = Snapshot::read(store)?;
    let node = args.get("--node");
    let network = args.get("--network");
    let valid = args.get("--valid-ids").map(read_ids).transpose()?;
    if valid.is_some() && node.is_none() {
        return Err(IpamError::Config("--valid-ids needs --node (the node whose containers the list names)".into()));
    }

    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    let mut report_allocs = BTreeMap::new();
    let mut leaked = Vec::new();
    for b in &snap.blocks {
        for (ip, ord, a) in allocations(b) {
            let handle = a.handle_id.clone().unwrap_or_default();
            *held.entry(handle.clone()).or_default() += 1;
            let reason = leak_reason(a, node, valid.as_ref(), network);
            let n = a.secondary.get("node");
            report_allocs.insert(
                ip.to_string(),
                json!({"ip": ip, "handle": handle, "block": b.cidr, "sequenceNumber": b.allocation_seq(ord),
                       "node": n, "pod": a.secondary.get("pod"), "namespace": a.secondary.get("namespace"),
                       "netns": a.secondary.get("netns"), "borrowed": n.is_some_and(|n| owner(b) != Some(n.as_str())),
                       "inUse": reason.is_none(), "leakReason": reason}),
            );
            if let Some(r) = reason {
                leaked.push((ip, handle, r));
            }
        }
    }
    let mut empty_handles = Vec::new();
    {
        let session = store.lock()?;
        for (key, _) in session.list(Kind::Handle)? {
            if let Key::Handle(id) = key {
                if !held.contains_key(&id) {
                    empty_handles.push(id);
                }
            }
        }
    }
    let unaffine: Vec<&Block> = snap.blocks.iter().filter(|b| owner(b).is_none()).collect();
    let links = if args.has("--links") { Some(link_report(&consistency.endpoints, node)?) } else { None };
    let link_problems = links.as_ref().map_or(0, |l| l.mismatched.len());
    let problems = consistency.problems.len() + leaked.len() + empty_handles.len() + unaffine.len() + link_problems;

    let report = json!({
        "version": "v1", "generatedBy": "cni-ipam check", "node": node, "network": network,
        "blocks": snap.blocks.len(), "allocations": report_allocs,
        "leakedAllocations": leaked.iter().map(|(ip, h, r)| json!({"ip": ip, "handle": h, "reason": r})).collect::<Vec<_>>(),
        "leakedHandles": empty_handles, "unaffineBlocks": unaffine.iter().map(|b| b.cidr.to_string()).collect::<Vec<_>>(),
        "problems": consistency.problems,
        "attachments": consistency.endpoints.len(),
    });
    let mut report = report;
    if let Some(l) = &links {
        report["links"] =
            json!({"mismatched": l.mismatched, "recordsWithoutInterface": l.without_interface, "interfacesWithoutRecord": l.without_record});
    }
    match args.get("-o") {
        Some("json") => {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            return Ok(if problems == 0 { 0 } else { 1 });
        }
        Some(file) => std::fs::write(file, serde_json::to_string_pretty(&report).unwrap_or_default())
            .map_err(|e| IpamError::Config(format!("writing {file}: {e}")))?,
        None => {}
    }
    println!("Found {} IPAM blocks with {} allocations, {} handles.", snap.blocks.len(), report_allocs.len(), consistency.handles);
    match node {
        Some(n) => println!("Found {} leaked allocations on node {n} (allocated, container gone):", leaked.len()),
        None => println!("Leaks not judged: give --node N (with --valid-ids FILE, or on that node to test recorded netns paths)."),
    }
    for (ip, h, r) in leaked.iter().take(50) {
        println!("  {ip}  handle {h}: {r}");
    }
    println!("Found {} handles without addresses{}", empty_handles.len(), if empty_handles.is_empty() { "." } else { ":" });
    for h in empty_handles.iter().take(50) {
        println!("  {h}");
    }
    println!("Found {} blocks affine to no node{}", unaffine.len(), if unaffine.is_empty() { "." } else { ":" });
    for b in &unaffine {
        println!("  {} ({} in use)", b.cidr, b.in_use());
    }
    if let Some(l) = &links {
        println!("Checked {} attachment records against the interfaces of this network namespace:", consistency.endpoints.len());
        for m in &l.mismatched {
            println!("problem: {m}");
        }
        // An ADD or DEL stopped half way leaves these; the runtime's DEL of the attachment finishes it.
        for r in &l.without_interface {
            println!("  unfinished: record {r} has no interface");
        }
        for i in &l.without_record {
            println!("  unfinished: interface {i} has no record");
        }
    }
    for p in &consistency.problems {
        println!("problem: {p}");
    }
    if let Some(file) = args.get("-o") {
        println!("Report written to {file}.");
    }
    println!("Check complete; found {problems} problems.");
    Ok(if problems == 0 { 0 } else { 1 })
}

/// Attachment records against the host ends of veths in this network namespace (run on the node).
struct LinkReport {
    /// A record's interface marked as another container's: a real inconsistency.
    mismatched: Vec<String>,
    /// Records of this node without their interface, and marked interfaces without a record: what an ADD or
    /// DEL stopped half way leaves until the runtime's DEL.
    without_interface: Vec<String>,
    without_record: Vec<String>,
}

fn link_report(endpoints: &BTreeMap<Key, WorkloadEndpoint>, node: Option<&str>) -> Result<LinkReport, IpamError> {
    let mut nl = common::netlink::Netlink::open().map_err(|e| IpamError::Internal(format!("netlink: {e}")))?;
    let links = nl.links().map_err(|e| IpamError::Internal(format!("listing links: {e}")))?;
    let mut r = LinkReport { mismatched: Vec::new(), without_interface: Vec::new(), without_record: Vec::new() };
    let mine: Vec<(&Key, &WorkloadEndpoint)> = endpoints.iter().filter(|(_, ep)| node.is_none_or(|n| ep.spec.node == n)).collect();
    for (key, ep) in &mine {
        match links.iter().find(|l| l.name == ep.spec.interface_name) {
            None => r.without_interface.push(key.to_string()),
            Some(l) => {
                if let Some(alias) = l.alias.as_ref().filter(|a| **a != ep.spec.container_id) {
                    r.mismatched
                        .push(format!("interface {} is marked as container {alias}'s, its record {key} says {}", l.name, ep.spec.container_id));
                }
            }
        }
    }
    for l in links.iter().filter(|l| l.kind.as_deref() == Some("veth") && l.alias.is_some()) {
        if !mine.iter().any(|(_, ep)| ep.spec.interface_name == l.name) {
            r.without_record.push(format!("{} (container {})", l.name, l.alias.as_deref().unwrap_or("")));
        }
    }
    Ok(r)
}

pub(crate) fn release(store: &dyn Datastore, args: &Args) -> Result<i32, IpamError> {
    let (ips, handles): (Vec<(IpAddr, Option<u64>)>, Vec<String>) = if let Some(file) = args.get("--from-report") {
        let text = std::fs::read_to_string(file).map_err(|e| IpamError::Config(format!("reading {file}: {e}")))?;
        let r: Value = serde_json::from_str(&text).map_err(|e| IpamError::Config(format!("{file} is not a report: {e}")))?;
        let mut ips = Vec::new();
        for a in r["allocations"].as_object().map(|m| m.values().collect::<Vec<_>>()).unwrap_or_default() {
            if a["inUse"] == Value::Bool(false) {
                let ip: IpAddr =
                    a["ip"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| IpamError::Config(format!("{file}: bad allocation {a}")))?;
                ips.push((ip, a["sequenceNumber"].as_u64()));
            }
        }
        let handles = r["leakedHandles"].as_array().map(|h| h.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default();
        (ips, handles)
    } else {
        let ips = args.all("--ip");
        if ips.is_empty() {
            return Err(IpamError::Config("release needs --ip IP (repeatable) or --from-report FILE".into()));
        }
        let ips = ips
            .iter()
            .map(|s| s.parse::<IpAddr>().map(|ip| (ip, None)).map_err(|_| IpamError::Config(format!("--ip {s:?} is not an IP address"))))
            .collect::<Result<_, _>>()?;
        (ips, Vec::new())
    };
    let mut session = store.lock()?;
    let mut released = 0;
    let mut refused = None;
    // One address at a time, so a refusal or conflict on one does not hold back the others.
    for ip in &ips {
        let mut last = None;
        for _ in 0..20 {
            match Ipam::new(&mut *session).and_then(|mut ipam| ipam.release_ips(std::slice::from_ref(ip))) {
                Ok(n) => {
                    released += n;
                    last = None;
                    break;
                }
                Err(e) if e.is_conflict() => last = Some(e),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = last {
            eprintln!("not released: {}: {e}", ip.0);
            refused.get_or_insert(e);
        }
    }
    let mut removed = 0;
    for h in &handles {
        let key = Key::Handle(h.clone());
        let Some((handle, rev)) = load::<Handle>(&*session, &key)? else { continue };
        // Still without addresses? Look at the blocks it names (a handle and its addresses are committed together).
        let mut holds = false;
        for cidr in handle.block.keys() {
            let Ok(net) = cidr.parse() else { continue };
            if let Some((b, _)) = load::<Block>(&*session, &Key::Block(net))? {
                holds |= allocations(&b).any(|(_, _, a)| a.handle_id.as_deref() == Some(h.as_str()));
            }
        }
        if !holds && session.commit(&[Op::Delete { key, rev }]).is_ok() {
            removed += 1;
        }
    }
    println!("Released {released} IPs successfully{}", if handles.is_empty() { String::new() } else { format!("; removed {removed} empty handles") });
    match refused {
        Some(e) => Err(e),
        None => Ok(0),
    }
}
