//! The raw lexer: source text to tokens with spans. It never fails: text it cannot read becomes a
//! [`Tok::Error`] token, so that errors inside host code that is skipped anyway stay silent.

use super::token::Tok;
use crate::diag::Code;
use crate::span::Span;
use std::borrow::Cow;
use std::sync::Arc;

/// A token with its span and where it stands on its line.
#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
    /// The first token of its line.
    pub line_start: bool,
    /// 0-based column (in bytes; indentation is ASCII spaces) of the token.
    pub column: u32,
}

/// Lexes `text`, whose first byte is at offset `base` of the whole source.
pub fn lex(text: &str, base: usize) -> Vec<Token> {
    let mut lexer = Lexer {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        base,
        line_begin: 0,
        at_line_start: true,
        tokens: Vec::with_capacity(text.len() / 3 + 4),
    };
    lexer.run();
    lexer.tokens
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    base: usize,
    line_begin: usize,
    at_line_start: bool,
    tokens: Vec<Token>,
}

impl Lexer<'_> {
    fn run(&mut self) {
        while self.pos < self.bytes.len() {
            let c = self.bytes[self.pos];
            match c {
                b'\n' => {
                    self.pos += 1;
                    self.line_begin = self.pos;
                    self.at_line_start = true;
                }
                b' ' | b'\r' => self.pos += 1,
                b'\t' => {
                    let start = self.pos;
                    self.pos += 1;
                    if self.at_line_start {
                        self.push_at(
                            start,
                            Tok::Error(Code::E0103, "use spaces for indentation".into()),
                        );
                        // One error per line is enough.
                        while self.pos < self.bytes.len()
                            && matches!(self.bytes[self.pos], b' ' | b'\t')
                        {
                            self.pos += 1;
                        }
                    }
                }
                b'/' if self.peek(1) == Some(b'/') => {
                    while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'"' => self.string(),
                b'0'..=b'9' => self.number(),
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => self.word(),
                b'@' => {
                    let start = self.pos;
                    self.pos += 1;
                    let word_start = self.pos;
                    while self.pos < self.bytes.len() && is_word_byte(self.bytes[self.pos]) {
                        self.pos += 1;
                    }
                    let tok = if &self.text[word_start..self.pos] == "as" {
                        Tok::AtAs
                    } else {
                        Tok::Error(
                            Code::E0101,
                            format!("unknown builtin `{}`", &self.text[start..self.pos]),
                        )
                    };
                    self.push(start, tok);
                }
                _ => self.punct(),
            }
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn push(&mut self, start: usize, tok: Tok) {
        let span = Span::new(self.base + start, self.base + self.pos);
        self.tokens.push(Token {
            tok,
            span,
            line_start: self.at_line_start,
            column: (start - self.line_begin) as u32,
        });
        self.at_line_start = false;
    }

    fn push_at(&mut self, start: usize, tok: Tok) {
        self.push(start, tok);
    }

    fn word(&mut self) {
        let start = self.pos;
        while self.pos < self.bytes.len() && is_word_byte(self.bytes[self.pos]) {
            self.pos += 1;
        }
        let word = &self.text[start..self.pos];
        let tok = match word {
            "_" => Tok::Underscore,
            "import" => Tok::Import,
            "pub" => Tok::Pub,
            "event" => Tok::Event,
            "when" => Tok::When,
            "if" => Tok::If,
            "else" => Tok::Else,
            "true" => Tok::True,
            "false" => Tok::False,
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            _ => Tok::Ident(word.to_string()),
        };
        self.push(start, tok);
    }

    fn number(&mut self) {
        let start = self.pos;
        if self.bytes[self.pos] == b'0' && matches!(self.peek(1), Some(b'x' | b'X')) {
            self.pos += 2;
            while self.pos < self.bytes.len()
                && (self.bytes[self.pos].is_ascii_hexdigit() || self.bytes[self.pos] == b'_')
            {
                self.pos += 1;
            }
            let digits: String = self.text[start + 2..self.pos]
                .chars()
                .filter(|c| *c != '_')
                .collect();
            let tok = match u64::from_str_radix(&digits, 16) {
                Ok(value) => Tok::Int(value),
                Err(_) if digits.is_empty() => {
                    Tok::Error(Code::E0101, "hexadecimal literal has no digits".into())
                }
                Err(_) => Tok::Error(Code::E0101, "integer literal out of range".into()),
            };
            self.push(start, tok);
            return;
        }
        let mut is_float = false;
        self.digits();
        // `0..10` is a range, not the float `0.`: a fraction needs a digit after the dot.
        if self.peek(0) == Some(b'.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            self.pos += 1;
            self.digits();
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.peek(1), Some(b'+' | b'-')));
            if self.peek(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                self.pos += 1 + sign;
                self.digits();
            }
        }
        let text: String = self.text[start..self.pos]
            .chars()
            .filter(|c| *c != '_')
            .collect();
        let tok = if is_float {
            match text.parse::<f64>() {
                Ok(value) if value.is_finite() => Tok::Float(value),
                _ => Tok::Error(Code::E0101, "float literal out of range".into()),
            }
        } else {
            match text.parse::<u64>() {
                Ok(value) => Tok::Int(value),
                Err(_) => Tok::Error(Code::E0101, "integer literal out of range".into()),
            }
        };
        if self.pos < self.bytes.len() && is_word_byte(self.bytes[self.pos]) {
            while self.pos < self.bytes.len() && is_word_byte(self.bytes[self.pos]) {
                self.pos += 1;
            }
            self.push(start, Tok::Error(Code::E0101, "malformed number".into()));
            return;
        }
        self.push(start, tok);
    }

    fn digits(&mut self) {
        while self.pos < self.bytes.len()
            && (self.bytes[self.pos].is_ascii_digit() || self.bytes[self.pos] == b'_')
        {
            self.pos += 1;
        }
    }

    fn string(&mut self) {
        let start = self.pos;
        self.pos += 1;
        match unescape(&self.text[self.pos..]) {
            Ok((value, consumed)) => {
                self.pos += consumed;
                // One allocation of the right size, shared by the syntax tree and the IR.
                self.push(start, Tok::Str(Arc::from(&*value)));
            }
            Err((code, message, consumed)) => {
                self.pos += consumed;
                self.push(start, Tok::Error(code, message));
            }
        }
    }

    fn punct(&mut self) {
        let start = self.pos;
        let two = (self.bytes[self.pos], self.peek(1).unwrap_or(0));
        let (tok, len) = match two {
            (b'.', b'.') if self.peek(2) == Some(b'=') => (Tok::DotDotEq, 3),
            (b'|', b'>') => (Tok::Pipe, 2),
            (b'|', b'?') => (Tok::BarQuestion, 2),
            (b'|', b'|') => (Tok::OrOr, 2),
            (b'&', b'&') => (Tok::AndAnd, 2),
            (b'=', b'=') => (Tok::EqEq, 2),
            (b'!', b'=') => (Tok::NotEq, 2),
            (b'<', b'=') => (Tok::Le, 2),
            (b'>', b'=') => (Tok::Ge, 2),
            (b'.', b'.') => (Tok::DotDot, 2),
            (b'|', _) => (Tok::Bar, 1),
            (b'~', _) => (Tok::Tilde, 1),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'+', _) => (Tok::Plus, 1),
            (b'-', _) => (Tok::Minus, 1),
            (b'*', _) => (Tok::Star, 1),
            (b'/', _) => (Tok::Slash, 1),
            (b'%', _) => (Tok::Percent, 1),
            (b'!', _) => (Tok::Bang, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b',', _) => (Tok::Comma, 1),
            (b':', _) => (Tok::Colon, 1),
            (b'.', _) => (Tok::Dot, 1),
            (b'=', _) => (Tok::Eq, 1),
            _ => {
                let ch = self.text[self.pos..].chars().next().unwrap_or('?');
                (
                    Tok::Error(
                        Code::E0101,
                        format!("unexpected character `{}`", ch.escape_debug()),
                    ),
                    ch.len_utf8(),
                )
            }
        };
        self.pos += len;
        self.push(start, tok);
    }
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Reads a string literal body (after the opening quote) up to and including the closing quote.
/// Returns the value and the bytes consumed, or an error with the bytes to skip.
pub fn unescape(rest: &str) -> Result<(Cow<'_, str>, usize), (Code, String, usize)> {
    // Most literals have no escape: their value is their text, borrowed.
    if let Some(i) = rest.bytes().position(|b| matches!(b, b'"' | b'\\' | b'\n')) {
        if rest.as_bytes()[i] == b'"' {
            return Ok((Cow::Borrowed(&rest[..i]), i + 1));
        }
    }
    let mut value = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Cow::Owned(value), i + 1)),
            '\n' => return Err((Code::E0102, "unterminated string literal".into(), i)),
            '\\' => {
                let Some((j, escaped)) = chars.next() else {
                    break;
                };
                match escaped {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    '0' => value.push('\0'),
                    'u' => {
                        let body = &rest[j + 1..];
                        let parsed = body
                            .strip_prefix('{')
                            .and_then(|b| b.find('}').map(|end| &b[..end]))
                            .and_then(|hex| {
                                u32::from_str_radix(hex, 16).ok().map(|v| (v, hex.len()))
                            })
                            .and_then(|(v, len)| char::from_u32(v).map(|c| (c, len)));
                        match parsed {
                            Some((ch, len)) => {
                                value.push(ch);
                                // Skip `{`, the digits and `}`.
                                for _ in 0..len + 2 {
                                    chars.next();
                                }
                            }
                            None => {
                                let end =
                                    rest[j..].find('"').map(|e| j + e + 1).unwrap_or(rest.len());
                                return Err((Code::E0101, "invalid unicode escape".into(), end));
                            }
                        }
                    }
                    other => {
                        let end = rest[j..].find('"').map(|e| j + e + 1).unwrap_or(rest.len());
                        return Err((
                            Code::E0101,
                            format!("unknown escape `\\{}`", other.escape_debug()),
                            end,
                        ));
                    }
                }
            }
            c => value.push(c),
        }
    }
    Err((
        Code::E0102,
        "unterminated string literal".into(),
        rest.len(),
    ))
}
