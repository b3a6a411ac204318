//! `koru-jit load`: a small closed-loop load generator for `koru-jit serve` (N connections on
//! N threads, each sending its next request as soon as the previous answer arrives), with the
//! workloads of the server's load and soak tests. Every answer is checked (status 200 and
//! outcome `ok`); latency percentiles come from every request's time.

use super::client::Client;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The built-in workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadWorkload {
    /// One small cached flow: `~add(a: "10", b: "20")`.
    Small,
    /// SPEC 9's nested loop (100,000 host calls per request).
    Nested,
    /// 10,000 distinct flows: half the requests go to 100 hot flows (which tier up to native
    /// code), half spread over 9,900 others, so a small cache evicts all the time.
    Soak,
}

impl LoadWorkload {
    pub fn from_name(name: &str) -> Option<LoadWorkload> {
        match name {
            "small" => Some(LoadWorkload::Small),
            "nested" => Some(LoadWorkload::Nested),
            "soak" => Some(LoadWorkload::Soak),
            _ => None,
        }
    }

    /// The request body of request number `index`.
    pub fn body(self, index: u64) -> String {
        let source = match self {
            LoadWorkload::Small => "~add(a: \"10\", b: \"20\")".to_string(),
            LoadWorkload::Nested => "~for(0..1000)\n| each _ |> for(0..100)\n    | each i |> add(a: \"0\", b: i)\n| done |> _\n".to_string(),
            LoadWorkload::Soak => {
                let flow = if index.is_multiple_of(2) {
                    (index / 2) % 100
                } else {
                    100 + (index / 2) % 9_900
                };
                format!("~add(a: \"{flow}\", b: \"1\")")
            }
        };
        serde_json::json!({ "source": source }).to_string()
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `host:port` or `http://host:port`.
    pub address: String,
    pub key: String,
    pub workload: LoadWorkload,
    pub connections: usize,
    pub requests: u64,
}

/// Server figures from `/metrics` at one point of the run.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub after_requests: u64,
    pub resident_bytes: Option<u64>,
    pub native_code_bytes: Option<u64>,
    pub cache_entries: Option<u64>,
    pub cache_evictions: Option<u64>,
    pub native_flows: Option<u64>,
}

/// The result of a load run.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub requests: u64,
    pub failures: u64,
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Before the run and after each tenth of it.
    pub snapshots: Vec<Snapshot>,
}

impl LoadReport {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let snapshots: Vec<_> = self
            .snapshots
            .iter()
            .map(|s| {
                serde_json::json!({
                    "after_requests": s.after_requests,
                    "resident_bytes": s.resident_bytes,
                    "native_code_bytes": s.native_code_bytes,
                    "cache_entries": s.cache_entries,
                    "cache_evictions": s.cache_evictions,
                    "native_flows": s.native_flows,
                })
            })
            .collect();
        serde_json::json!({
            "requests": self.requests,
            "failures": self.failures,
            "first_failure": self.first_failure,
            "seconds": self.elapsed.as_secs_f64(),
            "requests_per_second": self.requests_per_second(),
            "p50_us": self.p50.as_secs_f64() * 1e6,
            "p99_us": self.p99.as_secs_f64() * 1e6,
            "max_us": self.max.as_secs_f64() * 1e6,
            "snapshots": snapshots,
        })
    }
}

/// Reads the server's gauges from `/metrics`.
pub fn snapshot(address: &str, after_requests: u64) -> Snapshot {
    let text = Client::new(address)
        .get("/metrics", None)
        .map(|r| r.body)
        .unwrap_or_default();
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    };
    Snapshot {
        after_requests,
        resident_bytes: value("process_resident_memory_bytes"),
        native_code_bytes: value("koru_native_code_bytes"),
        cache_entries: value("koru_cache_entries"),
        cache_evictions: value("koru_cache_evictions_total"),
        native_flows: value("koru_native_flows"),
    }
}

/// Runs requests `from..to` on `connections` threads; returns latencies and failures.
fn phase(options: &LoadOptions, from: u64, to: u64) -> (Vec<Duration>, u64, Option<String>) {
    let next = Arc::new(AtomicU64::new(from));
    let failures = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(Mutex::new(None::<String>));
    let threads: Vec<_> = (0..options.connections.max(1))
        .map(|_| {
            let (next, failures, first_failure) =
                (next.clone(), failures.clone(), first_failure.clone());
            let options = options.clone();
            std::thread::spawn(move || {
                let mut client = Client::new(&options.address);
                let mut latencies = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= to {
                        break;
                    }
                    let body = options.workload.body(index);
                    let started = Instant::now();
                    let result = client.post_json("/v1/run", &options.key, &body);
                    latencies.push(started.elapsed());
                    let failure = match result {
                        Ok(r) if r.status == 200 && r.json()["outcome"] == "ok" => None,
                        Ok(r) => Some(format!("status {}: {}", r.status, r.body.trim())),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(failure) = failure {
                        failures.fetch_add(1, Ordering::Relaxed);
                        first_failure
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(format!("request {index}: {failure}"));
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(thread.join().unwrap_or_default());
    }
    let first = first_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    (latencies, failures.load(Ordering::Relaxed), first)
}

/// Runs the load in ten tenths, reading the server's gauges before the first and after each
/// (so the start, the middle and the end are among them).
pub fn run(options: &LoadOptions) -> LoadReport {
    let mut snapshots = vec![snapshot(&options.address, 0)];
    let (mut latencies, mut failures, mut first_failure) = (Vec::new(), 0, None);
    let mut elapsed = Duration::ZERO;
    for tenth in 0..10u64 {
        let (from, to) = (
            options.requests * tenth / 10,
            options.requests * (tenth + 1) / 10,
        );
        let started = Instant::now();
        let (some, failed, first) = phase(options, from, to);
        elapsed += started.elapsed();
        snapshots.push(snapshot(&options.address, to));
        latencies.extend(some);
        failures += failed;
        first_failure = first_failure.or(first);
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    LoadReport {
        requests: latencies.len() as u64,
        failures,
        first_failure,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        snapshots,
    }
}
