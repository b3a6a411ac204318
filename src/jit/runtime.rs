//! What generated code needs at run time: the data a compiled flow keeps beside its code, the
//! helpers it calls (each an `extern "C"` function reached through a pointer constant, never a
//! symbol), and the single place that turns a code pointer into a callable.

use crate::host::{BoundedText, OutputSink, StdEvent};
use crate::ir::{Program, ValueId};
use crate::limits::RunLimits;
use crate::outcome::{ErrorCode, Limit};
use crate::span::Span;
use crate::state::{RunState, Stream, Trap, TrapError};
use crate::types::Type;
use std::fmt::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What the compiled function returns.
pub const STATUS_OK: u32 = 0;
/// A run-time error at trap site `state.trap`.
pub const STATUS_ERROR: u32 = 1;
/// A host error or panic, recorded in `state.host_trap`.
pub const STATUS_HOST: u32 = 2;
/// A limit, `state.trap` holding its [`limit_code`].
pub const STATUS_EXHAUSTED: u32 = 3;

/// At most this many loop iterations run between two checks of the iteration limit, the
/// interrupt and the deadline.
pub const BUDGET_GRANT: u64 = crate::limits::ClockPacer::MAX_GRANT as u64;

pub fn limit_code(limit: Limit) -> u32 {
    match limit {
        Limit::Fuel => 0,
        Limit::LoopIterations => 1,
        Limit::Deadline => 2,
        Limit::Interrupted => 3,
        Limit::Output => 4,
    }
}

fn limit_from_code(code: u32) -> Limit {
    match code {
        0 => Limit::Fuel,
        1 => Limit::LoopIterations,
        2 => Limit::Deadline,
        4 => Limit::Output,
        _ => Limit::Interrupted,
    }
}

/// A place generated code can fail, with everything the outcome reports.
#[derive(Debug)]
pub struct TrapSite {
    pub code: ErrorCode,
    pub message: String,
    pub event: Option<Arc<str>>,
    pub span: Span,
}

/// One part of a `std.io:print.ln` template.
#[derive(Debug)]
pub enum NativePart {
    Text(Box<str>),
    Hole(Type),
}

/// Data a compiled flow keeps beside its code; generated code refers to it by address.
#[derive(Debug, Default)]
pub struct NativeData {
    pub traps: Vec<TrapSite>,
    pub templates: Vec<Vec<NativePart>>,
    /// (pointer, length) pairs of string literals passed by address (boxed: their addresses
    /// are baked into the code).
    // Boxed on purpose: generated code holds their addresses, which must not move as the
    // vector grows.
    #[allow(clippy::vec_box)]
    pub literal_pairs: Vec<Box<[u64; 2]>>,
    /// The tables of `match`es lowered as lookups (boxed for the same reason).
    pub tables: Vec<Box<[i64]>>,
    /// Bytes those tables hold (bounded per flow by `lookup::MAX_FLOW_TABLE_BYTES`).
    pub table_bytes: usize,
    /// The address of the first of `region_table`'s entries, which generated code reads to call
    /// a region of a large flow (0 until the code is final).
    pub region_entries: usize,
    /// The entry address of each region (function `k + 1` of the flow is region `k`).
    pub region_table: Box<[usize]>,
}

impl NativeData {
    /// Bytes of heap held, from the containers' capacities.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.traps.capacity() * size_of::<TrapSite>()
            + self
                .traps
                .iter()
                .map(|t| t.message.capacity())
                .sum::<usize>()
            + self.templates.capacity() * size_of::<Vec<NativePart>>()
            + self
                .templates
                .iter()
                .map(|parts| {
                    parts.capacity() * size_of::<NativePart>()
                        + parts
                            .iter()
                            .map(|p| match p {
                                NativePart::Text(t) => t.len(),
                                NativePart::Hole(_) => 0,
                            })
                            .sum::<usize>()
                })
                .sum::<usize>()
            + self.literal_pairs.capacity() * (size_of::<Box<[u64; 2]>>() + 16)
            + self.tables.capacity() * size_of::<Box<[i64]>>()
            + self.table_bytes
    }
}

/// Never set: the interrupt flag of runs without an interrupt handle.
static NEVER_INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The signature of every compiled flow: `extern "C" fn(frame, state) -> status`.
pub type Entry = unsafe extern "C" fn(*mut u64, *mut RunState) -> u32;

