//! The engine: compiles sources against a frozen registry, keeps compiled flows in a bounded
//! cache, runs them on any thread, and moves hot flows from the interpreter to native code.
//!
//! ```
//! use koru_jit::{Engine, Registry, CompileOptions, Inputs, RunLimits};
//! let mut registry = Registry::with_std();
//! registry.event("~event add { a: i64, b: i64 } | sum i64", |a: i64, b: i64| a + b).unwrap();
//! let engine = Engine::new(registry);
//! let flow = engine.compile("example", "~add(a: 1, b: 2)", &CompileOptions::default()).unwrap();
//! let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
//! assert_eq!(outcome.value().unwrap().get::<i64>(), Ok(3));
//! ```
//!
//! # Tiers
//!
//! [`Tier::Auto`] (the default) starts every flow in the interpreter. A flow that has run
//! [`TierPolicy::call_threshold`] times, or whose loop has iterated
//! [`TierPolicy::loop_threshold`] times within one run, is compiled to native code, on a
//! background thread by default; later runs use it, and a run still in that loop continues in
//! native code at the loop head (on-stack replacement: the flow state is the frame of both
//! tiers, so this is a jump).

mod artifact;
mod cache;
mod discharge;
mod inputs;
mod pool;
mod stats;

pub use artifact::is_artifact;
pub use cache::{CacheConfig, CacheStats};
pub use discharge::{Discharged, Obligations, OpenObligation, RunReport};
pub use inputs::{InputError, Inputs};
pub use stats::FlowStats;

use crate::cost::CostBound;
use crate::diag::{Code, SourceErrors};
use crate::host::{OutputSink, Registry, TraceLevel};
use crate::interp::Tiering;
use crate::ir::{Program, ValueId, ValuePayload};
use crate::jit::{CompileBudget, JitError, NativeCode, Quality};
use crate::layout::Layout;
use crate::limits::{FrontEndLimits, RunLimits};
use crate::outcome::{Outcome, RuntimeError};
use crate::sema::CheckOptions;
use crate::span::LineIndex;
use crate::state::{RunState, Trap};
use crate::types::Type;
use crate::value::{Payload, Scalar, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

/// Which tier runs a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Start in the interpreter; compile hot flows and move to native code (see [`TierPolicy`]).
    #[default]
    Auto,
    /// The interpreter only.
    Interp,
    /// Native code, compiled before the first run. A flow the JIT cannot lower stays in the
    /// interpreter ([`Flow::jit_error`] says why).
    Jit,
}

/// When [`Tier::Auto`] compiles a flow.
///
/// The same thresholds make a [`Tier::Jit`] flow's baseline code hot: after `call_threshold`
/// native runs, or one native run of `loop_threshold` iterations, it is recompiled with
/// [`Quality::Optimized`] settings (in the background, or synchronously, as `background` says),
/// and later runs use that code.
///
/// The defaults weigh compile cost against the per-step gain, measured on a 2-core machine
/// (`benches/tiers.rs`): an optimizing JIT compile of a small flow takes about 200 µs; native code saves
/// about 8-14 ns per host dispatch (15.5 -> 7.1 ns typed, 21.4 -> 10.0 ns with string
/// arguments) and about 10 ns per pure loop iteration. Compiling pays for itself after roughly
/// 20,000-30,000 dispatches or iterations; a loop is compiled after 20,000 iterations (after
/// that, at most ~1.2x of the ideal), and a flow after 1,000 runs (a run of even a few
/// dispatches then amortizes the compile over the runs that follow).
///
/// ```
/// use koru_jit::{CompileOptions, Engine, EngineConfig, Inputs, Registry, RunLimits, Tier, TierPolicy};
/// let config = EngineConfig { policy: TierPolicy::eager(), ..EngineConfig::default() };
/// let engine = Engine::with_config(Registry::new(), config);
/// let flow = engine
///     .compile("loop", "~for(0..1000)\n| each _ |> _\n", &CompileOptions::default())
///     .unwrap();
/// assert_eq!(flow.tier(), Tier::Interp);
/// flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
/// // The loop got hot in the first run, which moved to native code at its head.
/// assert_eq!(flow.tier(), Tier::Jit);
/// assert_eq!(flow.stats().osr_entries, 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TierPolicy {
    /// Finished runs of a flow after which it is compiled.
    pub call_threshold: u64,
    /// Iterations of one loop, within one run, after which the flow is compiled and the run
    /// moves to native code at that loop's head.
    pub loop_threshold: u64,
    /// Compile on the engine's compiler threads (runs keep interpreting meanwhile; never on a
    /// run's thread: while the `Engine` is dropped, or its queue full, flows stay interpreted),
    /// or synchronously on the thread that crossed the threshold (deterministic, for tests).
    pub background: bool,
    /// What one compile may cost; a flow over it stays in the interpreter, with the reason in
    /// [`Flow::jit_error`] and [`FlowStats::jit_error`].
    pub compile_budget: CompileBudget,
}

impl Default for TierPolicy {
    fn default() -> Self {
        TierPolicy {
            call_threshold: 1_000,
            loop_threshold: 20_000,
            background: true,
            compile_budget: CompileBudget::default(),
        }
    }
}

impl TierPolicy {
    /// Compile at the first opportunity, synchronously: every run and loop changes tier as soon
    /// as possible (the test suite runs every flow this way too).
    pub fn eager() -> TierPolicy {
        TierPolicy {
            call_threshold: 1,
            loop_threshold: 1,
            background: false,
            compile_budget: CompileBudget::default(),
        }
    }
}

