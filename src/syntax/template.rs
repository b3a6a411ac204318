//! Print templates: `"text {{ expr }} more {{ expr:fmt }}"`, the argument of `std.io:print.ln`.

use super::ast::Expr;
use super::lexer::{lex, unescape};
use super::parser::parse_expr;
use crate::diag::{Code, Diagnostic};
use crate::span::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoleFormat {
    /// `{{ e }}` or `{{ e:any }}`
    Any,
    /// `{{ e:s }}`: a string
    Str,
    /// `{{ e:d }}`: an integer
    Int,
    /// `{{ e:f }}`: a float
    Float,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TemplatePart {
    Text(String),
    Hole(Expr, HoleFormat),
}

/// Parses the raw text of a string literal (quotes included) that starts at `offset` in the
/// source. Holes are parsed as expressions with their own spans.
pub fn parse_template(raw: &str, offset: usize) -> Result<Vec<TemplatePart>, Diagnostic> {
    let body = raw
        .strip_prefix('"')
        .and_then(|b| b.strip_suffix('"'))
        .unwrap_or(raw);
    let base = offset + 1;
    let mut parts = Vec::new();
    let mut rest = 0;
    while let Some(open) = body[rest..].find("{{").map(|i| rest + i) {
        push_text(&mut parts, &body[rest..open], base + rest)?;
        let Some(close) = body[open + 2..].find("}}").map(|i| open + 2 + i) else {
            return Err(Diagnostic::new(
                Code::E0102,
                "unterminated `{{` in print template",
                Span::new(base + open, base + open + 2),
            ));
        };
        let inner = &body[open + 2..close];
        let (expr_text, format) = split_format(inner);
        let expr_base = base + open + 2;
        let tokens: Vec<_> = lex(expr_text, expr_base)
            .into_iter()
            .map(|t| (t.span.start as usize, t.tok, t.span.end as usize))
            .collect();
        if let Some((l, crate::syntax::token::Tok::Error(code, message), r)) = tokens
            .iter()
            .find(|(_, t, _)| matches!(t, crate::syntax::token::Tok::Error(..)))
        {
            return Err(Diagnostic::new(*code, message.clone(), Span::new(*l, *r)));
        }
        if tokens.is_empty() {
            return Err(Diagnostic::new(
                Code::E0101,
                "empty `{{ }}` in print template",
                Span::new(base + open, base + close + 2),
            ));
        }
        let expr = parse_expr(tokens, expr_base + expr_text.len())?;
        parts.push(TemplatePart::Hole(expr, format));
        rest = close + 2;
    }
    push_text(&mut parts, &body[rest..], base + rest)?;
    Ok(parts)
}

fn split_format(inner: &str) -> (&str, HoleFormat) {
    if let Some(colon) = inner.rfind(':') {
        let format = match inner[colon + 1..].trim() {
            "s" => Some(HoleFormat::Str),
            "d" => Some(HoleFormat::Int),
            "f" => Some(HoleFormat::Float),
            "any" => Some(HoleFormat::Any),
            _ => None,
        };
        if let Some(format) = format {
            return (&inner[..colon], format);
        }
    }
    (inner, HoleFormat::Any)
}

fn push_text(parts: &mut Vec<TemplatePart>, raw: &str, offset: usize) -> Result<(), Diagnostic> {
    if raw.is_empty() {
        return Ok(());
    }
    // Reuse the literal unescaper: it wants the text after the opening quote, closing quote included.
    let quoted = format!("{raw}\"");
    match unescape(&quoted) {
        Ok((text, _)) => {
            parts.push(TemplatePart::Text(text.into_owned()));
            Ok(())
        }
        Err((code, message, at)) => Err(Diagnostic::new(
            code,
            message,
            Span::new(offset + at.min(raw.len()), offset + raw.len()),
        )),
    }
}
