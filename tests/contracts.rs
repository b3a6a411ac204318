//! Shape contracts and mocks (SPEC 13) from the embedding API: options, diagnostics and where
//! they point, the cache key, the mark mocked calls keep in the IR, every tier, and hostile
//! mocks (huge, many, exponential, looping, recursive, denied).

use koru_jit::ir::Step;
use koru_jit::{
    Code, CompileOptions, Engine, EngineConfig, FrontEndLimits, Inputs, Limit, Outcome, Registry,
    Reply, RunLimits, Scope, Tier, TierPolicy,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `users.get` (counting its real calls) and `add`, with a scope `agent` allowing `users.get` at
/// cost 3 and `std.io`, but not `add`.
fn registry(calls: &Arc<AtomicU64>) -> Registry {
    let mut registry = Registry::with_std();
    let counted = calls.clone();
    registry
        .event(
            "~event users.get { id: i64 } | found { name: str } | missing",
            move |id: i64| {
                counted.fetch_add(1, Ordering::Relaxed);
                match id {
                    1 => Reply::branch("found").field("name", "ada"),
                    _ => Reply::branch("missing"),
                }
            },
        )
        .unwrap();
    registry
        .event(
            "~event add { a: i64, b: i64 } | sum i64",
            |a: i64, b: i64| a + b,
        )
        .unwrap();
    registry.add_scope(
        "agent",
        Scope::new()
            .allow("std.io:*")
            .allow_with_cost("users.get", 3),
    );
    registry
}

fn engine() -> (Engine, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let config = EngineConfig {
        policy: TierPolicy::eager(),
        ..EngineConfig::default()
    };
    (Engine::with_config(registry(&calls), config), calls)
}

fn run(flow: &koru_jit::Flow, limits: &RunLimits) -> Outcome {
    flow.run(&Inputs::new(), limits).unwrap()
}

#[test]
fn a_shape_is_checked_on_every_path_and_names_its_branches() {
    let (engine, calls) = engine();
    let source = "~users.get(id: 1)\n| found u |> found { name: u.name }\n| missing |> gone\n";
    let options = CompileOptions::default().shape("users.get");
    let errors = engine
        .compile("agent", source, &options)
        .err()
        .expect("the compile fails");
    assert_eq!(errors.positions(), [(Code::E0213, 3, 14)]);
    let message = &errors.diagnostics[0].message;
    assert!(
        message.contains("`gone`") && message.contains("`found { name: str }`, `missing`"),
        "{message}"
    );
    // Nothing ran: the check is before running.
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    // Without the shape the same source compiles and runs: the shape is part of the cache key.
    let flow = engine
        .compile("agent", source, &CompileOptions::default())
        .unwrap();
    assert_eq!(
        run(&flow, &RunLimits::default()).value().unwrap().branch,
        "found".into()
    );
    assert_eq!(engine.cache_stats().misses, 2);
    // And again with the shape: the cached errors.
    assert!(engine.compile("agent", source, &options).is_err());
    assert_eq!(engine.cache_stats().hits, 1);
}

#[test]
fn an_unknown_shape_is_e0214_and_a_declared_one_needs_no_implementation() {
    let (engine, _) = engine();
    let errors = engine
        .compile(
            "agent",
            "~users.get(id: 1)",
            &CompileOptions::default().shape("users.gte"),
        )
        .err()
        .expect("the compile fails");
    assert_eq!(errors.positions(), [(Code::E0214, 1, 1)]);
    let source = "~event verdict {} | yes | no\n~if(true)\n| then |> yes\n| else |> no\n";
    let flow = engine
        .compile("agent", source, &CompileOptions::default().shape("verdict"))
        .unwrap();
    assert_eq!(
        run(&flow, &RunLimits::default()).value().unwrap().branch,
        "yes".into()
    );
    // Without the shape option the declaration is an unimplemented event, as before.
    let errors = engine
        .compile("agent", source, &CompileOptions::default())
        .err()
        .expect("the compile fails");
    assert_eq!(errors.positions(), [(Code::E0209, 1, 8)]);
}

#[test]
fn a_mock_replaces_the_host_event_and_keeps_its_name_and_a_mark_in_the_ir() {
    let (engine, calls) = engine();
    let source = "~users.get(id: 7)\n| found u |> found { name: u.name }\n| missing |> missing\n";
    let options = CompileOptions::default()
        .scope("agent")
        .mock("~users.get = found { name: \"test\" }");
    for tier in [Tier::Interp, Tier::Jit, Tier::Auto] {
        let flow = engine
            .compile("agent", source, &options.clone().tier(tier))
            .unwrap();
        let outcome = run(&flow, &RunLimits::default());
        assert_eq!(
            outcome.to_json().to_string(),
            r#"{"outcome":"ok","value":{"branch":"found","fields":{"name":"test"}},"fuel":3}"#,
            "{tier:?}"
        );
        // What traces read: the inlined mock is a call named after the event, marked mocked,
        // charging the event's cost in the scope.
        let Step::Call(call) = &flow.program().flows[0] else {
            panic!("a mocked event is a call of its mock")
        };
        assert!(call.mocked && &*call.name == "users.get" && call.cost == 3);
    }
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    // The same source without the mock calls the host: mocks are part of the cache key.
    let flow = engine
        .compile("agent", source, &CompileOptions::default().scope("agent"))
        .unwrap();
    assert_eq!(
        run(&flow, &RunLimits::default())
            .value()
            .unwrap()
            .branch
            .as_ref(),
        "missing"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let Step::Invoke(_) = &flow.program().flows[0] else {
        panic!("an event that is not mocked is a host dispatch")
    };
}

#[test]
fn mock_diagnostics_are_named_after_the_mock_and_point_into_its_text() {
    let (engine, _) = engine();
    let compile = |options: &CompileOptions| {
        engine
            .compile("agent.kz", "~users.get(id: 1)", options)
            .err()
            .expect("the compile fails")
    };
    let errors = compile(
        &CompileOptions::default()
            .mock("~users.get = missing")
            .mock("~users.get = found { name: 1 }"),
    );
    assert_eq!(errors.name, "mock 2");
    assert_eq!(errors.text, "~users.get = found { name: 1 }");
    assert_eq!(errors.positions(), [(Code::E0209, 1, 2)]);
    let rendered = errors.render(false);
    assert!(rendered.contains("mock 2:1:2"), "{rendered}");
    let errors = compile(
        &CompileOptions::default()
            .named_mock("mocks/users.kz", "\n~users.get = found { name: id }"),
    );
    assert_eq!(errors.name, "mocks/users.kz");
    assert_eq!(errors.positions(), [(Code::E0209, 2, 14)]);
    // A denied event, in the mock.
    let errors = compile(
        &CompileOptions::default()
            .scope("agent")
            .mock("~add = sum 1"),
    );
    assert_eq!(errors.positions(), [(Code::E0301, 1, 2)]);
    assert!(
        errors.diagnostics[0]
            .message
            .contains("a mock can only replace an event the scope allows"),
        "{}",
        errors.diagnostics[0].message
    );
}

#[test]
fn a_mock_that_calls_itself_or_its_caller_is_refused_and_never_inlined() {
    let (engine, _) = engine();
    for (mocks, at) in [
        (vec!["~users.get = users.get(id: id + 1)"], (1, 2)),
        (
            vec![
                "~users.get = add(a: id, b: 1) |> missing",
                "~add = users.get(id: a) |> sum b",
            ],
            (1, 2),
        ),
    ] {
        let mut options = CompileOptions::default();
        for mock in &mocks {
            options = options.mock(mock);
        }
        let errors = engine
            .compile("agent", "~users.get(id: 1)", &options)
            .err()
            .expect("the compile fails");
        assert_eq!(errors.name, "mock 1");
        assert_eq!(errors.positions()[0], (Code::E0209, at.0, at.1));
        assert!(
            errors.diagnostics[0].message.contains("recursion"),
            "{}",
            errors.diagnostics[0].message
        );
    }
}

#[test]
fn huge_and_many_mocks_are_held_to_the_front_end_limits() {
    let (engine, _) = engine();
    let limits = FrontEndLimits {
        max_source_bytes: 4096,
        ..FrontEndLimits::default()
    };
    let options = |mocks: &[String]| {
        let mut options = CompileOptions {
            limits: limits.clone(),
            ..CompileOptions::default()
        };
        for mock in mocks {
            options = options.mock(mock);
        }
        options
    };
    // One huge mock, then many small ones that are too large together: E0105 in the mock.
    let huge = format!("~users.get = missing\n{}", "// pad\n".repeat(1000));
    let errors = engine
        .compile("agent", "~users.get(id: 1)", &options(&[huge]))
        .err()
        .expect("the compile fails");
    assert_eq!(
        (errors.name.as_str(), errors.diagnostics[0].code),
        ("mock 1", Code::E0105)
    );
    let many: Vec<String> = (0..1000)
        .map(|_| "~users.get = missing".to_string())
        .collect();
    let errors = engine
        .compile("agent", "~users.get(id: 1)", &options(&many))
        .err()
        .expect("the compile fails");
    assert_eq!(errors.diagnostics[0].code, Code::E0105);
    // Within the size limit, the second of 100 mocks of one event is the error.
    let errors = engine
        .compile("agent", "~users.get(id: 1)", &options(&many[..100]))
        .err()
        .expect("the compile fails");
    assert_eq!(errors.name, "mock 2");
    assert_eq!(errors.positions(), [(Code::E0209, 1, 2)]);
    // Nesting past the limit inside a mock: E0105 in the mock.
    let deep = format!(
        "~users.get = {}missing{}",
        "if(true) | then |> ".repeat(100),
        ""
    );
    let errors = engine
        .compile("agent", "~users.get(id: 1)", &options(&[deep]))
        .err()
        .expect("the compile fails");
    assert_eq!(errors.name, "mock 1");
    assert!(
        errors.diagnostics.iter().any(|d| d.code == Code::E0105),
        "{:?}",
        errors.diagnostics
    );
}

#[test]
fn mocks_that_inline_exponentially_are_refused_at_the_step_limit() {
    // 24 events, each mocked by one that calls the next twice: 2^24 inlined calls if nothing
    // stopped it.
    let mut registry = Registry::new();
    for k in 0..24 {
        registry
            .event(&format!("~event e{k} {{}} | ok"), || Reply::branch("ok"))
            .unwrap();
    }
    let engine = Engine::new(registry);
    let mut options = CompileOptions::default();
    for k in 0..23 {
        let next = k + 1;
        options = options.mock(&format!("~e{k} = e{next}() |> e{next}() |> ok"));
    }
    let errors = engine
        .compile("bomb", "~e0()", &options)
        .err()
        .expect("the compile fails");
    assert_eq!(errors.name, "bomb");
    assert_eq!(errors.positions(), [(Code::E0105, 1, 2)]);
    assert!(
        errors.diagnostics[0]
            .message
            .contains("once subflows are inlined"),
        "{}",
        errors.diagnostics[0].message
    );
}

#[test]
fn a_mock_that_loops_is_stopped_by_the_run_limits_in_every_tier() {
    let (engine, calls) = engine();
    let options = CompileOptions::default()
        .mock("~users.get = for(0..1_000_000_000) | each _ |> _ | done |> missing");
    let limits = RunLimits {
        max_iterations: Some(10_000),
        ..RunLimits::default()
    };
    let mut outcomes = Vec::new();
    for tier in [Tier::Interp, Tier::Jit, Tier::Auto] {
        let flow = engine
            .compile("agent", "~users.get(id: 1)", &options.clone().tier(tier))
            .unwrap();
        let outcome = run(&flow, &limits);
        assert!(
            matches!(
                outcome,
                Outcome::Exhausted {
                    limit: Limit::LoopIterations,
                    ..
                }
            ),
            "{tier:?}: {}",
            outcome.to_json()
        );
        if tier == Tier::Auto {
            // The run moved to native code at the head of the mock's loop.
            assert_eq!(flow.stats().osr_entries, 1);
        }
        outcomes.push(outcome.to_json());
    }
    assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "{outcomes:?}");
    assert!(
        outcomes[0]
            .to_string()
            .contains(r#""last_event":"users.get""#),
        "{}",
        outcomes[0]
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

#[test]
fn mocks_and_a_shape_together_and_the_cost_bound_counts_the_events_cost() {
    let (engine, _) = engine();
    let options = CompileOptions::default()
        .scope("agent")
        .shape("users.get")
        .mock("~users.get = std.io:println(text: \"dry run\") |> missing");
    let flow = engine
        .compile("agent", "~users.get(id: 1)\n~users.get(id: 2)", &options)
        .unwrap();
    // Each mocked call: the event's 3, plus the body's `println`.
    assert_eq!(flow.cost_bound(&Inputs::new()).fuel, Some(8));
    let sink = koru_jit::CaptureSink::new();
    let outcome = flow
        .run_with_output(&Inputs::new(), &RunLimits::default(), &sink)
        .unwrap();
    assert_eq!(outcome.fuel(), 8);
    assert_eq!(sink.take_out(), "dry run\ndry run\n");
    // The mocked event's branches are the event's: a mock cannot widen the shape.
    let errors = engine
        .compile(
            "agent",
            "~users.get(id: 1)",
            &CompileOptions::default()
                .shape("users.get")
                .mock("~users.get = gone"),
        )
        .err()
        .expect("the compile fails");
    assert_eq!(
        (errors.name.as_str(), errors.diagnostics[0].code),
        ("mock 1", Code::E0209)
    );
}
