//! Lowering the typed IR to Cranelift IR over the flow-state layout.
//!
//! * Every local is a Cranelift variable (two for a `str`: pointer and length), so loops keep
//!   their values in registers. The flow state is written where something outside the function
//!   reads it: the payload of the final value, and `str` arguments passed by address. Host
//!   replies are written into the flow state by the shim and loaded back into variables.
//! * Builtins are control flow: `for` and `while` are native loops, `if` a branch, `capture`
//!   variables; subflows are inlined (the IR already is); branch selection after a host call is a
//!   `switch` on the returned branch index.
//! * Fuel, iteration count, last event and per-loop counters live in variables and are written
//!   back to the run state at the single exit block.
//! * Nothing is called by symbol: host shims and runtime helpers are pointer constants.

use super::runtime::{
    self, NativeData, NativePart, TrapSite, STATUS_ERROR, STATUS_EXHAUSTED, STATUS_HOST, STATUS_OK,
};
use crate::host::{
    Implementation, Registry, ShimArg, StdEvent, TraceLevel, TraceMarker, SHIM_FAILED,
};
use crate::ir::*;
use crate::layout::Layout;
use crate::outcome::{ErrorCode, Limit};
use crate::span::Span;
use crate::state::RunState;
use crate::types::Type;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, Block, Function, InstBuilder, MemFlagsData, Signature, StackSlotData,
    StackSlotKind, UserFuncName, Value,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Switch, Variable};
use std::collections::{HashMap, HashSet};
use std::mem::offset_of;
use std::sync::Arc;

const I64: types::Type = types::I64;
const I32: types::Type = types::I32;
const F64: types::Type = types::F64;

/// A `match` piece of fewer values than this becomes one jump-table entry per value.
const MATCH_RANGE_AS_ENTRIES: u128 = 16;
/// At most this many jump-table entries per `match` segment (wider ranges beyond it become
/// compares).
const MATCH_MAX_TABLE_ENTRIES: usize = 4096;

/// A lowered flow: its functions (the entry first, then the regions it calls through
/// `NativeData::region_entries`, in index order) and the data its code refers to.
pub struct Lowered {
    pub functions: Vec<Function>,
    pub data: Box<NativeData>,
    /// The loops the entry function can continue an interpreted run at.
    pub osr_loops: Vec<u32>,
}

/// A part of a large flow compiled as a function of its own (see [`Lower::call_region`]).
#[derive(Clone, Copy)]
enum Region<'a> {
    /// A run of top-level flows.
    Flows(&'a [Step]),
    /// The body of a subflow call: it returns `REGION_BRANCH + ` the result branch it ended
    /// with, its result locals written to the flow state.
    Body(&'a SubflowCall),
}

/// What a region returns, past the statuses, for the result branch of a subflow body.
const REGION_BRANCH: u32 = 16;

/// A scalar (int, bool as 0/1, float) or a string (pointer, length).
#[derive(Clone, Copy)]
enum Val {
    Scalar(Value),
    Str(Value, Value),
}

/// Where a step's value goes.
#[derive(Clone)]
enum SinkKind<'s> {
    /// The value is discarded: continue at this block (loop bodies, `as` steps).
    Jump(Block),
    /// The value of a top-level flow: write its payload to the flow state, then continue.
    TopLevel(Block),
    /// The end of a subflow body compiled as a region: map the value to a branch, copy its
    /// payload into the flow state, return the branch.
    RegionExit {
        exits: &'s [Exit],
        name: &'s Arc<str>,
        span: Span,
    },
    /// The end of an inlined subflow: map the value to a branch, copy its payload, continue at
    /// that branch's block.
    Exit {
        exits: &'s [Exit],
        blocks: Vec<Block>,
        name: &'s Arc<str>,
        span: Span,
        /// Per branch: the value the caller's continuation ends with at once, when it does
        /// nothing else (`| done |> _`, untraced); an exit to that branch then ends there, in
        /// `outer`, without a block of its own.
        direct: Vec<Option<ValueId>>,
        outer: Box<Sink<'s>>,
    },
}

#[derive(Clone)]
struct Sink<'s> {
    kind: SinkKind<'s>,
    /// Distinguishes sinks, so that an arm shared by several branches is lowered once per sink.
    id: u32,
}

/// Lowers `program` to functions `extern "C" fn(frame: *mut u64, state: *mut RunState) -> u32`:
/// the entry, and, for a flow of more than `split` steps, regions of about that many steps each
/// (Cranelift's passes cost more than linearly in the size of one function). `data` must be
/// boxed before the call: generated code embeds its address. The entry is built in `entry`,
/// cleared first (one of an earlier compile, so that its allocations are reused).
#[allow(clippy::too_many_arguments)]
pub fn lower(
    program: &Program,
    layout: &Layout,
    registry: &Registry,
    call_conv: CallConv,
    context: &mut FunctionBuilderContext,
    mut entry: Function,
    osr: bool,
    split: usize,
) -> Result<Lowered, String> {
    let mut data = Box::new(NativeData::default());
    let frontend = cranelift_codegen::isa::TargetFrontendConfig {
        default_call_conv: call_conv,
        pointer_width: target_lexicon::PointerWidth::U64,
        page_size_align_log2: 12,
    };
    // A cleared function of an earlier compile keeps its maps' capacity: a small flow's
    // lowering then grows none of them from empty.
    entry.clear();
    entry.name = UserFuncName::user(0, 0);
    entry.signature = entry_signature(call_conv);
    let mut functions = Vec::new();
    let osr_loops;
    // Once per compile, for every function: a walk of the whole program per region made the
    // regions of a large flow cost its size each (quadratic: a 250-deep subflow chain called 40
    // times, 20,000 steps, took 5 s to lower).
    let read = read_locals(program);
    {
        let builder = FunctionBuilder::new(&mut entry, context);
        let shared = Shared {
            program,
            layout,
            registry,
            call_conv,
            split,
            read: &read,
        };
        let mut main = Lower::new(shared, builder, &mut data, osr, Vec::new());
        let dispatch = main.flows()?;
        // The regions, before the entry's dispatch: it routes to the loops they have entries
        // for. Lowering one region may add more (its large subflow bodies).
        let mut regions = std::mem::take(&mut main.regions);
        let mut region_loops: Vec<Vec<u32>> = Vec::new();
        let mut region_context = FunctionBuilderContext::new();
        let mut k = 0;
        while k < regions.len() {
            let region = regions[k];
            let mut function = Function::with_name_signature(
                UserFuncName::user(0, k as u32 + 1),
                entry_signature(call_conv),
            );
            {
                let builder = FunctionBuilder::new(&mut function, &mut region_context);
                // Only runs of top-level flows, which the entry calls itself, get entries.
                let region_osr = osr && matches!(region, Region::Flows(_));
                let mut lower = Lower::new(shared, builder, &mut *main.data, region_osr, regions);
                lower.region(region)?;
                region_loops.push(std::mem::take(&mut lower.osr_loops));
                regions = std::mem::take(&mut lower.regions);
                lower.b.seal_all_blocks();
                lower.b.finalize(frontend);
            }
            functions.push(function);
            k += 1;
        }
        main.finish_entry(dispatch, &region_loops);
        let mut loops = std::mem::take(&mut main.osr_loops);
        for (region, _) in &main.region_calls {
            loops.extend(&region_loops[*region]);
        }
        loops.sort_unstable();
        osr_loops = loops;
        main.b.seal_all_blocks();
        main.b.finalize(frontend);
    }
    functions.insert(0, entry);
    Ok(Lowered {
        functions,
        data,
        osr_loops,
    })
}

fn entry_signature(call_conv: CallConv) -> Signature {
    let mut signature = Signature::new(call_conv);
    signature.params.push(AbiParam::new(I64));
    signature.params.push(AbiParam::new(I64));
    signature.returns.push(AbiParam::new(I32));
    signature
}

/// Steps in `step` and below, counted up to `limit` (then `limit + 1`).
/// The most fields one step of `flows` assigns (an update, a payload, an accumulator's
/// initial value, a call's arguments): what [`CompileBudget::max_step_width`] bounds.
pub(super) fn widest_step(flows: &[Step]) -> usize {
    fn arms(a: &Arms, widest: &mut usize) {
        for arm in &a.arms {
            if let Some(s) = &arm.step {
                step(s, widest);
            }
        }
    }
    fn step(s: &Step, widest: &mut usize) {
        let width = match s {
            Step::Invoke(s) => {
                arms(&s.arms, widest);
                match &s.args {
                    Arguments::Inputs(inputs) => inputs.len(),
                    // A template's holes are each a call of their own: no SSA cost squared.
                    Arguments::Template(_) => 0,
                }
            }
            Step::Call(s) => {
                step(&s.body, widest);
                arms(&s.arms, widest);
                0
            }
            Step::For(s) => {
                arms(&s.arms, widest);
                0
            }
            Step::If(s) => {
                arms(&s.arms, widest);
                0
            }
            Step::While(s) => {
                arms(&s.arms, widest);
                0
            }
            Step::Capture(s) => {
                arms(&s.arms, widest);
                s.init.len()
            }
            Step::Match(s) => {
                for arm in &s.arms {
                    if let Some(s) = &arm.arm.step {
                        step(s, widest);
                    }
                }
                0
            }
            Step::Update(s) => s.assigns.len(),
            Step::Construct(s) => s.fields.len(),
            Step::Yield(_) => 0,
        };
        *widest = (*widest).max(width);
    }
    let mut widest = 0;
    for s in flows {
        step(s, &mut widest);
    }
    widest
}

fn steps_within(step: &Step, limit: usize) -> usize {
    fn arms(a: &Arms, n: &mut usize, limit: usize) {
        for arm in &a.arms {
            if *n > limit {
                return;
            }
            if let Some(s) = &arm.step {
                count(s, n, limit);
            }
        }
    }
    fn count(s: &Step, n: &mut usize, limit: usize) {
        *n += 1;
        if *n > limit {
            return;
        }
        match s {
            Step::Invoke(s) => arms(&s.arms, n, limit),
            Step::Call(s) => {
                count(&s.body, n, limit);
                arms(&s.arms, n, limit);
            }
            Step::For(s) => arms(&s.arms, n, limit),
            Step::If(s) => arms(&s.arms, n, limit),
            Step::While(s) => arms(&s.arms, n, limit),
            Step::Capture(s) => arms(&s.arms, n, limit),
            Step::Match(s) => {
                for arm in &s.arms {
                    // Each pattern is a step of its own (as the checker counts them).
                    *n += arm.patterns.len();
                    if *n > limit {
                        return;
                    }
                    if let Some(s) = &arm.arm.step {
                        count(s, n, limit);
                    }
                }
            }
            Step::Update(_) | Step::Construct(_) | Step::Yield(_) => {}
        }
    }
    let mut n = 0;
    count(step, &mut n, limit);
    n.min(limit + 1)
}

struct Lower<'a, 'f> {
    program: &'a Program,
    layout: &'a Layout,
    registry: &'a Registry,
    call_conv: CallConv,
    b: FunctionBuilder<'f>,
    data: &'f mut NativeData,
    frame: Value,
    state: Value,
    /// Per local: its variables (the second for a `str`'s length).
    vars: Vec<(Variable, Option<Variable>)>,
    /// The value of each local read or set in the block `known_in` (and the list of those
    /// known), so that a local read again there, or in the block after a trap test (which
    /// only that block precedes), is not looked up through Cranelift's SSA builder again: a
    /// lookup walks back block by block, and an update of n fields with an overflow test each
    /// walked n² blocks (7,000 fields: 880 MB and 1.1 s to compile).
    known: Vec<Option<Val>>,
    known_locals: Vec<LocalId>,
    known_in: Option<Block>,
    /// Fuel left before the limit: `fuel_limit - fuel_used`.
    room: Variable,
    /// Loop iterations allowed before the next slow path (limit check, interrupt, deadline).
    budget: Variable,
    /// Locals something reads (others are never loaded back from the flow state).
    read: &'a [bool],
    exit: Block,
    /// Leaves with a limit computed at run time (see [`Lower::stop_block`]).
    stop: Option<Block>,
    /// Whether loops get entries for on-stack replacement.
    osr: bool,
    /// Arms already lowered into a block of their own, per (arm, sink).
    arm_blocks: HashMap<(usize, u32), Block>,
    next_sink: u32,
    /// The loops around the code being lowered, innermost last.
    loops: Vec<OpenLoop>,
    /// Where a run can enter at each loop's head (on-stack replacement), by loop index.
    osr_targets: HashMap<u32, OsrTarget>,
    /// Counter, end and chunk end of the `for` loops, by nesting depth (see [`Lower::loop_vars`]).
    loop_vars: Vec<[Variable; 4]>,
    /// Steps above which a part of the flow becomes a region of its own.
    split: usize,
    /// Every region of the flow so far (region `k` is function `k + 1`).
    regions: Vec<Region<'a>>,
    /// The loops this function registered entries for.
    osr_loops: Vec<u32>,
    /// The runs of top-level flows the entry calls, and the block of each call (an entry at a
    /// loop of the region jumps there).
    region_calls: Vec<(usize, Block)>,
    /// The variables of each word of the flow state (int class, float class): what an entry at
    /// a loop head reloads.
    word_vars: Vec<[Option<Variable>; 2]>,
    /// Set while the shared body of a `match` lowered as a table lookup is lowered.
    lane: Option<Lane>,
    /// The tables of each `match` lowered as a lookup (cells of the value tables, lane table),
    /// by the step and its argument's known bound: a body lowered twice (an unrolled loop)
    /// shares them.
    lookup_tables: HashMap<LookupKey, (Vec<i64>, i64)>,
    /// Values known to be `>= 0`: indexes of innermost `for` loops that start at a constant
    /// `>= 0` (an index only grows).
    non_negative: HashSet<Value>,
    /// The float variables of the accumulators of the captures whose `as` step is being
    /// lowered, innermost last (see [`Lower::ensure_budget`]), and the stack slot they are saved
    /// in around a refill.
    live_floats: Vec<Variable>,
    float_slot: Option<cranelift_codegen::ir::StackSlot>,
}

/// A `for` body of more blocks than this counts its chunk down (see
/// [`Lower::innermost_for_loop`]); one of fewer compares its counter with the chunk's end, one
/// instruction fewer (callgrind, sum-fold, a body of 2 blocks: 8.2 against 8.8 an iteration;
/// str-machine, of 7 or more: 34.4 against 30.1 counted down).
const COUNTED_DOWN_BLOCKS: usize = 4;

/// At most this many float accumulators are saved around a refill (the innermost: x86-64 has 16
/// float registers).
const SAVED_FLOATS: usize = 16;

/// A `match` lowered as a table lookup and its argument's known bound (see `Lower::mask_of`).
type LookupKey = (*const MatchStep, Option<i64>);

/// The body of a `match` lowered as a table lookup (see [`super::lookup`]), being lowered: its
/// integer literals that differ between arms are loads from tables indexed by `slot`, and its
/// failures report the span of the arm that took the value.
struct Lane {
    /// The matched value's slot (an `i64`).
    slot: Value,
    /// The address of the cell holding the address of each table of literals.
    tables: Vec<i64>,
    /// Per integer literal of the body, in lowering order: its table, if it has one.
    literal_tables: Vec<Option<usize>>,
    /// The literals lowered so far.
    cursor: usize,
    /// The address of the table of each slot's lane.
    lane_table: i64,
    site_index: HashMap<(Span, Option<Arc<str>>), usize>,
    lane_sites: Vec<Vec<ErrorSite>>,
    /// Trap sites that are the first of one per lane (the lane's site is this plus the lane).
    bases: HashSet<u32>,
}

