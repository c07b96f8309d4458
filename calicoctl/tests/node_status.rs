//! `calicoctl node status` run on a node of the cluster bed, as an operator runs it there: real BIRD 2s with
//! hand-written configs named as the agent names its sessions (a mesh of two nodes, a global peer that is not
//! there), the agent's state file in the node's own /var/run/calico, BIRD's socket beside it. Also the
//! answers without an agent, without BIRD, on a node that does not use BGP, and to a user who is not root.
//! Needs root (and bird2 for the first test).
mod support;

use calico_node::state::{AgentState, BIRD_CTL};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Out, BIN};
use testbed::bird::Bird;
use testbed::cluster::{Cluster, ClusterNode, Spec};

const TIMEOUT: Duration = Duration::from_secs(30);
const AS: u32 = 64512;
/// Not on the fabric: the global peer's session never comes up.
const ABSENT_PEER: &str = "10.250.0.201";

/// A node's BIRD config with the agent's protocol names: `Mesh_<ip>` to each of `mesh`, `Global_<ip>` to each of
/// `global`; Calico's timers, so the mesh comes up in about two seconds.
fn config(me: &ClusterNode, mesh: &[&str], global: &[&str]) -> String {
    let mut c = format!(
        "log stderr all;\nrouter id {ip};\nprotocol device {{ scan time 2; }}\n\
         template bgp bgp_template {{\n  local {ip} as {AS};\n  connect delay time 2; connect retry time 5; error wait time 5,30;\n  \
         ipv4 {{ import all; export none; }};\n}}\n",
        ip = me.ip
    );
    let name = |ip: &str| ip.replace('.', "_");
    for peer in mesh {
        // Calico's rule: the side with the greater address string connects.
        let passive = if *peer > me.ip.as_str() { " passive on;" } else { "" };
        c += &format!("protocol bgp Mesh_{} from bgp_template {{ neighbor {peer} as {AS};{passive} }}\n", name(peer));
    }
    for peer in global {
        c += &format!("protocol bgp Global_{} from bgp_template {{ neighbor {peer} as {AS}; }}\n", name(peer));
    }
    c
}

fn agent(pid: u32, backend: &str) -> AgentState {
    AgentState { pid, node_name: "node-1".into(), backend: backend.into(), revision: 1, ..AgentState::default() }
}

/// `calicoctl node status` on the node (its /var/run/calico), with no environment.
fn node_status(node: &ClusterNode) -> Out {
    let mut c = node.command(BIN);
    c.env_clear().args(["node", "status"]);
    run(c)
}

/// `calicoctl node status` on the machine with `CALICO_RUN_DIR=run_dir`.
fn node_status_in(run_dir: &Path) -> Out {
    let mut c = Command::new(BIN);
    c.env_clear().env("CALICO_RUN_DIR", run_dir).args(["node", "status"]);
    run(c)
}

