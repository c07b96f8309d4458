//! A watch through etcd's JSON gateway: one `POST /v3/watch` whose body holds a create request per prefix,
//! answered by a chunked stream of one JSON object per event batch (`stream.rs` reads it): first `created`
//! for each prefix, in order, then events, progress notifications, or `canceled` (with `compact_revision`
//! when the start revision is compacted: `Resync`). Each prefix remembers the revision after its last event.
//!
//! When the stream breaks, the watcher reports the error and, on the next call (after a back-off), opens a
//! new one on the next member, every prefix resuming where it stopped. Breaks it notices: the connection
//! closes (member killed or restarted), etcd cancels the stream because its member lost the leader (the
//! `Grpc-Metadata-Hasleader` header asks for that, as etcd's own client does), or the stream stays silent for
//! `EtcdStore::with_watch_probe` and the member does not answer a linearizable read (hung or cut off).
use super::client::Conn;
use super::stream::ResponseReader;
use super::{b64, decode_kv, num, prefix_end, EtcdStore, B64};
use crate::store::watch::{Change, Watched, Watcher};
use crate::store::{Key, Revision, StoreError};
use base64::Engine;
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::time::{Duration, Instant};

/// Wait before the first reconnect, doubled after each failure up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Prefix {
    prefix: String,
    /// The first revision not seen yet.
    next: Revision,
}

/// An open watch stream on one member.
struct Stream {
    conn: Conn,
    member: usize,
    reader: ResponseReader,
    /// The watch id etcd gave each prefix, in the order of `EtcdWatcher::prefixes`.
    ids: Vec<i64>,
    /// When the member last sent anything (or answered a probe).
    heard: Instant,
}

pub(super) struct EtcdWatcher<'a> {
    store: &'a EtcdStore,
    prefixes: Vec<Prefix>,
    stream: Option<Stream>,
    /// Where the next stream is tried first.
    member: usize,
    retry_at: Option<Instant>,
    backoff: Duration,
    resync: bool,
    buf: Vec<u8>,
}

/// Why a stream is given up.
struct Broken(String);

impl<'a> EtcdWatcher<'a> {
    /// No request yet: the first `next` opens the stream (so errors reach the caller there, as every later one).
    pub(super) fn new(store: &'a EtcdStore, prefixes: Vec<String>, from: Revision) -> EtcdWatcher<'a> {
        EtcdWatcher {
            store,
            prefixes: prefixes.into_iter().map(|prefix| Prefix { prefix, next: from.max(1) }).collect(),
            stream: None,
            member: store.client.preferred(),
            retry_at: None,
            backoff: MIN_BACKOFF,
            resync: false,
            buf: vec![0; 64 << 10],
        }
    }

    /// Opens a stream on the first member that takes the connection, from `self.member` on.
    fn open(&mut self) -> Result<Stream, StoreError> {
        let client = &self.store.client;
        let body: Vec<String> = self
            .prefixes
            .iter()
            .map(|p| {
                let create = json!({
                    "key": b64(&p.prefix),
                    "range_end": B64.encode(prefix_end(&p.prefix)),
                    "start_revision": p.next.to_string(),
                    "progress_notify": true,
                });
                json!({ "create_request": create }).to_string()
            })
            .collect();
        let body = body.join("\n");
        let n = client.members();
        let mut errors = Vec::new();
        for k in 0..n {
            let idx = (self.member + k) % n;
            // `Connection: close`: Go's HTTP/1 server discards the unread rest of a request body when the handler
            // first flushes its answer, unless the connection closes after the reply. The gateway decodes the
            // create requests from the body one by one while the first `created` goes out, so without it the
            // later prefixes (about one open in 20 on a loaded machine) were never watched and their changes
            // never arrived. A watch connection is never reused anyway.
            let headers = [("Grpc-Metadata-Hasleader", "true"), ("Connection", "close")];
            match client.open_stream(idx, "/v3/watch", &headers, body.as_bytes()) {
                Ok(conn) => {
                    self.member = idx;
                    tracing::debug!(member = client.url(idx), "etcd watch stream opened");
                    return Ok(Stream { conn, member: idx, reader: ResponseReader::new(), ids: Vec::new(), heard: Instant::now() });
                }
                Err(e) => errors.push(format!("{}: {e}", client.url(idx))),
            }
        }
        let source = std::io::Error::new(ErrorKind::NotConnected, format!("no member takes a watch: {}", errors.join("; ")));
        Err(StoreError::Io { path: format!("etcd {}", client.endpoint_list()), source })
    }

    /// Gives the stream up; the next one is opened on the next member after the back-off.
    fn give_up(&mut self, why: Broken) -> StoreError {
        let member = self.stream.take().map_or(self.member, |s| s.member);
        self.member = member + 1;
        self.wait_before_retry();
        let url = self.store.client.url(member % self.store.client.members()).to_string();
        tracing::warn!(member = url, reason = why.0, "etcd watch stream lost; resuming on the next member");
        StoreError::Io { path: format!("etcd watch on {url}"), source: std::io::Error::new(ErrorKind::ConnectionAborted, why.0) }
    }

    fn wait_before_retry(&mut self) {
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Whether the stream's member still serves linearizable reads (so its silence is only quiet).
    fn probe(&self, member: usize) -> bool {
        let key = self.prefixes.first().map_or("/", |p| p.prefix.as_str());
        match self.store.client.post_to(member, "/v3/kv/range", &json!({"key": b64(key), "count_only": true})) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(member = self.store.client.url(member), error = %e, "silent etcd watch member does not answer");
                false
            }
        }
    }