/// Runs compiled code over `state` (already holding the flow inputs).
///
/// # Safety
/// `entry` must be the code compiled from `program` and the layout `state` was made for, with
/// its [`NativeData`] alive.
pub unsafe fn run(
    entry: Entry,
    data: &NativeData,
    program: &Program,
    state: &mut RunState,
    limits: &RunLimits,
    output: &dyn OutputSink,
) -> Result<Option<ValueId>, Trap> {
    state.fuel_limit = limits.fuel.unwrap_or(u64::MAX);
    state.iteration_limit = limits.max_iterations.unwrap_or(u64::MAX);
    state.output_limit = limits.max_output_bytes.unwrap_or(u64::MAX);
    state.handle_limit = limits
        .max_handles
        .unwrap_or(crate::state::DEFAULT_MAX_HANDLES);
    state.deadline = limits.deadline;
    state.pacer = crate::limits::ClockPacer::new();
    state.deadline_epoch = limits
        .deadline
        .map_or(u64::MAX, crate::limits::epoch::of_deadline);
    state.interrupt = limits
        .interrupt
        .as_ref()
        .map_or(&NEVER_INTERRUPTED, |i| i.flag());
    state.loop_counts = state.loop_iterations.as_mut_ptr();
    state.set_trace(program, limits);
    // SAFETY: only the lifetime is erased; the pointer is cleared below, before `output` can end.
    state.output = unsafe {
        std::mem::transmute::<*const (dyn OutputSink + '_), *const (dyn OutputSink + 'static)>(
            output,
        )
    };
    let frame = state.frame.as_mut_ptr();
    // SAFETY: the caller guarantees `entry` matches this state's layout. Nothing unwinds out of
    // generated code: host shims and helpers catch every panic.
    let status = unsafe { entry(frame, state) };
    state.output = std::ptr::null::<crate::host::StdoutSink>() as *const dyn OutputSink;
    match status {
        STATUS_OK => Ok((!program.flows.is_empty()).then_some(ValueId(state.value))),
        STATUS_ERROR => {
            let site = &data.traps[state.trap as usize];
            Err(Trap::error(
                site.code,
                site.message.clone(),
                site.event.clone(),
                site.span,
            ))
        }
        STATUS_HOST => Err(Trap::Error(state.host_trap.take().unwrap_or_else(|| {
            Box::new(TrapError {
                code: ErrorCode::HostError,
                message: "a host call failed without a reason".into(),
                event: None,
                span: Span::default(),
            })
        }))),
        _ => Err(Trap::Exhausted(limit_from_code(state.trap))),
    }
}

/// Runs a `std.io` write, turning a panic (from an embedder's output sink) into a `HostPanic` of
/// the run. Returns the status to leave with (`STATUS_EXHAUSTED` with the limit in `state.trap`
/// when the write reached the output bound), or 0 to go on.
fn guarded(
    state: &mut RunState,
    what: &str,
    f: impl FnOnce(&mut RunState) -> Result<(), Limit>,
) -> u32 {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *state))) {
        Ok(Ok(())) => 0,
        Ok(Err(limit)) => {
            state.trap = limit_code(limit);
            STATUS_EXHAUSTED
        }
        Err(panic) => {
            state.host_trap = Some(Box::new(TrapError {
                code: ErrorCode::HostPanic,
                message: crate::host::panic_message(&panic),
                event: Some(Arc::from(what)),
                span: Span::default(),
            }));
            STATUS_HOST
        }
    }
}

/// # Safety
/// The pairs must be live UTF-8 (flow-state strings always are).
pub unsafe extern "C" fn helper_str_eq(a_ptr: u64, a_len: u64, b_ptr: u64, b_len: u64) -> u64 {
    // SAFETY: guaranteed by the caller.
    let equal =
        unsafe { crate::host::word_str(a_ptr, a_len) == crate::host::word_str(b_ptr, b_len) };
    u64::from(equal)
}

/// Formats a number or bool into conversion buffer `buffer` (SPEC 2.1); returns the address of
/// its (pointer, length) pair.
///
/// # Safety
/// `state` is the live run state; `buffer` one of its conversion buffers.
pub unsafe extern "C" fn helper_format(
    state: *mut RunState,
    buffer: u64,
    ty: u64,
    bits: u64,
) -> *const [u64; 2] {
    // SAFETY: guaranteed by the caller.
    let state = unsafe { &mut *state };
    let ty = match ty {
        0 => Type::Int,
        1 => Type::Float,
        _ => Type::Bool,
    };
    let (ptr, len) = state.format_conversion(buffer as usize, ty, bits);
    let pair = &mut state.conversion_pairs[buffer as usize];
    *pair = [ptr, len];
    pair
}

/// [`helper_format`] for an int, the common case (`add(a: "0", b: i)`): itoa writes into the
/// site's buffer and the pair points at that text.
///
/// # Safety
/// `state` is the live run state; `buffer` one of its conversion buffers.
pub unsafe extern "C" fn helper_format_int(
    state: *mut RunState,
    buffer: u64,
    value: i64,
) -> *const [u64; 2] {
    // SAFETY: guaranteed by the caller.
    let state = unsafe { &mut *state };
    let buffer = buffer as usize;
    let text = state.int_conversions[buffer].format(value);
    let pair = [text.as_ptr() as u64, text.len() as u64];
    let slot = &mut state.conversion_pairs[buffer];
    *slot = pair;
    slot
}

