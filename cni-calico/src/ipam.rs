//! Calling the IPAM plugin. Our own `cni-ipam` runs inside this process, on a thread of its own: one process
//! start per pod instead of two. Any other IPAM plugin (host-local, ...) is exec'd from CNI_PATH as the spec
//! says; `"exec_ipam": true` in the config execs cni-ipam too, and so does an etcd store when this binary was
//! built without the `etcd` feature (the default: the etcd client, resolver and TLS would add a third to the
//! pages every ADD maps, for a store whose round trips dwarf one more exec).
use crate::config::NetConf;
use cni_ipam::embedded::{self, Call, Rest, Undo};
use common::cni::{delegate, CniError, CniResult, Command, Request};

/// The plugin type served in-process.
pub const IN_PROCESS: &str = "cni-ipam";

/// An IPAM call under way, alongside our own work.
pub enum Pending {
    Exec(delegate::Running),
    /// In-process: an ADD's answer arrives once the allocation is durable, while the IPAM thread still
    /// writes the store's record files and releases its lock.
    Thread(Call),
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

/// What remains of an in-process call after its answer (see `embedded::Rest`).
pub struct Settle {
    _rest: Option<Rest>,
}

/// Starts `command` on the configured IPAM plugin: cni-ipam on a thread here unless the config says
/// `exec_ipam` or this build cannot serve it; anything else exec'd from CNI_PATH.
pub fn start(conf: &NetConf, command: Command, req: &Request) -> Result<Pending, CniError> {
    let ipam_type = conf.ipam_type()?;
    if ipam_type == IN_PROCESS && !conf.exec_ipam {
        // Still looked up on CNI_PATH, so an install without cni-ipam fails the same way whichever way it runs.
        if command != Command::Status {
            delegate::find(ipam_type, &req.env.path)?;
        }
        if let Some(call) = embedded::spawn(command, req) {
            return call.map(Pending::Thread);
        }
    }
    delegate::ipam_start(ipam_type, command, &req.env, &req.stdin).map(Pending::Exec)
}

impl Pending {
    /// The IPAM answer (ADD) as soon as it is known, and what remains of the call.
    pub fn answer_early(self) -> Result<(Answer, Settle), CniError> {
        match self {
            Pending::Exec(running) => Ok((Answer { result: running.result()?, taken: Taken::ByDel }, Settle { _rest: None })),
            Pending::Thread(call) => {
                let (added, rest) = call.answer_early()?;
                let answer = match added {
                    Some(a) => Answer { result: a.result, taken: Taken::Exactly(a.undo) },
                    None => Answer { result: CniResult::default(), taken: Taken::Exactly(None) },
                };
                Ok((answer, Settle { _rest: Some(rest) }))
            }
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
            Pending::Thread(call) => call.wait().map(drop),
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
        Taken::Exactly(Some(undo)) => embedded::undo_add(req, &undo).map(drop),
        Taken::ByDel if live => return,
        Taken::ByDel => call(conf, Command::Del, req),
    };
    if let Err(e) = given {
        tracing::error!(error = %e, "releasing the addresses of a failed ADD");
    }
}
