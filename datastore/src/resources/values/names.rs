//! Kubernetes' object-name rules as Calico applies them (`validator.go` `nameRegex`, `validateObjectMeta`):
//! resource names are DNS-1123 subdomains of at most 253 characters; namespaces DNS-1123 labels; label keys
//! and annotation keys qualified names (`prefix/name`), label values at most 63 characters.
use std::fmt;
use std::str::FromStr;

pub const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && inner(&b[0]) && inner(&b[b.len() - 1]) && b.iter().all(|c| inner(c) || *c == b'-')
}

/// Why `name` is not a resource name (a DNS-1123 subdomain of at most 253 characters), or `Ok`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is required".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("is {} characters long, at most {MAX_NAME_LEN}", name.len()));
    }
    if name.contains('/') {
        return Err(format!("{name:?} must not contain '/'"));
    }
    if name.contains("..") {
        return Err(format!("{name:?} must not contain '..'"));
    }
    if !name.split('.').all(is_dns_label) {
        return Err(format!(
            "{name:?} must be lower case letters, digits, '-' and '.', each '.'-separated part starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A namespace: a DNS-1123 label (at most 63 characters).
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.len() > MAX_LABEL_LEN {
        return Err(format!("is {} characters long, at most {MAX_LABEL_LEN}", s.len()));
    }
    if !is_dns_label(s) {
        return Err(format!("{s:?} must be lower case letters, digits and '-', starting and ending with a letter or digit"));
    }
    Ok(())
}

/// The name part of a qualified name or a label value: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Kubernetes' `IsQualifiedName`: `[prefix/]name`, the prefix a DNS-1123 subdomain, the name at most 63
/// characters of letters, digits, '-', '_' and '.', starting and ending alphanumeric.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        check_name(p).map_err(|e| format!("key {key:?}: prefix {e}"))?;
    }
    if name.len() > MAX_LABEL_LEN || !is_qualified_part(name) {
        return Err(format!(
            "key {key:?} must be [prefix/]name, the name at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Kubernetes' `IsValidLabelValue`: empty, or at most 63 characters like a qualified name's name part.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= MAX_LABEL_LEN && is_qualified_part(value)) {
        Ok(())
    } else {
        Err(format!("value {value:?} must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"))
    }
}

/// Annotation keys are qualified names (compared lower-cased, as Calico does); keys and values together at
/// most 256 KiB.
pub fn check_annotations<'a>(annotations: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<(), String> {
    let mut total = 0;
    for (k, v) in annotations {
        check_label_key(&k.to_lowercase())?;
        total += k.len() + v.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        return Err(format!("total size {total} bytes is over {MAX_ANNOTATIONS_BYTES}"));
    }
    Ok(())
}

/// A field that names another resource (a BGPPeer's `node`, its `filters`, a community's `name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceName(String);

impl ResourceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ResourceName {
    type Err = String;

    fn from_str(s: &str) -> Result<ResourceName, String> {
        check_name(s).map(|()| ResourceName(s.to_string())).map_err(|e| if s.is_empty() { format!("name {e}") } else { e })
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ResourceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

super::via_str!(ResourceName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_dns_subdomains() {
        for good in ["default", "node.node-1", "a", "my.ippool-1", "rack1-host1", "0", &"a".repeat(253)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "required"),
            ("a/b", "'/'"),
            ("a..b", "'..'"),
            ("..", "'..'"),
            (&"a".repeat(254), "at most 253"),
            ("Upper", "lower case"),
            ("under_score", "lower case"),
            ("-a", "lower case"),
            ("a-", "lower case"),
            (".a", "lower case"),
            ("a.", "lower case"),
            ("a.-b", "lower case"),
            ("sp ace", "lower case"),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(bad.parse::<ResourceName>().is_err());
        }
    }

    #[test]
    fn labels_and_annotations_follow_kubernetes() {
        for good in ["rack", "projectcalico.org/zone", "a_b.c-d", "A", "kubernetes.io/hostname"] {
            assert_eq!(check_label_key(good), Ok(()), "{good}");
        }
        for bad in ["", "/a", "a/", "a/b/c", "-a", "a-", &"a".repeat(64), "Bad_Prefix/a", "sp ace"] {
            assert!(check_label_key(bad).is_err(), "{bad:?}");
        }
        for good in ["", "r1", "true", "a.b_c-d", &"v".repeat(63)] {
            assert_eq!(check_label_value(good), Ok(()), "{good}");
        }
        for bad in ["-r", "r-", "a b", &"v".repeat(64), "a/b"] {
            assert!(check_label_value(bad).is_err(), "{bad:?}");
        }
        let (k, v) = ("Big".to_string(), "x".repeat(300 * 1024));
        assert!(check_annotations([(&k, &v)]).unwrap_err().contains("over"));
        assert!(check_annotations([(&"Mixed.Case/Key".to_string(), &String::new())]).is_ok());
        assert!(check_annotations([(&"bad key".to_string(), &String::new())]).is_err());
        assert!(check_dns_label("kube-system").is_ok() && check_dns_label("a.b").is_err() && check_dns_label(&"a".repeat(64)).is_err());
    }
}
