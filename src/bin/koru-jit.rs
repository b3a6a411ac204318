//! The koru-jit command line: run, check and inspect flows.

use clap::{Parser, Subcommand, ValueEnum};
use koru_jit::layout::LayoutTable;
use koru_jit::{
    CompileOptions, Engine, Flow, Inputs, Outcome, OutputSink, Registry, RunLimits, Scalar, Scope,
    SourceErrors, StdoutSink, Tier, TraceLevel, Type,
};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// Exit codes (documented in the README).
const EXIT_OK: u8 = 0;
const EXIT_INVALID: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_RUNTIME_ERROR: u8 = 3;
const EXIT_EXHAUSTED: u8 = 4;

#[derive(Parser)]
#[command(
    name = "koru-jit",
    version,
    about = "Run Koru flows: parse, check, lay out and execute event-continuation programs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a flow file and print its output; the outcome goes to stderr (or stdout with --json).
    Run {
        /// The flow's source file; `-` reads it from stdin.
        file: String,
        /// `auto` starts in the interpreter and moves hot flows and loops to native code; `jit`
        /// compiles before the first run; `interp` never compiles.
        #[arg(long, value_enum, default_value_t = TierArg::Auto)]
        tier: TierArg,
        #[command(flatten)]
        inputs: InputArgs,
        /// Fuel limit: the sum of the costs of dispatched events.
        #[arg(long)]
        fuel: Option<u64>,
        /// Limit on `for`/`while` iterations across the run.
        #[arg(long)]
        max_iterations: Option<u64>,
        /// Wall-clock limit in milliseconds.
        #[arg(long)]
        deadline_ms: Option<u64>,
        /// Bytes `std.io` may print (stdout and stderr together): the run prints what fits, cut
        /// at a character boundary, and stops there (`exhausted`, limit `Output`).
        #[arg(long)]
        max_output_bytes: Option<u64>,
        /// Open obligations (handles, SPEC 12) a run may hold (default 1024); one more stops it
        /// with `TooManyHandles`.
        #[arg(long)]
        max_handles: Option<u64>,
        /// Leave the handles still open at the end of the run open, and list them
        /// (`open_handles`), instead of discharging them newest first.
        #[arg(long)]
        no_auto_discharge: bool,
        /// Check the flow against this scope (see `koru-jit scopes`).
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        contract: ContractArgs,
        /// Print the outcome as one JSON object on the last stdout line.
        #[arg(long)]
        json: bool,
        /// Print per-flow statistics to stderr.
        #[arg(long)]
        stats: bool,
        /// Refuse to run (exit 4) a flow whose static cost bound exceeds --fuel or
        /// --max-iterations (an unbounded flow exceeds any limit).
        #[arg(long)]
        refuse_over_limits: bool,
        /// Print a trace line per dispatch to stderr (`TRACE users.get -> found {"name":"ada"}`);
        /// `--trace all` also traces builtins and yields (SPEC 13). The flow is compiled with
        /// tracing in.
        #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "dispatches")]
        trace: Option<TraceArg>,
        /// Trace lines printed at most (then `TRACE cut: ...`; the run goes on).
        #[arg(long)]
        max_trace_lines: Option<u64>,
        /// Bytes of trace lines printed at most (a line that does not fit is not printed).
        #[arg(long)]
        max_trace_bytes: Option<u64>,
    },
    /// Parse and check a flow file without running it (inputs the source declares need no
    /// values; given ones are checked against their declared types).
    Check {
        /// The flow's source file; `-` reads it from stdin.
        file: String,
        #[command(flatten)]
        inputs: InputArgs,
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        contract: ContractArgs,
        #[arg(long)]
        json: bool,
    },
    /// Show what a flow became: syntax tree, typed IR, flow-state layout, Cranelift IR or machine code.
    Emit {
        /// The flow's source file; `-` reads it from stdin.
        file: String,
        #[arg(long, value_enum)]
        what: EmitWhat,
        #[command(flatten)]
        inputs: InputArgs,
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        contract: ContractArgs,
        /// Print at most this many bytes, then a line saying how many were left out.
        #[arg(long, value_name = "BYTES", default_value_t = EMIT_MAX_BYTES)]
        max_bytes: usize,
    },
    /// Parse and check a flow file and store the compiled flow (its typed IR, source and the
    /// signatures it was checked against) in a file that `run`, `check` and `emit` take in
    /// place of the source, without parsing it again (recognized by its first bytes).
    Compile {
        /// The flow's source file; `-` reads it from stdin.
        file: String,
        /// Where the compiled flow goes (conventionally `FILE.kzb`).
        #[arg(short = 'o', long, value_name = "FILE")]
        output: std::path::PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        /// Check the flow against this scope (see `koru-jit scopes`); a run of the compiled flow
        /// is checked against it again.
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        contract: ContractArgs,
        /// Compile tracing in (as `run --trace`); a run of the compiled flow may ask for
        /// another level.
        #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "dispatches")]
        trace: Option<TraceArg>,
    },
    /// List the host events and scopes the command line registers.
    Scopes,
    /// Serve flows over HTTP (POST /v1/run, /v1/check; GET /v1/flows/stats, /metrics,
    /// /healthz) with the scopes, limits and API keys of a TOML configuration file.
    #[cfg(feature = "server")]
    Serve {
        /// The configuration file (see README "Serving flows over HTTP").
        #[arg(long)]
        config: PathBuf,
        /// Listen on this address instead of the configuration's `listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Send load to a running `koru-jit serve` and report requests per second and latency
    /// percentiles (every answer checked); `soak` also reports the server's memory and native
    /// code before the run and after each tenth of it.
    #[cfg(feature = "server")]
    Load(LoadArgs),
    /// Run the built-in benchmark workloads in every tier and as native Rust, interleaved, and
    /// report medians, spread and ratios; or, given FILE, measure that flow in every tier
    /// (build with --release).
    Bench(BenchArgs),
}

/// `RUST_LOG` (e.g. `RUST_LOG=koru_jit=debug`) shows the engine's tracing events on stderr: what
/// was compiled to native code and how long it took, what stays in the interpreter and why, the
/// switches into native code. Without it nothing is installed and the events cost nothing.
fn init_tracing() {
    let Ok(filter) = std::env::var("RUST_LOG") else {
        return;
    };
    // `Targets`: the `target=level,...` directives of RUST_LOG (`koru_jit=debug`, `info`),
    // parsed without the regular-expression engine `EnvFilter` would add to the build.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    match filter.parse::<tracing_subscriber::filter::Targets>() {
        Ok(targets) => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false),
            )
            .with(targets)
            .init(),
        Err(error) => eprintln!("warning: RUST_LOG={filter:?} is not a filter ({error}); ignored"),
    }
}

