//! The interpreter tier: runs the flow's register bytecode ([`code`], compiled once from the typed
//! IR and the layout) over the flow state laid out by the layout, the frame native code uses too.
//!
//! No hash maps and no string keys: every local is a fixed offset, every event an index, every
//! branch a number. Literal strings are never copied (the state holds pointers to the program's
//! text); strings made at run time are copied into buffers that keep their capacity across runs.

pub(crate) mod code;
mod vm;

pub(crate) use code::Bytecode;

use crate::host::{HostEvent, OutputSink, Registry, TraceLevel, TraceMarker};
use crate::ir::*;
use crate::layout::Layout;
use crate::limits::RunLimits;
use crate::outcome::{ErrorCode, Limit};
use crate::span::Span;
use crate::state::{RunState, Trap};
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

/// Compiles the interpreter's bytecode for `program` and sizes the frame for its temporaries.
pub(crate) fn prepare(program: &Program, layout: &mut Layout) -> Bytecode {
    let code = Bytecode::compile(program, layout);
    layout.frame_words = code.frame_words;
    code
}

/// Runs every top-level flow of `program` (compiled as `code`); returns the value of the last
/// one.
#[allow(clippy::too_many_arguments)]
pub fn run(
    code: &Bytecode,
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
    // The first iteration looks at the limits (see `checkpoint`).
    let iteration_stop = state.iterations;
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
        value: u32::MAX,
        osr_countdown: tiering.map_or(OSR_CHECK_INTERVAL, |t| {
            t.check_interval().clamp(1, OSR_CHECK_INTERVAL)
        }),
    };
    // A host panic unwinds through the interpreter's own frames (plain Rust; the run state is
    // reset before its next use) to here: caught once per run rather than once per call.
    let result = catch_unwind(AssertUnwindSafe(|| exec.exec(code)));
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
    /// The value of the last top-level flow so far (`u32::MAX`: none), kept out of the
    /// executor's registers.
    value: u32,
}

impl Exec<'_> {
    /// The trace line of `event` returning `value` (SPEC 13). Called behind a test of
    /// `trace_dispatches` or `trace_all`, so that an untraced run pays one test of a bool and
    /// evaluates none of the arguments, in debug builds too.
    #[inline(never)]
    fn write_trace(&mut self, event: &str, marker: TraceMarker, value: ValueId) {
        crate::host::write_trace_line(self.state, self.program, self.layout, event, marker, value);
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

    /// One loop iteration. The iteration limit is exact; the interrupt and the deadline are
    /// looked at every [`crate::limits::ClockPacer::grant`] iterations, as native code's budget
    /// refill does.
    ///
    /// # Safety
    ///
    /// `loop_index` is below `self.state.loop_iterations.len()` (the executor checks the
    /// counters against the code's loops once, and `Bytecode::verify` every op's loop).
    #[inline(always)]
    unsafe fn tick(&mut self, loop_index: u32) -> Result<(), Trap> {
        if self.state.iterations >= self.iteration_stop {
            self.checkpoint()?;
        }
        self.state.iterations += 1;
        // SAFETY: the caller's.
        unsafe {
            *self
                .state
                .loop_iterations
                .get_unchecked_mut(loop_index as usize) += 1;
        }
        Ok(())
    }

    /// The iteration limit, the interrupt and the deadline (read from the clock as native
    /// code's refill reads it, paced by `state.pacer`); then the next stop.
    #[cold]
    #[inline(never)]
    fn checkpoint(&mut self) -> Result<(), Trap> {
        let iterations = self.state.iterations;
        if iterations >= self.iteration_limit {
            return Err(Trap::Exhausted(Limit::LoopIterations));
        }
        if let Some(interrupt) = self.interrupt {
            if interrupt.is_interrupted() {
                return Err(Trap::Exhausted(Limit::Interrupted));
            }
        }
        let mut grant = u64::from(crate::limits::ClockPacer::MAX_GRANT);
        if let Some(deadline) = self.deadline {
            let now = match self.state.pacer.check() {
                Some(now) => Some(now),
                None if crate::limits::epoch::now() >= self.deadline_epoch => Some(Instant::now()),
                None => None,
            };
            if now.is_some_and(|now| now >= deadline) {
                return Err(Trap::Exhausted(Limit::Deadline));
            }
            grant = self.state.pacer.grant();
        }
        self.iteration_stop = self.iteration_limit.min(iterations + grant);
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
    /// Whether it did look (then the frame may have been touched through the state).
    #[inline(always)]
    fn back_edge(&mut self, loop_index: u32) -> Result<bool, Trap> {
        if self.tiering.is_none() {
            return Ok(false);
        }
        self.osr_countdown -= 1;
        if self.osr_countdown != 0 {
            return Ok(false);
        }
        self.osr_check(loop_index)?;
        Ok(true)
    }

    #[cold]
    #[inline(never)]
    fn osr_check(&mut self, loop_index: u32) -> Result<(), Trap> {
        let Some(tiering) = self.tiering else {
            return Ok(());
        };
        self.osr_countdown = tiering.check_interval().clamp(1, OSR_CHECK_INTERVAL);
        match tiering.back_edge(loop_index, self.state) {
            Some(result) => Err(Trap::Finished(Box::new(result))),
            None => Ok(()),
        }
    }
}
