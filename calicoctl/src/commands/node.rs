//! `calicoctl node status`: whether the node agent (calico-node) runs, what its state file says, and its BGP
//! sessions from BIRD's control socket, printed as Calico prints them. The agent is found by its state file
//! (`<run dir>/calico-node.json`, its pid alive) rather than in the process list as Calico does. The other
//! node commands run or inspect a calico/node container and are left out.
use crate::args::Args;
use crate::error::{CtlError, Result};
use crate::output::table;
use calico_node::state::{self, AgentState};
use calico_node::status::{self, Peer};
use std::io::ErrorKind;
use std::path::Path;

pub fn run(args: &Args, words: &[&str]) -> Result<()> {
    args.allow("node", &["config"])?;
    match words {
        ["status"] => status(&|k| std::env::var(k).ok()),
        ["status", extra, ..] => Err(CtlError::Usage(format!("calicoctl node status takes no arguments (got {extra:?})"))),
        [other, ..] => {
            Err(CtlError::Unsupported(format!("calicoctl node {other}: not supported by calico-rs (it manages the calico/node container)")))
        }
        [] => Err(CtlError::Usage("calicoctl node needs a subcommand (status)".into())),
    }
}

/// What BGP looks like on this node.
enum Bgp {
    /// The agent runs without BIRD (`CALICO_NETWORKING_BACKEND=vxlan` or `none`).
    NotUsed(String),
    /// The agent's sessions, IPv4 and IPv6.
    Peers(Vec<Peer>, Vec<Peer>),
}

fn status(env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    // As Calico: BIRD's socket and the run dir are root's.
    if !nix::unistd::geteuid().is_root() {
        return Err(CtlError::Failed("Need super user privileges: Operation not permitted".into()));
    }
    let run_dir = state::run_dir(env);
    let agent =
        AgentState::read(&run_dir).filter(AgentState::agent_running).ok_or_else(|| CtlError::Failed("Calico process is not running.".into()))?;
    print!("{}", agent_lines(&agent));
    // BIRD not answering is an error here (stderr, exit 1), where Calico prints a line and exits 0: the agent
    // said it runs BIRD, so BGP is down. A node without BGP says so in `Bgp::NotUsed` and exits 0.
    let bgp = bgp(&agent, &run_dir.join(state::BIRD_CTL))?;
    print!("{}", bgp_sections(&bgp));
    Ok(())
}

/// `Calico process is running.` and what the agent's state adds to it.
fn agent_lines(agent: &AgentState) -> String {
    let mut out = String::from("Calico process is running.\n");
    if let Some(e) = &agent.config_error {
        out += &format!("Configuration error (the last good BIRD configuration keeps running): {e}\n");
    }
    if let Some(d) = &agent.datastore_down {
        out += &format!("Datastore unreachable {d} (routes and BGP sessions stay as they are)\n");
    }
    for w in &agent.warnings {
        out += &format!("Warning: {w}\n");
    }
    if let Some(ipip) = &agent.ipip {
        out += &format!("IPIP: {ipip}\n");
    }
    out
}

fn bgp(agent: &AgentState, ctl: &Path) -> Result<Bgp> {
    if matches!(agent.backend.as_str(), "vxlan" | "none") {
        return Ok(Bgp::NotUsed(agent.backend.clone()));
    }
    match status::query(ctl) {
        Ok(peers) => {
            let (v4, v6) = status::by_family(peers);
            Ok(Bgp::Peers(v4, v6))
        }
        // No socket, or one BIRD left behind when it died.
        Err(calico_node::birdc::BirdcError::Connect { source, .. })
            if matches!(source.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) =>
        {
            Err(CtlError::Failed("The BGP backend process (BIRD) is not running.".into()))
        }
        Err(e) => Err(CtlError::Failed(format!("Error querying BIRD: {e}"))),
    }
}

/// The sections after `Calico process is running.`, each after an empty line, and the empty line Calico ends with.
fn bgp_sections(bgp: &Bgp) -> String {
    match bgp {
        Bgp::NotUsed(backend) => format!("\nBGP is not used (CALICO_NETWORKING_BACKEND={backend}).\n\n"),
        Bgp::Peers(v4, v6) => format!("{}{}\n", family("4", v4), family("6", v6)),
    }
}

