//! Alibaba Cloud Cloudauth as its SDKs see it: RPC-style `POST /` (GET too) whose `Action`
//! is `VerifyMaterial`, `DescribeVerifyResult` (2019-03-07) or `SubmitVerification`
//! (2018-09-16); RPC v1 or ACS3 signatures ([`auth`]), stale timestamps and reused nonces
//! refused; errors in the vendor's body (`RequestId`, `HostId`, `Code`, `Message`,
//! `Recommend`) with its non-standard HTTP statuses; throttling as 400 `Throttling.User` with
//! `x-acs-retry-after` (ms). VerifyMaterial downloads the image URLs itself (3 s, 2 MB), as
//! the vendor does. Answers follow `docs/simulator.md`; billable: VerifyMaterial with HTTP
//! 200, SubmitVerification with StatusCode 1 or 2.
// Early returns carry the finished HTTP answer, one per request: boxing buys nothing.
#![allow(clippy::result_large_err)]

pub mod auth;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::faults::{self, VendorFaults};
use crate::ledger::Call;
use crate::scenario::Scenario;
use crate::server::Shared;
use crate::vendors::huawei::marker;
use auth::{form_pairs, verify_acs3, verify_rpc_v1, SignatureError};

const VENDOR: &str = "alibaba";
/// Timestamps (and nonces) are honoured for 31 minutes (Alibaba's documented window).
const WINDOW_SECS: i64 = 31 * 60;
/// VerifyMaterial's documented download limits.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;
const MAX_SUBMIT_BODY: usize = 8 * 1024 * 1024;

/// Accounts the simulated Alibaba Cloud knows.
#[derive(Debug, Clone, Default)]
pub struct AlibabaSim {
    /// AccessKeyId → AccessKeySecret.
    pub access_keys: Vec<(String, String)>,
    /// Answer VerifyMaterial in the seed document's form (`ResultObject`, values as strings)
    /// instead of the SDKs' (top level, native numbers).
    pub seed_shapes: bool,
    /// CA certificates (PEM) trusted, besides the system's, when downloading image URLs over
    /// https: the CA of a private S3 whose presigned URLs the jobs carry. Never "trust all".
    pub trusted_ca_pem: Option<String>,
}

/// What Alibaba remembers between calls.
#[derive(Debug)]
pub struct AlibabaState {
    /// Nonce → when first seen (ms); a nonce is good once within the window.
    nonces: Mutex<HashMap<String, i64>>,
    /// (BizType, BizId) or (Biz, TicketId) → the last verification, for DescribeVerifyResult.
    results: Mutex<HashMap<(String, String), Recorded>>,
    /// (Biz, TicketId) → last StatusCode, for `Error.DuplicatedTicketId`.
    tickets: Mutex<HashMap<(String, String), i64>>,
    http: reqwest::Client,
}

impl AlibabaState {
    /// Fresh state; image downloads trust `config.trusted_ca_pem` besides the system's roots.
    pub fn new(config: &AlibabaSim) -> std::io::Result<Self> {
        let mut http = reqwest::Client::builder();
        if let Some(pem) = &config.trusted_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            http = http.tls_certs_merge(certs);
        }
        Ok(Self {
            nonces: Default::default(),
            results: Default::default(),
            tickets: Default::default(),
            http: http
                .build()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        })
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    /// The VerifyStatus DescribeVerifyResult reports once the verification is complete.
    status: i64,
    score: f64,
    scenario: Scenario,
    /// Submitted through SubmitVerification and still in review (940/941/942).
    in_review: bool,
    polls: u32,
    name: String,
    id: String,
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/", post(rpc).get(rpc))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    VerifyMaterial,
    Describe,
    Submit,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::VerifyMaterial => "VerifyMaterial",
            Api::Describe => "DescribeVerifyResult",
            Api::Submit => "SubmitVerification",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Api::Submit => "2018-09-16",
            _ => "2019-03-07",
        }
    }

    fn internal_error(self) -> Response {
        let code = match self {
            Api::VerifyMaterial => "SystemError",
            Api::Submit => "Error.InternalError",
            Api::Describe => "InternalError",
        };
        error(code, "An internal error occurred.")
    }
}

