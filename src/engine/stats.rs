//! Per-flow counters: runs, iterations in each tier, tier changes, compile cost.

use super::Tier;
use crate::ir::Program;
use crate::state::RunState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) struct Counters {
    pub runs: AtomicU64,
    native_runs: AtomicU64,
    fuel: AtomicU64,
    interpreted_iterations: AtomicU64,
    native_iterations: AtomicU64,
    pub osr_entries: AtomicU64,
    pub compile_nanos: AtomicU64,
    loop_iterations: Vec<AtomicU64>,
}

/// A snapshot of a flow's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStats {
    pub runs: u64,
    /// Runs that started in native code.
    pub native_runs: u64,
    /// Fuel used over all runs.
    pub fuel: u64,
    /// `for`/`while` iterations run by the interpreter, and by native code.
    pub interpreted_iterations: u64,
    pub native_iterations: u64,
    /// Iterations the interpreter ran of each loop, in source order (what tiering reads).
    pub loop_iterations: Vec<u64>,
    /// Runs that moved to native code at a loop head.
    pub osr_entries: u64,
    /// The tier the next run starts in.
    pub tier: Tier,
    /// Time the JIT took (zero if it never ran).
    pub compile_time: Duration,
    pub code_bytes: usize,
    /// Bytes of one flow state.
    pub state_bytes: usize,
    /// Steps after inlining.
    pub steps: usize,
}

impl Counters {
    pub fn new(loops: usize) -> Counters {
        Counters {
            runs: AtomicU64::new(0),
            native_runs: AtomicU64::new(0),
            fuel: AtomicU64::new(0),
            interpreted_iterations: AtomicU64::new(0),
            native_iterations: AtomicU64::new(0),
            osr_entries: AtomicU64::new(0),
            compile_nanos: AtomicU64::new(0),
            loop_iterations: (0..loops).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Adds one finished run. The interpreter counts per loop; native code counts the total.
    pub fn record(&self, state: &RunState, native_run: bool) {
        // Atomic adds are locked instructions: skip the ones that would add nothing.
        let add = |counter: &AtomicU64, n: u64| {
            if n != 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.runs, 1);
        add(&self.native_runs, u64::from(native_run));
        add(&self.fuel, state.fuel_used);
        let mut interpreted = 0;
        for (counter, &n) in self.loop_iterations.iter().zip(&state.loop_iterations) {
            add(counter, n);
            interpreted += n;
        }
        add(&self.interpreted_iterations, interpreted);
        add(
            &self.native_iterations,
            state.iterations.saturating_sub(interpreted),
        );
    }

    pub fn snapshot(
        &self,
        program: &Program,
        tier: Tier,
        code_bytes: usize,
        state_bytes: usize,
    ) -> FlowStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FlowStats {
            runs: load(&self.runs),
            native_runs: load(&self.native_runs),
            fuel: load(&self.fuel),
            interpreted_iterations: load(&self.interpreted_iterations),
            native_iterations: load(&self.native_iterations),
            loop_iterations: self.loop_iterations.iter().map(load).collect(),
            osr_entries: load(&self.osr_entries),
            tier,
            compile_time: Duration::from_nanos(load(&self.compile_nanos)),
            code_bytes,
            state_bytes,
            steps: program.step_count,
        }
    }
}
