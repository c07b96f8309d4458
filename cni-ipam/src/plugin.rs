//! The CNI verbs of `cni-ipam`. Each verb parses the config once, opens the store, takes the node lock for
//! the whole operation and calls the allocator. `add`/`del`/`gc` below are store-generic for the unit tests.
use crate::backend::{Backend, Retry};
use crate::error::IpamError;
use crate::ipam::allocator::node_key;
use crate::ipam::allocator::EndpointWrite;
use crate::ipam::config::{requested_ips, IpamConf, StoreConf};
use crate::ipam::{Assignment, Ipam, Node, Now, Owner, Pool};
use common::attachment::{split_handle, Attachment, DEFAULT_IFNAME};
use common::cni::{code, CniError, CniResult, IpConfig, Plugin, Request, Route};
use datastore::ipam::records::encode;
use datastore::resources::workloadendpoint::{endpoint_key, WorkloadEndpoint};
use datastore::store::{Datastore, Json, Key, Kind, Op, Revision, Store};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Set to anything, makes the plugin print its etcd request count to stderr (round-trip tests).
pub const REQUEST_COUNT_ENV: &str = "CNI_IPAM_ETCD_REQUESTS";

pub struct IpamPlugin;

impl Plugin for IpamPlugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        cni_add(req, &mut |_| {}).map(|a| a.result).map_err(CniError::from)
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
pub(crate) fn can_serve(config: &serde_json::Value) -> bool {
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

fn owner_for(req: &Request, node: &str, att: &Attachment) -> Owner {
    let mut attrs = BTreeMap::new();
    attrs.insert("node".to_string(), node.to_string());
    attrs.insert("timestamp".to_string(), Now::system().go_string);
    // Lets `cni-ipam check --node` on this node find allocations whose sandbox is gone.
    if let Some(netns) = netns_of(req) {
        attrs.insert("netns".to_string(), netns);
    }
    if let Some(pod) = &att.pod {
        attrs.insert("namespace".to_string(), pod.namespace.clone());
        attrs.insert("pod".to_string(), pod.name.clone());
    }
    Owner { handle: att.handle_id(), attrs }
}

fn netns_of(req: &Request) -> Option<String> {
    req.env.netns.as_ref().filter(|p| !p.as_os_str().is_empty()).map(|p| p.display().to_string())
}

/// An ADD's answer, and what to give back should the ADD fail after it.
#[derive(Debug, Clone)]
pub struct Added {
    pub result: CniResult,
    /// None when the attachment already held these addresses (a repeated ADD): a failure then takes nothing.
    pub undo: Option<Undo>,
}

/// Exactly what one ADD took: its new addresses (released by allocation, not by handle, so nothing else of
/// the handle goes with them) and the attachment record it wrote over `previous`.
#[derive(Debug, Clone)]
pub struct Undo {
    pub handle: String,
    pub ips: Vec<IpAddr>,
    pub endpoint: Key,
    /// Revision of the record this ADD wrote; the undo leaves a record changed since alone.
    pub written: Option<Revision>,
    pub previous: Option<Json>,
}

/// ADD that hands its answer to `early` as soon as the allocation is durable, before the store session ends
/// (record files written, lock released): cni-calico's in-process call wires the pod meanwhile.
pub fn add_early(req: &Request, early: &mut dyn FnMut(&Added)) -> Result<Added, CniError> {
    cni_add(req, early).map_err(CniError::from)
}

fn cni_add(req: &Request, early: &mut dyn FnMut(&Added)) -> Result<Added, IpamError> {
    let conf = IpamConf::parse(&req.config)?;
    let requested = requested_ips(&req.config, req.env.arg("IP"))?;
    let att = Attachment::from_request(req);
    let store = open_store(&conf)?;
    let retry = store.begin_operation();
    let mut session = store.lock()?;
    let owner = owner_for(req, &conf.node.name, &att);
    let got = add_in(&mut *session, retry, &conf, &owner, &requested, Some(&AttachmentCtx { att: &att, netns: netns_of(req) }));
    let added = got.map(|(got, undo)| {
        let ips: Vec<IpConfig> = got.iter().map(|a| IpConfig { address: result_address(a, &requested), gateway: None, interface: None }).collect();
        // Calico's IPAM: one route per address, its destination the address exactly as in `ips`.
        let routes = ips.iter().map(|ip| Route::to(ip.address)).collect();
        Added { result: CniResult { cni_version: req.cni_version.clone(), ips, routes, ..Default::default() }, undo }
    });
    if let Ok(a) = &added {
        early(a);
    }
    drop(session);
    report_requests(&store);
    added
}

/// Gives back what a failed ADD took (see `Undo`); addresses the handle no longer holds are skipped.
pub fn undo_add(req: &Request, undo: &Undo) -> Result<usize, CniError> {
    undo_in(req, undo).map_err(CniError::from)
}

fn undo_in(req: &Request, undo: &Undo) -> Result<usize, IpamError> {
    let conf = IpamConf::parse(&req.config)?;
    let store = open_store(&conf)?;
    let retry = store.begin_operation();
    let mut session = store.lock()?;
    let keys = [Key::PoolNames, Key::Handle(undo.handle.clone()), undo.endpoint.clone()];
    retried(retry, || {
        let mut ipam = Ipam::open(&mut *session, &keys)?;
        let mut extra = Vec::new();
        if let (Some(written), Some((_, rev))) = (undo.written, ipam.endpoint(&undo.endpoint)?) {
            if rev == written {
                extra.push(match &undo.previous {
                    Some(value) => Op::Update { key: undo.endpoint.clone(), value: value.clone(), rev },
                    None => Op::Delete { key: undo.endpoint.clone(), rev },
                });
            }
        }
        ipam.release_from_handle(&undo.handle, &undo.ips, extra)
    })
}

/// The attachment an ADD is for, when it comes through the CNI (tests and benchmarks allocate without one).
pub struct AttachmentCtx<'a> {
    pub att: &'a Attachment,
    pub netns: Option<String>,
}

