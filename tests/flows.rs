//! Runs every `tests/flows/**/*.kz` file on every tier and compares what happens with the
//! expectations written in its comments. Three tests per file:
//!
//! * `interp::FILE`: the interpreter meets the expectations;
//! * `jit::FILE`: native code meets them too, and gives the interpreter's output, outcome, fuel
//!   and host-call sequence exactly;
//! * `auto::FILE`: the auto tier with thresholds of 1, run twice: the first run starts in the
//!   interpreter and moves to native code at its first loop back-edge, the second starts native;
//!   both observably equal the interpreter;
//! * `split::FILE`: native code compiled as one function per step at most (the regions large
//!   flows are split into, `CompileBudget::function_steps`) equals the interpreter too, in the
//!   jit tier and in the auto tier (moving to it at a loop head);
//! * `aarch64::FILE`: the flow compiles with the aarch64 backend, split the same way (compiled
//!   only; `.ci/aarch64.sh` runs this whole harness as aarch64 under qemu);
//! * `loaded::FILE`: compiled, stored as bytes (`Flow::to_bytes`) and loaded back
//!   (`Engine::load`): in the interpreter, the JIT, the auto tier (a mid-run switch) and split
//!   native code, and traced, it observably equals the parsed flow;
//! * `trace::FILE`: compiled with `TraceLevel::All` (at most 10,000 trace lines unless the file
//!   says), the file still meets its expectations of output and outcome in every tier (a trace
//!   never changes a run), and the trace lines are the same in every tier, the split native
//!   code and the mid-run switch to native code included.
//!
//! Directives (each a `// name: value` comment line):
//!
//! | directive | meaning |
//! |---|---|
//! | `input: name=value` | a flow input: of the type the source declares for it (`~input { ... }`), else `42` int, `4.2` float, `true`/`false` bool, anything else str (the command line's `--input`) |
//! | `input: name:type=value` | a flow input of that type |
//! | `scope: name` | check against this scope of `tests/common` |
//! | `fuel-limit: N`, `iteration-limit: N`, `output-limit: N` | run limits (`output-limit` is `max_output_bytes`) |
//! | `expect: text` | one line of program output (all lines, in order; none means no output) |
//! | `expect-partial: text` | program output after the last `expect` line, without a newline (a write cut by the output limit) |
//! | `expect-stderr: text` | one line of `eprintln` output |
//! | `outcome: JSON` | the run is ok and its value is this JSON (`none` for no value) |
//! | `fuel: N` | the fuel used |
//! | `exhausted: Limit [last=name]` | the run stops at this limit (last event charged) |
//! | `runtime: Code at L:C` | the run fails with this error at this position |
//! | `error: E0202 at L:C` | a parse or check error (list all of them) |
//! | `accumulator: N` | the demo `add` accumulator after the run |
//! | `max-handles: N`, `auto-discharge: off` | run limits of obligations (`max_handles`, `keep_handles_open`) |
//! | `discharged: event(handle)` | one discharging call at the end of the run, in order (all of them; none means none); `discharged: event(handle) Code` for one that failed |
//! | `open-handle: state handle event` | one obligation left open (auto-discharge off), oldest first |
//! | `handles: N` | obligations still open at the end (0 unless stated) |
//! | `shape: event` | the value must have the shape of this event (`CompileOptions::shape`) |
//! | `mock: source` | a mock (`CompileOptions::mock`), one per line, `\n` in it a newline |
//! | `call: name(args)` | one host call of the test registry's logged events, in order (`calls: none`: no call) |
//! | `errors-in: name` | the `error` positions are in this mock's text (`mock 1`, ...), not the file's |
//! | `trace: dispatches` or `trace: all` | compile with tracing at that level (`TraceLevel`) and run with a trace sink |
//! | `expect-trace: line` | one trace line (all of them, in order; none means no line) |
//! | `trace-line-limit: N`, `trace-byte-limit: N` | the trace bounds (`max_trace_lines`, `max_trace_bytes`) |
//! | `trace-cut: true` | the trace reached its bound (without it, a traced file's trace must not be cut) |
//!
//! A file must state at least one of `outcome`, `exhausted`, `runtime` or `error`.

mod common;

