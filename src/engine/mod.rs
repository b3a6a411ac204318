//! The engine: compiles sources against a frozen registry and runs them.
//!
//! ```
//! use koru_jit::{Engine, Registry, CompileOptions, Inputs, RunLimits};
//! let mut registry = Registry::with_std();
//! registry.event("~event add { a: i64, b: i64 } | sum i64", |a: i64, b: i64| a + b).unwrap();
//! let engine = Engine::new(registry);
//! let flow = engine.compile("example", "~add(a: 1, b: 2)", &CompileOptions::default()).unwrap();
//! let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
//! assert_eq!(outcome.to_json().to_string(), r#"{"outcome":"ok","value":{"branch":"sum","value":3},"fuel":1}"#);
//! ```

mod inputs;
mod stats;

pub use inputs::{InputError, Inputs};
pub use stats::FlowStats;

use crate::diag::SourceErrors;
use crate::host::{OutputSink, Registry};
use crate::ir::{Program, ValueId, ValuePayload};
use crate::layout::Layout;
use crate::limits::{FrontEndLimits, RunLimits};
use crate::outcome::{Outcome, RuntimeError};
use crate::sema::CheckOptions;
use crate::span::LineIndex;
use crate::state::{RunState, Trap};
use crate::types::Type;
use crate::value::{Payload, Scalar, Value};
use std::sync::{Arc, Mutex};

/// Which tier runs a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tier {
    /// The interpreter only.
    #[default]
    Interp,
    /// Native code, compiled before the first run. A flow the JIT cannot lower stays in the
    /// interpreter ([`Flow::jit_error`] says why).
    Jit,
}

/// How a source is compiled.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// The scope of host events the source may call; `None` allows every registered event.
    pub scope: Option<String>,
    /// Flow inputs (name and type) the caller supplies at each run.
    pub inputs: Vec<(String, Type)>,
    pub limits: FrontEndLimits,
    pub tier: Tier,
}

impl CompileOptions {
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = tier;
        self
    }

    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_string());
        self
    }

    pub fn input(mut self, name: &str, ty: Type) -> Self {
        self.inputs.push((name.to_string(), ty));
        self
    }
}

/// Compiles sources against one registry, which is frozen from then on.
#[derive(Clone)]
pub struct Engine {
    registry: Arc<Registry>,
}

impl Engine {
    pub fn new(registry: Registry) -> Engine {
        Engine {
            registry: Arc::new(registry),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Parses and checks `source`, lays out its flow state, and returns a flow ready to run many
    /// times. All parse and check errors are returned together.
    pub fn compile(
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
        let (file, diagnostics) = crate::syntax::parse(source, &options.limits);
        if !diagnostics.is_empty() {
            return Err(errors(diagnostics));
        }
        let check = CheckOptions {
            scope: options.scope.clone(),
            inputs: options
                .inputs
                .iter()
                .map(|(n, t)| (Arc::from(n.as_str()), *t))
                .collect(),
            limits: options.limits.clone(),
        };
        let program = crate::sema::check(&self.registry, &file, source, &check).map_err(errors)?;
        let layout = Layout::of(&program);
        if layout.bytes() > options.limits.max_state_bytes {
            return Err(errors(vec![crate::diag::Diagnostic::new(
                crate::diag::Code::E0105,
                format!(
                    "the flow state needs {} bytes, more than the limit of {}",
                    layout.bytes(),
                    options.limits.max_state_bytes
                ),
                crate::span::Span::default(),
            )]));
        }
        let stats = stats::Counters::new(program.loops.len());
        let (native, jit_error) = match options.tier {
            Tier::Interp => (None, None),
            Tier::Jit => match crate::jit::compile(&program, &layout, &self.registry) {
                Ok(code) => (Some(code), None),
                Err(error) => (None, Some(error)),
            },
        };
        Ok(Flow {
            inner: Arc::new(FlowInner {
                name: name.to_string(),
                source: source.to_string(),
                lines: LineIndex::new(source),
                program,
                layout,
                registry: self.registry.clone(),
                states: Mutex::new(Vec::new()),
                stats,
                native,
                jit_error,
            }),
        })
    }
}

/// A compiled source: cheap to clone, `Send + Sync`, runs on any thread.
#[derive(Clone)]
pub struct Flow {
    inner: Arc<FlowInner>,
}

struct FlowInner {
    name: String,
    source: String,
    lines: LineIndex,
    program: Program,
    layout: Layout,
    registry: Arc<Registry>,
    /// Run states kept for reuse, so that steady-state runs allocate nothing.
    states: Mutex<Vec<RunState>>,
    stats: stats::Counters,
    /// Declared after `program` and `layout`, which its code points into; dropped first.
    native: Option<crate::jit::NativeCode>,
    jit_error: Option<crate::jit::JitError>,
}

impl Flow {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn source(&self) -> &str {
        &self.inner.source
    }

    pub fn program(&self) -> &Program {
        &self.inner.program
    }

    /// The registry the flow was checked against.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The flow inputs the source was compiled with.
    pub fn inputs(&self) -> &[crate::ir::InputDecl] {
        &self.inner.program.inputs
    }

    /// The tier runs of this flow use.
    pub fn tier(&self) -> Tier {
        if self.inner.native.is_some() {
            Tier::Jit
        } else {
            Tier::Interp
        }
    }

    /// Why the JIT could not compile this flow, if it was asked to and could not.
    pub fn jit_error(&self) -> Option<&crate::jit::JitError> {
        self.inner.jit_error.as_ref()
    }

    /// Bytes of native code (0 when interpreted).
    pub fn code_bytes(&self) -> usize {
        self.inner.native.as_ref().map_or(0, |n| n.code_bytes())
    }

    pub fn stats(&self) -> FlowStats {
        self.inner.stats.snapshot(&self.inner.program)
    }

    /// Runs every top-level flow with `inputs` under `limits`; output goes to the registry's sink.
    pub fn run(&self, inputs: &Inputs, limits: &RunLimits) -> Result<Outcome, InputError> {
        self.run_with_output(inputs, limits, &**self.inner.registry.output())
    }

    /// Like [`Flow::run`], with `std.io` output sent to `output`.
    pub fn run_with_output(
        &self,
        inputs: &Inputs,
        limits: &RunLimits,
        output: &dyn OutputSink,
    ) -> Result<Outcome, InputError> {
        let inner = &*self.inner;
        let mut state = inner
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(|| RunState::new(&inner.program, &inner.layout));
        state.reset();
        let result = inputs
            .write(&inner.program, &inner.layout, &mut state)
            .map(|()| {
                let result = match &inner.native {
                    Some(native) => native.run(&inner.program, &mut state, limits, output),
                    None => crate::interp::run(
                        &inner.program,
                        &inner.layout,
                        &inner.registry,
                        &mut state,
                        limits,
                        output,
                    ),
                };
                self.outcome(result, &state)
            });
        inner.stats.record(&state);
        inner
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state);
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
            Err(Trap::Error(error)) => {
                let at = inner.lines.line_col(&inner.source, error.span.start);
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
