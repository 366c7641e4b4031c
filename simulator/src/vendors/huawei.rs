//! Huawei Cloud IVS as its SDK sees it: IAM `POST /v3/auth/tokens` (201 + `X-Subject-Token`),
//! `POST /v2.0/ivs-standard` and `/v2.0/ivs-idcard-extention` with AK/SK `SDK-HMAC-SHA256`
//! or `X-Auth-Token`, validation with the documented `IVS.00xx` codes, throttling as
//! 429 `APIG.0308`, and answers from the scenario table. Only HTTP 200 is billable.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::faults;
use crate::scenario::{stable_hash, Scenario};
use crate::server::Shared;

const VENDOR: &str = "huawei";
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// APIG accepts X-Sdk-Date within 15 minutes of its clock.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// Accounts the simulated Huawei Cloud knows.
#[derive(Debug, Clone, Default)]
pub struct HuaweiSim {
    /// AK → SK.
    pub ak_sk: Vec<(String, String)>,
    /// (user, password, domain) for IAM password tokens.
    pub users: Vec<(String, String, String)>,
    pub project_id: String,
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/auth/tokens", post(iam_token))
        .route("/v2.0/ivs-standard", post(standard))
        .route("/v2.0/ivs-standard/", post(standard))
        .route("/v2.0/ivs-idcard-extention", post(extension))
        .route("/v2.0/ivs-idcard-extention/", post(extension))
}

fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn error(status: StatusCode, code: &str, msg: &str) -> Response {
    let rid = request_id();
    let mut r = (
        status,
        axum::Json(json!({ "error_code": code, "error_msg": msg, "request_id": rid })),
    )
        .into_response();
    r.headers_mut()
        .insert("x-request-id", HeaderValue::from_str(&rid).expect("hex id"));
    r
}

/// A documented IVS refusal, turned into its error body at the edge.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    msg: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
        }
    }

    fn bad_request(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }

    fn into_response(self) -> Response {
        error(self.status, self.code, &self.msg)
    }
}

async fn iam_token(State(s): State<Shared>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let user = &v["auth"]["identity"]["password"]["user"];
    let (name, password, domain) = (
        user["name"].as_str().unwrap_or_default(),
        user["password"].as_str().unwrap_or_default(),
        user["domain"]["name"].as_str().unwrap_or_default(),
    );
    let known = s
        .config
        .huawei
        .users
        .iter()
        .any(|(u, p, d)| u == name && p == password && d == domain);
    if !known {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": 401, "title": "Unauthorized", "message": "The username or password is wrong."}})),
        )
            .into_response();
    }
    let token = format!("MII{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::hours(24);
    s.tokens
        .lock()
        .expect("token lock")
        .insert(token.clone(), expires.timestamp_millis());
    let project = v["auth"]["scope"]["project"]["name"]
        .as_str()
        .unwrap_or("cn-north-4");
    let mut r = (
        StatusCode::CREATED,
        axum::Json(json!({"token": {
            "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "issued_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "methods": ["password"],
            "project": {"name": project, "id": s.config.huawei.project_id},
            "user": {"name": name, "domain": {"name": domain}},
        }})),
    )
        .into_response();
    r.headers_mut().insert(
        "x-subject-token",
        HeaderValue::from_str(&token).expect("ascii token"),
    );
    r
}

async fn standard(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(s, Api::Standard, method, uri, headers, body).await
}

async fn extension(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(s, Api::Extension, method, uri, headers, body).await
}

/// Runs the call to completion even if the client hangs up: a real vendor that received a
/// request answers (and bills) it whether or not the caller is still there to read it.
async fn detached(
    s: Shared,
    api: Api,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    tokio::spawn(async move { handle(&s, api, &method, &uri, &headers, &body).await })
        .await
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "IVS.0101",
                "Service inner error.",
            )
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Standard,
    Extension,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Standard => "ivs-standard",
            Api::Extension => "ivs-idcard-extention",
        }
    }
}

async fn handle(
    s: &Shared,
    api: Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let faults = s.faults().huawei;
    let delay = faults::delay(&faults);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let reference = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["meta"]["uuid"].as_str().map(str::to_string));
    // "Slow once" (sequence code 955): the first answer for a request id comes late.
    let slow = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v["data"]["req_data"][0]["verification_id"]
            .as_str()
            .map(Scenario::from_id)
    }) == Some(Scenario::SlowOnce);
    if slow
        && reference
            .as_deref()
            .is_some_and(|r| s.seen.bump(&format!("slow:{r}")) == 1)
    {
        let ms = if faults.slow_ms == 0 {
            5000
        } else {
            faults.slow_ms
        };
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let resp = answer(
        s,
        api,
        method,
        uri,
        headers,
        body,
        &faults,
        reference.as_deref(),
    );
    let status = resp.status().as_u16();
    s.ledger
        .record(VENDOR, api.name(), status, status == 200, reference);
    resp
}

