//! Typed host closures: Rust closures that receive native values (`i64`, `f64`, `bool`, `&str`)
//! and return a [`Reply`] (or anything that converts into one).
//!
//! Arguments travel as machine words in declared input order (a `str` is two words: pointer and
//! length), which is also the shape the JIT's `extern "C"` call shims pass in registers: no
//! argument is ever boxed.

use crate::types::{PayloadType, Type};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A value in a host reply. Built with `From` (`ReplyValue::from(3)`, `"text".into()`); a
/// `'static` string is not copied until the flow needs it.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyValue {
    /// An `int`.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `bool`.
    Bool(bool),
    /// A `str`.
    Str(Cow<'static, str>),
}

impl ReplyValue {
    /// The value's runtime type.
    pub fn ty(&self) -> Type {
        match self {
            ReplyValue::Int(_) => Type::Int,
            ReplyValue::Float(_) => Type::Float,
            ReplyValue::Bool(_) => Type::Bool,
            ReplyValue::Str(_) => Type::Str,
        }
    }
}

macro_rules! reply_value_from {
    ($($t:ty => $variant:ident($conv:expr)),* $(,)?) => {
        $(impl From<$t> for ReplyValue {
            fn from(v: $t) -> Self {
                ReplyValue::$variant($conv(v))
            }
        })*
    };
}
reply_value_from! {
    i64 => Int(|v| v),
    f64 => Float(|v| v),
    bool => Bool(|v| v),
    &'static str => Str(Cow::Borrowed),
    String => Str(Cow::Owned),
    Cow<'static, str> => Str(|v| v),
}

/// Which branch a reply takes.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyBranch {
    /// The event's only branch (or the unnamed branch of a void event).
    Only,
    /// The branch of that name.
    Named(Cow<'static, str>),
}

/// The payload of a [`Reply`].
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyPayload {
    /// No payload.
    Empty,
    /// A single value.
    Identity(ReplyValue),
    /// Named fields, in any order; every declared field must be present. Up to four are kept
    /// inline, so a struct reply does not allocate.
    Struct(SmallVec<[(&'static str, ReplyValue); 4]>),
}

/// What a host implementation returns: a branch of its event and the payload. Checked against
/// the event's declaration when the call returns: a branch it does not declare, a missing field
/// or a value of another type ends the run with `HostError`.
///
/// ```
/// use koru_jit::Reply;
/// let found = Reply::branch("found").field("name", "ada").field("age", 36);
/// let total = Reply::branch("total").value(2.5);
/// let missing = Reply::branch("missing");
/// # let _ = (found, total, missing, Reply::only());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// Which branch.
    pub branch: ReplyBranch,
    /// Its payload.
    pub payload: ReplyPayload,
}

impl Reply {
    /// Branch `name` with an empty payload; add a payload with [`Reply::value`] or [`Reply::field`].
    pub fn branch(name: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            branch: ReplyBranch::Named(name.into()),
            payload: ReplyPayload::Empty,
        }
    }

    /// The event's only branch, with an empty payload (a void event's result).
    pub fn only() -> Reply {
        Reply {
            branch: ReplyBranch::Only,
            payload: ReplyPayload::Empty,
        }
    }

    /// Sets an identity payload.
    pub fn value(mut self, value: impl Into<ReplyValue>) -> Reply {
        self.payload = ReplyPayload::Identity(value.into());
        self
    }

    /// Adds a field of a struct payload.
    pub fn field(mut self, name: &'static str, value: impl Into<ReplyValue>) -> Reply {
        let entry = (name, value.into());
        match &mut self.payload {
            ReplyPayload::Struct(fields) => fields.push(entry),
            _ => {
                let mut fields = SmallVec::new();
                fields.push(entry);
                self.payload = ReplyPayload::Struct(fields);
            }
        }
        self
    }
}

/// An error a host implementation reports; the run ends with `HostError`. One pointer wide,
/// so that a host call's `Result` comes back in registers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
// The box is the point: one pointer wide, where a `String` is three words.
#[allow(clippy::box_collection)]
pub struct HostError(Box<String>);

impl HostError {
    /// An error with `message`, which becomes the run-time error's message.
    pub fn new(message: impl fmt::Display) -> HostError {
        HostError(Box::new(message.to_string()))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_message(self) -> String {
        *self.0
    }
}

impl From<&str> for HostError {
    fn from(message: &str) -> Self {
        HostError::new(message)
    }
}

impl From<String> for HostError {
    fn from(message: String) -> Self {
        HostError(Box::new(message))
    }
}

/// Where a host call's reply goes: the payload locals of the calling site, described by its
/// reply plan. Host implementations never see it directly; [`IntoReply`] writes through it.
pub struct ReplyOut<'a> {
    pub(crate) frame: &'a mut [u64],
    pub(crate) buffers: &'a mut [String],
    pub(crate) plan: &'a ReplyPlan,
    pub(crate) run: RunView<'a>,
}

/// What a host call may see of the run it serves: its output sink (within the output bound)
/// and how many obligations it has opened so far (SPEC 12).
#[derive(Clone, Copy)]
pub(crate) struct RunView<'a> {
    pub output: &'a dyn crate::host::OutputSink,
    pub output_used: &'a std::cell::Cell<u64>,
    pub output_limit: u64,
    pub handles_opened: u64,
}

