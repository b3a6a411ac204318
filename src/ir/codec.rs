//! The typed IR as bytes: a hand-written encoder and a bounded decoder (the body of a compiled
//! flow's artifact, see `crate::engine::artifact`).
//!
//! Integers are LEB128 (signed ones zigzag), floats their 8 IEEE bytes, strings a length and
//! UTF-8. The decoder trusts nothing: every read is bounds-checked, every count is at most the
//! bytes left (each element takes at least one byte, so a length claiming 4 GB fails before
//! anything is allocated), the nesting of steps and expressions is bounded (it recurses), and
//! every failure names the byte offset. What the decoded program *means* is not checked here:
//! [`super::verify`] re-establishes the invariants the tiers rely on.

use super::*;
use crate::span::Span;
use crate::types::{BranchSig, EventSig, PayloadType, Phantom, PhantomAt, PhantomSlot, Type};

/// Why bytes do not decode: the offset where reading failed, and what was being read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt {
    pub offset: usize,
    pub what: String,
}

/// How much the decoder accepts.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Steps nested in one another.
    pub max_step_depth: usize,
    /// Expressions nested in one another.
    pub max_expr_depth: usize,
    /// Steps in all.
    pub max_steps: usize,
    /// Locals in all.
    pub max_locals: usize,
}

pub struct Writer {
    pub bytes: Vec<u8>,
    /// Names and literals of the program, each once, in order of first use.
    table: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            bytes: Vec::new(),
            table: Vec::new(),
            index: std::collections::HashMap::new(),
        }
    }

    /// A name or literal of the program: its index in the string table.
    fn name(&mut self, s: &str) {
        let next = self.table.len() as u32;
        let index = *self.index.entry(s.to_string()).or_insert(next);
        if index == next {
            self.table.push(s.to_string());
        }
        self.u(u64::from(index));
    }

    fn opt_name(&mut self, s: Option<&str>) {
        match s {
            None => self.byte(0),
            Some(s) => {
                self.byte(1);
                self.name(s);
            }
        }
    }

    pub fn u(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.bytes.push(byte);
                return;
            }
            self.bytes.push(byte | 0x80);
        }
    }

    fn i(&mut self, v: i64) {
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }

    fn f(&mut self, v: f64) {
        self.bytes.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    pub fn byte(&mut self, b: u8) {
        self.bytes.push(b);
    }

    fn bool(&mut self, b: bool) {
        self.byte(u8::from(b));
    }

    pub fn str(&mut self, s: &str) {
        self.u(s.len() as u64);
        self.bytes.extend_from_slice(s.as_bytes());
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.byte(0),
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
        }
    }

    fn ty(&mut self, ty: Type) {
        self.byte(match ty {
            Type::Int => 0,
            Type::Float => 1,
            Type::Bool => 2,
            Type::Str => 3,
        });
    }

    fn span(&mut self, span: Span) {
        self.u(u64::from(span.start));
        self.u(u64::from(span.end));
    }

    fn local(&mut self, l: LocalId) {
        self.u(u64::from(l.0));
    }

    fn locals(&mut self, ls: &[LocalId]) {
        self.u(ls.len() as u64);
        for &l in ls {
            self.local(l);
        }
    }
}

pub struct Reader<'b> {
    bytes: &'b [u8],
    /// Where each event's signature starts.
    pub sig_at: SmallVec<[usize; 4]>,
    /// The program's string table.
    names: Vec<Arc<str>>,
    pub pos: usize,
    limits: DecodeLimits,
    depth: usize,
    expr_depth: usize,
    pub steps: usize,
}

type R<T> = Result<T, Corrupt>;

/// Elements reserved up front for a count, at most: a vector grows past it only as elements
/// decode (each from at least one byte), so memory follows the bytes actually present.
const PREALLOC: usize = 256;

impl<'b> Reader<'b> {
    pub fn new(bytes: &'b [u8], pos: usize, limits: DecodeLimits) -> Reader<'b> {
        Reader {
            bytes,
            sig_at: SmallVec::new(),
            names: Vec::new(),
            pos,
            limits,
            depth: 0,
            expr_depth: 0,
            steps: 0,
        }
    }

    pub fn fail<T>(&self, what: impl Into<String>) -> R<T> {
        Err(Corrupt {
            offset: self.pos,
            what: what.into(),
        })
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    #[inline]
    pub fn byte(&mut self) -> R<u8> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.fail("truncated: the data ends early"),
        }
    }

