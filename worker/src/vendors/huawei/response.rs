//! IVS answers → verdicts or classified errors, by looking codes up in Huawei's table
//! (`kyc_schemas::codes::huawei`, rendered in `docs/outcomes.md`). Also reads the answer's
//! `idcard_result` and `video_result` (seed tables 5-2, 5-3).

use std::time::Duration;

use kyc_schemas::codes::{find, huawei::TABLE, CodeRow};
use kyc_schemas::Reason;
use serde::Deserialize;

use crate::vendors::classify::classify;
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
    /// The ID-card image's OCR (tables 4-10, 4-31, 4-66, 5-2): PII, so it is read (an answer
    /// of another shape is refused) and never kept.
    #[allow(dead_code)]
    idcard_result: Option<IdcardResult>,
    /// The video's liveness (tables 4-32, 4-44, 5-3).
    video_result: Option<VideoResult>,
}

/// Table 5-2. Every field is optional in practice (the OCR may miss some).
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Parsed to validate the answer's shape; PII, so nothing is kept.
pub(crate) struct IdcardResult {
    pub(crate) name: Option<String>,
    pub(crate) number: Option<String>,
    pub(crate) valid_to: Option<String>,
}

/// Table 5-3: `alive`, `actions` (table 5-4) and `picture` (the largest face found, base64:
/// a face image, so it is never stored).
#[derive(Debug, Deserialize)]
pub(crate) struct VideoResult {
    pub(crate) alive: Option<bool>,
    #[serde(default)]
    pub(crate) actions: Vec<ActionResult>,
    /// A face image: read, never kept (no image leaves the vendor exchange).
    #[allow(dead_code)]
    pub(crate) picture: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionResult {
    pub(crate) confidence: Option<f64>,
    #[allow(dead_code)] // The action code, 1–5; the liveness score needs only the confidence.
    pub(crate) action: Option<i64>,
}

impl VideoResult {
    /// 0–100: the weakest action's confidence (0–1) when alive, 0 when not.
    pub(crate) fn liveness_score(&self) -> Option<f64> {
        if self.alive == Some(false) {
            return Some(0.0);
        }
        self.actions
            .iter()
            .filter_map(|a| a.confidence)
            .reduce(f64::min)
            .map(|c| c * 100.0)
    }
}

fn unexpected(what: &str) -> VendorError {
    VendorError::Permanent {
        code: "unexpected_response".into(),
        message: what.into(),
        reason: Reason::UnexpectedResponse,
    }
}

/// Parses a 200 answer. `detail` says whether similarity is on the 0–1000 scale.
pub(crate) fn parse_success(body: &[u8], detail: bool) -> Result<Verdict, VendorError> {
    let parsed: Body = serde_json::from_slice(body)
        .map_err(|_| unexpected("200 body is not the documented JSON"))?;
    let item = parsed
        .result
        .and_then(|r| r.resp_data.into_iter().next())
        .ok_or_else(|| unexpected("200 body has no result.resp_data[0]"))?;
    let code = item
        .verification_code
        .ok_or_else(|| unexpected("resp_data[0] has no verification_code"))?;
    let row = find(TABLE, "verification_code", &code.to_string(), "")
        .filter(|r| r.code != "other")
        .ok_or_else(|| unexpected("unknown verification_code"))?;
    let mut verdict = classify(
        row,
        code.to_string(),
        item.verification_message.unwrap_or_default(),
        None,
    )?;
    verdict.similarity = item
        .similarity
        .and_then(|v| match v {
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
            serde_json::Value::Number(n) => n.as_f64(),
            _ => None,
        })
        .map(|s| if detail { s / 10.0 } else { s });
    verdict.liveness_score = item
        .video_result
        .as_ref()
        .and_then(VideoResult::liveness_score);
    Ok(verdict)
}

/// The row of a non-200 answer: its documented code, else its HTTP status's row, else
/// `other`.
fn error_row(status: u16, code: Option<&str>, message: &str) -> &'static CodeRow {
    let known = code
        .and_then(|c| find(TABLE, "error_code", c, message))
        .filter(|r| r.code != "other");
    let by_status = || match status {
        401 | 403 | 408 | 413 | 429 => find(TABLE, "HTTP status", &status.to_string(), ""),
        s if s >= 500 => find(TABLE, "HTTP status", "5xx", ""),
        _ => None,
    };
    known
        .or_else(by_status)
        .or_else(|| find(TABLE, "error_code", "other", ""))
        .expect("the Huawei table has an `other` row")
}

