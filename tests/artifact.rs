//! Compiled flows as bytes (`Flow::to_bytes`, `Engine::load`): what a load refuses and how
//! (E0401-E0405, with the event, both signatures, the byte offset), that a loaded flow tiers up
//! like a parsed one, and that corrupted or hostile artifacts (thousands of deterministic
//! mutations) are errors or flows that run within their limits identically in every tier:
//! never a panic, never unbounded memory. (The round trip of every `tests/flows` file on every
//! tier is `loaded::FILE` in tests/flows.rs.)

mod common;

use koru_jit::{
    CaptureSink, Code, CompileOptions, Engine, EngineConfig, Flow, Inputs, Registry, RunLimits,
    Scalar, Scope, SourceErrors, Tier, TierPolicy, Type,
};
use std::path::{Path, PathBuf};

fn registry() -> Registry {
    let mut registry = Registry::with_std();
    registry
        .event("~event double { n: i64 } | v i64", |n: i64| n * 2)
        .unwrap();
    registry.add_scope("app", Scope::new().allow("double").allow("std.io:*"));
    registry
}

const SOURCE: &str = "~double(n: x)\n| v d |> std.io:println(text: d)\n";

fn compiled(registry: Registry, options: &CompileOptions) -> Vec<u8> {
    let engine = Engine::new(registry);
    engine
        .compile("doubling", SOURCE, options)
        .unwrap()
        .to_bytes()
}

fn refusal(result: Result<Flow, SourceErrors>) -> (Code, String) {
    match result {
        Ok(_) => panic!("the artifact loaded"),
        Err(errors) => {
            assert_eq!(errors.diagnostics.len(), 1, "{errors:?}");
            let d = &errors.diagnostics[0];
            (d.code, d.message.clone())
        }
    }
}

fn options() -> CompileOptions {
    CompileOptions::default().input("x", Type::Int)
}

