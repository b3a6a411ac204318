//! Limits that hold in every tier, for flows from untrusted sources.

mod common;

use koru_jit::{
    Code, CompileOptions, Engine, EngineConfig, ErrorCode, FrontEndLimits, Inputs, InterruptHandle,
    Limit, Outcome, Registry, RunLimits, Tier, TierPolicy,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Held by the tests that measure time: one of them starves the CPU on purpose, and the others
/// must not run beside it (the test harness runs tests on parallel threads).
static TIMING: Mutex<()> = Mutex::new(());

fn timing() -> MutexGuard<'static, ()> {
    TIMING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A run of `flow` that must end by `deadline`.
fn run_until(flow: &koru_jit::Flow, deadline: Instant) -> Outcome {
    flow.run(
        &Inputs::new(),
        &RunLimits {
            deadline: Some(deadline),
            ..RunLimits::default()
        },
    )
    .unwrap()
}

const FOREVER: &str = "~while(true)\n| body |> _";

fn engines() -> Vec<(Tier, Engine)> {
    [Tier::Interp, Tier::Jit, Tier::Auto]
        .into_iter()
        .map(|tier| {
            let config = EngineConfig {
                policy: TierPolicy::eager(),
                ..EngineConfig::default()
            };
            (tier, Engine::with_config(common::test_registry().0, config))
        })
        .collect()
}

fn run(engine: &Engine, tier: Tier, source: &str, limits: &RunLimits) -> Outcome {
    let flow = engine
        .compile("limits", source, &CompileOptions::default().tier(tier))
        .unwrap();
    flow.run(&Inputs::new(), limits).unwrap()
}

#[test]
fn while_true_is_stopped_by_the_iteration_limit_at_the_same_point_in_every_tier() {
    for (tier, engine) in engines() {
        let outcome = run(
            &engine,
            tier,
            FOREVER,
            &RunLimits {
                max_iterations: Some(12_345),
                ..RunLimits::default()
            },
        );
        assert_eq!(
            outcome,
            Outcome::Exhausted {
                limit: Limit::LoopIterations,
                fuel: 0,
                last_event: None
            },
            "{tier:?}"
        );
        let flow = engine
            .compile("limits", FOREVER, &CompileOptions::default().tier(tier))
            .unwrap();
        flow.run(
            &Inputs::new(),
            &RunLimits {
                max_iterations: Some(12_345),
                ..RunLimits::default()
            },
        )
        .unwrap();
        let stats = flow.stats();
        assert_eq!(
            stats.interpreted_iterations + stats.native_iterations,
            2 * 12_345,
            "{tier:?}: exactly the limit, twice"
        );
    }
}

#[test]
fn while_true_is_stopped_by_a_deadline_in_every_tier() {
    let _timing = timing();
    for (tier, engine) in engines() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(30);
        let outcome = run(
            &engine,
            tier,
            FOREVER,
            &RunLimits {
                deadline: Some(deadline),
                ..RunLimits::default()
            },
        );
        assert!(
            matches!(
                outcome,
                Outcome::Exhausted {
                    limit: Limit::Deadline,
                    ..
                }
            ),
            "{tier:?}: {outcome:?}"
        );
        assert!(
            started.elapsed() < common::slowness::scaled(Duration::from_millis(500)),
            "{tier:?}: took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn while_true_is_stopped_by_an_interrupt_within_milliseconds_in_every_tier() {
    let _timing = timing();
    for (tier, engine) in engines() {
        let interrupt = InterruptHandle::new();
        let trigger = interrupt.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            trigger.interrupt();
            Instant::now()
        });
        let outcome = run(
            &engine,
            tier,
            FOREVER,
            &RunLimits {
                interrupt: Some(interrupt),
                ..RunLimits::default()
            },
        );
        let stopped = Instant::now();
        let requested = stopper.join().unwrap();
        assert!(
            matches!(
                outcome,
                Outcome::Exhausted {
                    limit: Limit::Interrupted,
                    ..
                }
            ),
            "{tier:?}: {outcome:?}"
        );
        let latency = stopped.saturating_duration_since(requested);
        assert!(
            latency < common::slowness::scaled(Duration::from_millis(250)),
            "{tier:?}: stopped {latency:?} after the request"
        );
    }
}

