//! The selector tree, its evaluation over a node's labels, and its canonical text (Calico's `String()`).
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;

/// A parsed selector. The parser builds `And` and `Or` with two or more operands (parentheses add no node) and
/// folds runs of `!` by parity; sets are sorted and de-duplicated by being `BTreeSet`s.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `all()`: matches everything.
    All,
    /// `global()`: matches everything (Calico uses it in namespace selectors for non-namespaced resources).
    Global,
    /// `has(k)`: the label is present, with any value.
    Has(String),
    /// `k == "v"`: present with exactly that value.
    Eq(String, String),
    /// `k != "v"`: absent, or present with another value.
    Ne(String, String),
    /// `k contains "v"`: present and its value contains `v`.
    Contains(String, String),
    /// `k starts with "v"`: present and its value starts with `v`.
    StartsWith(String, String),
    /// `k ends with "v"`: present and its value ends with `v`.
    EndsWith(String, String),
    /// `k in {"a", "b"}`: present with one of the values (an empty set matches nothing).
    In(String, BTreeSet<String>),
    /// `k not in {"a", "b"}`: absent, or present with none of the values.
    NotIn(String, BTreeSet<String>),
    /// `!e`.
    Not(Box<Expr>),
    /// `a && b && ...`.
    And(Vec<Expr>),
    /// `a || b || ...`.
    Or(Vec<Expr>),
}

/// Label lookup for evaluation: a node's or a peer's `metadata.labels`.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

impl Expr {
    /// Whether labels with these keys and values are selected.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = |k: &str| labels.label(k);
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(k) => value(k).is_some(),
            Expr::Eq(k, v) => value(k) == Some(v.as_str()),
            Expr::Ne(k, v) => value(k) != Some(v.as_str()),
            Expr::Contains(k, v) => value(k).is_some_and(|x| x.contains(v.as_str())),
            Expr::StartsWith(k, v) => value(k).is_some_and(|x| x.starts_with(v.as_str())),
            Expr::EndsWith(k, v) => value(k).is_some_and(|x| x.ends_with(v.as_str())),
            Expr::In(k, set) => value(k).is_some_and(|x| set.contains(x)),
            Expr::NotIn(k, set) => !value(k).is_some_and(|x| set.contains(x)),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(es) => es.iter().all(|e| e.matches(labels)),
            Expr::Or(es) => es.iter().any(|e| e.matches(labels)),
        }
    }
}

/// Double quotes unless the value holds one. A value holding both kinds of quote has no representation in
/// the language (the parser never produces one).
fn quoted(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    let q = if v.contains('"') { '\'' } else { '"' };
    write!(f, "{q}{v}{q}")
}

fn joined(f: &mut fmt::Formatter<'_>, es: &[Expr], op: &str) -> fmt::Result {
    f.write_str("(")?;
    for (i, e) in es.iter().enumerate() {
        if i > 0 {
            f.write_str(op)?;
        }
        write!(f, "{e}")?;
    }
    f.write_str(")")
}

/// Calico's canonical form: `&&` and `||` groups always parenthesised, one space around binary operators,
/// `starts with`/`ends with`/`not in` spelled as two words, set members sorted. An `And`/`Or` built by hand
/// with no operands prints as `all()`/`!all()` (what it means), so the output always parses.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compare = |f: &mut fmt::Formatter<'_>, k: &str, op: &str, v: &str| {
            write!(f, "{k} {op} ")?;
            quoted(f, v)
        };
        let set = |f: &mut fmt::Formatter<'_>, k: &str, op: &str, vs: &BTreeSet<String>| {
            write!(f, "{k} {op} {{")?;
            for (i, v) in vs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                quoted(f, v)?;
            }
            f.write_str("}")
        };
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => compare(f, k, "==", v),
            Expr::Ne(k, v) => compare(f, k, "!=", v),
            Expr::Contains(k, v) => compare(f, k, "contains", v),
            Expr::StartsWith(k, v) => compare(f, k, "starts with", v),
            Expr::EndsWith(k, v) => compare(f, k, "ends with", v),
            Expr::In(k, vs) => set(f, k, "in", vs),
            Expr::NotIn(k, vs) => set(f, k, "not in", vs),
            Expr::Not(e) => write!(f, "!{e}"),
            Expr::And(es) if es.is_empty() => f.write_str("all()"),
            Expr::Or(es) if es.is_empty() => f.write_str("!all()"),
            Expr::And(es) => joined(f, es, " && "),
            Expr::Or(es) => joined(f, es, " || "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn set(vs: &[&str]) -> BTreeSet<String> {
        vs.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn absent_labels() {
        let none = labels(&[]);
        let k = || "k".to_string();
        let v = || "v".to_string();
        for (e, want) in [
            (Expr::Has(k()), false),
            (Expr::Eq(k(), v()), false),
            (Expr::Ne(k(), v()), true),
            (Expr::Contains(k(), String::new()), false),
            (Expr::StartsWith(k(), String::new()), false),
            (Expr::EndsWith(k(), String::new()), false),
            (Expr::In(k(), set(&["v"])), false),
            (Expr::NotIn(k(), set(&["v"])), true),
            (Expr::NotIn(k(), set(&[])), true),
        ] {
            assert_eq!(e.matches(&none), want, "{e}");
        }
    }

    #[test]
    fn present_labels() {
        let l = labels(&[("k", "abc")]);
        assert!(Expr::Contains("k".into(), "b".into()).matches(&l));
        assert!(Expr::Contains("k".into(), String::new()).matches(&l));
        assert!(Expr::StartsWith("k".into(), "ab".into()).matches(&l));
        assert!(!Expr::StartsWith("k".into(), "bc".into()).matches(&l));
        assert!(Expr::EndsWith("k".into(), "bc".into()).matches(&l));
        assert!(!Expr::In("k".into(), set(&[])).matches(&l));
        assert!(Expr::NotIn("k".into(), set(&["x"])).matches(&l));
        assert!(!Expr::Ne("k".into(), "abc".into()).matches(&l));
        let hashed: HashMap<String, String> = l.clone().into_iter().collect();
        assert!(Expr::Eq("k".into(), "abc".into()).matches(&hashed));
    }

    #[test]
    fn display_quotes_and_groups() {
        let e = Expr::Or(vec![
            Expr::And(vec![Expr::Eq("a".into(), "it's".into()), Expr::Not(Box::new(Expr::Has("b".into())))]),
            Expr::In("c".into(), set(&["z", "\"q\"", "a"])),
        ]);
        assert_eq!(e.to_string(), r#"((a == "it's" && !has(b)) || c in {'"q"', "a", "z"})"#);
        assert_eq!(Expr::And(vec![]).to_string(), "all()");
        assert_eq!(Expr::Or(vec![]).to_string(), "!all()");
        assert_eq!(Expr::NotIn("a".into(), set(&[])).to_string(), "a not in {}");
        assert_eq!(Expr::StartsWith("a".into(), "x".into()).to_string(), r#"a starts with "x""#);
    }
}
