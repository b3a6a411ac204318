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
//! all diagnostics), failed at run time (`error`) or hit a limit (`exhausted`): the request was
//! well formed, the flow could not be carried out, and the body's `outcome` says how; 400 a
//! malformed request (JSON, fields, input values); 401 a missing or unknown API key; 403 a scope
//! the key is not granted; 404/405 an unknown endpoint or method; 413 a body over the limit;
//! 500 only for a fault of the server itself (never expected: a panic is caught and reported).
//! Every error body is `{"error": {"code": ..., "message": ...}}`.

pub mod client;
pub mod config;
pub mod load;
pub mod metrics;

use crate::engine::{CompileOptions, Engine, EngineConfig, Tier, TierPolicy};
use crate::host::{CaptureSink, Registry};
use crate::limits::RunLimits;
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
    runs: tokio::sync::Semaphore,
}

impl AppState {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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
        runs: tokio::sync::Semaphore::new(config.max_concurrent_runs.max(1)),
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

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests in
/// flight (graceful shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
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
        let (router, _) = router(config, registry).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!("koru-jit serve: listening on http://{local}");
        serve(listener, router, shutdown_signal())
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

/// Records every request's endpoint, status and latency.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let endpoint = metrics::ENDPOINTS
        .iter()
        .copied()
        .find(|&e| e == path)
        .unwrap_or("other");
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request(endpoint, response.status().as_u16(), started.elapsed());
    response
}

/// The key's grant, from `Authorization: Bearer KEY` or `X-Api-Key: KEY`.
fn authorize<'a>(state: &'a AppState, headers: &HeaderMap) -> Result<&'a config::Grant, ApiError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
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

/// Runs `work` on the blocking pool under a run permit; a panic becomes a 500.
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    work: impl FnOnce(&AppState) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let permit = state.runs.acquire().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        )
    })?;
    let state = state.clone();
    let result = tokio::task::spawn_blocking(move || work(&state)).await;
    drop(permit);
    result.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the server failed while handling the request: {e}"),
        )
    })
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
        blocking(&state, move |state| {
            let id = flow_id(&request.scope, &request.source);
            let flow = match state
                .engine
                .compile(&id, &request.source, &compile_options(&request))
            {
                Ok(flow) => flow,
                Err(errors) => {
                    state.metrics.outcome("invalid");
                    let mut body = errors.to_json();
                    body["flow"] = json!(id);
                    return Ok(json_response(StatusCode::UNPROCESSABLE_ENTITY, &body));
                }
            };
            let limits = state.config.scopes[&request.scope].limits;
            let run_limits = RunLimits {
                fuel: Some(limits.fuel),
                max_iterations: Some(limits.max_iterations),
                deadline: Some(Instant::now() + Duration::from_millis(limits.deadline_ms)),
                interrupt: None,
            };
            let output = CaptureSink::new();
            let outcome = flow
                .run_with_output(&request.inputs, &run_limits, &output)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let (status, name) = match &outcome {
                Outcome::Ok { .. } => (StatusCode::OK, "ok"),
                Outcome::Exhausted { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "exhausted"),
                Outcome::Error { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "error"),
            };
            state.metrics.outcome(name);
            let mut body = outcome.to_json();
            body["flow"] = json!(id);
            body["scope"] = json!(request.scope);
            body["output"] = json!(output.take_out());
            let stderr = output.take_err();
            if !stderr.is_empty() {
                body["stderr"] = json!(stderr);
            }
            Ok(json_response(status, &body))
        })
        .await?
    };
    answer.await.unwrap_or_else(ApiError::into_response)
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
            let id = flow_id(&request.scope, &request.source);
            match state
                .engine
                .compile(&id, &request.source, &compile_options(&request))
            {
                Ok(flow) => {
                    let bound = flow.cost_bound(&request.inputs);
                    let limits = state.config.scopes[&request.scope].limits;
                    let within = RunLimits {
                        fuel: Some(limits.fuel),
                        max_iterations: Some(limits.max_iterations),
                        ..RunLimits::default()
                    };
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
                Err(errors) => {
                    let mut body = errors.to_json();
                    body["flow"] = json!(id);
                    json_response(StatusCode::UNPROCESSABLE_ENTITY, &body)
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
