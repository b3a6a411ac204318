//! Values that leave the engine: a branch name and its payload, read from Rust with typed
//! getters ([`Value::get`], [`Value::field`]) or, with the `serde` feature, deserialized into a
//! Rust type (`Value::deserialize`).

use crate::types::{PayloadType, Type};
use std::fmt;
use std::sync::Arc;

/// A scalar of one of the four runtime types.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// An `int`.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `bool`.
    Bool(bool),
    /// A `str`.
    Str(String),
}

impl Scalar {
    /// A value written as text, typed by its form: `42` is an int, `4.2` a float, `true` and
    /// `false` are bools, anything else is a str (the command line's `--input` convention).
    pub fn from_text(text: &str) -> Scalar {
        if let Ok(v) = text.parse::<i64>() {
            Scalar::Int(v)
        } else if let Ok(v) = text.parse::<f64>() {
            Scalar::Float(v)
        } else if text == "true" || text == "false" {
            Scalar::Bool(text == "true")
        } else {
            Scalar::Str(text.to_string())
        }
    }

    /// A value written as text, read as type `ty`: an int (`-12`, `+7`), a float (`2.5`, `5`,
    /// `1e3`), `true` or `false`, or, for `str`, the text exactly as written (`01234` stays
    /// `"01234"`). `None` when the text is not a value of that type.
    pub fn parse_as(text: &str, ty: crate::types::Type) -> Option<Scalar> {
        use crate::types::Type;
        match ty {
            Type::Int => text.parse().ok().map(Scalar::Int),
            Type::Float => text.parse().ok().map(Scalar::Float),
            Type::Bool => match text {
                "true" => Some(Scalar::Bool(true)),
                "false" => Some(Scalar::Bool(false)),
                _ => None,
            },
            Type::Str => Some(Scalar::Str(text.to_string())),
        }
    }

    /// This value as a flow input of type `ty`, as [`crate::Flow::run`] converts it: unchanged if
    /// it has that type, an int as a float, and any value as a `str` formatted the way `std.io`
    /// prints it (SPEC 2.1 and 5). `None` for every other pair (a float is not rounded into an
    /// int, nor a text parsed into a number).
    pub fn converted_to(&self, ty: crate::types::Type) -> Option<Scalar> {
        use crate::types::Type;
        match (self, ty) {
            (value, ty) if value.ty() == ty => Some(value.clone()),
            (Scalar::Int(v), Type::Float) => Some(Scalar::Float(*v as f64)),
            (value, Type::Str) => Some(Scalar::Str(value.to_string())),
            _ => None,
        }
    }

    /// The scalar's runtime type.
    pub fn ty(&self) -> crate::types::Type {
        match self {
            Scalar::Int(_) => crate::types::Type::Int,
            Scalar::Float(_) => crate::types::Type::Float,
            Scalar::Bool(_) => crate::types::Type::Bool,
            Scalar::Str(_) => crate::types::Type::Str,
        }
    }
}

impl fmt::Display for Scalar {
    /// How `std.io` prints values (SPEC 5).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(v) => write!(f, "{v}"),
            Scalar::Float(v) => write!(f, "{v}"),
            Scalar::Bool(v) => write!(f, "{v}"),
            Scalar::Str(v) => f.write_str(v),
        }
    }
}

impl From<i64> for Scalar {
    fn from(v: i64) -> Self {
        Scalar::Int(v)
    }
}
impl From<f64> for Scalar {
    fn from(v: f64) -> Self {
        Scalar::Float(v)
    }
}
impl From<bool> for Scalar {
    fn from(v: bool) -> Self {
        Scalar::Bool(v)
    }
}
impl From<&str> for Scalar {
    fn from(v: &str) -> Self {
        Scalar::Str(v.to_string())
    }
}
impl From<String> for Scalar {
    fn from(v: String) -> Self {
        Scalar::Str(v)
    }
}

/// The payload of a branch (SPEC 1.1): none, a single value (an *identity* payload, such as
/// `| sum i64`), or named fields (`| found { name: []const u8 }`).
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// No payload (`| done`, or a void event's result).
    Empty,
    /// A single value.
    Identity(Scalar),
    /// Fields in declared order.
    Struct(Vec<(Arc<str>, Scalar)>),
}