#[test]
fn fuel_stops_at_the_same_dispatch_in_every_tier() {
    let source = "~for(0..100)\n| each i |> test.typed_add(a: i, b: 1)\n    | sum s when s % 7 == 0 |> std.io:print(text: s)\n    | sum _ |> _";
    let mut outcomes = Vec::new();
    for (tier, engine) in engines() {
        for fuel in [0, 1, 8, 50] {
            outcomes.push((
                fuel,
                run(
                    &engine,
                    tier,
                    source,
                    &RunLimits {
                        fuel: Some(fuel),
                        ..RunLimits::default()
                    },
                ),
            ));
        }
    }
    for chunk in outcomes.chunks(4).skip(1) {
        assert_eq!(chunk, &outcomes[..4]);
    }
    assert!(matches!(
        outcomes[2].1,
        Outcome::Exhausted {
            limit: Limit::Fuel,
            fuel: 8,
            ..
        }
    ));
}

#[test]
fn run_time_errors_name_the_event_and_span_where_they_happened_in_every_tier() {
    let source =
        "~for(0..10)\n| each i |> test.typed_add(a: 100 / (5 - i), b: 1)\n    | sum _ |> _";
    for (tier, engine) in engines() {
        let Outcome::Error { error, fuel } = run(&engine, tier, source, &RunLimits::default())
        else {
            panic!("{tier:?}: expected an error")
        };
        assert_eq!(
            (
                error.code,
                error.event.as_deref(),
                error.line,
                error.column,
                fuel
            ),
            (ErrorCode::DivisionByZero, Some("test.typed_add"), 2, 31, 5),
            "{tier:?}"
        );
    }
    let source = "~for(0..3)\n| each i when 1 / (i - 1) > 0 |> _\n|? |> _";
    for (tier, engine) in engines() {
        let Outcome::Error { error, .. } = run(&engine, tier, source, &RunLimits::default()) else {
            panic!("{tier:?}: expected an error")
        };
        assert_eq!(
            (error.event.as_deref(), error.line, error.column),
            (Some("for"), 2, 15),
            "{tier:?}: a guard of `for` names `for`"
        );
    }
}

#[test]
fn front_end_resource_limits_are_errors_with_a_code() {
    let engine = Engine::new(Registry::with_std());
    let tight = FrontEndLimits {
        max_bindings: 8,
        max_state_bytes: 64,
        ..FrontEndLimits::default()
    };
    let source = "~capture({ a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9 })\n| as x |> _\n| captured y |> _";
    let errors = engine
        .compile(
            "big",
            source,
            &CompileOptions {
                limits: tight.clone(),
                ..CompileOptions::default()
            },
        )
        .err()
        .unwrap();
    assert_eq!(errors.diagnostics[0].code, Code::E0105);
    assert!(
        errors.diagnostics[0].message.contains("bindings"),
        "{}",
        errors.diagnostics[0].message
    );
    let small = FrontEndLimits {
        max_source_bytes: 10,
        ..FrontEndLimits::default()
    };
    let errors = engine
        .compile(
            "big",
            source,
            &CompileOptions {
                limits: small,
                ..CompileOptions::default()
            },
        )
        .err()
        .unwrap();
    assert!(errors.diagnostics[0].message.contains("limit of 10"));
    let state = FrontEndLimits {
        max_state_bytes: 32,
        ..FrontEndLimits::default()
    };
    let errors = engine
        .compile(
            "big",
            source,
            &CompileOptions {
                limits: state,
                ..CompileOptions::default()
            },
        )
        .err()
        .unwrap();
    assert!(
        errors.diagnostics[0].message.contains("flow state"),
        "{}",
        errors.diagnostics[0].message
    );
}

