//! The command line as a user runs it: the SPEC 9 examples, exit codes, and the JSON outcomes.

mod common;

use common::binary::koru_jit;

fn koru(args: &[&str]) -> (i32, String, String) {
    let output = koru_jit()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn write(name: &str, source: &str) -> String {
    let dir = std::env::temp_dir().join(format!("koru-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, source).unwrap();
    path.display().to_string()
}

#[test]
fn spec9_examples_run_from_the_command_line() {
    let (code, out, err) = koru(&["run", "examples/nested_loop.kz", "--json"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "{\"outcome\":\"ok\",\"value\":{\"branch\":\"done\"},\"fuel\":100000}\n"
        ),
        "{err}"
    );
    let (code, out, _) = koru(&["run", "examples/produce_consume.kz"]);
    assert_eq!((code, out.as_str()), (0, "[consume] received n = '42'\n"));
    let (code, out, _) = koru(&["run", "examples/if_input.kz", "--input", "value=42"]);
    assert_eq!((code, out.as_str()), (0, "Greater than 10\n"));
    let (_, out, _) = koru(&["run", "examples/if_input.kz", "--input", "value=3"]);
    assert_eq!(out, "10 or less\n");
}

#[test]
fn check_errors_go_to_stderr_with_snippets_and_exit_1() {
    let file = write("bad.kz", "~std.io:println(text: nope)\n");
    let (code, out, err) = koru(&["run", &file, "--json"]);
    assert_eq!(code, 1);
    assert!(err.contains("error[E0202]: unknown name `nope`"), "{err}");
    assert!(err.contains(":1:23"), "{err}");
    assert_eq!(
        out.lines().last().unwrap(),
        r#"{"outcome":"invalid","errors":[{"code":"E0202","message":"unknown name `nope`","line":1,"column":23,"notes":[{"kind":"help","message":"a flow input? declare it with `~input { nope: int }` (or float, bool, str), or give it a value (command line: `--input nope:int=...`)"}]}]}"#
    );
    let (code, out, _) = koru(&["check", &file, "--json"]);
    assert_eq!(code, 1);
    assert!(out.contains("\"E0202\""));
}

#[test]
fn runtime_errors_exit_3_and_exhaustion_exits_4() {
    let file = write(
        "overflow.kz",
        "~std.io:println(text: 9223372036854775807 + 1)\n",
    );
    let (code, out, _) = koru(&["run", &file, "--json"]);
    assert_eq!(code, 3);
    assert!(
        out.starts_with(r#"{"outcome":"error","code":"Overflow""#),
        "{out}"
    );
    assert!(out.contains(r#""line":1,"column":23"#), "{out}");
    let (code, out, _) = koru(&["run", "examples/nested_loop.kz", "--fuel", "10", "--json"]);
    assert_eq!(
        (code, out.as_str()),
        (
            4,
            "{\"outcome\":\"exhausted\",\"limit\":\"Fuel\",\"fuel\":10,\"last_event\":\"add\"}\n"
        )
    );
    let (code, out, _) = koru(&[
        "run",
        "examples/nested_loop.kz",
        "--max-iterations",
        "50",
        "--json",
    ]);
    assert_eq!(code, 4);
    assert!(out.contains("\"limit\":\"LoopIterations\""), "{out}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(koru(&["run", "does/not/exist.kz"]).0, 2);
    assert_eq!(
        koru(&["run", "examples/if_input.kz", "--input", "novalue"]).0,
        2
    );
    assert_eq!(koru(&["frobnicate"]).0, 2);
}

#[test]
fn an_input_not_given_is_an_unknown_name_with_a_hint() {
    // Without a declaration, `--input` declares a flow input; without it, `value` is not
    // declared at all, and the error says how to give or declare it.
    let file = write("undeclared.kz", UNDECLARED_IF);
    let (code, _, err) = koru(&["check", &file]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error[E0202]: unknown name `value`\n")
            && err.contains("= help: a flow input? declare it with `~input { value: int }` (or float, bool, str), or give it a value (command line: `--input value:int=...`)"),
        "{err}"
    );
    // The hint once per name, for the first 3 names; none for a name bound somewhere else in the
    // source (a binding out of scope, not a missing input) nor in a subflow's body.
    let file = write(
        "many_unknown.kz",
        "~if(a > b)\n| then |> r a + c + d + e\n| else |> if(true)\n    | then |> r 1\n~if(true)\n| then |> r x\n| else |> add(a: \"1\", b: \"2\")\n    | sum x |> _\n~event s {}\n| o i64\n~s = o zz\n",
    );
    let (code, out, _) = koru(&["check", &file, "--json"]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let hinted: Vec<(String, bool)> = json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let message = e["message"].as_str().unwrap();
            let name = message.split('`').nth(1).unwrap().to_string();
            let help = e["notes"][0]["message"].as_str().unwrap_or("");
            (name, help.contains("--input"))
        })
        .collect();
    let expected: Vec<(String, bool)> = [
        ("a", true),
        ("b", true),
        ("a", false),
        ("c", true),
        ("d", false),
        ("e", false),
        ("x", false),
        ("zz", false),
    ]
    .iter()
    .map(|(n, h)| (n.to_string(), *h))
    .collect();
    assert_eq!(hinted, expected);
}

/// SPEC 9's `if` example without its input declared (the example in `examples/` declares it).
const UNDECLARED_IF: &str = "~if(value > 10)\n| then |> std.io:println(text: \"Greater than 10\")\n| else |> std.io:println(text: \"10 or less\")\n";

#[test]
fn scopes_and_emit_work_from_the_command_line() {
    let (code, _, err) = koru(&["run", "examples/nested_loop.kz", "--scope", "std"]);
    assert_eq!(code, 1);
    assert!(err.contains("E0301"), "{err}");
    assert_eq!(
        koru(&["run", "examples/nested_loop.kz", "--scope", "demo"]).0,
        0
    );
    assert!(koru(&["run", "examples/nested_loop.kz", "--scope", "nope"])
        .2
        .contains("E0302"));
    let (code, out, _) = koru(&["emit", "examples/produce_consume.kz", "--what", "layout"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("flow state:"), "{out}");
    assert!(out.contains("produce.value.num"), "{out}");
    assert_eq!(
        koru(&["emit", "examples/produce_consume.kz", "--what", "ir"]).0,
        0
    );
}

/// Issue 16: `emit --what bytecode` prints the interpreter's register bytecode: the nested
/// loop is two `for` loops (entry and back-edge ops) around one host dispatch.
#[test]
fn emit_bytecode_prints_the_interpreters_ops() {
    let (code, out, err) = koru(&["emit", "examples/nested_loop.kz", "--what", "bytecode"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("bytecode: "), "{out}");
    assert_eq!(out.matches("forenter").count(), 2, "{out}");
    assert_eq!(out.matches("fornext").count(), 2, "{out}");
    assert_eq!(out.matches("invoke").count(), 1, "{out}");
    assert!(out.contains("; add(w"), "{out}");
    assert!(out.trim_end().ends_with("end"), "{out}");
}

/// Issue 13 point 8: `scopes` and `emit --what ast|ir` print text a user reads, not Rust `Debug`
/// dumps.
#[test]
fn scopes_and_emit_print_readable_text() {
    let (code, out, err) = koru(&["scopes"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"event std.io:println { text: str }"),
        "{out}"
    );
    assert!(
        lines.contains(&"event produce {} | value { num: str }"),
        "{out}"
    );
    assert!(
        lines.contains(&"event add { a: str, b: str } | sum str"),
        "{out}"
    );
    let demo = lines
        .iter()
        .position(|l| *l == "scope demo")
        .expect("scope demo");
    assert_eq!(lines[demo + 1..demo + 3], ["  include std", "  allow add"]);
    assert!(lines.contains(&"  allow std.*"), "{out}");
    assert!(!out.contains("Exact {") && !out.contains("Glob {"), "{out}");

    let (code, out, err) = koru(&["emit", "examples/produce_consume.kz", "--what", "ast"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "event consume { n: []const u8 } 1:1\n\
         \x20 | echoed { got: []const u8 } 2:1\n\
         subflow consume 4:1\n\
         \x20 invoke std.io:print.ln 4:12\n\
         \x20   arg \"[consume] received n = '{{n:s}}'\" 4:28\n\
         \x20   |> 5:5\n\
         \x20     construct echoed { got: n } 5:8\n\
         flow 7:1\n\
         \x20 invoke produce 7:2\n\
         \x20   | value v 7:12\n\
         \x20     invoke consume 7:25\n\
         \x20       arg n: v.num 7:33\n"
    );
    // Expressions in source form, and where each continuation attached (SPEC 2.3): on one line,
    // `| else` attaches to the last invocation before it, `println`, not to `if`.
    let file = write(
        "ast.kz",
        "~if(-x * 2 + 1 > 3 && !(x == 0)) | then |> std.io:println(text: \"a\") | else |> _\n",
    );
    let (code, out, err) = koru(&["emit", &file, "--what", "ast"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "flow 1:1\n\
         \x20 invoke if 1:2\n\
         \x20   arg ((((-x * 2) + 1) > 3) && !(x == 0)) 1:5\n\
         \x20   | then 1:34\n\
         \x20     invoke std.io:println 1:44\n\
         \x20       arg text: \"a\" 1:59\n\
         \x20       | else 1:70\n\
         \x20         _ 1:80\n"
    );
    // SPEC 11's `yield` step, with its branch and payload; `yield` stays a name elsewhere.
    let file = write(
        "ast_yield.kz",
        "~event t { yield: i64 } | each i64 | done\n~t = for(0..yield) | each i |> yield each i + 1\n",
    );
    let (code, out, err) = koru(&["emit", &file, "--what", "ast"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "event t { yield: i64 } 1:1\n\
         \x20 | each i64 1:25\n\
         \x20 | done 1:36\n\
         subflow t 2:1\n\
         \x20 invoke for 2:6\n\
         \x20   arg 0..yield 2:10\n\
         \x20   | each i 2:20\n\
         \x20     yield each (i + 1) 2:32\n"
    );
    // A syntax error: what parsed is shown, the error goes to stderr with exit 1.
    let file = write(
        "ast_bad.kz",
        "~std.io:println(text: \"ok\")\n~std.io:println(text: )\n",
    );
    let (code, out, err) = koru(&["emit", &file, "--what", "ast"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("flow 1:1\n"), "{out}");
    assert!(err.contains("error[E0"), "{err}");

    let (code, out, err) = koru(&[
        "emit",
        "examples/if_input.kz",
        "--what",
        "ir",
        "--input",
        "value=1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("  l0 value: int (flow input)"), "{out}");
    assert!(out.contains("  if (l0 > 10)"), "{out}");
}

/// Issue 13 point 8: `RUST_LOG` shows the engine's tracing events on stderr; without it,
/// nothing is printed; a filter that does not parse is a warning, not a failure.
#[test]
fn rust_log_shows_the_engines_tracing_events() {
    let run = |log: Option<&str>| {
        let mut command = koru_jit();
        command
            .args(["run", "examples/nested_loop.kz", "--tier", "jit"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match log {
            Some(log) => command.env("RUST_LOG", log),
            None => command.env_remove("RUST_LOG"),
        };
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (code, err) = run(Some("koru_jit=info"));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("INFO koru_jit: compiled to native code")
            && err.contains("flow=examples/nested_loop.kz"),
        "{err}"
    );
    // Without it (or with a filter that lets nothing through), stderr has the result line only.
    let result = "result: {\"branch\":\"done\"} (fuel 100000)\n";
    let (code, err) = run(None);
    assert_eq!((code, err.as_str()), (Some(0), result));
    let (code, err) = run(Some("koru_jit=warn"));
    assert_eq!((code, err.as_str()), (Some(0), result));
    let (code, err) = run(Some("koru_jit=loud"));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("RUST_LOG=\"koru_jit=loud\" is not a filter"),
        "{err}"
    );
}

#[test]
fn invalid_utf8_is_a_diagnostic_not_a_crash() {
    let dir = std::env::temp_dir().join(format!("koru-cli-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.kz");
    std::fs::write(&path, b"~std.io:println(text: \"\xff\xfe\")\n").unwrap();
    let (code, _, err) = koru(&["run", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("E0101") && err.contains("not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn bench_reports_every_runner_with_ratios_to_native() {
    let (code, out, err) = koru(&[
        "bench",
        "--workload",
        "nested-loop-typed",
        "--tier",
        "jit",
        "--tier",
        "native",
        "--rounds",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["runner"], "jit");
    assert!(results[0]["median_ns"].as_f64().unwrap() > 0.0);
    assert_eq!(results[1]["ratio_to_native"].as_f64(), Some(1.0));
    assert_eq!(koru(&["bench", "--workload", "nope"]).0, 2);
}

/// Issue 11: a source of one very long line with many errors (and long names) renders a bounded
/// report: each snippet a window of the line, the first 100 diagnostics and a count of the rest,
/// names cut; the JSON quotes no source beyond the cut names.
#[test]
fn diagnostics_of_a_huge_one_line_source_stay_small() {
    let fields: Vec<String> = (0..300).map(|i| format!("f{i}: zz{i}")).collect();
    let line = |long_name: usize| {
        format!(
            "~capture({{ q: {}, {} }}) | as a |> _ | captured |> _",
            "q".repeat(long_name),
            fields.join(", ")
        )
    };
    // Over the source limit (1 MiB): one E0105, whose snippet is a window of the line.
    let over = write("huge_line_over.kz", &line(1 << 20));
    let (code, _, err) = koru(&["check", &over]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("error[E0105]"),
        "{}",
        &err[..err.len().min(300)]
    );
    assert!(err.len() < 1000, "{err}");
    let (_, out, _) = koru(&["check", &over, "--json"]);
    assert!(out.len() < 300, "{out}");
    // Just under it: 301 unknown names on one line of 1 MB, the first a name of 1 MB.
    let under = write("huge_line_under.kz", &line((1 << 20) - 4000));
    let (code, _, err) = koru(&["check", &under]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.len() < 40_000,
        "{} bytes of text diagnostics",
        err.len()
    );
    assert_eq!(err.matches("error[E0202]").count(), 100);
    assert!(
        err.ends_with("201 more errors (only the first 100 are shown)\n"),
        "{}",
        &err[err.len().saturating_sub(300)..]
    );
    for line in err.lines() {
        assert!(line.chars().count() < 200, "a long snippet line: {line}");
    }
    // The long name is cut in the message; a name a megabyte into the line is shown in a window
    // (an ellipsis before it) with its real column.
    let long = format!("unknown name `{}…`", "q".repeat(63));
    assert!(
        err.starts_with(&format!("error[E0202]: {long}\n")),
        "{}",
        &err[..300]
    );
    let column = line((1 << 20) - 4000).find("zz50").unwrap() + 1;
    assert!(
        err.contains(&format!(
            "unknown name `zz50`\n  ┌─ {under}:1:{column}\n  │\n1 │ …"
        )),
        "{err}"
    );
    let (code, out, _) = koru(&["check", &under, "--json"]);
    assert_eq!(code, 1);
    assert!(
        out.len() < 12_000,
        "{} bytes of JSON diagnostics",
        out.len()
    );
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let shown = json["errors"].as_array().unwrap();
    assert_eq!(
        (shown.len(), json["more_errors"].as_u64()),
        (100, Some(201))
    );
    assert_eq!(shown[0]["message"], long);
    assert_eq!(shown[51]["message"], "unknown name `zz50`");
    assert_eq!(
        (shown[51]["line"].as_u64(), shown[51]["column"].as_u64()),
        (Some(1), Some(column as u64))
    );
}

/// The compile-bomb shape of issue 11: subflows each calling the one below twice, `levels` deep,
/// the top call behind `~if(go)`.
fn doubling_subflows(levels: u32) -> String {
    let mut source = String::from("~event f0 { x: i64 }\n| r i64\n~f0 = r x + 1\n");
    for k in 1..=levels {
        source.push_str(&format!(
            "~event f{k} {{ x: i64 }}\n| r i64\n~f{k} = f{0}(x: x) | r a |> f{0}(x: a) | r b |> r b\n",
            k - 1
        ));
    }
    source.push_str(&format!("~if(go) | then |> f{levels}(x: 0)\n"));
    source
}

/// Issue 11: `emit --what ir` of the 11-level source printed 123 MB (96% indentation of the
/// derived `Debug`) in 12 s; the IR printer writes one short line per step, so its size grows
/// with the IR, not with the IR times its depth, and `--max-bytes` bounds it.
#[test]
fn emit_ir_is_linear_in_the_ir_and_bounded() {
    let emit = |levels: u32, extra: &[&str]| {
        let file = write(&format!("doubling{levels}.kz"), &doubling_subflows(levels));
        let mut args = vec!["emit", &file, "--what", "ir", "--input", "go=false"];
        args.extend_from_slice(extra);
        let (code, out, err) = koru(&args);
        assert_eq!(code, 0, "{err}");
        out
    };
    let per_step = |out: &str| {
        let steps: usize = out
            .strip_prefix("program: ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", &out[..out.len().min(200)]));
        out.len() as f64 / steps as f64
    };
    // Per step, the text grows only with the digits of local numbers and the indentation up to
    // its cap (the derived `Debug` grew with the depth: 9.5 KB per step at 6 levels, 15 KB at 11).
    let small = emit(8, &[]);
    let large = emit(12, &[]);
    assert!(
        large.starts_with("program: 16383 steps"),
        "{}",
        &large[..100]
    );
    assert!(large.len() < 6_000_000, "{} bytes", large.len());
    let ratio = per_step(&large) / per_step(&small);
    assert!(
        ratio < 1.25,
        "bytes per step: {} at 8 levels, {} at 12",
        per_step(&small),
        per_step(&large)
    );
    assert!(large.lines().all(|line| line.chars().count() < 200));
    // Bounded: the first bytes (up to 10,000, cut at a character boundary) and one line saying
    // how many were left out.
    let cut = emit(12, &["--max-bytes", "10000"]);
    let (kept, note) = cut.trim_end().rsplit_once('\n').unwrap();
    let numbers: Vec<usize> = note
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(
        note,
        format!(
            "… {} more bytes not shown (the first {} of {}; raise --max-bytes)",
            numbers[0], numbers[1], numbers[2]
        )
    );
    let (left_out, shown, total) = (numbers[0], numbers[1], numbers[2]);
    assert_eq!((total, shown + left_out), (large.len(), large.len()));
    assert!((9_990..=10_000).contains(&shown), "{note}");
    assert!(
        large[..shown].starts_with(kept) && kept.len() + 1 >= shown,
        "{note}"
    );
}

#[test]
fn max_output_bytes_cuts_the_output_and_reports_the_output_limit() {
    let file = write(
        "chatty.kz",
        "~for(0..100)\n| each i |> std.io:println(text: \"0123456789\")\n",
    );
    for tier in ["interp", "jit", "auto"] {
        let (code, out, err) = koru(&[
            "run",
            &file,
            "--tier",
            tier,
            "--max-output-bytes",
            "25",
            "--json",
        ]);
        assert_eq!(code, 4, "{tier}: {err}");
        // Two lines and three bytes of the third; the outcome on a line of its own.
        assert_eq!(
            out,
            "0123456789\n0123456789\n012\n{\"outcome\":\"exhausted\",\"limit\":\"Output\",\"fuel\":3,\"last_event\":\"std.io:println\"}\n",
            "{tier}"
        );
    }
    let (code, out, err) = koru(&["run", &file, "--max-output-bytes", "11"]);
    assert_eq!((code, out.as_str()), (4, "0123456789\n"));
    assert!(
        err.contains("exhausted: Output limit reached (fuel 2, last event std.io:println)"),
        "{err}"
    );
}

/// Issue 13 point 8: which event a run-time error names, as the README says: the event whose
/// argument, guard or continuation holds the failing expression (the builtin for `for`/`if`
/// heads and guards, the subflow for its constructor), or the event called for a host error.
#[test]
fn runtime_errors_name_the_event_the_readme_says() {
    let cases = [
        (
            "~for(0..3)\n| each i |> std.io:println(text: 9223372036854775807 + i)\n",
            r#"{"outcome":"error","code":"Overflow","message":"integer overflow in `+`","event":"std.io:println","line":2,"column":34,"fuel":1}"#,
        ),
        (
            "~for(0..3)\n| each i when i / 0 > 1 |> _\n| each _ |> _\n",
            r#"{"outcome":"error","code":"DivisionByZero","message":"division by zero in `/`","event":"for","line":2,"column":15,"fuel":0}"#,
        ),
        (
            "~event f { x: i64 }\n| r i64\n~f = r x * 9223372036854775807\n~f(x: 2) | r v |> _\n",
            r#"{"outcome":"error","code":"Overflow","message":"integer overflow in `*`","event":"f","line":3,"column":8,"fuel":1}"#,
        ),
        (
            "~add(a: \"1\", b: \"x\")\n",
            r#"{"outcome":"error","code":"HostError","message":"`x` is not an integer","event":"add","line":1,"column":2,"fuel":1}"#,
        ),
    ];
    for (i, (source, json)) in cases.iter().enumerate() {
        let file = write(&format!("event_{i}.kz"), source);
        for tier in ["interp", "jit"] {
            let (code, out, err) = koru(&["run", &file, "--json", "--tier", tier]);
            assert_eq!(code, 3, "{tier} {source}: {err}");
            assert_eq!(out.lines().last(), Some(*json), "{tier} {source}");
        }
    }
}
/// Runs the binary with `stdin` as its standard input (written from a thread, which stops at a
/// closed pipe: the binary may refuse the rest).
fn koru_stdin(args: &[&str], stdin: Vec<u8>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = koru_jit()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// A source that declares a float and a str input, and prints both.
const RATE: &str =
    "~input { rate: f64, code: str }\n~std.io:println(text: code)\n|> std.io:println(text: rate / 100.0)\n";

/// The same flow with nothing declared.
const RATE_UNDECLARED: &str =
    "~std.io:println(text: code)\n|> std.io:println(text: rate / 100.0)\n";

#[test]
fn declared_inputs_convert_command_line_values_to_their_types() {
    let file = write("rate.kz", RATE);
    // `check` needs no values; `run` converts them: 5 to a float, 01234 kept as text.
    let (code, _, err) = koru(&["check", &file]);
    assert_eq!(code, 0, "{err}");
    let run = |args: &[&str]| {
        let mut all = vec!["run", file.as_str()];
        all.extend_from_slice(args);
        koru(&all)
    };
    let (code, out, err) = run(&["--input", "rate=5", "--input", "code=01234"]);
    assert_eq!((code, out.as_str()), (0, "01234\n0.05\n"), "{err}");
    // An explicit type equal to the declared one (any spelling of it).
    let (code, out, _) = run(&["--input", "rate:f64=2.5e1", "--input", "code:str=x"]);
    assert_eq!((code, out.as_str()), (0, "x\n0.25\n"));
    // Usage errors (exit 2) name the input and its type, before anything runs.
    for (args, expected) in [
        (
            &["--input", "rate=abc", "--input", "code=1"][..],
            "error: --input rate=abc: input `rate` is a float, and `abc` is not one\n",
        ),
        (
            &["--input", "rate:int=5", "--input", "code=1"][..],
            "error: --input rate:int=5: the source declares input `rate` as float, not int\n",
        ),
        (
            &["--input", "code=1"][..],
            "error: the flow needs input `rate` (float): give it with --input rate:float=VALUE or in --inputs\n",
        ),
        (
            &["--input", "rate=1", "--input", "code=1", "--input", "rate=2"][..],
            "error: input `rate` is given twice (--input rate=1, then --input rate=2)\n",
        ),
    ] {
        let (code, out, err) = run(args);
        assert_eq!((code, out.as_str(), err.as_str()), (2, "", expected), "{args:?}");
    }
    // A given value is checked by `check` too.
    let (code, _, err) = koru(&["check", &file, "--input", "rate=abc"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`abc` is not one"), "{err}");
}

#[test]
fn typed_inputs_and_the_untyped_guess_without_a_declaration() {
    let file = write("rate_undeclared.kz", RATE_UNDECLARED);
    // The untyped form guesses by the value's form, as before: 5 is an int, so `rate / 100.0`
    // is E0204, and 01234 the int 1234 (printed as such).
    let (code, _, err) = koru(&["run", &file, "--input", "rate=5", "--input", "code=01234"]);
    assert_eq!(code, 1);
    assert!(err.contains("error[E0204]"), "{err}");
    let (code, out, err) = koru(&["run", &file, "--input", "rate=5.0", "--input", "code=01234"]);
    assert_eq!((code, out.as_str()), (0, "1234\n0.05\n"), "{err}");
    // A type forces it.
    let (code, out, err) = koru(&[
        "run",
        &file,
        "--input",
        "rate:float=5",
        "--input",
        "code:str=01234",
    ]);
    assert_eq!((code, out.as_str()), (0, "01234\n0.05\n"), "{err}");
    let ints = write(
        "int_bool.kz",
        "~if(on)\n| then |> std.io:println(text: n + 1)\n| else |> _\n",
    );
    let (code, out, err) = koru(&[
        "run",
        &ints,
        "--input",
        "n:int=41",
        "--input",
        "on:bool=true",
    ]);
    assert_eq!((code, out.as_str()), (0, "42\n"), "{err}");
    let (code, _, err) = koru(&[
        "run",
        &ints,
        "--input",
        "n:str=41",
        "--input",
        "on:bool=true",
    ]);
    assert_eq!(code, 1, "a str in arithmetic: {err}");
    for (input, expected) in [
        ("n:int=4.5", "error: --input n:int=4.5: input `n` is an int, and `4.5` is not one (a whole number must be an int from -9223372036854775808 to 9223372036854775807)\n"),
        ("on:bool=1", "error: --input on:bool=1: input `on` is a bool, and `1` is not one (`true` or `false`)\n"),
        ("n:complex=1", "error: --input n:complex=1: unknown type `complex` (int, float, bool or str)\n"),
        ("1n=1", "error: --input 1n=1: `1n` is not an input name (letters, digits and `_`, not starting with a digit)\n"),
        ("n", "error: --input takes NAME=VALUE or NAME:TYPE=VALUE, got `n`\n"),
    ] {
        let (code, out, err) = koru(&["run", &ints, "--input", input, "--input", "on=true"]);
        assert_eq!((code, out.as_str(), err.as_str()), (2, "", expected), "{input}");
    }
}

#[test]
fn a_json_float_input_is_the_nearest_double() {
    // serde_json's default float reading was one unit in the last place off for this one (and
    // `--input x=...`, read by Rust's parser, was right): the two ways in differed.
    let file = write(
        "json_float.kz",
        "~input { x: float }\n~if(x == 1.6439345666815615)\n| then |> exact\n| else |> off\n",
    );
    for args in [
        ["--inputs", r#"{"x": 1.6439345666815615}"#],
        ["--input", "x=1.6439345666815615"],
    ] {
        let (code, _, err) = koru(&["run", &file, args[0], args[1]]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains(r#""branch":"exact""#), "{args:?}: {err}");
    }
}

#[test]
fn inputs_as_a_json_object() {
    let undeclared = write("json_undeclared.kz", RATE_UNDECLARED);
    let declared = write("json_declared.kz", RATE);
    let run = |file: &str, json: &str| koru(&["run", file, "--inputs", json]);
    // A fraction or an exponent makes a float, a string a str; an integer is an int.
    let (code, out, err) = run(&undeclared, r#"{"rate": 5.0, "code": "bob"}"#);
    assert_eq!((code, out.as_str()), (0, "bob\n0.05\n"), "{err}");
    let (code, out, err) = run(&undeclared, r#"{"rate": 5e0, "code": "bob"}"#);
    assert_eq!((code, out.as_str()), (0, "bob\n0.05\n"), "{err}");
    let (code, _, err) = run(&undeclared, r#"{"rate": 5, "code": "bob"}"#);
    assert_eq!(code, 1, "an int in float arithmetic: {err}");
    // Declared: an int converts to a float input, a number to a str input.
    let (code, out, err) = run(&declared, r#"{"rate": 5, "code": 7}"#);
    assert_eq!((code, out.as_str()), (0, "7\n0.05\n"), "{err}");
    // Mixed with --input, each name once.
    let (code, out, err) = koru(&[
        "run",
        &declared,
        "--inputs",
        r#"{"rate": 1.5}"#,
        "--input",
        "code=x",
    ]);
    assert_eq!((code, out.as_str()), (0, "x\n0.015\n"), "{err}");
    for (json, expected) in [
        (
            r#"{"rate": 99999999999999999999, "code": "a"}"#,
            "error: --inputs: input `rate`: the integer 99999999999999999999 does not fit an int (-9223372036854775808 to 9223372036854775807); write a float with a fraction or an exponent, or a string\n",
        ),
        (
            r#"{"rate": 1.0, "code": null}"#,
            "error: --inputs: input `code`: null is not an input value (a number, true, false or a string)\n",
        ),
        (
            r#"{"rate": 1.0, "code": [1]}"#,
            "error: --inputs: input `code`: [1] is not an input value (a number, true, false or a string)\n",
        ),
        (
            r#"{"rate": "x", "code": "a"}"#,
            "error: --inputs: input `rate` is a float, and the JSON value \"x\" (str) does not convert to it\n",
        ),
        (
            r#"{"rate": 1.0, "code": "a", "rate": 2.0}"#,
            "error: input `rate` is given twice (--inputs, then --inputs)\n",
        ),
        (
            "[1, 2]",
            "error: --inputs takes a JSON object of input values: invalid type: sequence, expected a map at line 1 column 0\n",
        ),
        (
            r#"{"rate": 1.0,"#,
            "error: --inputs takes a JSON object of input values: EOF while parsing a value at line 1 column 13\n",
        ),
    ] {
        let (code, out, err) = run(&declared, json);
        assert_eq!((code, out.as_str(), err.as_str()), (2, "", expected), "{json}");
    }
    let (code, _, err) = koru(&[
        "run",
        &declared,
        "--inputs",
        r#"{"rate": 1.0, "code": "a"}"#,
        "--input",
        "code=b",
    ]);
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "error: input `code` is given twice (--input code=b, then --inputs)\n"
        )
    );
}

#[test]
fn a_source_on_stdin() {
    let (code, out, err) = koru_stdin(
        &["run", "-", "--input", "value=42"],
        b"~input { value: int }\n~std.io:println(text: value + 1)\n".to_vec(),
    );
    assert_eq!((code, out.as_str()), (0, "43\n"), "{err}");
    // Diagnostics name it `<stdin>`.
    let (code, _, err) = koru_stdin(&["check", "-"], b"~std.io:println(text: x + )\n".to_vec());
    assert_eq!(code, 1);
    assert!(err.contains("<stdin>:1:"), "{err}");
    let (code, out, _) = koru_stdin(
        &["check", "-", "--json"],
        b"\n~std.io:println(text: nope)\n".to_vec(),
    );
    assert_eq!(code, 1);
    assert!(out.contains(r#""line":2,"column":23"#), "{out}");
    let (code, out, err) = koru_stdin(
        &["emit", "-", "--what", "ir"],
        b"~std.io:println(text: \"hi\")\n".to_vec(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("std.io:println"), "{out}");
    let (code, out, err) = koru_stdin(
        &["emit", "-", "--what", "ast"],
        b"~if(true)\n| then |> _\n".to_vec(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("if"), "{out}");
    let (code, _, err) = koru_stdin(&["run", "-"], b"~std.io:println(text: \"\xff\")\n".to_vec());
    assert_eq!(code, 1);
    assert!(
        err.contains("error[E0101]: the source is not valid UTF-8") && err.contains("<stdin>:1:"),
        "{err}"
    );
    // Past the front end's source limit (1 MiB), stdin is refused after reading one byte more
    // than the limit, not held whole: 64 MiB of it give one short error.
    let (code, out, err) = koru_stdin(&["run", "-"], vec![b' '; 64 << 20]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with(
            "error[E0105]: source is more than 1048576 bytes, the limit\n  ┌─ <stdin>:1:1"
        ),
        "{err}"
    );
    assert!(err.len() < 300, "{err}");
    // Exactly at the limit it is read.
    let mut source = b"~std.io:println(text: \"ok\")\n".to_vec();
    source.resize(1 << 20, b' ');
    let (code, out, err) = koru_stdin(&["run", "-"], source);
    assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
}

#[test]
fn help_texts_describe_typed_inputs_and_stdin() {
    let (code, out, _) = koru(&["run", "--help"]);
    assert_eq!(code, 0);
    for expected in [
        "--input <NAME[:TYPE]=VALUE>",
        "--inputs <JSON>",
        "`-` reads it from stdin",
        "~input { NAME: TYPE }",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    let (_, out, _) = koru(&["check", "--help"]);
    assert!(out.contains("--inputs <JSON>"), "{out}");
}

#[test]
fn an_agents_flow_out_of_fuel_has_both_files_closed_newest_first() {
    // The README's example (examples/agent_files.kz).
    let (code, out, err) = koru(&["run", "examples/agent_files.kz", "--fuel", "5", "--json"]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(
        out,
        "data of file_1\nclosed file_2\nclosed file_1\n{\"outcome\":\"exhausted\",\"limit\":\"Fuel\",\"fuel\":5,\"last_event\":\"file.read\",\"discharged\":[{\"event\":\"file.close\",\"handle\":\"file_2\"},{\"event\":\"file.close\",\"handle\":\"file_1\"}],\"handles\":0}\n"
    );
    let (code, out, _) = koru(&[
        "run",
        "examples/agent_files.kz",
        "--fuel",
        "5",
        "--json",
        "--no-auto-discharge",
    ]);
    assert_eq!(code, 4);
    assert!(
        out.ends_with("\"open_handles\":[{\"state\":\"opened\",\"handle\":\"file_1\",\"event\":\"file.open\"},{\"state\":\"opened\",\"handle\":\"file_2\",\"event\":\"file.open\"}],\"handles\":2}\n"),
        "{out}"
    );
    assert!(!out.contains("closed"), "{out}");
    // Without --json the discharges are listed on stderr.
    let (_, _, err) = koru(&["run", "examples/agent_files.kz", "--fuel", "5"]);
    assert!(
        err.contains("discharged: file.close(file_2)\ndischarged: file.close(file_1)\n"),
        "{err}"
    );
    // `scopes` shows the phantom states.
    let (_, out, _) = koru(&["scopes"]);
    assert!(out.contains(
        "event file.open { path: str } | opened str[opened!] | failed { reason: str }\n"
    ));
    assert!(out.contains("event file.close { handle: str[!opened] }\n"));
}

#[test]
fn shape_and_mock_flags_check_the_value_and_replace_host_events() {
    // SPEC 13, the README's example: `wrong` is not a branch of `reply`.
    let (code, out, err) = koru(&[
        "check",
        "examples/agent_reply.kz",
        "--shape",
        "reply",
        "--json",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("examples/agent_reply.kz:7:15"), "{err}");
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["errors"][0]["code"], "E0213");
    assert_eq!(json["errors"].as_array().unwrap().len(), 1, "{json}");
    let fixed = write(
        "agent_fixed.kz",
        &std::fs::read_to_string("examples/agent_reply.kz")
            .unwrap()
            .replace("wrong { total: s }", "refused { reason: s }"),
    );
    let (code, out, err) = koru(&["run", &fixed, "--shape", "reply", "--json"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "{\"outcome\":\"ok\",\"value\":{\"branch\":\"answer\",\"fields\":{\"total\":\"42\"}},\"fuel\":1}\n"
        ),
        "{err}"
    );
    let (code, _, err) = koru(&["run", &fixed, "--shape", "replies"]);
    assert_eq!(code, 1);
    assert!(err.contains("error[E0214]"), "{err}");
    // A mock replaces `produce`, for `run` and `check`; repeatable; its errors name its file.
    let (code, out, err) = koru(&[
        "run",
        "examples/produce_consume.kz",
        "--mock",
        "examples/mocks/produce.kz",
    ]);
    assert_eq!(
        (code, out.as_str()),
        (0, "[consume] received n = '7'\n"),
        "{err}"
    );
    let add = write("add.mock.kz", "~add = sum \"1\"\n");
    let (code, _, err) = koru(&[
        "check",
        "examples/produce_consume.kz",
        "--mock",
        "examples/mocks/produce.kz",
        "--mock",
        &add,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = koru(&[
        "check",
        "examples/produce_consume.kz",
        "--scope",
        "std",
        "--mock",
        "examples/mocks/produce.kz",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error[E0301]") && err.contains("examples/mocks/produce.kz:2:2"),
        "{err}"
    );
    let (code, _, err) = koru(&["run", "examples/produce_consume.kz", "--mock", "no/such.kz"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn bench_file_measures_a_users_flow_in_every_tier() {
    // Issue 17: `koru-jit bench FILE [--input NAME=VALUE]...`.
    let file = write(
        "bench_me.kz",
        "~input { n: i64 }\n~capture({ sum: 0 })\n| as acc |> for(0..n)\n    | each i |> captured { sum: acc.sum + i }\n| captured t |> std.io:println(text: t.sum)\n",
    );
    let (code, out, err) = koru(&[
        "bench", &file, "--input", "n=1000", "--rounds", "2", "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["iterations"], 1000, "{json}");
    assert_eq!(json["fuel"], 1, "{json}");
    assert_eq!(json["output_bytes"], 7, "{json}");
    let tiers: Vec<&str> = json["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tier"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, ["interp", "jit", "auto"]);
    let jit = &json["tiers"][1];
    assert!(jit["code_bytes"].as_u64().unwrap() > 0, "{jit}");
    assert!(jit["compile_ns"].as_f64().unwrap() > 0.0, "{jit}");
    assert_eq!(jit["samples_ns_per_run"].as_array().unwrap().len(), 2);
    assert!(json["auto_timeline"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));
    // The table, and the auto tier's chart.
    let svg = std::env::temp_dir().join(format!("koru_bench_{}.svg", std::process::id()));
    let svg = svg.to_str().unwrap();
    let (code, out, err) = koru(&[
        "bench", &file, "--input", "n=10", "--rounds", "1", "--plot", svg,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("per iteration"), "{out}");
    assert!(std::fs::read_to_string(svg).unwrap().starts_with("<svg"));
    // A missing input, and a flow that does not finish, are errors.
    let (code, _, err) = koru(&["bench", &file]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("input `n`"), "{err}");
    let endless = write("bench_endless.kz", "~while(true)\n| body |> _\n");
    let (code, _, err) = koru(&["bench", &endless, "--run-deadline-ms", "50"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("Deadline"), "{err}");
    // Output is captured to compare the tiers: a run printing more than 16 MiB is stopped.
    let line = "x".repeat(1000);
    let loud = write(
        "bench_loud.kz",
        &format!("~for(0..100000)\n| each _ |> std.io:println(text: \"{line}\")\n"),
    );
    let (code, _, err) = koru(&["bench", &loud]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("Output"), "{err}");
}

#[test]
fn trace_lines_go_to_stderr_with_the_level_before_or_after_the_file() {
    // `--trace` alone before the file does not take it as its level; `--trace all` and
    // `--trace=all` both trace builtins too; the lines are the same in every tier.
    let expected = "TRACE produce -> value {\"num\":\"42\"}\nTRACE std.io:print.ln\nTRACE consume -> echoed {\"got\":\"42\"}\n";
    for tier in ["interp", "jit", "auto"] {
        let (code, out, err) = koru(&[
            "run",
            "--trace",
            "examples/produce_consume.kz",
            "--tier",
            tier,
        ]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, "[consume] received n = '42'\n");
        assert!(err.starts_with(expected), "{err}");
    }
    let file = write(
        "trace_all.kz",
        "~for(0..2)\n| each i |> std.io:println(text: i)\n",
    );
    let all = "TRACE for -> each 0\nTRACE std.io:println\nTRACE for -> each 1\nTRACE std.io:println\nTRACE for -> done\n";
    for args in [
        ["run", "--trace", "all", file.as_str()],
        ["run", file.as_str(), "--trace", "all"],
        ["run", "--trace=all", file.as_str(), "--tier=jit"],
    ] {
        let (code, out, err) = koru(&args);
        assert_eq!((code, out.as_str()), (0, "0\n1\n"), "{args:?}: {err}");
        assert!(err.starts_with(all), "{args:?}: {err}");
    }
    // Bounded: the first lines, then a line saying the trace was cut; the run goes on.
    let (code, out, err) = koru(&["run", &file, "--trace=all", "--max-trace-lines", "2"]);
    assert_eq!((code, out.as_str()), (0, "0\n1\n"), "{err}");
    assert!(
        err.starts_with(
            "TRACE for -> each 0\nTRACE std.io:println\nTRACE cut: the trace reached its bound\nresult:"
        ),
        "{err}"
    );
    // Without --trace: no trace line.
    let (_, _, err) = koru(&["run", &file]);
    assert!(!err.contains("TRACE"), "{err}");
}

#[test]
fn compiled_flows_run_from_the_command_line_like_their_sources() {
    let kzb = write("nested.kzb", "");
    let (code, _, err) = koru(&[
        "compile",
        "examples/nested_loop.kz",
        "-o",
        &kzb,
        "--scope",
        "demo",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.starts_with("compiled examples/nested_loop.kz to "),
        "{err}"
    );
    let bytes = std::fs::read(&kzb).unwrap();
    assert!(koru_jit::is_artifact(&bytes));
    // Every tier, limits, statistics and traces: as the source runs.
    for args in [
        &["--json"][..],
        &["--json", "--tier", "interp"],
        &["--json", "--tier", "jit"],
        &["--json", "--fuel", "1000"],
        &["--json", "--trace", "--max-trace-lines", "3"],
    ] {
        let source = koru(&[&["run", "examples/nested_loop.kz", "--scope", "demo"], args].concat());
        let loaded = koru(&[&["run", &kzb, "--scope", "demo"], args].concat());
        assert_eq!(loaded, source, "{args:?}");
    }
    let (code, out, _) = koru(&["run", &kzb, "--json"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "{\"outcome\":\"ok\",\"value\":{\"branch\":\"done\"},\"fuel\":100000}\n"
        )
    );
    let (code, _, err) = koru(&["run", &kzb, "--stats"]);
    assert_eq!(code, 0);
    assert!(err.contains("runs"), "{err}");
    // Recognized by its first bytes, not its name: the artifact under another name runs, and
    // a source named `.kzb` is parsed.
    let renamed = write("nested.txt", "");
    std::fs::copy(&kzb, &renamed).unwrap();
    assert_eq!(koru(&["run", &renamed, "--json"]).0, 0);
    let source_kzb = write("source.kzb", "~std.io:println(text: \"a source\")\n");
    assert_eq!(koru(&["run", &source_kzb]).1, "a source\n");
    // Inputs: typed by the compiled flow.
    let input = write(
        "input.kz",
        "~input { n: int }\n~std.io:println(text: n + 1)\n",
    );
    let input_kzb = write("input.kzb", "");
    assert_eq!(koru(&["compile", &input, "-o", &input_kzb]).0, 0);
    assert_eq!(koru(&["run", &input_kzb, "--input", "n=41"]).1, "42\n");
    let (code, _, err) = koru(&["run", &input_kzb]);
    assert_eq!(code, 2);
    assert!(err.contains("the flow needs input `n` (int)"), "{err}");
    // `check` and `emit` take a compiled flow too.
    assert_eq!(koru(&["check", &input_kzb]).0, 0);
    let (code, out, _) = koru(&["emit", "--what", "ir", &input_kzb]);
    assert_eq!(code, 0);
    assert!(out.starts_with("program: "), "{out}");
}

#[test]
fn compiled_flows_that_do_not_fit_are_refused_with_a_code() {
    let kzb = write("scoped.kzb", "");
    assert_eq!(
        koru(&[
            "compile",
            "examples/nested_loop.kz",
            "-o",
            &kzb,
            "--scope",
            "demo"
        ])
        .0,
        0
    );
    let (code, out, err) = koru(&["run", &kzb, "--scope", "files", "--json"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error[E0404]: the flow was checked against scope `demo`, not scope `files`"),
        "{err}"
    );
    assert!(out.contains("\"E0404\""), "{out}");
    // Truncated: E0402 with the offset, exit 1, no crash.
    let bytes = std::fs::read(&kzb).unwrap();
    let cut = write("cut.kzb", "");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (code, _, err) = koru(&["run", &cut]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error[E0402]: the artifact is corrupt at byte "),
        "{err}"
    );
    // Another format version.
    let mut other = bytes.clone();
    other[8] = 9;
    let version = write("version.kzb", "");
    std::fs::write(&version, &other).unwrap();
    let (code, _, err) = koru(&["run", &version]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "error[E0401]: the artifact was made by format version 9, this engine reads 2"
        ),
        "{err}"
    );
    // A source with errors compiles to nothing.
    let bad = write("bad_compile.kz", "~std.io:println(text: nope)\n");
    let out_file = write("bad_compile.kzb", "");
    std::fs::remove_file(&out_file).unwrap();
    let (code, _, err) = koru(&["compile", &bad, "-o", &out_file]);
    assert_eq!(code, 1);
    assert!(err.contains("E0202"), "{err}");
    assert!(!std::path::Path::new(&out_file).exists());
}
