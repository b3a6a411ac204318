//! The interpreter's register bytecode, compiled once per flow from the typed IR and the layout.
//!
//! Operands are words of the flow state: the layout's offsets for locals (so the interpreter and
//! native code share one frame, and on-stack replacement stays a jump at the same loop heads),
//! and temporaries above the layout's words for the values of nested expressions. Types are
//! static, so opcodes are typed (`int` ops checked, with immediate forms; float ops; fused
//! compare-and-branch) and nothing carries a tag. Control flow is explicit: the compiler passes
//! each step the continuation of its value (join, record the flow's result, or map to an inlined
//! subflow's exit), so a step's value never exists at run time except for the last flow.
//!
//! [`Bytecode::compile`] checks every operand against the frame size and every jump against the
//! code length once, which is what lets [`super::Exec::exec`] index without bounds checks.

use crate::host::TraceMarker;
use crate::ir::*;
use crate::layout::{Layout, NO_BUFFER};
use crate::span::Span;
use crate::types::Type;
use std::sync::Arc;

/// An index into [`Bytecode::ops`].
pub(crate) type Pc = u32;

/// A comparison of two ints or of an int with an immediate, as a jump condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cond {
    fn of(op: CmpOp) -> Cond {
        match op {
            CmpOp::Eq => Cond::Eq,
            CmpOp::Ne => Cond::Ne,
            CmpOp::Lt => Cond::Lt,
            CmpOp::Le => Cond::Le,
            CmpOp::Gt => Cond::Gt,
            CmpOp::Ge => Cond::Ge,
        }
    }

    fn negate(self) -> Cond {
        match self {
            Cond::Lt => Cond::Ge,
            Cond::Le => Cond::Gt,
            Cond::Gt => Cond::Le,
            Cond::Ge => Cond::Lt,
            Cond::Eq => Cond::Ne,
            Cond::Ne => Cond::Eq,
        }
    }

    /// The condition with its operands swapped (`a < b` is `b > a`).
    fn swap(self) -> Cond {
        match self {
            Cond::Lt => Cond::Gt,
            Cond::Le => Cond::Ge,
            Cond::Gt => Cond::Lt,
            Cond::Ge => Cond::Le,
            c => c,
        }
    }

    #[inline(always)]
    pub(crate) fn holds(self, a: i64, b: i64) -> bool {
        match self {
            Cond::Lt => a < b,
            Cond::Le => a <= b,
            Cond::Gt => a > b,
            Cond::Ge => a >= b,
            Cond::Eq => a == b,
            Cond::Ne => a != b,
        }
    }
}

/// One instruction. `d` is the word written, `a`/`b` the words read, `k` an immediate or an
/// index into one of the side tables, `t` a jump target. A `str` operand is two words (pointer,
/// length) from its offset. 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Op {
    Mov {
        d: u32,
        a: u32,
    },
    Mov2 {
        d: u32,
        a: u32,
    },
    Const {
        d: u32,
        k: u64,
    },
    /// A literal `str` ([`Bytecode::strs`]) into a pair.
    Str {
        d: u32,
        k: u32,
    },

    Add {
        d: u32,
        a: u32,
        b: u32,
    },
    Sub {
        d: u32,
        a: u32,
        b: u32,
    },
    Mul {
        d: u32,
        a: u32,
        b: u32,
    },
    Div {
        d: u32,
        a: u32,
        b: u32,
    },
    Rem {
        d: u32,
        a: u32,
        b: u32,
    },
    /// `d = (a % b == 0) == eq`: `DivisionByZero` when `b` is 0 (a floored remainder is 0
    /// exactly when the truncated one is).
    RemZero {
        eq: bool,
        d: u32,
        a: u32,
        b: u32,
    },
    AddK {
        d: u32,
        a: u32,
        k: i32,
    },
    SubK {
        d: u32,
        a: u32,
        k: i32,
    },
    MulK {
        d: u32,
        a: u32,
        k: i32,
    },
    /// `k` is neither 0 nor -1 (no error is possible).
    DivK {
        d: u32,
        a: u32,
        k: i32,
    },
    /// `k` is not 0 (no error is possible); floored.
    RemK {
        d: u32,
        a: u32,
        k: i32,
    },
    Neg {
        d: u32,
        a: u32,
    },

    FAdd {
        d: u32,
        a: u32,
        b: u32,
    },
    FSub {
        d: u32,
        a: u32,
        b: u32,
    },
    FMul {
        d: u32,
        a: u32,
        b: u32,
    },
    FDiv {
        d: u32,
        a: u32,
        b: u32,
    },
    FRem {
        d: u32,
        a: u32,
        b: u32,
    },
    FNeg {
        d: u32,
        a: u32,
    },
    IntToFloat {
        d: u32,
        a: u32,
    },
    FloatToInt {
        d: u32,
        a: u32,
    },

    /// `d = a <cond> b` (ints and bools).
    Cmp {
        c: Cond,
        d: u32,
        a: u32,
        b: u32,
    },
    CmpK {
        c: Cond,
        d: u32,
        a: u32,
        k: i32,
    },
    /// `d = (a <op> b) == when` over floats (`when` false is the negation, NaN included).
    FCmp {
        op: CmpOp,
        d: u32,
        a: u32,
        b: u32,
    },
    /// `d = (a == b) == eq` over strings.
    StrEq {
        eq: bool,
        d: u32,
        a: u32,
        b: u32,
    },
    StrEqK {
        eq: bool,
        d: u32,
        a: u32,
        k: u32,
    },
    Not {
        d: u32,
        a: u32,
    },

    Jmp {
        t: Pc,
    },
    /// Jump when the bool at `a` is `when`.
    JBool {
        when: bool,
        a: u32,
        t: Pc,
    },
    JCmp {
        c: Cond,
        a: u32,
        b: u32,
        t: Pc,
    },
    JCmpK {
        c: Cond,
        a: u32,
        k: i32,
        t: Pc,
    },
    /// Jump when `(a <op> b) == when` over floats.
    JFCmp {
        op: CmpOp,
        when: bool,
        a: u32,
        b: u32,
        t: Pc,
    },
    JStrEq {
        eq: bool,
        a: u32,
        b: u32,
        t: Pc,
    },
    JStrEqK {
        eq: bool,
        a: u32,
        k: u32,
        t: Pc,
    },
    /// Jump when `(a % k == 0) == eq` (`k` not 0: no error; a floored remainder is 0 exactly
    /// when the truncated one is).
    JRemZero {
        eq: bool,
        a: u32,
        k: i32,
        t: Pc,
    },
    /// `a / k` and floored `a % k` by a divisor `k` > 1 with its reciprocal
    /// ([`Bytecode::divisors`]`[k]`): a multiplication for a dividend >= 0, a division else.
    DivMagic {
        d: u32,
        a: u32,
        k: u32,
    },
    RemMagic {
        d: u32,
        a: u32,
        k: u32,
    },
    /// Jump when `(a % divisor == 0) == eq`, the divisor's reciprocal at
    /// [`Bytecode::divisors`]`[k]`.
    JRemMagicZero {
        eq: bool,
        a: u32,
        k: u32,
        t: Pc,
    },
    /// Jump when `(a & k == 0) == eq`: `a % (k + 1) == 0` for a power of two `k + 1`.
    JMaskZero {
        eq: bool,
        a: u32,
        k: i32,
        t: Pc,
    },
    /// Jump through [`Bytecode::tables`]`[k]` on the int at `a`.
    JTable {
        a: u32,
        k: u32,
    },

    /// Enters a `for` loop whose index is at `i` and bound at `i + 1`: to `t` when it runs no
    /// iteration, else counts the first.
    ForEnter {
        i: u32,
        lp: u32,
        t: Pc,
    },
    /// A `for` loop's back-edge: tiering, the next index, and to `t` (the body) with the
    /// iteration counted while the index is below the bound.
    ForNext {
        i: u32,
        lp: u32,
        t: Pc,
    },
    /// A jump to a `for` loop's back-edge, merged with it: as [`Op::ForNext`], but to `exit`
    /// (the op after that back-edge) when the loop ends.
    ForNextJ {
        lp: u16,
        i: u32,
        t: Pc,
        exit: Pc,
    },
    /// Counts an iteration of loop `lp` (a `while` body).
    Tick {
        lp: u32,
    },
    /// A `while` loop's back-edge: tiering (on the rotated condition's paths into the body
    /// that a [`Op::LoopCmp`] does not take).
    BackEdge {
        lp: u32,
    },
    /// A `while` loop's back-edge and condition `a <c> k` in one: tiering, then to `t` (the
    /// body) with the iteration counted while the condition holds.
    WhileNextK {
        c: Cond,
        lp: u16,
        a: u32,
        k: i32,
        t: Pc,
    },
    /// The rotated condition's jump back into the body: tiering (the back-edge: the
    /// condition has no effect but its errors, which native code entered at the loop head
    /// would raise the same), the iteration counted, then to `t`.
    LoopCmpK {
        c: Cond,
        lp: u16,
        a: u32,
        k: i32,
        t: Pc,
    },
    LoopCmp {
        c: Cond,
        lp: u16,
        a: u32,
        b: u32,
        t: Pc,
    },

    /// Charges a subflow (or mock) call: fuel, and `last_event` code `k`.
    Charge {
        k: u32,
        cost: u64,
    },
    /// A host dispatch ([`Bytecode::invokes`]`[k]`): its branch into `d`.
    Invoke {
        d: u32,
        k: u32,
    },
    /// A `std.io:print.ln` template ([`Bytecode::prints`]`[k]`).
    Print {
        k: u32,
    },
    /// Formats the scalar at `a` into conversion buffer `k` (low 30 bits; type in the top two):
    /// the pair into `d`.
    Format {
        d: u32,
        a: u32,
        k: u32,
    },
    /// Copies the `str` at `a` into accumulator field `d`'s other buffer (first buffer `k`).
    AccStr {
        d: u32,
        a: u32,
        k: u32,
    },
    /// Copies the `str` at `a` into the buffer `k` of local `d`.
    OwnStr {
        d: u32,
        a: u32,
        k: u32,
    },

    /// The value of the last top-level flow so far.
    Value {
        k: u32,
    },
    /// A run-time error with no operands ([`Bytecode::fails`]`[k]`).
    Fail {
        k: u32,
    },
    /// A trace line ([`Bytecode::traces`]`[k]`).
    Trace {
        k: u32,
    },
    End,
}

const _: () = assert!(std::mem::size_of::<Op>() == 16);