impl RunView<'_> {
    /// Writes `text` to the run's program output, within what the output bound leaves: the
    /// part past it is dropped (cut at a character boundary), and the next `std.io` write of
    /// the run stops it with `Limit::Output`.
    fn print(&self, text: &str) {
        let room =
            usize::try_from(self.output_limit - self.output_used.get()).unwrap_or(usize::MAX);
        let written = crate::host::prefix_within(text, room);
        if !written.is_empty() {
            self.output.out(written);
        }
        self.output_used
            .set(self.output_used.get() + written.len() as u64);
    }
}

/// For one call site of an event with phantom states (SPEC 12): the payload fields that open a
/// handle, and the arguments that release one.
#[derive(Clone, Debug, Default)]
pub(crate) struct SiteObligations {
    /// (branch, field slot, state index in `Program::obligation_states`).
    pub creates: Vec<(u32, FieldPlan, u32)>,
    /// (input index, its first word among the call's argument words, state index).
    pub releases: Vec<(u32, u32, u32)>,
}

/// For one call site: each branch of the event with the flow-state slots of its payload fields
/// (a void event has one unnamed branch).
#[derive(Clone, Debug)]
pub(crate) struct ReplyPlan {
    pub event: Arc<str>,
    /// Where the call is written, for errors raised while it runs.
    pub span: crate::span::Span,
    /// Inline for events of up to two branches (most have one).
    pub branches: SmallVec<[BranchPlan; 2]>,
    /// For an event with one branch whose payload is a single value: that value's slot.
    pub only_identity: Option<FieldPlan>,
    /// The handles this site opens and releases; `None` for events without phantom states.
    pub obligations: Option<Box<SiteObligations>>,
}

