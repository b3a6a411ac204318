//! The bytecode's executor: one loop over the instruction array, dispatching by `match`, with
//! no recursion and no `Result` per instruction (an error leaves through a `return`).

use super::code::{format_type, Bytecode, Op, Pc, PrintPart};
use super::Exec;
use crate::host::{BoundedText, Implementation, ReplyOut};
use crate::ir::{arith, CmpOp, ValueId};
use crate::outcome::ErrorCode;
use crate::state::{Stream, Trap};
use crate::types::Type;
use std::cmp::Ordering;

fn compare(op: CmpOp, ordering: Option<Ordering>) -> bool {
    match (op, ordering) {
        (CmpOp::Eq, o) => o == Some(Ordering::Equal),
        (CmpOp::Ne, o) => o != Some(Ordering::Equal),
        (CmpOp::Lt, o) => o == Some(Ordering::Less),
        (CmpOp::Le, o) => matches!(o, Some(Ordering::Less | Ordering::Equal)),
        (CmpOp::Gt, o) => o == Some(Ordering::Greater),
        (CmpOp::Ge, o) => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// Whether the string (p, l) of the flow state equals literal `k`: lengths first, then for
/// literals of at most 16 bytes two overlapping windows, with no call.
#[inline(always)]
fn eq_literal(code: &Bytecode, p: u64, l: u64, k: u32) -> bool {
    // SAFETY: `verify` checked `k` against the literals, and `lits` has one entry for each.
    let literal = unsafe { code.lits.get_unchecked(k as usize) };
    if l != literal.len {
        return false;
    }
    if l <= 16 {
        // SAFETY: (p, l) is a live string (see `text`) of `l` bytes.
        return unsafe { super::code::window_key(p as *const u8, l as usize) } == literal.key;
    }
    // SAFETY: as above, and the literal's words are the program's text.
    unsafe { text(p, l) == text(literal.ptr, literal.len) }
}

/// `a / k` for a `k` that is neither 0 nor -1. A dividend that fits 32 bits divides in 32 bits
/// (a 64-bit `idiv` takes two to three times as long on x86-64, and sits on the loop-carried
/// path of loops like collatz's).
#[inline(always)]
fn div_by(a: i64, k: i32) -> i64 {
    match i32::try_from(a) {
        Ok(a) => i64::from(a / k),
        Err(_) => a / i64::from(k),
    }
}

/// Floored `a % k` for a `k` that is not 0, in 32 bits when `a` fits (see `div_by`).
#[inline(always)]
fn rem_by(a: i64, k: i32) -> i64 {
    match i32::try_from(a) {
        // `wrapping_rem`: `i32::MIN % -1` is 0.
        Ok(a) => i64::from(floored_rem32(a, k)),
        Err(_) => floored_rem(a, i64::from(k)),
    }
}

#[inline(always)]
fn floored_rem32(a: i32, b: i32) -> i32 {
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    }
}

/// Floored remainder by a divisor that is not 0.
#[inline(always)]
fn floored_rem(a: i64, b: i64) -> i64 {
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    }
}

/// # Safety
/// `(ptr, len)` is a string the flow state may hold: live UTF-8 (literals of the program,
/// buffers of the run state, caller inputs that outlive the run).
#[inline(always)]
unsafe fn text<'a>(ptr: u64, len: u64) -> &'a str {
    unsafe { crate::host::word_str(ptr, len) }
}

#[cold]
#[inline(never)]
fn fail(code: &Bytecode, k: u32) -> Trap {
    let fail = &code.fails[k as usize];
    Trap::error(
        ErrorCode::NoBranchMatch,
        fail.message.clone(),
        fail.event.clone(),
        fail.span,
    )
}

/// Where the op just before `pc` reports its error.
#[cold]
fn site_of(code: &Bytecode, pc: usize) -> (Option<std::sync::Arc<str>>, crate::span::Span) {
    code.site(pc as Pc - 1)
        .map_or((None, crate::span::Span::default()), |s| {
            (s.event.clone(), s.span)
        })
}

