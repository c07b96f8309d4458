//! The local store: one directory (0700) of JSON record files (0600), one file per key, changed only while
//! holding an exclusive flock on `<dir>/.lock`. A file is named by its key path, percent-encoded, so no key
//! can name a path outside the directory; a path too long for a file name is cut and ends in its SHA-256,
//! and only the record names its whole key (see `names.rs`: any key length works, short keys keep the name
//! they always had).
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
mod names;
mod wal;

use super::mem::check_precondition;
use super::{check_distinct, Datastore, Json, Key, Kind, Op, Record, Revision, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wal::{BootId, Change, Log, State};

const LOCK_FILE: &str = ".lock";
/// Scratch files a record is written to before it is swapped into place. After a swap a spare holds the old
/// record's inode, and a deleted record's inode is parked in a free slot: updates and ADD/DEL churn then
/// allocate and free no inodes (ext4 without a journal scans past every inode freed in the last minutes on
/// each allocation, which made creating a temp file cost milliseconds).
const SPARES: [&str; 2] = [".spare0", ".spare1"];
/// Multi-record commits of the store format before the log; finished (through the log) if one is found.
const JOURNAL: &str = ".journal";

pub struct FileStore {
    dir: PathBuf,
    sync: bool,
    boot: Option<BootId>,
}

/// What a record file holds: the key it belongs to (checked on read; for a hashed file name the only place
/// that names the whole key), its revision and the value (kept as text: the reader decodes it into its own
/// type).
#[derive(Serialize, Deserialize)]
struct FileRecord {
    key: String,
    revision: Revision,
    value: Json,
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
struct Journal {
    ops: Vec<JournalOp>,
}

/// One record change: applied only if the record is still at `expect` (None = absent).
#[derive(Serialize, Deserialize)]
struct JournalOp {
    name: String,
    expect: Option<Revision>,
    /// The new file content; None deletes the record.
    content: Option<String>,
}

impl FileStore {
    /// Whether a commit is in the log but not yet in the record files: a process was killed between the two
    /// (or the store waits for its replay after a reboot). The next session finishes it. Reads only.
    pub fn has_unapplied_commit(dir: &Path) -> Result<bool, StoreError> {
        Ok(matches!(Log::open(dir, wal::boot_id()).map_err(log_err)?, Some((_, State::Unapplied(_) | State::Replay(_)))))
    }

    /// Opens (creating if needed, mode 0700) the store directory. An existing directory with group/other
    /// access is tightened to 0700, unless it is world-writable (like /tmp), which is refused.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(StoreError::Invalid(format!("store path {} is not a directory", dir.display())))
            }
            Ok(meta) => {
                let mode = meta.mode() & 0o7777;
                if mode & 0o002 != 0 {
                    return Err(StoreError::Invalid(format!(
                        "store directory {} is world-writable (mode {mode:o}); use a private directory",
                        dir.display()
                    )));
                }
                if mode & 0o077 != 0 {
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                        .map_err(|e| StoreError::io(dir.display(), e))?;
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let existing = dir.ancestors().skip(1).find(|a| a.as_os_str().is_empty() || a.is_dir());
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| StoreError::io(dir.display(), e))?;
                // DirBuilder's mode is filtered by the umask; make sure the result is exactly 0700.
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| StoreError::io(dir.display(), e))?;
                // The new directories' own entries must be durable too, or a power loss could take the whole
                // store (log included) with it.
                for parent in dir.ancestors().skip(1) {
                    let p = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
                    File::open(p).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(p.display(), e))?;
                    if Some(parent) == existing {
                        break;
                    }
                }
            }
            Err(e) => return Err(StoreError::io(dir.display(), e)),
        }
        Ok(FileStore { dir, sync: true, boot: wal::boot_id() })
    }

    /// Turns fsync off (rename still makes each write atomic for other processes, but not durable across a
    /// power loss). Only for filling stores in benchmarks; the plugin never calls it.
    pub fn without_fsync(mut self) -> FileStore {
        self.sync = false;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Datastore for FileStore {
    fn lock(&self) -> Result<Box<dyn Store + '_>, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::io(path.display(), e))?;
        // Blocks until every other session (thread or process) on this directory has finished.
        lock.lock().map_err(|e| StoreError::io(path.display(), e))?;
        Ok(Box::new(FileSession::open(&self.dir, self.sync, self.boot, lock)?))
    }
}