/// The value of a flow (SPEC 2.5): a branch and its payload, read with the typed getters
/// [`Value::get`] and [`Value::field`] (or, with the `serde` feature, `Value::deserialize`).
///
/// ```
/// use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits};
/// let mut registry = Registry::new();
/// registry
///     .event("~event users.get { id: i64 } | found { name: []const u8, age: i64 }", |_id: i64| {
///         koru_jit::Reply::branch("found").field("name", "ada").field("age", 36)
///     })
///     .unwrap();
/// let engine = Engine::new(registry);
/// let flow = engine.compile("get", "~users.get(id: 1)", &CompileOptions::default()).unwrap();
/// let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
/// let value = outcome.value().unwrap();
/// assert_eq!(&*value.branch, "found");
/// assert_eq!(value.field::<&str>("name").unwrap(), "ada");
/// assert_eq!(value.field::<i64>("age").unwrap(), 36);
/// assert!(value.field::<bool>("age").is_err()); // an int, not a bool
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// The branch name (`""` for a void event's result).
    pub branch: Arc<str>,
    /// The branch's payload.
    pub payload: Payload,
}

impl Payload {
    /// The payload's type: what [`ValueError`] reports as found.
    pub fn ty(&self) -> PayloadType {
        match self {
            Payload::Empty => PayloadType::Empty,
            Payload::Identity(v) => PayloadType::Identity(v.ty()),
            Payload::Struct(fields) => PayloadType::Struct(
                fields
                    .iter()
                    .map(|(name, v)| (name.clone(), v.ty()))
                    .collect(),
            ),
        }
    }
}

impl Value {
    /// The identity payload (a branch such as `| sum i64`) as a Rust value.
    ///
    /// ```
    /// use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits, ValueError};
    /// let mut registry = Registry::new();
    /// registry.event("~event add { a: i64, b: i64 } | sum i64", |a: i64, b: i64| a + b).unwrap();
    /// let flow = Engine::new(registry)
    ///     .compile("add", "~add(a: 1, b: 2)", &CompileOptions::default())
    ///     .unwrap();
    /// let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    /// let value = outcome.value().unwrap();
    /// assert_eq!(value.get::<i64>(), Ok(3));
    /// assert!(matches!(value.get::<&str>(), Err(ValueError::WrongType { .. })));
    /// ```
    ///
    /// # Errors
    /// [`ValueError::NotAValue`] if the payload is empty or a struct, [`ValueError::WrongType`]
    /// if the value is not of `T`'s type ([`FromScalar::TYPE`]: no conversion between types).
    pub fn get<'a, T: FromScalar<'a>>(&'a self) -> Result<T, ValueError> {
        match &self.payload {
            Payload::Identity(scalar) => self.convert(scalar, None),
            other => Err(ValueError::NotAValue {
                branch: self.branch.clone(),
                payload: other.ty(),
            }),
        }
    }

    /// Field `name` of a struct payload (a branch such as `| found { name: []const u8 }`) as a
    /// Rust value: `value.field::<&str>("name")`.
    ///
    /// # Errors
    /// [`ValueError::NotAStruct`] if the payload is empty or a single value,
    /// [`ValueError::MissingField`] if the struct has no field `name`, [`ValueError::WrongType`]
    /// if the field is not of `T`'s type.
    pub fn field<'a, T: FromScalar<'a>>(&'a self, name: &str) -> Result<T, ValueError> {
        let Payload::Struct(fields) = &self.payload else {
            return Err(ValueError::NotAStruct {
                branch: self.branch.clone(),
                payload: self.payload.ty(),
            });
        };
        match fields.iter().find(|(n, _)| &**n == name) {
            Some((field, scalar)) => self.convert(scalar, Some(field)),
            None => Err(ValueError::MissingField {
                branch: self.branch.clone(),
                field: name.to_string(),
                payload: self.payload.ty(),
            }),
        }
    }

    fn convert<'a, T: FromScalar<'a>>(
        &self,
        scalar: &'a Scalar,
        field: Option<&Arc<str>>,
    ) -> Result<T, ValueError> {
        T::from_scalar(scalar).ok_or_else(|| ValueError::WrongType {
            branch: self.branch.clone(),
            field: field.cloned(),
            expected: T::TYPE,
            found: scalar.ty(),
        })
    }
}

/// A Rust type a [`Scalar`] converts to, for [`Value::get`] and [`Value::field`]: `i64` (an
/// `int`), `f64` (a `float`), `bool`, and `&str` or `String` (a `str`).
///
/// The conversion is exact: an `int` is not read as an `f64`, nor a `str` holding digits as an
/// `i64` (flows are typed: the declared type of a branch's payload says which getter fits).
pub trait FromScalar<'a>: Sized {
    /// The runtime type this Rust type reads.
    const TYPE: Type;

    /// The value, or `None` if `scalar` is not of type [`FromScalar::TYPE`].
    fn from_scalar(scalar: &'a Scalar) -> Option<Self>;
}

