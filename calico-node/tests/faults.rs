//! calico-node under faults (issue 13), on mesh beds over etcd with real BIRD 2 and a continuous cross-node
//! pod ping (`ping -i 0.01`) counting what it loses: the agent SIGKILLed (BIRD and traffic carry on, the next
//! agent adopts BIRD without a session reset and applies what changed meanwhile), BIRD SIGKILLed (restarted in
//! graceful-restart recovery, peers keep the routes), etcd down for 30 s, a node deleted from the datastore,
//! and a bad resource written around calicoctl. Needs root, bird2 and etcd (scripts/deps.sh --all). The tests
//! take turns: the loss counts are only meaningful when no other bed competes for the two cores.
mod support;

use calico_node::state::AgentState;
use datastore::resources::kinds::BGP_PEER;
use datastore::store::{Datastore, Json, Key, Kind};
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::*;
use testbed::bird::same_sessions;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn killed_agent_leaves_bird_and_traffic_and_the_next_one_adopts_bird_without_a_reset() {
    if !available("killed_agent_leaves_bird_and_traffic_and_the_next_one_adopts_bird_without_a_reset") {
        return;
    }
    let _turn = serial();
    let (mut cluster, mut agents) = mesh(3);
    eprintln!("agent VmHWM with the 3-node mesh up: {:?} kB", vm_hwm(agents[0].daemon.pid()));
    let (p1, p2, _) = two_pods(&mut cluster);
    assert!(testbed::ping(&p1.netns, &p2.ip, TIMEOUT), "pods do not reach each other before the fault");
    let bird = agents[0].bird_pid().expect("node-1's BIRD");
    let before: Vec<_> = agents.iter().map(since).collect();
    let ping = pinger(&p1.netns, &p2.ip);

    agents[0].kill();
    // While the agent is away the datastore changes: a new pool, and a pod on node-1 from it (a new block).
    cluster.ipam(&["pool", "add", "--name", "late", "--cidr", "10.245.0.0/16", "--block-size", "26"]);
    let mut late_conf = cluster.calico_conf();
    late_conf["ipam"]["ipv4_pools"] = json!(["10.245.0.0/16"]);
    let p3 = cluster.nodes[0].add_pod(&late_conf, "late");
    let late_block = block_of(&p3.ip);
    assert!(p3.ip.starts_with("10.245."), "the late pod got {}", p3.ip);
    // Three seconds of traffic with no agent on node-1.
    ping.wait_replies(300, TIMEOUT);
    assert_eq!(agents[0].bird_pid(), Some(bird), "BIRD went with the agent");
    block_everywhere_now(&cluster, 0, &block_of(&p1.ip)).unwrap();
    block_everywhere_now(&cluster, 1, &block_of(&p2.ip)).unwrap();
    assert_eq!(cluster.nodes[1].route(&late_block).trim(), "", "the new block was routed with no agent on node-1");

    agents[0].restart();
    agents[0].wait_ready(TIMEOUT);
    wait_block_everywhere(&cluster, 0, &late_block);
    assert!(testbed::ping(&p3.netns, &p2.ip, TIMEOUT), "the pod started while the agent was down is not reachable");
    assert_eq!(agents[0].bird_pid(), Some(bird), "the new agent did not adopt BIRD");
    assert!(full_log(&agents[0]).contains("adopted the running BIRD"), "{}", agents[0].daemon.log_tail(40));
    let after: Vec<_> = agents.iter().map(since).collect();
    same_sessions(&before, &after).expect("no session reset");
    ping.wait_replies(20, TIMEOUT);
    let loss = ping.finish();
    eprintln!("agent SIGKILL + restart: ping loss {loss:?}");
    assert!(loss.lost.is_empty(), "pings lost while the agent was down: {loss:?}");
}

#[test]
fn killed_bird_is_restarted_and_graceful_restart_keeps_the_traffic() {
    if !available("killed_bird_is_restarted_and_graceful_restart_keeps_the_traffic") {
        return;
    }
    let _turn = serial();
    let (mut cluster, mut agents) = mesh(2);
    let (p1, p2, _) = two_pods(&mut cluster);
    assert!(testbed::ping(&p1.netns, &p2.ip, TIMEOUT), "pods do not reach each other before the fault");
    let old = agents[0].bird_pid().expect("node-1's BIRD");
    let ping = pinger(&p1.netns, &p2.ip);

    let killed = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGKILL).expect("kill BIRD");
    let new = testbed::wait_for("a new BIRD on node-1", TIMEOUT, || match agents[0].bird_pid() {
        Some(p) if p != old => Ok(p),
        other => Err(format!("pid file names {other:?}")),
    });
    let restarted = killed.elapsed();
    agents[0].wait_sessions(1, TIMEOUT);
    let established = killed.elapsed();
    agents[1].wait_sessions(1, TIMEOUT);
    assert!(bird_alive(new));
    assert!(full_log(&agents[0]).contains("graceful-restart recovery"), "{}", agents[0].daemon.log_tail(40));
    ping.wait_replies(100, TIMEOUT);
    block_everywhere_now(&cluster, 0, &block_of(&p1.ip)).unwrap();
    block_everywhere_now(&cluster, 1, &block_of(&p2.ip)).unwrap();
    let loss = ping.finish();
    eprintln!("BIRD SIGKILL: new BIRD after {restarted:?}, Established again after {established:?}; ping loss {loss:?}");
    assert!(loss.lost.is_empty(), "pings lost while BIRD restarted: {loss:?}");
}

