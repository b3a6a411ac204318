//! The interpreter and the JIT against a native Rust loop that calls the same host function, in
//! one run.
//!
//! * `nested_loop/*`: SPEC 9's nested loop (100,000 host calls) with string arguments exactly as
//!   written (`add(a: "0", b: i)`, the int formatted into a reusable buffer) and typed
//!   (`add(a: 0, b: i)` with `i64` inputs). The native loops call the identical host function
//!   through a non-inlinable function pointer; the string one formats into a stack buffer.
//! * `sum_fold`: capture + for summing 0..10,000,000 with no host call, against a native loop whose
//!   accumulator goes through `black_box` every iteration.
//! * `compile/*`: parse + check + layout of the nested-loop flow, and its JIT compile (lowering,
//!   Cranelift, finalize) at each quality: `jit_baseline` (what `Tier::Jit` compiles before a
//!   first run; issue 17's target: at most 150 us) and `jit_optimized` (what the auto tier
//!   compiles for a hot flow, and what baseline code is recompiled to once hot).
//! * `first_compile/*`: the first JIT compile in a fresh process of the nested loop (a child
//!   process of this bench per sample: `KORU_FIRST_COMPILE` mode), with and without the warm-up
//!   `Engine` construction does (`warm`, `cold`), against the median of the next ten compiles in
//!   the same process (`next`; issue 17: at most 1.5x).
//! * `artifact/*`: `examples/nested_loop.kz` to a ready flow: parsed and checked
//!   (`Engine::compile`, cache off) against loaded from its stored bytes (`Engine::load`:
//!   decode, registry re-check, verify, layout); both end with the same flow.
//! * `auto/*`: the auto tier. `single_run`: one run of the nested loop from a fresh compile
//!   (interpreted until the inner loop is hot, then native), against a JIT-only compile + run.
//!   `three_step`: many runs of three small cached flows, per run of all three, in each tier.
//! * `three_step_cold/*`: parse + check + layout + run of the three small flows with the
//!   compiled-flow cache off, per iteration of all three (auto, interp, and jit: a JIT compile
//!   per flow; issue 17's target: at most 60 us per flow, 180 us per iteration).
//! * `limits/*`: the JIT benchmarks with every limit set (fuel, iterations, a deadline and an
//!   interrupt handle, none reached) against no limits.
//!
//! Flows are compiled outside the timed loops. Divide nested-loop times by 100,000 for ns per
//! call, sum-fold times by 10,000,000 for ns per iteration.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use koru_jit::jit::Quality;
use koru_jit::{
    CacheConfig, CompileBudget, CompileOptions, Engine, EngineConfig, Inputs, Registry, RunLimits,
    Tier, TierPolicy,
};
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const NESTED_STRING: &str =
    "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: \"0\", b: i)\n| done |> _\n";
const NESTED_TYPED: &str =
    "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: 0, b: i)\n| done |> _\n";
const SUM_FOLD: &str = "~capture({ sum: 0 })\n| as acc |> for(0..10000000)\n    | each i |> captured { sum: acc.sum + i }\n| captured total |> result total.sum\n";

/// The small flows of the three-step workloads (the CLI's demo events).
const THREE_STEPS: [&str; 3] = [
    r#"~add(a: "10", b: "20")"#,
    r#"~multiply(value: "30", by: "3")"#,
    r#"~subtract(value: "90", by: "5")"#,
];

/// An engine with the CLI's demo events (`add`, `multiply`, `subtract` on strings).
fn demo_engine(policy: TierPolicy, cache: CacheConfig) -> Engine {
    let mut registry = Registry::with_std();
    koru_jit::host::register_demo_events(&mut registry, Default::default()).unwrap();
    Engine::with_config(
        registry,
        EngineConfig {
            policy,
            cache,
            ..EngineConfig::default()
        },
    )
}

/// The host function of the string benchmark: parses both arguments and adds them into the
/// accumulator (Koru's `add`). Its `sum` reply is a static string, so neither side allocates.
#[inline(never)]
fn add_text(acc: &AtomicI64, a: &str, b: &str) -> &'static str {
    let sum = a.parse::<i64>().unwrap_or(0) + b.parse::<i64>().unwrap_or(0);
    acc.fetch_add(sum, Ordering::Relaxed);
    "ok"
}