/// Values for flow inputs (README "Flow inputs").
#[derive(clap::Args)]
struct InputArgs {
    /// A flow input, repeatable. `NAME:TYPE=VALUE` gives its type (int, float, bool or str, or a
    /// spelling of SPEC 1.2 such as i64 or f64); `NAME=VALUE` takes the type the source declares
    /// for it (`~input { NAME: TYPE }`), else guesses one from the value: `42` an int, `4.2` a
    /// float, `true`/`false` a bool, anything else a str. A str input keeps the text as written.
    #[arg(long = "input", value_name = "NAME[:TYPE]=VALUE")]
    input: Vec<String>,
    /// Flow inputs as one JSON object, e.g. '{"rate": 5.0, "name": "bob"}': a number with a
    /// fraction or an exponent is a float, one without an int, true/false a bool, a string a
    /// str; converted to the types the source declares as a run converts them (an int to a
    /// float, any value to a str). A name may be given once, here or by --input.
    #[arg(long = "inputs", value_name = "JSON")]
    inputs_json: Option<String>,
}

/// What the caller requires of the flow's value and replaces in its events (SPEC 13).
#[derive(clap::Args, Default)]
struct ContractArgs {
    /// The flow's value must have the shape of this event (declared in the source or
    /// registered): every way the last top-level flow can end is checked before it runs (E0213;
    /// E0214 for an unknown event).
    #[arg(long, value_name = "EVENT")]
    shape: Option<String>,
    /// A file of Koru subflows replacing host events in this compile, e.g.
    /// `~users.get = found { name: "test" }`; repeatable. Each is checked against the signature
    /// of the event it replaces, which the scope must allow; its errors name the file.
    #[arg(long = "mock", value_name = "FILE")]
    mocks: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TraceArg {
    /// A line per dispatch (host events and subflow calls).
    Dispatches,
    /// Also builtins (`for`, `while`, `if`, `match`, `capture`) and yields.
    All,
}

/// `--trace all` and `--trace dispatches` as `--trace=...`: the level is optional (`--trace`
/// alone traces dispatches) and must not take the file that may follow it as its value.
fn join_trace_level(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut joined: Vec<std::ffi::OsString> = Vec::new();
    for arg in args {
        let level = arg.to_str().filter(|a| *a == "all" || *a == "dispatches");
        match (joined.last(), level) {
            (Some(last), Some(level)) if last == "--trace" => {
                *joined.last_mut().expect("a last argument") = format!("--trace={level}").into();
            }
            _ => joined.push(arg),
        }
    }
    joined
}

#[derive(Clone, Copy, ValueEnum)]
enum TierArg {
    Interp,
    Jit,
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmitWhat {
    /// The syntax tree.
    Ast,
    /// The typed IR both tiers read.
    Ir,
    /// The flow-state layout: every local's offset and type.
    Layout,
    /// The interpreter's register bytecode.
    Bytecode,
    /// The Cranelift IR the JIT generates.
    Clif,
    /// The machine code (Cranelift's disassembly of its lowered instructions).
    Asm,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(join_trace_level(std::env::args_os()));
    init_tracing();
    ExitCode::from(match cli.command {
        Command::Run {
            file,
            tier,
            inputs,
            fuel,
            max_iterations,
            deadline_ms,
            max_output_bytes,
            max_handles,
            no_auto_discharge,
            scope,
            contract,
            json,
            stats,
            refuse_over_limits,
            trace,
            max_trace_lines,
            max_trace_bytes,
        } => {
            let trace = match trace {
                None => TraceLevel::Off,
                Some(TraceArg::Dispatches) => TraceLevel::Dispatches,
                Some(TraceArg::All) => TraceLevel::All,
            };
            let tier = match tier {
                TierArg::Interp => Tier::Interp,
                TierArg::Jit => Tier::Jit,
                TierArg::Auto => Tier::Auto,
            };
            let limits = RunLimits {
                fuel,
                max_iterations,
                deadline: deadline_ms
                    .map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms)),
                max_output_bytes,
                interrupt: None,
                max_handles,
                keep_handles_open: no_auto_discharge,
                trace: (trace != TraceLevel::Off)
                    .then(|| Arc::new(koru_jit::StderrTrace) as Arc<dyn koru_jit::TraceSink>),
                max_trace_lines,
                max_trace_bytes,
            };
            run(RunRequest {
                file: &file,
                inputs: &inputs,
                scope,
                contract: &contract,
                tier,
                trace,
                limits: &limits,
                json,
                stats,
                refuse_over_limits,
            })
        }
        Command::Check {
            file,
            inputs,
            scope,
            contract,
            json,
        } => match load(
            &file,
            &inputs,
            scope,
            &contract,
            (Tier::Interp, TraceLevel::Off),
            Values::Optional,
        ) {
            Ok((flow, values, _, _engine)) => {
                let bound = flow.cost_bound(&values);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "outcome": "valid", "errors": [], "cost_bound": bound.to_json() })
                    );
                } else {
                    let show =
                        |v: Option<u64>| v.map_or("unbounded".to_string(), |v| v.to_string());
                    eprintln!(
                        "valid; a run uses at most {} fuel and {} loop iterations",
                        show(bound.fuel),
                        show(bound.iterations)
                    );
                }
                EXIT_OK
            }
            Err(code) => report_load_error(code, json),
        },
        Command::Compile {
            file,
            output,
            inputs,
            scope,
            contract,
            trace,
        } => {
            let trace = match trace {
                None => TraceLevel::Off,
                Some(TraceArg::Dispatches) => TraceLevel::Dispatches,
                Some(TraceArg::All) => TraceLevel::All,
            };
            match load(
                &file,
                &inputs,
                scope,
                &contract,
                (Tier::Interp, trace),
                Values::Optional,
            ) {
                Ok((flow, _, _, _engine)) => {
                    let bytes = flow.to_bytes();
                    match std::fs::write(&output, &bytes) {
                        Ok(()) => {
                            eprintln!(
                                "compiled {} to {} ({} bytes)",
                                flow.name(),
                                output.display(),
                                bytes.len()
                            );
                            EXIT_OK
                        }
                        Err(e) => {
                            eprintln!("error: cannot write {}: {e}", output.display());
                            EXIT_USAGE
                        }
                    }
                }
                Err(error) => report_load_error(error, false),
            }
        }
        Command::Emit {
            file,
            what,
            inputs,
            scope,
            contract,
            max_bytes,
        } => emit(&file, what, &inputs, scope, &contract, max_bytes),
        Command::Bench(args) => bench(args),
        #[cfg(feature = "server")]
        Command::Serve { config, listen } => serve(&config, listen),
        #[cfg(feature = "server")]
        Command::Load(args) => send_load(&args),
        Command::Scopes => {
            let (engine, _) = engine();
            for event in engine.registry().events() {
                println!("event {}", describe(&event.sig));
            }
            for scope in engine.registry().scope_names() {
                println!("scope {scope}");
                let rules = engine.registry().scope(scope).map(|s| s.rules());
                for rule in rules.unwrap_or_default() {
                    println!("  {}", describe_rule(rule));
                }
            }
            EXIT_OK
        }
    })
}

