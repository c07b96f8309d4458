//! End-to-end tests with real container runtimes (containerd + runc, podman, a libcni client): the harness
//! they share. A test builds a node netns (testbed), a private mount namespace in which the machine's CNI
//! dirs are temp dirs, starts its daemons there and records every plugin call; all of it is undone on drop.
//! The machine's root network namespace is never touched.
pub mod bed;
pub mod daemon;
pub mod ipam;
pub mod mountns;
pub mod proc;
pub mod recorder;

pub use testbed;

use std::fs::File;
use std::path::{Path, PathBuf};

/// This crate's directory (scripts, Go sources).
pub fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn script(name: &str) -> PathBuf {
    e2e_dir().join("scripts").join(name)
}

/// A file of the repository's `testdata/`.
pub fn testdata(name: &str) -> PathBuf {
    e2e_dir().join("..").join("testdata").join(name)
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A workspace binary. `cargo test -p e2e` alone does not build other packages' binaries, so the first call
/// runs `cargo build` for the plugins (a no-op after scripts/test.sh's build): the tests never run stale
/// plugins. E2E_NO_BUILD=1 skips that and uses what is in the target dir.
pub fn built(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        if std::env::var_os("E2E_NO_BUILD").is_some() || std::env::var("CRS_PROFILE").is_ok_and(|p| p != "debug") {
            return;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut c = std::process::Command::new(cargo);
        c.args(["build", "--quiet", "-p", "cni-calico", "-p", "cni-ipam", "-p", "calicoctl", "--bins"]).current_dir(e2e_dir());
        let out = proc::run(&mut c, std::time::Duration::from_secs(900));
        assert!(!out.failed(), "building the plugins failed:\n{}", out.stderr);
    });
    let p = testbed::target_dir().join(name);
    assert!(p.exists(), "{} missing: run `cargo build --workspace` first (scripts/test.sh does)", p.display());
    p
}

/// True when `tool` is on PATH. Outside CI a missing tool skips the test with a message; in CI, where
/// scripts/deps.sh --all installs everything, it is a failure.
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: {missing:?} not installed and CI must run it (scripts/deps.sh --all)");
    eprintln!("SKIP {test}: {missing:?} not installed (bash scripts/deps.sh --all)");
    false
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]).any(|d| d.join(tool).is_file())
}

/// Held while a runtime test runs. The runtime tests share machine-wide things (the /var/lib/cni mount point,
/// cgroup trees, CPU), so they run one at a time, across test binaries and concurrent `cargo test`s too:
/// an flock on this crate's directory, which needs no lock file to clean up.
pub struct Exclusive {
    _lock: nix::fcntl::Flock<File>,
}

pub fn exclusive() -> Exclusive {
    let dir = File::open(e2e_dir()).expect("open e2e dir");
    let lock = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).expect("flock e2e dir");
    Exclusive { _lock: lock }
}

/// Removes the (empty) cgroup directories runc/conmon created under `/sys/fs/cgroup/<controller>/<parent>`
/// for this test's containers, deepest first. A cgroup that still has processes stays (rmdir fails).
pub fn remove_cgroup_tree(parent: &str) {
    fn rmdir_tree(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for ctl in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let p = ctl.path().join(parent.trim_start_matches('/'));
        if p.is_dir() {
            rmdir_tree(&p);
        }
    }
}
