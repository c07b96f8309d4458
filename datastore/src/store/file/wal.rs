//! The local store's write-ahead log (`<dir>/.wal`): the frame format, the hint that keeps session open cheap,
//! and reading the log back. What a commit, a checkpoint and recovery do with it is in `session.rs`.
//!
//! The file is created zero-filled (fsynced, renamed into place) and grown in zero-filled steps, so appending
//! a frame overwrites blocks that already exist: its `fdatasync` flushes data only and does not wait for a
//! filesystem journal commit (only the commit that grows the file does, once per `GROW`). Layout: the magic at 0, the hint at `HINT_AT`, frames from `START`:
//! `[magic u32][payload len u32][seq u64][crc32c u32 over len, seq and payload][payload]`, little endian.
//! Seqs grow by one per commit for the life of the store (a fresh log after a replay goes on from the last
//! one), so the seq of the last frame is the store's revision (`watch.rs`); a checkpoint restarts frames at
//! `START`, so a scan that follows consecutive seqs from `START` never walks into an older generation's
//! leftovers. Readers without the lock (`LogView`) trust only what their checksums say is whole.
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub(super) const LOG: &str = ".wal";
const LOG_TMP: &str = ".wal.tmp";
const MAGIC: &[u8; 24] = b"calico-rs store wal v1\n\0";
pub(super) const HINT_AT: u64 = 512;
const HINT_LEN: usize = 40;
const HINT_MAGIC: u32 = 0x544e_4948; // "HINT"
/// First frame offset (the first page holds the magic and the hint).
pub(super) const START: u64 = 4096;
/// A checkpoint runs once the frames since the last one take this many bytes: a couple of thousand ADD/DEL
/// commits, so by then most handles written since the last one are gone again (a node runs ~110 pods).
pub(super) const CHECKPOINT_AT: u64 = 8 << 20;
/// Size the log is created with, and the step it grows by (zero-filled) when a frame does not fit.
const GROW: u64 = 1 << 20;
const FRAME_MAGIC: u32 = 0x3157_4352; // "RCW1"
const FRAME_HEAD: usize = 20;
/// Larger payload lengths are garbage, not frames (and must not become huge allocations).
const MAX_PAYLOAD: u32 = 256 << 20;

pub(super) type BootId = [u8; 16];

/// The kernel's id for this boot: a log hint from another boot means the machine went down since, and the
/// page cache (where record files written after the last checkpoint lived) may be lost. `None` where it
/// cannot be read; every session then replays the whole log, which is slow but safe.
pub(super) fn boot_id() -> Option<BootId> {
    static BOOT: OnceLock<Option<BootId>> = OnceLock::new();
    *BOOT.get_or_init(|| parse_boot_id(&std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?))
}

fn parse_boot_id(s: &str) -> Option<BootId> {
    let hex: Vec<u8> = s.trim().bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        id[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(id)
}

/// One record change of a commit: the whole new file content, or a delete. Replaying a change is idempotent.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Change {
    Put { name: String, content: Vec<u8> },
    Delete { name: String },
}

impl Change {
    pub(super) fn name(&self) -> &str {
        match self {
            Change::Put { name, .. } | Change::Delete { name } => name,
        }
    }
}

#[derive(Debug, PartialEq)]
pub(super) struct Frame {
    pub seq: u64,
    /// Bytes the frame takes in the log.
    pub len: u64,
    pub changes: Vec<Change>,
}

/// Where the log stands, as the last session in this boot left it: frames up to `seq` are applied to the
/// record files, the next frame goes at `end`. Written after each commit without fsync: it only has to
/// survive a killed process, and after a power loss it names another boot and is not trusted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Hint {
    pub boot: BootId,
    pub seq: u64,
    pub end: u64,
}

