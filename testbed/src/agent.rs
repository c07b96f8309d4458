//! calico-node on a cluster node, as an operator runs it: the built binary in the node's namespaces, the
//! environment Calico documents (`NODENAME`, `IP`, `DATASTORE_TYPE`, `ETCD_ENDPOINTS`...), its private
//! /etc/calico, /var/lib/calico and /var/run/calico. The guard stops the agent with SIGTERM (which stops its
//! BIRD) and then kills any BIRD its pid file still names (one left by an agent a test killed).
use crate::bird::{parse_protocols, try_birdc, Protocol};
use crate::cluster::{Cluster, ClusterNode};
use crate::daemon::Daemon;
use std::path::PathBuf;
use std::time::Duration;

pub struct Agent {
    pub daemon: Daemon,
    pub node: String,
    /// The node's /var/run/calico and /var/lib/calico, as paths on the machine.
    pub run_dir: PathBuf,
    pub lib_dir: PathBuf,
    env: Vec<(String, String)>,
    enter: crate::host::Enter,
    log_dir: PathBuf,
    cleanup: usize,
}

/// The BIRD pid in a node's run dir, if the file names a live process.
fn bird_pid(run_dir: &std::path::Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(run_dir.join("bird.pid")).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "bird").then_some(pid)
}

fn kill_bird(run_dir: &std::path::Path) {
    if let Some(pid) = bird_pid(run_dir) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// The environment the agent runs with on `node`: its name, `IP` = eth0's address /24, the cluster's etcd,
/// debug logs, then `env` (which overrides any of it; an empty value unsets).
pub fn environment(cluster: &Cluster, node: &ClusterNode, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vec![
        ("NODENAME".into(), node.name.clone()),
        ("IP".into(), format!("{}/24", node.ip)),
        ("DATASTORE_TYPE".into(), "etcdv3".into()),
        ("ETCD_ENDPOINTS".into(), cluster.etcd().endpoints_csv()),
        ("CALICO_LOG_LEVEL".into(), "debug".into()),
    ];
    for (k, v) in env {
        all.retain(|(ek, _)| ek != k);
        if !v.is_empty() {
            all.push((k.to_string(), v.to_string()));
        }
    }
    all
}

impl Agent {
    /// Starts calico-node on `node` over the cluster's etcd with `IP` = the node's eth0 address (/24), plus
    /// `env` (which may override any of it). Does not wait: see `wait_ready`.
    pub fn start(cluster: &Cluster, node: &ClusterNode, env: &[(&str, &str)]) -> Agent {
        let all = environment(cluster, node, env);
        let run_dir = node.path("/var/run/calico");
        let cleanup = crate::arm(Box::new({
            let run_dir = run_dir.clone();
            move || kill_bird(&run_dir)
        }));
        let mut a = Agent {
            daemon: spawn(node.enter(), &node.log_dir(), &all),
            node: node.name.clone(),
            run_dir,
            lib_dir: node.path("/var/lib/calico"),
            env: all,
            enter: node.enter().clone(),
            log_dir: node.log_dir(),
            cleanup,
        };
        a.daemon.assert_running();
        a
    }

    /// Starts the agent again after `kill`/`stop`, with the same environment.
    pub fn restart(&mut self) {
        self.daemon = spawn(&self.enter, &self.log_dir, &self.env);
    }

    /// Waits for `/var/lib/calico/nodename` (written last at startup) and a state file of this very agent (the
    /// nodename file of an earlier agent on the node stays: alone it would say ready before this one is).
    pub fn wait_ready(&mut self, timeout: Duration) {
        let file = self.lib_dir.join("nodename");
        let state = self.run_dir.join("calico-node.json");
        let daemon = &mut self.daemon;
        crate::wait_for(&format!("calico-node ready on {}", self.node), timeout, || {
            if !daemon.running() {
                return Err(format!("calico-node exited: {}", daemon.log_tail(30)));
            }
            let written: serde_json::Value = std::fs::read(&state).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            if written["pid"].as_u64() != Some(u64::from(daemon.pid())) {
                return Err(format!("no state file of pid {} yet", daemon.pid()));
            }
            std::fs::read_to_string(&file).map(|_| ()).map_err(|e| e.to_string())
        });
    }

    pub fn ctl(&self) -> PathBuf {
        self.run_dir.join("bird.ctl")
    }

    pub fn birdc(&self, args: &[&str]) -> Result<String, String> {
        try_birdc(&self.ctl(), args)
    }

    pub fn protocols(&self) -> Vec<Protocol> {
        self.birdc(&["show", "protocols"]).map(|t| parse_protocols(&t)).unwrap_or_default()
    }

    /// Waits until `count` BGP sessions are Established (and no other BGP protocol is up but not Established).
    pub fn wait_sessions(&mut self, count: usize, timeout: Duration) -> Duration {
        let start = std::time::Instant::now();
        let ctl = self.ctl();
        let daemon = &mut self.daemon;
        crate::wait_for(&format!("{count} BGP sessions Established on {}", self.node), timeout, || {
            if !daemon.running() {
                return Err(format!("calico-node exited: {}", daemon.log_tail(30)));
            }
            let protos = parse_protocols(&try_birdc(&ctl, &["show", "protocols"])?);
            let bgp: Vec<&Protocol> = protos.iter().filter(|p| p.proto == "BGP").collect();
            let up = bgp.iter().filter(|p| p.info.starts_with("Established")).count();
            if up == count && bgp.len() == count {
                Ok(())
            } else {
                Err(format!("{up} of {} Established: {bgp:?}", bgp.len()))
            }
        });
        start.elapsed()
    }

    /// Waits until BIRD's BGP protocols are exactly `names`, each Established (so sessions that should go are
    /// gone); returns how long it took.
    pub fn wait_session_set(&mut self, names: &[&str], timeout: Duration) -> Duration {
        let start = std::time::Instant::now();
        let ctl = self.ctl();
        let daemon = &mut self.daemon;
        let mut want: Vec<&str> = names.to_vec();
        want.sort_unstable();
        crate::wait_for(&format!("BGP sessions {want:?} (only) Established on {}", self.node), timeout, || {
            if !daemon.running() {
                return Err(format!("calico-node exited: {}", daemon.log_tail(30)));
            }
            let protos = parse_protocols(&try_birdc(&ctl, &["show", "protocols"])?);
            let bgp: Vec<&Protocol> = protos.iter().filter(|p| p.proto == "BGP").collect();
            let mut have: Vec<&str> = bgp.iter().map(|p| p.name.as_str()).collect();
            have.sort_unstable();
            if have == want && bgp.iter().all(|p| p.info.starts_with("Established")) {
                Ok(())
            } else {
                Err(format!("{:?}", bgp.iter().map(|p| format!("{} {} {}", p.name, p.state, p.info)).collect::<Vec<_>>()))
            }
        });
        start.elapsed()
    }

    /// The state of BGP protocol `name` (`info`, e.g. `Established`), if BIRD has it.
    pub fn session(&self, name: &str) -> Option<String> {
        self.protocols().into_iter().find(|p| p.name == name).map(|p| p.info)
    }

    /// The live BIRD's pid (from its pid file).
    pub fn bird_pid(&self) -> Option<i32> {
        bird_pid(&self.run_dir)
    }

    /// SIGKILL to the agent only (its BIRD keeps running).
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// SIGTERM: the agent stops BIRD and exits.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.daemon.stop()
    }

    pub fn log(&self) -> String {
        self.daemon.log_tail(200)
    }
}

fn spawn(enter: &crate::host::Enter, log_dir: &std::path::Path, env: &[(String, String)]) -> Daemon {
    let mut c = enter.command(crate::target_dir().join("calico-node"));
    c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        c.env(k, v);
    }
    Daemon::spawn("calico-node", c, &log_dir.join("calico-node.log"))
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.daemon.stop();
        kill_bird(&self.run_dir);
        crate::disarm(self.cleanup);
    }
}
