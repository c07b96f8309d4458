//! cni-bench: pod network setup and teardown, side by side with Debian's reference plugins, in one run.
//! Contenders alternate pod by pod so machine drift falls on all of them alike. Needs root; the etcd-store
//! contender also needs Debian's etcd-server (scripts/deps.sh --bench), and is left out with a note without it.
//! `cni-bench alloc` times the allocator alone, in-process (`alloc.rs`); `cni-bench bgp` the node agent's
//! BGP figures on cluster beds (`bgp/`).
mod alloc;
mod alloc_etcd;
mod bgp;
mod contender;
mod plot;
mod stats;

use contender::{Contender, Kind, Sample};
use stats::{median, ms, pct, table};
use std::time::Instant;
use testbed::Node;

struct Opts {
    pods: usize,
    levels: Vec<usize>,
    growth_samples: usize,
    burst: usize,
    concurrency: Vec<usize>,
    out: Option<String>,
    /// Sections to run (sequential, burst, growth); all when empty.
    only: Vec<String>,
}

fn parse_opts(args: &[String]) -> Opts {
    let mut o =
        Opts { pods: 200, levels: vec![0, 1000, 10000], growth_samples: 100, burst: 100, concurrency: vec![1, 4, 16], out: None, only: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--pods" => o.pods = val().parse().unwrap_or_else(|_| usage("--pods takes a number")),
            "--burst" => o.burst = val().parse().unwrap_or_else(|_| usage("--burst takes a number")),
            "--concurrency" => o.concurrency = val().split(',').map(|c| c.parse().unwrap_or_else(|_| usage("--concurrency takes 1,4,16"))).collect(),
            "--out" => o.out = Some(val()),
            "--only" => o.only = val().split(',').map(str::to_string).collect(),
            "--levels" => o.levels = val().split(',').map(|c| c.parse().unwrap_or_else(|_| usage("--levels takes 0,1000,10000"))).collect(),
            "--growth-samples" => o.growth_samples = val().parse().unwrap_or_else(|_| usage("--growth-samples takes a number")),
            _ => usage(&format!("unknown option {a}")),
        }
    }
    o
}

fn usage(msg: &str) -> ! {
    eprintln!("{msg}\nusage: cni-bench [--pods N] [--burst N] [--concurrency 1,4,16] [--levels 0,1000,10000] [--growth-samples N] [--only sequential,burst,growth] [--out FILE.md]\n       cni-bench alloc --help\n       cni-bench bgp --help");
    std::process::exit(2)
}

