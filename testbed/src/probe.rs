//! What tests look at traffic with: an nftables table of the test's own (`inet crs-test`, never an agent's)
//! with counters, read back by comment; pings with DF set and a given size; a ping retried until it answers.
use crate::host::Host;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The test's own nft table.
pub const TABLE: &str = "crs-test";

/// Loads `ruleset` with nft on `host`; panics with nft's message when it refuses.
pub fn nft(host: &Host, ruleset: &str) {
    let mut c = host.command("nft");
    c.args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn nft");
    child.stdin.take().expect("stdin").write_all(ruleset.as_bytes()).expect("write ruleset");
    let out = child.wait_with_output().expect("nft");
    assert!(out.status.success(), "nft on {}: {}\n{ruleset}", host.name, String::from_utf8_lossy(&out.stderr));
}

/// The packet count of the counter rule commented `name` in table `inet crs-test` on `host`.
pub fn counter(host: &Host, name: &str) -> u64 {
    let out = host.exec("nft", &["list", "table", "inet", TABLE]);
    let line = out.lines().find(|l| l.contains(&format!("comment \"{name}\""))).unwrap_or_else(|| panic!("no counter {name} in:\n{out}"));
    let after = line.split("packets ").nth(1).unwrap_or_else(|| panic!("no packets in {line}"));
    after.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad count in {line}"))
}

/// `ping -c <n> -M do -s <size> -W 1 <ip>` in netns `ns`; true if every reply came.
pub fn ping_df(ns: &str, ip: &str, size: usize, count: usize) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", &count.to_string(), "-M", "do", "-s", &size.to_string(), "-W", "1", "-i", "0.2", ip])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Pings until one reply comes (the first packets may meet a neighbour still resolving); panics after `timeout`.
pub fn wait_ping(ns: &str, ip: &str, timeout: Duration) {
    crate::wait_for(&format!("ping {ip} from {ns}"), timeout, || {
        if crate::ping(ns, ip, Duration::from_secs(1)) {
            Ok(())
        } else {
            Err("no reply".into())
        }
    });
}
