//! The checker: resolves names against the registry and the source's own subflows, checks scopes,
//! types, arguments, branches, exhaustiveness, shadowing and subflows, and lowers the syntax tree
//! to the typed IR (subflows inlined). Every error of a source is reported, each with its code.

mod decl;
mod expr;
mod lower;
mod named;
mod suggest;

use crate::diag::{Code, Diagnostic, SourceErrors};
use crate::host::{Library, Registry};
use crate::ir::Program;
use crate::limits::FrontEndLimits;
use crate::span::Span;
use crate::syntax::ast;
use crate::types::{EventSig, Type};
use std::collections::HashMap;
use std::sync::Arc;

pub use decl::event_sig;
pub use lower::step_values;

/// What a source is checked against.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// The scope of host events the source may call; `None` allows every registered event.
    pub scope: Option<String>,
    /// Flow inputs the caller supplies at each run. One the source also declares
    /// (`~input { ... }`) must have the same type.
    pub inputs: Vec<(Arc<str>, Type)>,
    /// Flow inputs the caller has values for, typed by how each value looks: a source
    /// declaration of the same name overrides the type (see `CompileOptions::guessed_inputs`).
    pub guessed_inputs: Vec<(Arc<str>, Type)>,
    pub limits: FrontEndLimits,
    /// The event whose shape the value of the last top-level flow must have (SPEC 13).
    pub shape: Option<String>,
    /// Mocks (SPEC 13), parsed: subflows named after the host events they replace.
    pub mocks: Vec<Arc<Library>>,
}

/// Imports accepted for compatibility with Koru sources.
const KNOWN_IMPORTS: &[&str] = &[
    "$std/io",
    "$std/control",
    "$std/runtime",
    "$std/interpreter",
];

/// The import that brings [`crate::host::CONTROL_LIBRARY`].
pub const CONTROL_IMPORT: &str = "$std/control";

/// `$std/control`, parsed once (it is part of the crate: a test checks it has no errors).
fn control_library() -> &'static Arc<Library> {
    static CONTROL: std::sync::OnceLock<Arc<Library>> = std::sync::OnceLock::new();
    CONTROL.get_or_init(|| {
        let text = crate::host::CONTROL_LIBRARY;
        let (file, _) = crate::syntax::parse(text, &FrontEndLimits::default());
        Arc::new(Library {
            name: CONTROL_IMPORT.to_string(),
            text: text.to_string(),
            file,
        })
    })
}

/// A subflow definition: its event's signature and its body.
pub(crate) struct SubflowDef<'a> {
    pub sig: Arc<EventSig>,
    pub body: &'a ast::Step,
    pub span: Span,
    /// The span of its name (`~name = ...`), in `text`.
    pub name_span: Span,
    /// The text the body's spans point into.
    pub text: &'a str,
    /// The library it comes from (`None`: the checked source): library spans do not point into
    /// the checked source. A mock's is the mock's name.
    pub library: Option<&'a str>,
    /// For a mock (SPEC 13): the fuel cost of the host event it replaces, which a call of it
    /// charges instead of a subflow's 1.
    pub mock: Option<u64>,
}

impl SubflowDef<'_> {
    pub fn is_from_library(&self) -> bool {
        self.library.is_some()
    }
}