impl ReplyPlan {
    /// The slot of the payload of an event whose one branch carries a single value (see
    /// [`ReplyPlan::only_identity`]).
    pub(crate) fn identity_field(branches: &[BranchPlan]) -> Option<FieldPlan> {
        match branches {
            [BranchPlan {
                payload: PayloadType::Identity(_),
                fields,
                ..
            }] => fields.first().copied(),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct BranchPlan {
    pub name: Arc<str>,
    pub payload: PayloadType,
    /// One per payload field, in declared order (inline up to two).
    pub fields: SmallVec<[FieldPlan; 2]>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldPlan {
    pub ty: Type,
    /// Word offset in the flow state.
    pub offset: u32,
    /// The string buffer of a `str` field.
    pub buffer: u32,
}

impl ReplyOut<'_> {
    #[inline]
    fn store(&mut self, field: FieldPlan, value: &ReplyValue) {
        let offset = field.offset as usize;
        match value {
            ReplyValue::Int(v) => self.frame[offset] = *v as u64,
            ReplyValue::Float(v) => self.frame[offset] = v.to_bits(),
            ReplyValue::Bool(v) => self.frame[offset] = u64::from(*v),
            // A `'static` string outlives every run: point at it, no copy.
            ReplyValue::Str(Cow::Borrowed(text)) => {
                self.frame[offset] = text.as_ptr() as u64;
                self.frame[offset + 1] = text.len() as u64;
            }
            ReplyValue::Str(Cow::Owned(text)) => {
                let buffer = &mut self.buffers[field.buffer as usize];
                buffer.clear();
                buffer.push_str(text);
                self.frame[offset] = buffer.as_ptr() as u64;
                self.frame[offset + 1] = buffer.len() as u64;
            }
        }
    }

    fn only_branch(plan: &ReplyPlan) -> Result<&BranchPlan, HostError> {
        match plan.branches.as_slice() {
            [only] => Ok(only),
            _ => Err(HostError::new(format!(
                "`{}` has several branches; its implementation must name one with Reply::branch",
                plan.event
            ))),
        }
    }

    /// The identity payload of the event's only branch.
    #[inline]
    pub(crate) fn identity(&mut self, value: ReplyValue) -> Result<u32, HostError> {
        match self.plan.only_identity {
            Some(field) if field.ty == value.ty() => {
                self.store(field, &value);
                Ok(0)
            }
            _ => Self::identity_mismatch(self.plan, value.ty()),
        }
    }

    /// [`ReplyOut::identity`] for a number or bool, given as its bits.
    #[inline]
    pub(crate) fn identity_scalar(&mut self, ty: Type, bits: u64) -> Result<u32, HostError> {
        match self.plan.only_identity {
            Some(field) if field.ty == ty => {
                self.frame[field.offset as usize] = bits;
                Ok(0)
            }
            _ => Self::identity_mismatch(self.plan, ty),
        }
    }

    /// Takes the plan, not `self`: a reply's fast path then never lets the `ReplyOut` escape,
    /// and the shim that builds it keeps only the fields the path reads (the typed shims built
    /// and stored all eight words of it on every call).
    #[cold]
    fn identity_mismatch(plan: &ReplyPlan, found: Type) -> Result<u32, HostError> {
        let branch = Self::only_branch(plan)?;
        Err(HostError::new(format!(
            "`{}` carries {}, but the implementation returned a {found}",
            plan.event, branch.payload
        )))
    }

    /// Writes a full reply, checking it against the declaration.
    pub(crate) fn reply(&mut self, reply: &Reply) -> Result<u32, HostError> {
        // A copy of the shared reference, so that `self` can be written while the plan is read.
        let plan: &ReplyPlan = self.plan;
        let event = &plan.event;
        let index = match &reply.branch {
            ReplyBranch::Only => {
                Self::only_branch(plan)?;
                0
            }
            ReplyBranch::Named(name) => plan
                .branches
                .iter()
                .position(|b| *b.name == **name)
                .ok_or_else(|| HostError::new(format!("the implementation of `{event}` returned branch `{name}`, which it does not declare")))?,
        };
        let branch = &plan.branches[index];
        match (&branch.payload, &reply.payload) {
            (PayloadType::Empty, ReplyPayload::Empty) => {}
            (PayloadType::Identity(ty), ReplyPayload::Identity(value)) if value.ty() == *ty => {
                self.store(branch.fields[0], value)
            }
            (PayloadType::Struct(declared), ReplyPayload::Struct(given))
                if given.len() == declared.len() =>
            {
                for (k, (field, ty)) in declared.iter().enumerate() {
                    match given.iter().find(|(n, _)| *n == &**field) {
                        Some((_, value)) if value.ty() == *ty => self.store(branch.fields[k], value),
                        Some((_, value)) => return Err(HostError::new(format!("field `{field}` of `{event}` is {ty}, but the implementation returned a {}", value.ty()))),
                        None => return Err(HostError::new(format!("the implementation of `{event}` did not return field `{field}`"))),
                    }
                }
            }
            (declared, payload) => {
                let found = match payload {
                    ReplyPayload::Empty => "no payload".to_string(),
                    ReplyPayload::Identity(v) => format!("a {}", v.ty()),
                    ReplyPayload::Struct(fields) => format!("{} fields", fields.len()),
                };
                return Err(HostError::new(format!("branch `{}` of `{event}` carries {declared}, but the implementation returned {found}", branch.name)));
            }
        }
        Ok(index as u32)
    }
}

/// What a host closure's return type fixes of its reply before the closure ever runs: the
/// registry checks it against the event's declaration at registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyShape {
    /// Decided by the value returned ([`Reply`], [`ReplyValue`]): checked when the call returns.
    Dynamic,
    /// The event's only branch, with no payload (`()`).
    Empty,
    /// The identity payload of the event's only branch, of this type (`i64`, `f64`, `bool`,
    /// `&'static str`, `String`).
    Identity(Type),
}

/// What a host closure may return: [`Reply`], `()`, `i64`, `f64`, `bool`, `&'static str`,
/// `String`, [`ReplyValue`], or a `Result` of one of them whose error converts into a
/// [`HostError`]. It is written straight into the flow state of the calling site (no
/// intermediate copy), and the branch index is returned.
pub trait IntoReply {
    /// Writes the reply into the calling site's payload slots; returns the branch index.
    fn write_reply(self, out: &mut ReplyOut<'_>) -> Result<u32, HostError>;

    /// What the type fixes of the reply (checked at registration); [`ReplyShape::Dynamic`] by
    /// default.
    fn shape() -> ReplyShape
    where
        Self: Sized,
    {
        ReplyShape::Dynamic
    }
}

impl IntoReply for Reply {
    fn write_reply(self, out: &mut ReplyOut<'_>) -> Result<u32, HostError> {
        out.reply(&self)
    }
}

/// `()` is the empty payload of the event's only branch (or a void event's result).
impl IntoReply for () {
    fn write_reply(self, out: &mut ReplyOut<'_>) -> Result<u32, HostError> {
        out.reply(&Reply::only())
    }

    fn shape() -> ReplyShape {
        ReplyShape::Empty
    }
}

macro_rules! identity_reply {
    ($($t:ty => $shape:expr),*) => {
        $(impl IntoReply for $t {
            /// The identity payload of the event's only branch.
            #[inline]
            fn write_reply(self, out: &mut ReplyOut<'_>) -> Result<u32, HostError> {
                out.identity(self.into())
            }

            fn shape() -> ReplyShape {
                $shape
            }
        })*
    };
}
identity_reply!(
    &'static str => ReplyShape::Identity(Type::Str),
    String => ReplyShape::Identity(Type::Str),
    ReplyValue => ReplyShape::Dynamic
);

macro_rules! scalar_reply {
    ($($t:ty => $ty:expr, $bits:expr);* $(;)?) => {
        $(impl IntoReply for $t {
            /// The identity payload of the event's only branch, stored as its bits.
            #[inline]
            fn write_reply(self, out: &mut ReplyOut<'_>) -> Result<u32, HostError> {
                out.identity_scalar($ty, $bits(self))
            }

            fn shape() -> ReplyShape {
                ReplyShape::Identity($ty)
            }
        })*
    };
}
scalar_reply! {
    i64 => Type::Int, |v: i64| v as u64;
    f64 => Type::Float, f64::to_bits;
    bool => Type::Bool, u64::from;
}

impl<R: IntoReply, E: Into<HostError>> IntoReply for Result<R, E> {
    fn write_reply(self, out: &mut ReplyOut<'_>) -> Result<u32, HostError> {
        self.map_err(Into::into).and_then(|r| r.write_reply(out))
    }

    fn shape() -> ReplyShape {
        R::shape()
    }
}

/// A type-erased host implementation: arguments as words, in declared input order.
pub(crate) type ErasedHostFn =
    Box<dyn Fn(&[u64], &mut ReplyOut<'_>) -> Result<u32, HostError> + Send + Sync>;

/// How generated code passes one argument to a native shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShimArg {
    /// `int`: an `i64` register.
    Int,
    /// `float`: an `f64` register.
    Float,
    /// `bool`: a word register holding 0 or 1.
    Bool,
    /// `str`: a pointer to its (pointer, length) pair of words.
    Str,
}

/// The typed `extern "C"` entry of a host closure, for generated code:
/// `extern "C" fn(env, state, plan, args...) -> u32` returning the branch index, or
/// [`SHIM_FAILED`] after recording a host error or panic in the run state.
#[derive(Clone)]
pub(crate) struct NativeShim {
    pub code: *const u8,
    /// The closure; generated code passes it back as `env`.
    pub env: *const u8,
    /// The arguments in registers; `None` for closures registered with
    /// `implement_with_args`, whose shim takes a pointer to the argument words instead.
    pub args: Option<Vec<ShimArg>>,
    /// Keeps the closure alive as long as the shim can be called.
    _closure: Arc<dyn std::any::Any + Send + Sync>,
}

// SAFETY: `code` is a function pointer and `env` points into `_closure`, which is `Send + Sync`;
// neither is ever written through.
unsafe impl Send for NativeShim {}
// SAFETY: as above.
unsafe impl Sync for NativeShim {}

/// The branch index a shim returns when the call failed (the reason is in the run state).
pub(crate) const SHIM_FAILED: u32 = u32::MAX;

/// A host closure ready for both tiers.
#[doc(hidden)]
pub struct HostClosure {
    pub(crate) erased: ErasedHostFn,
    pub(crate) shim: NativeShim,
}

/// Runs a host call from a shim: catches panics and records failures in the run state.
///
/// # Safety
/// `state` and `plan` must be the pointers generated code received: the live run state of this
/// run and the reply plan of the calling site.
pub(crate) unsafe fn shim_call(
    state: *mut crate::state::RunState,
    plan: *const ReplyPlan,
    call: impl FnOnce(&mut ReplyOut<'_>) -> Result<u32, HostError>,
) -> u32 {
    // SAFETY: guaranteed by the caller; generated code holds no other reference to the run state
    // while the call runs.
    let (state, plan) = unsafe { (&mut *state, &*plan) };
    // SAFETY: `output` is set at the start of the run to a sink that outlives it.
    let output = unsafe { &*state.output };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut out = ReplyOut {
            frame: &mut state.frame,
            buffers: &mut state.buffers,
            plan,
            run: RunView {
                output,
                output_used: std::cell::Cell::from_mut(&mut state.output_used),
                output_limit: state.output_limit,
                handles_opened: state.handles_opened,
            },
        };
        call(&mut out)
    }));
    let (code, message) = match result {
        Ok(Ok(branch)) => match state.record_opened(plan, branch) {
            Ok(()) => return branch,
            Err(error) => {
                state.host_trap = Some(error);
                return SHIM_FAILED;
            }
        },
        Ok(Err(error)) => (crate::outcome::ErrorCode::HostError, error.into_message()),
        Err(panic) => (
            crate::outcome::ErrorCode::HostPanic,
            crate::host::panic_message(&panic),
        ),
    };
    state.host_trap = Some(Box::new(crate::state::TrapError {
        code,
        message,
        event: Some(plan.event.clone()),
        span: plan.span,
    }));
    SHIM_FAILED
}

/// Arguments of a host call, read by position, for closures registered with
/// [`crate::Registry::implement_with_args`] (any number of inputs).
pub struct Args<'a> {
    words: &'a [u64],
    /// Word offset of each input.
    offsets: &'a [usize],
    types: &'a [Type],
    run: RunView<'a>,
}

