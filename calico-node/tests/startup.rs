//! calico-node's startup on cluster beds over etcd (issue 13): the node name from the host name, the address
//! from each autodetection method, `AS`, operator labels kept over a restart, `bgpconfigurations/default`,
//! `/var/lib/calico/nodename`; the refusals (another node's address, bad environment, no etcd), which write
//! nothing; `WAIT_FOR_DATASTORE`; SIGTERM; and the health probes of Calico's manifests. Needs root, bird2 and etcd (scripts/deps.sh --all).
mod support;

use datastore::resources::kinds::{BGP_CONFIGURATION, NODE};
use datastore::store::{Datastore, Key, Kind};
use std::time::{Duration, Instant};
use support::*;
use testbed::agent::Agent;
use testbed::cluster::{Cluster, Spec};

fn bed(nodes: usize) -> Cluster {
    let cluster = Cluster::new(&Spec::nodes(nodes).with_etcd());
    cluster.ipam(&["pool", "add", "--name", "bed", "--cidr", POOL, "--block-size", "26"]);
    cluster
}

fn default_bgp_configuration(cluster: &Cluster) -> Option<datastore::store::Record> {
    let store = cluster.etcd().store();
    let session = store.lock().expect("etcd");
    session.get(&Key::resource(&BGP_CONFIGURATION, "default")).expect("read")
}

