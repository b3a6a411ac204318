//! Generates the parser from `grammar/flow.lalrpop`.
fn main() {
    // `set_in_dir` keeps lalrpop from walking the whole crate (target/ included).
    lalrpop::Configuration::new()
        .set_in_dir("grammar")
        .emit_rerun_directives(true)
        .process()
        .expect("lalrpop failed to generate the flow parser");
}