use kyc_schemas::codes::alibaba::{CODE, TABLE};

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// The codes this simulator sends, each a row of Alibaba's table (HTTP status included): the
/// test below checks them against the table, and [`error`] refuses any other.
pub(crate) const EMITS: &[&str] = &[
    "SystemError",
    "Error.InternalError",
    "InternalError",
    "InvalidAction.NotFound",
    "InvalidVersion",
    "IncompleteSignature",
    "MissingAccessKeyId",
    "InvalidAccessKeyId.NotFound",
    "MissingTimestamp",
    "InvalidTimeStamp.Format",
    "InvalidTimeStamp.Expired",
    "MissingSignatureNonce",
    "SignatureDoesNotMatch",
    "SignatureNonceUsed",
    "Throttling.User",
    "NoPermission",
    "Error.NoPermissionAccess",
    "InDebt",
    "DownloadTimedOut",
    "ResourcesTooLarge",
    "InvalidParameter",
    "ParameterIsNull",
    "NoFaceDetected",
    "MissingParameter",
    "Error.MaterialsUploadError",
    "InvalidParam.ParamMissing",
    "InvalidParam.MaterialsNotValid",
    "InvalidParam.MaterialsEmpty",
    "Error.MaterialsInsufficient",
    "Error.DuplicatedTicketId",
    "Error.SubmitMaterialsError",
];

/// The vendor's error body for `code`, with the HTTP status Alibaba's table gives it.
fn error(code: &str, message: &str) -> Response {
    let row = EMITS
        .contains(&code)
        .then(|| kyc_schemas::codes::find(TABLE, CODE, code, ""))
        .flatten()
        .filter(|r| r.code == code)
        .unwrap_or_else(|| panic!("{code} is not in Alibaba's code table"));
    let status = StatusCode::from_u16(row.http.unwrap_or(400)).expect("a valid status");
    let rid = request_id();
    let mut r = (
        status,
        axum::Json(json!({
            "RequestId": rid,
            "HostId": "cloudauth.aliyuncs.com",
            "Code": code,
            "Message": message,
            "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&product=Cloudauth"),
        })),
    )
        .into_response();
    r.headers_mut().insert(
        "x-acs-request-id",
        HeaderValue::from_str(&rid).expect("uuid"),
    );
    r
}

fn ok(body: Value) -> Response {
    let rid = body["RequestId"].as_str().unwrap_or_default().to_string();
    let mut r = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&rid) {
        r.headers_mut().insert("x-acs-request-id", v);
    }
    r
}

/// An answer and how the vendor's bill sees it.
struct Reply {
    resp: Response,
    billable: bool,
    throttled: bool,
}

impl From<Response> for Reply {
    fn from(resp: Response) -> Self {
        Reply {
            resp,
            billable: false,
            throttled: false,
        }
    }
}

fn throttled(f: &VendorFaults) -> Reply {
    let mut resp = error(
        "Throttling.User",
        "Request was denied due to user flow control.",
    );
    if let Some(secs) = f.retry_after_secs {
        resp.headers_mut()
            .insert("x-acs-retry-after", HeaderValue::from(secs * 1000));
    }
    Reply {
        resp,
        billable: false,
        throttled: true,
    }
}

async fn rpc(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Finished even if the caller hangs up: the vendor answers (and bills) what it received.
    tokio::spawn(async move { handle(&s, &method, &uri, &headers, &body).await })
        .await
        .unwrap_or_else(|_| error("InternalError", "An internal error occurred."))
}

/// The request's parameters: query, then form body, both form-decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

