//! IP pools: the `projectcalico.org/v3` IPPool resource as stored, its validation into a typed `Pool` with
//! Calico's defaults (`libcalico-go/lib/clientv3/ippool.go validateAndSetDefaults`, the CRD's CEL rules in
//! `api/pkg/apis/projectcalico/v3/ippool.go`), and the arithmetic that maps a pool's block indices to block
//! CIDRs and back.
use super::kinds::IPPOOL;
use super::validate::{FieldError, Spec};
use super::values::{check_name, is_default, str_enum, MAX_SELECTOR_LEN};
use super::{Metadata, Resource};
use crate::error::ModelError;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use super::values::Selector;

/// The default pool used when the store holds no pools at all (Calico's default IPv4 pool).
pub const DEFAULT_POOL_NAME: &str = "default-ipv4-ippool";

/// The stored form: a v3 resource, as `calicoctl get ippool -o json` prints it.
pub type PoolResource = Resource<PoolSpec, PoolStatus>;

pub const KIND: &str = "IPPool";

impl Resource<PoolSpec, PoolStatus> {
    pub fn ippool(name: impl Into<String>, spec: PoolSpec) -> PoolResource {
        Resource::new(KIND, Metadata::named(name), spec)
    }
}

str_enum! {
    /// IPIP or VXLAN encapsulation of traffic to the pool's addresses.
    pub enum EncapMode { Never = "Never", Always = "Always", CrossSubnet = "CrossSubnet" }
}
str_enum! {
    /// What the pool's addresses may be given to.
    pub enum AllowedUse { Workload = "Workload", Tunnel = "Tunnel", LoadBalancer = "LoadBalancer" }
}
str_enum! {
    /// `Manual` pools are used only when asked for by name or CIDR.
    pub enum AssignmentMode { Automatic = "Automatic", Manual = "Manual" }
}

/// Calico's default `allowedUses`.
pub const DEFAULT_ALLOWED_USES: [AllowedUse; 2] = [AllowedUse::Workload, AllowedUse::Tunnel];

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub cidr: String,
    #[serde(rename = "blockSize", default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(rename = "ipipMode", default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<String>,
    #[serde(rename = "vxlanMode", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<String>,
    #[serde(rename = "natOutgoing", default, skip_serializing_if = "is_default")]
    pub nat_outgoing: bool,
    #[serde(rename = "nodeSelector", default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub disabled: bool,
    #[serde(rename = "disableBGPExport", default, skip_serializing_if = "is_default")]
    pub disable_bgp_export: bool,
    /// Both this and `nodeSelector` must match for the pool to be used.
    #[serde(rename = "namespaceSelector", default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(rename = "allowedUses", default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
    #[serde(rename = "assignmentMode", default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

/// Conditions Calico's controllers set (`Allocatable`); kept as given.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<serde_json::Value>,
}

impl Spec for PoolSpec {
    type Status = PoolStatus;
    const KIND: &'static super::KindInfo = &IPPOOL;

    fn check(res: &mut PoolResource) -> Result<(), FieldError> {
        let pool = Pool::from_spec(&res.metadata.name, &res.spec)?;
        res.spec = pool.to_spec();
        Ok(())
    }
}

/// A validated pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
    pub ipip_mode: EncapMode,
    pub vxlan_mode: EncapMode,
    pub nat_outgoing: bool,
    pub node_selector: Selector,
    pub namespace_selector: Option<Selector>,
    pub disabled: bool,
    pub disable_bgp_export: bool,
    pub allowed_uses: Vec<AllowedUse>,
    pub assignment_mode: AssignmentMode,
}

impl Pool {
    /// The pool of a stored or given resource; errors are `InvalidPool`, naming the field in the reason.
    pub fn from_resource(r: &PoolResource) -> Result<Pool, ModelError> {
        let name = &r.metadata.name;
        let bad = |what: String| ModelError::InvalidPool { name: name.clone(), reason: what };
        validate_pool_name(name).map_err(|e| bad(e.to_string()))?;
        if !r.kind.is_empty() && r.kind != KIND {
            return Err(bad(format!("kind must be IPPool, got {:?}", r.kind)));
        }
        Pool::from_spec(name, &r.spec).map_err(|e| bad(format!("{} {}", e.field.strip_prefix("spec.").unwrap_or(&e.field), e.reason)))
    }

