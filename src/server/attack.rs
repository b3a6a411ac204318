//! `koru-jit load --attack NAME`: the hostile workloads of issue 11 against a running
//! `koru-jit serve` (meant for loopback), each bounded in requests and in time. Meanwhile a
//! probe sends a small flow and `GET /healthz` every 20 ms and times them, and a sampler reads
//! the server's resident memory; at the end the report says whether the server is still up.
//!
//! * `compile-bomb`: subflows each calling the one below twice, 12 levels, behind `~if(go)`
//!   with `go=false` (the call never runs), sent more than the call threshold's 1,000 times so
//!   the flow is queued for native code (meant for the restricted key).
//! * `compile-bomb-loop`: the same subflows called from a 60,000-iteration loop whose guard never
//!   holds, so one run crosses the loop threshold.
//! * `amplify`: a `print.ln` of 6,000 interpolations of a 32,000-byte input (a 192 MB line from
//!   a 62 KB body), by default 8 clients x 5 requests.
//! * `slow-clients`: connections (by default 2,000) from 127.0.0.2, 127.0.0.3, ... that send a
//!   request line and then one header line a second, never finishing the head; a connection
//!   the server closes connects again at the next second.
//! * `none`: no attack, the probe and the sampler only (the figures to compare with).

use super::client::Client;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    None,
    CompileBomb,
    CompileBombLoop,
    Amplify,
    SlowClients,
}

impl Attack {
    pub const ALL: [Attack; 5] = [
        Attack::None,
        Attack::CompileBomb,
        Attack::CompileBombLoop,
        Attack::Amplify,
        Attack::SlowClients,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::None => "none",
            Attack::CompileBomb => "compile-bomb",
            Attack::CompileBombLoop => "compile-bomb-loop",
            Attack::Amplify => "amplify",
            Attack::SlowClients => "slow-clients",
        }
    }

    pub fn from_name(name: &str) -> Option<Attack> {
        Attack::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Requests and connections when the command line gives none (for `slow-clients` the
    /// connections are the slow ones and requests are not used).
    pub fn defaults(self) -> (u64, usize) {
        match self {
            Attack::None => (0, 0),
            Attack::CompileBomb => (1_200, 2),
            Attack::CompileBombLoop => (3, 1),
            Attack::Amplify => (40, 8),
            Attack::SlowClients => (0, 2_000),
        }
    }

    /// The request body.
    pub fn body(self) -> String {
        match self {
            Attack::CompileBomb => serde_json::json!({
                "source": doubling_subflows(12) + "~if(go) | then |> f12(x: 0)\n",
                "inputs": { "go": false },
            }),
            Attack::CompileBombLoop => serde_json::json!({
                "source": doubling_subflows(12)
                    + "~for(0..60000) | each i |> if(i < 0) | then |> f12(x: 0)\n",
            }),
            Attack::Amplify => serde_json::json!({
                "source": format!("~std.io:print.ln(\"{}\")", "{{s}}".repeat(6_000)),
                "inputs": { "s": "a".repeat(32_000) },
            }),
            Attack::None | Attack::SlowClients => serde_json::Value::Null,
        }
        .to_string()
    }
}

/// Subflows `f0` .. `f{levels}`, each `fk` calling `f(k-1)` twice (so `f{levels}` is 2^levels
/// calls of `f0` once inlined).
pub fn doubling_subflows(levels: u32) -> String {
    let mut source = "~event f0 { x: i64 }\n| r i64\n~f0 = r x + 1\n".to_string();
    for k in 1..=levels {
        let below = k - 1;
        source += &format!(
            "~event f{k} {{ x: i64 }}\n| r i64\n~f{k} = f{below}(x: x) | r a |> f{below}(x: a) | r b |> r b\n"
        );
    }
    source
}

/// What to run.
#[derive(Clone, Debug)]
pub struct AttackOptions {
    /// `host:port` or `http://host:port`.
    pub address: String,
    /// The key the attack uses.
    pub key: String,
    /// The key of the probe's small flow (`~add(a: "10", b: "20")`, so a scope with `add`).
    pub probe_key: String,
    pub attack: Attack,
    pub requests: u64,
    pub connections: usize,
    /// The attack sends nothing new after this.
    pub seconds: f64,
    /// The probe and the sampler go on this long after the attack ends (a compile it queued
    /// runs on in the background).
    pub observe_seconds: f64,
    /// The server's process id, for its peak resident memory from /proc (else sampled from
    /// `/metrics`).
    pub server_pid: Option<u32>,
    /// `slow-clients` connects from this many addresses, 127.0.0.2 upwards.
    pub slow_addresses: u8,
}

/// Latencies of one kind of probe request.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    pub count: usize,
    pub failures: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub first_failure: Option<String>,
}

