//! Syntax tree: what the source says, with a span on every node and no semantics.

use crate::span::Span;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// An event path such as `std.io:print.ln`, `users.get` or `add`.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    pub text: String,
    pub span: Span,
}

/// A written type such as `i64` or `[]const u8`, resolved by the checker.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeExpr {
    pub text: String,
    /// A phantom state (SPEC 12): `str[opened!]`, `str[opened]`, `str[!opened]`.
    pub phantom: Option<PhantomDecl>,
    pub span: Span,
}

/// A phantom state written on a type: its state name, what it says, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct PhantomDecl {
    pub state: String,
    pub kind: PhantomKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhantomKind {
    /// `S!`
    Creates,
    /// `S`
    Requires,
    /// `!S`
    Discharges,
}

/// A parsed source: its items in source order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceFile {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Import(Import),
    Event(EventDecl),
    /// `~input { name: Type, ... }`: flow inputs the caller supplies at each run.
    Inputs(InputsDecl),
    Subflow(Subflow),
    Flow(Flow),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    pub path: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventDecl {
    pub name: Path,
    pub inputs: Vec<FieldDecl>,
    pub branches: Vec<BranchDecl>,
    pub span: Span,
}

/// A declaration of flow inputs: `~input { rate: f64, code: str }`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputsDecl {
    pub inputs: Vec<FieldDecl>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldDecl {
    pub name: Ident,
    pub ty: TypeExpr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BranchDecl {
    pub name: Ident,
    pub payload: PayloadDecl,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PayloadDecl {
    Empty,
    Identity(TypeExpr),
    Struct(Vec<FieldDecl>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Subflow {
    pub name: Path,
    pub body: Box<Step>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub head: Invocation,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub path: Path,
    pub args: Vec<Arg>,
    pub continuations: Vec<Continuation>,
    /// From the path to the closing parenthesis.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: ArgValue,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ArgValue {
    Expr(Expr),
    /// `start..end`, the argument of `for`.
    Range(Box<Expr>, Box<Expr>),
    /// `{ f: expr, ... }`, the argument of `capture`.
    Struct(Vec<FieldInit>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldInit {
    pub name: Ident,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Continuation {
    pub kind: ContinuationKind,
    pub step: Option<Box<Step>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ContinuationKind {
    /// `| branch binding when guard`
    Branch {
        branch: Ident,
        binding: Option<Binding>,
        guard: Option<Box<Expr>>,
    },
    /// `|> step` with no branch: continues a single-branch or void event.
    Pipe,
    /// `|? |> step`: any branch no other continuation took.
    CatchAll,
    /// `| [P, ...] binding when guard`: a continuation of `match` (SPEC 10).
    Patterns {
        patterns: Vec<Pattern>,
        binding: Option<Binding>,
        guard: Option<Box<Expr>>,
    },
}

/// One pattern of a `match` continuation: a literal, or a range of integer literals.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    pub kind: PatternKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PatternKind {
    Literal(Literal),
    /// `start..end` (half-open) or `start..=end` (closed).
    Range {
        start: Literal,
        end: Literal,
        inclusive: bool,
    },
}

/// A literal as a pattern writes it (its type is checked against the `match` argument's).
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// An integer as written, and whether a minus sign precedes it.
    Int {
        value: u64,
        negative: bool,
    },
    Float(f64),
    Str(Arc<str>),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Binding {
    Name(Ident),
    Discard(Span),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Invoke(Invocation),
    /// `_`: end of the chain.
    Discard(Span),
    /// `name payload`, including `captured { ... }`.
    Construct(Constructor),
    /// `yield name payload` (SPEC 11): runs the caller's continuation for branch `name`; the
    /// constructor's span starts at `yield`.
    Yield(Constructor),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Constructor {
    pub name: Ident,
    pub payload: ConstructorPayload,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConstructorPayload {
    Empty,
    Identity(Expr),
    Struct(Vec<FieldInit>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Height of the expression tree, bounded by the parser so that later passes can recurse.
    pub depth: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// An integer literal as written (its sign comes from a unary minus).
    Int(u64),
    Float(f64),
    Str(Arc<str>),
    Bool(bool),
    Name(String),
    Field(Box<Expr>, Ident),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    As(TypeExpr, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}
