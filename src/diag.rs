//! Diagnostics: the error data every stage produces, and the one place that renders it (as text
//! with source snippets via codespan-reporting, or as JSON).

use crate::span::{LineIndex, Span};
use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};
use std::fmt;

/// The stable error codes of SPEC section 8 (plus E0105, resource limits of the front end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// Unexpected token or malformed syntax.
    E0101,
    /// Unterminated string or bracket.
    E0102,
    /// Bad indentation (a tab, or a continuation with nothing to attach to).
    E0103,
    /// Unsupported item: host code, `~proc`, unknown import.
    E0104,
    /// A front-end resource limit: source size, nesting depth, bindings, flow-state size.
    E0105,
    /// Unknown event.
    E0201,
    /// Unknown binding or input name.
    E0202,
    /// Unknown field.
    E0203,
    /// Type mismatch.
    E0204,
    /// Argument error: missing, unknown or duplicated.
    E0205,
    /// Unknown branch for this event.
    E0206,
    /// Branch not handled (not exhaustive).
    E0207,
    /// Shadowed binding.
    E0208,
    /// Subflow problem: no implementation, wrong result branch, recursion.
    E0209,
    /// Event not allowed in the scope (`EventDenied`).
    E0301,
    /// Unknown scope.
    E0302,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::E0101 => "E0101",
            Code::E0102 => "E0102",
            Code::E0103 => "E0103",
            Code::E0104 => "E0104",
            Code::E0105 => "E0105",
            Code::E0201 => "E0201",
            Code::E0202 => "E0202",
            Code::E0203 => "E0203",
            Code::E0204 => "E0204",
            Code::E0205 => "E0205",
            Code::E0206 => "E0206",
            Code::E0207 => "E0207",
            Code::E0208 => "E0208",
            Code::E0209 => "E0209",
            Code::E0301 => "E0301",
            Code::E0302 => "E0302",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parse or check error: a stable code, a lowercase message, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub span: Span,
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            span,
        }
    }
}

/// All the errors of one source, with the source text they point into.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{} error(s) in {name}, the first: {}", diagnostics.len(), diagnostics.first().map(|d| d.to_string()).unwrap_or_default())]
pub struct SourceErrors {
    pub name: String,
    pub text: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl SourceErrors {
    /// Line and column (1-based) of each diagnostic, in order.
    pub fn positions(&self) -> Vec<(Code, u32, u32)> {
        let index = LineIndex::new(&self.text);
        self.diagnostics
            .iter()
            .map(|d| {
                let at = index.line_col(&self.text, d.span.start);
                (d.code, at.line, at.column)
            })
            .collect()
    }

    /// Renders every diagnostic with a source snippet (`error[E0202]: ...`, ` --> file:line:col`).
    pub fn render(&self, color: bool) -> String {
        let file = SimpleFile::new(&self.name, &self.text);
        let mut buffer = if color {
            termcolor::Buffer::ansi()
        } else {
            termcolor::Buffer::no_color()
        };
        let config = term::Config::default();
        for diagnostic in &self.diagnostics {
            let range = clamp(diagnostic.span, self.text.len());
            let report = Report::error()
                .with_code(diagnostic.code.as_str())
                .with_message(&diagnostic.message)
                .with_labels(vec![Label::primary((), range)]);
            // Rendering into a memory buffer cannot fail for a valid range.
            let _ = term::emit(&mut buffer, &config, &file, &report);
        }
        String::from_utf8_lossy(buffer.as_slice()).into_owned()
    }

    /// `{"outcome":"invalid","errors":[{"code":..,"message":..,"line":..,"column":..}]}`
    pub fn to_json(&self) -> serde_json::Value {
        let index = LineIndex::new(&self.text);
        let errors: Vec<serde_json::Value> = self
            .diagnostics
            .iter()
            .map(|d| {
                let at = index.line_col(&self.text, d.span.start);
                serde_json::json!({
                    "code": d.code.as_str(),
                    "message": d.message,
                    "line": at.line,
                    "column": at.column,
                })
            })
            .collect();
        serde_json::json!({ "outcome": "invalid", "errors": errors })
    }
}

fn clamp(span: Span, len: usize) -> std::ops::Range<usize> {
    let start = (span.start as usize).min(len);
    let end = (span.end as usize).clamp(start, len);
    start..end
}

/// Renders one run-time error with a source snippet (`error[Overflow]: ...`).
pub fn render_runtime_error(
    name: &str,
    text: &str,
    code: &str,
    message: &str,
    span: Span,
    color: bool,
) -> String {
    let file = SimpleFile::new(name, text);
    let mut buffer = if color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    let report = Report::error()
        .with_code(code)
        .with_message(message)
        .with_labels(vec![Label::primary((), clamp(span, text.len()))]);
    let _ = term::emit(&mut buffer, &term::Config::default(), &file, &report);
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}