/// A divisor `k` > 1 and its reciprocal: for every `0 <= a < 2^63`,
/// `a / k == mulhi(a, magic) >> shift` (Granlund and Montgomery: with `l = ceil(log2 k)` and
/// `magic = ceil(2^(63 + l) / k)`, which is below `2^64`, the quotient is exact for 63-bit
/// dividends; `shift = l - 1` because the high word is already `>> 64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Divisor {
    pub k: i64,
    pub magic: u64,
    pub shift: u32,
}

impl Divisor {
    pub(crate) fn new(k: i64) -> Divisor {
        assert!(k > 1);
        let l = 64 - (k as u64 - 1).leading_zeros();
        let numerator = 1u128 << (63 + l);
        let magic = numerator.div_ceil(k as u128);
        Divisor {
            k,
            magic: u64::try_from(magic).expect("below 2^64"),
            shift: l - 1,
        }
    }

    /// `a / k` for `a >= 0`.
    #[inline(always)]
    pub(crate) fn quotient(self, a: i64) -> i64 {
        let high = ((a as u128 * self.magic as u128) >> 64) as u64;
        (high >> self.shift) as i64
    }
}

/// A literal as the executor reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lit {
    pub ptr: u64,
    pub len: u64,
    pub key: (u64, u64),
}

/// A jump table: values `lo..lo + targets.len()` jump to their target, others to `default`.
#[derive(Debug)]
pub(crate) struct Table {
    pub lo: i64,
    pub targets: Vec<Pc>,
    pub default: Pc,
}

#[derive(Debug)]
pub(crate) struct InvokeSite {
    /// Index in [`Program::events`].
    pub event: u32,
    pub site: u32,
    pub span: Span,
    pub args: Vec<ArgWord>,
}

/// Where an argument's words are, and whether it is formatted into a conversion buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ArgWord {
    pub at: u32,
    pub ty: Type,
    pub format_into: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct PrintSite {
    pub event: u32,
    pub parts: Vec<PrintPart>,
}

#[derive(Debug)]
pub(crate) enum PrintPart {
    Text(Box<str>),
    Hole { at: u32, ty: Type },
}

#[derive(Debug)]
pub(crate) struct FailSite {
    pub message: String,
    pub event: Option<Arc<str>>,
    pub span: Span,
}

#[derive(Debug)]
pub(crate) struct TraceSite {
    pub name: Arc<str>,
    pub marker: TraceMarker,
    pub value: ValueId,
    /// Written only when everything is traced (not at the dispatch level).
    pub all: bool,
}

/// What a run-time error of an int op reports.
#[derive(Debug)]
pub(crate) struct OpSite {
    pub pc: Pc,
    pub site: ErrorSite,
}

/// A flow's bytecode and its side tables.
#[derive(Debug, Default)]
pub(crate) struct Bytecode {
    pub ops: Vec<Op>,
    /// Words of the frame the code uses: the layout's, then the temporaries.
    pub frame_words: u32,
    /// Loops of the program (every op's loop is below).
    pub loops: u32,
    pub strs: Vec<Arc<str>>,
    /// For each literal of at most 16 bytes, [`window_key`] of its bytes.
    pub str_keys: Vec<(u64, u64)>,
    /// For each literal: its (pointer, length) and [`window_key`], in one place for the
    /// executor (the text is kept alive by `strs`).
    pub lits: Vec<Lit>,
    /// Divisors by reciprocal multiplication (see [`Divisor`]).
    pub divisors: Vec<Divisor>,
    pub tables: Vec<Table>,
    pub invokes: Vec<InvokeSite>,
    pub prints: Vec<PrintSite>,
    pub fails: Vec<FailSite>,
    pub traces: Vec<TraceSite>,
    /// Sorted by pc: the error site of each op that can fail.
    pub sites: Vec<OpSite>,
    /// The constants the prologue writes above the layout's words, then the literals it
    /// writes as (pointer, length) pairs after them.
    pub consts: Vec<u64>,
    pub str_consts: Vec<Arc<str>>,
}

impl Bytecode {
    /// Bytes of heap the code holds.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.ops.capacity() * size_of::<Op>()
            + self.strs.capacity() * size_of::<Arc<str>>()
            + self.str_keys.capacity() * size_of::<(u64, u64)>()
            + self.lits.capacity() * size_of::<Lit>()
            + self.divisors.capacity() * size_of::<Divisor>()
            + self.consts.capacity() * 8
            + self.str_consts.capacity() * size_of::<Arc<str>>()
            + self
                .tables
                .iter()
                .map(|t| size_of::<Table>() + t.targets.capacity() * 4)
                .sum::<usize>()
            + self
                .invokes
                .iter()
                .map(|i| size_of::<InvokeSite>() + i.args.capacity() * size_of::<ArgWord>())
                .sum::<usize>()
            + self
                .prints
                .iter()
                .map(|p| size_of::<PrintSite>() + p.parts.capacity() * size_of::<PrintPart>())
                .sum::<usize>()
            + self
                .fails
                .iter()
                .map(|f| size_of::<FailSite>() + f.message.capacity())
                .sum::<usize>()
            + self.traces.capacity() * size_of::<TraceSite>()
            + self.sites.capacity() * size_of::<OpSite>()
    }

    /// The error site of the op at `pc`.
    pub fn site(&self, pc: Pc) -> Option<&ErrorSite> {
        self.sites
            .binary_search_by_key(&pc, |s| s.pc)
            .ok()
            .map(|i| &self.sites[i].site)
    }

    /// Compiles `program` over `layout`, in one pass: the constants the ops read from the frame
    /// (literals that do not fit an immediate) get words of their own numbering while the ops
    /// are emitted, placed above the temporaries at the end, and written once by a prologue.
    pub fn compile(program: &Program, layout: &Layout) -> Bytecode {
        let mut code = Compiler::new(program, layout).run();
        // Each pass is linear; removing jumps can make others jump to the next op, nested as
        // deep as the source's steps at most: a few passes, bounded whatever the source.
        for _ in 0..8 {
            if !code.thread_jumps() {
                break;
            }
        }
        code.verify();
        code
    }

    /// Every word an op reads or writes, and every jump target, is checked here once: this is
    /// what makes the executor's unchecked indexing sound. A failure is a compiler bug.
    fn verify(&self) {
        let words = self.frame_words;
        let len = self.ops.len() as u32;
        let word = |w: u32, n: u32| assert!(w.checked_add(n).is_some_and(|e| e <= words));
        let target = |t: Pc| assert!(t < len);
        let in_loops = |lp: u32| assert!(lp < self.loops);
        assert_eq!(self.ops.last(), Some(&Op::End));
        assert_eq!(self.lits.len(), self.strs.len());
        for op in &self.ops {
            let mut op = *op;
            if let Some(t) = op.target_mut() {
                target(*t);
            }
            if let Some(t) = op.exit_mut() {
                target(*t);
            }
            match op {
                Op::Mov { d, a } | Op::Not { d, a } | Op::Neg { d, a } | Op::FNeg { d, a } => {
                    word(d, 1);
                    word(a, 1);
                }
                Op::IntToFloat { d, a } | Op::FloatToInt { d, a } => {
                    word(d, 1);
                    word(a, 1);
                }
                Op::Mov2 { d, a } => {
                    word(d, 2);
                    word(a, 2);
                }
                Op::Const { d, .. } => word(d, 1),
                Op::Str { d, k } => {
                    word(d, 2);
                    assert!((k as usize) < self.strs.len());
                }
                Op::Add { d, a, b }
                | Op::Sub { d, a, b }
                | Op::Mul { d, a, b }
                | Op::Div { d, a, b }
                | Op::Rem { d, a, b }
                | Op::RemZero { d, a, b, .. }
                | Op::FAdd { d, a, b }
                | Op::FSub { d, a, b }
                | Op::FMul { d, a, b }
                | Op::FDiv { d, a, b }
                | Op::FRem { d, a, b }
                | Op::Cmp { d, a, b, .. }
                | Op::FCmp { d, a, b, .. } => {
                    word(d, 1);
                    word(a, 1);
                    word(b, 1);
                }
                Op::AddK { d, a, .. }
                | Op::SubK { d, a, .. }
                | Op::MulK { d, a, .. }
                | Op::CmpK { d, a, .. } => {
                    word(d, 1);
                    word(a, 1);
                }
                Op::DivK { d, a, k } => {
                    assert!(k != 0 && k != -1);
                    word(d, 1);
                    word(a, 1);
                }
                Op::RemK { d, a, k } => {
                    assert!(k != 0);
                    word(d, 1);
                    word(a, 1);
                }
                Op::StrEq { d, a, b, .. } => {
                    word(d, 1);
                    word(a, 2);
                    word(b, 2);
                }
                Op::StrEqK { d, a, k, .. } => {
                    word(d, 1);
                    word(a, 2);
                    assert!((k as usize) < self.strs.len());
                }
                Op::Jmp { .. } => {}
                Op::JBool { a, .. } | Op::JCmpK { a, .. } => word(a, 1),
                Op::JMaskZero { a, .. } => word(a, 1),
                Op::DivMagic { d, a, k } | Op::RemMagic { d, a, k } => {
                    assert!((k as usize) < self.divisors.len());
                    word(d, 1);
                    word(a, 1);
                }
                Op::JRemMagicZero { a, k, .. } => {
                    assert!((k as usize) < self.divisors.len());
                    word(a, 1);
                }
                Op::JRemZero { a, k, .. } => {
                    assert!(k != 0);
                    word(a, 1);
                }
                Op::JCmp { a, b, .. } | Op::JFCmp { a, b, .. } => {
                    word(a, 1);
                    word(b, 1);
                }
                Op::JStrEq { a, b, .. } => {
                    word(a, 2);
                    word(b, 2);
                }
                Op::JStrEqK { a, k, .. } => {
                    word(a, 2);
                    assert!((k as usize) < self.strs.len());
                }
                Op::JTable { a, k } => {
                    word(a, 1);
                    let table = &self.tables[k as usize];
                    target(table.default);
                    table.targets.iter().for_each(|&t| target(t));
                }
                Op::ForEnter { i, lp, .. } | Op::ForNext { i, lp, .. } => {
                    word(i, 2);
                    in_loops(lp);
                }
                Op::ForNextJ { i, lp, .. } => {
                    word(i, 2);
                    in_loops(u32::from(lp));
                }
                Op::Tick { lp } | Op::BackEdge { lp } => in_loops(lp),
                Op::Charge { .. } | Op::Value { .. } => {}
                Op::WhileNextK { a, lp, .. } | Op::LoopCmpK { a, lp, .. } => {
                    word(a, 1);
                    in_loops(u32::from(lp));
                }
                Op::LoopCmp { a, b, lp, .. } => {
                    word(a, 1);
                    word(b, 1);
                    in_loops(u32::from(lp));
                }
                Op::Invoke { d, k } => {
                    word(d, 1);
                    for arg in &self.invokes[k as usize].args {
                        word(arg.at, arg.ty.words());
                    }
                }
                Op::Print { k } => {
                    for part in &self.prints[k as usize].parts {
                        if let PrintPart::Hole { at, ty } = part {
                            word(*at, ty.words());
                        }
                    }
                }
                Op::Format { d, a, .. } => {
                    word(d, 2);
                    word(a, 1);
                }
                Op::AccStr { d, a, .. } | Op::OwnStr { d, a, .. } => {
                    word(d, 2);
                    word(a, 2);
                }
                Op::Fail { k } => assert!((k as usize) < self.fails.len()),
                Op::Trace { k } => assert!((k as usize) < self.traces.len()),
                Op::End => {}
            }
        }
    }

    /// A `str` literal's index in [`Bytecode::strs`] (and `lits`, `str_keys`).
    fn add_literal(&mut self, text: &Arc<str>) -> u32 {
        // SAFETY: the text's own bytes.
        let key = unsafe { window_key(text.as_ptr(), text.len()) };
        self.str_keys.push(key);
        self.lits.push(Lit {
            ptr: text.as_ptr() as u64,
            len: text.len() as u64,
            key,
        });
        self.strs.push(text.clone());
        self.strs.len() as u32 - 1
    }

    /// Gives the constants (numbered from [`CONSTANT_WORDS`] while compiling) the words above
    /// the temporaries, and puts the prologue that writes them before the code.
    fn place_constants(
        &mut self,
        consts: &[u64],
        words: &std::collections::HashMap<u64, u32>,
        str_consts: &[Arc<str>],
        str_words: &std::collections::HashMap<Arc<str>, u32>,
    ) {
        if consts.is_empty() && str_consts.is_empty() {
            return;
        }
        let base = self.frame_words;
        let place = |w: &mut u32| {
            if *w >= CONSTANT_WORDS {
                *w = base + (*w - CONSTANT_WORDS);
            }
        };
        let mut count = 0;
        for op in &mut self.ops {
            op.words_mut(&mut |w| place(w));
        }
        for site in &mut self.invokes {
            site.args.iter_mut().for_each(|arg| place(&mut arg.at));
        }
        for site in &mut self.prints {
            for part in &mut site.parts {
                if let PrintPart::Hole { at, .. } = part {
                    place(at);
                }
            }
        }
        let mut prologue = Vec::with_capacity(consts.len() + str_consts.len());
        for bits in consts {
            let d = base + (words[bits] - CONSTANT_WORDS);
            prologue.push(Op::Const { d, k: *bits });
            count += 1;
        }
        for text in str_consts {
            let d = base + (str_words[text] - CONSTANT_WORDS);
            let k = self.add_literal(text);
            prologue.push(Op::Str { d, k });
            count += 2;
        }
        self.frame_words = base + count;
        // Every op moves up by the prologue's length.
        let shift = prologue.len() as u32;
        for op in &mut self.ops {
            if let Some(t) = op.target_mut() {
                *t += shift;
            }
            if let Some(t) = op.exit_mut() {
                *t += shift;
            }
        }
        for table in &mut self.tables {
            table.default += shift;
            table.targets.iter_mut().for_each(|t| *t += shift);
        }
        for site in &mut self.sites {
            site.pc += shift;
        }
        prologue.append(&mut self.ops);
        self.ops = prologue;
    }

    /// Jumps to jumps go to the final target; jumps to the next op disappear.
    fn thread_jumps(&mut self) -> bool {
        let final_target = |ops: &[Op], mut t: Pc| {
            for _ in 0..16 {
                match ops[t as usize] {
                    Op::Jmp { t: next } if next != t => t = next,
                    _ => break,
                }
            }
            t
        };
        // In place: an op already pointed at its final target, or a jump already merged into
        // a back-edge, leads where it did.
        for pc in 0..self.ops.len() {
            let mut op = self.ops[pc];
            if let Some(t) = op.target_mut() {
                *t = final_target(&self.ops, *t);
            }
            if let Some(t) = op.exit_mut() {
                *t = final_target(&self.ops, *t);
            }
            // A jump to a `for` back-edge is that back-edge (saves a dispatch per iteration
            // where a body's paths join at its end).
            if let Op::Jmp { t } = op {
                if let (Op::ForNext { i, lp, t: body }, false) =
                    (self.ops[t as usize], t as usize == pc + 1)
                {
                    if let Ok(lp) = u16::try_from(lp) {
                        op = Op::ForNextJ {
                            lp,
                            i,
                            t: final_target(&self.ops, body),
                            exit: final_target(&self.ops, t + 1),
                        };
                    }
                }
            }
            self.ops[pc] = op;
        }
        for table in &mut self.tables {
            table.default = final_target(&self.ops, table.default);
            for t in &mut table.targets {
                *t = final_target(&self.ops, *t);
            }
        }
        // Drop `Jmp` to the next op, renumbering everything (in place).
        let dropped = |pc: usize, op: &Op| matches!(op, Op::Jmp { t } if *t as usize == pc + 1);
        if !self.ops.iter().enumerate().any(|(pc, op)| dropped(pc, op)) {
            return false;
        }
        let mut new_pc = Vec::with_capacity(self.ops.len() + 1);
        let mut next = 0u32;
        for (pc, op) in self.ops.iter().enumerate() {
            new_pc.push(next);
            next += u32::from(!dropped(pc, op));
        }
        new_pc.push(next);
        // A dropped op's number is that of the op after it, which is where it jumped.
        let mut kept = 0;
        for pc in 0..self.ops.len() {
            let mut op = self.ops[pc];
            if dropped(pc, &op) {
                continue;
            }
            if let Some(t) = op.target_mut() {
                *t = new_pc[*t as usize];
            }
            if let Some(t) = op.exit_mut() {
                *t = new_pc[*t as usize];
            }
            self.ops[kept] = op;
            kept += 1;
        }
        self.ops.truncate(kept);
        for table in &mut self.tables {
            table.default = new_pc[table.default as usize];
            for t in &mut table.targets {
                *t = new_pc[*t as usize];
            }
        }
        for site in &mut self.sites {
            site.pc = new_pc[site.pc as usize];
        }
        true
    }
}

