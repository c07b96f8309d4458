//! The CNI verbs of `cni-ipam`. Each verb parses the config once, opens the store, takes the node lock for
//! the whole operation and calls the allocator. `add`/`del`/`gc` below are store-generic for the unit tests.
use crate::backend::{Backend, Retry};
use crate::error::IpamError;
use crate::ipam::config::{requested_ips, IpamConf, StoreConf};
use crate::ipam::records::{load, Handle};
use crate::ipam::{Assignment, Ipam, Now, Owner};
use common::cni::{code, CniError, CniResult, IpConfig, Plugin, Request, Route};
use common::store::{Datastore, Key, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Set to anything, makes the plugin print its etcd request count to stderr (round-trip tests).
pub const REQUEST_COUNT_ENV: &str = "CNI_IPAM_ETCD_REQUESTS";

pub struct IpamPlugin;

impl Plugin for IpamPlugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        cni_add(req, &mut |_| {}).map_err(CniError::from)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        cni_del(req).map_err(CniError::from)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        cni_check(req).map_err(CniError::from)
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        // Open and lock the store, and read one record: for etcd this proves a member answers.
        let ready = IpamConf::parse(&req.config).and_then(|c| open_store(&c)).and_then(|s| {
            s.begin_operation();
            Ok(s.lock()?.get(&Key::IpamConfig).map(drop)?)
        });
        ready.map_err(|e| CniError::new(code::NOT_AVAILABLE, format!("IPAM store not available: {e}")))
    }

    fn gc(&self, req: &Request) -> Result<(), CniError> {
        cni_gc(req).map_err(CniError::from)
    }
}

/// Whether this build can serve `config`: the etcd store needs the `etcd` feature and, for https:// members,
/// `tls`; cni-calico's in-process copy leaves both out and execs cni-ipam for such a config. A config that
/// does not parse counts as served, so that it fails here with the plugin's own error.
pub fn can_serve(config: &serde_json::Value) -> bool {
    let etcd = |v: &serde_json::Value| v.get("datastore_type").and_then(|t| t.as_str()) == Some("etcdv3");
    if cfg!(feature = "tls") || !(etcd(config) || config.get("ipam").is_some_and(etcd)) {
        return true;
    }
    !IpamConf::parse(config).is_ok_and(|c| matches!(&c.store, StoreConf::Etcd(o) if !cfg!(feature = "etcd") || o.needs_tls()))
}

pub fn open_store(conf: &IpamConf) -> Result<Backend, IpamError> {
    Backend::open(&conf.store)
}

/// Retry budget for callers that bring their own store (tests, benchmarks): conflicts only, 30 s.
pub fn default_retry() -> Retry {
    Retry { attempts: 100, deadline: Instant::now() + Duration::from_secs(30), io: false }
}

fn report_requests(store: &Backend) {
    if let (Some(n), Some(_)) = (store.etcd_requests(), std::env::var_os(REQUEST_COUNT_ENV)) {
        eprintln!("etcd requests: {n}");
    }
}

/// `<network name>.<container id>`, cut at the first `\r` as Calico sanitises handles.
pub fn handle_id(network: &str, container_id: &str) -> String {
    let h = format!("{network}.{container_id}");
    match h.split_once('\r') {
        Some((head, _)) => head.to_string(),
        None => h,
    }
}

fn k8s_pod(req: &Request) -> Option<(&str, &str)> {
    let ns = req.env.arg("K8S_POD_NAMESPACE").filter(|s| !s.is_empty())?;
    let pod = req.env.arg("K8S_POD_NAME").filter(|s| !s.is_empty())?;
    Some((ns, pod))
}

fn owner_for(req: &Request, node: &str) -> Owner {
    let mut attrs = BTreeMap::new();
    attrs.insert("node".to_string(), node.to_string());
    attrs.insert("timestamp".to_string(), Now::system().go_string);
    // Lets `cni-ipam check --node` on this node find allocations whose sandbox is gone.
    if let Some(netns) = req.env.netns.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        attrs.insert("netns".to_string(), netns.display().to_string());
    }
    if let Some((ns, pod)) = k8s_pod(req) {
        attrs.insert("namespace".to_string(), ns.to_string());
        attrs.insert("pod".to_string(), pod.to_string());
    }
    Owner { handle: handle_id(&req.name, req.env.container_id()), attrs }
}

/// ADD that hands its result to `early` as soon as the allocation is durable, before the store session ends
/// (record files written, lock released): cni-calico's in-process call wires the pod meanwhile.
pub fn add_early(req: &Request, early: &mut dyn FnMut(&CniResult)) -> Result<CniResult, CniError> {
    cni_add(req, early).map_err(CniError::from)
}

