//! The agent's settings, from the environment as calico-node reads it (`NODENAME`, `IP`, `IP6`,
//! `IP_AUTODETECTION_METHOD`, `IP6_AUTODETECTION_METHOD`, `AS`, `CALICO_NETWORKING_BACKEND`,
//! `CALICO_ROUTER_ID`, the datastore's variables) plus calico-rs's paths, so several nodes can run on one
//! machine. Every bad value is an error naming its variable; nothing is guessed.
use crate::autodetect::Method;
use crate::bird::RouterIdSource;
use dataplane::{Backend, VxlanConfig};
use datastore::config::DatastoreConf;
use datastore::resources::values::AsNumber;
use ipnet::IpNet;
use std::path::PathBuf;
use std::time::Duration;

/// Where calico-rs keeps what only the agent reads or writes.
pub const DEFAULT_CONF_DIR: &str = "/etc/calico/calico-node";
/// The directory the CNI plugin reads `nodename` (and `mtu`) from.
pub const DEFAULT_LIB_DIR: &str = "/var/lib/calico";
pub const DEFAULT_BIRD: &str = "/usr/sbin/bird";
/// The shortest interval between two syncs: a change after a quiet interval is synced at once, the changes
/// that follow within the interval together at its end (a `calicoctl apply` of several resources is several
/// commits in quick succession; a pod start claims a block in one).
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(5);
/// Felix's `RouteRefreshInterval`.
pub const DEFAULT_ROUTE_REFRESH: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, PartialEq)]
pub enum AddressSetting {
    /// `IP=10.0.0.1/24` (no length: /32, as Calico).
    Fixed(IpNet),
    Autodetect(Method),
    /// `IP=none`: the node has no address of this family.
    None,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub node_name: String,
    pub ipv4: AddressSetting,
    pub ipv6: AddressSetting,
    /// `AS`: the node's own AS number (`spec.bgp.asNumber`); unset keeps what the Node resource has.
    pub as_number: Option<AsNumber>,
    pub datastore: DatastoreConf,
    pub backend: Backend,
    pub router_id: RouterIdSource,
    pub vxlan: VxlanConfig,
    /// BIRD's control socket, the agent's state file (`CALICO_RUN_DIR`, default /var/run/calico).
    pub run_dir: PathBuf,
    /// `nodename`, `mtu` (`CALICO_LIB_DIR`, default /var/lib/calico).
    pub lib_dir: PathBuf,
    /// BIRD's config (`CALICO_CONF_DIR`, default /etc/calico/calico-node).
    pub conf_dir: PathBuf,
    /// BGP passwords (`CALICO_BGP_SECRETS_DIR`, default /etc/calico/secrets).
    pub secrets_dir: PathBuf,
    /// The `bird` binary (`CALICO_BIRD`).
    pub bird: PathBuf,
    pub debounce: Duration,
    /// How often the agent's routes, neighbours, FDB entries and MTU file are compared with the kernel even
    /// when nothing changed (`FELIX_ROUTEREFRESHINTERVAL`, seconds, Felix's default 90; 0: never), so what
    /// someone else removed comes back.
    pub route_refresh: Option<Duration>,
    /// `WAIT_FOR_DATASTORE=true` (Calico's): startup waits for a datastore that does not answer instead of
    /// exiting 1.
    pub wait_for_datastore: bool,
    /// Tunnel device MTUs the operator set (`FELIX_VXLANMTU`, `FELIX_VXLANMTUV6`, `FELIX_IPINIPMTU`; 0 or
    /// unset: the host's less the overhead). The smallest in use is the pod MTU.
    pub tunnel_mtu: dataplane::mtu::Configured,
    /// The pools startup creates when the datastore has none of a family (`CALICO_IPV4POOL_*`, ...).
    pub default_pools: crate::pools::DefaultPools,
}

#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct SettingsError {
    pub var: String,
    pub reason: String,
}

fn bad(var: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError { var: var.into(), reason: reason.into() }
}

