//! Limits: what the front end accepts, and what a run may use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Bounds on what the front end accepts, so that no input can exhaust the stack or memory.
/// Exceeding one is error E0105.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrontEndLimits {
    pub max_source_bytes: usize,
    /// Brackets and continuation blocks nested in one another.
    pub max_nesting: usize,
    /// Steps after subflows are inlined into their callers.
    pub max_steps: usize,
    /// Steps nested in one another after subflows are inlined (every pass over the IR recurses
    /// this deep).
    pub max_depth: usize,
    /// Bytes of one flow state.
    pub max_state_bytes: usize,
    /// Bindings, loop variables, accumulator fields, payload fields and temporaries of one flow
    /// after inlining.
    pub max_bindings: usize,
}

impl Default for FrontEndLimits {
    fn default() -> Self {
        FrontEndLimits {
            max_source_bytes: 1 << 20,
            max_nesting: 64,
            max_steps: 100_000,
            max_depth: 256,
            max_state_bytes: 1 << 20,
            max_bindings: 65_536,
        }
    }
}

/// What one run may use. `None` means unlimited.
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
}

/// Stops a run from another thread. Cheap to clone; a triggered handle stays triggered until
/// [`InterruptHandle::reset`].
#[derive(Clone, Debug, Default)]
pub struct InterruptHandle {
    flag: Arc<AtomicBool>,
}

impl InterruptHandle {
    pub fn new() -> InterruptHandle {
        InterruptHandle::default()
    }

    pub fn interrupt(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        self.flag.store(false, Ordering::Relaxed);
    }

    pub fn is_interrupted(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// The flag itself, which generated code reads at loop back-edges and dispatches.
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.flag
    }
}

/// A coarse clock for deadlines, as in wasmtime's epoch interruption: a ticker thread (started by
/// the first run with a deadline) adds one every millisecond. Both tiers compare it with the run's
/// deadline epoch at loop back-edges and dispatches (a load and a compare, no system call) and
/// read the real clock only once it has passed.
pub(crate) mod epoch {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Once;
    use std::time::{Duration, Instant};

    static EPOCH: AtomicU64 = AtomicU64::new(0);
    static TICKER: Once = Once::new();
    const TICK: Duration = Duration::from_millis(1);

    /// The counter generated code reads.
    pub fn counter() -> &'static AtomicU64 {
        &EPOCH
    }

    pub fn now() -> u64 {
        EPOCH.load(Ordering::Relaxed)
    }

    /// The epoch from which `deadline` may have passed. Every tick lasts at least a millisecond,
    /// so reaching it means at least the time left has gone by.
    pub fn of_deadline(deadline: Instant) -> u64 {
        TICKER.call_once(|| {
            // If the ticker cannot start, deadlines are read from the clock at every check.
            let _ = std::thread::Builder::new()
                .name("koru-jit-epoch".into())
                .spawn(|| loop {
                    std::thread::sleep(TICK);
                    EPOCH.fetch_add(1, Ordering::Relaxed);
                });
        });
        let left = deadline.saturating_duration_since(Instant::now());
        now().saturating_add((left.as_micros() / TICK.as_micros()) as u64)
    }
}
