//! Tiered execution: counters, on-stack replacement, background compilation, a thread-safe
//! engine and a bounded code cache.

use koru_jit::{
    CacheConfig, CompileOptions, Engine, EngineConfig, Inputs, Outcome, Registry, RunLimits, Tier,
    TierPolicy, Type,
};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NESTED_LOOP: &str =
    "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: \"0\", b: i)\n| done |> _\n";

fn demo_engine(config: EngineConfig) -> (Engine, Arc<AtomicI64>) {
    let mut registry = Registry::with_std();
    let accumulator = Arc::new(AtomicI64::new(0));
    koru_jit::host::register_demo_events(&mut registry, accumulator.clone()).unwrap();
    (Engine::with_config(registry, config), accumulator)
}

fn policy(call_threshold: u64, loop_threshold: u64, background: bool) -> EngineConfig {
    EngineConfig {
        policy: TierPolicy {
            call_threshold,
            loop_threshold,
            background,
            ..TierPolicy::default()
        },
        ..EngineConfig::default()
    }
}

#[test]
fn a_large_flow_split_into_functions_still_moves_to_native_code_mid_loop() {
    // A flow larger than `CompileBudget::function_steps` is compiled as several functions; a
    // run in a loop of the third top-level flow continues in the function that holds it.
    let mut config = policy(1_000, 5_000, false);
    config.policy.compile_budget.function_steps = 2;
    let (engine, accumulator) = demo_engine(config);
    let source = format!(
        "~add(a: \"1\", b: \"2\")\n~std.io:print(text: \"\")\n{NESTED_LOOP}~add(a: \"4\", b: \"5\")\n"
    );
    let flow = engine
        .compile("split", &source, &CompileOptions::default())
        .unwrap();
    let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    assert_eq!(
        outcome.to_json().to_string(),
        r#"{"outcome":"ok","value":{"branch":"sum","value":"9"},"fuel":100003}"#
    );
    assert_eq!(accumulator.load(Ordering::Relaxed), 4_950_012);
    let stats = flow.stats();
    assert_eq!((stats.osr_entries, stats.tier), (1, Tier::Jit), "{stats:?}");
    assert!(stats.native_iterations > 90_000, "{stats:?}");
    // The next run starts native and agrees.
    accumulator.store(0, Ordering::Relaxed);
    let again = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    assert_eq!(again.to_json(), outcome.to_json());
    assert_eq!(flow.stats().native_runs, 1);
}

#[test]
fn a_single_long_run_moves_to_native_code_in_the_middle_of_its_loop() {
    let (engine, accumulator) = demo_engine(policy(1_000, 5_000, false));
    let flow = engine
        .compile("nested", NESTED_LOOP, &CompileOptions::default())
        .unwrap();
    assert_eq!(flow.tier(), Tier::Interp);
    let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    assert_eq!(
        outcome.to_json().to_string(),
        r#"{"outcome":"ok","value":{"branch":"done"},"fuel":100000}"#
    );
    assert_eq!(accumulator.load(Ordering::Relaxed), 4_950_000);
    let stats = flow.stats();
    assert_eq!(
        (stats.runs, stats.osr_entries, stats.native_runs),
        (1, 1, 0),
        "{stats:?}"
    );
    // The switch happens at the first check after 5,000 iterations of the inner loop.
    assert!(
        stats.interpreted_iterations >= 5_000 && stats.interpreted_iterations < 6_000,
        "{stats:?}"
    );
    assert_eq!(
        stats.interpreted_iterations + stats.native_iterations,
        101_000,
        "{stats:?}"
    );
    assert_eq!(stats.tier, Tier::Jit);
    assert!(stats.code_bytes > 0 && stats.compile_time > Duration::ZERO);
    // The next run starts native.
    flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    assert_eq!(flow.stats().native_runs, 1);
}

#[test]
fn limits_hold_across_the_switch() {
    let (engine, _) = demo_engine(policy(1_000, 1, false));
    let interp = demo_engine(EngineConfig::default()).0;
    let options = CompileOptions::default();
    for limits in [
        RunLimits {
            fuel: Some(77_777),
            ..RunLimits::default()
        },
        RunLimits {
            max_iterations: Some(50_500),
            ..RunLimits::default()
        },
    ] {
        let auto = engine.compile("nested", NESTED_LOOP, &options).unwrap();
        let expected = interp
            .compile("nested", NESTED_LOOP, &options.clone().tier(Tier::Interp))
            .unwrap()
            .run(&Inputs::new(), &limits)
            .unwrap();
        let found = auto.run(&Inputs::new(), &limits).unwrap();
        assert_eq!(found, expected, "{limits:?}");
        assert!(matches!(found, Outcome::Exhausted { .. }));
        assert_eq!(auto.stats().osr_entries, 1);
    }
}

