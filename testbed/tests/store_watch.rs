//! The store's reader API (`Watchable`: snapshots and watchers), one set of tests run against every backend:
//! `MemStore`, `FileStore` in a temp dir and `EtcdStore` against a throw-away etcd; then what only some have:
//! commits from another handle and another process, a process killed with its commit pending (local store),
//! members killed and restarted mid-watch (etcd). They live here, not in datastore/tests, because the etcd
//! bed is testbed's and testbed depends on datastore. The etcd half needs root and etcd-server.
use datastore::resources::kinds;
use datastore::store::{
    affinity_prefix, Change, Datastore, EtcdOptions, EtcdStore, FileStore, Json, Key, Kind, MemStore, Record, Revision, StoreError, Watchable,
};
use datastore::store::{Watched, Watcher};
use nix::sys::resource::{getrusage, UsageWho};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testbed::etcd::{self, Etcd};

/// The backends a test runs on.
enum Bed {
    Mem(MemStore),
    File { dir: tempfile::TempDir, store: FileStore },
    Etcd { etcd: Box<Etcd>, store: EtcdStore },
}

impl Bed {
    /// Every backend; etcd where it can run (root and etcd-server; in CI it must).
    fn all(test: &str) -> Vec<Bed> {
        let mut beds = vec![Bed::Mem(MemStore::new()), Bed::file()];
        if etcd::available(test) {
            beds.push(Bed::etcd(1));
        }
        beds
    }

    fn file() -> Bed {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::open(dir.path().join("store")).expect("open store");
        Bed::File { dir, store }
    }

    fn etcd(members: usize) -> Bed {
        let etcd = Box::new(Etcd::start(members));
        let store = etcd.store();
        Bed::Etcd { etcd, store }
    }

    fn name(&self) -> &'static str {
        match self {
            Bed::Mem(_) => "mem",
            Bed::File { .. } => "file",
            Bed::Etcd { .. } => "etcd",
        }
    }

    fn store(&self) -> &dyn Watchable {
        match self {
            Bed::Mem(s) => s,
            Bed::File { store, .. } => store,
            Bed::Etcd { store, .. } => store,
        }
    }

    /// Another handle on the same store, as another reader or writer in this process would open it.
    fn other_handle(&self) -> Option<Box<dyn Watchable>> {
        match self {
            Bed::Mem(_) => None,
            Bed::File { dir, .. } => Some(Box::new(FileStore::open(dir.path().join("store")).expect("open store"))),
            Bed::Etcd { etcd, .. } => Some(Box::new(etcd.store())),
        }
    }

    /// How a child process finds this store (`child_process_commit`).
    fn child_spec(&self) -> Option<String> {
        match self {
            Bed::Mem(_) => None,
            Bed::File { dir, .. } => Some(format!("file\t{}", dir.path().join("store").display())),
            Bed::Etcd { etcd, .. } => Some(format!("etcd\t{}", etcd.endpoints_csv())),
        }
    }

    /// Makes the history up to now unavailable to new watchers: MemStore forgets it, the local store
    /// checkpoints its log and writes past the front of it, etcd compacts.
    fn forget_history(&self) {
        match self {
            Bed::Mem(s) => s.forget_history(),
            Bed::File { store, .. } => {
                // Past CHECKPOINT_AT (8 MiB) of frames, one session per commit (a session checkpoints as it ends),
                // then one more commit at the front of the restarted log.
                let big = Json::from(json!("x".repeat(1 << 20)));
                for i in 0..10 {
                    commit(store, &Key::Handle(format!("filler{i}")), Some(big.clone()));
                }
                commit(store, &Key::Handle("after-checkpoint".into()), Some(json!(1).into()));
            }
            Bed::Etcd { etcd, store } => {
                // Compacting at a revision keeps that revision: one more commit puts the last one before it.
                commit(store, &Key::Handle("before-compaction".into()), Some(json!(1).into()));
                etcd.compact(0, store.snapshot(&[]).expect("revision").revision);
            }
        }
    }
}

const POOLS: &str = kinds::IPPOOL.prefix;
const NODES: &str = kinds::NODE.prefix;

fn pool(name: &str, cidr: &str) -> Json {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr}}).into()
}

