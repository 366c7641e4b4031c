//! What can go wrong reading or writing an object, classified as the worker needs it:
//! [`ObjectError::is_transient`] is true only for what can heal (timeouts, connection
//! failures, 5xx, 408, 429); a refusal (403, 404, other 4xx, S3 `AccessDenied`,
//! `NoSuchKey`, `NoSuchBucket`) fails the job at once.
//!
//! No message holds a path, a key or a query string: a presigned URL's query is a
//! credential, and a key may hold an ID number. Errors name where they failed with `at`:
//! the allowlist entry for a material, or [`crate::origin`] (scheme and host or bucket).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::sources::NotAllowed;
use crate::MAX_OBJECT_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("invalid location in {at}: {why}")]
    InvalidUri { at: String, why: &'static str },
    #[error("{at}: {why}")]
    NotAllowed { at: String, why: NotAllowed },
    #[error("object not found in {at}")]
    NotFound { at: String },
    #[error("{at} refused the request: {detail}")]
    Refused { at: String, detail: String },
    #[error("object in {at} is {size} bytes, over the {MAX_OBJECT_BYTES}-byte limit")]
    TooLarge { at: String, size: u64 },
    #[error("{at} needs S3, which is not configured (set KYC_S3_ENDPOINT or AWS_REGION)")]
    NoS3 { at: String },
    #[error("a local path needs a local image folder (--images), and none is configured")]
    NoLocalFolder,
    #[error("S3 error in {at}: {message}")]
    S3 { at: String, message: String },
    #[error("HTTP error in {at}: {message}")]
    Http { at: String, message: String },
    #[error("the S3 CA certificates are unusable: {0}")]
    CaCertificate(String),
    #[error("I/O error in {at}: {kind}")]
    Io {
        at: String,
        kind: std::io::ErrorKind,
    },
}

impl ObjectError {
    /// Whether trying again later could help: network trouble and server-side failures.
    /// Refusals (not found, access denied, not allowed, too large) never heal by waiting.
    pub fn is_transient(&self) -> bool {
        match self {
            ObjectError::S3 { .. } | ObjectError::Http { .. } => true,
            ObjectError::Io { kind, .. } => matches!(
                kind,
                std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// Whether the allowlist refused the location (the worker's `material_not_allowed`).
    pub fn is_not_allowed(&self) -> bool {
        matches!(self, ObjectError::NotAllowed { .. })
    }
}

/// Whether an HTTP status (from S3 or a web server) can heal by retrying.
fn status_heals(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// S3 errors by code and status. Only the code and a kind are kept: the SDK's own text can
/// quote the request.
pub(crate) fn s3_error<E>(at: &str, e: SdkError<E, HttpResponse>) -> ObjectError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let at = at.to_string();
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().map(str::to_string);
            match code.as_deref() {
                Some("NoSuchKey") | Some("NotFound") => ObjectError::NotFound { at },
                None if status == 404 => ObjectError::NotFound { at },
                Some("AccessDenied")
                | Some("NoSuchBucket")
                | Some("AllAccessDisabled")
                | Some("InvalidBucketName")
                | Some("InvalidObjectState") => ObjectError::Refused {
                    at,
                    detail: code.unwrap_or_default(),
                },
                _ if status_heals(status) => ObjectError::S3 {
                    at,
                    message: code.unwrap_or_else(|| format!("HTTP {status}")),
                },
                _ => ObjectError::Refused {
                    at,
                    detail: code.unwrap_or_else(|| format!("HTTP {status}")),
                },
            }
        }
        SdkError::TimeoutError(_) => ObjectError::S3 {
            at,
            message: "timed out".into(),
        },
        SdkError::DispatchFailure(_) => ObjectError::S3 {
            at,
            message: "connection failed".into(),
        },
        SdkError::ResponseError(_) => ObjectError::S3 {
            at,
            message: "unreadable response".into(),
        },
        _ => ObjectError::Refused {
            at,
            detail: "the request could not be built".into(),
        },
    }
}

/// A failed HTTP exchange: the allowlist guards' refusals, else transient network trouble.
pub(crate) fn http_error(at: &str, e: reqwest::Error) -> ObjectError {
    let at = at.to_string();
    if let Some(why) = crate::fetch::refusal(&e) {
        return ObjectError::NotAllowed { at, why };
    }
    let message = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the body could not be read"
    } else if e.is_builder() {
        return ObjectError::Refused {
            at,
            detail: "invalid request".into(),
        };
    } else {
        "request failed"
    };
    ObjectError::Http {
        at,
        message: message.into(),
    }
}

/// An HTTP status that is not success: 404 is not found, what can heal is transient, the
/// rest a refusal.
pub(crate) fn http_status(at: &str, status: reqwest::StatusCode) -> ObjectError {
    let at = at.to_string();
    match status.as_u16() {
        404 | 410 => ObjectError::NotFound { at },
        s if status_heals(s) => ObjectError::Http {
            at,
            message: format!("HTTP {s}"),
        },
        s => ObjectError::Refused {
            at,
            detail: format!("HTTP {s}"),
        },
    }
}

pub(crate) fn io_error(at: &str, e: std::io::Error) -> ObjectError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ObjectError::NotFound { at: at.into() },
        kind => ObjectError::Io {
            at: at.into(),
            kind,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_can_heal_is_transient() {
        let at = "s3://b/";
        for (status, transient) in [
            (403, false),
            (404, false),
            (400, false),
            (401, false),
            (410, false),
            (408, true),
            (429, true),
            (500, true),
            (503, true),
        ] {
            let e = http_status(at, reqwest::StatusCode::from_u16(status).unwrap());
            assert_eq!(e.is_transient(), transient, "HTTP {status}: {e}");
        }
        assert!(!io_error(at, std::io::ErrorKind::PermissionDenied.into()).is_transient());
        assert!(io_error(at, std::io::ErrorKind::TimedOut.into()).is_transient());
        assert!(matches!(
            io_error(at, std::io::ErrorKind::NotFound.into()),
            ObjectError::NotFound { .. }
        ));
    }
}
