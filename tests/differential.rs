//! Differential testing: random well-typed flows, run by the interpreter, by native code, and by
//! the auto tier switching mid-run, must give the same output, outcome, fuel and host calls.
//!
//! The generator is seeded, so a failure names the seed and prints the flow. `KORU_DIFF_CASES`
//! raises the number of cases (CI runs the default); `KORU_DIFF_SEED` replays one.

mod common;

use koru_jit::{CaptureSink, CompileOptions, Engine, Inputs, RunLimits, Tier};
use std::sync::Arc;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Builds the source of one random flow.
struct Generator {
    rng: Rng,
    names: u32,
    /// The yielding subflows this flow defines (SPEC 11): `NAME(n: i64) | tick i64 | done`.
    yielders: Vec<String>,
}

/// What is in scope where an expression is generated.
#[derive(Clone, Default)]
struct Scope {
    ints: Vec<String>,
    floats: Vec<String>,
    strs: Vec<String>,
    /// The int fields of the innermost accumulator, when inside an `as` step.
    accumulator: Option<(String, Vec<String>)>,
    /// Whether that accumulator also has a float field `z` (every update writes it: a float
    /// accumulator live across a loop is what native code saves around its budget refill).
    accumulator_float: bool,
}

impl Generator {
    fn fresh(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    fn int(&mut self, scope: &Scope, depth: u32) -> String {
        let leaf = depth == 0 || self.rng.chance(35);
        if leaf {
            return match self.rng.below(10) {
                0..=2 if !scope.ints.is_empty() => {
                    scope.ints[self.rng.below(scope.ints.len() as u64) as usize].clone()
                }
                3 if scope.accumulator.is_some() => {
                    let (name, fields) = scope.accumulator.clone().unwrap();
                    format!(
                        "{name}.{}",
                        fields[self.rng.below(fields.len() as u64) as usize]
                    )
                }
                4 => [
                    "9223372036854775807",
                    "-9223372036854775808",
                    "4611686018427387904",
                    "-1",
                ][self.rng.below(4) as usize]
                    .to_string(),
                _ => (self.rng.below(21) as i64 - 10).to_string(),
            };
        }
        match self.rng.below(8) {
            0..=4 => {
                let op = ["+", "-", "*", "/", "%"][self.rng.below(5) as usize];
                format!(
                    "({} {op} {})",
                    self.int(scope, depth - 1),
                    self.int(scope, depth - 1)
                )
            }
            5 => format!("-{}", self.int(scope, depth - 1)),
            6 => format!(
                "(if ({}) {} else {})",
                self.boolean(scope, depth - 1),
                self.int(scope, depth - 1),
                self.int(scope, depth - 1)
            ),
            _ => format!("@as(int, {})", self.float(scope, depth - 1)),
        }
    }

    /// The `z` field of an update of the innermost accumulator, when it has one.
    fn z_update(&mut self, scope: &Scope) -> String {
        match &scope.accumulator {
            Some((name, _)) if scope.accumulator_float => {
                let name = name.clone();
                match self.rng.below(3) {
                    0 => format!(", z: {name}.z * 0.5"),
                    _ => format!(", z: {name}.z + {}", self.float(scope, 1)),
                }
            }
            _ => String::new(),
        }
    }

    fn float(&mut self, scope: &Scope, depth: u32) -> String {
        if depth == 0 || self.rng.chance(40) {
            return match self.rng.below(6) {
                0 if !scope.floats.is_empty() => {
                    scope.floats[self.rng.below(scope.floats.len() as u64) as usize].clone()
                }
                1 => "1e300".to_string(),
                _ => format!("{}.5", self.rng.below(20) as i64 - 10),
            };
        }
        match self.rng.below(3) {
            0 => {
                let op = ["+", "-", "*", "/", "%"][self.rng.below(5) as usize];
                format!(
                    "({} {op} {})",
                    self.float(scope, depth - 1),
                    self.float(scope, depth - 1)
                )
            }
            1 => format!("@as(float, {})", self.int(scope, depth - 1)),
            _ => format!("-{}", self.float(scope, depth - 1)),
        }
    }

    fn boolean(&mut self, scope: &Scope, depth: u32) -> String {
        if depth == 0 || self.rng.chance(25) {
            return ["true", "false"][self.rng.below(2) as usize].to_string();
        }
        match self.rng.below(7) {
            0..=2 => {
                let op = ["==", "!=", "<", "<=", ">", ">="][self.rng.below(6) as usize];
                format!(
                    "{} {op} {}",
                    self.int(scope, depth - 1),
                    self.int(scope, depth - 1)
                )
            }
            3 => {
                let op = ["==", "!=", "<", ">="][self.rng.below(4) as usize];
                format!(
                    "{} {op} {}",
                    self.float(scope, depth - 1),
                    self.int(scope, depth - 1)
                )
            }
            4 => format!(
                "({} && {})",
                self.boolean(scope, depth - 1),
                self.boolean(scope, depth - 1)
            ),
            5 => format!(
                "({} || {})",
                self.boolean(scope, depth - 1),
                self.boolean(scope, depth - 1)
            ),
            _ if !scope.strs.is_empty() => format!("{} == \"42\"", scope.strs[0]),
            _ => format!("!({})", self.boolean(scope, depth - 1)),
        }
    }

    /// A step (what follows `|>`): its text, and its continuation lines (already indented)
    /// that must follow the line it is written on. Its continuations sit at `indent`.
    fn step(&mut self, scope: &Scope, depth: u32, indent: usize) -> (String, Vec<String>) {
        let pad = " ".repeat(indent);
        let mut lines = Vec::new();
        let continuation =
            |this: &mut Self, lines: &mut Vec<String>, header: String, scope: &Scope| {
                let (head, below) = this.step(scope, depth.saturating_sub(1), indent + 4);
                lines.push(format!("{pad}{header} |> {head}"));
                lines.extend(below);
            };
        let choice = if depth == 0 {
            6 + self.rng.below(3)
        } else {
            self.rng.below(15)
        };
        let head = match choice {
            0 => {
                let (a, b) = (self.int(scope, 2), self.int(scope, 2));
                let v = self.fresh("v");
                let mut inner = scope.clone();
                inner.ints.push(v.clone());
                continuation(self, &mut lines, format!("| sum {v}"), &inner);
                format!("test.typed_add(a: {a}, b: {b})")
            }
            1 => {
                let n = self.int(scope, 1);
                let (o, m) = (self.fresh("o"), self.fresh("m"));
                continuation(self, &mut lines, "| zero".into(), scope);
                let mut with_o = scope.clone();
                with_o.ints.push(format!("{o}.n"));
                with_o.strs.push(format!("{o}.label"));
                continuation(self, &mut lines, format!("| one {o}"), &with_o);
                let mut with_m = scope.clone();
                with_m.ints.push(m.clone());
                let guard = self.boolean(&with_m, 1);
                continuation(
                    self,
                    &mut lines,
                    format!("| many {m} when {guard}"),
                    &with_m,
                );
                if self.rng.chance(70) {
                    continuation(self, &mut lines, "|?".into(), scope);
                } else {
                    // Without a catch-all, `many` needs an unguarded continuation (SPEC 2.2).
                    continuation(self, &mut lines, "| many".into(), scope);
                }
                format!("test.pick(n: {n})")
            }
            2 => {
                let (start, end) = (self.rng.below(4), self.rng.below(12));
                let i = self.fresh("i");
                let mut inner = scope.clone();
                inner.ints.push(i.clone());
                continuation(self, &mut lines, format!("| each {i}"), &inner);
                if self.rng.chance(50) {
                    continuation(self, &mut lines, "| done".into(), scope);
                }
                format!("for({start}..{end})")
            }
            3 => {
                let cond = self.boolean(scope, 2);
                continuation(self, &mut lines, "| then".into(), scope);
                if self.rng.chance(60) {
                    continuation(self, &mut lines, "| else".into(), scope);
                }
                format!("if({cond})")
            }
            4 => {
                let acc = self.fresh("acc");
                let (x, y) = (self.int(scope, 1), self.int(scope, 1));
                let float_field = self.rng.chance(40);
                let z = if float_field {
                    format!(", z: {}", self.float(scope, 1))
                } else {
                    String::new()
                };
                let mut inner = scope.clone();
                inner.accumulator = Some((acc.clone(), vec!["x".to_string(), "y".to_string()]));
                inner.accumulator_float = float_field;
                if self.rng.chance(50) {
                    // Now and then past a first grant of the iteration budget (256), so that
                    // native code refills it in the middle of the loop.
                    let limit = if self.rng.chance(15) {
                        257 + self.rng.below(400)
                    } else {
                        self.rng.below(30) + 1
                    };
                    let z_update = self.z_update(&inner);
                    let update = format!(
                        "captured {{ x: {acc}.x + 1, y: {}{z_update} }}",
                        self.int(&inner, 2)
                    );
                    lines.push(format!("{pad}| as {acc} |> while({acc}.x < {limit})"));
                    lines.push(format!("{pad}    | body |> {update}"));
                } else {
                    continuation(self, &mut lines, format!("| as {acc}"), &inner);
                }
                let total = self.fresh("t");
                let mut after = scope.clone();
                after.ints.push(format!("{total}.x"));
                after.ints.push(format!("{total}.y"));
                if float_field {
                    after.floats.push(format!("{total}.z"));
                }
                continuation(self, &mut lines, format!("| captured {total}"), &after);
                format!("capture({{ x: {x}, y: {y}{z} }})")
            }
            5 => {
                let text = self.fresh("w");
                let mut inner = scope.clone();
                inner.strs.push(text.clone());
                let argument = if self.rng.chance(50) {
                    self.int(scope, 1)
                } else {
                    "\"42\"".to_string()
                };
                continuation(self, &mut lines, format!("| echoed {text}"), &inner);
                format!("test.echo(text: {argument})")
            }
            6 => {
                // A template hole sits inside a string literal: no string literals in it.
                let mut plain = scope.clone();
                plain.strs.clear();
                format!(
                    "std.io:print.ln(\"n={{{{ {} }}}} f={{{{ {} }}}}\")",
                    self.int(&plain, 2),
                    self.float(&plain, 1)
                )
            }
            11 => {
                // An int match (SPEC 10): disjoint literals and ranges (so none is unreachable),
                // bindings, guards, and the `|?` an int match needs.
                let scrutinee = self.int(scope, 2);
                let mut cursor = self.rng.below(6) as i64 - 3;
                for _ in 0..1 + self.rng.below(4) {
                    let mut patterns = Vec::new();
                    for _ in 0..1 + self.rng.below(3) {
                        let width = self.rng.below(4) as i64;
                        patterns.push(match self.rng.below(3) {
                            0 if width > 0 => format!("{cursor}..{}", cursor + width),
                            1 => format!("{cursor}..={}", cursor + width),
                            _ => cursor.to_string(),
                        });
                        cursor += width + 1 + self.rng.below(2) as i64;
                    }
                    let k = self.fresh("k");
                    let mut inner = scope.clone();
                    inner.ints.push(k.clone());
                    let guard = if self.rng.chance(30) {
                        format!(" when {}", self.boolean(&inner, 1))
                    } else {
                        String::new()
                    };
                    let header = format!("| [{}] {k}{guard}", patterns.join(", "));
                    continuation(self, &mut lines, header, &inner);
                }
                continuation(self, &mut lines, "|?".into(), scope);
                format!("match({scrutinee})")
            }
            12 => {
                // A str match: distinct patterns of several lengths (inline compares and a
                // helper call past 16 bytes).
                let scrutinee = match scope.strs.first() {
                    Some(text) if self.rng.chance(60) => text.clone(),
                    _ => "\"GET\"".to_string(),
                };
                let mut texts = vec![
                    "",
                    "a",
                    "42",
                    "GET",
                    "0123456789abcdef",
                    "longer than sixteen bytes",
                ];
                for _ in 0..1 + self.rng.below(3) {
                    let at = self.rng.below(texts.len() as u64) as usize;
                    let text = texts.remove(at);
                    let w = self.fresh("w");
                    let mut inner = scope.clone();
                    inner.strs.push(w.clone());
                    continuation(self, &mut lines, format!("| [\"{text}\"] {w}"), &inner);
                }
                continuation(self, &mut lines, "|?".into(), scope);
                format!("match({scrutinee})")
            }
            8 => {
                // A subflow of `$std/control` (SPEC 11): its `yield`s run this continuation in
                // place, in this scope (an enclosing accumulator included).
                let i = self.fresh("i");
                let mut inner = scope.clone();
                inner.ints.push(i.clone());
                continuation(self, &mut lines, format!("| each {i}"), &inner);
                continuation(self, &mut lines, "| done".into(), scope);
                match self.rng.below(3) {
                    0 => format!("repeat(n: {})", self.rng.below(6)),
                    1 => format!("countdown(from: {})", self.rng.below(6)),
                    _ => format!(
                        "range(start: {}, end: {}, step: {})",
                        self.rng.below(8) as i64 - 2,
                        self.rng.below(10),
                        self.rng.below(5) as i64 - 2
                    ),
                }
            }
            14 if !self.yielders.is_empty() => {
                // A yielding subflow of this flow: its `yield`s run these continuations in place.
                let name =
                    self.yielders[self.rng.below(self.yielders.len() as u64) as usize].clone();
                let t = self.fresh("t");
                let mut inner = scope.clone();
                inner.ints.push(t.clone());
                continuation(self, &mut lines, format!("| tick {t}"), &inner);
                continuation(self, &mut lines, "| done".into(), scope);
                format!("{name}(n: {})", self.int(scope, 1))
            }
            13 if scope.accumulator.is_some() => {
                // A match whose arms differ only in literals (native code loads them from tables
                // instead of jumping), some large enough to overflow.
                let (name, _) = scope.accumulator.clone().unwrap();
                let op = ["+", "-", "*"][self.rng.below(3) as usize];
                let scrutinee = self.int(scope, 2);
                let mut cursor = self.rng.below(8) as i64 - 4;
                let literal = |this: &mut Self| match this.rng.below(8) {
                    0 => 4_611_686_018_427_387_904i64 + this.rng.below(9) as i64,
                    _ => this.rng.below(40) as i64 - 20,
                };
                for _ in 0..1 + self.rng.below(5) {
                    let width = self.rng.below(3) as i64;
                    let pattern = if width == 0 {
                        cursor.to_string()
                    } else {
                        format!("{cursor}..={}", cursor + width)
                    };
                    cursor += width + 1 + self.rng.below(3) as i64;
                    let lit = literal(self);
                    let z = self.z_update(scope);
                    lines.push(format!(
                        "{pad}| [{pattern}] |> captured {{ y: {name}.x {op} {lit}, x: {name}.y{z} }}"
                    ));
                }
                let lit = literal(self);
                let z = self.z_update(scope);
                lines.push(format!(
                    "{pad}|? |> captured {{ y: {name}.x {op} {lit}, x: {name}.y{z} }}"
                ));
                format!("match({scrutinee})")
            }
            7 if scope.accumulator.is_some() => {
                let (name, _) = scope.accumulator.clone().unwrap();
                let y = self.int(scope, 1);
                let z = self.z_update(scope);
                format!("captured {{ y: {name}.x + {y}, x: {name}.y{z} }}")
            }
            _ => format!(
                "result {{ n: {}, b: {} }}",
                self.int(scope, 2),
                self.boolean(scope, 1)
            ),
        };
        (head, lines)
    }
}

/// Generates a whole flow.
fn generate(seed: u64) -> String {
    let mut generator = Generator {
        rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        names: 0,
        yielders: Vec::new(),
    };
    // Yielding subflows (SPEC 11): yields inside `if`, `match` and loops, and from the
    // continuation of another yielding subflow (`repeat` of `$std/control`).
    let mut subflows = String::new();
    for _ in 0..generator.rng.below(3) {
        let name = generator.fresh("y");
        let k = generator.rng.below(7) as i64 - 3;
        let body = match generator.rng.below(3) {
            0 => format!(
                "for(0..n)\n    | each i |> if(i % {} == {})\n        | then |> yield tick i * {k}\n        | else |> _\n    | done |> done",
                2 + generator.rng.below(3),
                generator.rng.below(2)
            ),
            1 => "for(0..n)\n    | each i |> match(i % 3)\n        | [0] |> yield tick i\n        | [1] |> yield tick 0 - i\n        |? |> _\n    | done |> done".to_string(),
            _ => format!("repeat(n: n)\n    | each i |> yield tick i + {k}\n    | done |> done"),
        };
        subflows.push_str(&format!(
            "~event {name} {{ n: i64 }} | tick i64 | done\n~{name} = {body}\n"
        ));
        generator.yielders.push(name);
    }
    let depth = 2 + generator.rng.below(3) as u32;
    // The head must be an invocation: retry constructors away.
    loop {
        let (head, lines) = generator.step(&Scope::default(), depth, 0);
        if head.contains('(') && !head.starts_with("result") && !head.starts_with("captured") {
            let mut source = format!("~import \"$std/control\"\n{subflows}~{head}\n");
            for line in lines {
                source.push_str(&line);
                source.push('\n');
            }
            return source;
        }
    }
}

fn run(
    source: &str,
    tier: Tier,
    limits: &RunLimits,
) -> Result<(String, String, Vec<String>), String> {
    run_with(source, tier, limits, koru_jit::TierPolicy::eager())
}

/// Like [`run`], under `policy`.
fn run_with(
    source: &str,
    tier: Tier,
    limits: &RunLimits,
    policy: koru_jit::TierPolicy,
) -> Result<(String, String, Vec<String>), String> {
    let (mut registry, _, log) = common::test_registry();
    let sink = Arc::new(CaptureSink::new());
    registry.set_output(sink.clone());
    // The auto tier compiles at the first opportunity: a run switches at its first back-edge.
    let config = koru_jit::EngineConfig {
        policy,
        ..koru_jit::EngineConfig::default()
    };
    let engine = Engine::with_config(registry, config);
    let flow = engine
        .compile("random", source, &CompileOptions::default().tier(tier))
        .map_err(|e| e.render(false))?;
    if tier == Tier::Jit && flow.tier() != Tier::Jit {
        return Err(format!(
            "the JIT did not compile the flow: {:?}",
            flow.jit_error()
        ));
    }
    let bound = flow.cost_bound(&Inputs::new());
    // With the obligations report: the discharging calls are compared too (SPEC 12).
    let report = flow
        .run_report(&Inputs::new(), limits, &*sink)
        .map_err(|e| e.to_string())?;
    let outcome = &report.outcome;
    // The static bound is never below what the run used.
    let stats = flow.stats();
    let iterations = stats.interpreted_iterations + stats.native_iterations;
    if bound.fuel.is_some_and(|b| outcome.fuel() > b)
        || bound.iterations.is_some_and(|b| iterations > b)
    {
        return Err(format!(
            "the run used {} fuel and {iterations} iterations, above its bound {bound:?}",
            outcome.fuel()
        ));
    }
    let calls = std::mem::take(&mut *log.lock().unwrap());
    Ok((report.to_json().to_string(), sink.take_out(), calls))
}

/// Random flows of obligations (SPEC 12): files opened, read and closed (only where the checker
/// allows: a handle opened outside a loop is never closed inside it), locks whose release fails,
/// loops, `repeat`'s yielded continuations, `if` and `match` around them.
struct ObligationGenerator {
    rng: Rng,
    names: u32,
}

/// An open handle in scope: its name, its state's events, and the loop level it was opened at.
#[derive(Clone)]
struct OpenHandle {
    name: String,
    file: bool,
    level: u32,
}

impl ObligationGenerator {
    fn fresh(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    /// A step and its continuation lines at `indent`.
    fn step(
        &mut self,
        open: &[OpenHandle],
        level: u32,
        depth: u32,
        indent: usize,
    ) -> (String, Vec<String>) {
        let pad = " ".repeat(indent);
        let mut lines = Vec::new();
        let cont = |this: &mut Self,
                    lines: &mut Vec<String>,
                    header: String,
                    open: &[OpenHandle],
                    level: u32| {
            let (head, below) = this.step(open, level, depth.saturating_sub(1), indent + 4);
            lines.push(format!("{pad}{header} |> {head}"));
            lines.extend(below);
        };
        if depth == 0 {
            return ("_".into(), lines);
        }
        let closable: Vec<&OpenHandle> = open.iter().filter(|h| h.level == level).collect();
        let files: Vec<&OpenHandle> = open.iter().filter(|h| h.file).collect();
        let head = match self.rng.below(9) {
            0 | 1 => {
                let h = self.fresh("h");
                let path = if self.rng.chance(15) { "" } else { "p" };
                let mut inner = open.to_vec();
                inner.push(OpenHandle {
                    name: h.clone(),
                    file: true,
                    level,
                });
                cont(self, &mut lines, format!("| opened {h}"), &inner, level);
                let f = self.fresh("f");
                cont(self, &mut lines, format!("| failed {f}"), open, level);
                format!("file.open(path: \"{path}\")")
            }
            2 if !files.is_empty() => {
                let h = files[self.rng.below(files.len() as u64) as usize]
                    .name
                    .clone();
                let d = self.fresh("d");
                cont(self, &mut lines, format!("| data {d}"), open, level);
                format!("file.read(handle: {h})")
            }
            3 if !closable.is_empty() => {
                let chosen = closable[self.rng.below(closable.len() as u64) as usize].clone();
                let rest: Vec<OpenHandle> = open
                    .iter()
                    .filter(|h| h.name != chosen.name)
                    .cloned()
                    .collect();
                cont(self, &mut lines, String::new(), &rest, level);
                if chosen.file {
                    format!("file.close(handle: {})", chosen.name)
                } else {
                    format!("test.unlock(handle: {})", chosen.name)
                }
            }
            4 => {
                let l = self.fresh("l");
                let name = ["ok", "bad", "panic"][self.rng.below(3) as usize];
                let mut inner = open.to_vec();
                inner.push(OpenHandle {
                    name: l.clone(),
                    file: false,
                    level,
                });
                cont(self, &mut lines, format!("| locked {l}"), &inner, level);
                format!("test.lock(name: \"{name}\")")
            }
            5 => {
                let n = self.rng.below(40);
                cont(self, &mut lines, "| each _".into(), open, level + 1);
                format!("for(0..{n})")
            }
            6 => {
                let n = self.rng.below(30);
                cont(self, &mut lines, "| each _".into(), open, level + 1);
                cont(self, &mut lines, "| done".into(), open, level);
                format!("repeat(n: {n})")
            }
            7 => {
                let k = self.rng.below(3);
                cont(self, &mut lines, "| [1]".into(), open, level);
                cont(self, &mut lines, "|?".into(), open, level);
                format!("match({k})")
            }
            _ => {
                let text = self.fresh("t");
                cont(self, &mut lines, String::new(), open, level);
                format!("std.io:println(text: \"{text}\")")
            }
        };
        // A pipe continuation is written `|> step`: drop the empty header's space.
        for line in &mut lines {
            if let Some(rest) = line.strip_prefix(&format!("{pad} |> ")) {
                *line = format!("{pad}|> {rest}");
            }
        }
        (head, lines)
    }
}

#[test]
fn random_obligation_flows_discharge_the_same_in_every_tier() {
    let cases: u64 = std::env::var("KORU_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let (mut discharging, mut stopped) = (0, 0);
    for seed in 1..=cases {
        let mut generator = ObligationGenerator {
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            names: 0,
        };
        let depth = 3 + generator.rng.below(3) as u32;
        let (head, lines) = loop {
            let made = generator.step(&[], 0, depth, 0);
            if made.0.contains('(') {
                break made;
            }
        };
        let mut source = format!("~import \"$std/control\"\n~{head}\n");
        for line in lines {
            source.push_str(&line);
            source.push('\n');
        }
        if std::env::var("KORU_DIFF_PRINT").is_ok() {
            eprintln!("seed {seed}:\n{source}");
        }
        let mut rng = Rng(seed | 1);
        let limits = RunLimits {
            fuel: rng.chance(40).then(|| rng.below(30)),
            max_iterations: Some(if rng.chance(30) {
                rng.below(60)
            } else {
                10_000
            }),
            max_output_bytes: rng.chance(20).then(|| rng.below(100)),
            max_handles: rng.chance(40).then(|| rng.below(6)),
            keep_handles_open: rng.chance(15),
            ..RunLimits::default()
        };
        let interpreted = run(&source, Tier::Interp, &limits)
            .unwrap_or_else(|e| panic!("seed {seed}: invalid flow:\n{source}\n{e}"));
        for tier in [Tier::Jit, Tier::Auto] {
            let other = run(&source, tier, &limits)
                .unwrap_or_else(|e| panic!("seed {seed}:\n{source}\n{e}"));
            assert_eq!(
                interpreted, other,
                "seed {seed}: {tier:?} differs on\n{source}\nlimits {limits:?}"
            );
        }
        if interpreted.0.contains("\"discharged\":[{") {
            discharging += 1;
        }
        if !interpreted.0.starts_with("{\"outcome\":\"ok\"") {
            stopped += 1;
        }
    }
    // The generator must exercise runs that discharge, and runs stopped early.
    assert!(
        discharging > cases / 5 && stopped > cases / 10,
        "{discharging} discharging and {stopped} stopped runs of {cases}"
    );
}

#[test]
fn random_flows_behave_the_same_in_both_tiers() {
    let cases: u64 = std::env::var("KORU_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seeds: Vec<u64> = match std::env::var("KORU_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (1..=cases).collect(),
    };
    let (mut compiled, mut stopped) = (0, 0);
    for seed in seeds {
        let source = generate(seed);
        if std::env::var("KORU_DIFF_PRINT").is_ok() {
            eprintln!("seed {seed}:\n{source}");
        }
        let mut rng = Rng(seed | 1);
        let limits = RunLimits {
            fuel: rng.chance(30).then(|| rng.below(20)),
            // Always bounded: a random loop may count from a huge negative number.
            max_iterations: Some(if rng.chance(30) {
                rng.below(40)
            } else {
                10_000
            }),
            // Often small enough to cut a print in the middle.
            max_output_bytes: rng.chance(30).then(|| rng.below(200)),
            ..RunLimits::default()
        };
        let interpreted = match run(&source, Tier::Interp, &limits) {
            Ok(result) => result,
            Err(errors) => {
                panic!("seed {seed}: the generator produced an invalid flow:\n{source}\n{errors}")
            }
        };
        let native = run(&source, Tier::Jit, &limits)
            .unwrap_or_else(|e| panic!("seed {seed}:\n{source}\n{e}"));
        assert_eq!(
            interpreted, native,
            "seed {seed}: the tiers differ on\n{source}\nlimits {limits:?}"
        );
        let switching = run(&source, Tier::Auto, &limits)
            .unwrap_or_else(|e| panic!("seed {seed}:\n{source}\n{e}"));
        assert_eq!(
            interpreted, switching,
            "seed {seed}: the auto tier differs on\n{source}\nlimits {limits:?}"
        );
        // Compiled as small functions (what large flows are split into), every few seeds.
        if seed % 4 == 0 {
            let mut policy = koru_jit::TierPolicy::eager();
            policy.compile_budget.function_steps = 1 + (seed as usize / 4) % 3;
            for tier in [Tier::Jit, Tier::Auto] {
                let split = run_with(&source, tier, &limits, policy.clone())
                    .unwrap_or_else(|e| panic!("seed {seed}:\n{source}\n{e}"));
                assert_eq!(
                    interpreted, split,
                    "seed {seed}: split code ({tier:?}) differs on\n{source}\nlimits {limits:?}"
                );
            }
        }
        compiled += 1;
        if !interpreted.0.starts_with("{\"outcome\":\"ok\"") {
            stopped += 1;
        }
    }
    // The generator must exercise both finished runs and stopped ones (errors, limits).
    if compiled > 50 {
        assert!(
            stopped > compiled / 20 && stopped < compiled * 19 / 20,
            "{stopped} of {compiled} runs stopped early"
        );
    }
}

/// What [`run`] observes, the trace lines, and whether they were cut.
type Traced = ((String, String, Vec<String>), Vec<String>, bool);

/// The random flow traced at `TraceLevel::All` under `limits` (whose trace sink this sets): the
/// untraced observations, then the trace lines and whether they were cut.
fn run_traced(source: &str, tier: Tier, limits: &RunLimits) -> Result<Traced, String> {
    let (mut registry, _, log) = common::test_registry();
    let sink = Arc::new(CaptureSink::new());
    registry.set_output(sink.clone());
    let config = koru_jit::EngineConfig {
        policy: koru_jit::TierPolicy::eager(),
        ..koru_jit::EngineConfig::default()
    };
    let engine = Engine::with_config(registry, config);
    let options = CompileOptions::default()
        .tier(tier)
        .trace(koru_jit::TraceLevel::All);
    let flow = engine
        .compile("random", source, &options)
        .map_err(|e| e.render(false))?;
    let trace = Arc::new(koru_jit::CaptureTrace::new());
    let limits = RunLimits {
        trace: Some(trace.clone()),
        ..limits.clone()
    };
    let outcome = flow
        .run(&Inputs::new(), &limits)
        .map_err(|e| e.to_string())?;
    let calls = std::mem::take(&mut *log.lock().unwrap());
    let cut = trace.was_cut();
    Ok((
        (outcome.to_json().to_string(), sink.take_out(), calls),
        trace.take_lines(),
        cut,
    ))
}

#[test]
fn random_flows_trace_the_same_in_every_tier_and_run_as_untraced() {
    // SPEC 13: the same trace lines in every tier (the auto tier switching to native code at
    // its first back-edge included), within random trace bounds; and a trace changes no run.
    let (mut traced_lines, mut cut) = (0, 0);
    for seed in 1..=120u64 {
        let source = generate(seed);
        let mut rng = Rng(seed.wrapping_mul(7) | 1);
        let limits = RunLimits {
            fuel: rng.chance(30).then(|| rng.below(20)),
            max_iterations: Some(if rng.chance(30) {
                rng.below(40)
            } else {
                10_000
            }),
            max_output_bytes: rng.chance(30).then(|| rng.below(200)),
            max_trace_lines: Some(if rng.chance(50) { rng.below(30) } else { 5_000 }),
            max_trace_bytes: rng.chance(30).then(|| rng.below(400)),
            ..RunLimits::default()
        };
        let untraced = run(&source, Tier::Interp, &limits)
            .unwrap_or_else(|e| panic!("seed {seed}:\n{source}\n{e}"));
        let interpreted = run_traced(&source, Tier::Interp, &limits)
            .unwrap_or_else(|e| panic!("seed {seed}:\n{source}\n{e}"));
        assert_eq!(
            untraced, interpreted.0,
            "seed {seed}: tracing changed the run of\n{source}\nlimits {limits:?}"
        );
        for tier in [Tier::Jit, Tier::Auto] {
            let traced = run_traced(&source, tier, &limits)
                .unwrap_or_else(|e| panic!("seed {seed}:\n{source}\n{e}"));
            assert_eq!(
                interpreted, traced,
                "seed {seed}: the {tier:?} trace differs on\n{source}\nlimits {limits:?}"
            );
        }
        traced_lines += usize::from(interpreted.1.len() > 3);
        cut += usize::from(interpreted.2);
    }
    eprintln!("{traced_lines} of 120 traces with more than 3 lines, {cut} cut");
    // The generator's flows are traced, and the bounds cut some of their traces.
    assert!(
        traced_lines > 20 && cut > 10,
        "{traced_lines} traced, {cut} cut"
    );
}
