//! Obligations at check time (SPEC 12): which locals hold handles, in which state, and whether
//! the path being lowered has released them. A handle is born where a host event's branch
//! carrying `str[S!]` (or `str[S]`) is bound, where a subflow input or result is declared with a
//! state, and it is passed on, unchanged, by constructor fields. Only a name or a field access
//! is a handle: any other expression of type `str` is plain text.

use super::Lowerer;
use crate::diag::{Code, Diagnostic, NoteKind};
use crate::ir::{Expr, LocalId, ObligationState, ValueId, ValuePayload};
use crate::span::{LineIndex, Span};
use crate::types::{EventSig, Phantom, PhantomSlot};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One handle as the checker follows it: every local holding it shares it.
#[derive(Clone, Debug)]
struct Root {
    state: Arc<str>,
    /// Where the path being lowered released it.
    released: Option<Span>,
    /// The loops (and yielded continuations, which may run many times) around its birth.
    loop_depth: u32,
    /// A subflow input declared `str[S]`: lent by the caller, who still holds it.
    borrowed: bool,
}

/// The handles of a lowering.
#[derive(Default)]
pub(in crate::sema) struct Handles {
    roots: Vec<Root>,
    /// The root each handle-holding local shares (ordered: a trial lowering undone drops a
    /// suffix of the locals, and its handles with one split).
    of_local: BTreeMap<u32, u32>,
    /// Roots released on the path being lowered, newest last (undone when an arm ends).
    log: Vec<u32>,
    /// Loops (and yielded continuations) around the step being lowered.
    loop_depth: u32,
    /// Branches of the invocation whose arms are lowered next that may run many times (`each`
    /// of `for`, `body` of `while`, the yielded branches of a subflow call).
    pub repeating: Vec<Arc<str>>,
    /// The states the program can create, and their discharging events.
    pub states: Vec<ObligationState>,
}

/// A release an invocation makes once its arguments are lowered.
pub(in crate::sema) struct Release {
    root: u32,
    span: Span,
}