#[test]
fn a_loaded_flow_runs_like_the_compiled_one() {
    let engine = Engine::new(registry());
    let flow = engine.compile("doubling", SOURCE, &options()).unwrap();
    let bytes = flow.to_bytes();
    assert_eq!(bytes, flow.to_bytes(), "the encoding is deterministic");
    let loaded = engine.load(&bytes, &CompileOptions::default()).unwrap();
    assert_eq!(loaded.name(), "doubling");
    assert_eq!(loaded.source(), SOURCE);
    assert_eq!(loaded.inputs().collect::<Vec<_>>(), [("x", Type::Int)]);
    for flow in [&flow, &loaded] {
        let sink = CaptureSink::new();
        let outcome = flow
            .run_with_output(&Inputs::new().set("x", 21), &RunLimits::default(), &sink)
            .unwrap();
        assert_eq!(outcome.fuel(), 2);
        assert_eq!(sink.take_out(), "42\n");
    }
    // A run-time error of a loaded flow points into its source, as a compiled one's does.
    let engine = Engine::new(Registry::with_std());
    let source = "~if(true)\n| then |> std.io:println(text: 1 / (1 - 1))\n| else |> _";
    let flow = engine
        .compile("div", source, &CompileOptions::default())
        .unwrap();
    let loaded = engine
        .load(&flow.to_bytes(), &CompileOptions::default())
        .unwrap();
    let outcome = loaded.run(&Inputs::new(), &RunLimits::default()).unwrap();
    let koru_jit::Outcome::Error { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((error.line, error.column), (2, 32));
}

#[test]
fn not_an_artifact_or_another_format_version_is_e0401() {
    let engine = Engine::new(registry());
    let (code, message) = refusal(engine.load(SOURCE.as_bytes(), &CompileOptions::default()));
    assert_eq!(code, Code::E0401);
    assert!(message.contains("magic"), "{message}");
    let mut bytes = compiled(registry(), &options());
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    let (code, message) = refusal(engine.load(&bytes, &CompileOptions::default()));
    assert_eq!(code, Code::E0401);
    assert_eq!(
        message,
        "the artifact was made by format version 7, this engine reads 2"
    );
}

#[test]
fn a_changed_signature_or_cost_is_e0403_naming_the_event_and_both_signatures() {
    let bytes = compiled(registry(), &options());
    let mut changed = Registry::with_std();
    changed
        .event("~event double { n: i64 } | v f64", |n: i64| n as f64 * 2.0)
        .unwrap();
    let (code, message) = refusal(Engine::new(changed).load(&bytes, &CompileOptions::default()));
    assert_eq!(code, Code::E0403);
    assert_eq!(
        message,
        "host event `double` changed: the flow was checked against double { n: int } | v int; the registry has double { n: int } | v float"
    );
    // The same signature at another cost in the scope it was checked against.
    let app = compiled(registry(), &options().scope("app"));
    let mut costly = Registry::with_std();
    costly
        .event("~event double { n: i64 } | v i64", |n: i64| n * 2)
        .unwrap();
    costly.add_scope(
        "app",
        Scope::new().allow_with_cost("double", 5).allow("std.io:*"),
    );
    let (code, message) = refusal(Engine::new(costly).load(&app, &CompileOptions::default()));
    assert_eq!(code, Code::E0403);
    assert_eq!(
        message,
        "host event `double` costs 5 in scope `app`, the flow was checked at cost 1"
    );
    // Declared but not implemented any more.
    let mut declared = Registry::with_std();
    declared
        .declare("~event double { n: i64 } | v i64")
        .unwrap();
    let (code, message) = refusal(Engine::new(declared).load(&bytes, &CompileOptions::default()));
    assert_eq!(code, Code::E0403);
    assert!(message.contains("no implementation"), "{message}");
}

#[test]
fn an_event_the_scope_no_longer_allows_is_e0404() {
    let app = compiled(registry(), &options().scope("app"));
    let mut narrower = Registry::with_std();
    narrower
        .event("~event double { n: i64 } | v i64", |n: i64| n * 2)
        .unwrap();
    narrower.add_scope("app", Scope::new().allow("std.io:*"));
    let engine = Engine::new(narrower);
    let (code, message) = refusal(engine.load(&app, &CompileOptions::default()));
    assert_eq!(code, Code::E0404);
    assert_eq!(message, "event `double` is not allowed in scope `app`");
    // Gone from the registry, or the scope gone.
    let (code, message) = refusal(Engine::new(Registry::with_std()).load(
        &compiled(registry(), &options()),
        &CompileOptions::default(),
    ));
    assert_eq!(
        (code, message.as_str()),
        (Code::E0404, "event `double` is not registered")
    );
    let (code, message) =
        refusal(Engine::new(Registry::with_std()).load(&app, &CompileOptions::default()));
    assert_eq!(code, Code::E0404);
    assert!(message.contains("scope `app`"), "{message}");
    // A load that asks for another scope than the flow was checked against.
    let (code, message) = refusal(
        Engine::new(registry()).load(&compiled(registry(), &options()), &options().scope("app")),
    );
    assert_eq!(code, Code::E0404);
    assert_eq!(
        message,
        "the flow was checked against no scope, not scope `app`"
    );
}

#[test]
fn options_that_do_not_fit_are_e0405() {
    let bytes = compiled(registry(), &options());
    let engine = Engine::new(registry());
    let (code, message) =
        refusal(engine.load(&bytes, &CompileOptions::default().input("x", Type::Str)));
    assert_eq!(code, Code::E0405);
    assert_eq!(
        message,
        "input `x` is a int in the compiled flow, a str in the options"
    );
    let (code, _) = refusal(engine.load(&bytes, &CompileOptions::default().input("y", Type::Int)));
    assert_eq!(code, Code::E0405);
    let (code, _) = refusal(engine.load(&bytes, &CompileOptions::default().shape("double")));
    assert_eq!(code, Code::E0405);
    let (code, _) = refusal(engine.load(&bytes, &CompileOptions::default().mock("~double = v 1")));
    assert_eq!(code, Code::E0405);
    // The declared input with its own type is fine.
    engine.load(&bytes, &options()).unwrap();
}

#[test]
fn truncated_or_corrupt_data_is_e0402_with_the_byte_offset() {
    let bytes = compiled(registry(), &options());
    let engine = Engine::new(registry());
    for len in 0..bytes.len() {
        let (code, message) = refusal(engine.load(&bytes[..len], &CompileOptions::default()));
        if len < 8 {
            assert_eq!(code, Code::E0401, "{len} bytes: {message}");
        } else {
            assert_eq!(code, Code::E0402, "{len} bytes: {message}");
            assert!(message.contains(" at byte "), "{message}");
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let (code, message) = refusal(engine.load(&longer, &CompileOptions::default()));
    assert_eq!(code, Code::E0402);
    assert_eq!(
        message,
        format!(
            "the artifact is corrupt at byte {}: bytes after the end of the program",
            bytes.len()
        )
    );
}

/// The artifact's header up to its engine version, then a name whose length says 4 GiB.
#[test]
fn a_length_claiming_gigabytes_fails_before_allocating() {
    let bytes = compiled(registry(), &options());
    // Magic, version, then the engine version as a length and text.
    let version_len = bytes[12] as usize;
    let name_at = 13 + version_len;
    let mut huge = bytes[..name_at].to_vec();
    huge.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x10]); // 4 GiB
    huge.extend_from_slice(&bytes[name_at + 1..]);
    let (code, message) = refusal(Engine::new(registry()).load(&huge, &CompileOptions::default()));
    assert_eq!(code, Code::E0402);
    assert_eq!(
        message,
        format!(
            "the artifact is corrupt at byte {name_at}: a count of 4294967296 with only {} bytes left",
            huge.len() - name_at - 5
        )
    );
    // A varint longer than 64 bits.
    let mut long = bytes[..name_at].to_vec();
    long.extend_from_slice(&[0xff; 11]);
    let (code, message) = refusal(Engine::new(registry()).load(&long, &CompileOptions::default()));
    assert_eq!(code, Code::E0402);
    assert!(message.contains("longer than 64 bits"), "{message}");
}

#[test]
fn a_load_is_held_to_the_front_end_limits() {
    let engine = Engine::new(Registry::with_std());
    // Ten `if`s nested in one another.
    let mut source = String::from("~if(true)\n");
    for depth in 1..10 {
        source.push_str(&format!("{}| then |> if(true)\n", "    ".repeat(depth - 1)));
    }
    source.push_str(&format!(
        "{}| then |> std.io:println(text: \"deep\")\n",
        "    ".repeat(9)
    ));
    let flow = engine
        .compile("deep", &source, &CompileOptions::default())
        .unwrap();
    let bytes = flow.to_bytes();
    let mut tight = CompileOptions::default();
    tight.limits.max_depth = 2;
    let (code, message) = refusal(engine.load(&bytes, &tight));
    assert_eq!(code, Code::E0402);
    assert!(
        message.contains("steps nested more than 6 deep"),
        "{message}"
    );
    let mut tight = CompileOptions::default();
    tight.limits.max_source_bytes = 10;
    assert_eq!(refusal(engine.load(&bytes, &tight)).0, Code::E0105);
    // The doubling flow has two locals (`x` and `d`).
    let mut tight = CompileOptions::default();
    tight.limits.max_bindings = 1;
    let bytes = compiled(registry(), &options());
    let (code, message) = refusal(Engine::new(registry()).load(&bytes, &tight));
    assert_eq!(code, Code::E0402);
    assert!(
        message.ends_with("2 locals, more than the limit of 1"),
        "{message}"
    );
}

#[test]
fn a_loaded_flow_tiers_up_to_native_code_and_stays_out_of_the_cache() {
    let config = EngineConfig {
        policy: TierPolicy {
            loop_threshold: 100,
            ..TierPolicy::eager()
        },
        ..EngineConfig::default()
    };
    let engine = Engine::with_config(Registry::with_std(), config);
    let source = "~capture({ s: 0 })\n| as acc |> for(0..1000)\n    | each i |> captured { s: acc.s + i }\n| captured c |> std.io:println(text: c.s)\n";
    let bytes = engine
        .compile("sum", source, &CompileOptions::default())
        .unwrap()
        .to_bytes();
    let entries = engine.cache_stats().entries;
    let loaded = engine.load(&bytes, &CompileOptions::default()).unwrap();
    assert_eq!(
        engine.cache_stats().entries,
        entries,
        "loads are not cached"
    );
    assert_eq!(loaded.tier(), Tier::Interp);
    let sink = CaptureSink::new();
    let outcome = loaded
        .run_with_output(&Inputs::new(), &RunLimits::default(), &sink)
        .unwrap();
    assert_eq!(sink.take_out(), "499500\n");
    assert_eq!(loaded.tier(), Tier::Jit);
    assert_eq!(loaded.stats().osr_entries, 1);
    assert_eq!(outcome.fuel(), 1);
    // The JIT tier compiles a loaded flow before its first run.
    let native = engine
        .load(&bytes, &CompileOptions::default().tier(Tier::Jit))
        .unwrap();
    assert_eq!(native.tier(), Tier::Jit);
}

// ------------------------------------------------------------------------------ hostile

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `bytes`: bit flips, a byte set, a truncation, a huge varint written over a
/// field, two bytes or ranges swapped, a byte inserted or deleted, a range duplicated.
fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    // In the program most of the time (not the header, name or source text): the program is
    // what the verifier has to catch.
    let start = program_start(bytes);
    let at = |rng: &mut Rng, len: usize| {
        if rng.below(8) == 0 || len <= start {
            rng.below(len)
        } else {
            start + rng.below(len - start)
        }
    };
    match rng.below(8) {
        0 => {
            for _ in 0..=rng.below(3) {
                let i = at(rng, b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let i = at(rng, b.len());
            b[i] = rng.next() as u8;
        }
        2 => b.truncate(rng.below(b.len())),
        3 => {
            let i = at(rng, b.len());
            let huge: &[u8] = match rng.below(3) {
                0 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                1 => &[0x80, 0x80, 0x80, 0x80, 0x10],
                _ => &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            };
            let end = (i + 1).min(b.len());
            b.splice(i..end, huge.iter().copied());
        }
        4 => {
            let (i, j) = (at(rng, b.len()), at(rng, b.len()));
            b.swap(i, j);
        }
        5 => {
            let i = at(rng, b.len());
            if rng.below(2) == 0 {
                b.remove(i);
            } else {
                b.insert(i, rng.below(4) as u8);
            }
        }
        6 => {
            // A small index nudged: the most likely way to get past the decoder.
            let i = at(rng, b.len());
            b[i] = b[i].wrapping_add(if rng.below(2) == 0 { 1 } else { 255 });
        }
        _ => {
            let i = at(rng, b.len());
            let n = rng.below(16).min(b.len() - i);
            let piece = b[i..i + n].to_vec();
            let j = at(rng, b.len());
            b.splice(j..j, piece);
        }
    }
    b
}

/// Where the program starts in an artifact: after the magic, the version, and the engine
/// version, name, source, scope and shape (LEB128 lengths, an option a 0 or 1 first).
fn program_start(bytes: &[u8]) -> usize {
    let mut at = 12;
    let varint = |at: &mut usize| {
        let mut v = 0usize;
        let mut shift = 0;
        loop {
            let b = bytes[*at];
            *at += 1;
            v |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return v;
            }
        }
    };
    for _ in 0..3 {
        let n = varint(&mut at);
        at += n;
    }
    for _ in 0..2 {
        let some = bytes[at] == 1;
        at += 1;
        if some {
            let n = varint(&mut at);
            at += n;
        }
    }
    at
}

fn flow_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            flow_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "kz") {
            out.push(path);
        }
    }
}