/// How a source is compiled: the scope it is checked against, its flow inputs, the front end's
/// limits and the tier. Built with its methods from the default (no scope, no inputs, default
/// limits, [`Tier::Auto`]).
///
/// ```
/// use koru_jit::{CompileOptions, Engine, FrontEndLimits, Registry, Scope, Tier, Type};
/// let mut registry = Registry::with_std();
/// registry.add_scope("app", Scope::new().allow("std.io:*"));
/// let engine = Engine::new(registry);
/// let options = CompileOptions {
///     limits: FrontEndLimits { max_source_bytes: 64 * 1024, ..FrontEndLimits::default() },
///     ..CompileOptions::default()
/// }
/// .scope("app")
/// .input("name", Type::Str)
/// .tier(Tier::Interp);
/// let flow = engine
///     .compile("hello", "~std.io:println(text: name)", &options)
///     .unwrap();
/// assert_eq!(flow.tier(), Tier::Interp);
/// ```
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// The scope of host events the source may call; `None` allows every registered event.
    pub scope: Option<String>,
    /// Flow inputs (name and type) the caller supplies at each run. The source may declare
    /// inputs too (`~input { name: Type, ... }`); one declared both ways must have the same type
    /// in both (E0204 otherwise).
    pub inputs: Vec<(String, Type)>,
    /// Flow inputs the caller has values for but no declared type, each typed by its value (the
    /// command line's untyped `--input NAME=VALUE`, the server's JSON `inputs`): an input of
    /// the same name that the source declares keeps the source's type, and the run converts the
    /// value to it ([`Scalar::converted_to`]); any other is declared with the guessed type.
    pub guessed_inputs: Vec<(String, Type)>,
    /// What the front end accepts (source size, nesting, steps, ...): over a limit is E0105.
    pub limits: FrontEndLimits,
    /// Which tier runs the flow.
    pub tier: Tier,
    /// The event whose shape the source's value must have (SPEC 13): every way the last
    /// top-level flow can end is a branch of it with its payload types (E0213 otherwise; E0214
    /// for a name that is neither declared in the source nor registered).
    pub shape: Option<String>,
    /// Koru implementations of host events that replace them in this compile (SPEC 13), each a
    /// name (what its diagnostics are reported under) and a source of subflows such as
    /// `~users.get = found { name: "test" }`.
    pub mocks: Vec<(String, String)>,
    /// What the flow traces (SPEC 13), to the sink of each run's
    /// [`RunLimits::trace`]: tracing is compiled in only when asked for, so a flow compiled
    /// with [`TraceLevel::Off`] (the default) runs exactly as fast as before tracing existed.
    pub trace: TraceLevel,
}

impl CompileOptions {
    /// Checks the source against scope `scope` of the registry: it may call only the events
    /// the scope allows, at the scope's costs (an unknown scope is E0302).
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_string());
        self
    }

    /// Declares a flow input `name` of type `ty`: the source reads it as a name, and every run
    /// supplies its value in [`Inputs`].
    pub fn input(mut self, name: &str, ty: Type) -> Self {
        self.inputs.push((name.to_string(), ty));
        self
    }

    /// Adds a guessed input (see [`CompileOptions::guessed_inputs`]).
    pub fn guessed_input(mut self, name: &str, ty: Type) -> Self {
        self.guessed_inputs.push((name.to_string(), ty));
        self
    }

    /// Sets the tier (default [`Tier::Auto`]).
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = tier;
        self
    }

    /// Requires the source's value to have the shape of event `event` (SPEC 13), checked on
    /// every path before anything runs.
    ///
    /// ```
    /// use koru_jit::{Code, CompileOptions, Engine, Registry};
    /// let engine = Engine::new(Registry::with_std());
    /// let source = "~event reply {} | ok { text: str } | refused\n~if(true)\n| then |> ok { text: \"hi\" }\n| else |> maybe\n";
    /// let Err(errors) = engine.compile("agent", source, &CompileOptions::default().shape("reply")) else {
    ///     panic!("`maybe` is not a branch of `reply`")
    /// };
    /// assert_eq!(errors.positions(), [(Code::E0213, 4, 11)]);
    /// ```
    pub fn shape(mut self, event: &str) -> Self {
        self.shape = Some(event.to_string());
        self
    }

    /// Replaces host events by the Koru subflows of `source` in this compile (SPEC 13); may be
    /// given several times. Each subflow is named after the host event it replaces, which the
    /// scope must allow, and is checked against that event's signature; its diagnostics come
    /// back as [`SourceErrors`] named `mock N` (N counting mocks from 1) whose spans point into
    /// `source`.
    ///
    /// ```
    /// use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits};
    /// let mut registry = Registry::with_std();
    /// registry.declare("~event users.get { id: i64 } | found { name: str } | missing").unwrap();
    /// let engine = Engine::new(registry);
    /// let options = CompileOptions::default().mock("~users.get = found { name: \"test\" }");
    /// let flow = engine.compile("dry run", "~users.get(id: 1)", &options).unwrap();
    /// let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    /// assert_eq!(outcome.value().unwrap().field::<&str>("name"), Ok("test"));
    /// ```
    pub fn mock(mut self, source: &str) -> Self {
        let name = format!("mock {}", self.mocks.len() + 1);
        self.mocks.push((name, source.to_string()));
        self
    }

    /// Like [`CompileOptions::mock`], with the name its diagnostics are reported under (the
    /// command line uses the file's path).
    pub fn named_mock(mut self, name: &str, source: &str) -> Self {
        self.mocks.push((name.to_string(), source.to_string()));
        self
    }

    /// Compiles tracing in at `level` (default [`TraceLevel::Off`]); runs write their lines to
    /// [`RunLimits::trace`].
    pub fn trace(mut self, level: TraceLevel) -> Self {
        self.trace = level;
        self
    }
}

