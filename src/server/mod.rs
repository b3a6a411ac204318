//! `koru-jit serve`: an HTTP server (tokio + axum) that runs user-supplied flows under API keys,
//! scopes and per-scope limits, with a shared compiled-flow cache, tiering across requests,
//! per-flow statistics and Prometheus metrics. [`router`] gives the same service to embedders
//! who register their own host events (see `examples/server.rs`).
//!
//! Endpoints (JSON in and out):
//! * `POST /v1/run` `{source, inputs?, scope?, mocks?, trace?}`: runs the flow; answers the CLI's
//!   outcome JSON plus `flow` (the flow's id), `scope` and `output` (what `std.io` printed).
//!   `mocks` (SPEC 13) are Koru sources replacing events the scope allows, for this request;
//!   a mock's errors are `invalid` with `"mock": i` and positions in that mock. A scope's
//!   `shape` holds every flow of the scope to an event's shape (E0213). With `"trace": true`
//!   (or `"all"`) the answer also has `trace`, the run's trace lines (SPEC 13), within the
//!   scope's `max_trace_lines` and `max_trace_bytes`, and `trace_cut` (whether it was cut there).
//! * `POST /v1/check` `{source, inputs?, scope?, mocks?}`: diagnostics and the static cost bound.
//! * `GET /v1/flows/stats`: statistics of the cached flows of the key's scopes (and their count
//!   and code bytes; nothing of other scopes, not even cache-wide counters).
//! * `GET /metrics` (Prometheus text) and `GET /healthz`: no key needed.
//!
//! Status codes: 200 `ok` (and `valid` for a check); 422 a flow that did not check (`invalid`,
//! all diagnostics), failed at run time (`error`) or hit a limit (`exhausted`: fuel, loop
//! iterations, deadline, or `Output` for the scope's `max_output_bytes`): the request was well
//! formed, the flow could not be carried out, and the body's `outcome` says how; 400 a
//! malformed request (JSON, fields, input values); 401 a missing or unknown API key; 403 a scope
//! the key is not granted; 404/405 an unknown endpoint or method; 408 a request not answered
//! within `request_timeout_ms`; 413 a body over the limit (at once if `Content-Length` says
//! so); 429 a connection over `max_connections_per_peer`; 503 every run slot busy for
//! `queue_timeout_ms` (or every connection slot handling a request); 500 a panic while
//! compiling or running a flow (caught; never expected). Every error body is
//! `{"error": {"code": ..., "message": ...}}`.

// The CLI's `attack` and `load` commands and their HTTP client, for `koru-jit` and the server
// tests: tools around the server, not embedder API.
#[doc(hidden)]
pub mod attack;
#[doc(hidden)]
pub mod client;
pub mod config;
mod connections;
#[doc(hidden)]
pub mod load;
#[doc(hidden)]
pub mod metrics;

use crate::engine::{CompileOptions, Engine, EngineConfig, Tier, TierPolicy};
use crate::host::Registry;
use crate::{Inputs, Outcome, Scalar};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
pub use config::{ConfigError, ServerConfig};
pub use connections::ConnectionCounters;
use hyper::body::Incoming;
use metrics::{EngineGauges, Metrics};
use serde_json::{json, Value as Json};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The state shared by every request.
pub struct AppState {
    engine: Engine,
    config: ServerConfig,
    metrics: Metrics,
    runs: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The engine serving the requests.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The server's counters (internal: hidden, as the `metrics` module is).
    #[doc(hidden)]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The connection limits and timeouts of the configuration, for [`serve`].
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            max_connections: self.config.max_connections,
            max_connections_per_peer: self.config.max_connections_per_peer,
            header_read_timeout: self.config.header_read_timeout,
            shutdown_timeout: self.config.shutdown_timeout,
            counters: self.metrics.connections(),
        }
    }

    fn gauges(&self) -> EngineGauges {
        let flows = self.engine.cached_flows();
        EngineGauges {
            cache: self.engine.cache_stats(),
            native_code_bytes: crate::live_code_bytes(),
            cached_flows: flows.len(),
            native_flows: flows.iter().filter(|(_, f)| f.tier() == Tier::Jit).count(),
        }
    }
}