impl Exec<'_> {
    /// Runs the code from its start; the value of the last top-level flow. Not inlined: the
    /// loop's registers are its own (inlined into the run's caller, `ops` and the frame
    /// pointer were spilled around every op).
    #[inline(never)]
    pub(super) fn exec(&mut self, code: &Bytecode) -> Result<Option<ValueId>, Trap> {
        if self.state.frame.len() < code.frame_words as usize
            || self.state.loop_iterations.len() < code.loops as usize
        {
            return Err(Trap::error(
                ErrorCode::HostError,
                "internal error: the run state was sized for another flow",
                None,
                crate::span::Span::default(),
            ));
        }
        let base = code.ops.as_ptr();
        let mut ip = base;
        let mut f: *mut u64 = self.state.frame.as_mut_ptr();
        // SAFETY (every use below): `Bytecode::verify` checked every word an op reads or
        // writes against `frame_words`, and the frame has at least that many (checked above);
        // `f` is taken again after every op that may touch the frame through a reference.
        macro_rules! get {
            ($w:expr) => {
                unsafe { *f.add($w as usize) }
            };
        }
        macro_rules! set {
            ($w:expr, $v:expr) => {{
                let v = $v;
                unsafe { *f.add($w as usize) = v }
            }};
        }
        macro_rules! int {
            ($w:expr) => {
                get!($w) as i64
            };
        }
        macro_rules! flt {
            ($w:expr) => {
                f64::from_bits(get!($w))
            };
        }
        macro_rules! string {
            ($w:expr) => {{
                let (p, l) = (get!($w), get!($w + 1));
                // SAFETY: str words hold live strings (see `text`).
                unsafe { text(p, l) }
            }};
        }
        macro_rules! refresh {
            () => {
                f = self.state.frame.as_mut_ptr()
            };
        }
        // The number of the op after the current one.
        macro_rules! pc {
            () => {
                // SAFETY: `ip` is one past an op of `code.ops`.
                unsafe { ip.offset_from(base) as usize }
            };
        }
        macro_rules! jump {
            ($t:expr) => {
                // SAFETY: `verify` checked every jump target against the code's length.
                ip = unsafe { base.add($t as usize) }
            };
        }
        macro_rules! checked {
            ($d:expr, $v:expr, $code:expr, $symbol:expr) => {
                match $v {
                    Some(v) => set!($d, v as u64),
                    None => return Err(self.int_error(code, pc!(), $code, $symbol)),
                }
            };
        }
        // A back-edge: the frame is taken again when the engine looked at the run.
        macro_rules! back_edge {
            ($lp:expr) => {
                if self.back_edge($lp)? {
                    refresh!();
                }
            };
        }
        macro_rules! tick {
            ($lp:expr) => {
                // SAFETY: `verify` checked every op's loop against `code.loops`, and the
                // counters were checked against it above.
                unsafe { self.tick($lp)? }
            };
        }
        loop {
            // SAFETY: `verify` checked that every jump target is in the code and that it ends
            // with `End`, so `pc` never passes the end.
            let op = unsafe { &*ip };
            // SAFETY: at most one past the last op (`End` never falls through).
            ip = unsafe { ip.add(1) };
            match *op {
                Op::Mov { d, a } => set!(d, get!(a)),
                Op::Mov2 { d, a } => {
                    let (p, l) = (get!(a), get!(a + 1));
                    set!(d, p);
                    set!(d + 1, l);
                }
                Op::Const { d, k } => set!(d, k),
                Op::Str { d, k } => {
                    // SAFETY: as in `eq_literal`.
                    let literal = unsafe { code.lits.get_unchecked(k as usize) };
                    set!(d, literal.ptr);
                    set!(d + 1, literal.len);
                }
                Op::Add { d, a, b } => {
                    checked!(d, int!(a).checked_add(int!(b)), ErrorCode::Overflow, "+")
                }
                Op::Sub { d, a, b } => {
                    checked!(d, int!(a).checked_sub(int!(b)), ErrorCode::Overflow, "-")
                }
                Op::Mul { d, a, b } => {
                    checked!(d, int!(a).checked_mul(int!(b)), ErrorCode::Overflow, "*")
                }
                Op::Div { d, a, b } => {
                    let (x, y) = (int!(a), int!(b));
                    if y == 0 {
                        return Err(self.int_error(code, pc!(), ErrorCode::DivisionByZero, "/"));
                    }
                    match (i32::try_from(x), i32::try_from(y)) {
                        // In 32 bits when both fit (see `div_by`), but for `i32::MIN / -1`,
                        // which fits 64 bits only.
                        (Ok(a), Ok(b)) if b != -1 => set!(d, i64::from(a / b) as u64),
                        _ => checked!(d, x.checked_div(y), ErrorCode::Overflow, "/"),
                    }
                }
                Op::Rem { d, a, b } => {
                    let (x, y) = (int!(a), int!(b));
                    if y == 0 {
                        return Err(self.int_error(code, pc!(), ErrorCode::DivisionByZero, "%"));
                    }
                    let r = match (i32::try_from(x), i32::try_from(y)) {
                        (Ok(a), Ok(b)) => i64::from(floored_rem32(a, b)),
                        _ => floored_rem(x, y),
                    };
                    set!(d, r as u64)
                }
                Op::RemZero { eq, d, a, b } => {
                    let (x, y) = (int!(a), int!(b));
                    if y == 0 {
                        return Err(self.int_error(code, pc!(), ErrorCode::DivisionByZero, "%"));
                    }
                    let zero = match (i32::try_from(x), i32::try_from(y)) {
                        (Ok(a), Ok(b)) => a.wrapping_rem(b) == 0,
                        _ => x.wrapping_rem(y) == 0,
                    };
                    set!(d, u64::from(zero == eq))
                }
                Op::AddK { d, a, k } => {
                    checked!(d, int!(a).checked_add(k as i64), ErrorCode::Overflow, "+")
                }
                Op::SubK { d, a, k } => {
                    checked!(d, int!(a).checked_sub(k as i64), ErrorCode::Overflow, "-")
                }
                Op::MulK { d, a, k } => {
                    checked!(d, int!(a).checked_mul(k as i64), ErrorCode::Overflow, "*")
                }
                Op::DivK { d, a, k } => set!(d, div_by(int!(a), k) as u64),
                Op::RemK { d, a, k } => set!(d, rem_by(int!(a), k) as u64),
                Op::Neg { d, a } => checked!(d, int!(a).checked_neg(), ErrorCode::Overflow, "-"),
                Op::FAdd { d, a, b } => set!(d, (flt!(a) + flt!(b)).to_bits()),
                Op::FSub { d, a, b } => set!(d, (flt!(a) - flt!(b)).to_bits()),
                Op::FMul { d, a, b } => set!(d, (flt!(a) * flt!(b)).to_bits()),
                Op::FDiv { d, a, b } => set!(d, (flt!(a) / flt!(b)).to_bits()),
                Op::FRem { d, a, b } => set!(d, arith::float_rem(flt!(a), flt!(b)).to_bits()),
                Op::FNeg { d, a } => set!(d, (-flt!(a)).to_bits()),
                Op::IntToFloat { d, a } => set!(d, (int!(a) as f64).to_bits()),
                Op::FloatToInt { d, a } => match arith::float_to_int(flt!(a)) {
                    Ok(v) => set!(d, v as u64),
                    Err(error) => {
                        let (event, span) = site_of(code, pc!());
                        return Err(Trap::error(
                            error,
                            "float out of range for int in `@as`",
                            event,
                            span,
                        ));
                    }
                },
                Op::Cmp { c, d, a, b } => set!(d, u64::from(c.holds(int!(a), int!(b)))),
                Op::CmpK { c, d, a, k } => set!(d, u64::from(c.holds(int!(a), k as i64))),
                Op::FCmp { op, d, a, b } => {
                    set!(d, u64::from(compare(op, flt!(a).partial_cmp(&flt!(b)))))
                }
                Op::StrEq { eq, d, a, b } => {
                    let same = string!(a) == string!(b);
                    set!(d, u64::from(same == eq))
                }
                Op::StrEqK { eq, d, a, k } => {
                    let same = eq_literal(code, get!(a), get!(a + 1), k);
                    set!(d, u64::from(same == eq))
                }
                Op::Not { d, a } => set!(d, u64::from(get!(a) == 0)),
                Op::Jmp { t } => jump!(t),
                Op::JBool { when, a, t } => {
                    if (get!(a) != 0) == when {
                        jump!(t)
                    }
                }
                Op::JCmp { c, a, b, t } => {
                    if c.holds(int!(a), int!(b)) {
                        jump!(t)
                    }
                }
                Op::JCmpK { c, a, k, t } => {
                    if c.holds(int!(a), k as i64) {
                        jump!(t)
                    }
                }
                Op::JFCmp { op, when, a, b, t } => {
                    if compare(op, flt!(a).partial_cmp(&flt!(b))) == when {
                        jump!(t)
                    }
                }
                Op::JStrEq { eq, a, b, t } => {
                    let same = string!(a) == string!(b);
                    if same == eq {
                        jump!(t)
                    }
                }
                Op::JStrEqK { eq, a, k, t } => {
                    let same = eq_literal(code, get!(a), get!(a + 1), k);
                    if same == eq {
                        jump!(t)
                    }
                }
                Op::DivMagic { d, a, k } => {
                    let x = int!(a);
                    // SAFETY: `verify` checked `k` against the divisors.
                    let divisor = unsafe { *code.divisors.get_unchecked(k as usize) };
                    let q = if x >= 0 {
                        divisor.quotient(x)
                    } else {
                        x / divisor.k
                    };
                    set!(d, q as u64)
                }
                Op::RemMagic { d, a, k } => {
                    let x = int!(a);
                    // SAFETY: as above.
                    let divisor = unsafe { *code.divisors.get_unchecked(k as usize) };
                    // A positive divisor: floored is the truncated remainder made >= 0.
                    let r = if x >= 0 {
                        x - divisor.quotient(x) * divisor.k
                    } else {
                        x.rem_euclid(divisor.k)
                    };
                    set!(d, r as u64)
                }
                Op::JRemMagicZero { eq, a, k, t } => {
                    let x = int!(a);
                    // SAFETY: as above.
                    let divisor = unsafe { *code.divisors.get_unchecked(k as usize) };
                    let r = if x >= 0 {
                        x - divisor.quotient(x) * divisor.k
                    } else {
                        x % divisor.k
                    };
                    if (r == 0) == eq {
                        jump!(t)
                    }
                }
                Op::JMaskZero { eq, a, k, t } => {
                    if (int!(a) & i64::from(k) == 0) == eq {
                        jump!(t)
                    }
                }
                Op::JRemZero { eq, a, k, t } => {
                    if (rem_by(int!(a), k) == 0) == eq {
                        jump!(t)
                    }
                }
                Op::JTable { a, k } => {
                    let table = &code.tables[k as usize];
                    let at = int!(a).wrapping_sub(table.lo) as u64;
                    let t = match table.targets.get(at as usize) {
                        Some(&t) if at < table.targets.len() as u64 => t,
                        _ => table.default,
                    };
                    jump!(t);
                }
                Op::ForEnter { i, lp, t } => {
                    if int!(i) >= int!(i + 1) {
                        jump!(t)
                    } else {
                        tick!(lp)
                    }
                }
                Op::ForNext { i, lp, t } => {
                    back_edge!(lp);
                    // The index is below the bound: no overflow.
                    let next = int!(i) + 1;
                    set!(i, next as u64);
                    if next < int!(i + 1) {
                        tick!(lp);
                        jump!(t);
                    }
                }
                Op::ForNextJ { lp, i, t, exit } => {
                    let lp = u32::from(lp);
                    back_edge!(lp);
                    let next = int!(i) + 1;
                    set!(i, next as u64);
                    if next < int!(i + 1) {
                        tick!(lp);
                        jump!(t);
                    } else {
                        jump!(exit);
                    }
                }
                Op::Tick { lp } => tick!(lp),
                Op::BackEdge { lp } => {
                    back_edge!(lp);
                }
                Op::WhileNextK { c, lp, a, k, t } => {
                    back_edge!(u32::from(lp));
                    if c.holds(int!(a), k as i64) {
                        tick!(u32::from(lp));
                        jump!(t);
                    }
                }
                Op::LoopCmpK { c, lp, a, k, t } => {
                    if c.holds(int!(a), k as i64) {
                        back_edge!(u32::from(lp));
                        tick!(u32::from(lp));
                        jump!(t);
                    }
                }
                Op::LoopCmp { c, lp, a, b, t } => {
                    if c.holds(int!(a), int!(b)) {
                        back_edge!(u32::from(lp));
                        tick!(u32::from(lp));
                        jump!(t);
                    }
                }
                Op::Charge { k, cost } => self.charge_only(cost, k)?,
                Op::Invoke { d, k } => {
                    let branch = self.invoke(code, k)?;
                    refresh!();
                    set!(d, u64::from(branch));
                }
                Op::Print { k } => {
                    self.print(code, k)?;
                    refresh!();
                }
                Op::Format { d, a, k } => {
                    let (buffer, ty) = format_type(k);
                    let (p, l) = self.state.format_conversion(buffer, ty, get!(a));
                    refresh!();
                    set!(d, p);
                    set!(d + 1, l);
                }
                Op::AccStr { d, a, k } => {
                    self.acc_str(d, a, k);
                    refresh!();
                }
                Op::OwnStr { d, a, k } => {
                    self.own_str(d, a, k);
                    refresh!();
                }
                Op::Value { k } => self.value = k,
                Op::Fail { k } => return Err(fail(code, k)),
                Op::Trace { k } => {
                    self.trace(code, k);
                    refresh!();
                }
                Op::End => return Ok((self.value != u32::MAX).then_some(ValueId(self.value))),
            }
        }
    }

    /// Copies the `str` at `a` into accumulator field `d`'s other buffer (first buffer `k`),
    /// which becomes current.
    #[inline(never)]
    fn acc_str(&mut self, d: u32, a: u32, k: u32) {
        let (a, d, k) = (a as usize, d as usize, k as usize);
        let state = &mut *self.state;
        let (p, l) = (state.frame[a], state.frame[a + 1]);
        let half = !state.current_half[k];
        state.current_half[k] = half;
        let buffer = &mut state.buffers[k + usize::from(half)];
        buffer.clear();
        // SAFETY: (p, l) is a live string (see `text`), never the buffer written: the field's
        // other half is current and the source is not this field's buffer being rewritten.
        buffer.push_str(unsafe { text(p, l) });
        state.frame[d] = buffer.as_ptr() as u64;
        state.frame[d + 1] = buffer.len() as u64;
    }

    /// Copies the `str` at `a` into the buffer `k` of local `d`.
    #[inline(never)]
    fn own_str(&mut self, d: u32, a: u32, k: u32) {
        let (a, d) = (a as usize, d as usize);
        let state = &mut *self.state;
        let (p, l) = (state.frame[a], state.frame[a + 1]);
        let buffer = &mut state.buffers[k as usize];
        buffer.clear();
        // SAFETY: a live string (see `text`), never this buffer (only this op writes it, and
        // the local it backs is not in scope at the source).
        buffer.push_str(unsafe { text(p, l) });
        state.frame[d] = buffer.as_ptr() as u64;
        state.frame[d + 1] = buffer.len() as u64;
    }

    #[inline(never)]
    fn trace(&mut self, code: &Bytecode, k: u32) {
        let site = &code.traces[k as usize];
        let on = if site.all {
            self.trace_all
        } else {
            self.trace_dispatches
        };
        if on {
            self.write_trace(&site.name, site.marker, site.value);
        }
    }

    /// The error of the failed int op just before `pc`.
    #[cold]
    #[inline(never)]
    fn int_error(&self, code: &Bytecode, pc: usize, error: ErrorCode, symbol: &str) -> Trap {
        let (event, span) = site_of(code, pc);
        Trap::error(error, arith::describe(error, symbol), event, span)
    }

    /// A host dispatch: arguments from their words, fuel, the call, its branch.
    #[inline(never)]
    fn invoke(&mut self, code: &Bytecode, k: u32) -> Result<u32, Trap> {
        let site = &code.invokes[k as usize];
        let event = &self.program.events[site.event as usize];
        let host = &self.events[event.host];
        self.state.args.clear();
        for arg in &site.args {
            let at = arg.at as usize;
            match arg.format_into {
                Some(buffer) => {
                    let bits = self.state.frame[at];
                    let (p, l) = self.state.format_conversion(buffer as usize, arg.ty, bits);
                    self.state.args.push(p);
                    self.state.args.push(l);
                }
                None => {
                    let words = arg.ty.words() as usize;
                    let state = &mut *self.state;
                    state.args.extend_from_slice(&state.frame[at..at + words]);
                }
            }
        }
        self.charge(event.cost, site.event + 1)?;
        match &host.implementation {
            Implementation::Closure(closure) => {
                let function = &closure.erased;
                let plan = &self.layout.replies[site.site as usize];
                let state = &mut *self.state;
                if plan.obligations.is_some() {
                    let args = std::mem::take(&mut state.args);
                    state.release_arguments(plan, &args);
                    state.args = args;
                }
                let mut out = ReplyOut {
                    frame: &mut state.frame,
                    buffers: &mut state.buffers,
                    plan,
                    run: crate::host::RunView {
                        output: self.output,
                        output_used: std::cell::Cell::from_mut(&mut state.output_used),
                        output_limit: state.output_limit,
                        handles_opened: state.handles_opened,
                    },
                };
                state.calling = site.site;
                match function(&state.args, &mut out) {
                    Ok(branch) => {
                        state.record_opened(plan, branch).map_err(Trap::Error)?;
                        Ok(branch)
                    }
                    Err(error) => Err(Trap::error(
                        ErrorCode::HostError,
                        error.into_message(),
                        Some(event.name.clone()),
                        site.span,
                    )),
                }
            }
            Implementation::Std(kind) => {
                // SAFETY: the checker gave std events exactly one `str` input, so the
                // arguments are one (pointer, length) pair of live UTF-8.
                let text = unsafe { text(self.state.args[0], self.state.args[1]) };
                self.state
                    .write_std(self.output, *kind, text)
                    .map_err(Trap::Exhausted)?;
                Ok(0)
            }
            Implementation::Missing => Err(Trap::error(
                ErrorCode::HostError,
                format!("event `{}` has no implementation", event.name),
                Some(event.name.clone()),
                site.span,
            )),
        }
    }

    /// `std.io:print.ln` with its holes already evaluated: formatted within the room the output
    /// bound leaves, charged, written.
    #[inline(never)]
    fn print(&mut self, code: &Bytecode, k: u32) -> Result<(), Trap> {
        use std::fmt::Write;
        let site = &code.prints[k as usize];
        let event = &self.program.events[site.event as usize];
        let mut buffer = std::mem::take(&mut self.state.text);
        let mut bounded = BoundedText::new(&mut buffer, self.state.output_room());
        for part in &site.parts {
            match part {
                PrintPart::Text(t) => bounded.push(t),
                PrintPart::Hole { at, ty } => {
                    let at = *at as usize;
                    let bits = self.state.frame[at];
                    match ty {
                        Type::Str => {
                            let len = self.state.frame[at + 1];
                            // SAFETY: str words hold live strings (see `text`).
                            bounded.push(unsafe { text(bits, len) });
                        }
                        Type::Int => bounded.push(itoa::Buffer::new().format(bits as i64)),
                        Type::Float => {
                            if !bounded.cut() {
                                let _ = write!(bounded, "{}", f64::from_bits(bits));
                            }
                        }
                        Type::Bool => bounded.push(if bits != 0 { "true" } else { "false" }),
                    }
                }
            }
        }
        let mut written = self.charge(event.cost, site.event + 1);
        if written.is_ok() {
            bounded.push("\n");
            if let Err(limit) = self.state.finish_write(self.output, Stream::Out, &bounded) {
                written = Err(Trap::Exhausted(limit));
            }
        }
        self.state.text = buffer;
        written
    }
}
