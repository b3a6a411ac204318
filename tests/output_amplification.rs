//! Issue 11 finding 4: a `print.ln` template of 6,000 `{{ s }}` holes with a 32,000-byte input
//! `s` (a 62 KB request) formatted 192 MB before the output bound applied. Formatting now stops at
//! the room the bound leaves: a run holds at most a small multiple of the bound. Checked with a
//! global allocator that tracks the bytes this thread holds and their peak.

use koru_jit::{
    CaptureSink, CompileOptions, Engine, Inputs, Limit, Outcome, Registry, RunLimits, Scalar, Tier,
    Type,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread, because the test harness runs tests on parallel threads; a run allocates and
    // frees on its own thread.
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn track(delta: i64) {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + delta);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

// SAFETY: forwards to the system allocator, only tracking sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as i64);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as i64));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A moving realloc holds both blocks for a moment.
        track(new_size as i64);
        track(-(layout.size() as i64));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The peak of the bytes this thread held during `f`, above what it held before.
fn peak_during(f: impl FnOnce()) -> i64 {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    f();
    PEAK.with(Cell::get) - before
}

const BOUND: u64 = 1 << 20;

#[test]
fn a_template_of_many_large_holes_formats_no_more_than_the_output_bound() {
    let source = format!("~std.io:print.ln(\"{}\")", "{{ s }}".repeat(6000));
    let mut inputs = Inputs::new();
    inputs.insert("s", Scalar::Str("a".repeat(32_000)));
    let engine = Engine::new(Registry::with_std());
    for tier in [Tier::Interp, Tier::Jit] {
        let options = CompileOptions {
            inputs: vec![("s".to_string(), Type::Str)],
            tier,
            ..CompileOptions::default()
        };
        let flow = engine.compile("amplify", &source, &options).unwrap();
        assert_eq!(flow.tier(), tier);
        let limits = RunLimits {
            max_output_bytes: Some(BOUND),
            ..RunLimits::default()
        };
        for run in 0..2 {
            let sink = CaptureSink::new();
            let mut outcome = None;
            let bytes = peak_during(|| {
                outcome = Some(flow.run_with_output(&inputs, &limits, &sink).unwrap());
            });
            assert_eq!(
                outcome.unwrap(),
                Outcome::Exhausted {
                    limit: Limit::Output,
                    fuel: 1,
                    last_event: Some("std.io:print.ln".into()),
                },
                "{tier:?}"
            );
            let out = sink.take_out();
            assert_eq!(out.len() as u64, BOUND, "{tier:?}");
            assert!(out.bytes().all(|b| b == b'a'), "{tier:?}");
            // The formatting buffer (at most the bound, kept by the run state) and the sink's
            // copy: 2 MiB on the first run, the sink's 1 MiB once the run state is warm; 192 MB
            // before.
            assert!(
                bytes <= 3 * BOUND as i64,
                "{tier:?} run {run}: {bytes} bytes held at once for a bound of {BOUND}"
            );
        }
    }
}