/// Copies a string into an accumulator field's other buffer and makes it current (double
/// buffering, as in the interpreter); returns the new pointer (the length is unchanged).
///
/// # Safety
/// `state` is the live run state; (`ptr`, `len`) live UTF-8 not in the field's other buffer.
pub unsafe extern "C" fn helper_assign_str(
    state: *mut RunState,
    buffer: u64,
    ptr: u64,
    len: u64,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    let state = unsafe { &mut *state };
    let half = !state.current_half[buffer as usize];
    state.current_half[buffer as usize] = half;
    let target = &mut state.buffers[buffer as usize + usize::from(half)];
    target.clear();
    // SAFETY: guaranteed by the caller.
    target.push_str(unsafe { crate::host::word_str(ptr, len) });
    target.as_ptr() as u64
}

/// Copies a string into the one buffer of a `match` value (see `ir::MatchStep::value`); returns
/// the new pointer (the length is unchanged).
///
/// # Safety
/// `state` is the live run state; (`ptr`, `len`) live UTF-8 not in that buffer.
pub unsafe extern "C" fn helper_copy_str(
    state: *mut RunState,
    buffer: u64,
    ptr: u64,
    len: u64,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    let state = unsafe { &mut *state };
    let target = &mut state.buffers[buffer as usize];
    target.clear();
    // SAFETY: guaranteed by the caller.
    target.push_str(unsafe { crate::host::word_str(ptr, len) });
    target.as_ptr() as u64
}

/// Releases the open obligation of state `state_index` whose handle is the text at `pair`
/// (SPEC 12; see [`RunState::release`]). Cannot fail.
///
/// # Safety
/// `state` is the live run state; `pair` points at live UTF-8.
pub unsafe extern "C" fn helper_release(
    state: *mut RunState,
    state_index: u64,
    pair: *const [u64; 2],
) {
    // SAFETY: guaranteed by the caller.
    let (state, pair) = unsafe { (&mut *state, *pair) };
    // SAFETY: the pair is live UTF-8 (caller).
    let text = unsafe { crate::host::word_str(pair[0], pair[1]) };
    state.release(state_index as u32, text);
}

/// `std.io:print` (0), `println` (1) or `eprintln` (2) of one string, within the output bound
/// (see [`RunState::write_std`]); returns 0 to go on, else the status to leave with.
///
/// # Safety
/// `state` is the live run state of a run whose output is set; `pair` points at live UTF-8.
pub unsafe extern "C" fn helper_std(state: *mut RunState, kind: u64, pair: *const [u64; 2]) -> u32 {
    // SAFETY: guaranteed by the caller.
    let (state, pair) = unsafe { (&mut *state, *pair) };
    let (name, kind) = [
        ("std.io:print", StdEvent::Print),
        ("std.io:println", StdEvent::Println),
        ("std.io:eprintln", StdEvent::Eprintln),
    ][kind.min(2) as usize];
    guarded(state, name, |state| {
        // SAFETY: `output` is set for the whole run; the pair is live (caller).
        let (output, text) = unsafe { (&*state.output, crate::host::word_str(pair[0], pair[1])) };
        state.write_std(output, kind, text)
    })
}

/// `std.io:print.ln` of template `template`, its holes' values in `words` (a `str` takes two),
/// formatted within the room the output bound leaves; returns 0 to go on, else the status to
/// leave with.
///
/// # Safety
/// `state` is the live run state of a run whose output is set; `data` the flow's data; `words`
/// holds the holes in order.
pub unsafe extern "C" fn helper_template(
    state: *mut RunState,
    data: *const NativeData,
    template: u64,
    words: *const u64,
) -> u32 {
    // SAFETY: guaranteed by the caller.
    let (state, data) = unsafe { (&mut *state, &*data) };
    let parts = &data.templates[template as usize];
    guarded(state, "std.io:print.ln", |state| {
        let mut text = std::mem::take(&mut state.text);
        let mut bounded = BoundedText::new(&mut text, state.output_room());
        let mut at = 0;
        for part in parts {
            if bounded.cut() {
                break;
            }
            // SAFETY: one word per scalar hole and two per str hole, as laid out by the caller.
            let word = |k: usize| unsafe { *words.add(k) };
            match part {
                NativePart::Text(t) => bounded.push(t),
                NativePart::Hole(Type::Str) => {
                    // SAFETY: a str hole holds a live (pointer, length) pair.
                    bounded.push(unsafe { crate::host::word_str(word(at), word(at + 1)) });
                    at += 2;
                }
                NativePart::Hole(ty) => {
                    let bits = word(at);
                    at += 1;
                    match ty {
                        Type::Int => bounded.push(itoa::Buffer::new().format(bits as i64)),
                        Type::Float => {
                            let _ = write!(bounded, "{}", f64::from_bits(bits));
                        }
                        _ => bounded.push(if bits != 0 { "true" } else { "false" }),
                    }
                }
            }
        }
        bounded.push("\n");
        // SAFETY: `output` is set for the whole run.
        let result = state.finish_write(unsafe { &*state.output }, Stream::Out, &bounded);
        state.text = text;
        result
    })
}

