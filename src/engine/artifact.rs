//! Compiled flows as bytes: [`Flow::to_bytes`] and [`Engine::load`].
//!
//! An artifact is the checked, typed IR and what the flow needs besides it, never the layout or
//! native code (both are derived from the IR in linear time, and storing them would be a second
//! thing to verify):
//!
//! ```text
//! magic "\x89KZB\r\n\x1a\n" | format version (u32 LE) | engine version | name | source text
//! | scope | shape | program (locals, values, host events with their signatures and costs,
//! inputs, loops, obligation states, trace level, steps)
//! ```
//!
//! Loading trusts none of it: the decoder bounds every length, count and nesting depth
//! ([`crate::ir::codec`]); the scope, every host event's signature and cost and every
//! obligation state's releasing event are checked again against this engine's registry; the
//! verifier ([`crate::ir::verify`]) re-establishes what the tiers rely on; then the flow is
//! built as a parsed one is (layout, limits, tier). Every refusal is a [`SourceErrors`] with a
//! code (E0401-E0405) and, for corrupt data, the byte offset.

use super::{CompileOptions, Engine, Flow, Origin};
use crate::diag::{Code, Diagnostic, SourceErrors};
use crate::host::Resolution;
use crate::ir::codec::{DecodeLimits, Reader, Writer};
use crate::ir::{Arms, Step};
use crate::span::Span;
use crate::types::{EventSig, PayloadType};
use std::sync::Arc;

/// The first bytes of every artifact (a high byte and line ends first, as PNG does, so that a
/// text transfer that mangles them is detected).
pub const MAGIC: &[u8; 8] = b"\x89KZB\r\n\x1a\n";

/// The version of the format this engine writes and reads. Bumped whenever the encoding or the
/// meaning of the IR changes: an artifact of another version is refused (E0401), never guessed.
pub const FORMAT_VERSION: u32 = 2;

/// Whether `bytes` start like an artifact (the command line tells a `.kzb` from a source so).
pub fn is_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

impl Flow {
    /// The flow as bytes that [`Engine::load`] turns back into an equal flow without parsing
    /// or checking: its typed IR, source text and name (for errors' positions), the scope and
    /// shape it was checked against, and the signature and cost of every host event it uses.
    ///
    /// ```
    /// use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits};
    /// let mut registry = Registry::new();
    /// registry.event("~event double { n: i64 } | v i64", |n: i64| n * 2).unwrap();
    /// let engine = Engine::new(registry);
    /// let flow = engine.compile("d", "~double(n: 21)", &CompileOptions::default()).unwrap();
    /// let bytes = flow.to_bytes();
    /// let loaded = engine.load(&bytes, &CompileOptions::default()).unwrap();
    /// let outcome = loaded.run(&Inputs::new(), &RunLimits::default()).unwrap();
    /// assert_eq!(outcome.value().unwrap().get::<i64>(), Ok(42));
    /// // Not an artifact: refused with a code, never a panic.
    /// let Err(errors) = engine.load(b"~double(n: 21)", &CompileOptions::default()) else {
    ///     panic!("a source is not an artifact")
    /// };
    /// assert_eq!(errors.diagnostics[0].code, koru_jit::Code::E0401);
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let inner = &*self.inner;
        let mut w = Writer::new();
        w.bytes.reserve(64 + inner.text.len() * 2);
        w.bytes.extend_from_slice(MAGIC);
        w.bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        w.str(env!("CARGO_PKG_VERSION"));
        w.str(inner.name());
        w.str(inner.source());
        w.opt_str(inner.scope.as_deref());
        w.opt_str(inner.shape.as_deref());
        crate::ir::codec::write_program(&mut w, &inner.program);
        w.bytes
    }
}

fn refused(name: &str, text: &str, code: Code, message: String) -> SourceErrors {
    SourceErrors {
        name: name.to_string(),
        text: text.to_string(),
        diagnostics: vec![Diagnostic::new(code, message, Span::default())],
    }
}