/// Creates, updates (`Some`) or deletes (`None`) `key` in one session; returns its new record revision (0 for
/// a delete). An unreachable etcd (a member just killed, an election) is retried for a while.
fn commit<S: Datastore + ?Sized>(store: &S, key: &Key, value: Option<Json>) -> Revision {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = store.lock().and_then(|mut s| {
            let current = s.get(key)?;
            match (value.clone(), current) {
                (Some(v), None) => s.create(key, v),
                (Some(v), Some(r)) => s.update(key, v, r.rev),
                (None, Some(r)) => s.delete(key, r.rev).map(|()| 0),
                (None, None) => panic!("delete of absent {key}"),
            }
        });
        match attempt {
            Ok(rev) => return rev,
            Err(e @ StoreError::Io { .. }) if Instant::now() < deadline => eprintln!("commit of {key}: {e}; retrying"),
            Err(e) => panic!("commit of {key}: {e}"),
        }
    }
}

/// Waits until `member` serves linearizable reads again (after a restart).
fn wait_serving(etcd: &Etcd, member: usize) {
    let store = EtcdStore::open(&EtcdOptions::new(&etcd.endpoints()[member])).expect("open");
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.snapshot(&[]) {
        assert!(Instant::now() < deadline, "member {member} not serving after 30 s: {e}; log: {}", etcd.log(member));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The changes until `n` have come or `within` passes; errors (an etcd stream breaking) are retried, as the
/// agent does.
fn collect(w: &mut dyn Watcher, n: usize, within: Duration) -> Vec<Change> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match w.next(deadline) {
            Ok(Watched::Changes(c)) => out.extend(c),
            Ok(Watched::Quiet) => {}
            Ok(Watched::Resync) => panic!("unexpected resync after {out:?}"),
            Err(e) => eprintln!("watch error (the watcher retries): {e}"),
        }
    }
    out
}

/// Nothing more comes within `within`.
fn assert_quiet(w: &mut dyn Watcher, within: Duration, bed: &str) {
    let got = w.next(Instant::now() + within).expect("next");
    assert_eq!(got, Watched::Quiet, "{bed}: nothing more");
}

/// CPU time (user + system) this thread has used.
fn thread_cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let us = |t: nix::sys::time::TimeVal| Duration::from_micros(t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64);
    us(u.user_time()) + us(u.system_time())
}

/// (key, value or None for a delete) of each change, to compare with what was committed.
fn summary(changes: &[Change]) -> Vec<(Key, Option<Json>)> {
    changes
        .iter()
        .map(|c| match c {
            Change::Put { key, record, .. } => (key.clone(), Some(record.value.clone())),
            Change::Delete { key, .. } => (key.clone(), None),
        })
        .collect()
}

#[test]
fn a_snapshot_is_exactly_the_committed_state_of_its_prefixes() {
    for bed in Bed::all("a_snapshot_is_exactly_the_committed_state_of_its_prefixes") {
        let (s, name) = (bed.store(), bed.name());
        let aff = |host: &str, cidr: &str| Key::Affinity { host: host.into(), cidr: cidr.parse().unwrap() };
        commit(s, &Key::pool("a"), Some(pool("a", "10.0.0.0/16")));
        commit(s, &Key::pool("b"), Some(pool("b", "10.1.0.0/16")));
        commit(s, &Key::resource(&kinds::NODE, "n1"), Some(json!({"spec": {}}).into()));
        commit(s, &Key::resource(&kinds::BGP_PEER, "peer"), Some(json!({"spec": {}}).into()));
        commit(s, &aff("n1", "10.0.0.0/26"), Some(json!("confirmed").into()));
        commit(s, &aff("n2", "10.0.0.64/26"), Some(json!("confirmed").into()));
        commit(s, &aff("n10", "10.0.0.128/26"), Some(json!("confirmed").into()));
        commit(s, &Key::Handle("h".into()), Some(json!({}).into()));
        commit(s, &Key::pool("a"), Some(pool("a", "10.2.0.0/16")));
        commit(s, &Key::pool("b"), None);
        let prefixes = [POOLS, NODES, &affinity_prefix("n1")];
        let snap = s.snapshot(&prefixes).expect("snapshot");
        let expected_keys = [Key::pool("a"), Key::resource(&kinds::NODE, "n1"), aff("n1", "10.0.0.0/26")];
        let session = s.lock().expect("lock");
        let mut expected: Vec<(Key, Record)> = expected_keys.iter().map(|k| (k.clone(), session.get(k).unwrap().unwrap())).collect();
        drop(session);
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(snap.records, expected, "{name}");
        assert!(snap.revision > 0, "{name}");
        // The revision counts commits store-wide, whichever prefix they touch; reads move nothing.
        assert_eq!(s.snapshot(&prefixes).unwrap(), snap, "{name}");
        commit(s, &Key::Handle("h".into()), Some(json!({"x": 1}).into()));
        let later = s.snapshot(&prefixes).expect("snapshot");
        assert_eq!((later.revision, &later.records), (snap.revision + 1, &snap.records), "{name}");
        let empty = s.snapshot(&[kinds::BGP_CONFIGURATION.prefix]).unwrap();
        assert_eq!((empty.revision, empty.records.len()), (later.revision, 0), "{name}");
    }
}

