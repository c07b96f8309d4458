//! Operator changes to pools and the IPAM config: validated in full before anything is written, then
//! committed at once, so a bad file leaves the store untouched; and what goes with a deleted Node.
use crate::error::IpamError;
use crate::ipam::allocator::{HostRemoval, Ipam};
use datastore::ipam::block::Block;
use datastore::ipam::records::{decode, encode, load, HostBlocks, IpamConfig, PoolBlocks, PoolNames};
use datastore::resources::ippool::{Pool, PoolResource};
use datastore::resources::kinds::{self, KindInfo};
use datastore::store::{Json, Key, Kind, Op, Revision, Store};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;

/// What an operator file may contain: v3 resources, as `calicoctl apply -f` takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub pools: Vec<Pool>,
    pub config: Option<IpamConfig>,
}

#[derive(Deserialize)]
struct ConfigResource {
    spec: IpamConfig,
}

/// Parses a file holding one resource, a JSON array of them, or a `{"kind": "List", "items": [...]}`.
/// Kinds: `IPPool`, `IPAMConfiguration` (also `IPAMConfig`).
pub fn parse_resources(text: &str) -> Result<Resources, IpamError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| IpamError::Config(format!("pool file is not valid JSON: {e}")))?;
    let items = match &v {
        serde_json::Value::Array(items) => items.clone(),
        serde_json::Value::Object(o) if o.contains_key("items") => match &o["items"] {
            serde_json::Value::Array(items) => items.clone(),
            _ => return Err(IpamError::Config("\"items\" must be a list".into())),
        },
        serde_json::Value::Object(_) => vec![v.clone()],
        _ => return Err(IpamError::Config("pool file must hold a resource, a list or {\"items\": [...]}".into())),
    };
    let mut out = Resources { pools: Vec::new(), config: None };
    for (i, item) in items.iter().enumerate() {
        let at = |e: serde_path_to_error::Error<serde_json::Error>| IpamError::Config(format!("items[{i}].{}: {}", e.path(), e.inner()));
        match item["kind"].as_str() {
            Some("IPPool") => {
                let res: PoolResource = serde_path_to_error::deserialize(item).map_err(at)?;
                out.pools.push(Pool::from_resource(&res)?);
            }
            Some("IPAMConfiguration" | "IPAMConfig") => {
                let res: ConfigResource = serde_path_to_error::deserialize(item).map_err(at)?;
                res.spec.validate()?;
                if out.config.replace(res.spec).is_some() {
                    return Err(IpamError::Config("more than one IPAMConfiguration in the file".into()));
                }
            }
            other => return Err(IpamError::Config(format!("items[{i}]: unsupported kind {other:?} (IPPool or IPAMConfiguration)"))),
        }
    }
    for (i, a) in out.pools.iter().enumerate() {
        for b in &out.pools[i + 1..] {
            if a.name == b.name {
                return Err(IpamError::Config(format!("pool {:?} appears twice", a.name)));
            }
            check_overlap(a, b)?;
        }
    }
    Ok(out)
}

fn check_overlap(a: &Pool, b: &Pool) -> Result<(), IpamError> {
    if a.cidr.contains(&b.cidr) || b.cidr.contains(&a.cidr) {
        return Err(IpamError::InvalidPool { name: a.name.clone(), reason: format!("cidr {} overlaps pool {:?} ({})", a.cidr, b.name, b.cidr) });
    }
    Ok(())
}

/// The stored pools (not the implicit default).
pub fn stored_pools(store: &dyn Store) -> Result<Vec<Pool>, IpamError> {
    let names = load::<PoolNames>(store, &Key::PoolNames)?.map(|n| n.0.names).unwrap_or_default();
    let mut pools = Vec::new();
    for name in names {
        let key = Key::pool(name);
        if let Some((res, _)) = load::<PoolResource>(store, &key)? {
            pools.push(Pool::from_resource(&res).map_err(|e| IpamError::corrupt(&key, e))?);
        }
    }
    Ok(pools)
}

