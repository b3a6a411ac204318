//! Per-flow counters: runs, iterations in each tier, tier changes, compile cost.

use super::Tier;
use crate::ir::Program;
use crate::state::RunState;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) struct Counters {
    /// Finished runs while the flow has no native code: what the auto tier's call threshold
    /// reads (one locked add per run, and only until the flow is compiled).
    pub threshold_runs: AtomicU64,
    pub osr_entries: AtomicU64,
    pub compile_nanos: AtomicU64,
    pub recompile_nanos: AtomicU64,
    loops: usize,
    /// The tally of the flow's first run state (kept here: most flows never make another), and
    /// whether that state was made; a snapshot sums it with the tallies of the others.
    first: Tally,
    first_taken: AtomicBool,
    more: Mutex<Vec<Arc<Tally>>>,
}

/// Which tally a run state adds to.
pub(crate) enum TallyRef {
    First,
    More(Arc<Tally>),
}

/// What the runs made with one run state added up. Only the thread holding that state writes it
/// (the pool hands a state to one thread at a time, with the synchronization of a hand-over), so
/// an update is a relaxed load and store, not a locked read-modify-write; snapshots read it from
/// any thread.
pub(crate) struct Tally {
    runs: AtomicU64,
    native_runs: AtomicU64,
    fuel: AtomicU64,
    interpreted_iterations: AtomicU64,
    native_iterations: AtomicU64,
    loop_iterations: Box<[AtomicU64]>,
}

impl Tally {
    fn new(loops: usize) -> Tally {
        Tally {
            runs: AtomicU64::new(0),
            native_runs: AtomicU64::new(0),
            fuel: AtomicU64::new(0),
            interpreted_iterations: AtomicU64::new(0),
            native_iterations: AtomicU64::new(0),
            loop_iterations: (0..loops).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Adds one finished run. The interpreter counts per loop; native code counts the total.
    /// Only the holder of the run state this tally belongs to may call it.
    pub fn record(&self, state: &RunState, native_run: bool) {
        let add = |counter: &AtomicU64, n: u64| {
            if n != 0 {
                counter.store(
                    counter.load(Ordering::Relaxed).wrapping_add(n),
                    Ordering::Relaxed,
                );
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
}

/// A snapshot of a flow's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStats {
    /// Finished runs.
    pub runs: u64,
    /// Runs that started in native code.
    pub native_runs: u64,
    /// Fuel used over all runs.
    pub fuel: u64,
    /// `for`/`while` iterations run by the interpreter.
    pub interpreted_iterations: u64,
    /// `for`/`while` iterations run by native code.
    pub native_iterations: u64,
    /// Iterations the interpreter ran of each loop, in source order (what tiering reads).
    pub loop_iterations: Vec<u64>,
    /// Runs that moved to native code at a loop head.
    pub osr_entries: u64,
    /// The tier the next run starts in.
    pub tier: Tier,
    /// Time the JIT's first compile of the flow took (zero if it never ran).
    pub compile_time: Duration,
    /// Time the optimizing recompile of baseline code that got hot took (zero if none ran).
    pub recompile_time: Duration,
    /// The quality of the native code the next run uses (`None` when interpreted):
    /// [`Quality::Baseline`](crate::jit::Quality::Baseline) for a `Tier::Jit` flow until it is
    /// hot, then [`Quality::Optimized`](crate::jit::Quality::Optimized).
    pub quality: Option<crate::jit::Quality>,
    /// Bytes of native code (0 when interpreted).
    pub code_bytes: usize,
    /// Bytes of one flow state.
    pub state_bytes: usize,
    /// Steps after inlining.
    pub steps: usize,
    /// Why the flow stays in the interpreter, if the JIT tried and could not compile it (for
    /// example [`JitError::OverBudget`](crate::JitError::OverBudget)).
    pub jit_error: Option<crate::jit::JitError>,
}

impl Counters {
    pub fn new(loops: usize) -> Counters {
        Counters {
            threshold_runs: AtomicU64::new(0),
            osr_entries: AtomicU64::new(0),
            compile_nanos: AtomicU64::new(0),
            recompile_nanos: AtomicU64::new(0),
            loops,
            first: Tally::new(loops),
            first_taken: AtomicBool::new(false),
            more: Mutex::new(Vec::new()),
        }
    }

    /// A tally for a new run state, registered for snapshots.
    pub fn new_tally(&self) -> TallyRef {
        if !self.first_taken.swap(true, Ordering::Relaxed) {
            return TallyRef::First;
        }
        let tally = Arc::new(Tally::new(self.loops));
        self.more
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tally.clone());
        TallyRef::More(tally)
    }

    pub fn tally<'a>(&'a self, which: &'a TallyRef) -> &'a Tally {
        match which {
            TallyRef::First => &self.first,
            TallyRef::More(tally) => tally,
        }
    }

    pub fn snapshot(
        &self,
        program: &Program,
        tier: Tier,
        code_bytes: usize,
        state_bytes: usize,
        jit_error: Option<crate::jit::JitError>,
    ) -> FlowStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let more = self.more.lock().unwrap_or_else(|e| e.into_inner());
        let tallies: Vec<&Tally> = std::iter::once(&self.first)
            .chain(more.iter().map(|t| &**t))
            .collect();
        let sum = |field: fn(&Tally) -> &AtomicU64| {
            tallies
                .iter()
                .fold(0u64, |total, t| total.wrapping_add(load(field(t))))
        };
        let loop_iterations = (0..self.loops)
            .map(|k| {
                tallies.iter().fold(0u64, |total, t| {
                    total.wrapping_add(load(&t.loop_iterations[k]))
                })
            })
            .collect();
        FlowStats {
            runs: sum(|t| &t.runs),
            native_runs: sum(|t| &t.native_runs),
            fuel: sum(|t| &t.fuel),
            interpreted_iterations: sum(|t| &t.interpreted_iterations),
            native_iterations: sum(|t| &t.native_iterations),
            loop_iterations,
            osr_entries: load(&self.osr_entries),
            tier,
            compile_time: Duration::from_nanos(load(&self.compile_nanos)),
            recompile_time: Duration::from_nanos(load(&self.recompile_nanos)),
            quality: None,
            code_bytes,
            state_bytes,
            steps: program.step_count,
            jit_error,
        }
    }
}