impl<'a> Args<'a> {
    pub(crate) fn new(
        words: &'a [u64],
        offsets: &'a [usize],
        types: &'a [Type],
        run: RunView<'a>,
    ) -> Args<'a> {
        Args {
            words,
            offsets,
            types,
            run,
        }
    }

    /// How many obligations (SPEC 12) the run calling this has opened so far: a host event
    /// that opens handles can number them per run (`file_1`, `file_2`, ...) with it, whatever
    /// the tier and however many runs share the engine.
    pub fn handles_opened(&self) -> u64 {
        self.run.handles_opened
    }

    /// Writes `text` to the calling run's program output: its output sink, within
    /// `RunLimits::max_output_bytes` (what does not fit is dropped, cut at a character
    /// boundary, and the run's next `std.io` write stops it with `Limit::Output`).
    pub fn print(&self, text: &str) {
        self.run.print(text)
    }

    /// The declared type of input `i`.
    pub fn ty(&self, i: usize) -> Type {
        self.types[i]
    }

    /// How many inputs the event takes.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether the event takes no input.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Input `i` as an `int`. The checker guarantees the declared type; reading an input as
    /// another type gives meaningless bits, never undefined behaviour, except for [`Args::str`].
    pub fn int(&self, i: usize) -> i64 {
        self.words[self.offsets[i]] as i64
    }

    /// Input `i` as a `float` (meaningless bits if it is declared otherwise, as for
    /// [`Args::int`]).
    pub fn float(&self, i: usize) -> f64 {
        f64::from_bits(self.words[self.offsets[i]])
    }

    /// Input `i` as a `bool` (meaningless if it is declared otherwise, as for [`Args::int`]).
    pub fn bool(&self, i: usize) -> bool {
        self.words[self.offsets[i]] != 0
    }

    /// Input `i` as a `str`. Panics if input `i` is not declared `str` (the registry records the
    /// declared types and checks them here).
    pub fn str(&self, i: usize) -> &'a str {
        assert_eq!(
            self.types[i],
            Type::Str,
            "host input {i} is declared {}, not str",
            self.types[i]
        );
        let at = self.offsets[i];
        // SAFETY: `Registry::implement_with_args` only hands out `Args` whose `offsets` were
        // computed from the event's declared inputs, and the assertion above checked that this one
        // is a `str`; the engine writes a valid (pointer, length) pair of UTF-8 text for every `str`
        // input, alive for the whole call.
        unsafe { word_str(self.words[at], self.words[at + 1]) }
    }
}

