//! The agent's datastore watch on a real etcd: a watcher opened on the agent's prefixes sees the first change
//! under each of them. (etcd's JSON gateway once dropped the create requests after the first few when its
//! answer went out before it had read the whole request body: the later prefixes were never watched, about one
//! open in 20, and an agent missed a BGPPeer for good.) Needs etcd.
use datastore::resources::kinds::{BGP_PEER, IPPOOL, NODE};
use datastore::store::{Datastore, Json, Key, Watchable, Watched};
use std::time::{Duration, Instant};

#[test]
fn a_new_watch_sees_the_first_change_under_every_prefix() {
    if !testbed::etcd::available("a_new_watch_sees_the_first_change_under_every_prefix") {
        return;
    }
    let etcd = testbed::etcd::Etcd::start(1);
    let store = etcd.store();
    let prefixes = calico_node::agent::prefixes("node-1");
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let mut missed = Vec::new();
    for i in 0..120 {
        let snap = store.snapshot(&refs).expect("snapshot");
        let mut w = store.watch(&refs, snap.revision + 1).expect("watch");
        // The agent opens its stream, then renders while the first change is on its way: both orders.
        let _ = w.next(Instant::now() + Duration::from_millis(if i % 2 == 0 { 20 } else { 1 }));
        let kind = [&NODE, &BGP_PEER, &IPPOOL][i % 3];
        let key = Key::resource(kind, format!("w{i}"));
        store.lock().expect("etcd").create(&key, Json::encode(&serde_json::json!({"n": i})).expect("json")).expect("write");
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut seen = false;
        // Bounded by the deadline: every call returns by it.
        while !seen && Instant::now() < deadline {
            if let Ok(Watched::Changes(c)) = w.next(deadline) {
                seen = c.iter().any(|c| c.key() == &key);
            }
        }
        if !seen {
            missed.push(key.to_string());
        }
    }
    assert!(missed.is_empty(), "changes a new watch never delivered: {missed:?}");
}
