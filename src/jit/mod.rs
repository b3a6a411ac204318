//! The Cranelift tier: typed IR + layout -> Cranelift IR -> native code. The only module that
//! names Cranelift.
//!
//! Each compiled flow gets its own `JITModule`, so that its code is freed when the flow is
//! dropped. The compile sequence follows cranelift-jit-demo: declare, define, clear the context,
//! finalize, get the pointer. Generated code calls no symbol: host shims and runtime helpers are
//! reached through pointer constants, and a guard refuses any symbol Cranelift would look up.

mod lookup;
mod lower;
pub(crate) mod runtime;

use crate::host::Registry;
use crate::ir::Program;
use crate::layout::Layout;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::Function;
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{BranchProtection, JITMemoryKind, JITMemoryProvider, SystemMemoryProvider};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bytes of native code alive in this process (compiled, not yet freed).
static LIVE_CODE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of native code alive in this process: what the bounded caches keep in check.
pub fn live_code_bytes() -> usize {
    LIVE_CODE_BYTES.load(Ordering::Relaxed)
}

/// Why a flow could not be compiled to native code (it then stays in the interpreter).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JitError {
    /// The flow uses something the JIT does not lower.
    #[error("the JIT cannot lower this flow: {0}")]
    Unsupported(String),
    /// Cranelift rejected the generated function (a bug in the lowering).
    #[error("code generation failed: {0}")]
    Codegen(String),
    /// The host ISA is not supported by Cranelift.
    #[error("this machine is not supported by the JIT: {0}")]
    UnsupportedHost(String),
    /// The flow is larger than the [`CompileBudget`] allows, or its compile took longer: it
    /// stays in the interpreter, which runs it with the same results.
    #[error("the flow is too large for the JIT: {size} {what}, over the compile budget of {limit} (TierPolicy::compile_budget.{field})")]
    OverBudget {
        /// What was measured (`steps after inlining`, `instructions of Cranelift IR`,
        /// `µs of compile time`).
        what: &'static str,
        /// The budget's field that bounds it.
        field: &'static str,
        /// The flow's measure.
        size: u64,
        /// The budget.
        limit: u64,
    },
}

/// What one JIT compile may cost. A flow larger than this stays in the interpreter
/// ([`JitError::OverBudget`], shown by `Flow::stats`, `--stats`, `emit` and `/v1/flows/stats`).
/// Cranelift's passes grow faster than linearly with the size of one function (its egraph and
/// register allocator on long chains of blocks), so a large flow is compiled as several
/// functions of at most about `function_steps` steps each: below the bounds, compile time and
/// memory grow linearly with the flow (`koru-jit bench --workload compile-64x`,
/// `tests/footprint.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CompileBudget {
    /// Steps after subflows are inlined (`Program::step_count`), checked before lowering.
    pub max_steps: usize,
    /// Instructions of the lowered Cranelift IR, checked before code generation (a step can
    /// lower to many: a template with many holes, a host call with many arguments).
    pub max_instructions: usize,
    /// Wall-clock time of the compile, checked after lowering and after the code generation of
    /// each function but the last: a compile past it is abandoned before more work (Cranelift
    /// cannot be interrupted inside a function; `function_steps` keeps each one short). A compile
    /// whose last function is generated is kept: its time is spent, and refusing it would leave a
    /// small flow interpreted for good because the machine was slow once (a loaded server, or
    /// emulation: the aarch64 suite under qemu).
    pub max_time: Duration,
    /// Steps of one Cranelift function: a larger flow is compiled as several functions (runs
    /// of top-level flows, large subflow bodies) of about this many steps, so that compile time
    /// grows linearly with the flow. Loops inside such a part have no entry for on-stack
    /// replacement (a run already in one finishes interpreted; the next starts natively).
    pub function_steps: usize,
    /// Fields one step assigns (a `captured` update, a payload, an accumulator's initial value,
    /// a call's arguments), checked before lowering: Cranelift's SSA construction costs a wide
    /// step's width squared in time and memory (an update of 28,000 fields in a loop took 13.6
    /// GB and 55 s to compile), where the interpreter's compile is linear in it.
    pub max_step_width: usize,
}

