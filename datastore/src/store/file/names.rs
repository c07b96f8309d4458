//! Record file names: the one place that turns a key path into the name of its record file, and a name back
//! into what it says about its key. Nothing else in the store builds or takes apart a name.
//!
//! A name is the percent-encoded key path when that fits in `NAME_MAX` bytes (every name the store ever
//! wrote: old stores read unchanged). A longer path is cut to `HEAD_MAX` bytes of its encoding (never inside
//! a `%XX`), followed by `~` and the hex SHA-256 of the whole path: e.g. `%2Fcalico%2Fipam%2Fv2%2Fhost%2F
//! node-with-a-253-character-na~3f1c...`. `~` is outside `encode_name`'s alphabet (`[A-Za-z0-9._-]` and
//! uppercase `%XX`), so a hashed name never equals a plain one and never decodes as one; it has no meaning to
//! a shell inside a word or to a glob. The head keeps the kind's encoded prefix, so `list` still picks a
//! kind's files by name, and `ls` still shows whose record a file is. Only the record itself names the whole
//! key (`FileRecord.key`): readers check it, so two paths whose names collide fail instead of reading each
//! other's record.

/// Longest file name most Linux filesystems accept.
pub(super) const NAME_MAX: usize = 255;
/// Between a hashed name's head and its digest.
const SEP: char = '~';
/// Hex digits of a SHA-256 digest.
const DIGEST_HEX: usize = 64;
/// The most of the encoded path a hashed name keeps: the rest of `NAME_MAX` holds `SEP` and the digest.
pub(super) const HEAD_MAX: usize = NAME_MAX - 1 - DIGEST_HEX;

