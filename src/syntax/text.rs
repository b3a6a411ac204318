//! The syntax tree as text (`koru-jit emit --what ast`): one line per item, invocation,
//! argument, continuation and step, each with the line and column it starts at, indented by
//! nesting. It shows what the parser made of a source, above all which invocation each
//! continuation attached to (SPEC 2.3), before any checking.
//!
//! ```text
//! flow 1:1
//!   invoke if 1:2
//!     arg (value > 10) 1:5
//!     | then 2:1
//!       invoke std.io:println 2:10
//!         arg text: "Greater than 10" 2:25
//!     | else 3:1
//!       invoke std.io:println 3:10
//!         arg text: "10 or less" 3:25
//! ```
//!
//! Expressions are written back in source form, fully parenthesized. As in the IR's text
//! (`crate::ir::text`), indentation stops growing at [`MAX_INDENT_LEVELS`] and every literal
//! and name is cut to [`MAX_TEXT_CHARS`], so the text stays proportional to the source.

use super::ast::{
    Arg, ArgValue, Binding, ConstructorPayload, Continuation, ContinuationKind, EventDecl, Expr,
    ExprKind, FieldDecl, FieldInit, Invocation, Item, Literal, PatternKind, PayloadDecl,
    SourceFile, Step, UnaryOp,
};
use crate::span::{LineIndex, Span};
use std::fmt::{self, Write};

/// Indentation (two spaces a level) grows up to this depth; deeper lines start with `·depth`.
pub const MAX_INDENT_LEVELS: usize = 24;
/// Names and literals longer than this many characters are cut (with `…`).
pub const MAX_TEXT_CHARS: usize = 64;

/// Shows a parsed source as text (see the module docs). `text` is the source it was parsed
/// from, for line and column numbers.
pub struct SourceText<'a> {
    pub file: &'a SourceFile,
    pub text: &'a str,
}

impl fmt::Display for SourceText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut printer = Printer {
            out: f,
            text: self.text,
            lines: LineIndex::new(self.text),
        };
        for item in &self.file.items {
            printer.item(item)?;
        }
        Ok(())
    }
}

struct Printer<'a, 'f> {
    out: &'a mut fmt::Formatter<'f>,
    text: &'a str,
    lines: LineIndex,
}

/// `text` cut to [`MAX_TEXT_CHARS`] characters.
fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

impl Printer<'_, '_> {
    fn at(&self, span: Span) -> String {
        let position = self.lines.line_col(self.text, span.start);
        format!("{}:{}", position.line, position.column)
    }

    fn line(&mut self, depth: usize, text: &str, span: Span) -> fmt::Result {
        if depth > MAX_INDENT_LEVELS {
            write!(self.out, "{:1$}·{depth} ", "", 2 * MAX_INDENT_LEVELS)?;
        } else {
            write!(self.out, "{:1$}", "", 2 * depth)?;
        }
        let at = self.at(span);
        writeln!(self.out, "{text} {at}")
    }

    fn item(&mut self, item: &Item) -> fmt::Result {
        match item {
            Item::Import(import) => {
                self.line(0, &format!("import {:?}", cut(&import.path)), import.span)
            }
            Item::Event(event) => self.event(event),
            Item::Inputs(decl) => {
                let mut text = String::from("input {");
                fields(&mut text, &decl.inputs);
                text.push('}');
                self.line(0, &text, decl.span)
            }
            Item::Subflow(subflow) => {
                self.line(
                    0,
                    &format!("subflow {}", cut(&subflow.name.text)),
                    subflow.span,
                )?;
                self.step(1, &subflow.body)
            }
            Item::Flow(flow) => {
                self.line(0, "flow", flow.span)?;
                self.invocation(1, &flow.head)
            }
        }
    }

