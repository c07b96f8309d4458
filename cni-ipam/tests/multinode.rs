//! Cluster mode: three node network namespaces, each with its own nodename, allocating from one etcd at once.
//! etcd (Debian's etcd-server) listens only on unix sockets (reachable from every netns, nothing on the
//! machine's interfaces) and is killed with its data dir by a guard. Needs root and etcd.
mod support;
use cni_ipam::ipam::check::check_store;
use cni_ipam::ipam::Block;
use datastore::ipam::records::{Affinity, IpamConfig};
use datastore::store::{Datastore, EtcdStore, Key, Kind};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::load_pool;
use testbed::etcd::{available, Etcd};
use testbed::{root_or_skip, target_dir, Node as Bed};

const NODES: usize = 3;
const PODS: usize = 100;
const RUNTIMES: usize = 4;

fn ready(test: &str) -> bool {
    root_or_skip(test) && available(test)
}

/// The network config a node's runtime passes: etcd keys at the top level, as in Calico's conflists.
fn net_conf(endpoints: &str, bed: &Bed, node: &str) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "mn-net", "type": "cni-calico",
        "datastore_type": "etcdv3", "etcd_endpoints": endpoints,
        "ipam": {"type": "cni-ipam", "nodename": node, "etcd_timeout": 10,
                 "ipam_lock_file": bed.path("ipam.lock")}
    })
}

struct Outcome {
    node: usize,
    cid: String,
    code: i32,
    ip: String,
    msg: String,
}

/// `PODS` ADDs per node straight into cni-ipam (IPAM needs no real netns), `RUNTIMES` at once per node, all
/// nodes at once. `on_progress` sees the number of finished ADDs (to inject failures mid-run).
fn add_everywhere(beds: &[Bed], confs: &[Value], pods: usize, on_progress: &(dyn Fn(usize) + Sync)) -> Vec<Outcome> {
    let out = Mutex::new(Vec::new());
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for (n, bed) in beds.iter().enumerate() {
            let next = std::sync::Arc::new(AtomicUsize::new(0));
            for _ in 0..RUNTIMES {
                let (next, out, done, conf) = (next.clone(), &out, &done, &confs[n]);
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= pods {
                        break;
                    }
                    let cid = format!("n{n}-pod{i}");
                    let fake_ns = format!("{}-pod{i}", bed.name);
                    let r = bed.run("cni-ipam", "ADD", &cid, Some(&fake_ns), "eth0", &[], conf);
                    let ip = r.json["ips"][0]["address"].as_str().unwrap_or_default().to_string();
                    let msg = format!("{} {}", r.json, r.stderr.trim());
                    // The CNI error code from the error JSON (the exit status is just non-zero).
                    let code = if r.code == 0 { 0 } else { r.json["code"].as_i64().unwrap_or(-1) as i32 };
                    out.lock().unwrap().push(Outcome { node: n, cid, code, ip, msg });
                    on_progress(done.fetch_add(1, Ordering::SeqCst) + 1);
                });
            }
        }
    });
    out.into_inner().unwrap()
}

fn del_everywhere(beds: &[Bed], confs: &[Value], outcomes: &[Outcome]) {
    std::thread::scope(|s| {
        for chunk in outcomes.chunks(outcomes.len().div_ceil(RUNTIMES * NODES).max(1)) {
            s.spawn(move || {
                for o in chunk {
                    let fake_ns = format!("{}-x", beds[o.node].name);
                    let r = beds[o.node].run("cni-ipam", "DEL", &o.cid, Some(&fake_ns), "eth0", &[], &confs[o.node]);
                    assert_eq!(r.code, 0, "DEL {}: {} {}", o.cid, r.json, r.stderr);
                }
            });
        }
    });
}

/// Block CIDR -> (affinity host, block).
type Blocks = BTreeMap<String, (String, Block)>;

/// Per block: its affinity host; and every affinity record (host, block, state).
fn blocks_and_affinities(store: &EtcdStore) -> (Blocks, Vec<(String, String, String)>) {
    let s = store.lock().expect("lock");
    let mut blocks = BTreeMap::new();
    for (_, rec) in s.list(Kind::Block).expect("list blocks") {
        let b: Block = rec.value.decode().expect("block decodes");
        let host = b.affinity.clone().unwrap_or_default().trim_start_matches("host:").to_string();
        blocks.insert(b.cidr.to_string(), (host, b));
    }
    let mut affinities = Vec::new();
    for (key, rec) in s.list(Kind::Affinity).expect("list affinities") {
        let Key::Affinity { host, cidr } = key else { continue };
        let a: Affinity = rec.value.decode().expect("affinity decodes");
        affinities.push((host, cidr.to_string(), a.state));
    }
    (blocks, affinities)
}