    pub fn take(&mut self, n: usize) -> R<&'b [u8]> {
        if n > self.bytes.len() - self.pos {
            return self.fail(format!(
                "truncated: {n} bytes claimed, {} left",
                self.bytes.len() - self.pos
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    pub fn u(&mut self) -> R<u64> {
        // Most integers of a program (indices, counts, tags) are one byte.
        if let Some(&b) = self.bytes.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.u_long()
    }

    #[inline(never)]
    fn u_long(&mut self) -> R<u64> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                self.pos = start;
                return self.fail("an integer longer than 64 bits");
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.pos = start;
        self.fail("an integer longer than 64 bits")
    }

    #[inline]
    pub fn u32(&mut self) -> R<u32> {
        let at = self.pos;
        let v = self.u()?;
        u32::try_from(v).map_err(|_| Corrupt {
            offset: at,
            what: format!("{v} does not fit 32 bits"),
        })
    }

    fn i(&mut self) -> R<i64> {
        let v = self.u()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn f(&mut self) -> R<f64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_bits(u64::from_le_bytes(a)))
    }

    fn bool(&mut self) -> R<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => {
                self.pos -= 1;
                self.fail(format!("{b} is not a bool"))
            }
        }
    }

    /// A count of elements each at least one byte long: never more than the bytes left.
    #[inline]
    pub fn count(&mut self) -> R<usize> {
        let at = self.pos;
        let n = self.u()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            self.pos = at;
            return self.fail(format!("a count of {n} with only {left} bytes left"));
        }
        Ok(n as usize)
    }

    pub fn str(&mut self) -> R<&'b str> {
        let n = self.count()?;
        let at = self.pos;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|_| Corrupt {
            offset: at,
            what: "text that is not UTF-8".into(),
        })
    }

    /// A name or literal: an index into the string table.
    fn arc(&mut self) -> R<Arc<str>> {
        let at = self.pos;
        let index = self.u()?;
        match self.names.get(index as usize) {
            Some(name) => Ok(name.clone()),
            None => Err(Corrupt {
                offset: at,
                what: format!("string {index} is not in the table of {}", self.names.len()),
            }),
        }
    }

    fn opt_arc(&mut self) -> R<Option<Arc<str>>> {
        Ok(if self.bool()? {
            Some(self.arc()?)
        } else {
            None
        })
    }

    pub fn opt_str(&mut self) -> R<Option<&'b str>> {
        Ok(if self.bool()? {
            Some(self.str()?)
        } else {
            None
        })
    }

    fn ty(&mut self) -> R<Type> {
        Ok(match self.byte()? {
            0 => Type::Int,
            1 => Type::Float,
            2 => Type::Bool,
            3 => Type::Str,
            b => {
                self.pos -= 1;
                return self.fail(format!("{b} is not a type"));
            }
        })
    }

    #[inline]
    fn span(&mut self) -> R<Span> {
        Ok(Span {
            start: self.u32()?,
            end: self.u32()?,
        })
    }

    #[inline]
    fn local(&mut self) -> R<LocalId> {
        self.u32().map(LocalId)
    }

    fn locals(&mut self) -> R<Vec<LocalId>> {
        let n = self.count()?;
        let mut v = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            v.push(self.local()?);
        }
        Ok(v)
    }

    #[inline]
    fn tag(&mut self, what: &str, max: u8) -> R<u8> {
        let t = self.byte()?;
        if t > max {
            self.pos -= 1;
            return self.fail(format!("{t} is not a tag of {what}"));
        }
        Ok(t)
    }
}

// ------------------------------------------------------------------------------ program

/// The program: its string table (every name and literal once), then the program, whose strings
/// are indices into the table.
pub fn write_program(out: &mut Writer, p: &Program) {
    let mut body = Writer::new();
    write_body(&mut body, p);
    out.u(body.table.len() as u64);
    for name in &body.table {
        out.str(name);
    }
    out.bytes.extend_from_slice(&body.bytes);
}

fn write_body(w: &mut Writer, p: &Program) {
    w.u(p.locals.len() as u64);
    for l in &p.locals {
        match &l.name {
            LocalName::Plain(n) => {
                w.byte(0);
                w.name(n);
            }
            LocalName::Payload {
                prefix,
                branch,
                field,
            } => {
                w.byte(1);
                w.name(prefix);
                w.name(branch);
                w.opt_name(field.as_deref());
            }
        }
        w.ty(l.ty);
        w.byte(local_kind_tag(l.kind));
        w.bool(l.owns_buffer);
    }
    w.u(p.values.len() as u64);
    for v in &p.values {
        w.name(&v.branch);
        match &v.payload {
            ValuePayload::Empty => w.byte(0),
            ValuePayload::Identity(l) => {
                w.byte(1);
                w.local(*l);
            }
            ValuePayload::Struct(fields) => {
                w.byte(2);
                w.u(fields.len() as u64);
                for (n, l) in fields {
                    w.name(n);
                    w.local(*l);
                }
            }
        }
    }
    w.u(p.events.len() as u64);
    for e in &p.events {
        w.u(e.host as u64);
        w.name(&e.name);
        w.u(e.cost);
        write_sig(w, &e.sig);
    }
    w.u(p.inputs.len() as u64);
    for i in &p.inputs {
        w.name(&i.name);
        w.ty(i.ty);
        w.local(i.local);
    }
    w.u(u64::from(p.conversion_buffers));
    w.u(p.loops.len() as u64);
    for l in &p.loops {
        w.span(l.span);
    }
    w.u(p.step_count as u64);
    w.u(u64::from(p.invoke_sites));
    w.u(p.subflow_names.len() as u64);
    for n in &p.subflow_names {
        w.name(n);
    }
    w.u(p.obligation_states.len() as u64);
    for s in &p.obligation_states {
        w.name(&s.name);
        match &s.discharge {
            None => w.byte(0),
            Some((host, name)) => {
                w.byte(1);
                w.u(*host as u64);
                w.name(name);
            }
        }
    }
    w.byte(trace_tag(p.trace));
    w.u(p.flows.len() as u64);
    for s in &p.flows {
        write_step(w, s);
    }
}

