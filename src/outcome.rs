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
    /// Integer division or remainder by zero.
    DivisionByZero,
    /// A host implementation returned an error (or a reply its event does not declare).
    HostError,
    /// A host implementation panicked.
    HostPanic,
    /// The run opened more obligations than `RunLimits::max_handles` (SPEC 12).
    TooManyHandles,
}

impl ErrorCode {
    /// The code's name, as SPEC 8 and the JSON form write it (`"HostError"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoBranchMatch => "NoBranchMatch",
            ErrorCode::Overflow => "Overflow",
            ErrorCode::DivisionByZero => "DivisionByZero",
            ErrorCode::HostError => "HostError",
            ErrorCode::HostPanic => "HostPanic",
            ErrorCode::TooManyHandles => "TooManyHandles",
        }
    }
}

/// The limit that stopped a run (SPEC 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`RunLimits::fuel`](crate::RunLimits::fuel): the next dispatch would cost more than is
    /// left (it is not called).
    Fuel,
    /// [`RunLimits::max_iterations`](crate::RunLimits::max_iterations): `for` and `while`
    /// iterations across the run.
    LoopIterations,
    /// [`RunLimits::deadline`](crate::RunLimits::deadline) passed.
    Deadline,
    /// The run's [`InterruptHandle`](crate::InterruptHandle) was triggered.
    Interrupted,
    /// The run's `std.io` output reached
    /// [`RunLimits::max_output_bytes`](crate::RunLimits::max_output_bytes).
    Output,
}

impl Limit {
    /// The limit's name, as the JSON form writes it (`"Fuel"`).
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
    /// What went wrong.
    pub code: ErrorCode,
    /// A message for people (it may improve between versions; match on `code`).
    pub message: String,
    /// The event dispatched, for dispatch errors (`HostError`, `HostPanic`, `NoBranchMatch`);
    /// `None` for an error of an expression (overflow, division by zero).
    pub event: Option<Arc<str>>,
    /// Where in the source: the invocation, or the expression.
    pub span: Span,
    /// 1-based line of `span`'s start in the source.
    pub line: u32,
    /// 1-based column (in characters) of `span`'s start.
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

/// The outcome of one run (SPEC 6). A run that stops early is an outcome too, not an `Err`:
/// [`Flow::run`](crate::Flow::run) fails only for inputs that do not fit the flow.
///
/// ```
/// use koru_jit::{CompileOptions, Engine, Inputs, Limit, Outcome, Registry, RunLimits};
/// let mut registry = Registry::new();
/// registry.event("~event tick {} | ok", || ()).unwrap();
/// let engine = Engine::new(registry);
/// let flow = engine
///     .compile("ticks", "~for(0..10)\n| each _ |> tick()\n", &CompileOptions::default())
///     .unwrap();
/// match flow.run(&Inputs::new(), &RunLimits { fuel: Some(3), ..RunLimits::default() }).unwrap() {
///     Outcome::Ok { value, fuel } => println!("{value:?} after {fuel} fuel"),
///     Outcome::Exhausted { limit, fuel, last_event } => {
///         assert_eq!((limit, fuel, last_event.as_deref()), (Limit::Fuel, 3, Some("tick")));
///     }
///     Outcome::Error { error, .. } => panic!("{error}"),
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The run finished: the value of the last top-level flow (none for a source without flows).
    Ok {
        /// The value; `None` for a source without top-level flows.
        value: Option<Value>,
        /// The fuel used.
        fuel: u64,
    },
    /// A limit stopped the run.
    Exhausted {
        /// Which limit.
        limit: Limit,
        /// The fuel used until then.
        fuel: u64,
        /// The last event charged (`None` if none was).
        last_event: Option<Arc<str>>,
    },
    /// A run-time error stopped the run.
    Error {
        /// The error.
        error: RuntimeError,
        /// The fuel used until then (a failed host call's cost included).
        fuel: u64,
    },
}

impl Outcome {
    /// The fuel used, whatever the outcome.
    pub fn fuel(&self) -> u64 {
        match self {
            Outcome::Ok { fuel, .. }
            | Outcome::Exhausted { fuel, .. }
            | Outcome::Error { fuel, .. } => *fuel,
        }
    }

    /// The value of an [`Outcome::Ok`]; `None` for other outcomes or a source without flows.
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
