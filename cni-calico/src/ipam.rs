//! Calling the IPAM plugin. Our own `cni-ipam` runs inside this process, on a thread of its own: one process
//! start per pod instead of two. Any other IPAM plugin (host-local, ...) is exec'd from CNI_PATH as the spec
//! says; `"exec_ipam": true` in the config execs cni-ipam too, and so does an etcd store when this binary was
//! built without the `etcd` feature (the default: the etcd client, resolver and TLS would add a third to the
//! pages every ADD maps, for a store whose round trips dwarf one more exec).
use crate::config::NetConf;
use cni_ipam::plugin::{Added, Undo};
use common::cni::{delegate, CniError, CniResult, Command, Plugin, Request};
use std::sync::mpsc;

/// The plugin type served in-process.
pub const IN_PROCESS: &str = "cni-ipam";

type Worker = std::thread::JoinHandle<Result<Option<Added>, CniError>>;

/// An IPAM call under way, alongside our own work.
pub enum Pending {
    Exec(delegate::Running),
    /// In-process: an ADD's answer arrives on `early` once the allocation is durable, while the thread
    /// still writes the store's record files and releases its lock.
    Thread { early: mpsc::Receiver<Added>, worker: Worker },
}

/// An ADD's result, and how to give back what it took if the ADD fails later.
pub struct Answer {
    pub result: CniResult,
    pub taken: Taken,
}

pub enum Taken {
    /// In-process: exactly these allocations (None: the attachment already held them, nothing was taken).
    Exactly(Option<Undo>),
    /// Exec'd: only the plugin knows; a DEL of the attachment gives back what it holds.
    ByDel,
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

/// Whether `conf`'s IPAM runs in this process.
fn in_process(conf: &NetConf, req: &Request) -> Result<bool, CniError> {
    Ok(conf.ipam_type()? == IN_PROCESS && !conf.exec_ipam && cni_ipam::plugin::can_serve(&req.config))
}

/// Starts `command` on the configured IPAM plugin.
pub fn start(conf: &NetConf, command: Command, req: &Request) -> Result<Pending, CniError> {
    let ipam_type = conf.ipam_type()?;
    if !in_process(conf, req)? {
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
        Command::Add => cni_ipam::plugin::add_early(&req, &mut |a| {
            let _ = tx.send(a.clone());
        })
        .map(Some),
        Command::Del => plugin.del(&req).map(|()| None),
        Command::Check => plugin.check(&req).map(|()| None),
        Command::Status => plugin.status(&req).map(|()| None),
        Command::Gc => plugin.gc(&req).map(|()| None),
        Command::Version => Ok(None),
    });
    let worker = thread.map_err(|e| CniError::internal(format!("starting the IPAM thread: {e}")))?;
    Ok(Pending::Thread { early, worker })
}

fn joined(worker: Worker) -> Result<Option<Added>, CniError> {
    worker.join().map_err(|_| CniError::internal("the IPAM thread panicked"))?
}

fn answer_of(added: Option<Added>) -> Answer {
    match added {
        Some(a) => Answer { result: a.result, taken: Taken::Exactly(a.undo) },
        None => Answer { result: CniResult::default(), taken: Taken::Exactly(None) },
    }
}

impl Pending {
    /// The IPAM answer (ADD) as soon as it is known, and what remains of the call.
    pub fn answer_early(self) -> Result<(Answer, Settle), CniError> {
        match self {
            Pending::Exec(running) => Ok((Answer { result: running.result()?, taken: Taken::ByDel }, Settle(None))),
            Pending::Thread { early, worker } => match early.recv() {
                Ok(added) => Ok((answer_of(Some(added)), Settle(Some(worker)))),
                // No early answer: the call failed (or was not an ADD); the thread says how.
                Err(_) => Ok((answer_of(joined(worker)?), Settle(None))),
            },
        }
    }

    /// The IPAM answer (ADD), the call complete.
    pub fn answer(self) -> Result<Answer, CniError> {
        self.answer_early().map(|(answer, _settled)| answer)
    }

    /// Success or the IPAM error (every other verb).
    pub fn wait(self) -> Result<(), CniError> {
        match self {
            Pending::Exec(running) => running.wait().map(drop),
            Pending::Thread { .. } => self.answer().map(drop),
        }
    }
}

/// Runs `command` on the IPAM plugin to completion.
pub fn call(conf: &NetConf, command: Command, req: &Request) -> Result<(), CniError> {
    start(conf, command, req)?.wait()
}

/// Gives back what a failed ADD took (`taken`), and nothing of a live attachment: in-process exactly the
/// ADD's allocations; exec'd, a DEL of the attachment, unless `live` says the attachment was already wired
/// before this ADD (its interface carries this container's mark), in which case the plugin took nothing new.
pub fn give_back(conf: &NetConf, req: &Request, taken: Taken, live: bool) {
    let given = match taken {
        Taken::Exactly(None) => return,
        Taken::Exactly(Some(undo)) => cni_ipam::plugin::undo_add(req, &undo).map(drop),
        Taken::ByDel if live => return,
        Taken::ByDel => call(conf, Command::Del, req),
    };
    if let Err(e) = given {
        tracing::error!(error = %e, "releasing the addresses of a failed ADD");
    }
}
