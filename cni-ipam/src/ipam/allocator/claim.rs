//! Block claims and the indexes they keep: the two-step claim (pending, then block + confirmed affinity +
//! host and pool index), finishing interrupted claims, and the host index's `full` hints.
use super::{put, Assignment, Claimed, Ipam, Node};
use crate::error::IpamError;
use datastore::ipam::block::{affinity_host, Block, Owner};
use datastore::ipam::records::{encode, Affinity, HostBlock, HostBlocksView};
use datastore::resources::ippool::Pool;
use datastore::store::{Key, Op, Revision};
use ipnet::IpNet;
use std::collections::BTreeMap;

impl Ipam<'_> {
    /// Checks one entry of the host index against its block, finishing or dropping interrupted claims.
    pub(super) fn ensure_affine(&mut self, entry: &HostBlock, pools: &[Pool], node: &Node) -> Result<Option<(Block, Revision)>, IpamError> {
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
    pub(super) fn claim(&mut self, pool: &Pool, cidr: IpNet, node: &Node, first: Option<&Owner>) -> Result<Claimed, IpamError> {
        let akey = Key::Affinity { host: node.name.clone(), cidr };
        // Step 1: the pending affinity and the host index entry (the intent a crashed claim is finished from).
        let aff = self.get::<Affinity>(&akey)?;
        let mut ops = Vec::new();
        if aff.as_ref().map(|a| a.0.state.as_str()) != Some("pending") {
            ops.push(put(akey.clone(), aff.as_ref().map(|a| a.1), &Affinity::pending())?);
        }
        ops.extend(self.host_blocks_op(&node.name, |hb| {
            let intent_missing = hb.get(&cidr).map(|e| e.confirmed) != Some(false);
            if intent_missing {
                hb.set(cidr, false);
            }
            intent_missing
        })?);
        if !ops.is_empty() {
            self.commit(&ops)?;
        }

        // Step 2, atomic with the pool index; if that loses to another node's claim elsewhere in the pool (the
        // index is one record per pool), once more without it: the block's create decides who owns a block,
        // the index is a hint, marked right after (see `mark_claimed`).
        for with_index in [true, false] {
            let aff_rev = self.get::<Affinity>(&akey)?.map(|a| a.1);
            let mut block = Block::new(cidr, &node.name, &self.now);
            let mut ops = Vec::with_capacity(5);
            let mut assigned = None;
            if let Some(owner) = first {
                let ip = block.assign_next(owner).ok_or_else(|| IpamError::Internal(format!("new block {cidr} is empty")))?;
                block.sequence_number += 1;
                ops.push(self.handle_increment(owner, cidr)?);
                assigned = Some(Assignment { ip, block: cidr });
            }
            let block_op = ops.len();
            ops.extend([Op::Create { key: Key::Block(cidr), value: encode(&block)? }, put(akey.clone(), aff_rev, &Affinity::confirmed())?]);
            ops.extend(self.host_blocks_op(&node.name, |hb| {
                hb.set(cidr, true);
                true
            })?);
            if with_index {
                ops.extend(self.pool_blocks_op(pool, |pb| {
                    pb.claimed.insert(pool.block_index(cidr.network()));
                    true
                })?);
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
    pub(super) fn mark_claimed(&mut self, pool: &Pool, cidr: IpNet) {
        let i = pool.block_index(cidr.network());
        for _ in 0..10 {
            let result = self.pool_blocks_op(pool, |pb| {
                let unmarked = !pb.claimed.contains(i);
                pb.claimed.insert(i);
                unmarked
            });
            let result = match result {
                Ok(Some(op)) => self.commit(&[op]).map(drop),
                other => other.map(drop),
            };
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
    pub(super) fn settle(&mut self, pool: Option<&Pool>, cidr: IpNet, node: &Node, ours: bool) -> Result<(), IpamError> {
        let akey = Key::Affinity { host: node.name.clone(), cidr };
        let aff = self.get::<Affinity>(&akey)?;
        let mut ops = Vec::new();
        if ours {
            ops.push(put(akey, aff.map(|a| a.1), &Affinity::confirmed())?);
        } else if let Some((_, rev)) = aff {
            ops.push(Op::Delete { key: akey, rev });
        }
        ops.extend(self.host_blocks_op(&node.name, |hb| {
            if ours {
                hb.set(cidr, true);
            } else {
                hb.remove(&cidr);
            }
            true
        })?);
        if let Some(pool) = pool {
            let exists = self.block(cidr)?.is_some();
            let i = pool.block_index(cidr.network());
            ops.extend(self.pool_blocks_op(pool, |pb| {
                let unmarked = exists && !pb.claimed.contains(i);
                if unmarked {
                    pb.claimed.insert(i);
                }
                unmarked
            })?);
        }
        self.commit(&ops)?;
        Ok(())
    }

    /// The host-index write that records `changes` to the `full` hints, if any hint changes.
    pub(super) fn hint_op(&self, host: &str, changes: &[(IpNet, bool)]) -> Result<Option<Op>, IpamError> {
        // Usually nothing changes: find that out on the record's text, without building the index.
        let wanted: Vec<(String, bool)> = changes.iter().map(|(c, full)| (c.to_string(), *full)).collect();
        let differs = |view: &HostBlocksView| view.blocks.iter().any(|e| wanted.iter().any(|(c, full)| *c == e.cidr && *full != e.full));
        if self.with_host_view(host, differs)? != Some(true) {
            return Ok(None);
        }
        self.host_blocks_op(host, |hb| changes.iter().fold(false, |changed, (cidr, full)| hb.set_full(cidr, *full) | changed))
    }

    /// Hint writes for blocks that a release takes from full to not full (at most one per affine host).
    pub(super) fn unfull_ops(&self, was_full: &[(IpNet, Option<String>)]) -> Result<Vec<Op>, IpamError> {
        let mut by_host: BTreeMap<String, Vec<(IpNet, bool)>> = BTreeMap::new();
        for (cidr, affinity) in was_full {
            if let Some(host) = affinity.as_deref().and_then(affinity_host) {
                by_host.entry(host.to_string()).or_default().push((*cidr, false));
            }
        }
        let mut ops = Vec::new();
        for (host, changes) in by_host {
            ops.extend(self.hint_op(&host, &changes)?);
        }
        Ok(ops)
    }

    /// Pool-index updates for blocks being deleted (affinity already released, now empty).
    pub(super) fn unclaim_ops(&self, blocks: &[IpNet]) -> Result<Vec<Op>, IpamError> {
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let pools = self.pools()?;
        let mut ops = Vec::new();
        for pool in &pools {
            let mine: Vec<&IpNet> = blocks.iter().filter(|c| pool.contains_block(c)).collect();
            if mine.is_empty() {
                continue;
            }
            ops.extend(self.pool_blocks_op(pool, |pb| {
                for cidr in mine {
                    pb.claimed.remove(pool.block_index(cidr.network()));
                }
                true
            })?);
        }
        Ok(ops)
    }
}
