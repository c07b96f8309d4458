//! Following the local store without its lock: snapshots and watchers (`Watchable`). The store revision is
//! the seq of the last commit's log frame (`wal.rs`): the hint names the last applied seq, and a whole frame
//! after it carrying the next seq is committed too, its record files possibly still pending in the session
//! that wrote it. Nothing extra is written on the commit path.
//!
//! A snapshot reads the record files with that pending frame laid over them, and keeps the result only if
//! the log did not move meanwhile (else it tries again, and after a few tries reads under the lock). A
//! watcher waits on inotify for the log to change and reads the frames since its revision: where it left
//! off, else the pending frame, else a scan of the frames since the last checkpoint; frames it needs that
//! are gone mean `Resync`. Another process's commits reach it the same way as this one's.
use super::names;
use super::session::{FileRecord, JOURNAL};
use super::wal::{self, BootId, Change as LogChange, Frame, LogView};
use super::FileStore;
use crate::store::watch::{distinct_prefixes, under, Change, Snapshot, Watchable, Watched, Watcher};
use crate::store::{Datastore, Key, Record, Revision, StoreError};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Lock-free reads of a snapshot before it is read under the lock instead (a store committing faster than
/// the prefixes can be read).
const SNAPSHOT_TRIES: usize = 8;

impl Watchable for FileStore {
    fn snapshot(&self, prefixes: &[&str]) -> Result<Snapshot, StoreError> {
        let prefixes = distinct_prefixes(prefixes);
        for _ in 0..SNAPSHOT_TRIES {
            // A commit of the store format before the log waits in its journal for the next session.
            if self.dir.join(JOURNAL).exists() {
                break;
            }
            let Some(before) = tail(&self.dir, Some(self.boot))? else { break };
            let records = read_records(&self.dir, &prefixes, before.pending.as_ref());
            // A read that a commit overlapped may even have caught a recycled spare under a record's name:
            // only a read during which the log stood still counts, error or not.
            if tail(&self.dir, Some(self.boot))?.is_some_and(|after| after.same(&before)) {
                return Ok(Snapshot { revision: before.revision, records: records? });
            }
        }
        // No log yet, a log or journal that waits for recovery (another boot's hint, the old format), or a
        // busy store: open a session (which recovers) and read while holding the lock, so nothing moves.
        let _session = self.lock()?;
        let t = tail(&self.dir, None)?.ok_or_else(|| StoreError::io(self.dir.join(wal::LOG).display(), ErrorKind::NotFound.into()))?;
        Ok(Snapshot { revision: t.revision, records: read_records(&self.dir, &prefixes, t.pending.as_ref())? })
    }

    fn watch(&self, prefixes: &[&str], from: Revision) -> Result<Box<dyn Watcher + '_>, StoreError> {
        Ok(Box::new(FileWatcher::new(&self.dir, self.boot, distinct_prefixes(prefixes), from)?))
    }
}

/// Where the log stands for a reader.
struct Tail {
    ino: u64,
    /// The store revision: the last committed frame's seq (0: no commit yet).
    revision: Revision,
    /// The frame after the hint, if one is there (committed; its records may not be in their files yet).
    pending: Option<Frame>,
}

impl Tail {
    /// Nothing was committed or applied between the two reads.
    fn same(&self, other: &Tail) -> bool {
        self.ino == other.ino && self.revision == other.revision && self.pending.is_some() == other.pending.is_some()
    }
}

/// The log's state, `None` when a reader cannot tell it without the lock: no log, a torn hint (being
/// written), or a hint from another boot than `boot` (the record files may be stale until a session replays
/// the log). `boot` is `None` when the caller holds the lock: the hint is then the truth whichever boot it
/// names.
fn tail(dir: &Path, boot: Option<Option<BootId>>) -> Result<Option<Tail>, StoreError> {
    let io = |e| StoreError::io(dir.join(wal::LOG).display(), e);
    let Some(view) = LogView::open(dir).map_err(io)? else { return Ok(None) };
    let Some(hint) = view.hint().map_err(io)? else { return Ok(None) };
    if boot.is_some_and(|b| b != Some(hint.boot)) {
        return Ok(None);
    }
    let pending = view.frame_at(hint.end, hint.seq + 1).map_err(io)?;
    let revision = hint.seq + pending.is_some() as u64;
    Ok(Some(Tail { ino: view.ino, revision, pending }))
}

/// A record file's content, checked as a session checks it: it names a key whose file is `name`.
fn decode(dir: &Path, name: &str, content: &[u8]) -> Result<FileRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { path: dir.join(name).display().to_string(), reason };
    let rec: FileRecord = serde_json::from_slice(content).map_err(|e| corrupt(e.to_string()))?;
    if rec.revision == 0 || names::file_name(&rec.key) != name {
        return Err(corrupt(format!("record names key {} at revision {}", rec.key, rec.revision)));
    }
    Ok(rec)
}