/// How an engine tiers, compiles and caches.
///
/// ```
/// use koru_jit::{CacheConfig, CompileBudget, Engine, EngineConfig, Registry, TierPolicy};
/// let config = EngineConfig {
///     policy: TierPolicy {
///         call_threshold: 100,
///         compile_budget: CompileBudget::default(),
///         ..TierPolicy::default()
///     },
///     cache: CacheConfig { max_entries: 256, ..CacheConfig::default() },
///     compiler_threads: 1,
///     ..EngineConfig::default()
/// };
/// let engine = Engine::with_config(Registry::with_std(), config);
/// assert_eq!(engine.config().compiler_threads, 1);
/// ```
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// When [`Tier::Auto`] flows move to native code.
    pub policy: TierPolicy,
    /// Bounds of the compiled-flow cache.
    pub cache: CacheConfig,
    /// Threads that compile flows in the background (started at the first background compile).
    /// With more than one, a long compile does not hold up the others.
    pub compiler_threads: usize,
    /// Flows waiting for a compiler thread, at most. A flow that finds the queue full stays in
    /// the interpreter and asks again at its next threshold crossing (the next run, or the next
    /// check of a hot loop).
    pub compile_queue: usize,
    /// Warm the JIT up when the engine is built (once per process, ~1-2 ms): build Cranelift's
    /// ISAs and compile a small flow at each [`Quality`], so that the first compile a flow asks
    /// for costs what the next ones do (measured in README, "Compile latency"). An engine that
    /// never compiles to native code can turn it off.
    pub warm_up: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            policy: TierPolicy::default(),
            cache: CacheConfig::default(),
            compiler_threads: 2,
            compile_queue: 64,
            warm_up: true,
        }
    }
}

/// Compiles sources against one registry, which is frozen from then on. Cheap to clone; all
/// clones share the compiled-flow cache and the compiler threads. `Send + Sync`.
///
/// ```
/// use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits};
/// let mut registry = Registry::new();
/// registry.event("~event double { n: i64 } | v i64", |n: i64| n * 2).unwrap();
/// let engine = Engine::new(registry);
/// let flow = engine.compile("d", "~double(n: 21)", &CompileOptions::default()).unwrap();
/// // The same source and options again: the cached flow.
/// let again = engine.compile("d", "~double(n: 21)", &CompileOptions::default()).unwrap();
/// assert_eq!(engine.cache_stats().hits, 1);
/// let outcome = again.run(&Inputs::new(), &RunLimits::default()).unwrap();
/// assert_eq!(outcome.value().unwrap().get::<i64>(), Ok(42));
/// // Errors: every diagnostic, with its code and position.
/// let Err(errors) = engine.compile("bad", "~tripple(n: 1)", &CompileOptions::default()) else {
///     panic!("an unknown event checks")
/// };
/// assert_eq!(errors.diagnostics[0].code, koru_jit::Code::E0201);
/// # drop(flow);
/// ```
#[derive(Clone)]
pub struct Engine {
    shared: Arc<EngineShared>,
}

/// A flow for the compiler threads, and what to compile.
type CompileJob = (Weak<FlowInner>, Job);

/// What a compiler thread does for a flow.
#[derive(Clone, Copy, Debug)]
enum Job {
    /// Its first compile, optimized (the auto tier found it hot); with loop entries when a hot
    /// loop asked.
    Compile { osr: bool },
    /// The optimizing recompile of its baseline code, which got hot.
    Optimize,
}

struct EngineShared {
    registry: Arc<Registry>,
    config: EngineConfig,
    cache: cache::Cache,
    /// The compiler threads' queue, started at the first background compile.
    compiler: OnceLock<SyncSender<CompileJob>>,
    /// Run states of dropped flows, for the first runs of new ones: a compile, run and drop of a
    /// short-lived flow then allocates no run state (see [`EngineShared::recycle`]).
    // Boxed on purpose: they move between this list and the flows' pools as the boxes they are.
    #[allow(clippy::vec_box)]
    spare_states: Mutex<Vec<Box<pool::Pooled>>>,
}

/// At most this many run states of dropped flows are kept for reuse...
const SPARE_STATES: usize = 8;
/// ... each holding at most this many bytes of heap.
const SPARE_STATE_BYTES: usize = 64 * 1024;

impl Engine {
    /// An engine over `registry` with the default [`EngineConfig`].
    pub fn new(registry: Registry) -> Engine {
        Engine::with_config(registry, EngineConfig::default())
    }

