//! The local store: one directory (0700) of JSON record files (0600), one file per key, changed only while
//! holding an exclusive flock on `<dir>/.lock`. A file is named by its key path, percent-encoded, so no key
//! can name a path outside the directory; a path too long for a file name is cut and ends in its SHA-256,
//! and only the record names its whole key (see `names.rs`: any key length works, short keys keep the name
//! they always had). Commits go through a write-ahead log (`.wal`) whose fdatasync is their commit point;
//! the record files follow without fsync until a checkpoint.
//!
//! This file opens the store and its sessions. The parts: `session.rs` (a session: reads, pending changes,
//! commit, checkpoint, recovery), `wal.rs` (the log's format), `names.rs` (record file names), `fsops.rs`
//! (the directory, spares and swaps, durability), `watch.rs` (snapshots and watchers, without the lock; the
//! store revision is the last log frame's number).
mod fsops;
mod names;
mod session;
mod wal;
mod watch;

use super::{Datastore, Store, StoreError};
use session::FileSession;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use wal::{BootId, Log, State};

const LOCK_FILE: &str = ".lock";

/// The local store at one directory; `lock` opens a session on it.
pub struct FileStore {
    dir: PathBuf,
    sync: bool,
    boot: Option<BootId>,
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
        fsops::open_dir(&dir)?;
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

/// A log error (the path it is about and the I/O error) as a store error.
fn log_err((path, e): (PathBuf, std::io::Error)) -> StoreError {
    StoreError::io(path.display(), e)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod watch_tests;
