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
