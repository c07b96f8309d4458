//! Allocator behaviour against the in-memory store.
use super::*;
use crate::ipam::admin::{apply, Resources};
use crate::ipam::check;
use crate::ipam::check::check_store;
use crate::ipam::config::IpamConf;
use crate::plugin;
use datastore::ipam::block::Owner;
use datastore::ipam::records;
use datastore::resources::ippool::{Pool, Selector};
use datastore::resources::ippool::{PoolResource, PoolSpec};
use datastore::store::Kind;
use datastore::store::{Datastore, MemStore};
use std::collections::BTreeSet;
use std::collections::HashSet;

fn pool(name: &str, cidr: &str, block_size: u8) -> Pool {
    let res = PoolResource::ippool(name, PoolSpec { cidr: cidr.into(), block_size: Some(block_size), ..Default::default() });
    Pool::from_resource(&res).unwrap()
}

fn store_with(pools: Vec<Pool>, config: IpamConfig) -> MemStore {
    let store = MemStore::new();
    apply(&mut *store.lock().unwrap(), &Resources { pools, config: Some(config) }).unwrap();
    store
}

fn strict(max: u32) -> IpamConfig {
    IpamConfig { strict_affinity: true, auto_allocate_blocks: true, max_blocks_per_host: max }
}

fn node(name: &str) -> Node {
    Node { name: name.into(), labels: BTreeMap::new() }
}

fn owner(handle: &str, node: &str) -> Owner {
    Owner { handle: handle.into(), attrs: [("node".to_string(), node.to_string())].into() }
}

fn assign(store: &MemStore, v6: bool, host: &str, handle: &str) -> Result<Assignment, IpamError> {
    let mut s = store.lock()?;
    let mut ipam = Ipam::new(&mut *s)?;
    let pools = ipam.select_pools(v6, &[], &node(host))?;
    ipam.auto_assign(v6, &pools, &node(host), &owner(handle, host))
}

fn release(store: &MemStore, handle: &str) -> usize {
    Ipam::new(&mut *store.lock().unwrap()).unwrap().release_by_handle(handle).unwrap()
}

fn assert_consistent(store: &MemStore) -> check::Report {
    let report = check_store(&*store.lock().unwrap()).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    report
}

fn block_of(store: &MemStore, cidr: IpNet) -> Block {
    records::load::<Block>(&*store.lock().unwrap(), &Key::Block(cidr)).unwrap().unwrap().0
}

#[test]
fn carves_every_valid_block_size() {
    for (cidr, sizes, v6) in [("10.0.0.0/16", 20..=32u8, false), ("fd00::/104", 116..=128u8, true)] {
        for bs in sizes {
            let store = store_with(vec![pool("p", cidr, bs)], IpamConfig::default());
            let a = assign(&store, v6, "n1", "h0").unwrap();
            assert_eq!(a.block.prefix_len(), bs);
            assert_eq!(a.address().prefix_len(), bs, "address carries the block mask");
            assert_eq!(a.ip, a.block.network(), "first address of the block first");
            let size = 1usize << (a.block.max_prefix_len() - bs);
            if size <= 16 {
                // Fill the block; the next address comes from a second block of the same size.
                let mut ips: HashSet<IpAddr> = [a.ip].into();
                for i in 1..=size {
                    let b = assign(&store, v6, "n1", &format!("h{i}")).unwrap();
                    assert!(ips.insert(b.ip), "duplicate {}", b.ip);
                    assert_eq!(b.block == a.block, i < size, "bs {bs} i {i}");
                }
            } else {
                assert_eq!(block_of(&store, a.block).size(), size);
            }
            assert_consistent(&store);
        }
    }
}

