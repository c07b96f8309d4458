//! cni-ipam inside another plugin's process (cni-calico runs it so: one process start per pod instead of
//! two). One entry point: `spawn` says whether this build can serve the config ("exec me" when it cannot, e.g.
//! an etcd store in a build without the `etcd` feature), runs the verb on a thread of its own, and hands an
//! ADD's answer over as soon as the allocation is durable, while the thread finishes the store session.
use crate::plugin::{add_early, can_serve, Added, IpamPlugin};
use common::cni::{CniError, Command, Plugin, Request};
use std::sync::mpsc;
use std::thread::JoinHandle;

pub use crate::plugin::{undo_add, Undo};

type Worker = JoinHandle<Result<Option<Added>, CniError>>;

/// A verb running on the IPAM thread.
pub struct Call {
    early: mpsc::Receiver<Added>,
    worker: Worker,
}

/// What remains of a call after its answer: waited for when dropped (before the process exits, so the store
/// session ends cleanly; a late failure there only delays work the next session does).
pub struct Rest(Option<Worker>);

impl Drop for Rest {
    fn drop(&mut self) {
        match self.0.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => tracing::warn!(error = %e, "IPAM store session ended with an error after its answer"),
            Some(Err(_)) => tracing::warn!("the IPAM thread panicked after its answer"),
            _ => {}
        }
    }
}

/// Starts `command` for `req` on a thread, or `None` when this build cannot serve `req`'s config and the
/// caller should exec the cni-ipam binary instead.
pub fn spawn(command: Command, req: &Request) -> Option<Result<Call, CniError>> {
    if !can_serve(&req.config) {
        return None;
    }
    let req = req.clone();
    let (tx, early) = mpsc::channel();
    let thread = std::thread::Builder::new().name("ipam".into()).spawn(move || {
        let plugin = IpamPlugin;
        match command {
            Command::Add => add_early(&req, &mut |a| {
                let _ = tx.send(a.clone());
            })
            .map(Some),
            Command::Del => plugin.del(&req).map(|()| None),
            Command::Check => plugin.check(&req).map(|()| None),
            Command::Status => plugin.status(&req).map(|()| None),
            Command::Gc => plugin.gc(&req).map(|()| None),
            Command::Version => Ok(None),
        }
    });
    Some(thread.map(|worker| Call { early, worker }).map_err(|e| CniError::internal(format!("starting the IPAM thread: {e}"))))
}

fn joined(worker: Worker) -> Result<Option<Added>, CniError> {
    worker.join().map_err(|_| CniError::internal("the IPAM thread panicked"))?
}

impl Call {
    /// An ADD's answer as soon as it is durable, and what remains of the call; `None` for other verbs.
    pub fn answer_early(self) -> Result<(Option<Added>, Rest), CniError> {
        match self.early.recv() {
            Ok(added) => Ok((Some(added), Rest(Some(self.worker)))),
            // No early answer: the call failed (or was not an ADD); the thread says how.
            Err(_) => Ok((joined(self.worker)?, Rest(None))),
        }
    }

    /// The call to its end.
    pub fn wait(self) -> Result<Option<Added>, CniError> {
        self.answer_early().map(|(added, _rest)| added)
    }
}