impl Settings {
    /// The settings `env` gives; `hostname` is the node name when `NODENAME` is unset.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>, hostname: &str) -> Result<Settings, SettingsError> {
        let get = |k: &str| env(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let node_name = match get("NODENAME") {
            Some(n) => n,
            // Calico lower-cases the host name (a Kubernetes node name is a lower-case DNS name).
            None => hostname.trim().to_lowercase(),
        };
        if node_name.is_empty() {
            return Err(bad("NODENAME", "unset, and the host has no name"));
        }
        datastore::resources::values::check_name(&node_name).map_err(|e| bad("NODENAME", e))?;
        let ipv4 = address(get("IP"), get("IP_AUTODETECTION_METHOD"), false)?;
        let ipv6 = address(get("IP6").or_else(|| Some("none".into())), get("IP6_AUTODETECTION_METHOD"), true)?;
        let as_number = get("AS").map(|a| a.parse::<AsNumber>().map_err(|e| bad("AS", e))).transpose()?;
        let datastore = datastore::config::from_env(env).map_err(|e| bad("datastore", e))?;
        let backend = get("CALICO_NETWORKING_BACKEND").unwrap_or_default().parse::<Backend>().map_err(|e| match e {
            // The variable's name once, as for every other setting.
            dataplane::Error::Config { field, reason } => bad(&field, reason),
            other => bad("CALICO_NETWORKING_BACKEND", other.to_string()),
        })?;
        let router_id = get("CALICO_ROUTER_ID").unwrap_or_default().parse::<RouterIdSource>().map_err(|e| bad("CALICO_ROUTER_ID", e))?;
        let mut vxlan = VxlanConfig::default();
        if let Some(v) = get("FELIX_VXLANVNI") {
            vxlan.vni = v
                .parse()
                .ok()
                .filter(|n| (1..1 << 24).contains(n))
                .ok_or_else(|| bad("FELIX_VXLANVNI", format!("{v:?} is not a VNI (1-16777215)")))?;
        }
        if let Some(v) = get("FELIX_VXLANPORT") {
            vxlan.port = v.parse().ok().filter(|p| *p != 0).ok_or_else(|| bad("FELIX_VXLANPORT", format!("{v:?} is not a UDP port")))?;
        }
        let path = |k: &str, default: &str| PathBuf::from(get(k).unwrap_or_else(|| default.into()));
        let debounce = match get("CALICO_DEBOUNCE_MS") {
            Some(v) => Duration::from_millis(v.parse().map_err(|_| bad("CALICO_DEBOUNCE_MS", format!("{v:?} is not a number of milliseconds")))?),
            None => DEFAULT_DEBOUNCE,
        };
        let route_refresh = match get("FELIX_ROUTEREFRESHINTERVAL") {
            Some(v) => {
                let secs = v.parse::<f64>().ok().filter(|s| s.is_finite() && (0.0..=86400.0).contains(s));
                let secs = secs.ok_or_else(|| bad("FELIX_ROUTEREFRESHINTERVAL", format!("{v:?} is not a number of seconds (0-86400)")))?;
                (secs > 0.0).then(|| Duration::from_secs_f64(secs))
            }
            None => Some(DEFAULT_ROUTE_REFRESH),
        };
        let mtu = |var: &str, min: u32| -> Result<Option<u32>, SettingsError> {
            let Some(v) = get(var) else { return Ok(None) };
            match v.parse::<u32>() {
                Ok(0) => Ok(None),
                Ok(n) if (min..=65535).contains(&n) => Ok(Some(n)),
                _ => Err(bad(var, format!("{v:?} is not an MTU (0 for automatic, or {min}-65535)"))),
            }
        };
        let tunnel_mtu = dataplane::mtu::Configured {
            vxlan: mtu("FELIX_VXLANMTU", 68)?,
            vxlan_v6: mtu("FELIX_VXLANMTUV6", 1280)?,
            ipip: mtu("FELIX_IPINIPMTU", 68)?,
        };
        Ok(Settings {
            node_name,
            ipv4,
            ipv6,
            as_number,
            datastore,
            backend,
            router_id,
            vxlan,
            run_dir: path(crate::state::RUN_DIR_ENV, crate::state::DEFAULT_RUN_DIR),
            lib_dir: path("CALICO_LIB_DIR", DEFAULT_LIB_DIR),
            conf_dir: path("CALICO_CONF_DIR", DEFAULT_CONF_DIR),
            secrets_dir: path("CALICO_BGP_SECRETS_DIR", crate::bird::secrets::DEFAULT_DIR),
            bird: path("CALICO_BIRD", DEFAULT_BIRD),
            debounce,
            route_refresh,
            wait_for_datastore: get("WAIT_FOR_DATASTORE").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            tunnel_mtu,
            default_pools: crate::pools::from_env(&get)?,
        })
    }

    pub fn bird_ctl(&self) -> PathBuf {
        self.run_dir.join(crate::state::BIRD_CTL)
    }

    pub fn bird_conf(&self) -> PathBuf {
        self.conf_dir.join("bird.conf")
    }

    pub fn bird_pid(&self) -> PathBuf {
        self.run_dir.join("bird.pid")
    }
}

