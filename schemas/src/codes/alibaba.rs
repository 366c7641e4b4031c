//! Alibaba Cloud 实人认证 (Cloudauth) codes. Seeds: `aliyun-cloudauth-VerifyMaterial.zh.md`
//! (认证状态说明, 错误码), `aliyun-cloudauth-DescribeVerifyResult.zh.md` (返回参数, VerifyStatus
//! 表), `aliyun-cloudauth-SubmitVerification.zh.md` (返回参数 StatusCode, 错误码). Common
//! gateway codes (throttling, signature, credentials) are not in the seeds.

use super::{row, CodeRow, Retry};
use crate::{Reason, Status};

const VM: &str = "seed aliyun-cloudauth-VerifyMaterial 认证状态说明";
const VME: &str = "seed aliyun-cloudauth-VerifyMaterial 错误码";
const DV: &str = "seed aliyun-cloudauth-DescribeVerifyResult 返回参数 (VerifyStatus 表)";
const SV: &str = "seed aliyun-cloudauth-SubmitVerification 返回参数 (StatusCode)";
const SVE: &str = "seed aliyun-cloudauth-SubmitVerification 错误码";
const COMMON: &str = "Alibaba Cloud common error codes (help.aliyun.com/document_detail/25490.htm; throttling: developer.aliyun.com/ask/210168)";
const NONE_COMMON: &str =
    "no source (Alibaba common error code; in neither the seeds nor a cited vendor page)";

use Reason as R;
use Retry::{None as Final, Permanent, Retryable};
use Status::{Error, Failed, Passed, Pending};

/// VerifyMaterial's and DescribeVerifyResult's `VerifyStatus`.
pub const VERIFY_STATUS: &str = "VerifyStatus";
/// DescribeVerifyResult's −1 once the pending window from the submission has passed.
pub const VERIFY_STATUS_LATE: &str = "VerifyStatus, after the pending window";
/// SubmitVerification's `VerifyStatus.StatusCode` (another enum: 1 and 2 differ).
pub const STATUS_CODE: &str = "StatusCode";
/// The error body's `Code`.
pub const CODE: &str = "Code";

const VS: &str = VERIFY_STATUS;
const SC: &str = STATUS_CODE;
const C: &str = CODE;