/// A value of each input's type.
fn inputs_of(flow: &Flow) -> Inputs {
    let mut inputs = Inputs::new();
    for (name, ty) in flow.inputs() {
        let value = match ty {
            Type::Int => Scalar::Int(3),
            Type::Float => Scalar::Float(1.5),
            Type::Bool => Scalar::Bool(true),
            Type::Str => Scalar::Str("7".into()),
        };
        inputs.insert(name, value);
    }
    inputs
}

/// What a run of a (mutated) flow did, in one tier.
fn observe(flow: &Flow, log: &common::CallLog) -> String {
    let limits = RunLimits {
        fuel: Some(5_000),
        max_iterations: Some(5_000),
        max_output_bytes: Some(16 * 1024),
        max_handles: Some(16),
        ..RunLimits::default()
    };
    log.lock().unwrap().clear();
    let sink = CaptureSink::new();
    match flow.run_report(&inputs_of(flow), &limits, &sink) {
        Ok(report) => format!(
            "{}\n{}\n{}\n{:?}",
            report.to_json(),
            sink.take_out(),
            sink.take_err(),
            log.lock().unwrap()
        ),
        Err(error) => format!("inputs: {error}"),
    }
}

/// Thousands of mutated artifacts of flows from tests/flows: each either fails to load with a
/// code, or loads and runs within its limits with the same observations in the interpreter,
/// native code and the auto tier; no load holds memory out of proportion to its bytes.
#[test]
fn mutated_artifacts_are_refused_or_run_identically_in_every_tier() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flows");
    let mut files = Vec::new();
    flow_files(&root, &mut files);
    let (registry, _, log) = common::test_registry();
    let config = EngineConfig {
        policy: TierPolicy::eager(),
        ..EngineConfig::default()
    };
    let engine = Engine::with_config(registry, config);
    let mut seeds = Vec::new();
    for (i, path) in files.iter().enumerate() {
        if i % 12 != 0 {
            continue;
        }
        let source = std::fs::read_to_string(path).unwrap();
        let scope = source
            .lines()
            .find_map(|l| l.strip_prefix("// scope: "))
            .map(str::to_string);
        let options = CompileOptions {
            scope,
            ..CompileOptions::default()
        };
        if let Ok(flow) = engine.compile(&path.display().to_string(), &source, &options) {
            seeds.push(flow.to_bytes());
        }
    }
    assert!(seeds.len() >= 20, "{} seeds", seeds.len());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut loaded, mut refused, mut changed) = (0, 0, 0);
    for case in 0..10_000 {
        let seed = &seeds[case % seeds.len()];
        let bytes = mutate(seed, &mut rng);
        let flow = match engine.load(&bytes, &CompileOptions::default()) {
            Ok(flow) => flow,
            Err(errors) => {
                let code = errors.diagnostics[0].code;
                assert!(
                    matches!(
                        code,
                        Code::E0401 | Code::E0402 | Code::E0403 | Code::E0404 | Code::E0105
                    ),
                    "case {case}: {errors:?}"
                );
                refused += 1;
                continue;
            }
        };
        loaded += 1;
        if flow.to_bytes()[program_start(&bytes)..] != seed[program_start(seed)..] {
            changed += 1;
        }
        assert!(
            flow.memory_bytes() <= 64 * 1024 + 200 * bytes.len(),
            "case {case}: {} bytes from an artifact of {}",
            flow.memory_bytes(),
            bytes.len()
        );
        let interpreted = observe(&flow, &log);
        for tier in [Tier::Jit, Tier::Auto] {
            let other = engine
                .load(&bytes, &CompileOptions::default().tier(tier))
                .unwrap();
            let observed = observe(&other, &log);
            assert_eq!(observed, interpreted, "case {case}, {tier:?}");
            if tier == Tier::Auto {
                // The second run starts in native code (eager tiering compiled it).
                assert_eq!(
                    observe(&other, &log),
                    interpreted,
                    "case {case}, auto again"
                );
            }
        }
    }
    eprintln!(
        "{loaded} mutated artifacts loaded and ran ({changed} with a changed program), {refused} refused"
    );
    // Both outcomes happen: mutated programs get past the decoder and the verifier.
    assert!(
        changed > 100 && refused > 1_000,
        "{loaded} loaded ({changed} changed), {refused} refused"
    );
}