/// # Safety
/// `ptr` and `len` must describe valid UTF-8 that outlives `'a`.
pub(crate) unsafe fn word_str<'a>(ptr: u64, len: u64) -> &'a str {
    if len == 0 {
        return "";
    }
    // SAFETY: guaranteed by the caller.
    unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr as *const u8, len as usize))
    }
}

/// A Rust closure usable as a host implementation. `Marker` lets one closure type implement the
/// trait for exactly one argument list; users never name it.
pub trait HostFunction<Marker>: Send + Sync + 'static {
    /// The argument types, in order.
    fn arg_types() -> Vec<Type>;
    /// What the return type fixes of the reply.
    fn reply_shape() -> ReplyShape;
    #[doc(hidden)]
    fn into_closure(self) -> HostClosure;
}

#[doc(hidden)]
pub struct Params<T>(std::marker::PhantomData<T>);

macro_rules! kind_type {
    (i64) => {
        i64
    };
    (f64) => {
        f64
    };
    (bool) => {
        bool
    };
    (str) => {
        &str
    };
}

macro_rules! kind_tag {
    (i64) => {
        Type::Int
    };
    (f64) => {
        Type::Float
    };
    (bool) => {
        Type::Bool
    };
    (str) => {
        Type::Str
    };
}

macro_rules! kind_shim_arg {
    (i64) => {
        ShimArg::Int
    };
    (f64) => {
        ShimArg::Float
    };
    (bool) => {
        ShimArg::Bool
    };
    (str) => {
        ShimArg::Str
    };
}

