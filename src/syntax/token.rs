//! Tokens as the grammar sees them, including the layout tokens that the
//! layout pass inserts to turn indentation into explicit nesting.

use std::fmt;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    // Item and continuation punctuation.
    Tilde,
    Bar,
    BarQuestion,
    Pipe,
    // Layout tokens: the continuation block of an invocation, and the `(` that opens an
    // invocation's arguments (as opposed to a parenthesised expression).
    BlockOpen,
    BlockClose,
    CallOpen,
    /// A `|>` that starts a continuation of its own (a pipe), as opposed to the arrow after a
    /// `| branch` header.
    PipeStart,
    // Keywords.
    Import,
    Pub,
    Event,
    /// `input` right after an item's `~` and before `{` (a flow-input declaration); the
    /// layout pass makes it from an identifier, so `input` stays an ordinary name elsewhere.
    Input,
    When,
    If,
    Else,
    True,
    False,
    And,
    Or,
    Not,
    AtAs,
    Underscore,
    /// `yield` in a step position before a branch name (SPEC 11); the layout pass makes it from
    /// an identifier, so `yield` stays an ordinary name elsewhere.
    Yield,
    // Literals and names.
    Ident(String),
    Int(u64),
    Float(f64),
    Str(Arc<str>),
    // Operators and delimiters.
    OrOr,
    AndAnd,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Bang,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Dot,
    DotDot,
    /// `..=`, the closed range of a `match` pattern.
    DotDotEq,
    Eq,
    /// Text the lexer could not turn into a token; the diagnostic is reported only when the
    /// token sits in a part of the source that is parsed (not in skipped host code).
    Error(crate::diag::Code, String),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Tok::Tilde => "~",
            Tok::Bar => "|",
            Tok::BarQuestion => "|?",
            Tok::Pipe => "|>",
            Tok::BlockOpen => "start of continuations",
            Tok::BlockClose => "end of continuations",
            Tok::CallOpen => "(",
            Tok::PipeStart => "|>",
            Tok::Import => "import",
            Tok::Pub => "pub",
            Tok::Event => "event",
            Tok::Input => "input",
            Tok::When => "when",
            Tok::If => "if",
            Tok::Else => "else",
            Tok::True => "true",
            Tok::False => "false",
            Tok::And => "and",
            Tok::Or => "or",
            Tok::Not => "not",
            Tok::AtAs => "@as",
            Tok::Underscore => "_",
            Tok::Yield => "yield",
            Tok::Ident(name) => return write!(f, "`{name}`"),
            Tok::Int(value) => return write!(f, "`{value}`"),
            Tok::Float(value) => return write!(f, "`{value}`"),
            Tok::Str(_) => "string literal",
            Tok::OrOr => "||",
            Tok::AndAnd => "&&",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Bang => "!",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Dot => ".",
            Tok::DotDot => "..",
            Tok::DotDotEq => "..=",
            Tok::Eq => "=",
            Tok::Error(_, message) => return write!(f, "invalid text ({message})"),
        };
        if text.starts_with(char::is_alphabetic)
            || text.len() == 1
            || text.len() == 2
            || text == "..="
        {
            write!(f, "`{text}`")
        } else {
            write!(f, "{text}")
        }
    }
}
