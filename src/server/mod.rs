//! `koru-jit serve`: an HTTP server (tokio + axum) that runs user-supplied flows under API keys,
//! scopes and per-scope limits, with a shared compiled-flow cache, tiering across requests,
//! per-flow statistics and Prometheus metrics. [`router`] gives the same service to embedders
//! who register their own host events (see `examples/server.rs`).
//!
//! Endpoints (JSON in and out):
//! * `POST /v1/run` `{source, inputs?, scope?}`: runs the flow; answers the CLI's outcome JSON
//!   plus `flow` (the flow's id), `scope` and `output` (what `std.io` printed).
//! * `POST /v1/check` `{source, inputs?, scope?}`: diagnostics and the static cost bound.
//! * `GET /v1/flows/stats`: statistics of the cached flows of the key's scopes.
//! * `GET /metrics` (Prometheus text) and `GET /healthz`: no key needed.
//!
//! Status codes: 200 `ok` (and `valid` for a check); 422 a flow that did not check (`invalid`,
//! all diagnostics), failed at run time (`error`) or hit a limit (`exhausted`: fuel, loop
//! iterations, deadline, or `Output` for the scope's `max_output_bytes`): the request was well
//! formed, the flow could not be carried out, and the body's `outcome` says how; 400 a
//! malformed request (JSON, fields, input values); 401 a missing or unknown API key; 403 a scope
//! the key is not granted; 404/405 an unknown endpoint or method; 408 a request not answered
//! within `request_timeout_ms`; 413 a body over the limit; 503 every run slot busy for
//! `queue_timeout_ms`; 500 a panic while compiling or running a flow (caught; never expected).
//! Every error body is `{"error": {"code": ..., "message": ...}}`.

pub mod client;
pub mod config;
pub mod load;
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
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The connection limits and timeouts of the configuration, for [`serve`].
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            max_connections: self.config.max_connections,
            header_read_timeout: self.config.header_read_timeout,
            shutdown_timeout: self.config.shutdown_timeout,
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
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state.clone());
    Ok((router, state))
}

/// How [`serve`] treats connections.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Connections beyond this wait to be accepted.
    pub max_connections: usize,
    /// A client must send its whole request head within this, or its connection is closed.
    pub header_read_timeout: Duration,
    /// After `shutdown`, connections still open after this are cut.
    pub shutdown_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` over HTTP/1.1 on `listener` until `shutdown` completes; then stops
/// accepting, lets the requests in flight finish, and cuts whatever is still open after
/// `options.shutdown_timeout` (a stalled client cannot hold the shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let connections = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
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

/// `koru-jit serve`: binds the configured address, prints it, serves until SIGTERM or Ctrl-C.
pub fn serve_blocking(config: ServerConfig, registry: Registry) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let address = config.listen.clone();
        let (router, state) = router(config, registry).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(&address)
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
}

fn parse_request(
    grant: &config::Grant,
    body: Result<Bytes, BytesRejection>,
) -> Result<FlowRequest, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than the server's limit",
            )
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
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "source" | "inputs" | "scope"))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field `{unknown}` (expected source, inputs, scope)"
        )));
    }
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
                    Json::Number(n) => match (n.as_i64(), n.as_f64()) {
                        (Some(i), _) => Scalar::Int(i),
                        (None, Some(f)) if !n.is_u64() => Scalar::Float(f),
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "input `{name}`: {n} does not fit an i64"
                            )))
                        }
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
    })
}

/// A flow's id: a hash of its scope and source, stable for the life of the process.
fn flow_id(scope: &str, source: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    scope.hash(&mut hasher);
    source.hash(&mut hasher);
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
    let id = flow_id(&request.scope, &request.source);
    match state
        .engine
        .compile(&id, &request.source, &compile_options(request))
    {
        Ok(flow) => Ok((id, flow)),
        Err(errors) => {
            let mut body = errors.to_json();
            body["flow"] = json!(id);
            Err(body)
        }
    }
}

fn compile_options(request: &FlowRequest) -> CompileOptions {
    CompileOptions {
        scope: Some(request.scope.clone()),
        inputs: request.types.clone(),
        tier: Tier::Auto,
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
        let request = parse_request(grant, body)?;
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
            let run_limits = limits.run_limits(Some(interrupt.clone()));
            let output = crate::host::CaptureSink::new();
            let outcome = flow
                .run_with_output(&request.inputs, &run_limits, &output)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let (status, name) = match &outcome {
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
            let mut body = outcome.to_json();
            let (out, err) = (output.take_out(), output.take_err());
            body["flow"] = json!(id);
            body["scope"] = json!(request.scope);
            body["output"] = json!(out);
            if !err.is_empty() {
                body["stderr"] = json!(err);
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
        let request = parse_request(grant, body)?;
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
            })
        })
        .collect();
    let cache = state.engine.cache_stats();
    json_response(
        StatusCode::OK,
        &json!({
            "flows": flows,
            "cache": {
                "entries": cache.entries,
                "code_bytes": cache.code_bytes,
                "hits": cache.hits,
                "misses": cache.misses,
                "evictions": cache.evictions,
            },
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