impl Lowerer<'_> {
    /// Forgets the handle locals past `locals` (a trial lowering undone).
    pub(super) fn forget_handles_from(&mut self, locals: usize) {
        let _dropped = self.handles.of_local.split_off(&(locals as u32));
    }

    /// Marks `local` as a new handle of `state`.
    pub(super) fn new_handle(&mut self, local: LocalId, state: &Arc<str>) {
        self.new_root(local, state, false);
    }

    /// Marks subflow input `local`, declared with `phantom`, as a handle: lent by the caller for
    /// `str[S]`, given away for `str[!S]`.
    pub(super) fn new_input_handle(&mut self, local: LocalId, phantom: &Phantom) {
        let borrowed = matches!(phantom, Phantom::Requires(_));
        self.new_root(local, phantom.state(), borrowed);
    }

    fn new_root(&mut self, local: LocalId, state: &Arc<str>, borrowed: bool) {
        let root = self.handles.roots.len() as u32;
        self.handles.roots.push(Root {
            state: state.clone(),
            released: None,
            loop_depth: self.handles.loop_depth,
            borrowed,
        });
        self.handles.of_local.insert(local.0, root);
    }

    /// The state of the handle an expression is, if it is one (a name or a field access).
    fn handle_of(&self, expr: &Expr) -> Option<u32> {
        match expr {
            Expr::Local(local, _) => self.handles.of_local.get(&local.0).copied(),
            _ => None,
        }
    }

    /// A constructor field (or any copy) of `from` into `to`: `to` holds the same handle.
    pub(super) fn copy_handle(&mut self, from: &Expr, to: LocalId) {
        if let Some(root) = self.handle_of(from) {
            self.handles.of_local.insert(to.0, root);
        }
    }

    /// A read of `local` at `span`: E0211 when it is a handle this path released.
    pub(in crate::sema) fn use_local(&mut self, local: LocalId, span: Span) {
        let Some(&root) = self.handles.of_local.get(&local.0) else {
            return;
        };
        if let Some(released) = self.handles.roots[root as usize].released {
            if self.silent > 0 {
                return;
            }
            let at = self.position(released);
            self.push_with_note(
                Code::E0211,
                "handle used after release: the step it was passed to released it",
                span,
                format!("released at {at}"),
            );
        }
    }

    /// `line L, column C` of `span` in the text being checked (the source's line index is made
    /// once, so many errors cost no more than one each).
    fn position(&mut self, span: Span) -> String {
        let text = self.text;
        let at = if std::ptr::eq(text, self.source) {
            self.lines
                .get_or_insert_with(|| LineIndex::new(text))
                .line_col(text, span.start)
        } else {
            LineIndex::new(text).line_col(text, span.start)
        };
        format!("line {}, column {}", at.line, at.column)
    }

    fn push_with_note(&mut self, code: Code, message: &str, span: Span, note: String) {
        if self.silent == 0 {
            self.diagnostics
                .push(Diagnostic::new(code, message, span).with_note(NoteKind::Note, note));
        }
    }

    /// Checks the argument `expr` (at `span`) given to input `index` of `sig`, whose phantom
    /// state is `phantom`: E0204 unless it is a handle of that state. A `str[!S]` input
    /// releases it: the release is returned, to take effect after all the arguments.
    pub(super) fn check_handle_argument(
        &mut self,
        sig: &EventSig,
        index: usize,
        expr: &Expr,
        span: Span,
    ) -> Option<Release> {
        let phantom = sig.input_phantom(index)?;
        let (state, releases) = match phantom {
            Phantom::Requires(s) => (s, false),
            Phantom::Discharges(s) => (s, true),
            Phantom::Creates(_) => return None,
        };
        let input = &sig.inputs[index].0;
        let Some(root) = self.handle_of(expr) else {
            let found = match expr.ty() {
                crate::types::Type::Str => {
                    "a plain str (only a name or field bound to a handle is one)".to_string()
                }
                crate::types::Type::Int => "an int".to_string(),
                other => format!("a {other}"),
            };
            self.error(
                Code::E0204,
                format!(
                    "input `{input}` of `{}` takes a handle of state `{state}` ({phantom}), found {found}",
                    sig.name
                ),
                span,
            );
            return None;
        };
        let found = self.handles.roots[root as usize].state.clone();
        if found != *state {
            self.error(
                Code::E0204,
                format!(
                    "input `{input}` of `{}` takes a handle of state `{state}` ({phantom}), found a handle of state `{found}`",
                    sig.name
                ),
                span,
            );
            return None;
        }
        if !releases {
            return None;
        }
        if self.handles.roots[root as usize].borrowed {
            self.error(
                Code::E0211,
                format!(
                    "this releases a handle the subflow only borrows (its input is declared `str[{state}]`, and the caller still holds it): declare the input `str[!{state}]` to take it over"
                ),
                span,
            );
            return None;
        }
        if self.handles.loop_depth > self.handles.roots[root as usize].loop_depth
            && self.handles.roots[root as usize].released.is_none()
        {
            self.error(
                Code::E0211,
                "handle released inside a loop (or a yielded continuation) it was opened outside of: a second iteration would release it twice; open it inside, or release it after the loop",
                span,
            );
            return None;
        }
        Some(Release { root, span })
    }

    /// Applies the releases of an invocation's arguments.
    pub(super) fn apply_releases(&mut self, releases: Vec<Release>) {
        for release in releases {
            let root = &mut self.handles.roots[release.root as usize];
            if root.released.is_none() {
                root.released = Some(release.span);
                self.handles.log.push(release.root);
            }
        }
    }

    /// Where an arm starts: its releases are undone when it ends (a sibling is another path).
    pub(super) fn arm_mark(&self) -> usize {
        self.handles.log.len()
    }

    pub(super) fn arm_end(&mut self, mark: usize) {
        while self.handles.log.len() > mark {
            let root = self.handles.log.pop().expect("longer than the mark");
            self.handles.roots[root as usize].released = None;
        }
    }

    /// Enters an arm, which `repeats` when it is of a branch the invocation takes repeatedly (a
    /// catch-all of an invocation that has any); returns what [`Lowerer::leave_loop`] restores.
    pub(super) fn enter_arm(&mut self, repeats: bool) -> u32 {
        let depth = self.handles.loop_depth;
        if repeats {
            self.handles.loop_depth += 1;
        }
        depth
    }

    pub(super) fn leave_loop(&mut self, depth: u32) {
        self.handles.loop_depth = depth;
    }

    /// The payload locals of a host event's or subflow's branches that carry a state become
    /// handles; a host branch that creates one needs a discharging event in the scope (E0212).
    pub(super) fn bind_payload_handles(
        &mut self,
        sig: &EventSig,
        payloads: &crate::ir::BranchLocals,
        host: bool,
        span: Span,
    ) {
        for at in &sig.phantoms {
            let PhantomSlot::Field { branch, field } = at.slot else {
                continue;
            };
            let Some(&local) = payloads.get(branch).and_then(|locals| locals.get(field)) else {
                continue;
            };
            let state = at.phantom.state().clone();
            if host && matches!(at.phantom, Phantom::Creates(_)) {
                self.obligation_state(&state, span);
            }
            self.new_handle(local, &state);
        }
    }

    /// The index of `state` among the program's obligation states, resolving its discharging
    /// event in the scope (E0212 when there is none).
    pub(super) fn obligation_state(&mut self, state: &Arc<str>, span: Span) -> u32 {
        let index = match self.handles.states.iter().position(|s| s.name == *state) {
            Some(i) => i,
            None => {
                let discharge = self
                    .registry
                    .discharging_event(self.options.scope.as_deref(), state);
                self.handles.states.push(ObligationState {
                    name: state.clone(),
                    discharge,
                });
                self.handles.states.len() - 1
            }
        };
        // Reported at every site that can open one (a silent copy's sites were reported once).
        if self.handles.states[index].discharge.is_none() {
            let where_ = match self.options.scope.as_deref() {
                Some(scope) => format!("scope `{scope}` allows"),
                None => "the registry has".to_string(),
            };
            self.error(
                Code::E0212,
                format!(
                    "this can open a handle of state `{state}`, but no event {where_} releases it (an implemented event whose only input is `str[!{state}]`), so it could not be discharged when the run ends"
                ),
                span,
            );
        }
        index as u32
    }

    /// A subflow path ending with `value` as branch `branch` of `sig`: each field declared with
    /// a state must be a handle of it (E0204 at `span`).
    pub(super) fn check_exit_handles(
        &mut self,
        sig: &EventSig,
        branch: usize,
        value: ValueId,
        span: Span,
    ) {
        let locals = match &self.values[value.0 as usize].payload {
            ValuePayload::Empty => Vec::new(),
            ValuePayload::Identity(l) => vec![*l],
            ValuePayload::Struct(fields) => {
                let declared = match &sig.branches[branch].payload {
                    crate::types::PayloadType::Struct(d) => d.clone(),
                    _ => Vec::new(),
                };
                declared
                    .iter()
                    .map(|(name, _)| {
                        fields
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or(LocalId(u32::MAX), |(_, l)| *l)
                    })
                    .collect()
            }
        };
        for at in &sig.phantoms {
            let PhantomSlot::Field { branch: b, field } = at.slot else {
                continue;
            };
            if b != branch {
                continue;
            }
            let Some(&local) = locals.get(field) else {
                continue;
            };
            let state = at.phantom.state();
            let found = self
                .handles
                .of_local
                .get(&local.0)
                .map(|&r| self.handles.roots[r as usize].state.clone());
            let problem = match found {
                Some(found) if found == *state => continue,
                Some(found) => format!("a handle of state `{found}`"),
                None => "a plain str".to_string(),
            };
            self.error(
                Code::E0204,
                format!(
                    "branch `{}` of `{}` carries a handle of state `{state}` ({}), but this path ends with {problem}",
                    sig.branches[branch].name, sig.name, at.phantom
                ),
                span,
            );
        }
    }
}