/// Parses and checks `text`, producing the typed IR.
pub fn check(
    registry: &Registry,
    file: &ast::SourceFile,
    text: &str,
    options: &CheckOptions,
) -> Result<Program, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let libraries = match scope_libraries(registry, options, file) {
        Ok(libraries) => libraries,
        Err(unknown_scope) => return Err(vec![unknown_scope]),
    };
    let mut subflows = library_subflows(registry, &libraries);
    // The mocks replace host events (checked by `check_mocks` before: silent here).
    collect_mocks(registry, options, &mut subflows, &mut |_, _| {});
    // Events the source declares with errors (reported): calls of them are not unknown events.
    let mut broken: Vec<String> = Vec::new();
    collect_subflows(
        registry,
        file,
        text,
        None,
        options.shape.as_deref(),
        &mut subflows,
        &mut broken,
        &mut diagnostics,
    );
    let recursive = find_recursion(&subflows, &mut |def, d| {
        if def.library.is_none() {
            diagnostics.push(d)
        }
    });
    let shape = match &options.shape {
        Some(name) => match shape_sig(registry, file, &subflows, name) {
            Ok(sig) => sig,
            Err(()) => {
                diagnostics.push(Diagnostic::new(
                    Code::E0214,
                    format!("unknown shape `{name}`: it is neither an event the source declares nor a registered one"),
                    Span::default(),
                ));
                None
            }
        },
        None => None,
    };
    let mut lowerer = lower::Lowerer::new(registry, options, text, &subflows, &recursive, &broken);
    if let Some(name) = &options.shape {
        // A declaration used only as the shape has no implementation to call.
        if shape.is_some() && !subflows.contains_key(name) && registry.event_index(name).is_none() {
            lowerer.shape_only = Some(name.as_str());
        }
    }
    lowerer.declare_inputs(file);
    // Check every subflow of the source once, so that its errors are reported even if nothing
    // calls it (calls inline a fresh, silent copy).
    let mut names: Vec<&String> = subflows
        .iter()
        .filter(|(_, def)| !def.is_from_library())
        .map(|(name, _)| name)
        .collect();
    names.sort_by_key(|name| subflows[*name].span.start);
    for name in names {
        if !recursive.contains(name) {
            lowerer.check_subflow(name);
        }
    }
    let last_flow = file
        .items
        .iter()
        .rposition(|item| matches!(item, ast::Item::Flow(_)));
    for (k, item) in file.items.iter().enumerate() {
        if let ast::Item::Flow(flow) = item {
            let checked = lowerer.lower_flow(flow);
            if Some(k) == last_flow && checked {
                if let (Some(name), Some(sig)) = (&options.shape, &shape) {
                    lowerer.check_shape(name, sig);
                }
            }
        }
    }
    if last_flow.is_none() {
        if let (Some(name), Some(sig)) = (&options.shape, &shape) {
            diagnostics.push(Diagnostic::new(
                Code::E0213,
                format!(
                    "the source has no top-level flow, so it has no value, and shape `{name}` needs one of its branches ({})",
                    lower::describe_branches(sig)
                ),
                Span::default(),
            ));
        }
    }
    let program = lowerer.finish();
    diagnostics.extend(program.1);
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    diagnostics.dedup();
    if diagnostics.is_empty() {
        Ok(program.0)
    } else {
        Err(diagnostics)
    }
}

/// The libraries of the scope's closure (the scope's own first), and `$std/control` when the
/// source imports it; or E0302 for an unknown scope.
fn scope_libraries(
    registry: &Registry,
    options: &CheckOptions,
    file: &ast::SourceFile,
) -> Result<Vec<Arc<Library>>, Diagnostic> {
    let mut libraries: Vec<Arc<Library>> = Vec::new();
    if let Some(scope) = &options.scope {
        match registry.scope_closure(scope) {
            Ok(scopes) => {
                for s in scopes {
                    libraries.extend(s.libraries.iter().cloned());
                }
            }
            Err(unknown) => {
                return Err(Diagnostic::new(
                    Code::E0302,
                    format!("unknown scope `{unknown}`"),
                    Span::default(),
                ))
            }
        }
    }
    // `~import "$std/control"` (SPEC 11) brings the library of control flow written in Koru.
    if file
        .items
        .iter()
        .any(|item| matches!(item, ast::Item::Import(i) if i.path == CONTROL_IMPORT))
    {
        libraries.push(control_library().clone());
    }
    Ok(libraries)
}

/// The subflows of `libraries` (checked when attached; a name two libraries of the closure both
/// define keeps the first: the scope's own libraries come before those of included scopes).
fn library_subflows<'a>(
    registry: &Registry,
    libraries: &'a [Arc<Library>],
) -> HashMap<String, SubflowDef<'a>> {
    let mut subflows = HashMap::new();
    for library in libraries {
        let mut ignored = Vec::new();
        collect_subflows(
            registry,
            &library.file,
            &library.text,
            Some(&library.name),
            None,
            &mut subflows,
            &mut Vec::new(),
            &mut ignored,
        );
    }
    subflows
}

