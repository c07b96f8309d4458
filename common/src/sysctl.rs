//! Writing and reading `/proc/sys/net` entries; they belong to the namespace of the calling thread.
use std::io;

fn path(key: &str) -> String {
    format!("/proc/sys/{key}")
}

/// Writes `value` to a sysctl given as a path below /proc/sys (`net/ipv4/conf/cali1/proxy_arp`).
pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(key), value).map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}={value}: {e}")))
}

pub fn read(key: &str) -> io::Result<String> {
    std::fs::read_to_string(path(key)).map(|s| s.trim().to_string())
}