impl Default for CompileBudget {
    fn default() -> Self {
        CompileBudget {
            max_steps: DEFAULT_MAX_STEPS,
            max_instructions: DEFAULT_MAX_INSTRUCTIONS,
            max_time: Duration::from_millis(500),
            function_steps: DEFAULT_FUNCTION_STEPS,
            max_step_width: DEFAULT_MAX_STEP_WIDTH,
        }
    }
}

const DEFAULT_MAX_STEPS: usize = 5_000;
const DEFAULT_MAX_INSTRUCTIONS: usize = 250_000;
const DEFAULT_FUNCTION_STEPS: usize = 128;
/// An update of 1,000 fields in a loop: 0.09 s and 32 MB for the whole run, native.
const DEFAULT_MAX_STEP_WIDTH: usize = 1_024;
/// Cranelift IR instructions of a function past which it is not optimized (a sum of 2,048 terms
/// is about 12,000 and took 0.3 s at `speed`; the bench's flows have a few hundred).
const MAX_OPTIMIZED_INSTRUCTIONS: usize = 10_000;

impl CompileBudget {
    /// No bound at all (tests, and embedders who trust their sources).
    pub fn unlimited() -> CompileBudget {
        CompileBudget {
            max_steps: usize::MAX,
            max_instructions: usize::MAX,
            max_time: Duration::MAX,
            function_steps: DEFAULT_FUNCTION_STEPS,
            max_step_width: usize::MAX,
        }
    }

    fn check_steps(&self, program: &Program) -> Result<(), JitError> {
        over(
            program.step_count,
            self.max_steps,
            "steps after inlining",
            "max_steps",
        )?;
        over(
            lower::widest_step(&program.flows),
            self.max_step_width,
            "fields assigned by one step",
            "max_step_width",
        )
    }

    fn check_instructions(
        &self,
        functions: &[cranelift_codegen::ir::Function],
    ) -> Result<(), JitError> {
        over(
            functions.iter().map(|f| f.dfg.num_insts()).sum(),
            self.max_instructions,
            "instructions of Cranelift IR",
            "max_instructions",
        )
    }

    fn check_time(&self, started: Instant) -> Result<(), JitError> {
        let elapsed = started.elapsed();
        if elapsed <= self.max_time {
            return Ok(());
        }
        Err(JitError::OverBudget {
            what: "µs of compile time",
            field: "max_time",
            size: elapsed.as_micros() as u64,
            limit: self.max_time.as_micros() as u64,
        })
    }
}

fn over(
    size: usize,
    limit: usize,
    what: &'static str,
    field: &'static str,
) -> Result<(), JitError> {
    if size <= limit {
        return Ok(());
    }
    Err(JitError::OverBudget {
        what,
        field,
        size: size as u64,
        limit: limit as u64,
    })
}

/// What `koru-jit emit` shows.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Cranelift IR before optimization.
    pub clif: String,
    /// The machine code, as Cranelift's disassembly of its lowered instructions.
    pub asm: String,
}

/// How much work Cranelift puts into a flow's code. The tier policy chooses: code compiled
/// before anything is known about the flow (`Tier::Jit` before its first run) is
/// [`Quality::Baseline`]; code compiled because the flow is hot (the auto tier's thresholds, and
/// the recompile of baseline code that got hot) is [`Quality::Optimized`]. README, "Compile
/// latency", has the measured trade-off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Quality {
    /// `opt_level=none` and the single-pass register allocator: about a third of the compile
    /// time, code up to ~1.8x slower in hot loops.
    Baseline,
    /// `opt_level=speed` and the backtracking register allocator.
    #[default]
    Optimized,
}

