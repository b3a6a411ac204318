//! Arbitrary bytes (seeded with compiled flows, `seeds/load_artifact/*.kzb`) -> `Engine::load`:
//! a refusal must be a diagnostic with one of the load's codes, never a panic; a flow that loads
//! runs on the interpreter and on native code with tight limits, and both tiers must give the
//! same outcome, output and demo accumulator (the verifier claims the tiers rely on nothing it
//! does not check). Deadline exhaustion skips the comparison.
#![no_main]

use koru_jit::{
    CaptureSink, Code, CompileOptions, Engine, Flow, Inputs, Limit, Outcome, Registry, RunLimits,
    Scalar, Tier, Type,
};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

struct World {
    engine: Engine,
    sink: Arc<CaptureSink>,
    accumulator: Arc<AtomicI64>,
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
        }
    })
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

fn run(w: &World, flow: &Flow) -> Option<(serde_json::Value, String, String, i64)> {
    w.sink.take_out();
    w.sink.take_err();
    w.accumulator.store(0, Ordering::Relaxed);
    let limits = RunLimits {
        fuel: Some(10_000),
        max_iterations: Some(10_000),
        max_output_bytes: Some(64 * 1024),
        deadline: Some(Instant::now() + Duration::from_secs(1)),
        ..RunLimits::default()
    };
    let outcome = flow
        .run(&inputs_of(flow), &limits)
        .expect("every input has a value of its type");
    if matches!(
        outcome,
        Outcome::Exhausted {
            limit: Limit::Deadline,
            ..
        }
    ) {
        return None;
    }
    Some((
        outcome.to_json(),
        w.sink.take_out(),
        w.sink.take_err(),
        w.accumulator.load(Ordering::Relaxed),
    ))
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let options = CompileOptions::default().tier(Tier::Interp);
    let interp = match w.engine.load(data, &options) {
        Ok(flow) => flow,
        Err(errors) => {
            let code = errors.diagnostics[0].code;
            assert!(
                matches!(
                    code,
                    Code::E0401 | Code::E0402 | Code::E0403 | Code::E0404 | Code::E0105
                ),
                "an unexpected refusal: {errors:?}"
            );
            return;
        }
    };
    let jit = w
        .engine
        .load(data, &options.clone().tier(Tier::Jit))
        .expect("what loads once loads again");
    let (Some(a), Some(b)) = (run(w, &interp), run(w, &jit)) else {
        return;
    };
    assert_eq!(a, b, "left: interpreter, right: JIT");
});
