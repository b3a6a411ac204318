//! The standard library events (SPEC 5) and the output sink they write to.

use crate::limits::InterruptHandle;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The standard library events; the engine implements them itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdEvent {
    /// `std.io:print(text: str)`
    Print,
    /// `std.io:println(text: str)`
    Println,
    /// `std.io:eprintln(message: str)`
    Eprintln,
    /// `std.io:print.ln("template with {{ holes }}")`
    PrintTemplate,
}

/// The declarations of the standard library, in Koru syntax.
pub const STD_DECLARATIONS: &str = "\
~event std.io:print { text: []const u8 }
~event std.io:println { text: []const u8 }
~event std.io:eprintln { message: []const u8 }
~event std.io:print.ln { template: []const u8 }
";

pub fn std_event(name: &str) -> Option<StdEvent> {
    Some(match name {
        "std.io:print" => StdEvent::Print,
        "std.io:println" => StdEvent::Println,
        "std.io:eprintln" => StdEvent::Eprintln,
        "std.io:print.ln" => StdEvent::PrintTemplate,
        _ => return None,
    })
}

/// Where `std.io` output goes. Program output (`print`, `println`, `print.ln`) goes to `out`,
/// `eprintln` to `err`.
pub trait OutputSink: Send + Sync {
    fn out(&self, text: &str);
    fn err(&self, text: &str);
}

/// The process's stdout and stderr (the default).
#[derive(Debug, Default)]
pub struct StdoutSink;

impl OutputSink for StdoutSink {
    fn out(&self, text: &str) {
        // A closed stdout (for example a pipe whose reader exited) must not take the engine down.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }

    fn err(&self, text: &str) {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// Keeps everything written, for embedders and tests; [`CaptureSink::bounded`] keeps at most a
/// number of bytes and stops the run past it.
#[derive(Debug, Default)]
pub struct CaptureSink {
    out: Mutex<String>,
    err: Mutex<String>,
    /// Bytes kept (out and err together), the bound, and the run to stop past it.
    kept: AtomicUsize,
    bound: Option<(usize, InterruptHandle)>,
    exceeded: AtomicBool,
}

impl CaptureSink {
    pub fn new() -> CaptureSink {
        CaptureSink::default()
    }

    /// Keeps at most `limit` bytes of output and error output together. A write past it is
    /// dropped whole and fires `interrupt`: give the run that handle in its `RunLimits` and it
    /// stops at its next dispatch or loop check (`exhausted`, `Interrupted`); [`Self::exceeded`]
    /// tells that the bound was the cause.
    pub fn bounded(limit: usize, interrupt: InterruptHandle) -> CaptureSink {
        CaptureSink {
            bound: Some((limit, interrupt)),
            ..CaptureSink::default()
        }
    }

    /// Whether a write went past the bound.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Takes the program output captured so far.
    pub fn take_out(&self) -> String {
        std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes the error output captured so far.
    pub fn take_err(&self) -> String {
        std::mem::take(&mut *self.err.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn keep(&self, buffer: &Mutex<String>, text: &str) {
        if let Some((limit, interrupt)) = &self.bound {
            if self.kept.load(Ordering::Relaxed) + text.len() > *limit {
                self.exceeded.store(true, Ordering::Relaxed);
                interrupt.interrupt();
                return;
            }
            self.kept.fetch_add(text.len(), Ordering::Relaxed);
        }
        buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(text);
    }
}

impl OutputSink for CaptureSink {
    fn out(&self, text: &str) {
        self.keep(&self.out, text);
    }

    fn err(&self, text: &str) {
        self.keep(&self.err, text);
    }
}