/// `IP`/`IP6` with its autodetection method.
fn address(value: Option<String>, method: Option<String>, v6: bool) -> Result<AddressSetting, SettingsError> {
    let (var, mvar) = if v6 { ("IP6", "IP6_AUTODETECTION_METHOD") } else { ("IP", "IP_AUTODETECTION_METHOD") };
    match value.as_deref() {
        None | Some("autodetect") => {
            let m = method.as_deref().unwrap_or("first-found").parse::<Method>().map_err(|e| bad(mvar, e))?;
            Ok(AddressSetting::Autodetect(m))
        }
        Some("none") => Ok(AddressSetting::None),
        Some(s) => {
            let net = match s.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => s
                    .parse::<std::net::IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| bad(var, format!("{s:?} is not an address (ADDR[/LEN]), autodetect or none")))?,
            };
            if net.addr().is_ipv6() != v6 {
                return Err(bad(var, format!("{s} is not an IPv{} address", if v6 { 6 } else { 4 })));
            }
            Ok(AddressSetting::Fixed(net))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testbed::env_of as env;

    #[test]
    fn defaults_are_calicos() {
        let s = Settings::from_env(&env(&[]), "Node-1").unwrap();
        assert_eq!(s.node_name, "node-1");
        assert_eq!(s.ipv4, AddressSetting::Autodetect(Method::FirstFound));
        assert_eq!(s.ipv6, AddressSetting::None);
        assert_eq!(s.backend, Backend::Bird);
        assert_eq!(s.bird_ctl(), PathBuf::from("/var/run/calico/bird.ctl"));
        assert_eq!(s.vxlan, VxlanConfig::default());
        assert_eq!(s.route_refresh, Some(Duration::from_secs(90)));
        assert!(!s.wait_for_datastore);
        assert_eq!(s.tunnel_mtu, dataplane::mtu::Configured::default());
        let s = Settings::from_env(&env(&[("FELIX_VXLANMTU", "1400"), ("FELIX_IPINIPMTU", "0")]), "h").unwrap();
        assert_eq!(s.tunnel_mtu, dataplane::mtu::Configured { vxlan: Some(1400), ..Default::default() });
        assert!(Settings::from_env(&env(&[("WAIT_FOR_DATASTORE", "true")]), "h").unwrap().wait_for_datastore);
        let s = Settings::from_env(&env(&[("FELIX_ROUTEREFRESHINTERVAL", "0")]), "h").unwrap();
        assert_eq!(s.route_refresh, None, "0 turns it off, as Felix's");
        let s = Settings::from_env(&env(&[("FELIX_ROUTEREFRESHINTERVAL", "0.5")]), "h").unwrap();
        assert_eq!(s.route_refresh, Some(Duration::from_millis(500)));
    }

    #[test]
    fn values_parse_and_bad_ones_name_their_variable() {
        let s = Settings::from_env(&env(&[("NODENAME", "n1"), ("IP", "10.0.0.1/24"), ("IP6", "fd00::1"), ("AS", "65001")]), "h").unwrap();
        assert_eq!(s.ipv4, AddressSetting::Fixed("10.0.0.1/24".parse().unwrap()));
        assert_eq!(s.ipv6, AddressSetting::Fixed("fd00::1/128".parse().unwrap()));
        assert_eq!(s.as_number, Some(AsNumber(65001)));
        for (pairs, var) in [
            (vec![("IP", "10.0.0.300")], "IP"),
            (vec![("IP", "fd00::1")], "IP"),
            (vec![("IP6", "10.0.0.1")], "IP6"),
            (vec![("AS", "4294967296")], "AS"),
            (vec![("AS", "-1")], "AS"),
            (vec![("IP_AUTODETECTION_METHOD", "sometimes")], "IP_AUTODETECTION_METHOD"),
            (vec![("IP_AUTODETECTION_METHOD", "interface=(")], "IP_AUTODETECTION_METHOD"),
            (vec![("CALICO_NETWORKING_BACKEND", "gobgp")], "CALICO_NETWORKING_BACKEND"),
            (vec![("CALICO_ROUTER_ID", "x")], "CALICO_ROUTER_ID"),
            (vec![("NODENAME", "Bad_Name")], "NODENAME"),
            (vec![("DATASTORE_TYPE", "etcdv3")], "datastore"),
            (vec![("FELIX_VXLANVNI", "0")], "FELIX_VXLANVNI"),
            (vec![("FELIX_ROUTEREFRESHINTERVAL", "-1")], "FELIX_ROUTEREFRESHINTERVAL"),
            (vec![("FELIX_ROUTEREFRESHINTERVAL", "NaN")], "FELIX_ROUTEREFRESHINTERVAL"),
            (vec![("FELIX_ROUTEREFRESHINTERVAL", "soon")], "FELIX_ROUTEREFRESHINTERVAL"),
            (vec![("FELIX_VXLANMTU", "-1")], "FELIX_VXLANMTU"),
            (vec![("FELIX_VXLANMTU", "70000")], "FELIX_VXLANMTU"),
            (vec![("FELIX_VXLANMTUV6", "1000")], "FELIX_VXLANMTUV6"),
        ] {
            let e = Settings::from_env(&env(&pairs), "h").unwrap_err();
            assert_eq!(e.var, var, "{pairs:?}: {e}");
        }
    }
}