/// The signature of shape `name` (SPEC 13): an event the source declares, a library subflow's
/// or a registered one; `Ok(None)` when the source's declaration of it has errors (reported).
fn shape_sig(
    registry: &Registry,
    file: &ast::SourceFile,
    subflows: &HashMap<String, SubflowDef>,
    name: &str,
) -> Result<Option<Arc<EventSig>>, ()> {
    let declared = file.items.iter().find_map(|item| match item {
        ast::Item::Event(decl) if decl.name.text == name => Some(decl),
        _ => None,
    });
    if let Some(decl) = declared {
        return Ok(event_sig(decl, &mut Vec::new()).map(Arc::new));
    }
    if let Some(def) = subflows.get(name) {
        return Ok(Some(def.sig.clone()));
    }
    match registry.event_index(name) {
        Some(host) => Ok(Some(registry.events()[host].sig.clone())),
        None => Err(()),
    }
}

/// Puts the subflows of the mocks of `options` into `subflows` (SPEC 13), each under the name
/// of the host event it replaces, with that event's signature and cost; reports to `report`
/// (with the mock's index) what is not a mock: another item, an unknown or denied event, an
/// event that cannot be mocked or is mocked twice.
fn collect_mocks<'a>(
    registry: &Registry,
    options: &'a CheckOptions,
    subflows: &mut HashMap<String, SubflowDef<'a>>,
    report: &mut dyn FnMut(usize, Diagnostic),
) {
    let not_a_mock = "a mock holds only subflows named after the host events they replace, such as `~users.get = found { name: \"test\" }`";
    for (index, mock) in options.mocks.iter().enumerate() {
        for item in &mock.file.items {
            let subflow = match item {
                ast::Item::Subflow(subflow) => subflow,
                ast::Item::Import(i) => {
                    report(index, Diagnostic::new(Code::E0104, not_a_mock, i.span));
                    continue;
                }
                ast::Item::Event(e) => {
                    report(index, Diagnostic::new(Code::E0104, not_a_mock, e.span));
                    continue;
                }
                ast::Item::Inputs(d) => {
                    report(index, Diagnostic::new(Code::E0104, not_a_mock, d.span));
                    continue;
                }
                ast::Item::Flow(f) => {
                    report(index, Diagnostic::new(Code::E0104, not_a_mock, f.span));
                    continue;
                }
            };
            let name = subflow.name.text.as_str();
            let span = subflow.name.span;
            let (host, cost) = match registry.resolve(options.scope.as_deref(), name) {
                crate::host::Resolution::Allowed { host, cost } => (host, cost),
                crate::host::Resolution::Denied => {
                    let scope = options.scope.as_deref().unwrap_or_default();
                    report(index, Diagnostic::new(
                        Code::E0301,
                        format!("event `{name}` is not allowed in scope `{scope}` (EventDenied): a mock can only replace an event the scope allows"),
                        span,
                    ));
                    continue;
                }
                crate::host::Resolution::Unknown => {
                    report(
                        index,
                        Diagnostic::new(
                            Code::E0201,
                            format!(
                                "unknown event `{name}`: a mock replaces a registered host event"
                            ),
                            span,
                        ),
                    );
                    continue;
                }
            };
            let event = &registry.events()[host];
            if matches!(
                event.implementation,
                crate::host::Implementation::Std(crate::host::StdEvent::PrintTemplate)
            ) {
                report(index, Diagnostic::new(
                    Code::E0209,
                    format!("`{name}` takes a template, which a subflow cannot: it cannot be mocked"),
                    span,
                ));
                continue;
            }
            if !event.sig.phantoms.is_empty() {
                // Obligations are opened and released by host dispatches (SPEC 12): a mock of
                // one would open handles nothing tracks, or release them twice.
                report(index, Diagnostic::new(
                    Code::E0209,
                    format!("`{name}` opens, needs or releases handles (`str[..]` states): it cannot be mocked"),
                    span,
                ));
                continue;
            }
            if subflows.contains_key(name) {
                report(
                    index,
                    Diagnostic::new(Code::E0209, format!("`{name}` is mocked twice"), span),
                );
                continue;
            }
            // A mock stands for a host event, and host events cannot yield (SPEC 11).
            if let Some(at) = first_yield(&subflow.body) {
                report(index, Diagnostic::new(
                    Code::E0209,
                    format!("a mock cannot `yield`: it replaces host event `{name}`, and host events return one branch"),
                    at,
                ));
            }
            subflows.insert(
                name.to_string(),
                SubflowDef {
                    sig: event.sig.clone(),
                    body: &subflow.body,
                    span: subflow.span,
                    name_span: subflow.name.span,
                    text: &mock.text,
                    library: Some(&mock.name),
                    mock: Some(cost),
                },
            );
        }
        if mock.file.items.is_empty() {
            report(
                index,
                Diagnostic::new(
                    Code::E0104,
                    format!("the mock is empty: {not_a_mock}"),
                    Span::default(),
                ),
            );
        }
    }
}