    /// An engine over `registry` with `config`.
    pub fn with_config(registry: Registry, config: EngineConfig) -> Engine {
        if config.warm_up {
            crate::jit::warm_up();
        }
        Engine {
            shared: Arc::new(EngineShared {
                registry: Arc::new(registry),
                cache: cache::Cache::new(config.cache.clone()),
                config,
                compiler: OnceLock::new(),
                spare_states: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The registry, frozen.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Parses and checks `source`, lays out its flow state, and returns a flow ready to run many
    /// times. All parse and check errors are returned together. A flow compiled before with the
    /// same source, scope, inputs, limits, tier and trace level comes from the cache (its errors too), and a
    /// source being compiled by another thread is waited for, not compiled twice.
    pub fn compile(
        &self,
        name: &str,
        source: &str,
        options: &CompileOptions,
    ) -> Result<Flow, SourceErrors> {
        if !self.shared.cache.enabled() {
            return self.compile_uncached(name, source, options);
        }
        // One compile per source, however many threads ask at once: the others wait for it.
        let slot = self.shared.cache.slot(cache::Key::new(source, options));
        slot.get_or_init(|| self.compile_uncached(name, source, options))
            .clone()
    }

    /// The flows in the compiled-flow cache that checked, with the scope each was checked
    /// against, most recently used first (a snapshot: each `Flow` keeps its code alive while
    /// held, so drop it soon).
    pub fn cached_flows(&self) -> Vec<(Option<String>, Flow)> {
        self.shared.cache.flows()
    }

    /// Cache statistics: entries and native code bytes held.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.stats()
    }

    fn compile_uncached(
        &self,
        name: &str,
        source: &str,
        options: &CompileOptions,
    ) -> Result<Flow, SourceErrors> {
        let errors = |diagnostics| SourceErrors {
            name: name.to_string(),
            text: source.to_string(),
            diagnostics,
        };
        let mocks = match self.check_mocks(options) {
            Ok(mocks) => mocks,
            Err(errors) => return Err(*errors),
        };
        let (file, mut diagnostics) = crate::syntax::parse(source, &options.limits);
        let check = CheckOptions {
            shape: options.shape.clone(),
            mocks,
            scope: options.scope.clone(),
            inputs: options
                .inputs
                .iter()
                .map(|(n, t)| (Arc::from(n.as_str()), *t))
                .collect(),
            guessed_inputs: options
                .guessed_inputs
                .iter()
                .map(|(n, t)| (Arc::from(n.as_str()), *t))
                .collect(),
            limits: options.limits.clone(),
        };
        if !diagnostics.is_empty() {
            // SPEC 6, all errors: the items that parsed are checked too, when only flows failed
            // (nothing else refers to a flow, so no error of the check is a knock-on) and no
            // front-end limit was hit.
            let limited = diagnostics.iter().any(|d| d.code == Code::E0105);
            if !limited && crate::sema::failed_items_are_flows(source, &file) {
                // Not against the shape: the last flow that parsed may not be the last flow.
                let check = CheckOptions {
                    shape: None,
                    ..check
                };
                if let Err(more) = crate::sema::check(&self.shared.registry, &file, source, &check)
                {
                    diagnostics.extend(more);
                    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
                }
            }
            return Err(errors(diagnostics));
        }
        let mut program =
            crate::sema::check(&self.shared.registry, &file, source, &check).map_err(errors)?;
        program.trace = options.trace;
        let origin = Origin {
            scope: options.scope.as_deref(),
            shape: options.shape.as_deref(),
        };
        self.build(name, source, program, options, origin)
            .map_err(errors)
    }

    /// A flow from a checked (or, for a loaded artifact, verified) program: its size limits,
    /// its layout, and the flow itself. Parsed and loaded flows both come through here.
    fn build(
        &self,
        name: &str,
        source: &str,
        program: Program,
        options: &CompileOptions,
        origin: Origin<'_>,
    ) -> Result<Flow, Vec<crate::diag::Diagnostic>> {
        if program.locals.len() > options.limits.max_bindings {
            return Err(vec![crate::diag::Diagnostic::new(
                crate::diag::Code::E0105,
                format!(
                    "the flow has {} bindings once subflows are inlined, more than the limit of {}",
                    program.locals.len(),
                    options.limits.max_bindings
                ),
                crate::span::Span::default(),
            )]);
        }
        let mut layout = Layout::of(&program);
        let code = crate::interp::prepare(&program, &mut layout);
        if layout.bytes() > options.limits.max_state_bytes {
            return Err(vec![crate::diag::Diagnostic::new(
                crate::diag::Code::E0105,
                format!(
                    "the flow state needs {} bytes, more than the limit of {}",
                    layout.bytes(),
                    options.limits.max_state_bytes
                ),
                crate::span::Span::default(),
            )]);
        }
        let stats = stats::Counters::new(program.loops.len());
        let scope = origin.scope.map(Box::from);
        let shape = origin.shape.map(Box::from);
        let static_bytes = std::mem::size_of::<FlowInner>()
            + source.len()
            + name.len()
            + origin.scope.map_or(0, str::len)
            + origin.shape.map_or(0, str::len)
            + crate::ir::footprint::program(&program)
            + layout.heap_bytes()
            + code.heap_bytes();
        let inner = Arc::new(FlowInner {
            code,
            static_bytes,
            text: [source, name].concat().into_boxed_str(),
            source_len: source.len(),
            lines: OnceLock::new(),
            program,
            layout,
            registry: self.shared.registry.clone(),
            states: pool::StatePool::new(),
            stats,
            tier: options.tier,
            policy: self.shared.config.policy.clone(),
            native: OnceLock::new(),
            compile_requested: AtomicBool::new(false),
            optimized: OnceLock::new(),
            optimize_requested: AtomicBool::new(false),
            baseline_runs: AtomicU64::new(0),
            engine: Arc::downgrade(&self.shared),
            scope,
            shape,
        });
        if options.tier == Tier::Jit {
            // Nothing is known of the flow yet: baseline code, optimized once it is hot.
            inner.compile_now(false, Quality::Baseline);
        }
        Ok(Flow { inner })
    }
}

/// The compile options a flow's program depends on beyond its source, kept for
/// [`Flow::to_bytes`].
#[derive(Clone, Copy, Default)]
struct Origin<'o> {
    scope: Option<&'o str>,
    shape: Option<&'o str>,
}

impl Engine {
    /// Parses and checks the mocks of `options` (SPEC 13): each against the signature of the
    /// host event it replaces, in the scope of `options`. The errors of the first mock that
    /// has any come back as that mock's [`SourceErrors`] (named as the mock is, its spans in
    /// the mock's text); the mocks together are held to the source-size limit.
    fn check_mocks(
        &self,
        options: &CompileOptions,
    ) -> Result<Vec<Arc<crate::host::Library>>, Box<SourceErrors>> {
        if options.mocks.is_empty() {
            return Ok(Vec::new());
        }
        let mut parsed: Vec<Arc<crate::host::Library>> = Vec::with_capacity(options.mocks.len());
        let mut total = 0usize;
        for (name, text) in &options.mocks {
            let failed = |diagnostics| {
                Box::new(SourceErrors {
                    name: name.clone(),
                    text: text.clone(),
                    diagnostics,
                })
            };
            total = total.saturating_add(text.len());
            if total > options.limits.max_source_bytes {
                return Err(failed(vec![crate::diag::Diagnostic::new(
                    Code::E0105,
                    format!(
                        "the mocks are more than {} bytes together, the source-size limit",
                        options.limits.max_source_bytes
                    ),
                    crate::span::Span::default(),
                )]));
            }
            let (file, diagnostics) = crate::syntax::parse(text, &options.limits);
            if !diagnostics.is_empty() {
                return Err(failed(diagnostics));
            }
            parsed.push(Arc::new(crate::host::Library {
                name: name.clone(),
                text: text.clone(),
                file,
            }));
        }
        let check = CheckOptions {
            scope: options.scope.clone(),
            limits: options.limits.clone(),
            mocks: parsed,
            ..CheckOptions::default()
        };
        if let Err((index, diagnostics)) = crate::sema::check_mocks(&self.shared.registry, &check) {
            let mock = &check.mocks[index];
            return Err(Box::new(SourceErrors {
                name: mock.name.clone(),
                text: mock.text.clone(),
                diagnostics,
            }));
        }
        Ok(check.mocks)
    }
}

impl EngineShared {
    /// Keeps a dropped flow's run state for a new flow, unless enough are kept or it is large.
    fn recycle(&self, state: Box<pool::Pooled>) {
        if state.state.retained_bytes() > SPARE_STATE_BYTES {
            return;
        }
        let mut spare = self.spare_states.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < SPARE_STATES {
            spare.push(state);
        }
    }

    /// A run state of a dropped flow, if one is kept.
    fn reuse_state(&self) -> Option<Box<pool::Pooled>> {
        self.spare_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
    }
    /// Queues a flow for the compiler threads, starting them on first use. Returns false if the
    /// queue is full (or no compiler thread could start): the flow stays interpreted for now.
    fn submit(&self, flow: Weak<FlowInner>, job: Job) -> bool {
        let queue = self.compiler.get_or_init(|| {
            let (sender, receiver) = sync_channel::<CompileJob>(self.config.compile_queue.max(1));
            let receiver = Arc::new(Mutex::new(receiver));
            for k in 0..self.config.compiler_threads.max(1) {
                let receiver = receiver.clone();
                // A thread that cannot start leaves the others (or none: then every send fails
                // once the queue is full, and flows stay interpreted).
                let _ = std::thread::Builder::new()
                    .name(format!("koru-jit-compiler-{k}"))
                    .spawn(move || compiler_thread(&receiver));
            }
            sender
        });
        match queue.try_send((flow, job)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// One compiler thread: takes queued flows until the engine (the only sender) is dropped.
fn compiler_thread(receiver: &Mutex<Receiver<CompileJob>>) {
    loop {
        // The lock is held only while waiting for the next job, not while compiling it.
        let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((flow, job)) = job else { return };
        if let Some(flow) = flow.upgrade() {
            match job {
                Job::Compile { osr } => flow.compile_now(osr, Quality::Optimized),
                Job::Optimize => flow.optimize_now(),
            }
        }
    }
}

/// A compiled source: cheap to clone, `Send + Sync`, runs on any thread (concurrent runs each
/// take their own pooled flow state).
///
/// ```
/// use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits, Tier, Type};
/// let mut registry = Registry::new();
/// registry.event("~event add { a: i64, b: i64 } | sum i64", |a: i64, b: i64| a + b).unwrap();
/// let engine = Engine::new(registry);
/// let flow = engine
///     .compile("sum", "~add(a: x, b: 1)", &CompileOptions::default().input("x", Type::Int))
///     .unwrap();
/// let threads: Vec<_> = (0..4i64)
///     .map(|i| {
///         let flow = flow.clone();
///         std::thread::spawn(move || {
///             let outcome = flow.run(&Inputs::new().set("x", i), &RunLimits::default()).unwrap();
///             outcome.value().unwrap().get::<i64>().unwrap()
///         })
///     })
///     .collect();
/// let sums: Vec<i64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
/// assert_eq!(sums, [1, 2, 3, 4]);
/// assert_eq!(flow.stats().runs, 4);
/// // Bounds known before running: one dispatch, no loop.
/// assert_eq!(flow.cost_bound(&Inputs::new()).fuel, Some(1));
/// // Compile to native code now rather than when the flow gets hot.
/// flow.compile_native().unwrap();
/// assert_eq!(flow.tier(), Tier::Jit);
/// ```
#[derive(Clone)]
pub struct Flow {
    inner: Arc<FlowInner>,
}

struct FlowInner {
    /// The source, then the flow's name (one allocation).
    text: Box<str>,
    source_len: usize,
    /// Built at the first run-time error that needs a line and column.
    lines: OnceLock<LineIndex>,
    program: Program,
    layout: Layout,
    /// The interpreter's bytecode.
    code: crate::interp::Bytecode,
    registry: Arc<Registry>,
    /// Run states kept for reuse, so that steady-state runs allocate nothing.
    states: pool::StatePool,
    stats: stats::Counters,
    tier: Tier,
    policy: TierPolicy,
    /// Bytes of the program, layout, text and this struct, measured once at compile.
    static_bytes: usize,
    /// Set once: the native code, or why there is none (a failed compile is not retried).
    /// Declared after `program` and `layout`, which the code points into: dropped first.
    native: OnceLock<Result<NativeCode, JitError>>,
    compile_requested: AtomicBool,
    /// When `native` is [`Quality::Baseline`] code that got hot (`policy.call_threshold` native
    /// runs, or a native run of `policy.loop_threshold` iterations): its optimized recompile,
    /// which later runs use. Both stay alive until the flow is dropped (a run may still be in
    /// the baseline code), and both count in [`Flow::code_bytes`] and [`Flow::memory_bytes`].
    optimized: OnceLock<Result<NativeCode, JitError>>,
    optimize_requested: AtomicBool,
    /// Finished runs in baseline code.
    baseline_runs: AtomicU64,
    engine: Weak<EngineShared>,
    /// The scope and shape it was checked against (what its artifact records).
    scope: Option<Box<str>>,
    shape: Option<Box<str>>,
}

impl Drop for FlowInner {
    /// Hands the flow's spare run state to the engine for the next new flow.
    fn drop(&mut self) {
        if let Some(state) = self.states.take_spare() {
            if let Some(engine) = self.engine.upgrade() {
                engine.recycle(state);
            }
        }
    }
}

impl FlowInner {
    fn source(&self) -> &str {
        &self.text[..self.source_len]
    }

    fn name(&self) -> &str {
        &self.text[self.source_len..]
    }

    /// A run state for this flow: one recycled from a dropped flow if the engine kept one.
    fn new_state(&self) -> Box<pool::Pooled> {
        let tally = self.stats.new_tally();
        match self.engine.upgrade().and_then(|e| e.reuse_state()) {
            Some(mut pooled) => {
                pooled.state.reuse_for(&self.program, &self.layout);
                pooled.tally = tally;
                pooled.accounted = 0;
                pooled
            }
            None => Box::new(pool::Pooled {
                state: RunState::new(&self.program, &self.layout),
                tally,
                accounted: 0,
            }),
        }
    }
    /// Compiles now on this thread (unless another thread did); with loop entries for on-stack
    /// replacement when a hot loop asked.
    fn compile_now(&self, osr: bool, quality: Quality) {
        self.native.get_or_init(|| self.compile_at(osr, quality));
    }

    /// The flow's code at `quality`, timed (in `compile_nanos`, or `recompile_nanos` for the
    /// optimizing recompile of baseline code) and traced.
    fn compile_at(&self, osr: bool, quality: Quality) -> Result<NativeCode, JitError> {
        let started = Instant::now();
        let result = crate::jit::compile_with_quality(
            &self.program,
            &self.layout,
            &self.registry,
            osr,
            quality,
            &self.policy.compile_budget,
        );
        let elapsed = started.elapsed();
        let recompile =
            matches!(self.native.get(), Some(Ok(code)) if code.quality() == Quality::Baseline);
        let counter = if recompile {
            &self.stats.recompile_nanos
        } else {
            &self.stats.compile_nanos
        };
        counter.store(elapsed.as_nanos() as u64, Ordering::Relaxed);
        match &result {
            Ok(code) => {
                tracing::info!(target: "koru_jit", flow = %self.name(), ?quality, compile_us = elapsed.as_micros() as u64, code_bytes = code.code_bytes(), "compiled to native code")
            }
            Err(error) => {
                tracing::warn!(target: "koru_jit", flow = %self.name(), ?quality, %error, "stays in the interpreter")
            }
        }
        result
    }

    /// Compiles the optimized code of a flow running baseline code, now on this thread (unless
    /// another thread did). A failure leaves the baseline code in use, and is not retried.
    fn optimize_now(&self) {
        if !self.runs_baseline() {
            return;
        }
        self.optimized
            .get_or_init(|| self.compile_at(false, Quality::Optimized));
    }

    /// Whether runs use baseline code, with no optimized recompile yet.
    fn runs_baseline(&self) -> bool {
        self.optimized.get().is_none()
            && matches!(self.native.get(), Some(Ok(code)) if code.quality() == Quality::Baseline)
    }

    /// After a run in baseline code that ran `iterations` loop iterations: asks for the
    /// optimized recompile once the code is hot, by the thresholds the auto tier compiles at.
    fn after_baseline_run(self: &Arc<Self>, iterations: u64) {
        let runs = self.baseline_runs.fetch_add(1, Ordering::Relaxed) + 1;
        if runs < self.policy.call_threshold && iterations < self.policy.loop_threshold {
            return;
        }
        if self.optimize_requested.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.policy.background {
            let queued = self
                .engine
                .upgrade()
                .is_some_and(|engine| engine.submit(Arc::downgrade(self), Job::Optimize));
            if !queued {
                self.optimize_requested.store(false, Ordering::Release);
            }
            return;
        }
        self.optimize_now();
    }

    /// Asks for native code: now (synchronous policy) or from a compiler thread, once.
    fn request_compile(self: &Arc<Self>, osr: bool) {
        if self.native.get().is_some() || self.compile_requested.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.policy.background {
            // Never on a run's thread: with the queue full, or the engine (and its compiler
            // threads) dropped, the flow stays interpreted and asks again later.
            let queued = self
                .engine
                .upgrade()
                .is_some_and(|engine| engine.submit(Arc::downgrade(self), Job::Compile { osr }));
            if !queued {
                self.compile_requested.store(false, Ordering::Release);
            }
            return;
        }
        self.compile_now(osr, Quality::Optimized);
    }

    /// The code runs use: the optimized recompile once there is one, else the first code.
    fn native(&self) -> Option<&NativeCode> {
        if let Some(Ok(code)) = self.optimized.get() {
            return Some(code);
        }
        self.native.get().and_then(|r| r.as_ref().ok())
    }

    /// Every piece of native code the flow holds (both while a recompile replaced the first).
    fn all_native(&self) -> impl Iterator<Item = &NativeCode> {
        [self.native.get(), self.optimized.get()]
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_ref().ok())
    }
}

/// The interpreter's view of tiering for one run: at hot back-edges, compile and continue in
/// native code.
struct RunTiering<'r> {
    flow: &'r Arc<FlowInner>,
    limits: &'r RunLimits,
    output: &'r dyn OutputSink,
}

impl Tiering for RunTiering<'_> {
    fn back_edge(
        &self,
        loop_index: u32,
        state: &mut RunState,
    ) -> Option<Result<Option<ValueId>, Trap>> {
        if state.loop_iterations[loop_index as usize] < self.flow.policy.loop_threshold {
            return None;
        }
        self.flow.request_compile(true);
        // Code compiled for runs that start natively has no loop entries: keep interpreting.
        let native = self.flow.native().filter(|n| n.has_osr_entry(loop_index))?;
        self.flow.stats.osr_entries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "koru_jit", flow = %self.flow.name(), loop_index, iterations = state.loop_iterations[loop_index as usize], "continuing in native code");
        state.osr_entry = loop_index + 1;
        let result = native.run(&self.flow.program, state, self.limits, self.output);
        state.osr_entry = 0;
        Some(result)
    }

    fn check_interval(&self) -> u32 {
        self.flow
            .policy
            .loop_threshold
            .min(u64::from(crate::interp::OSR_CHECK_INTERVAL)) as u32
    }
}

impl Flow {
    /// The interpreter's bytecode, as `koru-jit emit --what bytecode` prints it.
    pub fn bytecode_listing(&self) -> String {
        crate::interp::code::Listing {
            code: &self.inner.code,
            program: &self.inner.program,
        }
        .to_string()
    }

