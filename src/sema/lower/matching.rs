//! `match(expr)` (SPEC 10): the argument, the patterns of its continuations (types, empty ranges,
//! unreachable patterns), exhaustiveness, bindings and guards.

use super::{Binding, Bound, EnclosingArm, Lowerer, FAILED_STEP};
use crate::diag::{Code, NoteKind};
use crate::ir::pattern::Coverage;
use crate::ir::*;
use crate::span::{LineIndex, Span};
use crate::syntax::ast;
use crate::types::Type;
use std::collections::HashMap;
use std::sync::Arc;

/// What the patterns seen so far cover: a pattern they already cover is unreachable (E0210).
/// Tags are the spans of the patterns that covered each value first.
#[derive(Default)]
struct Covered {
    ints: Coverage<Span>,
    strs: HashMap<Arc<str>, Span>,
}

impl Covered {
    /// Records `pattern` (of span `span`); `Err` with the span of what already covers it.
    fn add(&mut self, pattern: &Pattern, span: Span) -> Result<(), Span> {
        match pattern {
            Pattern::Int { lo, hi } => self.ints.add(*lo, *hi, span),
            Pattern::Bool(b) => {
                let v = i64::from(*b);
                self.ints.add(v, v, span)
            }
            Pattern::Str(text) => match self.strs.get(text) {
                Some(cover) => Err(*cover),
                None => {
                    self.strs.insert(text.clone(), span);
                    Ok(())
                }
            },
        }
    }

    fn covers(&self, pattern: &Pattern) -> Option<Span> {
        match pattern {
            Pattern::Int { lo, hi } if self.ints.covers(*lo, *hi) => self.ints.tag_at(*lo),
            Pattern::Bool(b) => self.ints.tag_at(i64::from(*b)),
            Pattern::Str(text) => self.strs.get(text).copied(),
            Pattern::Int { .. } => None,
        }
    }
}

