//! The `koru-jit` binary as the tests start it. Every test that spawns the binary goes through
//! [`koru_jit`] (or [`koru_jit_argv`] for a shell command line), so that it runs through the
//! target's runner when Cargo has one: the aarch64 suite (`.ci/aarch64.sh`) sets
//! `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"`, and
//! an aarch64 executable cannot be started directly on an x86-64 machine without binfmt_misc.

use std::process::Command;

/// The runner of the target these tests were built for, as Cargo reads it from
/// `CARGO_TARGET_<TRIPLE>_RUNNER`: its words split on whitespace (program, then arguments).
/// Empty when there is none (a native run). Only the variable of this build's own target counts:
/// the native suite, run with the aarch64 runner set, starts its x86-64 binary directly.
pub fn runner() -> Vec<String> {
    let triple = env!("KORU_TARGET").to_uppercase().replace(['-', '.'], "_");
    std::env::var(format!("CARGO_TARGET_{triple}_RUNNER"))
        .map(|runner| runner.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The words that start the binary: the runner's, then the binary's path.
pub fn koru_jit_argv() -> Vec<String> {
    let mut argv = runner();
    // Cargo builds the binary for the tests only with the feature `cli` (its required
    // feature); the tests that start it require that feature too (Cargo.toml).
    match option_env!("CARGO_BIN_EXE_koru-jit") {
        Some(binary) => argv.push(binary.to_string()),
        None => panic!("the koru-jit binary is built for tests with `--features cli`"),
    }
    argv
}

/// A command that starts the binary (through the runner, if any); add its arguments.
pub fn koru_jit() -> Command {
    let argv = koru_jit_argv();
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    command
}