    /// The name it was compiled under.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The source text.
    pub fn source(&self) -> &str {
        self.inner.source()
    }

    /// The typed IR, for this crate's JIT tests, benches and `emit` (internal: hidden).
    #[doc(hidden)]
    pub fn program(&self) -> &Program {
        &self.inner.program
    }

    /// The registry the flow was checked against.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The flow-state layout, for this crate's JIT tests and `emit` (internal: hidden).
    #[doc(hidden)]
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The flow's inputs, name and type, in the order they were declared: those of the compile
    /// options, then those the source declares (`~input { ... }`), then the guessed ones. A run
    /// needs a value for each (see [`Flow::run`]).
    pub fn inputs(&self) -> impl ExactSizeIterator<Item = (&str, Type)> + '_ {
        self.inner
            .program
            .inputs
            .iter()
            .map(|input| (&*input.name, input.ty))
    }

    /// The type of flow input `name`, if the flow has that input.
    pub fn input_type(&self, name: &str) -> Option<Type> {
        self.inputs().find(|(n, _)| *n == name).map(|(_, ty)| ty)
    }

    /// The tier the next run starts in.
    pub fn tier(&self) -> Tier {
        if self.inner.native().is_some() {
            Tier::Jit
        } else {
            Tier::Interp
        }
    }

