//! IPAMConfiguration (`api/pkg/apis/projectcalico/v3/ipamconfig.go`): the one `default` object, stored, as
//! Calico's etcd backend stores every v3 resource, at `/calico/resources/v3/projectcalico.org/
//! ipamconfigurations/default`. IPAM itself reads the v2 record at `/calico/ipam/v2/config`
//! (`datastore::ipam::records::IpamConfig`, Calico's `model.IPAMConfigKey`): on etcd Calico keeps the two
//! apart (only its Kubernetes backend maps both onto one CRD, `backend/k8s/resources/ipam_config_v1.go`),
//! and `calicoctl ipam configure` writes the v2 record. [`IpamConfigurationSpec::to_record`] and
//! [`IpamConfigurationSpec::from_record`] convert between them for whoever keeps them in step.
use super::kinds::IPAM_CONFIGURATION;
use super::validate::{FieldError, Spec};
use super::values::{is_default, str_enum};
use super::{Metadata, NoStatus, Resource};
use crate::ipam::records::IpamConfig;
use serde::{Deserialize, Serialize};

pub type IpamConfiguration = Resource<IpamConfigurationSpec>;

pub const KIND: &str = "IPAMConfiguration";
/// The only name Calico accepts (`clientv3/ipamconfig.go`).
pub const NAME: &str = "default";
pub const MAX_BLOCKS_PER_HOST: i32 = 1_000_000;
pub const MAX_IP_COOLDOWN_SECONDS: i32 = 1200;

