//! What the simulated Cloudauth decides: VerifyStatus from the scenario and what the request
//! carried, the authority score that goes with it, and SubmitVerification's audit conclusion.

use super::*;

/// Which materials a verification had, for the "needs X" rules of the table.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Had {
    pub(super) face: bool,
    pub(super) front: bool,
    pub(super) back: bool,
}

/// The VerifyStatus a subject gets from VerifyMaterial (and DescribeVerifyResult).
pub(super) fn verify_status(scenario: Scenario, had: Had) -> i64 {
    let id_image = had.front || had.back;
    match scenario {
        Scenario::IdentityMismatch | Scenario::NoRecord => 2,
        Scenario::FaceMismatch => 7,
        Scenario::IdCardNameMismatch if had.front => 3,
        Scenario::IdCardNumberMismatch if had.front => 4,
        Scenario::IdExpired if id_image => 5,
        Scenario::FaceMismatchIdPhoto if had.front => 6,
        Scenario::IdCardInvalid if id_image => 8,
        Scenario::RiskRejected => 9,
        Scenario::IdPhotoMissing => 11,
        Scenario::AuthorityError => 12,
        _ => 1,
    }
}

pub(super) fn authority_score(status: i64) -> f64 {
    match status {
        7 => 41.0,
        2 | 11 | 12 => 0.0,
        _ => 97.0,
    }
}

pub(super) fn audit_conclusion(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::IdentityMismatch | Scenario::NoRecord => "身份证照片信息与认证提交信息不一致",
        Scenario::FaceMismatch => "人脸与公安网照片不一致",
        Scenario::ImageQuality => "人脸照片质量不合格",
        Scenario::IdCardNameMismatch | Scenario::IdCardNumberMismatch => {
            "身份证照片模糊或信息不一致"
        }
        Scenario::IdExpired => "身份证已过期",
        Scenario::IdPhotoMissing => "公安网照片缺失",
        Scenario::FaceMismatchIdPhoto => "人脸与身份证头像不一致",
        Scenario::IdCardInvalid => "提交的照片非身份证照片",
        Scenario::RiskRejected => "非本人操作",
        _ => "",
    }
}
