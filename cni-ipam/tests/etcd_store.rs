//! The etcd v3 store against a real etcd (Debian's etcd-server, started by the test on unix sockets): CAS
//! semantics, Calico's key layout, round trips per ADD/DEL, unreachable and silent members, TLS with client
//! certificates.
mod support;
use cni_ipam::backend::Retry;
use cni_ipam::ipam::check::check_store;
use cni_ipam::ipam::config::IpamConf;
use cni_ipam::ipam::Owner;
use cni_ipam::plugin;
use datastore::store::{Datastore, EtcdStore, Key, Kind, Op};
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;
use testbed::etcd::{available, Certs, Etcd};

fn conf(node: &str) -> IpamConf {
    IpamConf::v4_for_node(node)
}

fn owner(handle: &str, node: &str) -> Owner {
    Owner { handle: handle.into(), attrs: [("node".to_string(), node.to_string())].into() }
}

fn retry() -> Retry {
    Retry { attempts: 100, deadline: Instant::now() + Duration::from_secs(20), io: true }
}

#[test]
fn cas_commits_are_all_or_nothing_on_etcd() {
    if !available("cas_commits_are_all_or_nothing_on_etcd") {
        return;
    }
    let etcd = Etcd::start(1);
    let store = etcd.store();
    let mut s = store.lock().expect("lock");
    let k = Key::Handle("net.c1".into());
    let r1 = s.create(&k, json!({"block": {"10.0.0.0/26": 1}}).into()).expect("create");
    assert!(s.create(&k, json!({}).into()).unwrap_err().is_conflict(), "create of an existing key");
    let r2 = s.update(&k, json!({"block": {}}).into(), r1).expect("update at the read revision");
    assert!(r2 > r1);
    assert!(s.update(&k, json!({}).into(), r1).unwrap_err().is_conflict(), "stale update");
    assert!(s.delete(&k, r1).unwrap_err().is_conflict(), "stale delete");
    let k2 = Key::Handle("net.c2".into());
    let err = s.commit(&[Op::Create { key: k2.clone(), value: json!(1).into() }, Op::Delete { key: k.clone(), rev: r1 }]);
    assert!(err.unwrap_err().is_conflict());
    assert!(s.get(&k2).expect("get").is_none(), "a failed commit wrote nothing");
    let both = s.get_many(&[k.clone(), k2.clone(), Key::IpamConfig]).expect("get_many");
    assert_eq!(both.iter().map(|r| r.is_some()).collect::<Vec<_>>(), [true, false, false]);
    assert_eq!(both[0].as_ref().map(|r| r.rev), Some(r2));
    // Listing pages through a prefix (more keys than one page) and sees only keys of the kind.
    let ops: Vec<Op> = (0..120).map(|i| Op::Create { key: Key::Handle(format!("bulk.{i:04}")), value: json!({"block": {}}).into() }).collect();
    s.commit(&ops).expect("bulk create");
    for chunk in 0..5 {
        let ops: Vec<Op> =
            (0..120).map(|i| Op::Create { key: Key::Handle(format!("bulk.{chunk}.{i:04}")), value: json!({"block": {}}).into() }).collect();
        s.commit(&ops).expect("bulk create");
    }
    assert_eq!(s.list(Kind::Handle).expect("list").len(), 1 + 120 * 6);
    assert!(s.list(Kind::Block).expect("list").is_empty());
    s.delete(&k, r2).expect("delete at the read revision");
    assert!(s.get(&k).expect("get").is_none());
    assert!(store.requests() > 0);
}

