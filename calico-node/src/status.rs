//! The BGP part of `calicoctl node status`: BIRD 2's `show protocols` reply turned into Calico's peer rows
//! (the agent's sessions only, found by the protocol names `bird::peer_name` gives them), split by the peer's
//! address family since one BIRD 2 holds both. Printing them is calicoctl's.
use crate::bird::{address_of_name, PeerKind};
use crate::birdc::{BirdcError, Control, Reply};
use std::net::IpAddr;
use std::path::Path;

/// `show protocols`' columns, compared case-insensitively: BIRD 2 capitalises them, BIRD 1.6 does not.
const HEADINGS: [&str; 6] = ["name", "proto", "table", "state", "since", "info"];
/// Reply codes of `show protocols` (BIRD's `doc/reply_codes`): the table header, then the rows.
const HEADER: u16 = 2002;
const ROW: u16 = 1002;

/// One BGP session of the agent, as a row of Calico's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub address: IpAddr,
    pub kind: PeerKind,
    /// BIRD's protocol state: `up`, `start`, `down`...
    pub state: String,
    /// BIRD's time column as it prints it (`12:34:56.789`, or `2026-12-02 12:34:56` with `timeformat iso long`).
    pub since: String,
    /// The BGP state and what follows it: `Established`, `Active Socket: Connection refused`; empty when down.
    pub info: String,
}

impl Peer {
    /// Calico's PEER TYPE column.
    pub fn type_label(&self) -> &'static str {
        match self.kind {
            PeerKind::Mesh => "node-to-node mesh",
            PeerKind::Global => "global",
            PeerKind::Node => "node specific",
        }
    }
}

/// Asks the BIRD behind `ctl` for its protocols; the agent's BGP sessions, in BIRD's order.
pub fn query(ctl: &Path) -> Result<Vec<Peer>, BirdcError> {
    let reply = Control::connect(ctl)?.command("show protocols")?;
    peers(&reply)
}

/// The agent's sessions among the rows of a `show protocols` reply. A header other than BIRD's six columns is
/// an error (the rows could not be read right), as it is for calicoctl.
pub fn peers(reply: &Reply) -> Result<Vec<Peer>, BirdcError> {
    let mut header = false;
    let mut out = Vec::new();
    for (code, text) in &reply.lines {
        match *code {
            HEADER => {
                let words: Vec<String> = text.split_whitespace().map(str::to_ascii_lowercase).collect();
                if words != HEADINGS {
                    return Err(BirdcError::Protocol(format!("unknown BIRD table output format: {text:?}")));
                }
                header = true;
            }
            ROW if header => out.extend(peer(text)),
            ROW => return Err(BirdcError::Protocol(format!("a row before the table header: {text:?}"))),
            _ => {}
        }
    }
    Ok(out)
}

/// One row, `Name Proto Table State Since Info`, if it is one of the agent's BGP sessions.
fn peer(row: &str) -> Option<Peer> {
    let mut words = row.split_whitespace().peekable();
    let (name, proto, _table, state) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if proto != "BGP" {
        return None;
    }
    let kind = [PeerKind::Mesh, PeerKind::Global, PeerKind::Node]
        .into_iter()
        .find(|k| name.strip_prefix(k.prefix()).is_some_and(|rest| rest.starts_with('_')))?;
    let address = address_of_name(name)?;
    let mut since = words.next().unwrap_or_default().to_string();
    // A date, then the time (`timeformat protocol iso long`): both are the one column.
    if is_date(&since) && words.peek().is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains(':')) {
        since = format!("{since} {}", words.next().unwrap_or_default());
    }
    Some(Peer { address, kind, state: state.to_string(), since, info: words.collect::<Vec<_>>().join(" ") })
}

