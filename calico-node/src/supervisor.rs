//! BIRD under the agent's supervision. The agent starts `bird -f` with its own config, control socket and pid
//! file, in a session of its own (a signal to the agent's process group does not reach it), and restarts it in
//! graceful-restart recovery (`-R`: the kernel routes of the BIRD that died are kept until BGP has converged
//! again) when it dies. On SIGTERM the agent stops BIRD (the routes stay in the kernel: `persist`; peers keep
//! the node's routes for the graceful-restart time). When the agent itself is killed, BIRD keeps running and
//! keeps the routes up; the next agent adopts it (its pid file names a live `bird` whose socket answers) and
//! reconfigures it only if the config changed, so no session is reset.
use crate::birdc::Control;
use crate::settings::Settings;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// How long a starting BIRD may take to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping BIRD may take before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Bird {
    pub pid: u32,
    /// Becomes readable when the process exits.
    pidfd: OwnedFd,
    /// Whether this agent started it (else it adopted one a previous agent started).
    pub adopted: bool,
}

/// Sent when the BIRD being watched exits.
#[derive(Debug)]
pub struct BirdExited {
    pub pid: u32,
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new file descriptor or -1; nothing is borrowed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process behind `pidfd` exits or `timeout` passes; true when it exited.
fn wait_pidfd(pidfd: &OwnedFd, timeout: Option<Duration>) -> bool {
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    let mut fds = [libc::pollfd { fd: pidfd.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    // Bounded: each poll returns on exit, on the timeout, or on a signal (then it is tried again once more).
    for _ in 0..2 {
        // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if n > 0 {
            return true;
        }
        if n == 0 {
            return false;
        }
    }
    false
}

impl Bird {
    /// The BIRD a previous agent left running, if its pid file names a live `bird` whose socket answers.
    pub fn adopt(s: &Settings) -> Option<Bird> {
        let pid: u32 = std::fs::read_to_string(s.bird_pid()).ok()?.trim().parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() != "bird" {
            return None;
        }
        Control::connect(&s.bird_ctl()).ok()?;
        let pidfd = pidfd_open(pid).ok()?;
        Some(Bird { pid, pidfd, adopted: true })
    }

    /// Starts BIRD with the config already at `s.bird_conf()`; `recover` starts it in graceful-restart
    /// recovery. Returns once its control socket answers.
    pub fn start(s: &Settings, recover: bool) -> std::io::Result<(Bird, std::process::Child)> {
        let _ = std::fs::remove_file(s.bird_ctl());
        let mut cmd = Command::new(&s.bird);
        cmd.arg("-f").arg("-c").arg(s.bird_conf()).arg("-s").arg(s.bird_ctl()).arg("-P").arg(s.bird_pid());
        if recover {
            cmd.arg("-R");
        }
        cmd.stdin(Stdio::null());
        // SAFETY: setsid, sigemptyset and sigprocmask are async-signal-safe and touch nothing of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                // The agent blocks SIGTERM, SIGINT and SIGHUP in every thread (they are taken by sigwait), and
                // a blocked mask survives fork and exec: unblocked, BIRD stops on SIGTERM instead of waiting
                // for SIGKILL.
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| std::io::Error::new(e.kind(), format!("starting {}: {e}", s.bird.display())))?;
        let pidfd = pidfd_open(child.id())?;
        let deadline = Instant::now() + START_TIMEOUT;
        // Bounded by the deadline: BIRD opens its socket once it has read its config.
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!("bird exited at start ({status})")));
            }
            if Control::connect(&s.bird_ctl()).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!("bird did not open {} within {START_TIMEOUT:?}", s.bird_ctl().display())));
            }
            wait_pidfd(&pidfd, Some(Duration::from_millis(5)));
        }
        Ok((Bird { pid: child.id(), pidfd, adopted: false }, child))
    }

    /// Watches the process from a thread: reaps `child` when this agent started it, and sends `BirdExited`.
    pub fn watch(&self, child: Option<std::process::Child>, events: Sender<crate::agent::Event>) -> std::io::Result<()> {
        let pid = self.pid;
        let pidfd = self.pidfd.try_clone()?;
        std::thread::Builder::new().name("bird-watch".into()).spawn(move || {
            match child {
                Some(mut c) => {
                    let _ = c.wait();
                }
                None => {
                    // Bounded: returns when the process exits (or poll fails, which ends the watch).
                    while !wait_pidfd(&pidfd, None) {
                        if std::fs::metadata(format!("/proc/{pid}")).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = events.send(crate::agent::Event::BirdExited(BirdExited { pid }));
        })?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not gone within `STOP_TIMEOUT`.
    pub fn stop(&self) {
        // SAFETY: plain kill(2) on the pid we watch through `pidfd`.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        if !wait_pidfd(&self.pidfd, Some(STOP_TIMEOUT)) {
            // SAFETY: as above.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
            wait_pidfd(&self.pidfd, Some(STOP_TIMEOUT));
        }
    }
}

/// `bird -p -c <file>`: parse only; Err with BIRD's message.
pub fn check_config(bird: &Path, file: &Path) -> Result<(), String> {
    let out =
        Command::new(bird).arg("-p").arg("-c").arg(file).stdin(Stdio::null()).output().map_err(|e| format!("running {} -p: {e}", bird.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stderr).trim(), String::from_utf8_lossy(&out.stdout).trim()))
    }
}
