//! Obligations (SPEC 12) through the embedding API: phantom states built in Rust, failing
//! discharges, the handle bound, every way a run ends, per-run numbering under pooled and
//! concurrent runs, and the report's JSON. The language rules are in `tests/flows/obligations/`.

use koru_jit::types::{PhantomAt, PhantomSlot};
use koru_jit::{
    Args, CaptureSink, CompileOptions, Engine, ErrorCode, EventSig, Flow, HostError, Inputs,
    InterruptHandle, Outcome, PayloadType, Phantom, Registry, RegistryError, Reply, RunLimits,
    RunReport, Tier, TierPolicy, Type,
};
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<String>>>;

fn opened() -> Phantom {
    Phantom::Creates("opened".into())
}

/// `res.open { name: str } | opened str[opened!]` and `res.close { handle: str[!opened] }`,
/// declared with the Rust builder; `res.close` fails for handles starting `bad` and panics for
/// `panic`; `res.tick` triggers `tick_interrupts` (a handle runs may stop by). Every call is
/// logged.
fn registry_with(log: &Log, tick_interrupts: InterruptHandle) -> Registry {
    let mut registry = Registry::with_std();
    registry
        .event("~event res.tick {}", move || tick_interrupts.interrupt())
        .unwrap();
    registry
        .declare_event(
            EventSig::new("res.open")
                .input("name", Type::Str)
                .branch_handle("opened", opened()),
        )
        .unwrap();
    registry
        .declare_event(
            EventSig::new("res.info")
                .input_handle("handle", Phantom::Requires("opened".into()))
                .branch(
                    "info",
                    PayloadType::Struct(vec![
                        ("name".into(), Type::Str),
                        ("also".into(), Type::Str),
                    ]),
                )
                .field_handle("also", Phantom::Creates("opened".into())),
        )
        .unwrap();
    registry
        .declare_event(
            EventSig::new("res.close").input_handle("handle", Phantom::Discharges("opened".into())),
        )
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("res.open", move |args: &Args<'_>| {
            l.lock().unwrap().push(format!("open({})", args.str(0)));
            format!("{}{}", args.str(0), args.handles_opened() + 1)
        })
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("res.info", move |args: &Args<'_>| {
            l.lock().unwrap().push(format!("info({})", args.str(0)));
            Reply::branch("info")
                .field("name", args.str(0).to_string())
                .field("also", format!("sub{}", args.handles_opened() + 1))
        })
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("res.close", move |args: &Args<'_>| {
            let handle = args.str(0);
            l.lock().unwrap().push(format!("close({handle})"));
            if handle.starts_with("panic") {
                panic!("close of {handle}");
            }
            if handle.starts_with("bad") {
                return Err(HostError::new(format!("cannot close {handle}")));
            }
            Ok(())
        })
        .unwrap();
    registry
}

fn registry(log: &Log) -> Registry {
    registry_with(log, InterruptHandle::new())
}

fn compile(log: &Log, source: &str, tier: Tier) -> Flow {
    compile_with(registry(log), source, tier)
}

