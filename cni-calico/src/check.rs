//! CHECK: the wiring listed in prevResult is really there (Calico's CHECK is a no-op), then IPAM CHECK.
use crate::config::NetConf;
use crate::dataplane::{self, Expected};
use crate::ipam;
use crate::open_container_ns;
use common::attachment::Attachment;
use common::cni::{CniError, CniResult, Command, Request};

pub fn check(req: &Request) -> Result<(), CniError> {
    let conf = NetConf::from_request(req)?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| CniError::config("CHECK needs prevResult"))?;
    let prev = CniResult::from_value(prev).map_err(|e| CniError::new(common::cni::code::DECODE, format!("decoding prevResult: {e}")))?;
    let ifname = req.env.ifname();
    let netns = req.env.netns.as_deref().unwrap_or_else(|| std::path::Path::new(""));
    let Some(idx) = prev.interfaces.iter().position(|i| i.name == ifname && !i.sandbox.is_empty()) else {
        return Err(CniError::internal(format!("prevResult lists no container interface {ifname}")));
    };
    let host_if =
        prev.interfaces.iter().find(|i| i.sandbox.is_empty()).map(|i| i.name.clone()).unwrap_or_else(|| Attachment::from_request(req).host_veth());
    let expected = Expected {
        host_if,
        ifname: ifname.to_string(),
        owner: req.env.container_id().to_string(),
        mac: Some(prev.interfaces[idx].mac.clone()).filter(|m| !m.is_empty()),
        ips: prev.ips.iter().filter(|ip| ip.interface.is_none_or(|i| i == idx)).map(|ip| ip.address.addr()).collect(),
    };
    let container_ns = open_container_ns(netns)?;
    dataplane::verify(&container_ns, &expected).map_err(CniError::from)?;
    ipam::call(&conf, Command::Check, req)
}