impl FromScalar<'_> for i64 {
    const TYPE: Type = Type::Int;
    fn from_scalar(scalar: &Scalar) -> Option<Self> {
        match scalar {
            Scalar::Int(v) => Some(*v),
            _ => None,
        }
    }
}

impl FromScalar<'_> for f64 {
    const TYPE: Type = Type::Float;
    fn from_scalar(scalar: &Scalar) -> Option<Self> {
        match scalar {
            Scalar::Float(v) => Some(*v),
            _ => None,
        }
    }
}

impl FromScalar<'_> for bool {
    const TYPE: Type = Type::Bool;
    fn from_scalar(scalar: &Scalar) -> Option<Self> {
        match scalar {
            Scalar::Bool(v) => Some(*v),
            _ => None,
        }
    }
}

impl<'a> FromScalar<'a> for &'a str {
    const TYPE: Type = Type::Str;
    fn from_scalar(scalar: &'a Scalar) -> Option<Self> {
        match scalar {
            Scalar::Str(v) => Some(v),
            _ => None,
        }
    }
}

impl FromScalar<'_> for String {
    const TYPE: Type = Type::Str;
    fn from_scalar(scalar: &Scalar) -> Option<Self> {
        match scalar {
            Scalar::Str(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// Why a [`Value`] could not be read as the Rust type asked for. Every variant names the branch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value (or field) has another runtime type than the one asked for.
    #[error("{} is {found}, not {expected}", subject(branch, field.as_deref()))]
    WrongType {
        /// The value's branch.
        branch: Arc<str>,
        /// The field read, `None` for an identity payload.
        field: Option<Arc<str>>,
        /// The type asked for.
        expected: Type,
        /// The value's type.
        found: Type,
    },
    /// [`Value::field`] on a struct payload without that field.
    #[error("branch `{branch}` has no field `{field}`: it carries {payload}")]
    MissingField {
        /// The value's branch.
        branch: Arc<str>,
        /// The field asked for.
        field: String,
        /// The payload's type, with the fields it has.
        payload: PayloadType,
    },
    /// [`Value::field`] on an empty or identity payload.
    #[error(
        "branch `{branch}` carries {payload}, not a struct{}",
        hint(payload, "get")
    )]
    NotAStruct {
        /// The value's branch.
        branch: Arc<str>,
        /// The payload's type.
        payload: PayloadType,
    },
    /// [`Value::get`] on an empty or struct payload.
    #[error(
        "branch `{branch}` carries {payload}, not a single value{}",
        hint(payload, "field")
    )]
    NotAValue {
        /// The value's branch.
        branch: Arc<str>,
        /// The payload's type.
        payload: PayloadType,
    },
    /// `Value::deserialize` failed (feature `serde`): the message is serde's (a missing or
    /// mistyped field of the target type, an unknown branch of a target enum, ...).
    #[error("cannot deserialize branch `{branch}`: {message}")]
    Deserialize {
        /// The value's branch.
        branch: Arc<str>,
        /// What serde reported.
        message: String,
    },
}

fn subject(branch: &str, field: Option<&str>) -> String {
    match field {
        Some(field) => format!("field `{field}` of branch `{branch}`"),
        None => format!("the value of branch `{branch}`"),
    }
}

/// Which getter fits a payload the one called does not.
fn hint(payload: &PayloadType, other: &str) -> String {
    match (payload, other) {
        (PayloadType::Identity(_), "get") | (PayloadType::Struct(_), "field") => {
            format!(" (read it with `Value::{other}`)")
        }
        _ => String::new(),
    }
}