    fn event(&mut self, event: &EventDecl) -> fmt::Result {
        let mut head = format!("event {} {{", cut(&event.name.text));
        fields(&mut head, &event.inputs);
        head.push('}');
        self.line(0, &head, event.span)?;
        for branch in &event.branches {
            let mut text = format!("| {}", cut(&branch.name.name));
            match &branch.payload {
                PayloadDecl::Empty => {}
                PayloadDecl::Identity(ty) => {
                    let _ = write!(text, " {}{}", cut(&ty.text), phantom(ty));
                }
                PayloadDecl::Struct(decls) => {
                    text.push_str(" {");
                    fields(&mut text, decls);
                    text.push('}');
                }
            }
            self.line(1, &text, branch.span)?;
        }
        Ok(())
    }

    fn invocation(&mut self, depth: usize, invocation: &Invocation) -> fmt::Result {
        self.line(
            depth,
            &format!("invoke {}", cut(&invocation.path.text)),
            invocation.path.span,
        )?;
        for arg in &invocation.args {
            self.arg(depth + 1, arg)?;
        }
        for continuation in &invocation.continuations {
            self.continuation(depth + 1, continuation)?;
        }
        Ok(())
    }

    fn arg(&mut self, depth: usize, arg: &Arg) -> fmt::Result {
        let mut text = String::from("arg ");
        if let Some(name) = &arg.name {
            let _ = write!(text, "{}: ", cut(&name.name));
        }
        match &arg.value {
            ArgValue::Expr(expr) => expression(&mut text, expr),
            ArgValue::Range(start, end) => {
                expression(&mut text, start);
                text.push_str("..");
                expression(&mut text, end);
            }
            ArgValue::Struct(inits) => struct_literal(&mut text, inits),
        }
        self.line(depth, &text, arg.span)
    }

    fn continuation(&mut self, depth: usize, continuation: &Continuation) -> fmt::Result {
        let text = match &continuation.kind {
            ContinuationKind::Branch {
                branch,
                binding,
                guard,
            } => {
                let mut text = format!("| {}", cut(&branch.name));
                match binding {
                    Some(Binding::Name(name)) => {
                        let _ = write!(text, " {}", cut(&name.name));
                    }
                    Some(Binding::Discard(_)) => text.push_str(" _"),
                    None => {}
                }
                if let Some(guard) = guard {
                    text.push_str(" when ");
                    expression(&mut text, guard);
                }
                text
            }
            ContinuationKind::Pipe => "|>".to_string(),
            ContinuationKind::CatchAll => "|?".to_string(),
            ContinuationKind::Patterns {
                patterns,
                binding,
                guard,
            } => {
                let mut text = String::from("| [");
                for (i, pattern) in patterns.iter().enumerate() {
                    if i > 0 {
                        text.push_str(", ");
                    }
                    match &pattern.kind {
                        PatternKind::Literal(literal) => pattern_literal(&mut text, literal),
                        PatternKind::Range {
                            start,
                            end,
                            inclusive,
                        } => {
                            pattern_literal(&mut text, start);
                            text.push_str(if *inclusive { "..=" } else { ".." });
                            pattern_literal(&mut text, end);
                        }
                    }
                }
                text.push(']');
                match binding {
                    Some(Binding::Name(name)) => {
                        let _ = write!(text, " {}", cut(&name.name));
                    }
                    Some(Binding::Discard(_)) => text.push_str(" _"),
                    None => {}
                }
                if let Some(guard) = guard {
                    text.push_str(" when ");
                    expression(&mut text, guard);
                }
                text
            }
        };
        self.line(depth, &text, continuation.span)?;
        match &continuation.step {
            Some(step) => self.step(depth + 1, step),
            None => Ok(()),
        }
    }

