//! The local store's file-system operations: creating (or tightening) its directory, writing a record file
//! and swapping it into place, deleting one, and making record files and the directory durable. The session
//! (`session.rs`) decides what changes and when; this is how a change reaches the directory, and the only
//! place that knows about spares, `renameat2` and writeback.
//!
//! No fsync on the commit path: the log makes a commit durable (see `wal.rs`), a checkpoint the files it
//! touched (`sync_records`). A record is written to a spare file and swapped into place (rename, or
//! `RENAME_EXCHANGE` over an existing record), so readers see the old file or the new one, whole, and a
//! killed process leaves no half-written record (what it wrote sits in the page cache either way).
use super::wal::Change;
use crate::store::StoreError;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Scratch files a record is written to before it is swapped into place. After a swap a spare holds the old
/// record's inode, and a deleted record's inode is parked in a free slot: updates and ADD/DEL churn then
/// allocate and free no inodes (ext4 without a journal scans past every inode freed in the last minutes on
/// each allocation, which made creating a temp file cost milliseconds).
const SPARES: [&str; 2] = [".spare0", ".spare1"];

/// Makes `dir` the store's directory: creates it (mode 0700, its new parents made durable) or tightens an
/// existing one with group/other access to 0700; refuses a non-directory and a world-writable directory
/// (like /tmp).
pub(super) fn open_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(StoreError::Invalid(format!("store path {} is not a directory", dir.display()))),
        Ok(meta) => {
            let mode = meta.mode() & 0o7777;
            if mode & 0o002 != 0 {
                return Err(StoreError::Invalid(format!(
                    "store directory {} is world-writable (mode {mode:o}); use a private directory",
                    dir.display()
                )));
            }
            if mode & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| StoreError::io(dir.display(), e))?;
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let existing = dir.ancestors().skip(1).find(|a| a.as_os_str().is_empty() || a.is_dir());
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| StoreError::io(dir.display(), e))?;
            // DirBuilder's mode is filtered by the umask; make sure the result is exactly 0700.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| StoreError::io(dir.display(), e))?;
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
    Ok(())
}

/// The record files of one store directory, as one session (holding the lock) changes them.
pub(super) struct RecordFiles<'a> {
    dir: &'a Path,
    /// Off only for stores filled by benchmarks (`FileStore::without_fsync`): `sync_records` does nothing.
    sync: bool,
    /// Which `SPARES` exist, as far as this session knows (`None`: not looked yet).
    spares: Cell<[Option<bool>; 2]>,
}

impl<'a> RecordFiles<'a> {
    pub(super) fn new(dir: &'a Path, sync: bool) -> RecordFiles<'a> {
        RecordFiles { dir, sync, spares: Cell::new([None; 2]) }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
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

    /// Writes and deletes record files as `changes` say, in order.
    pub(super) fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
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
    pub(super) fn sync_records<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Result<(), StoreError> {
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