/// Builds the service: adds the configured scopes and libraries to `registry` (which holds the
/// host events: `Registry::with_std()` plus the application's own), and makes the engine.
pub fn router(
    config: ServerConfig,
    mut registry: Registry,
) -> Result<(Router, Arc<AppState>), ConfigError> {
    config.apply(&mut registry)?;
    let engine = Engine::with_config(
        registry,
        EngineConfig {
            policy: TierPolicy::default(),
            cache: config.cache.clone(),
            ..EngineConfig::default()
        },
    );
    let state = Arc::new(AppState {
        engine,
        runs: Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_runs.max(1),
        )),
        metrics: Metrics::new(),
        config,
    });
    let router = Router::new()
        .route("/v1/run", post(run))
        .route("/v1/check", post(check))
        .route("/v1/flows/stats", get(flow_stats))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method (runs and checks are POST, the rest GET)",
            )
            .into_response()
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_declared_oversized_body,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state.clone());
    Ok((router, state))
}

/// How [`serve`] treats connections.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Connections open at once. A connection beyond it sheds the open connection that has
    /// waited longest for its client (a request head or body still arriving, an answer being
    /// read, an idle keep-alive connection); if every one is handling a request, the new one is
    /// refused with 503. The accept loop never waits.
    pub max_connections: usize,
    /// Connections open at once from one peer address; beyond it a new one is refused with 429.
    pub max_connections_per_peer: usize,
    /// A client must send its whole request head within this, or its connection is closed.
    pub header_read_timeout: Duration,
    /// After `shutdown`, connections still open after this are cut.
    pub shutdown_timeout: Duration,
    /// Where the accept loop counts connections (`/metrics` shows the server's own).
    pub counters: Arc<ConnectionCounters>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 1024,
            max_connections_per_peer: 128,
            header_read_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            counters: Arc::default(),
        }
    }
}

/// Serves `router` over HTTP/1.1 on `listener` until `shutdown` completes; then stops
/// accepting, lets the requests in flight finish, and cuts whatever is still open after
/// `options.shutdown_timeout` (a stalled client cannot hold the shutdown). Connections are
/// capped per peer address and in all, without the accept loop ever waiting for a slot (see
/// [`ServeOptions::max_connections`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let connections = Arc::new(connections::Connections::new(
        options.max_connections,
        options.max_connections_per_peer,
        options.counters.clone(),
    ));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of file descriptors and the like: free one by shedding the connection
                    // that waited longest for its client, or back off instead of spinning.
                    if !connections.shed_oldest() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match connections.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                refuse(&stream, refusal);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let turns = admitted.turns.clone();
        let router = hyper_util::service::TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let turns = turns.clone();
            let number = turns.request_started();
            let request = if hyper::body::Body::is_end_stream(request.body()) {
                turns.request_received(number);
                request.map(|body| TrackedBody { body, turn: None })
            } else {
                let turn = Some((turns.clone(), number));
                request.map(|body| TrackedBody { body, turn })
            };
            let answer = hyper::service::Service::call(&router, request);
            async move {
                let answer = answer.await;
                turns.answered();
                answer
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                // Dropping the connection closes it.
                () = admitted.shed.notified() => {}
            }
            drop(admitted);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.shutdown_timeout) => {
            eprintln!(
                "koru-jit serve: connections still open after {:?}; closing them",
                options.shutdown_timeout
            );
        }
    }
    Ok(())
}

/// A request body that reports when it has arrived whole (or is dropped unread): the end of the
/// client's turn on its connection.
struct TrackedBody {
    body: Incoming,
    turn: Option<(connections::Turns, u64)>,
}

impl TrackedBody {
    fn received(&mut self) {
        if let Some((turns, number)) = self.turn.take() {
            turns.request_received(number);
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_))))
            || self.body.is_end_stream()
        {
            self.received();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.received();
    }
}