/// A loop being lowered, as an entry at an inner loop's head must rebuild it.
#[derive(Clone, Copy)]
enum OpenLoop {
    /// A `for`: its counter and end are variables, rebuilt from its index and bound locals.
    For {
        counter: Variable,
        end: Variable,
        index: LocalId,
        bound: LocalId,
    },
    While,
}

struct OsrTarget {
    head: Block,
    /// The loop itself, and the loops around it.
    this: OpenLoop,
    around: Vec<OpenLoop>,
}

fn state_offset(field: usize) -> i32 {
    field as i32
}

/// What every function of one flow is lowered from.
#[derive(Clone, Copy)]
struct Shared<'a> {
    program: &'a Program,
    layout: &'a Layout,
    registry: &'a Registry,
    call_conv: CallConv,
    split: usize,
    /// Which locals are read ([`read_locals`]).
    read: &'a [bool],
}

impl<'a, 'f> Lower<'a, 'f> {
    fn new(
        shared: Shared<'a>,
        mut b: FunctionBuilder<'f>,
        data: &'f mut NativeData,
        osr: bool,
        regions: Vec<Region<'a>>,
    ) -> Lower<'a, 'f> {
        let Shared {
            program,
            layout,
            registry,
            call_conv,
            split,
            read,
        } = shared;
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let frame = b.block_params(entry)[0];
        let state = b.block_params(entry)[1];
        // One variable per word of the flow state (and per class: int or float), not per local:
        // locals that share a word (the layout's siblings) are never live at once, and
        // cranelift-frontend keeps a map over all blocks for every variable, so a variable per
        // local would make memory grow with locals x blocks.
        let mut by_word: Vec<[Option<Variable>; 2]> = vec![[None; 2]; layout.bytes() / 8 + 1];
        let mut word_var = |b: &mut FunctionBuilder, word: u32, float: bool| {
            *by_word[word as usize][usize::from(float)]
                .get_or_insert_with(|| b.declare_var(if float { F64 } else { I64 }))
        };
        let vars = (0..program.locals.len())
            .map(|k| {
                let slot = layout.slot(LocalId(k as u32));
                match slot.ty {
                    Type::Str => (
                        word_var(&mut b, slot.offset, false),
                        Some(word_var(&mut b, slot.offset + 1, false)),
                    ),
                    Type::Float => (word_var(&mut b, slot.offset, true), None),
                    _ => (word_var(&mut b, slot.offset, false), None),
                }
            })
            .collect();
        let word_vars = by_word;
        let flags = MemFlagsData::trusted();
        let load = |b: &mut FunctionBuilder, ty, field: usize| {
            b.ins().load(ty, flags, state, state_offset(field))
        };
        // Fuel is tracked as the room left; the limit itself is read again only at the exit.
        let fuel_limit = load(&mut b, I64, offset_of!(RunState, fuel_limit));
        let room = b.declare_var(I64);
        let used = load(&mut b, I64, offset_of!(RunState, fuel_used));
        let value = b.ins().isub(fuel_limit, used);
        b.def_var(room, value);
        // No budget yet: the first iteration takes the slow path, which grants one.
        let budget = b.declare_var(I64);
        let zero = b.ins().iconst(I64, 0);
        b.def_var(budget, zero);
        let exit = b.create_block();
        b.append_block_param(exit, I32);
        let mut lower = Lower {
            program,
            layout,
            registry,
            call_conv,
            b,
            data,
            frame,
            state,
            known: vec![None; program.locals.len()],
            known_locals: Vec::new(),
            known_in: None,
            vars,
            room,
            budget,
            read,
            exit,
            stop: None,
            osr,
            arm_blocks: HashMap::new(),
            next_sink: 0,
            loops: Vec::new(),
            osr_targets: HashMap::new(),
            loop_vars: Vec::new(),
            split,
            regions,
            osr_loops: Vec::new(),
            region_calls: Vec::new(),
            word_vars,
            lane: None,
            lookup_tables: HashMap::new(),
            non_negative: HashSet::new(),
            live_floats: Vec::new(),
            float_slot: None,
        };
        // Flow inputs are written by the caller: read them once.
        for input in &program.inputs {
            lower.load_local(input.local);
        }
        lower
    }

    fn sink(&mut self, kind: SinkKind<'a>) -> Sink<'a> {
        self.next_sink += 1;
        Sink {
            kind,
            id: self.next_sink,
        }
    }

    /// `state.osr_entry` is 0 for a run from the beginning, `1 + k` to continue an interpreted
    /// run at the head of loop `k`: the function starts by testing it. Returns the dispatch
    /// block and the value read, for [`Lower::osr_dispatch`].
    fn osr_test(&mut self) -> (Block, Value) {
        let normal = self.b.create_block();
        let dispatch = self.b.create_block();
        let entry = self.state_load(I32, offset_of!(RunState, osr_entry));
        self.b.ins().brif(entry, dispatch, &[], normal, &[]);
        self.b.switch_to_block(normal);
        (dispatch, entry)
    }

    /// The entry function's flows (or the calls of the regions they are split into); the
    /// dispatch and the exits come after the regions, in [`Lower::finish_entry`].
    fn flows(&mut self) -> Result<(Block, Value), String> {
        let (dispatch, entry) = self.osr_test();
        let flows = &self.program.flows;
        if self.program.step_count <= self.split {
            self.top_level(flows)?;
        } else {
            // Runs of top-level flows of about `split` steps, each a region of its own.
            let mut start = 0;
            while start < flows.len() {
                let mut end = start;
                let mut steps = 0;
                while end < flows.len() && (end == start || steps < self.split) {
                    steps += steps_within(&flows[end], self.split);
                    end += 1;
                }
                let index = self.regions.len();
                self.regions.push(Region::Flows(&flows[start..end]));
                // An entry at a loop of the region jumps here (the region takes it from there).
                let call = self.b.create_block();
                self.b.ins().jump(call, &[]);
                self.b.switch_to_block(call);
                self.region_calls.push((index, call));
                let status = self.call_region(index);
                let next = self.b.create_block();
                let failed = self.b.create_block();
                self.b.set_cold_block(failed);
                let ok = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::Equal, status, i64::from(STATUS_OK));
                self.b.ins().brif(ok, next, &[], failed, &[]);
                self.b.switch_to_block(failed);
                self.b.ins().jump(self.exit, &[status.into()]);
                self.b.switch_to_block(next);
                start = end;
            }
        }
        let ok = self.b.ins().iconst(I32, i64::from(STATUS_OK));
        self.b.ins().jump(self.exit, &[ok.into()]);
        Ok((dispatch, entry))
    }

    /// Ends the entry function: its dispatch (its own loops, and the calls of the regions that
    /// hold the others: `region_loops[k]` are region `k`'s), the stop block and the exit.
    fn finish_entry(&mut self, (dispatch, entry): (Block, Value), region_loops: &[Vec<u32>]) {
        let routes: Vec<(u32, Block)> = self
            .region_calls
            .iter()
            .flat_map(|&(region, call)| region_loops[region].iter().map(move |&k| (k, call)))
            .collect();
        self.osr_dispatch(dispatch, entry, &routes, false);
        self.fill_stop_block();
        self.exit_block();
    }

    /// Top-level flows one after another, each value written to the flow state.
    fn top_level(&mut self, flows: &'a [Step]) -> Result<(), String> {
        for flow in flows {
            let next = self.b.create_block();
            let sink = self.sink(SinkKind::TopLevel(next));
            self.step(flow, &sink)?;
            self.b.switch_to_block(next);
        }
        Ok(())
    }

    /// The function of a region: its flows, or a subflow body that returns its branch.
    fn region(&mut self, region: Region<'a>) -> Result<(), String> {
        let mut dispatch = None;
        match region {
            Region::Flows(flows) => {
                if self.osr {
                    dispatch = Some(self.osr_test());
                }
                self.top_level(flows)?;
            }
            Region::Body(s) => {
                // The caller wrote the subflow's inputs to the flow state.
                for (local, _) in &s.inputs {
                    self.load_local(*local);
                }
                let sink = self.sink(SinkKind::RegionExit {
                    exits: &s.exits,
                    name: &s.name,
                    span: s.span,
                });
                self.step(&s.body, &sink)?;
                // Every path of a body ends at its sink: what follows is unreachable.
                let after = self.b.create_block();
                self.b.switch_to_block(after);
            }
        }
        let ok = self.b.ins().iconst(I32, i64::from(STATUS_OK));
        self.b.ins().jump(self.exit, &[ok.into()]);
        if let Some((block, entry)) = dispatch {
            // The entry read `osr_entry` and called this region for it: clear it, so that the
            // regions called after this one start from their beginning.
            self.osr_dispatch(block, entry, &[], true);
        }
        self.fill_stop_block();
        self.exit_block();
        Ok(())
    }

    /// Calls region `index` (through the table of region entries, filled once the code is
    /// final). The run state's counters are written before (the region reads them) and read
    /// back after; returns the region's status.
    fn call_region(&mut self, index: usize) -> Value {
        self.write_back_counters();
        let data = self.address(&*self.data as *const NativeData as *const u8);
        let flags = MemFlagsData::trusted();
        let table = self.b.ins().load(
            I64,
            flags,
            data,
            offset_of!(NativeData, region_entries) as i32,
        );
        let entry = self.b.ins().load(I64, flags, table, (index * 8) as i32);
        let sig = self.b.import_signature(entry_signature(self.call_conv));
        let call = self
            .b
            .ins()
            .call_indirect(sig, entry, &[self.frame, self.state]);
        let status = self.b.inst_results(call)[0];
        self.read_back_counters();
        status
    }

    /// Writes fuel and the iteration count to the run state, as at the exit; the budget left is
    /// then zero (the count is the horizon), so the next iteration asks for a new one.
    fn write_back_counters(&mut self) {
        self.store_counters();
        let zero = self.b.ins().iconst(I64, 0);
        self.b.def_var(self.budget, zero);
    }

    /// Fuel used and the iteration count, from the variables to the run state. While native
    /// code runs, `RunState::iterations` holds the count at which the budget runs out (the slow
    /// path moves it); the count now is that minus the budget left.
    fn store_counters(&mut self) {
        let room = self.b.use_var(self.room);
        let limit = self.state_load(I64, offset_of!(RunState, fuel_limit));
        let fuel = self.b.ins().isub(limit, room);
        self.state_store(fuel, offset_of!(RunState, fuel_used));
        let horizon = self.state_load(I64, offset_of!(RunState, iterations));
        let budget = self.b.use_var(self.budget);
        let iterations = self.b.ins().isub(horizon, budget);
        self.state_store(iterations, offset_of!(RunState, iterations));
    }

    /// After a region: fuel room from what it used (the iteration count is in the run state,
    /// with no budget granted).
    fn read_back_counters(&mut self) {
        let limit = self.state_load(I64, offset_of!(RunState, fuel_limit));
        let used = self.state_load(I64, offset_of!(RunState, fuel_used));
        let room = self.b.ins().isub(limit, used);
        self.b.def_var(self.room, room);
    }

    /// Enters at a loop head with the flow state as the interpreter left it: every local is read
    /// back, every enclosing `for` resumes its current iteration, and the loop itself its next.
    /// `routes` are loops of regions: their entry jumps to the region's call. With `clear`,
    /// the entry zeroes `osr_entry` first.
    fn osr_dispatch(
        &mut self,
        dispatch: Block,
        entry: Value,
        routes: &[(u32, Block)],
        clear: bool,
    ) {
        self.b.switch_to_block(dispatch);
        if clear {
            let zero = self.b.ins().iconst(I32, 0);
            self.state_store(zero, offset_of!(RunState, osr_entry));
        }
        let mut targets: Vec<(u32, OsrTarget)> = self.osr_targets.drain().collect();
        targets.sort_by_key(|(k, _)| *k);
        let blocks: Vec<Block> = targets.iter().map(|_| self.b.create_block()).collect();
        let mut switch = Switch::new();
        for ((k, _), &block) in targets.iter().zip(&blocks) {
            switch.set_entry(u128::from(k + 1), block);
        }
        for &(k, call) in routes {
            switch.set_entry(u128::from(k + 1), call);
        }
        let unknown = self.b.create_block();
        switch.emit(&mut self.b, entry, unknown);
        self.b.switch_to_block(unknown);
        let site = self.trap_site(
            ErrorCode::HostError,
            "no loop to continue at in native code".into(),
            None,
            Span::default(),
        );
        self.fail(site);
        for ((_, target), block) in targets.into_iter().zip(blocks) {
            self.b.switch_to_block(block);
            // Every word of the flow state into its variables (a local's variables are its
            // words'): the state is complete at a loop head.
            let flags = MemFlagsData::trusted();
            for word in 0..self.word_vars.len() {
                let [int, float] = self.word_vars[word];
                let offset = (word * 8) as i32;
                if let Some(var) = int {
                    let v = self.b.ins().load(I64, flags, self.frame, offset);
                    self.b.def_var(var, v);
                }
                if let Some(var) = float {
                    let v = self.b.ins().load(F64, flags, self.frame, offset);
                    self.b.def_var(var, v);
                }
            }
            for open in &target.around {
                self.resume_loop(*open, 0);
            }
            self.resume_loop(target.this, 1);
            self.b.ins().jump(target.head, &[]);
        }
    }

    /// Sets a `for`'s counter to its index local plus `step`, and its end to its bound local.
    fn resume_loop(&mut self, open: OpenLoop, step: i64) {
        if let OpenLoop::For {
            counter,
            end,
            index,
            bound,
        } = open
        {
            let Val::Scalar(i) = self.get(index) else {
                unreachable!("an int local")
            };
            let i = self.b.ins().iadd_imm_s(i, step);
            self.b.def_var(counter, i);
            let Val::Scalar(e) = self.get(bound) else {
                unreachable!("an int local")
            };
            self.b.def_var(end, e);
        }
    }

    fn state_load(&mut self, ty: types::Type, field: usize) -> Value {
        self.b
            .ins()
            .load(ty, MemFlagsData::trusted(), self.state, state_offset(field))
    }

    fn state_store(&mut self, value: Value, field: usize) {
        self.b.ins().store(
            MemFlagsData::trusted(),
            value,
            self.state,
            state_offset(field),
        );
    }

    /// The single exit: write the counters back to the run state and return the status.
    fn exit_block(&mut self) {
        self.b.switch_to_block(self.exit);
        let status = self.b.block_params(self.exit)[0];
        self.store_counters();
        self.b.ins().return_(&[status]);
    }

    // ------------------------------------------------------------------ locals

    fn get(&mut self, local: LocalId) -> Val {
        if let Some(value) = self.known_value(local) {
            return value;
        }
        let (first, second) = self.vars[local.0 as usize];
        let a = self.b.use_var(first);
        let value = match second {
            Some(second) => Val::Str(a, self.b.use_var(second)),
            None => Val::Scalar(a),
        };
        self.know(local, value);
        value
    }

    /// The value of `local` known in the current block.
    fn known_value(&mut self, local: LocalId) -> Option<Val> {
        if self.known_in.is_some() && self.known_in == self.b.current_block() {
            self.known[local.0 as usize]
        } else {
            None
        }
    }

    fn know(&mut self, local: LocalId, value: Val) {
        let current = self.b.current_block();
        if self.known_in != current {
            for l in self.known_locals.drain(..) {
                self.known[l.0 as usize] = None;
            }
            self.known_in = current;
        }
        if self.known[local.0 as usize].replace(value).is_none() {
            self.known_locals.push(local);
        }
    }

    /// Switches to `next`, which only `here` precedes (the way on after a trap test, whose
    /// failing block was lowered in between): what was known of the locals in `here` is known
    /// in `next` (unless the failing block's code read or set a local: then nothing is).
    fn resume_in(&mut self, here: Block, next: Block) {
        let carried = self.known_in == Some(here);
        self.b.switch_to_block(next);
        if carried {
            self.known_in = Some(next);
        }
    }