use koru_jit::{
    CaptureSink, CaptureTrace, CompileOptions, Engine, EngineConfig, Inputs, Outcome, RunLimits,
    Scalar, Tier, TierPolicy, TraceLevel, Type,
};
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Default, Debug)]
struct Expectations {
    /// Name, type if written, and the value as written.
    inputs: Vec<(String, Option<Type>, String)>,
    scope: Option<String>,
    fuel_limit: Option<u64>,
    iteration_limit: Option<u64>,
    output_limit: Option<u64>,
    stdout: Vec<String>,
    stdout_partial: Option<String>,
    stderr: Vec<String>,
    outcome: Option<serde_json::Value>,
    fuel: Option<u64>,
    exhausted: Option<String>,
    runtime: Option<String>,
    errors: Vec<String>,
    accumulator: Option<i64>,
    max_handles: Option<u64>,
    keep_handles_open: bool,
    discharged: Vec<String>,
    open_handles: Vec<String>,
    handles: u64,
    shape: Option<String>,
    mocks: Vec<String>,
    errors_in: Option<String>,
    /// The host calls expected, in order (`None`: not checked).
    calls: Option<Vec<String>>,
    trace: TraceLevel,
    trace_lines: Vec<String>,
    trace_line_limit: Option<u64>,
    trace_byte_limit: Option<u64>,
    trace_cut: bool,
    /// The trace level comes from the `trace::` trial, not from the file: its lines are not
    /// checked.
    overridden_trace: bool,
}

fn expectations(source: &str) -> Result<Expectations, String> {
    let mut e = Expectations::default();
    for line in source.lines() {
        let Some(comment) = line.trim_start().strip_prefix("//") else {
            continue;
        };
        let Some((key, value)) = comment.trim_start().split_once(':') else {
            continue;
        };
        let raw = value.strip_prefix(' ').unwrap_or(value);
        let value = value.trim();
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("`{key}` needs a number, got `{value}`"))
        };
        match key.trim() {
            "input" => {
                let (head, v) = value.split_once('=').ok_or("`input` takes name=value")?;
                let (name, ty) = match head.split_once(':') {
                    Some((name, ty)) => (
                        name,
                        Some(Type::from_written(ty).ok_or(format!("unknown type `{ty}`"))?),
                    ),
                    None => (head, None),
                };
                e.inputs.push((name.to_string(), ty, v.to_string()));
            }
            "scope" => e.scope = Some(value.to_string()),
            "shape" => e.shape = Some(value.to_string()),
            "mock" => e.mocks.push(value.replace("\\n", "\n")),
            "errors-in" => e.errors_in = Some(value.to_string()),
            "call" => e.calls.get_or_insert_with(Vec::new).push(value.to_string()),
            "calls" if value == "none" => e.calls = Some(Vec::new()),
            "fuel-limit" => e.fuel_limit = Some(number()?),
            "iteration-limit" => e.iteration_limit = Some(number()?),
            "output-limit" => e.output_limit = Some(number()?),
            "expect" => e.stdout.push(raw.to_string()),
            "expect-partial" => e.stdout_partial = Some(raw.to_string()),
            "expect-stderr" => e.stderr.push(raw.to_string()),
            "outcome" => {
                e.outcome = Some(if value == "none" {
                    serde_json::Value::Null
                } else {
                    serde_json::from_str(value)
                        .map_err(|err| format!("bad outcome JSON `{value}`: {err}"))?
                })
            }
            "fuel" => e.fuel = Some(number()?),
            "exhausted" => e.exhausted = Some(value.to_string()),
            "runtime" => e.runtime = Some(value.to_string()),
            "error" => e.errors.push(value.to_string()),
            "max-handles" => e.max_handles = Some(number()?),
            "auto-discharge" => e.keep_handles_open = value == "off",
            "discharged" => e.discharged.push(value.to_string()),
            "open-handle" => e.open_handles.push(value.to_string()),
            "handles" => e.handles = number()?,
            "trace" => {
                e.trace = match value {
                    "dispatches" => TraceLevel::Dispatches,
                    "all" => TraceLevel::All,
                    _ => return Err(format!("`trace` is dispatches or all, not `{value}`")),
                }
            }
            "expect-trace" => e.trace_lines.push(raw.to_string()),
            "trace-line-limit" => e.trace_line_limit = Some(number()?),
            "trace-byte-limit" => e.trace_byte_limit = Some(number()?),
            "trace-cut" => e.trace_cut = value == "true",
            "accumulator" => {
                e.accumulator = Some(
                    value
                        .parse()
                        .map_err(|_| "`accumulator` needs an integer")?,
                )
            }
            _ => {}
        }
    }
    if e.trace == TraceLevel::Off && (!e.trace_lines.is_empty() || e.trace_cut) {
        return Err(
            "`expect-trace` and `trace-cut` need `trace: dispatches` or `trace: all`".into(),
        );
    }
    if e.outcome.is_none() && e.exhausted.is_none() && e.runtime.is_none() && e.errors.is_empty() {
        return Err("the file states no expectation (outcome, exhausted, runtime or error)".into());
    }
    Ok(e)
}

