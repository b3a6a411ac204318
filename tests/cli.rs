//! The command line as a user runs it: the SPEC 9 examples, exit codes, and the JSON outcomes.

use std::process::Command;

fn koru(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_koru-jit"))
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
        r#"{"outcome":"invalid","errors":[{"code":"E0202","message":"unknown name `nope`","line":1,"column":23}]}"#
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
fn an_input_not_given_is_an_unknown_name() {
    // `--input` declares a flow input; without it, `value` is not declared at all.
    let (code, _, err) = koru(&["run", "examples/if_input.kz"]);
    assert_eq!(code, 1);
    assert!(err.contains("E0202") && err.contains("`value`"), "{err}");
}

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