    /// Why the JIT could not compile this flow, if it tried and could not.
    pub fn jit_error(&self) -> Option<&JitError> {
        self.inner.native.get().and_then(|r| r.as_ref().err())
    }

    /// Bytes of memory the flow holds, measured from the capacities of what it owns: its
    /// program and layout, its run states (as last handed back), and its native code (whole
    /// pages) with the data beside it. This is what [`CacheConfig::max_bytes`] bounds.
    pub fn memory_bytes(&self) -> usize {
        let inner = &self.inner;
        inner.static_bytes
            + inner.states.bytes()
            + inner
                .all_native()
                .map(NativeCode::heap_bytes)
                .sum::<usize>()
    }

    /// Bytes of native code (0 when interpreted): the first code and its optimized recompile,
    /// when the flow has both.
    pub fn code_bytes(&self) -> usize {
        self.inner.all_native().map(NativeCode::code_bytes).sum()
    }

    /// An upper bound of the fuel and loop iterations a run with `inputs` can use, computed
    /// without running it; compare it with limits through
    /// [`crate::CostBound::exceeds`] to refuse a flow in advance.
    pub fn cost_bound(&self, inputs: &Inputs) -> CostBound {
        let values: Vec<Option<i64>> = self
            .inner
            .program
            .inputs
            .iter()
            .map(|input| match inputs.get(&input.name) {
                Some(Scalar::Int(v)) => Some(*v),
                _ => None,
            })
            .collect();
        crate::cost::bound(&self.inner.program, &values)
    }

