//! A row of a vendor's code table (`kyc_schemas::codes`) → what the worker does: a verdict
//! (the vendor decided), or a [`VendorError`] that says whether and how to retry. The tables
//! decide; this file only turns their retry class into the worker's types.

use std::time::Duration;

use kyc_schemas::codes::{CodeRow, Retry};
use kyc_schemas::{Reason, Status};

use super::{VendorError, Verdict};

impl Verdict {
    /// A verdict with nothing but its status and reason.
    pub fn of(status: Status, reason: Reason) -> Self {
        Verdict {
            status,
            reason,
            vendor_code: None,
            vendor_message: None,
            similarity: None,
            liveness_score: None,
            vendor_ref: None,
            charges: Vec::new(),
        }
    }
}

/// What `row` means for an answer carrying `code` and `message`.
pub(crate) fn classify(
    row: &CodeRow,
    code: String,
    message: String,
    retry_after: Option<Duration>,
) -> Result<Verdict, VendorError> {
    match row.retry {
        Retry::None => Ok(Verdict {
            vendor_code: Some(code),
            vendor_message: (!message.is_empty()).then_some(message),
            ..Verdict::of(row.status, row.reason)
        }),
        Retry::Retryable if row.reason == Reason::Throttled => {
            Err(VendorError::Throttled { code, retry_after })
        }
        Retry::Retryable => Err(VendorError::Transient {
            code,
            message,
            retry_after,
            reason: row.reason,
        }),
        Retry::RefreshAuth => Err(VendorError::AuthExpired { code }),
        Retry::Permanent => Err(VendorError::Permanent {
            code,
            message,
            reason: row.reason,
        }),
    }
}

/// The (status, reason, retry class) a parse result amounts to, in the tables' terms: what
/// the per-row tests compare with each row.
#[cfg(test)]
pub(crate) fn class_of(r: &Result<Verdict, VendorError>) -> (Status, Reason, Retry) {
    match r {
        Ok(v) => (v.status, v.reason, Retry::None),
        Err(e @ (VendorError::Throttled { .. } | VendorError::Transient { .. })) => {
            (Status::Error, e.final_reason(), Retry::Retryable)
        }
        Err(e @ VendorError::AuthExpired { .. }) => {
            (Status::Error, e.final_reason(), Retry::RefreshAuth)
        }
        Err(e @ VendorError::Permanent { .. }) => {
            (Status::Error, e.final_reason(), Retry::Permanent)
        }
    }
}
