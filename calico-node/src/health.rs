//! `calico-node health --felix-live --bird-live` (and the older single-dash `calico-node -felix-ready
//! -bird-ready`): the checks Calico's manifests run as liveness and readiness probes
//! (`node/pkg/health/health.go`), answered from what the agent leaves in its run dir. Exit 0 when every check
//! asked for passes; otherwise the first failure on stdout, as Calico prints it, and exit 1.
//! - felix-live: the agent's state file names a running process; felix-ready: that, and its first sync is
//!   done (`nodename` is written after it).
//! - bird-live / bird6-live: BIRD answers `show status` on its control socket (one BIRD 2 serves both).
//! - bird-ready / bird6-ready: the BGP sessions of that family, Calico's rule: none is ready; within
//!   `--threshold-time` (30 s) of the node's start (`nodename`'s time) every session must be Established;
//!   after it, one is enough.
use crate::birdc::Control;
use crate::state::{self, AgentState};
use crate::status;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `calico-node health FLAGS...` (or the flags alone, as older manifests write them): the exit code, with a
/// failure on stdout and a usage error on stderr.
pub fn main(flags: &[String], env: &dyn Fn(&str) -> Option<String>) -> i32 {
    match parse(flags) {
        Ok(checks) => match run(&checks, &Paths::from_env(env)) {
            Ok(()) => 0,
            Err(e) => {
                println!("{e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}

/// Which checks, as the command line asked for them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checks {
    pub felix_live: bool,
    pub felix_ready: bool,
    pub bird_live: bool,
    pub bird6_live: bool,
    pub bird_ready: bool,
    pub bird6_ready: bool,
    pub threshold: Duration,
}

/// Parses `health`'s flags (one or two dashes, `--threshold-time=30s` or `--threshold-time 30s`).
pub fn parse(args: &[String]) -> Result<Checks, String> {
    let mut c = Checks { threshold: Duration::from_secs(30), ..Checks::default() };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let flag = arg.trim_start_matches('-');
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "felix-live" => c.felix_live = true,
            "felix-ready" | "felix" => c.felix_ready = true,
            "bird-live" => c.bird_live = true,
            "bird6-live" => c.bird6_live = true,
            "bird-ready" | "bird" => c.bird_ready = true,
            "bird6-ready" | "bird6" => c.bird6_ready = true,
            "threshold-time" => {
                let v = inline.or_else(|| it.next().cloned()).ok_or("--threshold-time needs a duration (30s)")?;
                c.threshold = duration(&v).ok_or_else(|| format!("--threshold-time: {v:?} is not a duration (30s, 1m, 500ms)"))?;
            }
            _ => return Err(format!("unknown flag {arg:?}")),
        }
    }
    if !(c.felix_live || c.felix_ready || c.bird_live || c.bird6_live || c.bird_ready || c.bird6_ready) {
        return Err("calico/node check error: must specify at least one of -bird-live, -bird6-live, -felix-live, -bird, -bird6, or -felix".into());
    }
    Ok(c)
}

/// A Go duration of one unit (`30s`, `1m`, `500ms`, `2h`), or plain seconds.
fn duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Where the checks look: the agent's run dir and lib dir, as the agent's own variables name them.
pub struct Paths {
    pub run_dir: PathBuf,
    pub lib_dir: PathBuf,
}

impl Paths {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Paths {
        let lib = env("CALICO_LIB_DIR").filter(|d| !d.is_empty()).unwrap_or_else(|| crate::settings::DEFAULT_LIB_DIR.to_string());
        Paths { run_dir: state::run_dir(env), lib_dir: PathBuf::from(lib) }
    }
}

/// Runs the checks; the first failure, in Calico's words.
pub fn run(c: &Checks, p: &Paths) -> Result<(), String> {
    let ctl = p.run_dir.join(state::BIRD_CTL);
    if c.felix_live || c.felix_ready {
        let agent = AgentState::read(&p.run_dir).filter(AgentState::agent_running);
        let what = if c.felix_live { "live" } else { "ready" };
        if agent.is_none() {
            return Err(format!("calico/node is not ready: Felix is not {what}: the agent is not running"));
        }
        if c.felix_ready && !p.lib_dir.join("nodename").exists() {
            return Err("calico/node is not ready: felix is not ready: the agent has not finished its first sync".into());
        }
    }
    for (asked, family) in [(c.bird_live, "bird"), (c.bird6_live, "bird6")] {
        if asked {
            live(&ctl).map_err(|e| format!("calico/node is not ready: {family} is not live: {e}"))?;
        }
    }
    for (asked, v6, name) in [(c.bird_ready, false, "BIRD"), (c.bird6_ready, true, "BIRD6")] {
        if asked {
            ready(&ctl, &p.lib_dir.join("nodename"), v6, c.threshold).map_err(|e| format!("calico/node is not ready: {name} is not ready: {e}"))?;
        }
    }
    Ok(())
}

fn live(ctl: &Path) -> Result<(), String> {
    let reply = Control::connect(ctl).and_then(|mut c| c.command("show status")).map_err(|e| e.to_string())?;
    let text = reply.text();
    if text.starts_with("BIRD") {
        Ok(())
    } else {
        Err(format!("bad response from bird: {text}"))
    }
}

/// Calico's `checkBIRDReady`.
fn ready(ctl: &Path, nodename: &Path, v6: bool, threshold: Duration) -> Result<(), String> {
    let started = std::fs::metadata(nodename).and_then(|m| m.modified()).map_err(|e| format!("failed to stat() nodename file: {e}"))?;
    let peers = status::query(ctl).map_err(|e| e.to_string())?;
    let (v4, v6s) = status::by_family(peers);
    let peers = if v6 { v6s } else { v4 };
    let down: Vec<String> = peers.iter().filter(|p| !p.info.starts_with("Established")).map(|p| p.address.to_string()).collect();
    let young = SystemTime::now().duration_since(started).unwrap_or_default() < threshold;
    if peers.is_empty() || (young && down.is_empty()) || (!young && down.len() < peers.len()) {
        Ok(())
    } else {
        Err(format!("BGP not established with {}", down.join(",")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_as_calicos_manifests_write_them() {
        let c = parse(&args(&["-felix-ready", "-bird-ready"])).unwrap();
        assert!(c.felix_ready && c.bird_ready && !c.felix_live);
        assert_eq!(c.threshold, Duration::from_secs(30));
        let c = parse(&args(&["--felix-live", "--bird-live", "--threshold-time=1m"])).unwrap();
        assert!(c.felix_live && c.bird_live);
        assert_eq!(c.threshold, Duration::from_secs(60));
        assert_eq!(parse(&args(&["--bird6-ready", "--threshold-time", "500ms"])).unwrap().threshold, Duration::from_millis(500));
        assert!(parse(&args(&[])).unwrap_err().contains("must specify at least one"));
        assert!(parse(&args(&["--bird-redy"])).unwrap_err().contains("bird-redy"));
        assert!(parse(&args(&["--bird-ready", "--threshold-time", "soon"])).unwrap_err().contains("threshold-time"));
    }

    #[test]
    fn nothing_running_is_not_live() {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths { run_dir: dir.path().into(), lib_dir: dir.path().into() };
        let felix = run(&parse(&args(&["-felix-live"])).unwrap(), &p).unwrap_err();
        assert_eq!(felix, "calico/node is not ready: Felix is not live: the agent is not running");
        let bird = run(&parse(&args(&["-bird-live"])).unwrap(), &p).unwrap_err();
        assert!(bird.starts_with("calico/node is not ready: bird is not live: "), "{bird}");
        let ready = run(&parse(&args(&["-bird-ready"])).unwrap(), &p).unwrap_err();
        assert!(ready.contains("failed to stat() nodename file"), "{ready}");
    }
}