#[test]
fn affine_blocks_are_reused_per_node() {
    let store = store_with(vec![pool("p", "10.10.0.0/16", 26)], IpamConfig::default());
    let a1 = assign(&store, false, "node-a", "a1").unwrap();
    let b1 = assign(&store, false, "node-b", "b1").unwrap();
    let a2 = assign(&store, false, "node-a", "a2").unwrap();
    assert_ne!(a1.block, b1.block);
    assert_eq!(a1.block, a2.block);
    let blk = block_of(&store, a1.block);
    assert!(blk.is_affine_to("node-a"));
    assert_eq!(blk.in_use(), 2);
    let s = store.lock().unwrap();
    let aff = records::load::<records::Affinity>(&*s, &Key::Affinity { host: "node-a".into(), cidr: a1.block }).unwrap();
    assert_eq!(aff.unwrap().0.state, "confirmed");
    drop(s);
    // Empty affine blocks keep their affinity.
    release(&store, "a1");
    release(&store, "a2");
    assert!(block_of(&store, a1.block).is_affine_to("node-a"));
    assert_eq!(assign(&store, false, "node-a", "a3").unwrap().block, a1.block);
    assert_consistent(&store);
}

#[test]
fn block_limit_is_enforced_and_does_not_fall_back_to_borrowing() {
    // strict, 2 blocks of 4 per host.
    let store = store_with(vec![pool("p", "10.0.0.0/24", 30)], strict(2));
    for i in 0..8 {
        assign(&store, false, "n1", &format!("h{i}")).unwrap();
    }
    let err = assign(&store, false, "n1", "h8").unwrap_err();
    assert!(matches!(err, IpamError::BlockLimit { count: 2, limit: 2, .. }), "{err}");
    assert_eq!(err.code(), 101);
    assert!(err.to_string().contains("per host block limit"));
    // The default (0 means 20) applies without strict affinity too, and free space elsewhere does not help.
    let store = store_with(vec![pool("p", "10.0.0.0/16", 32)], IpamConfig::default());
    assign(&store, false, "other", "o").unwrap();
    for i in 0..20 {
        assign(&store, false, "n1", &format!("h{i}")).unwrap();
    }
    assert!(matches!(assign(&store, false, "n1", "h20"), Err(IpamError::BlockLimit { count: 20, limit: 20, .. })));
    assert_consistent(&store);
}

#[test]
fn borrowing_only_without_strict_affinity() {
    for strict_on in [false, true] {
        let cfg = if strict_on { strict(0) } else { IpamConfig::default() };
        // Two blocks of 4: node a fills one, node b claims the other and uses one address.
        let store = store_with(vec![pool("p", "10.0.0.0/29", 30)], cfg);
        let first = assign(&store, false, "a", "a0").unwrap();
        for i in 1..4 {
            assign(&store, false, "a", &format!("a{i}")).unwrap();
        }
        let b = assign(&store, false, "b", "b0").unwrap();
        assert_ne!(b.block, first.block);
        let r = assign(&store, false, "a", "a4");
        if strict_on {
            let err = r.unwrap_err();
            assert!(matches!(err, IpamError::StrictAffinity { .. }), "{err}");
            assert_eq!(err.code(), 102);
        } else {
            let borrowed = r.unwrap();
            assert_eq!(borrowed.block, b.block, "borrowed from b's block");
            let blk = block_of(&store, b.block);
            assert!(blk.is_affine_to("b"), "borrowing does not move affinity");
            let attr = blk.owner_of(blk.ordinal(borrowed.ip).unwrap()).unwrap();
            assert_eq!(attr.secondary["node"], "a");
        }
        assert_consistent(&store);
    }
}

#[test]
fn small_pool_is_exhausted_exactly_at_its_size() {
    for (cidr, bs, v6) in [("10.1.0.0/28", 30, false), ("fd00:1::/124", 126, true), ("10.2.0.0/30", 32, false)] {
        let store = store_with(vec![pool("p", cidr, bs)], IpamConfig::default());
        let size = 1usize << (if v6 { 128 } else { 32 } - cidr.rsplit('/').next().unwrap().parse::<usize>().unwrap());
        let mut ips = HashSet::new();
        // Spread over three nodes so claiming, affinity and borrowing all take part.
        for i in 0..size {
            let a = assign(&store, v6, &format!("n{}", i % 3), &format!("h{i}")).unwrap();
            assert!(ips.insert(a.ip));
        }
        let err = assign(&store, v6, "n0", "last").unwrap_err();
        assert!(matches!(err, IpamError::PoolsExhausted { .. }), "{cidr}: {err}");
        assert_eq!(err.code(), 100);
        let report = assert_consistent(&store);
        assert_eq!(report.allocations, size);
    }
}

