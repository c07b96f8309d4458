//! Splits selector text into tokens, each with its byte offset. Which words are operators depends on the token
//! before, as in Calico: `in`, `not in`, `contains`, `starts with` and `ends with` are operators only right after
//! a label, and `has(`, `all(` and `global(` are functions only where a label could start, so `in == "x"` and
//! `has == "x"` are comparisons on labels named `in` and `has`.
use crate::error::ParseError;

/// Calico's limit on a label key (`tokenizer.MaxLabelLength`).
pub const MAX_LABEL_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Label(String),
    Str(String),
    Has(String),
    All,
    Global,
    Eq,
    Ne,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Not,
    And,
    Or,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub at: usize,
}

/// Bytes a label key may contain: Calico's `[a-zA-Z0-9_./-]`, any of them first.
pub(crate) fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// Only space and tab separate tokens; any other control character (a newline too) is an error.
fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    Lexer { src, bytes: src.as_bytes(), pos: 0, out: Vec::new() }.run()
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    out: Vec<Token>,
}

impl<'a> Lexer<'a> {
    fn run(mut self) -> Result<Vec<Token>, ParseError> {
        loop {
            self.skip_space();
            let at = self.pos;
            let Some(&b) = self.bytes.get(at) else {
                self.out.push(Token { tok: Tok::Eof, at });
                return Ok(self.out);
            };
            let tok = match b {
                b'(' => self.punct(1, Tok::LParen),
                b')' => self.punct(1, Tok::RParen),
                b'{' => self.punct(1, Tok::LBrace),
                b'}' => self.punct(1, Tok::RBrace),
                b',' => self.punct(1, Tok::Comma),
                b'"' | b'\'' => self.string(b)?,
                b'=' if self.rest().starts_with("==") => self.punct(2, Tok::Eq),
                b'=' => return Err(self.fail(at, "expected '=='")),
                b'!' if self.rest().starts_with("!=") => self.punct(2, Tok::Ne),
                b'!' => self.punct(1, Tok::Not),
                b'&' if self.rest().starts_with("&&") => self.punct(2, Tok::And),
                b'&' => return Err(self.fail(at, "expected '&&'")),
                b'|' if self.rest().starts_with("||") => self.punct(2, Tok::Or),
                b'|' => return Err(self.fail(at, "expected '||'")),
                _ => match self.out.last() {
                    Some(Token { tok: Tok::Label(label), .. }) => {
                        let label = label.clone();
                        self.operator(&label)?
                    }
                    _ => self.word()?,
                },
            };
            self.out.push(Token { tok, at });
        }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn fail(&self, at: usize, problem: impl Into<String>) -> ParseError {
        ParseError::new(self.src, at, problem)
    }

    fn skip_space(&mut self) {
        while self.bytes.get(self.pos).is_some_and(|&b| is_space(b)) {
            self.pos += 1;
        }
    }

    fn punct(&mut self, len: usize, tok: Tok) -> Tok {
        self.pos += len;
        tok
    }

    /// A string runs to the next quote of the same kind: no escapes, and any other byte (the other quote, a
    /// newline) is part of it.
    fn string(&mut self, quote: u8) -> Result<Tok, ParseError> {
        let start = self.pos + 1;
        let len = self.bytes[start..].iter().position(|&b| b == quote).ok_or_else(|| self.fail(self.pos, "unterminated string"))?;
        // Quotes are ASCII, so both ends are on character boundaries.
        let value = self.src[start..start + len].to_string();
        self.pos = start + len + 1;
        Ok(Tok::Str(value))
    }

    /// The longest run of label bytes at the current position; if there is none, the error says `wanted`.
    fn label(&mut self, wanted: &str) -> Result<String, ParseError> {
        let start = self.pos;
        let len = self.bytes[start..].iter().take_while(|&&b| is_label_byte(b)).count();
        if len == 0 {
            return Err(match self.src[start..].chars().next() {
                Some(c) => self.fail(start, format!("expected {wanted}, found {c:?}")),
                None => self.fail(start, format!("expected {wanted}")),
            });
        }
        if len > MAX_LABEL_LEN {
            return Err(self.fail(start, format!("label longer than {MAX_LABEL_LEN} characters")));
        }
        self.pos += len;
        Ok(self.src[start..start + len].to_string())
    }

    /// Where a term may start: `has(k)`, `all()`, `global()` (no space before the parenthesis) or a label.
    /// Anything else is an error, which says what the token before called for.
    fn word(&mut self) -> Result<Tok, ParseError> {
        let rest = self.rest();
        if rest.starts_with("has(") {
            self.pos += 4;
            self.skip_space();
            let label = self.label("a label")?;
            self.close_paren("has(")?;
            Ok(Tok::Has(label))
        } else if rest.starts_with("all(") {
            self.pos += 4;
            self.close_paren("all(")?;
            Ok(Tok::All)
        } else if rest.starts_with("global(") {
            self.pos += 7;
            self.close_paren("global(")?;
            Ok(Tok::Global)
        } else {
            let wanted = match self.out.last().map(|t| &t.tok) {
                Some(Tok::Eq | Tok::Ne | Tok::Contains | Tok::StartsWith | Tok::EndsWith) => "a quoted string",
                Some(Tok::In | Tok::NotIn) => "'{'",
                Some(Tok::LBrace | Tok::Comma) => "a quoted string or '}'",
                _ => "a label",
            };
            Ok(Tok::Label(self.label(wanted)?))
        }
    }

    fn close_paren(&mut self, after: &str) -> Result<(), ParseError> {
        self.skip_space();
        if self.bytes.get(self.pos) == Some(&b')') {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.fail(self.pos, format!("expected ')' to close '{after}'")))
        }
    }

