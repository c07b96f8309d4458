//! An allocation block exactly as Calico stores it (`AllocationBlock`): per-ordinal allocations pointing at
//! shared attributes, a FIFO of free ordinals (take from the head, freed go to the tail, so the longest-free
//! address is reused first), and sequence numbers that let a release refuse an address reused since.
use crate::resources::ippool::{ip_to_u128, u128_to_ip};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub cidr: IpNet,
    /// `host:<node>` for an affine block; `None` once the affinity was released.
    pub affinity: Option<String>,
    #[serde(rename = "affinity_claim_time", default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    #[serde(rename = "strictAffinity", default)]
    pub strict_affinity: bool,
    /// Index = ordinal; value = index into `attributes`, or null when free.
    pub allocations: Vec<Option<usize>>,
    pub unallocated: VecDeque<u32>,
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(rename = "sequenceNumber", default)]
    pub sequence_number: u64,
    #[serde(rename = "sequenceNumberForAllocation", default)]
    pub seq_for_allocation: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub handle_id: Option<String>,
    #[serde(default)]
    pub secondary: BTreeMap<String, String>,
}

/// Who an allocation belongs to: the handle and Calico's secondary attributes (node, pod, namespace, timestamp).
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    pub handle: String,
    pub attrs: BTreeMap<String, String>,
}

/// A block's `affinity` for `host`: `host:<node>`.
pub fn host_affinity(host: &str) -> String {
    format!("host:{host}")
}

/// The host an `affinity` names, if it names one (inverse of `host_affinity`).
pub fn affinity_host(affinity: &str) -> Option<&str> {
    affinity.strip_prefix("host:")
}

impl Block {
    /// A fresh block affine to `host`: every ordinal free, in order.
    pub fn new(cidr: IpNet, host: &str, now: &Now) -> Block {
        let size = 1usize << (cidr.max_prefix_len() - cidr.prefix_len());
        Block {
            cidr: cidr.trunc(),
            affinity: Some(host_affinity(host)),
            affinity_claim_time: Some(now.rfc3339.clone()),
            strict_affinity: false,
            allocations: vec![None; size],
            unallocated: (0..size as u32).collect(),
            attributes: Vec::new(),
            deleted: false,
            sequence_number: now.nanos,
            seq_for_allocation: BTreeMap::new(),
        }
    }

    pub fn size(&self) -> usize {
        self.allocations.len()
    }

    pub fn free(&self) -> usize {
        self.unallocated.len()
    }

    pub fn in_use(&self) -> usize {
        self.size() - self.free()
    }

    pub fn is_empty(&self) -> bool {
        self.unallocated.len() == self.allocations.len()
    }

    pub fn is_affine_to(&self, host: &str) -> bool {
        self.affine_host() == Some(host)
    }

    /// The host this block is affine to, if any.
    pub fn affine_host(&self) -> Option<&str> {
        self.affinity.as_deref().and_then(affinity_host)
    }

    pub fn ip(&self, ordinal: u32) -> IpAddr {
        u128_to_ip(ip_to_u128(self.cidr.network()) + u128::from(ordinal), self.cidr.addr().is_ipv6())
    }