impl Latencies {
    fn of(mut times: Vec<Duration>, failures: usize, first_failure: Option<String>) -> Latencies {
        times.sort_unstable();
        let at = |q: f64| {
            times
                .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Latencies {
            count: times.len(),
            failures,
            p50: at(0.5),
            p99: at(0.99),
            max: times.last().copied().unwrap_or_default(),
            first_failure,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "failures": self.failures,
            "p50_us": self.p50.as_secs_f64() * 1e6,
            "p99_us": self.p99.as_secs_f64() * 1e6,
            "max_us": self.max.as_secs_f64() * 1e6,
            "first_failure": self.first_failure,
        })
    }
}

/// What the slow clients saw.
#[derive(Debug, Default)]
pub struct SlowFigures {
    /// Connections made (first ones and reconnections).
    pub connects: AtomicU64,
    /// Connects that failed or took over a second.
    pub failed_connects: AtomicU64,
    /// Connections the server closed (shed, timed out or refused).
    pub closed_by_server: AtomicU64,
    pub open: AtomicU64,
    pub max_open: AtomicU64,
}

/// The result of an attack.
#[derive(Debug)]
pub struct AttackReport {
    pub attack: Attack,
    /// Attack requests sent, and their answers by status and outcome (or error).
    pub sent: u64,
    pub answers: BTreeMap<String, u64>,
    pub slow: Option<Arc<SlowFigures>>,
    /// From the first attack request to the end of the observation.
    pub elapsed: Duration,
    pub small_flow: Latencies,
    pub healthz: Latencies,
    /// The server's peak resident memory: VmHWM from /proc when its process id is known and it
    /// is still alive, else the largest sample.
    pub peak_resident_bytes: Option<u64>,
    pub server_up: bool,
    /// Why the server counts as down.
    pub down: Option<String>,
}

impl AttackReport {
    pub fn to_json(&self) -> serde_json::Value {
        let slow = self.slow.as_ref().map(|s| {
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            serde_json::json!({
                "connects": load(&s.connects),
                "failed_connects": load(&s.failed_connects),
                "closed_by_server": load(&s.closed_by_server),
                "max_open": load(&s.max_open),
            })
        });
        serde_json::json!({
            "attack": self.attack.name(),
            "sent": self.sent,
            "answers": self.answers,
            "slow_clients": slow,
            "seconds": self.elapsed.as_secs_f64(),
            "small_flow": self.small_flow.to_json(),
            "healthz": self.healthz.to_json(),
            "peak_resident_bytes": self.peak_resident_bytes,
            "server_up": self.server_up,
            "down": self.down,
        })
    }
}

/// How an answer is counted: status, outcome and limit (`422 exhausted Output`), or the error.
fn answer_key(result: &std::io::Result<super::client::HttpResponse>) -> String {
    match result {
        Ok(response) => {
            let body = response.json();
            let mut key = response.status.to_string();
            for field in [&body["outcome"], &body["limit"], &body["error"]["code"]] {
                if let Some(text) = field.as_str() {
                    key = format!("{key} {text}");
                }
            }
            key
        }
        Err(e) => format!("error {:?}", e.kind()),
    }
}