/// A scope rule as `scopes` prints it: `allow add`, `allow std.*`, `alias greet -> hello`,
/// `include std`, with the cost when it is not 1.
fn describe_rule(rule: &koru_jit::host::ScopeRule) -> String {
    use koru_jit::host::ScopeRule;
    let cost = |cost: u64| {
        if cost == 1 {
            String::new()
        } else {
            format!(" (cost {cost})")
        }
    };
    match rule {
        ScopeRule::Exact { name, cost: c } => format!("allow {name}{}", cost(*c)),
        ScopeRule::Glob { prefix, cost: c } => format!("allow {prefix}*{}", cost(*c)),
        ScopeRule::Alias {
            alias,
            target,
            cost: c,
        } => format!("alias {alias} -> {target}{}", cost(*c)),
        ScopeRule::Include { scope } => format!("include {scope}"),
    }
}

fn describe(sig: &koru_jit::EventSig) -> String {
    use koru_jit::types::{Phantom, PhantomSlot};
    // A `str` with a phantom state is written as declared (`str[opened!]`, SPEC 12).
    let typed = |ty: koru_jit::Type, slot: PhantomSlot| {
        let phantom = sig.phantoms.iter().find(|p| p.slot == slot);
        match phantom.map(|p| &p.phantom) {
            Some(Phantom::Creates(s)) => format!("{ty}[{s}!]"),
            Some(Phantom::Requires(s)) => format!("{ty}[{s}]"),
            Some(Phantom::Discharges(s)) => format!("{ty}[!{s}]"),
            None => ty.to_string(),
        }
    };
    let inputs: Vec<String> = sig
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (n, t))| format!("{n}: {}", typed(*t, PhantomSlot::Input(i))))
        .collect();
    // Koru's own declaration syntax (an event without branches is void).
    let mut text = if inputs.is_empty() {
        format!("{} {{}}", sig.name)
    } else {
        format!("{} {{ {} }}", sig.name, inputs.join(", "))
    };
    for (b, branch) in sig.branches.iter().enumerate() {
        let field = |field: usize| PhantomSlot::Field { branch: b, field };
        match &branch.payload {
            koru_jit::PayloadType::Empty => text += &format!(" | {}", branch.name),
            koru_jit::PayloadType::Identity(ty) => {
                text += &format!(" | {} {}", branch.name, typed(*ty, field(0)))
            }
            koru_jit::PayloadType::Struct(fields) => {
                let shown: Vec<String> = fields
                    .iter()
                    .enumerate()
                    .map(|(k, (n, t))| format!("{n}: {}", typed(*t, field(k))))
                    .collect();
                text += &format!(" | {} {{ {} }}", branch.name, shown.join(", "));
            }
        }
    }
    text
}

/// The command line's registry: the standard library and the example events of the Koru articles.
fn engine() -> (Engine, Arc<AtomicI64>) {
    let (registry, accumulator) = registry();
    (Engine::new(registry), accumulator)
}

/// The command line's host events: std, and the demo events of SPEC 9 and the benchmarks.
fn registry() -> (Registry, Arc<AtomicI64>) {
    let mut registry = Registry::with_std();
    let accumulator = Arc::new(AtomicI64::new(0));
    koru_jit::host::register_demo_events(&mut registry, accumulator.clone())
        .expect("the demo events are valid");
    registry.add_scope("std", Scope::new().allow("std.*"));
    registry.add_scope(
        "demo",
        Scope::new()
            .include("std")
            .allow("add")
            .allow("multiply")
            .allow("subtract")
            .allow("produce"),
    );
    // Obligations (SPEC 12): a scope that may open, read and close files.
    registry.add_scope("files", Scope::new().include("std").allow("file.*"));
    (registry, accumulator)
}

enum LoadError {
    Usage(String),
    Invalid(Box<SourceErrors>),
}

/// A value the command line gives for a flow input, before the flow says its type.
struct GivenInput {
    name: String,
    /// The type `--input NAME:TYPE=VALUE` states.
    explicit: Option<Type>,
    value: GivenValue,
    /// The argument it came from, for messages: `--input rate=5`, or `--inputs` for JSON.
    origin: String,
}

enum GivenValue {
    /// `--input`'s text, read as the input's type once that is known.
    Text(String),
    /// A JSON value of `--inputs`, converted as a run converts it.
    Json(Scalar),
}

impl GivenInput {
    /// The type the input gets if the source does not declare it.
    fn guessed_type(&self) -> Type {
        match (&self.value, self.explicit) {
            (_, Some(ty)) => ty,
            (GivenValue::Json(value), None) => value.ty(),
            // A whole number is an int even out of the i64 range: the conversion then reports
            // it, unless the source declares a float or a str input of that name.
            (GivenValue::Text(text), None) if is_whole_number(text) => Type::Int,
            (GivenValue::Text(text), None) => Scalar::from_text(text).ty(),
        }
    }

    /// The value as the flow's input of type `ty`, or the usage error.
    fn value_for(&self, ty: Type) -> Result<Scalar, String> {
        let GivenInput {
            name,
            explicit,
            value,
            origin,
        } = self;
        if let Some(explicit) = explicit {
            if *explicit != ty {
                return Err(format!(
                    "{origin}: the source declares input `{name}` as {ty}, not {explicit}"
                ));
            }
        }
        match value {
            GivenValue::Text(text) => Scalar::parse_as(text, ty).ok_or_else(|| match ty {
                Type::Int => format!(
                    "{origin}: input `{name}` is an int, and `{text}` is not one (a whole number must be an int from {} to {})",
                    i64::MIN,
                    i64::MAX
                ),
                Type::Bool => format!(
                    "{origin}: input `{name}` is a bool, and `{text}` is not one (`true` or `false`)"
                ),
                _ => format!("{origin}: input `{name}` is a {ty}, and `{text}` is not one"),
            }),
            GivenValue::Json(scalar) => scalar.converted_to(ty).ok_or_else(|| {
                format!(
                    "{origin}: input `{name}` is {}, and the JSON value {} ({}) does not convert to it",
                    article(ty),
                    serde_json::to_value(scalar).unwrap_or_default(),
                    scalar.ty()
                )
            }),
        }
    }
}

