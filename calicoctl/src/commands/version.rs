//! `calicoctl version [--client]`: this client's version, and the cluster's from the `default`
//! ClusterInformation (which Calico's node agent writes; "unknown" until one does).
use super::open;
use crate::args::Args;
use crate::error::{CtlError, Result};
use datastore::resources::kinds::KindInfo;
use datastore::store::Key;
use serde_json::Value;

/// ClusterInformation, read here only: the node agent will own it (the kinds table does not list it yet).
static CLUSTER_INFORMATION: KindInfo = KindInfo {
    kind: "ClusterInformation",
    plural: "clusterinformations",
    prefix: "/calico/resources/v3/projectcalico.org/clusterinformations/",
    names: &["clusterinformation", "clusterinformations", "clusterinfo", "clusterinfos"],
    namespaced: false,
    validate: |v| Ok(v.clone()),
};

pub fn run(args: &Args) -> Result<()> {
    args.allow("version", &["config", "client", "poll"])?;
    if args.get("poll").is_some() {
        return Err(CtlError::Unsupported("calicoctl version --poll is not supported by calico-rs".into()));
    }
    println!("Client Version:    v{} (calico-rs)", env!("CARGO_PKG_VERSION"));
    println!("Git commit:        {}", option_env!("CALICO_RS_GIT_COMMIT").unwrap_or("unknown"));
    if args.on("client") {
        return Ok(());
    }
    let opened = open(args)?;
    let session = opened.datastore().lock()?;
    let info = session.get(&Key::resource(&CLUSTER_INFORMATION, "default"))?.map(|r| r.value.to_value());
    let field = |k: &str| {
        info.as_ref()
            .and_then(|v| v.pointer(&format!("/spec/{k}")))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    };
    println!("Cluster Version:   {}", field("calicoVersion"));
    println!("Cluster Type:      {}", field("clusterType"));
    Ok(())
}