    /// Right after a label only an operator may follow. The two-word ones may be written as one word
    /// (`notin`, `startswith`) or with any spaces between; each must end at a word boundary.
    fn operator(&mut self, label: &str) -> Result<Tok, ParseError> {
        const WORDS: [(&[&str], Tok); 5] = [
            (&["contains"], Tok::Contains),
            (&["starts", "with"], Tok::StartsWith),
            (&["ends", "with"], Tok::EndsWith),
            (&["not", "in"], Tok::NotIn),
            (&["in"], Tok::In),
        ];
        for (words, tok) in WORDS {
            if let Some(end) = self.words_end(words) {
                self.pos = end;
                return Ok(tok);
            }
        }
        Err(self.fail(self.pos, expected_operator(label)))
    }

    /// The offset just past `words` (spaces allowed between them) if the text here is exactly those words.
    fn words_end(&self, words: &[&str]) -> Option<usize> {
        let mut end = self.pos;
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                end += self.bytes[end..].iter().take_while(|&&b| is_space(b)).count();
            }
            if !self.src[end..].starts_with(word) {
                return None;
            }
            end += word.len();
        }
        match self.bytes.get(end) {
            Some(&b) if is_label_byte(b) => None,
            _ => Some(end),
        }
    }
}

pub(crate) fn expected_operator(label: &str) -> String {
    format!("expected ==, !=, in, not in, contains, starts with or ends with after label {label:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src).unwrap_or_else(|e| panic!("{e}")).into_iter().map(|t| t.tok).collect()
    }

    fn label(s: &str) -> Tok {
        Tok::Label(s.into())
    }

    fn string(s: &str) -> Tok {
        Tok::Str(s.into())
    }

    #[test]
    fn punctuation_needs_no_spaces() {
        assert_eq!(toks(r#"a=="b""#), [label("a"), Tok::Eq, string("b"), Tok::Eof]);
        assert_eq!(toks(r#"(a!='b')"#), [Tok::LParen, label("a"), Tok::Ne, string("b"), Tok::RParen, Tok::Eof]);
        assert_eq!(toks("!!has(a)"), [Tok::Not, Tok::Not, Tok::Has("a".into()), Tok::Eof]);
        assert_eq!(
            toks("a in{'x','y',}"),
            [label("a"), Tok::In, Tok::LBrace, string("x"), Tok::Comma, string("y"), Tok::Comma, Tok::RBrace, Tok::Eof]
        );
    }

    #[test]
    fn operator_words_only_after_a_label() {
        assert_eq!(toks(r#"contains contains "contains""#), [label("contains"), Tok::Contains, string("contains"), Tok::Eof]);
        assert_eq!(toks("in in {}"), [label("in"), Tok::In, Tok::LBrace, Tok::RBrace, Tok::Eof]);
        assert_eq!(toks("a notin {}")[1], Tok::NotIn);
        assert_eq!(toks("a not \t in {}")[1], Tok::NotIn);
        assert_eq!(toks("a startswith 'x'")[1], Tok::StartsWith);
        assert_eq!(toks("a ends  with'x'")[1], Tok::EndsWith);
        assert_eq!(toks("has == 'x'"), [label("has"), Tok::Eq, string("x"), Tok::Eof]);
        assert_eq!(toks("all == 'x'")[0], label("all"));
        for bad in ["a inf 'x'", "a ends withs 'x'", "a starts foo 'x'", "a squiggles 'x'", "a b", "a has(b)"] {
            assert!(tokenize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn functions_and_their_spaces() {
        assert_eq!(toks("has( a )"), [Tok::Has("a".into()), Tok::Eof]);
        assert_eq!(toks("all( )"), [Tok::All, Tok::Eof]);
        assert_eq!(toks("global()"), [Tok::Global, Tok::Eof]);
        // A space before the parenthesis makes a label and a parenthesis (which the parser then refuses).
        assert_eq!(toks("has (a)"), [label("has"), Tok::LParen, label("a"), Tok::RParen, Tok::Eof]);
        for bad in ["has()", "has(foo", "has( foo ", "all(", "global(", "has(a b)"] {
            assert!(tokenize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strings_have_no_escapes() {
        assert_eq!(toks(r#"a == "it's""#)[2], string("it's"));
        assert_eq!(toks(r#"a == 'say "hi"'"#)[2], string(r#"say "hi""#));
        assert_eq!(toks("a == \"two\nlines\"")[2], string("two\nlines"));
        assert_eq!(toks(r#"a == "back\""#)[2], string("back\\"));
        for bad in [r#""FOO"#, r#""FOO'"#, "'FOO", "label == \"value"] {
            assert!(tokenize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_carry_offsets() {
        let at = |src: &str| tokenize(src).map(|_| ()).unwrap_err().offset();
        assert_eq!(at("has(foo"), 7);
        assert_eq!(at("a = 'x'"), 2);
        assert_eq!(at("a == 'x' & b"), 9);
        assert_eq!(at("a == 'x' | b"), 9);
        assert_eq!(at("a == 'x"), 5);
        assert_eq!(at("a\n== 'x'"), 1);
        assert_eq!(at("a == 'é' && é"), 13);
        let problem = |src: &str| tokenize(src).map(|_| ()).unwrap_err().problem().to_string();
        assert_eq!(problem("a == %"), "expected a quoted string, found '%'");
        assert_eq!(problem("a in %"), "expected '{', found '%'");
        assert_eq!(problem("a in {'x', %"), "expected a quoted string or '}', found '%'");
        assert_eq!(problem("has(a) && \n"), "expected a label, found '\\n'");
        assert_eq!(at(&"a".repeat(513)), 0);
        assert!(tokenize(&"a".repeat(512)).is_ok());
    }
}