#[cfg(feature = "serde")]
impl Value {
    /// The payload deserialized into `T` (feature `serde`): a struct payload into a struct with
    /// those fields (or a map), an identity payload into its scalar type (or a newtype), an
    /// empty payload into `()` or `None`. A Rust enum reads the whole value, its variants named
    /// after the branches: a unit variant for an empty payload, a newtype variant for an
    /// identity payload, a struct variant for a struct payload.
    ///
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// use koru_jit::{CompileOptions, Engine, Inputs, Registry, Reply, RunLimits};
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct User<'a> { name: &'a str, age: i64 }
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// #[serde(rename_all = "lowercase")]
    /// enum Lookup { Found { name: String, age: i64 }, Missing }
    ///
    /// let mut registry = Registry::new();
    /// registry
    ///     .event(
    ///         "~event users.get { id: i64 } | found { name: []const u8, age: i64 } | missing",
    ///         |id: i64| match id {
    ///             1 => Reply::branch("found").field("name", "ada").field("age", 36),
    ///             _ => Reply::branch("missing"),
    ///         },
    ///     )
    ///     .unwrap();
    /// let engine = Engine::new(registry);
    /// let flow = engine.compile("get", "~users.get(id: 1)", &CompileOptions::default()).unwrap();
    /// let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    /// let value = outcome.value().unwrap();
    /// assert_eq!(value.deserialize::<User>().unwrap(), User { name: "ada", age: 36 });
    /// assert_eq!(
    ///     value.deserialize::<Lookup>().unwrap(),
    ///     Lookup::Found { name: "ada".into(), age: 36 }
    /// );
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ValueError::Deserialize`] with serde's message when the payload does not fit `T`.
    pub fn deserialize<'de, T: serde::Deserialize<'de>>(&'de self) -> Result<T, ValueError> {
        T::deserialize(serde_impl::ValueDeserializer(self)).map_err(|e| ValueError::Deserialize {
            branch: self.branch.clone(),
            message: e.0,
        })
    }
}

/// [`Value::deserialize`] as a function, in the style of `serde_json::from_value` (feature
/// `serde`).
///
/// # Errors
/// As [`Value::deserialize`].
#[cfg(feature = "serde")]
pub fn from_value<'de, T: serde::Deserialize<'de>>(value: &'de Value) -> Result<T, ValueError> {
    value.deserialize()
}

/// serde support (feature `serde`). Serialization gives the JSON form of SPEC 6: a [`Scalar`]
/// is the bare value, a [`Payload`] is unit, the value or a map of its fields in declared
/// order, a [`Value`] is `{"branch": b}` with `"value"` or `"fields"`.
#[cfg(feature = "serde")]
mod serde_impl {
    use super::{Payload, Scalar, Value};
    use serde::de::{self, Deserializer as _, Visitor};
    use serde::ser::{SerializeMap, Serializer};
    use serde::Serialize;
    use std::fmt;

    impl Serialize for Scalar {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self {
                Scalar::Int(v) => serializer.serialize_i64(*v),
                Scalar::Float(v) => serializer.serialize_f64(*v),
                Scalar::Bool(v) => serializer.serialize_bool(*v),
                Scalar::Str(v) => serializer.serialize_str(v),
            }
        }
    }

    /// The fields of a struct payload as a map, in declared order.
    struct Fields<'a>(&'a [(std::sync::Arc<str>, Scalar)]);

    impl Serialize for Fields<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(self.0.len()))?;
            for (name, value) in self.0 {
                map.serialize_entry(&**name, value)?;
            }
            map.end()
        }
    }

    impl Serialize for Payload {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self {
                Payload::Empty => serializer.serialize_unit(),
                Payload::Identity(v) => v.serialize(serializer),
                Payload::Struct(fields) => Fields(fields).serialize(serializer),
            }
        }
    }

    impl Serialize for Value {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let len = if matches!(self.payload, Payload::Empty) {
                1
            } else {
                2
            };
            let mut map = serializer.serialize_map(Some(len))?;
            map.serialize_entry("branch", &*self.branch)?;
            match &self.payload {
                Payload::Empty => {}
                Payload::Identity(v) => map.serialize_entry("value", v)?,
                Payload::Struct(fields) => map.serialize_entry("fields", &Fields(fields))?,
            }
            map.end()
        }
    }

    /// The deserialization error; [`Value::deserialize`] adds the branch.
    #[derive(Debug)]
    pub(super) struct Error(pub(super) String);

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    impl de::Error for Error {
        fn custom<T: fmt::Display>(message: T) -> Self {
            Error(message.to_string())
        }
    }

    /// One scalar, borrowed from the value (so `&str` fields borrow too).
    struct ScalarDeserializer<'de>(&'de Scalar);

    impl<'de> de::Deserializer<'de> for ScalarDeserializer<'de> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Scalar::Int(v) => visitor.visit_i64(*v),
                Scalar::Float(v) => visitor.visit_f64(*v),
                Scalar::Bool(v) => visitor.visit_bool(*v),
                Scalar::Str(v) => visitor.visit_borrowed_str(v),
            }
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_some(self)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        /// A `str` names a unit variant of a Rust enum.
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            match self.0 {
                Scalar::Str(v) => {
                    let text = de::value::BorrowedStrDeserializer::<'de, Error>::new(v);
                    de::Deserializer::deserialize_enum(text, name, variants, visitor)
                }
                _ => self.deserialize_any(visitor),
            }
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
            ignored_any
        }
    }

    /// The fields of a struct payload, as a map.
    struct FieldsAccess<'de> {
        fields: std::slice::Iter<'de, (std::sync::Arc<str>, Scalar)>,
        value: Option<&'de Scalar>,
    }

    impl<'de> FieldsAccess<'de> {
        fn new(fields: &'de [(std::sync::Arc<str>, Scalar)]) -> Self {
            FieldsAccess {
                fields: fields.iter(),
                value: None,
            }
        }
    }

    impl<'de> de::MapAccess<'de> for FieldsAccess<'de> {
        type Error = Error;

        fn next_key_seed<K: de::DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            match self.fields.next() {
                Some((name, value)) => {
                    self.value = Some(value);
                    let name = de::value::BorrowedStrDeserializer::<'de, Error>::new(name);
                    seed.deserialize(name).map(Some)
                }
                None => Ok(None),
            }
        }

        fn next_value_seed<V: de::DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, Error> {
            match self.value.take() {
                Some(value) => seed.deserialize(ScalarDeserializer(value)),
                None => Err(de::Error::custom(
                    "a map value was asked for before its key",
                )),
            }
        }

        fn size_hint(&self) -> Option<usize> {
            Some(self.fields.len())
        }
    }

    /// A payload: unit, one scalar or a map.
    struct PayloadDeserializer<'de>(&'de Payload);

    impl<'de> de::Deserializer<'de> for PayloadDeserializer<'de> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Payload::Empty => visitor.visit_unit(),
                Payload::Identity(v) => ScalarDeserializer(v).deserialize_any(visitor),
                Payload::Struct(fields) => visitor.visit_map(FieldsAccess::new(fields)),
            }
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Payload::Empty => visitor.visit_none(),
                _ => visitor.visit_some(self),
            }
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            match self.0 {
                Payload::Identity(v) => {
                    ScalarDeserializer(v).deserialize_enum(name, variants, visitor)
                }
                _ => self.deserialize_any(visitor),
            }
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
            ignored_any
        }
    }

    /// A whole value: its payload, or for a Rust enum, the branch as the variant.
    pub(super) struct ValueDeserializer<'de>(pub(super) &'de Value);

    impl<'de> de::Deserializer<'de> for ValueDeserializer<'de> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            PayloadDeserializer(&self.0.payload).deserialize_any(visitor)
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            PayloadDeserializer(&self.0.payload).deserialize_option(visitor)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            PayloadDeserializer(&self.0.payload).deserialize_newtype_struct(name, visitor)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_enum(self)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
            ignored_any
        }
    }

    impl<'de> de::EnumAccess<'de> for ValueDeserializer<'de> {
        type Error = Error;
        type Variant = Self;

        fn variant_seed<V: de::DeserializeSeed<'de>>(
            self,
            seed: V,
        ) -> Result<(V::Value, Self), Error> {
            let branch = de::value::BorrowedStrDeserializer::<'de, Error>::new(&self.0.branch);
            Ok((seed.deserialize(branch)?, self))
        }
    }

    impl<'de> de::VariantAccess<'de> for ValueDeserializer<'de> {
        type Error = Error;

        fn unit_variant(self) -> Result<(), Error> {
            match &self.0.payload {
                Payload::Empty => Ok(()),
                other => Err(de::Error::custom(format!(
                    "a unit variant needs an empty payload, but the branch carries {}",
                    other.ty()
                ))),
            }
        }

        fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
            self,
            seed: T,
        ) -> Result<T::Value, Error> {
            seed.deserialize(PayloadDeserializer(&self.0.payload))
        }

        fn tuple_variant<V: Visitor<'de>>(
            self,
            _len: usize,
            _visitor: V,
        ) -> Result<V::Value, Error> {
            Err(de::Error::custom(
                "a payload is never a tuple: use a struct variant or a newtype variant",
            ))
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            _fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            PayloadDeserializer(&self.0.payload).deserialize_any(visitor)
        }
    }
}

#[cfg(feature = "json")]
impl Value {
    /// The JSON form of SPEC 6, as the command line and the server print it. Hidden from the
    /// docs: it is their wire format, not embedder API (embedders serialize a [`Value`] with the
    /// `serde` feature and the serializer of their choice).
    #[doc(hidden)]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a value serializes to JSON: its map keys are strings")
    }
}
