//! The HTTP surface: RPC-style `POST /` (GET too) dispatched on `Action`, the vendor's error body
//! (`RequestId`, `HostId`, `Code`, `Message`, `Recommend`) with its non-standard HTTP statuses,
//! throttling as 400 `Throttling.User` with `x-acs-retry-after`, injected faults, the image
//! downloads VerifyMaterial makes itself (3 s, 2 MB), and each action's answer.

use super::*;

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/", post(rpc).get(rpc))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    VerifyMaterial,
    Describe,
    Submit,
}

impl Api {
    pub(super) fn name(self) -> &'static str {
        match self {
            Api::VerifyMaterial => "VerifyMaterial",
            Api::Describe => "DescribeVerifyResult",
            Api::Submit => "SubmitVerification",
        }
    }

    pub(super) fn version(self) -> &'static str {
        match self {
            Api::Submit => "2018-09-16",
            _ => "2019-03-07",
        }
    }

    pub(super) fn internal_error(self) -> Response {
        let code = match self {
            Api::VerifyMaterial => "SystemError",
            Api::Submit => "Error.InternalError",
            Api::Describe => "InternalError",
        };
        error(code, "An internal error occurred.")
    }
}

pub(super) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// The vendor's error body for `code`, with the HTTP status Alibaba's table gives it.
pub(super) fn error(code: &str, message: &str) -> Response {
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

pub(super) fn ok(body: Value) -> Response {
    let rid = body["RequestId"].as_str().unwrap_or_default().to_string();
    let mut r = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&rid) {
        r.headers_mut().insert("x-acs-request-id", v);
    }
    r
}

/// An answer and how the vendor's bill sees it.
pub(super) struct Reply {
    pub(super) resp: Response,
    pub(super) billable: bool,
    pub(super) throttled: bool,
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

pub(super) fn throttled(f: &VendorFaults) -> Reply {
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

pub(super) async fn rpc(
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
pub(super) struct Params(pub(super) Vec<(String, String)>);

impl Params {
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

pub(super) async fn handle(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let arrival = Arrival::now();
    let _busy = s.busy();
    let f = s.faults().alibaba;
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
    // The API gateway checks the signature and counts the call as it arrives, and refuses at
    // once; only a call it lets through waits for Cloudauth's answer time.
    let reply = match check_auth(s, method, uri, headers, body, &params, &query, acs3) {
        Err(resp) => resp.into(),
        Ok(()) if version != Some(api.version()) => error(
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        )
        .into(),
        Ok(()) if !s.admit(VENDOR, api.name(), &f, arrival) => throttled(&f),
        Ok(()) => {
            s.latency(&f, api.name()).await;
            answer(s, api, &params, body, &f).await
        }
    };
    let status = reply.resp.status().as_u16();
    s.ledger.record_call(Call {
        vendor: VENDOR,
        api: api.name(),
        http_status: status,
        billable: reply.billable,
        reference,
        throttled: reply.throttled,
        arrived_us: arrival.us,
    });
    reply.resp
}

pub(super) async fn answer(
    s: &Shared,
    api: Api,
    params: &Params,
    body: &[u8],
    f: &VendorFaults,
) -> Reply {
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
pub(super) async fn fault(
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

/// Downloads an image the way the vendor does: 3 s, 2 MB. The simulator's own markers in a
/// URL (`sim-timeout`, `sim-too-large`) trigger the two errors without a real server.
pub(super) async fn download(s: &Shared, field: &str, url: &str) -> Result<Vec<u8>, Response> {
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

pub(super) fn is_jpeg(b: &[u8]) -> bool {
    b.starts_with(&[0xFF, 0xD8])
}

pub(super) async fn verify_material(s: &Shared, p: &Params, f: &VendorFaults) -> Reply {
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

pub(super) async fn describe(s: &Shared, p: &Params, f: &VendorFaults) -> Response {
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

pub(super) const MATERIAL_TYPES: [&str; 7] = [
    "Name",
    "IdentificationNumber",
    "FacePic",
    "IdCardFrontPic",
    "IdCardBackPic",
    "IDPic",
    "Mobile",
];

pub(super) async fn submit(s: &Shared, p: &Params, body: &[u8], f: &VendorFaults) -> Reply {
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
