//! The old operator command lines of cni-ipam: each says in one line on stderr which calicoctl command it
//! runs, and runs it (calicoctl next to cni-ipam, as the workspace build and scripts/install.sh put it).
mod support;
use support::*;

#[test]
fn old_operator_commands_run_calicoctl_with_a_note() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let (rc, out, err) = operator(&store, &["pool", "add", "--name", "old-pool", "--cidr", "10.77.0.0/24", "--block-size", "28"]);
    assert_eq!(rc, 0, "{out} {err}");
    assert_eq!(out, "Successfully applied 1 'IPPool' resource(s)\n");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("cni-ipam pool add: deprecated; this runs `calicoctl apply -f -` on the local store "), "{err}");
    Net::new(&store, "node-1").add("c1");
    let (rc, out, err) = operator(&store, &["show", "--blocks"]);
    assert_eq!(rc, 0, "{out} {err}");
    assert!(err.contains("`calicoctl ipam show --show-blocks`"), "{err}");
    assert!(out.lines().any(|l| l.starts_with("| IP Pool") && l.contains(" 10.77.0.0/24 ") && l.contains("|     1 (0%) |")), "{out}");
    let (rc, out, _) = operator(&store, &["pool", "list"]);
    assert!(rc == 0 && out.starts_with("NAME       CIDR") && out.contains("old-pool"), "{out}");
    let (rc, out, err) = operator(&store, &["check", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("the report on stdout");
    assert_eq!((rc, report["allocations"].as_object().map(|a| a.len())), (0, Some(1)), "{err}");
    let (rc, _, err) = operator(&store, &["pool", "delete", "--name", "old-pool", "--force"]);
    assert!(rc != 0 && err.contains("--force is gone"), "{err}");
    let out = std::process::Command::new(BIN).env_clear().output().expect("run cni-ipam");
    assert!(String::from_utf8_lossy(&out.stderr).contains("calicoctl ipam show"), "usage points at calicoctl");
}