impl Op {
    fn target_mut(&mut self) -> Option<&mut Pc> {
        match self {
            Op::Jmp { t }
            | Op::JBool { t, .. }
            | Op::JCmp { t, .. }
            | Op::JCmpK { t, .. }
            | Op::JFCmp { t, .. }
            | Op::JStrEq { t, .. }
            | Op::JStrEqK { t, .. }
            | Op::JRemZero { t, .. }
            | Op::JMaskZero { t, .. }
            | Op::JRemMagicZero { t, .. }
            | Op::ForEnter { t, .. }
            | Op::ForNext { t, .. }
            | Op::ForNextJ { t, .. }
            | Op::WhileNextK { t, .. }
            | Op::LoopCmpK { t, .. }
            | Op::LoopCmp { t, .. } => Some(t),
            _ => None,
        }
    }

    /// Calls `f` with every frame word the op names (not a loop's index and bound, which are
    /// never constants).
    fn words_mut(&mut self, f: &mut impl FnMut(&mut u32)) {
        match self {
            Op::Add { d, a, b }
            | Op::Sub { d, a, b }
            | Op::Mul { d, a, b }
            | Op::Div { d, a, b }
            | Op::Rem { d, a, b }
            | Op::RemZero { d, a, b, .. }
            | Op::FAdd { d, a, b }
            | Op::FSub { d, a, b }
            | Op::FMul { d, a, b }
            | Op::FDiv { d, a, b }
            | Op::FRem { d, a, b }
            | Op::Cmp { d, a, b, .. }
            | Op::FCmp { d, a, b, .. }
            | Op::StrEq { d, a, b, .. } => {
                f(d);
                f(a);
                f(b);
            }
            Op::Mov { d, a }
            | Op::Mov2 { d, a }
            | Op::AddK { d, a, .. }
            | Op::SubK { d, a, .. }
            | Op::MulK { d, a, .. }
            | Op::DivK { d, a, .. }
            | Op::RemK { d, a, .. }
            | Op::Neg { d, a }
            | Op::FNeg { d, a }
            | Op::IntToFloat { d, a }
            | Op::FloatToInt { d, a }
            | Op::CmpK { d, a, .. }
            | Op::StrEqK { d, a, .. }
            | Op::Not { d, a }
            | Op::DivMagic { d, a, .. }
            | Op::RemMagic { d, a, .. }
            | Op::Format { d, a, .. }
            | Op::AccStr { d, a, .. }
            | Op::OwnStr { d, a, .. } => {
                f(d);
                f(a);
            }
            Op::Const { d, .. } | Op::Str { d, .. } | Op::Invoke { d, .. } => f(d),
            Op::JCmp { a, b, .. }
            | Op::JFCmp { a, b, .. }
            | Op::JStrEq { a, b, .. }
            | Op::LoopCmp { a, b, .. } => {
                f(a);
                f(b);
            }
            Op::JBool { a, .. }
            | Op::JCmpK { a, .. }
            | Op::JStrEqK { a, .. }
            | Op::JRemZero { a, .. }
            | Op::JRemMagicZero { a, .. }
            | Op::JMaskZero { a, .. }
            | Op::JTable { a, .. }
            | Op::WhileNextK { a, .. }
            | Op::LoopCmpK { a, .. } => f(a),
            Op::Jmp { .. }
            | Op::ForEnter { .. }
            | Op::ForNext { .. }
            | Op::ForNextJ { .. }
            | Op::Tick { .. }
            | Op::BackEdge { .. }
            | Op::Charge { .. }
            | Op::Print { .. }
            | Op::Value { .. }
            | Op::Fail { .. }
            | Op::Trace { .. }
            | Op::End => {}
        }
    }