#[test]
fn freed_addresses_are_reused_fifo() {
    let store = store_with(vec![pool("p", "10.3.0.0/24", 30)], IpamConfig::default());
    let got: Vec<Assignment> = (0..3).map(|i| assign(&store, false, "n", &format!("h{i}")).unwrap()).collect();
    let never_used = block_of(&store, got[0].block).ip(3);
    release(&store, "h1");
    release(&store, "h0");
    // The never-used 4th address has been free longest, then the 2nd, then the 1st.
    let next: Vec<IpAddr> = (3..6).map(|i| assign(&store, false, "n", &format!("h{i}")).unwrap().ip).collect();
    assert_eq!(next, vec![never_used, got[1].ip, got[0].ip]);
    assert_consistent(&store);
}

#[test]
fn specific_ip_requests() {
    let store = store_with(vec![pool("p", "10.4.0.0/24", 28)], IpamConfig::default());
    let ip: IpAddr = "10.4.0.37".parse().unwrap();
    let mut s = store.lock().unwrap();
    let mut ipam = Ipam::new(&mut *s).unwrap();
    let a = ipam.assign_ip(ip, &node("n1"), &owner("h1", "n1")).unwrap();
    assert_eq!(a.address().to_string(), "10.4.0.37/28");
    assert_eq!(a.block.to_string(), "10.4.0.32/28");
    let err = ipam.assign_ip(ip, &node("n1"), &owner("h2", "n1")).unwrap_err();
    assert!(matches!(&err, IpamError::AddressInUse { handle, .. } if handle == "h1"), "{err}");
    assert_eq!(err.code(), 104);
    let err = ipam.assign_ip("10.5.0.1".parse().unwrap(), &node("n1"), &owner("h3", "n1")).unwrap_err();
    assert!(matches!(err, IpamError::NotInPool(_)));
    assert_eq!(err.code(), 105);
    // The block was claimed for n1; auto-assignment on n1 keeps using it.
    let next = ipam.auto_assign(false, &[pool("p", "10.4.0.0/24", 28)], &node("n1"), &owner("h4", "n1")).unwrap();
    assert_eq!(next.block, a.block);
    // With strict affinity, an address in another host's block is refused.
    ipam.config = strict(0);
    let err = ipam.assign_ip("10.4.0.40".parse().unwrap(), &node("n2"), &owner("h5", "n2")).unwrap_err();
    assert!(matches!(err, IpamError::StrictAffinityIp { .. }), "{err}");
    drop(s);
    assert_consistent(&store);
}

fn conf(v4: bool, v6: bool) -> IpamConf {
    IpamConf {
        assign_ipv4: v4,
        assign_ipv6: v6,
        ipv4_pools: vec![],
        ipv6_pools: vec![],
        node: node("n1"),
        store: crate::ipam::config::StoreConf::Local("/unused".into()),
    }
}

