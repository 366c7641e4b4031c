//! The worker's HTTP side: `/healthz` (the process is alive: never depends on the broker or
//! database, or an outage would restart every pod at once), `/readyz` (broker connected and
//! database answering) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use kyc_queue::Broker;
use kyc_worker::Context;

#[derive(Clone)]
struct Probe {
    ctx: Arc<Context>,
    broker: Broker,
}

pub async fn serve(
    listen: &str,
    ctx: Arc<Context>,
    broker: Broker,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "health and metrics endpoint listening");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Probe { ctx, broker });
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

async fn ready(State(p): State<Probe>) -> (StatusCode, &'static str) {
    if !p.broker.is_connected() {
        return (StatusCode::SERVICE_UNAVAILABLE, "broker not connected");
    }
    match p.ctx.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database not reachable"),
    }
}

async fn metrics(State(p): State<Probe>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        p.ctx.metrics.render(),
    )
}
