//! Calico's allocation algorithm over a locked store session: affine blocks first, then claim a new block
//! (pending -> confirmed, found through the pool's claimed-block index instead of listing every block),
//! then borrow from other hosts' blocks unless strict affinity. Every change is one atomic commit (handle +
//! block together), so there is nothing to roll back when a process dies half way.
//!
//! Reads go through a per-`Ipam` cache that `prefetch` fills in one `get_many` (one etcd round trip) and every
//! successful commit keeps current; a failed commit empties it, so a retry re-reads what changed. Stale reads
//! are harmless: every write is compare-and-swap on the revision that was read.
use super::block::{Block, Now, Owner};
use super::endpoint::WorkloadEndpoint;
use super::pool::Pool;
use super::records::{encode, Affinity, Handle, HostBlock, HostBlocks, HostBlocksView, IpamConfig, PoolBlocks, PoolNames};
use crate::error::IpamError;
use common::store::{Key, Kind, Op, Record, Revision, Store};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

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
        let mut ipam = Ipam { store, cache: RefCell::new(HashMap::new()), config: IpamConfig::default(), now: Now::system(), carry: None };
        let mut first = vec![Key::IpamConfig];
        first.extend(keys.iter().cloned());
        ipam.prefetch(&first)?;
        ipam.config = ipam.get::<IpamConfig>(&Key::IpamConfig)?.map(|c| c.0).unwrap_or_default();
        Ok(ipam)
    }

    /// Reads every key not read yet in one `get_many`: on a remote store only (a local one reads lazily,
    /// which costs less than reading what may not be needed).
    pub fn prefetch(&self, keys: &[Key]) -> Result<(), IpamError> {
        if !self.store.remote() {
            return Ok(());
        }
        let mut want: Vec<Key> = Vec::new();
        {
            let cache = self.cache.borrow();
            for k in keys {
                if !cache.contains_key(k) && !want.contains(k) {
                    want.push(k.clone());
                }
            }
        }
        if want.is_empty() {
            return Ok(());
        }
        let got = self.store.get_many(&want)?;
        self.cache.borrow_mut().extend(want.into_iter().zip(got));
        Ok(())
    }

    /// The second read of an ADD: the pools named by the pool index and the blocks of the node's index, so
    /// a node with space in a block needs no further read before its commit.
    pub fn prefetch_for_node(&self, node: &str) -> Result<(), IpamError> {
        if !self.store.remote() {
            return Ok(());
        }
        let names = self.get::<PoolNames>(&Key::PoolNames)?.map(|n| n.0.names).unwrap_or_default();
        let (hb, _) = self.host_blocks(node)?;
        let mut keys: Vec<Key> = names.into_iter().map(Key::Pool).collect();
        keys.extend(hb.blocks.iter().map(|b| Key::Block(b.cidr)));
        self.prefetch(&keys)
    }

    /// The second read of a DEL: the blocks each handle names.
    pub fn prefetch_handle_blocks(&self, handles: &[String]) -> Result<(), IpamError> {
        if !self.store.remote() {
            return Ok(());
        }
        let mut keys = Vec::new();
        for h in handles {
            if let Some((handle, _)) = self.get::<Handle>(&Key::Handle(h.clone()))? {
                keys.extend(handle.block.keys().filter_map(|c| c.parse::<IpNet>().ok()).map(Key::Block));
            }
        }
        self.prefetch(&keys)
    }

    pub fn store(&mut self) -> &mut dyn Store {
        self.cache.borrow_mut().clear();
        &mut *self.store
    }

    /// Runs `f` on a record, read through the cache.
    fn with_record<R>(&self, key: &Key, f: impl FnOnce(Option<&Record>) -> R) -> Result<R, IpamError> {
        if !self.cache.borrow().contains_key(key) {
            let r = self.store.get(key)?;
            self.cache.borrow_mut().insert(key.clone(), r);
        }
        Ok(f(self.cache.borrow().get(key).and_then(Option::as_ref)))
    }

    /// Decodes a record (read through the cache) straight from its JSON text.
    fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<(T, Revision)>, IpamError> {
        self.with_record(key, |r| match r {
            None => Ok(None),
            Some(r) => {
                let v = r.value.decode().map_err(|e| IpamError::Corrupt { key: key.path(), reason: e.to_string() })?;
                Ok(Some((v, r.rev)))
            }
        })?
    }

    /// Decodes the host index as a view borrowing the record's text and hands it to `f`.
    fn with_host_view<R>(&self, host: &str, f: impl FnOnce(&HostBlocksView) -> R) -> Result<Option<R>, IpamError> {
        let key = Key::HostBlocks(host.to_string());
        self.with_record(&key, |r| match r {
            None => Ok(None),
            Some(r) => match r.value.decode::<HostBlocksView>() {
                Ok(view) => Ok(Some(f(&view))),
                Err(e) => Err(IpamError::Corrupt { key: key.path(), reason: e.to_string() }),
            },
        })?
    }

    /// The host's confirmed blocks not marked full, in claim order: what an ADD tries first. Only their CIDRs
    /// are parsed; one that does not parse is left for the full walk (which reports the index as corrupt).
    fn open_blocks(&self, host: &str) -> Result<Vec<IpNet>, IpamError> {
        let open = self.with_host_view(host, |view| {
            view.blocks.iter().filter(|e| e.confirmed && !e.full).filter_map(|e| e.cidr.parse().ok()).collect()
        })?;
        Ok(open.unwrap_or_default())
    }

    /// A block record, refused as corrupt unless its invariants hold (the allocator indexes by them).
    fn block(&self, cidr: IpNet) -> Result<Option<(Block, Revision)>, IpamError> {
        let key = Key::Block(cidr);
        match self.get::<Block>(&key)? {
            Some((b, _)) if b.cidr != cidr => Err(IpamError::Corrupt { key: key.path(), reason: format!("holds block {}", b.cidr) }),
            Some((b, rev)) => match b.validate() {
                Ok(()) => Ok(Some((b, rev))),
                Err(reason) => Err(IpamError::Corrupt { key: key.path(), reason }),
            },
            None => Ok(None),
        }
    }

    fn commit(&mut self, ops: &[Op]) -> Result<Vec<Revision>, IpamError> {
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

    /// Every pool in the store; the default pool when there is none.
    pub fn pools(&self) -> Result<Vec<Pool>, IpamError> {
        let names = self.get::<PoolNames>(&Key::PoolNames)?.map(|n| n.0.names).unwrap_or_default();
        let mut pools = Vec::with_capacity(names.len());
        for name in names {
            let key = Key::Pool(name);
            if let Some((res, _)) = self.get(&key)? {
                pools.push(Pool::from_resource(&res).map_err(|e| IpamError::Corrupt { key: key.path(), reason: e.to_string() })?);
            }
        }
        if pools.is_empty() {
            pools.push(Pool::default_v4());
        }
        Ok(pools)
    }

    /// The pools a request may use: exactly the named ones (selectors ignored, as Calico), else every enabled
    /// pool of the family whose nodeSelector matches the node.
    pub fn select_pools(&self, v6: bool, requested: &[PoolRef], node: &Node) -> Result<Vec<Pool>, IpamError> {
        let fam = family(v6);
        let all: Vec<Pool> = self.pools()?.into_iter().filter(|p| p.is_v6() == v6).collect();
        if !requested.is_empty() {
            let mut out: Vec<Pool> = Vec::new();
            for r in requested {
                let found = all.iter().find(|p| match r {
                    PoolRef::Name(n) => p.name == *n,
                    PoolRef::Cidr(c) => p.cidr == *c,
                });
                let shown = || match r {
                    PoolRef::Name(n) => n.clone(),
                    PoolRef::Cidr(c) => c.to_string(),
                };
                let pool = found.ok_or_else(|| IpamError::PoolNotFound(shown()))?;
                if pool.disabled {
                    return Err(IpamError::PoolDisabled(pool.name.clone()));
                }
                if !out.iter().any(|p| p.name == pool.name) {
                    out.push(pool.clone());
                }
            }
            return Ok(out);
        }
        if all.is_empty() {
            return Err(IpamError::NoPools { family: fam });
        }
        let usable: Vec<Pool> = all.into_iter().filter(|p| !p.disabled && p.node_selector.matches(&node.labels)).collect();
        if usable.is_empty() {
            return Err(IpamError::NoPoolForNode { node: node.name.clone(), family: fam });
        }
        Ok(usable)
    }

    /// A handle record, through the read cache.
    pub fn handle(&self, key: &Key) -> Result<Option<Handle>, IpamError> {
        Ok(self.get::<Handle>(key)?.map(|h| h.0))
    }

    fn host_blocks(&self, node: &str) -> Result<(HostBlocks, Option<Revision>), IpamError> {
        Ok(match self.get::<HostBlocks>(&Key::HostBlocks(node.to_string()))? {
            Some((hb, rev)) => (hb, Some(rev)),
            None => (HostBlocks::default(), None),
        })
    }

    fn pool_blocks(&self, pool: &Pool) -> Result<(PoolBlocks, Option<Revision>), IpamError> {
        Ok(match self.get::<PoolBlocks>(&Key::PoolBlocks(pool.cidr))? {
            Some((pb, rev)) => (pb, Some(rev)),
            None => (PoolBlocks { block_size: pool.block_size, ..Default::default() }, None),
        })
    }

    /// One address of the family for `owner`, following Calico's AutoAssign order.
    pub fn auto_assign(&mut self, v6: bool, pools: &[Pool], node: &Node, owner: &Owner) -> Result<Assignment, IpamError> {
        let fam = family(v6);
        // 1. Blocks affine to this host, in claim order. The host index saves listing affinities.
        let usable = |cidr: &IpNet| cidr.addr().is_ipv6() == v6 && pools.iter().any(|p| p.contains_block(cidr));
        // Fast path: the first block not marked full; blocks found full on the way get marked in the commit.
        let mut found_full = Vec::new();
        for cidr in self.open_blocks(&node.name)?.into_iter().filter(usable) {
            match self.block(cidr)? {
                Some((block, rev)) if !block.deleted && block.is_affine_to(&node.name) && block.free() > 0 => {
                    return self.assign_in(block, rev, owner, None, Some((&node.name, found_full)));
                }
                Some((block, _)) if !block.deleted && block.is_affine_to(&node.name) => found_full.push(block.cidr),
                // Anything odd (interrupted claim, lost affinity) is for the full walk below to settle.
                _ => break,
            }
        }
        // Full walk, as Calico does: every affine block, finishing interrupted claims and correcting hints.
        let (hb, _) = self.host_blocks(&node.name)?;
        let mine: Vec<HostBlock> = hb.blocks.into_iter().filter(|e| usable(&e.cidr)).collect();
        let mut owned = 0;
        for entry in &mine {
            if let Some((block, rev)) = self.ensure_affine(entry, pools, node)? {
                owned += 1;
                if block.free() > 0 {
                    return self.assign_in(block, rev, owner, None, Some((&node.name, Vec::new())));
                }
            }
        }
        // 2. Claim a new block, unless at the limit (which, as in Calico, also rules out borrowing).
        let limit = self.config.block_limit();
        if owned >= limit {
            return Err(IpamError::BlockLimit { node: node.name.clone(), family: fam, count: owned, limit });
        }
        if self.config.auto_allocate_blocks {
            for pool in pools {
                // Blocks found taken in this request, so an index that lags behind is not followed twice.
                let mut taken = Vec::new();
                for _ in 0..CLAIM_TRIES {
                    let (mut pb, _) = self.pool_blocks(pool)?;
                    for t in &taken {
                        pb.claimed.insert(*t);
                    }
                    let Some(i) = pb.claimed.first_free(pool.start_index(&node.name), pool.block_count()) else {
                        break;
                    };
                    match self.claim(pool, pool.block_cidr(i), node, Some(owner))? {
                        Claimed::Assigned(a) => return Ok(a),
                        Claimed::Block(block, rev) if block.free() > 0 => return self.assign_in(block, rev, owner, None, Some((&node.name, Vec::new()))),
                        Claimed::Block(..) | Claimed::Taken => taken.push(i),
                    }
                }
            }
        }
        // 3. Borrow a free address from any claimed block of the pools.
        if self.config.strict_affinity {
            return Err(IpamError::StrictAffinity { node: node.name.clone(), family: fam });
        }
        for pool in pools {
            let (pb, _) = self.pool_blocks(pool)?;
            for i in pb.claimed.iter() {
                if let Some((block, rev)) = self.block(pool.block_cidr(i))? {
                    if !block.deleted && block.free() > 0 {
                        tracing::info!(block = %block.cidr, affinity = ?block.affinity, "borrowing an address");
                        let host = block.affinity.as_deref().and_then(|a| a.strip_prefix("host:")).map(str::to_string);
                        let hints = host.as_deref().map(|h| (h, Vec::new()));
                        return self.assign_in(block, rev, owner, None, hints);
                    }
                }
            }
        }
        Err(IpamError::PoolsExhausted { family: fam, pools: pools.iter().map(|p| p.name.clone()).collect() })
    }

    /// Exactly `ip` for `owner` (CNI_ARGS `IP=`); claims the block for this host if nobody has it.
    pub fn assign_ip(&mut self, ip: IpAddr, node: &Node, owner: &Owner) -> Result<Assignment, IpamError> {
        let pools = self.pools()?;
        let pool = pools.iter().find(|p| !p.disabled && p.cidr.contains(&ip)).ok_or(IpamError::NotInPool(ip))?;
        let cidr = pool.block_for_ip(ip);
        let mut found = self.block(cidr)?.filter(|(b, _)| !b.deleted);
        if found.is_none() {
            found = match self.claim(pool, cidr, node, None)? {
                Claimed::Block(b, rev) => Some((b, rev)),
                Claimed::Taken | Claimed::Assigned(_) => self.block(cidr)?,
            };
        }
        let (block, rev) = found.ok_or_else(|| IpamError::Internal(format!("block {cidr} vanished while claiming it")))?;
        if self.config.strict_affinity && !block.is_affine_to(&node.name) {
            let owner = block.affinity.clone().unwrap_or_else(|| "no host".into());
            return Err(IpamError::StrictAffinityIp { ip, block: cidr.to_string(), owner });
        }
        let host = block.affinity.as_deref().and_then(|a| a.strip_prefix("host:")).map(str::to_string);
        let hints = host.as_deref().map(|h| (h, Vec::new()));
        self.assign_in(block, rev, owner, Some(ip), hints)
    }

    /// Takes one address in `block` and records it on the handle: one atomic commit of both records.
    /// `hints`: the host whose index to keep right and blocks it found full on the way; this block's own hint
    /// is set from what it holds after the assignment.
    fn assign_in(&mut self, mut block: Block, rev: Revision, owner: &Owner, ip: Option<IpAddr>, hints: Option<(&str, Vec<IpNet>)>) -> Result<Assignment, IpamError> {
        let ip = match ip {
            None => block.assign_next(owner).ok_or_else(|| IpamError::Internal(format!("block {} is full", block.cidr)))?,
            Some(ip) => {
                block.assign_ip(ip, owner).map_err(|h| IpamError::AddressInUse { ip, handle: h.unwrap_or_default() })?;
                ip
            }
        };
        block.sequence_number += 1;
        let cidr = block.cidr;
        let mut ops = vec![self.handle_increment(owner, cidr)?, Op::Update { key: Key::Block(cidr), value: encode(&block)?, rev }];
        if let Some((host, mut full)) = hints {
            let mut changes: Vec<(IpNet, bool)> = full.drain(..).map(|c| (c, true)).collect();
            if block.is_affine_to(host) {
                changes.push((cidr, block.free() == 0));
            }
            ops.extend(self.hint_op(host, &changes)?);
        }
        let assigned = Assignment { ip, block: cidr };
        self.commit_assignment(ops, &assigned)?;
        Ok(assigned)
    }

    /// Commits the ops of an assignment, with the carried attachment record if there is one.
    fn commit_assignment(&mut self, mut ops: Vec<Op>, a: &Assignment) -> Result<Vec<Revision>, IpamError> {
        if let Some(carry) = &self.carry {
            ops.push(carry.op_with(a)?);
        }
        let revs = self.commit(&ops)?;
        self.carry = None;
        Ok(revs)
    }

    /// The host-index write that records `changes` to the `full` hints, if any hint changes.
    fn hint_op(&self, host: &str, changes: &[(IpNet, bool)]) -> Result<Option<Op>, IpamError> {
        // Usually nothing changes: find that out on the record's text, without building the index.
        let wanted: Vec<(String, bool)> = changes.iter().map(|(c, full)| (c.to_string(), *full)).collect();
        let differs = |view: &HostBlocksView| view.blocks.iter().any(|e| wanted.iter().any(|(c, full)| *c == e.cidr && *full != e.full));
        if self.with_host_view(host, differs)? != Some(true) {
            return Ok(None);
        }
        let (mut hb, rev) = self.host_blocks(host)?;
        let mut changed = false;
        for (cidr, full) in changes {
            changed |= hb.set_full(cidr, *full);
        }
        match (changed, rev) {
            (true, Some(rev)) => Ok(Some(put(Key::HostBlocks(host.to_string()), Some(rev), &hb)?)),
            _ => Ok(None),
        }
    }

    /// Hint writes for blocks that a release takes from full to not full (at most one per affine host).
    fn unfull_ops(&self, was_full: &[(IpNet, Option<String>)]) -> Result<Vec<Op>, IpamError> {
        let mut by_host: BTreeMap<String, Vec<(IpNet, bool)>> = BTreeMap::new();
        for (cidr, affinity) in was_full {
            if let Some(host) = affinity.as_deref().and_then(|a| a.strip_prefix("host:")) {
                by_host.entry(host.to_string()).or_default().push((*cidr, false));
            }
        }
        let mut ops = Vec::new();
        for (host, changes) in by_host {
            ops.extend(self.hint_op(&host, &changes)?);
        }
        Ok(ops)
    }

    /// The write that counts one more address of `block` on the owner's handle.
    fn handle_increment(&self, owner: &Owner, block: IpNet) -> Result<Op, IpamError> {
        let hkey = Key::Handle(owner.handle.clone());
        let (mut handle, hrev) = match self.get::<Handle>(&hkey)? {
            Some((h, r)) if !h.deleted => (h, Some(r)),
            Some((_, r)) => (Handle::default(), Some(r)),
            None => (Handle::default(), None),
        };
        *handle.block.entry(block.to_string()).or_insert(0) += 1;
        put(hkey, hrev, &handle)
    }

    /// Checks one entry of the host index against its block, finishing or dropping interrupted claims.
    fn ensure_affine(&mut self, entry: &HostBlock, pools: &[Pool], node: &Node) -> Result<Option<(Block, Revision)>, IpamError> {
        let pool = pools.iter().find(|p| p.contains_block(&entry.cidr));
        match self.block(entry.cidr)? {
            None => match pool {
                // A claim that stopped after its intent was written: finish it.
                Some(pool) => {
                    let pool = pool.clone();
                    Ok(match self.claim(&pool, entry.cidr, node, None)? {
                        Claimed::Block(b, rev) => Some((b, rev)),
                        Claimed::Taken | Claimed::Assigned(_) => None,
                    })
                }
                None => {
                    self.settle(None, entry.cidr, node, false)?;
                    Ok(None)
                }
            },
            Some((block, _)) if block.deleted || !block.is_affine_to(&node.name) => {
                self.settle(pool, entry.cidr, node, false)?;
                Ok(None)
            }
            Some((block, rev)) => {
                if !entry.confirmed {
                    self.settle(pool, entry.cidr, node, true)?;
                }
                Ok(Some((block, rev)))
            }
        }
    }

    /// Claims `cidr` for `node` in two steps, as Calico: (1) pending affinity (+ host index intent), (2) the
    /// block itself, the confirmed affinity and both indexes in one commit, together with the first address
    /// when `first` names its owner (one commit less per new block).
    fn claim(&mut self, pool: &Pool, cidr: IpNet, node: &Node, first: Option<&Owner>) -> Result<Claimed, IpamError> {
        let akey = Key::Affinity { host: node.name.clone(), cidr };
        let hkey = Key::HostBlocks(node.name.clone());
        // Step 1: the pending affinity and the host index entry (the intent a crashed claim is finished from).
        let (mut hb, hb_rev) = self.host_blocks(&node.name)?;
        let aff = self.get::<Affinity>(&akey)?;
        let mut ops = Vec::new();
        if aff.as_ref().map(|a| a.0.state.as_str()) != Some("pending") {
            ops.push(put(akey.clone(), aff.as_ref().map(|a| a.1), &Affinity::pending())?);
        }
        if hb.get(&cidr).map(|e| e.confirmed) != Some(false) {
            hb.set(cidr, false);
            ops.push(put(hkey.clone(), hb_rev, &hb)?);
        }
        if !ops.is_empty() {
            self.commit(&ops)?;
        }

        // Step 2, atomic with the pool index; if that loses to another node's claim elsewhere in the pool (the
        // index is one record per pool), once more without it: the block's create decides who owns a block,
        // the index is a hint, marked right after (see `mark_claimed`).
        for with_index in [true, false] {
            let (mut hb, hb_rev) = self.host_blocks(&node.name)?;
            let aff_rev = self.get::<Affinity>(&akey)?.map(|a| a.1);
            let mut block = Block::new(cidr, &node.name, &self.now);
            hb.set(cidr, true);
            let mut ops = Vec::with_capacity(5);
            let mut assigned = None;
            if let Some(owner) = first {
                let ip = block.assign_next(owner).ok_or_else(|| IpamError::Internal(format!("new block {cidr} is empty")))?;
                block.sequence_number += 1;
                ops.push(self.handle_increment(owner, cidr)?);
                assigned = Some(Assignment { ip, block: cidr });
            }
            let block_op = ops.len();
            ops.extend([
                Op::Create { key: Key::Block(cidr), value: encode(&block)? },
                put(akey.clone(), aff_rev, &Affinity::confirmed())?,
                put(hkey.clone(), hb_rev, &hb)?,
            ]);
            if with_index {
                let (mut pb, pb_rev) = self.pool_blocks(pool)?;
                pb.claimed.insert(pool.block_index(cidr.network()));
                ops.push(put(Key::PoolBlocks(pool.cidr), pb_rev, &pb)?);
            }
            let committed = match &assigned {
                Some(a) => self.commit_assignment(ops, a),
                None => self.commit(&ops),
            };
            match committed {
                Ok(revs) => {
                    tracing::info!(block = %cidr, node = %node.name, "claimed block");
                    if !with_index {
                        self.mark_claimed(pool, cidr);
                    }
                    return Ok(match assigned {
                        Some(a) => Claimed::Assigned(a),
                        None => Claimed::Block(block, revs[block_op]),
                    });
                }
                Err(IpamError::Store(e)) if e.is_conflict() => match self.block(cidr)? {
                    Some((b, rev)) if !b.deleted && b.is_affine_to(&node.name) => {
                        self.settle(Some(pool), cidr, node, true)?;
                        return Ok(Claimed::Block(b, rev));
                    }
                    Some(_) => {
                        // Someone else's. Tidying our pending records may lose to the same contention; the
                        // next ADD finishes it from the host index.
                        if let Err(e) = self.settle(Some(pool), cidr, node, false) {
                            if !e.is_conflict() {
                                return Err(e);
                            }
                        }
                        return Ok(Claimed::Taken);
                    }
                    None if with_index => continue,
                    None => return Err(IpamError::Store(e)),
                },
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// Marks `cidr` claimed in the pool index after a claim committed without it. A few tries; if other
    /// claims keep winning, the index lags and whoever picks this block next learns of it from the failed
    /// create (and marks it then): a wasted try, never a duplicate.
    fn mark_claimed(&mut self, pool: &Pool, cidr: IpNet) {
        let i = pool.block_index(cidr.network());
        for _ in 0..10 {
            let result = self.pool_blocks(pool).and_then(|(mut pb, rev)| {
                if pb.claimed.contains(i) {
                    return Ok(());
                }
                pb.claimed.insert(i);
                let op = put(Key::PoolBlocks(pool.cidr), rev, &pb)?;
                self.commit(&[op]).map(drop)
            });
            match result {
                Ok(()) => return,
                Err(e) if e.is_conflict() => continue,
                Err(e) => {
                    tracing::warn!(block = %cidr, error = %e, "could not mark the block in the pool index");
                    return;
                }
            }
        }
        tracing::info!(block = %cidr, "pool index busy: left for the next claimer to mark");
    }

    /// Brings this host's affinity record and index entry for `cidr` to `confirmed` (the block is ours) or
    /// removes them (it is not); marks the block claimed in the pool index either way, since it exists.
    fn settle(&mut self, pool: Option<&Pool>, cidr: IpNet, node: &Node, ours: bool) -> Result<(), IpamError> {
        let akey = Key::Affinity { host: node.name.clone(), cidr };
        let hkey = Key::HostBlocks(node.name.clone());
        let (mut hb, hb_rev) = self.host_blocks(&node.name)?;
        let aff = self.get::<Affinity>(&akey)?;
        let mut ops = Vec::new();
        if ours {
            ops.push(put(akey, aff.map(|a| a.1), &Affinity::confirmed())?);
            hb.set(cidr, true);
        } else {
            if let Some((_, rev)) = aff {
                ops.push(Op::Delete { key: akey, rev });
            }
            hb.remove(&cidr);
        }
        ops.push(put(hkey, hb_rev, &hb)?);
        if let Some(pool) = pool {
            let exists = self.block(cidr)?.is_some();
            let (mut pb, pb_rev) = self.pool_blocks(pool)?;
            let i = pool.block_index(cidr.network());
            if exists && !pb.claimed.contains(i) {
                pb.claimed.insert(i);
                ops.push(put(Key::PoolBlocks(pool.cidr), pb_rev, &pb)?);
            }
        }
        self.commit(&ops)?;
        Ok(())
    }

    /// Releases every address of `handle` (DEL). A missing handle releases nothing and is not an error.
    pub fn release_by_handle(&mut self, handle: &str) -> Result<usize, IpamError> {
        self.release_by_handle_with(handle, Vec::new())
    }

    /// `release_by_handle`, committing `extra` (an attachment record's delete) in the same commit.
    pub fn release_by_handle_with(&mut self, handle: &str, extra: Vec<Op>) -> Result<usize, IpamError> {
        let hkey = Key::Handle(handle.to_string());
        let Some((h, _)) = self.get::<Handle>(&hkey)? else {
            if !extra.is_empty() {
                self.commit(&extra)?;
            }
            return Ok(0);
        };
        let blocks = h.block.keys().filter_map(|c| c.parse::<IpNet>().ok()).collect();
        self.release_in_blocks(handle, blocks, |b| b.release_handle(handle), true, extra)
    }

    /// Releases exactly `ips`, each only if `handle` holds it (what a failed ADD took, or one interface's
    /// addresses), in one commit with `extra`. Returns how many were released.
    pub fn release_from_handle(&mut self, handle: &str, ips: &[IpAddr], extra: Vec<Op>) -> Result<usize, IpamError> {
        let pools = self.pools()?;
        let mut blocks: Vec<IpNet> = ips.iter().filter_map(|ip| pools.iter().find(|p| p.cidr.contains(ip)).map(|p| p.block_for_ip(*ip))).collect();
        blocks.sort();
        blocks.dedup();
        let take = |b: &mut Block| {
            let mut n = 0;
            for ip in ips {
                let held = b.ordinal(*ip).and_then(|o| b.owner_of(o)).and_then(|a| a.handle_id.as_deref()) == Some(handle);
                if held && matches!(b.release_ip(*ip, None), Ok(Some(_))) {
                    n += 1;
                }
            }
            n
        };
        self.release_in_blocks(handle, blocks, take, false, extra)
    }

    /// One commit: `take` frees addresses of `handle` in each of `blocks` (returning how many); blocks left
    /// empty and unaffine are deleted, index hints follow, and the handle's counts drop by what was freed
    /// (`whole`: the handle record goes whatever it counted).
    fn release_in_blocks(&mut self, handle: &str, blocks: Vec<IpNet>, mut take: impl FnMut(&mut Block) -> usize, whole: bool, extra: Vec<Op>) -> Result<usize, IpamError> {
        let hkey = Key::Handle(handle.to_string());
        let found = self.get::<Handle>(&hkey)?;
        let mut ops = extra;
        let mut released = 0;
        let mut deleted_blocks = Vec::new();
        let mut was_full = Vec::new();
        let mut counts = found.as_ref().map(|(h, _)| h.block.clone()).unwrap_or_default();
        for cidr in blocks {
            let Some((mut block, rev)) = self.block(cidr)? else { continue };
            let full_before = block.free() == 0;
            let n = take(&mut block);
            if n == 0 {
                continue;
            }
            released += n;
            let key = cidr.to_string();
            if let Some(c) = counts.get_mut(&key) {
                *c = c.saturating_sub(n as u64);
                if *c == 0 {
                    counts.remove(&key);
                }
            }
            block.sequence_number += 1;
            if block.is_empty() && block.affinity.is_none() {
                ops.push(Op::Delete { key: Key::Block(cidr), rev });
                deleted_blocks.push(cidr);
            } else {
                ops.push(Op::Update { key: Key::Block(cidr), value: encode(&block)?, rev });
                if full_before {
                    was_full.push((cidr, block.affinity.clone()));
                }
            }
        }
        ops.extend(self.unclaim_ops(&deleted_blocks)?);
        ops.extend(self.unfull_ops(&was_full)?);
        if let Some((h, hrev)) = found {
            if whole || counts.is_empty() {
                ops.push(Op::Delete { key: hkey, rev: hrev });
            } else if released > 0 {
                ops.push(Op::Update { key: hkey, value: encode(&Handle { block: counts, deleted: h.deleted })?, rev: hrev });
            }
        }
        if !ops.is_empty() {
            self.commit(&ops)?;
        }
        Ok(released)
    }

    /// The attachment record at `key`, through the read cache.
    pub fn endpoint(&self, key: &Key) -> Result<Option<(WorkloadEndpoint, Revision)>, IpamError> {
        self.get(key)
    }

    /// Who holds `ip`: its block and handle, if it is allocated.
    pub fn holder(&self, ip: IpAddr) -> Result<Option<(Assignment, String)>, IpamError> {
        let pools = self.pools()?;
        let Some(pool) = pools.iter().find(|p| p.cidr.contains(&ip)) else { return Ok(None) };
        let cidr = pool.block_for_ip(ip);
        let Some((block, _)) = self.block(cidr)? else { return Ok(None) };
        let handle = block.ordinal(ip).and_then(|o| block.owner_of(o)).and_then(|a| a.handle_id.clone());
        Ok(handle.map(|h| (Assignment { ip, block: cidr }, h)))
    }

    /// Pool-index updates for blocks being deleted (affinity already released, now empty).
    fn unclaim_ops(&self, blocks: &[IpNet]) -> Result<Vec<Op>, IpamError> {
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let pools = self.pools()?;
        let mut changed: BTreeMap<IpNet, (PoolBlocks, Option<Revision>)> = BTreeMap::new();
        for cidr in blocks {
            let Some(pool) = pools.iter().find(|p| p.contains_block(cidr)) else { continue };
            let entry = match changed.entry(pool.cidr) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(self.pool_blocks(pool)?),
            };
            entry.0.claimed.remove(pool.block_index(cidr.network()));
        }
        changed.into_iter().map(|(cidr, (pb, rev))| put(Key::PoolBlocks(cidr), rev, &pb)).collect()
    }

    /// Releases single addresses; with a sequence number, only if the address was not re-assigned since
    /// (the guard GC and operators use). Keeps going past refusals and reports the first one at the end.
    /// An attachment record listing a released address loses it in the same commit (and goes when empty),
    /// so no record ever names a free address. Scans the records: for operators, never on the ADD/DEL path.
    pub fn release_ips(&mut self, ips: &[(IpAddr, Option<u64>)]) -> Result<usize, IpamError> {
        let pools = self.pools()?;
        let mut listed: BTreeMap<IpAddr, Key> = BTreeMap::new();
        for (key, rec) in self.store.list(Kind::Endpoint)? {
            if let Ok(ep) = rec.value.decode::<WorkloadEndpoint>() {
                listed.extend(ep.spec.ip_networks.iter().map(|n| (n.addr(), key.clone())));
            }
        }
        let mut released = 0;
        let mut refused = None;
        for (ip, seq) in ips {
            let Some(pool) = pools.iter().find(|p| p.cidr.contains(ip)) else { continue };
            let cidr = pool.block_for_ip(*ip);
            let Some((mut block, rev)) = self.block(cidr)? else { continue };
            let full_before = block.free() == 0;
            let handle = match block.release_ip(*ip, *seq) {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(r) => {
                    refused.get_or_insert(IpamError::StaleRelease { ip: r.ip, expected: r.expected, found: r.found });
                    continue;
                }
            };
            released += 1;
            block.sequence_number += 1;
            let mut ops = Vec::new();
            if block.is_empty() && block.affinity.is_none() {
                ops.push(Op::Delete { key: Key::Block(cidr), rev });
                ops.extend(self.unclaim_ops(&[cidr])?);
            } else {
                ops.push(Op::Update { key: Key::Block(cidr), value: encode(&block)?, rev });
                if full_before {
                    ops.extend(self.unfull_ops(&[(cidr, block.affinity.clone())])?);
                }
            }
            if let Some(key) = listed.get(ip) {
                if let Some((mut ep, rev)) = self.endpoint(key)? {
                    ep.spec.ip_networks.retain(|n| n.addr() != *ip);
                    ops.push(if ep.spec.ip_networks.is_empty() {
                        Op::Delete { key: key.clone(), rev }
                    } else {
                        Op::Update { key: key.clone(), value: encode(&ep)?, rev }
                    });
                }
            }
            let hkey = Key::Handle(handle);
            if let Some((mut h, hrev)) = self.get::<Handle>(&hkey)? {
                let key = cidr.to_string();
                if let Some(n) = h.block.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        h.block.remove(&key);
                    }
                }
                ops.push(if h.block.is_empty() {
                    Op::Delete { key: hkey, rev: hrev }
                } else {
                    Op::Update { key: hkey, value: encode(&h)?, rev: hrev }
                });
            }
            self.commit(&ops)?;
        }
        refused.map_or(Ok(released), Err)
    }

    /// CNI GC: releases the handles of `network` on `node` that `is_valid` rejects. Scans all blocks (GC is
    /// rare; the ADD path never scans). Returns the number of addresses released.
    pub fn gc(&mut self, network: &str, node: &str, is_valid: &dyn Fn(&str) -> bool) -> Result<usize, IpamError> {
        let prefix = format!("{network}.");
        let mut stale = BTreeSet::new();
        for (key, rec) in self.store.list(Kind::Block)? {
            let block: Block = rec.value.decode().map_err(|e| IpamError::Corrupt { key: key.path(), reason: e.to_string() })?;
            for idx in block.allocations.iter().flatten() {
                let Some(attr) = block.attributes.get(*idx) else { continue };
                let Some(handle) = attr.handle_id.as_deref() else { continue };
                if handle.starts_with(&prefix) && attr.secondary.get("node").map(String::as_str) == Some(node) && !is_valid(handle) {
                    stale.insert(handle.to_string());
                }
            }
        }
        let mut released = 0;
        for handle in stale {
            tracing::info!(%handle, "GC releases a stale allocation");
            released += self.release_by_handle(&handle)?;
        }
        Ok(released)
    }
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;