/// Checks the mocks of `options` (SPEC 13): what each holds, and each of its subflows' bodies
/// against the signature of the event it replaces, in the scope of `options` (a mock sees its
/// event's inputs, the scope's libraries and the other mocks, not the source it is compiled
/// with). Returns the first mock that has errors, with them; their spans point into the mock's
/// text. Linear in the mocks together.
pub fn check_mocks(
    registry: &Registry,
    options: &CheckOptions,
) -> Result<(), (usize, Vec<Diagnostic>)> {
    let Ok(libraries) = scope_libraries(registry, options, &ast::SourceFile::default()) else {
        // An unknown scope is the source's error (E0302), reported when it is checked.
        return Ok(());
    };
    let mut per_mock: Vec<Vec<Diagnostic>> = vec![Vec::new(); options.mocks.len()];
    let mut subflows = library_subflows(registry, &libraries);
    collect_mocks(registry, options, &mut subflows, &mut |k, d| {
        per_mock[k].push(d)
    });
    let index_of: HashMap<&str, usize> = options
        .mocks
        .iter()
        .enumerate()
        .map(|(k, mock)| (mock.name.as_str(), k))
        .collect();
    let recursive = find_recursion(&subflows, &mut |def, d| {
        if let Some(&k) = def
            .mock
            .and(def.library)
            .and_then(|name| index_of.get(name))
        {
            per_mock[k].push(d);
        }
    });
    let mut names: Vec<&String> = subflows
        .iter()
        .filter(|(name, def)| def.mock.is_some() && !recursive.contains(name))
        .map(|(name, _)| name)
        .collect();
    names.sort_by_key(|name| {
        let def = &subflows[*name];
        (
            def.library.and_then(|l| index_of.get(l)).copied(),
            def.span.start,
        )
    });
    for (k, mock) in options.mocks.iter().enumerate() {
        let mut lowerer =
            lower::Lowerer::new(registry, options, &mock.text, &subflows, &recursive, &[]);
        for name in names
            .iter()
            .filter(|n| subflows[**n].library == Some(mock.name.as_str()))
        {
            lowerer.check_subflow(name);
        }
        let mut diagnostics = std::mem::take(&mut per_mock[k]);
        diagnostics.extend(lowerer.finish().1);
        if !diagnostics.is_empty() {
            diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
            diagnostics.dedup();
            return Err((k, diagnostics));
        }
    }
    Ok(())
}

