//! The IPAM record store: whole JSON records under Calico's etcd key layout, changed only by compare-and-swap
//! on revisions. `Datastore::lock` opens a session that holds the node-wide lock; every read and write goes
//! through that session. Implementations: `file` (the local default), `etcd` (etcd v3) and, in test builds
//! only, `mem` (unit tests; `cfg(test)` here, the `testing` feature for other crates' tests). A long-running
//! reader follows a store without that lock: `Watchable::snapshot` (some key prefixes at one store revision)
//! and `Watchable::watch` (the changes after it, or `Resync` when that history is gone); see `watch.rs`.
pub mod etcd;
pub mod file;
#[cfg(any(test, feature = "testing"))]
pub mod mem;
pub mod watch;

use crate::resources::kinds::{self, kind_by_plural, KindInfo, RESOURCE_PREFIX};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

pub use etcd::{EtcdOptions, EtcdStore};
pub use file::FileStore;
#[cfg(any(test, feature = "testing"))]
pub use mem::MemStore;
pub use watch::{Change, Snapshot, Watchable, Watched, Watcher};

/// Version of one record (changes on every write), or a store-wide revision counting commits (see `watch.rs`).
/// 0 is never a record's revision.
pub type Revision = u64;

/// A record and the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub value: Json,
    pub rev: Revision,
}

/// A record's value as JSON text, checked to be well-formed when it was made. Readers decode it straight into
/// their typed structs: no `serde_json::Value` tree is built in between, and a copy is one string.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Json(Box<RawValue>);

impl Json {
    pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Json, serde_json::Error> {
        serde_json::value::to_raw_value(v).map(Json)
    }

    /// Checks that `s` is one JSON value.
    pub fn parse(s: String) -> Result<Json, serde_json::Error> {
        RawValue::from_string(s).map(Json)
    }

    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The value as a tree, for callers that edit records they do not know the type of (tests, tools).
    pub fn to_value(&self) -> Value {
        // Well-formed by construction, so this only fails on nesting deeper than serde_json's limit.
        self.decode().unwrap_or(Value::Null)
    }
}

impl From<Value> for Json {
    fn from(v: Value) -> Json {
        Json(serde_json::value::to_raw_value(&v).unwrap_or_else(|_| unreachable!("a Value always serialises")))
    }
}

/// Same text; two encodings of equal values may differ (as etcd compares values too).
impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.as_str() == other.as_str()
    }
}

/// Equal as values, whatever the spacing and key order of the text.
impl PartialEq<Value> for Json {
    fn eq(&self, other: &Value) -> bool {
        self.decode::<Value>().is_ok_and(|v| v == *other)
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a record is about. `path()` gives Calico's etcd key (or, for the three indexes that Calico does not
/// have, a key under `/calico-rs/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26`
    Block(IpNet),
    /// `/calico/ipam/v2/host/<host>/ipv4/block/10.244.1.0-26`
    Affinity { host: String, cidr: IpNet },
    /// `/calico/ipam/v2/handle/<id>`
    Handle(String),
    /// `/calico/ipam/v2/config`
    IpamConfig,
    /// A `projectcalico.org/v3` resource: `/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>`
    /// (`namespace` empty for cluster-scoped kinds).
    Resource { kind: &'static KindInfo, namespace: String, name: String },
    /// Index: names of all pools, so an ADD never lists the pool directory.
    PoolNames,
    /// Index: the blocks affine to one host (both families), so an ADD never lists affinities.
    HostBlocks(String),
    /// Index: which block indices of a pool are claimed, so a free block is found in O(log n).
    PoolBlocks(IpNet),
}

/// The kind of a key, for `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Block,
    Affinity,
    Handle,
    IpamConfig,
    Resource(&'static KindInfo),
    PoolNames,
    HostBlocks,
    PoolBlocks,
}

const BLOCK_PREFIX: &str = "/calico/ipam/v2/assignment/";
const HOST_PREFIX: &str = "/calico/ipam/v2/host/";
const HANDLE_PREFIX: &str = "/calico/ipam/v2/handle/";
const CONFIG_KEY: &str = "/calico/ipam/v2/config";
const POOL_NAMES_KEY: &str = "/calico-rs/ipam/v1/pools";
const HOST_BLOCKS_PREFIX: &str = "/calico-rs/ipam/v1/host/";
const POOL_BLOCKS_PREFIX: &str = "/calico-rs/ipam/v1/poolblocks/";

fn family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ipv4",
        IpNet::V6(_) => "ipv6",
    }
}