fn lines(expected: &[String]) -> String {
    expected.iter().map(|l| format!("{l}\n")).collect()
}

/// Everything observable about one run, for comparing tiers.
#[derive(Debug, PartialEq)]
struct Observed {
    stdout: String,
    stderr: String,
    outcome: serde_json::Value,
    calls: Vec<String>,
    accumulator: i64,
    trace: Vec<String>,
    trace_cut: bool,
}

fn compile_options(e: &Expectations, tier: Tier) -> CompileOptions {
    let mut options = CompileOptions {
        trace: e.trace,
        scope: e.scope.clone(),
        // Typed as written, or by how the value looks, unless the source declares them.
        guessed_inputs: e
            .inputs
            .iter()
            .map(|(n, ty, v)| (n.clone(), ty.unwrap_or_else(|| Scalar::from_text(v).ty())))
            .collect(),
        tier,
        shape: e.shape.clone(),
        ..CompileOptions::default()
    };
    for mock in &e.mocks {
        options = options.mock(mock);
    }
    options
}

/// Runs the file on `tier`; `Ok(None)` when it was expected not to compile (and did not).
fn run_file(path: &Path, tier: Tier) -> Result<Option<Observed>, Failed> {
    run_file_times(path, tier, 1)
}

/// Runs the file `runs` times on one compiled flow, checking every run; returns the last run's
/// observations. The auto tier compiles at the first opportunity (thresholds of 1).
fn run_file_times(path: &Path, tier: Tier, runs: usize) -> Result<Option<Observed>, Failed> {
    run_file_with(path, tier, runs, TierPolicy::eager(), None, false)
}

/// Like [`run_file_times`], under `policy`; with `traced`, compiled with tracing at that level
/// whatever the file says (its trace expectations are then not checked, the rest are).
fn run_file_with(
    path: &Path,
    tier: Tier,
    runs: usize,
    policy: TierPolicy,
    traced: Option<TraceLevel>,
    loaded: bool,
) -> Result<Option<Observed>, Failed> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut e = expectations(&source)?;
    if let Some(level) = traced {
        if e.trace != level {
            e.trace = level;
            e.trace_lines.clear();
            e.trace_cut = false;
            e.trace_line_limit = e.trace_line_limit.or(Some(10_000));
            e.overridden_trace = true;
        }
    }
    let (mut registry, accumulator, log) = common::test_registry();
    let sink = Arc::new(CaptureSink::new());
    registry.set_output(sink.clone());
    let config = EngineConfig {
        policy,
        ..EngineConfig::default()
    };
    let engine = Engine::with_config(registry, config);
    let name = path.display().to_string();
    let flow = match engine.compile(&name, &source, &compile_options(&e, tier)) {
        Ok(flow) => flow,
        Err(errors) => {
            let found: Vec<String> = errors
                .positions()
                .iter()
                .map(|(code, l, c)| format!("{code} at {l}:{c}"))
                .collect();
            let source_name = e.errors_in.as_deref().unwrap_or(&name);
            if found != e.errors || errors.name != source_name {
                return Err(format!(
                    "expected errors {:?} in {source_name}, found {:?} in {}\n{}",
                    e.errors,
                    found,
                    errors.name,
                    errors.render(false)
                )
                .into());
            }
            return Ok(None);
        }
    };
    if !e.errors.is_empty() {
        return Err(format!("expected errors {:?}, but the source compiled", e.errors).into());
    }
    // The round trip: the compiled flow as bytes, loaded back without parsing.
    let flow = if loaded {
        let bytes = flow.to_bytes();
        let options = CompileOptions {
            tier,
            trace: e.trace,
            scope: e.scope.clone(),
            ..CompileOptions::default()
        };
        let loaded = engine
            .load(&bytes, &options)
            .map_err(|errors| format!("the artifact does not load: {}", errors.render(false)))?;
        if loaded.to_bytes() != bytes {
            return Err("the loaded flow's artifact differs from the compiled flow's".into());
        }
        loaded
    } else {
        flow
    };
    if tier == Tier::Jit && flow.tier() != Tier::Jit {
        return Err(format!("the JIT did not compile this flow: {:?}", flow.jit_error()).into());
    }
    let mut inputs = Inputs::new();
    for (name, _, text) in &e.inputs {
        // Read as the flow's input of that name is typed, as the command line reads it.
        let ty = flow
            .input_type(name)
            .ok_or(format!("the flow has no input `{name}`"))?;
        let value =
            Scalar::parse_as(text, ty).ok_or(format!("input `{name}`: `{text}` is not a {ty}"))?;
        inputs.insert(name, value);
    }
    let trace = Arc::new(CaptureTrace::new());
    let limits = RunLimits {
        fuel: e.fuel_limit,
        max_iterations: e.iteration_limit,
        max_output_bytes: e.output_limit,
        max_handles: e.max_handles,
        keep_handles_open: e.keep_handles_open,
        trace: (e.trace != TraceLevel::Off).then(|| trace.clone() as Arc<dyn koru_jit::TraceSink>),
        max_trace_lines: e.trace_line_limit,
        max_trace_bytes: e.trace_byte_limit,
        ..RunLimits::default()
    };
    let mut last = None;
    for run in 0..runs {
        accumulator.store(0, Ordering::Relaxed);
        let observed = check_run(
            &flow,
            &inputs,
            &limits,
            &e,
            (&sink, &trace),
            &accumulator,
            &log,
        )
        .map_err(|problem| format!("run {}: {}", run + 1, problem.message().unwrap_or("")))?;
        last = Some(observed);
    }
    Ok(last)
}

