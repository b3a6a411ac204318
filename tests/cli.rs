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
        r#"{"outcome":"invalid","errors":[{"code":"E0202","message":"unknown name `nope`; a flow input? declare it with `~input { nope: int }` (or float, bool, str) or give it with `--input nope:int=...`","line":1,"column":23}]}"#
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
        err.contains("error[E0202]: unknown name `value`; a flow input? declare it with `~input { value: int }` (or float, bool, str) or give it with `--input value:int=...`"),
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
            (name, message.contains("--input"))
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
    assert_eq!(
        koru(&["emit", "examples/produce_consume.kz", "--what", "ast"]).0,
        0
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
