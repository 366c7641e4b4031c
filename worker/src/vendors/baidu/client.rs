//! HTTP for faceprint: the OAuth access token (one per process, shared by all tasks, cached
//! until shortly before `expires_in`, dropped on 100/110/111 so the retry fetches a new one),
//! JSON calls, and the operations: which calls a job makes, in which order.

use bytes::Bytes;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kyc_schemas::{Job, Operation, Reason, Status, Vendor};
use tokio::sync::Mutex;

use super::config::BaiduConfig;
use super::{request, response};
use crate::call::{CallError, Caller};
use crate::materials::Loaded;
use crate::vendors::{Api, Exchange, VendorError, Verdict};

const fn api(name: &'static str) -> Api {
    // None of these calls is billed: Baidu bills the person's verification attempts, which
    // result/getall reports (products faceprint-verify / -match / -ocr).
    Api {
        vendor: Vendor::Baidu,
        name,
        product: "faceprint-h5",
    }
}

pub(crate) const GENERATE: Api = api("verifyToken/generate");
pub(crate) const IDCARD_SUBMIT: Api = api("idcard/submit");
pub(crate) const UPLOAD_MATCH_IMAGE: Api = api("uploadMatchImage");
pub(crate) const RESULT_DETAIL: Api = api("result/detail");
pub(crate) const RESULT_SIMPLE: Api = api("result/simple");
pub(crate) const RESULT_STAT: Api = api("result/stat");
pub(crate) const RESULT_MEDIA: Api = api("result/media/query");
pub(crate) const RESULT_GETALL: Api = api("result/getall");

/// Error 18 is "QPS limit" but, persisting, "paid APIs not enabled" (seed FAQ): this many in
/// a row on one job, over at least [`PERSISTENT_18`], is taken as a quota problem, not a wait.
/// Both bounds: a burst of real throttling can give five 18s in a second.
const MAX_CONSECUTIVE_18: u32 = 5;
const PERSISTENT_18: Duration = Duration::from_secs(60);

/// A job's run of error 18 answers.
#[derive(Debug, Default)]
struct Run18 {
    count: AtomicU32,
    since: std::sync::Mutex<Option<std::time::Instant>>,
}

/// What asking about an earlier session of the job found.
#[derive(Debug)]
enum Recovered {
    /// No session to ask about, or it is gone: open a new one.
    Nothing,
    /// The session is alive and nobody verified yet: carry on with its verify_token.
    Resume(String),
    /// The person verified already: the verdict.
    Decided(Verdict),
}

#[derive(Debug)]
struct CachedToken {
    /// `Debug` of the client must not print it: a `Secret`.
    value: kyc_schemas::Secret,
    refresh_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug)]
pub struct BaiduClient {
    pub(super) config: BaiduConfig,
    pub(super) http: reqwest::Client,
    // A tokio Mutex: one task refreshes while the others wait for its token.
    token: Mutex<Option<CachedToken>>,
}

fn refused(code: &str, message: String, reason: Reason) -> CallError {
    CallError::Vendor(VendorError::Permanent {
        code: code.into(),
        message,
        reason,
    })
}