impl Hint {
    pub(super) fn encode(&self) -> [u8; HINT_LEN] {
        let mut b = [0u8; HINT_LEN];
        b[0..4].copy_from_slice(&HINT_MAGIC.to_le_bytes());
        b[8..24].copy_from_slice(&self.boot);
        b[24..32].copy_from_slice(&self.seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.end.to_le_bytes());
        let crc = crc32c(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Hint> {
        let b = b.get(..HINT_LEN)?;
        if u32_at(b, 0) != HINT_MAGIC || u32_at(b, 4) != crc32c(&b[8..]) {
            return None;
        }
        let mut boot = [0u8; 16];
        boot.copy_from_slice(&b[8..24]);
        Some(Hint { boot, seq: u64_at(b, 24), end: u64_at(b, 32) }).filter(|h| h.end >= START)
    }
}

/// What the log says about the record files when a session opens.
pub(super) enum State {
    /// Everything logged is applied.
    Clean,
    /// Same boot, and the frame after the hint was written by a process that was killed before it finished
    /// (it may not even be durable yet).
    Unapplied(Frame),
    /// The hint is missing, torn or from another boot: any record written since the last checkpoint may be
    /// stale; these are the frames since then, to replay in order.
    Replay(Vec<Frame>),
}

/// An open log, positioned by its hint.
pub(super) struct Log {
    file: File,
    path: PathBuf,
    pub hint: Hint,
}

impl Log {
    /// Opens the log and reads where it stands. `Ok(None)` if the store has no log yet.
    pub(super) fn open(dir: &Path, boot: Option<BootId>) -> Result<Option<(Log, State)>, (PathBuf, std::io::Error)> {
        let path = dir.join(LOG);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err((path, e)),
        };
        let io = |e| (path.clone(), e);
        let mut head = [0u8; HINT_AT as usize + HINT_LEN];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        if &head[..MAGIC.len()] != MAGIC {
            return Err(io(std::io::Error::new(ErrorKind::InvalidData, "not a calico-rs store log")));
        }
        let hint = Hint::decode(&head[HINT_AT as usize..]).filter(|h| Some(h.boot) == boot);
        let mut log = Log { file, path: path.clone(), hint: hint.unwrap_or(Hint { boot: [0; 16], seq: 0, end: START }) };
        let state = match hint {
            Some(h) => match log.frame_at(h.end, Some(h.seq + 1)).map_err(io)? {
                Some(f) => State::Unapplied(f),
                None => State::Clean,
            },
            None => {
                let frames = log.scan(u64::MAX).map_err(io)?;
                // Seqs are the store's revision (`watch.rs`) and must not go back when no frame follows the
                // last checkpoint: a hint from another boot still names the last seq used (it is written
                // after its frame's fdatasync, so it is never ahead of a durable frame).
                let old = Hint::decode(&head[HINT_AT as usize..]).map_or(0, |h| h.seq);
                log.hint.seq = frames.last().map_or(0, |f| f.seq).max(old);
                State::Replay(frames)
            }
        };
        Ok(Some((log, state)))
    }

    /// Writes a fresh, empty log (zero-filled, the hint naming `boot` and `seq`) durably in place of any
    /// old one: temp + fsync + rename + fsync(dir).
    pub(super) fn create(dir: &Path, boot: Option<BootId>, seq: u64, sync: bool) -> Result<Log, (PathBuf, std::io::Error)> {
        let tmp = dir.join(LOG_TMP);
        let io = |e| (tmp.clone(), e);
        let hint = Hint { boot: boot.unwrap_or([0; 16]), seq, end: START };
        let mut buf = vec![0u8; (START + GROW) as usize];
        buf[..MAGIC.len()].copy_from_slice(MAGIC);
        buf[HINT_AT as usize..HINT_AT as usize + HINT_LEN].copy_from_slice(&hint.encode());
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        f.write_all(&buf).map_err(io)?;
        if sync {
            f.sync_all().map_err(io)?;
        }
        drop(f);
        let path = dir.join(LOG);
        std::fs::rename(&tmp, &path).map_err(io)?;
        if sync {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| (dir.to_path_buf(), e))?;
        }
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| (path.clone(), e))?;
        Ok(Log { file, path, hint })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of frames since the last checkpoint.
    pub(super) fn used(&self) -> u64 {
        self.hint.end - START
    }

