//! Lowering checked syntax to the typed IR: steps, continuations, builtins and subflow inlining.

use super::named::{listed, Named, Positions};
use super::suggest::Suggester;
use super::{CheckOptions, SubflowDef};
use crate::diag::{Code, Diagnostic, NoteKind};
use crate::host::{Implementation, Registry, Resolution, StdEvent};
use crate::ir::*;
use crate::span::{LineIndex, Span};
use crate::syntax::ast;
use crate::types::{EventSig, PayloadType, Type};
use std::collections::HashMap;
use std::sync::Arc;

mod matching;
mod obligations;
mod shape;

pub(super) use shape::describe_branches;

/// A struct payload's fields (name, local, type), shared by every binding of it.
pub(super) type Fields = Arc<Named<(Arc<str>, LocalId, Type)>>;

/// The fields an accumulator's initial value had but whose values did not check (any, when
/// `None`).
pub(super) type Lost = Option<Arc<Named<Arc<str>>>>;

/// What a name in scope stands for.
#[derive(Clone, Debug)]
pub(super) enum Bound {
    Scalar(LocalId, Type),
    Struct(Fields),
    /// A binding of an empty payload: it has no value.
    Empty,
    /// A payload whose type is only partly known because of an error already reported where it
    /// was made (a capture whose initial value did not check): its known `fields` work; a use of
    /// it as a whole, or of a field it may have had (in `lost`; any, when `None`), fails without
    /// an error of its own (it would only repeat the first).
    Broken {
        fields: Fields,
        lost: Lost,
    },
}

impl Bound {
    /// Whether `field` may be a field that an earlier error lost (its uses are not reported).
    pub(super) fn may_have_lost(lost: &Lost, field: &str) -> bool {
        lost.as_ref().is_none_or(|lost| lost.contains(field))
    }
}

/// The checker keeps at most this many errors of a source (ten times what is shown) and counts
/// the rest, as compilers stop at an error limit (clang's `-ferror-limit`, gcc's
/// `-fmax-errors`) but without stopping: the count stays exact.
pub(super) const MAX_KEPT_DIAGNOSTICS: usize = 1_000;

/// At most this many continuations of the enclosing invocation are shown in the two-line form of
/// a one-line chain.
const MAX_FORM_LINES: usize = 4;

/// The value standing for a continuation step that did not check, in a subflow being checked: a
/// path ending there is not reported as ending with the wrong branch (its error is reported).
const FAILED_STEP: ValueId = ValueId(u32::MAX);

#[derive(Clone)]
pub(super) struct Binding {
    pub name: Arc<str>,
    pub bound: Bound,
}

/// An enclosing capture whose accumulator `captured { ... }` updates.
#[derive(Clone)]
struct CaptureContext {
    fields: Fields,
    value: ValueId,
    /// Fields its initial value had but whose values did not check (any, when `None`: the
    /// initial value was not a struct literal): updating one is not reported again.
    lost: Lost,
}

/// A continuation being lowered, as the continuations nested in its step see it: what SPEC 2.3's
/// one-line rule would have attached them to, had they been written on their own line.
struct EnclosingArm {
    /// The invocation it continues, and that invocation's branches.
    event: Arc<str>,
    branches: Arc<[Arc<str>]>,
    invocation: Span,
    /// Whether that invocation is the head of its flow or subflow.
    head: bool,
    /// Where its own and its earlier siblings' continuations start (`arm_starts[from..=at]`).
    from: usize,
    at: usize,
    /// Branches of `event` that a nested continuation named while attached, on one line, to an
    /// invocation that has no such branch (reported there: not reported again as unhandled).
    claimed: smallvec::SmallVec<[usize; 2]>,
}

/// A subflow whose body is being lowered, as a `yield` in it sees it (SPEC 11): the yield runs
/// the continuation its caller wrote for the branch, in the caller's scope.
struct YieldTarget<'a> {
    name: Arc<str>,
    sig: Arc<EventSig>,
    /// The caller's side; `None` while the subflow is checked on its own (it has no caller).
    caller: Option<Caller<'a>>,
    /// The branches yielded so far, with the first yield of each (E0209 if one is also returned).
    yielded: Vec<(usize, Span)>,
    /// The branches of `yielded`, as a set.
    yielded_set: std::collections::HashSet<usize>,
}

/// What a caller's continuation sees where a `yield` lowers it in place.
struct Caller<'a> {
    /// The continuations of the call (a copy: the call's syntax is borrowed only for the call).
    continuations: std::rc::Rc<[ast::Continuation]>,
    /// The continuations that each yield of a branch tries, by branch, when there are more
    /// than [`super::named::INDEXED`] (a filter per yield was quadratic in them).
    taking: Option<TakingIndex>,
    scope: Vec<Binding>,
    captures: Vec<CaptureContext>,
    text: &'a str,
    span_override: Option<Span>,
    /// The call's span.
    span: Span,
}

/// The names of a wide signature's inputs and branches, each indexed when there are more than
/// [`super::named::INDEXED`] of them.
struct SigIndex {
    _sig: Arc<EventSig>,
    inputs: Option<Arc<Positions>>,
    branches: Option<Positions>,
}

/// Positions among a call's continuations: of each branch's, and of the catch-alls.
struct TakingIndex {
    by_branch: HashMap<String, Vec<u32>>,
    catch_alls: Vec<u32>,
}

impl TakingIndex {
    fn of(continuations: &[ast::Continuation]) -> Option<TakingIndex> {
        if continuations.len() <= super::named::INDEXED {
            return None;
        }
        let mut index = TakingIndex {
            by_branch: HashMap::new(),
            catch_alls: Vec::new(),
        };
        for (i, c) in continuations.iter().enumerate() {
            match &c.kind {
                ast::ContinuationKind::Branch { branch, .. } => index
                    .by_branch
                    .entry(branch.name.to_string())
                    .or_default()
                    .push(i as u32),
                ast::ContinuationKind::CatchAll => index.catch_alls.push(i as u32),
                ast::ContinuationKind::Pipe | ast::ContinuationKind::Patterns { .. } => {}
            }
        }
        Some(index)
    }

    /// The positions a yield of `branch` tries, in order.
    fn taking(&self, branch: &str) -> Vec<u32> {
        let own = self.by_branch.get(branch).map_or(&[][..], Vec::as_slice);
        let mut out: Vec<u32> = own.iter().chain(&self.catch_alls).copied().collect();
        out.sort_unstable();
        out
    }
}

/// One branch an invocation can take, as its continuations see it.
struct BranchInfo {
    name: Arc<str>,
    bound: Bound,
}

/// The branches of one invocation (a few, usually: kept inline).
type BranchInfos = smallvec::SmallVec<[BranchInfo; 4]>;

/// Lengths of the growing tables, to undo a trial lowering.
struct Mark {
    locals: usize,
    values: usize,
    events: usize,
    loops: usize,
    conversions: u32,
    invoke_sites: u32,
    steps: usize,
}

pub(crate) struct Lowerer<'a> {
    registry: &'a Registry,
    options: &'a CheckOptions,
    subflows: &'a HashMap<String, SubflowDef<'a>>,
    recursive: &'a [String],
    /// Events the source declares with errors: a call of one is checked as one of an unknown
    /// event, without an E0201 of its own.
    broken_declarations: &'a [String],
    text: &'a str,
    pub(super) locals: Vec<LocalDecl>,
    values: Vec<ValueDesc>,
    /// Where each value made while checking a subflow (`check_only`) was written, from the first
    /// such value on: only the errors of that subflow's exits need them.
    value_spans: Vec<Span>,
    /// Where every value was made (the call, in library and mock code): what E0213 points at.
    value_sites: Vec<Span>,
    /// The event declared in the source only as the shape (SPEC 13): a call of it is E0209.
    pub(super) shape_only: Option<&'a str>,
    events: Vec<EventRef>,
    loops: Vec<LoopInfo>,
    conversion_buffers: u32,
    inputs: Vec<InputDecl>,
    flows: Vec<Step>,
    diagnostics: Vec<Diagnostic>,
    /// Errors found past the first [`MAX_KEPT_DIAGNOSTICS`]: counted, not kept.
    omitted: usize,
    /// Above zero while inlining a subflow already checked: its errors were reported once.
    pub(super) silent: u32,
    steps: usize,
    invoke_sites: u32,
    subflow_names: Vec<Arc<str>>,
    too_large: bool,
    /// The step being lowered (where a bound found while lowering it is reported).
    at: Span,
    depth: usize,
    /// The invocation whose arguments, guards and continuations are being lowered: the event a
    /// run-time error in them names.
    event_context: Option<Arc<str>>,
    /// Set while checking a subflow definition: calls to other subflows are checked against
    /// their signatures without inlining their bodies (the result is thrown away).
    pub(super) check_only: bool,
    /// Spans of library code do not point into the source: runtime errors there point at the call.
    span_override: Option<Span>,
    pub(super) scope: Vec<Binding>,
    captures: Vec<CaptureContext>,
    /// The subflow calls being inlined, outermost first (what E0105 names when inlining makes
    /// a flow too large).
    inlining: Vec<(Arc<str>, Span)>,
    /// The checked source, and the names its continuations bind (computed at the first unknown
    /// name): an unknown name bound nowhere may be a flow input the caller did not give.
    pub(super) source_file: Option<&'a ast::SourceFile>,
    pub(super) bound_names: std::cell::OnceCell<std::collections::HashSet<&'a str>>,
    /// The unknown names whose error said how to give a flow input.
    pub(super) input_hints: Vec<String>,
    /// The continuations being lowered, outermost first, and where each of their invocations'
    /// continuations start (for the diagnostics of SPEC 2.3's one-line attachment).
    enclosing: Vec<EnclosingArm>,
    arm_starts: Vec<u32>,
    /// "Did you mean" suggestions, and the names they choose from, made when first needed.
    suggester: Suggester,
    event_names: Option<Vec<Arc<str>>>,
    /// Lines of the checked source, made when first needed.
    lines: Option<LineIndex>,
    /// The checked source (`text` is a library's while inlining its subflows).
    source: &'a str,
    /// The subflows whose bodies are being lowered and that yield, innermost last: where a
    /// `yield` goes (SPEC 11). Emptied while a caller's continuation is lowered at a `yield`
    /// down to that caller's own.
    yield_targets: Vec<YieldTarget<'a>>,
    /// Handles and their states (SPEC 12), and the releases of the arguments just lowered.
    handles: obligations::Handles,
    pending_releases: Vec<obligations::Release>,
    /// The inputs and branches, by name, of the signatures with more than
    /// [`super::named::INDEXED`] of either that calls and yields use (a call finds each
    /// argument's input, a yield or an exit its branch: linear searches made a call with 33,000
    /// arguments, or a subflow yielding 8,000 branches, take a second to check). Keyed by the
    /// signature's address, which the `Arc` kept in the entry holds.
    sig_indexes: HashMap<usize, SigIndex>,
    /// `events` by name (the entries of one name, in order), and `subflow_names`' positions:
    /// a linear search per invocation made a flow of 15,000 chained subflows take a second.
    event_ids: HashMap<Arc<str>, smallvec::SmallVec<[u32; 1]>>,
    subflow_ids: HashMap<Arc<str>, u32>,
    /// Expression nodes and continuations lowered in copies (see [`Lowerer::count_copied`]).
    copied: usize,
}

/// Copies of expression nodes and continuations a flow may make per step of `max_steps`
/// (1,280,000 at the default 20,000: about 120 MB of IR).
const COPIED_PER_STEP: usize = 64;

