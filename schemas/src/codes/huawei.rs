//! Huawei Cloud IVS codes. Seed: `huawei-ivs-api-reference.zh.md` (IVS API 参考, 2025-06-18):
//! 表 5-1 (verification codes), 表 6-1 (IVS error codes), §6.1 (HTTP status codes). APIG
//! gateway codes are not in the seed; they come from Huawei's API Gateway error-code page.

use super::{row, CodeRow, Retry};
use crate::{Reason, Status};

const T51: &str = "seed huawei-ivs-api-reference §5.1 表 5-1";
const T61: &str = "seed huawei-ivs-api-reference §6.2 表 6-1";
const S61: &str = "seed huawei-ivs-api-reference §6.1 状态码";
const APIG: &str =
    "Huawei APIG error codes (support.huaweicloud.com/usermanual-apig/apig_03_0048.html)";
const APIG_UNCONFIRMED: &str =
    "Huawei APIG error codes (support.huaweicloud.com/usermanual-apig/apig_03_0048.html); HTTP status unconfirmed";
const IAM: &str = "Huawei IAM API (support.huaweicloud.com/api-iam/iam_30_0001.html)";

use Reason as R;
use Retry::{None as Final, Permanent, RefreshAuth, Retryable};
use Status::{Error, Failed, NotFound, Passed};

const VC: &str = "verification_code";
const EC: &str = "error_code";
const HS: &str = "HTTP status";

