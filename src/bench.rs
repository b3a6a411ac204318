//! The built-in benchmark suite behind `koru-jit bench`: each workload in each tier and as
//! hand-written native Rust calling the same host functions (the physical limit), interleaved
//! round by round in one process, reported as medians with their spread.

use crate::engine::{CacheConfig, CompileOptions, Engine, EngineConfig, Flow, Tier, TierPolicy};
use crate::host::{HostError, Registry};
use crate::limits::RunLimits;
use crate::Inputs;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A workload of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// SPEC 9's nested loop with string arguments (100,000 host calls).
    NestedLoop,
    /// The same with `add(a: 0, b: i)` and `i64` inputs.
    NestedLoopTyped,
    /// Parse + check + run of three one-call flows, the compiled-flow cache off.
    ThreeStepCold,
    /// Runs of the same three flows, compiled once.
    ThreeStepCached,
    /// `capture` + `for` summing 0..1,000,000 in flow code.
    SumFold,
    /// Parse + check + layout of the nested loop (interp), and its JIT compile (jit).
    Compile,
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Workload::NestedLoop,
        Workload::NestedLoopTyped,
        Workload::ThreeStepCold,
        Workload::ThreeStepCached,
        Workload::SumFold,
        Workload::Compile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::NestedLoop => "nested-loop",
            Workload::NestedLoopTyped => "nested-loop-typed",
            Workload::ThreeStepCold => "three-step-cold",
            Workload::ThreeStepCached => "three-step-cached",
            Workload::SumFold => "sum-fold",
            Workload::Compile => "compile",
        }
    }

    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// What one operation is, for the `ns/op` column.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::NestedLoop | Workload::NestedLoopTyped => "host call",
            Workload::ThreeStepCold => "parse+check+run",
            Workload::ThreeStepCached => "flow run",
            Workload::SumFold => "iteration",
            Workload::Compile => "compile",
        }
    }
}

/// Who runs a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    Tier(Tier),
    /// Hand-written Rust calling the same host functions.
    Native,
}

impl Runner {
    pub fn name(self) -> &'static str {
        match self {
            Runner::Tier(Tier::Interp) => "interp",
            Runner::Tier(Tier::Jit) => "jit",
            Runner::Tier(Tier::Auto) => "auto",
            Runner::Native => "native",
        }
    }
}

/// One workload on one runner: ns per operation over the rounds.
#[derive(Clone, Debug)]
pub struct Measurement {
    pub workload: Workload,
    pub runner: Runner,
    pub samples: Vec<f64>,
}

impl Measurement {
    pub fn median(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        }
    }

    pub fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.samples
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub workloads: Vec<Workload>,
    pub runners: Vec<Runner>,
    pub rounds: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            workloads: Workload::ALL.to_vec(),
            runners: vec![
                Runner::Tier(Tier::Interp),
                Runner::Tier(Tier::Jit),
                Runner::Tier(Tier::Auto),
                Runner::Native,
            ],
            rounds: 7,
        }
    }
}

/// The host functions of the workloads, shared by the flows and the native baselines.
mod host {
    use super::*;

    pub fn parse(text: &str) -> Result<i64, HostError> {
        text.parse::<i64>()
            .map_err(|_| HostError::new(format!("`{text}` is not an integer")))
    }

    /// Koru's `add`: parses both strings and adds them into the accumulator.
    #[inline(never)]
    pub fn add_text(accumulator: &AtomicI64, a: &str, b: &str) -> Result<i64, HostError> {
        let sum = parse(a)? + parse(b)?;
        accumulator.fetch_add(sum, Ordering::Relaxed);
        Ok(sum)
    }

    #[inline(never)]
    pub fn add_typed(accumulator: &AtomicI64, a: i64, b: i64) -> i64 {
        accumulator.fetch_add(a + b, Ordering::Relaxed);
        a + b
    }

    #[inline(never)]
    pub fn multiply(a: &str, b: &str) -> Result<i64, HostError> {
        Ok(parse(a)?.wrapping_mul(parse(b)?))
    }

    #[inline(never)]
    pub fn subtract(a: &str, b: &str) -> Result<i64, HostError> {
        Ok(parse(a)?.wrapping_sub(parse(b)?))
    }
}

const NESTED_STRING: &str =
    "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: \"0\", b: i)\n| done |> _\n";
const NESTED_TYPED: &str =
    "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add_typed(a: 0, b: i)\n| done |> _\n";
const SUM_FOLD: &str = "~capture({ sum: 0 })\n| as acc |> for(0..1000000)\n    | each i |> captured { sum: acc.sum + i }\n| captured total |> result total.sum\n";
const THREE_STEPS: [&str; 3] = [
    r#"~add(a: "10", b: "20")"#,
    r#"~multiply(value: "30", by: "3")"#,
    r#"~subtract(value: "90", by: "5")"#,
];

