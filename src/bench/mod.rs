//! The built-in benchmark suite behind `koru-jit bench`: each workload in each tier and as
//! hand-written native Rust calling the same host functions (the physical limit), interleaved
//! round by round in one process, reported as medians with their spread.

pub mod file;
pub mod peers;
pub mod plot;
pub mod pure;

use crate::engine::{CacheConfig, CompileOptions, Engine, EngineConfig, Flow, Tier, TierPolicy};
use crate::host::{HostError, Registry};
use crate::limits::RunLimits;
use crate::Inputs;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub use peers::Peer;

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
    /// `capture` + `for` over 0..1,000,000 dispatching `match(i % 16)` to 16 arms (SPEC 10).
    MatchDispatch,
    /// The same fold written with `$std/control`'s `repeat`, a subflow that yields (SPEC 11).
    RepeatFold,
    /// The typed nested loop compiled without tracing and run with a trace sink (SPEC 13): what
    /// a sink costs a flow that was not compiled to trace (nothing: its code is the same).
    TraceOff,
    /// The typed nested loop compiled with tracing (`TraceLevel::Dispatches`), every one of its
    /// 100,000 lines formatted and handed to a sink that discards it.
    TraceOn,
    /// Parse + check + layout of the nested loop (interp); its JIT compile at the baseline
    /// quality `Tier::Jit` compiles before a first run (jit), and the optimizing compile of a
    /// hot flow, which the auto tier does (auto).
    Compile,
    /// The JIT compile of the nested loop written `n` times in one source (n = 1, 4, 16, 64),
    /// per step: how compile time grows with the size of a flow.
    CompileScaling(u32),
    /// A pure-computation program: `pure::ALL[k]`.
    Pure(usize),
}

impl Workload {
    pub const ALL: [Workload; 19] = [
        Workload::NestedLoop,
        Workload::NestedLoopTyped,
        Workload::ThreeStepCold,
        Workload::ThreeStepCached,
        Workload::SumFold,
        Workload::MatchDispatch,
        Workload::RepeatFold,
        Workload::TraceOff,
        Workload::TraceOn,
        Workload::Compile,
        Workload::CompileScaling(1),
        Workload::CompileScaling(4),
        Workload::CompileScaling(16),
        Workload::CompileScaling(64),
        Workload::Pure(0),
        Workload::Pure(1),
        Workload::Pure(2),
        Workload::Pure(3),
        Workload::Pure(4),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::NestedLoop => "nested-loop",
            Workload::NestedLoopTyped => "nested-loop-typed",
            Workload::ThreeStepCold => "three-step-cold",
            Workload::ThreeStepCached => "three-step-cached",
            Workload::SumFold => "sum-fold",
            Workload::MatchDispatch => "match-dispatch",
            Workload::RepeatFold => "repeat-fold",
            Workload::TraceOff => "trace-off",
            Workload::TraceOn => "trace-on",
            Workload::Compile => "compile",
            Workload::CompileScaling(1) => "compile-1x",
            Workload::CompileScaling(4) => "compile-4x",
            Workload::CompileScaling(16) => "compile-16x",
            Workload::CompileScaling(_) => "compile-64x",
            Workload::Pure(k) => pure::ALL[k].name,
        }
    }

    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// What one operation is, for the `ns/op` column.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::NestedLoop
            | Workload::NestedLoopTyped
            | Workload::TraceOff
            | Workload::TraceOn => "host call",
            Workload::ThreeStepCold => "parse+check+run",
            Workload::ThreeStepCached => "flow run",
            Workload::SumFold | Workload::MatchDispatch | Workload::RepeatFold => "iteration",
            Workload::Compile => "compile",
            Workload::CompileScaling(_) => "step compiled",
            Workload::Pure(k) => pure::ALL[k].unit,
        }
    }
}

/// Who runs a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    Tier(Tier),
    /// Hand-written Rust calling the same host functions.
    Native,
    /// Another engine running the same workload with the same host functions.
    Peer(Peer),
}

impl Runner {
    pub fn name(self) -> &'static str {
        match self {
            Runner::Tier(Tier::Interp) => "interp",
            Runner::Tier(Tier::Jit) => "jit",
            Runner::Tier(Tier::Auto) => "auto",
            Runner::Native => "native",
            Runner::Peer(peer) => peer.name(),
        }
    }
}

