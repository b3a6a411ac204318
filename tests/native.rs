//! The JIT tier as an embedder sees it (the limits of every tier are in tests/limits.rs): host failures inside
//! native code, sharing across threads, and what builtins become.

use koru_jit::{CompileOptions, Engine, ErrorCode, Inputs, Outcome, Registry, RunLimits, Tier};

fn jit(registry: Registry, source: &str) -> koru_jit::Flow {
    let flow = Engine::new(registry)
        .compile("native", source, &CompileOptions::default().tier(Tier::Jit))
        .unwrap();
    assert_eq!(flow.tier(), Tier::Jit, "{:?}", flow.jit_error());
    flow
}

#[test]
fn iteration_and_fuel_limits_stop_native_code_where_the_interpreter_stops() {
    let mut registry = Registry::new();
    registry
        .event("~event tick { n: i64 } | ok", |_: i64| ())
        .unwrap();
    let engine = Engine::new(registry);
    let source = "~for(0..1000)\n| each i |> tick(n: i)";
    for limits in [
        RunLimits {
            max_iterations: Some(300),
            ..RunLimits::default()
        },
        RunLimits {
            fuel: Some(777),
            ..RunLimits::default()
        },
        RunLimits {
            max_iterations: Some(0),
            ..RunLimits::default()
        },
        RunLimits {
            fuel: Some(0),
            ..RunLimits::default()
        },
    ] {
        let outcomes: Vec<Outcome> = [Tier::Interp, Tier::Jit]
            .iter()
            .map(|&tier| {
                engine
                    .compile("t", source, &CompileOptions::default().tier(tier))
                    .unwrap()
                    .run(&Inputs::new(), &limits)
                    .unwrap()
            })
            .collect();
        assert_eq!(outcomes[0], outcomes[1], "{limits:?}");
        assert!(
            matches!(outcomes[1], Outcome::Exhausted { .. }),
            "{:?}",
            outcomes[1]
        );
    }
}

#[test]
fn host_errors_and_panics_in_native_code_become_outcomes() {
    let mut registry = Registry::new();
    registry
        .event(
            "~event risky { n: i64 } | ok i64",
            |n: i64| -> Result<i64, koru_jit::HostError> {
                match n {
                    3 => Err("three is not allowed".into()),
                    5 => panic!("five"),
                    n => Ok(n),
                }
            },
        )
        .unwrap();
    let source = "~for(first..limit)\n| each i |> risky(n: i)\n    | ok |> _";
    let options = CompileOptions::default()
        .tier(Tier::Jit)
        .input("first", koru_jit::Type::Int)
        .input("limit", koru_jit::Type::Int);
    let flow = Engine::new(registry)
        .compile("t", source, &options)
        .unwrap();
    assert_eq!(flow.tier(), Tier::Jit);
    let run = |first: i64, limit: i64| {
        flow.run(
            &Inputs::new().set("first", first).set("limit", limit),
            &RunLimits::default(),
        )
        .unwrap()
    };
    let Outcome::Error { error, fuel } = run(0, 10) else {
        panic!("expected a host error")
    };
    assert_eq!(
        (error.code, error.message.as_str(), fuel),
        (ErrorCode::HostError, "three is not allowed", 4)
    );
    assert_eq!(error.event.as_deref(), Some("risky"));
    assert_eq!((error.line, error.column), (2, 13));
    let Outcome::Error { error, fuel } = run(4, 10) else {
        panic!("expected a host panic")
    };
    assert_eq!((error.code, fuel), (ErrorCode::HostPanic, 2));
    assert!(error.message.contains("five"), "{}", error.message);
    assert!(
        matches!(run(0, 3), Outcome::Ok { fuel: 3, .. }),
        "the engine is still usable"
    );
}

#[test]
fn a_native_host_panic_is_caught_in_the_shim() {
    let mut registry = Registry::new();
    registry
        .event("~event boom {} | ok", || -> () {
            panic!("boom in native code")
        })
        .unwrap();
    let flow = jit(registry, "~boom()");
    for _ in 0..3 {
        let Outcome::Error { error, .. } = flow.run(&Inputs::new(), &RunLimits::default()).unwrap()
        else {
            panic!("expected HostPanic")
        };
        assert_eq!(error.code, ErrorCode::HostPanic);
        assert!(
            error.message.contains("boom in native code"),
            "{}",
            error.message
        );
    }
}

