//! # koru-jit
//!
//! An embeddable engine for *flows*, the event-continuation language of Koru, supplied at run
//! time (often by people the host does not trust). A source is parsed, checked against the host
//! events it may call, and run by an interpreter or, once it is hot, by native code from
//! Cranelift; every run is bounded by limits the host sets.
//!
//! ```
//! use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits, Type};
//! let mut registry = Registry::with_std();
//! registry.event("~event add { a: i64, b: i64 } | sum i64", |a: i64, b: i64| a + b).unwrap();
//! let engine = Engine::new(registry);
//! let flow = engine
//!     .compile("job", "~add(a: x, b: 2)", &CompileOptions::default().input("x", Type::Int))
//!     .unwrap();
//! let outcome = flow
//!     .run(&Inputs::new().set("x", 40i64), &RunLimits { fuel: Some(100), ..RunLimits::default() })
//!     .unwrap();
//! assert_eq!(outcome.value().unwrap().get::<i64>(), Ok(42));
//! assert_eq!(outcome.fuel(), 1);
//! ```
//!
//! # Flows and events
//!
//! A source holds event declarations and *flows*. A flow invokes an *event*
//! (`~users.get(id: 1)`); the event returns one of its declared *branches* with a payload
//! (none, one value, or named fields), and the flow continues with the continuation of that
//! branch (`| found u |> std.io:println(text: u.name)`). Events are *host events* implemented in
//! Rust (registered in a [`Registry`]), the standard library (`std.io:print`, `println`,
//! `eprintln`, `print.ln`), *subflows* written in Koru (`~greet = ...`, in the source or in a
//! library attached to a scope), and the builtins `for`, `if`, `while` and `capture`.
//! The *value* of a source is the branch and payload its last top-level flow ends with: a
//! [`Value`]. The language is described by the SPEC (`SPEC.md` in the repository); its section
//! numbers are cited throughout these docs.
//!
//! # The engine, compile and run
//!
//! 1. Fill a [`Registry`]: host events ([`Registry::event`]), scopes ([`Scope`]), libraries
//!    ([`Registry::attach_library`]), and where `std.io` output goes ([`OutputSink`]).
//! 2. [`Engine::new`] (or [`Engine::with_config`] with an [`EngineConfig`]) freezes the registry.
//! 3. [`Engine::compile`] parses and checks a source against a scope, with the flow inputs and
//!    front-end limits of its [`CompileOptions`], and lays out its flow state. All errors come
//!    back together as [`SourceErrors`]; nothing runs from a source with errors. Compiled flows
//!    are cached by source and options ([`CacheConfig`]).
//! 4. A [`Flow`] is `Send + Sync` and cheap to clone: [`Flow::run`] it any number of times, on
//!    any threads, with [`Inputs`] and [`RunLimits`]. Each run returns an [`Outcome`]: `Ok`
//!    with the value, `Exhausted` by a limit, or `Error` with a [`RuntimeError`]. Runs reuse
//!    pooled flow states: a steady-state run allocates nothing.
//!
//! # Two tiers
//!
//! Both tiers run the same typed IR over the same flow state and give the same outcomes, fuel
//! and output. The [`Tier`] of [`CompileOptions::tier`] chooses:
//!
//! * [`Tier::Auto`] (the default) starts in the interpreter. A flow that has finished
//!   [`TierPolicy::call_threshold`] runs, or whose loop has run [`TierPolicy::loop_threshold`]
//!   iterations within one run, is compiled to native code by Cranelift, on the engine's
//!   compiler threads unless [`TierPolicy::background`] is off. Later runs start in native
//!   code, and a run still in the hot loop moves to native code at the loop head (on-stack
//!   replacement: the flow state is the frame of both tiers, so this is a jump).
//! * [`Tier::Interp`] never compiles; [`Tier::Jit`] compiles before the first run.
//!
//! A compile is bounded by [`TierPolicy::compile_budget`] ([`CompileBudget`]: steps,
//! Cranelift instructions, time). A flow the JIT cannot or may not compile stays in the
//! interpreter, with the reason in [`Flow::jit_error`] ([`JitError`]). [`Flow::stats`] counts
//! runs, iterations per tier and on-stack replacements; [`Flow::compile_native`] compiles at
//! once.
//!
//! # Limits
//!
//! * Per run, [`RunLimits`] (SPEC 7): *fuel* (each dispatch costs its scope's cost, 1 without
//!   a scope; the check comes before the dispatch), loop iterations, a wall-clock deadline, an
//!   [`InterruptHandle`] another thread triggers, and bytes of `std.io` output. A limit ends the
//!   run with [`Outcome::Exhausted`] naming the [`Limit`]; both tiers stop at the same point.
//!   [`RunLimits::default`] limits nothing.
//! * Before a run, [`Flow::cost_bound`] gives an upper bound of fuel and iterations
//!   ([`CostBound`]) computed from the flow alone, to refuse a flow in advance
//!   ([`CostBound::exceeds`]).
//! * At compile time, [`FrontEndLimits`] bound source size, nesting, steps after inlining and
//!   flow-state size, among others (error E0105), and [`CompileBudget`] what one JIT compile
//!   may cost.
//! * [`CacheConfig`] bounds the entries, native code and memory of the compiled-flow cache.
//!
//! # Shapes and mocks
//!
//! For flows written by people or agents (SPEC 13): [`CompileOptions::shape`] requires every
//! way the source's value can end to be a branch of an event (E0213, checked before running),
//! and [`CompileOptions::mock`] replaces host events by Koru implementations for one compile
//! (checked against the events' signatures, reported in the mock's own text).
//!
//! # Host events and scopes
//!
//! A host event is declared in Koru syntax and implemented by a Rust closure taking its inputs
//! (`i64`, `f64`, `bool`, `&str`) and returning a plain value, `()` or a [`Reply`] naming a
//! branch, or a `Result` whose `Err` ([`HostError`]) ends the run with
//! [`ErrorCode::HostError`]. A return type that fixes the reply is checked against the event
//! at registration ([`RegistryError::ReplyMismatch`]); a panic in a closure is caught and ends
//! the run with [`ErrorCode::HostPanic`]. A [`Scope`] names the events a flow may call, each at
//! a fuel cost, with globs, aliases and included scopes; a flow compiled against a scope that
//! does not allow an event it calls gets E0301.
//!
//! # Output
//!
//! `std.io` writes to the registry's [`OutputSink`]: [`StdoutSink`] by default, any sink with
//! [`Registry::set_output`], or one run's own sink with [`Flow::run_with_output`].
//! [`CaptureSink`] keeps the text; [`RunLimits::max_output_bytes`] bounds it.
//!
//! # Traces
//!
//! A flow compiled with [`CompileOptions::trace`] writes a line per dispatch (and with
//! [`TraceLevel::All`] per builtin branch and `yield`) to the [`TraceSink`] of
//! [`RunLimits::trace`]: `TRACE users.get -> found {"name":"ada"}`, the same in every tier;
//! [`CaptureTrace`] keeps the lines, [`RunLimits::max_trace_lines`] and
//! [`RunLimits::max_trace_bytes`] bound them. A flow compiled without tracing has no trace code.
//!
//! # Results
//!
//! [`Value::get`] reads an identity payload and [`Value::field`] a field of a struct payload as
//! `i64`, `f64`, `bool`, `&str` or `String` ([`FromScalar`]), with a [`ValueError`] naming the
//! branch when the payload is not what was asked for. With the `serde` feature,
//! `Value::deserialize` reads a payload into a Rust type, and [`Value`] and [`Outcome`]
//! implement `Serialize` as SPEC 6's JSON form.
//!
//! # Errors and diagnostics
//!
//! * [`SourceErrors`]: the parse and check errors of a source, each a [`Diagnostic`] with a
//!   stable [`Code`] (SPEC 8), a message and a [`span::Span`]; [`SourceErrors::render`] draws
//!   them with source snippets, [`SourceErrors::positions`] gives lines and columns.
//! * [`RuntimeError`] in [`Outcome::Error`]: an [`ErrorCode`], the event involved, line and
//!   column ([`diag::render_runtime_error`] draws it).
//! * [`InputError`]: inputs that do not match the flow (nothing runs).
//! * [`RegistryError`]: a registration the registry refuses.
//! * [`ValueError`]: a value read as a type it does not have.
//!
//! # Cargo features
//!
//! * `serde`: `Serialize` for [`Value`], [`Payload`], [`Scalar`] and [`Outcome`];
//!   `Value::deserialize` and `from_value`.
//! * `json`: the JSON the command line and the server print (hidden `to_json` methods; implies
//!   `serde`, adds `serde_json`).
//! * `server`: the `koru-jit serve` HTTP server (module `server`; implies `json`).
//! * `bench`: the `koru-jit bench` harness; `peers`: the peer engines it can run in-process.
//! * `cli`: what the `koru-jit` binary needs (`cargo run --features cli -- run FILE`): the
//!   command line, `server`, `bench` and `json`.
//!
//! None is on by default: `koru-jit = "0.1"` is the engine alone (front end, checker,
//! interpreter, JIT), and `cargo tree -e normal` lists what that brings (`tests/dependencies.rs`
//! keeps the list).