#[test]
fn a_watcher_sees_creates_updates_and_deletes_in_order_with_their_revisions() {
    for bed in Bed::all("a_watcher_sees_creates_updates_and_deletes_in_order_with_their_revisions") {
        let (s, name) = (bed.store(), bed.name());
        commit(s, &Key::pool("before"), Some(pool("before", "10.9.0.0/16")));
        let snap = s.snapshot(&[POOLS, NODES]).expect("snapshot");
        let mut w = s.watch(&[POOLS, NODES], snap.revision + 1).expect("watch");
        let node = Key::resource(&kinds::NODE, "n1");
        let steps: Vec<(Key, Option<Json>)> = vec![
            (Key::pool("p"), Some(pool("p", "10.0.0.0/16"))),
            (Key::Handle("not-watched".into()), Some(json!({}).into())),
            (Key::pool("p"), Some(pool("p", "10.3.0.0/16"))),
            (node.clone(), Some(json!({"spec": {"bgp": {}}}).into())),
            (Key::pool("before"), None),
            (Key::pool("p"), None),
        ];
        let mut revs = Vec::new();
        for (key, value) in &steps {
            revs.push(commit(s, key, value.clone()));
        }
        let mut got = collect(w.as_mut(), 5, Duration::from_secs(10));
        // Each prefix's changes in revision order; across prefixes, etcd catching up may interleave them.
        for prefix in [POOLS, NODES] {
            let revs: Vec<Revision> = got.iter().filter(|c| c.key().path().starts_with(prefix)).map(Change::revision).collect();
            assert!(revs.windows(2).all(|p| p[0] < p[1]), "{name}: {prefix}: {revs:?}");
        }
        got.sort_by_key(Change::revision);
        let watched: Vec<(Key, Option<Json>)> = steps.iter().filter(|(k, _)| k.kind() != Kind::Handle).cloned().collect();
        assert_eq!(summary(&got), watched, "{name}");
        // One commit each, so consecutive store revisions after the snapshot's (the unwatched commit skipped).
        let expected_revs: Vec<Revision> = [1, 3, 4, 5, 6].iter().map(|i| snap.revision + i).collect();
        assert_eq!(got.iter().map(Change::revision).collect::<Vec<_>>(), expected_revs, "{name}");
        for (c, rev) in got.iter().zip([revs[0], revs[2], revs[3]]) {
            if let Change::Put { record, .. } = c {
                assert_eq!(record.rev, rev, "{name}: a put carries the record's new CAS revision");
            }
        }
        assert_quiet(w.as_mut(), Duration::from_millis(200), name);
        // A watcher started later from the same revision replays the same history.
        let mut late = s.watch(&[POOLS, NODES], snap.revision + 1).expect("watch");
        let mut again = collect(late.as_mut(), 5, Duration::from_secs(10));
        again.sort_by_key(Change::revision);
        assert_eq!(again, got, "{name}");
    }
}

