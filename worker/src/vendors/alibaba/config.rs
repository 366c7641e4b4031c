//! Settings of the Alibaba client. Credentials come from the environment under the names the
//! official SDKs read (`ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`); the
//! binary reads them, this type only holds them.

use std::fmt;
use std::time::Duration;

use super::client::AlibabaClient;

/// How long DescribeVerifyResult's −1 (未认证) stays `pending/awaiting_user` after the BizId
/// was first seen: the seed gives a VerifyToken 30 minutes (VerifyMaterial, 返回数据), after
/// which the person can no longer finish. The first sighting is never earlier than the real
/// start, so the window is never cut short.
pub const DEFAULT_PENDING_WINDOW: Duration = Duration::from_secs(30 * 60);

/// HTTPS (the legacy SDK would default to HTTP for 2019-03-07).
pub const DEFAULT_ENDPOINT: &str = "https://cloudauth.aliyuncs.com";

#[derive(Clone)]
pub struct AlibabaConfig {
    /// `https://cloudauth.aliyuncs.com`, or the simulator's address.
    pub endpoint: String,
    pub access_key_id: String,
    pub access_key_secret: String,
    /// `RegionId` (SubmitVerification requires it; `cn-hangzhou`).
    pub region: String,
    /// The console scene used when a row names none (`BizType` / `Biz`).
    pub biz_type: Option<String>,
    /// Per-request timeout. VerifyMaterial downloads the images during the call (≤ 3 s each).
    pub timeout: Duration,
    /// Lifetime of the presigned image URLs handed to VerifyMaterial: long enough for the
    /// vendor's download, short enough to be useless afterwards.
    pub url_ttl: Duration,
    /// DescribeVerifyResult −1 is `pending/awaiting_user` this long after the BizId was first
    /// seen (our submission, or our first query), then `failed/abandoned`.
    pub pending_window: Duration,
}

/// The secret never reaches a log through `Debug`.
impl fmt::Debug for AlibabaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlibabaConfig")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("region", &self.region)
            .field("biz_type", &self.biz_type)
            .field("timeout", &self.timeout)
            .field("url_ttl", &self.url_ttl)
            .field("pending_window", &self.pending_window)
            .finish()
    }
}

impl AlibabaConfig {
    pub fn build(self, http: reqwest::Client) -> AlibabaClient {
        AlibabaClient::new(self, http)
    }
}