/// The host function of the typed benchmark.
#[inline(never)]
fn add_typed(acc: &AtomicI64, a: i64, b: i64) -> i64 {
    acc.fetch_add(a + b, Ordering::Relaxed);
    a + b
}

fn registry(acc: &Arc<AtomicI64>, typed: bool) -> Registry {
    let mut registry = Registry::new();
    let acc = acc.clone();
    if typed {
        let f: fn(&AtomicI64, i64, i64) -> i64 = black_box(add_typed);
        registry
            .event(
                "~event add { a: i64, b: i64 } | sum i64",
                move |a: i64, b: i64| f(&acc, a, b),
            )
            .unwrap();
    } else {
        let f: fn(&AtomicI64, &str, &str) -> &'static str = black_box(add_text);
        registry
            .event(
                "~event add { a: []const u8, b: []const u8 } | sum []const u8",
                move |a: &str, b: &str| f(&acc, a, b),
            )
            .unwrap();
    }
    registry
}

#[inline(never)]
fn native_string(acc: &AtomicI64) {
    let f: fn(&AtomicI64, &str, &str) -> &'static str = black_box(add_text);
    let mut buffer = itoa::Buffer::new();
    for _ in 0..black_box(1000) {
        for i in 0..black_box(100i64) {
            black_box(f(acc, black_box("0"), buffer.format(i)));
        }
    }
}

#[inline(never)]
fn native_typed(acc: &AtomicI64) {
    let f: fn(&AtomicI64, i64, i64) -> i64 = black_box(add_typed);
    for _ in 0..black_box(1000) {
        for i in 0..black_box(100i64) {
            black_box(f(acc, black_box(0), i));
        }
    }
}

#[inline(never)]
fn native_sum_fold(n: i64) -> i64 {
    let mut sum = 0i64;
    for i in 0..n {
        sum = black_box(sum.checked_add(i).expect("no overflow"));
    }
    sum
}

fn nested_loop(c: &mut Criterion) {
    let mut group = c.benchmark_group("nested_loop");
    group.throughput(Throughput::Elements(100_000));
    for (name, typed, source) in [
        ("string", false, NESTED_STRING),
        ("typed", true, NESTED_TYPED),
    ] {
        let acc = Arc::new(AtomicI64::new(0));
        let engine = Engine::new(registry(&acc, typed));
        let (inputs, limits) = (Inputs::new(), RunLimits::default());
        for tier in [Tier::Interp, Tier::Jit] {
            let flow = engine
                .compile("bench", source, &CompileOptions::default().tier(tier))
                .unwrap();
            assert_eq!(flow.tier(), tier);
            let id = BenchmarkId::new(if tier == Tier::Jit { "jit" } else { "interp" }, name);
            group.bench_function(id, |b| b.iter(|| flow.run(&inputs, &limits).unwrap()));
        }
        group.bench_function(BenchmarkId::new("native", name), |b| {
            b.iter(|| {
                if typed {
                    native_typed(&acc)
                } else {
                    native_string(&acc)
                }
            })
        });
    }
    group.finish();
}

fn sum_fold(c: &mut Criterion) {
    let mut group = c.benchmark_group("sum_fold");
    group.throughput(Throughput::Elements(10_000_000));
    let engine = Engine::new(Registry::new());
    let (inputs, limits) = (Inputs::new(), RunLimits::default());
    for tier in [Tier::Interp, Tier::Jit] {
        let flow = engine
            .compile("bench", SUM_FOLD, &CompileOptions::default().tier(tier))
            .unwrap();
        assert_eq!(flow.tier(), tier);
        let name = if tier == Tier::Jit { "jit" } else { "interp" };
        group.bench_function(name, |b| b.iter(|| flow.run(&inputs, &limits).unwrap()));
    }
    group.bench_function("native", |b| {
        b.iter(|| native_sum_fold(black_box(10_000_000)))
    });
    group.finish();
}

