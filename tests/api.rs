//! The embedding API: registry, typed host closures, scopes, libraries, outcomes and output.

use koru_jit::{
    CaptureSink, Code, CompileOptions, Engine, ErrorCode, EventSig, Flow, HostError, InputError,
    Inputs, Limit, Outcome, PayloadType, Registry, RegistryError, Reply, RunLimits, Scalar, Scope,
    Type,
};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

const NESTED_LOOP: &str =
    "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: \"0\", b: i)\n| done |> _\n";

fn compile(registry: Registry, source: &str) -> Flow {
    Engine::new(registry)
        .compile("test", source, &CompileOptions::default())
        .unwrap()
}

fn run(flow: &Flow) -> Outcome {
    flow.run(&Inputs::new(), &RunLimits::default()).unwrap()
}

fn json(outcome: &Outcome) -> String {
    outcome.to_json().to_string()
}

#[test]
fn spec9_nested_loop_from_the_rust_api() {
    let accumulator = Arc::new(AtomicI64::new(0));
    let acc = accumulator.clone();
    let mut registry = Registry::new();
    registry
        .event(
            "~event add { a: []const u8, b: []const u8 } | sum []const u8",
            move |a: &str, b: &str| {
                let sum = a.parse::<i64>().unwrap() + b.parse::<i64>().unwrap();
                acc.fetch_add(sum, Ordering::Relaxed);
                sum.to_string()
            },
        )
        .unwrap();
    let outcome = run(&compile(registry, NESTED_LOOP));
    assert_eq!(accumulator.load(Ordering::Relaxed), 4_950_000);
    assert_eq!(
        json(&outcome),
        r#"{"outcome":"ok","value":{"branch":"done"},"fuel":100000}"#
    );
}

#[test]
fn spec9_produce_consume_from_the_rust_api() {
    let mut registry = Registry::with_std();
    let sink = Arc::new(CaptureSink::new());
    registry.set_output(sink.clone());
    registry
        .event("~event produce {} | value { num: []const u8 }", || {
            Reply::branch("value").field("num", "42")
        })
        .unwrap();
    let source = "~pub event consume { n: []const u8 }\n| echoed { got: []const u8 }\n\n~consume = std.io:print.ln(\"[consume] received n = '{{n:s}}'\")\n    |> echoed { got: n }\n\n~produce() | value v |> consume(n: v.num)\n";
    let outcome = run(&compile(registry, source));
    assert_eq!(sink.take_out(), "[consume] received n = '42'\n");
    let value = outcome.value().unwrap();
    assert_eq!(&*value.branch, "echoed");
    assert_eq!(value.field::<&str>("got"), Ok("42"));
}

#[test]
fn spec9_if_with_a_flow_input_from_the_rust_api() {
    let mut registry = Registry::with_std();
    let sink = Arc::new(CaptureSink::new());
    registry.set_output(sink.clone());
    let source = "~if(value > 10)\n| then |> std.io:println(text: \"Greater than 10\")\n| else |> std.io:println(text: \"10 or less\")\n";
    let flow = Engine::new(registry)
        .compile(
            "if",
            source,
            &CompileOptions::default().input("value", Type::Int),
        )
        .unwrap();
    flow.run(&Inputs::new().set("value", 42i64), &RunLimits::default())
        .unwrap();
    flow.run(&Inputs::new().set("value", 7i64), &RunLimits::default())
        .unwrap();
    assert_eq!(sink.take_out(), "Greater than 10\n10 or less\n");
}