pub fn trace_tag(t: crate::host::TraceLevel) -> u8 {
    match t {
        crate::host::TraceLevel::Off => 0,
        crate::host::TraceLevel::Dispatches => 1,
        crate::host::TraceLevel::All => 2,
    }
}

fn local_kind_tag(k: LocalKind) -> u8 {
    match k {
        LocalKind::FlowInput => 0,
        LocalKind::SubflowInput => 1,
        LocalKind::Payload => 2,
        LocalKind::SubflowResult => 3,
        LocalKind::LoopVariable => 4,
        LocalKind::AccumulatorField => 5,
        LocalKind::Temporary => 6,
    }
}

pub fn write_sig(w: &mut Writer, sig: &EventSig) {
    w.name(&sig.name);
    w.u(sig.inputs.len() as u64);
    for (n, t) in &sig.inputs {
        w.name(n);
        w.ty(*t);
    }
    w.u(sig.branches.len() as u64);
    for b in &sig.branches {
        w.name(&b.name);
        write_payload_type(w, &b.payload);
    }
    w.u(sig.phantoms.len() as u64);
    for p in &sig.phantoms {
        match p.slot {
            PhantomSlot::Input(i) => {
                w.byte(0);
                w.u(i as u64);
            }
            PhantomSlot::Field { branch, field } => {
                w.byte(1);
                w.u(branch as u64);
                w.u(field as u64);
            }
        }
        let (tag, state) = match &p.phantom {
            Phantom::Creates(s) => (0, s),
            Phantom::Requires(s) => (1, s),
            Phantom::Discharges(s) => (2, s),
        };
        w.byte(tag);
        w.name(state);
    }
}

fn write_payload_type(w: &mut Writer, p: &PayloadType) {
    match p {
        PayloadType::Empty => w.byte(0),
        PayloadType::Identity(t) => {
            w.byte(1);
            w.ty(*t);
        }
        PayloadType::Struct(fields) => {
            w.byte(2);
            w.u(fields.len() as u64);
            for (n, t) in fields {
                w.name(n);
                w.ty(*t);
            }
        }
    }
}

fn write_arms(w: &mut Writer, a: &Arms) {
    w.u(a.arms.len() as u64);
    for arm in &a.arms {
        write_arm(w, arm);
    }
    w.u(a.by_branch.len() as u64);
    for b in &a.by_branch {
        w.u(b.len() as u64);
        for &i in b {
            w.u(u64::from(i));
        }
    }
    w.u(a.unguarded.len() as u64);
    for u in &a.unguarded {
        match u {
            None => w.byte(0),
            Some(i) => {
                w.byte(1);
                w.u(u64::from(*i));
            }
        }
    }
}

fn write_arm(w: &mut Writer, arm: &Arm) {
    match &arm.guard {
        None => w.byte(0),
        Some(g) => {
            w.byte(1);
            write_expr(w, g);
        }
    }
    match &arm.step {
        None => w.byte(0),
        Some(s) => {
            w.byte(1);
            write_step(w, s);
        }
    }
    w.span(arm.span);
}

fn write_argument(w: &mut Writer, a: &Argument) {
    write_expr(w, &a.expr);
    match a.format_into {
        None => w.byte(0),
        Some(b) => {
            w.byte(1);
            w.u(u64::from(b.0));
        }
    }
}

fn write_branch_locals(w: &mut Writer, b: &BranchLocals) {
    w.u(b.len() as u64);
    for ls in b.iter() {
        w.locals(ls);
    }
}