#[test]
fn a_deadline_is_noticed_at_the_next_dispatch_of_a_loop_of_slow_host_calls() {
    let _timing = timing();
    for tier in [Tier::Interp, Tier::Jit, Tier::Auto] {
        // When each call started and ended.
        let calls: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
        let record = calls.clone();
        let mut registry = Registry::new();
        registry
            .event("~event slow {} | ok", move || {
                let started = Instant::now();
                std::thread::sleep(Duration::from_millis(5));
                record.lock().unwrap().push((started, Instant::now()));
            })
            .unwrap();
        let config = EngineConfig {
            policy: TierPolicy::eager(),
            ..EngineConfig::default()
        };
        let engine = Engine::with_config(registry, config);
        let flow = engine
            .compile(
                "slow",
                "~for(0..1000)\n| each _ |> slow()",
                &CompileOptions::default().tier(tier),
            )
            .unwrap();
        let compiled_before = flow.stats().compile_time;
        let started = Instant::now();
        let deadline = started + Duration::from_millis(30);
        let outcome = run_until(&flow, deadline);
        let ended = Instant::now();
        let Outcome::Exhausted {
            limit: Limit::Deadline,
            fuel,
            ..
        } = outcome
        else {
            panic!("{tier:?}: {outcome:?}")
        };
        let calls = calls.lock().unwrap().clone();
        // The fuel of the calls made, and of the dispatch refused at the deadline if it was
        // noticed there rather than at the loop's check: both tiers charge a dispatch before
        // they look at the deadline (native code checks the deadline at a loop's head only
        // every so many iterations, so it notices at the charged dispatch).
        let made = calls.len() as u64;
        assert!(
            fuel == made || fuel == made + 1,
            "{tier:?}: fuel {fuel} after {made} calls"
        );
        // Not noticed early: the run went on until its deadline.
        assert!(
            ended >= deadline,
            "{tier:?}: stopped {:?} early",
            deadline - ended
        );
        // Every call started before the deadline: a dispatch past it is refused, not only one
        // every so many iterations (a check every 256 would run ~1.3 s of calls). 20 ms for the
        // step from the check into the call on a loaded machine.
        let late_call = common::slowness::scaled(Duration::from_millis(20));
        for &(call, _) in &calls {
            assert!(
                call < deadline + late_call,
                "{tier:?}: a call started {:?} after the deadline",
                call - deadline
            );
        }
        // Noticed at the next dispatch: the run ended soon after the deadline or the last call,
        // whichever came later, plus, in `Auto`, the compile that `TierPolicy::eager` runs on
        // the run's thread after the first iteration (a few ms here; under qemu it outlasts the
        // whole 30 ms, and the call after the compile is the one refused).
        let compiled_in_run = flow.stats().compile_time.saturating_sub(compiled_before);
        let last = calls.last().map_or(deadline, |&(_, end)| end.max(deadline));
        assert!(
            ended < last + compiled_in_run + common::slowness::scaled(Duration::from_millis(200)),
            "{tier:?}: ended {:?} after the deadline and the last call ({} calls of 5 ms, \
             {compiled_in_run:?} compiling in the run)",
            ended - last,
            calls.len()
        );
    }
}

/// Runs `source` on an engine with `policy` (its output captured) under a 1 MiB output bound;
/// returns the outcome, the output and how many times the run moved to native code mid-loop.
fn run_with_output_bound(tier: Tier, policy: TierPolicy, source: &str) -> (Outcome, String, u64) {
    let config = EngineConfig {
        policy,
        ..EngineConfig::default()
    };
    let engine = Engine::with_config(Registry::with_std(), config);
    let flow = engine
        .compile("output", source, &CompileOptions::default().tier(tier))
        .unwrap();
    let sink = koru_jit::CaptureSink::new();
    let limits = RunLimits {
        max_output_bytes: Some(1 << 20),
        ..RunLimits::default()
    };
    let outcome = flow
        .run_with_output(&Inputs::new(), &limits, &sink)
        .unwrap();
    (outcome, sink.take_out(), flow.stats().osr_entries)
}

#[test]
fn the_output_bound_stops_at_the_same_print_in_every_tier_and_across_a_tier_switch() {
    // Issue 11 finding 7: with the bound enforced by a sink that interrupted the run, native code
    // charged one more print than the interpreter (fuel 10487 against 10486).
    let line = format!("{}\\n", "x".repeat(99));
    let after_a_loop = format!(
        "~for(0..25000)\n| each i |> _\n~for(0..30000)\n| each i |> std.io:print(text: \"{line}\")"
    );
    // The print loop itself starts interpreted and moves to native code at 5,000 iterations.
    let mid_loop = format!(
        "~for(0..2500)\n| each i |> _\n~for(0..30000)\n| each i |> std.io:print(text: \"{line}\")"
    );
    let sync = |loop_threshold| TierPolicy {
        call_threshold: u64::MAX,
        loop_threshold,
        background: false,
        ..TierPolicy::default()
    };
    for source in [&after_a_loop, &mid_loop] {
        let runs = [
            (Tier::Interp, TierPolicy::eager(), false),
            (Tier::Jit, TierPolicy::eager(), false),
            (Tier::Auto, TierPolicy::eager(), true),
            (Tier::Auto, sync(20_000), source == &after_a_loop),
            (Tier::Auto, sync(5_000), true),
        ];
        for (tier, policy, switches) in runs {
            let what = format!("{tier:?} {policy:?} on\n{source}");
            let (outcome, output, osr) = run_with_output_bound(tier, policy, source);
            assert_eq!(
                outcome,
                Outcome::Exhausted {
                    limit: Limit::Output,
                    fuel: 10_486,
                    last_event: Some("std.io:print".into()),
                },
                "{what}"
            );
            // 10,485 whole lines of 100 bytes and 76 bytes of the next: exactly the bound.
            assert_eq!(output.len(), 1 << 20, "{what}");
            assert!(output.ends_with(&format!("\n{}", "x".repeat(76))), "{what}");
            assert_eq!(osr > 0, switches, "{what}: {osr} switches to native code");
        }
    }
}

