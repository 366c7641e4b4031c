//! Cloudauth answers → verdicts or classified errors: Alibaba's rows of `docs/outcomes.md`.
//!
//! The SDKs read `VerifyStatus`, scores and `VerifyToken` at the top level of the body; the
//! seed documentation wraps them in `ResultObject` and writes numbers as strings. Both shapes
//! and both spellings of the score (`AuthorityComparisionScore`, sic, and
//! `AuthorityComparisonScore`) are accepted.

use std::time::Duration;

use kyc_schemas::{Reason, Status};
use serde_json::Value;

use crate::vendors::{VendorError, Verdict};

/// What a `VerifyStatus` of VerifyMaterial (or DescribeVerifyResult) means.
pub fn normalize_verify_status(code: i64) -> (Status, Reason) {
    match code {
        1 => (Status::Passed, Reason::Verified),
        2 => (Status::Failed, Reason::IdentityMismatch),
        3 | 4 => (Status::Failed, Reason::IdCardMismatch),
        5 => (Status::Failed, Reason::IdExpired),
        6 => (Status::Failed, Reason::FaceMismatchIdPhoto),
        7 => (Status::Failed, Reason::FaceMismatchAuthority),
        8 => (Status::Failed, Reason::IdCardInvalid),
        9 => (Status::Failed, Reason::RiskRejected),
        11 | 12 => (Status::Error, Reason::AuthorityUnavailable),
        // DescribeVerifyResult: nothing submitted yet.
        -1 => (Status::Pending, Reason::AwaitingUser),
        // "2~n 不通过": any other failure the documentation does not name (10 included).
        _ => (Status::Failed, Reason::RejectedUnspecified),
    }
}

/// A number that may arrive as a JSON number or a string ("97", "true").
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An answer this code cannot read.
fn unexpected(what: &str) -> VendorError {
    VendorError::Permanent {
        code: "unexpected_response".into(),
        message: what.into(),
        reason: Reason::UnexpectedResponse,
    }
}

/// Parses a VerifyMaterial / DescribeVerifyResult answer with HTTP 200.
pub fn parse_verify(body: &[u8]) -> Result<Verdict, VendorError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| unexpected("200 body is not JSON"))?;
    // The SDK shape first, then the seed's ResultObject.
    let fields = if v.get("VerifyStatus").is_some() {
        &v
    } else {
        &v["ResultObject"]
    };
    let code = number(&fields["VerifyStatus"]).ok_or_else(|| unexpected("no VerifyStatus"))? as i64;
    if code == 12 {
        // The authority's system failed: the same BizId may be submitted again.
        return Err(VendorError::Transient {
            code: "12".into(),
            message: "authority system error".into(),
            retry_after: None,
            reason: Reason::AuthorityUnavailable,
        });
    }
    let (status, reason) = normalize_verify_status(code);
    let similarity = ["AuthorityComparisionScore", "AuthorityComparisonScore"]
        .iter()
        .find_map(|k| number(&fields[*k]));
    Ok(Verdict {
        status,
        reason,
        vendor_code: Some(code.to_string()),
        vendor_message: None,
        similarity,
        liveness_score: None,
        vendor_ref: fields["VerifyToken"].as_str().map(str::to_string),
        charges: Vec::new(),
    })
}

/// What SubmitVerification's `VerifyStatus.StatusCode` means (a different enum from
/// VerifyMaterial's `VerifyStatus`; see `docs/vendors/alibaba.md` A14).
pub fn normalize_status_code(code: i64) -> Option<(Status, Reason)> {
    match code {
        1 => Some((Status::Passed, Reason::Verified)),
        // Free text in AuditConclusions says why; no code to map.
        2 => Some((Status::Failed, Reason::RejectedUnspecified)),
        0 => Some((Status::Pending, Reason::InReview)),
        // −1: nothing recorded, resubmit (same TicketId): retryable.
        _ => None,
    }
}