/// CIDR as Calico writes it inside keys: `/` becomes `-`.
pub fn cidr_for_key(net: &IpNet) -> String {
    format!("{}-{}", net.network(), net.prefix_len())
}

fn parse_key_cidr(s: &str) -> Option<IpNet> {
    let (addr, len) = s.rsplit_once('-')?;
    let net = IpNet::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
    (net.network() == net.addr()).then_some(net)
}

impl Key {
    pub fn kind(&self) -> Kind {
        match self {
            Key::Block(_) => Kind::Block,
            Key::Affinity { .. } => Kind::Affinity,
            Key::Handle(_) => Kind::Handle,
            Key::IpamConfig => Kind::IpamConfig,
            Key::Resource { kind, .. } => Kind::Resource(kind),
            Key::PoolNames => Kind::PoolNames,
            Key::HostBlocks(_) => Kind::HostBlocks,
            Key::PoolBlocks(_) => Kind::PoolBlocks,
        }
    }

    /// The etcd-style key path.
    pub fn path(&self) -> String {
        match self {
            Key::Block(net) => format!("{BLOCK_PREFIX}{}/block/{}", family(net), cidr_for_key(net)),
            Key::Affinity { host, cidr } => {
                format!("{HOST_PREFIX}{host}/{}/block/{}", family(cidr), cidr_for_key(cidr))
            }
            Key::Handle(id) => format!("{HANDLE_PREFIX}{id}"),
            Key::IpamConfig => CONFIG_KEY.to_string(),
            Key::Resource { kind, namespace, name } if kind.namespaced => format!("{}{namespace}/{name}", kind.prefix),
            Key::Resource { kind, name, .. } => format!("{}{name}", kind.prefix),
            Key::PoolNames => POOL_NAMES_KEY.to_string(),
            Key::HostBlocks(host) => format!("{HOST_BLOCKS_PREFIX}{host}"),
            Key::PoolBlocks(net) => format!("{POOL_BLOCKS_PREFIX}{}/{}", family(net), cidr_for_key(net)),
        }
    }

    /// Inverse of `path`; `None` for anything that is not exactly one of our keys.
    pub fn parse(path: &str) -> Option<Key> {
        if path == CONFIG_KEY {
            return Some(Key::IpamConfig);
        }
        if path == POOL_NAMES_KEY {
            return Some(Key::PoolNames);
        }
        let key = if let Some(rest) = path.strip_prefix(BLOCK_PREFIX) {
            let (fam, cidr) = rest.split_once("/block/")?;
            Key::Block(parse_family_cidr(fam, cidr)?)
        } else if let Some(rest) = path.strip_prefix(HOST_PREFIX) {
            let (host, rest) = rest.split_once('/')?;
            let (fam, cidr) = rest.split_once("/block/")?;
            Key::Affinity { host: host.to_string(), cidr: parse_family_cidr(fam, cidr)? }
        } else if let Some(id) = path.strip_prefix(HANDLE_PREFIX) {
            Key::Handle(id.to_string())
        } else if let Some(rest) = path.strip_prefix(RESOURCE_PREFIX) {
            let (plural, rest) = rest.split_once('/')?;
            let kind = kind_by_plural(plural)?;
            let (namespace, name) = if kind.namespaced { rest.split_once('/')? } else { ("", rest) };
            if name.is_empty() || name.contains('/') {
                return None;
            }
            Key::Resource { kind, namespace: namespace.to_string(), name: name.to_string() }
        } else if let Some(host) = path.strip_prefix(HOST_BLOCKS_PREFIX) {
            Key::HostBlocks(host.to_string())
        } else if let Some(rest) = path.strip_prefix(POOL_BLOCKS_PREFIX) {
            let (fam, cidr) = rest.split_once('/')?;
            Key::PoolBlocks(parse_family_cidr(fam, cidr)?)
        } else {
            return None;
        };
        // Reject paths that only parse by accident (e.g. a handle id that round-trips differently).
        (key.path() == path).then_some(key)
    }
}

