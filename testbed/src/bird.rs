//! BIRD 2 (Debian's `bird2`) on a bed host: `bird -f -c <cfg> -s <ctl>` in the host's namespaces under a
//! `Daemon` guard (stderr to the host's `log/bird.log`: give the config a `log stderr all;`), queried with
//! `birdc -s <ctl>`. Config, control socket and pid file are in the host's dir on the machine, so birdc needs
//! no namespace. `birdc`/`parse_protocols` also serve for a BIRD someone else started (an agent's).
use crate::cluster::ClusterNode;
use crate::daemon::Daemon;
use crate::host::Host;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const BIRD: &str = "/usr/sbin/bird";
pub const BIRDC: &str = "/usr/sbin/birdc";

/// True when we are root and bird2 is installed; in CI either missing is a failure (scripts/deps.sh --all).
pub fn available(test: &str) -> bool {
    if !crate::root_or_skip(test) {
        return false;
    }
    if Path::new(BIRD).exists() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test} needs bird2 (scripts/deps.sh --all)");
    eprintln!("SKIP {test}: {BIRD} not installed (scripts/deps.sh --all)");
    false
}

pub struct Bird {
    pub daemon: Daemon,
    pub config: PathBuf,
    pub ctl: PathBuf,
    /// When `start` spawned it (the start of a time-to-Established measurement).
    pub started: Instant,
}

/// Calico's overrides of BIRD's BGP timers (bird.cfg.template's bgp_template); BIRD's own are 5 s, 120 s, 60,300.
pub const CALICO_TIMERS: &str = "connect delay time 2; connect retry time 5; error wait time 5,30;";
/// The AS of the hand-written mesh (Calico's default).
pub const MESH_AS: u32 = 64512;

/// The protocol name of a mesh session with `ip`, as calico-node names it (`Mesh_10_250_0_2`).
pub fn mesh_name(ip: &str) -> String {
    format!("Mesh_{}", ip.replace(['.', ':'], "_"))
}

/// A hand-written node config for BIRD alone, the shape calico-node renders: device + direct (next hops of
/// iBGP routes resolve over eth0's subnet), the kernel gets statics and BGP routes, `blocks` announced as
/// blackholes, one iBGP session per peer with Calico's passive rule (the side whose address *string* is
/// greater connects), `timers` in the template.
pub fn mesh_config(me: &ClusterNode, peers: &[&ClusterNode], blocks: &[String], timers: &str) -> String {
    let routes: String = blocks.iter().map(|b| format!("  route {b} blackhole;\n")).collect();
    let mut c = format!(
        "log stderr all;\nrouter id {ip};\n\
         protocol device {{ scan time 2; }}\n\
         protocol direct {{ ipv4; interface \"eth0\"; }}\n\
         protocol kernel {{ ipv4 {{ import none; export where source ~ [ RTS_STATIC, RTS_BGP ]; }}; }}\n\
         protocol static blocks {{\n  ipv4;\n{routes}}}\n\
         template bgp mesh {{\n  local {ip} as {MESH_AS};\n  {timers}\n  ipv4 {{ import all; export where proto = \"blocks\"; next hop self; }};\n}}\n",
        ip = me.ip
    );
    for p in peers {
        let passive = if p.ip > me.ip { " passive on;" } else { "" };
        c += &format!("protocol bgp {} from mesh {{ neighbor {} as {MESH_AS};{passive} }}\n", mesh_name(&p.ip), p.ip);
    }
    c
}

/// One row of `show protocols`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub proto: String,
    pub table: String,
    /// `up`, `start`, `down`...
    pub state: String,
    pub since: String,
    /// For BGP: `Established`, `Active`, `Connect`, `Idle`, with any reason after it.
    pub info: String,
}

impl Bird {
    /// Writes `config`, checks it with `bird -p`, starts BIRD on `host` and waits until its socket answers.
    pub fn start(host: &Host, config: &str) -> Bird {
        Bird::start_with_socket(host, config, &host.dir.path().join("bird").join("bird.ctl"))
    }

    /// `start` with the control socket at `ctl` (a machine path), e.g. the node's own
    /// `host.path("/var/run/calico").join("bird.ctl")`, where calico-node's BIRD has it.
    pub fn start_with_socket(host: &Host, config: &str, ctl: &Path) -> Bird {
        let dir = host.dir.path().join("bird");
        std::fs::create_dir_all(&dir).expect("bird dir");
        let (cfg, ctl, pid) = (dir.join("bird.conf"), ctl.to_path_buf(), dir.join("bird.pid"));
        std::fs::write(&cfg, config).expect("write bird config");
        check_config(host, &cfg);
        let mut c = host.command(BIRD);
        c.arg("-f").arg("-c").arg(&cfg).arg("-s").arg(&ctl).arg("-P").arg(&pid);
        let started = Instant::now();
        let mut bird = Bird { daemon: host.spawn("bird", c), config: cfg, ctl, started };
        crate::wait_for(&format!("BIRD's socket on {}", host.name), Duration::from_secs(10), || {
            bird.daemon.assert_running();
            try_birdc(&bird.ctl, &["show", "status"]).map(|_| ())
        });
        bird
    }

    /// `birdc -s <ctl> args`; panics unless birdc succeeds.
    pub fn birdc(&self, args: &[&str]) -> String {
        try_birdc(&self.ctl, args).unwrap_or_else(|e| panic!("birdc {args:?}: {e}"))
    }