/// The registry of the workloads: the host functions above, replying their result as the
/// declared `str` (the host's job, the same in every tier; the native loops skip it).
fn registry(accumulator: &Arc<AtomicI64>) -> Registry {
    let mut registry = Registry::with_std();
    let acc = accumulator.clone();
    registry
        .event(
            "~event add { a: []const u8, b: []const u8 } | sum []const u8",
            move |a: &str, b: &str| host::add_text(&acc, a, b).map(|_| "ok"),
        )
        .expect("valid declaration");
    let acc = accumulator.clone();
    registry
        .event(
            "~event add_typed { a: i64, b: i64 } | sum i64",
            move |a: i64, b: i64| host::add_typed(&acc, a, b),
        )
        .expect("valid declaration");
    registry
        .event(
            "~event multiply { value: []const u8, by: []const u8 } | product i64",
            |a: &str, b: &str| host::multiply(a, b),
        )
        .expect("valid declaration");
    registry
        .event(
            "~event subtract { value: []const u8, by: []const u8 } | difference i64",
            |a: &str, b: &str| host::subtract(a, b),
        )
        .expect("valid declaration");
    registry
}

/// A prepared measurement: runs one round, returns the operations it did.
type Round = Box<dyn FnMut() -> u64>;

struct Prepared {
    workload: Workload,
    runner: Runner,
    round: Round,
}

fn engine_for(accumulator: &Arc<AtomicI64>, cache: bool) -> Engine {
    let config = EngineConfig {
        policy: TierPolicy::default(),
        cache: if cache {
            CacheConfig::default()
        } else {
            CacheConfig {
                max_entries: 0,
                max_code_bytes: 0,
            }
        },
    };
    Engine::with_config(registry(accumulator), config)
}

fn compile(engine: &Engine, source: &str, tier: Tier) -> Flow {
    engine
        .compile("bench", source, &CompileOptions::default().tier(tier))
        .expect("the workloads compile")
}