#[test]
fn dual_stack_is_all_or_nothing() {
    // The v6 pool holds exactly one address.
    let store = store_with(vec![pool("v4", "10.6.0.0/24", 26), pool("v6", "fd00:6::/128", 128)], IpamConfig::default());
    let got = plugin::add(&store, &conf(true, true), &owner("net.c1", "n1"), &[]).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].ip.is_ipv4() && got[1].ip.is_ipv6());
    let err = plugin::add(&store, &conf(true, true), &owner("net.c2", "n1"), &[]).unwrap_err();
    assert!(matches!(err, IpamError::PoolsExhausted { family: "IPv6", .. }), "{err}");
    let report = assert_consistent(&store);
    assert_eq!(report.allocations, 2, "c2's IPv4 address was given back");
    assert_eq!(report.handles, 1);
    // The same for requested addresses: the second one is taken, so the first is released.
    let want: Vec<IpAddr> = vec!["10.6.0.9".parse().unwrap(), got[1].ip];
    assert!(plugin::add(&store, &conf(true, true), &owner("net.c3", "n1"), &want).is_err());
    assert_eq!(assert_consistent(&store).allocations, 2);
}

#[test]
fn no_pool_for_node_and_named_pools() {
    let mut p = pool("zone-a", "10.7.0.0/24", 26);
    p.node_selector = Selector::parse("zone == 'a'").unwrap();
    let store = store_with(vec![p, pool("spare", "10.8.0.0/24", 26)], IpamConfig::default());
    let s = store.lock().unwrap();
    let mut s = s;
    let ipam = Ipam::new(&mut *s).unwrap();
    let mut n = node("n1");
    assert_eq!(ipam.select_pools(false, &[], &n).unwrap().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["spare"]);
    n.labels.insert("zone".into(), "a".into());
    assert_eq!(ipam.select_pools(false, &[], &n).unwrap().len(), 2);
    let named = ipam.select_pools(false, &[PoolRef::Cidr("10.7.0.0/24".parse().unwrap())], &node("x")).unwrap();
    assert_eq!(named[0].name, "zone-a", "named pools ignore the selector");
    assert!(matches!(ipam.select_pools(false, &[PoolRef::Name("nope".into())], &n), Err(IpamError::PoolNotFound(_))));
    assert!(matches!(ipam.select_pools(true, &[], &n), Err(IpamError::NoPools { .. })));
    drop(s);
    let mut only_a = pool("only-a", "10.9.0.0/24", 26);
    only_a.node_selector = Selector::parse("zone == 'a'").unwrap();
    let store = store_with(vec![only_a], IpamConfig::default());
    let err = assign(&store, false, "n-b", "h").unwrap_err();
    assert!(matches!(err, IpamError::NoPoolForNode { .. }), "{err}");
    assert_eq!(err.code(), 103);
}

#[test]
fn default_pool_applies_when_none_is_configured() {
    let store = MemStore::new();
    let a = assign(&store, false, "n1", "h").unwrap();
    assert!("192.168.0.0/16".parse::<IpNet>().unwrap().contains(&a.ip));
    assert_eq!(a.block.prefix_len(), 26);
    assert_consistent(&store);
}

#[test]
fn gc_releases_only_stale_attachments_of_this_network_and_node() {
    let store = store_with(vec![pool("p", "10.11.0.0/24", 28)], IpamConfig::default());
    let attachments =
        [("net.c1", "n1"), ("net.c1:eth1", "n1"), ("net.c1:net1", "n1"), ("net.c2", "n1"), ("net.c3", "n1"), ("net.c4", "n2"), ("other.c5", "n1")];
    for (h, n) in attachments {
        assign(&store, false, n, h).unwrap();
    }
    // c1's eth0 and eth1 are valid, its net1 is not; c2 and c3 are gone; c4 is another node's.
    let valid: BTreeSet<plugin::ValidAttachment> =
        ["eth0", "eth1"].into_iter().map(|i| plugin::ValidAttachment { container_id: "c1".into(), ifname: Some(i.into()) }).collect();
    assert_eq!(plugin::gc(&store, "net", "n1", &valid).unwrap(), 3);
    let s = store.lock().unwrap();
    let handles: Vec<String> = s.list(Kind::Handle).unwrap().into_iter().map(|(k, _)| k.path()).collect();
    drop(s);
    assert_eq!(handles.len(), 4, "{handles:?}");
    for h in ["net.c1", "net.c1:eth1", "net.c4", "other.c5"] {
        assert!(handles.iter().any(|k| k.ends_with(&format!("/{h}"))), "{h} kept");
    }
    assert_consistent(&store);
}

