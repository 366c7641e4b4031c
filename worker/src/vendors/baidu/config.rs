//! Settings of the Baidu client. Credentials come from the environment (`BAIDU_API_KEY`,
//! `BAIDU_SECRET_KEY`, the app's API Key and Secret Key); the binary reads them, this type
//! only holds them.

use std::fmt;
use std::time::Duration;

use super::client::BaiduClient;

pub const DEFAULT_ENDPOINT: &str = "https://aip.baidubce.com";

#[derive(Clone)]
pub struct BaiduConfig {
    /// `https://aip.baidubce.com` (OAuth and the H5 API share it), or the simulator's address.
    pub endpoint: String,
    pub api_key: String,
    pub secret_key: String,
    /// The H5 plan used when a row names none (`plan_id`).
    pub plan_id: Option<String>,
    /// uploadMatchImage's `quality_control` / `liveness_control` (NONE, LOW, NORMAL, HIGH).
    pub quality_control: Option<String>,
    pub liveness_control: Option<String>,
    pub timeout: Duration,
}

/// The secret never reaches a log through `Debug`.
impl fmt::Debug for BaiduConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaiduConfig")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key)
            .field("secret_key", &"<redacted>")
            .field("plan_id", &self.plan_id)
            .field("quality_control", &self.quality_control)
            .field("liveness_control", &self.liveness_control)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl BaiduConfig {
    pub fn build(self, http: reqwest::Client) -> BaiduClient {
        BaiduClient::new(self, http)
    }
}