/// Native code of one flow. Dropping it frees the code.
pub struct NativeCode {
    memory: CodeMemory,
    entry: runtime::Entry,
    data: Box<runtime::NativeData>,
    quality: Quality,
    /// The loops an interpreted run can continue at, sorted.
    osr_loops: Vec<u32>,
}

// SAFETY: the code's memory is only freed in `drop`, and the code and its data are immutable
// after they are finalized; runs only read them.
unsafe impl Send for NativeCode {}
// SAFETY: as above.
unsafe impl Sync for NativeCode {}

/// The pages of one flow's code: one mapping for all its functions, made executable once they
/// are copied in, unmapped when the flow's code is dropped.
struct CodeMemory {
    pages: SystemMemoryProvider,
    bytes: usize,
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        LIVE_CODE_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
        // SAFETY: the `NativeCode` (or the failed compile) owning these pages is being dropped:
        // no run can be executing them, and nothing else holds their address.
        unsafe { self.pages.free_memory() };
    }
}

impl NativeCode {
    pub fn code_bytes(&self) -> usize {
        self.memory.bytes
    }

    /// The settings this code was compiled with.
    pub fn quality(&self) -> Quality {
        self.quality
    }

    /// Memory the code holds: its pages (one mapping of whole pages) and the data beside it.
    pub fn heap_bytes(&self) -> usize {
        const PAGE: usize = 4096;
        self.code_bytes().div_ceil(PAGE).max(1) * PAGE + self.data.heap_bytes()
    }

    /// Whether an interpreted run can continue in this code at the head of loop `loop_index`.
    pub fn has_osr_entry(&self, loop_index: u32) -> bool {
        self.osr_loops.binary_search(&loop_index).is_ok()
    }

    /// Runs the code over `state` (see [`runtime::run`]).
    pub(crate) fn run(
        &self,
        program: &Program,
        state: &mut crate::state::RunState,
        limits: &crate::limits::RunLimits,
        output: &dyn crate::host::OutputSink,
    ) -> Result<Option<crate::ir::ValueId>, crate::state::Trap> {
        // SAFETY: `self` was compiled from `program` and the layout `state` was made for (the
        // engine keeps them together in one `Flow`), and `self.data` is alive.
        unsafe { runtime::run(self.entry, &self.data, program, state, limits, output) }
    }
}

/// The host's ISA for `quality`, each built once per process (immutable, shared by every
/// compile on every thread).
fn host_isa(quality: Quality) -> Result<&'static OwnedTargetIsa, JitError> {
    static OPTIMIZED: OnceLock<Result<OwnedTargetIsa, String>> = OnceLock::new();
    static BASELINE: OnceLock<Result<OwnedTargetIsa, String>> = OnceLock::new();
    let (cell, opt_level, regalloc) = match quality {
        Quality::Optimized => (&OPTIMIZED, "speed", "backtracking"),
        Quality::Baseline => (&BASELINE, "none", "single_pass"),
    };
    cell.get_or_init(|| {
        let mut flags = settings::builder();
        let mut set = |name: &str, value: &str| flags.set(name, value).map_err(|e| e.to_string());
        // Long-range calls only (pointer constants anyway), no PIC: the same choices as
        // `JITBuilder::new`.
        set("use_colocated_libcalls", "false")?;
        set("is_pic", "false")?;
        set("opt_level", opt_level)?;
        set("regalloc_algorithm", regalloc)?;
        // Nothing unwinds through generated code (host panics are caught in the shims), and
        // nothing registered the unwind tables before either.
        set("unwind_info", "false")?;
        // The IR verifier guards the lowering in debug builds (the test suite); release builds
        // skip its cost at every compile.
        set(
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        )?;
        let builder = cranelift_native::builder().map_err(|e| e.to_string())?;
        builder
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| JitError::UnsupportedHost(e.clone()))
}

