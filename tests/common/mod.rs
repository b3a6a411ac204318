//! The registry the test files run against: the standard library, the command line's example
//! events (logging copies), and test events covering every payload kind, host errors and panics.
//! Every call is logged, so that tiers can be compared call by call.

#![allow(dead_code)]

pub mod binary;
pub mod slowness;

use koru_jit::{HostError, Registry, Reply, Scope};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// The calls made during a run, as `name(arguments)`.
pub type CallLog = Arc<Mutex<Vec<String>>>;

fn parse(text: &str) -> Result<i64, HostError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| HostError::new(format!("`{text}` is not an integer")))
}

pub fn test_registry() -> (Registry, Arc<AtomicI64>, CallLog) {
    let mut registry = Registry::with_std();
    let accumulator = Arc::new(AtomicI64::new(0));
    let log: CallLog = Arc::default();
    let record = |log: &CallLog, call: String| log.lock().unwrap().push(call);

    // The CLI's example events (src/host/demo.rs), with the same declarations, logging calls.
    let (l, acc) = (log.clone(), accumulator.clone());
    registry
        .event(
            "~event add { a: []const u8, b: []const u8 } | sum []const u8",
            move |a: &str, b: &str| {
                record(&l, format!("add({a}, {b})"));
                let sum = parse(a)? + parse(b)?;
                acc.fetch_add(sum, Ordering::Relaxed);
                Ok::<_, HostError>(sum.to_string())
            },
        )
        .unwrap();
    let l = log.clone();
    registry
        .event(
            "~event multiply { value: []const u8, by: []const u8 } | product []const u8",
            move |value: &str, by: &str| {
                record(&l, format!("multiply({value}, {by})"));
                let product = parse(value)?
                    .checked_mul(parse(by)?)
                    .ok_or("product overflows")?;
                Ok::<_, HostError>(product.to_string())
            },
        )
        .unwrap();
    let l = log.clone();
    registry
        .event(
            "~event subtract { value: []const u8, by: []const u8 } | difference []const u8",
            move |value: &str, by: &str| {
                record(&l, format!("subtract({value}, {by})"));
                let difference = parse(value)?
                    .checked_sub(parse(by)?)
                    .ok_or("difference overflows")?;
                Ok::<_, HostError>(difference.to_string())
            },
        )
        .unwrap();
    let l = log.clone();
    registry
        .event("~event produce {} | value { num: []const u8 }", move || {
            record(&l, "produce()".into());
            Reply::branch("value").field("num", "42")
        })
        .unwrap();

    let l = log.clone();
    registry
        .event(
            "~event test.fail { message: []const u8 } | ok",
            move |message: &str| {
                record(&l, format!("test.fail({message})"));
                Err::<(), _>(HostError::new(message))
            },
        )
        .unwrap();
    let l = log.clone();
    registry
        .event(
            "~event test.panic { message: []const u8 } | ok",
            move |message: &str| -> () {
                record(&l, format!("test.panic({message})"));
                panic!("{message}")
            },
        )
        .unwrap();
    let l = log.clone();
    registry
        .event(
            "~event test.pick { n: i64 } | zero | one { label: []const u8, n: i64 } | many i64",
            move |n: i64| {
                record(&l, format!("test.pick({n})"));
                match n {
                    0 => Reply::branch("zero"),
                    1 => Reply::branch("one").field("n", n).field("label", "one"),
                    _ => Reply::branch("many").value(n),
                }
            },
        )
        .unwrap();
    let l = log.clone();
    registry
        .event(
            "~event test.echo { text: []const u8 } | echoed []const u8",
            move |text: &str| {
                record(&l, format!("test.echo({text})"));
                text.to_string()
            },
        )
        .unwrap();
    let l = log.clone();
    registry
        .event(
            "~event test.negate { on: bool } | value bool",
            move |on: bool| {
                record(&l, format!("test.negate({on})"));
                !on
            },
        )
        .unwrap();
    let l = log.clone();
    registry
        .event("~event test.half { x: f64 } | value f64", move |x: f64| {
            record(&l, format!("test.half({x})"));
            x / 2.0
        })
        .unwrap();
    let l = log.clone();
    registry
        .event(
            "~event test.typed_add { a: i64, b: i64 } | sum i64",
            move |a: i64, b: i64| {
                record(&l, format!("test.typed_add({a}, {b})"));
                a + b
            },
        )
        .unwrap();
    let l = log.clone();
    registry
        .event("~event test.bad_reply {} | ok i64", move || {
            record(&l, "test.bad_reply()".into());
            Reply::branch("nope")
        })
        .unwrap();
    let l = log.clone();
    registry
        // A plain `"text"` would be refused at registration (its type fixes the reply); a
        // `ReplyValue` is checked only when the call returns.
        .event("~event test.wrong_type {} | ok i64", move || {
            record(&l, "test.wrong_type()".into());
            koru_jit::ReplyValue::from("text")
        })
        .unwrap();
    let l = log.clone();
    registry
        .event("~event test.nothing {}", move || {
            record(&l, "test.nothing()".into());
        })
        .unwrap();
    registry
        .declare("~event test.unimplemented {} | ok")
        .unwrap();
    registry
        .declare("~event test.sum4 { a: i64, b: i64, c: i64, d: i64 } | sum i64")
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("test.sum4", move |args: &koru_jit::Args<'_>| {
            record(
                &l,
                format!(
                    "test.sum4({}, {}, {}, {})",
                    args.int(0),
                    args.int(1),
                    args.int(2),
                    args.int(3)
                ),
            );
            args.int(0) + args.int(1) + args.int(2) + args.int(3)
        })
        .unwrap();
    // Obligations (SPEC 12): the CLI's `file.*` events (logging copies), and `test.lock` /
    // `test.unlock`, whose release fails for a handle from a name starting `bad` (a host error)
    // or `panic` (a panic), and `test.leak`, whose state nothing releases.
    registry
        .declare(
            "~event file.open { path: str } | opened str[opened!] | failed { reason: str }\n\
             ~event file.read { handle: str[opened] } | data str\n\
             ~event file.close { handle: str[!opened] }\n\
             ~event test.lock { name: str } | locked str[held!]\n\
             ~event test.unlock { handle: str[!held] }\n\
             ~event test.leak {} | leaked str[leaky!]\n",
        )
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("file.open", move |args: &koru_jit::Args<'_>| {
            record(&l, format!("file.open({})", args.str(0)));
            if args.str(0).is_empty() {
                Reply::branch("failed").field("reason", "empty path")
            } else {
                Reply::branch("opened").value(format!("file_{}", args.handles_opened() + 1))
            }
        })
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("file.read", move |args: &koru_jit::Args<'_>| {
            record(&l, format!("file.read({})", args.str(0)));
            format!("data of {}", args.str(0))
        })
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("file.close", move |args: &koru_jit::Args<'_>| {
            record(&l, format!("file.close({})", args.str(0)));
            args.print(&format!("closed {}\n", args.str(0)));
        })
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("test.lock", move |args: &koru_jit::Args<'_>| {
            record(&l, format!("test.lock({})", args.str(0)));
            format!("{}_{}", args.str(0), args.handles_opened() + 1)
        })
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("test.unlock", move |args: &koru_jit::Args<'_>| {
            let handle = args.str(0);
            record(&l, format!("test.unlock({handle})"));
            if handle.starts_with("panic") {
                panic!("unlock of {handle} panicked");
            }
            if handle.starts_with("bad") {
                return Err(HostError::new(format!("cannot unlock {handle}")));
            }
            Ok(())
        })
        .unwrap();
    let l = log.clone();
    registry
        .implement_with_args("test.leak", move |_: &koru_jit::Args<'_>| {
            record(&l, "test.leak()".into());
            "leak"
        })
        .unwrap();
    registry.add_scope(
        "files",
        Scope::new().include("std").allow("file.*").allow("test.*"),
    );
    // Opens files but may not close them: E0212.
    registry.add_scope(
        "no_close",
        Scope::new()
            .include("std")
            .allow("file.open")
            .allow("file.read"),
    );
    // What an agent's flow calls (SPEC 13's example event), for shapes and mocks.
    let l = log.clone();
    registry
        .event(
            "~event users.get { id: i64 } | found { name: []const u8 } | missing",
            move |id: i64| {
                record(&l, format!("users.get({id})"));
                match id {
                    1 => Reply::branch("found").field("name", "ada"),
                    _ => Reply::branch("missing"),
                }
            },
        )
        .unwrap();
    registry.add_scope("std", Scope::new().allow("std.*"));
    registry.add_scope(
        "agent",
        Scope::new()
            .include("std")
            .allow_with_cost("users.get", 3)
            .allow("add"),
    );
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
    (registry, accumulator, log)
}
