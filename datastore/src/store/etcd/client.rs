//! A small synchronous client for etcd v3's JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`; `open_stream`
//! and `post_to` give the watch in `watch.rs` a connection of its own to one member): HTTP/1.1
//! keep-alive over TCP or a unix socket, TLS with client certificates through rustls (ring; the `tls` feature,
//! without which https:// endpoints are a configuration error). The members are
//! tried in order with fail-over on transport errors and on "no leader"-style answers; one deadline bounds
//! every request, fail-over included. No async runtime, no protoc: a plugin process starts in microseconds.
#[cfg(feature = "tls")]
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
#[cfg(feature = "tls")]
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest response body accepted (a page of blocks is far below this).
const MAX_BODY: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// One member's client URL: `http://h:p`, `https://h:p`, `unix:///path/sock`, `unixs:///path/sock`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: String,
    pub addr: Address,
    pub tls: bool,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("etcd endpoint {url:?} has no scheme (http://, https://, unix://)"))?;
        let rest = rest.trim_end_matches('/');
        let (addr, tls) = match scheme {
            "http" | "https" => {
                let (host, port) = match rest.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                        (h.to_string(), p.parse::<u16>().map_err(|_| format!("etcd endpoint {url:?}: bad port {p:?}"))?)
                    }
                    _ => (rest.to_string(), 2379),
                };
                let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
                if host.is_empty() || host.contains('/') {
                    return Err(format!("etcd endpoint {url:?}: bad host"));
                }
                (Address::Tcp { host, port }, scheme == "https")
            }
            "unix" | "unixs" if !rest.is_empty() => (Address::Unix(PathBuf::from(rest)), scheme == "unixs"),
            _ => return Err(format!("etcd endpoint {url:?}: scheme must be http, https, unix or unixs")),
        };
        Ok(Endpoint { url: url.to_string(), addr, tls })
    }

    fn host_header(&self) -> String {
        match &self.addr {
            Address::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Address::Tcp { host, port } => format!("{host}:{port}"),
            Address::Unix(_) => "localhost".into(),
        }
    }

    /// The name the server certificate must carry: the URL's host, `localhost` for unix sockets.
    #[cfg(feature = "tls")]
    fn server_name(&self) -> Result<ServerName<'static>, String> {
        let name = match &self.addr {
            Address::Tcp { host, .. } => host.clone(),
            Address::Unix(_) => "localhost".into(),
        };
        ServerName::try_from(name.clone()).map_err(|e| format!("etcd endpoint {}: {name:?} is not a TLS server name: {e}", self.url))
    }
}

/// PEM files as in Calico's config (`etcd_ca_cert_file`, `etcd_cert_file`, `etcd_key_file`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    #[cfg(not(feature = "tls"))]
    fn client_config(&self) -> Result<TlsConfig, String> {
        Err("this binary was built without TLS support (cargo feature `tls`); use cni-ipam, which has it".into())
    }

    #[cfg(feature = "tls")]
    fn client_config(&self) -> Result<TlsConfig, String> {
        let ca = self.ca.as_ref().ok_or("TLS to etcd needs etcd_ca_cert_file (there is no system trust store here)")?;
        let mut roots = rustls::RootCertStore::empty();
        let certs = read_certs(ca)?;
        roots.add_parsable_certificates(certs);
        if roots.is_empty() {
            return Err(format!("etcd_ca_cert_file {}: no usable certificate", ca.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("etcd_key_file {}: {e}", key.display()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("etcd client certificate: {e}"))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err("etcd_cert_file and etcd_key_file go together".into()),
        }
    }
}

#[cfg(feature = "tls")]
type TlsConfig = rustls::ClientConfig;
#[cfg(not(feature = "tls"))]
type TlsConfig = std::convert::Infallible;

#[cfg(feature = "tls")]
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?.collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No member answered in time (connection refused, reset, timed out, or only "no leader" answers).
    #[error("etcd unavailable ({endpoints}): {reason}")]
    Unavailable { endpoints: String, reason: String, kind: ErrorKind },
    /// The server refused the request itself (gRPC status code and message, e.g. 3 = invalid argument).
    #[error("etcd refused the request: {message} (code {code})")]
    Rejected { code: i64, message: String },
    #[error("bad client configuration: {0}")]
    Config(String),
}

/// A parsed answer; `resent` says the request went out more than once (an earlier send may have been applied).
pub struct Response {
    pub body: Value,
    pub resent: bool,
}

