//! In-memory store for unit tests: same CAS semantics as the file store, a mutex as the node lock. A test
//! double, so only in test builds: `common`'s own tests and crates that enable its `testing` feature in their
//! dev-dependencies (see store/mod.rs).
use super::{check_distinct, check_precondition, Datastore, Json, Key, Kind, Op, Record, Revision, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: BTreeMap<Key, (Json, Revision)>,
    last_rev: Revision,
    commits: u64,
    /// Block records read so far (tests check that the ADD path reads one block, not all of a host's).
    block_reads: std::sync::atomic::AtomicU64,
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

    fn guard(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock leaves consistent data: commits apply fully or not at all.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Datastore for MemStore {
    fn lock(&self) -> Result<Box<dyn Store + '_>, StoreError> {
        Ok(Box::new(MemSession { inner: self.guard() }))
    }
}

struct MemSession<'a> {
    inner: MutexGuard<'a, Inner>,
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
        let mut revs = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Create { key, value } | Op::Update { key, value, .. } => {
                    inner.last_rev += 1;
                    inner.records.insert(key.clone(), (value.clone(), inner.last_rev));
                    revs.push(inner.last_rev);
                }
                Op::Delete { key, .. } => {
                    inner.records.remove(key);
                    revs.push(0);
                }
            }
        }
        inner.commits += 1;
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
