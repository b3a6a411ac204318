//! Auto-discharge (SPEC 12): when a run ends, however it ends, the obligations still open are
//! released newest first by calling the discharging event of their state that the flow's scope
//! allows. The calls cost no fuel and obey no run limit; each one's failure (a host error or
//! panic) is reported and the rest still run. Both tiers keep the open obligations in the run
//! state, so this runs the same calls in the same order whatever tier ran the flow.

use crate::host::{
    BranchPlan, FieldPlan, Implementation, OutputSink, Registry, ReplyOut, ReplyPlan,
};
use crate::ir::Program;
use crate::outcome::{ErrorCode, Outcome};
use crate::state::RunState;
use std::sync::Arc;

/// One discharging call made when the run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discharged {
    /// The discharging event called (`file.close`).
    pub event: Arc<str>,
    /// The handle passed to it (`file_1`).
    pub handle: String,
    /// Why the call failed (`HostError` or `HostPanic`, and the message); the handle then stays
    /// open and counts in [`Obligations::handles`].
    pub failure: Option<(ErrorCode, String)>,
}

/// An obligation left open (auto-discharge off, [`crate::RunLimits::keep_handles_open`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenObligation {
    /// Its state (`opened`).
    pub state: Arc<str>,
    /// The handle (`file_1`).
    pub handle: String,
    /// The event that opened it (`file.open`).
    pub event: Arc<str>,
}

/// What became of a run's obligations when it ended (SPEC 12).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Obligations {
    /// The discharging calls, in the order they were made (newest obligation first).
    pub discharged: Vec<Discharged>,
    /// The obligations left open, oldest first (auto-discharge off); empty otherwise.
    pub open_handles: Vec<OpenObligation>,
    /// How many obligations are still open: 0 unless a discharge failed or auto-discharge is off.
    pub handles: u64,
    /// Whether the program can open obligations at all (its JSON shows these fields only then).
    pub(crate) tracked: bool,
    /// Auto-discharge was off.
    pub(crate) kept_open: bool,
}

/// A run's outcome and what became of its obligations: what [`crate::Flow::run_report`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    /// The outcome, as [`crate::Flow::run`] returns it.
    pub outcome: Outcome,
    /// The obligations discharged (or left open) when the run ended.
    pub obligations: Obligations,
}

#[cfg(feature = "json")]
impl RunReport {
    /// The outcome's JSON (SPEC 6) with, for a program that can open obligations, `discharged`
    /// and `handles` (or `open_handles` and `handles` with auto-discharge off). Hidden: the wire
    /// format of the command line and the server.
    #[doc(hidden)]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let mut body = self.outcome.to_json();
        let o = &self.obligations;
        if o.tracked {
            if o.kept_open {
                body["open_handles"] = o
                    .open_handles
                    .iter()
                    .map(|h| json!({"state": &*h.state, "handle": h.handle, "event": &*h.event}))
                    .collect();
            } else {
                body["discharged"] = o
                    .discharged
                    .iter()
                    .map(|d| match &d.failure {
                        None => json!({"event": &*d.event, "handle": d.handle}),
                        Some((code, message)) => json!({
                            "event": &*d.event,
                            "handle": d.handle,
                            "error": {"code": code.as_str(), "message": message},
                        }),
                    })
                    .collect();
            }
            body["handles"] = json!(o.handles);
        }
        body
    }
}

/// Ends a run's obligations: discharges them newest first (or lists them, with `keep_open`),
/// emptying the run state's list.
pub(crate) fn finish(
    program: &Program,
    registry: &Registry,
    state: &mut RunState,
    output: &dyn OutputSink,
    keep_open: bool,
) -> Obligations {
    let mut report = Obligations {
        tracked: !program.obligation_states.is_empty(),
        kept_open: keep_open,
        ..Obligations::default()
    };
    if state.handles.is_empty() {
        return report;
    }
    let handles = std::mem::take(&mut state.handles);
    state.handle_bytes = 0;
    if keep_open {
        report.handles = handles.len() as u64;
        report.open_handles = handles
            .into_iter()
            .map(|h| OpenObligation {
                state: program.obligation_states[h.state as usize].name.clone(),
                handle: h.text,
                event: h.event,
            })
            .collect();
        return report;
    }
    for handle in handles.into_iter().rev() {
        let state_info = &program.obligation_states[handle.state as usize];
        let Some((host, event)) = &state_info.discharge else {
            // Only a program with check errors (E0212) lacks one, and it never runs.
            report.handles += 1;
            continue;
        };
        let failure = call(registry, *host, event, &handle.text, state, output).err();
        if failure.is_some() {
            report.handles += 1;
        }
        report.discharged.push(Discharged {
            event: event.clone(),
            handle: handle.text,
            failure,
        });
    }
    report
}

/// Calls discharging event `host` with `handle`, free of fuel and limits; a panic is caught.
fn call(
    registry: &Registry,
    host: usize,
    event: &Arc<str>,
    handle: &str,
    state: &mut RunState,
    output: &dyn OutputSink,
) -> Result<(), (ErrorCode, String)> {
    let sig = &registry.events()[host].sig;
    let Implementation::Closure(closure) = &registry.events()[host].implementation else {
        return Err((
            ErrorCode::HostError,
            format!("event `{event}` has no implementation"),
        ));
    };
    // The reply lands in scratch slots: nothing reads it.
    let mut words = 0u32;
    let mut strings = 0u32;
    let mut branches = smallvec::SmallVec::<[BranchPlan; 2]>::new();
    for branch in sig.result_branch_slice() {
        let mut fields = smallvec::SmallVec::new();
        for ty in branch.payload.types() {
            fields.push(FieldPlan {
                ty,
                offset: words,
                buffer: strings,
            });
            words += ty.words();
            strings += u32::from(ty == crate::types::Type::Str);
        }
        branches.push(BranchPlan {
            name: branch.name.clone(),
            payload: branch.payload.clone(),
            fields,
        });
    }
    let only_identity = crate::host::ReplyPlan::identity_field(&branches);
    let plan = ReplyPlan {
        event: event.clone(),
        span: crate::span::Span::default(),
        branches,
        only_identity,
        obligations: None,
    };
    let mut frame = vec![0u64; words as usize];
    let mut buffers = vec![String::new(); strings as usize];
    let args = [handle.as_ptr() as u64, handle.len() as u64];
    let output_used = std::cell::Cell::new(state.output_used);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut out = ReplyOut {
            frame: &mut frame,
            buffers: &mut buffers,
            plan: &plan,
            run: crate::host::RunView {
                output,
                output_used: &output_used,
                // Free of limits: a discharge may write past the run's output bound.
                output_limit: u64::MAX,
                handles_opened: state.handles_opened,
            },
        };
        (closure.erased)(&args, &mut out)
    }));
    state.output_used = output_used.get();
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err((ErrorCode::HostError, error.into_message())),
        Err(panic) => Err((ErrorCode::HostPanic, crate::host::panic_message(&panic))),
    }
}
