//! `cni-ipam bench-alloc --backend etcd [--endpoints URLS] [--nodes 1,10,100] [--samples N] [--idle]`: N
//! simulated nodes (threads) each do `samples` ADDs and then as many DELs against one etcd, all nodes at once
//! (with `--idle`: the other N-1 nodes only fill the store first, then one node is measured alone). Every
//! operation opens a fresh store (a new connection), as each plugin process does. Without `--endpoints` a
//! throw-away single-member etcd is started on unix sockets in its own network namespace and removed after.
use crate::backend::Retry;
use crate::ipam::admin::{apply, Resources};
use crate::ipam::config::{IpamConf, StoreConf};
use crate::ipam::pool::{PoolResource, PoolSpec};
use crate::ipam::{Node, Owner, Pool, PoolRef};
use crate::plugin;
use common::store::{Datastore, EtcdOptions, EtcdStore};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct TempEtcd {
    child: Child,
    dir: std::path::PathBuf,
}

impl TempEtcd {
    fn start() -> Result<TempEtcd, String> {
        let dir = std::env::temp_dir().join(format!("cni-ipam-bench-etcd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let child = Command::new("unshare")
            .current_dir(&dir)
            .args(["-n", "etcd", "--name", "b0", "--data-dir", "data", "--listen-client-urls", "unix://c:1"])
            .args(["--advertise-client-urls", "unix://c:1", "--listen-peer-urls", "unix://p:1"])
            .args(["--initial-advertise-peer-urls", "unix://p:1", "--initial-cluster", "b0=unix://p:1"])
            .args(["--logger", "zap", "--log-outputs", "etcd.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting etcd (Debian's etcd-server, under unshare -n): {e}"))?;
        let etcd = TempEtcd { child, dir };
        let store = EtcdStore::open(&EtcdOptions::new(&etcd.endpoint())).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !store.lock().is_ok_and(|s| s.get(&common::store::Key::IpamConfig).is_ok()) {
            if Instant::now() > deadline {
                return Err("etcd did not become ready in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(etcd)
    }

    fn endpoint(&self) -> String {
        format!("unix://{}/c:1", self.dir.display())
    }
}

impl Drop for TempEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn at(v: &mut [Duration], q: usize) -> Duration {
    v.sort();
    v.get((v.len() * q / 100).min(v.len().saturating_sub(1))).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn run(endpoints: Option<String>, nodes: &[usize], per_node: usize, idle: bool) -> i32 {
    let temp = match &endpoints {
        Some(_) => None,
        None => match TempEtcd::start() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("bench-alloc: {e}");
                return 1;
            }
        },
    };
    let endpoints = endpoints.unwrap_or_else(|| temp.as_ref().map(TempEtcd::endpoint).unwrap_or_default());
    println!("| simulated nodes | ADDs | ADD median | ADD p99 | first ADD of a node (claims a block) median | p99 | DEL median | DEL p99 | requests per warm ADD / DEL | ADD+DEL per s (all nodes) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (level, &n) in nodes.iter().enumerate() {
        match measure(&endpoints, level, n, per_node, idle) {
            Ok(line) => println!("| {n} | {line} |"),
            Err(e) => {
                eprintln!("bench-alloc: {e}");
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
    let res = PoolResource::ippool(name.as_str(), PoolSpec { cidr: format!("10.{}.0.0/16", 100 + level), block_size: Some(26), ..Default::default() },
    );
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
                plugin::add_with(&admin, Retry { attempts: 100, deadline: Instant::now() + Duration::from_secs(30), io: true }, &conf_for(&node), &owner, &[])
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
    let (mut warm, mut first, mut dels) = (Vec::new(), Vec::new(), Vec::new());
    let (mut warm_req, mut del_req) = (Vec::new(), Vec::new());
    for r in results {
        let (a, d) = r?;
        for s in a {
            if s.first {
                first.push(s.took);
            } else {
                warm.push(s.took);
                warm_req.push(s.requests);
            }
        }
        for s in d {
            dels.push(s.took);
            del_req.push(s.requests);
        }
    }
    warm_req.sort();
    del_req.sort();
    let med = |v: &Vec<u64>| v.get(v.len() / 2).copied().unwrap_or(0);
    let total_adds = warm.len() + first.len();
    let ops_per_s = (total_adds + dels.len()) as f64 / wall.as_secs_f64();
    Ok(format!(
        "{total_adds} | {} | {} | {} | {} | {} | {} | {} / {} | {:.0}",
        ms(at(&mut warm, 50)),
        ms(at(&mut warm, 99)),
        ms(at(&mut first, 50)),
        ms(at(&mut first, 99)),
        ms(at(&mut dels, 50)),
        ms(at(&mut dels, 99)),
        med(&warm_req),
        med(&del_req),
        ops_per_s
    ))
}