#[test]
fn add_and_del_round_trips_and_calico_key_layout() {
    if !available("add_and_del_round_trips_and_calico_key_layout") {
        return;
    }
    let etcd = Etcd::start(1);
    let store = etcd.store();
    load_pool(&store, "rt", "10.91.0.0/16", 26, None);
    let count = |f: &mut dyn FnMut()| {
        let before = store.requests();
        f();
        store.requests() - before
    };
    let cold = count(&mut || {
        plugin::add_with(&store, retry(), &conf("n1"), &owner("net.c0", "n1"), &[]).expect("cold ADD");
    });
    let warm = count(&mut || {
        plugin::add_with(&store, retry(), &conf("n1"), &owner("net.c1", "n1"), &[]).expect("warm ADD");
    });
    let del = count(&mut || {
        plugin::del_with(&store, retry(), &["net.c1".to_string(), "c1".to_string()]).expect("DEL");
    });
    eprintln!("etcd requests: cold ADD {cold}, warm ADD {warm}, DEL {del}");
    assert!(warm <= 3, "warm ADD took {warm} requests");
    assert!(cold <= 8, "cold ADD took {cold} requests");
    assert!(del <= 3, "DEL took {del} requests");
    // Warm stays warm with many nodes and blocks in the store: nothing on the path scans.
    for n in 0..20 {
        plugin::add_with(&store, retry(), &conf(&format!("other-{n}")), &owner(&format!("net.o{n}"), &format!("other-{n}")), &[]).expect("ADD");
    }
    let warm = count(&mut || {
        plugin::add_with(&store, retry(), &conf("n1"), &owner("net.c2", "n1"), &[]).expect("warm ADD");
    });
    assert!(warm <= 3, "warm ADD with 21 nodes took {warm} requests");

    // The binary reports its own count when asked (CNI_IPAM_ETCD_REQUESTS), as a runtime would run it.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut net = Net::new(tmp.path(), "n1");
    net.ipam_extra = json!({"datastore_type": "etcdv3", "etcd_endpoints": etcd.endpoints_csv(), "ipam_lock_file": tmp.path().join("l")});
    let mut cmd = net.command("ADD", "bin1", "");
    cmd.env(plugin::REQUEST_COUNT_ENV, "1");
    let mut child = cmd.spawn().expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), net.config().to_string().as_bytes()).expect("stdin");
    let (rc, out, err) = parse_output(child.wait_with_output().expect("wait"));
    assert_eq!(rc, 0, "{out} {err}");
    assert!(err.contains("etcd requests: 3"), "a warm ADD from a fresh process: {err}");

    // The records sit under Calico's keys, as JSON.
    let out = std::process::Command::new("etcdctl")
        .args(["--endpoints", &etcd.endpoints_csv(), "get", "--prefix", "/calico/ipam/v2/", "--keys-only"])
        .output();
    if let Ok(out) = out {
        let keys = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(keys.contains("/calico/ipam/v2/assignment/ipv4/block/10.91."), "{keys}");
        assert!(keys.contains("/calico/ipam/v2/host/n1/ipv4/block/10.91."), "{keys}");
        assert!(keys.contains("/calico/ipam/v2/handle/net.c0"), "{keys}");
    }
    let s = store.lock().expect("lock");
    let report = check_store(&*s).expect("check");
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.allocations, 23);
}

/// A member that accepts connections but never answers: the ADD fails with code 11 within etcd_timeout.
#[test]
fn silent_or_missing_etcd_is_code_11_within_the_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let held = std::thread::spawn(move || {
        // Accept one connection and keep it open without answering, until the test drops the listener side.
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(4));
        drop(conn);
    });
    let mut net = Net::new(tmp.path(), "n1");
    for (endpoints, what) in [(format!("unix://{}/missing.sock", tmp.path().display()), "missing"), (format!("unix://{}", sock.display()), "silent")]
    {
        net.ipam_extra = json!({"datastore_type": "etcdv3", "etcd_endpoints": endpoints, "etcd_timeout": 1,
                                "ipam_lock_file": tmp.path().join("ipam.lock")});
        let t = Instant::now();
        let (rc, out, err) = net.run("ADD", "c1", "");
        let took = t.elapsed();
        assert_ne!(rc, 0, "{what}");
        assert_eq!(out["code"].as_u64(), Some(11), "{what}: {out} {err}");
        assert!(took < Duration::from_millis(2500), "{what}: took {took:?}");
        assert!(out["msg"].as_str().unwrap_or_default().contains("etcd"), "{what}: {out}");
        if what == "missing" {
            let mut cfg = net.config();
            cfg["cniVersion"] = json!("1.1.0");
            let (rc, out, _) = net.run_raw("STATUS", "", "", cfg.to_string().as_bytes());
            assert_eq!((rc != 0, out["code"].as_u64()), (true, Some(50)), "STATUS without etcd: {out}");
        }
    }
    let _ = held.join();
}

