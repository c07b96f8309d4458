//! The other stored records: handles, affinities and the IPAM config in Calico's format, plus calico-rs's three
//! indexes (pool names, a host's blocks, a pool's claimed blocks) and typed load/encode helpers.
use crate::error::ModelError;
use crate::store::{Json, Key, Revision, Store};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Reads and decodes one record; a record that does not decode is reported as corrupt, naming its key.
pub fn load<T: DeserializeOwned>(store: &dyn Store, key: &Key) -> Result<Option<(T, Revision)>, ModelError> {
    match store.get(key)? {
        None => Ok(None),
        Some(r) => decode(key, &r.value).map(|v| Some((v, r.rev))),
    }
}

/// Decodes the record at `key`; one that does not decode is corrupt, and the error names its key.
pub fn decode<T: DeserializeOwned>(key: &Key, value: &Json) -> Result<T, ModelError> {
    value.decode().map_err(|e| ModelError::corrupt(key, e))
}

pub fn encode<T: Serialize>(v: &T) -> Result<Json, ModelError> {
    Json::encode(v).map_err(|e| ModelError::Encode(e.to_string()))
}

/// `/calico/ipam/v2/handle/<id>`: how many addresses the handle holds in each block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Handle {
    pub block: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
    /// calico-rs: the key of the attachment record that lists this handle's addresses, so whatever releases
    /// them (DEL, GC, an operator) corrects the record in the same commit. Calico ignores the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// `/calico/ipam/v2/host/<host>/ipv4/block/<cidr>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affinity {
    /// "pending" while a claim is in flight, "confirmed" once the block exists (empty = confirmed, old data).
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub deleted: bool,
}

impl Affinity {
    pub fn pending() -> Affinity {
        Affinity { state: "pending".into(), deleted: false }
    }
    pub fn confirmed() -> Affinity {
        Affinity { state: "confirmed".into(), deleted: false }
    }
}

/// `/calico/ipam/v2/config` (Calico's v2 field names; the v3 camelCase names are accepted on read).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IpamConfig {
    #[serde(rename = "strict_affinity", alias = "strictAffinity", default)]
    pub strict_affinity: bool,
    #[serde(rename = "auto_allocate_blocks", alias = "autoAllocateBlocks", default = "yes")]
    pub auto_allocate_blocks: bool,
    #[serde(rename = "maxBlocksPerHost", default)]
    pub max_blocks_per_host: u32,
}

fn yes() -> bool {
    true
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig { strict_affinity: false, auto_allocate_blocks: true, max_blocks_per_host: 0 }
    }
}

impl IpamConfig {
    /// Calico's cross-field rules (enforced when the config is set, as `SetIPAMConfig` does).
    pub fn validate(&self) -> Result<(), ModelError> {
        if !self.strict_affinity && !self.auto_allocate_blocks {
            return Err(ModelError::InvalidIpamConfig(
                "autoAllocateBlocks=false needs strictAffinity=true (otherwise no address could ever be found)".into(),
            ));
        }
        if self.max_blocks_per_host > 0 && !self.strict_affinity {
            return Err(ModelError::InvalidIpamConfig("maxBlocksPerHost > 0 needs strictAffinity=true".into()));
        }
        if self.max_blocks_per_host > 1_000_000 {
            return Err(ModelError::InvalidIpamConfig("maxBlocksPerHost must be at most 1000000".into()));
        }
        Ok(())
    }

    /// The effective block limit: Calico treats 0 as 20.
    pub fn block_limit(&self) -> usize {
        if self.max_blocks_per_host == 0 {
            20
        } else {
            self.max_blocks_per_host as usize
        }
    }
}

/// Index `/calico-rs/ipam/v1/pools`: names of every pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolNames {
    pub names: Vec<String>,
}

