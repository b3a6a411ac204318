//! The interpreter tier: walks the typed IR over the flow state laid out by the layout.
//!
//! No hash maps and no string keys: every local is a fixed offset, every event an index, every
//! branch a number. Literal strings are never copied (the state holds pointers to the program's
//! text); strings made at run time are copied into buffers that keep their capacity across runs.

mod eval;

use crate::host::{
    BoundedText, HostEvent, Implementation, OutputSink, Registry, ReplyOut, TraceLevel, TraceMarker,
};
use crate::ir::*;
use crate::layout::Layout;
use crate::limits::RunLimits;
use crate::outcome::{ErrorCode, Limit};
use crate::span::Span;
use crate::state::{RunState, Stream, Trap};
use crate::types::Type;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// How often (in back-edges of one loop) the interpreter asks the engine whether to move on.
pub const OSR_CHECK_INTERVAL: u32 = 256;

/// What the engine does at hot loop back-edges (tiering). The interpreter calls it every
/// [`OSR_CHECK_INTERVAL`] back-edges, with the flow state complete for the loop's next
/// iteration. `Some` means the run continued elsewhere (native code from that loop head) and
/// finished with this result.
pub trait Tiering {
    fn back_edge(
        &self,
        loop_index: u32,
        state: &mut RunState,
    ) -> Option<Result<Option<ValueId>, Trap>>;

    /// Back-edges between two calls of [`Tiering::back_edge`] (at most
    /// [`OSR_CHECK_INTERVAL`]).
    fn check_interval(&self) -> u32 {
        OSR_CHECK_INTERVAL
    }
}

/// Runs every top-level flow of `program`; returns the value of the last one.
pub fn run(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    state: &mut RunState,
    limits: &RunLimits,
    output: &dyn OutputSink,
    tiering: Option<&dyn Tiering>,
) -> Result<Option<ValueId>, Trap> {
    state.output_limit = limits.max_output_bytes.unwrap_or(u64::MAX);
    state.handle_limit = limits
        .max_handles
        .unwrap_or(crate::state::DEFAULT_MAX_HANDLES);
    state.set_trace(program, limits);
    let trace = if state.trace.is_some() {
        program.trace
    } else {
        TraceLevel::Off
    };
    state.pacer = crate::limits::ClockPacer::new();
    let iteration_limit = limits.max_iterations.unwrap_or(u64::MAX);
    // With a deadline, the loop checks also read the clock now and then (see `checkpoint`).
    let iteration_stop = match limits.deadline {
        Some(_) => iteration_limit.min(state.iterations + state.pacer.grant()),
        None => iteration_limit,
    };
    let mut exec = Exec {
        program,
        layout,
        events: registry.events(),
        state,
        output,
        fuel_limit: limits.fuel.unwrap_or(u64::MAX),
        iteration_limit,
        iteration_stop,
        deadline: limits.deadline,
        deadline_epoch: limits
            .deadline
            .map_or(u64::MAX, crate::limits::epoch::of_deadline),
        interrupt: limits.interrupt.as_ref(),
        tiering,
        trace_dispatches: trace >= TraceLevel::Dispatches,
        trace_all: trace == TraceLevel::All,
        osr_countdown: tiering.map_or(OSR_CHECK_INTERVAL, |t| {
            t.check_interval().clamp(1, OSR_CHECK_INTERVAL)
        }),
    };
    // A host panic unwinds through the interpreter's own frames (plain Rust; the run state is
    // reset before its next use) to here: caught once per run rather than once per call.
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut last = None;
        for flow in &program.flows {
            last = Some(exec.step(flow)?);
        }
        Ok(last)
    }));
    let result = result.map(|r| match r {
        Err(Trap::Finished(done)) => *done,
        other => other,
    });
    result.unwrap_or_else(|panic| {
        let site = layout.replies.get(exec.state.calling as usize);
        let (event, span) = site.map_or((None, Span::default()), |plan| {
            (Some(plan.event.clone()), plan.span)
        });
        Err(Trap::error(
            ErrorCode::HostPanic,
            crate::host::panic_message(&panic),
            event,
            span,
        ))
    })
}

