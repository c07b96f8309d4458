//! Running helper commands with a deadline: a hung runtime fails the test instead of hanging it.
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Out {
    pub what: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "{} failed ({}):\nstdout: {}\nstderr: {}", self.what, self.code, self.stdout, self.stderr);
        self.stdout
    }

    pub fn failed(&self) -> bool {
        self.code != 0
    }
}

/// Runs `cmd` (stdin closed), killing it and failing if it takes longer than `deadline`.
pub fn run(cmd: &mut Command, deadline: Duration) -> Out {
    try_run(cmd, deadline).unwrap_or_else(|e| panic!("{e}"))
}

/// `run` for cleanup paths, which must not panic: a spawn failure or timeout is an error value.
pub fn try_run(cmd: &mut Command, deadline: Duration) -> Result<Out, String> {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawning {what}: {e}"))?;
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    // Readers on their own threads so a chatty child never blocks on a full pipe while we poll it.
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| format!("waiting for {what}: {e}"))? {
            break st;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} still running after {deadline:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Out { what, code: status.code().unwrap_or(-1), stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() })
}

/// Polls `cond` until it holds, failing with `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
