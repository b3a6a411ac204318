//! The typed IR: what a checked source means, with every name, type, event and branch resolved.
//!
//! Both tiers read only this and the [`crate::layout::Layout`], never the syntax tree. Subflows are
//! inlined at their call sites (recursion is a check error), so a program is one tree of steps
//! over one set of locals. A local is a binding, loop variable, accumulator field, payload field,
//! input or temporary; the layout gives each an offset in the flow state.
//!
//! Every step yields a value: a [`ValueId`] naming a static [`ValueDesc`] (a branch name and the
//! locals that hold its payload). Nothing about values is dynamic except which one was taken.

pub(crate) mod codec;
pub mod pattern;
pub mod text;
pub(crate) mod verify;

use crate::span::Span;
use crate::types::{EventSig, Type};
use smallvec::SmallVec;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ValueId(pub u32);

/// Index of a host event in [`Program::events`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventUse(pub u32);

/// Index of a string buffer owned by the run state (for strings made at run time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalKind {
    /// A flow input supplied by the caller.
    FlowInput,
    /// A subflow input at one inlined call site.
    SubflowInput,
    /// A field of a host event's result payload.
    Payload,
    /// A field of a subflow call's result.
    SubflowResult,
    LoopVariable,
    AccumulatorField,
    /// A constructor's field, evaluated before the value is yielded.
    Temporary,
}

/// A named, typed storage place in the flow state.
#[derive(Clone, Debug)]
pub struct LocalDecl {
    pub name: LocalName,
    pub ty: Type,
    pub kind: LocalKind,
    /// Strings written here at run time are copied into a buffer of the run state (host payloads,
    /// accumulator fields, flow inputs); other `str` locals only point at strings owned elsewhere.
    pub owns_buffer: bool,
}

impl LocalDecl {
    /// Whether a `str` local of this kind holds a copy of its text in a buffer of its own (see
    /// `owns_buffer`): everything but loop variables (never `str`) and temporaries, whose text
    /// is read before anything can rewrite what they point into.
    pub fn copies_text(kind: LocalKind) -> bool {
        matches!(
            kind,
            LocalKind::FlowInput
                | LocalKind::Payload
                | LocalKind::AccumulatorField
                | LocalKind::SubflowInput
                | LocalKind::SubflowResult
        )
    }
}

/// A local's name. A payload local is named `{event}.{branch}` (and `.{field}`) from parts the
/// program and the event's signature hold anyway: joined only when shown.
#[derive(Clone)]
pub enum LocalName {
    Plain(Arc<str>),
    Payload {
        prefix: Arc<str>,
        branch: Arc<str>,
        field: Option<Arc<str>>,
    },
}

impl From<Arc<str>> for LocalName {
    fn from(name: Arc<str>) -> LocalName {
        LocalName::Plain(name)
    }
}

impl std::fmt::Display for LocalName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalName::Plain(name) => f.write_str(name),
            LocalName::Payload {
                prefix,
                branch,
                field,
            } => {
                write!(f, "{prefix}.{branch}")?;
                match field {
                    Some(field) => write!(f, ".{field}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Shown as the joined string.
impl std::fmt::Debug for LocalName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.to_string(), f)
    }
}

/// A compiled source: top-level flows in order, over one set of locals.
#[derive(Debug)]
pub struct Program {
    pub flows: Vec<Step>,
    pub locals: Vec<LocalDecl>,
    pub values: Vec<ValueDesc>,
    pub events: Vec<EventRef>,
    /// Flow inputs in the order the caller declared them.
    pub inputs: Vec<InputDecl>,
    /// Buffers for `int`/`float`/`bool` arguments formatted into `str` inputs, one per site.
    pub conversion_buffers: u32,
    /// `for` and `while` loops, numbered in order.
    pub loops: Vec<LoopInfo>,
    /// Steps after inlining, for statistics and limits.
    pub step_count: usize,
    /// Host invocations (see [`Invoke::site`]).
    pub invoke_sites: u32,
    /// Names of the subflows called, for `last_event` (see [`SubflowCall::name_index`]).
    pub subflow_names: Vec<Arc<str>>,
    /// The obligation states (SPEC 12) the program's host events can create, with the event
    /// that discharges each when a run ends.
    pub obligation_states: Vec<ObligationState>,
    /// What the tiers trace (SPEC 13): set from the compile options, after the check. With
    /// [`crate::TraceLevel::Off`] neither tier has any trace code for the program.
    pub trace: crate::host::TraceLevel,
}

