//! What a long-running reader (the node agent) needs from a store: a read-only snapshot of some key prefixes,
//! consistent at one store revision, and a change stream from a revision. The reader's loop:
//!
//! ```text
//! snapshot = store.snapshot(prefixes)
//! watcher  = store.watch(prefixes, snapshot.revision + 1)
//! loop: match watcher.next(deadline)
//!     Changes(c) => apply c to the model        (then debounce, render)
//!     Quiet      => the deadline passed         (render what is due)
//!     Resync     => the history is gone: take a new snapshot and a new watcher
//!     Err(e)     => transient (etcd unreachable): log it, call `next` again; the watcher resumes by itself
//! ```
//!
//! A store revision counts commits store-wide and never goes back: etcd's revision, the local store's log
//! frame number (`file/watch.rs`), `MemStore`'s counter. A record's own `Record::rev` (its CAS revision) is
//! that number on etcd and in `MemStore`; the local store keeps its per-record revisions (`file/session.rs`).
use super::{Datastore, Key, Record, Revision, StoreError};
use std::time::Instant;

/// Records under some prefixes, all as of one store revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The store revision the records are at: every commit up to it is in, none after it.
    pub revision: Revision,
    /// Sorted by key. Keys under the prefixes that are none of ours (`Key::parse` fails) are left out.
    pub records: Vec<(Key, Record)>,
}

/// One record change, at the store revision of the commit that made it (one commit's changes share it).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Created or updated: the record as it now is (`record.rev` is its new CAS revision).
    Put {
        key: Key,
        record: Record,
        revision: Revision,
    },
    Delete {
        key: Key,
        revision: Revision,
    },
}

impl Change {
    pub fn key(&self) -> &Key {
        match self {
            Change::Put { key, .. } | Change::Delete { key, .. } => key,
        }
    }

    pub fn revision(&self) -> Revision {
        match self {
            Change::Put { revision, .. } | Change::Delete { revision, .. } => *revision,
        }
    }
}

/// What `Watcher::next` saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    /// The changes since the last batch (never empty). The changes of one key come in revision order, each
    /// exactly once; on etcd, changes under different prefixes may interleave out of revision order while
    /// the watcher catches up after a reconnect.
    Changes(Vec<Change>),
    /// The deadline passed with nothing new.
    Quiet,
    /// The history this watcher needs is gone (etcd compacted it, the local log was checkpointed past it, or
    /// the store went back to an older revision): take a new snapshot and watch from its revision + 1. Every
    /// later call answers `Resync` again.
    Resync,
}

/// A change stream over some prefixes. `next` blocks (without spinning: inotify, a socket read or a condition
/// variable) until something changes or the deadline passes. An error is transient: the watcher keeps its
/// position, and the next call retries (etcd: after a back-off, on the next member).
pub trait Watcher: Send {
    fn next(&mut self, deadline: Instant) -> Result<Watched, StoreError>;
    /// Whether the store answered this watcher's last attempt (a `Quiet` also comes while it waits to retry).
    fn connected(&self) -> bool {
        true
    }
}

/// A store a long-running reader can follow. Neither call takes the node-wide lock for longer than one read
/// (the local store reads without it unless the log needs recovery), so CNI ADDs never wait on a reader.
pub trait Watchable: Datastore {
    /// Every record under `prefixes` (key-path prefixes, e.g. `Kind::prefix()` or `affinity_prefix`), as of
    /// one revision.
    fn snapshot(&self, prefixes: &[&str]) -> Result<Snapshot, StoreError>;
    /// The changes under `prefixes` from store revision `from` on (usually `snapshot.revision + 1`).
    fn watch(&self, prefixes: &[&str], from: Revision) -> Result<Box<dyn Watcher + '_>, StoreError>;
}

/// `prefixes` without the ones another covers (so no record is reported twice), sorted.
pub(crate) fn distinct_prefixes(prefixes: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut sorted: Vec<&str> = prefixes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for p in sorted {
        // Sorted, so a covering prefix comes before everything it covers.
        if !out.iter().any(|q| p.starts_with(q.as_str())) {
            out.push(p.to_string());
        }
    }
    out
}

/// Whether `path` is under one of `prefixes`.
pub(crate) fn under(prefixes: &[String], path: &str) -> bool {
    prefixes.iter().any(|p| path.starts_with(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_prefixes_are_dropped() {
        assert_eq!(distinct_prefixes(&["/a/b/", "/a/", "/c", "/a/", "/cd"]), vec!["/a/", "/c"]);
        assert_eq!(distinct_prefixes(&[]), Vec::<String>::new());
        assert!(under(&distinct_prefixes(&["/a/"]), "/a/x"));
        assert!(!under(&distinct_prefixes(&["/a/"]), "/ab"));
    }
}