/// Parses a SubmitVerification answer with HTTP 200: `Data.VerifyStatus` (or top-level
/// `VerifyStatus`), `SimilarityScore` (or `MaterialScore`), numbers possibly as strings.
pub fn parse_submit(body: &[u8]) -> Result<Verdict, VendorError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| unexpected("200 body is not JSON"))?;
    let vs = if v["Data"]["VerifyStatus"].is_object() {
        &v["Data"]["VerifyStatus"]
    } else {
        &v["VerifyStatus"]
    };
    let code = number(&vs["StatusCode"]).ok_or_else(|| unexpected("no StatusCode"))? as i64;
    let Some((status, reason)) = normalize_status_code(code) else {
        return Err(VendorError::Transient {
            code: code.to_string(),
            message: "no submission recorded".into(),
            retry_after: None,
            reason: Reason::VendorInternal,
        });
    };
    Ok(Verdict {
        status,
        reason,
        vendor_code: Some(code.to_string()),
        vendor_message: vs["AuditConclusions"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        similarity: ["SimilarityScore", "MaterialScore"]
            .iter()
            .find_map(|k| number(&vs[*k])),
        liveness_score: None,
        vendor_ref: None,
        charges: Vec::new(),
    })
}

/// What a non-200 answer means. `retry_after_ms` is the `x-acs-retry-after` header.
pub fn parse_error(
    status: u16,
    body: &[u8],
    retry_after_ms: Option<&str>,
) -> Result<Verdict, VendorError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v["Code"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}"));
    // A signature refusal quotes the server's string to sign, which holds every parameter
    // (name, ID number): cut it off before the message reaches the outcome or a report.
    let message: String = v["Message"]
        .as_str()
        .unwrap_or_default()
        .split("string to sign is:")
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    let retry_after = retry_after_ms
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    let permanent = |reason| VendorError::Permanent {
        code: code.clone(),
        message: message.clone(),
        reason,
    };
    Err(match code.as_str() {
        "Throttling" | "Throttling.User" | "Throttling.Api" => {
            VendorError::Throttled { code, retry_after }
        }
        _ if retry_after.is_some() => VendorError::Throttled { code, retry_after },
        "NoFaceDetected" => {
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
        // An earlier submission of this TicketId is in review or passed: never resubmit,
        // reconcile with DescribeVerifyResult.
        "Error.DuplicatedTicketId" => {
            return Ok(Verdict {
                status: Status::Pending,
                reason: Reason::DuplicateSubmission,
                vendor_code: Some(code),
                vendor_message: Some(message),
                similarity: None,
                liveness_score: None,
                vendor_ref: None,
                charges: Vec::new(),
            })
        }
        "InvalidParam.VerifyTokenExpired" => permanent(Reason::SessionExpired),
        // Our clock is off by more than the vendor's window: no retry can fix that.
        "InvalidTimeStamp.Expired" | "InvalidTimeStamp.Format" => permanent(Reason::AuthFailed),
        // A fresh nonce is made for every attempt.
        "SignatureNonceUsed" => VendorError::Transient {
            code,
            message,
            retry_after: None,
            reason: Reason::VendorInternal,
        },
        "Error.MaterialsUploadError" => VendorError::Transient {
            code,
            message,
            retry_after: None,
            reason: Reason::MaterialUnavailable,
        },
        "SignatureDoesNotMatch" | "InvalidAccessKeyId.NotFound" | "IncompleteSignature" => {
            permanent(Reason::AuthFailed)
        }
        "NoPermission"
        | "NoSubscribeService"
        | "InDebt"
        | "Forbidden"
        | "Error.NoPermissionAccess" => permanent(Reason::AccountBlocked),
        // Alibaba could not fetch an image in its 3 s window.
        "DownloadTimedOut" => VendorError::Transient {
            code,
            message,
            retry_after: None,
            reason: Reason::MaterialUnavailable,
        },
        "SystemError"
        | "InternalError"
        | "ServiceUnavailable"
        | "Error.InternalError"
        | "Error.SubmitMaterialsError" => VendorError::Transient {
            code,
            message,
            retry_after: None,
            reason: Reason::VendorInternal,
        },
        _ if status >= 500 => VendorError::Transient {
            code,
            message,
            retry_after: None,
            reason: Reason::VendorInternal,
        },
        _ => permanent(Reason::InvalidRequest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_verify_status_is_normalized() {
        let table = [
            (1, Status::Passed, Reason::Verified),
            (2, Status::Failed, Reason::IdentityMismatch),
            (3, Status::Failed, Reason::IdCardMismatch),
            (4, Status::Failed, Reason::IdCardMismatch),
            (5, Status::Failed, Reason::IdExpired),
            (6, Status::Failed, Reason::FaceMismatchIdPhoto),
            (7, Status::Failed, Reason::FaceMismatchAuthority),
            (8, Status::Failed, Reason::IdCardInvalid),
            (9, Status::Failed, Reason::RiskRejected),
            (10, Status::Failed, Reason::RejectedUnspecified),
            (11, Status::Error, Reason::AuthorityUnavailable),
            (-1, Status::Pending, Reason::AwaitingUser),
        ];
        for (code, status, reason) in table {
            let body = format!(
                r#"{{"RequestId":"r","VerifyStatus":{code},"AuthorityComparisionScore":97.5,"VerifyToken":"t"}}"#
            );
            let v = parse_verify(body.as_bytes()).unwrap();
            assert_eq!(
                (v.status, v.reason),
                (status, reason),
                "VerifyStatus {code}"
            );
        }
        assert!(matches!(
            parse_verify(br#"{"VerifyStatus":12}"#),
            Err(VendorError::Transient { .. })
        ));
    }

    #[test]
    fn the_seed_shape_with_strings_and_the_other_spelling_parses() {
        let v = parse_verify(br#"{"RequestId":"r","ResultObject":{"VerifyStatus":"7","AuthorityComparisonScore":"41","VerifyToken":"tok"}}"#).unwrap();
        assert_eq!(
            (v.status, v.reason, v.similarity),
            (Status::Failed, Reason::FaceMismatchAuthority, Some(41.0))
        );
        assert_eq!(v.vendor_ref.as_deref(), Some("tok"));
        assert!(parse_verify(b"{}").is_err());
    }

    #[test]
    fn a_signature_refusal_never_carries_the_parameters_it_quotes() {
        let body = r#"{"Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&IdCardNumber%3D110105194912310021"}"#;
        let e = parse_error(400, body.as_bytes(), None).unwrap_err();
        let VendorError::Permanent {
            message, reason, ..
        } = e
        else {
            panic!("not permanent")
        };
        assert_eq!(reason, Reason::AuthFailed);
        assert!(
            !message.contains("110105") && message.contains("not matched"),
            "{message}"
        );
    }

    #[test]
    fn errors_are_classified() {
        let e = |status, code: &str| {
            parse_error(
                status,
                format!(r#"{{"RequestId":"r","Code":"{code}","Message":"m"}}"#).as_bytes(),
                None,
            )
        };
        for code in ["Throttling", "Throttling.User", "Throttling.Api"] {
            assert!(
                matches!(e(400, code), Err(VendorError::Throttled { .. })),
                "{code}"
            );
        }
        match parse_error(400, br#"{"Code":"Throttling.User"}"#, Some("1500")) {
            Err(VendorError::Throttled { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_millis(1500)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e(435, "NoFaceDetected").unwrap().reason,
            Reason::ImageQuality
        );
        for (status, code) in [
            (400, "SignatureDoesNotMatch"),
            (404, "InvalidAccessKeyId.NotFound"),
        ] {
            assert!(
                matches!(
                    e(status, code),
                    Err(VendorError::Permanent {
                        reason: Reason::AuthFailed,
                        ..
                    })
                ),
                "{code}"
            );
        }
        for (status, code) in [
            (403, "NoPermission"),
            (410, "NoSubscribeService"),
            (412, "InDebt"),
            (403, "Forbidden"),
        ] {
            assert!(
                matches!(
                    e(status, code),
                    Err(VendorError::Permanent {
                        reason: Reason::AccountBlocked,
                        ..
                    })
                ),
                "{code}"
            );
        }
        for (status, code) in [
            (400, "ParameterIsNull"),
            (401, "InvalidParameter"),
            (421, "ResourcesTooLarge"),
            (400, "MissingParameter"),
        ] {
            assert!(
                matches!(
                    e(status, code),
                    Err(VendorError::Permanent {
                        reason: Reason::InvalidRequest,
                        ..
                    })
                ),
                "{code}"
            );
        }
        for (status, code) in [
            (422, "DownloadTimedOut"),
            (500, "SystemError"),
            (500, "InternalError"),
            (503, "ServiceUnavailable"),
        ] {
            assert!(
                matches!(e(status, code), Err(VendorError::Transient { .. })),
                "{code}"
            );
        }
        assert!(matches!(
            parse_error(502, b"<html>", None),
            Err(VendorError::Transient { .. })
        ));
    }
}