fn compile_with(registry: Registry, source: &str, tier: Tier) -> Flow {
    let config = koru_jit::EngineConfig {
        policy: TierPolicy::eager(),
        ..Default::default()
    };
    Engine::with_config(registry, config)
        .compile("t", source, &CompileOptions::default().tier(tier))
        .unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn report(flow: &Flow, limits: &RunLimits) -> RunReport {
    flow.run_report(&Inputs::new(), limits, &CaptureSink::new())
        .unwrap()
}

fn discharged(report: &RunReport) -> Vec<String> {
    report
        .obligations
        .discharged
        .iter()
        .map(|d| match &d.failure {
            None => format!("{}({})", d.event, d.handle),
            Some((code, _)) => format!("{}({}) {}", d.event, d.handle, code.as_str()),
        })
        .collect()
}

const TIERS: [Tier; 3] = [Tier::Interp, Tier::Jit, Tier::Auto];

#[test]
fn the_rust_builder_declares_phantom_states_that_the_checker_and_both_tiers_follow() {
    let source = "~res.open(name: \"a\") | opened a |> res.info(handle: a) | info i |> res.close(handle: i.also)";
    for tier in TIERS {
        let log = Log::default();
        let flow = compile(&log, source, tier);
        let report = report(&flow, &RunLimits::default());
        assert!(matches!(report.outcome, Outcome::Ok { .. }), "{tier:?}");
        // `sub2` (a struct field marked `str[opened!]`) was closed by the flow, `a1` at the end.
        assert_eq!(discharged(&report), ["res.close(a1)"], "{tier:?}");
        assert_eq!(
            *log.lock().unwrap(),
            ["open(a)", "info(a1)", "close(sub2)", "close(a1)"],
            "{tier:?}"
        );
    }
    // The builder's signature is what the declaration text makes.
    let mut from_text = Registry::new();
    from_text
        .declare("~event res.open { name: str } | opened str[opened!]")
        .unwrap();
    let built = EventSig::new("res.open")
        .input("name", Type::Str)
        .branch_handle("opened", opened());
    assert_eq!(*from_text.events()[0].sig, built);
    assert_eq!(
        built.phantoms,
        [PhantomAt {
            slot: PhantomSlot::Field {
                branch: 0,
                field: 0
            },
            phantom: opened()
        }]
    );
}

#[test]
fn the_registry_refuses_phantom_states_that_do_not_fit_the_signature() {
    let mut registry = Registry::new();
    let bad = [
        EventSig::new("a")
            .input("n", Type::Int)
            .input_handle("h", opened()),
        EventSig::new("b").branch_handle("x", Phantom::Discharges("s".into())),
        EventSig::new("c")
            .branch("x", PayloadType::Struct(vec![("n".into(), Type::Int)]))
            .field_handle("n", opened()),
        EventSig::new("d")
            .branch("x", PayloadType::Struct(vec![("n".into(), Type::Str)]))
            .field_handle("missing", opened()),
    ];
    for sig in bad {
        let name = sig.name.clone();
        assert!(
            matches!(registry.declare_event(sig), Err(RegistryError::Phantom(_))),
            "{name}"
        );
    }
    // The same mistakes in Koru text are E0204 at the phantom state.
    let Err(RegistryError::Declaration(errors)) = registry.declare("~event e { h: str[opened!] }")
    else {
        panic!("expected a declaration error")
    };
    assert_eq!(errors.positions(), vec![(koru_jit::Code::E0204, 1, 19)]);
}

#[test]
fn failing_discharges_are_reported_and_the_rest_still_run_in_every_tier() {
    let source = "~res.open(name: \"bad\") | opened a |> res.open(name: \"panic\") | opened b |> res.open(name: \"ok\") | opened c |> _";
    for tier in TIERS {
        let log = Log::default();
        let flow = compile(&log, source, tier);
        let report = report(&flow, &RunLimits::default());
        assert_eq!(
            discharged(&report),
            [
                "res.close(ok3)",
                "res.close(panic2) HostPanic",
                "res.close(bad1) HostError"
            ],
            "{tier:?}"
        );
        assert_eq!(report.obligations.handles, 2);
        let failure = report.obligations.discharged[2].failure.as_ref().unwrap();
        assert_eq!(failure.1, "cannot close bad1");
        // The engine is still usable after a panicking discharge: run again.
        assert_eq!(
            discharged(&self::report(&flow, &RunLimits::default())).len(),
            3
        );
    }
}

#[test]
fn past_the_handle_bound_the_run_stops_and_every_handle_is_discharged_newest_first() {
    let source = "~for(0..5000)\n| each _ |> res.open(name: \"h\") | opened _ |> _\n";
    for tier in TIERS {
        for (limit, kept) in [(None, 1024u64), (Some(0), 0), (Some(7), 7)] {
            let log = Log::default();
            let flow = compile(&log, source, tier);
            let limits = RunLimits {
                max_handles: limit,
                ..RunLimits::default()
            };
            let report = report(&flow, &limits);
            let Outcome::Error { error, fuel } = &report.outcome else {
                panic!("{tier:?}: {:?}", report.outcome)
            };
            assert_eq!(error.code, ErrorCode::TooManyHandles);
            assert_eq!(*fuel, kept + 1);
            let names = discharged(&report);
            assert_eq!(names.len() as u64, kept + 1, "{tier:?}");
            assert_eq!(names[0], format!("res.close(h{})", kept + 1));
            assert_eq!(names.last().unwrap(), "res.close(h1)");
            assert_eq!(report.obligations.handles, 0);
            // Discharges cost no fuel and are made after the limit stopped the run.
            assert_eq!(report.outcome.fuel(), kept + 1);
        }
    }
}

#[test]
fn every_way_a_run_ends_discharges_its_handles() {
    let open_then = |then: &str| {
        format!("~res.open(name: \"a\") | opened a |> res.open(name: \"b\") | opened b |> {then}")
    };
    let endless = open_then("while(true) | body |> res.tick()");
    let interrupt = InterruptHandle::new();
    let cases: Vec<(String, RunLimits, &str)> = vec![
        (open_then("_"), RunLimits::default(), "ok"),
        (
            endless.clone(),
            RunLimits {
                fuel: Some(10),
                ..RunLimits::default()
            },
            "Fuel",
        ),
        (
            endless.clone(),
            RunLimits {
                max_iterations: Some(300),
                ..RunLimits::default()
            },
            "LoopIterations",
        ),
        (
            endless.clone(),
            RunLimits {
                // Triggered by the flow's first `res.tick`, inside the loop.
                interrupt: Some(interrupt.clone()),
                ..RunLimits::default()
            },
            "Interrupted",
        ),
        (
            endless,
            RunLimits {
                deadline: Some(std::time::Instant::now() + std::time::Duration::from_millis(20)),
                ..RunLimits::default()
            },
            "Deadline",
        ),
        (
            open_then("std.io:println(text: \"a long line\")"),
            RunLimits {
                max_output_bytes: Some(3),
                ..RunLimits::default()
            },
            "Output",
        ),
    ];
    for (source, limits, expected) in cases {
        for tier in TIERS {
            let log = Log::default();
            interrupt.reset();
            let flow = compile_with(registry_with(&log, interrupt.clone()), &source, tier);
            let mut limits = limits.clone();
            if limits.deadline.is_some() {
                // From now, after the compile: the loop runs until it passes.
                limits.deadline =
                    Some(std::time::Instant::now() + std::time::Duration::from_millis(20));
            }
            let report = report(&flow, &limits);
            let found = match &report.outcome {
                Outcome::Ok { .. } => "ok",
                Outcome::Exhausted { limit, .. } => limit.as_str(),
                Outcome::Error { error, .. } => error.code.as_str(),
            };
            assert_eq!(found, expected, "{tier:?} {source}");
            // Newest first, whatever stopped the run.
            assert_eq!(
                discharged(&report),
                ["res.close(b2)", "res.close(a1)"],
                "{tier:?} {expected}"
            );
            assert_eq!(report.obligations.handles, 0);
        }
    }
}

#[test]
fn handles_are_numbered_per_run_under_pooled_states_and_concurrent_runs() {
    let log = Log::default();
    let source = "~res.open(name: \"f\") | opened a |> res.open(name: \"f\") | opened b |> res.close(handle: b) |> res.open(name: \"f\") | opened c |> _";
    for tier in TIERS {
        let flow = compile(&log, source, tier);
        std::thread::scope(|threads| {
            for _ in 0..4 {
                let flow = flow.clone();
                threads.spawn(move || {
                    for _ in 0..25 {
                        let report = report(&flow, &RunLimits::default());
                        assert_eq!(discharged(&report), ["res.close(f3)", "res.close(f1)"]);
                    }
                });
            }
        });
    }
}

#[test]
fn auto_discharge_off_lists_the_open_handles_and_calls_nothing() {
    for tier in TIERS {
        let log = Log::default();
        let flow = compile(
            &log,
            "~res.open(name: \"x\") | opened a |> res.open(name: \"y\") | opened b |> _",
            tier,
        );
        let limits = RunLimits {
            keep_handles_open: true,
            ..RunLimits::default()
        };
        let report = report(&flow, &limits);
        assert_eq!(report.obligations.handles, 2);
        let open: Vec<(String, String, String)> = report
            .obligations
            .open_handles
            .iter()
            .map(|h| (h.state.to_string(), h.handle.clone(), h.event.to_string()))
            .collect();
        assert_eq!(
            open,
            [
                ("opened".into(), "x1".into(), "res.open".into()),
                ("opened".into(), "y2".into(), "res.open".into())
            ]
        );
        assert_eq!(*log.lock().unwrap(), ["open(x)", "open(y)"]);
        assert_eq!(
            report.to_json().to_string(),
            r#"{"outcome":"ok","value":{"branch":"opened","value":"y2"},"fuel":2,"open_handles":[{"state":"opened","handle":"x1","event":"res.open"},{"state":"opened","handle":"y2","event":"res.open"}],"handles":2}"#
        );
    }
}

#[test]
fn the_report_json_shows_discharges_only_for_flows_that_can_open_handles() {
    let log = Log::default();
    let flow = compile(&log, "~res.open(name: \"x\") | opened _ |> _", Tier::Interp);
    assert_eq!(
        report(&flow, &RunLimits::default()).to_json().to_string(),
        r#"{"outcome":"ok","value":{"branch":"opened","value":"x1"},"fuel":1,"discharged":[{"event":"res.close","handle":"x1"}],"handles":0}"#
    );
    let plain = compile(&log, "~std.io:print(text: \"\")", Tier::Interp);
    assert_eq!(
        report(&plain, &RunLimits::default()).to_json().to_string(),
        r#"{"outcome":"ok","value":{"branch":""},"fuel":1}"#
    );
}

#[test]
fn hostile_long_handles_are_bounded_in_bytes_not_only_in_count() {
    // A host that echoes a flow's 1 MiB argument into each handle: past 16 MiB of open handle
    // text the run stops, whatever the count bound, and everything open is discharged.
    let log = Log::default();
    let engine = Engine::new(registry(&log));
    for tier in [Tier::Interp, Tier::Jit] {
        let flow = engine
            .compile(
                "t",
                "~for(0..1000)\n| each _ |> res.open(name: big) | opened _ |> _\n",
                &CompileOptions::default().input("big", Type::Str).tier(tier),
            )
            .unwrap();
        let big = "x".repeat(1 << 20);
        let report = flow
            .run_report(
                &Inputs::new().set("big", big.as_str()),
                &RunLimits::default(),
                &CaptureSink::new(),
            )
            .unwrap();
        let Outcome::Error { error, .. } = &report.outcome else {
            panic!("{:?}", report.outcome)
        };
        assert_eq!(error.code, ErrorCode::TooManyHandles, "{}", error.message);
        // 16 MiB hold 15 handles of 1 MiB and a few bytes: the 17th crosses the bound.
        assert_eq!(report.obligations.discharged.len(), 16, "{tier:?}");
        assert_eq!(report.obligations.handles, 0);
    }
}

#[test]
fn hostile_thousands_of_uses_after_release_are_each_reported_once() {
    let mut source = String::new();
    for _ in 0..3000 {
        source.push_str(
            "~res.open(name: \"a\") | opened h |> res.close(handle: h) |> res.info(handle: h) | info _ |> _\n",
        );
    }
    let log = Log::default();
    let errors = Engine::new(registry(&log))
        .compile("t", &source, &CompileOptions::default())
        .err()
        .expect("uses after release are errors");
    let positions = errors.positions();
    assert_eq!(positions.len(), 3000);
    assert!(positions
        .iter()
        .enumerate()
        .all(|(i, p)| *p == (koru_jit::Code::E0211, i as u32 + 1, 77)));
    assert!(log.lock().unwrap().is_empty(), "nothing ran");
}

#[test]
fn hostile_deeply_nested_handles_close_inside_out() {
    // 25 nested opens, each released at the innermost step in reverse order: nothing is left
    // (50 levels, within the nesting bound of 64).
    let depth = 25;
    let mut source = String::from("~");
    for i in 0..depth {
        source.push_str(&format!("res.open(name: \"n\") | opened h{i} |> "));
    }
    for i in (0..depth).rev() {
        source.push_str(&format!("res.close(handle: h{i}) |> "));
    }
    source.push('_');
    for tier in TIERS {
        let log = Log::default();
        let flow = compile(&log, &source, tier);
        let report = report(&flow, &RunLimits::default());
        assert!(matches!(report.outcome, Outcome::Ok { .. }), "{tier:?}");
        assert!(report.obligations.discharged.is_empty());
        assert_eq!(log.lock().unwrap().len(), 2 * depth);
        // With fuel for half of them, the 20 still open are closed newest first.
        let limits = RunLimits {
            fuel: Some(20),
            ..RunLimits::default()
        };
        let stopped = self::report(&flow, &limits);
        let names = discharged(&stopped);
        let expected: Vec<String> = (1..=20).rev().map(|n| format!("res.close(n{n})")).collect();
        assert_eq!(names, expected, "{tier:?}");
    }
}

#[test]
fn discharges_are_outside_the_static_cost_bound_and_the_fuel_used() {
    let log = Log::default();
    let flow = compile(
        &log,
        "~res.open(name: \"a\") | opened a |> for(0..10) | each _ |> res.info(handle: a) | info i |> res.close(handle: i.also)\n",
        Tier::Jit,
    );
    let bound = flow.cost_bound(&Inputs::new());
    let report = report(&flow, &RunLimits::default());
    // open + 10 x (info + close): the final close of `a` is free.
    assert_eq!(report.outcome.fuel(), 21);
    assert_eq!(bound.fuel, Some(21));
    assert_eq!(discharged(&report), ["res.close(a1)"]);
}

#[test]
fn a_run_that_moves_to_native_code_mid_loop_with_handles_open_discharges_as_the_interpreter() {
    // The default tier policy: the auto tier interprets, compiles at the loop threshold and
    // continues in native code at a loop head, with both handles open.
    let source = "~res.open(name: \"a\") | opened a |> res.open(name: \"b\") | opened b |> for(0..200000) | each _ |> res.info(handle: a) | info i |> res.close(handle: i.also)";
    let limits = RunLimits {
        fuel: Some(300_001),
        ..RunLimits::default()
    };
    let log = Log::default();
    let interpreted = report(&compile(&log, source, Tier::Interp), &limits);
    let interpreted_calls = std::mem::take(&mut *log.lock().unwrap());
    let engine = Engine::new(registry(&log));
    let flow = engine
        .compile("t", source, &CompileOptions::default().tier(Tier::Auto))
        .unwrap();
    let switched = report(&flow, &limits);
    let stats = flow.stats();
    assert!(
        stats.osr_entries >= 1 && stats.native_iterations > 0 && stats.interpreted_iterations > 0,
        "the run did not move to native code mid-loop: {stats:?}"
    );
    assert_eq!(switched, interpreted);
    // The fuel ran out between an `info` (which opened `sub150002`) and its `close`.
    assert_eq!(
        discharged(&switched),
        ["res.close(sub150002)", "res.close(b2)", "res.close(a1)"]
    );
    assert!(*log.lock().unwrap() == interpreted_calls);
}

#[test]
fn typed_closures_open_and_release_handles_in_every_tier() {
    // Closures whose parameters are typed (`|path: &str|`) reach native code through their own
    // shims, not the positional one: the release and the opening go through the same run state.
    for tier in TIERS {
        let log = Log::default();
        let mut registry = Registry::with_std();
        let l = log.clone();
        registry
            .event(
                "~event t.open { path: str } | opened str[t!]",
                move |path: &str| {
                    l.lock().unwrap().push(format!("open({path})"));
                    format!("t:{path}")
                },
            )
            .unwrap();
        let l = log.clone();
        registry
            .event("~event t.close { h: str[!t] }", move |h: &str| {
                l.lock().unwrap().push(format!("close({h})"));
            })
            .unwrap();
        let flow = compile_with(
            registry,
            "~for(0..3) | each i |> t.open(path: i) | opened h |> t.close(h: h) |> t.open(path: \"last\") | opened _ |> _",
            tier,
        );
        let report = report(&flow, &RunLimits::default());
        assert_eq!(
            discharged(&report),
            ["t.close(t:last)", "t.close(t:last)", "t.close(t:last)"],
            "{tier:?}"
        );
        assert_eq!(
            log.lock().unwrap()[..3],
            ["open(0)", "close(t:0)", "open(last)"],
            "{tier:?}"
        );
    }
}