/// `2026-12-02`.
fn is_date(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The IPv4 and the IPv6 sessions, each in BIRD's order.
pub fn by_family(peers: Vec<Peer>) -> (Vec<Peer>, Vec<Peer>) {
    peers.into_iter().partition(|p| p.address.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from BIRD 2.0.12 (the socket's lines, codes split off as `Control` reads them): two nodes in
    /// network namespaces, a mesh session in each family, a global peer that is not there, a BGPPeer on a port
    /// nobody listens on, a session of someone else's naming.
    const RECORDED: &str = "\
2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     09:55:25.139  
 Mesh_10_250_0_2 BGP        ---        up     09:55:27.088  Established   
 Global_10_250_0_201 BGP        ---        start  09:55:25.139  Connect       Socket: No route to host
 Node_10_250_0_2_port_1790 BGP        ---        start  09:55:25.139  Active        Socket: Connection refused
 Mesh_fd00_250__2 BGP        ---        up     09:55:26.973  Established   
 Local_Workload_x BGP        ---        start  09:55:25.139  Passive       
0000 ";

    /// The same BIRD after `timeformat protocol iso long;` and `disable Mesh_fd00_250__2`.
    const RECORDED_ISO_LONG: &str = "\
2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     2026-12-02 09:55:25  
 Mesh_10_250_0_2 BGP        ---        up     2026-12-02 09:55:27  Established   
 Global_10_250_0_201 BGP        ---        start  2026-12-02 09:55:25  Connect       Socket: No route to host
 Node_10_250_0_2_port_1790 BGP        ---        start  2026-12-02 09:55:25  Active        Socket: Connection refused
 Mesh_fd00_250__2 BGP        ---        down   2026-12-02 09:55:40  
 Local_Workload_x BGP        ---        start  2026-12-02 09:55:25  Passive       
0000 ";

    /// The reply as `Control::read_reply` makes it: continuation lines carry the code they continue.
    fn reply(raw: &str) -> Reply {
        let mut code = 0;
        let lines = raw
            .lines()
            .map(|l| match l.strip_prefix(' ') {
                Some(text) => (code, text.to_string()),
                None => {
                    code = l[..4].parse().expect("code");
                    (code, l.get(5..).unwrap_or("").to_string())
                }
            })
            .collect();
        Reply { lines }
    }

    fn row(p: &Peer) -> (String, &str, &str, &str, &str) {
        (p.address.to_string(), p.type_label(), p.state.as_str(), p.since.as_str(), p.info.as_str())
    }

    #[test]
    fn bird2_rows_become_the_agents_peers() {
        let peers = peers(&reply(RECORDED)).expect("peers");
        let rows: Vec<_> = peers.iter().map(row).collect();
        assert_eq!(
            rows,
            [
                ("10.250.0.2".into(), "node-to-node mesh", "up", "09:55:27.088", "Established"),
                ("10.250.0.201".into(), "global", "start", "09:55:25.139", "Connect Socket: No route to host"),
                ("10.250.0.2".into(), "node specific", "start", "09:55:25.139", "Active Socket: Connection refused"),
                ("fd00:250::2".into(), "node-to-node mesh", "up", "09:55:26.973", "Established"),
            ]
        );
    }

    #[test]
    fn a_date_and_time_are_one_since_column_and_a_down_session_has_no_info() {
        let peers = peers(&reply(RECORDED_ISO_LONG)).expect("peers");
        assert_eq!(row(&peers[0]), ("10.250.0.2".into(), "node-to-node mesh", "up", "2026-12-02 09:55:27", "Established"));
        assert_eq!(row(&peers[1]).4, "Connect Socket: No route to host");
        assert_eq!(row(&peers[3]), ("fd00:250::2".into(), "node-to-node mesh", "down", "2026-12-02 09:55:40", ""));
    }

    #[test]
    fn families_split_by_the_peer_address() {
        let (v4, v6) = by_family(peers(&reply(RECORDED)).expect("peers"));
        assert_eq!(v4.iter().map(|p| p.address.to_string()).collect::<Vec<_>>(), ["10.250.0.2", "10.250.0.201", "10.250.0.2"]);
        assert_eq!(v6.iter().map(|p| p.address.to_string()).collect::<Vec<_>>(), ["fd00:250::2"]);
    }

    #[test]
    fn bird_1_6s_lowercase_header_is_accepted_and_another_is_not() {
        let v1 = "2002-name     proto    table    state  since       info\n1002-kernel1  Kernel   master   up     2016-11-21\n \
                  Mesh_172_17_8_102 BGP      master   up     2016-11-21  Established\n0000";
        let p = peers(&reply(v1)).expect("BIRD 1.6");
        assert_eq!(row(&p[0]), ("172.17.8.102".into(), "node-to-node mesh", "up", "2016-11-21", "Established"));

        let other = "2002-Name       Proto      Table      State  Since\n1002-Mesh_10_0_0_1 BGP --- up 12:00:00\n0000";
        let err = peers(&reply(other)).expect_err("five columns");
        assert!(err.to_string().contains("unknown BIRD table output format"), "{err}");
    }

    #[test]
    fn names_that_only_look_like_the_agents_are_left_out() {
        let raw = "2002-Name Proto Table State Since Info\n1002-Mesh_x BGP --- up 12:00:00 Established\n \
                   Meshy_10_0_0_1 BGP --- up 12:00:00 Established\n Mesh_10_0_0_1 Static --- up 12:00:00\n \
                   Node_10_0_0_9 BGP --- start 12:00:00 Idle\n0000";
        let p = peers(&reply(raw)).expect("peers");
        assert_eq!(p.iter().map(row).collect::<Vec<_>>(), [("10.0.0.9".into(), "node specific", "start", "12:00:00", "Idle")]);
    }
}
