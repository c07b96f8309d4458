//! The etcd v3 store: records as JSON values under Calico's keys, read with ranges and written with one etcd
//! transaction per commit (compares: create = `version == 0`, update/delete = `mod_revision == rev`), so a
//! commit applies whole or not at all across every node. A session takes a node-local flock (like Calico's
//! `/var/run/calico/ipam.lock`) to keep runtimes on one node from racing each other; across nodes, the
//! compare-and-swap does the work. A reader follows the store without that lock: snapshots are ranges at one
//! revision, watches etcd's watch stream through the gateway (`watch.rs`).
mod client;
mod stream;
mod watch;

use super::watch::{distinct_prefixes, Snapshot, Watchable, Watcher};
use super::{check_distinct, Datastore, Json, Key, Kind, Op, Record, Revision, Store, StoreError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use client::{Client, ClientError, Response};
use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use client::{Endpoint, TlsFiles};

/// etcd's default `--max-txn-ops`: the most operations one transaction branch may hold.
const MAX_TXN_OPS: usize = 128;
/// Records per page when listing a prefix.
const PAGE: usize = 500;

/// How to reach etcd (Calico's config keys: `etcd_endpoints`, `etcd_key_file`, `etcd_cert_file`,
/// `etcd_ca_cert_file`; calico-rs: `etcd_timeout`, `ipam_lock_file`).
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    pub timeout: Duration,
    pub tls: TlsFiles,
    /// Node-local lock file; `None` = no node lock (compare-and-swap alone).
    pub lock_file: Option<PathBuf>,
}

impl EtcdOptions {
    /// True when talking to these members takes TLS (an https:// or unixs:// endpoint, or certificate files).
    pub fn needs_tls(&self) -> bool {
        !self.tls.is_empty() || self.endpoints.iter().any(|e| Endpoint::parse(e).is_ok_and(|e| e.tls))
    }

    pub fn new(endpoints: &str) -> EtcdOptions {
        EtcdOptions {
            endpoints: endpoints.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            timeout: Duration::from_secs(5),
            tls: TlsFiles::default(),
            lock_file: None,
        }
    }
}

pub struct EtcdStore {
    client: Client,
    lock_file: Option<PathBuf>,
    watch_probe: Duration,
}

impl EtcdStore {
    /// Checks the options and loads TLS material; no request is made until the first read.
    pub fn open(opts: &EtcdOptions) -> Result<EtcdStore, StoreError> {
        let client = Client::new(&opts.endpoints, opts.timeout, &opts.tls).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(EtcdStore { client, lock_file: opts.lock_file.clone(), watch_probe: Duration::from_secs(10) })
    }

    /// Requests sent to etcd so far by this store (round-trip counting in tests and benchmarks).
    pub fn requests(&self) -> u64 {
        self.client.requests()
    }

