//! What one CNI attachment is called everywhere: the spec identifies it by (network, container ID, interface);
//! from that follow its IPAM handle, the host end of its veth and the name of its workload-endpoint record.
//! cni-calico and cni-ipam both derive these, so they live here, each format made in exactly one place.
use crate::cni::Request;

/// The interface name runtimes give the pod's main interface; its names are exactly Calico's.
pub const DEFAULT_IFNAME: &str = "eth0";

/// Kubernetes identity of the workload, when the runtime sends both `K8S_POD_NAMESPACE` and `K8S_POD_NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub pod: Option<Pod>,
}

impl Attachment {
    pub fn from_request(req: &Request) -> Attachment {
        let arg = |k| req.env.arg(k).map(str::to_string);
        let pod = match (arg("K8S_POD_NAMESPACE"), arg("K8S_POD_NAME")) {
            (Some(namespace), Some(name)) => Some(Pod { namespace, name }),
            _ => None,
        };
        Attachment { network: req.name.clone(), container_id: req.env.container_id().to_string(), ifname: req.env.ifname().to_string(), pod }
    }

    fn is_default_interface(&self) -> bool {
        self.ifname == DEFAULT_IFNAME
    }

    /// The IPAM handle: one per attachment. Calico's `<network>.<container ID>` for `eth0`, so Calico's tools
    /// and a Calico DEL see the handle they expect; `<network>.<container ID>:<ifname>` for any other
    /// interface (':' is in neither container IDs nor interface names, so no two attachments share one).
    pub fn handle_id(&self) -> String {
        let base = container_handle(&self.network, &self.container_id);
        if self.is_default_interface() {
            base
        } else {
            format!("{base}:{}", self.ifname)
        }
    }

    /// The handle Calico v2.x used (and CRI container-ID changes leave behind): `<namespace>.<pod>`, else the
    /// container ID. Released with the default interface only, as Calico's DEL does.
    pub fn legacy_handle_id(&self) -> Option<String> {
        if !self.is_default_interface() {
            return None;
        }
        Some(match &self.pod {
            Some(p) => format!("{}.{}", p.namespace, p.name),
            None => self.container_id.clone(),
        })
    }

    /// The host end of the veth (Calico's `VethNameForWorkload`, projectcalico/calico
    /// libcalico-go/lib/backend/k8s/conversion/workload_endpoint_default.go): `cali` + 11 hex of sha1(`<namespace>.<pod>`) for a pod,
    /// else `cali` + the first 11 characters of the container ID; Felix computes the same name. Another
    /// interface of the same workload hashes `<namespace>.<pod>:<ifname>` (`<container ID>:<ifname>`), so it
    /// never takes the name of the first. The prefix is FELIX_INTERFACEPREFIX's first entry, default `cali`.
    pub fn host_veth(&self) -> String {
        let prefix = std::env::var("FELIX_INTERFACEPREFIX").ok();
        let prefix = prefix.as_deref().and_then(|p| p.split(',').next()).filter(|p| !p.is_empty()).unwrap_or("cali");
        self.host_veth_with(prefix)
    }

    pub fn host_veth_with(&self, prefix: &str) -> String {
        let hex = |s: String| sha1_smol::Sha1::from(s).digest().to_string()[..11].to_string();
        let suffix = match (&self.pod, self.is_default_interface()) {
            (Some(p), true) => hex(format!("{}.{}", p.namespace, p.name)),
            (Some(p), false) => hex(format!("{}.{}:{}", p.namespace, p.name, self.ifname)),
            (None, true) => self.container_id.chars().take(11).collect(),
            (None, false) => hex(format!("{}:{}", self.container_id, self.ifname)),
        };
        let mut name = format!("{prefix}{suffix}");
        name.truncate(15);
        name
    }

    /// Namespace of the workload-endpoint record: the pod's, or `default` outside Kubernetes (as Calico).
    pub fn endpoint_namespace(&self) -> &str {
        self.pod.as_ref().map_or("default", |p| p.namespace.as_str())
    }

    /// Calico's WorkloadEndpoint name (libcalico-go `names.WorkloadEndpointIdentifiers`): dash-joined
    /// segments, every '-' inside a segment doubled: `<node>-k8s-<pod>-<ifname>` or
    /// `<node>-cni-<container ID>-<ifname>`. A pod's record is per interface, not per sandbox: a new sandbox
    /// of the pod takes it over, and the container ID in it tells a stale DEL that it is no longer its own.
    pub fn endpoint_name(&self, node: &str) -> String {
        let esc = |s: &str| s.replace('-', "--");
        match &self.pod {
            Some(p) => format!("{}-k8s-{}-{}", esc(node), esc(&p.name), esc(&self.ifname)),
            None => format!("{}-cni-{}-{}", esc(node), esc(&self.container_id), esc(&self.ifname)),
        }
    }
}

