//! Host events: the registry where an embedding application declares events, implements them
//! with typed Rust closures, and groups them into scopes; plus the standard library.
//!
//! ```
//! use koru_jit::{Registry, Reply};
//! let mut registry = Registry::with_std();
//! registry.event("~event add { a: i64, b: i64 } | sum i64", |a: i64, b: i64| a + b).unwrap();
//! registry
//!     .event("~event users.get { id: i64 } | found { name: []const u8 } | missing", |id: i64| {
//!         if id == 1 { Reply::branch("found").field("name", "ada") } else { Reply::branch("missing") }
//!     })
//!     .unwrap();
//! ```

mod demo;
mod function;
mod scope;
mod stdlib;
mod trace;

/// The example host events of the Koru articles, as the CLI registers them (for this crate's
/// tests, benches, examples and fuzz targets; not embedder API).
#[doc(hidden)]
pub use demo::register_demo_events;
pub use function::{
    Args, HostError, HostFunction, IntoReply, Reply, ReplyBranch, ReplyPayload, ReplyShape,
    ReplyValue,
};
// `IntoReply::write_reply` names it; host closures never see it.
#[doc(hidden)]
pub use function::ReplyOut;
pub use scope::{Scope, ScopeRule};
pub(crate) use stdlib::{prefix_within, BoundedText, StdEvent};
pub use stdlib::{CaptureSink, OutputSink, StdoutSink, STD_DECLARATIONS};
pub(crate) use trace::{write_line as write_trace_line, TraceMarker};
pub use trace::{CaptureTrace, StderrTrace, TraceLevel, TraceSink};

pub(crate) use function::{
    word_str, ArgsClosure, BranchPlan, FieldPlan, HostClosure, ReplyPlan, RunView, SiteObligations,
};
pub(crate) use function::{ShimArg, SHIM_FAILED};

use crate::diag::SourceErrors;
use crate::syntax::ast;
use crate::types::{EventSig, PayloadType, Type};
use std::collections::HashMap;
use std::sync::Arc;

/// How a registered event runs.
pub(crate) enum Implementation {
    /// Declared, not (yet) implemented: flows that call it are rejected (E0209).
    Missing,
    Closure(HostClosure),
    Std(StdEvent),
}

/// A registered host event.
pub struct HostEvent {
    /// Its signature.
    pub sig: Arc<EventSig>,
    pub(crate) implementation: Implementation,
}

impl HostEvent {
    /// Whether it has an implementation (a flow calling a declared-only event is E0209).
    pub fn is_implemented(&self) -> bool {
        !matches!(self.implementation, Implementation::Missing)
    }
}

/// The source of `$std/control` (SPEC 11): `unless`, `repeat`, `range` and `countdown`, written
/// in Koru with `yield`. A source brings it with `~import "$std/control"`; an embedder can attach
/// it to a scope instead: `registry.attach_library("scope", "$std/control", CONTROL_LIBRARY)`.
pub const CONTROL_LIBRARY: &str = include_str!("control.kz");

/// A source of event declarations and subflows attached to a scope (SPEC 5 "Libraries").
#[derive(Debug)]
pub struct Library {
    /// The name it was attached under.
    pub name: String,
    /// Its source text.
    pub text: String,
    pub(crate) file: ast::SourceFile,
}

impl Library {
    /// Whether the library implements a subflow named `name`.
    pub fn implements(&self, name: &str) -> bool {
        self.file
            .items
            .iter()
            .any(|item| matches!(item, ast::Item::Subflow(s) if s.name.text == name))
    }
}

