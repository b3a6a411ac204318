//! The layout pass: splits the token stream into items and turns indentation and same-line
//! chaining (SPEC 2.3) into explicit tokens, so that the grammar stays context-free.
//!
//! Every invocation in a step position gets a `BlockOpen` after its closing parenthesis and a
//! `BlockClose` when its continuations end; its opening parenthesis becomes `CallOpen`. The rules:
//!
//! * a continuation on its own line attaches to the invocation of the nearest preceding
//!   continuation line with a smaller indentation whose step is an invocation (the last invocation
//!   written on that line), else to the item's head invocation;
//! * a continuation later on the same line attaches to the last invocation written before it on
//!   that line (the head line included).
//!
//! Lines inside brackets are not continuation lines. A line at column 0 that does not start an item
//! or a continuation is host-language code, which is reported and skipped.

use super::lexer::Token;
use super::token::Tok;
use crate::diag::{Code, Diagnostic};
use crate::limits::FrontEndLimits;
use crate::span::Span;
use smallvec::SmallVec;

/// What an item is, decided from its first tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    Import,
    Event,
    /// `~input { name: Type, ... }`: flow inputs the source expects.
    Inputs,
    Subflow,
    Flow,
}

/// One item's tokens, ready for the grammar.
#[derive(Clone)]
pub struct ItemTokens {
    pub tokens: Vec<(usize, Tok, usize)>,
    pub span: Span,
}

/// The items of a source, inline for a short one.
pub type Items = SmallVec<[ItemTokens; 2]>;

/// Splits `tokens` into items and lays each out. Errors are pushed to `diagnostics`; an item with
/// errors is not returned (so the grammar never sees it), which keeps errors from cascading.
pub fn layout(
    mut tokens: Vec<Token>,
    limits: &FrontEndLimits,
    diagnostics: &mut Vec<Diagnostic>,
) -> Items {
    let has_items = tokens.iter().any(is_item_start);
    let mut items = Items::new();
    // The current item is `tokens[start..end]`: items are contiguous runs of tokens (skipped host
    // code only ever follows an item's last token), so they are laid out in place, not copied.
    let (mut start, mut end) = (0, 0);
    let mut skipping_host_code = false;
    for k in 0..tokens.len() {
        let token = &tokens[k];
        if is_item_start(token) {
            flush(&mut tokens[start..end], limits, diagnostics, &mut items);
            skipping_host_code = false;
            (start, end) = (k, k + 1);
            continue;
        }
        if skipping_host_code {
            continue;
        }
        let host_line = has_items
            && token.line_start
            && token.column == 0
            // A tab in indentation is reported as E0103 by the item it belongs to.
            && !matches!(token.tok, Tok::Bar | Tok::BarQuestion | Tok::Pipe | Tok::Error(Code::E0103, _))
            && bracket_depth(&tokens[start..end]) == 0;
        if host_line {
            let span = token.span;
            flush(&mut tokens[start..end], limits, diagnostics, &mut items);
            (start, end) = (k + 1, k + 1);
            diagnostics.push(Diagnostic::new(
                Code::E0104,
                "host-language code is not supported: events are implemented by the host application and registered with the engine",
                span,
            ));
            skipping_host_code = true;
            continue;
        }
        end = k + 1;
    }
    flush(&mut tokens[start..end], limits, diagnostics, &mut items);
    items
}

fn is_item_start(token: &Token) -> bool {
    matches!(token.tok, Tok::Tilde) && token.line_start && token.column == 0
}

fn bracket_depth(tokens: &[Token]) -> i32 {
    let mut depth = 0;
    for token in tokens {
        match token.tok {
            Tok::LParen | Tok::LBrace | Tok::LBracket => depth += 1,
            Tok::RParen | Tok::RBrace | Tok::RBracket => depth -= 1,
            _ => {}
        }
    }
    depth.max(0)
}