fn cni_add(req: &Request, early: &mut dyn FnMut(&CniResult)) -> Result<CniResult, IpamError> {
    let conf = IpamConf::parse(&req.config)?;
    let requested = requested_ips(req.env.arg("IP"))?;
    let store = open_store(&conf)?;
    let retry = store.begin_operation();
    let mut session = store.lock()?;
    let got = add_in(&mut *session, retry, &conf, &owner_for(req, &conf.node.name), &requested);
    let result = got.map(|got| CniResult {
        cni_version: req.cni_version.clone(),
        ips: got.iter().map(|a| IpConfig { address: a.address(), gateway: None, interface: None }).collect(),
        routes: got.iter().map(|a| Route::to(a.block)).collect(),
        ..Default::default()
    });
    if let Ok(r) = &result {
        early(r);
    }
    drop(session);
    report_requests(&store);
    result
}

/// Assigns the requested addresses, or one per enabled family. All or nothing: if a later family fails, the
/// addresses already taken by this call are released before the error is returned.
pub fn add(store: &dyn Datastore, conf: &IpamConf, owner: &Owner, requested: &[IpAddr]) -> Result<Vec<Assignment>, IpamError> {
    add_with(store, default_retry(), conf, owner, requested)
}

/// `add`, retried on conflicts (another node changed a record) and, per `retry`, on unreachable members.
/// A conflict storm ends in a code-11 error after `retry.attempts`; nothing is handed out twice, because
/// every attempt commits with compare-and-swap.
pub fn add_with(store: &dyn Datastore, retry: Retry, conf: &IpamConf, owner: &Owner, requested: &[IpAddr]) -> Result<Vec<Assignment>, IpamError> {
    add_in(&mut *store.lock()?, retry, conf, owner, requested)
}

/// `add_with` inside a session the caller holds.
fn add_in(session: &mut dyn Store, retry: Retry, conf: &IpamConf, owner: &Owner, requested: &[IpAddr]) -> Result<Vec<Assignment>, IpamError> {
    let mut held_before = None;
    for attempt in 1.. {
        match add_once(session, conf, owner, requested, &mut held_before) {
            Err(e) if retry.again(attempt, &e) => continue,
            Err(e) if e.is_conflict() => return Err(IpamError::Busy { attempts: attempt, last: e.to_string() }),
            done => return done,
        }
    }
    unreachable!("the retry loop returns")
}

