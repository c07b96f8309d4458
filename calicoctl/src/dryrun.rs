//! A store that records commits instead of making them: the writes of a whole file are tried on it first,
//! against the real store's records, so a file whose third resource would fail (it exists, it overlaps a
//! pool, its resourceVersion is stale) changes nothing. Reads see the real store under the recorded changes.
use datastore::store::{Json, Key, Kind, Op, Record, Revision, Store, StoreError};
use std::collections::BTreeMap;

pub struct DryRun<'a> {
    base: &'a dyn Store,
    changes: BTreeMap<Key, Option<Record>>,
    next: Revision,
}

impl<'a> DryRun<'a> {
    pub fn new(base: &'a dyn Store) -> DryRun<'a> {
        // Revisions of records written here only need to differ from each other and from real ones.
        DryRun { base, changes: BTreeMap::new(), next: u64::MAX / 2 }
    }
}

impl Store for DryRun<'_> {
    fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        match self.changes.get(key) {
            Some(change) => Ok(change.clone()),
            None => self.base.get(key),
        }
    }

    fn remote(&self) -> bool {
        self.base.remote()
    }

    fn list(&self, kind: Kind) -> Result<Vec<(Key, Record)>, StoreError> {
        let mut out: Vec<(Key, Record)> = self.base.list(kind)?.into_iter().filter(|(k, _)| !self.changes.contains_key(k)).collect();
        out.extend(self.changes.iter().filter(|(k, _)| k.kind() == kind).filter_map(|(k, r)| r.clone().map(|r| (k.clone(), r))));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn commit(&mut self, ops: &[Op]) -> Result<Vec<Revision>, StoreError> {
        for (i, op) in ops.iter().enumerate() {
            if ops[..i].iter().any(|o| o.key() == op.key()) {
                return Err(StoreError::Invalid(format!("key {} appears twice in one commit", op.key())));
            }
            let current = self.get(op.key())?.map(|r| r.rev);
            let reason = match (op, current) {
                (Op::Create { .. }, Some(_)) => "already exists",
                (Op::Update { .. } | Op::Delete { .. }, None) => "does not exist",
                (Op::Update { rev, .. } | Op::Delete { rev, .. }, Some(cur)) if *rev != cur => "revision changed",
                _ => continue,
            };
            return Err(StoreError::Conflict { key: op.key().path(), reason });
        }
        let mut revs = Vec::with_capacity(ops.len());
        for op in ops {
            self.next += 1;
            let (key, value): (&Key, Option<&Json>) = match op {
                Op::Create { key, value } | Op::Update { key, value, .. } => (key, Some(value)),
                Op::Delete { key, .. } => (key, None),
            };
            revs.push(if value.is_some() { self.next } else { 0 });
            self.changes.insert(key.clone(), value.map(|v| Record { value: v.clone(), rev: self.next }));
        }
        Ok(revs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datastore::store::MemStore;
    use serde_json::json;

    #[test]
    fn changes_are_seen_but_not_made() {
        let mem = MemStore::new();
        let mut real = datastore::store::Datastore::lock(&mem).unwrap();
        let k = Key::Handle("h".into());
        let rev = real.create(&k, json!({"a": 1}).into()).unwrap();
        let mut dry = DryRun::new(&*real);
        let new = dry.update(&k, json!({"a": 2}).into(), rev).unwrap();
        assert_eq!(dry.get(&k).unwrap().unwrap().value, json!({"a": 2}));
        assert!(dry.update(&k, json!({"a": 3}).into(), rev).unwrap_err().is_conflict(), "the dry revision counts");
        dry.delete(&k, new).unwrap();
        assert!(dry.get(&k).unwrap().is_none() && dry.list(Kind::Handle).unwrap().is_empty());
        assert_eq!(real.get(&k).unwrap().unwrap().value, json!({"a": 1}));
    }
}