/// One run of a compiled file, checked against its expectations.
fn check_run(
    flow: &koru_jit::Flow,
    inputs: &Inputs,
    limits: &RunLimits,
    e: &Expectations,
    (sink, trace): (&CaptureSink, &CaptureTrace),
    accumulator: &std::sync::atomic::AtomicI64,
    log: &common::CallLog,
) -> Result<Observed, Failed> {
    let report = flow
        .run_report(inputs, limits, sink)
        .map_err(|err| format!("input error: {err}"))?;
    let outcome = &report.outcome;
    let mut problems = Vec::new();
    let discharged: Vec<String> = report
        .obligations
        .discharged
        .iter()
        .map(|d| match &d.failure {
            None => format!("{}({})", d.event, d.handle),
            Some((code, _)) => format!("{}({}) {}", d.event, d.handle, code.as_str()),
        })
        .collect();
    if discharged != e.discharged {
        problems.push(format!(
            "discharged: expected {:?}, found {discharged:?}",
            e.discharged
        ));
    }
    let open: Vec<String> = report
        .obligations
        .open_handles
        .iter()
        .map(|h| format!("{} {} {}", h.state, h.handle, h.event))
        .collect();
    if open != e.open_handles {
        problems.push(format!(
            "open handles: expected {:?}, found {open:?}",
            e.open_handles
        ));
    }
    if report.obligations.handles != e.handles {
        problems.push(format!(
            "handles: expected {}, found {}",
            e.handles, report.obligations.handles
        ));
    }
    let out = sink.take_out();
    let expected_out = lines(&e.stdout) + e.stdout_partial.as_deref().unwrap_or("");
    if out != expected_out {
        problems.push(format!(
            "stdout:\n--- expected\n{expected_out}--- found\n{out}"
        ));
    }
    let err = sink.take_err();
    if err != lines(&e.stderr) {
        problems.push(format!(
            "stderr:\n--- expected\n{}--- found\n{err}",
            lines(&e.stderr)
        ));
    }
    match outcome {
        Outcome::Ok { value, .. } => match &e.outcome {
            Some(expected) => {
                let found = value
                    .as_ref()
                    .map(|v| v.to_json())
                    .unwrap_or(serde_json::Value::Null);
                if found != *expected {
                    problems.push(format!("value: expected {expected}, found {found}"));
                }
            }
            None => problems.push(format!(
                "expected a stop, but the run finished: {}",
                outcome.to_json()
            )),
        },
        Outcome::Exhausted {
            limit, last_event, ..
        } => {
            let found = match last_event {
                Some(last) => format!("{} last={last}", limit.as_str()),
                None => limit.as_str().to_string(),
            };
            let expected = e.exhausted.clone().unwrap_or_default();
            // `exhausted: Fuel` checks the limit; `exhausted: Fuel last=add` also the last event.
            let matches = if expected.contains("last=") {
                found == expected
            } else {
                limit.as_str() == expected
            };
            if !matches {
                problems.push(format!("exhausted: expected `{expected}`, found `{found}`"));
            }
        }
        Outcome::Error { error, .. } => {
            let found = format!("{} at {}:{}", error.code.as_str(), error.line, error.column);
            if e.runtime.as_deref() != Some(found.as_str()) {
                problems.push(format!(
                    "runtime: expected {:?}, found `{found}` ({})",
                    e.runtime, error.message
                ));
            }
        }
    }
    if let Some(fuel) = e.fuel {
        if outcome.fuel() != fuel {
            problems.push(format!("fuel: expected {fuel}, found {}", outcome.fuel()));
        }
    }
    let accumulator = accumulator.load(Ordering::Relaxed);
    if let Some(expected) = e.accumulator {
        if accumulator != expected {
            problems.push(format!(
                "accumulator: expected {expected}, found {accumulator}"
            ));
        }
    }
    let calls = std::mem::take(&mut *log.lock().unwrap());
    if let Some(expected) = &e.calls {
        if calls != *expected {
            problems.push(format!(
                "host calls: expected {expected:?}, found {calls:?}"
            ));
        }
    }
    let trace_cut = trace.was_cut();
    let trace_lines = trace.take_lines();
    if e.trace != TraceLevel::Off && !e.overridden_trace {
        if trace_lines != e.trace_lines {
            problems.push(format!(
                "trace:\n--- expected\n{}--- found\n{}",
                lines(&e.trace_lines),
                lines(&trace_lines)
            ));
        }
        if trace_cut != e.trace_cut {
            problems.push(format!(
                "trace cut: expected {}, found {trace_cut}",
                e.trace_cut
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n").into());
    }
    Ok(Observed {
        stdout: out,
        stderr: err,
        outcome: report.to_json(),
        calls,
        accumulator,
        trace: trace_lines,
        trace_cut,
    })
}

/// The auto tier, twice (a mid-run switch, then a native run), observably equals the interpreter.
fn run_file_auto(path: &Path) -> Result<(), Failed> {
    let auto = run_file_times(path, Tier::Auto, 2)?;
    let interpreted = run_file(path, Tier::Interp).map_err(|e| {
        format!(
            "the interpreter fails this file too: {}",
            e.message().unwrap_or("")
        )
    })?;
    if auto != interpreted {
        return Err(format!("the auto tier differs from the interpreter\n--- interpreter\n{interpreted:#?}\n--- auto\n{auto:#?}").into());
    }
    Ok(())
}

/// The JIT meets the expectations and observably equals the interpreter.
fn run_file_on_both_tiers(path: &Path) -> Result<(), Failed> {
    let native = run_file(path, Tier::Jit)?;
    let interpreted = run_file(path, Tier::Interp).map_err(|e| {
        format!(
            "the interpreter fails this file too: {}",
            e.message().unwrap_or("")
        )
    })?;
    if native != interpreted {
        return Err(format!(
            "the tiers differ\n--- interpreter\n{interpreted:#?}\n--- jit\n{native:#?}"
        )
        .into());
    }
    Ok(())
}

/// Native code split into a function per step at most observably equals the interpreter.
fn run_file_split(path: &Path) -> Result<(), Failed> {
    let mut policy = TierPolicy::eager();
    policy.compile_budget.function_steps = 1;
    let native = run_file_with(path, Tier::Jit, 1, policy.clone(), None, false)?;
    // The auto tier too: a run that moves to split code at a loop head, then a native run.
    let switching = run_file_with(path, Tier::Auto, 2, policy, None, false)?;
    let interpreted = run_file(path, Tier::Interp).map_err(|e| {
        format!(
            "the interpreter fails this file too: {}",
            e.message().unwrap_or("")
        )
    })?;
    if native != interpreted || switching != interpreted {
        return Err(format!(
            "split native code differs\n--- interpreter\n{interpreted:#?}\n--- split jit\n{native:#?}\n--- split auto\n{switching:#?}"
        )
        .into());
    }
    Ok(())
}

/// Compiled, stored as bytes and loaded back: in every tier (the auto tier switching mid-run,
/// split native code, traced), the loaded flow observably equals the parsed one in the
/// interpreter.
fn run_file_loaded(path: &Path) -> Result<(), Failed> {
    let interpreted = run_file(path, Tier::Interp)?;
    let eager = TierPolicy::eager;
    let mut split = TierPolicy::eager();
    split.compile_budget.function_steps = 1;
    let runs = [
        ("interp", Tier::Interp, 1, eager()),
        ("jit", Tier::Jit, 1, eager()),
        ("auto", Tier::Auto, 2, eager()),
        ("split auto", Tier::Auto, 2, split),
    ];
    for (name, tier, times, policy) in runs {
        let loaded = run_file_with(path, tier, times, policy, None, true)?;
        if loaded != interpreted {
            return Err(format!(
                "the loaded flow differs in the {name} tier\n--- parsed, interpreter\n{interpreted:#?}\n--- loaded\n{loaded:#?}"
            )
            .into());
        }
    }
    let all = Some(TraceLevel::All);
    let traced = run_file_with(path, Tier::Interp, 1, eager(), all, false)?;
    for tier in [Tier::Interp, Tier::Jit] {
        let loaded = run_file_with(path, tier, 1, eager(), all, true)?;
        if loaded != traced {
            return Err(format!(
                "the traced loaded flow differs in {tier:?}\n--- parsed\n{traced:#?}\n--- loaded\n{loaded:#?}"
            )
            .into());
        }
    }
    Ok(())
}

/// Compiled with `TraceLevel::All`, the file meets its expectations in every tier (tracing
/// changes no run), with the same trace lines in every tier.
fn run_file_traced(path: &Path) -> Result<(), Failed> {
    let all = Some(TraceLevel::All);
    let interpreted = run_file_with(path, Tier::Interp, 1, TierPolicy::eager(), all, false)?;
    let native = run_file_with(path, Tier::Jit, 1, TierPolicy::eager(), all, false)?;
    let auto = run_file_with(path, Tier::Auto, 2, TierPolicy::eager(), all, false)?;
    let mut policy = TierPolicy::eager();
    policy.compile_budget.function_steps = 1;
    let split = run_file_with(path, Tier::Auto, 2, policy, all, false)?;
    for (tier, observed) in [("jit", &native), ("auto", &auto), ("split auto", &split)] {
        if *observed != interpreted {
            return Err(format!(
                "traced {tier} differs from the traced interpreter\n--- interpreter\n{interpreted:#?}\n--- {tier}\n{observed:#?}"
            )
            .into());
        }
    }
    Ok(())
}

/// The flow compiles for aarch64 (files expected not to compile are skipped).
fn compile_for_aarch64(path: &Path) -> Result<(), Failed> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let e = expectations(&source)?;
    let (registry, _, _) = common::test_registry();
    let engine = Engine::new(registry);
    let Ok(flow) = engine.compile("aarch64", &source, &compile_options(&e, Tier::Interp)) else {
        return Ok(());
    };
    let bytes = koru_jit::jit::compile_for_target(
        flow.program(),
        flow.layout(),
        engine.registry(),
        "aarch64-unknown-linux-gnu",
        1,
    )
    .map_err(|e| e.to_string())?;
    if bytes == 0 {
        return Err("the aarch64 backend produced no code".into());
    }
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|x| x == "kz") {
            out.push(path);
        }
    }
}

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flows");
    let mut files = Vec::new();
    collect(&root, &mut files);
    assert!(!files.is_empty(), "no .kz files under {}", root.display());
    let mut trials = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let p6 = path.clone();
        trials.push(Trial::test(format!("loaded::{name}"), move || {
            run_file_loaded(&p6)
        }));
        let (p1, p2, p3, p4, p5) = (
            path.clone(),
            path.clone(),
            path.clone(),
            path.clone(),
            path.clone(),
        );
        trials.push(Trial::test(format!("trace::{name}"), move || {
            run_file_traced(&path)
        }));
        trials.push(Trial::test(format!("auto::{name}"), move || {
            run_file_auto(&p4)
        }));
        trials.push(Trial::test(format!("interp::{name}"), move || {
            run_file(&p1, Tier::Interp).map(|_| ())
        }));
        trials.push(Trial::test(format!("jit::{name}"), move || {
            run_file_on_both_tiers(&p2)
        }));
        trials.push(Trial::test(format!("split::{name}"), move || {
            run_file_split(&p5)
        }));
        trials.push(Trial::test(format!("aarch64::{name}"), move || {
            compile_for_aarch64(&p3)
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
