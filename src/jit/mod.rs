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
}

impl Default for CompileBudget {
    fn default() -> Self {
        CompileBudget {
            max_steps: DEFAULT_MAX_STEPS,
            max_instructions: DEFAULT_MAX_INSTRUCTIONS,
            max_time: Duration::from_millis(500),
            function_steps: DEFAULT_FUNCTION_STEPS,
        }
    }
}

const DEFAULT_MAX_STEPS: usize = 5_000;
const DEFAULT_MAX_INSTRUCTIONS: usize = 250_000;
const DEFAULT_FUNCTION_STEPS: usize = 128;

impl CompileBudget {
    /// No bound at all (tests, and embedders who trust their sources).
    pub fn unlimited() -> CompileBudget {
        CompileBudget {
            max_steps: usize::MAX,
            max_instructions: usize::MAX,
            max_time: Duration::MAX,
            function_steps: DEFAULT_FUNCTION_STEPS,
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

/// Native code of one flow. Dropping it frees the code.
pub struct NativeCode {
    module: Option<JITModule>,
    entry: runtime::Entry,
    data: Box<runtime::NativeData>,
    code_bytes: usize,
    /// The loops an interpreted run can continue at, sorted.
    osr_loops: Vec<u32>,
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
    let mut lowered = lower::lower(
        program,
        layout,
        registry,
        isa.default_call_conv(),
        &mut builder_context,
        osr,
        budget.function_steps,
    )
    .map_err(JitError::Unsupported)?;
    // Lowering is linear in the flow; what follows is Cranelift's, linear too while each
    // function stays small (`function_steps`).
    budget.check_instructions(&lowered.functions)?;
    budget.check_time(started)?;
    let mut module = JITModule::new(builder);
    let mut context = module.make_context();
    context.set_disasm(listing);
    let mut text = Listing::default();
    let mut ids = Vec::with_capacity(lowered.functions.len());
    let mut code_bytes = 0;
    let functions = lowered.functions.len();
    for (k, function) in lowered.functions.drain(..).enumerate() {
        context.func = function;
        if listing {
            text.clif += &context.func.display().to_string();
        }
        // Declare each function of this module (the entry first), then define (compile) it.
        let name = if k == 0 {
            "flow".to_string()
        } else {
            format!("region{k}")
        };
        let id = module
            .declare_function(&name, Linkage::Local, &context.func.signature)
            .map_err(|e| JitError::Codegen(e.to_string()))?;
        module
            .define_function(id, &mut context)
            .map_err(|e| JitError::Codegen(format!("{e:?}")))?;
        if listing {
            text.asm += &context
                .compiled_code()
                .and_then(|c| c.vcode.clone())
                .unwrap_or_default();
        }
        code_bytes += context.compiled_code().map_or(0, |c| c.code_buffer().len());
        // The context can be reused; clear it as the demo does.
        module.clear_context(&mut context);
        ids.push(id);
        // Past the last function the time is spent: the compile is kept.
        if k + 1 == functions {
            break;
        }
        if let Err(error) = budget.check_time(started) {
            // SAFETY: the code was never run and nothing holds its address.
            unsafe { module.free_memory() };
            return Err(error);
        }
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
    // The regions' entries, where generated code finds them (the table does not move: it is
    // boxed, and `data` itself is boxed).
    lowered.data.region_table = ids[1..]
        .iter()
        .map(|&id| module.get_finalized_function(id) as usize)
        .collect();
    lowered.data.region_entries = lowered.data.region_table.as_ptr() as usize;
    let pointer = module.get_finalized_function(ids[0]);
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
