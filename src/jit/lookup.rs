//! `match` as a table lookup: when the continuations of an `int` (or `bool`) `match` compute the
//! same thing and differ only in integer literals (`| [0] |> captured { sum: acc.sum + 1 }`,
//! `| [1] |> captured { sum: acc.sum + 3 }`, ...), the JIT lowers one copy of that body and
//! loads the literals that differ from tables indexed by the matched value, with no jump at all
//! (what LLVM's switch-to-lookup-table does for a native `match`).
//!
//! The plan is decided from the IR alone: every pattern arm before the first catch-all is
//! unguarded, its patterns are values of a dense range (at most [`MAX_SLOTS`] slots, at least a
//! quarter of them written), and every arm, the catch-all included, is the same `captured { .. }`
//! over non-`str` expressions up to integer literals. A run-time error in the body
//! still reports the span of the arm that took the value: each arm keeps its own trap sites, and
//! a failing path finds its arm in a lane table.

use crate::ir::{ErrorSite, Expr, LocalId, MatchStep, Pattern, Step, ValueId};
use crate::span::Span;
use crate::types::Type;
use std::collections::HashMap;
use std::sync::Arc;

/// Table slots of one `match` (the dense range of its values, plus one for the rest).
pub const MAX_SLOTS: usize = 256;
/// Literals that differ between arms (one table each).
const MAX_TABLES: usize = 8;
/// Bytes of tables one flow may hold; past it, matches are lowered as jumps.
pub const MAX_FLOW_TABLE_BYTES: usize = 64 * 1024;

/// How one `match` becomes a lookup.
pub struct Plan<'a> {
    /// The smallest value with a slot: slot `v - base` for `base <= v < base + slots - 1`.
    pub base: i64,
    /// Slots of values, plus the last one for every other value when `clamp`.
    pub slots: usize,
    /// Whether values outside `base..base + slots - 1` are possible, and take the last slot.
    pub clamp: bool,
    /// The lane (index into `lanes`) of each slot.
    pub lane_of_slot: Vec<usize>,
    /// The body every lane shares: the first lane's.
    pub body: Body<'a>,
    /// For each integer literal of the body in lowering order: `None` if every lane has the
    /// same one, else the index of its table.
    pub literal_tables: Vec<Option<usize>>,
    /// Each table's values, per slot.
    pub tables: Vec<Vec<i64>>,
    /// The first lane's error sites, each with its position in every lane's list.
    pub site_index: HashMap<(Span, Option<Arc<str>>), usize>,
    /// Every lane's error sites, in the order of `site_index`.
    pub lane_sites: Vec<Vec<ErrorSite>>,
}

/// The step every arm of a table-lowered `match` has: `captured { field: expr, ... }` (its
/// fields and the value it yields). Constructors do not qualify: each one writes temporaries of
/// its own.
#[derive(Clone, Copy)]
pub struct Body<'a> {
    pub assigns: &'a [(LocalId, Expr)],
    pub value: ValueId,
}

impl<'a> Body<'a> {
    fn of(step: &'a Step) -> Option<Body<'a>> {
        match step {
            Step::Update(u) => Some(Body {
                assigns: &u.assigns,
                value: u.value,
            }),
            _ => None,
        }
    }
}

/// The plan for `s`, if its arms qualify; `table_bytes` is what the flow's tables hold so far,
/// `known` the largest value the argument can have when it is known never negative (`i % 16`):
/// then every possible value has a slot and none is clamped.
pub fn plan(s: &MatchStep, table_bytes: usize, known: Option<i64>) -> Option<Plan<'_>> {
    let catch_all = s.arms.iter().position(|a| a.patterns.is_empty());
    let pattern_arms = catch_all.unwrap_or(s.arms.len());
    if pattern_arms == 0 || s.arms[..pattern_arms].iter().any(|a| a.arm.guard.is_some()) {
        return None;
    }
    // Lanes: the pattern arms, then the catch-all (if any).
    let mut lanes: Vec<usize> = (0..pattern_arms).collect();
    lanes.extend(catch_all);
    let bodies: Vec<Body> = lanes
        .iter()
        .map(|&k| s.arms[k].arm.step.as_ref().and_then(Body::of))
        .collect::<Option<_>>()?;
    // The values each pattern arm takes (the first pattern covering a value wins).
    let mut coverage = crate::ir::pattern::Coverage::default();
    let mut is_bool = false;
    for (lane, arm) in s.arms[..pattern_arms].iter().enumerate() {
        for pattern in &arm.patterns {
            let (lo, hi) = match pattern {
                Pattern::Int { lo, hi } => (*lo, *hi),
                Pattern::Bool(b) => {
                    is_bool = true;
                    (i64::from(*b), i64::from(*b))
                }
                Pattern::Str(_) => return None,
            };
            if (i128::from(hi) - i128::from(lo)) as usize >= MAX_SLOTS {
                return None;
            }
            let _ = coverage.add(lo, hi, lane);
        }
    }
    let pieces: Vec<(i64, i64, usize)> = coverage.pieces().collect();
    let base = pieces.first()?.0;
    let top = pieces.last()?.1;
    let values = i128::from(top) - i128::from(base) + 1;
    if values >= MAX_SLOTS as i128 {
        return None;
    }
    let values = values as usize;
    let written: usize = pieces
        .iter()
        .map(|(lo, hi, _)| (hi - lo) as usize + 1)
        .sum();
    if written * 4 < values {
        return None;
    }
    // Without a catch-all only a `bool` match covering both values is exhaustive; its extra
    // slot is never taken (nor are the other values' slots of a known argument).
    let rest_lane = match catch_all {
        Some(_) => lanes.len() - 1,
        None if is_bool && written == values => 0,
        None => return None,
    };
    let (base, slots, clamp) = match known {
        Some(k) if base >= 0 && top <= k && (k as usize) < MAX_SLOTS => (0, k as usize + 1, false),
        _ => (base, values + 1, true),
    };
    if written * 4 < slots {
        return None;
    }
    let mut lane_of_slot = vec![rest_lane; slots];
    for (lo, hi, lane) in pieces {
        for v in lo..=hi {
            lane_of_slot[(v - base) as usize] = lane;
        }
    }

