//! Shape contracts (SPEC 13): every way the last top-level flow can end, checked against the
//! branches of the event the caller named, before anything runs.

use super::Lowerer;
use crate::diag::Code;
use crate::ir::*;
use crate::span::Span;
use crate::types::{BranchSig, EventSig, PayloadType};

/// The branches of `sig` as messages show them: `` `found { name: str }`, `missing` ``.
pub(in crate::sema) fn describe_branches(sig: &EventSig) -> String {
    sig.result_branch_slice()
        .iter()
        .map(|b| describe_branch(&b.name, &b.payload))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_branch(name: &str, payload: &PayloadType) -> String {
    let name = if name.is_empty() {
        "the void result".to_string()
    } else {
        format!("`{name}")
    };
    let tick = if name.starts_with('`') { "`" } else { "" };
    match payload {
        PayloadType::Empty => format!("{name}{tick}"),
        other => format!("{name} {other}{tick}"),
    }
}

/// Ways to end: each value with where it is made.
type Ends = Vec<(ValueId, Span)>;

/// Whether every field of `want` is one of `have` (as many, names unique) with its type: by a
/// scan for a few fields, through a name index for more (a scan per field was quadratic in the
/// payload's width: 20,000 fields took 0.7 s).
fn fields_fit(
    have: &[(std::sync::Arc<str>, LocalId)],
    want: &[(std::sync::Arc<str>, crate::types::Type)],
    ty: impl Fn(&LocalId) -> crate::types::Type,
) -> bool {
    if want.len() <= 8 {
        return want
            .iter()
            .all(|(n, t)| have.iter().any(|(m, l)| m == n && ty(l) == *t));
    }
    let by_name: std::collections::HashMap<&str, &LocalId> =
        have.iter().map(|(m, l)| (&**m, l)).collect();
    want.iter()
        .all(|(n, t)| by_name.get(&**n).is_some_and(|l| ty(l) == *t))
}

impl Lowerer<'_> {
    /// E0213 at every way the last lowered flow can end that is not a branch of `sig` with its
    /// payload types: a constructor, an event's result (no continuation takes it further), a
    /// builtin's implicit `done`/`else`, and through subflow calls the constructors of the
    /// body that return the branch the call ends with (the call, in library and mock code).
    pub(in crate::sema) fn check_shape(&mut self, name: &str, sig: &EventSig) {
        let Some(last) = self.flows.last() else {
            return;
        };
        let mut ends = Vec::new();
        self.shape_ends(last, &mut ends);
        // The shape's branches by name and the ends reported, each looked up in one step: a
        // search of the branches per end, and of the reported ends per report, were quadratic
        // (16,000 branches each made by one arm: 0.27 s; with the index, see tests/hostile.rs).
        let branches: std::collections::HashMap<&str, &BranchSig> = sig
            .result_branch_slice()
            .iter()
            .map(|b| (&*b.name, b))
            .collect();
        let mut reported: std::collections::HashSet<(Span, ValueId)> = Default::default();
        for (value, span) in ends {
            let Some(problem) = self.outside_shape(name, &branches, value) else {
                continue;
            };
            if !reported.insert((span, value)) {
                continue;
            }
            let message = format!(
                "the flow can end with {problem} (its branches: {})",
                describe_branches(sig)
            );
            self.error(Code::E0213, message, span);
        }
    }

    /// Why `value` is not a branch of the shape (`branches`, by name) with its payload types,
    /// or `None` if it is one. Nothing is formatted for a value that fits.
    fn outside_shape(
        &self,
        name: &str,
        branches: &std::collections::HashMap<&str, &BranchSig>,
        value: ValueId,
    ) -> Option<String> {
        let desc = self.values.get(value.0 as usize)?;
        let ty = |local: &LocalId| self.locals[local.0 as usize].ty;
        let expected = branches.get(&*desc.branch).copied();
        let fits = expected.is_some_and(|expected| match (&desc.payload, &expected.payload) {
            (ValuePayload::Empty, PayloadType::Empty) => true,
            (ValuePayload::Identity(local), PayloadType::Identity(t)) => ty(local) == *t,
            // Fields by name: the order a constructor writes them in is free.
            (ValuePayload::Struct(have), PayloadType::Struct(want)) => {
                have.len() == want.len() && fields_fit(have, want, ty)
            }
            _ => false,
        });
        if fits {
            return None;
        }
        let payload = match &desc.payload {
            ValuePayload::Empty => PayloadType::Empty,
            ValuePayload::Identity(local) => PayloadType::Identity(ty(local)),
            ValuePayload::Struct(fields) => {
                PayloadType::Struct(fields.iter().map(|(n, l)| (n.clone(), ty(l))).collect())
            }
        };
        let found = describe_branch(&desc.branch, &payload);
        Some(match expected {
            None => format!("{found}, which is not a branch of shape `{name}`"),
            Some(expected) => format!(
                "{found}, but shape `{name}` has {}",
                describe_branch(&expected.name, &expected.payload)
            ),
        })
    }

    /// Every value `step` can end with, each with where it is made.
    fn shape_ends(&self, step: &Step, out: &mut Ends) {
        let site = |value: ValueId| {
            self.value_sites
                .get(value.0 as usize)
                .copied()
                .unwrap_or_default()
        };
        // The branches of `arms` in `branches` that end here (no continuation, or one without a
        // step) call `reached(branch)`; the steps of the others are followed.
        let arms = |arms: &Arms,
                    branches: &mut dyn Iterator<Item = usize>,
                    implicit: &[usize],
                    out: &mut Ends,
                    reached: &mut dyn FnMut(usize, &mut Ends)| {
            // A catch-all is an arm of several branches: its step is walked once.
            let mut walked = smallvec::SmallVec::<[bool; 8]>::from_elem(false, arms.arms.len());
            for branch in branches {
                if arms.arms.is_empty()
                    || (arms.by_branch[branch].is_empty() && implicit.contains(&branch))
                {
                    reached(branch, out);
                    continue;
                }
                // Tried in order: the arms after an unguarded one are never taken.
                for &index in &arms.by_branch[branch] {
                    let arm = &arms.arms[index as usize];
                    match &arm.step {
                        Some(_) if walked[index as usize] => {}
                        Some(step) => {
                            walked[index as usize] = true;
                            self.shape_ends(step, out)
                        }
                        None => reached(branch, out),
                    }
                    if arm.guard.is_none() {
                        break;
                    }
                }
            }
        };
        let result = |first: ValueId| {
            move |branch: usize, out: &mut Ends| {
                let value = ValueId(first.0 + branch as u32);
                out.push((value, site(value)));
            }
        };
        match step {
            Step::Invoke(s) => arms(
                &s.arms,
                &mut (0..s.payloads.len()),
                &[],
                out,
                &mut result(s.first_value),
            ),
            Step::Call(s) => {
                // A result branch ends the flow where the body returns it: the body's ends that
                // exit with that branch, each reported at its own place.
                let mut body = Vec::new();
                self.shape_ends(&s.body, &mut body);
                let mut returned = |branch: usize, out: &mut Ends| {
                    let value = ValueId(s.first_value.0 + branch as u32);
                    for (end, span) in &body {
                        let exits = crate::ir::exit_of(&s.exits, *end)
                            .is_some_and(|(_, e)| e.branch as usize == branch);
                        if exits {
                            out.push((value, *span));
                        }
                    }
                };
                arms(&s.arms, &mut (0..s.results.len()), &[], out, &mut returned)
            }
            Step::For(s) => arms(
                &s.arms,
                &mut [1].into_iter(),
                &[1],
                out,
                &mut result(s.first_value),
            ),
            Step::If(s) => arms(
                &s.arms,
                &mut [0, 1].into_iter(),
                &[1],
                out,
                &mut result(s.first_value),
            ),
            Step::While(s) => arms(
                &s.arms,
                &mut [1].into_iter(),
                &[1],
                out,
                &mut result(s.first_value),
            ),
            Step::Capture(s) => arms(
                &s.arms,
                &mut [1].into_iter(),
                &[],
                out,
                &mut result(s.first_value),
            ),
            Step::Update(s) => out.push((s.value, site(s.value))),
            Step::Construct(s) => out.push((s.value, site(s.value))),
            Step::Match(s) => {
                for arm in &s.arms {
                    match &arm.arm.step {
                        Some(step) => self.shape_ends(step, out),
                        None => out.push((s.matched, site(s.matched))),
                    }
                }
            }
            Step::Yield(v) => out.push((*v, site(*v))),
        }
    }
}
