//! Steady-state runs allocate nothing: after the first run of a compiled flow, further runs reuse
//! the pooled flow state and its buffers. Checked with a counting global allocator.

use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits, Tier, TierPolicy, Type};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread, because the test harness runs tests on parallel threads.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn registry() -> Registry {
    let mut registry = Registry::with_std();
    registry
        .event(
            "~event add { a: i64, b: i64 } | sum i64",
            |a: i64, b: i64| a + b,
        )
        .unwrap();
    // String arguments, exactly as SPEC 9; the reply is a static string so the host itself does
    // not allocate either.
    registry
        .event(
            "~event add_text { a: []const u8, b: []const u8 } | sum []const u8",
            |a: &str, b: &str| {
                let _ = a.parse::<i64>().unwrap_or(0) + b.parse::<i64>().unwrap_or(0);
                "ok"
            },
        )
        .unwrap();
    registry
        .event(
            "~event pick { n: i64 } | small { label: []const u8 } | big i64",
            |n: i64| {
                if n < 50 {
                    koru_jit::Reply::branch("small").field("label", "small")
                } else {
                    koru_jit::Reply::branch("big").value(n)
                }
            },
        )
        .unwrap();
    // Printed output goes nowhere (stdout would interleave with the test harness's).
    registry.set_output(std::sync::Arc::new(Discard));
    registry
}

struct Discard;

impl koru_jit::OutputSink for Discard {
    fn out(&self, _: &str) {}
    fn err(&self, _: &str) {}
}

/// Each tier on its own (the auto tier's switch from one to the other is a one-time event, not
/// steady state, and its timing depends on the compiler thread).
fn assert_steady_state_allocates_nothing(source: &str, options: CompileOptions, inputs: Inputs) {
    for tier in [Tier::Interp, Tier::Jit] {
        let engine = Engine::new(registry());
        let flow = engine
            .compile("test", source, &options.clone().tier(tier))
            .unwrap();
        assert_eq!(flow.tier(), tier);
        let limits = RunLimits {
            fuel: Some(u64::MAX),
            max_iterations: Some(u64::MAX),
            // A bound the runs stay under: printing counts every byte against it.
            max_output_bytes: Some(1 << 30),
            ..RunLimits::default()
        };
        // The first run creates the pooled state and sizes every buffer.
        let first = flow.run(&inputs, &limits).unwrap();
        assert!(matches!(first, koru_jit::Outcome::Ok { .. }), "{first:?}");
        if tier == Tier::Jit {
            // A flow whose first run was hot has its baseline code recompiled optimized on a
            // compiler thread (a one-time event): steady state is the optimized code.
            wait_for_settled_code(&flow);
            assert_eq!(flow.run(&inputs, &limits).unwrap(), first);
        }
        let count = allocations_during(|| {
            for _ in 0..10 {
                let outcome = flow.run(&inputs, &limits).unwrap();
                assert_eq!(outcome, first);
            }
        });
        assert_eq!(
            count, 0,
            "steady-state runs of {source:?} in {tier:?} allocated {count} times"
        );
    }
}

/// Waits (bounded) until the flow's code stops changing: optimized, or baseline code not hot
/// enough to be recompiled (a run of fewer iterations than the loop threshold).
fn wait_for_settled_code(flow: &koru_jit::Flow) {
    let hot = flow.stats().native_iterations >= TierPolicy::default().loop_threshold;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while hot
        && flow.stats().quality != Some(koru_jit::jit::Quality::Optimized)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn nested_loop_with_typed_add_allocates_nothing_after_the_first_run() {
    let source =
        "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: 0, b: i)\n| done |> _\n";
    assert_steady_state_allocates_nothing(source, CompileOptions::default(), Inputs::new());
}

#[test]
fn nested_loop_with_string_arguments_allocates_nothing_after_the_first_run() {
    // `b: i` formats an int into a reusable buffer (SPEC 2.1).
    let source = "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add_text(a: \"0\", b: i)\n| done |> _\n";
    assert_steady_state_allocates_nothing(source, CompileOptions::default(), Inputs::new());
}

#[test]
fn captures_subflows_and_struct_payloads_allocate_nothing_after_the_first_run() {
    let source = r#"
~event classify { n: i64 }
| low { text: []const u8 }
| high i64

~classify = pick(n: n)
| small s |> low { text: s.label }
| big b |> high b

~capture({ sum: 0, label: "" })
| as acc |> for(0..limit)
    | each i |> classify(n: i)
        | low l |> captured { label: l.text }
        | high h |> captured { sum: acc.sum + h }
| captured total |> std.io:print(text: "")
"#;
    let options = CompileOptions::default().input("limit", Type::Int);
    assert_steady_state_allocates_nothing(source, options, Inputs::new().set("limit", 100i64));
}

#[test]
fn printing_under_an_output_bound_allocates_nothing_after_the_first_run() {
    let source = r#"
~for(0..200)
| each i |> std.io:println(text: name)
    |> std.io:print.ln("{{ i }}: {{ name }} {{ 0.5 }} {{ i > 3 }}")
    |> std.io:eprintln(message: i)
    |> std.io:print(text: name)
"#;
    let options = CompileOptions::default().input("name", Type::Str);
    assert_steady_state_allocates_nothing(source, options, Inputs::new().set("name", "koru"));
}

#[test]
fn declared_inputs_converted_at_each_run_allocate_nothing_after_the_first_run() {
    // Issue 13: an int given for a declared float input, and numbers and a bool given for
    // declared str inputs, are converted as they are written into the flow state (the text into
    // the input's buffer, which keeps its capacity).
    let source = r#"
~input { rate: f64, code: str, big: str, flag: str }
~for(0..100)
| each i |> std.io:print(text: code)
    |> std.io:print(text: big)
    |> std.io:print(text: flag)
    |> std.io:print.ln("{{ rate }}")
"#;
    let inputs = Inputs::new()
        .set("rate", 5i64)
        .set("code", 1234i64)
        .set("big", 2.5e300)
        .set("flag", true);
    assert_steady_state_allocates_nothing(source, CompileOptions::default(), inputs);
}
