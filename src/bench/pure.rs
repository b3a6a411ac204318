//! The pure-computation workloads (issues 16 and 17): small programs with no host call, each as a
//! flow, as native Rust with the same checked arithmetic (`checked_*`, floored `%`), and in the
//! peers (`peers/lua.rs`, `peers/bench.py`). Every runner's result is checked against the one
//! expected here, so a broken runner cannot look fast.

use std::hint::black_box;

/// One pure workload.
pub struct Pure {
    pub name: &'static str,
    /// What one operation is.
    pub unit: &'static str,
    pub source: &'static str,
    /// The operations one round does (inner steps or iterations).
    pub operations: u64,
    pub expected: Expected,
    /// The native Rust version: its result.
    pub native: fn() -> Expected,
}

/// A workload's result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Expected {
    Int(i64),
    Float(f64),
}

/// Collatz: the total number of steps of every `n` in 1..=3000.
pub const COLLATZ: Pure = Pure {
    name: "collatz",
    unit: "step",
    source: r#"~capture({ total: 0 })
| as acc |> for(1..3001)
    | each n |> capture({ x: n, s: 0 })
        | as c |> while(c.x != 1)
            | body |> captured { x: if (c.x % 2 == 0) c.x / 2 else 3 * c.x + 1, s: c.s + 1 }
        | captured r |> captured { total: acc.total + r.s }
| captured t |> result t.total
"#,
    operations: 215_063,
    expected: Expected::Int(215_063),
    native: || {
        let mut total = 0i64;
        for n in 1..=black_box(3000i64) {
            let (mut x, mut s) = (n, 0i64);
            while x != 1 {
                x = if x.rem_euclid(2) == 0 {
                    x / 2
                } else {
                    x.checked_mul(3)
                        .and_then(|y| y.checked_add(1))
                        .expect("no overflow")
                };
                s = s.checked_add(1).expect("no overflow");
            }
            total = total.checked_add(s).expect("no overflow");
        }
        Expected::Int(black_box(total))
    },
};

/// A Fibonacci pair modulo 1,000,000,007, 1,000,000 times.
pub const FIB_PAIR: Pure = Pure {
    name: "fib-pair",
    unit: "iteration",
    source: r#"~capture({ a: 0, b: 1 })
| as f |> for(0..1000000)
    | each _ |> captured { a: f.b, b: (f.a + f.b) % 1000000007 }
| captured r |> result r.a
"#,
    operations: 1_000_000,
    expected: Expected::Int(918_091_266),
    native: || {
        let (mut a, mut b) = (0i64, 1i64);
        for _ in 0..black_box(1_000_000) {
            let next = a
                .checked_add(b)
                .expect("no overflow")
                .rem_euclid(1_000_000_007);
            a = b;
            b = next;
        }
        Expected::Int(black_box(a))
    },
};

/// Primes below 20,000 by trial division (divisors up to the square root).
pub const PRIMES: Pure = Pure {
    name: "primes",
    unit: "division",
    source: r#"~capture({ count: 0 })
| as outer |> for(2..20000)
    | each n |> capture({ d: 2, prime: true })
        | as c |> while(c.prime && c.d * c.d <= n)
            | body |> captured { d: c.d + 1, prime: n % c.d != 0 }
        | captured r |> if(r.prime)
            | then |> captured { count: outer.count + 1 }
| captured t |> result t.count
"#,
    operations: 301_275,
    expected: Expected::Int(2262),
    native: || {
        let mut count = 0i64;
        for n in 2..black_box(20_000i64) {
            let (mut d, mut prime) = (2i64, true);
            while prime && d.checked_mul(d).expect("no overflow") <= n {
                prime = n.rem_euclid(d) != 0;
                d = d.checked_add(1).expect("no overflow");
            }
            if prime {
                count = count.checked_add(1).expect("no overflow");
            }
        }
        Expected::Int(black_box(count))
    },
};

/// The series of 1/k² for k in 1..=1,000,000.
pub const FLOAT_SERIES: Pure = Pure {
    name: "float-series",
    unit: "iteration",
    source: r#"~capture({ s: 0.0 })
| as acc |> for(1..1000001)
    | each k |> captured { s: acc.s + 1.0 / (@as(float, k) * @as(float, k)) }
| captured t |> result t.s
"#,
    operations: 1_000_000,
    expected: Expected::Float(1.64493306684877),
    native: || {
        let mut s = 0.0f64;
        for k in 1..=black_box(1_000_000i64) {
            let k = k as f64;
            s += 1.0 / (k * k);
        }
        Expected::Float(black_box(s))
    },
};

/// A state machine over `str` states (`idle` -> `run` -> ... `stop` every 7th step -> `idle`),
/// 1,000,000 steps, counting the stops.
pub const STR_MACHINE: Pure = Pure {
    name: "str-machine",
    unit: "iteration",
    source: r#"~capture({ state: "idle", count: 0 })
| as m |> for(0..1000000)
    | each i |> captured {
        state: if (m.state == "idle") "run" else if (m.state == "run") (if (i % 7 == 0) "stop" else "run") else "idle",
        count: if (m.state == "stop") m.count + 1 else m.count
    }
| captured t |> result t.count
"#,
    operations: 1_000_000,
    expected: Expected::Int(142_856),
    native: || {
        let mut state: &str = black_box("idle");
        let mut count = 0i64;
        for i in 0..black_box(1_000_000i64) {
            let next = if state == "idle" {
                "run"
            } else if state == "run" {
                if i.rem_euclid(7) == 0 {
                    "stop"
                } else {
                    "run"
                }
            } else {
                "idle"
            };
            if state == "stop" {
                count = count.checked_add(1).expect("no overflow");
            }
            state = black_box(next);
        }
        Expected::Int(black_box(count))
    },
};

/// Every pure workload, in the order the bench runs them.
pub const ALL: [&Pure; 5] = [&COLLATZ, &FIB_PAIR, &PRIMES, &FLOAT_SERIES, &STR_MACHINE];

/// The workload named `name`.
pub fn named(name: &str) -> Option<&'static Pure> {
    ALL.into_iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_compute_the_expected_results_in_both_tiers() {
        use crate::{CompileOptions, Engine, Inputs, Outcome, Registry, RunLimits, Tier};
        let engine = Engine::new(Registry::with_std());
        for pure in ALL {
            for tier in [Tier::Interp, Tier::Jit] {
                let flow = engine
                    .compile(
                        pure.name,
                        pure.source,
                        &CompileOptions::default().tier(tier),
                    )
                    .unwrap_or_else(|e| panic!("{}: {e:?}", pure.name));
                let outcome = flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
                let Outcome::Ok {
                    value: Some(value), ..
                } = &outcome
                else {
                    panic!("{}: {outcome:?}", pure.name)
                };
                let got = match pure.expected {
                    Expected::Int(_) => Expected::Int(value.get::<i64>().unwrap()),
                    Expected::Float(_) => Expected::Float(value.get::<f64>().unwrap()),
                };
                assert_eq!(got, pure.expected, "{} in {tier:?}", pure.name);
            }
        }
    }

    #[test]
    fn native_versions_compute_the_expected_results() {
        for pure in ALL {
            assert_eq!((pure.native)(), pure.expected, "{}", pure.name);
        }
    }
}
