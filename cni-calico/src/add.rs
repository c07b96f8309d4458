//! ADD: addresses from the IPAM plugin, then the dataplane; a failure half way releases what was taken.
use crate::config::NetConf;
use crate::dataplane::{self, host_net, Plan, HOST_MAC};
use crate::{names, open_container_ns};
use common::cni::{delegate, CniError, CniResult, Command, Interface, IpConfig, Request};
use common::netlink::format_mac;

pub fn add(req: &Request) -> Result<CniResult, CniError> {
    let conf = NetConf::from_request(req)?;
    let ipam_type = conf.ipam_type()?;
    let netns_path = req.env.netns.as_deref().unwrap_or_else(|| std::path::Path::new(""));
    let container_ns = open_container_ns(netns_path)?;
    let ifname = req.env.ifname().to_string();
    let host_if = names::host_veth(&req.env);

    let ipam = delegate::ipam_add(ipam_type, &req.env, &req.stdin)?;
    // From here on every failure must hand the addresses back.
    let release = ReleaseOnDrop { req, ipam_type, armed: true };
    if ipam.ips.is_empty() {
        return Err(CniError::internal(format!("IPAM plugin {ipam_type} returned no IP addresses")));
    }
    let plan = Plan {
        host_if: host_if.clone(),
        ifname: ifname.clone(),
        mtu: conf.mtu(),
        ips: ipam.ips.iter().map(|ip| ip.address.addr()).collect(),
        allow_ip_forwarding: conf.container_settings.allow_ip_forwarding,
    };
    let container = dataplane::setup(&container_ns, &plan).map_err(CniError::from)?;
    release.disarm();

    Ok(CniResult {
        cni_version: req.cni_version.clone(),
        interfaces: vec![
            Interface { name: host_if, mac: format_mac(&HOST_MAC), ..Default::default() },
            Interface { name: ifname, mac: format_mac(&container.mac), mtu: plan.mtu, sandbox: netns_path.display().to_string() },
        ],
        ips: plan.ips.iter().map(|ip| IpConfig { address: host_net(*ip), gateway: None, interface: Some(1) }).collect(),
        routes: ipam.routes,
        dns: if conf.dns.is_empty() { ipam.dns } else { conf.dns },
    })
}

/// Runs IPAM DEL when dropped armed: an ADD that fails after allocation leaks nothing.
struct ReleaseOnDrop<'a> {
    req: &'a Request,
    ipam_type: &'a str,
    armed: bool,
}

impl ReleaseOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = delegate::ipam_call(self.ipam_type, Command::Del, &self.req.env, &self.req.stdin) {
                tracing::error!(error = %e, "releasing addresses after a failed ADD");
            }
        }
    }
}

