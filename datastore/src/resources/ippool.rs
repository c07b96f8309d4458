//! IP pools: the `projectcalico.org/v3` IPPool resource as stored, its validation into a typed `Pool`, node
//! selectors (Calico's selector language, from the `selector` crate), and the arithmetic that maps a pool's
//! block indices to block CIDRs and back.
use super::{Metadata, Resource};
use crate::error::ModelError;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The default pool used when the store holds no pools at all (Calico's default IPv4 pool).
pub const DEFAULT_POOL_NAME: &str = "default-ipv4-ippool";

/// The stored form: a v3 resource, as `calicoctl get ippool -o json` prints it.
pub type PoolResource = Resource<PoolSpec>;

pub const KIND: &str = "IPPool";

/// `KindInfo::validate` for IPPool: the document as a pool, checked and with every default filled in.
pub fn validate_document(doc: &serde_json::Value) -> Result<serde_json::Value, ModelError> {
    let name = doc.pointer("/metadata/name").and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
    let res: PoolResource = serde_json::from_value(doc.clone()).map_err(|e| ModelError::InvalidPool { name, reason: e.to_string() })?;
    let pool = Pool::from_resource(&res)?;
    serde_json::to_value(pool.to_resource()).map_err(|e| ModelError::Encode(e.to_string()))
}

impl Resource<PoolSpec> {
    pub fn ippool(name: impl Into<String>, spec: PoolSpec) -> PoolResource {
        Resource::new(KIND, Metadata::named(name), spec)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PoolSpec {
    pub cidr: String,
    #[serde(rename = "blockSize", default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(rename = "ipipMode", default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<String>,
    #[serde(rename = "vxlanMode", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<String>,
    #[serde(rename = "natOutgoing", default)]
    pub nat_outgoing: bool,
    #[serde(rename = "nodeSelector", default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(rename = "disableBGPExport", default)]
    pub disable_bgp_export: bool,
}

/// A validated pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
    pub ipip_mode: String,
    pub vxlan_mode: String,
    pub nat_outgoing: bool,
    pub node_selector: Selector,
    pub disabled: bool,
    pub disable_bgp_export: bool,
}

impl Pool {
    pub fn from_resource(r: &PoolResource) -> Result<Pool, ModelError> {
        let name = &r.metadata.name;
        let bad = |what: String| ModelError::InvalidPool { name: name.clone(), reason: what };
        validate_pool_name(name).map_err(|e| bad(e.to_string()))?;
        if !r.kind.is_empty() && r.kind != KIND {
            return Err(bad(format!("kind must be IPPool, got {:?}", r.kind)));
        }
        let cidr: IpNet = r.spec.cidr.parse().map_err(|_| bad(format!("cidr {:?} is not a CIDR", r.spec.cidr)))?;
        if cidr.addr() != cidr.network() {
            return Err(bad(format!("cidr {cidr} has host bits set (network is {})", cidr.trunc())));
        }
        let (default, range) = match cidr {
            IpNet::V4(_) => (26, 20..=32),
            IpNet::V6(_) => (122, 116..=128),
        };
        let block_size = r.spec.block_size.unwrap_or(default);
        if !range.contains(&block_size) {
            return Err(bad(format!("blockSize {block_size} is outside {}..={}", range.start(), range.end())));
        }
        if cidr.prefix_len() > block_size {
            return Err(bad(format!("cidr {cidr} is smaller than one block (blockSize {block_size})")));
        }
        let link_local: IpNet = match cidr {
            IpNet::V4(_) => "169.254.0.0/16".parse(),
            IpNet::V6(_) => "fe80::/10".parse(),
        }
        .map_err(|_| bad("internal: link-local range".into()))?;
        if cidr.contains(&link_local) || link_local.contains(&cidr) {
            return Err(bad(format!("cidr {cidr} overlaps the link-local range {link_local}")));
        }
        let mode = |field: &str, v: &Option<String>| -> Result<String, ModelError> {
            match v.as_deref().unwrap_or("Never") {
                m @ ("Never" | "Always" | "CrossSubnet") => Ok(m.to_string()),
                "" => Ok("Never".to_string()),
                other => Err(bad(format!("{field} {other:?} must be Never, Always or CrossSubnet"))),
            }
        };
        let ipip_mode = mode("ipipMode", &r.spec.ipip_mode)?;
        let vxlan_mode = mode("vxlanMode", &r.spec.vxlan_mode)?;
        if ipip_mode != "Never" && vxlan_mode != "Never" {
            return Err(bad("ipipMode and vxlanMode cannot both be enabled".into()));
        }
        if ipip_mode != "Never" && cidr.addr().is_ipv6() {
            return Err(bad("ipipMode is not supported for IPv6 pools".into()));
        }
        let node_selector = Selector::parse(r.spec.node_selector.as_deref().unwrap_or("all()")).map_err(|e| bad(format!("nodeSelector: {e}")))?;
        Ok(Pool {
            name: name.clone(),
            cidr,
            block_size,
            ipip_mode,
            vxlan_mode,
            nat_outgoing: r.spec.nat_outgoing,
            node_selector,
            disabled: r.spec.disabled,
            disable_bgp_export: r.spec.disable_bgp_export,
        })
    }

    /// The resource with every default filled in, as stored.
    pub fn to_resource(&self) -> PoolResource {
        PoolResource::ippool(
            self.name.clone(),
            PoolSpec {
                cidr: self.cidr.to_string(),
                block_size: Some(self.block_size),
                ipip_mode: Some(self.ipip_mode.clone()),
                vxlan_mode: Some(self.vxlan_mode.clone()),
                nat_outgoing: self.nat_outgoing,
                node_selector: Some(self.node_selector.source.clone()),
                disabled: self.disabled,
                disable_bgp_export: self.disable_bgp_export,
            },
        )
    }

    /// Calico's default pool: 192.168.0.0/16, /26 blocks, every node, natOutgoing.
    pub fn default_v4() -> Pool {
        Pool {
            name: DEFAULT_POOL_NAME.into(),
            cidr: IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16)),
            block_size: 26,
            ipip_mode: "Never".into(),
            vxlan_mode: "Never".into(),
            nat_outgoing: true,
            node_selector: Selector::all(),
            disabled: false,
            disable_bgp_export: false,
        }
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
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ModelError::InvalidName(format!(
            "invalid pool name {name:?}: must be lowercase letters, digits, '-' or '.', starting and ending alphanumeric"
        )))
    }
}

/// A pool's `nodeSelector`: the text as stored (spaces and tabs around it trimmed, empty meaning `all()`, as
/// Calico defaults it) and its parse in Calico's whole selector language (the `selector` crate).
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub source: String,
    parsed: selector::Selector,
}

impl Selector {
    pub fn all() -> Selector {
        Selector { source: "all()".into(), parsed: selector::Selector::all() }
    }

    /// Parses the text as written, so an error's position counts from its first byte.
    pub fn parse(src: &str) -> Result<Selector, String> {
        let parsed = selector::Selector::parse(src).map_err(|e| e.to_string())?;
        let trimmed = src.trim_matches([' ', '\t']);
        if trimmed.is_empty() {
            return Ok(Selector::all());
        }
        Ok(Selector { source: trimmed.to_string(), parsed })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.parsed.matches(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(err.to_string(), r#"invalid IP pool "p": nodeSelector: selector "zone == 'a' | zone == 'b'": expected '||' at 12"#);
    }
}