/// Creates or updates pools and the config in one commit. A pool's cidr and blockSize cannot change (as in
/// Calico: blocks were carved with them); pools may not overlap.
pub fn apply(store: &mut dyn Store, res: &Resources) -> Result<(), IpamError> {
    let existing = stored_pools(store)?;
    let names_rec = load::<PoolNames>(store, &Key::PoolNames)?;
    let mut names = names_rec.as_ref().map(|n| n.0.names.clone()).unwrap_or_default();
    let mut ops = Vec::new();
    for pool in &res.pools {
        for other in existing.iter().filter(|o| o.name != pool.name) {
            if !res.pools.iter().any(|p| p.name == other.name && p.cidr == pool.cidr) {
                check_overlap(pool, other)?;
            }
        }
        let key = Key::pool(pool.name.clone());
        let value = encode(&pool.to_resource())?;
        ops.push(match stored_revision_unchanged(store, pool)? {
            Some(rev) => Op::Update { key, value, rev },
            None => Op::Create { key, value },
        });
        if !names.contains(&pool.name) {
            names.push(pool.name.clone());
        }
    }
    if !res.pools.is_empty() {
        let value = encode(&PoolNames { names })?;
        ops.push(match names_rec {
            Some((_, rev)) => Op::Update { key: Key::PoolNames, value, rev },
            None => Op::Create { key: Key::PoolNames, value },
        });
    }
    if let Some(cfg) = &res.config {
        cfg.validate()?;
        let value = encode(cfg)?;
        ops.push(match store.get(&Key::IpamConfig)? {
            Some(r) => Op::Update { key: Key::IpamConfig, value, rev: r.rev },
            None => Op::Create { key: Key::IpamConfig, value },
        });
        // The IPAMConfiguration resource, where one is stored, says the same (see `resource_ops`).
        let key = Key::resource(&kinds::IPAM_CONFIGURATION, IPAM_CONFIGURATION_NAME);
        if let Some(r) = store.get(&key)? {
            let mut doc = r.value.to_value();
            if let Some(spec) = doc.as_object_mut().map(|d| d.entry("spec").or_insert_with(|| serde_json::json!({}))) {
                spec["strictAffinity"] = cfg.strict_affinity.into();
                spec["autoAllocateBlocks"] = cfg.auto_allocate_blocks.into();
                spec["maxBlocksPerHost"] = cfg.max_blocks_per_host.into();
            }
            ops.push(Op::Update { key, value: doc.into(), rev: r.rev });
        }
    }
    if !ops.is_empty() {
        store.commit(&ops)?;
    }
    Ok(())
}

/// Rebuilds the pool and host indexes from the block records (`cni-ipam index rebuild`): for a store whose
/// index records were lost or edited by hand. Scans every block; never needed on the ADD path.
pub fn rebuild_indexes(store: &mut dyn Store) -> Result<usize, IpamError> {
    let mut pools = stored_pools(store)?;
    if pools.is_empty() {
        pools.push(Pool::default_v4());
    }
    let mut claimed: BTreeMap<IpNet, PoolBlocks> = BTreeMap::new();
    let mut hosts: BTreeMap<String, HostBlocks> = BTreeMap::new();
    let mut blocks = 0;
    for (key, rec) in store.list(Kind::Block)? {
        let block: Block = decode(&key, &rec.value)?;
        blocks += 1;
        if let Some(pool) = pools.iter().find(|p| p.contains_block(&block.cidr)) {
            let pb = claimed.entry(pool.cidr).or_insert_with(|| PoolBlocks { block_size: pool.block_size, ..Default::default() });
            pb.claimed.insert(pool.block_index(block.cidr.network()));
        }
        if let Some(host) = block.affine_host() {
            hosts.entry(host.to_string()).or_default().set(block.cidr, true);
        }
    }
    let mut ops = Vec::new();
    for pool in &pools {
        let pb = claimed.remove(&pool.cidr).unwrap_or(PoolBlocks { block_size: pool.block_size, ..Default::default() });
        ops.push(upsert(store, Key::PoolBlocks(pool.cidr), encode(&pb)?)?);
    }
    for (key, _) in store.list(Kind::HostBlocks)? {
        if let Key::HostBlocks(host) = &key {
            hosts.entry(host.clone()).or_default();
        }
    }
    for (host, hb) in hosts {
        ops.push(upsert(store, Key::HostBlocks(host), encode(&hb)?)?);
    }
    store.commit(&ops)?;
    Ok(blocks)
}

/// The IPAM config as stored, Calico's defaults when absent.
pub fn ipam_config(store: &dyn Store) -> Result<IpamConfig, IpamError> {
    Ok(load::<IpamConfig>(store, &Key::IpamConfig)?.map(|c| c.0).unwrap_or_default())
}

/// Read-modify-write of the IPAM config, validated before it is written; returns the new config.
pub fn update_config(store: &mut dyn Store, edit: impl FnOnce(&mut IpamConfig)) -> Result<IpamConfig, IpamError> {
    let mut cfg = ipam_config(store)?;
    edit(&mut cfg);
    apply(store, &Resources { pools: vec![], config: Some(cfg) })?;
    Ok(cfg)
}

