//! Interpreter tier against a native Rust loop that calls the same host function, in one run.
//!
//! * `nested_loop/*`: SPEC 9's nested loop (100,000 host calls) with string arguments exactly as
//!   written (`add(a: "0", b: i)`, the int formatted into a reusable buffer) and typed
//!   (`add(a: 0, b: i)` with `i64` inputs). The native loops call the identical host function
//!   through a non-inlinable function pointer; the string one formats into a stack buffer.
//! * `sum_fold`: capture + for summing 0..1,000,000 with no host call.
//! * `front_end`: parse + check + layout of the nested-loop flow.
//!
//! Flows are compiled outside the timed loop. Divide nested-loop times by 100,000 for ns per call.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits};
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const NESTED_STRING: &str =
    "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: \"0\", b: i)\n| done |> _\n";
const NESTED_TYPED: &str =
    "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: 0, b: i)\n| done |> _\n";
const SUM_FOLD: &str = "~capture({ sum: 0 })\n| as acc |> for(0..1000000)\n    | each i |> captured { sum: acc.sum + i }\n| captured total |> result total.sum\n";

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
        let flow = Engine::new(registry(&acc, typed))
            .compile("bench", source, &CompileOptions::default())
            .unwrap();
        let inputs = Inputs::new();
        let limits = RunLimits::default();
        group.bench_function(BenchmarkId::new("interp", name), |b| {
            b.iter(|| flow.run(&inputs, &limits).unwrap())
        });
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
    group.throughput(Throughput::Elements(1_000_000));
    let flow = Engine::new(Registry::new())
        .compile("bench", SUM_FOLD, &CompileOptions::default())
        .unwrap();
    let (inputs, limits) = (Inputs::new(), RunLimits::default());
    group.bench_function("interp", |b| b.iter(|| flow.run(&inputs, &limits).unwrap()));
    group.bench_function("native", |b| {
        b.iter(|| native_sum_fold(black_box(1_000_000)))
    });
    group.finish();
}

fn front_end(c: &mut Criterion) {
    let acc = Arc::new(AtomicI64::new(0));
    let engine = Engine::new(registry(&acc, false));
    let options = CompileOptions::default();
    c.bench_function("front_end/parse_check_layout", |b| {
        b.iter(|| {
            engine
                .compile("bench", black_box(NESTED_STRING), &options)
                .unwrap()
        })
    });
}

criterion_group!(benches, nested_loop, sum_fold, front_end);
criterion_main!(benches);
