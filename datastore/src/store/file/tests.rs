//! Tests of the local store: records, names and locking, then the log (torn frames, killed processes,
//! power loss, checkpoints).
use super::names::file_name;
use super::session::{FileRecord, FileSession, Journal, JournalOp, JOURNAL};
use super::wal::Change;
use super::*;
use crate::store::{Json, Key, Kind, Op, Record, Revision};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// `serde_json::json!`, as a record value.
macro_rules! json {
    ($($t:tt)+) => {
        Json::from(serde_json::json!($($t)+))
    };
}

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
    s.commit(&[Op::Create { key: Key::Handle("net.c2".into()), value: json!(1) }, Op::Create { key: Key::Handle("net.c3".into()), value: json!(2) }])
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
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = FileStore::open(&dir).unwrap();
    let mut s = store.lock().unwrap();
    let k = Key::Handle("../../../escape".into());
    s.create(&k, json!(1)).unwrap();
    let deep = Key::Handle("../".repeat(200));
    s.create(&deep, json!(2)).unwrap();
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1, "only the store dir exists");
    assert_eq!(s.get(&k).unwrap().unwrap().value, json!(1));
    assert_eq!(s.get(&deep).unwrap().unwrap().value, json!(2));
    assert_eq!(s.list(Kind::Handle).unwrap().len(), 2);
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
    let revs = s.commit(&[Op::Create { key: h.clone(), value: json!(1) }, Op::Update { key: k.clone(), value: json!(0), rev: r2 }]).unwrap();
    assert_eq!(s.get(&h).unwrap().unwrap().rev, revs[0]);
    assert_eq!(s.get(&k).unwrap().unwrap(), Record { value: json!(0), rev: revs[1] });
    assert!(!tmp.path().join("s").join(JOURNAL).exists());
    s.delete(&k, revs[1]).unwrap();
    assert!(s.get(&k).unwrap().is_none());
    // Recreated records never reuse an old revision.
    assert!(s.create(&k, json!(2)).unwrap() > revs[1]);
}

/// A commit checks its preconditions against the revisions the session read and wrote, not the files; a new
/// session reads the files again.
#[test]
fn a_session_checks_commits_against_what_it_read_and_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path().join("s")).unwrap();
    let mut s = store.lock().unwrap();
    let k = Key::Handle("h".into());
    assert!(s.get(&k).unwrap().is_none());
    assert!(s.update(&k, json!(0), 5).unwrap_err().is_conflict(), "absent");
    let r1 = s.create(&k, json!(1)).unwrap();
    assert!(s.create(&k, json!(2)).unwrap_err().is_conflict(), "created");
    let r2 = s.update(&k, json!(2), r1).unwrap();
    assert!(s.update(&k, json!(3), r1).unwrap_err().is_conflict(), "stale");
    s.delete(&k, r2).unwrap();
    assert!(s.delete(&k, r2).unwrap_err().is_conflict(), "deleted");
    let r3 = s.create(&k, json!(4)).unwrap();
    drop(s);
    let mut s = store.lock().unwrap();
    assert!(s.update(&k, json!(5), r2).unwrap_err().is_conflict());
    let r4 = s.update(&k, json!(5), r3).unwrap();
    assert_eq!(s.get(&k).unwrap().unwrap(), Record { value: json!(5), rev: r4 });
}

#[test]
fn interrupted_journal_is_finished_by_the_next_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let (a, b) = (Key::Handle("a".into()), Key::Handle("b".into()));
    let ra = store.lock().unwrap().create(&a, json!("old")).unwrap();
    // Simulate a process killed right after the commit point: journal present, records untouched.
    let content = |k: &Key, v: Json| Some(serde_json::to_string(&FileRecord { key: k.path(), revision: ra + 10, value: v }).unwrap());
    let j = Journal {
        ops: vec![
            JournalOp { name: file_name(&a.path()), expect: Some(ra), content: content(&a, json!("new")) },
            JournalOp { name: file_name(&b.path()), expect: None, content: content(&b, json!("created")) },
        ],
    };
    fs::write(dir.join(JOURNAL), serde_json::to_vec(&j).unwrap()).unwrap();
    let mut s = store.lock().unwrap();
    assert_eq!(s.get(&a).unwrap().unwrap().value, json!("new"));
    assert_eq!(s.get(&b).unwrap().unwrap().value, json!("created"));
    assert!(!dir.join(JOURNAL).exists());
    // The session checks commits against the finished journal, not what it read before finishing it.
    s.update(&a, json!("newer"), ra + 10).unwrap();
}

