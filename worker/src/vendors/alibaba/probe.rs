//! `kyc doctor`'s credentials probe, signature only: Cloudauth has no call that checks an
//! AccessKey by itself, so the probe asks `DescribeVerifyResult` about a BizId that was never
//! submitted. A good signature gets `VerifyStatus` −1 (nothing recorded); a bad one
//! `InvalidAccessKeyId.NotFound` or `SignatureDoesNotMatch`. The client treats
//! DescribeVerifyResult as a free query (the seeds list charges for verifications only; the
//! real vendor's pricing of this query is unconfirmed), and it verifies nobody.

use super::client::AlibabaClient;
use super::{request, response, sign};
use crate::vendors::{Probe, VendorError};

const SIGNATURE: &str = "signature only: DescribeVerifyResult for a BizId never submitted (a query; no verification is made or billed)";

impl AlibabaClient {
    /// Checks the AccessKey's signature with a call that verifies nobody.
    pub async fn probe(&self) -> Probe {
        let mut p = Probe::start(SIGNATURE, true);
        let biz_type = self
            .config
            .biz_type
            .clone()
            .unwrap_or_else(|| "kyc-doctor".into());
        let biz_id = format!("kyc-doctor-{}", uuid::Uuid::new_v4().simple());
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mut query = request::common(
            "DescribeVerifyResult",
            "2019-03-07",
            &self.config.access_key_id,
            &self.config.region,
            chrono::Utc::now(),
            &nonce,
        );
        query.extend(request::describe(&biz_type, &biz_id));
        let signed = sign::sign("POST", &query, &self.config.access_key_secret);
        query.push(("Signature".into(), signed.signature));
        let encoded = query
            .iter()
            .map(|(k, v)| format!("{}={}", sign::percent_encode(k), sign::percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let url = format!("{}/?{encoded}", self.config.endpoint.trim_end_matches('/'));
        let resp = match self
            .http
            .post(url)
            .timeout(self.config.timeout)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return p.failed(VendorError::from_reqwest(&e)),
        };
        p.answered(resp.headers());
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("x-acs-retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.unwrap_or_default();
        if status != 200 {
            p.result = Err(
                match response::parse_error(status, &bytes, retry_after.as_deref()) {
                    Err(e) => e,
                    Ok(_) => VendorError::Permanent {
                        code: format!("HTTP {status}"),
                        message: "unexpected answer".into(),
                        reason: kyc_schemas::Reason::UnexpectedResponse,
                    },
                },
            );
        }
        p
    }
}
