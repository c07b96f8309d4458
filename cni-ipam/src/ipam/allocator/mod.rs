//! Calico's allocation algorithm over a locked store session: affine blocks first, then claim a new block
//! (pending -> confirmed, found through the pool's claimed-block index instead of listing every block),
//! then borrow from other hosts' blocks unless strict affinity. Every change is one atomic commit (handle +
//! block together), so there is nothing to roll back when a process dies half way.
//!
//! Reads go through a per-`Ipam` cache that `prefetch` fills in one `get_many` (one etcd round trip) and every
//! successful commit keeps current; a failed commit empties it, so a retry re-reads what changed. Stale reads
//! are harmless: every write is compare-and-swap on the revision that was read.
//!
//! One `impl Ipam` split by operation: `cache` (reads), `assign` (pool selection and assignment), `claim`
//! (block claims and the indexes they keep), `release` (releases and GC), `host` (a node's removal).
use crate::error::IpamError;
use datastore::ipam::block::{Block, Now};
use datastore::ipam::records::{encode, IpamConfig};
use datastore::resources::ippool::AllowedUse;
use datastore::resources::workloadendpoint::WorkloadEndpoint;
use datastore::store::{Key, Op, Record, Revision, Store};
use ipnet::IpNet;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

mod assign;
mod cache;
pub use cache::node_key;
mod claim;
mod host;
pub use host::HostRemoval;
mod release;

/// Upper bound on claim attempts per pool in one request; each failed attempt marks one stale index entry,
/// so this only matters when the pool index was lost.
const CLAIM_TRIES: usize = 1024;

/// The node an allocation is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// How a request names a pool (`ipv4_pools` entries are names or CIDRs).
#[derive(Debug, Clone, PartialEq)]
pub enum PoolRef {
    Name(String),
    Cidr(IpNet),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assignment {
    pub ip: IpAddr,
    pub block: IpNet,
}

impl Assignment {
    /// The address with the block's mask, as calico-ipam reports it (`10.244.1.5/26`).
    pub fn address(&self) -> IpNet {
        IpNet::new(self.ip, self.block.prefix_len()).unwrap_or(self.block)
    }
}

/// What a claim ended with.
enum Claimed {
    /// The block exists and is this node's (maybe full, when it was claimed earlier).
    Block(Block, Revision),
    /// Claimed together with the first address.
    Assigned(Assignment),
    /// Another node has it.
    Taken,
}

pub fn family(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// Create-or-update, depending on whether the record was there.
fn put<T: Serialize>(key: Key, rev: Option<Revision>, value: &T) -> Result<Op, IpamError> {
    let value = encode(value)?;
    Ok(match rev {
        Some(rev) => Op::Update { key, value, rev },
        None => Op::Create { key, value },
    })
}

pub struct Ipam<'s> {
    store: &'s mut dyn Store,
    cache: RefCell<HashMap<Key, Option<Record>>>,
    pub config: IpamConfig,
    pub now: Now,
    /// The attachment record to write in the commit of the next address assigned (then cleared): an ADD
    /// sets it before its last assignment, so the record costs no commit of its own.
    pub carry: Option<EndpointWrite>,
    /// The attachment record the addresses assigned now belong to: handles point at it.
    pub attachment: Option<Key>,
    /// What the addresses are for: only pools whose `allowedUses` include it are used (pods: Workload).
    pub purpose: AllowedUse,
}

/// An attachment record waiting for its last address.
#[derive(Debug, Clone)]
pub struct EndpointWrite {
    pub key: Key,
    /// The revision it replaces (None: create).
    pub rev: Option<Revision>,
    pub record: WorkloadEndpoint,
}

impl EndpointWrite {
    fn op_with(&self, a: &Assignment) -> Result<Op, IpamError> {
        let mut record = self.record.clone();
        record.spec.ip_networks.push(IpNet::from(a.ip));
        put(self.key.clone(), self.rev, &record)
    }
}
impl<'s> Ipam<'s> {
    /// Reads the IPAM config (Calico's defaults when absent).
    pub fn new(store: &'s mut dyn Store) -> Result<Ipam<'s>, IpamError> {
        Ipam::open(store, &[])
    }

    /// Reads the IPAM config together with `keys` (one round trip), keeping them for the allocator's reads.
    pub fn open(store: &'s mut dyn Store, keys: &[Key]) -> Result<Ipam<'s>, IpamError> {
        let mut ipam = Ipam {
            store,
            cache: RefCell::new(HashMap::new()),
            config: IpamConfig::default(),
            now: Now::system(),
            carry: None,
            attachment: None,
            purpose: AllowedUse::Workload,
        };
        let mut first = vec![Key::IpamConfig];
        first.extend(keys.iter().cloned());
        ipam.prefetch(&first)?;
        ipam.config = ipam.get::<IpamConfig>(&Key::IpamConfig)?.map(|c| c.0).unwrap_or_default();
        Ok(ipam)
    }

    pub fn store(&mut self) -> &mut dyn Store {
        self.cache.borrow_mut().clear();
        &mut *self.store
    }

    pub(super) fn commit(&mut self, ops: &[Op]) -> Result<Vec<Revision>, IpamError> {
        match self.store.commit(ops) {
            Ok(revs) => {
                let mut cache = self.cache.borrow_mut();
                for (op, rev) in ops.iter().zip(&revs) {
                    let rec = match op {
                        Op::Create { value, .. } | Op::Update { value, .. } => Some(Record { value: value.clone(), rev: *rev }),
                        Op::Delete { .. } => None,
                    };
                    cache.insert(op.key().clone(), rec);
                }
                Ok(revs)
            }
            Err(e) => {
                self.cache.borrow_mut().clear();
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests;
