//! Per-flow counters: runs and loop iterations (what the tiering policy will read).

use crate::ir::Program;
use crate::state::RunState;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct Counters {
    runs: AtomicU64,
    dispatched_fuel: AtomicU64,
    loop_iterations: Vec<AtomicU64>,
}

/// A snapshot of a flow's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStats {
    pub runs: u64,
    /// Fuel used over all runs.
    pub fuel: u64,
    /// Iterations of each `for`/`while` loop over all runs, in source order.
    pub loop_iterations: Vec<u64>,
    /// Bytes of one flow state.
    pub state_bytes: usize,
    /// Steps after inlining.
    pub steps: usize,
}

impl Counters {
    pub fn new(loops: usize) -> Counters {
        Counters {
            runs: AtomicU64::new(0),
            dispatched_fuel: AtomicU64::new(0),
            loop_iterations: (0..loops).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn record(&self, state: &RunState) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.dispatched_fuel
            .fetch_add(state.fuel_used, Ordering::Relaxed);
        for (counter, &n) in self.loop_iterations.iter().zip(&state.loop_iterations) {
            if n != 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    pub fn snapshot(&self, program: &Program) -> FlowStats {
        FlowStats {
            runs: self.runs.load(Ordering::Relaxed),
            fuel: self.dispatched_fuel.load(Ordering::Relaxed),
            loop_iterations: self
                .loop_iterations
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            state_bytes: 0,
            steps: program.step_count,
        }
    }
}