/// A signature as the source declares it (unquoted in messages: a diagnostic cuts a quoted
/// piece longer than 64 characters): `name { a: int, h: str[!opened] } | ok { v: str }`.
fn sig_text(sig: &EventSig) -> String {
    let mut s = format!("{} {{ ", sig.name);
    for (i, (n, t)) in sig.inputs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        match sig.input_phantom(i) {
            Some(p) => s.push_str(&format!("{n}: {p}")),
            None => s.push_str(&format!("{n}: {t}")),
        }
    }
    s.push_str(" }");
    for (b, branch) in sig.branches.iter().enumerate() {
        s.push_str(&format!(" | {}", branch.name));
        let field = |f: usize, t: &crate::types::Type| match sig.field_phantom(b, f) {
            Some(p) => p.to_string(),
            None => t.to_string(),
        };
        match &branch.payload {
            PayloadType::Empty => {}
            PayloadType::Identity(t) => s.push_str(&format!(" {}", field(0, t))),
            PayloadType::Struct(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .enumerate()
                    .map(|(f, (n, t))| format!("{n}: {}", field(f, t)))
                    .collect();
                s.push_str(&format!(" {{ {} }}", fields.join(", ")));
            }
        }
    }
    s
}

/// The mocked events a program inlines (SPEC 13), with the cost each call charges.
fn mocked_calls(step: &Step, out: &mut Vec<(Arc<str>, u64)>) {
    fn arms(a: &Arms, out: &mut Vec<(Arc<str>, u64)>) {
        for arm in &a.arms {
            if let Some(s) = &arm.step {
                mocked_calls(s, out);
            }
        }
    }
    match step {
        Step::Invoke(s) => arms(&s.arms, out),
        Step::Call(s) => {
            if s.mocked {
                out.push((s.name.clone(), s.cost));
            }
            mocked_calls(&s.body, out);
            arms(&s.arms, out);
        }
        Step::For(s) => arms(&s.arms, out),
        Step::If(s) => arms(&s.arms, out),
        Step::While(s) => arms(&s.arms, out),
        Step::Capture(s) => arms(&s.arms, out),
        Step::Match(s) => {
            for arm in &s.arms {
                if let Some(s) = &arm.arm.step {
                    mocked_calls(s, out);
                }
            }
        }
        Step::Update(_) | Step::Construct(_) | Step::Yield(_) => {}
    }
}

