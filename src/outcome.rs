//! What a run returns (SPEC 6), and its JSON form.

use crate::span::Span;
use crate::value::Value;
use std::fmt;
use std::sync::Arc;

/// Run-time error codes (SPEC 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No continuation was taken for the branch an event returned.
    NoBranchMatch,
    /// Integer overflow, or a float converted to int that is NaN or out of range.
    Overflow,
    DivisionByZero,
    /// A host implementation returned an error (or a reply its event does not declare).
    HostError,
    /// A host implementation panicked.
    HostPanic,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoBranchMatch => "NoBranchMatch",
            ErrorCode::Overflow => "Overflow",
            ErrorCode::DivisionByZero => "DivisionByZero",
            ErrorCode::HostError => "HostError",
            ErrorCode::HostPanic => "HostPanic",
        }
    }
}

/// The limit that stopped a run (SPEC 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    Fuel,
    LoopIterations,
    Deadline,
    Interrupted,
    /// The run's `std.io` output reached `RunLimits::max_output_bytes`.
    Output,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Fuel => "Fuel",
            Limit::LoopIterations => "LoopIterations",
            Limit::Deadline => "Deadline",
            Limit::Interrupted => "Interrupted",
            Limit::Output => "Output",
        }
    }
}

/// A run-time error: its code, a message, the event involved (if any) and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeError {
    pub code: ErrorCode,
    pub message: String,
    pub event: Option<Arc<str>>,
    pub span: Span,
    /// 1-based position of `span` in the source.
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at {}:{}",
            self.code.as_str(),
            self.message,
            self.line,
            self.column
        )
    }
}

/// The outcome of one run.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The run finished: the value of the last top-level flow (none for a source without flows).
    Ok { value: Option<Value>, fuel: u64 },
    /// A limit stopped the run.
    Exhausted {
        limit: Limit,
        fuel: u64,
        last_event: Option<Arc<str>>,
    },
    /// A run-time error stopped the run.
    Error { error: RuntimeError, fuel: u64 },
}

impl Outcome {
    pub fn fuel(&self) -> u64 {
        match self {
            Outcome::Ok { fuel, .. }
            | Outcome::Exhausted { fuel, .. }
            | Outcome::Error { fuel, .. } => *fuel,
        }
    }

    pub fn value(&self) -> Option<&Value> {
        match self {
            Outcome::Ok { value, .. } => value.as_ref(),
            _ => None,
        }
    }

    /// The JSON form the command line prints with `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Outcome::Ok { value, fuel } => serde_json::json!({
                "outcome": "ok",
                "value": value.as_ref().map(Value::to_json),
                "fuel": fuel,
            }),
            Outcome::Exhausted {
                limit,
                fuel,
                last_event,
            } => serde_json::json!({
                "outcome": "exhausted",
                "limit": limit.as_str(),
                "fuel": fuel,
                "last_event": last_event.as_deref(),
            }),
            Outcome::Error { error, fuel } => serde_json::json!({
                "outcome": "error",
                "code": error.code.as_str(),
                "message": error.message,
                "event": error.event.as_deref(),
                "line": error.line,
                "column": error.column,
                "fuel": fuel,
            }),
        }
    }
}
