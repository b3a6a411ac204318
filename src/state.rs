//! The run state: the flow-state buffer laid out by [`crate::layout::Layout`] plus the string
//! buffers and counters of one run. Reused across runs, so a steady state allocates nothing.

use crate::host::{prefix_within, BoundedText, OutputSink, StdEvent};
use crate::ir::Program;
use crate::layout::Layout;
use crate::outcome::{ErrorCode, Limit};
use crate::span::Span;
use std::sync::Arc;

/// Why a run stopped early.
#[derive(Debug)]
pub enum Trap {
    Error(Box<TrapError>),
    Exhausted(Limit),
    /// The run moved to native code at a loop head and finished there with this result; the
    /// interpreter unwinds its own frames and returns it.
    Finished(Box<Result<Option<crate::ir::ValueId>, Trap>>),
}

#[derive(Debug)]
pub struct TrapError {
    pub code: ErrorCode,
    pub message: String,
    pub event: Option<Arc<str>>,
    pub span: Span,
}

impl Trap {
    pub fn error(
        code: ErrorCode,
        message: impl Into<String>,
        event: Option<Arc<str>>,
        span: Span,
    ) -> Trap {
        Trap::Error(Box::new(TrapError {
            code,
            message: message.into(),
            event,
            span,
        }))
    }
}

