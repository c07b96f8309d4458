//! Pool selection and assignment: which pools a request may use, and Calico's AutoAssign order (affine
//! blocks, then a new claim, then borrowing) ending in one commit of block + handle (+ the attachment record).
use super::{family, put, Assignment, Claimed, Ipam, Node, PoolRef, CLAIM_TRIES};
use crate::error::IpamError;
use datastore::ipam::block::{Block, Owner};
use datastore::ipam::records::{encode, Handle, HostBlock, PoolNames};
use datastore::resources::ippool::Pool;
use datastore::store::{Key, Op, Revision};
use ipnet::IpNet;
use std::net::IpAddr;

impl Ipam<'_> {
    /// Every pool in the store; the default pool when there is none.
    pub fn pools(&self) -> Result<Vec<Pool>, IpamError> {
        let names = self.get::<PoolNames>(&Key::PoolNames)?.map(|n| n.0.names).unwrap_or_default();
        let mut pools = Vec::with_capacity(names.len());
        for name in names {
            let key = Key::pool(name);
            if let Some((res, _)) = self.get(&key)? {
                pools.push(Pool::from_resource(&res).map_err(|e| IpamError::corrupt(&key, e))?);
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
                if !pool.allows(self.purpose) {
                    return Err(IpamError::PoolUse { pool: pool.name.clone(), purpose: self.purpose.to_string() });
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
        // As Calico: Manual pools only when asked for by name, and only pools allowing this use.
        let usable: Vec<Pool> =
            all.into_iter().filter(|p| !p.disabled && p.is_automatic() && p.allows(self.purpose) && p.node_selector.matches(&node.labels)).collect();
        if usable.is_empty() {
            return Err(IpamError::NoPoolForNode { node: node.name.clone(), family: fam });
        }
        Ok(usable)
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
                        Claimed::Block(block, rev) if block.free() > 0 => {
                            return self.assign_in(block, rev, owner, None, Some((&node.name, Vec::new())))
                        }
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
                        let host = block.affine_host().map(str::to_string);
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
        if !pool.allows(self.purpose) {
            return Err(IpamError::PoolUse { pool: pool.name.clone(), purpose: self.purpose.to_string() });
        }
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
        let host = block.affine_host().map(str::to_string);
        let hints = host.as_deref().map(|h| (h, Vec::new()));
        self.assign_in(block, rev, owner, Some(ip), hints)
    }

    /// Takes one address in `block` and records it on the handle: one atomic commit of both records.
    /// `hints`: the host whose index to keep right and blocks it found full on the way; this block's own hint
    /// is set from what it holds after the assignment.
    pub(super) fn assign_in(
        &mut self,
        mut block: Block,
        rev: Revision,
        owner: &Owner,
        ip: Option<IpAddr>,
        hints: Option<(&str, Vec<IpNet>)>,
    ) -> Result<Assignment, IpamError> {
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
    pub(super) fn commit_assignment(&mut self, mut ops: Vec<Op>, a: &Assignment) -> Result<Vec<Revision>, IpamError> {
        if let Some(carry) = &self.carry {
            ops.push(carry.op_with(a)?);
        }
        let revs = self.commit(&ops)?;
        self.carry = None;
        Ok(revs)
    }

    /// The write that counts one more address of `block` on the owner's handle.
    pub(super) fn handle_increment(&self, owner: &Owner, block: IpNet) -> Result<Op, IpamError> {
        let hkey = Key::Handle(owner.handle.clone());
        let (mut handle, hrev) = match self.get::<Handle>(&hkey)? {
            Some((h, r)) if !h.deleted => (h, Some(r)),
            Some((_, r)) => (Handle::default(), Some(r)),
            None => (Handle::default(), None),
        };
        *handle.block.entry(block.to_string()).or_insert(0) += 1;
        if let Some(key) = &self.attachment {
            handle.endpoint = Some(key.path());
        }
        put(hkey, hrev, &handle)
    }
}