#[test]
fn corrupt_record_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let k = Key::Handle("h".into());
    fs::write(dir.join(file_name(&k.path())), b"{not json").unwrap();
    let s = store.lock().unwrap();
    assert!(matches!(s.get(&k), Err(StoreError::Corrupt { .. })));
    // A well-formed record filed under another key's name is also refused.
    let other = FileRecord { key: Key::Handle("x".into()).path(), revision: 1, value: json!(1) };
    fs::write(dir.join(file_name(&k.path())), serde_json::to_vec(&other).unwrap()).unwrap();
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
                    let n: u64 = r.value.decode().unwrap();
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

// --- The write-ahead log ---

use super::wal::{encode_frame, Hint, Log, State, CHECKPOINT_AT, HINT_AT, LOG, START};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

/// A boot id no real kernel hands out in these tests: opening with it is the first session after a reboot.
const OTHER_BOOT: BootId = [0xb0; 16];

fn after_reboot(dir: &Path) -> FileStore {
    FileStore { boot: Some(OTHER_BOOT), ..FileStore::open(dir).unwrap() }
}

fn hint(store: &FileStore) -> Hint {
    Log::open(&store.dir, store.boot).unwrap().unwrap().0.hint
}

fn record(k: &Key, revision: Revision, value: Json) -> Vec<u8> {
    serde_json::to_vec(&FileRecord { key: k.path(), revision, value }).unwrap()
}

/// Writes a frame into the log as a process killed before it applied it would leave it.
fn write_frame(dir: &Path, at: u64, frame: &[u8]) {
    OpenOptions::new().write(true).open(dir.join(LOG)).unwrap().write_all_at(frame, at).unwrap();
}

/// Every record file and its bytes (revisions included, so equal maps mean equal states).
fn records(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .map(|n| (n.clone(), fs::read(dir.join(&n)).unwrap()))
        .collect()
}

#[test]
fn log_is_created_once_private_and_untouched_by_rejected_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let k = Key::Handle("h".into());
    let r = store.lock().unwrap().create(&k, json!(1)).unwrap();
    assert_eq!(mode(&dir.join(LOG)), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let (ino, bytes) = (fs::metadata(dir.join(LOG)).unwrap().ino(), fs::read(dir.join(LOG)).unwrap());
    let mut s = store.lock().unwrap();
    assert!(s.create(&k, json!(2)).unwrap_err().is_conflict());
    assert!(s.update(&k, json!(2), r + 1).unwrap_err().is_conflict());
    assert!(s.commit(&[Op::Create { key: Key::Handle("x".into()), value: json!(0) }, Op::Delete { key: k.clone(), rev: 1 }]).is_err());
    drop(s);
    drop(store.lock().unwrap());
    assert_eq!(fs::metadata(dir.join(LOG)).unwrap().ino(), ino, "a clean session does not rewrite the log");
    assert_eq!(fs::read(dir.join(LOG)).unwrap(), bytes, "rejected commits and clean sessions leave the log alone");
}

#[test]
fn a_commit_is_one_frame_with_whole_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let (a, b) = (Key::Handle("a".into()), Key::Handle("b".into()));
    let ra = store.lock().unwrap().create(&a, json!("a1")).unwrap();
    let before = hint(&store);
    let revs = store
        .lock()
        .unwrap()
        .commit(&[Op::Update { key: a.clone(), value: json!("a2"), rev: ra }, Op::Create { key: b.clone(), value: json!("b1") }])
        .unwrap();
    let after = hint(&store);
    assert_eq!(after.seq, before.seq + 1);
    let (log, _) = Log::open(&dir, store.boot).unwrap().unwrap();
    let frames = log.scan(after.end).unwrap();
    let last = frames.last().unwrap();
    assert_eq!((last.seq, before.end + last.len), (after.seq, after.end));
    assert_eq!(
        last.changes,
        vec![
            Change::Put { name: file_name(&a.path()), content: record(&a, revs[0], json!("a2")) },
            Change::Put { name: file_name(&b.path()), content: record(&b, revs[1], json!("b1")) },
        ]
    );
}

