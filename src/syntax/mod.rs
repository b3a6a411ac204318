//! The front end: source text to a syntax tree.
//!
//! `lexer` turns text into tokens, `layout` splits them into items and makes nesting explicit,
//! `parser` runs the lalrpop grammar on each item, `template` parses print templates.

pub mod ast;
mod layout;
mod lexer;
mod parser;
mod template;
pub mod token;

pub use template::{parse_template, HoleFormat, TemplatePart};

use crate::diag::{Code, Diagnostic};
use crate::limits::FrontEndLimits;
use crate::span::Span;

/// Parses a whole source. Every syntax error of every item is reported; items with errors are
/// left out of the tree.
pub fn parse(source: &str, limits: &FrontEndLimits) -> (ast::SourceFile, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    if source.len() > limits.max_source_bytes {
        diagnostics.push(Diagnostic::new(
            Code::E0105,
            format!(
                "source is {} bytes, more than the limit of {}",
                source.len(),
                limits.max_source_bytes
            ),
            Span::new(0, 0),
        ));
        return (ast::SourceFile::default(), diagnostics);
    }
    let tokens = lexer::lex(source, 0);
    let items = layout::layout(tokens, limits, &mut diagnostics);
    let mut file = ast::SourceFile::default();
    for item in items {
        if let Some(item) = parser::parse_item(item, &mut diagnostics) {
            file.items.push(item);
        }
    }
    (file, diagnostics)
}
