//! BGP passwords without Kubernetes. Calico reads `password.secretKeyRef` (BGPPeer) and `nodeMeshPassword`
//! (BGPConfiguration) only from Kubernetes Secrets, so pure-etcd Calico renders no password at all. calico-rs
//! reads them from a directory laid out as Kubernetes mounts a secret volume: `<dir>/<secret name>/<key>`, the
//! file's content the password (one trailing newline dropped, so `echo pw > file` works). The agent is given
//! the directory; `load` reads what the snapshot refers to, and `plan` renders `password "...";` from it.
use super::snapshot::SecretRef;
use std::collections::BTreeMap;
use std::path::Path;

/// The default directory (`CALICO_BGP_SECRETS_DIR` moves it).
pub const DEFAULT_DIR: &str = "/etc/calico/secrets";

/// Reads each referenced key; returns what was found, and why anything present could not be read. A missing
/// file is not a problem here: `plan` warns about every reference it cannot resolve.
pub fn load(dir: &Path, refs: &[SecretRef]) -> (BTreeMap<SecretRef, String>, Vec<String>) {
    let mut found = BTreeMap::new();
    let mut problems = Vec::new();
    for r in refs {
        if !is_plain_name(&r.name) || !is_plain_name(&r.key) {
            problems.push(format!("secret {}/{}: a secret's name and key are single path components", r.name, r.key));
            continue;
        }
        let path = dir.join(&r.name).join(&r.key);
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(mut s) => {
                    if s.ends_with('\n') {
                        s.pop();
                        if s.ends_with('\r') {
                            s.pop();
                        }
                    }
                    found.insert(r.clone(), s);
                }
                Err(_) => problems.push(format!("{}: not UTF-8", path.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    (found, problems)
}

/// Kubernetes' secret names (DNS subdomains) and keys (`[-._a-zA-Z0-9]+`), which also keeps the path in `dir`.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, key: &str) -> SecretRef {
        SecretRef { name: name.into(), key: key.into() }
    }

    #[test]
    fn secrets_are_files_named_by_secret_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bgp-secrets")).unwrap();
        std::fs::write(dir.path().join("bgp-secrets/rr-password"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("bgp-secrets/exact"), "two\nlines\r\n").unwrap();
        let refs = [r("bgp-secrets", "rr-password"), r("bgp-secrets", "exact"), r("bgp-secrets", "absent"), r("..", "passwd"), r("a", "b/c")];
        let (found, problems) = load(dir.path(), &refs);
        assert_eq!(found.get(&refs[0]).map(String::as_str), Some("s3cret"));
        assert_eq!(found.get(&refs[1]).map(String::as_str), Some("two\nlines"), "only one trailing newline goes");
        assert!(!found.contains_key(&refs[2]) && problems.len() == 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("single path components")));
    }
}
