//! Calico's label selector language (`libcalico-go/lib/selector`): the text of an IPPool's `nodeSelector` or a
//! BGPPeer's `nodeSelector`/`peerSelector`, parsed once into an [`Expr`] tree, evaluated against a label map
//! with Calico's semantics, and printed back in Calico's canonical form. Pure code, no dependencies.
//!
//! ```
//! use selector::Selector;
//! use std::collections::BTreeMap;
//!
//! let sel: Selector = "rack in {'r1', 'r2'} || !has(rack)".parse().unwrap();
//! let labels = BTreeMap::from([("rack".to_string(), "r2".to_string())]);
//! assert!(sel.matches(&labels));
//! assert_eq!(sel.to_string(), r#"(rack in {"r1", "r2"} || !has(rack))"#);
//! let err = "has(foo".parse::<Selector>().unwrap_err();
//! assert_eq!(err.to_string(), r#"selector "has(foo": expected ')' to close 'has(' at 7"#);
//! ```
mod error;
mod expr;
mod lexer;
mod parser;

pub use error::ParseError;
pub use expr::{Expr, Labels};
pub use lexer::MAX_LABEL_LEN;
pub use parser::MAX_NESTING;

use std::fmt;
use std::str::FromStr;

/// A parsed selector. `Display` gives Calico's canonical form (`Selector.String()`), which parses back to the
/// same selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    expr: Expr,
}

impl Selector {
    /// Parses selector text. Empty text, or only spaces and tabs, is `all()`.
    pub fn parse(src: &str) -> Result<Selector, ParseError> {
        parser::parse(src).map(|expr| Selector { expr })
    }

    /// `all()`: selects everything.
    pub fn all() -> Selector {
        Selector { expr: Expr::All }
    }

    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.expr.matches(labels)
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    pub fn into_expr(self) -> Expr {
        self.expr
    }
}

impl From<Expr> for Selector {
    fn from(expr: Expr) -> Selector {
        Selector { expr }
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(src: &str) -> Result<Selector, ParseError> {
        Selector::parse(src)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

/// Whether `key` is a label key the language can name: 1 to 512 of `[a-zA-Z0-9_./-]` (Calico's
/// `tokenizer.ValidLabel`). Kubernetes' own label-key rules are stricter; this is only what a selector can say.
pub fn is_valid_label(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_LABEL_LEN && key.bytes().all(lexer::is_label_byte)
}
