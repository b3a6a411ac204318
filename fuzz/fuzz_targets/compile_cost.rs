//! Arbitrary bytes -> parse, check, and JIT-compile within the default compile budget (issue
//! 11). A compile that passes the budget's size checks yet takes far longer than its time
//! budget, or that holds far more memory per step than the budget allows for, is a finding; so
//! is any panic.
#![no_main]

use koru_jit::{CacheConfig, CompileBudget, CompileOptions, Engine, EngineConfig, Registry, Tier};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut registry = Registry::with_std();
        koru_jit::host::register_demo_events(&mut registry, Arc::new(AtomicI64::new(0)))
            .expect("demo events register");
        registry.set_output(Arc::new(koru_jit::CaptureSink::new()));
        let config = EngineConfig {
            cache: CacheConfig::disabled(),
            ..EngineConfig::default()
        };
        Engine::with_config(registry, config)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(flow) = engine().compile("fuzz.kz", source, &CompileOptions::default().tier(Tier::Interp))
    else {
        return;
    };
    let budget = CompileBudget::default();
    let started = Instant::now();
    let compiled = koru_jit::jit::compile_with_budget(
        flow.program(),
        flow.layout(),
        flow.registry(),
        true,
        &budget,
    );
    let elapsed = started.elapsed();
    // The time budget is checked between Cranelift's passes: one pass may overrun it, by at
    // most what the size bounds allow (well under the budget itself on this kind of machine).
    assert!(
        elapsed < budget.max_time * 3,
        "{elapsed:?} for {} steps: {:?}",
        flow.program().step_count,
        compiled.as_ref().err()
    );
    if let Ok(code) = compiled {
        let steps = flow.program().step_count.max(1);
        assert!(code.heap_bytes() <= (64 << 10) + 4096 * steps, "{} bytes", code.heap_bytes());
    }
    // The flow's own accounting never reports less than its program and code hold.
    assert!(flow.memory_bytes() > source.len());
});