/// The slow path of a loop's budget, taken when it ran out: leaves if the iteration limit is
/// reached (exactly: a grant never exceeds what is left), then checks the interrupt and the
/// deadline (on the real clock, paced by `state.pacer`, or once the epoch passed it), and grants
/// at most [`BUDGET_GRANT`] more iterations (fewer when the pacer asks for more frequent checks),
/// moving `state.iterations` to the count at which they run out. Returns the grant, or minus
/// `1 + limit_code` of the limit reached.
///
/// # Safety
/// `state` is the live run state (its `interrupt` pointer valid for the run).
pub unsafe extern "C" fn helper_refill(state: *mut RunState) -> i64 {
    // SAFETY: guaranteed by the caller; generated code holds no reference while a helper runs.
    let run = unsafe { &mut *state };
    let horizon = run.iterations;
    let left = run.iteration_limit.wrapping_sub(horizon);
    if left == 0 {
        return -(1 + i64::from(limit_code(Limit::LoopIterations)));
    }
    // SAFETY: `interrupt` points at the run's flag (or a never-set static) for the whole run.
    if unsafe { &*run.interrupt }.load(std::sync::atomic::Ordering::Relaxed) {
        return -(1 + i64::from(limit_code(Limit::Interrupted)));
    }
    let mut grant = BUDGET_GRANT;
    if let Some(deadline) = run.deadline {
        let now = match run.pacer.check() {
            Some(now) => Some(now),
            None if crate::limits::epoch::now() >= run.deadline_epoch => {
                Some(std::time::Instant::now())
            }
            None => None,
        };
        if now.is_some_and(|now| now >= deadline) {
            return -(1 + i64::from(limit_code(Limit::Deadline)));
        }
        grant = run.pacer.grant();
    }
    let grant = left.min(grant);
    run.iterations = horizon.wrapping_add(grant);
    grant as i64
}

/// The cold path of a stop check: the interrupt flag or the deadline epoch said "maybe". Returns
/// 0 to go on, else `1 + limit_code` of the limit reached (the interrupt first, then the
/// deadline, read from the clock).
///
/// # Safety
/// `state` is the live run state (its `interrupt` pointer valid for the run).
pub unsafe extern "C" fn helper_poll(state: *mut RunState) -> u32 {
    // SAFETY: guaranteed by the caller.
    let state = unsafe { &mut *state };
    // SAFETY: `interrupt` points at the run's flag (or a never-set static) for the whole run.
    if unsafe { &*state.interrupt }.load(std::sync::atomic::Ordering::Relaxed) {
        return 1 + limit_code(Limit::Interrupted);
    }
    match state.deadline {
        Some(deadline) if std::time::Instant::now() >= deadline => 1 + limit_code(Limit::Deadline),
        _ => 0,
    }
}

/// The trace line of `label` (with marker `marker_value >> 32`) returning value
/// `marker_value as u32`, whose payload generated code wrote to the flow state (SPEC 13; the
/// line is made by the code the interpreter uses, `host::trace::write_line`). A trace never
/// changes the run: a panic here stops the trace only.
///
/// # Safety
/// `state` is the live run state; `program` and `layout` are the flow's (which outlive its
/// code); (`label_ptr`, `label_len`) is live UTF-8.
pub unsafe extern "C" fn helper_trace(
    state: *mut RunState,
    program: *const Program,
    layout: *const crate::layout::Layout,
    label_ptr: u64,
    label_len: u64,
    marker_value: u64,
) {
    // SAFETY: guaranteed by the caller.
    let (state, program, layout) = unsafe { (&mut *state, &*program, &*layout) };
    // SAFETY: guaranteed by the caller.
    let label = unsafe { crate::host::word_str(label_ptr, label_len) };
    let marker = crate::host::TraceMarker::from_code(marker_value >> 32);
    let value = ValueId(marker_value as u32);
    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::host::write_trace_line(state, program, layout, label, marker, value)
    }));
    if written.is_err() {
        state.trace_cut = true;
    }
}

/// Floored float remainder (Cranelift has no `frem`).
pub extern "C" fn helper_float_rem(a: f64, b: f64) -> f64 {
    crate::ir::arith::float_rem(a, b)
}
