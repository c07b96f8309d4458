//! The crate's one error type. Each variant knows its CNI error code (`code()`), so the mapping to the error
//! JSON happens in one place (`From<IpamError> for CniError`). Codes 100-106 are ours (CNI leaves >= 100 to
//! plugins); the README lists them.
use common::cni::{code, CniError};
use datastore::store::StoreError;
use datastore::ModelError;
use std::net::IpAddr;

pub mod ipam_code {
    pub const POOLS_EXHAUSTED: u32 = 100;
    pub const BLOCK_LIMIT: u32 = 101;
    pub const STRICT_AFFINITY: u32 = 102;
    pub const NO_POOL: u32 = 103;
    pub const ADDRESS_IN_USE: u32 = 104;
    pub const NOT_IN_POOL: u32 = 105;
    pub const STALE_RELEASE: u32 = 106;
}

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error("invalid CNI_ARGS: {0}")]
    Args(String),
    #[error("datastore_type {0:?} is not supported (\"local\" or \"etcdv3\")")]
    DatastoreNotSupported(String),
    #[error("invalid IP pool {name:?}: {reason}")]
    InvalidPool { name: String, reason: String },
    #[error("invalid IPAM configuration: {0}")]
    InvalidIpamConfig(String),
    #[error("IP pool {0:?} not found")]
    PoolNotFound(String),
    #[error("IP pool {0:?} is disabled")]
    PoolDisabled(String),
    #[error("IP pool {pool:?} does not allow {purpose} addresses (allowedUses)")]
    PoolUse { pool: String, purpose: String },
    #[error("no {family} IP pools configured")]
    NoPools { family: &'static str },
    #[error("no configured Calico pools for node {node}: no enabled {family} pool's nodeSelector matches it")]
    NoPoolForNode { node: String, family: &'static str },
    #[error("{family} pools {pools:?} are exhausted: no free address in this node's blocks, no unclaimed block, no address to borrow")]
    PoolsExhausted { family: &'static str, pools: Vec<String> },
    #[error("cannot allocate new block due to per host block limit: node {node} already has {count} {family} blocks (maxBlocksPerHost {limit})")]
    BlockLimit { node: String, family: &'static str, count: usize, limit: usize },
    #[error("no more free affine blocks and strict affinity enabled: node {node} has no free {family} address in its blocks and no block is left to claim")]
    StrictAffinity { node: String, family: &'static str },
    #[error("requested IP {ip} is in block {block}, which is affine to {owner}, and strict affinity is enabled")]
    StrictAffinityIp { ip: IpAddr, block: String, owner: String },
    #[error("requested IP {ip} is already assigned (handle {handle:?})")]
    AddressInUse { ip: IpAddr, handle: String },
    #[error("requested IP {0} is not in any enabled IP pool")]
    NotInPool(IpAddr),
    #[error("refusing to release {ip}: it was re-assigned since it was read (sequence number {expected}, now {found:?})")]
    StaleRelease { ip: IpAddr, expected: u64, found: Option<u64> },
    #[error("no IP address is allocated to handle {0:?}")]
    NoAllocation(String),
    /// The attachment's record says something the store or the runtime contradicts (CHECK, repeated ADD).
    #[error("attachment {attachment}: {reason}")]
    Attachment { attachment: String, reason: String },
    #[error("datastore: {0}")]
    Store(#[from] StoreError),
    #[error("too many concurrent IPAM changes: gave up after {attempts} attempts (last: {last})")]
    Busy { attempts: u32, last: String },
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("{0}")]
    Internal(String),
}

impl IpamError {
    /// The record at `key` is not what its kind must be.
    pub fn corrupt(key: &datastore::store::Key, reason: impl std::fmt::Display) -> IpamError {
        IpamError::Corrupt { key: key.path(), reason: reason.to_string() }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, IpamError::Store(e) if e.is_conflict())
    }

    pub fn code(&self) -> u32 {
        use ipam_code::*;
        match self {
            IpamError::Config(_) | IpamError::DatastoreNotSupported(_) | IpamError::InvalidPool { .. } | IpamError::InvalidIpamConfig(_) => {
                code::INVALID_CONFIG
            }
            IpamError::Args(_) => code::INVALID_ENV,
            IpamError::PoolNotFound(_) | IpamError::PoolDisabled(_) | IpamError::PoolUse { .. } | IpamError::NoPools { .. } => NO_POOL,
            IpamError::NoPoolForNode { .. } => NO_POOL,
            IpamError::PoolsExhausted { .. } => POOLS_EXHAUSTED,
            IpamError::BlockLimit { .. } => BLOCK_LIMIT,
            IpamError::StrictAffinity { .. } | IpamError::StrictAffinityIp { .. } => STRICT_AFFINITY,
            IpamError::AddressInUse { .. } => ADDRESS_IN_USE,
            IpamError::NotInPool(_) => NOT_IN_POOL,
            IpamError::StaleRelease { .. } => STALE_RELEASE,
            // A busy, unreachable or conflicting store is transient: the runtime should retry.
            IpamError::Store(StoreError::Conflict { .. } | StoreError::Io { .. }) | IpamError::Busy { .. } => code::TRY_AGAIN,
            IpamError::Store(StoreError::Invalid(_)) => code::INVALID_CONFIG,
            IpamError::Store(StoreError::Corrupt { .. }) | IpamError::Corrupt { .. } => code::INTERNAL,
            IpamError::NoAllocation(_) | IpamError::Attachment { .. } | IpamError::Internal(_) => code::INTERNAL,
        }
    }
}

impl From<IpamError> for CniError {
    fn from(e: IpamError) -> CniError {
        CniError::new(e.code(), e.to_string())
    }
}

/// The model's errors, in this crate's terms (same messages, this crate's codes).
impl From<ModelError> for IpamError {
    fn from(e: ModelError) -> IpamError {
        match e {
            ModelError::InvalidPool { name, reason } => IpamError::InvalidPool { name, reason },
            e @ ModelError::Invalid { .. } => IpamError::Config(e.to_string()),
            ModelError::InvalidName(m) => IpamError::Config(m),
            ModelError::InvalidIpamConfig(m) => IpamError::InvalidIpamConfig(m),
            ModelError::Corrupt { key, reason } => IpamError::Corrupt { key, reason },
            ModelError::Encode(m) => IpamError::Internal(format!("encoding record: {m}")),
            ModelError::Store(s) => IpamError::Store(s),
        }
    }
}
