//! In-memory store for unit tests: same CAS semantics as the file store, a mutex as the node lock, one
//! store revision per commit (as etcd: every record a commit writes gets it), and a history of changes for
//! watchers, woken by a condition variable. A test double, so only in test builds: `datastore`'s own tests and
//! crates that enable its `testing` feature in their dev-dependencies (see store/mod.rs).
use super::watch::{distinct_prefixes, under, Change, Snapshot, Watchable, Watched, Watcher};
use super::{check_distinct, check_precondition, Datastore, Json, Key, Kind, Op, Record, Revision, Store, StoreError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Changes kept for watchers; older ones are forgotten (a watcher that needs them gets `Resync`).
const HISTORY: usize = 100_000;

#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
    /// Notified after every commit (watchers wait on it).
    changed: Condvar,
}

#[derive(Default)]
struct Inner {
    records: BTreeMap<Key, (Json, Revision)>,
    last_rev: Revision,
    commits: u64,
    /// Block records read so far (tests check that the ADD path reads one block, not all of a host's).
    block_reads: std::sync::atomic::AtomicU64,
    /// Every change after revision `forgotten`, in revision order.
    history: VecDeque<Change>,
    forgotten: Revision,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of successful commits so far (tests use it to count writes).
    pub fn commits(&self) -> u64 {
        self.guard().commits
    }

    /// Number of block records read so far.
    pub fn block_reads(&self) -> u64 {
        self.guard().block_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops the whole change history (as an etcd compaction at the current revision): watchers that still
    /// need any of it get `Resync`.
    pub fn forget_history(&self) {
        let mut inner = self.guard();
        inner.history.clear();
        inner.forgotten = inner.last_rev;
    }

    fn guard(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock leaves consistent data: commits apply fully or not at all.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Datastore for MemStore {
    fn lock(&self) -> Result<Box<dyn Store + '_>, StoreError> {
        Ok(Box::new(MemSession { inner: self.guard(), changed: &self.changed }))
    }
}

/// Reads and watches wait for an open session to end (the double has one mutex for everything).
impl Watchable for MemStore {
    fn snapshot(&self, prefixes: &[&str]) -> Result<Snapshot, StoreError> {
        let prefixes = distinct_prefixes(prefixes);
        let inner = self.guard();
        let records = inner
            .records
            .iter()
            .filter(|(k, _)| under(&prefixes, &k.path()))
            .map(|(k, (value, rev))| (k.clone(), Record { value: value.clone(), rev: *rev }))
            .collect();
        Ok(Snapshot { revision: inner.last_rev, records })
    }

    fn watch(&self, prefixes: &[&str], from: Revision) -> Result<Box<dyn Watcher + '_>, StoreError> {
        Ok(Box::new(MemWatcher { store: self, prefixes: distinct_prefixes(prefixes), next: from.max(1) }))
    }
}

struct MemWatcher<'a> {
    store: &'a MemStore,
    prefixes: Vec<String>,
    /// The first revision not looked at yet.
    next: Revision,
}

impl Watcher for MemWatcher<'_> {
    fn next(&mut self, deadline: Instant) -> Result<Watched, StoreError> {
        let mut inner = self.store.guard();
        loop {
            if self.next <= inner.forgotten {
                return Ok(Watched::Resync);
            }
            let first = inner.history.partition_point(|c| c.revision() < self.next);
            let changes: Vec<Change> = inner.history.range(first..).filter(|c| under(&self.prefixes, &c.key().path())).cloned().collect();
            self.next = self.next.max(inner.last_rev + 1);
            if !changes.is_empty() {
                return Ok(Watched::Changes(changes));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Watched::Quiet);
            }
            inner = self.store.changed.wait_timeout(inner, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

struct MemSession<'a> {
    inner: MutexGuard<'a, Inner>,
    changed: &'a Condvar,
}

impl Store for MemSession<'_> {
    fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        if key.kind() == Kind::Block {
            self.inner.block_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(self.inner.records.get(key).map(|(value, rev)| Record { value: value.clone(), rev: *rev }))
    }

    fn list(&self, kind: Kind) -> Result<Vec<(Key, Record)>, StoreError> {
        Ok(self
            .inner
            .records
            .iter()
            .filter(|(k, _)| k.kind() == kind)
            .map(|(k, (value, rev))| (k.clone(), Record { value: value.clone(), rev: *rev }))
            .collect())
    }

    fn commit(&mut self, ops: &[Op]) -> Result<Vec<Revision>, StoreError> {
        check_distinct(ops)?;
        for op in ops {
            let current = self.inner.records.get(op.key()).map(|(_, r)| *r);
            check_precondition(op, current)?;
        }
        let inner = &mut *self.inner;
        inner.commits += 1;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        inner.last_rev += 1;
        let revision = inner.last_rev;
        let mut revs = Vec::with_capacity(ops.len());
        for op in ops {
            let key = op.key().clone();
            match op {
                Op::Create { value, .. } | Op::Update { value, .. } => {
                    inner.records.insert(key.clone(), (value.clone(), revision));
                    inner.history.push_back(Change::Put { key, record: Record { value: value.clone(), rev: revision }, revision });
                    revs.push(revision);
                }
                Op::Delete { .. } => {
                    inner.records.remove(&key);
                    inner.history.push_back(Change::Delete { key, revision });
                    revs.push(0);
                }
            }
        }
        while inner.history.len() > HISTORY {
            if let Some(old) = inner.history.pop_front() {
                inner.forgotten = old.revision();
            }
        }
        self.changed.notify_all();
        Ok(revs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cas_semantics() {
        let store = MemStore::new();
        let mut s = store.lock().unwrap();
        let k = Key::Handle("h".into());
        let r1 = s.create(&k, json!({"a": 1}).into()).unwrap();
        assert!(s.create(&k, json!({}).into()).unwrap_err().is_conflict());
        let r2 = s.update(&k, json!({"a": 2}).into(), r1).unwrap();
        assert!(s.update(&k, json!({"a": 3}).into(), r1).unwrap_err().is_conflict());
        assert!(s.delete(&k, r1).unwrap_err().is_conflict());
        // A failed multi-op commit changes nothing.
        let k2 = Key::Handle("h2".into());
        let err = s.commit(&[Op::Create { key: k2.clone(), value: json!(1).into() }, Op::Delete { key: k.clone(), rev: r1 }]);
        assert!(err.unwrap_err().is_conflict());
        assert!(s.get(&k2).unwrap().is_none());
        s.delete(&k, r2).unwrap();
        assert!(s.get(&k).unwrap().is_none());
    }
}
