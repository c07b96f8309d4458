//! The verb dispatcher every plugin binary runs: env + stdin in, one result or error JSON out (like Go's skel).
use super::env::{valid_id, Command, Env};
use super::error::{code, CniError};
use super::result::CniResult;
use super::version::{layout, version_info, Layout, SUPPORTED};
use std::io::{Read, Write};

/// One plugin invocation: the parsed environment and the network config it was given.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: Env,
    /// stdin exactly as received; delegates get these bytes unchanged.
    pub stdin: Vec<u8>,
    pub config: serde_json::Value,
    pub cni_version: String,
    pub name: String,
}

pub trait Plugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError>;
    fn del(&self, req: &Request) -> Result<(), CniError>;
    fn check(&self, req: &Request) -> Result<(), CniError>;
    fn status(&self, req: &Request) -> Result<(), CniError>;
    fn gc(&self, req: &Request) -> Result<(), CniError>;
}

/// Runs one verb against the process environment and stdin; prints to stdout and returns the exit code.
pub fn run(plugin: &impl Plugin) -> i32 {
    let mut stdin = Vec::new();
    let env = Env::from_process();
    let read = match &env {
        Ok(_) => std::io::stdin().read_to_end(&mut stdin).map(|_| ()),
        Err(_) => Ok(()),
    };
    let (out, rc) = match (env, read) {
        (Err(e), _) => (e.to_json(None), 1),
        (Ok(_), Err(e)) => (CniError::new(code::IO, format!("reading stdin: {e}")).to_json(None), 1),
        (Ok(env), Ok(())) => dispatch(plugin, env, stdin),
    };
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(out.as_bytes());
    let _ = so.flush();
    rc
}

/// Returns what to print and the exit code; separated from `run` so tests need no process.
pub fn dispatch(plugin: &impl Plugin, env: Env, stdin: Vec<u8>) -> (String, i32) {
    if env.command == Command::Version {
        let asked = serde_json::from_slice::<serde_json::Value>(&stdin).ok();
        let asked = asked.as_ref().and_then(|v| v["cniVersion"].as_str());
        return (version_info(asked), 0);
    }
    let req = match parse_request(env, stdin) {
        Ok(r) => r,
        Err((e, ver)) => return (e.to_json(ver.as_deref()), 1),
    };
    crate::log::init_from_config(&req.config);
    let _span = tracing::info_span!("cni", cmd = req.env.command.as_str(), cid = req.env.container_id()).entered();
    let outcome = match req.env.command {
        Command::Add => plugin.add(&req).map(|r| Some(r.to_json(&req.cni_version).to_string())),
        Command::Del => plugin.del(&req).map(|_| None),
        Command::Check => plugin.check(&req).map(|_| None),
        Command::Status => plugin.status(&req).map(|_| None),
        Command::Gc => plugin.gc(&req).map(|_| None),
        Command::Version => unreachable!("handled above"),
    };
    match outcome {
        Ok(out) => {
            tracing::info!("ok");
            (out.unwrap_or_default(), 0)
        }
        Err(e) => {
            tracing::warn!(code = e.code, msg = %e.msg, details = %e.details, "failed");
            (e.to_json(Some(&req.cni_version)), 1)
        }
    }
}

type ReqError = (CniError, Option<String>);