    fn set(&mut self, local: LocalId, value: Val) {
        self.know(local, value);
        let (first, second) = self.vars[local.0 as usize];
        match (value, second) {
            (Val::Scalar(v), None) => self.b.def_var(first, v),
            (Val::Str(p, l), Some(second)) => {
                self.b.def_var(first, p);
                self.b.def_var(second, l);
            }
            _ => unreachable!("the checker keeps str and scalar locals apart"),
        }
    }

    /// Reads a local from the flow state into its variables.
    fn load_local(&mut self, local: LocalId) {
        let slot = self.layout.slot(local);
        let offset = (slot.offset * 8) as i32;
        let flags = MemFlagsData::trusted();
        let value = match slot.ty {
            Type::Str => {
                let p = self.b.ins().load(I64, flags, self.frame, offset);
                let l = self.b.ins().load(I64, flags, self.frame, offset + 8);
                Val::Str(p, l)
            }
            Type::Float => Val::Scalar(self.b.ins().load(F64, flags, self.frame, offset)),
            _ => Val::Scalar(self.b.ins().load(I64, flags, self.frame, offset)),
        };
        self.set(local, value);
    }

    /// Writes a local's variables to the flow state.
    fn store_local(&mut self, local: LocalId) {
        let offset = (self.layout.slot(local).offset * 8) as i32;
        let flags = MemFlagsData::trusted();
        match self.get(local) {
            Val::Scalar(v) => {
                self.b.ins().store(flags, v, self.frame, offset);
            }
            Val::Str(p, l) => {
                self.b.ins().store(flags, p, self.frame, offset);
                self.b.ins().store(flags, l, self.frame, offset + 8);
            }
        }
    }

    // ------------------------------------------------------------------ exits and traps

    fn jump_exit(&mut self, status: u32) {
        let status = self.b.ins().iconst(I32, i64::from(status));
        self.b.ins().jump(self.exit, &[status.into()]);
    }

    fn trap_site(
        &mut self,
        code: ErrorCode,
        message: String,
        event: Option<Arc<str>>,
        span: Span,
    ) -> u32 {
        if let Some(lane) = &mut self.lane {
            if let Some(&k) = lane.site_index.get(&(span, event.clone())) {
                // One site per lane, in lane order: the failing path adds its lane.
                let first = self.data.traps.len() as u32;
                for sites in &lane.lane_sites {
                    self.data.traps.push(TrapSite {
                        code,
                        message: message.clone(),
                        event: sites[k].event.clone(),
                        span: sites[k].span,
                    });
                }
                lane.bases.insert(first);
                return first;
            }
        }
        self.data.traps.push(TrapSite {
            code,
            message,
            event,
            span,
        });
        self.data.traps.len() as u32 - 1
    }

    /// Leaves with a run-time error at `site`.
    fn fail(&mut self, site: u32) {
        let site = match &self.lane {
            Some(lane) if lane.bases.contains(&site) => {
                // The lane of the slot the matched value took, read on this (cold) path only.
                let (slot, table) = (lane.slot, lane.lane_table);
                let lane = self.table_load(table, slot);
                let lane = self.b.ins().ireduce(I32, lane);
                self.b.ins().iadd_imm_s(lane, i64::from(site))
            }
            _ => self.b.ins().iconst(I32, i64::from(site)),
        };
        self.b.ins().store(
            MemFlagsData::trusted(),
            site,
            self.state,
            state_offset(offset_of!(RunState, trap)),
        );
        self.jump_exit(STATUS_ERROR);
    }

    /// If `condition` holds, leave with the error at `site`; else continue in a new block.
    fn fail_if(&mut self, condition: Value, site: u32) {
        let failing = self.b.create_block();
        let next = self.b.create_block();
        self.b.set_cold_block(failing);
        self.b.ins().brif(condition, failing, &[], next, &[]);
        // Both have their one predecessor: sealed now, a variable read in them is not made a
        // block parameter to be removed later (for every variable in every block: a capture
        // of 28,000 fields updated with overflow checks took 13.6 GB to compile).
        self.b.seal_block(failing);
        self.b.seal_block(next);
        let here = self.b.current_block().expect("in a block");
        self.b.switch_to_block(failing);
        self.fail(site);
        self.resume_in(here, next);
    }

    /// If `condition` holds, leave because of `limit` (through the shared stop block).
    fn exhaust_if(&mut self, condition: Value, limit: Limit) {
        let next = self.b.create_block();
        let stop = self.stop_block();
        let code = self
            .b
            .ins()
            .iconst(I32, 1 + i64::from(runtime::limit_code(limit)));
        self.b
            .ins()
            .brif(condition, stop, &[code.into()], next, &[]);
        self.b.seal_block(next);
        let here = self.b.current_block().expect("in a block");
        self.resume_in(here, next);
    }

    /// A host call or helper reported failure (`failed` nonzero): leave with its recorded error.
    fn host_fail_if(&mut self, failed: Value) {
        let failing = self.b.create_block();
        let next = self.b.create_block();
        self.b.set_cold_block(failing);
        let here = self.b.current_block().expect("in a block");
        self.b.ins().brif(failed, failing, &[], next, &[]);
        self.b.seal_block(failing);
        self.b.seal_block(next);
        self.b.switch_to_block(failing);
        self.jump_exit(STATUS_HOST);
        self.resume_in(here, next);
    }

    /// A `std.io` helper returned a status other than 0 (a panic of the output sink, or the
    /// output bound reached, recorded in the run state): leave with it.
    fn exit_unless_ok(&mut self, status: Value) {
        let failing = self.b.create_block();
        let next = self.b.create_block();
        self.b.set_cold_block(failing);
        let here = self.b.current_block().expect("in a block");
        self.b.ins().brif(status, failing, &[], next, &[]);
        self.b.seal_block(failing);
        self.b.seal_block(next);
        self.b.switch_to_block(failing);
        self.b.ins().jump(self.exit, &[status.into()]);
        self.resume_in(here, next);
    }

    // ------------------------------------------------------------------ limits