/// An obligation state a program can create and the host event (registry index and name) the
/// scope allows to discharge it: `None` only in a program with check errors (E0212).
#[derive(Clone, Debug)]
pub struct ObligationState {
    pub name: Arc<str>,
    pub discharge: Option<(usize, Arc<str>)>,
}

/// `last_event` as both tiers record it: 0 for none, `1 + i` for host event `i` of
/// [`Program::events`], [`LAST_EVENT_SUBFLOW`]` | k` for subflow name `k`.
pub const LAST_EVENT_SUBFLOW: u32 = 0x8000_0000;

impl Program {
    /// The name behind a `last_event` code.
    pub fn last_event_name(&self, code: u32) -> Option<Arc<str>> {
        if code == 0 {
            None
        } else if code & LAST_EVENT_SUBFLOW != 0 {
            self.subflow_names
                .get((code & !LAST_EVENT_SUBFLOW) as usize)
                .cloned()
        } else {
            self.events.get(code as usize - 1).map(|e| e.name.clone())
        }
    }
}

#[derive(Clone, Debug)]
pub struct InputDecl {
    pub name: Arc<str>,
    pub ty: Type,
    pub local: LocalId,
}

#[derive(Clone, Debug)]
pub struct LoopInfo {
    pub span: Span,
}

/// A host event this program dispatches, with its cost in the scope it was checked against.
#[derive(Clone, Debug)]
pub struct EventRef {
    /// Index in the registry.
    pub host: usize,
    /// The name the flow used (an alias if the scope aliased it).
    pub name: Arc<str>,
    pub cost: u64,
    pub sig: Arc<EventSig>,
}

#[derive(Clone, Debug)]
pub struct ValueDesc {
    pub branch: Arc<str>,
    pub payload: ValuePayload,
}

#[derive(Clone, Debug)]
pub enum ValuePayload {
    Empty,
    Identity(LocalId),
    Struct(Vec<(Arc<str>, LocalId)>),
}

impl ValuePayload {
    pub fn locals(&self) -> Vec<LocalId> {
        match self {
            ValuePayload::Empty => Vec::new(),
            ValuePayload::Identity(local) => vec![*local],
            ValuePayload::Struct(fields) => fields.iter().map(|(_, l)| *l).collect(),
        }
    }
}

/// How the checker names the value of a `yield` step (SPEC 11), `yield {branch}`: not a branch
/// of any event. A `yield` is a [`CaptureStep`] whose fields are the payload and whose `as` arms
/// are the caller's continuations; its `captured` value has this name.
pub const YIELD_VALUE_PREFIX: &str = "yield ";

#[derive(Debug)]
pub enum Step {
    Invoke(Box<Invoke>),
    Call(Box<SubflowCall>),
    For(Box<ForLoop>),
    If(Box<IfStep>),
    While(Box<WhileLoop>),
    Capture(Box<CaptureStep>),
    Update(Box<CaptureUpdate>),
    Construct(Box<Construct>),
    Match(Box<MatchStep>),
    /// A step that yields a value without doing anything: `_`, or a continuation with no step.
    Yield(ValueId),
}

/// The continuations of an invocation, grouped by the branch they can take.
#[derive(Debug, Default)]
pub struct Arms {
    pub arms: Vec<Arm>,
    /// For each branch of the event: indices into `arms`, in the order they are tried
    /// (source order, catch-all last). Empty when `arms` is: readers check `arms` first.
    pub by_branch: Vec<Vec<u32>>,
    /// For each branch: the arm taken without trying guards, when the first candidate has none.
    /// Empty when `arms` is.
    pub unguarded: Vec<Option<u32>>,
}

