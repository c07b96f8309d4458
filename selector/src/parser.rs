//! Recursive descent over the tokens, lowest precedence first:
//!
//! ```text
//! selector := <empty> | or
//! or       := and ( "||" and )*
//! and      := term ( "&&" term )*
//! term     := "!"* ( has(k) | all() | global() | "(" or ")" | k cmp string | k ( in | not in ) set )
//! set      := "{" [ string ( "," string )* [ "," ] ] "}"
//! ```
use crate::error::ParseError;
use crate::expr::Expr;
use crate::lexer::{expected_operator, tokenize, Tok, Token};
use std::collections::BTreeSet;

/// Deepest nesting of parentheses accepted. Calico has no limit; this one keeps a hostile selector from
/// exhausting the stack of the parser, the evaluator or `Drop`, and is far beyond any selector a person writes.
pub const MAX_NESTING: usize = 128;

pub(crate) fn parse(src: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(src)?;
    let mut p = Parser { src, tokens, next: 0, depth: 0 };
    if p.peek().tok == Tok::Eof {
        return Ok(Expr::All);
    }
    let e = p.or()?;
    match p.peek() {
        Token { tok: Tok::Eof, .. } => Ok(e),
        t => Err(p.fail(t.at, "expected '&&', '||' or the end of the selector")),
    }
}

struct Parser<'a> {
    src: &'a str,
    /// Always ends with `Tok::Eof`, which is never consumed.
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        let last = self.tokens.len() - 1;
        &self.tokens[self.next.min(last)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.next += 1;
        }
        t
    }

    fn fail(&self, at: usize, problem: impl Into<String>) -> ParseError {
        ParseError::new(self.src, at, problem)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut es = vec![self.and()?];
        while self.peek().tok == Tok::Or {
            self.bump();
            es.push(self.and()?);
        }
        Ok(if es.len() == 1 { es.remove(0) } else { Expr::Or(es) })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut es = vec![self.term()?];
        while self.peek().tok == Tok::And {
            self.bump();
            es.push(self.term()?);
        }
        Ok(if es.len() == 1 { es.remove(0) } else { Expr::And(es) })
    }

    /// One possibly negated term. A run of `!` negates by parity: `!!has(a)` is `has(a)`.
    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut negated = false;
        while self.peek().tok == Tok::Not {
            self.bump();
            negated = !negated;
        }
        let t = self.bump();
        let e = match t.tok {
            Tok::Has(k) => Expr::Has(k),
            Tok::All => Expr::All,
            Tok::Global => Expr::Global,
            Tok::Label(k) => self.comparison(k)?,
            Tok::LParen => {
                if self.depth == MAX_NESTING {
                    return Err(self.fail(t.at, format!("parentheses nested deeper than {MAX_NESTING}")));
                }
                self.depth += 1;
                let e = self.or()?;
                self.depth -= 1;
                match self.bump() {
                    Token { tok: Tok::RParen, .. } => e,
                    u => return Err(self.fail(u.at, "expected '&&', '||' or ')'")),
                }
            }
            _ => return Err(self.fail(t.at, "expected a label, has(), all(), global(), '!' or '('")),
        };
        Ok(if negated { Expr::Not(Box::new(e)) } else { e })
    }

    /// What follows a label: an operator and a string, or `in`/`not in` and a set.
    fn comparison(&mut self, k: String) -> Result<Expr, ParseError> {
        let op = self.bump();
        let make: fn(String, String) -> Expr = match op.tok {
            Tok::Eq => Expr::Eq,
            Tok::Ne => Expr::Ne,
            Tok::Contains => Expr::Contains,
            Tok::StartsWith => Expr::StartsWith,
            Tok::EndsWith => Expr::EndsWith,
            Tok::In => return Ok(Expr::In(k, self.set()?)),
            Tok::NotIn => return Ok(Expr::NotIn(k, self.set()?)),
            _ => return Err(self.fail(op.at, expected_operator(&k))),
        };
        match self.bump() {
            Token { tok: Tok::Str(v), .. } => Ok(make(k, v)),
            t => Err(self.fail(t.at, "expected a quoted string")),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, ParseError> {
        let open = self.bump();
        if open.tok != Tok::LBrace {
            return Err(self.fail(open.at, "expected '{'"));
        }
        let mut values = BTreeSet::new();
        loop {
            match self.bump() {
                Token { tok: Tok::RBrace, .. } => return Ok(values),
                Token { tok: Tok::Str(v), .. } => {
                    values.insert(v);
                    match self.bump() {
                        Token { tok: Tok::Comma, .. } => {}
                        Token { tok: Tok::RBrace, .. } => return Ok(values),
                        t => return Err(self.fail(t.at, "expected ',' or '}'")),
                    }
                }
                t => return Err(self.fail(t.at, "expected a quoted string or '}'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> (usize, String) {
        let e = parse(src).unwrap_err();
        (e.offset(), e.problem().to_string())
    }

    #[test]
    fn positions_and_expectations() {
        assert_eq!(err("has(foo"), (7, "expected ')' to close 'has('".into()));
        assert_eq!(err("("), (1, "expected a label, has(), all(), global(), '!' or '('".into()));
        assert_eq!(err("()").0, 1);
        assert_eq!(err(")").0, 0);
        assert_eq!(err("a == b"), (5, "expected a quoted string".into()));
        assert_eq!(err("a in 'x'"), (5, "expected '{'".into()));
        assert_eq!(err("a in {'x' 'y'}"), (10, "expected ',' or '}'".into()));
        assert_eq!(err("a in {,}"), (6, "expected a quoted string or '}'".into()));
        assert_eq!(err("(a == 'x'"), (9, "expected '&&', '||' or ')'".into()));
        assert_eq!(err("a == 'x' b == 'y'").0, 9);
        assert_eq!(err("has(foo) &&").0, 11);
        assert_eq!(err("a").0, 1);
        assert!(err("has (a)").1.contains("after label \"has\""));
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}has(a){}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert_eq!(parse(&ok), Ok(Expr::Has("a".into())));
        let deep = format!("{}has(a){}", "(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1));
        assert_eq!(err(&deep).0, MAX_NESTING);
        assert!(parse(&"(".repeat(100_000)).is_err());
        assert_eq!(parse(&format!("{}has(a)", "!".repeat(100_001))), Ok(Expr::Not(Box::new(Expr::Has("a".into())))));
    }
}
