//! The worker's HTTP side: `/healthz` (the process is alive and no consumer is stuck: never
//! depends on the broker or database, or an outage would restart every pod at once),
//! `/readyz` (broker connected and database answering, decided within a second) and
//! `/metrics` (Prometheus text).

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
    /// The vendors whose queues this worker consumes (those it has credentials for).
    vendors: Arc<str>,
    /// A consumer holding deliveries that has not moved for longer than this is stuck.
    stuck_after: std::time::Duration,
}

/// A readiness answer within a second in every state: a database outage must read as "not
/// ready" to Kubernetes, not as a probe that hangs until its own timeout.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

pub async fn serve(
    listen: &str,
    ctx: Arc<Context>,
    broker: Broker,
    vendors: &[kyc_schemas::Vendor],
    stuck_after: std::time::Duration,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let vendors: Vec<&str> = vendors.iter().map(|v| v.as_str()).collect();
    let vendors: Arc<str> = vendors.join(",").into();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "health and metrics endpoint listening");
    let app = Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Probe {
            ctx,
            broker,
            vendors,
            stuck_after,
        });
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

/// 503 naming every stuck consumer (vendor, deliveries held, seconds without progress), so
/// that the orchestrator restarts the pod and the deliveries go to another worker.
async fn health(State(p): State<Probe>) -> (StatusCode, String) {
    let stuck = p.ctx.metrics.progress.stuck(p.stuck_after);
    if stuck.is_empty() {
        return (StatusCode::OK, "ok".into());
    }
    let which: Vec<String> = stuck
        .iter()
        .map(|s| {
            format!(
                "{} holds {} deliveries without progress for {} s",
                s.vendor,
                s.held,
                s.idle.as_secs()
            )
        })
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "stuck consumer (KYC_STUCK_AFTER {} s): {}",
            p.stuck_after.as_secs(),
            which.join("; ")
        ),
    )
}

async fn ready(State(p): State<Probe>) -> (StatusCode, String) {
    if !p.broker.is_connected() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "broker not connected".into(),
        );
    }
    match tokio::time::timeout(PING_TIMEOUT, p.ctx.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, format!("ready; consuming: {}", p.vendors)),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database not reachable: {}", db_reason(&e)),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database did not answer within 800 ms".into(),
        ),
    }
}

/// The cause of a failed ping, without the URL or anything the driver quoted.
fn db_reason(e: &kyc_store::StoreError) -> String {
    match e {
        kyc_store::StoreError::Database(e) => kyc_store::reach::cause(e),
        other => other.to_string(),
    }
}

async fn metrics(State(p): State<Probe>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        {
            let (writes, transactions) = p.ctx.store.group_stats();
            p.ctx.metrics.database_writes(writes, transactions);
            p.ctx.metrics.render()
        },
    )
}