/// The register type of a kind in a shim's signature.
macro_rules! kind_abi {
    (i64) => { i64 };
    (f64) => { f64 };
    (bool) => { u64 };
    (str) => { *const [u64; 2] };
}

macro_rules! read_arg {
    (i64, $w:ident, $i:ident) => {{
        let v = $w[$i] as i64;
        $i += 1;
        v
    }};
    (f64, $w:ident, $i:ident) => {{
        let v = f64::from_bits($w[$i]);
        $i += 1;
        v
    }};
    (bool, $w:ident, $i:ident) => {{
        let v = $w[$i] != 0;
        $i += 1;
        v
    }};
    (str, $w:ident, $i:ident) => {{
        // SAFETY: the registry only accepts this closure for an event whose inputs have exactly
        // these types (checked against `arg_types`), and the engine passes a valid UTF-8
        // (pointer, length) pair for every `str` input, alive for the whole call.
        let v = unsafe { word_str($w[$i], $w[$i + 1]) };
        $i += 2;
        v
    }};
}

/// Turns a shim register back into the closure's argument.
macro_rules! from_abi {
    (i64, $a:ident) => {
        $a
    };
    (f64, $a:ident) => {
        $a
    };
    (bool, $a:ident) => {
        $a != 0
    };
    (str, $a:ident) => {{
        // SAFETY: generated code passes, for a `str` input, a pointer to a live (pointer, length)
        // pair of UTF-8 (a flow-state slot, a literal of the compiled flow or a conversion
        // buffer of the run state).
        unsafe { word_str((*$a)[0], (*$a)[1]) }
    }};
}