/// Lays out one item; its tokens are moved out (left as `~` placeholders).
fn flush(
    tokens: &mut [Token],
    limits: &FrontEndLimits,
    diagnostics: &mut Vec<Diagnostic>,
    items: &mut Items,
) {
    if tokens.is_empty() {
        return;
    }
    let span = tokens[0].span.to(tokens[tokens.len() - 1].span);
    let Some(kind) = classify(tokens) else {
        // Host code: its body need not even lex as flow syntax.
        diagnostics.push(Diagnostic::new(
            Code::E0104,
            "`~proc` and other host-language items are not supported: events are implemented by the host application and registered with the engine",
            span,
        ));
        return;
    };
    let errors_before = diagnostics.len();
    for token in tokens.iter() {
        if let Tok::Error(code, message) = &token.tok {
            diagnostics.push(Diagnostic::new(*code, message.clone(), token.span));
        }
    }
    if diagnostics.len() > errors_before {
        return;
    }
    if !check_brackets(tokens, limits, diagnostics) {
        return;
    }
    let laid_out = match kind {
        ItemKind::Import | ItemKind::Event => Some(
            tokens
                .iter_mut()
                .map(|t| (t.span.start as usize, take(&mut t.tok), t.span.end as usize))
                .collect(),
        ),
        // `~ input {`: the identifier becomes the contextual keyword (`classify` checked it).
        ItemKind::Inputs => Some(
            tokens
                .iter_mut()
                .enumerate()
                .map(|(k, t)| {
                    let tok = if k == 1 { Tok::Input } else { take(&mut t.tok) };
                    (t.span.start as usize, tok, t.span.end as usize)
                })
                .collect(),
        ),
        ItemKind::Subflow | ItemKind::Flow => {
            Nester::new(kind, limits, diagnostics, tokens.len()).run(tokens)
        }
    };
    if let Some(tokens) = laid_out {
        items.push(ItemTokens { tokens, span });
    }
}