fn family(version: &str, peers: &[Peer]) -> String {
    let mut out = format!("\nIPv{version} BGP status\n");
    if peers.is_empty() {
        out += &format!("No IPv{version} peers found.\n");
        return out;
    }
    let rows: Vec<Vec<String>> =
        peers.iter().map(|p| vec![p.address.to_string(), p.type_label().to_string(), p.state.clone(), p.since.clone(), p.info.clone()]).collect();
    out += &table::boxed(&["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], &rows, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_node::bird::PeerKind;

    fn peer(address: &str, kind: PeerKind, state: &str, since: &str, info: &str) -> Peer {
        Peer { address: address.parse().expect("address"), kind, state: state.into(), since: since.into(), info: info.into() }
    }

    #[test]
    fn sections_are_calicos() {
        let v4 = vec![peer("172.17.8.102", PeerKind::Mesh, "up", "23:30:04", "Established")];
        let want = "
IPv4 BGP status
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 172.17.8.102 | node-to-node mesh | up    | 23:30:04 | Established |
+--------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.

";
        assert_eq!(bgp_sections(&Bgp::Peers(v4, vec![])), want);
    }

    #[test]
    fn both_families_and_every_peer_type() {
        let v4 = vec![
            peer("10.250.0.2", PeerKind::Mesh, "up", "09:55:27.088", "Established"),
            peer("10.250.0.201", PeerKind::Global, "start", "09:55:25.139", "Connect Socket: No route to host"),
        ];
        let v6 = vec![peer("fd00:250::2", PeerKind::Node, "down", "2026-12-02 09:55:40", "")];
        let want = "
IPv4 BGP status
+--------------+-------------------+-------+--------------+----------------------------------+
| PEER ADDRESS |     PEER TYPE     | STATE |    SINCE     |               INFO               |
+--------------+-------------------+-------+--------------+----------------------------------+
| 10.250.0.2   | node-to-node mesh | up    | 09:55:27.088 | Established                      |
| 10.250.0.201 | global            | start | 09:55:25.139 | Connect Socket: No route to host |
+--------------+-------------------+-------+--------------+----------------------------------+

IPv6 BGP status
+--------------+---------------+-------+---------------------+------+
| PEER ADDRESS |   PEER TYPE   | STATE |        SINCE        | INFO |
+--------------+---------------+-------+---------------------+------+
| fd00:250::2  | node specific | down  | 2026-12-02 09:55:40 |      |
+--------------+---------------+-------+---------------------+------+

";
        assert_eq!(bgp_sections(&Bgp::Peers(v4, v6)), want);
        assert_eq!(bgp_sections(&Bgp::Peers(vec![], vec![])), "\nIPv4 BGP status\nNo IPv4 peers found.\n\nIPv6 BGP status\nNo IPv6 peers found.\n\n");
    }

    #[test]
    fn a_node_without_bird_says_so() {
        let agent = AgentState { backend: "vxlan".into(), ..AgentState::default() };
        let bgp = bgp(&agent, Path::new("/nonexistent/bird.ctl")).expect("no BIRD needed");
        assert_eq!(bgp_sections(&bgp), "\nBGP is not used (CALICO_NETWORKING_BACKEND=vxlan).\n\n");
    }

    #[test]
    fn no_socket_is_bird_not_running() {
        let agent = AgentState { backend: "bird".into(), ..AgentState::default() };
        let dir = tempfile::tempdir().expect("tempdir");
        let err = bgp(&agent, &dir.path().join("bird.ctl")).err().expect("no BIRD");
        assert_eq!(err.to_string(), "The BGP backend process (BIRD) is not running.");
    }

    #[test]
    fn the_agents_state_comes_first() {
        let agent = AgentState {
            config_error: Some("BGPPeer p1: peerIP 300.0.0.1 is not an IP address".into()),
            warnings: vec!["BGPPeer p2: the secret bgp-pass is missing".into()],
            ipip: Some("unsupported: no ipip module".into()),
            datastore_down: Some("since 2026-12-02T16:05:00Z: etcd 127.0.0.1:2379: connection refused".into()),
            ..AgentState::default()
        };
        assert_eq!(
            agent_lines(&agent),
            "Calico process is running.\n\
             Configuration error (the last good BIRD configuration keeps running): BGPPeer p1: peerIP 300.0.0.1 is not an IP address\n\
             Datastore unreachable since 2026-12-02T16:05:00Z: etcd 127.0.0.1:2379: connection refused (routes and BGP sessions stay as they are)\n\
             Warning: BGPPeer p2: the secret bgp-pass is missing\n\
             IPIP: unsupported: no ipip module\n"
        );
        assert_eq!(agent_lines(&AgentState::default()), "Calico process is running.\n");
    }
}
