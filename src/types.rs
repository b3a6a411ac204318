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
    /// Phantom states on its `str` inputs and payload fields (SPEC 12); empty for most events.
    pub phantoms: Vec<PhantomAt>,
}

/// What a phantom state on a `str` says (SPEC 12): `str[S!]` creates an obligation of state
/// `S`, `str[S]` requires an open handle of state `S`, `str[!S]` discharges it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Phantom {
    /// `str[S!]`, on a branch payload: taking the branch opens a handle of state `S`.
    Creates(Arc<str>),
    /// `str[S]`: an open handle of state `S` (an input that uses it, or a payload that carries it).
    Requires(Arc<str>),
    /// `str[!S]`, on an input: the handle passed there is released.
    Discharges(Arc<str>),
}

impl Phantom {
    /// The state it names.
    pub fn state(&self) -> &Arc<str> {
        match self {
            Phantom::Creates(s) | Phantom::Requires(s) | Phantom::Discharges(s) => s,
        }
    }
}

impl fmt::Display for Phantom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phantom::Creates(s) => write!(f, "str[{s}!]"),
            Phantom::Requires(s) => write!(f, "str[{s}]"),
            Phantom::Discharges(s) => write!(f, "str[!{s}]"),
        }
    }
}

/// Where a phantom state sits in a signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PhantomSlot {
    /// Input `index` (in declared order).
    Input(usize),
    /// Field `field` of branch `branch` (0 for an identity payload).
    Field {
        /// The branch's position in [`EventSig::branches`].
        branch: usize,
        /// The field's position in its payload (0 for an identity payload).
        field: usize,
    },
}

/// A phantom state and the `str` it marks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PhantomAt {
    /// The input or payload field.
    pub slot: PhantomSlot,
    /// Its state.
    pub phantom: Phantom,
}

impl EventSig {
    /// A signature with no inputs and no branches (a void event), to fill in with
    /// [`EventSig::input`], [`EventSig::branch`] and their `_handle` forms.
    ///
    /// ```
    /// use koru_jit::types::{EventSig, PayloadType, Phantom, Type};
    /// // `~event file.open { path: str } | opened str[opened!] | failed { reason: str }`
    /// let open = EventSig::new("file.open")
    ///     .input("path", Type::Str)
    ///     .branch_handle("opened", Phantom::Creates("opened".into()))
    ///     .branch("failed", PayloadType::Struct(vec![("reason".into(), Type::Str)]));
    /// // `~event file.close { handle: str[!opened] }`
    /// let close = EventSig::new("file.close").input_handle("handle", Phantom::Discharges("opened".into()));
    /// assert_eq!(close.input_phantom(0), Some(&Phantom::Discharges("opened".into())));
    /// assert_eq!(open.field_phantom(0, 0), Some(&Phantom::Creates("opened".into())));
    /// ```
    pub fn new(name: impl Into<Arc<str>>) -> EventSig {
        EventSig {
            name: name.into(),
            inputs: Vec::new(),
            branches: Vec::new(),
            phantoms: Vec::new(),
        }
    }

    /// Adds an input.
    pub fn input(mut self, name: impl Into<Arc<str>>, ty: Type) -> EventSig {
        self.inputs.push((name.into(), ty));
        self
    }

    /// Adds a `str` input with a phantom state (`str[S]` or `str[!S]`).
    pub fn input_handle(mut self, name: impl Into<Arc<str>>, phantom: Phantom) -> EventSig {
        self.phantoms.push(PhantomAt {
            slot: PhantomSlot::Input(self.inputs.len()),
            phantom,
        });
        self.input(name, Type::Str)
    }

    /// Adds a branch.
    pub fn branch(mut self, name: impl Into<Arc<str>>, payload: PayloadType) -> EventSig {
        self.branches.push(BranchSig {
            name: name.into(),
            payload,
        });
        self
    }

    /// Adds a branch whose identity payload is a `str` with a phantom state (`| opened
    /// str[opened!]`).
    pub fn branch_handle(mut self, name: impl Into<Arc<str>>, phantom: Phantom) -> EventSig {
        self.phantoms.push(PhantomAt {
            slot: PhantomSlot::Field {
                branch: self.branches.len(),
                field: 0,
            },
            phantom,
        });
        self.branch(name, PayloadType::Identity(Type::Str))
    }

    /// Marks field `field` (by name) of the last branch added with a phantom state; the field
    /// must be a `str` (checked when the event is declared).
    pub fn field_handle(mut self, field: &str, phantom: Phantom) -> EventSig {
        let branch = self.branches.len().saturating_sub(1);
        let position = match self.branches.last().map(|b| &b.payload) {
            Some(PayloadType::Struct(fields)) => fields.iter().position(|(n, _)| &**n == field),
            _ => None,
        };
        self.phantoms.push(PhantomAt {
            slot: PhantomSlot::Field {
                branch,
                // Out of range when the field is missing: refused when the event is declared.
                field: position.unwrap_or(usize::MAX),
            },
            phantom,
        });
        self
    }

    /// The phantom state of input `index`, if it has one.
    pub fn input_phantom(&self, index: usize) -> Option<&Phantom> {
        self.phantoms
            .iter()
            .find(|p| p.slot == PhantomSlot::Input(index))
            .map(|p| &p.phantom)
    }

    /// The phantom state of field `field` of branch `branch`, if it has one.
    pub fn field_phantom(&self, branch: usize, field: usize) -> Option<&Phantom> {
        self.phantoms
            .iter()
            .find(|p| p.slot == PhantomSlot::Field { branch, field })
            .map(|p| &p.phantom)
    }

    /// Why the phantom states do not fit the signature (a phantom on a non-`str` or missing
    /// slot, `str[S!]` on an input, `str[!S]` on a payload, two on one slot), or `None`.
    pub fn phantom_problem(&self) -> Option<String> {
        let mut seen = std::collections::HashSet::new();
        for at in &self.phantoms {
            if !seen.insert(&at.slot) {
                return Some(format!(
                    "`{}` has two phantom states on one slot",
                    self.name
                ));
            }
            let ty = match at.slot {
                PhantomSlot::Input(i) => self.inputs.get(i).map(|(_, t)| *t),
                PhantomSlot::Field { branch, field } => {
                    match self.branches.get(branch).map(|b| &b.payload) {
                        Some(PayloadType::Identity(t)) if field == 0 => Some(*t),
                        Some(PayloadType::Struct(f)) => f.get(field).map(|(_, t)| *t),
                        _ => None,
                    }
                }
            };
            match ty {
                None => {
                    return Some(format!(
                        "a phantom state of `{}` marks no input or payload field",
                        self.name
                    ))
                }
                Some(Type::Str) => {}
                Some(other) => {
                    return Some(format!(
                        "phantom state `{}` of `{}` is on a {other}; only a str carries one",
                        at.phantom.state(),
                        self.name
                    ))
                }
            }
            match (&at.slot, &at.phantom) {
                (PhantomSlot::Input(_), Phantom::Creates(s)) => {
                    return Some(format!(
                        "`str[{s}!]` creates a handle: it belongs on a branch payload, not on an input of `{}`",
                        self.name
                    ))
                }
                (PhantomSlot::Field { .. }, Phantom::Discharges(s)) => {
                    return Some(format!(
                        "`str[!{s}]` releases a handle: it belongs on an input, not on a payload of `{}`",
                        self.name
                    ))
                }
                _ => {}
            }
        }
        None
    }

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