#[test]
fn release_of_missing_handle_is_success() {
    let store = store_with(vec![pool("p", "10.12.0.0/24", 26)], IpamConfig::default());
    assert_eq!(plugin::del(&store, &["net.nope".to_string(), "ns.pod".to_string()]).unwrap(), 0);
    let before = store.commits();
    assert_eq!(release(&store, "net.nope"), 0);
    assert_eq!(store.commits(), before, "nothing written");
}

#[test]
fn stale_release_is_refused_by_sequence_number() {
    let store = store_with(vec![pool("p", "10.13.0.0/24", 30)], IpamConfig::default());
    let a = assign(&store, false, "n1", "old").unwrap();
    let blk = block_of(&store, a.block);
    let seq = blk.allocation_seq(blk.ordinal(a.ip).unwrap()).unwrap();
    release(&store, "old");
    let mut s = store.lock().unwrap();
    let mut ipam = Ipam::new(&mut *s).unwrap();
    ipam.assign_ip(a.ip, &node("n1"), &owner("new", "n1")).unwrap();
    let err = ipam.release_ips(&[(a.ip, Some(seq))]).unwrap_err();
    assert!(matches!(err, IpamError::StaleRelease { .. }), "{err}");
    drop(s);
    let blk = block_of(&store, a.block);
    assert_eq!(blk.owner_of(blk.ordinal(a.ip).unwrap()).unwrap().handle_id.as_deref(), Some("new"));
    // The current sequence number does release it.
    let cur = blk.allocation_seq(blk.ordinal(a.ip).unwrap());
    assert_eq!(Ipam::new(&mut *store.lock().unwrap()).unwrap().release_ips(&[(a.ip, cur)]).unwrap(), 1);
    assert_consistent(&store);
}

#[test]
fn interrupted_claim_is_finished_by_the_next_add() {
    let store = store_with(vec![pool("p", "10.14.0.0/24", 28)], IpamConfig::default());
    let cidr: IpNet = "10.14.0.48/28".parse().unwrap();
    {
        // State after a process died between the claim's two commits: intent + pending affinity, no block.
        let mut s = store.lock().unwrap();
        let hb = records::HostBlocks { blocks: vec![records::HostBlock { cidr, confirmed: false, full: false }] };
        s.create(&Key::HostBlocks("n1".into()), records::encode(&hb).unwrap()).unwrap();
        s.create(&Key::Affinity { host: "n1".into(), cidr }, records::encode(&records::Affinity::pending()).unwrap()).unwrap();
    }
    let a = assign(&store, false, "n1", "h").unwrap();
    assert_eq!(a.block, cidr, "the interrupted claim is completed and used");
    assert_consistent(&store);
}

#[test]
fn lost_pool_index_never_causes_duplicates() {
    let store = store_with(vec![pool("p", "10.15.0.0/26", 30)], IpamConfig::default());
    let mut ips = HashSet::new();
    for i in 0..6 {
        ips.insert(assign(&store, false, &format!("n{i}"), &format!("h{i}")).unwrap().ip);
    }
    {
        let mut s = store.lock().unwrap();
        let rev = s.get(&Key::PoolBlocks("10.15.0.0/26".parse().unwrap())).unwrap().unwrap().rev;
        s.delete(&Key::PoolBlocks("10.15.0.0/26".parse().unwrap()), rev).unwrap();
    }
    for i in 6..12 {
        let a = assign(&store, false, &format!("n{i}"), &format!("h{i}")).unwrap();
        assert!(ips.insert(a.ip), "duplicate {}", a.ip);
    }
    // Claims only re-learn the blocks they bump into; the operator rebuild restores the whole index.
    assert!(!check_store(&*store.lock().unwrap()).unwrap().problems.is_empty());
    crate::ipam::admin::rebuild_indexes(&mut *store.lock().unwrap()).unwrap();
    assert_consistent(&store);
}