#[test]
fn a_mocked_events_cost_and_a_handles_signature_are_checked_again() {
    let scoped = |cost| {
        let mut registry = Registry::with_std();
        registry
            .declare("~event users.get { id: i64 } | found { name: str } | missing")
            .unwrap();
        registry.add_scope(
            "app",
            Scope::new()
                .allow_with_cost("users.get", cost)
                .allow("std.io:*"),
        );
        registry
    };
    let options = CompileOptions::default()
        .scope("app")
        .mock("~users.get = found { name: \"test\" }");
    let bytes = Engine::new(scoped(3))
        .compile("mocked", "~users.get(id: 1)", &options)
        .unwrap()
        .to_bytes();
    let loaded = Engine::new(scoped(3))
        .load(&bytes, &CompileOptions::default())
        .unwrap();
    assert_eq!(
        loaded
            .run(&Inputs::new(), &RunLimits::default())
            .unwrap()
            .fuel(),
        3
    );
    let (code, message) = refusal(Engine::new(scoped(4)).load(&bytes, &CompileOptions::default()));
    assert_eq!(code, Code::E0403);
    assert_eq!(
        message,
        "mocked event `users.get` costs 4 in scope `app`, the flow was checked at cost 3"
    );
    // Phantom states are part of a signature, and shown as declared.
    let mut files = Registry::with_std();
    koru_jit::host::register_demo_events(&mut files, Default::default()).unwrap();
    let source = "~file.open(path: \"a\")\n| opened h |> file.close(handle: h)\n| failed _ |> _\n";
    let bytes = Engine::new(files)
        .compile("files", source, &CompileOptions::default())
        .unwrap()
        .to_bytes();
    let mut plain = Registry::with_std();
    plain
        .event(
            "~event file.open { path: str } | opened str | failed { reason: str }",
            |_: &str| koru_jit::Reply::branch("opened").value("h"),
        )
        .unwrap();
    let (code, message) = refusal(Engine::new(plain).load(&bytes, &CompileOptions::default()));
    assert_eq!(code, Code::E0403);
    assert_eq!(
        message,
        "host event `file.open` changed: the flow was checked against file.open { path: str } | opened str[opened!] | failed { reason: str }; the registry has file.open { path: str } | opened str | failed { reason: str }"
    );
}