#[test]
fn tls_with_client_certificates() {
    if !available("tls_with_client_certificates") {
        return;
    }
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::generate(certs_dir.path());
    let etcd = Etcd::start_with(1, Some(&certs));
    let mut net = Net::new(certs_dir.path(), "tls-node");
    let base = json!({"datastore_type": "etcdv3", "etcd_endpoints": etcd.endpoints_csv(),
        "etcd_ca_cert_file": certs.ca, "etcd_cert_file": certs.client_cert, "etcd_key_file": certs.client_key,
        "ipam_lock_file": certs_dir.path().join("ipam.lock")});
    net.ipam_extra = base.clone();
    let (addr, _) = net.add("c1");
    assert!(addr.starts_with("192.168."), "default pool: {addr}");
    let (rc, out, err) = net.run("CHECK", "c1", "");
    assert_eq!(rc, 0, "{out} {err}");
    let mut cfg = net.config();
    cfg["cniVersion"] = json!("1.1.0");
    let (rc, out, err) = net.run_raw("STATUS", "", "", cfg.to_string().as_bytes());
    assert_eq!(rc, 0, "STATUS with etcd up: {out} {err}");
    // Without a client certificate the server refuses the handshake: a transient error, nothing written.
    let mut no_cert = base.clone();
    no_cert["etcd_cert_file"] = json!("");
    no_cert["etcd_key_file"] = json!("");
    no_cert["etcd_timeout"] = json!(1);
    net.ipam_extra = no_cert;
    let (rc, out, _) = net.run("ADD", "c2", "");
    assert_eq!((rc != 0, out["code"].as_u64()), (true, Some(11)), "{out}");
    // A CA that did not sign the server's certificate is refused too.
    let other = tempfile::tempdir().expect("tempdir");
    let other_certs = Certs::generate(other.path());
    let mut wrong_ca = base.clone();
    wrong_ca["etcd_ca_cert_file"] = json!(other_certs.ca);
    wrong_ca["etcd_timeout"] = json!(1);
    net.ipam_extra = wrong_ca;
    let (rc, out, _) = net.run("ADD", "c3", "");
    assert_eq!((rc != 0, out["code"].as_u64()), (true, Some(11)), "{out}");
    net.ipam_extra = base;
    let (rc, out, err) = net.run("DEL", "c1", "");
    assert_eq!(rc, 0, "{out} {err}");
    let mut opts = etcd.options();
    opts.tls = certs.client_files();
    let store = EtcdStore::open(&opts).expect("open");
    let s = store.lock().expect("lock");
    let report = check_store(&*s).expect("check");
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!((report.allocations, report.handles), (0, 0), "c2 and c3 wrote nothing, c1 was released");
}

/// The first member passes the transaction to etcd but drops the answer (a connection reset after the
/// commit): the client sends it to the next member, whose compares now fail — and recognises that etcd
/// holds exactly what it wrote, so the commit counts as applied instead of a conflict.
#[test]
fn a_commit_whose_answer_was_lost_is_recognised_as_applied() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    if !available("a_commit_whose_answer_was_lost_is_recognised_as_applied") {
        return;
    }
    let etcd = Etcd::start(1);
    let real = etcd.endpoints()[0].trim_start_matches("unix://").to_string();
    let proxy_path = etcd.dir.path().join("lossy.sock");
    let listener = UnixListener::bind(&proxy_path).expect("bind proxy");
    let proxy = std::thread::spawn(move || {
        let (client, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(client);
        let mut head = String::new();
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).expect("body");
        let mut upstream = UnixStream::connect(&real).expect("connect etcd");
        upstream.write_all(head.as_bytes()).expect("forward");
        upstream.write_all(&body).expect("forward");
        let mut answer = [0u8; 64];
        let _ = upstream.read(&mut answer).expect("etcd answered");
        // Drop both connections: the client never sees the answer.
    });
    let mut opts = etcd.options();
    opts.endpoints = vec![format!("unix://{}", proxy_path.display()), etcd.endpoints()[0].clone()];
    let store = EtcdStore::open(&opts).expect("open");
    let mut s = store.lock().expect("lock");
    let k = Key::Handle("net.lost".into());
    let rev = s.create(&k, json!({"block": {"10.0.0.0/26": 1}}).into()).expect("the first send was applied: not a conflict");
    proxy.join().expect("proxy");
    assert_eq!(store.requests(), 2, "sent twice");
    let rec = s.get(&k).expect("get").expect("present");
    assert_eq!((rec.rev, rec.value.to_value()), (rev, json!({"block": {"10.0.0.0/26": 1}})));
    // A create whose value differs from what is stored is a plain conflict.
    assert!(s.create(&k, json!({"block": {}}).into()).unwrap_err().is_conflict());
}