pub struct Client {
    endpoints: Vec<Endpoint>,
    timeout: Duration,
    tls: Option<Arc<TlsConfig>>,
    conn: Mutex<Option<Conn>>,
    preferred: AtomicUsize,
    requests: AtomicU64,
    deadline: Mutex<Option<Instant>>,
}

impl Client {
    pub fn new(endpoints: &[String], timeout: Duration, tls: &TlsFiles) -> Result<Client, ClientError> {
        let endpoints: Vec<Endpoint> =
            endpoints.iter().filter(|e| !e.trim().is_empty()).map(|e| Endpoint::parse(e)).collect::<Result<_, _>>().map_err(ClientError::Config)?;
        if endpoints.is_empty() {
            return Err(ClientError::Config("no etcd endpoint configured".into()));
        }
        let needs_tls = endpoints.iter().any(|e| e.tls);
        let tls = if needs_tls || !tls.is_empty() {
            if !needs_tls {
                return Err(ClientError::Config("TLS files are set but no endpoint is https:// or unixs://".into()));
            }
            Some(Arc::new(tls.client_config().map_err(ClientError::Config)?))
        } else {
            None
        };
        if timeout.is_zero() {
            return Err(ClientError::Config("etcd timeout must be positive".into()));
        }
        Ok(Client {
            endpoints,
            timeout,
            tls,
            conn: Mutex::new(None),
            preferred: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            deadline: Mutex::new(None),
        })
    }

    /// HTTP requests sent so far (tests and benchmarks count round trips with it).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// An overall deadline (e.g. the end of a CNI operation) that caps every request's own timeout.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }

    pub(super) fn endpoint_list(&self) -> String {
        self.endpoints.iter().map(|e| e.url.as_str()).collect::<Vec<_>>().join(",")
    }

    /// How many members are configured.
    pub(super) fn members(&self) -> usize {
        self.endpoints.len()
    }

    /// The member that answered last (where a new stream starts).
    pub(super) fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    pub(super) fn url(&self, idx: usize) -> &str {
        &self.endpoints[idx].url
    }

    /// Opens a connection of its own to member `idx` and sends one POST on it, for a response that streams
    /// (`watch.rs`): the caller reads it with `Conn::read_some`.
    pub(super) fn open_stream(&self, idx: usize, path: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<Conn> {
        let deadline = Instant::now() + self.timeout;
        let mut conn = self.connect(idx, deadline)?;
        conn.arm(deadline)?;
        let ep = &self.endpoints[idx];
        let mut req = format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n", ep.host_header());
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut req = req.into_bytes();
        req.extend_from_slice(body);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let s = conn.io.get_mut();
        s.write_all(&req)?;
        s.flush()?;
        Ok(conn)
    }

    /// POSTs to member `idx` alone, on a fresh connection, within the timeout: whether that member answers.
    pub(super) fn post_to(&self, idx: usize, path: &str, body: &Value) -> io::Result<Value> {
        let deadline = Instant::now() + self.timeout;
        let mut conn = self.connect(idx, deadline)?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (status, bytes, _) = conn.exchange(&self.endpoints[idx].host_header(), path, body.to_string().as_bytes(), deadline)?;
        let parsed: Value = serde_json::from_slice(&bytes).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
        if status != 200 {
            let message = parsed["message"].as_str().or(parsed["error"].as_str()).unwrap_or("").to_string();
            return Err(io::Error::other(format!("HTTP {status}: {message}")));
        }
        Ok(parsed)
    }

    /// POSTs a JSON body to `path` on the first member that answers.
    pub fn post(&self, path: &str, body: &Value) -> Result<Response, ClientError> {
        let mut deadline = Instant::now() + self.timeout;
        if let Some(d) = *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) {
            deadline = deadline.min(d);
        }
        let body = body.to_string();
        let n = self.endpoints.len();
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.preferred.load(Ordering::Relaxed);
        let mut fresh_connects = 0;
        let mut sends = 0;
        let mut last: (String, ErrorKind) = ("no member tried".into(), ErrorKind::NotConnected);
        // Each pass either reuses the kept-alive connection once or connects to a new member.
        for _ in 0..(2 * n + 2) {
            let now = Instant::now();
            if now >= deadline {
                last = (format!("timed out after {:?}; last error: {}", self.timeout, last.0), ErrorKind::TimedOut);
                break;
            }
            let (mut conn, reused) = match guard.take() {
                Some(c) => (c, true),
                None => {
                    if fresh_connects >= n {
                        break;
                    }
                    let idx = next % n;
                    next += 1;
                    fresh_connects += 1;
                    let budget = (deadline - now) / (n - fresh_connects + 1) as u32;
                    match self.connect(idx, now + budget.max(Duration::from_millis(1))) {
                        Ok(c) => (c, false),
                        Err(e) => {
                            last = (format!("{}: {e}", self.endpoints[idx].url), e.kind());
                            continue;
                        }
                    }
                }
            };
            let ep = &self.endpoints[conn.idx];
            self.requests.fetch_add(1, Ordering::Relaxed);
            sends += 1;
            match conn.exchange(&ep.host_header(), path, body.as_bytes(), deadline) {
                Ok((status, bytes, keep)) => {
                    let idx = conn.idx;
                    if keep {
                        *guard = Some(conn);
                    }
                    let parsed: Value = serde_json::from_slice(&bytes).map_err(|e| ClientError::Unavailable {
                        endpoints: ep.url.clone(),
                        reason: format!("HTTP {status}: response is not JSON ({e})"),
                        kind: ErrorKind::InvalidData,
                    })?;
                    if status == 200 {
                        self.preferred.store(idx, Ordering::Relaxed);
                        return Ok(Response { body: parsed, resent: sends > 1 });
                    }
                    let code = parsed["code"].as_i64().unwrap_or(-1);
                    let message = parsed["message"].as_str().or(parsed["error"].as_str()).unwrap_or("").to_string();
                    if !transient(code, &message) {
                        return Err(ClientError::Rejected { code, message });
                    }
                    // This member cannot serve now (no leader, stopping): ask the next one.
                    *guard = None;
                    next = idx + 1;
                    last = (format!("{}: HTTP {status}: {message}", ep.url), ErrorKind::Other);
                }
                Err(e) => {
                    last = (format!("{}: {e}", ep.url), e.kind());
                    // A kept-alive connection the server closed meanwhile: reconnect to the same member once.
                    if reused {
                        next = conn.idx;
                    } else {
                        next = conn.idx + 1;
                    }
                }
            }
        }
        Err(ClientError::Unavailable { endpoints: self.endpoint_list(), reason: last.0, kind: last.1 })
    }

