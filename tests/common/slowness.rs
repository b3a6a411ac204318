//! How much slower than the machine the time bounds were measured on this machine is, now.
//!
//! Tests of deadlines and interrupts must bound how late a run stops, and a bound is a time. The
//! bounds in them were measured on a 2-core x86-64 machine, natively and under qemu-aarch64; a
//! CI machine can be several times slower (one ran a compile 14 times slower than here), and a
//! bound that holds here fails there. [`factor`] times a fixed piece of the engine's own work
//! (front end and interpreter) and divides it by what it took where the bounds were measured, so
//! that a test can multiply its slack by it. It is never below 1: a faster machine keeps the
//! bounds as they are.
//!
//! `KORU_TEST_SLOWNESS` overrides the measurement (a number, such as `4`).

use koru_jit::{CompileOptions, Engine, Inputs, Registry, RunLimits, Tier};
use std::time::{Duration, Instant};

/// What [`work`] took where the bounds were measured (debug build; the median of three: 4 ms and 28 ms measured, with some margin):
/// natively, and under a target runner (qemu-aarch64).
const REFERENCE_NATIVE: Duration = Duration::from_millis(5);
const REFERENCE_EMULATED: Duration = Duration::from_millis(35);

/// A fixed amount of the engine's work: compile a small flow and interpret a loop of it.
pub fn work() -> Duration {
    let engine = Engine::new(Registry::with_std());
    let started = Instant::now();
    let flow = engine
        .compile(
            "slowness",
            "~for(0..20000)\n| each i |> if(i % 3 == 0)\n    | then |> _\n    | else |> _",
            &CompileOptions::default().tier(Tier::Interp),
        )
        .expect("the calibration flow compiles");
    let outcome = flow.run(&Inputs::new(), &RunLimits::default());
    assert!(
        matches!(outcome, Ok(koru_jit::Outcome::Ok { .. })),
        "the calibration flow runs: {outcome:?}"
    );
    started.elapsed()
}

/// The slowness of the machine now, relative to where the bounds were measured (>= 1).
pub fn factor() -> f64 {
    if let Some(forced) = std::env::var("KORU_TEST_SLOWNESS")
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
    {
        return forced.max(1.0);
    }
    let mut runs = [work(), work(), work()];
    runs.sort();
    let reference = if super::binary::runner().is_empty() {
        REFERENCE_NATIVE
    } else {
        REFERENCE_EMULATED
    };
    let factor = (runs[1].as_secs_f64() / reference.as_secs_f64()).max(1.0);
    // Shown with a failing test's output: how the bounds were scaled.
    eprintln!("slowness: {runs:?} for {reference:?} where the bounds were measured: x{factor:.2}");
    factor
}

/// `slack` scaled by the machine's slowness, measured now.
pub fn scaled(slack: Duration) -> Duration {
    slack.mul_f64(factor())
}