pub const TABLE: &[CodeRow] = &[
    row(VC, "1000", Some(200), "Successful certification", "verified", Passed, R::Verified, Final, T51),
    row(VC, "2001", Some(200), "Inconsistent identity information", "name and ID number inconsistent", Failed, R::IdentityMismatch, Final, T51),
    row(VC, "2002", Some(200), "Inconsistent face information", "face inconsistent with the identity", Failed, R::FaceMismatch, Final, T51),
    row(VC, "2003", Some(200), "Face image quality or format problem", "face image quality or format problem", Failed, R::ImageQuality, Final, T51),
    row(VC, "2006", Some(200), "Id card photo does not exist", "the authority holds no ID photo (data-source problem)", Error, R::IdPhotoMissing, Final, T51),
    row(VC, "3001", Some(200), "Nonexistent identity information", "identity not in the data source", NotFound, R::NoRecord, Final, T51),
    row(VC, "other", Some(200), "", "a verification code the seed does not list", Error, R::UnexpectedResponse, Permanent, "no source (our rule for undocumented codes)"),
    row(EC, "IVS.0001", Some(400), "Request parameter meta is null or empty.", "meta null or empty", Error, R::InvalidRequest, Permanent, T61),
    row(EC, "IVS.0002", Some(400), "Request parameter req_data is redundant .", "req_data has more than one element", Error, R::InvalidRequest, Permanent, T61),
    row(EC, "IVS.0003", Some(400), "Some necessary request parameters in req_data is null.", "a required parameter is null", Error, R::InvalidRequest, Permanent, T61),
    row(EC, "IVS.0004", Some(400), "Image base64 size is more than 4MB or less than 10KB.", "image base64 over 4 MB or under 10 KB", Error, R::InvalidRequest, Permanent, T61),
    row(EC, "IVS.0005", Some(400), "Video base 64 size is more than 10MB or less than 10KB.", "video base64 over 10 MB or under 10 KB", Error, R::InvalidRequest, Permanent, T61),
    row(EC, "IVS.0006", Some(400), "The input face image is invalid.", "face image invalid (size, pixels, JPG)", Error, R::InvalidRequest, Permanent, T61),
    row(EC, "IVS.0007", Some(400), "Id card image error: %s. Please try another image.", "ID-card image unusable", Failed, R::ImageQuality, Final, T61),
    row(EC, "IVS.0008", Some(400), "live detect error: %s. Please check your input.", "liveness detection failed", Failed, R::LivenessFailed, Final, T61),
    row(EC, "IVS.0009", Some(400), "face detect error: %s. Please check your input.", "face detection failed (with crop=true and > 90 KB of base64, retried once with crop=false first: 表 4-5, 4-16)", Failed, R::ImageQuality, Final, T61),
    row(EC, "IVS.0010", Some(400), "face compare error: %s. Please check your input.", "face comparison failed (no face)", Failed, R::ImageQuality, Final, T61),
    row(EC, "IVS.0011", Some(400), "The request param has wrong format, %s", "parameter format (length, type, empty, name characters, ID number)", Error, R::InvalidRequest, Permanent, T61),
    row(EC, "IVS.0012", Some(400), "Lack Header or Header Content-Type is empty.", "Content-Type header missing", Error, R::InvalidRequest, Permanent, T61),
    row(EC, "IVS.0013", Some(400), "The authentication token is abnormal.", "token abnormal: get a new token (AK/SK: the resend is refused again → auth_failed)", Error, R::AuthFailed, RefreshAuth, T61),
    row(EC, "IVS.0014", Some(400), "The service has been frozen.", "service frozen (arrears)", Error, R::AccountBlocked, Permanent, T61),
    row(EC, "IVS.0015", Some(400), "The subservice has not been subscribed.", "service not subscribed (or another region)", Error, R::AccountBlocked, Permanent, T61),
    row(EC, "IVS.0101", Some(500), "Service inner error.", "service inner error", Error, R::VendorInternal, Retryable, T61),
    row(EC, "APIG.0308", Some(429), "The throttling threshold has been reached: policy user over ratelimit,limit:10,time:1 second", "throttled (wait 2–5 s, or Retry-After)", Error, R::Throttled, Retryable, APIG),
    row(EC, "APIG.0307", Some(401), "The token must be updated.", "token must be refreshed", Error, R::AuthFailed, RefreshAuth, APIG_UNCONFIRMED),
    row(EC, "APIG.0301", Some(401), "Incorrect IAM authentication information: token expires", "token invalid or expired", Error, R::AuthFailed, RefreshAuth, APIG_UNCONFIRMED).when("token"),
    row(EC, "APIG.0301", Some(401), "Incorrect IAM authentication information: verify aksk signature fail", "AK/SK signature refused (retries risk the 5-minute AK lock)", Error, R::AuthFailed, Permanent, APIG_UNCONFIRMED),
    row(EC, "APIG.0101", Some(404), "The API does not exist or has not been published in the environment.", "API not found", Error, R::InvalidRequest, Permanent, APIG),
    row(EC, "APIG.0201", Some(502), "Backend unavailable.", "backend unavailable", Error, R::VendorInternal, Retryable, APIG),
    row(EC, "APIG.0203", Some(504), "Backend timeout.", "backend timeout", Error, R::Timeout, Retryable, APIG),
    row(EC, "other", None, "", "an error code neither the seed nor the APIG page lists (5xx: see HTTP status)", Error, R::UnexpectedResponse, Permanent, "no source (our rule for undocumented codes)"),
    row(HS, "401", Some(401), "", "no code: credentials refused", Error, R::AuthFailed, Permanent, S61),
    row(HS, "403", Some(403), "", "no code: access refused", Error, R::AuthFailed, Permanent, S61),
    row(HS, "408", Some(408), "", "no code: request timeout (may be resent unchanged)", Error, R::VendorInternal, Retryable, S61),
    row(HS, "413", Some(413), "", "no code: request entity too large", Error, R::InvalidRequest, Permanent, S61),
    row(HS, "429", Some(429), "", "no code: too many requests (Retry-After)", Error, R::Throttled, Retryable, S61),
    row(HS, "5xx", None, "", "no code, or an unknown code, with a 5xx status", Error, R::VendorInternal, Retryable, S61),
    row("IAM status", "400/401/403", None, "", "IAM refused user, password, domain or project", Error, R::AuthFailed, Permanent, IAM),
    row("IAM status", "5xx", None, "", "IAM failed", Error, R::VendorInternal, Retryable, IAM),
];