/// `an int`, `a float`, ...
fn article(ty: Type) -> String {
    match ty {
        Type::Int => "an int".to_string(),
        other => format!("a {other}"),
    }
}

fn is_whole_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The inputs of `--input` and `--inputs`, each name at most once.
fn given_inputs(args: &InputArgs) -> Result<Vec<GivenInput>, String> {
    let mut given: Vec<GivenInput> = Vec::new();
    for input in &args.input {
        let Some((head, text)) = input.split_once('=') else {
            return Err(format!(
                "--input takes NAME=VALUE or NAME:TYPE=VALUE, got `{input}`"
            ));
        };
        let (name, explicit) = match head.split_once(':') {
            None => (head, None),
            Some((name, written)) => match Type::from_written(written.trim()) {
                Some(ty) => (name, Some(ty)),
                None => {
                    return Err(format!(
                        "--input {input}: unknown type `{written}` (int, float, bool or str)"
                    ))
                }
            },
        };
        if !is_identifier(name) {
            return Err(format!(
                "--input {input}: `{name}` is not an input name (letters, digits and `_`, not starting with a digit)"
            ));
        }
        let input = GivenInput {
            name: name.to_string(),
            explicit,
            value: GivenValue::Text(text.to_string()),
            origin: format!("--input {input}"),
        };
        if let Some(ty) = explicit {
            // Checked now, whatever the source declares.
            input.value_for(ty)?;
        }
        given.push(input);
    }
    if let Some(json) = &args.inputs_json {
        for (name, value) in json_inputs(json)? {
            given.push(GivenInput {
                name,
                explicit: None,
                value: GivenValue::Json(value),
                origin: "--inputs".to_string(),
            });
        }
    }
    let mut seen = std::collections::HashMap::new();
    for input in &given {
        if let Some(first) = seen.insert(input.name.as_str(), input.origin.as_str()) {
            return Err(format!(
                "input `{}` is given twice ({first}, then {})",
                input.name, input.origin
            ));
        }
    }
    Ok(given)
}

/// The members of the JSON object `text`, in order and with repeated names kept (a JSON map
/// would keep only the last), each as an input value: a number with a fraction or an exponent is
/// a float, one without an int (outside the i64 range an error, not rounded), `true`/`false` a
/// bool, a string a str; anything else is an error.
fn json_inputs(text: &str) -> Result<Vec<(String, Scalar)>, String> {
    use serde_json::value::RawValue;
    // The whole text first: a syntax error is reported with its position.
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
        .map_err(|e| format!("--inputs takes a JSON object of input values: {e}"))?;
    // Then its members one by one, from the text: valid JSON, so each piece parses.
    let mut rest = text.trim_start().strip_prefix('{').unwrap_or_default();
    let mut members = Vec::new();
    let next = |rest: &mut &str| -> Option<Box<RawValue>> {
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Box<RawValue>>();
        let value = values.next()?.ok()?;
        *rest = rest[values.byte_offset()..].trim_start();
        Some(value)
    };
    loop {
        rest = rest.trim_start();
        if rest.starts_with('}') {
            break;
        }
        let name = next(&mut rest)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .ok_or("--inputs: cannot read a member name")?;
        rest = rest.strip_prefix(':').unwrap_or(rest);
        let raw = next(&mut rest).ok_or("--inputs: cannot read a member value")?;
        rest = rest.strip_prefix(',').unwrap_or(rest);
        let literal = raw.get();
        let value = match serde_json::from_str::<serde_json::Value>(literal) {
            Ok(serde_json::Value::Bool(b)) => Scalar::Bool(b),
            Ok(serde_json::Value::String(s)) => Scalar::Str(s),
            Ok(serde_json::Value::Number(n)) if literal.contains(['.', 'e', 'E']) => {
                match n.as_f64() {
                    Some(f) => Scalar::Float(f),
                    None => return Err(format!("--inputs: input `{name}`: {literal} is not a float")),
                }
            }
            Ok(serde_json::Value::Number(_)) => match literal.parse::<i64>() {
                Ok(i) => Scalar::Int(i),
                Err(_) => {
                    return Err(format!(
                        "--inputs: input `{name}`: the integer {literal} does not fit an int ({} to {}); write a float with a fraction or an exponent, or a string",
                        i64::MIN,
                        i64::MAX
                    ))
                }
            },
            _ => {
                return Err(format!(
                    "--inputs: input `{name}`: {literal} is not an input value (a number, true, false or a string)"
                ))
            }
        };
        members.push((name, value));
    }
    Ok(members)
}

/// Bytes of a compiled flow (`koru-jit compile`) the command line reads at most.
const MAX_ARTIFACT_BYTES: usize = 64 << 20;

/// The name diagnostics give a source read from stdin (`-`).
const STDIN_NAME: &str = "<stdin>";

/// The bytes of `file`, or of stdin for `-`, with the name diagnostics give it. At most one byte
/// more than the front end's source limit is read: a larger source is refused (E0105) without
/// being held in memory.
fn read_source(file: &str) -> Result<(String, Vec<u8>), LoadError> {
    use std::io::Read;
    let max = koru_jit::FrontEndLimits::default().max_source_bytes;
    let (name, reader): (&str, Box<dyn Read>) = if file == "-" {
        (STDIN_NAME, Box::new(std::io::stdin().lock()))
    } else {
        let opened = std::fs::File::open(file)
            .map_err(|e| LoadError::Usage(format!("cannot read `{file}`: {e}")))?;
        (file, Box::new(opened))
    };
    let mut bytes = Vec::new();
    let mut reader = reader.take(max as u64 + 1);
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| LoadError::Usage(format!("cannot read `{name}`: {e}")))?;
    // A compiled flow holds its source and its program: it may be larger (up to
    // `MAX_ARTIFACT_BYTES`), and only a file that starts as one is read further.
    if bytes.len() > max && koru_jit::is_artifact(&bytes) {
        reader.set_limit((MAX_ARTIFACT_BYTES - bytes.len()) as u64 + 1);
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| LoadError::Usage(format!("cannot read `{name}`: {e}")))?;
        if bytes.len() <= MAX_ARTIFACT_BYTES {
            return Ok((name.to_string(), bytes));
        }
    }
    if bytes.len() > max {
        return Err(LoadError::Invalid(Box::new(SourceErrors {
            name: name.to_string(),
            text: String::new(),
            diagnostics: vec![koru_jit::Diagnostic::new(
                koru_jit::Code::E0105,
                format!("source is more than {max} bytes, the limit"),
                koru_jit::span::Span::new(0, 0),
            )],
        })));
    }
    Ok((name.to_string(), bytes))
}