    /// Compiles the flow to native code now, on this thread (a no-op if it is compiled).
    pub fn compile_native(&self) -> Result<(), JitError> {
        self.inner.compile_now(false, Quality::Baseline);
        self.jit_error().map_or(Ok(()), |e| Err(e.clone()))
    }

    /// A snapshot of the flow's counters: runs, fuel, iterations per tier, on-stack
    /// replacements, the tier, compile time and code size.
    pub fn stats(&self) -> FlowStats {
        let mut stats = self.inner.stats.snapshot(
            &self.inner.program,
            self.tier(),
            self.code_bytes(),
            self.inner.layout.bytes(),
            self.jit_error().cloned(),
        );
        stats.quality = self.inner.native().map(NativeCode::quality);
        stats
    }

    /// Runs every top-level flow with `inputs` under `limits`; `std.io` output goes to the
    /// registry's sink. A run that stops early (a limit, a run-time error) is an [`Outcome`],
    /// not an `Err`.
    ///
    /// # Errors
    /// [`InputError`] if `inputs` do not give a value to every input of [`Flow::inputs`] and
    /// nothing else (nothing runs then). A value is converted to its input's type as
    /// [`Scalar::converted_to`] says (an int for a float input, anything for a `str` one).
    pub fn run(&self, inputs: &Inputs, limits: &RunLimits) -> Result<Outcome, InputError> {
        self.run_with_output(inputs, limits, &**self.inner.registry.output())
    }

    /// Like [`Flow::run`], with this run's `std.io` output sent to `output` instead of the
    /// registry's sink ([`Registry::set_output`]): concurrent runs of one flow can each capture
    /// their own output. [`RunLimits::max_output_bytes`] bounds what reaches the sink.
    ///
    /// ```
    /// use koru_jit::{CaptureSink, CompileOptions, Engine, Inputs, Registry, RunLimits, Type};
    /// let engine = Engine::new(Registry::with_std());
    /// let flow = engine
    ///     .compile(
    ///         "hello",
    ///         "~std.io:println(text: name)\n~std.io:eprintln(message: \"done\")",
    ///         &CompileOptions::default().input("name", Type::Str),
    ///     )
    ///     .unwrap();
    /// let sink = CaptureSink::new();
    /// flow.run_with_output(&Inputs::new().set("name", "ada"), &RunLimits::default(), &sink)
    ///     .unwrap();
    /// assert_eq!(sink.take_out(), "ada\n");
    /// assert_eq!(sink.take_err(), "done\n");
    /// ```
    ///
    /// # Errors
    /// [`InputError`] if `inputs` do not match the flow's inputs (nothing runs then).
    pub fn run_with_output(
        &self,
        inputs: &Inputs,
        limits: &RunLimits,
        output: &dyn OutputSink,
    ) -> Result<Outcome, InputError> {
        self.run_into(inputs, limits, output, None)
    }

