//! `kyc doctor`'s credentials probe: the OAuth access token, fetched exactly as the worker
//! fetches it. Baidu bills verification attempts, never the token endpoint.

use super::client::{token_refused, BaiduClient};
use crate::vendors::{Probe, VendorError};

const TOKEN: &str =
    "OAuth access token (GET /oauth/2.0/token, as the worker fetches it; not billed)";

impl BaiduClient {
    /// Checks the API Key and Secret Key with a call that is not billed.
    pub async fn probe(&self) -> Probe {
        let mut p = Probe::start(TOKEN, false);
        let resp = match self.token_request().send().await {
            Ok(r) => r,
            Err(e) => return p.failed(VendorError::from_reqwest(&e)),
        };
        p.answered(resp.headers());
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        if v["access_token"].as_str().is_none() {
            p.result = Err(token_refused(status, &v));
        }
        p
    }
}
