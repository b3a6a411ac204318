//! Diagnostics: the error data every stage produces, and the one place that renders it (as text
//! with source snippets via codespan-reporting, or as the JSON of the command line and the server).

use crate::span::{LineIndex, Span};
use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::{Error as FilesError, Files};
use codespan_reporting::term::{self, termcolor};
use std::fmt;
use std::ops::Range;

/// How many diagnostics of one source are rendered or put in its JSON; the rest are counted.
pub const MAX_REPORTED_DIAGNOSTICS: usize = 100;
/// A backtick-quoted piece of a message (a name, a token) longer than this many characters is cut.
pub const MAX_QUOTED_CHARS: usize = 64;
/// A message longer than this many characters is cut.
pub const MAX_MESSAGE_CHARS: usize = 400;
/// A snippet line longer than this many characters is shown as a window of this width.
pub const SNIPPET_LINE_CHARS: usize = 120;
/// Characters a snippet window shows before the place it points at.
const SNIPPET_CONTEXT_CHARS: usize = 40;
/// A span over more lines than this shows only its first line.
const SNIPPET_MAX_LINES: usize = 8;
const ELLIPSIS: &str = "…";

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
    /// Unreachable pattern: an empty range, or one the continuations before it already cover.
    E0210,
    /// A handle used after the step that released it, or released twice on one path (SPEC 12).
    E0211,
    /// The flow can create an obligation whose discharging event the scope does not allow.
    E0212,
    /// A way the source's value can end is outside the shape the caller asked for (SPEC 13).
    E0213,
    /// The shape the caller asked for names no event (SPEC 13).
    E0214,
    /// Event not allowed in the scope (`EventDenied`).
    E0301,
    /// Unknown scope.
    E0302,
    /// Not a compiled flow (wrong magic bytes), or one made by another format version.
    E0401,
    /// A compiled flow that is truncated or corrupt (the message names the byte offset), or whose
    /// program fails verification.
    E0402,
    /// A host event of a compiled flow whose signature, cost or implementation differs from the
    /// registry's (the message names the event and both signatures).
    E0403,
    /// A host event (or the releasing event of an obligation state) that the compiled flow's
    /// scope no longer allows, or a scope the registry does not have or the load did not ask for.
    E0404,
    /// Load options that do not fit the compiled flow: an input of another type, a shape or
    /// mocks other than those it was compiled with.
    E0405,
}

impl Code {
    /// The code as SPEC 8 writes it (`"E0201"`).
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
            Code::E0210 => "E0210",
            Code::E0211 => "E0211",
            Code::E0212 => "E0212",
            Code::E0213 => "E0213",
            Code::E0214 => "E0214",
            Code::E0301 => "E0301",
            Code::E0302 => "E0302",
            Code::E0401 => "E0401",
            Code::E0402 => "E0402",
            Code::E0403 => "E0403",
            Code::E0404 => "E0404",
            Code::E0405 => "E0405",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most this many notes are kept on one diagnostic (more are dropped).
pub const MAX_NOTES: usize = 4;
/// A line of a note's quoted source (the two-line form of a one-line chain) longer than this many
/// characters is cut.
pub const MAX_NOTE_LINE_CHARS: usize = 120;

/// One parse or check error: a stable code, a lowercase message, and where; with notes that
/// explain it or suggest a fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Diagnostic {
    /// The stable code (SPEC 8); messages may improve between versions.
    pub code: Code,
    /// What is wrong, for people.
    pub message: String,
    /// Where, in the source text of the [`SourceErrors`] holding it.
    pub span: Span,
    /// What follows the message: `help` (a fix: "did you mean `each`?") and `note` (why).
    pub notes: Vec<Note>,
}

/// What a note of a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoteKind {
    /// A fix to try (rendered `= help: ...`, in JSON `"kind": "help"`).
    Help,
    /// An explanation (rendered `= note: ...`, in JSON `"kind": "note"`).
    Note,
}

impl NoteKind {
    /// `help` or `note`, as rendered and in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Help => "help",
            NoteKind::Note => "note",
        }
    }
}