/// The text of a source read by [`read_source`]; invalid UTF-8 is E0101 at the first bad byte.
fn source_text(name: &str, bytes: Vec<u8>) -> Result<String, LoadError> {
    String::from_utf8(bytes).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
        LoadError::Invalid(Box::new(SourceErrors {
            name: name.to_string(),
            text,
            diagnostics: vec![koru_jit::Diagnostic::new(
                koru_jit::Code::E0101,
                "the source is not valid UTF-8",
                koru_jit::span::Span::new(offset, offset + 1),
            )],
        }))
    })
}

/// Whether a load needs a value for every input of the flow (a run does; a check does not).
#[derive(Clone, Copy, PartialEq)]
enum Values {
    Required,
    Optional,
}

fn load(
    file: &str,
    inputs: &InputArgs,
    scope: Option<String>,
    contract: &ContractArgs,
    (tier, trace): (Tier, TraceLevel),
    values: Values,
) -> Result<(Flow, Inputs, Arc<AtomicI64>, Engine), LoadError> {
    let (name, bytes) = read_source(file)?;
    let (artifact, source) = if koru_jit::is_artifact(&bytes) {
        (Some(bytes), String::new())
    } else {
        (None, source_text(&name, bytes)?)
    };
    let given = given_inputs(inputs).map_err(LoadError::Usage)?;
    let (engine, accumulator) = engine();
    let mut options = CompileOptions {
        scope,
        guessed_inputs: given
            .iter()
            .map(|input| (input.name.clone(), input.guessed_type()))
            .collect(),
        tier,
        shape: contract.shape.clone(),
        trace,
        ..CompileOptions::default()
    };
    for mock in &contract.mocks {
        // Read as a source is (bounded); its diagnostics name the file.
        let (mock_name, bytes) = read_source(mock)?;
        options = options.named_mock(&mock_name, &source_text(&mock_name, bytes)?);
    }
    // A compiled flow (`koru-jit compile`) is loaded, not parsed: checked again against this
    // registry, in the scope it was compiled for.
    let flow = match &artifact {
        Some(bytes) => engine.load(bytes, &options).map_err(|mut e| {
            if e.name == "artifact" {
                e.name = name.clone();
            }
            e
        }),
        None => engine.compile(&name, &source, &options),
    }
    .map_err(|e| LoadError::Invalid(Box::new(e)))?;
    let mut converted = Inputs::new();
    for input in &given {
        // Every given input is one of the flow's (a guessed one the source does not declare is
        // declared with its guessed type).
        let ty = flow
            .input_type(&input.name)
            .ok_or_else(|| LoadError::Usage(format!("the flow has no input `{}`", input.name)))?;
        converted.insert(&input.name, input.value_for(ty).map_err(LoadError::Usage)?);
    }
    if values == Values::Required {
        if let Some((missing, ty)) = flow
            .inputs()
            .find(|(name, _)| converted.get(name).is_none())
        {
            return Err(LoadError::Usage(format!(
                "the flow needs input `{missing}` ({ty}): give it with --input {missing}:{ty}=VALUE or in --inputs"
            )));
        }
    }
    // The engine too: its compiler threads serve the flow's background compiles only while it
    // is alive (a flow holds it weakly).
    Ok((flow, converted, accumulator, engine))
}

fn report_load_error(error: LoadError, json: bool) -> u8 {
    match error {
        LoadError::Usage(message) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        LoadError::Invalid(errors) => {
            eprint!("{}", errors.render(std::io::stderr().is_terminal()));
            if json {
                println!("{}", errors.to_json());
            }
            EXIT_INVALID
        }
    }
}

/// The process's stdout and stderr, remembering whether program output ended in the middle of a
/// line.
#[derive(Default)]
struct LineTrackingStdout {
    open_line: AtomicBool,
}

impl OutputSink for LineTrackingStdout {
    fn out(&self, text: &str) {
        if let Some(last) = text.as_bytes().last() {
            self.open_line.store(*last != b'\n', Ordering::Relaxed);
        }
        StdoutSink.out(text);
    }

    fn err(&self, text: &str) {
        StdoutSink.err(text);
    }
}

/// What `koru-jit run` was asked to do.
struct RunRequest<'a> {
    file: &'a str,
    inputs: &'a InputArgs,
    scope: Option<String>,
    contract: &'a ContractArgs,
    tier: Tier,
    trace: TraceLevel,
    limits: &'a RunLimits,
    json: bool,
    stats: bool,
    refuse_over_limits: bool,
}

fn run(request: RunRequest<'_>) -> u8 {
    let RunRequest {
        file,
        inputs,
        scope,
        contract,
        tier,
        trace,
        limits,
        json,
        stats,
        refuse_over_limits,
    } = request;
    let (flow, values, _accumulator, _engine) = match load(
        file,
        inputs,
        scope,
        contract,
        (tier, trace),
        Values::Required,
    ) {
        Ok(loaded) => loaded,
        Err(error) => return report_load_error(error, json),
    };
    if refuse_over_limits {
        let bound = flow.cost_bound(&values);
        if let Some(limit) = bound.exceeds(limits) {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "outcome": "refused", "limit": limit.as_str(), "cost_bound": bound.to_json() })
                );
            } else {
                eprintln!(
                    "refused: a run could exceed the {} limit (static bound: {})",
                    limit.as_str(),
                    bound.to_json()
                );
            }
            return EXIT_EXHAUSTED;
        }
    }
    let output = LineTrackingStdout::default();
    let report = match flow.run_report(&values, limits, &output) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_USAGE;
        }
    };
    if let Some(error) = flow.jit_error() {
        eprintln!("note: running in the interpreter: {error}");
    }
    if stats {
        eprint!("{}", describe_stats(&flow.stats()));
    }
    let outcome = &report.outcome;
    let code = match outcome {
        Outcome::Ok { .. } => EXIT_OK,
        Outcome::Exhausted { .. } => EXIT_EXHAUSTED,
        Outcome::Error { .. } => EXIT_RUNTIME_ERROR,
    };
    if json {
        // On a line of its own, also after output cut by --max-output-bytes (or a `print` that
        // wrote no newline).
        if output.open_line.load(Ordering::Relaxed) {
            println!();
        }
        println!("{}", report.to_json());
        return code;
    }
    describe_obligations(&report.obligations);
    match outcome {
        Outcome::Ok { value, fuel } => {
            let shown = value
                .as_ref()
                .map(|v| v.to_json().to_string())
                .unwrap_or_else(|| "no value (no top-level flow)".into());
            eprintln!("result: {shown} (fuel {fuel})");
        }
        Outcome::Exhausted {
            limit,
            fuel,
            last_event,
        } => {
            eprintln!(
                "exhausted: {} limit reached (fuel {fuel}, last event {})",
                limit.as_str(),
                last_event.as_deref().unwrap_or("none")
            );
        }
        Outcome::Error { error, .. } => {
            eprint!(
                "{}",
                koru_jit::diag::render_runtime_error(
                    file,
                    flow.source(),
                    error.code.as_str(),
                    &error.message,
                    error.span,
                    std::io::stderr().is_terminal()
                )
            );
        }
    }
    code
}

