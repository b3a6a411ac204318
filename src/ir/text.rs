//! The typed IR as text (`koru-jit emit --what ir`): one line per step, arm and local, in time
//! and size linear in the program.
//!
//! Subflows are inlined, so a program can hold thousands of copies of one body nested hundreds
//! deep (up to [`crate::FrontEndLimits::max_depth`]). Two things keep the text proportional to the
//! IR: indentation stops growing at [`MAX_INDENT_LEVELS`] (deeper lines say their depth instead),
//! and every piece of source text shown (names, string literals) is cut to [`MAX_TEXT_CHARS`], so
//! a literal shared by every copy of a body is not printed whole by each.
//!
//! ```text
//! program: 8191 steps, 12286 locals, 8192 values, 0 host events, 0 loops
//! events:
//! locals:
//!   l0 go: bool (flow input)
//!   l1 f11.x: int (subflow input)
//!   ...
//! flow 0:
//!   if l0
//!   | then
//!     call f11 (l1 = 0) -> [l12285]
//!       body:
//!         call f10 (l2 = l1) -> [l6142]
//!           ...
//! ```

use super::{
    Arguments, Arms, BranchLocals, Expr, IntOp, LocalKind, Program, Step, TemplatePart, ValueId,
    ValuePayload,
};
use crate::ir::{CmpOp, FloatOp, Pattern};
use std::fmt::{self, Write};

/// Indentation (two spaces a level) grows up to this depth; deeper lines start with `·depth`.
pub const MAX_INDENT_LEVELS: usize = 24;
/// Names and literals longer than this many characters are cut (with `…`).
pub const MAX_TEXT_CHARS: usize = 64;

/// Shows a program as text (see the module docs): `ProgramText(&program).to_string()`.
pub struct ProgramText<'a>(pub &'a Program);

impl fmt::Display for ProgramText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Printer {
            program: self.0,
            out: f,
        }
        .program()
    }
}

struct Printer<'a, 'f, W: Write> {
    program: &'a Program,
    out: &'f mut W,
}

/// `text` cut to [`MAX_TEXT_CHARS`] characters.
struct Cut<'a>(&'a str);

impl fmt::Display for Cut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_TEXT_CHARS) {
            Some((at, _)) => write!(f, "{}…", &self.0[..at]),
            None => f.write_str(self.0),
        }
    }
}

/// A branch name: the unnamed branch of a void event is `""`.
struct Branch<'a>(&'a str);

impl fmt::Display for Branch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            Cut(self.0).fmt(f)
        }
    }
}

/// A string literal, quoted and escaped, cut to [`MAX_TEXT_CHARS`] characters.
struct Literal<'a>(&'a str);