/// Builds what a compile needs that is built once per process (both ISAs), and compiles a small
/// flow with a loop and a host call once at each quality, so that the first compile a user asks
/// for does not pay for them, nor for the first touch of Cranelift's code and tables (measured
/// in README, "Compile latency": ~1 ms). Runs once per process; `Engine` construction calls it.
pub fn warm_up() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut registry = Registry::new();
        let registered = registry.event(
            "~event warm { a: []const u8, b: []const u8 } | ok []const u8",
            |_: &str, _: &str| "ok",
        );
        if registered.is_err() {
            return;
        }
        // Loops, a branch, arithmetic, a capture and a host call with a string argument and an
        // int converted to one: the paths of small flows.
        let source = "~capture({ n: 0 })\n| as c |> for(0..3)\n    | each _ |> for(0..4)\n        | each i |> if(i > 1)\n            | then |> warm(a: \"0\", b: i)\n    | done |> captured { n: c.n + 1 }\n| captured r |> result r.n\n";
        let limits = crate::limits::FrontEndLimits::default();
        let (file, diagnostics) = crate::syntax::parse(source, &limits);
        let options = crate::sema::CheckOptions::default();
        let checked = crate::sema::check(&registry, &file, source, &options);
        let (true, Ok(program)) = (diagnostics.is_empty(), checked) else {
            return;
        };
        let layout = Layout::of(&program);
        for quality in [Quality::Baseline, Quality::Optimized] {
            let _ = build(
                &program,
                &layout,
                &registry,
                false,
                true,
                quality,
                &CompileBudget::default(),
                None,
            );
        }
    });
}

/// The address of the helper generated code calls for a trace line (SPEC 13), as it appears in
/// the CLIF of a traced flow: `tests/native.rs` checks that an untraced flow never names it.
pub fn trace_helper_address() -> usize {
    runtime::helper_trace as *const u8 as usize
}

/// Lowers and compiles `program` for this machine, within the default [`CompileBudget`].
pub fn compile(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
) -> Result<NativeCode, JitError> {
    compile_with_quality(
        program,
        layout,
        registry,
        false,
        Quality::Optimized,
        &CompileBudget::default(),
    )
}

/// Like [`compile`] (or [`compile_with_osr`] when `osr` is set), within `budget`.
pub fn compile_with_budget(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    osr: bool,
    budget: &CompileBudget,
) -> Result<NativeCode, JitError> {
    compile_with_quality(program, layout, registry, osr, Quality::Optimized, budget)
}

/// Like [`compile_with_budget`], with the settings of `quality`.
pub fn compile_with_quality(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    osr: bool,
    quality: Quality,
    budget: &CompileBudget,
) -> Result<NativeCode, JitError> {
    build(program, layout, registry, false, osr, quality, budget, None).map(|(code, _)| code)
}

/// Like [`compile`], with an entry at every loop head so that an interpreted run can continue in
/// the code (on-stack replacement). The entries cost compile time; runs that start in native
/// code do not need them.
pub fn compile_with_osr(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
) -> Result<NativeCode, JitError> {
    compile_with_quality(
        program,
        layout,
        registry,
        true,
        Quality::Optimized,
        &CompileBudget::default(),
    )
}

/// Like [`compile`], also returning the Cranelift IR and the disassembly when `listing` is set.
pub fn compile_with_listing(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    listing: bool,
) -> Result<(NativeCode, Listing), JitError> {
    build(
        program,
        layout,
        registry,
        listing,
        false,
        Quality::Optimized,
        &CompileBudget::default(),
        None,
    )
}

/// Where one compile's time went ([`compile_phases`], `examples/compile_time.rs`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CompilePhases {
    /// The ISA (built once per process) and the reused contexts, taken from their pool.
    pub setup: Duration,
    /// Typed IR to Cranelift IR (`lower.rs`).
    pub lower: Duration,
    /// Cranelift's passes over every function: egraph (at `speed`), lowering to machine
    /// instructions, register allocation, emission.
    pub codegen: Duration,
    /// The code's memory: one mapping, the copy, and making it executable (mprotect; icache
    /// maintenance where the machine needs it).
    pub install: Duration,
    /// The whole compile.
    pub total: Duration,
}

