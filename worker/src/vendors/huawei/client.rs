//! HTTP for IVS: sign (AK/SK) or attach a cached IAM token, send, classify. Also the
//! operation logic: which endpoint a job's operation and materials call.

use bytes::Bytes;
use std::time::Duration;

use kyc_schemas::{Job, Operation, Reason, Vendor};
use tokio::sync::Mutex;

use super::config::{HuaweiAuth, HuaweiConfig};
use super::{request, response, sign};
use crate::call::{CallError, Caller};
use crate::materials::Loaded;
use crate::vendors::body::b64_len;
use crate::vendors::{Api, Exchange, VendorError, Verdict};

pub(crate) const STANDARD: Api = Api {
    vendor: Vendor::Huawei,
    name: "ivs-standard",
    product: "ivs-standard",
};
pub(crate) const EXTENSION: Api = Api {
    vendor: Vendor::Huawei,
    name: "ivs-idcard-extention",
    product: "ivs-idcard-extention",
};

/// IAM tokens live 24 h; refreshing an hour early avoids racing the expiry.
const TOKEN_MARGIN: chrono::Duration = chrono::Duration::hours(1);

#[derive(Debug)]
struct CachedToken {
    /// `Debug` of the client must not print it: a `Secret`.
    value: kyc_schemas::Secret,
    expires_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug)]
pub struct HuaweiClient {
    pub(super) config: HuaweiConfig,
    pub(super) http: reqwest::Client,
    // A tokio Mutex: the holder awaits the IAM call, and the other tasks should wait for
    // that one refresh instead of each starting their own.
    token: Mutex<Option<CachedToken>>,
}

