//! A throw-away etcd (Debian's etcd-server) for tests and the bench: one or three members whose client and
//! peer URLs are unix sockets in a temp dir, each member in a fresh network namespace of its own (`unshare -n`),
//! so nothing listens on the machine's interfaces and every node netns can reach the sockets. The guard kills
//! the members and removes the data dir when dropped, also when the test fails; members also die with the
//! process that started them (parent-death signal), and with `crate::clean_up_on_panic` on a panic that aborts.
use datastore::store::etcd::TlsFiles;
use datastore::store::{EtcdOptions, EtcdStore, Key};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";

pub fn installed() -> bool {
    Path::new(ETCD).exists()
}

/// True when etcd is installed and we are root (each member runs in a network namespace of its own); in CI
/// either missing is a failure (scripts/deps.sh --all installs etcd-server).
pub fn available(test: &str) -> bool {
    if !crate::root_or_skip(test) {
        return false;
    }
    if installed() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test} needs etcd-server (scripts/deps.sh --all)");
    eprintln!("SKIP {test}: {ETCD} not installed (scripts/deps.sh --all)");
    false
}

pub struct Etcd {
    pub dir: tempfile::TempDir,
    members: Vec<Option<Child>>,
    tls: bool,
    /// Server certificate, key and CA, for members started again.
    certs: Option<(PathBuf, PathBuf, PathBuf)>,
    /// This guard's entry in the panic-time cleanup (see `crate::clean_up_on_panic`).
    cleanup: Option<usize>,
}

/// CA, server and client certificates made with the openssl CLI.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path) -> Certs {
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=calico-rs test CA"]);
        run(&a);
        // The server certificate also needs clientAuth: etcd's JSON gateway dials its own gRPC port with it.
        for (who, ext) in [
            ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(dir.join(format!("{who}.ext")), ext).expect("write ext");
            let mut a = vec!["req"];
            a.extend(ec);
            let (key, csr, crt, extf, subj) =
                (format!("{who}.key"), format!("{who}.csr"), format!("{who}.crt"), format!("{who}.ext"), format!("/CN={who}"));
            a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            run(&a);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extf,
            ]);
        }
        Certs {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }

    pub fn client_files(&self) -> TlsFiles {
        TlsFiles { ca: Some(self.ca.clone()), cert: Some(self.client_cert.clone()), key: Some(self.client_key.clone()) }
    }
}

impl Etcd {
    pub fn start(members: usize) -> Etcd {
        Etcd::start_with(members, None)
    }

    /// Starts `members` members (client TLS with client-cert auth when `certs` is given) and waits until the
    /// cluster serves reads.
    pub fn start_with(members: usize, certs: Option<&Certs>) -> Etcd {
        let dir = tempfile::tempdir().expect("etcd tempdir");
        let mut etcd = Etcd { dir, members: Vec::new(), tls: certs.is_some(), certs: None, cleanup: None };
        etcd.certs = certs.map(|c| (c.server_cert.clone(), c.server_key.clone(), c.ca.clone()));
        for i in 0..members {
            let child = etcd.spawn(i, members);
            etcd.members.push(Some(child));
            etcd.arm_cleanup();
        }
        etcd.wait_ready(certs);
        etcd
    }

