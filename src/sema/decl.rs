//! Event declarations to signatures.

use super::suggest::Suggester;
use crate::diag::{Code, Diagnostic};
use crate::syntax::ast;
use crate::types::{BranchSig, EventSig, PayloadType, Type};
use std::sync::Arc;

pub fn resolve_type(ty: &ast::TypeExpr, diagnostics: &mut Vec<Diagnostic>) -> Option<Type> {
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
        match resolve_type(&field.ty, diagnostics) {
            Some(ty) => out.push((Arc::from(field.name.name.as_str()), ty)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// The signature an event declaration describes, or `None` after reporting its errors.
pub fn event_sig(decl: &ast::EventDecl, diagnostics: &mut Vec<Diagnostic>) -> Option<EventSig> {
    let inputs = fields(&decl.inputs, "input", diagnostics);
    let mut branches: Vec<BranchSig> = Vec::new();
    let mut ok = inputs.is_some();
    for branch in &decl.branches {
        if branches.iter().any(|b| *b.name == *branch.name.name) {
            diagnostics.push(Diagnostic::new(
                Code::E0206,
                format!("branch `{}` is declared twice", branch.name.name),
                branch.name.span,
            ));
            ok = false;
            continue;
        }
        let payload = match &branch.payload {
            ast::PayloadDecl::Empty => Some(PayloadType::Empty),
            ast::PayloadDecl::Identity(ty) => {
                resolve_type(ty, diagnostics).map(PayloadType::Identity)
            }
            ast::PayloadDecl::Struct(f) => fields(f, "field", diagnostics).map(PayloadType::Struct),
        };
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
    })
}