/// A line of help or explanation attached to a diagnostic. Its text may hold several lines (a
/// snippet of source to write instead), each of bounded length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Help or explanation.
    pub kind: NoteKind,
    /// The text (possibly several lines, each bounded).
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic; the message is cut to a bounded size ([`MAX_MESSAGE_CHARS`]) so that no
    /// source, however long its names, makes its diagnostics large.
    pub fn new(code: Code, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            code,
            message: shorten_message(message.into()),
            span,
            notes: Vec::new(),
        }
    }

    /// Adds a `help` note (a fix to try), cut like a message ([`MAX_NOTE_LINE_CHARS`] a line).
    pub fn with_help(self, message: impl Into<String>) -> Diagnostic {
        self.with_note(NoteKind::Help, message)
    }

    /// Adds a note of `kind`, cut like a message line by line ([`MAX_NOTE_LINE_CHARS`]); past
    /// [`MAX_NOTES`] notes it is dropped.
    pub fn with_note(mut self, kind: NoteKind, message: impl Into<String>) -> Diagnostic {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(Note {
                kind,
                message: shorten_note(message.into()),
            });
        }
        self
    }

    /// The heap bytes it holds (for caches that bound their memory).
    pub fn heap_bytes(&self) -> usize {
        self.message.capacity()
            + self.notes.capacity() * std::mem::size_of::<Note>()
            + self
                .notes
                .iter()
                .map(|n| n.message.capacity())
                .sum::<usize>()
    }
}

