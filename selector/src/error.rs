//! The one error a selector can produce: where in the text parsing stopped and what it wanted there.
use std::fmt;

/// A selector that does not parse. `offset` is the byte offset into the selector text where the problem is
/// (the end of the text when the selector stops too early).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    selector: String,
    offset: usize,
    problem: String,
}

impl ParseError {
    pub(crate) fn new(selector: &str, offset: usize, problem: impl Into<String>) -> ParseError {
        ParseError { selector: selector.to_string(), offset, problem: problem.into() }
    }

    /// The text that failed to parse.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// Byte offset of the problem in [`ParseError::selector`].
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What went wrong, without the position, e.g. `expected ')'`.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "selector {:?}: {} at {}", self.selector, self.problem, self.offset)
    }
}

impl std::error::Error for ParseError {}
