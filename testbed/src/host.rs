//! A machine of the bed: a network namespace plus private mount and UTS namespaces, held open by a holder
//! process (`sleep infinity`) made in them. A command "on the host" enters all three (`Host::command`, or
//! `nsenter -t <holder pid> -n -m -u` by hand), so it sees the host's own name, interfaces, /run, /etc and
//! /var/lib while the machine's stay untouched. The guard kills the holder, deletes the netns and the dirs.
//!
//! The host's file system, as the holder sets it up (`holder_steps`):
//! * mount propagation from the machine is one-way (`MS_SLAVE`): mounts made on the host never reach the
//!   machine, and the machine's `ip netns add`/`del` reach the host's /run/netns (a pod netns made after the
//!   host exists is usable there, and a deleted netns is not pinned by the host's copy of its mount);
//! * /etc and /var/lib are overlays of the machine's (copy on write into a tmpfs of the host: the host can
//!   write them, the machine never sees it), so mount points such as /etc/calico exist on the host without
//!   being made on the machine;
//! * /run is a fresh tmpfs holding the machine's /run/netns (so /var/run/calico is the host's own);
//! * /sys is a sysfs of the host's netns (as `ip netns exec` does; the machine's cgroup mounts are not there);
//! * each path in `binds` (e.g. /etc/calico) is a bind mount of `<dir>/fs/<path>`, a plain directory the test
//!   reads and writes from outside (`Host::path`).
//!
//! The holder and the daemons get SIGKILL when the thread that started them ends (`PR_SET_PDEATHSIG`), as the
//! etcd members do: build a bed and start its daemons on the test's own thread.
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where a host's netns files are (iproute2's).
pub const NETNS_DIR: &str = "/run/netns";

pub struct Host {
    /// The host name inside (UTS namespace), e.g. `node-1`.
    pub name: String,
    /// Network namespace, `/run/netns/<netns>` on the machine.
    pub netns: String,
    /// Everything of this host on the machine: `fs/` (the bound dirs), `log/`, mount points for the holder.
    pub dir: tempfile::TempDir,
    binds: Vec<String>,
    holder: Option<Child>,
    enter: Enter,
    cleanup: usize,
}

/// How to run a process in a host's namespaces; cheap to clone, usable after the `Host` moved.
#[derive(Clone, Debug)]
pub struct Enter {
    pub netns: String,
    pub holder: u32,
    /// Inode of the holder's mount namespace: a reused pid is refused rather than entered.
    mnt_ino: u64,
}

