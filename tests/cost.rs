//! Static cost bounds: known before running, exact for literal and input ranges, never below
//! what a run uses.

mod common;

use koru_jit::{CompileOptions, CostBound, Engine, Inputs, Limit, RunLimits, Tier, Type};

fn bound_of(source: &str, options: CompileOptions, inputs: &Inputs) -> (CostBound, u64, u64) {
    let (registry, _, _) = common::test_registry();
    let engine = Engine::new(registry);
    let flow = engine
        .compile("cost", source, &options.tier(Tier::Interp))
        .unwrap();
    let bound = flow.cost_bound(inputs);
    let outcome = flow.run(inputs, &RunLimits::default()).unwrap();
    let stats = flow.stats();
    (
        bound,
        outcome.fuel(),
        stats.interpreted_iterations + stats.native_iterations,
    )
}

#[test]
fn literal_ranges_give_exact_bounds() {
    let source = "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: \"0\", b: i)\n| done |> _\n";
    let (bound, fuel, iterations) = bound_of(source, CompileOptions::default(), &Inputs::new());
    assert_eq!(
        bound,
        CostBound {
            fuel: Some(100_000),
            iterations: Some(101_000)
        }
    );
    assert_eq!((fuel, iterations), (100_000, 101_000));
}

#[test]
fn flow_inputs_in_ranges_are_read_from_the_run_inputs() {
    let source =
        "~for(start..start + n * 2)\n| each i |> test.typed_add(a: i, b: 1)\n    | sum _ |> _";
    let options = CompileOptions::default()
        .input("start", Type::Int)
        .input("n", Type::Int);
    let inputs = Inputs::new().set("start", 5i64).set("n", 7i64);
    let (bound, fuel, iterations) = bound_of(source, options.clone(), &inputs);
    assert_eq!(
        bound,
        CostBound {
            fuel: Some(14),
            iterations: Some(14)
        }
    );
    assert_eq!((fuel, iterations), (14, 14));
    let (bound, _, _) = bound_of(
        source,
        options,
        &Inputs::new().set("start", 5i64).set("n", -3i64),
    );
    assert_eq!(
        bound,
        CostBound {
            fuel: Some(0),
            iterations: Some(0)
        },
        "an empty range"
    );
}

#[test]
fn the_costliest_continuation_counts_and_subflows_cost_one_plus_their_body() {
    let source = r#"
~event twice { n: i64 }
| done

~twice = test.typed_add(a: n, b: n) | sum _ |> test.typed_add(a: n, b: 1) | sum _ |> done

~test.pick(n: 2)
| zero |> _
| one |> twice(n: 1)
| many m |> for(0..3)
    | each _ |> std.io:print(text: "x")
|? |> _
"#;
    let (bound, fuel, _) = bound_of(source, CompileOptions::default(), &Inputs::new());
    // pick (1) + max(one: twice = 1 + 2, many: 3 prints) = 4; iterations at most 3.
    assert_eq!(
        bound,
        CostBound {
            fuel: Some(4),
            iterations: Some(3)
        }
    );
    assert_eq!(fuel, 4, "pick and three prints");
}

#[test]
fn while_loops_and_ranges_of_run_time_values_are_unbounded() {
    let source = "~capture({ n: 0 })\n| as acc |> while(acc.n < 10)\n    | body |> captured { n: acc.n + 1 }\n| captured _ |> _";
    let (bound, _, _) = bound_of(source, CompileOptions::default(), &Inputs::new());
    assert_eq!(
        bound,
        CostBound {
            fuel: Some(0),
            iterations: None
        }
    );
    let source = "~test.typed_add(a: 2, b: 3)\n| sum s |> for(0..s)\n    | each i |> test.typed_add(a: i, b: 0)\n        | sum _ |> _";
    let (bound, fuel, _) = bound_of(source, CompileOptions::default(), &Inputs::new());
    assert_eq!(
        bound,
        CostBound {
            fuel: None,
            iterations: None
        }
    );
    assert_eq!(fuel, 6);
}

#[test]
fn scope_costs_are_counted() {
    let (registry, _, _) = common::test_registry();
    let engine = Engine::new(registry);
    let flow = engine
        .compile(
            "cost",
            "~for(0..3)\n| each _ |> add(a: \"1\", b: \"2\")",
            &CompileOptions::default().scope("priced"),
        )
        .unwrap();
    assert_eq!(
        flow.cost_bound(&Inputs::new()),
        CostBound {
            fuel: Some(15),
            iterations: Some(3)
        }
    );
}

#[test]
fn a_caller_can_refuse_a_flow_whose_bound_exceeds_its_limits() {
    let bound = CostBound {
        fuel: Some(100),
        iterations: Some(10),
    };
    assert_eq!(bound.exceeds(&RunLimits::default()), None);
    assert_eq!(
        bound.exceeds(&RunLimits {
            fuel: Some(100),
            max_iterations: Some(10),
            ..RunLimits::default()
        }),
        None
    );
    assert_eq!(
        bound.exceeds(&RunLimits {
            fuel: Some(99),
            ..RunLimits::default()
        }),
        Some(Limit::Fuel)
    );
    assert_eq!(
        bound.exceeds(&RunLimits {
            max_iterations: Some(9),
            ..RunLimits::default()
        }),
        Some(Limit::LoopIterations)
    );
    let unbounded = CostBound {
        fuel: None,
        iterations: Some(0),
    };
    assert_eq!(
        unbounded.exceeds(&RunLimits {
            fuel: Some(u64::MAX),
            ..RunLimits::default()
        }),
        Some(Limit::Fuel)
    );
    assert_eq!(
        unbounded.to_json().to_string(),
        r#"{"fuel":null,"iterations":0}"#
    );
}

#[test]
fn a_match_costs_nothing_itself_and_its_costliest_arm_counts() {
    // SPEC 10: no fuel and no iteration for the match; the bound takes its costliest arm (two
    // dispatches and a 3-iteration loop), and the run (which takes the cheap arm) stays below.
    let source = "~for(0..10)\n| each i |> match(i % 3)\n    | [0] |> add(a: \"0\", b: i)\n    | [1, 2] when i > 100 |> for(0..3)\n        | each j |> add(a: \"0\", b: j)\n    |? |> _\n";
    let (bound, fuel, iterations) = bound_of(source, CompileOptions::default(), &Inputs::new());
    assert_eq!(
        bound,
        CostBound {
            fuel: Some(30),
            iterations: Some(40)
        }
    );
    assert_eq!((fuel, iterations), (4, 10));
}

#[test]
fn yielded_continuations_count_in_the_bound() {
    // SPEC 11: the call costs 1, a yield nothing, the inlined continuation what it dispatches:
    // 1 + 5 * 2 fuel, and 5 iterations of `repeat`'s loop plus 2 per continuation's loop.
    let source = "~import \"$std/control\"\n~repeat(n: 5)\n| each i |> for(0..2)\n    | each j |> add(a: \"1\", b: j)\n| done |> _\n";
    let (bound, fuel, iterations) = bound_of(source, CompileOptions::default(), &Inputs::new());
    assert_eq!(
        bound,
        CostBound {
            fuel: Some(11),
            iterations: Some(15)
        }
    );
    assert_eq!((fuel, iterations), (11, 15));
}