/// An idle wait blocks (no polling: the thread's CPU time stays ~0) until its deadline; a commit wakes it at
/// once.
#[test]
fn an_idle_watcher_sleeps_until_a_commit_or_its_deadline() {
    for bed in Bed::all("an_idle_watcher_sleeps_until_a_commit_or_its_deadline") {
        let (s, name) = (bed.store(), bed.name());
        let snap = s.snapshot(&[POOLS]).expect("snapshot");
        let mut w = s.watch(&[POOLS], snap.revision + 1).expect("watch");
        // Connected (etcd) and caught up before measuring.
        assert_quiet(w.as_mut(), Duration::from_millis(300), name);
        // STORE_WATCH_IDLE_SECS=60 measures a longer wait (etcd then probes its member every 10 s).
        let idle = Duration::from_secs(std::env::var("STORE_WATCH_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2));
        let (cpu, start) = (thread_cpu(), Instant::now());
        assert_quiet(w.as_mut(), idle, name);
        let (cpu, waited) = (thread_cpu() - cpu, start.elapsed());
        eprintln!("{name}: idle wait of {waited:?} used {cpu:?} of CPU");
        assert!(waited >= idle && waited < idle + Duration::from_millis(500), "{name}: waited {waited:?}");
        assert!(cpu < Duration::from_millis(20), "{name}: an idle wait used {cpu:?} of CPU");

        let (got, woke) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let t = Instant::now();
                commit(s, &Key::pool("wake"), Some(pool("wake", "10.0.0.0/16")));
                t
            });
            let got = collect(w.as_mut(), 1, Duration::from_secs(10));
            let woke = Instant::now();
            (got, woke - writer.join().unwrap())
        });
        assert_eq!(summary(&got), vec![(Key::pool("wake"), Some(pool("wake", "10.0.0.0/16")))], "{name}");
        eprintln!("{name}: woke {woke:?} after the commit started");
        assert!(woke < Duration::from_millis(500), "{name}: woke {woke:?} after the commit");
    }
}

#[test]
fn a_watcher_from_forgotten_history_is_told_to_resync() {
    for bed in Bed::all("a_watcher_from_forgotten_history_is_told_to_resync") {
        let (s, name) = (bed.store(), bed.name());
        let old = s.snapshot(&[POOLS]).expect("snapshot");
        commit(s, &Key::pool("p"), Some(pool("p", "10.0.0.0/16")));
        bed.forget_history();
        commit(s, &Key::pool("q"), Some(pool("q", "10.1.0.0/16")));
        let mut w = s.watch(&[POOLS], old.revision + 1).expect("watch");
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = loop {
            match w.next(deadline) {
                Err(e) if Instant::now() < deadline => eprintln!("{name}: {e}"),
                other => break other,
            }
        };
        assert_eq!(got.expect("next"), Watched::Resync, "{name}");
        assert_eq!(w.next(Instant::now() + Duration::from_secs(1)).expect("next"), Watched::Resync, "{name}: for good");
        // The agent's answer: a new snapshot, and a watcher from its revision.
        let snap = s.snapshot(&[POOLS]).expect("snapshot");
        assert_eq!(snap.records.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![Key::pool("p"), Key::pool("q")], "{name}");
        let mut w = s.watch(&[POOLS], snap.revision + 1).expect("watch");
        commit(s, &Key::pool("r"), Some(pool("r", "10.2.0.0/16")));
        assert_eq!(summary(&collect(w.as_mut(), 1, Duration::from_secs(10))), vec![(Key::pool("r"), Some(pool("r", "10.2.0.0/16")))], "{name}");
    }
}

/// Commits through another handle and from another process reach a watcher as its own do.
#[test]
fn a_watcher_sees_other_handles_and_processes_commit() {
    for bed in Bed::all("a_watcher_sees_other_handles_and_processes_commit") {
        let (Some(other), Some(spec)) = (bed.other_handle(), bed.child_spec()) else { continue };
        let (s, name) = (bed.store(), bed.name());
        let snap = s.snapshot(&[POOLS]).expect("snapshot");
        let mut w = s.watch(&[POOLS], snap.revision + 1).expect("watch");
        let rev = commit(other.as_ref(), &Key::pool("other"), Some(pool("other", "10.0.0.0/16")));
        let got = collect(w.as_mut(), 1, Duration::from_secs(10));
        assert_eq!(summary(&got), vec![(Key::pool("other"), Some(pool("other", "10.0.0.0/16")))], "{name}");
        assert!(matches!(&got[0], Change::Put { record, revision, .. } if record.rev == rev && *revision == snap.revision + 1), "{name}: {got:?}");
        let (mut child, rev) = child_commit(&spec, "child", false);
        assert!(child.wait().expect("wait").success(), "{name}: child failed");
        let got = collect(w.as_mut(), 1, Duration::from_secs(10));
        assert_eq!(summary(&got), vec![(Key::pool("child"), Some(pool("child", "10.7.0.0/16")))], "{name}");
        assert!(matches!(&got[0], Change::Put { record, revision, .. } if record.rev == rev && *revision == snap.revision + 2), "{name}: {got:?}");
        assert_quiet(w.as_mut(), Duration::from_millis(200), name);
    }
}