#[test]
fn the_output_bound_is_reported_by_name_in_json() {
    let engine = Engine::new(Registry::with_std());
    let flow = engine
        .compile(
            "t",
            "~for(0..100)\n| each i |> std.io:println(text: \"0123456789\")",
            &CompileOptions::default(),
        )
        .unwrap();
    let sink = koru_jit::CaptureSink::new();
    let limits = RunLimits {
        max_output_bytes: Some(55),
        ..RunLimits::default()
    };
    let outcome = flow
        .run_with_output(&Inputs::new(), &limits, &sink)
        .unwrap();
    // Five whole lines of 11 bytes fit; the sixth writes nothing and stops the run.
    assert_eq!(sink.take_out(), "0123456789\n".repeat(5));
    assert_eq!(
        outcome.to_json(),
        serde_json::json!({
            "outcome": "exhausted",
            "limit": "Output",
            "fuel": 6,
            "last_event": "std.io:println",
        })
    );
}

/// Threads that spin until dropped: more of them than cores starve every other thread,
/// the deadline ticker's included.
struct BusyThreads {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyThreads {
    fn start(count: usize) -> BusyThreads {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..count)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        BusyThreads { stop, threads }
    }
}

impl Drop for BusyThreads {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_deadline_holds_on_the_real_clock_while_the_cpu_is_starved_in_every_tier() {
    let _timing = timing();
    // Issue 11 finding 5: the deadline was counted in ticks of a thread sleeping 1 ms, so under
    // load runs stopped late in proportion to their deadline (a 1 s deadline after 2.1-2.6 s;
    // here, 200 ms deadlines 31-107 ms late). The run's own thread is starved too and stops
    // only once it gets the CPU back: the least lateness of three runs is what the clock
    // decides.
    // Measured before the CPU is starved: how much slower than here this machine is.
    let slowness = common::slowness::factor();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let _busy = BusyThreads::start(4 * cores);
    let sources = [
        ("while", FOREVER.to_string()),
        // A loop of dispatches (the deadline is also checked at each of them).
        (
            "dispatches",
            "~while(true)\n| body |> std.io:print(text: \"\")".to_string(),
        ),
    ];
    for (what, source) in &sources {
        for (tier, engine) in engines() {
            let flow = engine
                .compile("late", source, &CompileOptions::default().tier(tier))
                .unwrap();
            let mut lateness = Vec::new();
            for _ in 0..3 {
                let deadline = Instant::now() + Duration::from_millis(200);
                let outcome = run_until(&flow, deadline);
                lateness.push(Instant::now().saturating_duration_since(deadline));
                assert!(
                    matches!(
                        outcome,
                        Outcome::Exhausted {
                            limit: Limit::Deadline,
                            ..
                        }
                    ),
                    "{what} {tier:?}: {outcome:?}"
                );
            }
            eprintln!("{what} {tier:?}: stopped {lateness:?} after a 200 ms deadline");
            // Under a target runner (qemu-aarch64) the busy threads and the run are emulated:
            // the least lateness of three measured 25-45 ms for the loop of dispatches, whose
            // iterations are ~35 times slower; the clock still decides (107 ms and more late
            // when it did not, natively).
            let bound = if common::binary::runner().is_empty() {
                Duration::from_millis(30)
            } else {
                Duration::from_millis(80)
            }
            .mul_f64(slowness);
            let least = lateness.iter().min().unwrap();
            assert!(
                *least < bound,
                "{what} {tier:?}: stopped {lateness:?} after the deadline"
            );
        }
    }
}