/// Collects declared events and subflows; reports imports, duplicate and unimplemented
/// declarations, undeclared subflows, and subflows that would replace a host event or a subflow
/// of a library of the scope (a source may redeclare those, with their signature, but not
/// implement them: E0209). Declarations with errors name their event in `broken`.
// One list per thing it reports into; `shape` exempts one declaration of the source.
#[allow(clippy::too_many_arguments)]
fn collect_subflows<'a>(
    registry: &Registry,
    file: &'a ast::SourceFile,
    text: &'a str,
    library: Option<&'a str>,
    shape: Option<&str>,
    subflows: &mut HashMap<String, SubflowDef<'a>>,
    broken: &mut Vec<String>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut declared: HashMap<&str, (&ast::EventDecl, Option<EventSig>)> = HashMap::new();
    for item in &file.items {
        match item {
            ast::Item::Import(import) if !KNOWN_IMPORTS.contains(&import.path.as_str()) => {
                diagnostics.push(Diagnostic::new(
                    Code::E0104,
                    format!(
                        "unknown import `{}` (only {} are known)",
                        import.path,
                        KNOWN_IMPORTS.join(", ")
                    ),
                    import.span,
                ));
            }
            ast::Item::Event(decl) => {
                if declared.contains_key(decl.name.text.as_str()) {
                    diagnostics.push(Diagnostic::new(
                        Code::E0209,
                        format!("event `{}` is declared twice", decl.name.text),
                        decl.name.span,
                    ));
                    continue;
                }
                let sig = event_sig(decl, diagnostics);
                if sig.is_none() {
                    broken.push(decl.name.text.clone());
                }
                declared.insert(decl.name.text.as_str(), (decl, sig));
            }
            _ => {}
        }
    }
    let mut implemented: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for item in &file.items {
        let ast::Item::Subflow(subflow) = item else {
            continue;
        };
        let name = subflow.name.text.as_str();
        if !implemented.insert(name) {
            diagnostics.push(Diagnostic::new(
                Code::E0209,
                format!("subflow `{name}` is implemented twice"),
                subflow.name.span,
            ));
            continue;
        }
        if registry.event_index(name).is_some() {
            diagnostics.push(Diagnostic::new(
                Code::E0209,
                format!("`{name}` is a host event: a source cannot implement it with a subflow"),
                subflow.name.span,
            ));
            continue;
        }
        if let Some(owner) = subflows.get(name).and_then(|def| def.library) {
            if library.is_none() {
                diagnostics.push(Diagnostic::new(
                    Code::E0209,
                    format!("`{name}` is a subflow of library `{owner}` of the scope: a source cannot implement it again"),
                    subflow.name.span,
                ));
            }
            continue;
        }
        match declared.get(name) {
            Some((_, Some(sig))) => {
                subflows.insert(
                    name.to_string(),
                    SubflowDef {
                        sig: Arc::new(sig.clone()),
                        body: &subflow.body,
                        span: subflow.span,
                        name_span: subflow.name.span,
                        text,
                        library,
                        mock: None,
                    },
                );
            }
            Some((_, None)) => {}
            None => diagnostics.push(Diagnostic::new(
                Code::E0209,
                format!("subflow `{name}` implements an event that is not declared: add `~event {name} {{ ... }}` with its branches"),
                subflow.name.span,
            )),
        }
    }
    for (name, (decl, sig)) in &declared {
        if implemented.contains(name) {
            continue;
        }
        // A declaration used only as the shape (SPEC 13) needs no implementation.
        let is_shape = library.is_none() && shape == Some(*name);
        let existing = match registry.event_index(name) {
            Some(i) => Some((&registry.events()[i].sig, "host event")),
            None => subflows
                .get(*name)
                .filter(|def| def.is_from_library())
                .map(|def| (&def.sig, "library subflow")),
        };
        match existing {
            Some((existing, what)) => {
                if let Some(sig) = sig {
                    if *sig != **existing {
                        diagnostics.push(Diagnostic::new(
                            Code::E0204,
                            format!("this declaration of `{name}` differs from the {what}'s signature"),
                            decl.span,
                        ));
                    }
                }
            }
            None if is_shape => {}
            None => diagnostics.push(Diagnostic::new(
                Code::E0209,
                format!("event `{name}` is declared but has no implementation: write a subflow `~{name} = ...` or register a host event"),
                decl.name.span,
            )),
        }
    }
}

