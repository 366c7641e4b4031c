//! `Outcome`: the one normalized result of a job, whatever the vendor said and however it
//! said it. Vendor codes and messages are kept verbatim next to the normalized fields, so an
//! auditor can always trace a status back to the vendor's own words.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{JobId, Operation, Vendor};

pub const OUTCOME_SCHEMA_VERSION: u32 = 1;

/// The normalized verdict.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The vendor verified the identity.
    Passed,
    /// The vendor answered, and the identity did not verify.
    Failed,
    /// The authority has no record of this identity.
    NotFound,
    /// A session was started and waits for the person (Baidu H5); reconcile later.
    Pending,
    /// No verdict: bad input, credentials, vendor unavailable or attempts exhausted.
    Error,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Passed,
        Status::Failed,
        Status::NotFound,
        Status::Pending,
        Status::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::NotFound => "not_found",
            Status::Pending => "pending",
            Status::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Why a job has its status. One list for all vendors: the same meaning gets the same reason.
/// `docs/outcomes.md` maps every vendor code to one of these.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Identity verified.
    Verified,
    /// Name and ID number do not belong together.
    IdentityMismatch,
    /// The face does not match the identity (vendor did not say against which photo).
    FaceMismatch,
    /// The face does not match the ID-card image supplied.
    FaceMismatchIdPhoto,
    /// The face does not match the authority's photo.
    FaceMismatchAuthority,
    /// The ID card has expired.
    IdExpired,
    /// The authority has no record of this ID number.
    NoRecord,
    /// The authority holds no photo for this identity.
    IdPhotoMissing,
    /// An image or video was unusable (quality, format, no face, several faces).
    ImageQuality,
    /// The liveness check failed.
    LivenessFailed,
    /// The person has not completed the vendor session yet.
    AwaitingUser,
    /// The person never completed the vendor session, and it can no longer complete (Alibaba
    /// DescribeVerifyResult still −1 after the pending window).
    Abandoned,
    /// The ID-card image does not match the name or number given.
    IdCardMismatch,
    /// The ID-card image is not an original ID card.
    IdCardInvalid,
    /// The vendor's risk control refused the verification (not the account holder).
    RiskRejected,
    /// The vendor refused without saying why (undocumented failure code).
    RejectedUnspecified,
    /// The vendor is still reviewing the submission.
    InReview,
    /// The same submission was made before; reconcile instead of resubmitting.
    DuplicateSubmission,
    /// The vendor session (verify token) expired before the person finished.
    SessionExpired,
    /// The vendor could not reach the authority's data source.
    AuthorityUnavailable,
    /// The vendor throttled us and attempts ran out.
    Throttled,
    /// A daily or total quota is exhausted.
    QuotaExhausted,
    /// Credentials were refused.
    AuthFailed,
    /// The account cannot use the service (not subscribed, frozen for arrears, blocked).
    AccountBlocked,
    /// The vendor refused the request as malformed.
    InvalidRequest,
    /// The vendor failed internally and attempts ran out.
    VendorInternal,
    /// The vendor did not answer in time and attempts ran out.
    Timeout,
    /// A material (image, video) could not be fetched from storage.
    MaterialUnavailable,
    /// A material's location is outside the configured material sources; nothing was fetched.
    MaterialNotAllowed,
    /// This build cannot drive the requested operation.
    UnsupportedOperation,
    /// The vendor answered something this code does not understand.
    UnexpectedResponse,
}

impl Reason {
    pub const ALL: [Reason; 31] = [
        Reason::Verified,
        Reason::IdentityMismatch,
        Reason::FaceMismatch,
        Reason::FaceMismatchIdPhoto,
        Reason::FaceMismatchAuthority,
        Reason::IdExpired,
        Reason::NoRecord,
        Reason::IdPhotoMissing,
        Reason::ImageQuality,
        Reason::LivenessFailed,
        Reason::AwaitingUser,
        Reason::Abandoned,
        Reason::IdCardMismatch,
        Reason::IdCardInvalid,
        Reason::RiskRejected,
        Reason::RejectedUnspecified,
        Reason::InReview,
        Reason::DuplicateSubmission,
        Reason::SessionExpired,
        Reason::AuthorityUnavailable,
        Reason::Throttled,
        Reason::QuotaExhausted,
        Reason::AuthFailed,
        Reason::AccountBlocked,
        Reason::InvalidRequest,
        Reason::VendorInternal,
        Reason::Timeout,
        Reason::MaterialUnavailable,
        Reason::MaterialNotAllowed,
        Reason::UnsupportedOperation,
        Reason::UnexpectedResponse,
    ];

