//! Taking a node out of IPAM, as Calico's node delete does (libcalico-go `clientv3/node.go` `Delete`, then
//! `ipam.go` `RemoveIPAMHost` with `ReleaseHostAffinities(mustBeEmpty=false)`): the addresses allocated for
//! the node (its pods' and its tunnel address) are released with their attachment records, its affinities
//! go, an affine block that is then empty goes with its affinity, one that still holds addresses (borrowed
//! by other nodes) stays without affinity until they are released, and the node's host index goes last.
//! Each step is one commit that leaves the store consistent, so a removal cut short is finished by running
//! it again; the caller deletes the Node resource only after it.
use super::Ipam;
use crate::error::IpamError;
use datastore::ipam::block::Block;
use datastore::ipam::records::{decode, encode, Affinity, HostBlocks};
use datastore::store::{Key, Kind, Op};
use ipnet::IpNet;
use std::collections::BTreeSet;

/// What `remove_host` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostRemoval {
    /// Addresses released: every allocation whose `node` attribute is the node.
    pub addresses: usize,
    /// Blocks affine to the node that were empty and are gone.
    pub blocks_deleted: usize,
    /// Blocks affine to the node that still hold other nodes' addresses: kept, now without affinity.
    pub blocks_kept: usize,
}

impl Ipam<'_> {
    /// Releases everything IPAM holds for `node` (see the module). Scans every block: an operator's
    /// command, never on the ADD path.
    pub fn remove_host(&mut self, node: &str) -> Result<HostRemoval, IpamError> {
        let mut done = HostRemoval::default();
        let mut handles = BTreeSet::new();
        for (key, rec) in self.store.list(Kind::Block)? {
            let block: Block = decode(&key, &rec.value)?;
            for idx in block.allocations.iter().flatten() {
                let Some(attr) = block.attributes.get(*idx) else { continue };
                if attr.secondary.get("node").map(String::as_str) == Some(node) {
                    handles.extend(attr.handle_id.clone());
                }
            }
        }
        for handle in &handles {
            done.addresses += self.release_by_handle(handle)?;
        }

        let mut cidrs: BTreeSet<IpNet> = self.host_blocks(node)?.0.blocks.iter().map(|b| b.cidr).collect();
        for (key, _) in self.store.list(Kind::Affinity)? {
            if let Key::Affinity { host, cidr } = key {
                if host == node {
                    cidrs.insert(cidr);
                }
            }
        }
        for cidr in cidrs {
            self.release_affinity(node, cidr, &mut done)?;
        }
        if let Some((_, rev)) = self.get::<HostBlocks>(&Key::HostBlocks(node.to_string()))? {
            self.commit(&[Op::Delete { key: Key::HostBlocks(node.to_string()), rev }])?;
        }
        tracing::info!(
            node,
            addresses = done.addresses,
            blocks_deleted = done.blocks_deleted,
            blocks_kept = done.blocks_kept,
            "node removed from IPAM"
        );
        Ok(done)
    }

    /// One commit: `node`'s affinity for `cidr` and its host index entry go; the block, if it is the
    /// node's, is deleted when empty (with its pool index entry) and loses its affinity otherwise.
    fn release_affinity(&mut self, node: &str, cidr: IpNet, done: &mut HostRemoval) -> Result<(), IpamError> {
        let mut ops = Vec::new();
        let akey = Key::Affinity { host: node.to_string(), cidr };
        if let Some((_, rev)) = self.get::<Affinity>(&akey)? {
            ops.push(Op::Delete { key: akey, rev });
        }
        let mut deleted = false;
        if let Some((mut block, rev)) = self.block(cidr)?.filter(|(b, _)| b.is_affine_to(node)) {
            if block.is_empty() {
                ops.push(Op::Delete { key: Key::Block(cidr), rev });
                deleted = true;
            } else {
                block.affinity = None;
                ops.push(Op::Update { key: Key::Block(cidr), value: encode(&block)?, rev });
                done.blocks_kept += 1;
            }
        }
        if deleted {
            ops.extend(self.unclaim_ops(&[cidr])?);
            done.blocks_deleted += 1;
        }
        ops.extend(self.host_blocks_op(node, |hb| {
            let listed = hb.get(&cidr).is_some();
            hb.remove(&cidr);
            listed
        })?);
        if !ops.is_empty() {
            self.commit(&ops)?;
        }
        Ok(())
    }
}