/// The discharging calls made at the end of a run (or the handles left open), on stderr.
fn describe_obligations(obligations: &koru_jit::Obligations) {
    for d in &obligations.discharged {
        match &d.failure {
            None => eprintln!("discharged: {}({})", d.event, d.handle),
            Some((code, message)) => eprintln!(
                "discharge failed: {}({}): {}: {message}",
                d.event,
                d.handle,
                code.as_str()
            ),
        }
    }
    for h in &obligations.open_handles {
        eprintln!(
            "left open: {} (state {}, opened by {})",
            h.handle, h.state, h.event
        );
    }
}

#[cfg(feature = "server")]
fn serve(config: &std::path::Path, listen: Option<String>) -> u8 {
    let mut config = match koru_jit::server::ServerConfig::load(config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    // The same host events as `koru-jit run` (see `koru-jit scopes`); the configuration's
    // scopes choose which of them each API key reaches.
    let (registry, _) = registry();
    match koru_jit::server::serve_blocking(config, registry) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

#[cfg(feature = "server")]
#[cfg(feature = "server")]
#[derive(clap::Args)]
struct LoadArgs {
    /// The server, `host:port` or `http://host:port`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    address: String,
    /// The API key to send (with --attack: the attacker's key).
    #[arg(long)]
    key: String,
    /// small (one cached flow), nested (SPEC 9's nested loop), soak (10,000 distinct flows).
    #[arg(long, default_value = "small")]
    workload: String,
    /// Connections, one thread each [default: 4; with --attack: 2, 1, 8, or the 2,000 slow
    /// clients].
    #[arg(long)]
    connections: Option<usize>,
    /// [default: 10,000; with --attack: 1,200, 3, 40].
    #[arg(long)]
    requests: Option<u64>,
    /// Instead of the workload, an attack (compile-bomb, compile-bomb-loop, amplify,
    /// slow-clients, or none) with a probe timing a small flow and /healthz meanwhile (loopback
    /// only).
    #[arg(long)]
    attack: Option<String>,
    /// With --attack: the probe's key (its default scope must allow `add`) [default: --key].
    #[arg(long)]
    probe_key: Option<String>,
    /// With --attack: it sends nothing new after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// With --attack: the probe and the memory sampler go on this long after it.
    #[arg(long, default_value_t = 10.0)]
    observe_seconds: f64,
    /// With --attack: the server's process id, for its peak resident memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// With --attack slow-clients: connect from 127.0.0.2 and this many addresses up.
    #[arg(long, default_value_t = 39)]
    slow_addresses: u8,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "server")]
fn send_attack(args: &LoadArgs, name: &str) -> u8 {
    use koru_jit::server::attack::{self, Attack, AttackOptions};
    let Some(attack) = Attack::from_name(name) else {
        eprintln!(
            "error: unknown attack `{name}` (compile-bomb, compile-bomb-loop, amplify, slow-clients or none)"
        );
        return EXIT_USAGE;
    };
    let (requests, connections) = attack.defaults();
    let report = attack::run(&AttackOptions {
        address: args.address.clone(),
        key: args.key.clone(),
        probe_key: args.probe_key.clone().unwrap_or_else(|| args.key.clone()),
        attack,
        requests: args.requests.unwrap_or(requests),
        connections: args.connections.unwrap_or(connections),
        seconds: args.seconds,
        observe_seconds: args.observe_seconds,
        server_pid: args.server_pid,
        slow_addresses: args.slow_addresses,
    });
    if args.json {
        println!("{}", report.to_json());
    } else {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let answers: Vec<String> = report
            .answers
            .iter()
            .map(|(answer, count)| format!("{count} x {answer}"))
            .collect();
        if let Some(slow) = &report.slow {
            let load =
                |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            println!(
                "{}: {} connects ({} failed), {} closed by the server, at most {} open at once, in {:.1} s",
                attack.name(),
                load(&slow.connects),
                load(&slow.failed_connects),
                load(&slow.closed_by_server),
                load(&slow.max_open),
                report.elapsed.as_secs_f64()
            );
        } else {
            println!(
                "{}: {} requests ({}) in {:.1} s",
                attack.name(),
                report.sent,
                answers.join(", "),
                report.elapsed.as_secs_f64()
            );
        }
        for (what, l) in [
            ("small flow", &report.small_flow),
            ("/healthz", &report.healthz),
        ] {
            println!(
                "  {what} meanwhile: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} failed{}",
                l.count,
                ms(l.p50),
                ms(l.p99),
                ms(l.max),
                l.failures,
                l.first_failure
                    .as_ref()
                    .map_or(String::new(), |f| format!(" (first: {f})"))
            );
        }
        println!(
            "  server peak resident memory {}; server {}",
            report
                .peak_resident_bytes
                .map_or("?".to_string(), |b| format!(
                    "{:.1} MiB",
                    b as f64 / 1048576.0
                )),
            match &report.down {
                None => "stayed up".to_string(),
                Some(why) => format!("DOWN: {why}"),
            }
        );
    }
    if report.server_up {
        EXIT_OK
    } else {
        EXIT_RUNTIME_ERROR
    }
}

#[cfg(feature = "server")]
fn send_load(args: &LoadArgs) -> u8 {
    use koru_jit::server::load::{self, LoadOptions, LoadWorkload};
    if let Some(name) = &args.attack {
        return send_attack(args, name);
    }
    let Some(workload) = LoadWorkload::from_name(&args.workload) else {
        eprintln!(
            "error: unknown workload `{}` (small, nested or soak)",
            args.workload
        );
        return EXIT_USAGE;
    };
    let report = load::run(&LoadOptions {
        address: args.address.clone(),
        key: args.key.clone(),
        workload,
        connections: args.connections.unwrap_or(4),
        requests: args.requests.unwrap_or(10_000),
    });
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!(
            "{} requests in {:.2} s: {:.0} requests/s, p50 {:.0} us, p99 {:.0} us, max {:.0} us, {} failed",
            report.requests,
            report.elapsed.as_secs_f64(),
            report.requests_per_second(),
            report.p50.as_secs_f64() * 1e6,
            report.p99.as_secs_f64() * 1e6,
            report.max.as_secs_f64() * 1e6,
            report.failures
        );
        let mib = |b: Option<u64>| {
            b.map_or("?".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        let n = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        for s in &report.snapshots {
            println!(
                "  after {:>8} requests: resident {}, native code {} bytes, cache entries {}, evictions {}, native flows {}",
                s.after_requests,
                mib(s.resident_bytes),
                n(s.native_code_bytes),
                n(s.cache_entries),
                n(s.cache_evictions),
                n(s.native_flows)
            );
        }
        if let Some(failure) = &report.first_failure {
            println!("first failure: {failure}");
        }
    }
    if report.failures > 0 {
        EXIT_RUNTIME_ERROR
    } else {
        EXIT_OK
    }
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A flow of yours to measure instead of the built-in workloads: every tier's cold path
    /// (parse, check, compile, first run), JIT compile time and code size, warm runs (median
    /// and spread), per iteration and per fuel unit, and the auto tier's first runs (`--plot`
    /// charts them). Every tier must print the same and end the same.
    file: Option<String>,
    #[command(flatten)]
    inputs: InputArgs,
    /// The scope the flow is checked against (with FILE).
    #[arg(long)]
    scope: Option<String>,
    /// A run of FILE taking longer than this is an error: the bench measures flows that finish.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    run_deadline_ms: u64,
    /// Only these workloads (repeatable): nested-loop, nested-loop-typed, three-step-cold,
    /// three-step-cached, sum-fold, match-dispatch, repeat-fold, trace-off, trace-on, compile,
    /// compile-1x, compile-4x, compile-16x, compile-64x.
    #[arg(long = "workload")]
    workloads: Vec<String>,
    /// Only these runners (repeatable): interp, jit, auto, native.
    #[arg(long = "tier")]
    tiers: Vec<String>,
    /// Also run the peer engines: Rhai, Lua 5.4, LuaJIT (build with `--features peers`) and
    /// CPython (`python3`, or the program named by KORU_BENCH_PYTHON).
    #[arg(long)]
    peers: bool,
    /// Write an SVG chart of ns per operation by engine and tier, and of the auto tier's
    /// switch to native code, to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Measured rounds (one more warm-up round is dropped).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Print one JSON object with every figure and ratio instead of the table.
    #[arg(long)]
    json: bool,
    /// Print the whole BENCHMARKS.md (command, machine, table, what the numbers mean).
    #[arg(long)]
    markdown: bool,
}

/// `koru-jit bench FILE`: the user's flow in every tier.
fn bench_file(args: &BenchArgs, file: &str) -> u8 {
    if !args.workloads.is_empty() || !args.tiers.is_empty() || args.peers {
        eprintln!("error: --workload, --tier and --peers choose built-in workloads: not with FILE");
        return EXIT_USAGE;
    }
    // Compiled once as `run` would, for the inputs' types and values.
    let (flow, inputs, _, _) = match load(
        file,
        &args.inputs,
        args.scope.clone(),
        &ContractArgs::default(),
        (Tier::Interp, TraceLevel::Off),
        Values::Required,
    ) {
        Ok(loaded) => loaded,
        Err(error) => return report_load_error(error, args.json),
    };
    let mut compile = CompileOptions {
        scope: args.scope.clone(),
        ..CompileOptions::default()
    };
    for (name, ty) in flow.inputs() {
        // As `load` gives them: the source's declarations win.
        compile = compile.guessed_input(name, ty);
    }
    let (name, bytes) = match read_source(file) {
        Ok(read) => read,
        Err(error) => return report_load_error(error, args.json),
    };
    let source = match source_text(&name, bytes) {
        Ok(source) => source,
        Err(error) => return report_load_error(error, args.json),
    };
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; measure with `cargo run --release --features cli -- bench FILE`");
    }
    let options = koru_jit::bench::file::FileOptions {
        name: &name,
        source: &source,
        compile,
        inputs,
        rounds: args.rounds.max(1),
        run_deadline: std::time::Duration::from_millis(args.run_deadline_ms),
    };
    let report = match koru_jit::bench::file::bench_file(&|| registry().0, &options) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_RUNTIME_ERROR;
        }
    };
    if let Some(path) = &args.plot {
        if let Err(e) = std::fs::write(path, report.timeline_svg()) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return EXIT_USAGE;
        }
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table(args.markdown));
    }
    EXIT_OK
}