    /// The wire name (same as serde's); a test keeps the two in step.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Verified => "verified",
            Reason::IdentityMismatch => "identity_mismatch",
            Reason::FaceMismatch => "face_mismatch",
            Reason::FaceMismatchIdPhoto => "face_mismatch_id_photo",
            Reason::FaceMismatchAuthority => "face_mismatch_authority",
            Reason::IdExpired => "id_expired",
            Reason::NoRecord => "no_record",
            Reason::IdPhotoMissing => "id_photo_missing",
            Reason::ImageQuality => "image_quality",
            Reason::LivenessFailed => "liveness_failed",
            Reason::AwaitingUser => "awaiting_user",
            Reason::Abandoned => "abandoned",
            Reason::IdCardMismatch => "id_card_mismatch",
            Reason::IdCardInvalid => "id_card_invalid",
            Reason::RiskRejected => "risk_rejected",
            Reason::RejectedUnspecified => "rejected_unspecified",
            Reason::InReview => "in_review",
            Reason::DuplicateSubmission => "duplicate_submission",
            Reason::SessionExpired => "session_expired",
            Reason::AuthorityUnavailable => "authority_unavailable",
            Reason::Throttled => "throttled",
            Reason::QuotaExhausted => "quota_exhausted",
            Reason::AuthFailed => "auth_failed",
            Reason::AccountBlocked => "account_blocked",
            Reason::InvalidRequest => "invalid_request",
            Reason::VendorInternal => "vendor_internal",
            Reason::Timeout => "timeout",
            Reason::MaterialUnavailable => "material_unavailable",
            Reason::MaterialNotAllowed => "material_not_allowed",
            Reason::UnsupportedOperation => "unsupported_operation",
            Reason::UnexpectedResponse => "unexpected_response",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The result of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "kyc-batch outcome",
    description = "The normalized result of one job, version 1"
)]
pub struct Outcome {
    pub schema_version: u32,
    pub job_id: JobId,
    pub batch_id: String,
    pub vendor: Vendor,
    pub operation: Operation,
    pub status: Status,
    pub reason: Reason,
    /// The vendor's own code (e.g. Huawei `verification_code` 2001 or `IVS.0003`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_message: Option<String>,
    /// Face similarity normalized to 0–100, whatever scale the vendor used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
    /// Liveness score normalized to 0–100, where the vendor gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_request_id: Option<String>,
    /// A vendor handle for later reconciliation (Baidu verify_token, Alibaba VerifyToken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_ref: Option<String>,
    /// Vendor calls made for this job, across redeliveries.
    pub attempts: u32,
    /// Wall time of the last vendor call, in milliseconds.
    pub latency_ms: u64,
    /// Whether the call that decided the outcome is billable.
    pub billed: bool,
    pub completed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_round_trips_through_json() {
        let o = Outcome {
            schema_version: OUTCOME_SCHEMA_VERSION,
            job_id: JobId::from_stored("b-r"),
            batch_id: "b".into(),
            vendor: Vendor::Huawei,
            operation: Operation::HuaweiStandard,
            status: Status::Failed,
            reason: Reason::IdentityMismatch,
            vendor_code: Some("2001".into()),
            vendor_message: Some("Inconsistent identity information".into()),
            similarity: Some(12.5),
            liveness_score: None,
            vendor_request_id: Some("req-1".into()),
            vendor_ref: None,
            attempts: 2,
            latency_ms: 120,
            billed: true,
            completed_at: "2026-11-23T12:00:00Z".parse().unwrap(),
        };
        let json = serde_json::to_string(&o).unwrap();
        assert!(json.contains("\"reason\":\"identity_mismatch\""));
        assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
    }

    #[test]
    fn status_and_reason_strings_match_serde() {
        for s in Status::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for r in Reason::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(
            Reason::FaceMismatchIdPhoto.as_str(),
            "face_mismatch_id_photo"
        );
    }
}