#[test]
fn torn_or_corrupt_frame_is_a_commit_that_never_happened() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let (a, b) = (Key::Handle("a".into()), Key::Handle("b".into()));
    store.lock().unwrap().create(&a, json!("a")).unwrap();
    let h = hint(&store);
    let put_b = Change::Put { name: file_name(&b.path()), content: record(&b, 5, json!("x".repeat(3000))) };
    let frame = encode_frame(h.seq + 1, &[put_b]).unwrap();
    let mut corrupt = frame.clone();
    *corrupt.last_mut().unwrap() ^= 1;
    for damaged in [&frame[..frame.len() / 2], &frame[..10], &corrupt[..]] {
        write_frame(&dir, h.end, damaged);
        let s = store.lock().unwrap();
        assert!(s.get(&b).unwrap().is_none());
        drop(s);
        assert_eq!(hint(&store), h, "nothing was applied");
    }
    // The next commit goes where the damaged frame was; what is left of it after the new frame is ignored,
    // also by a replay after a reboot.
    store.lock().unwrap().create(&b, json!("real")).unwrap();
    let expected = records(&dir);
    drop(after_reboot(&dir).lock().unwrap());
    assert_eq!(records(&dir), expected);
    assert_eq!(store.lock().unwrap().get(&b).unwrap().unwrap().value, json!("real"));
}

#[test]
fn frame_left_by_a_killed_process_is_finished_by_the_next_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let (a, b) = (Key::Handle("a".into()), Key::Handle("b".into()));
    let ra = store.lock().unwrap().create(&a, json!("old")).unwrap();
    // Killed after appending (maybe before its fdatasync): the frame is whole, no record shows it yet.
    let h = hint(&store);
    let changes = [
        Change::Put { name: file_name(&a.path()), content: record(&a, ra + 10, json!("new")) },
        Change::Put { name: file_name(&b.path()), content: record(&b, ra + 10, json!("created")) },
    ];
    let frame = encode_frame(h.seq + 1, &changes).unwrap();
    write_frame(&dir, h.end, &frame);
    let s = store.lock().unwrap();
    assert_eq!(s.get(&a).unwrap().unwrap(), Record { value: json!("new"), rev: ra + 10 });
    assert_eq!(s.get(&b).unwrap().unwrap().value, json!("created"));
    drop(s);
    assert_eq!(hint(&store), Hint { seq: h.seq + 1, end: h.end + frame.len() as u64, ..h });
    // Killed after applying only part of it: applying it again gives the same state.
    let expected = records(&dir);
    fs::write(dir.join(file_name(&a.path())), record(&a, ra, json!("old"))).unwrap();
    fs::remove_file(dir.join(file_name(&b.path()))).unwrap();
    // (as if the hint had not been updated after the frame was applied)
    OpenOptions::new().write(true).open(dir.join(LOG)).unwrap().write_all_at(&h.encode(), HINT_AT).unwrap();
    drop(store.lock().unwrap());
    assert_eq!(records(&dir), expected);
}