fn ipv4_address(cluster: &Cluster, node: &str) -> String {
    let doc = node_doc(cluster, node).unwrap_or_else(|| panic!("no Node {node}"));
    doc["spec"]["bgp"]["ipv4Address"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_host_name_names_the_node_and_every_method_detects_its_address() {
    if !available("the_host_name_names_the_node_and_every_method_detects_its_address") {
        return;
    }
    let cluster = bed(1);
    let node = &cluster.nodes[0];
    // Addresses autodetection must see past: a global one on lo (before eth0), another interface's.
    node.ip(&["addr", "add", "10.97.0.1/32", "dev", "lo"]);
    // (A veth pair: the bed's kernel may have no dummy module.)
    node.ip(&["link", "add", "ens5", "type", "veth", "peer", "name", "ens6"]);
    node.ip(&["addr", "add", "10.96.0.1/24", "dev", "ens5"]);
    node.ip(&["link", "set", "ens5", "up"]);
    node.ip(&["link", "set", "ens6", "up"]);
    assert!(default_bgp_configuration(&cluster).is_none());
    let eth0 = format!("{}/24", node.ip);
    let (router, _) = testbed::cluster::router_ip(0);
    let can_reach = format!("can-reach={router}");
    for (method, want) in [
        ("", eth0.as_str()),
        ("first-found", &eth0),
        ("interface=eth.*", &eth0),
        ("cidr=10.250.0.0/16", &eth0),
        (can_reach.as_str(), &eth0),
        ("interface=ens.*", "10.96.0.1/24"),
        ("skip-interface=eth.*", "10.96.0.1/24"),
    ] {
        // NODENAME empty is unset: the host name it is.
        let mut agent = Agent::start(&cluster, node, &[("NODENAME", ""), ("IP", "autodetect"), ("IP_AUTODETECTION_METHOD", method)]);
        agent.wait_ready(TIMEOUT);
        assert_eq!(std::fs::read_to_string(agent.lib_dir.join("nodename")).expect("nodename"), "node-1");
        assert_eq!(ipv4_address(&cluster, "node-1"), want, "IP_AUTODETECTION_METHOD={method}");
        assert!(full_log(&agent).contains(&format!("ipv4=Some({want})")), "{}", agent.daemon.log_tail(20));
        let asked = Instant::now();
        let status = agent.stop();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{method}: {status:?} after {:?}: {}", asked.elapsed(), agent.daemon.log_tail(30));
    }
    let store = cluster.etcd().store();
    let nodes = store.lock().expect("etcd").list(Kind::Resource(&NODE)).expect("nodes");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let conf = default_bgp_configuration(&cluster).expect("bgpconfigurations/default created");
    assert_eq!(conf.value.to_value()["spec"], serde_json::json!({}));
}

#[test]
fn as_lands_in_the_node_and_operator_labels_survive_a_restart() {
    if !available("as_lands_in_the_node_and_operator_labels_survive_a_restart") {
        return;
    }
    let cluster = bed(1);
    let mine =
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  logSeverityScreen: Info\n  asNumber: 64600\n";
    let (ok, out) = calicoctl(&cluster, &["apply", "-f", "-"], mine, &[]);
    assert!(ok, "{out}");
    let before = default_bgp_configuration(&cluster).expect("default");
    let mut agent = Agent::start(&cluster, &cluster.nodes[0], &[("AS", "65010")]);
    agent.wait_ready(TIMEOUT);
    let doc = node_doc(&cluster, "node-1").expect("Node");
    assert_eq!(doc["spec"]["bgp"]["asNumber"], 65010, "{doc}");
    let bird_conf = std::fs::read_to_string(cluster.nodes[0].path("/etc/calico/calico-node/bird.conf")).expect("bird.conf");
    assert!(bird_conf.contains("local as 65010;"), "{bird_conf}");
    let after = default_bgp_configuration(&cluster).expect("default");
    assert_eq!((after.rev, after.value.to_value()), (before.rev, before.value.to_value()), "the agent touched an existing default");

    let (ok, out) = calicoctl(&cluster, &["label", "nodes", "node-1", "rack=r1"], "", &[]);
    assert!(ok, "{out}");
    assert_eq!(agent.stop().and_then(|s| s.code()), Some(0));
    agent.restart();
    agent.wait_ready(TIMEOUT);
    let doc = node_doc(&cluster, "node-1").expect("Node");
    assert_eq!(doc["metadata"]["labels"]["rack"], "r1", "{doc}");
    assert_eq!(doc["spec"]["bgp"]["asNumber"], 65010, "{doc}");
    assert_eq!(doc["spec"]["bgp"]["ipv4Address"], format!("{}/24", cluster.nodes[0].ip), "{doc}");
}

#[test]
fn a_node_with_another_nodes_address_is_refused_and_writes_nothing() {
    if !available("a_node_with_another_nodes_address_is_refused_and_writes_nothing") {
        return;
    }
    let cluster = bed(2);
    let mut first = Agent::start(&cluster, &cluster.nodes[0], &[]);
    first.wait_ready(TIMEOUT);
    let taken = format!("{}/24", cluster.nodes[0].ip);
    let second = &cluster.nodes[1];
    let (status, log) = run_to_exit(&cluster, second, &[("IP", &taken)], TIMEOUT);
    assert!(!status.success(), "started with node-1's address: {log}");
    let line = log.lines().find(|l| l.contains("ERROR")).unwrap_or_else(|| panic!("no error line in {log}"));
    assert!(line.contains("\"node-1\"") && line.contains(&cluster.nodes[0].ip), "{line}");
    eprintln!("{line}");
    assert!(node_doc(&cluster, "node-2").is_none(), "node-2 registered anyway");
    assert!(!second.path("/var/lib/calico/nodename").exists(), "node-2 wrote its nodename file");
    assert!(!second.path("/var/run/calico/bird.pid").exists(), "node-2 started BIRD");
    assert_eq!(ipv4_address(&cluster, "node-1"), taken);
}

#[test]
fn bad_environment_exits_1_naming_the_variable_and_writes_nothing() {
    if !available("bad_environment_exits_1_naming_the_variable_and_writes_nothing") {
        return;
    }
    let cluster = bed(1);
    let node = &cluster.nodes[0];
    for (env, names) in [
        (vec![("IP", "10.0.0.300")], "IP"),
        (vec![("AS", "abc")], "AS"),
        (vec![("CALICO_NETWORKING_BACKEND", "gobgp")], "CALICO_NETWORKING_BACKEND"),
        (vec![("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", "")], "ETCD_ENDPOINTS"),
        (vec![("IP_AUTODETECTION_METHOD", "sometimes"), ("IP", "autodetect")], "IP_AUTODETECTION_METHOD"),
        (vec![("CALICO_IPV4POOL_BLOCK_SIZE", "33")], "CALICO_IPV4POOL_BLOCK_SIZE"),
        (vec![("NO_DEFAULT_POOLS", "true"), ("CALICO_IPV4POOL_CIDR", "10.0.0.0/16")], "CALICO_IPV4POOL_CIDR"),
    ] {
        let (status, log) = run_to_exit(&cluster, node, &env, TIMEOUT);
        assert_eq!(status.code(), Some(1), "{env:?}: {log}");
        let line = log.lines().find(|l| l.contains("ERROR")).unwrap_or_else(|| panic!("{env:?}: no error line in {log}"));
        assert!(line.contains(names) && !line.contains(&format!("{names}: {names}")), "{env:?}: {line}");
        eprintln!("{env:?}: {line}");
    }
    let store = cluster.etcd().store();
    let session = store.lock().expect("etcd");
    assert!(session.list(Kind::Resource(&NODE)).expect("nodes").is_empty());
    assert!(session.get(&Key::resource(&BGP_CONFIGURATION, "default")).expect("read").is_none());
    assert!(!node.path("/var/lib/calico/nodename").exists());
}

/// On a datastore without pools the first agent creates Calico's default pools from `CALICO_IPV4POOL_*` /
/// `CALICO_IPV6POOL_*`; a later agent with other values creates none, as a family with a pool is left alone;
/// a pod gets its address from the default pool.
#[test]
fn the_first_agent_creates_the_default_pools_from_the_environment() {
    if !available("the_first_agent_creates_the_default_pools_from_the_environment") {
        return;
    }
    let mut cluster = Cluster::new(&Spec::nodes(2).with_etcd());
    let env = [
        ("CALICO_IPV4POOL_CIDR", "10.77.0.0/16"),
        ("CALICO_IPV4POOL_BLOCK_SIZE", "28"),
        ("CALICO_IPV4POOL_VXLAN", "always"),
        ("CALICO_IPV6POOL_CIDR", "fd00:77::/48"),
    ];
    let mut first = Agent::start(&cluster, &cluster.nodes[0], &env);
    first.wait_ready(TIMEOUT);
    let mut second = Agent::start(&cluster, &cluster.nodes[1], &[("CALICO_IPV4POOL_CIDR", "10.88.0.0/16")]);
    second.wait_ready(TIMEOUT);
    let pools: serde_json::Value = serde_json::from_str(&cluster.calicoctl_ok(&["get", "ippools", "-o", "json"], "")).expect("pools JSON");
    let specs: Vec<(String, serde_json::Value)> = pools["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["metadata"]["name"].as_str().unwrap_or_default().to_string(), p["spec"].clone()))
        .collect();
    assert_eq!(specs.len(), 2, "one pool per family, none from the second agent: {specs:?}");
    let v4 = &specs.iter().find(|(n, _)| n == "default-ipv4-ippool").expect("default-ipv4-ippool").1;
    assert_eq!(
        (v4["cidr"].as_str(), v4["blockSize"].as_u64(), v4["vxlanMode"].as_str(), v4["natOutgoing"].as_bool()),
        (Some("10.77.0.0/16"), Some(28), Some("Always"), Some(true)),
        "{v4}"
    );
    let v6 = &specs.iter().find(|(n, _)| n == "default-ipv6-ippool").expect("default-ipv6-ippool").1;
    assert_eq!((v6["cidr"].as_str(), v6["blockSize"].as_u64()), (Some("fd00:77::/48"), Some(122)), "{v6}");
    let conf = cluster.calico_conf();
    let pod = cluster.nodes[1].add_pod(&conf, "web");
    assert!(pod.ip.starts_with("10.77."), "{}", pod.ip);
    assert!(full_log(&first).contains("created the default IP pool"));
    assert!(!full_log(&second).contains("created the default IP pool"));
}

/// calico-node does not retry an etcd it cannot reach at startup: it exits 1 naming the datastore, and its
/// supervisor (systemd's Restart=, a DaemonSet) starts it again, as after any other startup failure. Once
/// running it rides out an outage (tests/faults.rs).
#[test]
fn unreachable_etcd_at_startup_is_a_clear_error() {
    if !available("unreachable_etcd_at_startup_is_a_clear_error") {
        return;
    }
    let cluster = bed(1);
    let node = &cluster.nodes[0];
    let nowhere = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("unix://{}/c0:1", nowhere.path().display());
    let start = Instant::now();
    let (status, log) = run_to_exit(&cluster, node, &[("ETCD_ENDPOINTS", &endpoint)], Duration::from_secs(60));
    let took = start.elapsed();
    eprintln!("etcd unreachable at startup: exit {status} after {took:?}");
    assert_eq!(status.code(), Some(1), "{log}");
    let line = log.lines().find(|l| l.contains("ERROR")).unwrap_or_else(|| panic!("no error line in {log}"));
    assert!(line.contains("datastore") && line.contains("c0:1"), "{line}");
    eprintln!("{line}");
    assert!(!node.path("/var/lib/calico/nodename").exists());
    assert!(!node.path("/var/run/calico/bird.pid").exists());
}

/// `WAIT_FOR_DATASTORE=true` (Calico's manifests set it): the agent waits for etcd instead of exiting; a
/// SIGTERM ends the wait with exit 0; once etcd answers it starts as usual.
#[test]
fn with_wait_for_datastore_startup_waits_for_etcd() {
    if !available("with_wait_for_datastore_startup_waits_for_etcd") {
        return;
    }
    let mut cluster = bed(1);
    cluster.etcd.as_mut().expect("etcd").kill(0);
    let waiting = |agent: &mut Agent| {
        testbed::wait_for("the agent to wait for etcd", TIMEOUT, || {
            agent.daemon.assert_running();
            let log = full_log(agent);
            if log.matches("waiting for the datastore").count() >= 2 {
                Ok(())
            } else {
                Err(agent.daemon.log_tail(5))
            }
        })
    };
    let node = &cluster.nodes[0];
    let mut agent = Agent::start(&cluster, node, &[("WAIT_FOR_DATASTORE", "true")]);
    waiting(&mut agent);
    assert!(!node.path("/var/lib/calico/nodename").exists(), "nodename before the node is registered");
    assert_eq!(agent.stop().and_then(|s| s.code()), Some(0), "SIGTERM while waiting: {}", agent.daemon.log_tail(10));

    agent.restart();
    waiting(&mut agent);
    cluster.etcd.as_mut().expect("etcd").restart(0);
    agent.wait_ready(TIMEOUT);
    assert!(node_doc(&cluster, &node.name).is_some(), "registered once etcd answered");
    assert!(node.path("/var/lib/calico/nodename").exists());
}

#[test]
fn sigterm_stops_bird_removes_the_state_file_and_leaves_the_routes() {
    if !available("sigterm_stops_bird_removes_the_state_file_and_leaves_the_routes") {
        return;
    }
    let (mut cluster, mut agents) = mesh(2);
    let (_p1, _p2, blocks) = two_pods(&mut cluster);
    let agent = &mut agents[1];
    let bird = agent.bird_pid().expect("node-2's BIRD");
    let state = calico_node::state::path(&agent.run_dir);
    assert!(state.exists());
    let asked = Instant::now();
    let status = agent.stop();
    let took = asked.elapsed();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", agent.daemon.log_tail(20));
    // BIRD's own orderly shutdown, not the SIGKILL after the agent's grace period.
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    assert!(full_log(agent).contains("Shutdown completed"), "{}", agent.daemon.log_tail(20));
    assert!(!bird_alive(bird), "BIRD {bird} still runs");
    assert!(!state.exists(), "the state file is left");
    // persist: BIRD leaves its kernel routes on node-2 (the peer's block, its own blackhole) when it stops.
    let node = &cluster.nodes[1];
    let learned = node.route(&blocks[0]);
    assert!(learned.contains(&format!("via {} dev eth0 proto bird", cluster.nodes[0].ip)), "{learned:?}");
    assert!(node.route(&blocks[1]).contains("blackhole"), "{:?}", node.route(&blocks[1]));
    eprintln!("SIGTERM to exit 0: {took:?}");
}

/// `calico-node` run as a probe, on the machine, against `agent`'s run and lib dirs: (exit code, stdout).
fn probe(agent: &Agent, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(testbed::target_dir().join("calico-node"))
        .env_clear()
        .env("CALICO_RUN_DIR", &agent.run_dir)
        .env("CALICO_LIB_DIR", &agent.lib_dir)
        .args(args)
        .output()
        .expect("run calico-node as a probe");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The probes of Calico's manifests (`calico-node -felix-ready -bird-ready`, `health --felix-live
/// --bird-live`) pass on a running mesh; an agent stopped is neither live; its peer is not BGP-ready while
/// the session is down.
#[test]
fn health_probes_follow_the_agent_and_its_sessions() {
    if !available("health_probes_follow_the_agent_and_its_sessions") {
        return;
    }
    let (cluster, mut agents) = mesh(2);
    for a in &agents {
        assert_eq!(probe(a, &["-felix-ready", "-bird-ready"]), (0, String::new()), "{}", a.node);
        assert_eq!(probe(a, &["health", "--felix-live", "--bird-live", "--bird6-ready"]), (0, String::new()), "{}: no IPv6 peers is ready", a.node);
    }
    assert_eq!(agents[1].stop().and_then(|s| s.code()), Some(0));
    let (code, out) = probe(&agents[1], &["-felix-live"]);
    assert_eq!((code, out.trim()), (1, "calico/node is not ready: Felix is not live: the agent is not running"));
    let (code, out) = probe(&agents[1], &["-bird-live"]);
    assert!(code == 1 && out.starts_with("calico/node is not ready: bird is not live"), "{code} {out}");
    let gone = cluster.nodes[1].ip.clone();
    testbed::wait_for("node-1 not BGP-ready", TIMEOUT, || match probe(&agents[0], &["-bird-ready"]) {
        (1, out) if out.contains(&format!("BGP not established with {gone}")) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    // After the threshold one session would do; node-1 has none up.
    let (code, _) = probe(&agents[0], &["-bird-ready", "-threshold-time", "0s"]);
    assert_eq!(code, 1);
    assert_eq!(probe(&agents[0], &["-felix-live", "-bird-live"]).0, 0, "node-1 itself is live");
    assert_eq!(probe(&agents[0], &["--no-such-check"]).0, 2);
}
