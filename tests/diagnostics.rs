//! What `koru-jit check` tells a newcomer (issue 13): every error of a source, no knock-on
//! errors, "did you mean" suggestions, and what SPEC 2.3's one-line rule did to a chain; in the
//! rendered text and in `--json` alike. (Error codes and positions of many more cases are in the
//! `.kz` files of `tests/flows/`; these tests read the messages and notes.)

mod common;

use common::binary::koru_jit;
use serde_json::Value;

/// Writes `source` to a file of its own and runs `check` on it: (exit code, the JSON report of
/// `--json`, the rendered text).
fn check(name: &str, source: &str) -> (i32, Value, String) {
    let dir = std::env::temp_dir().join(format!("koru-diagnostics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, source).unwrap();
    let run = |json: bool| {
        let mut command = koru_jit();
        command.arg("check").arg(&path);
        if json {
            command.arg("--json");
        }
        command.output().unwrap()
    };
    let json = run(true);
    let text = run(false);
    assert_eq!(json.status.code(), text.status.code());
    let stdout = String::from_utf8(json.stdout).unwrap();
    let report = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (
        text.status.code().unwrap_or(-1),
        report,
        String::from_utf8(text.stderr).unwrap(),
    )
}

/// `(code, message)` of each error of a report, in order.
fn errors(report: &Value) -> Vec<(String, String)> {
    report["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The notes of error `index` of a report, as `kind: message`.
fn notes(report: &Value, index: usize) -> Vec<String> {
    report["errors"][index]["notes"]
        .as_array()
        .map(|notes| {
            notes
                .iter()
                .map(|n| {
                    format!(
                        "{}: {}",
                        n["kind"].as_str().unwrap(),
                        n["message"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(c, m)| (c.to_string(), m.to_string()))
        .collect()
}

/// Issue 13, point 1, the source of the issue: `nmae` in the body hid `undefined_two` (and the
/// calls were not checked at all). `name: 5` is no error: SPEC 2.1 formats an int passed to a
/// `str` input; `times: "x"` is one.
#[test]
fn an_error_in_a_subflow_body_does_not_hide_its_callers_errors() {
    let source = "~event greet { name: []const u8 }\n| hello []const u8\n~greet = hello { nmae }\n~greet(name: \"bob\") | hello h |> std.io:println(text: undefined_two)\n~greet(name: 5)\n";
    let (code, report, text) = check("greet.kz", source);
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        errors(&report),
        owned(&[
            ("E0202", "unknown name `nmae`"),
            ("E0202", "unknown name `undefined_two`"),
        ])
    );
    assert_eq!(notes(&report, 0), ["help: did you mean `name`?"]);
    assert_eq!(report["errors"][1]["line"], 4);
    assert!(text.contains("= help: did you mean `name`?"), "{text}");

    let typed = source
        .replace("{ name: []const u8 }", "{ name: []const u8, times: i64 }")
        .replace("name: \"bob\"", "name: \"bob\", times: 1")
        .replace("name: 5", "name: 5, times: \"x\"");
    let (_, report, _) = check("greet_typed.kz", &typed);
    assert_eq!(
        errors(&report),
        owned(&[
            ("E0202", "unknown name `nmae`"),
            ("E0202", "unknown name `undefined_two`"),
            ("E0204", "input `times` of `greet` is int, found str"),
        ])
    );
}

/// Issue 13, point 3: a void event continued with a named branch on one line. Before: "add `|  |>
/// ...`" (an E0207 for the unnamed result) and "its branches: ``". Now one E0206 that says the
/// event is void, why the continuation attached there, and the form that attaches it to `if`;
/// that form checks.
#[test]
fn a_continuation_the_one_line_rule_attached_to_a_void_event_is_explained() {
    let source = "~if(true) | then |> std.io:println(text: \"a\") | else |> _\n";
    let (code, report, text) = check("one_line.kz", source);
    assert_eq!(code, 1);
    assert_eq!(
        errors(&report),
        owned(&[(
            "E0206",
            "`std.io:println` has no branch `else`: it is void (it has no branches), so a continuation of it is written `|> step`"
        )])
    );
    let two_lines = "~if(true)\n| then |> std.io:println(text: \"a\")\n| else |> _";
    assert_eq!(
        notes(&report, 0),
        [
            "note: on one line, a continuation attaches to the last invocation written before it (SPEC 2.3): this `| else` attaches to `std.io:println`, not to `if`".to_string(),
            format!("help: to continue `if`, write the continuation on a line of its own:\n{two_lines}"),
        ]
    );
    assert!(!text.contains("``") && !text.contains("|  |>"), "{text}");
    assert!(
        text.contains("= help: to continue `if`, write the continuation on a line of its own:\n    ~if(true)\n    | then |> std.io:println(text: \"a\")\n    | else |> _\n"),
        "{text}"
    );
    let (code, report, _) = check("two_lines.kz", &format!("{two_lines}\n"));
    assert_eq!(
        (code, report["outcome"].as_str()),
        (0, Some("valid")),
        "{report}"
    );
}

/// The same for a chain nested under a continuation line: the help indents the continuations of
/// the inner invocation under it, and the form it shows checks; `for`'s `done` is not reported
/// unhandled on top (it is exempt anyway), nor is `add`'s branch the one-line rule took away.
#[test]
fn a_nested_one_line_chain_gets_an_indented_two_line_form() {
    let source = "~for(0..2)\n| each i |> add(a: \"1\", b: \"2\") | sum s |> std.io:println(text: s) | sum t |> _\n";
    let (_, report, _) = check("nested_one_line.kz", source);
    assert_eq!(
        errors(&report),
        owned(&[(
            "E0206",
            "`std.io:println` has no branch `sum`: it is void (it has no branches), so a continuation of it is written `|> step`"
        )])
    );
    let help = notes(&report, 0)[1].clone();
    let form = "| each i |> add(a: \"1\", b: \"2\")\n    | sum s |> std.io:println(text: s)\n    | sum t |> _";
    assert_eq!(
        help,
        format!("help: to continue `add`, write the continuation on a line of its own:\n{form}")
    );
    // The form, under the same head, checks (two `sum` continuations are allowed: the first
    // unguarded one is taken).
    let (code, report, _) = check("nested_two_lines.kz", &format!("~for(0..2)\n{form}\n"));
    assert_eq!(
        (code, report["outcome"].as_str()),
        (0, Some("valid")),
        "{report}"
    );

    // Where no enclosing invocation has the branch, the void wording stands alone.
    let (_, report, _) = check("void_alone.kz", "~std.io:println(text: \"a\") | ok |> _\n");
    assert_eq!(report["errors"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(notes(&report, 0), Vec::<String>::new());
}

/// Issue 13, point 4: a misspelled event, branch, field, binding, input or type gets the closest name
/// in scope as `help`; a far name gets none.
#[test]
fn misspellings_get_a_did_you_mean() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "~std.io:prinltn(text: \"a\")\n",
            "E0201",
            "unknown event `std.io:prinltn`",
            "std.io:println",
        ),
        (
            "~ad(a: \"1\", b: \"2\")\n",
            "E0201",
            "unknown event `ad`",
            "add",
        ),
        (
            "~for(0..3)\n| eahc i |> _\n",
            "E0206",
            "`for` has no branch `eahc` (its branches: `each`, `done`)",
            "each",
        ),
        (
            "~capture({ total: 0 })\n| as a |> captured { total: a.totl + 1 }\n| captured c |> _\n",
            "E0203",
            "`a` has no field `totl` (its fields: `total`)",
            "total",
        ),
        (
            "~capture({ total: 0 })\n| as a |> captured { totl: 1 }\n| captured c |> _\n",
            "E0203",
            "the accumulator has no field `totl` (its fields: `total`)",
            "total",
        ),
        (
            "~for(0..3)\n| each index |> std.io:println(text: indx)\n",
            "E0202",
            "unknown name `indx`",
            "index",
        ),
        (
            "~event e { x: strng }\n| ok\n~e = ok\n",
            "E0204",
            "unknown type `strng` (expected int, float, bool, str or a Zig spelling such as i64 or []const u8)",
            "string",
        ),
        (
            "~std.io:println(txet: \"a\")\n",
            "E0205",
            "`std.io:println` has no input `txet` (its inputs: `text`)",
            "text",
        ),
    ];
    for (k, (source, code, message, suggestion)) in cases.iter().enumerate() {
        let (exit, report, text) = check(&format!("dym{k}.kz"), source);
        assert_eq!(exit, 1, "{source}");
        // One error each: the misspelled branch's E0207 and the misspelled input's "missing
        // input" would only repeat it.
        assert_eq!(errors(&report), owned(&[(code, message)]), "{source}");
        let help = format!("did you mean `{suggestion}`?");
        assert_eq!(notes(&report, 0), [format!("help: {help}")], "{source}");
        assert!(text.contains(&format!("= help: {help}")), "{text}");
    }
    // Only events the scope allows are suggested: `add` is not in scope `std`.
    let dir = std::env::temp_dir().join(format!("koru-diagnostics-{}", std::process::id()));
    let scoped = koru_jit()
        .args(["check", "--scope", "std", "--json"])
        .arg(dir.join("dym1.kz"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(scoped.stdout).unwrap();
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(errors(&report), owned(&[("E0201", "unknown event `ad`")]));
    assert_eq!(notes(&report, 0), Vec::<String>::new());
    // Nothing close: no "did you mean" (in a top-level flow, the hint of a flow input instead;
    // in a subflow's body, nothing).
    let (_, report, _) = check("far.kz", "~std.io:println(text: undefined_two)\n");
    assert_eq!(
        notes(&report, 0),
        ["help: a flow input? declare it with `~input { undefined_two: int }` (or float, bool, str), or give it a value (command line: `--input undefined_two:int=...`)"]
    );
    let (_, report, _) = check(
        "far_subflow.kz",
        "~event f {}\n| r i64\n~f = r undefined_two\n",
    );
    assert_eq!(
        errors(&report),
        owned(&[("E0202", "unknown name `undefined_two`")])
    );
    assert!(report["errors"][0].get("notes").is_none(), "{report}");
}

/// Issue 13, point 4: a knock-on E0207 is never listed before its cause: `| eahc` both failed to
/// name `each` (E0206) and left `each` unhandled (E0207, at the invocation, so listed first).
/// The E0207 is not reported; an unhandled branch the E0206 does not explain still is.
#[test]
fn a_knock_on_e0207_is_not_listed_before_its_e0206() {
    let (_, report, _) = check("eahc.kz", "~for(0..3) | eahc i |> _\n");
    assert_eq!(
        errors(&report),
        owned(&[(
            "E0206",
            "`for` has no branch `eahc` (its branches: `each`, `done`)"
        )])
    );
    let (_, report, _) = check(
        "capture_sa.kz",
        "~capture({ n: 0 })\n| sa a |> captured { n: a.n + 1 }\n",
    );
    assert_eq!(
        errors(&report),
        owned(&[
            (
                "E0207",
                "branch `captured` of `capture` is not handled (add `| captured |> ...` or a catch-all `|? |> ...`)"
            ),
            (
                "E0206",
                "`capture` has no branch `sa` (its branches: `as`, `captured`)"
            ),
        ])
    );
    assert_eq!(notes(&report, 1), ["help: did you mean `as`?"]);
}

/// A note is bounded like a message: the two-line form of a chain with a long line is cut.
#[test]
fn a_note_quoting_a_long_line_is_cut() {
    let long = "x".repeat(5000);
    let source = format!("~if(true) | then |> std.io:println(text: \"{long}\") | else |> _\n");
    let (_, report, text) = check("long_note.kz", &source);
    let help = &notes(&report, 0)[1];
    assert!(help.len() < 1000, "{} bytes", help.len());
    assert!(help.lines().all(|l| l.chars().count() <= 121), "{help}");
    assert!(text.len() < 2000, "{} bytes", text.len());
}

#[test]
fn an_unreachable_pattern_names_the_pattern_that_covers_it() {
    // SPEC 10: E0210 has the span of the unreachable pattern and names the covering one (its
    // text, line and column), in the text and the JSON alike.
    let source = "~match(5)\n| [1..=3] |> a\n| [4, 2] |> b\n|? |> c\n";
    let (code, report, text) = check("unreachable.kz", source);
    assert_ne!(code, 0);
    assert_eq!(errors(&report).len(), 1, "{report}");
    assert_eq!(report["errors"][0]["code"], "E0210");
    assert_eq!(report["errors"][0]["line"], 3, "{report}");
    assert_eq!(report["errors"][0]["column"], 7, "{report}");
    assert_eq!(
        notes(&report, 0),
        ["note: covered by the pattern `1..=3` at line 2, column 4"]
    );
    assert!(
        text.contains("covered by the pattern `1..=3` at line 2, column 4"),
        "{text}"
    );
}
