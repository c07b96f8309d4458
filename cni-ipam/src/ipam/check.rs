//! Store consistency check (`cni-ipam check`, and what the crash tests assert): every record decodes, every
//! block keeps its invariants, handles count exactly what the blocks hold, no address is in two blocks,
//! confirmed affinities and index entries point at blocks affine to their host, every block is indexed,
//! every attachment record's addresses are held by its attachment's handle and no address is in two records.
use crate::error::IpamError;
use datastore::ipam::block::Block;
use datastore::ipam::records::{Affinity, Handle, HostBlocks, PoolBlocks, PoolNames};
use datastore::resources::ippool::Pool;
use datastore::resources::workloadendpoint::WorkloadEndpoint;
use datastore::store::{Json, Key, Kind, Store};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Default)]
pub struct Report {
    pub blocks: usize,
    pub handles: usize,
    pub allocations: usize,
    /// Attachment records, by key.
    pub endpoints: BTreeMap<Key, WorkloadEndpoint>,
    pub problems: Vec<String>,
}

/// Decodes a record, noting it as a problem if it does not decode.
fn decode_or_note<T: DeserializeOwned>(key: &Key, v: Json, problems: &mut Vec<String>) -> Option<T> {
    v.decode().map_err(|e| problems.push(format!("{key}: does not decode: {e}"))).ok()
}

pub fn check_store(store: &dyn Store) -> Result<Report, IpamError> {
    let mut r = Report::default();
    let p = &mut r.problems;
    let mut blocks: BTreeMap<IpNet, Block> = BTreeMap::new();
    for (key, rec) in store.list(Kind::Block)? {
        let Some(b) = decode_or_note::<Block>(&key, rec.value, p) else { continue };
        if key != Key::Block(b.cidr) {
            p.push(format!("{key}: holds block {}", b.cidr));
        }
        if let Err(e) = b.validate() {
            p.push(format!("{key}: {e}"));
        }
        blocks.insert(b.cidr, b);
    }
    r.blocks = blocks.len();
    let cidrs: Vec<IpNet> = blocks.keys().copied().collect();
    for (i, a) in cidrs.iter().enumerate() {
        for b in &cidrs[i + 1..] {
            if a.contains(b) || b.contains(a) {
                p.push(format!("blocks {a} and {b} overlap: their addresses could be handed out twice"));
            }
        }
    }

    // What the blocks say each handle holds.
    let mut held: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for b in blocks.values() {
        for idx in b.allocations.iter().flatten() {
            r.allocations += 1;
            let handle = b.attributes.get(*idx).and_then(|a| a.handle_id.clone()).unwrap_or_default();
            *held.entry(handle).or_default().entry(b.cidr.to_string()).or_default() += 1;
        }
    }
    let mut handles: BTreeMap<String, Handle> = BTreeMap::new();
    for (key, rec) in store.list(Kind::Handle)? {
        let Key::Handle(id) = &key else { continue };
        if let Some(h) = decode_or_note::<Handle>(&key, rec.value, p) {
            handles.insert(id.clone(), h);
        }
    }
    r.handles = handles.len();
    for (id, h) in &handles {
        let counts: BTreeMap<String, u64> = h.block.iter().filter(|(_, n)| **n > 0).map(|(k, v)| (k.clone(), *v)).collect();
        let actual = held.get(id).cloned().unwrap_or_default();
        if counts != actual {
            p.push(format!("handle {id:?} counts {counts:?} but its blocks hold {actual:?}"));
        }
    }
    for id in held.keys() {
        if !handles.contains_key(id) {
            p.push(format!("addresses held by handle {id:?}, which has no handle record"));
        }
    }

    // Attachment records: each address held by the record's own handle, none in two records.
    let holder = |ip: IpAddr| -> Option<String> {
        let b = blocks.values().find(|b| b.cidr.contains(&ip))?;
        b.ordinal(ip).and_then(|o| b.owner_of(o)).and_then(|a| a.handle_id.clone())
    };
    let mut recorded: BTreeMap<IpAddr, Key> = BTreeMap::new();
    for (key, rec) in store.list(Kind::Resource(&datastore::resources::kinds::WORKLOAD_ENDPOINT))? {
        let Some(ep) = decode_or_note::<WorkloadEndpoint>(&key, rec.value, p) else { continue };
        let Key::Resource { namespace, name, .. } = &key else { continue };
        if ep.metadata.namespace != *namespace || ep.metadata.name != *name {
            p.push(format!("{key}: holds the record of {}/{}", ep.metadata.namespace, ep.metadata.name));
        }
        let handle = ep.attachment().handle_id();
        for net in &ep.spec.ip_networks {
            let ip = net.addr();
            match holder(ip) {
                Some(h) if h == handle => {}
                Some(h) => p.push(format!("{key}: lists {ip}, which handle {h:?} holds, not the attachment's {handle:?}")),
                None => p.push(format!("{key}: lists {ip}, which is not allocated: the address could be handed out twice")),
            }
            if let Some(other) = recorded.insert(ip, key.clone()) {
                p.push(format!("{ip} is in two attachment records: {other} and {key}"));
            }
        }
        r.endpoints.insert(key, ep);
    }

    for (key, rec) in store.list(Kind::Affinity)? {
        let Key::Affinity { host, cidr } = &key else { continue };
        let Some(a) = decode_or_note::<Affinity>(&key, rec.value, p) else { continue };
        let confirmed = a.state.is_empty() || a.state == "confirmed";
        if confirmed && !blocks.get(cidr).is_some_and(|b| b.is_affine_to(host)) {
            p.push(format!("{key}: confirmed, but block {cidr} is not affine to {host}"));
        }
    }
    for (key, rec) in store.list(Kind::HostBlocks)? {
        let Key::HostBlocks(host) = &key else { continue };
        let Some(hb) = decode_or_note::<HostBlocks>(&key, rec.value, p) else { continue };
        for e in hb.blocks.iter().filter(|e| e.confirmed) {
            if !blocks.get(&e.cidr).is_some_and(|b| b.is_affine_to(host)) {
                p.push(format!("{key}: lists {} as confirmed, but that block is not affine to {host}", e.cidr));
            }
        }
    }

    let names = match store.get(&Key::PoolNames)? {
        Some(rec) => decode_or_note::<PoolNames>(&Key::PoolNames, rec.value, p).map(|n| n.names).unwrap_or_default(),
        None => Vec::new(),
    };
    let mut pools = Vec::new();
    for name in names {
        let key = Key::pool(name);
        match store.get(&key)? {
            None => p.push(format!("pool index names {key}, which does not exist")),
            Some(rec) => match decode_or_note(&key, rec.value, p).map(|res| Pool::from_resource(&res)) {
                Some(Ok(pool)) => pools.push(pool),
                Some(Err(e)) => p.push(format!("{key}: {e}")),
                None => {}
            },
        }
    }
    if pools.is_empty() {
        pools.push(Pool::default_v4());
    }
    for pool in &pools {
        let index = match store.get(&Key::PoolBlocks(pool.cidr))? {
            Some(rec) => decode_or_note::<PoolBlocks>(&Key::PoolBlocks(pool.cidr), rec.value, p),
            None => Some(PoolBlocks::default()),
        };
        let Some(index) = index else { continue };
        for cidr in blocks.keys().filter(|c| pool.contains_block(c)) {
            if !index.claimed.contains(pool.block_index(cidr.network())) {
                p.push(format!("block {cidr} exists but pool {} does not index it as claimed", pool.name));
            }
        }
    }
    Ok(r)
}
