//! The store a config names, opened (the local directory or etcd), and how hard an operation retries on it.
use crate::error::IpamError;
use crate::ipam::config::StoreConf;
#[cfg(feature = "etcd")]
use datastore::store::EtcdStore;
use datastore::store::{Datastore, FileStore, Store, StoreError};
use std::time::{Duration, Instant};

pub enum Backend {
    Local(FileStore),
    /// Only with the `etcd` feature: cni-calico's in-process copy leaves the etcd client (and the resolver
    /// and TLS it pulls in) out, and execs cni-ipam for an etcd config instead.
    #[cfg(feature = "etcd")]
    Etcd(EtcdStore),
}

/// Attempts and time an operation may spend on conflicts and (for etcd) unreachable members.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub deadline: Instant,
    /// Whether I/O errors are worth retrying (an etcd member may come back; a local disk error does not).
    pub io: bool,
}

impl Retry {
    /// True when `e` is transient and the budget allows one more attempt after a jittered back-off.
    pub fn again(&self, attempt: u32, e: &IpamError) -> bool {
        let transient = match e {
            IpamError::Store(StoreError::Conflict { .. }) => true,
            IpamError::Store(StoreError::Io { .. }) => self.io,
            _ => false,
        };
        if !transient || attempt >= self.attempts {
            return false;
        }
        // Exponential back-off capped at 100 ms, full jitter, never past the deadline.
        let cap = Duration::from_millis((2u64 << attempt.min(6)).min(100));
        let pause = cap.mul_f64(jitter());
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left <= pause {
            return false;
        }
        tracing::debug!(attempt, error = %e, ?pause, "retrying");
        std::thread::sleep(pause);
        true
    }
}

/// A number in [0, 1) that differs between processes and calls (no crate needed for back-off jitter).
pub(crate) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.write_u32(std::process::id());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl Backend {
    /// Opens the store; for etcd no request is made yet.
    pub fn open(conf: &StoreConf) -> Result<Backend, IpamError> {
        Ok(match conf {
            StoreConf::Local(dir) => Backend::Local(FileStore::open(dir)?),
            #[cfg(feature = "etcd")]
            StoreConf::Etcd(opts) => Backend::Etcd(EtcdStore::open(opts)?),
            #[cfg(not(feature = "etcd"))]
            StoreConf::Etcd(_) => return Err(IpamError::Config("this build has no etcd store (cargo feature `etcd`); cni-ipam has it".into())),
        })
    }

    /// Starts one CNI operation: its retries and (for etcd) every request end within the budget, so an
    /// unreachable cluster is a code-11 error after `etcd_timeout`, not a hang.
    pub fn begin_operation(&self) -> Retry {
        match self {
            Backend::Local(_) => Retry { attempts: 100, deadline: Instant::now() + Duration::from_secs(60), io: false },
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => {
                let deadline = Instant::now() + s.timeout();
                s.set_deadline(Some(deadline));
                Retry { attempts: 100, deadline, io: true }
            }
        }
    }

    /// Requests sent to etcd so far (None for the local store).
    pub fn etcd_requests(&self) -> Option<u64> {
        match self {
            Backend::Local(_) => None,
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => Some(s.requests()),
        }
    }
}

impl Datastore for Backend {
    fn lock(&self) -> Result<Box<dyn Store + '_>, StoreError> {
        match self {
            Backend::Local(s) => s.lock(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.lock(),
        }
    }
}