#[test]
fn power_loss_replays_every_frame_since_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let keys: Vec<Key> = (0..6).map(|i| Key::Handle(format!("h{i}"))).collect();
    let mut s = store.lock().unwrap();
    let mut revs: Vec<Revision> = keys.iter().map(|k| s.create(k, json!(0)).unwrap()).collect();
    for round in 1..4 {
        let ops: Vec<Op> = keys.iter().zip(&revs).take(4).map(|(k, &rev)| Op::Update { key: k.clone(), value: json!(round), rev }).collect();
        revs[..4].copy_from_slice(&s.commit(&ops).unwrap());
    }
    s.delete(&keys[5], revs[5]).unwrap();
    drop(s);
    let expected = records(&dir);
    let name = |i: usize| dir.join(file_name(&keys[i].path()));
    // What a power loss can do to record files written without fsync since the last checkpoint: lose them,
    // keep an older version, leave them empty or half written, bring a deleted one back.
    fs::remove_file(name(0)).unwrap();
    fs::write(name(1), record(&keys[1], revs[1] - 1, json!(1))).unwrap();
    fs::write(name(2), b"").unwrap();
    fs::write(name(3), &expected[&file_name(&keys[3].path())][..7]).unwrap();
    fs::write(name(5), record(&keys[5], revs[5], json!(0))).unwrap();
    assert_ne!(records(&dir), expected);

    let rebooted = after_reboot(&dir);
    let s = rebooted.lock().unwrap();
    assert_eq!(s.list(Kind::Handle).unwrap().len(), 5);
    drop(s);
    assert_eq!(records(&dir), expected);
    // The replay made the records durable and wrote a fresh log for this boot: the next session is clean.
    let h = hint(&rebooted);
    assert_eq!((h.boot, h.end), (OTHER_BOOT, START));
    assert!(matches!(Log::open(&dir, rebooted.boot).unwrap().unwrap().1, State::Clean));
    assert_eq!(mode(&dir.join(LOG)), 0o600);

    // A damaged hint in the same boot is handled the same way (replay everything since the checkpoint).
    let mut s = rebooted.lock().unwrap();
    s.update(&keys[4], json!("after"), revs[4]).unwrap();
    drop(s);
    let expected = records(&dir);
    fs::remove_file(name(4)).unwrap();
    write_frame(&dir, HINT_AT, b"garbage");
    drop(rebooted.lock().unwrap());
    assert_eq!(records(&dir), expected);
}

#[test]
fn checkpoint_syncs_and_restarts_the_log_without_losing_replays() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let (big, small) = (Key::Handle("big".into()), Key::Handle("small".into()));
    // One session per commit: a session applies its last commit (and checkpoints) when it ends.
    let mut rev = store.lock().unwrap().create(&big, json!(0)).unwrap();
    let value = json!("x".repeat(400_000));
    let mut commits = 1;
    let mut last_end = hint(&store).end;
    while hint(&store).end > START {
        last_end = hint(&store).end;
        rev = store.lock().unwrap().update(&big, value.clone(), rev).unwrap();
        commits += 1;
        assert!(commits < 100, "no checkpoint after {commits} commits");
    }
    assert!(last_end - START < CHECKPOINT_AT, "checkpoint once the frames pass CHECKPOINT_AT bytes");
    assert!(commits as u64 * 400_000 >= CHECKPOINT_AT, "not before ({commits} commits)");
    assert!(fs::metadata(dir.join(LOG)).unwrap().len() > CHECKPOINT_AT, "the log grew to hold the frames");
    // A reboot right after a checkpoint replays the previous generation, which changes nothing.
    let expected = records(&dir);
    match Log::open(&dir, Some(OTHER_BOOT)).unwrap().unwrap().1 {
        State::Replay(frames) => assert_eq!(frames.len(), commits),
        _ => panic!("expected a replay"),
    }
    // One commit in the new generation: a replay sees only it, not what the old generation left behind.
    store.lock().unwrap().create(&small, json!(1)).unwrap();
    let State::Replay(frames) = Log::open(&dir, Some(OTHER_BOOT)).unwrap().unwrap().1 else { panic!("expected a replay") };
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].changes[0].name(), file_name(&small.path()));
    let mut expected = expected;
    expected.extend(records(&dir));
    drop(after_reboot(&dir).lock().unwrap());
    assert_eq!(records(&dir), expected);
}

