//! `koru-jit bench FILE`: a user's own flow in every tier. For each tier: the cold path (parse,
//! check, compile, first run, on an engine with the cache off), the JIT's compile time and code
//! size, warm runs (median and spread of the time per run, rounds long enough to time), and per
//! iteration and per fuel unit figures; for the auto tier, the timeline of its first runs (when
//! it moved to native code). Every tier must give the same outcome and print the same output,
//! or the bench stops with an error that says where they differ.

use crate::engine::{CacheConfig, CompileOptions, Engine, EngineConfig, Tier, TierPolicy};
use crate::host::{CaptureSink, OutputSink, Registry};
use crate::limits::RunLimits;
use crate::{Inputs, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one tier measured.
#[derive(Clone, Debug)]
pub struct TierFigures {
    pub tier: Tier,
    /// Parse + check + compile (+ the JIT's compile for `jit`) + the first run, in ns.
    pub cold_ns: f64,
    /// The JIT's compile time (ns) and native code bytes, where native code was made.
    pub compile_ns: Option<f64>,
    pub code_bytes: usize,
    /// ns per run, one sample per round.
    pub samples: Vec<f64>,
    /// Runs per round.
    pub runs_per_round: u64,
    /// The tier runs ended in (the auto tier's switch shows here).
    pub ended_in: Tier,
}

impl TierFigures {
    pub fn median(&self) -> f64 {
        super::median(&self.samples)
    }

    pub fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.samples.iter().copied().fold(0.0, f64::max)
    }
}

/// Everything `bench FILE` measured.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub name: String,
    /// Loop iterations, fuel and output bytes of one run (the same in every tier).
    pub iterations: u64,
    pub fuel: u64,
    pub output_bytes: usize,
    /// The outcome of a run, as JSON text.
    pub outcome: String,
    pub tiers: Vec<TierFigures>,
    /// The auto tier's first runs on a fresh engine: (run, ns, whether it started natively).
    pub timeline: Vec<(u64, f64, bool)>,
}

/// What to measure.
pub struct FileOptions<'a> {
    pub name: &'a str,
    pub source: &'a str,
    pub compile: CompileOptions,
    pub inputs: Inputs,
    pub rounds: usize,
    /// A run longer than this is an error (the bench measures flows that finish).
    pub run_deadline: Duration,
}

/// What one run may print (captured, to compare the tiers); past it the bench stops with an
/// error.
const MAX_OUTPUT_BYTES: u64 = 16 << 20;
/// A warm round lasts at least this long (more runs per round for short flows).
const ROUND: Duration = Duration::from_millis(5);
/// At most this many runs per round.
const MAX_RUNS_PER_ROUND: u64 = 100_000;
/// Runs of the auto tier's timeline, and the time they may take.
const TIMELINE_RUNS: u64 = 200;
const TIMELINE_TIME: Duration = Duration::from_secs(2);

