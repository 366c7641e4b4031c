//! HTTP for Cloudauth: common parameters, RPC v1 signature over query + form body, send,
//! classify. Also the operations: which Action a job calls, with which references, and how
//! its images travel (presigned URLs for VerifyMaterial; URLs or `base64://` for
//! SubmitVerification).

use kyc_objects::{ObjectStore, ObjectUri};
use kyc_schemas::{Job, Operation, Reason, Status, Vendor};

use super::config::AlibabaConfig;
use super::request::{self, ImageUrls, Picture, Pictures};
use super::{response, sign};
use crate::call::{CallError, Caller};
use crate::materials::Loaded;
use crate::vendors::{Api, Exchange, VendorError, Verdict};

pub(crate) const VERIFY_MATERIAL: Api = Api {
    vendor: Vendor::Alibaba,
    name: "VerifyMaterial",
    product: "VerifyMaterial",
};
pub(crate) const SUBMIT_VERIFICATION: Api = Api {
    vendor: Vendor::Alibaba,
    name: "SubmitVerification",
    product: "SubmitVerification",
};
pub(crate) const DESCRIBE_VERIFY_RESULT: Api = Api {
    vendor: Vendor::Alibaba,
    name: "DescribeVerifyResult",
    product: "DescribeVerifyResult",
};

/// `Error.MaterialsUploadError` is retried this many times, then taken as final: a URL the
/// vendor cannot fetch twice will not work the third time either.
const MAX_UPLOAD_ERRORS: u32 = 2;

/// Whether a verification first seen at `since` (ms; `None`: never before, so now) can no
/// longer complete at `now`.
fn past_window(since: Option<i64>, now: i64, window: std::time::Duration) -> bool {
    since.is_some_and(|s| now - s > window.as_millis() as i64)
}

/// How a SubmitVerification ended: answered, or recovered by asking about a lost one.
#[derive(Debug)]
enum Submitted {
    Answered(Verdict),
    Recovered(Verdict),
}

#[derive(Debug)]
pub struct AlibabaClient {
    pub(super) config: AlibabaConfig,
    pub(super) http: reqwest::Client,
}

fn refused(code: &str, message: String, reason: Reason) -> CallError {
    CallError::Vendor(VendorError::Permanent {
        code: code.into(),
        message,
        reason,
    })
}

