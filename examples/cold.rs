//! Measures the cold path: parse + check + lay out + run tiny flows with no cache, in the
//! interpreter, or with a JIT compile per flow when `KORU_TIER=jit` (`three-step-cold`'s jit row).
use koru_jit::{
    CacheConfig, CompileOptions, Engine, EngineConfig, Inputs, Registry, RunLimits, Tier,
};
fn main() {
    let mut registry = Registry::with_std();
    koru_jit::host::register_demo_events(&mut registry, Default::default()).unwrap();
    let engine = Engine::with_config(
        registry,
        EngineConfig {
            cache: CacheConfig::disabled(),
            ..Default::default()
        },
    );
    let sources = [
        r#"~add(a: "10", b: "20")"#,
        r#"~multiply(value: "30", by: "3")"#,
        r#"~subtract(value: "90", by: "5")"#,
    ];
    let tier = if std::env::var("KORU_TIER").as_deref() == Ok("jit") {
        Tier::Jit
    } else {
        Tier::Interp
    };
    let options = CompileOptions::default().tier(tier);
    let n = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let started = std::time::Instant::now();
    for _ in 0..n {
        for source in &sources {
            let flow = engine.compile("cold", source, &options).unwrap();
            std::hint::black_box(flow.run(&Inputs::new(), &RunLimits::default()).unwrap());
        }
    }
    println!(
        "{:.0} ns per step (parse+check+run)",
        started.elapsed().as_nanos() as f64 / (3 * n) as f64
    );
}