fn write_step(w: &mut Writer, s: &Step) {
    match s {
        Step::Invoke(s) => {
            w.byte(0);
            w.u(u64::from(s.event.0));
            w.u(u64::from(s.site));
            match &s.args {
                Arguments::Inputs(args) => {
                    w.byte(0);
                    w.u(args.len() as u64);
                    for a in args {
                        write_argument(w, a);
                    }
                }
                Arguments::Template(parts) => {
                    w.byte(1);
                    w.u(parts.len() as u64);
                    for p in parts {
                        match p {
                            TemplatePart::Text(t) => {
                                w.byte(0);
                                w.str(t);
                            }
                            TemplatePart::Hole(e) => {
                                w.byte(1);
                                write_expr(w, e);
                            }
                        }
                    }
                }
            }
            write_branch_locals(w, &s.payloads);
            w.u(u64::from(s.first_value.0));
            write_arms(w, &s.arms);
            w.span(s.span);
        }
        Step::Call(s) => {
            w.byte(1);
            w.name(&s.name);
            w.u(s.cost);
            w.bool(s.mocked);
            w.u(u64::from(s.name_index));
            w.u(s.inputs.len() as u64);
            for (l, a) in &s.inputs {
                w.local(*l);
                write_argument(w, a);
            }
            write_step(w, &s.body);
            w.u(s.exits.len() as u64);
            for e in &s.exits {
                w.u(u64::from(e.value.0));
                w.u(u64::from(e.branch));
                w.u(e.copies.len() as u64);
                for (f, t) in &e.copies {
                    w.local(*f);
                    w.local(*t);
                }
            }
            write_branch_locals(w, &s.results);
            w.u(u64::from(s.first_value.0));
            write_arms(w, &s.arms);
            w.span(s.span);
        }
        Step::For(s) => {
            w.byte(2);
            write_expr(w, &s.start);
            write_expr(w, &s.end);
            w.local(s.index);
            w.local(s.bound);
            w.u(u64::from(s.loop_index));
            write_arms(w, &s.arms);
            w.u(u64::from(s.first_value.0));
            w.span(s.span);
        }
        Step::If(s) => {
            w.byte(3);
            write_expr(w, &s.cond);
            write_arms(w, &s.arms);
            w.u(u64::from(s.first_value.0));
            w.span(s.span);
        }
        Step::While(s) => {
            w.byte(4);
            write_expr(w, &s.cond);
            w.u(u64::from(s.loop_index));
            write_arms(w, &s.arms);
            w.u(u64::from(s.first_value.0));
            w.span(s.span);
        }
        Step::Capture(s) => {
            w.byte(5);
            w.locals(&s.fields);
            w.u(s.init.len() as u64);
            for e in &s.init {
                write_expr(w, e);
            }
            write_arms(w, &s.arms);
            w.u(u64::from(s.first_value.0));
            w.span(s.span);
            w.opt_name(s.yield_of.as_deref());
        }
        Step::Update(s) => {
            w.byte(6);
            w.u(s.assigns.len() as u64);
            for (l, e) in &s.assigns {
                w.local(*l);
                write_expr(w, e);
            }
            w.u(u64::from(s.value.0));
            w.span(s.span);
        }
        Step::Construct(s) => {
            w.byte(7);
            w.u(s.fields.len() as u64);
            for (l, e) in &s.fields {
                w.local(*l);
                write_expr(w, e);
            }
            w.u(u64::from(s.value.0));
            w.span(s.span);
        }
        Step::Match(s) => {
            w.byte(8);
            write_expr(w, &s.scrutinee);
            w.local(s.value);
            w.u(s.arms.len() as u64);
            for a in &s.arms {
                w.u(a.patterns.len() as u64);
                for p in &a.patterns {
                    match p {
                        Pattern::Int { lo, hi } => {
                            w.byte(0);
                            w.i(*lo);
                            w.i(*hi);
                        }
                        Pattern::Str(t) => {
                            w.byte(1);
                            w.name(t);
                        }
                        Pattern::Bool(b) => {
                            w.byte(2);
                            w.bool(*b);
                        }
                    }
                }
                write_arm(w, &a.arm);
            }
            w.u(u64::from(s.matched.0));
            w.span(s.span);
        }
        Step::Yield(v) => {
            w.byte(9);
            w.u(u64::from(v.0));
        }
    }
}

fn write_site(w: &mut Writer, site: &ErrorSite) {
    w.span(site.span);
    w.opt_name(site.event.as_deref());
}

fn cmp_tag(op: CmpOp) -> u8 {
    match op {
        CmpOp::Eq => 0,
        CmpOp::Ne => 1,
        CmpOp::Lt => 2,
        CmpOp::Le => 3,
        CmpOp::Gt => 4,
        CmpOp::Ge => 5,
    }
}

fn int_op_tag(op: IntOp) -> u8 {
    match op {
        IntOp::Add => 0,
        IntOp::Sub => 1,
        IntOp::Mul => 2,
        IntOp::Div => 3,
        IntOp::Rem => 4,
    }
}

fn float_op_tag(op: FloatOp) -> u8 {
    match op {
        FloatOp::Add => 0,
        FloatOp::Sub => 1,
        FloatOp::Mul => 2,
        FloatOp::Div => 3,
        FloatOp::Rem => 4,
    }
}

