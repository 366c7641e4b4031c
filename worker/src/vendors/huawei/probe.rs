//! `kyc doctor`'s credentials probe: one call that is not billed. Token mode fetches an IAM
//! token exactly as the worker does (IAM is free); AK/SK mode can only prove the signature:
//! IVS has no free endpoint, so an AK/SK-signed request with an empty body goes to
//! ivs-idcard-extention, where the gateway (APIG) checks the signature and IVS then refuses
//! the body (`IVS.0001`, HTTP 400). Huawei bills HTTP 200 answers only.

use bytes::Bytes;

use super::client::HuaweiClient;
use super::config::HuaweiAuth;
use super::{response, sign};
use crate::vendors::{Probe, VendorError};

const TOKEN: &str =
    "IAM password token (POST /v3/auth/tokens, as the worker fetches it; IAM is not billed)";
const SIGNATURE: &str = "signature only: an AK/SK-signed ivs-idcard-extention request with an empty body, which IVS refuses (HTTP 400) after the gateway accepted the signature; only HTTP 200 is billed";

impl HuaweiClient {
    /// Checks the configured credentials with a call that is not billed.
    pub async fn probe(&self) -> Probe {
        match &self.config.auth {
            HuaweiAuth::Password { .. } => self.probe_token().await,
            HuaweiAuth::AkSk { ak, sk } => self.probe_signature(ak, sk).await,
        }
    }

    async fn probe_token(&self) -> Probe {
        let mut p = Probe::start(TOKEN, false);
        let Some(request) = self.token_request() else {
            return p.failed(super::response::iam_error(400));
        };
        let resp = match request.send().await {
            Ok(r) => r,
            Err(e) => return p.failed(VendorError::from_reqwest(&e)),
        };
        p.answered(resp.headers());
        let status = resp.status().as_u16();
        if !(status == 201 && resp.headers().contains_key("x-subject-token")) {
            p.result = Err(response::iam_error(status));
        }
        p
    }

    async fn probe_signature(&self, ak: &str, sk: &str) -> Probe {
        let mut p = Probe::start(SIGNATURE, true);
        let url = format!(
            "{}/v2.0/ivs-idcard-extention",
            self.config.endpoint.trim_end_matches('/')
        );
        let Ok(parsed) = url::Url::parse(&url) else {
            return p.failed(VendorError::Permanent {
                code: "config".into(),
                message: "KYC_HUAWEI_ENDPOINT is not a valid URL".into(),
                reason: kyc_schemas::Reason::AuthFailed,
            });
        };
        let body = Bytes::from_static(b"{}");
        let host = match parsed.port() {
            Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
            None => parsed.host_str().unwrap_or_default().to_string(),
        };
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-Project-Id".into(), self.config.project_id.clone()),
            ("X-Sdk-Date".into(), sign::sdk_date(chrono::Utc::now())),
            ("Host".into(), host),
        ];
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
        headers.retain(|(n, _)| n != "Host");
        let mut req = self
            .http
            .post(parsed)
            .timeout(self.config.timeout)
            .header("Authorization", signed.authorization);
        for (n, v) in &headers {
            req = req.header(n.as_str(), v.as_str());
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => return p.failed(VendorError::from_reqwest(&e)),
        };
        p.answered(resp.headers());
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        let code = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error_code"].as_str().map(str::to_string));
        // An IVS code means the gateway passed the request on: the signature was good.
        if status != 200 && code.as_deref().is_some_and(|c| c.starts_with("IVS.")) {
            return p;
        }
        p.result = Err(match response::parse_error(status, &bytes, None) {
            Err(e) => e,
            Ok(_) => VendorError::Permanent {
                code: format!("HTTP {status}"),
                message: "unexpected answer to an empty request".into(),
                reason: kyc_schemas::Reason::UnexpectedResponse,
            },
        });
        p
    }
}
