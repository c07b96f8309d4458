//! DEL: idempotent. Always releases through IPAM and removes the container interface if it is still there.
//! The IPAM plugin runs while the kernel tears the veth down (~20 ms of RCU waits), not after it.
use crate::config::NetConf;
use crate::dataplane;
use crate::ipam;
use common::cni::{CniError, Command, Request};
use common::netns::NetNs;

pub fn del(req: &Request) -> Result<(), CniError> {
    let conf = NetConf::from_request(req)?;
    // Released before the link is gone, as Calico and ptp do; the FIFO reuse of cni-ipam keeps a just-freed
    // address away from the next pod anyway.
    let ipam = ipam::start(&conf, Command::Del, req);
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
    let ipam_result = ipam.and_then(|pending| pending.wait());
    dataplane_result.and(ipam_result)
}
