//! `cni-bench alloc --backend etcd [--endpoints URLS] [--nodes 1,10,100] [--samples N] [--idle]`: N
//! simulated nodes (threads) each do `samples` ADDs and then as many DELs against one etcd, all nodes at once
//! (with `--idle`: the other N-1 nodes only fill the store first, then one node is measured alone). Every
//! operation opens a fresh store (a new connection), as each plugin process does. Without `--endpoints` a
//! throw-away single-member etcd (`testbed::etcd`) is started and removed after.
use crate::stats::{median, ms, pct};
use cni_ipam::backend::Retry;
use cni_ipam::ipam::admin::{apply, Resources};
use cni_ipam::ipam::config::{IpamConf, StoreConf};
use cni_ipam::ipam::{Node, Owner, Pool, PoolRef};
use cni_ipam::plugin;
use datastore::resources::ippool::{PoolResource, PoolSpec};
use datastore::store::{Datastore, EtcdOptions, EtcdStore};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use testbed::etcd::Etcd;

/// The `p`th percentile of `xs` in ms, `-` when there is no sample.
fn cell(xs: &[f64], p: f64) -> String {
    if xs.is_empty() {
        return "-".into();
    }
    format!("{:.2} ms", pct(xs, p))
}

pub fn run(endpoints: Option<String>, nodes: &[usize], per_node: usize, idle: bool) -> i32 {
    let temp = match &endpoints {
        Some(_) => None,
        None if testbed::etcd::installed() => Some(Etcd::start(1)),
        None => {
            eprintln!(
                "cni-bench alloc: {} is not installed (`scripts/deps.sh --bench` installs etcd-server); or give --endpoints",
                testbed::etcd::ETCD
            );
            return 1;
        }
    };
    let endpoints = endpoints.unwrap_or_else(|| temp.as_ref().map(Etcd::endpoints_csv).unwrap_or_default());
    println!("| simulated nodes | ADDs | ADD median | ADD p99 | first ADD of a node (claims a block) median | p99 | DEL median | DEL p99 | requests per warm ADD / DEL | ADD+DEL per s (all nodes) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (level, &n) in nodes.iter().enumerate() {
        match measure(&endpoints, level, n, per_node, idle) {
            Ok(line) => println!("| {n} | {line} |"),
            Err(e) => {
                eprintln!("cni-bench alloc: {e}");
                return 1;
            }
        }
    }
    drop(temp);
    0
}

struct Sample {
    first: bool,
    took: Duration,
    requests: u64,
}

fn measure(endpoints: &str, level: usize, nodes: usize, per_node: usize, idle: bool) -> Result<String, String> {
    let opts = EtcdOptions::new(endpoints);
    let admin = EtcdStore::open(&opts).map_err(|e| e.to_string())?;
    // A pool of its own per level, so earlier levels' blocks do not help later ones.
    let name = format!("bench-{}-{level}", std::process::id());
    let res =
        PoolResource::ippool(name.as_str(), PoolSpec { cidr: format!("10.{}.0.0/16", 100 + level), block_size: Some(26), ..Default::default() });
    let pool = Pool::from_resource(&res).map_err(|e| e.to_string())?;
    apply(&mut *admin.lock().map_err(|e| e.to_string())?, &Resources { pools: vec![pool], config: None }).map_err(|e| e.to_string())?;

    let conf_for = |node: &str| IpamConf {
        assign_ipv4: true,
        assign_ipv6: false,
        ipv4_pools: vec![PoolRef::Name(name.clone())],
        ipv6_pools: vec![],
        node: Node { name: node.to_string(), labels: BTreeMap::new() },
        store: StoreConf::Etcd(opts.clone()),
    };
    if idle {
        // The other nodes' blocks and addresses sit in the store; only node 0 is measured.
        for n in 1..nodes {
            let node = format!("bench-{level}-node-{n}");
            for i in 0..per_node {
                let owner = Owner { handle: format!("bench.{node}.{i}"), attrs: [("node".to_string(), node.clone())].into() };
                plugin::add_with(
                    &admin,
                    Retry { attempts: 100, deadline: Instant::now() + Duration::from_secs(30), io: true },
                    &conf_for(&node),
                    &owner,
                    &[],
                )
                .map_err(|e| e.to_string())?;
            }
        }
    }
    let measured = if idle { 1 } else { nodes };
    let run = std::sync::Barrier::new(measured);
    let start = Instant::now();
    type NodeRun = Result<(Vec<Sample>, Vec<Sample>), String>;
    let results: Vec<NodeRun> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..measured)
            .map(|n| {
                let (opts, run, conf_for) = (&opts, &run, &conf_for);
                s.spawn(move || -> NodeRun {
                    let node = format!("bench-{level}-node-{n}");
                    let conf = conf_for(&node);
                    run.wait();
                    let mut adds = Vec::with_capacity(per_node);
                    for i in 0..per_node {
                        let owner = Owner { handle: format!("bench.{node}.{i}"), attrs: [("node".to_string(), node.clone())].into() };
                        let t = Instant::now();
                        let store = EtcdStore::open(opts).map_err(|e| e.to_string())?;
                        let retry = Retry { attempts: 100, deadline: Instant::now() + Duration::from_secs(30), io: true };
                        plugin::add_with(&store, retry, &conf, &owner, &[]).map_err(|e| e.to_string())?;
                        adds.push(Sample { first: i == 0, took: t.elapsed(), requests: store.requests() });
                    }
                    let mut dels = Vec::with_capacity(per_node);
                    for i in 0..per_node {
                        let t = Instant::now();
                        let store = EtcdStore::open(opts).map_err(|e| e.to_string())?;
                        let retry = Retry { attempts: 100, deadline: Instant::now() + Duration::from_secs(30), io: true };
                        plugin::del_with(&store, retry, &[format!("bench.{node}.{i}"), format!("c{i}")]).map_err(|e| e.to_string())?;
                        dels.push(Sample { first: false, took: t.elapsed(), requests: store.requests() });
                    }
                    Ok((adds, dels))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("bench thread panicked".into()))).collect()
    });
    let wall = start.elapsed();
    // Latencies in ms and request counts, as f64 for the one percentile helper (counts stay exact).
    let (mut warm, mut first, mut dels) = (Vec::new(), Vec::new(), Vec::new());
    let (mut warm_req, mut del_req) = (Vec::new(), Vec::new());
    for r in results {
        let (a, d) = r?;
        for s in a {
            if s.first {
                first.push(ms(s.took));
            } else {
                warm.push(ms(s.took));
                warm_req.push(s.requests as f64);
            }
        }
        for s in d {
            dels.push(ms(s.took));
            del_req.push(s.requests as f64);
        }
    }
    let requests = |v: &[f64]| if v.is_empty() { "-".to_string() } else { format!("{:.0}", median(v)) };
    let total_adds = warm.len() + first.len();
    let ops_per_s = (total_adds + dels.len()) as f64 / wall.as_secs_f64();
    Ok(format!(
        "{total_adds} | {} | {} | {} | {} | {} | {} | {} / {} | {:.0}",
        cell(&warm, 50.0),
        cell(&warm, 99.0),
        cell(&first, 50.0),
        cell(&first, 99.0),
        cell(&dels, 50.0),
        cell(&dels, 99.0),
        requests(&warm_req),
        requests(&del_req),
        ops_per_s
    ))
}
