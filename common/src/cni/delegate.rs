//! Running a delegated plugin (the IPAM plugin): found on CNI_PATH, same env and stdin, its result parsed.
use super::env::{Command, Env};
use super::error::{code, CniError};
use super::result::CniResult;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// First `name` found in the CNI_PATH directories.
pub fn find(name: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if name.is_empty() || name.contains('/') {
        return Err(CniError::config(format!("invalid plugin type {name:?}")));
    }
    path.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::config(format!("failed to find plugin {name:?} in path {path:?}")))
}

/// A delegate that has been started and is running alongside us.
pub struct Running {
    child: std::process::Child,
    plugin: PathBuf,
}

/// Starts `plugin` for `command` with our own process environment (CNI_COMMAND overridden), feeding it `stdin`.
pub fn start(plugin: &Path, command: Command, stdin: &[u8]) -> Result<Running, CniError> {
    let mut tries = 0;
    let mut child = loop {
        let spawned = std::process::Command::new(plugin)
            .env("CNI_COMMAND", command.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Ok(c) => break c,
            // The binary is being replaced (libcni retries this too).
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50 * tries));
            }
            Err(e) => return Err(CniError::internal(format!("exec {}: {e}", plugin.display()))),
        }
    };
    if let Some(mut si) = child.stdin.take() {
        // Config is far below the pipe buffer, so this does not wait for the child to read. A delegate that
        // exits without reading is its own error, reported through its exit status.
        let _ = si.write_all(stdin);
    }
    Ok(Running { child, plugin: plugin.to_path_buf() })
}

impl Running {
    /// Waits for the delegate: its stdout on success, its error object on failure.
    pub fn wait(self) -> Result<Vec<u8>, CniError> {
        let plugin = self.plugin;
        let out = self.child.wait_with_output().map_err(|e| CniError::new(code::IO, format!("waiting for {}: {e}", plugin.display())))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let name = plugin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Err(match serde_json::from_slice::<CniError>(&out.stdout) {
            Ok(e) => e,
            Err(_) => CniError::internal(format!("plugin {name} failed ({})", out.status))
                .with_details(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        })
    }
}

impl Running {
    /// Waits for an IPAM ADD: its (abbreviated) result.
    pub fn result(self) -> Result<CniResult, CniError> {
        let name = self.plugin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let out = self.wait()?;
        let decode = |e: serde_json::Error| CniError::new(code::DECODE, format!("decoding result of IPAM plugin {name}: {e}"));
        let v: serde_json::Value = serde_json::from_slice(&out).map_err(decode)?;
        CniResult::from_value(&v).map_err(decode)
    }
}

/// Runs `plugin` for `command` to completion.
pub fn exec(plugin: &Path, command: Command, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
    start(plugin, command, stdin)?.wait()
}

/// IPAM DEL, CHECK, STATUS or GC: success or the delegate's error.
pub fn ipam_call(ipam_type: &str, command: Command, env: &Env, stdin: &[u8]) -> Result<(), CniError> {
    ipam_start(ipam_type, command, env, stdin)?.wait().map(drop)
}

/// Starts an IPAM call and returns at once, so our own work can overlap with it.
pub fn ipam_start(ipam_type: &str, command: Command, env: &Env, stdin: &[u8]) -> Result<Running, CniError> {
    start(&find(ipam_type, &env.path)?, command, stdin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn find_searches_cni_path_in_order_and_rejects_paths() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        script(b.path(), "ipam", "exit 0");
        let path = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(find("ipam", &path).unwrap(), b.path().join("ipam"));
        script(a.path(), "ipam", "exit 0");
        assert_eq!(find("ipam", &path).unwrap(), a.path().join("ipam"));
        assert_eq!(find("nope", &path).unwrap_err().code, code::INVALID_CONFIG);
        assert_eq!(find("../ipam", &path).unwrap_err().code, code::INVALID_CONFIG);
        assert_eq!(find("", &path).unwrap_err().code, code::INVALID_CONFIG);
    }

    #[test]
    fn delegate_sees_the_command_and_our_stdin() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            "echo",
            r#"printf '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/24"}],"dns":{"nameservers":["'$CNI_COMMAND'"]}}'; cat > /dev/null"#,
        );
        let out = exec(&p, Command::Add, b"{}").unwrap();
        let r = CniResult::from_value(&serde_json::from_slice(&out).unwrap()).unwrap();
        assert_eq!(r.dns.nameservers, ["ADD"]);
        let p = script(d.path(), "cat", "cat");
        assert_eq!(exec(&p, Command::Del, b"hello").unwrap(), b"hello");
    }

    #[test]
    fn delegate_errors_keep_their_code_or_become_internal() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "fails", r#"echo '{"code":11,"msg":"store busy","details":"x"}'; exit 1"#);
        let e = exec(&p, Command::Add, b"{}").unwrap_err();
        assert_eq!((e.code, e.msg.as_str(), e.details.as_str()), (11, "store busy", "x"));
        let p = script(d.path(), "garbage", "echo oops; exit 3");
        let e = exec(&p, Command::Add, b"{}").unwrap_err();
        assert_eq!(e.code, code::INTERNAL);
        assert!(e.msg.contains("garbage") && e.details == "oops", "{e}");
    }
}
