//! Glue around the lalrpop-generated parser: the only module that names lalrpop.

use super::ast::{Expr, ExprKind, Item};
use super::layout::ItemTokens;
use super::token::Tok;
use crate::diag::{Code, Diagnostic};
use crate::span::Span;
use lalrpop_util::ParseError;

#[allow(clippy::all, clippy::pedantic, unused_parens, dead_code)]
mod generated {
    lalrpop_util::lalrpop_mod!(pub flow);
    // The same grammar generated as a recursive-ascent parser (build.rs): no symbol stack to
    // allocate and grow, states are functions; it recurses once per symbol on the parse stack.
    lalrpop_util::lalrpop_mod!(pub flow_fast);
}

/// Items of at most this many tokens are parsed by the recursive-ascent parser first (a one-call
/// flow is about 13 tokens, SPEC 9's nested loop 34). Its recursion is bounded by the parse
/// stack, which is bounded by the tokens: measured, about 2 KiB of native stack per token in
/// release builds and 12 KiB in debug builds, so at most ~100 KiB and ~700 KiB here (a test
/// parses the deepest such items on a 1 MiB stack). Longer items go to the table-driven parser,
/// whose stack is on the heap.
pub const FAST_MAX_TOKENS: usize = 48;

/// Expression trees taller than this are refused while parsing, so that every later pass can
/// recurse over expressions without risking the stack.
pub const MAX_EXPR_DEPTH: u32 = 200;

/// The grammar's only user error: an expression nested deeper than [`MAX_EXPR_DEPTH`].
#[derive(Clone, Debug, PartialEq)]
pub struct DepthError {
    pub span: Span,
}

pub fn span(l: usize, r: usize) -> Span {
    Span::new(l, r)
}

/// Builds an expression node, computing its height and refusing trees that are too tall.
pub fn expr(
    kind: ExprKind,
    l: usize,
    r: usize,
) -> Result<Expr, ParseError<usize, Tok, DepthError>> {
    let child_depth = match &kind {
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Str(_)
        | ExprKind::Bool(_)
        | ExprKind::Name(_) => 0,
        ExprKind::Field(e, _) | ExprKind::Unary(_, e) | ExprKind::As(_, e) => e.depth,
        ExprKind::Binary(_, a, b) => a.depth.max(b.depth),
        ExprKind::If(c, a, b) => c.depth.max(a.depth).max(b.depth),
    };
    let depth = child_depth + 1;
    if depth > MAX_EXPR_DEPTH {
        return Err(ParseError::User {
            error: DepthError { span: span(l, r) },
        });
    }
    Ok(Expr {
        kind,
        span: span(l, r),
        depth,
    })
}

/// Parses one laid-out item.
pub fn parse_item(item: ItemTokens, diagnostics: &mut Vec<Diagnostic>) -> Option<Item> {
    let end = item.span.end as usize;
    let tokens = item.tokens.into_iter().map(Ok::<_, DepthError>);
    match generated::flow::ItemParser::new().parse(tokens) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            diagnostics.push(convert_error(error, end));
            None
        }
    }
}

/// Parses one laid-out item with the recursive-ascent parser if it is short enough. `Err` gives
/// the item back if it is too long; `Ok(None)` means it has an error, which the table-driven
/// [`parse_item`] then reports (its expected-token lists are the reference), from the same
/// tokens laid out again.
pub fn parse_item_fast(item: ItemTokens) -> Result<Option<Item>, ItemTokens> {
    if item.tokens.len() > FAST_MAX_TOKENS {
        return Err(item);
    }
    let tokens = item.tokens.into_iter().map(Ok::<_, DepthError>);
    Ok(generated::flow_fast::ItemParser::new().parse(tokens).ok())
}

/// Parses a standalone expression (a print template hole) from raw tokens.
pub fn parse_expr(tokens: Vec<(usize, Tok, usize)>, end: usize) -> Result<Expr, Diagnostic> {
    generated::flow::ExprParser::new()
        .parse(tokens.into_iter().map(Ok::<_, DepthError>))
        .map_err(|error| convert_error(error, end))
}

fn convert_error(error: ParseError<usize, Tok, DepthError>, end: usize) -> Diagnostic {
    match error {
        ParseError::InvalidToken { location } => Diagnostic::new(
            Code::E0101,
            "invalid token",
            Span::new(location, location + 1),
        ),
        ParseError::UnrecognizedEof { location, expected } => Diagnostic::new(
            Code::E0101,
            format!("unexpected end of item{}", expected_list(&expected)),
            Span::new(location.min(end), end),
        ),
        ParseError::UnrecognizedToken {
            token: (l, tok, r),
            expected,
        } => {
            let message = match tok {
                Tok::BlockClose => format!(
                    "unexpected end of continuations{}",
                    expected_list(&expected)
                ),
                other => format!("unexpected {other}{}", expected_list(&expected)),
            };
            Diagnostic::new(Code::E0101, message, Span::new(l, r.max(l)))
        }
        ParseError::ExtraToken { token: (l, tok, r) } => {
            Diagnostic::new(Code::E0101, format!("unexpected {tok}"), Span::new(l, r))
        }
        ParseError::User { error } => Diagnostic::new(
            Code::E0105,
            format!("expression nested deeper than the limit of {MAX_EXPR_DEPTH}"),
            error.span,
        ),
    }
}

fn expected_list(expected: &[String]) -> String {
    let shown: Vec<String> = expected
        .iter()
        .filter(|e| !matches!(e.as_str(), "BlockOpen" | "BlockClose" | "CallOpen"))
        .map(|e| match e.as_str() {
            "Ident" => "a name".to_string(),
            "Int" => "an integer".to_string(),
            "Float" => "a float".to_string(),
            "Str" => "a string".to_string(),
            other => format!("`{}`", other.trim_matches('"')),
        })
        .collect();
    match shown.len() {
        0 => String::new(),
        1..=6 => format!(", expected {}", shown.join(" or ")),
        _ => format!(
            ", expected one of {} and {} more",
            shown[..5].join(", "),
            shown.len() - 5
        ),
    }
}
