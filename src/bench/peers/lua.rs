//! The Lua peer through mlua: in-process for LuaJIT (feature `peers`) and in the Lua 5.4 child
//! process (`benches/peers/lua54`, which includes this file: mlua links one Lua per binary).
//! It depends on mlua and std only.

use mlua::{Function, Lua};
use std::cell::Cell;
use std::io::{BufRead, Write};
use std::rc::Rc;
use std::time::Instant;

const NESTED: &str = "for outer = 0, 999 do for i = 0, 99 do add(\"0\", tostring(i)) end end";
const NESTED_TYPED: &str = "for outer = 0, 999 do for i = 0, 99 do add_typed(0, i) end end";
const SUM_FOLD: &str = "local sum = 0 for i = 0, 999999 do sum = sum + i end return sum";
/// The pure workloads (`bench::pure`), written the obvious way: `(name, Lua 5.4 source, LuaJIT
/// source, expected result)`. LuaJIT has no `//` (its numbers are doubles, exact here).
const PURE: [(&str, &str, &str, f64); 5] = [
    (
        "collatz",
        "local total = 0 for n = 1, 3000 do local x, s = n, 0 while x ~= 1 do \
         if x % 2 == 0 then x = x // 2 else x = 3 * x + 1 end s = s + 1 end \
         total = total + s end return total",
        "local total = 0 for n = 1, 3000 do local x, s = n, 0 while x ~= 1 do \
         if x % 2 == 0 then x = x / 2 else x = 3 * x + 1 end s = s + 1 end \
         total = total + s end return total",
        215_063.0,
    ),
    (
        "fib-pair",
        "local a, b = 0, 1 for i = 1, 1000000 do a, b = b, (a + b) % 1000000007 end return a",
        "local a, b = 0, 1 for i = 1, 1000000 do a, b = b, (a + b) % 1000000007 end return a",
        918_091_266.0,
    ),
    (
        "primes",
        "local count = 0 for n = 2, 19999 do local d, prime = 2, true \
         while prime and d * d <= n do prime = n % d ~= 0 d = d + 1 end \
         if prime then count = count + 1 end end return count",
        "local count = 0 for n = 2, 19999 do local d, prime = 2, true \
         while prime and d * d <= n do prime = n % d ~= 0 d = d + 1 end \
         if prime then count = count + 1 end end return count",
        2262.0,
    ),
    (
        "float-series",
        "local s = 0.0 for k = 1, 1000000 do s = s + 1.0 / (k * k) end return s",
        "local s = 0.0 for k = 1, 1000000 do s = s + 1.0 / (k * k) end return s",
        1.64493306684877,
    ),
    (
        "str-machine",
        "local state, count = 'idle', 0 for i = 0, 999999 do local nxt \
         if state == 'idle' then nxt = 'run' elseif state == 'run' then \
         if i % 7 == 0 then nxt = 'stop' else nxt = 'run' end else nxt = 'idle' end \
         if state == 'stop' then count = count + 1 end state = nxt end return count",
        "local state, count = 'idle', 0 for i = 0, 999999 do local nxt \
         if state == 'idle' then nxt = 'run' elseif state == 'run' then \
         if i % 7 == 0 then nxt = 'stop' else nxt = 'run' end else nxt = 'idle' end \
         if state == 'stop' then count = count + 1 end state = nxt end return count",
        142_856.0,
    ),
];
/// Operations per round of each pure workload (as `bench::pure` counts them).
const PURE_OPERATIONS: [u64; 5] = [215_063, 1_000_000, 301_275, 1_000_000, 1_000_000];

const THREE_STEPS: [&str; 3] = [
    "return add(\"10\", \"20\")",
    "return multiply(\"30\", \"3\")",
    "return subtract(\"90\", \"5\")",
];

/// One Lua state with the workloads' host functions registered as Rust closures.
pub struct LuaPeer {
    lua: Lua,
    accumulator: Rc<Cell<i64>>,
    nested: Function,
    nested_typed: Function,
    sum_fold: Function,
    cached: Vec<Function>,
    pure: Vec<Function>,
}

fn parse(text: &str) -> mlua::Result<i64> {
    text.parse::<i64>().map_err(mlua::Error::external)
}

impl LuaPeer {
    pub fn new() -> mlua::Result<LuaPeer> {
        LuaPeer::with_jit(true)
    }