/// Answers a refused connection with one write that never waits (what the socket buffer takes),
/// then closes it.
fn refuse(stream: &tokio::net::TcpStream, refusal: connections::Refusal) {
    let (status, code, message) = match refusal {
        connections::Refusal::PerPeer => (
            "429 Too Many Requests",
            "too_many_connections",
            "this address has the server's maximum of connections open",
        ),
        connections::Refusal::Full => (
            "503 Service Unavailable",
            "overloaded",
            "every connection slot is handling a request; retry later",
        ),
    };
    let body = json!({ "error": { "code": code, "message": message } }).to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Raises this process's soft limit of open files to its hard limit (every connection is an
/// open file) and returns the soft limit now in force; `None` where it is unknown (not Unix).
/// `koru-jit serve` calls it at start; an embedder calling [`serve`] decides for its process.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes one `rlimit` through the valid pointer it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `setrlimit` reads one `rlimit` through the valid pointer it is given. It
            // may refuse (macOS caps it below an infinite hard limit): the old limit stays.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        #[allow(clippy::unnecessary_cast)] // `rlim_t` is `u64` on Linux, not on every Unix
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// Connections the kernel completes and queues before [`serve`] accepts them (the system may
/// lower it: `net.core.somaxconn`). `TcpListener::bind` asks for 128, which a burst of new
/// connections overflows: the kernel then drops their SYNs and the clients retry only after a
/// second.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `address` (`host:port`) with a [`LISTEN_BACKLOG`] queue, for [`serve`].
pub async fn bind(address: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for address in tokio::net::lookup_host(address).await? {
        let socket = if address.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does on Unix: a restarted server may bind while connections
        // of the previous one are in TIME_WAIT.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(address) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// Files the server keeps open besides its connections (listener, epoll, standard streams,
/// configuration and libraries while loading): `max_connections` is lowered to leave them free.
const RESERVED_FILES: u64 = 64;

/// `koru-jit serve`: binds the configured address, prints it, serves until SIGTERM or Ctrl-C.
/// Raises the open-file soft limit first, and lowers `max_connections` (saying so) if even the
/// hard limit cannot hold that many connections.
pub fn serve_blocking(mut config: ServerConfig, registry: Registry) -> Result<(), String> {
    if let Some(files) = raise_open_file_limit() {
        let room = files.saturating_sub(RESERVED_FILES).max(1);
        if config.max_connections as u64 > room {
            eprintln!(
                "koru-jit serve: max_connections lowered from {} to {room}: the open-file limit is {files} (raise it with `ulimit -n`)",
                config.max_connections
            );
            config.max_connections = room as usize;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let address = config.listen.clone();
        let (router, state) = router(config, registry).map_err(|e| e.to_string())?;
        let listener = bind(&address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!("koru-jit serve: listening on http://{local}");
        serve(listener, router, state.serve_options(), shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("koru-jit serve: shut down");
        Ok(())
    })
}

/// A JSON error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: Json,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": { "code": code, "message": message.into() } }),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

fn json_response(status: StatusCode, body: &Json) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Records every request's endpoint, status and latency, and answers 408 past the request
/// timeout. A request whose client went away before its answer is recorded with status 499.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    struct Pending<'a> {
        metrics: &'a Metrics,
        endpoint: &'static str,
        started: Instant,
        done: bool,
    }
    impl Drop for Pending<'_> {
        fn drop(&mut self) {
            if !self.done {
                self.metrics
                    .request(self.endpoint, 499, self.started.elapsed());
            }
        }
    }
    let path = request.uri().path();
    let endpoint = metrics::ENDPOINTS
        .iter()
        .copied()
        .find(|&e| e == path)
        .unwrap_or("other");
    let mut pending = Pending {
        metrics: &state.metrics,
        endpoint,
        started: Instant::now(),
        done: false,
    };
    let response = match tokio::time::timeout(state.config.request_timeout, next.run(request)).await
    {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request was not answered within the server's request timeout",
        )
        .into_response(),
    };
    pending.done = true;
    state.metrics.request(
        endpoint,
        response.status().as_u16(),
        pending.started.elapsed(),
    );
    response
}

/// The 413 answer.
fn body_too_large(state: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the request body is larger than the server's limit of {} bytes",
            state.config.max_body_bytes
        ),
    )
}

/// Answers 413 at once, without waiting for a byte of the body, when the request's
/// `Content-Length` is over the body limit; and closes the connection, whose unread body
/// cannot be skipped. (A chunked body over the limit is refused by the body extractor as it
/// arrives.)
async fn refuse_declared_oversized_body(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|bytes| bytes > state.config.max_body_bytes as u64) {
        let mut response = body_too_large(&state).into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

/// The key's grant, from `Authorization: Bearer KEY` or `X-Api-Key: KEY`.
fn authorize<'a>(state: &'a AppState, headers: &HeaderMap) -> Result<&'a config::Grant, ApiError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, key) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(key)
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim);
    let Some(key) = key else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an API key is required (`Authorization: Bearer KEY` or `X-Api-Key: KEY`)",
        ));
    };
    state
        .config
        .keys
        .get(key)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key"))
}

/// A parsed `/v1/run` or `/v1/check` body.
struct FlowRequest {
    source: String,
    scope: String,
    inputs: Inputs,
    types: Vec<(String, crate::Type)>,
    /// Koru sources replacing host events of the scope (SPEC 13), named `mocks[i]`.
    mocks: Vec<(String, String)>,
    /// `"trace": true` (dispatches) or `"trace": "all"` (SPEC 13).
    trace: crate::TraceLevel,
}