impl<'a> Lowerer<'a> {
    pub(super) fn lower_match(&mut self, invocation: &ast::Invocation) -> Option<Step> {
        let scrutinee = match self.single_arg(invocation, "an int, str or bool value", &["value"]) {
            Some(ast::ArgValue::Expr(e)) => match self.lower_expr(e) {
                Some((expr, ty @ (Type::Int | Type::Str | Type::Bool))) => Some((expr, ty)),
                Some((_, ty)) => {
                    self.error(
                        Code::E0204,
                        format!("`match` takes an int, str or bool value, found {ty}"),
                        e.span,
                    );
                    None
                }
                None => None,
            },
            Some(_) => {
                let at = invocation.args.first().map_or(invocation.span, |a| a.span);
                self.error(
                    Code::E0204,
                    "`match` takes an int, str or bool value, not a range or struct literal",
                    at,
                );
                None
            }
            None => None,
        };
        let ty = scrutinee.as_ref().map(|(_, ty)| *ty);
        let value = self.new_local(
            Arc::from("match.value"),
            ty.unwrap_or(Type::Int),
            LocalKind::Temporary,
        );
        let matched = self.new_value(
            Arc::from("matched"),
            ValuePayload::Identity(value),
            invocation.span,
        );
        if invocation.continuations.is_empty() {
            self.error(
                Code::E0207,
                "`match` has no continuation: add `| [pattern] |> ...` and a catch-all `|? |> ...`",
                invocation.span,
            );
            return None;
        }
        let mut pattern_arms: Vec<MatchArm> = Vec::new();
        let mut catch_alls: Vec<MatchArm> = Vec::new();
        let mut covered = Covered::default();
        let mut ok = true;
        let arms_from = self.arm_starts.len();
        let event_name = match &self.event_context {
            Some(context) if **context == *"match" => context.clone(),
            _ => Arc::from("match"),
        };
        for continuation in &invocation.continuations {
            self.arm_starts.push(continuation.span.start);
            let (patterns, binding, guard) = match &continuation.kind {
                ast::ContinuationKind::Patterns {
                    patterns,
                    binding,
                    guard,
                } => (Some(patterns), binding.as_ref(), guard.as_deref()),
                ast::ContinuationKind::CatchAll => (None, None, None),
                ast::ContinuationKind::Branch {
                    branch,
                    binding,
                    guard,
                } => {
                    self.error(
                        Code::E0206,
                        format!(
                            "`match` has no branch `{}`: its continuations are patterns, such as `| [1, 2] |> ...` or `| [\"get\"] |> ...`",
                            branch.name
                        ),
                        branch.span,
                    );
                    let binding = match binding {
                        Some(ast::Binding::Name(name)) => Some(name),
                        _ => None,
                    };
                    self.check_unattached_step(continuation, binding, guard.as_deref(), None);
                    ok = false;
                    continue;
                }
                ast::ContinuationKind::Pipe => {
                    self.error(
                        Code::E0206,
                        "`|>` continues an event with one branch; `match` is continued with patterns, such as `| [1, 2] |> ...`",
                        continuation.span,
                    );
                    self.check_unattached_step(continuation, None, None, None);
                    ok = false;
                    continue;
                }
            };
            if patterns.is_some_and(|p| p.is_empty()) {
                self.error(
                    Code::E0101,
                    "a pattern continuation needs at least one pattern: `| [1] |> ...` (a catch-all is `|? |> ...`)",
                    continuation.span,
                );
                ok = false;
            }
            let guarded = guard.is_some();
            let mut lowered_patterns = Vec::new();
            if let (Some(patterns), Some(ty)) = (patterns, ty) {
                // A guarded continuation covers nothing for later ones, but its own earlier
                // patterns cover its later ones.
                let mut own = Covered::default();
                for pattern in patterns {
                    if !self.count_step(pattern.span) {
                        return None;
                    }
                    let Some(checked) = self.check_pattern(pattern, ty) else {
                        ok = false;
                        continue;
                    };
                    let cover = covered.covers(&checked).or_else(|| own.covers(&checked));
                    if let Some(cover) = cover {
                        self.unreachable(pattern.span, cover);
                        continue;
                    }
                    let added = if guarded {
                        own.add(&checked, pattern.span)
                    } else {
                        covered.add(&checked, pattern.span)
                    };
                    if let Err(cover) = added {
                        self.unreachable(pattern.span, cover);
                        continue;
                    }
                    lowered_patterns.push(checked);
                }
            } else if let Some(patterns) = patterns {
                // The argument did not check: only the patterns' own errors are reported.
                for pattern in patterns {
                    if !self.count_step(pattern.span) {
                        return None;
                    }
                    if let ast::PatternKind::Range { .. } = pattern.kind {
                        self.check_pattern(pattern, Type::Int);
                    }
                }
            }
            let scope_len = self.scope.len();
            if let Some(ast::Binding::Name(name)) = binding {
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
                let bound = match ty {
                    Some(ty) => Bound::Scalar(value, ty),
                    None => Bound::Broken {
                        fields: Default::default(),
                        lost: None,
                    },
                };
                self.scope.push(Binding {
                    name: Arc::from(name.name.as_str()),
                    bound,
                });
            }
            let lowered_guard = match guard {
                Some(g) => {
                    let lowered = self.lower_bool(g, "a guard");
                    ok &= lowered.is_some();
                    lowered
                }
                None => None,
            };
            self.enclosing.push(EnclosingArm {
                event: event_name.clone(),
                branches: Vec::new().into(),
                invocation: invocation.span,
                head: self.enclosing.is_empty(),
                from: arms_from,
                at: self.arm_starts.len() - 1,
                claimed: smallvec::SmallVec::new(),
            });
            let release_mark = self.arm_mark();
            let step = continuation.step.as_deref().and_then(|s| {
                let lowered = self.lower_step(s);
                if lowered.is_none() && self.check_only && !matches!(s, ast::Step::Discard(_)) {
                    return Some(Step::Yield(FAILED_STEP));
                }
                lowered
            });
            self.arm_end(release_mark);
            self.enclosing.pop();
            self.scope.truncate(scope_len);
            let arm = MatchArm {
                patterns: lowered_patterns,
                arm: Arm {
                    guard: lowered_guard,
                    step,
                    span: self.sp(continuation.span),
                },
            };
            match patterns {
                Some(_) => {
                    // A continuation whose patterns all failed or were unreachable is dropped
                    // (its errors are reported); it must not become a catch-all.
                    if !arm.patterns.is_empty() {
                        pattern_arms.push(arm);
                    }
                }
                None => catch_alls.push(arm),
            }
        }
        self.arm_starts.truncate(arms_from);
        if catch_alls.is_empty() {
            if let Some(ty) = ty {
                let missing = match ty {
                    Type::Bool => [false, true]
                        .into_iter()
                        .filter(|b| covered.covers(&Pattern::Bool(*b)).is_none())
                        .map(|b| format!("`{b}`"))
                        .collect::<Vec<_>>(),
                    _ => vec![format!("every {ty} value")],
                };
                if !missing.is_empty() {
                    self.error(
                        Code::E0207,
                        format!(
                            "this `match` does not handle {} (add a catch-all `|? |> ...`)",
                            missing.join(" and ")
                        ),
                        invocation.span,
                    );
                    ok = false;
                }
            }
        }
        let (scrutinee, _) = scrutinee?;
        if !ok {
            return None;
        }
        if ty == Some(Type::Str) && reads_accumulator(&self.locals, &scrutinee) {
            let updates = pattern_arms
                .iter()
                .chain(&catch_alls)
                .any(|a| a.arm.step.as_ref().is_some_and(contains_update));
            if updates {
                self.locals[value.0 as usize].owns_buffer = true;
            }
        }
        pattern_arms.extend(catch_alls);
        Some(Step::Match(Box::new(MatchStep {
            scrutinee,
            value,
            arms: pattern_arms,
            matched,
            span: self.sp(invocation.span),
        })))
    }

