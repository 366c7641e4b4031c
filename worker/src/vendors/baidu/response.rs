//! faceprint answers → verdicts, charges or classified errors: Baidu's rows of
//! `docs/outcomes.md`.
//!
//! Two kinds of code, kept apart (`docs/vendors/baidu.md` B2): `error_code` / `error_msg` say
//! the *request* failed (auth, quota, parameters); `code` / `message` (detail, simple) and an
//! attempt's `code` (getall) say the *person's verification* failed.

use kyc_schemas::codes::baidu::{ATTEMPT_CODE, ERROR_CODE, GETALL_FIELD, TABLE};
use kyc_schemas::codes::{find, CodeRow};
use kyc_schemas::{Reason, Status};
use kyc_store::ChargeEntry;
use serde_json::Value;

use crate::vendors::classify::classify;
use crate::vendors::{VendorError, Verdict};

/// The message Baidu gives for an unknown, expired or used-up verify_token (no code is
/// documented for it).
pub const TOKEN_INVALID: &str = "Token无效或者已过期";

fn attempt_row(code: &str, message: &str) -> &'static CodeRow {
    find(TABLE, ATTEMPT_CODE, code, message).expect("the Baidu table has an `other` attempt row")
}

fn getall_row(fact: &str) -> &'static CodeRow {
    find(TABLE, GETALL_FIELD, fact, "").expect("the Baidu table has the getall rows")
}

/// What an attempt's `code` (and `message`) mean.
pub fn normalize_attempt_code(code: &str, message: &str) -> (Status, Reason) {
    let r = attempt_row(code, message);
    (r.status, r.reason)
}

/// A JSON value that may be a number or a string (`"0"`, `93.78`, `""`).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The request-level error in an answer (`error_code` ≠ 0), classified; `None` if there is
/// none.
pub fn api_error(v: &Value) -> Option<VendorError> {
    let code = number(&v["error_code"])
        .map(|c| c as i64)
        .filter(|c| *c != 0)?;
    let message: String = text(&v["error_msg"]).chars().take(300).collect();
    let row = find(TABLE, ERROR_CODE, &code.to_string(), &message)
        .expect("the Baidu table has an `other` error_code row");
    classify(row, code.to_string(), message, None).err()
}

fn parse_json(body: &[u8]) -> Result<Value, VendorError> {
    serde_json::from_slice(body).map_err(|_| VendorError::Permanent {
        code: "unexpected_response".into(),
        message: "body is not JSON".into(),
        reason: Reason::UnexpectedResponse,
    })
}

/// Checks an answer for a request error, else hands back the parsed body.
pub fn checked(body: &[u8]) -> Result<Value, VendorError> {
    let v = parse_json(body)?;
    match api_error(&v) {
        Some(e) => Err(e),
        None => Ok(v),
    }
}

/// `verifyToken/generate` → the verify_token.
pub fn parse_generate(body: &[u8]) -> Result<String, VendorError> {
    let v = checked(body)?;
    v["result"]["verify_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or(VendorError::Permanent {
            code: "unexpected_response".into(),
            message: "no verify_token in the answer".into(),
            reason: Reason::UnexpectedResponse,
        })
}

/// An acknowledgement (`idcard/submit`, `uploadMatchImage`, `result/stat`,
/// `result/media/query`): only request errors matter.
pub fn parse_ack(body: &[u8]) -> Result<(), VendorError> {
    let v = checked(body)?;
    if v["success"] == Value::Bool(false) {
        return Err(VendorError::Permanent {
            code: text(&v["code"]),
            message: text(&v["message"]),
            reason: Reason::UnexpectedResponse,
        });
    }
    Ok(())
}

fn verdict(status: Status, reason: Reason) -> Verdict {
    Verdict::of(status, reason)
}