    pub fn ordinal(&self, ip: IpAddr) -> Option<u32> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        u32::try_from(ip_to_u128(ip) - ip_to_u128(self.cidr.network())).ok()
    }

    /// Who holds `ordinal`, if anyone.
    pub fn owner_of(&self, ordinal: u32) -> Option<&Attribute> {
        let idx = (*self.allocations.get(ordinal as usize)?)?;
        self.attributes.get(idx)
    }

    pub fn allocation_seq(&self, ordinal: u32) -> Option<u64> {
        self.seq_for_allocation.get(&ordinal.to_string()).copied()
    }

    /// Takes the longest-free address. `None` when the block is full.
    pub fn assign_next(&mut self, owner: &Owner) -> Option<IpAddr> {
        let ordinal = self.unallocated.pop_front()?;
        self.mark(ordinal, owner);
        Some(self.ip(ordinal))
    }

    /// Takes exactly `ip`; `Err(Some(handle))` / `Err(None)` when it is taken / not in this block.
    pub fn assign_ip(&mut self, ip: IpAddr, owner: &Owner) -> Result<(), Option<String>> {
        let ordinal = self.ordinal(ip).ok_or(None)?;
        let pos = self.unallocated.iter().position(|o| *o == ordinal);
        let Some(pos) = pos else {
            return Err(Some(self.owner_of(ordinal).and_then(|a| a.handle_id.clone()).unwrap_or_default()));
        };
        self.unallocated.remove(pos);
        self.mark(ordinal, owner);
        Ok(())
    }

    fn mark(&mut self, ordinal: u32, owner: &Owner) {
        let attr = Attribute { handle_id: Some(owner.handle.clone()), secondary: owner.attrs.clone() };
        // Identical (handle, attributes) pairs share one entry, as in Calico.
        let idx = match self.attributes.iter().position(|a| *a == attr) {
            Some(i) => i,
            None => {
                self.attributes.push(attr);
                self.attributes.len() - 1
            }
        };
        if let Some(slot) = self.allocations.get_mut(ordinal as usize) {
            *slot = Some(idx);
        }
        self.seq_for_allocation.insert(ordinal.to_string(), self.sequence_number);
    }

    /// Frees every address held by `handle`; returns how many.
    pub fn release_handle(&mut self, handle: &str) -> usize {
        let ordinals: Vec<u32> = (0..self.size() as u32).filter(|o| self.owner_of(*o).and_then(|a| a.handle_id.as_deref()) == Some(handle)).collect();
        for o in &ordinals {
            self.free_ordinal(*o);
        }
        self.compact_attributes();
        ordinals.len()
    }

    /// Frees `ip` if allocated and, when `expected_seq` is given, only if it still is the allocation that was
    /// seen then. Returns the handle it belonged to.
    pub fn release_ip(&mut self, ip: IpAddr, expected_seq: Option<u64>) -> Result<Option<String>, ReleaseRefused> {
        let Some(ordinal) = self.ordinal(ip) else { return Ok(None) };
        let Some(attr) = self.owner_of(ordinal) else { return Ok(None) };
        if let Some(seq) = expected_seq {
            if self.allocation_seq(ordinal) != Some(seq) {
                return Err(ReleaseRefused { ip, expected: seq, found: self.allocation_seq(ordinal) });
            }
        }
        let handle = attr.handle_id.clone();
        self.free_ordinal(ordinal);
        self.compact_attributes();
        Ok(handle)
    }

    fn free_ordinal(&mut self, ordinal: u32) {
        if let Some(slot) = self.allocations.get_mut(ordinal as usize) {
            if slot.take().is_some() {
                self.unallocated.push_back(ordinal);
                self.seq_for_allocation.remove(&ordinal.to_string());
            }
        }
    }

    /// Drops attributes no allocation points at and renumbers the rest.
    fn compact_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for idx in self.allocations.iter().flatten() {
            if let Some(u) = used.get_mut(*idx) {
                *u = true;
            }
        }
        if used.iter().all(|u| *u) {
            return;
        }
        let mut remap = vec![0usize; used.len()];
        let mut kept = Vec::new();
        for (i, attr) in std::mem::take(&mut self.attributes).into_iter().enumerate() {
            if used[i] {
                remap[i] = kept.len();
                kept.push(attr);
            }
        }
        self.attributes = kept;
        for idx in self.allocations.iter_mut().flatten() {
            *idx = remap[*idx];
        }
    }

    /// Checks the invariants a reader relies on: right size, every ordinal either allocated or free exactly
    /// once, attribute indices in range.
    pub fn validate(&self) -> Result<(), String> {
        let host_bits = self.cidr.max_prefix_len() - self.cidr.prefix_len();
        if host_bits > 12 {
            return Err(format!("block {} is larger than any valid block size", self.cidr));
        }
        if self.cidr.addr() != self.cidr.network() {
            return Err(format!("block cidr {} has host bits set", self.cidr));
        }
        let expected = 1usize << host_bits;
        if self.allocations.len() != expected {
            return Err(format!("{} allocations for a block of {expected}", self.allocations.len()));
        }
        let mut free = vec![false; expected];
        for o in &self.unallocated {
            let Some(f) = free.get_mut(*o as usize) else { return Err(format!("unallocated ordinal {o} out of range")) };
            if std::mem::replace(f, true) {
                return Err(format!("ordinal {o} listed twice as unallocated"));
            }
        }
        for (o, a) in self.allocations.iter().enumerate() {
            match a {
                Some(idx) if free[o] => return Err(format!("ordinal {o} both allocated (attr {idx}) and free")),
                Some(idx) if *idx >= self.attributes.len() => return Err(format!("ordinal {o} points at missing attribute {idx}")),
                None if !free[o] => return Err(format!("ordinal {o} neither allocated nor free")),
                _ => {}
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRefused {
    pub ip: IpAddr,
    pub expected: u64,
    pub found: Option<u64>,
}

/// The current time in the forms Calico records: sequence-number nanoseconds, RFC 3339 for claim times and
/// Go's `time.String()` layout for allocation timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct Now {
    pub nanos: u64,
    pub rfc3339: String,
    pub go_string: String,
}

impl Now {
    pub fn system() -> Now {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Now::at(d.as_secs(), d.subsec_nanos())
    }

    pub fn at(secs: u64, nanos: u32) -> Now {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
        Now {
            nanos: secs.saturating_mul(1_000_000_000).saturating_add(u64::from(nanos)),
            rfc3339: format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
            go_string: format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}{} +0000 UTC", go_fraction(nanos)),
        }
    }
}

/// Go's `.999999999`: the fraction without trailing zeros, nothing at all for whole seconds.
fn go_fraction(nanos: u32) -> String {
    if nanos == 0 {
        return String::new();
    }
    format!(".{nanos:09}").trim_end_matches('0').to_string()
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(h: &str) -> Owner {
        Owner { handle: h.into(), attrs: [("node".to_string(), "n1".to_string())].into() }
    }

    #[test]
    fn fifo_reuse_and_attribute_sharing() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), "n1", &Now::at(0, 0));
        let ips: Vec<_> = (0..4).map(|_| b.assign_next(&owner("h1")).unwrap().to_string()).collect();
        assert_eq!(ips, ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(b.attributes.len(), 1);
        assert!(b.assign_next(&owner("h2")).is_none());
        b.release_ip("10.0.0.2".parse().unwrap(), None).unwrap();
        b.release_ip("10.0.0.0".parse().unwrap(), None).unwrap();
        // Longest-free first.
        assert_eq!(b.assign_next(&owner("h2")).unwrap().to_string(), "10.0.0.2");
        assert_eq!(b.assign_next(&owner("h2")).unwrap().to_string(), "10.0.0.0");
        assert_eq!(b.release_handle("h1"), 2);
        assert_eq!(b.attributes.len(), 1, "h1's attribute is dropped");
        b.validate().unwrap();
    }

    #[test]
    fn stale_release_is_refused() {
        let mut b = Block::new("10.0.0.0/31".parse().unwrap(), "n1", &Now::at(0, 0));
        let ip = b.assign_next(&owner("h1")).unwrap();
        let seq = b.allocation_seq(0).unwrap();
        b.sequence_number += 1;
        b.release_ip(ip, Some(seq)).unwrap();
        b.sequence_number += 1;
        b.assign_ip(ip, &owner("h2")).unwrap();
        let err = b.release_ip(ip, Some(seq)).unwrap_err();
        assert_eq!(err.expected, seq);
        assert_eq!(b.owner_of(0).unwrap().handle_id.as_deref(), Some("h2"));
    }

    #[test]
    fn calico_json_shape() {
        let mut b = Block::new("10.244.1.0/30".parse().unwrap(), "node-1", &Now::at(1_767_225_600, 0));
        b.assign_next(&owner("net.c1"));
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["cidr"], "10.244.1.0/30");
        assert_eq!(v["affinity"], "host:node-1");
        assert_eq!(v["affinity_claim_time"], "2026-01-01T00:00:00Z");
        assert_eq!(v["allocations"], serde_json::json!([0, null, null, null]));
        assert_eq!(v["unallocated"], serde_json::json!([1, 2, 3]));
        assert_eq!(v["attributes"][0]["handle_id"], "net.c1");
        assert_eq!(v["sequenceNumberForAllocation"]["0"], 1_767_225_600_000_000_000u64);
        assert_eq!(Now::at(1_767_225_600, 100_000_000).go_string, "2026-01-01 00:00:00.1 +0000 UTC");
        assert_eq!(Now::at(1_767_225_601, 0).go_string, "2026-01-01 00:00:01 +0000 UTC");
        assert_eq!(Now::at(951_825_600, 0).rfc3339, "2000-02-29T12:00:00Z");
    }

    #[test]
    fn validate_catches_double_booking() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), "n1", &Now::at(0, 0));
        b.assign_next(&owner("h"));
        b.unallocated.push_back(0);
        assert!(b.validate().is_err());
    }
}