    /// Caps every later request at `deadline` (the end of a CNI operation), on top of the per-request timeout.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        self.client.set_deadline(deadline)
    }

    pub fn timeout(&self) -> Duration {
        self.client.timeout()
    }

    /// How long a watch stream may stay silent before its member is asked whether it still serves (default
    /// 10 s): a member cut off from the others, or hung, sends nothing and closes nothing.
    pub fn with_watch_probe(mut self, after: Duration) -> EtcdStore {
        self.watch_probe = after;
        self
    }

    fn post(&self, path: &str, body: Value) -> Result<Response, StoreError> {
        self.client.post(path, &body).map_err(store_error)
    }

    /// Every key-value under `prefix` at revision `at` (0: the current one), paged; returns the revision read.
    fn range_prefix(&self, prefix: &str, at: Revision) -> Result<(Revision, Vec<(String, Record)>), RangeError> {
        let end = B64.encode(prefix_end(prefix));
        let mut from = prefix.as_bytes().to_vec();
        let mut at_rev = at;
        let mut out = Vec::new();
        // Bounded: each page advances past its last key; a page of fewer than PAGE keys ends the scan.
        for _ in 0..1_000_000 {
            let mut req = json!({"key": B64.encode(&from), "range_end": end, "limit": PAGE.to_string()});
            if at_rev > 0 {
                req["revision"] = json!(at_rev.to_string());
            }
            let r = self.client.post("/v3/kv/range", &req)?;
            if at_rev == 0 {
                at_rev = num(&r.body["header"]["revision"]);
            }
            let kvs = r.body["kvs"].as_array().cloned().unwrap_or_default();
            let mut last = None;
            for kv in &kvs {
                let (path, rec) = decode_kv(kv).map_err(RangeError::Failed)?;
                last = Some(path.clone());
                out.push((path, rec));
            }
            match (last, r.body["more"].as_bool().unwrap_or(false)) {
                (Some(last), true) => {
                    from = last.into_bytes();
                    from.push(0);
                }
                _ => return Ok((at_rev, out)),
            }
        }
        Err(RangeError::Failed(bad("listing", format!("{prefix} did not end"))))
    }

    /// Each prefix's ranges at the revision of the first answer.
    fn snapshot_once(&self, prefixes: &[String]) -> Result<Snapshot, RangeError> {
        let mut revision = 0;
        let mut records = Vec::new();
        for p in prefixes {
            let (rev, kvs) = self.range_prefix(p, revision)?;
            revision = rev;
            records.extend(kvs.into_iter().filter_map(|(path, rec)| Some((Key::parse(&path)?, rec))));
        }
        if prefixes.is_empty() {
            // Nothing to read, but the revision still says where a watch starts.
            let r = self.client.post("/v3/kv/range", &json!({"key": b64("\0"), "count_only": true}))?;
            revision = num(&r.body["header"]["revision"]);
        }
        records.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Snapshot { revision, records })
    }
}

fn store_error(e: ClientError) -> StoreError {
    match e {
        ClientError::Unavailable { endpoints, reason, kind } => {
            StoreError::Io { path: format!("etcd {endpoints}"), source: std::io::Error::new(kind, reason) }
        }
        ClientError::Rejected { code: 3, message } => StoreError::Invalid(format!("etcd: {message}")),
        ClientError::Rejected { code, message } => {
            StoreError::Io { path: "etcd".into(), source: std::io::Error::other(format!("etcd refused the request: {message} (code {code})")) }
        }
        ClientError::Config(m) => StoreError::Invalid(m),
    }
}

/// A failed range, telling a compacted revision (gRPC OUT_OF_RANGE) from the rest.
enum RangeError {
    Compacted(StoreError),
    Failed(StoreError),
}

impl From<ClientError> for RangeError {
    fn from(e: ClientError) -> RangeError {
        match e {
            ClientError::Rejected { code: 11, .. } => RangeError::Compacted(store_error(e)),
            e => RangeError::Failed(store_error(e)),
        }
    }
}

impl From<RangeError> for StoreError {
    fn from(e: RangeError) -> StoreError {
        match e {
            RangeError::Compacted(e) | RangeError::Failed(e) => e,
        }
    }
}

/// Snapshots are ranges at one revision; watches are etcd's watch stream (`watch.rs`). Neither takes the
/// node lock.
impl Watchable for EtcdStore {
    fn snapshot(&self, prefixes: &[&str]) -> Result<Snapshot, StoreError> {
        let prefixes = distinct_prefixes(prefixes);
        // A compaction between the first range and a later one takes the revision away: start again.
        for _ in 0..2 {
            match self.snapshot_once(&prefixes) {
                Err(RangeError::Compacted(_)) => continue,
                done => return done.map_err(StoreError::from),
            }
        }
        self.snapshot_once(&prefixes).map_err(StoreError::from)
    }

    fn watch(&self, prefixes: &[&str], from: Revision) -> Result<Box<dyn Watcher + '_>, StoreError> {
        Ok(Box::new(watch::EtcdWatcher::new(self, distinct_prefixes(prefixes), from)))
    }
}