/// One attempt. `held_before` remembers whether the handle held addresses when the first attempt began: if it
/// did not and does now, an earlier attempt's commit was applied although its answer was lost, so those
/// addresses are released first rather than leaked next to the new ones.
fn add_once(
    session: &mut dyn Store,
    conf: &IpamConf,
    owner: &Owner,
    requested: &[IpAddr],
    held_before: &mut Option<bool>,
) -> Result<Vec<Assignment>, IpamError> {
    let hkey = Key::Handle(owner.handle.clone());
    let mut ipam = Ipam::open(session, &[Key::PoolNames, Key::HostBlocks(conf.node.name.clone()), hkey.clone()])?;
    let held = load_handle(&ipam, &hkey)?;
    match *held_before {
        None => *held_before = Some(held),
        Some(false) if held => {
            tracing::warn!(handle = %owner.handle, "an earlier attempt's commit was applied after all: releasing it");
            ipam.release_by_handle(&owner.handle)?;
        }
        Some(_) => {}
    }
    ipam.prefetch_for_node(&conf.node.name)?;
    // Resolve every pool first, so configuration errors come before any write.
    let mut plan = Vec::new();
    if requested.is_empty() {
        if conf.assign_ipv4 {
            plan.push((false, ipam.select_pools(false, &conf.ipv4_pools, &conf.node)?));
        }
        if conf.assign_ipv6 {
            plan.push((true, ipam.select_pools(true, &conf.ipv6_pools, &conf.node)?));
        }
    }
    let mut got = Vec::new();
    let mut failure = None;
    for ip in requested {
        match ipam.assign_ip(*ip, &conf.node, owner) {
            Ok(a) => got.push(a),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    for (v6, pools) in &plan {
        if failure.is_some() {
            break;
        }
        match ipam.auto_assign(*v6, pools, &conf.node, owner) {
            Ok(a) => got.push(a),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        let undo: Vec<(IpAddr, Option<u64>)> = got.iter().map(|a| (a.ip, None)).collect();
        if let Err(u) = ipam.release_ips(&undo) {
            tracing::error!(error = %u, "could not release the addresses of a failed ADD");
        }
        return Err(e);
    }
    tracing::info!(handle = %owner.handle, ips = ?got.iter().map(|a| a.address().to_string()).collect::<Vec<_>>(), "assigned");
    Ok(got)
}

fn load_handle(ipam: &Ipam, key: &Key) -> Result<bool, IpamError> {
    Ok(ipam.handle(key)?.is_some_and(|h| !h.deleted && h.block.values().any(|n| *n > 0)))
}

fn cni_del(req: &Request) -> Result<(), IpamError> {
    let conf = IpamConf::parse(&req.config)?;
    let store = open_store(&conf)?;
    let retry = store.begin_operation();
    let mut handles = vec![handle_id(&req.name, req.env.container_id())];
    // The workload-ID handle of Calico v2.x and of CRI container-ID changes.
    handles.push(match k8s_pod(req) {
        Some((ns, pod)) => format!("{ns}.{pod}"),
        None => req.env.container_id().to_string(),
    });
    let r = del_with(&store, retry, &handles).map(drop);
    report_requests(&store);
    r
}

/// Releases every address of each handle; handles that do not exist are fine (DEL is idempotent).
pub fn del(store: &dyn Datastore, handles: &[String]) -> Result<usize, IpamError> {
    del_with(store, default_retry(), handles)
}

pub fn del_with(store: &dyn Datastore, retry: Retry, handles: &[String]) -> Result<usize, IpamError> {
    let mut session = store.lock()?;
    let keys: Vec<Key> = handles.iter().map(|h| Key::Handle(h.clone())).collect();
    let mut released = 0;
    for attempt in 1.. {
        let once = (|| {
            let mut ipam = Ipam::open(&mut *session, &keys)?;
            ipam.prefetch_handle_blocks(handles)?;
            let mut n = 0;
            for h in handles {
                n += ipam.release_by_handle(h)?;
            }
            Ok(n)
        })();
        match once {
            Ok(n) => {
                released += n;
                break;
            }
            Err(e) if retry.again(attempt, &e) => continue,
            Err(e) if e.is_conflict() => return Err(IpamError::Busy { attempts: attempt, last: e.to_string() }),
            Err(e) => return Err(e),
        }
    }
    Ok(released)
}

fn cni_check(req: &Request) -> Result<(), IpamError> {
    let conf = IpamConf::parse(&req.config)?;
    let store = open_store(&conf)?;
    store.begin_operation();
    let session = store.lock()?;
    let handle = handle_id(&req.name, req.env.container_id());
    match load::<Handle>(&*session, &Key::Handle(handle.clone()))? {
        Some((h, _)) if !h.deleted && h.block.values().any(|n| *n > 0) => Ok(()),
        _ => Err(IpamError::NoAllocation(handle)),
    }
}

fn cni_gc(req: &Request) -> Result<(), IpamError> {
    let conf = IpamConf::parse(&req.config)?;
    let Some(valid) = valid_attachments(&req.config)? else {
        tracing::info!("GC without cni.dev/valid-attachments: nothing released");
        return Ok(());
    };
    let store = open_store(&conf)?;
    gc(&store, &req.name, &conf.node.name, &valid).map(drop)
}

/// Container IDs from `cni.dev/valid-attachments` (or the older `cni.dev/attachments`); `None` if absent.
pub fn valid_attachments(config: &serde_json::Value) -> Result<Option<BTreeSet<String>>, IpamError> {
    let list = match config.get("cni.dev/valid-attachments").or_else(|| config.get("cni.dev/attachments")) {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(list)) => list,
        Some(other) => return Err(IpamError::Config(format!("cni.dev/valid-attachments must be a list, got {other}"))),
    };
    list.iter()
        .map(|a| {
            a.get("containerID")
                .and_then(|c| c.as_str())
                .map(str::to_string)
                .ok_or_else(|| IpamError::Config(format!("cni.dev/valid-attachments entry without containerID: {a}")))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

pub fn gc(store: &dyn Datastore, network: &str, node: &str, valid: &BTreeSet<String>) -> Result<usize, IpamError> {
    let mut session = store.lock()?;
    Ipam::new(&mut *session)?.gc(network, node, valid)
}

#[cfg(test)]
mod tests {
    use super::can_serve;
    use serde_json::json;

    /// What cni-calico's in-process copy (built without `etcd` and `tls`) hands to an exec'd cni-ipam.
    #[test]
    fn etcd_configs_are_served_only_by_builds_that_have_etcd() {
        let ipam = |extra: serde_json::Value| {
            let mut conf = json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "cni-ipam"}});
            for (k, v) in extra.as_object().into_iter().flatten() {
                conf["ipam"][k] = v.clone();
            }
            conf
        };
        assert!(can_serve(&ipam(json!({}))), "the local store is always served");
        assert!(can_serve(&ipam(json!({"datastore_type": "etcdv3"}))), "a broken etcd config fails here, with its error");
        let plain = ipam(json!({"datastore_type": "etcdv3", "etcd_endpoints": "http://127.0.0.1:2379"}));
        assert_eq!(can_serve(&plain), cfg!(feature = "etcd"));
        let tls = ipam(json!({"datastore_type": "etcdv3", "etcd_endpoints": "https://127.0.0.1:2379", "etcd_ca_cert_file": "/ca.pem"}));
        assert_eq!(can_serve(&tls), cfg!(feature = "tls"));
        let mut top = json!({"cniVersion": "1.0.0", "name": "n", "datastore_type": "etcdv3", "etcd_endpoints": "unixs:///run/e.sock"});
        top["ipam"] = json!({"type": "cni-ipam"});
        assert_eq!(can_serve(&top), cfg!(feature = "tls"), "etcd keys at the top level count too");
    }
}