#[test]
fn add_del_churn_allocates_no_inodes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let block = Key::Handle("block".into());
    let mut rb = store.lock().unwrap().create(&block, json!(0)).unwrap();
    // Like a warm ADD (handle created, block updated) and its DEL, each in its own session.
    let mut cycle = |i: usize| {
        // Every other handle with a hashed file name: spares hold and park those inodes alike.
        let h = Key::Handle(if i.is_multiple_of(2) { format!("c{i}") } else { format!("c{i}-{}", "x".repeat(300)) });
        let revs = store
            .lock()
            .unwrap()
            .commit(&[Op::Create { key: h.clone(), value: json!(i) }, Op::Update { key: block.clone(), value: json!(i), rev: rb }])
            .unwrap();
        let revs2 = store
            .lock()
            .unwrap()
            .commit(&[Op::Update { key: block.clone(), value: json!(-1), rev: revs[1] }, Op::Delete { key: h, rev: revs[0] }])
            .unwrap();
        rb = revs2[0];
    };
    let inodes = |dir: &Path| -> BTreeSet<u64> { fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().ino()).collect() };
    for i in 0..3 {
        cycle(i);
    }
    let before = inodes(&dir);
    for i in 3..30 {
        cycle(i);
    }
    assert!(inodes(&dir).is_subset(&before), "inodes are reused, not allocated: {before:?} vs {:?}", inodes(&dir));
    let s = store.lock().unwrap();
    assert_eq!(s.list(Kind::Handle).unwrap().len(), 1, "only the block record is left");
    assert_eq!(s.get(&block).unwrap().unwrap().value, json!(-1));
}

#[test]
fn a_commit_is_read_back_before_its_record_files_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let (a, b) = (Key::Handle("a".into()), Key::Handle("b".into()));
    let rev_a = store.lock().unwrap().create(&a, json!(1)).unwrap();
    let mut s = store.lock().unwrap();
    s.commit(&[Op::Update { key: a.clone(), value: json!(2), rev: rev_a }, Op::Create { key: b.clone(), value: json!(3) }]).unwrap();
    // Durable in the log, not yet in the files: the session still answers with what it committed.
    assert!(!dir.join(file_name(&b.path())).exists(), "record files wait for the session's end");
    assert_eq!(s.get(&b).unwrap().map(|r| r.value.to_value()), Some(serde_json::json!(3)));
    assert_eq!(s.get(&a).unwrap().map(|r| r.value.to_value()), Some(serde_json::json!(2)));
    let listed: Vec<Key> = s.list(Kind::Handle).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(listed, vec![a.clone(), b.clone()]);
    // A second commit applies the first; deleting what is pending works as on disk.
    let rev_b = s.get(&b).unwrap().unwrap().rev;
    s.commit(&[Op::Delete { key: b.clone(), rev: rev_b }]).unwrap();
    assert!(s.get(&b).unwrap().is_none());
    assert_eq!(s.list(Kind::Handle).unwrap().len(), 1);
    drop(s);
    assert!(!dir.join(file_name(&b.path())).exists());
    let s = store.lock().unwrap();
    assert_eq!(s.get(&a).unwrap().map(|r| r.value.to_value()), Some(serde_json::json!(2)));
    assert!(s.get(&b).unwrap().is_none());
}

// --- Keys too long for a plain file name (see names.rs) ---

/// Keys of every length side by side: a 253-character node's affinity and index, long handles, and handles
/// whose encoded path is exactly `NAME_MAX` bytes (the last plain name) and one byte more (the first hashed).
fn mixed_keys() -> Vec<Key> {
    let node = format!("node.{}", "n".repeat(248));
    let base = file_name(&Key::Handle(String::new()).path()).len();
    vec![
        Key::Handle("short".into()),
        Key::Handle("b".repeat(super::names::NAME_MAX - base)),
        Key::Handle("c".repeat(super::names::NAME_MAX - base + 1)),
        Key::Handle(format!("net.{}", "d".repeat(600))),
        Key::Affinity { host: node.clone(), cidr: "fd00:1234:5678:9abc:def0:1234:5678:9a00/122".parse().unwrap() },
        Key::Affinity { host: "n1".into(), cidr: "10.0.0.0/26".parse().unwrap() },
        Key::HostBlocks(node),
    ]
}

