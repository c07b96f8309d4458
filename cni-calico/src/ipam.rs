//! Calling the IPAM plugin. Our own `cni-ipam` runs inside this process, on a thread of its own: one process
//! start per pod instead of two. Any other IPAM plugin (host-local, ...) is exec'd from CNI_PATH as the spec
//! says; `"exec_ipam": true` in the config execs cni-ipam too, and so does an etcd store when this binary was
//! built without the `etcd` feature (the default: the etcd client, resolver and TLS would add a third to the
//! pages every ADD maps, for a store whose round trips dwarf one more exec).
use crate::config::NetConf;
use common::cni::{delegate, CniError, CniResult, Command, Plugin, Request};

/// The plugin type served in-process.
pub const IN_PROCESS: &str = "cni-ipam";

/// An IPAM call under way, alongside our own work.
pub enum Pending {
    Exec(delegate::Running),
    Thread(std::thread::JoinHandle<Result<CniResult, CniError>>),
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
    let thread = std::thread::Builder::new().name("ipam".into()).spawn(move || match command {
        Command::Add => plugin.add(&req),
        Command::Del => plugin.del(&req).map(|()| CniResult::default()),
        Command::Check => plugin.check(&req).map(|()| CniResult::default()),
        Command::Status => plugin.status(&req).map(|()| CniResult::default()),
        Command::Gc => plugin.gc(&req).map(|()| CniResult::default()),
        Command::Version => Ok(CniResult::default()),
    });
    thread.map(Pending::Thread).map_err(|e| CniError::internal(format!("starting the IPAM thread: {e}")))
}

impl Pending {
    /// The IPAM result (ADD).
    pub fn result(self) -> Result<CniResult, CniError> {
        match self {
            Pending::Exec(running) => running.result(),
            Pending::Thread(t) => t.join().map_err(|_| CniError::internal("the IPAM thread panicked"))?,
        }
    }

    /// Success or the IPAM error (every other verb).
    pub fn wait(self) -> Result<(), CniError> {
        match self {
            Pending::Exec(running) => running.wait().map(drop),
            Pending::Thread(_) => self.result().map(drop),
        }
    }
}

/// Runs `command` on the IPAM plugin to completion.
pub fn call(conf: &NetConf, command: Command, req: &Request) -> Result<(), CniError> {
    start(conf, command, req)?.wait()
}