    /// Starts member `i` of `count` on its data dir (new, or the one it had before it was killed).
    fn spawn(&self, i: usize, count: usize) -> Child {
        let cluster: Vec<String> = (0..count).map(|m| format!("m{m}=unix://p{m}:1")).collect();
        let scheme = if self.tls { "unixs" } else { "unix" };
        let mut c = Command::new("unshare");
        c.current_dir(self.dir.path())
            .arg("-n")
            .arg(ETCD)
            .args(["--name", &format!("m{i}"), "--data-dir", &format!("data{i}")])
            .args(["--listen-client-urls", &format!("{scheme}://c{i}:1"), "--advertise-client-urls", &format!("{scheme}://c{i}:1")])
            .args(["--listen-peer-urls", &format!("unix://p{i}:1"), "--initial-advertise-peer-urls", &format!("unix://p{i}:1")])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "calico-rs-test", "--logger", "zap", "--log-outputs", &format!("m{i}.log")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure only makes one async-signal-safe syscall (prctl) between fork and exec.
        // The signal survives unshare's exec of etcd: a bench killed by Ctrl-C takes its etcd with it.
        unsafe {
            c.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from));
        }
        if let Some((cert, key, ca)) = &self.certs {
            c.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
            c.arg("--client-cert-auth").arg("--trusted-ca-file").arg(ca);
        }
        c.spawn().expect("start etcd")
    }

    /// Starts a killed member again on its data dir (it rejoins the cluster and catches up). Returns at once:
    /// callers wait for what they need (a read served through it).
    pub fn restart(&mut self, member: usize) {
        assert!(self.members[member].is_none(), "member {member} is running");
        // A killed member leaves its unix sockets behind, and etcd will not bind over them.
        for sock in [format!("c{member}:1"), format!("p{member}:1")] {
            let _ = std::fs::remove_file(self.dir.path().join(sock));
        }
        let child = self.spawn(member, self.members.len());
        self.members[member] = Some(child);
        self.arm_cleanup();
    }

    fn wait_ready(&mut self, certs: Option<&Certs>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut opts = self.options();
        opts.timeout = Duration::from_secs(2);
        if let Some(c) = certs {
            opts.tls = c.client_files();
        }
        for i in 0.. {
            for m in 0..self.members.len() {
                if let Some(Ok(Some(status))) = self.members[m].as_mut().map(|c| c.try_wait()) {
                    panic!("etcd member {m} exited: {status}; log: {}", self.log(m));
                }
            }
            let sockets = (0..self.members.len()).all(|m| self.dir.path().join(format!("c{m}:1")).exists());
            if sockets {
                let store = EtcdStore::open(&opts).expect("etcd options");
                let ready = datastore::store::Datastore::lock(&store).is_ok_and(|s| s.get(&Key::IpamConfig).is_ok());
                if ready {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "etcd not ready after 30 s (try {i}); log: {}", self.log(0));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self, member: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join(format!("m{member}.log"))).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }

    /// Client URL of each member.
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.tls { "unixs" } else { "unix" };
        (0..self.members.len()).map(|i| format!("{scheme}://{}/c{i}:1", self.dir.path().display())).collect()
    }

    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    pub fn options(&self) -> EtcdOptions {
        EtcdOptions::new(&self.endpoints_csv())
    }

    pub fn store(&self) -> EtcdStore {
        EtcdStore::open(&self.options()).expect("open etcd store")
    }

    /// SIGKILLs one member (as a crashed host) and reaps it.
    pub fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.members[member].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.arm_cleanup();
    }

    /// (Re)registers what a panic must undo: the live members' pids (never a reaped one, whose pid may be
    /// reused) and the data dir.
    fn arm_cleanup(&mut self) {
        if let Some(id) = self.cleanup.take() {
            crate::disarm(id);
        }
        let pids: Vec<i32> = self.members.iter().flatten().map(|c| c.id() as i32).collect();
        let dir = self.dir.path().to_path_buf();
        self.cleanup = Some(crate::arm(Box::new(move || {
            for &pid in &pids {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            let _ = std::fs::remove_dir_all(&dir);
        })));
    }

    /// CPU time (user + system) and peak RSS (KiB) of a live member so far, from /proc.
    pub fn usage(&self, member: usize) -> Option<(Duration, i64)> {
        let pid = self.members.get(member)?.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th of the line.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??.max(1) as u64;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some((Duration::from_millis(ticks * 1000 / hz), hwm))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in 0..self.members.len() {
            self.kill(m);
        }
        if let Some(id) = self.cleanup.take() {
            crate::disarm(id);
        }
        // The TempDir removes the data dirs and sockets after this.
    }
}

impl Etcd {
    /// Compacts the history up to `revision` (as an operator's or etcd's auto-compaction would): reads and
    /// watches from before it fail. Through member `member`.
    pub fn compact(&self, member: usize, revision: u64) {
        let sock = self.dir.path().join(format!("c{member}:1"));
        let body = format!(r#"{{"revision":"{revision}","physical":true}}"#);
        let out = Command::new("curl")
            .args(["-s", "-m", "5", "--unix-socket"])
            .arg(&sock)
            .args(["-d", &body, "http://localhost/v3/kv/compaction"])
            .output()
            .expect("run curl");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert!(v["header"].is_object(), "compaction to {revision}: {}", String::from_utf8_lossy(&out.stdout));
    }

    /// The member that currently leads (from each member's status), if one answers.
    pub fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.members[i].is_none() {
                continue;
            }
            let sock = self.dir.path().join(format!("c{i}:1"));
            let out = Command::new("curl")
                .args(["-s", "-m", "2", "--unix-socket"])
                .arg(&sock)
                .args(["-d", "{}", "http://localhost/v3/maintenance/status"])
                .output()
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            if v["leader"].is_string() && v["leader"] == v["header"]["member_id"] {
                return Some(i);
            }
        }
        None
    }
}
