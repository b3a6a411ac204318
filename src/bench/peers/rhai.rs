//! The Rhai peer: one `rhai::Engine` with the workloads' host functions registered as Rust
//! closures, scripts compiled once (cold workload: `eval` of the source each step).

use rhai::{Engine, EvalAltResult, AST};
use std::cell::Cell;
use std::rc::Rc;

const NESTED: &str = "for outer in 0..1000 { for i in 0..100 { add(\"0\", i.to_string()); } }";
const NESTED_TYPED: &str = "for outer in 0..1000 { for i in 0..100 { add_typed(0, i); } }";
const SUM_FOLD: &str = "let sum = 0; for i in 0..1000000 { sum += i; } sum";
const THREE_STEPS: [&str; 3] = [
    "add(\"10\", \"20\")",
    "multiply(\"30\", \"3\")",
    "subtract(\"90\", \"5\")",
];

pub struct RhaiPeer {
    engine: Engine,
    accumulator: Rc<Cell<i64>>,
    nested: AST,
    nested_typed: AST,
    sum_fold: AST,
    cached: Vec<AST>,
}

type Outcome<T> = Result<T, Box<EvalAltResult>>;

fn parse(text: &str) -> Outcome<i64> {
    text.parse::<i64>()
        .map_err(|_| format!("`{text}` is not an integer").into())
}

impl RhaiPeer {
    pub fn new() -> Outcome<RhaiPeer> {
        let mut engine = Engine::new();
        // The loops are long; Rhai's default operation limit is off, nothing else to lift.
        let accumulator = Rc::new(Cell::new(0i64));
        let acc = accumulator.clone();
        engine.register_fn("add", move |a: &str, b: &str| -> Outcome<i64> {
            let sum = parse(a)? + parse(b)?;
            acc.set(acc.get() + sum);
            Ok(sum)
        });
        let acc = accumulator.clone();
        engine.register_fn("add_typed", move |a: i64, b: i64| {
            acc.set(acc.get() + a + b);
            a + b
        });
        engine.register_fn("multiply", |a: &str, b: &str| -> Outcome<i64> {
            Ok(parse(a)?.wrapping_mul(parse(b)?))
        });
        engine.register_fn("subtract", |a: &str, b: &str| -> Outcome<i64> {
            Ok(parse(a)?.wrapping_sub(parse(b)?))
        });
        let nested = engine.compile(NESTED)?;
        let nested_typed = engine.compile(NESTED_TYPED)?;
        let sum_fold = engine.compile(SUM_FOLD)?;
        let cached = THREE_STEPS
            .iter()
            .map(|source| engine.compile(*source))
            .collect::<Result<Vec<AST>, _>>()?;
        Ok(RhaiPeer {
            engine,
            accumulator,
            nested,
            nested_typed,
            sum_fold,
            cached,
        })
    }

    pub fn version() -> String {
        format!("Rhai {}", env!("KORU_RHAI_VERSION"))
    }

    /// One round of a workload (operations done), `None` for a workload Rhai does not run.
    /// Results are checked.
    pub fn round(&mut self, workload: &str) -> Outcome<Option<u64>> {
        let expect = |got: i64, want: i64| -> Outcome<()> {
            if got == want {
                Ok(())
            } else {
                Err(format!("{workload}: got {got}, expected {want}").into())
            }
        };
        Ok(Some(match workload {
            "nested-loop" | "nested-loop-typed" => {
                self.accumulator.set(0);
                let ast = if workload == "nested-loop" {
                    &self.nested
                } else {
                    &self.nested_typed
                };
                self.engine.run_ast(ast)?;
                expect(self.accumulator.get(), 4_950_000)?;
                100_000
            }
            "three-step-cold" => {
                for _ in 0..1_000 {
                    for (source, want) in THREE_STEPS.iter().zip([30, 90, 85]) {
                        expect(self.engine.eval::<i64>(source)?, want)?;
                    }
                }
                3_000
            }
            "three-step-cached" => {
                for _ in 0..10_000 {
                    for (ast, want) in self.cached.iter().zip([30, 90, 85]) {
                        expect(self.engine.eval_ast::<i64>(ast)?, want)?;
                    }
                }
                30_000
            }
            "sum-fold" => {
                expect(
                    self.engine.eval_ast::<i64>(&self.sum_fold)?,
                    499_999_500_000,
                )?;
                1_000_000
            }
            _ => return Ok(None),
        }))
    }
}