    /// A Lua state; for LuaJIT with `jit: false`, its JIT off (`jit.off()`): LuaJIT's own
    /// interpreter.
    pub fn with_jit(jit: bool) -> mlua::Result<LuaPeer> {
        let lua = Lua::new();
        let is_luajit = lua.load("return jit ~= nil").eval::<bool>()?;
        if is_luajit && !jit {
            lua.load("jit.off()").exec()?;
        }
        let accumulator = Rc::new(Cell::new(0i64));
        let globals = lua.globals();
        let acc = accumulator.clone();
        // Arguments as Rust `String`s, the fastest way mlua offers for short strings.
        globals.set(
            "add",
            lua.create_function(move |_, (a, b): (String, String)| {
                let sum = parse(&a)? + parse(&b)?;
                acc.set(acc.get() + sum);
                Ok(sum)
            })?,
        )?;
        let acc = accumulator.clone();
        globals.set(
            "add_typed",
            lua.create_function(move |_, (a, b): (i64, i64)| {
                acc.set(acc.get() + a + b);
                Ok(a + b)
            })?,
        )?;
        globals.set(
            "multiply",
            lua.create_function(|_, (a, b): (String, String)| {
                Ok(parse(&a)?.wrapping_mul(parse(&b)?))
            })?,
        )?;
        globals.set(
            "subtract",
            lua.create_function(|_, (a, b): (String, String)| {
                Ok(parse(&a)?.wrapping_sub(parse(&b)?))
            })?,
        )?;
        drop(globals);
        let nested = lua.load(NESTED).into_function()?;
        let nested_typed = lua.load(NESTED_TYPED).into_function()?;
        let sum_fold = lua.load(SUM_FOLD).into_function()?;
        let cached = THREE_STEPS
            .iter()
            .map(|source| lua.load(*source).into_function())
            .collect::<mlua::Result<Vec<Function>>>()?;
        let pure = PURE
            .iter()
            .map(|(_, lua54, luajit, _)| {
                lua.load(if is_luajit { *luajit } else { *lua54 })
                    .into_function()
            })
            .collect::<mlua::Result<Vec<Function>>>()?;
        Ok(LuaPeer {
            lua,
            accumulator,
            nested,
            nested_typed,
            sum_fold,
            cached,
            pure,
        })
    }

    /// `_VERSION`, and LuaJIT's version and JIT status where there is one.
    pub fn version(&self) -> String {
        self.lua
            .load(
                "return _VERSION .. ((jit and (' / ' .. jit.version .. ' (jit ' .. \
                 tostring(jit.status()) .. ')')) or '')",
            )
            .eval::<String>()
            .unwrap_or_else(|e| format!("unknown ({e})"))
    }

    /// Runs one round of a workload; returns the operations it did, or `None` for a workload
    /// this peer does not run. Results are checked, so a broken peer cannot look fast.
    pub fn round(&mut self, workload: &str) -> mlua::Result<Option<u64>> {
        let expect = |what: &str, got: i64, want: i64| {
            if got == want {
                Ok(())
            } else {
                Err(mlua::Error::external(format!(
                    "{what}: got {got}, expected {want}"
                )))
            }
        };
        Ok(Some(match workload {
            "nested-loop" | "nested-loop-typed" => {
                self.accumulator.set(0);
                if workload == "nested-loop" {
                    self.nested.call::<()>(())?;
                } else {
                    self.nested_typed.call::<()>(())?;
                }
                expect(workload, self.accumulator.get(), 4_950_000)?;
                100_000
            }
            "three-step-cold" => {
                for _ in 0..1_000 {
                    for (source, want) in THREE_STEPS.iter().zip([30, 90, 85]) {
                        let got = self.lua.load(*source).call::<i64>(())?;
                        expect(workload, got, want)?;
                    }
                }
                3_000
            }
            "three-step-cached" => {
                for _ in 0..10_000 {
                    for (function, want) in self.cached.iter().zip([30, 90, 85]) {
                        expect(workload, function.call::<i64>(())?, want)?;
                    }
                }
                30_000
            }
            "sum-fold" => {
                let sum = self.sum_fold.call::<i64>(())?;
                expect(workload, sum, 499_999_500_000)?;
                1_000_000
            }
            name => match PURE.iter().position(|(n, ..)| *n == name) {
                Some(k) => {
                    let got = self.pure[k].call::<f64>(())?;
                    if got != PURE[k].3 {
                        return Err(mlua::Error::external(format!(
                            "{name}: got {got}, expected {}",
                            PURE[k].3
                        )));
                    }
                    PURE_OPERATIONS[k]
                }
                None => return Ok(None),
            },
        }))
    }
}

/// The child side of the peer protocol (see `peers::child`): prints `ready <version>`, then for
/// each workload name read from stdin runs one round and prints `ok <operations> <ns>`,
/// `skip`, or `error <message>`.
pub fn serve_stdio() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut peer = match LuaPeer::new() {
        Ok(peer) => peer,
        Err(e) => {
            writeln!(out, "error {}", e.to_string().replace('\n', " "))?;
            return Ok(());
        }
    };
    writeln!(out, "ready {}", peer.version())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let started = Instant::now();
        match peer.round(line.trim()) {
            Ok(Some(operations)) => {
                let ns = started.elapsed().as_nanos();
                writeln!(out, "ok {operations} {ns}")?;
            }
            Ok(None) => writeln!(out, "skip")?,
            Err(e) => writeln!(out, "error {}", e.to_string().replace('\n', " "))?,
        }
        out.flush()?;
    }
    Ok(())
}