    /// Leaves if another thread triggered the interrupt or the deadline passed. The fast path
    /// is one test of (interrupt flag | epoch >= deadline epoch); the cold path asks the runtime
    /// which it is (and reads the clock), and leaves through the shared stop block.
    fn check_interrupt(&mut self) {
        let interrupt = self.state_load(I64, offset_of!(RunState, interrupt));
        let flag = self
            .b
            .ins()
            .load(types::I8, MemFlagsData::trusted(), interrupt, 0);
        let counter = self.address(crate::limits::epoch::counter() as *const _ as *const u8);
        let epoch = self.b.ins().load(I64, MemFlagsData::trusted(), counter, 0);
        let deadline = self.state_load(I64, offset_of!(RunState, deadline_epoch));
        let late = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, epoch, deadline);
        let maybe = self.b.ins().bor(late, flag);
        let ask = self.b.create_block();
        let next = self.b.create_block();
        self.b.set_cold_block(ask);
        self.b.ins().brif(maybe, ask, &[], next, &[]);
        self.b.switch_to_block(ask);
        let code = self
            .call_helper(
                runtime::helper_poll as *const u8,
                &[I64],
                Some(I32),
                &[self.state],
            )
            .expect("helper_poll returns");
        let stop = self.stop_block();
        self.b.ins().brif(code, stop, &[code.into()], next, &[]);
        self.b.switch_to_block(next);
    }

    /// The shared cold block that leaves with `1 + limit code` (its parameter); filled at the
    /// end, by [`Lower::fill_stop_block`].
    fn stop_block(&mut self) -> Block {
        if let Some(block) = self.stop {
            return block;
        }
        let block = self.b.create_block();
        self.b.set_cold_block(block);
        self.b.append_block_param(block, I32);
        self.stop = Some(block);
        block
    }

    fn fill_stop_block(&mut self) {
        let Some(block) = self.stop else { return };
        self.b.switch_to_block(block);
        let code = self.b.block_params(block)[0];
        let limit = self.b.ins().iadd_imm_s(code, -1);
        self.state_store(limit, offset_of!(RunState, trap));
        self.jump_exit(STATUS_EXHAUSTED);
    }

    /// Charges a host dispatch: fuel, then the interrupt and the deadline.
    fn charge(&mut self, cost: u64, event_code: u32) {
        self.charge_only(cost, event_code);
        self.check_interrupt();
    }

    /// Charges `cost` fuel before a dispatch (after its arguments are evaluated), as the
    /// interpreter does: a dispatch that would go over the limit is refused.
    fn charge_only(&mut self, cost: u64, event_code: u32) {
        let room = self.b.use_var(self.room);
        let over = self
            .b
            .ins()
            .icmp_imm_u(IntCC::UnsignedLessThan, room, cost as i64);
        self.exhaust_if(over, Limit::Fuel);
        let room = self.b.ins().iadd_imm_s(room, (cost as i64).wrapping_neg());
        self.b.def_var(self.room, room);
        // Written through at once rather than kept in a variable: one store per dispatch, and one
        // value fewer live across every loop and call.
        let code = self.b.ins().iconst(I32, i64::from(event_code));
        self.state_store(code, offset_of!(RunState, last_event));
    }

    /// Makes sure some budget is left: when it ran out, the slow path (a call of
    /// `runtime::helper_refill`) checks the iteration limit (exactly: a grant never exceeds what
    /// is left), the interrupt and the deadline, and grants at most `BUDGET_GRANT` more
    /// iterations.
    fn ensure_budget(&mut self) {
        let budget = self.b.use_var(self.budget);
        let spent = self.b.ins().icmp_imm_s(IntCC::Equal, budget, 0);
        let slow = self.b.create_block();
        let granted = self.b.create_block();
        let next = self.b.create_block();
        self.b.set_cold_block(slow);
        self.b.ins().brif(spent, slow, &[], next, &[]);
        self.b.switch_to_block(slow);
        // A float accumulator live across the loop is also live across this call, which
        // clobbers every float register on x86-64: the register allocator then kept it in a
        // stack slot for the whole loop (a store and a reload per iteration, on the sum's
        // dependency chain). Saved and restored here, it is not live across the call.
        let saved: Vec<Variable> = self
            .live_floats
            .iter()
            .rev()
            .take(SAVED_FLOATS)
            .copied()
            .collect();
        let slot = match (saved.is_empty(), self.float_slot) {
            (true, _) => None,
            (false, Some(slot)) => Some(slot),
            (false, None) => {
                // Room for as many as the program has (no more than are saved).
                let floats = self
                    .program
                    .locals
                    .iter()
                    .filter(|l| l.kind == LocalKind::AccumulatorField && l.ty == Type::Float)
                    .count()
                    .clamp(1, SAVED_FLOATS);
                let data = StackSlotData::new(StackSlotKind::ExplicitSlot, (floats * 8) as u32, 3);
                let slot = self.b.create_sized_stack_slot(data);
                self.float_slot = Some(slot);
                Some(slot)
            }
        };
        if let Some(slot) = slot {
            for (k, &var) in saved.iter().enumerate() {
                let value = self.b.use_var(var);
                self.b.ins().stack_store(I64, value, slot, (k * 8) as i32);
            }
        }
        let grant = self
            .call_helper(
                runtime::helper_refill as *const u8,
                &[I64],
                Some(I64),
                &[self.state],
            )
            .expect("helper_refill returns");
        if let Some(slot) = slot {
            for (k, &var) in saved.iter().enumerate() {
                let value = self.b.ins().stack_load(I64, F64, slot, (k * 8) as i32);
                self.b.def_var(var, value);
            }
        }
        // A negative result is minus the stop block's code.
        let stopped = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, grant, 0);
        let code = self.b.ins().ineg(grant);
        let code = self.b.ins().ireduce(I32, code);
        let stop = self.stop_block();
        self.b
            .ins()
            .brif(stopped, stop, &[code.into()], granted, &[]);
        self.b.switch_to_block(granted);
        self.b.def_var(self.budget, grant);
        self.b.ins().jump(next, &[]);
        self.b.switch_to_block(next);
    }

    /// One loop iteration: one unit of budget.
    fn tick(&mut self) {
        self.ensure_budget();
        let budget = self.b.use_var(self.budget);
        let budget = self.b.ins().iadd_imm_s(budget, -1);
        self.b.def_var(self.budget, budget);
    }

    // ------------------------------------------------------------------ calls

    fn signature(&self, params: &[types::Type], ret: Option<types::Type>) -> Signature {
        let mut signature = Signature::new(self.call_conv);
        signature
            .params
            .extend(params.iter().map(|t| AbiParam::new(*t)));
        signature.returns.extend(ret.map(AbiParam::new));
        signature
    }

    /// Calls a function at a fixed address (a runtime helper or a host shim).
    fn call_helper(
        &mut self,
        address: *const u8,
        params: &[types::Type],
        ret: Option<types::Type>,
        args: &[Value],
    ) -> Option<Value> {
        let signature = self.signature(params, ret);
        let sig = self.b.import_signature(signature);
        let callee = self.b.ins().iconst(I64, address as i64);
        let call = self.b.ins().call_indirect(sig, callee, args);
        self.b.inst_results(call).first().copied()
    }

    fn address(&mut self, pointer: *const u8) -> Value {
        self.b.ins().iconst(I64, pointer as i64)
    }

    /// A 16-byte stack slot holding a string's (pointer, length); returns its address.
    fn spill_pair(&mut self, p: Value, l: Value) -> Value {
        let slot =
            self.b
                .create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 16, 3));
        let flags = MemFlagsData::trusted();
        self.b.ins().stack_store(I64, p, slot, 0);
        self.b.ins().stack_store(I64, l, slot, 8);
        let _ = flags;
        self.b.ins().stack_addr(I64, slot, 0)
    }

    /// Formats a number or bool into a conversion buffer; returns the address of its pair.
    fn format_argument(&mut self, expr: &Expr, buffer: BufferId) -> Value {
        let ty = expr.ty();
        let bits = match self.expr(expr) {
            Val::Scalar(v) if ty == Type::Float => {
                self.b.ins().bitcast(I64, MemFlagsData::new(), v)
            }
            Val::Scalar(v) => v,
            Val::Str(..) => unreachable!("strings are not converted"),
        };
        let code = match ty {
            Type::Int => 0,
            Type::Float => 1,
            _ => 2,
        };
        if ty == Type::Int {
            // An int in `0..SMALL_INTS` (unsigned: no negative one) is its pair in the
            // process's table, with no call; others are formatted into the site's buffer.
            let small = self.b.ins().icmp_imm_u(
                IntCC::UnsignedLessThan,
                bits,
                crate::state::SMALL_INTS as i64,
            );
            let (table, call, join) = (
                self.b.create_block(),
                self.b.create_block(),
                self.b.create_block(),
            );
            let pair = self.b.append_block_param(join, I64);
            self.b.ins().brif(small, table, &[], call, &[]);
            self.b.switch_to_block(table);
            let base = self.address(crate::state::small_int_pairs().as_ptr() as *const u8);
            let offset = self.b.ins().ishl_imm_u(bits, 4);
            let at = self.b.ins().iadd(base, offset);
            self.b.ins().jump(join, &[at.into()]);
            self.b.switch_to_block(call);
            let buffer = self.b.ins().iconst(I64, i64::from(buffer.0));
            let formatted = self
                .call_helper(
                    runtime::helper_format_int as *const u8,
                    &[I64, I64, I64],
                    Some(I64),
                    &[self.state, buffer, bits],
                )
                .expect("helper_format_int returns");
            self.b.ins().jump(join, &[formatted.into()]);
            self.b.switch_to_block(join);
            return pair;
        }
        let buffer = self.b.ins().iconst(I64, i64::from(buffer.0));
        let code = self.b.ins().iconst(I64, code);
        self.call_helper(
            runtime::helper_format as *const u8,
            &[I64, I64, I64, I64],
            Some(I64),
            &[self.state, buffer, code, bits],
        )
        .expect("helper_format returns")
    }

    /// A `str` argument's address: a conversion pair, or the value spilled to a stack slot.
    fn str_argument(&mut self, argument: &Argument) -> Value {
        match argument.format_into {
            Some(buffer) => self.format_argument(&argument.expr, buffer),
            // A literal's pair is a constant of the compiled flow: nothing to store per call.
            None if matches!(argument.expr, Expr::Str(_)) => {
                let Expr::Str(text) = &argument.expr else {
                    unreachable!("matched above")
                };
                let pair = Box::new([text.as_ptr() as u64, text.len() as u64]);
                let address = &*pair as *const [u64; 2] as *const u8;
                self.data.literal_pairs.push(pair);
                self.address(address)
            }
            None => match self.expr(&argument.expr) {
                Val::Str(p, l) => self.spill_pair(p, l),
                Val::Scalar(_) => unreachable!("the checker typed this argument str"),
            },
        }
    }

    // ------------------------------------------------------------------ traces

    /// The trace line of `event` returning `value` (SPEC 13), if the program traces at `level`;
    /// nothing at all otherwise (a flow compiled without tracing has no trace code). The payload
    /// is written to the flow state first, unless it is there already (`in_frame`: a host
    /// reply, or the result of a region).
    fn trace(
        &mut self,
        level: TraceLevel,
        event: &'a str,
        marker: TraceMarker,
        value: ValueId,
        in_frame: bool,
    ) {
        if self.program.trace < level {
            return;
        }
        if !in_frame {
            for local in self.program.values[value.0 as usize].payload.locals() {
                self.store_local(local);
            }
        }
        let program = self.address(self.program as *const Program as *const u8);
        let layout = self.address(self.layout as *const Layout as *const u8);
        let label = self.address(event.as_ptr());
        let length = self.b.ins().iconst(I64, event.len() as i64);
        let code = (u64::from(marker as u32) << 32) | u64::from(value.0);
        let code = self.b.ins().iconst(I64, code as i64);
        self.call_helper(
            runtime::helper_trace as *const u8,
            &[I64; 6],
            None,
            &[self.state, program, layout, label, length, code],
        );
    }

    // ------------------------------------------------------------------ steps

    fn step(&mut self, step: &'a Step, sink: &Sink<'a>) -> Result<(), String> {
        match step {
            Step::Invoke(s) => self.invoke(s, sink),
            Step::Call(s) => self.call(s, sink),
            Step::For(s) => self.for_loop(s, sink),
            Step::If(s) => {
                let then_block = self.b.create_block();
                let else_block = self.b.create_block();
                self.branch(&s.cond, then_block, else_block);
                self.b.switch_to_block(then_block);
                self.trace(
                    TraceLevel::All,
                    "if",
                    TraceMarker::None,
                    s.first_value,
                    false,
                );
                self.select(&s.arms, 0, s.first_value, sink, "if", s.span)?;
                self.b.switch_to_block(else_block);
                let other = ValueId(s.first_value.0 + 1);
                self.trace(TraceLevel::All, "if", TraceMarker::None, other, false);
                self.select(&s.arms, 1, s.first_value, sink, "if", s.span)
            }
            Step::While(s) => self.while_loop(s, sink),
            Step::Capture(s) => {
                let values: Vec<Val> = s.init.iter().map(|e| self.expr(e)).collect();
                for ((&local, e), value) in s.fields.iter().zip(&s.init).zip(values) {
                    self.assign_accumulator(local, e, value);
                }
                match &s.yield_of {
                    Some(subflow) => self.trace(
                        TraceLevel::All,
                        subflow,
                        TraceMarker::Yield,
                        s.first_value,
                        false,
                    ),
                    None => self.trace(
                        TraceLevel::All,
                        "capture",
                        TraceMarker::None,
                        s.first_value,
                        false,
                    ),
                }
                // With nothing to do after the `as` arms (no `captured` arm, no trace line),
                // they go on where this step's own sink goes (a `yield` in a loop body).
                let nothing_after = s.arms.arms.is_empty() || s.arms.by_branch[1].is_empty();
                let traced = s.yield_of.is_none() && self.program.trace >= TraceLevel::All;
                if let (true, false, SinkKind::Jump(next)) = (nothing_after, traced, &sink.kind) {
                    let discard = self.sink(SinkKind::Jump(*next));
                    return self.select(&s.arms, 0, s.first_value, &discard, "capture", s.span);
                }
                let after = self.b.create_block();
                let discard = self.sink(SinkKind::Jump(after));
                let floats = self.live_floats.len();
                for &local in &s.fields {
                    if self.layout.slot(local).ty == Type::Float {
                        let var = self.vars[local.0 as usize].0;
                        self.live_floats.push(var);
                    }
                }
                let lowered = self.select(&s.arms, 0, s.first_value, &discard, "capture", s.span);
                self.live_floats.truncate(floats);
                lowered?;
                self.b.switch_to_block(after);
                if s.yield_of.is_none() {
                    let captured = ValueId(s.first_value.0 + 1);
                    self.trace(
                        TraceLevel::All,
                        "capture",
                        TraceMarker::None,
                        captured,
                        false,
                    );
                }
                self.select(&s.arms, 1, s.first_value, sink, "capture", s.span)
            }
            Step::Update(s) => {
                // Every local the expressions read, first, here: each expression's overflow
                // tests start a block, and a local first read n blocks on is looked up through
                // all n (an update of 7,000 fields read 25 million).
                if s.assigns.len() > 8 {
                    for (_, e) in &s.assigns {
                        e.visit_locals(&mut |local| {
                            self.get(local);
                        });
                    }
                }
                // Every expression first, then every assignment (SPEC 4.4).
                let values: Vec<Val> = s.assigns.iter().map(|(_, e)| self.expr(e)).collect();
                for ((local, e), value) in s.assigns.iter().zip(values) {
                    self.assign_accumulator(*local, e, value);
                }
                self.finish(s.value, sink);
                Ok(())
            }
            Step::Construct(s) => {
                for (local, expr) in &s.fields {
                    let value = self.expr(expr);
                    self.set(*local, value);
                }
                self.finish(s.value, sink);
                Ok(())
            }
            Step::Match(s) => self.match_step(s, sink),
            Step::Yield(value) => {
                self.finish(*value, sink);
                Ok(())
            }
        }
    }

    /// `match`: the argument into its local, then the arms as *segments* in order: a run of
    /// unguarded pattern arms is one dispatch (integers: a jump table for the dense values and a
    /// compare tree of the wide ranges; strings: a switch on the length, then inline compares),
    /// a guarded arm is a dispatch of its own whose failed guard goes on to the next segment,
    /// and the first catch-all takes what is left. First match wins, as in the interpreter.
    fn match_step(&mut self, s: &'a MatchStep, sink: &Sink<'a>) -> Result<(), String> {
        let value = match self.expr(&s.scrutinee) {
            Val::Str(p, l) if self.layout.slot(s.value).buffer != crate::layout::NO_BUFFER => {
                self.str_into_buffer(runtime::helper_copy_str as *const u8, s.value, p, l)
            }
            v => v,
        };
        self.set(s.value, value);
        if let Val::Scalar(v) = value {
            if self.lane.is_none() {
                let known = self.mask_of(v);
                let key = (s as *const MatchStep, known);
                // Tables already made for this match take no more bytes.
                let bytes = match self.lookup_tables.contains_key(&key) {
                    true => 0,
                    false => self.data.table_bytes,
                };
                if let Some(plan) = super::lookup::plan(s, bytes, known) {
                    return self.lookup_match(v, plan, key, s.matched, sink);
                }
            }
        }
        let entries: Vec<Block> = s.arms.iter().map(|_| self.b.create_block()).collect();
        let mut fail: Vec<Option<Block>> = vec![None; s.arms.len()];
        let mut k = 0;
        let mut open = true;
        while k < s.arms.len() {
            if s.arms[k].patterns.is_empty() {
                // A catch-all has no guard: it takes everything left (later ones never run).
                self.b.ins().jump(entries[k], &[]);
                open = false;
                break;
            }
            let end = if s.arms[k].arm.guard.is_some() {
                k + 1
            } else {
                (k..s.arms.len())
                    .find(|&j| s.arms[j].arm.guard.is_some() || s.arms[j].patterns.is_empty())
                    .unwrap_or(s.arms.len())
            };
            let next = self.b.create_block();
            for slot in &mut fail[k..end] {
                *slot = Some(next);
            }
            match value {
                Val::Scalar(v) => self.dispatch_ints(v, &s.arms[k..end], k, &entries, next),
                Val::Str(p, l) => self.dispatch_strs(p, l, &s.arms[k..end], k, &entries, next),
            }
            self.b.switch_to_block(next);
            k = end;
        }
        if open {
            // Unreachable once exhaustiveness was checked (as in the interpreter).
            let site = self.trap_site(
                ErrorCode::NoBranchMatch,
                "no continuation of `match` took the value".into(),
                Some(Arc::from("match")),
                s.span,
            );
            self.fail(site);
        }
        for (i, arm) in s.arms.iter().enumerate() {
            self.b.switch_to_block(entries[i]);
            if let Some(guard) = &arm.arm.guard {
                let body = self.b.create_block();
                let otherwise = fail[i].expect("a guarded arm is a segment of its own");
                self.branch(guard, body, otherwise);
                self.b.switch_to_block(body);
            }
            self.trace(
                TraceLevel::All,
                "match",
                TraceMarker::None,
                s.matched,
                false,
            );
            match &arm.arm.step {
                Some(step) => self.step(step, sink)?,
                None => self.finish(s.matched, sink),
            }
        }
        Ok(())
    }

    /// `match` as a table lookup ([`super::lookup`]): the slot of `v`, then the body every arm
    /// shares with the literals that differ loaded from tables at that slot.
    fn lookup_match(
        &mut self,
        v: Value,
        plan: super::lookup::Plan<'a>,
        key: LookupKey,
        matched: ValueId,
        sink: &Sink<'a>,
    ) -> Result<(), String> {
        // The arm taken is traced before its step, as in `match_step`.
        self.trace(TraceLevel::All, "match", TraceMarker::None, matched, false);
        let offset = if plan.base == 0 {
            v
        } else {
            self.b.ins().iadd_imm_s(v, plan.base.wrapping_neg())
        };
        let slot = if plan.clamp {
            let values = plan.slots as i64 - 1;
            let inside = self
                .b
                .ins()
                .icmp_imm_s(IntCC::UnsignedLessThan, offset, values);
            let rest = self.b.ins().iconst(I64, values);
            self.b.ins().select(inside, offset, rest)
        } else {
            offset
        };
        let (tables, lane_table) = match self.lookup_tables.get(&key) {
            Some(made) => made.clone(),
            None => {
                self.data.table_bytes += plan.table_bytes();
                let mut tables = Vec::with_capacity(plan.tables.len());
                for table in plan.tables {
                    let table: Box<[i64]> = table.into_boxed_slice();
                    // The code reads the table's address from a cell of its own: a load
                    // Cranelift may hoist out of loops (a constant address would be
                    // rematerialized at every use).
                    let cell: Box<[i64]> = Box::new([table.as_ptr() as i64]);
                    tables.push(cell.as_ptr() as i64);
                    self.data.tables.push(table);
                    self.data.tables.push(cell);
                }
                let lanes: Box<[i64]> = plan.lane_of_slot.iter().map(|&l| l as i64).collect();
                let lane_table = lanes.as_ptr() as i64;
                self.data.tables.push(lanes);
                self.lookup_tables.insert(key, (tables.clone(), lane_table));
                (tables, lane_table)
            }
        };
        self.lane = Some(Lane {
            slot,
            tables,
            literal_tables: plan.literal_tables,
            cursor: 0,
            lane_table,
            site_index: plan.site_index,
            lane_sites: plan.lane_sites,
            bases: HashSet::new(),
        });
        // As `Step::Update` lowers, with the lane set for the expressions only (the
        // continuation after the value is not the arms').
        let assigns = plan.body.assigns;
        let values: Vec<Val> = assigns.iter().map(|(_, e)| self.expr(e)).collect();
        for ((local, e), v) in assigns.iter().zip(values) {
            self.assign_accumulator(*local, e, v);
        }
        self.lane = None;
        self.finish(plan.body.value, sink);
        Ok(())
    }

    /// The literal the table lookup being lowered loads for the next integer literal, if it
    /// differs between the arms.
    fn lane_literal(&mut self) -> Option<Value> {
        let lane = self.lane.as_mut()?;
        let j = lane.cursor;
        lane.cursor += 1;
        let t = (*lane.literal_tables.get(j)?)?;
        let (cell, slot) = (lane.tables[t], lane.slot);
        let cell = self.b.ins().iconst(I64, cell);
        // The cell never changes while the code lives: the load is free to move (out of loops).
        let flags = MemFlagsData::trusted().with_readonly().with_can_move();
        let table = self.b.ins().load(I64, flags, cell, 0);
        // An addition of the loaded literal checks overflow with the flag even when the
        // table's values share a sign (`sign_of` does not know them): the load then folds into
        // an `add` that updates the accumulator in place, where the compare with the old value
        // would keep both alive and cost a move on a loop's back edge (measured on
        // match-dispatch: 0.72 -> 0.59 ns per iteration).
        let loaded = self.table_load_at(table, slot);
        Some(loaded)
    }

    /// `table[slot]` of a table of `i64`s the flow's data holds.
    fn table_load(&mut self, table: i64, slot: Value) -> Value {
        let table = self.b.ins().iconst(I64, table);
        self.table_load_at(table, slot)
    }

    /// `table[slot]` of a table of `i64`s at the address `table`.
    fn table_load_at(&mut self, table: Value, slot: Value) -> Value {
        let offset = self.b.ins().ishl_imm_s(slot, 3);
        let address = self.b.ins().iadd(table, offset);
        self.b
            .ins()
            .load(I64, MemFlagsData::trusted().with_readonly(), address, 0)
    }

    /// Jumps to `entries[first + k]` for the first arm `k` of `arms` whose int (or bool)
    /// patterns hold `v`, else to `miss`.
    fn dispatch_ints(
        &mut self,
        v: Value,
        arms: &[MatchArm],
        first: usize,
        entries: &[Block],
        miss: Block,
    ) {
        let mut coverage = crate::ir::pattern::Coverage::default();
        for (k, arm) in arms.iter().enumerate() {
            for pattern in &arm.patterns {
                let (lo, hi) = match pattern {
                    Pattern::Int { lo, hi } => (*lo, *hi),
                    Pattern::Bool(b) => (i64::from(*b), i64::from(*b)),
                    Pattern::Str(_) => unreachable!("the checker typed the patterns"),
                };
                // A value an earlier pattern covers stays the earlier arm's.
                let _ = coverage.add(lo, hi, first + k);
            }
        }
        // Narrow pieces become switch entries (a jump table where they are dense); wide ones
        // a compare tree, tried first (pieces are disjoint, so the order does not matter).
        let mut points: Vec<(i64, usize)> = Vec::new();
        let mut ranges: Vec<(i64, i64, usize)> = Vec::new();
        for (lo, hi, arm) in coverage.pieces() {
            let width = (i128::from(hi) - i128::from(lo)) as u128;
            if width < MATCH_RANGE_AS_ENTRIES && points.len() < MATCH_MAX_TABLE_ENTRIES {
                points.extend((lo..=hi).map(|p| (p, arm)));
            } else {
                ranges.push((lo, hi, arm));
            }
        }
        let table = if points.is_empty() {
            miss
        } else {
            self.b.create_block()
        };
        self.range_tree(v, &ranges, entries, table);
        if points.is_empty() {
            return;
        }
        self.b.switch_to_block(table);
        // Biased by the smallest entry, so that entries around zero are contiguous.
        let base = points.iter().map(|(p, _)| *p).min().unwrap_or(0);
        let biased = if base == 0 {
            v
        } else {
            self.b.ins().iadd_imm_s(v, base.wrapping_neg())
        };
        let mut switch = Switch::new();
        for (p, arm) in points {
            switch.set_entry(u128::from(p.wrapping_sub(base) as u64), entries[arm]);
        }
        switch.emit(&mut self.b, biased, miss);
    }

    /// A binary search over disjoint sorted `ranges`: jumps to the entry of the one holding `v`,
    /// else to `otherwise`.
    fn range_tree(
        &mut self,
        v: Value,
        ranges: &[(i64, i64, usize)],
        entries: &[Block],
        otherwise: Block,
    ) {
        if ranges.len() <= 2 {
            for &(lo, hi, arm) in ranges {
                // `lo <= v <= hi` as one unsigned compare of `v - lo`.
                let offset = self.b.ins().iadd_imm_s(v, lo.wrapping_neg());
                let width = hi.wrapping_sub(lo);
                let inside = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::UnsignedLessThanOrEqual, offset, width);
                let next = self.b.create_block();
                self.b.ins().brif(inside, entries[arm], &[], next, &[]);
                self.b.switch_to_block(next);
            }
            self.b.ins().jump(otherwise, &[]);
            return;
        }
        let mid = ranges.len() / 2;
        let (lo, hi, arm) = ranges[mid];
        let below = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, v, lo);
        let left = self.b.create_block();
        let not_below = self.b.create_block();
        self.b.ins().brif(below, left, &[], not_below, &[]);
        self.b.switch_to_block(not_below);
        let above = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, v, hi);
        let right = self.b.create_block();
        self.b.ins().brif(above, right, &[], entries[arm], &[]);
        self.b.switch_to_block(left);
        self.range_tree(v, &ranges[..mid], entries, otherwise);
        self.b.switch_to_block(right);
        self.range_tree(v, &ranges[mid + 1..], entries, otherwise);
    }

    /// Jumps to `entries[first + k]` for the first arm `k` of `arms` with a pattern equal to the
    /// string (`p`, `l`), else to `miss`: a switch on the length, then for each length the
    /// patterns' bytes, compared inline as at most two loads for up to 16 bytes.
    fn dispatch_strs(
        &mut self,
        p: Value,
        l: Value,
        arms: &'a [MatchArm],
        first: usize,
        entries: &[Block],
        miss: Block,
    ) {
        let mut by_length: std::collections::BTreeMap<usize, Vec<(&'a str, usize)>> =
            std::collections::BTreeMap::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (k, arm) in arms.iter().enumerate() {
            for pattern in &arm.patterns {
                let Pattern::Str(text) = pattern else {
                    unreachable!("the checker typed the patterns");
                };
                let text: &'a str = text;
                if seen.insert(text) {
                    by_length
                        .entry(text.len())
                        .or_default()
                        .push((text, first + k));
                }
            }
        }
        let mut switch = Switch::new();
        let mut blocks = Vec::new();
        for &length in by_length.keys() {
            let block = self.b.create_block();
            switch.set_entry(length as u128, block);
            blocks.push(block);
        }
        switch.emit(&mut self.b, l, miss);
        for ((&length, candidates), block) in by_length.iter().zip(blocks) {
            self.b.switch_to_block(block);
            if length == 0 {
                self.b.ins().jump(entries[candidates[0].1], &[]);
                continue;
            }
            let words = if length <= 16 {
                Some(self.load_str_words(p, length))
            } else {
                None
            };
            for &(text, arm) in candidates {
                let equal = match &words {
                    Some(words) => self.str_words_equal(words, text.as_bytes()),
                    None => {
                        let q = self.b.ins().iconst(I64, text.as_ptr() as i64);
                        let n = self.b.ins().iconst(I64, text.len() as i64);
                        self.call_helper(
                            runtime::helper_str_eq as *const u8,
                            &[I64, I64, I64, I64],
                            Some(I64),
                            &[p, l, q, n],
                        )
                        .expect("helper_str_eq returns")
                    }
                };
                let next = self.b.create_block();
                self.b.ins().brif(equal, entries[arm], &[], next, &[]);
                self.b.switch_to_block(next);
            }
            self.b.ins().jump(miss, &[]);
        }
    }

    /// The bytes of a string of `length` (1 to 16) as at most two loads of the widest size that
    /// fits (the second one ends at the last byte, overlapping the first): never past the end.
    fn load_str_words(&mut self, p: Value, length: usize) -> (types::Type, Value, Option<Value>) {
        let (ty, size) = match length {
            8.. => (I64, 8),
            4..=7 => (I32, 4),
            2..=3 => (types::I16, 2),
            _ => (types::I8, 1),
        };
        let flags = MemFlagsData::new().with_notrap();
        let a = self.b.ins().load(ty, flags, p, 0);
        let b = (length > size).then(|| self.b.ins().load(ty, flags, p, (length - size) as i32));
        (ty, a, b)
    }

    /// Whether the words of [`Lower::load_str_words`] are those of `bytes`.
    fn str_words_equal(
        &mut self,
        words: &(types::Type, Value, Option<Value>),
        bytes: &[u8],
    ) -> Value {
        let (ty, a, b) = *words;
        let size = ty.bytes() as usize;
        let constant = |at: usize| {
            let mut word = [0u8; 8];
            word[..size].copy_from_slice(&bytes[at..at + size]);
            // Sign-extended from the load width, as `icmp_imm` compares.
            let raw = u64::from_ne_bytes(word);
            let shift = 64 - 8 * size as u32;
            ((raw << shift) as i64) >> shift
        };
        let first = constant(0);
        let mut equal = self.b.ins().icmp_imm_s(IntCC::Equal, a, first);
        if let Some(b) = b {
            let second = constant(bytes.len() - size);
            let also = self.b.ins().icmp_imm_s(IntCC::Equal, b, second);
            equal = self.b.ins().band(equal, also);
        }
        equal
    }

    /// An accumulator field takes a copy of a string (into its other buffer), or the scalar. A
    /// string `e` whose every value is a literal is not copied (as in the interpreter): the
    /// field points at the program's text, and its buffers stay as they are.
    fn assign_accumulator(&mut self, local: LocalId, e: &Expr, value: Val) {
        let value = match value {
            Val::Str(p, l) if !e.literal_leaves() => {
                self.str_into_buffer(runtime::helper_assign_str as *const u8, local, p, l)
            }
            scalar => scalar,
        };
        self.set(local, value);
    }

    /// `value` as `local` holds it: a `str` local with a buffer of its own (a subflow's input or
    /// result) takes a copy of the text.
    fn owned(&mut self, local: LocalId, value: Val) -> Val {
        match value {
            Val::Str(p, l) if self.layout.slot(local).buffer != crate::layout::NO_BUFFER => {
                self.str_into_buffer(runtime::helper_copy_str as *const u8, local, p, l)
            }
            v => v,
        }
    }

    /// The string (`p`, `l`) copied by `helper` (`helper_assign_str` or `helper_copy_str`) into
    /// the buffer of `local`: the copy's pointer, the same length.
    fn str_into_buffer(&mut self, helper: *const u8, local: LocalId, p: Value, l: Value) -> Val {
        let buffer = self.layout.slot(local).buffer;
        let buffer = self.b.ins().iconst(I64, i64::from(buffer));
        let p = self
            .call_helper(
                helper,
                &[I64, I64, I64, I64],
                Some(I64),
                &[self.state, buffer, p, l],
            )
            .expect("the string helpers return a pointer");
        Val::Str(p, l)
    }

    /// The trap of a subflow body that ends with a value its event has no branch for.
    fn undeclared_exit(&mut self, name: &Arc<str>, span: Span) {
        let message = format!("subflow `{name}` ended with a branch its event does not declare");
        let site = self.trap_site(ErrorCode::NoBranchMatch, message, Some(name.clone()), span);
        self.fail(site);
    }

    /// Sends `value` where `sink` says.
    fn finish(&mut self, value: ValueId, sink: &Sink<'a>) {
        match &sink.kind {
            SinkKind::Jump(block) => {
                self.b.ins().jump(*block, &[]);
            }
            SinkKind::TopLevel(next) => {
                for local in self.program.values[value.0 as usize].payload.locals() {
                    self.store_local(local);
                }
                let id = self.b.ins().iconst(I32, i64::from(value.0));
                self.b.ins().store(
                    MemFlagsData::trusted(),
                    id,
                    self.state,
                    state_offset(offset_of!(RunState, value)),
                );
                self.b.ins().jump(*next, &[]);
            }
            SinkKind::RegionExit { exits, name, span } => match crate::ir::exit_of(exits, value) {
                Some((_, exit)) => {
                    for &(from, to) in &exit.copies {
                        let v = self.get(from);
                        let v = self.owned(to, v);
                        self.set(to, v);
                        self.store_local(to);
                    }
                    let status = REGION_BRANCH + exit.branch;
                    self.jump_exit(status);
                }
                None => self.undeclared_exit(name, *span),
            },
            SinkKind::Exit {
                exits,
                blocks,
                name,
                span,
                direct,
                outer,
            } => match crate::ir::exit_of(exits, value) {
                Some((_, exit)) => {
                    for &(from, to) in &exit.copies {
                        let v = self.get(from);
                        let v = self.owned(to, v);
                        self.set(to, v);
                    }
                    match direct[exit.branch as usize] {
                        Some(value) => self.finish(value, outer),
                        None => {
                            self.b.ins().jump(blocks[exit.branch as usize], &[]);
                        }
                    }
                }
                None => self.undeclared_exit(name, *span),
            },
        }
    }

    /// Runs the first continuation for `branch` whose guard holds (as the interpreter's `select`).
    fn select(
        &mut self,
        arms: &'a Arms,
        branch: usize,
        first_value: ValueId,
        sink: &Sink<'a>,
        event: &str,
        span: Span,
    ) -> Result<(), String> {
        let value = ValueId(first_value.0 + branch as u32);
        if arms.arms.is_empty() || arms.by_branch[branch].is_empty() {
            self.finish(value, sink);
            return Ok(());
        }
        for &index in &arms.by_branch[branch] {
            let arm = &arms.arms[index as usize];
            let taken = match &arm.guard {
                None => None,
                Some(guard) => {
                    let yes = self.b.create_block();
                    let no = self.b.create_block();
                    self.branch(guard, yes, no);
                    self.b.switch_to_block(yes);
                    Some(no)
                }
            };
            match &arm.step {
                None => self.finish(value, sink),
                Some(step) => {
                    // An arm can be a candidate of several branches (a catch-all): lower its step
                    // once per sink and jump to it.
                    let key = (arm as *const Arm as usize, sink.id);
                    let shared = arms.by_branch.iter().filter(|b| b.contains(&index)).count() > 1;
                    match self.arm_blocks.get(&key) {
                        Some(&block) => {
                            self.b.ins().jump(block, &[]);
                        }
                        // The candidate of one branch only: lowered in place.
                        None if !shared => self.step(step, sink)?,
                        None => {
                            let block = self.b.create_block();
                            self.arm_blocks.insert(key, block);
                            self.b.ins().jump(block, &[]);
                            self.b.switch_to_block(block);
                            self.step(step, sink)?;
                        }
                    }
                }
            }
            match taken {
                None => return Ok(()),
                Some(no) => self.b.switch_to_block(no),
            }
        }
        let name = &self.program.values[value.0 as usize].branch;
        let site = self.trap_site(
            ErrorCode::NoBranchMatch,
            format!("no continuation of `{event}` took branch `{name}`"),
            Some(event.into()),
            span,
        );
        self.fail(site);
        Ok(())
    }

    /// Starts a `for`: evaluates its range into its counter and end variables (the end is also
    /// its bound local, which an entry at its head reads back).
    fn open_for(&mut self, s: &'a ForLoop) -> OpenLoop {
        let start = self.scalar(&s.start);
        let end_value = self.scalar(&s.end);
        self.set(s.bound, Val::Scalar(end_value));
        let [counter, end, _, _] = self.loop_vars();
        self.b.def_var(counter, start);
        self.b.def_var(end, end_value);
        OpenLoop::For {
            counter,
            end,
            index: s.index,
            bound: s.bound,
        }
    }

    /// The counter, end and chunk end of a `for` opened now: one set per nesting depth, shared
    /// by the loops at that depth (one after another, never at once), so that the number of
    /// variables does not grow with the number of loops.
    fn loop_vars(&mut self) -> [Variable; 4] {
        let depth = self.loops.len();
        while self.loop_vars.len() <= depth {
            let vars = [
                self.b.declare_var(I64),
                self.b.declare_var(I64),
                self.b.declare_var(I64),
                self.b.declare_var(I64),
            ];
            self.loop_vars.push(vars);
        }
        self.loop_vars[depth]
    }

    fn register_osr(&mut self, loop_index: u32, head: Block, this: OpenLoop) {
        if !self.osr {
            return;
        }
        let around = self.loops.clone();
        self.osr_loops.push(loop_index);
        self.osr_targets
            .insert(loop_index, OsrTarget { head, this, around });
    }

    fn for_loop(&mut self, s: &'a ForLoop, sink: &Sink<'a>) -> Result<(), String> {
        if !contains_loop(&s.arms) {
            return self.innermost_for_loop(s, sink);
        }
        let open = self.open_for(s);
        let OpenLoop::For { counter, end, .. } = open else {
            unreachable!("a for loop")
        };
        let header = self.b.create_block();
        let body = self.b.create_block();
        let latch = self.b.create_block();
        let done = self.b.create_block();
        self.register_osr(s.loop_index, header, open);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(counter);
        let end_value = self.b.use_var(end);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, i, end_value);
        self.b.ins().brif(more, body, &[], done, &[]);
        self.b.switch_to_block(body);
        self.tick();
        let i = self.b.use_var(counter);
        self.set(s.index, Val::Scalar(i));
        self.trace(
            TraceLevel::All,
            "for",
            TraceMarker::None,
            s.first_value,
            false,
        );
        let discard = self.sink(SinkKind::Jump(latch));
        self.loops.push(open);
        self.select(&s.arms, 0, s.first_value, &discard, "for", s.span)?;
        self.loops.pop();
        self.b.switch_to_block(latch);
        let i = self.b.use_var(counter);
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(counter, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(done);
        let finished = ValueId(s.first_value.0 + 1);
        self.trace(TraceLevel::All, "for", TraceMarker::None, finished, false);
        self.select(&s.arms, 1, s.first_value, sink, "for", s.span)
    }

    /// A `for` with no loop inside: it takes its iterations from the budget a chunk at a time
    /// (`min(end - i, budget)`, at least one), so an iteration costs an increment and a compare
    /// at the bottom. Exact: a chunk never exceeds the budget, and only a trap, which ends the
    /// run, leaves a chunk early.
    fn innermost_for_loop(&mut self, s: &'a ForLoop, sink: &Sink<'a>) -> Result<(), String> {
        let open = self.open_for(s);
        let OpenLoop::For { counter, end, .. } = open else {
            unreachable!("a for loop")
        };
        let [_, _, chunk_end, left] = self.loop_vars();
        let outer = self.b.create_block();
        let refill = self.b.create_block();
        let body = self.b.create_block();
        let latch = self.b.create_block();
        let done = self.b.create_block();
        self.register_osr(s.loop_index, outer, open);
        self.b.ins().jump(outer, &[]);
        // More iterations? Then reserve a chunk of them.
        self.b.switch_to_block(outer);
        let i = self.b.use_var(counter);
        let end = self.b.use_var(end);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, i, end);
        self.b.ins().brif(more, refill, &[], done, &[]);
        self.b.switch_to_block(refill);
        self.ensure_budget();
        let i = self.b.use_var(counter);
        let budget = self.b.use_var(self.budget);
        // The chunk ends at `min(end, i + budget)` (`end` when the sum passes `i64::MAX`), that
        // is `i + min(end - i, budget)`, written without `end - i`: for a literal `end` that is
        // an op Cranelift rematerializes at its uses, and the whole sum followed it into the
        // latch of a loop of several blocks (`str-machine`: 2.8 ns an iteration against 3.1).
        let (sum, overflowed) = self.b.ins().sadd_overflow(i, budget);
        let below = self.b.ins().smin(sum, end);
        let stop = self.b.ins().select(overflowed, end, below);
        let granted = self.b.ins().isub(stop, i);
        let budget = self.b.ins().isub(budget, granted);
        self.b.def_var(self.budget, budget);
        self.b.def_var(chunk_end, stop);
        self.b.def_var(left, granted);
        // The chunk's iterations, tested at the bottom. A small body without calls is written
        // twice, so that a pair of iterations takes one backward branch.
        let copies = if unrollable(&s.arms) { 2 } else { 1 };
        self.b.ins().jump(body, &[]);
        let mut entry = body;
        let from_non_negative = matches!(s.start, Expr::Int(c) if c >= 0);
        for copy in 0..copies {
            self.b.switch_to_block(entry);
            let i = self.b.use_var(counter);
            if from_non_negative {
                self.non_negative.insert(i);
            }
            self.set(s.index, Val::Scalar(i));
            self.trace(
                TraceLevel::All,
                "for",
                TraceMarker::None,
                s.first_value,
                false,
            );
            let this_latch = if copy == 0 {
                latch
            } else {
                self.b.create_block()
            };
            let discard = self.sink(SinkKind::Jump(this_latch));
            self.loops.push(open);
            let blocks = self.b.func.dfg.num_blocks();
            self.select(&s.arms, 0, s.first_value, &discard, "for", s.span)?;
            let body_blocks = self.b.func.dfg.num_blocks() - blocks;
            self.loops.pop();
            self.b.switch_to_block(this_latch);
            let i = self.b.use_var(counter);
            let next = self.b.ins().iadd_imm_s(i, 1);
            self.b.def_var(counter, next);
            // A body of a few blocks tests the counter against the chunk's end. In a body of
            // many, Cranelift's elaborator placed the end's `smin`/`select` in the latch, not
            // before the loop (six instructions an iteration in str-machine): the latch counts
            // the chunk's iterations down instead (`left` is the chunk's size at its start).
            let in_chunk = if body_blocks > COUNTED_DOWN_BLOCKS {
                let count = self.b.use_var(left);
                let count = self.b.ins().iadd_imm_s(count, -1);
                self.b.def_var(left, count);
                self.b.ins().icmp_imm_s(IntCC::NotEqual, count, 0)
            } else {
                let stop = self.b.use_var(chunk_end);
                self.b.ins().icmp(IntCC::SignedLessThan, next, stop)
            };
            // The chunk rarely ends: its exit is a cold block (laid out at the end), so the
            // first copy falls through into the second rather than branch over the exit's
            // moves, and what only the exit needs (the budget left after the chunk) is computed
            // there, not in the loop.
            let leave = self.b.create_block();
            self.b.set_cold_block(leave);
            if copy + 1 == copies {
                self.b.ins().brif(in_chunk, body, &[], leave, &[]);
            } else {
                entry = self.b.create_block();
                self.b.ins().brif(in_chunk, entry, &[], leave, &[]);
            }
            self.b.switch_to_block(leave);
            self.b.ins().jump(outer, &[]);
        }
        self.b.switch_to_block(done);
        let finished = ValueId(s.first_value.0 + 1);
        self.trace(TraceLevel::All, "for", TraceMarker::None, finished, false);
        self.select(&s.arms, 1, s.first_value, sink, "for", s.span)
    }

    fn while_loop(&mut self, s: &'a WhileLoop, sink: &Sink<'a>) -> Result<(), String> {
        if unrollable(&s.arms) {
            return self.paired_while_loop(s, sink);
        }
        let header = self.b.create_block();
        let body = self.b.create_block();
        let done = self.b.create_block();
        self.register_osr(s.loop_index, header, OpenLoop::While);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        self.branch(&s.cond, body, done);
        self.b.switch_to_block(body);
        self.tick();
        self.while_body(s, header)?;
        self.while_done(s, done, sink)
    }

    /// A `while` whose body is small and calls nothing: it takes its iterations from the budget
    /// two at a time. At the head, a budget of at least two runs the condition and the body
    /// twice with no budget test between (each iteration that starts still counts one, so a
    /// condition that fails after the first leaves the second in the budget); a smaller budget
    /// runs one iteration the ordinary way (test, refill when spent), in a cold block. Exact:
    /// the budget is spent one per iteration as in [`Lower::tick`], only tested less often.
    fn paired_while_loop(&mut self, s: &'a WhileLoop, sink: &Sink<'a>) -> Result<(), String> {
        let header = self.b.create_block();
        let pair = self.b.create_block();
        let single = self.b.create_block();
        let done = self.b.create_block();
        self.b.set_cold_block(single);
        self.register_osr(s.loop_index, header, OpenLoop::While);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let budget = self.b.use_var(self.budget);
        let two = self
            .b
            .ins()
            .icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, budget, 2);
        self.b.ins().brif(two, pair, &[], single, &[]);
        // Two iterations, the budget taken once.
        self.b.switch_to_block(pair);
        let second = self.b.create_block();
        for (copy, next) in [(0, second), (1, header)] {
            let body = self.b.create_block();
            // The way out has a block of its own: the budget it leaves is computed there.
            let leave = self.b.create_block();
            self.branch(&s.cond, body, leave);
            self.b.switch_to_block(leave);
            self.b.ins().jump(done, &[]);
            self.b.switch_to_block(body);
            // From the budget at the head, so that the first copy's count is computed only
            // where a run leaves after it.
            let budget = self.b.ins().iadd_imm_s(budget, -(copy + 1));
            self.b.def_var(self.budget, budget);
            self.while_body(s, next)?;
            if copy == 0 {
                self.b.switch_to_block(second);
            }
        }
        // One iteration, as an ordinary `while` does it.
        self.b.switch_to_block(single);
        let body = self.b.create_block();
        self.branch(&s.cond, body, done);
        self.b.switch_to_block(body);
        self.tick();
        self.while_body(s, header)?;
        self.while_done(s, done, sink)
    }

    /// An iteration of `s` once its condition held (and its budget was taken): the body's arms,
    /// then on to `next`.
    fn while_body(&mut self, s: &'a WhileLoop, next: Block) -> Result<(), String> {
        self.trace(
            TraceLevel::All,
            "while",
            TraceMarker::None,
            s.first_value,
            false,
        );
        let discard = self.sink(SinkKind::Jump(next));
        self.loops.push(OpenLoop::While);
        self.select(&s.arms, 0, s.first_value, &discard, "while", s.span)?;
        self.loops.pop();
        Ok(())
    }

    /// What follows `s` once its condition failed, at `done`.
    fn while_done(&mut self, s: &'a WhileLoop, done: Block, sink: &Sink<'a>) -> Result<(), String> {
        self.b.switch_to_block(done);
        let finished = ValueId(s.first_value.0 + 1);
        self.trace(TraceLevel::All, "while", TraceMarker::None, finished, false);
        self.select(&s.arms, 1, s.first_value, sink, "while", s.span)
    }

    fn call(&mut self, s: &'a SubflowCall, sink: &Sink<'a>) -> Result<(), String> {
        for (local, argument) in &s.inputs {
            let value = match argument.format_into {
                Some(buffer) => {
                    let pair = self.format_argument(&argument.expr, buffer);
                    let flags = MemFlagsData::trusted();
                    let p = self.b.ins().load(I64, flags, pair, 0);
                    let l = self.b.ins().load(I64, flags, pair, 8);
                    Val::Str(p, l)
                }
                None => self.expr(&argument.expr),
            };
            // A literal needs no copy: the program's text outlives the run.
            let value = if argument.format_into.is_none() && argument.expr.literal_leaves() {
                value
            } else {
                self.owned(*local, value)
            };
            self.set(*local, value);
        }
        // No interrupt check: an inlined body (a subflow's or a mock's) is straight-line code
        // between the checks of loops and host calls (as in the interpreter).
        self.charge_only(s.cost, LAST_EVENT_SUBFLOW | s.name_index);
        let blocks: Vec<Block> = (0..s.results.len())
            .map(|_| self.b.create_block())
            .collect();
        if steps_within(&s.body, self.split) > self.split && !yields(self.program, &s.body) {
            // A large body is a region of its own: its inputs go through the flow state, and
            // its result branch comes back as the status, its payload in the flow state.
            for (local, _) in &s.inputs {
                self.store_local(*local);
            }
            let index = self.regions.len();
            self.regions.push(Region::Body(s));
            let status = self.call_region(index);
            let returned = self.b.create_block();
            let failed = self.b.create_block();
            self.b.set_cold_block(failed);
            let branch = self.b.ins().icmp_imm_u(
                IntCC::UnsignedGreaterThanOrEqual,
                status,
                i64::from(REGION_BRANCH),
            );
            self.b.ins().brif(branch, returned, &[], failed, &[]);
            self.b.switch_to_block(failed);
            self.b.ins().jump(self.exit, &[status.into()]);
            self.b.switch_to_block(returned);
            let branch = self.b.ins().iadd_imm_s(status, -i64::from(REGION_BRANCH));
            let mut switch = Switch::new();
            for (index, &block) in blocks.iter().enumerate() {
                switch.set_entry(index as u128, block);
            }
            // A region returns only branches of the event (an undeclared one fails inside).
            let otherwise = blocks[0];
            switch.emit(&mut self.b, branch, otherwise);
            for (branch, &block) in blocks.iter().enumerate() {
                self.b.switch_to_block(block);
                for &local in &s.results[branch] {
                    if self.read[local.0 as usize] {
                        self.load_local(local);
                    }
                }
                let value = ValueId(s.first_value.0 + branch as u32);
                let marker = TraceMarker::of_mocked(s.mocked);
                self.trace(TraceLevel::Dispatches, &s.name, marker, value, true);
                self.select(&s.arms, branch, s.first_value, sink, &s.name, s.span)?;
            }
            return Ok(());
        }
        let direct: Vec<Option<ValueId>> = (0..blocks.len())
            .map(|branch| {
                let traced = self.program.trace >= TraceLevel::Dispatches;
                (!traced).then(|| trivial_arm(&s.arms, branch, s.first_value))?
            })
            .collect();
        let exit = self.sink(SinkKind::Exit {
            exits: &s.exits,
            blocks: blocks.clone(),
            name: &s.name,
            span: s.span,
            direct: direct.clone(),
            outer: Box::new(sink.clone()),
        });
        self.step(&s.body, &exit)?;
        // The branches some exit returns, marked in one pass (a scan of the exits per branch
        // was quadratic).
        let mut returned = vec![false; blocks.len()];
        for e in &s.exits {
            if let Some(r) = returned.get_mut(e.branch as usize) {
                *r = true;
            }
        }
        for (branch, &block) in blocks.iter().enumerate() {
            if direct[branch].is_some() || !returned[branch] {
                // A branch the body never returns (only yields, or not at all) has no
                // predecessor: its continuation would be dead code; a trivial one ended at
                // each exit.
                continue;
            }
            self.b.switch_to_block(block);
            let value = ValueId(s.first_value.0 + branch as u32);
            let marker = TraceMarker::of_mocked(s.mocked);
            self.trace(TraceLevel::Dispatches, &s.name, marker, value, false);
            self.select(&s.arms, branch, s.first_value, sink, &s.name, s.span)?;
        }
        Ok(())
    }

    fn invoke(&mut self, s: &'a Invoke, sink: &Sink<'a>) -> Result<(), String> {
        let event = &self.program.events[s.event.0 as usize];
        let plan = &self.layout.replies[s.site as usize];
        let host = &self.registry.events()[event.host];
        let branch = match (&s.args, &host.implementation) {
            (Arguments::Template(parts), _) => {
                let mut words: Vec<Value> = Vec::new();
                let mut native = Vec::new();
                for part in parts {
                    match part {
                        TemplatePart::Text(text) => native.push(NativePart::Text(text.clone())),
                        TemplatePart::Hole(expr) => {
                            native.push(NativePart::Hole(expr.ty()));
                            match self.expr(expr) {
                                Val::Str(p, l) => words.extend([p, l]),
                                Val::Scalar(v) if expr.ty() == Type::Float => {
                                    words.push(self.b.ins().bitcast(I64, MemFlagsData::new(), v))
                                }
                                Val::Scalar(v) => words.push(v),
                            }
                        }
                    }
                }
                self.data.templates.push(native);
                let template = self.data.templates.len() as i64 - 1;
                let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    (words.len().max(1) * 8) as u32,
                    3,
                ));
                for (k, word) in words.iter().enumerate() {
                    self.b.ins().stack_store(I64, *word, slot, (k * 8) as i32);
                }
                let words = self.b.ins().stack_addr(I64, slot, 0);
                self.charge(event.cost, s.event.0 + 1);
                let data = self.address(&*self.data as *const NativeData as *const u8);
                let template = self.b.ins().iconst(I64, template);
                let failed = self
                    .call_helper(
                        runtime::helper_template as *const u8,
                        &[I64, I64, I64, I64],
                        Some(I32),
                        &[self.state, data, template, words],
                    )
                    .expect("helper_template returns");
                self.exit_unless_ok(failed);
                None
            }
            (Arguments::Inputs(args), Implementation::Std(kind)) => {
                let pair = self.str_argument(&args[0]);
                self.charge(event.cost, s.event.0 + 1);
                let kind = match kind {
                    StdEvent::Print | StdEvent::PrintTemplate => 0,
                    StdEvent::Println => 1,
                    StdEvent::Eprintln => 2,
                };
                let kind = self.b.ins().iconst(I64, kind);
                let failed = self
                    .call_helper(
                        runtime::helper_std as *const u8,
                        &[I64, I64, I64],
                        Some(I32),
                        &[self.state, kind, pair],
                    )
                    .expect("helper_std returns");
                self.exit_unless_ok(failed);
                None
            }
            (Arguments::Inputs(args), Implementation::Closure(closure)) => {
                let shim = &closure.shim;
                let mut params = vec![I64, I64, I64];
                let mut values = Vec::new();
                match &shim.args {
                    Some(kinds) => {
                        for (argument, kind) in args.iter().zip(kinds) {
                            let (ty, value) = match kind {
                                ShimArg::Str => (I64, self.str_argument(argument)),
                                ShimArg::Float => (F64, self.scalar(&argument.expr)),
                                ShimArg::Int | ShimArg::Bool => (I64, self.scalar(&argument.expr)),
                            };
                            params.push(ty);
                            values.push(value);
                        }
                    }
                    None => {
                        let mut words = Vec::new();
                        for argument in args {
                            match argument.format_into {
                                Some(buffer) => {
                                    let pair = self.format_argument(&argument.expr, buffer);
                                    let flags = MemFlagsData::trusted();
                                    words.push(self.b.ins().load(I64, flags, pair, 0));
                                    words.push(self.b.ins().load(I64, flags, pair, 8));
                                }
                                None => match self.expr(&argument.expr) {
                                    Val::Str(p, l) => words.extend([p, l]),
                                    Val::Scalar(v) if argument.expr.ty() == Type::Float => words
                                        .push(self.b.ins().bitcast(I64, MemFlagsData::new(), v)),
                                    Val::Scalar(v) => words.push(v),
                                },
                            }
                        }
                        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                            StackSlotKind::ExplicitSlot,
                            (words.len().max(1) * 8) as u32,
                            3,
                        ));
                        for (k, word) in words.iter().enumerate() {
                            self.b.ins().stack_store(I64, *word, slot, (k * 8) as i32);
                        }
                        params.push(I64);
                        values.push(self.b.ins().stack_addr(I64, slot, 0));
                    }
                }
                self.charge(event.cost, s.event.0 + 1);
                // Handles passed to `str[!S]` inputs are released once the call is charged,
                // before it runs (SPEC 12); only sites of events with phantom states do this.
                if let Some(obligations) = &plan.obligations {
                    for &(input, _, state_index) in &obligations.releases {
                        let pair = self.str_argument(&args[input as usize]);
                        let index = self.b.ins().iconst(I64, i64::from(state_index));
                        self.call_helper(
                            runtime::helper_release as *const u8,
                            &[I64, I64, I64],
                            None,
                            &[self.state, index, pair],
                        );
                    }
                }
                let env = self.address(shim.env);
                let plan_address = self.address(plan as *const crate::host::ReplyPlan as *const u8);
                let mut call_args = vec![env, self.state, plan_address];
                call_args.extend(values);
                let branch = self
                    .call_helper(shim.code, &params, Some(I32), &call_args)
                    .expect("shims return a branch");
                let failed =
                    self.b
                        .ins()
                        .icmp_imm_s(IntCC::Equal, branch, i64::from(SHIM_FAILED as i32));
                self.host_fail_if(failed);
                Some(branch)
            }
            (_, Implementation::Missing) => {
                return Err(format!("event `{}` has no implementation", event.name))
            }
        };
        let branches = plan.branches.len();
        match branch {
            Some(branch) if branches > 1 => {
                let blocks: Vec<Block> = (0..branches).map(|_| self.b.create_block()).collect();
                let mut switch = Switch::new();
                for (index, &block) in blocks.iter().enumerate() {
                    switch.set_entry(index as u128, block);
                }
                let otherwise = self.b.create_block();
                self.b.set_cold_block(otherwise);
                switch.emit(&mut self.b, branch, otherwise);
                self.b.switch_to_block(otherwise);
                let site = self.trap_site(
                    ErrorCode::HostError,
                    format!("`{}` returned an unknown branch", event.name),
                    Some(event.name.clone()),
                    s.span,
                );
                self.fail(site);
                for (index, &block) in blocks.iter().enumerate() {
                    self.b.switch_to_block(block);
                    self.branch_taken(s, index, sink)?;
                }
                Ok(())
            }
            _ => self.branch_taken(s, 0, sink),
        }
    }

    /// After a host call returned `branch`: load its payload, select its continuation.
    fn branch_taken(
        &mut self,
        s: &'a Invoke,
        branch: usize,
        sink: &Sink<'a>,
    ) -> Result<(), String> {
        for &local in &s.payloads[branch] {
            if self.read[local.0 as usize] {
                self.load_local(local);
            }
        }
        let event = &self.program.events[s.event.0 as usize].name;
        let value = ValueId(s.first_value.0 + branch as u32);
        // A host dispatch is never a mock (a mock is inlined as a `SubflowCall`).
        self.trace(
            TraceLevel::Dispatches,
            event,
            TraceMarker::None,
            value,
            true,
        );
        self.select(&s.arms, branch, s.first_value, sink, event, s.span)
    }

    // ------------------------------------------------------------------ expressions

    fn scalar(&mut self, expr: &Expr) -> Value {
        match self.expr(expr) {
            Val::Scalar(v) => v,
            Val::Str(..) => unreachable!("the checker typed this expression as a scalar"),
        }
    }

    fn bool_value(&mut self, condition: Value) -> Value {
        self.b.ins().uextend(I64, condition)
    }

    fn expr(&mut self, expr: &Expr) -> Val {
        let value = match expr {
            Expr::Int(v) => match self.lane_literal() {
                Some(loaded) => loaded,
                None => self.b.ins().iconst(I64, *v),
            },
            Expr::Float(v) => self.b.ins().f64const(*v),
            Expr::Bool(v) => self.b.ins().iconst(I64, i64::from(*v)),
            Expr::Str(text) => {
                let p = self.b.ins().iconst(I64, text.as_ptr() as i64);
                let l = self.b.ins().iconst(I64, text.len() as i64);
                return Val::Str(p, l);
            }
            Expr::Local(local, _) => return self.get(*local),
            Expr::NegInt(e, at) => {
                let v = self.scalar(e);
                let is_min = self.b.ins().icmp_imm_s(IntCC::Equal, v, i64::MIN);
                let site = self.trap_site(
                    ErrorCode::Overflow,
                    "integer overflow in `-`".into(),
                    at.event.clone(),
                    at.span,
                );
                self.fail_if(is_min, site);
                self.b.ins().ineg(v)
            }
            Expr::NegFloat(e) => {
                let v = self.scalar(e);
                self.b.ins().fneg(v)
            }
            Expr::Not(e) => {
                let v = self.scalar(e);
                self.b.ins().bxor_imm_s(v, 1)
            }
            Expr::IntArith(op, a, b, at) => {
                let a = self.scalar(a);
                let b = self.scalar(b);
                self.int_arith(*op, a, b, at)
            }
            Expr::FloatArith(op, a, b) => {
                let a = self.scalar(a);
                let b = self.scalar(b);
                match op {
                    FloatOp::Add => self.b.ins().fadd(a, b),
                    FloatOp::Sub => self.b.ins().fsub(a, b),
                    FloatOp::Mul => self.b.ins().fmul(a, b),
                    FloatOp::Div => self.b.ins().fdiv(a, b),
                    FloatOp::Rem => self
                        .call_helper(
                            runtime::helper_float_rem as *const u8,
                            &[F64, F64],
                            Some(F64),
                            &[a, b],
                        )
                        .expect("helper_float_rem returns"),
                }
            }
            // `x % k == 0` for a literal `k` (not 0 or -1, not a power of two, which is a
            // mask): no division. A floored remainder is 0 exactly when the truncated one is,
            // and `x` is a multiple of `k` exactly when it is one of `d = |k| = d0 * 2^s` (`d0`
            // odd); multiplying by the inverse of `d0` modulo 2^64 maps the multiples onto a
            // range that a rotation and one unsigned comparison test (Hacker's Delight 10-17;
            // LLVM's `prepareSREMEqFold`). Unsigned, without the offset, for an `x` known to
            // be >= 0.
            Expr::IntCmp(op @ (CmpOp::Eq | CmpOp::Ne), x, zero)
                if matches!(**zero, Expr::Int(0)) && remainder_test(x).is_some() =>
            {
                let (x, k) = remainder_test(x).expect("matched");
                let v = self.scalar(x);
                let (inverse, offset, bound, shift) =
                    multiple_test(k.unsigned_abs(), self.sign_of(v) == Some(true));
                let mut t = self.b.ins().imul_imm_s(v, inverse as i64);
                if offset != 0 {
                    t = self.b.ins().iadd_imm_s(t, offset as i64);
                }
                if shift != 0 {
                    t = self.b.ins().rotr_imm_s(t, i64::from(shift));
                }
                let cc = if *op == CmpOp::Eq {
                    IntCC::UnsignedLessThanOrEqual
                } else {
                    IntCC::UnsignedGreaterThan
                };
                let c = self.b.ins().icmp_imm_s(cc, t, bound as i64);
                self.bool_value(c)
            }
            Expr::IntCmp(op, a, b) | Expr::BoolCmp(op, a, b) => {
                let a = self.scalar(a);
                let b = self.scalar(b);
                let cc = match op {
                    CmpOp::Eq => IntCC::Equal,
                    CmpOp::Ne => IntCC::NotEqual,
                    CmpOp::Lt => IntCC::SignedLessThan,
                    CmpOp::Le => IntCC::SignedLessThanOrEqual,
                    CmpOp::Gt => IntCC::SignedGreaterThan,
                    CmpOp::Ge => IntCC::SignedGreaterThanOrEqual,
                };
                let c = self.b.ins().icmp(cc, a, b);
                self.bool_value(c)
            }
            Expr::FloatCmp(op, a, b) => {
                let a = self.scalar(a);
                let b = self.scalar(b);
                let cc = match op {
                    CmpOp::Eq => FloatCC::Equal,
                    CmpOp::Ne => FloatCC::NotEqual,
                    CmpOp::Lt => FloatCC::LessThan,
                    CmpOp::Le => FloatCC::LessThanOrEqual,
                    CmpOp::Gt => FloatCC::GreaterThan,
                    CmpOp::Ge => FloatCC::GreaterThanOrEqual,
                };
                let c = self.b.ins().fcmp(cc, a, b);
                self.bool_value(c)
            }
            Expr::StrCmp(..) if short_str_test(expr).is_some() => {
                // As a value: a branch on it, into a join.
                let yes = self.b.create_block();
                let no = self.b.create_block();
                let join = self.b.create_block();
                let result = self.b.append_block_param(join, I64);
                self.branch(expr, yes, no);
                for (block, value) in [(yes, 1), (no, 0)] {
                    self.b.switch_to_block(block);
                    let value = self.b.ins().iconst(I64, value);
                    self.b.ins().jump(join, &[value.into()]);
                }
                self.b.switch_to_block(join);
                result
            }
            Expr::StrCmp(op, a, b) => {
                let (Val::Str(ap, al), Val::Str(bp, bl)) = (self.expr(a), self.expr(b)) else {
                    unreachable!("the checker typed both sides str")
                };
                let equal = self
                    .call_helper(
                        runtime::helper_str_eq as *const u8,
                        &[I64, I64, I64, I64],
                        Some(I64),
                        &[ap, al, bp, bl],
                    )
                    .expect("helper_str_eq returns");
                match op {
                    CmpOp::Ne => self.b.ins().bxor_imm_s(equal, 1),
                    _ => equal,
                }
            }
            Expr::And(a, b) => return self.short_circuit(a, b, true),
            Expr::Or(a, b) => return self.short_circuit(a, b, false),
            Expr::IntToFloat(e) => {
                let v = self.scalar(e);
                self.b.ins().fcvt_from_sint(F64, v)
            }
            Expr::FloatToInt(e, at) => {
                let v = self.scalar(e);
                let low = self.b.ins().f64const(-9_223_372_036_854_775_808.0);
                let high = self.b.ins().f64const(9_223_372_036_854_775_808.0);
                // NaN fails `v >= low`; out-of-range values fail one of the two bounds.
                let above_low = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, v, low);
                let below_high = self.b.ins().fcmp(FloatCC::LessThan, v, high);
                let in_range = self.b.ins().band(above_low, below_high);
                let out = self.b.ins().bxor_imm_s(in_range, 1);
                let site = self.trap_site(
                    ErrorCode::Overflow,
                    "float out of range for int in `@as`".into(),
                    at.event.clone(),
                    at.span,
                );
                self.fail_if(out, site);
                self.b.ins().fcvt_to_sint(I64, v)
            }
            Expr::Select(c, a, b, ty) => return self.select_expr(c, a, b, *ty),
        };
        Val::Scalar(value)
    }

    fn int_arith(&mut self, op: IntOp, a: Value, b: Value, at: &ErrorSite) -> Value {
        let (span, event) = (at.span, at.event.clone());
        let symbol = match op {
            IntOp::Add => "+",
            IntOp::Sub => "-",
            IntOp::Mul => "*",
            IntOp::Div => "/",
            IntOp::Rem => "%",
        };
        let overflow = |this: &mut Self| {
            this.trap_site(
                ErrorCode::Overflow,
                arith::describe(ErrorCode::Overflow, symbol),
                event.clone(),
                span,
            )
        };
        match op {
            IntOp::Add | IntOp::Sub if self.sign_of(b).is_some() => {
                // With the sign of `b` known, `a + b` overflowed exactly when the result moved
                // the other way (below `a` for a `b >= 0`): a compare the branch fuses with,
                // where the overflow flag would be materialized and tested.
                let non_negative = self.sign_of(b) == Some(true);
                let result = match op {
                    IntOp::Add => self.b.ins().iadd(a, b),
                    _ => self.b.ins().isub(a, b),
                };
                let cc = if (op == IntOp::Add) == non_negative {
                    IntCC::SignedLessThan
                } else {
                    IntCC::SignedGreaterThan
                };
                let overflowed = self.b.ins().icmp(cc, result, a);
                let site = overflow(self);
                self.fail_if(overflowed, site);
                result
            }
            IntOp::Add | IntOp::Sub | IntOp::Mul => {
                let (result, overflowed) = match op {
                    IntOp::Add => self.b.ins().sadd_overflow(a, b),
                    IntOp::Sub => self.b.ins().ssub_overflow(a, b),
                    _ => self.b.ins().smul_overflow(a, b),
                };
                let site = overflow(self);
                self.fail_if(overflowed, site);
                result
            }
            IntOp::Rem if self.constant(b).is_some_and(|m| m > 0 && m & (m - 1) == 0) => {
                // Floored `%` by a positive power of two is the low bits (two's complement).
                let m = self.constant(b).expect("checked above");
                self.b.ins().band_imm_s(a, m - 1)
            }
            IntOp::Div | IntOp::Rem => {
                let zero = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
                let site = self.trap_site(
                    ErrorCode::DivisionByZero,
                    arith::describe(ErrorCode::DivisionByZero, symbol),
                    event.clone(),
                    span,
                );
                self.fail_if(zero, site);
                if self.constant(b).is_none() {
                    return self.divide_bypassing(op, a, b, &overflow);
                }
                self.divide_64(op, a, b, &overflow)
            }
        }
    }

    /// `a / b` or floored `a % b` for a `b` known only at run time (not 0: checked before).
    /// When both operands are in `0..2^32`, one 32-bit unsigned division gives the same result
    /// (floored is truncated for operands >= 0), a fraction of a 64-bit one's latency on x86
    /// cores (LLVM's "bypass slow division", which compiled Rust gets; the interpreter does it
    /// too); otherwise the 64-bit path.
    fn divide_bypassing(
        &mut self,
        op: IntOp,
        a: Value,
        b: Value,
        overflow: &impl Fn(&mut Self) -> u32,
    ) -> Value {
        let both = self.b.ins().bor(a, b);
        let high = self.b.ins().ushr_imm_u(both, 32);
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let join = self.b.create_block();
        let result = self.b.append_block_param(join, I64);
        self.b.ins().brif(high, slow, &[], fast, &[]);
        self.b.switch_to_block(fast);
        let (x, y) = (self.b.ins().ireduce(I32, a), self.b.ins().ireduce(I32, b));
        let r = match op {
            IntOp::Div => self.b.ins().udiv(x, y),
            _ => self.b.ins().urem(x, y),
        };
        let r = self.b.ins().uextend(I64, r);
        self.b.ins().jump(join, &[r.into()]);
        self.b.switch_to_block(slow);
        let r = self.divide_64(op, a, b, overflow);
        self.b.ins().jump(join, &[r.into()]);
        self.b.switch_to_block(join);
        result
    }

    /// `a / b` or floored `a % b` in 64 bits, `b` not 0 (`i64::MIN / -1` fails at the site
    /// `overflow` makes).
    fn divide_64(
        &mut self,
        op: IntOp,
        a: Value,
        b: Value,
        overflow: &impl Fn(&mut Self) -> u32,
    ) -> Value {
        let minus_one = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
        if op == IntOp::Div {
            let is_min = self.b.ins().icmp_imm_s(IntCC::Equal, a, i64::MIN);
            let both = self.b.ins().band(is_min, minus_one);
            let site = overflow(self);
            self.fail_if(both, site);
            return self.b.ins().sdiv(a, b);
        }
        // `x % -1` is 0; dividing by 1 instead avoids the hardware trap on `MIN % -1`.
        let one = self.b.ins().iconst(I64, 1);
        let divisor = self.b.ins().select(minus_one, one, b);
        let r = self.b.ins().srem(a, divisor);
        // Floored: when the remainder and the divisor differ in sign, add the divisor.
        let nonzero = self.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0);
        let signs = self.b.ins().bxor(r, b);
        let differ = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, signs, 0);
        let adjust = self.b.ins().band(nonzero, differ);
        let adjusted = self.b.ins().iadd(r, b);
        self.b.ins().select(adjust, adjusted, r)
    }

    /// `m` if `v` is `x & m` for an `m >= 0` (so `0 <= v <= m`): what `%` by a power of two is.
    fn mask_of(&self, v: Value) -> Option<i64> {
        use cranelift_codegen::ir::{InstructionData, Opcode, ValueDef};
        let ValueDef::Result(inst, _) = self.b.func.dfg.value_def(v) else {
            return None;
        };
        match self.b.func.dfg.insts[inst] {
            InstructionData::Binary {
                opcode: Opcode::Band,
                args: [_, mask],
            } => self.constant(mask).filter(|&m| m >= 0),
            _ => None,
        }
    }

    /// `Some(true)` if `v` is known to be `>= 0`, `Some(false)` if `< 0`: a constant, or the
    /// index of a `for` from a constant `>= 0`.
    fn sign_of(&self, v: Value) -> Option<bool> {
        if self.non_negative.contains(&v) {
            return Some(true);
        }
        self.constant(v).map(|c| c >= 0)
    }

    /// The value of `v` if it is an `iconst` of this function.
    fn constant(&self, v: Value) -> Option<i64> {
        use cranelift_codegen::ir::{InstructionData, Opcode, ValueDef};
        let ValueDef::Result(inst, _) = self.b.func.dfg.value_def(v) else {
            return None;
        };
        match self.b.func.dfg.insts[inst] {
            InstructionData::UnaryImm {
                opcode: Opcode::Iconst,
                imm,
            } => Some(imm.bits()),
            _ => None,
        }
    }

    /// `a && b` (`and` true) or `a || b`: `b` only runs when it decides.
    /// Branches on the bool `cond` to `yes` or `no`. `!`, `&&`, `||` and a `str` comparison
    /// against a short literal are control flow here: no bool is made to be tested again.
    fn branch(&mut self, cond: &Expr, yes: Block, no: Block) {
        match cond {
            Expr::Not(e) => self.branch(e, no, yes),
            Expr::And(a, b) | Expr::Or(a, b) => {
                let right = self.b.create_block();
                if matches!(cond, Expr::And(..)) {
                    self.branch(a, right, no);
                } else {
                    self.branch(a, yes, right);
                }
                self.b.seal_block(right);
                self.b.switch_to_block(right);
                self.branch(b, yes, no);
            }
            Expr::StrCmp(op, ..) if short_str_test(cond).is_some() => {
                // Against a literal of at most 16 bytes: the lengths, then (only when they are
                // equal, so that no load passes the end) at most two loads, inline. Evaluating
                // only the other side is the same: a literal does nothing.
                let (text, other) = short_str_test(cond).expect("matched");
                let (equal_to, differ_to) = match op {
                    CmpOp::Ne => (no, yes),
                    _ => (yes, no),
                };
                let Val::Str(p, l) = self.expr(other) else {
                    unreachable!("the checker typed both sides str")
                };
                let same_length = self.b.ins().icmp_imm_s(IntCC::Equal, l, text.len() as i64);
                if text.is_empty() {
                    self.b
                        .ins()
                        .brif(same_length, equal_to, &[], differ_to, &[]);
                    return;
                }
                let compare = self.b.create_block();
                self.b.ins().brif(same_length, compare, &[], differ_to, &[]);
                self.b.switch_to_block(compare);
                // A branch per word: no bool is made of the two tests.
                let (ty, first, second) = self.load_str_words(p, text.len());
                let size = ty.bytes() as usize;
                let bytes = text.as_bytes();
                let same = self.str_words_equal(&(ty, first, None), &bytes[..size]);
                match second {
                    None => {
                        self.b.ins().brif(same, equal_to, &[], differ_to, &[]);
                    }
                    Some(second) => {
                        let compare_second = self.b.create_block();
                        self.b.ins().brif(same, compare_second, &[], differ_to, &[]);
                        self.b.seal_block(compare_second);
                        self.b.switch_to_block(compare_second);
                        let same =
                            self.str_words_equal(&(ty, second, None), &bytes[bytes.len() - size..]);
                        self.b.ins().brif(same, equal_to, &[], differ_to, &[]);
                    }
                }
            }
            _ => {
                let c = self.scalar(cond);
                self.b.ins().brif(c, yes, &[], no, &[]);
            }
        }
    }

    fn short_circuit(&mut self, a: &Expr, b: &Expr, and: bool) -> Val {
        let left = self.scalar(a);
        let evaluate_right = self.b.create_block();
        let join = self.b.create_block();
        let result = self.b.append_block_param(join, I64);
        if and {
            self.b
                .ins()
                .brif(left, evaluate_right, &[], join, &[left.into()]);
        } else {
            self.b
                .ins()
                .brif(left, join, &[left.into()], evaluate_right, &[]);
        }
        self.b.switch_to_block(evaluate_right);
        let right = self.scalar(b);
        self.b.ins().jump(join, &[right.into()]);
        self.b.switch_to_block(join);
        Val::Scalar(result)
    }

    /// `if (c) a else b`: only the chosen arm runs (it may fail).
    fn select_expr(&mut self, c: &Expr, a: &Expr, b: &Expr, ty: Type) -> Val {
        let then_block = self.b.create_block();
        let else_block = self.b.create_block();
        let join = self.b.create_block();
        let params: Vec<Value> = match ty {
            Type::Str => vec![
                self.b.append_block_param(join, I64),
                self.b.append_block_param(join, I64),
            ],
            Type::Float => vec![self.b.append_block_param(join, F64)],
            _ => vec![self.b.append_block_param(join, I64)],
        };
        self.branch(c, then_block, else_block);
        for (block, arm) in [(then_block, a), (else_block, b)] {
            self.b.switch_to_block(block);
            let args: Vec<Value> = match self.expr(arm) {
                Val::Scalar(v) => vec![v],
                Val::Str(p, l) => vec![p, l],
            };
            let args: Vec<_> = args.into_iter().map(Into::into).collect();
            self.b.ins().jump(join, &args);
        }
        self.b.switch_to_block(join);
        match params.as_slice() {
            [p, l] => Val::Str(*p, *l),
            [v] => Val::Scalar(*v),
            _ => unreachable!("one or two parameters"),
        }
    }
}