fn prepare(workload: Workload, runner: Runner) -> Option<Prepared> {
    let accumulator = Arc::new(AtomicI64::new(0));
    let (inputs, limits) = (Inputs::new(), RunLimits::default());
    let round: Round = match (workload, runner) {
        (Workload::NestedLoop | Workload::NestedLoopTyped, Runner::Tier(tier)) => {
            let source = if workload == Workload::NestedLoop {
                NESTED_STRING
            } else {
                NESTED_TYPED
            };
            let engine = engine_for(&accumulator, false);
            // Auto is measured from a fresh compile: the switch to native code is part of it.
            let prepared = (tier != Tier::Auto).then(|| compile(&engine, source, tier));
            Box::new(move || {
                let flow = prepared
                    .clone()
                    .unwrap_or_else(|| compile(&engine, source, tier));
                black_box(flow.run(&inputs, &limits).expect("no inputs"));
                100_000
            })
        }
        (Workload::NestedLoop, Runner::Native) => Box::new(move || {
            let mut buffer = itoa::Buffer::new();
            let f: fn(&AtomicI64, &str, &str) -> Result<i64, HostError> = black_box(host::add_text);
            for _ in 0..black_box(1000) {
                for i in 0..black_box(100i64) {
                    let _ = black_box(f(&accumulator, black_box("0"), buffer.format(i)));
                }
            }
            100_000
        }),
        (Workload::NestedLoopTyped, Runner::Native) => Box::new(move || {
            let f: fn(&AtomicI64, i64, i64) -> i64 = black_box(host::add_typed);
            for _ in 0..black_box(1000) {
                for i in 0..black_box(100i64) {
                    black_box(f(&accumulator, black_box(0), i));
                }
            }
            100_000
        }),
        (Workload::ThreeStepCold, Runner::Tier(tier)) => {
            let engine = engine_for(&accumulator, false);
            // A JIT compile per step is far slower: fewer iterations keep rounds short.
            let iterations = if tier == Tier::Jit { 10 } else { 1_000 };
            Box::new(move || {
                for _ in 0..iterations {
                    for source in THREE_STEPS {
                        let flow = compile(&engine, source, tier);
                        black_box(flow.run(&inputs, &limits).expect("no inputs"));
                    }
                }
                3 * iterations
            })
        }
        (Workload::ThreeStepCold, Runner::Native) => Box::new(move || {
            for _ in 0..1_000 {
                for source in THREE_STEPS {
                    black_box(native_parse_and_run(black_box(source), &accumulator));
                }
            }
            3_000
        }),
        (Workload::ThreeStepCached, Runner::Tier(tier)) => {
            let engine = engine_for(&accumulator, true);
            let flows: Vec<Flow> = THREE_STEPS
                .iter()
                .map(|s| compile(&engine, s, tier))
                .collect();
            // Warm up past the call threshold and wait for the compiler thread (auto).
            for _ in 0..2_000 {
                for flow in &flows {
                    let _ = flow.run(&inputs, &limits);
                }
            }
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while tier == Tier::Auto
                && flows.iter().any(|f| f.tier() != Tier::Jit)
                && Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Box::new(move || {
                for _ in 0..10_000 {
                    for flow in &flows {
                        black_box(flow.run(&inputs, &limits).expect("no inputs"));
                    }
                }
                30_000
            })
        }
        (Workload::ThreeStepCached, Runner::Native) => Box::new(move || {
            type Text = fn(&str, &str) -> Result<i64, HostError>;
            let add: fn(&AtomicI64, &str, &str) -> Result<i64, HostError> =
                black_box(host::add_text);
            let (multiply, subtract): (Text, Text) = black_box((host::multiply, host::subtract));
            for _ in 0..10_000 {
                let _ = black_box(add(&accumulator, black_box("10"), black_box("20")));
                let _ = black_box(multiply(black_box("30"), black_box("3")));
                let _ = black_box(subtract(black_box("90"), black_box("5")));
            }
            30_000
        }),
        (Workload::SumFold, Runner::Tier(tier)) => {
            let engine = engine_for(&accumulator, false);
            let prepared = (tier != Tier::Auto).then(|| compile(&engine, SUM_FOLD, tier));
            Box::new(move || {
                let flow = prepared
                    .clone()
                    .unwrap_or_else(|| compile(&engine, SUM_FOLD, tier));
                black_box(flow.run(&inputs, &limits).expect("no inputs"));
                1_000_000
            })
        }
        (Workload::SumFold, Runner::Native) => Box::new(|| {
            let mut sum = 0i64;
            for i in 0..black_box(1_000_000i64) {
                sum = black_box(sum.checked_add(i).expect("no overflow"));
            }
            black_box(sum);
            1_000_000
        }),
        (Workload::Compile, Runner::Tier(Tier::Interp)) => {
            let engine = engine_for(&accumulator, false);
            Box::new(move || {
                for _ in 0..100 {
                    black_box(compile(&engine, NESTED_STRING, Tier::Interp));
                }
                100
            })
        }
        (Workload::Compile, Runner::Tier(Tier::Jit)) => {
            let engine = engine_for(&accumulator, false);
            let flow = compile(&engine, NESTED_STRING, Tier::Interp);
            Box::new(move || {
                for _ in 0..10 {
                    black_box(
                        crate::jit::compile(flow.program(), flow.layout(), flow.registry())
                            .expect("the workload compiles"),
                    );
                }
                10
            })
        }
        (Workload::Compile, _) => return None,
    };
    Some(Prepared {
        workload,
        runner,
        round,
    })
}

/// The hand-written floor of the cold workload: a special-purpose parser for `name(a: "x", b: "y")`
/// calling the host function directly (no general language).
#[inline(never)]
fn native_parse_and_run(source: &str, accumulator: &AtomicI64) -> Option<i64> {
    let body = source.strip_prefix('~')?;
    let open = body.find('(')?;
    let name = &body[..open];
    let inner = body[open + 1..].strip_suffix(')')?;
    let mut values = inner.split(',').map(|part| {
        part.split_once(':')
            .map(|(_, v)| v.trim().trim_matches('"'))
    });
    let (a, b) = (values.next()??, values.next()??);
    match name {
        "add" => host::add_text(accumulator, a, b).ok(),
        "multiply" => host::multiply(a, b).ok(),
        "subtract" => host::subtract(a, b).ok(),
        _ => None,
    }
}

/// Runs every (workload, runner) pair `rounds` times, interleaved: round 1 of everything, then
/// round 2, so that drifts of the machine hit every runner alike. One warm-up round is dropped.
pub fn run(options: &BenchOptions) -> Vec<Measurement> {
    let mut prepared: Vec<Prepared> = Vec::new();
    for &workload in &options.workloads {
        for &runner in &options.runners {
            if let Some(p) = prepare(workload, runner) {
                prepared.push(p);
            }
        }
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); prepared.len()];
    for round in 0..=options.rounds {
        for (k, p) in prepared.iter_mut().enumerate() {
            let started = Instant::now();
            let operations = (p.round)();
            let ns = started.elapsed().as_nanos() as f64 / operations as f64;
            if round > 0 {
                samples[k].push(ns);
            }
        }
    }
    prepared
        .into_iter()
        .zip(samples)
        .map(|(p, samples)| Measurement {
            workload: p.workload,
            runner: p.runner,
            samples,
        })
        .collect()
}

