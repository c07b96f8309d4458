//! BGPConfiguration (`api/pkg/apis/projectcalico/v3/bgpconfig.go`): `default` is the cluster's, `node.<name>`
//! a node's own (only `listenPort`, `logSeverityScreen` and `prefixAdvertisements` count there, and the
//! cluster-wide fields are refused: `clientv3/bgpconfig.go ValidateDefaultOnlyFields`). Stored defaults are
//! the CRD's (`logSeverityScreen: Info`, `serviceLoadBalancerAggregation: Enabled`), filled into `default`
//! only so a node's object never overrides the cluster's log level; the rest default at use (the
//! `*_or_default` accessors), as confd applies them.
use super::bgppeer::BgpPassword;
use super::kinds::BGP_CONFIGURATION;
use super::validate::{FieldError, Spec};
use super::values::{check_name, empty_is_none, is_default, str_enum, AsNumber, Cidr, Duration};
use super::{Metadata, NoStatus, Resource};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

pub type BgpConfiguration = Resource<BgpConfigurationSpec>;

pub const KIND: &str = "BGPConfiguration";
/// The cluster-wide configuration's name.
pub const DEFAULT_NAME: &str = "default";
pub const DEFAULT_AS_NUMBER: AsNumber = AsNumber(64512);
pub const DEFAULT_LISTEN_PORT: u16 = 179;
pub const DEFAULT_LOG_SEVERITY: &str = "Info";
pub const DEFAULT_ROUTE_PRIORITY: i64 = 1024;
const MAX_COMMUNITIES: usize = 500;
const MAX_PREFIX_ADVERTISEMENTS: usize = 500;
const MAX_COMMUNITIES_PER_PREFIX: usize = 50;
const LOG_SEVERITIES: [&str; 6] = ["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];

str_enum! {
    /// Where BIRD listens: every address (`None`) or only the node's (`NodeIP`).
    pub enum BindMode { None = "None", NodeIp = "NodeIP" }
}
str_enum! {
    pub enum ServiceLoadBalancerAggregation { Enabled = "Enabled", Disabled = "Disabled" }
}
str_enum! {
    /// Which cluster routes BIRD programs (the rest are Felix's); must agree with FelixConfiguration's.
    pub enum ProgramClusterRoutes {
        Enabled = "Enabled",
        Disabled = "Disabled",
        EnabledIpipOnly = "EnabledIPIPOnly",
        EnabledNoEncapOnly = "EnabledNoEncapOnly",
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpConfigurationSpec {
    /// `Trace`..`Fatal`, any case.
    #[serde(rename = "logSeverityScreen", default, skip_serializing_if = "String::is_empty")]
    pub log_severity_screen: String,
    #[serde(rename = "nodeToNodeMeshEnabled", default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    #[serde(rename = "asNumber", default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(rename = "serviceLoadBalancerIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub service_load_balancer_ips: Vec<ServiceIpBlock>,
    #[serde(rename = "serviceExternalIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub service_external_ips: Vec<ServiceIpBlock>,
    #[serde(rename = "serviceClusterIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub service_cluster_ips: Vec<ServiceIpBlock>,
    #[serde(rename = "serviceLoadBalancerAggregation", default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<ServiceLoadBalancerAggregation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    #[serde(rename = "prefixAdvertisements", default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// 0 (Go's zero value) means not set.
    #[serde(rename = "listenPort", default, skip_serializing_if = "is_default")]
    pub listen_port: u16,
    #[serde(rename = "nodeMeshPassword", default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BgpPassword>,
    #[serde(rename = "nodeMeshMaxRestartTime", default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<Duration>,
    #[serde(rename = "bindMode", default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
    #[serde(rename = "ignoredInterfaces", default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    #[serde(rename = "localWorkloadPeeringIPV4", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub local_workload_peering_ipv4: Option<Ipv4Addr>,
    #[serde(rename = "localWorkloadPeeringIPV6", default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub local_workload_peering_ipv6: Option<Ipv6Addr>,
    #[serde(rename = "programClusterRoutes", default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<ProgramClusterRoutes>,
    #[serde(rename = "ipv4NormalRoutePriority", default, skip_serializing_if = "Option::is_none")]
    pub ipv4_normal_route_priority: Option<i64>,
    #[serde(rename = "ipv6NormalRoutePriority", default, skip_serializing_if = "Option::is_none")]
    pub ipv6_normal_route_priority: Option<i64>,
}

/// A block of service addresses to advertise (`serviceClusterIPs` and the like): a strictly masked CIDR.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceIpBlock {
    #[serde(default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Cidr>,
}

/// A named BGP community value: standard `aa:nn` (16-bit parts) or large `aa:nn:mm` (32-bit parts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Communities attached to routes in `cidr` when advertised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    #[serde(default, deserialize_with = "empty_is_none", skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Cidr>,
    /// Community names from `spec.communities`, or values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

impl Resource<BgpConfigurationSpec> {
    pub fn bgp_configuration(name: impl Into<String>, spec: BgpConfigurationSpec) -> BgpConfiguration {
        Resource::new(KIND, Metadata::named(name), spec)
    }
}

impl BgpConfigurationSpec {
    pub fn mesh_enabled(&self) -> bool {
        self.node_to_node_mesh_enabled.unwrap_or(true)
    }

    pub fn as_number_or_default(&self) -> AsNumber {
        self.as_number.unwrap_or(DEFAULT_AS_NUMBER)
    }

    pub fn listen_port_or_default(&self) -> u16 {
        if self.listen_port == 0 {
            DEFAULT_LISTEN_PORT
        } else {
            self.listen_port
        }
    }

    pub fn bind_mode_or_default(&self) -> BindMode {
        self.bind_mode.unwrap_or(BindMode::None)
    }

    /// Calico's current default; v3.32 had only Enabled/Disabled, defaulting to Enabled.
    pub fn program_cluster_routes_or_default(&self) -> ProgramClusterRoutes {
        self.program_cluster_routes.unwrap_or(ProgramClusterRoutes::EnabledNoEncapOnly)
    }

    pub fn ipv4_normal_route_priority_or_default(&self) -> i64 {
        self.ipv4_normal_route_priority.unwrap_or(DEFAULT_ROUTE_PRIORITY)
    }

    pub fn ipv6_normal_route_priority_or_default(&self) -> i64 {
        self.ipv6_normal_route_priority.unwrap_or(DEFAULT_ROUTE_PRIORITY)
    }
}

/// Why `v` is not a community value: `aa:nn` with 16-bit parts or `aa:nn:mm` with 32-bit parts.
pub fn check_community_value(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(':').collect();
    let numeric = parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let fits = |max: u64| parts.iter().all(|p| p.parse::<u64>().is_ok_and(|n| n <= max));
    match parts.len() {
        2 if numeric && fits(u64::from(u16::MAX)) => Ok(()),
        3 if numeric && fits(u64::from(u32::MAX)) => Ok(()),
        2 | 3 if numeric => Err(format!("{v:?}: a standard community's parts are at most 65535, a large community's at most 4294967295")),
        _ => Err(format!("{v:?} is not a community value (aa:nn or aa:nn:mm)")),
    }
}

fn check_service_blocks(field: &str, blocks: &[ServiceIpBlock]) -> Result<(), FieldError> {
    for (i, b) in blocks.iter().enumerate() {
        if let Some(c) = b.cidr.filter(|c| !c.is_masked()) {
            return Err(FieldError::new(format!("{field}[{i}].cidr"), format!("{c} has host bits set (network is {})", c.net().trunc())));
        }
    }
    Ok(())
}

fn is_interface_pattern(s: &str) -> bool {
    (1..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'*' | b'-'))
}

impl Spec for BgpConfigurationSpec {
    type Status = NoStatus;
    const KIND: &'static super::KindInfo = &BGP_CONFIGURATION;

    fn check(res: &mut BgpConfiguration) -> Result<(), FieldError> {
        let global = res.metadata.name == DEFAULT_NAME;
        let s = &mut res.spec;
        if !s.log_severity_screen.is_empty() && !LOG_SEVERITIES.iter().any(|l| l.eq_ignore_ascii_case(&s.log_severity_screen)) {
            return Err(FieldError::new(
                "spec.logSeverityScreen",
                format!("{:?} must be one of {} (any case)", s.log_severity_screen, LOG_SEVERITIES.join(", ")),
            ));
        }
        if !global {
            let cluster_wide = [
                ("spec.nodeToNodeMeshEnabled", s.node_to_node_mesh_enabled.is_some()),
                ("spec.asNumber", s.as_number.is_some()),
                ("spec.serviceLoadBalancerIPs", !s.service_load_balancer_ips.is_empty()),
                ("spec.serviceExternalIPs", !s.service_external_ips.is_empty()),
                ("spec.serviceClusterIPs", !s.service_cluster_ips.is_empty()),
                ("spec.nodeMeshPassword", s.node_mesh_password.is_some()),
                ("spec.nodeMeshMaxRestartTime", s.node_mesh_max_restart_time.is_some()),
            ];
            if let Some((field, _)) = cluster_wide.iter().find(|(_, set)| *set) {
                return Err(FieldError::new(*field, "can only be set on the default BGPConfiguration"));
            }
        }
        if s.as_number.is_some_and(|a| a.is_zero()) {
            return Err(FieldError::new("spec.asNumber", "AS 0 is reserved"));
        }
        if s.node_to_node_mesh_enabled == Some(false) {
            if s.node_mesh_password.is_some() {
                return Err(FieldError::new("spec.nodeMeshPassword", "cannot be set when nodeToNodeMeshEnabled is false"));
            }
            if s.node_mesh_max_restart_time.is_some() {
                return Err(FieldError::new("spec.nodeMeshMaxRestartTime", "cannot be set when nodeToNodeMeshEnabled is false"));
            }
        }
        if s.node_mesh_password.as_ref().is_some_and(|p| p.secret_key_ref.is_none()) {
            return Err(FieldError::new("spec.nodeMeshPassword", "needs a secretKeyRef"));
        }
        if s.node_mesh_max_restart_time.is_some_and(|d| d.is_negative()) {
            return Err(FieldError::new("spec.nodeMeshMaxRestartTime", "must not be negative"));
        }
        check_service_blocks("spec.serviceLoadBalancerIPs", &s.service_load_balancer_ips)?;
        check_service_blocks("spec.serviceExternalIPs", &s.service_external_ips)?;
        check_service_blocks("spec.serviceClusterIPs", &s.service_cluster_ips)?;
        if s.communities.len() > MAX_COMMUNITIES {
            return Err(FieldError::new("spec.communities", format!("has {} entries, at most {MAX_COMMUNITIES}", s.communities.len())));
        }
        for (i, c) in s.communities.iter().enumerate() {
            check_name(&c.name).map_err(|e| FieldError::new(format!("spec.communities[{i}].name"), e))?;
            if c.value.is_empty() {
                return Err(FieldError::new(format!("spec.communities[{i}].value"), "is required"));
            }
            if c.value.len() > 40 {
                return Err(FieldError::new(format!("spec.communities[{i}].value"), "is longer than 40 characters"));
            }
            check_community_value(&c.value).map_err(|e| FieldError::new(format!("spec.communities[{i}].value"), e))?;
        }
        if !s.communities.is_empty() && s.prefix_advertisements.is_empty() {
            return Err(FieldError::new("spec.communities", "are defined but not used in prefixAdvertisements"));
        }
        if s.prefix_advertisements.len() > MAX_PREFIX_ADVERTISEMENTS {
            return Err(FieldError::new(
                "spec.prefixAdvertisements",
                format!("has {} entries, at most {MAX_PREFIX_ADVERTISEMENTS}", s.prefix_advertisements.len()),
            ));
        }
        for (i, pa) in s.prefix_advertisements.iter().enumerate() {
            let at = |f: &str| format!("spec.prefixAdvertisements[{i}].{f}");
            match pa.cidr {
                None => return Err(FieldError::new(at("cidr"), "is required")),
                Some(c) if !c.is_masked() => {
                    return Err(FieldError::new(at("cidr"), format!("{c} has host bits set (network is {})", c.net().trunc())))
                }
                Some(_) => {}
            }
            if pa.communities.is_empty() {
                return Err(FieldError::new(at("communities"), "is required"));
            }
            if pa.communities.len() > MAX_COMMUNITIES_PER_PREFIX {
                return Err(FieldError::new(
                    at("communities"),
                    format!("has {} entries, at most {MAX_COMMUNITIES_PER_PREFIX}", pa.communities.len()),
                ));
            }
            for (j, c) in pa.communities.iter().enumerate() {
                if s.communities.iter().any(|d| d.name == *c) {
                    continue;
                }
                if let Err(e) = check_community_value(c) {
                    // Names cannot hold ':', so anything with one was meant as a value.
                    let why = if c.contains(':') { e } else { format!("{c:?} is neither a community value nor the name of one in spec.communities") };
                    return Err(FieldError::new(format!("spec.prefixAdvertisements[{i}].communities[{j}]"), why));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (i, iface) in s.ignored_interfaces.iter().enumerate() {
            if !is_interface_pattern(iface) {
                return Err(FieldError::new(
                    format!("spec.ignoredInterfaces[{i}]"),
                    format!("{iface:?} must be 1-15 letters, digits, '_', '.', '-' or '*'"),
                ));
            }
            if !seen.insert(iface) {
                return Err(FieldError::new(format!("spec.ignoredInterfaces[{i}]"), format!("{iface:?} is listed twice")));
            }
        }
        for (field, p) in
            [("spec.ipv4NormalRoutePriority", s.ipv4_normal_route_priority), ("spec.ipv6NormalRoutePriority", s.ipv6_normal_route_priority)]
        {
            if p.is_some_and(|p| !(1..=2_147_483_646).contains(&p)) {
                return Err(FieldError::new(field, "must be between 1 and 2147483646"));
            }
        }
        if global {
            if s.log_severity_screen.is_empty() {
                s.log_severity_screen = DEFAULT_LOG_SEVERITY.into();
            }
            s.service_load_balancer_aggregation.get_or_insert(ServiceLoadBalancerAggregation::Enabled);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::validate;
    use serde_json::{json, Value};

    fn doc(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": name}, "spec": spec})
    }

    fn err(name: &str, spec: Value) -> (String, String) {
        match validate::parse::<BgpConfigurationSpec>(&doc(name, spec.clone())) {
            Err(crate::ModelError::Invalid { field, reason, .. }) => (field, reason),
            other => panic!("{spec}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_global_configuration_gets_the_crd_defaults_and_a_nodes_does_not() {
        let stored = validate::validate::<BgpConfigurationSpec>(&doc("default", json!({"nodeToNodeMeshEnabled": false}))).unwrap();
        assert_eq!(stored["spec"], json!({"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": false, "serviceLoadBalancerAggregation": "Enabled"}));
        let node = validate::validate::<BgpConfigurationSpec>(&doc("node.node-1", json!({"listenPort": 1790}))).unwrap();
        assert_eq!(node["spec"], json!({"listenPort": 1790}));
        let empty = validate::parse::<BgpConfigurationSpec>(
            &json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration", "metadata": {"name": "default"}}),
        )
        .unwrap();
        let s = &empty.spec;
        assert!(s.mesh_enabled());
        assert_eq!((s.as_number_or_default(), s.listen_port_or_default(), s.bind_mode_or_default()), (AsNumber(64512), 179, BindMode::None));
        assert_eq!(
            (s.ipv4_normal_route_priority_or_default(), s.program_cluster_routes_or_default()),
            (1024, ProgramClusterRoutes::EnabledNoEncapOnly)
        );
        let debug = validate::parse::<BgpConfigurationSpec>(&doc("default", json!({"logSeverityScreen": "debug"}))).unwrap();
        assert_eq!(debug.spec.log_severity_screen, "debug", "kept as written");
    }

    #[test]
    fn calicos_configuration_rules_name_the_field() {
        for (name, spec, field, reason) in [
            ("default", json!({"logSeverityScreen": "Verbose"}), "spec.logSeverityScreen", "must be one of"),
            ("node.n1", json!({"asNumber": 64512}), "spec.asNumber", "default BGPConfiguration"),
            ("node.n1", json!({"nodeToNodeMeshEnabled": true}), "spec.nodeToNodeMeshEnabled", "default BGPConfiguration"),
            ("node.n1", json!({"serviceClusterIPs": [{"cidr": "10.96.0.0/12"}]}), "spec.serviceClusterIPs", "default BGPConfiguration"),
            ("node.n1", json!({"nodeMeshMaxRestartTime": "10s"}), "spec.nodeMeshMaxRestartTime", "default BGPConfiguration"),
            ("default", json!({"asNumber": 0}), "spec.asNumber", "reserved"),
            ("default", json!({"asNumber": "abc"}), "spec.asNumber", "not an AS number"),
            (
                "default",
                json!({"nodeToNodeMeshEnabled": false, "nodeMeshPassword": {"secretKeyRef": {"name": "s", "key": "k"}}}),
                "spec.nodeMeshPassword",
                "nodeToNodeMeshEnabled is false",
            ),
            (
                "default",
                json!({"nodeToNodeMeshEnabled": false, "nodeMeshMaxRestartTime": "120s"}),
                "spec.nodeMeshMaxRestartTime",
                "nodeToNodeMeshEnabled is false",
            ),
            ("default", json!({"nodeMeshMaxRestartTime": "two minutes"}), "spec.nodeMeshMaxRestartTime", "not a duration"),
            ("default", json!({"serviceExternalIPs": [{"cidr": "10.0.0.1/24"}]}), "spec.serviceExternalIPs[0].cidr", "host bits"),
            ("default", json!({"serviceLoadBalancerIPs": [{"cidr": "nope"}]}), "spec.serviceLoadBalancerIPs[0].cidr", "not a CIDR"),
            ("default", json!({"communities": [{"name": "c", "value": "1:2"}]}), "spec.communities", "not used in prefixAdvertisements"),
            (
                "default",
                json!({"communities": [{"name": "c", "value": "65536:1"}], "prefixAdvertisements": [{"cidr": "10.0.0.0/24", "communities": ["c"]}]}),
                "spec.communities[0].value",
                "at most 65535",
            ),
            (
                "default",
                json!({"communities": [{"name": "C_1", "value": "1:1"}], "prefixAdvertisements": [{"cidr": "10.0.0.0/24", "communities": ["1:1"]}]}),
                "spec.communities[0].name",
                "lower case",
            ),
            (
                "default",
                json!({"communities": [{"name": "c"}], "prefixAdvertisements": [{"cidr": "10.0.0.0/24", "communities": ["c"]}]}),
                "spec.communities[0].value",
                "required",
            ),
            (
                "default",
                json!({"prefixAdvertisements": [{"cidr": "10.0.0.0/24", "communities": ["undefined"]}]}),
                "spec.prefixAdvertisements[0].communities[0]",
                "neither",
            ),
            (
                "default",
                json!({"prefixAdvertisements": [{"cidr": "10.0.0.0/24", "communities": ["1:2:3:4"]}]}),
                "spec.prefixAdvertisements[0].communities[0]",
                "not a community value",
            ),
            ("default", json!({"prefixAdvertisements": [{"cidr": "10.0.0.0/24"}]}), "spec.prefixAdvertisements[0].communities", "required"),
            ("default", json!({"prefixAdvertisements": [{"communities": ["1:1"]}]}), "spec.prefixAdvertisements[0].cidr", "required"),
            ("default", json!({"listenPort": 65536}), "spec.listenPort", ""),
            ("default", json!({"bindMode": "All"}), "spec.bindMode", "None, NodeIP"),
            ("default", json!({"ignoredInterfaces": ["eth0", "eth0"]}), "spec.ignoredInterfaces[1]", "twice"),
            ("default", json!({"ignoredInterfaces": ["a-very-long-interface-name"]}), "spec.ignoredInterfaces[0]", "1-15"),
            ("default", json!({"localWorkloadPeeringIPV4": "fd00::1"}), "spec.localWorkloadPeeringIPV4", ""),
            ("default", json!({"programClusterRoutes": "Sometimes"}), "spec.programClusterRoutes", "must be one of"),
            ("default", json!({"ipv4NormalRoutePriority": 0}), "spec.ipv4NormalRoutePriority", "between 1 and"),
            ("default", json!({"nodeToNodeMeshEnabled": "yes"}), "spec.nodeToNodeMeshEnabled", "expected a boolean"),
            ("default", json!({"meshEnabled": true}), "spec.meshEnabled", "unknown field"),
        ] {
            let (f, r) = err(name, spec.clone());
            assert_eq!(f, field, "{spec}: {r}");
            assert!(r.contains(reason), "{spec}: {r:?} should say {reason:?}");
        }
    }

    #[test]
    fn community_values() {
        for good in ["63400:120", "0:0", "65535:65535", "63400:300:100", "4294967295:4294967295:4294967295"] {
            assert_eq!(check_community_value(good), Ok(()), "{good}");
        }
        for bad in ["", "1", "1:", ":1", "a:b", "1:2:3:4", "65536:1", "4294967296:1:1", "-1:1"] {
            assert!(check_community_value(bad).is_err(), "{bad}");
        }
    }
}
