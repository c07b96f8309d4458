//! Which datastore calicoctl talks to, as calicoctl chooses it (environment, `-c` file), `version`, `node
//! status`, and an etcd that is down or does not answer: a clear error within the etcd timeout, exit 1.
mod support;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;
use testbed::etcd::{available, Etcd};

/// calicoctl with only these environment variables (no `-c`).
fn with_env(env: &[(&str, &str)], args: &[&str]) -> Out {
    let out = Command::new(BIN).env_clear().envs(env.iter().copied()).args(args).output().expect("run calicoctl");
    Out {
        rc: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn default_config_absent(test: &str) -> bool {
    if Path::new("/etc/calico/calicoctl.cfg").exists() {
        // calicoctl reads that file before the environment; this test is about the environment.
        assert!(std::env::var_os("CI").is_none(), "{test}: /etc/calico/calicoctl.cfg exists on the CI machine");
        eprintln!("SKIP {test}: /etc/calico/calicoctl.cfg exists");
        return false;
    }
    true
}

#[test]
fn the_environment_selects_the_local_store_and_etcd() {
    if !default_config_absent("the_environment_selects_the_local_store_and_etcd") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let local = [("DATASTORE_TYPE", "local"), ("CALICO_LOCAL_STORE_DIR", dir.to_str().unwrap_or_default())];
    let peer = testdata("bgppeer-global.yaml");
    let out = with_env(&local, &["apply", "-f", peer.to_str().unwrap_or_default()]);
    assert_eq!(out.rc, 0, "{out}");
    assert!(std::fs::read_dir(&dir).expect("store dir").count() > 1, "the store is where CALICO_LOCAL_STORE_DIR says");
    assert!(with_env(&local, &["get", "bgppeers"]).stdout.contains("my-global-peer"));
    // A -c file that does not exist is an error (only the default may be missing).
    let out = with_env(&local, &["get", "bgppeers", "-c", "/nonexistent/calicoctl.cfg"]);
    assert_eq!((out.rc, out.stderr.trim()), (1, "Error reading config file: /nonexistent/calicoctl.cfg"));
    let out = with_env(&[("DATASTORE_TYPE", "kubernetes")], &["get", "nodes"]);
    assert!(out.rc == 1 && out.stderr.contains("kubernetes is not supported"), "{out}");

    if !available("the_environment_selects_the_local_store_and_etcd") {
        return;
    }
    let etcd = Etcd::start(1);
    let eps = etcd.endpoints_csv();
    // ETCD_ENDPOINTS alone means etcdv3, as in calicoctl.
    let out = with_env(&[("ETCD_ENDPOINTS", &eps)], &["apply", "-f", peer.to_str().unwrap_or_default()]);
    assert_eq!(out.rc, 0, "{out}");
    let out = with_env(&[("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", &eps)], &["get", "bgppeer", "my-global-peer", "-o", "yaml"]);
    assert!(out.stdout.contains("peerIP: 192.20.30.40"), "{out}");
    assert!(etcdctl(&eps, &["get", "--prefix", "/calico/resources/v3/projectcalico.org/bgppeers/", "--keys-only"]).contains("my-global-peer"));
}

#[test]
fn version_reads_the_cluster_information() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctl = Ctl::local(&tmp.path().join("store"));
    let out = ctl.ok(&["version"]);
    assert!(out.starts_with("Client Version:    v"), "{out}");
    assert!(out.contains("Cluster Version:   unknown\nCluster Type:      unknown\n"), "{out}");
    assert_eq!(ctl.ok(&["version", "--client"]).lines().count(), 2);
    if !available("version_reads_the_cluster_information") {
        return;
    }
    let etcd = Etcd::start(1);
    let eps = etcd.endpoints_csv();
    etcdctl(
        &eps,
        &[
            "put",
            "/calico/resources/v3/projectcalico.org/clusterinformations/default",
            r#"{"kind":"ClusterInformation","apiVersion":"projectcalico.org/v3","metadata":{"name":"default"},"spec":{"calicoVersion":"v3.31.0","clusterType":"bgp,etcd"}}"#,
        ],
    );
    let out = Ctl::etcd(&eps).ok(&["version"]);
    assert!(out.contains("Cluster Version:   v3.31.0\nCluster Type:      bgp,etcd\n"), "{out}");
}

/// A config file naming etcd endpoints that do not answer.
fn unreachable(endpoint: &str, timeout: &str) -> Out {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("calicoctl.cfg");
    std::fs::write(
        &cfg,
        format!("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: {endpoint}\n  etcdTimeout: {timeout}\n"),
    )
    .expect("write config");
    with_env(&[], &["-c", cfg.to_str().unwrap_or_default(), "apply", "-f", testdata("node.yaml").to_str().unwrap_or_default()])
}

#[test]
fn an_etcd_that_is_down_is_an_error_within_the_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Nothing listens: refused at once.
    let started = Instant::now();
    let out = unreachable(&format!("unix://{}/nothing:1", tmp.path().display()), "2");
    assert_eq!(out.rc, 1, "{out}");
    assert!(out.stderr.starts_with("datastore unavailable: ") && out.stderr.contains("etcd"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // A member that accepts connections but never answers (hung): the timeout ends it.
    let sock = tmp.path().join("hung:1");
    let _listener = UnixListener::bind(&sock).expect("bind");
    let started = Instant::now();
    let out = unreachable(&format!("unix://{}", sock.display()), "1");
    let took = started.elapsed();
    assert_eq!(out.rc, 1, "{out}");
    assert!(out.stderr.contains("datastore unavailable") && out.stderr.contains("timed out"), "{out}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "took {took:?} with a 1 s etcd timeout");
    if !available("an_etcd_that_is_down_is_an_error_within_the_timeout") {
        return;
    }
    // A real cluster, killed: the store is as it was when it comes back... here it is simply gone.
    let mut etcd = Etcd::start(1);
    let ctl = Ctl::etcd(&etcd.endpoints_csv());
    ctl.ok(&["apply", "-f", testdata("node.yaml").to_str().unwrap_or_default()]);
    etcd.kill(0);
    let started = Instant::now();
    let out = ctl.run(&["get", "nodes"]);
    assert!(out.rc == 1 && out.stderr.starts_with("datastore unavailable: "), "{out}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
}