#[derive(Debug)]
pub struct Arm {
    pub guard: Option<Expr>,
    /// What runs; `None` yields the invocation's result for the taken branch.
    pub step: Option<Step>,
    pub span: Span,
}

/// How a host event receives one argument.
#[derive(Debug)]
pub struct Argument {
    pub expr: Expr,
    /// Set when a number or bool is passed to a `str` input: it is formatted into this buffer.
    pub format_into: Option<BufferId>,
}

#[derive(Debug)]
pub enum Arguments {
    /// One per declared input, in declared order.
    Inputs(Vec<Argument>),
    /// The parts of a `std.io:print.ln` template.
    Template(Vec<TemplatePart>),
}

#[derive(Debug)]
pub enum TemplatePart {
    Text(Box<str>),
    Hole(Expr),
}

/// A host event dispatch and the selection of its continuation.
#[derive(Debug)]
pub struct Invoke {
    pub event: EventUse,
    /// Numbers the invocations of a program, for per-site tables such as the reply plans.
    pub site: u32,
    pub args: Arguments,
    /// Where each branch's payload lands (host payloads are copied into these locals).
    pub payloads: BranchLocals,
    /// The value of branch `b` is `ValueId(first_value.0 + b)`.
    pub first_value: ValueId,
    pub arms: Arms,
    pub span: Span,
}

/// An inlined subflow: inputs are evaluated, the body runs, its value is mapped to one of the
/// subflow event's branches (whose payload is copied into `results`), then a continuation runs.
#[derive(Debug)]
pub struct SubflowCall {
    /// The subflow's name; for a mock, the host event's name it replaces.
    pub name: Arc<str>,
    /// Fuel the call charges: 1 for a subflow (SPEC 5), the replaced event's cost in the scope
    /// for a mock (SPEC 13).
    pub cost: u64,
    /// Whether this is a mock of a host event (SPEC 13): its body is the mock's Koru
    /// implementation, inlined in place of the host dispatch. Its trace lines say `(mock)`.
    pub mocked: bool,
    /// Index into [`Program::subflow_names`].
    pub name_index: u32,
    pub inputs: Vec<(LocalId, Argument)>,
    pub body: Step,
    /// For every value the body can yield: the subflow branch it is and the copies to make.
    pub exits: Vec<Exit>,
    pub results: BranchLocals,
    pub first_value: ValueId,
    pub arms: Arms,
    pub span: Span,
}

/// The payload locals of each branch of an event, flat: events with a few payload fields need
/// no allocation.
#[derive(Clone, Debug, Default)]
pub struct BranchLocals {
    locals: SmallVec<[LocalId; 4]>,
    /// Where each branch's locals end in `locals`.
    ends: SmallVec<[u32; 4]>,
}

impl BranchLocals {
    /// Adds a local to the branch being built.
    pub fn push(&mut self, local: LocalId) {
        self.locals.push(local);
    }

    /// Ends the branch being built (its locals are those pushed since the previous end).
    pub fn end_branch(&mut self) {
        self.ends.push(self.locals.len() as u32);
    }

    /// Ends `n` branches with no locals.
    pub fn end_branches(&mut self, n: usize) {
        let end = self.locals.len() as u32;
        self.ends.resize(self.ends.len() + n, end);
    }

    /// The number of branches.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The locals of branch `b`.
    pub fn get(&self, b: usize) -> Option<&[LocalId]> {
        let end = *self.ends.get(b)? as usize;
        let start = if b == 0 { 0 } else { self.ends[b - 1] as usize };
        Some(&self.locals[start..end])
    }

    /// The locals of each branch, in branch order.
    pub fn iter(&self) -> impl Iterator<Item = &[LocalId]> {
        (0..self.len()).map(|b| &self[b])
    }

    /// Every branch's locals, in branch order.
    pub fn all(&self) -> &[LocalId] {
        &self.locals
    }
}

impl std::ops::Index<usize> for BranchLocals {
    type Output = [LocalId];

    fn index(&self, b: usize) -> &[LocalId] {
        self.get(b).expect("a branch of the event")
    }
}

