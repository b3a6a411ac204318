//! Flow inputs supplied at each run.

use crate::ir::Program;
use crate::layout::Layout;
use crate::state::RunState;
use crate::types::Type;
use crate::value::Scalar;

/// Values for a flow's inputs, by name: every input the flow was compiled with
/// ([`CompileOptions::input`](crate::CompileOptions::input)) must be given, with its type.
///
/// ```
/// use koru_jit::{CompileOptions, Engine, InputError, Inputs, Registry, RunLimits, Scalar, Type};
/// let mut registry = Registry::new();
/// registry.event("~event greet { name: []const u8, times: i64 } | ok", |_: &str, _: i64| ()).unwrap();
/// let flow = Engine::new(registry)
///     .compile(
///         "greet",
///         "~greet(name: who, times: n)",
///         &CompileOptions::default().input("who", Type::Str).input("n", Type::Int),
///     )
///     .unwrap();
/// let mut inputs = Inputs::new().set("who", "ada");
/// assert_eq!(
///     flow.run(&inputs, &RunLimits::default()).unwrap_err(),
///     InputError::Missing("n".into())
/// );
/// inputs.insert("n", Scalar::Int(2));
/// assert_eq!(inputs.get("n"), Some(&Scalar::Int(2)));
/// assert!(flow.run(&inputs, &RunLimits::default()).is_ok());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    values: Vec<(String, Scalar)>,
}

/// A run was given inputs that do not match the ones the flow was compiled with: one it
/// declares is missing, one has a value that does not convert to its type (see
/// [`Scalar::converted_to`]: an int converts to a float, any value to a `str`), or one it does
/// not declare is given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// An input of the flow was not given.
    #[error("missing flow input `{0}`")]
    Missing(String),
    /// An input was given a value of another type.
    #[error("flow input `{name}` is {expected}, but {found} was given")]
    WrongType {
        /// The input.
        name: String,
        /// Its declared type.
        expected: Type,
        /// The type of the value given.
        found: Type,
    },
    /// A value was given for a name that is no input of the flow.
    #[error("the flow has no input `{0}`")]
    Unknown(String),
}

impl Inputs {
    /// No inputs.
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Sets an input (replacing an earlier value of the same name).
    pub fn set(mut self, name: &str, value: impl Into<Scalar>) -> Inputs {
        self.insert(name, value.into());
        self
    }

    /// Sets an input in place (replacing an earlier value of the same name).
    pub fn insert(&mut self, name: &str, value: Scalar) {
        match self.values.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.values.push((name.to_string(), value)),
        }
    }

    /// The value given for `name`.
    pub fn get(&self, name: &str) -> Option<&Scalar> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Writes the inputs into the flow state (a `str` is copied into the input's buffer).
    pub(crate) fn write(
        &self,
        program: &Program,
        layout: &Layout,
        state: &mut RunState,
    ) -> Result<(), InputError> {
        if let Some((name, _)) = self
            .values
            .iter()
            .find(|(n, _)| !program.inputs.iter().any(|i| *i.name == **n))
        {
            return Err(InputError::Unknown(name.clone()));
        }
        for input in &program.inputs {
            let value = self
                .get(&input.name)
                .ok_or_else(|| InputError::Missing(input.name.to_string()))?;
            let slot = layout.slot(input.local);
            let offset = slot.offset as usize;
            // The conversions of `Scalar::converted_to`, made in place: nothing is allocated
            // once the input's buffer has grown to its text.
            state.frame[offset] = match (value, input.ty) {
                (Scalar::Int(v), Type::Int) => *v as u64,
                (Scalar::Float(v), Type::Float) => v.to_bits(),
                (Scalar::Int(v), Type::Float) => (*v as f64).to_bits(),
                (Scalar::Bool(v), Type::Bool) => u64::from(*v),
                (value, Type::Str) => {
                    let buffer = &mut state.buffers[slot.buffer as usize];
                    buffer.clear();
                    match value {
                        Scalar::Str(text) => buffer.push_str(text),
                        other => {
                            use std::fmt::Write;
                            let _ = write!(buffer, "{other}");
                        }
                    }
                    state.frame[offset + 1] = buffer.len() as u64;
                    buffer.as_ptr() as u64
                }
                (value, expected) => {
                    return Err(InputError::WrongType {
                        name: input.name.to_string(),
                        expected,
                        found: value.ty(),
                    })
                }
            };
        }
        Ok(())
    }
}