/// `repr(C)`: generated code reads and writes the fields before `frame` at fixed offsets
/// (`std::mem::offset_of!`); both tiers keep their counters here.
#[repr(C)]
pub struct RunState {
    pub fuel_used: u64,
    /// `u64::MAX` when unlimited.
    pub fuel_limit: u64,
    pub iterations: u64,
    /// `u64::MAX` when unlimited.
    pub iteration_limit: u64,
    /// Bytes of `std.io` output written in this run (program and error output together).
    pub output_used: u64,
    /// `u64::MAX` when unlimited; `output_used` never exceeds it.
    pub output_limit: u64,
    /// The last event charged, coded as [`Program::last_event_name`] reads it.
    pub last_event: u32,
    /// The host call site in progress (to name the event if its implementation panics).
    pub calling: u32,
    /// Generated code: the value of the last top-level flow.
    pub value: u32,
    /// Generated code: why it stopped (an index of its trap table, or a `Limit`).
    pub trap: u32,
    /// The epoch (see `limits::epoch`) from which the deadline may have passed; `u64::MAX`
    /// without a deadline.
    pub deadline_epoch: u64,
    /// Generated code: where to start: 0 at the beginning, `1 + k` at the head of loop `k`
    /// (on-stack replacement, with the flow state as the interpreter left it).
    pub osr_entry: u32,
    /// Generated code: per-loop iteration counters (`loop_iterations`).
    pub loop_counts: *mut u64,
    /// Generated code: the interrupt flag of this run (a flag that is never set without one).
    pub interrupt: *const std::sync::atomic::AtomicBool,
    /// A host error or panic caught in a native shim.
    pub host_trap: Option<Box<TrapError>>,
    pub deadline: Option<std::time::Instant>,
    /// When the loop checks of a run with a deadline read the clock.
    pub(crate) pacer: crate::limits::ClockPacer,
    /// Generated code: where `std.io` writes during this run (valid only while it runs).
    pub output: *const (dyn crate::host::OutputSink + 'static),
    /// Where this run's trace lines go (`None` for no trace): set by both tiers' entries from
    /// the run's limits, for a flow compiled with tracing; used only while the run holds them.
    pub trace: Option<*const (dyn crate::host::TraceSink + 'static)>,
    /// Trace lines and bytes written in this run (kept across a switch to native code).
    pub trace_lines: u64,
    pub trace_bytes: u64,
    /// `u64::MAX` when unlimited.
    pub trace_line_limit: u64,
    pub trace_byte_limit: u64,
    /// The trace reached its bound (or its sink panicked): no more lines in this run.
    pub trace_cut: bool,
    /// Scratch for trace lines.
    pub trace_text: String,
    /// Generated code: for each conversion site, the (pointer, length) pair of its buffer.
    pub conversion_pairs: Vec<[u64; 2]>,
    /// The flow state, in 8-byte words.
    pub frame: Vec<u64>,
    /// String buffers of locals that own their text (see the layout).
    pub buffers: Vec<String>,
    /// Which of an accumulator field's two buffers is current (indexed like `buffers`).
    pub current_half: Vec<bool>,
    /// Buffers for floats and bools formatted into `str` inputs, one per site.
    pub conversions: Vec<String>,
    /// Buffers for ints formatted into `str` inputs, one per site: the text stays where itoa
    /// writes it, no copy.
    pub int_conversions: Vec<itoa::Buffer>,
    /// Host call arguments, as words.
    pub args: Vec<u64>,
    /// Scratch for `captured` (evaluate all, then assign).
    pub scratch: Vec<u64>,
    /// Scratch for print templates.
    pub text: String,
    pub loop_iterations: Vec<u64>,
    /// Open obligations (SPEC 12), oldest first.
    pub handles: Vec<OpenHandle>,
    /// Obligations opened in this run (what `Args::handles_opened` reads).
    pub handles_opened: u64,
    /// At most this many open obligations; one more is `TooManyHandles`.
    pub handle_limit: u64,
    /// Bytes of text the open obligations hold (at most [`MAX_HANDLE_BYTES`]).
    pub handle_bytes: usize,
}

/// An open obligation: its state (an index of `Program::obligation_states`), the site that
/// opened it, and the handle's text.
#[derive(Clone, Debug)]
pub struct OpenHandle {
    pub state: u32,
    pub event: Arc<str>,
    pub text: String,
}

/// The default bound on open obligations of a run (SPEC 12).
pub const DEFAULT_MAX_HANDLES: u64 = 1024;

/// The open obligations of a run hold at most this much handle text (16 MiB): a host that echoes
/// a flow's long argument into its handles cannot make a run keep gigabytes of copies. Past it
/// the run stops with `TooManyHandles`, as past the count.
pub const MAX_HANDLE_BYTES: usize = 16 << 20;

// SAFETY: the raw pointers (`loop_counts`, `interrupt`, `output`, `trace`) are set at the start of each run to data
// that outlives it and are only used by the thread running it.
unsafe impl Send for RunState {}

impl RunState {
    /// Formats a number or bool (given as its bits) into conversion buffer `buffer` (SPEC 2.1);
    /// returns the text's (pointer, length), valid until the same site converts again.
    pub fn format_conversion(
        &mut self,
        buffer: usize,
        ty: crate::types::Type,
        bits: u64,
    ) -> (u64, u64) {
        use crate::types::Type;
        let text: &str = match ty {
            Type::Int if bits < SMALL_INTS => {
                let [ptr, len] = small_int_pairs()[bits as usize];
                return (ptr, len);
            }
            Type::Int => self.int_conversions[buffer].format(bits as i64),
            Type::Float => {
                use std::fmt::Write;
                let text = &mut self.conversions[buffer];
                text.clear();
                let _ = write!(text, "{}", f64::from_bits(bits));
                text
            }
            _ => {
                if bits != 0 {
                    "true"
                } else {
                    "false"
                }
            }
        };
        (text.as_ptr() as u64, text.len() as u64)
    }

    pub fn new(program: &Program, layout: &Layout) -> RunState {
        let mut state = RunState {
            fuel_used: 0,
            fuel_limit: 0,
            iterations: 0,
            iteration_limit: 0,
            output_used: 0,
            output_limit: 0,
            last_event: 0,
            calling: 0,
            value: 0,
            trap: 0,
            deadline_epoch: 0,
            osr_entry: 0,
            loop_counts: std::ptr::null_mut(),
            interrupt: std::ptr::null(),
            host_trap: None,
            deadline: None,
            pacer: crate::limits::ClockPacer::new(),
            output: std::ptr::null::<crate::host::StdoutSink>()
                as *const dyn crate::host::OutputSink,
            trace: None,
            trace_lines: 0,
            trace_bytes: 0,
            trace_line_limit: u64::MAX,
            trace_byte_limit: u64::MAX,
            trace_cut: false,
            trace_text: String::new(),
            conversion_pairs: Vec::new(),
            frame: Vec::new(),
            buffers: Vec::new(),
            current_half: Vec::new(),
            conversions: Vec::new(),
            int_conversions: Vec::new(),
            args: Vec::new(),
            scratch: Vec::new(),
            text: String::new(),
            loop_iterations: Vec::new(),
            handles: Vec::new(),
            handles_opened: 0,
            handle_limit: DEFAULT_MAX_HANDLES,
            handle_bytes: 0,
        };
        state.reuse_for(program, layout);
        state
    }

    /// Makes this run state (of any program) what [`RunState::new`] makes for `program`, keeping
    /// its allocations: a state recycled from a dropped flow allocates nothing when its capacity
    /// suffices. Kept strings are emptied.
    pub fn reuse_for(&mut self, program: &Program, layout: &Layout) {
        fn sized<T: Clone>(v: &mut Vec<T>, n: usize, value: T) {
            v.clear();
            v.resize(n, value);
        }
        fn strings(v: &mut Vec<String>, n: usize) {
            v.truncate(n);
            for s in v.iter_mut() {
                s.clear();
            }
            v.resize(n, String::new());
        }
        // Every field by name (no `..`): a new field cannot be forgotten here.
        let RunState {
            fuel_used,
            fuel_limit,
            iterations,
            iteration_limit,
            output_used,
            output_limit,
            last_event,
            calling,
            value,
            trap,
            deadline_epoch,
            osr_entry,
            loop_counts,
            interrupt,
            host_trap,
            deadline,
            pacer,
            output,
            trace,
            trace_lines,
            trace_bytes,
            trace_line_limit,
            trace_byte_limit,
            trace_cut,
            trace_text,
            conversion_pairs,
            frame,
            buffers,
            current_half,
            conversions,
            int_conversions,
            args,
            scratch,
            text,
            loop_iterations,
            handles,
            handles_opened,
            handle_limit,
            handle_bytes,
        } = self;
        let sites = program.conversion_buffers as usize;
        *fuel_used = 0;
        *fuel_limit = u64::MAX;
        *iterations = 0;
        *iteration_limit = u64::MAX;
        *output_used = 0;
        *output_limit = u64::MAX;
        *last_event = 0;
        *calling = 0;
        *value = 0;
        *trap = 0;
        *deadline_epoch = u64::MAX;
        *osr_entry = 0;
        *loop_counts = std::ptr::null_mut();
        *interrupt = std::ptr::null();
        *host_trap = None;
        *deadline = None;
        *pacer = crate::limits::ClockPacer::new();
        *output = std::ptr::null::<crate::host::StdoutSink>() as *const dyn crate::host::OutputSink;
        *trace = None;
        *trace_lines = 0;
        *trace_bytes = 0;
        *trace_line_limit = u64::MAX;
        *trace_byte_limit = u64::MAX;
        *trace_cut = false;
        trace_text.clear();
        sized(conversion_pairs, sites, [0; 2]);
        sized(frame, layout.frame_words as usize, 0);
        strings(buffers, layout.buffers as usize);
        sized(current_half, layout.buffers as usize, false);
        strings(conversions, sites);
        sized(int_conversions, sites, itoa::Buffer::new());
        args.clear();
        scratch.clear();
        text.clear();
        sized(loop_iterations, program.loops.len(), 0);
        handles.clear();
        *handles_opened = 0;
        *handle_limit = DEFAULT_MAX_HANDLES;
        *handle_bytes = 0;
    }

    /// Bytes of heap this state holds on to (what recycling it would keep alive).
    pub fn retained_bytes(&self) -> usize {
        fn vec<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        let strings = |v: &Vec<String>| vec(v) + v.iter().map(String::capacity).sum::<usize>();
        vec(&self.frame)
            + strings(&self.buffers)
            + vec(&self.current_half)
            + strings(&self.conversions)
            + vec(&self.int_conversions)
            + vec(&self.args)
            + vec(&self.scratch)
            + self.text.capacity()
            + self.trace_text.capacity()
            + vec(&self.loop_iterations)
            + vec(&self.conversion_pairs)
            + vec(&self.handles)
            + self
                .handles
                .iter()
                .map(|h| h.text.capacity())
                .sum::<usize>()
    }

    /// Clears counters for a new run (buffers keep their capacity).
    pub fn reset(&mut self) {
        zero(&mut self.frame, 0);
        zero(&mut self.loop_iterations, 0);
        zero(&mut self.current_half, false);
        self.fuel_used = 0;
        self.iterations = 0;
        self.output_used = 0;
        self.last_event = 0;
        self.host_trap = None;
        self.trace_lines = 0;
        self.trace_bytes = 0;
        self.trace_cut = false;
        self.handles.clear();
        self.handles_opened = 0;
        self.handle_bytes = 0;
    }

    /// After a host call at the site of `plan` returned `branch`: opens the obligations its
    /// payload carries (their text copied, as the payload's buffer is reused by the next call).
    /// Past the run's bound the handle is kept (so that it is discharged with the others) and
    /// the run stops with `TooManyHandles`.
    #[inline(always)]
    pub fn record_opened(
        &mut self,
        plan: &crate::host::ReplyPlan,
        branch: u32,
    ) -> Result<(), Box<TrapError>> {
        match &plan.obligations {
            // Most events open nothing: one test, inline at every host call.
            None => Ok(()),
            Some(_) => self.record_opened_slow(plan, branch),
        }
    }

    #[cold]
    #[inline(never)]
    fn record_opened_slow(
        &mut self,
        plan: &crate::host::ReplyPlan,
        branch: u32,
    ) -> Result<(), Box<TrapError>> {
        let Some(obligations) = &plan.obligations else {
            return Ok(());
        };
        for &(b, field, state) in &obligations.creates {
            if b != branch {
                continue;
            }
            let offset = field.offset as usize;
            // SAFETY: the host call just wrote this str payload field: a live (pointer,
            // length) pair of UTF-8.
            let text = unsafe { crate::host::word_str(self.frame[offset], self.frame[offset + 1]) };
            self.handles.push(OpenHandle {
                state,
                event: plan.event.clone(),
                text: text.to_string(),
            });
            self.handles_opened += 1;
            self.handle_bytes += text.len();
            let message = if self.handles.len() as u64 > self.handle_limit {
                format!(
                    "the run holds more than {} open handles (RunLimits::max_handles)",
                    self.handle_limit
                )
            } else if self.handle_bytes > MAX_HANDLE_BYTES {
                format!("the run's open handles hold more than {MAX_HANDLE_BYTES} bytes of text")
            } else {
                continue;
            };
            return Err(Box::new(TrapError {
                code: ErrorCode::TooManyHandles,
                message,
                event: Some(plan.event.clone()),
                span: plan.span,
            }));
        }
        Ok(())
    }

    /// A handle of `state` passed to a releasing input: the newest open one with this text is
    /// released (when the call is dispatched, whatever it returns).
    pub fn release(&mut self, state: u32, text: &str) {
        if let Some(at) = self
            .handles
            .iter()
            .rposition(|h| h.state == state && h.text == text)
        {
            let released = self.handles.remove(at);
            self.handle_bytes -= released.text.len();
        }
    }

    /// The releases of a call at the site of `plan` whose argument words are `args`.
    pub fn release_arguments(&mut self, plan: &crate::host::ReplyPlan, args: &[u64]) {
        let Some(obligations) = &plan.obligations else {
            return;
        };
        for &(_, word, state) in &obligations.releases {
            let word = word as usize;
            // SAFETY: the argument words of a `str` input are a live (pointer, length) pair.
            let text = unsafe { crate::host::word_str(args[word], args[word + 1]) };
            self.release(state, text);
        }
    }

    /// Sets where this run's trace goes, from its limits, for a program compiled with tracing
    /// (both tiers' entries: an interpreted run that moves to native code sets it again, and the
    /// counts go on).
    pub(crate) fn set_trace(&mut self, program: &Program, limits: &crate::limits::RunLimits) {
        self.trace = match (&limits.trace, program.trace) {
            (Some(sink), level) if level != crate::host::TraceLevel::Off => {
                Some(&**sink as *const dyn crate::host::TraceSink)
            }
            _ => None,
        };
        self.trace_line_limit = limits.max_trace_lines.unwrap_or(u64::MAX);
        self.trace_byte_limit = limits.max_trace_bytes.unwrap_or(u64::MAX);
    }

    /// Bytes of `std.io` output this run may still write.
    #[inline]
    pub fn output_room(&self) -> usize {
        usize::try_from(self.output_limit - self.output_used).unwrap_or(usize::MAX)
    }

    /// `std.io:print`, `println` or `eprintln` (a `print.ln` given a string prints it as is) of
    /// `text`, within the run's output bound: a write that does not fit whole writes the longest
    /// prefix that fits, cut at a character boundary, and the run stops (`Limit::Output`).
    #[inline]
    pub fn write_std(
        &mut self,
        output: &dyn OutputSink,
        kind: StdEvent,
        text: &str,
    ) -> Result<(), Limit> {
        let room = self.output_room();
        // The common case first: the write fits (as cheap as without a bound).
        match kind {
            StdEvent::Print | StdEvent::PrintTemplate if text.len() <= room => {
                output.out(text);
                self.output_used += text.len() as u64;
                Ok(())
            }
            StdEvent::Println | StdEvent::Eprintln if text.len() < room => {
                self.text.clear();
                self.text.push_str(text);
                self.text.push('\n');
                if kind == StdEvent::Println {
                    output.out(&self.text);
                } else {
                    output.err(&self.text);
                }
                self.output_used += self.text.len() as u64;
                Ok(())
            }
            _ => self.write_std_cut(output, kind, text, room),
        }
    }

    /// [`RunState::write_std`] of a write that does not fit (the room is less than the text).
    #[cold]
    #[inline(never)]
    fn write_std_cut(
        &mut self,
        output: &dyn OutputSink,
        kind: StdEvent,
        text: &str,
        room: usize,
    ) -> Result<(), Limit> {
        match kind {
            StdEvent::Print | StdEvent::PrintTemplate => {
                let written = prefix_within(text, room);
                if !written.is_empty() {
                    output.out(written);
                }
                self.output_used += written.len() as u64;
                Err(Limit::Output)
            }
            StdEvent::Println | StdEvent::Eprintln => {
                // One write of the line and its newline, so a sink never sees half a line that
                // fits.
                let mut line = std::mem::take(&mut self.text);
                let mut bounded = BoundedText::new(&mut line, room);
                bounded.push(text);
                bounded.push("\n");
                let stream = if kind == StdEvent::Println {
                    Stream::Out
                } else {
                    Stream::Err
                };
                let result = self.finish_write(output, stream, &bounded);
                self.text = line;
                result
            }
        }
    }

    /// Writes text formatted within [`RunState::output_room`] and counts it; `Limit::Output`
    /// when some of it was cut.
    #[inline]
    pub(crate) fn finish_write(
        &mut self,
        output: &dyn OutputSink,
        stream: Stream,
        text: &BoundedText<'_>,
    ) -> Result<(), Limit> {
        let written = text.as_str();
        if !written.is_empty() || !text.cut() {
            match stream {
                Stream::Out => output.out(written),
                Stream::Err => output.err(written),
            }
        }
        self.output_used += written.len() as u64;
        if text.cut() {
            Err(Limit::Output)
        } else {
            Ok(())
        }
    }
}

/// Which `std.io` stream a write goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
}

/// Fills `slice` with `value`, skipping the call when it is empty: on this machine glibc's memset
/// of 0 bytes at the dangling address of an empty `Vec` (a masked store to an unmapped page) costs
/// about 90 ns, while writing nothing.
fn zero<T: Copy>(slice: &mut [T], value: T) {
    if !slice.is_empty() {
        slice.fill(value);
    }
}

/// Ints below this are converted to `str` with no formatting, in both tiers (generated code
/// with no call): their text is a pair of [`small_int_pairs`].
pub(crate) const SMALL_INTS: u64 = 1_000;

/// The decimal text of every int in `0..SMALL_INTS` as a (pointer, length) pair, in a table
/// built once per process (16 KB of pairs over 3,000 bytes of digits, never freed): what itoa
/// would have written into a conversion buffer, as text that outlives every run (like a
/// literal). Loop indices, counters and status codes are converted this way.
pub(crate) fn small_int_pairs() -> &'static [[u64; 2]] {
    type Table = (
        [[u64; 2]; SMALL_INTS as usize],
        [u8; 3 * SMALL_INTS as usize],
    );
    static TABLE: std::sync::OnceLock<Box<Table>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table: Box<Table> = Box::new((
            [[0; 2]; SMALL_INTS as usize],
            [b'0'; 3 * SMALL_INTS as usize],
        ));
        for v in 0..SMALL_INTS as usize {
            table.1[3 * v] = b'0' + (v / 100) as u8;
            table.1[3 * v + 1] = b'0' + (v / 10 % 10) as u8;
            table.1[3 * v + 2] = b'0' + (v % 10) as u8;
        }
        let digits = table.1.as_ptr() as u64;
        for v in 0..SMALL_INTS as usize {
            let skip = match v {
                0..=9 => 2,
                10..=99 => 1,
                _ => 0,
            };
            table.0[v] = [digits + (3 * v + skip) as u64, (3 - skip) as u64];
        }
        table
    });
    &table.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_int_pairs_are_the_decimal_texts() {
        let pairs = super::small_int_pairs();
        assert_eq!(pairs.len() as u64, super::SMALL_INTS);
        for (v, &[ptr, len]) in pairs.iter().enumerate() {
            // SAFETY: every pair points into the process's static digits table.
            let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len as usize) };
            assert_eq!(bytes, v.to_string().as_bytes());
        }
    }
}
