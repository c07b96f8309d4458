//! The runtime's environment variables, parsed once with skel's rules ("present but empty" is absent).
use super::error::{code, CniError};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: Option<String>,
    pub netns: Option<PathBuf>,
    pub ifname: Option<String>,
    /// CNI_ARGS as `K=V` pairs, in order.
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
}

impl Env {
    pub fn from_process() -> Result<Env, CniError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Parses from any lookup, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let command_str = get("CNI_COMMAND").ok_or_else(|| CniError::new(code::INVALID_ENV, "required env variables [CNI_COMMAND] missing"))?;
        let command = Command::parse(&command_str).ok_or_else(|| CniError::new(code::INVALID_ENV, format!("unknown CNI_COMMAND: {command_str}")))?;

        // What each verb needs, as skel checks it (CNI_NETNS is optional on DEL).
        let (need_cid, need_netns, need_ifname, need_path) = match command {
            Command::Add | Command::Check => (true, true, true, true),
            Command::Del => (true, false, true, true),
            Command::Gc => (false, false, false, true),
            Command::Status | Command::Version => (false, false, false, false),
        };
        let container_id = get("CNI_CONTAINERID");
        let netns = get("CNI_NETNS").map(PathBuf::from);
        let ifname = get("CNI_IFNAME");
        let path_str = get("CNI_PATH");

        // The spec's code 4 names every missing variable; skel answers a missing container ID with code 3
        // ("container unknown"), which a runtime may read as "nothing to clean up".
        let mut missing = Vec::new();
        if need_cid && container_id.is_none() {
            missing.push("CNI_CONTAINERID");
        }
        if need_netns && netns.is_none() {
            missing.push("CNI_NETNS");
        }
        if need_ifname && ifname.is_none() {
            missing.push("CNI_IFNAME");
        }
        if need_path && path_str.is_none() {
            missing.push("CNI_PATH");
        }
        if !missing.is_empty() {
            return Err(CniError::new(code::INVALID_ENV, format!("required env variables [{}] missing", missing.join(" "))));
        }
        if let Some(cid) = &container_id {
            if need_cid && !valid_id(cid) {
                return Err(CniError::new(code::INVALID_ENV, format!("invalid characters in containerID: {cid}")));
            }
        }
        if let Some(ifname) = &ifname {
            if need_ifname {
                validate_ifname(ifname)?;
            }
        }
        let args = match get("CNI_ARGS") {
            Some(s) => parse_args(&s)?,
            None => Vec::new(),
        };
        let path = path_str.map(|p| p.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect()).unwrap_or_default();
        Ok(Env { command, container_id, netns, ifname, args, path })
    }

    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    pub fn container_id(&self) -> &str {
        self.container_id.as_deref().unwrap_or("")
    }

    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or("")
    }
}

/// Container IDs and network names: `[a-zA-Z0-9][a-zA-Z0-9_.\-]*`.
pub fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric()) && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Interface names as the kernel and skel accept them.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = |why: &str| Err(CniError::new(code::INVALID_ENV, format!("interface name {name:?} is invalid: {why}")));
    if name.len() > 15 {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("is . or ..");
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return bad("contains '/', ':' or whitespace");
    }
    Ok(())
}

/// `K1=V1;K2=V2`: each pair must split into exactly two parts.
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(3, '=');
            match (kv.next(), kv.next(), kv.next()) {
                (Some(k), Some(v), None) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(CniError::new(code::INVALID_ENV, format!("ARGS: invalid pair {pair:?}"))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn add_parses() {
        let e = env(ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.path.len(), 2);
    }

    #[test]
    fn missing_command_is_code_4() {
        assert_eq!(env(&[]).unwrap_err().code, 4);
        assert_eq!(env(&[("CNI_COMMAND", "FOO")]).unwrap_err().code, 4);
    }

    #[test]
    fn missing_or_empty_container_id_is_code_4_naming_it() {
        for cmd in ["ADD", "DEL", "CHECK"] {
            let mut v = ADD.to_vec();
            v[0] = ("CNI_COMMAND", cmd);
            v[1] = ("CNI_CONTAINERID", "");
            let e = env(&v).unwrap_err();
            assert_eq!((e.code, e.msg.as_str()), (4, "required env variables [CNI_CONTAINERID] missing"), "{cmd}");
            v.remove(1);
            assert_eq!(env(&v).unwrap_err().code, 4, "{cmd} without CNI_CONTAINERID");
        }
        let e = env(&[("CNI_COMMAND", "ADD")]).unwrap_err();
        assert_eq!(e.msg, "required env variables [CNI_CONTAINERID CNI_NETNS CNI_IFNAME CNI_PATH] missing");
    }

    #[test]
    fn bad_container_id_is_code_4() {
        let mut v = ADD.to_vec();
        v[1] = ("CNI_CONTAINERID", "-x/y");
        assert_eq!(env(&v).unwrap_err().code, 4);
    }

    #[test]
    fn missing_vars_are_named() {
        let e = env(&ADD[..2]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("CNI_NETNS") && e.msg.contains("CNI_IFNAME") && e.msg.contains("CNI_PATH"), "{}", e.msg);
    }

    #[test]
    fn del_without_netns_is_fine() {
        let v: Vec<_> =
            ADD.iter().copied().map(|(k, v)| if k == "CNI_COMMAND" { (k, "DEL") } else { (k, v) }).filter(|(k, _)| *k != "CNI_NETNS").collect();
        assert!(env(&v).unwrap().netns.is_none());
    }

    #[test]
    fn bad_ifnames() {
        for name in ["0123456789abcdef", "..", "a/b", "a:b", "a b"] {
            let mut v = ADD.to_vec();
            v[3] = ("CNI_IFNAME", name);
            assert_eq!(env(&v).unwrap_err().code, 4, "{name}");
        }
    }

    #[test]
    fn args_parse() {
        let mut v = ADD.to_vec();
        v.push(("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p;K8S_POD_NAMESPACE="));
        let e = env(&v).unwrap();
        assert_eq!(e.arg("K8S_POD_NAME"), Some("p"));
        assert_eq!(e.arg("K8S_POD_NAMESPACE"), None);
        v.pop();
        v.push(("CNI_ARGS", "a=b=c"));
        assert_eq!(env(&v).unwrap_err().code, 4);
    }

    #[test]
    fn status_and_version_need_nothing() {
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "VERSION"), ("CNI_NETNS", "dummy")]).is_ok());
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap_err().code, 4);
    }
}