impl HuaweiClient {
    pub(crate) fn new(config: HuaweiConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            token: Mutex::new(None),
        }
    }

    /// Runs one job: picks the endpoint, builds the body, calls it through `caller` (which
    /// takes the limiter token, writes the ledger and retries).
    pub(crate) async fn run(
        &self,
        job: &Job,
        m: &Loaded,
        caller: &mut Caller<'_>,
    ) -> Result<Verdict, CallError> {
        let (api, checked) = match job.operation {
            Operation::HuaweiStandard => (STANDARD, request::standard(job, m, true)),
            Operation::HuaweiIdcardExtension => (EXTENSION, request::extension(job, m)),
            other => {
                return Err(CallError::Vendor(VendorError::Permanent {
                    code: "unsupported_operation".into(),
                    message: format!("{other} is not a Huawei operation"),
                    reason: Reason::UnsupportedOperation,
                }))
            }
        };
        let missing = |e: request::BuildError| {
            CallError::Vendor(VendorError::Permanent {
                code: "missing_material".into(),
                message: e.to_string(),
                reason: Reason::InvalidRequest,
            })
        };
        let checked = checked.map_err(missing)?;
        let detail = api == STANDARD;
        // The body is written as the call goes out and dropped with its answer: the wait
        // for the ledger row and the slot holds the images only (see `request`).
        let send = |r: &request::Request<'_>| self.post(api, Bytes::from(r.body()), detail);
        let verdict = caller.call(api, || send(&checked)).await?;
        // The seed: a face image over 90 KB of base64 with crop=true may get IVS.0009 (no face
        // found); crop=false is the remedy. One resend, then the answer stands.
        let risky = m
            .face_image
            .as_ref()
            .is_some_and(|f| b64_len(f.len()) > request::CROP_RISK_B64_BYTES);
        if api == STANDARD
            && risky
            && self.config.retry_uncropped
            && verdict.vendor_code.as_deref() == Some("IVS.0009")
        {
            tracing::info!("IVS.0009 with crop=true on a large image; resending with crop=false");
            let uncropped = request::standard(job, m, false).map_err(missing)?;
            return caller.call(api, || send(&uncropped)).await;
        }
        Ok(verdict)
    }

    async fn post(&self, api: Api, body: Bytes, detail: bool) -> Exchange<Verdict> {
        let url = format!(
            "{}/v2.0/{}",
            self.config.endpoint.trim_end_matches('/'),
            api.name
        );
        let parsed = match url::Url::parse(&url) {
            Ok(u) => u,
            Err(_) => return Exchange::not_sent(permanent_config("endpoint is not a valid URL")),
        };
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-Project-Id".into(), self.config.project_id.clone()),
        ];
        if let Some(eps) = &self.config.enterprise_project_id {
            headers.push(("Enterprise-Project-Id".into(), eps.clone()));
        }
        let mut req = self.http.post(parsed.clone()).timeout(self.config.timeout);
        match &self.config.auth {
            HuaweiAuth::AkSk { ak, sk } => {
                let host = match parsed.port() {
                    Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or_default()),
                    None => parsed.host_str().unwrap_or_default().to_string(),
                };
                headers.push(("X-Sdk-Date".into(), sign::sdk_date(chrono::Utc::now())));
                headers.push(("Host".into(), host));
                let signed = sign::sign(
                    ak,
                    sk,
                    &sign::SignInput {
                        method: "POST",
                        path: parsed.path(),
                        query: &[],
                        headers: &headers,
                        body: &body,
                    },
                );
                headers.retain(|(n, _)| n != "Host"); // reqwest sets Host itself, identically.
                req = req.header("Authorization", signed.authorization);
            }
            HuaweiAuth::Password { .. } => match self.token().await {
                Ok(t) => req = req.header("X-Auth-Token", t),
                Err(e) => return Exchange::not_sent(e),
            },
        }
        for (n, v) in &headers {
            req = req.header(n.as_str(), v.as_str());
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => return Exchange::no_answer(VendorError::from_reqwest(&e)),
        };
        let status = resp.status().as_u16();
        let request_id = header(&resp, "x-request-id");
        let retry_after = header(&resp, "retry-after");
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Exchange {
                    http_status: Some(status),
                    request_id,
                    vendor_code: None,
                    // The answer was cut off; if the vendor sent 200 it billed the call.
                    billable: status == 200,
                    answer_lost: false,
                    result: Err(VendorError::from_reqwest(&e)),
                };
            }
        };
        let result = if status == 200 {
            response::parse_success(&bytes, detail)
        } else {
            response::parse_error(status, &bytes, retry_after.as_deref())
        };
        if matches!(result, Err(VendorError::AuthExpired { .. })) {
            *self.token.lock().await = None;
        }
        let vendor_code = match &result {
            Ok(v) => v.vendor_code.clone(),
            Err(e) => Some(e.code().to_string()),
        };
        Exchange {
            http_status: Some(status),
            request_id,
            vendor_code,
            // Huawei bills answered calls: HTTP 200, whatever the verdict.
            billable: status == 200,
            answer_lost: false,
            result,
        }
    }

    /// The cached IAM token, fetched (`POST /v3/auth/tokens`, 201 + `X-Subject-Token`) when
    /// missing or near expiry.
    async fn token(&self) -> Result<String, VendorError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if t.expires_at - TOKEN_MARGIN > chrono::Utc::now() {
                return Ok(t.value.expose().to_string());
            }
        }
        let Some(request) = self.token_request() else {
            return Err(permanent_config(
                "token requested without password credentials",
            ));
        };
        let resp = request
            .send()
            .await
            .map_err(|e| VendorError::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let token = header(&resp, "x-subject-token");
        match (status, token) {
            (201, Some(value)) => {
                let expires_at = resp
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| {
                        v["token"]["expires_at"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                    })
                    .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::hours(23));
                *guard = Some(CachedToken {
                    value: kyc_schemas::Secret::new(value.clone()),
                    expires_at,
                });
                Ok(value)
            }
            (s, _) => Err(response::iam_error(s)),
        }
    }
}

impl HuaweiClient {
    /// The IAM password-token request (`POST /v3/auth/tokens`), as the worker sends it and
    /// `kyc doctor` probes it; `None` in AK/SK mode.
    pub(super) fn token_request(&self) -> Option<reqwest::RequestBuilder> {
        let HuaweiAuth::Password {
            user,
            password,
            domain,
        } = &self.config.auth
        else {
            return None;
        };
        let body = serde_json::json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": { "user": { "name": user, "password": password, "domain": { "name": domain } } }
                },
                "scope": { "project": { "name": self.config.region } }
            }
        });
        let url = format!(
            "{}/v3/auth/tokens?nocatalog=true",
            self.config.iam_endpoint.trim_end_matches('/')
        );
        Some(
            self.http
                .post(url)
                .timeout(self.config.timeout.min(Duration::from_secs(10)))
                .header("Content-Type", "application/json;charset=utf8")
                .body(body.to_string()),
        )
    }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn permanent_config(message: &str) -> VendorError {
    VendorError::Permanent {
        code: "config".into(),
        message: message.into(),
        reason: Reason::AuthFailed,
    }
}
