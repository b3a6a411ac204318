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

/// A run was given inputs that do not match the ones the flow was compiled with.
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
            if value.ty() != input.ty {
                return Err(InputError::WrongType {
                    name: input.name.to_string(),
                    expected: input.ty,
                    found: value.ty(),
                });
            }
            let slot = layout.slot(input.local);
            let offset = slot.offset as usize;
            state.frame[offset] = match value {
                Scalar::Int(v) => *v as u64,
                Scalar::Float(v) => v.to_bits(),
                Scalar::Bool(v) => u64::from(*v),
                Scalar::Str(text) => {
                    let buffer = &mut state.buffers[slot.buffer as usize];
                    buffer.clear();
                    buffer.push_str(text);
                    state.frame[offset + 1] = buffer.len() as u64;
                    buffer.as_ptr() as u64
                }
            };
        }
        Ok(())
    }
}
