//! Expression evaluation over the flow state. Scalars are raw 64-bit words (`int` as two's
//! complement, `float` as IEEE bits, `bool` as 0 or 1); a `str` is a (pointer, length) pair.

use super::Exec;
use crate::ir::{arith, CmpOp, Expr, FloatOp, IntOp, LocalId};
use crate::outcome::ErrorCode;
use crate::state::Trap;
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

fn op_symbol(op: IntOp) -> &'static str {
    match op {
        IntOp::Add => "+",
        IntOp::Sub => "-",
        IntOp::Mul => "*",
        IntOp::Div => "/",
        IntOp::Rem => "%",
    }
}

impl Exec<'_> {
    #[inline]
    pub(super) fn expr_type(&self, expr: &Expr) -> Type {
        expr.ty()
    }

    pub(super) fn eval_int(&mut self, expr: &Expr) -> Result<i64, Trap> {
        self.eval_operand(expr).map(|bits| bits as i64)
    }

    /// `eval` with literals and locals (most operands) handled inline.
    #[inline(always)]
    pub(super) fn eval_operand(&mut self, expr: &Expr) -> Result<u64, Trap> {
        match expr {
            Expr::Local(local, _) => Ok(self.state.frame[self.layout.slot(*local).offset as usize]),
            Expr::Int(v) => Ok(*v as u64),
            _ => self.eval(expr),
        }
    }

    pub(super) fn eval_bool(&mut self, expr: &Expr) -> Result<bool, Trap> {
        self.eval(expr).map(|bits| bits != 0)
    }

    /// Evaluates a non-`str` expression to its bits.
    pub(super) fn eval(&mut self, expr: &Expr) -> Result<u64, Trap> {
        Ok(match expr {
            Expr::Int(v) => *v as u64,
            Expr::Float(v) => v.to_bits(),
            Expr::Bool(v) => u64::from(*v),
            Expr::Local(local, _) => self.state.frame[self.layout.slot(*local).offset as usize],
            Expr::NegInt(e, site) => {
                let v = self.eval_int(e)?;
                match v.checked_neg() {
                    Some(n) => n as u64,
                    None => {
                        return Err(Trap::error(
                            ErrorCode::Overflow,
                            "integer overflow in `-`",
                            site.event.clone(),
                            site.span,
                        ))
                    }
                }
            }
            Expr::NegFloat(e) => (-f64::from_bits(self.eval(e)?)).to_bits(),
            Expr::Not(e) => u64::from(!self.eval_bool(e)?),
            Expr::IntArith(op, a, b, site) => {
                let a = self.eval_operand(a)? as i64;
                let b = self.eval_operand(b)? as i64;
                match arith::int(*op, a, b) {
                    Ok(v) => v as u64,
                    Err(code) => {
                        return Err(Trap::error(
                            code,
                            arith::describe(code, op_symbol(*op)),
                            site.event.clone(),
                            site.span,
                        ))
                    }
                }
            }
            Expr::FloatArith(op, a, b) => {
                let a = f64::from_bits(self.eval(a)?);
                let b = f64::from_bits(self.eval(b)?);
                let v = match op {
                    FloatOp::Add => a + b,
                    FloatOp::Sub => a - b,
                    FloatOp::Mul => a * b,
                    FloatOp::Div => a / b,
                    FloatOp::Rem => arith::float_rem(a, b),
                };
                v.to_bits()
            }
            Expr::IntCmp(op, a, b) => {
                let a = self.eval_int(a)?;
                let b = self.eval_int(b)?;
                u64::from(compare(*op, Some(a.cmp(&b))))
            }
            Expr::FloatCmp(op, a, b) => {
                let a = f64::from_bits(self.eval(a)?);
                let b = f64::from_bits(self.eval(b)?);
                u64::from(compare(*op, a.partial_cmp(&b)))
            }
            Expr::BoolCmp(op, a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                u64::from(compare(*op, Some(a.cmp(&b))))
            }
            Expr::StrCmp(op, a, b) => {
                let (ap, al) = self.eval_str(a)?;
                let (bp, bl) = self.eval_str(b)?;
                // SAFETY: `eval_str` yields live UTF-8 (literals, run-state buffers, inputs).
                let equal =
                    unsafe { crate::host::word_str(ap, al) == crate::host::word_str(bp, bl) };
                u64::from(equal == (*op == CmpOp::Eq))
            }
            Expr::And(a, b) => u64::from(self.eval_bool(a)? && self.eval_bool(b)?),
            Expr::Or(a, b) => u64::from(self.eval_bool(a)? || self.eval_bool(b)?),
            Expr::IntToFloat(e) => (self.eval_int(e)? as f64).to_bits(),
            Expr::FloatToInt(e, site) => match arith::float_to_int(f64::from_bits(self.eval(e)?)) {
                Ok(v) => v as u64,
                Err(code) => {
                    return Err(Trap::error(
                        code,
                        "float out of range for int in `@as`",
                        site.event.clone(),
                        site.span,
                    ))
                }
            },
            Expr::Select(c, a, b, _) => {
                if self.eval_bool(c)? {
                    self.eval(a)?
                } else {
                    self.eval(b)?
                }
            }
            Expr::Str(_) => unreachable!("the checker types str expressions apart"),
        })
    }

    /// Evaluates a `str` expression to (pointer, length).
    pub(super) fn eval_str(&mut self, expr: &Expr) -> Result<(u64, u64), Trap> {
        Ok(match expr {
            Expr::Str(text) => (text.as_ptr() as u64, text.len() as u64),
            Expr::Local(local, _) => {
                let offset = self.layout.slot(*local).offset as usize;
                (self.state.frame[offset], self.state.frame[offset + 1])
            }
            Expr::Select(c, a, b, _) => {
                if self.eval_bool(c)? {
                    self.eval_str(a)?
                } else {
                    self.eval_str(b)?
                }
            }
            _ => unreachable!("only literals, locals and `if` have type str"),
        })
    }

    /// Evaluates `expr` into `local` (a `str` local then points at the string).
    pub(super) fn eval_into(&mut self, expr: &Expr, local: LocalId) -> Result<(), Trap> {
        let offset = self.layout.slot(local).offset as usize;
        if expr.ty() == Type::Str {
            let (ptr, len) = self.eval_str(expr)?;
            self.state.frame[offset] = ptr;
            self.state.frame[offset + 1] = len;
        } else {
            self.state.frame[offset] = self.eval(expr)?;
        }
        Ok(())
    }
}