/// The resident memory of process `pid` (`VmRSS`) or its peak (`VmHWM`), from /proc.
fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether process `pid` is alive (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("State:"))
            .is_some_and(|l| !l.contains("zombie") && !l.contains("dead"))
    })
}

/// Runs the attack with the probe and the sampler, then checks the server.
pub fn run(options: &AttackOptions) -> AttackReport {
    // The slow clients need a file per connection.
    super::raise_open_file_limit();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak, address, pid) = (
            stop.clone(),
            peak.clone(),
            options.address.clone(),
            options.server_pid,
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let sample = match pid {
                    Some(pid) => proc_status_bytes(pid, "VmRSS:"),
                    None => super::load::snapshot(&address, 0).resident_bytes,
                };
                peak.fetch_max(sample.unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(if pid.is_some() { 20 } else { 200 }));
            }
        })
    };
    let probe = {
        let (stop, address, key) = (
            stop.clone(),
            options.address.clone(),
            options.probe_key.clone(),
        );
        std::thread::spawn(move || probe(&address, &key, &stop))
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(options.seconds);
    let mut answers = BTreeMap::new();
    let mut sent = 0;
    let mut slow = None;
    if options.attack == Attack::SlowClients {
        let figures = Arc::new(SlowFigures::default());
        slow_clients(options, deadline, &figures);
        slow = Some(figures);
    } else if options.attack != Attack::None {
        let next = Arc::new(AtomicU64::new(0));
        let tally = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
        let body = Arc::new(options.attack.body());
        let threads: Vec<_> = (0..options.connections.max(1))
            .map(|_| {
                let (next, tally, body, options) =
                    (next.clone(), tally.clone(), body.clone(), options.clone());
                std::thread::spawn(move || {
                    let mut client =
                        Client::with_timeout(&options.address, Duration::from_secs(30));
                    while Instant::now() < deadline
                        && next.fetch_add(1, Ordering::Relaxed) < options.requests
                    {
                        let result = client.post_json("/v1/run", &options.key, &body);
                        *tally
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(answer_key(&result))
                            .or_default() += 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
        answers = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
        sent = answers.values().sum();
    }
    // Watch on: what the attack queued (a compile, say) goes on after its last answer.
    let watch_until = Instant::now() + Duration::from_secs_f64(options.observe_seconds);
    while Instant::now() < watch_until && options.server_pid.is_none_or(alive) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (small_flow, healthz) = probe.join().unwrap_or_default();
    let _ = sampler.join();
    let elapsed = started.elapsed();
    let mut down = None;
    if let Some(pid) = options.server_pid {
        if !alive(pid) {
            down = Some(format!("process {pid} is gone"));
        }
    }
    if down.is_none() {
        match Client::with_timeout(&options.address, Duration::from_secs(5)).get("/healthz", None) {
            Ok(response) if response.status == 200 => {}
            Ok(response) => down = Some(format!("/healthz answered {}", response.status)),
            Err(e) => down = Some(format!("/healthz: {e}")),
        }
    }
    let sampled = peak.load(Ordering::Relaxed);
    let peak_resident_bytes = options
        .server_pid
        .and_then(|pid| proc_status_bytes(pid, "VmHWM:"))
        .or((sampled > 0).then_some(sampled));
    AttackReport {
        attack: options.attack,
        sent,
        answers,
        slow,
        elapsed,
        small_flow,
        healthz,
        peak_resident_bytes,
        server_up: down.is_none(),
        down,
    }
}

/// Sends the small flow and `/healthz` in turn every 20 ms until `stop`; a request waits at
/// most 10 s.
fn probe(address: &str, key: &str, stop: &AtomicBool) -> (Latencies, Latencies) {
    let small = serde_json::json!({ "source": "~add(a: \"10\", b: \"20\")" }).to_string();
    let mut client = Client::with_timeout(address, Duration::from_secs(10));
    let (mut flow_times, mut flow_failures, mut flow_first) = (Vec::new(), 0, None);
    let (mut health_times, mut health_failures, mut health_first) = (Vec::new(), 0, None);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = client.post_json("/v1/run", key, &small);
        flow_times.push(started.elapsed());
        if !matches!(&result, Ok(r) if r.status == 200 && r.json()["outcome"] == "ok") {
            flow_failures += 1;
            flow_first.get_or_insert_with(|| answer_key(&result));
        }
        let started = Instant::now();
        let result = client.get("/healthz", None);
        health_times.push(started.elapsed());
        if !matches!(&result, Ok(r) if r.status == 200) {
            health_failures += 1;
            health_first.get_or_insert_with(|| answer_key(&result));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (
        Latencies::of(flow_times, flow_failures, flow_first),
        Latencies::of(health_times, health_failures, health_first),
    )
}

/// Keeps `options.connections` slow clients connected until `deadline`.
fn slow_clients(options: &AttackOptions, deadline: Instant, figures: &Arc<SlowFigures>) {
    use std::net::ToSocketAddrs;
    let address = options
        .address
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let Some(target) = address.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    let addresses = options.slow_addresses.max(1);
    runtime.block_on(async {
        let tasks: Vec<_> = (0..options.connections)
            .map(|i| {
                let local = Ipv4Addr::new(127, 0, 0, 2 + (i % addresses as usize) as u8);
                tokio::spawn(drip(target, local, deadline, figures.clone()))
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// One slow client: connects from `local`, sends a request line, then a header line a second
/// until `deadline`; reconnects (at most once a second) when the server closes it.
async fn drip(
    target: SocketAddr,
    local: Ipv4Addr,
    deadline: tokio::time::Instant,
    figures: Arc<SlowFigures>,
) {
    use tokio::time::{sleep_until, timeout, Instant};
    let mut line = 0u64;
    while Instant::now() < deadline {
        let next_attempt = Instant::now() + Duration::from_secs(1);
        let connected = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((local, 0).into())?;
            socket.connect(target).await
        };
        match timeout(Duration::from_secs(1), connected).await {
            Ok(Ok(stream)) => {
                figures.connects.fetch_add(1, Ordering::Relaxed);
                let open = figures.open.fetch_add(1, Ordering::Relaxed) + 1;
                figures.max_open.fetch_max(open, Ordering::Relaxed);
                let mut next = b"POST /v1/run HTTP/1.1\r\nhost: x\r\n".to_vec();
                loop {
                    if let Err(e) = stream.try_write(&next) {
                        if e.kind() != std::io::ErrorKind::WouldBlock {
                            figures.closed_by_server.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    let tick = (Instant::now() + Duration::from_secs(1)).min(deadline);
                    let closed = loop {
                        tokio::select! {
                            () = sleep_until(tick) => break false,
                            readable = stream.readable() => {
                                let mut bytes = [0u8; 64];
                                match (readable, stream.try_read(&mut bytes)) {
                                    (Err(_), _) => break true,
                                    // Readiness that was not: wait on.
                                    (_, Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                    (_, Err(_)) => break true,
                                    // End of file, or an answer (a refusal) before the close.
                                    (_, Ok(_)) => break true,
                                }
                            }
                        }
                    };
                    if closed {
                        figures.closed_by_server.fetch_add(1, Ordering::Relaxed);
                        // Wait out the rest of the second before connecting again.
                        sleep_until(tick).await;
                        break;
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    line += 1;
                    next = format!("x-drip-{line}: 1\r\n").into_bytes();
                }
                figures.open.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {
                figures.failed_connects.fetch_add(1, Ordering::Relaxed);
            }
        }
        sleep_until(next_attempt.min(deadline)).await;
    }
}