    /// Calico's rules for a pool's spec, its defaults filled in. Rules that need the other pools (overlap,
    /// an unchanged cidr and blockSize, a LoadBalancer pool staying one) are the writer's.
    pub fn from_spec(name: &str, spec: &PoolSpec) -> Result<Pool, FieldError> {
        let bad = |field: &str, why: String| FieldError::new(format!("spec.{field}"), why);
        let cidr: IpNet = spec.cidr.parse().map_err(|_| bad("cidr", format!("{:?} is not a CIDR", spec.cidr)))?;
        if cidr.addr() != cidr.network() {
            return Err(bad("cidr", format!("{cidr} has host bits set (network is {})", cidr.trunc())));
        }
        let (default, range) = match cidr {
            IpNet::V4(_) => (26, 20..=32),
            IpNet::V6(_) => (122, 116..=128),
        };
        // Go's zero value means "not set".
        let block_size = spec.block_size.filter(|b| *b != 0).unwrap_or(default);
        if !range.contains(&block_size) {
            return Err(bad("blockSize", format!("{block_size} is outside {}..={}", range.start(), range.end())));
        }
        // Calico lets a disabled pool be smaller than a block; calico-rs does not, so every stored pool has at
        // least one block for the block arithmetic below.
        if cidr.prefix_len() > block_size {
            return Err(bad("cidr", format!("{cidr} is smaller than one block (blockSize {block_size})")));
        }
        let link_local: IpNet = match cidr {
            IpNet::V4(_) => IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16)),
            IpNet::V6(_) => IpNet::V6(ipnet::Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10)),
        };
        if cidr.contains(&link_local) || link_local.contains(&cidr) {
            return Err(bad("cidr", format!("{cidr} overlaps the link-local range {link_local}")));
        }
        let mode = |field: &str, v: &Option<String>| -> Result<EncapMode, FieldError> {
            match v.as_deref() {
                None | Some("") => Ok(EncapMode::Never),
                Some(m) => m.parse().map_err(|_| bad(field, format!("{m:?} must be Never, Always or CrossSubnet"))),
            }
        };
        let ipip_mode = mode("ipipMode", &spec.ipip_mode)?;
        let vxlan_mode = mode("vxlanMode", &spec.vxlan_mode)?;
        if ipip_mode != EncapMode::Never && vxlan_mode != EncapMode::Never {
            return Err(bad("vxlanMode", "cannot be enabled together with ipipMode".into()));
        }
        if ipip_mode != EncapMode::Never && cidr.addr().is_ipv6() {
            return Err(bad("ipipMode", "IPIP is not supported for IPv6 pools".into()));
        }
        let selector = |field: &str, src: &str| -> Result<Selector, FieldError> {
            if src.len() > MAX_SELECTOR_LEN {
                return Err(bad(field, format!("is {} characters long, at most {MAX_SELECTOR_LEN}", src.len())));
            }
            let s = Selector::parse(src).map_err(|e| bad(field, format!("{:?}: {} at {}", e.selector(), e.problem(), e.offset())))?;
            if s.uses_global() {
                return Err(bad(field, "global() is not valid in an IPPool selector".into()));
            }
            Ok(s)
        };
        let node_selector = selector("nodeSelector", spec.node_selector.as_deref().unwrap_or("all()"))?;
        let namespace_selector = match spec.namespace_selector.as_deref() {
            None | Some("") => None,
            Some(s) => Some(selector("namespaceSelector", s)?),
        };
        let mut allowed_uses = spec.allowed_uses.clone();
        if allowed_uses.is_empty() {
            allowed_uses = DEFAULT_ALLOWED_USES.to_vec();
        }
        for (i, u) in allowed_uses.iter().enumerate() {
            if allowed_uses[..i].contains(u) {
                return Err(bad(&format!("allowedUses[{i}]"), format!("{u} is listed twice")));
            }
        }
        let has = |u: AllowedUse| allowed_uses.contains(&u);
        if has(AllowedUse::LoadBalancer) {
            if has(AllowedUse::Workload) || has(AllowedUse::Tunnel) {
                return Err(bad("allowedUses", "LoadBalancer cannot be combined with Workload or Tunnel".into()));
            }
            if ipip_mode != EncapMode::Never || vxlan_mode != EncapMode::Never {
                return Err(bad("allowedUses", "a LoadBalancer pool cannot have IPIP or VXLAN enabled".into()));
            }
            if spec.disable_bgp_export {
                return Err(bad("disableBGPExport", "a LoadBalancer pool cannot disable BGP export".into()));
            }
            if node_selector.source != "all()" {
                return Err(bad("nodeSelector", "a LoadBalancer pool's nodeSelector must be all()".into()));
            }
        }
        if has(AllowedUse::Tunnel) && namespace_selector.is_some() {
            return Err(bad("namespaceSelector", "a pool used for Tunnel addresses cannot have a namespaceSelector".into()));
        }
        Ok(Pool {
            name: name.to_string(),
            cidr,
            block_size,
            ipip_mode,
            vxlan_mode,
            nat_outgoing: spec.nat_outgoing,
            node_selector,
            namespace_selector,
            disabled: spec.disabled,
            disable_bgp_export: spec.disable_bgp_export,
            allowed_uses,
            assignment_mode: spec.assignment_mode.unwrap_or(AssignmentMode::Automatic),
        })
    }

    /// The spec with every default filled in, as stored.
    pub fn to_spec(&self) -> PoolSpec {
        PoolSpec {
            cidr: self.cidr.to_string(),
            block_size: Some(self.block_size),
            ipip_mode: Some(self.ipip_mode.to_string()),
            vxlan_mode: Some(self.vxlan_mode.to_string()),
            nat_outgoing: self.nat_outgoing,
            node_selector: Some(self.node_selector.source.clone()),
            disabled: self.disabled,
            disable_bgp_export: self.disable_bgp_export,
            namespace_selector: self.namespace_selector.as_ref().map(|s| s.source.clone()),
            allowed_uses: self.allowed_uses.clone(),
            assignment_mode: Some(self.assignment_mode),
        }
    }

    /// The resource with every default filled in, as stored.
    pub fn to_resource(&self) -> PoolResource {
        PoolResource::ippool(self.name.clone(), self.to_spec())
    }

    /// Calico's default pool: 192.168.0.0/16, /26 blocks, every node, natOutgoing.
    pub fn default_v4() -> Pool {
        Pool {
            name: DEFAULT_POOL_NAME.into(),
            cidr: IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16)),
            block_size: 26,
            ipip_mode: EncapMode::Never,
            vxlan_mode: EncapMode::Never,
            nat_outgoing: true,
            node_selector: Selector::all(),
            namespace_selector: None,
            disabled: false,
            disable_bgp_export: false,
            allowed_uses: DEFAULT_ALLOWED_USES.to_vec(),
            assignment_mode: AssignmentMode::Automatic,
        }
    }

    /// Whether the pool's addresses may be used for `what`.
    pub fn allows(&self, what: AllowedUse) -> bool {
        self.allowed_uses.contains(&what)
    }

    /// Whether the pool is picked without being asked for (`assignmentMode: Automatic`).
    pub fn is_automatic(&self) -> bool {
        self.assignment_mode == AssignmentMode::Automatic
    }

    pub fn is_v6(&self) -> bool {
        self.cidr.addr().is_ipv6()
    }

    /// Number of blocks in the pool (can exceed u64 for IPv6 pools, hence u128).
    pub fn block_count(&self) -> u128 {
        1u128 << (self.block_size - self.cidr.prefix_len())
    }

    fn block_shift(&self) -> u32 {
        u32::from(self.cidr.max_prefix_len() - self.block_size)
    }

    /// The `i`-th block CIDR of the pool.
    pub fn block_cidr(&self, i: u128) -> IpNet {
        let base = ip_to_u128(self.cidr.network());
        let addr = u128_to_ip(base + (i << self.block_shift()), self.is_v6());
        IpNet::new(addr, self.block_size).unwrap_or(self.cidr)
    }

    /// Index of the block that contains `ip` (which must be inside the pool).
    pub fn block_index(&self, ip: IpAddr) -> u128 {
        (ip_to_u128(ip) - ip_to_u128(self.cidr.network())) >> self.block_shift()
    }

    pub fn block_for_ip(&self, ip: IpAddr) -> IpNet {
        self.block_cidr(self.block_index(ip))
    }

    pub fn contains_block(&self, block: &IpNet) -> bool {
        self.cidr.contains(block) && block.prefix_len() == self.block_size
    }

    /// Where this host starts looking for a free block: spread hosts over the pool like Calico (FNV-32 of the
    /// host name), deterministic so one host's blocks cluster together.
    pub fn start_index(&self, host: &str) -> u128 {
        u128::from(fnv32(host.as_bytes())) % self.block_count()
    }
}

pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub fn u128_to_ip(n: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

fn fnv32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Kubernetes object-name rules (DNS-1123 subdomain), which Calico applies to pool names.
pub fn validate_pool_name(name: &str) -> Result<(), ModelError> {
    check_name(name).map_err(|e| ModelError::InvalidName(format!("invalid pool name {name:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::validate;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    fn res(cidr: &str, bs: Option<u8>) -> PoolResource {
        PoolResource::ippool("p", PoolSpec { cidr: cidr.into(), block_size: bs, ..Default::default() })
    }

    #[test]
    fn block_size_defaults_and_limits() {
        assert_eq!(Pool::from_resource(&res("10.0.0.0/16", None)).unwrap().block_size, 26);
        assert_eq!(Pool::from_resource(&res("fd00::/48", None)).unwrap().block_size, 122);
        for bad in [("10.0.0.0/16", 19), ("10.0.0.0/16", 33), ("fd00::/48", 115), ("fd00::/48", 129), ("10.0.0.0/27", 26)] {
            assert!(Pool::from_resource(&res(bad.0, Some(bad.1))).is_err(), "{bad:?}");
        }
        assert!(Pool::from_resource(&res("10.0.0.1/16", None)).is_err(), "host bits");
        assert!(Pool::from_resource(&res("169.254.0.0/20", None)).is_err(), "link-local");
        assert!(Pool::from_resource(&res("not-a-cidr", None)).is_err());
    }

    #[test]
    fn block_arithmetic() {
        let p = Pool::from_resource(&res("10.244.0.0/16", Some(26))).unwrap();
        assert_eq!(p.block_count(), 1024);
        assert_eq!(p.block_cidr(5).to_string(), "10.244.1.64/26");
        assert_eq!(p.block_index("10.244.1.70".parse().unwrap()), 5);
        let p6 = Pool::from_resource(&res("fd00:10:244::/48", None)).unwrap();
        assert_eq!(p6.block_count(), 1u128 << 74);
        assert_eq!(p6.block_cidr(1).to_string(), "fd00:10:244::40/122");
        assert!(p6.start_index("node-1") < p6.block_count());
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [("zone".to_string(), "a".to_string())].into();
        let m = |s: &str| Selector::parse(s).unwrap().matches(&labels);
        assert!(m("all()") && m("") && m("zone == 'a'") && m("zone == \"a\"") && m("has(zone)"));
        assert!(!m("zone == 'b'") && !m("!has(zone)") && m("zone != 'b'") && !m("has(zone) && zone == 'b'"));
        for bad in ["zone = 'a'", "zone == a", "foo(", "has()", "zone in {a}", "zone == 'a' |", "has(zone)\n"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_beyond_conjunctions() {
        let labels: BTreeMap<String, String> =
            [("zone".to_string(), "a".to_string()), ("projectcalico.org/rack".to_string(), "r12".to_string())].into();
        let m = |s: &str| Selector::parse(s).unwrap_or_else(|e| panic!("{e}")).matches(&labels);
        assert!(m("zone == 'b' || zone == 'a'"));
        assert!(m("zone in {'a', 'b'}") && !m("zone in {}") && m("zone not in {}") && m("other not in {'a'}"));
        assert!(m("!has(other)") && !m("!has(zone)") && m("!(zone == 'b')") && m("!zone == 'b'"));
        assert!(m("(zone == 'b' || has(zone)) && projectcalico.org/rack starts with 'r1'"));
        assert!(m("projectcalico.org/rack ends with '2'") && m("projectcalico.org/rack contains '1'"));
        assert!(!m("zone == 'a' && !(has(projectcalico.org/rack) || zone == 'b')"));
        assert_eq!(Selector::parse(" \tzone in {'a'} ").unwrap().source, "zone in {'a'}", "stored as written, trimmed");
        assert_eq!(Selector::parse(" ").unwrap(), Selector::all());
    }

    #[test]
    fn invalid_selector_names_the_pool_and_the_position() {
        let mut r = res("10.0.0.0/16", None);
        r.spec.node_selector = Some("zone == 'a' | zone == 'b'".into());
        let err = Pool::from_resource(&r).unwrap_err();
        assert!(matches!(err, ModelError::InvalidPool { .. }), "{err:?}");
        assert_eq!(err.to_string(), r#"invalid IP pool "p": nodeSelector "zone == 'a' | zone == 'b'": expected '||' at 12"#);
    }

    fn doc(spec: Value) -> Value {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": spec})
    }

    #[test]
    fn stored_pools_carry_calicos_defaults() {
        let stored = validate::validate::<PoolSpec>(&doc(json!({"cidr": "10.244.0.0/16"}))).unwrap();
        assert_eq!(
            stored["spec"],
            json!({"cidr": "10.244.0.0/16", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never", "nodeSelector": "all()",
                   "allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic"})
        );
        assert_eq!(stored["metadata"], json!({"name": "p", "labels": {"a": "b"}}), "metadata is kept");
        assert_eq!(validate::validate::<PoolSpec>(&stored).unwrap(), stored, "what is stored validates to itself");
        let v6 = validate::validate::<PoolSpec>(&doc(json!({"cidr": "fd00:10:244:0::/48", "blockSize": 0, "natOutgoing": true}))).unwrap();
        assert_eq!((v6["spec"]["cidr"].as_str(), v6["spec"]["blockSize"].as_u64()), (Some("fd00:10:244::/48"), Some(122)), "normalised; 0 is unset");
        assert_eq!(v6["spec"]["natOutgoing"], json!(true));
        let lb =
            validate::parse::<PoolSpec>(&doc(json!({"cidr": "10.10.10.0/24", "allowedUses": ["LoadBalancer"], "assignmentMode": "Manual"}))).unwrap();
        let pool = Pool::from_resource(&lb).unwrap();
        assert!(pool.allows(AllowedUse::LoadBalancer) && !pool.allows(AllowedUse::Workload) && !pool.is_automatic());
        let ns = validate::parse::<PoolSpec>(&doc(json!({"cidr": "10.20.0.0/16", "allowedUses": ["Workload"], "namespaceSelector": "team == 'a'"})))
            .unwrap();
        assert_eq!(ns.spec.namespace_selector.as_deref(), Some("team == 'a'"));
        assert!(Pool::default_v4().allows(AllowedUse::Tunnel) && Pool::default_v4().is_automatic());
    }

    #[test]
    fn calicos_pool_rules_name_the_field() {
        for (spec, field, reason) in [
            (json!({}), "spec.cidr", "required"),
            (json!({"cidr": "10.0.0.0"}), "spec.cidr", "not a CIDR"),
            (json!({"cidr": "10.0.0.1/16"}), "spec.cidr", "host bits"),
            (json!({"cidr": "10.0.0.0/16", "blockSize": 19}), "spec.blockSize", "outside 20..=32"),
            (json!({"cidr": "fd00::/48", "blockSize": 26}), "spec.blockSize", "outside 116..=128"),
            (json!({"cidr": "10.0.0.0/16", "blockSize": 300}), "spec.blockSize", "u8"),
            (json!({"cidr": "10.0.0.0/28"}), "spec.cidr", "smaller than one block"),
            (json!({"cidr": "fe80::/64"}), "spec.cidr", "link-local"),
            (json!({"cidr": "10.0.0.0/16", "ipipMode": "Always", "vxlanMode": "Always"}), "spec.vxlanMode", "together with ipipMode"),
            (json!({"cidr": "fd00::/48", "ipipMode": "CrossSubnet"}), "spec.ipipMode", "IPv6"),
            (json!({"cidr": "10.0.0.0/16", "vxlanMode": "always"}), "spec.vxlanMode", "Never, Always or CrossSubnet"),
            (json!({"cidr": "10.0.0.0/16", "nodeSelector": "zone in {a}"}), "spec.nodeSelector", "at 9"),
            (json!({"cidr": "10.0.0.0/16", "nodeSelector": "global()"}), "spec.nodeSelector", "global()"),
            (json!({"cidr": "10.0.0.0/16", "allowedUses": ["Workload"], "namespaceSelector": "has(("}), "spec.namespaceSelector", "at"),
            (json!({"cidr": "10.0.0.0/16", "allowedUses": ["Workloads"]}), "spec.allowedUses[0]", "must be one of Workload, Tunnel, LoadBalancer"),
            (json!({"cidr": "10.0.0.0/16", "allowedUses": ["Workload", "Workload"]}), "spec.allowedUses[1]", "twice"),
            (json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer", "Workload"]}), "spec.allowedUses", "cannot be combined"),
            (json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "vxlanMode": "Always"}), "spec.allowedUses", "IPIP or VXLAN"),
            (json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "disableBGPExport": true}), "spec.disableBGPExport", "LoadBalancer"),
            (json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "nodeSelector": "has(a)"}), "spec.nodeSelector", "all()"),
            (json!({"cidr": "10.0.0.0/16", "namespaceSelector": "has(a)"}), "spec.namespaceSelector", "Tunnel"),
            (json!({"cidr": "10.0.0.0/16", "assignmentMode": "Auto"}), "spec.assignmentMode", "Automatic, Manual"),
            (json!({"cidr": "10.0.0.0/16", "ipip": {"enabled": true}}), "spec.ipip", "unknown field"),
            (json!({"cidr": "10.0.0.0/16", "nodeSelector": "x".repeat(1025)}), "spec.nodeSelector", "at most 1024"),
        ] {
            match validate::parse::<PoolSpec>(&doc(spec.clone())) {
                Err(ModelError::Invalid { kind: "IPPool", field: f, reason: r, .. }) => {
                    assert_eq!(f, field, "{spec}: {r}");
                    assert!(r.contains(reason), "{spec}: {r:?} should say {reason:?}");
                }
                other => panic!("{spec}: {other:?}"),
            }
        }
    }
}