pub const TABLE: &[CodeRow] = &[
    row(VS, "1", Some(200), "认证通过。", "passed", Passed, R::Verified, Final, VM),
    row(VS, "2", Some(200), "认证不通过,原因:实名校验不通过。", "name/ID real-name check failed (VerifyMaterial; DescribeVerifyResult reports −1 instead)", Failed, R::IdentityMismatch, Final, VM),
    row(VS, "3", Some(200), "", "ID image unreadable, or its name differs from Name", Failed, R::IdCardMismatch, Final, VM),
    row(VS, "4", Some(200), "", "ID image unreadable, or its number differs from IdCardNumber", Failed, R::IdCardMismatch, Final, VM),
    row(VS, "5", Some(200), "", "ID card expired or about to expire", Failed, R::IdExpired, Final, VM),
    row(VS, "6", Some(200), "", "face differs from the ID-card portrait (similarity: IdCardFaceComparisonScore)", Failed, R::FaceMismatchIdPhoto, Final, VM),
    row(VS, "7", Some(200), "", "face differs from the authority photo (similarity: AuthorityComparisionScore)", Failed, R::FaceMismatchAuthority, Final, VM),
    row(VS, "8", Some(200), "", "not an original ID-card photo, or none valid", Failed, R::IdCardInvalid, Final, VM),
    row(VS, "9", Some(200), "", "not operated by the account holder", Failed, R::RiskRejected, Final, VM),
    row(VS, "11", Some(200), "", "authority photo missing, malformed or without a face", Error, R::AuthorityUnavailable, Final, VM),
    row(VS, "12", Some(200), "", "authority system error (the same BizId may be submitted again)", Error, R::AuthorityUnavailable, Retryable, VM),
    row(VS, "other", Some(200), "", "another failure (\"2~n 不通过\", 10 included)", Failed, R::RejectedUnspecified, Final, VM),
    row(VS, "-1", Some(200), "未认证", "DescribeVerifyResult: not verified (not submitted yet, the person quit, or a name/ID mismatch); pending while the verification can still complete", Pending, R::AwaitingUser, Final, DV),
    row(VERIFY_STATUS_LATE, "-1", Some(200), "未认证", "DescribeVerifyResult: still −1 after KYC_ALIBABA_PENDING_WINDOW_SECS from the submission", Failed, R::Abandoned, Final, DV),
    row(SC, "-1", Some(200), "", "no submission recorded (resubmit the same TicketId)", Error, R::VendorInternal, Retryable, SV),
    row(SC, "0", Some(200), "", "in review", Pending, R::InReview, Final, SV),
    row(SC, "1", Some(200), "", "passed, task closed", Passed, R::Verified, Final, SV),
    row(SC, "2", Some(200), "", "failed, see AuditConclusions", Failed, R::RejectedUnspecified, Final, SV),
    row(C, "ParameterIsNull", Some(400), "The parameter must not be empty.", "required parameter empty", Error, R::InvalidRequest, Permanent, VME),
    row(C, "InvalidParameter", Some(401), "The specified parameter is invalid.", "invalid parameter", Error, R::InvalidRequest, Permanent, VME),
    row(C, "NoPermission", Some(403), "This RAM user has no permissions to access API.", "RAM user lacks permission", Error, R::AccountBlocked, Permanent, VME),
    row(C, "NoSubscribeService", Some(410), "OSS is not activated or you have not granted OSS the read write permission.", "OSS not activated or authorized", Error, R::AccountBlocked, Permanent, VME),
    row(C, "InDebt", Some(412), "You have an outstanding payment. Please add funds first and try again.", "outstanding payment", Error, R::AccountBlocked, Permanent, VME),
    row(C, "ResourcesTooLarge", Some(421), "The size of the incoming resources are too large.", "resource too large", Error, R::InvalidRequest, Permanent, VME),
    row(C, "DownloadTimedOut", Some(422), "Downloading resource timed out.", "the vendor could not fetch an image in 3 s", Error, R::MaterialUnavailable, Retryable, VME),
    row(C, "NoFaceDetected", Some(435), "No face is detected in either the image or the video.", "no face in the image or video", Failed, R::ImageQuality, Final, VME),
    row(C, "SystemError", Some(500), "A system error occurred.", "internal error", Error, R::VendorInternal, Retryable, VME),
    row(C, "Error.InternalError", Some(500), "The request processing has failed due to some unknown error.", "unknown internal error", Error, R::VendorInternal, Retryable, SVE),
    row(C, "InvalidParam.ParamMissing", Some(403), "Please check if there is param empty in your imput.", "a parameter is empty", Error, R::InvalidRequest, Permanent, SVE),
    row(C, "Error.NoPermissionAccess", Some(403), "No permission to access our service.", "no permission or not activated", Error, R::AccountBlocked, Permanent, SVE),
    row(C, "InvalidParam.VerifyTokenExpired", Some(400), "The verify token was expired.", "VerifyToken expired", Error, R::SessionExpired, Permanent, SVE),
    row(C, "InvalidParam.MaterialsEmpty", Some(400), "The materials list is empty.", "materials list empty", Error, R::InvalidRequest, Permanent, SVE),
    row(C, "InvalidParam.MaterialsNotValid", Some(403), "The param materials is not valid.", "invalid material type", Error, R::InvalidRequest, Permanent, SVE),
    row(C, "Error.DuplicatedTicketId", Some(403), "A record associated with your ticketId has existed.", "TicketId already in review or passed: reconcile with DescribeVerifyResult, never resubmit", Pending, R::DuplicateSubmission, Final, SVE),
    row(C, "Error.SubmitMaterialsError", Some(500), "SubmitMaterials action failed due to internal error.", "internal processing failure", Error, R::VendorInternal, Retryable, SVE),
    row(C, "Error.MaterialsUploadError", Some(500), "The materials upload failed.", "materials could not be uploaded (retried twice, then final)", Error, R::MaterialUnavailable, Retryable, SVE),
    row(C, "Error.MaterialsInsufficient", Some(403), "The number of materials does not meet the requirements for verification.", "material types insufficient for the scene", Error, R::InvalidRequest, Permanent, SVE),
    row(C, "Throttling", Some(400), "Request was denied due to flow control.", "flow control (x-acs-retry-after, ms)", Error, R::Throttled, Retryable, COMMON),
    row(C, "Throttling.User", Some(400), "Request was denied due to user flow control.", "flow control (x-acs-retry-after, ms)", Error, R::Throttled, Retryable, COMMON),
    row(C, "Throttling.Api", Some(400), "Request was denied due to api flow control.", "flow control (x-acs-retry-after, ms)", Error, R::Throttled, Retryable, COMMON),
    row(C, "SignatureDoesNotMatch", Some(400), "Specified signature is not matched with our calculation.", "bad signature", Error, R::AuthFailed, Permanent, COMMON),
    row(C, "InvalidAccessKeyId.NotFound", Some(404), "Specified access key is not found.", "unknown AccessKeyId", Error, R::AuthFailed, Permanent, COMMON),
    row(C, "Forbidden", Some(403), "User not authorized to operate on the specified resource.", "access denied", Error, R::AccountBlocked, Permanent, COMMON),
    row(C, "MissingParameter", Some(400), "The input parameter \"%s\" that is mandatory for processing this request is not supplied.", "common parameter missing", Error, R::InvalidRequest, Permanent, COMMON),
    row(C, "InternalError", Some(500), "The request processing has failed due to some unknown error, exception or failure.", "internal error", Error, R::VendorInternal, Retryable, COMMON),
    row(C, "ServiceUnavailable", Some(503), "The request has failed due to a temporary failure of the server.", "service unavailable", Error, R::VendorInternal, Retryable, COMMON),
    row(C, "InvalidAction.NotFound", Some(404), "Specified api is not found, please check your url and method.", "unknown Action", Error, R::InvalidRequest, Permanent, NONE_COMMON),
    row(C, "InvalidVersion", Some(400), "Specified parameter Version is not valid.", "unknown Version", Error, R::InvalidRequest, Permanent, NONE_COMMON),
    row(C, "MissingAccessKeyId", Some(400), "AccessKeyId is mandatory for this action.", "AccessKeyId missing", Error, R::AuthFailed, Permanent, NONE_COMMON),
    row(C, "MissingTimestamp", Some(400), "Timestamp is mandatory for this action.", "Timestamp missing", Error, R::AuthFailed, Permanent, NONE_COMMON),
    row(C, "MissingSignatureNonce", Some(400), "SignatureNonce is mandatory for this action.", "SignatureNonce missing", Error, R::AuthFailed, Permanent, NONE_COMMON),
    row(C, "IncompleteSignature", Some(400), "The request signature does not conform to Alibaba standards.", "signature parameters incomplete", Error, R::AuthFailed, Permanent, NONE_COMMON),
    row(C, "SignatureNonceUsed", Some(400), "Specified signature nonce was used already.", "nonce reused (every attempt has a fresh one)", Error, R::VendorInternal, Retryable, NONE_COMMON),
    row(C, "InvalidTimeStamp.Expired", Some(400), "Specified time stamp or date value is expired.", "our clock is off by more than the vendor's window", Error, R::AuthFailed, Permanent, NONE_COMMON),
    row(C, "InvalidTimeStamp.Format", Some(400), "Specified time stamp or date value is not well formatted.", "Timestamp malformed", Error, R::AuthFailed, Permanent, NONE_COMMON),
    row("x-acs-retry-after header", "*", None, "", "any answer carrying the header is a throttle (the Tea SDK's ThrottlingException)", Error, R::Throttled, Retryable, "Tea SDK source (alibabacloud-tea-openapi 0.4.6), read for vendor-protocols §A3"),
    row(C, "5xx", None, "", "an unknown Code with a 5xx status", Error, R::VendorInternal, Retryable, "no source (our rule: HTTP 5xx is transient)"),
    row(C, "other", None, "", "a Code neither the seeds nor the common page lists", Error, R::UnexpectedResponse, Permanent, "no source (our rule for undocumented codes)"),
];
