//! The vendors' clients, one folder each, all answering in the same terms: an [`Exchange`]
//! per HTTP call (what the ledger records), a [`Verdict`] when the vendor decided, or a
//! [`VendorError`] that says whether and how to retry.
//!
//! Every folder has the same files: `config.rs` (settings → client), `sign.rs` (auth),
//! `request.rs` (job → wire body), `response.rs` (wire → verdict or error, the code table),
//! `client.rs` (HTTP and the operation's call sequence).

pub mod alibaba;
pub mod baidu;
mod body;
mod classify;
pub mod huawei;

use std::time::Duration;

use kyc_schemas::{Reason, Status, Vendor};

/// The materials this job's requests carry (each vendor's `request::materials`, written
/// next to its body builders): the worker reads only these.
pub fn materials_needed(job: &kyc_schemas::Job) -> crate::materials::Needed {
    match job.vendor() {
        Vendor::Huawei => huawei::request::materials(job),
        Vendor::Alibaba => alibaba::request::materials(job),
        Vendor::Baidu => baidu::request::materials(job),
    }
}

/// Every endpoint the clients call: what quotas are set for.
pub const APIS: [Api; 13] = [
    huawei::STANDARD,
    huawei::EXTENSION,
    alibaba::VERIFY_MATERIAL,
    alibaba::SUBMIT_VERIFICATION,
    alibaba::DESCRIBE_VERIFY_RESULT,
    baidu::GENERATE,
    baidu::IDCARD_SUBMIT,
    baidu::UPLOAD_MATCH_IMAGE,
    baidu::RESULT_DETAIL,
    baidu::RESULT_SIMPLE,
    baidu::RESULT_STAT,
    baidu::RESULT_MEDIA,
    baidu::RESULT_GETALL,
];

/// The endpoints a job of `op` may call: its own, plus those the client calls on its way
/// (Baidu's session set-up) or to ask about a lost answer (`docs/design.md`). What quotas
/// must cover for an operation, and what its jobs spend of each (`kyc status`'s ETA).
pub fn apis_of(op: kyc_schemas::Operation) -> &'static [Api] {
    use kyc_schemas::Operation as Op;
    match op {
        Op::HuaweiStandard => &[huawei::STANDARD],
        Op::HuaweiIdcardExtension => &[huawei::EXTENSION],
        Op::AlibabaVerifyMaterial => &[alibaba::VERIFY_MATERIAL],
        Op::AlibabaSubmitVerification => &[
            alibaba::SUBMIT_VERIFICATION,
            alibaba::DESCRIBE_VERIFY_RESULT,
        ],
        Op::AlibabaDescribeVerifyResult => &[alibaba::DESCRIBE_VERIFY_RESULT],
        Op::BaiduStartSession => &[
            baidu::GENERATE,
            baidu::IDCARD_SUBMIT,
            baidu::UPLOAD_MATCH_IMAGE,
            baidu::RESULT_GETALL,
        ],
        Op::BaiduResultDetail => &[baidu::RESULT_DETAIL],
        Op::BaiduResultSimple => &[baidu::RESULT_SIMPLE],
        Op::BaiduResultStat => &[baidu::RESULT_STAT, baidu::RESULT_GETALL],
        Op::BaiduResultMedia => &[baidu::RESULT_MEDIA, baidu::RESULT_GETALL],
        Op::BaiduResultGetall => &[baidu::RESULT_GETALL],
    }
}

/// What one credentials probe found (`kyc doctor`): a single call that is not billed, made
/// with the worker's own signing or token code.
#[derive(Debug)]
pub struct Probe {
    /// What was called and why it costs nothing, for the operator.
    pub call: &'static str,
    /// The call proves the signature (key and secret) is accepted, not that the account may
    /// use the verification product.
    pub signature_only: bool,
    /// The vendor's `Date` header, and this host's clock when the request left and when its
    /// answer came: the vendor's time lies between them, up to the header's one second.
    pub vendor_date: Option<chrono::DateTime<chrono::Utc>>,
    pub sent_at: chrono::DateTime<chrono::Utc>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// `Ok` when the vendor accepted the credentials; else the classified refusal or failure.
    pub result: Result<(), VendorError>,
}

impl Probe {
    pub(crate) fn start(call: &'static str, signature_only: bool) -> Self {
        let now = chrono::Utc::now();
        Self {
            call,
            signature_only,
            vendor_date: None,
            sent_at: now,
            received_at: now,
            result: Ok(()),
        }
    }

    /// Records the answer's arrival and its `Date` header.
    pub(crate) fn answered(&mut self, headers: &reqwest::header::HeaderMap) {
        self.received_at = chrono::Utc::now();
        self.vendor_date = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.with_timezone(&chrono::Utc));
    }

    pub(crate) fn failed(mut self, e: VendorError) -> Self {
        self.received_at = chrono::Utc::now();
        self.result = Err(e);
        self
    }

    /// Vendor clock minus ours, in seconds (positive: the vendor is ahead), if it sent a
    /// `Date`. Measured against the middle of the exchange.
    pub fn skew_secs(&self) -> Option<i64> {
        let mid = self.sent_at + (self.received_at - self.sent_at) / 2;
        self.vendor_date.map(|d| (d - mid).num_seconds())
    }
}

/// One vendor endpoint: the ledger's `api`, the billing counters' `product`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    pub vendor: Vendor,
    pub name: &'static str,
    pub product: &'static str,
}