/// The fuzz target's seeds are artifacts of this format version (a change of the format
/// regenerates them: `koru-jit compile FILE -o fuzz/seeds/load_artifact/NAME.kzb`).
#[test]
fn the_fuzz_seeds_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/load_artifact");
    let mut registry = Registry::with_std();
    koru_jit::host::register_demo_events(&mut registry, Default::default()).unwrap();
    let engine = Engine::new(registry);
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        engine
            .load(&bytes, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{}: {}", entry.path().display(), e.render(false)));
        seeds += 1;
    }
    assert!(seeds >= 20, "{seeds} seeds");
}

#[test]
fn an_artifact_claiming_fewer_steps_than_it_holds_is_e0402() {
    // The JIT's compile budget and its split of a large flow into functions go by the
    // program's step count: a load does not take a stored count far below the steps it
    // decoded (a flow claiming 1 step for 40 would have reached Cranelift as one function).
    let source: String = (0..40).map(|_| "~std.io:println(text: \"x\")\n").collect();
    let engine = Engine::new(registry());
    let options = CompileOptions::default();
    let bytes = engine
        .compile("steps", &source, &options)
        .unwrap()
        .to_bytes();
    assert!(engine.load(&bytes, &options).is_ok());
    // The count follows the (empty) loop table: the only `0, 40` after the program starts
    // that, patched to `0, 1`, still decodes as far as the count check.
    let start = program_start(&bytes);
    let candidates: Vec<usize> = (start..bytes.len() - 1)
        .filter(|&at| bytes[at] == 0 && bytes[at + 1] == 40)
        .collect();
    let refused = candidates.iter().any(|&at| {
        let mut patched = bytes.clone();
        patched[at + 1] = 1;
        match engine.load(&patched, &options) {
            Err(errors) => {
                errors.diagnostics[0].code == Code::E0402
                    && errors.diagnostics[0]
                        .message
                        .contains("steps, where the flow claims 1")
            }
            Ok(_) => false,
        }
    });
    assert!(refused, "no patched count was refused ({candidates:?})");
}