impl BaiduClient {
    pub(crate) fn new(config: BaiduConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            token: Mutex::new(None),
        }
    }

    pub(crate) async fn run(
        &self,
        job: &Job,
        m: &Loaded,
        caller: &mut Caller<'_>,
    ) -> Result<Verdict, CallError> {
        if job.operation == Operation::BaiduStartSession {
            return self.start_session(job, m, caller).await;
        }
        let token = job.vendor_refs.verify_token.as_deref().ok_or_else(|| {
            refused(
                "missing_material",
                format!("verify_token is required for {}", job.operation),
                Reason::InvalidRequest,
            )
        })?;
        let body = wire(&request::by_token(token));
        let consecutive = Run18::default();
        let mut verdict = match job.operation {
            Operation::BaiduResultDetail | Operation::BaiduResultSimple => {
                let api = if job.operation == Operation::BaiduResultDetail {
                    RESULT_DETAIL
                } else {
                    RESULT_SIMPLE
                };
                caller
                    .call(api, || {
                        self.guarded(&consecutive, self.post(api, &body, response::parse_detail))
                    })
                    .await?
            }
            Operation::BaiduResultGetall => self.getall(token, caller).await?,
            // stat and media carry no verdict: read them, then take it from getall.
            Operation::BaiduResultStat | Operation::BaiduResultMedia => {
                let api = if job.operation == Operation::BaiduResultStat {
                    RESULT_STAT
                } else {
                    RESULT_MEDIA
                };
                caller
                    .call(api, || {
                        self.guarded(&consecutive, self.post(api, &body, response::parse_ack))
                    })
                    .await?;
                self.getall(token, caller).await?
            }
            other => {
                return Err(refused(
                    "unsupported_operation",
                    format!("{other} is not a Baidu operation"),
                    Reason::UnsupportedOperation,
                ))
            }
        };
        verdict.vendor_ref = Some(token.to_string());
        Ok(verdict)
    }

    async fn getall(&self, token: &str, caller: &mut Caller<'_>) -> Result<Verdict, CallError> {
        let body = wire(&request::by_token(token));
        let consecutive = Run18::default();
        caller
            .call_about(RESULT_GETALL, token, || {
                self.guarded(
                    &consecutive,
                    self.post(RESULT_GETALL, &body, |b| response::parse_getall(b, token)),
                )
            })
            .await
    }

    /// generate → idcard/submit (name + ID given) → uploadMatchImage (face given). The job
    /// ends `pending` with the verify_token: the person still has to open the H5 page.
    async fn start_session(
        &self,
        job: &Job,
        m: &Loaded,
        caller: &mut Caller<'_>,
    ) -> Result<Verdict, CallError> {
        let plan = job
            .vendor_refs
            .plan_id
            .clone()
            .or_else(|| self.config.plan_id.clone())
            .ok_or_else(|| {
                refused(
                    "missing_plan_id",
                    "plan_id is empty and KYC_BAIDU_PLAN_ID is not set".into(),
                    Reason::InvalidRequest,
                )
            })?;
        let consecutive = Run18::default();
        let token = match self.recover_session(caller).await? {
            Recovered::Decided(v) => return Ok(v),
            Recovered::Resume(token) => token,
            Recovered::Nothing => {
                let body = wire(&request::generate(&plan));
                caller
                    .call(GENERATE, || {
                        self.guarded(
                            &consecutive,
                            self.post(GENERATE, &body, response::parse_generate),
                        )
                    })
                    .await?
            }
        };
        // The session's calls carry its verify_token into the ledger before they go out: a
        // worker killed mid-call leaves what the next delivery needs to ask about it.
        if let Some(body) = request::idcard_submit(job, &token).as_ref().map(wire) {
            caller
                .call_about(IDCARD_SUBMIT, &token, || {
                    self.guarded(
                        &consecutive,
                        self.post(IDCARD_SUBMIT, &body, response::parse_ack),
                    )
                })
                .await?;
        }
        if let Some(face) = &m.face_image {
            let body = Bytes::from(request::upload_match_image(
                &token,
                face,
                self.config.quality_control.as_deref(),
                self.config.liveness_control.as_deref(),
            ));
            caller
                .call_about(UPLOAD_MATCH_IMAGE, &token, || {
                    self.guarded(
                        &consecutive,
                        self.post(UPLOAD_MATCH_IMAGE, &body, response::parse_ack),
                    )
                })
                .await?;
        }
        Ok(Verdict {
            status: Status::Pending,
            reason: Reason::AwaitingUser,
            vendor_code: None,
            vendor_message: None,
            similarity: None,
            liveness_score: None,
            vendor_ref: Some(token),
            charges: Vec::new(),
        })
    }

    /// A session an earlier delivery of this job opened, whose idcard/submit or
    /// uploadMatchImage lost its answer (the worker died mid-call): asked about with
    /// result/getall by its verify_token (a free query) instead of opening a second session.
    /// Verified already (the person was quicker than our redelivery): that verdict, with its
    /// charges, is the outcome. Nobody verified yet: the session is resumed (its free set-up
    /// calls are sent again on the same token). Token unknown or expired: a new session, as
    /// without recovery. A lost verifyToken/generate left no token to ask about: a new
    /// session too (an unused session costs nothing; Baidu bills the person's attempts).
    async fn recover_session(&self, caller: &mut Caller<'_>) -> Result<Recovered, CallError> {
        let lost = caller
            .lost_calls(&[IDCARD_SUBMIT, UPLOAD_MATCH_IMAGE])
            .await?;
        let Some(token) = lost.iter().rev().find_map(|l| l.reference.clone()) else {
            return Ok(Recovered::Nothing);
        };
        tracing::info!(
            lost = lost.len(),
            "a session call lost its answer; asking result/getall about its verify_token"
        );
        let verdict = match self.getall(&token, caller).await {
            Ok(v) => v,
            Err(CallError::Vendor(VendorError::Permanent {
                reason: Reason::SessionExpired,
                ..
            })) => {
                tracing::info!("the earlier session is gone; opening a new one");
                return Ok(Recovered::Nothing);
            }
            Err(e) => return Err(e),
        };
        // The vendor knows the session: the lost calls reached it (Baidu never bills them).
        for l in lost
            .iter()
            .filter(|l| l.reference.as_deref() == Some(&token))
        {
            caller.recovered(l, None, false);
        }
        if verdict.status == Status::Pending {
            return Ok(Recovered::Resume(token));
        }
        Ok(Recovered::Decided(Verdict {
            vendor_ref: Some(token),
            ..verdict
        }))
    }

    /// Counts error 18 in a row; persisting, it becomes `quota_exhausted`.
    async fn guarded<T>(
        &self,
        consecutive: &Run18,
        call: impl std::future::Future<Output = Exchange<T>>,
    ) -> Exchange<T> {
        let ex = call.await;
        match &ex.result {
            Err(VendorError::Throttled { code, .. }) if code == "18" => {
                let n = consecutive.count.fetch_add(1, Ordering::Relaxed) + 1;
                let since = *consecutive
                    .since
                    .lock()
                    .expect("run lock")
                    .get_or_insert_with(std::time::Instant::now);
                if n < MAX_CONSECUTIVE_18 || since.elapsed() < PERSISTENT_18 {
                    return ex;
                }
                Exchange {
                    result: Err(VendorError::Permanent {
                        code: "18".into(),
                        message: "QPS limit persists: paid APIs not enabled or no quota".into(),
                        reason: Reason::QuotaExhausted,
                    }),
                    ..ex
                }
            }
            _ => {
                consecutive.count.store(0, Ordering::Relaxed);
                *consecutive.since.lock().expect("run lock") = None;
                ex
            }
        }
    }

    async fn post<T>(
        &self,
        api: Api,
        body: &Bytes,
        parse: impl Fn(&[u8]) -> Result<T, VendorError>,
    ) -> Exchange<T> {
        let token = match self.token().await {
            Ok(t) => t,
            Err(e) => return Exchange::not_sent(e),
        };
        let url = format!(
            "{}/rpc/2.0/brain/solution/faceprint/{}",
            self.config.endpoint.trim_end_matches('/'),
            api.name
        );
        let resp = match self
            .http
            .post(url)
            .query(&[("access_token", token.as_str())])
            .timeout(self.config.timeout)
            .header("Content-Type", "application/json")
            // A cheap clone of the bytes built once per job, not a copy per attempt.
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Exchange::no_answer(VendorError::from_reqwest(&e)),
        };
        let status = resp.status().as_u16();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Exchange {
                    http_status: Some(status),
                    request_id: None,
                    vendor_code: None,
                    billable: false,
                    answer_lost: false,
                    result: Err(VendorError::from_reqwest(&e)),
                }
            }
        };
        let log_id = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| match &v["log_id"] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let result = if status >= 500 {
            Err(VendorError::Transient {
                code: format!("HTTP {status}"),
                message: "gateway error".into(),
                retry_after: None,
                reason: Reason::VendorInternal,
            })
        } else {
            parse(&bytes)
        };
        if matches!(result, Err(VendorError::AuthExpired { .. })) {
            // The retry fetches a fresh token.
            let mut cached = self.token.lock().await;
            if cached.as_ref().is_some_and(|c| c.value.expose() == token) {
                *cached = None;
            }
        }
        let vendor_code = match &result {
            Ok(_) => None,
            Err(e) => Some(e.code().to_string()),
        };
        Exchange {
            http_status: Some(status),
            request_id: log_id,
            vendor_code,
            billable: false,
            answer_lost: false,
            result,
        }
    }

    /// The cached access token, fetched (`/oauth/2.0/token`, `client_credentials`) when
    /// missing or close to expiry.
    async fn token(&self) -> Result<String, VendorError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if t.refresh_at > chrono::Utc::now() {
                return Ok(t.value.expose().to_string());
            }
        }
        let resp = self
            .token_request()
            .send()
            .await
            .map_err(|e| VendorError::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        if let Some(token) = v["access_token"].as_str() {
            let expires_in = v["expires_in"].as_i64().unwrap_or(2_592_000);
            // Refresh a tenth of the lifetime early (at most an hour): never race the expiry.
            let margin = (expires_in / 10).min(3600);
            *guard = Some(CachedToken {
                value: kyc_schemas::Secret::new(token),
                refresh_at: chrono::Utc::now() + chrono::Duration::seconds(expires_in - margin),
            });
            return Ok(token.to_string());
        }
        Err(token_refused(status, &v))
    }
}

