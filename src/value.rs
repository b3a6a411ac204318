//! Values that leave the engine: a branch name and its payload, with the JSON form of SPEC 6.

use std::fmt;
use std::sync::Arc;

/// A scalar of one of the four runtime types.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
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

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scalar::Int(v) => serde_json::Value::from(*v),
            // JSON has no NaN or infinity: those become null.
            Scalar::Float(v) => serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Scalar::Bool(v) => serde_json::Value::from(*v),
            Scalar::Str(v) => serde_json::Value::from(v.as_str()),
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

#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Empty,
    Identity(Scalar),
    /// Fields in declared order.
    Struct(Vec<(Arc<str>, Scalar)>),
}

/// The value of a flow: a branch and its payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub branch: Arc<str>,
    pub payload: Payload,
}

impl Value {
    /// `{"branch":"b"}`, `{"branch":"b","value":V}` or `{"branch":"b","fields":{...}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("branch".into(), serde_json::Value::from(&*self.branch));
        match &self.payload {
            Payload::Empty => {}
            Payload::Identity(v) => {
                object.insert("value".into(), v.to_json());
            }
            Payload::Struct(fields) => {
                let fields = fields
                    .iter()
                    .map(|(name, v)| (name.to_string(), v.to_json()))
                    .collect();
                object.insert("fields".into(), serde_json::Value::Object(fields));
            }
        }
        serde_json::Value::Object(object)
    }

    /// A field of a struct payload, or the identity payload for `""`.
    pub fn field(&self, name: &str) -> Option<&Scalar> {
        match &self.payload {
            Payload::Identity(v) if name.is_empty() => Some(v),
            Payload::Struct(fields) => fields.iter().find(|(n, _)| &**n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}
