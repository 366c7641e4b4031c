//! The HTTP surface: the IVS paths, request validation with the documented `IVS.00xx` refusals,
//! throttling, injected faults, and the answer body (`result.verification_result`, `idcard_result`,
//! `video_result`). Only HTTP 200 is billable.

use super::*;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/auth/tokens", post(iam_token))
        .route("/v2.0/ivs-standard", post(standard))
        .route("/v2.0/ivs-standard/", post(standard))
        .route("/v2.0/ivs-idcard-extention", post(extension))
        .route("/v2.0/ivs-idcard-extention/", post(extension))
}

pub(super) fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The error body of a table row: its HTTP status and code, with the vendor's message (or
/// `msg` where the vendor fills in a detail).
pub(super) fn error(row: &CodeRow, msg: &str) -> Response {
    let rid = request_id();
    let status = StatusCode::from_u16(row.http.unwrap_or(400)).expect("a valid status");
    let mut r = (
        status,
        axum::Json(json!({ "error_code": row.code, "error_msg": msg, "request_id": rid })),
    )
        .into_response();
    r.headers_mut()
        .insert("x-request-id", HeaderValue::from_str(&rid).expect("hex id"));
    r
}

/// A documented IVS refusal, turned into its error body at the edge.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) row: &'static CodeRow,
    pub(super) msg: String,
}

impl Refusal {
    pub(super) fn new(row: &'static CodeRow, msg: impl Into<String>) -> Self {
        Self {
            row,
            msg: msg.into(),
        }
    }

    pub(super) fn into_response(self) -> Response {
        error(self.row, &self.msg)
    }
}

pub(super) async fn standard(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(s, Api::Standard, method, uri, headers, body).await
}

pub(super) async fn extension(
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
pub(super) async fn detached(
    s: Shared,
    api: Api,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    tokio::spawn(async move { handle(&s, api, &method, &uri, &headers, &body).await })
        .await
        .unwrap_or_else(|_| error(IVS_0101, "Service inner error."))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    Standard,
    Extension,
}

impl Api {
    pub(super) fn name(self) -> &'static str {
        match self {
            Api::Standard => "ivs-standard",
            Api::Extension => "ivs-idcard-extention",
        }
    }
}

pub(super) async fn handle(
    s: &Shared,
    api: Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let arrival = Arrival::now();
    let _busy = s.busy();
    let faults = s.faults().huawei;
    let reference = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["meta"]["uuid"].as_str().map(str::to_string));
    // The gateway (APIG) authenticates and counts the call as it arrives and refuses at
    // once; only a call it lets through waits for IVS's answer time.
    let resp = match gate(s, api, method, uri, headers, body, &faults, arrival) {
        Some(refusal) => refusal,
        None => {
            s.latency(&faults, api.name()).await;
            slow_once(s, body, reference.as_deref(), &faults).await;
            answer(s, api, headers, body, &faults, reference.as_deref())
        }
    };
    let status = resp.status().as_u16();
    s.ledger.record_call(Call {
        vendor: VENDOR,
        api: api.name(),
        http_status: status,
        billable: status == 200,
        reference,
        throttled: status == 429,
        arrived_us: arrival.us,
    });
    resp
}

