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
}

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
