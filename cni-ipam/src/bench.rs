//! `cni-ipam bench-alloc` (hidden): in-process allocation latency with 0, 10k and 60k existing allocations,
//! on the in-memory and the local file store, to show the ADD path does not grow with the store; and with
//! `--backend etcd`, ADD/DEL latency against etcd with 1, 10 and 100 simulated nodes allocating at once.
//! `--node NAME` names the node whose ADD/DEL are timed (default `bench-node`).
use crate::ipam::admin::{apply, Resources};
use crate::ipam::config::IpamConf;
use crate::ipam::pool::{PoolResource, PoolSpec};
use crate::ipam::records::IpamConfig;
use crate::ipam::{Owner, Pool};
use crate::plugin;
use common::store::{Datastore, FileStore, MemStore};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PER_NODE: usize = 1000;

pub fn run(flags: &BTreeMap<String, Option<String>>) -> i32 {
    let get = |k: &str, d: &str| flags.get(k).cloned().flatten().unwrap_or_else(|| d.to_string());
    let levels: Vec<usize> = get("--levels", "0,10000,60000").split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let samples: usize = get("--samples", "2000").parse().unwrap_or(2000);
    // The node whose ADD/DEL are timed: `--node` with a long name times hashed store file names.
    let node = get("--node", "bench-node");
    let backends = match get("--backend", "both").as_str() {
        "etcd" => {
            let nodes: Vec<usize> = get("--nodes", "1,10,100").split(',').filter_map(|s| s.trim().parse().ok()).collect();
            let per_node: usize = get("--samples", "100").parse().unwrap_or(100);
            return crate::bench_etcd::run(flags.get("--endpoints").cloned().flatten(), &nodes, per_node, flags.contains_key("--idle"));
        }
        "mem" => vec!["mem"],
        "file" => vec!["file"],
        _ => vec!["mem", "file"],
    };
    println!("| store | existing allocations | ADD median | ADD p99 | DEL median | DEL p99 | new-block ADD median | new-block ADD p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for backend in backends {
        for &level in &levels {
            let r = match backend {
                "mem" => measure(&MemStore::new(), None, &node, level, samples),
                _ => {
                    let dir = std::env::temp_dir().join(format!("cni-ipam-bench-{}-{level}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&dir);
                    let r = FileStore::open(&dir).and_then(|s| Ok((s, FileStore::open(&dir)?.without_fsync())));
                    let r = match r {
                        Ok((synced, fast)) => measure(&synced, Some(&fast), &node, level, samples),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = std::fs::remove_dir_all(&dir);
                    r
                }
            };
            match r {
                Ok(line) => println!("| {backend} | {level} | {line} |"),
                Err(e) => {
                    eprintln!("bench-alloc: {e}");
                    return 1;
                }
            }
        }
    }
    0
}

fn conf(node: &str) -> IpamConf {
    IpamConf::v4_for_node(node)
}

fn owner(handle: String, node: &str) -> Owner {
    Owner { handle, attrs: [("node".to_string(), node.to_string())].into() }
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: usize| v.get((v.len() * q / 100).min(v.len().saturating_sub(1))).copied().unwrap_or_default();
    format!("{:.1} µs | {:.1} µs", at(50).as_secs_f64() * 1e6, at(99).as_secs_f64() * 1e6)
}

/// `fill` (if given) is the same store without fsync, used only to create the existing allocations quickly.
fn measure(store: &dyn Datastore, fill: Option<&dyn Datastore>, node: &str, level: usize, samples: usize) -> Result<String, String> {
    let e = |e: crate::IpamError| e.to_string();
    let res = PoolResource::ippool("bench", PoolSpec { cidr: "10.0.0.0/8".into(), block_size: Some(26), ..Default::default() },
    );
    let pool = Pool::from_resource(&res).map_err(e)?;
    apply(&mut *store.lock().map_err(|x| x.to_string())?, &Resources { pools: vec![pool], config: Some(IpamConfig::default()) })
        .map_err(e)?;
    let filler = fill.unwrap_or(store);
    for i in 0..level {
        let node = format!("fill-{}", i / PER_NODE);
        plugin::add(filler, &conf(&node), &owner(format!("bench.fill{i}"), &node), &[]).map_err(e)?;
    }
    let (mut adds, mut dels) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for i in 0..samples {
        let handle = format!("bench.c{i}");
        let t = Instant::now();
        plugin::add(store, &conf(node), &owner(handle.clone(), node), &[]).map_err(e)?;
        adds.push(t.elapsed());
        let t = Instant::now();
        plugin::del(store, &[handle]).map_err(e)?;
        dels.push(t.elapsed());
    }
    let claims: Vec<Duration> = (0..(samples / 10).max(10))
        .map(|k| {
            let node = format!("new-{k}");
            let t = Instant::now();
            plugin::add(store, &conf(&node), &owner(format!("bench.n{k}"), &node), &[]).map(|_| t.elapsed())
        })
        .collect::<Result<_, _>>()
        .map_err(e)?;
    Ok(format!("{} | {} | {}", stats(adds), stats(dels), stats(claims)))
}
