//! An HTTP/1.1 response read a piece at a time, for etcd's watch: its body never ends, and each event batch
//! is one JSON object on a line of its own, in chunks that need not line up with the lines. Fed whatever the
//! socket gave (`feed`), it hands out whole body lines (`line`); a socket read that times out loses nothing.

/// Longest response head, and longest body line (a batch of events), accepted.
const MAX_HEAD: usize = 16 << 10;
const MAX_LINE: usize = 64 << 20;

#[derive(Debug, PartialEq)]
enum State {
    Head,
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Bytes of the current chunk still to come.
    ChunkData(usize),
    /// The CRLF after a chunk.
    ChunkEnd,
    /// After the last (empty) chunk: trailers up to an empty line.
    Trailers,
    /// A body of known length: bytes still to come.
    Length(usize),
    /// A body that runs to the end of the connection.
    UntilClose,
    Done,
}

pub(super) struct ResponseReader {
    state: State,
    /// Bytes received and not yet decoded.
    raw: Vec<u8>,
    /// Body bytes not yet handed out as lines.
    body: Vec<u8>,
    status: Option<u16>,
}

impl ResponseReader {
    pub(super) fn new() -> ResponseReader {
        ResponseReader { state: State::Head, raw: Vec::new(), body: Vec::new(), status: None }
    }

    /// The status code, once the head is in.
    pub(super) fn status(&self) -> Option<u16> {
        self.status
    }

    /// The body is complete (a stream that ends; etcd's watch never does while it is healthy).
    pub(super) fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes in bytes from the socket. An error means the response is not HTTP as etcd speaks it.
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        self.raw.extend_from_slice(data);
        let mut at = 0;
        loop {
            let rest = &self.raw[at..];
            match self.state {
                State::Head => {
                    let Some(end) = find(rest, b"\r\n\r\n") else {
                        if rest.len() > MAX_HEAD {
                            return Err("response head too long".into());
                        }
                        break;
                    };
                    self.state = head(&rest[..end], &mut self.status)?;
                    at += end + 4;
                }
                State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    let Some(end) = find(rest, b"\r\n") else {
                        if rest.len() > MAX_HEAD {
                            return Err("chunk line too long".into());
                        }
                        break;
                    };
                    let line = std::str::from_utf8(&rest[..end]).map_err(|_| "chunk line is not text".to_string())?;
                    self.state = match self.state {
                        State::ChunkSize => {
                            let size = line.split(';').next().unwrap_or("").trim();
                            match usize::from_str_radix(size, 16) {
                                Ok(0) => State::Trailers,
                                Ok(n) => State::ChunkData(n),
                                Err(_) => return Err(format!("bad chunk size {line:?}")),
                            }
                        }
                        State::ChunkEnd if line.is_empty() => State::ChunkSize,
                        State::ChunkEnd => return Err("chunk not followed by CRLF".into()),
                        _ if line.is_empty() => State::Done,
                        _ => State::Trailers,
                    };
                    at += end + 2;
                }
                State::ChunkData(n) | State::Length(n) => {
                    if rest.is_empty() {
                        break;
                    }
                    let take = n.min(rest.len());
                    self.body.extend_from_slice(&rest[..take]);
                    at += take;
                    let left = n - take;
                    self.state = match (&self.state, left) {
                        (State::ChunkData(_), 0) => State::ChunkEnd,
                        (State::ChunkData(_), l) => State::ChunkData(l),
                        (_, 0) => State::Done,
                        (_, l) => State::Length(l),
                    };
                }
                State::UntilClose => {
                    self.body.extend_from_slice(rest);
                    at = self.raw.len();
                    break;
                }
                State::Done => {
                    at = self.raw.len();
                    break;
                }
            }
        }
        self.raw.drain(..at);
        if self.body.len() > MAX_LINE && !self.body.contains(&b'\n') {
            return Err("response line too long".into());
        }
        Ok(())
    }

    /// The next whole body line (without its newline); at the end of the body, what is left.
    pub(super) fn line(&mut self) -> Option<Vec<u8>> {
        if let Some(i) = self.body.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.body.drain(..=i).collect();
            line.pop();
            return Some(line);
        }
        if self.done() && !self.body.is_empty() {
            return Some(std::mem::take(&mut self.body));
        }
        None
    }

    /// The connection closed: a body that runs to the close is complete now.
    pub(super) fn closed(&mut self) {
        if self.state == State::UntilClose {
            self.state = State::Done;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a response head (status line and headers); returns how the body is framed.
fn head(bytes: &[u8], status: &mut Option<u16>) -> Result<State, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "response head is not text".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let code = status_line
        .split_whitespace()
        .nth(1)
        .filter(|_| status_line.starts_with("HTTP/1."))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    *status = Some(code);
    let (mut chunked, mut length) = (false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.to_ascii_lowercase().split(',').any(|v| v.trim() == "chunked"),
            "content-length" => length = Some(value.parse::<usize>().map_err(|_| format!("bad content-length {value:?}"))?),
            _ => {}
        }
    }
    Ok(match (chunked, length) {
        (true, _) => State::ChunkSize,
        (false, Some(0)) => State::Done,
        (false, Some(n)) => State::Length(n),
        (false, None) => State::UntilClose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WATCH: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
        8\r\n{\"a\":1}\n\r\n\
        4\r\n{\"b\"\r\n\
        5;ext=1\r\n:2}\n{\r\n\
        6\r\n\"c\":3}\r\n\
        1\r\n\n\r\n";

    fn lines(r: &mut ResponseReader) -> Vec<String> {
        std::iter::from_fn(|| r.line()).map(|l| String::from_utf8(l).unwrap()).collect()
    }

    /// Lines come out whole however the bytes are split: at every position, and one byte at a time.
    #[test]
    fn chunked_lines_survive_any_split() {
        let want = vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"];
        for cut in 0..WATCH.len() {
            let mut r = ResponseReader::new();
            r.feed(&WATCH[..cut]).unwrap();
            let mut got = lines(&mut r);
            r.feed(&WATCH[cut..]).unwrap();
            got.extend(lines(&mut r));
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(r.status(), Some(200));
            assert!(!r.done(), "a watch does not end");
        }
        let mut r = ResponseReader::new();
        let mut got = Vec::new();
        for b in WATCH {
            r.feed(std::slice::from_ref(b)).unwrap();
            got.extend(lines(&mut r));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn the_end_of_a_chunked_or_sized_body_is_seen() {
        let mut r = ResponseReader::new();
        r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab\n\r\n2\r\ncd\r\n0\r\nX-T: 1\r\n\r\n").unwrap();
        assert!(r.done());
        assert_eq!(lines(&mut r), vec!["ab", "cd"]);
        let mut r = ResponseReader::new();
        r.feed(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 13\r\n\r\n{\"error\"").unwrap();
        assert!(!r.done());
        assert_eq!(r.line(), None);
        r.feed(b":\"x\"}ignored").unwrap();
        assert!(r.done());
        assert_eq!(r.status(), Some(503));
        assert_eq!(lines(&mut r), vec!["{\"error\":\"x\"}"]);
        let mut r = ResponseReader::new();
        r.feed(b"HTTP/1.0 200 OK\r\n\r\n{}").unwrap();
        assert_eq!(r.line(), None);
        r.closed();
        assert_eq!(lines(&mut r), vec!["{}"]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            assert!(ResponseReader::new().feed(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut r = ResponseReader::new();
        assert!(r.feed(&vec![b'x'; MAX_HEAD + 10]).is_err());
    }
}
