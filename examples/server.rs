//! Embedding koru-jit in your own HTTP service: register the application's host events in
//! Rust, describe scopes, limits and API keys in TOML, and serve the same endpoints as
//! `koru-jit serve` (POST /v1/run, /v1/check; GET /v1/flows/stats, /metrics, /healthz), here
//! merged with one route of the application's own.
//!
//!     cargo run --release --features server --example server
//!     curl -s localhost:8090/v1/run -H 'Authorization: Bearer shop-key-0001' \
//!          -d '{"source": "~price(item: \"tea\")\n| found p |> quote(price: p, qty: 3)\n| unknown |> _"}'
//!     # {"outcome":"ok","value":{"branch":"total","value":10.5},"fuel":2,...}

use koru_jit::server::{self, ServerConfig};
use koru_jit::{Registry, Reply};
use std::path::Path;

const CONFIG: &str = r#"
listen = "127.0.0.1:8090"
max_body_bytes = 16384

[scopes.shop]
allow = ["price", "quote", "std.io:*"]
fuel = 10000
max_iterations = 100000
deadline_ms = 200

[[keys]]
name = "shop-frontend"
key = "shop-key-0001"          # in production: key_env = "SHOP_KORU_KEY"
scopes = ["shop"]
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The application's host events: Koru declarations and typed Rust closures.
    let mut registry = Registry::with_std();
    registry.event(
        "~event price { item: []const u8 } | found f64 | unknown",
        |item: &str| match item {
            "tea" => Reply::branch("found").value(3.5),
            "cake" => Reply::branch("found").value(4.25),
            _ => Reply::branch("unknown"),
        },
    )?;
    registry.event(
        "~event quote { price: f64, qty: i64 } | total f64",
        |price: f64, qty: i64| price * qty as f64,
    )?;

    // 2. Scopes, limits and keys from TOML (a file in practice: `ServerConfig::load(path)`).
    let config = ServerConfig::parse(CONFIG, "example config", Path::new("."))?;
    let address = config.listen.clone();

    // 3. The service, as an axum Router: mount it next to the application's own routes.
    let (koru, state) = server::router(config, registry)?;
    let options = state.serve_options();
    let app = axum::Router::new()
        .route(
            "/cache",
            axum::routing::get(move || {
                let stats = state.engine().cache_stats();
                async move { format!("{} flows cached\n", stats.entries) }
            }),
        )
        .merge(koru);

    // 4. Serve until SIGTERM or Ctrl-C; requests in flight finish first.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&address).await?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        server::serve(listener, app, options, server::shutdown_signal()).await
    })?;
    Ok(())
}
