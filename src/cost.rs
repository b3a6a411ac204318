//! Static cost bounds: before a run, an upper bound of the fuel and the loop iterations it can
//! use, from the typed IR alone (SPEC 7's limits, known in advance).
//!
//! A bound exists for flows without `while` whose `for` ranges are made of literals, flow
//! inputs and subflow inputs given such values (with the inputs of the run, the bound of such a
//! loop is exact). Other loops have no iteration bound, and no fuel bound unless their body
//! dispatches nothing. Every host dispatch
//! costs its scope cost, a subflow call 1 plus its body; of the continuations of one invocation
//! the costliest counts, since exactly one runs. Arithmetic saturates: a bound past `u64::MAX`
//! is reported as unbounded.

use crate::ir::*;
use crate::limits::RunLimits;
use crate::outcome::Limit;

/// An upper bound of what one run can use, from [`Flow::cost_bound`](crate::Flow::cost_bound);
/// `None` where no bound is known. See the module-level notes of the crate ("Limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostBound {
    /// At most this much fuel.
    pub fuel: Option<u64>,
    /// At most this many `for`/`while` iterations.
    pub iterations: Option<u64>,
}

impl CostBound {
    /// The first limit this bound could exceed (an unknown bound exceeds any limit), or `None`
    /// when a run is sure to stay within `limits`.
    pub fn exceeds(&self, limits: &RunLimits) -> Option<Limit> {
        let over = |bound: Option<u64>, limit: Option<u64>| match (bound, limit) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(bound), Some(limit)) => bound > limit,
        };
        if over(self.fuel, limits.fuel) {
            Some(Limit::Fuel)
        } else if over(self.iterations, limits.max_iterations) {
            Some(Limit::LoopIterations)
        } else {
            None
        }
    }

    /// `{"fuel":F,"iterations":I}`, each `null` where no bound is known. Hidden from the docs (feature
    /// `json`): the wire format of the command line and the server, not embedder API.
    #[cfg(feature = "json")]
    #[doc(hidden)]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "fuel": self.fuel, "iterations": self.iterations })
    }
}

/// Cost of a step: fuel and iterations, `None` when unbounded.
#[derive(Clone, Copy)]
struct Cost {
    fuel: Option<u128>,
    iterations: Option<u128>,
}

const ZERO: Cost = Cost {
    fuel: Some(0),
    iterations: Some(0),
};

fn add(a: Option<u128>, b: Option<u128>) -> Option<u128> {
    a.zip(b).map(|(a, b)| a.saturating_add(b))
}

fn max(a: Option<u128>, b: Option<u128>) -> Option<u128> {
    a.zip(b).map(|(a, b)| a.max(b))
}

impl Cost {
    fn plus(self, other: Cost) -> Cost {
        Cost {
            fuel: add(self.fuel, other.fuel),
            iterations: add(self.iterations, other.iterations),
        }
    }

    fn or(self, other: Cost) -> Cost {
        Cost {
            fuel: max(self.fuel, other.fuel),
            iterations: max(self.iterations, other.iterations),
        }
    }

    fn times(self, n: u128) -> Cost {
        Cost {
            fuel: self.fuel.map(|f| f.saturating_mul(n)),
            iterations: self.iterations.map(|i| i.saturating_mul(n)),
        }
    }
}

/// The bound of a run of `program` whose flow inputs have the given values (as raw words, in
/// [`Program::inputs`] order; `None` for a value that is not an int).
pub fn bound(program: &Program, inputs: &[Option<i64>]) -> CostBound {
    let mut total = ZERO;
    let known = Known {
        flow: inputs,
        subflow: std::cell::RefCell::new(Vec::new()),
    };
    for flow in &program.flows {
        total = total.plus(step(program, &known, flow));
    }
    let clamp = |v: Option<u128>| v.and_then(|v| u64::try_from(v).ok());
    CostBound {
        fuel: clamp(total.fuel),
        iterations: clamp(total.iterations),
    }
}

/// Int values known before the run: the flow inputs (in [`Program::inputs`] order), and the
/// inputs of the subflow calls being walked whose arguments are such constants (so that a loop
/// over a subflow's input, `$std/control`'s `repeat(n: 5)`, is bounded too).
struct Known<'a> {
    flow: &'a [Option<i64>],
    subflow: std::cell::RefCell<Vec<(LocalId, i64)>>,
}

