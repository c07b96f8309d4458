//! Interface names: the host end of a workload's veth, named as Calico (and so Felix) expects.
use common::cni::Env;

/// `cali` + 11 hex of sha1("<namespace>.<pod>") for Kubernetes pods, else `cali` + the first 11
/// characters of the container ID. The prefix can be changed with FELIX_INTERFACEPREFIX (first entry).
pub fn host_veth(env: &Env) -> String {
    let prefix = std::env::var("FELIX_INTERFACEPREFIX").ok();
    let prefix = prefix.as_deref().and_then(|p| p.split(',').next()).filter(|p| !p.is_empty()).unwrap_or("cali");
    host_veth_with(prefix, env.arg("K8S_POD_NAMESPACE"), env.arg("K8S_POD_NAME"), env.container_id())
}

pub fn host_veth_with(prefix: &str, namespace: Option<&str>, pod: Option<&str>, container_id: &str) -> String {
    let suffix: String = match (namespace, pod) {
        (Some(ns), Some(pod)) => sha1_smol::Sha1::from(format!("{ns}.{pod}")).digest().to_string()[..11].to_string(),
        _ => container_id.chars().take(11).collect(),
    };
    let mut name = format!("{prefix}{suffix}");
    name.truncate(15);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k8s_name_is_calicos() {
        // calico.md §1.5: default/nginx -> calic440f455693
        assert_eq!(host_veth_with("cali", Some("default"), Some("nginx"), "abc"), "calic440f455693");
    }

    #[test]
    fn cni_mode_uses_container_id() {
        assert_eq!(host_veth_with("cali", None, Some("nginx"), "0123456789abcdef"), "cali0123456789a");
        assert_eq!(host_veth_with("cali", None, None, "ab"), "caliab");
    }
}
