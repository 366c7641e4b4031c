//! Settings of the Huawei client. Credentials come from the environment, named as the
//! official SDK names them (`HUAWEICLOUD_SDK_AK`, `HUAWEICLOUD_SDK_SK`,
//! `HUAWEICLOUD_SDK_PROJECT_ID`); the binary reads them, this type only holds them.

use std::fmt;
use std::time::Duration;

use super::client::HuaweiClient;

pub const DEFAULT_ENDPOINT: &str = "https://ivs.cn-north-4.myhuaweicloud.com";
pub const DEFAULT_IAM_ENDPOINT: &str = "https://iam.cn-north-4.myhuaweicloud.com";

#[derive(Clone)]
pub enum HuaweiAuth {
    /// AK/SK request signing, the SDK's default.
    AkSk { ak: String, sk: String },
    /// IAM password token (`X-Subject-Token`, valid 24 h), cached and refreshed.
    Password {
        user: String,
        password: String,
        domain: String,
    },
}

/// Secrets never reach a log through `Debug`.
impl fmt::Debug for HuaweiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HuaweiAuth::AkSk { ak, .. } => write!(f, "AkSk {{ ak: {ak:?}, sk: <redacted> }}"),
            HuaweiAuth::Password { user, domain, .. } => {
                write!(
                    f,
                    "Password {{ user: {user:?}, domain: {domain:?}, password: <redacted> }}"
                )
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct HuaweiConfig {
    /// `https://ivs.cn-north-4.myhuaweicloud.com`, or the simulator's address.
    pub endpoint: String,
    pub iam_endpoint: String,
    /// Region name used as the token's project scope.
    pub region: String,
    pub project_id: String,
    pub auth: HuaweiAuth,
    /// Per-request timeout; a timed-out call is retried (and may have been billed).
    pub timeout: Duration,
    /// `Enterprise-Project-Id` (tables 4-1, 4-12, …): bills the calls to an enterprise
    /// project; `None` sends no header (the account's "default" project).
    pub enterprise_project_id: Option<String>,
    /// On `IVS.0009` for a face image over 90 KB of base64 sent with `crop=true`, resend once
    /// with `crop=false`, as the seed advises (tables 4-5, 4-16). The resend is a second,
    /// billable call and has its own ledger row.
    pub retry_uncropped: bool,
}

impl HuaweiConfig {
    pub fn build(self, http: reqwest::Client) -> HuaweiClient {
        HuaweiClient::new(self, http)
    }
}
