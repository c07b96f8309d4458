//! cni-calico: Calico's CNI network plugin. One file per verb flow; the wiring itself is in `dataplane`.
pub mod add;
pub mod check;
pub mod config;
pub mod dataplane;
pub mod del;
pub mod error;
pub mod ipam;

use common::cni::{code, delegate, CniError, CniResult, Command, Plugin, Request};
use common::netns::NetNs;
use config::NetConf;
use std::path::Path;

pub struct Calico;

impl Plugin for Calico {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        add::add(req)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        del::del(req)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        check::check(req)
    }

    /// Ready when the IPAM plugin is installed and says it is ready (its store is reachable).
    fn status(&self, req: &Request) -> Result<(), CniError> {
        let conf = NetConf::from_request(req)?;
        let ipam_type = conf.ipam_type()?;
        delegate::find(ipam_type, &req.env.path).map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg))?;
        ipam::call(&conf, Command::Status, req).map_err(|e| match e.code {
            code::NOT_AVAILABLE | code::LIMITED_CONNECTIVITY => e,
            _ => CniError::new(code::NOT_AVAILABLE, format!("IPAM plugin {ipam_type} not ready: {}", e.msg)).with_details(e.details),
        })
    }

    /// Our host-side state dies with each veth, so GC is the IPAM plugin's: pass the valid attachments on.
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let conf = NetConf::from_request(req)?;
        ipam::call(&conf, Command::Gc, req)
    }
}

/// Opens CNI_NETNS, refusing our own namespace (skel's code 8) and anything that is not a namespace.
pub fn open_container_ns(path: &Path) -> Result<NetNs, CniError> {
    let err = |e: std::io::Error| CniError::from(error::Error::Netns { path: path.display().to_string(), source: e });
    let ns = NetNs::open(path).map_err(err)?;
    let own = NetNs::current().map_err(err)?;
    if ns.same_as(&own).map_err(err)? {
        return Err(CniError::new(code::INVALID_NETNS, "plugin's netns and netns from CNI_NETNS should not be the same"));
    }
    Ok(ns)
}