fn parse_request(env: Env, stdin: Vec<u8>) -> Result<Request, ReqError> {
    let config: serde_json::Value =
        serde_json::from_slice(&stdin).map_err(|e| (CniError::new(code::DECODE, format!("decoding network config: {e}")), None))?;
    if !config.is_object() {
        return Err((CniError::new(code::DECODE, "network config is not a JSON object"), None));
    }
    let cni_version = match &config["cniVersion"] {
        serde_json::Value::Null => "0.1.0".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => return Err((CniError::new(code::DECODE, format!("cniVersion must be a string, got {other}")), None)),
    };
    let name = match config["name"].as_str() {
        Some(n) if valid_id(n) => n.to_string(),
        Some(n) => return Err((CniError::config(format!("invalid network name {n:?}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")), None)),
        None => return Err((CniError::config("missing network name"), None)),
    };
    let Some(lay) = layout(&cni_version) else {
        return Err((
            CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions")
                .with_details(format!("config is {cni_version:?}, plugin supports {SUPPORTED:?}")),
            None,
        ));
    };
    let gate = match env.command {
        Command::Check if lay < Layout::V04 => Some("CHECK"),
        Command::Gc if lay < Layout::V11 => Some("GC"),
        Command::Status if lay < Layout::V11 => Some("STATUS"),
        _ => None,
    };
    if let Some(verb) = gate {
        return Err((CniError::new(code::INCOMPATIBLE_VERSION, format!("config version {cni_version} does not allow {verb}")), Some(cni_version)));
    }
    Ok(Request { env, stdin, config, cni_version, name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::result::IpConfig;
    use std::collections::HashMap;

    struct Fake;
    impl Plugin for Fake {
        fn add(&self, _: &Request) -> Result<CniResult, CniError> {
            Ok(CniResult { ips: vec![IpConfig { address: "10.0.0.1/32".parse().unwrap(), gateway: None, interface: Some(0) }], ..Default::default() })
        }
        fn del(&self, _: &Request) -> Result<(), CniError> {
            Ok(())
        }
        fn check(&self, _: &Request) -> Result<(), CniError> {
            Err(CniError::internal("check failed"))
        }
        fn status(&self, _: &Request) -> Result<(), CniError> {
            Err(CniError::new(code::NOT_AVAILABLE, "no"))
        }
        fn gc(&self, _: &Request) -> Result<(), CniError> {
            Ok(())
        }
    }

    fn env(cmd: &str) -> Env {
        let m: HashMap<&str, &str> =
            [("CNI_COMMAND", cmd), ("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/run/netns/x"), ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/bin")].into();
        Env::from_lookup(|k| m.get(k).map(|s| s.to_string())).unwrap()
    }

    fn call(cmd: &str, stdin: &str) -> (serde_json::Value, i32) {
        let (out, rc) = dispatch(&Fake, env(cmd), stdin.as_bytes().to_vec());
        (if out.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&out).unwrap() }, rc)
    }

    #[test]
    fn add_prints_result_in_config_version() {
        let (v, rc) = call("ADD", r#"{"cniVersion":"0.4.0","name":"n","type":"x"}"#);
        assert_eq!(rc, 0);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
    }

    #[test]
    fn del_prints_nothing() {
        let (v, rc) = call("DEL", r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!((v, rc), (serde_json::Value::Null, 0));
    }

    #[test]
    fn version_lists_supported() {
        let (v, rc) = call("VERSION", r#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(rc, 0);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), SUPPORTED.len());
        let (v, _) = call("VERSION", "");
        assert_eq!(v["cniVersion"], "1.1.0");
    }

    #[test]
    fn error_paths_have_their_codes() {
        let cases = [
            ("ADD", "{not json", 6),
            ("ADD", "[1]", 6),
            ("ADD", r#"{"cniVersion":1,"name":"n"}"#, 6),
            ("ADD", r#"{"cniVersion":"1.0.0"}"#, 7),
            ("ADD", r#"{"cniVersion":"1.0.0","name":"bad/name"}"#, 7),
            ("ADD", r#"{"cniVersion":"9.9.9","name":"n"}"#, 1),
            ("ADD", r#"{"name":"n"}"#, 1),
            ("CHECK", r#"{"cniVersion":"0.3.1","name":"n"}"#, 1),
            ("GC", r#"{"cniVersion":"1.0.0","name":"n"}"#, 1),
            ("STATUS", r#"{"cniVersion":"1.0.0","name":"n"}"#, 1),
            ("CHECK", r#"{"cniVersion":"1.0.0","name":"n"}"#, 999),
            ("STATUS", r#"{"cniVersion":"1.1.0","name":"n"}"#, 50),
        ];
        for (cmd, stdin, want) in cases {
            let (v, rc) = call(cmd, stdin);
            assert_eq!(rc, 1, "{cmd} {stdin}");
            assert_eq!(v["code"], want, "{cmd} {stdin}: {v}");
            assert!(!v["msg"].as_str().unwrap().is_empty());
        }
    }

    #[test]
    fn gc_ok_on_1_1() {
        assert_eq!(call("GC", r#"{"cniVersion":"1.1.0","name":"n"}"#).1, 0);
    }
}