impl CompilePhases {
    /// One line per phase, in microseconds.
    pub fn report(&self) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let other = self
            .total
            .saturating_sub(self.setup + self.lower + self.codegen + self.install);
        format!(
            "  setup {:8.1} us\n  lower {:8.1} us\n  codegen {:6.1} us\n  install {:6.1} us\n  other {:8.1} us\n  total {:8.1} us",
            us(self.setup),
            us(self.lower),
            us(self.codegen),
            us(self.install),
            us(other),
            us(self.total)
        )
    }
}

/// Like [`compile_with_quality`] (no loop entries, the default budget), also returning where the
/// compile's time went.
pub fn compile_phases(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    quality: Quality,
) -> Result<(NativeCode, CompilePhases), JitError> {
    let mut phases = CompilePhases::default();
    let code = build(
        program,
        layout,
        registry,
        false,
        false,
        quality,
        &CompileBudget::default(),
        Some(&mut phases),
    )?
    .0;
    Ok((code, phases))
}

/// Records [`CompilePhases`] when asked to (no clock read otherwise).
struct Laps {
    on: bool,
    mark: Instant,
    phases: CompilePhases,
}

impl Laps {
    fn new(started: Instant, on: bool) -> Laps {
        Laps {
            on,
            mark: started,
            phases: CompilePhases::default(),
        }
    }

    fn lap(&mut self, slot: fn(&mut CompilePhases) -> &mut Duration) {
        if self.on {
            let now = Instant::now();
            *slot(&mut self.phases) += now - self.mark;
            self.mark = now;
        }
    }
}

/// Cranelift's reusable state: its compile context (with the register allocator's) and the
/// frontend's builder context. Reused across compiles from a small process-wide pool, keeping
/// their allocations: at most [`POOLED_CONTEXTS`] are kept, and one that compiled a function of
/// more than [`POOLED_MAX_INSTRUCTIONS`] instructions is dropped rather than kept, so the memory
/// the pool holds stays bounded whatever the flows and the number of compiling threads.
struct Contexts {
    codegen: cranelift_codegen::Context,
    builder: FunctionBuilderContext,
}

const POOLED_CONTEXTS: usize = 4;
const POOLED_MAX_INSTRUCTIONS: usize = 16 * 1024;

/// The process's pool of [`Contexts`].
static CONTEXTS: Pool = Pool(Mutex::new(Vec::new()));

struct Pool(Mutex<Vec<Box<Contexts>>>);

impl Pool {
    fn take(&self) -> Box<Contexts> {
        let pooled = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        pooled.unwrap_or_else(|| {
            Box::new(Contexts {
                codegen: cranelift_codegen::Context::new(),
                builder: FunctionBuilderContext::new(),
            })
        })
    }

