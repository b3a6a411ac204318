//! Hostile sources: every one gets a diagnostic with a code and a position, never a panic or a
//! stack overflow, and the engine stays usable afterwards.

use koru_jit::{Code, CompileOptions, Engine, Inputs, Registry, RunLimits};

fn first_error(source: &str) -> (Code, String) {
    let engine = Engine::new(Registry::with_std());
    let errors = engine
        .compile("hostile", source, &CompileOptions::default())
        .err()
        .expect("the source must be rejected");
    let d = &errors.diagnostics[0];
    (d.code, d.message.clone())
}

#[test]
fn deeply_nested_brackets_are_refused() {
    let source = format!(
        "~std.io:println(text: {}\"x\"{})",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    assert_eq!(first_error(&source).0, Code::E0105);
}

#[test]
fn long_unary_and_binary_chains_are_refused() {
    for source in [
        format!("~if({}true) | then |> a | else |> b", "!".repeat(100_000)),
        format!("~if({}1 > 0) | then |> a | else |> b", "-".repeat(100_000)),
        format!(
            "~if({} > 0) | then |> a | else |> b",
            vec!["1"; 100_000].join("+")
        ),
    ] {
        let (code, message) = first_error(&source);
        assert_eq!(code, Code::E0105, "{message}");
    }
}

#[test]
fn long_same_line_chains_are_refused() {
    let source = format!(
        "~std.io:print(text: \"\"){}",
        " |> std.io:print(text: \"\")".repeat(5000)
    );
    assert_eq!(first_error(&source).0, Code::E0105);
}

#[test]
fn a_long_chain_of_subflows_is_refused_once_inlined() {
    let n = 3000;
    let mut source = String::new();
    for i in 0..n {
        source.push_str(&format!(
            "~event s{i} {{ x: i64 }}\n| ok i64\n~s{i} = s{}(x: x) | ok v |> ok v\n",
            i + 1
        ));
    }
    source.push_str(&format!(
        "~event s{n} {{ x: i64 }}\n| ok i64\n~s{n} = ok x\n~s0(x: 1)\n"
    ));
    assert_eq!(first_error(&source).0, Code::E0105);
}

#[test]
fn exponential_inlining_is_refused() {
    let mut source = String::from("~event f0 {}\n| ok\n~f0 = ok\n");
    for i in 1..40 {
        source.push_str(&format!(
            "~event f{i} {{}}\n| ok\n~f{i} = f{0}() | ok |> f{0}() | ok |> ok\n",
            i - 1
        ));
    }
    source.push_str("~f39()\n");
    assert_eq!(first_error(&source).0, Code::E0105);
}

#[test]
fn oversized_sources_and_literals_are_refused() {
    assert_eq!(first_error(&" ".repeat(2 << 20)).0, Code::E0105);
    assert_eq!(
        first_error("~if(99999999999999999999999 > 0) | then |> a").0,
        Code::E0101
    );
    assert_eq!(
        first_error("~if(\u{0}\u{1} true) | then |> a").0,
        Code::E0101
    );
}

#[test]
fn the_engine_stays_usable_after_hostile_input() {
    let engine = Engine::new(Registry::with_std());
    for source in [
        "~(",
        "~)",
        "~~~",
        "|",
        "~for(",
        "\"",
        "~a = ",
        "~event",
        "~import",
        "~x() | y |>",
        "~f(a: {)",
    ] {
        assert!(
            engine
                .compile("hostile", source, &CompileOptions::default())
                .is_err(),
            "{source:?}"
        );
    }
    let flow = engine
        .compile(
            "fine",
            "~for(0..3) | each i |> _",
            &CompileOptions::default(),
        )
        .unwrap();
    assert!(flow
        .run(&Inputs::new(), &RunLimits::default())
        .unwrap()
        .value()
        .is_some());
}

/// Issue 11: 20,000 errors on one line of 300 KB used to render every one with the whole line
/// (6 GB of text); the report is the first 100, each with a window of the line.
#[test]
fn many_errors_on_one_long_line_render_a_bounded_report() {
    let fields: Vec<String> = (0..20_000).map(|i| format!("f{i}: u{i}")).collect();
    let source = format!(
        "~capture({{ {} }}) | as a |> _ | captured |> _",
        fields.join(", ")
    );
    let engine = Engine::new(Registry::with_std());
    let errors = engine
        .compile("hostile", &source, &CompileOptions::default())
        .err()
        .expect("unknown names");
    // The checker keeps the first 1,000 and counts the rest: an E0105 first says how many.
    assert_eq!(errors.diagnostics.len(), 1_001);
    assert_eq!(
        errors.diagnostics[0].message,
        "the source has 20000 errors: only the first 1000 are kept"
    );
    assert_eq!(errors.unreported(), 901);
    let text = errors.render(false);
    assert!(text.len() < 40_000, "{} bytes", text.len());
    assert!(text.ends_with("901 more errors (only the first 100 are shown)\n"));
    let json = errors.to_json().to_string();
    assert!(json.len() < 12_000, "{} bytes", json.len());
}