#[test]
fn warm_add_is_one_commit() {
    let store = store_with(vec![pool("p", "10.16.0.0/24", 26)], IpamConfig::default());
    assign(&store, false, "n1", "h0").unwrap();
    let before = store.commits();
    assign(&store, false, "n1", "h1").unwrap();
    assert_eq!(store.commits() - before, 1, "handle + block in one atomic commit");
}

#[test]
fn new_block_and_first_address_take_two_commits() {
    let store = store_with(vec![pool("p", "10.17.0.0/24", 26)], IpamConfig::default());
    let before = store.commits();
    assign(&store, false, "n1", "h0").unwrap();
    assert_eq!(store.commits() - before, 2, "pending affinity, then block + affinity + indexes + handle");
    assert_consistent(&store);
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    let store = store_with(vec![pool("p", "10.18.0.0/24", 26)], IpamConfig::default());
    let a = assign(&store, false, "n1", "h0").unwrap();
    let key = Key::Block(a.block);
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let mutations: Vec<Mutation> = vec![
        Box::new(|v| v["allocations"][5] = serde_json::json!(7)),
        Box::new(|v| v["unallocated"] = serde_json::json!([0, 0])),
        Box::new(|v| v["unallocated"] = serde_json::json!([4_000_000_000u64])),
        Box::new(|v| v["cidr"] = serde_json::json!("10.18.0.0/8")),
        Box::new(|v| v["allocations"] = serde_json::json!("nope")),
    ];
    for m in mutations {
        let mut s = store.lock().unwrap();
        let rec = s.get(&key).unwrap().unwrap();
        let mut bad = rec.value.to_value();
        m(&mut bad);
        let rev = s.update(&key, bad.into(), rec.rev).unwrap();
        drop(s);
        let err = assign(&store, false, "n1", "h1").unwrap_err();
        assert_eq!(err.code(), 999, "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");
        let mut s = store.lock().unwrap();
        s.update(&key, rec.value, rev).unwrap();
    }
    assert_consistent(&store);
}

/// A store where every commit loses to "another node": the ADD gives up with a code-11 error after its
/// attempts, and nothing is written.
#[test]
fn a_conflict_storm_ends_in_code_11_and_writes_nothing() {
    use datastore::store::{Kind, Op, Record, Revision, Store, StoreError};
    struct Storm(MemStore);
    struct StormSession<'a>(Box<dyn Store + 'a>);
    impl Store for StormSession<'_> {
        fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
            self.0.get(key)
        }
        fn list(&self, kind: Kind) -> Result<Vec<(Key, Record)>, StoreError> {
            self.0.list(kind)
        }
        fn commit(&mut self, ops: &[Op]) -> Result<Vec<Revision>, StoreError> {
            Err(StoreError::Conflict { key: ops[0].key().path(), reason: "revision changed" })
        }
    }
    impl Datastore for Storm {
        fn lock(&self) -> Result<Box<dyn Store + '_>, StoreError> {
            Ok(Box::new(StormSession(self.0.lock()?)))
        }
    }
    let store = Storm(store_with(vec![pool("p", "10.19.0.0/24", 26)], IpamConfig::default()));
    let before = store.0.commits();
    let retry = crate::backend::Retry { attempts: 5, deadline: std::time::Instant::now() + std::time::Duration::from_secs(5), io: true };
    let err = plugin::add_with(&store, retry, &conf(true, false), &owner("net.c1", "n1"), &[]).unwrap_err();
    assert_eq!(err.code(), 11, "{err}");
    assert!(err.to_string().contains("gave up after 5 attempts"), "{err}");
    assert_eq!(store.0.commits(), before, "nothing written");
}