/// Measures `options.source` in every tier; `registry` builds the host events (its output sink
/// is replaced by a capture, compared between tiers).
pub fn bench_file(
    registry: &dyn Fn() -> Registry,
    options: &FileOptions<'_>,
) -> Result<FileReport, String> {
    let engine_with = |policy: TierPolicy, cache: bool| {
        let sink = Arc::new(CaptureSink::new());
        let mut registry = registry();
        registry.set_output(sink.clone() as Arc<dyn OutputSink>);
        let config = EngineConfig {
            policy,
            cache: if cache {
                CacheConfig::default()
            } else {
                CacheConfig::disabled()
            },
            ..EngineConfig::default()
        };
        (Engine::with_config(registry, config), sink)
    };
    let run_once = |flow: &crate::Flow, sink: &CaptureSink| -> Result<(Outcome, String), String> {
        let limits = RunLimits {
            deadline: Some(Instant::now() + options.run_deadline),
            // Captured to compare the tiers: bounded, as a run is in time.
            max_output_bytes: Some(MAX_OUTPUT_BYTES),
            ..RunLimits::default()
        };
        let outcome = flow
            .run(&options.inputs, &limits)
            .map_err(|e| format!("the flow cannot run: {e}"))?;
        if let Outcome::Exhausted { limit, .. } = &outcome {
            return Err(format!(
                "a run was stopped by {limit:?} (the bench measures flows that finish within {} ms and print at most {MAX_OUTPUT_BYTES} bytes)",
                options.run_deadline.as_millis()
            ));
        }
        Ok((outcome, sink.take_out() + sink.take_err().as_str()))
    };
    let mut tiers = Vec::new();
    let mut reference: Option<(String, String, u64)> = None;
    let (mut iterations, mut fuel) = (0, 0);
    for tier in [Tier::Interp, Tier::Jit, Tier::Auto] {
        let compile = options.compile.clone().tier(tier);
        // Cold: a fresh engine without a cache.
        let (engine, sink) = engine_with(TierPolicy::default(), false);
        let started = Instant::now();
        let flow = engine
            .compile(options.name, options.source, &compile)
            .map_err(|e| e.render(false))?;
        let (outcome, output) = run_once(&flow, &sink)?;
        let cold_ns = started.elapsed().as_nanos() as f64;
        let stats = flow.stats();
        let json = outcome.to_json().to_string();
        match &reference {
            None => {
                iterations = stats.interpreted_iterations + stats.native_iterations;
                fuel = outcome.fuel();
                reference = Some((json, output, iterations));
            }
            Some((want, want_output, _)) => {
                if &json != want {
                    return Err(format!(
                        "the tiers differ: interp gave {want}, {} gave {json}",
                        tier_name(tier)
                    ));
                }
                if &output != want_output {
                    return Err(format!(
                        "the tiers print differently: interp printed {} bytes, {} printed {} (first difference at byte {})",
                        want_output.len(),
                        tier_name(tier),
                        output.len(),
                        want_output
                            .bytes()
                            .zip(output.bytes())
                            .position(|(a, b)| a != b)
                            .unwrap_or(want_output.len().min(output.len()))
                    ));
                }
            }
        }
        let compile_ns = (stats.code_bytes > 0).then_some(stats.compile_time.as_nanos() as f64);
        // Warm: as many runs per round as fill one, then the rounds (one dropped as warm-up).
        let mut runs_per_round = 1u64;
        loop {
            let started = Instant::now();
            for _ in 0..runs_per_round {
                run_once(&flow, &sink)?;
            }
            if started.elapsed() >= ROUND || runs_per_round >= MAX_RUNS_PER_ROUND {
                break;
            }
            runs_per_round = (runs_per_round * 4).min(MAX_RUNS_PER_ROUND);
        }
        let mut samples = Vec::with_capacity(options.rounds);
        for _ in 0..options.rounds {
            let started = Instant::now();
            for _ in 0..runs_per_round {
                run_once(&flow, &sink)?;
            }
            samples.push(started.elapsed().as_nanos() as f64 / runs_per_round as f64);
        }
        let stats = flow.stats();
        tiers.push(TierFigures {
            tier,
            cold_ns,
            compile_ns: compile_ns
                .or((stats.code_bytes > 0).then_some(stats.compile_time.as_nanos() as f64)),
            code_bytes: stats.code_bytes,
            samples,
            runs_per_round,
            ended_in: flow.tier(),
        });
    }
    // The auto tier's first runs, on a fresh engine with the default policy.
    let (engine, sink) = engine_with(TierPolicy::default(), true);
    let flow = engine
        .compile(
            options.name,
            options.source,
            &options.compile.clone().tier(Tier::Auto),
        )
        .map_err(|e| e.render(false))?;
    let mut timeline = Vec::new();
    let timeline_started = Instant::now();
    for run in 0..TIMELINE_RUNS {
        if run > 0 && timeline_started.elapsed() > TIMELINE_TIME {
            break;
        }
        let native = flow.tier() == Tier::Jit;
        let started = Instant::now();
        run_once(&flow, &sink)?;
        timeline.push((run, started.elapsed().as_nanos() as f64, native));
    }
    let (outcome, output, _) = reference.expect("the interpreter ran");
    Ok(FileReport {
        name: options.name.to_string(),
        iterations,
        fuel,
        output_bytes: output.len(),
        outcome,
        tiers,
        timeline,
    })
}

fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Interp => "interp",
        Tier::Jit => "jit",
        Tier::Auto => "auto",
    }
}

/// A duration in ns, in the unit that reads best.
fn ns(value: f64) -> String {
    if value >= 1e9 {
        format!("{:.2} s", value / 1e9)
    } else if value >= 1e6 {
        format!("{:.2} ms", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.1} µs", value / 1e3)
    } else {
        format!("{} ns", super::ns(value))
    }
}