/// The outcome of one HTTP exchange with a vendor.
#[derive(Debug)]
pub struct Exchange<T> {
    pub http_status: Option<u16>,
    pub request_id: Option<String>,
    /// The vendor's code in this answer, when it had one.
    pub vendor_code: Option<String>,
    /// Whether the vendor bills this answer.
    pub billable: bool,
    /// The request may have reached the vendor, but no answer came back (a timeout): the
    /// ledger records the call as `unknown`, possibly billed.
    pub answer_lost: bool,
    pub result: Result<T, VendorError>,
}

impl<T> Exchange<T> {
    /// A call that was never sent (credentials could not be obtained, bad configuration).
    pub fn not_sent(err: VendorError) -> Self {
        Self {
            answer_lost: false,
            ..Self::no_answer(err)
        }
    }

    /// An exchange that never got an answer (connection refused, timeout).
    pub fn no_answer(err: VendorError) -> Self {
        // A refused connection never reached the vendor; anything else may have.
        let answer_lost = !matches!(&err, VendorError::Transient { code, .. } if code == "connect")
            && !matches!(err, VendorError::Permanent { .. });
        Self {
            http_status: None,
            request_id: None,
            vendor_code: None,
            billable: false,
            answer_lost,
            result: Err(err),
        }
    }
}

/// What the vendor decided about the person.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: Status,
    pub reason: Reason,
    pub vendor_code: Option<String>,
    pub vendor_message: Option<String>,
    /// Normalized to 0–100.
    pub similarity: Option<f64>,
    pub liveness_score: Option<f64>,
    pub vendor_ref: Option<String>,
    /// What the vendor says it charged (Baidu `result/getall`), written with the outcome.
    pub charges: Vec<kyc_store::ChargeEntry>,
}

/// Why a call did not produce a verdict. The variants are decisions: the retry loop maps
/// each one to "wait and retry", "refresh credentials and retry", or "give up now".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VendorError {
    /// The vendor's own throttle answer (Huawei 429 APIG.0308, Alibaba Throttling.*, Baidu 18).
    #[error("throttled by the vendor ({code})")]
    Throttled {
        code: String,
        retry_after: Option<Duration>,
    },
    /// 5xx, gateway errors, timeouts, connection failures: worth another try.
    #[error("transient vendor failure ({code}): {message}")]
    Transient {
        code: String,
        message: String,
        retry_after: Option<Duration>,
        /// The outcome's reason if the attempts run out (vendor_internal, timeout, …).
        reason: Reason,
    },
    /// The token expired or was revoked: refresh it, then retry once.
    #[error("vendor credentials need refreshing ({code})")]
    AuthExpired { code: String },
    /// The request or the account is wrong; retrying cannot help.
    #[error("vendor refused the request ({code}): {message}")]
    Permanent {
        code: String,
        message: String,
        reason: Reason,
    },
}

impl VendorError {
    pub fn code(&self) -> &str {
        match self {
            VendorError::Throttled { code, .. }
            | VendorError::Transient { code, .. }
            | VendorError::AuthExpired { code }
            | VendorError::Permanent { code, .. } => code,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VendorError::Throttled { retry_after, .. }
            | VendorError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The reason an `error` outcome gets when this is the last word on a job.
    pub fn final_reason(&self) -> Reason {
        match self {
            VendorError::Throttled { .. } => Reason::Throttled,
            VendorError::Transient { reason, .. } => *reason,
            VendorError::AuthExpired { .. } => Reason::AuthFailed,
            VendorError::Permanent { reason, .. } => *reason,
        }
    }

    /// A failure to reach the vendor at all, classified: a timeout or a refused connection
    /// is transient. The message is built from the error's kind and its causes' kinds, never
    /// from its `Display`: reqwest appends the request URL, which carries Baidu's
    /// `access_token` (or, for the token call, `client_secret`) and presigned signatures.
    pub fn from_reqwest(e: &reqwest::Error) -> Self {
        let code = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "network"
        };
        VendorError::Transient {
            code: code.into(),
            message: safe_reqwest_message(e),
            retry_after: None,
            reason: if e.is_timeout() {
                Reason::Timeout
            } else {
                Reason::VendorInternal
            },
        }
    }
}

/// What went wrong with a request, in words that carry no URL: the kind of failure, then the
/// operating system's word for it when there is one (refused, reset, …).
pub fn safe_reqwest_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() {
        "the response body could not be read"
    } else if e.is_decode() {
        "the response could not be decoded"
    } else if e.is_redirect() {
        "too many or refused redirects"
    } else if e.is_request() {
        "the request could not be sent"
    } else {
        "network error"
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("{kind} ({})", io.kind());
        }
        source = s.source();
    }
    kind.to_string()
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every endpoint is called by some operation, and every operation calls an endpoint
    /// of its own vendor that has a quota key.
    #[test]
    fn the_operations_apis_are_the_quota_keys() {
        let mut used: Vec<&str> = Vec::new();
        for op in kyc_schemas::Operation::ALL {
            let apis = apis_of(op);
            assert!(!apis.is_empty(), "{op}");
            for a in apis {
                assert_eq!(a.vendor, op.vendor(), "{op}");
                assert!(APIS.contains(a), "{op}: {}", a.name);
                used.push(a.name);
            }
        }
        for a in APIS {
            assert!(used.contains(&a.name), "no operation calls {}", a.name);
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 12:00:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