    fn connect(&self, idx: usize, deadline: Instant) -> io::Result<Conn> {
        let ep = &self.endpoints[idx];
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let plain = match &ep.addr {
            Address::Tcp { host, port } => {
                let mut err = io::Error::new(ErrorKind::NotFound, format!("{host} resolves to no address"));
                let mut stream = None;
                for addr in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, left) {
                        Ok(s) => {
                            stream = Some(s);
                            break;
                        }
                        Err(e) => err = e,
                    }
                }
                let s = stream.ok_or(err)?;
                s.set_nodelay(true)?;
                Plain::Tcp(s)
            }
            Address::Unix(path) => Plain::Unix(UnixStream::connect(path)?),
        };
        let stream = match &self.tls {
            #[cfg(feature = "tls")]
            Some(cfg) if ep.tls => {
                let name = ep.server_name().map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
                let tls = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| io::Error::other(e.to_string()))?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(tls, plain)))
            }
            _ => Stream::Plain(plain),
        };
        Ok(Conn { idx, io: BufReader::with_capacity(64 << 10, stream) })
    }
}

/// gRPC codes / messages that mean "this member cannot answer now", worth asking another member.
fn transient(code: i64, message: &str) -> bool {
    matches!(code, 1 | 4 | 8 | 10 | 13 | 14)
        || ["no leader", "leader changed", "timed out", "stopped", "not capable", "too many requests", "unhealthy"]
            .iter()
            .any(|m| message.contains(m))
}

pub(super) struct Conn {
    idx: usize,
    io: BufReader<Stream>,
}

enum Plain {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Plain {
    fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Plain::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Plain::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }
}

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Plain::Tcp(s) => s.read(buf),
            Plain::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Plain {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Plain::Tcp(s) => s.write(buf),
            Plain::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Stream {
    Plain(Plain),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Plain>>),
}

impl Stream {
    fn plain(&self) -> &Plain {
        match self {
            Stream::Plain(p) => p,
            #[cfg(feature = "tls")]
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(p) => p.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(p) => p.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(p) => p.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(t) => t.flush(),
        }
    }
}