    /// The second target of an op that has two.
    fn exit_mut(&mut self) -> Option<&mut Pc> {
        match self {
            Op::ForNextJ { exit, .. } => Some(exit),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Label(u32);

/// What follows a step's value.
enum K<'a> {
    /// Nothing uses it: go on at the label.
    Join(Label),
    /// It is the value of a top-level flow: record it, then go on at the label.
    Result(Label),
    /// It ends the body of an inlined subflow call: copy the exit's payload, then go on at the
    /// label of the exit's branch.
    Exit(&'a SubflowCall, &'a [Label]),
}

impl K<'_> {
    /// Tells continuations apart (for sharing an arm's code).
    fn id(&self) -> (u8, usize) {
        match self {
            K::Join(label) => (0, label.0 as usize),
            K::Result(label) => (1, label.0 as usize),
            K::Exit(call, _) => (2, *call as *const SubflowCall as usize),
        }
    }
}

/// Where a `str` operand is.
enum StrAt {
    Words(u32),
    Literal(u32),
}

struct Compiler<'p> {
    program: &'p Program,
    layout: &'p Layout,
    code: Bytecode,
    labels: Vec<Option<Pc>>,
    /// Ops whose jump target (or whose table entry) is a label: patched at the end.
    fixups: Vec<Fixup>,
    /// The next free temporary word.
    temp: u32,
    tracing: bool,
    /// Where the step of an arm was compiled, per (arm, continuation).
    arm_labels: std::collections::HashMap<(usize, (u8, usize)), Label>,
    /// Where the code of a subflow call's exit is, per (call, exit).
    exit_labels: std::collections::HashMap<(usize, usize), Label>,
    /// Constants read from the frame, and their words.
    constant_words: std::collections::HashMap<u64, u32>,
    consts: Vec<u64>,
    str_words: std::collections::HashMap<Arc<str>, u32>,
    str_consts: Vec<Arc<str>>,
    /// Constant words numbered so far (from [`CONSTANT_WORDS`]).
    constant_count: u32,
    /// In a rotated `while` condition: (the label of its "count and go on" block, the loop,
    /// the body).
    tick_jump: Option<(Label, u32, Label)>,
}

enum Fixup {
    Op(Pc, Label),
    Table(u32, Option<usize>, Label),
}

fn small(v: i64) -> Option<i32> {
    i32::try_from(v).ok()
}