struct FileSession<'a> {
    dir: &'a Path,
    sync: bool,
    log: Log,
    /// Set when a commit failed after it may have reached the log: what this session would read could be
    /// half applied, so it refuses further work (the next session recovers from the log).
    broken: bool,
    /// Which `SPARES` exist, as far as this session knows (`None`: not looked yet).
    spares: Cell<[Option<bool>; 2]>,
    /// The revision (None: absent) of every record this session has read or written, by key path. Nobody
    /// else writes while the session holds the lock, so a commit checks its preconditions here instead of
    /// reading the records again. (By path, not file name: two keys whose hashed names collide must not
    /// share an entry.)
    revisions: RefCell<HashMap<String, Option<Revision>>>,
    /// The last commit's changes while they are durable in the log but not yet in the record files (and its
    /// frame length): applied by the next commit, `list` or the end of the session, so that a caller can
    /// hand out what it committed first. Reads see them here.
    pending: RefCell<Option<(Vec<Change>, u64)>>,
    /// Held for the whole session; closing the file releases the flock (also when the process dies).
    _lock: File,
}

fn log_err((path, e): (PathBuf, std::io::Error)) -> StoreError {
    StoreError::io(path.display(), e)
}

impl<'a> FileSession<'a> {
    /// Brings the record files up to date with the log (see the module doc) and returns the session.
    fn open(dir: &'a Path, sync: bool, boot: Option<BootId>, lock: File) -> Result<FileSession<'a>, StoreError> {
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
            spares: Cell::new([None; 2]),
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
                s.apply(&frame.changes)?;
                s.log.applied(frame.len).map_err(|e| s.log_io(e))?;
            }
            State::Replay(frames) => {
                tracing::warn!(frames = frames.len(), "replaying the store log: first session since a reboot or a damaged log");
                for f in &frames {
                    s.apply(&f.changes)?;
                }
                s.sync_records(frames.iter().flat_map(|f| f.changes.iter().map(Change::name)))?;
                s.log = Log::create(dir, boot, s.log.hint.seq, sync).map_err(log_err)?;
            }
        }
        s.finish_journal()?;
        Ok(s)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
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
    fn read(&self, name: &str, key: Option<&str>) -> Result<Option<FileRecord>, StoreError> {
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
        let path = self.path(name);
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
        let rec: FileRecord = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
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
        Err(StoreError::Corrupt { path: self.path(name).display().to_string(), reason })
    }

    /// The current revision of the record at key path `key` (file `name`): known if this session read or
    /// wrote it, else read.
    fn revision(&self, name: &str, key: &str) -> Result<Option<Revision>, StoreError> {
        if let Some(rev) = self.revisions.borrow().get(key) {
            return Ok(*rev);
        }
        Ok(self.read(name, Some(key))?.map(|r| r.revision))
    }

    fn mark_spare(&self, slot: usize, present: bool) {
        let mut s = self.spares.get();
        s[slot] = Some(present);
        self.spares.set(s);
    }

    /// An existing spare to overwrite, else a new one.
    fn take_spare(&self) -> Result<(usize, File), StoreError> {
        for (slot, spare) in SPARES.iter().enumerate() {
            if self.spares.get()[slot] == Some(false) {
                continue;
            }
            let path = self.path(spare);
            match OpenOptions::new().write(true).open(&path) {
                Ok(f) => return Ok((slot, f)),
                Err(e) if e.kind() == ErrorKind::NotFound => self.mark_spare(slot, false),
                Err(e) => return Err(StoreError::io(path.display(), e)),
            }
        }
        let path = self.path(SPARES[0]);
        let f = OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(&path);
        Ok((0, f.map_err(|e| StoreError::io(path.display(), e))?))
    }

    /// Writes a spare and swaps it with the record (or renames it into place for a new record), no fsync:
    /// the log makes the change durable, a checkpoint the file. Readers see the old or the new file, whole.
    /// The spare is overwritten in place and cut to length (no `O_TRUNC`) and the record exchanged rather than
    /// renamed over: truncating to zero or renaming over a file makes ext4 (`auto_da_alloc`) start writing the
    /// data right there, ~0.2 ms, as much as the commit's fdatasync.
    fn write(&self, name: &str, content: &[u8]) -> Result<(), StoreError> {
        let (slot, f) = self.take_spare()?;
        let tmp = self.path(SPARES[slot]);
        let io = |e| StoreError::io(tmp.display(), e);
        f.write_all_at(content, 0).and_then(|()| f.set_len(content.len() as u64)).map_err(io)?;
        drop(f);
        let dst = self.path(name);
        let dst_io = |e| StoreError::io(dst.display(), e);
        if rename2(&tmp, &dst, Rename::Exchange).map_err(dst_io)? == Renamed::Done {
            self.mark_spare(slot, true); // now holding the old record
            return Ok(());
        }
        fs::rename(&tmp, &dst).map_err(dst_io)?;
        self.mark_spare(slot, false);
        Ok(())
    }

