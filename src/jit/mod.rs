//! The Cranelift tier: typed IR + layout -> Cranelift IR -> native code. The only module that
//! names Cranelift.
//!
//! Each compiled flow gets its own `JITModule`, so that its code is freed when the flow is
//! dropped. The compile sequence follows cranelift-jit-demo: declare, define, clear the context,
//! finalize, get the pointer. Generated code calls no symbol: host shims and runtime helpers are
//! reached through pointer constants, and a guard refuses any symbol Cranelift would look up.

mod lower;
pub(crate) mod runtime;

use crate::host::Registry;
use crate::ir::Program;
use crate::layout::Layout;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
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
        size: u64,
        limit: u64,
    },
}

/// What one JIT compile may cost. Cranelift's passes are fast on small functions but grow
/// faster than linearly with the size of one function (its egraph and register allocator on
/// long chains of blocks), so a flow larger than this stays in the interpreter
/// ([`JitError::OverBudget`], shown by `Flow::stats`, `--stats`, `emit` and `/v1/flows/stats`).
/// Below the bounds, compile time grows about linearly with the flow (`koru-jit bench
/// --workload compile-scaling`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CompileBudget {
    /// Steps after subflows are inlined (`Program::step_count`), checked before lowering.
    pub max_steps: usize,
    /// Instructions of the lowered Cranelift IR, checked before code generation (a step can
    /// lower to many: a template with many holes, a host call with many arguments).
    pub max_instructions: usize,
    /// Wall-clock time of the compile, checked after lowering and after code generation: a
    /// compile past it is abandoned (Cranelift's passes cannot be interrupted midway; the two
    /// size bounds keep each one short).
    pub max_time: Duration,
}

impl Default for CompileBudget {
    fn default() -> Self {
        CompileBudget {
            max_steps: DEFAULT_MAX_STEPS,
            max_instructions: DEFAULT_MAX_INSTRUCTIONS,
            max_time: Duration::from_millis(500),
        }
    }
}

const DEFAULT_MAX_STEPS: usize = 2_000;
const DEFAULT_MAX_INSTRUCTIONS: usize = 40_000;

impl CompileBudget {
    /// No bound at all (tests, and embedders who trust their sources).
    pub fn unlimited() -> CompileBudget {
        CompileBudget {
            max_steps: usize::MAX,
            max_instructions: usize::MAX,
            max_time: Duration::MAX,
        }
    }

    fn check_steps(&self, program: &Program) -> Result<(), JitError> {
        over(
            program.step_count,
            self.max_steps,
            "steps after inlining",
            "max_steps",
        )
    }