#[test]
fn keys_of_any_length_are_created_updated_listed_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let keys = mixed_keys();
    let names: Vec<String> = keys.iter().map(|k| file_name(&k.path())).collect();
    assert_eq!((names[1].len(), names[1].contains('~')), (super::names::NAME_MAX, false), "exactly at the limit: plain");
    assert_eq!((names[2].len(), names[2].contains('~')), (super::names::NAME_MAX, true), "one byte over: hashed");
    assert!(names.iter().all(|n| n.len() <= super::names::NAME_MAX));

    let mut s = store.lock().unwrap();
    let ops: Vec<Op> = keys.iter().enumerate().map(|(i, k)| Op::Create { key: k.clone(), value: json!(i) }).collect();
    let mut revs = s.commit(&ops).unwrap();
    // Pending (logged, not yet in files) and then applied by the next commit: read and listed alike.
    for round in 0..2 {
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(s.get(k).unwrap(), Some(Record { value: json!(i), rev: revs[i] }), "round {round}: {k}");
        }
        let handles: Vec<Key> = s.list(Kind::Handle).unwrap().into_iter().map(|(k, _)| k).collect();
        let mut want = keys[..4].to_vec();
        want.sort();
        assert_eq!(handles, want, "round {round}");
        assert_eq!(s.list(Kind::Affinity).unwrap().len(), 2);
        assert_eq!(s.list(Kind::HostBlocks).unwrap(), vec![(keys[6].clone(), Record { value: json!(6), rev: revs[6] })]);
        assert!(s.create(&keys[3], json!(0)).unwrap_err().is_conflict(), "exists");
        if round == 0 {
            s.create(&Key::IpamConfig, json!({})).unwrap();
        }
    }
    // Updates checked against what the session knows, then a new session reads the files.
    revs[3] = s.update(&keys[3], json!("u"), revs[3]).unwrap();
    assert!(s.update(&keys[4], json!("stale"), revs[4] - 1).unwrap_err().is_conflict());
    drop(s);
    let mut s = store.lock().unwrap();
    assert_eq!(s.get(&keys[3]).unwrap().unwrap().value, json!("u"));
    assert!(s.update(&keys[6], json!("stale"), revs[6] + 1).unwrap_err().is_conflict(), "a fresh session reads the file");
    let listed = s.list(Kind::Handle).unwrap();
    let (key, rec) = listed.iter().find(|(k, _)| *k == keys[2]).unwrap();
    revs[2] = s.update(key, json!("via list"), rec.rev).unwrap();
    for i in [3, 4, 6] {
        s.delete(&keys[i], revs[i]).unwrap();
    }
    drop(s);
    let s = store.lock().unwrap();
    assert_eq!(s.get(&keys[2]).unwrap().map(|r| r.value), Some(json!("via list")));
    for i in [3, 4, 6] {
        assert!(s.get(&keys[i]).unwrap().is_none(), "{}", keys[i]);
    }
    let on_disk: BTreeSet<String> = records(&dir).into_keys().collect();
    let expected: BTreeSet<String> = [0, 1, 2, 5].iter().map(|&i| names[i].clone()).chain([file_name(&Key::IpamConfig.path())]).collect();
    assert_eq!(on_disk, expected);
}

