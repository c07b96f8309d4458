//! The allocator's record cache: `prefetch` reads what an operation will need in one `get_many` (one etcd
//! round trip), every read goes through it, and typed accessors decode records straight from their text.
use super::{put, Ipam};
use crate::error::IpamError;
use datastore::ipam::block::Block;
use datastore::ipam::records::decode;
use datastore::ipam::records::{Handle, HostBlocks, HostBlocksView, PoolBlocks, PoolNames};
use datastore::resources::ippool::Pool;
use datastore::resources::workloadendpoint::WorkloadEndpoint;
use datastore::store::{Key, Op, Record, Revision};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

impl Ipam<'_> {
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
        let mut keys: Vec<Key> = names.into_iter().map(Key::pool).collect();
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

    /// Runs `f` on a record, read through the cache.
    pub(super) fn with_record<R>(&self, key: &Key, f: impl FnOnce(Option<&Record>) -> R) -> Result<R, IpamError> {
        if !self.cache.borrow().contains_key(key) {
            let r = self.store.get(key)?;
            self.cache.borrow_mut().insert(key.clone(), r);
        }
        Ok(f(self.cache.borrow().get(key).and_then(Option::as_ref)))
    }

    /// Decodes a record (read through the cache) straight from its JSON text.
    pub(super) fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<(T, Revision)>, IpamError> {
        self.with_record(key, |r| match r {
            None => Ok(None),
            Some(r) => {
                let v = decode(key, &r.value)?;
                Ok(Some((v, r.rev)))
            }
        })?
    }

    /// Decodes the host index as a view borrowing the record's text and hands it to `f`.
    pub(super) fn with_host_view<R>(&self, host: &str, f: impl FnOnce(&HostBlocksView) -> R) -> Result<Option<R>, IpamError> {
        let key = Key::HostBlocks(host.to_string());
        self.with_record(&key, |r| match r {
            None => Ok(None),
            Some(r) => match r.value.decode::<HostBlocksView>() {
                Ok(view) => Ok(Some(f(&view))),
                Err(e) => Err(IpamError::corrupt(&key, e)),
            },
        })?
    }

    /// The host's confirmed blocks not marked full, in claim order: what an ADD tries first. Only their CIDRs
    /// are parsed; one that does not parse is left for the full walk (which reports the index as corrupt).
    pub(super) fn open_blocks(&self, host: &str) -> Result<Vec<IpNet>, IpamError> {
        let open =
            self.with_host_view(host, |view| view.blocks.iter().filter(|e| e.confirmed && !e.full).filter_map(|e| e.cidr.parse().ok()).collect())?;
        Ok(open.unwrap_or_default())
    }

    /// A block record, refused as corrupt unless its invariants hold (the allocator indexes by them).
    pub(super) fn block(&self, cidr: IpNet) -> Result<Option<(Block, Revision)>, IpamError> {
        let key = Key::Block(cidr);
        match self.get::<Block>(&key)? {
            Some((b, _)) if b.cidr != cidr => Err(IpamError::corrupt(&key, format!("holds block {}", b.cidr))),
            Some((b, rev)) => match b.validate() {
                Ok(()) => Ok(Some((b, rev))),
                Err(reason) => Err(IpamError::corrupt(&key, reason)),
            },
            None => Ok(None),
        }
    }

    /// A handle record, through the read cache.
    pub fn handle(&self, key: &Key) -> Result<Option<Handle>, IpamError> {
        Ok(self.get::<Handle>(key)?.map(|h| h.0))
    }

    pub(super) fn host_blocks(&self, node: &str) -> Result<(HostBlocks, Option<Revision>), IpamError> {
        Ok(match self.get::<HostBlocks>(&Key::HostBlocks(node.to_string()))? {
            Some((hb, rev)) => (hb, Some(rev)),
            None => (HostBlocks::default(), None),
        })
    }

    pub(super) fn pool_blocks(&self, pool: &Pool) -> Result<(PoolBlocks, Option<Revision>), IpamError> {
        Ok(match self.get::<PoolBlocks>(&Key::PoolBlocks(pool.cidr))? {
            Some((pb, rev)) => (pb, Some(rev)),
            None => (PoolBlocks { block_size: pool.block_size, ..Default::default() }, None),
        })
    }

    /// The attachment record at `key`, through the read cache.
    pub fn endpoint(&self, key: &Key) -> Result<Option<(WorkloadEndpoint, Revision)>, IpamError> {
        self.get(key)
    }

    /// Read-modify-write of the host index: `edit` changes it and says whether it did; the write (create or
    /// compare-and-swap update) if so.
    pub(super) fn host_blocks_op(&self, host: &str, edit: impl FnOnce(&mut HostBlocks) -> bool) -> Result<Option<Op>, IpamError> {
        let (mut hb, rev) = self.host_blocks(host)?;
        if !edit(&mut hb) {
            return Ok(None);
        }
        put(Key::HostBlocks(host.to_string()), rev, &hb).map(Some)
    }

    /// Read-modify-write of a pool's claimed-block index, as `host_blocks_op`.
    pub(super) fn pool_blocks_op(&self, pool: &Pool, edit: impl FnOnce(&mut PoolBlocks) -> bool) -> Result<Option<Op>, IpamError> {
        let (mut pb, rev) = self.pool_blocks(pool)?;
        if !edit(&mut pb) {
            return Ok(None);
        }
        put(Key::PoolBlocks(pool.cidr), rev, &pb).map(Some)
    }

    /// The labels of the Node resource named `node`, if there is one: what pool nodeSelectors are evaluated
    /// against, as Calico does. Only the labels are read, so a Node with fields this build does not know
    /// does not fail an ADD.
    pub fn node_labels(&self, node: &str) -> Result<Option<BTreeMap<String, String>>, IpamError> {
        #[derive(serde::Deserialize)]
        struct Labels {
            #[serde(default)]
            labels: BTreeMap<String, String>,
        }
        #[derive(serde::Deserialize)]
        struct NodeLabels {
            metadata: Labels,
        }
        Ok(self.get::<NodeLabels>(&node_key(node))?.map(|(n, _)| n.metadata.labels))
    }
}

/// `/calico/resources/v3/projectcalico.org/nodes/<node>`
pub fn node_key(node: &str) -> Key {
    Key::resource(&datastore::resources::kinds::NODE, node)
}