#[derive(Debug)]
pub struct Exit {
    pub value: ValueId,
    pub branch: u32,
    /// `(from, to)`: body locals to result locals.
    pub copies: Vec<(LocalId, LocalId)>,
}

/// The exit of `value` and its index in `exits`, which are sorted by value with no repeats (as
/// lowering makes them, in the order of `sema::step_values`, and the verifier checks): found by
/// binary search, where a scan per path that ends the body was quadratic in its ends.
pub fn exit_of(exits: &[Exit], value: ValueId) -> Option<(usize, &Exit)> {
    exits
        .binary_search_by_key(&value.0, |e| e.value.0)
        .ok()
        .map(|i| (i, &exits[i]))
}

#[derive(Debug)]
pub struct ForLoop {
    pub start: Expr,
    pub end: Expr,
    pub index: LocalId,
    /// Holds the evaluated `end` while the loop runs, so that a run can move to native code at
    /// the loop head (on-stack replacement) with everything the loop needs in the flow state.
    pub bound: LocalId,
    pub loop_index: u32,
    /// Arms of `each` (branch 0) and `done` (branch 1).
    pub arms: Arms,
    /// Values: `each` with the index, then `done`.
    pub first_value: ValueId,
    pub span: Span,
}

#[derive(Debug)]
pub struct IfStep {
    pub cond: Expr,
    /// Arms of `then` (branch 0) and `else` (branch 1).
    pub arms: Arms,
    pub first_value: ValueId,
    pub span: Span,
}

#[derive(Debug)]
pub struct WhileLoop {
    pub cond: Expr,
    pub loop_index: u32,
    /// Arms of `body` (branch 0) and `done` (branch 1).
    pub arms: Arms,
    pub first_value: ValueId,
    pub span: Span,
}

#[derive(Debug)]
pub struct CaptureStep {
    pub fields: Vec<LocalId>,
    pub init: Vec<Expr>,
    /// Arms of `as` (branch 0) and `captured` (branch 1); both payloads are the accumulator.
    pub arms: Arms,
    pub first_value: ValueId,
    pub span: Span,
    /// Set when this is a `yield` (see [`YIELD_VALUE_PREFIX`]): the subflow it yields from, as
    /// its trace line names it.
    pub yield_of: Option<Arc<str>>,
}

/// `match(expr)` (SPEC 10): the argument is evaluated once into `value`; the first arm (in
/// source order, catch-alls last) one of whose patterns matches and whose guard holds is taken.
#[derive(Debug)]
pub struct MatchStep {
    pub scrutinee: Expr,
    /// The matched value: what a binding names and the payload of `matched`. A `str` one with a
    /// buffer (see [`LocalDecl::owns_buffer`]) takes a copy of the text, because the arms can
    /// rewrite the accumulator field the argument points into.
    pub value: LocalId,
    /// Pattern arms in source order, then the catch-alls (an arm without patterns).
    pub arms: Vec<MatchArm>,
    /// `matched` with `value`: what an arm without a step (or with `_`) yields.
    pub matched: ValueId,
    pub span: Span,
}

#[derive(Debug)]
pub struct MatchArm {
    /// Empty for a catch-all, which takes every value.
    pub patterns: Vec<Pattern>,
    pub arm: Arm,
}

/// A checked pattern, of the argument's type.
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    /// The closed interval `lo..=hi` (`lo <= hi`); a literal is `lo == hi`.
    Int {
        lo: i64,
        hi: i64,
    },
    Str(Arc<str>),
    Bool(bool),
}

impl Pattern {
    pub fn matches_int(&self, v: i64) -> bool {
        matches!(self, Pattern::Int { lo, hi } if *lo <= v && v <= *hi)
    }
}

/// `captured { f: expr, ... }`: all expressions are evaluated, then assigned together.
#[derive(Debug)]
pub struct CaptureUpdate {
    pub assigns: Vec<(LocalId, Expr)>,
    pub value: ValueId,
    pub span: Span,
}