/// What calico-ipam answers for an address: a requested one as `/32` (`/128`), an auto-assigned one with its
/// block's mask (`10.244.1.5/26`).
fn result_address(a: &Assignment, requested: &[IpAddr]) -> IpNet {
    if requested.contains(&a.ip) {
        IpNet::from(a.ip)
    } else {
        a.address()
    }
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
    add_in(&mut *store.lock()?, retry, conf, owner, requested, None).map(|(got, _)| got)
}

/// Runs `once` until it succeeds, fails for good, or the retry budget is spent on conflicts.
fn retried<T>(retry: Retry, mut once: impl FnMut() -> Result<T, IpamError>) -> Result<T, IpamError> {
    for attempt in 1.. {
        match once() {
            Err(e) if retry.again(attempt, &e) => continue,
            Err(e) if e.is_conflict() => return Err(IpamError::Busy { attempts: attempt, last: e.to_string() }),
            done => return done,
        }
    }
    unreachable!("the retry loop returns")
}

/// `add_with` inside a session the caller holds.
fn add_in(
    session: &mut dyn Store,
    retry: Retry,
    conf: &IpamConf,
    owner: &Owner,
    requested: &[IpAddr],
    ctx: Option<&AttachmentCtx>,
) -> Result<(Vec<Assignment>, Option<Undo>), IpamError> {
    let mut held_before = None;
    retried(retry, || add_once(session, conf, owner, requested, ctx, &mut held_before))
}

/// One way to get an address.
enum Step<'p> {
    Exactly(IpAddr),
    Auto { v6: bool, pools: &'p [Pool] },
}

