//! Embedding koru-jit: register host events, compile a flow once, run it many times.
//!
//!     cargo run --example embed

use koru_jit::{
    CaptureSink, CompileOptions, Engine, Inputs, Outcome, Registry, Reply, RunLimits, Scope, Type,
};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Register host events: a Koru declaration and a typed Rust closure for each.
    let mut registry = Registry::with_std();
    registry.event(
        "~event price { item: []const u8 } | found f64 | unknown",
        |item: &str| match item {
            "tea" => Reply::branch("found").value(3.5),
            "cake" => Reply::branch("found").value(4.25),
            _ => Reply::branch("unknown"),
        },
    )?;
    registry.event(
        "~event add { a: i64, b: i64 } | sum i64",
        |a: i64, b: i64| a + b,
    )?;
    // 2. A scope: what flows from this source may call, and at what fuel cost.
    registry.add_scope(
        "shop",
        Scope::new()
            .allow("std.io:*")
            .allow_with_cost("price", 2)
            .allow("add"),
    );
    // Capture the flows' output instead of printing it (the default is stdout).
    let output = Arc::new(CaptureSink::new());
    registry.set_output(output.clone());
    let engine = Engine::new(registry);

    // 3. Compile once: parse, check against the scope, lay out the flow state.
    let source = r#"
~price(item: item)
| found p when p > 4.0 |> std.io:print.ln("{{ item }} is pricey at {{ p }}")
| found p |> std.io:print.ln("{{ item }} costs {{ p }}")
| unknown |> std.io:println(text: "no such item")
"#;
    let options = CompileOptions::default()
        .scope("shop")
        .input("item", Type::Str);
    let flow = engine.compile("shop.kz", source, &options)?;

    // 4. Run it many times with different inputs and limits.
    for item in ["tea", "cake", "scone"] {
        let outcome = flow.run(
            &Inputs::new().set("item", item),
            &RunLimits {
                fuel: Some(10),
                ..RunLimits::default()
            },
        )?;
        print!("{}", output.take_out());
        // The value is `std.io:println`'s (a void event: no payload); see `Value::get` and
        // `Value::field` to read a payload.
        println!("  -> {:?}, fuel {}", outcome.value(), outcome.fuel());
    }

    // Errors are data with codes and positions, rendered with source snippets.
    let errors = engine
        .compile("bad.kz", "~price(itme: \"tea\")", &options)
        .err()
        .expect("a check error");
    eprint!("{}", errors.render(false));

    // A loop that exceeds its fuel stops before the refused dispatch.
    let looping = engine.compile(
        "loop.kz",
        "~for(0..100) | each i |> add(a: i, b: 1)",
        &CompileOptions::default().scope("shop"),
    )?;
    if let Outcome::Exhausted {
        limit,
        fuel,
        last_event,
    } = looping.run(
        &Inputs::new(),
        &RunLimits {
            fuel: Some(5),
            ..RunLimits::default()
        },
    )? {
        println!(
            "stopped by {} after {fuel} fuel (last event: {})",
            limit.as_str(),
            last_event.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
