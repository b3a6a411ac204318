//! # koru-jit
//!
//! An embeddable engine for *flows*, the event-continuation language of Koru, supplied at run
//! time. A source is parsed (lalrpop), checked against the host events a scope allows, lowered to
//! a typed IR whose every binding has an offset in one flow-state layout, and run by the
//! interpreter tier.
//!
//! ```
//! use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits};
//! let engine = Engine::new(Registry::with_std());
//! let flow = engine
//!     .compile("hello", "~if(value > 10)\n| then |> std.io:println(text: \"big\")\n| else |> std.io:println(text: \"small\")",
//!              &CompileOptions::default().input("value", koru_jit::Type::Int))
//!     .unwrap();
//! let outcome = flow.run(&Inputs::new().set("value", 42i64), &RunLimits::default()).unwrap();
//! assert_eq!(outcome.fuel(), 1);
//! ```
//!
//! The pipeline, one module per stage: [`syntax`] (lexer, layout pass, grammar), [`sema`]
//! (checker, typed [`ir`]), [`layout`] (flow-state offsets), `interp` (the interpreter tier),
//! [`engine`] (compile once, run many times), [`host`] (registry, scopes, standard library),
//! [`diag`] (the one place diagnostics are rendered).

pub mod bench;
pub mod cost;
pub mod diag;
pub mod engine;
pub mod host;
mod interp;
pub mod ir;
pub mod jit;
pub mod layout;
pub mod limits;
pub mod outcome;
pub mod sema;
#[cfg(feature = "server")]
pub mod server;
pub mod span;
mod state;
pub mod syntax;
pub mod types;
pub mod value;

pub use cost::CostBound;
pub use diag::{Code, Diagnostic, SourceErrors};
pub use engine::{
    live_code_bytes, CacheConfig, CompileOptions, Engine, EngineConfig, Flow, FlowStats,
    InputError, Inputs, Tier, TierPolicy,
};
pub use host::{
    Args, CaptureSink, HostError, OutputSink, Registry, RegistryError, Reply, ReplyValue, Scope,
    StdoutSink,
};
pub use jit::{CompileBudget, JitError};
pub use limits::{FrontEndLimits, InterruptHandle, RunLimits};
pub use outcome::{ErrorCode, Limit, Outcome, RuntimeError};
pub use types::{EventSig, PayloadType, Type};
#[cfg(feature = "serde")]
pub use value::from_value;
pub use value::{FromScalar, Payload, Scalar, Value, ValueError};
