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
/// `eprintln` to `err`. Set for a registry with
/// [`Registry::set_output`](crate::Registry::set_output), or for one run with
/// [`Flow::run_with_output`](crate::Flow::run_with_output); [`CaptureSink`] keeps the text.
///
/// ```
/// use koru_jit::{CompileOptions, Engine, Inputs, OutputSink, Registry, RunLimits};
/// use std::sync::{Arc, Mutex};
/// /// Collects lines with a prefix per stream.
/// #[derive(Default)]
/// struct Log(Mutex<Vec<String>>);
/// impl OutputSink for Log {
///     fn out(&self, text: &str) {
///         self.0.lock().unwrap().push(format!("out: {text}"));
///     }
///     fn err(&self, text: &str) {
///         self.0.lock().unwrap().push(format!("err: {text}"));
///     }
/// }
/// let log = Arc::new(Log::default());
/// let mut registry = Registry::with_std();
/// registry.set_output(log.clone());
/// let flow = Engine::new(registry)
///     .compile("t", "~std.io:print(text: \"a\")\n~std.io:eprintln(message: \"b\")", &CompileOptions::default())
///     .unwrap();
/// flow.run(&Inputs::new(), &RunLimits::default()).unwrap();
/// assert_eq!(*log.0.lock().unwrap(), ["out: a", "err: b\n"]);
/// ```
pub trait OutputSink: Send + Sync {
    /// Program output: `std.io:print`, `println` (with its line break), `print.ln`.
    fn out(&self, text: &str);
    /// Error output: `std.io:eprintln` (with its line break).
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

/// Keeps everything written, for embedders and tests. To bound what a run may print, set
/// `RunLimits::max_output_bytes`: the run itself stops at the bound, in every tier.
#[derive(Debug, Default)]
pub struct CaptureSink {
    out: Mutex<String>,
    err: Mutex<String>,
}

impl CaptureSink {
    /// An empty sink.
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

    fn keep(buffer: &Mutex<String>, text: &str) {
        buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(text);
    }
}

impl OutputSink for CaptureSink {
    fn out(&self, text: &str) {
        CaptureSink::keep(&self.out, text);
    }

    fn err(&self, text: &str) {
        CaptureSink::keep(&self.err, text);
    }
}

/// The longest prefix of `text` of at most `room` bytes that ends at a character boundary.
pub(crate) fn prefix_within(text: &str, room: usize) -> &str {
    if text.len() <= room {
        text
    } else {
        &text[..text.floor_char_boundary(room)]
    }
}

/// The text of one `std.io` write being formatted, kept within `room` bytes (what the run's output
/// bound leaves): a piece that does not fit is cut at a character boundary and everything after it
/// is dropped, so formatting never holds more than the room, whatever the template and its holes.
pub(crate) struct BoundedText<'t> {
    text: &'t mut String,
    room: usize,
    cut: bool,
}

impl<'t> BoundedText<'t> {
    /// Starts a write in `text` (emptied; its capacity is kept).
    pub fn new(text: &'t mut String, room: usize) -> BoundedText<'t> {
        text.clear();
        BoundedText {
            text,
            room,
            cut: false,
        }
    }

    #[inline]
    pub fn push(&mut self, piece: &str) {
        let len = self.text.len();
        // Once cut, the room is what was kept: only empty pieces fit.
        if piece.len() <= self.room - len && piece.len() <= self.text.capacity() - len {
            self.text.push_str(piece);
        } else {
            self.push_cold(piece);
        }
    }

    /// A piece that does not fit in the room, or needs the buffer to grow: grows it as `String`
    /// does (doubling), but never past the room, so the buffer of a bounded run holds at most the
    /// bound.
    #[cold]
    #[inline(never)]
    fn push_cold(&mut self, piece: &str) {
        if self.cut {
            return;
        }
        let len = self.text.len();
        let piece = if piece.len() <= self.room - len {
            piece
        } else {
            self.cut = true;
            prefix_within(piece, self.room - len)
        };
        if self.text.capacity() - len < piece.len() {
            let want = (len + piece.len())
                .max(self.text.capacity().saturating_mul(2))
                .min(self.room.max(len + piece.len()));
            self.text.reserve_exact(want - len);
        }
        self.text.push_str(piece);
        if self.cut {
            self.room = self.text.len();
        }
    }

    /// Whether something did not fit.
    pub fn cut(&self) -> bool {
        self.cut
    }

    pub fn as_str(&self) -> &str {
        self.text
    }
}

impl std::fmt::Write for BoundedText<'_> {
    fn write_str(&mut self, piece: &str) -> std::fmt::Result {
        self.push(piece);
        if self.cut {
            // Stops the formatting of a float past the bound.
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}
