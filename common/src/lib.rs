//! Shared library of cni-calico and cni-ipam: the CNI protocol layer, namespaces, netlink, sysctls.
pub mod attachment;
pub mod cni;
pub mod log;
pub mod netlink;
pub mod netns;
pub mod sysctl;
