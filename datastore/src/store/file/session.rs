//! A session on the local store (`FileStore::lock`): reads, the changes committed but not yet in the record
//! files, commits, checkpoints, and recovery when the session opens. It owns the record format
//! (`FileRecord`), the revisions and the CAS checks; the log's format is in `wal.rs`, file names in
//! `names.rs`, how a record file is written and made durable in `fsops.rs`.
//!
//! Commits go through a write-ahead log (`.wal`, see `wal.rs`). A commit appends one checksummed frame with
//! the whole new content of every record it changes and `fdatasync`s the log: that is the commit point and
//! its only flush. It then writes the record files without fsync, each to a spare file swapped into place
//! (rename, or `RENAME_EXCHANGE` over an existing record), so sessions read them from the page cache, which
//! a killed process does not lose, and notes in the log's hint that the frame is applied. That second step
//! waits for the session's next commit or its end, so a caller can hand out what it committed meanwhile
//! (the session reads its own pending changes). Once the frames since the last checkpoint pass
//! `CHECKPOINT_AT` bytes, a checkpoint fsyncs every
//! record file they touched and the directory, and new frames start again at the front of the log.
//! Recovery, when a session opens: in the same boot, a frame after the hint (a process killed mid-commit) is
//! made durable and applied; after a reboot (the hint names another boot id) or with a damaged hint, every
//! frame since the last checkpoint is replayed in order (frames hold whole records, so replay is idempotent)
//! and a fresh log is written. A torn or corrupt frame is a commit that never happened.
use super::fsops::RecordFiles;
use super::wal::{self, BootId, Change, Log, State};
use super::{log_err, names};
use crate::store::{check_distinct, check_precondition, Json, Key, Kind, Op, Record, Revision, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::Path;

/// Multi-record commits of the store format before the log; finished (through the log) if one is found.
pub(super) const JOURNAL: &str = ".journal";

/// What a record file holds: the key it belongs to (checked on read; for a hashed file name the only place
/// that names the whole key), its revision and the value (kept as text: the reader decodes it into its own
/// type).
#[derive(Serialize, Deserialize)]
pub(super) struct FileRecord {
    pub(super) key: String,
    pub(super) revision: Revision,
    pub(super) value: Json,
}

/// A `FileRecord` to write, borrowing its parts.
#[derive(Serialize)]
struct NewRecord<'a> {
    key: &'a str,
    revision: Revision,
    value: &'a Json,
}

/// The pre-log journal format.
#[derive(Serialize, Deserialize)]
pub(super) struct Journal {
    pub(super) ops: Vec<JournalOp>,
}

/// One record change: applied only if the record is still at `expect` (None = absent).
#[derive(Serialize, Deserialize)]
pub(super) struct JournalOp {
    pub(super) name: String,
    pub(super) expect: Option<Revision>,
    /// The new file content; None deletes the record.
    pub(super) content: Option<String>,
}

/// A session holding the lock on one store directory (opened by `FileStore::lock`).
pub(super) struct FileSession<'a> {
    dir: &'a Path,
    sync: bool,
    log: Log,
    /// Set when a commit failed after it may have reached the log: what this session would read could be
    /// half applied, so it refuses further work (the next session recovers from the log).
    broken: bool,
    /// The record files: written by `apply`, made durable by checkpoints and recovery.
    files: RecordFiles<'a>,
    /// The revision (None: absent) of every record this session has read or written, by key path. Nobody
    /// else writes while the session holds the lock, so a commit checks its preconditions here instead of
    /// reading the records again. (By path, not file name: two keys whose hashed names collide must not
    /// share an entry.)
    revisions: RefCell<HashMap<String, Option<Revision>>>,
    /// The last commit's changes while they are durable in the log but not yet in the record files (and its
    /// frame length): applied by the next commit, `list` or the end of the session, so that a caller can
    /// hand out what it committed first. Reads see them here.
    pub(super) pending: RefCell<Option<(Vec<Change>, u64)>>,
    /// Held for the whole session; closing the file releases the flock (also when the process dies).
    _lock: File,
}

