//! The codes the simulated Cloudauth sends, each a row of Alibaba's table
//! (`kyc_schemas::codes::alibaba`, HTTP status included): a test checks them against the table,
//! and the error builder refuses any other.

/// The codes this simulator sends, each a row of Alibaba's table (HTTP status included): the
/// test below checks them against the table, and [`error`] refuses any other.
pub(crate) const EMITS: &[&str] = &[
    "SystemError",
    "Error.InternalError",
    "InternalError",
    "InvalidAction.NotFound",
    "InvalidVersion",
    "IncompleteSignature",
    "MissingAccessKeyId",
    "InvalidAccessKeyId.NotFound",
    "MissingTimestamp",
    "InvalidTimeStamp.Format",
    "InvalidTimeStamp.Expired",
    "MissingSignatureNonce",
    "SignatureDoesNotMatch",
    "SignatureNonceUsed",
    "Throttling.User",
    "NoPermission",
    "Error.NoPermissionAccess",
    "InDebt",
    "DownloadTimedOut",
    "ResourcesTooLarge",
    "InvalidParameter",
    "ParameterIsNull",
    "NoFaceDetected",
    "MissingParameter",
    "Error.MaterialsUploadError",
    "InvalidParam.ParamMissing",
    "InvalidParam.MaterialsNotValid",
    "InvalidParam.MaterialsEmpty",
    "Error.MaterialsInsufficient",
    "Error.DuplicatedTicketId",
    "Error.SubmitMaterialsError",
];