/// Deletes a pool whose blocks hold no address (with `force`, also one whose blocks do: those addresses
/// stay in their blocks, as calicoctl leaves them, until released). Empty blocks go with the pool, together
/// with their affinities and index entries, in one commit. Returns the number of records changed.
pub fn delete_pool(store: &mut dyn Store, name: &str, force: bool) -> Result<usize, IpamError> {
    let ops = pool_delete_ops(store, name, None, force)?;
    store.commit(&ops)?;
    Ok(ops.len())
}

/// The commit `delete_pool` makes; with `rev`, the pool must still be at that revision.
fn pool_delete_ops(store: &dyn Store, name: &str, rev: Option<Revision>, force: bool) -> Result<Vec<Op>, IpamError> {
    let Some((res, stored_rev)) = load::<PoolResource>(store, &Key::pool(name))? else {
        return Err(IpamError::PoolNotFound(name.to_string()));
    };
    let pool = Pool::from_resource(&res)?;
    let mut ops = vec![Op::Delete { key: Key::pool(pool.name.clone()), rev: rev.unwrap_or(stored_rev) }];
    if let Some((mut names, nrev)) = load::<PoolNames>(store, &Key::PoolNames)? {
        names.names.retain(|n| *n != pool.name);
        ops.push(Op::Update { key: Key::PoolNames, value: encode(&names)?, rev: nrev });
    }
    if let Some((_, prev)) = load::<PoolBlocks>(store, &Key::PoolBlocks(pool.cidr))? {
        ops.push(Op::Delete { key: Key::PoolBlocks(pool.cidr), rev: prev });
    }
    let mut used = 0;
    let mut hosts: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    for (key, rec) in store.list(Kind::Block)? {
        let b: Block = decode(&key, &rec.value)?;
        if !pool.contains_block(&b.cidr) {
            continue;
        }
        if !b.is_empty() {
            used += b.in_use();
            continue;
        }
        ops.push(Op::Delete { key, rev: rec.rev });
        if let Some(host) = b.affine_host() {
            hosts.entry(host.to_string()).or_default().push(b.cidr);
        }
    }
    if used > 0 && !force {
        return Err(IpamError::Config(format!("pool {name} still has {used} addresses in use; release them first or pass --force")));
    }
    for (host, cidrs) in hosts {
        for cidr in &cidrs {
            let akey = Key::Affinity { host: host.clone(), cidr: *cidr };
            if let Some(r) = store.get(&akey)? {
                ops.push(Op::Delete { key: akey, rev: r.rev });
            }
        }
        if let Some((mut hb, hrev)) = load::<HostBlocks>(store, &Key::HostBlocks(host.clone()))? {
            for cidr in &cidrs {
                hb.remove(cidr);
            }
            ops.push(Op::Update { key: Key::HostBlocks(host), value: encode(&hb)?, rev: hrev });
        }
    }
    Ok(ops)
}

/// What `remove_node` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NodeRemoval {
    pub ipam: HostRemoval,
    /// Attachment records, node-scoped BGPPeers and the `node.<name>` BGPConfiguration deleted.
    pub resources: usize,
}

/// What goes with a Node resource before the resource itself (Calico's node delete, libcalico-go
/// `clientv3/node.go`): the node's addresses, attachment records and affinities (`Ipam::remove_host`), then
/// in one commit any attachment record still naming the node, the BGPPeers scoped to it (`spec.node`) and its
/// `node.<name>` BGPConfiguration. Every step leaves the store consistent; running it again finishes a
/// removal cut short. Records are matched on their raw `spec.node`, so a malformed one does not block it.
pub fn remove_node(store: &mut dyn Store, node: &str) -> Result<NodeRemoval, IpamError> {
    let ipam = Ipam::new(store)?.remove_host(node)?;
    let mut ops = Vec::new();
    for kind in [&kinds::WORKLOAD_ENDPOINT, &kinds::BGP_PEER] {
        for (key, rec) in store.list(Kind::Resource(kind))? {
            if rec.value.to_value()["spec"]["node"].as_str() == Some(node) {
                ops.push(Op::Delete { key, rev: rec.rev });
            }
        }
    }
    let config = Key::resource(&kinds::BGP_CONFIGURATION, format!("node.{node}"));
    if let Some(rec) = store.get(&config)? {
        ops.push(Op::Delete { key: config, rev: rec.rev });
    }
    if !ops.is_empty() {
        store.commit(&ops)?;
    }
    Ok(NodeRemoval { ipam, resources: ops.len() })
}

fn upsert(store: &dyn Store, key: Key, value: Json) -> Result<Op, IpamError> {
    Ok(match store.get(&key)? {
        Some(r) => Op::Update { key, value, rev: r.rev },
        None => Op::Create { key, value },
    })
}

/// The one name Calico allows for the IPAMConfiguration resource.
pub const IPAM_CONFIGURATION_NAME: &str = "default";

