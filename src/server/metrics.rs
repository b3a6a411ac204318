//! Prometheus metrics of the server, in the text exposition format (no client library: a few
//! counters, gauges and one histogram).

use super::ConnectionCounters;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the request latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

struct Histogram {
    /// Per bucket (not cumulative), then +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The server's metrics.
pub struct Metrics {
    /// (endpoint, status) -> requests.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Run outcomes: ok, exhausted, error, invalid, abandoned (the client went away).
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
    /// Check outcomes: valid, invalid.
    checks: Mutex<BTreeMap<&'static str, u64>>,
    /// Runs executing now (their blocking tasks, whether or not the client still waits).
    in_flight: AtomicU64,
    /// Latency per endpoint.
    latency: BTreeMap<&'static str, Histogram>,
    /// What the accept loop counts.
    connections: Arc<ConnectionCounters>,
}

/// The endpoints, for the per-endpoint series.
pub const ENDPOINTS: [&str; 6] = [
    "/v1/run",
    "/v1/check",
    "/v1/flows/stats",
    "/metrics",
    "/healthz",
    "other",
];

/// Engine figures sampled when metrics are scraped.
pub struct EngineGauges {
    pub cache: crate::engine::CacheStats,
    pub native_code_bytes: usize,
    pub cached_flows: usize,
    pub native_flows: usize,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            requests: Mutex::default(),
            outcomes: Mutex::default(),
            checks: Mutex::default(),
            in_flight: AtomicU64::new(0),
            latency: ENDPOINTS.iter().map(|&e| (e, Histogram::new())).collect(),
            connections: Arc::default(),
        }
    }

    pub fn request(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((endpoint, status))
            .or_default() += 1;
        if let Some(histogram) = self.latency.get(endpoint) {
            histogram.observe(elapsed);
        }
    }

    pub fn outcome(&self, outcome: &'static str) {
        *self
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    pub fn check(&self, outcome: &'static str) {
        *self
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    pub fn run_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn run_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The counters for [`super::serve`] to fill (in [`super::ServeOptions`]).
    pub fn connections(&self) -> Arc<ConnectionCounters> {
        self.connections.clone()
    }

    /// Runs executing now.
    pub fn runs_in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests answered so far with `status` on `endpoint`.
    pub fn requests(&self, endpoint: &'static str, status: u16) -> u64 {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(endpoint, status))
            .copied()
            .unwrap_or(0)
    }

    /// The exposition text.
    pub fn render(&self, engine: &EngineGauges) -> String {
        let mut out = String::new();
        out += "# HELP koru_http_requests_total HTTP requests by endpoint and status (499: the client went away first).\n";
        out += "# TYPE koru_http_requests_total counter\n";
        for ((endpoint, status), count) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "koru_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {count}"
            );
        }
        out += "# HELP koru_runs_total /v1/run requests by outcome (invalid: did not check).\n";
        out += "# TYPE koru_runs_total counter\n";
        for (outcome, count) in self
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "koru_runs_total{{outcome=\"{outcome}\"}} {count}");
        }
        out += "# HELP koru_checks_total /v1/check requests by outcome.\n";
        out += "# TYPE koru_checks_total counter\n";
        for (outcome, count) in self.checks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "koru_checks_total{{outcome=\"{outcome}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP koru_runs_in_flight Runs executing now.\n# TYPE koru_runs_in_flight gauge\nkoru_runs_in_flight {}",
            self.runs_in_flight()
        );
        let connections = &self.connections;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP koru_connections_refused_total Connections refused (429 per_peer: max_connections_per_peer; 503 full: every connection busy).\n# TYPE koru_connections_refused_total counter\nkoru_connections_refused_total{{reason=\"per_peer\"}} {}\nkoru_connections_refused_total{{reason=\"full\"}} {}",
            load(&connections.refused_per_peer),
            load(&connections.refused_full)
        );
        let mut gauge = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        gauge(
            "koru_connections_open",
            "gauge",
            "HTTP connections open now.",
            load(&connections.open),
        );
        gauge(
            "koru_connections_accepted_total",
            "counter",
            "HTTP connections accepted.",
            load(&connections.accepted),
        );
        gauge(
            "koru_connections_shed_total",
            "counter",
            "Connections closed while waiting for their client, to make room at max_connections.",
            load(&connections.shed),
        );
        if let Some(rss) = resident_bytes() {
            gauge(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory of the server process.",
                rss,
            );
        }
        gauge(
            "koru_flow_compiles_total",
            "counter",
            "Compiled-flow cache misses (each one a front-end compile; uncounted with the cache off).",
            engine.cache.misses,
        );
        gauge(
            "koru_cache_hits_total",
            "counter",
            "Compiled-flow cache hits.",
            engine.cache.hits,
        );
        gauge(
            "koru_cache_evictions_total",
            "counter",
            "Flows evicted from the cache.",
            engine.cache.evictions,
        );
        gauge(
            "koru_cache_entries",
            "gauge",
            "Flows in the compiled-flow cache.",
            engine.cache.entries as u64,
        );
        gauge(
            "koru_cache_code_bytes",
            "gauge",
            "Native code bytes held by cached flows.",
            engine.cache.code_bytes as u64,
        );
        gauge(
            "koru_native_code_bytes",
            "gauge",
            "Native code bytes alive in the process (cached or still running).",
            engine.native_code_bytes as u64,
        );
        gauge(
            "koru_native_flows",
            "gauge",
            "Cached flows that run native code.",
            engine.native_flows as u64,
        );
        gauge(
            "koru_cached_flows",
            "gauge",
            "Cached flows that checked.",
            engine.cached_flows as u64,
        );
        out += "# HELP koru_http_request_duration_seconds Request latency by endpoint.\n";
        out += "# TYPE koru_http_request_duration_seconds histogram\n";
        for (endpoint, histogram) in &self.latency {
            let mut cumulative = 0;
            for (k, count) in histogram.counts.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                let le = BUCKETS.get(k).map_or("+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "koru_http_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "koru_http_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}\nkoru_http_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {cumulative}",
                histogram.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
            );
        }
        out
    }
}

/// The process's resident memory, from /proc (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
