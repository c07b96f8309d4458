//! The local store: one directory (0700) of JSON record files (0600), one file per key, changed only while
//! holding an exclusive flock on `<dir>/.lock`. A single-record write is write-temp + fsync + rename +
//! fsync(dir); a multi-record commit first writes a journal (`.journal`), so a process killed at any point
//! leaves either the old or the new state of every record, and the next session finishes the journal.
//! File names are the percent-encoded key paths: no key can name a path outside the directory.
use super::mem::check_precondition;
use super::{check_distinct, Datastore, Key, Kind, Op, Record, Revision, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = ".lock";
const TMP_FILE: &str = ".tmp";
const JOURNAL: &str = ".journal";
const JOURNAL_TMP: &str = ".journal.tmp";
/// Longest file name most Linux filesystems accept.
const NAME_MAX: usize = 255;

pub struct FileStore {
    dir: PathBuf,
    sync: bool,
}

/// What a record file holds: the key it belongs to (checked on read), its revision and the value.
#[derive(Serialize, Deserialize)]
struct FileRecord {
    key: String,
    revision: Revision,
    value: Value,
}

#[derive(Serialize, Deserialize)]
struct Journal {
    ops: Vec<JournalOp>,
}

/// One record change: applied on replay only if the record is still at `expect` (None = absent).
#[derive(Serialize, Deserialize)]
struct JournalOp {
    name: String,
    expect: Option<Revision>,
    /// The new file content; None deletes the record.
    content: Option<String>,
}

impl FileStore {
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
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| StoreError::io(dir.display(), e))?;
                // DirBuilder's mode is filtered by the umask; make sure the result is exactly 0700.
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| StoreError::io(dir.display(), e))?;
            }
            Err(e) => return Err(StoreError::io(dir.display(), e)),
        }
        Ok(FileStore { dir, sync: true })
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
        let session = FileSession { dir: &self.dir, sync: self.sync, _lock: lock };
        session.recover()?;
        Ok(Box::new(session))
    }
}

struct FileSession<'a> {
    dir: &'a Path,
    sync: bool,
    /// Held for the whole session; closing the file releases the flock (also when the process dies).
    _lock: File,
}

impl FileSession<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Result<Option<FileRecord>, StoreError> {
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path.display(), e)),
        };
        let rec: FileRecord = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
        if encode_name(&rec.key) != name || rec.revision == 0 {
            return Err(StoreError::Corrupt {
                path: path.display().to_string(),
                reason: format!("record names key {} at revision {}", rec.key, rec.revision),
            });
        }
        Ok(Some(rec))
    }

    /// write-temp + fsync + rename. The caller fsyncs the directory.
    fn write(&self, name: &str, content: &[u8]) -> Result<(), StoreError> {
        let tmp = self.path(TMP_FILE);
        let io = |e| StoreError::io(tmp.display(), e);
        let mut f =
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        f.write_all(content).map_err(io)?;
        if self.sync {
            f.sync_all().map_err(io)?;
        }
        drop(f);
        let dst = self.path(name);
        fs::rename(&tmp, &dst).map_err(|e| StoreError::io(dst.display(), e))
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::io(path.display(), e)),
            _ => Ok(()),
        }
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        if !self.sync {
            return Ok(());
        }
        File::open(self.dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(self.dir.display(), e))
    }

    fn apply(&self, op: &JournalOp) -> Result<(), StoreError> {
        match &op.content {
            Some(c) => self.write(&op.name, c.as_bytes()),
            None => self.remove(&op.name),
        }
    }

    /// Finishes a multi-record commit that a killed process left behind.
    fn recover(&self) -> Result<(), StoreError> {
        let path = self.path(JOURNAL);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(path.display(), e)),
        };
        // The journal is renamed into place only after it was fsynced whole, so it always parses.
        let journal: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
        tracing::warn!(ops = journal.ops.len(), "finishing an interrupted store commit");
        for op in &journal.ops {
            if self.read(&op.name)?.map(|r| r.revision) == op.expect {
                self.apply(op)?;
            }
        }
        self.sync_dir()?;
        // No fsync after the unlink: the next commit's directory fsync makes it durable, and until then a
        // replay only re-applies ops whose records are still at their pre-commit revision.
        self.remove(JOURNAL)
    }
}

