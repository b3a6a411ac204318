//! Generates the parser from `grammar/flow.lalrpop`; with feature `peers`, also tells the bench
//! which Rhai version Cargo.lock resolved (the crate does not export it).
fn main() {
    // `set_in_dir` keeps lalrpop from walking the whole crate (target/ included).
    lalrpop::Configuration::new()
        .set_in_dir("grammar")
        .emit_rerun_directives(true)
        .process()
        .expect("lalrpop failed to generate the flow parser");
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