fn main() {
    // Release builds abort on panic: without this a failed run would leave its namespaces and etcd behind.
    testbed::clean_up_on_panic();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("alloc") {
        std::process::exit(alloc::run(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("bgp") {
        std::process::exit(bgp::run(&args[1..]));
    }
    let o = parse_opts(&args);
    assert!(o.pods <= 60_000 && o.burst <= 60_000, "at most 60000 pods");
    let mut report = String::new();
    report += &format!("Machine: {} CPUs, kernel {}; {} pods per contender, release builds.\n\n", cpus(), kernel(), o.pods);

    let mut kinds = vec![Kind::CalicoHostLocal, Kind::PtpHostLocal, Kind::Floor, Kind::ProcessStart];
    if testbed::target_dir().join("cni-ipam").exists() {
        kinds.insert(1, Kind::CalicoIpam);
        if testbed::etcd::installed() {
            kinds.insert(2, Kind::CalicoIpamEtcd);
        } else {
            let skip = format!(
                "{} left out: {} is not installed (`scripts/deps.sh --bench` installs etcd-server).",
                contender::label(Kind::CalicoIpamEtcd),
                testbed::etcd::ETCD
            );
            eprintln!("cni-bench: {skip}");
            report += &format!("{skip}\n\n");
        }
    }
    if contender::baseline_dir().is_some() {
        kinds.insert(1, Kind::Baseline);
    }
    let wanted = |section: &str| o.only.is_empty() || o.only.iter().any(|s| s == section);
    if wanted("sequential") {
        report += &sequential(&kinds, o.pods);
    }
    let mut charts = Vec::new();
    if wanted("burst") {
        let (burst_md, burst_chart) = burst(&kinds, o.burst, &o.concurrency);
        report += &burst_md;
        charts.push(("bench-burst.svg", burst_chart));
    }
    if kinds.contains(&Kind::CalicoIpam) && wanted("growth") {
        let (growth_md, growth_chart) = growth(&o.levels, o.growth_samples);
        report += &growth_md;
        charts.push(("bench-growth.svg", growth_chart));
    }
    print!("{report}");
    if let Some(path) = o.out {
        let dir = std::path::Path::new(&path).parent().unwrap_or(std::path::Path::new(".")).to_path_buf();
        for (name, chart) in &charts {
            report += &format!("![{}]({name})\n\n", chart.title);
            let file = dir.join(name);
            std::fs::write(&file, chart.svg()).unwrap_or_else(|e| eprintln!("writing {}: {e}", file.display()));
        }
        std::fs::write(&path, report).unwrap_or_else(|e| eprintln!("writing {path}: {e}"));
    }
}

/// Sequential ADD then DEL of `pods` pods per contender, interleaved.
fn sequential(kinds: &[Kind], pods: usize) -> String {
    let mut node = Node::new("bench");
    let cs: Vec<Contender> = kinds.iter().enumerate().map(|(i, k)| Contender::new(*k, &node, 110 + i as u8)).collect();
    let pod_names: Vec<Vec<String>> = cs.iter().map(|_| (0..pods).map(|_| node.pod()).collect()).collect();
    let mut adds: Vec<Vec<Sample>> = cs.iter().map(|_| Vec::new()).collect();
    let mut dels: Vec<Vec<Sample>> = cs.iter().map(|_| Vec::new()).collect();
    let mut prevs: Vec<Vec<serde_json::Value>> = cs.iter().map(|_| Vec::new()).collect();
    // The etcd server's own CPU is no plugin's: read from /proc around each phase, reported apart.
    let etcd_usage = || cs.iter().find_map(|c| c.etcd.as_ref()).and_then(|e| e.usage(0));
    let etcd_before = etcd_usage();
    #[allow(clippy::needless_range_loop)] // pod i of every contender in turn: the interleaving is the point
    for i in 0..pods {
        for (c, con) in cs.iter().enumerate() {
            let (s, prev) = con.add(&node, i, &pod_names[c][i]);
            adds[c].push(s);
            prevs[c].push(prev);
        }
    }
    let etcd_added = etcd_usage();
    for i in 0..pods {
        for (c, con) in cs.iter().enumerate() {
            dels[c].push(con.del(&node, i, &pod_names[c][i], &prevs[c][i]));
        }
    }
    let etcd_deleted = etcd_usage();
    // Peak RSS per plugin process, on a few more pods, outside the timed runs.
    let rss: Vec<i64> = cs
        .iter()
        .enumerate()
        .map(|(c, con)| if con.kind.is_reference() { 0 } else { (0..5).map(|k| con.add_rss(&node, pods + k, &pod_names[c][k])).max().unwrap_or(0) })
        .collect();
    let ref_add = median(&adds[index_of(kinds, Kind::PtpHostLocal)].iter().map(|s| ms(s.elapsed)).collect::<Vec<_>>());
    let ref_del = median(&dels[index_of(kinds, Kind::PtpHostLocal)].iter().map(|s| ms(s.elapsed)).collect::<Vec<_>>());
    let mut rows = Vec::new();
    for (c, con) in cs.iter().enumerate() {
        let a: Vec<f64> = adds[c].iter().map(|s| ms(s.elapsed)).collect();
        let d: Vec<f64> = dels[c].iter().map(|s| ms(s.elapsed)).collect();
        let rss = rss[c];
        let cpu: Vec<f64> = adds[c].iter().map(|s| ms(s.cpu)).collect();
        let proc_cols = match con.kind {
            Kind::Floor => ["-".to_string(), "-".to_string()],
            Kind::ProcessStart => ["-".to_string(), format!("{:.2}", median(&cpu))],
            _ => [rss.to_string(), format!("{:.2}", median(&cpu))],
        };
        if con.kind == Kind::ProcessStart {
            let dash = || "-".to_string();
            let ratio = format!("{:.2}x", median(&a) / ref_add);
            rows.push(vec![
                con.label.to_string(),
                format!("{:.2}", median(&a)),
                format!("{:.2}", pct(&a, 90.0)),
                format!("{:.2}", pct(&a, 99.0)),
                ratio,
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                proc_cols[1].clone(),
            ]);
            continue;
        }
        rows.push(vec![
            con.label.to_string(),
            format!("{:.2}", median(&a)),
            format!("{:.2}", pct(&a, 90.0)),
            format!("{:.2}", pct(&a, 99.0)),
            format!("{:.2}x", median(&a) / ref_add),
            format!("{:.2}", median(&d)),
            format!("{:.2}", pct(&d, 90.0)),
            format!("{:.2}", pct(&d, 99.0)),
            format!("{:.2}x", median(&d) / ref_del),
            proc_cols[0].clone(),
            proc_cols[1].clone(),
        ]);
    }
    let header = [
        "contender",
        "ADD p50 ms",
        "ADD p90",
        "ADD p99",
        "ADD vs ptp",
        "DEL p50 ms",
        "DEL p90",
        "DEL p99",
        "DEL vs ptp",
        "peak RSS KiB",
        "CPU ms/ADD",
    ];
    let mut s = format!("## Sequential ADD and DEL ({pods} pods each, contenders interleaved)\n\n");
    s += &table(&header, &rows);
    let floor_rss = true_rss();
    if let (Some(ours), Some(ptp)) = (position(kinds, Kind::CalicoIpam), position(kinds, Kind::PtpHostLocal)) {
        s += &format!(
            "\nPeak RSS: {} KiB vs {} KiB ({:.2}x); `/bin/true` measured the same way peaks at {floor_rss} KiB, so above that floor {:.2}x.\n",
            rss[ours],
            rss[ptp],
            rss[ours] as f64 / rss[ptp] as f64,
            (rss[ours] - floor_rss) as f64 / (rss[ptp] - floor_rss) as f64
        );
    }
    if let (Some(calico), Some(floor)) = (position(kinds, Kind::CalicoHostLocal), position(kinds, Kind::Floor)) {
        let best = position(kinds, Kind::CalicoIpam).unwrap_or(calico);
        let a = median(&adds[best].iter().map(|s| ms(s.elapsed)).collect::<Vec<_>>());
        let f = median(&adds[floor].iter().map(|s| ms(s.elapsed)).collect::<Vec<_>>());
        s += &format!("\n{} ADD median is {:.2}x the in-process floor.", cs[best].label, a / f);
        if let Some(p) = position(kinds, Kind::ProcessStart) {
            let p = median(&adds[p].iter().map(|s| ms(s.elapsed)).collect::<Vec<_>>());
            s += &format!(
                " One start of the same binary through the same harness (VERSION: exec, runtime start, exit, wait) \
                 takes {p:.2} ms: floor + process start = {:.2} ms, and the ADD is {:.2}x that.",
                f + p,
                a / (f + p)
            );
        }
        s += "\n";
    }
    if let (Some(local), Some(etcd)) = (position(kinds, Kind::CalicoIpam), position(kinds, Kind::CalicoIpamEtcd)) {
        let add = |c: usize| median(&adds[c].iter().map(|s| ms(s.elapsed)).collect::<Vec<_>>());
        let del = |c: usize| median(&dels[c].iter().map(|s| ms(s.elapsed)).collect::<Vec<_>>());
        s += &format!(
            "\n{}: ADD median {:.2}x, DEL median {:.2}x the local store's. Its etcd is one member (Debian's etcd-server, \
             default settings, so every write waits for etcd's WAL fsync) on this same machine, reached over a unix \
             socket, its data dir on the same file system as the local store, started fresh for each table.",
            cs[etcd].label,
            add(etcd) / add(local),
            del(etcd) / del(local)
        );
        if let (Some(b), Some(a), Some(d)) = (etcd_before, etcd_added, etcd_deleted) {
            let per = |from: std::time::Duration, to: std::time::Duration| ms(to.saturating_sub(from)) / pods as f64;
            s += &format!(
                " Not in its row (which counts the plugin processes only): etcd's own CPU, {:.2} ms per ADD and {:.2} ms per DEL \
                 (its CPU over each phase, idle ticking included, divided by the pods), and its peak RSS, {} KiB.",
                per(b.0, a.0),
                per(a.0, d.0),
                d.1
            );
        }
        s += "\n";
    }
    s + "\n"
}

/// `n` pods added with `k` concurrent runtimes per contender: wall time until all are ready.
fn burst(kinds: &[Kind], n: usize, concurrency: &[usize]) -> (String, plot::Chart<'static>) {
    let mut rows = Vec::new();
    let mut header = vec!["contender".to_string()];
    header.extend(concurrency.iter().map(|k| format!("{n} pods, {k} runtimes: wall ms")));
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for &k in concurrency {
        let mut node = Node::new("burst");
        let cs: Vec<Contender> = kinds.iter().enumerate().map(|(i, kd)| Contender::new(*kd, &node, 120 + i as u8)).collect();
        let pods: Vec<Vec<String>> = cs.iter().map(|_| (0..n).map(|_| node.pod()).collect()).collect();
        for (c, con) in cs.iter().enumerate() {
            if con.kind.is_reference() {
                walls[c].push(f64::NAN);
                continue;
            }
            let next = std::sync::atomic::AtomicUsize::new(0);
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..k {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= n {
                            break;
                        }
                        con.add(&node, i, &pods[c][i]);
                    });
                }
            });
            walls[c].push(ms(t.elapsed()));
        }
        drop(node);
    }
    let reference = index_of(kinds, Kind::PtpHostLocal);
    for (c, kind) in kinds.iter().enumerate() {
        if kind.is_reference() {
            continue;
        }
        let mut row = vec![contender::label(*kind).to_string()];
        for (j, w) in walls[c].iter().enumerate() {
            row.push(format!("{w:.0} ({:.2}x)", w / walls[reference][j]));
        }
        rows.push(row);
    }
    let h: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    let chart = plot::Chart {
        title: "Burst: wall time until every pod is wired (lower is better)",
        y_label: "ms",
        categories: concurrency.iter().map(|k| format!("{n} pods, {k} concurrent runtimes")).collect(),
        series: kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| !k.is_reference())
            .map(|(c, k)| (contender::label(*k).to_string(), walls[c].clone()))
            .collect(),
    };
    (format!("## Burst: {n} pods, wall time to all-ready (ratio vs ptp + host-local)\n\n{}\n", table(&h, &rows)), chart)
}