/// What a non-200 answer means: a verdict after all (the vendor judged the material), or an
/// error to retry or not, as the table says.
pub(crate) fn parse_error(
    status: u16,
    body: &[u8],
    retry_after: Option<&str>,
) -> Result<Verdict, VendorError> {
    let parsed: Option<Body> = serde_json::from_slice(body).ok();
    let given = parsed.as_ref().and_then(|b| b.error_code.clone());
    let message = parsed
        .and_then(|b| b.error_msg)
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect::<String>();
    let row = error_row(status, given.as_deref(), &message);
    let mut retry_after = retry_after.and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    if row.reason == Reason::Throttled {
        // Huawei's FAQ: wait 2–5 s when throttled and no Retry-After is given.
        retry_after = retry_after.or(Some(Duration::from_secs(2)));
    }
    let code = given.unwrap_or_else(|| format!("HTTP {status}"));
    classify(row, code, message, retry_after)
}

/// What an IAM token refusal means (table rows "IAM status").
pub(crate) fn iam_error(status: u16) -> VendorError {
    let code = format!("IAM HTTP {status}");
    let row = find(
        TABLE,
        "IAM status",
        if status >= 500 { "5xx" } else { "400/401/403" },
        "",
    )
    .expect("the Huawei table has IAM rows");
    let message = if status >= 500 {
        "IAM token endpoint failed"
    } else {
        "IAM refused the credentials"
    };
    classify(row, code, message.into(), None).expect_err("IAM rows are errors")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendors::classify::class_of;
    use kyc_schemas::Status;

    /// Every row of the table, sent as the vendor would send it, classifies as the row says.
    #[test]
    fn every_row_of_the_huawei_table_is_what_the_parser_does() {
        for row in TABLE {
            let message = match row.when {
                Some(w) => format!("Incorrect IAM authentication information: {w} expires"),
                None => row.message.to_string(),
            };
            let got = match (row.field, row.code) {
                ("verification_code", "other") => parse_success(&ok_body(4242, "0"), false),
                ("verification_code", c) => parse_success(&ok_body(c.parse().unwrap(), "0"), false),
                ("error_code", "other") => parse_error(400, br#"{"error_code":"IVS.9999"}"#, None),
                ("error_code", c) => {
                    let body = serde_json::json!({"error_code": c, "error_msg": message});
                    parse_error(row.http.unwrap(), body.to_string().as_bytes(), None)
                }
                ("HTTP status", "5xx") => parse_error(503, b"<html>", None),
                ("HTTP status", c) => parse_error(c.parse().unwrap(), b"", None),
                ("IAM status", "5xx") => Err(iam_error(503)),
                ("IAM status", _) => Err(iam_error(401)),
                (f, c) => panic!("no test input for {f} {c}"),
            };
            assert_eq!(
                class_of(&got),
                (row.status, row.reason, row.retry),
                "{} {} {:?}",
                row.field,
                row.code,
                row.when
            );
        }
    }

    /// Seed §4.1.3's response example: `video_result` with three actions at 0.823 and a
    /// `picture`, `idcard_result` with the OCR'd card (tables 4-30–4-33).
    #[test]
    fn the_seed_video_and_idcard_example_parses_as_tables_4_30_to_4_33_say() {
        let body = r#"{"meta":{"uuid":"user_defined"},"result":{"service_name":"ivs-standard","count":1,"resp_data":[{
            "verification_result":"valid","verification_message":"Successful certification","verification_code":1000,"similarity":"65",
            "idcard_result":{"name":"张三","sex":"男","birth":"2000-03-06","ethnicity":"汉","address":"XX省XX市XX区XX街道XX号","number":"44*****07","issue":"XX省XX市XX区XX派出所","valid_from":"2004-08-26","valid_to":"2034-08-26"},
            "video_result":{"alive":true,"actions":[{"confidence":0.823,"action":1},{"confidence":0.9,"action":3},{"confidence":0.95,"action":5}],"picture":"/9j/4AAQSkZJRgABAQEAYABgAAD/2w..."}}]}}"#;
        let v = parse_success(body.as_bytes(), false).unwrap();
        assert_eq!((v.status, v.similarity), (Status::Passed, Some(65.0)));
        assert!((v.liveness_score.unwrap() - 82.3).abs() < 1e-9);
        // The picture is a face: nothing of it reaches the verdict.
        assert!(!format!("{v:?}").contains("/9j/"));
        let dead = br#"{"result":{"resp_data":[{"verification_code":1000,"video_result":{"alive":false,"actions":[]}}]}}"#;
        assert_eq!(
            parse_success(dead, false).unwrap().liveness_score,
            Some(0.0)
        );
    }

    /// Table 6-1: IVS.0013 is "Token异常" whatever its message says.
    #[test]
    fn ivs_0013_asks_for_a_new_token_whatever_its_message() {
        for msg in ["The authentication token is abnormal.", "abnormal", ""] {
            let body = serde_json::json!({"error_code": "IVS.0013", "error_msg": msg});
            assert!(matches!(
                parse_error(400, body.to_string().as_bytes(), None),
                Err(VendorError::AuthExpired { .. })
            ));
        }
    }

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
