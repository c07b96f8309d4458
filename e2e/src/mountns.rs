//! A private mount namespace held open by a child process, in which the machine's CNI directories
//! (/etc/cni/net.d, /usr/lib/cni, /opt/cni/bin, /var/lib/cni) are bind mounts of a test's temp dirs.
//! Runtimes started inside it see only the test's config and plugins; the machine's stay untouched.
use crate::proc::{self, Out};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct MountNs {
    holder: Child,
    /// Mount points we had to create on the machine, removed again on drop.
    created: Vec<PathBuf>,
}

impl Default for MountNs {
    fn default() -> MountNs {
        MountNs::new()
    }
}

impl MountNs {
    pub fn new() -> MountNs {
        // `cat` holds the namespace until we close its stdin (or die): nothing outlives the test.
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", "echo ready; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        // The namespace exists once the shell runs: before that /proc/<pid>/ns/mnt is still ours.
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("holder stdout")).read_line(&mut line).expect("holder ready");
        assert_eq!(line.trim(), "ready", "unshare --mount failed");
        MountNs { holder, created: Vec::new() }
    }

    pub fn ns_path(&self) -> String {
        format!("/proc/{}/ns/mnt", self.holder.id())
    }

    /// `nsenter` into this mount namespace (and `netns` if given) to run `program`.
    pub fn command(&self, netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount={}", self.ns_path()));
        if let Some(n) = netns {
            // nsenter, not `ip netns exec`: the latter remounts /sys and runc then finds no cgroup mounts.
            c.arg(format!("--net=/run/netns/{n}"));
        }
        c.arg("--").arg(program);
        c
    }

    pub fn run(&self, netns: Option<&str>, program: &str, args: &[&str], deadline: Duration) -> Out {
        proc::run(self.command(netns, program).args(args), deadline)
    }

    /// Bind-mounts `src` over `dst` inside the namespace; `dst` is created (and later removed) if missing.
    pub fn bind(&mut self, src: &Path, dst: &Path) {
        if !dst.exists() {
            let mut top = dst.to_path_buf();
            while let Some(parent) = top.parent().filter(|p| !p.exists()) {
                top = parent.to_path_buf();
            }
            std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("creating mount point {}: {e}", dst.display()));
            self.created.push(top);
        }
        let (s, d) = (src.to_string_lossy(), dst.to_string_lossy());
        // -n: no libmount utab entry (it would create /run/mount on the machine).
        self.run(None, "mount", &["-n", "--bind", &s, &d], Duration::from_secs(10)).ok();
    }

    /// Mounts an empty tmpfs over `dst` inside the namespace (e.g. /dev/shm, where podman keeps its locks).
    pub fn tmpfs(&mut self, dst: &Path) {
        self.run(None, "mount", &["-n", "-t", "tmpfs", "-o", "mode=1777,size=64m", "e2e", &dst.to_string_lossy()], Duration::from_secs(10)).ok();
    }
}

impl MountNs {
    /// Processes other than the holder still in this namespace: daemons or shims a failed test left behind.
    pub fn stragglers(&self) -> Vec<i32> {
        let Ok(me) = std::fs::read_link(self.ns_path()) else { return Vec::new() };
        let holder = self.holder.id() as i32;
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| pid != holder && std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l == me))
            .collect()
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        // Everything in this namespace was started by this test (through `command`): kill what is left.
        for pid in self.stragglers() {
            eprintln!("e2e: killing leftover process {pid} in the test's mount namespace");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        drop(self.holder.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.holder.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        // Only empty dirs go: remove_dir refuses anything someone has put files in meanwhile.
        for d in self.created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}
