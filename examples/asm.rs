//! Prints the Cranelift IR and machine code of a flow over a typed `add`, for reading what the
//! JIT emits: `cargo run --example asm -- 'FLOW SOURCE'`.
use koru_jit::{CompileOptions, Engine, Registry};

fn main() {
    let source = std::env::args().nth(1).unwrap_or_else(|| {
        "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: 0, b: i)\n| done |> _\n"
            .into()
    });
    let mut registry = Registry::with_std();
    registry
        .event(
            "~event add { a: i64, b: i64 } | sum i64",
            |a: i64, b: i64| a + b,
        )
        .unwrap();
    let engine = Engine::new(registry);
    let flow = engine
        .compile("asm", &source, &CompileOptions::default())
        .unwrap();
    let (_, listing) =
        koru_jit::jit::compile_with_listing(flow.program(), flow.layout(), engine.registry(), true)
            .unwrap();
    println!("{}", listing.asm);
}
