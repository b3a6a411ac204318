//! The example host events the command line registers, from the Koru articles (SPEC 9) and the
//! benchmark workloads. Each parses its string arguments the way Koru's string-typed host events do.

use super::{Args, HostError, Registry, RegistryError, Reply};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

fn parse(text: &str) -> Result<i64, HostError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| HostError::new(format!("`{text}` is not an integer")))
}

/// Registers `add`, `multiply`, `subtract`, `produce` and the `file.*` events. `add` also adds both numbers into
/// `accumulator`, as in Koru's nested-loop benchmark.
pub fn register_demo_events(
    registry: &mut Registry,
    accumulator: Arc<AtomicI64>,
) -> Result<(), RegistryError> {
    registry.event(
        "~event add { a: []const u8, b: []const u8 } | sum []const u8",
        move |a: &str, b: &str| {
            let sum = parse(a)? + parse(b)?;
            accumulator.fetch_add(sum, Ordering::Relaxed);
            Ok::<_, HostError>(sum.to_string())
        },
    )?;
    registry.event(
        "~event multiply { value: []const u8, by: []const u8 } | product []const u8",
        |value: &str, by: &str| {
            let product = parse(value)?
                .checked_mul(parse(by)?)
                .ok_or("product overflows")?;
            Ok::<_, HostError>(product.to_string())
        },
    )?;
    registry.event(
        "~event subtract { value: []const u8, by: []const u8 } | difference []const u8",
        |value: &str, by: &str| {
            let difference = parse(value)?
                .checked_sub(parse(by)?)
                .ok_or("difference overflows")?;
            Ok::<_, HostError>(difference.to_string())
        },
    )?;
    registry.event("~event produce {} | value { num: []const u8 }", || {
        Reply::branch("value").field("num", "42")
    })?;
    register_file_events(registry)
}

/// `file.open`, `file.read` and `file.close`: obligations (SPEC 12) to try from the command
/// line. Nothing touches the file system: `file.open` names its handles `file_1`, `file_2`, ...
/// in the order the run opens them (counted per run, by the run state: right under pooled run
/// states and concurrent runs), and `file.close` prints `closed file_N` to the run's output.
fn register_file_events(registry: &mut Registry) -> Result<(), RegistryError> {
    registry.declare(
        "~event file.open { path: str } | opened str[opened!] | failed { reason: str }\n\
         ~event file.read { handle: str[opened] } | data str\n\
         ~event file.close { handle: str[!opened] }\n",
    )?;
    registry.implement_with_args("file.open", |args: &Args<'_>| {
        if args.str(0).is_empty() {
            Reply::branch("failed").field("reason", "empty path")
        } else {
            Reply::branch("opened").value(format!("file_{}", args.handles_opened() + 1))
        }
    })?;
    registry.implement_with_args("file.read", |args: &Args<'_>| {
        format!("data of {}", args.str(0))
    })?;
    registry.implement_with_args("file.close", |args: &Args<'_>| {
        args.print(&format!("closed {}\n", args.str(0)));
    })?;
    Ok(())
}
