//! The outcomes report: one row per job with stable, documented columns.

use std::io::Write;

use kyc_schemas::mask::{mask_middle, mask_name};
use kyc_schemas::safe_csv::{Cell, Number};
use kyc_store::audit::ExportStart;
use kyc_store::queries::{OutcomeFilter, OutcomeRow};
use kyc_store::Store;

use crate::{csv_writer, ReportError, ReportOptions};

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

/// Writes the outcomes report; returns the number of data rows.
pub async fn write_outcomes<W: Write>(
    store: &Store,
    filter: &OutcomeFilter,
    opts: &ReportOptions,
    out: W,
) -> Result<u64, ReportError> {
    // Personal data leaves the database in the clear: say who, what and where to, first, so
    // an export that dies half-way is on record too.
    let audit = if opts.unmasked {
        if opts.requested_by.trim().is_empty() {
            return Err(ReportError::Unaudited);
        }
        let operator = opts
            .operator
            .as_ref()
            .filter(|o| !o.name.trim().is_empty())
            .ok_or(ReportError::NoOperator)?;
        Some(
            store
                .start_report_audit(&ExportStart {
                    operator: &operator.name,
                    operator_source: operator.source,
                    requested_by: &opts.requested_by,
                    report: "outcomes",
                    filter,
                    destination: &opts.destination,
                })
                .await?,
        )
    } else {
        None
    };
    let mut w = csv_writer(out, opts.excel_bom)?;
    w.write_header(&OUTCOME_COLUMNS)?;
    let mut failed: Option<csv::Error> = None;
    let n = store
        .for_each_outcome(filter, |row| {
            if failed.is_none() {
                if let Err(e) = w.write_row(outcome_record(&row, opts.unmasked)) {
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
    if let Some(id) = audit {
        store.finish_report_audit(&id, n).await?;
    }
    Ok(n)
}

fn outcome_record(r: &OutcomeRow, unmasked: bool) -> Vec<Cell<'_>> {
    let name = r.subject_name.as_deref().unwrap_or_default();
    let id = r.subject_id_number.as_deref().unwrap_or_default();
    let completed = chrono::DateTime::from_timestamp_millis(r.completed_at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let score = |s: Option<f64>| Cell::from(s.map(|s| Number::fixed(s, 2)));
    vec![
        Cell::from(&r.job_id),
        Cell::from(&r.batch_id),
        Cell::from(r.source_row),
        Cell::from(r.customer_ref.as_deref()),
        Cell::from(if unmasked {
            name.to_string()
        } else {
            mask_name(name)
        }),
        Cell::from(if unmasked {
            id.to_string()
        } else {
            mask_middle(id, 3, 4)
        }),
        Cell::from(&r.vendor),
        Cell::from(&r.operation),
        Cell::from(&r.status),
        Cell::from(&r.reason),
        Cell::from(r.vendor_code.as_deref()),
        Cell::from(r.vendor_message.as_deref()),
        score(r.similarity),
        score(r.liveness_score),
        Cell::from(r.attempts),
        Cell::from(r.billed),
        Cell::from(r.latency_ms),
        Cell::from(completed),
        Cell::from(r.vendor_request_id.as_deref()),
        Cell::from(r.vendor_ref.as_deref()),
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
        let row = row();
        let rec: Vec<String> = outcome_record(&row, false)
            .iter()
            .map(|c| c.render().into_owned())
            .collect();
        assert_eq!(rec[4], "张**");
        assert_eq!(rec[5], "110***********002X");
        assert_eq!(rec[12], "91.23");
        assert_eq!(rec[17], "1970-01-01T00:00:00Z");
        assert_eq!(rec.len(), OUTCOME_COLUMNS.len());
    }

    #[test]
    fn unmasked_shows_everything() {
        let row = row();
        let rec = outcome_record(&row, true);
        assert_eq!(rec[5], Cell::from("11010519491231002X"));
    }
}
