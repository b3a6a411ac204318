//! The flow-state layout: every local of a program gets a fixed offset and a native type in one
//! state buffer of 8-byte words, computed once per compiled flow. It is the frame of both tiers.
//!
//! Allocation follows the shape of the step tree: a step's own locals sit above its ancestors'
//! and below its children's, and sibling continuations (only one of which runs) start at the same
//! offset, so they share space. Flow inputs come first and are never shared. A `str` local is two
//! words (pointer, length); strings made at run time live in buffers of the run state, one per
//! local that owns its text (two for accumulator fields, which are double-buffered so that
//! `captured { a: acc.b, b: acc.a }` reads old values while writing new ones).

use crate::host::{BranchPlan, FieldPlan, ReplyPlan, SiteObligations};
use crate::ir::{Arms, Invoke, LocalId, Program, Step};
use crate::types::Type;
use std::fmt;

/// Marks a local without a string buffer.
pub const NO_BUFFER: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Offset in words from the start of the flow state.
    pub offset: u32,
    pub ty: Type,
    /// First string buffer of this local, or [`NO_BUFFER`].
    pub buffer: u32,
}

#[derive(Clone, Debug)]
pub struct Layout {
    /// Indexed by [`LocalId`].
    pub slots: Vec<Slot>,
    /// Size of the flow state in words.
    pub words: u32,
    /// Words of a run state's frame: `words`, then the interpreter's temporaries (set when its
    /// bytecode is compiled; native code uses only the first `words`).
    pub frame_words: u32,
    /// String buffers owned by locals.
    pub buffers: u32,
    /// Where each host invocation's reply goes, indexed by [`crate::ir::Invoke::site`].
    pub(crate) replies: Vec<ReplyPlan>,
}

impl Layout {
    #[inline]
    pub fn slot(&self, local: LocalId) -> Slot {
        self.slots[local.0 as usize]
    }

    pub fn bytes(&self) -> usize {
        self.words as usize * 8
    }

    /// Bytes of heap the layout holds, from its containers' capacities.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.slots.capacity() * size_of::<Slot>()
            + self.replies.capacity() * size_of::<ReplyPlan>()
            + self
                .replies
                .iter()
                .map(|plan| {
                    fn spilled<A: smallvec::Array>(v: &smallvec::SmallVec<A>) -> usize {
                        if v.spilled() {
                            v.capacity() * size_of::<A::Item>()
                        } else {
                            0
                        }
                    }
                    spilled(&plan.branches)
                        + plan
                            .branches
                            .iter()
                            .map(|b| spilled(&b.fields))
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// Computes the layout of `program`.
    pub fn of(program: &Program) -> Layout {
        let mut builder = Builder {
            program,
            slots: vec![
                Slot {
                    offset: 0,
                    ty: Type::Int,
                    buffer: NO_BUFFER,
                };
                program.locals.len()
            ],
            words: 0,
            buffers: 0,
            replies: Vec::with_capacity(program.invoke_sites as usize),
        };
        let mut top = 0;
        for input in &program.inputs {
            top = builder.place([input.local], top);
        }
        for flow in &program.flows {
            builder.step(flow, top);
        }
        builder.words = builder.words.max(top);
        Layout {
            slots: builder.slots,
            words: builder.words,
            frame_words: builder.words,
            buffers: builder.buffers,
            replies: builder
                .replies
                .into_iter()
                .map(|plan| plan.expect("invocation sites are numbered densely"))
                .collect(),
        }
    }
}

struct Builder<'p> {
    program: &'p Program,
    slots: Vec<Slot>,
    words: u32,
    buffers: u32,
    /// Indexed by invocation site (sites are numbered in lowering order, not in tree order).
    replies: Vec<Option<ReplyPlan>>,
}

impl Builder<'_> {
    fn reply_plan(&self, s: &Invoke) -> ReplyPlan {
        let sig = &self.program.events[s.event.0 as usize].sig;
        // Pushed one by one: cheaper than collecting into the inline vectors.
        let mut branches = smallvec::SmallVec::<[BranchPlan; 2]>::new();
        for (branch, locals) in sig.result_branch_slice().iter().zip(s.payloads.iter()) {
            let mut fields = smallvec::SmallVec::new();
            for &l in locals {
                let slot = self.slots[l.0 as usize];
                fields.push(FieldPlan {
                    ty: slot.ty,
                    offset: slot.offset,
                    buffer: slot.buffer,
                });
            }
            branches.push(BranchPlan {
                name: branch.name.clone(),
                payload: branch.payload.clone(),
                fields,
            });
        }
        let only_identity = crate::host::ReplyPlan::identity_field(&branches);
        let obligations = (!sig.phantoms.is_empty()).then(|| self.site_obligations(sig, &branches));
        ReplyPlan {
            event: self.program.events[s.event.0 as usize].name.clone(),
            span: s.span,
            branches,
            only_identity,
            obligations,
        }
    }