    /// The changes in the whole lines received so far.
    fn take_lines(&mut self) -> Result<Vec<Change>, Broken> {
        let mut out = Vec::new();
        let Some(s) = self.stream.as_mut() else { return Ok(out) };
        while let Some(line) = s.reader.line() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Value = serde_json::from_slice(&line).map_err(|e| Broken(format!("watch answer is not JSON: {e}")))?;
            if s.reader.status() != Some(200) || !v["error"].is_null() {
                let message = v["error"]["message"].as_str().or(v["message"].as_str()).or(v["error"].as_str()).unwrap_or("no message");
                return Err(Broken(format!("HTTP {}: {message}", s.reader.status().unwrap_or(0))));
            }
            let r = &v["result"];
            let id = r["watch_id"].as_str().and_then(|i| i.parse::<i64>().ok()).or(r["watch_id"].as_i64()).unwrap_or(0);
            let canceled = r["canceled"].as_bool().unwrap_or(false);
            if r["created"].as_bool().unwrap_or(false) {
                if canceled {
                    return Err(Broken(format!("watch not created: {}", r["cancel_reason"].as_str().unwrap_or("canceled"))));
                }
                s.ids.push(id);
                if s.ids.len() == self.prefixes.len() {
                    self.backoff = MIN_BACKOFF;
                }
                continue;
            }
            let Some(w) = s.ids.iter().position(|&i| i == id) else { continue };
            if num(&r["compact_revision"]) > 0 {
                self.resync = true;
                return Ok(Vec::new());
            }
            if canceled {
                return Err(Broken(format!("watch canceled: {}", r["cancel_reason"].as_str().unwrap_or("no reason given"))));
            }
            let p = &mut self.prefixes[w];
            let events = r["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if events.is_empty() {
                // A progress notification: every event up to the header's revision has been sent.
                p.next = p.next.max(num(&r["header"]["revision"]) + 1);
                continue;
            }
            // One answer holds whole revisions; an event from before `next` is one already reported.
            let from = p.next;
            for ev in events {
                let rev = num(&ev["kv"]["mod_revision"]);
                if rev < from {
                    continue;
                }
                p.next = p.next.max(rev + 1);
                if let Some(change) = change(ev, rev) {
                    out.push(change);
                }
            }
        }
        if s.reader.done() {
            return Err(Broken("etcd ended the watch stream".into()));
        }
        Ok(out)
    }
}

/// One watch event as a change; `None` for keys that are none of ours (and values that are not JSON, which
/// are logged: a snapshot would refuse them).
fn change(ev: &Value, revision: Revision) -> Option<Change> {
    let kv = &ev["kv"];
    if ev["type"].as_str() == Some("DELETE") {
        let path = String::from_utf8(B64.decode(kv["key"].as_str()?).ok()?).ok()?;
        return Some(Change::Delete { key: Key::parse(&path)?, revision });
    }
    match decode_kv(kv) {
        Ok((path, record)) => Some(Change::Put { key: Key::parse(&path)?, record, revision }),
        Err(e) => {
            tracing::warn!(error = %e, "skipping a watched etcd record");
            None
        }
    }
}

