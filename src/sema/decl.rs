//! Event declarations to signatures.

use super::suggest::Suggester;
use crate::diag::{Code, Diagnostic};
use crate::syntax::ast;
use crate::types::{BranchSig, EventSig, PayloadType, Phantom, PhantomAt, PhantomSlot, Type};
use std::sync::Arc;

pub fn resolve_type(ty: &ast::TypeExpr, diagnostics: &mut Vec<Diagnostic>) -> Option<Type> {
    if let Some(phantom) = &ty.phantom {
        diagnostics.push(Diagnostic::new(
            Code::E0204,
            "a phantom state belongs on a `str` input or payload of an event declaration",
            phantom.span,
        ));
        return None;
    }
    resolve_base_type(ty, diagnostics)
}

/// A declared input's or payload field's type and its phantom state (SPEC 12).
fn resolve_declared(
    ty: &ast::TypeExpr,
    input: bool,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<(Type, Option<Phantom>)> {
    let base = resolve_base_type(ty, diagnostics)?;
    let Some(written) = &ty.phantom else {
        return Some((base, None));
    };
    let state: Arc<str> = Arc::from(written.state.as_str());
    let problem = if base != Type::Str {
        Some(format!(
            "only a str carries a phantom state (a handle is a str; this type is {base})"
        ))
    } else {
        match (written.kind, input) {
            (ast::PhantomKind::Creates, true) => Some(format!(
                "`str[{state}!]` creates a handle: it belongs on a branch payload, not on an input (write `str[{state}]` to require an open one, `str[!{state}]` to release it)"
            )),
            (ast::PhantomKind::Discharges, false) => Some(format!(
                "`str[!{state}]` releases a handle: it belongs on an input, not on a branch payload"
            )),
            _ => None,
        }
    };
    if let Some(problem) = problem {
        diagnostics.push(Diagnostic::new(Code::E0204, problem, written.span));
        return None;
    }
    Some((
        base,
        Some(match written.kind {
            ast::PhantomKind::Creates => Phantom::Creates(state),
            ast::PhantomKind::Requires => Phantom::Requires(state),
            ast::PhantomKind::Discharges => Phantom::Discharges(state),
        }),
    ))
}

fn resolve_base_type(ty: &ast::TypeExpr, diagnostics: &mut Vec<Diagnostic>) -> Option<Type> {
    let found = Type::from_written(&ty.text);
    if found.is_none() {
        let mut diagnostic = Diagnostic::new(
            Code::E0204,
            format!("unknown type `{}` (expected int, float, bool, str or a Zig spelling such as i64 or []const u8)", ty.text),
            ty.span,
        );
        // A few short candidates: a suggester of its own costs next to nothing.
        let spellings = ["int", "float", "bool", "str", "string", "i64", "f64"];
        if let Some(help) = Suggester::default().did_you_mean(&ty.text, spellings) {
            diagnostic = diagnostic.with_help(help);
        }
        diagnostics.push(diagnostic);
    }
    found
}

fn fields(
    fields: &[ast::FieldDecl],
    what: &str,
    diagnostics: &mut Vec<Diagnostic>,
    phantoms: &mut Vec<Option<Phantom>>,
) -> Option<Vec<(Arc<str>, Type)>> {
    let mut out: Vec<(Arc<str>, Type)> = Vec::new();
    // A set, not a scan of `out`: a source may declare tens of thousands of fields.
    let mut seen = std::collections::HashSet::new();
    let mut ok = true;
    for field in fields {
        if !seen.insert(field.name.name.as_str()) {
            diagnostics.push(Diagnostic::new(
                Code::E0205,
                format!("{what} `{}` is declared twice", field.name.name),
                field.name.span,
            ));
            ok = false;
            continue;
        }
        match resolve_declared(&field.ty, what == "input", diagnostics) {
            Some((ty, phantom)) => {
                out.push((Arc::from(field.name.name.as_str()), ty));
                phantoms.push(phantom);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// The signature an event declaration describes, or `None` after reporting its errors.
pub fn event_sig(decl: &ast::EventDecl, diagnostics: &mut Vec<Diagnostic>) -> Option<EventSig> {
    let mut found = Vec::new();
    let inputs = fields(&decl.inputs, "input", diagnostics, &mut found);
    let mut phantoms: Vec<PhantomAt> = found
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.map(|phantom| PhantomAt {
                slot: PhantomSlot::Input(i),
                phantom,
            })
        })
        .collect();
    let mut branches: Vec<BranchSig> = Vec::new();
    // A set, as for fields: an event may declare thousands of branches.
    let mut declared = std::collections::HashSet::new();
    let mut ok = inputs.is_some();
    for branch in &decl.branches {
        if !declared.insert(branch.name.name.as_str()) {
            diagnostics.push(Diagnostic::new(
                Code::E0206,
                format!("branch `{}` is declared twice", branch.name.name),
                branch.name.span,
            ));
            ok = false;
            continue;
        }
        let mut found = Vec::new();
        let payload = match &branch.payload {
            ast::PayloadDecl::Empty => Some(PayloadType::Empty),
            ast::PayloadDecl::Identity(ty) => {
                resolve_declared(ty, false, diagnostics).map(|(ty, phantom)| {
                    found.push(phantom);
                    PayloadType::Identity(ty)
                })
            }
            ast::PayloadDecl::Struct(f) => {
                fields(f, "field", diagnostics, &mut found).map(PayloadType::Struct)
            }
        };
        if payload.is_some() {
            let index = branches.len();
            phantoms.extend(found.into_iter().enumerate().filter_map(|(field, p)| {
                p.map(|phantom| PhantomAt {
                    slot: PhantomSlot::Field {
                        branch: index,
                        field,
                    },
                    phantom,
                })
            }));
        }
        match payload {
            Some(payload) => branches.push(BranchSig {
                name: Arc::from(branch.name.name.as_str()),
                payload,
            }),
            None => ok = false,
        }
    }
    ok.then(|| EventSig {
        name: Arc::from(decl.name.text.as_str()),
        inputs: inputs.unwrap_or_default(),
        branches,
        phantoms,
    })
}