fn write_expr(w: &mut Writer, e: &Expr) {
    match e {
        Expr::Int(v) => {
            w.byte(0);
            w.i(*v);
        }
        Expr::Float(v) => {
            w.byte(1);
            w.f(*v);
        }
        Expr::Bool(v) => {
            w.byte(2);
            w.bool(*v);
        }
        Expr::Str(s) => {
            w.byte(3);
            w.name(s);
        }
        Expr::Local(l, t) => {
            w.byte(4);
            w.local(*l);
            w.ty(*t);
        }
        Expr::NegInt(a, site) => {
            w.byte(5);
            write_expr(w, a);
            write_site(w, site);
        }
        Expr::NegFloat(a) => {
            w.byte(6);
            write_expr(w, a);
        }
        Expr::Not(a) => {
            w.byte(7);
            write_expr(w, a);
        }
        Expr::IntArith(op, a, b, site) => {
            w.byte(8);
            w.byte(int_op_tag(*op));
            write_expr(w, a);
            write_expr(w, b);
            write_site(w, site);
        }
        Expr::FloatArith(op, a, b) => {
            w.byte(9);
            w.byte(float_op_tag(*op));
            write_expr(w, a);
            write_expr(w, b);
        }
        Expr::IntCmp(op, a, b)
        | Expr::FloatCmp(op, a, b)
        | Expr::BoolCmp(op, a, b)
        | Expr::StrCmp(op, a, b) => {
            w.byte(match e {
                Expr::IntCmp(..) => 10,
                Expr::FloatCmp(..) => 11,
                Expr::BoolCmp(..) => 12,
                _ => 13,
            });
            w.byte(cmp_tag(*op));
            write_expr(w, a);
            write_expr(w, b);
        }
        Expr::And(a, b) | Expr::Or(a, b) => {
            w.byte(if matches!(e, Expr::And(..)) { 14 } else { 15 });
            write_expr(w, a);
            write_expr(w, b);
        }
        Expr::IntToFloat(a) => {
            w.byte(16);
            write_expr(w, a);
        }
        Expr::FloatToInt(a, site) => {
            w.byte(17);
            write_expr(w, a);
            write_site(w, site);
        }
        Expr::Select(c, a, b, t) => {
            w.byte(18);
            write_expr(w, c);
            write_expr(w, a);
            write_expr(w, b);
            w.ty(*t);
        }
    }
}

// ------------------------------------------------------------------------------ decoding

/// What a decoded event's signature is until the load replaces it with the registry's (after
/// [`Reader::sig_matches`]): an empty one, shared.
fn unchecked_sig() -> Arc<EventSig> {
    static EMPTY: std::sync::OnceLock<Arc<EventSig>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(EventSig::new(""))).clone()
}

