//! Where a JIT compile's time goes, for a tiny flow (one host call, as in `three-step-cold`), a
//! small one (the Fibonacci pair loop) and the nested loop of `examples/nested_loop.kz`: the first
//! compile in the process, then the median of `N` more (`N=200` by default), each split into the
//! phases `koru_jit::jit::compile_phases` records, and Cranelift's own pass times
//! (`cranelift_codegen::timing`) summed over the `N` compiles, at the quality `KORU_QUALITY`
//! names (`baseline`, or `optimized`, the default). `KORU_WARM_UP=1` calls
//! `koru_jit::jit::warm_up` first, as `Engine` construction does (the engine here is built after
//! the first compile). `KORU_COMPILE=tiny|small|nested`
//! compiles only that flow, `N` times with no report (a fixed loop for
//! `valgrind --tool=callgrind`).
use koru_jit::jit::{CompilePhases, Quality};
use koru_jit::{CompileOptions, Engine, EngineConfig, Registry, Tier};
use std::time::Duration;

const FLOWS: [(&str, &str); 3] = [
    ("tiny", "~add(a: \"10\", b: \"20\")"),
    (
        "small",
        "~capture({ a: 0, b: 1 })\n| as f |> for(0..1000000)\n    | each _ |> captured { a: f.b, b: (f.a + f.b) % 1000000007 }\n| captured r |> result r.a\n",
    ),
    (
        "nested",
        "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: \"0\", b: i)\n| done |> _\n",
    ),
];

fn main() {
    let quality = if std::env::var("KORU_QUALITY").as_deref() == Ok("baseline") {
        Quality::Baseline
    } else {
        Quality::Optimized
    };
    let mut registry = Registry::with_std();
    koru_jit::host::register_demo_events(&mut registry, Default::default()).unwrap();
    // An engine warms the JIT up at construction: measure the first compile without that.
    let config = EngineConfig {
        warm_up: false,
        ..EngineConfig::default()
    };
    let engine = Engine::with_config(registry, config);
    if std::env::var("KORU_WARM_UP").as_deref() == Ok("1") {
        koru_jit::jit::warm_up();
    }
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let only = std::env::var("KORU_COMPILE").ok();
    let flows: Vec<_> = FLOWS
        .iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
        .map(|(name, source)| {
            let options = CompileOptions::default().tier(Tier::Interp);
            (*name, engine.compile(name, source, &options).unwrap())
        })
        .collect();
    let compile = |flow: &koru_jit::Flow| {
        koru_jit::jit::compile_phases(flow.program(), flow.layout(), engine.registry(), quality)
            .expect("the flow compiles")
    };
    if only.is_some() {
        for _ in 0..n {
            for (_, flow) in &flows {
                std::hint::black_box(compile(flow));
            }
        }
        return;
    }
    let (_, first) = compile(&flows[flows.len() - 1].1);
    println!(
        "first compile in the process ({}): {:.1} us",
        flows[flows.len() - 1].0,
        micros(first.total)
    );
    println!("{}", first.report());
    for (name, flow) in &flows {
        let _ = cranelift_codegen::timing::take_current();
        let mut all: Vec<CompilePhases> = (0..n).map(|_| compile(flow).1).collect();
        let passes = cranelift_codegen::timing::take_current();
        all.sort_by_key(|p| p.total);
        let median = &all[n / 2];
        println!(
            "{name}: median of {n} compiles {:.1} us",
            micros(median.total)
        );
        println!("{}", median.report());
        println!("Cranelift's passes, total over {n} compiles:\n{passes}");
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
