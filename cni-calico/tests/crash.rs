//! SIGKILL cni-calico (with cni-ipam in-process on the local store) at random moments of ADD and DEL of
//! containers with two interfaces each. At every kill the attachment records, the IPAM records and the links
//! agree (`cni-ipam check --links`), and every address configured in a pod is held by that interface's own
//! attachment: none is free while in use. The runtime's DEL of whatever was killed then leaves nothing.
mod support;
use common::attachment::Attachment;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::*;

const NET: &str = "crs-crash";
const IFNAMES: [&str; 2] = ["eth0", "eth1"];

/// xorshift64*, seeded from the clock (the seed is printed, so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// ADD finished: its result, for CHECK and DEL.
    Live(Value),
    /// A killed ADD or DEL: the runtime owes it a DEL.
    Unfinished,
}

struct Bed {
    node: Node,
    pods: Vec<String>,
    conf: Value,
}

impl Bed {
    fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.node.name])
            .arg(target_dir().join("cni-ipam"))
            .arg("--store")
            .arg(self.node.path("store"))
            .args(args)
            .output()
            .expect("cni-ipam")
    }

    fn holder(&self, ip: &str) -> Option<String> {
        let out = self.cli(&["show", "--ip", ip, "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout).ok().and_then(|v| v["handle"].as_str().map(str::to_string))
    }

    /// Records, allocations and links agree, and no address in use is free or someone else's.
    fn assert_consistent(&self, when: &str) -> Value {
        let out = self.cli(&["check", "--node", "node-a", "--links", "-o", "json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(out.status.success(), "{when}: check found problems: {report:#} {}", String::from_utf8_lossy(&out.stderr));
        for (i, pod) in self.pods.iter().enumerate() {
            // `2: eth0    inet 10.132.0.1/32 scope global eth0 ...`
            for line in self.node.ip_in(pod, &["-o", "-4", "addr", "show"]).lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (Some(ifname), Some(ip)) = (f.get(1), f.get(3).map(|a| a.trim_end_matches("/32"))) else { continue };
                if *ifname == "lo" {
                    continue;
                }
                let want = Attachment { network: NET.into(), container_id: cid(i), ifname: ifname.to_string(), pod: None }.handle_id();
                assert_eq!(self.holder(ip).as_deref(), Some(want.as_str()), "{when}: {ip} on {pod} {ifname} is not held by its attachment");
            }
        }
        report
    }
}

fn cid(i: usize) -> String {
    format!("crash{i:02}")
}

#[test]
fn attachments_links_and_ipam_agree_at_every_kill() {
    if !root_or_skip("attachments_links_and_ipam_agree_at_every_kill") {
        return;
    }
    let mut node = Node::new("crash");
    let pods: Vec<String> = (0..6).map(|_| node.pod()).collect();
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "cni-calico",
        "ipam": {"type": "cni-ipam", "nodename": "node-a", "local_store_dir": node.path("store"), "ipv4_pools": ["crash"]}});
    let bed = Bed { node, pods, conf };
    // Small blocks, so kills also land in block claims.
    let out = bed.cli(&["pool", "add", "--name", "crash", "--cidr", "10.132.0.0/24", "--block-size", "28"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let mut state: BTreeMap<(usize, &str), State> = BTreeMap::new();
    // How long an ADD and a DEL take here, so kill moments cover each whole operation.
    let timed = |verb: &str, i: usize, ifname: &str, conf: &Value| {
        let t = Instant::now();
        bed.node.run("cni-calico", verb, &cid(i), Some(&bed.pods[i]), ifname, &[], conf).ok();
        t.elapsed()
    };
    let add_took = timed("ADD", 0, "eth0", &bed.conf);
    let del_took = timed("DEL", 0, "eth0", &bed.conf);
    eprintln!("ADD ~{add_took:?}, DEL ~{del_took:?}");

    let (mut killed, mut finished) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(45);
    for _ in 0..200 {
        if Instant::now() > deadline {
            break;
        }
        let i = rng.below(bed.pods.len() as u64) as usize;
        let ifname = IFNAMES[rng.below(2) as usize];
        let (verb, window) = match state.get(&(i, ifname)) {
            None => ("ADD", add_took),
            Some(_) => ("DEL", del_took),
        };
        let mut conf = bed.conf.clone();
        if let Some(State::Live(prev)) = state.get(&(i, ifname)) {
            conf["prevResult"] = prev.clone();
        }
        let mut child = bed.node.spawn("cni-calico", verb, &cid(i), Some(&bed.pods[i]), ifname, &conf);
        let kill_at = Instant::now() + Duration::from_micros(rng.below(window.as_micros() as u64 * 3 / 2));
        let was_killed = loop {
            match child.try_wait().expect("waiting for the plugin") {
                Some(_) => break false,
                None if Instant::now() >= kill_at => {
                    let _ = child.kill();
                    break true;
                }
                None => std::thread::yield_now(),
            }
        };
        let out = child.wait_with_output().expect("reap plugin");
        if was_killed {
            killed += 1;
            state.insert((i, ifname), State::Unfinished);
            bed.assert_consistent(&format!("{verb} {} {ifname} killed", cid(i)));
            continue;
        }
        finished += 1;
        assert!(out.status.success(), "{verb} {} {ifname}: {}", cid(i), String::from_utf8_lossy(&out.stdout));
        match verb {
            "ADD" => state.insert((i, ifname), State::Live(serde_json::from_slice(&out.stdout).expect("ADD result"))),
            _ => state.remove(&(i, ifname)),
        };
    }
    eprintln!("{killed} operations killed, {finished} finished");
    assert!(killed > 10, "too few kills landed inside an operation");

    // Live attachments still check out; the runtime DELs everything, finished or not.
    for ((i, ifname), s) in &state {
        if let State::Live(prev) = s {
            let mut conf = bed.conf.clone();
            conf["prevResult"] = prev.clone();
            bed.node.run("cni-calico", "CHECK", &cid(*i), Some(&bed.pods[*i]), ifname, &[], &conf).ok();
        }
    }
    for (i, ifname) in state.keys() {
        bed.node.run("cni-calico", "DEL", &cid(*i), Some(&bed.pods[*i]), ifname, &[], &bed.conf).ok();
    }
    let report = bed.assert_consistent("after every DEL");
    assert_eq!(report["attachments"], 0, "records left: {report:#}");
    assert_eq!(report["allocations"].as_object().map(|a| a.len()), Some(0), "allocations left: {report:#}");
    assert_eq!(report["links"]["interfacesWithoutRecord"], json!([]), "{report:#}");
    let links = bed.node.ip_in(&bed.node.name, &["-o", "link"]);
    assert_eq!(links.lines().count(), 2, "only lo and the uplink remain: {links}");
    for pod in &bed.pods {
        assert_eq!(bed.node.ip_in(pod, &["rule"]).lines().count(), 3, "rules left in {pod}");
    }
}