impl Conn {
    /// Sets the socket timeouts to what is left before `deadline` (reads are re-armed per header/body step).
    fn arm(&self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"));
        }
        self.io.get_ref().plain().set_timeouts(Some(left))
    }

    /// One request/response: (status, body, keep-alive).
    fn exchange(&mut self, host: &str, path: &str, body: &[u8], deadline: Instant) -> io::Result<(u16, Vec<u8>, bool)> {
        self.arm(deadline)?;
        let mut req =
            format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        req.extend_from_slice(body);
        let s = self.io.get_mut();
        s.write_all(&req)?;
        s.flush()?;

        let mut line = String::new();
        self.read_line(&mut line, deadline)?;
        if line.is_empty() {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, "connection closed before the response"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, format!("bad status line {line:?}")))?;
        let (mut length, mut chunked, mut keep) = (None, false, true);
        loop {
            line.clear();
            self.read_line(&mut line, deadline)?;
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            let Some((name, value)) = h.split_once(':') else { continue };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => keep = !value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.read_line(&mut line, deadline)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| io::Error::new(ErrorKind::InvalidData, format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        line.clear();
                        self.read_line(&mut line, deadline)?;
                        if line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                self.read_exact_len(&mut out, size, deadline)?;
                line.clear();
                self.read_line(&mut line, deadline)?;
            }
        } else if let Some(n) = length {
            self.read_exact_len(&mut out, n, deadline)?;
        } else {
            // No length: the body runs to the end of the connection.
            self.arm(deadline)?;
            self.io.by_ref().take(MAX_BODY as u64).read_to_end(&mut out)?;
            keep = false;
        }
        Ok((status, out, keep))
    }

    /// Reads what has arrived, waiting until `deadline` at most (then `WouldBlock` or `TimedOut`, after which
    /// reading can go on: nothing is lost).
    pub(super) fn read_some(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.arm(deadline)?;
        self.io.read(buf)
    }

    fn read_line(&mut self, line: &mut String, deadline: Instant) -> io::Result<()> {
        self.arm(deadline)?;
        self.io.by_ref().take(16 << 10).read_line(line).map(drop)
    }

    fn read_exact_len(&mut self, out: &mut Vec<u8>, n: usize, deadline: Instant) -> io::Result<()> {
        if out.len() + n > MAX_BODY {
            return Err(io::Error::new(ErrorKind::InvalidData, "etcd response too large"));
        }
        let start = out.len();
        out.resize(start + n, 0);
        let mut got = 0;
        while got < n {
            self.arm(deadline)?;
            match self.io.read(&mut out[start + got..]) {
                Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "connection closed mid-response")),
                Ok(k) => got += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("http://127.0.0.1:2379").unwrap();
        assert_eq!(e.addr, Address::Tcp { host: "127.0.0.1".into(), port: 2379 });
        assert!(!e.tls);
        let e = Endpoint::parse("https://etcd.example:4001/").unwrap();
        assert!(e.tls);
        assert_eq!(e.host_header(), "etcd.example:4001");
        let e = Endpoint::parse("http://[::1]:2379").unwrap();
        assert_eq!(e.addr, Address::Tcp { host: "::1".into(), port: 2379 });
        assert_eq!(e.host_header(), "[::1]:2379");
        assert_eq!(Endpoint::parse("http://etcd").unwrap().addr, Address::Tcp { host: "etcd".into(), port: 2379 });
        let e = Endpoint::parse("unixs:///run/etcd/c.sock").unwrap();
        assert_eq!((e.addr, e.tls), (Address::Unix("/run/etcd/c.sock".into()), true));
        for bad in ["127.0.0.1:2379", "ftp://x", "http://:1", "http://h:99999", "unix://"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_needs_a_ca_and_both_halves_of_the_client_pair() {
        let https = ["https://127.0.0.1:1".to_string()];
        assert!(matches!(Client::new(&https, Duration::from_secs(1), &TlsFiles::default()), Err(ClientError::Config(_))));
        let files = TlsFiles { ca: None, cert: Some("/x".into()), key: None };
        assert!(Client::new(&["http://127.0.0.1:1".to_string()], Duration::from_secs(1), &files).is_err());
    }

    #[test]
    fn unreachable_members_fail_fast_as_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let eps = [format!("unix://{}/nope.sock", dir.path().display()), "http://127.0.0.1:1".to_string()];
        let c = Client::new(&eps, Duration::from_secs(2), &TlsFiles::default()).unwrap();
        let t = Instant::now();
        let err = c.post("/v3/kv/range", &serde_json::json!({"key": "YQ=="})).err().unwrap();
        assert!(matches!(err, ClientError::Unavailable { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(c.requests(), 0, "nothing was sent");
    }
}
