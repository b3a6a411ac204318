//! Results from Rust: the typed getters of `Value` (every error case) and the registration-time
//! check of replies whose type the closure's return type fixes.

use koru_jit::{
    Args, CompileOptions, Engine, ErrorCode, HostError, Inputs, Outcome, Payload, PayloadType,
    Registry, RegistryError, Reply, ReplyValue, RunLimits, Scalar, Type, Value, ValueError,
};
use std::sync::Arc;

/// The value of `source` run against `registry`.
fn value_of(registry: Registry, source: &str) -> Value {
    let flow = Engine::new(registry)
        .compile("t", source, &CompileOptions::default())
        .unwrap();
    let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    match outcome {
        Outcome::Ok {
            value: Some(value), ..
        } => value,
        other => panic!("{source}: {other:?}"),
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.event("~event int {} | v i64", || 42i64).unwrap();
    registry
        .event("~event float {} | v f64", || 2.5f64)
        .unwrap();
    registry.event("~event flag {} | v bool", || true).unwrap();
    registry
        .event("~event text {} | v []const u8", || "koru")
        .unwrap();
    registry
        .event(
            "~event record {} | r { n: i64, x: f64, ok: bool, name: []const u8 }",
            || {
                Reply::branch("r")
                    .field("n", 7i64)
                    .field("x", 0.5)
                    .field("ok", false)
                    .field("name", "ada")
            },
        )
        .unwrap();
    registry.event("~event nothing {} | done", || ()).unwrap();
    registry
}

#[test]
fn identity_payloads_read_as_their_rust_type() {
    assert_eq!(value_of(registry(), "~int()").get::<i64>(), Ok(42));
    assert_eq!(value_of(registry(), "~float()").get::<f64>(), Ok(2.5));
    assert_eq!(value_of(registry(), "~flag()").get::<bool>(), Ok(true));
    let text = value_of(registry(), "~text()");
    assert_eq!(text.get::<&str>(), Ok("koru"));
    assert_eq!(text.get::<String>(), Ok("koru".to_string()));
}

#[test]
fn struct_fields_read_as_their_rust_type() {
    let value = value_of(registry(), "~record()");
    assert_eq!(&*value.branch, "r");
    assert_eq!(value.field::<i64>("n"), Ok(7));
    assert_eq!(value.field::<f64>("x"), Ok(0.5));
    assert_eq!(value.field::<bool>("ok"), Ok(false));
    assert_eq!(value.field::<&str>("name"), Ok("ada"));
    assert_eq!(value.field::<String>("name"), Ok("ada".to_string()));
}

#[test]
fn a_value_of_another_type_is_wrong_type_with_no_conversion() {
    let int = value_of(registry(), "~int()");
    let error = int.get::<f64>().unwrap_err();
    assert_eq!(
        error,
        ValueError::WrongType {
            branch: Arc::from("v"),
            field: None,
            expected: Type::Float,
            found: Type::Int,
        }
    );
    assert_eq!(
        error.to_string(),
        "the value of branch `v` is int, not float"
    );
    // A str of digits is not an int, nor an int a str.
    let text = value_of(registry(), "~text()");
    assert!(matches!(
        text.get::<i64>(),
        Err(ValueError::WrongType {
            expected: Type::Int,
            found: Type::Str,
            ..
        })
    ));
    assert!(matches!(
        int.get::<String>(),
        Err(ValueError::WrongType {
            expected: Type::Str,
            found: Type::Int,
            ..
        })
    ));
    let record = value_of(registry(), "~record()");
    let error = record.field::<&str>("n").unwrap_err();
    assert_eq!(
        error,
        ValueError::WrongType {
            branch: Arc::from("r"),
            field: Some(Arc::from("n")),
            expected: Type::Str,
            found: Type::Int,
        }
    );
    assert_eq!(error.to_string(), "field `n` of branch `r` is int, not str");
    assert!(matches!(
        record.field::<i64>("ok"),
        Err(ValueError::WrongType {
            expected: Type::Int,
            found: Type::Bool,
            ..
        })
    ));
}

#[test]
fn a_missing_field_names_the_fields_there_are() {
    let record = value_of(registry(), "~record()");
    let error = record.field::<i64>("nn").unwrap_err();
    let ValueError::MissingField {
        branch,
        field,
        payload,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((&**branch, field.as_str()), ("r", "nn"));
    assert_eq!(payload, &record.payload.ty());
    assert_eq!(
        error.to_string(),
        "branch `r` has no field `nn`: it carries { n: int, x: float, ok: bool, name: str }"
    );
}

#[test]
fn field_of_a_payload_that_is_not_a_struct() {
    let int = value_of(registry(), "~int()");
    let error = int.field::<i64>("n").unwrap_err();
    assert_eq!(
        error,
        ValueError::NotAStruct {
            branch: Arc::from("v"),
            payload: PayloadType::Identity(Type::Int),
        }
    );
    assert_eq!(
        error.to_string(),
        "branch `v` carries int, not a struct (read it with `Value::get`)"
    );
    let empty = value_of(registry(), "~nothing()");
    let error = empty.field::<i64>("n").unwrap_err();
    assert_eq!(
        error,
        ValueError::NotAStruct {
            branch: Arc::from("done"),
            payload: PayloadType::Empty,
        }
    );
    assert_eq!(
        error.to_string(),
        "branch `done` carries no payload, not a struct"
    );
}

#[test]
fn get_of_a_payload_that_is_not_a_single_value() {
    let record = value_of(registry(), "~record()");
    let error = record.get::<i64>().unwrap_err();
    assert!(matches!(
        &error,
        ValueError::NotAValue { branch, payload: PayloadType::Struct(fields) }
            if &**branch == "r" && fields.len() == 4
    ));
    assert!(
        error
            .to_string()
            .ends_with("not a single value (read it with `Value::field`)"),
        "{error}"
    );
    let empty = value_of(registry(), "~nothing()");
    assert_eq!(
        empty.get::<bool>(),
        Err(ValueError::NotAValue {
            branch: Arc::from("done"),
            payload: PayloadType::Empty,
        })
    );
    // A void event's result: the unnamed branch, no payload.
    let mut registry = Registry::with_std();
    registry.set_output(Arc::new(koru_jit::CaptureSink::new()));
    let void = value_of(registry, "~std.io:println(text: \"x\")");
    assert_eq!(void.payload, Payload::Empty);
    assert_eq!(
        void.get::<&str>().unwrap_err().to_string(),
        "branch `` carries no payload, not a single value"
    );
}

#[test]
fn getters_work_on_values_built_in_rust() {
    let value = Value {
        branch: Arc::from("p"),
        payload: Payload::Struct(vec![(Arc::from("x"), Scalar::Float(1.0))]),
    };
    assert_eq!(value.field::<f64>("x"), Ok(1.0));
    let value = Value {
        branch: Arc::from("s"),
        payload: Payload::Identity(Scalar::from("t")),
    };
    assert_eq!(value.get::<&str>(), Ok("t"));
}

// Registration-time checks of typed replies.

#[test]
fn a_typed_reply_of_the_wrong_type_is_refused_at_registration() {
    let mut registry = Registry::new();
    let error = registry
        .event("~event count {} | n i64", || "three")
        .unwrap_err();
    assert!(
        matches!(
            &error,
            RegistryError::ReplyMismatch { event, branch, declared, returned }
                if event == "count" && branch == "n"
                    && *declared == PayloadType::Identity(Type::Int)
                    && *returned == PayloadType::Identity(Type::Str)
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "branch `n` of event `count` carries int, but the implementation returns str"
    );
    // Nothing was declared: the event can be registered again with a fitting closure.
    registry.event("~event count {} | n i64", || 3i64).unwrap();
}

#[test]
fn a_typed_reply_for_a_struct_or_empty_branch_is_refused() {
    let mut registry = Registry::new();
    let error = registry
        .event("~event user {} | found { name: []const u8 }", || {
            "ada".to_string()
        })
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "branch `found` of event `user` carries { name: str }, but the implementation returns str"
    );
    let error = registry
        .event("~event done {} | ok", || 1.5f64)
        .unwrap_err();
    assert!(matches!(
        error,
        RegistryError::ReplyMismatch {
            declared: PayloadType::Empty,
            returned: PayloadType::Identity(Type::Float),
            ..
        }
    ));
    let error = registry
        .event("~event value {} | v bool", || ())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "branch `v` of event `value` carries bool, but the implementation returns no payload"
    );
    let error = registry
        .event("~event log { text: []const u8 }", |_t: &str| 0i64)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "event `log` is void, but the implementation returns int"
    );
}