/// A process killed while its session still holds the lock and its commit pending (durable in the log, not
/// yet in the record file): the commit counts, for watchers, snapshots and the session that finishes it.
#[test]
fn a_commit_left_pending_by_a_killed_process_is_seen() {
    let bed = Bed::file();
    let (s, spec) = (bed.store(), bed.child_spec().unwrap());
    let snap = s.snapshot(&[POOLS]).expect("snapshot");
    let mut w = s.watch(&[POOLS], snap.revision + 1).expect("watch");
    let (mut child, rev) = child_commit(&spec, "killed", true);
    let got = collect(w.as_mut(), 1, Duration::from_secs(10));
    // Seen while the child still holds the lock: neither the watcher nor the snapshot waits for it.
    let pending = s.snapshot(&[POOLS]).expect("snapshot");
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        matches!(&got[..], [Change::Put { key, record, revision }] if *key == Key::pool("killed") && record.rev == rev && *revision == snap.revision + 1),
        "{got:?}"
    );
    assert_eq!((pending.revision, pending.records.len()), (snap.revision + 1, 1));
    let after = s.snapshot(&[POOLS]).expect("snapshot after the kill");
    assert_eq!(after, pending);
    // The next session applies the frame the killed process left; nothing changes for readers.
    let session = s.lock().expect("lock");
    assert_eq!(session.get(&Key::pool("killed")).unwrap().map(|r| r.rev), Some(rev));
    drop(session);
    assert_eq!(s.snapshot(&[POOLS]).unwrap(), pending);
    assert_quiet(w.as_mut(), Duration::from_millis(200), "file");
}

/// Runs this test binary as a child that commits pool `name` to the store `spec` names; with `hold` it keeps
/// its session open afterwards (until killed). Returns the child and the record revision it committed.
fn child_commit(spec: &str, name: &str, hold: bool) -> (Child, Revision) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_process_commit", "--nocapture", "--test-threads", "1"])
        .env("STORE_WATCH_CHILD", format!("{spec}\t{name}\t{}", if hold { "hold" } else { "exit" }))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let out = child.stdout.take().expect("stdout");
    // The child prints its revision, then (holding) waits: read it on a thread, so a hung child fails the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // After libtest's "test child_process_commit ... " on the same line.
            if let Some((_, rev)) = line.split_once("COMMITTED ") {
                let _ = tx.send(rev.parse::<Revision>().ok());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Some(rev)) => (child, rev),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not commit: {other:?}");
        }
    }
}

