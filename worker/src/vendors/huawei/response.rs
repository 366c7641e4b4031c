//! IVS answers → verdicts or classified errors. This file is Huawei's row of the
//! normalization table in `docs/outcomes.md`.

use std::time::Duration;

use kyc_schemas::{Reason, Status};
use serde::Deserialize;

use crate::vendors::{parse_retry_after, VendorError, Verdict};

#[derive(Debug, Deserialize)]
struct Body {
    result: Option<ResultBody>,
    error_code: Option<String>,
    error_msg: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResultBody {
    #[serde(default)]
    resp_data: Vec<RespData>,
}

#[derive(Debug, Deserialize)]
struct RespData {
    verification_code: Option<i64>,
    verification_message: Option<String>,
    /// A string in the docs ("65"), sometimes a number; 0–1000 when `detail` was true.
    similarity: Option<serde_json::Value>,
}

/// `verification_code` → (status, reason). Table 5-1 of the IVS API reference.
pub(crate) fn normalize_code(code: i64) -> Option<(Status, Reason)> {
    Some(match code {
        1000 => (Status::Passed, Reason::Verified),
        2001 => (Status::Failed, Reason::IdentityMismatch),
        2002 => (Status::Failed, Reason::FaceMismatch),
        // The vendor judged the image; sending it again gets the same answer.
        2003 => (Status::Failed, Reason::ImageQuality),
        // The person exists but the authority holds no photo: no verdict on the face.
        2006 => (Status::Error, Reason::IdPhotoMissing),
        3001 => (Status::NotFound, Reason::NoRecord),
        _ => return None,
    })
}

/// Parses a 200 answer. `detail` says whether similarity is on the 0–1000 scale.
pub(crate) fn parse_success(body: &[u8], detail: bool) -> Result<Verdict, VendorError> {
    let unexpected = |what: &str| VendorError::Permanent {
        code: "unexpected_response".into(),
        message: what.into(),
        reason: Reason::UnexpectedResponse,
    };
    let parsed: Body = serde_json::from_slice(body)
        .map_err(|_| unexpected("200 body is not the documented JSON"))?;
    let item = parsed
        .result
        .and_then(|r| r.resp_data.into_iter().next())
        .ok_or_else(|| unexpected("200 body has no result.resp_data[0]"))?;
    let code = item
        .verification_code
        .ok_or_else(|| unexpected("resp_data[0] has no verification_code"))?;
    let (status, reason) =
        normalize_code(code).ok_or_else(|| unexpected("unknown verification_code"))?;
    let similarity = item
        .similarity
        .and_then(|v| match v {
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
            serde_json::Value::Number(n) => n.as_f64(),
            _ => None,
        })
        .map(|s| if detail { s / 10.0 } else { s });
    Ok(Verdict {
        status,
        reason,
        vendor_code: Some(code.to_string()),
        vendor_message: item.verification_message,
        similarity,
        liveness_score: None,
        vendor_ref: None,
        charges: Vec::new(),
    })
}

/// What a non-200 answer means: a verdict after all (the vendor judged the material), or an
/// error to retry or not. Follows the retry table of `vendor-protocols.md`.
pub(crate) fn parse_error(
    status: u16,
    body: &[u8],
    retry_after: Option<&str>,
) -> Result<Verdict, VendorError> {
    let parsed: Option<Body> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.error_code.clone())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let message = parsed
        .and_then(|b| b.error_msg)
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect::<String>();
    let retry_after = retry_after.and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let permanent = |reason| VendorError::Permanent {
        code: code.clone(),
        message: message.clone(),
        reason,
    };
    Err(match (status, code.as_str()) {
        (429, _) | (_, "APIG.0308") => VendorError::Throttled {
            code,
            // Huawei's FAQ: wait 2–5 s when throttled and no Retry-After is given.
            retry_after: retry_after.or(Some(Duration::from_secs(2))),
        },
        (_, "APIG.0307") => VendorError::AuthExpired { code },
        (_, "APIG.0301") | (_, "IVS.0013") if message.to_ascii_lowercase().contains("token") => {
            VendorError::AuthExpired { code }
        }
        // A bad AK/SK: retrying risks the 5-failure lock on the key.
        (_, "APIG.0301") | (401, _) | (403, _) => permanent(Reason::AuthFailed),
        (_, "IVS.0014") | (_, "IVS.0015") => permanent(Reason::AccountBlocked),
        // The vendor looked at the material and could not use it: a verdict, not a fault.
        (_, "IVS.0007") | (_, "IVS.0009") | (_, "IVS.0010") => {
            return Ok(Verdict {
                status: Status::Failed,
                reason: Reason::ImageQuality,
                vendor_code: Some(code),
                vendor_message: Some(message),
                similarity: None,
                liveness_score: None,
                vendor_ref: None,
                charges: Vec::new(),
            })
        }
        (_, "IVS.0008") => {
            return Ok(Verdict {
                status: Status::Failed,
                reason: Reason::LivenessFailed,
                vendor_code: Some(code),
                vendor_message: Some(message),
                similarity: None,
                liveness_score: None,
                vendor_ref: None,
                charges: Vec::new(),
            })
        }
        (s, _) if s >= 500 || code == "IVS.0101" || code.starts_with("APIG.02") => {
            VendorError::Transient {
                code,
                message,
                retry_after,
                reason: Reason::VendorInternal,
            }
        }
        (408, _) => VendorError::Transient {
            code,
            message,
            retry_after,
            reason: Reason::VendorInternal,
        },
        _ => permanent(Reason::InvalidRequest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_body(code: i64, sim: &str) -> Vec<u8> {
        format!(
            r#"{{"meta":{{"uuid":"u"}},"result":{{"service_name":"ivs-standard","count":1,"resp_data":[{{"verification_result":"valid","verification_message":"m","verification_code":{code},"similarity":"{sim}"}}]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn every_documented_verification_code_is_normalized() {
        let table = [
            (1000, Status::Passed, Reason::Verified),
            (2001, Status::Failed, Reason::IdentityMismatch),
            (2002, Status::Failed, Reason::FaceMismatch),
            (2003, Status::Failed, Reason::ImageQuality),
            (2006, Status::Error, Reason::IdPhotoMissing),
            (3001, Status::NotFound, Reason::NoRecord),
        ];
        for (code, status, reason) in table {
            let v = parse_success(&ok_body(code, "0"), false).unwrap();
            assert_eq!((v.status, v.reason), (status, reason), "code {code}");
            assert_eq!(v.vendor_code.as_deref(), Some(code.to_string().as_str()));
        }
        assert!(parse_success(&ok_body(4242, "0"), false).is_err());
    }

    #[test]
    fn detailed_similarity_is_normalized_to_0_100() {
        let s = parse_success(&ok_body(1000, "884.3"), true)
            .unwrap()
            .similarity
            .unwrap();
        assert!((s - 88.43).abs() < 1e-9, "{s}");
        assert_eq!(
            parse_success(&ok_body(1000, "65"), false)
                .unwrap()
                .similarity,
            Some(65.0)
        );
    }

    #[test]
    fn throttling_is_retryable_and_honours_retry_after() {
        let body = br#"{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached"}"#;
        match parse_error(429, body, Some("7")) {
            Err(VendorError::Throttled { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_error(429, body, None),
            Err(VendorError::Throttled {
                retry_after: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn error_codes_are_classified() {
        let e = |status, code: &str, msg: &str| {
            parse_error(
                status,
                format!(r#"{{"error_code":"{code}","error_msg":"{msg}"}}"#).as_bytes(),
                None,
            )
        };
        for n in 1..=5 {
            let code = format!("IVS.{n:04}");
            assert!(
                matches!(
                    e(400, &code, "x"),
                    Err(VendorError::Permanent {
                        reason: Reason::InvalidRequest,
                        ..
                    })
                ),
                "{code}"
            );
        }
        assert!(matches!(
            e(400, "IVS.0011", "x"),
            Err(VendorError::Permanent {
                reason: Reason::InvalidRequest,
                ..
            })
        ));
        assert!(matches!(
            e(400, "IVS.0006", "x"),
            Err(VendorError::Permanent {
                reason: Reason::InvalidRequest,
                ..
            })
        ));
        for code in ["IVS.0007", "IVS.0009", "IVS.0010"] {
            assert_eq!(
                e(400, code, "x").unwrap().reason,
                Reason::ImageQuality,
                "{code}"
            );
        }
        assert_eq!(
            e(400, "IVS.0008", "x").unwrap().reason,
            Reason::LivenessFailed
        );
        assert!(matches!(
            e(400, "IVS.0015", "x"),
            Err(VendorError::Permanent {
                reason: Reason::AccountBlocked,
                ..
            })
        ));
        assert!(matches!(
            e(500, "IVS.0101", "x"),
            Err(VendorError::Transient { .. })
        ));
        assert!(matches!(
            e(502, "APIG.0201", "x"),
            Err(VendorError::Transient { .. })
        ));
        assert!(matches!(
            e(401, "APIG.0307", "The token must be updated"),
            Err(VendorError::AuthExpired { .. })
        ));
        assert!(matches!(
            e(
                401,
                "APIG.0301",
                "Incorrect IAM authentication information: token expires"
            ),
            Err(VendorError::AuthExpired { .. })
        ));
        assert!(matches!(
            e(401, "APIG.0301", "verify aksk signature fail"),
            Err(VendorError::Permanent {
                reason: Reason::AuthFailed,
                ..
            })
        ));
        assert!(matches!(
            parse_error(503, b"<html>", None),
            Err(VendorError::Transient { .. })
        ));
    }
}