    /// E0210 at `span`, covered by the pattern at `cover`.
    fn unreachable(&mut self, span: Span, cover: Span) {
        if self.silent() {
            return;
        }
        let text = self.text;
        let (line, column) = if std::ptr::eq(text, self.source) {
            let lines = self.lines.get_or_insert_with(|| LineIndex::new(text));
            let line = lines.line_of(cover.start as usize);
            let start = lines.line_range(text, line).start;
            let column = text
                .get(start..cover.start as usize)
                .map_or(0, |s| s.chars().count());
            (line + 1, column + 1)
        } else {
            let lines = LineIndex::new(text);
            let line = lines.line_of(cover.start as usize);
            (line + 1, 1)
        };
        let shown = text
            .get(cover.range())
            .map(|s| s.chars().take(40).collect::<String>())
            .unwrap_or_default();
        let diagnostic = crate::diag::Diagnostic::new(
            Code::E0210,
            "unreachable pattern: the continuations before it already take every value it matches",
            span,
        )
        .with_note(
            NoteKind::Note,
            format!("covered by the pattern `{shown}` at line {line}, column {column}"),
        );
        self.push_diagnostic(diagnostic);
    }

    /// A pattern of the argument's type `ty`, or its error (E0204 for a wrong type, E0210 for an
    /// empty range).
    fn check_pattern(&mut self, pattern: &ast::Pattern, ty: Type) -> Option<Pattern> {
        match &pattern.kind {
            ast::PatternKind::Literal(literal) => match (literal, ty) {
                (ast::Literal::Int { .. }, Type::Int) => {
                    let v = self.pattern_int(literal, pattern.span)?;
                    Some(Pattern::Int { lo: v, hi: v })
                }
                (ast::Literal::Str(text), Type::Str) => Some(Pattern::Str(text.clone())),
                (ast::Literal::Bool(b), Type::Bool) => Some(Pattern::Bool(*b)),
                _ => {
                    self.error(
                        Code::E0204,
                        format!(
                            "this pattern is {}, but the `match` argument is {ty}",
                            literal_type(literal)
                        ),
                        pattern.span,
                    );
                    None
                }
            },
            ast::PatternKind::Range {
                start,
                end,
                inclusive,
            } => {
                if ty != Type::Int {
                    self.error(
                        Code::E0204,
                        format!("a range pattern matches ints, but the `match` argument is {ty}"),
                        pattern.span,
                    );
                    return None;
                }
                for bound in [start, end] {
                    if !matches!(bound, ast::Literal::Int { .. }) {
                        self.error(
                            Code::E0204,
                            format!(
                                "a range pattern's bounds are int literals, found {}",
                                literal_type(bound)
                            ),
                            pattern.span,
                        );
                        return None;
                    }
                }
                let lo = self.pattern_int(start, pattern.span)?;
                let end = self.pattern_int(end, pattern.span)?;
                let hi = if *inclusive {
                    Some(end)
                } else {
                    end.checked_sub(1)
                };
                match hi {
                    Some(hi) if lo <= hi => Some(Pattern::Int { lo, hi }),
                    _ => {
                        self.error(
                            Code::E0210,
                            format!(
                                "unreachable pattern: the range is empty (it matches no int; {})",
                                if *inclusive {
                                    "`a..=b` needs a <= b"
                                } else {
                                    "`a..b` needs a < b"
                                }
                            ),
                            pattern.span,
                        );
                        None
                    }
                }
            }
        }
    }

    fn pattern_int(&mut self, literal: &ast::Literal, span: Span) -> Option<i64> {
        let ast::Literal::Int { value, negative } = *literal else {
            return None;
        };
        let v = if negative {
            0i64.checked_sub_unsigned(value)
        } else {
            i64::try_from(value).ok()
        };
        if v.is_none() {
            self.error(
                Code::E0101,
                "integer literal out of range for int (64-bit signed)",
                span,
            );
        }
        v
    }
}

fn literal_type(literal: &ast::Literal) -> &'static str {
    match literal {
        ast::Literal::Int { .. } => "an int",
        ast::Literal::Float(_) => "a float",
        ast::Literal::Str(_) => "a str",
        ast::Literal::Bool(_) => "a bool",
    }
}

/// Whether `expr` reads an accumulator field (whose buffers `captured` rewrites).
fn reads_accumulator(locals: &[LocalDecl], expr: &Expr) -> bool {
    if let Expr::Local(local, _) = expr {
        return locals[local.0 as usize].kind == LocalKind::AccumulatorField;
    }
    expr.operands().any(|e| reads_accumulator(locals, e))
}

/// Whether `step` holds a `captured { ... }` update.
fn contains_update(step: &Step) -> bool {
    fn arms(a: &Arms) -> bool {
        a.arms
            .iter()
            .any(|arm| arm.step.as_ref().is_some_and(contains_update))
    }
    match step {
        Step::Update(_) => true,
        Step::Invoke(s) => arms(&s.arms),
        Step::Call(s) => contains_update(&s.body) || arms(&s.arms),
        Step::For(s) => arms(&s.arms),
        Step::If(s) => arms(&s.arms),
        Step::While(s) => arms(&s.arms),
        Step::Capture(s) => arms(&s.arms),
        Step::Match(s) => s
            .arms
            .iter()
            .any(|a| a.arm.step.as_ref().is_some_and(contains_update)),
        Step::Construct(_) | Step::Yield(_) => false,
    }
}