    fn check_instructions(
        &self,
        function: &cranelift_codegen::ir::Function,
    ) -> Result<(), JitError> {
        over(
            function.dfg.num_insts(),
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

/// Native code of one flow. Dropping it frees the code.
pub struct NativeCode {
    module: Option<JITModule>,
    entry: runtime::Entry,
    data: Box<runtime::NativeData>,
    code_bytes: usize,
    osr: bool,
}

// SAFETY: the module's memory is only freed in `drop`, and the code and its data are immutable
// after `finalize_definitions`; runs only read them.
unsafe impl Send for NativeCode {}
// SAFETY: as above.
unsafe impl Sync for NativeCode {}

impl Drop for NativeCode {
    fn drop(&mut self) {
        LIVE_CODE_BYTES.fetch_sub(self.code_bytes, Ordering::Relaxed);
        if let Some(module) = self.module.take() {
            // SAFETY: the `Flow` owning this code is being dropped, so no run can be executing
            // it, and nothing else holds its address.
            unsafe { module.free_memory() };
        }
    }
}

impl NativeCode {
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// Memory the code holds: its pages (each module maps whole pages) and the data beside it.
    pub fn heap_bytes(&self) -> usize {
        const PAGE: usize = 4096;
        self.code_bytes.div_ceil(PAGE).max(1) * PAGE + self.data.heap_bytes()
    }

    /// Whether an interpreted run can continue in this code at a loop head.
    pub fn has_osr_entries(&self) -> bool {
        self.osr
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

/// The host's ISA, built once per process (it is immutable and shared by every module).
fn host_isa() -> Result<OwnedTargetIsa, JitError> {
    static ISA: OnceLock<Result<OwnedTargetIsa, String>> = OnceLock::new();
    ISA.get_or_init(|| {
        let mut flags = settings::builder();
        // Long-range calls only (pointer constants anyway), no PIC: the same choices as
        // `JITBuilder::new`, plus full optimization.
        flags
            .set("use_colocated_libcalls", "false")
            .map_err(|e| e.to_string())?;
        flags.set("is_pic", "false").map_err(|e| e.to_string())?;
        flags.set("opt_level", "speed").map_err(|e| e.to_string())?;
        // The IR verifier guards the lowering in debug builds (the test suite); release builds
        // skip its cost at every compile.
        flags
            .set(
                "enable_verifier",
                if cfg!(debug_assertions) {
                    "true"
                } else {
                    "false"
                },
            )
            .map_err(|e| e.to_string())?;
        let builder = cranelift_native::builder().map_err(|e| e.to_string())?;
        builder
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(JitError::UnsupportedHost)
}

/// Lowers and compiles `program` for this machine, within the default [`CompileBudget`].
pub fn compile(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
) -> Result<NativeCode, JitError> {
    build(
        program,
        layout,
        registry,
        false,
        false,
        &CompileBudget::default(),
    )
    .map(|(code, _)| code)
}

/// Like [`compile`] (or [`compile_with_osr`] when `osr` is set), within `budget`.
pub fn compile_with_budget(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    osr: bool,
    budget: &CompileBudget,
) -> Result<NativeCode, JitError> {
    build(program, layout, registry, false, osr, budget).map(|(code, _)| code)
}

/// Like [`compile`], with an entry at every loop head so that an interpreted run can continue in
/// the code (on-stack replacement). The entries cost compile time; runs that start in native
/// code do not need them.
pub fn compile_with_osr(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
) -> Result<NativeCode, JitError> {
    build(
        program,
        layout,
        registry,
        false,
        true,
        &CompileBudget::default(),
    )
    .map(|(code, _)| code)
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
        &CompileBudget::default(),
    )
}

fn build(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    listing: bool,
    osr: bool,
    budget: &CompileBudget,
) -> Result<(NativeCode, Listing), JitError> {
    let started = Instant::now();
    // The cheapest bound first: nothing is lowered for a flow that is too large.
    budget.check_steps(program)?;
    let isa = host_isa()?;
    let mut builder = JITBuilder::with_isa(isa.clone(), cranelift_module::default_libcall_names());
    // Generated code refers to nothing by name. Should Cranelift ever look a symbol up (a libcall),
    // record it and refuse the code rather than let the process's symbols be reached.
    let looked_up: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = looked_up.clone();
    builder.symbol_lookup_fn(Box::new(move |name| {
        record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_string());
        None
    }));
    let mut builder_context = FunctionBuilderContext::new();
    let lowered = lower::lower(
        program,
        layout,
        registry,
        isa.default_call_conv(),
        &mut builder_context,
        osr,
    )
    .map_err(JitError::Unsupported)?;
    // Lowering is linear in the flow; what follows is Cranelift's, and grows faster.
    budget.check_instructions(&lowered.function)?;
    budget.check_time(started)?;
    let mut module = JITModule::new(builder);
    let mut context = module.make_context();
    context.func = lowered.function;
    context.set_disasm(listing);
    let mut text = Listing::default();
    if listing {
        text.clif = context.func.display().to_string();
    }
    // Declare the one function of this module, then define (compile) it.
    let id = module
        .declare_function("flow", Linkage::Local, &context.func.signature)
        .map_err(|e| JitError::Codegen(e.to_string()))?;
    module
        .define_function(id, &mut context)
        .map_err(|e| JitError::Codegen(format!("{e:?}")))?;
    if listing {
        text.asm = context
            .compiled_code()
            .and_then(|c| c.vcode.clone())
            .unwrap_or_default();
    }
    let code_bytes = context.compiled_code().map_or(0, |c| c.code_buffer().len());
    // The context can be reused; clear it as the demo does.
    module.clear_context(&mut context);
    if let Err(error) = budget.check_time(started) {
        // SAFETY: the code was never run and nothing holds its address.
        unsafe { module.free_memory() };
        return Err(error);
    }
    // Relocate and make the code executable.
    module
        .finalize_definitions()
        .map_err(|e| JitError::Codegen(e.to_string()))?;
    let unexpected = looked_up.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if !unexpected.is_empty() {
        // SAFETY: the code was never run and nothing holds its address.
        unsafe { module.free_memory() };
        return Err(JitError::Unsupported(format!(
            "generated code would call unregistered symbols: {}",
            unexpected.join(", ")
        )));
    }
    let pointer = module.get_finalized_function(id);
    // SAFETY: `lower` built this function with exactly the `Entry` signature
    // (`extern "C" fn(*mut u64, *mut RunState) -> u32` in the ISA's default C convention).
    let entry = unsafe { std::mem::transmute::<*const u8, runtime::Entry>(pointer) };
    LIVE_CODE_BYTES.fetch_add(code_bytes, Ordering::Relaxed);
    Ok((
        NativeCode {
            module: Some(module),
            entry,
            data: lowered.data,
            code_bytes,
            osr,
        },
        text,
    ))
}

/// Compiles `program` for another target without running it (the aarch64 check of the test
/// suite). Returns the size of the machine code.
pub fn compile_for_target(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    triple: &str,
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
        true,
    )
    .map_err(JitError::Unsupported)?;
    let mut context = cranelift_codegen::Context::for_function(lowered.function);
    let compiled = context
        .compile(&*isa, &mut ControlPlane::default())
        .map_err(|e| JitError::Codegen(format!("{:?}", e.inner)))?;
    Ok(compiled.code_buffer().len())
}