#[allow(clippy::too_many_arguments)]
fn answer(
    s: &Shared,
    api: Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    faults: &crate::VendorFaults,
    reference: Option<&str>,
) -> Response {
    if let Err(msg) = authenticate(s, method, uri, headers, body) {
        return error(
            StatusCode::UNAUTHORIZED,
            "APIG.0301",
            &format!("Incorrect IAM authentication information: {msg}"),
        );
    }
    if body.len() > 12 * 1024 * 1024 {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "APIG.0201",
            "Request entity too large",
        );
    }
    let throttled = || {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "APIG.0308",
            "The throttling threshold has been reached: policy user over ratelimit,limit:10,time:1 second",
        );
        if let Some(secs) = faults.retry_after_secs {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        r
    };
    if !s.quotas.admit(
        &format!("{VENDOR}.{}", api.name()),
        faults.qps_of(api.name()),
    ) {
        return throttled();
    }
    if faults::roll(faults.error_rate) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "IVS.0101",
            "Service inner error.",
        );
    }
    if headers.get("content-type").is_none_or(|v| v.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            "IVS.0012",
            "Lack Header or Header Content-Type is empty.",
        );
    }
    let item = match parse_item(body) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let subject = match validate(api, &item) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let scenario = Scenario::from_id(&subject.id);
    let seen = reference.map(|r| s.seen.bump(r)).unwrap_or(1);
    match scenario {
        Scenario::ThrottledOnce if seen == 1 => return throttled(),
        Scenario::AlwaysThrottled => return throttled(),
        Scenario::InternalErrorOnce if seen == 1 => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "IVS.0101",
                "Service inner error.",
            )
        }
        Scenario::AlwaysInternalError => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "IVS.0101",
                "Service inner error.",
            )
        }
        // Content errors only exist where a face or video was judged.
        Scenario::LivenessError if api == Api::Standard && item.get("video").is_some() => {
            return error(
                StatusCode::BAD_REQUEST,
                "IVS.0008",
                "live detect error: action not detected. Please check your input.",
            )
        }
        Scenario::FaceDetectError if api == Api::Standard => {
            return error(
                StatusCode::BAD_REQUEST,
                "IVS.0009",
                "face detect error: face number is 0. Please check your input.",
            )
        }
        Scenario::FaceCompareError if api == Api::Standard => {
            return error(
                StatusCode::BAD_REQUEST,
                "IVS.0010",
                "face compare error: no face in image. Please check your input.",
            )
        }
        Scenario::AccountBlocked => {
            return error(
                StatusCode::BAD_REQUEST,
                "IVS.0015",
                "The subservice has not been subscribed.",
            )
        }
        Scenario::AccountInArrears => {
            return error(
                StatusCode::BAD_REQUEST,
                "IVS.0014",
                "The service has been frozen.",
            )
        }
        _ => {}
    }
    let detail = item["detail"].as_bool().unwrap_or(false);
    let face_checked = api == Api::Standard;
    let (result, code, message) = match scenario {
        Scenario::IdentityMismatch => ("invalid", 2001, "Inconsistent identity information"),
        Scenario::NoRecord => ("nonexistent", 3001, "Nonexistent identity information"),
        Scenario::FaceMismatch if face_checked => {
            ("invalid", 2002, "Inconsistent face information")
        }
        Scenario::ImageQuality if face_checked => {
            ("invalid", 2003, "Face image quality or format problem")
        }
        Scenario::IdPhotoMissing if face_checked => {
            ("invalid", 2006, "Id card photo does not exist")
        }
        _ => ("valid", 1000, "Successful certification"),
    };
    let mut resp = json!({
        "verification_result": result,
        "verification_message": message,
        "verification_code": code,
    });
    if face_checked {
        let h = stable_hash(&subject.id, 1000) as f64 / 100.0; // 0.00–9.99
        let score = match code {
            1000 => 88.0 + h,
            2002 => 30.0 + h,
            _ => 0.0,
        };
        resp["similarity"] = if detail {
            Value::String(format!("{:.1}", score * 10.0))
        } else {
            Value::String(format!("{}", score.round() as i64))
        };
    }
    if subject.from_image {
        resp["idcard_result"] = json!({
            "name": subject.name, "number": subject.id, "sex": "男", "birth": "",
            "ethnicity": "汉", "address": "", "issue": "", "valid_from": "", "valid_to": "",
        });
    }
    if item.get("video").is_some() {
        let actions: Vec<Value> = item["actions"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .filter_map(|a| a.trim().parse::<u8>().ok())
            .map(|a| json!({"action": a, "confidence": 0.98}))
            .collect();
        resp["video_result"] = json!({"alive": true, "actions": actions});
    }
    let uuid = reference.unwrap_or_default();
    let rid = request_id();
    let mut r = (
        StatusCode::OK,
        axum::Json(json!({
            "meta": {"uuid": uuid},
            "result": {"service_name": api.name(), "count": 1, "resp_data": [resp]}
        })),
    )
        .into_response();
    r.headers_mut()
        .insert("x-request-id", HeaderValue::from_str(&rid).expect("hex id"));
    r
}

