//! koru-jit (work in progress)
pub mod diag;
pub mod host;
pub mod ir;
pub mod limits;
pub mod sema;
pub mod span;
pub mod syntax;
pub mod types;
pub mod value;
pub use host::{Registry, Reply};