fn parse_family_cidr(fam: &str, cidr: &str) -> Option<IpNet> {
    let net = parse_key_cidr(cidr)?;
    (family(&net) == fam).then_some(net)
}

impl Kind {
    /// Key-path prefix shared by every key of this kind (exact key for singletons).
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Block => BLOCK_PREFIX,
            Kind::Affinity => HOST_PREFIX,
            Kind::Handle => HANDLE_PREFIX,
            Kind::IpamConfig => CONFIG_KEY,
            Kind::Resource(kind) => kind.prefix,
            Kind::PoolNames => POOL_NAMES_KEY,
            Kind::HostBlocks => HOST_BLOCKS_PREFIX,
            Kind::PoolBlocks => POOL_BLOCKS_PREFIX,
        }
    }
}

impl Key {
    /// A cluster-scoped resource.
    pub fn resource(kind: &'static KindInfo, name: impl Into<String>) -> Key {
        Key::Resource { kind, namespace: String::new(), name: name.into() }
    }

    /// `/calico/resources/v3/projectcalico.org/ippools/<name>`
    pub fn pool(name: impl Into<String>) -> Key {
        Key::resource(&kinds::IPPOOL, name)
    }
}

/// The key-path prefix of one host's block affinities (`/calico/ipam/v2/host/<host>/`), to snapshot or watch.
pub fn affinity_prefix(host: &str) -> String {
    format!("{HOST_PREFIX}{host}/")
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// One compare-and-swap step of a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Fails unless the key is absent.
    Create { key: Key, value: Json },
    /// Fails unless the key is present at exactly `rev`.
    Update { key: Key, value: Json, rev: Revision },
    /// Fails unless the key is present at exactly `rev`.
    Delete { key: Key, rev: Revision },
}

