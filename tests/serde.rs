//! serde support (feature `serde`): a payload deserialized into Rust types, and the JSON form of
//! SPEC 6 from `Serialize`. Run with `cargo test --features serde --test serde`.

use koru_jit::{
    from_value, CompileOptions, Engine, Inputs, Outcome, Payload, Registry, Reply, RunLimits,
    Scalar, Value, ValueError,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn engine() -> Engine {
    let mut registry = Registry::new();
    registry
        .event(
            "~event user { id: i64 } | found { name: []const u8, age: i64, score: f64, admin: bool } | missing | banned []const u8",
            |id: i64| match id {
                1 => Reply::branch("found")
                    .field("name", "ada")
                    .field("age", 36i64)
                    .field("score", 9.5)
                    .field("admin", true),
                2 => Reply::branch("banned").value("spam"),
                _ => Reply::branch("missing"),
            },
        )
        .unwrap();
    registry.event("~event count {} | n i64", || 12i64).unwrap();
    Engine::new(registry)
}

fn outcome(source: &str) -> Outcome {
    engine()
        .compile("t", source, &CompileOptions::default())
        .unwrap()
        .run(&Inputs::new(), &RunLimits::default())
        .unwrap()
}

fn value(source: &str) -> Value {
    outcome(source).value().cloned().unwrap()
}

#[derive(Deserialize, Serialize, Debug, PartialEq)]
struct User {
    name: String,
    age: i64,
    score: f64,
    admin: bool,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Borrowed<'a> {
    name: &'a str,
    /// Fields the struct does not name are ignored, as serde does by default.
    age: i64,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Lookup {
    Found { name: String, age: i64 },
    Banned(String),
    Missing,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Count(i64);

#[test]
fn a_struct_payload_deserializes_into_a_struct() {
    let value = value("~user(id: 1)");
    let user: User = value.deserialize().unwrap();
    assert_eq!(
        user,
        User {
            name: "ada".into(),
            age: 36,
            score: 9.5,
            admin: true
        }
    );
    let borrowed: Borrowed = from_value(&value).unwrap();
    assert_eq!(
        borrowed,
        Borrowed {
            name: "ada",
            age: 36
        }
    );
    let map: std::collections::BTreeMap<String, serde_json::Value> = value.deserialize().unwrap();
    assert_eq!(map.len(), 4);
    assert_eq!(map["age"], 36);
}

#[test]
fn identity_and_empty_payloads_deserialize_into_scalars_newtypes_units_and_options() {
    let count = value("~count()");
    assert_eq!(count.deserialize::<i64>(), Ok(12));
    assert_eq!(count.deserialize::<Count>(), Ok(Count(12)));
    assert_eq!(count.deserialize::<Option<i64>>(), Ok(Some(12)));
    let missing = value("~user(id: 3)");
    assert_eq!(missing.deserialize::<()>(), Ok(()));
    assert_eq!(missing.deserialize::<Option<i64>>(), Ok(None));
}

#[test]
fn an_enum_reads_the_branch_as_its_variant() {
    assert_eq!(
        value("~user(id: 1)").deserialize::<Lookup>(),
        Ok(Lookup::Found {
            name: "ada".into(),
            age: 36
        })
    );
    assert_eq!(
        value("~user(id: 2)").deserialize::<Lookup>(),
        Ok(Lookup::Banned("spam".into()))
    );
    assert_eq!(
        value("~user(id: 3)").deserialize::<Lookup>(),
        Ok(Lookup::Missing)
    );
}

#[test]
fn a_payload_that_does_not_fit_is_a_deserialize_error_naming_the_branch() {
    let found = value("~user(id: 1)");
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Needs {
        name: String,
        email: String,
    }
    let error = found.deserialize::<Needs>().unwrap_err();
    assert_eq!(
        error,
        ValueError::Deserialize {
            branch: Arc::from("found"),
            message: "missing field `email`".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "cannot deserialize branch `found`: missing field `email`"
    );
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Mistyped {
        age: String,
    }
    let ValueError::Deserialize { message, .. } = found.deserialize::<Mistyped>().unwrap_err()
    else {
        panic!()
    };
    assert_eq!(message, "invalid type: integer `36`, expected a string");
    assert!(value("~count()").deserialize::<User>().is_err());
    // A branch the enum does not name, and a unit variant for a branch with a payload.
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    enum Other {
        Elsewhere,
    }
    let ValueError::Deserialize { message, .. } =
        value("~user(id: 3)").deserialize::<Other>().unwrap_err()
    else {
        panic!()
    };
    assert!(
        message.starts_with("unknown variant `missing`"),
        "{message}"
    );
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    #[serde(rename_all = "lowercase")]
    enum Unit {
        Banned,
    }
    let ValueError::Deserialize { message, .. } =
        value("~user(id: 2)").deserialize::<Unit>().unwrap_err()
    else {
        panic!()
    };
    assert_eq!(
        message,
        "a unit variant needs an empty payload, but the branch carries str"
    );
}

#[test]
fn values_serialize_to_the_json_form_of_spec_6() {
    let cases = [
        (
            "~user(id: 1)",
            r#"{"branch":"found","fields":{"name":"ada","age":36,"score":9.5,"admin":true}}"#,
        ),
        ("~user(id: 2)", r#"{"branch":"banned","value":"spam"}"#),
        ("~user(id: 3)", r#"{"branch":"missing"}"#),
        ("~count()", r#"{"branch":"n","value":12}"#),
    ];
    for (source, expected) in cases {
        assert_eq!(
            serde_json::to_string(&value(source)).unwrap(),
            expected,
            "{source}"
        );
    }
    assert_eq!(
        serde_json::to_string(&outcome("~count()")).unwrap(),
        r#"{"outcome":"ok","value":{"branch":"n","value":12},"fuel":1}"#
    );
    // JSON has no NaN: a non-finite float is null.
    let nan = Payload::Identity(Scalar::Float(f64::NAN));
    assert_eq!(serde_json::to_string(&nan).unwrap(), "null");
    assert_eq!(serde_json::to_string(&Payload::Empty).unwrap(), "null");
}

#[test]
fn outcomes_that_stop_early_serialize_with_their_limit_or_error() {
    let mut registry = Registry::new();
    registry
        .event("~event fail {} | ok", || {
            Err::<Reply, _>(koru_jit::HostError::new("down"))
        })
        .unwrap();
    let flow = Engine::new(registry)
        .compile("t", "~fail()", &CompileOptions::default())
        .unwrap();
    let failed = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    assert_eq!(
        serde_json::to_string(&failed).unwrap(),
        r#"{"outcome":"error","code":"HostError","message":"down","event":"fail","line":1,"column":2,"fuel":1}"#
    );
    let limits = RunLimits {
        fuel: Some(0),
        ..RunLimits::default()
    };
    // Stopped before any event ran: no last event.
    let exhausted = flow.run(&Inputs::new(), &limits).unwrap();
    assert_eq!(
        serde_json::to_string(&exhausted).unwrap(),
        r#"{"outcome":"exhausted","limit":"Fuel","fuel":0,"last_event":null}"#
    );
    let looping = engine()
        .compile(
            "t",
            "~for(0..10)\n| each _ |> count()\n",
            &CompileOptions::default(),
        )
        .unwrap();
    let limits = RunLimits {
        fuel: Some(3),
        ..RunLimits::default()
    };
    let exhausted = looping.run(&Inputs::new(), &limits).unwrap();
    assert_eq!(
        serde_json::to_string(&exhausted).unwrap(),
        r#"{"outcome":"exhausted","limit":"Fuel","fuel":3,"last_event":"count"}"#
    );
}

#[test]
fn a_payload_round_trips_through_a_rust_struct() {
    let value = value("~user(id: 1)");
    let user: User = value.deserialize().unwrap();
    // The struct serializes back to exactly the payload's JSON, fields in declared order.
    assert_eq!(
        serde_json::to_string(&user).unwrap(),
        serde_json::to_string(&value.payload).unwrap()
    );
    let back: User = serde_json::from_str(&serde_json::to_string(&value.payload).unwrap()).unwrap();
    assert_eq!(back, user);
}