/// Which locals are read: by an expression, by a subflow exit's copy, or as the payload of a
/// top-level flow's value (the engine reads those from the flow state).
fn read_locals(program: &Program) -> Vec<bool> {
    fn expr(e: &Expr, read: &mut Vec<bool>) {
        if let Expr::Local(local, _) = e {
            read[local.0 as usize] = true;
        }
        for operand in e.operands() {
            expr(operand, read);
        }
    }
    fn arms(a: &Arms, read: &mut Vec<bool>) {
        for arm in &a.arms {
            if let Some(guard) = &arm.guard {
                expr(guard, read);
            }
            if let Some(s) = &arm.step {
                step(s, read);
            }
        }
    }
    fn step(s: &Step, read: &mut Vec<bool>) {
        match s {
            Step::Invoke(s) => {
                match &s.args {
                    Arguments::Inputs(args) => args.iter().for_each(|a| expr(&a.expr, read)),
                    Arguments::Template(parts) => parts.iter().for_each(|p| {
                        if let TemplatePart::Hole(e) = p {
                            expr(e, read)
                        }
                    }),
                }
                arms(&s.arms, read);
            }
            Step::Call(s) => {
                s.inputs.iter().for_each(|(_, a)| expr(&a.expr, read));
                step(&s.body, read);
                for exit in &s.exits {
                    for (from, _) in &exit.copies {
                        read[from.0 as usize] = true;
                    }
                }
                arms(&s.arms, read);
            }
            Step::For(s) => {
                expr(&s.start, read);
                expr(&s.end, read);
                arms(&s.arms, read);
            }
            Step::If(s) => {
                expr(&s.cond, read);
                arms(&s.arms, read);
            }
            Step::While(s) => {
                expr(&s.cond, read);
                arms(&s.arms, read);
            }
            Step::Capture(s) => {
                s.init.iter().for_each(|e| expr(e, read));
                arms(&s.arms, read);
            }
            Step::Update(s) => s.assigns.iter().for_each(|(_, e)| expr(e, read)),
            Step::Construct(s) => s.fields.iter().for_each(|(_, e)| expr(e, read)),
            Step::Match(s) => {
                expr(&s.scrutinee, read);
                for arm in &s.arms {
                    if let Some(guard) = &arm.arm.guard {
                        expr(guard, read);
                    }
                    if let Some(s) = &arm.arm.step {
                        step(s, read);
                    }
                }
            }
            Step::Yield(_) => {}
        }
    }
    let mut read = vec![false; program.locals.len()];
    for flow in &program.flows {
        step(flow, &mut read);
        let mut values = Vec::new();
        crate::sema::step_values(flow, &mut values);
        for value in values {
            for local in program.values[value.0 as usize].payload.locals() {
                read[local.0 as usize] = true;
            }
        }
    }
    read
}