impl Host {
    /// Creates netns `netns` (lo up) and the holder that keeps the host's mount and UTS namespaces (host name
    /// `name`); `binds` are the host's private dirs (absolute paths on the host; /var/run means /run).
    pub fn new(netns: &str, name: &str, binds: &[&str]) -> Host {
        let dir = tempfile::Builder::new().prefix("crs-host-").tempdir().expect("host tempdir");
        let binds: Vec<String> = binds.iter().map(|b| guest_path(b)).collect();
        let cleanup = crate::arm(Box::new({
            let (netns, dir) = (netns.to_string(), dir.path().to_path_buf());
            // Until the holder runs (`start_holder` replaces this entry), there is only the netns and the dir.
            move || {
                crate::try_ip(&["netns", "del", &netns]);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }));
        crate::ip(&["netns", "add", netns]);
        crate::ip(&["-n", netns, "link", "set", "lo", "up"]);
        let mut host = Host {
            name: name.to_string(),
            netns: netns.to_string(),
            dir,
            binds,
            holder: None,
            enter: Enter { netns: netns.to_string(), holder: 0, mnt_ino: 0 },
            cleanup,
        };
        host.start_holder();
        host
    }

    fn start_holder(&mut self) {
        let root = self.dir.path().to_path_buf();
        for sub in ["fs", "log", "keep", "ovl"] {
            std::fs::create_dir_all(root.join(sub)).expect("host dirs");
        }
        for b in &self.binds {
            std::fs::create_dir_all(root.join("fs").join(b.trim_start_matches('/'))).expect("bind dir");
        }
        let steps = holder_steps(&root, &self.name, &self.binds);
        let net = File::open(Path::new(NETNS_DIR).join(&self.netns)).expect("open host netns");
        let mut c = Command::new("sleep");
        c.arg("infinity").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let described: Vec<String> = steps.iter().map(|s| format!("{s:?}")).collect();
        // SAFETY: between fork and exec the closure makes only syscalls (setns, unshare, sethostname, mount,
        // umount2, mkdir, prctl) on data prepared before the fork; it allocates nothing.
        unsafe {
            c.pre_exec(move || {
                nix::sched::setns(&net, nix::sched::CloneFlags::CLONE_NEWNET)?;
                for s in &steps {
                    s.run()?;
                }
                pdeathsig()
            });
        }
        let child = c.spawn().unwrap_or_else(|e| panic!("host {}: holder setup failed: {e}; steps: {described:#?}", self.name));
        let pid = child.id();
        let mnt_ino = std::fs::metadata(format!("/proc/{pid}/ns/mnt")).expect("holder mount ns").ino();
        self.enter = Enter { netns: self.netns.clone(), holder: pid, mnt_ino };
        self.holder = Some(child);
        crate::disarm(self.cleanup);
        self.cleanup = crate::arm(Box::new({
            let (netns, dir) = (self.netns.clone(), root);
            move || {
                kill_and_reap(pid as i32);
                crate::try_ip(&["netns", "del", &netns]);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }));
    }

    pub fn enter(&self) -> &Enter {
        &self.enter
    }

    /// The holder's pid: `nsenter -t <pid> -n -m -u` gives a shell on the host.
    pub fn holder_pid(&self) -> u32 {
        self.enter.holder
    }

    /// Inode of the host's mount namespace (to check that no process is left in it).
    pub fn mount_ns_inode(&self) -> u64 {
        self.enter.mnt_ino
    }

    /// A command that runs on the host (its netns, mount and UTS namespaces); its working directory is the
    /// host's `/` (entering a mount namespace resets it), so give absolute paths.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.enter.command(program)
    }

    /// Runs `program args` on the host; panics unless it succeeds; returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let out = self.exec_output(program, args);
        assert!(
            out.status.success(),
            "{} on {}: {args:?}: {}{}",
            program,
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn exec_output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).output().unwrap_or_else(|e| panic!("running {program} on {}: {e}", self.name))
    }

    /// `ip -n <netns> args` (no need to enter the other namespaces for netlink).
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.netns];
        a.extend_from_slice(args);
        crate::ip(&a)
    }

    /// Writes `value` to `/proc/sys/<key with dots as slashes>` of the host's netns.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")]);
    }

    /// Where a file under one of the host's private dirs is on the machine: `path("/var/lib/calico/nodename")`.
    pub fn path(&self, guest: &str) -> PathBuf {
        let guest = guest_path(guest);
        let bound = self.binds.iter().any(|b| guest == *b || guest.starts_with(&format!("{b}/")));
        assert!(bound, "{guest} is not under a private dir of host {} ({:?})", self.name, self.binds);
        self.dir.path().join("fs").join(guest.trim_start_matches('/'))
    }

    /// The machine path of this host's log dir (daemon logs).
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Starts `cmd` (from `command`) as a daemon with a guard; stdout and stderr go to `log/<name>.log`.
    pub fn spawn(&self, name: &str, cmd: Command) -> crate::daemon::Daemon {
        crate::daemon::Daemon::spawn(name, cmd, &self.log_dir().join(format!("{name}.log")))
    }

    /// Runs `f` while the monitor `args` (`ip monitor route neigh`, `bridge monitor fdb`) runs in the host's
    /// namespaces; returns `f`'s result and what the monitor printed meanwhile.
    pub fn monitored<T>(&self, args: &[&str], f: impl FnOnce() -> T) -> (T, String) {
        let log = self.log_dir().join(format!("monitor-{}.log", args.join("-")));
        let file = File::create(&log).expect("monitor log");
        let mut c = self.command(args[0]);
        c.args(&args[1..]).stdout(file).stderr(Stdio::null());
        let mut child = c.spawn().expect("spawn monitor");
        let out = f();
        assert!(child.try_wait().expect("monitor status").is_none(), "{args:?} ran the whole time");
        let _ = child.kill();
        let _ = child.wait();
        (out, std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// `ip route show <prefix>` on the host (IPv6 when the prefix has a colon), trimmed.
    pub fn route(&self, prefix: &str) -> String {
        let fam = if prefix.contains(':') { "-6" } else { "-4" };
        self.ip(&[fam, "route", "show", prefix]).trim().to_string()
    }

    /// Waits until the route to exactly `prefix` contains `expect` (e.g. "via 10.250.0.2 dev eth0 proto bird");
    /// returns the route line and how long it took.
    pub fn wait_route(&self, prefix: &str, expect: &str, timeout: Duration) -> (String, Duration) {
        let start = Instant::now();
        let line = crate::wait_for(&format!("route {prefix} with {expect:?} on {}", self.name), timeout, || {
            let r = self.route(prefix);
            if r.lines().any(|l| l.contains(expect)) {
                Ok(r)
            } else {
                Err(format!("route now: {r:?}"))
            }
        });
        (line, start.elapsed())
    }

    /// Waits until the host has no route to exactly `prefix`.
    pub fn wait_no_route(&self, prefix: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        crate::wait_for(&format!("no route {prefix} on {}", self.name), timeout, || match self.route(prefix) {
            r if r.is_empty() => Ok(()),
            r => Err(format!("route now: {r:?}")),
        });
        start.elapsed()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut h) = self.holder.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        crate::try_ip(&["netns", "del", &self.netns]);
        crate::disarm(self.cleanup);
        // The TempDir goes after this; the overlays and binds went with the mount namespace.
    }
}