#[derive(Debug)]
pub struct Construct {
    /// Temporaries of the payload and their expressions.
    pub fields: Vec<(LocalId, Expr)>,
    pub value: ValueId,
    pub span: Span,
}

/// Where an expression can fail at run time: its span, and the event whose argument, guard or
/// continuation it is (a builtin's name for `for`, `if`, ...), as both tiers report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorSite {
    pub span: Span,
    pub event: Option<Arc<str>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A typed expression. Operators are already specialised by type.
#[derive(Debug)]
pub enum Expr {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A literal, shared with the syntax tree.
    Str(Arc<str>),
    Local(LocalId, Type),
    /// Checked: `Overflow` on `-i64::MIN`.
    NegInt(Box<Expr>, ErrorSite),
    NegFloat(Box<Expr>),
    Not(Box<Expr>),
    /// Checked arithmetic: `Overflow`, `DivisionByZero`; `/` truncates, `%` is floored.
    IntArith(IntOp, Box<Expr>, Box<Expr>, ErrorSite),
    FloatArith(FloatOp, Box<Expr>, Box<Expr>),
    IntCmp(CmpOp, Box<Expr>, Box<Expr>),
    FloatCmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `==` / `!=` only.
    BoolCmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `==` / `!=` only.
    StrCmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    IntToFloat(Box<Expr>),
    /// Truncates toward zero; NaN or out of range is `Overflow`.
    FloatToInt(Box<Expr>, ErrorSite),
    /// `if (c) a else b`
    Select(Box<Expr>, Box<Expr>, Box<Expr>, Type),
}

impl Expr {
    /// The operands of this node (none for literals and locals), in order.
    pub fn operands(&self) -> impl Iterator<Item = &Expr> {
        let (a, b, c): (Option<&Expr>, Option<&Expr>, Option<&Expr>) = match self {
            Expr::Int(_) | Expr::Float(_) | Expr::Bool(_) | Expr::Str(_) | Expr::Local(..) => {
                (None, None, None)
            }
            Expr::NegInt(a, _)
            | Expr::NegFloat(a)
            | Expr::Not(a)
            | Expr::IntToFloat(a)
            | Expr::FloatToInt(a, _) => (Some(a), None, None),
            Expr::IntArith(_, a, b, _)
            | Expr::FloatArith(_, a, b)
            | Expr::IntCmp(_, a, b)
            | Expr::FloatCmp(_, a, b)
            | Expr::BoolCmp(_, a, b)
            | Expr::StrCmp(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b) => (Some(a), Some(b), None),
            Expr::Select(c, a, b, _) => (Some(c), Some(a), Some(b)),
        };
        a.into_iter().chain(b).chain(c)
    }

    /// Whether every value this `str` expression can take is a literal: assigned to a local
    /// with a buffer (an accumulator field, a subflow's input or result), it needs no copy in
    /// either tier, because the field points at the program's text, which outlives the run.
    pub fn literal_leaves(&self) -> bool {
        match self {
            Expr::Str(_) => true,
            Expr::Select(_, a, b, _) => a.literal_leaves() && b.literal_leaves(),
            _ => false,
        }
    }

    /// Calls `f` with every local the expression reads.
    pub fn visit_locals(&self, f: &mut impl FnMut(LocalId)) {
        match self {
            Expr::Local(local, _) => f(*local),
            e => e.operands().for_each(|o| o.visit_locals(f)),
        }
    }

    /// The expression's type (fixed by the checker).
    pub fn ty(&self) -> Type {
        match self {
            Expr::Int(_) | Expr::NegInt(..) | Expr::IntArith(..) | Expr::FloatToInt(..) => {
                Type::Int
            }
            Expr::Float(_) | Expr::NegFloat(_) | Expr::FloatArith(..) | Expr::IntToFloat(_) => {
                Type::Float
            }
            Expr::Bool(_)
            | Expr::Not(_)
            | Expr::IntCmp(..)
            | Expr::FloatCmp(..)
            | Expr::BoolCmp(..)
            | Expr::StrCmp(..)
            | Expr::And(..)
            | Expr::Or(..) => Type::Bool,
            Expr::Str(_) => Type::Str,
            Expr::Local(_, ty) | Expr::Select(_, _, _, ty) => *ty,
        }
    }
}

