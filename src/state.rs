//! The run state: the flow-state buffer laid out by [`crate::layout::Layout`] plus the string
//! buffers and counters of one run. Reused across runs, so a steady state allocates nothing.

use crate::ir::Program;
use crate::layout::Layout;
use crate::outcome::{ErrorCode, Limit};
use crate::span::Span;
use std::sync::Arc;

/// Which event was charged last (for `Exhausted`'s `last_event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charged {
    Nothing,
    /// Index into [`Program::events`].
    Host(u32),
    /// A subflow call; the name is kept in [`RunState::last_subflow`].
    Subflow,
}

/// Why a run stopped early.
#[derive(Debug)]
pub enum Trap {
    Error(Box<TrapError>),
    Exhausted(Limit),
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

pub struct RunState {
    /// The flow state, in 8-byte words.
    pub frame: Vec<u64>,
    /// String buffers of locals that own their text (see the layout).
    pub buffers: Vec<String>,
    /// Which of an accumulator field's two buffers is current (indexed like `buffers`).
    pub current_half: Vec<bool>,
    /// Buffers for numbers and bools formatted into `str` inputs, one per site.
    pub conversions: Vec<String>,
    /// Host call arguments, as words.
    pub args: Vec<u64>,
    /// Scratch for `captured` (evaluate all, then assign).
    pub scratch: Vec<u64>,
    /// Scratch for print templates.
    pub text: String,
    pub loop_iterations: Vec<u64>,
    pub fuel_used: u64,
    pub iterations: u64,
    /// The host call site in progress (to name the event if its implementation panics).
    pub calling: u32,
    pub last_event: Charged,
    pub last_subflow: Option<Arc<str>>,
}

impl RunState {
    pub fn new(program: &Program, layout: &Layout) -> RunState {
        RunState {
            frame: vec![0; layout.words as usize],
            buffers: vec![String::new(); layout.buffers as usize],
            current_half: vec![false; layout.buffers as usize],
            conversions: vec![String::new(); program.conversion_buffers as usize],
            args: Vec::with_capacity(16),
            scratch: Vec::with_capacity(16),
            text: String::new(),
            loop_iterations: vec![0; program.loops.len()],
            fuel_used: 0,
            iterations: 0,
            calling: 0,
            last_event: Charged::Nothing,
            last_subflow: None,
        }
    }

    /// Clears counters for a new run (buffers keep their capacity).
    pub fn reset(&mut self) {
        self.frame.fill(0);
        self.loop_iterations.fill(0);
        self.current_half.fill(false);
        self.fuel_used = 0;
        self.iterations = 0;
        self.last_event = Charged::Nothing;
        self.last_subflow = None;
    }
}