impl<'a> FileSession<'a> {
    /// Brings the record files up to date with the log (recovery, in the module doc) and returns the session.
    pub(super) fn open(dir: &'a Path, sync: bool, boot: Option<BootId>, lock: File) -> Result<FileSession<'a>, StoreError> {
        let (log, state) = match Log::open(dir, boot).map_err(log_err)? {
            Some(opened) => opened,
            // A new store, or one written before the log existed (all its records were fsynced).
            None => (Log::create(dir, boot, 0, sync).map_err(log_err)?, State::Clean),
        };
        let mut s = FileSession {
            dir,
            sync,
            log,
            broken: false,
            files: RecordFiles::new(dir, sync),
            revisions: RefCell::new(HashMap::new()),
            pending: RefCell::new(None),
            _lock: lock,
        };
        match state {
            State::Clean => {}
            State::Unapplied(frame) => {
                tracing::warn!(seq = frame.seq, "finishing a store commit left by a killed process");
                // It may have been written without its fdatasync: make it durable before any record shows it.
                if sync {
                    s.log.sync().map_err(|e| s.log_io(e))?;
                }
                s.files.apply(&frame.changes)?;
                s.log.applied(frame.len).map_err(|e| s.log_io(e))?;
            }
            State::Replay(frames) => {
                tracing::warn!(frames = frames.len(), "replaying the store log: first session since a reboot or a damaged log");
                for f in &frames {
                    s.files.apply(&f.changes)?;
                }
                s.files.sync_records(frames.iter().flat_map(|f| f.changes.iter().map(Change::name)))?;
                s.log = Log::create(dir, boot, s.log.hint.seq, sync).map_err(log_err)?;
            }
        }
        s.finish_journal()?;
        Ok(s)
    }

    fn log_io(&self, e: std::io::Error) -> StoreError {
        StoreError::io(self.log.path().display(), e)
    }

    fn usable(&self) -> Result<(), StoreError> {
        if self.broken {
            let e = std::io::Error::other("session unusable after a failed commit; open a new one");
            return Err(StoreError::io(self.dir.display(), e));
        }
        Ok(())
    }

    /// Reads the record file `name`, which must hold `key` (a path), or, with `None` (when listing), a key
    /// whose file name is `name`. Anything else is an error, never another key's record: a file under the
    /// wrong name is damage, and two keys whose hashed names collide (see `names.rs`) meet here.
    pub(super) fn read(&self, name: &str, key: Option<&str>) -> Result<Option<FileRecord>, StoreError> {
        self.usable()?;
        if let Some((changes, _)) = &*self.pending.borrow() {
            match changes.iter().find(|c| c.name() == name) {
                Some(Change::Put { content, .. }) => {
                    let rec = serde_json::from_slice(content).map_err(|e| StoreError::Invalid(e.to_string()))?;
                    return self.checked(name, key, rec).map(Some);
                }
                Some(Change::Delete { .. }) => return Ok(None),
                None => {}
            }
        }
        let path = self.files.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Some(key) = key {
                    self.revisions.borrow_mut().insert(key.to_string(), None);
                }
                return Ok(None);
            }
            Err(e) => return Err(StoreError::io(path.display(), e)),
        };
        let rec: FileRecord =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
        let rec = self.checked(name, key, rec)?;
        self.revisions.borrow_mut().insert(rec.key.clone(), Some(rec.revision));
        Ok(Some(rec))
    }

    /// `rec`, read from file `name`, if it is what `read` may return.
    fn checked(&self, name: &str, key: Option<&str>, rec: FileRecord) -> Result<FileRecord, StoreError> {
        let own_name = || names::file_name(&rec.key) == name;
        if rec.revision != 0 && key.map_or_else(own_name, |k| rec.key == k) {
            return Ok(rec);
        }
        let reason = match key {
            Some(k) if rec.revision != 0 && own_name() => {
                format!("holds key {} where key {k} is looked for: their file names collide", rec.key)
            }
            _ => format!("record names key {} at revision {}", rec.key, rec.revision),
        };
        Err(StoreError::Corrupt { path: self.files.path(name).display().to_string(), reason })
    }

    /// The current revision of the record at key path `key` (file `name`): known if this session read or
    /// wrote it, else read.
    fn revision(&self, name: &str, key: &str) -> Result<Option<Revision>, StoreError> {
        if let Some(rev) = self.revisions.borrow().get(key) {
            return Ok(*rev);
        }
        Ok(self.read(name, Some(key))?.map(|r| r.revision))
    }

    /// Logs and makes durable one commit's changes; `settle` applies them. Every error leaves the session
    /// unusable, so the caller updates `revisions` only after a success.
    fn commit_changes(&mut self, changes: Vec<Change>) -> Result<(), StoreError> {
        self.settle()?;
        let len = match self.log.append(&changes, self.sync) {
            Ok(len) => len,
            Err(e) => {
                self.broken = true;
                return Err(self.log_io(e));
            }
        };
        // Durable from here on: the record files follow in `settle`.
        *self.pending.get_mut() = Some((changes, len));
        Ok(())
    }

    /// Applies the last commit to the record files (see `pending`). A failure leaves the session unusable;
    /// the change is in the log either way, and the next session applies it.
    fn settle(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        let Some((changes, len)) = self.pending.get_mut().take() else { return Ok(()) };
        if let Err(e) = self.files.apply(&changes) {
            self.broken = true;
            return Err(e);
        }
        if let Err(e) = self.log.applied(len) {
            self.broken = true;
            return Err(self.log_io(e));
        }
        if self.log.used() >= wal::CHECKPOINT_AT {
            // The commit is durable either way; a checkpoint that fails is retried after the next commit.
            if let Err(e) = self.checkpoint() {
                tracing::warn!(error = %e, "store log checkpoint failed; will retry");
            }
        }
        Ok(())
    }

    /// Makes every record file written since the last checkpoint durable, then starts the log afresh.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let frames = self.log.scan(wal::START + self.log.used()).map_err(|e| self.log_io(e))?;
        if frames.iter().map(|f| f.len).sum::<u64>() != self.log.used() {
            let reason = "frames since the last checkpoint do not read back".to_string();
            return Err(StoreError::Corrupt { path: self.log.path().display().to_string(), reason });
        }
        self.files.sync_records(frames.iter().flat_map(|f| f.changes.iter().map(Change::name)))?;
        self.log.restart().map_err(|e| self.log_io(e))
    }

    /// Finishes a multi-record commit that a process of the pre-log store format left behind: the ops whose
    /// records are still at their pre-commit revision are committed through the log.
    fn finish_journal(&mut self) -> Result<(), StoreError> {
        let path = self.files.path(JOURNAL);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(path.display(), e)),
        };
        // That format renamed the journal into place only after it was fsynced whole, so it always parses.
        let journal: Journal =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
        tracing::warn!(ops = journal.ops.len(), "finishing an interrupted store commit (pre-log journal)");
        let mut changes = Vec::new();
        for op in journal.ops {
            // That format refused keys too long for a plain name, so its names give their keys.
            let key = match names::parse(&op.name) {
                Some(names::Parsed::Plain(key)) => Some(key),
                _ => None,
            };
            if self.read(&op.name, key.as_deref())?.map(|r| r.revision) == op.expect {
                changes.push(match op.content {
                    Some(c) => Change::Put { name: op.name, content: c.into_bytes() },
                    None => Change::Delete { name: op.name },
                });
            }
        }
        if !changes.is_empty() {
            self.commit_changes(changes)?;
            self.settle()?;
            // What this session read of those records is stale now.
            self.revisions.get_mut().clear();
        }
        // Should a power loss bring it back, its ops no longer match any record's revision.
        fs::remove_file(&path).map_err(|e| StoreError::io(path.display(), e))
    }
}