/// Not a test on its own: the child half of `child_commit` (does nothing unless STORE_WATCH_CHILD is set).
#[test]
fn child_process_commit() {
    let Ok(spec) = std::env::var("STORE_WATCH_CHILD") else { return };
    let parts: Vec<&str> = spec.split('\t').collect();
    let [backend, at, name, mode] = parts[..] else { panic!("bad STORE_WATCH_CHILD {spec:?}") };
    let store: Box<dyn Datastore> = match backend {
        "file" => Box::new(FileStore::open(at).expect("open")),
        _ => Box::new(EtcdStore::open(&EtcdOptions::new(at)).expect("open")),
    };
    let mut s = store.lock().expect("lock");
    let rev = s.create(&Key::pool(name), pool(name, "10.7.0.0/16")).expect("create");
    println!("COMMITTED {rev}");
    if mode == "hold" {
        // Until the parent kills this process (bounded, should the parent die first).
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Three members; the watcher's member is killed: the watcher moves to another member and delivers what was
/// committed meanwhile, and again after the member is back and the next one is killed.
#[test]
fn an_etcd_watcher_moves_to_another_member_when_its_member_dies() {
    if !etcd::available("an_etcd_watcher_moves_to_another_member_when_its_member_dies") {
        return;
    }
    let mut etcd = Etcd::start(3);
    let store = etcd.store();
    let snap = store.snapshot(&[POOLS]).expect("snapshot");
    let mut w = store.watch(&[POOLS], snap.revision + 1).expect("watch");
    assert_quiet(w.as_mut(), Duration::from_millis(300), "etcd");
    let mut expected = Vec::new();
    for (round, member) in [0, 1].into_iter().enumerate() {
        // The watcher started on member 0 (the first endpoint); the first round kills it, the second the
        // member the watcher moved to (member 1).
        etcd.kill(member);
        let alive: Vec<String> = (0..3).filter(|m| *m != member).map(|m| etcd.endpoints()[m].clone()).collect();
        let writer = EtcdStore::open(&EtcdOptions::new(&alive.join(","))).expect("open");
        for i in 0..3 {
            let name = format!("r{round}-{i}");
            commit(&writer, &Key::pool(&name), Some(pool(&name, "10.0.0.0/16")));
            expected.push((Key::pool(&name), Some(pool(&name, "10.0.0.0/16"))));
        }
        let got = collect(w.as_mut(), 3, Duration::from_secs(20));
        assert_eq!(summary(&got), expected[round * 3..], "round {round}");
        etcd.restart(member);
        wait_serving(&etcd, member);
    }
}

/// A member restarted after an outage: a watcher that can reach only it waits out the outage without
/// spinning, reconnects, and delivers in order what the rest of the cluster committed meanwhile.
#[test]
fn an_etcd_watcher_resumes_after_its_members_outage() {
    if !etcd::available("an_etcd_watcher_resumes_after_its_members_outage") {
        return;
    }
    let mut etcd = Etcd::start(3);
    let only0 = EtcdStore::open(&EtcdOptions::new(&etcd.endpoints()[0])).expect("open");
    let others = EtcdStore::open(&EtcdOptions::new(&etcd.endpoints()[1..].join(","))).expect("open");
    let snap = only0.snapshot(&[POOLS]).expect("snapshot");
    let mut w = only0.watch(&[POOLS], snap.revision + 1).expect("watch");
    assert_quiet(w.as_mut(), Duration::from_millis(300), "etcd");
    etcd.kill(0);
    let mut expected = Vec::new();
    for i in 0..5 {
        let name = format!("during-{i}");
        commit(&others, &Key::pool(&name), Some(pool(&name, "10.0.0.0/16")));
        expected.push((Key::pool(&name), Some(pool(&name, "10.0.0.0/16"))));
    }
    commit(&others, &Key::pool("during-0"), None);
    expected.push((Key::pool("during-0"), None));
    // The outage, as the agent lives it: `next` with deadlines, errors logged and retried.
    // The agent must ride out 30 s (STORE_WATCH_OUTAGE_SECS=30); past the 2 s back-off cap nothing changes.
    let outage = Duration::from_secs(std::env::var("STORE_WATCH_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5));
    let (cpu, start) = (thread_cpu(), Instant::now());
    let mut errors = 0;
    while start.elapsed() < outage {
        match w.next(start + outage) {
            Err(_) => errors += 1,
            Ok(Watched::Quiet) => {}
            Ok(other) => panic!("during the outage: {other:?}"),
        }
    }
    let cpu = thread_cpu() - cpu;
    eprintln!("etcd: {outage:?} of outage: {errors} failed reconnects, {cpu:?} of CPU");
    let most = 5 + outage.as_secs() / 2;
    assert!(errors >= 1 && errors <= most, "{errors} reconnects in {outage:?}: backing off, not spinning");
    assert!(cpu < Duration::from_millis(50), "{cpu:?} of CPU during the outage");
    etcd.restart(0);
    let got = collect(w.as_mut(), expected.len(), Duration::from_secs(30));
    assert_eq!(summary(&got), expected);
    let revs: Vec<Revision> = got.iter().map(Change::revision).collect();
    assert!(revs.windows(2).all(|p| p[0] < p[1]) && revs[0] == snap.revision + 1, "{revs:?}");
    assert_quiet(w.as_mut(), Duration::from_millis(300), "etcd");
}

/// The watch stream over TLS with client certificates, as Calico's etcd is usually run: an idle wait (socket
/// timeouts under rustls) loses nothing, and a commit arrives.
#[test]
fn an_etcd_watch_works_over_tls() {
    if !etcd::available("an_etcd_watch_works_over_tls") {
        return;
    }
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = etcd::Certs::generate(certs_dir.path());
    let etcd = Etcd::start_with(1, Some(&certs));
    let mut opts = etcd.options();
    opts.tls = certs.client_files();
    let store = EtcdStore::open(&opts).expect("open");
    let snap = store.snapshot(&[POOLS]).expect("snapshot");
    let mut w = store.watch(&[POOLS], snap.revision + 1).expect("watch");
    assert_quiet(w.as_mut(), Duration::from_millis(500), "etcd tls");
    assert_quiet(w.as_mut(), Duration::from_millis(500), "etcd tls");
    commit(&store, &Key::pool("tls"), Some(pool("tls", "10.0.0.0/16")));
    let got = collect(w.as_mut(), 1, Duration::from_secs(10));
    assert_eq!(summary(&got), vec![(Key::pool("tls"), Some(pool("tls", "10.0.0.0/16")))]);
}