impl<'a> Lowerer<'a> {
    pub fn new(
        registry: &'a Registry,
        options: &'a CheckOptions,
        text: &'a str,
        subflows: &'a HashMap<String, SubflowDef<'a>>,
        recursive: &'a [String],
        broken_declarations: &'a [String],
    ) -> Lowerer<'a> {
        Lowerer {
            registry,
            options,
            subflows,
            recursive,
            broken_declarations,
            text,
            locals: Vec::new(),
            values: Vec::new(),
            value_spans: Vec::new(),
            value_sites: Vec::new(),
            shape_only: None,
            events: Vec::new(),
            loops: Vec::new(),
            conversion_buffers: 0,
            inputs: Vec::new(),
            flows: Vec::new(),
            diagnostics: Vec::new(),
            omitted: 0,
            silent: 0,
            steps: 0,
            invoke_sites: 0,
            subflow_names: Vec::new(),
            too_large: false,
            at: Span::default(),
            depth: 0,
            check_only: false,
            event_context: None,
            span_override: None,
            scope: Vec::new(),
            captures: Vec::new(),
            inlining: Vec::new(),
            enclosing: Vec::new(),
            arm_starts: Vec::new(),
            suggester: Suggester::default(),
            event_names: None,
            lines: None,
            source: text,
            source_file: None,
            bound_names: std::cell::OnceCell::new(),
            input_hints: Vec::new(),
            yield_targets: Vec::new(),
            handles: obligations::Handles::default(),
            sig_indexes: HashMap::new(),
            event_ids: HashMap::new(),
            subflow_ids: HashMap::new(),
            copied: 0,
            pending_releases: Vec::new(),
        }
    }

    /// Declares the flow inputs (SPEC 6): the caller's (`CheckOptions::inputs`), then the
    /// source's (`~input { ... }`, which must agree with the caller's on a shared name), then the
    /// caller's guessed ones that the source does not declare. At most
    /// `FrontEndLimits::max_inputs` in all (E0105).
    pub fn declare_inputs(&mut self, file: &'a ast::SourceFile) {
        self.source_file = Some(file);
        let options = self.options;
        let max = options.limits.max_inputs;
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        let too_many = |lowerer: &mut Self, span: Span| {
            lowerer.error(
                Code::E0105,
                format!("more flow inputs than the limit of {max}"),
                span,
            );
        };
        for (name, ty) in &options.inputs {
            if index.contains_key(name) {
                self.error(
                    Code::E0205,
                    format!("flow input `{name}` is given twice"),
                    Span::default(),
                );
                continue;
            }
            if index.len() == max {
                return too_many(self, Span::default());
            }
            index.insert(name.clone(), self.inputs.len());
            self.declare_input(name.clone(), *ty);
        }
        let api = self.inputs.len();
        let mut declared: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for item in &file.items {
            let ast::Item::Inputs(decl) = item else {
                continue;
            };
            for field in &decl.inputs {
                let name = field.name.name.as_str();
                if !declared.insert(name) {
                    self.error(
                        Code::E0205,
                        format!("flow input `{name}` is declared twice"),
                        field.name.span,
                    );
                    continue;
                }
                let Some(ty) = super::decl::resolve_type(&field.ty, &mut self.diagnostics) else {
                    continue;
                };
                match index.get(name) {
                    Some(&k) if k < api => {
                        let given = self.inputs[k].ty;
                        if given != ty {
                            self.error(
                                Code::E0204,
                                format!(
                                    "flow input `{name}` is declared `{}` ({ty}) here, but the compile options declare it {given}",
                                    field.ty.text
                                ),
                                field.ty.span,
                            );
                        }
                    }
                    _ => {
                        if index.len() == max {
                            return too_many(self, field.name.span);
                        }
                        let name: Arc<str> = Arc::from(name);
                        index.insert(name.clone(), self.inputs.len());
                        self.declare_input(name, ty);
                    }
                }
            }
        }
        for (name, ty) in &options.guessed_inputs {
            if index.contains_key(name) {
                continue;
            }
            if index.len() == max {
                return too_many(self, Span::default());
            }
            index.insert(name.clone(), self.inputs.len());
            self.declare_input(name.clone(), *ty);
        }
    }

    fn declare_input(&mut self, name: Arc<str>, ty: Type) {
        let local = self.new_local(name.clone(), ty, LocalKind::FlowInput);
        self.inputs.push(InputDecl { name, ty, local });
    }

    pub fn finish(mut self) -> (Program, Vec<Diagnostic>) {
        if self.omitted > 0 {
            // All of them are counted: the count is where the rest are first shown.
            self.diagnostics.insert(
                0,
                Diagnostic::new(
                    Code::E0105,
                    format!(
                        "the source has {} errors: only the first {MAX_KEPT_DIAGNOSTICS} are kept",
                        MAX_KEPT_DIAGNOSTICS + self.omitted
                    ),
                    // At the start, so that it is shown first.
                    Span::default(),
                ),
            );
        }
        let program = Program {
            flows: self.flows,
            locals: self.locals,
            values: self.values,
            events: self.events,
            inputs: self.inputs,
            conversion_buffers: self.conversion_buffers,
            loops: self.loops,
            step_count: self.steps,
            invoke_sites: self.invoke_sites,
            subflow_names: self.subflow_names,
            obligation_states: self.handles.states,
            trace: crate::host::TraceLevel::Off,
        };
        (program, self.diagnostics)
    }

    pub(super) fn error(&mut self, code: Code, message: impl Into<String>, span: Span) {
        if self.silent == 0 {
            self.push_diagnostic(Diagnostic::new(code, message, span));
        }
    }

    /// Keeps `diagnostic` if fewer than [`MAX_KEPT_DIAGNOSTICS`] are, else counts it: a source
    /// of 60 KB can make millions of errors (one per call and missing input), and each kept
    /// costs its message.
    pub(super) fn push_diagnostic(&mut self, diagnostic: Diagnostic) {
        if self.diagnostics.len() < MAX_KEPT_DIAGNOSTICS {
            self.diagnostics.push(diagnostic);
        } else {
            self.omitted += 1;
        }
    }

    /// Reports an error with a note (`help` if `help` is set): a "did you mean" or how to fix it.
    pub(super) fn error_with_help(
        &mut self,
        code: Code,
        message: impl Into<String>,
        span: Span,
        help: Option<String>,
    ) {
        if self.silent == 0 {
            let mut diagnostic = Diagnostic::new(code, message, span);
            if let Some(help) = help {
                diagnostic = diagnostic.with_help(help);
            }
            self.push_diagnostic(diagnostic);
        }
    }

    /// Whether errors are being left unreported (while inlining a subflow already checked).
    pub(super) fn silent(&self) -> bool {
        self.silent > 0
    }

    /// "did you mean `X`?" for a misspelled `name` among `candidates` (none while silent: the
    /// error it would go with is not reported).
    pub(super) fn did_you_mean<'c>(
        &mut self,
        name: &str,
        candidates: impl IntoIterator<Item = &'c str>,
    ) -> Option<String> {
        if self.silent > 0 {
            return None;
        }
        self.suggester.did_you_mean(name, candidates)
    }

    /// The names in scope, innermost first (what an unknown name may be a misspelling of); none
    /// once the suggestion budget is spent.
    pub(super) fn names_in_scope(&self) -> Vec<Arc<str>> {
        if self.suggester.is_spent() {
            return Vec::new();
        }
        self.scope.iter().rev().map(|b| b.name.clone()).collect()
    }

    /// Every event a flow may invoke here: the builtins, the source's and its libraries'
    /// subflows, and the host events the scope allows (aliases included), sorted.
    fn event_names(&mut self) -> &[Arc<str>] {
        if self.event_names.is_none() {
            let mut names: Vec<Arc<str>> = ["for", "if", "while", "capture", "match"]
                .into_iter()
                .map(Arc::from)
                .collect();
            names.extend(self.subflows.keys().map(|n| Arc::from(n.as_str())));
            let scope = self.options.scope.as_deref();
            names.extend(
                self.registry
                    .visible_event_names(scope)
                    .into_iter()
                    .map(Arc::from),
            );
            names.sort_unstable();
            names.dedup();
            self.event_names = Some(names);
        }
        self.event_names.as_deref().unwrap_or_default()
    }

    /// "did you mean `X`?" for an unknown event `name`.
    fn did_you_mean_event(&mut self, name: &str) -> Option<String> {
        if self.silent > 0 {
            return None;
        }
        self.event_names();
        let names = self.event_names.take().unwrap_or_default();
        let help = self
            .suggester
            .did_you_mean(name, names.iter().map(|n| &**n));
        self.event_names = Some(names);
        help
    }

    fn sp(&self, span: Span) -> Span {
        self.span_override.unwrap_or(span)
    }

    /// Where an expression at `span` fails: the span (or the call, in library code) and the
    /// invocation it belongs to.
    pub(super) fn error_site(&self, span: Span) -> ErrorSite {
        ErrorSite {
            span: self.sp(span),
            event: self.event_context.clone(),
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            locals: self.locals.len(),
            values: self.values.len(),
            events: self.events.len(),
            loops: self.loops.len(),
            conversions: self.conversion_buffers,
            invoke_sites: self.invoke_sites,
            steps: self.steps,
        }
    }

    fn reset_to(&mut self, mark: Mark) {
        self.forget_handles_from(mark.locals);
        self.locals.truncate(mark.locals);
        self.values.truncate(mark.values);
        self.value_sites.truncate(mark.values);
        self.value_spans.clear();
        for event in self.events.drain(mark.events..) {
            if let Some(ids) = self.event_ids.get_mut(&event.name) {
                ids.pop();
                if ids.is_empty() {
                    self.event_ids.remove(&event.name);
                }
            }
        }
        self.loops.truncate(mark.loops);
        self.conversion_buffers = mark.conversions;
        self.invoke_sites = mark.invoke_sites;
        self.steps = mark.steps;
    }

    pub(super) fn new_local(
        &mut self,
        name: impl Into<LocalName>,
        ty: Type,
        kind: LocalKind,
    ) -> LocalId {
        let name = name.into();
        // A subflow's inputs and results own their text too: pointing into an accumulator
        // field's buffer, they could outlive it (two updates of the field in a loop of the
        // continuation, or of a yielded one, rewrite the half they point into).
        let owns_buffer = ty == Type::Str && LocalDecl::copies_text(kind);
        if self.locals.len() == self.options.limits.max_bindings {
            // Checked here, not only once the flow is built: a source of 60 KB whose calls each
            // copy a subflow's thousands of inputs made 16 million locals (2.3 GB) before the
            // check. No step is lowered after this.
            let limit = self.options.limits.max_bindings;
            let span = self.inlining.first().map_or(self.at, |(_, call)| *call);
            self.too_large(
                format!("the flow has more than {limit} bindings once subflows are inlined (a subflow's inputs and payloads are copied at each call)"),
                span,
            );
        }
        self.locals.push(LocalDecl {
            name,
            ty,
            kind,
            owns_buffer,
        });
        LocalId(self.locals.len() as u32 - 1)
    }

    fn new_value(&mut self, branch: Arc<str>, payload: ValuePayload, span: Span) -> ValueId {
        // Each invocation has a value per branch of its event: thousands of calls of an event
        // of thousands of branches made millions of values. Bounded as locals are, four times
        // over (a value without payload needs no local).
        let limit = self.options.limits.max_bindings.saturating_mul(4);
        if self.values.len() == limit {
            let span = self.inlining.first().map_or(span, |(_, call)| *call);
            self.too_large(
                format!("the flow has more than {limit} branch values once subflows are inlined (every call has one per branch of its event)"),
                span,
            );
        }
        self.values.push(ValueDesc { branch, payload });
        self.value_sites.push(self.sp(span));
        if self.check_only {
            self.value_spans.push(span);
        }
        ValueId(self.values.len() as u32 - 1)
    }

    /// Reports E0105 once per source (the first limit hit is what the user needs to see).
    fn too_large(&mut self, message: String, span: Span) {
        if !self.too_large {
            self.too_large = true;
            self.diagnostics
                .push(Diagnostic::new(Code::E0105, message, span));
        }
    }

    /// Counts an expression node or a continuation lowered again as part of a copy (a subflow
    /// inlined at a call, a caller's continuation lowered at a `yield`: `silent > 0`). Steps
    /// count against `max_steps`, but neither an expression's size nor a continuation without
    /// a step did: a 16,384-leaf sum in a subflow called 3,000 times (166 KB) took 49 s and
    /// 8.7 GB to check, 4,000 guarded continuations taken at 4,000 yields (191 KB) 28 s and
    /// 4.6 GB. Copies may make [`COPIED_PER_STEP`] times `max_steps` of them.
    pub(super) fn count_copied(&mut self, span: Span) -> bool {
        if self.silent == 0 {
            return true;
        }
        if self.too_large {
            return false;
        }
        self.copied += 1;
        let limit = self
            .options
            .limits
            .max_steps
            .saturating_mul(COPIED_PER_STEP);
        if self.copied <= limit {
            return true;
        }
        let message = match self.inlining.first() {
            Some((outermost, _)) => format!(
                "the call of `{outermost}` makes the flow larger than {limit} expression nodes and continuations once subflows are inlined (a subflow called k times is copied k times, and a caller's continuations are copied at each `yield`)"
            ),
            None => format!("the flow has more than {limit} copied expression nodes and continuations"),
        };
        let at = self.inlining.first().map_or(span, |&(_, call)| call);
        self.too_large(message, at);
        false
    }

    fn count_step(&mut self, span: Span) -> bool {
        self.at = span;
        if self.too_large {
            // A bound is passed: nothing more is lowered (the IR would only grow).
            return false;
        }
        self.steps += 1;
        if self.steps > self.options.limits.max_steps {
            let limit = self.options.limits.max_steps;
            let Some((outermost, call)) = self.inlining.first().cloned() else {
                let message = format!("the flow has more than {limit} steps");
                self.too_large(message, span);
                return false;
            };
            // Point at the call in the flow that expands past the limit, and name the chain of
            // subflows being inlined there (a few of each end of it).
            let names: Vec<&str> = self.inlining.iter().map(|(n, _)| &**n).collect();
            let chain = if names.len() <= 6 {
                names.join(" > ")
            } else {
                format!(
                    "{} > ... ({} more) > {}",
                    names[..3].join(" > "),
                    names.len() - 5,
                    names[names.len() - 2..].join(" > ")
                )
            };
            let message = format!(
                "the call of `{outermost}` makes the flow larger than {limit} steps once subflows are inlined (inlining {chain}); a subflow called k times is copied k times"
            );
            self.too_large(message, call);
            return false;
        }
        true
    }

    /// Flow inputs as bindings: visible in every flow and subflow.
    fn input_bindings(&self) -> Vec<Binding> {
        self.inputs
            .iter()
            .map(|input| Binding {
                name: input.name.clone(),
                bound: Bound::Scalar(input.local, input.ty),
            })
            .collect()
    }

    pub(super) fn lookup(&self, name: &str) -> Option<&Bound> {
        self.scope
            .iter()
            .rev()
            .find(|b| &*b.name == name)
            .map(|b| &b.bound)
    }

    /// Lowers a top-level flow; whether it checked without an error.
    pub fn lower_flow(&mut self, flow: &ast::Flow) -> bool {
        self.scope = self.input_bindings();
        self.captures.clear();
        self.yield_targets.clear();
        let errors = self.diagnostics.len();
        match self.lower_invocation(&flow.head) {
            Some(step) => {
                self.flows.push(step);
                self.diagnostics.len() == errors && !self.too_large
            }
            None => false,
        }
    }

    /// Checks a subflow's body once, with its errors reported, then forgets what it lowered.
    pub fn check_subflow(&mut self, name: &str) {
        let def = &self.subflows[name];
        let mark = self.mark();
        let saved_text = self.text;
        self.text = def.text;
        self.scope = self.input_bindings();
        // The subflow's inputs are distinct (its declaration was checked): each is compared with
        // the flow inputs only, not with those pushed before it, which made the check quadratic
        // in the inputs of a wide event.
        let flow_inputs = self.scope.len();
        for (index, (input, ty)) in def.sig.inputs.clone().into_iter().enumerate() {
            if self.scope[..flow_inputs].iter().any(|b| b.name == input) {
                self.error(
                    Code::E0208,
                    format!("subflow input `{input}` shadows a flow input of the same name"),
                    def.span,
                );
            }
            let local = self.new_local(input.clone(), ty, LocalKind::SubflowInput);
            if let Some(phantom) = def.sig.input_phantom(index) {
                self.new_input_handle(local, &phantom.clone());
            }
            self.scope.push(Binding {
                name: input,
                bound: Bound::Scalar(local, ty),
            });
        }
        self.captures.clear();
        self.value_spans.clear();
        self.check_only = true;
        self.yield_targets.clear();
        self.yield_targets.push(YieldTarget {
            name: Arc::from(name),
            sig: def.sig.clone(),
            caller: None,
            yielded: Vec::new(),
            yielded_set: Default::default(),
        });
        let body = self.lower_step(def.body);
        // The first yield of each branch, by branch.
        let yielded: HashMap<usize, Span> = self
            .yield_targets
            .pop()
            .map(|t| t.yielded.into_iter().collect())
            .unwrap_or_default();
        self.index_sig(&def.sig);
        let mut lines: Option<LineIndex> = None;
        self.check_only = false;
        if let (ast::Step::Discard(span), false) = (def.body, def.sig.is_void()) {
            let names = listed(def.sig.branches.iter().map(|b| &*b.name));
            self.error(
                Code::E0209,
                format!(
                    "subflow `{name}` is `_`, which ends with no branch (its event's branches: {})",
                    names
                ),
                *span,
            );
        }
        if let Some(body) = body {
            let mut values = Vec::new();
            step_values(&body, &mut values);
            for value in values {
                if value == FAILED_STEP {
                    continue;
                }
                // Every value of the body was made after the mark, while checking.
                let span = (value.0 as usize)
                    .checked_sub(mark.values)
                    .and_then(|k| self.value_spans.get(k))
                    .copied()
                    .unwrap_or(def.span);
                let branch = &self.values[value.0 as usize].branch;
                if let Some(yielded) = branch.strip_prefix(YIELD_VALUE_PREFIX) {
                    let message = format!(
                        "this path of subflow `{name}` ends with `yield {yielded}`, which does not end the subflow: end it with a branch the subflow returns (a `yield` ends a path only inside a loop or an `as` step, whose values are discarded)"
                    );
                    self.error(Code::E0209, message, span);
                    continue;
                }
                match self.exit_for(&def.sig, value, &BranchLocals::default()) {
                    Err(message) => self.error(Code::E0209, message, span),
                    Ok(exit) => {
                        if !def.sig.phantoms.is_empty() {
                            let sig = def.sig.clone();
                            self.check_exit_handles(&sig, exit.branch as usize, value, span);
                        }
                        if let Some(&at) = yielded.get(&(exit.branch as usize)) {
                            let branch = def.sig.branches[exit.branch as usize].name.clone();
                            let text = self.text;
                            let lines = lines.get_or_insert_with(|| LineIndex::new(text));
                            let position = lines.line_col(text, at.start);
                            let message = format!(
                                "branch `{branch}` of `{name}` is both yielded (at {}:{}) and returned here: a branch is either yielded to the caller's continuation or the subflow's result, not both",
                                position.line, position.column
                            );
                            self.error(Code::E0209, message, span);
                        }
                    }
                }
            }
        }
        self.text = saved_text;
        self.reset_to(mark);
    }

    fn lower_step(&mut self, step: &ast::Step) -> Option<Step> {
        match step {
            ast::Step::Invoke(invocation) => self.lower_invocation(invocation),
            ast::Step::Discard(_) => None,
            ast::Step::Construct(c) if c.name.name == "captured" => self.lower_update(c),
            ast::Step::Construct(c) => self.lower_construct(c),
            ast::Step::Yield(c) => self.lower_yield(c),
        }
    }

    /// Guards the depth of the step tree (which grows with inlining), then lowers.
    fn lower_invocation(&mut self, invocation: &ast::Invocation) -> Option<Step> {
        if self.depth >= self.options.limits.max_depth {
            let message = format!(
                "steps are nested more than {} deep once subflows are inlined",
                self.options.limits.max_depth
            );
            self.too_large(message, invocation.span);
            return None;
        }
        self.depth += 1;
        // An event used before already has its name allocated (and `event_use` shares this one).
        let path = invocation.path.text.as_str();
        let named = match self.event_ids.get_key_value(path) {
            Some((name, _)) => name.clone(),
            None => Arc::from(path),
        };
        let context = self.event_context.replace(named);
        let lowered = self.lower_invocation_at_depth(invocation);
        self.event_context = context;
        self.depth -= 1;
        lowered
    }

    fn lower_invocation_at_depth(&mut self, invocation: &ast::Invocation) -> Option<Step> {
        if !self.count_step(invocation.span) {
            return None;
        }
        let name = invocation.path.text.as_str();
        match name {
            "for" => return self.lower_for(invocation),
            "if" => return self.lower_if(invocation),
            "while" => return self.lower_while(invocation),
            "capture" => return self.lower_capture(invocation),
            "match" => return self.lower_match(invocation),
            _ => {}
        }
        if let Some(def) = self.subflows.get(name) {
            return self.lower_call(invocation, name, def);
        }
        match self.registry.resolve(self.options.scope.as_deref(), name) {
            Resolution::Allowed { host, cost } => {
                if !self.registry.events()[host].is_implemented() {
                    self.error(
                        Code::E0209,
                        format!(
                            "event `{name}` is declared but the host registered no implementation"
                        ),
                        invocation.path.span,
                    );
                    // Its arguments and continuations are still checked against its signature.
                    self.lower_host(invocation, host, cost);
                    return None;
                }
                self.lower_host(invocation, host, cost)
            }
            Resolution::Denied => {
                let scope = self.options.scope.clone().unwrap_or_default();
                self.error(
                    Code::E0301,
                    format!("event `{name}` is not allowed in scope `{scope}` (EventDenied)"),
                    invocation.path.span,
                );
                if let Some(host) = self.registry.event_index(name) {
                    self.lower_host(invocation, host, 1);
                }
                None
            }
            Resolution::Unknown if self.shape_only == Some(name) => {
                self.error(
                    Code::E0209,
                    format!("event `{name}` is declared only as the shape of the flow's value: it has no implementation to call (write a subflow `~{name} = ...`)"),
                    invocation.path.span,
                );
                self.check_unknown_invocation(invocation);
                None
            }
            Resolution::Unknown if self.broken_declarations.iter().any(|b| b == name) => {
                self.check_unknown_invocation(invocation);
                None
            }
            Resolution::Unknown => {
                let help = self.did_you_mean_event(name);
                self.error_with_help(
                    Code::E0201,
                    format!("unknown event `{name}`"),
                    invocation.path.span,
                    help,
                );
                self.check_unknown_invocation(invocation);
                None
            }
        }
    }

    fn event_use(&mut self, host: usize, name: &str, cost: u64) -> EventUse {
        if let Some(ids) = self.event_ids.get(name) {
            if let Some(&i) = ids.iter().find(|&&i| self.events[i as usize].host == host) {
                return EventUse(i);
            }
        }
        // The invocation being lowered names this event: share its name.
        let name = match &self.event_context {
            Some(context) if **context == *name => context.clone(),
            _ => Arc::from(name),
        };
        let id = self.events.len() as u32;
        self.event_ids.entry(name.clone()).or_default().push(id);
        self.events.push(EventRef {
            host,
            name,
            cost,
            sig: self.registry.events()[host].sig.clone(),
        });
        EventUse(id)
    }

    /// Locals for a payload (pushed to `locals` as a branch), how a binding of it is bound, and
    /// its value description. The locals are named `{prefix}.{branch}` (and `.{field}`).
    fn payload_locals(
        &mut self,
        payload: &PayloadType,
        kind: LocalKind,
        prefix: &Arc<str>,
        branch: &Arc<str>,
        locals: &mut BranchLocals,
    ) -> (Bound, ValuePayload) {
        let name = |field: Option<&Arc<str>>| LocalName::Payload {
            prefix: prefix.clone(),
            branch: branch.clone(),
            field: field.cloned(),
        };
        let made = match payload {
            PayloadType::Empty => (Bound::Empty, ValuePayload::Empty),
            PayloadType::Identity(ty) => {
                let local = self.new_local(name(None), *ty, kind);
                locals.push(local);
                (Bound::Scalar(local, *ty), ValuePayload::Identity(local))
            }
            PayloadType::Struct(fields) => {
                let mut bound = Named::default();
                let mut described = Vec::with_capacity(fields.len());
                for (field, ty) in fields {
                    let local = self.new_local(name(Some(field)), *ty, kind);
                    locals.push(local);
                    bound.push((field.clone(), local, *ty));
                    described.push((field.clone(), local));
                }
                (
                    Bound::Struct(Arc::new(bound)),
                    ValuePayload::Struct(described),
                )
            }
        };
        locals.end_branch();
        made
    }

    /// For an invocation of an event with signature `sig`: the payload locals of each branch,
    /// how a binding of each branch is bound, and the value of branch 0 (branch `b` is
    /// `first_value + b`).
    fn branch_slots(
        &mut self,
        sig: &EventSig,
        kind: LocalKind,
        name: &str,
        span: Span,
    ) -> (BranchLocals, BranchInfos, ValueId) {
        let branches = sig.result_branch_slice();
        let mut slots = BranchLocals::default();
        let mut infos = BranchInfos::with_capacity(branches.len());
        let first_value = ValueId(self.values.len() as u32);
        // The invocation being lowered names the event: its locals share that name.
        let prefix = match &self.event_context {
            Some(context) if **context == *name => context.clone(),
            _ => Arc::from(name),
        };
        for branch in branches {
            let (bound, payload) =
                self.payload_locals(&branch.payload, kind, &prefix, &branch.name, &mut slots);
            infos.push(BranchInfo {
                name: branch.name.clone(),
                bound,
            });
            self.new_value(branch.name.clone(), payload, span);
        }
        (slots, infos, first_value)
    }

    fn lower_host(&mut self, invocation: &ast::Invocation, host: usize, cost: u64) -> Option<Step> {
        let name = invocation.path.text.as_str();
        let sig = self.registry.events()[host].sig.clone();
        // A template with errors still has its continuations checked (then nothing is made).
        let args = if matches!(
            self.registry.events()[host].implementation,
            Implementation::Std(StdEvent::PrintTemplate)
        ) {
            self.lower_template(invocation).map(Arguments::Template)
        } else {
            Some(Arguments::Inputs(self.lower_args(
                &invocation.args,
                &sig,
                name,
                invocation.span,
            )))
        };
        let releases = std::mem::take(&mut self.pending_releases);
        self.apply_releases(releases);
        let event = self.event_use(host, name, cost);
        let (payloads, infos, first_value) =
            self.branch_slots(&sig, LocalKind::Payload, name, invocation.span);
        self.bind_payload_handles(&sig, &payloads, true, self.sp(invocation.span));
        let arms = self.lower_arms(
            &invocation.continuations,
            &infos,
            &[],
            name,
            invocation.span,
            None,
        );
        let args = args?;
        self.invoke_sites += 1;
        Some(Step::Invoke(Box::new(Invoke {
            event,
            site: self.invoke_sites - 1,
            args,
            payloads,
            first_value,
            arms,
            span: self.sp(invocation.span),
        })))
    }

    fn lower_template(&mut self, invocation: &ast::Invocation) -> Option<Vec<TemplatePart>> {
        let literal = match invocation.args.as_slice() {
            [ast::Arg {
                value: ast::ArgValue::Expr(e),
                ..
            }] if matches!(e.kind, ast::ExprKind::Str(_)) => e,
            _ => {
                self.error(
                    Code::E0205,
                    format!(
                        "`{}` takes one string literal: a template such as \"n = {{{{ n }}}}\"",
                        invocation.path.text
                    ),
                    invocation.span,
                );
                return None;
            }
        };
        let raw = self.text.get(literal.span.range())?;
        let parts = match crate::syntax::parse_template(raw, literal.span.start as usize) {
            Ok(parts) => parts,
            Err(diagnostic) => {
                self.error(diagnostic.code, diagnostic.message, diagnostic.span);
                return None;
            }
        };
        // Every hole is checked, whichever fail.
        let mut lowered = Vec::new();
        let mut ok = true;
        for part in parts {
            match part {
                crate::syntax::TemplatePart::Text(text) => {
                    lowered.push(TemplatePart::Text(text.into_boxed_str()))
                }
                crate::syntax::TemplatePart::Hole(expr, format) => {
                    let Some((ir, ty)) = self.lower_expr(&expr) else {
                        ok = false;
                        continue;
                    };
                    let expected = match format {
                        crate::syntax::HoleFormat::Any => None,
                        crate::syntax::HoleFormat::Str => Some(Type::Str),
                        crate::syntax::HoleFormat::Int => Some(Type::Int),
                        crate::syntax::HoleFormat::Float => Some(Type::Float),
                    };
                    if let Some(expected) = expected {
                        if expected != ty {
                            self.error(
                                Code::E0204,
                                format!(
                                    "this hole formats a {expected}, but the expression is a {ty}"
                                ),
                                expr.span,
                            );
                            ok = false;
                            continue;
                        }
                    }
                    lowered.push(TemplatePart::Hole(ir));
                }
            }
        }
        ok.then_some(lowered)
    }

    /// Matches arguments to inputs: by name, or one positional argument for a one-input event.
    /// Indexes `sig`'s inputs and branches by name if it has more than
    /// [`super::named::INDEXED`] of either (made at the first call or yield of it that is
    /// checked, then shared by the others), and returns the index of its inputs if it has one.
    fn index_sig(&mut self, sig: &Arc<EventSig>) -> Option<Arc<Positions>> {
        let wide = |n: usize| n > super::named::INDEXED;
        if !wide(sig.inputs.len()) && !wide(sig.branches.len()) {
            return None;
        }
        let index = self
            .sig_indexes
            .entry(Arc::as_ptr(sig) as usize)
            .or_insert_with(|| SigIndex {
                _sig: sig.clone(),
                inputs: wide(sig.inputs.len())
                    .then(|| Arc::new(Positions::of(sig.inputs.iter().map(|(n, _)| n)))),
                branches: wide(sig.branches.len())
                    .then(|| Positions::of(sig.branches.iter().map(|b| &b.name))),
            });
        index.inputs.clone()
    }

    /// [`EventSig::branch_index`], through the index [`Lowerer::index_sig`] made, if any.
    fn branch_of(&self, sig: &EventSig, name: &str) -> Option<usize> {
        if sig.branches.len() > super::named::INDEXED {
            let key = sig as *const EventSig as usize;
            if let Some(branches) = self.sig_indexes.get(&key).and_then(|i| i.branches.as_ref()) {
                return branches.position(name);
            }
        }
        sig.branch_index(name)
    }

    fn lower_args(
        &mut self,
        args: &[ast::Arg],
        sig: &Arc<EventSig>,
        event: &str,
        span: Span,
    ) -> Vec<Argument> {
        let inputs = sig.inputs.as_slice();
        let index = self.index_sig(sig);
        let position = |name: &str| match &index {
            Some(index) => index.position(name),
            None => inputs.iter().position(|(input, _)| **input == *name),
        };
        let mut slots: Vec<Option<Argument>> = (0..inputs.len()).map(|_| None).collect();
        let mut failed: smallvec::SmallVec<[bool; 8]> = smallvec::smallvec![false; inputs.len()];
        // Which inputs some argument names, made at the first unknown name (for its suggestion).
        let mut named: Option<smallvec::SmallVec<[bool; 8]>> = None;
        for arg in args {
            let index = match &arg.name {
                Some(name) => match position(&name.name) {
                    Some(index) => index,
                    None => {
                        let known = if inputs.is_empty() {
                            "it takes no inputs".to_string()
                        } else {
                            format!("its inputs: {}", listed(inputs.iter().map(|(n, _)| &**n)))
                        };
                        // Only inputs no argument names (a misspelled name is one of those).
                        let closest = if self.silent == 0 && !self.suggester.is_spent() {
                            let named = named.get_or_insert_with(|| {
                                let mut named = smallvec::smallvec![false; inputs.len()];
                                for arg in args {
                                    if let Some(index) =
                                        arg.name.as_ref().and_then(|n| position(&n.name))
                                    {
                                        named[index] = true;
                                    }
                                }
                                named
                            });
                            let free = inputs
                                .iter()
                                .zip(named.iter())
                                .filter(|(_, named)| !**named)
                                .map(|((n, _), _)| &**n);
                            self.suggester.closest(&name.name, free)
                        } else {
                            None
                        };
                        // The input it misspells is not reported missing as well.
                        if let Some(index) = closest.and_then(&position) {
                            failed[index] = true;
                        }
                        self.error_with_help(
                            Code::E0205,
                            format!("`{event}` has no input `{}` ({known})", name.name),
                            name.span,
                            closest.map(|found| format!("did you mean `{found}`?")),
                        );
                        continue;
                    }
                },
                None if args.len() == 1 && inputs.len() == 1 => 0,
                None => {
                    self.error(
                        Code::E0205,
                        format!(
                            "`{event}` takes {} inputs: name each argument (`name: value`)",
                            inputs.len()
                        ),
                        arg.span,
                    );
                    continue;
                }
            };
            if slots[index].is_some() || failed[index] {
                self.error(
                    Code::E0205,
                    format!("input `{}` of `{event}` is given twice", inputs[index].0),
                    arg.span,
                );
                continue;
            }
            let ast::ArgValue::Expr(expr) = &arg.value else {
                failed[index] = true;
                self.error(
                    Code::E0204,
                    format!(
                        "input `{}` of `{event}` takes a {}, not a range or struct literal",
                        inputs[index].0, inputs[index].1
                    ),
                    arg.span,
                );
                continue;
            };
            let Some((lowered, ty)) = self.lower_expr(expr) else {
                failed[index] = true;
                continue;
            };
            let expected = inputs[index].1;
            if !sig.phantoms.is_empty() {
                if let Some(release) = self.check_handle_argument(sig, index, &lowered, expr.span) {
                    self.pending_releases.push(release);
                }
            }
            let format_into = if ty == expected {
                None
            } else if expected == Type::Str {
                // SPEC 2.1: an int, float or bool passed to a str input is formatted as text.
                self.conversion_buffers += 1;
                Some(BufferId(self.conversion_buffers - 1))
            } else {
                failed[index] = true;
                self.error(
                    Code::E0204,
                    format!(
                        "input `{}` of `{event}` is {expected}, found {ty}",
                        inputs[index].0
                    ),
                    expr.span,
                );
                continue;
            };
            slots[index] = Some(Argument {
                expr: lowered,
                format_into,
            });
        }
        // One error for all the inputs a call misses (an event may have thousands).
        let missing = || {
            slots
                .iter()
                .zip(failed.iter())
                .zip(inputs)
                .filter(|((slot, failed), _)| slot.is_none() && !**failed)
                .map(|(_, (name, _))| &**name)
        };
        match missing().count() {
            0 => {}
            1 => {
                let name = missing().next().expect("one");
                self.error(
                    Code::E0205,
                    format!("missing input `{name}` of `{event}`"),
                    span,
                );
            }
            _ => {
                let names = listed(missing());
                self.error(
                    Code::E0205,
                    format!("missing inputs {names} of `{event}`"),
                    span,
                );
            }
        }
        slots
            .into_iter()
            .map(|slot| {
                slot.unwrap_or(Argument {
                    expr: Expr::Int(0),
                    format_into: None,
                })
            })
            .collect()
    }

    /// Lowers the continuations of an invocation whose branches are `branches`. `exempt` branches
    /// may be left unhandled (the builtins' `else` and `done`).
    fn lower_arms(
        &mut self,
        continuations: &[ast::Continuation],
        branches: &[BranchInfo],
        exempt: &[&str],
        event: &str,
        span: Span,
        capture: Option<(usize, CaptureContext)>,
    ) -> Arms {
        // No continuations: nothing to lower or check, and both tiers take the value of the
        // branch without looking at the (then empty) per-branch tables.
        let repeating = std::mem::take(&mut self.handles.repeating);
        if continuations.is_empty() {
            return Arms::default();
        }
        // A subflow may yield thousands of branches: a set past a few.
        let repeating_set: Option<std::collections::HashSet<&str>> = (repeating.len()
            > super::named::INDEXED)
            .then(|| repeating.iter().map(|r| &**r).collect());
        let mut arms = Arms {
            arms: Vec::with_capacity(continuations.len()),
            by_branch: vec![Vec::new(); branches.len()],
            unguarded: Vec::new(),
        };
        let mut handled = vec![false; branches.len()];
        let mut catch_alls = Vec::new();
        // Branches whose E0207 would only repeat an E0206 of this invocation: a misspelled
        // branch's suggestion, a void event's result continued with a named branch, a branch a
        // continuation nested on the same line named instead.
        let mut explained: smallvec::SmallVec<[usize; 2]> = smallvec::SmallVec::new();
        let void = branches.len() == 1 && branches[0].name.is_empty();
        let arms_from = self.arm_starts.len();
        // Made once for all the continuations (an event may have thousands of branches, and
        // as many continuations): the names nested continuations see, and each name's index.
        let names: Arc<[Arc<str>]> = branches.iter().map(|b| b.name.clone()).collect();
        let by_name = Positions::of(branches.iter().map(|b| &b.name));
        for continuation in continuations {
            if !self.count_copied(continuation.span) {
                break;
            }
            self.arm_starts.push(continuation.span.start);
            let (branch, binding, guard) = match &continuation.kind {
                ast::ContinuationKind::Branch {
                    branch,
                    binding,
                    guard,
                } => {
                    let Some(index) = by_name.position(&branch.name) else {
                        let suggested =
                            self.report_unknown_branch(continuation, branch, branches, event, span);
                        if void {
                            explained.push(0);
                        }
                        explained.extend(suggested);
                        // Its step is still checked, with its binding of an unknown type.
                        let binding = match binding {
                            Some(ast::Binding::Name(name)) => Some(name),
                            _ => None,
                        };
                        let capture = capture.as_ref().map(|(_, context)| context);
                        self.check_unattached_step(
                            continuation,
                            binding,
                            guard.as_deref(),
                            capture,
                        );
                        continue;
                    };
                    (Some(index), binding.as_ref(), guard.as_deref())
                }
                ast::ContinuationKind::Pipe => {
                    if branches.len() != 1 {
                        let names = listed(branches.iter().map(|b| &*b.name));
                        self.error(
                            Code::E0206,
                            format!("`|>` continues an event with one branch, but `{event}` has {}: name the branch with `| name |>`", names),
                            continuation.span,
                        );
                        let capture = capture.as_ref().map(|(_, context)| context);
                        self.check_unattached_step(continuation, None, None, capture);
                        continue;
                    }
                    (Some(0), None, None)
                }
                ast::ContinuationKind::CatchAll => (None, None, None),
                ast::ContinuationKind::Patterns { binding, guard, .. } => {
                    self.error(
                        Code::E0206,
                        format!("pattern continuations `| [...]` continue `match`, not `{event}`: name one of its branches"),
                        continuation.span,
                    );
                    let binding = match binding {
                        Some(ast::Binding::Name(name)) => Some(name),
                        _ => None,
                    };
                    let capture = capture.as_ref().map(|(_, context)| context);
                    self.check_unattached_step(continuation, binding, guard.as_deref(), capture);
                    continue;
                }
            };
            let scope_len = self.scope.len();
            if let (Some(index), Some(ast::Binding::Name(name))) = (branch, binding) {
                if self.lookup(&name.name).is_some() {
                    self.error(
                        Code::E0208,
                        format!(
                            "binding `{}` shadows a binding or input of the same name in scope",
                            name.name
                        ),
                        name.span,
                    );
                }
                self.scope.push(Binding {
                    name: Arc::from(name.name.as_str()),
                    bound: branches[index].bound.clone(),
                });
            }
            let guard = guard.and_then(|g| self.lower_bool(g, "a guard"));
            let captures_len = self.captures.len();
            if let (Some(index), Some((capture_branch, context))) = (branch, &capture) {
                if index == *capture_branch {
                    self.captures.push(context.clone());
                }
            }
            // The invocation being lowered is the one named by `event_context` (shared, not
            // copied).
            let event_name = match &self.event_context {
                Some(context) if **context == *event => context.clone(),
                _ => Arc::from(event),
            };
            self.enclosing.push(EnclosingArm {
                event: event_name,
                branches: names.clone(),
                invocation: span,
                head: self.enclosing.is_empty(),
                from: arms_from,
                at: self.arm_starts.len() - 1,
                claimed: smallvec::SmallVec::new(),
            });
            let release_mark = self.arm_mark();
            let repeats = match branch {
                Some(i) => match &repeating_set {
                    Some(set) => set.contains(&*branches[i].name),
                    None => repeating.iter().any(|r| *r == branches[i].name),
                },
                None => !repeating.is_empty(),
            };
            let depth = self.enter_arm(repeats);
            let step = continuation.step.as_deref().and_then(|s| {
                let lowered = self.lower_step(s);
                // In a subflow being checked, a step that failed stands for a value of its own,
                // so that its path is not also reported as ending with the wrong branch.
                if lowered.is_none() && self.check_only && !matches!(s, ast::Step::Discard(_)) {
                    return Some(Step::Yield(FAILED_STEP));
                }
                lowered
            });
            self.leave_loop(depth);
            self.arm_end(release_mark);
            if let Some(frame) = self.enclosing.pop() {
                explained.extend(frame.claimed);
            }
            self.captures.truncate(captures_len);
            self.scope.truncate(scope_len);
            let arm_index = arms.arms.len() as u32;
            match branch {
                Some(index) => {
                    if guard.is_none()
                        && !matches!(
                            &continuation.kind,
                            ast::ContinuationKind::Branch { guard: Some(_), .. }
                        )
                    {
                        handled[index] = true;
                    }
                    arms.by_branch[index].push(arm_index);
                }
                None => catch_alls.push(arm_index),
            }
            arms.arms.push(Arm {
                guard,
                step,
                span: self.sp(continuation.span),
            });
        }
        self.arm_starts.truncate(arms_from);
        for list in &mut arms.by_branch {
            list.extend(&catch_alls);
        }
        arms.unguarded = arms
            .by_branch
            .iter()
            .map(|list| {
                list.first()
                    .copied()
                    .filter(|&first| arms.arms[first as usize].guard.is_none())
            })
            .collect();
        if !continuations.is_empty() && catch_alls.is_empty() && !self.too_large {
            for (index, branch) in branches.iter().enumerate() {
                if !handled[index]
                    && !exempt.contains(&&*branch.name)
                    && !explained.contains(&index)
                {
                    let message = if branch.name.is_empty() {
                        format!("the result of `{event}` is not handled (continue it with `|> ...` or a catch-all `|? |> ...`)")
                    } else {
                        format!("branch `{}` of `{event}` is not handled (add `| {} |> ...` or a catch-all `|? |> ...`)", branch.name, branch.name)
                    };
                    self.error(Code::E0207, message, span);
                }
            }
        }
        arms
    }

    /// Reports a continuation naming `branch`, which the invocation of `event` at `invocation`
    /// (with `branches`) does not have (E0206): with the closest branch as a suggestion, and,
    /// when SPEC 2.3's one-line rule attached it here while an enclosing invocation has that
    /// branch, why and the form that attaches it there. Returns the index of the suggested branch.
    fn report_unknown_branch(
        &mut self,
        continuation: &ast::Continuation,
        branch: &ast::Ident,
        branches: &[BranchInfo],
        event: &str,
        invocation: Span,
    ) -> Option<usize> {
        if self.silent > 0 {
            return None;
        }
        let void = branches.len() == 1 && branches[0].name.is_empty();
        let message = if void {
            format!(
                "`{event}` has no branch `{}`: it is void (it has no branches), so a continuation of it is written `|> step`",
                branch.name
            )
        } else {
            let names = listed(branches.iter().map(|b| &*b.name));
            format!(
                "`{event}` has no branch `{}` (its branches: {})",
                branch.name, names
            )
        };
        let mut diagnostic = Diagnostic::new(Code::E0206, message, branch.span);
        if let Some((note, help)) = self.misattached(continuation, branch, event, invocation) {
            diagnostic = diagnostic.with_note(NoteKind::Note, note).with_help(help);
            self.push_diagnostic(diagnostic);
            return None;
        }
        let suggested = if void {
            None
        } else {
            self.suggester
                .closest(&branch.name, branches.iter().map(|b| &*b.name))
                .and_then(|found| branches.iter().position(|b| *b.name == *found))
        };
        if let Some(index) = suggested {
            diagnostic = diagnostic.with_help(format!("did you mean `{}`?", branches[index].name));
        }
        self.push_diagnostic(diagnostic);
        suggested
    }

    /// When `continuation` (naming `branch`) was attached to the invocation of `event` at
    /// `invocation` by SPEC 2.3's one-line rule and an enclosing invocation has that branch: the
    /// note saying so and the help showing the continuation on its own line, where it attaches
    /// to the enclosing invocation (whose frame then claims the branch).
    fn misattached(
        &mut self,
        continuation: &ast::Continuation,
        branch: &ast::Ident,
        event: &str,
        invocation: Span,
    ) -> Option<(String, String)> {
        if !std::ptr::eq(self.text, self.source) || self.enclosing.is_empty() {
            return None;
        }
        let text = self.source;
        let lines = self.lines.get_or_insert_with(|| LineIndex::new(text));
        let line = lines.line_of(continuation.span.start as usize);
        if lines.line_of((invocation.end as usize).saturating_sub(1)) != line {
            return None;
        }
        let (depth, frame) = self
            .enclosing
            .iter()
            .enumerate()
            .rev()
            .find(|(_, f)| f.branches.iter().any(|b| **b == *branch.name))?;
        let index = frame.branches.iter().position(|b| **b == *branch.name)?;
        // A piece of the source, cut to what a note line shows (the note cuts it again, marked).
        let slice = |from: usize, to: usize| {
            let piece = text.get(from..to).unwrap_or_default().trim_end();
            let keep = piece
                .char_indices()
                .nth(crate::diag::MAX_NOTE_LINE_CHARS + 1)
                .map_or(piece.len(), |(at, _)| at);
            &piece[..keep]
        };
        let indent_of = |line: usize| {
            let range = lines.line_range(text, line);
            let whole = text.get(range).unwrap_or_default();
            whole.len() - whole.trim_start().len()
        };
        let starts = &self.arm_starts[frame.from..=frame.at];
        let arm_line = lines.line_of(starts[starts.len() - 1] as usize);
        // The continuations of the enclosing invocation on that line, each shown on its own line:
        // a few (beyond that the form is not shown, only the note).
        let on_line = starts
            .iter()
            .rev()
            .take(MAX_FORM_LINES + 1)
            .take_while(|&&start| lines.line_of(start as usize) == arm_line)
            .count();
        let starts = &starts[starts.len() - on_line..];
        let mut shown: Vec<String> = Vec::new();
        let indent = if lines.line_of(frame.invocation.start as usize) == arm_line {
            let head_line = lines.line_range(text, arm_line);
            shown.push(slice(head_line.start, frame.invocation.end as usize).to_string());
            indent_of(arm_line) + if frame.head { 0 } else { 4 }
        } else {
            indent_of(arm_line)
        };
        let pad = " ".repeat(indent.min(crate::diag::MAX_NOTE_LINE_CHARS));
        for (k, &start) in starts.iter().enumerate() {
            let end = starts
                .get(k + 1)
                .map_or(continuation.span.start, |&next| next);
            shown.push(format!("{pad}{}", slice(start as usize, end as usize)));
        }
        let own_line = lines.line_range(text, line);
        let end = (continuation.span.end as usize).min(own_line.end);
        shown.push(format!(
            "{pad}{}",
            slice(continuation.span.start as usize, end)
        ));
        let outer = frame.event.clone();
        let shown_all = on_line <= MAX_FORM_LINES;
        self.enclosing[depth].claimed.push(index);
        let note = format!(
            "on one line, a continuation attaches to the last invocation written before it (SPEC 2.3): this `| {}` attaches to `{event}`, not to `{outer}`",
            branch.name
        );
        let help = if shown_all {
            format!(
                "to continue `{outer}`, write the continuation on a line of its own:\n{}",
                shown.join("\n")
            )
        } else {
            format!("to continue `{outer}`, write the continuation on a line of its own, indented like the continuations of `{outer}`")
        };
        Some((note, help))
    }

    /// Checks what an invocation of an unknown event (E0201) holds: the expressions of its
    /// arguments and its continuations, whose bindings are of unknown types and whose branches
    /// are not checked.
    fn check_unknown_invocation(&mut self, invocation: &ast::Invocation) {
        for arg in &invocation.args {
            match &arg.value {
                ast::ArgValue::Expr(e) => {
                    self.lower_expr(e);
                }
                ast::ArgValue::Range(start, end) => {
                    self.lower_expr(start);
                    self.lower_expr(end);
                }
                ast::ArgValue::Struct(fields) => {
                    for field in fields {
                        self.lower_expr(&field.value);
                    }
                }
            }
        }
        for continuation in &invocation.continuations {
            let (binding, guard) = match &continuation.kind {
                ast::ContinuationKind::Branch { binding, guard, .. }
                | ast::ContinuationKind::Patterns { binding, guard, .. } => (
                    match binding {
                        Some(ast::Binding::Name(name)) => Some(name),
                        _ => None,
                    },
                    guard.as_deref(),
                ),
                _ => (None, None),
            };
            self.arm_starts.push(continuation.span.start);
            self.check_unattached_step(continuation, binding, guard, None);
            self.arm_starts.pop();
        }
    }

    /// Checks the guard and step of a continuation that attaches to no branch (its error is
    /// reported), so that their own errors are reported too; its binding, if any, is of an
    /// unknown type (its uses are not errors), and so is the accumulator of `capture` (the
    /// capture it continues, which it may have meant to continue with `as`). What it lowers is
    /// thrown away.
    fn check_unattached_step(
        &mut self,
        continuation: &ast::Continuation,
        binding: Option<&ast::Ident>,
        guard: Option<&ast::Expr>,
        capture: Option<&CaptureContext>,
    ) {
        let scope_len = self.scope.len();
        let captures_len = self.captures.len();
        if let Some(context) = capture {
            self.captures.push(CaptureContext {
                lost: None,
                ..context.clone()
            });
        }
        if let Some(name) = binding {
            self.scope.push(Binding {
                name: Arc::from(name.name.as_str()),
                bound: Bound::Broken {
                    fields: Fields::default(),
                    lost: None,
                },
            });
        }
        if let Some(guard) = guard {
            self.lower_bool(guard, "a guard");
        }
        if let Some(step) = continuation.step.as_deref() {
            self.lower_step(step);
        }
        self.captures.truncate(captures_len);
        self.scope.truncate(scope_len);
    }

    /// A call of a subflow: its arguments and continuations are checked against its event's
    /// signature whatever its body is (a recursive subflow, or one whose body has errors, is
    /// still called correctly or not: those errors are the callers' own), and its body is
    /// inlined when it can be.
    fn lower_call(
        &mut self,
        invocation: &ast::Invocation,
        name: &str,
        def: &SubflowDef<'a>,
    ) -> Option<Step> {
        let recursive = self.recursive.iter().any(|r| r == name);
        let sig = def.sig.clone();
        let call_span = self.sp(invocation.span);
        let args = self.lower_args(&invocation.args, &sig, name, invocation.span);
        let releases = std::mem::take(&mut self.pending_releases);
        self.apply_releases(releases);
        let mut inputs = Vec::new();
        let mut body_scope = self.input_bindings();
        for (index, ((input, ty), argument)) in sig.inputs.iter().zip(args).enumerate() {
            let local = self.new_local(dotted(&[name, input]), *ty, LocalKind::SubflowInput);
            if let Some(phantom) = sig.input_phantom(index) {
                self.new_input_handle(local, &phantom.clone());
            }
            inputs.push((local, argument));
            body_scope.push(Binding {
                name: input.clone(),
                bound: Bound::Scalar(local, *ty),
            });
        }
        // The body sees only its inputs and the flow inputs, and no enclosing capture.
        let saved_scope = std::mem::replace(&mut self.scope, body_scope);
        let saved_captures = std::mem::take(&mut self.captures);
        // The body is a text of its own: its continuations attach within it.
        let saved_enclosing = std::mem::take(&mut self.enclosing);
        let saved_override = self.span_override;
        let saved_text = self.text;
        if def.is_from_library() && self.span_override.is_none() {
            self.span_override = Some(call_span);
        }
        self.text = def.text;
        self.silent += 1;
        self.inlining.push((Arc::from(name), call_span));
        let mut yielded_names = Yielded::default();
        yielded_branches(def.body, &mut yielded_names);
        let inlines = !recursive && !self.check_only && !matches!(def.body, ast::Step::Discard(_));
        let targets_len = self.yield_targets.len();
        if inlines && !yielded_names.is_empty() {
            self.yield_targets.push(YieldTarget {
                name: Arc::from(name),
                sig: sig.clone(),
                caller: Some(Caller {
                    continuations: invocation.continuations.as_slice().into(),
                    taking: TakingIndex::of(&invocation.continuations),
                    scope: saved_scope.clone(),
                    captures: saved_captures.clone(),
                    text: saved_text,
                    span_override: saved_override,
                    span: invocation.span,
                }),
                yielded: Vec::new(),
                yielded_set: Default::default(),
            });
        }
        let body = if recursive {
            None
        } else if self.check_only {
            Some(Step::Yield(ValueId(0)))
        } else if matches!(def.body, ast::Step::Discard(_)) {
            // `~g = _`: a void subflow that does nothing yields the void result (a subflow of an
            // event with branches cannot: E0209 when it is checked).
            let value = self.new_value(Arc::from(""), ValuePayload::Empty, def.span);
            Some(Step::Construct(Box::new(Construct {
                fields: Vec::new(),
                value,
                span: call_span,
            })))
        } else {
            self.lower_step(def.body)
        };
        self.yield_targets.truncate(targets_len);
        self.inlining.pop();
        self.silent -= 1;
        self.text = saved_text;
        self.span_override = saved_override;
        self.enclosing = saved_enclosing;
        self.captures = saved_captures;
        self.scope = saved_scope;

        let (results, infos, first_value) =
            self.branch_slots(&sig, LocalKind::SubflowResult, name, invocation.span);
        self.bind_payload_handles(&sig, &results, false, call_span);
        self.handles.repeating = yielded_names.names.iter().map(|n| Arc::from(*n)).collect();
        // The continuations of yielded branches run where the body yields (`lower_yield`); here
        // they are only checked, and in a silent copy (whose errors were reported) not even
        // that: lowering them at every level would double nested yielding calls per level.
        let kept: Vec<ast::Continuation>;
        let continuations = if self.silent > 0 && inlines && !yielded_names.is_empty() {
            kept = invocation
                .continuations
                .iter()
                .filter(|c| {
                    !matches!(&c.kind, ast::ContinuationKind::Branch { branch, .. }
                        if yielded_names.contains(branch.name.as_str()))
                })
                .cloned()
                .collect();
            kept.as_slice()
        } else {
            invocation.continuations.as_slice()
        };
        let mut arms = self.lower_arms(continuations, &infos, &[], name, invocation.span, None);
        strip_yielded_arms(&mut arms, &sig, &yielded_names);
        let body = body?;
        let mut values = Vec::new();
        step_values(&body, &mut values);
        let exits = values
            .into_iter()
            .filter_map(|v| self.exit_for(&sig, v, &results).ok())
            .collect();
        let name_index = match self.subflow_ids.get(name) {
            Some(&index) => index,
            None => {
                let named: Arc<str> = Arc::from(name);
                let index = self.subflow_names.len() as u32;
                self.subflow_names.push(named.clone());
                self.subflow_ids.insert(named, index);
                index
            }
        };
        Some(Step::Call(Box::new(SubflowCall {
            name: Arc::from(name),
            cost: def.mock.unwrap_or(1),
            mocked: def.mock.is_some(),
            name_index,
            inputs,
            body,
            exits,
            results,
            first_value,
            arms,
            span: call_span,
        })))
    }

    /// How a value the subflow body yields becomes a branch of the subflow's event.
    fn exit_for(
        &self,
        sig: &EventSig,
        value: ValueId,
        results: &BranchLocals,
    ) -> Result<Exit, String> {
        if sig.is_void() {
            return Ok(Exit {
                value,
                branch: 0,
                copies: Vec::new(),
            });
        }
        let desc = &self.values[value.0 as usize];
        let Some(branch) = self.branch_of(sig, &desc.branch) else {
            let names = listed(sig.branches.iter().map(|b| &*b.name));
            let what = if desc.branch.is_empty() {
                "the unnamed result of a void event".to_string()
            } else {
                format!("branch `{}`", desc.branch)
            };
            return Err(format!("subflow `{}` can end with {what}, which its event does not declare (its branches: {})", sig.name, names));
        };
        let result = |field: usize| {
            results
                .get(branch)
                .and_then(|r| r.get(field))
                .copied()
                .unwrap_or(LocalId(0))
        };
        let declared = &sig.branches[branch].payload;
        let ty = |local: LocalId| self.locals[local.0 as usize].ty;
        let copies = match (declared, &desc.payload) {
            (PayloadType::Empty, ValuePayload::Empty) => Some(Vec::new()),
            (PayloadType::Identity(t), ValuePayload::Identity(local)) if ty(*local) == *t => {
                Some(vec![(*local, result(0))])
            }
            (PayloadType::Struct(fields), ValuePayload::Struct(found))
                if fields.len() == found.len() =>
            {
                // Each declared field found by name (through an index for a wide payload: a
                // search per field was quadratic in a width the source chooses).
                let index = (found.len() > super::named::INDEXED)
                    .then(|| Positions::of(found.iter().map(|(n, _)| n)));
                fields
                    .iter()
                    .enumerate()
                    .map(|(k, (fname, fty))| {
                        let at = match &index {
                            Some(index) => index.position(fname),
                            None => found.iter().position(|(n, _)| n == fname),
                        };
                        at.map(|i| found[i].1)
                            .filter(|l| ty(*l) == *fty)
                            .map(|l| (l, result(k)))
                    })
                    .collect()
            }
            _ => None,
        };
        copies
            .map(|copies| Exit {
                value,
                branch: branch as u32,
                copies,
            })
            .ok_or_else(|| {
                let found = match &desc.payload {
                    ValuePayload::Empty => "no payload".to_string(),
                    ValuePayload::Identity(l) => ty(*l).to_string(),
                    ValuePayload::Struct(fields) => {
                        let shown: Vec<String> = fields
                            .iter()
                            .map(|(n, l)| format!("{n}: {}", ty(*l)))
                            .collect();
                        format!("{{ {} }}", shown.join(", "))
                    }
                };
                format!(
                    "branch `{}` of `{}` carries {declared}, but this path ends with {found}",
                    desc.branch, sig.name
                )
            })
    }

    fn single_arg<'b>(
        &mut self,
        invocation: &'b ast::Invocation,
        what: &str,
        names: &[&str],
    ) -> Option<&'b ast::ArgValue> {
        match invocation.args.as_slice() {
            [arg]
                if arg
                    .name
                    .as_ref()
                    .is_none_or(|n| names.contains(&n.name.as_str())) =>
            {
                Some(&arg.value)
            }
            _ => {
                self.error(
                    Code::E0205,
                    format!("`{}` takes one argument: {what}", invocation.path.text),
                    invocation.span,
                );
                None
            }
        }
    }

    fn lower_for(&mut self, invocation: &ast::Invocation) -> Option<Step> {
        // Without a range, the continuations are still checked (the loop variable is an int).
        let range = match self.single_arg(invocation, "a range such as for(0..10)", &["range"]) {
            Some(ast::ArgValue::Range(start, end)) => Some((start, end)),
            Some(_) => {
                self.error(
                    Code::E0204,
                    "`for` takes a range such as for(0..10)",
                    invocation.span,
                );
                None
            }
            None => None,
        };
        let (start, end) = match range {
            Some((start, end)) => (
                self.lower_typed(start, Type::Int, "a range bound"),
                self.lower_typed(end, Type::Int, "a range bound"),
            ),
            None => (None, None),
        };
        let index = self.new_local(Arc::from("for.each"), Type::Int, LocalKind::LoopVariable);
        let bound = self.new_local(Arc::from("for.end"), Type::Int, LocalKind::LoopVariable);
        let loop_index = self.loops.len() as u32;
        self.loops.push(LoopInfo {
            span: self.sp(invocation.span),
        });
        let first_value = self.new_value(
            Arc::from("each"),
            ValuePayload::Identity(index),
            invocation.span,
        );
        self.new_value(Arc::from("done"), ValuePayload::Empty, invocation.span);
        let infos = [
            BranchInfo {
                name: Arc::from("each"),
                bound: Bound::Scalar(index, Type::Int),
            },
            BranchInfo {
                name: Arc::from("done"),
                bound: Bound::Empty,
            },
        ];
        self.handles.repeating = vec![Arc::from("each")];
        let arms = self.lower_arms(
            &invocation.continuations,
            &infos,
            &["done"],
            "for",
            invocation.span,
            None,
        );
        Some(Step::For(Box::new(ForLoop {
            start: start?,
            end: end?,
            index,
            bound,
            loop_index,
            arms,
            first_value,
            span: self.sp(invocation.span),
        })))
    }

    fn condition(&mut self, invocation: &ast::Invocation) -> Option<Expr> {
        match self.single_arg(invocation, "a bool condition", &["cond", "condition"])? {
            ast::ArgValue::Expr(e) => self.lower_bool(e, "a condition"),
            _ => {
                self.error(
                    Code::E0204,
                    format!("`{}` takes a bool condition", invocation.path.text),
                    invocation.span,
                );
                None
            }
        }
    }

    fn empty_branches(&mut self, names: [&str; 2], span: Span) -> (ValueId, [BranchInfo; 2]) {
        let first = self.new_value(Arc::from(names[0]), ValuePayload::Empty, span);
        self.new_value(Arc::from(names[1]), ValuePayload::Empty, span);
        let infos = names.map(|name| BranchInfo {
            name: Arc::from(name),
            bound: Bound::Empty,
        });
        (first, infos)
    }

    fn lower_if(&mut self, invocation: &ast::Invocation) -> Option<Step> {
        let cond = self.condition(invocation);
        let (first_value, infos) = self.empty_branches(["then", "else"], invocation.span);
        let arms = self.lower_arms(
            &invocation.continuations,
            &infos,
            &["else"],
            "if",
            invocation.span,
            None,
        );
        Some(Step::If(Box::new(IfStep {
            cond: cond?,
            arms,
            first_value,
            span: self.sp(invocation.span),
        })))
    }

    fn lower_while(&mut self, invocation: &ast::Invocation) -> Option<Step> {
        let cond = self.condition(invocation);
        let loop_index = self.loops.len() as u32;
        self.loops.push(LoopInfo {
            span: self.sp(invocation.span),
        });
        let (first_value, infos) = self.empty_branches(["body", "done"], invocation.span);
        self.handles.repeating = vec![Arc::from("body")];
        let arms = self.lower_arms(
            &invocation.continuations,
            &infos,
            &["done"],
            "while",
            invocation.span,
            None,
        );
        Some(Step::While(Box::new(WhileLoop {
            cond: cond?,
            loop_index,
            arms,
            first_value,
            span: self.sp(invocation.span),
        })))
    }

    fn lower_capture(&mut self, invocation: &ast::Invocation) -> Option<Step> {
        // Without a struct literal the accumulator's fields are unknown: its continuations are
        // still checked, its payload and fields `Broken` (their uses are not errors again).
        let init = match self.single_arg(
            invocation,
            "a struct literal such as capture({ sum: 0 })",
            &["init", "expr"],
        ) {
            Some(ast::ArgValue::Struct(fields)) => Some(fields),
            Some(_) => {
                let at = invocation.args.first().map_or(invocation.span, |a| a.span);
                self.error(
                    Code::E0204,
                    "`capture` takes a struct literal such as capture({ sum: 0 })",
                    at,
                );
                None
            }
            None => None,
        };
        let mut fields = Named::default();
        let mut exprs = Vec::new();
        let mut ok = init.is_some();
        let mut lost: Named<Arc<str>> = Named::default();
        for field in init.into_iter().flatten() {
            if fields.contains(&field.name.name) || lost.contains(&field.name.name) {
                self.error(
                    Code::E0205,
                    format!("accumulator field `{}` is given twice", field.name.name),
                    field.name.span,
                );
                ok = false;
                continue;
            }
            let Some((expr, ty)) = self.lower_expr(&field.value) else {
                ok = false;
                lost.push(Arc::from(field.name.name.as_str()));
                continue;
            };
            let name: Arc<str> = Arc::from(field.name.name.as_str());
            let local = self.new_local(
                Arc::from(format!("acc.{name}")),
                ty,
                LocalKind::AccumulatorField,
            );
            fields.push((name, local, ty));
            exprs.push(expr);
        }
        let payload =
            ValuePayload::Struct(fields.iter().map(|(n, l, _)| (n.clone(), *l)).collect());
        let first_value = self.new_value(Arc::from("as"), payload.clone(), invocation.span);
        let captured = self.new_value(Arc::from("captured"), payload, invocation.span);
        let lost = init.is_some().then(|| Arc::new(lost));
        let fields = Arc::new(fields);
        let bound = if ok {
            Bound::Struct(fields.clone())
        } else {
            Bound::Broken {
                fields: fields.clone(),
                lost: lost.clone(),
            }
        };
        let infos = [
            BranchInfo {
                name: Arc::from("as"),
                bound: bound.clone(),
            },
            BranchInfo {
                name: Arc::from("captured"),
                bound,
            },
        ];
        let context = CaptureContext {
            fields: fields.clone(),
            value: captured,
            lost,
        };
        let arms = self.lower_arms(
            &invocation.continuations,
            &infos,
            &[],
            "capture",
            invocation.span,
            Some((0, context)),
        );
        ok.then(|| {
            Step::Capture(Box::new(CaptureStep {
                fields: fields.iter().map(|(_, l, _)| *l).collect(),
                init: exprs,
                arms,
                first_value,
                span: self.sp(invocation.span),
                yield_of: None,
            }))
        })
    }

    fn lower_update(&mut self, constructor: &ast::Constructor) -> Option<Step> {
        if !self.count_step(constructor.span) {
            return None;
        }
        let Some(context) = self.captures.last().cloned() else {
            self.error(Code::E0206, "`captured { ... }` updates a capture's accumulator and is only valid inside its `as` step", constructor.span);
            return None;
        };
        let inits = match &constructor.payload {
            ast::ConstructorPayload::Struct(fields) => fields.as_slice(),
            ast::ConstructorPayload::Empty => &[],
            ast::ConstructorPayload::Identity(e) => {
                self.error(
                    Code::E0204,
                    "`captured` takes named fields: captured { field: value }",
                    e.span,
                );
                return None;
            }
        };
        let mut assigns: Vec<(LocalId, Expr)> = Vec::new();
        // The fields assigned so far (a set: a source decides how many).
        let mut assigned = std::collections::HashSet::new();
        let mut ok = true;
        for init in inits {
            let Some((_, local, ty)) = context.fields.find(&init.name.name) else {
                ok = false;
                if Bound::may_have_lost(&context.lost, &init.name.name) {
                    // The field may be one whose initial value failed: only its value is checked.
                    self.lower_expr(&init.value);
                    continue;
                }
                let all = || {
                    context
                        .fields
                        .iter()
                        .map(|(n, _, _)| &**n)
                        .chain(context.lost.iter().flat_map(|l| l.iter()).map(|n| &**n))
                };
                let names = listed(all());
                let help = self.did_you_mean(&init.name.name, all());
                self.error_with_help(
                    Code::E0203,
                    format!(
                        "the accumulator has no field `{}` (its fields: {})",
                        init.name.name, names
                    ),
                    init.name.span,
                    help,
                );
                continue;
            };
            if !assigned.insert(*local) {
                self.error(
                    Code::E0205,
                    format!("field `{}` is assigned twice", init.name.name),
                    init.name.span,
                );
                ok = false;
                continue;
            }
            match self.lower_typed(
                &init.value,
                *ty,
                &format!("accumulator field `{}`", init.name.name),
            ) {
                Some(expr) => assigns.push((*local, expr)),
                None => ok = false,
            }
        }
        ok.then(|| {
            Step::Update(Box::new(CaptureUpdate {
                assigns,
                value: context.value,
                span: self.sp(constructor.span),
            }))
        })
    }

    /// `yield name payload` (SPEC 11): the payload is evaluated here, in the subflow's scope, into
    /// the branch's payload locals; then the caller's continuation for that branch runs, lowered
    /// here in the caller's scope (its bindings, its captures), its value discarded. In the IR it
    /// is a `capture` step whose fields are the payload and whose `as` arms are the caller's
    /// continuations: no step of its own, in either tier.
    fn lower_yield(&mut self, constructor: &ast::Constructor) -> Option<Step> {
        let Some(mut target) = self.yield_targets.pop() else {
            self.error(
                Code::E0209,
                "`yield` is only allowed in a subflow's body: it runs the caller's continuation of the subflow's branch (SPEC 11)",
                constructor.span,
            );
            // Its payload is still checked.
            self.lower_construct(constructor);
            return None;
        };
        let lowered = self.lower_yield_to(&mut target, constructor);
        self.yield_targets.push(target);
        lowered
    }

    fn lower_yield_to(
        &mut self,
        target: &mut YieldTarget<'a>,
        constructor: &ast::Constructor,
    ) -> Option<Step> {
        let sig = target.sig.clone();
        let name = target.name.clone();
        let wanted = constructor.name.name.as_str();
        self.index_sig(&sig);
        let Some(branch) = self.branch_of(&sig, wanted) else {
            let names = listed(sig.branches.iter().map(|b| &*b.name));
            let help = self.did_you_mean(wanted, sig.branches.iter().map(|b| &*b.name));
            self.error_with_help(
                Code::E0206,
                format!(
                    "subflow `{name}` has no branch `{wanted}` to yield (its branches: {})",
                    names
                ),
                constructor.name.span,
                help,
            );
            return None;
        };
        if target.yielded_set.insert(branch) {
            target.yielded.push((branch, constructor.span));
        }
        let Some(Step::Construct(construct)) = self.lower_construct(constructor) else {
            return None;
        };
        let declared = sig.branches[branch].payload.clone();
        let branch_name = sig.branches[branch].name.clone();
        let mut slots = BranchLocals::default();
        slots.end_branches(branch);
        let (bound, payload) = self.payload_locals(
            &declared,
            LocalKind::AccumulatorField,
            &name,
            &branch_name,
            &mut slots,
        );
        let Ok(exit) = self.exit_for(&sig, construct.value, &slots) else {
            self.error(
                Code::E0204,
                format!(
                    "`yield {wanted}` must carry {declared}, as branch `{wanted}` of `{name}` declares"
                ),
                constructor.span,
            );
            return None;
        };
        // The payload's expressions in source order, each into its payload local.
        let mut fields = Vec::with_capacity(exit.copies.len());
        let mut init = Vec::with_capacity(exit.copies.len());
        // Each temporary's payload local (by a map: a payload may have thousands of fields).
        let copied: HashMap<LocalId, LocalId> = exit.copies.iter().copied().collect();
        for (temp, expr) in construct.fields {
            if let Some(&to) = copied.get(&temp) {
                fields.push(to);
                init.push(expr);
            }
        }
        let first_value = self.new_value(branch_name.clone(), payload, constructor.span);
        self.new_value(
            Arc::from(format!("{YIELD_VALUE_PREFIX}{wanted}")),
            ValuePayload::Empty,
            constructor.span,
        );
        let mut arms = Arms::default();
        if let Some(caller) = &target.caller {
            let taking: Vec<ast::Continuation> = match &caller.taking {
                Some(index) => index
                    .taking(wanted)
                    .into_iter()
                    .map(|i| caller.continuations[i as usize].clone())
                    .collect(),
                None => caller
                    .continuations
                    .iter()
                    .filter(|c| match &c.kind {
                        ast::ContinuationKind::Branch { branch, .. } => *branch.name == *wanted,
                        ast::ContinuationKind::CatchAll => true,
                        // Pattern continuations belong to `match` (E0206 on a call).
                        ast::ContinuationKind::Pipe | ast::ContinuationKind::Patterns { .. } => {
                            false
                        }
                    })
                    .cloned()
                    .collect(),
            };
            if !taking.is_empty() {
                // The caller's continuation sees the caller's world: its scope and captures, its
                // text, the yields of the subflows enclosing the call (not this one).
                let saved_scope = std::mem::replace(&mut self.scope, caller.scope.clone());
                let saved_captures = std::mem::replace(&mut self.captures, caller.captures.clone());
                let saved_enclosing = std::mem::take(&mut self.enclosing);
                let saved_text = std::mem::replace(&mut self.text, caller.text);
                let saved_override =
                    std::mem::replace(&mut self.span_override, caller.span_override);
                let saved_context = self.event_context.replace(name.clone());
                self.silent += 1;
                let infos = [BranchInfo {
                    name: branch_name.clone(),
                    bound,
                }];
                arms = self.lower_arms(&taking, &infos, &[], &name, caller.span, None);
                self.silent -= 1;
                self.event_context = saved_context;
                self.span_override = saved_override;
                self.text = saved_text;
                self.enclosing = saved_enclosing;
                self.captures = saved_captures;
                self.scope = saved_scope;
                if !arms.arms.is_empty() {
                    // The capture's second branch (`captured`) has no arm: it yields the value.
                    arms.by_branch.push(Vec::new());
                    arms.unguarded.push(None);
                }
            }
        }
        Some(Step::Capture(Box::new(CaptureStep {
            fields,
            init,
            arms,
            first_value,
            span: self.sp(constructor.span),
            yield_of: Some(name),
        })))
    }

    fn lower_construct(&mut self, constructor: &ast::Constructor) -> Option<Step> {
        if !self.count_step(constructor.span) {
            return None;
        }
        let name: Arc<str> = Arc::from(constructor.name.name.as_str());
        let mut fields = Vec::new();
        let payload = match &constructor.payload {
            ast::ConstructorPayload::Empty => ValuePayload::Empty,
            ast::ConstructorPayload::Identity(e) => {
                let (expr, ty) = self.lower_expr(e)?;
                let local = self.new_local(name.clone(), ty, LocalKind::Temporary);
                self.copy_handle(&expr, local);
                fields.push((local, expr));
                ValuePayload::Identity(local)
            }
            ast::ConstructorPayload::Struct(inits) => {
                let mut described = Vec::new();
                // The names given so far (a set: a source decides how many).
                let mut given = std::collections::HashSet::new();
                let mut ok = true;
                for init in inits {
                    let field: Arc<str> = Arc::from(init.name.name.as_str());
                    if !given.insert(field.clone()) {
                        self.error(
                            Code::E0205,
                            format!("field `{field}` is given twice"),
                            init.name.span,
                        );
                        ok = false;
                        continue;
                    }
                    let Some((expr, ty)) = self.lower_expr(&init.value) else {
                        ok = false;
                        continue;
                    };
                    let local = self.new_local(dotted(&[&name, &field]), ty, LocalKind::Temporary);
                    self.copy_handle(&expr, local);
                    fields.push((local, expr));
                    described.push((field, local));
                }
                if !ok {
                    return None;
                }
                ValuePayload::Struct(described)
            }
        };
        let value = self.new_value(name, payload, constructor.span);
        Some(Step::Construct(Box::new(Construct {
            fields,
            value,
            span: self.sp(constructor.span),
        })))
    }
}