fn bench(args: BenchArgs) -> u8 {
    use koru_jit::bench::{BenchOptions, Runner, Workload};
    if let Some(file) = &args.file {
        return bench_file(&args, file);
    }
    let mut options = BenchOptions {
        rounds: args.rounds.max(1),
        ..BenchOptions::default()
    };
    if !args.workloads.is_empty() {
        options.workloads = Vec::new();
        for name in &args.workloads {
            match Workload::from_name(name) {
                Some(workload) => options.workloads.push(workload),
                None => {
                    eprintln!("error: unknown workload `{name}`");
                    return EXIT_USAGE;
                }
            }
        }
    }
    if !args.tiers.is_empty() {
        options.runners = Vec::new();
        for name in &args.tiers {
            let runner = match name.as_str() {
                "interp" => Runner::Tier(Tier::Interp),
                "jit" => Runner::Tier(Tier::Jit),
                "auto" => Runner::Tier(Tier::Auto),
                "native" => Runner::Native,
                _ => {
                    eprintln!("error: unknown tier `{name}` (interp, jit, auto or native)");
                    return EXIT_USAGE;
                }
            };
            options.runners.push(runner);
        }
    }
    if args.peers {
        options = options.with_peers();
    }
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; measure with `cargo run --release --features cli -- bench`");
    }
    let report = koru_jit::bench::run(&options);
    if let Some(path) = &args.plot {
        let timeline = koru_jit::bench::auto_timeline(500);
        let svg = koru_jit::bench::plot::svg(&report, Some(&timeline));
        if let Err(e) = std::fs::write(path, svg) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return EXIT_USAGE;
        }
    }
    if args.json {
        println!("{}", koru_jit::bench::to_json(&report));
    } else if args.markdown {
        // The command that regenerates this output, quoted in its header.
        let mut command = String::from("cargo run --release");
        if cfg!(feature = "peers") {
            command += " --features cli,peers";
        } else {
            command += " --features cli";
        }
        command += " -- bench";
        for name in &args.workloads {
            command += &format!(" --workload {name}");
        }
        for name in &args.tiers {
            command += &format!(" --tier {name}");
        }
        if args.rounds != 7 {
            command += &format!(" --rounds {}", args.rounds);
        }
        if args.peers {
            command += " --peers";
        }
        if let Some(path) = &args.plot {
            command += &format!(" --plot {}", path.display());
        }
        command += " --markdown > BENCHMARKS.md";
        let chart = args.plot.as_ref().map(|p| p.display().to_string());
        print!(
            "{}",
            koru_jit::bench::markdown(&report, &command, chart.as_deref())
        );
    } else {
        print!("{}", koru_jit::bench::table(&report));
    }
    EXIT_OK
}

