//! Tests of snapshots and watchers on the local store (`watch.rs`): the store revision across reopens and
//! reboots, pending commits, readers racing a writer, checkpoints, long keys.
use super::names;
use super::wal::{BootId, Log, START};
use super::FileStore;
use crate::store::watch::{Change, Watchable, Watched, Watcher};
use crate::store::{affinity_prefix, Datastore, Json, Key, Kind, Op, Record};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;

fn val(v: serde_json::Value) -> Json {
    Json::from(v)
}

fn booted(dir: &Path, boot: BootId) -> FileStore {
    FileStore { boot: Some(boot), ..FileStore::open(dir).unwrap() }
}

/// The changes until `n` have come, within 5 s.
fn collect(w: &mut dyn Watcher, n: usize) -> Vec<Change> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match w.next(deadline).unwrap() {
            Watched::Changes(c) => out.extend(c),
            Watched::Quiet => {}
            Watched::Resync => panic!("resync after {out:?}"),
        }
    }
    out
}

/// One frame per commit that writes: the revision counts them, and neither a reopen nor a replay after a
/// reboot (twice, the second with no frame since the first's fresh log) takes it back.
#[test]
fn the_store_revision_counts_commits_across_reopens_and_reboots() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    assert_eq!(store.snapshot(&[]).unwrap().revision, 0);
    let mut s = store.lock().unwrap();
    s.create(&Key::pool("a"), val(json!(1))).unwrap();
    s.commit(&[Op::Create { key: Key::pool("b"), value: val(json!(2)) }, Op::Create { key: Key::Handle("h".into()), value: val(json!(3)) }]).unwrap();
    s.commit(&[]).unwrap();
    let rb = s.get(&Key::pool("b")).unwrap().unwrap().rev;
    s.delete(&Key::pool("b"), rb).unwrap();
    drop(s);
    let pools = Kind::Resource(&crate::resources::kinds::IPPOOL).prefix();
    let snap = store.snapshot(&[pools]).unwrap();
    assert_eq!(snap.revision, 3);
    assert_eq!(snap.records.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![Key::pool("a")]);
    assert_eq!(FileStore::open(&dir).unwrap().snapshot(&[pools]).unwrap(), snap);
    // The first reader after a reboot cannot trust the record files: it reads under the lock, whose
    // session replays the log.
    assert_eq!(booted(&dir, [0xb0; 16]).snapshot(&[pools]).unwrap(), snap);
    assert_eq!(booted(&dir, [0xb1; 16]).snapshot(&[pools]).unwrap(), snap);
    let again = booted(&dir, [0xb1; 16]);
    again.lock().unwrap().create(&Key::pool("c"), val(json!(4))).unwrap();
    assert_eq!(again.snapshot(&[pools]).unwrap().revision, 4);
}

/// A commit whose record file is still pending (its session holds the lock) is in snapshots and watches:
/// neither takes the lock.
#[test]
fn a_pending_commit_is_seen_without_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path().join("s")).unwrap();
    let pools = Kind::Resource(&crate::resources::kinds::IPPOOL).prefix();
    store.lock().unwrap().create(&Key::pool("old"), val(json!(0))).unwrap();
    let before = store.snapshot(&[pools]).unwrap();
    let mut w = store.watch(&[pools], before.revision + 1).unwrap();
    let mut s = store.lock().unwrap();
    let rev = s.create(&Key::pool("p"), val(json!({"cidr": "10.0.0.0/24"}))).unwrap();
    assert!(!store.dir.join(names::file_name(&Key::pool("p").path())).exists(), "pending, not in its file yet");
    let (tx, rx) = std::sync::mpsc::channel();
    let snap = std::thread::scope(|scope| {
        scope.spawn(|| tx.send(store.snapshot(&[pools]).unwrap()).unwrap());
        let got = rx.recv_timeout(Duration::from_secs(5));
        // Let a snapshot that waits for the lock go on, so that a failure does not hang the test.
        drop(s);
        got.expect("the snapshot waited for the session's lock")
    });
    assert_eq!(snap.revision, before.revision + 1);
    assert_eq!(
        snap.records,
        vec![(Key::pool("old"), before.records[0].1.clone()), (Key::pool("p"), Record { value: val(json!({"cidr": "10.0.0.0/24"})), rev })]
    );
    let c = collect(w.as_mut(), 1);
    assert_eq!(
        c,
        vec![Change::Put { key: Key::pool("p"), record: Record { value: val(json!({"cidr": "10.0.0.0/24"})), rev }, revision: snap.revision }]
    );
}

