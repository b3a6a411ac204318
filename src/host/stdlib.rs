//! The standard library events (SPEC 5) and the output sink they write to.

use std::io::Write;
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

/// Keeps everything written, for embedders and tests.
#[derive(Debug, Default)]
pub struct CaptureSink {
    out: Mutex<String>,
    err: Mutex<String>,
}

impl CaptureSink {
    pub fn new() -> CaptureSink {
        CaptureSink::default()
    }

    /// Takes the program output captured so far.
    pub fn take_out(&self) -> String {
        std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes the error output captured so far.
    pub fn take_err(&self) -> String {
        std::mem::take(&mut *self.err.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl OutputSink for CaptureSink {
    fn out(&self, text: &str) {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(text);
    }

    fn err(&self, text: &str) {
        self.err
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(text);
    }
}
