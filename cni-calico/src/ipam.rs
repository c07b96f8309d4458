//! Calling the IPAM plugin. Our own `cni-ipam` runs inside this process, on a thread of its own: one process
//! start per pod instead of two. Any other IPAM plugin (host-local, ...) is exec'd from CNI_PATH as the spec
//! says; `"exec_ipam": true` in the config execs cni-ipam too, and so does an etcd store when this binary was
//! built without the `etcd` feature (the default: the etcd client, resolver and TLS would add a third to the
//! pages every ADD maps, for a store whose round trips dwarf one more exec).
use crate::config::NetConf;
use common::cni::{delegate, CniError, CniResult, Command, Plugin, Request};
use std::sync::mpsc;

/// The plugin type served in-process.
pub const IN_PROCESS: &str = "cni-ipam";

type Worker = std::thread::JoinHandle<Result<CniResult, CniError>>;

/// An IPAM call under way, alongside our own work.
pub enum Pending {
    Exec(delegate::Running),
    /// In-process: an ADD's result arrives on `early` once the allocation is durable, while the thread
    /// still writes the store's record files and releases its lock.
    Thread { early: mpsc::Receiver<CniResult>, worker: Worker },
}

/// The rest of an in-process IPAM call after its answer: waited for when dropped (before the process
/// exits, so the store session ends cleanly; a late failure there only delays work the next session does).
pub struct Settle(Option<Worker>);

impl Drop for Settle {
    fn drop(&mut self) {
        match self.0.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => tracing::warn!(error = %e, "IPAM store session ended with an error after its answer"),
            Some(Err(_)) => tracing::warn!("the IPAM thread panicked after its answer"),
            _ => {}
        }
    }
}

/// Starts `command` on the configured IPAM plugin.
pub fn start(conf: &NetConf, command: Command, req: &Request) -> Result<Pending, CniError> {
    let ipam_type = conf.ipam_type()?;
    if ipam_type != IN_PROCESS || conf.exec_ipam || !cni_ipam::plugin::can_serve(&req.config) {
        return delegate::ipam_start(ipam_type, command, &req.env, &req.stdin).map(Pending::Exec);
    }
    // Still looked up on CNI_PATH, so an install without cni-ipam fails the same way whichever way it runs.
    if command != Command::Status {
        delegate::find(ipam_type, &req.env.path)?;
    }
    let req = req.clone();
    let plugin = cni_ipam::plugin::IpamPlugin;
    let (tx, early) = mpsc::channel();
    let thread = std::thread::Builder::new().name("ipam".into()).spawn(move || match command {
        Command::Add => cni_ipam::plugin::add_early(&req, &mut |r| {
            let _ = tx.send(r.clone());
        }),
        Command::Del => plugin.del(&req).map(|()| CniResult::default()),
        Command::Check => plugin.check(&req).map(|()| CniResult::default()),
        Command::Status => plugin.status(&req).map(|()| CniResult::default()),
        Command::Gc => plugin.gc(&req).map(|()| CniResult::default()),
        Command::Version => Ok(CniResult::default()),
    });
    let worker = thread.map_err(|e| CniError::internal(format!("starting the IPAM thread: {e}")))?;
    Ok(Pending::Thread { early, worker })
}

fn joined(worker: Worker) -> Result<CniResult, CniError> {
    worker.join().map_err(|_| CniError::internal("the IPAM thread panicked"))?
}

impl Pending {
    /// The IPAM result (ADD) as soon as it is known, and what remains of the call.
    pub fn result_early(self) -> Result<(CniResult, Settle), CniError> {
        match self {
            Pending::Exec(running) => Ok((running.result()?, Settle(None))),
            Pending::Thread { early, worker } => match early.recv() {
                Ok(result) => Ok((result, Settle(Some(worker)))),
                // No early answer: the call failed (or was not an ADD); the thread says how.
                Err(_) => Ok((joined(worker)?, Settle(None))),
            },
        }
    }

    /// The IPAM result (ADD), the call complete.
    pub fn result(self) -> Result<CniResult, CniError> {
        self.result_early().map(|(result, _settled)| result)
    }

    /// Success or the IPAM error (every other verb).
    pub fn wait(self) -> Result<(), CniError> {
        match self {
            Pending::Exec(running) => running.wait().map(drop),
            Pending::Thread { .. } => self.result().map(drop),
        }
    }
}

/// Runs `command` on the IPAM plugin to completion.
pub fn call(conf: &NetConf, command: Command, req: &Request) -> Result<(), CniError> {
    start(conf, command, req)?.wait()
}
