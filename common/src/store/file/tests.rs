//! Tests of the local store: records, names and locking, then the log (torn frames, killed processes,
//! power loss, checkpoints).
use super::*;

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
            Change::Put { name: encode_name(&a.path()), content: record(&a, revs[0], json!("a2")) },
            Change::Put { name: encode_name(&b.path()), content: record(&b, revs[1], json!("b1")) },
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
    let put_b = Change::Put { name: encode_name(&b.path()), content: record(&b, 5, json!("x".repeat(3000))) };
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
        Change::Put { name: encode_name(&a.path()), content: record(&a, ra + 10, json!("new")) },
        Change::Put { name: encode_name(&b.path()), content: record(&b, ra + 10, json!("created")) },
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
    fs::write(dir.join(encode_name(&a.path())), record(&a, ra, json!("old"))).unwrap();
    fs::remove_file(dir.join(encode_name(&b.path()))).unwrap();
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
        let ops: Vec<Op> =
            keys.iter().zip(&revs).take(4).map(|(k, &rev)| Op::Update { key: k.clone(), value: json!(round), rev }).collect();
        revs[..4].copy_from_slice(&s.commit(&ops).unwrap());
    }
    s.delete(&keys[5], revs[5]).unwrap();
    drop(s);
    let expected = records(&dir);
    let name = |i: usize| dir.join(encode_name(&keys[i].path()));
    // What a power loss can do to record files written without fsync since the last checkpoint: lose them,
    // keep an older version, leave them empty or half written, bring a deleted one back.
    fs::remove_file(name(0)).unwrap();
    fs::write(name(1), record(&keys[1], revs[1] - 1, json!(1))).unwrap();
    fs::write(name(2), b"").unwrap();
    fs::write(name(3), &expected[&encode_name(&keys[3].path())][..7]).unwrap();
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
    assert_eq!(frames[0].changes[0].name(), encode_name(&small.path()));
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
        let h = Key::Handle(format!("c{i}"));
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
    s.commit(&[Op::Update { key: a.clone(), value: json!(2).into(), rev: rev_a }, Op::Create { key: b.clone(), value: json!(3).into() }]).unwrap();
    // Durable in the log, not yet in the files: the session still answers with what it committed.
    assert!(!dir.join(encode_name(&b.path())).exists(), "record files wait for the session's end");
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
    assert!(!dir.join(encode_name(&b.path())).exists());
    let s = store.lock().unwrap();
    assert_eq!(s.get(&a).unwrap().map(|r| r.value.to_value()), Some(serde_json::json!(2)));
    assert!(s.get(&b).unwrap().is_none());
}