    /// Keeps `contexts` for the next compile, unless the pool is full or they grew for a
    /// function of more than `POOLED_MAX_INSTRUCTIONS` instructions.
    fn give_back(&self, mut contexts: Box<Contexts>, largest_function: usize) {
        if largest_function > POOLED_MAX_INSTRUCTIONS {
            return;
        }
        contexts.codegen.clear();
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_CONTEXTS {
            pool.push(contexts);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    listing: bool,
    osr: bool,
    quality: Quality,
    budget: &CompileBudget,
    phases: Option<&mut CompilePhases>,
) -> Result<(NativeCode, Listing), JitError> {
    let started = Instant::now();
    let mut laps = Laps::new(started, phases.is_some());
    // The cheapest bound first: nothing is lowered for a flow that is too large.
    budget.check_steps(program)?;
    let isa = host_isa(quality)?;
    let mut contexts = CONTEXTS.take();
    laps.lap(|p| &mut p.setup);
    let mut largest = 0;
    let result = build_with(
        &mut contexts,
        &mut largest,
        &mut laps,
        isa,
        program,
        layout,
        registry,
        listing,
        osr,
        quality,
        budget,
        started,
    );
    CONTEXTS.give_back(contexts, largest);
    if let (Some(p), Ok(_)) = (phases, &result) {
        *p = laps.phases;
        p.total = started.elapsed();
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn build_with(
    contexts: &mut Contexts,
    largest: &mut usize,
    laps: &mut Laps,
    isa: &OwnedTargetIsa,
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    listing: bool,
    osr: bool,
    quality: Quality,
    budget: &CompileBudget,
    started: Instant,
) -> Result<(NativeCode, Listing), JitError> {
    let lowered = lower::lower(
        program,
        layout,
        registry,
        isa.default_call_conv(),
        &mut contexts.builder,
        // The function the last compile left in the context (cleared when given back).
        std::mem::replace(&mut contexts.codegen.func, Function::new()),
        osr,
        budget.function_steps,
    );
    let mut lowered = match lowered {
        Ok(lowered) => lowered,
        Err(error) => {
            // The builder context may hold a half-built function: start the next from a new one.
            contexts.builder = FunctionBuilderContext::new();
            return Err(JitError::Unsupported(error));
        }
    };
    *largest = lowered
        .functions
        .iter()
        .map(|f| f.dfg.num_insts())
        .max()
        .unwrap_or(0);
    laps.lap(|p| &mut p.lower);
    // Lowering is linear in the flow; what follows is Cranelift's, linear too while each
    // function stays small (`function_steps`).
    budget.check_instructions(&lowered.functions)?;
    budget.check_time(started)?;
    let context = &mut contexts.codegen;
    let mut text = Listing::default();
    // Every function's machine code, one after the other, each at its alignment; copied into
    // one mapping at the end.
    let mut code: Vec<u8> = Vec::new();
    let mut offsets = Vec::with_capacity(lowered.functions.len());
    let functions = lowered.functions.len();
    let min_align = isa.function_alignment().preferred.max(16) as usize;
    for (k, function) in lowered.functions.drain(..).enumerate() {
        context.clear();
        context.func = function;
        context.set_disasm(listing);
        if listing {
            text.clif += &context.func.display().to_string();
        }
        // Cranelift's optimizing passes and its backtracking register allocator grow faster
        // than linearly with a function's size (a hot loop over one sum of 16,384 terms took
        // 10 s to optimize, where baseline code took 0.35 s): a function that large is
        // compiled at baseline quality, whatever was asked.
        let isa = if quality == Quality::Optimized
            && context.func.dfg.num_insts() > MAX_OPTIMIZED_INSTRUCTIONS
        {
            host_isa(Quality::Baseline)?
        } else {
            isa
        };
        let compiled = context
            .compile(&**isa, &mut ControlPlane::default())
            .map_err(|e| JitError::Codegen(format!("{:?}", e.inner)))?;
        // Generated code refers to nothing by name: helpers are pointer constants. Should
        // Cranelift ever emit a relocation (a libcall), refuse the code rather than resolve it
        // against the process's symbols.
        let relocs = compiled.buffer.relocs();
        if !relocs.is_empty() {
            let names: Vec<String> = relocs.iter().map(|r| format!("{:?}", r.target)).collect();
            return Err(JitError::Unsupported(format!(
                "generated code would call unregistered symbols: {}",
                names.join(", ")
            )));
        }
        let align = (compiled.buffer.alignment as usize).max(min_align);
        code.resize(code.len().next_multiple_of(align), 0);
        offsets.push(code.len());
        code.extend_from_slice(compiled.code_buffer());
        if listing {
            text.asm += &compiled.vcode.clone().unwrap_or_default();
        }
        laps.lap(|p| &mut p.codegen);
        // Past the last function the time is spent: the compile is kept.
        if k + 1 < functions {
            budget.check_time(started)?;
        }
    }
    context.clear();
    // One mapping for the whole flow, then executable.
    let mut memory = CodeMemory {
        pages: SystemMemoryProvider::new(),
        bytes: 0,
    };
    let base = memory
        .pages
        .allocate(
            code.len().max(1),
            min_align as u64,
            JITMemoryKind::Executable,
        )
        .map_err(|e| JitError::Codegen(format!("cannot map memory for the code: {e}")))?;
    // SAFETY: `base` points to at least `code.len()` writable bytes just mapped for this flow.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), base, code.len()) };
    memory
        .pages
        .finalize(BranchProtection::None)
        .map_err(|e| JitError::Codegen(e.to_string()))?;
    memory.bytes = code.len();
    LIVE_CODE_BYTES.fetch_add(memory.bytes, Ordering::Relaxed);
    laps.lap(|p| &mut p.install);
    let address = |k: usize| base as usize + offsets[k];
    // The regions' entries, where generated code finds them (the table does not move: it is
    // boxed, and `data` itself is boxed).
    lowered.data.region_table = (1..functions).map(address).collect();
    lowered.data.region_entries = lowered.data.region_table.as_ptr() as usize;
    // SAFETY: `lower` built function 0 with exactly the `Entry` signature
    // (`extern "C" fn(*mut u64, *mut RunState) -> u32` in the ISA's default C convention), and
    // its code is now executable at this address.
    let entry = unsafe { std::mem::transmute::<usize, runtime::Entry>(address(0)) };
    Ok((
        NativeCode {
            memory,
            entry,
            data: lowered.data,
            quality,
            osr_loops: lowered.osr_loops,
        },
        text,
    ))
}

/// Compiles `program` for another target without running it (the aarch64 check of the test
/// suite), in functions of about `function_steps` steps (see [`CompileBudget::function_steps`]).
/// Returns the size of the machine code.
pub fn compile_for_target(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    triple: &str,
    function_steps: usize,
) -> Result<usize, JitError> {
    let triple: target_lexicon::Triple = triple
        .parse()
        .map_err(|e| JitError::UnsupportedHost(format!("{e}")))?;
    let mut flags = settings::builder();
    flags
        .set("opt_level", "speed")
        .map_err(|e| JitError::Codegen(e.to_string()))?;
    flags
        .set("is_pic", "false")
        .map_err(|e| JitError::Codegen(e.to_string()))?;
    let isa: Arc<dyn TargetIsa> = cranelift_codegen::isa::lookup(triple)
        .map_err(|e| JitError::UnsupportedHost(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| JitError::Codegen(e.to_string()))?;
    let mut builder_context = FunctionBuilderContext::new();
    let lowered = lower::lower(
        program,
        layout,
        registry,
        isa.default_call_conv(),
        &mut builder_context,
        Function::new(),
        true,
        function_steps,
    )
    .map_err(JitError::Unsupported)?;
    let mut bytes = 0;
    for function in lowered.functions {
        let mut context = cranelift_codegen::Context::for_function(function);
        let compiled = context
            .compile(&*isa, &mut ControlPlane::default())
            .map_err(|e| JitError::Codegen(format!("{:?}", e.inner)))?;
        bytes += compiled.code_buffer().len();
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool of reused contexts keeps at most `POOLED_CONTEXTS`, and none that compiled a
    /// function larger than `POOLED_MAX_INSTRUCTIONS`: what it holds is bounded whatever was
    /// compiled and however many threads compiled at once.
    #[test]
    fn the_context_pool_is_bounded() {
        let pool = Pool(Mutex::new(Vec::new()));
        let pooled = |pool: &Pool| pool.0.lock().unwrap().len();
        let taken: Vec<_> = (0..POOLED_CONTEXTS + 3).map(|_| pool.take()).collect();
        for contexts in taken {
            pool.give_back(contexts, 10);
        }
        assert_eq!(pooled(&pool), POOLED_CONTEXTS);
        let all: Vec<_> = (0..POOLED_CONTEXTS).map(|_| pool.take()).collect();
        assert_eq!(pooled(&pool), 0);
        for contexts in all {
            pool.give_back(contexts, POOLED_MAX_INSTRUCTIONS + 1);
        }
        assert_eq!(
            pooled(&pool),
            0,
            "a context grown for a large function is not kept"
        );
    }
}