#[test]
fn a_warm_add_reads_one_block_however_many_the_host_owns() {
    let store = store_with(vec![pool("p", "10.60.0.0/16", 26)], strict(1000));
    let first_block = assign(&store, false, "n1", "fill0").unwrap().block;
    for i in 1..(64 * 12 + 5) {
        assign(&store, false, "n1", &format!("fill{i}")).unwrap();
    }
    let before = store.block_reads();
    let warm = assign(&store, false, "n1", "warm").unwrap();
    assert_eq!(store.block_reads() - before, 1, "a warm ADD read more than one block");
    assert_ne!(warm.block, first_block);

    // Freeing an address in a full block clears its hint in the same commit: the next ADD goes straight
    // there (blocks are used in claim order), still reading one block.
    release(&store, "fill0");
    let before = store.block_reads();
    let again = assign(&store, false, "n1", "reuse").unwrap();
    assert_eq!(store.block_reads() - before, 1);
    assert_eq!(again.block, first_block, "the freed address in the first block is used before later blocks");
    assert_consistent(&store);
}

#[test]
fn removing_a_host_frees_its_addresses_and_affinities_and_keeps_what_others_borrowed() {
    // Four blocks of 4: a fills two; b has one of its own and lends it to a; c's block is empty.
    let store = store_with(vec![pool("p", "10.0.0.0/28", 30)], IpamConfig::default());
    for i in 0..4 {
        assign(&store, false, "a", &format!("a{i}")).unwrap();
    }
    let b0 = assign(&store, false, "b", "b0").unwrap();
    let c0 = assign(&store, false, "c", "c0").unwrap();
    for i in 1..4 {
        assign(&store, false, "c", &format!("c{i}")).unwrap();
    }
    for i in 4..8 {
        assign(&store, false, "a", &format!("a{i}")).unwrap();
    }
    let borrowed = assign(&store, false, "a", "a8").unwrap();
    assert_eq!(borrowed.block, b0.block, "the only block with room");
    for i in 0..4 {
        release(&store, &format!("c{i}"));
    }
    let records = |s: &MemStore| s.lock().unwrap().list(Kind::Block).unwrap().len();
    assert_eq!(records(&store), 4);

    let removed = |host: &str| Ipam::new(&mut *store.lock().unwrap()).unwrap().remove_host(host).unwrap();
    assert_eq!(removed("b"), HostRemoval { addresses: 1, blocks_deleted: 0, blocks_kept: 1 });
    let kept = block_of(&store, b0.block);
    assert_eq!(kept.affinity, None, "b's block stays for a's borrowed address, without affinity");
    assert_eq!(kept.in_use(), 1);
    assert_eq!(removed("c"), HostRemoval { addresses: 0, blocks_deleted: 1, blocks_kept: 0 });
    assert!(records::load::<Block>(&*store.lock().unwrap(), &Key::Block(c0.block)).unwrap().is_none());
    for host in ["b", "c"] {
        let s = store.lock().unwrap();
        let affinities = s.list(Kind::Affinity).unwrap();
        assert!(affinities.iter().all(|(k, _)| !matches!(k, Key::Affinity { host: h, .. } if h == host)), "{host}: {affinities:?}");
        assert!(s.get(&Key::HostBlocks(host.into())).unwrap().is_none(), "{host}'s host index");
    }
    assert_consistent(&store);

    // Again, or for a node IPAM never knew: nothing to do, nothing written.
    let before = store.lock().unwrap().list(Kind::Block).unwrap();
    assert_eq!(removed("b"), HostRemoval::default());
    assert_eq!(removed("nobody"), HostRemoval::default());
    assert_eq!(store.lock().unwrap().list(Kind::Block).unwrap(), before);

    // a keeps every address; when it releases the borrowed one, the unaffine block goes and can be claimed.
    assert_eq!(release(&store, "a8"), 1);
    assert!(records::load::<Block>(&*store.lock().unwrap(), &Key::Block(b0.block)).unwrap().is_none());
    let d = assign(&store, false, "d", "d0").unwrap();
    assert!([b0.block, c0.block].contains(&d.block), "{d:?}");
    assert_consistent(&store);
}