/// Finds subflows that call themselves, directly or through others (E0209): the members of every
/// strongly connected component of the call graph that has a cycle (Tarjan's algorithm, iterative
/// so that long call chains cannot overflow the stack).
/// Each is reported to `report` with its definition, which says which text it is in (the
/// checked source's, a library's or a mock's).
fn find_recursion(
    subflows: &HashMap<String, SubflowDef>,
    report: &mut dyn FnMut(&SubflowDef, Diagnostic),
) -> Vec<String> {
    let mut names: Vec<&str> = subflows.keys().map(String::as_str).collect();
    names.sort_unstable();
    let id: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let calls: Vec<Vec<usize>> = names
        .iter()
        .map(|name| {
            let mut called = Vec::new();
            invoked_paths(subflows[*name].body, &mut called);
            let mut edges: Vec<usize> = called.iter().filter_map(|c| id.get(c).copied()).collect();
            edges.sort_unstable();
            edges.dedup();
            edges
        })
        .collect();
    const UNVISITED: usize = usize::MAX;
    let n = names.len();
    let (mut index, mut lowlink, mut on_stack) = (vec![UNVISITED; n], vec![0; n], vec![false; n]);
    let (mut stack, mut next_index, mut components) = (Vec::new(), 0, Vec::new());
    for root in 0..n {
        if index[root] != UNVISITED {
            continue;
        }
        let mut frames: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next_index;
        lowlink[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (node, ref mut child)) = frames.last_mut() {
            if let Some(&next) = calls[node].get(*child) {
                *child += 1;
                if index[next] == UNVISITED {
                    index[next] = next_index;
                    lowlink[next] = next_index;
                    next_index += 1;
                    stack.push(next);
                    on_stack[next] = true;
                    frames.push((next, 0));
                } else if on_stack[next] {
                    lowlink[node] = lowlink[node].min(index[next]);
                }
                continue;
            }
            frames.pop();
            if let Some(&(parent, _)) = frames.last() {
                lowlink[parent] = lowlink[parent].min(lowlink[node]);
            }
            if lowlink[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 || calls[node].contains(&node) {
                    component.sort_unstable();
                    components.push(component);
                }
            }
        }
    }
    let mut recursive = Vec::new();
    for component in components {
        let members: Vec<&str> = component.iter().map(|&i| names[i]).collect();
        for &name in &members {
            recursive.push(name.to_string());
            let span = subflows[name].name_span;
            let how = if members.len() == 1 {
                "calls itself".to_string()
            } else {
                format!("is part of a call cycle ({})", members.join(", "))
            };
            report(
                &subflows[name],
                Diagnostic::new(
                    Code::E0209,
                    format!("subflow `{name}` {how}; recursion is not supported"),
                    span,
                ),
            );
        }
    }
    recursive
}

/// The span of the first `yield` in `step`, if it has one.
fn first_yield(step: &ast::Step) -> Option<Span> {
    let mut pending = vec![step];
    while let Some(step) = pending.pop() {
        match step {
            ast::Step::Yield(constructor) => return Some(constructor.span),
            ast::Step::Invoke(invocation) => pending.extend(
                invocation
                    .continuations
                    .iter()
                    .filter_map(|c| c.step.as_deref()),
            ),
            _ => {}
        }
    }
    None
}

fn invoked_paths<'a>(step: &'a ast::Step, out: &mut Vec<&'a str>) {
    // Explicit stack: continuation nesting is bounded by the parser, but keep this iterative anyway.
    let mut pending = vec![step];
    while let Some(step) = pending.pop() {
        if let ast::Step::Invoke(invocation) = step {
            out.push(invocation.path.text.as_str());
            for c in &invocation.continuations {
                if let Some(s) = c.step.as_deref() {
                    pending.push(s);
                }
            }
        }
    }
}

