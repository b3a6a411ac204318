//! Limits: what the front end accepts, and what a run may use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Bounds on what the front end accepts, so that no input can exhaust the stack or memory.
/// Exceeding one is error E0105.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrontEndLimits {
    /// Bytes of one source text.
    pub max_source_bytes: usize,
    /// Brackets and continuation blocks nested in one another.
    pub max_nesting: usize,
    /// Steps after subflows are inlined into their callers. It also bounds what inlining copies
    /// besides steps: the expression nodes and continuations lowered again at each call of a
    /// subflow and at each `yield` may number at most 64 times this (1,280,000 by default);
    /// past it the call is E0105.
    pub max_steps: usize,
    /// Steps nested in one another after subflows are inlined (every pass over the IR recurses
    /// this deep).
    pub max_depth: usize,
    /// Bytes of one flow state.
    pub max_state_bytes: usize,
    /// Bindings, loop variables, accumulator fields, payload fields and temporaries of one flow
    /// after inlining.
    pub max_bindings: usize,
    /// Flow inputs of one source: those it declares (`~input { ... }`) and those the caller
    /// gives ([`crate::CompileOptions`]), together.
    pub max_inputs: usize,
}

impl Default for FrontEndLimits {
    fn default() -> Self {
        FrontEndLimits {
            max_source_bytes: 1 << 20,
            max_nesting: 64,
            max_steps: 20_000,
            max_depth: 256,
            max_state_bytes: 1 << 20,
            max_bindings: 65_536,
            max_inputs: 1_024,
        }
    }
}

/// What one run may use (SPEC 7). `None` means unlimited, and [`RunLimits::default`] limits
/// nothing: a host that runs untrusted flows sets at least `fuel` or `deadline`. A limit that
/// stops a run makes the outcome [`Outcome::Exhausted`](crate::Outcome::Exhausted); both tiers
/// stop at the same point with the same fuel used.
///
/// ```
/// use koru_jit::{CompileOptions, Engine, InterruptHandle, Inputs, Limit, Outcome, Registry, RunLimits};
/// use std::time::{Duration, Instant};
/// let engine = Engine::new(Registry::new());
/// let flow = engine
///     .compile("spin", "~while(true)\n| body |> _\n", &CompileOptions::default())
///     .unwrap();
/// let limits = RunLimits {
///     max_iterations: Some(1_000),
///     deadline: Some(Instant::now() + Duration::from_secs(5)),
///     ..RunLimits::default()
/// };
/// let outcome = flow.run(&Inputs::new(), &limits).unwrap();
/// assert!(matches!(outcome, Outcome::Exhausted { limit: Limit::LoopIterations, .. }));
///
/// // Another thread may stop a run through its handle; a triggered handle stops the next run
/// // at its first loop back-edge.
/// let interrupt = InterruptHandle::new();
/// interrupt.interrupt();
/// let limits = RunLimits { interrupt: Some(interrupt.clone()), ..RunLimits::default() };
/// let outcome = flow.run(&Inputs::new(), &limits).unwrap();
/// assert!(matches!(outcome, Outcome::Exhausted { limit: Limit::Interrupted, .. }));
/// ```
#[derive(Clone, Debug, Default)]
pub struct RunLimits {
    /// The sum of the costs of dispatched events.
    pub fuel: Option<u64>,
    /// `for` and `while` iterations, across the whole run.
    pub max_iterations: Option<u64>,
    /// A wall-clock deadline.
    pub deadline: Option<Instant>,
    /// Bytes of `std.io` output (program output and error output together). A write that does
    /// not fit writes the longest prefix that fits and ends at a UTF-8 character boundary, then
    /// the run stops at that dispatch (`Limit::Output`).
    pub max_output_bytes: Option<u64>,
    /// A handle another thread can trigger to stop the run.
    pub interrupt: Option<InterruptHandle>,
    /// Open obligations (SPEC 12) a run may hold; `None` is the default, 1,024. One more stops
    /// the run with `TooManyHandles` (and every open one is discharged).
    pub max_handles: Option<u64>,
    /// Leaves open obligations open when the run ends, listing them in the run's report, instead
    /// of discharging them (SPEC 12's auto-discharge is on unless this is set).
    pub keep_handles_open: bool,
    /// Where the run's trace lines go (SPEC 13), for a flow compiled with tracing
    /// ([`crate::CompileOptions::trace`]; a flow compiled without it writes no line).
    pub trace: Option<Arc<dyn crate::TraceSink>>,
    /// Trace lines the run may write. The first line past the bound (or past
    /// `max_trace_bytes`) is not written, the sink's [`crate::TraceSink::cut`] is called, and the
    /// run goes on without a trace: unlike output, a trace never stops the run.
    pub max_trace_lines: Option<u64>,
    /// Bytes of trace lines (without their line breaks) the run may write; a line that does not
    /// fit whole is not written (see `max_trace_lines`).
    pub max_trace_bytes: Option<u64>,
}

