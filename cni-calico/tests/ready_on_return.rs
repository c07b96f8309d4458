//! A pod can send the moment ADD returns: nothing the kernel still does asynchronously may drop or hold its
//! first packets. Watched without disturbing it: the link notifications are read from sockets opened before
//! the ADD, since asking for a link (GETLINK) would itself make the kernel finish the job being watched.
mod support;
use common::netlink::{LinkEvent, LinkEvents};
use common::netns::NetNs;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::*;

/// Subscribes to the link notifications of netns `ns`.
fn link_events(ns: &str) -> LinkEvents {
    let ns = NetNs::open(Path::new(&format!("/run/netns/{ns}"))).expect("open netns");
    ns.run(LinkEvents::open).expect("enter netns").expect("subscribe to link notifications")
}

/// Whether a notification already queued says `ifname` is operationally up (the kernel's link watch has
/// activated it). Does not wait.
fn reported_active(events: &mut LinkEvents, ifname: &str) -> bool {
    let mut active = false;
    while let Some(batch) = events.next(Instant::now()).expect("reading link notifications") {
        assert!(!batch.contains(&LinkEvent::Lost), "link notifications were lost");
        active |= batch.iter().any(|e| matches!(e, LinkEvent::Changed(l) if l.name == ifname && l.oper_up));
    }
    active
}

/// Sends one UDP datagram from the pod to the node (its first packet: an ARP for the gateway goes out first).
fn send_from(pod: &str, to: &str) {
    let ns = NetNs::open(Path::new(&format!("/run/netns/{pod}"))).expect("open netns");
    ns.run(|| std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"first", to))).expect("enter pod netns").expect("sending from the pod");
}

/// Packets the interface dropped on transmit (the `noop` qdisc of a link not yet activated counts there).
fn tx_dropped(ns: &str, ifname: &str) -> u64 {
    let out = ip(&["-n", ns, "-s", "-j", "link", "show", "dev", ifname]);
    let v: Value = serde_json::from_str(&out).expect("ip -j output");
    v[0]["stats64"]["tx"]["dropped"].as_u64().expect("tx dropped counter")
}

/// One echo request, one second for the answer: no retries that would hide a lost first packet.
fn one_ping(ns: &str, addr: &str) -> bool {
    let family = if addr.contains(':') { "-6" } else { "-4" };
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", family, "-c1", "-W1", addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn addr(result: &Value, i: usize) -> String {
    let a = result["ips"][i]["address"].as_str().expect("address");
    a.split('/').next().unwrap_or(a).to_string()
}

/// 64 hex characters as runtimes make them, distinct in the first 11 (which name the host veth).
fn cid(i: usize) -> String {
    format!("{:011x}{}", i * 0x9e37_79b9 % 0xfff_ffff_ffff, "d".repeat(53))
}

/// The report: 60 pods from 8 concurrent runtimes while every CPU is busy, then one ping from the last to
/// the first. The container end goes up before its peer, and until the kernel's link watch has activated it,
/// it sends through the `noop` qdisc, which drops everything; under load that came after ADD returned, the
/// pod's first ARP was lost and its first ping waited a second for the retransmit. (Timing-dependent before
/// the fix: with the old binaries this failed 6 runs in 6, 1 to 4 pods each.)
#[test]
fn both_veth_ends_carry_traffic_when_add_returns_under_concurrent_adds() {
    if !root_or_skip("active_on_return") {
        return;
    }
    const PODS: usize = 60;
    const RUNTIMES: usize = 8;
    let mut node = Node::new("act");
    let store = node.path("store");
    let out = Command::new(target_dir().join("cni-ipam"))
        .arg("--store")
        .arg(&store)
        .args(["pool", "add", "--name", "act", "--cidr", "10.123.0.0/16", "--block-size", "26"])
        .output()
        .expect("cni-ipam");
    assert!(out.status.success(), "pool add: {}", String::from_utf8_lossy(&out.stderr));
    let conf = json!({"cniVersion": "1.0.0", "name": "crs-act", "type": "cni-calico",
        "ipam": {"type": "cni-ipam", "nodename": "node-a", "local_store_dir": store, "ipv4_pools": ["act"]}});
    let pods: Vec<String> = (0..PODS).map(|_| node.pod()).collect();
    let results = Mutex::new(vec![Value::Null; PODS]);
    let late = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The report's load: compiles held every CPU while the runtimes worked. Spun until the ADDs are done.
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        for _ in 0..cpus {
            s.spawn(|| {
                let end = Instant::now() + Duration::from_secs(60);
                while !done.load(Ordering::Relaxed) && Instant::now() < end {
                    std::hint::spin_loop();
                }
            });
        }
        let runtimes: Vec<_> = (0..RUNTIMES)
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= PODS {
                        break;
                    }
                    let mut pod_events = link_events(&pods[i]);
                    let res = node.run("cni-calico", "ADD", &cid(i), Some(&pods[i]), "eth0", &[], &conf).ok().json;
                    // Right away, before anything asks the kernel about these links: one packet out of the pod,
                    // one into it through the host end (which goes up second and is activated at once).
                    send_from(&pods[i], "192.0.2.1:9");
                    send_from(&node.name, &format!("{}:9", addr(&res, 0)));
                    let host_if = res["interfaces"][0]["name"].as_str().expect("host interface").to_string();
                    let container = reported_active(&mut pod_events, "eth0");
                    let (dropped, host_dropped) = (tx_dropped(&pods[i], "eth0"), tx_dropped(&node.name, &host_if));
                    if !container || dropped != 0 || host_dropped != 0 {
                        late.lock()
                            .unwrap()
                            .push(format!("pod {i}: eth0 active {container}, eth0 dropped {dropped} and {host_if} {host_dropped} on transmit"));
                    }
                    results.lock().unwrap()[i] = res;
                })
            })
            .collect();
        let joined: Vec<_> = runtimes.into_iter().map(|r| r.join()).collect();
        done.store(true, Ordering::Relaxed);
        if let Some(panicked) = joined.into_iter().find_map(Result::err) {
            std::panic::resume_unwind(panicked);
        }
    });
    let late = late.into_inner().unwrap();
    assert!(late.is_empty(), "not ready when ADD returned:\n{}", late.join("\n"));
    let results = results.into_inner().unwrap();
    assert!(one_ping(&pods[PODS - 1], &addr(&results[0], 0)), "the last pod's first ping to the first pod was lost");
    for (i, r) in results.iter().enumerate() {
        node.run("cni-calico", "DEL", &cid(i), Some(&pods[i]), "eth0", &[], &with_prev(&conf, r)).ok();
    }
}

