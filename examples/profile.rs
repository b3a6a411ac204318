//! A fixed workload for instruction-count profiling (`valgrind --tool=callgrind`): the typed
//! nested loop (`KORU_PROFILE=typed`, the default), the string one (`string`), the pure sum-fold
//! (`fold`), each run 20 times, or three small flows of the demo events run 100,000 times each
//! (`three`), on the tier `KORU_TIER` names (`interp`, the default, or `jit`).
use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits, Tier};

fn main() {
    let which = std::env::var("KORU_PROFILE").unwrap_or_else(|_| "typed".into());
    let tier = if std::env::var("KORU_TIER").as_deref() == Ok("jit") {
        Tier::Jit
    } else {
        Tier::Interp
    };
    let (inputs, limits) = (Inputs::new(), RunLimits::default());
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
    let flow = Engine::new(registry)
        .compile("profile", source, &CompileOptions::default().tier(tier))
        .unwrap();
    assert_eq!(flow.tier(), tier, "{:?}", flow.jit_error());
    for _ in 0..20 {
        std::hint::black_box(flow.run(&inputs, &limits).unwrap());
    }
}