fn assert_clean(store: &EtcdStore, allocations: usize) {
    let s = store.lock().expect("lock");
    let report = check_store(&*s).expect("check");
    assert!(report.problems.is_empty(), "store problems: {:#?}", report.problems);
    assert_eq!((report.allocations, report.handles), (allocations, allocations), "every handle accounted for");
}

fn beds_and_confs(etcd: &Etcd, rotate_endpoints: bool) -> (Vec<Bed>, Vec<Value>) {
    let beds: Vec<Bed> = (0..NODES).map(|_| Bed::new("mn")).collect();
    let eps = etcd.endpoints();
    let confs = (0..NODES)
        .map(|n| {
            // Each node prefers a different member (as nodes configured with their local member first).
            let mut mine = eps.clone();
            if rotate_endpoints {
                mine.rotate_left(n % eps.len());
            }
            net_conf(&mine.join(","), &beds[n], &format!("node-{n}"))
        })
        .collect();
    (beds, confs)
}

#[test]
fn three_nodes_share_a_small_pool_claiming_and_borrowing() {
    if !ready("three_nodes_share_a_small_pool_claiming_and_borrowing") {
        return;
    }
    let etcd = Etcd::start(1);
    let store = etcd.store();
    // 5 blocks of 64 = 320 addresses for 300 pods: each node needs two blocks, so one node cannot claim its
    // second one and must borrow from the others' free addresses.
    load_pool(&store, "mn-a", "10.70.0.0/24", 26, None);
    load_pool(&store, "mn-b", "10.70.1.0/26", 26, None);
    let (beds, confs) = beds_and_confs(&etcd, false);
    let t = Instant::now();
    let outcomes = add_everywhere(&beds, &confs, PODS, &|_| {});
    eprintln!("{} ADDs on {NODES} nodes in {:?}", outcomes.len(), t.elapsed());
    let failed: Vec<String> = outcomes.iter().filter(|o| o.code != 0).map(|o| format!("{}: {}", o.cid, o.msg)).collect();
    assert!(failed.is_empty(), "failed ADDs: {failed:#?}");
    let ips: BTreeSet<&str> = outcomes.iter().map(|o| o.ip.as_str()).collect();
    assert_eq!(ips.len(), NODES * PODS, "no address handed out twice");
    assert_clean(&store, NODES * PODS);

    let (blocks, affinities) = blocks_and_affinities(&store);
    assert_eq!(blocks.len(), 5, "every block of both pools claimed: {:?}", blocks.keys());
    for (cidr, (host, _)) in &blocks {
        let owners: Vec<&(String, String, String)> = affinities.iter().filter(|(_, c, state)| c == cidr && state == "confirmed").collect();
        assert_eq!(owners.len(), 1, "block {cidr}: confirmed affinities {owners:?}");
        assert_eq!(&owners[0].0, host, "block {cidr}: affinity record and block disagree");
        assert!(host.starts_with("node-"), "block {cidr} affine to {host:?}");
    }
    let borrowed = blocks
        .values()
        .flat_map(|(host, b)| b.allocations.iter().flatten().map(move |i| (host, b.attributes[*i].secondary.get("node").cloned())))
        .filter(|(host, node)| node.as_deref() != Some(host.as_str()))
        .count();
    assert!(borrowed > 0, "with 5 blocks for 6 block-loads, some node must borrow");
    eprintln!("borrowed addresses: {borrowed}");

    del_everywhere(&beds, &confs, &outcomes);
    assert_clean(&store, 0);
}

#[test]
fn strict_affinity_refuses_beyond_the_nodes_blocks() {
    if !ready("strict_affinity_refuses_beyond_the_nodes_blocks") {
        return;
    }
    let etcd = Etcd::start(1);
    let store = etcd.store();
    let strict = IpamConfig { strict_affinity: true, auto_allocate_blocks: true, max_blocks_per_host: 0 };
    load_pool(&store, "st", "10.71.0.0/24", 26, Some(strict));
    let (beds, confs) = beds_and_confs(&etcd, false);
    let outcomes = add_everywhere(&beds, &confs, PODS, &|_| {});
    let odd: Vec<String> = outcomes.iter().filter(|o| o.code != 0 && o.code != 102).map(|o| format!("{}: {} {}", o.cid, o.code, o.msg)).collect();
    assert!(odd.is_empty(), "only strict-affinity refusals expected: {odd:#?}");
    assert!(outcomes.iter().any(|o| o.code == 102), "300 pods cannot fit in 4 blocks of 64");
    assert!(outcomes.iter().filter(|o| o.code == 102).all(|o| o.msg.contains("strict affinity")));
    let (blocks, _) = blocks_and_affinities(&store);
    assert_eq!(blocks.len(), 4);
    for n in 0..NODES {
        let node = format!("node-{n}");
        let owned = blocks.values().filter(|(h, _)| *h == node).count();
        let ok = outcomes.iter().filter(|o| o.node == n && o.code == 0).count();
        assert_eq!(ok, PODS.min(64 * owned), "{node} owns {owned} blocks");
    }
    for (cidr, (host, b)) in &blocks {
        for i in b.allocations.iter().flatten() {
            assert_eq!(b.attributes[*i].secondary.get("node"), Some(host), "no borrowing from {cidr} under strict affinity");
        }
    }
    let ok = outcomes.iter().filter(|o| o.code == 0).count();
    assert_clean(&store, ok);
}