impl Watcher for EtcdWatcher<'_> {
    fn connected(&self) -> bool {
        self.stream.is_some()
    }

    fn next(&mut self, deadline: Instant) -> Result<Watched, StoreError> {
        loop {
            if self.resync {
                self.stream = None;
                return Ok(Watched::Resync);
            }
            if self.prefixes.is_empty() {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                return Ok(Watched::Quiet);
            }
            if self.stream.is_none() {
                if let Some(at) = self.retry_at {
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at.min(deadline) - now);
                    }
                    if Instant::now() < at {
                        return Ok(Watched::Quiet);
                    }
                }
                if Instant::now() >= deadline {
                    return Ok(Watched::Quiet);
                }
                match self.open() {
                    Ok(s) => self.stream = Some(s),
                    Err(e) => {
                        self.wait_before_retry();
                        return Err(e);
                    }
                }
            }
            let probe_every = self.store.watch_probe;
            let Some(s) = self.stream.as_mut() else { continue };
            let until = deadline.min(s.heard + probe_every);
            let read = s.conn.read_some(&mut self.buf, until);
            let changes = match read {
                Ok(0) => {
                    s.reader.closed();
                    let changes = self.take_lines();
                    let why = Broken("connection closed".into());
                    match changes {
                        Ok(c) if !c.is_empty() => {
                            // Hand these out; the stream is gone all the same.
                            let _ = self.give_up(why);
                            return Ok(Watched::Changes(c));
                        }
                        Ok(_) => return Err(self.give_up(why)),
                        Err(why) => return Err(self.give_up(why)),
                    }
                }
                Ok(n) => {
                    s.heard = Instant::now();
                    if let Err(e) = s.reader.feed(&self.buf[..n]) {
                        return Err(self.give_up(Broken(e)));
                    }
                    self.take_lines()
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() >= deadline {
                        return Ok(Watched::Quiet);
                    }
                    let member = s.member;
                    if !self.probe(member) {
                        let why = Broken(format!("silent for {probe_every:?} and does not answer"));
                        return Err(self.give_up(why));
                    }
                    if let Some(s) = self.stream.as_mut() {
                        s.heard = Instant::now();
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.give_up(Broken(e.to_string()))),
            };
            match changes {
                Err(why) => return Err(self.give_up(why)),
                Ok(mut c) if !c.is_empty() => {
                    // Stable: each key's changes keep their order.
                    c.sort_by_key(Change::revision);
                    return Ok(Watched::Changes(c));
                }
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::watch::Watchable;
    use crate::store::EtcdOptions;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::sync::mpsc;

    const POOLS: &str = "/calico/resources/v3/projectcalico.org/ippools/";

    /// Reads one HTTP request: (head, body).
    fn request(conn: &UnixStream) -> (String, String) {
        let mut r = BufReader::new(conn);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let len = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).map_or(0, |n| n.trim().parse().unwrap());
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    fn chunk(line: &str) -> String {
        format!("{:x}\r\n{line}\n\r\n", line.len() + 1)
    }

    const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn put(rev: u64, name: &str) -> String {
        let key = B64.encode(format!("{POOLS}{name}"));
        let value = B64.encode(format!("{{\"rev\":{rev}}}"));
        format!(r#"{{"result":{{"header":{{"revision":"{rev}"}},"events":[{{"kv":{{"key":"{key}","mod_revision":"{rev}","value":"{value}"}}}}]}}}}"#)
    }

    const CREATED: &str = r#"{"result":{"header":{"revision":"4"},"created":true}}"#;

    /// Waits for the next batch of changes (errors are the stream breaking: expected here, retried).
    fn changes(w: &mut dyn Watcher, errors: &mut usize) -> Vec<Change> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match w.next(deadline) {
                Ok(Watched::Changes(c)) => return c,
                Ok(other) => panic!("{other:?}"),
                Err(_) => *errors += 1,
            }
        }
        panic!("no changes within 10 s");
    }

    /// A member that sends an event and a progress notification, then falls silent without closing (and
    /// does not answer the probe): the watcher leaves it for the next member and resumes after the progress
    /// revision, asking as etcd's own client does for a stream that fails without a leader.
    #[test]
    fn a_silent_member_is_left_for_the_next_one_resuming_after_the_last_revision() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
        let (la, lb) = (UnixListener::bind(&a).unwrap(), UnixListener::bind(&b).unwrap());
        let (asked_a, got_a) = mpsc::channel();
        let silent = std::thread::spawn(move || {
            let (mut watch, _) = la.accept().unwrap();
            asked_a.send(request(&watch)).unwrap();
            let progress = r#"{"result":{"header":{"revision":"9"}}}"#;
            write!(watch, "{HEAD}{}{}{}", chunk(CREATED), chunk(&put(5, "p1")), chunk(progress)).unwrap();
            // The probe gets no answer: the connection closes unanswered.
            let (probe, _) = la.accept().unwrap();
            drop(probe);
            watch
        });
        let (asked_b, got_b) = mpsc::channel();
        let next = std::thread::spawn(move || {
            let (mut watch, _) = lb.accept().unwrap();
            asked_b.send(request(&watch)).unwrap();
            write!(watch, "{HEAD}{}{}", chunk(CREATED), chunk(&put(12, "p2"))).unwrap();
            // Until the watcher hangs up.
            let _ = watch.read(&mut [0; 1]);
        });
        let eps = format!("unix://{},unix://{}", a.display(), b.display());
        let store = EtcdStore::open(&EtcdOptions::new(&eps)).unwrap().with_watch_probe(Duration::from_millis(300));
        let mut w = store.watch(&[POOLS], 5).unwrap();
        let mut errors = 0;
        let first = changes(w.as_mut(), &mut errors);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].key(), first[0].revision()), (&Key::pool("p1"), 5));
        let (head, body) = got_a.recv().unwrap();
        assert!(head.starts_with("POST /v3/watch HTTP/1.1\r\n") && head.contains("Grpc-Metadata-Hasleader: true\r\n"), "{head}");
        let create: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(create["create_request"]["key"], B64.encode(POOLS));
        assert_eq!(create["create_request"]["start_revision"], "5");

        let started = Instant::now();
        let second = changes(w.as_mut(), &mut errors);
        assert_eq!((second[0].key(), second[0].revision()), (&Key::pool("p2"), 12));
        assert_eq!(errors, 1, "the lost stream is reported once");
        assert!(started.elapsed() < Duration::from_secs(3), "silence detected within probe + back-off: {:?}", started.elapsed());
        let (_, body) = got_b.recv().unwrap();
        let create: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(create["create_request"]["start_revision"], "10", "resumes after the progress notification's revision");
        drop(w);
        drop(silent.join().unwrap());
        next.join().unwrap();
    }

    /// A compacted start revision is `Resync`, for good; an error line (a member without a leader) is a
    /// transient error and the watcher tries again.
    #[test]
    fn compaction_is_resync_and_an_error_answer_is_transient() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("m.sock");
        let l = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            request(&c);
            write!(c, "{HEAD}{}", chunk(r#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}"#)).unwrap();
            write!(c, "0\r\n\r\n").unwrap();
            drop(c);
            let (mut c, _) = l.accept().unwrap();
            request(&c);
            let compacted = r#"{"result":{"header":{},"canceled":true,"compact_revision":"8"}}"#;
            write!(c, "{HEAD}{}{}", chunk(CREATED), chunk(compacted)).unwrap();
            let _ = c.read(&mut [0; 1]);
        });
        let store = EtcdStore::open(&EtcdOptions::new(&format!("unix://{}", sock.display()))).unwrap();
        let mut w = store.watch(&[POOLS], 3).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = w.next(deadline).unwrap_err();
        assert!(err.to_string().contains("no leader"), "{err}");
        assert_eq!(w.next(deadline).unwrap(), Watched::Resync);
        assert_eq!(w.next(deadline).unwrap(), Watched::Resync, "for good");
        drop(w);
        server.join().unwrap();
    }

    /// While no member takes the connection, `next` reports it and waits out a growing back-off instead of
    /// spinning; a deadline inside the back-off is kept.
    #[test]
    fn no_member_is_an_error_after_a_back_off() {
        let dir = tempfile::tempdir().unwrap();
        let store = EtcdStore::open(&EtcdOptions::new(&format!("unix://{}/none.sock", dir.path().display()))).unwrap();
        let mut w = store.watch(&[POOLS], 1).unwrap();
        let start = Instant::now();
        let mut errors = 0;
        while start.elapsed() < Duration::from_millis(1500) {
            match w.next(start + Duration::from_millis(1500)) {
                Err(_) => errors += 1,
                Ok(Watched::Quiet) => {}
                Ok(other) => panic!("{other:?}"),
            }
        }
        // 100 + 200 + 400 + 800 ms of back-off fit in 1.5 s: four or five attempts, not thousands.
        assert!((3..=6).contains(&errors), "{errors} attempts");
        assert!(start.elapsed() < Duration::from_millis(1700));
    }
}
