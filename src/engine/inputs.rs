//! Flow inputs supplied at each run.

use crate::ir::Program;
use crate::layout::Layout;
use crate::state::RunState;
use crate::types::Type;
use crate::value::Scalar;

/// Values for a flow's inputs, by name.
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
    #[error("missing flow input `{0}`")]
    Missing(String),
    #[error("flow input `{name}` is {expected}, but {found} was given")]
    WrongType {
        name: String,
        expected: Type,
        found: Type,
    },
    #[error("the flow has no input `{0}`")]
    Unknown(String),
}

impl Inputs {
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Sets an input (replacing an earlier value of the same name).
    pub fn set(mut self, name: &str, value: impl Into<Scalar>) -> Inputs {
        self.insert(name, value.into());
        self
    }

    pub fn insert(&mut self, name: &str, value: Scalar) {
        match self.values.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.values.push((name.to_string(), value)),
        }
    }

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