fn compile(c: &mut Criterion) {
    let acc = Arc::new(AtomicI64::new(0));
    // The cache off: every iteration parses, checks and lays out the source afresh.
    let engine = Engine::with_config(
        registry(&acc, false),
        EngineConfig {
            policy: TierPolicy::default(),
            cache: CacheConfig::disabled(),
            ..EngineConfig::default()
        },
    );
    let options = CompileOptions::default();
    let mut group = c.benchmark_group("compile");
    group.bench_function("front_end", |b| {
        b.iter(|| {
            engine
                .compile("bench", black_box(NESTED_STRING), &options)
                .unwrap()
        })
    });
    let flow = engine.compile("bench", NESTED_STRING, &options).unwrap();
    for (name, quality) in [
        ("jit_baseline", Quality::Baseline),
        ("jit_optimized", Quality::Optimized),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                koru_jit::jit::compile_with_quality(
                    flow.program(),
                    flow.layout(),
                    engine.registry(),
                    false,
                    quality,
                    &CompileBudget::default(),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

/// The compiles after the first that a child times: their median is "the next ones".
const NEXT_COMPILES: usize = 10;

/// In a child process (`KORU_FIRST_COMPILE=warm|cold`): prints the nanoseconds of the first
/// baseline compile of the nested loop in the process, then of each of the
/// [`NEXT_COMPILES`] after it.
fn first_compile_child(mode: &str) {
    let acc = Arc::new(AtomicI64::new(0));
    let engine = Engine::with_config(
        registry(&acc, false),
        EngineConfig {
            warm_up: mode == "warm",
            ..EngineConfig::default()
        },
    );
    let flow = engine
        .compile("bench", NESTED_STRING, &CompileOptions::default())
        .unwrap();
    for _ in 0..=NEXT_COMPILES {
        let started = std::time::Instant::now();
        let code = koru_jit::jit::compile_with_quality(
            flow.program(),
            flow.layout(),
            engine.registry(),
            false,
            Quality::Baseline,
            &CompileBudget::default(),
        )
        .unwrap();
        print!("{} ", started.elapsed().as_nanos());
        drop(code);
    }
}

/// One child process's figures: its first compile and the median of the next ones.
fn first_and_next(mode: &str) -> (std::time::Duration, std::time::Duration) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .env("KORU_FIRST_COMPILE", mode)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let mut times: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().expect("the child prints its compile times"))
        .collect();
    assert_eq!(
        times.len(),
        NEXT_COMPILES + 1,
        "the child prints every compile"
    );
    let first = times.remove(0);
    times.sort_unstable();
    let next = times[times.len() / 2];
    (
        std::time::Duration::from_nanos(first),
        std::time::Duration::from_nanos(next),
    )
}

fn first_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("first_compile");
    group.sample_size(10);
    // Each sample spawns this bench binary, which times its own compiles; criterion times the
    // child's reported figure: `warm` and `cold` its first compile (with and without the
    // warm-up), `next` the median of the compiles after the first in a warm child (the issue's
    // "the next ones": the same process, still fresh; `compile/jit_baseline` is the same
    // compile repeated thousands of times).
    for (name, mode, which) in [
        ("warm", "warm", 0),
        ("cold", "cold", 0),
        ("next", "warm", 1),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let (first, next) = first_and_next(mode);
                        if which == 0 {
                            first
                        } else {
                            next
                        }
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

fn artifact(c: &mut Criterion) {
    let acc = Arc::new(AtomicI64::new(0));
    let engine = Engine::with_config(
        registry(&acc, false),
        EngineConfig {
            cache: CacheConfig::disabled(),
            ..EngineConfig::default()
        },
    );
    let source = include_str!("../examples/nested_loop.kz");
    let options = CompileOptions::default();
    let bytes = engine
        .compile("nested_loop.kz", source, &options)
        .unwrap()
        .to_bytes();
    let mut group = c.benchmark_group("artifact");
    group.bench_function("parse_check", |b| {
        b.iter(|| {
            engine
                .compile("nested_loop.kz", black_box(source), &options)
                .unwrap()
        })
    });
    group.bench_function("load", |b| {
        b.iter(|| engine.load(black_box(&bytes), &options).unwrap())
    });
    group.finish();
}

fn auto(c: &mut Criterion) {
    let mut group = c.benchmark_group("auto");
    // No cache: every iteration compiles afresh, so compile time is inside the measurement.
    let uncached = |policy: TierPolicy| demo_engine(policy, CacheConfig::disabled());
    let (inputs, limits) = (Inputs::new(), RunLimits::default());
    let engine = uncached(TierPolicy::default());
    for (name, tier) in [
        ("auto", Tier::Auto),
        ("jit_including_compile", Tier::Jit),
        ("interp", Tier::Interp),
    ] {
        group.bench_function(BenchmarkId::new("single_run", name), |b| {
            b.iter(|| {
                let flow = engine
                    .compile(
                        "bench",
                        NESTED_STRING,
                        &CompileOptions::default().tier(tier),
                    )
                    .unwrap();
                flow.run(&inputs, &limits).unwrap()
            })
        });
    }
    let engine = demo_engine(TierPolicy::default(), CacheConfig::default());
    for (name, tier) in [
        ("auto", Tier::Auto),
        ("jit", Tier::Jit),
        ("interp", Tier::Interp),
    ] {
        let flows: Vec<_> = THREE_STEPS
            .iter()
            .map(|s| {
                engine
                    .compile("bench", s, &CompileOptions::default().tier(tier))
                    .unwrap()
            })
            .collect();
        // Warm up past the call threshold and let the compiler thread finish.
        for _ in 0..2_000 {
            for flow in &flows {
                flow.run(&inputs, &limits).unwrap();
            }
        }
        while tier == Tier::Auto && flows.iter().any(|f| f.tier() != Tier::Jit) {
            std::thread::sleep(std::time::Duration::from_millis(1));
            for flow in &flows {
                flow.run(&inputs, &limits).unwrap();
            }
        }
        group.bench_function(BenchmarkId::new("three_step", name), |b| {
            b.iter(|| {
                for flow in &flows {
                    black_box(flow.run(&inputs, &limits).unwrap());
                }
            })
        });
    }
    group.finish();
}

fn three_step_cold(c: &mut Criterion) {
    let mut group = c.benchmark_group("three_step_cold");
    let engine = demo_engine(TierPolicy::default(), CacheConfig::disabled());
    let (inputs, limits) = (Inputs::new(), RunLimits::default());
    for (name, tier) in [
        ("auto", Tier::Auto),
        ("interp", Tier::Interp),
        ("jit", Tier::Jit),
    ] {
        let options = CompileOptions::default().tier(tier);
        group.bench_function(name, |b| {
            b.iter(|| {
                for source in &THREE_STEPS {
                    let flow = engine.compile("bench", source, &options).unwrap();
                    black_box(flow.run(&inputs, &limits).unwrap());
                }
            })
        });
    }
    group.finish();
}

fn limits(c: &mut Criterion) {
    let mut group = c.benchmark_group("limits");
    let acc = Arc::new(AtomicI64::new(0));
    let typed = Engine::new(registry(&acc, true));
    let pure = Engine::new(Registry::new());
    let all_limits = || RunLimits {
        fuel: Some(u64::MAX / 2),
        max_iterations: Some(u64::MAX / 2),
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(3600)),
        max_output_bytes: Some(u64::MAX / 2),
        interrupt: Some(koru_jit::InterruptHandle::new()),
        ..RunLimits::default()
    };
    for (name, engine, source) in [
        ("nested_loop_typed", &typed, NESTED_TYPED),
        ("sum_fold", &pure, SUM_FOLD),
    ] {
        let flow = engine
            .compile("bench", source, &CompileOptions::default().tier(Tier::Jit))
            .unwrap();
        let inputs = Inputs::new();
        let (off, on) = (RunLimits::default(), all_limits());
        group.bench_function(BenchmarkId::new(name, "off"), |b| {
            b.iter(|| flow.run(&inputs, &off).unwrap())
        });
        group.bench_function(BenchmarkId::new(name, "on"), |b| {
            b.iter(|| flow.run(&inputs, &on).unwrap())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    nested_loop,
    sum_fold,
    compile,
    first_compile,
    artifact,
    auto,
    three_step_cold,
    limits
);

fn main() {
    // A child of `first_compile`: measure this process's first compile and exit.
    if let Ok(mode) = std::env::var("KORU_FIRST_COMPILE") {
        first_compile_child(&mode);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
