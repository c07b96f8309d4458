//! DEL: idempotent. Removes the container interface if it is still there, then always releases through IPAM.
use crate::config::NetConf;
use crate::dataplane;
use common::cni::{delegate, CniError, Command, Request};
use common::netns::NetNs;

pub fn del(req: &Request) -> Result<(), CniError> {
    let conf = NetConf::from_request(req)?;
    let ipam_type = conf.ipam_type()?;
    let dataplane_result = match &req.env.netns {
        // An empty CNI_NETNS, a netns already gone or no longer a namespace: the veth died with it.
        None => Ok(()),
        Some(path) => match NetNs::open(path) {
            Ok(ns) => dataplane::teardown(&ns, req.env.ifname()).map_err(CniError::from),
            Err(e) => {
                tracing::info!(netns = %path.display(), error = %e, "netns gone; nothing to remove");
                Ok(())
            }
        },
    };
    let ipam_result = delegate::ipam_call(ipam_type, Command::Del, &req.env, &req.stdin);
    dataplane_result.and(ipam_result)
}
