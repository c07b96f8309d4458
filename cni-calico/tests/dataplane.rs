//! cni-calico run as a runtime runs it, in namespaces each test builds (node + uplink + pods) and removes.
//! Debian's host-local is the IPAM here, to prove delegation works with any IPAM plugin.
mod support;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

fn host_if(result: &Value) -> String {
    result["interfaces"][0]["name"].as_str().expect("host interface").to_string()
}

fn addr(result: &Value, i: usize) -> String {
    let a = result["ips"][i]["address"].as_str().expect("address");
    a.split('/').next().unwrap_or(a).to_string()
}

#[test]
fn add_wires_both_ends_exactly_and_del_removes_everything() {
    if !root_or_skip("add_wires_both_ends") {
        return;
    }
    let mut node = Node::new("wire");
    let pod = node.pod();
    let conf = host_local_conf(&node, "1.0.0", v4_range("10.91.0.0/24"));
    let res = node.run("cni-calico", "ADD", "0123456789abcdef", Some(&pod), "eth0", &[], &conf).ok().json;

    // Result: host veth then container interface with mac/sandbox; /32 address pointing at it.
    assert_eq!(res["cniVersion"], "1.0.0");
    assert_eq!(host_if(&res), "cali0123456789a");
    assert_eq!(res["interfaces"][1]["name"], "eth0");
    assert_eq!(res["interfaces"][1]["sandbox"], format!("/run/netns/{pod}"));
    let mac = res["interfaces"][1]["mac"].as_str().unwrap().to_string();
    assert_eq!(mac.len(), 17);
    assert_eq!(res["ips"][0]["address"], "10.91.0.2/32");
    assert_eq!(res["ips"][0]["interface"], 1);
    assert!(res["interfaces"][1].get("mtu").is_none(), "mtu is a 1.1 field");

    // Host end: name, MAC, up, MTU, sysctls, /32 route scope link.
    let link = node.ip_in(&node.name, &["-o", "link", "show", "cali0123456789a"]);
    assert!(link.contains("link/ether ee:ee:ee:ee:ee:ee"), "{link}");
    assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
    for (key, want) in [
        ("net.ipv4.conf.cali0123456789a.proxy_arp", "1"),
        ("net.ipv4.conf.cali0123456789a.route_localnet", "1"),
        ("net.ipv4.conf.cali0123456789a.forwarding", "1"),
        ("net.ipv4.neigh.cali0123456789a.proxy_delay", "0"),
        ("net.ipv6.conf.cali0123456789a.accept_ra", "0"),
    ] {
        assert_eq!(node.sysctl(&node.name, key), want, "{key}");
    }
    let routes = node.ip_in(&node.name, &["route", "show", "dev", "cali0123456789a"]);
    assert_eq!(routes.trim(), "10.91.0.2 scope link", "{routes}");

    // Container end: address /32, MAC as reported, routes via the link-local gateway, forwarding off.
    let clink = node.ip_in(&pod, &["-o", "link", "show", "eth0"]);
    assert!(clink.contains(&format!("link/ether {mac}")) && clink.contains("mtu 1400"), "{clink}");
    let caddr = node.ip_in(&pod, &["-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(caddr.contains("inet 10.91.0.2/32"), "{caddr}");
    let croutes = node.ip_in(&pod, &["-4", "route"]);
    assert!(croutes.contains("default via 169.254.1.1 dev eth0"), "{croutes}");
    assert!(croutes.contains("169.254.1.1 dev eth0 scope link"), "{croutes}");
    assert_eq!(croutes.lines().count(), 2, "{croutes}");
    assert_eq!(node.sysctl(&pod, "net.ipv4.ip_forward"), "0");
    assert!(node.ping(&node.name, "10.91.0.2", Duration::from_secs(5)), "node reaches pod");

    // CHECK with the ADD result passes.
    let full = with_prev(&conf, &res);
    node.run("cni-calico", "CHECK", "0123456789abcdef", Some(&pod), "eth0", &[], &full).ok();

    // DEL leaves nothing: no host link, no route, no container link, no reservation.
    node.run("cni-calico", "DEL", "0123456789abcdef", Some(&pod), "eth0", &[], &full).ok();
    assert!(!try_ip(&["-n", &node.name, "link", "show", "cali0123456789a"]));
    assert!(!node.ip_in(&node.name, &["route"]).contains("10.91.0.2"));
    assert!(!try_ip(&["-n", &pod, "link", "show", "eth0"]));
    assert!(!node.path("ipam/crs-test/10.91.0.2").exists());
    // ...and DEL again is still success.
    node.run("cni-calico", "DEL", "0123456789abcdef", Some(&pod), "eth0", &[], &full).ok();
}

#[test]
fn two_pods_ping_each_other_through_the_node() {
    if !root_or_skip("two_pods_ping") {
        return;
    }
    let mut node = Node::new("ping");
    let conf = host_local_conf(&node, "1.0.0", v4_range("10.92.0.0/24"));
    let (a, b) = (node.pod(), node.pod());
    let ra = node.run("cni-calico", "ADD", "pod-a", Some(&a), "eth0", &[], &conf).ok().json;
    let rb = node.run("cni-calico", "ADD", "pod-b", Some(&b), "eth0", &[], &conf).ok().json;
    assert_ne!(addr(&ra, 0), addr(&rb, 0));
    assert!(node.ping(&a, &addr(&rb, 0), Duration::from_secs(5)), "a -> b");
    assert!(node.ping(&b, &addr(&ra, 0), Duration::from_secs(5)), "b -> a");
    // The pod learnt the gateway's MAC through the host veth's proxy ARP.
    let neigh = node.ip_in(&a, &["neigh", "show", "169.254.1.1"]);
    assert!(neigh.contains("ee:ee:ee:ee:ee:ee"), "{neigh}");
    for (cid, pod, r) in [("pod-a", &a, &ra), ("pod-b", &b, &rb)] {
        node.run("cni-calico", "DEL", cid, Some(pod), "eth0", &[], &with_prev(&conf, r)).ok();
    }
    let left = node.ip_in(&node.name, &["-o", "link"]);
    assert_eq!(left.lines().count(), 2, "only lo and the uplink remain: {left}");
}

#[test]
fn k8s_pod_names_the_host_veth_like_calico() {
    if !root_or_skip("k8s_names") {
        return;
    }
    let mut node = Node::new("k8s");
    let pod = node.pod();
    let conf = host_local_conf(&node, "1.0.0", v4_range("10.93.0.0/24"));
    let args = [("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx")];
    let res = node.run("cni-calico", "ADD", "c1", Some(&pod), "eth0", &args, &conf).ok().json;
    assert_eq!(host_if(&res), "calic440f455693");
    node.run("cni-calico", "DEL", "c1", Some(&pod), "eth0", &args, &with_prev(&conf, &res)).ok();
}

#[test]
fn dual_stack_gets_128_and_the_v6_gateway() {
    if !root_or_skip("dual_stack") {
        return;
    }
    let mut node = Node::new("ds");
    let ranges = json!([[{"subnet": "10.94.0.0/24"}], [{"subnet": "fd00:94::/64"}]]);
    let conf = host_local_conf(&node, "1.0.0", ranges);
    let (a, b) = (node.pod(), node.pod());
    let ra = node.run("cni-calico", "ADD", "ds-a", Some(&a), "eth0", &[], &conf).ok().json;
    let rb = node.run("cni-calico", "ADD", "ds-b", Some(&b), "eth0", &[], &conf).ok().json;
    assert_eq!(ra["ips"][1]["address"], "fd00:94::2/128");
    let hif = host_if(&ra);
    for (key, want) in [("proxy_ndp", "1"), ("forwarding", "1"), ("accept_dad", "0"), ("disable_ipv6", "0")] {
        assert_eq!(node.sysctl(&node.name, &format!("net/ipv6/conf/{hif}/{key}")), want, "{key}");
    }
    assert_eq!(node.sysctl(&a, "net/ipv6/conf/eth0/accept_dad"), "0");
    let r6 = node.ip_in(&a, &["-6", "route"]);
    assert!(r6.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"), "{r6}");
    let a6 = node.ip_in(&a, &["-o", "-6", "addr", "show", "dev", "eth0", "scope", "global"]);
    assert!(a6.contains("fd00:94::2/128") && !a6.contains("tentative"), "{a6}");
    let h6 = node.ip_in(&node.name, &["-6", "route", "show", "dev", &hif]);
    assert!(h6.contains("fd00:94::2 metric"), "{h6}");
    assert!(node.ping(&a, &addr(&rb, 1), Duration::from_secs(8)), "v6 a -> b");
    assert!(node.ping(&a, &addr(&rb, 0), Duration::from_secs(5)), "v4 a -> b");
    for (cid, pod, r) in [("ds-a", &a, &ra), ("ds-b", &b, &rb)] {
        node.run("cni-calico", "DEL", cid, Some(pod), "eth0", &[], &with_prev(&conf, r)).ok();
    }
}

#[test]
fn del_is_idempotent_whatever_is_already_gone() {
    if !root_or_skip("del_idempotent") {
        return;
    }
    let mut node = Node::new("del");
    let conf = host_local_conf(&node, "1.0.0", v4_range("10.95.0.0/24"));
    // Never added, empty CNI_NETNS, a netns path that does not exist.
    node.run("cni-calico", "DEL", "never", None, "eth0", &[], &conf).ok();
    let gone = [("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "gone"), ("CNI_NETNS", "/run/netns/crs-no-such-ns"), ("CNI_IFNAME", "eth0")];
    node.run_raw("cni-calico", &gone, &[], conf.to_string().as_bytes()).ok();
    // Netns removed before DEL (containerd --rm): the address is still released.
    let pod = node.pod();
    let res = node.run("cni-calico", "ADD", "early", Some(&pod), "eth0", &[], &conf).ok().json;
    assert!(node.path(&format!("ipam/crs-test/{}", addr(&res, 0))).exists());
    ip(&["netns", "del", &pod]);
    node.run("cni-calico", "DEL", "early", None, "eth0", &[], &with_prev(&conf, &res)).ok();
    assert!(!node.path(&format!("ipam/crs-test/{}", addr(&res, 0))).exists());
    // Interface already deleted by hand.
    let pod = node.pod();
    let res = node.run("cni-calico", "ADD", "byhand", Some(&pod), "eth0", &[], &conf).ok().json;
    ip(&["-n", &pod, "link", "del", "eth0"]);
    node.run("cni-calico", "DEL", "byhand", Some(&pod), "eth0", &[], &with_prev(&conf, &res)).ok();
    node.run("cni-calico", "DEL", "byhand", Some(&pod), "eth0", &[], &with_prev(&conf, &res)).ok();
}

#[test]
fn check_names_what_is_missing() {
    if !root_or_skip("check") {
        return;
    }
    let mut node = Node::new("chk");
    let pod = node.pod();
    let conf = host_local_conf(&node, "1.0.0", v4_range("10.96.0.0/24"));
    let res = node.run("cni-calico", "ADD", "chk1", Some(&pod), "eth0", &[], &conf).ok().json;
    let full = with_prev(&conf, &res);
    node.run("cni-calico", "CHECK", "chk1", Some(&pod), "eth0", &[], &full).ok();
    let hif = host_if(&res);

    ip(&["-n", &node.name, "route", "del", "10.96.0.2/32", "dev", &hif]);
    let out = node.run("cni-calico", "CHECK", "chk1", Some(&pod), "eth0", &[], &full);
    assert_ne!(out.code, 0);
    assert!(out.json["msg"].as_str().unwrap().contains(&format!("host route 10.96.0.2/32 dev {hif} missing")), "{}", out.stdout);

    ip(&["-n", &pod, "route", "del", "default"]);
    let out = node.run("cni-calico", "CHECK", "chk1", Some(&pod), "eth0", &[], &full);
    assert!(out.json["msg"].as_str().unwrap().contains("default route via 169.254.1.1"), "{}", out.stdout);

    ip(&["-n", &pod, "addr", "del", "10.96.0.2/32", "dev", "eth0"]);
    let out = node.run("cni-calico", "CHECK", "chk1", Some(&pod), "eth0", &[], &full);
    assert!(out.json["msg"].as_str().unwrap().contains("address 10.96.0.2/32 missing"), "{}", out.stdout);

    // Without prevResult there is nothing to check against.
    node.run("cni-calico", "CHECK", "chk1", Some(&pod), "eth0", &[], &conf).err(7);
    node.run("cni-calico", "DEL", "chk1", Some(&pod), "eth0", &[], &full).ok();
}

#[test]
fn failed_add_undoes_veth_and_allocation() {
    if !root_or_skip("failed_add") {
        return;
    }
    let mut node = Node::new("undo");
    let conf = host_local_conf(&node, "1.0.0", v4_range("10.97.0.0/24"));
    // The next address is already routed to another interface of the node: a duplicate-IP symptom.
    ip(&["-n", &node.name, "route", "add", "10.97.0.2/32", "dev", "up0"]);
    let pod = node.pod();
    let out = node.run("cni-calico", "ADD", "dup", Some(&pod), "eth0", &[], &conf).err(999);
    assert!(out.json["msg"].as_str().unwrap().contains("already exists for an interface other than calidup: up0"), "{}", out.stdout);
    assert!(!try_ip(&["-n", &node.name, "link", "show", "calidup"]), "host veth left behind");
    assert!(!try_ip(&["-n", &pod, "link", "show", "eth0"]), "container veth left behind");
    assert!(!node.path("ipam/crs-test/10.97.0.2").exists(), "allocation left behind");

    // The interface name is already taken in the container.
    ip(&["-n", &pod, "link", "add", "eth0", "type", "veth", "peer", "name", "other"]);
    let out = node.run("cni-calico", "ADD", "taken", Some(&pod), "eth0", &[], &conf).err(999);
    assert!(out.json["msg"].as_str().unwrap().contains("eth0 already exists"), "{}", out.stdout);
    // The interface there is not this container's (no mark of it), so what the ADD took goes back at once.
    let allocated =
        || std::fs::read_dir(node.path("ipam/crs-test")).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("10.97.")).count();
    assert_eq!(allocated(), 0, "allocation of the failed ADD left behind");
    node.run("cni-calico", "DEL", "taken", Some(&pod), "eth0", &[], &conf).ok();
    assert_eq!(allocated(), 0, "allocation left behind after DEL");

    // The container netns does not exist: code 3 and nothing allocated.
    let gone = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "nons"), ("CNI_NETNS", "/run/netns/crs-no-such-ns"), ("CNI_IFNAME", "eth0")];
    node.run_raw("cni-calico", &gone, &[], conf.to_string().as_bytes()).err(3);
}

#[test]
fn stale_host_link_of_a_restarted_sandbox_is_replaced() {
    if !root_or_skip("stale_link") {
        return;
    }
    let mut node = Node::new("stale");
    let conf = host_local_conf(&node, "1.0.0", v4_range("10.98.0.0/24"));
    ip(&["-n", &node.name, "link", "add", "calirestart", "type", "veth", "peer", "name", "junk"]);
    let pod = node.pod();
    let res = node.run("cni-calico", "ADD", "restart", Some(&pod), "eth0", &[], &conf).ok().json;
    assert_eq!(host_if(&res), "calirestart");
    let link = node.ip_in(&node.name, &["-o", "link", "show", "calirestart"]);
    assert!(link.contains("ee:ee:ee:ee:ee:ee"), "{link}");
    assert!(!try_ip(&["-n", &node.name, "link", "show", "junk"]), "stale pair was not removed");
    node.run("cni-calico", "DEL", "restart", Some(&pod), "eth0", &[], &with_prev(&conf, &res)).ok();
}

#[test]
fn results_are_printed_in_the_requested_version() {
    if !root_or_skip("versions") {
        return;
    }
    let mut node = Node::new("ver");
    for (i, ver) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"].iter().enumerate() {
        let pod = node.pod();
        let conf = host_local_conf(&node, ver, v4_range("10.99.0.0/24"));
        let cid = format!("ver{i}");
        let res = node.run("cni-calico", "ADD", &cid, Some(&pod), "eth0", &[], &conf).ok().json;
        assert_eq!(res["cniVersion"], *ver);
        assert_eq!(res["ips"][0].get("version").is_some(), ver.starts_with("0."), "{ver}: {res}");
        node.run("cni-calico", "DEL", &cid, Some(&pod), "eth0", &[], &with_prev(&conf, &res)).ok();
    }
    // VERSION needs no config beyond cniVersion.
    let v = node.run_raw("cni-calico", &[("CNI_COMMAND", "VERSION")], &[], br#"{"cniVersion":"1.0.0"}"#).ok().json;
    assert_eq!(v["supportedVersions"], json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]));
}

