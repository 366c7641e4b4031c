//! Baidu 人脸实名认证 H5 as baidu-aip sees it: OAuth `client_credentials` tokens
//! (`/oauth/2.0/token`, 30 days), and `POST /rpc/2.0/brain/solution/faceprint/<path>
//! ?access_token=…` for the session calls (`verifyToken/generate`, `idcard/submit`,
//! `uploadMatchImage`) and the five post-verification queries. API errors are HTTP 200 with
//! `error_code` / `error_msg` (18 = QPS, Baidu's throttle signal; 17/19 daily/total quota).
//!
//! H5 is interactive: a person opens the session's URL and verifies. Here the simulated
//! person has done so by the first query after the session is ready (identity submitted, and
//! the match photo uploaded for match plans), and the attempts they make — verdicts, scores, charges — follow
//! the ID number's sequence code (`docs/simulator.md` §2–3). `result/getall` reports exactly
//! the attempts made and their charges, and every charge is in the ledger as a billable call
//! of `faceprint-verify`, `faceprint-match` or `faceprint-ocr`.
// Early returns carry the finished HTTP answer, one per request: boxing buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use kyc_schemas::codes::baidu::{ATTEMPT_CODE, ERROR_CODE, TABLE};
use kyc_schemas::codes::CodeRow;

use crate::faults::{self, VendorFaults};
use crate::ledger::{Arrival, Call};
use crate::scenario::Scenario;
use crate::server::Shared;

mod auth;
mod codes;
mod routes;
mod scenarios;

// The folder's parts see each other through this module; the crate sees only `routes`.
#[cfg(test)]
pub(crate) use self::codes::EMITS;
pub(crate) use self::routes::routes;
use self::{auth::*, codes::*, routes::*, scenarios::*};

const VENDOR: &str = "baidu";
/// A session must be completed within 2 h; its results can be read for 3 days (media 1 day).
const SESSION_WINDOW_MS: i64 = 2 * 3600 * 1000;
const RESULT_WINDOW_MS: i64 = 3 * 24 * 3600 * 1000;
const MEDIA_WINDOW_MS: i64 = 24 * 3600 * 1000;
const MAX_IMAGE_B64: usize = 10 * 1024 * 1024;
/// A stand-in for the OCR'd card images of `result/detail` (a JPEG's first bytes).
const OCR_CARD_B64: &str = "/9j/4AAQSkZJRgABAQAAAQABAAD/";

/// The apps the simulated Baidu AI console knows.
#[derive(Debug, Clone)]
pub struct BaiduSim {
    /// API Key → Secret Key.
    pub clients: Vec<(String, String)>,
    /// Lifetime of an access token in seconds (Baidu: 30 days).
    pub token_ttl_secs: i64,
}

impl Default for BaiduSim {
    fn default() -> Self {
        Self {
            clients: Vec::new(),
            token_ttl_secs: 2_592_000,
        }
    }
}

/// Tokens and sessions.
#[derive(Debug, Default)]
pub struct BaiduState {
    /// access_token → expiry (simulator clock, ms).
    tokens: Mutex<HashMap<String, i64>>,
    sessions: Mutex<HashMap<String, Session>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_simulator_emits_is_in_the_baidu_table() {
        for row in EMITS {
            assert!(TABLE.contains(row), "{}", row.code);
        }
    }
}