/// Stops a run from another thread. Cheap to clone; a triggered handle stays triggered until
/// [`InterruptHandle::reset`].
#[derive(Clone, Debug, Default)]
pub struct InterruptHandle {
    flag: Arc<AtomicBool>,
}

impl InterruptHandle {
    /// A handle not triggered.
    pub fn new() -> InterruptHandle {
        InterruptHandle::default()
    }

    /// Triggers the handle: runs that hold it stop at their next loop back-edge or dispatch
    /// with [`Limit::Interrupted`](crate::Limit::Interrupted), in either tier.
    pub fn interrupt(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Clears the trigger, so that the handle can serve later runs.
    pub fn reset(&self) {
        self.flag.store(false, Ordering::Relaxed);
    }

    /// Whether the handle is triggered.
    pub fn is_interrupted(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// The flag itself, which generated code reads at loop back-edges and dispatches.
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.flag
    }
}

/// A coarse clock for deadlines, as in wasmtime's epoch interruption: a ticker thread (started by
/// the first run with a deadline) wakes every millisecond and stores the real time elapsed since
/// a process-wide origin, in milliseconds. Both tiers compare it with the run's deadline epoch at
/// dispatches and loop checks (a load and a compare, no system call) and read the real clock only
/// once it has passed. A ticker that wakes late (a starved core) does not accumulate lag: its next
/// wake stores the real time again. Loops do not depend on it at all: [`ClockPacer`] reads the
/// real clock at their checks.
pub(crate) mod epoch {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    static EPOCH: AtomicU64 = AtomicU64::new(0);
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    static TICKING: AtomicBool = AtomicBool::new(false);
    const TICK: Duration = Duration::from_millis(1);

    /// The counter generated code reads.
    pub fn counter() -> &'static AtomicU64 {
        &EPOCH
    }

    pub fn now() -> u64 {
        EPOCH.load(Ordering::Relaxed)
    }

    fn millis_since(origin: Instant, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// The epoch from which `deadline` may have passed: the epoch never runs ahead of the clock,
    /// so it is reached no earlier than the millisecond in which the deadline falls.
    pub fn of_deadline(deadline: Instant) -> u64 {
        let origin = *ORIGIN.get_or_init(|| {
            let origin = Instant::now();
            let started = std::thread::Builder::new()
                .name("koru-jit-epoch".into())
                .spawn(move || loop {
                    std::thread::sleep(TICK);
                    EPOCH.store(millis_since(origin, Instant::now()), Ordering::Relaxed);
                });
            TICKING.store(started.is_ok(), Ordering::Relaxed);
            origin
        });
        if !TICKING.load(Ordering::Relaxed) {
            // No ticker: every check reads the clock.
            return 0;
        }
        millis_since(origin, deadline)
    }
}

/// When a run with a deadline reads the real clock at its loop checks (the native budget refill,
/// every [`ClockPacer::grant`] iterations at most, and the interpreter's equivalent), so that a
/// loop stops within a few milliseconds of its deadline whatever the epoch ticker does. The clock
/// (about 25 ns) is read every `every` checks, adapted to the time between reads: a read less than
/// 100 µs after the previous one doubles the grant up to 256 iterations, then `every` up to 8
/// (at most 2,048 iterations between reads, about 1% of the fastest loop); a read more than
/// 500 µs after the previous one halves `every`, then the grant down to 1 iteration (slow
/// iterations are checked more often).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClockPacer {
    last: Option<Instant>,
    every: u32,
    countdown: u32,
    grant: u32,
}

impl ClockPacer {
    pub const MAX_GRANT: u32 = 256;
    const MAX_EVERY: u32 = 8;
    const FAST: std::time::Duration = std::time::Duration::from_micros(100);
    const SLOW: std::time::Duration = std::time::Duration::from_micros(500);

    /// A pacer for a run starting now (`last` unset: the first check reads the clock).
    pub const fn new() -> ClockPacer {
        ClockPacer {
            last: None,
            every: 1,
            countdown: 1,
            grant: ClockPacer::MAX_GRANT,
        }
    }

    /// Iterations to run before the next check.
    #[inline]
    pub fn grant(&self) -> u64 {
        u64::from(self.grant)
    }

    /// One check: the time now when it is this check's turn to read the clock.
    #[inline]
    pub fn check(&mut self) -> Option<Instant> {
        if self.countdown > 1 {
            self.countdown -= 1;
            return None;
        }
        Some(self.read())
    }

    #[cold]
    #[inline(never)]
    fn read(&mut self) -> Instant {
        let now = Instant::now();
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            if gap < ClockPacer::FAST {
                if self.grant < ClockPacer::MAX_GRANT {
                    self.grant *= 2;
                } else if self.every < ClockPacer::MAX_EVERY {
                    self.every *= 2;
                }
            } else if gap > ClockPacer::SLOW {
                if self.every > 1 {
                    self.every /= 2;
                } else if self.grant > 1 {
                    self.grant /= 2;
                }
            }
        }
        self.last = Some(now);
        self.countdown = self.every;
        now
    }
}

impl Default for ClockPacer {
    fn default() -> Self {
        ClockPacer::new()
    }
}
