use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits};
fn main() {
    let mut registry = Registry::new();
    registry.event("~event add { a: i64, b: i64 } | sum i64", |a: i64, b: i64| a + b).unwrap();
    let src = "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: 0, b: i)\n| done |> _\n";
    let flow = Engine::new(registry).compile("p", src, &CompileOptions::default()).unwrap();
    for _ in 0..20 { std::hint::black_box(flow.run(&Inputs::new(), &RunLimits::default()).unwrap()); }
}