/// The name of the record file for the key at `path`.
pub(super) fn file_name(path: &str) -> String {
    let mut name = encode_name(path);
    if name.len() <= NAME_MAX {
        return name;
    }
    // Every `%` starts a three-byte escape: back up to it if the cut would split one.
    let mut cut = HEAD_MAX;
    if let Some(i) = name[cut - 2..cut].find('%') {
        cut = cut - 2 + i;
    }
    name.truncate(cut);
    name.push(SEP);
    for b in hmac_sha256::Hash::hash(path.as_bytes()) {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// What a file name says about its key.
#[derive(Debug, PartialEq)]
pub(super) enum Parsed {
    /// The key path itself.
    Plain(String),
    /// A hashed name: the key path is in the record (and must give this name back).
    Hashed,
}

/// `None` for names `file_name` cannot produce (the store's own dot files, anything else in the directory).
pub(super) fn parse(name: &str) -> Option<Parsed> {
    if let Some(path) = decode_name(name) {
        return Some(Parsed::Plain(path));
    }
    let (head, digest) = name.split_once(SEP)?;
    let hashed = name.len() <= NAME_MAX
        && head.len() + 2 >= HEAD_MAX
        && decode_name(head).is_some()
        && digest.len() == DIGEST_HEX
        && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hashed.then_some(Parsed::Hashed)
}

/// What the name of every record whose key path starts with `path_prefix` starts with (`list` filters on
/// it). Holds for hashed names too as long as the encoded prefix is shorter than a hashed name's head, which
/// every kind's is by far (a unit test checks).
pub(super) fn name_prefix(path_prefix: &str) -> String {
    encode_name(path_prefix)
}

/// Whether the file `name` may hold a record whose key path starts with the prefix that `name_prefix` made
/// `encoded`: a name starting with it, or a hashed name whose head was cut inside it (only the record then
/// says whether its key is under the prefix).
pub(super) fn may_be_under(name: &str, encoded: &str) -> bool {
    name.starts_with(encoded) || (parse(name) == Some(Parsed::Hashed) && name.split_once(SEP).is_some_and(|(head, _)| encoded.starts_with(head)))
}

/// Whether `name` is a hashed name (its record alone names its key).
pub(super) fn is_hashed(name: &str) -> bool {
    parse(name) == Some(Parsed::Hashed)
}

/// Percent-encodes every byte outside `[A-Za-z0-9._-]` (so `/` and `%` never survive) and a leading dot
/// (names starting with `.` are the store's own files).
fn encode_name(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    for (i, b) in path.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Inverse of `encode_name`; `None` for names `encode_name` cannot produce.
fn decode_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let path = String::from_utf8(out).ok()?;
    (encode_name(&path) == name).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Key, Kind};

    #[test]
    fn names_cannot_escape_the_directory() {
        for id in ["../../etc/passwd", "..", ".", "a/b", "/abs", "%2F..", "x\0y", "\r\neth0", "ünï", &"../".repeat(100)] {
            let path = Key::Handle(id.into()).path();
            let name = file_name(&path);
            assert!(!name.contains('/') && !name.starts_with('.') && !name.contains('\0') && name.len() <= NAME_MAX, "{name}");
            if encode_name(&path).len() <= NAME_MAX {
                assert_eq!(parse(&name), Some(Parsed::Plain(path)));
            } else {
                assert_eq!(parse(&name), Some(Parsed::Hashed));
            }
        }
        assert!(!encode_name(".hidden").starts_with('.'));
        assert_eq!(decode_name("%2"), None);
        assert_eq!(decode_name("a%2fb"), None, "lowercase hex is not our encoding");
        for own in [".lock", ".wal", ".spare0", ".journal", "x~y", "%2Fa~0123"] {
            assert_eq!(parse(own), None, "{own}");
        }
    }

    /// Both forms are on-disk format: a store written by one version is read by the next.
    #[test]
    fn names_do_not_change() {
        let handle = Key::Handle("k8s-pod-network.abc".into()).path();
        assert_eq!(file_name(&handle), "%2Fcalico%2Fipam%2Fv2%2Fhandle%2Fk8s-pod-network.abc");
        let node = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        let expected = format!(
            "%2Fcalico-rs%2Fipam%2Fv1%2Fhost%2F{}.{}.{}~{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(28),
            "b004153807fe034a67d4664a7f2de89d94c9bbc0374f4db53315bc1b4b1ea8c6"
        );
        assert_eq!(file_name(&Key::HostBlocks(node).path()), expected);
    }

    /// Names that fit are exactly what the store always wrote; one byte more and the name is hashed, as long
    /// as the filesystem allows and starting with the same encoded head.
    #[test]
    fn names_are_plain_up_to_the_limit_then_hashed() {
        let base = Key::Handle(String::new()).path();
        let plain_len = encode_name(&base).len();
        let at_limit = format!("{base}{}", "h".repeat(NAME_MAX - plain_len));
        assert_eq!(file_name(&at_limit), encode_name(&at_limit));
        assert_eq!(file_name(&at_limit).len(), NAME_MAX);
        assert_eq!(parse(&file_name(&at_limit)), Some(Parsed::Plain(at_limit.clone())));
        let over = format!("{at_limit}h");
        let name = file_name(&over);
        assert_eq!(name.len(), NAME_MAX);
        assert!(name.starts_with(&encode_name(&over)[..HEAD_MAX]) && name.contains(SEP), "{name}");
        assert_eq!(parse(&name), Some(Parsed::Hashed));
        // Deterministic, and different for paths that share the whole head.
        assert_eq!(file_name(&over), name);
        assert_ne!(file_name(&format!("{at_limit}i")), name);
    }

    /// The cut never splits an escape, whichever of its three bytes falls on the limit.
    #[test]
    fn a_hashed_head_is_a_whole_encoding() {
        for pad in 0..3 {
            let path = format!("/{}{}", "a".repeat(HEAD_MAX - 4 + pad), "/".repeat(40));
            let name = file_name(&path);
            let (head, _) = name.split_once(SEP).unwrap();
            assert!(head.len() <= HEAD_MAX && head.len() + 2 >= HEAD_MAX, "{pad}: {}", head.len());
            assert!(decode_name(head).is_some_and(|p| path.starts_with(&p)), "{pad}: {head}");
            assert_eq!(parse(&name), Some(Parsed::Hashed));
        }
    }

    #[test]
    fn sha256_of_the_whole_path() {
        // FIPS 180-2 test vector, as the tail of the name of a path that long.
        let path = format!("/{}", "abc".repeat(100));
        let name = file_name(&path);
        let digest: String = hmac_sha256::Hash::hash(path.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert!(name.ends_with(&format!("~{digest}")));
        let abc: String = hmac_sha256::Hash::hash(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(abc, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    /// A watcher's prefix longer than a hashed head still finds the hashed names that may be under it.
    #[test]
    fn hashed_names_may_be_under_a_longer_prefix() {
        let host = "n".repeat(253);
        let prefix = crate::store::affinity_prefix(&host);
        let key = Key::Affinity { host: host.clone(), cidr: "fd00::/122".parse().unwrap() }.path();
        let name = file_name(&key);
        assert!(is_hashed(&name));
        assert!(may_be_under(&name, &name_prefix(&prefix)));
        assert!(may_be_under(&name, &name_prefix(Kind::Affinity.prefix())));
        assert!(!may_be_under(&name, &name_prefix("/calico/ipam/v2/host/m")));
        let plain = file_name(&Key::Handle("h".into()).path());
        assert!(may_be_under(&plain, &name_prefix(Kind::Handle.prefix())) && !may_be_under(&plain, &name_prefix(&prefix)));
    }

    /// Every kind's prefix survives in a hashed name's head, so `list` finds its records by name.
    #[test]
    fn every_kind_prefix_fits_in_a_hashed_head() {
        let mut kinds = vec![Kind::Block, Kind::Affinity, Kind::Handle, Kind::IpamConfig, Kind::PoolNames, Kind::HostBlocks, Kind::PoolBlocks];
        kinds.extend(crate::resources::KINDS.iter().map(|k| Kind::Resource(k)));
        for kind in kinds {
            assert!(name_prefix(kind.prefix()).len() + 2 < HEAD_MAX, "{kind:?}");
        }
        let long = Key::Affinity { host: "n".repeat(253), cidr: "fd00::/122".parse().unwrap() };
        assert!(file_name(&long.path()).starts_with(&name_prefix(Kind::Affinity.prefix())));
    }
}
