//! Baidu 人脸实名认证 H5 as baidu-aip sees it: OAuth `client_credentials` tokens
//! (`/oauth/2.0/token`, 30 days), and `POST /rpc/2.0/brain/solution/faceprint/<path>
//! ?access_token=…` for the session calls (`verifyToken/generate`, `idcard/submit`,
//! `uploadMatchImage`) and the five post-verification queries. API errors are HTTP 200 with
//! `error_code` / `error_msg` (18 = QPS, Baidu's throttle signal; 17/19 daily/total quota).
//!
//! H5 is interactive: a person opens the session's URL and verifies. Here the simulated
//! person has done so by the first query after the session is ready (identity submitted, and
//! the match photo uploaded for match plans), and the attempts they make — verdicts, scores, charges — follow
//! the ID number's sequence code (`docs/simulator.md` §2–3). `result/getall` reports exactly
//! the attempts made and their charges, and every charge is in the ledger as a billable call
//! of `faceprint-verify`, `faceprint-match` or `faceprint-ocr`.
// Early returns carry the finished HTTP answer, one per request: boxing buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use kyc_schemas::codes::baidu::{ATTEMPT_CODE, ERROR_CODE, TABLE};
use kyc_schemas::codes::{self, CodeRow};

use crate::faults::{self, VendorFaults};
use crate::ledger::Call;
use crate::scenario::Scenario;
use crate::server::Shared;

const VENDOR: &str = "baidu";
const TOKEN_INVALID: &str = "Token无效或者已过期";
/// A session must be completed within 2 h; its results can be read for 3 days (media 1 day).
const SESSION_WINDOW_MS: i64 = 2 * 3600 * 1000;
const RESULT_WINDOW_MS: i64 = 3 * 24 * 3600 * 1000;
const MEDIA_WINDOW_MS: i64 = 24 * 3600 * 1000;
const MAX_IMAGE_B64: usize = 10 * 1024 * 1024;
/// A stand-in for the OCR'd card images of `result/detail` (a JPEG's first bytes).
const OCR_CARD_B64: &str = "/9j/4AAQSkZJRgABAQAAAQABAAD/";

/// The apps the simulated Baidu AI console knows.
#[derive(Debug, Clone)]
pub struct BaiduSim {
    /// API Key → Secret Key.
    pub clients: Vec<(String, String)>,
    /// Lifetime of an access token in seconds (Baidu: 30 days).
    pub token_ttl_secs: i64,
}

impl Default for BaiduSim {
    fn default() -> Self {
        Self {
            clients: Vec::new(),
            token_ttl_secs: 2_592_000,
        }
    }
}

/// Tokens and sessions.
#[derive(Debug, Default)]
pub struct BaiduState {
    /// access_token → expiry (simulator clock, ms).
    tokens: Mutex<HashMap<String, i64>>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// The H5 plans configured in the simulated console (`docs/simulator.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// Compares with an uploaded photo (人脸对比V4) instead of the authority (人脸实名认证V4).
    matches: bool,
    /// "URL invalid after failure": one attempt only.
    strict: bool,
    ocr: bool,
}

