//! The front end: source text to a syntax tree.
//!
//! `lexer` turns text into tokens, `layout` splits them into items and makes nesting explicit,
//! `parser` runs the lalrpop grammar on each item, `template` parses print templates; `text`
//! shows a syntax tree as text.

pub mod ast;
mod layout;
mod lexer;
mod parser;
pub(crate) use parser::MAX_EXPR_DEPTH;
mod template;
pub mod text;
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
    // The items laid out a second time, made at the first item the fast parser rejects: the
    // table-driven parser reports its error from the same tokens.
    let mut again: Option<Vec<Option<layout::ItemTokens>>> = None;
    for (k, item) in items.into_iter().enumerate() {
        let item = match parser::parse_item_fast(item) {
            Ok(Some(parsed)) => {
                file.items.push(parsed);
                continue;
            }
            Err(item) => item,
            Ok(None) => {
                let again = again.get_or_insert_with(|| {
                    let mut ignored = Vec::new();
                    layout::layout(lexer::lex(source, 0), limits, &mut ignored)
                        .into_iter()
                        .map(Some)
                        .collect()
                });
                again[k]
                    .take()
                    .expect("laying out the same source again gives the same items")
            }
        };
        if let Some(item) = parser::parse_item(item, &mut diagnostics) {
            file.items.push(item);
        }
    }
    (file, diagnostics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Vec<(std::path::PathBuf, String)> {
        let mut out = Vec::new();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut pending = vec![
            root.join("tests/flows"),
            root.join("examples"),
            root.join("fuzz/seeds"),
        ];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("a test directory") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "kz") {
                    let text = std::fs::read_to_string(&path).expect("a flow file");
                    out.push((path, text));
                }
            }
        }
        assert!(out.len() > 100, "the flow tests are found");
        out
    }

    /// The recursive-ascent parser is only a faster route: on every item of the test flows, every
    /// prefix of it and every variant with one token left out, it accepts exactly what the
    /// table-driven parser accepts, with the same tree.
    #[test]
    fn fast_and_table_parsers_agree() {
        let limits = FrontEndLimits::default();
        let agree = |item: layout::ItemTokens, at: &std::path::Path| {
            let mut diagnostics = Vec::new();
            let table = parser::parse_item(item.clone(), &mut diagnostics);
            let fast = parser::parse_item_fast(item).ok().flatten();
            assert_eq!(fast, table, "{}", at.display());
            assert_eq!(table.is_none(), !diagnostics.is_empty());
            table.is_some()
        };
        let (mut compared, mut accepted) = (0, 0);
        for (path, text) in sources() {
            let mut ignored = Vec::new();
            for item in layout::layout(lexer::lex(&text, 0), &limits, &mut ignored) {
                let n = item.tokens.len();
                if n > parser::FAST_MAX_TOKENS {
                    assert!(parser::parse_item_fast(item).is_err());
                    continue;
                }
                let mut variants = vec![item.clone()];
                for k in 0..n {
                    let mut prefix = item.clone();
                    prefix.tokens.truncate(k);
                    variants.push(prefix);
                    let mut without = item.clone();
                    without.tokens.remove(k);
                    variants.push(without);
                }
                for variant in variants {
                    accepted += usize::from(agree(variant, &path));
                    compared += 1;
                }
            }
        }
        assert!(
            compared > 3000 && accepted > 300,
            "{compared} compared, {accepted} accepted"
        );
    }

    /// The recursive-ascent parser recurses once per symbol of the parse stack; the token bound
    /// keeps that within a small native stack even for the deepest items it accepts (unary
    /// operators and `if` chains, also as operands, which nest without brackets), in debug builds too.
    #[test]
    fn fast_parser_stack_is_bounded() {
        let n = parser::FAST_MAX_TOKENS;
        let deepest = [
            format!("~f(a: {}1)", "- ".repeat(n - 7)),
            format!("~f(a: {}1)", "not ".repeat(n - 7)),
            format!("~f(a: {}1)", "if (x) 1 else ".repeat((n - 7) / 6)),
            // Conditionals as operands nest through every level of the open expressions.
            format!("~f(a: {}1)", "1 + if (x) 1 else ".repeat((n - 7) / 8)),
            format!("~f(a: {}1)", "- if (x) 1 else ".repeat((n - 7) / 7)),
        ];
        for source in deepest {
            let tokens = lexer::lex(&source, 0).len();
            assert!(tokens <= n && tokens + 7 > n, "{tokens} tokens");
            std::thread::Builder::new()
                .stack_size(1 << 20)
                .spawn(move || parse(&source, &FrontEndLimits::default()))
                .expect("a thread")
                .join()
                .expect("parsed within 1 MiB of stack");
        }
    }
}