/// The branch names of the `yield` steps of a subflow body (its own: another subflow's are in
/// that subflow's body), in source order.
fn yielded_branches<'s>(step: &'s ast::Step, out: &mut Yielded<'s>) {
    match step {
        ast::Step::Yield(c) => {
            if out.index.insert(&c.name.name) {
                out.names.push(&c.name.name);
            }
        }
        ast::Step::Invoke(invocation) => {
            for continuation in &invocation.continuations {
                if let Some(step) = &continuation.step {
                    yielded_branches(step, out);
                }
            }
        }
        ast::Step::Discard(_) | ast::Step::Construct(_) => {}
    }
}

/// The branch names a subflow body yields, in source order, with a set of them (a body may
/// yield thousands of branches, and each call looks each of its continuations up).
#[derive(Default)]
struct Yielded<'s> {
    names: Vec<&'s str>,
    index: std::collections::HashSet<&'s str>,
}

impl Yielded<'_> {
    fn contains(&self, name: &str) -> bool {
        self.index.contains(name)
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Detaches the arms of a subflow call's `yielded` branches (SPEC 11): they were checked with
/// the call, but run where the body yields (`lower_yield`), never when the call ends. The arms
/// stay (their invocation sites are numbered), reachable from no branch.
fn strip_yielded_arms(arms: &mut Arms, sig: &EventSig, yielded: &Yielded) {
    if arms.arms.is_empty() || yielded.is_empty() {
        return;
    }
    for (b, branch) in sig.branches.iter().enumerate() {
        if yielded.contains(&branch.name) && b < arms.by_branch.len() {
            arms.by_branch[b].clear();
            arms.unguarded[b] = None;
        }
    }
}

/// Every value `step` can yield (values of loop bodies and `as` steps are discarded, not yielded),
/// appended to `out`, which is then sorted and without repeats (a subflow's exits are in this
/// order: both tiers find a value's exit by binary search).
pub fn step_values(step: &Step, out: &mut Vec<ValueId>) {
    collect_values(step, out);
    // Once, at the end: sorting at every level of the walk was quadratic in the values (a
    // subflow whose `match` ends in 18,000 branches: 2 G instructions).
    out.sort_unstable_by_key(|v| v.0);
    out.dedup();
}

fn collect_values(step: &Step, out: &mut Vec<ValueId>) {
    fn arms_values(
        arms: &Arms,
        first: ValueId,
        yielding: &[usize],
        exempt_default: &[usize],
        out: &mut Vec<ValueId>,
    ) {
        // A catch-all is an arm of several branches: its step is walked once (once per branch,
        // nested catch-alls made this exponential in their depth).
        let mut walked = smallvec::SmallVec::<[bool; 8]>::from_elem(false, arms.arms.len());
        for &branch in yielding {
            let value = ValueId(first.0 + branch as u32);
            if arms.arms.is_empty()
                || (arms.by_branch[branch].is_empty() && exempt_default.contains(&branch))
            {
                out.push(value);
                continue;
            }
            for &arm in &arms.by_branch[branch] {
                match &arms.arms[arm as usize].step {
                    Some(_) if walked[arm as usize] => {}
                    Some(step) => {
                        walked[arm as usize] = true;
                        collect_values(step, out)
                    }
                    None => out.push(value),
                }
            }
        }
    }
    match step {
        Step::Invoke(s) => arms_values(
            &s.arms,
            s.first_value,
            &(0..s.payloads.len()).collect::<Vec<_>>(),
            &[],
            out,
        ),
        Step::Call(s) => arms_values(
            &s.arms,
            s.first_value,
            &(0..s.results.len()).collect::<Vec<_>>(),
            &[],
            out,
        ),
        Step::For(s) => arms_values(&s.arms, s.first_value, &[1], &[1], out),
        Step::If(s) => arms_values(&s.arms, s.first_value, &[0, 1], &[1], out),
        Step::While(s) => arms_values(&s.arms, s.first_value, &[1], &[1], out),
        Step::Capture(s) => arms_values(&s.arms, s.first_value, &[1], &[], out),
        Step::Update(s) => out.push(s.value),
        Step::Construct(s) => out.push(s.value),
        Step::Match(s) => {
            for arm in &s.arms {
                match &arm.arm.step {
                    Some(step) => collect_values(step, out),
                    None => out.push(s.matched),
                }
            }
        }
        Step::Yield(v) => out.push(*v),
    }
}

/// `parts` joined with dots, as a local's name (what `format!` would give, without its machinery).
fn dotted(parts: &[&str]) -> Arc<str> {
    // Joined on the stack (short names) and copied once into the `Arc`: one allocation.
    let mut name: smallvec::SmallVec<[u8; 64]> = smallvec::SmallVec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            name.push(b'.');
        }
        name.extend_from_slice(part.as_bytes());
    }
    Arc::from(std::str::from_utf8(&name).expect("joined UTF-8 is UTF-8"))
}