    /// Like [`Flow::run_with_output`], and also says what became of the run's obligations
    /// (SPEC 12): the discharging calls made when it ended, newest obligation first, or the
    /// obligations left open with [`RunLimits::keep_handles_open`].
    ///
    /// ```
    /// use koru_jit::{CaptureSink, CompileOptions, Engine, Inputs, Registry, RunLimits};
    /// let mut registry = Registry::with_std();
    /// koru_jit::host::register_demo_events(&mut registry, Default::default()).unwrap();
    /// let flow = Engine::new(registry)
    ///     .compile("t", "~file.open(path: \"a\") | opened h |> file.read(handle: h) | data d |> _\n| failed _ |> _", &CompileOptions::default())
    ///     .unwrap();
    /// let sink = CaptureSink::new();
    /// let report = flow.run_report(&Inputs::new(), &RunLimits::default(), &sink).unwrap();
    /// assert_eq!(report.obligations.discharged.len(), 1);
    /// assert_eq!(report.obligations.discharged[0].handle, "file_1");
    /// assert_eq!(sink.take_out(), "closed file_1\n");
    /// ```
    ///
    /// # Errors
    /// [`InputError`] if `inputs` do not match the flow's inputs (nothing runs then).
    pub fn run_report(
        &self,
        inputs: &Inputs,
        limits: &RunLimits,
        output: &dyn OutputSink,
    ) -> Result<RunReport, InputError> {
        let mut obligations = Obligations::default();
        let outcome = self.run_into(inputs, limits, output, Some(&mut obligations))?;
        Ok(RunReport {
            outcome,
            obligations,
        })
    }

    /// A run; what became of its obligations goes to `report` when there is one. (Not building
    /// a [`RunReport`] for [`Flow::run`] keeps its per-run cost what it was before obligations:
    /// a flow that opened nothing does no discharge work at all.)
    fn run_into(
        &self,
        inputs: &Inputs,
        limits: &RunLimits,
        output: &dyn OutputSink,
        report: Option<&mut Obligations>,
    ) -> Result<Outcome, InputError> {
        let inner = &self.inner;
        // The call threshold counts finished runs: with 1, the first run starts interpreted.
        if inner.tier == Tier::Auto
            && inner.native.get().is_none()
            && inner.stats.threshold_runs.load(Ordering::Relaxed) >= inner.policy.call_threshold
        {
            inner.request_compile(false);
        }
        let mut pooled = inner.states.take(|| inner.new_state());
        let state = &mut pooled.state;
        state.reset();
        let mut native_run = false;
        let mut baseline_run = false;
        let result = inputs
            .write(&inner.program, &inner.layout, state)
            .map(|()| {
                let result = match (inner.tier, inner.native()) {
                    (Tier::Interp, _) | (_, None) => {
                        let tiering = RunTiering {
                            flow: inner,
                            limits,
                            output,
                        };
                        let hook: Option<&dyn Tiering> =
                            (inner.tier == Tier::Auto).then_some(&tiering);
                        crate::interp::run(
                            &inner.code,
                            &inner.program,
                            &inner.layout,
                            &inner.registry,
                            state,
                            limits,
                            output,
                            hook,
                        )
                    }
                    (_, Some(native)) => {
                        native_run = true;
                        baseline_run = native.quality() == Quality::Baseline;
                        native.run(&inner.program, state, limits, output)
                    }
                };
                // However the run ended (a host panic included: the tiers catch it), its open
                // obligations are discharged before the outcome is made.
                if report.is_some() || !state.handles.is_empty() {
                    let obligations = discharge::finish(
                        &inner.program,
                        &inner.registry,
                        state,
                        output,
                        limits.keep_handles_open,
                    );
                    if let Some(report) = report {
                        *report = obligations;
                    }
                }
                self.outcome(result, state)
            });
        inner
            .stats
            .tally(&pooled.tally)
            .record(&pooled.state, native_run);
        if inner.tier == Tier::Auto && inner.native.get().is_none() {
            inner.stats.threshold_runs.fetch_add(1, Ordering::Relaxed);
        }
        let iterations = pooled.state.iterations;
        inner.states.give_back(pooled);
        if baseline_run && inner.runs_baseline() {
            inner.after_baseline_run(iterations);
        }
        result
    }

    fn outcome(&self, result: Result<Option<ValueId>, Trap>, state: &RunState) -> Outcome {
        let inner = &*self.inner;
        let fuel = state.fuel_used;
        match result {
            Ok(value) => Outcome::Ok {
                value: value.map(|v| self.materialize(v, state)),
                fuel,
            },
            Err(Trap::Exhausted(limit)) => Outcome::Exhausted {
                limit,
                fuel,
                last_event: inner.program.last_event_name(state.last_event),
            },
            Err(Trap::Finished(result)) => self.outcome(*result, state),
            Err(Trap::Error(error)) => {
                let at = inner
                    .lines
                    .get_or_init(|| LineIndex::new(inner.source()))
                    .line_col(inner.source(), error.span.start);
                Outcome::Error {
                    error: RuntimeError {
                        code: error.code,
                        message: error.message,
                        event: error.event,
                        span: error.span,
                        line: at.line,
                        column: at.column,
                    },
                    fuel,
                }
            }
        }
    }

    /// Reads a value's payload out of the flow state.
    fn materialize(&self, value: ValueId, state: &RunState) -> Value {
        let inner = &*self.inner;
        let desc = &inner.program.values[value.0 as usize];
        let read = |local| {
            let slot = inner.layout.slot(local);
            let bits = state.frame[slot.offset as usize];
            match slot.ty {
                Type::Int => Scalar::Int(bits as i64),
                Type::Float => Scalar::Float(f64::from_bits(bits)),
                Type::Bool => Scalar::Bool(bits != 0),
                // SAFETY: a str local holds a live (pointer, length) pair of UTF-8 from this run.
                Type::Str => Scalar::Str(
                    unsafe { crate::host::word_str(bits, state.frame[slot.offset as usize + 1]) }
                        .to_string(),
                ),
            }
        };
        let payload = match &desc.payload {
            ValuePayload::Empty => Payload::Empty,
            ValuePayload::Identity(local) => Payload::Identity(read(*local)),
            ValuePayload::Struct(fields) => {
                Payload::Struct(fields.iter().map(|(n, l)| (n.clone(), read(*l))).collect())
            }
        };
        Value {
            branch: desc.branch.clone(),
            payload,
        }
    }
}

/// Process-wide: bytes of native code currently alive (compiled and not yet freed).
pub fn live_code_bytes() -> usize {
    crate::jit::live_code_bytes()
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Flow>();
    check::<Engine>();
    let _ = AtomicU64::new(0);
}
