//! CSV reports for compliance, streamed from the database one row at a time. Personal data
//! is masked by default: ID numbers keep their first 3 and last 4 characters, names their
//! first character.
#![warn(unreachable_pub, missing_debug_implementations)]

use std::io::Write;

use kyc_schemas::mask::{mask_middle, mask_name};
use kyc_store::queries::{OutcomeFilter, OutcomeRow};
use kyc_store::Store;

/// The outcomes report's columns, in order. Stable: downstream spreadsheets key on them.
pub const OUTCOME_COLUMNS: [&str; 20] = [
    "job_id",
    "batch_id",
    "source_row",
    "customer_ref",
    "name",
    "id_number",
    "vendor",
    "operation",
    "status",
    "reason",
    "vendor_code",
    "vendor_message",
    "similarity",
    "liveness_score",
    "attempts",
    "billed",
    "latency_ms",
    "completed_at",
    "vendor_request_id",
    "vendor_ref",
];

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("database: {0}")]
    Store(#[from] kyc_store::StoreError),
    #[error("writing the report: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ReportOptions {
    /// Show full names and ID numbers. Must be asked for explicitly.
    pub unmasked: bool,
    /// Start with a UTF-8 BOM so Excel opens the file as UTF-8.
    pub excel_bom: bool,
}

/// Writes the outcomes report; returns the number of data rows.
pub async fn write_outcomes<W: Write>(
    store: &Store,
    filter: &OutcomeFilter,
    opts: ReportOptions,
    mut out: W,
) -> Result<u64, ReportError> {
    if opts.excel_bom {
        out.write_all("\u{feff}".as_bytes())?;
    }
    let mut w = csv::Writer::from_writer(out);
    w.write_record(OUTCOME_COLUMNS)?;
    let mut failed: Option<csv::Error> = None;
    let n = store
        .for_each_outcome(filter, |row| {
            if failed.is_none() {
                if let Err(e) = w.write_record(outcome_record(&row, opts.unmasked)) {
                    failed = Some(e);
                }
            }
            Ok(())
        })
        .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    w.flush()?;
    Ok(n)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

fn outcome_record(r: &OutcomeRow, unmasked: bool) -> Vec<String> {
    let name = r.subject_name.as_deref().unwrap_or_default();
    let id = r.subject_id_number.as_deref().unwrap_or_default();
    let completed = chrono::DateTime::from_timestamp_millis(r.completed_at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    vec![
        r.job_id.clone(),
        r.batch_id.clone(),
        opt(&r.source_row),
        opt(&r.customer_ref),
        if unmasked {
            name.to_string()
        } else {
            mask_name(name)
        },
        if unmasked {
            id.to_string()
        } else {
            mask_middle(id, 3, 4)
        },
        r.vendor.clone(),
        r.operation.clone(),
        r.status.clone(),
        r.reason.clone(),
        opt(&r.vendor_code),
        opt(&r.vendor_message),
        r.similarity.map(|s| format!("{s:.2}")).unwrap_or_default(),
        r.liveness_score
            .map(|s| format!("{s:.2}"))
            .unwrap_or_default(),
        r.attempts.to_string(),
        r.billed.to_string(),
        r.latency_ms.to_string(),
        completed,
        opt(&r.vendor_request_id),
        opt(&r.vendor_ref),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> OutcomeRow {
        OutcomeRow {
            job_id: "j".into(),
            batch_id: "b".into(),
            source_row: Some(2),
            customer_ref: Some("C1".into()),
            subject_name: Some("张三丰".into()),
            subject_id_number: Some("11010519491231002X".into()),
            vendor: "huawei".into(),
            operation: "huawei.standard".into(),
            status: "passed".into(),
            reason: "verified".into(),
            vendor_code: Some("1000".into()),
            vendor_message: None,
            similarity: Some(91.234),
            liveness_score: None,
            vendor_request_id: None,
            vendor_ref: None,
            attempts: 1,
            latency_ms: 12,
            billed: true,
            completed_at_ms: 0,
        }
    }

    #[test]
    fn names_and_id_numbers_are_masked_by_default() {
        let rec = outcome_record(&row(), false);
        assert_eq!(rec[4], "张**");
        assert_eq!(rec[5], "110***********002X");
        assert_eq!(rec[12], "91.23");
        assert_eq!(rec[17], "1970-01-01T00:00:00Z");
        assert_eq!(rec.len(), OUTCOME_COLUMNS.len());
    }

    #[test]
    fn unmasked_shows_everything() {
        let rec = outcome_record(&row(), true);
        assert_eq!(rec[5], "11010519491231002X");
    }
}
