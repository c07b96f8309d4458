//! A long-running process of a test (BIRD, FRR's zebra and bgpd, an agent) with a guard: stopped with SIGTERM
//! (SIGKILL after a grace period) and reaped on drop, killed by `crate::clean_up_on_panic` on a panic that
//! aborts, and by the kernel when the thread that started it ends (`PR_SET_PDEATHSIG`). Its stdout and stderr
//! go to a log file.
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to exit on SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

pub struct Daemon {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
    pid: u32,
    exit: Option<ExitStatus>,
    cleanup: usize,
}

impl Daemon {
    /// Starts `cmd` (typically from `Host::command`) with stdin from /dev/null and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Daemon {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = file.try_clone().expect("dup log fd");
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        // SAFETY: one prctl between fork and exec.
        unsafe {
            cmd.pre_exec(crate::host::pdeathsig);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name} ({:?}): {e}", cmd.get_program()));
        let pid = child.id();
        let cleanup = crate::arm(Box::new(move || crate::host::kill_and_reap(pid as i32)));
        Daemon { name: name.to_string(), log: log.to_path_buf(), child: Some(child), pid, exit: None, cleanup }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its exit status, once it has exited (reaped here).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.exit = Some(status);
                    self.child = None;
                    crate::disarm(self.cleanup);
                }
            }
        }
        self.exit
    }

    pub fn running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Panics with the log's tail if the daemon has exited (for use inside a wait).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited: {status}; log:\n{}", self.name, self.log_tail(30));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if self.child.is_some() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig);
        }
    }

    /// SIGTERM, then SIGKILL after `GRACE`; reaps it. Returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + GRACE;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        self.exit
    }

    /// SIGKILL (as a crash) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            self.exit = c.wait().ok();
            crate::disarm(self.cleanup);
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