#[test]
fn etcd_down_for_30_s_keeps_routes_and_sessions_and_a_change_after_applies() {
    if !available("etcd_down_for_30_s_keeps_routes_and_sessions_and_a_change_after_applies") {
        return;
    }
    let _turn = serial();
    let (mut cluster, mut agents) = mesh(2);
    let (p1, p2, blocks) = two_pods(&mut cluster);
    let before: Vec<_> = agents.iter().map(since).collect();
    let ping = pinger(&p1.netns, &p2.ip);

    cluster.etcd.as_mut().expect("etcd").kill(0);
    let down = Instant::now();
    let mut checks = 0;
    // Observed for the whole outage, twice a second (a window to watch, not a wait for anything).
    while down.elapsed() < Duration::from_secs(30) {
        for a in &mut agents {
            a.daemon.assert_running();
        }
        let now: Vec<_> = agents.iter().map(since).collect();
        same_sessions(&before, &now).unwrap_or_else(|e| panic!("{:?} into the outage: {e}", down.elapsed()));
        for (owner, block) in blocks.iter().enumerate() {
            block_everywhere_now(&cluster, owner, block).unwrap_or_else(|e| panic!("{:?} into the outage: {e}", down.elapsed()));
        }
        checks += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    for a in &agents {
        testbed::wait_for(&format!("{} to log the outage", a.node), TIMEOUT, || {
            if full_log(a).contains("datastore unreachable") {
                Ok(())
            } else {
                Err(a.daemon.log_tail(5))
            }
        });
        // The state file follows the log line; node status reports the outage beside the sessions.
        let status = testbed::wait_for(&format!("{}'s node status to report the outage", a.node), TIMEOUT, || {
            let status = node_status(&cluster, a);
            if status.contains("\nDatastore unreachable since ") {
                Ok(status)
            } else {
                Err(status)
            }
        });
        assert!(status.contains("Established"), "{}: the sessions are still shown: {status}", a.node);
    }

    cluster.etcd.as_mut().expect("etcd").restart(0);
    let store = cluster.etcd().store();
    testbed::wait_for("etcd back", TIMEOUT, || store.lock().and_then(|s| s.get(&Key::IpamConfig)).map_err(|e| e.to_string()));
    let back = down.elapsed();
    // With nothing changed meanwhile, the agents see it answer again and say so.
    for a in &agents {
        testbed::wait_for(&format!("{}'s node status to drop the outage", a.node), TIMEOUT, || {
            let status = node_status(&cluster, a);
            if status.contains("Datastore unreachable") {
                Err(status)
            } else {
                Ok(())
            }
        });
    }
    let peer = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: after-outage\nspec:\n  peerIP: 10.250.0.99\n  asNumber: 65099\n";
    let (ok, out) = calicoctl(&cluster, &["apply", "-f", "-"], peer, &[]);
    assert!(ok, "calicoctl apply: {out}");
    let applied = Instant::now();
    for a in &agents {
        testbed::wait_for(&format!("Global_10_250_0_99 on {}", a.node), TIMEOUT, || {
            let names: Vec<String> = a.protocols().into_iter().map(|p| p.name).collect();
            if names.iter().any(|n| n == "Global_10_250_0_99") {
                Ok(())
            } else {
                Err(format!("{names:?}; log: {}", a.daemon.log_tail(5)))
            }
        });
        assert!(full_log(a).contains("datastore answers again"), "{}", a.daemon.log_tail(40));
    }
    let caught_up = applied.elapsed();
    for (owner, block) in blocks.iter().enumerate() {
        block_everywhere_now(&cluster, owner, block).unwrap();
    }
    ping.wait_replies(20, TIMEOUT);
    let loss = ping.finish();
    eprintln!("etcd down {back:?} ({checks} checks); a BGPPeer applied after it reached BIRD in {caught_up:?}; ping loss {loss:?}");
    assert!(loss.lost.is_empty(), "pings lost during the etcd outage: {loss:?}");
}

#[test]
fn a_node_deleted_from_the_datastore_loses_its_routes_and_sessions_everywhere() {
    if !available("a_node_deleted_from_the_datastore_loses_its_routes_and_sessions_everywhere") {
        return;
    }
    let _turn = serial();
    let (mut cluster, mut agents) = mesh(3);
    let conf = cluster.calico_conf();
    let p3 = cluster.nodes[2].add_pod(&conf, "c");
    let block = block_of(&p3.ip);
    wait_block_everywhere(&cluster, 2, &block);
    let gone = mesh_name(&cluster.nodes[2].ip);

    // As an operator does: the node's agent stopped first, then the node deleted.
    let mut third = agents.pop().expect("node-3's agent");
    let stopped = Instant::now();
    let status = third.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "after {:?}: {}", stopped.elapsed(), third.daemon.log_tail(30));
    let (ok, out) = calicoctl(&cluster, &["delete", "node", "node-3"], "", &[]);
    assert!(ok, "calicoctl delete node: {out}");
    assert!(node_doc(&cluster, "node-3").is_none());
    for (i, a) in agents.iter_mut().enumerate() {
        cluster.nodes[i].wait_no_route(&block, TIMEOUT);
        testbed::wait_for(&format!("{gone} gone from {}", a.node), TIMEOUT, || {
            let names: Vec<String> = a.protocols().into_iter().map(|p| p.name).collect();
            if names.contains(&gone) {
                Err(format!("{names:?}"))
            } else {
                Ok(())
            }
        });
        a.wait_sessions(1, TIMEOUT);
    }
    // As Calico's calicoctl: the node's affinities and its pod's address went with it.
    let store = cluster.etcd().store();
    let session = store.lock().expect("etcd");
    let affinities: Vec<String> = session.list(Kind::Affinity).expect("affinities").into_iter().map(|(k, _)| k.to_string()).collect();
    let left: Vec<&String> = affinities.iter().filter(|k| k.contains("/host/node-3/")).collect();
    assert!(left.is_empty(), "node-3's affinities after `calicoctl delete node node-3`: {left:?}");
    let block_key = Key::Block(block.parse().expect("block CIDR"));
    assert!(session.get(&block_key).expect("read block").is_none(), "node-3's block {block} (its one pod released) is gone");
    drop(third);
}

