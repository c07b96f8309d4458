//! The agent's state file, `<run dir>/calico-node.json` (default `/var/run/calico/calico-node.json`): what
//! `calicoctl node status` reports besides BIRD's sessions. The agent rewrites it (atomically) when its state
//! changes; a reader checks `pid` to tell a running agent from a stale file.
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "calico-node.json";
/// Calico's run dir: BIRD's control socket `bird.ctl` is there too.
pub const DEFAULT_RUN_DIR: &str = "/var/run/calico";
/// Overrides the run dir, for the agent and for `calicoctl node status` alike.
pub const RUN_DIR_ENV: &str = "CALICO_RUN_DIR";
pub const BIRD_CTL: &str = "bird.ctl";
pub const BIRD6_CTL: &str = "bird6.ctl";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    /// The agent's process id.
    pub pid: u32,
    pub node_name: String,
    /// `bird`, `vxlan` or `none`.
    pub backend: String,
    /// Why the datastore's resources could not be turned into a BIRD config (the last good one keeps
    /// running); `None` once a config applies again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// What the last plan warned of (a missing secret, an ignored field...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// IPIP's state when a pool asks for it (`unsupported: ...` on a kernel without the ipip module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip: Option<String>,
    /// While the datastore does not answer: since when, and the error (routes and sessions stay as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_down: Option<String>,
    /// The datastore revision of the last snapshot applied.
    pub revision: u64,
}

/// The run dir: `CALICO_RUN_DIR` when set (and not empty), else /var/run/calico.
pub fn run_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    PathBuf::from(env(RUN_DIR_ENV).filter(|d| !d.is_empty()).unwrap_or_else(|| DEFAULT_RUN_DIR.to_string()))
}

pub fn path(run_dir: &Path) -> PathBuf {
    run_dir.join(FILE_NAME)
}

impl AgentState {
    /// Writes the file atomically (temporary file, rename).
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        let tmp = run_dir.join(format!(".{FILE_NAME}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, path(run_dir))
    }

    /// The file of `run_dir`; `None` when there is none or it does not parse.
    pub fn read(run_dir: &Path) -> Option<AgentState> {
        serde_json::from_slice(&std::fs::read(path(run_dir)).ok()?).ok()
    }

    /// Whether the process that wrote it still runs (a process with its pid exists).
    pub fn agent_running(&self) -> bool {
        self.pid != 0 && Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}
