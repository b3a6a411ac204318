//! What a run returns (SPEC 6): an [`Outcome`] with the flow's [`Value`], the limit that stopped
//! it, or a [`RuntimeError`].

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
}

#[cfg(feature = "json")]
impl Outcome {
    /// The JSON form of SPEC 6, as the command line prints it with `--json` and the server
    /// answers. Hidden from the docs: it is their wire format, not embedder API (embedders
    /// serialize an [`Outcome`] with the `serde` feature and the serializer of their choice).
    #[doc(hidden)]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an outcome serializes to JSON: its map keys are strings")
    }
}

/// The JSON form of SPEC 6 (feature `serde`): `{"outcome":"ok","value":V,"fuel":N}`,
/// `{"outcome":"exhausted","limit":L,"fuel":N,"last_event":E}` or
/// `{"outcome":"error","code":C,"message":M,"event":E,"line":L,"column":C,"fuel":N}`, with `null`
/// for an absent value or event.
#[cfg(feature = "serde")]
impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Outcome::Ok { value, fuel } => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("outcome", "ok")?;
                map.serialize_entry("value", value)?;
                map.serialize_entry("fuel", fuel)?;
                map.end()
            }
            Outcome::Exhausted {
                limit,
                fuel,
                last_event,
            } => {
                let mut map = serializer.serialize_map(Some(4))?;
                map.serialize_entry("outcome", "exhausted")?;
                map.serialize_entry("limit", limit.as_str())?;
                map.serialize_entry("fuel", fuel)?;
                map.serialize_entry("last_event", &last_event.as_deref())?;
                map.end()
            }
            Outcome::Error { error, fuel } => {
                let mut map = serializer.serialize_map(Some(7))?;
                map.serialize_entry("outcome", "error")?;
                map.serialize_entry("code", error.code.as_str())?;
                map.serialize_entry("message", &error.message)?;
                map.serialize_entry("event", &error.event.as_deref())?;
                map.serialize_entry("line", &error.line)?;
                map.serialize_entry("column", &error.column)?;
                map.serialize_entry("fuel", fuel)?;
                map.end()
            }
        }
    }
}