/// Whether every item of `source` that did not parse (an item starts with `~` in column 0; the
/// parsed ones are in `file`) is a flow, so that checking the items that did parse cannot report
/// knock-on errors: a flow names nothing that other items use, while a failed declaration,
/// subflow or import would make their users unknown events or unimplemented ones. An item whose
/// kind cannot be told from its first line counts as not a flow.
pub fn failed_items_are_flows(source: &str, file: &ast::SourceFile) -> bool {
    let mut parsed: Vec<(u32, u32)> = file
        .items
        .iter()
        .map(|item| {
            let span = match item {
                ast::Item::Import(i) => i.span,
                ast::Item::Event(e) => e.span,
                ast::Item::Inputs(d) => d.span,
                ast::Item::Subflow(s) => s.span,
                ast::Item::Flow(f) => f.span,
            };
            (span.start, span.end)
        })
        .collect();
    parsed.sort_unstable();
    let mut at = 0;
    for line in source.split_inclusive('\n') {
        let start = at;
        at += line.len();
        let Some(rest) = line.strip_prefix('~') else {
            continue;
        };
        let offset = start as u32;
        let covered = parsed
            .partition_point(|&(s, _)| s <= offset)
            .checked_sub(1)
            .is_some_and(|k| parsed[k].1 > offset);
        if covered {
            continue;
        }
        // A flow's first line is `~path(...`: a `(` before any `=`, and not a declaration.
        let rest = rest.trim_start();
        let is_flow = !rest.starts_with("event")
            && !rest.starts_with("import")
            && !rest.starts_with("proc")
            && match (rest.find('('), rest.find('=')) {
                (Some(paren), Some(equals)) => paren < equals,
                (Some(_), None) => true,
                _ => false,
            };
        if !is_flow {
            return false;
        }
    }
    true
}

/// Parses a text of event declarations (for [`Registry::declare`]).
pub fn declarations(text: &str) -> Result<Vec<EventSig>, SourceErrors> {
    let (file, mut diagnostics) = crate::syntax::parse(text, &FrontEndLimits::default());
    let mut sigs = Vec::new();
    for item in &file.items {
        match item {
            ast::Item::Event(decl) => {
                if let Some(sig) = event_sig(decl, &mut diagnostics) {
                    sigs.push(sig);
                }
            }
            ast::Item::Import(_) => {}
            ast::Item::Inputs(decl) => diagnostics.push(Diagnostic::new(
                Code::E0104,
                "expected only event declarations, found flow inputs",
                decl.span,
            )),
            ast::Item::Subflow(s) => diagnostics.push(Diagnostic::new(
                Code::E0104,
                "expected only event declarations, found a subflow",
                s.span,
            )),
            ast::Item::Flow(f) => diagnostics.push(Diagnostic::new(
                Code::E0104,
                "expected only event declarations, found a flow",
                f.span,
            )),
        }
    }
    if diagnostics.is_empty() {
        Ok(sigs)
    } else {
        Err(SourceErrors {
            name: "<declaration>".into(),
            text: text.to_string(),
            diagnostics,
        })
    }
}

/// Parses and checks a library for [`Registry::attach_library`].
pub fn check_library(
    registry: &Registry,
    scope: &str,
    name: &str,
    text: &str,
) -> Result<Library, SourceErrors> {
    let options = CheckOptions {
        scope: Some(scope.to_string()),
        ..CheckOptions::default()
    };
    let (file, mut diagnostics) = crate::syntax::parse(text, &options.limits);
    for item in &file.items {
        match item {
            ast::Item::Flow(flow) => diagnostics.push(Diagnostic::new(
                Code::E0104,
                "a library holds event declarations and subflows, not top-level flows",
                flow.span,
            )),
            ast::Item::Inputs(decl) => diagnostics.push(Diagnostic::new(
                Code::E0104,
                "a library holds event declarations and subflows, not flow inputs (declare them in the source that runs)",
                decl.span,
            )),
            _ => {}
        }
    }
    if diagnostics.is_empty() {
        if let Err(errors) = check(registry, &file, text, &options) {
            diagnostics = errors;
        }
    }
    if diagnostics.is_empty() {
        Ok(Library {
            name: name.to_string(),
            text: text.to_string(),
            file,
        })
    } else {
        Err(SourceErrors {
            name: name.to_string(),
            text: text.to_string(),
            diagnostics,
        })
    }
}
