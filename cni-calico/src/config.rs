//! The network config cni-calico reads (Calico's key names); everything else in it is passed through untouched.
use common::cni::{config, CniError, Dns, Request};
use serde::Deserialize;

pub const DEFAULT_MTU: u32 = 1500;

#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    #[serde(default)]
    pub mtu: u32,
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
        let conf: NetConf = config::parse(&req.config)?;
        if conf.mtu != 0 && !(68..=65535).contains(&conf.mtu) {
            return Err(CniError::new(common::cni::code::UNSUPPORTED_FIELD, format!("unsupported field mtu={}: must be 68..65535", conf.mtu)));
        }
        Ok(conf)
    }

    pub fn mtu(&self) -> u32 {
        if self.mtu == 0 {
            DEFAULT_MTU
        } else {
            self.mtu
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