impl Store for FileSession<'_> {
    fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let path = key.path();
        Ok(self.read(&names::file_name(&path), Some(&path))?.map(|r| Record { value: r.value, rev: r.revision }))
    }

    fn list(&self, kind: Kind) -> Result<Vec<(Key, Record)>, StoreError> {
        self.usable()?;
        let prefix = names::name_prefix(kind.prefix());
        let entries = fs::read_dir(self.dir).map_err(|e| StoreError::io(self.dir.display(), e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(self.dir.display(), e))?;
            names.extend(entry.file_name().to_str().map(str::to_string));
        }
        // Records the last commit creates are in no file yet (`read` sees the pending content of the rest).
        if let Some((changes, _)) = &*self.pending.borrow() {
            names.extend(changes.iter().filter(|c| matches!(c, Change::Put { .. })).map(|c| c.name().to_string()));
            names.sort_unstable();
            names.dedup();
        }
        let of_kind = |path: &str| Key::parse(path).filter(|k| k.kind() == kind);
        let mut out = Vec::new();
        for name in names {
            if !name.starts_with(&prefix) {
                continue;
            }
            // A plain name gives the key before the file is read; a hashed one only through its record.
            let rec = match names::parse(&name) {
                Some(names::Parsed::Plain(path)) => match of_kind(&path) {
                    Some(key) => self.read(&name, Some(&path))?.map(|r| (key, r)),
                    None => continue,
                },
                Some(names::Parsed::Hashed) => self.read(&name, None)?.and_then(|r| Some((of_kind(&r.key)?, r))),
                None => continue,
            };
            if let Some((key, r)) = rec {
                out.push((key, Record { value: r.value, rev: r.revision }));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn commit(&mut self, ops: &[Op]) -> Result<Vec<Revision>, StoreError> {
        self.usable()?;
        check_distinct(ops)?;
        let mut changes = Vec::with_capacity(ops.len());
        let mut revs = Vec::with_capacity(ops.len());
        let mut paths = Vec::with_capacity(ops.len());
        for op in ops {
            let path = op.key().path();
            let name = names::file_name(&path);
            let current = self.revision(&name, &path)?;
            check_precondition(op, current)?;
            changes.push(match op {
                Op::Create { value, .. } | Op::Update { value, .. } => {
                    let revision = next_revision(current);
                    revs.push(revision);
                    let rec = NewRecord { key: &path, revision, value };
                    let content = serde_json::to_vec(&rec).map_err(|e| StoreError::Invalid(e.to_string()))?;
                    Change::Put { name, content }
                }
                Op::Delete { .. } => {
                    revs.push(0);
                    Change::Delete { name }
                }
            });
            paths.push(path);
        }
        if !changes.is_empty() {
            self.commit_changes(changes)?;
            let mut known = self.revisions.borrow_mut();
            for (path, rev) in paths.into_iter().zip(&revs) {
                known.insert(path, (*rev != 0).then_some(*rev));
            }
        }
        Ok(revs)
    }
}

impl Drop for FileSession<'_> {
    fn drop(&mut self) {
        if self.pending.get_mut().is_some() {
            if let Err(e) = self.settle() {
                tracing::warn!(error = %e, "store commit not applied to its record file; the next session will");
            }
        }
    }
}

/// Revisions are wall-clock nanoseconds, kept strictly increasing per record, so a record deleted and created
/// again never reuses a revision a stale reader might still hold.
fn next_revision(current: Option<Revision>) -> Revision {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    now.max(current.unwrap_or(0) + 1)
}
