//! natOutgoing: pod traffic from a pool with `natOutgoing: true` to a destination outside every pool leaves
//! the node with the node's address as its source. Felix's rule (`felix/rules/nat.go`, `masq_mgr.go`): source
//! in the masquerading pools, destination in none of the pools (disabled ones included, LoadBalancer-only ones
//! not), then `masquerade fully-random`. Pod-to-pod traffic, also across pools, keeps its pod source.
//!
//! Why nftables: this kernel has nf_tables and Debian ships `nft`; a table of the agent's own (`ip calico-rs`,
//! `ip6 calico-rs`) is rebuilt in one atomic transaction and removed with one command, and touches no other
//! table. iptables-nft would program the same nf_tables backend through a compatibility layer (xtables
//! matches, chains shared with every other iptables user, no atomic replace of just our part); legacy
//! iptables is a second, older backend. The rules are applied with `nft -f -` from the calling thread, so in
//! that thread's network namespace.
use crate::error::Error;
use crate::plan::is_pod_pool;
use datastore::resources::ippool::Pool;
use std::io::Write;
use std::process::{Command, Stdio};

/// The agent's nftables table, in both the `ip` and the `ip6` family.
pub const TABLE: &str = "calico-rs";

/// The nft script that makes the agent's tables exactly what `pools` call for, in one transaction: each
/// family's table is created if missing (so the delete cannot fail), deleted, and defined anew; a family
/// without masquerading pools ends with no table at all.
pub fn render(pools: &[Pool]) -> String {
    let mut out = String::new();
    for (family, v6) in [("ip", false), ("ip6", true)] {
        out += &format!("table {family} {TABLE}\ndelete table {family} {TABLE}\n");
        let of_family = |p: &&Pool| p.cidr.addr().is_ipv6() == v6;
        let all: Vec<String> = pools.iter().filter(of_family).filter(|p| is_pod_pool(p)).map(|p| p.cidr.to_string()).collect();
        let masq: Vec<String> = pools.iter().filter(of_family).filter(|p| p.nat_outgoing).map(|p| p.cidr.to_string()).collect();
        if masq.is_empty() {
            continue;
        }
        let addr = if v6 { "ipv6_addr" } else { "ipv4_addr" };
        out += &format!("table {family} {TABLE} {{\n");
        out += &set("pools", addr, &all);
        out += &set("masq-pools", addr, &masq);
        out += "\tchain nat-outgoing {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n";
        let daddr = if all.is_empty() { String::new() } else { format!(" {family} daddr != @pools") };
        out += &format!("\t\t{family} saddr @masq-pools{daddr} counter masquerade fully-random\n\t}}\n}}\n");
    }
    out
}

fn set(name: &str, addr: &str, cidrs: &[String]) -> String {
    let elements = if cidrs.is_empty() { String::new() } else { format!("\t\telements = {{ {} }}\n", cidrs.join(", ")) };
    format!("\tset {name} {{\n\t\ttype {addr}\n\t\tflags interval\n\t\tauto-merge\n{elements}\t}}\n")
}

/// The script that removes the agent's tables (and nothing else); fine when they are not there.
pub fn render_removal() -> String {
    ["ip", "ip6"].iter().map(|f| format!("table {f} {TABLE}\ndelete table {f} {TABLE}\n")).collect()
}

/// Makes the agent's tables what `pools` call for, atomically (`nft -f -` of `render`).
pub fn apply(pools: &[Pool]) -> Result<(), Error> {
    run_nft(&render(pools))
}

/// Removes the agent's tables: on shutdown, or when natOutgoing is turned off everywhere.
pub fn remove() -> Result<(), Error> {
    run_nft(&render_removal())
}

/// Runs `nft -f -` with `script` on stdin; nft applies a file as one transaction, all of it or nothing.
pub fn run_nft(script: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Nft(format!("cannot run nft: {e}")))?;
    // A script this size fits the pipe; should nft die early, its status and stderr say why.
    let _ = child.stdin.take().map(|mut stdin| stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output().map_err(|e| Error::Nft(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        tracing::debug!(bytes = script.len(), "nft ruleset applied");
        Ok(())
    } else {
        Err(Error::Nft(format!("{} ({}); script:\n{script}", String::from_utf8_lossy(&out.stderr).trim(), out.status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datastore::resources::ippool::{AllowedUse, PoolSpec};

    fn pool(name: &str, cidr: &str, nat: bool, disabled: bool) -> Pool {
        Pool::from_spec(name, &PoolSpec { cidr: cidr.into(), nat_outgoing: nat, disabled, ..Default::default() }).unwrap()
    }

    #[test]
    fn masquerades_from_natting_pools_to_outside_every_pool() {
        let pools = [pool("a", "10.244.0.0/16", true, false), pool("b", "10.245.0.0/16", false, false), pool("c", "10.246.0.0/16", false, true)];
        let want = "table ip calico-rs\n\
                    delete table ip calico-rs\n\
                    table ip calico-rs {\n\
                    \tset pools {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n\
                    \t\telements = { 10.244.0.0/16, 10.245.0.0/16, 10.246.0.0/16 }\n\t}\n\
                    \tset masq-pools {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n\
                    \t\telements = { 10.244.0.0/16 }\n\t}\n\
                    \tchain nat-outgoing {\n\
                    \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
                    \t\tip saddr @masq-pools ip daddr != @pools counter masquerade fully-random\n\
                    \t}\n\
                    }\n\
                    table ip6 calico-rs\n\
                    delete table ip6 calico-rs\n";
        assert_eq!(render(&pools), want);
    }

    #[test]
    fn no_natting_pool_means_no_table() {
        let pools = [pool("a", "10.244.0.0/16", false, false), pool("v6", "fd00:244::/48", false, false)];
        assert_eq!(render(&pools), render_removal());
        assert_eq!(render(&[]), render_removal());
    }

    #[test]
    fn each_family_gets_its_own_table() {
        let pools = [pool("v4", "10.244.0.0/16", false, false), pool("v6", "fd00:244::/48", true, false)];
        let s = render(&pools);
        assert!(s.contains("table ip6 calico-rs {") && s.contains("ip6 saddr @masq-pools ip6 daddr != @pools"), "{s}");
        assert!(s.contains("type ipv6_addr") && s.contains("elements = { fd00:244::/48 }"), "{s}");
        assert!(!s.contains("table ip calico-rs {"), "no IPv4 pool masquerades: {s}");
    }

    #[test]
    fn load_balancer_pools_are_outside_the_pools() {
        let mut lb = pool("lb", "192.0.2.0/24", false, false);
        lb.allowed_uses = vec![AllowedUse::LoadBalancer];
        let s = render(&[pool("a", "10.244.0.0/16", true, false), lb]);
        assert!(s.contains("set pools {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n\t\telements = { 10.244.0.0/16 }\n"), "{s}");
    }
}
