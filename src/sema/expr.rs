//! Expression typing (SPEC 3): every operator is specialised by operand type here, so the tiers
//! never look at types at run time.

use super::lower::{Bound, Lowerer};
use super::named::{listed, Dotted};
use crate::diag::{Code, MAX_QUOTED_CHARS};
use crate::ir::{CmpOp, Expr, FloatOp, IntOp};
use crate::syntax::ast::{self, BinaryOp, ExprKind, UnaryOp};
use crate::types::Type;

/// Names per source whose unknown-name error says how to give a flow input.
const INPUT_HINTS: usize = 3;

impl Lowerer<'_> {
    /// The E0202 message for `name`. In a top-level flow, a name that no continuation of the
    /// source binds (and no declared event takes) is likely a flow input the caller did not
    /// give: the message says how to declare or supply it, at the first use of each such name
    /// (of at most [`MAX_QUOTED_CHARS`] characters, as messages quote them), for at most
    /// [`INPUT_HINTS`] names per source.
    /// How to give `name` as a flow input, if an unknown `name` could be one: bound by no
    /// continuation of the source, in a top-level flow, for at most [`INPUT_HINTS`] names.
    fn input_hint(&mut self, name: &str) -> Option<String> {
        // Not in a subflow's body (checked on its own, or inlined silently).
        if self.check_only
            || self.silent > 0
            || self.input_hints.len() >= INPUT_HINTS
            || name.chars().count() > MAX_QUOTED_CHARS
            || self.input_hints.iter().any(|hinted| hinted == name)
        {
            return None;
        }
        let bound_somewhere = self.source_file.is_some_and(|file| {
            self.bound_names
                .get_or_init(|| bound_names(file))
                .contains(name)
        });
        if bound_somewhere {
            return None;
        }
        self.input_hints.push(name.to_string());
        Some(format!(
            "a flow input? declare it with `~input {{ {name}: int }}` (or float, bool, str), or give it a value (command line: `--input {name}:int=...`)"
        ))
    }

    /// Lowers an expression and checks it has type `expected`.
    pub(super) fn lower_typed(
        &mut self,
        expr: &ast::Expr,
        expected: Type,
        what: &str,
    ) -> Option<Expr> {
        let (lowered, ty) = self.lower_expr(expr)?;
        if ty != expected {
            self.error(
                Code::E0204,
                format!("{what} must be {expected}, found {ty}"),
                expr.span,
            );
            return None;
        }
        Some(lowered)
    }

    pub(super) fn lower_bool(&mut self, expr: &ast::Expr, what: &str) -> Option<Expr> {
        self.lower_typed(expr, Type::Bool, what)
    }

    pub(super) fn lower_expr(&mut self, expr: &ast::Expr) -> Option<(Expr, Type)> {
        let span = expr.span;
        if !self.count_copied(span) {
            return None;
        }
        match &expr.kind {
            ExprKind::Int(v) => match i64::try_from(*v) {
                Ok(v) => Some((Expr::Int(v), Type::Int)),
                Err(_) => {
                    self.error(
                        Code::E0101,
                        "integer literal out of range for int (64-bit signed)",
                        span,
                    );
                    None
                }
            },
            ExprKind::Float(v) => Some((Expr::Float(*v), Type::Float)),
            ExprKind::Str(s) => Some((Expr::Str(s.clone()), Type::Str)),
            ExprKind::Bool(b) => Some((Expr::Bool(*b), Type::Bool)),
            ExprKind::Name(name) => match self.lookup(name).cloned() {
                Some(Bound::Scalar(local, ty)) => {
                    self.use_local(local, span);
                    Some((Expr::Local(local, ty), ty))
                }
                Some(Bound::Struct(fields)) => {
                    let names = listed(fields.iter().map(|(n, _, _)| Dotted(name, n)));
                    self.error(
                        Code::E0204,
                        format!("`{name}` is a struct payload; use one of its fields: {names}"),
                        span,
                    );
                    None
                }
                Some(Bound::Empty) => {
                    self.error(
                        Code::E0204,
                        format!("`{name}` binds an empty payload and has no value"),
                        span,
                    );
                    None
                }
                // Its error was reported where it was bound.
                Some(Bound::Broken { .. }) => None,
                None => {
                    self.unknown_name(name, span);
                    None
                }
            },
            ExprKind::Field(base, field) => {
                let ExprKind::Name(name) = &base.kind else {
                    self.error(
                        Code::E0203,
                        format!("field `{}` of a value that has no fields", field.name),
                        field.span,
                    );
                    return None;
                };
                let (fields, lost) = match self.lookup(name).cloned() {
                    Some(Bound::Struct(fields)) => (Some(fields), Some(Default::default())),
                    Some(Bound::Broken { fields, lost }) => (Some(fields), lost),
                    other => (None, other.map(|_| Default::default())),
                };
                match (fields, lost) {
                    (Some(fields), lost) => {
                        match fields.find(&field.name) {
                            Some((_, local, ty)) => {
                                let (local, ty) = (*local, *ty);
                                self.use_local(local, span);
                                Some((Expr::Local(local, ty), ty))
                            }
                            // Lost to an error reported where the payload was made.
                            None if Bound::may_have_lost(&lost, &field.name) => None,
                            None => {
                                let all = || {
                                    fields
                                        .iter()
                                        .map(|(n, _, _)| &**n)
                                        .chain(lost.iter().flat_map(|l| l.iter()).map(|n| &**n))
                                };
                                let names = listed(all());
                                let help = self.did_you_mean(&field.name, all());
                                self.error_with_help(
                                    Code::E0203,
                                    format!(
                                        "`{name}` has no field `{}` (its fields: {names})",
                                        field.name,
                                    ),
                                    field.span,
                                    help,
                                );
                                None
                            }
                        }
                    }
                    (None, Some(_)) => {
                        self.error(
                            Code::E0203,
                            format!(
                                "`{name}` has no fields, so it has no field `{}`",
                                field.name
                            ),
                            field.span,
                        );
                        None
                    }
                    (None, None) => {
                        self.unknown_name(name, base.span);
                        None
                    }
                }
            }
            ExprKind::Unary(UnaryOp::Neg, operand) => {
                // `-9223372036854775808` is a literal, not the negation of an out-of-range one.
                if let ExprKind::Int(v) = operand.kind {
                    if v == 1u64 << 63 {
                        return Some((Expr::Int(i64::MIN), Type::Int));
                    }
                }
                let (inner, ty) = self.lower_expr(operand)?;
                match (ty, inner) {
                    // A negative literal is a literal (`-5` cannot overflow; neither can `-(-5)`).
                    (Type::Int, Expr::Int(v)) if v != i64::MIN => Some((Expr::Int(-v), Type::Int)),
                    (Type::Int, inner) => Some((
                        Expr::NegInt(Box::new(inner), self.error_site(span)),
                        Type::Int,
                    )),
                    (Type::Float, inner) => Some((Expr::NegFloat(Box::new(inner)), Type::Float)),
                    _ => {
                        self.error(Code::E0204, format!("`-` needs a number, found {ty}"), span);
                        None
                    }
                }
            }
            ExprKind::Unary(UnaryOp::Not, operand) => {
                let inner = self.lower_bool(operand, "the operand of `!`")?;
                Some((Expr::Not(Box::new(inner)), Type::Bool))
            }
            ExprKind::Binary(op, a, b) => self.lower_binary(*op, a, b, span),
            ExprKind::As(ty, operand) => {
                if let Some(phantom) = &ty.phantom {
                    // SPEC 12: states mark handles in declarations, not conversions.
                    self.error(
                        Code::E0204,
                        "a phantom state belongs on a `str` input or payload of an event declaration, not in `@as`",
                        phantom.span,
                    );
                    return None;
                }
                let target = super::decl::resolve_type(ty, &mut Vec::new());
                let (inner, from) = self.lower_expr(operand)?;
                match (target, from) {
                    (Some(Type::Int), Type::Int) | (Some(Type::Float), Type::Float) => {
                        Some((inner, from))
                    }
                    (Some(Type::Float), Type::Int) => {
                        Some((Expr::IntToFloat(Box::new(inner)), Type::Float))
                    }
                    (Some(Type::Int), Type::Float) => Some((
                        Expr::FloatToInt(Box::new(inner), self.error_site(span)),
                        Type::Int,
                    )),
                    (Some(to), from) => {
                        self.error(
                            Code::E0204,
                            format!("`@as` converts between int and float, not {from} to {to}"),
                            span,
                        );
                        None
                    }
                    (None, _) => {
                        self.error(
                            Code::E0204,
                            format!("unknown type `{}` in `@as`", ty.text),
                            ty.span,
                        );
                        None
                    }
                }
            }
            ExprKind::If(cond, a, b) => {
                let cond = self.lower_bool(cond, "the condition of `if`");
                let a_lowered = self.lower_expr(a);
                let b_lowered = self.lower_expr(b);
                let ((a_expr, a_ty), (b_expr, b_ty)) = (a_lowered?, b_lowered?);
                if a_ty != b_ty {
                    self.error(
                        Code::E0204,
                        format!("the arms of `if` have different types: {a_ty} and {b_ty}"),
                        span,
                    );
                    return None;
                }
                let ty = a_ty;
                Some((
                    Expr::Select(Box::new(cond?), Box::new(a_expr), Box::new(b_expr), ty),
                    ty,
                ))
            }
        }
    }

    /// Reports an unknown name (E0202), with the closest name in scope as a suggestion.
    fn unknown_name(&mut self, name: &str, span: crate::span::Span) {
        let names = if self.silent() {
            Vec::new()
        } else {
            self.names_in_scope()
        };
        let help = self.did_you_mean(name, names.iter().map(|n| &**n));
        // A close name first; else, perhaps a flow input the caller did not declare or give.
        let help = help.or_else(|| self.input_hint(name));
        self.error_with_help(Code::E0202, format!("unknown name `{name}`"), span, help);
    }

    fn lower_binary(
        &mut self,
        op: BinaryOp,
        a: &ast::Expr,
        b: &ast::Expr,
        span: crate::span::Span,
    ) -> Option<(Expr, Type)> {
        if matches!(op, BinaryOp::And | BinaryOp::Or) {
            let left = self.lower_bool(a, &format!("the left operand of `{}`", op.symbol()));
            let right = self.lower_bool(b, &format!("the right operand of `{}`", op.symbol()));
            let (left, right) = (Box::new(left?), Box::new(right?));
            let lowered = if op == BinaryOp::And {
                Expr::And(left, right)
            } else {
                Expr::Or(left, right)
            };
            return Some((lowered, Type::Bool));
        }
        let left = self.lower_expr(a);
        let right = self.lower_expr(b);
        let ((left, lt), (right, rt)) = (left?, right?);
        let cmp = match op {
            BinaryOp::Eq => Some(CmpOp::Eq),
            BinaryOp::Ne => Some(CmpOp::Ne),
            BinaryOp::Lt => Some(CmpOp::Lt),
            BinaryOp::Le => Some(CmpOp::Le),
            BinaryOp::Gt => Some(CmpOp::Gt),
            BinaryOp::Ge => Some(CmpOp::Ge),
            _ => None,
        };
        let is_number = |t: Type| matches!(t, Type::Int | Type::Float);
        if !(is_number(lt) && is_number(rt)) {
            let (l, r) = (Box::new(left), Box::new(right));
            return match (cmp, lt, rt) {
                (Some(cmp @ (CmpOp::Eq | CmpOp::Ne)), Type::Str, Type::Str) => {
                    Some((Expr::StrCmp(cmp, l, r), Type::Bool))
                }
                (Some(cmp @ (CmpOp::Eq | CmpOp::Ne)), Type::Bool, Type::Bool) => {
                    Some((Expr::BoolCmp(cmp, l, r), Type::Bool))
                }
                _ => {
                    self.error(
                        Code::E0204,
                        format!("`{}` cannot combine {lt} and {rt}", op.symbol()),
                        span,
                    );
                    None
                }
            };
        }
        // SPEC 3 promotes an int mixed with a float in comparisons only; arithmetic on mixed
        // operands needs an explicit `@as` ("no other implicit conversion exists").
        if cmp.is_none() && lt != rt {
            self.error(Code::E0204, format!("`{}` cannot combine {lt} and {rt}: convert one side with @as(float, ...) or @as(int, ...)", op.symbol()), span);
            return None;
        }
        let (l, r, ty) = match (lt, rt) {
            (Type::Int, Type::Int) => (left, right, Type::Int),
            (Type::Int, _) => (Expr::IntToFloat(Box::new(left)), right, Type::Float),
            (_, Type::Int) => (left, Expr::IntToFloat(Box::new(right)), Type::Float),
            _ => (left, right, Type::Float),
        };
        let (l, r) = (Box::new(l), Box::new(r));
        if let Some(cmp) = cmp {
            return Some(match ty {
                Type::Int => (Expr::IntCmp(cmp, l, r), Type::Bool),
                _ => (Expr::FloatCmp(cmp, l, r), Type::Bool),
            });
        }
        let lowered = match (ty, op) {
            (Type::Int, BinaryOp::Add) => Expr::IntArith(IntOp::Add, l, r, self.error_site(span)),
            (Type::Int, BinaryOp::Sub) => Expr::IntArith(IntOp::Sub, l, r, self.error_site(span)),
            (Type::Int, BinaryOp::Mul) => Expr::IntArith(IntOp::Mul, l, r, self.error_site(span)),
            (Type::Int, BinaryOp::Div) => Expr::IntArith(IntOp::Div, l, r, self.error_site(span)),
            (Type::Int, _) => Expr::IntArith(IntOp::Rem, l, r, self.error_site(span)),
            (_, BinaryOp::Add) => Expr::FloatArith(FloatOp::Add, l, r),
            (_, BinaryOp::Sub) => Expr::FloatArith(FloatOp::Sub, l, r),
            (_, BinaryOp::Mul) => Expr::FloatArith(FloatOp::Mul, l, r),
            (_, BinaryOp::Div) => Expr::FloatArith(FloatOp::Div, l, r),
            (_, _) => Expr::FloatArith(FloatOp::Rem, l, r),
        };
        Some((lowered, ty))
    }
}