impl FileReport {
    /// The figures as a table (text, or Markdown with `markdown`).
    pub fn table(&self, markdown: bool) -> String {
        let mut out = String::new();
        out += &format!(
            "{}: one run is {} loop iterations, {} fuel, {} bytes of output, the same in every tier; its outcome {}\n\n",
            self.name, self.iterations, self.fuel, self.output_bytes, self.outcome
        );
        let header = [
            "tier",
            "cold",
            "jit compile",
            "code bytes",
            "warm run",
            "spread",
            "per iteration",
            "per fuel",
            "ended in",
        ];
        let rows: Vec<[String; 9]> = self
            .tiers
            .iter()
            .map(|t| {
                let per = |n: u64| {
                    if n == 0 {
                        "-".to_string()
                    } else {
                        ns(t.median() / n as f64)
                    }
                };
                [
                    tier_name(t.tier).to_string(),
                    ns(t.cold_ns),
                    t.compile_ns.map_or("-".to_string(), ns),
                    if t.code_bytes == 0 {
                        "-".to_string()
                    } else {
                        t.code_bytes.to_string()
                    },
                    ns(t.median()),
                    format!("{}-{}", ns(t.min()), ns(t.max())),
                    per(self.iterations),
                    per(self.fuel),
                    tier_name(t.ended_in).to_string(),
                ]
            })
            .collect();
        if markdown {
            out += &format!("| {} |\n", header.join(" | "));
            out += &format!("|{}\n", "---|".repeat(header.len()));
            for row in &rows {
                out += &format!("| {} |\n", row.join(" | "));
            }
        } else {
            let widths: Vec<usize> = (0..header.len())
                .map(|c| {
                    rows.iter()
                        .map(|r| r[c].len())
                        .chain([header[c].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<&str>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
                    + "\n"
            };
            out += &line(header.to_vec());
            for row in &rows {
                out += &line(row.iter().map(String::as_str).collect());
            }
        }
        if let Some(switch) = self.timeline.iter().find(|(_, _, native)| *native) {
            out += &format!(
                "\nauto tier, fresh engine: interpreted for the first {} run(s), native from run {} ({} the first run, {} run {})\n",
                switch.0,
                switch.0,
                ns(self.timeline[0].1),
                ns(switch.1),
                switch.0
            );
        } else {
            out += &format!(
                "\nauto tier, fresh engine: its first {} run(s) stayed interpreted (the flow is not hot enough yet, or not compilable)\n",
                self.timeline.len()
            );
        }
        out
    }

    /// Every figure as JSON.
    #[cfg(feature = "json")]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        json!({
            "flow": self.name,
            "iterations": self.iterations,
            "fuel": self.fuel,
            "output_bytes": self.output_bytes,
            "outcome": serde_json::from_str::<serde_json::Value>(&self.outcome).unwrap_or(serde_json::Value::Null),
            "tiers": self.tiers.iter().map(|t| json!({
                "tier": tier_name(t.tier),
                "cold_ns": t.cold_ns,
                "compile_ns": t.compile_ns,
                "code_bytes": t.code_bytes,
                "runs_per_round": t.runs_per_round,
                "samples_ns_per_run": t.samples,
                "median_ns_per_run": t.median(),
                "ns_per_iteration": (self.iterations > 0).then(|| t.median() / self.iterations as f64),
                "ns_per_fuel": (self.fuel > 0).then(|| t.median() / self.fuel as f64),
                "ended_in": tier_name(t.ended_in),
            })).collect::<Vec<_>>(),
            "auto_timeline": self.timeline.iter().map(|(run, ns, native)| json!({
                "run": run, "ns": ns, "native": native
            })).collect::<Vec<_>>(),
        })
    }

    /// The auto tier's timeline as an SVG chart: ns per run against the run, interpreted runs
    /// in one colour, native ones in another.
    pub fn timeline_svg(&self) -> String {
        let (w, h, pad) = (640.0f64, 320.0f64, 40.0f64);
        let top = self
            .timeline
            .iter()
            .map(|(_, ns, _)| *ns)
            .fold(1.0, f64::max);
        let n = self.timeline.len().max(1) as f64;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <text x=\"{pad}\" y=\"16\">{}: ns per run of the auto tier's first {} runs (blue: interpreted, orange: native)</text>\n\
             <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
             <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n\
             <text x=\"2\" y=\"{}\">{}</text>\n",
            xml_escape(&self.name),
            self.timeline.len(),
            h - pad,
            w - pad,
            h - pad,
            h - pad,
            pad + 4.0,
            ns(top),
        );
        for (run, ns, native) in &self.timeline {
            let x = pad + (*run as f64 / n) * (w - 2.0 * pad);
            let y = h - pad - (ns / top) * (h - 2.0 * pad);
            let colour = if *native { "#e6550d" } else { "#3182bd" };
            svg += &format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"{colour}\"/>\n");
        }
        svg += "</svg>\n";
        svg
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