/// Reports unbalanced brackets (E0102 for an unclosed one, E0101 for a stray closer) and
/// brackets nested deeper than the limit.
fn check_brackets(
    tokens: &[Token],
    limits: &FrontEndLimits,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let mut open: SmallVec<[&Token; 16]> = SmallVec::new();
    for token in tokens {
        match token.tok {
            Tok::LParen | Tok::LBrace | Tok::LBracket => {
                open.push(token);
                if open.len() > limits.max_nesting {
                    diagnostics.push(Diagnostic::new(
                        Code::E0105,
                        format!(
                            "brackets nested deeper than the limit of {}",
                            limits.max_nesting
                        ),
                        token.span,
                    ));
                    return false;
                }
            }
            Tok::RParen | Tok::RBrace | Tok::RBracket => {
                let expected = match token.tok {
                    Tok::RParen => Tok::LParen,
                    Tok::RBrace => Tok::LBrace,
                    _ => Tok::LBracket,
                };
                match open.pop() {
                    Some(opener) if opener.tok == expected => {}
                    Some(opener) => {
                        diagnostics.push(Diagnostic::new(
                            Code::E0102,
                            format!("unclosed {} (closed by {})", opener.tok, token.tok),
                            opener.span,
                        ));
                        return false;
                    }
                    None => {
                        diagnostics.push(Diagnostic::new(
                            Code::E0101,
                            format!("unexpected {}", token.tok),
                            token.span,
                        ));
                        return false;
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(opener) = open.last() {
        diagnostics.push(Diagnostic::new(
            Code::E0102,
            format!("unclosed {}", opener.tok),
            opener.span,
        ));
        return false;
    }
    true
}

/// `None` for host-language items such as `~proc`.
fn classify(tokens: &[Token]) -> Option<ItemKind> {
    let body = if matches!(tokens[0].tok, Tok::Tilde) {
        &tokens[1..]
    } else {
        tokens
    };
    match body.first().map(|t| &t.tok) {
        Some(Tok::Import) => return Some(ItemKind::Import),
        Some(Tok::Pub | Tok::Event) => return Some(ItemKind::Event),
        // `~input { ... }` declares flow inputs; `~input(...)` would be an ordinary invocation.
        Some(Tok::Ident(word))
            if word == "input"
                && matches!(tokens[0].tok, Tok::Tilde)
                && matches!(body.get(1).map(|t| &t.tok), Some(Tok::LBrace)) =>
        {
            return Some(ItemKind::Inputs)
        }
        Some(Tok::Ident(word))
            if matches!(word.as_str(), "proc" | "const" | "fn" | "var" | "struct") =>
        {
            // `~proc name {` is host code; `~proc(...)` would be an ordinary invocation.
            if matches!(body.get(1).map(|t| &t.tok), Some(Tok::Ident(_))) {
                return None;
            }
        }
        _ => {}
    }
    // `~path = step` is a subflow: a path then `=` before anything else.
    let mut i = 0;
    while i < body.len() {
        match &body[i].tok {
            Tok::Ident(_) | Tok::If | Tok::Dot | Tok::Colon => i += 1,
            Tok::Eq => return Some(ItemKind::Subflow),
            _ => break,
        }
    }
    Some(ItemKind::Flow)
}

struct Open {
    indent: u32,
    /// The item's head invocation: no line closes it.
    head: bool,
}

/// Inserts the layout tokens into a flow or subflow item.
struct Nester<'a> {
    kind: ItemKind,
    limits: &'a FrontEndLimits,
    diagnostics: &'a mut Vec<Diagnostic>,
    out: Vec<(usize, Tok, usize)>,
    stack: SmallVec<[Open; 8]>,
}

/// Indentation recorded for invocations written on the head line: every new line closes them.
const HEAD_LINE: u32 = u32::MAX;

impl<'a> Nester<'a> {
    fn new(
        kind: ItemKind,
        limits: &'a FrontEndLimits,
        diagnostics: &'a mut Vec<Diagnostic>,
        tokens: usize,
    ) -> Nester<'a> {
        Nester {
            kind,
            limits,
            diagnostics,
            // Every token, plus a BlockOpen and a BlockClose per invocation (a few, usually).
            out: Vec::with_capacity(tokens + 8),
            stack: SmallVec::new(),
        }
    }

    fn emit(&mut self, token: &Token, tok: Tok) {
        self.out
            .push((token.span.start as usize, tok, token.span.end as usize));
    }

    /// Each token is moved out as it is emitted, after its last read.
    fn run(mut self, tokens: &mut [Token]) -> Option<Vec<(usize, Tok, usize)>> {
        let mut i = 0;
        if matches!(tokens[0].tok, Tok::Tilde) {
            self.emit(&tokens[0], Tok::Tilde);
            i = 1;
        }
        if self.kind == ItemKind::Subflow {
            while i < tokens.len() && !matches!(tokens[i].tok, Tok::Eq) {
                let tok = take(&mut tokens[i].tok);
                self.emit(&tokens[i], tok);
                i += 1;
            }
            if i < tokens.len() {
                self.emit(&tokens[i], Tok::Eq);
                i += 1;
            }
        }
        // The head step: its invocation (if it is one) is never closed by indentation.
        let mut head_pending = true;
        let mut line_indent = HEAD_LINE;
        let mut in_header = false;
        let mut depth = 0usize;
        let mut step_position = true;
        while i < tokens.len() {
            let token = &tokens[i];
            if depth == 0
                && token.line_start
                && i > 0
                && matches!(token.tok, Tok::Bar | Tok::BarQuestion | Tok::Pipe)
            {
                // A continuation line: close what its indentation ends.
                line_indent = token.column;
                while self
                    .stack
                    .last()
                    .is_some_and(|open| !open.head && open.indent >= line_indent)
                {
                    self.stack.pop();
                    self.emit(token, Tok::BlockClose);
                }
            }
            if step_position && depth == 0 {
                step_position = false;
                if let Some(end) = invocation_end(tokens, i) {
                    // Copy the path, turn its `(` into CallOpen, copy the arguments verbatim.
                    let mut j = i;
                    while !matches!(tokens[j].tok, Tok::LParen) {
                        let tok = take(&mut tokens[j].tok);
                        self.emit(&tokens[j], tok);
                        j += 1;
                    }
                    self.emit(&tokens[j], Tok::CallOpen);
                    for token in &mut tokens[j + 1..=end] {
                        let tok = take(&mut token.tok);
                        self.emit(token, tok);
                    }
                    self.emit(&tokens[end], Tok::BlockOpen);
                    self.stack.push(Open {
                        indent: line_indent,
                        head: head_pending,
                    });
                    if self.stack.len() > self.limits.max_nesting {
                        self.diagnostics.push(Diagnostic::new(
                            Code::E0105,
                            format!(
                                "continuations nested deeper than the limit of {}",
                                self.limits.max_nesting
                            ),
                            tokens[i].span,
                        ));
                        return None;
                    }
                    head_pending = false;
                    i = end + 1;
                    continue;
                }
                head_pending = false;
                // `yield name ...` (SPEC 11): the identifier becomes the contextual keyword.
                if matches!(&token.tok, Tok::Ident(word) if word == "yield")
                    && matches!(
                        tokens.get(i + 1).map(|t| &t.tok),
                        Some(Tok::Ident(_) | Tok::Else)
                    )
                {
                    self.emit(&tokens[i], Tok::Yield);
                    i += 1;
                    continue;
                }
            }
            match token.tok {
                Tok::LParen | Tok::LBrace | Tok::LBracket => depth += 1,
                Tok::RParen | Tok::RBrace | Tok::RBracket => depth = depth.saturating_sub(1),
                _ => {}
            }
            let was_in_header = in_header;
            if depth == 0 {
                let starts_continuation = match token.tok {
                    Tok::Bar | Tok::BarQuestion => true,
                    Tok::Pipe => !in_header,
                    _ => false,
                };
                if starts_continuation && self.stack.is_empty() {
                    self.diagnostics.push(Diagnostic::new(
                        Code::E0103,
                        "this continuation has no invocation to attach to",
                        token.span,
                    ));
                    return None;
                }
                match token.tok {
                    Tok::Bar | Tok::BarQuestion => in_header = true,
                    Tok::Pipe => {
                        in_header = false;
                        step_position = true;
                    }
                    _ => {}
                }
            }
            let pipe_start = depth == 0 && matches!(token.tok, Tok::Pipe) && !was_in_header;
            let tok = if pipe_start {
                Tok::PipeStart
            } else {
                take(&mut tokens[i].tok)
            };
            self.emit(&tokens[i], tok);
            i += 1;
        }
        let last = tokens.last().expect("items are never empty");
        while self.stack.pop().is_some() {
            self.out.push((
                last.span.end as usize,
                Tok::BlockClose,
                last.span.end as usize,
            ));
        }
        Some(self.out)
    }
}

/// Moves a token out of the item being laid out.
fn take(tok: &mut Tok) -> Tok {
    std::mem::replace(tok, Tok::Tilde)
}

/// If `tokens[i..]` starts with `path(`, the index of the matching `)`.
fn invocation_end(tokens: &[Token], i: usize) -> Option<usize> {
    let mut j = i;
    let mut expect_segment = true;
    loop {
        match tokens.get(j).map(|t| &t.tok)? {
            Tok::Ident(_) | Tok::If if expect_segment => expect_segment = false,
            Tok::Dot | Tok::Colon if !expect_segment => expect_segment = true,
            Tok::LParen if !expect_segment => break,
            _ => return None,
        }
        j += 1;
    }
    let mut depth = 0usize;
    for (k, token) in tokens.iter().enumerate().skip(j) {
        match token.tok {
            Tok::LParen | Tok::LBrace | Tok::LBracket => depth += 1,
            Tok::RParen | Tok::RBrace | Tok::RBracket => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}