/// The IPv6 gateway is the host end's link-local address, which the kernel makes when that end comes up:
/// DAD left on until then held it tentative (answering no neighbour solicitation) for 1-2 s after ADD.
#[test]
fn ipv6_gateway_and_address_are_usable_when_add_returns() {
    if !root_or_skip("v6_on_return") {
        return;
    }
    let mut node = Node::new("v6r");
    let ranges = json!([[{"subnet": "10.124.0.0/24"}], [{"subnet": "fd00:124::/64"}]]);
    let conf = host_local_conf(&node, "1.0.0", ranges);
    let (a, b) = (node.pod(), node.pod());
    let rb = node.run("cni-calico", "ADD", "v6r-b", Some(&b), "eth0", &[], &conf).ok().json;
    let ra = node.run("cni-calico", "ADD", "v6r-a", Some(&a), "eth0", &[], &conf).ok().json;
    let host_if = ra["interfaces"][0]["name"].as_str().expect("host interface").to_string();
    let gw = node.ip_in(&node.name, &["-o", "-6", "addr", "show", "dev", &host_if, "scope", "link"]);
    assert!(gw.contains("fe80::ecee:eeff:feee:eeee/64") && !gw.contains("tentative"), "gateway address on {host_if}: {gw}");
    let own = node.ip_in(&a, &["-o", "-6", "addr", "show", "dev", "eth0", "scope", "global"]);
    assert!(own.contains(&format!("{}/128", addr(&ra, 1))) && !own.contains("tentative"), "pod address: {own}");
    assert!(one_ping(&a, &addr(&rb, 1)), "the new pod's first IPv6 ping was lost");
    for (cid, pod, r) in [("v6r-a", &a, &ra), ("v6r-b", &b, &rb)] {
        node.run("cni-calico", "DEL", cid, Some(pod), "eth0", &[], &with_prev(&conf, r)).ok();
    }
}

/// The wait itself: bounded without carrier, done once the peer is up, an error (not a hang) when the link
/// goes away meanwhile.
#[test]
fn await_oper_up_is_bounded_and_sees_activation_and_removal() {
    use common::netlink::Netlink;
    if !root_or_skip("await_oper_up") {
        return;
    }
    let mut node = Node::new("await");
    let pod = node.pod();
    let ns = NetNs::open(Path::new(&format!("/run/netns/{pod}"))).expect("open netns");
    ns.run(|| {
        let here = NetNs::current().expect("own netns");
        let mut nl = Netlink::open().expect("netlink");
        let link = |nl: &mut Netlink, name: &str| nl.link_by_name(name).expect("GETLINK").expect("link exists");
        nl.add_veth("a0", 1500, "b0", here.fd(), [0x02, 0, 0, 0, 0, 1]).expect("veth a0/b0");
        let (a, b) = (link(&mut nl, "a0"), link(&mut nl, "b0"));
        nl.set_up(a.index).expect("a0 up");
        let start = Instant::now();
        assert!(!nl.await_oper_up(a.index, start + Duration::from_millis(200)).expect("waiting"), "a0 has no carrier yet");
        assert!(start.elapsed() >= Duration::from_millis(200) && start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        nl.set_up(b.index).expect("b0 up");
        assert!(nl.await_oper_up(a.index, Instant::now() + Duration::from_secs(5)).expect("waiting"), "a0 active once b0 is up");

        nl.add_veth("a1", 1500, "b1", here.fd(), [0x02, 0, 0, 0, 0, 2]).expect("veth a1/b1");
        let a1 = link(&mut nl, "a1");
        nl.set_up(a1.index).expect("a1 up");
        let mut other = Netlink::open().expect("netlink");
        let deleted = std::thread::spawn(move || other.del_link(a1.index));
        let start = Instant::now();
        let gone = nl.await_oper_up(a1.index, start + Duration::from_secs(5));
        assert!(deleted.join().expect("deleter").is_ok());
        assert_eq!(gone.map_err(|e| e.raw_os_error()), Err(Some(nix::libc::ENODEV)), "a removed link ends the wait");
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    })
    .expect("enter netns");
}
