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

/// Lowers and compiles `program` for this machine.
pub fn compile(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
) -> Result<NativeCode, JitError> {
    build(program, layout, registry, false, false).map(|(code, _)| code)
}

/// Like [`compile`], with an entry at every loop head so that an interpreted run can continue in
/// the code (on-stack replacement). The entries cost compile time; runs that start in native
/// code do not need them.
pub fn compile_with_osr(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
) -> Result<NativeCode, JitError> {
    build(program, layout, registry, false, true).map(|(code, _)| code)
}

/// Like [`compile`], also returning the Cranelift IR and the disassembly when `listing` is set.
pub fn compile_with_listing(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    listing: bool,
) -> Result<(NativeCode, Listing), JitError> {
    build(program, layout, registry, listing, false)
}

fn build(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    listing: bool,
    osr: bool,
) -> Result<(NativeCode, Listing), JitError> {
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
    let mut module = JITModule::new(builder);
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