pub(crate) struct Exec<'r> {
    pub program: &'r Program,
    pub layout: &'r Layout,
    events: &'r [HostEvent],
    pub state: &'r mut RunState,
    output: &'r dyn OutputSink,
    fuel_limit: u64,
    iteration_limit: u64,
    /// The iteration count at which [`Exec::checkpoint`] runs: the limit, or sooner with a
    /// deadline.
    iteration_stop: u64,
    deadline: Option<Instant>,
    deadline_epoch: u64,
    interrupt: Option<&'r crate::limits::InterruptHandle>,
    tiering: Option<&'r dyn Tiering>,
    /// What this run traces (the program's level, with a sink): dispatches, and everything.
    trace_dispatches: bool,
    trace_all: bool,
    osr_countdown: u32,
}

impl Exec<'_> {
    /// The trace line of `event` returning `value` (SPEC 13). Called behind a test of
    /// `trace_dispatches` or `trace_all`, so that an untraced run pays one test of a bool and
    /// evaluates none of the arguments, in debug builds too.
    #[inline(never)]
    fn write_trace(&mut self, event: &str, marker: TraceMarker, value: ValueId) {
        crate::host::write_trace_line(self.state, self.program, self.layout, event, marker, value);
    }

    fn step(&mut self, step: &Step) -> Result<ValueId, Trap> {
        match step {
            Step::Invoke(s) => self.invoke(s),
            Step::Call(s) => self.call(s),
            Step::For(s) => self.for_loop(s),
            Step::If(s) => {
                let branch = u32::from(!self.eval_bool(&s.cond)?);
                if self.trace_all {
                    self.write_trace("if", TraceMarker::None, ValueId(s.first_value.0 + branch))
                };
                self.select(&s.arms, branch, s.first_value, "if", s.span)
            }
            Step::While(s) => self.while_loop(s),
            Step::Capture(s) => self.capture(s),
            Step::Update(s) => {
                self.update(s)?;
                Ok(s.value)
            }
            Step::Construct(s) => {
                for (local, expr) in &s.fields {
                    self.eval_into(expr, *local)?;
                }
                Ok(s.value)
            }
            Step::Match(s) => self.match_step(s),
            Step::Yield(value) => Ok(*value),
        }
    }

    /// `match`: the argument once into its local, then the first arm (source order, catch-alls
    /// last) with a matching pattern whose guard holds.
    fn match_step(&mut self, s: &MatchStep) -> Result<ValueId, Trap> {
        let slot = self.layout.slot(s.value);
        let offset = slot.offset as usize;
        let (bits, len) = if slot.ty == Type::Str {
            let (mut ptr, len) = self.eval_str(&s.scrutinee)?;
            if slot.buffer != crate::layout::NO_BUFFER {
                let buffer = &mut self.state.buffers[slot.buffer as usize];
                buffer.clear();
                // SAFETY: `eval_str` yields live UTF-8 (see `assign_from_scratch`), never this
                // buffer (which only this match writes, before its arms run).
                buffer.push_str(unsafe { crate::host::word_str(ptr, len) });
                ptr = buffer.as_ptr() as u64;
            }
            self.state.frame[offset + 1] = len;
            (ptr, len)
        } else {
            (self.eval(&s.scrutinee)?, 0)
        };
        self.state.frame[offset] = bits;
        let text = (slot.ty == Type::Str).then(|| {
            // SAFETY: as above: live UTF-8 for the whole match (the buffer is not rewritten
            // while its arms run).
            unsafe { crate::host::word_str(bits, len) }
        });
        for arm in &s.arms {
            let hit = arm.patterns.is_empty()
                || arm.patterns.iter().any(|p| match (p, text) {
                    (Pattern::Str(want), Some(text)) => **want == *text,
                    (Pattern::Bool(want), None) => u64::from(*want) == bits,
                    (pattern, None) => pattern.matches_int(bits as i64),
                    _ => false,
                });
            if !hit {
                continue;
            }
            if let Some(guard) = &arm.arm.guard {
                if !self.eval_bool(guard)? {
                    continue;
                }
            }
            if self.trace_all {
                self.write_trace("match", TraceMarker::None, s.matched)
            };
            return match &arm.arm.step {
                Some(step) => self.step(step),
                None => Ok(s.matched),
            };
        }
        // Exhaustiveness was checked: every value reaches an arm (an int or str match has a
        // catch-all, a bool one covers both values without guards).
        Err(Trap::error(
            ErrorCode::NoBranchMatch,
            "no continuation of `match` took the value".to_string(),
            Some("match".into()),
            s.span,
        ))
    }

    /// Takes the first continuation for `branch` whose guard holds and runs its step.
    fn select(
        &mut self,
        arms: &Arms,
        branch: u32,
        first_value: ValueId,
        event: &str,
        span: Span,
    ) -> Result<ValueId, Trap> {
        let value = ValueId(first_value.0 + branch);
        if arms.arms.is_empty() {
            return Ok(value);
        }
        if let Some(index) = arms.unguarded[branch as usize] {
            return match &arms.arms[index as usize].step {
                Some(step) => self.step(step),
                None => Ok(value),
            };
        }
        let candidates = &arms.by_branch[branch as usize];
        // Only exempt branches (`else`, `done`) can have no continuation once the check passed.
        if candidates.is_empty() {
            return Ok(value);
        }
        for &index in candidates {
            let arm = &arms.arms[index as usize];
            if let Some(guard) = &arm.guard {
                if !self.eval_bool(guard)? {
                    continue;
                }
            }
            return match &arm.step {
                Some(step) => self.step(step),
                None => Ok(value),
            };
        }
        let name = &self.program.values[value.0 as usize].branch;
        Err(Trap::error(
            ErrorCode::NoBranchMatch,
            format!("no continuation of `{event}` took branch `{name}`"),
            Some(event.into()),
            span,
        ))
    }

    /// Charges a host dispatch: fuel, then the interrupt and the deadline.
    fn charge(&mut self, cost: u64, charged: u32) -> Result<(), Trap> {
        self.charge_only(cost, charged)?;
        self.poll()
    }

    /// Charges `cost` fuel for `charged` (SPEC 7: refused when it would pass the limit).
    fn charge_only(&mut self, cost: u64, charged: u32) -> Result<(), Trap> {
        let used = self.state.fuel_used.saturating_add(cost);
        if used > self.fuel_limit {
            return Err(Trap::Exhausted(Limit::Fuel));
        }
        self.state.fuel_used = used;
        self.state.last_event = charged;
        Ok(())
    }

    /// One loop iteration: the iteration limit, the interrupt, and now and then the deadline.
    #[inline]
    fn tick(&mut self, loop_index: u32) -> Result<(), Trap> {
        if self.state.iterations >= self.iteration_stop {
            self.checkpoint()?;
        }
        self.state.iterations += 1;
        self.state.loop_iterations[loop_index as usize] += 1;
        self.poll()
    }

    /// The iteration limit, and with a deadline the real clock (as native code's budget refill
    /// reads it, paced by `state.pacer`): due every [`crate::limits::ClockPacer::grant`]
    /// iterations.
    #[cold]
    #[inline(never)]
    fn checkpoint(&mut self) -> Result<(), Trap> {
        let iterations = self.state.iterations;
        if iterations >= self.iteration_limit {
            return Err(Trap::Exhausted(Limit::LoopIterations));
        }
        if let Some(deadline) = self.deadline {
            if self.state.pacer.check().is_some_and(|now| now >= deadline) {
                return Err(Trap::Exhausted(Limit::Deadline));
            }
            self.iteration_stop = self
                .iteration_limit
                .min(iterations + self.state.pacer.grant());
        }
        Ok(())
    }

    /// The interrupt, and the deadline: its epoch first, the clock only once that has passed.
    #[inline]
    fn poll(&mut self) -> Result<(), Trap> {
        if let Some(interrupt) = self.interrupt {
            if interrupt.is_interrupted() {
                return Err(Trap::Exhausted(Limit::Interrupted));
            }
        }
        if crate::limits::epoch::now() >= self.deadline_epoch {
            if let Some(deadline) = self.deadline {
                if Instant::now() >= deadline {
                    return Err(Trap::Exhausted(Limit::Deadline));
                }
            }
        }
        Ok(())
    }

    /// At a loop's back-edge: now and then, let the engine move the run on (see [`Tiering`]).
    #[inline]
    fn back_edge(&mut self, loop_index: u32) -> Result<(), Trap> {
        let Some(tiering) = self.tiering else {
            return Ok(());
        };
        self.osr_countdown -= 1;
        if self.osr_countdown != 0 {
            return Ok(());
        }
        self.osr_countdown = tiering.check_interval().clamp(1, OSR_CHECK_INTERVAL);
        match tiering.back_edge(loop_index, self.state) {
            Some(result) => Err(Trap::Finished(Box::new(result))),
            None => Ok(()),
        }
    }

    fn for_loop(&mut self, s: &ForLoop) -> Result<ValueId, Trap> {
        let start = self.eval_int(&s.start)?;
        let end = self.eval_int(&s.end)?;
        self.state.frame[self.layout.slot(s.bound).offset as usize] = end as u64;
        let offset = self.layout.slot(s.index).offset as usize;
        let mut i = start;
        while i < end {
            self.tick(s.loop_index)?;
            self.state.frame[offset] = i as u64;
            if self.trace_all {
                self.write_trace("for", TraceMarker::None, s.first_value)
            };
            if !s.arms.arms.is_empty() {
                self.select(&s.arms, 0, s.first_value, "for", s.span)?;
            }
            self.back_edge(s.loop_index)?;
            i += 1;
        }
        let done = ValueId(s.first_value.0 + 1);
        if self.trace_all {
            self.write_trace("for", TraceMarker::None, done)
        };
        self.select(&s.arms, 1, s.first_value, "for", s.span)
    }

    fn while_loop(&mut self, s: &WhileLoop) -> Result<ValueId, Trap> {
        while self.eval_bool(&s.cond)? {
            self.tick(s.loop_index)?;
            if self.trace_all {
                self.write_trace("while", TraceMarker::None, s.first_value)
            };
            if !s.arms.arms.is_empty() {
                self.select(&s.arms, 0, s.first_value, "while", s.span)?;
            }
            self.back_edge(s.loop_index)?;
        }
        let done = ValueId(s.first_value.0 + 1);
        if self.trace_all {
            self.write_trace("while", TraceMarker::None, done)
        };
        self.select(&s.arms, 1, s.first_value, "while", s.span)
    }

    fn capture(&mut self, s: &CaptureStep) -> Result<ValueId, Trap> {
        self.state.scratch.clear();
        for expr in &s.init {
            self.push_scratch(expr)?;
        }
        let mut at = 0;
        for &local in &s.fields {
            self.assign_from_scratch(local, at);
            at += self.layout.slot(local).ty.words() as usize;
        }
        match &s.yield_of {
            Some(subflow) => {
                if self.trace_all {
                    self.write_trace(subflow, TraceMarker::Yield, s.first_value)
                }
            }
            None => {
                if self.trace_all {
                    self.write_trace("capture", TraceMarker::None, s.first_value)
                }
            }
        }
        if !s.arms.arms.is_empty() {
            self.select(&s.arms, 0, s.first_value, "capture", s.span)?;
        }
        if s.yield_of.is_none() {
            let captured = ValueId(s.first_value.0 + 1);
            if self.trace_all {
                self.write_trace("capture", TraceMarker::None, captured)
            };
        }
        self.select(&s.arms, 1, s.first_value, "capture", s.span)
    }

    /// `captured { ... }`: every expression is evaluated before any field is assigned.
    fn update(&mut self, s: &CaptureUpdate) -> Result<(), Trap> {
        // One non-`str` field: nothing else is assigned, so evaluate and store directly.
        if let [(local, expr)] = s.assigns.as_slice() {
            let slot = self.layout.slot(*local);
            if slot.ty != Type::Str {
                let bits = self.eval_operand(expr)?;
                self.state.frame[slot.offset as usize] = bits;
                return Ok(());
            }
        }
        // `scratch` may be in use by an enclosing update's evaluation only if expressions could
        // run steps, which they cannot; so it is free here.
        self.state.scratch.clear();
        for (_, expr) in &s.assigns {
            self.push_scratch(expr)?;
        }
        let mut at = 0;
        for (local, _) in &s.assigns {
            self.assign_from_scratch(*local, at);
            at += self.layout.slot(*local).ty.words() as usize;
        }
        Ok(())
    }

    fn push_scratch(&mut self, expr: &Expr) -> Result<(), Trap> {
        if self.expr_type(expr) == Type::Str {
            let (ptr, len) = self.eval_str(expr)?;
            self.state.scratch.push(ptr);
            self.state.scratch.push(len);
        } else {
            let bits = self.eval(expr)?;
            self.state.scratch.push(bits);
        }
        Ok(())
    }

    /// Assigns an accumulator field from the scratch words at `at` (a `str` is copied into the
    /// field's other buffer, which then becomes current).
    fn assign_from_scratch(&mut self, local: LocalId, at: usize) {
        let slot = self.layout.slot(local);
        let offset = slot.offset as usize;
        if slot.ty == Type::Str {
            let (ptr, len) = (self.state.scratch[at], self.state.scratch[at + 1]);
            let half = !self.state.current_half[slot.buffer as usize];
            self.state.current_half[slot.buffer as usize] = half;
            let buffer = &mut self.state.buffers[slot.buffer as usize + usize::from(half)];
            buffer.clear();
            // SAFETY: (ptr, len) came from `eval_str`, which only yields strings that are alive:
            // literals of the program, buffers of this run state (the other half of this field is
            // not the one being written), or caller inputs that outlive the run.
            buffer.push_str(unsafe { crate::host::word_str(ptr, len) });
            self.state.frame[offset] = buffer.as_ptr() as u64;
            self.state.frame[offset + 1] = buffer.len() as u64;
        } else {
            self.state.frame[offset] = self.state.scratch[at];
        }
    }

    fn call(&mut self, s: &SubflowCall) -> Result<ValueId, Trap> {
        for (local, argument) in &s.inputs {
            self.write_argument(argument, *local)?;
        }
        // No poll here: an inlined subflow's (or mock's) body is straight-line code between
        // polls (loops and host calls poll), as in native code.
        self.charge_only(s.cost, LAST_EVENT_SUBFLOW | s.name_index)?;
        let value = self.step(&s.body)?;
        let Some(exit) = s.exits.iter().find(|e| e.value == value) else {
            return Err(Trap::error(
                ErrorCode::NoBranchMatch,
                format!(
                    "subflow `{}` ended with a branch its event does not declare",
                    s.name
                ),
                Some(s.name.clone()),
                s.span,
            ));
        };
        for &(from, to) in &exit.copies {
            let (from, to) = (self.layout.slot(from), self.layout.slot(to));
            let words = from.ty.words() as usize;
            let (f, t) = (from.offset as usize, to.offset as usize);
            self.state.frame.copy_within(f..f + words, t);
        }
        let name = s.name.clone();
        let value = ValueId(s.first_value.0 + exit.branch);
        if self.trace_dispatches {
            self.write_trace(&name, TraceMarker::of_mocked(s.mocked), value)
        };
        self.select(&s.arms, exit.branch, s.first_value, &name, s.span)
    }

    /// Evaluates an argument into a subflow input (a `str` is pointed at, not copied).
    fn write_argument(&mut self, argument: &Argument, local: LocalId) -> Result<(), Trap> {
        let offset = self.layout.slot(local).offset as usize;
        match argument.format_into {
            Some(buffer) => {
                let (ptr, len) = self.format_argument(&argument.expr, buffer)?;
                self.state.frame[offset] = ptr;
                self.state.frame[offset + 1] = len;
                Ok(())
            }
            None => self.eval_into(&argument.expr, local),
        }
    }

    /// Formats a number or bool into a conversion buffer (SPEC 2.1); returns (pointer, length).
    fn format_argument(&mut self, expr: &Expr, buffer: BufferId) -> Result<(u64, u64), Trap> {
        let bits = self.eval(expr)?;
        Ok(self
            .state
            .format_conversion(buffer.0 as usize, expr.ty(), bits))
    }

    fn invoke(&mut self, s: &Invoke) -> Result<ValueId, Trap> {
        let event = &self.program.events[s.event.0 as usize];
        let host = &self.events[event.host];
        let branch = match &s.args {
            Arguments::Inputs(args) => {
                self.state.args.clear();
                for argument in args {
                    match argument.format_into {
                        Some(buffer) => {
                            let (ptr, len) = self.format_argument(&argument.expr, buffer)?;
                            self.state.args.push(ptr);
                            self.state.args.push(len);
                        }
                        None => {
                            if self.expr_type(&argument.expr) == Type::Str {
                                let (ptr, len) = self.eval_str(&argument.expr)?;
                                self.state.args.push(ptr);
                                self.state.args.push(len);
                            } else {
                                let bits = self.eval_operand(&argument.expr)?;
                                self.state.args.push(bits);
                            }
                        }
                    }
                }
                self.charge(event.cost, s.event.0 + 1)?;
                match &host.implementation {
                    Implementation::Closure(closure) => {
                        let function = &closure.erased;
                        let plan = &self.layout.replies[s.site as usize];
                        let state = &mut *self.state;
                        if plan.obligations.is_some() {
                            let args = std::mem::take(&mut state.args);
                            state.release_arguments(plan, &args);
                            state.args = args;
                        }
                        let mut out = ReplyOut {
                            frame: &mut state.frame,
                            buffers: &mut state.buffers,
                            plan,
                            run: crate::host::RunView {
                                output: self.output,
                                output_used: std::cell::Cell::from_mut(&mut state.output_used),
                                output_limit: state.output_limit,
                                handles_opened: state.handles_opened,
                            },
                        };
                        state.calling = s.site;
                        match function(&state.args, &mut out) {
                            Ok(branch) => {
                                state.record_opened(plan, branch).map_err(Trap::Error)?;
                                branch
                            }
                            Err(error) => {
                                return Err(Trap::error(
                                    ErrorCode::HostError,
                                    error.into_message(),
                                    Some(event.name.clone()),
                                    s.span,
                                ));
                            }
                        }
                    }
                    Implementation::Std(kind) => {
                        // SAFETY: the checker gave std events exactly one `str` input, so the
                        // arguments are one (pointer, length) pair of live UTF-8.
                        let text = unsafe {
                            crate::host::word_str(self.state.args[0], self.state.args[1])
                        };
                        self.state
                            .write_std(self.output, *kind, text)
                            .map_err(Trap::Exhausted)?;
                        0
                    }
                    Implementation::Missing => {
                        return Err(Trap::error(
                            ErrorCode::HostError,
                            format!("event `{}` has no implementation", event.name),
                            Some(event.name.clone()),
                            s.span,
                        ));
                    }
                }
            }
            Arguments::Template(parts) => {
                // Formatted within the room the output bound leaves (holes past it are still
                // evaluated, for their errors, as native code does before the dispatch).
                let mut text = std::mem::take(&mut self.state.text);
                let mut bounded = BoundedText::new(&mut text, self.state.output_room());
                let mut written = self.format_template(parts, &mut bounded);
                if written.is_ok() {
                    written = self.charge(event.cost, s.event.0 + 1);
                }
                if written.is_ok() {
                    bounded.push("\n");
                    if let Err(limit) = self.state.finish_write(self.output, Stream::Out, &bounded)
                    {
                        written = Err(Trap::Exhausted(limit));
                    }
                }
                self.state.text = text;
                written?;
                0
            }
        };
        if self.trace_dispatches {
            self.write_trace(
                &event.name,
                TraceMarker::None,
                ValueId(s.first_value.0 + branch),
            )
        };
        self.select(&s.arms, branch, s.first_value, &event.name, s.span)
    }

    fn format_template(
        &mut self,
        parts: &[TemplatePart],
        text: &mut BoundedText<'_>,
    ) -> Result<(), Trap> {
        use std::fmt::Write;
        for part in parts {
            match part {
                TemplatePart::Text(t) => text.push(t),
                TemplatePart::Hole(expr) => match self.expr_type(expr) {
                    Type::Str => {
                        let (ptr, len) = self.eval_str(expr)?;
                        // SAFETY: `eval_str` yields live UTF-8 (see `assign_from_scratch`).
                        text.push(unsafe { crate::host::word_str(ptr, len) });
                    }
                    Type::Int => text.push(itoa::Buffer::new().format(self.eval(expr)? as i64)),
                    Type::Float => {
                        let bits = self.eval(expr)?;
                        if !text.cut() {
                            let _ = write!(text, "{}", f64::from_bits(bits));
                        }
                    }
                    Type::Bool => text.push(if self.eval(expr)? != 0 {
                        "true"
                    } else {
                        "false"
                    }),
                },
            }
        }
        Ok(())
    }
}