/// Checks `X-Auth-Token` against issued tokens, or the AK/SK signature.
fn authenticate(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
    if let Some(token) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
        let tokens = s.tokens.lock().expect("token lock");
        return match tokens.get(token) {
            Some(exp) if *exp > chrono::Utc::now().timestamp_millis() => Ok(()),
            Some(_) => Err("token expires"),
            None => Err("decrypt token fail"),
        };
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("verify aksk signature fail")?;
    let rest = auth
        .strip_prefix("SDK-HMAC-SHA256 ")
        .ok_or("verify aksk signature fail")?;
    let mut access = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Access=") {
            access = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (access, signed_headers, signature) = match (access, signed_headers, signature) {
        (Some(a), Some(h), Some(s)) => (a, h, s),
        _ => return Err("verify aksk signature fail"),
    };
    let sk = s
        .config
        .huawei
        .ak_sk
        .iter()
        .find(|(ak, _)| ak == access)
        .map(|(_, sk)| sk.as_str())
        .ok_or("verify aksk signature fail")?;
    let date = headers
        .get("x-sdk-date")
        .and_then(|v| v.to_str().ok())
        .ok_or("verify aksk signature fail")?;
    let when = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| "verify aksk signature fail")?
        .and_utc();
    if (chrono::Utc::now() - when).num_seconds().abs() > MAX_SKEW_SECS {
        return Err("request expired");
    }
    // Canonical request rebuilt from the wire, following the client's own SignedHeaders list.
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or("verify aksk signature fail")?;
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let mut path: String = uri
        .path()
        .split('/')
        .map(|seg| {
            utf8_percent_encode(&percent_decode_str(seg).decode_utf8_lossy(), UNRESERVED)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("/");
    if !path.ends_with('/') {
        path.push('/');
    }
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |x: &str| {
                percent_decode_str(&x.replace('+', " "))
                    .decode_utf8_lossy()
                    .to_string()
            };
            (dec(k), dec(v))
        })
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, UNRESERVED),
                utf8_percent_encode(v, UNRESERVED)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let payload = match headers
        .get("x-sdk-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some("UNSIGNED-PAYLOAD") => "UNSIGNED-PAYLOAD".to_string(),
        _ => hex::encode(Sha256::digest(body)),
    };
    let canonical =
        format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload}");
    let to_sign = format!(
        "SDK-HMAC-SHA256\n{date}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(sk.as_bytes()).expect("any key length");
    mac.update(to_sign.as_bytes());
    let expected = hex::decode(signature).map_err(|_| "verify aksk signature fail")?;
    mac.verify_slice(&expected)
        .map_err(|_| "verify aksk signature fail")
}

fn parse_item(body: &[u8]) -> Result<Value, Refusal> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        Refusal::bad_request("IVS.0001", "Request parameter meta is null or empty.")
    })?;
    if !v["meta"].is_object() {
        return Err(Refusal::bad_request(
            "IVS.0001",
            "Request parameter meta is null or empty.",
        ));
    }
    let list = v["data"]["req_data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match list.len() {
        0 => Err(Refusal::bad_request(
            "IVS.0003",
            "Some necessary request parameters in req_data is null.",
        )),
        1 => Ok(list.into_iter().next().expect("one element")),
        _ => Err(Refusal::bad_request(
            "IVS.0002",
            "Request parameter req_data is redundant .",
        )),
    }
}

#[derive(Debug)]
struct Subject {
    name: String,
    id: String,
    from_image: bool,
}

fn wrong_format(what: &str) -> Refusal {
    Refusal::bad_request(
        "IVS.0011",
        format!("The request param has wrong format, {what}"),
    )
}