/// Whether a subflow body runs its callers' continuations (a `yield`, SPEC 11: a `capture` step
/// whose second value is named [`YIELD_VALUE_PREFIX`]` ...`). Such a body reads and writes its
/// caller's locals, so the JIT compiles it in its caller's function, not as a region of its own, and the
/// verifier lets it read them.
pub(crate) fn yields(program: &Program, s: &Step) -> bool {
    let arms = |a: &Arms| {
        a.arms
            .iter()
            .any(|arm| arm.step.as_ref().is_some_and(|s| yields(program, s)))
    };
    match s {
        Step::Capture(c) => {
            program
                .values
                .get(c.first_value.0 as usize + 1)
                .is_some_and(|v| v.branch.starts_with(YIELD_VALUE_PREFIX))
                || arms(&c.arms)
        }
        Step::Invoke(s) => arms(&s.arms),
        Step::Call(s) => yields(program, &s.body) || arms(&s.arms),
        Step::For(s) => arms(&s.arms),
        Step::If(s) => arms(&s.arms),
        Step::While(s) => arms(&s.arms),
        Step::Match(m) => m
            .arms
            .iter()
            .any(|a| a.arm.step.as_ref().is_some_and(|s| yields(program, s))),
        Step::Update(_) | Step::Construct(_) | Step::Yield(_) => false,
    }
}

/// Integer semantics shared by both tiers (SPEC 3): checked, `/` truncating, `%` floored.
pub mod arith {
    use super::IntOp;
    use crate::outcome::ErrorCode;

    pub fn int(op: IntOp, a: i64, b: i64) -> Result<i64, ErrorCode> {
        match op {
            IntOp::Add => a.checked_add(b).ok_or(ErrorCode::Overflow),
            IntOp::Sub => a.checked_sub(b).ok_or(ErrorCode::Overflow),
            IntOp::Mul => a.checked_mul(b).ok_or(ErrorCode::Overflow),
            IntOp::Div => {
                if b == 0 {
                    Err(ErrorCode::DivisionByZero)
                } else {
                    a.checked_div(b).ok_or(ErrorCode::Overflow)
                }
            }
            IntOp::Rem => {
                if b == 0 {
                    return Err(ErrorCode::DivisionByZero);
                }
                // `i64::MIN % -1` is 0 (no overflow: the remainder exists).
                let r = a.wrapping_rem(b);
                Ok(if r != 0 && ((r < 0) != (b < 0)) {
                    r + b
                } else {
                    r
                })
            }
        }
    }

    /// Floored float remainder (sign of the divisor), like Python's `%`.
    pub fn float_rem(a: f64, b: f64) -> f64 {
        let r = a % b;
        if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
            r + b
        } else {
            r
        }
    }

    /// Float to int, truncating toward zero; NaN (outside every range) and out-of-range values
    /// are `Overflow`.
    pub fn float_to_int(v: f64) -> Result<i64, ErrorCode> {
        if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) {
            Err(ErrorCode::Overflow)
        } else {
            Ok(v as i64)
        }
    }

    pub fn describe(code: ErrorCode, op: &str) -> String {
        match code {
            ErrorCode::DivisionByZero => format!("division by zero in `{op}`"),
            _ => format!("integer overflow in `{op}`"),
        }
    }
}

/// Bytes of heap a compiled program holds, counted from the capacities of its containers (what
/// the compiled-flow cache bounds). Names shared with the registry (`Arc<str>` of events,
/// branches and fields) count as pointers; literals count whole.
pub(crate) mod footprint {
    use super::*;
    use std::mem::size_of;

    fn vec<T>(v: &Vec<T>) -> usize {
        v.capacity() * size_of::<T>()
    }

    fn small<A: smallvec::Array>(v: &SmallVec<A>) -> usize {
        if v.spilled() {
            v.capacity() * size_of::<A::Item>()
        } else {
            0
        }
    }