/// Index `/calico-rs/ipam/v1/host/<host>`: the host's affine blocks in claim order. Written before the
/// affinity (as an intent), so a claim interrupted by a crash is found and finished by the next ADD.
/// `full` is a hint kept in the same commits that fill or free a block, so a warm ADD reads one block
/// however many the host owns; a wrong hint costs a slower ADD (the full rescan), never a wrong answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostBlocks {
    pub blocks: Vec<HostBlock>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostBlock {
    pub cidr: IpNet,
    pub confirmed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

impl HostBlocks {
    pub fn get(&self, cidr: &IpNet) -> Option<&HostBlock> {
        self.blocks.iter().find(|b| b.cidr == *cidr)
    }

    pub fn set(&mut self, cidr: IpNet, confirmed: bool) {
        match self.blocks.iter_mut().find(|b| b.cidr == cidr) {
            Some(b) => b.confirmed = confirmed,
            None => self.blocks.push(HostBlock { cidr, confirmed, full: false }),
        }
    }

    /// Sets the `full` hint of `cidr`; true if that changed anything.
    pub fn set_full(&mut self, cidr: &IpNet, full: bool) -> bool {
        match self.blocks.iter_mut().find(|b| b.cidr == *cidr) {
            Some(b) if b.full != full => {
                b.full = full;
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, cidr: &IpNet) {
        self.blocks.retain(|b| b.cidr != *cidr);
    }
}

/// The host index as an ADD reads it: entries borrowed from the record's text, CIDRs left as text. A host may
/// own a thousand blocks and an ADD wants the first one not marked full: this costs a scan of the text, where
/// `HostBlocks` would build and parse every entry.
#[derive(Debug, Deserialize)]
pub struct HostBlocksView<'a> {
    #[serde(borrow)]
    pub blocks: Vec<HostBlockView<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct HostBlockView<'a> {
    #[serde(borrow)]
    pub cidr: Cow<'a, str>,
    pub confirmed: bool,
    #[serde(default)]
    pub full: bool,
}

/// Index `/calico-rs/ipam/v1/poolblocks/<family>/<pool cidr>`: which block indices of the pool have been
/// claimed. The block records stay authoritative: creating a block that exists fails, and the claim then
/// marks the index and moves on, so a stale index costs a retry, never a duplicate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolBlocks {
    #[serde(rename = "blockSize")]
    pub block_size: u8,
    pub claimed: ClaimedSet,
}

/// Sorted, disjoint, non-adjacent inclusive ranges of block indices, stored as "a-b" strings because IPv6
/// pools have more than 2^64 blocks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct ClaimedSet {
    ranges: Vec<(u128, u128)>,
}

impl TryFrom<Vec<String>> for ClaimedSet {
    type Error = String;
    fn try_from(v: Vec<String>) -> Result<Self, String> {
        let mut set = ClaimedSet::default();
        for s in v {
            let (a, b) = s.split_once('-').unwrap_or((&s, &s));
            let a: u128 = a.parse().map_err(|_| format!("bad range {s:?}"))?;
            let b: u128 = b.parse().map_err(|_| format!("bad range {s:?}"))?;
            if a > b || set.ranges.last().is_some_and(|l| l.1.saturating_add(1) >= a) {
                return Err(format!("range {s:?} out of order"));
            }
            set.ranges.push((a, b));
        }
        Ok(set)
    }
}

impl From<ClaimedSet> for Vec<String> {
    fn from(s: ClaimedSet) -> Vec<String> {
        s.ranges.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect()
    }
}