    /// Deletes a record (missing is fine), parking its inode as a spare when a slot is free.
    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        let io = |e| StoreError::io(path.display(), e);
        for (slot, spare) in SPARES.iter().enumerate() {
            if self.spares.get()[slot] == Some(true) {
                continue;
            }
            match rename2(&path, &self.path(spare), Rename::NoReplace).map_err(io)? {
                Renamed::Done => {
                    self.mark_spare(slot, true);
                    return Ok(());
                }
                Renamed::NotFound => return Ok(()),
                Renamed::Exists => self.mark_spare(slot, true),
                Renamed::Unsupported => break,
            }
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        for c in changes {
            match c {
                Change::Put { name, content } => self.write(name, content)?,
                Change::Delete { name } => self.remove(name)?,
            }
        }
        Ok(())
    }

    /// Makes the named record files (those present) and the directory durable. Writeback of a batch is
    /// started for every file before the first `fdatasync` waits, so the filesystem allocates and commits
    /// them together instead of one journal commit per file.
    fn sync_records<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Result<(), StoreError> {
        if !self.sync {
            return Ok(());
        }
        let names: Vec<&str> = names.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        for batch in names.chunks(256) {
            let mut files = Vec::with_capacity(batch.len());
            for name in batch {
                let path = self.path(name);
                match File::open(&path) {
                    Ok(f) => {
                        start_writeback(&f);
                        files.push((path, f));
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(path.display(), e)),
                }
            }
            for (path, f) in files {
                f.sync_data().map_err(|e| StoreError::io(path.display(), e))?;
            }
        }
        File::open(self.dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(self.dir.display(), e))
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
        if let Err(e) = self.apply(&changes) {
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
        self.sync_records(frames.iter().flat_map(|f| f.changes.iter().map(Change::name)))?;
        self.log.restart().map_err(|e| self.log_io(e))
    }

    /// Finishes a multi-record commit that a process of the pre-log store format left behind: the ops whose
    /// records are still at their pre-commit revision are committed through the log.
    fn finish_journal(&mut self) -> Result<(), StoreError> {
        let path = self.path(JOURNAL);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(path.display(), e)),
        };
        // That format renamed the journal into place only after it was fsynced whole, so it always parses.
        let journal: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
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

#[derive(Clone, Copy)]
enum Rename {
    /// Swap two existing files.
    Exchange,
    /// Rename unless the target exists.
    NoReplace,
}

#[derive(Debug, PartialEq)]
enum Renamed {
    Done,
    /// A file that must exist does not (for `Exchange`, the caller knows which).
    NotFound,
    /// `NoReplace`: the target exists.
    Exists,
    /// The filesystem (or libc) cannot: fall back to plain rename / unlink.
    Unsupported,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename2(from: &Path, to: &Path, how: Rename) -> std::io::Result<Renamed> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    let flags = match how {
        Rename::Exchange => RenameFlags::RENAME_EXCHANGE,
        Rename::NoReplace => RenameFlags::RENAME_NOREPLACE,
    };
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) {
        Ok(()) => Ok(Renamed::Done),
        Err(Errno::ENOENT) => Ok(Renamed::NotFound),
        Err(Errno::EEXIST) => Ok(Renamed::Exists),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => Ok(Renamed::Unsupported),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename2(_from: &Path, _to: &Path, _how: Rename) -> std::io::Result<Renamed> {
    Ok(Renamed::Unsupported)
}

/// Asks the kernel to start writing a file's dirty pages without waiting (only a hint: errors are ignored,
/// the `fdatasync` that follows is what counts).
fn start_writeback(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a descriptor that `f` keeps open; no memory is passed.
    unsafe { nix::libc::sync_file_range(f.as_raw_fd(), 0, 0, nix::libc::SYNC_FILE_RANGE_WRITE) };
}

/// Revisions are wall-clock nanoseconds, kept strictly increasing per record, so a record deleted and created
/// again never reuses a revision a stale reader might still hold.
fn next_revision(current: Option<Revision>) -> Revision {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    now.max(current.unwrap_or(0) + 1)
}

#[cfg(test)]
mod tests;