fn plan(id: &str) -> Option<Plan> {
    let p = |matches, strict, ocr| {
        Some(Plan {
            matches,
            strict,
            ocr,
        })
    };
    match id {
        "sim-authority" => p(false, false, false),
        "sim-authority-strict" => p(false, true, false),
        "sim-match" => p(true, false, false),
        "sim-ocr" => p(false, false, true),
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Session {
    plan: Plan,
    created_ms: i64,
    name: Option<String>,
    id: Option<String>,
    scenario: Scenario,
    image: bool,
    attempts: Vec<Attempt>,
    completed_ms: Option<i64>,
    polls: u32,
}

impl Session {
    fn ready(&self) -> bool {
        self.id.is_some() && (!self.plan.matches || self.image)
    }

    /// Closed for new submissions: passed, or failed on a one-attempt plan.
    fn closed(&self) -> bool {
        self.completed_ms.is_some()
    }

    /// Whether the token still answers `api` at `now`.
    fn alive(&self, api: &str, now: i64) -> bool {
        match self.completed_ms {
            Some(done) if api == "result/media/query" => now - done < MEDIA_WINDOW_MS,
            Some(done) => now - done < RESULT_WINDOW_MS,
            None => now - self.created_ms < SESSION_WINDOW_MS,
        }
    }
}

#[derive(Debug, Clone)]
struct Attempt {
    passed: bool,
    code: &'static str,
    message: &'static str,
    score: Option<f64>,
    risk: bool,
    liveness: f64,
    charged: bool,
    ocr: bool,
    time: String,
}

// Every code this file sends, looked up in Baidu's table at compile time: a code that is not
// in the table does not build. `EMITS` lists them for the test that says so.
const E_6: &CodeRow = codes::get(TABLE, ERROR_CODE, "6");
const E_17: &CodeRow = codes::get(TABLE, ERROR_CODE, "17");
const E_18: &CodeRow = codes::get(TABLE, ERROR_CODE, "18");
const E_19: &CodeRow = codes::get(TABLE, ERROR_CODE, "19");
const E_100: &CodeRow = codes::get(TABLE, ERROR_CODE, "100");
const E_110: &CodeRow = codes::get(TABLE, ERROR_CODE, "110");
const E_111: &CodeRow = codes::get(TABLE, ERROR_CODE, "111");
const E_216100: &CodeRow = codes::get(TABLE, ERROR_CODE, "216100");
const E_216101: &CodeRow = codes::get(TABLE, ERROR_CODE, "216101");
const E_216102: &CodeRow = codes::get(TABLE, ERROR_CODE, "216102");
const E_282000: &CodeRow = codes::get(TABLE, ERROR_CODE, "282000");
const E_283435: &CodeRow = codes::get(TABLE, ERROR_CODE, "283435");
const E_283513: &CodeRow = codes::get(TABLE, ERROR_CODE, "283513");
const A_222360: &CodeRow = codes::get(TABLE, ATTEMPT_CODE, "222360");
const A_222354: &CodeRow = codes::get(TABLE, ATTEMPT_CODE, "222354");
const A_222356: &CodeRow = codes::get(TABLE, ATTEMPT_CODE, "222356");
const A_222355: &CodeRow = codes::get(TABLE, ATTEMPT_CODE, "222355");
const A_222361: &CodeRow = codes::get(TABLE, ATTEMPT_CODE, "222361");
const A_223120: &CodeRow = codes::get(TABLE, ATTEMPT_CODE, "223120");
const A_990902: &CodeRow = codes::get(TABLE, ATTEMPT_CODE, "990902");
const A_990909: &CodeRow = codes::get(TABLE, ATTEMPT_CODE, "990909");
const A_0: &CodeRow = codes::get(TABLE, ATTEMPT_CODE, "0");

/// Every code this simulator can emit.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const EMITS: &[&CodeRow] = &[
    E_6, E_17, E_18, E_19, E_100, E_110, E_111, E_216100, E_216101, E_216102, E_282000, E_283435,
    E_283513, A_222360, A_222354, A_222356, A_222355, A_222361, A_223120, A_990902, A_990909, A_0,
];

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/oauth/2.0/token", get(oauth).post(oauth))
        .route("/rpc/2.0/brain/solution/faceprint/{*api}", post(faceprint))
}

fn log_id() -> String {
    rand::random_range(1_000_000_000u64..9_999_999_999).to_string()
}

/// A classic API error: HTTP 200, `error_code` / `error_msg` (what baidu-aip reads).
fn api_error(row: &CodeRow, msg: &str) -> Response {
    let code: u32 = row.code.parse().expect("numeric error_code");
    Json(json!({"error_code": code, "error_msg": msg, "log_id": log_id().parse::<u64>().unwrap_or(0)}))
        .into_response()
}

fn success(result: Value) -> Response {
    Json(json!({"success": true, "result": result, "log_id": log_id()})).into_response()
}