    fn step(&mut self, depth: usize, step: &Step) -> fmt::Result {
        match step {
            Step::Invoke(invocation) => self.invocation(depth, invocation),
            Step::Discard(span) => self.line(depth, "_", *span),
            Step::Construct(constructor) | Step::Yield(constructor) => {
                let what = match step {
                    Step::Yield(_) => "yield",
                    _ => "construct",
                };
                let mut text = format!("{what} {}", cut(&constructor.name.name));
                match &constructor.payload {
                    ConstructorPayload::Empty => {}
                    ConstructorPayload::Identity(expr) => {
                        text.push(' ');
                        expression(&mut text, expr);
                    }
                    ConstructorPayload::Struct(inits) => {
                        text.push(' ');
                        struct_literal(&mut text, inits);
                    }
                }
                self.line(depth, &text, constructor.span)
            }
        }
    }
}

/// A type's phantom state as written (`[opened!]`), or nothing.
fn phantom(ty: &super::ast::TypeExpr) -> String {
    use super::ast::PhantomKind;
    match &ty.phantom {
        None => String::new(),
        Some(p) => match p.kind {
            PhantomKind::Creates => format!("[{}!]", cut(&p.state)),
            PhantomKind::Requires => format!("[{}]", cut(&p.state)),
            PhantomKind::Discharges => format!("[!{}]", cut(&p.state)),
        },
    }
}

/// `name: type, ...` with spaces inside the braces (`{ a: i64 }`, `{}` when empty).
fn fields(out: &mut String, decls: &[FieldDecl]) {
    for (i, decl) in decls.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        let _ = write!(
            out,
            "{}: {}{}",
            cut(&decl.name.name),
            cut(&decl.ty.text),
            phantom(&decl.ty)
        );
    }
    if !decls.is_empty() {
        out.push(' ');
    }
}

fn struct_literal(out: &mut String, inits: &[FieldInit]) {
    out.push('{');
    for (i, init) in inits.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        let _ = write!(out, "{}: ", cut(&init.name.name));
        expression(out, &init.value);
    }
    out.push_str(if inits.is_empty() { "}" } else { " }" });
}

/// A pattern's literal as written.
fn pattern_literal(out: &mut String, literal: &Literal) {
    let _ = match literal {
        Literal::Int { value, negative } => {
            write!(out, "{}{value}", if *negative { "-" } else { "" })
        }
        Literal::Float(v) => write!(out, "{v:?}"),
        Literal::Str(s) => write!(out, "{:?}", cut(s)),
        Literal::Bool(b) => write!(out, "{b}"),
    };
}

/// An expression in source form, every compound part in parentheses. Its depth is bounded by
/// the parser (`Expr::depth`, `FrontEndLimits`), so the recursion is too.
fn expression(out: &mut String, expr: &Expr) {
    match &expr.kind {
        ExprKind::Int(v) => {
            let _ = write!(out, "{v}");
        }
        ExprKind::Float(v) => {
            let _ = write!(out, "{v:?}");
        }
        ExprKind::Str(s) => {
            let _ = write!(out, "{:?}", cut(s));
        }
        ExprKind::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        ExprKind::Name(name) => out.push_str(&cut(name)),
        ExprKind::Field(base, field) => {
            expression(out, base);
            let _ = write!(out, ".{}", cut(&field.name));
        }
        ExprKind::Unary(op, operand) => {
            out.push_str(match op {
                UnaryOp::Neg => "-",
                UnaryOp::Not => "!",
            });
            expression(out, operand);
        }
        ExprKind::Binary(op, left, right) => {
            out.push('(');
            expression(out, left);
            let _ = write!(out, " {} ", op.symbol());
            expression(out, right);
            out.push(')');
        }
        ExprKind::As(ty, operand) => {
            let _ = write!(out, "@as({}, ", cut(&ty.text));
            expression(out, operand);
            out.push(')');
        }
        ExprKind::If(condition, then, otherwise) => {
            out.push_str("(if (");
            expression(out, condition);
            out.push_str(") ");
            expression(out, then);
            out.push_str(" else ");
            expression(out, otherwise);
            out.push(')');
        }
    }
}
