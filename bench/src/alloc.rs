//! `cni-bench alloc`: the allocator alone, in-process (no plugin process, no namespaces): ADD/DEL latency with
//! 0, 10k and 60k existing allocations on the in-memory and the local file store, to show the ADD path does
//! not grow with the store; with `--backend etcd` (`alloc_etcd.rs`) against etcd with 1, 10 and 100 simulated
//! nodes. `--node NAME` names the node whose ADD/DEL are timed (default `bench-node`).
use crate::alloc_etcd;
use crate::stats::{median, ms, pct};
use cni_ipam::ipam::admin::{apply, Resources};
use cni_ipam::ipam::config::IpamConf;
use cni_ipam::ipam::{Owner, Pool};
use cni_ipam::plugin;
use datastore::ipam::records::IpamConfig;
use datastore::resources::ippool::{PoolResource, PoolSpec};
use datastore::store::{Datastore, FileStore, MemStore};
use std::time::{Duration, Instant};

const PER_NODE: usize = 1000;

const USAGE: &str = "\
usage: cni-bench alloc [--backend both|mem|file] [--levels 0,10000,60000] [--samples 2000] [--node NAME]
       cni-bench alloc --backend etcd [--endpoints URLS] [--nodes 1,10,100] [--samples 100] [--idle]
  mem, file: --samples ADD+DEL pairs per level of existing allocations (--levels)
  etcd: --samples ADDs then DELs per simulated node; without --endpoints a throw-away etcd is started (root)";

struct Opts {
    backend: String,
    levels: Vec<usize>,
    /// Default 2000 for mem/file, 100 (per node) for etcd.
    samples: Option<usize>,
    node: String,
    nodes: Vec<usize>,
    endpoints: Option<String>,
    idle: bool,
}

fn parse(argv: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        backend: "both".into(),
        levels: vec![0, 10_000, 60_000],
        samples: None,
        node: "bench-node".into(),
        nodes: vec![1, 10, 100],
        endpoints: None,
        idle: false,
    };
    let number = |flag: &str, v: &str| v.trim().parse::<usize>().map_err(|_| format!("{flag} takes a number, got {v:?}"));
    let list = |flag: &str, v: &str| v.split(',').map(|x| number(flag, x)).collect::<Result<Vec<_>, _>>();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--idle" {
            o.idle = true;
            continue;
        }
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        if !["--backend", "--levels", "--samples", "--node", "--nodes", "--endpoints"].contains(&flag) {
            return Err(format!("unknown option {a}"));
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or(format!("{a} needs a value"))?,
        };
        match flag {
            "--backend" if ["both", "mem", "file", "etcd"].contains(&value.as_str()) => o.backend = value,
            "--backend" => return Err(format!("--backend takes both, mem, file or etcd, got {value:?}")),
            "--levels" => o.levels = list(flag, &value)?,
            "--samples" => o.samples = Some(number(flag, &value)?),
            "--node" => o.node = value,
            "--nodes" => o.nodes = list(flag, &value)?,
            "--endpoints" => o.endpoints = Some(value),
            _ => return Err(format!("unknown option {a}")),
        }
    }
    Ok(o)
}

/// Runs `cni-bench alloc ARGS`, printing a Markdown table; returns the exit code.
pub fn run(argv: &[String]) -> i32 {
    if argv.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return 0;
    }
    let o = match parse(argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cni-bench alloc: {e}\n{USAGE}");
            return 2;
        }
    };
    let backends = match o.backend.as_str() {
        "etcd" => return alloc_etcd::run(o.endpoints, &o.nodes, o.samples.unwrap_or(100), o.idle),
        "mem" => vec!["mem"],
        "file" => vec!["file"],
        _ => vec!["mem", "file"],
    };
    let samples = o.samples.unwrap_or(2000);
    println!("| store | existing allocations | ADD median | ADD p99 | DEL median | DEL p99 | new-block ADD median | new-block ADD p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for backend in backends {
        for &level in &o.levels {
            let r = match backend {
                "mem" => measure(&MemStore::new(), None, &o.node, level, samples),
                _ => {
                    let dir = std::env::temp_dir().join(format!("cni-bench-alloc-{}-{level}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&dir);
                    let r = FileStore::open(&dir).and_then(|s| Ok((s, FileStore::open(&dir)?.without_fsync())));
                    let r = match r {
                        Ok((synced, fast)) => measure(&synced, Some(&fast), &o.node, level, samples),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = std::fs::remove_dir_all(&dir);
                    r
                }
            };
            match r {
                Ok(line) => println!("| {backend} | {level} | {line} |"),
                Err(e) => {
                    eprintln!("cni-bench alloc: {e}");
                    return 1;
                }
            }
        }
    }
    0
}

fn owner(handle: String, node: &str) -> Owner {
    Owner { handle, attrs: [("node".to_string(), node.to_string())].into() }
}

/// The median and p99 cells of a column, in µs.
fn cells(took: &[Duration]) -> String {
    if took.is_empty() {
        return "- | -".into();
    }
    let us: Vec<f64> = took.iter().map(|d| ms(*d) * 1e3).collect();
    format!("{:.1} µs | {:.1} µs", median(&us), pct(&us, 99.0))
}

/// `fill` (if given) is the same store without fsync, used only to create the existing allocations quickly.
fn measure(store: &dyn Datastore, fill: Option<&dyn Datastore>, node: &str, level: usize, samples: usize) -> Result<String, String> {
    let e = |e: cni_ipam::IpamError| e.to_string();
    let res = PoolResource::ippool("bench", PoolSpec { cidr: "10.0.0.0/8".into(), block_size: Some(26), ..Default::default() });
    let pool = Pool::from_resource(&res).map_err(|x| x.to_string())?;
    apply(&mut *store.lock().map_err(|x| x.to_string())?, &Resources { pools: vec![pool], config: Some(IpamConfig::default()) }).map_err(e)?;
    let filler = fill.unwrap_or(store);
    for i in 0..level {
        let node = format!("fill-{}", i / PER_NODE);
        plugin::add(filler, &IpamConf::v4_for_node(&node), &owner(format!("bench.fill{i}"), &node), &[]).map_err(e)?;
    }
    let (mut adds, mut dels) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for i in 0..samples {
        let handle = format!("bench.c{i}");
        let t = Instant::now();
        plugin::add(store, &IpamConf::v4_for_node(node), &owner(handle.clone(), node), &[]).map_err(e)?;
        adds.push(t.elapsed());
        let t = Instant::now();
        plugin::del(store, &[handle]).map_err(e)?;
        dels.push(t.elapsed());
    }
    let claims: Vec<Duration> = (0..(samples / 10).max(10))
        .map(|k| {
            let node = format!("new-{k}");
            let t = Instant::now();
            plugin::add(store, &IpamConf::v4_for_node(&node), &owner(format!("bench.n{k}"), &node), &[]).map(|_| t.elapsed())
        })
        .collect::<Result<_, _>>()
        .map_err(e)?;
    Ok(format!("{} | {} | {}", cells(&adds), cells(&dels), cells(&claims)))
}