/// The commit that stores (`value`) or deletes (`None`) the v3 resource at `key` (calicoctl's writes), at
/// revision `rev` (`None`: the record must not exist yet), with what IPAM keeps beside the resource:
/// - IPPool: the pool index; refused when the pool overlaps another, when a stored pool's `cidr` or
///   `blockSize` would change, or (delete) while its blocks hold addresses;
/// - IPAMConfiguration (named `default` only): the IPAM config record the allocator reads
///   (`/calico/ipam/v2/config`), with Calico's cross-field rules.
///
/// Every other kind is its one record. `value` is the whole document as it is to be stored.
pub fn resource_ops(store: &dyn Store, key: &Key, value: Option<Json>, rev: Option<Revision>) -> Result<Vec<Op>, IpamError> {
    let Key::Resource { kind, name, .. } = key else {
        return Err(IpamError::Internal(format!("{key} is not a resource")));
    };
    let record = match (value.clone(), rev) {
        (Some(value), None) => Op::Create { key: key.clone(), value },
        (Some(value), Some(rev)) => Op::Update { key: key.clone(), value, rev },
        (None, Some(rev)) => Op::Delete { key: key.clone(), rev },
        (None, None) => return Err(IpamError::Internal(format!("deleting {key} needs its revision"))),
    };
    let is = |k: &KindInfo| **kind == *k;
    if is(&kinds::IPPOOL) {
        return match value {
            Some(value) => pool_write_ops(store, record, &value),
            None => pool_delete_ops(store, name, rev, false),
        };
    }
    if is(&kinds::IPAM_CONFIGURATION) {
        if name != IPAM_CONFIGURATION_NAME {
            return Err(IpamError::InvalidIpamConfig(format!(
                "metadata.name: Cannot create an IPAMConfiguration resource with a name other than \"default\" (got {name:?})"
            )));
        }
        let current = store.get(&Key::IpamConfig)?;
        let config_op = match (value, current) {
            (Some(value), current) => {
                let cfg = value.decode::<ConfigResource>().map_err(|e| IpamError::InvalidIpamConfig(format!("spec: {e}")))?.spec;
                cfg.validate()?;
                let value = encode(&cfg)?;
                Some(match current {
                    Some(r) => Op::Update { key: Key::IpamConfig, value, rev: r.rev },
                    None => Op::Create { key: Key::IpamConfig, value },
                })
            }
            (None, Some(r)) => Some(Op::Delete { key: Key::IpamConfig, rev: r.rev }),
            (None, None) => None,
        };
        return Ok(std::iter::once(record).chain(config_op).collect());
    }
    Ok(vec![record])
}

/// The revision of the stored pool of `pool`'s name (None: there is none), refused when its `cidr` or
/// `blockSize` differ: its blocks were carved with them.
fn stored_revision_unchanged(store: &dyn Store, pool: &Pool) -> Result<Option<Revision>, IpamError> {
    let key = Key::pool(pool.name.clone());
    let Some((old, rev)) = load::<PoolResource>(store, &key)? else { return Ok(None) };
    let old = Pool::from_resource(&old).map_err(|e| IpamError::corrupt(&key, e))?;
    if old.cidr != pool.cidr || old.block_size != pool.block_size {
        return Err(IpamError::InvalidPool {
            name: pool.name.clone(),
            reason: format!(
                "spec.cidr and spec.blockSize cannot change (stored {}/{}, given {}/{})",
                old.cidr, old.block_size, pool.cidr, pool.block_size
            ),
        });
    }
    Ok(Some(rev))
}

/// A pool's record and its entry in the pool index, after the checks `apply` makes.
fn pool_write_ops(store: &dyn Store, record: Op, value: &Json) -> Result<Vec<Op>, IpamError> {
    let res: PoolResource = value.decode().map_err(|e| IpamError::InvalidPool { name: record.key().to_string(), reason: e.to_string() })?;
    let pool = Pool::from_resource(&res)?;
    for other in stored_pools(store)?.iter().filter(|o| o.name != pool.name) {
        check_overlap(&pool, other)?;
    }
    stored_revision_unchanged(store, &pool)?;
    let mut ops = vec![record];
    let names_rec = load::<PoolNames>(store, &Key::PoolNames)?;
    let mut names = names_rec.as_ref().map(|n| n.0.names.clone()).unwrap_or_default();
    if !names.contains(&pool.name) {
        names.push(pool.name.clone());
        let value = encode(&PoolNames { names })?;
        ops.push(match names_rec {
            Some((_, rev)) => Op::Update { key: Key::PoolNames, value, rev },
            None => Op::Create { key: Key::PoolNames, value },
        });
    }
    Ok(ops)
}