    /// The handles a call of `sig` opens (payload fields marked `str[S!]`) and releases
    /// (inputs marked `str[!S]`), by state index.
    fn site_obligations(
        &self,
        sig: &crate::types::EventSig,
        branches: &[BranchPlan],
    ) -> Box<SiteObligations> {
        use crate::types::{Phantom, PhantomSlot};
        let state_index = |state: &str| {
            self.program
                .obligation_states
                .iter()
                .position(|s| &*s.name == state)
                .map(|i| i as u32)
        };
        let mut obligations = SiteObligations::default();
        for at in &sig.phantoms {
            match (&at.slot, &at.phantom) {
                (PhantomSlot::Field { branch, field }, Phantom::Creates(state)) => {
                    let plan = branches.get(*branch).and_then(|b| b.fields.get(*field));
                    if let (Some(plan), Some(index)) = (plan, state_index(state)) {
                        obligations.creates.push((*branch as u32, *plan, index));
                    }
                }
                (PhantomSlot::Input(input), Phantom::Discharges(state)) => {
                    let word: u32 = sig.inputs[..*input].iter().map(|(_, t)| t.words()).sum();
                    // A state this program never opens has nothing to release.
                    if let Some(index) = state_index(state) {
                        obligations.releases.push((*input as u32, word, index));
                    }
                }
                _ => {}
            }
        }
        Box::new(obligations)
    }

    /// Places `locals` from word `top`; returns the new top.
    fn place(&mut self, locals: impl IntoIterator<Item = LocalId>, mut top: u32) -> u32 {
        for local in locals {
            let decl = &self.program.locals[local.0 as usize];
            let buffer = if decl.owns_buffer {
                let first = self.buffers;
                self.buffers += if decl.kind == crate::ir::LocalKind::AccumulatorField {
                    2
                } else {
                    1
                };
                first
            } else {
                NO_BUFFER
            };
            self.slots[local.0 as usize] = Slot {
                offset: top,
                ty: decl.ty,
                buffer,
            };
            top += decl.ty.words();
        }
        self.words = self.words.max(top);
        top
    }

    fn arms(&mut self, arms: &Arms, top: u32) {
        for arm in &arms.arms {
            if let Some(step) = &arm.step {
                self.step(step, top);
            }
        }
    }

    fn step(&mut self, step: &Step, top: u32) {
        match step {
            Step::Invoke(s) => {
                let top = self.place(s.payloads.all().iter().copied(), top);
                let plan = self.reply_plan(s);
                let site = s.site as usize;
                if self.replies.len() <= site {
                    self.replies.resize_with(site + 1, || None);
                }
                assert!(self.replies[site].is_none(), "invocation sites are unique");
                self.replies[site] = Some(plan);
                self.arms(&s.arms, top);
            }
            Step::Call(s) => {
                let locals = s.inputs.iter().map(|(l, _)| *l);
                let top = self.place(locals.chain(s.results.all().iter().copied()), top);
                // The body has finished (its exit copied into `results`) before a continuation
                // runs, so the two share space.
                self.step(&s.body, top);
                self.arms(&s.arms, top);
            }
            Step::For(s) => {
                let top = self.place([s.index, s.bound], top);
                self.arms(&s.arms, top);
            }
            Step::If(s) => self.arms(&s.arms, top),
            Step::While(s) => self.arms(&s.arms, top),
            Step::Capture(s) => {
                let top = self.place(s.fields.iter().copied(), top);
                self.arms(&s.arms, top);
            }
            Step::Construct(s) => {
                self.place(s.fields.iter().map(|(l, _)| *l), top);
            }
            Step::Match(s) => {
                let top = self.place([s.value], top);
                for arm in &s.arms {
                    if let Some(step) = &arm.arm.step {
                        self.step(step, top);
                    }
                }
            }
            Step::Update(_) | Step::Yield(_) => {}
        }
    }
}

/// A table of the layout: one line per local.
pub struct LayoutTable<'a> {
    pub program: &'a Program,
    pub layout: &'a Layout,
}

impl fmt::Display for LayoutTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "flow state: {} words ({} bytes), {} string buffers",
            self.layout.words,
            self.layout.bytes(),
            self.layout.buffers
        )?;
        writeln!(
            f,
            "{:>6}  {:>6}  {:<5}  {:<16}  name",
            "local", "offset", "type", "kind"
        )?;
        for (i, decl) in self.program.locals.iter().enumerate() {
            let slot = self.layout.slots[i];
            let buffer = if slot.buffer == NO_BUFFER {
                String::new()
            } else {
                format!("  (buffer {})", slot.buffer)
            };
            writeln!(
                f,
                "{:>6}  {:>6}  {:<5}  {:<16}  {}{}",
                i,
                slot.offset * 8,
                decl.ty.name(),
                format!("{:?}", decl.kind),
                decl.name,
                buffer
            )?;
        }
        Ok(())
    }
}