impl Op {
    pub fn key(&self) -> &Key {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap precondition failed: someone else changed the record. Re-read and retry.
    #[error("conflict on {key}: {reason}")]
    Conflict { key: String, reason: &'static str },
    #[error("store I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("corrupt record {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("invalid store request: {0}")]
    Invalid(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    pub(crate) fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        StoreError::Io { path: path.to_string(), source }
    }
}

/// A session holding the store's node-wide lock. Reads see the latest committed state; `commit` applies all
/// its ops or none (each op checked against the record's current revision).
pub trait Store {
    fn get(&self, key: &Key) -> Result<Option<Record>, StoreError>;
    /// Several records at once, in `keys` order. Remote stores answer in one round trip.
    fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Record>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    /// True when every call is a network round trip, so callers should read ahead with `get_many` what they
    /// will probably need; local stores read lazily instead.
    fn remote(&self) -> bool {
        false
    }
    /// Every record of one kind. Scans: for operator commands and GC, never on the ADD/DEL path.
    fn list(&self, kind: Kind) -> Result<Vec<(Key, Record)>, StoreError>;
    /// Applies `ops` atomically; returns the new revision of each op's key (0 for deletes).
    fn commit(&mut self, ops: &[Op]) -> Result<Vec<Revision>, StoreError>;

    fn create(&mut self, key: &Key, value: Json) -> Result<Revision, StoreError> {
        Ok(self.commit(&[Op::Create { key: key.clone(), value }])?[0])
    }
    fn update(&mut self, key: &Key, value: Json, rev: Revision) -> Result<Revision, StoreError> {
        Ok(self.commit(&[Op::Update { key: key.clone(), value, rev }])?[0])
    }
    fn delete(&mut self, key: &Key, rev: Revision) -> Result<(), StoreError> {
        self.commit(&[Op::Delete { key: key.clone(), rev }]).map(|_| ())
    }
}

/// The CAS rule every store that checks its own preconditions applies (the file store and `MemStore`; etcd
/// checks them in its transaction's compares): `Create` needs the key absent, `Update` and `Delete` need it
/// present at exactly their `rev`.
pub(crate) fn check_precondition(op: &Op, current: Option<Revision>) -> Result<(), StoreError> {
    let reason = match (op, current) {
        (Op::Create { .. }, Some(_)) => "already exists",
        (Op::Update { .. } | Op::Delete { .. }, None) => "does not exist",
        (Op::Update { rev, .. } | Op::Delete { rev, .. }, Some(cur)) if *rev != cur => "revision changed",
        _ => return Ok(()),
    };
    Err(StoreError::Conflict { key: op.key().path(), reason })
}

/// A store that can be opened for a locked session. The lock serialises IPAM work on a node (like Calico's
/// `/var/run/calico/ipam.lock`); for the local store it also makes the store's writes exclusive.
pub trait Datastore: Send + Sync {
    fn lock(&self) -> Result<Box<dyn Store + '_>, StoreError>;
}

/// Rejects commits that name a key twice (they could not be applied atomically in a defined order).
pub(crate) fn check_distinct(ops: &[Op]) -> Result<(), StoreError> {
    for (i, op) in ops.iter().enumerate() {
        if ops[..i].iter().any(|o| o.key() == op.key()) {
            return Err(StoreError::Invalid(format!("key {} appears twice in one commit", op.key())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_match_calico_layout() {
        let b: IpNet = "10.244.1.0/26".parse().unwrap();
        let b6: IpNet = "fd00:10:244:1::/122".parse().unwrap();
        assert_eq!(Key::Block(b).path(), "/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26");
        assert_eq!(Key::Block(b6).path(), "/calico/ipam/v2/assignment/ipv6/block/fd00:10:244:1::-122");
        assert_eq!(Key::Affinity { host: "node-1".into(), cidr: b }.path(), "/calico/ipam/v2/host/node-1/ipv4/block/10.244.1.0-26");
        assert_eq!(Key::Handle("k8s-pod-network.abc".into()).path(), "/calico/ipam/v2/handle/k8s-pod-network.abc");
        assert_eq!(Key::IpamConfig.path(), "/calico/ipam/v2/config");
        assert_eq!(Key::pool("p1").path(), "/calico/resources/v3/projectcalico.org/ippools/p1");
    }

    #[test]
    fn keys_round_trip() {
        let b: IpNet = "10.244.1.0/26".parse().unwrap();
        let b6: IpNet = "fd00::/122".parse().unwrap();
        let keys = [
            Key::Block(b),
            Key::Block(b6),
            Key::Affinity { host: "n1".into(), cidr: b6 },
            Key::Handle("net.c1".into()),
            Key::IpamConfig,
            Key::pool("default-ipv4-ippool"),
            Key::Resource { kind: &kinds::WORKLOAD_ENDPOINT, namespace: "default".into(), name: "node--1-k8s-nginx-eth0".into() },
            Key::resource(&kinds::BGP_PEER, "to-rr"),
            Key::PoolNames,
            Key::HostBlocks("n1".into()),
            Key::PoolBlocks(b),
        ];
        for k in keys {
            assert_eq!(Key::parse(&k.path()), Some(k.clone()), "{k}");
            assert!(k.path().starts_with(k.kind().prefix()));
        }
        assert_eq!(Key::parse("/calico/ipam/v2/assignment/ipv4/block/10.244.1.1-26"), None);
        assert_eq!(Key::parse("/calico/ipam/v2/assignment/ipv6/block/10.244.1.0-26"), None);
        assert_eq!(Key::parse("/etc/passwd"), None);
    }
}