impl AlibabaClient {
    pub(crate) fn new(config: AlibabaConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    fn biz_type(&self, job: &Job) -> Result<String, CallError> {
        job.vendor_refs
            .biz_type
            .clone()
            .or_else(|| self.config.biz_type.clone())
            .ok_or_else(|| {
                refused(
                    "missing_biz_type",
                    "biz_type is empty and KYC_ALIBABA_BIZ_TYPE is not set".into(),
                    Reason::InvalidRequest,
                )
            })
    }

    pub(crate) async fn run(
        &self,
        job: &Job,
        m: &Loaded,
        objects: &ObjectStore,
        caller: &mut Caller<'_>,
    ) -> Result<Verdict, CallError> {
        let biz_type = self.biz_type(job)?;
        let (api, reference) = match job.operation {
            Operation::AlibabaVerifyMaterial => (
                VERIFY_MATERIAL,
                request::reference(job.vendor_refs.biz_id.as_deref(), job),
            ),
            Operation::AlibabaSubmitVerification => (
                SUBMIT_VERIFICATION,
                request::reference(job.vendor_refs.ticket_id.as_deref(), job),
            ),
            Operation::AlibabaDescribeVerifyResult => {
                let biz_id = job.vendor_refs.biz_id.clone().ok_or_else(|| {
                    refused(
                        "missing_material",
                        "biz_id is required for alibaba.describe_verify_result".into(),
                        Reason::InvalidRequest,
                    )
                })?;
                (DESCRIBE_VERIFY_RESULT, biz_id)
            }
            other => {
                return Err(refused(
                    "unsupported_operation",
                    format!("{other} is not an Alibaba operation"),
                    Reason::UnsupportedOperation,
                ))
            }
        };
        // Atomic, not a Cell: the job's future must be Send.
        let upload_errors = &std::sync::atomic::AtomicU32::new(0);
        let (biz_type, reference) = (&biz_type, &reference);
        let send = || async move {
            let ex = self.once(api, job, m, objects, biz_type, reference).await;
            match &ex.result {
                Err(VendorError::Transient { code, .. })
                    if code == "Error.MaterialsUploadError" =>
                {
                    let n = upload_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n < MAX_UPLOAD_ERRORS {
                        return ex;
                    }
                    let code = code.clone();
                    Exchange {
                        result: Err(VendorError::Permanent {
                            code,
                            message: "the vendor could not take the materials".into(),
                            reason: Reason::MaterialUnavailable,
                        }),
                        ..ex
                    }
                }
                _ => ex,
            }
        };
        let mut verdict = if api == SUBMIT_VERIFICATION {
            match self
                .submit(job, m, objects, biz_type, reference, caller, send)
                .await?
            {
                Submitted::Answered(v) => v,
                // The vendor had decided the ticket already: its answer is the outcome.
                Submitted::Recovered(mut v) => {
                    v.vendor_ref = Some(reference.clone());
                    return Ok(v);
                }
            }
        } else {
            caller.call(api, send).await?
        };
        // DescribeVerifyResult −1 (未认证): the person may still be on their way, or may have
        // quit (the seed's own examples). Pending while it can still complete, then abandoned.
        if api == DESCRIBE_VERIFY_RESULT && verdict.vendor_code.as_deref() == Some("-1") {
            let since = caller
                .first_reference_ms(Vendor::Alibaba.as_str(), reference)
                .await?;
            if past_window(since, kyc_store::now_ms(), self.config.pending_window) {
                (verdict.status, verdict.reason) = response::abandoned();
            }
        }
        // What reconciliation needs later: the BizId (or TicketId) under the scene.
        verdict.vendor_ref = Some(reference.clone());
        Ok(verdict)
    }

    /// SubmitVerification, never billed twice for a ticket the vendor has decided. Before the
    /// submission (and after a submission whose answer was lost), a lost SubmitVerification
    /// of this job is asked about with DescribeVerifyResult (BizType = `Biz`, BizId =
    /// `TicketId`, the simulator's and A12's reading; a free query): a recorded verdict is the
    /// outcome, and the lost call is settled as answered and billed (StatusCode 1 and 2 are
    /// billed). −1 means nothing decided is recorded: the lost submission never reached a
    /// verdict (or is in review, and resubmitting meets `Error.DuplicatedTicketId`, free), so
    /// the ticket is submitted again. The seed's −1 also covers a name/ID mismatch; such a
    /// ticket is then submitted (and billed) again, which the vendor offers no way to avoid.
    #[allow(clippy::too_many_arguments)]
    async fn submit<F, Fut>(
        &self,
        job: &Job,
        m: &Loaded,
        objects: &ObjectStore,
        biz_type: &str,
        ticket: &str,
        caller: &mut Caller<'_>,
        mut send: F,
    ) -> Result<Submitted, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Exchange<Verdict>>,
    {
        loop {
            let lost = caller.lost_calls(&[SUBMIT_VERIFICATION]).await?;
            if let Some(last) = lost.last() {
                tracing::info!(
                    lost = lost.len(),
                    "a SubmitVerification answer was lost; asking DescribeVerifyResult"
                );
                let described = caller
                    .call(DESCRIBE_VERIFY_RESULT, || {
                        self.once(DESCRIBE_VERIFY_RESULT, job, m, objects, biz_type, ticket)
                    })
                    .await?;
                if described.vendor_code.as_deref() != Some("-1") {
                    let code = if described.status == Status::Passed {
                        "1"
                    } else {
                        "2"
                    };
                    // Only the latest lost call can have been decided: a decided ticket
                    // refuses resubmission while passed, and earlier ones stay `unknown`.
                    caller.recovered(last, Some(code.into()), true);
                    return Ok(Submitted::Recovered(described));
                }
            }
            match caller
                .call_or_ask(SUBMIT_VERIFICATION, ticket, &mut send)
                .await
            {
                Err(CallError::AnswerLost(_)) => continue,
                Ok(v) => return Ok(Submitted::Answered(v)),
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt. Image URLs are presigned per attempt, so a retry never sends a URL that
    /// has expired while the job waited.
    async fn once(
        &self,
        api: Api,
        job: &Job,
        m: &Loaded,
        objects: &ObjectStore,
        biz_type: &str,
        reference: &str,
    ) -> Exchange<Verdict> {
        let missing = |e: request::Missing| {
            Exchange::not_sent(VendorError::Permanent {
                code: "missing_material".into(),
                message: e.to_string(),
                reason: Reason::InvalidRequest,
            })
        };
        match api.name {
            "VerifyMaterial" => {
                let urls = match self.urls(job, objects).await {
                    Ok(u) => u,
                    Err(e) => return Exchange::not_sent(e),
                };
                match request::verify_material(job, biz_type, reference, &urls) {
                    // In the form body, never the URL: egress proxies and access logs record
                    // URLs, and the signature covers both alike.
                    Ok(params) => self.send(api, "2019-03-07", Vec::new(), params).await,
                    Err(e) => missing(e),
                }
            }
            "SubmitVerification" => {
                let pics = match self.pictures(job, m, objects).await {
                    Ok(p) => p,
                    Err(e) => return Exchange::not_sent(e),
                };
                let form = request::submit(job, biz_type, reference, &pics);
                self.send(api, "2018-09-16", Vec::new(), form).await
            }
            _ => {
                let params = request::describe(biz_type, reference);
                self.send(api, "2019-03-07", Vec::new(), params).await
            }
        }
    }

    /// A URL the vendor can download: presigned for `s3://`, as given for `http(s)://`; the
    /// allowlist is checked again here (the vendor must not be handed any other location).
    async fn url(&self, objects: &ObjectStore, uri: &str) -> Result<String, VendorError> {
        objects
            .presign_get(uri, self.config.url_ttl)
            .await
            .map_err(|e| {
                let (code, reason) = if e.is_not_allowed() {
                    ("material_not_allowed", Reason::MaterialNotAllowed)
                } else {
                    ("material_unavailable", Reason::MaterialUnavailable)
                };
                VendorError::Permanent {
                    code: code.into(),
                    message: e.to_string(),
                    reason,
                }
            })
    }

    async fn urls(&self, job: &Job, objects: &ObjectStore) -> Result<ImageUrls, VendorError> {
        let m = &job.materials;
        let mut urls = ImageUrls::default();
        for (slot, uri) in [
            (&mut urls.face, &m.face_image),
            (&mut urls.front, &m.id_card_front),
            (&mut urls.back, &m.id_card_back),
        ] {
            if let Some(uri) = uri {
                *slot = Some(self.url(objects, uri).await?);
            }
        }
        Ok(urls)
    }

    /// Remote images go as URLs (the vendor fetches them); local files as `base64://`.
    async fn pictures(
        &self,
        job: &Job,
        m: &Loaded,
        objects: &ObjectStore,
    ) -> Result<Pictures, VendorError> {
        let mut pics = Pictures::default();
        for (slot, uri, bytes) in [
            (&mut pics.face, &job.materials.face_image, &m.face_image),
            (
                &mut pics.front,
                &job.materials.id_card_front,
                &m.id_card_front,
            ),
            (&mut pics.back, &job.materials.id_card_back, &m.id_card_back),
            (
                &mut pics.chip,
                &job.materials.id_chip_photo,
                &m.id_chip_photo,
            ),
        ] {
            *slot = match (uri, bytes) {
                (_, Some(b)) => Some(Picture::Bytes(b.clone())),
                (Some(uri), None) if !matches!(ObjectUri::parse(uri), Ok(ObjectUri::Local(_))) => {
                    Some(Picture::Url(self.url(objects, uri).await?))
                }
                _ => None,
            };
        }
        Ok(pics)
    }

    /// Signs (RPC v1 over query + form body) and sends one request: the common parameters
    /// and the signature in the query, the operation's own (personal) parameters in the body.
    async fn send(
        &self,
        api: Api,
        version: &str,
        mut query: Vec<(String, String)>,
        form: Vec<(String, String)>,
    ) -> Exchange<Verdict> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        query.extend(request::common(
            api.name,
            version,
            &self.config.access_key_id,
            &self.config.region,
            chrono::Utc::now(),
            &nonce,
        ));
        let all: Vec<(String, String)> = query.iter().chain(form.iter()).cloned().collect();
        let signed = sign::sign("POST", &all, &self.config.access_key_secret);
        query.push(("Signature".into(), signed.signature));
        let encode = |pairs: &[(String, String)]| {
            pairs
                .iter()
                .map(|(k, v)| format!("{}={}", sign::percent_encode(k), sign::percent_encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        };
        let url = format!(
            "{}/?{}",
            self.config.endpoint.trim_end_matches('/'),
            encode(&query)
        );
        let mut req = self.http.post(url).timeout(self.config.timeout);
        if !form.is_empty() {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(encode(&form));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Exchange::no_answer(VendorError::from_reqwest(&e)),
        };
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("x-acs-retry-after");
        let mut request_id = header("x-acs-request-id");
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Exchange {
                    http_status: Some(status),
                    request_id,
                    vendor_code: None,
                    billable: status == 200 && api.name == "VerifyMaterial",
                    answer_lost: status == 200,
                    result: Err(VendorError::from_reqwest(&e)),
                }
            }
        };
        if let Some(rid) = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["RequestId"].as_str().map(str::to_string))
        {
            request_id = Some(rid);
        }
        let result = match (status, api.name) {
            (200, "SubmitVerification") => response::parse_submit(&bytes),
            (200, _) => response::parse_verify(&bytes),
            _ => response::parse_error(status, &bytes, retry_after.as_deref()),
        };
        let vendor_code = match &result {
            Ok(v) => v.vendor_code.clone(),
            Err(e) => Some(e.code().to_string()),
        };
        // VerifyMaterial bills every answered verification; SubmitVerification a decided one
        // (StatusCode 1 or 2); DescribeVerifyResult is a free query.
        let billable = status == 200
            && match api.name {
                "VerifyMaterial" => true,
                "SubmitVerification" => matches!(vendor_code.as_deref(), Some("1" | "2")),
                _ => false,
            };
        Exchange {
            http_status: Some(status),
            request_id,
            vendor_code,
            billable,
            answer_lost: false,
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_one_is_pending_until_the_window_from_the_first_sighting_has_passed() {
        let hour = std::time::Duration::from_secs(3600);
        assert!(!past_window(None, 10_000_000, hour));
        assert!(!past_window(Some(10_000_000 - 3_600_000), 10_000_000, hour));
        assert!(past_window(Some(10_000_000 - 3_600_001), 10_000_000, hour));
    }
}