impl fmt::Display for Literal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_TEXT_CHARS) {
            Some((at, _)) => write!(f, "{:?}…", &self.0[..at]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

impl<W: Write> Printer<'_, '_, W> {
    fn program(&mut self) -> fmt::Result {
        let program = self.program;
        writeln!(
            self.out,
            "program: {} steps, {} locals, {} values, {} host events, {} loops",
            program.step_count,
            program.locals.len(),
            program.values.len(),
            program.events.len(),
            program.loops.len()
        )?;
        writeln!(self.out, "events:")?;
        for (i, event) in program.events.iter().enumerate() {
            writeln!(
                self.out,
                "  e{i} {} (host {}, cost {})",
                Cut(&event.name),
                event.host,
                event.cost
            )?;
        }
        writeln!(self.out, "locals:")?;
        for (i, local) in program.locals.iter().enumerate() {
            let kind = match local.kind {
                LocalKind::FlowInput => "flow input",
                LocalKind::SubflowInput => "subflow input",
                LocalKind::Payload => "payload",
                LocalKind::SubflowResult => "subflow result",
                LocalKind::LoopVariable => "loop variable",
                LocalKind::AccumulatorField => "accumulator field",
                LocalKind::Temporary => "temporary",
            };
            let name = local.name.to_string();
            let owns = if local.owns_buffer {
                ", owns a buffer"
            } else {
                ""
            };
            writeln!(
                self.out,
                "  l{i} {}: {} ({kind}{owns})",
                Cut(&name),
                local.ty
            )?;
        }
        for (i, flow) in program.flows.iter().enumerate() {
            writeln!(self.out, "flow {i}:")?;
            self.step(flow, 1)?;
        }
        Ok(())
    }

    fn indent(&mut self, depth: usize) -> fmt::Result {
        let levels = depth.min(MAX_INDENT_LEVELS);
        for _ in 0..levels {
            self.out.write_str("  ")?;
        }
        if depth > MAX_INDENT_LEVELS {
            write!(self.out, "·{depth} ")?;
        }
        Ok(())
    }

    fn value(&mut self, value: ValueId) -> fmt::Result {
        write!(self.out, "v{}", value.0)?;
        if let Some(desc) = self.program.values.get(value.0 as usize) {
            write!(self.out, " {}", Branch(&desc.branch))?;
            match &desc.payload {
                ValuePayload::Empty => {}
                ValuePayload::Identity(local) => write!(self.out, " l{}", local.0)?,
                ValuePayload::Struct(fields) => {
                    self.out.write_str(" {")?;
                    for (i, (name, local)) in fields.iter().enumerate() {
                        let sep = if i == 0 { " " } else { ", " };
                        write!(self.out, "{sep}{}: l{}", Cut(name), local.0)?;
                    }
                    self.out.write_str(" }")?;
                }
            }
        }
        Ok(())
    }

    fn step(&mut self, step: &Step, depth: usize) -> fmt::Result {
        self.indent(depth)?;
        match step {
            Step::Invoke(invoke) => {
                let event = &self.program.events[invoke.event.0 as usize];
                write!(
                    self.out,
                    "invoke e{} {} #{}(",
                    invoke.event.0,
                    Cut(&event.name),
                    invoke.site
                )?;
                match &invoke.args {
                    Arguments::Inputs(args) => {
                        for (i, arg) in args.iter().enumerate() {
                            if i > 0 {
                                self.out.write_str(", ")?;
                            }
                            if let Some((name, _)) = event.sig.inputs.get(i) {
                                write!(self.out, "{}: ", Cut(name))?;
                            }
                            self.expr(&arg.expr)?;
                            if let Some(buffer) = arg.format_into {
                                write!(self.out, " as str in b{}", buffer.0)?;
                            }
                        }
                    }
                    Arguments::Template(parts) => {
                        for (i, part) in parts.iter().enumerate() {
                            if i > 0 {
                                self.out.write_str(" ")?;
                            }
                            match part {
                                TemplatePart::Text(text) => write!(self.out, "{}", Literal(text))?,
                                TemplatePart::Hole(expr) => {
                                    self.out.write_str("{")?;
                                    self.expr(expr)?;
                                    self.out.write_str("}")?;
                                }
                            }
                        }
                    }
                }
                self.out.write_str(")")?;
                self.payloads(&invoke.payloads)?;
                writeln!(self.out)?;
                self.arms(&invoke.arms, invoke.first_value, depth)
            }
            Step::Call(call) => {
                // A mock (SPEC 13) keeps the event's name, marked, with the cost it charges.
                if call.mocked {
                    write!(
                        self.out,
                        "call mock {} cost {} (",
                        Cut(&call.name),
                        call.cost
                    )?;
                } else {
                    write!(self.out, "call {} (", Cut(&call.name))?;
                }
                for (i, (local, arg)) in call.inputs.iter().enumerate() {
                    if i > 0 {
                        self.out.write_str(", ")?;
                    }
                    write!(self.out, "l{} = ", local.0)?;
                    self.expr(&arg.expr)?;
                }
                self.out.write_str(")")?;
                self.payloads(&call.results)?;
                writeln!(self.out)?;
                self.indent(depth + 1)?;
                writeln!(self.out, "body:")?;
                self.step(&call.body, depth + 2)?;
                for exit in &call.exits {
                    self.indent(depth + 1)?;
                    write!(self.out, "exit v{} -> branch {}", exit.value.0, exit.branch)?;
                    for (from, to) in &exit.copies {
                        write!(self.out, ", l{} = l{}", to.0, from.0)?;
                    }
                    writeln!(self.out)?;
                }
                self.arms(&call.arms, call.first_value, depth)
            }
            Step::For(each) => {
                write!(self.out, "for l{} in ", each.index.0)?;
                self.expr(&each.start)?;
                self.out.write_str("..")?;
                self.expr(&each.end)?;
                writeln!(
                    self.out,
                    " (bound l{}, loop {})",
                    each.bound.0, each.loop_index
                )?;
                self.arms(&each.arms, each.first_value, depth)
            }
            Step::If(step) => {
                self.out.write_str("if ")?;
                self.expr(&step.cond)?;
                writeln!(self.out)?;
                self.arms(&step.arms, step.first_value, depth)
            }
            Step::While(step) => {
                self.out.write_str("while ")?;
                self.expr(&step.cond)?;
                writeln!(self.out, " (loop {})", step.loop_index)?;
                self.arms(&step.arms, step.first_value, depth)
            }
            Step::Capture(capture) => {
                self.out.write_str("capture {")?;
                for (i, (local, init)) in capture.fields.iter().zip(&capture.init).enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(self.out, "{sep}l{} = ", local.0)?;
                    self.expr(init)?;
                }
                writeln!(self.out, " }}")?;
                self.arms(&capture.arms, capture.first_value, depth)
            }
            Step::Update(update) => {
                self.out.write_str("captured {")?;
                for (i, (local, expr)) in update.assigns.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(self.out, "{sep}l{} = ", local.0)?;
                    self.expr(expr)?;
                }
                self.out.write_str(" } -> ")?;
                self.value(update.value)?;
                writeln!(self.out)
            }
            Step::Construct(construct) => {
                self.out.write_str("construct {")?;
                for (i, (local, expr)) in construct.fields.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(self.out, "{sep}l{} = ", local.0)?;
                    self.expr(expr)?;
                }
                self.out.write_str(" } -> ")?;
                self.value(construct.value)?;
                writeln!(self.out)
            }
            Step::Match(step) => {
                write!(self.out, "match l{} = ", step.value.0)?;
                self.expr(&step.scrutinee)?;
                if self.program.locals[step.value.0 as usize].owns_buffer {
                    self.out.write_str(" (copied)")?;
                }
                self.out.write_str(" -> ")?;
                self.value(step.matched)?;
                writeln!(self.out)?;
                for arm in &step.arms {
                    self.indent(depth)?;
                    if arm.patterns.is_empty() {
                        self.out.write_str("|?")?;
                    } else {
                        self.out.write_str("| [")?;
                        for (i, pattern) in arm.patterns.iter().enumerate() {
                            if i > 0 {
                                self.out.write_str(", ")?;
                            }
                            match pattern {
                                Pattern::Int { lo, hi } if lo == hi => write!(self.out, "{lo}")?,
                                Pattern::Int { lo, hi } => write!(self.out, "{lo}..={hi}")?,
                                Pattern::Str(text) => write!(self.out, "{}", Literal(text))?,
                                Pattern::Bool(b) => write!(self.out, "{b}")?,
                            }
                        }
                        self.out.write_str("]")?;
                    }
                    if let Some(guard) = &arm.arm.guard {
                        self.out.write_str(" when ")?;
                        self.expr(guard)?;
                    }
                    match &arm.arm.step {
                        Some(inner) => {
                            writeln!(self.out)?;
                            self.step(inner, depth + 1)?;
                        }
                        None => writeln!(self.out, " (matched)")?,
                    }
                }
                Ok(())
            }
            Step::Yield(value) => {
                self.out.write_str("yield ")?;
                self.value(*value)?;
                writeln!(self.out)
            }
        }
    }

    /// ` -> [l1] | [l2, l3]`: where each branch's payload lands.
    fn payloads(&mut self, payloads: &BranchLocals) -> fmt::Result {
        if payloads.all().is_empty() {
            return Ok(());
        }
        self.out.write_str(" ->")?;
        for (b, locals) in payloads.iter().enumerate() {
            self.out.write_str(if b == 0 { " [" } else { " | [" })?;
            for (i, local) in locals.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(self.out, "{sep}l{}", local.0)?;
            }
            self.out.write_str("]")?;
        }
        Ok(())
    }

    /// Each arm once, in source order, with the branches it can take (`|?` for a catch-all).
    fn arms(&mut self, arms: &Arms, first_value: ValueId, depth: usize) -> fmt::Result {
        let mut branches: Vec<Vec<u32>> = vec![Vec::new(); arms.arms.len()];
        for (branch, candidates) in arms.by_branch.iter().enumerate() {
            for &arm in candidates {
                if let Some(list) = branches.get_mut(arm as usize) {
                    list.push(branch as u32);
                }
            }
        }
        let all = arms.by_branch.len();
        for (arm, taken) in arms.arms.iter().zip(&branches) {
            self.indent(depth)?;
            if taken.len() == all && all > 1 {
                self.out.write_str("|?")?;
            } else {
                self.out.write_str("|")?;
                for (i, &branch) in taken.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    let value = first_value.0 + branch;
                    let name = self
                        .program
                        .values
                        .get(value as usize)
                        .map_or("?", |desc| &desc.branch);
                    write!(self.out, "{sep}{}", Branch(name))?;
                }
            }
            if let Some(guard) = &arm.guard {
                self.out.write_str(" when ")?;
                self.expr(guard)?;
            }
            match &arm.step {
                Some(step) => {
                    writeln!(self.out)?;
                    self.step(step, depth + 1)?;
                }
                None => writeln!(self.out, " (the result)")?,
            }
        }
        Ok(())
    }

    fn expr(&mut self, expr: &Expr) -> fmt::Result {
        match expr {
            Expr::Int(v) => write!(self.out, "{v}"),
            Expr::Float(v) => write!(self.out, "{v:?}"),
            Expr::Bool(v) => write!(self.out, "{v}"),
            Expr::Str(text) => write!(self.out, "{}", Literal(text)),
            Expr::Local(local, _) => write!(self.out, "l{}", local.0),
            Expr::NegInt(inner, _) | Expr::NegFloat(inner) => {
                self.out.write_str("-")?;
                self.expr(inner)
            }
            Expr::Not(inner) => {
                self.out.write_str("not ")?;
                self.expr(inner)
            }
            Expr::IntArith(op, a, b, _) => {
                let op = match op {
                    IntOp::Add => "+",
                    IntOp::Sub => "-",
                    IntOp::Mul => "*",
                    IntOp::Div => "/",
                    IntOp::Rem => "%",
                };
                self.binary(op, a, b)
            }
            Expr::FloatArith(op, a, b) => {
                let op = match op {
                    FloatOp::Add => "+.",
                    FloatOp::Sub => "-.",
                    FloatOp::Mul => "*.",
                    FloatOp::Div => "/.",
                    FloatOp::Rem => "%.",
                };
                self.binary(op, a, b)
            }
            Expr::IntCmp(op, a, b)
            | Expr::FloatCmp(op, a, b)
            | Expr::BoolCmp(op, a, b)
            | Expr::StrCmp(op, a, b) => {
                let op = match op {
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                self.binary(op, a, b)
            }
            Expr::And(a, b) => self.binary("and", a, b),
            Expr::Or(a, b) => self.binary("or", a, b),
            Expr::IntToFloat(inner) => {
                self.out.write_str("float(")?;
                self.expr(inner)?;
                self.out.write_str(")")
            }
            Expr::FloatToInt(inner, _) => {
                self.out.write_str("int(")?;
                self.expr(inner)?;
                self.out.write_str(")")
            }
            Expr::Select(cond, then, otherwise, _) => {
                self.out.write_str("(if ")?;
                self.expr(cond)?;
                self.out.write_str(" then ")?;
                self.expr(then)?;
                self.out.write_str(" else ")?;
                self.expr(otherwise)?;
                self.out.write_str(")")
            }
        }
    }

    fn binary(&mut self, op: &str, a: &Expr, b: &Expr) -> fmt::Result {
        self.out.write_str("(")?;
        self.expr(a)?;
        write!(self.out, " {op} ")?;
        self.expr(b)?;
        self.out.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompileOptions, Engine, Registry, Type};

    fn text(source: &str, options: &CompileOptions) -> String {
        let engine = Engine::new(Registry::with_std());
        let flow = engine.compile("t", source, options).unwrap();
        ProgramText(flow.program()).to_string()
    }

    #[test]
    fn every_step_kind_is_one_line_with_its_arms() {
        let source = "~capture({ i: 0, s: 1.5 })\n| as c |> while(c.i < 3 and not false)\n    | body |> std.io:print.ln(\"i={{ c.i }}\") |> captured { i: c.i + 1 }\n| captured r |> for(0..r.i)\n    | each k when k > 1 |> std.io:println(text: k)\n    |? |> done { n: if (go) -r.i else 2, t: \"x\" }\n";
        let options = CompileOptions::default().input("go", Type::Bool);
        let text = text(source, &options);
        for line in [
            "  l0 go: bool (flow input)",
            "flow 0:",
            "  capture { l1 = 0, l2 = 1.5 }",
            "  | as",
            "    while ((l1 < 3) and not false) (loop 0)",
            "    | body",
            "      invoke e0 std.io:print.ln #0(\"i=\" {l1})",
            "      | \"\"",
            "        captured { l1 = (l1 + 1) } -> v",
            "  | captured",
            "    for l",
            "    | each when (l",
            " > 1)\n",
            "      invoke e1 std.io:println #1(text: l",
            " as str in b0)\n",
            "    |?\n      construct { l",
            " = (if l0 then -l",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn literals_and_names_are_cut_and_deep_lines_say_their_depth() {
        let long = "x".repeat(10_000);
        let source = format!("~std.io:println(text: \"{long}\")");
        let text = text(&source, &CompileOptions::default());
        assert!(
            text.contains(&format!("(text: \"{}\"…)", "x".repeat(MAX_TEXT_CHARS))),
            "{text}"
        );
        assert!(text.len() < 1000, "{text}");
        let mut nested = String::from("~if(true)\n");
        for depth in 0..40 {
            nested.push_str(&format!("{}| then |> if(true)\n", "    ".repeat(depth)));
        }
        let text = self::text(&nested, &CompileOptions::default());
        let deepest = text.lines().map(str::len).max().unwrap();
        assert!(deepest < 2 * MAX_INDENT_LEVELS + 20, "{text}");
        assert!(text.contains("·41 if true"), "{text}");
    }
}