/// Beijing time, formatted like the vendor (`2023-6-20 18:00:00`: not zero-padded).
fn vendor_time(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
        + chrono::Duration::hours(8);
    t.format("%Y-%-m-%-d %H:%M:%S").to_string()
}

async fn oauth(State(s): State<Shared>, uri: Uri, body: Bytes) -> Response {
    let mut params = super::alibaba::auth::form_pairs(uri.query().unwrap_or_default());
    params.extend(super::alibaba::auth::form_pairs(&String::from_utf8_lossy(
        &body,
    )));
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let refuse = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    let resp = if get("grant_type") != "client_credentials" {
        refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported",
        )
    } else {
        match s
            .config
            .baidu
            .clients
            .iter()
            .find(|(k, _)| k == get("client_id"))
        {
            None => refuse(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client id",
            ),
            Some((_, secret)) if secret != get("client_secret") => refuse(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
            ),
            Some(_) => {
                let ttl = s.config.baidu.token_ttl_secs;
                let now = s.now();
                let token = format!(
                    "24.{}.{ttl}.{}.282335-sim",
                    uuid::Uuid::new_v4().simple(),
                    now.timestamp()
                );
                s.baidu
                    .tokens
                    .lock()
                    .expect("token lock")
                    .insert(token.clone(), now.timestamp_millis() + ttl * 1000);
                Json(json!({
                    "refresh_token": format!("25.{}", uuid::Uuid::new_v4().simple()),
                    "expires_in": ttl,
                    "session_key": uuid::Uuid::new_v4().simple().to_string(),
                    "access_token": token,
                    "scope": "public brain_all_scope brain_solution_faceprint wise_adapt",
                    "session_secret": uuid::Uuid::new_v4().simple().to_string(),
                }))
                .into_response()
            }
        }
    };
    s.ledger
        .record(VENDOR, "oauth/token", resp.status().as_u16(), false, None);
    resp
}

