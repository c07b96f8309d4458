//! DEL: idempotent, and only ever of this attachment. The container interface goes unless it is marked as
//! another container's (a late DEL of an old sandbox meeting the new one in a reused netns); the IPAM plugin
//! then releases what this attachment holds. It is started the moment the kernel announces the interface
//! unregistered, so its work overlaps the kernel's slow teardown (~20 ms of RCU waits) without an address
//! ever being free while an interface still holds it.
use crate::config::NetConf;
use crate::dataplane;
use crate::ipam::{self, Pending};
use common::attachment::Attachment;
use common::cni::{CniError, Command, Request};
use common::netns::NetNs;

pub fn del(req: &Request) -> Result<(), CniError> {
    let conf = NetConf::from_request(req)?;
    let att = Attachment::from_request(req);
    let mut ipam: Option<Result<Pending, CniError>> = None;
    let mut release = || ipam = Some(ipam::start(&conf, Command::Del, req));
    let dataplane_result = match &req.env.netns {
        // An empty CNI_NETNS, a netns already gone or no longer a namespace: the veth died with it.
        None => {
            release();
            Ok(())
        }
        Some(path) => match NetNs::open(path) {
            Ok(ns) => dataplane::teardown(&ns, &att.ifname, &att.container_id, &mut release).map(drop).map_err(CniError::from),
            Err(e) => {
                tracing::info!(netns = %path.display(), error = %e, "netns gone; nothing to remove");
                release();
                Ok(())
            }
        },
    };
    let ipam_result = match ipam {
        Some(started) => started.and_then(|pending| pending.wait()),
        None => Ok(()),
    };
    combine(dataplane_result, ipam_result)
}

/// DEL's outcome from its two halves; when both failed, both are reported.
fn combine(dataplane: Result<(), CniError>, ipam: Result<(), CniError>) -> Result<(), CniError> {
    match (dataplane, ipam) {
        (Ok(()), r) => r,
        // The interface may still be there: its addresses stay allocated until a DEL succeeds.
        (Err(e), Ok(())) => Err(e),
        (Err(d), Err(i)) => Err(both(d, i)),
    }
}

/// One error for two failures, neither lost: the first's code, both messages.
fn both(first: CniError, second: CniError) -> CniError {
    let details = [first.details.as_str(), second.details.as_str()].iter().filter(|d| !d.is_empty()).copied().collect::<Vec<_>>().join("; ");
    CniError::new(first.code, format!("{}; and IPAM: {}", first.msg, second.msg)).with_details(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_del_that_fails_twice_reports_both() {
        let d = CniError::internal("deleting eth0: Device or resource busy");
        let i = CniError::new(11, "datastore: store I/O error").with_details("etcd unreachable");
        let e = combine(Err(d.clone()), Err(i.clone())).unwrap_err();
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("Device or resource busy") && e.msg.contains("store I/O error"), "{}", e.msg);
        assert_eq!(e.details, "etcd unreachable");
        assert_eq!(combine(Ok(()), Err(i.clone())).unwrap_err().msg, i.msg);
        assert_eq!(combine(Err(d.clone()), Ok(())).unwrap_err().msg, d.msg);
        assert!(combine(Ok(()), Ok(())).is_ok());
    }
}
