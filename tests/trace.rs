//! Traces as embedders use them (SPEC 13): the trace sink of a run, its bounds, a sink that
//! panics, the compile option and the cache, and a run that moves to native code mid-loop.
//! The language of trace lines is in `tests/flows/trace/`, run on every tier.

use koru_jit::{
    CaptureTrace, CompileOptions, Engine, EngineConfig, Inputs, Outcome, Registry, Reply,
    RunLimits, Tier, TierPolicy, TraceLevel, TraceSink,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn registry() -> Registry {
    let mut registry = Registry::with_std();
    registry
        .event(
            "~event users.get { id: i64 } | found { name: []const u8 } | missing",
            |id: i64| {
                if id == 1 {
                    Reply::branch("found").field("name", "ada")
                } else {
                    Reply::branch("missing")
                }
            },
        )
        .unwrap();
    registry
        .event("~event big { n: i64 } | text []const u8", |n: i64| {
            "x".repeat(n as usize)
        })
        .unwrap();
    registry
        .event("~event tick { n: i64 } | ok i64", |n: i64| n)
        .unwrap();
    registry
}

fn traced(tier: Tier, level: TraceLevel) -> CompileOptions {
    CompileOptions::default().tier(tier).trace(level)
}

fn limits_with(trace: &Arc<CaptureTrace>) -> RunLimits {
    RunLimits {
        trace: Some(trace.clone()),
        ..RunLimits::default()
    }
}

#[test]
fn the_spec_example_line_in_both_tiers() {
    let engine = Engine::new(registry());
    for tier in [Tier::Interp, Tier::Jit] {
        let flow = engine
            .compile(
                "users",
                "~users.get(id: 1)\n| found _ |> users.get(id: 2)\n    | found _ |> _\n    | missing |> _\n| missing |> _",
                &traced(tier, TraceLevel::Dispatches),
            )
            .unwrap();
        assert_eq!(flow.tier(), tier);
        let trace = Arc::new(CaptureTrace::new());
        let outcome = flow.run(&Inputs::new(), &limits_with(&trace)).unwrap();
        assert!(
            matches!(outcome, Outcome::Ok { fuel: 2, .. }),
            "{outcome:?}"
        );
        assert_eq!(
            trace.take_lines(),
            [
                "TRACE users.get -> found {\"name\":\"ada\"}",
                "TRACE users.get -> missing"
            ]
        );
    }
}

#[test]
fn a_flow_compiled_without_tracing_writes_no_line_and_a_sinkless_run_writes_none() {
    let engine = Engine::new(registry());
    let source = "~users.get(id: 1) | found _ |> _ | missing |> _";
    for tier in [Tier::Interp, Tier::Jit] {
        let untraced = engine
            .compile("u", source, &CompileOptions::default().tier(tier))
            .unwrap();
        let trace = Arc::new(CaptureTrace::new());
        untraced.run(&Inputs::new(), &limits_with(&trace)).unwrap();
        assert!(trace.take_lines().is_empty());
        // Traced, but run without a sink: nothing to write to, and the same outcome.
        let traced_flow = engine
            .compile("u", source, &traced(tier, TraceLevel::All))
            .unwrap();
        assert_eq!(
            traced_flow
                .run(&Inputs::new(), &RunLimits::default())
                .unwrap(),
            untraced.run(&Inputs::new(), &RunLimits::default()).unwrap()
        );
    }
    // The trace level is part of the cache key: three levels, three flows.
    let before = engine.cache_stats().misses;
    for level in [TraceLevel::Off, TraceLevel::Dispatches, TraceLevel::All] {
        engine
            .compile("k", "~tick(n: 1)", &CompileOptions::default().trace(level))
            .unwrap();
    }
    assert_eq!(engine.cache_stats().misses, before + 3);
}

#[test]
fn a_huge_payload_is_formatted_only_up_to_the_byte_bound() {
    // A host reply of 8 MiB, traced under a bound of 1 KiB: the line does not fit, is not
    // written (no half line), the sink is told the trace was cut, and the run finishes.
    let engine = Engine::new(registry());
    for tier in [Tier::Interp, Tier::Jit] {
        let flow = engine
            .compile(
                "big",
                "~big(n: 8388608) | text _ |> tick(n: 1)",
                &traced(tier, TraceLevel::Dispatches),
            )
            .unwrap();
        let trace = Arc::new(CaptureTrace::new());
        let limits = RunLimits {
            max_trace_bytes: Some(1024),
            ..limits_with(&trace)
        };
        let outcome = flow.run(&Inputs::new(), &limits).unwrap();
        assert!(
            matches!(outcome, Outcome::Ok { fuel: 2, .. }),
            "{outcome:?}"
        );
        assert!(trace.was_cut());
        assert!(trace.take_lines().is_empty());
    }
}

/// Counts lines and cuts; panics at line `panic_at` (1-based), if set.
#[derive(Default)]
struct Counting {
    lines: AtomicUsize,
    cuts: AtomicUsize,
    panic_at: usize,
}

impl TraceSink for Counting {
    fn line(&self, _line: &str) {
        let n = self.lines.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.panic_at {
            panic!("the trace sink failed");
        }
    }

    fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_million_traced_dispatches_keep_the_line_bound_and_cut_once() {
    let engine = Engine::new(registry());
    for tier in [Tier::Interp, Tier::Jit] {
        let flow = engine
            .compile(
                "loop",
                "~for(0..1000000)\n| each i |> tick(n: i)",
                &traced(tier, TraceLevel::All),
            )
            .unwrap();
        let sink = Arc::new(Counting::default());
        let limits = RunLimits {
            trace: Some(sink.clone()),
            max_trace_lines: Some(1000),
            ..RunLimits::default()
        };
        let outcome = flow.run(&Inputs::new(), &limits).unwrap();
        assert!(
            matches!(
                outcome,
                Outcome::Ok {
                    fuel: 1_000_000,
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert_eq!(sink.lines.load(Ordering::Relaxed), 1000);
        assert_eq!(sink.cuts.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn a_sink_that_panics_stops_the_trace_and_not_the_run() {
    let engine = Engine::new(registry());
    for tier in [Tier::Interp, Tier::Jit] {
        let flow = engine
            .compile(
                "loop",
                "~for(0..10)\n| each i |> tick(n: i)",
                &traced(tier, TraceLevel::Dispatches),
            )
            .unwrap();
        let sink = Arc::new(Counting {
            panic_at: 3,
            ..Counting::default()
        });
        let limits = RunLimits {
            trace: Some(sink.clone()),
            ..RunLimits::default()
        };
        let outcome = flow.run(&Inputs::new(), &limits).unwrap();
        assert!(
            matches!(outcome, Outcome::Ok { fuel: 10, .. }),
            "{outcome:?}"
        );
        // The third line panicked; nothing was written after it, and it was no cut.
        assert_eq!(sink.lines.load(Ordering::Relaxed), 3);
        assert_eq!(sink.cuts.load(Ordering::Relaxed), 0);
    }
}

#[test]
fn a_run_that_moves_to_native_code_mid_loop_traces_every_iteration_once() {
    // The loop gets hot at iteration 100 of 300; the run goes on in native code at the loop's
    // head (on-stack replacement). Its trace is the interpreter's, line for line.
    let config = EngineConfig {
        policy: TierPolicy {
            loop_threshold: 100,
            background: false,
            ..TierPolicy::default()
        },
        ..EngineConfig::default()
    };
    let source = "~for(0..300)\n| each i |> tick(n: i)\n    | ok k |> _";
    let auto = Engine::with_config(registry(), config)
        .compile("osr", source, &traced(Tier::Auto, TraceLevel::All))
        .unwrap();
    let trace = Arc::new(CaptureTrace::new());
    auto.run(&Inputs::new(), &limits_with(&trace)).unwrap();
    assert_eq!(auto.stats().osr_entries, 1);
    let switched = trace.take_lines();
    let interp = Engine::new(registry())
        .compile("osr", source, &traced(Tier::Interp, TraceLevel::All))
        .unwrap();
    interp.run(&Inputs::new(), &limits_with(&trace)).unwrap();
    let interpreted = trace.take_lines();
    assert_eq!(switched, interpreted);
    assert_eq!(switched.len(), 601);
    assert_eq!(switched[0], "TRACE for -> each 0");
    assert_eq!(switched[1], "TRACE tick -> ok 0");
    assert_eq!(switched[599], "TRACE tick -> ok 299");
    assert_eq!(switched[600], "TRACE for -> done");
}
