//! The registry the test files run against: the standard library, the command line's example
//! events, and test events covering every payload kind, host errors and panics.

#![allow(dead_code)]

use koru_jit::{HostError, Registry, Reply, Scope};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

pub fn test_registry() -> (Registry, Arc<AtomicI64>) {
    let mut registry = Registry::with_std();
    let accumulator = Arc::new(AtomicI64::new(0));
    koru_jit::host::register_demo_events(&mut registry, accumulator.clone()).unwrap();
    registry
        .event(
            "~event test.fail { message: []const u8 } | ok",
            |message: &str| Err::<(), _>(HostError::new(message)),
        )
        .unwrap();
    registry
        .event(
            "~event test.panic { message: []const u8 } | ok",
            |message: &str| -> () { panic!("{message}") },
        )
        .unwrap();
    registry
        .event(
            "~event test.pick { n: i64 } | zero | one { label: []const u8, n: i64 } | many i64",
            |n: i64| match n {
                0 => Reply::branch("zero"),
                1 => Reply::branch("one").field("n", n).field("label", "one"),
                _ => Reply::branch("many").value(n),
            },
        )
        .unwrap();
    registry
        .event(
            "~event test.echo { text: []const u8 } | echoed []const u8",
            |text: &str| text.to_string(),
        )
        .unwrap();
    registry
        .event(
            "~event test.negate { on: bool } | value bool",
            |on: bool| !on,
        )
        .unwrap();
    registry
        .event("~event test.half { x: f64 } | value f64", |x: f64| x / 2.0)
        .unwrap();
    registry
        .event(
            "~event test.typed_add { a: i64, b: i64 } | sum i64",
            |a: i64, b: i64| a + b,
        )
        .unwrap();
    registry
        .event("~event test.bad_reply {} | ok i64", || {
            Reply::branch("nope")
        })
        .unwrap();
    registry
        .event("~event test.wrong_type {} | ok i64", || "text")
        .unwrap();
    registry.event("~event test.nothing {}", || ()).unwrap();
    registry
        .declare("~event test.unimplemented {} | ok")
        .unwrap();
    registry
        .declare("~event test.sum4 { a: i64, b: i64, c: i64, d: i64 } | sum i64")
        .unwrap();
    registry
        .implement_with_args("test.sum4", |args: &koru_jit::Args<'_>| {
            args.int(0) + args.int(1) + args.int(2) + args.int(3)
        })
        .unwrap();
    registry.add_scope("std", Scope::new().allow("std.*"));
    registry.add_scope(
        "demo",
        Scope::new()
            .include("std")
            .allow("add")
            .allow("multiply")
            .allow("subtract")
            .allow("produce"),
    );
    registry.add_scope(
        "priced",
        Scope::new()
            .include("std")
            .allow_with_cost("add", 5)
            .alias("shout", "std.io:println", 3)
            .allow("test.*"),
    );
    (registry, accumulator)
}
