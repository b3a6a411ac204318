//! `koru-jit bench --plot FILE.svg`: a chart of ns per operation by workload, engine and tier
//! (log scale), and the auto tier's timeline on the string nested loop (ns per host call over
//! the run, where the drop is the switch to native code). Plain SVG, no dependency.

use super::{Report, Runner};
use crate::engine::Tier;
use std::fmt::Write;

const WIDTH: f64 = 960.0;
const LABEL: f64 = 250.0;
const BAR: f64 = 13.0;

fn colour(runner: Runner) -> &'static str {
    match runner {
        Runner::Tier(Tier::Interp) => "#7aa6c2",
        Runner::Tier(Tier::Jit) => "#1f5f8b",
        Runner::Tier(Tier::Auto) => "#3d8f6a",
        Runner::Native => "#444444",
        Runner::Peer(_) => "#c98a3d",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The whole SVG document: the bar chart, then the timeline (when given).
pub fn svg(report: &Report, timeline: Option<&(Vec<(u64, f64)>, crate::FlowStats)>) -> String {
    let rows: Vec<_> = report
        .measurements
        .iter()
        .filter(|m| !m.samples.is_empty())
        .collect();
    let (mut low, mut high) = (f64::INFINITY, 0.0f64);
    for m in &rows {
        low = low.min(m.median());
        high = high.max(m.median());
    }
    if !low.is_finite() || !high.is_finite() || high <= 0.0 {
        // Nothing measured (or nothing positive): an axis needs two finite ends.
        (low, high) = (1.0, 10.0);
    }
    // Decades around the figures, for a log axis.
    let low = 10f64.powf(low.max(0.01).log10().floor());
    let high = 10f64.powf(high.max(low * 10.0).log10().ceil());
    let x = |value: f64| {
        LABEL
            + (value.max(low).log10() - low.log10()) / (high.log10() - low.log10())
                * (WIDTH - LABEL - 90.0)
    };
    let mut groups = 0;
    let mut previous = None;
    for m in &rows {
        if previous != Some(m.workload) {
            groups += 1;
            previous = Some(m.workload);
        }
    }
    let chart_height = 50.0 + rows.len() as f64 * (BAR + 3.0) + groups as f64 * 18.0 + 30.0;
    let timeline_height = if timeline.is_some() { 300.0 } else { 0.0 };
    let height = chart_height + timeline_height;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">ns per operation (median, log scale; shorter is faster)</text>"#
    );
    // Decade grid lines.
    let mut decade = low;
    while decade.is_finite() && decade <= high * 1.0001 {
        let gx = x(decade);
        let _ = writeln!(
            out,
            r##"<line x1="{gx:.1}" y1="35" x2="{gx:.1}" y2="{:.1}" stroke="#dddddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#666666">{}</text>"##,
            chart_height - 25.0,
            chart_height - 12.0,
            super::ns(decade)
        );
        decade *= 10.0;
    }
    let mut y = 40.0;
    let mut previous = None;
    for m in &rows {
        if previous != Some(m.workload) {
            y += 6.0;
            let _ = writeln!(
                out,
                r#"<text x="10" y="{:.1}" font-weight="bold">{} (per {})</text>"#,
                y + 8.0,
                m.workload.name(),
                m.workload.unit()
            );
            y += 12.0;
            previous = Some(m.workload);
        }
        let end = x(m.median());
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{LABEL}" y="{y:.1}" width="{:.1}" height="{BAR}" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LABEL - 6.0,
            y + BAR - 3.0,
            escape(m.runner.name()),
            (end - LABEL).max(1.0),
            colour(m.runner),
            end + 4.0,
            y + BAR - 3.0,
            super::ns(m.median())
        );
        y += BAR + 3.0;
    }
    if let Some((points, stats)) = timeline {
        timeline_svg(&mut out, chart_height, points, stats);
    }
    out += "</svg>\n";
    out
}

fn timeline_svg(out: &mut String, top: f64, points: &[(u64, f64)], stats: &crate::FlowStats) {
    let (left, right, plot_top, plot_bottom) = (LABEL, WIDTH - 90.0, top + 40.0, top + 250.0);
    let max_calls = points.last().map_or(1, |p| p.0).max(1) as f64;
    let max_ns = points.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.1;
    let px = |calls: f64| left + calls / max_calls * (right - left);
    let py = |ns: f64| plot_bottom - ns / max_ns * (plot_bottom - plot_top);
    let _ = writeln!(
        out,
        r#"<text x="10" y="{:.1}" font-size="14" font-weight="bold">auto tier, string nested loop from a fresh compile: ns per host call over the run</text>"#,
        top + 20.0
    );
    let _ = writeln!(
        out,
        r##"<text x="10" y="{:.1}" fill="#444444">loop iterations: {} interpreted, {} native; switched mid-loop {} time(s); JIT compile {} us</text>"##,
        top + 36.0,
        stats.interpreted_iterations,
        stats.native_iterations,
        stats.osr_entries,
        stats.compile_time.as_micros()
    );
    for k in 0..=4 {
        let value = max_ns * k as f64 / 4.0;
        let gy = py(value);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{gy:.1}" x2="{right}" y2="{gy:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#666666">{} ns</text>"##,
            left - 6.0,
            gy + 4.0,
            super::ns(value)
        );
    }
    for k in 0..=4 {
        let calls = max_calls * k as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666666">{} calls</text>"##,
            px(calls),
            plot_bottom + 16.0,
            calls as u64
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|&(calls, ns)| format!("{:.1},{:.1}", px(calls as f64), py(ns)))
        .collect();
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
        colour(Runner::Tier(Tier::Auto)),
        path.join(" ")
    );
}
