//! `koru-jit bench` as a library: peers over the child-process protocol, unavailable peers
//! reported as such, targets and the SVG chart.

use koru_jit::bench::{self, BenchOptions, Peer, Runner, Workload};
use koru_jit::Tier;

fn options(workloads: Vec<Workload>, runners: Vec<Runner>) -> BenchOptions {
    BenchOptions {
        workloads,
        runners,
        rounds: 1,
        python: "python3".to_string(),
    }
}

#[test]
fn cpython_runs_as_a_child_process_and_its_figures_land_in_the_report() {
    let report = bench::run(&options(
        vec![Workload::ThreeStepCached, Workload::Compile],
        vec![Runner::Tier(Tier::Interp), Runner::Peer(Peer::CPython)],
    ));
    let python: Vec<_> = report
        .measurements
        .iter()
        .filter(|m| m.runner == Runner::Peer(Peer::CPython))
        .collect();
    // CPython runs the three-step workload (and not `compile`, which is ours alone).
    assert_eq!(python.len(), 1, "{:?}", python);
    assert_eq!(python[0].workload, Workload::ThreeStepCached);
    assert_eq!(python[0].error, None);
    assert_eq!(python[0].samples.len(), 1);
    assert!(python[0].median() > 0.0);
    // The interpreter is compared with the best (only) peer.
    let json = bench::to_json(&report);
    let interp = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["workload"] == "three-step-cached" && r["runner"] == "interp")
        .unwrap();
    assert_eq!(interp["best_peer"], "cpython");
    assert!(interp["ratio_to_best_peer"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_peer_that_cannot_start_gets_a_row_that_says_why() {
    let report = bench::run(&BenchOptions {
        python: "/nonexistent/python3".to_string(),
        ..options(
            vec![Workload::ThreeStepCached],
            vec![Runner::Peer(Peer::CPython)],
        )
    });
    assert_eq!(report.measurements.len(), 1);
    let row = &report.measurements[0];
    assert!(row.samples.is_empty());
    let error = row.error.as_deref().unwrap();
    assert!(
        error.contains("unavailable") && error.contains("/nonexistent/python3"),
        "{error}"
    );
    assert!(bench::table(&report).contains("unavailable"));
}

/// A peer program that starts and exits before it is ready (as a missing program does under
/// qemu-user, which does not report the failed exec to the parent) is unavailable, with the
/// program and its exit status in the row.
#[test]
fn a_peer_that_exits_before_it_is_ready_gets_a_row_that_says_why() {
    let report = bench::run(&BenchOptions {
        python: "false".to_string(),
        ..options(
            vec![Workload::ThreeStepCached],
            vec![Runner::Peer(Peer::CPython)],
        )
    });
    let row = &report.measurements[0];
    assert!(row.samples.is_empty());
    let error = row.error.as_deref().unwrap();
    assert!(
        error.contains("unavailable: `false` did not start") && error.contains("exit status: 1"),
        "{error}"
    );
}

#[cfg(not(feature = "peers"))]
#[test]
fn in_process_peers_need_the_peers_feature() {
    let report = bench::run(&options(
        vec![Workload::NestedLoop],
        vec![Runner::Peer(Peer::Rhai), Runner::Peer(Peer::LuaJit)],
    ));
    assert_eq!(report.measurements.len(), 2);
    for row in &report.measurements {
        assert!(row.error.as_deref().unwrap().contains("--features peers"));
    }
}

#[test]
fn targets_are_judged_only_on_figures_that_were_measured() {
    let report = bench::run(&options(
        vec![Workload::ThreeStepCached],
        vec![Runner::Tier(Tier::Auto)],
    ));
    let targets = report.targets();
    let cached = targets
        .iter()
        .find(|t| t.description.starts_with("three-step-cached"))
        .unwrap();
    assert!(cached.met.is_some(), "{}", cached.measured);
    assert!(cached.measured.ends_with(" ns"));
    let luajit = targets
        .iter()
        .find(|t| t.description.contains("LuaJIT's load+call"))
        .unwrap();
    assert_eq!(luajit.met, None);
}

#[test]
fn the_chart_has_a_bar_per_figure_and_the_auto_timeline() {
    let report = bench::run(&options(
        vec![Workload::ThreeStepCached],
        vec![Runner::Tier(Tier::Interp), Runner::Native],
    ));
    let timeline = bench::auto_timeline(1000);
    assert_eq!(timeline.0.len(), 100);
    assert!(timeline.0.iter().all(|&(_, ns)| ns > 0.0));
    assert_eq!(timeline.0.last().unwrap().0, 100_000);
    assert_eq!(
        timeline.1.interpreted_iterations + timeline.1.native_iterations,
        101_000
    );
    let svg = bench::plot::svg(&report, Some(&timeline));
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // One bar per measured row (plus the background rectangle).
    assert_eq!(svg.matches("<rect").count(), 1 + report.measurements.len());
    assert_eq!(svg.matches("<polyline").count(), 1);
}

#[test]
fn a_chart_of_nothing_measured_is_still_a_small_valid_svg() {
    let report = bench::Report {
        measurements: Vec::new(),
        rounds: 1,
    };
    let svg = bench::plot::svg(&report, None);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.len() < 10_000, "{} bytes", svg.len());
}

#[cfg(feature = "peers")]
#[test]
fn the_in_process_and_lua_peers_run_and_check_their_workloads() {
    let report = bench::run(&options(
        vec![Workload::ThreeStepCached, Workload::ThreeStepCold],
        vec![
            Runner::Peer(Peer::Rhai),
            Runner::Peer(Peer::LuaJit),
            Runner::Peer(Peer::Lua54),
        ],
    ));
    assert_eq!(report.measurements.len(), 6);
    for row in &report.measurements {
        assert_eq!(row.error, None, "{}", row.runner.name());
        assert_eq!(row.samples.len(), 1);
    }
}