impl<'p> Compiler<'p> {
    fn new(program: &'p Program, layout: &'p Layout) -> Compiler<'p> {
        // Room for a small flow's code without regrowing.
        let mut c = Compiler {
            program,
            layout,
            code: Bytecode::default(),
            labels: Vec::with_capacity(64),
            fixups: Vec::with_capacity(64),
            temp: layout.words,
            tracing: program.trace != crate::host::TraceLevel::Off,
            arm_labels: Default::default(),
            exit_labels: Default::default(),
            constant_words: Default::default(),
            consts: Vec::new(),
            str_words: Default::default(),
            str_consts: Vec::new(),
            constant_count: 0,
            tick_jump: None,
        };
        c.code.ops.reserve(64);
        c.code.frame_words = c.temp;
        c.code.loops = u32::try_from(program.loops.len()).expect("loops are counted in u32");
        c
    }

    fn run(mut self) -> Bytecode {
        for flow in &self.program.flows {
            let end = self.label();
            self.step(flow, &K::Result(end));
            self.bind(end);
        }
        self.emit(Op::End);
        let consts = std::mem::take(&mut self.consts);
        let str_consts = std::mem::take(&mut self.str_consts);
        let words = std::mem::take(&mut self.constant_words);
        let str_words = std::mem::take(&mut self.str_words);
        let mut code = self.into_code();
        code.place_constants(&consts, &words, &str_consts, &str_words);
        code.consts = consts;
        code.str_consts = str_consts;
        code
    }

    /// The index of divisor `k` (> 1) in the code's table.
    fn divisor(&mut self, k: i32) -> u32 {
        let k = i64::from(k);
        match self.code.divisors.iter().position(|d| d.k == k) {
            Some(i) => i as u32,
            None => {
                self.code.divisors.push(Divisor::new(k));
                self.code.divisors.len() as u32 - 1
            }
        }
    }

    /// The frame words that hold literal `text` (pointer, length) for the whole run.
    fn str_constant(&mut self, text: &Arc<str>) -> u32 {
        if let Some(&word) = self.str_words.get(text) {
            return word;
        }
        self.str_consts.push(text.clone());
        let word = CONSTANT_WORDS + self.constant_count;
        self.constant_count += 2;
        self.str_words.insert(text.clone(), word);
        word
    }

    /// The frame word that holds the constant `bits` for the whole run.
    fn constant(&mut self, bits: u64) -> u32 {
        if let Some(&word) = self.constant_words.get(&bits) {
            return word;
        }
        self.consts.push(bits);
        let word = CONSTANT_WORDS + self.constant_count;
        self.constant_count += 1;
        self.constant_words.insert(bits, word);
        word
    }

    fn pc(&self) -> Pc {
        self.code.ops.len() as Pc
    }

    fn emit(&mut self, op: Op) -> Pc {
        let pc = self.pc();
        self.code.ops.push(op);
        pc
    }

    fn emit_at(&mut self, op: Op, site: &ErrorSite) {
        let pc = self.emit(op);
        self.code.sites.push(OpSite {
            pc,
            site: site.clone(),
        });
    }

    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() as u32 - 1)
    }

    fn bind(&mut self, label: Label) {
        self.labels[label.0 as usize] = Some(self.pc());
    }

    /// Emits a jump op whose target is `label`. A comparison jumping to the rotated `while`
    /// condition's "count and go on" block counts the iteration itself and jumps to the body.
    fn jump(&mut self, op: Op, label: Label) {
        if let Some((tick, lp, body)) = self.tick_jump {
            if let (true, Ok(lp)) = (label == tick, u16::try_from(lp)) {
                let fused = match op {
                    Op::JCmpK { c, a, k, .. } => Some(Op::LoopCmpK { c, lp, a, k, t: 0 }),
                    Op::JCmp { c, a, b, .. } => Some(Op::LoopCmp { c, lp, a, b, t: 0 }),
                    Op::JBool { when, a, .. } => Some(Op::LoopCmpK {
                        c: if when { Cond::Ne } else { Cond::Eq },
                        lp,
                        a,
                        k: 0,
                        t: 0,
                    }),
                    _ => None,
                };
                if let Some(fused) = fused {
                    let pc = self.emit(fused);
                    self.fixups.push(Fixup::Op(pc, body));
                    return;
                }
            }
        }
        let pc = self.emit(op);
        self.fixups.push(Fixup::Op(pc, label));
    }

    fn into_code(mut self) -> Bytecode {
        for fixup in std::mem::take(&mut self.fixups) {
            match fixup {
                Fixup::Op(pc, label) => {
                    let to = self.labels[label.0 as usize].expect("every label is bound");
                    *self.code.ops[pc as usize].target_mut().expect("a jump op") = to;
                }
                Fixup::Table(k, entry, label) => {
                    let to = self.labels[label.0 as usize].expect("every label is bound");
                    let table = &mut self.code.tables[k as usize];
                    match entry {
                        Some(i) => table.targets[i] = to,
                        None => table.default = to,
                    }
                }
            }
        }
        self.code.frame_words = self.code.frame_words.max(self.layout.words);
        self.code
    }

    fn temps(&mut self, words: u32) -> u32 {
        let at = self.temp;
        self.temp += words;
        self.code.frame_words = self.code.frame_words.max(self.temp);
        at
    }

    fn offset(&self, local: LocalId) -> u32 {
        self.layout.slot(local).offset
    }

    fn literal(&mut self, text: &Arc<str>) -> u32 {
        self.code.add_literal(text)
    }

    fn fail(&mut self, message: String, event: Option<Arc<str>>, span: Span) {
        self.code.fails.push(FailSite {
            message,
            event,
            span,
        });
        let k = self.code.fails.len() as u32 - 1;
        self.emit(Op::Fail { k });
    }

    fn trace(&mut self, name: &Arc<str>, marker: TraceMarker, value: ValueId, all: bool) {
        if !self.tracing {
            return;
        }
        self.code.traces.push(TraceSite {
            name: name.clone(),
            marker,
            value,
            all,
        });
        let k = self.code.traces.len() as u32 - 1;
        self.emit(Op::Trace { k });
    }

    // ---- expressions -------------------------------------------------------------------

    /// The word holding non-`str` `e`: a local's own, or a temporary it is evaluated into.
    fn operand(&mut self, e: &Expr) -> u32 {
        match e {
            Expr::Local(local, _) => return self.offset(*local),
            Expr::Int(v) => return self.constant(*v as u64),
            Expr::Float(v) => return self.constant(v.to_bits()),
            Expr::Bool(v) => return self.constant(u64::from(*v)),
            _ => {}
        }
        let at = self.temps(1);
        self.expr(e, at);
        at
    }

    /// Evaluates non-`str` `e` into word `d`, which is written last on every path (so `e` may
    /// read `d`).
    fn expr(&mut self, e: &Expr, d: u32) {
        let mark = self.temp;
        match e {
            Expr::Int(v) => {
                self.emit(Op::Const { d, k: *v as u64 });
            }
            Expr::Float(v) => {
                self.emit(Op::Const { d, k: v.to_bits() });
            }
            Expr::Bool(v) => {
                self.emit(Op::Const {
                    d,
                    k: u64::from(*v),
                });
            }
            Expr::Local(local, _) => {
                let a = self.offset(*local);
                if a != d {
                    self.emit(Op::Mov { d, a });
                }
            }
            Expr::NegInt(x, site) => {
                let a = self.operand(x);
                self.emit_at(Op::Neg { d, a }, site);
            }
            Expr::NegFloat(x) => {
                let a = self.operand(x);
                self.emit(Op::FNeg { d, a });
            }
            Expr::Not(x) => {
                let a = self.operand(x);
                self.emit(Op::Not { d, a });
            }
            Expr::IntArith(op, x, y, site) => self.int_arith(*op, x, y, site, d),
            Expr::FloatArith(op, x, y) => {
                let a = self.operand(x);
                // `@as(float, k) * @as(float, k)`: one conversion.
                let b = if same_conversion(x, y) {
                    a
                } else {
                    self.operand(y)
                };
                self.emit(match op {
                    FloatOp::Add => Op::FAdd { d, a, b },
                    FloatOp::Sub => Op::FSub { d, a, b },
                    FloatOp::Mul => Op::FMul { d, a, b },
                    FloatOp::Div => Op::FDiv { d, a, b },
                    FloatOp::Rem => Op::FRem { d, a, b },
                });
            }
            // `x % y == 0` with a divisor that is not a literal: one op.
            Expr::IntCmp(op @ (CmpOp::Eq | CmpOp::Ne), x, y)
                if matches!(**y, Expr::Int(0))
                    && matches!(**x, Expr::IntArith(IntOp::Rem, ..))
                    && rem_by_constant(x).is_none() =>
            {
                let Expr::IntArith(IntOp::Rem, x, y, site) = &**x else {
                    unreachable!("matched")
                };
                let a = self.operand(x);
                let b = self.operand(y);
                let eq = *op == CmpOp::Eq;
                self.emit_at(Op::RemZero { eq, d, a, b }, site);
            }
            Expr::IntCmp(op, x, y) | Expr::BoolCmp(op, x, y) => {
                let c = Cond::of(*op);
                if let Some(k) = int_literal(y) {
                    let a = self.operand(x);
                    self.emit(Op::CmpK { c, d, a, k });
                } else if let Some(k) = int_literal(x) {
                    let a = self.operand(y);
                    self.emit(Op::CmpK {
                        c: c.swap(),
                        d,
                        a,
                        k,
                    });
                } else {
                    let a = self.operand(x);
                    let b = self.operand(y);
                    self.emit(Op::Cmp { c, d, a, b });
                }
            }
            Expr::FloatCmp(op, x, y) => {
                let a = self.operand(x);
                let b = self.operand(y);
                self.emit(Op::FCmp { op: *op, d, a, b });
            }
            Expr::StrCmp(op, x, y) => {
                let eq = *op == CmpOp::Eq;
                match (self.str_at(x), self.str_at(y)) {
                    (StrAt::Words(a), StrAt::Literal(k)) | (StrAt::Literal(k), StrAt::Words(a)) => {
                        self.emit(Op::StrEqK { eq, d, a, k });
                    }
                    (a, b) => {
                        let a = self.str_words(a);
                        let b = self.str_words(b);
                        self.emit(Op::StrEq { eq, d, a, b });
                    }
                }
            }
            Expr::And(..) | Expr::Or(..) => {
                let no = self.label();
                let end = self.label();
                self.cond(e, false, no);
                self.emit(Op::Const { d, k: 1 });
                self.jump(Op::Jmp { t: 0 }, end);
                self.bind(no);
                self.emit(Op::Const { d, k: 0 });
                self.bind(end);
            }
            Expr::IntToFloat(x) => {
                let a = self.operand(x);
                self.emit(Op::IntToFloat { d, a });
            }
            Expr::FloatToInt(x, site) => {
                let a = self.operand(x);
                self.emit_at(Op::FloatToInt { d, a }, site);
            }
            Expr::Select(c, x, y, _) => {
                let no = self.label();
                let end = self.label();
                self.cond(c, false, no);
                self.expr(x, d);
                self.jump(Op::Jmp { t: 0 }, end);
                self.bind(no);
                self.expr(y, d);
                self.bind(end);
            }
            Expr::Str(_) => unreachable!("the checker types str expressions apart"),
        }
        self.temp = mark;
    }

    fn int_arith(&mut self, op: IntOp, x: &Expr, y: &Expr, site: &ErrorSite, d: u32) {
        // Immediate forms: `a op k`, and `k op a` for the commutative ops.
        let k = int_literal(y).filter(|&k| match op {
            IntOp::Div => k != 0 && k != -1,
            IntOp::Rem => k != 0,
            _ => true,
        });
        if let Some(k) = k {
            let a = self.operand(x);
            let op = match op {
                IntOp::Add => Op::AddK { d, a, k },
                IntOp::Sub => Op::SubK { d, a, k },
                IntOp::Mul => Op::MulK { d, a, k },
                IntOp::Div if k > 1 => Op::DivMagic {
                    d,
                    a,
                    k: self.divisor(k),
                },
                IntOp::Rem if k > 1 && !(k as u32).is_power_of_two() => Op::RemMagic {
                    d,
                    a,
                    k: self.divisor(k),
                },
                IntOp::Div => Op::DivK { d, a, k },
                IntOp::Rem => Op::RemK { d, a, k },
            };
            self.emit_at(op, site);
            return;
        }
        if let (Some(k), IntOp::Add | IntOp::Mul) = (int_literal(x), op) {
            let a = self.operand(y);
            let op = match op {
                IntOp::Add => Op::AddK { d, a, k },
                _ => Op::MulK { d, a, k },
            };
            self.emit_at(op, site);
            return;
        }
        let a = self.operand(x);
        let b = self.operand(y);
        let op = match op {
            IntOp::Add => Op::Add { d, a, b },
            IntOp::Sub => Op::Sub { d, a, b },
            IntOp::Mul => Op::Mul { d, a, b },
            IntOp::Div => Op::Div { d, a, b },
            IntOp::Rem => Op::Rem { d, a, b },
        };
        self.emit_at(op, site);
    }

    /// Where `str` `e` is: a local's words or a literal, else temporaries it is evaluated into.
    fn str_at(&mut self, e: &Expr) -> StrAt {
        match e {
            Expr::Local(local, _) => StrAt::Words(self.offset(*local)),
            Expr::Str(text) => StrAt::Literal(self.literal(text)),
            _ => {
                let at = self.temps(2);
                self.str_expr(e, at);
                StrAt::Words(at)
            }
        }
    }

    fn str_words(&mut self, at: StrAt) -> u32 {
        match at {
            StrAt::Words(a) => a,
            StrAt::Literal(k) => {
                let d = self.temps(2);
                self.emit(Op::Str { d, k });
                d
            }
        }
    }

    /// Evaluates `str` `e` into the pair at `d` (written last on every path).
    fn str_expr(&mut self, e: &Expr, d: u32) {
        let mark = self.temp;
        match e {
            Expr::Local(local, _) => {
                let a = self.offset(*local);
                if a != d {
                    self.emit(Op::Mov2 { d, a });
                }
            }
            Expr::Str(text) => {
                let k = self.literal(text);
                self.emit(Op::Str { d, k });
            }
            Expr::Select(c, x, y, _) => {
                let no = self.label();
                let end = self.label();
                self.cond(c, false, no);
                self.str_expr(x, d);
                self.jump(Op::Jmp { t: 0 }, end);
                self.bind(no);
                self.str_expr(y, d);
                self.bind(end);
            }
            _ => unreachable!("only literals, locals and `if` have type str"),
        }
        self.temp = mark;
    }

    /// Evaluates `e` into `local`: a `str` local with a buffer takes a copy of the text (a
    /// literal needs none: the program's text outlives the run).
    fn owned_expr(&mut self, e: &Expr, local: LocalId) {
        let slot = self.layout.slot(local);
        if slot.ty == Type::Str && slot.buffer != NO_BUFFER && !e.literal_leaves() {
            let mark = self.temp;
            let at = self.str_at(e);
            let a = self.str_words(at);
            self.emit(Op::OwnStr {
                d: slot.offset,
                a,
                k: slot.buffer,
            });
            self.temp = mark;
        } else {
            self.any_expr(e, slot.offset);
        }
    }

    /// Evaluates `e` (of any type) into the words at `d`.
    fn any_expr(&mut self, e: &Expr, d: u32) {
        if e.ty() == Type::Str {
            self.str_expr(e, d);
        } else {
            self.expr(e, d);
        }
    }

    /// Jumps to `target` when bool `e` is `when`; falls through otherwise.
    fn cond(&mut self, e: &Expr, when: bool, target: Label) {
        let mark = self.temp;
        match e {
            Expr::Bool(v) => {
                if *v == when {
                    self.jump(Op::Jmp { t: 0 }, target);
                }
            }
            Expr::Not(x) => self.cond(x, !when, target),
            Expr::And(x, y) | Expr::Or(x, y) => {
                // `x && y` is true when both are; `x || y` is false when both are.
                let both = matches!(e, Expr::And(..)) == when;
                if both {
                    let skip = self.label();
                    self.cond(x, !when, skip);
                    self.cond(y, when, target);
                    self.bind(skip);
                } else {
                    self.cond(x, when, target);
                    self.cond(y, when, target);
                }
            }
            Expr::IntCmp(op @ (CmpOp::Eq | CmpOp::Ne), x, y)
                if matches!(**y, Expr::Int(0)) && rem_by_constant(x).is_some() =>
            {
                let (dividend, k) = rem_by_constant(x).expect("matched");
                let a = self.operand(dividend);
                let eq = (*op == CmpOp::Eq) == when;
                // A power of two (positive; `i32::MIN` is one too, and its mask works as well):
                // the low bits.
                let op = if k > 1 && !k.unsigned_abs().is_power_of_two() {
                    Op::JRemMagicZero {
                        eq,
                        a,
                        k: self.divisor(k),
                        t: 0,
                    }
                } else if k.unsigned_abs().is_power_of_two() {
                    Op::JMaskZero {
                        eq,
                        a,
                        k: (k.unsigned_abs() - 1) as i32,
                        t: 0,
                    }
                } else {
                    Op::JRemZero { eq, a, k, t: 0 }
                };
                self.jump(op, target);
            }
            Expr::IntCmp(op, x, y) | Expr::BoolCmp(op, x, y) => {
                let c = if when {
                    Cond::of(*op)
                } else {
                    Cond::of(*op).negate()
                };
                if let Some(k) = int_literal(y) {
                    let a = self.operand(x);
                    self.jump(Op::JCmpK { c, a, k, t: 0 }, target);
                } else if let Some(k) = int_literal(x) {
                    let a = self.operand(y);
                    self.jump(
                        Op::JCmpK {
                            c: c.swap(),
                            a,
                            k,
                            t: 0,
                        },
                        target,
                    );
                } else {
                    let a = self.operand(x);
                    let b = self.operand(y);
                    self.jump(Op::JCmp { c, a, b, t: 0 }, target);
                }
            }
            Expr::FloatCmp(op, x, y) => {
                let a = self.operand(x);
                let b = self.operand(y);
                self.jump(
                    Op::JFCmp {
                        op: *op,
                        when,
                        a,
                        b,
                        t: 0,
                    },
                    target,
                );
            }
            Expr::StrCmp(op, x, y) => {
                let eq = (*op == CmpOp::Eq) == when;
                match (self.str_at(x), self.str_at(y)) {
                    (StrAt::Words(a), StrAt::Literal(k)) | (StrAt::Literal(k), StrAt::Words(a)) => {
                        self.jump(Op::JStrEqK { eq, a, k, t: 0 }, target);
                    }
                    (a, b) => {
                        let a = self.str_words(a);
                        let b = self.str_words(b);
                        self.jump(Op::JStrEq { eq, a, b, t: 0 }, target);
                    }
                }
            }
            _ => {
                let a = self.operand(e);
                self.jump(Op::JBool { when, a, t: 0 }, target);
            }
        }
        self.temp = mark;
    }

    // ---- steps -------------------------------------------------------------------------

    /// Ends a path whose value is `value`.
    fn finish(&mut self, value: ValueId, k: &K<'_>) {
        match k {
            K::Join(label) => self.jump(Op::Jmp { t: 0 }, *label),
            K::Result(label) => {
                self.emit(Op::Value { k: value.0 });
                self.jump(Op::Jmp { t: 0 }, *label);
            }
            K::Exit(call, labels) => {
                let Some((index, exit)) = crate::ir::exit_of(&call.exits, value) else {
                    self.fail(
                        format!(
                            "subflow `{}` ended with a branch its event does not declare",
                            call.name
                        ),
                        Some(call.name.clone()),
                        call.span,
                    );
                    return;
                };
                // One copy of each exit's code however many paths end in it.
                let key = (*call as *const SubflowCall as usize, index);
                if let Some(&label) = self.exit_labels.get(&key) {
                    return self.jump(Op::Jmp { t: 0 }, label);
                }
                let label = self.label();
                self.bind(label);
                self.exit_labels.insert(key, label);
                for &(from, to) in &exit.copies {
                    let (from, to) = (self.layout.slot(from), self.layout.slot(to));
                    let (a, d) = (from.offset, to.offset);
                    if to.ty == Type::Str && to.buffer != NO_BUFFER {
                        self.emit(Op::OwnStr { d, a, k: to.buffer });
                    } else if a != d {
                        self.emit(if from.ty == Type::Str {
                            Op::Mov2 { d, a }
                        } else {
                            Op::Mov { d, a }
                        });
                    }
                }
                self.jump(Op::Jmp { t: 0 }, labels[exit.branch as usize]);
            }
        }
    }

    fn step(&mut self, step: &Step, k: &K<'_>) {
        match step {
            Step::Invoke(s) => self.invoke(s, k),
            Step::Call(s) => self.call(s, k),
            Step::For(s) => self.for_loop(s, k),
            Step::If(s) => {
                let no = self.label();
                self.cond(&s.cond, false, no);
                let name: Arc<str> = "if".into();
                self.trace(&name, TraceMarker::None, s.first_value, true);
                self.select(&s.arms, 0, s.first_value, &name, s.span, k);
                self.bind(no);
                self.trace(&name, TraceMarker::None, ValueId(s.first_value.0 + 1), true);
                self.select(&s.arms, 1, s.first_value, &name, s.span, k);
            }
            Step::While(s) => self.while_loop(s, k),
            Step::Capture(s) => self.capture(s, k),
            Step::Update(s) => {
                self.update(s);
                self.finish(s.value, k);
            }
            Step::Construct(s) => {
                for (local, e) in &s.fields {
                    let d = self.offset(*local);
                    self.any_expr(e, d);
                }
                self.finish(s.value, k);
            }
            Step::Match(s) => self.match_step(s, k),
            Step::Yield(value) => self.finish(*value, k),
        }
    }

    /// The continuation of `branch`: the first arm whose guard holds.
    fn select(
        &mut self,
        arms: &Arms,
        branch: u32,
        first_value: ValueId,
        event: &Arc<str>,
        span: Span,
        k: &K<'_>,
    ) {
        let value = ValueId(first_value.0 + branch);
        if arms.arms.is_empty() {
            return self.finish(value, k);
        }
        if let Some(index) = arms.unguarded[branch as usize] {
            return self.arm(&arms.arms[index as usize], value, k);
        }
        let candidates = &arms.by_branch[branch as usize];
        if candidates.is_empty() {
            return self.finish(value, k);
        }
        for &index in candidates {
            let arm = &arms.arms[index as usize];
            let next = self.label();
            if let Some(guard) = &arm.guard {
                self.cond(guard, false, next);
            }
            self.arm(arm, value, k);
            self.bind(next);
        }
        let name = &self.program.values[value.0 as usize].branch;
        let message = format!("no continuation of `{event}` took branch `{name}`");
        self.fail(message, Some(event.clone()), span);
    }

    /// An arm's step is compiled once per continuation: a catch-all that several branches
    /// reach jumps to the code of its first use (as native code shares the arm's block).
    fn arm(&mut self, arm: &Arm, value: ValueId, k: &K<'_>) {
        let Some(step) = &arm.step else {
            return self.finish(value, k);
        };
        let key = (arm as *const Arm as usize, k.id());
        if let Some(&label) = self.arm_labels.get(&key) {
            return self.jump(Op::Jmp { t: 0 }, label);
        }
        let label = self.label();
        self.bind(label);
        self.arm_labels.insert(key, label);
        self.step(step, k);
    }

    fn invoke(&mut self, s: &Invoke, k: &K<'_>) {
        let mark = self.temp;
        let event = &self.program.events[s.event.0 as usize];
        let name = event.name.clone();
        let branches = event.sig.result_branch_slice().len();
        match &s.args {
            Arguments::Inputs(args) => {
                let mut words = Vec::with_capacity(args.len());
                for argument in args {
                    let ty = argument.expr.ty();
                    let at = match &argument.expr {
                        Expr::Local(local, _) => self.offset(*local),
                        Expr::Str(text) => self.str_constant(text),
                        e if ty != Type::Str => self.operand(e),
                        e => {
                            let at = self.temps(ty.words());
                            self.any_expr(e, at);
                            at
                        }
                    };
                    words.push(ArgWord {
                        at,
                        ty,
                        format_into: argument.format_into.map(|b| b.0),
                    });
                }
                self.code.invokes.push(InvokeSite {
                    event: s.event.0,
                    site: s.site,
                    span: s.span,
                    args: words,
                });
                let kk = self.code.invokes.len() as u32 - 1;
                let d = self.temps(1);
                self.emit(Op::Invoke { d, k: kk });
                self.temp = mark;
                if branches > 1 {
                    let table = self.code.tables.len() as u32;
                    self.code.tables.push(Table {
                        lo: 0,
                        targets: vec![0; branches],
                        default: 0,
                    });
                    self.emit(Op::JTable { a: d, k: table });
                    let bad = self.label();
                    self.code_fixup_table(table, None, bad);
                    for b in 0..branches {
                        let label = self.label();
                        self.code_fixup_table(table, Some(b), label);
                        self.bind(label);
                        self.invoke_branch(s, b as u32, &name, k);
                    }
                    self.bind(bad);
                    self.fail(
                        format!("event `{name}` returned a branch it does not declare"),
                        Some(name.clone()),
                        s.span,
                    );
                    return;
                }
            }
            Arguments::Template(parts) => {
                let mut out = Vec::with_capacity(parts.len());
                for part in parts {
                    out.push(match part {
                        TemplatePart::Text(t) => PrintPart::Text(t.clone()),
                        TemplatePart::Hole(e) => {
                            let ty = e.ty();
                            let at = match e {
                                Expr::Local(local, _) => self.offset(*local),
                                e => {
                                    let at = self.temps(ty.words());
                                    self.any_expr(e, at);
                                    at
                                }
                            };
                            PrintPart::Hole { at, ty }
                        }
                    });
                }
                self.code.prints.push(PrintSite {
                    event: s.event.0,
                    parts: out,
                });
                let kk = self.code.prints.len() as u32 - 1;
                self.emit(Op::Print { k: kk });
                self.temp = mark;
            }
        }
        self.invoke_branch(s, 0, &name, k);
    }

    fn code_fixup_table(&mut self, table: u32, entry: Option<usize>, label: Label) {
        self.fixups.push(Fixup::Table(table, entry, label));
    }

    fn invoke_branch(&mut self, s: &Invoke, branch: u32, name: &Arc<str>, k: &K<'_>) {
        self.trace(
            name,
            TraceMarker::None,
            ValueId(s.first_value.0 + branch),
            false,
        );
        self.select(&s.arms, branch, s.first_value, name, s.span, k);
    }

    fn call(&mut self, s: &SubflowCall, k: &K<'_>) {
        for (local, argument) in &s.inputs {
            let d = self.offset(*local);
            match argument.format_into {
                Some(buffer) => {
                    let mark = self.temp;
                    let a = self.operand(&argument.expr);
                    let ty = match argument.expr.ty() {
                        Type::Int => 0,
                        Type::Float => 1,
                        _ => 2,
                    };
                    self.emit(Op::Format {
                        d,
                        a,
                        k: buffer.0 | (ty << 30),
                    });
                    self.temp = mark;
                }
                None => self.owned_expr(&argument.expr, *local),
            }
        }
        self.emit(Op::Charge {
            k: LAST_EVENT_SUBFLOW | s.name_index,
            cost: s.cost,
        });
        let branches = s
            .exits
            .iter()
            .map(|e| e.branch as usize + 1)
            .max()
            .unwrap_or(0)
            .max(s.results.len());
        let labels: Vec<Label> = (0..branches).map(|_| self.label()).collect();
        self.step(&s.body, &K::Exit(s, &labels));
        for (branch, &label) in labels.iter().enumerate() {
            self.bind(label);
            let value = ValueId(s.first_value.0 + branch as u32);
            self.trace(&s.name, TraceMarker::of_mocked(s.mocked), value, false);
            self.select(&s.arms, branch as u32, s.first_value, &s.name, s.span, k);
        }
    }

    fn for_loop(&mut self, s: &ForLoop, k: &K<'_>) {
        let i = self.offset(s.index);
        let bound = self.offset(s.bound);
        assert_eq!(
            bound,
            i + 1,
            "the layout places a loop's bound after its index"
        );
        // `start` is evaluated first, into the index unless `end` reads its word (the index is
        // a new local, placed above everything in scope there, so it never does).
        let mut end_reads_index = false;
        s.end.visit_locals(&mut |l| {
            let slot = self.layout.slot(l);
            end_reads_index |= slot.offset <= i && i < slot.offset + slot.ty.words();
        });
        if end_reads_index {
            let mark = self.temp;
            let start = self.temps(1);
            self.expr(&s.start, start);
            self.expr(&s.end, bound);
            self.emit(Op::Mov { d: i, a: start });
            self.temp = mark;
        } else {
            self.expr(&s.start, i);
            self.expr(&s.end, bound);
        }
        let done = self.label();
        let body = self.label();
        let next = self.label();
        let lp = s.loop_index;
        self.jump(Op::ForEnter { i, lp, t: 0 }, done);
        self.bind(body);
        let name: Arc<str> = "for".into();
        self.trace(&name, TraceMarker::None, s.first_value, true);
        if !s.arms.arms.is_empty() {
            self.select(&s.arms, 0, s.first_value, &name, s.span, &K::Join(next));
        }
        self.bind(next);
        self.jump(Op::ForNext { i, lp, t: 0 }, body);
        self.bind(done);
        self.trace(&name, TraceMarker::None, ValueId(s.first_value.0 + 1), true);
        self.select(&s.arms, 1, s.first_value, &name, s.span, k);
    }

    /// `while`, rotated: the condition is tested at the entry and again after each body (with
    /// the back-edge), so an iteration dispatches one op of loop control when the condition
    /// is one comparison with an immediate (`WhileNextK`). The order stays the walker's and
    /// native code's: condition, iteration count, body, back-edge.
    fn while_loop(&mut self, s: &WhileLoop, k: &K<'_>) {
        let done = self.label();
        let body = self.label();
        let next = self.label();
        let lp = s.loop_index;
        self.cond(&s.cond, false, done);
        self.emit(Op::Tick { lp });
        self.bind(body);
        let name: Arc<str> = "while".into();
        self.trace(&name, TraceMarker::None, s.first_value, true);
        if !s.arms.arms.is_empty() {
            self.select(&s.arms, 0, s.first_value, &name, s.span, &K::Join(next));
        }
        self.bind(next);
        match (self.simple_cmp(&s.cond), u16::try_from(lp)) {
            (Some((c, a, kk)), Ok(lp)) => {
                self.jump(
                    Op::WhileNextK {
                        c,
                        lp,
                        a,
                        k: kk,
                        t: 0,
                    },
                    body,
                );
            }
            _ => {
                // The back-edge's tiering is on every path into the body, after the
                // condition (in the `LoopCmp` a comparison becomes, or here).
                let tick = self.label();
                let outer = self.tick_jump.replace((tick, lp, body));
                self.cond(&s.cond, true, tick);
                self.tick_jump = outer;
                self.jump(Op::Jmp { t: 0 }, done);
                self.bind(tick);
                self.emit(Op::BackEdge { lp });
                self.emit(Op::Tick { lp });
                self.jump(Op::Jmp { t: 0 }, body);
            }
        }
        self.bind(done);
        self.trace(&name, TraceMarker::None, ValueId(s.first_value.0 + 1), true);
        self.select(&s.arms, 1, s.first_value, &name, s.span, k);
    }

    /// A condition that is one comparison of a local with an immediate (a `bool` local is
    /// `!= 0`).
    fn simple_cmp(&self, e: &Expr) -> Option<(Cond, u32, i32)> {
        match e {
            Expr::IntCmp(op, x, y) | Expr::BoolCmp(op, x, y) => match (&**x, &**y) {
                (Expr::Local(l, _), y) => Some((Cond::of(*op), self.offset(*l), int_literal(y)?)),
                (x, Expr::Local(l, _)) => {
                    Some((Cond::of(*op).swap(), self.offset(*l), int_literal(x)?))
                }
                _ => None,
            },
            Expr::Local(l, Type::Bool) => Some((Cond::Ne, self.offset(*l), 0)),
            Expr::Not(x) => match &**x {
                Expr::Local(l, Type::Bool) => Some((Cond::Eq, self.offset(*l), 0)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Assigns the value of `e` to accumulator field `local` (a `str` into its other buffer).
    fn assign_field(&mut self, local: LocalId, e: &Expr) {
        let slot = self.layout.slot(local);
        if slot.ty == Type::Str && e.literal_leaves() {
            // A literal is not copied: its text lives as long as the program (see
            // `Expr::literal_leaves`); the field's buffers stay as they are.
            self.str_expr(e, slot.offset);
        } else if slot.ty == Type::Str {
            let mark = self.temp;
            let at = self.str_at(e);
            let a = self.str_words(at);
            self.emit(Op::AccStr {
                d: slot.offset,
                a,
                k: slot.buffer,
            });
            self.temp = mark;
        } else {
            self.expr(e, slot.offset);
        }
    }

    fn capture(&mut self, s: &CaptureStep, k: &K<'_>) {
        // The fields are new locals the initial values cannot read: assigned as evaluated.
        for (&local, e) in s.fields.iter().zip(&s.init) {
            self.assign_field(local, e);
        }
        let name: Arc<str> = match &s.yield_of {
            Some(subflow) => subflow.clone(),
            None => "capture".into(),
        };
        let marker = if s.yield_of.is_some() {
            TraceMarker::Yield
        } else {
            TraceMarker::None
        };
        self.trace(&name, marker, s.first_value, true);
        let next = self.label();
        if !s.arms.arms.is_empty() {
            self.select(&s.arms, 0, s.first_value, &name, s.span, &K::Join(next));
        }
        self.bind(next);
        let captured = ValueId(s.first_value.0 + 1);
        if s.yield_of.is_none() {
            self.trace(&name, TraceMarker::None, captured, true);
        }
        self.select(&s.arms, 1, s.first_value, &name, s.span, k);
    }

    /// `captured { ... }`: every expression sees the old values. Assignments go in an order
    /// where none writes a field a pending one still reads (then straight into the field);
    /// one that may fail is not moved before another that may (a run reports the first
    /// error in source order, as native code does). Where no assignment can go (a cycle),
    /// the first pending one is evaluated into a temporary, assigned after the last.
    fn update(&mut self, s: &CaptureUpdate) {
        let mark = self.temp;
        let words = |c: &Compiler<'_>, local: LocalId| {
            let slot = c.layout.slot(local);
            slot.offset..slot.offset + slot.ty.words()
        };
        let reads = |c: &Compiler<'_>, e: &Expr, local: LocalId| {
            let mine = words(c, local);
            let mut hit = false;
            e.visit_locals(&mut |l| {
                let theirs = words(c, l);
                hit |= theirs.start < mine.end && mine.start < theirs.end;
            });
            hit
        };
        let mut deferred = Vec::new();
        if s.assigns.len() > REORDERED_ASSIGNMENTS {
            // Source order. An assignment goes in place unless a later one reads its field (then
            // through a temporary): the last reader of every word, found in one pass (asking
            // every later assignment, per assignment, cost the width squared: 7,000 fields took
            // 0.3 s).
            let mut last_reader: std::collections::HashMap<u32, usize> = Default::default();
            for (j, (_, e)) in s.assigns.iter().enumerate() {
                e.visit_locals(&mut |l| {
                    for w in words(self, l) {
                        last_reader.insert(w, j);
                    }
                });
            }
            for (i, (local, e)) in s.assigns.iter().enumerate() {
                let read_later =
                    words(self, *local).any(|w| last_reader.get(&w).is_some_and(|&j| j > i));
                if read_later {
                    let ty = e.ty();
                    let at = self.temps(ty.words());
                    self.any_expr(e, at);
                    deferred.push((*local, at, ty, e.literal_leaves()));
                } else {
                    self.assign_field(*local, e);
                }
            }
        }
        let mut pending: Vec<usize> = if s.assigns.len() > REORDERED_ASSIGNMENTS {
            Vec::new()
        } else {
            (0..s.assigns.len()).collect()
        };
        while !pending.is_empty() {
            let mut failing_before = false;
            let mut pick = None;
            // Only for a few assignments (above): each pick looks at every pending one, so a
            // wide update would cost its width cubed (a chain of 3,000 fields each reading the
            // one before took 23 s to compile).
            for (n, &i) in pending.iter().enumerate() {
                let (local, e) = &s.assigns[i];
                let fails = may_fail(e);
                let movable = !(fails && failing_before);
                if movable
                    && !pending
                        .iter()
                        .any(|&j| j != i && reads(self, &s.assigns[j].1, *local))
                {
                    pick = Some(n);
                    break;
                }
                failing_before |= fails;
            }
            match pick {
                Some(n) => {
                    let (local, e) = &s.assigns[pending.remove(n)];
                    self.assign_field(*local, e);
                }
                None => {
                    let (local, e) = &s.assigns[pending.remove(0)];
                    let ty = e.ty();
                    let at = self.temps(ty.words());
                    self.any_expr(e, at);
                    deferred.push((*local, at, ty, e.literal_leaves()));
                }
            }
        }
        for (local, a, ty, literal) in deferred {
            let slot = self.layout.slot(local);
            if ty == Type::Str && literal {
                self.emit(Op::Mov2 { d: slot.offset, a });
            } else if ty == Type::Str {
                self.emit(Op::AccStr {
                    d: slot.offset,
                    a,
                    k: slot.buffer,
                });
            } else {
                self.emit(Op::Mov { d: slot.offset, a });
            }
        }
        self.temp = mark;
    }

    fn match_step(&mut self, s: &MatchStep, k: &K<'_>) {
        let slot = self.layout.slot(s.value);
        let x = slot.offset;
        if slot.ty == Type::Str && slot.buffer != NO_BUFFER {
            let mark = self.temp;
            let at = self.str_at(&s.scrutinee);
            let a = self.str_words(at);
            self.emit(Op::OwnStr {
                d: x,
                a,
                k: slot.buffer,
            });
            self.temp = mark;
        } else {
            self.any_expr(&s.scrutinee, x);
        }
        let name: Arc<str> = "match".into();
        if let Some(table) = self.dense_table(s) {
            return self.match_table(s, table, x, &name, k);
        }
        for arm in &s.arms {
            let next = self.label();
            if !arm.patterns.is_empty() {
                let hit = self.label();
                for pattern in &arm.patterns {
                    self.pattern(pattern, x, hit);
                }
                self.jump(Op::Jmp { t: 0 }, next);
                self.bind(hit);
            }
            if let Some(guard) = &arm.arm.guard {
                self.cond(guard, false, next);
            }
            self.trace(&name, TraceMarker::None, s.matched, true);
            self.arm(&arm.arm, s.matched, k);
            self.bind(next);
        }
        self.fail(
            "no continuation of `match` took the value".to_string(),
            Some(name),
            s.span,
        );
    }

    /// Jumps to `hit` when the value at `x` matches `pattern`.
    fn pattern(&mut self, pattern: &Pattern, x: u32, hit: Label) {
        match pattern {
            Pattern::Int { lo, hi } if lo == hi => self.jump_cmp(Cond::Eq, x, *lo, hit),
            Pattern::Int { lo, hi } => {
                let below = self.label();
                self.jump_cmp(Cond::Lt, x, *lo, below);
                self.jump_cmp(Cond::Le, x, *hi, hit);
                self.bind(below);
            }
            Pattern::Bool(b) => self.jump_cmp(Cond::Eq, x, i64::from(*b), hit),
            Pattern::Str(text) => {
                let k = self.literal(text);
                self.jump(
                    Op::JStrEqK {
                        eq: true,
                        a: x,
                        k,
                        t: 0,
                    },
                    hit,
                );
            }
        }
    }

    fn jump_cmp(&mut self, c: Cond, a: u32, v: i64, target: Label) {
        match small(v) {
            Some(k) => self.jump(Op::JCmpK { c, a, k, t: 0 }, target),
            None => {
                let b = self.constant(v as u64);
                self.jump(Op::JCmp { c, a, b, t: 0 }, target);
            }
        }
    }

    /// For an `int` match whose pattern arms have no guard and whose patterns cover a dense
    /// range (at most 1024 values, at least a quarter of them named): for each value in the
    /// range, the arm that takes it (`None`: the catch-alls).
    fn dense_table(&self, s: &MatchStep) -> Option<(i64, Vec<Option<usize>>)> {
        if s.scrutinee.ty() != Type::Int {
            return None;
        }
        let (mut lo, mut hi, mut named) = (i64::MAX, i64::MIN, 0u64);
        let mut pattern_arms = 0;
        for arm in &s.arms {
            if arm.patterns.is_empty() {
                continue;
            }
            if arm.arm.guard.is_some() {
                return None;
            }
            pattern_arms += 1;
            for pattern in &arm.patterns {
                let Pattern::Int { lo: a, hi: b } = pattern else {
                    return None;
                };
                lo = lo.min(*a);
                hi = hi.max(*b);
                named = named.saturating_add(b.abs_diff(*a).saturating_add(1));
            }
        }
        let span = hi.checked_sub(lo)?.checked_add(1)?;
        if pattern_arms < 4 || span > 1024 || (named as i64) * 4 < span {
            return None;
        }
        // Tables are bounded per flow (as native code's are): past it, compare chains.
        let entries: usize = self.code.tables.iter().map(|t| t.targets.len()).sum();
        if entries + span as usize > MAX_TABLE_ENTRIES {
            return None;
        }
        let mut table = vec![None; span as usize];
        for (index, arm) in s.arms.iter().enumerate() {
            for pattern in &arm.patterns {
                if let Pattern::Int { lo: a, hi: b } = pattern {
                    for v in *a..=*b {
                        let slot = &mut table[(v - lo) as usize];
                        // The first arm in source order takes a value.
                        slot.get_or_insert(index);
                    }
                }
            }
        }
        Some((lo, table))
    }

    fn match_table(
        &mut self,
        s: &MatchStep,
        (lo, entries): (i64, Vec<Option<usize>>),
        x: u32,
        name: &Arc<str>,
        k: &K<'_>,
    ) {
        let table = self.code.tables.len() as u32;
        self.code.tables.push(Table {
            lo,
            targets: vec![0; entries.len()],
            default: 0,
        });
        self.emit(Op::JTable { a: x, k: table });
        let labels: Vec<Label> = s.arms.iter().map(|_| self.label()).collect();
        let catch_all = self.label();
        for (i, entry) in entries.iter().enumerate() {
            let label = entry.map_or(catch_all, |arm| labels[arm]);
            self.code_fixup_table(table, Some(i), label);
        }
        self.code_fixup_table(table, None, catch_all);
        for (arm, &label) in s.arms.iter().zip(&labels) {
            if arm.patterns.is_empty() {
                continue;
            }
            self.bind(label);
            self.trace(name, TraceMarker::None, s.matched, true);
            self.arm(&arm.arm, s.matched, k);
        }
        // Values no pattern names: the catch-alls in order.
        self.bind(catch_all);
        for arm in s.arms.iter().filter(|a| a.patterns.is_empty()) {
            let next = self.label();
            if let Some(guard) = &arm.arm.guard {
                self.cond(guard, false, next);
            }
            self.trace(name, TraceMarker::None, s.matched, true);
            self.arm(&arm.arm, s.matched, k);
            self.bind(next);
        }
        self.fail(
            "no continuation of `match` took the value".to_string(),
            Some(name.clone()),
            s.span,
        );
    }
}

/// Two words that, for strings of one length up to 16 bytes, are equal exactly when the strings
/// are: overlapping windows covering every byte (LLVM's and our JIT's inline `memcmp`).
///
/// # Safety
/// `p` points at `n` readable bytes.
#[inline(always)]
pub(crate) unsafe fn window_key(p: *const u8, n: usize) -> (u64, u64) {
    // SAFETY: every read is inside the `n` bytes.
    unsafe {
        match n {
            0 => (0, 0),
            1..=3 => {
                let b = |i: usize| u64::from(*p.add(i));
                (b(0) | b(n / 2) << 8 | b(n - 1) << 16, 0)
            }
            4..=7 => (
                u64::from(p.cast::<u32>().read_unaligned()),
                u64::from(p.add(n - 4).cast::<u32>().read_unaligned()),
            ),
            8..=16 => (
                p.cast::<u64>().read_unaligned(),
                p.add(n - 8).cast::<u64>().read_unaligned(),
            ),
            _ => (0, 0),
        }
    }
}

/// Whether `x` and `y` are the same conversion of the same local (pure: one evaluation serves
/// both).
fn same_conversion(x: &Expr, y: &Expr) -> bool {
    match (x, y) {
        (Expr::IntToFloat(a), Expr::IntToFloat(b)) => {
            matches!((&**a, &**b), (Expr::Local(l, _), Expr::Local(m, _)) if l == m)
        }
        _ => false,
    }
}

/// The widest `captured` update whose assignments are reordered (see `Compiler::update`).
const REORDERED_ASSIGNMENTS: usize = 16;

/// Whether evaluating `e` may end the run with an error (checked int arithmetic but a
/// division or remainder by a literal that cannot fail, a float-to-int conversion).
fn may_fail(e: &Expr) -> bool {
    let here = match e {
        Expr::NegInt(..) | Expr::FloatToInt(..) => true,
        Expr::IntArith(IntOp::Div, _, y, _) => !matches!(**y, Expr::Int(k) if k != 0 && k != -1),
        Expr::IntArith(IntOp::Rem, _, y, _) => !matches!(**y, Expr::Int(k) if k != 0),
        Expr::IntArith(..) => true,
        _ => false,
    };
    here || e.operands().any(may_fail)
}

/// `a % k` with a literal `k` that is not 0 and fits an immediate.
fn rem_by_constant(e: &Expr) -> Option<(&Expr, i32)> {
    match e {
        Expr::IntArith(IntOp::Rem, a, b, _) => {
            int_literal(b).filter(|&k| k != 0).map(|k| (&**a, k))
        }
        _ => None,
    }
}

/// Where constant words are numbered from while compiling (above any frame: the layout and
/// the temporaries are bounded far below by the front end's limits).
const CONSTANT_WORDS: u32 = 1 << 30;

/// Jump-table entries per flow (64 KB of targets).
const MAX_TABLE_ENTRIES: usize = 16 * 1024;

fn int_literal(e: &Expr) -> Option<i32> {
    match e {
        Expr::Int(v) => small(*v),
        _ => None,
    }
}

/// Bit 30..32 of [`Op::Format`]'s `k`: the formatted type.
pub(crate) fn format_type(k: u32) -> (usize, Type) {
    let ty = match k >> 30 {
        0 => Type::Int,
        1 => Type::Float,
        _ => Type::Bool,
    };
    ((k & 0x3fff_ffff) as usize, ty)
}

/// The listing `koru-jit emit --what bytecode` prints: one op per line, words as `wN` (the
/// layout's offsets; temporaries from `frame_words` of the layout up), side tables inline.
pub(crate) struct Listing<'a> {
    pub code: &'a Bytecode,
    pub program: &'a Program,
}

