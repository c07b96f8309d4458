//! SIGKILL the plugin at random moments of ADD and DEL (claims, log writes, renames), then prove the
//! store is consistent: every record decodes, handles count exactly what blocks hold, no address twice.
mod support;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn store_survives_sigkill_at_random_moments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    // Small blocks so that many kills land inside block claims, not only inside warm ADDs.
    load(&store, tmp.path(), vec![pool("crash", "10.50.0.0/23", 28)]);
    // The third node's name is as long as Kubernetes allows: its affinity and index records have hashed
    // file names (store/file/names.rs), killed mid-commit like the others.
    let long_node = format!("node-2.{}", "x".repeat(246));
    let nodes: Vec<Net> = ["node-0", "node-1", &long_node].iter().map(|n| Net::new(&store, n)).collect();
    let mut rng = Rng::from_time();
    // How long one ADD takes here (process start included), so kill moments cover the whole operation.
    let mut live: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut took: Vec<Duration> = (0..5)
        .map(|k| {
            let t = Instant::now();
            let (ip, _) = nodes[0].add(&format!("calib{k}"));
            live.insert(format!("calib{k}"), (0, ip));
            t.elapsed()
        })
        .collect();
    took.sort();
    let window = (took[2].as_micros() as u64 * 2).max(1000);
    eprintln!("one ADD takes ~{:?}; kills land within {window} µs of the start", took[2]);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut maybe: Vec<(usize, String)> = Vec::new();
    let (mut killed, mut finished, mut interrupted_commits) = (0, 0, 0);
    for i in 0..300 {
        if Instant::now() > deadline {
            break;
        }
        let del = live.len() > 40 && rng.below(3) == 0;
        let (n, cid, verb) = if del {
            let idx = rng.below(live.len() as u64) as usize;
            let cid = live.keys().nth(idx).cloned().unwrap_or_default();
            (live[&cid].0, cid, "DEL")
        } else {
            (rng.below(3) as usize, format!("c{i}"), "ADD")
        };
        let net = &nodes[n];
        let mut child = net.spawn(verb, &cid, "", net.config().to_string().as_bytes());
        let kill_at = Instant::now() + Duration::from_micros(rng.below(window));
        let was_killed = loop {
            match child.try_wait() {
                Ok(Some(_)) => break false,
                Ok(None) if Instant::now() >= kill_at => {
                    let _ = child.kill(); // SIGKILL
                    break true;
                }
                Ok(None) => std::thread::yield_now(),
                Err(e) => panic!("waiting for child: {e}"),
            }
        };
        let (rc, out, err) = parse_output(child.wait_with_output().expect("reap child"));
        if was_killed {
            killed += 1;
            if datastore::store::FileStore::has_unapplied_commit(&store).unwrap_or(false) {
                interrupted_commits += 1;
            }
            // Consistent at every crash point, as the next process (which finishes the commit) sees it.
            assert_consistent(&store);
            // Whether it got an address is unknown: DEL it at the end (DEL must cope either way).
            maybe.push((n, cid.clone()));
            live.remove(&cid);
            continue;
        }
        finished += 1;
        assert_eq!(rc, 0, "{verb} {cid}: {out} {err}");
        if verb == "ADD" {
            let ip = out["ips"][0]["address"].as_str().unwrap_or_default().to_string();
            live.insert(cid, (n, ip));
        } else {
            live.remove(&cid);
        }
    }
    eprintln!(
        "{killed} processes killed mid-operation ({interrupted_commits} between a commit's log write and its record files), {finished} completed"
    );
    assert!(killed > 0, "no kill landed inside an operation");

    let report = assert_consistent(&store);
    let ips: HashSet<&String> = live.values().map(|(_, ip)| ip).collect();
    assert_eq!(ips.len(), live.len(), "completed ADDs got distinct addresses");
    assert!(report.allocations >= live.len());

    // Every container, finished or killed, can be deleted; afterwards nothing is allocated.
    for (cid, (n, _)) in &live {
        let (rc, out, _) = nodes[*n].run("DEL", cid, "");
        assert_eq!(rc, 0, "{out}");
    }
    for (n, cid) in &maybe {
        let (rc, out, _) = nodes[*n].run("DEL", cid, "");
        assert_eq!(rc, 0, "{out}");
    }
    let report = assert_consistent(&store);
    assert_eq!(report.allocations, 0);
    assert_eq!(report.handles, 0);
}