/// Nanoseconds with the precision they deserve (sub-nanosecond figures keep two decimals).
fn ns(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

fn native_median(measurements: &[Measurement], workload: Workload) -> Option<f64> {
    measurements
        .iter()
        .find(|m| m.workload == workload && m.runner == Runner::Native)
        .map(Measurement::median)
}

/// A table: workload, runner, median ns/op, spread (min-max), ratio to native.
pub fn table(measurements: &[Measurement]) -> String {
    let mut out = format!(
        "{:<18} {:<7} {:>12} {:>22} {:>10}  {}\n",
        "workload", "runner", "median ns", "spread (min-max)", "x native", "per"
    );
    for m in measurements {
        let ratio = native_median(measurements, m.workload)
            .map_or("-".to_string(), |n| format!("{:.2}x", m.median() / n));
        out += &format!(
            "{:<18} {:<7} {:>12} {:>22} {:>10}  {}\n",
            m.workload.name(),
            m.runner.name(),
            ns(m.median()),
            format!("{}-{}", ns(m.min()), ns(m.max())),
            ratio,
            m.workload.unit()
        );
    }
    out
}

/// Every figure and ratio as one JSON object.
pub fn to_json(measurements: &[Measurement], rounds: usize) -> serde_json::Value {
    let results: Vec<serde_json::Value> = measurements
        .iter()
        .map(|m| {
            serde_json::json!({
                "workload": m.workload.name(),
                "runner": m.runner.name(),
                "unit": m.workload.unit(),
                "median_ns": m.median(),
                "min_ns": m.min(),
                "max_ns": m.max(),
                "samples_ns": m.samples,
                "ratio_to_native": native_median(measurements, m.workload).map(|n| m.median() / n),
            })
        })
        .collect();
    serde_json::json!({ "rounds": rounds, "results": results })
}

/// What this machine is, for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {cores} cores, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The whole BENCHMARKS.md: command, machine, table and what each number means.
pub fn markdown(measurements: &[Measurement], rounds: usize) -> String {
    let mut out = String::new();
    out += "# Benchmarks\n\n";
    out += "Generated by `cargo run --release -- bench --markdown > BENCHMARKS.md`; do not edit by hand.\n\n";
    out += &format!("Machine: {}. Rounds: {rounds} measured (one warm-up round dropped), interleaved: round 1 of every\nworkload and runner, then round 2, and so on, in one process.\n\n", machine());
    out += "| workload | runner | median ns per op | spread (min-max) | x native | op |\n|---|---|---|---|---|---|\n";
    for m in measurements {
        let ratio = native_median(measurements, m.workload)
            .map_or("-".to_string(), |n| format!("{:.2}x", m.median() / n));
        out += &format!(
            "| {} | {} | {} | {}-{} | {} | {} |\n",
            m.workload.name(),
            m.runner.name(),
            ns(m.median()),
            ns(m.min()),
            ns(m.max()),
            ratio,
            m.workload.unit()
        );
    }
    out += "\n## What the numbers mean\n\n";
    out += "* **interp**, **jit**, **auto**: the flow run by the interpreter, by native code compiled before the\n  measured rounds, and by the auto tier (for the loop workloads a fresh compile each round, so\n  the interpreted start and the switch to native code are inside the time).\n";
    out += "* **native**: hand-written Rust calling the same host functions through a non-inlinable\n  pointer: the physical limit. The string nested loop formats `i` into a stack buffer; the\n  cold workload uses a special-purpose parser for `name(a: \"x\", b: \"y\")`, a floor.\n";
    out += "* **nested-loop**: SPEC 9's nested loop, `add(a: \"0\", b: i)` (100,000 host calls per run); the\n  host parses both strings and adds them into an atomic accumulator. **nested-loop-typed**:\n  `add_typed(a: 0, b: i)` with `i64` inputs.\n";
    out += "* **three-step-cold**: parse + check + layout + run of `add(a: \"10\", b: \"20\")`,\n  `multiply(value: \"30\", by: \"3\")`, `subtract(value: \"90\", by: \"5\")` with the compiled-flow cache\n  off (the jit row includes a JIT compile per step). **three-step-cached**: runs of the same three\n  flows compiled once (auto measured after warm-up, once native).\n";
    out += "* **sum-fold**: `capture` + `for` summing 0..1,000,000 in flow code; the native loop passes its\n  accumulator through `black_box` every iteration.\n";
    out += "* **compile**: parse + check + layout of the nested loop (interp row) and its JIT compile\n  (lowering, Cranelift, finalize; jit row).\n";
    out += "\nPeers (Rhai, Lua 5.4, LuaJIT, CPython) are not part of this build yet; the reference\nnumbers measured by the peers harness on this kind of machine are in `../shared/peers/README.md`.\n";
    out
}
