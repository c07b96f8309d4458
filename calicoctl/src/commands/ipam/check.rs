//! `calicoctl ipam check`: the store's consistency (cni-ipam's `check_store`: every record decodes, blocks,
//! handles, affinities, indexes and attachment records agree), leaked allocations (of the node `--node`
//! names: containers missing from `--valid-ids FILE`, or whose recorded netns is gone), handles without
//! addresses, blocks affine to no node (a problem only when empty), and with `--links` (run in the node's network namespace) the
//! attachment records against the veths there. `-o FILE` writes the JSON report `ipam release
//! --from-report` takes (`-o -`: to stdout). Exit 1 when problems are found (calicoctl exits 0).
use super::{allocations, write_out, Snapshot};
use crate::args::Args;
use crate::commands::open;
use crate::error::{CtlError, Result};
use cni_ipam::ipam::check::check_store;
use cni_ipam::ipam::Block;
use datastore::ipam::block::Attribute;
use datastore::resources::workloadendpoint::WorkloadEndpoint;
use datastore::store::{Key, Kind};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Why an allocation on the checked node looks leaked, if it does.
fn leak_reason(a: &Attribute, node: Option<&str>, valid: Option<&BTreeSet<String>>, network: Option<&str>) -> Option<String> {
    let node = node?;
    if a.secondary.get("node").map(String::as_str) != Some(node) {
        return None;
    }
    let handle = a.handle_id.as_deref()?;
    let (cid, _) = common::attachment::split_handle(handle, network)?;
    if let Some(valid) = valid {
        return (!valid.contains(cid)).then(|| format!("container {cid} is not among the valid IDs"));
    }
    let netns = a.secondary.get("netns").filter(|n| !n.is_empty())?;
    (!Path::new(netns).exists()).then(|| format!("netns {netns} no longer exists"))
}

fn read_ids(file: &str) -> Result<BTreeSet<String>> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| CtlError::Input(format!("reading stdin: {e}")))?
    } else {
        std::fs::read_to_string(file).map_err(|e| CtlError::Input(format!("reading {file}: {e}")))?
    };
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