/// Errors of registering events, implementations and scopes.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An event of that name is registered already.
    #[error("event `{0}` is already registered")]
    DuplicateEvent(String),
    /// A library attached to a scope implements a subflow of that name: a host event cannot
    /// replace it (nor a library subflow a host event: that is a check error of the library).
    #[error("event `{event}` is a subflow of library `{library}`")]
    LibrarySubflow {
        /// The event.
        event: String,
        /// The library.
        library: String,
    },
    /// No event of that name is registered.
    #[error("no event `{0}` is registered")]
    UnknownEvent(String),
    /// The event has an implementation already.
    #[error("event `{0}` is already implemented")]
    AlreadyImplemented(String),
    /// The closure's parameters do not match the event's declared inputs.
    #[error(
        "event `{event}` takes ({}) but the implementation takes ({})",
        type_list(expected),
        type_list(found)
    )]
    SignatureMismatch {
        /// The event.
        event: String,
        /// Its input types, in order.
        expected: Vec<Type>,
        /// The closure's parameter types.
        found: Vec<Type>,
    },
    /// The signature's phantom states (SPEC 12) do not fit it: one on a non-`str` or a missing
    /// slot, `str[S!]` on an input, `str[!S]` on a payload, two on one slot.
    #[error("invalid phantom state: {0}")]
    Phantom(String),
    /// The declaration text has errors.
    #[error("invalid declaration: {0}")]
    Declaration(SourceErrors),
    /// [`Registry::event`] needs exactly one `~event` declaration.
    #[error("expected exactly one event declaration, found {0}")]
    NotOneEvent(usize),
    /// A library attached to a scope has errors.
    #[error("invalid library: {0}")]
    Library(SourceErrors),
    /// No scope of that name is registered.
    #[error("no scope `{0}` is registered")]
    UnknownScope(String),
    /// The closure's return type gives a payload its event's only branch does not carry
    /// (`returned` is [`PayloadType::Empty`] for `()`, an identity type for `i64`, `&str`, ...).
    #[error(
        "{}, but the implementation returns {returned}",
        declared_reply(event, branch, declared)
    )]
    ReplyMismatch {
        /// The event.
        event: String,
        /// Its only branch (`""` for a void event).
        branch: String,
        /// What the branch carries.
        declared: PayloadType,
        /// What the closure's return type gives.
        returned: PayloadType,
    },
    /// The closure's return type (`()`, `i64`, `&str`, ...) names no branch, but the event has
    /// several: its implementation must return a [`Reply`] naming one.
    #[error(
        "event `{event}` has several branches ({}), but the implementation returns {returned} \
         without naming one: return a `Reply::branch(..)`",
        branches.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", ")
    )]
    ReplyNeedsBranch {
        /// The event.
        event: String,
        /// Its branches, in declared order.
        branches: Vec<String>,
        /// What the closure's return type gives.
        returned: PayloadType,
    },
}

fn declared_reply(event: &str, branch: &str, declared: &PayloadType) -> String {
    if branch.is_empty() {
        format!("event `{event}` is void")
    } else {
        format!("branch `{branch}` of event `{event}` carries {declared}")
    }
}

/// A closure whose return type fixes its reply ([`ReplyShape`]) can implement `sig` only if
/// the event has one branch carrying that payload.
fn check_reply(sig: &EventSig, shape: ReplyShape) -> Result<(), RegistryError> {
    let returned = match shape {
        ReplyShape::Dynamic => return Ok(()),
        ReplyShape::Empty => PayloadType::Empty,
        ReplyShape::Identity(ty) => PayloadType::Identity(ty),
    };
    match sig.result_branch_slice() {
        [only] if only.payload == returned => Ok(()),
        [only] => Err(RegistryError::ReplyMismatch {
            event: sig.name.to_string(),
            branch: only.name.to_string(),
            declared: only.payload.clone(),
            returned,
        }),
        branches => Err(RegistryError::ReplyNeedsBranch {
            event: sig.name.to_string(),
            branches: branches.iter().map(|b| b.name.to_string()).collect(),
            returned,
        }),
    }
}

/// A closure taking `found` can implement `sig` only if they are its inputs' types, in order.
fn check_signature(sig: &EventSig, found: Vec<Type>) -> Result<(), RegistryError> {
    let expected: Vec<Type> = sig.inputs.iter().map(|(_, t)| *t).collect();
    if expected == found {
        Ok(())
    } else {
        Err(RegistryError::SignatureMismatch {
            event: sig.name.to_string(),
            expected,
            found,
        })
    }
}