    // Every lane's body against the first one's: equal up to integer literals.
    let (first_parts, first_value) = (bodies[0].assigns, bodies[0].value);
    if first_parts.iter().any(|(_, e)| e.ty() == Type::Str) {
        return None;
    }
    let mut lane_literals: Vec<Vec<i64>> = Vec::with_capacity(bodies.len());
    let mut lane_sites: Vec<Vec<ErrorSite>> = Vec::with_capacity(bodies.len());
    let mut first_sites: Vec<&ErrorSite> = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let (parts, value) = (body.assigns, body.value);
        if value != first_value || parts.len() != first_parts.len() {
            return None;
        }
        let mut walk = Walk::default();
        for ((l1, e1), (l2, e2)) in first_parts.iter().zip(parts) {
            if l1 != l2 || !walk.same(e1, e2) {
                return None;
            }
        }
        if i == 0 {
            first_sites = walk.first_sites.clone();
        }
        lane_literals.push(walk.literals);
        lane_sites.push(walk.sites.into_iter().cloned().collect());
    }
    let mut site_index = HashMap::new();
    for (k, site) in first_sites.iter().enumerate() {
        if site_index
            .insert((site.span, site.event.clone()), k)
            .is_some()
        {
            // Two sites of one body at the same place: a failure could not tell them apart.
            return None;
        }
    }
    let literal_count = lane_literals[0].len();
    let mut literal_tables = vec![None; literal_count];
    let mut tables: Vec<Vec<i64>> = Vec::new();
    for (j, slot) in literal_tables.iter_mut().enumerate() {
        if lane_literals.iter().all(|l| l[j] == lane_literals[0][j]) {
            continue;
        }
        *slot = Some(tables.len());
        tables.push(
            lane_of_slot
                .iter()
                .map(|&lane| lane_literals[lane][j])
                .collect(),
        );
    }
    // A lane table for the failing paths counts too, and each table's address cell.
    let bytes = bytes_of(tables.len(), slots);
    if tables.is_empty() || tables.len() > MAX_TABLES || table_bytes + bytes > MAX_FLOW_TABLE_BYTES
    {
        return None;
    }
    Some(Plan {
        base,
        slots,
        clamp,
        lane_of_slot,
        body: bodies[0],
        literal_tables,
        tables,
        site_index,
        lane_sites,
    })
}

impl Plan<'_> {
    /// Bytes of the tables the flow keeps for this match (values and lanes).
    pub fn table_bytes(&self) -> usize {
        bytes_of(self.tables.len(), self.slots)
    }
}

/// Bytes of `tables` tables of `slots` slots, their lane table and their address cells.
fn bytes_of(tables: usize, slots: usize) -> usize {
    (tables + 1) * slots * 8 + tables * 8
}

/// A simultaneous walk of two expressions, in the order the JIT lowers them.
#[derive(Default)]
struct Walk<'a> {
    /// The second expression's integer literals.
    literals: Vec<i64>,
    /// The first expression's error sites and the second's, paired.
    first_sites: Vec<&'a ErrorSite>,
    sites: Vec<&'a ErrorSite>,
}

impl<'a> Walk<'a> {
    fn site(&mut self, a: &'a ErrorSite, b: &'a ErrorSite) {
        self.first_sites.push(a);
        self.sites.push(b);
    }

    fn same(&mut self, a: &'a Expr, b: &'a Expr) -> bool {
        match (a, b) {
            (Expr::Int(_), Expr::Int(y)) => {
                self.literals.push(*y);
                true
            }
            (Expr::Float(x), Expr::Float(y)) => x.to_bits() == y.to_bits(),
            (Expr::Bool(x), Expr::Bool(y)) => x == y,
            (Expr::Local(x, tx), Expr::Local(y, ty)) => x == y && tx == ty,
            (Expr::NegInt(x, sx), Expr::NegInt(y, sy))
            | (Expr::FloatToInt(x, sx), Expr::FloatToInt(y, sy)) => {
                self.site(sx, sy);
                self.same(x, y)
            }
            (Expr::NegFloat(x), Expr::NegFloat(y))
            | (Expr::Not(x), Expr::Not(y))
            | (Expr::IntToFloat(x), Expr::IntToFloat(y)) => self.same(x, y),
            (Expr::IntArith(ox, ax, bx, sx), Expr::IntArith(oy, ay, by, sy)) => {
                self.site(sx, sy);
                ox == oy && self.same(ax, ay) && self.same(bx, by)
            }
            (Expr::FloatArith(ox, ax, bx), Expr::FloatArith(oy, ay, by)) => {
                ox == oy && self.same(ax, ay) && self.same(bx, by)
            }
            (Expr::IntCmp(ox, ax, bx), Expr::IntCmp(oy, ay, by))
            | (Expr::FloatCmp(ox, ax, bx), Expr::FloatCmp(oy, ay, by))
            | (Expr::BoolCmp(ox, ax, bx), Expr::BoolCmp(oy, ay, by)) => {
                ox == oy && self.same(ax, ay) && self.same(bx, by)
            }
            // Strings, short-circuits and `if` expressions are lowered as jumps: not tabled.
            _ => false,
        }
    }
}