/// Snapshots and a watcher while another thread commits as fast as it can (each commit sets two records
/// to the same number): every snapshot holds one commit's state whole, revisions only grow, and the watcher
/// sees every commit once, in order.
#[test]
fn readers_racing_a_writer_see_whole_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path().join("s")).unwrap();
    let pools = Kind::Resource(&crate::resources::kinds::IPPOOL).prefix();
    let (a, b) = (Key::pool("a"), Key::pool("b"));
    const COMMITS: u64 = 300;
    let mut w = store.watch(&[pools], 1).unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut s = store.lock().unwrap();
            let mut revs = vec![s.create(&a, val(json!({"n": 0}))).unwrap(), s.create(&b, val(json!({"n": 0}))).unwrap()];
            drop(s);
            for n in 1..COMMITS {
                // A session per commit or several: both leave commits pending for a while.
                let mut s = store.lock().unwrap();
                let ops = [
                    Op::Update { key: a.clone(), value: val(json!({"n": n})), rev: revs[0] },
                    Op::Update { key: b.clone(), value: val(json!({"n": n})), rev: revs[1] },
                ];
                revs = s.commit(&ops).unwrap();
                if n % 3 != 0 {
                    drop(s);
                }
            }
        });
        let mut last = 0;
        while last < COMMITS + 1 {
            let snap = store.snapshot(&[pools]).unwrap();
            assert!(snap.revision >= last, "revision went back: {} after {last}", snap.revision);
            last = snap.revision;
            let values: Vec<String> = snap.records.iter().map(|(_, r)| r.value.as_str().to_string()).collect();
            assert!(values.is_empty() || values.len() == 2 && values[0] == values[1] || snap.revision == 1, "{values:?} at {}", snap.revision);
        }
    });
    let changes = collect(w.as_mut(), 2 * COMMITS as usize);
    assert_eq!(changes.len(), 2 * COMMITS as usize);
    for (i, c) in changes.iter().enumerate() {
        // Two single-record creates (revisions 1 and 2), then two-record commits n = 1.. at n + 2.
        let n = if i < 2 { 0 } else { i as u64 / 2 };
        let Change::Put { record, revision, .. } = c else { panic!("{c:?}") };
        assert_eq!(record.value, val(json!({ "n": n })), "change {i}");
        assert_eq!(*revision, if i < 2 { i as u64 + 1 } else { n + 2 }, "change {i}");
    }
}

/// A watcher that keeps up reads on across checkpoints (the log starts again at its front); one that
/// lags behind two of them finds its frames gone: `Resync`.
#[test]
fn a_watcher_keeps_up_across_checkpoints_and_a_lagging_one_resyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path().join("s")).unwrap();
    let handles = Kind::Handle.prefix();
    let mut w = store.watch(&[handles], 1).unwrap();
    let mut lagging = store.watch(&[handles], 1).unwrap();
    let big = val(json!("x".repeat(400_000)));
    let (mut checkpoints, mut last_end, mut commits) = (0, START, 0u64);
    while checkpoints < 2 || commits % 3 != 0 {
        let key = Key::Handle(format!("h{}", commits % 3));
        let mut s = store.lock().unwrap();
        let rev = match s.get(&key).unwrap() {
            Some(r) => s.update(&key, big.clone(), r.rev).unwrap(),
            None => s.create(&key, big.clone()).unwrap(),
        };
        drop(s);
        commits += 1;
        let c = collect(w.as_mut(), 1);
        assert_eq!(c, vec![Change::Put { key, record: Record { value: big.clone(), rev }, revision: commits }], "commit {commits}");
        let end = Log::open(&store.dir, store.boot).unwrap().unwrap().0.hint.end;
        if end < last_end {
            checkpoints += 1;
        }
        last_end = end;
        assert!(commits < 200, "no checkpoint");
    }
    assert_eq!(lagging.next(Instant::now() + Duration::from_secs(5)).unwrap(), Watched::Resync);
    // After a resync: a snapshot, and a watcher from its revision.
    let snap = store.snapshot(&[handles]).unwrap();
    assert_eq!((snap.revision, snap.records.len()), (commits, 3));
    let mut fresh = store.watch(&[handles], snap.revision + 1).unwrap();
    assert_eq!(fresh.next(Instant::now() + Duration::from_millis(50)).unwrap(), Watched::Quiet);
}

/// Keys too long for a file name are named by their record alone: a watcher learns which key a deleted
/// file held from the directory when it starts and from the puts it reads, and ignores a neighbour whose
/// name starts the same.
#[test]
fn long_keys_are_followed_through_their_hashed_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path().join("s")).unwrap();
    let host = "n".repeat(253);
    let neighbour = format!("{}m", "n".repeat(252));
    let aff = |host: &str, cidr: &str| Key::Affinity { host: host.to_string(), cidr: cidr.parse().unwrap() };
    let (a1, a2, other) = (aff(&host, "10.0.0.0/26"), aff(&host, "fd00::/122"), aff(&neighbour, "10.0.1.0/26"));
    assert!(names::is_hashed(&names::file_name(&a1.path())));
    let r1 = store.lock().unwrap().create(&a1, val(json!("confirmed"))).unwrap();
    let prefix = affinity_prefix(&host);
    let snap = store.snapshot(&[&prefix]).unwrap();
    assert_eq!(snap.records.len(), 1);
    let mut w = store.watch(&[&prefix], snap.revision + 1).unwrap();
    let mut s = store.lock().unwrap();
    let r2 = s.create(&a2, val(json!("pending"))).unwrap();
    let ro = s.create(&other, val(json!("x"))).unwrap();
    s.delete(&a1, r1).unwrap();
    s.delete(&other, ro).unwrap();
    s.delete(&a2, r2).unwrap();
    drop(s);
    let c = collect(w.as_mut(), 3);
    let base = snap.revision;
    assert_eq!(
        c,
        vec![
            Change::Put { key: a2.clone(), record: Record { value: val(json!("pending")), rev: r2 }, revision: base + 1 },
            Change::Delete { key: a1, revision: base + 3 },
            Change::Delete { key: a2, revision: base + 5 },
        ]
    );
    assert_eq!(w.next(Instant::now() + Duration::from_millis(50)).unwrap(), Watched::Quiet);
}