/// One attempt. `held_before` remembers whether the handle held addresses when the first attempt began: if it
/// did not and does now, an earlier attempt's commit was applied although its answer was lost, so those
/// addresses are released first rather than leaked next to the new ones.
fn add_once(
    session: &mut dyn Store,
    conf: &IpamConf,
    owner: &Owner,
    requested: &[IpAddr],
    ctx: Option<&AttachmentCtx>,
    held_before: &mut Option<bool>,
) -> Result<(Vec<Assignment>, Option<Undo>), IpamError> {
    let node = &conf.node;
    let hkey = Key::Handle(owner.handle.clone());
    let ekey = ctx.map(|c| endpoint_key(c.att, &node.name));
    let mut keys = vec![Key::PoolNames, Key::HostBlocks(node.name.clone()), hkey.clone(), node_key(&node.name)];
    keys.extend(ekey.clone());
    let mut ipam = Ipam::open(session, &keys)?;
    // Pool selectors see the Node resource's labels when the node has one (Calico's behaviour), else the
    // config's `node_labels`.
    let node_with_labels = ipam.node_labels(&node.name)?.map(|labels| Node { name: node.name.clone(), labels });
    let node = node_with_labels.as_ref().unwrap_or(node);
    ipam.attachment = ekey.clone();
    let existing = match &ekey {
        Some(k) => ipam.endpoint(k)?,
        None => None,
    };
    if let (Some(c), Some((ep, _))) = (ctx, &existing) {
        if ep.belongs_to(c.att) {
            // A repeated ADD of the same attachment: its addresses again, nothing new taken.
            return reuse(&ipam, c.att, ep, &owner.handle, requested).map(|got| (got, None));
        }
        if !ep.same_slot(c.att) {
            return Err(IpamError::Attachment {
                attachment: describe(c.att),
                reason: format!("its record name {} is taken by container {} interface {}", ep.metadata.name, ep.spec.container_id, ep.spec.endpoint),
            });
        }
        tracing::info!(previous = %ep.spec.container_id, "a new sandbox takes over the workload's endpoint record");
    }
    let held = load_handle(&ipam, &hkey)?;
    match *held_before {
        None => *held_before = Some(held),
        Some(false) if held => {
            tracing::warn!(handle = %owner.handle, "an earlier attempt's commit was applied after all: releasing it");
            ipam.release_by_handle(&owner.handle)?;
        }
        Some(_) => {}
    }
    ipam.prefetch_for_node(&node.name)?;
    // Resolve every pool first, so configuration errors come before any write.
    let mut pools = Vec::new();
    if requested.is_empty() {
        if conf.assign_ipv4 {
            pools.push((false, ipam.select_pools(false, &conf.ipv4_pools, node)?));
        }
        if conf.assign_ipv6 {
            pools.push((true, ipam.select_pools(true, &conf.ipv6_pools, node)?));
        }
    }
    let steps: Vec<Step> =
        requested.iter().map(|ip| Step::Exactly(*ip)).chain(pools.iter().map(|(v6, p)| Step::Auto { v6: *v6, pools: p })).collect();
    let mut got: Vec<Assignment> = Vec::new();
    let mut failure = None;
    for (i, step) in steps.iter().enumerate() {
        if let (Some(c), Some(key), true) = (ctx, &ekey, i + 1 == steps.len()) {
            // The record rides on the commit of the last address.
            let mut record = WorkloadEndpoint::draft(c.att, &node.name, c.netns.as_deref(), &ipam.now.rfc3339);
            record.spec.ip_networks = got.iter().map(|a| IpNet::from(a.ip)).collect();
            ipam.carry = Some(EndpointWrite { key: key.clone(), rev: existing.as_ref().map(|e| e.1), record });
        }
        let one = match step {
            Step::Exactly(ip) => ipam.assign_ip(*ip, node, owner),
            Step::Auto { v6, pools } => ipam.auto_assign(*v6, pools, node, owner),
        };
        match one {
            Ok(a) => got.push(a),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    ipam.carry = None;
    if let Some(e) = failure {
        let ips: Vec<IpAddr> = got.iter().map(|a| a.ip).collect();
        if let Err(u) = ipam.release_from_handle(&owner.handle, &ips, Vec::new()) {
            tracing::error!(error = %u, "could not release the addresses of a failed ADD");
        }
        return Err(e);
    }
    tracing::info!(handle = %owner.handle, ips = ?got.iter().map(|a| a.address().to_string()).collect::<Vec<_>>(), "assigned");
    let undo = match (ctx, ekey) {
        (Some(_), Some(endpoint)) => Some(Undo {
            handle: owner.handle.clone(),
            ips: got.iter().map(|a| a.ip).collect(),
            written: ipam.endpoint(&endpoint)?.map(|(_, rev)| rev),
            previous: existing.map(|(ep, _)| encode(&ep)).transpose()?,
            endpoint,
        }),
        _ => None,
    };
    Ok((got, undo))
}

/// The addresses a repeated ADD answers with: the record's, as long as the handle still holds every one.
fn reuse(ipam: &Ipam, att: &Attachment, ep: &WorkloadEndpoint, handle: &str, requested: &[IpAddr]) -> Result<Vec<Assignment>, IpamError> {
    let ips: Vec<IpAddr> = ep.spec.ip_networks.iter().map(|n| n.addr()).collect();
    if !requested.is_empty() && requested.iter().any(|r| !ips.contains(r)) {
        return Err(IpamError::Attachment { attachment: describe(att), reason: format!("already holds {ips:?}; the ADD asks for {requested:?}") });
    }
    let mut got = Vec::new();
    for ip in ips {
        match ipam.holder(ip)? {
            Some((a, h)) if h == handle => got.push(a),
            other => {
                let by = other.map_or("nobody".to_string(), |(_, h)| format!("handle {h:?}"));
                return Err(IpamError::Attachment {
                    attachment: describe(att),
                    reason: format!("its record lists {ip}, which is held by {by}; DEL the attachment before adding it again"),
                });
            }
        }
    }
    tracing::info!(handle, "repeated ADD: the attachment keeps its addresses");
    Ok(got)
}

fn describe(att: &Attachment) -> String {
    format!("{}/{}/{}", att.network, att.container_id, att.ifname)
}

fn load_handle(ipam: &Ipam, key: &Key) -> Result<bool, IpamError> {
    Ok(ipam.handle(key)?.is_some_and(|h| !h.deleted && h.block.values().any(|n| *n > 0)))
}

fn cni_del(req: &Request) -> Result<(), IpamError> {
    let conf = IpamConf::parse(&req.config)?;
    let store = open_store(&conf)?;
    let retry = store.begin_operation();
    let att = Attachment::from_request(req);
    let r = del_attachment(&store, retry, &att, &conf.node.name).map(drop);
    report_requests(&store);
    r
}

/// DEL of one attachment: releases what its handle holds (and, for the default interface, the legacy
/// workload handle) and deletes its record, in one commit, if the record is its own; a record that names
/// another container (a newer sandbox of the pod) is left alone. Idempotent.
pub fn del_attachment(store: &dyn Datastore, retry: Retry, att: &Attachment, node: &str) -> Result<usize, IpamError> {
    let mut session = store.lock()?;
    let ekey = endpoint_key(att, node);
    let handles: Vec<String> = std::iter::once(att.handle_id()).chain(att.legacy_handle_id()).collect();
    let mut keys: Vec<Key> = handles.iter().map(|h| Key::Handle(h.clone())).collect();
    keys.push(ekey.clone());
    retried(retry, || {
        let mut ipam = Ipam::open(&mut *session, &keys)?;
        ipam.prefetch_handle_blocks(&handles)?;
        let extra = match ipam.endpoint(&ekey)? {
            Some((ep, rev)) if ep.belongs_to(att) => vec![Op::Delete { key: ekey.clone(), rev }],
            Some((ep, _)) => {
                tracing::info!(owner = %ep.spec.container_id, "the endpoint record belongs to another container: kept");
                Vec::new()
            }
            None => Vec::new(),
        };
        let mut n = ipam.release_by_handle_with(&handles[0], extra)?;
        for h in &handles[1..] {
            n += ipam.release_by_handle(h)?;
        }
        Ok(n)
    })
}

/// Releases every address of each handle; handles that do not exist are fine (DEL is idempotent).
pub fn del(store: &dyn Datastore, handles: &[String]) -> Result<usize, IpamError> {
    del_with(store, default_retry(), handles)
}

pub fn del_with(store: &dyn Datastore, retry: Retry, handles: &[String]) -> Result<usize, IpamError> {
    let mut session = store.lock()?;
    let keys: Vec<Key> = handles.iter().map(|h| Key::Handle(h.clone())).collect();
    retried(retry, || {
        let mut ipam = Ipam::open(&mut *session, &keys)?;
        ipam.prefetch_handle_blocks(handles)?;
        let mut n = 0;
        for h in handles {
            n += ipam.release_by_handle(h)?;
        }
        Ok(n)
    })
}

fn cni_check(req: &Request) -> Result<(), IpamError> {
    let conf = IpamConf::parse(&req.config)?;
    let store = open_store(&conf)?;
    store.begin_operation();
    let mut session = store.lock()?;
    let att = Attachment::from_request(req);
    let handle = att.handle_id();
    let ekey = endpoint_key(&att, &conf.node.name);
    let ipam = Ipam::open(&mut *session, &[Key::PoolNames, Key::Handle(handle.clone()), ekey.clone()])?;
    let fail = |reason: String| IpamError::Attachment { attachment: describe(&att), reason };
    let Some((ep, _)) = ipam.endpoint(&ekey)? else {
        // Attachments made before records existed: the handle holding addresses is all there is to check.
        return if load_handle(&ipam, &Key::Handle(handle.clone()))? { Ok(()) } else { Err(IpamError::NoAllocation(handle)) };
    };
    if !ep.belongs_to(&att) {
        return Err(fail(format!("its record belongs to container {} (network {:?})", ep.spec.container_id, ep.network())));
    }
    let recorded: BTreeSet<IpAddr> = ep.spec.ip_networks.iter().map(|n| n.addr()).collect();
    for ip in &recorded {
        match ipam.holder(*ip)? {
            Some((_, h)) if h == handle => {}
            Some((_, h)) => return Err(fail(format!("address {ip} is held by handle {h:?}"))),
            None => return Err(fail(format!("address {ip} is not allocated"))),
        }
    }
    if let Some(prev) = req.config.get("prevResult").filter(|p| !p.is_null()) {
        let prev = CniResult::from_value(prev).map_err(|e| IpamError::Config(format!("prevResult: {e}")))?;
        let given: BTreeSet<IpAddr> = prev.ips.iter().map(|ip| ip.address.addr()).collect();
        if given != recorded {
            return Err(fail(format!("prevResult lists {given:?} but the attachment holds {recorded:?}")));
        }
    }
    Ok(())
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

/// An entry of `cni.dev/valid-attachments`: a container ID and, when the runtime gives it, the interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValidAttachment {
    pub container_id: String,
    pub ifname: Option<String>,
}

/// Entries of `cni.dev/valid-attachments` (or the older `cni.dev/attachments`); `None` if absent.
pub fn valid_attachments(config: &serde_json::Value) -> Result<Option<BTreeSet<ValidAttachment>>, IpamError> {
    let list = match config.get("cni.dev/valid-attachments").or_else(|| config.get("cni.dev/attachments")) {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(list)) => list,
        Some(other) => return Err(IpamError::Config(format!("cni.dev/valid-attachments must be a list, got {other}"))),
    };
    list.iter()
        .map(|a| {
            let container_id = a
                .get("containerID")
                .and_then(|c| c.as_str())
                .map(str::to_string)
                .ok_or_else(|| IpamError::Config(format!("cni.dev/valid-attachments entry without containerID: {a}")))?;
            let ifname = match a.get("ifname") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(other) => return Err(IpamError::Config(format!("cni.dev/valid-attachments: ifname must be a string, got {other}"))),
            };
            Ok(ValidAttachment { container_id, ifname })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Whether `handle` of `network` belongs to one of `valid` (an entry without an interface covers all of
/// its container's).
fn handle_is_valid(handle: &str, network: &str, valid: &BTreeSet<ValidAttachment>) -> bool {
    let Some((cid, ifname)) = split_handle(handle, Some(network)) else { return true };
    let ifname = ifname.unwrap_or(DEFAULT_IFNAME);
    valid.iter().any(|v| v.container_id == cid && v.ifname.as_deref().is_none_or(|i| i == ifname))
}

/// CNI GC: releases the attachments of `network` on `node` that are not in `valid`, records and all. Scans
/// (GC is rare; the ADD path never scans). Returns the number of addresses released.
pub fn gc(store: &dyn Datastore, network: &str, node: &str, valid: &BTreeSet<ValidAttachment>) -> Result<usize, IpamError> {
    let mut session = store.lock()?;
    let mut released = 0;
    // Records first, each with its handle in one commit; then allocations that have no record.
    for (key, rec) in session.list(Kind::Resource(&datastore::resources::kinds::WORKLOAD_ENDPOINT))? {
        let Ok(ep) = rec.value.decode::<WorkloadEndpoint>() else { continue };
        if ep.spec.node != node || ep.network() != network {
            continue;
        }
        let att = ep.attachment();
        if handle_is_valid(&att.handle_id(), network, valid) {
            continue;
        }
        tracing::info!(record = %key, "GC releases a stale attachment");
        let mut ipam = Ipam::open(&mut *session, &[Key::Handle(att.handle_id()), key.clone()])?;
        let extra = match ipam.endpoint(&key)? {
            Some((_, rev)) => vec![Op::Delete { key: key.clone(), rev }],
            None => Vec::new(),
        };
        released += ipam.release_by_handle_with(&att.handle_id(), extra)?;
    }
    released += Ipam::new(&mut *session)?.gc(network, node, &|h| handle_is_valid(h, network, valid))?;
    Ok(released)
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