#[test]
fn a_paired_while_entered_mid_loop_stops_where_the_interpreter_stops() {
    // A small `while` takes its budget two iterations at a time in native code; a run that
    // moves there mid-loop (the entry at the loop's head) ends with the interpreter's outcome,
    // whether the limit stops it in the first or the second half of a pair, or it finishes.
    let (engine, _) = demo_engine(policy(1_000, 1, false));
    let interp = demo_engine(EngineConfig::default()).0;
    let options = CompileOptions::default();
    let source = "~capture({ n: 0, s: 0 })\n| as c |> while(c.n < 100001)\n    | body |> captured { n: c.n + 1, s: c.s + c.n }\n| captured r |> for(0..5)\n    | each _ |> add(a: 1, b: 0)\n";
    for max_iterations in [
        None,
        Some(50_500),
        Some(50_501),
        Some(100_003),
        Some(100_004),
    ] {
        let limits = RunLimits {
            max_iterations,
            ..RunLimits::default()
        };
        let auto = engine.compile("while", source, &options).unwrap();
        let expected = interp
            .compile("while", source, &options.clone().tier(Tier::Interp))
            .unwrap()
            .run(&Inputs::new(), &limits)
            .unwrap();
        let found = auto.run(&Inputs::new(), &limits).unwrap();
        assert_eq!(found, expected, "{limits:?}");
        assert_eq!(auto.stats().osr_entries, 1, "{limits:?}");
    }
}

#[test]
fn flows_that_run_often_are_compiled_on_the_background_thread() {
    let (engine, _) = demo_engine(policy(10, 1_000_000, true));
    let flow = engine
        .compile("small", "~add(a: \"1\", b: 2)", &CompileOptions::default())
        .unwrap();
    let started = Instant::now();
    let mut runs = 0;
    while flow.tier() != Tier::Jit {
        let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
        assert_eq!(outcome.value().unwrap().get::<&str>(), Ok("3"));
        runs += 1;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never compiled after {runs} runs"
        );
        if runs > 10 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(runs >= 10, "compiled only after the threshold");
    let before = flow.stats().native_runs;
    flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    assert_eq!(flow.stats().native_runs, before + 1);
}

