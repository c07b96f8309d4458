//! A selector field (an IPPool's `nodeSelector`, a BGPPeer's `nodeSelector`/`peerSelector`): the text as
//! stored (spaces and tabs around it trimmed; empty meaning `all()`, as Calico defaults it) and its parse in
//! Calico's selector language (the `selector` crate), whose errors give the position.
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The CRD's `maxLength` of every selector field.
pub const MAX_SELECTOR_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub source: String,
    parsed: selector::Selector,
}

impl Selector {
    pub fn all() -> Selector {
        Selector { source: "all()".into(), parsed: selector::Selector::all() }
    }

    /// Parses the text as written, so an error's position counts from its first byte.
    pub fn parse(src: &str) -> Result<Selector, selector::ParseError> {
        let parsed = selector::Selector::parse(src)?;
        let trimmed = src.trim_matches([' ', '\t']);
        if trimmed.is_empty() {
            return Ok(Selector::all());
        }
        Ok(Selector { source: trimmed.to_string(), parsed })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.parsed.matches(labels)
    }

    pub fn parsed(&self) -> &selector::Selector {
        &self.parsed
    }

    /// Whether the text uses `global()`, which Calico allows only in namespace selectors of policies.
    pub fn uses_global(&self) -> bool {
        self.source.contains("global(")
    }
}

impl FromStr for Selector {
    type Err = selector::ParseError;

    fn from_str(s: &str) -> Result<Selector, selector::ParseError> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

super::via_str!(Selector);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_are_stored_as_written_and_errors_give_the_position() {
        let s: Selector = serde_json::from_value(json!(" rack == 'rack-1' ")).unwrap();
        assert_eq!(s.source, "rack == 'rack-1'");
        assert_eq!(serde_json::to_value(&s).unwrap(), json!("rack == 'rack-1'"));
        assert!(s.matches(&[("rack".to_string(), "rack-1".to_string())].into()));
        assert_eq!(Selector::parse("").unwrap(), Selector::all());
        let err = serde_json::from_value::<Selector>(json!("rack == 'a' | x")).unwrap_err().to_string();
        assert!(err.contains("at 12"), "{err}");
        assert!(Selector::parse("global()").unwrap().uses_global());
    }
}