str_enum! {
    /// Whether KubeVirt VMs keep their addresses across pod re-creation (unset means Enabled).
    pub enum VmAddressPersistence { Enabled = "Enabled", Disabled = "Disabled" }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamConfigurationSpec {
    /// No borrowing of addresses from other hosts' blocks. Always written, as Calico writes it.
    #[serde(rename = "strictAffinity", default)]
    pub strict_affinity: bool,
    /// 0 means no limit set (IPAM then uses 20).
    #[serde(rename = "maxBlocksPerHost", default, skip_serializing_if = "is_default")]
    pub max_blocks_per_host: i32,
    /// Defaults to true (the CRD's default), always written.
    #[serde(rename = "autoAllocateBlocks", default = "yes")]
    pub auto_allocate_blocks: bool,
    #[serde(rename = "kubeVirtVMAddressPersistence", default, skip_serializing_if = "Option::is_none")]
    pub kube_virt_vm_address_persistence: Option<VmAddressPersistence>,
    #[serde(rename = "ipCooldownSeconds", default, skip_serializing_if = "is_default")]
    pub ip_cooldown_seconds: i32,
}

fn yes() -> bool {
    true
}

impl Default for IpamConfigurationSpec {
    /// What calico-node's startup creates (`ensureDefaultIPAMConfigExists`).
    fn default() -> Self {
        IpamConfigurationSpec {
            strict_affinity: false,
            max_blocks_per_host: 0,
            auto_allocate_blocks: true,
            kube_virt_vm_address_persistence: Some(VmAddressPersistence::Enabled),
            ip_cooldown_seconds: 0,
        }
    }
}

impl Resource<IpamConfigurationSpec> {
    pub fn ipam_configuration(spec: IpamConfigurationSpec) -> IpamConfiguration {
        Resource::new(KIND, Metadata::named(NAME), spec)
    }
}

impl IpamConfigurationSpec {
    /// The v2 record IPAM reads. calico-rs's record has no KubeVirt or cooldown fields: those stay in the
    /// v3 resource only.
    pub fn to_record(&self) -> IpamConfig {
        IpamConfig {
            strict_affinity: self.strict_affinity,
            auto_allocate_blocks: self.auto_allocate_blocks,
            max_blocks_per_host: u32::try_from(self.max_blocks_per_host).unwrap_or(0),
        }
    }

    /// The v3 spec of a v2 record (fields the record lacks at their defaults).
    pub fn from_record(r: &IpamConfig) -> IpamConfigurationSpec {
        IpamConfigurationSpec {
            strict_affinity: r.strict_affinity,
            auto_allocate_blocks: r.auto_allocate_blocks,
            max_blocks_per_host: i32::try_from(r.max_blocks_per_host).unwrap_or(MAX_BLOCKS_PER_HOST),
            kube_virt_vm_address_persistence: None,
            ip_cooldown_seconds: 0,
        }
    }
}

impl Spec for IpamConfigurationSpec {
    type Status = NoStatus;
    const KIND: &'static super::KindInfo = &IPAM_CONFIGURATION;

    /// Calico's v3 rules only: the cross-field rules of `SetIPAMConfig` (no borrowing needs block
    /// allocation; a block limit needs strict affinity) are IPAM's, checked on the v2 record
    /// (`IpamConfig::validate`), as Calico checks them only there.
    fn check(res: &mut IpamConfiguration) -> Result<(), FieldError> {
        if res.metadata.name != NAME {
            return Err(FieldError::new("metadata.name", format!("must be {NAME:?}: there is one IPAMConfiguration")));
        }
        let s = &res.spec;
        if !(0..=MAX_BLOCKS_PER_HOST).contains(&s.max_blocks_per_host) {
            return Err(FieldError::new("spec.maxBlocksPerHost", format!("{} is outside 0..={MAX_BLOCKS_PER_HOST}", s.max_blocks_per_host)));
        }
        if !(0..=MAX_IP_COOLDOWN_SECONDS).contains(&s.ip_cooldown_seconds) {
            return Err(FieldError::new("spec.ipCooldownSeconds", format!("{} is outside 0..={MAX_IP_COOLDOWN_SECONDS}", s.ip_cooldown_seconds)));
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
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPAMConfiguration", "metadata": {"name": name}, "spec": spec})
    }

    #[test]
    fn defaults_and_the_v2_record() {
        let stored = validate::validate::<IpamConfigurationSpec>(&doc("default", json!({}))).unwrap();
        assert_eq!(stored["spec"], json!({"strictAffinity": false, "autoAllocateBlocks": true}));
        let docs = validate::parse::<IpamConfigurationSpec>(&doc("default", json!({"strictAffinity": false, "maxBlocksPerHost": 4}))).unwrap();
        assert_eq!(docs.spec.max_blocks_per_host, 4, "Calico's documented example is accepted as Calico accepts it");
        let full = validate::parse::<IpamConfigurationSpec>(&doc(
            "default",
            json!({"strictAffinity": true, "maxBlocksPerHost": 20, "autoAllocateBlocks": false, "kubeVirtVMAddressPersistence": "Disabled", "ipCooldownSeconds": 60}),
        ))
        .unwrap();
        let rec = full.spec.to_record();
        assert_eq!(rec, IpamConfig { strict_affinity: true, auto_allocate_blocks: false, max_blocks_per_host: 20 });
        assert_eq!(serde_json::to_value(rec).unwrap(), json!({"strict_affinity": true, "auto_allocate_blocks": false, "maxBlocksPerHost": 20}));
        let back = IpamConfigurationSpec::from_record(&rec);
        assert_eq!((back.strict_affinity, back.auto_allocate_blocks, back.max_blocks_per_host), (true, false, 20));
        assert_eq!(IpamConfigurationSpec::from_record(&IpamConfig::default()).to_record(), IpamConfig::default());
        assert_eq!(IpamConfigurationSpec::default().to_record(), IpamConfig::default(), "the same defaults on both sides");
    }

    #[test]
    fn bad_ipam_configurations() {
        for (name, spec, field, reason) in [
            ("other", json!({}), "metadata.name", "must be \"default\""),
            ("default", json!({"maxBlocksPerHost": -1}), "spec.maxBlocksPerHost", "outside"),
            ("default", json!({"maxBlocksPerHost": 1000001}), "spec.maxBlocksPerHost", "outside"),
            ("default", json!({"ipCooldownSeconds": 1201}), "spec.ipCooldownSeconds", "outside"),
            ("default", json!({"kubeVirtVMAddressPersistence": "On"}), "spec.kubeVirtVMAddressPersistence", "Enabled, Disabled"),
            ("default", json!({"strictAffinity": "true"}), "spec.strictAffinity", "expected a boolean"),
            ("default", json!({"strict_affinity": true}), "spec.strict_affinity", "unknown field"),
        ] {
            match validate::parse::<IpamConfigurationSpec>(&doc(name, spec.clone())) {
                Err(crate::ModelError::Invalid { field: f, reason: r, .. }) => {
                    assert_eq!(f, field, "{spec}: {r}");
                    assert!(r.contains(reason), "{spec}: {r:?} should say {reason:?}");
                }
                other => panic!("{spec}: {other:?}"),
            }
        }
    }
}
