//! ADD: the veth pair is made while the IPAM plugin allocates; then addresses and routes. A failure half way
//! removes the pair and gives back exactly what this ADD allocated, and nothing of a live attachment.
use crate::config::NetConf;
use crate::dataplane::{self, host_net, Plan, HOST_MAC};
use crate::error::Error;
use crate::ipam::{self, Taken};
use crate::open_container_ns;
use common::attachment::Attachment;
use common::cni::{CniError, CniResult, Command, Interface, IpConfig, Request};
use common::netlink::format_mac;

pub fn add(req: &Request) -> Result<CniResult, CniError> {
    let conf = NetConf::from_request(req)?;
    let ipam_type = conf.ipam_type()?;
    let netns_path = req.env.netns.as_deref().unwrap_or_else(|| std::path::Path::new(""));
    let container_ns = open_container_ns(netns_path)?;
    let att = Attachment::from_request(req);
    let host_if = att.host_veth();
    let base = Plan {
        host_if: host_if.clone(),
        ifname: att.ifname.clone(),
        owner: att.container_id.clone(),
        maybe_v6: conf.may_assign_ipv6(req),
        mtu: conf.mtu(),
        ips: Vec::new(),
        allow_ip_forwarding: conf.container_settings.allow_ip_forwarding,
    };

    // The IPAM plugin is started once the kernel is making the veth pair (the longer of the two) and runs
    // beside it; its answer is awaited only when the pair exists.
    let mut running = None;
    let mut taken: Option<Taken> = None;
    let mut ipam_result: Option<CniResult> = None;
    // Waited for when `add` returns: the in-process IPAM finishes its store session while the pod is wired.
    let mut settle = None;
    let wired = dataplane::setup_with(&container_ns, &base, || {
        running = Some(ipam::start(&conf, Command::Add, req)?);
        Ok(|| {
            let ipam = running.take().ok_or_else(|| CniError::internal("IPAM result awaited twice"))?;
            let (answer, rest) = ipam.answer_early()?;
            settle = Some(rest);
            taken = Some(answer.taken);
            let result = ipam_result.insert(answer.result);
            if result.ips.is_empty() {
                return Err(CniError::internal(format!("IPAM plugin {ipam_type} returned no IP addresses")));
            }
            Ok(result.ips.iter().map(|ip| ip.address.addr()).collect())
        })
    });
    let (container, plan) = match wired {
        Ok(w) => w,
        Err(e) => {
            // The pair may have failed before the IPAM answer was even read: read it now, to give back
            // what it took. An interface already there and marked as this container's is the live
            // attachment of a repeated ADD: what the IPAM plugin answered with is that attachment's.
            if taken.is_none() {
                taken = running.take().and_then(|r| r.answer().ok()).map(|a| a.taken);
            }
            drop(settle);
            let live = matches!(&e, Error::IfExists { owner: Some(o), .. } if *o == att.container_id);
            if let Some(taken) = taken {
                ipam::give_back(&conf, req, taken, live);
            }
            return Err(e.into());
        }
    };
    let ipam = ipam_result.unwrap_or_default();

    Ok(CniResult {
        cni_version: req.cni_version.clone(),
        interfaces: vec![
            Interface { name: host_if, mac: format_mac(&HOST_MAC), ..Default::default() },
            Interface { name: att.ifname, mac: format_mac(&container.mac), mtu: plan.mtu, sandbox: netns_path.display().to_string() },
        ],
        ips: plan.ips.iter().map(|ip| IpConfig { address: host_net(*ip), gateway: None, interface: Some(1) }).collect(),
        routes: ipam.routes,
        dns: if conf.dns.is_empty() { ipam.dns } else { conf.dns },
    })
}