/// What a reader sees when two keys' hashed names collide: the file under the name holds the other key.
/// (A real SHA-256 collision cannot be made; the record is filed under the name by hand.)
#[test]
fn a_record_filed_under_another_keys_name_is_an_error_not_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let (a, b) = (Key::Handle(format!("a{}", "x".repeat(300))), Key::Handle(format!("b{}", "x".repeat(300))));
    let ra = store.lock().unwrap().create(&a, json!("a")).unwrap();
    fs::copy(dir.join(file_name(&a.path())), dir.join(file_name(&b.path()))).unwrap();
    let mut s = store.lock().unwrap();
    assert!(matches!(s.get(&b), Err(StoreError::Corrupt { .. })));
    assert!(matches!(s.create(&b, json!("b")), Err(StoreError::Corrupt { .. })), "not a conflict, not a create");
    assert!(matches!(s.update(&b, json!("b"), ra), Err(StoreError::Corrupt { .. })), "a's revision does not open b");
    assert!(matches!(s.delete(&b, ra), Err(StoreError::Corrupt { .. })));
    assert_eq!(s.get(&a).unwrap(), Some(Record { value: json!("a"), rev: ra }));
    assert!(matches!(s.list(Kind::Handle), Err(StoreError::Corrupt { .. })), "list checks names against keys");
    drop(s);
    assert_eq!(fs::read(dir.join(file_name(&a.path()))).unwrap(), fs::read(dir.join(file_name(&b.path()))).unwrap(), "nothing written");

    // A true collision, b's name being a's: what `get(b)` would read, from the file and from a pending commit.
    fs::remove_file(dir.join(file_name(&b.path()))).unwrap();
    let lock = File::create(dir.join(LOCK_FILE)).unwrap();
    let mut s = FileSession::open(&dir, true, store.boot, lock).unwrap();
    let collides = |r: Result<Option<FileRecord>, StoreError>| matches!(r, Err(StoreError::Corrupt { reason, .. }) if reason.contains("collide"));
    assert!(collides(s.read(&file_name(&a.path()), Some(&b.path()))));
    let c = Key::Handle(format!("c{}", "x".repeat(300)));
    s.create(&c, json!("c")).unwrap();
    assert!(s.pending.borrow().is_some());
    assert!(collides(s.read(&file_name(&c.path()), Some(&b.path()))));
    assert_eq!(s.read(&file_name(&c.path()), Some(&c.path())).unwrap().map(|r| r.key), Some(c.path()));
}

#[test]
fn a_killed_commit_with_long_keys_is_finished_and_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    let keys = mixed_keys();
    let mut s = store.lock().unwrap();
    let revs: Vec<Revision> = keys.iter().map(|k| s.create(k, json!(0)).unwrap()).collect();
    drop(s);
    // Killed after appending a frame that updates, creates and deletes long and short keys alike.
    let h = hint(&store);
    let created = Key::Affinity { host: format!("m.{}", "m".repeat(251)), cidr: "10.0.0.64/26".parse().unwrap() };
    let changes = vec![
        Change::Put { name: file_name(&keys[0].path()), content: record(&keys[0], revs[0] + 10, json!("new")) },
        Change::Put { name: file_name(&keys[4].path()), content: record(&keys[4], revs[4] + 10, json!("new")) },
        Change::Put { name: file_name(&created.path()), content: record(&created, revs[6] + 10, json!("created")) },
        Change::Delete { name: file_name(&keys[3].path()) },
        Change::Delete { name: file_name(&keys[2].path()) },
    ];
    write_frame(&dir, h.end, &encode_frame(h.seq + 1, &changes).unwrap());
    assert!(FileStore::has_unapplied_commit(&dir).unwrap());
    let s = store.lock().unwrap();
    assert_eq!(s.get(&keys[4]).unwrap(), Some(Record { value: json!("new"), rev: revs[4] + 10 }));
    assert_eq!(s.get(&created).unwrap().map(|r| r.value), Some(json!("created")));
    assert!(s.get(&keys[3]).unwrap().is_none() && s.get(&keys[2]).unwrap().is_none());
    assert_eq!(s.list(Kind::Affinity).unwrap().len(), 3);
    drop(s);
    assert!(!FileStore::has_unapplied_commit(&dir).unwrap());
    // A power loss since: the long keys' files lost or stale, a deleted one back; the replay restores all.
    let expected = records(&dir);
    fs::remove_file(dir.join(file_name(&created.path()))).unwrap();
    fs::write(dir.join(file_name(&keys[4].path())), record(&keys[4], revs[4], json!(0))).unwrap();
    fs::write(dir.join(file_name(&keys[3].path())), record(&keys[3], revs[3], json!(0))).unwrap();
    assert_ne!(records(&dir), expected);
    let rebooted = after_reboot(&dir);
    let s = rebooted.lock().unwrap();
    assert_eq!(s.list(Kind::Handle).unwrap().len(), 2);
    drop(s);
    assert_eq!(records(&dir), expected);
}