#![warn(missing_docs)]

// Internals, `pub` only for this crate's binary, tests, benches and fuzz targets, hidden from the
// docs: they change with the engine and are no embedder API.
// * `bench`: the `koru-jit bench` harness (the CLI's `bench` command, `tests/bench.rs`).
// * `ir`: the typed IR (`emit --what ir`; `Flow::program` for the JIT tests and benches).
// * `jit`: the Cranelift tier's entry points (`compile_with_budget`, `compile_with_quality`,
//   `compile_phases`, `compile_for_target`, `compile_with_listing`, `warm_up`) for the code-size
//   and aarch64 tests, `emit --what asm`, the benches, `examples/compile_time.rs` and the fuzz
//   targets. Its public types are re-exported below (`CompileBudget`, `JitError`, `Quality`).
// * `layout`: flow-state offsets (`emit`; `Flow::layout` for the JIT tests).
// * `syntax`: lexer, layout pass and grammar (`emit --what ast`).
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
#[doc(hidden)]
pub mod ir;
#[doc(hidden)]
pub mod jit;
#[doc(hidden)]
pub mod layout;
#[doc(hidden)]
pub mod syntax;

mod cost;
pub mod diag;
mod engine;
pub mod host;
mod interp;
mod limits;
mod outcome;
mod sema;
#[cfg(feature = "server")]
pub mod server;
pub mod span;
mod state;
pub mod types;
mod value;

pub use cost::CostBound;
pub use diag::{Code, Diagnostic, SourceErrors};
pub use engine::{
    is_artifact, live_code_bytes, CacheConfig, CacheStats, CompileOptions, Discharged, Engine,
    EngineConfig, Flow, FlowStats, InputError, Inputs, Obligations, OpenObligation, RunReport,
    Tier, TierPolicy,
};
pub use host::{
    Args, CaptureSink, CaptureTrace, HostError, OutputSink, Registry, RegistryError, Reply,
    ReplyValue, Scope, StderrTrace, StdoutSink, TraceLevel, TraceSink,
};
pub use jit::{CompileBudget, JitError, Quality};
pub use limits::{FrontEndLimits, InterruptHandle, RunLimits};
pub use outcome::{ErrorCode, Limit, Outcome, RuntimeError};
pub use types::{EventSig, PayloadType, Phantom, Type};
#[cfg(feature = "serde")]
pub use value::from_value;
pub use value::{FromScalar, Payload, Scalar, Value, ValueError};
