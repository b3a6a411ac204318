//! Runtime types and event signatures, shared by the host registry, the checker and both tiers.

use std::fmt;
use std::sync::Arc;

/// The four runtime types (SPEC 1.2). Declared integer widths are documentation only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// A 64-bit signed integer (`i64`, `int`, and every declared integer width).
    Int,
    /// A 64-bit float (`f64`, `float`, `f32`).
    Float,
    /// `bool`.
    Bool,
    /// UTF-8 text (`[]const u8`, `str`, `string`).
    Str,
}

impl Type {
    /// Resolves a written type (`i64`, `[]const u8`, `float`, ...).
    pub fn from_written(text: &str) -> Option<Type> {
        Some(match text {
            "i64" | "i32" | "i16" | "i8" | "u64" | "u32" | "u16" | "u8" | "usize" | "isize"
            | "int" => Type::Int,
            "f64" | "f32" | "float" => Type::Float,
            "bool" => Type::Bool,
            "[]const u8" | "[]u8" | "str" | "string" => Type::Str,
            _ => return None,
        })
    }

    /// The type's name in messages (`"int"`, `"float"`, `"bool"`, `"str"`).
    pub fn name(self) -> &'static str {
        match self {
            Type::Int => "int",
            Type::Float => "float",
            Type::Bool => "bool",
            Type::Str => "str",
        }
    }

    /// Words (8 bytes each) this type takes in the flow state: a `str` is a pointer and a length.
    pub fn words(self) -> u32 {
        match self {
            Type::Str => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The payload a branch carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadType {
    /// No payload.
    Empty,
    /// A single value (an identity payload).
    Identity(Type),
    /// Named fields, in declared order.
    Struct(Vec<(Arc<str>, Type)>),
}

impl PayloadType {
    /// The payload's scalar types in order (one for identity, none for empty).
    pub fn types(&self) -> Vec<Type> {
        match self {
            PayloadType::Empty => Vec::new(),
            PayloadType::Identity(ty) => vec![*ty],
            PayloadType::Struct(fields) => fields.iter().map(|(_, ty)| *ty).collect(),
        }
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadType::Empty => f.write_str("no payload"),
            PayloadType::Identity(ty) => write!(f, "{ty}"),
            PayloadType::Struct(fields) => {
                f.write_str("{ ")?;
                for (i, (name, ty)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}: {ty}")?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// One branch of an event: its name and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchSig {
    /// The branch name.
    pub name: Arc<str>,
    /// What it carries.
    pub payload: PayloadType,
}

/// An event's signature: typed inputs and branches. No branches means void (SPEC 1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSig {
    /// The event's full name (`users.get`, `std.io:println`).
    pub name: Arc<str>,
    /// Its inputs, in declared order.
    pub inputs: Vec<(Arc<str>, Type)>,
    /// Its branches, in declared order; empty for a void event.
    pub branches: Vec<BranchSig>,
}

impl EventSig {
    /// The position of branch `name` among [`EventSig::branches`].
    pub fn branch_index(&self, name: &str) -> Option<usize> {
        self.branches.iter().position(|b| &*b.name == name)
    }

    /// A void event returns the unnamed branch `""` with no payload.
    pub fn is_void(&self) -> bool {
        self.branches.is_empty()
    }

    /// The branches a result can take: a void event's single unnamed branch included.
    pub fn result_branches(&self) -> Vec<BranchSig> {
        self.result_branch_slice().to_vec()
    }

    /// [`EventSig::result_branches`] without copying them (a shared static for a void event's
    /// unnamed branch).
    pub(crate) fn result_branch_slice(&self) -> &[BranchSig] {
        if self.is_void() {
            static VOID: std::sync::OnceLock<[BranchSig; 1]> = std::sync::OnceLock::new();
            VOID.get_or_init(|| {
                [BranchSig {
                    name: Arc::from(""),
                    payload: PayloadType::Empty,
                }]
            })
        } else {
            &self.branches
        }
    }
}