macro_rules! host_function {
    ($(($name:ident $kind:ident))*) => {
        impl<F, R> HostFunction<Params<($(kind_type!($kind),)*)>> for F
        where
            F: Fn($(kind_type!($kind)),*) -> R + Send + Sync + 'static,
            R: IntoReply,
        {
            fn arg_types() -> Vec<Type> {
                vec![$(kind_tag!($kind)),*]
            }

            fn reply_shape() -> ReplyShape {
                R::shape()
            }

            #[allow(unused_mut, unused_variables, unused_assignments, clippy::unused_unit)]
            fn into_closure(self) -> HostClosure {
                /// The typed native entry of closures of type `F`.
                ///
                /// # Safety
                /// Called only by generated code, with `env` the closure registered with this
                /// shim, the live run state, the calling site's reply plan, and one argument per
                /// input of the declared types.
                #[allow(clippy::too_many_arguments)]
                unsafe extern "C" fn shim<F, R>(env: *const u8, state: *mut crate::state::RunState, plan: *const ReplyPlan $(, $name: kind_abi!($kind))*) -> u32
                where
                    F: Fn($(kind_type!($kind)),*) -> R,
                    R: IntoReply,
                {
                    // SAFETY: `env` is the `Arc<F>` kept alive by `NativeShim::_closure`.
                    let function = unsafe { &*(env as *const F) };
                    $(let $name = from_abi!($kind, $name);)*
                    // SAFETY: forwarded from the caller's contract.
                    unsafe { shim_call(state, plan, |out| function($($name),*).write_reply(out)) }
                }
                let function = Arc::new(self);
                let erased_function = function.clone();
                let shim = NativeShim {
                    code: shim::<F, R> as *const u8,
                    env: Arc::as_ptr(&function) as *const u8,
                    args: Some(vec![$(kind_shim_arg!($kind)),*]),
                    _closure: function,
                };
                let erased: ErasedHostFn = Box::new(move |words: &[u64], out: &mut ReplyOut<'_>| {
                    let mut i = 0usize;
                    (erased_function)($(read_arg!($kind, words, i)),*).write_reply(out)
                });
                HostClosure { erased, shim }
            }
        }
    };
}

macro_rules! for_each_kind {
    ($m:ident [$($prefix:tt)*] $name:ident) => {
        $m!($($prefix)* ($name i64));
        $m!($($prefix)* ($name f64));
        $m!($($prefix)* ($name bool));
        $m!($($prefix)* ($name str));
    };
}

macro_rules! host_function_2 {
    ($($prefix:tt)*) => { for_each_kind!(host_function [$($prefix)*] a2); };
}

macro_rules! host_function_3 {
    ($($prefix:tt)*) => { for_each_kind!(host_function_2 [$($prefix)*] a1); };
}

host_function!();
for_each_kind!(host_function [] a1);
for_each_kind!(host_function_2 [] a1);
for_each_kind!(host_function_3 [] a0);

/// The native entry of closures registered with `implement_with_args`: arguments as words in
/// memory.
///
/// # Safety
/// As for the typed shims; `args` points to the input words in declared order.
pub(crate) unsafe extern "C" fn args_shim(
    env: *const u8,
    state: *mut crate::state::RunState,
    plan: *const ReplyPlan,
    args: *const u64,
) -> u32 {
    // SAFETY: `env` is the `ArgsClosure` kept alive by the shim's `_closure`.
    let closure = unsafe { &*(env as *const ArgsClosure) };
    // SAFETY: generated code passes as many words as the inputs take.
    let words = unsafe { std::slice::from_raw_parts(args, closure.words) };
    // SAFETY: forwarded from the caller's contract.
    unsafe { shim_call(state, plan, |out| (closure.function)(words, out)) }
}

/// A closure over positional [`Args`], with the number of words its inputs take.
pub(crate) struct ArgsClosure {
    pub function: ErasedHostFn,
    pub words: usize,
}

impl ArgsClosure {
    pub(crate) fn into_closure(self) -> HostClosure {
        let closure = Arc::new(self);
        let for_interp = closure.clone();
        let shim = NativeShim {
            code: args_shim as *const u8,
            env: Arc::as_ptr(&closure) as *const u8,
            args: None,
            _closure: closure,
        };
        HostClosure {
            erased: Box::new(move |words, out| (for_interp.function)(words, out)),
            shim,
        }
    }
}
