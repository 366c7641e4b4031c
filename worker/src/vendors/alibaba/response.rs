//! Cloudauth answers → verdicts or classified errors, by looking codes up in Alibaba's table
//! (`kyc_schemas::codes::alibaba`, rendered in `docs/outcomes.md`).
//!
//! The SDKs read `VerifyStatus`, scores and `VerifyToken` at the top level of the body; the
//! seed documentation wraps them in `ResultObject` and writes numbers as strings. Both shapes
//! and both spellings of the score (`AuthorityComparisionScore`, sic, and
//! `AuthorityComparisonScore`) are accepted.

use std::time::Duration;

use kyc_schemas::codes::alibaba::{CODE, STATUS_CODE, TABLE, VERIFY_STATUS, VERIFY_STATUS_LATE};
use kyc_schemas::codes::{find, CodeRow};
use kyc_schemas::{Reason, Status};
use serde_json::Value;

use crate::vendors::classify::classify;
use crate::vendors::{VendorError, Verdict};

fn row(field: &str, code: &str) -> &'static CodeRow {
    find(TABLE, field, code, "").expect("the Alibaba table has an `other` row for each field")
}

/// What a `VerifyStatus` of VerifyMaterial (or DescribeVerifyResult) means.
pub fn normalize_verify_status(code: i64) -> (Status, Reason) {
    let r = row(VERIFY_STATUS, &code.to_string());
    (r.status, r.reason)
}

/// DescribeVerifyResult's −1 once the verification can no longer complete.
pub fn abandoned() -> (Status, Reason) {
    let r = row(VERIFY_STATUS_LATE, "-1");
    (r.status, r.reason)
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
    let mut verdict = classify(
        row(VERIFY_STATUS, &code.to_string()),
        code.to_string(),
        String::new(),
        None,
    )?;
    // Status 6 compares the face with the ID-card portrait: its score is
    // IdCardFaceComparisonScore; every other status reports the authority comparison.
    let keys: &[&str] = if code == 6 {
        &["IdCardFaceComparisonScore"]
    } else {
        &["AuthorityComparisionScore", "AuthorityComparisonScore"]
    };
    verdict.similarity = keys.iter().find_map(|k| number(&fields[*k]));
    verdict.vendor_ref = fields["VerifyToken"].as_str().map(str::to_string);
    Ok(verdict)
}

/// What SubmitVerification's `VerifyStatus.StatusCode` means (a different enum from
/// VerifyMaterial's `VerifyStatus`; see `docs/vendors/alibaba.md` A14).
pub fn normalize_status_code(code: i64) -> Option<(Status, Reason)> {
    find(TABLE, STATUS_CODE, &code.to_string(), "").map(|r| (r.status, r.reason))
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
    let r = find(TABLE, STATUS_CODE, &code.to_string(), "")
        .ok_or_else(|| unexpected("unknown StatusCode"))?;
    let message = vs["AuditConclusions"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let mut verdict = classify(
        r,
        code.to_string(),
        message.unwrap_or_else(|| {
            if code == -1 {
                "no submission recorded".into()
            } else {
                String::new()
            }
        }),
        None,
    )?;
    verdict.similarity = ["SimilarityScore", "MaterialScore"]
        .iter()
        .find_map(|k| number(&vs[*k]));
    Ok(verdict)
}

/// The row of an error answer: any answer with `x-acs-retry-after` is a throttle (the Tea
/// SDK's rule); else its `Code`; else its HTTP status.
fn error_row(status: u16, code: Option<&str>, retry_after: bool) -> &'static CodeRow {
    if retry_after {
        return row("x-acs-retry-after header", "*");
    }
    code.and_then(|c| find(TABLE, CODE, c, ""))
        .filter(|r| r.code != "other")
        .unwrap_or_else(|| row(CODE, if status >= 500 { "5xx" } else { "other" }))
}

/// What a non-200 answer means. `retry_after_ms` is the `x-acs-retry-after` header.
pub fn parse_error(
    status: u16,
    body: &[u8],
    retry_after_ms: Option<&str>,
) -> Result<Verdict, VendorError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let given = v["Code"].as_str();
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
    let r = error_row(status, given, retry_after.is_some());
    let code = given
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}"));
    classify(r, code, message, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendors::classify::class_of;

    /// Every row of the table, sent as the vendor would send it, classifies as the row says.
    #[test]
    fn every_row_of_the_alibaba_table_is_what_the_parser_does() {
        for r in TABLE {
            let got = match (r.field, r.code) {
                (VERIFY_STATUS, "other") => parse_verify(br#"{"VerifyStatus":10}"#),
                (VERIFY_STATUS, c) => parse_verify(format!(r#"{{"VerifyStatus":{c}}}"#).as_bytes()),
                // The window is the client's decision; the row is what it picks.
                (VERIFY_STATUS_LATE, _) => Ok(Verdict::of(abandoned().0, abandoned().1)),
                (STATUS_CODE, c) => parse_submit(
                    format!(r#"{{"Data":{{"VerifyStatus":{{"StatusCode":{c}}}}}}}"#).as_bytes(),
                ),
                ("x-acs-retry-after header", _) => {
                    parse_error(400, br#"{"Code":"Anything"}"#, Some("250"))
                }
                (CODE, "5xx") => parse_error(502, br#"{"Code":"Gateway.Oops"}"#, None),
                (CODE, "other") => parse_error(400, br#"{"Code":"No.Such.Code"}"#, None),
                (CODE, c) => parse_error(
                    r.http.unwrap(),
                    serde_json::json!({"Code": c, "Message": r.message})
                        .to_string()
                        .as_bytes(),
                    None,
                ),
                (f, c) => panic!("no test input for {f} {c}"),
            };
            assert_eq!(
                class_of(&got),
                (r.status, r.reason, r.retry),
                "{} {}",
                r.field,
                r.code
            );
        }
    }

    /// VerifyMaterial seed, 返回数据: `IdCardFaceComparisonScore` compares the face with the
    /// ID-card portrait, the score status 6 (人脸与身份证头像不一致) is about.
    #[test]
    fn status_6_reports_the_id_card_face_score_as_the_seed_defines_it() {
        let body = br#"{"RequestId":"r","VerifyStatus":6,"AuthorityComparisionScore":97,"IdCardFaceComparisonScore":35,"VerifyToken":"t"}"#;
        let v = parse_verify(body).unwrap();
        assert_eq!(
            (v.reason, v.similarity),
            (Reason::FaceMismatchIdPhoto, Some(35.0))
        );
        let seed = br#"{"ResultObject":{"VerifyStatus":"6","AuthorityComparisionScore":"97","IdCardFaceComparisonScore":"35"}}"#;
        assert_eq!(parse_verify(seed).unwrap().similarity, Some(35.0));
        let seven =
            br#"{"VerifyStatus":7,"AuthorityComparisionScore":41,"IdCardFaceComparisonScore":97}"#;
        assert_eq!(parse_verify(seven).unwrap().similarity, Some(41.0));
    }

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