#[test]
fn eight_threads_share_one_engine() {
    let mut registry = Registry::with_std();
    registry
        .event(
            "~event add { a: i64, b: i64 } | sum i64",
            |a: i64, b: i64| a + b,
        )
        .unwrap();
    let engine = Engine::with_config(registry, policy(500, 2_000, true));
    let sources = [
        ("sum", "~capture({ s: 0 })\n| as acc |> for(0..n)\n    | each i |> add(a: acc.s, b: i)\n        | sum v |> captured { s: v }\n| captured t |> total t.s"),
        ("square", "~capture({ s: 0 })\n| as acc |> for(0..n)\n    | each _ |> captured { s: acc.s + n }\n| captured t |> total t.s"),
        ("branch", "~if(n % 2 == 0)\n| then |> total n / 2\n| else |> total n * 3 + 1"),
    ];
    let expected = |which: usize, n: i64| match which {
        0 => n * (n - 1) / 2,
        1 => n * n,
        _ => {
            if n % 2 == 0 {
                n / 2
            } else {
                n * 3 + 1
            }
        }
    };
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for run in 0..10_000i64 {
                    let which = ((run + t) % 3) as usize;
                    let (name, source) = sources[which];
                    // Every thread compiles through the shared cache: all get the same flows.
                    let flow = engine
                        .compile(
                            name,
                            source,
                            &CompileOptions::default().input("n", Type::Int),
                        )
                        .unwrap();
                    let n = (run * 7 + t) % 60;
                    let outcome = flow
                        .run(&Inputs::new().set("n", n), &RunLimits::default())
                        .unwrap();
                    assert_eq!(
                        outcome.value().unwrap().get::<i64>(),
                        Ok(expected(which, n)),
                        "thread {t} run {run} {name} n={n}"
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = engine.cache_stats();
    assert_eq!(stats.entries, 3);
    // One compile per source: threads asking for a source being compiled wait for it.
    assert_eq!(stats.misses, 3, "{stats:?}");
    assert_eq!(stats.hits + stats.misses, 80_000, "{stats:?}");
}

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[test]
fn a_bounded_cache_keeps_native_code_and_memory_bounded() {
    // `KORU_CACHE_FLOWS` reduces the count: `.ci/aarch64.sh` sets 3,000 under qemu-aarch64,
    // where 100,000 flows take ~18 minutes, and where the resident figure is qemu's process,
    // whose translation cache grows with every new piece of native code (~4.4 KB a flow: 13 MB
    // over 3,000 flows, up to its 128 MiB buffer), which is not the engine's memory. 3,000 flows
    // still make the cache evict from the 17th on, and native code stays within its bound.
    let flows: usize = std::env::var("KORU_CACHE_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let config = EngineConfig {
        policy: TierPolicy::eager(),
        cache: CacheConfig {
            max_entries: 16,
            max_code_bytes: 64 << 10,
            ..CacheConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut registry = Registry::with_std();
    registry
        .event(
            "~event add { a: i64, b: i64 } | sum i64",
            |a: i64, b: i64| a + b,
        )
        .unwrap();
    let engine = Engine::with_config(registry, config);
    let mut samples = Vec::new();
    let started = Instant::now();
    for k in 0..flows {
        // Distinct sources; every one compiled to native code.
        let source = format!("~add(a: {k}, b: 1)");
        let flow = engine
            .compile("many", &source, &CompileOptions::default().tier(Tier::Jit))
            .unwrap();
        assert_eq!(flow.tier(), Tier::Jit);
        let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
        assert_eq!(outcome.value().unwrap().get::<i64>(), Ok(k as i64 + 1));
        if k % (flows / 10).max(1) == 0 || k + 1 == flows {
            samples.push((k, koru_jit::live_code_bytes(), resident_bytes()));
        }
    }
    let stats = engine.cache_stats();
    assert!(
        stats.entries <= 16 && stats.code_bytes <= 64 << 10,
        "{stats:?}"
    );
    eprintln!(
        "{flows} flows in {:?}; (flow, live native code bytes, resident bytes):",
        started.elapsed()
    );
    for sample in &samples {
        eprintln!("  {sample:?}");
    }
    // Native code alive stays within the cache bound (plus a flow or two in flight).
    for (_, code, _) in &samples {
        assert!(*code <= (64 << 10) + 8192, "{samples:?}");
    }
    // Memory after the first tenth does not keep growing (allowing allocator noise).
    let (_, _, early) = samples[1];
    let (_, _, last) = *samples.last().unwrap();
    assert!(
        last < early + (64 << 20),
        "resident memory grew from {early} to {last}: {samples:?}"
    );
}

#[test]
fn the_cache_keeps_errors_and_keys_on_everything_that_changes_the_result() {
    let (engine, _) = demo_engine(EngineConfig::default());
    let first = engine
        .compile("bad", "~nope()", &CompileOptions::default())
        .err()
        .unwrap();
    let second = engine
        .compile("bad", "~nope()", &CompileOptions::default())
        .err()
        .unwrap();
    assert_eq!(first.diagnostics, second.diagnostics);
    let stats = engine.cache_stats();
    assert_eq!((stats.misses, stats.hits, stats.entries), (1, 1, 1));
    // Another scope or tier is another entry.
    let source = "~add(a: \"1\", b: \"2\")";
    engine
        .compile("ok", source, &CompileOptions::default())
        .unwrap();
    engine
        .compile("ok", source, &CompileOptions::default().tier(Tier::Interp))
        .unwrap();
    assert!(engine
        .compile("ok", source, &CompileOptions::default().scope("nothere"))
        .is_err());
    assert_eq!(engine.cache_stats().entries, 4);
}

#[test]
fn a_long_compile_does_not_hold_up_a_small_flow_with_two_compiler_threads() {
    // Issue 11: one compiler thread served every flow in turn, so one slow compile held up every
    // other flow's native code. With two, a small flow asked for after a large one is compiled
    // while the large one is still being compiled.
    let mut config = policy(1, 1_000_000, true);
    config.compiler_threads = 2;
    let (engine, _) = demo_engine(config);
    let mut large = String::from("~event f0 { x: i64 }\n| r i64\n~f0 = r x + 1\n");
    for k in 1..=10 {
        let j = k - 1;
        large += &format!(
            "~event f{k} {{ x: i64 }}\n| r i64\n~f{k} = f{j}(x: x) | r a |> f{j}(x: a) | r b |> r b\n"
        );
    }
    large += "~if(false) | then |> f10(x: 0)\n";
    let large = engine
        .compile("large", &large, &CompileOptions::default())
        .unwrap();
    let small = engine
        .compile(
            "small",
            "~add(a: \"1\", b: \"2\")",
            &CompileOptions::default(),
        )
        .unwrap();
    // The second run of each asks for its compile: the large one first.
    for flow in [&large, &large, &small, &small] {
        flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    }
    let started = Instant::now();
    while small.tier() != Tier::Jit {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the small flow never compiled"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let small_ready = started.elapsed();
    // The large compile was still going on when the small flow's code was ready.
    let large_was_compiling = large.tier() != Tier::Jit && large.jit_error().is_none();
    while large.tier() != Tier::Jit && large.jit_error().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the large flow never compiled"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let large_ready = started.elapsed();
    assert!(
        large_was_compiling,
        "small native after {small_ready:?}, large after {large_ready:?}"
    );
    eprintln!("small native after {small_ready:?}, large done after {large_ready:?}");
}

#[test]
fn baseline_code_that_gets_hot_is_recompiled_optimized_with_the_same_results() {
    use koru_jit::jit::Quality;
    let limited = RunLimits {
        fuel: Some(50_000),
        ..RunLimits::default()
    };
    for background in [false, true] {
        // A fuel-limited run (~50,000 iterations) is below the loop threshold; a whole run
        // (101,000) is above it.
        let (engine, accumulator) = demo_engine(policy(1_000, 80_000, background));
        let flow = engine
            .compile(
                "hot",
                NESTED_LOOP,
                &CompileOptions::default().tier(Tier::Jit),
            )
            .unwrap();
        // Nothing is known of the flow before its first run: baseline code.
        assert_eq!(flow.stats().quality, Some(Quality::Baseline));
        let baseline_bytes = flow.code_bytes();
        let exhausted = flow.run(&Inputs::new(), &limited).unwrap();
        assert!(
            matches!(exhausted, Outcome::Exhausted { fuel: 50_000, .. }),
            "{exhausted:?}"
        );
        assert_eq!(flow.stats().quality, Some(Quality::Baseline));
        accumulator.store(0, Ordering::Relaxed);
        let first = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
        assert_eq!(accumulator.load(Ordering::Relaxed), 4_950_000);
        // That run iterated past the loop threshold: the code is recompiled optimized (on this
        // thread, or on a compiler thread).
        let deadline = Instant::now() + Duration::from_secs(60);
        while flow.stats().quality != Some(Quality::Optimized) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let stats = flow.stats();
        assert_eq!(stats.quality, Some(Quality::Optimized), "{stats:?}");
        assert!(stats.recompile_time > Duration::ZERO, "{stats:?}");
        assert!(stats.compile_time > Duration::ZERO, "{stats:?}");
        // Both pieces of code stay alive (a run may still be in the baseline one) and count.
        assert!(flow.code_bytes() > baseline_bytes, "{stats:?}");
        assert_eq!(stats.code_bytes, flow.code_bytes());
        // The optimized code gives the same outcomes, host calls and exact limits.
        accumulator.store(0, Ordering::Relaxed);
        let again = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
        assert_eq!(again.to_json(), first.to_json());
        assert_eq!(accumulator.load(Ordering::Relaxed), 4_950_000);
        assert_eq!(flow.run(&Inputs::new(), &limited).unwrap(), exhausted);
        assert_eq!(flow.stats().native_runs, 4);
    }
    // Code that does not get hot stays baseline: short runs, fewer than the call threshold.
    let (engine, _) = demo_engine(policy(1_000, 5_000, false));
    let flow = engine
        .compile(
            "cold",
            "~add(a: \"1\", b: \"2\")",
            &CompileOptions::default().tier(Tier::Jit),
        )
        .unwrap();
    for _ in 0..10 {
        flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
    }
    let stats = flow.stats();
    assert_eq!(stats.quality, Some(Quality::Baseline), "{stats:?}");
    assert_eq!(stats.recompile_time, Duration::ZERO, "{stats:?}");
}
