//! Who may call: OAuth `client_credentials` tokens (`/oauth/2.0/token`, 30 days) issued to the
//! configured API Key / Secret Key pairs, and the vendor's answer to a missing or expired one.

use super::*;

pub(super) const TOKEN_INVALID: &str = "Token无效或者已过期";
pub(super) async fn oauth(State(s): State<Shared>, uri: Uri, body: Bytes) -> Response {
    let mut params = crate::vendors::alibaba::auth::form_pairs(uri.query().unwrap_or_default());
    params.extend(crate::vendors::alibaba::auth::form_pairs(
        &String::from_utf8_lossy(&body),
    ));
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
