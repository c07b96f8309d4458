//! When a route reached a node's kernel: `ip monitor route` in the node's netns, each line stamped as it is
//! read (iproute2 flushes after every message), kept for the whole run. Polling `ip route` would add its own
//! exec time and period to every figure; the monitor adds a pipe read.
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct RouteMonitor {
    child: Child,
    events: Arc<Mutex<Vec<(Instant, String)>>>,
}

/// A throw-away route in a table BIRD does not scan, to see the monitor subscribed before the run starts.
const PROBE: &str = "192.0.2.1";
const PROBE_TABLE: &str = "250";

impl RouteMonitor {
    /// Starts the monitor in `netns` and returns once it is seen reporting.
    pub fn start(netns: &str) -> RouteMonitor {
        let mut c = Command::new("ip");
        c.args(["-n", netns, "monitor", "route"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        // SAFETY: one prctl between fork and exec: the monitor dies with this thread (also on an aborting panic).
        unsafe {
            c.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from));
        }
        let mut child = c.spawn().expect("spawn ip monitor route");
        let out = child.stdout.take().expect("monitor stdout");
        let events: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                sink.lock().unwrap_or_else(|e| e.into_inner()).push((at, line));
            }
        });
        let m = RouteMonitor { child, events };
        // The probe goes in and out until the monitor reports it: it may not have subscribed yet.
        let since = Instant::now();
        let seen = (0..50).any(|_| {
            testbed::ip(&["-n", netns, "route", "add", "blackhole", PROBE, "table", PROBE_TABLE]);
            let seen = m.wait_line(since, Duration::from_millis(100), |l| l.starts_with(&format!("blackhole {PROBE} "))).is_some();
            testbed::ip(&["-n", netns, "route", "del", "blackhole", PROBE, "table", PROBE_TABLE]);
            seen
        });
        assert!(seen, "ip monitor in {netns} reports nothing");
        m
    }

    /// The first line at or after `since` that `pred` accepts, waiting up to `timeout`.
    fn wait_line(&self, since: Instant, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.first(since, &pred) {
                return Some(at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn first(&self, since: Instant, pred: impl Fn(&str) -> bool) -> Option<Instant> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.iter().find(|(at, l)| *at >= since && pred(l)).map(|(at, _)| *at)
    }

    /// When a route to exactly `prefix` through a next hop (not a blackhole, not a deletion) first appeared
    /// at or after `since`.
    pub fn arrived(&self, prefix: &str, since: Instant) -> Option<Instant> {
        self.first(since, |l| is_remote(l, prefix))
    }

    /// `arrived`, waiting up to `timeout` for it.
    pub fn wait_arrived(&self, prefix: &str, since: Instant, timeout: Duration) -> Option<Instant> {
        self.wait_line(since, timeout, |l| is_remote(l, prefix))
    }
}

/// `10.244.0.2/31 via 10.250.0.1 dev eth0 proto bird metric 32` (or an ECMP head line), not
/// `Deleted ...` nor `blackhole ...`.
fn is_remote(line: &str, prefix: &str) -> bool {
    line.strip_prefix(prefix).is_some_and(|rest| rest.starts_with(' ')) && !line.contains("unreachable")
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn remote_routes_only() {
        let p = "10.244.0.2/31";
        assert!(super::is_remote("10.244.0.2/31 via 10.250.0.1 dev eth0 proto bird metric 32 ", p));
        assert!(!super::is_remote("Deleted 10.244.0.2/31 via 10.250.0.1 dev eth0 proto bird metric 32 ", p));
        assert!(!super::is_remote("blackhole 10.244.0.2/31 proto bird metric 32 ", p));
        assert!(!super::is_remote("10.244.0.2/310 via x", p));
    }
}