impl Enter {
    /// See `Host::command`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let net = File::open(Path::new(NETNS_DIR).join(&self.netns)).unwrap_or_else(|e| panic!("netns {}: {e}", self.netns));
        let mnt = File::open(format!("/proc/{}/ns/mnt", self.holder)).unwrap_or_else(|e| panic!("host {} is gone: {e}", self.netns));
        let uts = File::open(format!("/proc/{}/ns/uts", self.holder)).unwrap_or_else(|e| panic!("host {} is gone: {e}", self.netns));
        assert_eq!(mnt.metadata().map(|m| m.ino()).ok(), Some(self.mnt_ino), "host {}: its holder is gone", self.netns);
        let mut c = Command::new(program);
        // SAFETY: setns on descriptors opened before the fork; nothing else runs between fork and exec.
        unsafe {
            c.pre_exec(move || {
                use nix::sched::{setns, CloneFlags};
                setns(&net, CloneFlags::CLONE_NEWNET)?;
                setns(&mnt, CloneFlags::CLONE_NEWNS)?;
                setns(&uts, CloneFlags::CLONE_NEWUTS)?;
                Ok(())
            });
        }
        c
    }
}

/// `/var/run/x` is `/run/x` (a symlink on Debian; the host's /run is its own tmpfs).
fn guest_path(p: &str) -> String {
    let p = p.trim_end_matches('/');
    match p.strip_prefix("/var/run") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("/run{rest}"),
        _ => p.to_string(),
    }
}

/// The overlaid trees: a host can write them and make mount points in them without touching the machine's.
const OVERLAID: [&str; 2] = ["/etc", "/var/lib"];

/// One syscall of the holder's setup, its arguments prepared before the fork.
#[derive(Debug)]
enum Step {
    Unshare,
    Hostname(CString),
    Mount { src: Option<CString>, target: CString, fstype: Option<CString>, flags: nix::libc::c_ulong, data: Option<CString> },
    Umount(CString),
    Mkdir(CString),
}

fn cs(s: impl AsRef<OsStr>) -> CString {
    CString::new(s.as_ref().as_bytes()).expect("path without NUL")
}