impl Store for FileSession<'_> {
    fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let name = name_for(key)?;
        Ok(self.read(&name)?.map(|r| Record { value: r.value, rev: r.revision }))
    }

    fn list(&self, kind: Kind) -> Result<Vec<(Key, Record)>, StoreError> {
        let prefix = encode_name(kind.prefix());
        let entries = fs::read_dir(self.dir).map_err(|e| StoreError::io(self.dir.display(), e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(self.dir.display(), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if !name.starts_with(&prefix) {
                continue;
            }
            let Some(key) = decode_name(&name).and_then(|p| Key::parse(&p)) else { continue };
            if key.kind() != kind {
                continue;
            }
            if let Some(r) = self.read(&name)? {
                out.push((key, Record { value: r.value, rev: r.revision }));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn commit(&mut self, ops: &[Op]) -> Result<Vec<Revision>, StoreError> {
        check_distinct(ops)?;
        let mut planned = Vec::with_capacity(ops.len());
        let mut revs = Vec::with_capacity(ops.len());
        for op in ops {
            let key = op.key();
            let name = name_for(key)?;
            let current = self.read(&name)?.map(|r| r.revision);
            check_precondition(op, current)?;
            let content = match op {
                Op::Create { value, .. } | Op::Update { value, .. } => {
                    let revision = next_revision(current);
                    revs.push(revision);
                    let rec = FileRecord { key: key.path(), revision, value: value.clone() };
                    Some(serde_json::to_string(&rec).map_err(|e| StoreError::Invalid(e.to_string()))?)
                }
                Op::Delete { .. } => {
                    revs.push(0);
                    None
                }
            };
            planned.push(JournalOp { name, expect: current, content });
        }
        if let [op] = planned.as_slice() {
            self.apply(op)?;
            self.sync_dir()?;
            return Ok(revs);
        }
        let journal = serde_json::to_vec(&Journal { ops: planned }).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let tmp = self.path(JOURNAL_TMP);
        let io = |e| StoreError::io(tmp.display(), e);
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        f.write_all(&journal).map_err(io)?;
        if self.sync {
            f.sync_all().map_err(io)?;
        }
        drop(f);
        fs::rename(&tmp, self.path(JOURNAL)).map_err(io)?;
        self.sync_dir()?; // the commit point
        self.recover()?;
        Ok(revs)
    }
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

fn name_for(key: &Key) -> Result<String, StoreError> {
    let name = encode_name(&key.path());
    if name.len() > NAME_MAX {
        return Err(StoreError::Invalid(format!("key too long for the local store: {key}")));
    }
    Ok(name)
}

/// Percent-encodes every byte outside `[A-Za-z0-9._-]` (so `/` and `%` never survive) and a leading dot
/// (names starting with `.` are the store's own files).
pub fn encode_name(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    for (i, b) in path.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Inverse of `encode_name`; `None` for names `encode_name` cannot produce.
pub fn decode_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let path = String::from_utf8(out).ok()?;
    (encode_name(&path) == name).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn directory_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/store");
        let store = FileStore::open(&dir).unwrap();
        let mut s = store.lock().unwrap();
        s.create(&Key::Handle("net.c1".into()), json!({"block": {}})).unwrap();
        s.commit(&[
            Op::Create { key: Key::Handle("net.c2".into()), value: json!(1) },
            Op::Create { key: Key::Handle("net.c3".into()), value: json!(2) },
        ])
        .unwrap();
        drop(s);
        assert_eq!(mode(&dir), 0o700);
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            assert_eq!(mode(&e.path()), 0o600, "{:?}", e.file_name());
        }
        // A looser existing directory is tightened; a world-writable one is refused.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        FileStore::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(FileStore::open(&dir).is_err());
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        for id in ["../../etc/passwd", "..", ".", "a/b", "/abs", "%2F..", "x\0y", "\r\neth0", "ünï"] {
            let name = encode_name(&Key::Handle(id.into()).path());
            assert!(!name.contains('/') && !name.starts_with('.') && !name.contains('\0'), "{name}");
            assert_eq!(decode_name(&name).as_deref(), Some(Key::Handle(id.into()).path().as_str()));
        }
        assert!(!encode_name(".hidden").starts_with('.'));
        assert_eq!(decode_name("%2"), None);
        assert_eq!(decode_name("a%2fb"), None, "lowercase hex is not our encoding");

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let store = FileStore::open(&dir).unwrap();
        let mut s = store.lock().unwrap();
        let k = Key::Handle("../../../escape".into());
        s.create(&k, json!(1)).unwrap();
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1, "only the store dir exists");
        assert_eq!(s.get(&k).unwrap().unwrap().value, json!(1));
        assert_eq!(s.list(Kind::Handle).unwrap().len(), 1);
        // Absurdly long keys are refused, not truncated.
        assert!(matches!(s.create(&Key::Handle("x".repeat(300)), json!(1)), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn cas_conflicts_and_atomic_commits() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::open(tmp.path().join("s")).unwrap();
        let mut s = store.lock().unwrap();
        let k = Key::IpamConfig;
        let r1 = s.create(&k, json!({"strict_affinity": false})).unwrap();
        assert!(s.create(&k, json!({})).unwrap_err().is_conflict());
        let r2 = s.update(&k, json!({"strict_affinity": true}), r1).unwrap();
        assert!(r2 > r1);
        assert!(s.update(&k, json!({}), r1).unwrap_err().is_conflict());
        assert!(s.delete(&k, r1).unwrap_err().is_conflict());
        let h = Key::Handle("h".into());
        let err = s.commit(&[Op::Create { key: h.clone(), value: json!(1) }, Op::Update { key: k.clone(), value: json!(0), rev: r1 }]);
        assert!(err.unwrap_err().is_conflict());
        assert!(s.get(&h).unwrap().is_none(), "failed commit wrote nothing");
        let revs = s
            .commit(&[Op::Create { key: h.clone(), value: json!(1) }, Op::Update { key: k.clone(), value: json!(0), rev: r2 }])
            .unwrap();
        assert_eq!(s.get(&h).unwrap().unwrap().rev, revs[0]);
        assert_eq!(s.get(&k).unwrap().unwrap(), Record { value: json!(0), rev: revs[1] });
        assert!(!tmp.path().join("s").join(JOURNAL).exists());
        s.delete(&k, revs[1]).unwrap();
        assert!(s.get(&k).unwrap().is_none());
        // Recreated records never reuse an old revision.
        assert!(s.create(&k, json!(2)).unwrap() > revs[1]);
    }

    #[test]
    fn interrupted_journal_is_finished_by_the_next_session() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let store = FileStore::open(&dir).unwrap();
        let (a, b) = (Key::Handle("a".into()), Key::Handle("b".into()));
        let ra = store.lock().unwrap().create(&a, json!("old")).unwrap();
        // Simulate a process killed right after the commit point: journal present, records untouched.
        let content = |k: &Key, v: Value| Some(serde_json::to_string(&FileRecord { key: k.path(), revision: ra + 10, value: v }).unwrap());
        let j = Journal {
            ops: vec![
                JournalOp { name: encode_name(&a.path()), expect: Some(ra), content: content(&a, json!("new")) },
                JournalOp { name: encode_name(&b.path()), expect: None, content: content(&b, json!("created")) },
            ],
        };
        fs::write(dir.join(JOURNAL), serde_json::to_vec(&j).unwrap()).unwrap();
        let s = store.lock().unwrap();
        assert_eq!(s.get(&a).unwrap().unwrap().value, json!("new"));
        assert_eq!(s.get(&b).unwrap().unwrap().value, json!("created"));
        assert!(!dir.join(JOURNAL).exists());
    }

    #[test]
    fn corrupt_record_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let store = FileStore::open(&dir).unwrap();
        let k = Key::Handle("h".into());
        fs::write(dir.join(encode_name(&k.path())), b"{not json").unwrap();
        let s = store.lock().unwrap();
        assert!(matches!(s.get(&k), Err(StoreError::Corrupt { .. })));
        // A well-formed record filed under another key's name is also refused.
        let other = FileRecord { key: Key::Handle("x".into()).path(), revision: 1, value: json!(1) };
        fs::write(dir.join(encode_name(&k.path())), serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(matches!(s.get(&k), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn sessions_exclude_each_other_across_threads() {
        let tmp = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(FileStore::open(tmp.path().join("s")).unwrap());
        let k = Key::Handle("counter".into());
        store.lock().unwrap().create(&k, json!(0)).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                let k = k.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let mut s = store.lock().unwrap();
                        let r = s.get(&k).unwrap().unwrap();
                        let n = r.value.as_u64().unwrap();
                        // Without mutual exclusion some of these updates would conflict.
                        s.update(&k, json!(n + 1), r.rev).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.lock().unwrap().get(&k).unwrap().unwrap().value, json!(100));
    }
}