    pub fn program(p: &Program) -> usize {
        vec(&p.flows)
            + p.flows.iter().map(step).sum::<usize>()
            + vec(&p.locals)
            + vec(&p.values)
            + p.values
                .iter()
                .map(|v| match &v.payload {
                    ValuePayload::Struct(fields) => vec(fields),
                    _ => 0,
                })
                .sum::<usize>()
            + vec(&p.events)
            + vec(&p.inputs)
            + vec(&p.loops)
            + vec(&p.subflow_names)
    }

    fn boxed<T>(_: &T) -> usize {
        size_of::<T>()
    }

    fn step(s: &Step) -> usize {
        match s {
            Step::Invoke(s) => {
                let args = match &s.args {
                    Arguments::Inputs(args) => {
                        vec(args) + args.iter().map(|a| expr(&a.expr)).sum::<usize>()
                    }
                    Arguments::Template(parts) => {
                        vec(parts)
                            + parts
                                .iter()
                                .map(|p| match p {
                                    TemplatePart::Text(t) => t.len(),
                                    TemplatePart::Hole(e) => expr(e),
                                })
                                .sum::<usize>()
                    }
                };
                boxed(&**s) + args + branch_locals(&s.payloads) + arms(&s.arms)
            }
            Step::Call(s) => {
                boxed(&**s)
                    + vec(&s.inputs)
                    + s.inputs.iter().map(|(_, a)| expr(&a.expr)).sum::<usize>()
                    + step(&s.body)
                    + vec(&s.exits)
                    + s.exits.iter().map(|e| vec(&e.copies)).sum::<usize>()
                    + branch_locals(&s.results)
                    + arms(&s.arms)
            }
            Step::For(s) => boxed(&**s) + expr(&s.start) + expr(&s.end) + arms(&s.arms),
            Step::If(s) => boxed(&**s) + expr(&s.cond) + arms(&s.arms),
            Step::While(s) => boxed(&**s) + expr(&s.cond) + arms(&s.arms),
            Step::Capture(s) => {
                boxed(&**s)
                    + vec(&s.fields)
                    + vec(&s.init)
                    + s.init.iter().map(expr).sum::<usize>()
                    + arms(&s.arms)
            }
            Step::Update(s) => {
                boxed(&**s)
                    + vec(&s.assigns)
                    + s.assigns.iter().map(|(_, e)| expr(e)).sum::<usize>()
            }
            Step::Construct(s) => {
                boxed(&**s) + vec(&s.fields) + s.fields.iter().map(|(_, e)| expr(e)).sum::<usize>()
            }
            Step::Match(s) => {
                boxed(&**s)
                    + expr(&s.scrutinee)
                    + vec(&s.arms)
                    + s.arms
                        .iter()
                        .map(|a| {
                            vec(&a.patterns)
                                + a.patterns
                                    .iter()
                                    .map(|p| match p {
                                        Pattern::Str(text) => text.len(),
                                        _ => 0,
                                    })
                                    .sum::<usize>()
                                + a.arm.guard.as_ref().map_or(0, expr)
                                + a.arm.step.as_ref().map_or(0, step)
                        })
                        .sum::<usize>()
            }
            Step::Yield(_) => 0,
        }
    }

    fn branch_locals(b: &BranchLocals) -> usize {
        small(&b.locals) + small(&b.ends)
    }

    fn arms(a: &Arms) -> usize {
        vec(&a.arms)
            + a.arms
                .iter()
                .map(|arm| arm.guard.as_ref().map_or(0, expr) + arm.step.as_ref().map_or(0, step))
                .sum::<usize>()
            + vec(&a.by_branch)
            + a.by_branch.iter().map(vec).sum::<usize>()
            + vec(&a.unguarded)
    }

    /// Each operand is a boxed node of its own.
    fn expr(e: &Expr) -> usize {
        let literal = match e {
            Expr::Str(s) => s.len(),
            _ => 0,
        };
        literal
            + e.operands()
                .map(|a| size_of::<Expr>() + expr(a))
                .sum::<usize>()
    }
}