#[test]
fn bad_input_gets_cni_errors_not_panics() {
    if !root_or_skip("bad_input") {
        return;
    }
    let mut node = Node::new("bad");
    let pod = node.pod();
    let netns = format!("/run/netns/{pod}");
    let add = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "bad1"), ("CNI_NETNS", netns.as_str()), ("CNI_IFNAME", "eth0")];
    let good = host_local_conf(&node, "1.0.0", v4_range("10.100.0.0/24"));
    let cases: Vec<(Vec<u8>, u64)> = vec![
        (b"{not json".to_vec(), 6),
        (b"".to_vec(), 6),
        (br#"{"cniVersion":"2.0.0","name":"n","type":"cni-calico","ipam":{"type":"host-local"}}"#.to_vec(), 1),
        (br#"{"cniVersion":"1.0.0","type":"cni-calico","ipam":{"type":"host-local"}}"#.to_vec(), 7),
        (br#"{"cniVersion":"1.0.0","name":"n","type":"cni-calico"}"#.to_vec(), 7),
        (br#"{"cniVersion":"1.0.0","name":"n","type":"cni-calico","mtu":"big","ipam":{"type":"host-local"}}"#.to_vec(), 7),
        (br#"{"cniVersion":"1.0.0","name":"n","type":"cni-calico","mtu":10,"ipam":{"type":"host-local"}}"#.to_vec(), 2),
        (br#"{"cniVersion":"1.0.0","name":"n","type":"cni-calico","ipam":{"type":"no-such-ipam"}}"#.to_vec(), 7),
        (br#"{"cniVersion":"1.0.0","name":"n","type":"cni-calico","ipam":{"type":"../host-local"}}"#.to_vec(), 7),
    ];
    for (stdin, code) in cases {
        node.run_raw("cni-calico", &add, &[], &stdin).err(code);
    }
    // Missing env: named in the message.
    let out = node.run_raw("cni-calico", &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "x")], &[], good.to_string().as_bytes()).err(4);
    assert!(out.json["msg"].as_str().unwrap().contains("CNI_NETNS"));
    // No container ID is a missing variable like any other (code 4), not "container unknown" (code 3).
    let out = node.run_raw("cni-calico", &[("CNI_COMMAND", "ADD")], &[], good.to_string().as_bytes()).err(4);
    assert!(out.json["msg"].as_str().unwrap().contains("CNI_CONTAINERID"), "{}", out.stdout);
    let out = node
        .run_raw("cni-calico", &[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", ""), ("CNI_IFNAME", "eth0")], &[], good.to_string().as_bytes())
        .err(4);
    assert!(out.json["msg"].as_str().unwrap().contains("CNI_CONTAINERID"), "{}", out.stdout);
    // IPAM errors come back as the IPAM plugin's error (host-local: bad subnet).
    let mut bad_subnet = good.clone();
    bad_subnet["ipam"]["ranges"] = json!([[{"subnet": "10.0.0.0/33"}]]);
    let out = node.run_raw("cni-calico", &add, &[], bad_subnet.to_string().as_bytes());
    assert_ne!(out.code, 0);
    assert!(out.json["code"].is_u64(), "{}", out.stdout);
    assert!(!try_ip(&["-n", &node.name, "link", "show", "calibad1"]));
    // The plugin's own netns as CNI_NETNS is refused (code 8).
    let own = format!("/run/netns/{}", node.name);
    node.run_raw(
        "cni-calico",
        &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "own"), ("CNI_NETNS", &own), ("CNI_IFNAME", "eth0")],
        &[],
        good.to_string().as_bytes(),
    )
    .err(8);
    // Nothing was left on the node.
    assert_eq!(node.ip_in(&node.name, &["-o", "link"]).lines().count(), 2);
}

#[test]
fn status_reports_a_missing_ipam_plugin() {
    if !root_or_skip("status") {
        return;
    }
    let node = Node::new("status");
    let conf = json!({"cniVersion":"1.1.0","name":"n","type":"cni-calico","ipam":{"type":"no-such-ipam"}});
    node.run_raw("cni-calico", &[("CNI_COMMAND", "STATUS")], &[], conf.to_string().as_bytes()).err(50);
    let old = json!({"cniVersion":"1.0.0","name":"n","type":"cni-calico","ipam":{"type":"host-local"}});
    node.run_raw("cni-calico", &[("CNI_COMMAND", "STATUS")], &[], old.to_string().as_bytes()).err(1);
}