fn type_list(types: &[Type]) -> String {
    types
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a name means in a scope.
pub(crate) enum Resolution {
    Allowed {
        host: usize,
        cost: u64,
    },
    /// The event exists but the scope does not allow it.
    Denied,
    Unknown,
}

/// The events, implementations and scopes an engine serves. Register everything, then hand the
/// registry to [`crate::Engine::new`], which freezes it.
///
/// An event is declared in Koru syntax and implemented by a Rust closure whose parameters are
/// its inputs in declared order (`i64`, `f64`, `bool`, `&str`). A closure returns a plain value
/// or `()` for an event with one branch (checked against the declaration here, at
/// registration), a [`Reply`] naming the branch (checked when it returns: a mismatch is a
/// run-time `HostError`), or a `Result` of either whose `Err` ends the run with `HostError`.
///
/// ```
/// use koru_jit::{Args, CompileOptions, Engine, HostError, Inputs, Registry, Reply, RunLimits, Scope};
/// let mut registry = Registry::with_std();
/// // Declare and implement in one call.
/// registry.event("~event add { a: i64, b: i64 } | sum i64", |a: i64, b: i64| a + b).unwrap();
/// // Several branches: the closure names one.
/// registry
///     .event("~event users.get { id: i64 } | found { name: []const u8 } | missing", |id: i64| {
///         if id == 1 { Reply::branch("found").field("name", "ada") } else { Reply::branch("missing") }
///     })
///     .unwrap();
/// // A failure the flow cannot handle.
/// registry
///     .event("~event parse { text: []const u8 } | n i64", |text: &str| {
///         text.parse::<i64>().map_err(|e| HostError::new(format!("not a number: {e}")))
///     })
///     .unwrap();
/// // Declared first, implemented later; `implement_with_args` takes any number of inputs.
/// registry.declare("~event sum4 { a: i64, b: i64, c: i64, d: i64 } | v i64").unwrap();
/// registry
///     .implement_with_args("sum4", |args: &Args<'_>| (0..args.len()).map(|i| args.int(i)).sum::<i64>())
///     .unwrap();
/// // A return type that cannot fit the declaration is refused now, not at run time.
/// assert!(registry.event("~event count {} | n i64", || "three").is_err());
/// // Scopes, and a library of subflows their flows may call.
/// registry.add_scope("app", Scope::new().allow("std.*").allow("users.*"));
/// registry
///     .attach_library(
///         "app",
///         "users.kz",
///         "~event describe { id: i64 }\n| known []const u8\n| unknown\n\n~describe = users.get(id: id)\n| found u |> known u.name\n| missing |> unknown\n",
///     )
///     .unwrap();
/// let engine = Engine::new(registry);
/// let flow = engine
///     .compile("t", "~describe(id: 1)", &CompileOptions::default().scope("app"))
///     .unwrap();
/// let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
/// assert_eq!(outcome.value().unwrap().get::<&str>(), Ok("ada"));
/// ```
pub struct Registry {
    events: Vec<HostEvent>,
    by_name: HashMap<Arc<str>, usize>,
    scopes: HashMap<String, Scope>,
    output: Arc<dyn OutputSink>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty registry whose output goes to stdout.
    pub fn new() -> Registry {
        Registry {
            events: Vec::new(),
            by_name: HashMap::new(),
            scopes: HashMap::new(),
            output: Arc::new(StdoutSink),
        }
    }

    /// A registry with the standard library events (SPEC 5).
    pub fn with_std() -> Registry {
        let mut registry = Registry::new();
        let names = registry
            .declare(STD_DECLARATIONS)
            .expect("the standard declarations are valid");
        for name in names {
            let index = registry.by_name[&name];
            registry.events[index].implementation = Implementation::Std(
                stdlib::std_event(&name).expect("every std declaration is a std event"),
            );
        }
        registry
    }

    /// Declares the events of a Koru declaration text (one or more `~event` items), without
    /// implementations. Returns their names.
    pub fn declare(&mut self, text: &str) -> Result<Vec<Arc<str>>, RegistryError> {
        let sigs = crate::sema::declarations(text).map_err(RegistryError::Declaration)?;
        let mut names = Vec::new();
        for sig in sigs {
            names.push(sig.name.clone());
            self.declare_event(sig)?;
        }
        Ok(names)
    }

    /// Declares one event from a signature built in Rust.
    pub fn declare_event(&mut self, sig: EventSig) -> Result<(), RegistryError> {
        if let Some(problem) = sig.phantom_problem() {
            return Err(RegistryError::Phantom(problem));
        }
        if self.by_name.contains_key(&sig.name) {
            return Err(RegistryError::DuplicateEvent(sig.name.to_string()));
        }
        let libraries = self.scopes.values().flat_map(|scope| &scope.libraries);
        if let Some(library) = libraries
            .into_iter()
            .find(|library| library.implements(&sig.name))
        {
            return Err(RegistryError::LibrarySubflow {
                event: sig.name.to_string(),
                library: library.name.clone(),
            });
        }
        self.by_name.insert(sig.name.clone(), self.events.len());
        self.events.push(HostEvent {
            sig: Arc::new(sig),
            implementation: Implementation::Missing,
        });
        Ok(())
    }

    /// Implements a declared event with a typed closure whose parameters are the event's inputs
    /// in declared order (`i64`, `f64`, `bool` or `&str`; up to three; see
    /// [`Registry::implement_with_args`] for more).
    pub fn implement<M, F: HostFunction<M>>(
        &mut self,
        name: &str,
        function: F,
    ) -> Result<(), RegistryError> {
        let index = self.implementable(name)?;
        check_signature(&self.events[index].sig, F::arg_types())?;
        check_reply(&self.events[index].sig, F::reply_shape())?;
        self.events[index].implementation = Implementation::Closure(function.into_closure());
        Ok(())
    }

    /// Implements a declared event with a closure that reads any number of inputs by position.
    pub fn implement_with_args<R, F>(
        &mut self,
        name: &str,
        function: F,
    ) -> Result<(), RegistryError>
    where
        R: IntoReply,
        F: Fn(&Args<'_>) -> R + Send + Sync + 'static,
    {
        let index = self.implementable(name)?;
        check_reply(&self.events[index].sig, R::shape())?;
        let types: Vec<Type> = self.events[index]
            .sig
            .inputs
            .iter()
            .map(|(_, t)| *t)
            .collect();
        let mut offsets = Vec::with_capacity(types.len());
        let mut at = 0;
        for ty in &types {
            offsets.push(at);
            at += ty.words() as usize;
        }
        let words = at;
        let erased: function::ErasedHostFn =
            Box::new(move |words: &[u64], out: &mut function::ReplyOut<'_>| {
                function(&Args::new(words, &offsets, &types, out.run)).write_reply(out)
            });
        self.events[index].implementation = Implementation::Closure(
            ArgsClosure {
                function: erased,
                words,
            }
            .into_closure(),
        );
        Ok(())
    }

    /// Declares one event from Koru text and implements it: the usual way to add a host event.
    pub fn event<M, F: HostFunction<M>>(
        &mut self,
        declaration: &str,
        function: F,
    ) -> Result<(), RegistryError> {
        let sigs = crate::sema::declarations(declaration).map_err(RegistryError::Declaration)?;
        if sigs.len() != 1 {
            return Err(RegistryError::NotOneEvent(sigs.len()));
        }
        let name = sigs[0].name.clone();
        check_signature(&sigs[0], F::arg_types())?;
        check_reply(&sigs[0], F::reply_shape())?;
        self.declare_event(sigs.into_iter().next().expect("one signature"))?;
        self.implement(&name, function)
    }

    fn implementable(&self, name: &str) -> Result<usize, RegistryError> {
        let index = *self
            .by_name
            .get(name)
            .ok_or_else(|| RegistryError::UnknownEvent(name.to_string()))?;
        if self.events[index].is_implemented() {
            return Err(RegistryError::AlreadyImplemented(name.to_string()));
        }
        Ok(index)
    }

    /// Adds (or replaces) a named scope.
    pub fn add_scope(&mut self, name: &str, scope: Scope) {
        self.scopes.insert(name.to_string(), scope);
    }

    /// Attaches a library (event declarations and subflows) to a scope: flows checked against
    /// that scope can call its subflows. The library is checked against the scope now.
    pub fn attach_library(
        &mut self,
        scope: &str,
        name: &str,
        text: &str,
    ) -> Result<(), RegistryError> {
        if !self.scopes.contains_key(scope) {
            return Err(RegistryError::UnknownScope(scope.to_string()));
        }
        let library =
            crate::sema::check_library(self, scope, name, text).map_err(RegistryError::Library)?;
        self.scopes
            .get_mut(scope)
            .expect("checked above")
            .libraries
            .push(Arc::new(library));
        Ok(())
    }

    /// Sends `std.io` output to `sink` instead of stdout.
    pub fn set_output(&mut self, sink: Arc<dyn OutputSink>) {
        self.output = sink;
    }

    /// Where `std.io` output goes (stdout unless [`Registry::set_output`] said otherwise).
    pub fn output(&self) -> &Arc<dyn OutputSink> {
        &self.output
    }

    /// Every registered event, in registration order (the standard library first for
    /// [`Registry::with_std`]).
    pub fn events(&self) -> &[HostEvent] {
        &self.events
    }

    /// The position of event `name` in [`Registry::events`].
    pub fn event_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The scope named `name`.
    pub fn scope(&self, name: &str) -> Option<&Scope> {
        self.scopes.get(name)
    }

    /// The names of the scopes, sorted.
    pub fn scope_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.scopes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Resolves an event name as a flow checked against `scope` sees it (`None`: every
    /// registered event at cost 1).
    pub(crate) fn resolve(&self, scope: Option<&str>, name: &str) -> Resolution {
        let Some(scope) = scope else {
            return match self.by_name.get(name) {
                Some(&host) => Resolution::Allowed { host, cost: 1 },
                None => Resolution::Unknown,
            };
        };
        let mut visited = Vec::new();
        match self.resolve_in(scope, name, &mut visited) {
            Some((host, cost)) => Resolution::Allowed { host, cost },
            None if self.by_name.contains_key(name) => Resolution::Denied,
            None => Resolution::Unknown,
        }
    }

    /// The event that auto-discharge calls for obligation state `state` in `scope`: the first
    /// registered, implemented event whose only input releases the state and that the scope
    /// allows (its registry index and name).
    pub(crate) fn discharging_event(
        &self,
        scope: Option<&str>,
        state: &Arc<str>,
    ) -> Option<(usize, Arc<str>)> {
        let wanted = crate::types::Phantom::Discharges(state.clone());
        self.events().iter().enumerate().find_map(|(host, event)| {
            let sig = &event.sig;
            let only = sig.inputs.len() == 1 && sig.input_phantom(0) == Some(&wanted);
            let allowed =
                only && matches!(self.resolve(scope, &sig.name), Resolution::Allowed { .. });
            (allowed && event.is_implemented()).then(|| (host, sig.name.clone()))
        })
    }

    fn resolve_in<'a>(
        &'a self,
        scope: &'a str,
        name: &str,
        visited: &mut Vec<&'a str>,
    ) -> Option<(usize, u64)> {
        if visited.contains(&scope) {
            return None;
        }
        visited.push(scope);
        let rules = &self.scopes.get(scope)?.rules;
        for rule in rules {
            let found = match rule {
                ScopeRule::Alias {
                    alias,
                    target,
                    cost,
                } if alias == name => self.by_name.get(target.as_str()).map(|&h| (h, *cost)),
                ScopeRule::Exact { name: exact, cost } if exact == name => {
                    self.by_name.get(name).map(|&h| (h, *cost))
                }
                ScopeRule::Glob { prefix, cost } if name.starts_with(prefix.as_str()) => {
                    self.by_name.get(name).map(|&h| (h, *cost))
                }
                ScopeRule::Include { scope: inner } => self.resolve_in(inner, name, visited),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The names a flow checked against `scope` may invoke as host events: every registered
    /// event the scope allows and every alias it defines (the candidates of the checker's "did
    /// you mean"; unsorted).
    pub(crate) fn visible_event_names<'a>(&'a self, scope: Option<&'a str>) -> Vec<&'a str> {
        let mut names: Vec<&str> = self
            .events
            .iter()
            .map(|event| &*event.sig.name)
            .filter(|name| matches!(self.resolve(scope, name), Resolution::Allowed { .. }))
            .collect();
        if let Some(Ok(scopes)) = scope.map(|scope| self.scope_closure(scope)) {
            for scope in scopes {
                for rule in &scope.rules {
                    if let ScopeRule::Alias { alias, .. } = rule {
                        names.push(alias);
                    }
                }
            }
        }
        names
    }

    /// Every scope `scope` includes, itself first; `Err` names an unknown scope.
    pub(crate) fn scope_closure<'a>(&'a self, scope: &'a str) -> Result<Vec<&'a Scope>, String> {
        let mut names: Vec<&str> = vec![scope];
        let mut scopes = Vec::new();
        let mut i = 0;
        while i < names.len() {
            let found = self
                .scopes
                .get(names[i])
                .ok_or_else(|| names[i].to_string())?;
            scopes.push(found);
            for rule in &found.rules {
                if let ScopeRule::Include { scope: inner } = rule {
                    if !names.contains(&inner.as_str()) {
                        names.push(inner);
                    }
                }
            }
            i += 1;
        }
        Ok(scopes)
    }
}

/// The message of a caught host panic.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_string());
    format!("host implementation panicked: {text}")
}