/// Whether a loop runs anywhere inside these arms (inlined subflows included).
fn contains_loop(arms: &Arms) -> bool {
    fn step(s: &Step) -> bool {
        match s {
            Step::For(_) | Step::While(_) => true,
            Step::Invoke(s) => contains_loop(&s.arms),
            Step::Call(s) => step(&s.body) || contains_loop(&s.arms),
            Step::If(s) => contains_loop(&s.arms),
            Step::Capture(s) => contains_loop(&s.arms),
            Step::Match(s) => s.arms.iter().any(|a| a.arm.step.as_ref().is_some_and(step)),
            Step::Update(_) | Step::Construct(_) | Step::Yield(_) => false,
        }
    }
    arms.arms
        .iter()
        .any(|arm| arm.step.as_ref().is_some_and(step))
}

/// The value `branch`'s continuation in `arms` ends with when it does nothing but end (no
/// arm, or a first candidate with no guard and no step but `_`).
fn trivial_arm(arms: &Arms, branch: usize, first_value: ValueId) -> Option<ValueId> {
    let value = ValueId(first_value.0 + branch as u32);
    if arms.arms.is_empty() || arms.by_branch[branch].is_empty() {
        return Some(value);
    }
    let arm = &arms.arms[arms.by_branch[branch][0] as usize];
    match (&arm.guard, &arm.step) {
        (None, None) => Some(value),
        (None, Some(Step::Yield(v))) => Some(*v),
        _ => None,
    }
}