/// Why the token endpoint gave no token: a server failure (retry) or a refusal of the
/// API Key / Secret Key.
pub(super) fn token_refused(status: u16, v: &serde_json::Value) -> VendorError {
    if status >= 500 || status == 429 {
        return VendorError::Transient {
            code: format!("OAuth HTTP {status}"),
            message: "token endpoint failed".into(),
            retry_after: None,
            reason: Reason::VendorInternal,
        };
    }
    VendorError::Permanent {
        code: v["error"].as_str().unwrap_or("oauth").to_string(),
        message: v["error_description"]
            .as_str()
            .unwrap_or("token refused")
            .to_string(),
        reason: Reason::AuthFailed,
    }
}

impl BaiduClient {
    /// The OAuth token request, as the worker sends it and `kyc doctor` probes it. The
    /// secret travels in the query (Baidu's protocol): never log this request's URL.
    pub(super) fn token_request(&self) -> reqwest::RequestBuilder {
        let url = format!(
            "{}/oauth/2.0/token",
            self.config.endpoint.trim_end_matches('/')
        );
        self.http
            .get(url)
            .query(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.config.api_key.as_str()),
                ("client_secret", self.config.secret_key.as_str()),
            ])
            // The call timeout bounds it too: a hung token endpoint must not outlast the call.
            .timeout(self.config.timeout.min(Duration::from_secs(10)))
    }
}

/// A request body as sent: serialized once, then shared by every attempt.
fn wire(v: &serde_json::Value) -> Bytes {
    Bytes::from(v.to_string())
}
