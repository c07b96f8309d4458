//! A continuous ping from a pod (iputils `ping -i <interval>` in the pod's netns) running in the background
//! while a test changes the network under it; `finish` interrupts it and counts what came back, and which
//! sequence numbers did not. Its output goes to a file (a pipe would fill up and stall it); the guard kills it.
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Pinger {
    pub from: String,
    pub to: String,
    pub interval: Duration,
    pub started: Instant,
    child: Option<Child>,
    out: PathBuf,
    _dir: tempfile::TempDir,
    cleanup: usize,
}

/// What a pinger saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingCount {
    /// From ping's summary.
    pub sent: u64,
    pub received: u64,
    /// Sequence numbers without a reply below the last one answered (those after it may have been in flight
    /// when ping was interrupted: see `tail`).
    pub lost: Vec<u64>,
    /// Requests sent after the last reply: in flight at the end, not counted as lost.
    pub tail: u64,
    pub elapsed: Duration,
}

impl Pinger {
    /// Starts `ping -n -i <interval> <to>` in netns `from` (a pod); `to` decides the family.
    pub fn start(from: &str, to: &str, interval: Duration) -> Pinger {
        let dir = tempfile::Builder::new().prefix("crs-ping-").tempdir().expect("ping tempdir");
        let out = dir.path().join("ping.out");
        let file = std::fs::File::create(&out).expect("ping output file");
        let err = file.try_clone().expect("dup ping output");
        let ns = std::fs::File::open(format!("{}/{from}", crate::host::NETNS_DIR)).unwrap_or_else(|e| panic!("netns {from}: {e}"));
        let mut c = Command::new("ping");
        c.args([if to.contains(':') { "-6" } else { "-4" }, "-n", "-i", &format!("{:.3}", interval.as_secs_f64()), to]);
        c.stdin(Stdio::null()).stdout(file).stderr(err);
        // SAFETY: setns on a descriptor opened before the fork, then one prctl; nothing else between fork and exec.
        unsafe {
            c.pre_exec(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                crate::host::pdeathsig()
            });
        }
        let child = c.spawn().expect("spawn ping");
        let pid = child.id() as i32;
        let cleanup = crate::arm(Box::new(move || crate::host::kill_and_reap(pid)));
        Pinger { from: from.into(), to: to.into(), interval, started: Instant::now(), child: Some(child), out, _dir: dir, cleanup }
    }

    /// Replies so far (lines with an `icmp_seq`), without stopping it.
    pub fn replies(&self) -> usize {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().filter(|l| l.contains("bytes from")).count()
    }

    /// Waits until `more` replies beyond those seen now have come (traffic flows).
    pub fn wait_replies(&self, more: usize, timeout: Duration) {
        let now = self.replies();
        crate::wait_for(&format!("{more} more ping replies from {} to {}", self.from, self.to), timeout, || {
            let n = self.replies();
            if n >= now + more {
                Ok(())
            } else {
                Err(format!("{} new replies", n - now))
            }
        });
    }

    /// SIGINT (ping prints its summary), then the counts.
    pub fn finish(mut self) -> PingCount {
        let elapsed = self.started.elapsed();
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGINT);
            let _ = c.wait();
            crate::disarm(self.cleanup);
        }
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut count = parse(&text).unwrap_or_else(|| panic!("no ping summary from {} to {}:\n{text}", self.from, self.to));
        count.elapsed = elapsed;
        count
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            crate::disarm(self.cleanup);
        }
    }
}

/// iputils' output: `64 bytes from X: icmp_seq=N ttl=.. time=..` per reply, then
/// `S packets transmitted, R received, ...`.
fn parse(text: &str) -> Option<PingCount> {
    let summary = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut words = summary.split_whitespace();
    let sent: u64 = words.next()?.parse().ok()?;
    let received: u64 = summary.split(", ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    let mut seen = std::collections::BTreeSet::new();
    for l in text.lines().filter(|l| l.contains("bytes from")) {
        if let Some(n) = l.split_whitespace().find_map(|w| w.strip_prefix("icmp_seq=")).and_then(|n| n.parse::<u64>().ok()) {
            seen.insert(n);
        }
    }
    let last = seen.last().copied().unwrap_or(0);
    let lost = (1..last).filter(|n| !seen.contains(n)).collect();
    Some(PingCount { sent, received, lost, tail: sent.saturating_sub(last), elapsed: Duration::ZERO })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iputils_summary_and_gaps() {
        let text = "PING 10.244.0.1 (10.244.0.1) 56(84) bytes of data.\n\
                    64 bytes from 10.244.0.1: icmp_seq=1 ttl=62 time=0.101 ms\n\
                    64 bytes from 10.244.0.1: icmp_seq=3 ttl=62 time=0.090 ms\n\
                    \n--- 10.244.0.1 ping statistics ---\n\
                    4 packets transmitted, 2 received, 50% packet loss, time 31ms\n\
                    rtt min/avg/max/mdev = 0.090/0.095/0.101/0.005 ms\n";
        let c = parse(text).unwrap();
        assert_eq!((c.sent, c.received, c.lost, c.tail), (4, 2, vec![2], 1), "seq 4 was in flight");
    }
}