fn describe_stats(stats: &koru_jit::FlowStats) -> String {
    let tier = match stats.tier {
        Tier::Jit => "native code",
        _ => "the interpreter",
    };
    let mut text = format!("stats: the next run starts in {tier}\n");
    text += &format!(
        "  runs: {} ({} started in native code)\n",
        stats.runs, stats.native_runs
    );
    text += &format!(
        "  loop iterations: {} interpreted, {} native\n",
        stats.interpreted_iterations, stats.native_iterations
    );
    if stats.osr_entries > 0 {
        text += &format!(
            "  switched to native code in the middle of a loop: {} time(s)\n",
            stats.osr_entries
        );
    }
    if stats.code_bytes > 0 {
        text += &format!(
            "  compiled in {:?} to {} bytes of native code\n",
            stats.compile_time, stats.code_bytes
        );
    }
    if let Some(error) = &stats.jit_error {
        text += &format!("  stays in the interpreter: {error}\n");
    }
    text += &format!(
        "  fuel: {}; flow state: {} bytes; steps: {}\n",
        stats.fuel, stats.state_bytes, stats.steps
    );
    text
}

/// What `emit` prints by default, at most (`--max-bytes`).
const EMIT_MAX_BYTES: usize = 16 << 20;

/// The text `emit` prints: at most `max` bytes are kept (cut at a character boundary); what is
/// written past them is only counted, up to `max` plus [`BoundedText::COUNT_PAST`], where
/// formatting is stopped, so that printing costs bounded time and memory whatever the flow.
struct BoundedText {
    text: String,
    max: usize,
    total: usize,
}

impl BoundedText {
    const COUNT_PAST: usize = 256 << 20;

    fn new(max: usize) -> BoundedText {
        BoundedText {
            text: String::new(),
            max,
            total: 0,
        }
    }

    /// Writes the kept text, then, if some was left out, a line saying how much (stdout, so
    /// that a file the output went to says it is incomplete).
    fn print(self, stopped: bool) -> std::io::Result<()> {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        out.write_all(self.text.as_bytes())?;
        let cut = self.total - self.text.len();
        if cut > 0 {
            if !self.text.ends_with('\n') {
                out.write_all(b"\n")?;
            }
            let at_least = if stopped { "at least " } else { "" };
            writeln!(
                out,
                "… {at_least}{cut} more bytes not shown (the first {} of {at_least}{}; raise --max-bytes)",
                self.text.len(),
                self.total
            )?;
        }
        out.flush()
    }
}

impl std::fmt::Write for BoundedText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.total += s.len();
        let room = self.max - self.text.len();
        if room > 0 {
            let mut keep = s.len().min(room);
            while !s.is_char_boundary(keep) {
                keep -= 1;
            }
            self.text.push_str(&s[..keep]);
            if keep < s.len() {
                // Nothing more is kept, not even a shorter piece that would still fit.
                self.max = self.text.len();
            }
        }
        if self.total > self.max.saturating_add(Self::COUNT_PAST) {
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}

fn emit(
    file: &str,
    what: EmitWhat,
    inputs: &InputArgs,
    scope: Option<String>,
    contract: &ContractArgs,
    max_bytes: usize,
) -> u8 {
    use std::fmt::Write;
    let mut out = BoundedText::new(max_bytes);
    let mut code = EXIT_OK;
    let written = if let EmitWhat::Ast = what {
        let (file, source) = match read_source(file)
            .and_then(|(name, bytes)| Ok((name.clone(), source_text(&name, bytes)?)))
        {
            Ok(read) => read,
            Err(error) => return report_load_error(error, false),
        };
        let (ast, diagnostics) = koru_jit::syntax::parse(&source, &Default::default());
        let written = write!(
            out,
            "{}",
            koru_jit::syntax::text::SourceText {
                file: &ast,
                text: &source
            }
        );
        if !diagnostics.is_empty() {
            let errors = SourceErrors {
                name: file,
                text: source,
                diagnostics,
            };
            eprint!("{}", errors.render(std::io::stderr().is_terminal()));
            code = EXIT_INVALID;
        }
        written
    } else {
        let (flow, _, _, _engine) = match load(
            file,
            inputs,
            scope,
            contract,
            (Tier::Interp, TraceLevel::Off),
            Values::Optional,
        ) {
            Ok(loaded) => loaded,
            Err(error) => return report_load_error(error, false),
        };
        match what {
            EmitWhat::Ir => write!(out, "{}", koru_jit::ir::text::ProgramText(flow.program())),
            EmitWhat::Clif | EmitWhat::Asm => {
                match koru_jit::jit::compile_with_listing(
                    flow.program(),
                    flow.layout(),
                    flow.registry(),
                    true,
                ) {
                    Ok((_, listing)) => out.write_str(if matches!(what, EmitWhat::Clif) {
                        &listing.clif
                    } else {
                        &listing.asm
                    }),
                    Err(error) => {
                        eprintln!(
                            "error: no native code, the flow stays in the interpreter: {error}"
                        );
                        return EXIT_RUNTIME_ERROR;
                    }
                }
            }
            EmitWhat::Layout => write!(
                out,
                "{}",
                LayoutTable {
                    program: flow.program(),
                    layout: flow.layout(),
                }
            ),
            EmitWhat::Bytecode => out.write_str(&flow.bytecode_listing()),
            EmitWhat::Ast => unreachable!("handled above"),
        }
    };
    // A closed stdout (`| head`) is not an error of the flow.
    let _ = out.print(written.is_err());
    code
}
