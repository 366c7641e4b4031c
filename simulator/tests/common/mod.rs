//! What the simulator's integration tests share: a Baidu simulator on loopback with one
//! client, and an access token for it.

use kyc_simulator::{SimConfig, Simulator};
use serde_json::Value;

/// Sends a request to the simulator and reads its JSON answer.
pub async fn answer(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// A simulator whose Baidu side knows one client (`ak`/`sk`), an HTTP client, and an access
/// token from its OAuth endpoint.
pub async fn baidu() -> (Simulator, reqwest::Client, String) {
    let mut config = SimConfig::default();
    config.baidu.clients = vec![("ak".into(), "sk".into())];
    let sim = Simulator::start(config, "127.0.0.1:0").await.unwrap();
    let http = reqwest::Client::new();
    let token = answer(http.get(format!(
        "{}/oauth/2.0/token?grant_type=client_credentials&client_id=ak&client_secret=sk",
        sim.base_url()
    )))
    .await;
    let access = token["access_token"].as_str().unwrap().to_string();
    (sim, http, access)
}