#[test]
fn a_typed_reply_for_an_event_of_several_branches_is_refused() {
    let mut registry = Registry::new();
    let error = registry
        .event("~event pick {} | a i64 | b i64", || 1i64)
        .unwrap_err();
    assert!(
        matches!(
            &error,
            RegistryError::ReplyNeedsBranch { event, branches, returned }
                if event == "pick" && branches == &["a", "b"]
                    && *returned == PayloadType::Identity(Type::Int)
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "event `pick` has several branches (`a`, `b`), but the implementation returns int \
         without naming one: return a `Reply::branch(..)`"
    );
    let error = registry
        .event("~event either {} | yes | no", || ())
        .unwrap_err();
    assert!(matches!(error, RegistryError::ReplyNeedsBranch { .. }));
}

#[test]
fn the_check_sees_through_result_and_covers_every_way_to_implement() {
    let mut registry = Registry::new();
    let error = registry
        .event("~event fallible {} | n i64", || Ok::<_, HostError>("x"))
        .unwrap_err();
    assert!(matches!(error, RegistryError::ReplyMismatch { .. }));
    registry
        .event("~event fallible {} | n i64", || Ok::<_, HostError>(1i64))
        .unwrap();
    // `implement` after `declare`.
    registry.declare("~event later {} | n i64").unwrap();
    let error = registry.implement("later", || true).unwrap_err();
    assert!(matches!(error, RegistryError::ReplyMismatch { .. }));
    registry.implement("later", || 2i64).unwrap();
    // `implement_with_args`.
    registry.declare("~event many { a: i64 } | n f64").unwrap();
    let error = registry
        .implement_with_args("many", |args: &Args<'_>| args.int(0))
        .unwrap_err();
    assert!(matches!(
        error,
        RegistryError::ReplyMismatch {
            returned: PayloadType::Identity(Type::Int),
            ..
        }
    ));
    registry
        .implement_with_args("many", |args: &Args<'_>| args.int(0) as f64)
        .unwrap();
    let value = value_of(registry, "~many(a: 4)");
    assert_eq!(value.get::<f64>(), Ok(4.0));
}

#[test]
fn fitting_typed_replies_are_accepted_and_dynamic_ones_are_checked_when_they_return() {
    let mut registry = Registry::new();
    registry.event("~event a {} | n i64", || 1i64).unwrap();
    registry.event("~event b {} | done", || ()).unwrap();
    registry
        .event("~event c { t: []const u8 }", |_t: &str| ())
        .unwrap();
    // The type of a `Reply` or a `ReplyValue` is known only when it returns.
    registry
        .event("~event d {} | n i64", || ReplyValue::from("not an int"))
        .unwrap();
    registry
        .event("~event e {} | n i64", || Reply::branch("n").value(true))
        .unwrap();
    let engine = Engine::new(registry);
    for (source, message) in [
        (
            "~d()",
            "`d` carries int, but the implementation returned a str",
        ),
        (
            "~e()",
            "branch `n` of `e` carries int, but the implementation returned a bool",
        ),
    ] {
        let flow = engine
            .compile("t", source, &CompileOptions::default())
            .unwrap();
        let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
        let Outcome::Error { error, .. } = outcome else {
            panic!("{source}: {outcome:?}")
        };
        assert_eq!(error.code, ErrorCode::HostError);
        assert_eq!(error.message, message);
    }
}