/// The costliest continuation of a branch (`branches` of them), or nothing for no continuation.
fn arms(program: &Program, inputs: &Known, arms: &Arms, branches: &[usize]) -> Cost {
    let mut worst = ZERO;
    // A catch-all is an arm of several branches: its cost is computed once (once per branch,
    // nested catch-alls made the bound exponential in their depth).
    let mut walked = smallvec::SmallVec::<[bool; 8]>::from_elem(false, arms.arms.len());
    for &branch in branches {
        for &index in arms
            .by_branch
            .get(branch)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
        {
            if walked[index as usize] {
                continue;
            }
            walked[index as usize] = true;
            if let Some(s) = &arms.arms[index as usize].step {
                worst = worst.or(step(program, inputs, s));
            }
        }
    }
    worst
}

fn all_branches(n: usize) -> Vec<usize> {
    (0..n).collect()
}

fn step(program: &Program, inputs: &Known, s: &Step) -> Cost {
    match s {
        Step::Invoke(s) => {
            let cost = program.events[s.event.0 as usize].cost;
            let dispatch = Cost {
                fuel: Some(u128::from(cost)),
                iterations: Some(0),
            };
            dispatch.plus(arms(
                program,
                inputs,
                &s.arms,
                &all_branches(s.payloads.len()),
            ))
        }
        Step::Call(s) => {
            let call = Cost {
                fuel: Some(u128::from(s.cost)),
                iterations: Some(0),
            };
            let known = inputs.subflow.borrow().len();
            for (local, argument) in &s.inputs {
                if argument.format_into.is_none() {
                    if let Some(value) = constant(program, inputs, &argument.expr) {
                        inputs.subflow.borrow_mut().push((*local, value));
                    }
                }
            }
            let body = step(program, inputs, &s.body);
            inputs.subflow.borrow_mut().truncate(known);
            call.plus(body).plus(arms(
                program,
                inputs,
                &s.arms,
                &all_branches(s.results.len()),
            ))
        }
        Step::For(s) => {
            let trips = constant(program, inputs, &s.start)
                .zip(constant(program, inputs, &s.end))
                .map(|(start, end)| (i128::from(end) - i128::from(start)).max(0) as u128);
            let each = arms(program, inputs, &s.arms, &[0]);
            let done = arms(program, inputs, &s.arms, &[1]);
            match trips {
                Some(n) => Cost {
                    fuel: each.fuel,
                    iterations: each.iterations.map(|i| i.saturating_add(1)),
                }
                .times(n)
                .plus(done),
                None => unknown_trips(each, done),
            }
        }
        Step::If(s) => arms(program, inputs, &s.arms, &[0, 1]),
        Step::While(s) => unknown_trips(
            arms(program, inputs, &s.arms, &[0]),
            arms(program, inputs, &s.arms, &[1]),
        ),
        Step::Capture(s) => {
            arms(program, inputs, &s.arms, &[0]).plus(arms(program, inputs, &s.arms, &[1]))
        }
        // A `match` costs nothing itself (SPEC 10): its costliest arm.
        Step::Match(s) => s
            .arms
            .iter()
            .filter_map(|a| a.arm.step.as_ref())
            .fold(ZERO, |worst, arm| worst.or(step(program, inputs, arm))),
        Step::Update(_) | Step::Construct(_) | Step::Yield(_) => ZERO,
    }
}

/// A loop run an unknown number of times: its iterations are unbounded, and so is its fuel,
/// unless its body dispatches nothing.
fn unknown_trips(body: Cost, done: Cost) -> Cost {
    Cost {
        fuel: if body.fuel == Some(0) {
            done.fuel
        } else {
            None
        },
        iterations: None,
    }
}

/// The value of an int expression made of literals and flow inputs (checked arithmetic; `None`
/// for anything else or an overflow).
fn constant(program: &Program, inputs: &Known, e: &Expr) -> Option<i64> {
    match e {
        Expr::Int(v) => Some(*v),
        Expr::Local(local, _) => match program.inputs.iter().position(|i| i.local == *local) {
            Some(position) => inputs.flow.get(position).copied().flatten(),
            None => inputs
                .subflow
                .borrow()
                .iter()
                .rev()
                .find(|(l, _)| l == local)
                .map(|(_, v)| *v),
        },
        Expr::NegInt(e, _) => constant(program, inputs, e)?.checked_neg(),
        Expr::IntArith(op, a, b, _) => arith::int(
            *op,
            constant(program, inputs, a)?,
            constant(program, inputs, b)?,
        )
        .ok(),
        _ => None,
    }
}
