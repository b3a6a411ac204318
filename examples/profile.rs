//! A fixed workload for instruction-count profiling (`valgrind --tool=callgrind`): the typed
//! nested loop (`KORU_PROFILE=typed`, the default), the string one (`string`), the pure sum-fold
//! (`fold`), each run 20 times, the typed nested loop parsed and checked (`parse`) or loaded
//! from its stored bytes (`load`) 2,000 times, or three small flows of the demo events run 100,000 times each
//! (`three`), or the flow in the file `KORU_FILE` names run 20 times (`file`), on the tier
//! `KORU_TIER` names (`interp`, the default, or `jit`).
use koru_jit::{
    CacheConfig, CompileOptions, Engine, EngineConfig, Inputs, Registry, RunLimits, Tier,
};

fn main() {
    let which = std::env::var("KORU_PROFILE").unwrap_or_else(|_| "typed".into());
    let tier = if std::env::var("KORU_TIER").as_deref() == Ok("jit") {
        Tier::Jit
    } else {
        Tier::Interp
    };
    let (inputs, limits) = (Inputs::new(), RunLimits::default());
    if which == "file" {
        let path = std::env::var("KORU_FILE").expect("KORU_FILE names the flow's file");
        let source = std::fs::read_to_string(&path).expect("KORU_FILE is readable");
        // Synchronous compiles: the optimized code is used from the same run every time
        // (on the compiler thread, when it is ready would depend on timing).
        let engine = Engine::with_config(
            Registry::with_std(),
            EngineConfig {
                policy: koru_jit::TierPolicy::eager(),
                ..EngineConfig::default()
            },
        );
        let flow = engine
            .compile(&path, &source, &CompileOptions::default().tier(tier))
            .unwrap();
        for _ in 0..20 {
            std::hint::black_box(flow.run(&inputs, &limits).unwrap());
        }
        return;
    }
    if which == "three" {
        let mut registry = Registry::with_std();
        koru_jit::host::register_demo_events(&mut registry, Default::default()).unwrap();
        let engine = Engine::new(registry);
        let sources = [
            r#"~add(a: "10", b: "20")"#,
            r#"~multiply(value: "30", by: "3")"#,
            r#"~subtract(value: "90", by: "5")"#,
        ];
        let flows: Vec<_> = sources
            .iter()
            .map(|s| {
                engine
                    .compile("three", s, &CompileOptions::default().tier(tier))
                    .unwrap()
            })
            .collect();
        for _ in 0..100_000 {
            for flow in &flows {
                std::hint::black_box(flow.run(&inputs, &limits).unwrap());
            }
        }
        return;
    }
    let mut registry = Registry::new();
    registry
        .event(
            "~event add { a: i64, b: i64 } | sum i64",
            |a: i64, b: i64| a + b,
        )
        .unwrap();
    registry
        .event(
            "~event add_text { a: []const u8, b: []const u8 } | sum []const u8",
            |a: &str, b: &str| {
                std::hint::black_box(a.parse::<i64>().unwrap_or(0) + b.parse::<i64>().unwrap_or(0));
                "ok"
            },
        )
        .unwrap();
    let source = match which.as_str() {
        "string" => "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add_text(a: \"0\", b: i)\n| done |> _\n",
        "fold" => "~capture({ sum: 0 })\n| as acc |> for(0..100000)\n    | each i |> captured { sum: acc.sum + i }\n| captured total |> result total.sum\n",
        _ => "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: 0, b: i)\n| done |> _\n",
    };
    // No compiled-flow cache: `parse` parses and checks every time.
    let engine = Engine::with_config(
        registry,
        EngineConfig {
            cache: CacheConfig::disabled(),
            ..EngineConfig::default()
        },
    );
    let options = CompileOptions::default().tier(tier);
    if which == "load" || which == "parse" {
        // The artifact benchmark's work, 2,000 times: the typed nested loop parsed and
        // checked, or loaded from its stored bytes.
        let bytes = engine
            .compile("profile", source, &options)
            .unwrap()
            .to_bytes();
        for _ in 0..2_000 {
            if which == "load" {
                std::hint::black_box(engine.load(&bytes, &options).unwrap());
            } else {
                std::hint::black_box(engine.compile("profile", source, &options).unwrap());
            }
        }
        return;
    }
    let flow = engine.compile("profile", source, &options).unwrap();
    assert_eq!(flow.tier(), tier, "{:?}", flow.jit_error());
    for _ in 0..20 {
        std::hint::black_box(flow.run(&inputs, &limits).unwrap());
    }
}
