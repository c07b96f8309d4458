//! The table of resource kinds: everything generic code (the store's keys, calicoctl, the agent's watch) needs
//! to know of a kind, declared once. Adding a kind is one entry here plus its spec module.
use super::validate::validate;
use crate::ModelError;
use serde_json::Value;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// Where every v3 resource lives: `<prefix><plural>/[<namespace>/]<name>`.
pub const RESOURCE_PREFIX: &str = "/calico/resources/v3/projectcalico.org/";

pub struct KindInfo {
    /// `kind:` as written in a document (`BGPPeer`).
    pub kind: &'static str,
    /// The path segment under `RESOURCE_PREFIX`, as Calico stores it (`bgppeers`).
    pub plural: &'static str,
    /// `RESOURCE_PREFIX` + `plural` + `/`.
    pub prefix: &'static str,
    /// The names calicoctl accepts for the kind on its command line (lower case).
    pub names: &'static [&'static str],
    /// Whether names are scoped by a namespace (`<plural>/<namespace>/<name>`).
    pub namespaced: bool,
    /// Checks a document of this kind as `calicoctl apply` does (unknown fields refused, every field's type
    /// and rule, Calico's defaults filled in) and returns the resource as it is to be stored.
    pub validate: fn(&Value) -> Result<Value, ModelError>,
}

macro_rules! kind {
    ($name:ident, $kind:literal, $plural:literal, [$($n:literal),*], $namespaced:literal, $validate:expr) => {
        pub static $name: KindInfo = KindInfo {
            kind: $kind,
            plural: $plural,
            prefix: concat!("/calico/resources/v3/projectcalico.org/", $plural, "/"),
            names: &[$($n),*],
            namespaced: $namespaced,
            validate: $validate,
        };
    };
}

// calicoctl's names per kind: projectcalico/calico calicoctl/calicoctl/resourcemgr/*.go.
kind!(IPPOOL, "IPPool", "ippools", ["ippool", "ippools", "ipp", "ipps", "pool", "pools"], false, validate::<super::ippool::PoolSpec>);
kind!(
    IPAM_CONFIGURATION,
    "IPAMConfiguration",
    "ipamconfigurations",
    ["ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"],
    false,
    validate::<super::ipamconfig::IpamConfigurationSpec>
);
kind!(
    BGP_CONFIGURATION,
    "BGPConfiguration",
    "bgpconfigurations",
    ["bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"],
    false,
    validate::<super::bgpconfig::BgpConfigurationSpec>
);
kind!(BGP_PEER, "BGPPeer", "bgppeers", ["bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"], false, validate::<super::bgppeer::BgpPeerSpec>);
kind!(NODE, "Node", "nodes", ["node", "nodes", "no", "nos"], false, validate::<super::node::NodeSpec>);
kind!(
    WORKLOAD_ENDPOINT,
    "WorkloadEndpoint",
    "workloadendpoints",
    ["workloadendpoint", "workloadendpoints", "wep", "weps"],
    true,
    validate::<super::workloadendpoint::EndpointSpec>
);

/// Every kind this model knows.
pub static KINDS: &[&KindInfo] = &[&IPPOOL, &IPAM_CONFIGURATION, &BGP_CONFIGURATION, &BGP_PEER, &NODE, &WORKLOAD_ENDPOINT];

/// The kind a document's `kind:` or a command line's word names (any of calicoctl's names, any case).
pub fn kind_named(s: &str) -> Option<&'static KindInfo> {
    let lower = s.to_ascii_lowercase();
    KINDS.iter().copied().find(|k| k.kind.eq_ignore_ascii_case(s) || k.names.contains(&lower.as_str()))
}

pub fn kind_by_plural(plural: &str) -> Option<&'static KindInfo> {
    KINDS.iter().copied().find(|k| k.plural == plural)
}

// Kinds are compared, ordered and hashed by their plural, so keys holding them can be map keys.
impl PartialEq for KindInfo {
    fn eq(&self, other: &Self) -> bool {
        self.plural == other.plural
    }
}
impl Eq for KindInfo {}
impl PartialOrd for KindInfo {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for KindInfo {
    fn cmp(&self, other: &Self) -> Ordering {
        self.plural.cmp(other.plural)
    }
}
impl Hash for KindInfo {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.plural.hash(h)
    }
}
impl std::fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_by_every_name_and_have_calicos_paths() {
        assert_eq!(kind_named("BGPPeer").map(|k| k.plural), Some("bgppeers"));
        assert_eq!(kind_named("bgpp").map(|k| k.kind), Some("BGPPeer"));
        assert_eq!(kind_named("Nodes").map(|k| k.kind), Some("Node"));
        assert_eq!(kind_named("ipamconfig").map(|k| k.kind), Some("IPAMConfiguration"));
        assert!(kind_named("policy").is_none());
        assert_eq!(NODE.prefix, "/calico/resources/v3/projectcalico.org/nodes/");
        for k in KINDS {
            assert!(k.prefix.starts_with(RESOURCE_PREFIX) && k.prefix.ends_with(&format!("{}/", k.plural)));
            assert_eq!(kind_by_plural(k.plural), Some(*k));
        }
    }
}