fn parse_request(
    state: &AppState,
    grant: &config::Grant,
    body: Result<Bytes, BytesRejection>,
) -> Result<FlowRequest, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large(state)
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    let value: Json = serde_json::from_slice(&body).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        body: json!({ "error": {
            "code": "bad_json",
            "message": format!("the body is not valid JSON: {e}"),
            "line": e.line(),
            "column": e.column(),
        }}),
    })?;
    let Json::Object(fields) = value else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object {\"source\": ..., \"inputs\": {...}, \"scope\": ...}",
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| {
        !matches!(
            k.as_str(),
            "source" | "inputs" | "scope" | "mocks" | "trace"
        )
    }) {
        return Err(ApiError::bad_request(format!(
            "unknown field `{unknown}` (expected source, inputs, scope, mocks, trace)"
        )));
    }
    let mocks = match fields.get("mocks") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(mocks)) => {
            let mut named = Vec::with_capacity(mocks.len());
            for (i, mock) in mocks.iter().enumerate() {
                let Json::String(text) = mock else {
                    return Err(ApiError::bad_request(format!(
                        "`mocks[{i}]` must be a string of Koru source such as `~users.get = found {{ name: \"test\" }}`"
                    )));
                };
                named.push((format!("mocks[{i}]"), text.clone()));
            }
            named
        }
        Some(_) => return Err(ApiError::bad_request("`mocks` must be an array of strings")),
    };
    let trace = match fields.get("trace") {
        None | Some(Json::Null) | Some(Json::Bool(false)) => crate::TraceLevel::Off,
        Some(Json::Bool(true)) => crate::TraceLevel::Dispatches,
        Some(Json::String(level)) if level == "dispatches" => crate::TraceLevel::Dispatches,
        Some(Json::String(level)) if level == "all" => crate::TraceLevel::All,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`trace` must be true, false, \"dispatches\" or \"all\"",
            ))
        }
    };
    let source = match fields.get("source") {
        Some(Json::String(source)) => source.clone(),
        Some(_) => return Err(ApiError::bad_request("`source` must be a string")),
        None => return Err(ApiError::bad_request("`source` is required")),
    };
    let scope = match fields.get("scope") {
        None | Some(Json::Null) => grant.scopes[0].clone(),
        Some(Json::String(scope)) => scope.clone(),
        Some(_) => return Err(ApiError::bad_request("`scope` must be a string")),
    };
    if !grant.scopes.contains(&scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scope_denied",
            format!("this key may not use scope `{scope}`"),
        ));
    }
    let mut inputs = Inputs::new();
    let mut types = Vec::new();
    match fields.get("inputs") {
        None | Some(Json::Null) => {}
        Some(Json::Object(values)) => {
            for (name, value) in values {
                let scalar = match value {
                    Json::Bool(b) => Scalar::Bool(*b),
                    Json::String(s) => Scalar::Str(s.clone()),
                    Json::Number(n) => match n.as_i64() {
                        Some(i) => Scalar::Int(i),
                        // Written as an integer (no fraction, no exponent) but not an i64 to
                        // serde_json: a u64, or past that (or below i64::MIN) a float, or `-0`
                        // (a float to keep its sign). Out of the i64 range it is refused, not
                        // rounded.
                        None => match integer_literal(&body, name) {
                            Some(literal) => match literal.parse::<i64>() {
                                Ok(i) => Scalar::Int(i),
                                Err(_) => {
                                    return Err(ApiError::bad_request(format!(
                                        "input `{name}`: the integer {literal} does not fit an i64 ({} to {}); write it as a string, or as a float with a fraction or an exponent",
                                        i64::MIN,
                                        i64::MAX
                                    )))
                                }
                            },
                            None => match n.as_f64() {
                                Some(f) => Scalar::Float(f),
                                None => {
                                    return Err(ApiError::bad_request(format!(
                                        "input `{name}`: {n} is not a number an input can hold"
                                    )))
                                }
                            },
                        },
                    },
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "input `{name}`: inputs are integers, floats, booleans or strings"
                        )))
                    }
                };
                types.push((name.clone(), scalar.ty()));
                inputs.insert(name, scalar);
            }
        }
        Some(_) => return Err(ApiError::bad_request("`inputs` must be an object")),
    }
    Ok(FlowRequest {
        source,
        scope,
        inputs,
        types,
        mocks,
        trace,
    })
}

