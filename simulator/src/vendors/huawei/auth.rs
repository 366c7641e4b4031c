//! Who may call: IAM password tokens (`POST /v3/auth/tokens`) and the APIG `SDK-HMAC-SHA256`
//! signature, rebuilt from the request exactly as the official SDK's signer builds it, with the
//! clock skew APIG tolerates.

use super::*;

pub(super) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// APIG accepts X-Sdk-Date within 15 minutes of its clock.
pub(super) const MAX_SKEW_SECS: i64 = 15 * 60;

pub(super) async fn iam_token(State(s): State<Shared>, body: Bytes) -> Response {
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

/// Checks `X-Auth-Token` against issued tokens, or the AK/SK signature.
pub(super) fn authenticate(
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
    // The simulator's clock (moved by `clock_offset_secs`), so that a recorded SDK request
    // can be replayed at its own X-Sdk-Date.
    if (s.now() - when).num_seconds().abs() > MAX_SKEW_SECS {
        return Err("request expired");
    }
    let rebuilt = rebuild(method, uri, headers, signed_headers, body, date)?;
    if verify(sk, &rebuilt.to_sign, signature) {
        Ok(())
    } else {
        Err("verify aksk signature fail")
    }
}

/// What the server recomputes from the wire: SDK-HMAC-SHA256's canonical request and string
/// to sign (vendor-protocols §C1), following the client's own SignedHeaders list.
#[derive(Debug)]
pub(super) struct Rebuilt {
    /// Compared with the SDK vectors' in the tests; only the string to sign is signed.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) canonical: String,
    pub(super) to_sign: String,
}

pub(super) fn rebuild(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed_headers: &str,
    body: &[u8],
    date: &str,
) -> Result<Rebuilt, &'static str> {
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
    Ok(Rebuilt { canonical, to_sign })
}

/// Constant-time check of a hex signature over `to_sign`.
pub(super) fn verify(sk: &str, to_sign: &str, signature: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(sk.as_bytes()).expect("any key length");
    mac.update(to_sign.as_bytes());
    hex::decode(signature).is_ok_and(|expected| mac.verify_slice(&expected).is_ok())
}
