//! The call recorder: a pass-through wrapper (scripts/cni-recorder.sh) installed in place of a plugin, which
//! logs every call a runtime makes (CNI_* env, stdin, stdout, exit code, ms) as JSON lines.
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Recorder {
    pub log: PathBuf,
}

impl Recorder {
    /// A recorder writing to `log`; install it for each plugin to watch.
    pub fn new(log: PathBuf) -> Recorder {
        Recorder { log }
    }

    /// Puts a wrapper named `plugin` into `bin_dir` (replacing what is there) that runs `real` and logs.
    pub fn install(&self, bin_dir: &Path, plugin: &str, real: &Path) {
        let wrapper = bin_dir.join(plugin);
        let _ = std::fs::remove_file(&wrapper);
        let text = format!(
            "#!/usr/bin/env bash\nREC_REAL='{}' REC_LOG='{}' . '{}'\n",
            real.display(),
            self.log.display(),
            crate::script("cni-recorder.sh").display()
        );
        std::fs::write(&wrapper, text).expect("write recorder wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
    }

    pub fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| !l.trim().is_empty()).map(Call::parse).collect()
    }

    /// The calls as one line each, for assertion messages and the notes.
    pub fn transcript(&self) -> String {
        self.calls().iter().map(|c| c.line()).collect::<Vec<_>>().join("\n")
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    pub plugin: String,
    pub command: String,
    pub containerid: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
    pub stdin: Value,
    pub stdout: Value,
    pub rc: i64,
    pub ms: i64,
}

impl Call {
    fn parse(line: &str) -> Call {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad recorder line {line}: {e}"));
        let env = |k: &str| v["env"][k].as_str().unwrap_or("").to_string();
        let json = |k: &str| serde_json::from_str(v[k].as_str().unwrap_or("")).unwrap_or(Value::Null);
        Call {
            plugin: v["plugin"].as_str().unwrap_or("").to_string(),
            command: env("CNI_COMMAND"),
            containerid: env("CNI_CONTAINERID"),
            netns: env("CNI_NETNS"),
            ifname: env("CNI_IFNAME"),
            args: env("CNI_ARGS"),
            path: env("CNI_PATH"),
            stdin: json("stdin"),
            stdout: json("stdout"),
            rc: v["rc"].as_i64().unwrap_or(-1),
            ms: v["ms"].as_i64().unwrap_or(-1),
        }
    }

    /// `cni-calico ADD cid=… netns=… if=eth0 args=… cniVersion=… prevResult=yes -> rc 0 (12 ms)`
    pub fn line(&self) -> String {
        let cid = if self.containerid.len() > 24 { format!("{}…", &self.containerid[..24]) } else { self.containerid.clone() };
        format!(
            "{} {} cid={} netns={:?} if={} args={:?} cniVersion={} prevResult={} -> rc {} ({} ms)",
            self.plugin,
            self.command,
            cid,
            self.netns,
            self.ifname,
            self.args,
            self.stdin["cniVersion"].as_str().unwrap_or("?"),
            if self.stdin.get("prevResult").is_some() { "yes" } else { "no" },
            self.rc,
            self.ms
        )
    }
}