impl std::fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self.code;
        writeln!(
            f,
            "bytecode: {} ops, frame {} words",
            code.ops.len(),
            code.frame_words
        )?;
        for (pc, op) in code.ops.iter().enumerate() {
            let text = format!("{op:?}");
            // `Name { d: 1, a: 2 }` as `name d=w1 a=w2`.
            let (name, fields) = text.split_once(' ').unwrap_or((&text, ""));
            write!(f, "{pc:>6}  {:<10}", name.to_lowercase())?;
            let fields = fields.trim_matches(|c| c == '{' || c == '}' || c == ' ');
            let mut first = true;
            for field in fields.split(", ").filter(|s| !s.is_empty()) {
                let (key, value) = field.split_once(": ").unwrap_or((field, ""));
                let shown = match key {
                    "d" | "a" | "b" | "i" => format!("w{value}"),
                    "t" | "exit" => format!("->{value}"),
                    _ => value.to_string(),
                };
                write!(f, "{}{key}={shown}", if first { "" } else { " " })?;
                first = false;
            }
            match *op {
                Op::Str { k, .. } | Op::StrEqK { k, .. } | Op::JStrEqK { k, .. } => {
                    write!(f, "  ; {:?}", &*code.strs[k as usize])?
                }
                Op::Invoke { k, .. } => {
                    let site = &code.invokes[k as usize];
                    let args: Vec<String> =
                        site.args.iter().map(|a| format!("w{}", a.at)).collect();
                    write!(
                        f,
                        "  ; {}({})",
                        self.program.events[site.event as usize].name,
                        args.join(", ")
                    )?
                }
                Op::Print { k } => write!(
                    f,
                    "  ; {}",
                    self.program.events[code.prints[k as usize].event as usize].name
                )?,
                Op::Fail { k } => write!(f, "  ; {}", code.fails[k as usize].message)?,
                Op::Trace { k } => write!(f, "  ; trace {}", code.traces[k as usize].name)?,
                Op::JTable { k, .. } => {
                    let table = &code.tables[k as usize];
                    write!(
                        f,
                        "  ; from {}: {:?} else ->{}",
                        table.lo, table.targets, table.default
                    )?
                }
                Op::Value { k } => write!(f, "  ; {}", self.program.values[k as usize].branch)?,
                _ => {}
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Divisor;

    /// The reciprocal gives the quotient of every dividend tried, for every divisor up to
    /// 5,000 and a spread of large ones, at the edges of the 63-bit range and in between.
    #[test]
    fn reciprocal_division_is_exact() {
        let mut divisors: Vec<i64> = (2..5_000).collect();
        divisors.extend([
            1_000_000_007,
            i32::MAX as i64,
            (1 << 30) + 1,
            (1 << 30) - 1,
            641,
            6_700_417,
            3 << 28,
        ]);
        let mut dividends: Vec<i64> = (0..2_000).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            dividends.push((x >> 1) as i64);
            dividends.push((x >> 33) as i64);
        }
        dividends.extend([i64::MAX, i64::MAX - 1, 1 << 62, (1 << 62) - 1, 1 << 32]);
        for &k in &divisors {
            let divisor = Divisor::new(k);
            for &a in &dividends {
                assert_eq!(divisor.quotient(a), a / k, "{a} / {k}");
            }
            for q in [1i64, 2, 3, 1000, i64::MAX / k] {
                let at = q * k;
                for a in [at.checked_sub(1), Some(at), at.checked_add(1)] {
                    if let Some(a) = a.filter(|&a| a >= 0) {
                        assert_eq!(divisor.quotient(a), a / k, "{a} / {k}");
                    }
                }
            }
        }
    }
}
