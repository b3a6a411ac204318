//! Arbitrary bytes that compile -> run on the interpreter and on native code with tight limits;
//! the outcome JSON, the captured output and the demo accumulator must be identical.
//! Deadline exhaustion (the only non-deterministic limit) skips the comparison.
//!
//! `KORU_FUZZ_REQUIRE_JIT=1` also fails an input the JIT tier refuses to lower (it would
//! silently run interpreted, making the comparison vacuous).
#![no_main]

use koru_jit::{CaptureSink, CompileOptions, Engine, Inputs, Limit, Outcome, Registry, RunLimits, Tier};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

struct World {
    engine: Engine,
    sink: Arc<CaptureSink>,
    accumulator: Arc<AtomicI64>,
    require_jit: bool,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut registry = Registry::with_std();
        let accumulator = Arc::new(AtomicI64::new(0));
        koru_jit::host::register_demo_events(&mut registry, accumulator.clone())
            .expect("demo events register");
        let sink = Arc::new(CaptureSink::new());
        registry.set_output(sink.clone());
        World {
            engine: Engine::new(registry),
            sink,
            accumulator,
            require_jit: std::env::var_os("KORU_FUZZ_REQUIRE_JIT").is_some(),
        }
    })
}

struct Observed {
    outcome: serde_json::Value,
    deadline: bool,
    out: String,
    err: String,
    accumulator: i64,
}

fn run(w: &World, flow: &koru_jit::Flow) -> Observed {
    w.sink.take_out();
    w.sink.take_err();
    w.accumulator.store(0, Ordering::Relaxed);
    let limits = RunLimits {
        fuel: Some(10_000),
        max_iterations: Some(10_000),
        deadline: Some(Instant::now() + Duration::from_secs(1)),
        ..RunLimits::default()
    };
    let outcome = flow
        .run(&Inputs::new(), &limits)
        .expect("a flow compiled without inputs runs without inputs");
    let deadline = matches!(
        outcome,
        Outcome::Exhausted {
            limit: Limit::Deadline,
            ..
        }
    );
    Observed {
        outcome: outcome.to_json(),
        deadline,
        out: w.sink.take_out(),
        err: w.sink.take_err(),
        accumulator: w.accumulator.load(Ordering::Relaxed),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let w = world();
    let Ok(interp) = w
        .engine
        .compile("fuzz.kz", source, &CompileOptions::default().tier(Tier::Interp))
    else {
        return;
    };
    let jit = match w
        .engine
        .compile("fuzz.kz", source, &CompileOptions::default().tier(Tier::Jit))
    {
        Ok(flow) => flow,
        Err(errors) => panic!(
            "compiles for the interpreter but not for the JIT tier:\n{}",
            errors.render(false)
        ),
    };
    if w.require_jit && jit.tier() != Tier::Jit {
        panic!("the JIT tier did not lower this flow: {:?}", jit.jit_error());
    }
    let a = run(w, &interp);
    let b = run(w, &jit);
    if a.deadline || b.deadline {
        return;
    }
    assert_eq!(a.outcome, b.outcome, "outcome differs (left: interpreter, right: JIT)");
    assert_eq!(a.out, b.out, "stdout differs (left: interpreter, right: JIT)");
    assert_eq!(a.err, b.err, "stderr differs (left: interpreter, right: JIT)");
    assert_eq!(
        a.accumulator, b.accumulator,
        "demo accumulator differs (left: interpreter, right: JIT)"
    );
});
