//! What the simulated person does in the H5 flow: the plan (match, OCR), the session's state,
//! and the attempts they make once the session is ready — verdicts, scores and charges follow
//! the ID number's sequence code (`docs/simulator.md` §2–3).

use super::*;

/// The H5 plans configured in the simulated console (`docs/simulator.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    /// Compares with an uploaded photo (人脸对比V4) instead of the authority (人脸实名认证V4).
    pub(super) matches: bool,
    /// "URL invalid after failure": one attempt only.
    pub(super) strict: bool,
    pub(super) ocr: bool,
}

pub(super) fn plan(id: &str) -> Option<Plan> {
    let p = |matches, strict, ocr| {
        Some(Plan {
            matches,
            strict,
            ocr,
        })
    };
    match id {
        "sim-authority" => p(false, false, false),
        "sim-authority-strict" => p(false, true, false),
        "sim-match" => p(true, false, false),
        "sim-ocr" => p(false, false, true),
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) plan: Plan,
    pub(super) created_ms: i64,
    pub(super) name: Option<String>,
    pub(super) id: Option<String>,
    pub(super) scenario: Scenario,
    pub(super) image: bool,
    pub(super) attempts: Vec<Attempt>,
    pub(super) completed_ms: Option<i64>,
    pub(super) polls: u32,
}

impl Session {
    pub(super) fn ready(&self) -> bool {
        self.id.is_some() && (!self.plan.matches || self.image)
    }

    /// Closed for new submissions: passed, or failed on a one-attempt plan.
    pub(super) fn closed(&self) -> bool {
        self.completed_ms.is_some()
    }

    /// Whether the token still answers `api` at `now`.
    pub(super) fn alive(&self, api: &str, now: i64) -> bool {
        match self.completed_ms {
            Some(done) if api == "result/media/query" => now - done < MEDIA_WINDOW_MS,
            Some(done) => now - done < RESULT_WINDOW_MS,
            None => now - self.created_ms < SESSION_WINDOW_MS,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Attempt {
    pub(super) passed: bool,
    pub(super) code: &'static str,
    pub(super) message: &'static str,
    pub(super) score: Option<f64>,
    pub(super) risk: bool,
    pub(super) liveness: f64,
    pub(super) charged: bool,
    pub(super) ocr: bool,
    pub(super) time: String,
}

/// The simulated person verifies once the session is ready, seen at the first query after
/// that (so our own session calls are never cut short): unless the code keeps them away,
/// 940 until the third poll, 941 never.
pub(super) fn complete_if_ready(s: &Shared, token: &str, sess: &mut Session, now: i64) {
    let waits = match sess.scenario {
        Scenario::PendingForever => true,
        Scenario::PendingThenPass => sess.polls < 3,
        _ => false,
    };
    if sess.completed_ms.is_some() || !sess.ready() || waits {
        return;
    }
    let time = vendor_time(now);
    let ocr = sess.plan.ocr || sess.scenario == Scenario::OcrCharged;
    let attempt = |passed, row: &'static CodeRow, score: Option<f64>| Attempt {
        passed,
        code: row.code,
        message: row.message,
        score,
        risk: false,
        liveness: 0.0,
        // Billed when the backend produced a similarity score.
        charged: score.is_some(),
        ocr,
        time: time.clone(),
    };
    let pass = attempt(true, A_0, Some(93.78));
    let fail = |row| attempt(false, row, None);
    sess.attempts = match sess.scenario {
        Scenario::IdentityMismatch => vec![fail(A_222360)],
        Scenario::NoRecord => vec![fail(A_222354)],
        Scenario::ImageQuality => vec![fail(A_222356)],
        Scenario::IdPhotoMissing => vec![fail(A_222355)],
        Scenario::AuthorityError => vec![fail(A_222361)],
        Scenario::LivenessError => vec![fail(A_223120)],
        Scenario::FaceMismatch => vec![attempt(false, A_990902, Some(45.0))],
        Scenario::RiskRejected => vec![Attempt {
            risk: true,
            ..attempt(false, A_990909, Some(90.0))
        }],
        Scenario::TwoAttempts if !sess.plan.strict => {
            vec![attempt(false, A_990902, Some(45.0)), pass]
        }
        Scenario::TwoAttempts => vec![attempt(false, A_990902, Some(45.0))],
        _ => vec![pass],
    };
    sess.completed_ms = Some(now);
    // The bill: one billable entry per charged attempt (and per OCR charge).
    let product = if sess.plan.matches {
        "faceprint-match"
    } else {
        "faceprint-verify"
    };
    for a in &sess.attempts {
        if a.charged {
            s.ledger
                .record(VENDOR, product, 200, true, Some(token.to_string()));
        }
        if a.ocr {
            s.ledger
                .record(VENDOR, "faceprint-ocr", 200, true, Some(token.to_string()));
        }
    }
}