/// `result/detail` and `result/simple`: `success` true = passed; false with `code` = the
/// verification failed; false without a code = the person has not finished (B5).
pub fn parse_detail(body: &[u8]) -> Result<Verdict, VendorError> {
    let v = checked(body)?;
    if v["success"] == Value::Bool(true) {
        let r = &v["result"]["verify_result"];
        return Ok(Verdict {
            vendor_code: Some("0".into()),
            similarity: number(&r["score"]).filter(|s| *s > 0.0),
            // detail's liveness is 0–1; outcomes are 0–100.
            liveness_score: number(&r["liveness_score"])
                .filter(|s| *s > 0.0)
                .map(|s| s * 100.0),
            ..verdict(Status::Passed, Reason::Verified)
        });
    }
    match v.get("code").filter(|c| !c.is_null()) {
        None => {
            let r = getall_row("success:false, no code");
            Ok(verdict(r.status, r.reason))
        }
        Some(code) => {
            let (code, message) = (text(code), text(&v["message"]));
            let (status, reason) = normalize_attempt_code(&code, &message);
            Ok(Verdict {
                vendor_code: Some(code),
                vendor_message: Some(message),
                ..verdict(status, reason)
            })
        }
    }
}

/// The UTC day of a vendor time (`2023-6-20 18:00:00`, Beijing time, not zero-padded).
pub fn utc_day(vendor_time: &str) -> Option<String> {
    let t = chrono::NaiveDateTime::parse_from_str(vendor_time.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    Some(
        (t - chrono::Duration::hours(8))
            .format("%Y-%m-%d")
            .to_string(),
    )
}

/// getall's top-level totals must agree with its attempts (seed §二.5: `verify_count` =
/// number of `verify_result` objects; `*_charge_count` = the attempts charged for that
/// product): the per-attempt entries are what the billing tables record, so a disagreement
/// means one of the two is wrong and a person must look.
fn check_totals(r: &Value, attempts: &[&Value]) -> Result<(), VendorError> {
    let count = |pred: &dyn Fn(&Value) -> bool| attempts.iter().filter(|a| pred(a)).count() as i64;
    let charged = |ty: &str| {
        let ty = ty.to_string();
        count(&move |a: &Value| {
            a["is_charged"] == Value::Bool(true)
                && a["charge_type"].as_str().unwrap_or("verify") == ty
        })
    };
    let checks = [
        ("verify_count", attempts.len() as i64),
        ("verify_charge_count", charged("verify")),
        ("match_charge_count", charged("match")),
        (
            "ocr_charge_count",
            count(&|a: &Value| a["is_ocr_charge"] == Value::Bool(true)),
        ),
    ];
    let wrong: Vec<String> = checks
        .iter()
        .filter_map(|(field, want)| {
            let got = number(&r[*field]).map(|n| n as i64)?;
            (got != *want).then(|| format!("{field} {got} ≠ {want} from the attempts"))
        })
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    Err(VendorError::Permanent {
        code: "unexpected_response".into(),
        message: format!("result/getall totals disagree: {}", wrong.join(", ")),
        reason: Reason::UnexpectedResponse,
    })
}

/// `result/getall`: the outcome is the last attempt (highest `order`), the charges are every
/// attempt's. `verify_count` 0: nobody has verified yet.
pub fn parse_getall(body: &[u8], verify_token: &str) -> Result<Verdict, VendorError> {
    let v = checked(body)?;
    let r = &v["result"];
    let mut attempts: Vec<&Value> = r["verify_result"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    attempts.sort_by_key(|a| number(&a["order"]).unwrap_or(0.0) as i64);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut charges = Vec::new();
    for (i, a) in attempts.iter().enumerate() {
        let order = number(&a["order"]).map_or(i as u32 + 1, |o| o as u32);
        let verify_time = text(&a["verify_time"]);
        let day_of = |t: &str| {
            utc_day(t)
                .or_else(|| utc_day(&verify_time))
                .unwrap_or(today.clone())
        };
        let charge_time = text(&a["charge_time"]);
        let product = match a["charge_type"].as_str() {
            Some("match") => "faceprint-match",
            _ => "faceprint-verify",
        };
        charges.push(ChargeEntry {
            vendor: "baidu".into(),
            reference: verify_token.into(),
            attempt: order,
            product: product.into(),
            charged: a["is_charged"] == Value::Bool(true),
            calls: 1,
            day: day_of(&charge_time),
            charge_time,
        });
        if a.get("is_ocr_charge").is_some() {
            let ocr_time = text(&a["ocr_charge_time"]);
            charges.push(ChargeEntry {
                vendor: "baidu".into(),
                reference: verify_token.into(),
                attempt: order,
                product: "faceprint-ocr".into(),
                charged: a["is_ocr_charge"] == Value::Bool(true),
                calls: number(&a["ocr_count"]).map_or(0, |c| c as u32),
                day: day_of(&ocr_time),
                charge_time: ocr_time,
            });
        }
    }
    check_totals(r, &attempts)?;
    let Some(last) = attempts.last() else {
        let none = getall_row("verify_count 0");
        return Ok(Verdict {
            charges,
            ..verdict(none.status, none.reason)
        });
    };
    let detail = &last["verify_detail"];
    let score = number(&detail["score"]);
    let threshold = number(&detail["threshold"]);
    let code = text(&last["code"]);
    let message = text(&last["message"]);
    let matches = last["charge_type"].as_str() == Some("match");
    let fact = |f: &str| {
        let r = getall_row(f);
        (r.status, r.reason)
    };
    let (status, reason) = if last["is_verify_passed"] == Value::Bool(true) {
        normalize_attempt_code("0", "")
    } else if matches!(detail["risk_level"].as_str(), Some("1" | "2")) {
        fact("risk_level 1|2")
    } else if matches!((score, threshold), (Some(s), Some(t)) if s < t) {
        fact(if matches {
            "score < threshold, match"
        } else {
            "score < threshold"
        })
    } else {
        normalize_attempt_code(&code, &message)
    };
    Ok(Verdict {
        status,
        reason,
        vendor_code: Some(code),
        vendor_message: (!message.is_empty()).then_some(message),
        similarity: score,
        // getall's value is already 0–100 ("reserved, currently 0": kept only when set).
        liveness_score: number(&detail["liveness_score"]).filter(|s| *s > 0.0),
        vendor_ref: None,
        charges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_error_code_is_classified() {
        let table: [(i64, &str); 21] = [
            (100, "auth"),
            (110, "auth"),
            (111, "auth"),
            (14, "auth_failed"),
            (6, "account_blocked"),
            (4, "throttled"),
            (18, "throttled"),
            (17, "quota_exhausted"),
            (19, "quota_exhausted"),
            (1, "vendor_internal"),
            (2, "vendor_internal"),
            (282000, "vendor_internal"),
            (283512, "vendor_internal"),
            (216100, "invalid_request"),
            (216101, "invalid_request"),
            (216102, "invalid_request"),
            (283513, "invalid_request"),
            (283435, "invalid_request"),
            (283520, "invalid_request"),
            (999999, "unexpected_response"),
            (0, "none"),
        ];
        for (code, want) in table {
            let v = serde_json::json!({"error_code": code, "error_msg": "x"});
            let got = match api_error(&v) {
                None => "none",
                Some(VendorError::AuthExpired { .. }) => "auth",
                Some(VendorError::Throttled { .. }) => "throttled",
                Some(e) => e.final_reason().as_str(),
            };
            assert_eq!(got, want, "error_code {code}");
        }
        let v = serde_json::json!({"error_code": 216100, "error_msg": TOKEN_INVALID});
        assert_eq!(
            api_error(&v).unwrap().final_reason(),
            Reason::SessionExpired
        );
    }

    /// Independent expectations, written from `docs/outcomes.md`'s reading of each code (not
    /// read back from the table): a wrong row in the table fails here.
    #[test]
    fn attempt_codes_mean_what_the_outcomes_document_says() {
        let expected = [
            ("0", "", Status::Passed, Reason::Verified),
            (
                "12345",
                "身份证姓名不匹配",
                Status::Failed,
                Reason::IdentityMismatch,
            ),
            ("222360", "", Status::Failed, Reason::IdentityMismatch),
            ("222354", "", Status::NotFound, Reason::NoRecord),
            ("222355", "", Status::Error, Reason::IdPhotoMissing),
            ("216607", "", Status::Error, Reason::IdPhotoMissing),
            ("222356", "", Status::Failed, Reason::ImageQuality),
            ("216605", "", Status::Failed, Reason::ImageQuality),
            ("216606", "", Status::Failed, Reason::ImageQuality),
            ("223120", "", Status::Failed, Reason::LivenessFailed),
            ("222361", "", Status::Error, Reason::AuthorityUnavailable),
            ("12345", "?", Status::Failed, Reason::RejectedUnspecified),
        ];
        for (code, message, status, reason) in expected {
            assert_eq!(
                normalize_attempt_code(code, message),
                (status, reason),
                "{code} {message}"
            );
        }
    }

    /// Every row of the table, sent as the vendor would send it, classifies as the row says.
    #[test]
    fn every_row_of_the_baidu_table_is_what_the_parser_does() {
        use crate::vendors::classify::class_of;
        use kyc_schemas::codes::Retry;
        let attempt = |detail: Value, code: &str, message: &str, ty: &str| {
            let body = serde_json::json!({"success": true, "result": {"verify_count": 1, "verify_result": [
                {"order": 1, "is_verify_passed": code == "0", "code": code, "message": message,
                 "verify_time": "", "is_charged": false, "charge_type": ty, "charge_time": "",
                 "verify_detail": detail}]}});
            parse_getall(body.to_string().as_bytes(), "t")
        };
        for r in TABLE {
            let got = match (r.field, r.code) {
                (GETALL_FIELD, "verify_count 0") => parse_getall(
                    br#"{"success":true,"result":{"verify_count":0,"verify_result":[]}}"#,
                    "t",
                ),
                (GETALL_FIELD, "risk_level 1|2") => attempt(
                    serde_json::json!({"score": 90, "threshold": 80, "risk_level": "2"}),
                    "1",
                    "",
                    "verify",
                ),
                (GETALL_FIELD, "score < threshold") => attempt(
                    serde_json::json!({"score": 45, "threshold": 80}),
                    "1",
                    "",
                    "verify",
                ),
                (GETALL_FIELD, "score < threshold, match") => attempt(
                    serde_json::json!({"score": 45, "threshold": 80}),
                    "1",
                    "",
                    "match",
                ),
                (GETALL_FIELD, _) => parse_detail(br#"{"success":false,"log_id":"1"}"#),
                (ATTEMPT_CODE, c) => {
                    let code = if c == "*" || c == "other" { "54321" } else { c };
                    let message = r.when.unwrap_or_default();
                    let detail = parse_detail(
                        serde_json::json!({"success": code == "0", "code": code, "message": message})
                            .to_string()
                            .as_bytes(),
                    );
                    let getall = attempt(serde_json::json!({}), code, message, "verify");
                    assert_eq!(class_of(&detail), class_of(&getall), "{c}");
                    getall
                }
                ("error_code, 5 in a row over 60 s", _) => {
                    // The client's run of 18s decides; the row is what it writes.
                    Err(VendorError::Permanent {
                        code: "18".into(),
                        message: String::new(),
                        reason: Reason::QuotaExhausted,
                    })
                }
                (ERROR_CODE, c) => {
                    let code = if c == "*" {
                        "216100"
                    } else if c == "other" {
                        "999999"
                    } else {
                        c
                    };
                    let v = serde_json::json!({"error_code": code.parse::<i64>().unwrap(),
                        "error_msg": r.when.unwrap_or(r.message)});
                    Err(api_error(&v).expect("an error"))
                }
                ("HTTP status", _) | ("OAuth error", _) => continue, // client.rs, tested there
                (f, c) => panic!("no test input for {f} {c}"),
            };
            assert_eq!(
                class_of(&got),
                (r.status, r.reason, r.retry),
                "{} {}",
                r.field,
                r.code
            );
            assert!(r.retry != Retry::RefreshAuth || r.field == ERROR_CODE);
        }
    }

    /// Seed §二.5: `verify_count` says how many `verify_result` objects follow and the
    /// `*_charge_count` totals count the charged attempts; a getall that contradicts itself is
    /// not taken at its word.
    #[test]
    fn getall_totals_that_disagree_with_the_attempts_are_refused() {
        let body = |verify_count: i64, verify_charge_count: i64| {
            serde_json::json!({"success": true, "result": {
                "verify_count": verify_count, "ocr_charge_count": 0, "match_charge_count": 0,
                "verify_charge_count": verify_charge_count,
                "verify_result": [{"order": 1, "is_verify_passed": true, "code": "0", "message": "",
                    "verify_time": "2026-1-2 7:05:09", "is_charged": true, "charge_type": "verify",
                    "charge_time": "2026-1-2 7:05:09", "verify_detail": {"score": 93.0, "threshold": 80}}]}})
            .to_string()
        };
        assert_eq!(
            parse_getall(body(1, 1).as_bytes(), "t").unwrap().status,
            Status::Passed
        );
        for (n, c) in [(2, 1), (1, 0), (1, 2)] {
            let e = parse_getall(body(n, c).as_bytes(), "t").unwrap_err();
            assert_eq!(e.final_reason(), Reason::UnexpectedResponse, "{n} {c}");
        }
    }

    #[test]
    fn getall_takes_the_last_attempt_and_every_charge() {
        let body = serde_json::json!({"success": true, "log_id": "1", "result": {
        "verify_count": 2, "ocr_charge_count": 1, "match_charge_count": 0, "verify_charge_count": 2,
        "verify_result": [
            {"order": 2, "is_verify_passed": true, "code": "0", "message": "", "verify_time": "2026-1-2 7:05:09",
             "is_charged": true, "charge_type": "verify", "charge_time": "2026-1-2 7:05:09",
             "is_ocr_charge": true, "ocr_charge_time": "2026-1-2 7:05:09", "ocr_count": 2,
             "verify_detail": {"score": 93.78, "threshold": 80, "liveness_score": 0}},
            {"order": 1, "is_verify_passed": false, "code": "990902", "message": "m", "verify_time": "2026-1-2 9:00:00",
             "is_charged": true, "charge_type": "verify", "charge_time": "2026-1-2 9:00:00",
             "verify_detail": {"score": 45.0, "threshold": 80}}
        ]}});
        let v = parse_getall(body.to_string().as_bytes(), "tok").unwrap();
        assert_eq!((v.status, v.reason), (Status::Passed, Reason::Verified));
        assert_eq!(v.similarity, Some(93.78));
        assert_eq!(v.charges.len(), 3);
        let ocr = v
            .charges
            .iter()
            .find(|c| c.product == "faceprint-ocr")
            .unwrap();
        assert_eq!((ocr.calls, ocr.charged, ocr.attempt), (2, true, 2));
        // 07:05 Beijing time is the previous day in UTC.
        assert_eq!(ocr.day, "2026-01-01");
        assert_eq!(utc_day("2026-1-2 9:00:00").as_deref(), Some("2026-01-02"));
    }

    #[test]
    fn getall_failures_use_risk_then_score_then_code() {
        let attempt = |detail: Value, code: &str, ty: &str| {
            serde_json::json!({"success": true, "result": {"verify_count": 1, "verify_result": [
                {"order": 1, "is_verify_passed": false, "code": code, "message": "", "verify_time": "",
                 "is_charged": false, "charge_type": ty, "charge_time": "", "verify_detail": detail}]}})
            .to_string()
        };
        let risk = attempt(
            serde_json::json!({"score": 90, "threshold": 80, "risk_level": "1"}),
            "1",
            "verify",
        );
        assert_eq!(
            parse_getall(risk.as_bytes(), "t").unwrap().reason,
            Reason::RiskRejected
        );
        let low = attempt(
            serde_json::json!({"score": "45", "threshold": 80}),
            "77",
            "match",
        );
        assert_eq!(
            parse_getall(low.as_bytes(), "t").unwrap().reason,
            Reason::FaceMismatch
        );
        let none = attempt(
            serde_json::json!({"score": "", "threshold": 80}),
            "222354",
            "verify",
        );
        let v = parse_getall(none.as_bytes(), "t").unwrap();
        assert_eq!((v.status, v.reason), (Status::NotFound, Reason::NoRecord));
        let pending = r#"{"success":true,"result":{"verify_count":0,"verify_result":[]}}"#;
        assert_eq!(
            parse_getall(pending.as_bytes(), "t").unwrap().status,
            Status::Pending
        );
    }

    #[test]
    fn detail_distinguishes_passed_failed_and_not_finished() {
        let passed = r#"{"success":true,"result":{"verify_result":{"liveness_score":0.97,"score":93.78,"spoofing":0}}}"#;
        let v = parse_detail(passed.as_bytes()).unwrap();
        assert_eq!((v.status, v.similarity), (Status::Passed, Some(93.78)));
        assert!((v.liveness_score.unwrap() - 97.0).abs() < 1e-9);
        let failed = r#"{"success":false,"code":222360,"message":"身份证姓名不匹配"}"#;
        assert_eq!(
            parse_detail(failed.as_bytes()).unwrap().reason,
            Reason::IdentityMismatch
        );
        let waiting = r#"{"success":false,"log_id":"1"}"#;
        assert_eq!(
            parse_detail(waiting.as_bytes()).unwrap().status,
            Status::Pending
        );
        let quota = r#"{"error_code":18,"error_msg":"Open api qps request limit reached"}"#;
        assert!(matches!(
            parse_detail(quota.as_bytes()),
            Err(VendorError::Throttled { .. })
        ));
    }
}