impl Engine {
    /// Loads a flow from the bytes of [`Flow::to_bytes`], without parsing or checking its
    /// source: the bytes are decoded within `options.limits`, every host event is checked again
    /// against this engine's registry in the scope the flow was checked against, the program is
    /// verified, and the flow is laid out and built as a compiled one is (in `options.tier`).
    ///
    /// `options.scope`, when set, must be the artifact's scope; `options.inputs` must have the
    /// artifact's types (guessed inputs are converted at run time, as for a compiled flow);
    /// `options.shape`, when set, must be the artifact's, and mocks cannot be given (they were
    /// inlined when it was compiled). `options.trace`, when not `Off`, replaces the level it
    /// was compiled with (the IR does not depend on it). Loaded flows do not enter the
    /// compiled-flow cache.
    ///
    /// # Errors
    /// [`SourceErrors`] with one diagnostic: E0401 (not an artifact, or another format
    /// version), E0402 (truncated or corrupt, with the byte offset, or a program that fails
    /// verification), E0403 (a host event whose signature, cost or implementation changed),
    /// E0404 (an event or scope no longer allowed), E0405 (options that do not fit), E0105 (over
    /// a limit of `options.limits`).
    pub fn load(&self, bytes: &[u8], options: &CompileOptions) -> Result<Flow, SourceErrors> {
        let unnamed = |code, message| refused("artifact", "", code, message);
        if !is_artifact(bytes) {
            return Err(unnamed(
                Code::E0401,
                "not a compiled flow: it does not start with the artifact's magic bytes".into(),
            ));
        }
        let Some(version) = bytes.get(8..12) else {
            return Err(unnamed(
                Code::E0402,
                "the artifact is corrupt at byte 8: truncated: the data ends early".into(),
            ));
        };
        let version = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
        if version != FORMAT_VERSION {
            return Err(unnamed(
                Code::E0401,
                format!("the artifact was made by format version {version}, this engine reads {FORMAT_VERSION}"),
            ));
        }
        let limits = &options.limits;
        let mut r = Reader::new(
            bytes,
            12,
            DecodeLimits {
                // The checker's bounds, with room for the leaves below the deepest invocation
                // and the conversions lowering adds to an expression.
                max_step_depth: limits.max_depth.saturating_add(4),
                max_expr_depth: 2 * crate::syntax::MAX_EXPR_DEPTH as usize + 8,
                max_steps: limits.max_steps.saturating_mul(2).saturating_add(16),
                max_locals: limits.max_bindings,
            },
        );
        let corrupt = |e: crate::ir::codec::Corrupt| {
            unnamed(
                Code::E0402,
                format!("the artifact is corrupt at byte {}: {}", e.offset, e.what),
            )
        };
        let header = (|| {
            let engine_version = r.str()?;
            let name = r.str()?;
            let source = r.str()?;
            let scope = r.opt_str()?;
            let shape = r.opt_str()?;
            Ok((engine_version, name, source, scope, shape))
        })();
        let (_engine_version, name, source, scope, shape) = header.map_err(corrupt)?;
        let named = |code, message| refused(name, source, code, message);
        if source.len() > limits.max_source_bytes {
            return Err(named(
                Code::E0105,
                format!(
                    "the source is {} bytes, more than the limit of {}",
                    source.len(),
                    limits.max_source_bytes
                ),
            ));
        }
        let mut program = r.program().map_err(corrupt)?;
        if !r.at_end() {
            return Err(corrupt(crate::ir::codec::Corrupt {
                offset: r.pos,
                what: "bytes after the end of the program".into(),
            }));
        }
        // The count stored is what the front end counted (and what its limit judges); it is
        // not taken on trust far below the steps the decoder read (an honest program has at
        // most twice its count and 16, the slack of the decoder's own bound): the JIT's compile
        // budget and its split of a large flow into functions go by it, so an artifact claiming
        // few steps for many would have reached Cranelift as one huge function.
        if r.steps > program.step_count.saturating_mul(2).saturating_add(16) {
            return Err(corrupt(crate::ir::codec::Corrupt {
                offset: r.pos,
                what: format!(
                    "{} steps, where the flow claims {}",
                    r.steps, program.step_count
                ),
            }));
        }
        if program.step_count > limits.max_steps || program.inputs.len() > limits.max_inputs {
            return Err(named(
                Code::E0105,
                format!(
                    "the flow has {} steps and {} inputs; the limits are {} and {}",
                    program.step_count,
                    program.inputs.len(),
                    limits.max_steps,
                    limits.max_inputs
                ),
            ));
        }
        // The options that shaped the program.
        if let Some(asked) = options.scope.as_deref() {
            if scope != Some(asked) {
                return Err(named(
                    Code::E0404,
                    format!(
                        "the flow was checked against {}, not scope `{asked}`",
                        scope.map_or("no scope".to_string(), |s| format!("scope `{s}`"))
                    ),
                ));
            }
        }
        let registry = &*self.shared.registry;
        if let Some(scope) = scope {
            if registry.scope(scope).is_none() {
                return Err(named(
                    Code::E0404,
                    format!("the flow was checked against scope `{scope}`, which the registry does not have"),
                ));
            }
        }
        if options.shape.is_some() && options.shape.as_deref() != shape {
            return Err(named(
                Code::E0405,
                format!(
                    "the flow was compiled with {}, not the shape `{}` asked for",
                    shape.map_or("no shape".to_string(), |s| format!("shape `{s}`")),
                    options.shape.as_deref().unwrap_or_default()
                ),
            ));
        }
        if !options.mocks.is_empty() {
            return Err(named(
                Code::E0405,
                "a compiled flow's mocks are those it was compiled with: a load takes none".into(),
            ));
        }
        for (input, ty) in &options.inputs {
            match program.inputs.iter().find(|i| *i.name == **input) {
                Some(declared) if declared.ty == *ty => {}
                Some(declared) => {
                    return Err(named(
                        Code::E0405,
                        format!(
                            "input `{input}` is a {} in the compiled flow, a {ty} in the options",
                            declared.ty
                        ),
                    ))
                }
                None => {
                    return Err(named(
                        Code::E0405,
                        format!("the compiled flow has no input `{input}`"),
                    ))
                }
            }
        }
        // Every host event, again against this registry in that scope.
        let where_ = || scope.map_or("the registry".to_string(), |s| format!("scope `{s}`"));
        for (i, event) in program.events.iter_mut().enumerate() {
            let (host, cost) = match registry.resolve(scope, &event.name) {
                Resolution::Allowed { host, cost } => (host, cost),
                Resolution::Denied => {
                    return Err(named(
                        Code::E0404,
                        format!("event `{}` is not allowed in {}", event.name, where_()),
                    ))
                }
                Resolution::Unknown => {
                    return Err(named(
                        Code::E0404,
                        format!("event `{}` is not registered", event.name),
                    ))
                }
            };
            let registered = &registry.events()[host];
            if !r
                .sig_matches(r.sig_at[i], &registered.sig)
                .map_err(corrupt)?
            {
                let stored = r.sig_at_offset(r.sig_at[i]).map_err(corrupt)?;
                return Err(named(
                    Code::E0403,
                    format!(
                        "host event `{}` changed: the flow was checked against {}; the registry has {}",
                        event.name,
                        sig_text(&stored),
                        sig_text(&registered.sig)
                    ),
                ));
            }
            if cost != event.cost {
                return Err(named(
                    Code::E0403,
                    format!(
                        "host event `{}` costs {cost} in {}, the flow was checked at cost {}",
                        event.name,
                        where_(),
                        event.cost
                    ),
                ));
            }
            if !registered.is_implemented() {
                return Err(named(
                    Code::E0403,
                    format!("host event `{}` has no implementation", event.name),
                ));
            }
            event.host = host;
            event.sig = registered.sig.clone();
        }
        // A mocked event is not dispatched, but a call of its mock charges the event's cost in
        // the scope, which must still allow it at that cost.
        let mut mocked = Vec::new();
        for flow in &program.flows {
            mocked_calls(flow, &mut mocked);
        }
        for (event, charged) in mocked {
            match registry.resolve(scope, &event) {
                Resolution::Allowed { cost, .. } if cost == charged => {}
                Resolution::Allowed { cost, .. } => {
                    return Err(named(
                        Code::E0403,
                        format!(
                            "mocked event `{event}` costs {cost} in {}, the flow was checked at cost {charged}",
                            where_()
                        ),
                    ))
                }
                _ => {
                    return Err(named(
                        Code::E0404,
                        format!("mocked event `{event}` is not allowed in {}", where_()),
                    ))
                }
            }
        }
        // Each obligation state once, and one the flow's events can create (the layout looks
        // states up by name at every site that opens a handle).
        let mut states = std::collections::HashSet::new();
        for state in &program.obligation_states {
            let created = program.events.iter().any(|e| {
                e.sig.phantoms.iter().any(
                    |p| matches!(&p.phantom, crate::types::Phantom::Creates(s) if *s == state.name),
                )
            });
            if !states.insert(state.name.clone()) || !created {
                return Err(named(
                    Code::E0402,
                    format!(
                        "the artifact's program is inconsistent: obligation state `{}` is listed twice or created by no event",
                        state.name
                    ),
                ));
            }
        }
        for state in &mut program.obligation_states {
            match registry.discharging_event(scope, &state.name) {
                Some(discharge) => state.discharge = Some(discharge),
                None => {
                    return Err(named(
                        Code::E0404,
                        format!(
                            "no event {} allows releases obligation state `{}`",
                            where_(),
                            state.name
                        ),
                    ))
                }
            }
        }
        crate::ir::verify::verify(&program, registry, bytes.len()).map_err(|problem| {
            named(
                Code::E0402,
                format!("the artifact's program is inconsistent: {problem}"),
            )
        })?;
        if options.trace != crate::host::TraceLevel::Off {
            program.trace = options.trace;
        }
        self.build(name, source, program, options, Origin { scope, shape })
            .map_err(|diagnostics| SourceErrors {
                name: name.to_string(),
                text: source.to_string(),
                diagnostics,
            })
    }
}