fn attrs(a: &Attribute) -> String {
    a.secondary.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

pub fn run(args: &Args) -> Result<()> {
    args.allow("ipam check", &["config", "show-all-ips", "show-problem-ips", "output", "kubeconfig", "node", "valid-ids", "network", "links"])?;
    if args.get("kubeconfig").is_some() {
        return Err(CtlError::Unsupported(
            "--kubeconfig: calico-rs has no Kubernetes client; give the running containers with --node N --valid-ids FILE".into(),
        ));
    }
    let node = args.get("node");
    let network = args.get("network");
    let valid = args.get("valid-ids").map(read_ids).transpose()?;
    if valid.is_some() && node.is_none() {
        return Err(CtlError::Usage("--valid-ids needs --node (the node whose containers the list names)".into()));
    }
    let show_all = args.on("show-all-ips");
    let show_problems = show_all || args.on("show-problem-ips");
    let report_file = args.get("output");
    // With the report on stdout, the narrative goes to stderr.
    let say = |s: String| if report_file == Some("-") { eprintln!("{s}") } else { println!("{s}") };

    let opened = open(args)?;
    let mut session = opened.datastore().lock()?;
    say("Checking IPAM for inconsistencies...\n".into());
    let consistency = check_store(&*session)?;
    let snap = Snapshot::read(&mut *session)?;
    say("Loading all IPAM blocks...".into());
    say(format!("Found {} IPAM blocks.", snap.blocks.len()));

    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    let mut report_allocs = BTreeMap::new();
    let mut leaked = Vec::new();
    for b in &snap.blocks {
        for (ip, ord, a) in allocations(b) {
            let handle = a.handle_id.clone().unwrap_or_default();
            *held.entry(handle.clone()).or_default() += 1;
            let reason = leak_reason(a, node, valid.as_ref(), network);
            let n = a.secondary.get("node");
            if show_all {
                say(format!("  {ip} allocated; attrs {}", attrs(a)));
            }
            report_allocs.insert(
                ip.to_string(),
                json!({"ip": ip, "handle": handle, "block": b.cidr, "sequenceNumber": b.allocation_seq(ord),
                       "node": n, "pod": a.secondary.get("pod"), "namespace": a.secondary.get("namespace"),
                       "netns": a.secondary.get("netns"), "borrowed": n.is_some_and(|n| b.affine_host() != Some(n.as_str())),
                       "inUse": reason.is_none(), "leakReason": reason}),
            );
            if let Some(r) = reason {
                leaked.push((ip, handle, r, attrs(a)));
            }
        }
    }
    say(format!("IPAM blocks record {} allocations.\n", report_allocs.len()));
    say("Loading all IPAM pools...".into());
    for p in &snap.pools {
        say(format!("  {}", p.cidr));
    }
    say(format!("Found {} active IP pools.\n", snap.pools.iter().filter(|p| !p.disabled).count()));

    say("Scanning for IPs that are allocated but not actually in use...".into());
    if show_problems {
        for (ip, _, reason, attrs) in &leaked {
            say(format!("  {ip} leaked ({reason}); attrs {attrs}"));
        }
    }
    match node {
        Some(n) => say(format!("Found {} leaked allocations on node {n} (allocated, container gone).", leaked.len())),
        None => say("Leaks not judged: give --node N (with --valid-ids FILE, or on that node to test recorded netns paths).".into()),
    }

    say("Scanning for IPAM handles with no matching IPs...".into());
    let mut empty_handles = Vec::new();
    for (key, _) in session.list(Kind::Handle)? {
        if let Key::Handle(id) = key {
            if !held.contains_key(&id) {
                empty_handles.push(id);
            }
        }
    }
    if show_problems {
        for h in &empty_handles {
            say(format!("  {h} doesn't have any active IPs."));
        }
    }
    say(format!(
        "Found {} handles with no matching IPs (and {} handles with matches).",
        empty_handles.len(),
        consistency.handles.saturating_sub(empty_handles.len())
    ));

    // A block loses its affinity when its node is deleted while other nodes' addresses are in it; it goes
    // when they are released. Only an empty one left behind is a problem.
    let unaffine: Vec<&Block> = snap.blocks.iter().filter(|b| b.affine_host().is_none()).collect();
    say(format!("Found {} blocks affine to no node{}", unaffine.len(), if unaffine.is_empty() { "." } else { ":" }));
    for b in &unaffine {
        let note = if b.is_empty() { ": empty, a problem" } else { ", kept until they are released" };
        say(format!("  {} ({} in use{note})", b.cidr, b.in_use()));
    }
    let stray_blocks = unaffine.iter().filter(|b| b.is_empty()).count();

    let links = if args.on("links") { Some(link_report(&consistency.endpoints, node)?) } else { None };
    if let Some(l) = &links {
        say(format!("Checked {} attachment records against the interfaces of this network namespace:", consistency.endpoints.len()));
        for m in &l.mismatched {
            say(format!("problem: {m}"));
        }
        // An ADD or DEL stopped half way leaves these; the runtime's DEL of the attachment finishes it.
        for r in &l.without_interface {
            say(format!("  unfinished: record {r} has no interface"));
        }
        for i in &l.without_record {
            say(format!("  unfinished: interface {i} has no record"));
        }
    }
    for p in &consistency.problems {
        say(format!("problem: {p}"));
    }
    let link_problems = links.as_ref().map_or(0, |l| l.mismatched.len());
    let problems = consistency.problems.len() + leaked.len() + empty_handles.len() + stray_blocks + link_problems;

    if let Some(file) = report_file {
        let mut report = json!({
            "version": format!("v{}", env!("CARGO_PKG_VERSION")), "generatedBy": "calicoctl ipam check", "node": node, "network": network,
            "blocks": snap.blocks.len(), "allocations": report_allocs,
            "leakedAllocations": leaked.iter().map(|(ip, h, r, _)| json!({"ip": ip, "handle": h, "reason": r})).collect::<Vec<_>>(),
            "leakedHandles": empty_handles, "unaffineBlocks": unaffine.iter().map(|b| b.cidr.to_string()).collect::<Vec<_>>(),
            "problems": consistency.problems, "attachments": consistency.endpoints.len(),
        });
        if let Some(l) = &links {
            report["links"] =
                json!({"mismatched": l.mismatched, "recordsWithoutInterface": l.without_interface, "interfacesWithoutRecord": l.without_record});
        }
        write_out(Some(file), &serde_json::to_string_pretty(&report).unwrap_or_default())?;
        if file != "-" {
            say(format!("IPAM check report saved to {file}"));
        }
    }
    say(format!("Check complete; found {problems} problems."));
    if problems == 0 {
        Ok(())
    } else {
        Err(CtlError::ProblemsFound)
    }
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

fn link_report(endpoints: &BTreeMap<Key, WorkloadEndpoint>, node: Option<&str>) -> Result<LinkReport> {
    let netlink = |e: String| CtlError::Failed(e);
    let mut nl = common::netlink::Netlink::open().map_err(|e| netlink(format!("netlink: {e}")))?;
    let links = nl.links().map_err(|e| netlink(format!("listing links: {e}")))?;
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
