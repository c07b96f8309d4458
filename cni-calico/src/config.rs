//! The network config cni-calico reads (Calico's key names); everything else in it is passed through untouched.
use common::cni::{code, config, CniError, Command, Dns, Request};
use serde::Deserialize;
use std::path::Path;

pub const DEFAULT_MTU: u32 = 1500;
/// Where Calico's node agent writes the MTU it detected for pods; read on ADD when the config has no `mtu`.
pub const MTU_FILE: &str = "/var/lib/calico/mtu";

#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    /// 0 = not configured: on ADD, `from_request` replaces it with the MTU file's value (if any).
    #[serde(default)]
    pub mtu: u32,
    /// Fail an ADD while the MTU file is missing (Calico's key): the node agent has not written it yet.
    #[serde(default)]
    pub require_mtu_file: bool,
    pub ipam: Option<IpamRef>,
    #[serde(default)]
    pub dns: Dns,
    #[serde(default)]
    pub container_settings: ContainerSettings,
    #[serde(rename = "prevResult")]
    pub prev_result: Option<serde_json::Value>,
    /// Exec cni-ipam as a separate process instead of running it in-process (see `ipam`).
    #[serde(default)]
    pub exec_ipam: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IpamRef {
    #[serde(rename = "type")]
    pub ipam_type: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerSettings {
    #[serde(default)]
    pub allow_ip_forwarding: bool,
}

impl NetConf {
    pub fn from_request(req: &Request) -> Result<NetConf, CniError> {
        let mut conf: NetConf = config::parse(&req.config)?;
        if conf.mtu != 0 && !(68..=65535).contains(&conf.mtu) {
            return Err(CniError::new(code::UNSUPPORTED_FIELD, format!("unsupported field mtu={}: must be 68..65535", conf.mtu)));
        }
        // Only ADD uses the MTU (as in Calico): a DEL must not fail over a bad file.
        if req.env.command == Command::Add {
            conf.mtu = conf.resolve_mtu(Path::new(MTU_FILE))?;
        }
        Ok(conf)
    }

    /// Calico's order: `mtu` from the config, else the MTU in `file`, else 0 (the default, 1500). As in Calico
    /// the file is read on every ADD: a missing file is fine unless `require_mtu_file`, and a file that holds
    /// no MTU is an error naming it, also when `mtu` is set.
    pub fn resolve_mtu(&self, file: &Path) -> Result<u32, CniError> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.require_mtu_file => return Ok(self.mtu),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CniError::new(
                    code::TRY_AGAIN,
                    format!("MTU file {} does not exist and require_mtu_file is true: the node agent has not written it yet", file.display()),
                ))
            }
            Err(e) => return Err(CniError::new(code::IO, format!("reading MTU file {}: {e}", file.display()))),
        };
        // "0" is the agent saying it has no value, as Calico reads it.
        let found = match text.trim().parse::<u32>() {
            Ok(m) if m == 0 || (68..=65535).contains(&m) => m,
            _ => {
                return Err(CniError::new(code::INVALID_CONFIG, format!("MTU file {}: {:?} is not an MTU (68..65535)", file.display(), text.trim())))
            }
        };
        Ok(if self.mtu != 0 { self.mtu } else { found })
    }

    pub fn mtu(&self) -> u32 {
        if self.mtu == 0 {
            DEFAULT_MTU
        } else {
            self.mtu
        }
    }

    /// Whether this ADD may get an IPv6 address, as far as the config tells before IPAM answers: our IPAM
    /// assigns IPv6 only when `assign_ipv6` is "true" or an IPv6 address is asked for; host-local only from
    /// IPv6 ranges; any other plugin may.
    pub fn may_assign_ipv6(&self, req: &Request) -> bool {
        let ipam = req.config.get("ipam");
        let has_colon = |v: Option<&serde_json::Value>| v.is_some_and(|v| v.to_string().contains(':'));
        let asked = req.env.arg("IP").is_some_and(|ip| ip.contains(':'))
            || has_colon(req.config.pointer("/runtimeConfig/ips"))
            || has_colon(req.config.pointer("/args/cni/ips"));
        match self.ipam.as_ref().map(|i| i.ipam_type.as_str()) {
            Some("cni-ipam" | "calico-ipam") => asked || ipam.and_then(|i| i.get("assign_ipv6")).and_then(|v| v.as_str()) == Some("true"),
            Some("host-local") => asked || has_colon(ipam.and_then(|i| i.get("ranges"))) || has_colon(ipam.and_then(|i| i.get("subnet"))),
            _ => true,
        }
    }

    /// The IPAM plugin's binary name; every verb delegates to it.
    pub fn ipam_type(&self) -> Result<&str, CniError> {
        match &self.ipam {
            Some(i) if !i.ipam_type.is_empty() => Ok(&i.ipam_type),
            _ => Err(CniError::config("invalid network config: missing ipam.type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(mtu: u32, require: bool) -> NetConf {
        config::parse(&serde_json::json!({"mtu": mtu, "require_mtu_file": require, "ipam": {"type": "x"}})).unwrap()
    }

    #[test]
    fn mtu_from_config_then_file_then_default() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, missing) = (tmp.path().join("mtu"), tmp.path().join("missing"));
        std::fs::write(&file, "1440\n").unwrap();
        assert_eq!(conf(0, false).resolve_mtu(&file).unwrap(), 1440, "no mtu in the config: the file's");
        assert_eq!(conf(9000, false).resolve_mtu(&file).unwrap(), 9000, "the config wins");
        std::fs::write(&file, "junk").unwrap();
        assert_eq!(conf(9000, false).resolve_mtu(&file).unwrap_err().code, code::INVALID_CONFIG, "read even when mtu is set");
        std::fs::write(&file, "1440\n").unwrap();
        assert_eq!(conf(9000, true).resolve_mtu(&file).unwrap(), 9000);
        assert_eq!(conf(0, false).resolve_mtu(&missing).unwrap(), 0, "no file: the default");
        assert_eq!(conf(1400, false).resolve_mtu(&missing).unwrap(), 1400);
        for required in [conf(0, true), conf(1400, true)] {
            let e = required.resolve_mtu(&missing).unwrap_err();
            assert_eq!(e.code, code::TRY_AGAIN);
            assert!(e.msg.contains(&missing.display().to_string()) && e.msg.contains("require_mtu_file"), "{}", e.msg);
        }
        std::fs::write(&file, "0").unwrap();
        assert_eq!(conf(0, false).resolve_mtu(&file).unwrap(), 0);
        for bad in ["big", "", "10", "70000", "-1"] {
            std::fs::write(&file, bad).unwrap();
            let e = conf(0, false).resolve_mtu(&file).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{bad:?}");
            assert!(e.msg.contains(&file.display().to_string()), "{bad:?}: {}", e.msg);
        }
        let e = conf(0, false).resolve_mtu(tmp.path()).unwrap_err();
        assert_eq!(e.code, code::IO, "a directory: {}", e.msg);
    }
}