/// One workload on one runner: ns per operation over the rounds.
#[derive(Clone, Debug)]
pub struct Measurement {
    pub workload: Workload,
    pub runner: Runner,
    pub samples: Vec<f64>,
    /// Why there are no (or fewer) samples: the peer is unavailable or failed a round.
    pub error: Option<String>,
}

impl Measurement {
    pub fn median(&self) -> f64 {
        median(&self.samples)
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

/// The median of `samples` (NaN for none).
pub(crate) fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
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

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub workloads: Vec<Workload>,
    pub runners: Vec<Runner>,
    pub rounds: usize,
    /// The CPython peer's program: `KORU_BENCH_PYTHON` or `python3`.
    pub python: String,
}

impl BenchOptions {
    /// Adds every peer engine to the runners.
    pub fn with_peers(mut self) -> Self {
        self.runners.extend(Peer::ALL.into_iter().map(Runner::Peer));
        self
    }
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
            python: std::env::var("KORU_BENCH_PYTHON").unwrap_or_else(|_| "python3".to_string()),
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
/// `match(i % 16)` over 16 cases (the last the catch-all, as the native loop's `_`), each adding
/// the constant the native loop adds.
const MATCH_DISPATCH: &str = concat!(
    "~capture({ sum: 0 })\n| as acc |> for(0..1000000)\n    | each i |> match(i % 16)\n",
    "        | [0] |> captured { sum: acc.sum + 1 }\n",
    "        | [1] |> captured { sum: acc.sum + 3 }\n",
    "        | [2] |> captured { sum: acc.sum + 5 }\n",
    "        | [3] |> captured { sum: acc.sum + 7 }\n",
    "        | [4] |> captured { sum: acc.sum + 11 }\n",
    "        | [5] |> captured { sum: acc.sum + 13 }\n",
    "        | [6] |> captured { sum: acc.sum + 17 }\n",
    "        | [7] |> captured { sum: acc.sum + 19 }\n",
    "        | [8] |> captured { sum: acc.sum + 23 }\n",
    "        | [9] |> captured { sum: acc.sum + 29 }\n",
    "        | [10] |> captured { sum: acc.sum + 31 }\n",
    "        | [11] |> captured { sum: acc.sum + 37 }\n",
    "        | [12] |> captured { sum: acc.sum + 41 }\n",
    "        | [13] |> captured { sum: acc.sum + 43 }\n",
    "        | [14] |> captured { sum: acc.sum + 47 }\n",
    "        |? |> captured { sum: acc.sum + 53 }\n| captured total |> result total.sum\n",
);

const SUM_FOLD: &str = "~capture({ sum: 0 })\n| as acc |> for(0..1000000)\n    | each i |> captured { sum: acc.sum + i }\n| captured total |> result total.sum\n";
const REPEAT_FOLD: &str = "~import \"$std/control\"\n~capture({ sum: 0 })\n| as acc |> repeat(n: 1000000)\n    | each i |> captured { sum: acc.sum + i }\n    | done |> _\n| captured total |> result total.sum\n";
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

/// One round's figures: operations done and, for a peer that timed itself, its nanoseconds.
type Sample = Result<(u64, Option<f64>), String>;

struct Prepared {
    workload: Workload,
    runner: Runner,
    round: Box<dyn FnMut() -> Sample>,
}

fn engine_for(accumulator: &Arc<AtomicI64>, cache: bool) -> Engine {
    let config = EngineConfig {
        policy: TierPolicy::default(),
        cache: if cache {
            CacheConfig::default()
        } else {
            CacheConfig::disabled()
        },
        ..EngineConfig::default()
    };
    Engine::with_config(registry(accumulator), config)
}

fn compile(engine: &Engine, source: &str, tier: Tier) -> Flow {
    engine
        .compile("bench", source, &CompileOptions::default().tier(tier))
        .expect("the workloads compile")
}

/// One run of `source` per round, doing `operations`. Compiled once before the rounds, except in
/// the auto tier, which is measured from a fresh compile: the switch to native code is part of it.
fn flow_round(engine: Engine, source: &'static str, tier: Tier, operations: u64) -> Round {
    checked_flow_round(engine, source, tier, operations, |_| {})
}

/// A round of one run of `source` (compiled once, or each round for the auto tier, so that its
/// switch is inside the time), whose outcome `check` asserts on.
fn checked_flow_round(
    engine: Engine,
    source: &'static str,
    tier: Tier,
    operations: u64,
    check: impl Fn(&crate::Outcome) + 'static,
) -> Round {
    let (inputs, limits) = (Inputs::new(), RunLimits::default());
    let prepared = (tier != Tier::Auto).then(|| compile(&engine, source, tier));
    Box::new(move || {
        let flow = prepared
            .clone()
            .unwrap_or_else(|| compile(&engine, source, tier));
        check(&black_box(flow.run(&inputs, &limits).expect("no inputs")));
        operations
    })
}

/// A trace sink that keeps nothing (the `trace-*` workloads measure making the lines).
struct DiscardTrace;

impl crate::host::TraceSink for DiscardTrace {
    fn line(&self, line: &str) {
        black_box(line);
    }
}

/// [`flow_round`] compiled at trace `level`, run with a sink that discards the lines.
fn traced_round(engine: Engine, level: crate::TraceLevel, tier: Tier) -> Round {
    let inputs = Inputs::new();
    let limits = RunLimits {
        trace: Some(Arc::new(DiscardTrace)),
        ..RunLimits::default()
    };
    let options = CompileOptions::default().tier(tier).trace(level);
    let compile = move |engine: &Engine| {
        engine
            .compile("bench", NESTED_TYPED, &options)
            .expect("it compiles")
    };
    let prepared = (tier != Tier::Auto).then(|| compile(&engine));
    Box::new(move || {
        let flow = prepared.clone().unwrap_or_else(|| compile(&engine));
        black_box(flow.run(&inputs, &limits).expect("no inputs"));
        100_000
    })
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
            flow_round(engine_for(&accumulator, false), source, tier, 100_000)
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
        (Workload::TraceOff | Workload::TraceOn, Runner::Tier(tier)) => {
            let level = if workload == Workload::TraceOn {
                crate::TraceLevel::Dispatches
            } else {
                crate::TraceLevel::Off
            };
            traced_round(engine_for(&accumulator, false), level, tier)
        }
        (Workload::NestedLoopTyped | Workload::TraceOff | Workload::TraceOn, Runner::Native) => {
            Box::new(move || {
                let f: fn(&AtomicI64, i64, i64) -> i64 = black_box(host::add_typed);
                for _ in 0..black_box(1000) {
                    for i in 0..black_box(100i64) {
                        black_box(f(&accumulator, black_box(0), i));
                    }
                }
                100_000
            })
        }
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
            flow_round(engine_for(&accumulator, false), SUM_FOLD, tier, 1_000_000)
        }
        (Workload::RepeatFold, Runner::Tier(tier)) => flow_round(
            engine_for(&accumulator, false),
            REPEAT_FOLD,
            tier,
            1_000_000,
        ),
        (Workload::SumFold | Workload::RepeatFold, Runner::Native) => Box::new(|| {
            let mut sum = 0i64;
            for i in 0..black_box(1_000_000i64) {
                sum = black_box(sum.checked_add(i).expect("no overflow"));
            }
            black_box(sum);
            1_000_000
        }),
        (Workload::MatchDispatch, Runner::Tier(tier)) => flow_round(
            engine_for(&accumulator, false),
            MATCH_DISPATCH,
            tier,
            1_000_000,
        ),
        (Workload::MatchDispatch, Runner::Native) => Box::new(|| {
            let mut sum = 0i64;
            for i in 0..black_box(1_000_000i64) {
                let add = match i % 16 {
                    0 => 1,
                    1 => 3,
                    2 => 5,
                    3 => 7,
                    4 => 11,
                    5 => 13,
                    6 => 17,
                    7 => 19,
                    8 => 23,
                    9 => 29,
                    10 => 31,
                    11 => 37,
                    12 => 41,
                    13 => 43,
                    14 => 47,
                    _ => 53,
                };
                sum = black_box(sum.checked_add(add).expect("no overflow"));
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
        (Workload::Compile, Runner::Tier(tier @ (Tier::Jit | Tier::Auto))) => {
            let engine = engine_for(&accumulator, false);
            let flow = compile(&engine, NESTED_STRING, Tier::Interp);
            let quality = if tier == Tier::Jit {
                crate::jit::Quality::Baseline
            } else {
                crate::jit::Quality::Optimized
            };
            Box::new(move || {
                for _ in 0..10 {
                    black_box(
                        crate::jit::compile_with_quality(
                            flow.program(),
                            flow.layout(),
                            flow.registry(),
                            false,
                            quality,
                            &crate::jit::CompileBudget::default(),
                        )
                        .expect("the workload compiles"),
                    );
                }
                10
            })
        }
        (Workload::CompileScaling(copies), Runner::Tier(Tier::Jit)) => {
            let engine = engine_for(&accumulator, false);
            let flow = compile(
                &engine,
                &NESTED_STRING.repeat(copies as usize),
                Tier::Interp,
            );
            let steps = flow.program().step_count as u64;
            // About the same compile work per round at every size.
            let compiles = (64 / copies).max(1);
            Box::new(move || {
                for _ in 0..compiles {
                    black_box(
                        crate::jit::compile(flow.program(), flow.layout(), flow.registry())
                            .expect("the workload compiles"),
                    );
                }
                u64::from(compiles) * steps
            })
        }
        (Workload::Pure(k), Runner::Tier(tier)) => {
            let pure = pure::ALL[k];
            // Checked, so that a broken tier cannot look fast.
            checked_flow_round(
                engine_for(&accumulator, false),
                pure.source,
                tier,
                pure.operations,
                move |outcome| {
                    let got = outcome.value().and_then(|value| match pure.expected {
                        pure::Expected::Int(_) => value.get::<i64>().ok().map(pure::Expected::Int),
                        pure::Expected::Float(_) => {
                            value.get::<f64>().ok().map(pure::Expected::Float)
                        }
                    });
                    assert_eq!(got, Some(pure.expected), "{}: {outcome:?}", pure.name);
                },
            )
        }
        (Workload::Pure(k), Runner::Native) => {
            let pure = pure::ALL[k];
            Box::new(move || {
                assert_eq!((pure.native)(), pure.expected, "{}", pure.name);
                pure.operations
            })
        }
        (Workload::Compile | Workload::CompileScaling(_), _) => return None,
        (_, Runner::Peer(_)) => unreachable!("peers are prepared by `prepare_peers`"),
    };
    let mut round = round;
    Some(Prepared {
        workload,
        runner,
        round: Box::new(move || Ok((round(), None))),
    })
}

/// Starts each peer once (one engine or child process shared by its workloads) and prepares a
/// measurement per workload it runs; an unavailable peer gets one row saying why.
fn prepare_peers(
    options: &BenchOptions,
    prepared: &mut Vec<Prepared>,
    missing: &mut Vec<Measurement>,
) {
    use std::cell::RefCell;
    use std::rc::Rc;
    for &runner in &options.runners {
        let Runner::Peer(peer) = runner else { continue };
        let workloads: Vec<Workload> = options
            .workloads
            .iter()
            .copied()
            .filter(|w| Peer::runs(w.name()))
            .collect();
        let Some(&first) = workloads.first() else {
            continue;
        };
        match peers::PeerEngine::start(peer, &options.python) {
            Ok((engine, version)) => {
                eprintln!("peer {}: {version}", peer.name());
                let engine = Rc::new(RefCell::new(engine));
                for workload in workloads {
                    let engine = engine.clone();
                    prepared.push(Prepared {
                        workload,
                        runner,
                        round: Box::new(move || match engine.borrow_mut().round(workload.name()) {
                            Ok(Some(sample)) => Ok((sample.operations, sample.ns)),
                            Ok(None) => Err(format!("does not run {}", workload.name())),
                            Err(e) => Err(e),
                        }),
                    });
                }
            }
            Err(reason) => {
                eprintln!("peer {}: unavailable: {reason}", peer.name());
                missing.push(Measurement {
                    workload: first,
                    runner,
                    samples: Vec::new(),
                    error: Some(format!("unavailable: {reason}")),
                });
            }
        }
    }
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
pub fn run(options: &BenchOptions) -> Report {
    let mut prepared: Vec<Prepared> = Vec::new();
    for &workload in &options.workloads {
        for &runner in &options.runners {
            if matches!(runner, Runner::Peer(_)) {
                continue;
            }
            if let Some(p) = prepare(workload, runner) {
                prepared.push(p);
            }
        }
    }
    let mut missing = Vec::new();
    prepare_peers(options, &mut prepared, &mut missing);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); prepared.len()];
    let mut errors: Vec<Option<String>> = vec![None; prepared.len()];
    for round in 0..=options.rounds {
        for (k, p) in prepared.iter_mut().enumerate() {
            if errors[k].is_some() {
                continue;
            }
            let started = Instant::now();
            match (p.round)() {
                Ok((operations, timed)) => {
                    let elapsed = timed.unwrap_or_else(|| started.elapsed().as_nanos() as f64);
                    if round > 0 {
                        samples[k].push(elapsed / operations.max(1) as f64);
                    }
                }
                Err(e) => errors[k] = Some(format!("failed: {e}")),
            }
        }
    }
    // Rows in the order of the workloads, then of the runners asked for.
    let mut measurements: Vec<Measurement> = prepared
        .into_iter()
        .zip(samples)
        .zip(errors)
        .map(|((p, samples), error)| Measurement {
            workload: p.workload,
            runner: p.runner,
            samples,
            error,
        })
        .chain(missing)
        .collect();
    let position = |runner: Runner| options.runners.iter().position(|&r| r == runner);
    let workload_position = |w: Workload| options.workloads.iter().position(|&x| x == w);
    measurements.sort_by_key(|m| (workload_position(m.workload), position(m.runner)));
    Report {
        measurements,
        rounds: options.rounds,
    }
}

/// The auto tier's switch to native code, seen from the host: one run of the string nested loop
/// from a fresh compile, with an `add` that notes the time every `chunk` calls. Returns
/// (calls so far, mean ns per call over the chunk) and the flow's statistics.
pub fn auto_timeline(chunk: u64) -> (Vec<(u64, f64)>, crate::FlowStats) {
    use std::sync::atomic::AtomicU64;
    const CALLS: u64 = 100_000;
    let chunk = chunk.clamp(1, CALLS);
    struct Marks {
        start: Instant,
        calls: AtomicU64,
        ns: Vec<AtomicU64>,
    }
    let marks = Arc::new(Marks {
        start: Instant::now(),
        calls: AtomicU64::new(0),
        ns: (0..CALLS / chunk).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut registry = Registry::with_std();
    let m = marks.clone();
    registry
        .event(
            "~event add { a: []const u8, b: []const u8 } | sum []const u8",
            move |a: &str, b: &str| {
                let calls = m.calls.fetch_add(1, Ordering::Relaxed) + 1;
                if calls.is_multiple_of(chunk) {
                    if let Some(slot) = m.ns.get((calls / chunk - 1) as usize) {
                        slot.store(m.start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    }
                }
                host::parse(a)?;
                host::parse(b)?;
                Ok::<_, HostError>("ok")
            },
        )
        .expect("valid declaration");
    let engine = Engine::with_config(
        registry,
        EngineConfig {
            policy: TierPolicy::default(),
            cache: CacheConfig::disabled(),
            ..EngineConfig::default()
        },
    );
    let flow = compile(&engine, NESTED_STRING, Tier::Auto);
    let started = marks.start.elapsed().as_nanos() as u64;
    black_box(
        flow.run(&Inputs::new(), &RunLimits::default())
            .expect("no inputs"),
    );
    let mut previous = started;
    let points = marks
        .ns
        .iter()
        .enumerate()
        .map(|(k, slot)| {
            let now = slot.load(Ordering::Relaxed);
            let point = (
                (k as u64 + 1) * chunk,
                now.saturating_sub(previous) as f64 / chunk as f64,
            );
            previous = now;
            point
        })
        .collect();
    (points, flow.stats())
}

/// Nanoseconds with the precision they deserve (sub-nanosecond figures keep two decimals).
fn ns(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

/// The result of one `koru-jit bench`: every measurement, the engines' versions, the targets.
pub struct Report {
    pub measurements: Vec<Measurement>,
    pub rounds: usize,
}

/// A performance target of the issues, checked against the figures of this one run.
pub struct Target {
    pub description: &'static str,
    /// The measured ratio or figure, in words.
    pub measured: String,
    /// `None` when a figure it needs was not measured (workload, tier or peer not run).
    pub met: Option<bool>,
}

impl Report {
    fn median(&self, workload: Workload, runner: Runner) -> Option<f64> {
        self.measurements
            .iter()
            .find(|m| m.workload == workload && m.runner == runner && !m.samples.is_empty())
            .map(Measurement::median)
    }

    /// The fastest peer on a workload and its median.
    pub fn best_peer(&self, workload: Workload) -> Option<(Peer, f64)> {
        self.measurements
            .iter()
            .filter(|m| m.workload == workload && !m.samples.is_empty())
            .filter_map(|m| match m.runner {
                Runner::Peer(peer) => Some((peer, m.median())),
                _ => None,
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn ratio_to_native(&self, m: &Measurement) -> Option<f64> {
        let native = self.median(m.workload, Runner::Native)?;
        (!m.samples.is_empty()).then(|| m.median() / native)
    }

    fn ratio_to_best_peer(&self, m: &Measurement) -> Option<f64> {
        let (_, best) = self.best_peer(m.workload)?;
        (!m.samples.is_empty()).then(|| m.median() / best)
    }

    /// The targets of issues 3 and 6, each with what this run measured.
    pub fn targets(&self) -> Vec<Target> {
        let jit = Runner::Tier(Tier::Jit);
        let mut targets = Vec::new();
        for (workload, description) in [
            (
                Workload::NestedLoopTyped,
                "jit within 1.5x of native on nested-loop-typed",
            ),
            (
                Workload::NestedLoop,
                "jit within 1.5x of native on nested-loop",
            ),
            (Workload::SumFold, "jit within 1.5x of native on sum-fold"),
        ] {
            let ratio = self
                .median(workload, jit)
                .zip(self.median(workload, Runner::Native))
                .map(|(j, n)| j / n);
            targets.push(Target {
                description,
                measured: ratio.map_or("not measured".into(), |r| format!("{r:.2}x native")),
                met: ratio.map(|r| r <= 1.5),
            });
        }
        let ratio = self
            .median(Workload::MatchDispatch, jit)
            .zip(self.median(Workload::MatchDispatch, Runner::Native))
            .map(|(j, n)| j / n);
        targets.push(Target {
            description: "jit within 1.3x of a native Rust match on match-dispatch (issue 14)",
            measured: ratio.map_or("not measured".into(), |r| format!("{r:.2}x native")),
            met: ratio.map(|r| r <= 1.3),
        });
        // Issue 14: `repeat` (a subflow that yields) compiles to `for`'s loop.
        let repeat = self
            .median(Workload::RepeatFold, jit)
            .zip(self.median(Workload::SumFold, jit))
            .map(|(r, f)| r / f);
        targets.push(Target {
            description: "jit repeat-fold within 1.05x of jit sum-fold (the same fold with `for`)",
            measured: repeat.map_or("not measured".into(), |r| format!("{r:.2}x for")),
            met: repeat.map(|r| r <= 1.05),
        });
        let against_luajit = |workload: Workload, runner: Runner| {
            self.median(workload, runner)
                .zip(self.median(workload, Runner::Peer(Peer::LuaJit)))
                .map(|(ours, luajit)| ours / luajit)
        };
        for (workload, runner, description) in [
            (
                Workload::NestedLoop,
                Runner::Tier(Tier::Interp),
                "interp faster than LuaJIT on nested-loop",
            ),
            (
                Workload::NestedLoopTyped,
                Runner::Tier(Tier::Interp),
                "interp faster than LuaJIT on nested-loop-typed",
            ),
            (
                Workload::ThreeStepCold,
                Runner::Tier(Tier::Auto),
                "three-step-cold (auto, the default tier) faster than LuaJIT's load+call",
            ),
        ] {
            let ratio = against_luajit(workload, runner);
            targets.push(Target {
                description,
                measured: ratio.map_or("not measured".into(), |r| format!("{r:.2}x LuaJIT")),
                met: ratio.map(|r| r < 1.0),
            });
        }
        // Issue 17: compile latency, in microseconds.
        let three_cold = self.median(Workload::ThreeStepCold, jit);
        let compile = self.median(Workload::Compile, jit);
        for (description, measured, bound) in [
            (
                "jit compile of the nested loop at most 150 us (issue 17)",
                compile,
                150.0,
            ),
            (
                "three-step-cold (jit) at most 60 us per flow (issue 17)",
                three_cold,
                60.0,
            ),
        ] {
            let us = measured.map(|ns| ns / 1000.0);
            targets.push(Target {
                description,
                measured: us.map_or("not measured".into(), |us| format!("{us:.1} us")),
                met: us.map(|us| us <= bound),
            });
        }
        let per_step = |copies| self.median(Workload::CompileScaling(copies), jit);
        let growth = per_step(64)
            .zip(per_step(1))
            .map(|(large, small)| large / small);
        targets.push(Target {
            description: "jit compile time per step at 64x the nested loop within 1.5x of 1x",
            measured: growth.map_or("not measured".into(), |g| format!("{g:.2}x")),
            met: growth.map(|g| g <= 1.5),
        });
        // Issues 16 and 17: the pure-computation workloads, against native Rust and the Luas.
        let pure: Vec<Workload> = (0..pure::ALL.len()).map(Workload::Pure).collect();
        let interp = Runner::Tier(Tier::Interp);
        for (description, runner, against, bound, geomean) in [
            (
                "interp at most 1.0x Lua 5.4 on every pure workload (issue 16)",
                interp,
                Runner::Peer(Peer::Lua54),
                1.0,
                false,
            ),
            (
                "interp at most 1.0x LuaJIT's interpreter on the pure geomean (issue 16)",
                interp,
                Runner::Peer(Peer::LuaJitInterp),
                1.0,
                true,
            ),
            (
                "jit at most 1.25x native on the pure geomean (issue 17)",
                jit,
                Runner::Native,
                1.25,
                true,
            ),
            (
                "jit at most 1.5x native on every pure workload (issue 17)",
                jit,
                Runner::Native,
                1.5,
                false,
            ),
            (
                "jit at most 1.0x LuaJIT on every pure workload (issue 17)",
                jit,
                Runner::Peer(Peer::LuaJit),
                1.0,
                false,
            ),
        ] {
            let ratios: Option<Vec<(f64, Workload)>> = pure
                .iter()
                .map(|&w| {
                    self.median(w, runner)
                        .zip(self.median(w, against))
                        .map(|(a, b)| (a / b, w))
                })
                .collect();
            let name = match against {
                Runner::Native => "native".to_string(),
                other => other.name().to_string(),
            };
            let (measured, met) = match ratios {
                None => ("not measured".to_string(), None),
                Some(ratios) if geomean => {
                    let g = (ratios.iter().map(|(r, _)| r.ln()).sum::<f64>() / ratios.len() as f64)
                        .exp();
                    (format!("{g:.2}x {name}"), Some(g <= bound))
                }
                Some(ratios) => {
                    let (worst, w) =
                        ratios
                            .iter()
                            .copied()
                            .fold(
                                (f64::NEG_INFINITY, pure[0]),
                                |a, b| if b.0 > a.0 { b } else { a },
                            );
                    (
                        format!("worst {worst:.2}x {name} ({})", w.name()),
                        Some(worst <= bound),
                    )
                }
            };
            targets.push(Target {
                description,
                measured,
                met,
            });
        }
        let cached = self.median(Workload::ThreeStepCached, Runner::Tier(Tier::Auto));
        targets.push(Target {
            description: "three-step-cached (auto) at most 150 ns per flow run",
            measured: cached.map_or("not measured".into(), |c| format!("{} ns", ns(c))),
            met: cached.map(|c| c <= 150.0),
        });
        targets
    }
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or("-".to_string(), |r| format!("{r:.2}x"))
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

/// A table: workload, runner, median ns/op, spread (min-max), ratios to native and to the
/// best peer; then the targets.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{:<18} {:<8} {:>12} {:>22} {:>9} {:>11}  {}\n",
        "workload", "runner", "median ns", "spread (min-max)", "x native", "x best peer", "per"
    );
    for m in &report.measurements {
        if let Some(error) = m.error.as_ref().filter(|_| m.samples.is_empty()) {
            out += &format!("{:<18} {:<8} {error}\n", m.workload.name(), m.runner.name());
            continue;
        }
        out += &format!(
            "{:<18} {:<8} {:>12} {:>22} {:>9} {:>11}  {}{}\n",
            m.workload.name(),
            m.runner.name(),
            ns(m.median()),
            format!("{}-{}", ns(m.min()), ns(m.max())),
            ratio_text(report.ratio_to_native(m)),
            ratio_text(report.ratio_to_best_peer(m)),
            m.workload.unit(),
            m.error
                .as_ref()
                .map_or(String::new(), |e| format!(" ({e})")),
        );
    }
    out += "\ntargets:\n";
    for target in report.targets() {
        out += &format!(
            "  {:<13} {:<72} {}\n",
            verdict(target.met),
            target.description,
            target.measured
        );
    }
    out
}

/// Every figure and ratio as one JSON object (feature `json`).
#[cfg(feature = "json")]
pub fn to_json(report: &Report) -> serde_json::Value {
    let results: Vec<serde_json::Value> = report
        .measurements
        .iter()
        .map(|m| {
            let samples = !m.samples.is_empty();
            serde_json::json!({
                "workload": m.workload.name(),
                "runner": m.runner.name(),
                "unit": m.workload.unit(),
                "median_ns": samples.then(|| m.median()),
                "min_ns": samples.then(|| m.min()),
                "max_ns": samples.then(|| m.max()),
                "samples_ns": m.samples,
                "ratio_to_native": report.ratio_to_native(m),
                "ratio_to_best_peer": report.ratio_to_best_peer(m),
                "best_peer": report.best_peer(m.workload).map(|(p, _)| p.name()),
                "error": m.error,
            })
        })
        .collect();
    let targets: Vec<serde_json::Value> = report
        .targets()
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "target": t.description,
                "measured": t.measured,
                "met": t.met,
            })
        })
        .collect();
    serde_json::json!({
        "machine": machine(),
        "rounds": report.rounds,
        "results": results,
        "targets": targets,
    })
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

/// The whole BENCHMARKS.md: command, machine, table, targets, chart and what each number means.
pub fn markdown(report: &Report, command: &str, chart: Option<&str>) -> String {
    let mut out = String::new();
    out += "# Benchmarks\n\n";
    out += &format!("Generated by `{command}`; do not edit by hand.\n\n");
    out += &format!(
        "Machine: {}. Rounds: {} measured (one warm-up round dropped), interleaved: round 1 of\nevery workload and runner, then round 2, and so on, in one run.\n\n",
        machine(),
        report.rounds
    );
    out += "| workload | runner | median ns per op | spread (min-max) | x native | x best peer | op |\n|---|---|---|---|---|---|---|\n";
    for m in &report.measurements {
        if let Some(error) = m.error.as_ref().filter(|_| m.samples.is_empty()) {
            out += &format!(
                "| {} | {} | {error} | | | | |\n",
                m.workload.name(),
                m.runner.name()
            );
            continue;
        }
        out += &format!(
            "| {} | {} | {} | {}-{} | {} | {} | {} |\n",
            m.workload.name(),
            m.runner.name(),
            ns(m.median()),
            ns(m.min()),
            ns(m.max()),
            ratio_text(report.ratio_to_native(m)),
            ratio_text(report.ratio_to_best_peer(m)),
            m.workload.unit()
        );
    }
    out += "\n## Targets (ratios from this run)\n\n| target | measured | |\n|---|---|---|\n";
    for target in report.targets() {
        out += &format!(
            "| {} | {} | {} |\n",
            target.description,
            target.measured,
            verdict(target.met)
        );
    }
    if let Some(chart) = chart {
        out += &format!("\n![ns per operation by engine and tier; auto tier timeline]({chart})\n");
    }
    out += "\n## What the numbers mean\n\n";
    out += "* **interp**, **jit**, **auto**: the flow run by the interpreter, by native code compiled before the\n  measured rounds, and by the auto tier (for the loop workloads a fresh compile each round, so\n  the interpreted start and the switch to native code are inside the time).\n";
    out += "* **native**: hand-written Rust calling the same host functions through a non-inlinable\n  pointer: the physical limit. The string nested loop formats `i` into a stack buffer; the\n  cold workload uses a special-purpose parser for `name(a: \"x\", b: \"y\")`, a floor.\n";
    out += "* **rhai**, **luajit** (in-process, mlua vendored), **lua5.4** (mlua vendored, a child process:\n  mlua links one Lua per binary) and **cpython** (`python3`, a child process that times its own\n  rounds): the same workloads written the obvious way in each language, with the same host\n  functions registered as Rust closures (Python functions for CPython). Each checks its result.\n  Cold: `lua.load(src).call()`, Rhai `eval`, Python `eval(src)`; cached: a function / AST / code\n  object compiled once. Build with `--features peers` for Rhai and the Luas.\n";
    out += "* **nested-loop**: SPEC 9's nested loop, `add(a: \"0\", b: i)` (100,000 host calls per run); the\n  host parses both strings and adds them into an accumulator. **nested-loop-typed**:\n  `add_typed(a: 0, b: i)` with `i64` arguments.\n";
    out += "* **three-step-cold**: parse + check + layout + run of `add(a: \"10\", b: \"20\")`,\n  `multiply(value: \"30\", by: \"3\")`, `subtract(value: \"90\", by: \"5\")` with the compiled-flow cache\n  off (the jit row includes a JIT compile per step). **three-step-cached**: runs of the same three\n  flows compiled once (auto measured after warm-up, once native).\n";
    out += "* **sum-fold**: `capture` + `for` summing 0..1,000,000 in flow code; the native loop passes its\n  accumulator through `black_box` every iteration.\n";
    out += "* **compile**: parse + check + layout of the nested loop (interp row) and its JIT compile\n  (lowering, Cranelift, finalize): at the baseline quality `--tier jit` compiles before a first\n  run (jit row), and optimized, as the auto tier compiles a hot flow (auto row).\n";
    out += "* **x best peer**: the median over the fastest peer's median on that workload.\n";
    out
}