async fn faceprint(
    State(s): State<Shared>,
    Path(api): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response {
    tokio::spawn(async move { handle(&s, &api, &uri, &body).await })
        .await
        .unwrap_or_else(|_| api_error(E_282000, "internal error"))
}

const APIS: [&str; 8] = [
    "verifyToken/generate",
    "idcard/submit",
    "uploadMatchImage",
    "result/simple",
    "result/detail",
    "result/stat",
    "result/media/query",
    "result/getall",
];

/// An answer, and whether it was Baidu's throttle signal.
struct Reply {
    resp: Response,
    throttled: bool,
    reference: Option<String>,
}

impl From<Response> for Reply {
    fn from(resp: Response) -> Self {
        Reply {
            resp,
            throttled: false,
            reference: None,
        }
    }
}

fn throttled() -> Reply {
    Reply {
        resp: api_error(E_18, "Open api qps request limit reached"),
        throttled: true,
        reference: None,
    }
}

async fn handle(s: &Shared, api: &str, uri: &Uri, body: &[u8]) -> Response {
    let f = s.faults().baidu;
    let delay = faults::delay(&f);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Some(api) = APIS.iter().find(|a| **a == api).copied() else {
        let resp = api_error(E_216102, "service not support");
        s.ledger.record(VENDOR, "unknown", 200, false, None);
        return resp;
    };
    let reply = answer(s, api, uri, body, &f).await;
    s.ledger.record_call(Call {
        vendor: VENDOR,
        api,
        http_status: reply.resp.status().as_u16(),
        billable: false,
        reference: reply.reference,
        throttled: reply.throttled,
    });
    reply.resp
}

async fn answer(s: &Shared, api: &str, uri: &Uri, body: &[u8], f: &VendorFaults) -> Reply {
    let query = super::alibaba::auth::form_pairs(uri.query().unwrap_or_default());
    let token = query
        .iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let now = s.now().timestamp_millis();
    if token.is_empty() {
        return api_error(E_100, "Invalid parameter").into();
    }
    match s.baidu.tokens.lock().expect("token lock").get(&token) {
        None => return api_error(E_110, "Access token invalid or no longer valid").into(),
        Some(exp) if *exp <= now => return api_error(E_111, "Access token expired").into(),
        Some(_) => {}
    }
    if !s.quotas.admit(&format!("{VENDOR}.{api}"), f.qps_of(api)) {
        return throttled();
    }
    if faults::roll(f.error_rate) {
        return api_error(E_282000, "internal error").into();
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return api_error(E_283513, "request body format error").into();
    };
    if api == "verifyToken/generate" {
        return generate(s, &req, now);
    }
    let Some(verify_token) = req["verify_token"].as_str().filter(|t| !t.is_empty()) else {
        return api_error(E_216101, "param[verify_token] not exist").into();
    };
    let mut reply = match api {
        "idcard/submit" => submit(s, verify_token, &req, now, f).await,
        "uploadMatchImage" => upload(s, verify_token, &req, now),
        _ => query_result(s, api, verify_token, now, f).await,
    };
    reply.reference = Some(verify_token.to_string());
    reply
}

fn generate(s: &Shared, req: &Value, now: i64) -> Reply {
    // The seed's example sends a number; the console's ids are strings.
    let plan_id = match &req["plan_id"] {
        Value::String(p) if !p.is_empty() => p.clone(),
        Value::Number(n) => n.to_string(),
        _ => return api_error(E_216101, "param[plan_id] not exist").into(),
    };
    let Some(plan) = plan(&plan_id) else {
        return api_error(E_283435, "plan not exist").into();
    };
    let token = format!("{}", uuid::Uuid::new_v4().simple())[..24].to_string();
    s.baidu.sessions.lock().expect("session lock").insert(
        token.clone(),
        Session {
            plan,
            created_ms: now,
            name: None,
            id: None,
            scenario: Scenario::Pass,
            image: false,
            attempts: Vec::new(),
            completed_ms: None,
            polls: 0,
        },
    );
    Reply {
        resp: success(json!({"verify_token": token})),
        throttled: false,
        reference: Some(token),
    }
}

/// The call-level faults of the scenario table, by the session's ID number.
async fn fault(
    s: &Shared,
    api: &str,
    scenario: Scenario,
    key: &str,
    f: &VendorFaults,
) -> Option<Reply> {
    let first = || s.seen.bump(&format!("{VENDOR}:{api}:{key}")) == 1;
    match scenario {
        Scenario::ThrottledOnce if first() => Some(throttled()),
        Scenario::AlwaysThrottled => Some(throttled()),
        Scenario::InternalErrorOnce if first() => {
            Some(api_error(E_282000, "internal error").into())
        }
        Scenario::AlwaysInternalError => Some(api_error(E_282000, "internal error").into()),
        Scenario::TokenRejectedOnce if first() => {
            Some(api_error(E_110, "Access token invalid or no longer valid").into())
        }
        Scenario::TokenExpiredOnce if first() => {
            Some(api_error(E_111, "Access token expired").into())
        }
        Scenario::DailyQuota => {
            Some(api_error(E_17, "Open api daily request limit reached").into())
        }
        Scenario::TotalQuota => {
            Some(api_error(E_19, "Open api total request limit reached").into())
        }
        Scenario::AccountBlocked => Some(api_error(E_6, "No permission to access data").into()),
        Scenario::SlowOnce if first() => {
            let ms = if f.slow_ms == 0 { 5000 } else { f.slow_ms };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        _ => None,
    }
}

/// A token-bound request's session, or the vendor's "Token无效或者已过期".
fn session(s: &Shared, token: &str, api: &str, now: i64) -> Result<Session, Reply> {
    match s.baidu.sessions.lock().expect("session lock").get(token) {
        Some(sess) if sess.alive(api, now) => Ok(sess.clone()),
        _ => Err(api_error(E_216100, TOKEN_INVALID).into()),
    }
}

async fn submit(s: &Shared, token: &str, req: &Value, now: i64, f: &VendorFaults) -> Reply {
    match session(s, token, "idcard/submit", now) {
        Ok(sess) if !sess.closed() => {}
        Ok(_) => return api_error(E_216100, TOKEN_INVALID).into(),
        Err(r) => return r,
    }
    let name = req["id_name"].as_str().unwrap_or_default().trim();
    let id = req["id_no"].as_str().unwrap_or_default().trim();
    if name.is_empty() {
        return api_error(E_216101, "param[id_name] not exist").into();
    }
    if id.is_empty() {
        return api_error(E_216101, "param[id_no] not exist").into();
    }
    let certificate = match &req["certificate_type"] {
        Value::Null => Some(0),
        Value::Number(n) => n.as_u64(),
        Value::String(t) => t.parse().ok(),
        _ => None,
    };
    if certificate.is_none_or(|c| c > 5) {
        return api_error(E_216100, "invalid param: certificate_type").into();
    }
    if certificate == Some(0) && kyc_schemas::IdNumber::parse(id).is_err() {
        return api_error(E_216100, "invalid param: id_no").into();
    }
    let scenario = Scenario::from_id(id);
    if let Some(r) = fault(s, "idcard/submit", scenario, id, f).await {
        return r;
    }
    let mut sessions = s.baidu.sessions.lock().expect("session lock");
    if let Some(live) = sessions.get_mut(token) {
        live.name = Some(name.to_string());
        live.id = Some(id.to_string());
        live.scenario = scenario;
    }
    success(json!(1)).into()
}

fn upload(s: &Shared, token: &str, req: &Value, now: i64) -> Reply {
    match session(s, token, "uploadMatchImage", now) {
        Ok(sess) if !sess.closed() => {}
        Ok(_) => return api_error(E_216100, TOKEN_INVALID).into(),
        Err(r) => return r,
    }
    let Some(image) = req["image"].as_str().filter(|i| !i.is_empty()) else {
        return api_error(E_216101, "param[image] not exist").into();
    };
    if image.len() > MAX_IMAGE_B64 {
        return api_error(E_216100, "invalid param: image size").into();
    }
    if B64.decode(image).is_err() {
        return api_error(E_216100, "invalid param: image format").into();
    }
    for control in ["quality_control", "liveness_control"] {
        match req[control].as_str() {
            None | Some("NONE" | "LOW" | "NORMAL" | "HIGH") => {}
            Some(_) => return api_error(E_216100, &format!("invalid param: {control}")).into(),
        }
    }
    let mut sessions = s.baidu.sessions.lock().expect("session lock");
    if let Some(live) = sessions.get_mut(token) {
        live.image = true;
    }
    success(Value::Null).into()
}

/// The simulated person verifies once the session is ready, seen at the first query after
/// that (so our own session calls are never cut short): unless the code keeps them away,
/// 940 until the third poll, 941 never.
fn complete_if_ready(s: &Shared, token: &str, sess: &mut Session, now: i64) {
    let waits = match sess.scenario {
        Scenario::PendingForever => true,
        Scenario::PendingThenPass => sess.polls < 3,
        _ => false,
    };
    if sess.completed_ms.is_some() || !sess.ready() || waits {
        return;
    }
    let time = vendor_time(now);
    let ocr = sess.plan.ocr || sess.scenario == Scenario::OcrCharged;
    let attempt = |passed, row: &'static CodeRow, score: Option<f64>| Attempt {
        passed,
        code: row.code,
        message: row.message,
        score,
        risk: false,
        liveness: 0.0,
        // Billed when the backend produced a similarity score.
        charged: score.is_some(),
        ocr,
        time: time.clone(),
    };
    let pass = attempt(true, A_0, Some(93.78));
    let fail = |row| attempt(false, row, None);
    sess.attempts = match sess.scenario {
        Scenario::IdentityMismatch => vec![fail(A_222360)],
        Scenario::NoRecord => vec![fail(A_222354)],
        Scenario::ImageQuality => vec![fail(A_222356)],
        Scenario::IdPhotoMissing => vec![fail(A_222355)],
        Scenario::AuthorityError => vec![fail(A_222361)],
        Scenario::LivenessError => vec![fail(A_223120)],
        Scenario::FaceMismatch => vec![attempt(false, A_990902, Some(45.0))],
        Scenario::RiskRejected => vec![Attempt {
            risk: true,
            ..attempt(false, A_990909, Some(90.0))
        }],
        Scenario::TwoAttempts if !sess.plan.strict => {
            vec![attempt(false, A_990902, Some(45.0)), pass]
        }
        Scenario::TwoAttempts => vec![attempt(false, A_990902, Some(45.0))],
        _ => vec![pass],
    };
    sess.completed_ms = Some(now);
    // The bill: one billable entry per charged attempt (and per OCR charge).
    let product = if sess.plan.matches {
        "faceprint-match"
    } else {
        "faceprint-verify"
    };
    for a in &sess.attempts {
        if a.charged {
            s.ledger
                .record(VENDOR, product, 200, true, Some(token.to_string()));
        }
        if a.ocr {
            s.ledger
                .record(VENDOR, "faceprint-ocr", 200, true, Some(token.to_string()));
        }
    }
}

async fn query_result(s: &Shared, api: &str, token: &str, now: i64, f: &VendorFaults) -> Reply {
    let sess = match session(s, token, api, now) {
        Ok(sess) => sess,
        Err(r) => return r,
    };
    if let Some(id) = &sess.id {
        if let Some(r) = fault(s, api, sess.scenario, &format!("{id}:{token}"), f).await {
            return r;
        }
    }
    // Polls move the stateful codes on (940 completes on the third).
    let sess = {
        let mut sessions = s.baidu.sessions.lock().expect("session lock");
        let Some(live) = sessions.get_mut(token) else {
            return api_error(E_216100, TOKEN_INVALID).into();
        };
        if matches!(api, "result/getall" | "result/detail" | "result/simple") {
            live.polls += 1;
        }
        complete_if_ready(s, token, live, now);
        live.clone()
    };
    let last = sess.attempts.last();
    let confirm = json!({
        "name": sess.name.clone().unwrap_or_default(),
        "idcard_number": sess.id.clone().unwrap_or_default(),
    });
    let verdict = |a: &Attempt| -> Value {
        json!({"success": false, "code": a.code.parse::<u32>().unwrap_or(0), "message": a.message, "log_id": log_id()})
    };
    let pending = || Json(json!({"success": false, "log_id": log_id()})).into_response();
    let resp = match api {
        "result/getall" => success(getall(&sess, token)),
        "result/detail" => match last {
            None => pending(),
            Some(a) if a.passed => {
                let mut result = json!({
                    "verify_result": {"liveness_score": 0.97, "score": a.score.unwrap_or(0.0), "spoofing": 0},
                    "idcard_confirm": confirm,
                    "is_demote": false,
                });
                // §二.2: `idcard_ocr_result` and `idcard_images` come back when the plan
                // reads the card by OCR.
                if a.ocr {
                    result["idcard_ocr_result"] = json!({
                        "name": sess.name.clone().unwrap_or_default(),
                        "id_card_number": sess.id.clone().unwrap_or_default(),
                        "gender": "男", "nation": "汉", "address": "", "birthday": "",
                        "issue_time": "20201010", "expire_time": "20401010", "issue_authority": "",
                    });
                    result["idcard_images"] = json!({
                        "front_base64": OCR_CARD_B64, "back_base64": OCR_CARD_B64,
                    });
                }
                success(result)
            }
            Some(a) => Json(verdict(a)).into_response(),
        },
        "result/simple" => match last {
            None => pending(),
            Some(a) if a.passed => success(json!({
                "image": format!("https://brain.baidu.com/solution/faceprint/image/query?verify_token={token}"),
            })),
            Some(a) => Json(verdict(a)).into_response(),
        },
        "result/stat" => {
            let mut verify: Vec<(u32, u32)> = Vec::new();
            for a in &sess.attempts {
                let code = a.code.parse().unwrap_or(0);
                match verify.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, n)) => *n += 1,
                    None => verify.push((code, 1)),
                }
            }
            let arr = |v: &[(u32, u32)]| {
                v.iter()
                    .map(|(c, n)| json!({"error_code": c, "count": n}))
                    .collect::<Vec<_>>()
            };
            let ocr: Vec<(u32, u32)> = if sess.attempts.iter().any(|a| a.ocr) {
                vec![(0, sess.attempts.iter().filter(|a| a.ocr).count() as u32)]
            } else {
                vec![]
            };
            success(json!({
                "Verify_FIN": [], "Sessioncode": [], "OCR": arr(&ocr), "verify": arr(&verify),
                "VideoLiveness": [], "Livenesscolorful": [], "VerifySec": [],
            }))
        }
        // §二.4: `video` (H5 数字/动作/视频活体, 在线图片活体 plans) and `processVideo` (H5 实时
        // plans) never come together. The simulated plans are not real-time ones; recording
        // is off by default, so the list is empty.
        _ => success(json!({"video": [], "images": [], "extInfo": null})),
    };
    resp.into()
}