/// Cuts a note: its first line like a message ([`shorten_message`]); each further line (quoted
/// source) to [`MAX_NOTE_LINE_CHARS`] characters, and at most 8 of them.
pub(crate) fn shorten_note(message: String) -> String {
    if !message.contains('\n') {
        return shorten_message(message);
    }
    let mut lines = message.split('\n');
    let mut out = shorten_message(lines.next().unwrap_or_default().to_string());
    for line in lines.take(8) {
        out.push('\n');
        match line.char_indices().nth(MAX_NOTE_LINE_CHARS) {
            Some(_) => {
                let keep = line
                    .char_indices()
                    .nth(MAX_NOTE_LINE_CHARS - 1)
                    .map_or(line.len(), |(at, _)| at);
                out.push_str(&line[..keep]);
                out.push_str(ELLIPSIS);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Cuts every backtick-quoted piece of `message` (names and tokens of the source, by the style of
/// every message) to [`MAX_QUOTED_CHARS`] characters and the whole to [`MAX_MESSAGE_CHARS`],
/// marking each cut with `…`.
pub(crate) fn shorten_message(message: String) -> String {
    if message.len() <= MAX_QUOTED_CHARS {
        return message;
    }
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS * 4));
    for (i, piece) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let quoted = i % 2 == 1;
        match piece.char_indices().nth(MAX_QUOTED_CHARS) {
            Some((cut, _)) if quoted => {
                let keep = piece
                    .char_indices()
                    .nth(MAX_QUOTED_CHARS - 1)
                    .map_or(cut, |(at, _)| at);
                out.push_str(&piece[..keep]);
                out.push_str(ELLIPSIS);
            }
            _ => out.push_str(piece),
        }
    }
    if let Some((cut, _)) = out.char_indices().nth(MAX_MESSAGE_CHARS) {
        let keep = out
            .char_indices()
            .nth(MAX_MESSAGE_CHARS - 1)
            .map_or(cut, |(at, _)| at);
        out.truncate(keep);
        out.push_str(ELLIPSIS);
    }
    out
}

/// All the errors of one source, with the source text they point into.
///
/// ```
/// use koru_jit::{Code, CompileOptions, Engine, Registry};
/// let engine = Engine::new(Registry::with_std());
/// let source = "~std.io:println(text: nmae)\n~std.io:prinltn(text: \"x\")\n";
/// let Err(errors) = engine.compile("t.kz", source, &CompileOptions::default()) else {
///     panic!("the source has errors")
/// };
/// assert_eq!(errors.positions(), [(Code::E0202, 1, 23), (Code::E0201, 2, 2)]);
/// let text = errors.render(false);
/// assert!(text.contains("t.kz:1:23"), "{text}");
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[error("{} error(s) in {name}, the first: {}", diagnostics.len(), diagnostics.first().map(|d| d.to_string()).unwrap_or_default())]
pub struct SourceErrors {
    /// The source's name, as given to [`Engine::compile`](crate::Engine::compile).
    pub name: String,
    /// The source text the spans point into.
    pub text: String,
    /// Every diagnostic of the source (SPEC 6 reports all of them, not only the first), up to
    /// the checker's 1,000: past that the rest are counted, not kept, and an E0105 at the start
    /// of the source, first here, gives the total (a 60 KB source can make millions).
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

    /// Renders the first [`MAX_REPORTED_DIAGNOSTICS`] diagnostics with a source snippet each
    /// (`error[E0202]: ...`, ` --> file:line:col`; a long line shown as a window around the
    /// span), then one line counting the rest.
    pub fn render(&self, color: bool) -> String {
        let mut buffer = if color {
            termcolor::Buffer::ansi()
        } else {
            termcolor::Buffer::no_color()
        };
        let index = LineIndex::new(&self.text);
        for diagnostic in self.diagnostics.iter().take(MAX_REPORTED_DIAGNOSTICS) {
            let report = Report::error()
                .with_code(diagnostic.code.as_str())
                .with_message(&diagnostic.message)
                .with_notes(
                    diagnostic
                        .notes
                        .iter()
                        .map(|n| format!("{}: {}", n.kind.as_str(), n.message))
                        .collect(),
                );
            emit(
                &mut buffer,
                &self.name,
                &self.text,
                &index,
                report,
                diagnostic.span,
            );
        }
        let mut out = String::from_utf8_lossy(buffer.as_slice()).into_owned();
        let more = self.unreported();
        if more > 0 {
            out.push_str(&format!(
                "{more} more error{} (only the first {MAX_REPORTED_DIAGNOSTICS} are shown)\n",
                if more == 1 { "" } else { "s" }
            ));
        }
        out
    }

    /// How many diagnostics [`SourceErrors::render`] and the JSON form leave out.
    pub fn unreported(&self) -> usize {
        self.diagnostics
            .len()
            .saturating_sub(MAX_REPORTED_DIAGNOSTICS)
    }

    /// `{"outcome":"invalid","errors":[{"code":..,"message":..,"line":..,"column":..}]}` with the
    /// first [`MAX_REPORTED_DIAGNOSTICS`] diagnostics, and `"more_errors": N` when there are more.
    /// A diagnostic with notes has `"notes":[{"kind":"help","message":..}]` too.
    /// Hidden from the docs (feature `json`): the wire format of the command line's `--json` and
    /// of the server, not embedder API ([`SourceErrors::diagnostics`] holds the same data).
    #[cfg(feature = "json")]
    #[doc(hidden)]
    pub fn to_json(&self) -> serde_json::Value {
        let index = LineIndex::new(&self.text);
        let errors: Vec<serde_json::Value> = self
            .diagnostics
            .iter()
            .take(MAX_REPORTED_DIAGNOSTICS)
            .map(|d| {
                let at = index.line_col(&self.text, d.span.start);
                let mut json = serde_json::json!({
                    "code": d.code.as_str(),
                    "message": d.message,
                    "line": at.line,
                    "column": at.column,
                });
                if !d.notes.is_empty() {
                    json["notes"] = d
                        .notes
                        .iter()
                        .map(|n| serde_json::json!({ "kind": n.kind.as_str(), "message": n.message }))
                        .collect();
                }
                json
            })
            .collect();
        let mut json = serde_json::json!({ "outcome": "invalid", "errors": errors });
        let more = self.unreported();
        if more > 0 {
            json["more_errors"] = more.into();
        }
        json
    }
}

fn clamp(span: Span, len: usize) -> Range<usize> {
    let start = (span.start as usize).min(len);
    let end = (span.end as usize).clamp(start, len);
    start..end
}

/// Renders one diagnostic into `buffer`: `report` (its code, message and notes) with a label on
/// `span`, its snippet an [`Excerpt`] of `text`.
fn emit(
    buffer: &mut termcolor::Buffer,
    name: &str,
    text: &str,
    index: &LineIndex,
    report: Report<()>,
    span: Span,
) {
    let excerpt = Excerpt::new(name, text, index, clamp(span, text.len()));
    let report = report.with_labels(vec![Label::primary((), excerpt.label.clone())]);
    // Rendering into a memory buffer cannot fail: the excerpt's label lies inside its text.
    let _ = term::emit(buffer, &term::Config::default(), &excerpt, &report);
}

/// What one snippet shows of a source: the lines its span covers (only the first when they are
/// more than [`SNIPPET_MAX_LINES`]), each longer than [`SNIPPET_LINE_CHARS`] characters cut to a
/// window of that width around the span's start (its end on the last line), with `…` where text
/// is left out. Line numbers and columns are the source's own. Building one costs the size of the
/// window (and counting the characters before it on its line), never the size of the source.
struct Excerpt<'a> {
    name: &'a str,
    text: String,
    lines: Vec<ExcerptLine>,
    /// The span, within `text`.
    label: Range<usize>,
}

struct ExcerptLine {
    /// Where the line starts in the excerpt's text.
    start: usize,
    /// Its 1-based number in the source.
    number: usize,
    /// Bytes of the `…` that opens it (0 if it starts where the source line does).
    prefix: usize,
    /// The source column (1-based) of its first shown character.
    column: usize,
}

impl<'a> Excerpt<'a> {
    fn new(name: &'a str, source: &str, index: &LineIndex, span: Range<usize>) -> Excerpt<'a> {
        let first = index.line_of(span.start);
        let mut last = index.line_of(span.end.saturating_sub(1).max(span.start));
        let mut span = span;
        if last - first >= SNIPPET_MAX_LINES {
            last = first;
            span.end = index.line_range(source, first).end.max(span.start);
        }
        let mut excerpt = Excerpt {
            name,
            text: String::new(),
            lines: Vec::new(),
            label: 0..0,
        };
        for line in first..=last {
            let range = index.line_range(source, line);
            let focus = if line == first {
                span.start
            } else if line == last {
                span.end
            } else {
                range.start
            };
            let window = window(source, range.clone(), focus.clamp(range.start, range.end));
            let start = excerpt.text.len();
            let prefix = if window.start > range.start {
                ELLIPSIS.len()
            } else {
                0
            };
            let column = index.line_col(source, window.start as u32).column as usize;
            let shown = start + prefix;
            let at = |offset: usize| shown + offset.clamp(window.start, window.end) - window.start;
            if line == first {
                excerpt.label.start = at(span.start);
            }
            if line == last {
                excerpt.label.end = at(span.end).max(excerpt.label.start);
            }
            if prefix > 0 {
                excerpt.text.push_str(ELLIPSIS);
            }
            excerpt.text.push_str(&source[window.clone()]);
            if window.end < range.end {
                excerpt.text.push_str(ELLIPSIS);
            }
            excerpt.text.push('\n');
            excerpt.lines.push(ExcerptLine {
                start,
                number: line + 1,
                prefix,
                column,
            });
        }
        excerpt
    }
}

/// The part of the line `range` of `text` a snippet shows: all of it if it has at most
/// [`SNIPPET_LINE_CHARS`] characters, else that many from [`SNIPPET_CONTEXT_CHARS`] before
/// `focus` (fewer before when the line ends sooner).
fn window(text: &str, range: Range<usize>, focus: usize) -> Range<usize> {
    let line = &text[range.clone()];
    if line.len() <= SNIPPET_LINE_CHARS || line.chars().nth(SNIPPET_LINE_CHARS).is_none() {
        return range;
    }
    let back = |from: usize, chars: usize| {
        text[range.start..from]
            .char_indices()
            .rev()
            .take(chars)
            .last()
            .map_or(from, |(at, _)| range.start + at)
    };
    let forward = |from: usize, chars: usize| {
        text[from..range.end]
            .char_indices()
            .nth(chars)
            .map_or(range.end, |(at, _)| from + at)
    };
    let start = back(focus, SNIPPET_CONTEXT_CHARS);
    let end = forward(start, SNIPPET_LINE_CHARS);
    if end == range.end {
        back(range.end, SNIPPET_LINE_CHARS)..range.end
    } else {
        start..end
    }
}

impl<'a> Files<'a> for Excerpt<'_> {
    type FileId = ();
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, _: ()) -> Result<&'a str, FilesError> {
        Ok(self.name)
    }

    fn source(&'a self, _: ()) -> Result<&'a str, FilesError> {
        Ok(&self.text)
    }

    fn line_index(&'a self, _: (), byte_index: usize) -> Result<usize, FilesError> {
        Ok(self
            .lines
            .partition_point(|line| line.start <= byte_index)
            .saturating_sub(1))
    }

    fn line_number(&'a self, _: (), line_index: usize) -> Result<usize, FilesError> {
        self.lines
            .get(line_index)
            .map(|line| line.number)
            .ok_or(FilesError::LineTooLarge {
                given: line_index,
                max: self.lines.len().saturating_sub(1),
            })
    }

    fn column_number(
        &'a self,
        _: (),
        line_index: usize,
        byte_index: usize,
    ) -> Result<usize, FilesError> {
        let line = self.lines.get(line_index).ok_or(FilesError::LineTooLarge {
            given: line_index,
            max: self.lines.len().saturating_sub(1),
        })?;
        let shown = (line.start + line.prefix).min(self.text.len());
        let before = self
            .text
            .get(shown..byte_index.max(shown))
            .map_or(0, |s| s.chars().count());
        Ok(line.column + before)
    }

    fn line_range(&'a self, _: (), line_index: usize) -> Result<Range<usize>, FilesError> {
        let start = self
            .lines
            .get(line_index)
            .ok_or(FilesError::LineTooLarge {
                given: line_index,
                max: self.lines.len().saturating_sub(1),
            })?
            .start;
        let end = self
            .lines
            .get(line_index + 1)
            .map_or(self.text.len(), |next| next.start);
        Ok(start..end)
    }
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
    let mut buffer = if color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    let message = shorten_message(message.to_string());
    emit(
        &mut buffer,
        name,
        text,
        &LineIndex::new(text),
        Report::error().with_code(code).with_message(message),
        span,
    );
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str, spans: &[(usize, usize)]) -> SourceErrors {
        SourceErrors {
            name: "t".into(),
            text: text.into(),
            diagnostics: spans
                .iter()
                .map(|&(s, e)| Diagnostic::new(Code::E0202, "m", Span::new(s, e)))
                .collect(),
        }
    }

    #[test]
    fn quoted_names_and_long_messages_are_cut() {
        let name = "é".repeat(1000);
        let message = shorten_message(format!("unknown name `{name}` in `x`, see `{name}`"));
        let cut = format!("`{}…`", "é".repeat(MAX_QUOTED_CHARS - 1));
        assert_eq!(message, format!("unknown name {cut} in `x`, see {cut}"));
        assert_eq!(
            shorten_message("unknown name `x`".into()),
            "unknown name `x`"
        );
        let long = shorten_message("word ".repeat(1000));
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS);
        assert!(long.ends_with('…'));
        assert_eq!(
            Diagnostic::new(
                Code::E0201,
                format!("unknown event `{name}`"),
                Span::default()
            )
            .message
            .chars()
            .count(),
            "unknown event ``".len() + MAX_QUOTED_CHARS
        );
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_with_real_line_and_column() {
        // Multi-byte characters everywhere, so that every cut must fall on a char boundary.
        let line = "ü".repeat(5000);
        let text = format!("first\n{line}x{line}\nlast\n");
        let at = text.find('x').unwrap();
        let rendered = errors(&text, &[(at, at + 1)]).render(false);
        assert!(rendered.contains("┌─ t:2:5001\n"), "{rendered}");
        let shown = format!(
            "2 │ …{}x{}…\n",
            "ü".repeat(SNIPPET_CONTEXT_CHARS),
            "ü".repeat(SNIPPET_LINE_CHARS - SNIPPET_CONTEXT_CHARS - 1)
        );
        assert!(rendered.contains(&shown), "{rendered}");
        assert!(
            rendered.contains(&format!("  │ {}^\n", " ".repeat(SNIPPET_CONTEXT_CHARS + 1))),
            "{rendered}"
        );
        assert!(rendered.len() < 1000, "{rendered}");
    }

    #[test]
    fn spans_at_the_ends_of_long_lines_and_texts_render() {
        let text = "a".repeat(10_000);
        for (s, e) in [
            (0, 0),
            (0, 10_000),
            (9_999, 10_000),
            (10_000, 10_000),
            (50, 20_000),
        ] {
            let rendered = errors(&text, &[(s, e)]).render(false);
            assert!(rendered.len() < 1000, "{s}..{e}: {rendered}");
            assert!(rendered.contains('^'), "{s}..{e}: {rendered}");
        }
        // The line ends within reach of the span: the window shows the line's end.
        let rendered = errors(&text, &[(9_990, 9_995)]).render(false);
        assert!(
            rendered.contains(&format!("1 │ …{}\n", "a".repeat(SNIPPET_LINE_CHARS))),
            "{rendered}"
        );
        assert!(rendered.contains("┌─ t:1:9991\n"), "{rendered}");
    }

    #[test]
    fn a_span_over_many_lines_shows_its_first_line() {
        let text = "~event add {\n".to_string() + &"  x: i64,\n".repeat(50) + "}\n";
        let rendered = errors(&text, &[(0, text.len() - 1)]).render(false);
        assert!(rendered.contains("1 │ ~event add {\n"), "{rendered}");
        assert!(!rendered.contains("x: i64"), "{rendered}");
        // A short multi-line span keeps codespan's multi-line rendering.
        let rendered = errors("ab\ncd\n", &[(1, 4)]).render(false);
        assert!(
            rendered.contains("1 │   ab\n  │ ╭──^\n2 │ │ cd\n  │ ╰─^\n"),
            "{rendered}"
        );
    }

    #[test]
    fn only_the_first_diagnostics_are_reported() {
        let text = "x".repeat(1000);
        let spans: Vec<(usize, usize)> = (0..1000).map(|i| (i, i + 1)).collect();
        let all = errors(&text, &spans);
        let rendered = all.render(false);
        assert_eq!(
            rendered.matches("error[E0202]").count(),
            MAX_REPORTED_DIAGNOSTICS
        );
        assert!(rendered.ends_with("900 more errors (only the first 100 are shown)\n"));
        let one = errors(&text, &spans[..1]);
        assert!(!one.render(false).contains("more error"));
        #[cfg(feature = "json")]
        {
            let json = all.to_json();
            assert_eq!(
                json["errors"].as_array().unwrap().len(),
                MAX_REPORTED_DIAGNOSTICS
            );
            assert_eq!(json["more_errors"], 900);
            assert!(one.to_json().get("more_errors").is_none());
        }
    }

    #[test]
    fn notes_are_rendered_and_in_the_json_and_bounded() {
        let diagnostic = Diagnostic::new(Code::E0201, "unknown event `ad`", Span::new(1, 3))
            .with_help("did you mean `add`?")
            .with_note(
                NoteKind::Note,
                format!("two lines:\n{}\nend", "x".repeat(1000)),
            );
        let all = SourceErrors {
            name: "t".into(),
            text: "~ad()\n".into(),
            diagnostics: vec![diagnostic],
        };
        let rendered = all.render(false);
        assert!(
            rendered.contains("  = help: did you mean `add`?\n  = note: two lines:\n"),
            "{rendered}"
        );
        let note = &all.diagnostics[0].notes[1].message;
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines.len(), 3, "{note}");
        assert_eq!(lines[1].chars().count(), MAX_NOTE_LINE_CHARS);
        assert!(lines[1].ends_with('…') && lines[2] == "end");
        assert_eq!(
            all.to_json()["errors"][0]["notes"][0],
            serde_json::json!({ "kind": "help", "message": "did you mean `add`?" })
        );
        // Many notes, many lines: bounded.
        let mut many = Diagnostic::new(Code::E0201, "m", Span::default());
        for _ in 0..10 {
            many = many.with_help("y\n".repeat(100));
        }
        assert_eq!(many.notes.len(), MAX_NOTES);
        assert!(many.notes.iter().all(|n| n.message.lines().count() <= 9));
    }

    #[test]
    fn runtime_errors_render_a_window_too() {
        let text = format!("~std.io:println(text: {} + 1)", "9".repeat(100_000));
        let rendered = render_runtime_error(
            "t",
            &text,
            "Overflow",
            "overflow",
            Span::new(22, 100_026),
            false,
        );
        assert!(rendered.len() < 1000, "{rendered}");
        assert!(
            rendered.contains("error[Overflow]: overflow\n  ┌─ t:1:23\n"),
            "{rendered}"
        );
    }
}
