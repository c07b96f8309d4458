//! ADD results: one typed struct, printed in the layout of the request's cniVersion, parsed from any layout.
use super::version::{layout, Layout};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    pub fn to(dst: IpNet) -> Route {
        Route { dst, gw: None, mtu: None, advmss: None, priority: None, table: None, scope: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CniResult {
    /// The result as JSON in the layout of `version` (which the caller has already checked is supported).
    pub fn to_json(&self, version: &str) -> serde_json::Value {
        let mut r = self.clone();
        r.cni_version = version.to_string();
        let lay = layout(version).unwrap_or(Layout::V11);
        if lay < Layout::V11 {
            for i in &mut r.interfaces {
                i.mtu = 0;
            }
            for rt in &mut r.routes {
                // Fields 1.1 added to routes; older consumers have no place for them.
                rt.mtu = None;
                rt.advmss = None;
                rt.priority = None;
                rt.table = None;
                rt.scope = None;
            }
        }
        let mut v = serde_json::to_value(&r).unwrap_or_default();
        if lay < Layout::V10 {
            if let Some(ips) = v.get_mut("ips").and_then(|i| i.as_array_mut()) {
                for ip in ips {
                    let fam = if ip["address"].as_str().is_some_and(|a| a.contains(':')) { "6" } else { "4" };
                    ip["version"] = fam.into();
                }
            }
        }
        v
    }

    /// Parses a result of any supported layout (`ips[].version` and unknown keys are ignored).
    pub fn from_value(v: &serde_json::Value) -> Result<CniResult, serde_json::Error> {
        CniResult::deserialize(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![
                Interface { name: "cali123".into(), ..Default::default() },
                Interface { name: "eth0".into(), mac: "aa:bb:cc:dd:ee:ff".into(), mtu: 1500, sandbox: "/run/netns/x".into() },
            ],
            ips: vec![
                IpConfig { address: "10.0.0.5/32".parse().unwrap(), gateway: None, interface: Some(1) },
                IpConfig { address: "fd00::5/128".parse().unwrap(), gateway: None, interface: Some(1) },
            ],
            routes: vec![Route { scope: Some(253), ..Route::to("10.0.0.0/26".parse().unwrap()) }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn v1_1_keeps_mtu_and_has_no_ip_version() {
        let v = sample().to_json("1.1.0");
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["interfaces"][1]["mtu"], 1500);
        assert_eq!(v["routes"][0]["scope"], 253);
        assert!(v["ips"][0].get("version").is_none());
        assert!(v.get("dns").is_none());
    }

    #[test]
    fn v1_0_drops_1_1_fields() {
        let v = sample().to_json("1.0.0");
        assert!(v["interfaces"][1].get("mtu").is_none());
        assert!(v["routes"][0].get("scope").is_none());
        assert!(v["ips"][0].get("version").is_none());
    }

    #[test]
    fn old_layouts_carry_ip_version() {
        for ver in ["0.3.0", "0.3.1", "0.4.0"] {
            let v = sample().to_json(ver);
            assert_eq!(v["cniVersion"], ver);
            assert_eq!(v["ips"][0]["version"], "4");
            assert_eq!(v["ips"][1]["version"], "6");
            assert_eq!(v["ips"][1]["interface"], 1);
        }
    }

    #[test]
    fn parses_every_layout_back() {
        for ver in ["0.3.0", "0.4.0", "1.0.0", "1.1.0"] {
            let back = CniResult::from_value(&sample().to_json(ver)).unwrap();
            assert_eq!(back.ips, sample().ips, "{ver}");
            assert_eq!(back.interfaces[1].mac, "aa:bb:cc:dd:ee:ff");
        }
    }

    #[test]
    fn parses_go_style_empty_dns_and_unknown_keys() {
        let v = serde_json::json!({"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/16","gateway":"10.1.0.1"}],"dns":{},"extra":1});
        let r = CniResult::from_value(&v).unwrap();
        assert_eq!(r.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
    }
}