/// The host's file system (see the module doc), as mount steps for the holder; `root` is the host's dir.
fn holder_steps(root: &Path, name: &str, binds: &[String]) -> Vec<Step> {
    use nix::libc::{MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REC, MS_SLAVE};
    let mount = |src: Option<&str>, target: &str, fstype: Option<&str>, flags, data: Option<String>| Step::Mount {
        src: src.map(cs),
        target: cs(target),
        fstype: fstype.map(cs),
        flags,
        data: data.map(cs),
    };
    let mut steps = vec![Step::Unshare, Step::Hostname(cs(name)), mount(None, "/", None, MS_REC | MS_SLAVE, None)];
    steps.push(mount(Some("sysfs"), "/sys", Some("sysfs"), MS_NOSUID | MS_NODEV | MS_NOEXEC, None));
    // The overlays' upper and work dirs live in a tmpfs of the host's own (an upper dir cannot be on an
    // overlayfs, which the machine's /tmp may be), with the binds' mount points made in them.
    let ovl = root.join("ovl").display().to_string();
    steps.push(mount(Some("tmpfs"), &ovl, Some("tmpfs"), MS_NOSUID | MS_NODEV, Some("mode=700".into())));
    for (i, tree) in OVERLAID.iter().enumerate() {
        let (upper, work) = (format!("{ovl}/{i}/upper"), format!("{ovl}/{i}/work"));
        let mut dirs = vec![format!("{ovl}/{i}"), upper.clone(), work.clone()];
        for b in binds.iter().filter_map(|b| b.strip_prefix(&format!("{tree}/"))) {
            dirs.extend(components(&upper, b));
        }
        steps.extend(dirs.iter().map(|d| Step::Mkdir(cs(d))));
        steps.push(mount(Some("overlay"), tree, Some("overlay"), 0, Some(format!("lowerdir={tree},upperdir={upper},workdir={work}"))));
    }
    // /run: a tmpfs over it would hide the machine's /run/netns; keep that mount aside and move it back in.
    let keep = root.join("keep").display().to_string();
    steps.push(mount(Some(NETNS_DIR), &keep, None, MS_BIND | MS_REC, None));
    steps.push(Step::Umount(cs(NETNS_DIR)));
    steps.push(mount(Some("tmpfs"), "/run", Some("tmpfs"), MS_NOSUID | MS_NODEV, Some("mode=755".into())));
    let mut made = vec!["/run/netns".to_string(), "/run/lock".to_string()];
    for b in binds.iter().filter_map(|b| b.strip_prefix("/run/")) {
        made.extend(components("/run", b));
    }
    steps.extend(made.iter().map(|d| Step::Mkdir(cs(d))));
    steps.push(mount(Some(&keep), NETNS_DIR, None, MS_MOVE, None));
    for b in binds {
        let under_made = b.starts_with("/run/") || OVERLAID.iter().any(|t| b.starts_with(&format!("{t}/")));
        assert!(under_made || Path::new(b).is_dir(), "{b}: no mount point for it on the machine and not under /run, /etc or /var/lib");
        let src = root.join("fs").join(b.trim_start_matches('/')).display().to_string();
        steps.push(mount(Some(&src), b, None, MS_BIND, None));
    }
    steps
}

/// `base/a`, `base/a/b`, ... for `rel` = `a/b`: the dirs to make, parents first.
fn components(base: &str, rel: &str) -> Vec<String> {
    let mut at = base.to_string();
    rel.split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            at = format!("{at}/{p}");
            at.clone()
        })
        .collect()
}

impl Step {
    fn run(&self) -> std::io::Result<()> {
        use nix::libc;
        let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: every pointer is a NUL-terminated string owned by `self` (or null where the call allows it).
        let r = unsafe {
            match self {
                Step::Unshare => libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS),
                Step::Hostname(n) => libc::sethostname(n.as_ptr(), n.as_bytes().len()),
                Step::Mount { src, target, fstype, flags, data } => {
                    libc::mount(ptr(src), target.as_ptr(), ptr(fstype), *flags, ptr(data) as *const libc::c_void)
                }
                Step::Umount(t) => libc::umount2(t.as_ptr(), libc::MNT_DETACH),
                Step::Mkdir(d) => match libc::mkdir(d.as_ptr(), 0o755) {
                    -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) => 0,
                    r => r,
                },
            }
        };
        if r == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// SIGKILL when the spawning thread ends (the signal survives exec).
pub(crate) fn pdeathsig() -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
}

pub(crate) fn kill_and_reap(pid: i32) {
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_run_is_run() {
        assert_eq!(guest_path("/var/run/calico/"), "/run/calico");
        assert_eq!(guest_path("/var/run"), "/run");
        assert_eq!(guest_path("/var/runner"), "/var/runner");
        assert_eq!(guest_path("/etc/calico"), "/etc/calico");
    }

    #[test]
    fn components_come_parents_first() {
        assert_eq!(components("/run", "frr/x"), ["/run/frr", "/run/frr/x"]);
        assert_eq!(components("/u", "calico"), ["/u/calico"]);
    }
}