impl Datastore for EtcdStore {
    fn lock(&self) -> Result<Box<dyn Store + '_>, StoreError> {
        let lock = match &self.lock_file {
            None => None,
            Some(path) => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let opened = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path);
                match opened.and_then(|f| f.lock().map(|()| f)) {
                    Ok(f) => Some(f),
                    // As Calico: the lock only reduces conflicts; correctness comes from the CAS.
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot take the node IPAM lock; going on without it");
                        None
                    }
                }
            }
        };
        Ok(Box::new(EtcdSession { store: self, _lock: lock }))
    }
}

struct EtcdSession<'a> {
    store: &'a EtcdStore,
    _lock: Option<File>,
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

/// The smallest key greater than every key starting with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn num(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn bad(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Io { path: "etcd".into(), source: std::io::Error::new(ErrorKind::InvalidData, format!("{what}: {detail}")) }
}

/// One key-value from a range answer: (key path, record).
fn decode_kv(kv: &Value) -> Result<(String, Record), StoreError> {
    let key = B64.decode(kv["key"].as_str().unwrap_or_default()).map_err(|e| bad("key is not base64", e))?;
    let key = String::from_utf8(key).map_err(|e| bad("key is not UTF-8", e))?;
    let raw = B64.decode(kv["value"].as_str().unwrap_or_default()).map_err(|e| bad("value is not base64", e))?;
    let not_json = |reason: String| StoreError::Corrupt { path: key.clone(), reason: format!("not JSON: {reason}") };
    let text = String::from_utf8(raw).map_err(|e| not_json(e.to_string()))?;
    let value = Json::parse(text).map_err(|e| not_json(e.to_string()))?;
    let rev = num(&kv["mod_revision"]);
    if rev == 0 {
        return Err(StoreError::Corrupt { path: key, reason: "no mod_revision".into() });
    }
    Ok((key, Record { value, rev }))
}

/// The record of a single-key range answer.
fn single(range: &Value) -> Result<Option<Record>, StoreError> {
    match range["kvs"].as_array().and_then(|kvs| kvs.first()) {
        None => Ok(None),
        Some(kv) => Ok(Some(decode_kv(kv)?.1)),
    }
}

impl EtcdSession<'_> {
    fn txn(&self, body: Value) -> Result<Response, StoreError> {
        self.store.post("/v3/kv/txn", body)
    }
}

