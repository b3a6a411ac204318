//! The verifier of a decoded program (a loaded artifact): re-establishes every invariant the
//! layout, the interpreter and the JIT rely on, which for a parsed source the checker
//! guarantees by construction.
//!
//! * Every index is in range: locals, values, events, conversion buffers, loops, subflow
//!   names, invocation sites (dense and each used once: the layout has one reply plan per site),
//!   arm indices, exit branches.
//! * Every expression is typed consistently with its operands and with the declared types of
//!   the locals it reads; every write (argument, payload, copy, field) has its target's type;
//!   host arguments have the event's input types; patterns have the argument's type, ranges are
//!   ordered, catch-alls have no guard (native code takes a catch-all unconditionally).
//! * Every local is bound (written) by exactly one construct, of the kind that construct makes,
//!   with a string buffer exactly when it copies text (payloads, accumulator fields, flow
//!   inputs; a match's value may have one); a `str` is never read where it could be unwritten:
//!   an expression reads only locals *in scope*, as the checker scopes them: flow inputs
//!   everywhere, a binder's locals in its continuations (a branch's payload only in arms of
//!   that branch alone), a subflow's inputs in its body, and a body that does not `yield` sees
//!   no local of its caller (native code compiles it as a function of its own that loads only
//!   its inputs). A value's payload is in scope where it is yielded; a subflow exit copies only
//!   from its value's payload and writes every result local of its branch. Together with the
//!   tree shape (a binder's locals are rewritten only when the binder runs again) this keeps
//!   every `str` pair the tiers dereference pointing at live text, as for a checked source.
//! * An accumulator is updated only where its fields are in scope; `yield` steps are marked
//!   the same way in both places the tiers look.
//!
//! Counts and nesting were bounded by the decoder (this walk recurses as deep as the steps).

use super::*;
use crate::host::{Implementation, Registry, StdEvent};

/// Why a program is refused: a sentence naming what is inconsistent.
pub type Problem = String;

/// `max_sites` bounds the invocation sites and conversion buffers before anything is sized by
/// them (the artifact's length: each takes at least a byte of it).
pub fn verify(p: &Program, registry: &Registry, max_sites: usize) -> Result<(), Problem> {
    if p.invoke_sites as usize > max_sites || p.conversion_buffers as usize > max_sites {
        return fail("more invocation sites or conversion buffers than the data can hold");
    }
    // The per-local state and the used marks come from a scratch kept per thread: loading
    // allocates nothing for them in steady state.
    let (mut locals, mut used) = SCRATCH.with(|s| s.take());
    locals.clear();
    locals.resize(p.locals.len(), LocalState::default());
    used.clear();
    let (sites, loops) = (p.invoke_sites as usize, p.loops.len());
    used.resize(sites + loops + p.conversion_buffers as usize, false);
    let mut v = Verifier {
        p,
        registry,
        locals,
        level: 1,
        barrier: 0,
        used,
        sites,
        loops,
        dead: 0,
        generation: 0,
    };
    let result = v.program();
    // Kept for the next load on this thread unless large.
    if v.locals.capacity() <= 1 << 16 && v.used.capacity() <= 1 << 16 {
        let scratch = (std::mem::take(&mut v.locals), std::mem::take(&mut v.used));
        SCRATCH.with(|s| s.set(scratch));
    }
    result
}

thread_local! {
    static SCRATCH: std::cell::Cell<(Vec<LocalState>, Vec<bool>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

struct Verifier<'p> {
    p: &'p Program,
    registry: &'p Registry,
    /// What the walk knows of each local.
    locals: Vec<LocalState>,
    level: u32,
    /// Locals made visible at or below this level are hidden (a subflow body's caller).
    barrier: u32,
    /// Invocation sites, then loops, then conversion buffers: whether each is used already.
    used: Vec<bool>,
    sites: usize,
    loops: usize,
    /// Above 0 inside an arm no branch lists (never run): scope is not checked there.
    dead: u32,
    generation: u64,
}

#[derive(Clone, Copy, Default)]
struct LocalState {
    /// Written by a construct already.
    bound: bool,
    /// The scope level at which it became visible (0: not in scope).
    vis: u32,
    /// Set membership in linear time: in a set when its stamp is that set's generation.
    stamp: u64,
    stamp2: u64,
}

/// The locals of a value's payload, without allocating.
fn payload_locals(p: &ValuePayload) -> impl Iterator<Item = LocalId> + '_ {
    let (one, fields): (Option<LocalId>, &[(Arc<str>, LocalId)]) = match p {
        ValuePayload::Empty => (None, &[]),
        ValuePayload::Identity(l) => (Some(*l), &[]),
        ValuePayload::Struct(fields) => (None, fields),
    };
    one.into_iter().chain(fields.iter().map(|(_, l)| *l))
}