/// The number input `name` as written in `body`, if it is written as an integer (digits and a
/// sign, no fraction or exponent). Read again from the body only for numbers that are not
/// i64s, so the common path parses once.
fn integer_literal(body: &[u8], name: &str) -> Option<String> {
    use serde_json::value::RawValue;
    // Maps, not a struct: a repeated key keeps its last value, as in the parse of the body.
    type Fields<'a> = std::collections::HashMap<std::borrow::Cow<'a, str>, &'a RawValue>;
    let fields: Fields = serde_json::from_slice(body).ok()?;
    let inputs: Fields = serde_json::from_str(fields.get("inputs")?.get()).ok()?;
    let literal = inputs.get(name)?.get().trim();
    literal
        .strip_prefix('-')
        .unwrap_or(literal)
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| literal.to_string())
}

/// A flow's id: a hash of its scope, source and mocks, stable for the life of the process (the
/// scope's shape is the scope's).
fn flow_id(scope: &str, source: &str, mocks: &[(String, String)]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    scope.hash(&mut hasher);
    source.hash(&mut hasher);
    if !mocks.is_empty() {
        mocks.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// Runs `work` on the blocking pool under a run permit, which the blocking task holds until it
/// ends (also when the client has gone away meanwhile). Waits for a permit at most the queue
/// timeout (then 503); a panic in `work` becomes a 500.
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    work: impl FnOnce(&AppState) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let overloaded = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "every run slot stayed busy for the server's queue timeout; retry later",
        )
    };
    let permit = tokio::time::timeout(
        state.config.queue_timeout,
        state.runs.clone().acquire_owned(),
    )
    .await
    .map_err(|_| overloaded())?
    .map_err(|_| overloaded())?;
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        state.metrics.run_started();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&state)));
        state.metrics.run_finished();
        result
    })
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed while handling the request",
        )
    })
}

/// The request's flow, compiled (or from the cache) against its scope, with its id; or the body
/// of the 422 answer, with every diagnostic.
fn compile_request(state: &AppState, request: &FlowRequest) -> Result<(String, crate::Flow), Json> {
    let id = flow_id(&request.scope, &request.source, &request.mocks);
    let shape = state.config.scopes[&request.scope].shape.clone();
    match state
        .engine
        .compile(&id, &request.source, &compile_options(request, shape))
    {
        Ok(flow) => Ok((id, flow)),
        Err(errors) => {
            let mut body = errors.to_json();
            body["flow"] = json!(id);
            // The errors of a mock are positioned in that mock's text: say which.
            if let Some(index) = request
                .mocks
                .iter()
                .position(|(name, _)| *name == errors.name)
            {
                body["mock"] = json!(index);
            }
            Err(body)
        }
    }
}

fn compile_options(request: &FlowRequest, shape: Option<String>) -> CompileOptions {
    CompileOptions {
        scope: Some(request.scope.clone()),
        // Typed by their JSON values unless the source declares them (`~input { ... }`): then
        // the run converts each value to its declared type, or answers 400 naming the input.
        guessed_inputs: request.types.clone(),
        tier: Tier::Auto,
        shape,
        mocks: request.mocks.clone(),
        // A traced flow is a flow of its own in the cache: the untraced one has no trace code.
        trace: request.trace,
        ..CompileOptions::default()
    }
}