impl Store for EtcdSession<'_> {
    fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let r = self.store.post("/v3/kv/range", json!({"key": b64(&key.path())}))?;
        single(&r.body)
    }

    fn remote(&self) -> bool {
        true
    }

    /// All keys in one transaction of range requests: one round trip for up to 128 keys.
    fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_TXN_OPS) {
            let ranges: Vec<Value> = chunk.iter().map(|k| json!({"request_range": {"key": b64(&k.path())}})).collect();
            let r = self.txn(json!({"success": ranges}))?;
            let responses = r.body["responses"].as_array().cloned().unwrap_or_default();
            if responses.len() != chunk.len() {
                return Err(bad("range transaction", format!("{} answers for {} keys", responses.len(), chunk.len())));
            }
            for resp in &responses {
                out.push(single(&resp["response_range"])?);
            }
        }
        Ok(out)
    }

    /// Pages through the kind's prefix at one revision, so the listing is a consistent snapshot.
    fn list(&self, kind: Kind) -> Result<Vec<(Key, Record)>, StoreError> {
        let (_, kvs) = self.store.range_prefix(kind.prefix(), 0)?;
        Ok(kvs.into_iter().filter_map(|(path, rec)| Some((Key::parse(&path).filter(|k| k.kind() == kind)?, rec))).collect())
    }

    fn commit(&mut self, ops: &[Op]) -> Result<Vec<Revision>, StoreError> {
        check_distinct(ops)?;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        if ops.len() > MAX_TXN_OPS {
            return Err(StoreError::Invalid(format!("{} operations in one commit (etcd allows {MAX_TXN_OPS})", ops.len())));
        }
        let mut compare = Vec::with_capacity(ops.len());
        let mut success = Vec::with_capacity(ops.len());
        let mut failure = Vec::with_capacity(ops.len());
        for op in ops {
            let key = b64(&op.key().path());
            match op {
                Op::Create { value, .. } => {
                    compare.push(json!({"key": key, "target": "VERSION", "result": "EQUAL", "version": "0"}));
                    success.push(json!({"request_put": {"key": key, "value": B64.encode(value.as_str())}}));
                }
                Op::Update { value, rev, .. } => {
                    compare.push(json!({"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()}));
                    success.push(json!({"request_put": {"key": key, "value": B64.encode(value.as_str())}}));
                }
                Op::Delete { rev, .. } => {
                    compare.push(json!({"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()}));
                    success.push(json!({"request_delete_range": {"key": key}}));
                }
            }
            failure.push(json!({"request_range": {"key": key}}));
        }
        let r = self.txn(json!({"compare": compare, "success": success, "failure": failure}))?;
        if r.body["succeeded"].as_bool().unwrap_or(false) {
            let rev = num(&r.body["header"]["revision"]);
            return Ok(ops.iter().map(|op| if matches!(op, Op::Delete { .. }) { 0 } else { rev }).collect());
        }
        // The failure branch read every key: find which precondition failed.
        let responses = r.body["responses"].as_array().cloned().unwrap_or_default();
        let mut current = Vec::with_capacity(ops.len());
        for i in 0..ops.len() {
            current.push(single(&responses.get(i).cloned().unwrap_or(Value::Null)["response_range"])?);
        }
        // The request went out twice (the first answer was lost): if the store holds exactly what this commit
        // writes, the first send was applied and this is success, not a conflict.
        if r.resent && applied(ops, &current) {
            tracing::info!("etcd transaction was applied by an earlier send whose answer was lost");
            return Ok(current.iter().map(|c| c.as_ref().map_or(0, |r| r.rev)).collect());
        }
        for (op, cur) in ops.iter().zip(&current) {
            let reason = match (op, cur) {
                (Op::Create { .. }, Some(_)) => "already exists",
                (Op::Update { .. } | Op::Delete { .. }, None) => "does not exist",
                (Op::Update { rev, .. } | Op::Delete { rev, .. }, Some(c)) if *rev != c.rev => "revision changed",
                _ => continue,
            };
            return Err(StoreError::Conflict { key: op.key().path(), reason });
        }
        // Changed between the compare and the failure reads: still a conflict, just not attributable.
        Err(StoreError::Conflict { key: ops[0].key().path(), reason: "changed concurrently" })
    }
}

fn applied(ops: &[Op], current: &[Option<Record>]) -> bool {
    ops.iter().zip(current).all(|(op, cur)| match (op, cur) {
        (Op::Create { value, .. } | Op::Update { value, .. }, Some(c)) => c.value.to_value() == value.to_value(),
        (Op::Delete { .. }, None) => true,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("/calico/ipam/v2/handle/"), b"/calico/ipam/v2/handle0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn a_lost_answer_is_recognised_only_when_the_store_holds_exactly_our_writes() {
        let k = Key::Handle("h".into());
        let ops = [Op::Update { key: k.clone(), value: json!({"a": 1}).into(), rev: 3 }, Op::Delete { key: Key::IpamConfig, rev: 2 }];
        let ours = Some(Record { value: json!({"a": 1}).into(), rev: 9 });
        assert!(applied(&ops, &[ours.clone(), None]));
        assert!(!applied(&ops, &[Some(Record { value: json!({"a": 2}).into(), rev: 9 }), None]));
        assert!(!applied(&ops, &[ours, Some(Record { value: json!({}).into(), rev: 2 })]));
    }
}
