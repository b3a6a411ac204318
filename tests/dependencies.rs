//! The library's default dependency set (issue 13): an embedder who writes
//! `koru-jit = "0.1"` gets the engine only, not the command line, the HTTP server or the
//! benchmark suite. `cargo tree` reads it from Cargo.toml and Cargo.lock.

use std::collections::BTreeSet;
use std::process::Command;

/// `cargo tree` of the library with its default features, normal dependencies only (no dev or
/// build dependencies), for this machine's target, one crate name per line.
fn tree(depth: Option<u32>) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args([
        "tree",
        "--locked",
        "--manifest-path",
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        "--edges",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]);
    if let Some(depth) = depth {
        command.args(["--depth", &depth.to_string()]);
    }
    let output = command.output().expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "koru-jit")
        .map(str::to_string)
        .collect()
}

#[test]
fn the_library_depends_by_default_on_what_the_engine_needs_only() {
    let direct = tree(Some(1));
    let expected: BTreeSet<String> = [
        // The front end: the parser's runtime, diagnostics rendering, errors.
        "lalrpop-util",
        "codespan-reporting",
        "thiserror",
        // The checker's "did you mean" (edit distances).
        "strsim",
        // The JIT tier.
        "cranelift-codegen",
        "cranelift-frontend",
        "cranelift-jit",
        "cranelift-module",
        "cranelift-native",
        "target-lexicon",
        // Small helpers of the hot paths, and the engine's tracing events.
        "itoa",
        "smallvec",
        "tracing",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(direct, expected);
    // Nothing of the command line, the server or the benchmarks, at any depth.
    let all = tree(None);
    for name in [
        "clap",
        "tokio",
        "axum",
        "hyper",
        "hyper-util",
        "toml",
        "serde",
        "serde_json",
        "tracing-subscriber",
        "rhai",
        "mlua",
    ] {
        assert!(
            !all.contains(name),
            "{name} is a default dependency: {all:?}"
        );
    }
}