/// A loop body worth writing twice: no call of any kind (host events, subflows, helpers that
/// print or copy strings) and only a few steps.
fn unrollable(arms: &Arms) -> bool {
    fn step(s: &Step, budget: &mut i32) -> bool {
        *budget -= 1;
        if *budget < 0 {
            return false;
        }
        match s {
            Step::If(s) => arms_ok(&s.arms, budget),
            // A `capture` (what a `yield` is) of non-`str` fields.
            Step::Capture(s) => {
                s.init.iter().all(|e| e.ty() != Type::Str) && arms_ok(&s.arms, budget)
            }
            // A `match` on an `int` or `bool` (a `str` one may call the comparison helper): a
            // table lookup is its one shared body, a jump match all of its arms.
            Step::Match(s) if s.scrutinee.ty() != Type::Str => {
                // (The shared body assigns no `str`, or there would be no plan.)
                match super::lookup::plan(s, 0, None) {
                    Some(_) => true,
                    None => s
                        .arms
                        .iter()
                        .all(|a| a.arm.step.as_ref().is_none_or(|s| step(s, budget))),
                }
            }
            Step::Construct(_) | Step::Yield(_) => true,
            // Strings assigned to an accumulator go through a helper.
            Step::Update(u) => u.assigns.iter().all(|(_, e)| e.ty() != Type::Str),
            _ => false,
        }
    }
    fn arms_ok(arms: &Arms, budget: &mut i32) -> bool {
        arms.arms
            .iter()
            .all(|arm| arm.step.as_ref().is_none_or(|s| step(s, budget)))
    }
    let mut budget = 8;
    arms_ok(arms, &mut budget)
}

