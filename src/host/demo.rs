//! The example host events the command line registers, from the Koru articles (SPEC 9) and the
//! benchmark workloads. Each parses its string arguments the way Koru's string-typed host events do.

use super::{HostError, Registry, RegistryError, Reply};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

fn parse(text: &str) -> Result<i64, HostError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| HostError::new(format!("`{text}` is not an integer")))
}

/// Registers `add`, `multiply`, `subtract` and `produce`. `add` also adds both numbers into
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
    Ok(())
}