#[test]
fn a_member_dies_mid_run_and_no_add_fails() {
    if !ready("a_member_dies_mid_run_and_no_add_fails") {
        return;
    }
    let mut etcd = Etcd::start(3);
    let store = etcd.store();
    load_pool(&store, "ha", "10.72.0.0/22", 26, None);
    let (beds, confs) = beds_and_confs(&etcd, true);
    let victim = etcd.leader().unwrap_or(0);
    let etcd_cell = Mutex::new(&mut etcd);
    const HA_PODS: usize = 40;
    let outcomes = add_everywhere(&beds, &confs, HA_PODS, &|done| {
        if done == HA_PODS {
            eprintln!("killing etcd member {victim} (the leader) after {done} ADDs");
            etcd_cell.lock().unwrap().kill(victim);
        }
    });
    let failed: Vec<String> = outcomes.iter().filter(|o| o.code != 0).map(|o| format!("{}: {}", o.cid, o.msg)).collect();
    assert!(failed.is_empty(), "failed ADDs: {failed:#?}");
    let ips: BTreeSet<&str> = outcomes.iter().map(|o| o.ip.as_str()).collect();
    assert_eq!(ips.len(), NODES * HA_PODS, "no duplicate, nothing lost");
    assert_clean(&store, NODES * HA_PODS);
    del_everywhere(&beds, &confs, &outcomes);
    assert_clean(&store, 0);
}

/// cni-calico + cni-ipam on etcd in real namespaces: two nodes, two pods each, same-node pods ping each other.
#[test]
fn pods_on_two_nodes_through_cni_calico() {
    if !ready("pods_on_two_nodes_through_cni_calico") {
        return;
    }
    if !target_dir().join("cni-calico").exists() {
        assert!(std::env::var_os("CI").is_none(), "cni-calico is not built (scripts/test.sh builds the workspace)");
        eprintln!("SKIP pods_on_two_nodes_through_cni_calico: build cni-calico first (cargo build --workspace)");
        return;
    }
    let etcd = Etcd::start(1);
    let store = etcd.store();
    load_pool(&store, "pp", "10.73.0.0/24", 26, None);
    let mut beds: Vec<Bed> = (0..2).map(|_| Bed::new("mnp")).collect();
    let mut results = Vec::new();
    for (n, bed) in beds.iter_mut().enumerate() {
        let conf = net_conf(&etcd.endpoints_csv(), bed, &format!("node-{n}"));
        for p in 0..2 {
            let pod = bed.pod();
            let cid = format!("cc-{n}-{p}");
            let r = bed.run("cni-calico", "ADD", &cid, Some(&pod), "eth0", &[], &conf);
            assert_eq!(r.code, 0, "ADD {cid}: {} {}", r.stdout, r.stderr);
            let ip = r.json["ips"][0]["address"].as_str().unwrap_or_default().trim_end_matches("/32").to_string();
            results.push((n, pod, cid, ip, conf.clone(), r.json));
        }
    }
    let ips: BTreeSet<&String> = results.iter().map(|r| &r.3).collect();
    assert_eq!(ips.len(), 4);
    for (n, bed) in beds.iter().enumerate() {
        let mine: Vec<&(usize, String, String, String, Value, Value)> = results.iter().filter(|r| r.0 == n).collect();
        assert!(bed.ping(&mine[0].1, &mine[1].3, Duration::from_secs(5)), "node-{n}: {} cannot ping {}", mine[0].1, mine[1].3);
    }
    let (blocks, _) = blocks_and_affinities(&store);
    assert_eq!(blocks.len(), 2, "one block per node");
    for (n, pod, cid, _, conf, prev) in &results {
        let mut conf = conf.clone();
        conf["prevResult"] = prev.clone();
        let r = beds[*n].run("cni-calico", "DEL", cid, Some(pod), "eth0", &[], &conf);
        assert_eq!(r.code, 0, "DEL {cid}: {} {}", r.stdout, r.stderr);
    }
    assert_clean(&store, 0);
}
