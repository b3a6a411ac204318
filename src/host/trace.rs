//! Traces (SPEC 13): one line per dispatch, written to a [`TraceSink`] given in
//! [`RunLimits::trace`](crate::RunLimits::trace), for a flow compiled with tracing
//! ([`CompileOptions::trace`](crate::CompileOptions::trace)).
//!
//! The line of a dispatch is `TRACE {event} -> {branch} {payload}`: the event as the flow named
//! it, the branch it returned, and the payload as JSON (a struct payload as an object of its
//! fields in declared order, an identity payload as its scalar, nothing for an empty payload):
//!
//! ```text
//! TRACE users.get -> found {"name":"ada"}
//! TRACE add -> sum 3
//! TRACE users.get -> missing
//! TRACE std.io:println
//! ```
//!
//! A void event (the unnamed branch `""`) has no `->` part. A subflow call is a dispatch too (it
//! costs fuel): its line comes when its body ends, after the lines of what the body dispatched.
//! A mocked event is marked: `TRACE users.get (mock) -> found {"name":"test"}`. With
//! [`TraceLevel::All`] the builtins and `yield`s have lines too, in the same form with the
//! builtin as the event: `TRACE for -> each 3` (each iteration), `TRACE for -> done`,
//! `TRACE while -> body`, `TRACE if -> then`, `TRACE match -> matched 404`,
//! `TRACE capture -> as {"sum":0}` and `TRACE capture -> captured {"sum":6}`, and
//! `TRACE repeat (yield) -> each 0` for a `yield` of subflow `repeat`.
//!
//! A line is written when the event returns its branch, before its continuation runs; a dispatch
//! that fails or is refused (a limit, a host error) writes none. Lines never contain a line
//! break (JSON escapes it). Both tiers write the same lines through the same code; the trace is
//! bounded by [`RunLimits::max_trace_lines`](crate::RunLimits::max_trace_lines) and
//! [`RunLimits::max_trace_bytes`](crate::RunLimits::max_trace_bytes): the first line that does
//! not fit is not written, [`TraceSink::cut`] is called once, and the run goes on untraced (a
//! trace never changes what a run does).

use super::stdlib::BoundedText;
use crate::ir::{Program, ValueId, ValuePayload};
use crate::layout::Layout;
use crate::state::RunState;
use crate::types::Type;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What a flow is compiled to trace (part of the compile options and of the cache key: a flow
/// compiled with [`TraceLevel::Off`] has no trace code at all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TraceLevel {
    /// No tracing (the default): the flow runs exactly as without this feature.
    #[default]
    Off,
    /// A line per dispatch: host events (the standard library's too) and subflow calls.
    Dispatches,
    /// Also a line per builtin branch taken (`for`, `while`, `if`, `match`, `capture`) and per
    /// `yield`.
    All,
}

/// Where a run's trace lines go. Set for one run in [`RunLimits::trace`](crate::RunLimits::trace);
/// [`CaptureTrace`] keeps the lines, [`StderrTrace`] prints them.
///
/// A panic in the sink stops the run's trace (as a cut would, without calling [`TraceSink::cut`])
/// and nothing else: the run goes on.
///
/// ```
/// use koru_jit::{CaptureTrace, CompileOptions, Engine, Inputs, Registry, RunLimits, TraceLevel};
/// use std::sync::Arc;
/// let mut registry = Registry::with_std();
/// registry.event("~event add { a: i64, b: i64 } | sum i64", |a: i64, b: i64| a + b).unwrap();
/// let flow = Engine::new(registry)
///     .compile("t", "~add(a: 1, b: 2)", &CompileOptions::default().trace(TraceLevel::Dispatches))
///     .unwrap();
/// let trace = Arc::new(CaptureTrace::new());
/// let limits = RunLimits { trace: Some(trace.clone()), ..RunLimits::default() };
/// flow.run(&Inputs::new(), &limits).unwrap();
/// assert_eq!(trace.take_lines(), ["TRACE add -> sum 3"]);
/// assert!(!trace.was_cut());
/// ```
pub trait TraceSink: Send + Sync {
    /// One trace line, without a line break.
    fn line(&self, line: &str);
    /// The run's trace reached its bound: the line that did not fit and all later ones are
    /// dropped. Called at most once per run.
    fn cut(&self) {}
}

