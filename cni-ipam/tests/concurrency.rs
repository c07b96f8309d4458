//! Many plugin processes against one store directory at once: the flock serialises them, nothing is handed
//! out twice, and nodes sharing the store claim their own blocks and borrow only when allowed.
mod support;
use cni_ipam::ipam::Block;
use datastore::store::{Datastore, FileStore, Kind};
use std::collections::HashSet;
use std::sync::Arc;
use support::*;

#[test]
fn two_hundred_concurrent_adds_then_all_deleted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    load(&store, tmp.path(), vec![pool("conc", "10.60.0.0/16", 26)]);
    let net = Arc::new(Net::new(&store, "node-1"));
    let run_all = |verb: &'static str| -> Vec<String> {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let net = net.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|j| {
                            let cid = format!("c{t}-{j}");
                            let (rc, out, err) = net.run(verb, &cid, "");
                            assert_eq!(rc, 0, "{verb} {cid}: {out} {err}");
                            out["ips"][0]["address"].as_str().unwrap_or_default().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().expect("thread")).collect()
    };
    let ips = run_all("ADD");
    let distinct: HashSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 200, "200 distinct addresses");
    let report = assert_consistent(&store);
    assert_eq!((report.allocations, report.handles), (200, 200));
    run_all("DEL");
    let report = assert_consistent(&store);
    assert_eq!((report.allocations, report.handles), (0, 0));
}

/// (node of the allocation, block affinity host) for every allocated address.
fn allocations(store: &std::path::Path) -> Vec<(String, String, String)> {
    let fs = FileStore::open(store).expect("open");
    let session = fs.lock().expect("lock");
    let mut out = Vec::new();
    for (_, rec) in session.list(Kind::Block).expect("list") {
        let b: Block = rec.value.decode().expect("block decodes");
        for (ord, idx) in b.allocations.iter().enumerate() {
            let Some(idx) = idx else { continue };
            let node = b.attributes[*idx].secondary.get("node").cloned().unwrap_or_default();
            let host = b.affinity.clone().unwrap_or_default().trim_start_matches("host:").to_string();
            out.push((b.ip(ord as u32).to_string(), node, host));
        }
    }
    out
}

#[test]
fn simulated_nodes_share_one_store() {
    for strict in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = tmp.path().join("store");
        // 8 blocks of 8 addresses; the nodes below want 10 blocks' worth, so someone runs out of blocks.
        load(&store, tmp.path(), vec![pool("small", "10.70.0.0/26", 29), ipam_config(strict, 0)]);
        let wants = [30usize, 10, 10, 10];
        // One ADD per node first, so every node owns a block however the concurrent part is scheduled.
        let mut results: Vec<_> = (0..wants.len())
            .map(|n| Net::new(&store, &format!("node-{n}")).run("ADD", &format!("n{n}-c0"), ""))
            .map(|(rc, out, _)| (rc, out))
            .collect();
        let threads: Vec<_> = wants
            .iter()
            .enumerate()
            .map(|(n, want)| {
                let net = Net::new(&store, &format!("node-{n}"));
                let want = *want;
                std::thread::spawn(move || {
                    (1..want).map(|j| net.run("ADD", &format!("n{n}-c{j}"), "")).map(|(rc, out, _)| (rc, out)).collect::<Vec<_>>()
                })
            })
            .collect();
        results.extend(threads.into_iter().flat_map(|t| t.join().expect("thread")));
        let ok: Vec<String> = results.iter().filter(|r| r.0 == 0).map(|r| r.1["ips"][0]["address"].to_string()).collect();
        let failed: Vec<u64> = results.iter().filter(|r| r.0 != 0).map(|r| r.1["code"].as_u64().unwrap_or(0)).collect();
        let distinct: HashSet<&String> = ok.iter().collect();
        assert_eq!(distinct.len(), ok.len(), "never a duplicate");
        let report = assert_consistent(&store);
        assert_eq!(report.allocations, ok.len());

        let allocs = allocations(&store);
        let borrowed = allocs.iter().filter(|(_, node, host)| node != host).count();
        let hosts: HashSet<&String> = allocs.iter().map(|(_, _, h)| h).collect();
        assert!(hosts.len() >= 4, "every node claimed a block of its own: {hosts:?}");
        if strict {
            assert_eq!(borrowed, 0, "strict affinity never borrows");
            assert!(!failed.is_empty() && failed.iter().all(|c| *c == 102), "failures are strict-affinity errors: {failed:?}");
        } else {
            assert!(failed.is_empty(), "without strict affinity every ADD fits (60 <= 64): {failed:?}");
            assert!(borrowed > 0, "a node without a free block borrowed");
        }
    }
}
