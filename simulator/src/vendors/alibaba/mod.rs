//! Alibaba Cloud Cloudauth as its SDKs see it: RPC-style `POST /` (GET too) whose `Action`
//! is `VerifyMaterial`, `DescribeVerifyResult` (2019-03-07) or `SubmitVerification`
//! (2018-09-16); RPC v1 or ACS3 signatures ([`auth`]), stale timestamps and reused nonces
//! refused; errors in the vendor's body (`RequestId`, `HostId`, `Code`, `Message`,
//! `Recommend`) with its non-standard HTTP statuses; throttling as 400 `Throttling.User` with
//! `x-acs-retry-after` (ms). VerifyMaterial downloads the image URLs itself (3 s, 2 MB), as
//! the vendor does. Answers follow `docs/simulator.md`; billable: VerifyMaterial with HTTP
//! 200, SubmitVerification with StatusCode 1 or 2.
// Early returns carry the finished HTTP answer, one per request: boxing buys nothing.
#![allow(clippy::result_large_err)]

pub mod auth;
mod codes;
mod routes;
mod scenarios;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::faults::{self, VendorFaults};
use crate::ledger::{Arrival, Call};
use crate::scenario::Scenario;
use crate::server::Shared;
use crate::vendors::huawei::marker;
use kyc_schemas::codes::alibaba::{CODE, TABLE};

// The folder's parts see each other through this module; the crate sees only `routes`.
use self::auth::{check_auth, form_pairs};
pub(crate) use self::codes::EMITS;
pub(crate) use self::routes::routes;
use self::{routes::*, scenarios::*};

const VENDOR: &str = "alibaba";
/// Timestamps (and nonces) are honoured for 31 minutes (Alibaba's documented window).
const WINDOW_SECS: i64 = 31 * 60;
/// VerifyMaterial's documented download limits.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;
const MAX_SUBMIT_BODY: usize = 8 * 1024 * 1024;

/// Accounts the simulated Alibaba Cloud knows.
#[derive(Debug, Clone, Default)]
pub struct AlibabaSim {
    /// AccessKeyId → AccessKeySecret.
    pub access_keys: Vec<(String, String)>,
    /// Answer VerifyMaterial in the seed document's form (`ResultObject`, values as strings)
    /// instead of the SDKs' (top level, native numbers).
    pub seed_shapes: bool,
    /// CA certificates (PEM) trusted, besides the system's, when downloading image URLs over
    /// https: the CA of a private S3 whose presigned URLs the jobs carry. Never "trust all".
    pub trusted_ca_pem: Option<String>,
}

/// What Alibaba remembers between calls.
#[derive(Debug)]
pub struct AlibabaState {
    /// Nonce → when first seen (ms); a nonce is good once within the window.
    nonces: Mutex<HashMap<String, i64>>,
    /// (BizType, BizId) or (Biz, TicketId) → the last verification, for DescribeVerifyResult.
    results: Mutex<HashMap<(String, String), Recorded>>,
    /// (Biz, TicketId) → last StatusCode, for `Error.DuplicatedTicketId`.
    tickets: Mutex<HashMap<(String, String), i64>>,
    http: reqwest::Client,
}

impl AlibabaState {
    /// Fresh state; image downloads trust `config.trusted_ca_pem` besides the system's roots.
    pub fn new(config: &AlibabaSim) -> std::io::Result<Self> {
        let mut http = reqwest::Client::builder();
        if let Some(pem) = &config.trusted_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            http = http.tls_certs_merge(certs);
        }
        Ok(Self {
            nonces: Default::default(),
            results: Default::default(),
            tickets: Default::default(),
            http: http
                .build()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        })
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    /// The VerifyStatus DescribeVerifyResult reports once the verification is complete.
    status: i64,
    score: f64,
    scenario: Scenario,
    /// Submitted through SubmitVerification and still in review (940/941/942).
    in_review: bool,
    polls: u32,
    name: String,
    id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_simulator_emits_is_in_the_alibaba_table() {
        for code in EMITS {
            let row = kyc_schemas::codes::find(TABLE, CODE, code, "");
            assert!(
                row.is_some_and(|r| r.code == *code && r.http.is_some()),
                "{code}"
            );
        }
        for status in [-1, 0, 1, 2] {
            let code = status.to_string();
            assert!(kyc_schemas::codes::find(TABLE, "StatusCode", &code, "").is_some());
        }
    }
}