#[test]
fn host_events_receive_native_values_and_return_every_payload_kind() {
    let mut registry = Registry::new();
    registry
        .event("~event empty {} | done", || Reply::branch("done"))
        .unwrap();
    registry
        .event("~event int { x: i64 } | v i64", |x: i64| x * 2)
        .unwrap();
    registry
        .event("~event float { x: f64 } | v f64", |x: f64| x / 4.0)
        .unwrap();
    registry
        .event("~event boolean { x: bool } | v bool", |x: bool| !x)
        .unwrap();
    registry
        .event("~event text { x: []const u8 } | v []const u8", |x: &str| {
            x.to_uppercase()
        })
        .unwrap();
    registry
        .event("~event record { x: i64, name: []const u8, ok: bool } | r { n: i64, label: []const u8, flag: bool, half: f64 }", |x: i64, name: &str, ok: bool| {
            Reply::branch("r").field("label", format!("<{name}>")).field("n", x).field("flag", ok).field("half", x as f64 / 2.0)
        })
        .unwrap();
    let engine = Engine::new(registry);
    let cases = [
        ("~empty()", r#"{"branch":"done"}"#),
        ("~int(x: 21)", r#"{"branch":"v","value":42}"#),
        ("~float(x: 1.0)", r#"{"branch":"v","value":0.25}"#),
        ("~boolean(x: false)", r#"{"branch":"v","value":true}"#),
        ("~text(x: \"koru\")", r#"{"branch":"v","value":"KORU"}"#),
        (
            "~record(x: 3, name: \"a\", ok: true)",
            r#"{"branch":"r","fields":{"n":3,"label":"<a>","flag":true,"half":1.5}}"#,
        ),
    ];
    for (source, expected) in cases {
        let flow = engine
            .compile("t", source, &CompileOptions::default())
            .unwrap();
        let value = run(&flow).value().unwrap().to_json().to_string();
        assert_eq!(value, expected, "{source}");
    }
}

#[test]
fn host_errors_and_replies_that_break_the_declaration_are_host_errors() {
    let mut registry = Registry::new();
    registry
        .event("~event fail {} | ok", || {
            Err::<Reply, _>(HostError::new("database unavailable"))
        })
        .unwrap();
    registry
        .event("~event stray {} | ok | other", || {
            Reply::branch("elsewhere")
        })
        .unwrap();
    registry
        .event("~event mistyped {} | ok i64", || {
            Reply::branch("ok").value("not a number")
        })
        .unwrap();
    let engine = Engine::new(registry);
    for (source, message) in [
        ("~fail()", "database unavailable"),
        ("~stray()", "returned branch `elsewhere`"),
        ("~mistyped()", "carries int"),
    ] {
        let outcome = run(&engine
            .compile("t", source, &CompileOptions::default())
            .unwrap());
        let Outcome::Error { error, fuel } = outcome else {
            panic!("{source}: {outcome:?}")
        };
        assert_eq!(error.code, ErrorCode::HostError, "{source}");
        assert!(
            error.message.contains(message),
            "{source}: {}",
            error.message
        );
        assert_eq!((error.line, error.column, fuel), (1, 2, 1));
    }
}

#[test]
fn a_host_panic_is_caught_and_the_engine_stays_usable() {
    let mut registry = Registry::new();
    registry
        .event("~event boom { n: i64 } | ok i64", |n: i64| {
            if n == 0 {
                panic!("boom at zero")
            } else {
                n
            }
        })
        .unwrap();
    let engine = Engine::new(registry);
    let flow = engine
        .compile(
            "t",
            "~boom(n: x)",
            &CompileOptions::default().input("x", Type::Int),
        )
        .unwrap();
    let outcome = flow
        .run(&Inputs::new().set("x", 0i64), &RunLimits::default())
        .unwrap();
    let Outcome::Error { error, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(error.code, ErrorCode::HostPanic);
    assert!(error.message.contains("boom at zero"));
    let again = flow
        .run(&Inputs::new().set("x", 5i64), &RunLimits::default())
        .unwrap();
    assert_eq!(
        json(&again),
        r#"{"outcome":"ok","value":{"branch":"ok","value":5},"fuel":1}"#
    );
}

#[test]
fn the_registry_rejects_mismatched_duplicated_and_unknown_implementations() {
    let mut registry = Registry::new();
    let mismatch = registry
        .event("~event add { a: i64, b: i64 } | sum i64", |a: &str| {
            a.len() as i64
        })
        .unwrap_err();
    assert!(
        matches!(mismatch, RegistryError::SignatureMismatch { .. }),
        "{mismatch}"
    );
    assert_eq!(
        mismatch.to_string(),
        "event `add` takes (int, int) but the implementation takes (str)"
    );
    registry
        .event(
            "~event add { a: i64, b: i64 } | sum i64",
            |a: i64, b: i64| a + b,
        )
        .unwrap();
    assert!(matches!(
        registry.event("~event add { a: i64 } | sum i64", |a: i64| a),
        Err(RegistryError::DuplicateEvent(_))
    ));
    assert!(matches!(
        registry.implement("add", |a: i64, b: i64| a - b),
        Err(RegistryError::AlreadyImplemented(_))
    ));
    assert!(matches!(
        registry.implement("nope", || ()),
        Err(RegistryError::UnknownEvent(_))
    ));
    assert!(matches!(
        registry.event("~event a {}\n~event b {}", || ()),
        Err(RegistryError::NotOneEvent(2))
    ));
    let Err(RegistryError::Declaration(errors)) = registry.declare("~event broken { x: wat }")
    else {
        panic!("expected a declaration error")
    };
    assert_eq!(errors.positions(), vec![(Code::E0204, 1, 20)]);
}

#[test]
fn events_can_be_declared_with_a_rust_builder_and_implemented_with_positional_args() {
    let mut registry = Registry::new();
    registry
        .declare_event(EventSig {
            name: "sum4".into(),
            inputs: vec![
                ("a".into(), Type::Int),
                ("b".into(), Type::Int),
                ("c".into(), Type::Int),
                ("label".into(), Type::Str),
            ],
            branches: vec![koru_jit::types::BranchSig {
                name: "total".into(),
                payload: PayloadType::Struct(vec![
                    ("n".into(), Type::Int),
                    ("label".into(), Type::Str),
                ]),
            }],
            phantoms: Vec::new(),
        })
        .unwrap();
    registry
        .implement_with_args("sum4", |args: &koru_jit::Args<'_>| {
            Reply::branch("total")
                .field("n", args.int(0) + args.int(1) + args.int(2))
                .field("label", args.str(3).to_string())
        })
        .unwrap();
    let outcome = run(&compile(
        registry,
        "~sum4(a: 1, b: 2, c: 3, label: \"six\")",
    ));
    assert_eq!(
        outcome.value().unwrap().to_json().to_string(),
        r#"{"branch":"total","fields":{"n":6,"label":"six"}}"#
    );
}

#[test]
fn an_event_declared_but_not_implemented_is_a_check_error() {
    let mut registry = Registry::new();
    registry.declare("~event later {} | ok").unwrap();
    let errors = Engine::new(registry)
        .compile("t", "~later()", &CompileOptions::default())
        .err()
        .unwrap();
    assert_eq!(errors.positions(), vec![(Code::E0209, 1, 2)]);
}

fn scoped_registry() -> Registry {
    let mut registry = Registry::with_std();
    registry
        .event(
            "~event users.get { id: i64 } | found []const u8 | missing",
            |id: i64| {
                if id == 1 {
                    Reply::branch("found").value("ada")
                } else {
                    Reply::branch("missing")
                }
            },
        )
        .unwrap();
    registry
        .event("~event users.delete { id: i64 } | ok", |_: i64| {
            Reply::branch("ok")
        })
        .unwrap();
    registry
        .event("~event admin:reset {} | ok", || Reply::branch("ok"))
        .unwrap();
    registry
        .event("~event hello { name: []const u8 } | said", |_: &str| {
            Reply::branch("said")
        })
        .unwrap();
    registry.add_scope("readers", Scope::new().allow("users.get"));
    registry.add_scope("users", Scope::new().allow_with_cost("users.*", 2));
    registry.add_scope("admins", Scope::new().include("users").allow("admin:*"));
    registry.add_scope("greeters", Scope::new().alias("greet", "hello", 7));
    registry
}

#[test]
fn scopes_allow_exact_names_globs_aliases_and_included_scopes() {
    let engine = Engine::new(scoped_registry());
    let check = |scope: &str, source: &str| {
        engine
            .compile("t", source, &CompileOptions::default().scope(scope))
            .map(|f| run(&f))
    };
    assert!(check("readers", "~users.get(id: 1)").is_ok());
    let denied = check("readers", "~users.delete(id: 1)").err().unwrap();
    assert_eq!(denied.positions(), vec![(Code::E0301, 1, 2)]);
    assert!(denied.diagnostics[0]
        .message
        .contains("`users.delete` is not allowed in scope `readers`"));
    assert_eq!(
        check("users", "~users.delete(id: 1)").unwrap().fuel(),
        2,
        "glob with cost 2"
    );
    assert!(check("admins", "~admin:reset()").is_ok());
    assert_eq!(
        check("admins", "~users.get(id: 2)").unwrap().fuel(),
        2,
        "included scope keeps its costs"
    );
    assert_eq!(
        check("greeters", "~greet(name: \"x\")").unwrap().fuel(),
        7,
        "alias with its own cost"
    );
    let original = check("greeters", "~hello(name: \"x\")").err().unwrap();
    assert_eq!(
        original.positions(),
        vec![(Code::E0301, 1, 2)],
        "the aliased name is not exposed"
    );
    let unknown = engine
        .compile(
            "t",
            "~users.get(id: 1)",
            &CompileOptions::default().scope("nobody"),
        )
        .err()
        .unwrap();
    assert_eq!(unknown.diagnostics[0].code, Code::E0302);
    // Builtins are always allowed.
    assert!(check(
        "readers",
        "~for(0..3)\n| each i |> users.get(id: i)\n    | found |> _\n    | missing |> _"
    )
    .is_ok());
}

const DESCRIBE_LIBRARY: &str = "~event describe { id: i64 }\n| known []const u8\n| unknown\n\n~describe = users.get(id: id)\n| found name |> known name\n| missing |> unknown\n";

#[test]
fn a_source_cannot_replace_a_library_subflow_or_a_host_event_of_its_scope() {
    let mut registry = scoped_registry();
    registry
        .attach_library("users", "users.kz", DESCRIBE_LIBRARY)
        .unwrap();
    // A second library of the scope, or of a scope including it, cannot implement it again.
    let again = registry
        .attach_library("admins", "again.kz", DESCRIBE_LIBRARY)
        .unwrap_err();
    let RegistryError::Library(errors) = &again else {
        panic!("{again}")
    };
    assert_eq!(errors.positions(), vec![(Code::E0209, 5, 2)], "{again}");
    assert!(errors.diagnostics[0]
        .message
        .contains("`describe` is a subflow of library `users.kz`"));
    // A library cannot implement a host event either.
    let host = registry
        .attach_library(
            "users",
            "host.kz",
            "~event users.get { id: i64 } | found []const u8 | missing\n~users.get = missing\n",
        )
        .unwrap_err();
    let RegistryError::Library(errors) = &host else {
        panic!("{host}")
    };
    assert_eq!(errors.positions(), vec![(Code::E0209, 2, 2)], "{host}");
    // Nor can a host event be registered over a library subflow.
    let late = registry
        .event(
            "~event describe { id: i64 } | known []const u8 | unknown",
            |_: i64| Reply::branch("unknown"),
        )
        .unwrap_err();
    assert!(
        matches!(&late, RegistryError::LibrarySubflow { event, library } if event == "describe" && library == "users.kz"),
        "{late}"
    );
    let engine = Engine::new(registry);
    let compile =
        |source: &str| engine.compile("t", source, &CompileOptions::default().scope("users"));
    let replaced = compile(
        "~event describe { id: i64 }\n| known []const u8\n| unknown\n~describe = known \"mallory\"\n~describe(id: 1)\n",
    )
    .err()
    .unwrap();
    assert_eq!(replaced.positions(), vec![(Code::E0209, 4, 2)]);
    assert!(replaced.diagnostics[0].message.contains("`describe`"));
    // Without a declaration the message names the library subflow too, not a missing declaration.
    let undeclared = compile("~describe = unknown\n~describe(id: 1)\n")
        .err()
        .unwrap();
    assert_eq!(undeclared.positions(), vec![(Code::E0209, 1, 2)]);
    assert!(undeclared.diagnostics[0]
        .message
        .contains("library `users.kz`"));
    let host = compile("~users.get = missing\n~users.get(id: 1)\n")
        .err()
        .unwrap();
    assert_eq!(host.positions(), vec![(Code::E0209, 1, 2)]);
    assert!(host.diagnostics[0]
        .message
        .contains("`users.get` is a host event"));
    // Redeclaring with the same signature is allowed (the library's subflow runs); another
    // signature is a type mismatch.
    let flow =
        compile("~event describe { id: i64 }\n| known []const u8\n| unknown\n~describe(id: 1)\n")
            .unwrap();
    assert_eq!(
        json(&run(&flow)),
        r#"{"outcome":"ok","value":{"branch":"known","value":"ada"},"fuel":3}"#
    );
    let differs = compile("~event describe { id: i64 }\n| known\n~describe(id: 1)\n")
        .err()
        .unwrap();
    assert_eq!(differs.positions()[0], (Code::E0204, 1, 1));
}

#[test]
fn a_library_attached_to_a_scope_provides_subflows_to_its_flows() {
    let mut registry = scoped_registry();
    registry
        .attach_library(
            "users",
            "users.kz",
            "~event describe { id: i64 }\n| known []const u8\n| unknown\n\n~describe = users.get(id: id)\n| found name |> known name\n| missing |> unknown\n",
        )
        .unwrap();
    let broken = registry
        .attach_library(
            "users",
            "broken.kz",
            "~event broken {} | ok\n~broken = nothere()\n",
        )
        .unwrap_err();
    assert!(matches!(broken, RegistryError::Library(_)), "{broken}");
    let engine = Engine::new(registry);
    let flow = engine
        .compile(
            "t",
            "~describe(id: 1)",
            &CompileOptions::default().scope("users"),
        )
        .unwrap();
    let outcome = run(&flow);
    assert_eq!(
        json(&outcome),
        r#"{"outcome":"ok","value":{"branch":"known","value":"ada"},"fuel":3}"#,
        "subflow 1 + users.get 2"
    );
    // Included scopes bring their libraries along; other scopes do not see them.
    assert!(engine
        .compile(
            "t",
            "~describe(id: 2)",
            &CompileOptions::default().scope("admins")
        )
        .is_ok());
    let missing = engine
        .compile(
            "t",
            "~describe(id: 2)",
            &CompileOptions::default().scope("readers"),
        )
        .err()
        .unwrap();
    assert_eq!(missing.diagnostics[0].code, Code::E0201);
}

#[test]
fn output_can_be_captured_per_run() {
    let engine = Engine::new(Registry::with_std());
    let flow = engine
        .compile(
            "t",
            "~std.io:print(text: \"a\") |> std.io:eprintln(message: \"b\")",
            &CompileOptions::default(),
        )
        .unwrap();
    let sink = CaptureSink::new();
    flow.run_with_output(&Inputs::new(), &RunLimits::default(), &sink)
        .unwrap();
    assert_eq!(
        (sink.take_out(), sink.take_err()),
        ("a".to_string(), "b\n".to_string())
    );
}

#[test]
fn fuel_stops_before_the_refused_dispatch() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let mut registry = Registry::new();
    registry
        .event("~event tick { n: i64 } | ok", move |n: i64| {
            seen.lock().unwrap().push(n)
        })
        .unwrap();
    let flow = compile(registry, "~for(0..10) | each i |> tick(n: i)");
    let outcome = flow
        .run(
            &Inputs::new(),
            &RunLimits {
                fuel: Some(3),
                ..RunLimits::default()
            },
        )
        .unwrap();
    assert_eq!(
        json(&outcome),
        r#"{"outcome":"exhausted","limit":"Fuel","fuel":3,"last_event":"tick"}"#
    );
    assert_eq!(*calls.lock().unwrap(), vec![0, 1, 2]);
    let outcome = flow
        .run(
            &Inputs::new(),
            &RunLimits {
                max_iterations: Some(4),
                ..RunLimits::default()
            },
        )
        .unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Exhausted {
                limit: Limit::LoopIterations,
                fuel: 4,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[test]
fn inputs_must_match_the_compiled_declaration() {
    let engine = Engine::new(Registry::new());
    let flow = engine
        .compile(
            "t",
            "~if(x > 1) | then |> yes | else |> no",
            &CompileOptions::default().input("x", Type::Int),
        )
        .unwrap();
    assert_eq!(
        flow.run(&Inputs::new(), &RunLimits::default()),
        Err(InputError::Missing("x".into()))
    );
    assert!(matches!(
        flow.run(&Inputs::new().set("x", 1.5), &RunLimits::default()),
        Err(InputError::WrongType { .. })
    ));
    assert_eq!(
        flow.run(
            &Inputs::new().set("x", 2i64).set("y", 1i64),
            &RunLimits::default()
        ),
        Err(InputError::Unknown("y".into()))
    );
    assert_eq!(
        json(
            &flow
                .run(&Inputs::new().set("x", 2i64), &RunLimits::default())
                .unwrap()
        ),
        r#"{"outcome":"ok","value":{"branch":"yes"},"fuel":0}"#
    );
}

#[test]
fn compiled_flows_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Flow>();
    assert_send_sync::<Engine>();
    let mut registry = Registry::new();
    registry
        .event(
            "~event add { a: i64, b: i64 } | sum i64",
            |a: i64, b: i64| a + b,
        )
        .unwrap();
    let source = "~capture({ s: 0 })\n| as acc |> for(0..n)\n    | each i |> add(a: acc.s, b: i)\n        | sum v |> captured { s: v }\n| captured t |> total t.s";
    let flow = Engine::new(registry)
        .compile(
            "t",
            source,
            &CompileOptions::default().input("n", Type::Int),
        )
        .unwrap();
    let threads: Vec<_> = (0..4i64)
        .map(|k| {
            let flow = flow.clone();
            std::thread::spawn(move || {
                for n in 0..200 {
                    let n = n + k;
                    let outcome = flow
                        .run(&Inputs::new().set("n", n), &RunLimits::default())
                        .unwrap();
                    assert_eq!(outcome.value().unwrap().get::<i64>(), Ok(n * (n - 1) / 2));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = flow.stats();
    assert_eq!(stats.runs, 800);
}

#[test]
fn all_errors_of_a_source_are_reported_together_with_positions() {
    let engine = Engine::new(Registry::with_std());
    let source = "~nope()\n~std.io:println(txt: \"x\")\n~if(1) | then |> _\n";
    let errors = engine
        .compile("t", source, &CompileOptions::default())
        .err()
        .unwrap();
    // `txt` is reported with "did you mean `text`?", and `text` not again as missing.
    assert_eq!(
        errors.positions(),
        vec![
            (Code::E0201, 1, 2),
            (Code::E0205, 2, 17),
            (Code::E0204, 3, 5)
        ]
    );
    assert_eq!(
        errors.to_json()["errors"][1]["notes"],
        serde_json::json!([{ "kind": "help", "message": "did you mean `text`?" }])
    );
    let rendered = errors.render(false);
    assert!(
        rendered.contains("error[E0201]: unknown event `nope`"),
        "{rendered}"
    );
    assert!(rendered.contains("┌─ t:1:2"), "{rendered}");
    assert_eq!(errors.to_json()["errors"][0]["code"], "E0201");
}

/// A dropped flow's run state is recycled by the engine for the next new flow (of another shape):
/// every flow runs exactly as it does on an engine of its own, output included.
#[test]
fn recycled_run_states_run_like_new_ones() {
    let sources = [
        "~capture({ x: \"a\", y: \"b\" })\n| as p |> captured { x: p.y, y: p.x }\n| captured r |> r { x: r.x, y: r.y }\n",
        "~add(a: \"10\", b: \"20\")",
        "~capture({ p: 1 })\n| as c |> while(c.p < 100)\n    | body |> std.io:println(text: c.p) |> captured { p: c.p * 2 }\n| captured r |> last r.p\n",
        "~for(0..3)\n| each i |> add(a: \"1\", b: i)\n    | sum s |> std.io:println(text: s)\n| done |> _\n",
        "~multiply(value: \"30\", by: \"3\")\n| product p |> subtract(value: p, by: 5)\n",
        "~std.io:print.ln(\"x = {{ 7 }}\")",
    ];
    let engine = |sink: &Arc<CaptureSink>| {
        let mut registry = Registry::with_std();
        koru_jit::host::register_demo_events(&mut registry, Default::default()).unwrap();
        registry.set_output(sink.clone());
        Engine::with_config(
            registry,
            koru_jit::EngineConfig {
                cache: koru_jit::CacheConfig::disabled(),
                ..Default::default()
            },
        )
    };
    let run_once = |engine: &Engine, sink: &CaptureSink, source: &str| {
        let flow = engine
            .compile("recycled", source, &CompileOptions::default())
            .unwrap();
        let outcome = json(&run(&flow));
        let stats = flow.stats();
        (outcome, sink.take_out(), stats.runs, stats.loop_iterations)
    };
    let expected: Vec<_> = sources
        .iter()
        .map(|source| {
            let sink = Arc::new(CaptureSink::new());
            run_once(&engine(&sink), &sink, source)
        })
        .collect();
    let sink = Arc::new(CaptureSink::new());
    let shared = engine(&sink);
    let n = sources.len();
    for round in 0..3 {
        for j in 0..n {
            let k = (n - 1 - j + round) % n;
            assert_eq!(
                run_once(&shared, &sink, sources[k]),
                expected[k],
                "{}",
                sources[k]
            );
        }
    }
}

/// Issue 13: a source declares its inputs (`~input { ... }`); `Flow::inputs` lists them, a run
/// without one is `InputError::Missing` naming it, and values convert as SPEC 2.1 converts
/// arguments (an int to a float input, anything to a str input), nothing else.
#[test]
fn declared_inputs_are_listed_required_and_converted() {
    let engine = Engine::new(Registry::new());
    let source = "~input { rate: f64, code: str, on: bool }\n~if(on)\n| then |> r { rate: rate / 100.0, code: code }\n| else |> off\n";
    let flow = engine
        .compile("t", source, &CompileOptions::default())
        .unwrap();
    let declared: Vec<(&str, Type)> = flow.inputs().collect();
    assert_eq!(
        declared,
        [
            ("rate", Type::Float),
            ("code", Type::Str),
            ("on", Type::Bool)
        ]
    );
    assert_eq!(flow.input_type("code"), Some(Type::Str));
    assert_eq!(flow.input_type("nope"), None);
    let limits = RunLimits::default();
    assert_eq!(
        flow.run(&Inputs::new().set("rate", 5.0).set("on", true), &limits),
        Err(InputError::Missing("code".into()))
    );
    let given = Inputs::new()
        .set("rate", 5i64)
        .set("code", 1234i64)
        .set("on", true);
    assert_eq!(
        json(&flow.run(&given, &limits).unwrap()),
        r#"{"outcome":"ok","value":{"branch":"r","fields":{"rate":0.05,"code":"1234"}},"fuel":0}"#
    );
    // A float and a bool as text too, formatted as `std.io` prints them.
    let given = Inputs::new()
        .set("rate", 2.5)
        .set("code", 2.5)
        .set("on", true);
    assert!(json(&flow.run(&given, &limits).unwrap()).contains(r#""code":"2.5""#));
    let given = Inputs::new()
        .set("rate", 1.0)
        .set("code", false)
        .set("on", true);
    assert!(json(&flow.run(&given, &limits).unwrap()).contains(r#""code":"false""#));
    // No other conversion: a str is not parsed, a float not rounded, an int is not a bool.
    for (name, value) in [
        ("rate", Scalar::Str("5".into())),
        ("rate", Scalar::Bool(true)),
        ("on", Scalar::Int(1)),
        ("on", Scalar::Str("true".into())),
    ] {
        let mut given = Inputs::new()
            .set("rate", 1.0)
            .set("code", "c")
            .set("on", true);
        given.insert(name, value.clone());
        assert!(
            matches!(
                flow.run(&given, &limits),
                Err(InputError::WrongType { name: ref n, .. }) if n == name
            ),
            "{name} = {value:?}"
        );
    }
    assert_eq!(
        Scalar::Int(5).converted_to(Type::Float),
        Some(Scalar::Float(5.0))
    );
    assert_eq!(Scalar::Float(5.0).converted_to(Type::Int), None);
    assert_eq!(
        Scalar::parse_as("01234", Type::Str),
        Some(Scalar::Str("01234".into()))
    );
    assert_eq!(Scalar::parse_as("5", Type::Float), Some(Scalar::Float(5.0)));
    assert_eq!(Scalar::parse_as("yes", Type::Bool), None);
}

/// A source declaration and a compile-options declaration of the same input must agree: the
/// same type is one input, another type is E0204 at the declared type.
#[test]
fn a_declared_input_must_agree_with_the_compile_options() {
    let engine = Engine::new(Registry::new());
    let source = "~input { rate: f64 }\n~if(rate > 1.0)\n| then |> big\n| else |> small\n";
    let same = engine
        .compile(
            "t",
            source,
            &CompileOptions::default().input("rate", Type::Float),
        )
        .unwrap();
    assert_eq!(same.inputs().len(), 1);
    let errors = engine
        .compile(
            "t",
            source,
            &CompileOptions::default().input("rate", Type::Int),
        )
        .err()
        .unwrap();
    assert_eq!(errors.positions(), [(Code::E0204, 1, 16)]);
    assert_eq!(
        errors.diagnostics[0].message,
        "flow input `rate` is declared `f64` (float) here, but the compile options declare it int"
    );
    // A guessed input (typed by a value) takes the declared type instead, without an error; one
    // the source does not declare is declared with the guessed type.
    let flow = engine
        .compile(
            "t",
            source,
            &CompileOptions::default()
                .guessed_input("rate", Type::Int)
                .guessed_input("extra", Type::Str),
        )
        .unwrap();
    let declared: Vec<(&str, Type)> = flow.inputs().collect();
    assert_eq!(declared, [("rate", Type::Float), ("extra", Type::Str)]);
    assert_eq!(
        json(
            &flow
                .run(
                    &Inputs::new().set("rate", 5i64).set("extra", "x"),
                    &RunLimits::default()
                )
                .unwrap()
        ),
        r#"{"outcome":"ok","value":{"branch":"big"},"fuel":0}"#
    );
}

/// Flow inputs are declared by sources and checked against libraries' rules: a library or a
/// declaration text holds no `~input`.
#[test]
fn libraries_and_declarations_hold_no_flow_inputs() {
    let mut registry = Registry::with_std();
    registry.add_scope("app", Scope::new().allow("std.*"));
    let error = registry
        .attach_library(
            "app",
            "lib",
            "~input { x: int }\n~event e {}\n| o i64\n~e = o 1\n",
        )
        .err()
        .unwrap();
    assert!(error.to_string().contains("E0104"), "{error}");
    let error = Registry::new().declare("~input { x: int }").err().unwrap();
    assert!(error.to_string().contains("E0104"), "{error}");
}

#[test]
fn the_control_library_attaches_to_a_scope() {
    // SPEC 11: `$std/control` is a library like any other: attached to a scope, its subflows
    // are callable without the import by flows checked against that scope.
    let mut registry = scoped_registry();
    registry
        .attach_library("users", "$std/control", koru_jit::host::CONTROL_LIBRARY)
        .unwrap();
    let engine = Engine::new(registry);
    let source = "~capture({ n: 0 })\n| as acc |> countdown(from: 4)\n    | each i |> captured { n: acc.n * 10 + i }\n    | done |> _\n| captured t |> digits t.n";
    let flow = engine
        .compile("t", source, &CompileOptions::default().scope("users"))
        .unwrap();
    let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    assert_eq!(outcome.value().unwrap().get::<i64>(), Ok(4321));
    // Without the scope (and without the import), `countdown` is unknown.
    let Err(error) = engine.compile("t", source, &CompileOptions::default()) else {
        panic!("countdown is unknown without the scope");
    };
    assert_eq!(error.diagnostics[0].code, Code::E0201);
}