async fn handle(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let f = s.faults().alibaba;
    let delay = faults::delay(&f);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let query = form_pairs(uri.query().unwrap_or_default());
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("x-www-form-urlencoded"));
    let mut all = query.clone();
    if is_form {
        all.extend(form_pairs(&String::from_utf8_lossy(body)));
    }
    let params = Params(all);
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let acs3 = header("authorization").is_some_and(|a| a.starts_with("ACS3-HMAC-SHA256"));
    let (action, version) = if acs3 {
        (header("x-acs-action"), header("x-acs-version"))
    } else {
        (params.get("Action"), params.get("Version"))
    };
    let api = match action {
        Some("VerifyMaterial") => Api::VerifyMaterial,
        Some("DescribeVerifyResult") => Api::Describe,
        Some("SubmitVerification") => Api::Submit,
        _ => {
            return error(
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        }
    };
    let reference = params
        .get("BizId")
        .or_else(|| params.get("TicketId"))
        .map(str::to_string);
    let reply = match check_auth(s, method, uri, headers, body, &params, &query, acs3) {
        Err(resp) => resp.into(),
        Ok(()) if version != Some(api.version()) => error(
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        )
        .into(),
        Ok(()) => answer(s, api, &params, body, &f).await,
    };
    let status = reply.resp.status().as_u16();
    s.ledger.record_call(Call {
        vendor: VENDOR,
        api: api.name(),
        http_status: status,
        billable: reply.billable,
        reference,
        throttled: reply.throttled,
    });
    reply.resp
}

