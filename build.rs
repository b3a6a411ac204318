//! Generates the parsers from `grammar/flow.lalrpop`: the table-driven one (`flow`), and a
//! recursive-ascent one (`flow_fast`) from the same grammar, which the front end tries first on
//! short items (see `src/syntax/parser.rs`). With feature `peers`, also tells the bench which
//! Rhai version Cargo.lock resolved (the crate does not export it). Tells the integration tests
//! the target triple they are built for (`KORU_TARGET`), so that they start the `koru-jit` binary
//! through that target's runner (`tests/common/binary.rs`).
use std::path::PathBuf;

fn main() {
    // `set_in_dir` keeps lalrpop from walking the whole crate (target/ included).
    lalrpop::Configuration::new()
        .set_in_dir("grammar")
        .emit_rerun_directives(true)
        .process()
        .expect("lalrpop failed to generate the flow parser");
    // The same grammar with recursive-ascent code generation, written next to the output only
    // when it changed (lalrpop then skips it when its hash matches).
    let grammar = std::fs::read_to_string("grammar/flow.lalrpop").expect("grammar/flow.lalrpop");
    let fast = grammar.replacen("\ngrammar;", "\n#[recursive_ascent]\ngrammar;", 1);
    assert_ne!(
        fast, grammar,
        "the grammar declares `grammar;` on a line of its own"
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dir = out.join("fast_grammar");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/fast_grammar");
    let file = dir.join("flow_fast.lalrpop");
    if std::fs::read_to_string(&file).ok().as_deref() != Some(fast.as_str()) {
        std::fs::write(&file, fast).expect("write flow_fast.lalrpop");
    }
    lalrpop::Configuration::new()
        .set_in_dir(&dir)
        .set_out_dir(&out)
        .process()
        .expect("lalrpop failed to generate the recursive-ascent flow parser");
    let target = std::env::var("TARGET").expect("TARGET");
    println!("cargo:rustc-env=KORU_TARGET={target}");
    if std::env::var_os("CARGO_FEATURE_PEERS").is_some() {
        println!("cargo:rerun-if-changed=Cargo.lock");
        let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
        let version = lock
            .split("[[package]]")
            .find(|package| package.contains("\nname = \"rhai\"\n"))
            .and_then(|package| package.lines().find_map(|l| l.strip_prefix("version = ")))
            .map_or("unknown", |v| v.trim_matches('"'));
        println!("cargo:rustc-env=KORU_RHAI_VERSION={version}");
    }
}