/// "Slow once" (sequence code 955): the first answer for a request id comes late.
async fn slow_once(s: &Shared, body: &[u8], reference: Option<&str>, faults: &VendorFaults) {
    let slow = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v["data"]["req_data"][0]["verification_id"]
            .as_str()
            .map(Scenario::from_id)
    }) == Some(Scenario::SlowOnce);
    if slow && reference.is_some_and(|r| s.seen.bump(&format!("slow:{r}")) == 1) {
        let ms = if faults.slow_ms == 0 {
            5000
        } else {
            faults.slow_ms
        };
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// APIG's 429 `APIG.0308`, with `Retry-After` when the faults set one.
fn throttled(faults: &VendorFaults) -> Response {
    let mut r = error(
        APIG_0308,
        "The throttling threshold has been reached: policy user over ratelimit,limit:10,time:1 second",
    );
    if let Some(secs) = faults.retry_after_secs {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    r
}

/// What the gateway refuses before IVS sees the call: authentication, size, the quota
/// (counted at `arrival`). `None`: let it through.
#[allow(clippy::too_many_arguments)]
pub(super) fn gate(
    s: &Shared,
    api: Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    faults: &VendorFaults,
    arrival: Arrival,
) -> Option<Response> {
    if let Err(msg) = authenticate(s, method, uri, headers, body) {
        return Some(error(
            APIG_0301,
            &format!("Incorrect IAM authentication information: {msg}"),
        ));
    }
    if body.len() > 12 * 1024 * 1024 {
        // The gateway's own refusal, before IVS: no IVS or APIG code (seed §6.1: 413).
        return Some((StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large").into_response());
    }
    if !s.admit(VENDOR, api.name(), faults, arrival) {
        return Some(throttled(faults));
    }
    None
}

/// IVS's answer to a call the gateway let through.
pub(super) fn answer(
    s: &Shared,
    api: Api,
    headers: &HeaderMap,
    body: &[u8],
    faults: &VendorFaults,
    reference: Option<&str>,
) -> Response {
    let throttled = || throttled(faults);
    if faults::roll(faults.error_rate) {
        return error(IVS_0101, "Service inner error.");
    }
    if headers.get("content-type").is_none_or(|v| v.is_empty()) {
        return error(IVS_0012, "Lack Header or Header Content-Type is empty.");
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
        Scenario::InternalErrorOnce if seen == 1 => return error(IVS_0101, "Service inner error."),
        Scenario::AlwaysInternalError => return error(IVS_0101, "Service inner error."),
        // Content errors only exist where a face or video was judged.
        Scenario::LivenessError if api == Api::Standard && item.get("video").is_some() => {
            return error(
                IVS_0008,
                "live detect error: action not detected. Please check your input.",
            )
        }
        Scenario::FaceDetectError if api == Api::Standard => {
            return error(
                IVS_0009,
                "face detect error: face number is 0. Please check your input.",
            )
        }
        // Tables 4-5, 4-16: with the default crop=true, a face image over 90 KB of base64 may
        // get IVS.0009 ("face number is 0"); crop=false is the documented remedy.
        Scenario::FaceDetectCropped
            if api == Api::Standard
                && item["crop"].as_bool() != Some(false)
                && item["face_image"]
                    .as_str()
                    .is_some_and(|f| f.len() > CROP_RISK_B64) =>
        {
            return error(
                IVS_0009,
                "face detect error: face number is 0. Please check your input.",
            )
        }
        Scenario::FaceCompareError if api == Api::Standard => {
            return error(
                IVS_0010,
                "face compare error: no face in image. Please check your input.",
            )
        }
        Scenario::AccountBlocked => {
            return error(IVS_0015, "The subservice has not been subscribed.")
        }
        Scenario::AccountInArrears => return error(IVS_0014, "The service has been frozen."),
        _ => {}
    }
    let detail = item["detail"].as_bool().unwrap_or(false);
    let face_checked = api == Api::Standard;
    let code = match scenario {
        Scenario::IdentityMismatch => "2001",
        Scenario::NoRecord => "3001",
        Scenario::FaceMismatch if face_checked => "2002",
        Scenario::ImageQuality if face_checked => "2003",
        Scenario::IdPhotoMissing if face_checked => "2006",
        _ => "1000",
    };
    let row = kyc_schemas::codes::get(TABLE, "verification_code", code);
    let (result, message) = (verification_result(row), row.message);
    let code: i64 = code.parse().expect("numeric verification code");
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
        // Tables 4-32, 4-44, 5-3: `picture`, the largest face found, as base64. The simulator
        // echoes the request's first 64 base64 characters (docs/simulator.md §2).
        let picture: String = item["video"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(64)
            .collect();
        resp["video_result"] = json!({"alive": true, "actions": actions, "picture": picture});
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

pub(super) fn parse_item(body: &[u8]) -> Result<Value, Refusal> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Refusal::new(IVS_0001, "Request parameter meta is null or empty."))?;
    if !v["meta"].is_object() {
        return Err(Refusal::new(
            IVS_0001,
            "Request parameter meta is null or empty.",
        ));
    }
    let list = v["data"]["req_data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match list.len() {
        0 => Err(Refusal::new(
            IVS_0003,
            "Some necessary request parameters in req_data is null.",
        )),
        1 => Ok(list.into_iter().next().expect("one element")),
        _ => Err(Refusal::new(
            IVS_0002,
            "Request parameter req_data is redundant .",
        )),
    }
}

#[derive(Debug)]
pub(super) struct Subject {
    pub(super) name: String,
    pub(super) id: String,
    pub(super) from_image: bool,
}

pub(super) fn wrong_format(what: &str) -> Refusal {
    Refusal::new(
        IVS_0011,
        format!("The request param has wrong format, {what}"),
    )
}

pub(super) fn missing() -> Refusal {
    Refusal::new(
        IVS_0003,
        "Some necessary request parameters in req_data is null.",
    )
}

/// Decodes a base64 JPEG with the documented limits (≥ 10 KB and ≤ 4 MB of base64).
pub(super) fn image(
    item: &Value,
    field: &str,
    bad_code: &'static CodeRow,
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
        return Err(Refusal::new(
            IVS_0004,
            "Image base64 size is more than 4MB or less than 10KB.",
        ));
    }
    let bytes = B64
        .decode(b64)
        .map_err(|_| Refusal::new(bad_code, bad_msg))?;
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(Refusal::new(bad_code, bad_msg));
    }
    Ok(Some(bytes))
}

/// The documented validation of one `req_data` element.
pub(super) fn validate(api: Api, item: &Value) -> Result<Subject, Refusal> {
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
                IVS_0007,
                "Id card image error: not a jpeg. Please try another image.",
            )?
            .ok_or_else(missing)?;
            image(
                item,
                "idcard_image2",
                IVS_0007,
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
            IVS_0006,
            "The input face image is invalid.",
        )?;
        if face.is_none() {
            let Some(video) = item.get("video") else {
                return Err(missing());
            };
            let len = video.as_str().unwrap_or_default().len();
            if !(10 * 1024..=10 * 1024 * 1024).contains(&len) {
                return Err(Refusal::new(
                    IVS_0005,
                    "Video base 64 size is more than 10MB or less than 10KB.",
                ));
            }
            let actions = item["actions"].as_str().unwrap_or_default();
            if actions.is_empty() {
                return Err(missing());
            }
            if actions
                .split(',')
                // Tables 4-26, 4-39: 1 左摇头, 2 右摇头, 3 点头, 4 嘴部动作, 5 眨眼.
                .any(|a| !matches!(a.trim(), "1" | "2" | "3" | "4" | "5"))
            {
                return Err(wrong_format(
                    "error in parsing actions, Integer list type expected.",
                ));
            }
        }
    }
    Ok(subject)
}