fn missing() -> Refusal {
    Refusal::bad_request(
        "IVS.0003",
        "Some necessary request parameters in req_data is null.",
    )
}

/// Decodes a base64 JPEG with the documented limits (≥ 10 KB and ≤ 4 MB of base64).
fn image(
    item: &Value,
    field: &str,
    bad_code: &'static str,
    bad_msg: &str,
) -> Result<Option<Vec<u8>>, Refusal> {
    let Some(v) = item.get(field) else {
        return Ok(None);
    };
    let b64 = v.as_str().unwrap_or_default();
    if b64.is_empty() {
        return Err(wrong_format(&format!("{field} is null or empty.")));
    }
    if b64.len() < 10 * 1024 || b64.len() > 4 * 1024 * 1024 {
        return Err(Refusal::bad_request(
            "IVS.0004",
            "Image base64 size is more than 4MB or less than 10KB.",
        ));
    }
    let bytes = B64
        .decode(b64)
        .map_err(|_| Refusal::bad_request(bad_code, bad_msg))?;
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(Refusal::bad_request(bad_code, bad_msg));
    }
    Ok(Some(bytes))
}

/// The documented validation of one `req_data` element.
fn validate(api: Api, item: &Value) -> Result<Subject, Refusal> {
    let text = |f: &str| {
        item.get(f)
            .map(|v| v.as_str().unwrap_or_default().to_string())
    };
    let subject = match (text("verification_name"), text("verification_id")) {
        (Some(name), Some(id)) => {
            if name.is_empty() {
                return Err(wrong_format("verification_name is null or empty."));
            }
            if id.is_empty() {
                return Err(wrong_format("verification_id is null or empty."));
            }
            if kyc_schemas::PersonName::parse(&name).is_err() {
                return Err(wrong_format(
                    "verification_name contains invalid characters.",
                ));
            }
            if id.chars().count() != 15 && id.chars().count() != 18 {
                return Err(wrong_format("verification_id length must equal 15 or 18."));
            }
            if id.chars().count() == 18 && kyc_schemas::IdNumber::parse(&id).is_err() {
                return Err(wrong_format("verification_id is invalid."));
            }
            Subject {
                name,
                id,
                from_image: false,
            }
        }
        (None, None) => {
            // The SDK's field names; the docs' `idcard_image_1` is not read.
            let front = image(
                item,
                "idcard_image1",
                "IVS.0007",
                "Id card image error: not a jpeg. Please try another image.",
            )?
            .ok_or_else(missing)?;
            image(
                item,
                "idcard_image2",
                "IVS.0007",
                "Id card image error: not a jpeg. Please try another image.",
            )?;
            let (name, id) =
                marker(&front).unwrap_or_else(|| ("张三".into(), "11010519491231002X".into()));
            Subject {
                name,
                id,
                from_image: true,
            }
        }
        _ => return Err(missing()),
    };
    if api == Api::Standard {
        let face = image(
            item,
            "face_image",
            "IVS.0006",
            "The input face image is invalid.",
        )?;
        if face.is_none() {
            let Some(video) = item.get("video") else {
                return Err(missing());
            };
            let len = video.as_str().unwrap_or_default().len();
            if !(10 * 1024..=10 * 1024 * 1024).contains(&len) {
                return Err(Refusal::bad_request(
                    "IVS.0005",
                    "Video base 64 size is more than 10MB or less than 10KB.",
                ));
            }
            let actions = item["actions"].as_str().unwrap_or_default();
            if actions.is_empty() {
                return Err(missing());
            }
            if actions
                .split(',')
                .any(|a| !matches!(a.trim(), "1" | "2" | "3" | "4"))
            {
                return Err(wrong_format(
                    "error in parsing actions, Integer list type expected.",
                ));
            }
        }
    }
    Ok(subject)
}

/// Simulator convention for ID-card images: a `kycsim:id=<18 chars>;name=<name>` marker
/// anywhere in the bytes (a JPEG comment) says whose card it is.
pub(crate) fn marker(bytes: &[u8]) -> Option<(String, String)> {
    let needle = b"kycsim:id=";
    let pos = bytes.windows(needle.len()).position(|w| w == needle)?;
    let rest = &bytes[pos + needle.len()..];
    let end = rest
        .iter()
        .position(|b| *b == 0 || *b == 0xFF)
        .unwrap_or(rest.len().min(200));
    let text = String::from_utf8_lossy(&rest[..end]).to_string();
    let (id, name) = text.split_once(";name=").unwrap_or((&text, "张三"));
    Some((name.to_string(), id.chars().take(18).collect()))
}
