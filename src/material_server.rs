//! Embedded mode only: serves the local image folder on loopback so that a vendor which
//! downloads images itself (Alibaba VerifyMaterial takes URLs, not bytes) can reach them, as
//! it would reach a presigned S3 URL in server mode. Every URL carries a random token made
//! for this run; paths go through the same checks as the CSV's (relative, no `..`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kyc_objects::{ObjectStore, ObjectUri};

#[derive(Clone)]
struct Served {
    token: String,
    objects: ObjectStore,
}

/// Serves `objects`' local folder on `127.0.0.1:<random port>`; returns the URL base to
/// give [`ObjectStore::with_local_url_base`].
pub async fn start(objects: ObjectStore) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let app = Router::new()
        .route("/materials/{token}/{*path}", get(serve))
        .with_state(Served {
            token: token.clone(),
            objects,
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/materials/{token}"))
}

async fn serve(State(s): State<Served>, Path((token, path)): Path<(String, String)>) -> Response {
    if token != s.token || !matches!(ObjectUri::parse(&path), Ok(ObjectUri::Local(_))) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match s.objects.get(&path).await {
        Ok(bytes) => ([("content-type", "image/jpeg")], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