/// Signature (v1 or ACS3), timestamp window and nonce reuse, in the vendor's error codes.
#[allow(clippy::too_many_arguments)]
fn check_auth(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    params: &Params,
    query: &[(String, String)],
    acs3: bool,
) -> Result<(), Response> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let bad = |code: &str, msg: &str| error(code, msg);
    let (ak, timestamp, nonce) = if acs3 {
        let auth = header("authorization").unwrap_or_default();
        let ak = auth
            .split(['\x20', ','])
            .find_map(|p| p.strip_prefix("Credential="))
            .ok_or_else(|| {
                bad(
                    "IncompleteSignature",
                    "The request signature does not conform to Alibaba standards.",
                )
            })?;
        (ak, header("x-acs-date"), header("x-acs-signature-nonce"))
    } else {
        let ak = params.get("AccessKeyId").ok_or_else(|| {
            bad(
                "MissingAccessKeyId",
                "AccessKeyId is mandatory for this action.",
            )
        })?;
        (ak, params.get("Timestamp"), params.get("SignatureNonce"))
    };
    let secret = s
        .config
        .alibaba
        .access_keys
        .iter()
        .find(|(id, _)| id == ak)
        .map(|(_, secret)| secret.clone())
        .ok_or_else(|| {
            error(
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
    let timestamp = timestamp.ok_or_else(|| {
        bad(
            "MissingTimestamp",
            "Timestamp is mandatory for this action.",
        )
    })?;
    let when = chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|_| {
            bad(
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        })?
        .and_utc();
    if (chrono::Utc::now() - when).num_seconds().abs() > WINDOW_SECS {
        return Err(bad(
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    let nonce = nonce.ok_or_else(|| {
        bad(
            "MissingSignatureNonce",
            "SignatureNonce is mandatory for this action.",
        )
    })?;
    let verified = if acs3 {
        let hs: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        verify_acs3(method.as_str(), uri.path(), query, &hs, body, &secret)
    } else {
        verify_rpc_v1(method.as_str(), &params.0, &secret)
    };
    match verified {
        Ok(()) => {}
        Err(SignatureError::Missing(_)) => {
            return Err(bad(
                "IncompleteSignature",
                "The request signature does not conform to Alibaba standards.",
            ))
        }
        Err(SignatureError::Mismatch { string_to_sign }) => {
            // The legacy SDK prints the server's string to sign, after the `:`.
            return Err(bad(
                "SignatureDoesNotMatch",
                &format!("Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"),
            ));
        }
    }
    // Only a correctly signed request uses up its nonce (else anyone could burn nonces).
    let now = chrono::Utc::now().timestamp_millis();
    let mut nonces = s.alibaba.nonces.lock().expect("nonce lock");
    if nonces.len() > 100_000 {
        nonces.retain(|_, at| now - *at < WINDOW_SECS * 1000);
    }
    let key = format!("{ak}\u{1f}{nonce}");
    if nonces
        .get(&key)
        .is_some_and(|at| now - *at < WINDOW_SECS * 1000)
    {
        return Err(bad(
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    nonces.insert(key, now);
    Ok(())
}

async fn answer(s: &Shared, api: Api, params: &Params, body: &[u8], f: &VendorFaults) -> Reply {
    if !s
        .quotas
        .admit(&format!("{VENDOR}.{}", api.name()), f.qps_of(api.name()))
    {
        return throttled(f);
    }
    if faults::roll(f.error_rate) {
        return api.internal_error().into();
    }
    match api {
        Api::VerifyMaterial => verify_material(s, params, f).await,
        Api::Submit => submit(s, params, body, f).await,
        Api::Describe => describe(s, params, f).await.into(),
    }
}

/// The call-level faults of the scenario table, common to the three APIs. `None`: go on.
async fn fault(
    s: &Shared,
    api: Api,
    scenario: Scenario,
    id: &str,
    f: &VendorFaults,
) -> Option<Reply> {
    let first = || s.seen.bump(&format!("{VENDOR}:{}:{id}", api.name())) == 1;
    match scenario {
        Scenario::ThrottledOnce if first() => Some(throttled(f)),
        Scenario::AlwaysThrottled => Some(throttled(f)),
        Scenario::InternalErrorOnce if first() => Some(api.internal_error().into()),
        Scenario::AlwaysInternalError => Some(api.internal_error().into()),
        Scenario::SlowOnce if first() => {
            let ms = if f.slow_ms == 0 { 5000 } else { f.slow_ms };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        Scenario::AccountBlocked if api != Api::Describe => Some(
            if api == Api::Submit {
                error(
                    "Error.NoPermissionAccess",
                    "No permission to access the service.",
                )
            } else {
                error(
                    "NoPermission",
                    "The RAM user has no permission for this API.",
                )
            }
            .into(),
        ),
        Scenario::AccountInArrears if api != Api::Describe => {
            Some(error("InDebt", "Your account has an outstanding payment.").into())
        }
        _ => None,
    }
}

/// Which materials a verification had, for the "needs X" rules of the table.
#[derive(Debug, Clone, Copy, Default)]
struct Had {
    face: bool,
    front: bool,
    back: bool,
}

/// The VerifyStatus a subject gets from VerifyMaterial (and DescribeVerifyResult).
fn verify_status(scenario: Scenario, had: Had) -> i64 {
    let id_image = had.front || had.back;
    match scenario {
        Scenario::IdentityMismatch | Scenario::NoRecord => 2,
        Scenario::FaceMismatch => 7,
        Scenario::IdCardNameMismatch if had.front => 3,
        Scenario::IdCardNumberMismatch if had.front => 4,
        Scenario::IdExpired if id_image => 5,
        Scenario::FaceMismatchIdPhoto if had.front => 6,
        Scenario::IdCardInvalid if id_image => 8,
        Scenario::RiskRejected => 9,
        Scenario::IdPhotoMissing => 11,
        Scenario::AuthorityError => 12,
        _ => 1,
    }
}

fn authority_score(status: i64) -> f64 {
    match status {
        7 => 41.0,
        2 | 11 | 12 => 0.0,
        _ => 97.0,
    }
}

/// Downloads an image the way the vendor does: 3 s, 2 MB. The simulator's own markers in a
/// URL (`sim-timeout`, `sim-too-large`) trigger the two errors without a real server.
async fn download(s: &Shared, field: &str, url: &str) -> Result<Vec<u8>, Response> {
    let timed_out = || {
        error(
            "DownloadTimedOut",
            &format!("Downloading {field} timed out."),
        )
    };
    let too_large = || {
        error(
            "ResourcesTooLarge",
            &format!("{field} exceeds the size limit."),
        )
    };
    if url.contains("sim-timeout") {
        return Err(timed_out());
    }
    if url.contains("sim-too-large") {
        return Err(too_large());
    }
    let failed = |why: String| {
        error(
            "InvalidParameter",
            &format!("{field} could not be downloaded: {why}"),
        )
    };
    let fetch = async {
        let mut resp = s.alibaba.http.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                timed_out()
            } else {
                failed("connection failed".into())
            }
        })?;
        if !resp.status().is_success() {
            return Err(failed(format!("HTTP {}", resp.status().as_u16())));
        }
        let mut data = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|_| failed("read failed".into()))?
        {
            data.extend_from_slice(&chunk);
            if data.len() > MAX_IMAGE_BYTES {
                return Err(too_large());
            }
        }
        Ok(data)
    };
    tokio::time::timeout(DOWNLOAD_TIMEOUT, fetch)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

fn is_jpeg(b: &[u8]) -> bool {
    b.starts_with(&[0xFF, 0xD8])
}

async fn verify_material(s: &Shared, p: &Params, f: &VendorFaults) -> Reply {
    for k in ["BizId", "BizType", "Name", "IdCardNumber", "FaceImageUrl"] {
        if p.get(k).is_none() {
            return error("ParameterIsNull", &format!("The parameter {k} is null.")).into();
        }
    }
    let invalid = |msg: &str| -> Reply { error("InvalidParameter", msg).into() };
    let (biz_id, biz_type) = (
        p.get("BizId").unwrap_or_default(),
        p.get("BizType").unwrap_or_default(),
    );
    if biz_id.chars().count() > 64 {
        return invalid("BizId is longer than 64 characters.");
    }
    let id = p.get("IdCardNumber").unwrap_or_default();
    if kyc_schemas::IdNumber::parse(id).is_err() {
        return invalid("IdCardNumber is invalid.");
    }
    let urls = [
        ("FaceImageUrl", p.get("FaceImageUrl")),
        ("IdCardFrontImageUrl", p.get("IdCardFrontImageUrl")),
        ("IdCardBackImageUrl", p.get("IdCardBackImageUrl")),
    ];
    for (k, u) in urls {
        if u.is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return invalid(&format!("{k} must be an http(s) URL."));
        }
    }
    let scenario = Scenario::from_id(id);
    if let Some(r) = fault(s, Api::VerifyMaterial, scenario, id, f).await {
        return r;
    }
    let mut had = Had::default();
    for (k, u) in urls {
        let Some(u) = u else { continue };
        let data = match download(s, k, u).await {
            Ok(d) => d,
            Err(resp) => return resp.into(),
        };
        if k == "FaceImageUrl" && !is_jpeg(&data) {
            return error("NoFaceDetected", "No face detected in the image.").into();
        }
        match k {
            "FaceImageUrl" => had.face = true,
            "IdCardFrontImageUrl" => had.front = true,
            _ => had.back = true,
        }
    }
    if scenario == Scenario::ImageQuality {
        return error("NoFaceDetected", "No face detected in the image.").into();
    }
    let status = verify_status(scenario, had);
    let score = authority_score(status);
    let name = p.get("Name").unwrap_or_default();
    s.alibaba.results.lock().expect("results lock").insert(
        (biz_type.to_string(), biz_id.to_string()),
        Recorded {
            status,
            score,
            scenario,
            in_review: false,
            polls: 0,
            name: name.to_string(),
            id: id.to_string(),
        },
    );
    let rid = request_id();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut material = json!({
        "FaceImageUrl": format!("https://cloudauth-sim.oss-cn-hangzhou.aliyuncs.com/face/{token}.jpg?Expires=300"),
        "FaceQuality": "HIGH",
        "FaceMask": "false",
        "IdCardName": name,
        "IdCardNumber": id,
    });
    if had.front || had.back {
        material["IdCardInfo"] = json!({
            "Name": name, "Number": id, "Nationality": "汉", "Address": "",
            "Authority": "", "Birth": &id[6..14], "StartDate": "20200101",
            "EndDate": if status == 5 { "20210101" } else { "20400101" },
            "FrontImageUrl": format!("https://cloudauth-sim.oss-cn-hangzhou.aliyuncs.com/front/{token}.jpg?Expires=300"),
            "BackImageUrl": format!("https://cloudauth-sim.oss-cn-hangzhou.aliyuncs.com/back/{token}.jpg?Expires=300"),
        });
    }
    let id_face = if status == 6 { 35.0 } else { 97.0 };
    let body = if s.config.alibaba.seed_shapes {
        json!({
            "RequestId": rid, "Code": "200", "Message": "success", "Success": "true",
            "ResultObject": {
                "VerifyStatus": status.to_string(),
                "AuthorityComparisionScore": format!("{score}"),
                "IdCardFaceComparisonScore": format!("{id_face}"),
                "VerifyToken": token, "Material": material,
            }
        })
    } else {
        json!({
            "RequestId": rid, "VerifyStatus": status, "VerifyToken": token,
            "AuthorityComparisionScore": score, "IdCardFaceComparisonScore": id_face,
            "Material": material,
        })
    };
    Reply {
        resp: ok(body),
        billable: true,
        throttled: false,
    }
}

async fn describe(s: &Shared, p: &Params, f: &VendorFaults) -> Response {
    for k in ["BizId", "BizType"] {
        if p.get(k).is_none() {
            return error(
"MissingParameter",
                &format!("The input parameter \"{k}\" that is mandatory for processing this request is not supplied."),
            );
        }
    }
    let key = (
        p.get("BizType").unwrap_or_default().to_string(),
        p.get("BizId").unwrap_or_default().to_string(),
    );
    let rec = {
        let mut results = s.alibaba.results.lock().expect("results lock");
        results.get_mut(&key).map(|r| {
            r.polls += 1;
            r.clone()
        })
    };
    let rid = request_id();
    let Some(rec) = rec else {
        return ok(json!({"RequestId": rid, "VerifyStatus": -1, "AuthorityComparisionScore": 0.0}));
    };
    // The call-level faults apply to the query too (not the account ones: see `fault`).
    if let Some(r) = fault(s, Api::Describe, rec.scenario, &rec.id, f).await {
        return r.resp;
    }
    let status = match rec.scenario {
        _ if !rec.in_review => rec.status,
        Scenario::PendingThenPass if rec.polls > 2 => 1,
        _ => -1,
    };
    // The seed's DescribeVerifyResult table has no 2: "-1 未认证 … 或者用户的姓名身份证号实名校验
    // 不匹配等" covers the name/ID mismatch.
    let status = if status == 2 { -1 } else { status };
    let score = if status == -1 { 0.0 } else { rec.score };
    ok(json!({
        "RequestId": rid,
        "VerifyStatus": status,
        "AuthorityComparisionScore": score,
        "Material": {
            "FaceImageUrl": format!("https://cloudauth-sim.oss-cn-hangzhou.aliyuncs.com/face/{}.jpg?Expires=300", uuid::Uuid::new_v4().simple()),
            "IdCardName": rec.name,
            "IdCardNumber": rec.id,
        }
    }))
}

const MATERIAL_TYPES: [&str; 7] = [
    "Name",
    "IdentificationNumber",
    "FacePic",
    "IdCardFrontPic",
    "IdCardBackPic",
    "IDPic",
    "Mobile",
];

fn audit_conclusion(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::IdentityMismatch | Scenario::NoRecord => "身份证照片信息与认证提交信息不一致",
        Scenario::FaceMismatch => "人脸与公安网照片不一致",
        Scenario::ImageQuality => "人脸照片质量不合格",
        Scenario::IdCardNameMismatch | Scenario::IdCardNumberMismatch => {
            "身份证照片模糊或信息不一致"
        }
        Scenario::IdExpired => "身份证已过期",
        Scenario::IdPhotoMissing => "公安网照片缺失",
        Scenario::FaceMismatchIdPhoto => "人脸与身份证头像不一致",
        Scenario::IdCardInvalid => "提交的照片非身份证照片",
        Scenario::RiskRejected => "非本人操作",
        _ => "",
    }
}

async fn submit(s: &Shared, p: &Params, body: &[u8], f: &VendorFaults) -> Reply {
    let forbidden = |code: &str, msg: &str| -> Reply { error(code, msg).into() };
    let upload_error = |msg: &str| -> Reply { error("Error.MaterialsUploadError", msg).into() };
    let (Some(biz), Some(ticket)) = (p.get("Biz"), p.get("TicketId")) else {
        return forbidden(
            "InvalidParam.ParamMissing",
            "Biz and TicketId are required.",
        );
    };
    if body.len() > MAX_SUBMIT_BODY {
        return upload_error("The request body exceeds 8 MB.");
    }
    // Material.N.MaterialType / Material.N.Value, N = 1..10.
    let mut materials: std::collections::BTreeMap<u32, (Option<String>, Option<String>)> =
        Default::default();
    for (k, v) in &p.0 {
        let Some(rest) = k.strip_prefix("Material.") else {
            continue;
        };
        let Some((n, field)) = rest.split_once('.') else {
            continue;
        };
        let n: u32 = match n.parse() {
            Ok(n) if (1..=10).contains(&n) => n,
            _ => {
                return forbidden(
                    "InvalidParam.MaterialsNotValid",
                    "Material index must be 1 to 10.",
                )
            }
        };
        let slot = materials.entry(n).or_default();
        match field {
            "MaterialType" => slot.0 = Some(v.clone()),
            "Value" => slot.1 = Some(v.clone()),
            _ => return forbidden("InvalidParam.MaterialsNotValid", "Unknown material field."),
        }
    }
    if materials.is_empty() {
        return error("InvalidParam.MaterialsEmpty", "Materials are empty.").into();
    }
    let mut text: HashMap<&str, String> = HashMap::new();
    let mut pics: HashMap<&str, Option<Vec<u8>>> = HashMap::new();
    for (ty, value) in materials.values() {
        let (Some(ty), Some(value)) = (ty, value.as_ref().filter(|v| !v.is_empty())) else {
            return forbidden(
                "InvalidParam.ParamMissing",
                "A material has no type or no value.",
            );
        };
        let Some(ty) = MATERIAL_TYPES.iter().find(|t| *t == ty).copied() else {
            return forbidden("InvalidParam.MaterialsNotValid", "Unknown MaterialType.");
        };
        if ty.ends_with("Pic") {
            let bytes = if let Some(b64) = value.strip_prefix("base64://") {
                match B64.decode(b64) {
                    Ok(b) if b.len() <= MAX_IMAGE_BYTES => Some(b),
                    Ok(_) => return upload_error("An image exceeds 2 MB."),
                    Err(_) => return upload_error("An image is not valid base64."),
                }
            } else if value.starts_with("http://") || value.starts_with("https://") {
                match download(s, ty, value).await {
                    Ok(b) => Some(b),
                    Err(_) => return upload_error("An image could not be downloaded."),
                }
            } else if value.starts_with("oss://") {
                None
            } else {
                return upload_error("An image value must be a URL, oss:// or base64://.");
            };
            pics.insert(ty, bytes);
        } else {
            text.insert(ty, value.clone());
        }
    }
    // The identity: the text materials, else the simulator's marker in the ID-card picture.
    let from_card = pics
        .get("IdCardFrontPic")
        .and_then(|b| b.as_deref())
        .and_then(marker);
    let (name, id) = match (
        text.get("Name"),
        text.get("IdentificationNumber"),
        from_card,
    ) {
        (Some(n), Some(i), _) => (n.clone(), i.clone()),
        (_, _, Some((n, i))) => (n, i),
        _ => {
            return forbidden(
                "Error.MaterialsInsufficient",
                "The materials are insufficient for the scene.",
            )
        }
    };
    if kyc_schemas::IdNumber::parse(&id).is_err() {
        return forbidden(
            "InvalidParam.MaterialsNotValid",
            "IdentificationNumber is invalid.",
        );
    }
    let key = (biz.to_string(), ticket.to_string());
    if s.alibaba
        .tickets
        .lock()
        .expect("tickets lock")
        .get(&key)
        .is_some_and(|c| *c == 0 || *c == 1)
    {
        return forbidden(
            "Error.DuplicatedTicketId",
            "The TicketId has been submitted already.",
        );
    }
    let scenario = Scenario::from_id(&id);
    if let Some(r) = fault(s, Api::Submit, scenario, &id, f).await {
        return r;
    }
    if scenario == Scenario::AuthorityError {
        return error(
            "Error.SubmitMaterialsError",
            "Submitting the materials failed.",
        )
        .into();
    }
    let had = Had {
        face: pics.contains_key("FacePic"),
        front: pics.contains_key("IdCardFrontPic"),
        back: pics.contains_key("IdCardBackPic") || pics.contains_key("IDPic"),
    };
    let fails = match scenario {
        Scenario::IdentityMismatch | Scenario::NoRecord | Scenario::RiskRejected => true,
        Scenario::FaceMismatch | Scenario::ImageQuality | Scenario::IdPhotoMissing => had.face,
        Scenario::IdCardNameMismatch | Scenario::IdCardNumberMismatch => had.front,
        Scenario::IdExpired | Scenario::IdCardInvalid => had.front || had.back,
        Scenario::FaceMismatchIdPhoto => had.face && had.front,
        _ => false,
    };
    let code: i64 = match scenario {
        _ if fails => 2,
        Scenario::PendingThenPass | Scenario::PendingForever => 0,
        Scenario::NotRecorded => -1,
        _ => 1,
    };
    s.alibaba
        .tickets
        .lock()
        .expect("tickets lock")
        .insert(key.clone(), code);
    let described = if code == 2 {
        verify_status(scenario, had).max(2)
    } else {
        1
    };
    s.alibaba.results.lock().expect("results lock").insert(
        key,
        Recorded {
            status: described,
            score: authority_score(described),
            scenario,
            in_review: code != 1 && code != 2,
            polls: 0,
            name: name.clone(),
            id: id.clone(),
        },
    );
    let mut verify_status = json!({"StatusCode": code});
    if had.face && had.front {
        verify_status["SimilarityScore"] = json!(if scenario == Scenario::FaceMismatchIdPhoto {
            35.0
        } else {
            93.12
        });
    }
    if code == 2 {
        verify_status["AuditConclusions"] = json!(audit_conclusion(scenario));
    }
    Reply {
        resp: ok(json!({
            "RequestId": request_id(), "Success": true, "Code": "1",
            "Data": {"VerifyStatus": verify_status},
        })),
        billable: code == 1 || code == 2,
        throttled: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_simulator_emits_is_in_the_alibaba_table() {
        for code in EMITS {
            let row = kyc_schemas::codes::find(TABLE, CODE, code, "");
            assert!(
                row.is_some_and(|r| r.code == *code && r.http.is_some()),
                "{code}"
            );
        }
        for status in [-1, 0, 1, 2] {
            let code = status.to_string();
            assert!(kyc_schemas::codes::find(TABLE, "StatusCode", &code, "").is_some());
        }
    }
}