#[test]
fn a_bad_resource_written_around_calicoctl_keeps_the_last_good_config() {
    if !available("a_bad_resource_written_around_calicoctl_keeps_the_last_good_config") {
        return;
    }
    let _turn = serial();
    let (cluster, agents) = mesh(2);
    let confs: Vec<_> = cluster.nodes.iter().map(|n| n.path("/etc/calico/calico-node/bird.conf")).collect();
    let good: Vec<String> = confs.iter().map(|c| std::fs::read_to_string(c).expect("bird.conf")).collect();
    let before: Vec<_> = agents.iter().map(since).collect();
    let store = cluster.etcd().store();
    let key = Key::resource(&BGP_PEER, "bad");
    for (spec, says) in
        [(json!({"peerIP": "300.1.1.1", "asNumber": 65001}), "300.1.1.1"), (json!({"peerIP": "10.250.0.77", "asNumber": "abc"}), "abc")]
    {
        let doc = json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
            "metadata": {"name": "bad", "uid": "0b5e7a9c-0000-4000-8000-000000000001", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec});
        store.lock().expect("etcd").create(&key, Json::encode(&doc).expect("encode")).expect("write the bad peer");
        for (i, a) in agents.iter().enumerate() {
            let error = testbed::wait_for(&format!("{} to report the bad peer", a.node), TIMEOUT, || {
                AgentState::read(&a.run_dir).and_then(|s| s.config_error).ok_or_else(|| full_log(a))
            });
            assert!(error.contains("bad") && error.contains(says), "{error}");
            assert!(full_log(a).contains(says), "the agent's log does not name the error: {}", a.daemon.log_tail(40));
            let status = node_status(&cluster, a);
            assert!(status.contains("Configuration error") && status.contains(says), "{status}");
            assert!(status.contains("Established"), "{status}");
            assert_eq!(std::fs::read_to_string(&confs[i]).expect("bird.conf"), good[i], "bird.conf changed on {}", a.node);
        }
        let now: Vec<_> = agents.iter().map(since).collect();
        same_sessions(&before, &now).expect("sessions kept with the bad peer in place");

        let mut session = store.lock().expect("etcd");
        let rev = session.get(&key).expect("read").expect("the bad peer").rev;
        session.delete(&key, rev).expect("delete the bad peer");
        drop(session);
        for (i, a) in agents.iter().enumerate() {
            testbed::wait_for(&format!("{}'s error to clear", a.node), TIMEOUT, || match AgentState::read(&a.run_dir) {
                Some(s) if s.config_error.is_none() => Ok(()),
                s => Err(format!("{s:?}")),
            });
            let status = node_status(&cluster, a);
            assert!(!status.contains("Configuration error"), "{status}");
            assert_eq!(std::fs::read_to_string(&confs[i]).expect("bird.conf"), good[i]);
        }
    }
    let now: Vec<_> = agents.iter().map(since).collect();
    same_sessions(&before, &now).expect("no session reset by the bad resources");
}