/// `<network>.<container id>`, cut at the first `\r` as Calico sanitises handles (calico#3940).
pub fn container_handle(network: &str, container_id: &str) -> String {
    let h = format!("{network}.{container_id}");
    match h.split_once('\r') {
        Some((head, _)) => head.to_string(),
        None => h,
    }
}

/// Inverse of `Attachment::handle_id` for handles of `network` (or, without it, of any network: the part
/// after the last '.' before any ':'): the container ID and the interface if it is not the default one.
pub fn split_handle<'a>(handle: &'a str, network: Option<&str>) -> Option<(&'a str, Option<&'a str>)> {
    let (base, ifname) = match handle.split_once(':') {
        Some((b, i)) => (b, Some(i)),
        None => (handle, None),
    };
    let cid = match network {
        Some(n) => base.strip_prefix(n)?.strip_prefix('.')?,
        None => base.rsplit_once('.').map_or(base, |(_, c)| c),
    };
    Some((cid, ifname))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(pod: Option<(&str, &str)>, cid: &str, ifname: &str) -> Attachment {
        Attachment {
            network: "k8s-pod-network".into(),
            container_id: cid.into(),
            ifname: ifname.into(),
            pod: pod.map(|(n, p)| Pod { namespace: n.into(), name: p.into() }),
        }
    }

    #[test]
    fn default_interface_names_are_calicos() {
        // Calico's name for default/nginx: calic440f455693
        assert_eq!(att(Some(("default", "nginx")), "abc", "eth0").host_veth_with("cali"), "calic440f455693");
        assert_eq!(att(None, "0123456789abcdef", "eth0").host_veth_with("cali"), "cali0123456789a");
        assert_eq!(att(None, "ab", "eth0").host_veth_with("cali"), "caliab");
        let a = att(Some(("default", "nginx")), "abc", "eth0");
        assert_eq!(a.handle_id(), "k8s-pod-network.abc");
        assert_eq!(a.legacy_handle_id().as_deref(), Some("default.nginx"));
        assert_eq!(a.endpoint_name("node-1"), "node--1-k8s-nginx-eth0");
        assert_eq!(att(None, "c-1", "eth0").endpoint_name("n"), "n-cni-c--1-eth0");
    }

    #[test]
    fn a_second_interface_gets_names_of_its_own() {
        for pod in [Some(("default", "nginx")), None] {
            let eth0 = att(pod, "0123456789abcdef", "eth0");
            let eth1 = att(pod, "0123456789abcdef", "eth1");
            assert_ne!(eth0.host_veth_with("cali"), eth1.host_veth_with("cali"));
            assert_eq!(eth1.host_veth_with("cali").len(), 15);
            assert_eq!(eth1.handle_id(), "k8s-pod-network.0123456789abcdef:eth1");
            assert_eq!(eth1.legacy_handle_id(), None);
            assert_ne!(eth0.endpoint_name("n"), eth1.endpoint_name("n"));
        }
        // A pod named like another pod's second interface does not share its veth name.
        assert_ne!(att(Some(("ns", "x.eth1")), "c", "eth0").host_veth_with("cali"), att(Some(("ns", "x")), "c", "eth1").host_veth_with("cali"));
    }

    #[test]
    fn handles_split_back_into_container_and_interface() {
        assert_eq!(split_handle("net.a.b", Some("net")), Some(("a.b", None)));
        assert_eq!(split_handle("net.abc:eth1", Some("net")), Some(("abc", Some("eth1"))));
        assert_eq!(split_handle("other.abc", Some("net")), None);
        assert_eq!(split_handle("net.abc:eth1", None), Some(("abc", Some("eth1"))));
        for a in [att(None, "c.1", "eth0"), att(None, "c.1", "net1")] {
            let h = a.handle_id();
            assert_eq!(split_handle(&h, Some(&a.network)), Some((a.container_id.as_str(), (a.ifname != "eth0").then_some(a.ifname.as_str()))));
        }
    }

    #[test]
    fn handles_are_sanitised_like_calicos() {
        assert_eq!(container_handle("net", "abc\r\neth0"), "net.abc");
    }
}
