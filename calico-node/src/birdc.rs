//! BIRD's control socket, spoken directly (what `birdc` does, without a process per command): BIRD greets
//! with `0001 BIRD <version> ready.`, then answers each command line with reply lines `DDDD-text`
//! (more to come), ` text` (continues the previous code) and a last `DDDD text`. Codes below 1000 are
//! successes and data, 8xxx and 9xxx are errors (`doc/reply_codes` in BIRD's sources).
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest wait for one reply: BIRD answers from its main loop, so only a wedged BIRD takes this long.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BirdcError {
    #[error("BIRD's control socket {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("BIRD's control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("BIRD's control socket: unexpected reply line {0:?}")]
    Protocol(String),
    /// BIRD refused the command: its code and text (e.g. `8002 bird.conf:3:1 syntax error`).
    #[error("BIRD: {code} {text}")]
    Refused { code: u16, text: String },
}

/// One reply: its lines with their codes (continuation lines carry the code they continue).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    /// The code of the last line (the one that ended the reply).
    pub fn code(&self) -> u16 {
        self.lines.last().map_or(0, |l| l.0)
    }

    /// The reply's text, one line per reply line.
    pub fn text(&self) -> String {
        self.lines.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join("\n")
    }
}

pub struct Control {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// BIRD's version from its greeting.
    pub version: String,
}

impl Control {
    /// Connects and reads the greeting.
    pub fn connect(path: &Path) -> Result<Control, BirdcError> {
        let stream = UnixStream::connect(path).map_err(|source| BirdcError::Connect { path: path.display().to_string(), source })?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let writer = stream.try_clone()?;
        let mut c = Control { reader: BufReader::new(stream), writer, version: String::new() };
        let hello = c.read_reply()?;
        c.version = hello.lines.first().map(|(_, t)| t.trim_start_matches("BIRD ").trim_end_matches(" ready.").to_string()).unwrap_or_default();
        Ok(c)
    }

    /// Sends one command line and reads its reply; a reply ending in an error code is `Refused`.
    pub fn command(&mut self, line: &str) -> Result<Reply, BirdcError> {
        if line.contains('\n') {
            return Err(BirdcError::Protocol(format!("a command is one line: {line:?}")));
        }
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        let reply = self.read_reply()?;
        match reply.code() {
            code if code >= 8000 => Err(BirdcError::Refused { code, text: reply.text() }),
            _ => Ok(reply),
        }
    }

    /// `configure "<path>"`: BIRD parses the file and, if it parses, switches to it, restarting only the
    /// protocols whose configuration changed. A file that does not parse leaves the running config alone.
    pub fn configure(&mut self, path: &Path) -> Result<Reply, BirdcError> {
        let p = path.to_str().filter(|p| !p.contains('"')).ok_or_else(|| BirdcError::Protocol(format!("unusable path {}", path.display())))?;
        let reply = self.command(&format!("configure \"{p}\""))?;
        match reply.code() {
            // 0003 Reconfigured, 0004 Reconfiguration in progress, 0018 Reconfiguration confirmed,
            // 0020 Configuration OK (nothing to do).
            3 | 4 | 18 | 20 | 19 => Ok(reply),
            _ => Err(BirdcError::Refused { code: reply.code(), text: reply.text() }),
        }
    }

    fn read_reply(&mut self) -> Result<Reply, BirdcError> {
        let mut reply = Reply::default();
        let mut code = 0;
        // Bounded: BIRD's longest replies (a full routing table) are finite, and each read has a timeout.
        loop {
            let mut raw = String::new();
            if self.reader.read_line(&mut raw)? == 0 {
                return Err(BirdcError::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "BIRD closed the connection")));
            }
            let line = raw.trim_end_matches(['\n', '\r']);
            match parse_line(line) {
                Some(Line::Continue(c, text)) => {
                    code = c;
                    reply.lines.push((c, text.to_string()));
                }
                Some(Line::Last(c, text)) => {
                    reply.lines.push((c, text.to_string()));
                    return Ok(reply);
                }
                Some(Line::More(text)) => reply.lines.push((code, text.to_string())),
                None => return Err(BirdcError::Protocol(line.to_string())),
            }
        }
    }
}

enum Line<'a> {
    /// `DDDD-text`
    Continue(u16, &'a str),
    /// `DDDD text`
    Last(u16, &'a str),
    /// ` text`
    More(&'a str),
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    if let Some(text) = line.strip_prefix(' ') {
        return Some(Line::More(text));
    }
    let (digits, rest) = (line.get(..4)?, line.get(4..)?);
    let code: u16 = digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())??;
    match rest.as_bytes().first() {
        Some(b'-') => Some(Line::Continue(code, &rest[1..])),
        Some(b' ') => Some(Line::Last(code, &rest[1..])),
        None => Some(Line::Last(code, "")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse() {
        assert!(matches!(parse_line("0001 BIRD 2.0.12 ready."), Some(Line::Last(1, "BIRD 2.0.12 ready."))));
        assert!(matches!(parse_line("2002-Name       Proto"), Some(Line::Continue(2002, "Name       Proto"))));
        assert!(matches!(parse_line(" Mesh_10_0_0_2 BGP"), Some(Line::More("Mesh_10_0_0_2 BGP"))));
        assert!(matches!(parse_line("0000"), Some(Line::Last(0, ""))));
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("12").is_none());
        assert!(parse_line("1234x").is_none());
    }
}