    /// Writes the next frame at the end of the log and, if `sync`, makes it durable: the commit point.
    /// Returns the frame's length. On failure the frame is overwritten (best effort) so that no later
    /// session applies a commit its caller was told failed.
    pub(super) fn append(&mut self, changes: &[Change], sync: bool) -> std::io::Result<u64> {
        let frame = encode_frame(self.hint.seq + 1, changes)?;
        let at = self.hint.end;
        let written = self.grow_to(at + frame.len() as u64).and_then(|()| self.file.write_all_at(&frame, at)).and_then(|()| {
            if sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            let _ = self.file.write_all_at(&[0u8; FRAME_HEAD], at);
            return Err(e);
        }
        Ok(frame.len() as u64)
    }

    /// Zero-fills the file up to a `GROW` boundary past `end` if it is shorter (made durable by the append's
    /// fdatasync, which then also commits the new size).
    fn grow_to(&self, end: u64) -> std::io::Result<()> {
        let size = self.file.metadata()?.len();
        if end <= size {
            return Ok(());
        }
        let new_size = end.div_ceil(GROW) * GROW;
        self.file.write_all_at(&vec![0u8; (new_size - size) as usize], size)
    }

    /// Makes frames already written durable (before a recovering session applies one a killed process wrote).
    pub(super) fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Records that the frame at the end (of `len` bytes) is applied.
    pub(super) fn applied(&mut self, len: u64) -> std::io::Result<()> {
        self.hint.seq += 1;
        self.hint.end += len;
        self.write_hint()
    }

    /// Starts a new generation of frames at `START` (after a checkpoint made every record durable).
    pub(super) fn restart(&mut self) -> std::io::Result<()> {
        self.hint.end = START;
        self.write_hint()
    }

    fn write_hint(&self) -> std::io::Result<()> {
        self.file.write_all_at(&self.hint.encode(), HINT_AT)
    }

    /// The frames since the last checkpoint, following consecutive seqs from `START` and stopping at the
    /// first torn, corrupt or stale frame, or at `limit`.
    pub(super) fn scan(&self, limit: u64) -> std::io::Result<Vec<Frame>> {
        scan(&self.file, limit)
    }

    fn frame_at(&self, at: u64, seq: Option<u64>) -> std::io::Result<Option<Frame>> {
        frame_at(&self.file, at, seq)
    }
}

/// The log opened read-only by a reader that does not hold the lock (snapshots and watchers, `watch.rs`).
/// A session may be writing it meanwhile: what it reads counts only when its checksum says it is whole.
pub(super) struct LogView {
    file: File,
    /// The log file's inode: a new one means the log was written afresh (after a replay).
    pub ino: u64,
}

impl LogView {
    /// `Ok(None)` if the store has no log (yet).
    pub(super) fn open(dir: &Path) -> std::io::Result<Option<LogView>> {
        use std::os::unix::fs::MetadataExt;
        let file = match File::open(dir.join(LOG)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let ino = file.metadata()?.ino();
        Ok(Some(LogView { file, ino }))
    }

    /// The hint as last written, whichever boot wrote it; `None` while it is torn (being written) or if the
    /// file is not a log.
    pub(super) fn hint(&self) -> std::io::Result<Option<Hint>> {
        let mut head = [0u8; HINT_AT as usize + HINT_LEN];
        match self.file.read_exact_at(&mut head, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        Ok(Hint::decode(&head[HINT_AT as usize..]).filter(|_| &head[..MAGIC.len()] == MAGIC))
    }

    /// The frame at `at` if it is whole and carries `seq`.
    pub(super) fn frame_at(&self, at: u64, seq: u64) -> std::io::Result<Option<Frame>> {
        frame_at(&self.file, at, Some(seq))
    }

    /// The frames since the last checkpoint (as `Log::scan`), each with its offset.
    pub(super) fn scan(&self) -> std::io::Result<Vec<(u64, Frame)>> {
        let mut at = START;
        Ok(scan(&self.file, u64::MAX)?
            .into_iter()
            .map(|f| {
                let here = at;
                at += f.len;
                (here, f)
            })
            .collect())
    }
}

/// See `Log::scan`.
fn scan(file: &File, limit: u64) -> std::io::Result<Vec<Frame>> {
    let size = file.metadata()?.len().min(limit);
    let mut buf = vec![0u8; size.saturating_sub(START) as usize];
    // The file may shrink under a reader (a fresh log renamed over it is a new inode, but a
    // truncation is not impossible): read what is there.
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], START + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    let mut frames: Vec<Frame> = Vec::new();
    let mut at = 0usize;
    while let Some(f) = decode_frame(&buf[at..], frames.last().map(|f| f.seq + 1)) {
        at += f.len as usize;
        frames.push(f);
    }
    Ok(frames)
}

/// The frame at `at` if it is whole, checksummed and carries `seq` (when given).
fn frame_at(file: &File, at: u64, seq: Option<u64>) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; FRAME_HEAD];
    match file.read_exact_at(&mut head, at) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let Some(len) = frame_len(&head, seq) else { return Ok(None) };
    let mut buf = vec![0u8; len];
    match file.read_exact_at(&mut buf, at) {
        Ok(()) => Ok(decode_frame(&buf, seq)),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

pub(super) fn encode_frame(seq: u64, changes: &[Change]) -> std::io::Result<Vec<u8>> {
    let too_big = || std::io::Error::new(ErrorKind::InvalidInput, "commit too large for the store log");
    let mut b = vec![0u8; FRAME_HEAD];
    b.extend_from_slice(&u32::try_from(changes.len()).map_err(|_| too_big())?.to_le_bytes());
    for c in changes {
        let name = c.name().as_bytes();
        b.push(matches!(c, Change::Put { .. }) as u8);
        b.extend_from_slice(&u16::try_from(name.len()).map_err(|_| too_big())?.to_le_bytes());
        b.extend_from_slice(name);
        if let Change::Put { content, .. } = c {
            b.extend_from_slice(&u32::try_from(content.len()).map_err(|_| too_big())?.to_le_bytes());
            b.extend_from_slice(content);
        }
    }
    let len = u32::try_from(b.len() - FRAME_HEAD).ok().filter(|l| *l <= MAX_PAYLOAD).ok_or_else(too_big)?;
    b[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&len.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c_update(crc32c(&b[4..16]), &b[FRAME_HEAD..]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    Ok(b)
}

/// Total length of the frame whose header is `head`, if the header is plausible.
fn frame_len(head: &[u8], seq: Option<u64>) -> Option<usize> {
    if head.len() < FRAME_HEAD || u32_at(head, 0) != FRAME_MAGIC || seq.is_some_and(|s| u64_at(head, 8) != s) {
        return None;
    }
    let len = u32_at(head, 4);
    (len <= MAX_PAYLOAD).then_some(FRAME_HEAD + len as usize)
}

fn decode_frame(b: &[u8], seq: Option<u64>) -> Option<Frame> {
    let len = frame_len(b, seq)?;
    let payload = b.get(FRAME_HEAD..len)?;
    if crc32c_update(crc32c(&b[4..16]), payload) != u32_at(b, 16) {
        return None;
    }
    let mut r = Reader(payload);
    let count = r.u32()?;
    let mut changes = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let put = r.take(1)?[0];
        let n = r.take(2)?;
        let name = String::from_utf8(r.take(u16::from_le_bytes([n[0], n[1]]) as usize)?.to_vec()).ok()?;
        changes.push(match put {
            1 => {
                let n = r.u32()? as usize;
                Change::Put { name, content: r.take(n)?.to_vec() }
            }
            0 => Change::Delete { name },
            _ => return None,
        });
    }
    r.0.is_empty().then_some(Frame { seq: u64_at(b, 8), len: len as u64, changes })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32_at(b, 0))
    }
}

/// CRC-32C (Castagnoli), table-driven.
fn crc32c(data: &[u8]) -> u32 {
    crc32c_update(0, data)
}

fn crc32c_update(crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0x82f6_3b78 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c_update(crc32c(b"1234"), b"56789"), 0xe306_9283);
    }

    #[test]
    fn boot_id_parses_the_kernel_format() {
        let id = parse_boot_id("2ed23b18-d8ca-4b7a-ac34-957f0ac42892\n").unwrap();
        assert_eq!(id[0], 0x2e);
        assert_eq!(id[15], 0x92);
        assert_eq!(parse_boot_id("nope"), None);
    }

    #[test]
    fn frames_round_trip_and_reject_damage() {
        let changes = vec![Change::Put { name: "a".into(), content: b"{\"x\":1}".to_vec() }, Change::Delete { name: "b".into() }];
        let f = encode_frame(7, &changes).unwrap();
        let d = decode_frame(&f, Some(7)).unwrap();
        assert_eq!((d.seq, d.len, &d.changes), (7, f.len() as u64, &changes));
        assert!(decode_frame(&f, Some(8)).is_none(), "wrong seq");
        assert!(decode_frame(&f[..f.len() - 1], None).is_none(), "torn");
        for i in 4..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x40;
            assert!(decode_frame(&bad, None).is_none(), "flipped byte {i}");
        }
    }
}