impl std::fmt::Debug for dyn TraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceSink")
    }
}

/// Prints each line to the process's stderr (the command line's `--trace`), and
/// `TRACE cut: ...` when the trace reached its bound.
#[derive(Debug, Default)]
pub struct StderrTrace;

impl TraceSink for StderrTrace {
    fn line(&self, line: &str) {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(line.as_bytes());
        let _ = stderr.write_all(b"\n");
    }

    fn cut(&self) {
        let _ = std::io::stderr()
            .lock()
            .write_all(b"TRACE cut: the trace reached its bound\n");
    }
}

/// Keeps the lines of the runs that write to it, for embedders and tests.
#[derive(Debug, Default)]
pub struct CaptureTrace {
    lines: Mutex<Vec<String>>,
    cut: AtomicBool,
}

impl CaptureTrace {
    /// An empty sink.
    pub fn new() -> CaptureTrace {
        CaptureTrace::default()
    }

    /// Takes the lines kept so far (and clears [`CaptureTrace::was_cut`]).
    pub fn take_lines(&self) -> Vec<String> {
        self.cut.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether a run's trace was cut at its bound since the last [`CaptureTrace::take_lines`].
    pub fn was_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

impl TraceSink for CaptureTrace {
    fn line(&self, line: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_string());
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
}

/// What follows the event's name in a line: nothing, ` (mock)` or ` (yield)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TraceMarker {
    None = 0,
    Mock = 1,
    Yield = 2,
}

impl TraceMarker {
    pub fn of_mocked(mocked: bool) -> TraceMarker {
        if mocked {
            TraceMarker::Mock
        } else {
            TraceMarker::None
        }
    }

    pub fn from_code(code: u64) -> TraceMarker {
        match code {
            1 => TraceMarker::Mock,
            2 => TraceMarker::Yield,
            _ => TraceMarker::None,
        }
    }

    fn text(self) -> &'static str {
        match self {
            TraceMarker::None => "",
            TraceMarker::Mock => " (mock)",
            TraceMarker::Yield => " (yield)",
        }
    }
}

/// Writes the line of `event` (with `marker`) returning `value`, whose payload is in the flow
/// state, to the run's trace sink, within the run's trace bounds. Both tiers call this (native
/// code through `jit::runtime::helper_trace`, with the payload written to the flow state).
pub(crate) fn write_line(
    state: &mut RunState,
    program: &Program,
    layout: &Layout,
    event: &str,
    marker: TraceMarker,
    value: ValueId,
) {
    let Some(sink) = state.trace else { return };
    if state.trace_cut {
        return;
    }
    // SAFETY: `trace` is set for the whole run to a sink that outlives it (see `RunState::trace`).
    let sink = unsafe { &*sink };
    if state.trace_lines >= state.trace_line_limit {
        cut(state, sink);
        return;
    }
    let Some(desc) = program.values.get(value.0 as usize) else {
        return;
    };
    let room = usize::try_from(state.trace_byte_limit - state.trace_bytes).unwrap_or(usize::MAX);
    let mut text = std::mem::take(&mut state.trace_text);
    let mut line = BoundedText::new(&mut text, room);
    line.push("TRACE ");
    line.push(event);
    line.push(marker.text());
    let void = desc.branch.is_empty() && matches!(desc.payload, ValuePayload::Empty);
    if !void {
        line.push(" -> ");
        line.push(&desc.branch);
        match &desc.payload {
            ValuePayload::Empty => {}
            ValuePayload::Identity(local) => {
                line.push(" ");
                push_json(&mut line, state, layout, *local);
            }
            ValuePayload::Struct(fields) => {
                line.push(" {");
                for (k, (name, local)) in fields.iter().enumerate() {
                    if k > 0 {
                        line.push(",");
                    }
                    push_json_str(&mut line, name);
                    line.push(":");
                    push_json(&mut line, state, layout, *local);
                }
                line.push("}");
            }
        }
    }
    if line.cut() {
        state.trace_text = text;
        cut(state, sink);
        return;
    }
    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.line(&text)));
    state.trace_lines += 1;
    state.trace_bytes += text.len() as u64;
    if written.is_err() {
        // A sink that panicked gets nothing more in this run.
        state.trace_cut = true;
    }
    state.trace_text = text;
}

fn cut(state: &mut RunState, sink: &dyn TraceSink) {
    state.trace_cut = true;
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.cut()));
}