#[test]
fn native_flows_are_shared_across_threads() {
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
            &CompileOptions::default()
                .tier(Tier::Jit)
                .input("n", koru_jit::Type::Int),
        )
        .unwrap();
    assert_eq!(flow.tier(), Tier::Jit);
    let threads: Vec<_> = (0..4i64)
        .map(|k| {
            let flow = flow.clone();
            std::thread::spawn(move || {
                for n in 0..500 {
                    let n = n + k;
                    let outcome = flow
                        .run(&Inputs::new().set("n", n), &RunLimits::default())
                        .unwrap();
                    assert_eq!(outcome.value().unwrap().get::<i64>(), Ok(n * (n - 1) / 2));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(flow.stats().runs, 2000);
}

#[test]
fn builtins_become_control_flow_without_calls() {
    // A capture over a for loop with an `if`: the only call in the function is the cold slow path
    // of the loop budget (every 256 iterations: limit, interrupt, deadline); the accumulator lives
    // in registers (no stack slot), and nothing is allocated.
    let source = "~capture({ sum: 0, odd: 0 })\n| as acc |> for(0..n)\n    | each i |> if(i % 2 == 1)\n        | then |> captured { sum: acc.sum + i, odd: acc.odd + 1 }\n        | else |> captured { sum: acc.sum + i }\n| captured total |> result total.sum";
    let engine = Engine::new(Registry::new());
    let flow = engine
        .compile(
            "t",
            source,
            &CompileOptions::default().input("n", koru_jit::Type::Int),
        )
        .unwrap();
    let (_, listing) =
        koru_jit::jit::compile_with_listing(flow.program(), flow.layout(), engine.registry(), true)
            .unwrap();
    assert_eq!(
        listing.clif.matches("call_indirect").count(),
        1,
        "{}",
        listing.clif
    );
    assert!(!listing.clif.contains("stack_addr"), "{}", listing.clif);
    assert!(listing.clif.contains("brif"));
    assert!(listing.asm.contains("call"), "the disassembly is shown");
}

#[test]
fn every_spec9_example_compiles_for_aarch64() {
    let mut registry = Registry::with_std();
    koru_jit::host::register_demo_events(&mut registry, Default::default()).unwrap();
    let engine = Engine::new(registry);
    for example in ["examples/nested_loop.kz", "examples/produce_consume.kz"] {
        let source = std::fs::read_to_string(example).unwrap();
        let flow = engine
            .compile(example, &source, &CompileOptions::default())
            .unwrap();
        let bytes = koru_jit::jit::compile_for_target(
            flow.program(),
            flow.layout(),
            engine.registry(),
            "aarch64-unknown-linux-gnu",
            128,
        )
        .unwrap();
        assert!(bytes > 0);
    }
}

/// The CLIF of `source` (input `n: int`) and its number of blocks.
fn clif_of(source: &str) -> (String, usize) {
    let engine = Engine::new(Registry::new());
    let flow = engine
        .compile(
            "t",
            source,
            &CompileOptions::default().input("n", koru_jit::Type::Int),
        )
        .unwrap();
    let (_, listing) =
        koru_jit::jit::compile_with_listing(flow.program(), flow.layout(), engine.registry(), true)
            .unwrap();
    let blocks = listing
        .clif
        .lines()
        .filter(|line| line.starts_with("block") && line.trim_end().ends_with(':'))
        .count();
    (listing.clif, blocks)
}

#[test]
fn repeat_compiles_to_the_loop_for_does() {
    // SPEC 11: `repeat` of `$std/control` is a subflow written with `yield`; inlined, its
    // caller's continuation is compiled in place of the `yield`, so the loop is the one `for`
    // makes. What `repeat` adds is the subflow call's fuel charge, once before the loop (SPEC 5:
    // the call costs 1): its blocks and the cold call of its slow path (interrupt, deadline),
    // measured here on a subflow that does nothing. Nothing else: no call, no block.
    let body = "captured { sum: acc.sum + i * 3 }";
    let with_for = format!(
        "~capture({{ sum: 0 }})\n| as acc |> for(0..n)\n    | each i |> {body}\n| captured t |> result t.sum"
    );
    let with_repeat = format!(
        "~import \"$std/control\"\n~capture({{ sum: 0 }})\n| as acc |> repeat(n: n)\n    | each i |> {body}\n    | done |> _\n| captured t |> result t.sum"
    );
    let (for_clif, for_blocks) = clif_of(&with_for);
    let (repeat_clif, repeat_blocks) = clif_of(&with_repeat);
    let (charge_clif, charge_blocks) =
        clif_of("~event one {} | done\n~one = done\n~one() | done |> result 0");
    let (empty_clif, empty_blocks) = clif_of("~if(true) | then |> result 0");
    eprintln!("for: {for_blocks} blocks, repeat: {repeat_blocks}, call charge: {charge_blocks} vs {empty_blocks}");
    let calls = |clif: &str| clif.matches("call_indirect").count();
    let charge_calls = calls(&charge_clif) - calls(&empty_clif);
    assert!(
        calls(&repeat_clif) <= calls(&for_clif) + charge_calls,
        "{repeat_clif}"
    );
    let charge = charge_blocks.saturating_sub(empty_blocks);
    assert!(
        repeat_blocks <= for_blocks + charge,
        "repeat: {repeat_blocks} blocks, for: {for_blocks} plus {charge} for the call's charge\n{repeat_clif}\n----\n{for_clif}"
    );
}

#[test]
fn a_dense_int_match_is_one_table_jump_and_a_short_str_match_calls_nothing() {
    // SPEC 10: 16 dense int cases are one `br_table`; the only call is still the loop budget's
    // cold slow path.
    let arms: String = (0..16)
        .map(|k| {
            format!(
                "        | [{k}] |> captured {{ sum: acc.sum + {} }}\n",
                k * 3 + 1
            )
        })
        .collect();
    let source = format!(
        "~capture({{ sum: 0 }})\n| as acc |> for(0..n)\n    | each i |> match(i % 16)\n{arms}        |? |> _\n| captured t |> r t.sum"
    );
    let (clif, _) = clif_of(&source);
    assert_eq!(clif.matches("br_table").count(), 1, "{clif}");
    assert_eq!(clif.matches("call_indirect").count(), 1, "{clif}");
    // Strings of at most 16 bytes: a switch on the length and inline loads, no helper call.
    let source = "~capture({ hits: 0 })\n| as acc |> for(0..n)\n    | each i |> match(if (i % 3 == 0) \"GET\" else if (i % 3 == 1) \"a sixteen-byte s\" else \"PUT\")\n        | [\"GET\", \"PUT\"] |> captured { hits: acc.hits + 1 }\n        | [\"a sixteen-byte s\", \"POST\"] |> captured { hits: acc.hits + 2 }\n        |? |> _\n| captured t |> r t.hits";
    let (clif, _) = clif_of(source);
    assert_eq!(clif.matches("call_indirect").count(), 1, "{clif}");
    // And the two tiers agree on the result.
    let engine = Engine::new(Registry::new());
    let results: Vec<Outcome> = [Tier::Interp, Tier::Jit]
        .iter()
        .map(|&tier| {
            engine
                .compile(
                    "t",
                    source,
                    &CompileOptions::default()
                        .input("n", koru_jit::Type::Int)
                        .tier(tier),
                )
                .unwrap()
                .run(&Inputs::new().set("n", 30i64), &RunLimits::default())
                .unwrap()
        })
        .collect();
    assert_eq!(results[0], results[1]);
}

/// An address as Cranelift prints an `iconst.i64` of it (hex in groups of four digits).
fn clif_constant(address: usize) -> String {
    let x = address as u64;
    let mut pos = (64 - x.leading_zeros() - 1) & 0xf0;
    let mut text = format!("0x{:04x}", (x >> pos) & 0xffff);
    while pos > 0 {
        pos -= 16;
        text += &format!("_{:04x}", (x >> pos) & 0xffff);
    }
    text
}

#[test]
fn a_flow_compiled_without_tracing_has_no_trace_code() {
    // SPEC 13: tracing is compiled in only for flows that ask for it. The same source, untraced
    // and traced at each level: only the traced code calls the trace helper, once per trace point
    // (the `for` per iteration and at `done`, `capture` at `as` and `captured`, the host call).
    let mut registry = Registry::new();
    registry
        .event("~event tick { n: i64 } | ok i64", |n: i64| n)
        .unwrap();
    let engine = Engine::new(registry);
    let source = "~capture({ sum: 0 })\n| as acc |> for(0..n)\n    | each i |> tick(n: i)\n        | ok k |> captured { sum: acc.sum + k }\n| captured t |> result t.sum";
    let helper = format!(
        "iconst.i64 {}",
        clif_constant(koru_jit::jit::trace_helper_address())
    );
    let clif = |level: koru_jit::TraceLevel| {
        let options = CompileOptions::default()
            .input("n", koru_jit::Type::Int)
            .trace(level);
        let flow = engine.compile("t", source, &options).unwrap();
        let (_, listing) = koru_jit::jit::compile_with_listing(
            flow.program(),
            flow.layout(),
            engine.registry(),
            true,
        )
        .unwrap();
        listing.clif
    };
    let untraced = clif(koru_jit::TraceLevel::Off);
    let dispatches = clif(koru_jit::TraceLevel::Dispatches);
    let all = clif(koru_jit::TraceLevel::All);
    assert_eq!(untraced.matches(&helper).count(), 0, "{untraced}");
    assert_eq!(dispatches.matches(&helper).count(), 1, "{dispatches}");
    assert_eq!(all.matches(&helper).count(), 5, "{all}");
    // Nothing else differs in the untraced code: it has exactly the calls of the traced one
    // minus the trace calls.
    let calls = |clif: &str| clif.matches("call_indirect").count();
    assert_eq!(calls(&dispatches), calls(&untraced) + 1);
    assert_eq!(calls(&all), calls(&untraced) + 5);
}