fn getall(sess: &Session, token: &str) -> Value {
    let charge_type = if sess.plan.matches { "match" } else { "verify" };
    let entries: Vec<Value> = sess
        .attempts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut detail = json!({
                "face_image": format!("https://brain.baidu.com/solution/faceprint/image/query?verify_token={token}&order={}", i + 1),
                "verify_log_id": log_id(),
                "threshold": 80,
                "liveness_score": a.liveness,
                "spoofing_score": 0,
                "risk_level": if a.risk { "1" } else { "4" },
                "risk_tag": if a.risk { "sim_risk" } else { "" },
                "is_demote": false,
            });
            if let Some(score) = a.score {
                detail["score"] = json!(score);
            }
            let mut e = json!({
                "order": i + 1,
                "is_verify_passed": a.passed,
                "code": a.code,
                "message": a.message,
                "verify_time": a.time,
                "is_charged": a.charged,
                "charge_type": charge_type,
                "charge_time": if a.charged { a.time.clone() } else { String::new() },
                "is_ocr_charge": a.ocr,
                "ocr_charge_time": if a.ocr { a.time.clone() } else { String::new() },
                "ocr_count": if a.ocr { 2 } else { 0 },
                "verify_detail": detail,
                "idcard_confirm": {
                    "name": sess.name.clone().unwrap_or_default(),
                    "idcard_number": sess.id.clone().unwrap_or_default(),
                    "idcard_type": "0",
                },
            });
            if a.ocr {
                e["idcard_ocr_result"] = json!({
                    "name": sess.name.clone().unwrap_or_default(),
                    "idcard_number": sess.id.clone().unwrap_or_default(),
                    "idcard_type": "0", "gender": "男", "nation": "汉", "address": "",
                    "birthday": "", "issue_time": "2020-10-10 10:10:10",
                    "expire_time": "2040-10-10 10:10:10", "issue_authority": "",
                });
                e["idcard_images"] = json!({
                    "front_image": format!("https://brain.baidu.com/solution/faceprint/idcard/front?verify_token={token}"),
                    "back_image": format!("https://brain.baidu.com/solution/faceprint/idcard/back?verify_token={token}"),
                });
            }
            e
        })
        .collect();
    let count = |p: &dyn Fn(&Attempt) -> bool| sess.attempts.iter().filter(|a| p(a)).count();
    let charged = count(&|a| a.charged);
    json!({
        "verify_count": sess.attempts.len(),
        "ocr_charge_count": count(&|a| a.ocr),
        "match_charge_count": if sess.plan.matches { charged } else { 0 },
        "verify_charge_count": if sess.plan.matches { 0 } else { charged },
        "verify_result": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_simulator_emits_is_in_the_baidu_table() {
        for row in EMITS {
            assert!(TABLE.contains(row), "{}", row.code);
        }
    }
}
