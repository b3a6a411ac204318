//! Arbitrary bytes -> parse, check and lay out (interpreter tier). Errors are fine; a panic, a
//! crash, a stack overflow or a hang is a finding.
#![no_main]

use koru_jit::{CompileOptions, Engine, Registry, Tier};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut registry = Registry::with_std();
        koru_jit::host::register_demo_events(&mut registry, Arc::new(AtomicI64::new(0)))
            .expect("demo events register");
        // Program output is never produced here (nothing runs), but keep it off stdout anyway.
        registry.set_output(Arc::new(koru_jit::CaptureSink::new()));
        Engine::new(registry)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let options = CompileOptions::default().tier(Tier::Interp);
    match engine().compile("fuzz.kz", source, &options) {
        Ok(_flow) => {}
        Err(errors) => {
            // Rendering and JSON are part of what an untrusted source reaches.
            let _ = errors.render(false);
            let _ = errors.to_json();
        }
    }
});