fn run(mut c: Command) -> Out {
    let out = c.stdin(Stdio::null()).output().expect("run calicoctl");
    Out {
        rc: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// The rows of the `IPv4 BGP status` table, as cells.
fn v4_rows(stdout: &str) -> Vec<Vec<String>> {
    let section = stdout.split("IPv4 BGP status\n").nth(1).unwrap_or("").split("\nIPv6 BGP status").next().unwrap_or("");
    section
        .lines()
        .filter(|l| l.starts_with('|') && !l.contains("PEER ADDRESS"))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("run true");
    let pid = child.id();
    child.wait().expect("reap true");
    pid
}

#[test]
fn node_status_shows_the_mesh_established_and_a_global_peer_not_up() {
    let test = "node_status_shows_the_mesh_established_and_a_global_peer_not_up";
    if !testbed::bird::available(test) {
        return;
    }
    let cluster = Cluster::new(&Spec::nodes(2));
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let run_dir = n1.path("/var/run/calico");
    let mut bird1 = Bird::start_with_socket(n1, &config(n1, &[&n2.ip], &[ABSENT_PEER]), &run_dir.join(BIRD_CTL));
    let _bird2 = Bird::start(n2, &config(n2, &[&n1.ip], &[]));

    // No state file yet: no agent.
    let out = node_status(n1);
    assert_eq!((out.rc, out.stdout.as_str(), out.stderr.as_str()), (1, "", "Calico process is not running.\n"), "{out}");

    agent(std::process::id(), "bird").write(&run_dir).expect("write state");
    let mesh = format!("Mesh_{}", n2.ip.replace('.', "_"));
    bird1.wait_established(&[&mesh], TIMEOUT);
    let out = node_status(n1);
    assert_eq!(out.rc, 0, "{out}");
    assert!(out.stdout.starts_with("Calico process is running.\n\nIPv4 BGP status\n+--------------+-------------------+"), "{out}");
    assert!(out.stdout.contains("| PEER ADDRESS |     PEER TYPE     | STATE |"), "{out}");
    assert!(out.stdout.ends_with("+\n\nIPv6 BGP status\nNo IPv6 peers found.\n\n"), "{out}");
    let rows = v4_rows(&out.stdout);
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0][..3], [n2.ip.clone(), "node-to-node mesh".into(), "up".into()], "{out}");
    assert_eq!(rows[0][4], "Established", "{out}");
    assert_eq!(rows[1][..2], [ABSENT_PEER.to_string(), "global".into()], "{out}");
    assert_ne!(rows[1][2], "up", "{out}");
    assert!(["Idle", "Connect", "Active"].iter().any(|s| rows[1][4].starts_with(s)), "the global peer's BGP state: {out}");
    assert!(!rows[1][3].is_empty() && rows[1][3].contains(':'), "SINCE is BIRD's time: {out}");

    // The agent's own news comes first.
    let mut state = agent(std::process::id(), "bird");
    state.config_error = Some("BGPPeer rack1: peerIP 10.0.0.300 is not an IP address".into());
    state.ipip = Some("unsupported: the kernel has no ipip module".into());
    state.write(&run_dir).expect("write state");
    let out = node_status(n1);
    assert_eq!(out.rc, 0, "{out}");
    assert!(
        out.stdout.starts_with(
            "Calico process is running.\n\
             Configuration error (the last good BIRD configuration keeps running): BGPPeer rack1: peerIP 10.0.0.300 is not an IP address\n\
             IPIP: unsupported: the kernel has no ipip module\n\nIPv4 BGP status\n"
        ),
        "{out}"
    );

    // BIRD gone (its socket file left behind, as after a crash).
    bird1.daemon.kill();
    assert!(run_dir.join(BIRD_CTL).exists(), "a killed BIRD leaves its socket");
    let out = node_status(n1);
    assert_eq!((out.rc, out.stderr.as_str()), (1, "The BGP backend process (BIRD) is not running.\n"), "{out}");
    assert!(out.stdout.starts_with("Calico process is running.\n"), "{out}");

    // The state file of an agent that has exited.
    agent(dead_pid(), "bird").write(&run_dir).expect("write state");
    let out = node_status(n1);
    assert_eq!((out.rc, out.stdout.as_str(), out.stderr.as_str()), (1, "", "Calico process is not running.\n"), "{out}");
}

#[test]
fn node_status_without_bird_without_bgp_and_not_as_root() {
    let test = "node_status_without_bird_without_bgp_and_not_as_root";
    if !testbed::root_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // BIRD never started: no socket.
    agent(std::process::id(), "bird").write(dir.path()).expect("write state");
    let out = node_status_in(dir.path());
    assert_eq!(
        (out.rc, out.stdout.as_str(), out.stderr.as_str()),
        (1, "Calico process is running.\n", "The BGP backend process (BIRD) is not running.\n")
    );

    for backend in ["vxlan", "none"] {
        agent(std::process::id(), backend).write(dir.path()).expect("write state");
        let out = node_status_in(dir.path());
        assert_eq!(out.rc, 0, "{out}");
        assert_eq!(out.stdout, format!("Calico process is running.\n\nBGP is not used (CALICO_NETWORKING_BACKEND={backend}).\n\n"), "{out}");
    }

    let empty = tempfile::tempdir().expect("tempdir");
    let out = node_status_in(empty.path());
    assert_eq!((out.rc, out.stderr.as_str()), (1, "Calico process is not running.\n"), "{out}");

    // Not root: refused before anything is read, as Calico refuses.
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN, "node", "status"]).env_clear().env("CALICO_RUN_DIR", dir.path());
    let out = run(c);
    assert_eq!((out.rc, out.stdout.as_str(), out.stderr.as_str()), (1, "", "Need super user privileges: Operation not permitted\n"), "{out}");
}