impl ClaimedSet {
    /// Position of the range containing `i`, or where a range starting at `i` would go.
    fn find(&self, i: u128) -> Result<usize, usize> {
        self.ranges.binary_search_by(|(a, b)| {
            if *b < i {
                std::cmp::Ordering::Less
            } else if *a > i {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
    }

    pub fn contains(&self, i: u128) -> bool {
        self.find(i).is_ok()
    }

    pub fn count(&self) -> u128 {
        self.ranges.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn insert(&mut self, i: u128) {
        let Err(pos) = self.find(i) else { return };
        let joins_prev = pos > 0 && self.ranges[pos - 1].1.saturating_add(1) == i;
        let joins_next = pos < self.ranges.len() && Some(self.ranges[pos].0) == i.checked_add(1);
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[pos - 1].1 = self.ranges[pos].1;
                self.ranges.remove(pos);
            }
            (true, false) => self.ranges[pos - 1].1 = i,
            (false, true) => self.ranges[pos].0 = i,
            (false, false) => self.ranges.insert(pos, (i, i)),
        }
    }

    pub fn remove(&mut self, i: u128) {
        let Ok(pos) = self.find(i) else { return };
        let (a, b) = self.ranges[pos];
        match (a == i, b == i) {
            (true, true) => {
                self.ranges.remove(pos);
            }
            (true, false) => self.ranges[pos].0 = i + 1,
            (false, true) => self.ranges[pos].1 = i - 1,
            (false, false) => {
                self.ranges[pos].1 = i - 1;
                self.ranges.insert(pos + 1, (i + 1, b));
            }
        }
    }

    /// First unclaimed index at or after `start`, wrapping to the beginning; O(log n).
    pub fn first_free(&self, start: u128, count: u128) -> Option<u128> {
        let at_or_after = |x: u128| match self.find(x) {
            Ok(pos) => self.ranges[pos].1.saturating_add(1),
            Err(_) => x,
        };
        let start = if count == 0 { return None } else { start % count };
        let c = at_or_after(start);
        if c < count {
            return Some(c);
        }
        let c = at_or_after(0);
        (c < start).then_some(c)
    }

    /// Every claimed index, ascending (for borrowing and reports).
    pub fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.ranges.iter().flat_map(|(a, b)| *a..=*b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_set_finds_free_indices() {
        let mut s = ClaimedSet::default();
        assert_eq!(s.first_free(3, 8), Some(3));
        for i in [3, 4, 6, 5] {
            s.insert(i);
        }
        assert_eq!(s.ranges, vec![(3, 6)]);
        assert_eq!(s.first_free(3, 8), Some(7));
        s.insert(7);
        assert_eq!(s.first_free(3, 8), Some(0), "wraps");
        for i in 0..3 {
            s.insert(i);
        }
        assert_eq!(s.first_free(3, 8), None);
        s.remove(5);
        assert_eq!(s.first_free(0, 8), Some(5));
        assert_eq!(s.count(), 7);
        let v: Vec<String> = s.clone().into();
        assert_eq!(v, ["0-4", "6-7"]);
        assert_eq!(ClaimedSet::try_from(v).unwrap(), s);
        assert!(ClaimedSet::try_from(vec!["5-3".to_string()]).is_err());
        assert!(ClaimedSet::try_from(vec!["1-3".to_string(), "2".to_string()]).is_err());
    }

    #[test]
    fn host_view_reads_what_the_index_writes() {
        let mut hb = HostBlocks::default();
        hb.set("10.0.0.0/26".parse().unwrap(), true);
        hb.set("10.0.0.64/26".parse().unwrap(), false);
        hb.set_full(&"10.0.0.0/26".parse().unwrap(), true);
        let text = encode(&hb).unwrap();
        let view: HostBlocksView = text.decode().unwrap();
        let got: Vec<(&str, bool, bool)> = view.blocks.iter().map(|e| (e.cidr.as_ref(), e.confirmed, e.full)).collect();
        assert_eq!(got, [("10.0.0.0/26", true, true), ("10.0.0.64/26", false, false)]);
    }

    #[test]
    fn ipam_config_rules() {
        assert!(IpamConfig::default().validate().is_ok());
        assert_eq!(IpamConfig::default().block_limit(), 20);
        let c = |s, a, m| IpamConfig { strict_affinity: s, auto_allocate_blocks: a, max_blocks_per_host: m };
        assert!(c(false, false, 0).validate().is_err());
        assert!(c(false, true, 5).validate().is_err());
        assert!(c(true, true, 5).validate().is_ok());
        let v: IpamConfig = serde_json::from_str(r#"{"strictAffinity": true}"#).unwrap();
        assert!(v.strict_affinity && v.auto_allocate_blocks);
    }
}