/// The records under `prefixes` as the files and the pending frame (laid over them) say, sorted by key.
fn read_records(dir: &Path, prefixes: &[String], pending: Option<&Frame>) -> Result<Vec<(Key, Record)>, StoreError> {
    let encoded: Vec<String> = prefixes.iter().map(|p| names::name_prefix(p)).collect();
    let candidate = |name: &str| encoded.iter().any(|e| names::may_be_under(name, e));
    let overlay: &[LogChange] = pending.map_or(&[], |f| &f.changes);
    let mut out = BTreeMap::new();
    let mut keep = |rec: FileRecord| {
        if under(prefixes, &rec.key) {
            if let Some(key) = Key::parse(&rec.key) {
                out.insert(key, Record { value: rec.value, rev: rec.revision });
            }
        }
    };
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io(dir.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir.display(), e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if !candidate(&name) || overlay.iter().any(|c| c.name() == name) {
            continue;
        }
        let path = dir.join(&name);
        let content = match fs::read(&path) {
            Ok(c) => c,
            // Deleted since the listing: by a commit after this read began, which the caller's second look
            // at the log sees.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(path.display(), e)),
        };
        keep(decode(dir, &name, &content)?);
    }
    for change in overlay {
        if let LogChange::Put { name, content } = change {
            if candidate(name) {
                keep(decode(dir, name, content)?);
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// A watcher on one store directory (see the module doc).
struct FileWatcher {
    dir: PathBuf,
    prefixes: Vec<String>,
    /// `names::name_prefix` of each prefix.
    encoded: Vec<String>,
    /// Watches the directory: the log is written (`IN_MODIFY`) or replaced (`IN_MOVED_TO`).
    inotify: Inotify,
    view: Option<LogView>,
    /// This boot's id (`wal::boot_id`): a hint from another one is not trusted.
    boot: Option<BootId>,
    /// The first revision not reported yet.
    next: Revision,
    /// Where the frame `next` would start, when known.
    pos: Option<u64>,
    /// Hashed record names (`names.rs`) with their key paths: a frame's delete names only the file. Filled
    /// from the directory when the watcher starts and from every put it reads.
    hashed: HashMap<String, String>,
    /// The log may have changed since it was last read.
    stale: bool,
    resync: bool,
}

impl FileWatcher {
    fn new(dir: &Path, boot: Option<BootId>, prefixes: Vec<String>, from: Revision) -> Result<FileWatcher, StoreError> {
        let io = |e: Errno| StoreError::io(dir.display(), e.into());
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(io)?;
        // Before anything is read, so that no change falls between the read and the watch.
        inotify.add_watch(dir, AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_MOVED_TO).map_err(io)?;
        let encoded: Vec<String> = prefixes.iter().map(|p| names::name_prefix(p)).collect();
        let mut w = FileWatcher {
            dir: dir.to_path_buf(),
            prefixes,
            encoded,
            inotify,
            view: None,
            boot,
            next: from.max(1),
            pos: None,
            hashed: HashMap::new(),
            stale: true,
            resync: false,
        };
        let entries = fs::read_dir(dir).map_err(|e| StoreError::io(dir.display(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(dir.display(), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            // Read without the lock, so a commit may swap the file meanwhile: a name not learnt here only
            // means that its delete, should one come, is a `Resync`.
            if names::is_hashed(&name) && w.candidate(&name) {
                if let Some(rec) = fs::read(entry.path()).ok().and_then(|c| decode(dir, &name, &c).ok()) {
                    w.hashed.insert(name, rec.key);
                }
            }
        }
        Ok(w)
    }

    fn candidate(&self, name: &str) -> bool {
        self.encoded.iter().any(|e| names::may_be_under(name, e))
    }

    /// Reads every queued inotify event; notes whether one was about the log.
    fn drain(&mut self) -> Result<(), StoreError> {
        loop {
            match self.inotify.read_events() {
                Ok(events) => {
                    for ev in events {
                        let about_log = ev.name.as_deref().is_some_and(|n| n == wal::LOG);
                        // An overflowed queue lost events; a removed directory says so once.
                        if about_log || ev.mask.intersects(AddWatchFlags::IN_Q_OVERFLOW | AddWatchFlags::IN_IGNORED) {
                            self.stale = true;
                        }
                    }
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(StoreError::io(self.dir.display(), e.into())),
            }
        }
    }

    /// Sleeps until an inotify event is queued or `deadline` passes.
    fn wait(&self, deadline: Instant) -> Result<(), StoreError> {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up: a poll that returns a fraction of a millisecond early would spin until the deadline.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(StoreError::io(self.dir.display(), e.into())),
        }
    }

    /// The frames after the last one reported; `None`: the ones needed are gone (or the store went back).
    fn frames(&mut self) -> Result<Option<Vec<Frame>>, StoreError> {
        let io = |e| StoreError::io(self.dir.join(wal::LOG).display(), e);
        let Some(view) = LogView::open(&self.dir).map_err(io)? else {
            // No log: revision 0. A watcher that had seen commits sees a store that was removed.
            return Ok((self.next <= 2).then(Vec::new));
        };
        if self.view.as_ref().map(|v| v.ino) != Some(view.ino) {
            self.pos = None;
        }
        let view = self.view.insert(view);
        // Torn while being written: the write's own event brings the watcher back.
        let Some(hint) = view.hint().map_err(io)? else { return Ok(Some(Vec::new())) };
        let mut frames = Vec::new();
        if Some(hint.boot) == self.boot {
            // At most one frame (pending) follows the hint: a later revision was never this store's.
            if self.next > hint.seq + 2 {
                return Ok(None);
            }
            if let Some(mut at) = self.pos {
                while let Some(f) = view.frame_at(at, self.next + frames.len() as u64).map_err(io)? {
                    at += f.len;
                    frames.push(f);
                }
                self.pos = Some(at);
            }
            let want = self.next + frames.len() as u64;
            if want == hint.seq + 1 {
                if let Some(f) = view.frame_at(hint.end, want).map_err(io)? {
                    self.pos = Some(hint.end + f.len);
                    frames.push(f);
                }
                return Ok(Some(frames));
            }
            if want > hint.seq {
                return Ok(Some(frames));
            }
        }
        // Frames already applied that are not where this watcher left off (a checkpoint restarted the log,
        // or it just started), or a hint from another boot: follow the frames since the last checkpoint.
        let want = self.next + frames.len() as u64;
        let chain = view.scan().map_err(io)?;
        match chain.iter().position(|(_, f)| f.seq == want) {
            Some(i) => {
                for (at, f) in chain.into_iter().skip(i) {
                    self.pos = Some(at + f.len);
                    frames.push(f);
                }
                Ok(Some(frames))
            }
            None => {
                let last = chain.last().map_or(0, |(_, f)| f.seq).max(hint.seq);
                // Committed but no longer in the log: checkpointed past.
                Ok((want > last).then_some(frames))
            }
        }
    }

    /// The changes under the prefixes that `frames` make.
    fn changes(&mut self, frames: Vec<Frame>) -> Result<Option<Vec<Change>>, StoreError> {
        let mut out = Vec::new();
        // Advanced only once every frame is read, so an error leaves the frames to be read again.
        let next = frames.last().map_or(self.next, |f| f.seq + 1);
        for f in frames {
            for c in f.changes {
                if !self.candidate(c.name()) {
                    continue;
                }
                let (path, record) = match c {
                    LogChange::Put { name, content } => {
                        let rec = decode(&self.dir, &name, &content)?;
                        if names::is_hashed(&name) {
                            self.hashed.insert(name, rec.key.clone());
                        }
                        (rec.key, Some(Record { value: rec.value, rev: rec.revision }))
                    }
                    LogChange::Delete { name } => {
                        let path = match names::parse(&name) {
                            Some(names::Parsed::Plain(path)) => path,
                            Some(names::Parsed::Hashed) => match self.hashed.remove(&name) {
                                Some(path) => path,
                                // A record this watcher never saw, deleted: which key it held is unknown.
                                None => return Ok(None),
                            },
                            None => continue,
                        };
                        (path, None)
                    }
                };
                let Some(key) = Key::parse(&path).filter(|_| under(&self.prefixes, &path)) else { continue };
                out.push(match record {
                    Some(record) => Change::Put { key, record, revision: f.seq },
                    None => Change::Delete { key, revision: f.seq },
                });
            }
        }
        self.next = next;
        Ok(Some(out))
    }
}

impl Watcher for FileWatcher {
    fn next(&mut self, deadline: Instant) -> Result<Watched, StoreError> {
        loop {
            if self.resync {
                return Ok(Watched::Resync);
            }
            // Events first, then the log: a write after this drain queues an event that wakes the wait.
            self.drain()?;
            if std::mem::take(&mut self.stale) {
                let changes = match self.frames()? {
                    Some(frames) => self.changes(frames)?,
                    None => None,
                };
                match changes {
                    None => {
                        self.resync = true;
                        continue;
                    }
                    Some(c) if !c.is_empty() => return Ok(Watched::Changes(c)),
                    Some(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Ok(Watched::Quiet);
            }
            self.wait(deadline)?;
        }
    }
}