/// Full ADD (cni-calico + cni-ipam) latency when the node already holds `level` allocations.
fn growth(levels: &[usize], samples: usize) -> (String, plot::Chart<'static>) {
    let mut rows = Vec::new();
    let mut medians = Vec::new();
    let mut p99s = Vec::new();
    for &level in levels {
        let mut node = Node::new("growth");
        let con = Contender::new(Kind::CalicoIpam, &node, 130);
        con.prefill(&node, level, 2);
        // A node's allocations build up over days, not seconds: flush what the fill left dirty in the page
        // cache, so the measured ADDs' one fdatasync does not queue behind ten thousand files' writeback.
        nix::unistd::sync();
        let pods: Vec<String> = (0..samples).map(|_| node.pod()).collect();
        let mut adds = Vec::new();
        for (i, pod) in pods.iter().enumerate() {
            let (s, prev) = con.add(&node, i, pod);
            adds.push(ms(s.elapsed));
            con.del(&node, i, pod, &prev);
        }
        medians.push(median(&adds));
        p99s.push(pct(&adds, 99.0));
        rows.push(vec![
            level.to_string(),
            format!("{:.2}", median(&adds)),
            format!("{:.2}", pct(&adds, 90.0)),
            format!("{:.2}", pct(&adds, 99.0)),
            format!("{:.2}x", median(&adds) / medians[0]),
        ]);
    }
    let chart = plot::Chart {
        title: "cni-calico + cni-ipam ADD latency vs allocations already on the node",
        y_label: "ms",
        categories: levels.iter().map(|l| format!("{l} existing")).collect(),
        series: vec![("ADD median".into(), medians), ("ADD p99".into(), p99s)],
    };
    let md = format!(
        "## Growth: full ADD with allocations already on the node ({samples} ADD+DEL per level)\n\n{}\n",
        table(&["existing allocations", "ADD p50 ms", "ADD p90", "ADD p99", "p50 vs 0"], &rows)
    );
    (md, chart)
}

/// Peak RSS that GNU time reports for `/bin/true`: the floor of this way of measuring.
fn true_rss() -> i64 {
    (0..3)
        .filter_map(|_| {
            let out = std::process::Command::new("/usr/bin/time").args(["-f", "%M", "/bin/true"]).output().ok()?;
            String::from_utf8_lossy(&out.stderr).trim().lines().last()?.trim().parse().ok()
        })
        .min()
        .unwrap_or(0)
}

fn position(kinds: &[Kind], k: Kind) -> Option<usize> {
    kinds.iter().position(|x| *x == k)
}

fn index_of(kinds: &[Kind], k: Kind) -> usize {
    position(kinds, k).expect("reference contender present")
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}