/// A local's value from the flow state as JSON: a float that is not finite is `null` (as
/// serde_json writes it), others in Rust's `{:?}` form (`2.0`, `0.1`, `1e300`).
fn push_json(
    line: &mut BoundedText<'_>,
    state: &RunState,
    layout: &Layout,
    local: crate::ir::LocalId,
) {
    let slot = layout.slot(local);
    let bits = state.frame[slot.offset as usize];
    match slot.ty {
        Type::Int => line.push(itoa::Buffer::new().format(bits as i64)),
        Type::Bool => line.push(if bits != 0 { "true" } else { "false" }),
        Type::Float => {
            let v = f64::from_bits(bits);
            if v.is_finite() {
                use std::fmt::Write;
                if !line.cut() {
                    let _ = write!(line, "{v:?}");
                }
            } else {
                line.push("null");
            }
        }
        Type::Str => {
            // SAFETY: a str local holds a live (pointer, length) pair of UTF-8 of this run.
            let text = unsafe { super::word_str(bits, state.frame[slot.offset as usize + 1]) };
            push_json_str(line, text);
        }
    }
}

/// `text` as a JSON string: `"` and `\` escaped, control characters as `\n`, `\t`, `\r` or
/// `\u00XX` (as serde_json writes them).
fn push_json_str(line: &mut BoundedText<'_>, text: &str) {
    line.push("\"");
    let mut start = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\t' => "\\t",
            b'\r' => "\\r",
            0..=0x1f => "",
            _ => continue,
        };
        line.push(&text[start..at]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let code = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ];
            line.push(std::str::from_utf8(&code).unwrap_or("?"));
        } else {
            line.push(escape);
        }
        start = at + 1;
        if line.cut() {
            return;
        }
    }
    line.push(&text[start..]);
    line.push("\"");
}

#[cfg(test)]
mod tests {
    //! The mock marker (SPEC 13). Mocks themselves are compiled elsewhere; here a subflow call is
    //! marked `mocked` in the IR by hand, as a mocked event's call will be, and both tiers must
    //! write its line with ` (mock)`.
    use super::*;
    use crate::ir::Step;
    use crate::limits::RunLimits;
    use std::sync::Arc;

    fn mocked_program(registry: &crate::host::Registry) -> Program {
        let source = "~event users.get { id: i64 } | found { name: []const u8 } | missing\n\
                      ~users.get = found { name: \"test\" }\n\
                      ~users.get(id: 1)\n| found u |> std.io:println(text: u.name)\n| missing |> _\n";
        let limits = crate::limits::FrontEndLimits::default();
        let (file, diagnostics) = crate::syntax::parse(source, &limits);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let mut program = crate::sema::check(registry, &file, source, &Default::default())
            .expect("the source checks");
        let Some(Step::Call(call)) = program.flows.last_mut() else {
            panic!("the flow is a subflow call: {:?}", program.flows)
        };
        call.mocked = true;
        program.trace = TraceLevel::Dispatches;
        program
    }

    #[test]
    fn a_mocked_event_is_marked_in_both_tiers() {
        let registry = crate::host::Registry::with_std();
        let program = mocked_program(&registry);
        let mut layout = Layout::of(&program);
        let code = crate::interp::prepare(&program, &mut layout);
        let trace = Arc::new(CaptureTrace::new());
        let limits = RunLimits {
            trace: Some(trace.clone()),
            ..RunLimits::default()
        };
        let output = crate::host::CaptureSink::new();
        // The println runs in the call's continuation, after the call's line.
        let expected = [
            "TRACE users.get (mock) -> found {\"name\":\"test\"}",
            "TRACE std.io:println",
        ];

        let mut state = RunState::new(&program, &layout);
        state.reset();
        crate::interp::run(
            &code, &program, &layout, &registry, &mut state, &limits, &output, None,
        )
        .expect("the interpreter runs it");
        assert_eq!(trace.take_lines(), expected);

        let native = crate::jit::compile(&program, &layout, &registry).expect("it compiles");
        let mut state = RunState::new(&program, &layout);
        state.reset();
        native
            .run(&program, &mut state, &limits, &output)
            .expect("native code runs it");
        assert_eq!(trace.take_lines(), expected);
        assert_eq!(output.take_out(), "test\ntest\n");
    }
}
