//! scripts/install.sh into temp dirs, with the debug binaries (--no-build --from): installs both plugins and
//! calicoctl (linked onto a PATH dir),
//! writes the conflist only when asked, leaves an identical one alone, refuses to replace a different one
//! before changing anything, and replaces it with --force keeping a backup. Needs no root.
use e2e::proc::{self, Out};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn install(bin: &Path, netd: &Path, extra: &[&str]) -> Out {
    let mut c = Command::new("bash");
    c.arg(e2e::e2e_dir().join("../scripts/install.sh"))
        .args(["--no-build", "--from"])
        .arg(testbed::target_dir())
        .arg("--bin-dir")
        .arg(bin)
        .arg("--path-dir")
        .arg(bin.with_file_name("path"))
        .arg("--conf-dir")
        .arg(netd)
        .args(extra);
    proc::run(&mut c, Duration::from_secs(60))
}

#[test]
fn install_script_installs_plugins_and_never_silently_overwrites_a_config() {
    e2e::built("cni-calico");
    e2e::built("cni-ipam");
    e2e::built("calicoctl");
    let dir = tempfile::tempdir().expect("tempdir");
    let (bin, netd) = (dir.path().join("bin"), dir.path().join("net.d"));
    let conf = netd.join("10-calico-local.conflist");
    let example = std::fs::read_to_string(e2e::testdata("calico-local.conflist")).expect("example");

    // Plugins only: no config unless asked.
    let out = install(&bin, &netd, &[]).ok();
    for p in ["cni-calico", "cni-ipam", "calicoctl"] {
        let meta = std::fs::metadata(bin.join(p)).unwrap_or_else(|e| panic!("{p} not installed: {e}"));
        assert!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0, "{p} not executable");
    }
    assert!(out.contains("cni-calico 0.1.0"), "prints the installed version: {out}");
    let on_path = dir.path().join("path/calicoctl");
    assert_eq!(std::fs::read_link(&on_path).ok(), Some(bin.join("calicoctl")), "calicoctl linked onto PATH: {out}");
    assert!(!conf.exists(), "config written without --write-conf");

    // --write-conf writes the example and tells how to create its pool; again, it is left as it is.
    let out = install(&bin, &netd, &["--write-conf"]).ok();
    assert_eq!(std::fs::read_to_string(&conf).expect("conf written"), example);
    assert!(out.contains("name: pool-0\\nspec:\\n  cidr: 10.244.0.0/16\\n' | DATASTORE_TYPE=local") && out.contains("calicoctl apply -f -"), "{out}");
    let out = install(&bin, &netd, &["--write-conf"]).ok();
    assert!(out.contains("already up to date"), "{out}");

    // A user's edit is never overwritten silently: refused before anything changes.
    let edited = example.replace("\"mtu\": 1500", "\"mtu\": 1400");
    std::fs::write(&conf, &edited).expect("edit");
    std::fs::remove_file(bin.join("cni-ipam")).expect("rm");
    let refused = install(&bin, &netd, &["--write-conf"]);
    assert!(refused.failed(), "overwrote a changed config: {}", refused.stdout);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(std::fs::read_to_string(&conf).expect("conf"), edited);
    assert!(!bin.join("cni-ipam").exists(), "a refused run still installed binaries");

    // --force replaces it and keeps the user's version next to it (as a name runtimes do not load).
    install(&bin, &netd, &["--write-conf", "--force"]).ok();
    assert_eq!(std::fs::read_to_string(&conf).expect("conf"), example);
    let backups: Vec<String> = std::fs::read_dir(&netd)
        .expect("net.d")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10-calico-local.conflist.bak-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(netd.join(&backups[0])).expect("backup"), edited);

    // Another example, dry run: nothing is written.
    let dual = install(&bin, &netd, &["--write-conf", "--conf", &e2e::testdata("calico-dual-stack.conflist").to_string_lossy(), "--dry-run"]).ok();
    assert!(dual.contains("would run"), "{dual}");
    assert!(!netd.join("10-calico-dual-stack.conflist").exists());
}

/// Every example conflist is a valid list our plugin config parser would accept the shape of.
#[test]
fn example_conflists_are_valid() {
    for name in ["calico-local.conflist", "calico-dual-stack.conflist", "calico-portmap.conflist", "calico-etcd.conflist"] {
        let v = e2e::read_json(&e2e::testdata(name));
        assert_eq!(v["cniVersion"], "1.0.0", "{name}: Debian's libcni 1.1 cannot parse 1.1.0 results");
        assert!(v["name"].as_str().is_some_and(|n| !n.is_empty()), "{name}");
        assert_eq!(v["plugins"][0]["type"], "cni-calico", "{name}");
        assert_eq!(v["plugins"][0]["ipam"]["type"], "cni-ipam", "{name}");
    }
}
