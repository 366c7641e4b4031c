//! The deterministic outcome table: the three-digit sequence code of the ID number
//! (positions 15–17) selects what the simulated vendor answers, so a test can predict every
//! row from its input alone. `docs/simulator.md` is the human-readable copy.

/// What the simulated authority says about a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Pass,
    IdentityMismatch,
    FaceMismatch,
    ImageQuality,
    IdPhotoMissing,
    NoRecord,
    /// The vendor refuses the material as unusable (Huawei IVS.0008 liveness, IVS.0009 face
    /// detection, IVS.0010 face comparison).
    LivenessError,
    FaceDetectError,
    FaceCompareError,
    /// Huawei IVS.0009 only with `crop=true` on a face image over 90 KB of base64 (seed
    /// tables 4-5, 4-16); `crop=false` passes.
    FaceDetectCropped,
    /// Call-level faults, per request id (`meta.uuid` for Huawei).
    ThrottledOnce,
    InternalErrorOnce,
    AlwaysThrottled,
    AlwaysInternalError,
    /// The first answer comes `slow_ms` late (past a client's timeout), later ones on time.
    SlowOnce,
    AccountBlocked,
    AccountInArrears,
    // Verdicts only Alibaba can give (they need ID-card images or risk control).
    IdCardNameMismatch,
    IdExpired,
    FaceMismatchIdPhoto,
    IdCardInvalid,
    RiskRejected,
    IdCardNumberMismatch,
    /// The authority's system fails on every call (Alibaba 12, Baidu 222361).
    AuthorityError,
    /// Stateful: pending, then passes on the third poll.
    PendingThenPass,
    PendingForever,
    /// Alibaba SubmitVerification: StatusCode −1.
    NotRecorded,
    /// Baidu: a failed attempt, then a passed one.
    TwoAttempts,
    /// Baidu: OCR billed with the attempt.
    OcrCharged,
    /// Baidu access token refused once (110) / expired once (111); Huawei token mode too.
    TokenRejectedOnce,
    TokenExpiredOnce,
    /// Baidu daily (17) / total (19) quota exhausted.
    DailyQuota,
    TotalQuota,
}

impl Scenario {
    pub fn from_sequence_code(seq: &str) -> Self {
        match seq {
            "901" => Scenario::IdentityMismatch,
            "902" => Scenario::FaceMismatch,
            "903" => Scenario::ImageQuality,
            "906" => Scenario::IdPhotoMissing,
            "930" => Scenario::NoRecord,
            "913" => Scenario::LivenessError,
            "914" => Scenario::FaceDetectError,
            "915" => Scenario::FaceCompareError,
            "916" => Scenario::FaceDetectCropped,
            "951" => Scenario::ThrottledOnce,
            "952" => Scenario::InternalErrorOnce,
            "953" => Scenario::AlwaysThrottled,
            "954" => Scenario::AlwaysInternalError,
            "955" => Scenario::SlowOnce,
            "975" => Scenario::AccountBlocked,
            "976" => Scenario::AccountInArrears,
            "904" => Scenario::IdCardNameMismatch,
            "905" => Scenario::IdExpired,
            "907" => Scenario::FaceMismatchIdPhoto,
            "908" => Scenario::IdCardInvalid,
            "909" => Scenario::RiskRejected,
            "910" => Scenario::IdCardNumberMismatch,
            "912" => Scenario::AuthorityError,
            "940" => Scenario::PendingThenPass,
            "941" => Scenario::PendingForever,
            "942" => Scenario::NotRecorded,
            "945" => Scenario::TwoAttempts,
            "946" => Scenario::OcrCharged,
            "961" => Scenario::TokenRejectedOnce,
            "962" => Scenario::TokenExpiredOnce,
            "971" => Scenario::DailyQuota,
            "972" => Scenario::TotalQuota,
            _ => Scenario::Pass,
        }
    }

    /// From an 18-character ID number; anything unparsable is a plain pass (the vendors
    /// validate format separately).
    pub fn from_id(id: &str) -> Self {
        if id.len() == 18 && id.is_char_boundary(14) && id.is_char_boundary(17) {
            Self::from_sequence_code(&id[14..17])
        } else {
            Scenario::Pass
        }
    }
}

/// A stable pseudo-random number in `0..n` from a string (similarity scores, request ids).
pub fn stable_hash(s: &str, n: u64) -> u64 {
    // FNV-1a: tiny, stable across runs and platforms, good enough to spread scores.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_codes_select_scenarios() {
        assert_eq!(
            Scenario::from_id("110105194912319012"),
            Scenario::IdentityMismatch
        );
        assert_eq!(Scenario::from_id("11010519491231002X"), Scenario::Pass);
        assert_eq!(Scenario::from_id("short"), Scenario::Pass);
    }
}
