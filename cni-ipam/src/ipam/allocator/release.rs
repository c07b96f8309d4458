//! Releases: by handle (DEL), exactly some addresses of a handle (a failed ADD, one interface), single
//! addresses guarded by sequence numbers (operators), and CNI GC.
use super::{Assignment, Ipam};
use crate::error::IpamError;
use datastore::ipam::block::Block;
use datastore::ipam::records::decode;
use datastore::ipam::records::{encode, Handle};
use datastore::store::{Key, Kind, Op};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

impl Ipam<'_> {
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
    pub(super) fn release_in_blocks(
        &mut self,
        handle: &str,
        blocks: Vec<IpNet>,
        mut take: impl FnMut(&mut Block) -> usize,
        whole: bool,
        extra: Vec<Op>,
    ) -> Result<usize, IpamError> {
        let hkey = Key::Handle(handle.to_string());
        let found = self.get::<Handle>(&hkey)?;
        let mut ops = extra;
        let mut released = 0;
        let mut deleted_blocks = Vec::new();
        let mut was_full = Vec::new();
        let mut counts = found.as_ref().map(|(h, _)| h.block.clone()).unwrap_or_default();
        let mut changed: BTreeMap<IpNet, Block> = BTreeMap::new();
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
            changed.insert(cidr, block);
        }
        ops.extend(self.unclaim_ops(&deleted_blocks)?);
        ops.extend(self.unfull_ops(&was_full)?);
        if let Some((h, hrev)) = found {
            let gone = whole || counts.is_empty();
            let still_held = |ip: IpAddr| match changed.iter().find(|(c, _)| c.contains(&ip)) {
                Some((_, b)) => b.ordinal(ip).and_then(|o| b.owner_of(o)).and_then(|a| a.handle_id.as_deref()) == Some(handle),
                None => true,
            };
            ops.extend(self.record_op(handle, &h, gone, still_held, &ops)?);
            if gone {
                ops.push(Op::Delete { key: hkey, rev: hrev });
            } else if released > 0 {
                ops.push(Op::Update { key: hkey, value: encode(&Handle { block: counts, ..h })?, rev: hrev });
            }
        }
        if !ops.is_empty() {
            self.commit(&ops)?;
        }
        Ok(released)
    }

    /// The write that keeps `handle`'s attachment record right after a release: deleted with the handle,
    /// else without the addresses it no longer holds. None if the handle points at no record, the record is
    /// not this handle's, `ops` already change it, or nothing changes.
    fn record_op(&self, handle: &str, h: &Handle, gone: bool, still_held: impl Fn(IpAddr) -> bool, ops: &[Op]) -> Result<Option<Op>, IpamError> {
        let Some(key) = h.endpoint.as_deref().and_then(Key::parse) else { return Ok(None) };
        if ops.iter().any(|o| *o.key() == key) {
            return Ok(None);
        }
        let Some((mut ep, rev)) = self.endpoint(&key)? else { return Ok(None) };
        if ep.attachment().handle_id() != handle {
            return Ok(None);
        }
        let before = ep.spec.ip_networks.len();
        ep.spec.ip_networks.retain(|n| still_held(n.addr()));
        Ok(if gone || ep.spec.ip_networks.is_empty() {
            Some(Op::Delete { key, rev })
        } else if ep.spec.ip_networks.len() != before {
            Some(Op::Update { key, value: encode(&ep)?, rev })
        } else {
            None
        })
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

    /// Releases single addresses; with a sequence number, only if the address was not re-assigned since
    /// (the guard GC and operators use). Keeps going past refusals and reports the first one at the end.
    /// The attachment record listing a released address (the handle points at it) loses it in the same
    /// commit, and goes when empty: no record ever names a free address.
    pub fn release_ips(&mut self, ips: &[(IpAddr, Option<u64>)]) -> Result<usize, IpamError> {
        let pools = self.pools()?;
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
            let hkey = Key::Handle(handle.clone());
            if let Some((mut h, hrev)) = self.get::<Handle>(&hkey)? {
                let key = cidr.to_string();
                if let Some(n) = h.block.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        h.block.remove(&key);
                    }
                }
                let released_ip = *ip;
                ops.extend(self.record_op(&handle, &h, h.block.is_empty(), |a| a != released_ip, &ops)?);
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
            let block: Block = decode(&key, &rec.value)?;
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
