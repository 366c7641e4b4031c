//! The HTTP surface: `POST /rpc/2.0/brain/solution/faceprint/<path>` for the session calls and
//! the five result queries, API errors as HTTP 200 with `error_code` / `error_msg`, throttling
//! (18), injected faults, and the result bodies (`result/getall` with its charges).

use super::*;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/oauth/2.0/token", get(oauth).post(oauth))
        .route("/rpc/2.0/brain/solution/faceprint/{*api}", post(faceprint))
}

pub(super) fn log_id() -> String {
    rand::random_range(1_000_000_000u64..9_999_999_999).to_string()
}

/// A classic API error: HTTP 200, `error_code` / `error_msg` (what baidu-aip reads).
pub(super) fn api_error(row: &CodeRow, msg: &str) -> Response {
    let code: u32 = row.code.parse().expect("numeric error_code");
    Json(json!({"error_code": code, "error_msg": msg, "log_id": log_id().parse::<u64>().unwrap_or(0)}))
        .into_response()
}

pub(super) fn success(result: Value) -> Response {
    Json(json!({"success": true, "result": result, "log_id": log_id()})).into_response()
}

/// Beijing time, formatted like the vendor (`2023-6-20 18:00:00`: not zero-padded).
pub(super) fn vendor_time(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
        + chrono::Duration::hours(8);
    t.format("%Y-%-m-%-d %H:%M:%S").to_string()
}

pub(super) async fn faceprint(
    State(s): State<Shared>,
    Path(api): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response {
    tokio::spawn(async move { handle(&s, &api, &uri, &body).await })
        .await
        .unwrap_or_else(|_| api_error(E_282000, "internal error"))
}

pub(super) const APIS: [&str; 8] = [
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
pub(super) struct Reply {
    pub(super) resp: Response,
    pub(super) throttled: bool,
    pub(super) reference: Option<String>,
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

pub(super) fn throttled() -> Reply {
    Reply {
        resp: api_error(E_18, "Open api qps request limit reached"),
        throttled: true,
        reference: None,
    }
}

pub(super) async fn handle(s: &Shared, api: &str, uri: &Uri, body: &[u8]) -> Response {
    let arrival = Arrival::now();
    let _busy = s.busy();
    let f = s.faults().baidu;
    let Some(api) = APIS.iter().find(|a| **a == api).copied() else {
        let resp = api_error(E_216102, "service not support");
        s.ledger.record(VENDOR, "unknown", 200, false, None);
        return resp;
    };
    let reply = answer(s, api, uri, body, &f, arrival).await;
    s.ledger.record_call(Call {
        vendor: VENDOR,
        api,
        http_status: reply.resp.status().as_u16(),
        billable: false,
        reference: reply.reference,
        throttled: reply.throttled,
        arrived_us: arrival.us,
    });
    reply.resp
}

pub(super) async fn answer(
    s: &Shared,
    api: &str,
    uri: &Uri,
    body: &[u8],
    f: &VendorFaults,
    arrival: Arrival,
) -> Reply {
    let query = crate::vendors::alibaba::auth::form_pairs(uri.query().unwrap_or_default());
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
    // The gateway checks the token and counts the call as it arrives, and refuses at once;
    // only a call it lets through waits for the answer time.
    if !s.admit(VENDOR, api, f, arrival) {
        return throttled();
    }
    s.latency(f, api).await;
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

pub(super) fn generate(s: &Shared, req: &Value, now: i64) -> Reply {
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
pub(super) async fn fault(
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
pub(super) fn session(s: &Shared, token: &str, api: &str, now: i64) -> Result<Session, Reply> {
    match s.baidu.sessions.lock().expect("session lock").get(token) {
        Some(sess) if sess.alive(api, now) => Ok(sess.clone()),
        _ => Err(api_error(E_216100, TOKEN_INVALID).into()),
    }
}

pub(super) async fn submit(
    s: &Shared,
    token: &str,
    req: &Value,
    now: i64,
    f: &VendorFaults,
) -> Reply {
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

pub(super) fn upload(s: &Shared, token: &str, req: &Value, now: i64) -> Reply {
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

pub(super) async fn query_result(
    s: &Shared,
    api: &str,
    token: &str,
    now: i64,
    f: &VendorFaults,
) -> Reply {
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

pub(super) fn getall(sess: &Session, token: &str) -> Value {
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
