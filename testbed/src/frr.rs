//! FRR (Debian's `frr`, 8.4) as a router of the bed, e.g. a top-of-rack switch in another AS: zebra + bgpd
//! started by hand (no systemd, no watchfrr, no /etc/frr/daemons) on a host made with `DIRS` as its private
//! dirs. FRR's default paths then are the host's own: it reads /etc/frr/{zebra,bgpd,vtysh}.conf, puts pid
//! files, vty sockets and zserv.api in /run/frr and crash logs in /var/tmp/frr, all in `<host dir>/fs/`; the
//! machine's /etc/frr and /var/run/frr are not touched and no `-N` pathspace is needed (with `-N`, bgpd would
//! still create /var/run/frr/<name> and /var/tmp/frr on the machine). The daemons run as user `frr` (as root,
//! zebra refuses to start: root is not in group `frrvty`), so the private dirs are given to that user.
//! No TCP vty (`-P 0`); logs on stdout into the host's `log/zebra.log` and `log/bgpd.log`; `vtysh` on the host.
use crate::daemon::Daemon;
use crate::host::Host;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

pub const ZEBRA: &str = "/usr/lib/frr/zebra";
pub const BGPD: &str = "/usr/lib/frr/bgpd";

/// The private dirs an FRR host needs (pass to `Cluster::add_host` or `Host::new`).
pub const DIRS: [&str; 3] = ["/etc/frr", "/var/run/frr", "/var/tmp"];

/// True when we are root and frr is installed; in CI either missing is a failure (scripts/deps.sh --all).
pub fn available(test: &str) -> bool {
    if !crate::root_or_skip(test) {
        return false;
    }
    if Path::new(BGPD).exists() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test} needs frr (scripts/deps.sh --all)");
    eprintln!("SKIP {test}: {BGPD} not installed (scripts/deps.sh --all)");
    false
}

/// zebra and bgpd of one host; bgpd is stopped before zebra.
pub struct Frr {
    pub bgpd: Daemon,
    pub zebra: Daemon,
    host: crate::host::Enter,
    host_name: String,
    pub started: Instant,
}

impl Frr {
    /// Writes `bgpd_conf` (and a zebra.conf naming the host) into the host's /etc/frr, starts zebra, waits for
    /// its zserv socket, starts bgpd and waits for its vty socket.
    pub fn start(host: &Host, bgpd_conf: &str) -> Frr {
        let (etc, run, tmp) = (host.path("/etc/frr"), host.path("/var/run/frr"), host.path("/var/tmp"));
        std::fs::write(etc.join("zebra.conf"), format!("hostname {}\n", host.name)).expect("zebra.conf");
        std::fs::write(etc.join("bgpd.conf"), bgpd_conf).expect("bgpd.conf");
        std::fs::write(etc.join("vtysh.conf"), "").expect("vtysh.conf");
        let frr = nix::unistd::User::from_name("frr").ok().flatten().expect("user frr (made by the frr package)");
        for d in [&etc, &run] {
            for entry in std::fs::read_dir(d).expect("frr dir").flatten().map(|e| e.path()).chain([d.to_path_buf()]) {
                std::os::unix::fs::chown(&entry, Some(frr.uid.as_raw()), Some(frr.gid.as_raw())).expect("chown to frr");
            }
        }
        // /var/tmp as everywhere: anyone may make a dir there (FRR makes /var/tmp/frr).
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).expect("chmod /var/tmp");
        let started = Instant::now();
        let mut zebra = host.spawn("zebra", daemon_command(host, ZEBRA));
        wait_socket(&mut zebra, &run.join("zserv.api"));
        let mut bgpd = host.spawn("bgpd", daemon_command(host, BGPD));
        wait_socket(&mut bgpd, &run.join("bgpd.vty"));
        Frr { bgpd, zebra, host: host.enter().clone(), host_name: host.name.clone(), started }
    }

    /// `vtysh -c <cmd>...` on the host; panics unless vtysh succeeds.
    pub fn vtysh(&self, cmds: &[&str]) -> String {
        self.try_vtysh(cmds).unwrap_or_else(|e| panic!("vtysh {cmds:?} on {}: {e}", self.host_name))
    }

    pub fn try_vtysh(&self, cmds: &[&str]) -> Result<String, String> {
        let mut c = self.host.command("vtysh");
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        let out = c.output().map_err(|e| format!("running vtysh: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// bgpd's state of the session with `peer` (`Established`, `Active`, `Connect`, ...).
    pub fn neighbor_state(&self, peer: &str) -> Result<String, String> {
        let text = self.try_vtysh(&[&format!("show bgp neighbors {peer} json")])?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        v[peer]["bgpState"].as_str().map(str::to_string).ok_or_else(|| format!("no bgpState for {peer}: {text}"))
    }

    /// Waits until the session with `peer` is Established; returns the time since `started`.
    pub fn wait_established(&mut self, peer: &str, timeout: Duration) -> Duration {
        crate::wait_for(&format!("FRR on {} Established with {peer}", self.host_name), timeout, || {
            self.zebra.assert_running();
            self.bgpd.assert_running();
            match self.neighbor_state(peer)? {
                s if s == "Established" => Ok(()),
                s => Err(s),
            }
        });
        self.started.elapsed()
    }

    /// bgpd's IPv4 unicast table (`show ip bgp json`): `["routes"][prefix]` is the list of paths.
    pub fn bgp_table(&self) -> Value {
        let text = self.vtysh(&["show ip bgp json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("show ip bgp json: {e}: {text}"))
    }

    /// Waits until bgpd has a path to `prefix`; returns that path's next hop.
    pub fn wait_prefix(&self, prefix: &str, timeout: Duration) -> String {
        crate::wait_for(&format!("{prefix} in FRR's table on {}", self.host_name), timeout, || {
            let t = self.bgp_table();
            let paths = t["routes"][prefix].as_array().cloned().unwrap_or_default();
            let hop = paths.first().and_then(|p| p["nexthops"][0]["ip"].as_str()).map(str::to_string);
            hop.ok_or_else(|| format!("table has {:?}", t["routes"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>())))
        })
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        // bgpd first: zebra gone under it would only make it log.
        self.bgpd.stop();
        self.zebra.stop();
    }
}

fn daemon_command(host: &Host, program: &str) -> std::process::Command {
    let mut c = host.command(program);
    c.args(["-P", "0", "--log", "stdout"]);
    c
}

fn wait_socket(d: &mut Daemon, socket: &Path) {
    crate::wait_for(&format!("{} socket {}", d.name, socket.display()), Duration::from_secs(10), || {
        d.assert_running();
        if socket.exists() {
            Ok(())
        } else {
            Err("not there yet".into())
        }
    });
}