/// Every name a continuation of `file` binds, and every input name of its event declarations.
fn bound_names(file: &ast::SourceFile) -> std::collections::HashSet<&str> {
    let mut names = std::collections::HashSet::new();
    let mut pending: Vec<&ast::Invocation> = Vec::new();
    for item in &file.items {
        match item {
            ast::Item::Flow(flow) => pending.push(&flow.head),
            ast::Item::Subflow(subflow) => {
                if let ast::Step::Invoke(invocation) = &*subflow.body {
                    pending.push(invocation);
                }
            }
            ast::Item::Event(decl) => {
                names.extend(decl.inputs.iter().map(|f| f.name.name.as_str()))
            }
            ast::Item::Import(_) | ast::Item::Inputs(_) => {}
        }
    }
    // An explicit stack: continuations nest at most `FrontEndLimits::max_nesting` deep, but
    // this walk does not depend on it.
    while let Some(invocation) = pending.pop() {
        for continuation in &invocation.continuations {
            if let ast::ContinuationKind::Branch {
                binding: Some(ast::Binding::Name(binding)),
                ..
            }
            | ast::ContinuationKind::Patterns {
                binding: Some(ast::Binding::Name(binding)),
                ..
            } = &continuation.kind
            {
                names.insert(binding.name.as_str());
            }
            if let Some(ast::Step::Invoke(next)) = continuation.step.as_deref() {
                pending.push(next);
            }
        }
    }
    names
}