/// The text of a `str` literal of at most 16 bytes (compared inline, see `Expr::StrCmp`).
/// `s == "..."` or `s != "..."` (either way round) against a literal of at most 16 bytes: the
/// literal and the other side.
fn short_str_test(e: &Expr) -> Option<(&str, &Expr)> {
    let Expr::StrCmp(CmpOp::Eq | CmpOp::Ne, a, b) = e else {
        return None;
    };
    match (short_literal(a), short_literal(b)) {
        (Some(text), _) => Some((text, b)),
        (None, Some(text)) => Some((text, a)),
        (None, None) => None,
    }
}

fn short_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Str(text) if text.len() <= 16 => Some(text),
        _ => None,
    }
}

/// For `x % d == 0` with `d` > 1 not a power of two: (`inverse`, `offset`, `bound`, `shift`)
/// such that `x` is a multiple of `d` exactly when `rotr(x * inverse + offset, shift) <=
/// bound`, unsigned, in 64-bit wrapping arithmetic; `x` is known to be >= 0 when `unsigned`.
fn multiple_test(d: u64, unsigned: bool) -> (u64, u64, u64, u32) {
    let shift = d.trailing_zeros();
    let odd = d >> shift;
    // Newton's iteration doubles the correct low bits, from 3 (an odd number is its own
    // inverse modulo 8): 3, 6, 12, 24, 48, 96.
    let mut inverse = odd;
    for _ in 0..5 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
    }
    debug_assert_eq!(odd.wrapping_mul(inverse), 1);
    if unsigned {
        (inverse, 0, u64::MAX / d, shift)
    } else {
        let offset = (i64::MAX as u64 / odd) & !((1u64 << shift) - 1);
        (inverse, offset, (2 * offset) >> shift, shift)
    }
}

/// `x % k` with a literal `k` whose zero test needs a division: not 0, -1 or `i64::MIN` and not
/// a power of two (a mask).
fn remainder_test(e: &Expr) -> Option<(&Expr, i64)> {
    match e {
        Expr::IntArith(IntOp::Rem, x, k, _) => match **k {
            Expr::Int(k) if k != 0 && k != -1 && k != i64::MIN && !(k > 0 && k & (k - 1) == 0) => {
                Some((x, k))
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::multiple_test;

    /// `multiple_test` against `%` for divisors small, even, odd, large and near the bounds,
    /// at and around their multiples and at the ends of the range.
    #[test]
    fn the_inverse_multiplication_test_is_the_remainder_test() {
        let mut divisors: Vec<u64> = (3..300).filter(|d: &u64| !d.is_power_of_two()).collect();
        divisors.extend([
            1_000_000_007,
            6 << 40,
            (1 << 62) + 1,
            (1 << 62) + (1 << 61),
            i64::MAX as u64,
            i64::MAX as u64 - 1,
            (i64::MAX as u64 / 3) * 2,
        ]);
        for d in divisors {
            let mut xs = vec![i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, 0, 1, -1];
            let di = d as i64;
            for m in [1i64, 2, 3, 7, 1 << 20, i64::MAX / di, i64::MAX / di - 1] {
                if let Some(x) = m.checked_mul(di) {
                    xs.extend([x, x - 1, x.wrapping_add(1), -x, 1 - x, -x - 1]);
                }
            }
            for x in xs {
                let multiple = x.rem_euclid(di) == 0;
                for unsigned in [false, true] {
                    if unsigned && x < 0 {
                        continue;
                    }
                    let (inverse, offset, bound, shift) = multiple_test(d, unsigned);
                    let t = (x as u64)
                        .wrapping_mul(inverse)
                        .wrapping_add(offset)
                        .rotate_right(shift);
                    assert_eq!(t <= bound, multiple, "{x} % {d} (unsigned: {unsigned})");
                }
            }
        }
    }
}