async fn run(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = async {
        let grant = authorize(&state, &headers)?;
        let request = parse_request(&state, grant, body)?;
        // If the client goes away (this future is dropped), the run is interrupted: it stops at
        // its next dispatch or loop check and frees its slot.
        let interrupt = crate::InterruptHandle::new();
        let cancel = CancelOnDrop(Some(interrupt.clone()));
        let answer = blocking(&state, move |state| {
            let (id, flow) = match compile_request(state, &request) {
                Ok(compiled) => compiled,
                Err(invalid) => {
                    state.metrics.outcome("invalid");
                    return Ok(json_response(StatusCode::UNPROCESSABLE_ENTITY, &invalid));
                }
            };
            let limits = state.config.scopes[&request.scope].limits;
            let mut run_limits = limits.run_limits(Some(interrupt.clone()));
            let trace = std::sync::Arc::new(crate::CaptureTrace::new());
            if request.trace != crate::TraceLevel::Off {
                run_limits.trace = Some(trace.clone());
            }
            let output = crate::host::CaptureSink::new();
            let report = flow
                .run_report(&request.inputs, &run_limits, &output)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let outcome = &report.outcome;
            let (status, name) = match outcome {
                Outcome::Ok { .. } => (StatusCode::OK, "ok"),
                Outcome::Exhausted { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "exhausted"),
                Outcome::Error { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "error"),
            };
            // A server run is interrupted only because its client went away (nobody reads that
            // answer).
            let abandoned = matches!(
                outcome,
                Outcome::Exhausted {
                    limit: crate::Limit::Interrupted,
                    ..
                }
            );
            state
                .metrics
                .outcome(if abandoned { "abandoned" } else { name });
            let mut body = report.to_json();
            let (out, err) = (output.take_out(), output.take_err());
            body["flow"] = json!(id);
            body["scope"] = json!(request.scope);
            body["output"] = json!(out);
            if !err.is_empty() {
                body["stderr"] = json!(err);
            }
            if request.trace != crate::TraceLevel::Off {
                // Bounded by the scope's `max_trace_lines` and `max_trace_bytes`.
                body["trace_cut"] = json!(trace.was_cut());
                body["trace"] = json!(trace.take_lines());
            }
            Ok(json_response(status, &body))
        })
        .await;
        cancel.disarm();
        answer?
    };
    answer.await.unwrap_or_else(ApiError::into_response)
}

/// Interrupts a run when dropped armed: the request's future was dropped because the client
/// went away before the answer.
struct CancelOnDrop(Option<crate::InterruptHandle>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(interrupt) = &self.0 {
            interrupt.interrupt();
        }
    }
}

async fn check(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = async {
        let grant = authorize(&state, &headers)?;
        let request = parse_request(&state, grant, body)?;
        blocking(&state, move |state| {
            match compile_request(state, &request) {
                Ok((id, flow)) => {
                    state.metrics.check("valid");
                    let bound = flow.cost_bound(&request.inputs);
                    let within = state.config.scopes[&request.scope].limits.run_limits(None);
                    json_response(
                        StatusCode::OK,
                        &json!({
                            "outcome": "valid",
                            "errors": [],
                            "flow": id,
                            "scope": request.scope,
                            "cost_bound": bound.to_json(),
                            "may_exceed": bound.exceeds(&within).map(|l| l.as_str()),
                        }),
                    )
                }
                Err(invalid) => {
                    state.metrics.check("invalid");
                    json_response(StatusCode::UNPROCESSABLE_ENTITY, &invalid)
                }
            }
        })
        .await
    };
    answer.await.unwrap_or_else(ApiError::into_response)
}

async fn flow_stats(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let grant = match authorize(&state, &headers) {
        Ok(grant) => grant,
        Err(e) => return e.into_response(),
    };
    let flows: Vec<Json> = state
        .engine
        .cached_flows()
        .into_iter()
        .filter(|(scope, _)| scope.as_ref().is_some_and(|s| grant.scopes.contains(s)))
        .map(|(scope, flow)| {
            let stats = flow.stats();
            json!({
                "flow": flow.name(),
                "scope": scope,
                "runs": stats.runs,
                "native_runs": stats.native_runs,
                "tier": match stats.tier {
                    Tier::Interp => "interp",
                    Tier::Jit => "jit",
                    Tier::Auto => "auto",
                },
                "compile_time_us": stats.compile_time.as_secs_f64() * 1e6,
                "code_bytes": stats.code_bytes,
                "state_bytes": stats.state_bytes,
                "steps": stats.steps,
                "fuel": stats.fuel,
                "interpreted_iterations": stats.interpreted_iterations,
                "native_iterations": stats.native_iterations,
                "osr_entries": stats.osr_entries,
                "memory_bytes": flow.memory_bytes(),
                // Why the flow stays interpreted, if the JIT refused it (compile budget).
                "jit_error": stats.jit_error.as_ref().map(|e| e.to_string()),
            })
        })
        .collect();
    // The cache as the key's scopes see it: their flows only. The cache-wide counters (hits,
    // misses, evictions of every scope) are for the operator, in /metrics.
    let entries = flows.len();
    let sum = |field: &str| -> u64 { flows.iter().map(|f| f[field].as_u64().unwrap_or(0)).sum() };
    let (code_bytes, bytes) = (sum("code_bytes"), sum("memory_bytes"));
    json_response(
        StatusCode::OK,
        &json!({
            "flows": flows,
            "cache": { "entries": entries, "code_bytes": code_bytes, "bytes": bytes },
        }),
    )
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.gauges()),
    )
        .into_response()
}