impl Reader<'_> {
    pub fn program(&mut self) -> R<Program> {
        let n = self.count()?;
        let mut names = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            names.push(Arc::from(self.str()?));
        }
        self.names = names;
        let n = self.count()?;
        if n > self.limits.max_locals {
            return self.fail(format!(
                "{n} locals, more than the limit of {}",
                self.limits.max_locals
            ));
        }
        let mut locals = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            let name = match self.tag("a local's name", 1)? {
                0 => LocalName::Plain(self.arc()?),
                _ => LocalName::Payload {
                    prefix: self.arc()?,
                    branch: self.arc()?,
                    field: self.opt_arc()?,
                },
            };
            let ty = self.ty()?;
            let kind = match self.tag("a local kind", 6)? {
                0 => LocalKind::FlowInput,
                1 => LocalKind::SubflowInput,
                2 => LocalKind::Payload,
                3 => LocalKind::SubflowResult,
                4 => LocalKind::LoopVariable,
                5 => LocalKind::AccumulatorField,
                _ => LocalKind::Temporary,
            };
            let owns_buffer = self.bool()?;
            locals.push(LocalDecl {
                name,
                ty,
                kind,
                owns_buffer,
            });
        }
        let n = self.count()?;
        let mut values = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            let branch = self.arc()?;
            let payload = match self.tag("a value's payload", 2)? {
                0 => ValuePayload::Empty,
                1 => ValuePayload::Identity(self.local()?),
                _ => {
                    let n = self.count()?;
                    let mut fields = Vec::with_capacity(n.min(PREALLOC));
                    for _ in 0..n {
                        fields.push((self.arc()?, self.local()?));
                    }
                    ValuePayload::Struct(fields)
                }
            };
            values.push(ValueDesc { branch, payload });
        }
        let n = self.count()?;
        let mut events = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            let host = self.u()? as usize;
            let name = self.arc()?;
            let cost = self.u()?;
            // Checked against the registry's in place (see `Reader::sig_matches`), which then
            // replaces it: nothing is built for it.
            self.sig_at.push(self.pos);
            self.skip_sig()?;
            let sig = unchecked_sig();
            events.push(EventRef {
                host,
                name,
                cost,
                sig,
            });
        }
        let n = self.count()?;
        let mut inputs = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            inputs.push(InputDecl {
                name: self.arc()?,
                ty: self.ty()?,
                local: self.local()?,
            });
        }
        let conversion_buffers = self.u32()?;
        let n = self.count()?;
        let mut loops = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            loops.push(LoopInfo { span: self.span()? });
        }
        let step_count = self.u()? as usize;
        let invoke_sites = self.u32()?;
        let n = self.count()?;
        let mut subflow_names = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            subflow_names.push(self.arc()?);
        }
        let n = self.count()?;
        let mut obligation_states = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            let name = self.arc()?;
            let discharge = match self.tag("an obligation state", 1)? {
                0 => None,
                _ => Some((self.u()? as usize, self.arc()?)),
            };
            obligation_states.push(ObligationState { name, discharge });
        }
        let trace = match self.tag("a trace level", 2)? {
            0 => crate::host::TraceLevel::Off,
            1 => crate::host::TraceLevel::Dispatches,
            _ => crate::host::TraceLevel::All,
        };
        let n = self.count()?;
        let mut flows = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            flows.push(self.step()?);
        }
        Ok(Program {
            flows,
            locals,
            values,
            events,
            inputs,
            conversion_buffers,
            loops,
            step_count,
            invoke_sites,
            subflow_names,
            obligation_states,
            trace,
        })
    }

    /// The signature at byte `at` (one of [`Reader::sig_at`]), decoded (for a message).
    pub fn sig_at_offset(&mut self, at: usize) -> R<EventSig> {
        let pos = std::mem::replace(&mut self.pos, at);
        let sig = self.sig();
        self.pos = pos;
        sig
    }

    /// Whether the signature at byte `at` is `sig`, compared without building it.
    pub fn sig_matches(&mut self, at: usize, sig: &EventSig) -> R<bool> {
        let pos = std::mem::replace(&mut self.pos, at);
        let matches = self.compare_sig(sig);
        self.pos = pos;
        matches
    }

    fn name_is(&mut self, want: &str) -> R<bool> {
        let at = self.pos;
        let index = self.u()?;
        match self.names.get(index as usize) {
            Some(name) => Ok(**name == *want),
            None => Err(Corrupt {
                offset: at,
                what: format!("string {index} is not in the table of {}", self.names.len()),
            }),
        }
    }

    fn compare_sig(&mut self, sig: &EventSig) -> R<bool> {
        if !self.name_is(&sig.name)? || self.count()? != sig.inputs.len() {
            return Ok(false);
        }
        for (n, t) in &sig.inputs {
            if !self.name_is(n)? || self.ty()? != *t {
                return Ok(false);
            }
        }
        if self.count()? != sig.branches.len() {
            return Ok(false);
        }
        for b in &sig.branches {
            if !self.name_is(&b.name)? || self.payload_type()? != b.payload {
                return Ok(false);
            }
        }
        if self.count()? != sig.phantoms.len() {
            return Ok(false);
        }
        for p in &sig.phantoms {
            if self.phantom()? != *p {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads past a signature, checking it as [`Reader::sig`] does.
    fn skip_sig(&mut self) -> R<()> {
        self.arc()?;
        let n = self.count()?;
        for _ in 0..n {
            self.arc()?;
            self.ty()?;
        }
        let n = self.count()?;
        for _ in 0..n {
            self.arc()?;
            let _ = self.payload_type()?;
        }
        let n = self.count()?;
        for _ in 0..n {
            let _ = self.phantom()?;
        }
        Ok(())
    }

    fn phantom(&mut self) -> R<PhantomAt> {
        let slot = match self.tag("a phantom slot", 1)? {
            0 => PhantomSlot::Input(self.u()? as usize),
            _ => PhantomSlot::Field {
                branch: self.u()? as usize,
                field: self.u()? as usize,
            },
        };
        let phantom = match self.tag("a phantom state", 2)? {
            0 => Phantom::Creates(self.arc()?),
            1 => Phantom::Requires(self.arc()?),
            _ => Phantom::Discharges(self.arc()?),
        };
        Ok(PhantomAt { slot, phantom })
    }

    pub fn sig(&mut self) -> R<EventSig> {
        let name = self.arc()?;
        let n = self.count()?;
        let mut inputs = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            inputs.push((self.arc()?, self.ty()?));
        }
        let n = self.count()?;
        let mut branches = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            branches.push(BranchSig {
                name: self.arc()?,
                payload: self.payload_type()?,
            });
        }
        let n = self.count()?;
        let mut phantoms = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            phantoms.push(self.phantom()?);
        }
        Ok(EventSig {
            name,
            inputs,
            branches,
            phantoms,
        })
    }

    fn payload_type(&mut self) -> R<PayloadType> {
        Ok(match self.tag("a payload type", 2)? {
            0 => PayloadType::Empty,
            1 => PayloadType::Identity(self.ty()?),
            _ => {
                let n = self.count()?;
                let mut fields = Vec::with_capacity(n.min(PREALLOC));
                for _ in 0..n {
                    fields.push((self.arc()?, self.ty()?));
                }
                PayloadType::Struct(fields)
            }
        })
    }

    fn arms(&mut self) -> R<Arms> {
        let n = self.count()?;
        let mut arms = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            arms.push(self.arm()?);
        }
        let n = self.count()?;
        let mut by_branch = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            let m = self.count()?;
            let mut v = Vec::with_capacity(m.min(PREALLOC));
            for _ in 0..m {
                v.push(self.u32()?);
            }
            by_branch.push(v);
        }
        let n = self.count()?;
        let mut unguarded = Vec::with_capacity(n.min(PREALLOC));
        for _ in 0..n {
            unguarded.push(match self.tag("an arm index", 1)? {
                0 => None,
                _ => Some(self.u32()?),
            });
        }
        Ok(Arms {
            arms,
            by_branch,
            unguarded,
        })
    }

    fn arm(&mut self) -> R<Arm> {
        let guard = match self.tag("a guard", 1)? {
            0 => None,
            _ => Some(self.expr()?),
        };
        let step = match self.tag("an arm's step", 1)? {
            0 => None,
            _ => Some(self.step()?),
        };
        Ok(Arm {
            guard,
            step,
            span: self.span()?,
        })
    }

    fn argument(&mut self) -> R<Argument> {
        let expr = self.expr()?;
        let format_into = match self.tag("a conversion", 1)? {
            0 => None,
            _ => Some(BufferId(self.u32()?)),
        };
        Ok(Argument { expr, format_into })
    }

    fn branch_locals(&mut self) -> R<BranchLocals> {
        let n = self.count()?;
        let mut b = BranchLocals::default();
        for _ in 0..n {
            let m = self.count()?;
            for _ in 0..m {
                b.push(self.local()?);
            }
            b.end_branch();
        }
        Ok(b)
    }

    fn value(&mut self) -> R<ValueId> {
        self.u32().map(ValueId)
    }

    pub fn step(&mut self) -> R<Step> {
        if self.depth >= self.limits.max_step_depth {
            return self.fail(format!(
                "steps nested more than {} deep",
                self.limits.max_step_depth
            ));
        }
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return self.fail(format!("more than {} steps", self.limits.max_steps));
        }
        self.depth += 1;
        let step = self.step_body();
        self.depth -= 1;
        step
    }

    fn step_body(&mut self) -> R<Step> {
        let tag = self.tag("a step", 9)?;
        Ok(match tag {
            0 => {
                let event = EventUse(self.u32()?);
                let site = self.u32()?;
                let args = match self.tag("arguments", 1)? {
                    0 => {
                        let n = self.count()?;
                        let mut args = Vec::with_capacity(n.min(PREALLOC));
                        for _ in 0..n {
                            args.push(self.argument()?);
                        }
                        Arguments::Inputs(args)
                    }
                    _ => {
                        let n = self.count()?;
                        let mut parts = Vec::with_capacity(n.min(PREALLOC));
                        for _ in 0..n {
                            parts.push(match self.tag("a template part", 1)? {
                                0 => TemplatePart::Text(self.str()?.into()),
                                _ => TemplatePart::Hole(self.expr()?),
                            });
                        }
                        Arguments::Template(parts)
                    }
                };
                let payloads = self.branch_locals()?;
                let first_value = self.value()?;
                let arms = self.arms()?;
                let span = self.span()?;
                Step::Invoke(Box::new(Invoke {
                    event,
                    site,
                    args,
                    payloads,
                    first_value,
                    arms,
                    span,
                }))
            }
            1 => {
                let name = self.arc()?;
                let cost = self.u()?;
                let mocked = self.bool()?;
                let name_index = self.u32()?;
                let n = self.count()?;
                let mut inputs = Vec::with_capacity(n.min(PREALLOC));
                for _ in 0..n {
                    inputs.push((self.local()?, self.argument()?));
                }
                let body = self.step()?;
                let n = self.count()?;
                let mut exits = Vec::with_capacity(n.min(PREALLOC));
                for _ in 0..n {
                    let value = self.value()?;
                    let branch = self.u32()?;
                    let m = self.count()?;
                    let mut copies = Vec::with_capacity(m.min(PREALLOC));
                    for _ in 0..m {
                        copies.push((self.local()?, self.local()?));
                    }
                    exits.push(Exit {
                        value,
                        branch,
                        copies,
                    });
                }
                let results = self.branch_locals()?;
                let first_value = self.value()?;
                let arms = self.arms()?;
                let span = self.span()?;
                Step::Call(Box::new(SubflowCall {
                    name,
                    cost,
                    mocked,
                    name_index,
                    inputs,
                    body,
                    exits,
                    results,
                    first_value,
                    arms,
                    span,
                }))
            }
            2 => {
                let start = self.expr()?;
                let end = self.expr()?;
                let index = self.local()?;
                let bound = self.local()?;
                let loop_index = self.u32()?;
                let arms = self.arms()?;
                Step::For(Box::new(ForLoop {
                    start,
                    end,
                    index,
                    bound,
                    loop_index,
                    arms,
                    first_value: self.value()?,
                    span: self.span()?,
                }))
            }
            3 => {
                let cond = self.expr()?;
                let arms = self.arms()?;
                Step::If(Box::new(IfStep {
                    cond,
                    arms,
                    first_value: self.value()?,
                    span: self.span()?,
                }))
            }
            4 => {
                let cond = self.expr()?;
                let loop_index = self.u32()?;
                let arms = self.arms()?;
                Step::While(Box::new(WhileLoop {
                    cond,
                    loop_index,
                    arms,
                    first_value: self.value()?,
                    span: self.span()?,
                }))
            }
            5 => {
                let fields = self.locals()?;
                let n = self.count()?;
                let mut init = Vec::with_capacity(n.min(PREALLOC));
                for _ in 0..n {
                    init.push(self.expr()?);
                }
                let arms = self.arms()?;
                Step::Capture(Box::new(CaptureStep {
                    fields,
                    init,
                    arms,
                    first_value: self.value()?,
                    span: self.span()?,
                    yield_of: self.opt_arc()?,
                }))
            }
            6 | 7 => {
                let update = tag == 6;
                let n = self.count()?;
                let mut fields = Vec::with_capacity(n.min(PREALLOC));
                for _ in 0..n {
                    fields.push((self.local()?, self.expr()?));
                }
                let value = self.value()?;
                let span = self.span()?;
                if update {
                    Step::Update(Box::new(CaptureUpdate {
                        assigns: fields,
                        value,
                        span,
                    }))
                } else {
                    Step::Construct(Box::new(Construct {
                        fields,
                        value,
                        span,
                    }))
                }
            }
            8 => {
                let scrutinee = self.expr()?;
                let value = self.local()?;
                let n = self.count()?;
                let mut arms = Vec::with_capacity(n.min(PREALLOC));
                for _ in 0..n {
                    let m = self.count()?;
                    let mut patterns = Vec::with_capacity(m.min(PREALLOC));
                    for _ in 0..m {
                        patterns.push(match self.tag("a pattern", 2)? {
                            0 => Pattern::Int {
                                lo: self.i()?,
                                hi: self.i()?,
                            },
                            1 => Pattern::Str(self.arc()?),
                            _ => Pattern::Bool(self.bool()?),
                        });
                    }
                    arms.push(MatchArm {
                        patterns,
                        arm: self.arm()?,
                    });
                }
                Step::Match(Box::new(MatchStep {
                    scrutinee,
                    value,
                    arms,
                    matched: self.value()?,
                    span: self.span()?,
                }))
            }
            _ => Step::Yield(self.value()?),
        })
    }

    fn site(&mut self) -> R<ErrorSite> {
        Ok(ErrorSite {
            span: self.span()?,
            event: self.opt_arc()?,
        })
    }

    fn cmp(&mut self) -> R<CmpOp> {
        Ok(match self.tag("a comparison", 5)? {
            0 => CmpOp::Eq,
            1 => CmpOp::Ne,
            2 => CmpOp::Lt,
            3 => CmpOp::Le,
            4 => CmpOp::Gt,
            _ => CmpOp::Ge,
        })
    }

    fn sub(&mut self) -> R<Box<Expr>> {
        self.expr().map(Box::new)
    }

    pub fn expr(&mut self) -> R<Expr> {
        if self.expr_depth >= self.limits.max_expr_depth {
            return self.fail(format!(
                "expressions nested more than {} deep",
                self.limits.max_expr_depth
            ));
        }
        self.expr_depth += 1;
        let e = self.expr_body();
        self.expr_depth -= 1;
        e
    }

    fn expr_body(&mut self) -> R<Expr> {
        Ok(match self.tag("an expression", 18)? {
            0 => Expr::Int(self.i()?),
            1 => Expr::Float(self.f()?),
            2 => Expr::Bool(self.bool()?),
            3 => Expr::Str(self.arc()?),
            4 => Expr::Local(self.local()?, self.ty()?),
            5 => Expr::NegInt(self.sub()?, self.site()?),
            6 => Expr::NegFloat(self.sub()?),
            7 => Expr::Not(self.sub()?),
            8 => {
                let op = match self.tag("an int operator", 4)? {
                    0 => IntOp::Add,
                    1 => IntOp::Sub,
                    2 => IntOp::Mul,
                    3 => IntOp::Div,
                    _ => IntOp::Rem,
                };
                Expr::IntArith(op, self.sub()?, self.sub()?, self.site()?)
            }
            9 => {
                let op = match self.tag("a float operator", 4)? {
                    0 => FloatOp::Add,
                    1 => FloatOp::Sub,
                    2 => FloatOp::Mul,
                    3 => FloatOp::Div,
                    _ => FloatOp::Rem,
                };
                Expr::FloatArith(op, self.sub()?, self.sub()?)
            }
            t @ 10..=13 => {
                let op = self.cmp()?;
                let (a, b) = (self.sub()?, self.sub()?);
                match t {
                    10 => Expr::IntCmp(op, a, b),
                    11 => Expr::FloatCmp(op, a, b),
                    12 => Expr::BoolCmp(op, a, b),
                    _ => Expr::StrCmp(op, a, b),
                }
            }
            14 => Expr::And(self.sub()?, self.sub()?),
            15 => Expr::Or(self.sub()?, self.sub()?),
            16 => Expr::IntToFloat(self.sub()?),
            17 => Expr::FloatToInt(self.sub()?, self.site()?),
            _ => Expr::Select(self.sub()?, self.sub()?, self.sub()?, self.ty()?),
        })
    }
}
