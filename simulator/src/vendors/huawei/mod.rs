//! Huawei Cloud IVS as its SDK sees it: IAM `POST /v3/auth/tokens` (201 + `X-Subject-Token`),
//! `POST /v2.0/ivs-standard` and `/v2.0/ivs-idcard-extention` with AK/SK `SDK-HMAC-SHA256`
//! or `X-Auth-Token`, validation with the documented `IVS.00xx` codes, throttling as
//! 429 `APIG.0308`, and answers from the scenario table. Only HTTP 200 is billable.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use kyc_schemas::codes::{huawei::TABLE, CodeRow};

use crate::faults::{self, VendorFaults};
use crate::ledger::{Arrival, Call};
use crate::scenario::{stable_hash, Scenario};
use crate::server::Shared;

mod auth;
mod codes;
mod routes;
mod scenarios;

// The folder's parts see each other through this module; the crate sees only these.
pub(crate) use self::routes::routes;
pub(crate) use self::scenarios::marker;
use self::{auth::*, codes::*, scenarios::*};
#[cfg(test)]
pub(crate) use self::{codes::EMITS, scenarios::VERDICTS};

const VENDOR: &str = "huawei";

/// Accounts the simulated Huawei Cloud knows.
#[derive(Debug, Clone, Default)]
pub struct HuaweiSim {
    /// AK → SK.
    pub ak_sk: Vec<(String, String)>,
    /// (user, password, domain) for IAM password tokens.
    pub users: Vec<(String, String, String)>,
    pub project_id: String,
}

#[cfg(test)]
mod tests {
    use super::routes::*;
    use super::*;

    /// The official SDK's vectors (huaweicloudsdkcore 3.1.219, copied into `tests/vectors/`):
    /// the server's rebuilt canonical request and string to sign equal the SDK's byte for
    /// byte, its signature verifies, and any changed byte of the body does not.
    #[test]
    fn every_official_sdk_vector_verifies_and_a_changed_body_does_not() {
        const VECTORS: &str = include_str!("../../../../tests/vectors/huawei-sdk-hmac-sha256.json");
        let file: Value = serde_json::from_str(VECTORS).unwrap();
        let vectors = file["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), file["count"].as_u64().unwrap() as usize);
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let url = url::Url::parse(v["url"].as_str().unwrap()).unwrap();
            let path_and_query = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            let uri: Uri = path_and_query.parse().unwrap();
            let mut headers = HeaderMap::new();
            for (k, val) in v["headers"].as_object().unwrap() {
                headers.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(val.as_str().unwrap()).unwrap(),
                );
            }
            let method: Method = v["method"].as_str().unwrap().parse().unwrap();
            let date = v["headers"]["X-Sdk-Date"].as_str().unwrap();
            let body = v["body"].as_str().unwrap().as_bytes();
            let signed = v["signed_headers"].as_str().unwrap();
            let rebuilt = rebuild(&method, &uri, &headers, signed, body, date).unwrap();
            assert_eq!(
                rebuilt.canonical,
                v["canonical_request"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                rebuilt.to_sign,
                v["string_to_sign"].as_str().unwrap(),
                "{name}"
            );
            let sk = v["sk"].as_str().unwrap();
            let signature = v["signature"].as_str().unwrap();
            assert!(verify(sk, &rebuilt.to_sign, signature), "{name}");
            let mut tampered = body.to_vec();
            tampered.push(b' ');
            let other = rebuild(&method, &uri, &headers, signed, &tampered, date).unwrap();
            assert!(!verify(sk, &other.to_sign, signature), "{name} tampered");
        }
    }

    #[test]
    fn every_code_the_simulator_emits_is_in_the_huawei_table() {
        for row in EMITS {
            assert!(TABLE.contains(row), "{}", row.code);
            assert!(
                row.http.is_some(),
                "{} has no HTTP status to send",
                row.code
            );
        }
        for code in VERDICTS {
            assert!(
                kyc_schemas::codes::find(TABLE, "verification_code", code, "")
                    .is_some_and(|r| r.code == code),
                "{code}"
            );
        }
    }

    /// Tables 4-26 and 4-39 list actions 1–5 (5: 眨眼, blink).
    #[test]
    fn every_documented_action_is_accepted_and_others_are_not() {
        let item = |actions: &str| {
            json!({"verification_name": "张三", "verification_id": "11010519491231002X",
                   "video": "A".repeat(20 * 1024), "actions": actions})
        };
        for a in ["1", "2", "3", "4", "5", "1,5,3"] {
            assert!(validate(Api::Standard, &item(a)).is_ok(), "{a}");
        }
        for a in ["6", "0", "x"] {
            assert!(validate(Api::Standard, &item(a)).is_err(), "{a}");
        }
    }
}