    pub fn protocols(&self) -> Vec<Protocol> {
        parse_protocols(&self.birdc(&["show", "protocols"]))
    }

    /// Waits until every protocol in `names` is `up` and `Established`; returns the time since `started`.
    pub fn wait_established(&mut self, names: &[&str], timeout: Duration) -> Duration {
        let ctl = self.ctl.clone();
        let daemon = &mut self.daemon;
        crate::wait_for(&format!("{names:?} Established ({})", daemon.name), timeout, || {
            daemon.assert_running();
            let protos = parse_protocols(&try_birdc(&ctl, &["show", "protocols"])?);
            let down: Vec<String> = names
                .iter()
                .filter(|n| !protos.iter().any(|p| p.name == **n && p.state == "up" && p.info.starts_with("Established")))
                .map(|n| protos.iter().find(|p| p.name == *n).map_or(format!("{n}: absent"), |p| format!("{n}: {} {}", p.state, p.info)))
                .collect();
            if down.is_empty() {
                Ok(())
            } else {
                Err(down.join(", "))
            }
        });
        self.started.elapsed()
    }

    /// Replaces the config (checked with `bird -p` first) and has BIRD load it (`birdc configure`).
    pub fn reconfigure(&self, host: &Host, config: &str) {
        let staged = self.config.with_extension("new");
        std::fs::write(&staged, config).expect("write bird config");
        check_config(host, &staged);
        std::fs::rename(&staged, &self.config).expect("replace bird config");
        let out = self.birdc(&["configure"]);
        assert!(out.contains("Reconfigured") || out.contains("Reconfiguration in progress"), "birdc configure: {out}");
    }
}

/// `bird -p -c <file>` on the host: parse only, so a broken config fails here with BIRD's message.
pub fn check_config(host: &Host, file: &Path) {
    let out = host.command(BIRD).arg("-p").arg("-c").arg(file).output().expect("bird -p");
    assert!(out.status.success(), "bird -p -c {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
}

/// `birdc -s <ctl> args` (from the machine: the socket is a file); Err with birdc's output when it fails.
pub fn try_birdc(ctl: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(BIRDC).arg("-s").arg(ctl).args(args).output().map_err(|e| format!("running birdc: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// The rows of `birdc show protocols` (BIRD 2's layout: `Name Proto Table State Since Info`, the time one
/// word); the banner and header are skipped.
pub fn parse_protocols(text: &str) -> Vec<Protocol> {
    let rows = text.lines().filter(|l| !l.starts_with("BIRD ") && !l.starts_with("Name ") && !l.trim().is_empty());
    rows.filter_map(|l| {
        let mut w = l.split_whitespace();
        let (name, proto, table, state, since) = (w.next()?, w.next()?, w.next()?, w.next()?, w.next()?);
        let s = |x: &str| x.to_string();
        Some(Protocol { name: s(name), proto: s(proto), table: s(table), state: s(state), since: s(since), info: w.collect::<Vec<_>>().join(" ") })
    })
    .collect()
}

/// A BGP session as `show protocols` has it: state, "since" (milliseconds of the day), info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub state: String,
    pub since_ms: u64,
    pub info: String,
}

/// The BGP sessions among `protocols`, by protocol name.
pub fn bgp_sessions(protocols: Vec<Protocol>) -> BTreeMap<String, Session> {
    let ms = |t: &str| -> u64 {
        let (hms, frac) = t.split_once('.').unwrap_or((t, "0"));
        let s = hms.split(':').filter_map(|x| x.parse::<u64>().ok()).fold(0, |a, x| a * 60 + x);
        s * 1000 + format!("{frac:0<3}")[..3].parse::<u64>().unwrap_or(0)
    };
    let bgp = protocols.into_iter().filter(|p| p.proto == "BGP");
    bgp.map(|p| (p.name, Session { state: p.state, since_ms: ms(&p.since), info: p.info })).collect()
}

/// Whether every BIRD has the same sessions in the same state since the same time. BIRD shows "since" as
/// wall-clock time converted from its monotonic clock at each query, which moves it by a millisecond now and
/// then; a reset would move it by at least the time between the two looks.
pub fn same_sessions(before: &[BTreeMap<String, Session>], now: &[BTreeMap<String, Session>]) -> Result<(), String> {
    let same_session = |b: &Session, n: &Session| b.state == n.state && b.info == n.info && b.since_ms.abs_diff(n.since_ms) <= 20;
    let same = before.len() == now.len()
        && before.iter().zip(now).all(|(b, n)| b.len() == n.len() && b.iter().zip(n).all(|((bn, bs), (nn, ns))| bn == nn && same_session(bs, ns)));
    if same {
        Ok(())
    } else {
        Err(format!("sessions were {before:?}, now {now:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_protocols_rows() {
        let text = "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\n\
                    device1    Device     ---        up     23:41:07.552  \n\
                    Mesh_10_250_0_2 BGP        ---        up     23:41:09.601  Established   \n\
                    Mesh_10_250_0_3 BGP        ---        start  23:41:07.552  Active        Socket: Connection refused\n";
        let p = parse_protocols(text);
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].name.as_str(), p[0].proto.as_str(), p[0].info.as_str()), ("device1", "Device", ""));
        assert_eq!((p[1].state.as_str(), p[1].info.as_str()), ("up", "Established"));
        assert_eq!((p[2].state.as_str(), p[2].info.as_str()), ("start", "Active Socket: Connection refused"));
    }
}