type R = Result<(), Problem>;

fn fail<T>(message: impl Into<String>) -> Result<T, Problem> {
    Err(message.into())
}

impl<'p> Verifier<'p> {
    fn program(&mut self) -> R {
        let p = self.p;
        for (i, value) in p.values.iter().enumerate() {
            for l in payload_locals(&value.payload) {
                self.local_in_range(l)
                    .map_err(|e| format!("value {i}: {e}"))?;
            }
        }
        for (i, e) in p.events.iter().enumerate() {
            if e.host >= self.registry.events().len() {
                return fail(format!("event {i} is not registered"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for input in &p.inputs {
            if !names.insert(&*input.name) {
                return fail(format!("input `{}` is declared twice", input.name));
            }
            self.bind(input.local, LocalKind::FlowInput, Some(input.ty))?;
        }
        // Flow inputs are in scope everywhere, subflow bodies included (SPEC 6).
        for input in &p.inputs {
            self.locals[input.local.0 as usize].vis = u32::MAX;
        }
        for flow in &p.flows {
            self.step(flow)?;
        }
        if let Some(site) = self.used[..self.sites].iter().position(|s| !s) {
            return fail(format!("invocation site {site} is never used"));
        }
        Ok(())
    }

    fn local_in_range(&self, l: LocalId) -> R {
        if (l.0 as usize) < self.p.locals.len() {
            Ok(())
        } else {
            fail(format!("local {} is out of range", l.0))
        }
    }

    fn decl(&self, l: LocalId) -> Result<&'p LocalDecl, Problem> {
        self.p
            .locals
            .get(l.0 as usize)
            .ok_or_else(|| format!("local {} is out of range", l.0))
    }

    fn value(&self, v: ValueId) -> Result<&'p ValueDesc, Problem> {
        self.p
            .values
            .get(v.0 as usize)
            .ok_or_else(|| format!("value {} is out of range", v.0))
    }

    fn values_from(&self, first: ValueId, n: usize) -> R {
        if (first.0 as usize).saturating_add(n) > self.p.values.len() {
            return fail(format!("values {}.. are out of range", first.0));
        }
        Ok(())
    }

    /// Marks `l` written by one construct, checking its kind, type and buffer.
    fn bind(&mut self, l: LocalId, kind: LocalKind, ty: Option<Type>) -> R {
        let decl = self.decl(l)?;
        if std::mem::replace(&mut self.locals[l.0 as usize].bound, true) {
            return fail(format!("local `{}` is written by two steps", decl.name));
        }
        if decl.kind != kind {
            return fail(format!(
                "local `{}` is a {:?}, used as a {kind:?}",
                decl.name, decl.kind
            ));
        }
        if let Some(ty) = ty {
            if decl.ty != ty {
                return fail(format!(
                    "local `{}` is a {}, written with a {ty}",
                    decl.name, decl.ty
                ));
            }
        }
        let copies = LocalDecl::copies_text(kind);
        if decl.owns_buffer != (copies && decl.ty == Type::Str) {
            return fail(format!("local `{}` has the wrong buffer", decl.name));
        }
        Ok(())
    }

    fn enter(&mut self, locals: &[LocalId]) {
        self.level += 1;
        for l in locals {
            self.locals[l.0 as usize].vis = self.level;
        }
    }

    fn leave(&mut self, locals: &[LocalId]) {
        for l in locals {
            self.locals[l.0 as usize].vis = 0;
        }
    }

    fn visible(&self, l: LocalId) -> bool {
        self.dead > 0
            || self
                .locals
                .get(l.0 as usize)
                .is_some_and(|s| s.vis > self.barrier)
    }

    /// A new generation of stamps: no local is in either set.
    fn new_sets(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// The payload of `v` is in scope (or in `extra`, written just before it is yielded).
    fn yielded(&mut self, v: ValueId, extra: &[LocalId]) -> R {
        let payload = &self.value(v)?.payload;
        let g = self.new_sets();
        for l in extra {
            self.locals[l.0 as usize].stamp = g;
        }
        for l in payload_locals(payload) {
            if !self.visible(l) && self.locals[l.0 as usize].stamp != g {
                return fail(format!(
                    "value `{}` is yielded where local `{}` is not in scope",
                    self.p.values[v.0 as usize].branch, self.p.locals[l.0 as usize].name
                ));
            }
        }
        Ok(())
    }

    fn expr(&self, e: &Expr) -> Result<Type, Problem> {
        use Type::*;
        let want = |e: &Expr, ty: Type| -> R {
            let got = self.expr(e)?;
            if got == ty {
                Ok(())
            } else {
                fail(format!("an operand is a {got}, not a {ty}"))
            }
        };
        let equality = |op: CmpOp| -> R {
            if matches!(op, CmpOp::Eq | CmpOp::Ne) {
                Ok(())
            } else {
                fail("an ordering of bools or strs")
            }
        };
        Ok(match e {
            Expr::Int(_) => Int,
            Expr::Float(_) => Float,
            Expr::Bool(_) => Bool,
            Expr::Str(_) => Str,
            Expr::Local(l, ty) => {
                let decl = self.decl(*l)?;
                if decl.ty != *ty {
                    return fail(format!("local `{}` read as a {ty}", decl.name));
                }
                if !self.visible(*l) {
                    return fail(format!(
                        "local `{}` (l{}) is read out of scope",
                        decl.name, l.0
                    ));
                }
                *ty
            }
            Expr::NegInt(a, _) | Expr::FloatToInt(a, _) => {
                want(
                    a,
                    if matches!(e, Expr::NegInt(..)) {
                        Int
                    } else {
                        Float
                    },
                )?;
                Int
            }
            Expr::NegFloat(a) => {
                want(a, Float)?;
                Float
            }
            Expr::IntToFloat(a) => {
                want(a, Int)?;
                Float
            }
            Expr::Not(a) => {
                want(a, Bool)?;
                Bool
            }
            Expr::IntArith(_, a, b, _) => {
                want(a, Int)?;
                want(b, Int)?;
                Int
            }
            Expr::FloatArith(_, a, b) => {
                want(a, Float)?;
                want(b, Float)?;
                Float
            }
            Expr::IntCmp(_, a, b) => {
                want(a, Int)?;
                want(b, Int)?;
                Bool
            }
            Expr::FloatCmp(_, a, b) => {
                want(a, Float)?;
                want(b, Float)?;
                Bool
            }
            Expr::BoolCmp(op, a, b) => {
                equality(*op)?;
                want(a, Bool)?;
                want(b, Bool)?;
                Bool
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                want(a, Bool)?;
                want(b, Bool)?;
                Bool
            }
            Expr::StrCmp(op, a, b) => {
                equality(*op)?;
                want(a, Str)?;
                want(b, Str)?;
                Bool
            }
            Expr::Select(c, a, b, ty) => {
                want(c, Bool)?;
                want(a, *ty)?;
                want(b, *ty)?;
                *ty
            }
        })
    }

    fn want(&self, e: &Expr, ty: Type) -> R {
        let got = self.expr(e)?;
        if got == ty {
            Ok(())
        } else {
            fail(format!("an expression is a {got}, where a {ty} is written"))
        }
    }

    /// An argument written to a `want`-typed input (formatted into a buffer when it says so).
    fn argument(&mut self, a: &Argument, want: Type) -> R {
        match a.format_into {
            Some(b) => {
                let first = self.sites + self.loops;
                let used = self.used[first..]
                    .get_mut(b.0 as usize)
                    .ok_or_else(|| format!("conversion buffer {} is out of range", b.0))?;
                if std::mem::replace(used, true) {
                    return fail(format!("conversion buffer {} is used twice", b.0));
                }
                if want != Type::Str || self.expr(&a.expr)? == Type::Str {
                    return fail("a conversion that is not of a scalar to a str");
                }
                Ok(())
            }
            None => self.want(&a.expr, want),
        }
    }

    fn new_loop(&mut self, index: u32) -> R {
        let (sites, loops) = (self.sites, self.loops);
        match self.used[sites..sites + loops].get_mut(index as usize) {
            Some(seen) if !*seen => {
                *seen = true;
                Ok(())
            }
            Some(_) => fail(format!("loop {index} appears twice")),
            None => fail(format!("loop {index} is out of range")),
        }
    }

    /// Arms of a binder with `branches` branches; `payload(b)` is what branch `b` writes.
    fn arms(
        &mut self,
        arms: &'p Arms,
        branches: usize,
        first: ValueId,
        payload: &dyn Fn(usize) -> &'p [LocalId],
    ) -> R {
        self.values_from(first, branches)?;
        // Every branch's value has its payload in scope once the branch wrote it: the value
        // is yielded when no continuation runs a step, and a trace line shows it anyway.
        for b in 0..branches {
            self.yielded(ValueId(first.0 + b as u32), payload(b))?;
        }
        if arms.arms.is_empty() {
            return Ok(());
        }
        if arms.by_branch.len() != branches || arms.unguarded.len() != branches {
            return fail(format!(
                "continuations for {branches} branches are malformed"
            ));
        }
        // For each arm: the branches it is tried for (in increasing order).
        let mut of_arm: Vec<smallvec::SmallVec<[usize; 2]>> =
            vec![smallvec::SmallVec::new(); arms.arms.len()];
        for (b, candidates) in arms.by_branch.iter().enumerate() {
            for &i in candidates {
                let Some(list) = of_arm.get_mut(i as usize) else {
                    return fail(format!("continuation {i} is out of range"));
                };
                if list.last() == Some(&b) {
                    return fail(format!("continuation {i} is listed twice for a branch"));
                }
                list.push(b);
            }
            if let Some(i) = arms.unguarded[b] {
                if candidates.first() != Some(&i) || arms.arms[i as usize].guard.is_some() {
                    return fail("an unguarded continuation that is not the first candidate");
                }
            }
        }
        // Arms of one branch, grouped by it: its payload enters the scope once.
        for (b, candidates) in arms.by_branch.iter().enumerate() {
            let mut members = candidates
                .iter()
                .filter(|&&i| of_arm[i as usize].len() == 1)
                .peekable();
            if members.peek().is_none() {
                continue;
            }
            let scope = payload(b);
            self.enter(scope);
            for &i in members {
                self.arm(&arms.arms[i as usize])?;
            }
            self.leave(scope);
        }
        for (arm, branches_of) in arms.arms.iter().zip(&of_arm) {
            match branches_of.len() {
                1 => {}
                // An arm no branch lists never runs in either tier (a subflow's continuation
                // for a branch it yields is inlined at the `yield`): only the passes that walk
                // every arm (layout, cost bound) read it, for its indices and types.
                0 => {
                    self.dead += 1;
                    let checked = self.arm(arm);
                    self.dead -= 1;
                    checked?;
                }
                _ => self.arm(arm)?,
            }
        }
        Ok(())
    }

    /// One continuation (without a step it yields its branch's value, checked with the arms).
    fn arm(&mut self, arm: &'p Arm) -> R {
        if let Some(guard) = &arm.guard {
            self.want(guard, Type::Bool)?;
        }
        match &arm.step {
            Some(step) => self.step(step),
            None => Ok(()),
        }
    }

    fn step(&mut self, s: &'p Step) -> R {
        match s {
            Step::Invoke(s) => self.invoke(s),
            Step::Call(s) => self.call(s),
            Step::For(s) => {
                self.want(&s.start, Type::Int)?;
                self.want(&s.end, Type::Int)?;
                self.bind(s.index, LocalKind::LoopVariable, Some(Type::Int))?;
                let decl = self.decl(s.bound)?;
                if decl.ty != Type::Int || decl.owns_buffer || decl.kind != LocalKind::LoopVariable
                {
                    return fail("a loop bound that is not an int loop variable");
                }
                if std::mem::replace(&mut self.locals[s.bound.0 as usize].bound, true) {
                    return fail("a loop bound written by two steps");
                }
                self.new_loop(s.loop_index)?;
                let index = std::slice::from_ref(&s.index);
                self.arms(&s.arms, 2, s.first_value, &|b| {
                    if b == 0 {
                        index
                    } else {
                        &[]
                    }
                })
            }
            Step::If(s) => {
                self.want(&s.cond, Type::Bool)?;
                self.arms(&s.arms, 2, s.first_value, &|_| &[])
            }
            Step::While(s) => {
                self.want(&s.cond, Type::Bool)?;
                self.new_loop(s.loop_index)?;
                self.arms(&s.arms, 2, s.first_value, &|_| &[])
            }
            Step::Capture(s) => {
                if s.fields.len() != s.init.len() {
                    return fail("a capture with fields and initial values apart");
                }
                for (&field, init) in s.fields.iter().zip(&s.init) {
                    let ty = self.decl(field)?.ty;
                    self.want(init, ty)?;
                    self.bind(field, LocalKind::AccumulatorField, None)?;
                }
                self.values_from(s.first_value, 2)?;
                let marked = self.p.values[s.first_value.0 as usize + 1]
                    .branch
                    .starts_with(YIELD_VALUE_PREFIX);
                if marked != s.yield_of.is_some() {
                    return fail("a `yield` marked in one place only");
                }
                let fields = &s.fields[..];
                self.arms(&s.arms, 2, s.first_value, &|_| fields)
            }
            Step::Update(s) => {
                let g = self.new_sets();
                for (l, e) in &s.assigns {
                    let decl = self.decl(*l)?;
                    if decl.kind != LocalKind::AccumulatorField || !self.visible(*l) {
                        return fail(format!("`captured` writes `{}` out of scope", decl.name));
                    }
                    if std::mem::replace(&mut self.locals[l.0 as usize].stamp, g) == g {
                        return fail(format!("`captured` writes `{}` twice", decl.name));
                    }
                    self.want(e, decl.ty)?;
                }
                self.yielded(s.value, &[])
            }
            Step::Construct(s) => {
                let mut written = Vec::with_capacity(s.fields.len().min(64));
                for (l, e) in &s.fields {
                    let ty = self.decl(*l)?.ty;
                    self.want(e, ty)?;
                    self.bind(*l, LocalKind::Temporary, None)?;
                    written.push(*l);
                }
                self.yielded(s.value, &written)
            }
            Step::Match(s) => self.match_step(s),
            Step::Yield(v) => self.yielded(*v, &[]),
        }
    }

    fn invoke(&mut self, s: &'p Invoke) -> R {
        let event = self
            .p
            .events
            .get(s.event.0 as usize)
            .ok_or_else(|| format!("event {} is out of range", s.event.0))?;
        let sites = self.sites;
        match self.used[..sites].get_mut(s.site as usize) {
            Some(seen) if !*seen => *seen = true,
            _ => {
                return fail(format!(
                    "invocation site {} is out of range or used twice",
                    s.site
                ))
            }
        }
        let template = matches!(
            self.registry.events()[event.host].implementation,
            Implementation::Std(StdEvent::PrintTemplate)
        );
        let sig = &event.sig;
        match &s.args {
            Arguments::Inputs(args) => {
                if template || args.len() != sig.inputs.len() {
                    return fail(format!("the arguments of `{}` do not fit it", event.name));
                }
                for (a, (_, ty)) in args.iter().zip(&sig.inputs) {
                    self.argument(a, *ty)?;
                }
            }
            Arguments::Template(parts) => {
                if !template {
                    return fail(format!("`{}` is not a template event", event.name));
                }
                for part in parts {
                    if let TemplatePart::Hole(e) = part {
                        self.expr(e)?;
                    }
                }
            }
        }
        let branches = sig.result_branch_slice();
        if s.payloads.len() != branches.len() {
            return fail(format!(
                "payloads of `{}` do not fit its branches",
                event.name
            ));
        }
        for (b, branch) in branches.iter().enumerate() {
            let types = branch.payload.types();
            let locals = &s.payloads[b];
            if locals.len() != types.len() {
                return fail(format!("payload of `{}` does not fit", branch.name));
            }
            for (&l, ty) in locals.iter().zip(types) {
                self.bind(l, LocalKind::Payload, Some(ty))?;
            }
        }
        let payloads = &s.payloads;
        self.arms(&s.arms, branches.len(), s.first_value, &|b| &payloads[b])
    }

    fn call(&mut self, s: &'p SubflowCall) -> R {
        if s.name_index as usize >= self.p.subflow_names.len() {
            return fail(format!("subflow name {} is out of range", s.name_index));
        }
        let mut inputs = Vec::with_capacity(s.inputs.len().min(64));
        for (l, a) in &s.inputs {
            let ty = self.decl(*l)?.ty;
            self.argument(a, ty)?;
            self.bind(*l, LocalKind::SubflowInput, None)?;
            inputs.push(*l);
        }
        // A body that does not yield is a function of its own in native code: it sees its
        // inputs only.
        let saved = self.barrier;
        if !yields(self.p, &s.body) {
            self.barrier = self.level;
        }
        self.enter(&inputs);
        let body = self.step(&s.body);
        self.leave(&inputs);
        self.barrier = saved;
        body?;
        for l in s.results.all() {
            self.bind(*l, LocalKind::SubflowResult, None)?;
        }
        // Both tiers find a value's exit by binary search.
        if s.exits.windows(2).any(|w| w[0].value.0 >= w[1].value.0) {
            return fail(format!(
                "the exits of `{}` are not in increasing order of value",
                s.name
            ));
        }
        for exit in &s.exits {
            let from = &self.value(exit.value)?.payload;
            let Some(to) = s.results.get(exit.branch as usize) else {
                return fail(format!("an exit of `{}` to a missing branch", s.name));
            };
            if exit.copies.len() != to.len() {
                return fail(format!("an exit of `{}` leaves results unwritten", s.name));
            }
            // `from` stamped with `g`; `to` with `g` in the second set, `g + 1` once written.
            let g = self.new_sets();
            self.new_sets();
            for l in payload_locals(from) {
                self.locals[l.0 as usize].stamp = g;
            }
            for l in to {
                self.locals[l.0 as usize].stamp2 = g;
            }
            for &(f, t) in &exit.copies {
                let (fd, td) = (self.decl(f)?, self.decl(t)?);
                let unwritten = self.locals[t.0 as usize].stamp2 == g;
                self.locals[t.0 as usize].stamp2 = g + 1;
                if self.locals[f.0 as usize].stamp != g || !unwritten || fd.ty != td.ty {
                    return fail(format!("an exit of `{}` copies the wrong locals", s.name));
                }
            }
        }
        let results = &s.results;
        self.arms(&s.arms, s.results.len(), s.first_value, &|b| &results[b])
    }

    fn match_step(&mut self, s: &'p MatchStep) -> R {
        let decl = self.decl(s.value)?;
        let ty = decl.ty;
        self.want(&s.scrutinee, ty)?;
        if std::mem::replace(&mut self.locals[s.value.0 as usize].bound, true) {
            return fail(format!("local `{}` is written by two steps", decl.name));
        }
        // A temporary (never an accumulator field: `captured` could write it, through buffers
        // a match value does not have), with a buffer only for a str.
        if decl.kind != LocalKind::Temporary || (decl.owns_buffer && ty != Type::Str) {
            return fail(format!(
                "local `{}` cannot hold a `match` argument",
                decl.name
            ));
        }
        let value = [s.value];
        // A trace line shows `matched` whichever arm is taken.
        self.yielded(s.matched, &value)?;
        self.enter(&value);
        for arm in &s.arms {
            if arm.patterns.is_empty() && arm.arm.guard.is_some() {
                return fail("a catch-all of `match` with a guard");
            }
            for p in &arm.patterns {
                let fits = match p {
                    Pattern::Int { lo, hi } => ty == Type::Int && lo <= hi,
                    Pattern::Str(_) => ty == Type::Str,
                    Pattern::Bool(_) => ty == Type::Bool,
                };
                if !fits {
                    return fail("a pattern that does not fit the `match` argument");
                }
            }
            if let Some(guard) = &arm.arm.guard {
                self.want(guard, Type::Bool)?;
            }
            if let Some(step) = &arm.arm.step {
                self.step(step)?;
            }
        }
        self.leave(&value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Each check fires: programs compiled from sources, decoded from their artifacts, then
    //! changed the way a hostile artifact could.
    use super::*;
    use crate::ir::codec::{DecodeLimits, Reader};
    use crate::{CompileOptions, Engine, Registry};

    fn program(engine: &Engine, source: &str) -> Program {
        let flow = engine
            .compile("t", source, &CompileOptions::default())
            .unwrap();
        let bytes = flow.to_bytes();
        let limits = DecodeLimits {
            max_step_depth: 300,
            max_expr_depth: 500,
            max_steps: 100_000,
            max_locals: 100_000,
        };
        let mut r = Reader::new(&bytes, 12, limits);
        for _ in 0..3 {
            r.str().unwrap();
        }
        r.opt_str().unwrap();
        r.opt_str().unwrap();
        let mut p = r.program().unwrap();
        assert!(r.at_end());
        // As the load does: the registry's signatures.
        for event in &mut p.events {
            event.sig = engine.registry().events()[event.host].sig.clone();
        }
        verify(&p, engine.registry(), bytes.len()).unwrap();
        p
    }

    fn refused(engine: &Engine, p: &Program) -> String {
        verify(p, engine.registry(), 1 << 20).unwrap_err()
    }

    const SUM: &str = "~capture({ s: 0 })\n| as acc |> for(0..3)\n    | each i |> captured { s: acc.s + i }\n| captured c |> std.io:println(text: c.s)\n";

    fn capture(p: &mut Program) -> &mut CaptureStep {
        match &mut p.flows[0] {
            Step::Capture(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn for_loop(c: &mut CaptureStep) -> &mut ForLoop {
        match c.arms.arms[0].step.as_mut() {
            Some(Step::For(f)) => f,
            other => panic!("{other:?}"),
        }
    }

    fn update(f: &mut ForLoop) -> &mut CaptureUpdate {
        match f.arms.arms[0].step.as_mut() {
            Some(Step::Update(u)) => u,
            other => panic!("{other:?}"),
        }
    }

    fn println_arg(c: &mut CaptureStep) -> &mut Argument {
        match c.arms.arms[1].step.as_mut() {
            Some(Step::Invoke(i)) => match &mut i.args {
                Arguments::Inputs(args) => &mut args[0],
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn indices_out_of_range_are_refused() {
        let engine = Engine::new(Registry::with_std());
        let mut p = program(&engine, SUM);
        for_loop(capture(&mut p)).index = LocalId(999);
        assert_eq!(refused(&engine, &p), "local 999 is out of range");
        let mut p = program(&engine, SUM);
        for_loop(capture(&mut p)).loop_index = 7;
        assert_eq!(refused(&engine, &p), "loop 7 is out of range");
        let mut p = program(&engine, SUM);
        capture(&mut p).first_value = ValueId(1_000);
        assert!(refused(&engine, &p).contains("out of range"));
        let mut p = program(&engine, SUM);
        p.invoke_sites += 1;
        assert_eq!(refused(&engine, &p), "invocation site 1 is never used");
        let mut p = program(&engine, SUM);
        println_arg(capture(&mut p)).format_into = Some(BufferId(5));
        assert_eq!(refused(&engine, &p), "conversion buffer 5 is out of range");
    }

    #[test]
    fn types_that_do_not_fit_are_refused() {
        let engine = Engine::new(Registry::with_std());
        let mut p = program(&engine, SUM);
        update(for_loop(capture(&mut p))).assigns[0].1 = Expr::Bool(true);
        assert_eq!(
            refused(&engine, &p),
            "an expression is a bool, where a int is written"
        );
        let mut p = program(&engine, SUM);
        let acc = capture(&mut p).fields[0];
        update(for_loop(capture(&mut p))).assigns[0].1 = Expr::Local(acc, Type::Str);
        assert_eq!(refused(&engine, &p), "local `acc.s` read as a str");
        // A str formatted into a conversion buffer.
        let mut p = program(&engine, SUM);
        println_arg(capture(&mut p)).expr = Expr::Str("x".into());
        assert_eq!(
            refused(&engine, &p),
            "a conversion that is not of a scalar to a str"
        );
        // An ordering of strings.
        let mut p = program(&engine, SUM);
        let f = for_loop(capture(&mut p));
        f.end = Expr::Select(
            Box::new(Expr::StrCmp(
                CmpOp::Lt,
                Box::new(Expr::Str("a".into())),
                Box::new(Expr::Str("b".into())),
            )),
            Box::new(Expr::Int(1)),
            Box::new(Expr::Int(2)),
            Type::Int,
        );
        assert_eq!(refused(&engine, &p), "an ordering of bools or strs");
    }

    #[test]
    fn reads_out_of_scope_and_second_writers_are_refused() {
        let engine = Engine::new(Registry::with_std());
        // The loop index read after the loop, in `captured`.
        let mut p = program(&engine, SUM);
        let index = for_loop(capture(&mut p)).index;
        println_arg(capture(&mut p)).expr = Expr::Local(index, Type::Int);
        assert_eq!(
            refused(&engine, &p),
            format!("local `for.each` (l{}) is read out of scope", index.0)
        );
        // The accumulator written by a second capture step... as the loop index.
        let mut p = program(&engine, SUM);
        let acc = capture(&mut p).fields[0];
        for_loop(capture(&mut p)).index = acc;
        assert_eq!(
            refused(&engine, &p),
            "local `acc.s` is written by two steps"
        );
        // `captured` of something that is not an accumulator field in scope.
        let mut p = program(&engine, SUM);
        let f = for_loop(capture(&mut p));
        let index = f.index;
        update(f).assigns[0].0 = index;
        assert_eq!(
            refused(&engine, &p),
            "`captured` writes `for.each` out of scope"
        );
    }

    fn matching(p: &mut Program) -> &mut MatchStep {
        match &mut p.flows[0] {
            Step::Match(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_continuations_and_matches_are_refused() {
        let engine = Engine::new(Registry::with_std());
        let mut p = program(&engine, SUM);
        capture(&mut p).arms.by_branch[0].push(9);
        assert_eq!(refused(&engine, &p), "continuation 9 is out of range");
        let mut p = program(&engine, SUM);
        capture(&mut p).arms.unguarded.pop();
        assert_eq!(
            refused(&engine, &p),
            "continuations for 2 branches are malformed"
        );
        let source = "~match(3)\n| [1] |> std.io:println(text: \"one\")\n|? |> _\n";
        let mut p = program(&engine, source);
        matching(&mut p).arms[1].arm.guard = Some(Expr::Bool(true));
        assert_eq!(refused(&engine, &p), "a catch-all of `match` with a guard");
        let mut p = program(&engine, source);
        matching(&mut p).arms[0].patterns[0] = Pattern::Int { lo: 5, hi: 1 };
        assert_eq!(
            refused(&engine, &p),
            "a pattern that does not fit the `match` argument"
        );
        let mut p = program(&engine, source);
        matching(&mut p).arms[0].patterns[0] = Pattern::Str("1".into());
        assert_eq!(
            refused(&engine, &p),
            "a pattern that does not fit the `match` argument"
        );
    }

    #[test]
    fn a_subflow_exit_that_leaves_a_result_unwritten_is_refused() {
        let engine = Engine::new(Registry::with_std());
        let source = "~event pick {} | got { v: i64 }\n~pick = got { v: 7 }\n~pick()\n| got g |> std.io:println(text: g.v)\n";
        let mut p = program(&engine, source);
        let Step::Call(call) = &mut p.flows[0] else {
            panic!()
        };
        call.exits[0].copies.clear();
        assert_eq!(
            refused(&engine, &p),
            "an exit of `pick` leaves results unwritten"
        );
    }

    #[test]
    fn subflow_exits_out_of_order_are_refused() {
        // Both tiers find an exit by binary search over the values.
        let engine = Engine::new(Registry::with_std());
        let source = "~event pick { n: i64 } | low | high
~pick = if(n > 0)
| then |> high
| else |> low
~pick(n: 1)
| low |> _
| high |> _
";
        let mut p = program(&engine, source);
        let Step::Call(call) = &mut p.flows[0] else {
            panic!()
        };
        assert_eq!(call.exits.len(), 2);
        call.exits.swap(0, 1);
        assert_eq!(
            refused(&engine, &p),
            "the exits of `pick` are not in increasing order of value"
        );
    }
}
