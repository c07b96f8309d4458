//! ADD: the veth pair is made while the IPAM plugin allocates; then addresses and routes. A failure half way
//! removes the pair and releases what was allocated.
use crate::config::NetConf;
use crate::error::Error;
use crate::dataplane::{self, host_net, Plan, HOST_MAC};
use crate::{names, open_container_ns};
use crate::ipam;
use common::cni::{CniError, CniResult, Command, Interface, IpConfig, Request};
use common::netlink::format_mac;

pub fn add(req: &Request) -> Result<CniResult, CniError> {
    let conf = NetConf::from_request(req)?;
    let ipam_type = conf.ipam_type()?;
    let netns_path = req.env.netns.as_deref().unwrap_or_else(|| std::path::Path::new(""));
    let container_ns = open_container_ns(netns_path)?;
    let ifname = req.env.ifname().to_string();
    let host_if = names::host_veth(&req.env);

    let base = Plan { host_if: host_if.clone(), ifname: ifname.clone(), mtu: conf.mtu(), ips: Vec::new(), allow_ip_forwarding: conf.container_settings.allow_ip_forwarding };

    // The IPAM plugin is started once the kernel is making the veth pair (the longer of the two) and runs
    // beside it; its answer is awaited only when the pair exists.
    let mut running = None;
    let mut allocated: Option<CniResult> = None;
    // Waited for when `add` returns: the in-process IPAM finishes its store session while the pod is wired.
    let mut settle = None;
    let wired = dataplane::setup_with(&container_ns, &base, || {
        running = Some(ipam::start(&conf, Command::Add, req)?);
        Ok(|| {
            let ipam = running.take().ok_or_else(|| CniError::internal("IPAM result awaited twice"))?;
            let (result, rest) = ipam.result_early()?;
            settle = Some(rest);
            let ipam = allocated.insert(result);
            if ipam.ips.is_empty() {
                return Err(CniError::internal(format!("IPAM plugin {ipam_type} returned no IP addresses")));
            }
            Ok(ipam.ips.iter().map(|ip| ip.address.addr()).collect())
        })
    });
    let (container, plan) = match wired {
        Ok(w) => w,
        Err(e) => {
            // An ADD that fails after allocation hands the addresses back, also when the pair failed
            // before the IPAM answer was even read. Not when the interface already exists: that is a
            // repeated ADD of a live attachment, and IPAM releases by handle, so a release would take the
            // live attachment's address too; the runtime's DEL frees both later.
            let took = allocated.is_some() || running.take().is_some_and(|r| r.result().is_ok());
            drop(settle);
            if took && !matches!(e, Error::IfExists(_)) {
                if let Err(rel) = ipam::call(&conf, Command::Del, req) {
                    tracing::error!(error = %rel, "releasing addresses after a failed ADD");
                }
            }
            return Err(e.into());
        }
    };
    let ipam = allocated.unwrap_or_default();

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

